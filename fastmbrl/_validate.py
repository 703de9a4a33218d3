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


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. Both a TypeError and, as fastmbrl raised before, a ValueError."""


def check_int(name, value, minimum=1):
    """Return ``value`` as an int after checking it is an integer >= ``minimum``.

    Nothing is coerced: a bool, 1.7 or even 3.0 is refused with a ValueError, a non-number (None, a
    string) with an ArgumentTypeError (a TypeError and a ValueError); both name ``name``, the expectation and what came.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if value < minimum:
            raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
        return int(value)
    kind = ValueError if isinstance(value, (float, bool, np.floating, np.bool_)) else ArgumentTypeError
    raise kind(f"{name}: expected an integer >= {minimum}, got {value!r} ({type(value).__name__})")


def check_real(name, value, low=-np.inf, high=np.inf, low_open=False, high_open=False):
    """Return ``value`` as a float after checking it is a real number in the given interval.

    A bool or a string is refused with an ArgumentTypeError (nothing is coerced: ``"0.1"`` is not a
    number); NaN, infinities and values outside ``[low, high]`` (ends open when ``low_open`` /
    ``high_open``) with a ValueError. Both name ``name``, the expectation and what came.
    """
    lb = "(" if low_open else "["
    hb = ")" if high_open else "]"
    want = f"a finite number in {lb}{low}, {high}{hb}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise ArgumentTypeError(f"{name}: expected {want}, got {value!r} ({type(value).__name__})")
    v = float(value)
    ok = np.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open
                                                                      else v <= high)
    if not ok:
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    return v


def check_time_budget(name, value):
    """``None`` or a positive finite number of seconds (float); errors as ``check_real``."""
    if value is None:
        return None
    return check_real(name, value, low=0.0, low_open=True)


def check_seed(name, seed):
    """``None`` or a non-negative integer (what ``numpy.random.default_rng`` takes), returned as is.

    ``1.7``, ``3.0``, a bool or a string is refused (ValueError / ArgumentTypeError naming ``name``)
    instead of being coerced or failing inside NumPy with a message that names nothing.
    """
    if seed is None:
        return None
    return check_int(name, seed, minimum=0)


def check_bool(name, value):
    """Return ``value`` if it is a bool (Python or NumPy); anything else is an ArgumentTypeError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentTypeError(f"{name}: expected True or False, got {value!r} "
                            f"({type(value).__name__})")


def alpha_in_range(alpha):
    """The one rule for CEM/iCEM's smoothing ``alpha``: a finite number in [0, 1).

    ``alpha = 1`` would keep the initial sampling distribution for ever (the elites would never
    move it). Used by ``fastmbrl.planning.CEM``/``ICEM`` and by the configuration's
    ``planner.alpha`` check.
    """
    return (isinstance(alpha, (int, float, np.integer, np.floating))
            and not isinstance(alpha, (bool, np.bool_)) and bool(np.isfinite(alpha))
            and 0 <= alpha < 1)
