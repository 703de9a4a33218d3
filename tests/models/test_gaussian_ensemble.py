"""GaussianEnsemble: transforms, prediction vs the ModelArrays reference, sampling, save/load."""
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl._config import ATOL, RTOL
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.models import GaussianEnsemble, predict_from_arrays


def toy_data(n, obs_dim=3, act_dim=1, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-2, 2, size=(n, obs_dim))
    act = rng.uniform(-1, 1, size=(n, act_dim))
    nxt = obs + 0.1 * np.sin(obs) + 0.2 * act[:, :1] + 0.01 * rng.standard_normal((n, obs_dim))
    reward = -np.sum(obs ** 2, axis=1) + 0.05 * rng.standard_normal(n)
    return obs, act, nxt, reward


def small_model(**kw):
    cfg = dict(hidden=(16, 16), ensemble_size=3, num_elites=2, seed=0)
    cfg.update(kw)
    return GaussianEnsemble(3, 1, **cfg)


# ---------------------------------------------------------------- transforms, by hand
def test_model_inputs_hand_computed():
    model = small_model(angle_dims=(1,))
    obs = np.array([[0.5, np.pi / 2, 2.0]])
    act = np.array([[0.3]])
    # [non-angle obs dims 0 and 2, sin(pi/2) = 1, cos(pi/2) = 0, action]
    np.testing.assert_allclose(model.model_inputs(obs, act), [[0.5, 2.0, 1.0, 0.0, 0.3]],
                               atol=1e-15)
    assert model.in_dim == 5 and model.net.layer_dims[0] == 5


def test_model_targets_hand_computed():
    model = small_model(angle_dims=(0,), predict_delta=[True, True, False], learn_reward=True)
    obs = np.array([[3.0, 1.0, 7.0]])
    nxt = np.array([[-3.0, 1.5, 8.0]])
    # dim 0 is an angle: -3 - 3 = -6 wraps to 2 pi - 6 = 0.28318...; dim 1 a change 0.5;
    # dim 2 predicted directly (8); then the reward column
    np.testing.assert_allclose(model.model_targets(obs, nxt, np.array([-2.0])),
                               [[2 * np.pi - 6.0, 0.5, 8.0, -2.0]], rtol=1e-12)
    assert model.out_dim == 4 and model.net.layer_dims[-1] == 8


def test_normalization_comes_from_fit_data_and_is_updated():
    obs, act, nxt, _ = toy_data(400)
    act[:, 0] = 0.25                        # a constant input column
    model = small_model()
    model.fit(obs[:200], act[:200], nxt[:200], max_epochs=1, progress=False)
    inputs = model.model_inputs(obs[:200], act[:200])
    np.testing.assert_allclose(model.input_normalizer.mean, inputs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.input_normalizer.std[:3], inputs.std(0)[:3], rtol=1e-5)
    assert model.input_normalizer.std[3] == 1.0              # constant column: divided by 1
    deltas = nxt[:200] - obs[:200]
    np.testing.assert_allclose(model.output_normalizer.std, deltas.std(0), rtol=1e-5)
    model.fit(obs, act, nxt, max_epochs=1, progress=False)   # refit on the grown data set
    np.testing.assert_allclose(model.output_normalizer.mean, (nxt - obs).mean(0), rtol=1e-4,
                               atol=1e-7)


# ---------------------------------------------------------------- predict vs the reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("learn_reward", [False, True])
def test_predict_matches_predict_from_arrays(dtype, learn_reward):
    obs, act, nxt, rew = toy_data(300)
    model = small_model(dtype=dtype, angle_dims=(2,), predict_delta=[True, False, True],
                        learn_reward=learn_reward)
    model.fit(obs, act, nxt, rew, max_epochs=3, progress=False)
    q_obs, q_act = obs[:17].astype(dtype), act[:17].astype(dtype)
    ref = predict_from_arrays(model.arrays(), q_obs, q_act)
    # and an independent path: the training network's forward pass and the loss's soft bounds
    x = model.input_normalizer.normalize(model.model_inputs(q_obs, q_act))
    out, _ = model.net.forward(np.ascontiguousarray(np.broadcast_to(x, (3,) + x.shape)))
    d = model.out_dim
    lv, _ = fm.nn.soft_bound_logvar(np.ascontiguousarray(out[..., d:]), model.max_logvar,
                                    model.min_logvar)
    on = model.output_normalizer
    full_mean = on.mean + on.std * out[..., :d]
    full_var = on.std ** 2 * np.exp(lv)
    delta = np.where(model.delta_mask, q_obs, 0)
    tol = dict(rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_allclose(ref[0], full_mean[..., :3] + delta, **tol)
    np.testing.assert_allclose(ref[1], full_var[..., :3], **tol)
    if learn_reward:
        np.testing.assert_allclose(ref[2], full_mean[..., 3], **tol)
        np.testing.assert_allclose(ref[3], full_var[..., 3], **tol)
    if learn_reward:
        mean, var, r_mean, r_var = model.predict(q_obs, q_act, return_reward=True)
        np.testing.assert_allclose(r_mean, ref[2], rtol=RTOL[dtype], atol=ATOL[dtype])
        np.testing.assert_allclose(r_var, ref[3], rtol=RTOL[dtype], atol=ATOL[dtype])
    else:
        mean, var = model.predict(q_obs, q_act)
        assert ref[2] is None
    assert mean.shape == var.shape == (3, 17, 3) and mean.dtype == dtype
    np.testing.assert_allclose(mean, ref[0], rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_allclose(var, ref[1], rtol=RTOL[dtype], atol=ATOL[dtype])
    assert np.all(var > 0)


def test_arrays_are_live_views_refreshed_after_fit():
    obs, act, nxt, _ = toy_data(200)
    model = small_model(ensemble_size=4, num_elites=2)
    arr = model.arrays()
    assert np.shares_memory(arr.flat, model.net.flat)
    assert arr.ensemble_size == 4 and arr.activation == fm._config.ACTIVATIONS["silu"]
    np.testing.assert_array_equal(arr.layer_dims, [4, 16, 16, 6])
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    arr2 = model.arrays()
    np.testing.assert_array_equal(arr2.members, model.elites)
    assert arr2.in_mean is model.input_normalizer.mean
    assert model.arrays() is arr2                       # cached until the next fit


# ---------------------------------------------------------------- sample and uncertainty
def test_sample_follows_the_chosen_members_gaussian():
    obs, act, nxt, _ = toy_data(300)
    model = small_model()
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    n = 4000
    q_obs = np.repeat(obs[:1], n, axis=0)
    q_act = np.repeat(act[:1], n, axis=0)
    mean, var = model.predict(q_obs[:1], q_act[:1])
    rng = np.random.default_rng(3)
    draws = model.sample(q_obs, q_act, rng, members=np.full(n, 2))
    assert draws.shape == (n, 3)
    sd = np.sqrt(var[2, 0])
    # sample mean within 4 standard errors, sample std within 10%
    assert np.all(np.abs(draws.mean(0) - mean[2, 0]) < 4 * sd / np.sqrt(n))
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)
    # default: a random elite per row; all rows in an elite's neighbourhood
    draws = model.sample(q_obs[:50], q_act[:50], rng)
    assert draws.shape == (50, 3) and np.all(np.isfinite(draws))
    with pytest.raises(ValueError, match="members"):
        model.sample(q_obs[:5], q_act[:5], rng, members=np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="members"):
        model.sample(q_obs[:5], q_act[:5], rng, members=np.array([0, 1]))
    one = model.sample(q_obs[:5], q_act[:5], np.random.default_rng(0), members=1)
    np.testing.assert_array_equal(
        one, model.sample(q_obs[:5], q_act[:5], np.random.default_rng(0), members=np.ones(5, int)))


def test_sample_with_reward_head():
    obs, act, nxt, rew = toy_data(300)
    model = small_model(learn_reward=True)
    model.fit(obs, act, nxt, rew, max_epochs=2, progress=False)
    s, r = model.sample(obs[:8], act[:8], np.random.default_rng(0), return_reward=True)
    assert s.shape == (8, 3) and r.shape == (8,)
    with pytest.raises(ValueError, match="reward"):
        small_model().predict(obs[:2], act[:2], return_reward=True)
    with pytest.raises(ValueError, match="reward: required"):
        model.fit(obs, act, nxt, progress=False)


def test_uncertainty_splits_aleatoric_and_epistemic():
    obs, act, nxt, _ = toy_data(300)
    model = small_model(ensemble_size=4, num_elites=3)
    model.fit(obs, act, nxt, max_epochs=2, progress=False)
    alea, epi = model.uncertainty(obs[:9], act[:9])
    mean, var = model.predict(obs[:9], act[:9])
    e = model.elites
    np.testing.assert_allclose(alea, var[e].mean(0), rtol=1e-6)
    np.testing.assert_allclose(epi, ((mean[e] - mean[e].mean(0)) ** 2).mean(0), rtol=1e-4,
                               atol=1e-12)
    alea_all, _ = model.uncertainty(obs[:9], act[:9], members=np.arange(4))
    np.testing.assert_allclose(alea_all, var.mean(0), rtol=1e-6)


# ---------------------------------------------------------------- save / load
def test_save_load_is_bit_exact_and_refits_identically(tmp_path):
    obs, act, nxt, rew = toy_data(400)
    model = small_model(angle_dims=(0,), learn_reward=True, weight_decay=1e-4)
    model.fit(obs[:300], act[:300], nxt[:300], rew[:300], max_epochs=3, progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = GaussianEnsemble.load(path)
    np.testing.assert_array_equal(loaded.net.flat, model.net.flat)
    np.testing.assert_array_equal(loaded.elites, model.elites)
    for a, b in zip(loaded.predict(obs, act, return_reward=True),
                    model.predict(obs, act, return_reward=True)):
        np.testing.assert_array_equal(a, b)
    # optimizer state and generator state travel too: the warm refit continues identically
    h1 = model.fit(obs, act, nxt, rew, max_epochs=2, progress=False)
    h2 = loaded.fit(obs, act, nxt, rew, max_epochs=2, progress=False)
    np.testing.assert_array_equal(h1.train_loss, h2.train_loss)
    np.testing.assert_array_equal(loaded.net.flat, model.net.flat)


def test_load_refuses_corrupt_or_mismatched_files(tmp_path):
    model = small_model()
    path = tmp_path / "model.npz"
    model.save(path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.npz"):
        GaussianEnsemble.load(truncated)
    data = dict(np.load(path))
    data["format_version"] = np.array(99)
    np.savez(tmp_path / "v99.npz", **data)
    with pytest.raises(ValueError, match="format version 99"):
        GaussianEnsemble.load(tmp_path / "v99.npz")
    data = dict(np.load(path))
    data["flat"] = data["flat"][:-1]
    np.savez(tmp_path / "short.npz", **data)
    with pytest.raises(ValueError, match="flat"):
        GaussianEnsemble.load(tmp_path / "short.npz")
    data = dict(np.load(path))
    del data["opt_max_logvar"]
    np.savez(tmp_path / "nobounds.npz", **data)
    with pytest.raises(ValueError, match="opt_max_logvar"):
        GaussianEnsemble.load(tmp_path / "nobounds.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a GaussianEnsemble"):
        GaussianEnsemble.load(tmp_path / "other.npz")


# ---------------------------------------------------------------- argument checks
def test_constructor_and_query_validation():
    with pytest.raises(ValueError, match="num_elites"):
        GaussianEnsemble(3, 1, ensemble_size=3, num_elites=4)
    with pytest.raises(ValueError, match="predict_delta"):
        GaussianEnsemble(3, 1, predict_delta=[True, False])
    with pytest.raises(ValueError, match="angle_dims"):
        GaussianEnsemble(3, 1, angle_dims=(3,))
    with pytest.raises(ValueError, match="weight_decay"):
        GaussianEnsemble(3, 1, hidden=(8,), weight_decay=[0.1, 0.1, 0.1])
    model = small_model()
    with pytest.raises(ValueError, match="obs: expected shape"):
        model.predict(np.zeros((2, 4)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="act: expected shape"):
        model.predict(np.zeros((2, 3)), np.zeros((3, 1)))
    with pytest.raises(TypeError, match="rng"):
        model.sample(np.zeros((2, 3)), np.zeros((2, 1)), rng=0)


def test_pets_weight_decay():
    model = GaussianEnsemble(3, 1, hidden=(200,) * 4, weight_decay="pets")   # 5 weight matrices
    np.testing.assert_allclose(model.weight_decay, [2.5e-5, 4.375e-5, 6.25e-5, 8.125e-5, 1e-4])
    # the weight matrices are decayed, the biases are not (nor the bounds: GaussianTrainStep)
    np.testing.assert_allclose(model._step.weight_decay[0::2], model.weight_decay)
    assert model._step.weight_decay[1::2] == [0.0] * 5


def test_defaults_are_the_run_configurations():
    from fastmbrl.config import ModelConfig

    model = GaussianEnsemble(3, 1)          # 3 x 200 hidden: 4 weight matrices
    assert model.hidden == ModelConfig.hidden and model.ensemble_size == ModelConfig.ensemble_size
    assert model.weight_decay == [ModelConfig.weight_decay] * 4


def test_fit_from_a_replay_buffer_with_reward_head():
    obs, act, nxt, rew = toy_data(500)
    buf = ReplayBuffer(400, 3, 1, overflow="wrap")
    buf.add_batch(obs, act, rew, nxt, np.zeros(500, bool), np.zeros(500, bool))   # wraps
    model = small_model(learn_reward=True)
    hist = model.fit(buf.obs, buf.act, buf.next_obs, buf.reward, max_epochs=2, progress=False)
    assert hist.n_train + hist.n_holdout == 400
    np.testing.assert_allclose(model.output_normalizer.mean[3], rew[100:].mean(), rtol=1e-4)
