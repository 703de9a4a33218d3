"""One trial of a sweep: its run (in a Ray worker or in this process), its ``trial.json`` and its
summary row, and the comparison of a finished trial's request with a new one.

Part of ``fm.sweep`` (``fastmbrl._sweep``).
"""
import json
import logging
import os
import sys
import time
import traceback

import numpy as np

from fastmbrl._io import atomic_write_text
from fastmbrl._sweep_grid import setting_slug

log = logging.getLogger("fastmbrl.sweep")

TRIAL_FILE = "trial.json"
SUMMARY_FIELDS = ("setting", "seed", "status", "episodes", "steps", "final_return", "best_return",
                  "episodes_to_threshold", "steps_to_threshold", "wall_time", "error", "dir")


def _nested(key, value):
    section, dot, name = str(key).partition(".")
    return {section: {name: value}} if dot else {section: value}


def _limit_threads(n):
    """Cap Numba's threads at ``n`` (BLAS is capped by the caller's threadpool_limits)."""
    if "numba" not in sys.modules:
        # Read once, at import. Changing it after numba is imported makes numba refuse to run
        # once its thread pool exists (the pool size is fixed), so then only set_num_threads.
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def _read_results(run_dir):
    from fastmbrl._results import load_run

    try:
        return load_run(run_dir)
    except (FileNotFoundError, ValueError):
        return None


def _summarize(run_dir, setting, seed, status, threshold, wall=None, error=""):
    """One summary row from a trial's folder (so finished, resumed and skipped trials agree)."""
    res = _read_results(run_dir)
    row = {k: "" for k in SUMMARY_FIELDS}
    row.update(setting=setting_slug(setting), seed=seed, status=status, error=error,
               dir=run_dir)
    if res is not None and res["returns"].size:
        r = res["returns"]
        row.update(episodes=int(r.size), steps=int(res["steps"][-1]),
                   final_return=float(r[-1]), best_return=float(np.nanmax(r)),
                   wall_time=float(res["wall_total"]) if wall is None else wall)
        if threshold is not None:
            hit = np.flatnonzero(r >= threshold)
            if hit.size:
                row.update(episodes_to_threshold=int(hit[0] + 1),
                           steps_to_threshold=int(res["steps"][hit[0]]))
    elif wall is not None:
        row["wall_time"] = wall
    for key, value in setting.items():
        row[key] = value
    return row


def _trial(env, seed, setting, run_dir, run_kwargs, cpus, threshold, request=None):
    """Run (or resume) one trial; never raises: failures become a 'failed' row."""
    from threadpoolctl import threadpool_limits

    from fastmbrl import config as _cfg
    from fastmbrl._checkpoint import has_checkpoint

    t0 = time.perf_counter()
    os.makedirs(run_dir, exist_ok=True)
    resume = os.path.isfile(os.path.join(run_dir, "config.json"))
    status = "resumed" if resume and has_checkpoint(run_dir) else "finished"
    kwargs = dict(run_kwargs)
    config = kwargs.pop("config", None)
    if isinstance(config, _cfg.RunConfig):
        config = _cfg.to_dict(config)
    overrides = _cfg.merge(*[_nested(k, v) for k, v in setting.items()])
    if cpus is not None:
        # A config section with an n_threads setting gets the trial's CPUs (unless the grid
        # sets it).
        for name, section in _cfg.RunConfig().__dict__.items():
            if hasattr(section, "n_threads") and "n_threads" not in overrides.get(name, {}):
                overrides = _cfg.merge(overrides, {name: {"n_threads": cpus}})
    config = _cfg.merge(config or {}, overrides)
    try:
        if cpus is not None:
            _limit_threads(cpus)
        with threadpool_limits(limits=cpus):
            from fastmbrl.algorithms import run
            run(env, seed=seed, config=config, out_dir=run_dir, resume=resume, **kwargs)
    except Exception as exc:  # a failed trial is reported; the sweep goes on
        error = f"{type(exc).__name__}: {exc}"
        log.warning("trial %s failed: %s\n%s", run_dir, error, traceback.format_exc())
        _write_trial(run_dir, "failed", error, request)
        return _summarize(run_dir, setting, seed, "failed", threshold,
                          wall=time.perf_counter() - t0, error=error)
    _write_trial(run_dir, "finished", request=request)
    return _summarize(run_dir, setting, seed, status, threshold)


def _request(env, seed, setting, run_kwargs):
    """What a trial was asked for, as JSON values: the environment (an id), the seed, the
    configuration with the setting applied, and the other JSON-valued arguments (``episodes``,
    ``steps``, ``algorithm``, ``env_kwargs``)."""
    from fastmbrl import config as _cfg

    config = run_kwargs.get("config")
    if isinstance(config, _cfg.RunConfig):
        config = _cfg.to_dict(config)
    config = _cfg.merge(config or {}, *[_nested(k, v) for k, v in setting.items()])
    request = {"env": env if isinstance(env, str) else None, "seed": seed, "config": config}
    for key in ("episodes", "steps", "algorithm", "env_kwargs"):
        if run_kwargs.get(key) is not None:
            request[key] = run_kwargs[key]
    try:
        return json.loads(json.dumps(request))
    except (TypeError, ValueError):
        return None       # not JSON (e.g. objects in config): the trial is not compared


def _lookup(tree, dotted):
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def _set_aside(run_dir):
    """Rename a trial folder to the first free ``<run_dir>.replaced-<n>``; return the new name."""
    n = 1
    while os.path.lexists(f"{run_dir}.replaced-{n}"):
        n += 1
    os.rename(run_dir, f"{run_dir}.replaced-{n}")
    return f"{run_dir}.replaced-{n}"


def _write_trial(run_dir, status, error="", request=None):
    atomic_write_text(os.path.join(run_dir, TRIAL_FILE),
                      json.dumps({"status": status, "error": error, "request": request}))


def _read_trial(run_dir):
    try:
        with open(os.path.join(run_dir, TRIAL_FILE), encoding="utf-8") as fh:
            trial = json.load(fh)
    except (OSError, ValueError):
        return None
    return trial if isinstance(trial, dict) else None


def _finished(run_dir):
    trial = _read_trial(run_dir)
    return trial is not None and trial.get("status") == "finished"


_BUDGET_KEYS = ("episodes", "steps")


def _changed(before, now):
    """The keys (dotted) whose values differ between two requests, budgets excluded."""
    def flat(tree, prefix=""):
        out = {}
        for key, value in (tree or {}).items():
            if isinstance(value, dict) and key != "env_kwargs":
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out
    a, b = flat(before), flat(now)
    return [k for k in sorted(set(a) | set(b)) if k not in _BUDGET_KEYS and a.get(k) != b.get(k)]
