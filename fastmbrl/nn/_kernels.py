"""Kernel dispatch: the compiled Cython/C kernels when built, else the NumPy twins.

``FASTMBRL_PUREPYTHON=1`` forces the twins. ``COMPILED`` tells which set is active.

The extension is imported on first use of a kernel, not when ``fastmbrl.nn`` is imported: it
pulls in ``scipy.linalg`` (for ``cython_blas``), which costs a few tenths of a second.
"""
import importlib.util
import os

from fastmbrl.backend import use_compiled
from fastmbrl.nn import _reference

_NAMES = ("_dense_forward", "_dense_backward", "_gaussian_nll_grad", "_soft_bound_forward",
          "_soft_bound_backward", "_adam_update", "_gaussian_train_step", "_train_workspace_size")


def _extension_present():
    try:
        return importlib.util.find_spec("fastmbrl._ext._nn") is not None
    except (ImportError, ValueError):
        return False


COMPILED = use_compiled() and _extension_present()


def _load():
    """Bind the kernel names to the compiled module (or to the twins if it cannot be imported)."""
    global COMPILED
    impl = _reference
    if COMPILED:
        # The extension's OpenMP team (only used with n_threads > 1) should sleep rather than spin
        # while it waits: on a shared 2-core machine a spinning team collapses
        # (docs/performance.md). libgomp reads OMP_WAIT_POLICY once, when it is first loaded, so the default is set around this
        # import only and the environment is restored for everything else (torch, numba, children).
        # A user's own OMP_WAIT_POLICY wins.
        previous = os.environ.get("OMP_WAIT_POLICY")
        if previous is None:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            from fastmbrl._ext import _nn as impl
        except ImportError:  # a stale or broken build: run on the twins rather than fail
            COMPILED = False
            impl = _reference
        finally:
            if previous is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
    g = globals()
    g["_impl"] = impl
    for name in _NAMES:
        g[name] = getattr(impl, name, getattr(_reference, name))


def __getattr__(name):
    if name in _NAMES or name == "_impl":
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def have_openmp():
    """True when the compiled kernels can use more than one thread."""
    if "_impl" not in globals():
        _load()
    return COMPILED and bool(globals()["_impl"]._have_openmp())
