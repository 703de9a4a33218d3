"""Fixtures for the neural-core tests: which kernel set to run and numerical-gradient helpers."""
import numpy as np
import pytest

from fastmbrl.backend import use_compiled
from fastmbrl.nn import _reference


def _compiled_module():
    if not use_compiled():
        return None
    try:
        from fastmbrl._ext import _nn
    except ImportError:
        return None
    return _nn


COMPILED_MODULE = _compiled_module()


@pytest.fixture(params=["reference", "compiled", "compiled-portable"])
def impl(request):
    """A kernel module with the twins' signatures: the NumPy twins or the C kernels (AVX2 or portable)."""
    if request.param == "reference":
        yield _reference
        return
    if COMPILED_MODULE is None:
        pytest.skip("compiled extension not built or FASTMBRL_PUREPYTHON=1")
    COMPILED_MODULE._force_portable(request.param == "compiled-portable")
    try:
        yield COMPILED_MODULE
    finally:
        COMPILED_MODULE._force_portable(False)


@pytest.fixture
def compiled():
    if COMPILED_MODULE is None:
        pytest.skip("compiled extension not built or FASTMBRL_PUREPYTHON=1")
    return COMPILED_MODULE


def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (modified in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g


@pytest.fixture
def num_grad():
    return numerical_grad
