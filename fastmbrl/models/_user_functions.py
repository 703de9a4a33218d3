"""User reward and termination functions inside compiled code: checks, handles and placeholders.

The compiled rollouts (the planners' ``fastmbrl.planning._kernels._rollout_values`` and the model's
policy rollout ``fastmbrl.models._rollout_kernels``) call a user's Numba function through a
first-class function value (Numba's wrapper-address protocol: a signature and a C address), so one
cached kernel serves every function of that signature. The user's function is wrapped in a small
compiled "status wrapper" that turns an exception or an output of the wrong length into a status
code instead of a crash. ``_check_user_function`` calls the function once from Python on two rows of
the exact argument types and names the problem; ``_PythonStatusHandle`` is the pure-Python twin
(``FASTMBRL_PUREPYTHON=1``); ``_zero_reward`` / ``_never_done`` are the placeholders passed when a
kernel calls no function. The kernels' reward and termination mode codes are defined here too.
"""
import threading

import numpy as np
from numba import njit
from numba.core.types import WrapperAddressProtocol

# How a compiled rollout obtains each transition's reward and termination: the mode codes of the
# model's policy rollout (``fastmbrl.models._rollout_kernels``) and of the planners' rollout
# (``fastmbrl.planning._kernels``), their NumPy twins and the Python code calling them.
REWARD_FN = 0        # call the compiled reward function inside the rollout
REWARD_LEARNED = 1   # the model's reward head
REWARD_LATER = 2     # Python calls the reward function afterwards on the stored transitions
TERM_NONE = 0        # never terminated
TERM_FN = 1          # call the compiled termination function inside the rollout
TERM_LATER = 2       # Python calls the termination function afterwards (the planners' rollout)

_WRAPPER_LOCK = threading.Lock()


@njit(cache=True, nogil=True)
def _zero_reward(obs, act, next_obs):
    """Placeholder reward function passed when the kernel does not call one; returns zeros (N,)."""
    return np.zeros(obs.shape[0], dtype=obs.dtype)


@njit(cache=True, nogil=True)
def _never_done(obs, act, next_obs):
    """Placeholder termination function: never done; returns a bool array (N,) of False."""
    return np.zeros(obs.shape[0], dtype=np.bool_)


_WRAPPERS = {}      # id(user function) -> (function, its status wrapper), shared by all rollouts


@njit(cache=True, nogil=True)
def _zero_reward_status(obs, act, next_obs, out):
    """Status-wrapper form of ``_zero_reward`` (module level, so cached on disk)."""
    for i in range(out.shape[0]):
        out[i] = 0
    return 0


@njit(cache=True, nogil=True)
def _never_done_status(obs, act, next_obs, out):
    """Status-wrapper form of ``_never_done`` (module level, so cached on disk)."""
    for i in range(out.shape[0]):
        out[i] = False
    return 0


class _Placeholders(dict):
    def get(self, fn, default=None):
        if not self:
            self[_zero_reward] = _zero_reward_status
            self[_never_done] = _never_done_status
        return dict.get(self, fn, default)


_PLACEHOLDER_WRAPPERS = _Placeholders()


def _expected_signature(what, dtype, d_obs, d_act):
    dt = np.dtype(dtype).name
    out = f"{dt} (N,)" if what == "reward_fn" else "bool (N,)"
    return (f"{what}(obs: {dt} (N, {d_obs}), act: {dt} (N, {d_act}), next_obs: {dt} (N, {d_obs}))"
            f" -> {out}, C-contiguous 2-D arrays in")


def _check_user_function(fn, dtype, d_obs, d_act, what):
    """Call ``fn`` from Python on two rows of the rollout's exact argument types; check its output.

    Raises
    ------
    TypeError
        If it cannot be called with that signature (wrong arity, an explicit Numba signature of
        another dtype, ...) or returns the wrong dtype; the message gives the expected signature.
    RuntimeError
        If it raises anything else.
    ValueError
        If its output is not of shape (2,).
    """
    o = np.zeros((2, d_obs), dtype=dtype)
    a = np.zeros((2, d_act), dtype=dtype)
    expected = _expected_signature(what, dtype, d_obs, d_act)
    try:
        res = fn(o, a, o.copy())
    except TypeError as exc:      # numba's typing errors and "No matching definition" included
        raise TypeError(f"{what}: cannot be called as {expected} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                        ) from exc
    except Exception as exc:
        try:
            from numba.core.errors import NumbaError
        except ImportError:  # pragma: no cover - numba is a dependency
            NumbaError = ()
        if isinstance(exc, NumbaError):
            raise TypeError(f"{what}: cannot be compiled for {expected} "
                            f"({str(exc).splitlines()[0]})") from exc
        raise RuntimeError(f"{what} raised {type(exc).__name__}: {exc} when called on 2 rows of "
                           f"zeros to check it") from exc
    res = np.asarray(res)
    if res.shape != (2,):
        raise ValueError(f"{what}: expected an array of shape (N,) for N rows, got shape "
                         f"{res.shape} for N=2")
    _check_output_dtype(res, what, expected)
    return res


def _check_output_dtype(res, what, expected):
    ok = res.dtype.kind == "f" if what == "reward_fn" else res.dtype.kind == "b"
    if not ok:
        raise TypeError(f"{what}: returned a {res.dtype} array; expected {expected}")


def _status_wrapper(fn):
    """A Numba function ``(obs, act, next_obs, out) -> int64`` calling the user's ``fn``.

    Numba functions passed as first-class function values cannot propagate exceptions (an
    exception inside one crashed the process), so the kernel never calls the user's function
    directly: this wrapper calls it through its dispatcher, where ``try/except`` works, writes its
    output into ``out`` (the kernel's row for this step) and returns 0, or 1 if it raised, 2 if
    its output does not have ``out``'s length. Compiled once per user function and process (a
    closure, so not cached on disk); the kernel itself stays cached, keyed by the signature.
    """
    from numba import njit

    @njit(nogil=True)
    def call_with_status(obs, act, next_obs, out):
        try:
            res = fn(obs, act, next_obs)
        except Exception:
            return 1
        if res.shape[0] != out.shape[0]:
            return 2
        for i in range(out.shape[0]):
            out[i] = res[i]
        return 0

    return call_with_status


def _compiled_function_handle(fn, dtype, d_obs, d_act, what):
    """Wrap a Numba function as a first-class function value for the kernel (``FunctionType``).

    Passing the dispatcher itself would type the kernel argument as that particular dispatcher,
    whose type key holds the object's address: the kernel would be recompiled in every process and
    its on-disk cache would only grow. As a ``FunctionType`` (a signature plus a C address) the
    kernel's cache key is just the signature, so one cached kernel serves every reward function.
    What the kernel receives is :func:`_status_wrapper` around ``fn`` (signature
    ``int64(obs, act, next_obs, out)``), so errors come back as a status instead of a crash.
    """
    from numba import typeof, types
    from numba.experimental.function_type import _get_wrapper_address

    _check_user_function(fn, dtype, d_obs, d_act, what)   # compiles (or loads) fn
    o = np.zeros((2, d_obs), dtype=dtype)
    a = np.zeros((2, d_act), dtype=dtype)
    argtypes = (typeof(o), typeof(a), typeof(o))
    cres = fn.overloads.get(argtypes)
    if cres is None:
        raise TypeError(f"{what}: could not find its compiled version for {argtypes}; expected "
                        f"{_expected_signature(what, dtype, d_obs, d_act)}")
    ret = cres.signature.return_type
    if not (isinstance(ret, types.Array) and ret.ndim == 1):
        raise TypeError(f"{what}: expected it to return a 1-D array (N,), it returns {ret}")
    out_type = typeof(np.zeros(2, dtype=dtype if what == "reward_fn" else np.bool_))
    sig = types.int64(*argtypes, out_type)
    wrapper = _PLACEHOLDER_WRAPPERS.get(fn)
    if wrapper is None:
        with _WRAPPER_LOCK:
            kept = _WRAPPERS.get(id(fn))
            if kept is None or kept[0] is not fn:
                kept = _WRAPPERS[id(fn)] = (fn, _status_wrapper(fn))   # fn kept: id not reused
        wrapper = kept[1]
    wrapper.compile(sig.args)
    return _FunctionHandle(wrapper, sig, _get_wrapper_address(wrapper, sig), user_fn=fn)


class _PythonStatusHandle:
    """The pure-Python twin of :func:`_status_wrapper` (``FASTMBRL_PUREPYTHON=1``)."""

    def __init__(self, fn, what):
        self.fn = fn
        self.what = what

    def __call__(self, obs, act, next_obs, out):
        try:
            res = np.asarray(self.fn(obs, act, next_obs))
        except Exception:
            return 1
        if res.shape != out.shape:
            return 2
        out[...] = res
        return 0


class _FunctionHandle(WrapperAddressProtocol):
    """A compiled function's C address and signature (Numba's wrapper-address protocol)."""

    def __init__(self, fn, sig, address, user_fn=None):
        self.fn = fn          # keeps the compiled code alive
        self.sig = sig
        self.address = address
        self.user_fn = user_fn

    def __wrapper_address__(self):
        return self.address

    def signature(self):
        return self.sig


def is_numba_function(fn):
    """True if ``fn`` is a Numba dispatcher (``numba.njit``), callable inside compiled code."""
    if fn is None:
        return False
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return isinstance(fn, Dispatcher)
