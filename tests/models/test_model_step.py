"""The one model step: kernel vs NumPy twin, ModelEnv's reparameterization by hand, member per row."""
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl._config import ACTIVATIONS, ATOL, RTOL
from fastmbrl.backend import use_compiled
from fastmbrl.models import ModelArrays, ModelEnv, _reference
from fastmbrl.models.arrays import _scratch, kernel_model_args
from fastmbrl.nn._flat import param_offsets, unflatten


def make_arrays(dtype, activation, has_reward, angle_dims=(1,), d_obs=3, d_act=2, hidden=(8, 8),
                ensemble_size=4, seed=0):
    """Random weights and normalisers; dims 0 and 1 are deltas (1 an angle), dim 2 direct."""
    rng = np.random.default_rng(seed)
    angle_mask = np.zeros(d_obs, bool)
    angle_mask[list(angle_dims)] = True
    d_in = d_obs + int(angle_mask.sum()) + d_act
    d_out = d_obs + int(has_reward)
    dims = np.array([d_in, *hidden, 2 * d_out], np.int64)
    flat = (0.5 * rng.standard_normal(param_offsets(dims, ensemble_size)[-1])).astype(dtype)
    delta = np.ones(d_obs, bool)
    delta[-1] = False
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=ensemble_size, activation=activation,
        members=np.arange(ensemble_size), angle_mask=angle_mask, delta_mask=delta,
        in_mean=(0.1 * rng.standard_normal(d_in)).astype(dtype),
        in_std=(1 + rng.random(d_in)).astype(dtype),
        out_mean=(0.1 * rng.standard_normal(d_out)).astype(dtype),
        out_std=(0.2 + rng.random(d_out)).astype(dtype),
        max_logvar=np.full(d_out, 0.5, dtype), min_logvar=np.full(d_out, -4.0, dtype),
        has_reward=has_reward)


def kernels():
    if not use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1: the compiled kernels are the twins")
    from fastmbrl.models import _kernels
    return _kernels


def run_step(module, arrays, obs, act, members, noise):
    model = kernel_model_args(arrays)
    dtype = model[0].dtype
    n, e, d_out = obs.shape[0], arrays.ensemble_size, model[9].shape[0]
    x, y, h0, h1, ebuf = _scratch(model[1], n, d_out, dtype)
    out = dict(next_obs=np.full((n, obs.shape[1]), np.nan, dtype), reward=np.full(n, np.nan, dtype),
               std=np.empty((n, d_out), dtype), order=np.empty(n, np.int64))
    module._model_step(obs, act, members, noise, *model, out["order"], np.empty(e + 1, np.int64),
                       np.empty(e, np.int64), x, y, out["std"], h0, h1, ebuf, out["next_obs"],
                       out["reward"])
    return out


def run_predict(module, arrays, obs, act, members):
    model = kernel_model_args(arrays)
    dtype = model[0].dtype
    d_out = model[9].shape[0]
    mean = np.empty((members.size, obs.shape[0], d_out), dtype)
    var = np.empty_like(mean)
    module._model_predict(obs, act, members, *model, *_scratch(model[1], obs.shape[0], d_out, dtype),
                          mean, var)
    return mean, var


def inputs(dtype, d_obs=3, d_act=2, n=37, seed=1):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-3, 3, (n, d_obs)).astype(dtype)
    act = rng.uniform(-1, 1, (n, d_act)).astype(dtype)
    return obs, act, rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS.values()))
@pytest.mark.parametrize("has_reward", [False, True])
@pytest.mark.parametrize("angle_dims", [(), (1,), (0, 1)])
def test_model_step_kernel_matches_twin(dtype, activation, has_reward, angle_dims):
    k = kernels()
    arrays = make_arrays(dtype, activation, has_reward, angle_dims)
    obs, act, rng = inputs(dtype)
    d_out = 3 + int(has_reward)
    members = rng.integers(0, 4, obs.shape[0]).astype(np.int64)
    noise = rng.standard_normal((obs.shape[0], d_out)).astype(dtype)
    got = run_step(k, arrays, obs, act, members, noise)
    want = run_step(_reference, arrays, obs, act, members, noise)
    np.testing.assert_array_equal(got["order"], want["order"])
    for key in ("next_obs", "std") + (("reward",) if has_reward else ()):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL[dtype], atol=ATOL[dtype])
    if not has_reward:      # nothing to write: the reward buffer is left untouched
        assert np.all(np.isnan(got["reward"])) and np.all(np.isnan(want["reward"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS.values()))
@pytest.mark.parametrize("has_reward", [False, True])
def test_model_predict_kernel_matches_twin(dtype, activation, has_reward):
    k = kernels()
    arrays = make_arrays(dtype, activation, has_reward)
    obs, act, _ = inputs(dtype)
    members = np.array([3, 0, 2], np.int64)
    got = run_predict(k, arrays, obs, act, members)
    want = run_predict(_reference, arrays, obs, act, members)
    for g, w in zip(got, want):
        assert g.shape == (3, obs.shape[0], 3 + int(has_reward))
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("module", ["kernel", "twin"])
def test_group_rows_is_a_stable_counting_sort(module):
    k = kernels() if module == "kernel" else _reference
    members = np.array([2, 0, 2, 1, 0, 2, 4], np.int64)
    order, starts, who = np.empty(7, np.int64), np.empty(6, np.int64), np.empty(5, np.int64)
    k._group_rows(members, 5, order, starts, who)
    np.testing.assert_array_equal(order, [1, 4, 3, 0, 2, 5, 6])
    np.testing.assert_array_equal(starts, [0, 2, 3, 6, 6, 7])
    np.testing.assert_array_equal(who, np.arange(5))


# ---------------------------------------------------------------- ModelEnv by hand
def fitted_model(dtype, learn_reward):
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (300, 3))
    act = rng.uniform(-1, 1, (300, 2))
    nxt = obs + 0.1 * np.tanh(obs[:, [1, 2, 0]] + act[:, [0, 1, 0]])
    rew = -np.sum(obs ** 2, axis=1)
    model = fm.models.GaussianEnsemble(3, 2, hidden=(16, 16), ensemble_size=4, num_elites=3,
                                       predict_delta=[True, True, False], angle_dims=(1,),
                                       learn_reward=learn_reward, dtype=dtype, seed=1)
    model.fit(obs, act, nxt, rew, max_epochs=3, progress=False)
    return model, obs[:9].astype(dtype), act[:9].astype(dtype)


def by_hand(model, obs, act, member, eps):
    """The model step written out from the network's parameters (float64)."""
    o = obs.astype(np.float64)
    x = np.concatenate([o[:, [0, 2]], np.sin(o[:, [1]]), np.cos(o[:, [1]]), act], axis=1)
    x = (x - model.input_normalizer.mean) / model.input_normalizer.std
    p = [w.astype(np.float64) for w in model.net.params]
    h = x
    for layer in range(len(p) // 2):
        h = h @ p[2 * layer][member] + p[2 * layer + 1][member]
        if layer < len(p) // 2 - 1:
            h = h / (1 + np.exp(-h))                      # silu
    d = model.out_dim
    sp = lambda z: np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)      # noqa: E731
    mx, mn = model.max_logvar.astype(np.float64), model.min_logvar.astype(np.float64)
    lv = mx - sp(mx - h[:, d:])
    lv = mn + sp(lv - mn)
    on = model.output_normalizer
    mean = on.mean + on.std * h[:, :d]
    std = on.std * np.exp(0.5 * lv)
    y = mean + std * eps
    nxt = y[:, :3] + np.where([True, True, False], o, 0.0)
    return nxt, (y[:, 3] if d > 3 else None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("learn_reward", [False, True])
def test_model_env_step_is_the_reparameterized_sample(dtype, learn_reward):
    model, obs, act = fitted_model(dtype, learn_reward)
    reward_fn = None if learn_reward else (lambda o, a, n: -np.sum(n ** 2, axis=1))
    menv = ModelEnv(model, reward_fn=reward_fn)
    assert menv.out_dim == 3 + int(learn_reward)
    eps = np.random.default_rng(4).standard_normal((9, menv.out_dim))
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for member in (0, 2):
        nxt, rew, term = menv.step(obs, act, noise=eps, members=np.full(9, member))
        want_nxt, want_rew = by_hand(model, obs, act, member, eps)
        assert nxt.dtype == dtype and nxt.shape == (9, 3) and rew.shape == (9,)
        np.testing.assert_allclose(nxt, want_nxt, **tol)
        np.testing.assert_allclose(rew, want_rew if learn_reward else -np.sum(nxt ** 2, axis=1),
                                   **tol)
        assert term.dtype == bool and not term.any()
        # the same step through GaussianEnsemble.sample
        got = model.sample(obs, act, members=member, noise=eps, return_reward=learn_reward)
        np.testing.assert_array_equal(got[0] if learn_reward else got, nxt)


@pytest.mark.parametrize("learn_reward", [False, True])
def test_zero_noise_gives_each_rows_member_mean(learn_reward):
    model, obs, act = fitted_model(np.float64, learn_reward)
    menv = ModelEnv(model, reward_fn=None if learn_reward else (lambda o, a, n: n[:, 0]))
    members = np.array([0, 1, 2, 3, 3, 2, 1, 0, 2])
    nxt, rew, _ = menv.step(obs, act, noise=0, members=members)
    pred = model.predict(obs, act, return_reward=learn_reward)
    rows = np.arange(9)
    np.testing.assert_allclose(nxt, pred[0][members, rows], rtol=1e-12, atol=1e-13)
    if learn_reward:
        np.testing.assert_allclose(rew, pred[2][members, rows], rtol=1e-12, atol=1e-13)
    nxt2, _, _ = menv.step(obs, act, noise=np.zeros((9, menv.out_dim)), members=members)
    np.testing.assert_array_equal(nxt, nxt2)


def member_index_arrays(dtype):
    """Mock: member e predicts next_obs = obs + e on every dim (zero weights, the bias encodes e)."""
    e_size, d_obs, d_act = 5, 2, 1
    dims = np.array([d_obs + d_act, 4, 2 * d_obs], np.int64)
    flat = np.zeros(param_offsets(dims, e_size)[-1], dtype)
    params = unflatten(flat, dims, e_size)
    for e in range(e_size):
        params[3][e, :d_obs] = e
        params[3][e, d_obs:] = -30.0            # tiny variance
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=e_size, activation=3,
        members=np.array([1, 3], np.int64), angle_mask=np.zeros(d_obs, bool),
        delta_mask=np.ones(d_obs, bool), in_mean=np.zeros(3, dtype), in_std=np.ones(3, dtype),
        out_mean=np.zeros(d_obs, dtype), out_std=np.ones(d_obs, dtype),
        max_logvar=np.full(d_obs, 0.5, dtype), min_logvar=np.full(d_obs, -30.0, dtype),
        has_reward=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_row_runs_its_own_member(dtype):
    arrays = member_index_arrays(dtype)
    menv = ModelEnv(arrays, reward_fn=lambda o, a, n: n[:, 0])
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((40, 2)).astype(dtype)
    act = rng.standard_normal((40, 1)).astype(dtype)
    members = rng.integers(0, 5, 40)
    nxt, _, _ = menv.step(obs, act, noise=0, members=members)
    np.testing.assert_allclose(nxt - obs, np.repeat(members[:, None], 2, axis=1), atol=1e-5)
    # default members: a random elite (1 or 3) per row, drawn from rng
    nxt, _, _ = menv.step(obs, act, rng=np.random.default_rng(1), noise=0)
    used = np.round(nxt - obs)[:, 0]
    assert set(used) == {1.0, 3.0}
    nxt2, _, _ = menv.step(obs, act, rng=np.random.default_rng(1), noise=0)
    np.testing.assert_array_equal(nxt, nxt2)


def test_model_env_termination_and_errors():
    arrays = member_index_arrays(np.float64)
    with pytest.raises(ValueError, match="reward_fn"):
        ModelEnv(arrays)
    with pytest.raises(TypeError, match="model"):
        ModelEnv(object(), reward_fn=lambda o, a, n: n[:, 0])
    menv = ModelEnv(arrays, reward_fn=lambda o, a, n: n[:, 0],
                    termination_fn=lambda o, a, n: n[:, 1] > 2.5)
    obs, act = np.zeros((4, 2)), np.zeros((4, 1))
    _, _, term = menv.step(obs, act, noise=0, members=np.array([0, 3, 4, 2]))
    np.testing.assert_array_equal(term, [False, True, True, False])
    with pytest.raises(ValueError, match="rng"):
        menv.step(obs, act, noise=0)
    with pytest.raises(ValueError, match="rng"):
        menv.step(obs, act, members=0)
    with pytest.raises(ValueError, match=r"noise: expected shape \(4, 2\)"):
        menv.step(obs, act, noise=np.zeros((4, 3)), members=0)
    with pytest.raises(ValueError, match="noise"):
        menv.step(obs, act, noise=1.0, members=0)
    with pytest.raises(ValueError, match="members"):
        menv.step(obs, act, noise=0, members=np.array([0, 1, 5, 0]))
    with pytest.raises(ValueError, match="members"):
        menv.step(obs, act, noise=0, members=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"obs: expected shape \(\*, 2\)"):
        menv.step(np.zeros((4, 3)), act, noise=0, members=0)
    with pytest.raises(ValueError, match=r"act: expected shape \(4, 1\)"):
        menv.step(obs, np.zeros((3, 1)), noise=0, members=0)
    with pytest.raises(TypeError, match="rng"):
        menv.step(obs, act, rng=3)
    bad = ModelEnv(arrays, reward_fn=lambda o, a, n: n)
    with pytest.raises(ValueError, match=r"reward_fn: expected it to return shape \(4,\)"):
        bad.step(obs, act, noise=0, members=0)
