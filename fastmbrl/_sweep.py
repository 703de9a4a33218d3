"""Seeds x settings, each trial its own resumable run folder, spread over cores or machines by Ray.

``fm.sweep`` is this module's :func:`sweep` (the module is private so that the package attribute
``fastmbrl.sweep`` stays the function: importing a submodule of that name would rebind it).

    records = fm.sweep("Pendulum-v1", seeds=range(3), grid={"planner.horizon": [10, 20]},
                       out="runs/sweep", episodes=5)

Layout: ``out/<setting>/seed_<s>/`` is an ordinary run folder (config.json, results, checkpoints)
plus ``trial.json``, the trial's status, written when it ends. Rerunning the same sweep skips the
trials whose ``trial.json`` says finished and resumes the others from their checkpoints
(``fm.run(..., resume=True)``). ``out/summary.csv`` has one row per trial.

Engine: Ray (the ``ray`` extra). With ``workers=1`` the trials run one after another in this
process, Ray or not.

Local (no ``address``): Ray starts from this process with ``workers`` CPUs (default: the machine's
cores), each trial taking one, and it is private to this machine and this sweep. Every Ray process
(GCS, raylet, agents, workers, this process's own Ray server) listens on the loopback address only
(127.0.0.1 or ::1), so nothing is offered to the network (a Ray version that binds anything else
is named in a warning). Nothing of it outlives the sweep: ``ray.shutdown()`` at the end, and a
small watchdog process (POSIX) ends every Ray process the sweep started as soon as this process
is gone, however it ended (SIGKILL included). A Ray already initialized in this process is used
as it is.

Cluster: ``address`` joins a running Ray cluster (``"HEAD:6379"``, or ``"auto"`` on a node of
it): ``ray start --head --node-ip-address=<the head's address on the cluster's private network>``
on one machine, ``ray start --address=HEAD:6379`` on the others; fastmbrl must be installed on
every node and ``out`` must be on storage they all see. The sweep then starts and stops nothing
(``ray stop`` ends a node). Ray's own security guidance: its ports run whatever code is sent to
them, so they must only ever be reachable from trusted machines (a private network or a firewall
around the cluster), never from an untrusted network.

Modules: the grid (seeds, settings, folder names) is ``fastmbrl._sweep_grid``, one trial (its run,
``trial.json``, summary row) ``fastmbrl._sweep_trials``, the Ray engine (tasks, the loopback-only
local Ray and its watchdog) ``fastmbrl._sweep_ray``; this module is ``sweep`` and the summary.
"""
import logging
import os

import numpy as np

from fastmbrl._io import atomic_write_csv
from fastmbrl._sweep_grid import MAX_TRIALS, grid_settings, parse_seeds, setting_slug
from fastmbrl._sweep_ray import _import_ray, _run_ray
from fastmbrl._sweep_trials import (_BUDGET_KEYS, SUMMARY_FIELDS, TRIAL_FILE, _changed, _finished,
                                    _lookup, _read_trial, _request, _set_aside, _summarize,
                                    _trial)

__all__ = ["sweep", "SUMMARY_FIELDS", "RAY_HINT", "RayMissingError", "setting_slug",
           "parse_seeds", "grid_settings", "MAX_TRIALS", "TRIAL_FILE"]

log = logging.getLogger("fastmbrl.sweep")

RAY_HINT = 'pip install "fastmbrl[ray]"'


class RayMissingError(ImportError):
    """More than one worker (or a cluster address) was asked for and Ray is not installed."""


def sweep(env, seeds=(0,), grid=None, out="runs/sweep", workers=None, address=None,
          threshold=None, callback=None, rerun_changed=False, **run_kwargs):
    """Run every (seed, setting) as its own resumable run folder; return the summary.

    Parameters
    ----------
    env : str
        Environment id (what ``fm.run`` takes; a gymnasium.Env object works with ``workers=1``).
    seeds : iterable of int or str
        Seeds, or a range text such as ``"0-4"``.
    grid : dict of str -> list, optional
        Settings to cross, ``{"planner.horizon": [10, 20], "model.hidden": [[64, 64], [200]]}``
        (config keys as for ``--set``). Every combination is run with every seed.
    out : str or os.PathLike
        The sweep folder: trials go to ``out/<setting>/seed_<s>``, the summary to
        ``out/summary.csv``.
    workers : int, optional
        CPUs for an in-process Ray (default: ``os.cpu_count()``); each trial takes one and limits
        its BLAS and Numba threads to it. 1 runs the trials one after another in this process.
    address : str, optional
        Join the Ray cluster at this address (``"auto"``, ``"HEAD:6379"``) instead of starting
        a local Ray (which listens on loopback only and ends with this process). A cluster's
        ports must only be reachable from trusted machines (see the module docstring).
    threshold : float, optional
        Also report the first episode (and environment steps) whose return reaches it.
    callback : callable, optional
        Called with each trial's summary row as it ends (in order of completion).
    rerun_changed : bool
        A trial that finished with other settings than this request (its ``trial.json`` records
        the request) is refused unless this is set; then its folder is moved aside
        (``seed_<s>.replaced-<n>``) and the trial runs again. A larger budget (``episodes``,
        ``steps``) is no change: the finished trial is resumed and extended.
    **run_kwargs
        Passed to ``fastmbrl.run`` for every trial (``episodes=``, ``config=`` (dict or
        RunConfig; the grid is applied on top), ``agent=``, ``reward_fn=``, ...); ``seed``,
        ``out_dir`` and ``resume`` are set by the sweep.

    Returns
    -------
    list of dict
        One record per trial with the keys of ``SUMMARY_FIELDS`` (plus one per grid key), in
        (setting, seed) order. ``status`` is ``finished``, ``resumed`` (finished now, continued from
        a checkpoint), ``skipped`` (finished by an earlier call) or ``failed`` (``error`` says why).

    Raises
    ------
    RayMissingError
        When ``workers`` > 1 or ``address`` is given and Ray is not installed.
    ValueError
        More trials than ``MAX_TRIALS``, counted before the list is built; finished trials run
        with other settings, naming them and the changed keys (see ``rerun_changed``).
    """
    for key in ("seed", "out_dir", "resume"):
        if key in run_kwargs:
            raise TypeError(f"{key}: set by the sweep for every trial; do not pass it")
    if isinstance(seeds, str):
        seeds = parse_seeds(seeds)
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds: expected at least one non-negative seed, got {seeds!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers: expected a positive integer or None, got {workers!r}")
    settings = grid_settings(grid, len(seeds))
    slugs = [setting_slug(s) for s in settings]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"grid: two settings share a folder name ({slugs})")
    out = os.fspath(out)

    ray = None
    if workers != 1 or address is not None:
        ray = _import_ray()
        if ray is None:
            if workers is not None or address is not None:
                raise RayMissingError(f"sweep: more than one worker needs Ray: {RAY_HINT} "
                                      "(or run the trials one after another: workers=1, "
                                      "--workers 1)")
            log.warning("Ray is not installed: running the trials one after another (%s for "
                        "parallel trials)", RAY_HINT)
    n_workers = workers or os.cpu_count() or 1
    os.makedirs(out, exist_ok=True)

    rows, todo, changed = {}, [], []
    cpus = 1 if ray is not None else None
    for setting, slug in zip(settings, slugs):
        for seed in seeds:
            run_dir = os.path.join(out, slug, f"seed_{seed}")
            request = _request(env, seed, setting, run_kwargs)
            trial = _read_trial(run_dir) if _finished(run_dir) else None
            before = None if trial is None else trial.get("request")
            diff = [] if before is None or request is None else _changed(before, request)
            if diff:
                changed.append((run_dir, diff, before, request, setting, seed))
                continue
            if trial is not None and (before is None or request is None or all(
                    before.get(k) == request.get(k) for k in _BUDGET_KEYS)):
                rows[(slug, seed)] = _summarize(run_dir, setting, seed, "skipped", threshold)
                if callback is not None:
                    callback(rows[(slug, seed)])
            else:       # new, unfinished, or finished with another budget (resumed: extended)
                todo.append((env, seed, setting, run_dir, run_kwargs, cpus, threshold, request))
    if changed and not rerun_changed:
        shown = "; ".join(f"{d}: " + ", ".join(
            f"{k} {_lookup(b, k)!r} then, {_lookup(r, k)!r} now" for k in diff)
            for d, diff, b, r, _, _ in changed[:3])
        raise ValueError(f"sweep: {len(changed)} finished trial(s) in {out!r} were run with other "
                         f"settings ({shown}{'; ...' if len(changed) > 3 else ''}); their results "
                         "are not the answer to this request: rerun them with "
                         "rerun_changed=True (--rerun-changed), or use another out folder")
    for run_dir, _, _, request, setting, seed in changed:
        aside = _set_aside(run_dir)
        log.warning("sweep: %s was run with other settings; moved to %s and run again", run_dir,
                    aside)
        todo.append((env, seed, setting, run_dir, run_kwargs, cpus, threshold, request))
    log.info("sweep: %d trials, %d already finished, %d to run", len(slugs) * len(seeds),
             len(rows), len(todo))
    if todo:
        if ray is not None:
            done = _run_ray(ray, todo, n_workers, address, callback)
        else:
            done = []
            for args in todo:
                done.append(_trial(*args))
                if callback is not None:
                    callback(done[-1])
        for row in done:
            rows[(setting_slug({k: row[k] for k in (grid or {})}), row["seed"])] = row
    ordered = [rows[(slug, seed)] for slug in slugs for seed in seeds]
    write_summary(os.path.join(out, "summary.csv"), ordered, list(grid or ()))
    return ordered


def write_summary(path, rows, extra_keys=()):
    """Write the summary rows as CSV (``SUMMARY_FIELDS`` then the grid keys)."""
    fields = list(SUMMARY_FIELDS[:2]) + list(extra_keys) + list(SUMMARY_FIELDS[2:])
    atomic_write_csv(os.fspath(path), fields,
                     [{k: ("" if row.get(k) is None else row.get(k)) for k in fields}
                      for row in rows], extrasaction="ignore")


def markdown_table(rows, threshold=False):
    """The summary as a markdown table (what ``fastmbrl sweep`` prints)."""
    cols = ["setting", "seed", "status", "episodes", "final_return", "best_return"]
    if threshold:
        cols += ["episodes_to_threshold", "steps_to_threshold"]
    cols += ["wall_time"]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.1f}" if np.isfinite(v) else "nan"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |")
    failed = [r for r in rows if r.get("status") == "failed"]
    for r in failed:
        lines.append(f"\nfailed: {r['setting']} seed {r['seed']}: {r['error']}")
    return "\n".join(lines)
