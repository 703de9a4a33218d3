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


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_seed(name, value, allow_none=False):
    """Return a seed: an integer >= 0 (or None when ``allow_none``); nothing coerced (1.7 refused)."""
    if value is None:
        if allow_none:
            return None
        raise ArgumentTypeError(f"{name}: expected an integer >= 0, got None (None is not "
                                f"allowed here: pass an integer for reproducible results)")
    return check_int(name, value, minimum=0)


def check_float(name, value, minimum=None, maximum=None, strict_min=False, strict_max=False,
                allow_inf=False):
    """Return ``value`` as a float after checking it is a real number in the given range.

    A string, None or a bool is refused with an ArgumentTypeError, NaN (and inf unless
    ``allow_inf``) or a value out of range with a ValueError; both name ``name``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise ArgumentTypeError(f"{name}: expected a real number, got {value!r} "
                                f"({type(value).__name__})")
    v = float(value)
    if np.isnan(v) or (np.isinf(v) and not allow_inf):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    lo_bad = minimum is not None and (v <= minimum if strict_min else v < minimum)
    hi_bad = maximum is not None and (v >= maximum if strict_max else v > maximum)
    if lo_bad or hi_bad:
        lo = "" if minimum is None else f"{'>' if strict_min else '>='} {minimum}"
        hi = "" if maximum is None else f"{'<' if strict_max else '<='} {maximum}"
        raise ValueError(f"{name}: expected a number {' and '.join(p for p in (lo, hi) if p)}, "
                         f"got {value!r}")
    return v


def check_bool(name, value):
    """Return ``value`` as a bool; only True/False (or NumPy bools), not 0/1 or strings."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentTypeError(f"{name}: expected True or False, got {value!r} "
                            f"({type(value).__name__})")


def check_time_budget(name, value):
    """``None`` or a positive finite number of seconds (float); errors as ``check_float``."""
    if value is None:
        return None
    return check_float(name, value, minimum=0.0, strict_min=True)


def check_int_sequence(name, values, minimum=1, maximum=None, distinct=False):
    """Return a tuple of ints after checking ``values`` is a sequence of integers in range.

    None, a string or a scalar is refused with an ArgumentTypeError; a non-integer element
    (0.5, True) or one out of ``[minimum, maximum)`` with a ValueError; all name ``name``.
    """
    if isinstance(values, np.ndarray):
        items = values.tolist() if values.ndim == 1 else None
        if values.ndim == 1 and values.dtype.kind not in "iu" and values.size:
            raise ValueError(f"{name}: expected integers, got an array of dtype {values.dtype}")
    elif isinstance(values, (list, tuple, range)):
        items = list(values)
    else:
        items = None
    if items is None:
        raise ArgumentTypeError(f"{name}: expected a sequence of integers, got {values!r} "
                                f"({type(values).__name__})")
    out = []
    for v in items:
        bad = not _is_int(v) or v < minimum or (maximum is not None and v >= maximum)
        if bad:
            rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum})"
            raise ValueError(f"{name}: expected integers {rng}, got {tuple(items)!r}")
        out.append(int(v))
    if distinct and len(set(out)) != len(out):
        raise ValueError(f"{name}: expected distinct integers, got {tuple(items)!r}")
    return tuple(out)


def check_callable(name, value, allow_none=True):
    """Return ``value`` after checking it is callable (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise ArgumentTypeError(f"{name}: expected a callable{' or None' if allow_none else ''}, "
                                f"got {value!r} ({type(value).__name__})")
    return value


def alpha_in_range(alpha):
    """The one rule for CEM/iCEM's smoothing ``alpha``: a finite number in [0, 1).

    ``alpha = 1`` would keep the initial sampling distribution for ever (the elites would never
    move it). Used by ``fastmbrl.planning.CEM``/``ICEM`` and by the configuration's
    ``planner.alpha`` check.
    """
    return (isinstance(alpha, (int, float, np.integer, np.floating))
            and not isinstance(alpha, (bool, np.bool_)) and bool(np.isfinite(alpha))
            and 0 <= alpha < 1)
