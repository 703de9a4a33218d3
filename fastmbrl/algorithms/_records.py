"""What a run records and writes: one EpisodeRecord per episode (episode-based loops) or one
EvalRecord per evaluation (step-based loops), the RunResult that ``fastmbrl.run`` returns, and the
results files (results.csv, results.json with its summary block, learning_curve.png).
"""
import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np

from fastmbrl._io import atomic_write_csv, atomic_write_text, temporary_path

__all__ = ["EpisodeRecord", "EvalRecord", "RunResult", "RESULTS_FIELDS", "STEP_RESULTS_FIELDS",
           "write_results", "summary", "step_summary"]

# ---------------------------------------------------------------------------------------------
# episode records (pets, random) and what a run returns
# ---------------------------------------------------------------------------------------------
RESULTS_FIELDS = ("episode", "return", "length", "terminated", "fit_time", "fit_epochs",
                  "holdout_mse", "act_time", "env_time", "ms_per_action", "wall_time",
                  "buffer_size", "steps")


@dataclass
class EpisodeRecord:
    """What happened in one episode (pets: episode 0, -1, ... are the random-action data) or, for
    a step-based algorithm, one evaluation.

    Times are wall-clock seconds: ``fit_time`` model/agent training before the episode,
    ``act_time`` all ``agent.act`` calls, ``env_time`` all ``env.step`` calls, ``wall_time`` since
    the run started (summed over resumed sessions). ``steps`` counts environment steps of the run
    so far, random data included.
    """

    episode: int
    ret: float
    length: int
    terminated: bool
    fit_time: float = 0.0
    fit_epochs: int = 0
    holdout_mse: float = float("nan")
    act_time: float = 0.0
    env_time: float = 0.0
    wall_time: float = 0.0
    buffer_size: int = 0
    steps: int = 0

    @property
    def ms_per_action(self):
        """Mean time per action in milliseconds."""
        return 1000.0 * self.act_time / max(self.length, 1)

    def to_dict(self):
        """The record as a flat dict with the RESULTS_FIELDS keys."""
        d = dataclasses.asdict(self)
        d["return"] = d.pop("ret")
        d["ms_per_action"] = self.ms_per_action
        return {k: d[k] for k in RESULTS_FIELDS}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        kw = {k: d[k] for k in RESULTS_FIELDS if k not in ("return", "ms_per_action")}
        return cls(ret=float(d["return"]), **kw)


EpisodeRecord.FIELDS = RESULTS_FIELDS


def _record_column(field_name, dtype, what):
    """A read-only property: ``field_name`` of every record, as one array (records,).

    ``dtype`` None keeps NumPy's choice (float64 for the float fields)."""
    name = "int64" if dtype is np.int64 else "float64"
    return property(lambda self: np.array([getattr(r, field_name) for r in self.records],
                                          dtype=dtype),
                    doc=f"{name} array (records,): {what}")


@dataclass
class RunResult:
    """The outcome of ``fastmbrl.run``.

    Attributes
    ----------
    config : RunConfig
        The resolved configuration.
    records : list of EpisodeRecord
        One per episode (pets: model-based episodes 1..n) or per evaluation (step-based).
    initial_records : list of EpisodeRecord
        The random-action episodes that made the initial data.
    model, agent, buffer :
        The trained model (or None), the last agent and the replay buffer.
    stopped_early : bool
        True when a callback asked to stop before the budget was spent.
    out_dir : str or None
    """

    config: object
    records: list
    initial_records: list
    model: object
    agent: object
    buffer: object
    stopped_early: bool = False
    out_dir: object = None

    steps = _record_column("steps", np.int64, "environment steps of the run so far")
    returns = _record_column("ret", None, "return of each episode (eval mean)")
    wall_times = _record_column("wall_time", None, "seconds since the run started")
    lengths = _record_column("length", np.int64, "steps of each episode")
    fit_times = _record_column("fit_time", None, "seconds spent training")
    act_times = _record_column("act_time", None, "seconds spent in agent.act")
    env_times = _record_column("env_time", None, "seconds spent in env.step")


# ---------------------------------------------------------------------------------------------
# evaluation records (sac, mbpo, mve, svg)
# ---------------------------------------------------------------------------------------------
STEP_RESULTS_FIELDS = ("evaluation", "steps", "return", "return_std", "length", "wall_time",
                       "updates", "updates_per_s", "env_time", "act_time", "update_time",
                       "fit_time", "fit_epochs", "holdout_mse", "rollout_time", "model_rows",
                       "eval_time", "train_episodes", "buffer_size")


@dataclass
class EvalRecord:
    """One evaluation of a step-based run (one results row).

    ``ret`` / ``ret_std``: mean and standard deviation of the evaluation episodes' returns (the
    deterministic policy on its own environment instance), ``length`` their mean length (rounded). The
    times (seconds) and ``updates_per_s`` cover the segment since the previous evaluation:
    ``env_time`` training ``env.step`` calls, ``act_time`` training actions, ``update_time`` SAC
    updates, ``fit_time`` model refits, ``rollout_time`` model rollouts, ``eval_time`` the
    evaluation itself. ``updates`` and ``steps`` are cumulative; ``wall_time`` is since the run
    started (summed over resumed sessions). ``model_rows``: rows in the model buffer (mbpo);
    ``fit_epochs`` the segment's refit epochs, ``holdout_mse`` the last refit's holdout MSE.
    """

    episode: int
    steps: int
    ret: float
    ret_std: float = 0.0
    length: int = 0
    wall_time: float = 0.0
    updates: int = 0
    updates_per_s: float = 0.0
    env_time: float = 0.0
    act_time: float = 0.0
    update_time: float = 0.0
    fit_time: float = 0.0
    fit_epochs: int = 0
    holdout_mse: float = float("nan")
    rollout_time: float = 0.0
    model_rows: int = 0
    eval_time: float = 0.0
    train_episodes: int = 0
    buffer_size: int = 0
    segment_steps: int = 0

    FIELDS = STEP_RESULTS_FIELDS
    terminated = False

    @property
    def ms_per_action(self):
        """Mean time per training action of the segment, in milliseconds."""
        return 1000.0 * self.act_time / max(self.segment_steps, 1)

    def to_dict(self):
        """The record as a flat dict with the STEP_RESULTS_FIELDS keys."""
        d = dataclasses.asdict(self)
        d["return"], d["return_std"], d["evaluation"] = d.pop("ret"), d.pop("ret_std"), d.pop(
            "episode")
        return {k: d[k] for k in STEP_RESULTS_FIELDS}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict` (``segment_steps`` is not stored and comes back 0)."""
        kw = {k: d[k] for k in STEP_RESULTS_FIELDS
              if k not in ("return", "return_std", "evaluation")}
        return cls(episode=int(d["evaluation"]), ret=float(d["return"]),
                   ret_std=float(d["return_std"]), **kw)


# ---------------------------------------------------------------------------------------------
# results files and their summary block
# ---------------------------------------------------------------------------------------------
def write_results(out_dir, config, records, initial_records, summary=None):
    """Write results.csv, results.json and learning_curve.png into ``out_dir`` (atomically)."""
    from fastmbrl.plot import plot_learning_curve

    rows = [r.to_dict() for r in records]
    fields = type(records[0]).FIELDS if records else RESULTS_FIELDS
    atomic_write_csv(os.path.join(out_dir, "results.csv"), fields, rows)
    payload = {"env": config.env, "algorithm": config.algorithm.name, "seed": config.seed,
               "episodes": rows, "initial": [r.to_dict() for r in initial_records],
               "summary": summary or {}}
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(payload, indent=1))
    baseline = float(np.mean([r.ret for r in initial_records])) if initial_records else None
    final = os.path.join(out_dir, "learning_curve.png")
    tmp = temporary_path(final)
    if plot_learning_curve(tmp, [r.ret for r in records], baseline=baseline) is not None:
        os.replace(tmp, final)      # None: matplotlib is not installed (warned once), no PNG


def summary(records, initial_records, wall_time):
    """The ``summary`` block of results.json."""
    returns = [r.ret for r in records]
    return {"episodes": len(records),
            "steps": records[-1].steps if records else None,
            "random_return": float(np.mean([r.ret for r in initial_records]))
            if initial_records else None,
            "best_return": max(returns) if returns else None,
            "last_return": returns[-1] if returns else None,
            "fit_time": float(sum(r.fit_time for r in records)),
            "act_time": float(sum(r.act_time for r in records)),
            "env_time": float(sum(r.env_time for r in records)),
            "wall_time": wall_time}


def step_summary(records, wall_time):
    """The ``summary`` block of a step-based run's results.json (totals of the time split)."""
    returns = [r.ret for r in records]
    out = {"evaluations": len(records), "steps": records[-1].steps if records else None,
           "best_return": max(returns) if returns else None,
           "last_return": returns[-1] if returns else None,
           "updates": records[-1].updates if records else 0, "wall_time": wall_time}
    for name in ("env_time", "act_time", "update_time", "fit_time", "rollout_time", "eval_time"):
        out[name] = float(sum(getattr(r, name) for r in records))
    return out
