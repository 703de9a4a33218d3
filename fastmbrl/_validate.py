"""Argument checks for the public boundary. Errors name the argument, the expectation and what came."""
import numpy as np

from fastmbrl._config import SUPPORTED_DTYPES


def as_float_array(name, x, dtype=None, ndim=None, shape=None, finite=True):
    """Return ``x`` as a C-contiguous float array after checking it.

    ``shape`` may contain None for free axes. Raises ValueError/TypeError that name ``name``.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if dtype is not None:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    elif arr.dtype.type not in SUPPORTED_DTYPES:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    else:
        arr = np.ascontiguousarray(arr)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def check_dtype(name, dtype):
    dt = np.dtype(dtype).type
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {np.dtype(dtype)}")
    return dt
