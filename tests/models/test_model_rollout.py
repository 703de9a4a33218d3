"""ModelEnv.rollout: the compiled policy rollout (MBPO's model data) against its NumPy twin, by
hand against ModelEnv.step and the SAC actor, termination handling, reward modes, chunking, errors."""
import numpy as np
import pytest
from numba import njit

from fastmbrl import backend
from fastmbrl.agents import SAC
from fastmbrl.models import GaussianEnsemble
from fastmbrl.models.model_env import ModelEnv
from fastmbrl.models.policy_rollout import PolicyArrays

D_OBS, D_ACT = 3, 2


@njit(cache=True)
def _reward(obs, act, next_obs):
    out = np.empty(obs.shape[0], dtype=obs.dtype)
    for i in range(obs.shape[0]):
        out[i] = -next_obs[i, 0] ** 2 - 0.1 * act[i, 0] ** 2
    return out


@njit(cache=True)
def _term(obs, act, next_obs):
    out = np.empty(obs.shape[0], dtype=np.bool_)
    for i in range(obs.shape[0]):
        out[i] = next_obs[i, 1] > 0.6
    return out


def _reward_py(obs, act, next_obs):
    return -next_obs[:, 0] ** 2 - 0.1 * act[:, 0] ** 2


def _term_py(obs, act, next_obs):
    return next_obs[:, 1] > 0.6


def _setup(dtype, learn_reward=False):
    rng = np.random.default_rng(0)
    n = 400
    obs = rng.normal(size=(n, D_OBS))
    act = rng.uniform(-1, 1, (n, D_ACT))
    nxt = obs + 0.3 * np.tanh(act @ rng.normal(size=(D_ACT, D_OBS))) + 0.05 * obs[:, ::-1]
    model = GaussianEnsemble(D_OBS, D_ACT, hidden=(16, 16), ensemble_size=4, num_elites=3,
                             dtype=dtype, seed=1, learn_reward=learn_reward)
    model.fit(obs, act, nxt, reward=-(nxt[:, 0] ** 2) if learn_reward else None, max_epochs=3,
              progress=False)
    agent = SAC(D_OBS, D_ACT, (np.array([-1.0, 0.0]), np.array([1.0, 2.0])), hidden=(8, 8),
                dtype=dtype, seed=2)
    return model, agent, obs


def _draws(T, n, d_out, dtype, seed=5, elites=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    return dict(act_noise=rng.standard_normal((T, n, D_ACT)).astype(dtype),
                model_noise=rng.standard_normal((T, n, d_out)).astype(dtype),
                members=np.asarray(elites)[rng.integers(0, len(elites), (T, n))])


def _twin(monkeypatch, fn, *args, **kwargs):
    """Run ``fn`` with every kernel on its NumPy twin."""
    with monkeypatch.context() as m:
        m.setattr(backend, "use_compiled", lambda: False)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-4), (np.float64, 1e-10)])
def test_kernel_matches_twin(monkeypatch, dtype, rtol):
    model, agent, obs = _setup(dtype)
    menv = ModelEnv(model, reward_fn=_reward, termination_fn=_term)
    start = obs[:64]
    draws = _draws(5, 64, D_OBS, dtype)
    got = menv.rollout(agent, start, 5, **draws)
    want = _twin(monkeypatch, menv.rollout, agent, start, 5, **draws)
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.counts[0] == 64 and got.counts[-1] < 64       # some rows terminated
    for f in ("obs", "act", "reward", "next_obs"):
        np.testing.assert_allclose(getattr(got, f), getattr(want, f), rtol=rtol, atol=rtol,
                                   err_msg=f)
        assert getattr(got, f).dtype == dtype
    np.testing.assert_array_equal(got.terminated, want.terminated)


def test_first_step_by_hand_matches_model_step_and_actor():
    model, agent, obs = _setup(np.float64)
    menv = ModelEnv(model, reward_fn=_reward)
    start = obs[:10]
    d = _draws(1, 10, D_OBS, np.float64)
    out = menv.rollout(agent, start, 1, act_noise=0, model_noise=d["model_noise"],
                       members=d["members"])
    act = agent.act(start, deterministic=True)           # cast to the bounds' dtype, float32
    np.testing.assert_allclose(out.act, act, rtol=1e-6)
    act = out.act
    nxt, rew, term = menv.step(start, act, noise=d["model_noise"][0], members=d["members"][0])
    np.testing.assert_allclose(out.next_obs, nxt, rtol=1e-12)
    np.testing.assert_allclose(out.reward, rew, rtol=1e-12)
    np.testing.assert_array_equal(out.obs, start)
    assert not out.terminated.any()


def test_stochastic_actions_are_the_squashed_gaussian():
    model, agent, obs = _setup(np.float64)
    menv = ModelEnv(model, reward_fn=_reward)
    start = obs[:20]
    d = _draws(1, 20, D_OBS, np.float64)
    out = menv.rollout(agent, start, 1, **d)
    W = agent.actor_params
    h = np.maximum(start @ W[0][0] + W[1][0], 0)
    h = np.maximum(h @ W[2][0] + W[3][0], 0)
    y = h @ W[4][0] + W[5][0]
    u = y[:, :D_ACT] + np.exp(np.clip(y[:, D_ACT:], -20, 2)) * d["act_noise"][0]
    np.testing.assert_allclose(out.act, agent.scale * np.tanh(u) + agent.bias, rtol=1e-12)


def test_terminated_rows_stop_and_nothing_after_enters():
    model, agent, obs = _setup(np.float64)
    menv = ModelEnv(model, reward_fn=_reward, termination_fn=_term)
    T, n = 6, 80
    d = _draws(T, n, D_OBS, np.float64, seed=9)
    out = menv.rollout(agent, obs[:n], T, **d)
    assert out.obs.shape[0] == out.counts.sum()
    np.testing.assert_array_equal(out.terminated, out.next_obs[:, 1] > 0.6)
    offs = np.concatenate([[0], np.cumsum(out.counts)])
    for t in range(T - 1):
        step = slice(offs[t], offs[t + 1])
        alive = ~out.terminated[step]
        # exactly the rows that did not terminate go on, in order, from where they arrived
        assert out.counts[t + 1] == alive.sum()
        np.testing.assert_array_equal(out.obs[offs[t + 1]:offs[t + 2]], out.next_obs[step][alive])
    assert out.terminated.any() and out.counts[-1] < n
    # every row's transitions: none after its terminated one (rows traced by their states)
    assert np.all(np.diff(out.counts) <= 0)


def test_python_functions_give_the_numba_results():
    model, agent, obs = _setup(np.float64)
    d = _draws(4, 50, D_OBS, np.float64, seed=3)
    a = ModelEnv(model, reward_fn=_reward, termination_fn=_term).rollout(agent, obs[:50], 4, **d)
    b = ModelEnv(model, reward_fn=_reward_py, termination_fn=_term_py).rollout(agent, obs[:50],
                                                                               4, **d)
    np.testing.assert_array_equal(a.counts, b.counts)
    for f in range(5):
        np.testing.assert_allclose(a[f], b[f], rtol=1e-12)


def test_learned_reward_head_and_no_termination():
    model, agent, obs = _setup(np.float64, learn_reward=True)
    menv = ModelEnv(model)
    d = _draws(3, 30, D_OBS + 1, np.float64)
    out = menv.rollout(agent, obs[:30], 3, **d)
    assert out.counts.tolist() == [30, 30, 30] and not out.terminated.any()
    nxt, rew, _ = menv.step(out.obs[:30], out.act[:30], noise=d["model_noise"][0],
                            members=d["members"][0])
    np.testing.assert_allclose(out.reward[:30], rew, rtol=1e-12)
    np.testing.assert_allclose(out.obs[30:60], nxt, rtol=1e-12)


def test_chunks_change_nothing_with_given_draws():
    model, agent, obs = _setup(np.float32)
    menv = ModelEnv(model, reward_fn=_reward, termination_fn=_term)
    d = _draws(4, 100, D_OBS, np.float32)
    one = menv.rollout(agent, obs[:100], 4, **d)
    many = menv.rollout(agent, obs[:100], 4, chunk_rows=30, **d)
    # same rows in the same order; BLAS may block other row counts differently (1 ulp)
    np.testing.assert_array_equal(one.counts, many.counts)
    np.testing.assert_array_equal(one.terminated, many.terminated)
    for f in range(4):
        np.testing.assert_allclose(one[f], many[f], rtol=1e-6, atol=1e-6)


def test_rng_draws_are_seeded_and_use_elites():
    model, agent, obs = _setup(np.float32)
    menv = ModelEnv(model, reward_fn=_reward)
    a = menv.rollout(PolicyArrays.from_agent(agent), obs[:40], 3, np.random.default_rng(4))
    b = menv.rollout(agent, obs[:40], 3, np.random.default_rng(4))
    c = menv.rollout(agent, obs[:40], 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a.next_obs, b.next_obs)
    assert not np.array_equal(a.next_obs, c.next_obs)


def test_bad_arguments_are_named():
    model, agent, obs = _setup(np.float32)
    menv = ModelEnv(model, reward_fn=_reward)
    with pytest.raises(ValueError, match="rng"):
        menv.rollout(agent, obs[:4], 2)
    with pytest.raises(ValueError, match="act_noise"):
        menv.rollout(agent, obs[:4], 2, np.random.default_rng(0), act_noise=np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="start_obs"):
        menv.rollout(agent, obs[:4, :2], 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="length"):
        menv.rollout(agent, obs[:4], 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="policy"):
        menv.rollout(object(), obs[:4], 2, np.random.default_rng(0))
    other = SAC(4, D_ACT, (np.array([-1.0, 0.0]), np.array([1.0, 2.0])), hidden=(8,))
    with pytest.raises(ValueError, match="policy"):
        menv.rollout(other, obs[:4], 2, np.random.default_rng(0))
