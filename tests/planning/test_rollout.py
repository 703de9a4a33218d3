"""The compiled model rollout: twin equivalence, the model contract, propagation modes by hand."""
import numpy as np
import pytest
from numba import njit

from fastmbrl._config import ATOL, RTOL
from fastmbrl.models.arrays import predict_from_arrays
from fastmbrl.models._user_functions import _compiled_function_handle, _PythonStatusHandle
from fastmbrl.planning import ModelRollout, _kernels, _reference
from fastmbrl.planning._checks import check_model_arrays
from fastmbrl.planning.rollout import _Buffers, _entry_point
from planning_helpers import linear_arrays, random_arrays

DTYPES = [np.float32, np.float64]


@njit(cache=True)
def quad_reward_nb(obs, act, next_obs):
    out = np.empty(obs.shape[0], dtype=obs.dtype)
    for i in range(obs.shape[0]):
        s = 0.0
        for d in range(next_obs.shape[1]):
            s += next_obs[i, d] * next_obs[i, d]
        out[i] = -s - 0.1 * act[i, 0] * act[i, 0]
    return out


def quad_reward_np(obs, act, next_obs):
    return -(next_obs ** 2).sum(axis=1) - 0.1 * act[:, 0] ** 2


@njit(cache=True)
def far_done_nb(obs, act, next_obs):
    return np.abs(next_obs[:, 0]) > 1.5


def far_done_np(obs, act, next_obs):
    return np.abs(next_obs[:, 0]) > 1.5


@njit(cache=True)
def next_sum_nb(obs, act, next_obs):
    return next_obs.sum(axis=1)


def next_sum_np(obs, act, next_obs):
    return next_obs.sum(axis=1)


def run_kernel(module, arrays, actions, obs0, n_particles, propagation, reward_mode, term_mode,
               reward_fn, term_fn, seed=5):
    values, buf, status = call_kernel(module, arrays, actions, obs0, n_particles, propagation,
                                      reward_mode, term_mode, reward_fn, term_fn, seed)
    assert status == 0
    return values, buf


def call_kernel(module, arrays, actions, obs0, n_particles, propagation, reward_mode, term_mode,
                reward_fn, term_fn, seed=5, stop=None):
    """One ``_rollout_values`` call as the rollout makes it: ``(values, buffers, status)``; the
    values start as NaN (a stopped call leaves them)."""
    arrays, dtype, d_obs, d_act = check_model_arrays(arrays)
    n_cand, horizon, _ = actions.shape
    n_rows = n_cand * n_particles
    buf = _Buffers(n_rows, horizon, arrays.layer_dims, d_obs, d_act, d_obs + arrays.has_reward,
                   dtype, horizon if propagation == 0 else 1, propagation != 2)
    rng = np.random.default_rng(seed)
    rng.random(out=buf.perm_uniforms)
    buf.noise[...] = rng.standard_normal(buf.noise.shape)
    values = np.full(n_cand, np.nan, dtype=dtype)
    if module is _kernels:
        # as the rollout does: functions go in as first-class function values (cacheable kernel)
        reward_fn = _compiled_function_handle(reward_fn, dtype, d_obs, d_act, "reward_fn")
        term_fn = _compiled_function_handle(term_fn, dtype, d_obs, d_act, "termination_fn")
    else:       # the twin gets the same status contract in Python
        reward_fn = _PythonStatusHandle(reward_fn, "reward_fn")
        term_fn = _PythonStatusHandle(term_fn, "termination_fn")
    args = (
        actions.astype(dtype), obs0.astype(dtype), n_particles, buf.perm_uniforms, buf.perms,
        buf.noise, arrays.flat, arrays.layer_dims, arrays.ensemble_size, arrays.activation,
        arrays.members, np.flatnonzero(~arrays.angle_mask), np.flatnonzero(arrays.angle_mask),
        arrays.delta_mask, arrays.in_mean, arrays.in_std, arrays.out_mean, arrays.out_std,
        arrays.max_logvar, arrays.min_logvar, propagation, reward_mode, term_mode, reward_fn,
        term_fn, buf.states, buf.act_rows, buf.rewards, buf.dones, buf.x, buf.y, buf.std,
        buf.pred_mean, buf.pred_var, buf.h0, buf.h1, buf.ebuf, values, 0.0, buf.bonus_mean,
        buf.bonus_var, buf.bonus, np.zeros(1, dtype=np.uint8) if stop is None else stop)
    if module is _kernels:
        status = _entry_point(args, (np.dtype(dtype).name, reward_fn.sig, term_fn.sig))(*args)
    else:
        status = module._rollout_values(*args)
    return values, buf, status


@pytest.mark.parametrize("module", [_kernels, _reference])
def test_rollout_kernel_stops_before_its_first_step_when_the_flag_is_up(module):
    arrays = random_arrays(d_obs=3, d_act=2, members=[0, 2, 3], dtype=np.float32, seed=1)
    rng = np.random.default_rng(0)
    actions, obs0 = rng.uniform(-1, 1, (6, 4, 2)), rng.standard_normal(3)
    args = (module, arrays, actions, obs0, 3, 0, 0, 1, quad_reward_nb, far_done_nb)
    values, _, status = call_kernel(*args, stop=np.ones(1, dtype=np.uint8))
    assert status == -1 and np.all(np.isnan(values))          # -1 - (steps done = 0)
    values, _, status = call_kernel(*args, stop=np.zeros(1, dtype=np.uint8))
    assert status == 0 and np.all(np.isfinite(values))


def test_rollout_twin_stops_at_the_step_after_the_flag_went_up():
    """The flag is read before every step: raised during step 2, the rollout stops after it."""
    stop = np.zeros(1, dtype=np.uint8)
    steps = []

    def reward(obs, act, next_obs):           # called once per step by the twin
        steps.append(len(steps))
        if len(steps) == 3:
            stop[0] = 1
        return -(next_obs ** 2).sum(axis=1)

    arrays = random_arrays(d_obs=3, d_act=2, dtype=np.float64, seed=1)
    rng = np.random.default_rng(0)
    values, _, status = call_kernel(_reference, arrays, rng.uniform(-1, 1, (5, 6, 2)),
                                    rng.standard_normal(3), 2, 0, 0, 0, reward,
                                    _reference._never_done, stop=stop)
    assert status == -1 - 3 and steps == [0, 1, 2] and np.all(np.isnan(values))


# ---------------------------------------------------------------- kernel vs NumPy twin
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("propagation", [0, 1, 2])
@pytest.mark.parametrize("reward_mode", [0, 1])
def test_rollout_kernel_matches_twin(dtype, propagation, reward_mode):
    arrays = random_arrays(d_obs=3, d_act=2, angle_dims=(1,), has_reward=reward_mode == 1,
                           members=[0, 2, 3], dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (6, 4, 2))
    obs0 = rng.standard_normal(3)
    n_part = 1 if propagation == 2 else 3
    out = []
    for module in (_kernels, _reference):
        rfn = quad_reward_nb if reward_mode == 0 else module._zero_reward
        out.append(run_kernel(module, arrays, actions, obs0, n_part, propagation, reward_mode, 1,
                              rfn, far_done_nb))
    (v_k, b_k), (v_r, b_r) = out
    np.testing.assert_array_equal(b_k.perms, b_r.perms)
    np.testing.assert_allclose(b_k.states, b_r.states, rtol=RTOL[dtype], atol=ATOL[dtype] * 10)
    np.testing.assert_array_equal(b_k.dones, b_r.dones)
    np.testing.assert_allclose(v_k, v_r, rtol=RTOL[dtype], atol=ATOL[dtype] * 10)
    assert np.all(np.isfinite(v_k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [0, 1, 2, 3])
def test_forward_kernel_matches_twin(dtype, activation):
    from fastmbrl.nn import _numba, _numba_reference
    from fastmbrl.nn._flat import param_offsets

    rng = np.random.default_rng(activation)
    dims = np.array([5, 33, 17, 8], dtype=np.int64)
    flat = (rng.standard_normal(param_offsets(dims, 3)[-1]) * 0.5).astype(dtype)
    x = (rng.standard_normal((29, 5)) * 4).astype(dtype)  # wide range exercises the exp clamp
    outs = []
    for module in (_numba, _numba_reference):
        out = np.zeros((29, 8), dtype=dtype)
        h0, h1 = np.zeros(29 * 33, dtype=dtype), np.zeros(29 * 33, dtype=dtype)
        module._mlp_forward_flat(flat, dims, 3, 2, activation, x, out, h0, h1,
                                 np.zeros(2 * 29 * 33, dtype=dtype))
        outs.append(out)
    scale = np.abs(outs[1]).max()
    np.testing.assert_allclose(outs[0], outs[1], rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_extreme_inputs(dtype):
    """The polynomial exp is clamped: huge |z| gives silu(z) = z or 0, never NaN."""
    from fastmbrl.nn import _numba

    h = np.array([[-1e4, -100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 1e4]], dtype=dtype)
    z = h.astype(np.float64)
    expected = z / (1 + np.exp(-np.clip(z, -700, 700)))
    _numba._bias_activation(h, np.zeros(9, dtype=dtype), 3, np.zeros(18, dtype=dtype))
    np.testing.assert_allclose(h, expected, rtol=RTOL[dtype], atol=1e-30)


# ---------------------------------------------------------------- one step vs the model contract
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_step_matches_predict_from_arrays(dtype):
    arrays = random_arrays(d_obs=4, d_act=2, angle_dims=(0, 2), members=[1, 3, 4], dtype=dtype,
                           seed=3)
    rng = np.random.default_rng(2)
    actions = rng.uniform(-1, 1, (5, 1, 2))
    obs0 = rng.standard_normal(4)
    n_part = 6
    _, buf = run_kernel(_kernels, arrays, actions, obs0, n_part, 0, 0, 0, quad_reward_nb,
                        _kernels._never_done)
    mean, var, _, _ = predict_from_arrays(
        arrays._replace(flat=arrays.flat.astype(np.float64)), np.tile(obs0, (30, 1)),
        np.repeat(actions[:, 0], n_part, axis=0))
    n_rows, n_used = 30, 3
    for j in range(n_rows):
        i = buf.perms[0, j]
        m = (j * n_used) // n_rows
        while not ((m * n_rows) // n_used <= j < ((m + 1) * n_rows) // n_used):
            m += 1
        e = arrays.members[m]
        expected = mean[e, i] + np.sqrt(var[e, i]) * buf.noise[0, i]
        np.testing.assert_allclose(buf.states[1, i], expected, rtol=RTOL[dtype] * 10,
                                   atol=ATOL[dtype] * 10)
    # expectation: the mean of the used members' means, no noise
    _, buf = run_kernel(_kernels, arrays, actions, obs0, 1, 2, 0, 0, quad_reward_nb,
                        _kernels._never_done)
    mean, _, _, _ = predict_from_arrays(
        arrays._replace(flat=arrays.flat.astype(np.float64)), np.tile(obs0, (5, 1)), actions[:, 0],
        members=arrays.members)
    np.testing.assert_allclose(buf.states[1], mean.mean(axis=0), rtol=RTOL[dtype] * 10,
                               atol=ATOL[dtype] * 10)


# ---------------------------------------------------------------- propagation modes by hand
SLOPES = (0.5, 2.0)


def hand_return(slopes_per_step, a, s0=1.0):
    """Sum of next states of s_{t+1} = k_t s_t + a."""
    s, total = s0, 0.0
    for k in slopes_per_step:
        s = k * s + a
        total += s
    return total


@pytest.mark.parametrize("compiled_reward", [True, False])
def test_expectation_by_hand(compiled_reward):
    arrays = linear_arrays(SLOPES)
    ro = ModelRollout(next_sum_nb if compiled_reward else next_sum_np, particles=7,
                      propagation="expectation", seed=0)
    f = ro.objective(arrays, np.array([1.0]))
    acts = np.array([0.0, 0.3, -0.2])
    values = f(np.broadcast_to(acts[:, None, None], (3, 4, 1)).copy())
    kbar = np.mean(SLOPES)
    expected = [hand_return([kbar] * 4, a) for a in acts]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_tsinf_fixed_member_per_particle():
    arrays = linear_arrays(SLOPES)
    ro = ModelRollout(next_sum_nb, particles=1, propagation="tsinf", seed=3)
    f = ro.objective(arrays, np.array([1.0]))
    n_cand, horizon = 10, 4
    values = f(np.zeros((n_cand, horizon, 1)))
    ret = {k: hand_return([k] * horizon, 0.0) for k in SLOPES}
    # each particle follows one member for the whole horizon; members get equal blocks
    for k in SLOPES:
        assert np.sum(np.isclose(values, ret[k], rtol=1e-12)) == n_cand // 2
    # with one candidate and as many particles as members, the value is the members' mean return
    ro = ModelRollout(next_sum_nb, particles=2, propagation="tsinf", seed=4)
    v = ro.objective(arrays, np.array([1.0]))(np.full((1, horizon, 1), 0.25))
    np.testing.assert_allclose(v, [np.mean([hand_return([k] * horizon, 0.25) for k in SLOPES])],
                               rtol=1e-12)


def test_ts1_resamples_member_each_step():
    arrays = linear_arrays(SLOPES)
    ro = ModelRollout(next_sum_nb, particles=1, propagation="ts1", seed=3)
    f = ro.objective(arrays, np.array([1.0]))
    n_cand, horizon = 40, 5
    values = f(np.zeros((n_cand, horizon, 1)))
    buf = ro._buffers[(0, n_cand, horizon)]
    ratios = buf.states[1:, :, 0] / buf.states[:-1, :, 0]              # (H, R): the slope used
    assert np.all(np.isclose(ratios, 0.5) | np.isclose(ratios, 2.0))
    # every step: each member gets an equal block of the rows
    np.testing.assert_array_equal(np.isclose(ratios, 2.0).sum(axis=1), n_cand // 2)
    # members change along a trajectory (tsinf would keep them)
    assert np.any(np.ptp(ratios, axis=0) > 1.0)
    # and each value is the hand return of its own member sequence
    expected = [hand_return(ratios[:, i], 0.0) for i in range(n_cand)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_learned_reward_head():
    arrays = linear_arrays(SLOPES, has_reward=True)   # the reward head predicts the current obs
    ro = ModelRollout(None, particles=1, propagation="expectation", seed=0)
    v = ro.objective(arrays, np.array([1.0]))(np.zeros((1, 3, 1)))
    kbar = np.mean(SLOPES)
    np.testing.assert_allclose(v, [1.0 + kbar + kbar ** 2], rtol=1e-12)


@pytest.mark.parametrize("compiled", [True, False])
def test_termination_stops_reward(compiled):
    arrays = linear_arrays([2.0])
    # s: 1 -> 2 -> 4 -> 8 -> 16; done when |next| > 1.5 at the first step; its reward counts
    ro = ModelRollout(next_sum_nb if compiled else next_sum_np,
                      far_done_nb if compiled else far_done_np, particles=2,
                      propagation="tsinf", seed=0)
    v = ro.objective(arrays, np.array([1.0]))(np.zeros((2, 4, 1)))
    np.testing.assert_allclose(v, [2.0, 2.0])
    ro = ModelRollout(next_sum_nb if compiled else next_sum_np, None, particles=2,
                      propagation="tsinf", seed=0)
    v = ro.objective(arrays, np.array([1.0]))(np.zeros((2, 4, 1)))
    np.testing.assert_allclose(v, [30.0, 30.0])


@pytest.mark.parametrize("propagation", ["ts1", "tsinf", "expectation"])
def test_numba_and_numpy_reward_agree(propagation):
    arrays = random_arrays(d_obs=3, d_act=1, dtype=np.float64, seed=7)
    acts = np.random.default_rng(0).uniform(-1, 1, (8, 5, 1))
    vals = []
    for rfn, tfn in ((quad_reward_nb, far_done_nb), (quad_reward_np, far_done_np)):
        ro = ModelRollout(rfn, tfn, particles=4, propagation=propagation, seed=11)
        vals.append(ro.objective(arrays, np.array([0.3, -0.2, 0.5]))(acts))
    np.testing.assert_allclose(vals[0], vals[1], rtol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_rollout_deterministic_under_seed(n_threads):
    arrays = random_arrays(d_obs=3, d_act=1, dtype=np.float32, seed=7)
    acts = np.random.default_rng(0).uniform(-1, 1, (9, 5, 1))
    runs = []
    for _ in range(2):
        ro = ModelRollout(quad_reward_nb, particles=4, propagation="ts1", n_threads=n_threads,
                          seed=5)
        f = ro.objective(arrays, np.zeros(3))
        runs.append(np.concatenate([f(acts), f(acts)]))
        ro.close()
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][:9], runs[0][9:])   # fresh noise each call


def test_chunk_bounds():
    from fastmbrl.planning._schedule import CHUNK_ROWS, MAX_CHUNKS, chunk_bounds

    np.testing.assert_array_equal(chunk_bounds(100, 5), [0, 100])          # small: one chunk
    edges = chunk_bounds(350, 20)                                           # 7000 rows
    assert len(edges) - 1 == 4 and edges[0] == 0 and edges[-1] == 350
    assert np.all(np.diff(edges) * 20 >= CHUNK_ROWS)
    assert len(chunk_bounds(10**6, 20)) - 1 == MAX_CHUNKS
    assert (len(chunk_bounds(500, 20)) - 1) % 2 == 0                        # even: two threads


@pytest.mark.parametrize("propagation", ["ts1", "tsinf"])
def test_values_do_not_depend_on_threads(propagation):
    """Chunks have their own streams, so 1 and 2 threads give identical values (several chunks)."""
    arrays = random_arrays(d_obs=3, d_act=1, hidden=(8,), dtype=np.float64, seed=7)
    acts = np.random.default_rng(0).uniform(-1, 1, (400, 3, 1))             # 4000 rows, 2 chunks
    out = []
    for n_threads in (1, 2):
        ro = ModelRollout(quad_reward_nb, far_done_nb, particles=10, propagation=propagation,
                          n_threads=n_threads, seed=5)
        f = ro.objective(arrays, np.zeros(3))
        out.append(np.concatenate([f(acts), f(acts[:50])]))
        ro.close()
    np.testing.assert_array_equal(out[0], out[1])


def test_numpy_reward_with_chunks():
    arrays = random_arrays(d_obs=3, d_act=1, hidden=(8,), dtype=np.float64, seed=7)
    acts = np.random.default_rng(0).uniform(-1, 1, (400, 3, 1))
    vals = []
    for rfn, tfn in ((quad_reward_nb, far_done_nb), (quad_reward_np, far_done_np)):
        ro = ModelRollout(rfn, tfn, particles=10, n_threads=2, seed=5)
        vals.append(ro.objective(arrays, np.zeros(3))(acts))
        ro.close()
    np.testing.assert_allclose(vals[0], vals[1], rtol=1e-12)


# ---------------------------------------------------------------- bad input
def test_rollout_bad_input():
    arrays = random_arrays(d_obs=3, d_act=1)
    with pytest.raises(ValueError, match="propagation"):
        ModelRollout(quad_reward_nb, propagation="ts2")
    with pytest.raises(ValueError, match="particles"):
        ModelRollout(quad_reward_nb, particles=0)
    with pytest.raises(ValueError, match="particles"):
        ModelRollout(quad_reward_nb, particles="many")
    with pytest.raises(ValueError, match="n_threads"):
        ModelRollout(quad_reward_nb, n_threads=3)
    with pytest.raises(ValueError, match="n_threads"):
        ModelRollout(quad_reward_nb, n_threads="two")
    with pytest.raises(ValueError, match="reward_fn"):
        ModelRollout(None).objective(arrays, np.zeros(3))   # no learned reward head
    ro = ModelRollout(quad_reward_nb)
    with pytest.raises(ValueError, match="obs"):
        ro.objective(arrays, np.zeros(4))
    with pytest.raises(ValueError, match="obs"):
        ro.objective(arrays, np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="members"):
        ro.objective(arrays._replace(members=np.array([7])), np.zeros(3))
    with pytest.raises(ValueError, match="flat"):
        ro.objective(arrays._replace(flat=arrays.flat[:-1]), np.zeros(3))
    f = ro.objective(arrays, np.zeros(3))
    with pytest.raises(ValueError, match="actions"):
        f(np.zeros((4, 5, 2)))
    bad = ModelRollout(lambda o, a, n: np.zeros((o.shape[0], 2)))
    with pytest.raises(ValueError, match="reward_fn"):
        bad.objective(arrays, np.zeros(3))(np.zeros((2, 3, 1)))


def test_warmup_prepares_the_kernel():
    """warmup compiles (or loads) the entry point that planning with any reward and termination
    function of the common signature then uses: after it, neither a second warmup nor a rollout
    with user functions (njit or NumPy, both propagations) compiles another."""
    from fastmbrl.planning import rollout, warmup

    seconds = warmup((np.float64,))
    assert isinstance(seconds, float) and 0.0 < seconds < 600.0
    if not rollout.backend.use_compiled():
        return
    float64_keys = [key for key in rollout._ENTRY_POINTS if key[0] == "float64"]
    assert float64_keys, "warmup((np.float64,)) compiled no float64 entry point"
    compiled = dict(rollout._ENTRY_POINTS)
    warmup((np.float64,))
    assert rollout._ENTRY_POINTS == compiled                   # nothing new, the same objects
    arrays = random_arrays(d_obs=3, d_act=2, dtype=np.float64, seed=4)
    acts = np.random.default_rng(1).uniform(-1, 1, (4, 5, 2))
    for reward_fn, term_fn in ((quad_reward_nb, far_done_nb), (quad_reward_np, far_done_np),
                               (quad_reward_nb, None)):
        for propagation in ("ts1", "expectation"):
            ro = ModelRollout(reward_fn, term_fn, particles=3, propagation=propagation, seed=2)
            values = ro.objective(arrays, np.array([0.1, 0.2, 0.3]))(acts)
            assert values.shape == (4,) and np.all(np.isfinite(values))
            assert rollout._ENTRY_POINTS == compiled, (reward_fn, term_fn, propagation)


def test_read_only_and_non_contiguous_inputs():
    """Frozen snapshots (read-only arrays), F-ordered and strided inputs give the same values."""
    arrays = random_arrays(d_obs=3, d_act=2, dtype=np.float32, seed=4)
    acts = np.random.default_rng(1).uniform(-1, 1, (6, 4, 2))
    ro = ModelRollout(quad_reward_nb, particles=3, seed=2)
    expected = ro.objective(arrays, np.array([0.1, 0.2, 0.3]))(acts)
    frozen = {}
    for name, value in arrays._asdict().items():
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.flags.writeable = False
        frozen[name] = value
    obs = np.array([0.1, 9.0, 0.2, 9.0, 0.3])[::2]          # strided
    obs.flags.writeable = False
    ro = ModelRollout(quad_reward_nb, particles=3, seed=2)
    got = ro.objective(type(arrays)(**frozen), obs)(np.asfortranarray(acts))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("module", [_kernels, _reference])
def test_masked_returns_by_hand(module):
    rewards = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])       # (H=3, R=2)
    dones = np.array([[False, True], [True, False], [False, False]])
    out = np.zeros(2)
    module._masked_returns(rewards, dones, 1, out)
    # row 0 ends at t=1 (its reward counts): 1 + 3; row 1 ends at t=0: 2
    np.testing.assert_array_equal(out, [4.0, 2.0])
    out = np.zeros(1)
    module._masked_returns(rewards, dones, 2, out)                 # one candidate, 2 particles
    np.testing.assert_array_equal(out, [3.0])


def test_shuffle_rows_twins():
    u = np.random.default_rng(0).random(50)
    a, b = np.zeros(50, dtype=np.int64), np.zeros(50, dtype=np.int64)
    _kernels._shuffle_rows(u, a)
    _reference._shuffle_rows(u, b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.sort(a), np.arange(50))
    assert not np.array_equal(a, np.arange(50))


def test_blas_limited_inside_the_rollout():
    import threadpoolctl  # a runtime dependency: missing it must fail, not skip
    seen = []

    def recording_reward(obs, act, next_obs):     # NumPy path: runs after the kernels
        return next_obs.sum(axis=1)

    ro = ModelRollout(recording_reward, particles=2, seed=0)
    with ro.blas_limit():
        with ro.blas_limit():                      # re-entrant
            seen = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                    if i["user_api"] == "blas"]
        ro.objective(linear_arrays([1.0]), np.zeros(1))(np.zeros((3, 2, 1)))
    import scipy.linalg.cython_blas  # noqa: F401  (the library Numba's np.dot uses)
    names = [i["filepath"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert len(seen) == len(names) >= 1
    assert all(n == 1 for n in seen)
    ro_none = ModelRollout(recording_reward, particles=2, seed=0, blas_threads=None)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outside = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                   if i["user_api"] == "blas"]
        with ro_none.blas_limit():                 # None: BLAS left alone
            assert [i["num_threads"] for i in threadpoolctl.threadpool_info()
                    if i["user_api"] == "blas"] == outside


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_inplace_twins(dtype):
    from fastmbrl.nn import _numba, _numba_reference

    x = np.concatenate([np.linspace(-100, 100, 401), [-1e-6, 0.0, 1e-6]]).astype(dtype)
    a, b = x.copy(), x.copy()
    _numba._exp_inplace(a, np.zeros(x.size, dtype=dtype))
    _numba_reference._exp_inplace(b, None)
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=0)
    assert np.all(np.isfinite(a)) and np.all(a > 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_fills_match_twins(dtype):
    """Counter-based noise: the twins agree and the draws look like N(0, 1) and U[0, 1)."""
    key = np.uint64(0xDEADBEEF12345)
    for n in (1, 2, 7, 40001):                    # odd sizes use one sine less
        a, b = np.zeros(n, dtype=dtype), np.full(n, np.nan, dtype=dtype)
        _kernels._fill_normal(key, a)
        _reference._fill_normal(key, b)
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype])
    assert abs(a.mean()) < 4 / np.sqrt(n) and abs(a.var() - 1) < 6 * np.sqrt(2 / n)
    assert np.abs(a).max() <= np.sqrt(2 * np.log(2.0 ** 24)) + 1e-5
    # the fraction beyond 1 and 2 standard deviations
    for z, p in ((1.0, 0.3173), (2.0, 0.0455)):
        assert abs(np.mean(np.abs(a) > z) - p) < 5 * np.sqrt(p * (1 - p) / n)
    other = np.zeros(n, dtype=dtype)
    _kernels._fill_normal(key + np.uint64(1), other)
    assert abs(np.corrcoef(a, other)[0, 1]) < 5 / np.sqrt(n)

    u, w = np.zeros(5001), np.zeros(5001)
    _kernels._fill_uniform(key, u)
    _reference._fill_uniform(key, w)
    np.testing.assert_array_equal(u, w)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
