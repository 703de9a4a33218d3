"""fastmbrl.agents.SAC: a hand-worked update, learning checks, state round trips and bad input."""
import gymnasium as gym
import numpy as np
import pytest

from fastmbrl.agents import SAC
from fastmbrl.buffer import ReplayBuffer, Transition


def small_agent(**kw):
    kw.setdefault("hidden", (16, 16))
    kw.setdefault("seed", 3)
    return SAC(3, 2, (np.array([-1.0, 0.0]), np.array([1.0, 2.0])), batch_size=8, **kw)


def filled_buffer(n=50, seed=0, obs_dim=3, act_dim=2):
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(n, obs_dim, act_dim)
    buf.add_batch(rng.normal(size=(n, obs_dim)), rng.uniform(0, 1, (n, act_dim)), rng.normal(size=n),
                  rng.normal(size=(n, obs_dim)), rng.random(n) < 0.1, rng.random(n) < 0.1)
    return buf


def test_hand_worked_update():
    """obs 1, act 1 in [-1, 1], hidden (1,), batch of one row, zero noise, lr 0.01, alpha 1."""
    agent = SAC(1, 1, (np.array([-1.0]), np.array([1.0])), hidden=(1,), lr=0.01, dtype=np.float64)
    aW0, ab0, aW1, ab1 = agent.actor_params
    aW0[...] = 1.0
    ab0[...] = 0.0
    aW1[...] = [[[0.5, 0.0]]]            # mean = 0.5 h, raw log-std = log 0.5
    ab1[...] = [[0.0, np.log(0.5)]]
    cW0, cb0, cW1, cb1 = agent.critic_params
    cW0[...] = 1.0                        # Q_0 = relu(s + a), Q_1 = 2 relu(s + a)
    cb0[...] = 0.0
    cW1[...] = [[[1.0]], [[2.0]]]
    cb1[...] = 0.0
    agent.critic_target[...] = agent.critic
    batch = {"obs": [[1.0]], "act": [[0.2]], "reward": [1.0], "next_obs": [[1.0]], "terminated": [False]}
    m = agent.update(batch, noise=np.zeros((2, 1, 1)))
    # next action: h = 1, u' = 0.5, a' = tanh 0.5 = 0.46211716
    # log pi(a') = log N(0.5; 0.5, 0.5) - log(1 - tanh^2 0.5) = -0.22579135 + 0.24022901 = 0.01443766
    # Q'_0 = 1.46211716, Q'_1 = 2.92423431; y = 1 + 0.99 (1.46211716 - 0.01443766) = 2.43320270
    # Q_0(s, a) = 1.2, Q_1 = 2.4: loss 0.5 ((1.2 - y)^2 + (2.4 - y)^2) = 0.76094566; mean Q 1.8
    np.testing.assert_allclose(m["critic_loss"], 0.76094566, rtol=1e-7)
    np.testing.assert_allclose(m["mean_q"], 1.8, rtol=1e-12)
    np.testing.assert_allclose(m["temperature"], 1.0)
    np.testing.assert_allclose(m["entropy"], -0.01443766, rtol=1e-6)
    # every critic gradient is negative (both Q below y, all units active): Adam's first step moves
    # each parameter by +lr; member 0 becomes W0 = [1.01, 1.01], b0 = 0.01, W1 = 1.01, b1 = 0.01
    cW0, cb0, cW1, cb1 = agent.critic_params
    np.testing.assert_allclose(cW0, 1.01, atol=1e-8)
    np.testing.assert_allclose(cW1[:, 0, 0], [1.01, 2.01], atol=1e-8)
    np.testing.assert_allclose(cb1, 0.01, atol=1e-8)
    # actor loss with the updated critics: Q_0 = 1.01 (1.01 + 1.01 tanh 0.5 + 0.01) + 0.01
    # = 1.51160571 < Q_1 = 2.99834404; loss = 1.0 * 0.01443766 - 1.51160571 = -1.49716805
    np.testing.assert_allclose(m["actor_loss"], -1.49716805, rtol=1e-7)
    # dL/du = -dQ_0/da (1 - tanh^2 u) + 2 tanh u = -1.0201 * 0.78644773 + 0.92423431 = 0.12197898 > 0
    # so the mean weight drops by lr; dL/d log-std = -alpha = -1 < 0: the log-std rises by lr
    aW0, ab0, aW1, ab1 = agent.actor_params
    np.testing.assert_allclose(aW1[0, 0], [0.49, 0.01], atol=1e-8)
    np.testing.assert_allclose(ab1[0], [-0.01, np.log(0.5) + 0.01], atol=1e-8)
    np.testing.assert_allclose(aW0[0, 0, 0], 0.99, atol=1e-8)   # dh = 0.5 * 0.12197 > 0
    # temperature: loss -log_alpha (log pi - 1) = 0, gradient 1 - 0.01443766 > 0: log_alpha -> -0.01
    np.testing.assert_allclose(m["temperature_loss"], 0.0, atol=1e-15)
    np.testing.assert_allclose(agent.temperature, np.exp(-0.01), rtol=1e-7)
    # Polyak with tau 0.005: target W1 = 0.995 [1, 2] + 0.005 [1.01, 2.01]
    tW1 = agent.critic_target[agent.critic.size - 2 - 2:agent.critic.size - 2]
    np.testing.assert_allclose(tW1, [1.00005, 2.00005], atol=1e-9)
    np.testing.assert_array_equal(agent.steps, [1, 1, 1])


def test_update_ignores_truncated_and_accepts_transition():
    buf = filled_buffer()
    a, b = small_agent(), small_agent()
    t = Transition(buf.obs[:8], buf.act[:8], buf.reward[:8], buf.next_obs[:8],
                   buf.terminated[:8], np.ones(8, bool))
    d = {"obs": buf.obs[:8], "act": buf.act[:8], "reward": buf.reward[:8], "next_obs": buf.next_obs[:8],
             "terminated": buf.terminated[:8]}
    noise = np.random.default_rng(1).normal(size=(2, 8, 2))
    ma, mb = a.update(t, noise=noise), b.update(d, noise=noise)
    assert ma == mb
    np.testing.assert_array_equal(a.critic, b.critic)
    # terminated does matter
    d2 = dict(d, terminated=~d["terminated"])
    c = small_agent()
    assert c.update(d2, noise=noise)["critic_loss"] != ma["critic_loss"]


def test_act_shapes_bounds_and_determinism():
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=(100, 3))
    a = agent.act(obs)
    assert a.shape == (100, 2) and a.dtype == np.float32
    assert np.all(a[:, 0] >= -1) and np.all(a[:, 0] <= 1)
    assert np.all(a[:, 1] >= 0) and np.all(a[:, 1] <= 2)
    assert agent.act(obs[0]).shape == (2,)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True),
                                  agent.act(obs, deterministic=True))
    assert not np.array_equal(agent.act(obs), agent.act(obs))   # fresh noise per call


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_and_resume(tmp_path, dtype):
    buf = filled_buffer()
    a = small_agent(dtype=dtype)
    a.update_from(buf, 3)
    a.act(buf.obs[:2])
    path = tmp_path / "sac.npz"
    a.save(path)
    b = SAC.load(path)
    c = small_agent(dtype=dtype, seed=99)
    c.load_state_dict(a.state_dict())
    for other in (b, c):
        for k, v in a.state_dict().items():
            if k != "config":
                np.testing.assert_array_equal(other.state_dict()[k], v)
    ma = a.update_from(buf, 4)
    act_a = a.act(buf.obs[:3])
    for other in (b, c):
        assert other.update_from(buf, 4) == ma
        np.testing.assert_array_equal(other.actor, a.actor)
        np.testing.assert_array_equal(other.critic_target, a.critic_target)
        np.testing.assert_array_equal(other.act(buf.obs[:3]), act_a)


def test_update_from_is_reproducible_and_learns_bandit():
    """One-step problem: reward -(a - 0.6)^2, terminated; the best action 0.6 is found."""
    rng = np.random.default_rng(0)
    n = 2000
    buf = ReplayBuffer(n, 1, 1)
    act = rng.uniform(-1, 1, (n, 1))
    buf.add_batch(np.zeros((n, 1)), act, -(act[:, 0] - 0.6) ** 2, np.zeros((n, 1)),
                  np.ones(n, bool), np.zeros(n, bool))
    agents = [SAC(1, 1, (np.array([-1.0]), np.array([1.0])), hidden=(32, 32), lr=3e-3,
                  batch_size=64, seed=1) for _ in range(2)]
    for ag in agents:
        ag.update_from(buf, 400)
    np.testing.assert_array_equal(agents[0].actor, agents[1].actor)
    best = agents[0].act(np.zeros(1), deterministic=True)[0]
    assert abs(best - 0.6) < 0.1, best


def test_update_from_after_a_batch_size_change():
    """The update kernels' scratch is kept between calls and sized by batch_size: after a call at
    batch 8, calls at batch 32 must match an agent that never ran at batch 8 (a stale, too small
    scratch would be written past its end), for plain and mixed minibatches."""
    buf, model_buf = filled_buffer(), filled_buffer(seed=1)
    a, b = small_agent(), small_agent()
    a.update_from(buf, 2)
    b.update_from(buf, 2)
    c = small_agent(seed=99)
    c.load_state_dict(b.state_dict())
    a.batch_size = c.batch_size = 32
    assert a.update_from(buf, 3) == c.update_from(buf, 3)
    assert (a.update_from(buf, 2, model_buffer=model_buf, real_ratio=0.25)
            == c.update_from(buf, 2, model_buffer=model_buf, real_ratio=0.25))
    np.testing.assert_array_equal(a.actor, c.actor)
    np.testing.assert_array_equal(a.critic, c.critic)


def test_n_threads_same_result():
    buf = filled_buffer()
    a, b = small_agent(), small_agent(n_threads=2)
    assert a.update_from(buf, 2) == b.update_from(buf, 2)


@pytest.mark.slow
def test_pendulum_beats_random():
    """A minimal loop (not the library's): 4000 steps, 200 random, one update per step."""
    env, eval_env = gym.make("Pendulum-v1"), gym.make("Pendulum-v1")
    agent = SAC(3, 1, env.action_space, lr=1e-3, seed=0)
    buf = ReplayBuffer(5000, 3, 1)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for t in range(4000):
        a = rng.uniform(-2, 2, 1) if t < 200 else agent.act(obs)
        nobs, r, term, trunc, _ = env.step(a)
        buf.add(obs, a, r, nobs, term, trunc)
        obs = env.reset()[0] if term or trunc else nobs
        if t >= 200:
            agent.update_from(buf, 1)

    def ret(policy, seed):
        o, _ = eval_env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            o, r, term, trunc, _ = eval_env.step(policy(o))
            total += r
            done = term or trunc
        return total

    learned = np.mean([ret(lambda o: agent.act(o, deterministic=True), s) for s in range(5)])
    random = np.mean([ret(lambda o: rng.uniform(-2, 2, 1), s) for s in range(5)])
    assert learned > random + 400, (learned, random)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"obs_dim": 0}, "obs_dim"),
    ({"hidden": ()}, "hidden"),
    ({"hidden": (16, 0)}, r"hidden\[1\]"),
    ({"gamma": 1.5}, "gamma"),
    ({"lr": 0.0}, "lr"),
    ({"log_std_bounds": (2, -5)}, "log_std_bounds"),
    ({"activation": "silu"}, "activation"),
    ({"batch_size": 0}, "batch_size"),
    ({"init_temperature": -1.0}, "init_temperature"),
    ({"action_space": (np.zeros(3), np.ones(3))}, "action_space"),
    ({"dtype": np.int32}, "dtype"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"obs_dim": 3, "act_dim": 2, "action_space": (np.zeros(2), np.ones(2))}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        SAC(**args)


def test_bad_call_arguments(tmp_path):
    agent = small_agent()
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        agent.act(np.array([0.0, np.nan, 0.0]))
    good = {"obs": np.zeros((4, 3)), "act": np.zeros((4, 2)), "reward": np.zeros(4),
                "next_obs": np.zeros((4, 3)), "terminated": np.zeros(4, bool)}
    with pytest.raises(ValueError, match="next_obs"):
        agent.update({k: v for k, v in good.items() if k != "next_obs"})
    with pytest.raises(ValueError, match=r"batch.act"):
        agent.update(dict(good, act=np.zeros((4, 3))))
    with pytest.raises(ValueError, match="terminated"):
        agent.update(dict(good, terminated=np.zeros(5, bool)))
    with pytest.raises(ValueError, match="noise"):
        agent.update(good, noise=np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="n_updates"):
        agent.update_from(filled_buffer(), 0)
    with pytest.raises(ValueError, match="empty"):
        agent.update_from(ReplayBuffer(10, 3, 2), 1)
    with pytest.raises(ValueError, match="obs_dim"):
        agent.update_from(filled_buffer(obs_dim=4), 1)
    with pytest.raises(TypeError, match="buffer"):
        agent.update_from(good, 1)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(2))
    with pytest.raises(ValueError, match="not a SAC file"):
        SAC.load(bad)
    state = agent.state_dict()
    state["critic"] = state["critic"][:-1]
    with pytest.raises(ValueError, match="critic"):
        agent.load_state_dict(state)


def test_public_kernel_interface():
    """What the model-based updates (fastmbrl.agents._mb_grads) use: the kernels' arguments, the
    hyperparameters by name, the activation code and the buffers' rows; update through them is
    update_from's."""
    from fastmbrl.agents import _sac_kernels as k
    from fastmbrl.backend import use_compiled

    agent = small_agent(lr=1e-3)
    assert agent.activation_code == 1 and small_agent(activation="tanh").activation_code == 2
    hp = agent.hyperparameters
    assert (hp["gamma"], hp["tau"], hp["lr_actor"], hp["lr_critic"], hp["lr_alpha"]) == \
        (0.99, 0.005, 1e-3, 1e-3, 1e-3)
    assert (hp["log_std_min"], hp["log_std_max"], hp["target_entropy"]) == (-20.0, 2.0, -2.0)
    hp["lr_actor"] = 1.0                                         # a copy: changes nothing
    assert agent.hyperparameters["lr_actor"] == 1e-3
    args = agent.kernel_args()
    assert args[0] is agent.actor and args[1] is agent.critic and args[2] is agent.critic_target
    assert args[5] == agent.activation_code and args[11] is agent.steps

    buf = filled_buffer(n=20)
    n, arrays, term = agent.buffer_arrays(buf)
    assert n == 20 and [a.dtype for a in arrays] == [np.float32] * 4 and term.dtype == bool
    np.testing.assert_array_equal(arrays[0], buf.obs)            # not wrapped: storage = order
    np.testing.assert_array_equal(term, buf.terminated)
    assert np.shares_memory(arrays[0], buf.arrays().obs)         # no copy
    wide = small_agent(dtype=np.float64)
    assert [a.dtype for a in wide.buffer_arrays(buf)[1]] == [np.float64] * 4
    with pytest.raises(TypeError, match="model_buffer"):
        agent.buffer_arrays({"obs": np.zeros((3, 3))}, "model_buffer")

    # one compiled update_from call == the same kernel called through the public pieces
    other = small_agent(lr=1e-3)
    expected = agent.update_from(buf, 3)
    metrics = np.zeros((3, 6), np.float64)
    if use_compiled():
        work = k._sac_workspace(other.actor, other.critic, other.dims_actor, other.dims_critic,
                                other.batch_size)
        with other.kernel_context():
            k._sac_update_from(*other.kernel_args(), *arrays, term, n, other.batch_size,
                               other.rng_state, metrics, work)
        assert dict(zip(expected, metrics.mean(axis=0))) == expected
        np.testing.assert_array_equal(other.actor, agent.actor)


def test_one_and_two_threads_give_bit_identical_parameters():
    """The update kernel splits its work the same way on any thread count (members, row halves,
    parameter halves), so every parameter, moment and target matches to the bit, for plain and
    for mixed (MBPO) minibatches."""
    buf, model_buf = filled_buffer(), filled_buffer(n=40, seed=1)
    agents = [small_agent(hidden=(32, 32), n_threads=n) for n in (1, 2)]
    for ag in agents:
        ag.update_from(buf, 3)
        ag.update_from(buf, 3, model_buffer=model_buf, real_ratio=0.25)
    for k in ("actor", "critic", "critic_target", "actor_m", "critic_v", "alpha_state"):
        np.testing.assert_array_equal(getattr(agents[0], k), getattr(agents[1], k), err_msg=k)
    assert not np.array_equal(agents[0].actor, small_agent(hidden=(32, 32)).actor)   # it moved


def test_update_threads_respect_the_callers_numba_cap():
    """n_threads=2 uses at most the calling thread's Numba threads (a sweep trial caps them at 1),
    and the caller's setting is restored afterwards."""
    import numba

    from fastmbrl.backend import use_compiled
    if not use_compiled():
        pytest.skip("the NumPy twins use no Numba threads")
    agent = small_agent(n_threads=2)
    seen = []
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with agent.kernel_context():
            seen.append(numba.get_num_threads())
        seen.append(numba.get_num_threads())
    finally:
        numba.set_num_threads(before)
    assert seen == [1, 1]
    if numba.config.NUMBA_NUM_THREADS >= 2:
        with agent.kernel_context():
            seen.append(numba.get_num_threads())
        assert seen[-1] == 2 and numba.get_num_threads() == before


def test_denormal_flush_is_scoped_to_the_update_call():
    """SAC's kernel calls run with flush-to-zero on the calling thread (a subnormal product becomes
    0) and give the caller its IEEE subnormals back afterwards (x86 only)."""
    import platform

    from numba import njit

    from fastmbrl.backend import use_compiled
    from fastmbrl.nn._numba import _flush_denormals, _restore_fp_mode
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("FTZ/DAZ are x86 modes")
    if not use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1: the NumPy twins keep IEEE subnormals, nothing is flushed")

    @njit
    def tiny_product(x):
        return x * np.float32(1e-20)

    x = np.float32(1e-20)                          # 1e-40 is subnormal in float32
    assert tiny_product(x) > 0.0
    mode = _flush_denormals()
    try:
        assert tiny_product(x) == 0.0
    finally:
        _restore_fp_mode(mode)
    assert tiny_product(x) > 0.0
    agent = small_agent()
    with agent.kernel_context():
        assert tiny_product(x) == 0.0
    assert tiny_product(x) > 0.0                   # the caller's mode is back


def test_denormal_flush_covers_every_thread_of_the_team():
    """With n_threads=2 both threads of the update's team run with FTZ/DAZ inside the call and
    get their own mode back after it."""
    import platform

    import numba
    from numba import njit, prange

    from fastmbrl.backend import use_compiled
    from fastmbrl.nn._numba import _fp_mode_get
    if platform.machine().lower() not in ("x86_64", "amd64") or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs x86 and two Numba threads")
    if not use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1: the NumPy twins keep IEEE subnormals, nothing is flushed")

    @njit(parallel=True)
    def team_modes(out):
        for t in prange(out.size):
            out[t] = _fp_mode_get()

    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        outside = np.zeros(2, np.uint32)
        team_modes(outside)
        inside = np.zeros(2, np.uint32)
        with small_agent(n_threads=2).kernel_context():
            team_modes(inside)
        after = np.zeros(2, np.uint32)
        team_modes(after)
    finally:
        numba.set_num_threads(before)
    assert np.all(inside & 0x8040 == 0x8040)       # FTZ (bit 15) and DAZ (bit 6) on both threads
    assert np.all(outside & 0x8040 == 0)
    np.testing.assert_array_equal(after & 0x8040, outside & 0x8040)
