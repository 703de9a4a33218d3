"""SVG(H) actor gradients through the model against central finite differences, value-expansion
(MVE) targets by hand on a linear noise-free model, h = 0 / n = 1 against SAC's update, and the new
SAC kernels against their NumPy twins."""
import numpy as np
import pytest

from fastmbrl import backend
from fastmbrl._config import ACTIVATIONS
from fastmbrl.agents import SAC, _mb_grads
from fastmbrl.agents import sac_reference as ref
from fastmbrl.models import ModelArrays, ModelEnv
from fastmbrl.nn._flat import param_offsets
from tests.models.test_step_vjp import make_arrays, quad_reward, quad_reward_grad

FD_STEP = 1e-6
D_OBS, D_ACT = 3, 2


def make_agent(dtype=np.float64, activation="tanh", seed=0, hidden=(8, 8)):
    agent = SAC(D_OBS, D_ACT, (-np.ones(D_ACT), 2 * np.ones(D_ACT)), hidden=hidden,
                activation=activation, dtype=dtype, seed=seed, batch_size=6)
    rng = np.random.default_rng(seed + 7)
    # critics large enough that the bootstrap term matters
    agent.critic[...] = (agent.critic * 3 + 0.1 * rng.standard_normal(agent.critic.size)).astype(dtype)
    agent.critic_target[...] = agent.critic + 0.05
    return agent


def make_noise(agent, arrays, B, n_act, n_model, out_dim, seed=1):
    rng = np.random.default_rng(seed)
    return _mb_grads.ModelNoise(rng.standard_normal((n_act, B, D_ACT)).astype(agent.dtype),
                                rng.standard_normal((n_model, B, out_dim)).astype(agent.dtype),
                                rng.integers(0, arrays.ensemble_size, (n_model, B)))


def fd_grad(agent, menv, obs, h, noise, alpha):
    theta = agent.actor.copy()
    g = np.zeros_like(theta)
    scratch = np.empty_like(theta)
    for i in range(theta.size):
        hi, lo = theta.copy(), theta.copy()
        hi[i] += FD_STEP
        lo[i] -= FD_STEP
        f_hi = _mb_grads.svg_actor_loss_grad(agent, menv, obs, h, noise, alpha, scratch, actor=hi)[0]
        f_lo = _mb_grads.svg_actor_loss_grad(agent, menv, obs, h, noise, alpha, scratch, actor=lo)[0]
        g[i] = (f_hi - f_lo) / (2 * FD_STEP)
    return g


@pytest.mark.parametrize("h", [1, 3, 5])
@pytest.mark.parametrize("reward", ["given", "learned"])
def test_svg_actor_gradient_matches_finite_differences(h, reward):
    """The notes' claim: with the policy's and the model's noise reparameterized (members fixed),
    backpropagation through the sampling and h model steps gives the exact gradient."""
    learned = reward == "learned"
    arrays = make_arrays(np.float64, ACTIVATIONS["tanh"], learned, seed=3)
    menv = (ModelEnv(arrays) if learned else
            ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn=quad_reward_grad))
    agent = make_agent()
    B = 5
    obs = np.random.default_rng(2).standard_normal((B, D_OBS))
    noise = make_noise(agent, arrays, B, h + 1, h, menv.out_dim)
    alpha = 0.3
    g = np.empty_like(agent.actor)
    loss, logp0 = _mb_grads.svg_actor_loss_grad(agent, menv, obs, h, noise, alpha, g)
    assert np.isfinite(loss) and logp0.shape == (B,)
    fd = fd_grad(agent, menv, obs, h, noise, alpha)
    assert np.linalg.norm(fd) > 1e-3
    rel = np.linalg.norm(g - fd) / np.linalg.norm(fd)
    assert rel < 1e-6, rel


def test_svg_gradient_flows_through_the_model():
    """h = 2 differs from h = 0: the model and the reward shape the gradient (not only Q)."""
    arrays = make_arrays(np.float64, ACTIVATIONS["tanh"], False, seed=3)
    menv = ModelEnv(arrays, reward_fn=quad_reward, reward_grad_fn=quad_reward_grad)
    agent = make_agent()
    obs = np.random.default_rng(2).standard_normal((4, D_OBS))
    g0, g2 = np.empty_like(agent.actor), np.empty_like(agent.actor)
    _mb_grads.svg_actor_loss_grad(agent, menv, obs, 0, make_noise(agent, arrays, 4, 1, 0, 3), 0.3, g0)
    _mb_grads.svg_actor_loss_grad(agent, menv, obs, 2, make_noise(agent, arrays, 4, 3, 2, 3), 0.3, g2)
    assert np.linalg.norm(g0 - g2) > 1e-3 * np.linalg.norm(g0)


def test_svg_h0_is_sac_actor_gradient():
    agent = make_agent()
    obs = np.random.default_rng(2).standard_normal((6, D_OBS))
    eps = np.random.default_rng(3).standard_normal((1, 6, D_ACT))
    g = np.empty_like(agent.actor)
    loss, logp = _mb_grads.svg_actor_loss_grad(agent, None, obs, 0,
                                               _mb_grads.ModelNoise(eps, eps[:0], None), 0.4, g)
    g_ref = np.empty_like(agent.actor)
    logp_ref = np.empty(6)
    lo, hi = agent.log_std_bounds
    loss_ref = ref._sac_actor_loss_grad(agent.actor, agent.dims_actor, agent.critic,
                                        agent.dims_critic, 2, obs, eps[0], 0.4, lo, hi,
                                        agent.scale, agent.bias, g_ref, logp_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(logp, logp_ref, rtol=1e-12)


# ----------------------------------------------------------------------------------- MVE targets
M = np.array([[0.1, -0.2, 0.0], [0.05, 0.1, 0.3], [0.0, 0.2, -0.1], [0.5, 0.0, 0.1],
              [0.0, -0.4, 0.2]])          # next = obs + [obs, act] @ M


def linear_model(dtype=np.float64):
    """A 1-hidden-layer identity-activation ensemble computing ``next = obs + [obs, act] @ M``."""
    d_in = D_OBS + D_ACT
    dims = np.array([d_in, d_in, 2 * D_OBS], np.int64)
    flat = np.zeros(param_offsets(dims, 2)[-1], dtype)
    for e in range(2):
        flat[e * d_in * d_in:(e + 1) * d_in * d_in] = np.eye(d_in).ravel()
        off = 2 * (d_in * d_in + d_in) + e * d_in * 2 * D_OBS
        W2 = np.zeros((d_in, 2 * D_OBS))
        W2[:, :D_OBS] = M
        flat[off:off + W2.size] = W2.ravel()
    return ModelArrays(flat=flat, layer_dims=dims, ensemble_size=2, activation=ACTIVATIONS["identity"],
                       members=np.arange(2), angle_mask=np.zeros(D_OBS, bool),
                       delta_mask=np.ones(D_OBS, bool), in_mean=np.zeros(d_in, dtype),
                       in_std=np.ones(d_in, dtype), out_mean=np.zeros(D_OBS, dtype),
                       out_std=np.ones(D_OBS, dtype), max_logvar=np.zeros(D_OBS, dtype),
                       min_logvar=np.full(D_OBS, -5.0, dtype), has_reward=False)


def lin_reward(obs, act, next_obs):
    return -np.sum(next_obs ** 2, axis=1) - 0.1 * np.sum(act ** 2, axis=1)


def lin_term(obs, act, next_obs):
    return next_obs[:, 0] > 1.0


def q_min(agent, params, obs, act):
    z = np.concatenate([obs, act], axis=1)
    return np.minimum(ref._mlp_forward(params, agent.dims_critic, 2, 0, 2, z)[-1][:, 0],
                      ref._mlp_forward(params, agent.dims_critic, 2, 1, 2, z)[-1][:, 0])


def policy(agent, obs, eps):
    """The squashed-Gaussian sample written out (not through the kernels)."""
    out = ref._mlp_forward(agent.actor, agent.dims_actor, 1, 0, 2, obs)[-1]
    mu, ls = out[:, :D_ACT], np.clip(out[:, D_ACT:], *agent.log_std_bounds)
    u = mu + np.exp(ls) * eps
    logp = np.sum(-0.5 * eps ** 2 - ls - 0.5 * np.log(2 * np.pi)
                  - np.log(1 - np.tanh(u) ** 2), axis=1)
    return agent.scale * np.tanh(u) + agent.bias, logp


@pytest.mark.parametrize("n", [1, 2, 3])
def test_mve_target_by_hand(n):
    agent = make_agent()
    menv = ModelEnv(linear_model(), reward_fn=lin_reward, termination_fn=lin_term)
    rng = np.random.default_rng(5)
    B = 8
    nobs = 0.6 * rng.standard_normal((B, D_OBS))
    nobs[0, 0] = 1.5                      # terminates at its first imagined step (n >= 2)
    rew = rng.standard_normal(B)
    term = np.zeros(B, bool)
    term[1] = True                        # a real terminal row: y = r
    eps = rng.standard_normal((n, B, D_ACT))
    noise = _mb_grads.ModelNoise(eps, rng.standard_normal((n - 1, B, D_OBS)),
                                 rng.integers(0, 2, (n - 1, B)))
    alpha, g = 0.2, agent.gamma
    y = _mb_grads.mve_critic_target(agent, menv, rew, nobs, term, n, noise, alpha)
    # by hand: next = obs + [obs, act] @ M + std * noise, with the raw log-variance 0 through the
    # soft bounds (max 0, min -5)
    expect = np.empty(B)
    for b in range(B):
        total, disc, s = rew[b], g, nobs[b:b + 1]
        if term[b]:
            expect[b] = total
            continue
        done = False
        for t in range(1, n):
            a, lp = policy(agent, s, eps[t - 1, b:b + 1])
            lv = 0.0 - np.log1p(np.exp(0.0 - 0.0))            # soft upper bound at max_logvar 0
            lv = -5.0 + np.log1p(np.exp(lv + 5.0))             # soft lower bound at -5
            s_next = s + np.concatenate([s, a], axis=1) @ M + np.exp(0.5 * lv) * noise.model[t - 1, b]
            total += disc * (lin_reward(s, a, s_next)[0] - alpha * lp[0])
            disc *= g
            done = bool(lin_term(s, a, s_next)[0])
            s = s_next
            if done:
                break
        if not done:
            a, lp = policy(agent, s, eps[n - 1, b:b + 1])
            total += disc * (q_min(agent, agent.critic_target, s, a)[0] - alpha * lp[0])
        expect[b] = total
    np.testing.assert_allclose(y, expect, rtol=1e-10, atol=1e-10)
    assert y[1] == rew[1]


def test_mve_n1_is_sac_target():
    agent = make_agent()
    rng = np.random.default_rng(5)
    nobs, rew = rng.standard_normal((6, D_OBS)), rng.standard_normal(6)
    term = np.array([0, 1, 0, 0, 1, 0], bool)
    eps = rng.standard_normal((1, 6, D_ACT))
    y = _mb_grads.mve_critic_target(agent, None, rew, nobs, term, 1,
                                    _mb_grads.ModelNoise(eps, None, None), 0.3)
    a, lp = policy(agent, nobs, eps[0])
    expect = rew + agent.gamma * (~term) * (q_min(agent, agent.critic_target, nobs, a) - 0.3 * lp)
    np.testing.assert_allclose(y, expect, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------- h = 0 / n = 1 is SAC's update
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_h0_n1_update_is_sac_update_bit_for_bit(dtype):
    a1, a2 = make_agent(dtype, "relu"), make_agent(dtype, "relu")
    rng = np.random.default_rng(0)
    B = 6
    batch = {"obs": rng.standard_normal((B, D_OBS)).astype(dtype),
                 "act": rng.uniform(-1, 2, (B, D_ACT)).astype(dtype),
                 "reward": rng.standard_normal(B).astype(dtype),
                 "next_obs": rng.standard_normal((B, D_OBS)).astype(dtype),
                 "terminated": np.array([0, 0, 1, 0, 0, 0], bool)}
    noise = rng.standard_normal((2, B, D_ACT)).astype(dtype)
    for _ in range(3):
        m1 = a1.update(batch, noise=noise)
        m2 = _mb_grads.model_based_update(
            a2, None, batch["obs"], batch["act"], batch["reward"], batch["next_obs"],
            batch["terminated"], critic_noise=_mb_grads.ModelNoise(noise[:1], None, None),
            actor_noise=_mb_grads.ModelNoise(noise[1:], None, None))
    for k in ("actor", "critic", "critic_target", "actor_m", "actor_v", "critic_m", "critic_v",
              "alpha_state", "steps"):
        np.testing.assert_array_equal(getattr(a1, k), getattr(a2, k), err_msg=k)
    assert m1 == pytest.approx(m2, rel=1e-5)


def test_actor_grad_clip_bounds_the_norm():
    g = np.array([3.0, 4.0])
    assert _mb_grads.clip_global_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8])
    g2 = np.array([0.3, 0.4])
    _mb_grads.clip_global_norm(g2, 1.0)
    np.testing.assert_array_equal(g2, [0.3, 0.4])


# ------------------------------------------------------------------------- new kernels vs twins
@pytest.mark.skipif(not backend.use_compiled(), reason="compares the compiled kernels")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_new_sac_kernels_match_twins(dtype, activation):
    from fastmbrl.agents import _sac_kernels as k

    agent = make_agent(dtype, activation)
    code = agent.activation_code
    rng = np.random.default_rng(4)
    B = 7
    obs = rng.standard_normal((B, D_OBS)).astype(dtype)
    eps = rng.standard_normal((B, D_ACT)).astype(dtype)
    lo, hi = agent.log_std_bounds
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    outs = []
    for mod in (k, ref):
        a, lp = np.empty((B, D_ACT), dtype), np.empty(B, dtype)
        mod._actor_sample(agent.actor, agent.dims_actor, code, obs, eps, lo, hi, agent.scale,
                          agent.bias, a, lp)
        g, dobs = np.empty_like(agent.actor), np.empty((B, D_OBS), dtype)
        d_act = np.ascontiguousarray(rng.standard_normal((B, D_ACT)).astype(dtype)) if not outs \
            else outs[0][-1]
        d_logp = np.linspace(-1, 1, B).astype(dtype)
        mod._actor_vjp(agent.actor, agent.dims_actor, code, obs, eps, d_act, d_logp, lo, hi,
                       agent.scale, agent.bias, g, dobs)
        q, qo, qa = np.empty(B, dtype), np.empty((B, D_OBS), dtype), np.empty((B, D_ACT), dtype)
        mod._critic_min_vjp(agent.critic, agent.dims_critic, code, obs, a, d_logp, q, qo, qa)
        outs.append((a, lp, g, dobs, q, qo, qa, d_act))
    for x, y in zip(outs[0][:-1], outs[1][:-1]):
        np.testing.assert_allclose(x, y, **tol)


def test_td_k_imagined_targets_are_the_shorter_expansions():
    """MVE's TD-k rows: at the imagined s_1 (with a_1), the target is the (n-1)-step expansion
    from s_1's own transition (r_1, s_2, d_1) with the same later draws."""
    agent = make_agent()
    menv = ModelEnv(linear_model(), reward_fn=lin_reward, termination_fn=lin_term)
    rng = np.random.default_rng(8)
    B, n = 7, 3
    nobs = 0.6 * rng.standard_normal((B, D_OBS))
    nobs[2, 0] = 1.5
    term = np.zeros(B, bool)
    term[4] = True
    rew = rng.standard_normal(B)
    noise = _mb_grads.ModelNoise(rng.standard_normal((n, B, D_ACT)),
                                 rng.standard_normal((n - 1, B, D_OBS)),
                                 rng.integers(0, 2, (n - 1, B)))
    y, (obs_i, act_i, y_i) = _mb_grads.mve_critic_target(agent, menv, rew, nobs, term, n, noise,
                                                         0.2, imagined=True)
    np.testing.assert_array_equal(
        y, _mb_grads.mve_critic_target(agent, menv, rew, nobs, term, n, noise, 0.2))
    alive1 = ~term
    a1, _ = policy(agent, nobs, noise.act[0])
    s2, r1, d1 = menv.step(nobs, a1, noise=noise.model[0], members=noise.members[0])
    alive2 = alive1 & ~d1
    assert obs_i.shape == (alive1.sum() + alive2.sum(), D_OBS)
    later = _mb_grads.ModelNoise(noise.act[1:], noise.model[1:], noise.members[1:])
    y1 = _mb_grads.mve_critic_target(agent, menv, r1, s2, d1, n - 1, later, 0.2)
    # stacked last step first: t = 2 rows, then t = 1 rows
    k = alive2.sum()
    np.testing.assert_allclose(obs_i[k:], nobs[alive1], rtol=1e-12)
    np.testing.assert_allclose(act_i[k:], a1[alive1], rtol=1e-10)
    np.testing.assert_allclose(y_i[k:], y1[alive1], rtol=1e-10, atol=1e-12)


def test_general_driver_with_horizons_off_matches_sac_update():
    """The step-by-step driver (taken when a switch is on; here forced by a clip that never acts)
    assembles critic, actor, temperature and Polyak steps exactly as SAC's fused kernel."""
    a1, a2 = make_agent(np.float64, "relu"), make_agent(np.float64, "relu")
    rng = np.random.default_rng(1)
    B = 6
    obs, nobs = rng.standard_normal((B, D_OBS)), rng.standard_normal((B, D_OBS))
    act, rew = rng.uniform(-1, 2, (B, D_ACT)), rng.standard_normal(B)
    term = np.array([0, 1, 0, 0, 0, 0], bool)
    noise = rng.standard_normal((2, B, D_ACT))
    for _ in range(3):
        m1 = a1.update(dict(obs=obs, act=act, reward=rew, next_obs=nobs, terminated=term),
                       noise=noise)
        m2 = _mb_grads.model_based_update(
            a2, None, obs, act, rew, nobs, term, actor_grad_clip=1e300,
            critic_noise=_mb_grads.ModelNoise(noise[:1], None, None),
            actor_noise=_mb_grads.ModelNoise(noise[1:], None, None))
    for k in ("actor", "critic", "critic_target", "alpha_state"):
        np.testing.assert_allclose(getattr(a1, k), getattr(a2, k), rtol=1e-10, atol=1e-12,
                                   err_msg=k)
    assert m1 == pytest.approx(m2, rel=1e-9)
