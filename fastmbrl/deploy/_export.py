"""``fastmbrl.deploy.export``: a run's policy and dynamics model to ONNX, C or NumPy files."""
import os
from typing import NamedTuple

from fastmbrl._io import _atomic_write, atomic_savez, atomic_write_text

__all__ = ["export", "ExportResult", "FORMATS", "PARTS", "output_files"]

FORMATS = ("onnx", "c", "numpy")
"""The export formats."""
PARTS = ("policy", "model")
"""What can be exported: the SAC policy (sac, mbpo, mve, svg) and the dynamics model (pets,
mbpo, mve, svg)."""

_FILES = {("onnx", "policy"): ("policy.onnx",),
          ("onnx", "model"): ("model.onnx",),
          ("c", "policy"): ("fastmbrl_policy.c", "fastmbrl_policy.h"),
          ("c", "model"): ("fastmbrl_model.c", "fastmbrl_model.h"),
          ("numpy", "policy"): ("policy.npz", "fastmbrl_policy.py"),
          ("numpy", "model"): ("model.npz", "fastmbrl_model.py")}

PETS_NOTE = ("pets plans online: its policy is the planner (CEM/iCEM/MPPI over the model), which "
             "stays in Python (fastmbrl.load(run_dir).act(obs)); the dynamics model is exported "
             "for planning elsewhere, no policy file is written")


class ExportResult(NamedTuple):
    """What :func:`export` wrote.

    Attributes
    ----------
    files : tuple of str
        The paths written, in order.
    notes : tuple of str
        Remarks for the user (e.g. that a pets run's planning stays in Python).
    """

    files: tuple
    notes: tuple


def output_files(fmt, parts):
    """The file names one export writes.

    Parameters
    ----------
    fmt : {"onnx", "c", "numpy"}
    parts : sequence of {"policy", "model"}

    Returns
    -------
    list of str
    """
    return [name for part in parts for name in _FILES[(fmt, part)]]


def _check_format(fmt):
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt.lower()


def _check_parts(parts, run):
    """The parts to export: ``parts`` checked against what the run has, or all it has."""
    available = [p for p, has in (("policy", run.has_policy), ("model", run.has_model)) if has]
    if parts is None:
        if not available:
            raise ValueError(f"export: the {run.algorithm} run in {run.path!r} has nothing to "
                             f"export (no policy network and no dynamics model; runs of sac, "
                             f"mbpo, mve and svg have a policy, pets, mbpo, mve and svg a model)")
        return available
    if isinstance(parts, str):
        parts = [parts]
    parts = list(parts)
    for p in parts:
        if p not in PARTS:
            raise ValueError(f"parts: expected 'policy' and/or 'model', got {p!r}")
    if not parts:
        raise ValueError("parts: expected 'policy' and/or 'model', got none")
    if "policy" in parts and not run.has_policy:
        extra = ("; pets plans online with its model, and the planning stays in Python "
                 "(fastmbrl.load(run_dir).act(obs)): export the model with parts=('model',) "
                 "(--what model)" if run.algorithm == "pets" else "")
        raise ValueError(f"export: the {run.algorithm} run in {run.path!r} has no policy "
                         f"network to export (runs of sac, mbpo, mve and svg have one){extra}")
    if "model" in parts and not run.has_model:
        raise ValueError(f"export: the {run.algorithm} run in {run.path!r} has no dynamics model "
                         f"to export (runs of pets, mbpo, mve and svg have one)")
    return [p for p in PARTS if p in parts]


def _contents(fmt, part, params, metadata):
    """{file name: str, bytes or dict of arrays} of one part in one format."""
    if fmt == "onnx":
        from fastmbrl.deploy import export_onnx

        build = export_onnx.policy_onnx if part == "policy" else export_onnx.model_onnx
        return {_FILES[(fmt, part)][0]: build(params, metadata)}
    if fmt == "c":
        from fastmbrl.deploy import export_c

        build = export_c.policy_sources if part == "policy" else export_c.model_sources
        source, header = build(params, metadata)
        c_name, h_name = _FILES[(fmt, part)]
        return {c_name: source, h_name: header}
    from fastmbrl.deploy import export_numpy

    return (export_numpy.policy_files if part == "policy" else export_numpy.model_files)(params)


def _write(path, content):
    if isinstance(content, dict):
        atomic_savez(path, **content)
    elif isinstance(content, bytes):
        _atomic_write(path, "wb", lambda fh: fh.write(content))
    else:
        atomic_write_text(path, content)


def export(run_dir, format, out, force=False, *, parts=None, action_space=None):
    """Export a run's policy and dynamics model to ONNX, C or NumPy files.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder (finished, or checkpointed and unfinished: its last checkpoint is used).
    format : {"onnx", "c", "numpy"}
        ``onnx``: ``policy.onnx`` / ``model.onnx``. ``c``: ``fastmbrl_policy.c/.h`` /
        ``fastmbrl_model.c/.h`` (C99, weights as ``static const float`` arrays, libm only).
        ``numpy``: ``policy.npz`` + ``fastmbrl_policy.py`` / ``model.npz`` +
        ``fastmbrl_model.py`` (pure-NumPy runtime modules).
    out : str or os.PathLike
        The output folder (made when missing).
    force : bool
        Overwrite existing output files.
    parts : sequence of {"policy", "model"}, optional
        What to export; default everything the run has: the policy of sac, mbpo, mve and svg
        runs, the dynamics model of pets, mbpo, mve and svg runs.
    action_space : gymnasium Box or (low, high) pair, optional
        The action bounds of the policy; default: read from the run's environment (see
        ``fastmbrl.load``).

    Returns
    -------
    ExportResult
        ``files``: the paths written; ``notes``: remarks, e.g. for a pets run that planning
        stays in Python (its model is exported, no policy file).

    Contracts (float32 throughout; see ``fastmbrl.deploy._params`` for the maths):

    policy
        obs (D_obs,) -> action (D_act,) = ``clip(scale * tanh(mean) + bias, low, high)``, what
        ``SAC.act(obs, deterministic=True)`` returns. ONNX: ``obs`` (B, D_obs) -> ``action``
        (B, D_act). C: ``int fastmbrl_policy_act(const float *obs, float *act)``, 0 on success.
    model
        (obs, act) -> every member's next-observation ``mean`` and ``logvar`` (log-variance),
        raw units: ONNX (E, B, D_obs); C ``int fastmbrl_model_predict(obs, act, mean, logvar)``
        with (E, D_obs) row-major outputs; NumPy (E, D_obs) for a row, (E, B, D_obs) for a
        batch. A learned reward head adds ``reward_mean`` / ``reward_logvar`` ((E, B), C
        ``fastmbrl_model_predict_reward``).

    Raises
    ------
    ValueError
        Naming the folder or file: not a run folder or no checkpoint yet; a damaged checkpoint
        file; an unknown ``format``; a part the run does not have (a pets run has no policy);
        nothing to export (a random run); an output file that exists (without ``force``);
        ``out`` is a file.
    ImportError
        ``format="onnx"`` without the onnx package (the ``export`` extra).

    Notes
    -----
    Every file is written to a temporary name in ``out`` and renamed into place, and every
    output name is checked before the first is written, so an export that fails leaves no
    partial file and no half of a refused export.
    """
    from fastmbrl import __version__
    from fastmbrl.deploy import loading
    from fastmbrl.deploy._params import model_params, policy_params

    fmt = _check_format(format)
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected a folder path (str or os.PathLike), got "
                        f"{type(out).__name__}")
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out: {out!r} is a file, expected a folder (or a path to create)")
    run = loading.open_run(run_dir, "export")
    chosen = _check_parts(parts, run)
    paths = [os.path.join(out, name) for name in output_files(fmt, chosen)]
    if not force:
        for path in paths:
            if os.path.lexists(path):
                raise ValueError(f"export: {path!r} already exists; pass force=True (--force) to "
                                 f"overwrite it, or choose another output folder")
    if fmt == "onnx":
        from fastmbrl.deploy.export_onnx import _onnx

        _onnx()                       # the ImportError before any work
    metadata = {"fastmbrl.version": __version__, "run": os.path.abspath(run.path),
                "algorithm": run.algorithm, "env": run.env_id,
                "checkpoint": os.path.relpath(run.checkpoint, run.path)}
    contents, notes = {}, []
    for part in chosen:
        if part == "policy":
            params = policy_params(loading.load_policy(run, action_space, "export"))
        else:
            params = model_params(loading.load_model(run, "export"))
        contents.update(_contents(fmt, part, params, metadata))
    if run.algorithm == "pets":
        notes.append(PETS_NOTE)
    os.makedirs(out, exist_ok=True)
    written = []
    for path in paths:
        _write(path, contents[os.path.basename(path)])
        written.append(path)
    return ExportResult(files=tuple(written), notes=tuple(notes))
