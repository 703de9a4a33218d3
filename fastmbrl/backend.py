"""Compiled vs reference switch.

Set ``FASTMBRL_PUREPYTHON=1`` before importing fastmbrl to run every kernel on its plain NumPy
reference twin (slow, but the ground truth the compiled kernels are tested against).

Every Numba kernel module ``..._kernels`` has a twin with the same names and signatures: the module
of the same name ending in ``_reference``, or the one named in ``TWINS``; :func:`kernels` returns
the one that runs.
"""
import importlib
import os

PURE_PYTHON = os.environ.get("FASTMBRL_PUREPYTHON", "0") not in ("", "0", "false", "False")

_LOADED = {}   # (kernel module name, compiled?) -> the module

# Twins that do not follow the ``_kernels`` -> ``_reference`` naming: SAC's kernels are split into
# parts (random draws, losses, optimizer, update, model-based pieces, mixed minibatches), while its
# NumPy math is one public, readable module.
TWINS = {
    "fastmbrl.agents._sac_kernels": "fastmbrl.agents.sac_reference",
    "fastmbrl.agents._sac_rng_kernels": "fastmbrl.agents.sac_reference",
    "fastmbrl.agents._sac_loss_kernels": "fastmbrl.agents.sac_reference",
    "fastmbrl.agents._sac_optim_kernels": "fastmbrl.agents.sac_reference",
    "fastmbrl.agents._sac_update_kernels": "fastmbrl.agents.sac_reference",
    "fastmbrl.agents._sac_mb_kernels": "fastmbrl.agents.sac_reference",
    "fastmbrl.agents._sac_mixed_kernels": "fastmbrl.agents.sac_reference",
}


def use_compiled() -> bool:
    """True unless FASTMBRL_PUREPYTHON asked for the NumPy reference kernels."""
    return not PURE_PYTHON


def kernels(name):
    """The kernel module ``name`` (e.g. ``"fastmbrl.planning._kernels"``), or its NumPy twin.

    Parameters
    ----------
    name : str
        Full name of a compiled kernel module, ending in ``_kernels``; its twin is ``TWINS[name]``
        if listed there, else the module of the same name ending in ``_reference``.

    Returns
    -------
    module
        The compiled module when :func:`use_compiled`, else the twin. Decided at every call (tests
        switch the backend at run time); each module is imported once.
    """
    compiled = use_compiled()
    module = _LOADED.get((name, compiled))
    if module is None:
        if not name.endswith("_kernels"):
            raise ValueError(f"name: expected a kernel module name ending in '_kernels', got "
                             f"{name!r}")
        twin = TWINS.get(name, name[:-len("_kernels")] + "_reference")
        module = importlib.import_module(name if compiled else twin)
        _LOADED[(name, compiled)] = module
    return module
