"""ModelEnv.step_vjp: the VJP of one reparameterized model step against central finite differences,
the compiled kernels against their NumPy twins, the reward-gradient fallback, and bad input."""
import warnings

import numpy as np
import pytest

from fastmbrl import backend
from fastmbrl._config import ACTIVATIONS, ATOL, RTOL
from fastmbrl.envs import reward_fns, specs
from fastmbrl.models import ModelArrays, ModelEnv, _reference
from fastmbrl.models.arrays import kernel_model_args
from fastmbrl.models.vjp import StepTape, step_tape_from_arrays, vjp_from_tape
from fastmbrl.nn._flat import param_offsets

FD_STEP = 1e-6
FD_RTOL = 1e-6


def make_arrays(dtype, activation, has_reward, angle_dims=(1,), d_obs=3, d_act=2, hidden=(8, 8),
                ensemble_size=4, delta=None, seed=0):
    """Random weights and normalisers; by default dims 0..D_obs-2 are deltas, the last direct."""
    rng = np.random.default_rng(seed)
    angle_mask = np.zeros(d_obs, bool)
    angle_mask[list(angle_dims)] = True
    d_in = d_obs + int(angle_mask.sum()) + d_act
    d_out = d_obs + int(has_reward)
    dims = np.array([d_in, *hidden, 2 * d_out], np.int64)
    flat = (0.5 * rng.standard_normal(param_offsets(dims, ensemble_size)[-1])).astype(dtype)
    if delta is None:
        delta = np.ones(d_obs, bool)
        delta[-1] = False
    # bounds near the raw log-variances, so both softplus bends carry gradient
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=ensemble_size, activation=activation,
        members=np.arange(ensemble_size), angle_mask=angle_mask, delta_mask=np.asarray(delta, bool),
        in_mean=(0.1 * rng.standard_normal(d_in)).astype(dtype),
        in_std=(1 + rng.random(d_in)).astype(dtype),
        out_mean=(0.1 * rng.standard_normal(d_out)).astype(dtype),
        out_std=(0.2 + rng.random(d_out)).astype(dtype),
        max_logvar=np.full(d_out, 0.5, dtype), min_logvar=np.full(d_out, -1.5, dtype),
        has_reward=has_reward)


def quad_reward(obs, act, next_obs):
    """A smooth user reward touching all three inputs."""
    return (-np.sum(next_obs ** 2, axis=1) + 0.3 * np.sum(obs * next_obs, axis=1)
            - 0.1 * np.sum(act ** 2, axis=1) + np.sin(obs[:, 0]) * act[:, 0])


def quad_reward_grad(obs, act, next_obs):
    d_obs = 0.3 * next_obs
    d_obs[:, 0] += np.cos(obs[:, 0]) * act[:, 0]
    d_act = -0.2 * act
    d_act[:, 0] += np.sin(obs[:, 0])
    return d_obs, d_act, -2.0 * next_obs + 0.3 * obs


def objective(menv, obs, act, noise, members, d_next, d_rew):
    nxt, rew, _ = menv.step(obs, act, noise=noise, members=members)
    return float(np.sum(d_next * nxt) + np.sum(d_rew * rew))


def finite_differences(menv, obs, act, noise, members, d_next, d_rew):
    """Central differences of <d_next, next_obs> + <d_rew, reward> w.r.t. every obs and act entry."""
    grads = []
    for which, x in (("obs", obs), ("act", act)):
        g = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            hi, lo = x.copy(), x.copy()
            hi[idx] += FD_STEP
            lo[idx] -= FD_STEP
            args = (hi, act) if which == "obs" else (obs, hi)
            args_lo = (lo, act) if which == "obs" else (obs, lo)
            g[idx] = (objective(menv, *args, noise, members, d_next, d_rew)
                      - objective(menv, *args_lo, noise, members, d_next, d_rew)) / (2 * FD_STEP)
        grads.append(g)
    return grads


def assert_close_rel(got, want, rtol=FD_RTOL):
    scale = max(np.abs(want).max(), 1e-12)
    err = np.abs(got - want).max() / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


def min_abs_preactivation(arrays, obs, act, members, noise):
    _, _, tape = step_tape_from_arrays(arrays, obs, act, members, noise)
    return np.abs(tape.z).min()


@pytest.fixture(params=["compiled", "twin"])
def kernel_backend(request, monkeypatch):
    """Run the case on the Numba kernels and on the NumPy twins."""
    if request.param == "compiled" and not backend.use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1: the compiled kernels are the twins")
    monkeypatch.setattr(backend, "PURE_PYTHON", request.param == "twin")
    return request.param


# ---------------------------------------------------------------- finite differences, float64
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("reward", ["learned", "given"])
@pytest.mark.parametrize("angle_dims", [(), (1,)])
@pytest.mark.parametrize("zero_noise", [False, True])
def test_step_vjp_matches_finite_differences(kernel_backend, activation, reward, angle_dims,
                                             zero_noise):
    arrays = make_arrays(np.float64, ACTIVATIONS[activation], reward == "learned", angle_dims)
    if reward == "learned":
        menv = ModelEnv(arrays)
    else:
        menv = ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn=quad_reward_grad)
    rng = np.random.default_rng(5)
    n = 9
    obs = rng.uniform(-2, 2, (n, 3))
    act = rng.uniform(-1, 1, (n, 2))
    members = np.array([0, 1, 2, 3, 3, 2, 1, 0, 2])            # every member, several rows each
    noise = 0 if zero_noise else rng.standard_normal((n, menv.out_dim))
    d_next = rng.standard_normal((n, 3))
    d_rew = rng.standard_normal(n)
    if activation == "relu":   # away from the kinks: no pre-activation within reach of the FD step
        assert min_abs_preactivation(arrays, obs, act, members,
                                     np.zeros((n, menv.out_dim)) if zero_noise else noise) > 1e-4
    d_obs, d_act = menv.step_vjp(obs, act, noise, members, d_next, d_rew)
    assert d_obs.shape == (n, 3) and d_act.shape == (n, 2) and d_obs.dtype == np.float64
    fd_obs, fd_act = finite_differences(menv, obs, act, noise, members, d_next, d_rew)
    assert_close_rel(d_obs, fd_obs)
    assert_close_rel(d_act, fd_act)


def test_step_vjp_all_direct_and_all_delta_dims(kernel_backend):
    rng = np.random.default_rng(2)
    n = 6
    obs, act = rng.uniform(-1, 1, (n, 3)), rng.uniform(-1, 1, (n, 2))
    members = np.array([1, 1, 0, 2, 0, 1])
    for delta in ([False] * 3, [True] * 3):
        arrays = make_arrays(np.float64, ACTIVATIONS["tanh"], True, (0, 2), delta=delta)
        menv = ModelEnv(arrays)
        noise = rng.standard_normal((n, 4))
        d_next, d_rew = rng.standard_normal((n, 3)), rng.standard_normal(n)
        d_obs, d_act = menv.step_vjp(obs, act, noise, members, d_next, d_rew)
        fd_obs, fd_act = finite_differences(menv, obs, act, noise, members, d_next, d_rew)
        assert_close_rel(d_obs, fd_obs)
        assert_close_rel(d_act, fd_act)


def pendulum_rows(rng, n):
    """(cos, sin, thdot) near theta = +-pi (across the wrap, but not on it), off the unit circle,
    and torques on both sides of the clip at +-2 (not within 1e-3 of it)."""
    th = np.concatenate([rng.uniform(np.pi - 0.4, np.pi - 0.05, n // 2),
                         rng.uniform(-np.pi + 0.05, -np.pi + 0.4, n - n // 2)])
    th[::3] = rng.uniform(-2, 2, th[::3].shape)
    rho = rng.uniform(0.9, 1.1, n)
    obs = np.stack([rho * np.cos(th), rho * np.sin(th), rng.uniform(-4, 4, n)], axis=1)
    act = rng.uniform(-3, 3, (n, 1))
    act[np.abs(np.abs(act) - 2) < 1e-3] = 1.0
    return obs, act


@pytest.mark.parametrize("activation", ["silu", "tanh"])
@pytest.mark.parametrize("has_head", [False, True])
def test_step_vjp_through_pendulum_reward_and_its_wrap(kernel_backend, activation, has_head):
    arrays = make_arrays(np.float64, ACTIVATIONS[activation], has_head, (), d_obs=3, d_act=1,
                         delta=[True, True, True])
    menv = ModelEnv(arrays, reward_fn=reward_fns.pendulum)     # its gradient is found by itself
    assert menv.reward_grad_fn is reward_fns.pendulum_grad
    rng = np.random.default_rng(7)
    n = 10
    obs, act = pendulum_rows(rng, n)
    members = rng.integers(0, 4, n)
    noise = rng.standard_normal((n, menv.out_dim))
    d_next, d_rew = rng.standard_normal((n, 3)), rng.standard_normal(n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # no fallback to the learned head
        d_obs, d_act = menv.step_vjp(obs, act, noise, members, d_next, d_rew)
    fd_obs, fd_act = finite_differences(menv, obs, act, noise, members, d_next, d_rew)
    assert_close_rel(d_obs, fd_obs)
    assert_close_rel(d_act, fd_act)


def test_zero_network_is_the_identity_on_delta_dims():
    """Hand-worked: all weights zero, so next = obs * delta + out_mean + out_std (b + std eps)
    depends on obs only through the delta; d_obs = d_next on delta dims, 0 on direct, d_act = 0."""
    arrays = make_arrays(np.float64, ACTIVATIONS["silu"], False, (1,))
    arrays = arrays._replace(flat=np.zeros_like(arrays.flat))
    menv = ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn=quad_reward_grad)
    obs = np.array([[0.5, -1.0, 2.0]])
    act = np.array([[0.3, -0.7]])
    d_next = np.array([[1.0, 2.0, 3.0]])
    d_obs, d_act = menv.step_vjp(obs, act, 0, 0, d_next, np.zeros(1))
    np.testing.assert_array_equal(d_obs, [[1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(d_act, [[0.0, 0.0]])
    # with the reward: next = (0.5, -1.0, 0) + out_mean + out_std * std(raw = 0) * 0 = obs*delta+m
    nxt = obs * [1, 1, 0] + arrays.out_mean
    r_obs, r_act, r_next = quad_reward_grad(obs, act, nxt)
    d_obs, d_act = menv.step_vjp(obs, act, 0, 0, None, np.ones(1))
    np.testing.assert_allclose(d_obs, r_obs + r_next * [1, 1, 0], rtol=1e-14)
    np.testing.assert_allclose(d_act, r_act, rtol=1e-14)


# ---------------------------------------------------------------- kernel vs twin
def run_vjp(module, arrays, obs, act, members, noise, d_next, d_rew):
    model = kernel_model_args(arrays)
    dtype = model[0].dtype
    n, e = obs.shape[0], arrays.ensemble_size
    dims = np.asarray(arrays.layer_dims)
    d_out = model[9].shape[0]
    order, starts, who = np.empty(n, np.int64), np.empty(e + 1, np.int64), np.empty(e, np.int64)
    module._group_rows(members, e, order, starts, who)
    z = np.full(n * int(dims[1:-1].sum()), np.nan, dtype)
    y = np.full((n, int(dims[-1])), np.nan, dtype)
    nxt = np.full((n, obs.shape[1]), np.nan, dtype)
    rew = np.full(n, np.nan, dtype)
    width = int(max(dims[:-1].max(), d_out))
    module._model_step_tape(obs, act, order, starts, who, noise, *model,
                            np.empty((n, int(dims[0])), dtype), z, y, np.empty((n, d_out), dtype),
                            np.empty(n * width, dtype), np.empty(2 * n * width, dtype), nxt, rew)
    d_obs = np.full(obs.shape, np.nan, dtype)
    d_act = np.full(act.shape, np.nan, dtype)
    module._model_step_vjp(obs, act, order, starts, who, noise, *model, z, y, d_next, d_rew,
                           np.empty_like(y), np.empty(n * width, dtype),
                           np.empty(n * width, dtype), np.empty((n, int(dims[0])), dtype),
                           d_obs, d_act)
    return dict(next_obs=nxt, reward=rew, z=z, y=y, d_obs=d_obs, d_act=d_act)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS.values()))
@pytest.mark.parametrize("has_reward", [False, True])
@pytest.mark.parametrize("angle_dims", [(), (1,), (0, 1)])
def test_vjp_kernels_match_twin(dtype, activation, has_reward, angle_dims):
    if not backend.use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1: the compiled kernels are the twins")
    from fastmbrl.models import _kernels
    arrays = make_arrays(dtype, activation, has_reward, angle_dims, hidden=(16, 8, 12))
    rng = np.random.default_rng(11)
    n = 37
    obs = rng.uniform(-3, 3, (n, 3)).astype(dtype)
    act = rng.uniform(-1, 1, (n, 2)).astype(dtype)
    members = rng.integers(0, 4, n).astype(np.int64)
    members[:3] = 1                                   # member 3 may be absent: empty blocks
    noise = rng.standard_normal((n, 3 + int(has_reward))).astype(dtype)
    d_next = rng.standard_normal((n, 3)).astype(dtype)
    d_rew = rng.standard_normal(n).astype(dtype)
    got = run_vjp(_kernels, arrays, obs, act, members, noise, d_next, d_rew)
    want = run_vjp(_reference, arrays, obs, act, members, noise, d_next, d_rew)
    keys = ["next_obs", "z", "y", "d_obs", "d_act"] + (["reward"] if has_reward else [])
    for key in keys:
        assert np.all(np.isfinite(got[key])), key
        scale = np.abs(want[key]).max()
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL[dtype],
                                   atol=ATOL[dtype] * max(scale, 1.0), err_msg=key)
    if not has_reward:
        assert np.all(np.isnan(got["reward"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tape_step_equals_the_model_step(dtype):
    """The taped forward pass gives the same sample as ModelEnv.step (the kernel of every use)."""
    arrays = make_arrays(dtype, ACTIVATIONS["silu"], True, (1,))
    menv = ModelEnv(arrays)
    rng = np.random.default_rng(3)
    obs = rng.uniform(-2, 2, (20, 3)).astype(dtype)
    act = rng.uniform(-1, 1, (20, 2)).astype(dtype)
    members = rng.integers(0, 4, 20)
    noise = rng.standard_normal((20, 4)).astype(dtype)
    nxt, rew, _ = menv.step(obs, act, noise=noise, members=members)
    nxt2, rew2, tape = step_tape_from_arrays(arrays, obs, act, members, noise)
    assert isinstance(tape, StepTape) and tape.z.size == 20 * 16 and tape.y.shape == (20, 8)
    np.testing.assert_allclose(nxt2, nxt, rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_allclose(rew2, rew, rtol=RTOL[dtype], atol=ATOL[dtype])
    # the tape alone (no forward pass) reproduces step_vjp's result
    d_next = rng.standard_normal((20, 3)).astype(dtype)
    d_rew = rng.standard_normal(20).astype(dtype)
    got = vjp_from_tape(arrays, tape, d_next, d_rew)
    want = menv.step_vjp(obs, act, noise, members, d_next, d_rew)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_vjp_float32_agrees_with_float64(dtype):
    a64 = make_arrays(np.float64, ACTIVATIONS["silu"], True, (1,))
    arrays = a64 if dtype == np.float64 else ModelArrays(
        *[np.asarray(v, np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v
          for v in a64])
    rng = np.random.default_rng(8)
    obs, act = rng.uniform(-2, 2, (15, 3)), rng.uniform(-1, 1, (15, 2))
    members, noise = rng.integers(0, 4, 15), rng.standard_normal((15, 4))
    d_next, d_rew = rng.standard_normal((15, 3)), rng.standard_normal(15)
    want = ModelEnv(a64).step_vjp(obs, act, noise, members, d_next, d_rew)
    got = ModelEnv(arrays).step_vjp(obs, act, noise, members, d_next, d_rew)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


# ---------------------------------------------------------------- reward gradient sources
def test_reward_fn_without_gradient_falls_back_to_the_learned_head_and_warns_once():
    arrays = make_arrays(np.float64, ACTIVATIONS["silu"], True, (1,))
    user = ModelEnv(arrays, reward_fn=quad_reward)             # a user reward, no gradient
    learned = ModelEnv(arrays)
    rng = np.random.default_rng(0)
    obs, act = rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, (5, 2))
    noise, d_next, d_rew = rng.standard_normal((5, 4)), rng.standard_normal((5, 3)), np.ones(5)
    with pytest.warns(UserWarning, match="reward_grad_fn.*learned reward head"):
        got = user.step_vjp(obs, act, noise, 1, d_next, d_rew)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # once: the second call is silent
        again = user.step_vjp(obs, act, noise, 1, d_next, d_rew)
    want = learned.step_vjp(obs, act, noise, 1, d_next, d_rew)
    for g, a, w in zip(got, again, want):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(a, w)


def test_reward_fn_without_gradient_or_head_raises_naming_reward_grad_fn():
    arrays = make_arrays(np.float64, ACTIVATIONS["silu"], False, (1,))
    menv = ModelEnv(arrays, reward_fn=quad_reward)
    obs, act = np.zeros((2, 3)), np.zeros((2, 2))
    menv.step(obs, act, noise=0, members=0)                 # stepping needs no gradient
    with pytest.raises(ValueError, match="reward_grad_fn.*quad_reward"):
        menv.step_vjp(obs, act, 0, 0, np.ones((2, 3)), np.ones(2))


def test_every_spec_has_the_gradient_of_its_reward():
    for spec in specs.SPECS.values():
        assert spec.reward_grad_fn is not None, spec.id
        assert spec.reward_grad_fn is reward_fns.gradient_of(spec.reward_fn), spec.id
        assert ModelEnv(make_arrays(np.float64, 3, False), reward_fn=spec.reward_fn
                        ).reward_grad_fn is spec.reward_grad_fn
    assert reward_fns.gradient_of(quad_reward) is None


# ---------------------------------------------------------------- bad input
def test_step_vjp_bad_input_names_the_argument():
    arrays = make_arrays(np.float64, ACTIVATIONS["silu"], True, (1,))
    menv = ModelEnv(arrays)
    obs, act, noise = np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((4, 4))
    d_next, d_rew = np.zeros((4, 3)), np.zeros(4)
    cases = [
        (dict(obs=np.zeros((4, 2))), "obs: expected shape"),
        (dict(act=np.zeros((4, 3))), "act: expected shape"),
        (dict(act=np.zeros((5, 2))), "act: expected shape"),
        (dict(noise=np.zeros((4, 3))), "noise: expected shape"),
        (dict(noise=0.5), "noise: expected an array"),
        (dict(members=np.array([0, 1, 4, 0])), r"members: expected integers in \[0, 4\)"),
        (dict(members=np.array([0, 1])), "members: expected"),
        (dict(members=None), "members: expected the member"),
        (dict(d_next_obs=np.zeros((4, 2))), "d_next_obs: expected shape"),
        (dict(d_next_obs=np.full((4, 3), np.nan)), "d_next_obs: contains 12 non-finite"),
        (dict(d_reward=np.zeros((4, 1))), "d_reward: expected a 1-D array"),
        (dict(d_reward=np.zeros(3)), "d_reward: expected shape"),
    ]
    base = dict(obs=obs, act=act, noise=noise, members=0, d_next_obs=d_next, d_reward=d_rew)
    for change, match in cases:
        with pytest.raises(ValueError, match=match):
            menv.step_vjp(**{**base, **change})


def test_reward_grad_fn_bad_values():
    arrays = make_arrays(np.float64, ACTIVATIONS["silu"], False, (1,))
    with pytest.raises(TypeError, match="reward_grad_fn: expected a callable"):
        ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn="grad")
    with pytest.raises(ValueError, match="reward_grad_fn: given without reward_fn"):
        ModelEnv(make_arrays(np.float64, 3, True), reward_grad_fn=quad_reward_grad)
    obs, act = np.zeros((3, 3)), np.zeros((3, 2))

    def wrong_shape(o, a, n):
        return np.zeros((3, 3)), np.zeros((3, 1)), np.zeros((3, 3))

    def not_a_tuple(o, a, n):
        return np.zeros((3, 3))

    for fn, match in ((wrong_shape, "reward_grad_fn's d_act: expected shape"),
                      (not_a_tuple, "reward_grad_fn: expected it to return a tuple")):
        menv = ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn=fn)
        with pytest.raises(ValueError, match=match):
            menv.step_vjp(obs, act, 0, 0, None, np.ones(3))


def test_warmup_compiles_the_vjp_kernels():
    if not backend.use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1: no compiled kernels")
    from fastmbrl.models import _kernels, vjp
    vjp.warmup((np.float32, np.float64))
    for kernel in (_kernels._model_step_tape, _kernels._model_step_vjp):
        dtypes = {sig[0].dtype.name for sig in kernel.signatures}
        assert {"float32", "float64"} <= dtypes, kernel


@pytest.mark.parametrize("learn_reward", [False, True])
def test_step_vjp_of_a_fitted_gaussian_ensemble(learn_reward):
    """The real model (normalisers from data, learned bounds, tanh hidden layers) end to end."""
    import fastmbrl as fm
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (300, 3))
    act = rng.uniform(-1, 1, (300, 2))
    nxt = obs + 0.1 * np.tanh(obs[:, [1, 2, 0]] + act[:, [0, 1, 0]])
    rew = -np.sum(obs ** 2, axis=1)
    model = fm.models.GaussianEnsemble(3, 2, hidden=(16, 16), ensemble_size=4, num_elites=3,
                                       predict_delta=[True, True, False], angle_dims=(1,),
                                       learn_reward=learn_reward, activation="tanh",
                                       dtype=np.float64, seed=1)
    model.fit(obs, act, nxt, rew, max_epochs=3, progress=False)
    menv = (ModelEnv(model) if learn_reward else
            ModelEnv(model, reward_fn=quad_reward, reward_grad_fn=quad_reward_grad))
    o, a = obs[:7], act[:7]
    members = np.array([0, 1, 2, 3, 0, 1, 2])
    noise = rng.standard_normal((7, menv.out_dim))
    d_next, d_rew = rng.standard_normal((7, 3)), rng.standard_normal(7)
    d_obs, d_act = menv.step_vjp(o, a, noise, members, d_next, d_rew)
    fd_obs, fd_act = finite_differences(menv, o, a, noise, members, d_next, d_rew)
    assert_close_rel(d_obs, fd_obs)
    assert_close_rel(d_act, fd_act)


def test_tapes_chain_into_an_h_step_backward_pass(kernel_backend):
    """Three steps under fixed actions, one StepTape kept per step, then the VJPs in reverse:
    d/d(obs_0, act_0..2) of sum_t <c_t, reward_t> + <c, obs_3>, against finite differences."""
    arrays = make_arrays(np.float64, ACTIVATIONS["silu"], True, (1,))
    rng = np.random.default_rng(4)
    n, h = 5, 3
    obs0 = rng.uniform(-1, 1, (n, 3))
    acts = rng.uniform(-1, 1, (h, n, 2))
    members = rng.integers(0, 4, (h, n))
    noise = rng.standard_normal((h, n, 4))
    c_rew, c_obs = rng.standard_normal((h, n)), rng.standard_normal((n, 3))

    def rollout(o, a_seq):
        tapes, total = [], 0.0
        for t in range(h):
            o, r, tape = step_tape_from_arrays(arrays, o, a_seq[t], members[t], noise[t])
            tapes.append(tape)
            total += np.sum(c_rew[t] * r)
        return total + np.sum(c_obs * o), tapes

    _, tapes = rollout(obs0, acts)
    d_obs, d_acts = c_obs, np.zeros_like(acts)
    for t in range(h - 1, -1, -1):
        d_obs, d_acts[t] = vjp_from_tape(arrays, tapes[t], d_obs, c_rew[t])
    fd_obs, fd_acts = np.zeros_like(obs0), np.zeros_like(acts)
    for x, g in ((obs0, fd_obs), (acts, fd_acts)):
        for idx in np.ndindex(*x.shape):
            base = x[idx]
            x[idx] = base + FD_STEP
            hi = rollout(obs0, acts)[0]
            x[idx] = base - FD_STEP
            lo = rollout(obs0, acts)[0]
            x[idx] = base
            g[idx] = (hi - lo) / (2 * FD_STEP)
    assert_close_rel(d_obs, fd_obs)
    assert_close_rel(d_acts, fd_acts)
