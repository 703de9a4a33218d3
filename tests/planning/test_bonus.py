"""The optimism bonus (ensemble disagreement) in the compiled rollout: by hand, zero, twins."""
import numpy as np
import pytest
from numba import njit

from fastmbrl._config import ATOL, RTOL
from fastmbrl.models._user_functions import _compiled_function_handle, _PythonStatusHandle
from fastmbrl.planning import ModelRollout, _kernels, _reference
from fastmbrl.planning._checks import check_model_arrays
from fastmbrl.planning.rollout import _Buffers, _entry_point
from planning_helpers import linear_arrays, random_arrays

DTYPES = [np.float32, np.float64]
SLOPES = np.array([0.5, 0.9, 1.0, 1.3])     # var over members = 0.081875


@njit(cache=True)
def zero_reward_nb(obs, act, next_obs):
    return np.zeros(obs.shape[0], dtype=obs.dtype)


def zero_reward_np(obs, act, next_obs):
    return np.zeros(obs.shape[0], dtype=obs.dtype)


@njit(cache=True)
def neg_sq_nb(obs, act, next_obs):
    return -(next_obs[:, 0] * next_obs[:, 0])


@njit(cache=True)
def beyond_nb(obs, act, next_obs):
    return np.abs(next_obs[:, 0]) > 1.2


def hand_bonus(slopes, x0, acts):
    """sum_t var_e(s_e x_t + a_t) with x_{t+1} = mean(s) x_t + a_t (expectation propagation)."""
    var = np.var(slopes)
    kbar = np.mean(slopes)
    x, total = x0, 0.0
    for a in acts:
        total += var * x * x
        x = kbar * x + a
    return total


@pytest.mark.parametrize("compiled", [True, False])
def test_bonus_by_hand_on_disagreeing_members(compiled):
    """Members e predict s_e x + a: the disagreement at state x is var(s) x^2, known exactly."""
    arrays = linear_arrays(SLOPES)
    w = 2.5
    ro = ModelRollout(zero_reward_nb if compiled else zero_reward_np, particles=3,
                      propagation="expectation", seed=0, bonus_weight=w)
    f = ro.objective(arrays, np.array([1.0]))
    acts = np.array([[0.0, 0.0, 0.0, 0.0], [0.3, -0.1, 0.2, 0.5], [-0.4, 0.4, -0.4, 0.4]])
    values = f(acts[:, :, None].copy())
    expected = [w * hand_bonus(SLOPES, 1.0, a) for a in acts]
    assert np.var(SLOPES) == pytest.approx(0.081875)
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    # the plain objective of the same rollout is 0 (zero reward): the bonus is all of the value
    plain = ModelRollout(zero_reward_nb, particles=3, propagation="expectation", seed=0)
    np.testing.assert_array_equal(plain.objective(arrays, np.array([1.0]))(acts[:, :, None]), 0)


def test_bonus_counts_in_target_normalised_units():
    """Scaling the outputs by out_std scales the raw disagreement by out_std^2, not the bonus."""
    arrays = linear_arrays(SLOPES)
    acts = np.array([[0.3, -0.1, 0.2]])[:, :, None]
    ro = ModelRollout(zero_reward_nb, particles=1, propagation="expectation", bonus_weight=1.0)
    base = ro.objective(arrays, np.array([1.0]))(acts)
    scaled = arrays._replace(out_std=np.full(1, 3.0))
    # out_std 3 multiplies every member's output (and the slopes) by 3; with delta_mask False the
    # state becomes 3 (s_e x + a) and the normalised disagreement is var_e(s_e x + a) at that state
    x, kbar, var, total = 1.0, 3 * SLOPES.mean(), np.var(SLOPES), 0.0
    for a in acts[0, :, 0]:
        total += var * x * x                         # var_e(3 (s_e x + a)) / 3^2
        x = kbar * x + 3 * a
    got = ModelRollout(zero_reward_nb, particles=1, propagation="expectation",
                       bonus_weight=1.0).objective(scaled, np.array([1.0]))(acts)
    np.testing.assert_allclose(got, [total], rtol=1e-12)
    assert base[0] != pytest.approx(got[0])


@pytest.mark.parametrize("propagation", ["ts1", "tsinf", "expectation"])
def test_bonus_zero_when_members_agree(propagation):
    """Identical members: the bonus adds exactly nothing to any candidate's value."""
    arrays = linear_arrays([0.8, 0.8, 0.8])
    rng = np.random.default_rng(1)
    acts = rng.uniform(-1, 1, (6, 5, 1))
    out = []
    for w in (0.0, 7.0):
        ro = ModelRollout(neg_sq_nb, particles=4, propagation=propagation, seed=3, bonus_weight=w)
        out.append(ro.objective(arrays, np.array([0.4]))(acts))
    np.testing.assert_array_equal(out[0], out[1])


def test_bonus_zero_with_one_elite():
    """One elite member has no disagreement with itself."""
    arrays = random_arrays(d_obs=3, d_act=1, members=[2], seed=4)
    acts = np.random.default_rng(0).uniform(-1, 1, (5, 4, 1))
    vals = [ModelRollout(neg_sq_nb, particles=2, seed=1, bonus_weight=w).objective(
        arrays, np.zeros(3))(acts) for w in (0.0, 3.0)]
    np.testing.assert_array_equal(vals[0], vals[1])


def test_bonus_switched_on_after_plain_calls_on_one_member_ensemble():
    """Buffers made while the bonus was off are replaced when it is turned on (E = 1 too)."""
    arrays = random_arrays(d_obs=2, d_act=1, ensemble_size=1, seed=6)
    acts = np.random.default_rng(2).uniform(-1, 1, (4, 3, 1))
    ro = ModelRollout(neg_sq_nb, particles=2, seed=1)
    plain = ro.objective(arrays, np.zeros(2))(acts)
    ro.bonus_weight = 2.0
    ro.reseed(1)
    np.testing.assert_array_equal(ro.objective(arrays, np.zeros(2))(acts), plain)
    assert ro._buffers[(0, 8, 3)].bonus.shape == (3, 8)


def test_bonus_raises_values_and_favours_uncertain_plans():
    """Disagreement grows with |x| here, so the bonus ranks the plan that goes far first."""
    arrays = linear_arrays(SLOPES)
    acts = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])[:, :, None]
    plain = ModelRollout(zero_reward_nb, particles=1, propagation="expectation")
    bonus = ModelRollout(zero_reward_nb, particles=1, propagation="expectation", bonus_weight=1.0)
    v0 = plain.objective(arrays, np.array([1.0]))(acts)
    v1 = bonus.objective(arrays, np.array([1.0]))(acts)
    assert v0[0] == v0[1] == 0.0
    assert v1[1] > v1[0] > 0.0


def test_bonus_stops_at_termination():
    """Like the rewards, the bonus counts up to and including a particle's terminating step."""
    arrays = linear_arrays(SLOPES)
    acts = np.array([[0.0, 0.6, 0.6, 0.6]])[:, :, None]     # x: 1, 0.925, 1.455..., terminates
    ro = ModelRollout(zero_reward_nb, beyond_nb, particles=1, propagation="expectation",
                      bonus_weight=1.0)
    got = ro.objective(arrays, np.array([1.0]))(acts)
    var, kbar = np.var(SLOPES), SLOPES.mean()
    x, total = 1.0, 0.0
    for a in acts[0, :, 0]:
        total += var * x * x
        x = kbar * x + a
        if abs(x) > 1.2:
            break
    assert total < hand_bonus(SLOPES, 1.0, acts[0, :, 0])
    np.testing.assert_allclose(got, [total], rtol=1e-12)


def test_bonus_with_python_reward_matches_compiled():
    """A NumPy reward function (values finished in Python) gets the same bonus."""
    arrays = random_arrays(d_obs=3, d_act=1, members=[0, 1, 3], seed=2)
    acts = np.random.default_rng(5).uniform(-1, 1, (8, 4, 1))
    vals = [ModelRollout(fn, particles=3, seed=9, bonus_weight=0.7).objective(
        arrays, np.full(3, 0.2))(acts) for fn in (zero_reward_nb, zero_reward_np)]
    np.testing.assert_allclose(vals[0], vals[1], rtol=1e-12)
    assert np.all(vals[0] > 0)


def run_kernel(module, arrays, actions, obs0, n_particles, propagation, weight, seed=5):
    arrays, dtype, d_obs, d_act = check_model_arrays(arrays)
    n_cand, horizon, _ = actions.shape
    n_rows = n_cand * n_particles
    buf = _Buffers(n_rows, horizon, arrays.layer_dims, d_obs, d_act, d_obs + arrays.has_reward,
                   dtype, horizon if propagation == 0 else 1, propagation != 2,
                   bonus_members=arrays.ensemble_size)
    rng = np.random.default_rng(seed)
    rng.random(out=buf.perm_uniforms)
    buf.noise[...] = rng.standard_normal(buf.noise.shape)
    rfn, tfn = neg_sq_nb, beyond_nb
    if module is _kernels:
        rfn = _compiled_function_handle(rfn, dtype, d_obs, d_act, "reward_fn")
        tfn = _compiled_function_handle(tfn, dtype, d_obs, d_act, "termination_fn")
    else:       # the twin gets the same status contract in Python
        rfn = _PythonStatusHandle(rfn, "reward_fn")
        tfn = _PythonStatusHandle(tfn, "termination_fn")
    values = np.zeros(n_cand, dtype=dtype)
    args = (
        actions.astype(dtype), obs0.astype(dtype), n_particles, buf.perm_uniforms, buf.perms,
        buf.noise, arrays.flat, arrays.layer_dims, arrays.ensemble_size, arrays.activation,
        arrays.members, np.flatnonzero(~arrays.angle_mask), np.flatnonzero(arrays.angle_mask),
        arrays.delta_mask, arrays.in_mean, arrays.in_std, arrays.out_mean, arrays.out_std,
        arrays.max_logvar, arrays.min_logvar, propagation, 0, 1, rfn, tfn, buf.states,
        buf.act_rows, buf.rewards, buf.dones, buf.x, buf.y, buf.std, buf.pred_mean, buf.pred_var,
        buf.h0, buf.h1, buf.ebuf, values, weight, buf.bonus_mean, buf.bonus_var, buf.bonus, np.zeros(1, dtype=np.uint8))
    if module is _kernels:
        status = _entry_point(args, (np.dtype(dtype).name, rfn.sig, tfn.sig))(*args)
    else:
        status = module._rollout_values(*args)
    assert status == 0
    return values, buf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("propagation", [0, 1, 2])
def test_bonus_kernel_matches_twin(dtype, propagation):
    arrays = random_arrays(d_obs=3, d_act=2, angle_dims=(1,), members=[0, 2, 3], dtype=dtype,
                           seed=1)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (6, 4, 2))
    obs0 = rng.standard_normal(3)
    n_part = 1 if propagation == 2 else 3
    (v_k, b_k), (v_r, b_r) = [run_kernel(m, arrays, actions, obs0, n_part, propagation, 1.5)
                              for m in (_kernels, _reference)]
    np.testing.assert_allclose(b_k.bonus, b_r.bonus, rtol=RTOL[dtype], atol=ATOL[dtype] * 10)
    np.testing.assert_array_equal(b_k.dones, b_r.dones)
    np.testing.assert_allclose(v_k, v_r, rtol=RTOL[dtype], atol=ATOL[dtype] * 10)
    assert np.all(b_k.bonus > 0)
    # the bonus is the only difference from the plain objective
    v0, _ = run_kernel(_kernels, arrays, actions, obs0, n_part, propagation, 0.0)
    assert np.all(v_k > v0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", [_kernels, _reference])
def test_disagreement_and_add_bonus_by_hand(dtype, module):
    rng = np.random.default_rng(3)
    means = rng.standard_normal((5, 7, 3)).astype(dtype)     # 4 members used, D_obs = 2 of 3
    out_std = np.array([0.5, 2.0, 9.0], dtype=dtype)
    u = np.zeros(7, dtype=dtype)
    module._disagreement(means, 4, 2, out_std, u)
    m = means[:4, :, :2].astype(np.float64)
    expected = (((m - m.mean(axis=0)) ** 2).mean(axis=0) / out_std[:2].astype(np.float64) ** 2
                ).sum(axis=1)
    np.testing.assert_allclose(u, expected, rtol=RTOL[dtype], atol=ATOL[dtype])
    bonus = np.arange(12, dtype=dtype).reshape(3, 4)          # H = 3, R = 4, N = 2
    dones = np.zeros((3, 4), dtype=bool)
    dones[0, 1] = True
    values = np.ones(2, dtype=dtype)
    module._add_bonus(bonus, dones, 2, 0.5, values)
    # candidate 0: rows 0 (0 + 4 + 8) and 1 (1, stops at t=0); candidate 1: rows 2, 3
    np.testing.assert_allclose(values, [1 + 0.5 * (12 + 1) / 2, 1 + 0.5 * (18 + 21) / 2])


def test_bonus_weight_checked():
    with pytest.raises(ValueError, match="bonus_weight"):
        ModelRollout(neg_sq_nb, bonus_weight=-1.0)
    with pytest.raises(ValueError, match="bonus_weight"):
        ModelRollout(neg_sq_nb, bonus_weight=float("nan"))
    with pytest.raises(TypeError, match="bonus_weight"):
        ModelRollout(neg_sq_nb, bonus_weight="big")


def test_bonus_decay_schedule_and_config():
    from fastmbrl import config as cfg
    from fastmbrl.algorithms.pets import bonus_weight_at

    c = cfg.from_dict({"planner": {"bonus_weight": 10.0, "bonus_decay_episodes": 4}})
    assert [bonus_weight_at(c, k) for k in (1, 2, 3, 4, 5, 9)] == [10.0, 7.5, 5.0, 2.5, 0.0, 0.0]
    no_decay = cfg.from_dict({"planner": {"bonus_weight": 3.0}})
    assert bonus_weight_at(no_decay, 50) == 3.0
    assert bonus_weight_at(cfg.RunConfig(), 1) == 0.0      # off by default
    with pytest.raises(cfg.ConfigError, match="planner.bonus_weight"):
        cfg.from_dict({"planner": {"bonus_weight": -1.0}})
    with pytest.raises(cfg.ConfigError, match="planner.bonus_decay_episodes"):
        cfg.from_dict({"planner": {"bonus_decay_episodes": -2}})


def test_pets_passes_the_bonus_to_its_rollout():
    from fastmbrl.agents import PETS

    arrays = linear_arrays(SLOPES)
    agent = PETS(arrays, zero_reward_nb, (np.array([-1.0]), np.array([1.0])), particles=2,
                 seed=0, bonus_weight=4.0)
    assert agent.rollout.bonus_weight == 4.0
    assert PETS(arrays, zero_reward_nb, (np.array([-1.0]), np.array([1.0]))).rollout.bonus_weight == 0


def test_bonus_on_by_default_only_where_the_spec_says():
    from fastmbrl import config as cfg
    from fastmbrl.envs.specs import SPECS

    assert "MountainCarContinuous-v0" in SPECS and len(SPECS) >= 6
    for spec_id, spec in SPECS.items():
        c = cfg.from_dict(spec.defaults)
        assert (c.planner.bonus_weight > 0) == (spec_id == "MountainCarContinuous-v0"), spec_id
