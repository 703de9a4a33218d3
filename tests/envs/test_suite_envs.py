"""Hopper-v5, Walker2d-v5, Ant-v5 and Humanoid-v5: the exact reward and termination functions on
real transitions (with many falls), the observation layouts, and the checks of env keywords."""
import gymnasium as gym
import numpy as np
import pytest

import fastmbrl.envs as fenvs
from fastmbrl.envs import reward_fns, termination_fns

pytest.importorskip("mujoco")

# id -> (obs_dim, act_dim, dt)
SUITE = {"Hopper-v5": (12, 3, 0.008), "Walker2d-v5": (18, 6, 0.008), "Ant-v5": (29, 8, 0.05),
         "Humanoid-v5": (47, 17, 0.015)}
# gymnasium.make keywords whose observation is the spec's without its prepended/replaced columns
PLAIN = {"Hopper-v5": {}, "Walker2d-v5": {},
         "Ant-v5": {"include_cfrc_ext_in_observation": False},
         "Humanoid-v5": {"include_cinert_in_observation": False,
                         "include_cvel_in_observation": False,
                         "include_qfrc_actuator_in_observation": False,
                         "include_cfrc_ext_in_observation": False}}
N_TRANSITIONS = 10_000
BLOCK = 50


def _collect_with_falls(env, n, seed):
    """n transitions in blocks of 50 steps, each block one behaviour drawn at random: uniformly
    random actions, one extreme action held, or random extreme (bang-bang) actions; the last two
    make the robots fall (or the ant flip or jump) many times. Resets on termination/truncation.

    Actions are float64 arrays of float32 values: the environments compute their control cost in
    the action's dtype, and float32 rounds Ant's 0.5 sum(a^2) by ~1e-7 absolute (the float32
    path is covered, to 1e-5, by test_reward_fns.py)."""
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    high = env.action_space.high.astype(np.float64)
    obs, _ = env.reset(seed=seed)
    rows = {"obs": [], "act": [], "next_obs": [], "reward": [], "terminated": []}
    mode, held = 0, None
    for t in range(n):
        if t % BLOCK == 0:
            mode = int(rng.integers(3))
            held = rng.choice([-1.0, 1.0], size=high.shape) * high
        if mode == 0:
            act = env.action_space.sample().astype(np.float64)
        elif mode == 1:
            act = held.copy()
        else:
            act = rng.choice([-1.0, 1.0], size=high.shape) * high
        next_obs, reward, terminated, truncated, _ = env.step(act)
        for key, value in zip(rows, (obs, act, next_obs, reward, terminated)):
            rows[key].append(value)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    return {k: np.array(v) for k, v in rows.items()}


@pytest.mark.parametrize("env_id", sorted(SUITE))
def test_exact_functions_match_env_with_many_falls(env_id):
    made = fenvs.make(env_id)
    data = _collect_with_falls(made.env, N_TRANSITIONS, seed=7)
    reward = made.reward_fn(data["obs"], data["act"], data["next_obs"])
    done = made.termination_fn(data["obs"], data["act"], data["next_obs"])
    assert reward.shape == (N_TRANSITIONS,) and reward.dtype == np.float64
    assert done.shape == (N_TRANSITIONS,) and done.dtype == np.bool_
    assert data["terminated"].sum() >= 20, "the data should exercise the termination branch"
    np.testing.assert_allclose(reward, data["reward"], rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(done, data["terminated"])


@pytest.mark.parametrize("env_id", sorted(SUITE))
def test_observation_layout(env_id):
    obs_dim, act_dim, dt = SUITE[env_id]
    made = fenvs.make(env_id)
    assert (made.obs_dim, made.act_dim) == (obs_dim, act_dim)
    assert made.env.observation_space.shape == (obs_dim,)
    assert made.env.unwrapped.dt == dt
    plain = gym.make(env_id, **PLAIN[env_id])
    n_front = 1 if env_id in ("Hopper-v5", "Walker2d-v5") else 2
    obs, _ = made.env.reset(seed=3)
    ref, _ = plain.reset(seed=3)
    assert obs.dtype == np.float64 and np.all(obs[:n_front] == 0.0)
    np.testing.assert_array_equal(obs[n_front:], ref)
    rng = np.random.default_rng(0)
    for _ in range(30):
        act = rng.uniform(-1, 1, act_dim) * made.env.action_space.high
        obs, r, term, _, info = made.env.step(act)
        ref, r_ref, term_ref, _, _ = plain.step(act)
        # the rest of the observation is gymnasium's own (Hopper/Walker2d: without the x column)
        np.testing.assert_array_equal(obs[n_front:], ref)
        assert r == r_ref and term == term_ref
        # column 0 is what the env's forward reward divides by dt, to the last bit
        assert obs[0] / dt == info["x_velocity"]
        if n_front == 2:
            assert obs[1] == -info["reward_contact"]
        if term:
            break


def test_half_cheetah_observations_unchanged():
    """The generalised wrapper's default path is the old one: bit-identical observations."""

    class OldXDisplacement(gym.ObservationWrapper):   # the wrapper before the position argument
        def __init__(self, env):
            super().__init__(env)
            self._last_x = 0.0

        def reset(self, *, seed=None, options=None):
            obs, info = self.env.reset(seed=seed, options=options)
            self._last_x = float(obs[0])
            out = np.array(obs, copy=True)
            out[0] = 0.0
            return out, info

        def observation(self, observation):
            x = float(observation[0])
            out = np.array(observation, copy=True)
            out[0] = x - self._last_x
            self._last_x = x
            return out

    new = fenvs.make("HalfCheetah-v5").env
    old = OldXDisplacement(gym.make("HalfCheetah-v5",
                                    exclude_current_positions_from_observation=False))
    assert new.observation_space == old.observation_space
    a, _ = new.reset(seed=11)
    b, _ = old.reset(seed=11)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(11)
    for _ in range(100):
        act = rng.uniform(-1, 1, 6).astype(np.float32)
        a, ra, *_ = new.step(act)
        b, rb, *_ = old.step(act)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes() and ra == rb


@pytest.mark.parametrize("env_id", sorted(SUITE))
def test_displacement_sums_to_the_position_the_reward_uses(env_id):
    made = fenvs.make(env_id)
    env = made.env
    u = env.unwrapped
    positions = {"Hopper-v5": lambda: u.data.qpos[0], "Walker2d-v5": lambda: u.data.qpos[0],
                 "Ant-v5": lambda: u.data.body(1).xpos[0],
                 "Humanoid-v5": lambda: (u.model.body_mass @ u.data.xipos / u.model.body_mass.sum())[0]}
    env.reset(seed=0)
    x0 = positions[env_id]()
    total = 0.0
    for _ in range(20):
        obs, _, term, _, _ = env.step(env.action_space.sample())
        total += obs[0]
        if term:
            break
    assert abs((positions[env_id]() - x0) - total) < 1e-9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("env_id", sorted(SUITE))
def test_functions_accept_float32_and_float64(env_id, dtype):
    obs_dim, act_dim, _ = SUITE[env_id]
    spec = fenvs.get_spec(env_id)
    rng = np.random.default_rng(2)
    obs = rng.uniform(-0.1, 0.1, (9, obs_dim))
    nxt = rng.uniform(-0.1, 0.1, (9, obs_dim))
    z_col = 1 if env_id in ("Hopper-v5", "Walker2d-v5") else 2
    nxt[:, z_col] = 0.6 if env_id == "Ant-v5" else 1.3      # healthy height
    nxt[::2, z_col] = 0.3 if env_id == "Hopper-v5" else 5.0  # unhealthy rows
    act = rng.uniform(-0.4, 0.4, (9, act_dim))
    args = [x.astype(dtype) for x in (obs, act, nxt)]
    r = spec.reward_fn(*args)
    done = spec.termination_fn(*args)
    assert r.dtype == dtype and r.shape == (9,)
    assert done.dtype == np.bool_ and done.shape == (9,)
    np.testing.assert_array_equal(done, np.arange(9) % 2 == 0)
    np.testing.assert_allclose(r, spec.reward_fn(obs, act, nxt), rtol=1e-5, atol=1e-4)
    grads = spec.reward_grad_fn(*args)
    assert all(g.dtype == dtype for g in grads)


def test_termination_intervals_by_hand():
    """Strict bounds for Hopper, Walker2d and Humanoid, closed ones for Ant; NaN ends all."""
    def rows(dim, col, values):
        out = np.zeros((len(values), dim))
        out[:, col] = values
        return out

    nan = np.nan
    # Hopper: z = obs[1] in (0.7, inf), angle = obs[2] in (-0.2, 0.2), obs[2:] in (-100, 100)
    h = rows(12, 1, [0.7, 0.7000001, np.inf, 1.2, 1.2, 1.2, 1.2, nan])
    h[3, 2], h[4, 2], h[5, 2] = 0.2, -0.2, 0.1999
    h[6, 11] = 100.0
    np.testing.assert_array_equal(termination_fns.hopper(h, h[:, :3], h),
                                  [True, False, True, True, True, False, True, True])
    # Walker2d: z = obs[1] in (0.8, 2.0), angle = obs[2] in (-1, 1)
    w = rows(18, 1, [0.8, 2.0, 1.999, 1.2, 1.2, nan])
    w[3, 2], w[4, 2] = 1.0, -0.999
    np.testing.assert_array_equal(termination_fns.walker2d(w, w[:, :6], w),
                                  [True, True, False, True, False, True])
    # Ant: z = obs[2] in [0.2, 1.0] (closed), every column finite
    a = rows(29, 2, [0.2, 1.0, 0.1999, 1.0001, 0.5, 0.5, 0.5])
    a[5, 20] = nan
    a[6, 0] = np.inf
    np.testing.assert_array_equal(termination_fns.ant(a, a[:, :8], a),
                                  [False, False, True, True, False, True, True])
    # Humanoid: z = obs[2] in (1.0, 2.0)
    u = rows(47, 2, [1.0, 2.0, 1.0001, 1.9999, nan])
    np.testing.assert_array_equal(termination_fns.humanoid(u, u[:, :17], u),
                                  [True, True, False, False, True])


@pytest.mark.parametrize("env_id", sorted(SUITE))
def test_reward_terms_by_hand(env_id):
    """reward = w dx / dt + healthy_reward [not done] - w_ctrl sum(a^2) - contact column."""
    obs_dim, act_dim, dt = SUITE[env_id]
    fwd, alive, ctrl, contact = {"Hopper-v5": (1.0, 1.0, 1e-3, False),
                                 "Walker2d-v5": (1.0, 1.0, 1e-3, False),
                                 "Ant-v5": (1.0, 1.0, 0.5, True),
                                 "Humanoid-v5": (1.25, 5.0, 0.1, True)}[env_id]
    spec = fenvs.get_spec(env_id)
    rng = np.random.default_rng(4)
    obs = rng.uniform(-1, 1, (50, obs_dim))
    nxt = rng.uniform(-1, 1, (50, obs_dim))
    z_col = 1 if not contact else 2
    nxt[:, z_col] = rng.uniform(0.0, 2.5, 50)
    nxt[:, 1] = np.abs(nxt[:, 1]) if contact else nxt[:, 1]
    act = rng.uniform(-1, 1, (50, act_dim))
    done = spec.termination_fn(obs, act, nxt)
    assert done.any() and not done.all()
    want = (fwd * (nxt[:, 0] / dt) + alive * ~done - ctrl * np.sum(act ** 2, axis=1)
            - (nxt[:, 1] if contact else 0.0))
    np.testing.assert_allclose(spec.reward_fn(obs, act, nxt), want, rtol=1e-12, atol=1e-12)
    d_obs, d_act, d_next = spec.reward_grad_fn(obs, act, nxt)
    assert np.all(d_obs == 0)
    np.testing.assert_allclose(d_act, -2 * ctrl * act, rtol=1e-14)
    expected = np.zeros_like(nxt)
    expected[:, 0] = fwd / dt
    if contact:
        expected[:, 1] = -1.0
    np.testing.assert_allclose(d_next, expected, rtol=1e-14)
    assert reward_fns.gradient_of(spec.reward_fn) is spec.reward_grad_fn


@pytest.mark.parametrize("env_id", sorted(SUITE) + ["HalfCheetah-v5"])
def test_unknown_keyword_is_a_type_error(env_id):
    with pytest.raises(TypeError, match=f"{env_id}.*'reset_noise'.*accepted:.*reset_noise_scale"):
        fenvs.make(env_id, reset_noise=0.1)


@pytest.mark.parametrize("env_id, key, value, needed", [
    ("Hopper-v5", "forward_reward_weight", 2.0, "1.0"),
    ("Hopper-v5", "exclude_current_positions_from_observation", True, "False"),
    ("Hopper-v5", "healthy_state_range", (-50.0, 50.0), r"\(-100.0, 100.0\)"),
    ("Walker2d-v5", "healthy_z_range", (0.5, 2.0), r"\(0.8, 2.0\)"),
    ("Walker2d-v5", "frame_skip", 5, "4"),
    ("Ant-v5", "contact_cost_weight", 1e-3, "0.0005"),
    ("Ant-v5", "include_cfrc_ext_in_observation", True, "False"),
    ("Ant-v5", "main_body", "torso", "1"),
    ("Humanoid-v5", "contact_cost_range", (-np.inf, 5.0), r"\(-inf, 10.0\)"),
    ("Humanoid-v5", "terminate_when_unhealthy", False, "True"),
    ("Humanoid-v5", "include_cvel_in_observation", True, "False"),
    ("HalfCheetah-v5", "ctrl_cost_weight", 0.2, "0.1"),
])
def test_formula_keyword_with_other_value_is_a_value_error(env_id, key, value, needed):
    with pytest.raises(ValueError, match=f"{env_id}: {key}=.*need {key}={needed}.*reward_fn"):
        fenvs.make(env_id, **{key: value})


@pytest.mark.parametrize("env_id, kwargs", [
    ("Hopper-v5", {"reset_noise_scale": 0.01}),
    ("Hopper-v5", {"ctrl_cost_weight": 1e-3, "healthy_z_range": (0.7, float("inf")),
                   "exclude_current_positions_from_observation": False, "frame_skip": 4}),
    ("Walker2d-v5", {"reset_noise_scale": 0.01, "healthy_angle_range": [-1, 1]}),
    ("Ant-v5", {"reset_noise_scale": 0.01, "healthy_z_range": (0.2, 1.0), "main_body": 1,
                "include_cfrc_ext_in_observation": False, "forward_reward_weight": 1.0}),
    ("Humanoid-v5", {"reset_noise_scale": 0.01, "healthy_reward": 5.0,
                     "exclude_current_positions_from_observation": True,
                     "render_mode": "rgb_array", "width": 64, "height": 64}),
])
def test_harmless_and_default_keywords_work(env_id, kwargs):
    made = fenvs.make(env_id, **kwargs)
    assert made.obs_dim == SUITE[env_id][0]
    obs, _ = made.env.reset(seed=0)
    assert obs[0] == 0.0
    if "reset_noise_scale" in kwargs:
        assert made.env.unwrapped._reset_noise_scale == kwargs["reset_noise_scale"]


def test_resolve_passes_env_kwargs_through_the_checks():
    with pytest.raises(ValueError, match="Hopper-v5: healthy_reward"):
        fenvs.resolve("Hopper-v5", env_kwargs={"healthy_reward": 2.0})
    resolved = fenvs.resolve("Ant-v5", env_kwargs={"reset_noise_scale": 0.01})
    assert resolved.obs_dim == 29 and resolved.time_limit == 1000


def test_specs_and_cli_listing(capsys):
    from fastmbrl.cli import main
    from fastmbrl.config import RunConfig, from_dict

    for env_id in SUITE:
        spec = fenvs.get_spec(env_id)
        assert spec.requires == "mujoco" and spec.max_episode_steps == 1000
        assert spec.reward_grad_fn is not None
        config = from_dict(spec.defaults, base=RunConfig(env=env_id))
        assert config.model.ensemble_size == 7 and config.model.num_elites == 5
        assert config.mbpo.total_steps == 100000 and config.sac.learning_starts == 10000
    assert from_dict(fenvs.get_spec("Humanoid-v5").defaults).model.hidden == (400,) * 4
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert all(env_id in out for env_id in SUITE)


def test_wrappers_prepend_columns():
    env = gym.make("Hopper-v5")
    calls = []
    wrapped = fenvs.XDisplacementObservation(
        fenvs.StepCostObservation(env, cost=lambda u: calls.append(1) or 0.25),
        position=lambda u: u.data.qpos[0])
    assert wrapped.observation_space.shape == (13,)
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (13,) and obs[0] == 0.0 and obs[1] == 0.0 and not calls
    x0 = env.unwrapped.data.qpos[0]
    obs, *_ = wrapped.step(np.zeros(3))
    assert obs[1] == 0.25 and calls == [1]
    assert obs[0] == env.unwrapped.data.qpos[0] - x0
