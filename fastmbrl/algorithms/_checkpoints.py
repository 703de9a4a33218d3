"""Checkpoints of a run and resuming one: the records and the configuration on top of what
``fastmbrl._checkpoint`` stores (buffer, model, agent, algorithm state), and the check that a
resume keeps the settings the checkpoint was made with.
"""
import logging

from fastmbrl import config as _cfg
from fastmbrl._checkpoint import (has_checkpoint, load_checkpoint, read_checkpoint_state,
                                  save_checkpoint)
from fastmbrl.algorithms._records import EpisodeRecord

__all__ = ["save_run_checkpoint", "load_run_checkpoint", "check_resume_settings",
           "RESUME_MAY_CHANGE"]

log = logging.getLogger("fastmbrl.algorithms")


def save_run_checkpoint(ctx, episode, buffer, model, records, initial_records, agent=None,
                        extra=None, algo_state=None):
    """Checkpoint the run after ``episode`` (a no-op without ``out_dir``); the agent's
    ``state_dict()`` is stored when ``agent`` is given, ``extra`` (JSON values) in state.json and
    ``algo_state`` (a nested dict with arrays) beside it."""
    if ctx.out_dir is None:
        return
    state = {"config": _cfg.to_dict(ctx.config), "records": [r.to_dict() for r in records],
             "initial_records": [r.to_dict() for r in initial_records], **(extra or {})}
    save_checkpoint(ctx.out_dir, episode, buffer, model, state, agent=agent,
                    algo_state=algo_state)


# Settings a resume may change: the budget (to extend a run) and the progress display. Everything
# else shaped the checkpoint.
RESUME_MAY_CHANGE = ("algorithm.episodes", "algorithm.steps", "sac.total_steps", "mbpo.total_steps",
                     "algorithm.progress")


def _flat_settings(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("env_kwargs", "options"):
            out.update(_flat_settings(value, name + "."))
        else:
            out[name] = value
    return out


def check_resume_settings(ctx, preset=None):
    """Refuse to resume ``ctx.out_dir`` with settings other than those its checkpoint was made
    with (the checkpoint's own record, not config.json, which may have been edited since).
    ``preset(config)``, when given, is the algorithm's preset (the checkpoint records the
    configuration its loop ran with).

    A setting the checkpoint does not record (added to fastmbrl after the run started) passes when
    it has its default value: every new setting's default keeps the behaviour of the code before
    it, so a long run can be continued with a newer fastmbrl.

    Raises
    ------
    ValueError
        Naming every changed key with its recorded and its current value (budget keys, which
        extend a run, may change: ``RESUME_MAY_CHANGE``).
    """
    if not (ctx.resume and has_checkpoint(ctx.out_dir)):
        return
    recorded = read_checkpoint_state(ctx.out_dir).get("config")
    if not isinstance(recorded, dict):
        log.warning("resume: the checkpoint in %s holds no record of its settings (an older "
                    "fastmbrl); they are not checked", ctx.out_dir)
        return
    before = _flat_settings(recorded)
    now = _flat_settings(_cfg.to_dict(ctx.config if preset is None else preset(ctx.config)))
    defaults = _flat_settings(_cfg.to_dict(_cfg.RunConfig()))
    added = [k for k in now if k not in before and k in defaults and now[k] == defaults[k]]
    if added:
        log.info("resume: %s not recorded in the checkpoint of %s (settings added since); their "
                 "defaults keep the older behaviour", ", ".join(sorted(added)), ctx.out_dir)
    changed = [k for k in sorted(set(before) | set(now))
               if k not in RESUME_MAY_CHANGE and k not in added and before.get(k) != now.get(k)]
    if changed:
        what = "; ".join(f"{k}: {before.get(k)!r} in the checkpoint, {now.get(k)!r} now"
                         for k in changed)
        raise ValueError(f"resume: the settings of {ctx.out_dir!r} differ from those its "
                         f"checkpoint was made with ({what}); restore config.json, or start a new "
                         "run in another folder")


def load_run_checkpoint(ctx, agent=None, record_cls=None):
    """The last checkpoint of ``ctx.out_dir`` checked against the environment, or None when the
    run starts fresh.

    Returns
    -------
    None or (episode, buffer, model, records, initial_records, state)
    """
    if not (ctx.resume and has_checkpoint(ctx.out_dir)):
        if ctx.resume:
            log.info("resume: no checkpoint in %s yet; starting fresh", ctx.out_dir)
        return None
    done, buffer, model, state = load_checkpoint(ctx.out_dir, agent=agent)
    try:
        cls = EpisodeRecord if record_cls is None else record_cls
        records = [cls.from_dict(d) for d in state["records"]]
        initial = [EpisodeRecord.from_dict(d) for d in state["initial_records"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"resume: checkpoint in {ctx.out_dir!r} has damaged records "
                         f"({type(exc).__name__}: {exc})") from None
    dims = (ctx.env.obs_dim, ctx.env.act_dim)
    if (buffer.obs_dim, buffer.act_dim) != dims:
        raise ValueError(f"resume: checkpoint buffer has dims {(buffer.obs_dim, buffer.act_dim)}"
                         f", the environment {dims}")
    log.info("resuming %s after %d (%d transitions)", ctx.out_dir, done, len(buffer))
    return done, buffer, model, records, initial, state
