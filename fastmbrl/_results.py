"""Reading results: one run folder's results (``results.json`` or ``results.csv``, with its
``config.json``) as arrays, and the run folders under a sweep folder grouped by setting.

What ``fastmbrl.plot`` draws and ``fm.sweep`` summarises; ``fastmbrl.plot`` re-exports
``load_run`` and ``find_runs``.
"""
import csv
import json
import os

import numpy as np

__all__ = ["load_run", "find_runs"]


def _read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def load_run(run_dir):
    """Read one run folder's results into arrays.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A folder with ``results.json`` or ``results.csv`` (and usually ``config.json``).

    Returns
    -------
    dict with keys
        ``dir``, ``env``, ``algorithm``, ``seed``; ``steps`` (float64 (n,), cumulative environment
        steps at each row), ``wall`` (float64 (n,), seconds, or NaN when not recorded),
        ``returns`` (float64 (n,)), ``random_return`` (float or None), ``times`` (dict of column
        name -> total seconds over the rows, for every ``*_time`` column but ``wall_time``),
        ``wall_total`` (float).

    Raises
    ------
    FileNotFoundError
        When the folder has neither results file.
    ValueError
        When a results file cannot be parsed.
    """
    from fastmbrl._io import confined

    run_dir = os.fspath(run_dir)
    json_path, csv_path = (confined(run_dir, os.path.join(run_dir, n), "plot")
                           for n in ("results.json", "results.csv"))
    initial, summary = [], {}
    if os.path.isfile(json_path):
        try:
            data = _read_json(json_path)
            rows = list(data["episodes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read {json_path!r} ({exc})") from None
        initial = list(data.get("initial") or [])
        summary = data.get("summary") or {}
    elif os.path.isfile(csv_path):
        with open(csv_path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        raise FileNotFoundError(f"no results.json or results.csv in {run_dir!r} "
                                "(is it a fastmbrl run folder?)")
    config = {}
    if os.path.isfile(confined(run_dir, os.path.join(run_dir, "config.json"), "plot")):
        try:
            config = _read_json(os.path.join(run_dir, "config.json"))
        except (OSError, ValueError):
            config = {}
    returns = np.array([_float(r.get("return")) for r in rows])
    if rows and "steps" in rows[0]:
        steps = np.array([_float(r.get("steps")) for r in rows])
    else:
        start = float(sum(_float(r.get("length")) for r in initial))
        steps = start + np.cumsum([_float(r.get("length", 0)) for r in rows])
    wall = np.array([_float(r.get("wall_time")) for r in rows])
    times = {}
    for key in (rows[0].keys() if rows else ()):
        if key.endswith("_time") and key != "wall_time":
            times[key[:-5]] = float(np.nansum([_float(r.get(key)) for r in rows]))
    if initial:
        random_return = float(np.mean([_float(r.get("return")) for r in initial]))
    elif summary.get("random_return") is not None:
        random_return = float(summary["random_return"])
    else:
        random_return = None
    alg = config.get("algorithm")
    if isinstance(alg, dict):
        alg = alg.get("name")
    algorithm = config.get("algorithm_name") or alg or "pets"
    return {"dir": run_dir, "env": config.get("env") or (data.get("env") if os.path.isfile(
                json_path) else None) or "?", "algorithm": str(algorithm),
            "seed": config.get("seed"), "steps": steps, "wall": wall, "returns": returns,
            "random_return": random_return, "times": times,
            "wall_total": float(wall[-1]) if wall.size and np.isfinite(wall[-1]) else float("nan")}


def _is_run(path):
    return any(os.path.isfile(os.path.join(path, n)) for n in ("results.json", "results.csv"))


def find_runs(root):
    """Run folders under ``root`` grouped by setting.

    Parameters
    ----------
    root : str or os.PathLike
        A run folder, or a sweep folder (``root/<setting>/seed_<s>/``, any depth).

    Returns
    -------
    list of (label, list of run folders)
        One group holding ``root`` itself when it is a run folder; otherwise one group per parent
        folder of the runs found below ``root``, labelled by its path relative to ``root``
        (``"."`` when the runs sit directly in ``root``), sorted by label.
    """
    root = os.fspath(root)
    if _is_run(root):
        return [(os.path.basename(os.path.normpath(root)) or root, [root])]
    groups = {}
    for parent, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "checkpoints")
        if parent != root and _is_run(parent):
            label = os.path.relpath(os.path.dirname(parent), root)
            groups.setdefault(label, []).append(parent)
            dirs[:] = []
    return sorted(groups.items())
