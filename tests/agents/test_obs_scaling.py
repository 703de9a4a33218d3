"""Normalized observation inputs kept in raw-input form (``fastmbrl.agents.obs_scaling``): the
folded network reads raw observations as the master reads normalized ones, the gradient mapped back
to the master matches central differences (float64), identity statistics give the plain update,
and bad input is refused."""
import copy

import numpy as np
import pytest

from fastmbrl.agents import double_horizon as dh
from fastmbrl.agents.ensemble_critic import EnsembleCritic
from fastmbrl.agents.obs_scaling import ObsScaling, fold_first_layer, unfold_first_layer_grad
from tests.agents.test_double_horizon import _setup, make_critic
from tests.agents.test_model_based_grads import D_ACT, D_OBS

FD_STEP = 1e-6


def _stats(seed=5):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 2.0, D_OBS), rng.uniform(0.1, 10.0, D_OBS)


def _first_layer_size(critic):
    d0, d1 = int(critic.dims[0]), int(critic.dims[1])
    return critic.members * (d0 * d1 + d1)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_folded_critic_on_raw_inputs_equals_master_on_normalized_inputs(dtype, tol):
    critic = make_critic(dtype=dtype, dropout=0.0)
    mean, std = _stats()
    n = _first_layer_size(critic)
    folded = copy.deepcopy(critic)
    fold_first_layer(critic.params[:n].copy(), critic.dims, critic.members, mean, std,
                     folded.params[:n])
    rng = np.random.default_rng(1)
    obs = (mean + std * rng.standard_normal((7, D_OBS))).astype(dtype)
    act = rng.uniform(-1, 1, (7, D_ACT)).astype(dtype)
    raw = folded.q_values(obs, act)
    normalized = critic.q_values(((obs - mean) / std).astype(dtype), act)
    np.testing.assert_allclose(raw, normalized, rtol=tol, atol=tol)
    # the action's rows and every later layer are untouched
    np.testing.assert_array_equal(folded.params[n:], critic.params[n:])


def test_master_gradient_matches_central_differences_float64():
    critic = make_critic(dtype=np.float64, dropout=0.0)
    mean, std = _stats()
    n = _first_layer_size(critic)
    master = critic.params[:n].copy()
    rng = np.random.default_rng(2)
    obs = mean + std * rng.standard_normal((6, D_OBS))
    act = rng.uniform(-1, 1, (6, D_ACT))
    y = rng.standard_normal(6)

    def loss(m):
        fold_first_layer(m, critic.dims, critic.members, mean, std, critic.params[:n])
        return critic.loss_grad(obs, act, y, np.empty_like(critic.params))[0]

    loss(master)
    g = np.empty_like(critic.params)
    critic.loss_grad(obs, act, y, g)
    g0 = np.empty(n)
    unfold_first_layer_grad(g[:n], critic.dims, critic.members, mean, std, g0)
    for i in rng.choice(n, 40, replace=False):
        up, down = master.copy(), master.copy()
        up[i] += FD_STEP
        down[i] -= FD_STEP
        fd = (loss(up) - loss(down)) / (2 * FD_STEP)
        assert abs(fd - g0[i]) <= 1e-6 * max(1.0, abs(fd)), (i, fd, g0[i])


def test_identity_statistics_give_the_plain_update():
    agent, menv, obs, noise = _setup(2)
    critic = make_critic(dropout=0.0)
    plain_agent, plain_critic = copy.deepcopy(agent), copy.deepcopy(critic)
    scaling = ObsScaling(agent, critic)
    m1 = dh.double_horizon_update(agent, critic, menv, obs, 2, noise=noise, scaling=scaling)
    m2 = dh.double_horizon_update(plain_agent, plain_critic, menv, obs, 2, noise=noise)
    assert m1 == m2
    np.testing.assert_allclose(agent.actor, plain_agent.actor, rtol=0, atol=1e-15)
    np.testing.assert_allclose(critic.params, plain_critic.params, rtol=0, atol=1e-15)
    np.testing.assert_allclose(critic.target, plain_critic.target, rtol=0, atol=1e-15)


def test_new_statistics_refold_and_the_update_trains_the_master():
    agent, menv, obs, noise = _setup(2)
    critic = make_critic(dropout=0.0)
    scaling = ObsScaling(agent, critic)
    rng = np.random.default_rng(3)
    data = rng.normal(1.0, 3.0, (500, D_OBS))
    before = scaling.state_dict()
    scaling.set_stats(data)
    np.testing.assert_allclose(scaling.mean, data.mean(0))
    np.testing.assert_allclose(scaling.std, data.std(0))
    # the actor in raw form now reads (s - mean) / std with the master's weights
    x = obs[:3]
    folded_mu = agent.act(x[0], deterministic=True)
    agent_master = copy.deepcopy(agent)
    agent_master.actor[:before["actor"].size] = before["actor"]
    master_mu = agent_master.act((x[0] - scaling.mean) / scaling.std, deterministic=True)
    np.testing.assert_allclose(folded_mu, master_mu, rtol=1e-10, atol=1e-12)
    dh.double_horizon_update(agent, critic, menv, obs, 2, noise=noise, scaling=scaling)
    after = scaling.state_dict()
    for k in ("actor", "critic", "critic_target"):
        assert not np.array_equal(after[k], before[k]), k
    # a state round trip restores the statistics and masters exactly
    other = ObsScaling(copy.deepcopy(agent), copy.deepcopy(critic))
    other.load_state_dict(after)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, after[k])


def test_bad_input_is_refused_with_the_argument_named():
    agent, _, _, _ = _setup(1)
    critic = make_critic()
    scaling = ObsScaling(agent, critic)
    with pytest.raises(ValueError, match=r"obs: expected an array \(N >= 1, 3\), got shape"):
        scaling.set_stats(np.zeros((10, D_OBS + 1)))
    with pytest.raises(ValueError, match="state\\['std'\\]"):
        scaling.load_state_dict({**scaling.state_dict(), "std": np.ones(D_OBS + 2)})
    other = EnsembleCritic(D_OBS + 1, D_ACT, hidden=(8, 8), members=2, dtype=np.float64)
    with pytest.raises(ValueError, match="critic: expected obs_dim"):
        ObsScaling(agent, other)
