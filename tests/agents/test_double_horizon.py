"""DHMBPO's update (``fastmbrl.agents.double_horizon``) and its critic ensemble
(``fastmbrl.agents.ensemble_critic``): the actor's gradient through the training rollout and the
ensemble's mean against central differences (float64), the critic's target by hand, the ensemble's
readings against the layer kernels, and bad input."""
import copy

import numpy as np
import pytest

from fastmbrl._config import ACTIVATIONS
from fastmbrl.agents import double_horizon as dh
from fastmbrl.agents.ensemble_critic import EnsembleCritic
from fastmbrl.models import ModelEnv
from fastmbrl.nn._flat import unflatten
from tests.agents.test_model_based_grads import D_ACT, D_OBS, make_agent, make_noise
from tests.models.test_step_vjp import make_arrays, quad_reward, quad_reward_grad

FD_STEP = 1e-6


def make_critic(dtype=np.float64, dropout=0.2, seed=0):
    critic = EnsembleCritic(D_OBS, D_ACT, hidden=(8, 8), members=3, dropout=dropout, dtype=dtype,
                            seed=seed)
    rng = np.random.default_rng(seed + 11)
    # non-zero last layer (it starts at zero) and bounds set, so every term matters
    critic.params[...] = critic.params + 0.3 * rng.standard_normal(critic.params.size)
    critic.target[...] = critic.params + 0.05 * rng.standard_normal(critic.params.size)
    critic.update_bounds(rng.normal(1.0, 0.5, 100), 0.9)
    return critic


def _setup(h, learned=False, B=5):
    arrays = make_arrays(np.float64, ACTIVATIONS["tanh"], learned, seed=3)
    menv = (ModelEnv(arrays) if learned else
            ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn=quad_reward_grad))
    agent = make_agent()
    obs = np.random.default_rng(2).standard_normal((B, D_OBS))
    noise = make_noise(agent, arrays, B, h + 1, h, menv.out_dim)
    return agent, menv, obs, noise


def _actor_loss(agent, critic, menv, obs, h, noise, alpha, actor, counter):
    rec = dh.taped_rollout(agent, menv, obs, h, noise, alpha, actor=actor)
    critic.rng[1] = counter                       # the same dropout masks at every evaluation
    qm = critic.mean_vjp(rec.s_h, rec.a_h, np.zeros(obs.shape[0]))[0]
    c_h = rec.c_h.astype(np.float64)
    return -np.mean(rec.total + c_h * (np.where(c_h > 0, qm, 0.0) - alpha * rec.logp_h))


@pytest.mark.parametrize("h", [1, 3])
@pytest.mark.parametrize("reward", ["given", "learned"])
def test_actor_gradient_through_rollout_and_ensemble_matches_finite_differences(h, reward):
    agent, menv, obs, noise = _setup(h, learned=reward == "learned")
    critic = make_critic()
    alpha, counter = 0.3, np.uint64(77)
    rec = dh.taped_rollout(agent, menv, obs, h, noise, alpha)
    critic.rng[1] = counter
    B = obs.shape[0]
    _, d_s, d_a = critic.mean_vjp(rec.s_h, rec.a_h, -rec.c_h.astype(np.float64) / B)
    g = np.empty_like(agent.actor)
    dh.rollout_backward(agent, rec, d_s, d_a, alpha, g)
    theta = agent.actor.copy()
    fd = np.empty_like(theta)
    for i in range(theta.size):
        hi, lo = theta.copy(), theta.copy()
        hi[i] += FD_STEP
        lo[i] -= FD_STEP
        fd[i] = (_actor_loss(agent, critic, menv, obs, h, noise, alpha, hi, counter)
                 - _actor_loss(agent, critic, menv, obs, h, noise, alpha, lo, counter)) / (2 * FD_STEP)
    assert np.linalg.norm(fd) > 1e-3
    assert np.linalg.norm(g - fd) / np.linalg.norm(fd) < 1e-6


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_mean_vjp_input_gradient_matches_finite_differences(dropout):
    critic = make_critic(dropout=dropout)
    rng = np.random.default_rng(5)
    obs, act = rng.standard_normal((4, D_OBS)), rng.standard_normal((4, D_ACT))
    cot = rng.standard_normal(4)
    counter = np.uint64(9)
    critic.rng[1] = counter
    q, d_obs, d_act = critic.mean_vjp(obs, act, cot)

    def f(o, a):
        critic.rng[1] = counter
        return float(np.dot(cot, critic.mean_vjp(o, a, np.zeros(4))[0]))

    for x, d, other_first in ((obs, d_obs, True), (act, d_act, False)):
        fd = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += FD_STEP
            xm[idx] -= FD_STEP
            fp = f(xp, act) if other_first else f(obs, xp)
            fm = f(xm, act) if other_first else f(obs, xm)
            fd[idx] = (fp - fm) / (2 * FD_STEP)
        np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-8)
    # the mean of the members' scaled values
    critic.rng[1] = counter
    np.testing.assert_allclose(q, critic.q_values(obs, act, train=True).mean(axis=0), rtol=1e-12)


def test_loss_gradient_matches_finite_differences_with_scaled_output():
    critic = make_critic(dropout=0.0)
    rng = np.random.default_rng(6)
    obs, act = rng.standard_normal((6, D_OBS)), rng.standard_normal((6, D_ACT))
    y = rng.normal(critic.center, critic.width, 6)
    g = np.empty_like(critic.params)
    loss, _ = critic.loss_grad(obs, act, y, g)
    q = critic.q_values(obs, act)
    np.testing.assert_allclose(loss, np.sum(np.mean((q - y) ** 2, axis=1)), rtol=1e-10)
    theta = critic.params.copy()
    scratch = np.empty_like(theta)
    for i in rng.choice(theta.size, 40, replace=False):
        critic.params[...] = theta
        critic.params[i] += FD_STEP
        fp = critic.loss_grad(obs, act, y, scratch)[0]
        critic.params[i] -= 2 * FD_STEP
        fm = critic.loss_grad(obs, act, y, scratch)[0]
        np.testing.assert_allclose(g[i], (fp - fm) / (2 * FD_STEP), rtol=1e-5, atol=1e-7)


def test_target_is_min_of_a_random_pair_of_target_members_clipped_to_bounds():
    critic = make_critic()
    rng = np.random.default_rng(7)
    obs, act = rng.standard_normal((50, D_OBS)), rng.standard_normal((50, D_ACT))
    q = critic.q_values(obs, act, target=True)
    pairs = set()
    for _ in range(30):
        t = critic.target_min(obs, act)
        lo, hi = critic.scalars[0], critic.scalars[1]
        matches = [(i, j) for i in range(3) for j in range(i + 1, 3)
                   if np.allclose(t, np.clip(np.minimum(q[i], q[j]), lo, hi))]
        assert matches
        pairs.update(matches)
    assert len(pairs) > 1                         # the pair is drawn, not fixed


def test_target_runs_only_the_pair_with_the_whole_pass_values_and_counters():
    """target_min runs the two drawn members only; its values, and the generator afterwards, are
    those of the whole target pass followed by the pair's draw, bit for bit."""
    from fastmbrl.nn import _layers_kernels as k

    critic = make_critic()
    twin = make_critic()
    twin.load_state_dict(critic.state_dict())
    rng = np.random.default_rng(3)
    obs, act = rng.standard_normal((40, D_OBS)), rng.standard_normal((40, D_ACT))
    for _ in range(5):
        got = critic.target_min(obs, act)
        q = twin.q_values(obs, act, target=True)              # advances the counter past the masks
        idx = np.empty(2, np.int64)
        k._draw_subset(np.uint64(twin.rng[0]), twin._counter(2), twin.members, idx)
        want = q[idx].min(axis=0)
        if twin.scalars[4]:
            want = np.clip(want, twin.scalars[0], twin.scalars[1])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(critic.rng, twin.rng)
        soft = rng.standard_normal(64)
        critic.update_bounds(soft, 0.99)
        twin.update_bounds(soft, 0.99)


def test_critic_target_is_the_h_step_soft_return():
    """The update's critic loss equals the loss against y computed by hand from the rollout:
    rewards of live rows, entropy from step 1 on, the target ensemble's pair minimum at the end
    (no termination fires here); same draws, same bounds, same dropout masks."""
    h = 3
    agent, menv, obs, noise = _setup(h)
    critic = make_critic()
    metrics = dh.double_horizon_update(copy.deepcopy(agent), copy.deepcopy(critic), menv, obs, h,
                                       noise=noise)
    alpha, g = agent.temperature, agent.gamma
    rec = dh.taped_rollout(agent, menv, obs, h, noise, alpha)
    critic.update_bounds(np.concatenate([rec.rewards[t] - alpha * rec.logps[t]
                                         for t in range(h)]), g)
    q_end = critic.target_min(rec.s_h, rec.a_h)
    y = sum(g ** t * rec.rewards[t] for t in range(h))
    y = y - alpha * sum(g ** t * rec.logps[t] for t in range(1, h))
    y = y + g ** h * (q_end - alpha * rec.logp_h)
    loss = critic.loss_grad(obs, rec.actions[0], y, np.empty_like(critic.params))[0]
    np.testing.assert_allclose(metrics["critic_loss"], loss, rtol=1e-12)
    assert metrics["critic_loss"] > 1e-3


def test_update_moves_critic_actor_and_temperature_and_reports_metrics():
    agent, menv, obs, _ = _setup(2, B=8)
    critic = make_critic()
    before = (agent.actor.copy(), critic.params.copy(), critic.target.copy(),
              agent.alpha_state.copy())
    metrics = dh.double_horizon_update(agent, critic, menv, obs, 2)
    assert set(metrics) == {"critic_loss", "actor_loss", "temperature_loss", "temperature",
                            "entropy", "mean_q"}
    assert all(np.isfinite(v) for v in metrics.values())
    for a, b in zip(before, (agent.actor, critic.params, critic.target, agent.alpha_state)):
        assert not np.array_equal(a, b)


def test_critic_only_update_is_the_full_updates_critic_step_and_leaves_the_actor():
    """train_actor=False: the critic ends where the full update's critic step leaves it (same
    draws); the actor, its Adam moments and the temperature do not move; their metrics are NaN."""
    agent, menv, obs, noise = _setup(2, B=8)
    critic = make_critic()
    full_agent, full_critic = copy.deepcopy(agent), copy.deepcopy(critic)
    before = (agent.actor.copy(), agent.actor_m.copy(), agent.alpha_state.copy(),
              agent.steps.copy(), critic.params.copy())
    full = dh.double_horizon_update(full_agent, full_critic, menv, obs, 2, noise=noise)
    only = dh.double_horizon_update(agent, critic, menv, obs, 2, noise=noise, train_actor=False)
    np.testing.assert_array_equal(critic.params, full_critic.params)
    np.testing.assert_array_equal(critic.target, full_critic.target)
    assert not np.array_equal(critic.params, before[4])
    for a, b in zip(before[:4], (agent.actor, agent.actor_m, agent.alpha_state, agent.steps)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(full_agent.actor, agent.actor)
    for k in ("critic_loss", "temperature", "entropy", "mean_q"):
        assert only[k] == full[k]
    assert np.isnan(only["actor_loss"]) and np.isnan(only["temperature_loss"])


def test_lower_bound_zero_lets_the_targets_fall_to_the_value_of_an_ending_episode():
    """Soft rewards all positive (a hopper paid while upright): the reward bound puts the floor at
    r_lo / (1 - gamma) > 0 and clips a low target up to it; lower_bound="zero" floors at 0."""
    soft = np.random.default_rng(0).uniform(0.5, 3.0, 1000)
    lo = np.quantile(soft, 0.01) / (1 - 0.99)
    critics = {}
    for bound in ("reward", "zero"):
        c = EnsembleCritic(D_OBS, D_ACT, hidden=(8, 8), members=3, lower_bound=bound,
                           dtype=np.float64)
        c.update_bounds(soft, 0.99)
        unflatten(c.target, c.dims, c.members)[-1][...] = -10.0   # every target far below both
        critics[bound] = c
    reward, zero = critics["reward"], critics["zero"]
    assert reward.scalars[0] == pytest.approx(lo) and lo > 40
    assert zero.scalars[0] == 0.0 and zero.scalars[1] == reward.scalars[1]
    assert zero.center == 0.5 * zero.scalars[1]
    obs, act = np.zeros((4, D_OBS)), np.zeros((4, D_ACT))
    np.testing.assert_array_equal(reward.target_min(obs, act), lo)
    np.testing.assert_array_equal(zero.target_min(obs, act), 0.0)
    with pytest.raises(ValueError, match="lower_bound"):
        EnsembleCritic(D_OBS, D_ACT, lower_bound="none")


def test_bad_input_is_refused_with_the_argument_named():
    agent, menv, obs, _ = _setup(1)
    critic = make_critic()
    with pytest.raises(ValueError, match="horizon"):
        dh.double_horizon_update(agent, critic, menv, obs, 0)
    with pytest.raises(ValueError, match="obs"):
        critic.q_values(np.zeros((4, D_OBS + 1)), np.zeros((4, D_ACT)))
    with pytest.raises(ValueError, match="act"):
        critic.q_values(np.zeros((4, D_OBS)), np.zeros((3, D_ACT)))
    with pytest.raises(ValueError, match="members"):
        EnsembleCritic(D_OBS, D_ACT, members=1)
    with pytest.raises(ValueError, match="dropout"):
        EnsembleCritic(D_OBS, D_ACT, dropout=1.0)


@pytest.mark.parametrize("m", [3, 4])
def test_target_members_takes_the_min_over_that_many_drawn_members(m):
    """target_members=m: the minimum over m distinct drawn target members (all of them when m is
    the ensemble's size), as the whole pass's rows give it; with m = members it is the min of all."""
    from fastmbrl.nn import _layers_kernels as k

    critic = EnsembleCritic(D_OBS, D_ACT, hidden=(16, 16), members=4, target_members=m, seed=2,
                            dtype=np.float64)
    rng = np.random.default_rng(5)
    critic.target[...] = 0.3 * rng.standard_normal(critic.target.size)   # the last layer too
    twin = EnsembleCritic(D_OBS, D_ACT, hidden=(16, 16), members=4, target_members=m, seed=2,
                          dtype=np.float64)
    twin.load_state_dict(critic.state_dict())
    obs, act = rng.standard_normal((30, D_OBS)), rng.standard_normal((30, D_ACT))
    drawn = set()
    for _ in range(6):
        got = critic.target_min(obs, act)
        q = twin.q_values(obs, act, target=True)
        idx = np.empty(m, np.int64)
        k._draw_subset(np.uint64(twin.rng[0]), twin._counter(m), twin.members, idx)
        assert len(set(idx.tolist())) == m
        drawn.add(tuple(sorted(idx.tolist())))
        np.testing.assert_array_equal(got, q[idx].min(axis=0))
        if m == 4:
            np.testing.assert_array_equal(got, q.min(axis=0))
    assert (len(drawn) > 1) == (m < 4)


def test_target_members_out_of_range_is_refused():
    for bad in (1, 6):
        with pytest.raises(ValueError, match="target_members"):
            EnsembleCritic(D_OBS, D_ACT, hidden=(8,), members=5, target_members=bad)
