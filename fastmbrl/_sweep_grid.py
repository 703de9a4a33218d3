"""The grid of a sweep: seeds from text, the settings a grid crosses, a setting's folder name.

Part of ``fm.sweep`` (``fastmbrl._sweep``, which re-exports the public names).
"""
import itertools
import math
import re

__all__ = ["MAX_TRIALS", "parse_seeds", "setting_slug", "grid_settings"]

# Trials (seeds x settings) one sweep may ask for; counted before the trial list is built.
MAX_TRIALS = 10_000


def parse_seeds(text):
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` and ``"0-2,5"`` work too.

    Raises
    ------
    ValueError
        Naming ``seeds`` and the text, when it is not a list of non-negative ranges.
    """
    ranges = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"seeds: expected e.g. 0-4 or 0,1,5 (non-negative), got {text!r}")
        lo = int(m.group(1))
        ranges.append((lo, lo if m.group(2) is None else int(m.group(2))))
    count = sum(hi - lo + 1 for lo, hi in ranges)       # counted before any list is built
    if count > MAX_TRIALS:
        raise ValueError(f"seeds: {text!r} names {count} seeds, more than a sweep's limit of "
                         f"{MAX_TRIALS} trials")
    seeds = []
    for lo, hi in ranges:
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def setting_slug(setting):
    """Folder name of a setting: ``{"planner.horizon": 20}`` -> ``"planner.horizon=20"``.

    Keys are sorted; ``"default"`` for the empty setting; characters other than letters, digits and
    ``._=,-`` become ``_``.
    """
    if not setting:
        return "default"
    parts = []
    for key in sorted(setting):
        value = setting[key]
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return re.sub(r"[^A-Za-z0-9._=,-]", "_", "_".join(parts))


def grid_settings(grid, n_seeds=1):
    """The settings ``grid`` crosses: one dict ``{key: value}`` per combination (``[{}]`` for
    None), in ``itertools.product`` order.

    Raises
    ------
    TypeError, ValueError
        Naming ``grid`` on a value that is not a non-empty list, or more than ``MAX_TRIALS``
        trials with ``n_seeds`` seeds (counted before the list is built).
    """
    if grid is None:
        return [{}]
    if not isinstance(grid, dict):
        raise TypeError(f"grid: expected a dict of setting -> list of values, got "
                        f"{type(grid).__name__}")
    keys = list(grid)
    values = []
    for key in keys:
        v = grid[key]
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError(f"grid[{key!r}]: expected a list of values, got {v!r}")
        v = list(v)
        if not v:
            raise ValueError(f"grid[{key!r}]: expected at least one value, got an empty list")
        values.append(v)
    count = math.prod(len(v) for v in values)
    if count * n_seeds > MAX_TRIALS:
        raise ValueError(f"grid: {count} settings x {n_seeds} seeds = {count * n_seeds} trials, "
                         f"more than a sweep's limit of {MAX_TRIALS}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
