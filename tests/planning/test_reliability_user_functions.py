"""Issue 12, item 1 (and 9 for signatures): user reward/termination functions inside the rollout.

An exception inside a compiled user function used to kill the process (SIGSEGV), and an output of
the wrong length for any N other than the 2 rows checked up front was read out of bounds. Now
both come back as Python exceptions naming the function, in the compiled and the reference path.
"""
import numpy as np
import pytest
from bad_user_functions import asserting_reward
from numba import float64, njit
from planning_helpers import random_arrays

from fastmbrl import backend
from fastmbrl.planning import ModelRollout


@njit
def good_reward(obs, act, next_obs):
    return -np.sum(next_obs * next_obs, axis=1)


@njit
def never(obs, act, next_obs):
    return np.zeros(obs.shape[0], dtype=np.bool_)


@njit
def raising_reward(obs, act, next_obs):
    if obs.shape[0] > 2:          # the 2-row check up front passes; the rollout does not
        raise ValueError("bad state")
    return np.zeros(obs.shape[0], dtype=obs.dtype)


@njit
def dividing_reward(obs, act, next_obs):
    out = np.zeros(obs.shape[0], dtype=obs.dtype)
    d = 0 if obs.shape[0] > 2 else 1
    out[0] = 1 // d                       # integer division by zero: ZeroDivisionError
    return out


@njit
def short_reward(obs, act, next_obs):
    return np.zeros(min(obs.shape[0], 2), dtype=obs.dtype)


@njit
def long_reward(obs, act, next_obs):
    n = obs.shape[0]
    return np.zeros(n if n == 2 else n + 5, dtype=obs.dtype)


@njit
def raising_done(obs, act, next_obs):
    if obs.shape[0] > 2:
        raise RuntimeError("cannot decide")
    return np.zeros(obs.shape[0], dtype=np.bool_)


@njit
def short_done(obs, act, next_obs):
    return np.zeros(min(obs.shape[0], 2), dtype=np.bool_)


def plan_values(reward_fn, termination_fn=None, dtype=np.float32, n_threads=1, n_cand=7):
    arrays = random_arrays(d_obs=3, d_act=1, dtype=dtype, seed=0)
    rollout = ModelRollout(reward_fn, termination_fn, particles=4, n_threads=n_threads, seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (n_cand, 5, 1))
    return rollout, rollout.objective(arrays, np.zeros(3))(actions)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("fn,exc_name,text", [
    (raising_reward, "ValueError", "bad state"),
    (asserting_reward, "AssertionError", "too many rows"),
    (dividing_reward, "ZeroDivisionError", ""),
])
def test_compiled_reward_that_raises_is_a_python_error(fn, exc_name, text, n_threads):
    # n_cand * particles = 1200 rows, two chunks: a failure inside a worker thread too
    with pytest.raises(RuntimeError, match=f"reward_fn raised {exc_name}.*{text}") as info:
        plan_values(fn, never, n_threads=n_threads, n_cand=300 if n_threads == 2 else 7)
    assert "horizon step 0" in str(info.value)


def test_compiled_termination_that_raises_is_a_python_error():
    with pytest.raises(RuntimeError, match="termination_fn raised RuntimeError.*cannot decide"):
        plan_values(good_reward, raising_done)


@pytest.mark.parametrize("fn,term,what", [
    (short_reward, None, "reward_fn"),
    (long_reward, None, "reward_fn"),
    (good_reward, short_done, "termination_fn"),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wrong_output_length_for_the_real_n_is_an_error(fn, term, what, dtype):
    with pytest.raises(ValueError, match=rf"{what}: expected an array of shape \(N,\) for N=28 "):
        plan_values(fn, term, dtype=dtype)


def test_rollout_still_works_after_a_user_failure():
    plan_values(good_reward, never)
    with pytest.raises(RuntimeError):
        plan_values(raising_reward, never)
    _, values = plan_values(good_reward, never)
    _, again = plan_values(good_reward, never)
    np.testing.assert_array_equal(values, again)
    assert np.all(np.isfinite(values))


# ---------------------------------------------------------------- NumPy functions, per call
def numpy_reward_raising(obs, act, next_obs):
    if obs.shape[0] > 2:
        raise KeyError("numpy user code")
    return np.zeros(obs.shape[0], dtype=obs.dtype)


def numpy_reward_short(obs, act, next_obs):
    return np.zeros(min(obs.shape[0], 2), dtype=obs.dtype)


def numpy_done_ints(obs, act, next_obs):
    return np.zeros(obs.shape[0], dtype=np.int64)


def test_numpy_reward_failures_are_named():
    with pytest.raises(RuntimeError, match="reward_fn raised KeyError.*numpy user code"):
        plan_values(numpy_reward_raising)
    with pytest.raises(ValueError, match=r"reward_fn: expected an array of shape \(N,\) for N=140"):
        plan_values(numpy_reward_short)


# ---------------------------------------------------------------- 9. signatures
@njit
def two_args(obs, act):
    return np.zeros(obs.shape[0], dtype=obs.dtype)


@njit(float64[:](float64[:, ::1], float64[:, ::1], float64[:, ::1]))
def f64_only(obs, act, next_obs):
    return np.zeros(obs.shape[0])


@njit
def int_reward(obs, act, next_obs):
    return np.zeros(obs.shape[0], dtype=np.int64)


@pytest.mark.parametrize("fn,term,exc,pattern", [
    (two_args, None, TypeError, r"reward_fn: cannot be called as reward_fn\(obs: float32 \(N, 3\)"),
    (f64_only, None, TypeError, r"reward_fn: cannot be called as reward_fn\(obs: float32"),
    (int_reward, None, TypeError, "reward_fn: returned a int64 array; expected"),
    (good_reward, int_reward, TypeError, "termination_fn: returned a int64 array; expected .* bool"),
    (good_reward, numpy_done_ints, TypeError, "termination_fn: returned a int64 array"),
    (good_reward, lambda o, a: o, TypeError, "termination_fn: cannot be called as"),
])
def test_user_function_signature_errors_say_what_is_expected(fn, term, exc, pattern):
    with pytest.raises(exc, match=pattern):
        plan_values(fn, term, dtype=np.float32)


def test_explicit_float64_signature_works_on_a_float64_model():
    _, values = plan_values(f64_only, dtype=np.float64)
    np.testing.assert_array_equal(values, 0.0)


def test_reference_twin_has_the_same_failure_contract(monkeypatch):
    monkeypatch.setattr(backend, "PURE_PYTHON", True)
    with pytest.raises(RuntimeError, match="reward_fn raised ValueError.*bad state"):
        plan_values(raising_reward, never)
    with pytest.raises(ValueError, match=r"termination_fn: expected an array of shape \(N,\)"):
        plan_values(good_reward, short_done)
    _, values = plan_values(good_reward, never)
    assert np.all(np.isfinite(values))
