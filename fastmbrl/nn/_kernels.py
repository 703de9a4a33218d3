"""Kernel dispatch: the compiled Cython/C kernels when built, else the NumPy twins.

``FASTMBRL_PUREPYTHON=1`` forces the twins. ``COMPILED`` tells which set is active.
"""
from fastmbrl.backend import use_compiled
from fastmbrl.nn import _reference

_NAMES = ("_dense_forward", "_dense_backward", "_gaussian_nll_grad", "_soft_bound_forward",
          "_soft_bound_backward", "_adam_update", "_gaussian_train_step", "_train_workspace_size")

COMPILED = False
_impl = _reference
if use_compiled():
    try:
        from fastmbrl._ext import _nn as _impl  # noqa: F811
        COMPILED = True
    except ImportError:  # not built (e.g. running from a source tree): fall back to the twins
        _impl = _reference

_dense_forward = getattr(_impl, "_dense_forward", _reference._dense_forward)
_dense_backward = getattr(_impl, "_dense_backward", _reference._dense_backward)
_gaussian_nll_grad = getattr(_impl, "_gaussian_nll_grad", _reference._gaussian_nll_grad)
_soft_bound_forward = getattr(_impl, "_soft_bound_forward", _reference._soft_bound_forward)
_soft_bound_backward = getattr(_impl, "_soft_bound_backward", _reference._soft_bound_backward)
_adam_update = getattr(_impl, "_adam_update", _reference._adam_update)
_gaussian_train_step = getattr(_impl, "_gaussian_train_step", _reference._gaussian_train_step)
_train_workspace_size = getattr(_impl, "_train_workspace_size", _reference._train_workspace_size)


def have_openmp():
    """True when the compiled kernels can use more than one thread."""
    return COMPILED and bool(_impl._have_openmp())
