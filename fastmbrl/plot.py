"""Pictures of fastmbrl results, drawn with matplotlib (the ``plot`` extra) on the Agg canvas.

Nothing here needs a display: every figure is a ``matplotlib.figure.Figure`` saved straight to PNG,
without pyplot, so the global backend of the user's session is left alone.

* :func:`plot_learning_curve` -- the per-episode curve a run writes after every episode.
* :func:`plot_learning_curves` -- return against environment steps and against wall time, one line
  per run, or the mean and a standard-error band per setting of a sweep.
* :func:`plot_time_split` -- where each run's time went (fit / act / env / ...), a stacked bar.
* :func:`plot_calibration` -- a model's predicted sigma against its observed error on held-out data.
* :func:`plot_dir` -- all of the above for run or sweep folders (``fastmbrl plot DIR ...``).

Results are read from ``results.json`` (or ``results.csv``) in a run folder (``load_run`` and
``find_runs``, from ``fastmbrl._results``). Rows with a ``steps``
column (step-based algorithms: ``return`` is the evaluation mean) are plotted against it; otherwise
the environment steps are the random initial data plus the cumulative episode ``length``.
"""
import logging
import os

import numpy as np

from fastmbrl._results import find_runs, load_run

__all__ = ["plot_learning_curve", "plot_learning_curves", "plot_time_split", "plot_calibration",
           "plot_dir", "load_run", "find_runs", "INSTALL_HINT"]

log = logging.getLogger("fastmbrl.plot")

INSTALL_HINT = 'pip install "fastmbrl[plot]"'
_warned_missing = False


def _figure(width_in, height_in):
    """A new Figure on the Agg canvas; ImportError naming the extra when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _save(fig, path):
    # written to a temporary file and renamed: a picture that is a link is replaced, never
    # written through
    from fastmbrl._io import _atomic_write

    _atomic_write(path, "wb", lambda fh: fig.savefig(fh, format="png"))
    return os.fspath(path)


# ---------------------------------------------------------------------------------------------
# the curve a run writes after every episode
# ---------------------------------------------------------------------------------------------
def plot_learning_curve(path, returns, baseline=None, width=640, height=400):
    """Draw per-episode returns (a line with dots) and write the PNG to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    returns : sequence of float
        Return of each model-based episode, episode 1 first.
    baseline : float, optional
        Drawn as a dashed line (the random-action data's mean return).
    width, height : int
        Picture size in pixels.

    Returns
    -------
    str or None
        The path written, or None when matplotlib is not installed (then nothing is written and
        one warning naming the ``plot`` extra is logged per process).
    """
    global _warned_missing
    if not _have_matplotlib():
        if not _warned_missing:
            log.warning("matplotlib is not installed: no learning-curve PNG (%s)", INSTALL_HINT)
            _warned_missing = True
        return None
    y = np.asarray(list(returns), dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"returns: expected a sequence of floats, got shape {y.shape}")
    fig = _figure(width / 100.0, height / 100.0)
    ax = fig.add_subplot()
    episodes = np.arange(1, len(y) + 1)
    ax.plot(episodes, y, "o-", color="C0", label="episode return")
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(baseline, color="C1", ls="--", label="random policy")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    if len(y):
        ax.set_xlim(0.5, max(len(y), 1) + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="best")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _mean_band(runs, key):
    """Common x grid, mean and standard error of the runs' returns against ``key``."""
    xs = [r[key] for r in runs]
    ys = [r["returns"] for r in runs]
    ok = [np.isfinite(x).all() and x.size > 0 for x in xs]
    xs = [x for x, good in zip(xs, ok) if good]
    ys = [y for y, good in zip(ys, ok) if good]
    if not xs:
        return None
    if all(x.shape == xs[0].shape and np.array_equal(x, xs[0]) for x in xs):
        grid = xs[0]
        stack = np.vstack(ys)
    else:
        lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
        if hi < lo:
            return None
        grid = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x in xs] + [[lo, hi]]))
        stack = np.vstack([np.interp(grid, x, y) for x, y in zip(xs, ys)])
    mean = stack.mean(axis=0)
    n = stack.shape[0]
    se = stack.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else None
    return grid, mean, se, n


def plot_learning_curves(path, groups, title=None):
    """Return against environment steps (left) and against wall time (right).

    Parameters
    ----------
    path : str or os.PathLike
        The PNG to write.
    groups : list of (label, list of dict)
        Runs as :func:`load_run` returns them. A group of one run is drawn as its line; a group of
        several as their mean with a shaded band of one standard error.
    title : str, optional
        Default: the environments and algorithms of the runs.

    Returns
    -------
    str : the path written
    """
    if not groups or not any(runs for _, runs in groups):
        raise ValueError("groups: expected at least one run, got none")
    fig = _figure(12, 4.6)
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)
    randoms = []
    for i, (label, runs) in enumerate(groups):
        color = f"C{i % 10}"
        randoms += [r["random_return"] for r in runs if r["random_return"] is not None]
        for ax, key in ((ax_steps, "steps"), (ax_wall, "wall")):
            band = _mean_band(runs, key)
            if band is None:
                continue
            grid, mean, se, n = band
            if n > 1:   # each seed faintly, so runs that do not overlap in time still show
                for r in runs:
                    ax.plot(r[key], r["returns"], "-", lw=0.8, alpha=0.35, color=color)
            name = label if n == 1 else f"{label} (mean of {n})"
            ax.plot(grid, mean, "o-" if grid.size <= 30 else "-", ms=3, color=color, label=name)
            if se is not None:
                ax.fill_between(grid, mean - se, mean + se, color=color, alpha=0.2,
                                label=f"{label}: ±1 standard error")
    if randoms:
        level = float(np.mean(randoms))
        for ax in (ax_steps, ax_wall):
            ax.axhline(level, color="grey", ls="--", lw=1,
                       label=f"random policy ({level:.0f})")
    ax_steps.set_xlabel("environment steps")
    ax_wall.set_xlabel("wall time (s)")
    ax_steps.set_ylabel("return")
    for ax in (ax_steps, ax_wall):
        ax.grid(alpha=0.3)
    ax_steps.legend(loc="best", fontsize="small")
    if title is None:
        runs = [r for _, rs in groups for r in rs]
        envs = sorted({r["env"] for r in runs})
        algs = sorted({r["algorithm"].upper() for r in runs})
        title = f"{', '.join(algs)} on {', '.join(envs)}"
    fig.suptitle(title)
    return _save(fig, path)


def plot_time_split(path, runs, labels=None, title=None):
    """One stacked bar per run: total seconds in each ``*_time`` column, plus the rest of the wall.

    Parameters
    ----------
    path : str or os.PathLike
    runs : list of dict
        As :func:`load_run` returns them.
    labels : list of str, optional
        Bar labels (default: the folder names).
    title : str, optional

    Returns
    -------
    str : the path written
    """
    if not runs:
        raise ValueError("runs: expected at least one run, got none")
    labels = labels or [os.path.basename(os.path.normpath(r["dir"])) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"labels: expected {len(runs)} labels, got {len(labels)}")
    parts = []
    for r in runs:
        parts += [k for k in r["times"] if k not in parts]
    fig = _figure(max(5.0, 1.0 + 0.6 * len(runs)), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(runs))
    bottom = np.zeros(len(runs))
    for i, part in enumerate(parts):
        h = np.array([r["times"].get(part, 0.0) for r in runs])
        ax.bar(x, h, bottom=bottom, color=f"C{i % 10}", label=part)
        bottom += h
    rest = np.array([max(r["wall_total"] - s, 0.0) if np.isfinite(r["wall_total"]) else 0.0
                     for r, s in zip(runs, bottom)])
    if rest.any():
        ax.bar(x, rest, bottom=bottom, color="lightgrey", label="other")
    ax.set_xticks(x, labels, rotation=30 if len(runs) > 3 else 0, ha="right" if len(runs) > 3
                  else "center", fontsize="small")
    ax.set_ylabel("seconds")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or "where the time went")
    return _save(fig, path)


def plot_calibration(path, model, obs, act, next_obs, title=None, bins=12):
    """Predicted sigma against observed error of a model on held-out transitions.

    Parameters
    ----------
    path : str or os.PathLike
    model : fastmbrl.models.GaussianEnsemble
    obs, act, next_obs : float arrays (B, D_obs), (B, D_act), (B, D_obs)
        Transitions the model was not trained on.
    title : str, optional
    bins : int
        Quantile bins of predicted sigma for the binned RMS error.

    Returns
    -------
    str : the path written

    Notes
    -----
    The prediction is the elites' mixture: mean ``mu = mean_m mu_m``, variance
    ``mean_m var_m + var_m mu_m`` (law of total variance), per dimension. Points are (sigma,
    |next_obs - mu|) per row and dimension; the line is the RMS error in quantile bins of sigma.
    A calibrated Gaussian has RMS error equal to sigma (the ideal line).
    """
    obs, act, next_obs = (np.asarray(a, dtype=np.float64) for a in (obs, act, next_obs))
    if (obs.ndim != 2 or next_obs.shape != obs.shape or act.ndim != 2
            or act.shape[0] != obs.shape[0]):
        raise ValueError(f"obs, act, next_obs: expected (B, D_obs), (B, D_act), (B, D_obs), got "
                         f"{obs.shape}, {act.shape}, {next_obs.shape}")
    if obs.shape[0] < 2:
        raise ValueError(f"obs: expected at least 2 held-out rows, got {obs.shape[0]}")
    mean, var = model.predict(obs, act)
    elites = np.asarray(getattr(model, "elites", np.arange(mean.shape[0])))
    mean, var = mean[elites].astype(np.float64), var[elites].astype(np.float64)
    mu = mean.mean(axis=0)
    sigma = np.sqrt(var.mean(axis=0) + mean.var(axis=0))
    err = np.abs(next_obs - mu)
    fig = _figure(6.4, 5.0)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for d in range(obs.shape[1]):
        rows = np.arange(obs.shape[0])
        if rows.size > 2000:
            rows = rng.choice(rows, 2000, replace=False)
        ax.scatter(sigma[rows, d], np.maximum(err[rows, d], 1e-12), s=4, alpha=0.3,
                   color=f"C{d % 10}", label=f"obs dim {d}")
    s, e = sigma.ravel(), err.ravel()
    edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)))
    if edges.size >= 2:
        which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, edges.size - 2)
        centers, rms = [], []
        for b in range(edges.size - 1):
            sel = which == b
            if sel.any():
                centers.append(np.sqrt(np.mean(s[sel] ** 2)))
                rms.append(np.sqrt(np.mean(e[sel] ** 2)))
        order = np.argsort(centers)
        ax.plot(np.array(centers)[order], np.array(rms)[order], "k-o", ms=4,
                label="RMS |error| per sigma bin")
    lo = max(float(np.min(s[s > 0])) if np.any(s > 0) else 1e-6, 1e-12)
    hi = float(max(np.max(s), np.max(e), lo * 10))
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", label="ideal: RMS error = sigma")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted sigma (elite mixture)")
    ax.set_ylabel("observed |error| on held-out data")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title or f"calibration on {obs.shape[0]} held-out transitions")
    return _save(fig, path)


def _checkpoint_model_and_holdout(run_dir):
    """(model, obs, act, next_obs) of a run folder's checkpoint, or None.

    The checkpointed model was fitted before the last episode, so that episode's transitions
    (the newest ``length`` rows of the buffer) were never trained on: they are the held-out data.
    """
    from fastmbrl._checkpoint import has_checkpoint, load_checkpoint

    if not has_checkpoint(run_dir):
        return None
    episode, buffer, model, state = load_checkpoint(run_dir)
    if model is None or not state.get("records"):
        return None
    n = int(state["records"][-1]["length"])
    if n < 2 or n > len(buffer):
        return None
    return model, buffer.obs[-n:], buffer.act[-n:], buffer.next_obs[-n:]


def plot_dir(dirs, out=None):
    """Every picture for run and sweep folders; what ``fastmbrl plot DIR [DIR ...]`` does.

    Parameters
    ----------
    dirs : sequence of str or os.PathLike
        Run folders and/or sweep folders.
    out : str or os.PathLike, optional
        Folder for the PNGs. Default: the folder given when there is one, else the current folder.

    Returns
    -------
    list of str : the PNG files written (``learning_curve.png``, ``time_split.png`` and, for a
    single run folder with a checkpointed model, ``calibration.png``)

    Raises
    ------
    FileNotFoundError
        When a folder holds no run.
    """
    dirs = [os.fspath(d) for d in dirs]
    if not dirs:
        raise ValueError("dirs: expected at least one folder, got none")
    groups = []
    for d in dirs:
        if not os.path.isdir(d):
            raise FileNotFoundError(f"no such folder {d!r}")
        found = find_runs(d)
        if not found:
            raise FileNotFoundError(f"no results.json or results.csv in {d!r} or below it "
                                    "(is it a fastmbrl run or sweep folder?)")
        name = os.path.basename(os.path.normpath(d))
        for label, run_dirs in found:
            # A run folder is labelled by its name; a sweep's settings, with several folders, by
            # the sweep's name too ("." is a sweep whose runs sit directly in it).
            if run_dirs != [d] and len(dirs) > 1:
                label = name if label == "." else f"{name}/{label}"
            elif label == ".":
                label = name
            groups.append((label, [load_run(r) for r in run_dirs]))
    out = out or (dirs[0] if len(dirs) == 1 else os.getcwd())
    os.makedirs(out, exist_ok=True)
    written = [plot_learning_curves(os.path.join(out, "learning_curve.png"), groups)]
    runs = [r for _, rs in groups for r in rs]
    labels = []
    for label, rs in groups:
        for r in rs:
            name = os.path.basename(os.path.normpath(r["dir"]))
            labels.append(name if len(rs) == 1 and len(groups) == 1 else f"{label}/{name}")
    written.append(plot_time_split(os.path.join(out, "time_split.png"), runs, labels))
    if len(runs) == 1:
        held = _checkpoint_model_and_holdout(runs[0]["dir"])
        if held is not None:
            written.append(plot_calibration(os.path.join(out, "calibration.png"), *held,
                                            title=f"{runs[0]['env']}: model calibration on the "
                                                  f"last episode"))
    return written
