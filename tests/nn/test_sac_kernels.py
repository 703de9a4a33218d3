"""SAC kernels (fastmbrl.agents._sac_kernels) against their NumPy twins, finite differences and
closed forms."""
import numpy as np
import pytest

from fastmbrl.agents import _sac_kernels as K
from fastmbrl.agents import sac_reference as R
from fastmbrl.nn._flat import param_offsets

IMPLS = {"kernel": K, "twin": R}
RTOL = {np.float32: 2e-4, np.float64: 1e-10}
ATOL = {np.float32: 2e-5, np.float64: 1e-12}
O, A, H, B = 3, 2, 6, 9


def make_problem(dtype, act_code=1, seed=0, scale=(2.0, 0.5), bias=(0.0, 0.25)):
    rng = np.random.default_rng(seed)
    dims_a = np.array([O, H, H, 2 * A], np.int64)
    dims_c = np.array([O + A, H, H, 1], np.int64)
    na, nc = param_offsets(dims_a, 1)[-1], param_offsets(dims_c, 2)[-1]
    p = {
        "dims_a": dims_a, "dims_c": dims_c, "act_code": act_code,
        "actor": rng.normal(0, 0.5, na).astype(dtype), "critic": rng.normal(0, 0.5, nc).astype(dtype),
        "target": rng.normal(0, 0.5, nc).astype(dtype),
        "obs": rng.normal(size=(B, O)).astype(dtype), "act": rng.uniform(-1, 1, (B, A)).astype(dtype),
        "reward": rng.normal(size=B).astype(dtype), "next_obs": rng.normal(size=(B, O)).astype(dtype),
        "terminated": rng.random(B) < 0.3, "noise": rng.normal(size=(2, B, A)).astype(dtype),
        "y": rng.normal(size=B).astype(dtype),
        "scale": np.array(scale, dtype), "bias": np.array(bias, dtype),
        "hp": np.array([0.99, 0.005, 3e-4, 1e-3, 2e-3, 0.9, 0.999, 1e-8, -20.0, 2.0, -float(A)]),
    }
    return p


def state_args(p, dtype):
    na, nc = p["actor"].size, p["critic"].size
    return [p["actor"].copy(), p["critic"].copy(), p["target"].copy(), p["dims_a"], p["dims_c"],
            p["act_code"], np.zeros(na, dtype), np.zeros(na, dtype), np.zeros(nc, dtype),
            np.zeros(nc, dtype), np.array([np.log(0.3), 0, 0], dtype), np.zeros(3, np.int64),
            p["hp"], p["scale"], p["bias"]]


def close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype])


# ------------------------------------------------------------------- kernel vs twin equivalence
SAC_KERNEL_MODULES = ["_sac_kernels", "_sac_rng_kernels", "_sac_loss_kernels", "_sac_optim_kernels",
                      "_sac_update_kernels", "_sac_mb_kernels", "_sac_mixed_kernels"]
# the fused update's internals and the network pieces only the fused update uses: no twin
NO_TWIN = {"_sac_update_in", "_td_targets", "_gather_rows", "_split", "_add_range",
           "_polyak_range", "_act_backward", "_bias_act", "_bias_grad"}


@pytest.mark.parametrize("part", SAC_KERNEL_MODULES)
def test_every_sac_kernel_module_has_its_twins_in_sac_reference(monkeypatch, part):
    import importlib
    import inspect

    from fastmbrl import backend

    name = f"fastmbrl.agents.{part}"
    monkeypatch.setattr(backend, "PURE_PYTHON", True)
    assert backend.kernels(name) is R
    monkeypatch.setattr(backend, "PURE_PYTHON", False)
    compiled = backend.kernels(name)
    assert compiled is importlib.import_module(name)
    kernels = {n: f for n, f in vars(compiled).items() if hasattr(f, "py_func")}
    assert kernels
    for n, f in kernels.items():
        if n not in NO_TWIN:
            assert inspect.signature(getattr(R, n)) == inspect.signature(f.py_func), n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act_code", [1, 2])
def test_update_matches_twin(dtype, act_code):
    p = make_problem(dtype, act_code)
    results = []
    for impl in (K, R):
        st = state_args(p, dtype)
        met = np.zeros((3, 6))
        for i in range(3):
            impl._sac_update(*st, p["obs"], p["act"], p["reward"], p["next_obs"], p["terminated"],
                             p["noise"][0], p["noise"][1], met[i])
        results.append((st, met))
    (sk, mk), (sr, mr) = results
    for i in (0, 1, 2, 6, 7, 8, 9, 10):
        close(sk[i], sr[i], dtype)
    np.testing.assert_array_equal(sk[11], sr[11])
    np.testing.assert_array_equal(sk[11], [3, 3, 3])
    close(mk, mr, dtype)
    assert not np.allclose(sk[0], p["actor"])  # the step moved the actor


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_from_matches_twin(dtype):
    p = make_problem(dtype)
    rng = np.random.default_rng(5)
    N = 40
    buf = [rng.normal(size=(N, O)).astype(dtype), rng.uniform(-1, 1, (N, A)).astype(dtype),
           rng.normal(size=N).astype(dtype), rng.normal(size=(N, O)).astype(dtype),
           rng.random(N) < 0.2]
    out = []
    for impl in (K, R):
        st = state_args(p, dtype)
        rs = np.array([123, 0, 0], np.uint64)
        met = np.zeros((4, 6))
        work = impl._sac_workspace(st[0], st[1], st[3], st[4], 8)
        for w in work:
            w.fill(np.nan)          # scratch left dirty by an earlier call must not leak in
        impl._sac_update_from(*st, *buf, N - 3, 8, rs, met, work)
        out.append((st, rs, met))
    for i in (0, 1, 2, 10):
        close(out[0][0][i], out[1][0][i], dtype)
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][1], [123, 4 * (8 + 4 * 8 * A), 0])
    close(out[0][2], out[1][2], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("deterministic", [True, False])
def test_act_matches_twin_and_bounds(dtype, deterministic):
    p = make_problem(dtype)
    outs = []
    for impl in (K, R):
        rs = np.array([9, 0, 0], np.uint64)
        a = np.empty((B, A), dtype)
        impl._sac_act(p["actor"], p["dims_a"], 1, p["obs"], deterministic, -20.0, 2.0, p["scale"],
                      p["bias"], rs, a)
        outs.append((a, rs))
    close(outs[0][0], outs[1][0], dtype)
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    lo, hi = p["bias"] - p["scale"], p["bias"] + p["scale"]
    assert np.all(outs[0][0] >= lo) and np.all(outs[0][0] <= hi)
    if deterministic:
        out = R._mlp_forward(p["actor"], p["dims_a"], 1, 0, 1, p["obs"])[-1]
        close(outs[0][0], p["scale"] * np.tanh(out[:, :A]) + p["bias"], dtype)


def test_rng_streams():
    rs_k = np.array([2024, 0, 0], np.uint64)
    rs_r = rs_k.copy()
    ik, ir = np.empty(20000, np.int64), np.empty(20000, np.int64)
    K._sac_sample_indices(rs_k, 7, ik)
    R._sac_sample_indices(rs_r, 7, ir)
    np.testing.assert_array_equal(ik, ir)
    assert ik.min() == 0 and ik.max() == 6
    counts = np.bincount(ik, minlength=7)
    assert np.all(np.abs(counts - 20000 / 7) < 5 * np.sqrt(20000 / 7))
    zk, zr = np.empty((3, 10000)), np.empty((3, 10000))
    K._sac_draw_normals(rs_k, 1, zk)
    R._sac_draw_normals(rs_r, 1, zr)
    np.testing.assert_allclose(zk, zr, rtol=1e-12, atol=1e-12)
    assert abs(zk.mean()) < 0.03 and abs(zk.std() - 1.0) < 0.03
    np.testing.assert_array_equal(rs_k, [2024, 20000 + 60000, 0])
    # the act stream (slot 2) is a different sequence
    z2 = np.empty((3, 10000))
    K._sac_draw_normals(np.array([2024, 20000, 0], np.uint64), 2, z2)
    assert np.abs(np.corrcoef(z2.ravel(), zk.ravel())[0, 1]) < 0.05


# ------------------------------------------------------------------------ finite differences
def fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act_code", [1, 2])
def test_critic_loss_gradient(impl, act_code):
    M = IMPLS[impl]
    p = make_problem(np.float64, act_code, seed=1)
    critic = p["critic"].copy()
    g = np.empty_like(critic)
    M._sac_critic_loss_grad(critic, p["dims_c"], act_code, p["obs"], p["act"], p["y"], g)
    scratch = np.empty_like(critic)
    num = fd_grad(lambda: M._sac_critic_loss_grad(critic, p["dims_c"], act_code, p["obs"], p["act"],
                                                  p["y"], scratch)[0], critic)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act_code", [1, 2])
def test_actor_loss_gradient(impl, act_code):
    """Through the critics' input path, the tanh squashing and the log-density."""
    M = IMPLS[impl]
    p = make_problem(np.float64, act_code, seed=2)
    actor = p["actor"].copy()
    g = np.empty_like(actor)
    logp = np.empty(B)
    M._sac_actor_loss_grad(actor, p["dims_a"], p["critic"], p["dims_c"], act_code, p["obs"],
                           p["noise"][1], 0.7, -20.0, 2.0, p["scale"], p["bias"], g, logp)
    scratch, lp2 = np.empty_like(actor), np.empty(B)

    def loss():
        return M._sac_actor_loss_grad(actor, p["dims_a"], p["critic"], p["dims_c"], act_code,
                                      p["obs"], p["noise"][1], 0.7, -20.0, 2.0, p["scale"],
                                      p["bias"], scratch, lp2)

    num = fd_grad(loss, actor)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
    assert np.abs(g).max() > 1e-3


@pytest.mark.parametrize("impl", IMPLS)
def test_actor_gradient_zero_where_log_std_clipped(impl):
    M = IMPLS[impl]
    p = make_problem(np.float64, 2, seed=3)
    # bounds that clip every raw log-std: the loss then does not depend on the log-std head
    g = np.empty_like(p["actor"])
    M._sac_actor_loss_grad(p["actor"], p["dims_a"], p["critic"], p["dims_c"], 2, p["obs"],
                           p["noise"][1], 0.7, 50.0, 51.0, p["scale"], p["bias"], g, np.empty(B))
    off = param_offsets(p["dims_a"], 1)
    W2 = g[off[4]:off[5]].reshape(H, 2 * A)
    b2 = g[off[5]:off[6]]
    np.testing.assert_array_equal(W2[:, A:], 0.0)
    np.testing.assert_array_equal(b2[A:], 0.0)
    assert np.abs(W2[:, :A]).max() > 0


@pytest.mark.parametrize("impl", IMPLS)
def test_temperature_loss_gradient(impl):
    M = IMPLS[impl]
    logp = np.random.default_rng(0).normal(size=B)
    la = np.array([0.3])
    loss, g = M._sac_temperature_loss_grad(la[0], logp, -2.0)
    np.testing.assert_allclose(loss, -0.3 * np.mean(logp - 2.0))
    num = fd_grad(lambda: M._sac_temperature_loss_grad(la[0], logp, -2.0)[0], la)
    np.testing.assert_allclose(g, num[0], rtol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
def test_critic_target_formula(impl):
    M = IMPLS[impl]
    p = make_problem(np.float64, seed=4)
    y = np.empty(B)
    M._sac_critic_target(p["actor"], p["dims_a"], p["target"], p["dims_c"], 1, p["next_obs"],
                         p["reward"], p["terminated"], p["noise"][0], 0.4, 0.9, -20.0, 2.0,
                         p["scale"], p["bias"], y)
    a2, lp = np.empty((B, A)), np.empty(B)
    out = R._mlp_forward(p["actor"], p["dims_a"], 1, 0, 1, p["next_obs"])[-1]
    R._squash_head(out, p["noise"][0], -20.0, 2.0, p["scale"], p["bias"], a2, lp)
    z = np.concatenate([p["next_obs"], a2], 1)
    q = [R._mlp_forward(p["target"], p["dims_c"], 2, e, 1, z)[-1][:, 0] for e in (0, 1)]
    want = p["reward"] + 0.9 * (~p["terminated"]) * (np.minimum(q[0], q[1]) - 0.4 * lp)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    # terminated rows are the reward alone; truncation is not an input at all
    np.testing.assert_array_equal(y[p["terminated"]], p["reward"][p["terminated"]])


# ------------------------------------------------------------------- squashed log-density
@pytest.mark.parametrize("impl", IMPLS)
def test_squashed_log_density_change_of_variables(impl):
    M = IMPLS[impl]
    mean, log_std = 0.4, np.log(0.8)
    u = np.linspace(-6.0, 6.0, 41)
    eps = ((u - mean) / 0.8)[:, None]
    out = np.tile([[mean, log_std]], (u.size, 1))
    a, lp = np.empty((u.size, 1)), np.empty(u.size)
    M._squash_head(out, eps, -20.0, 2.0, np.ones(1), np.zeros(1), a, lp)
    # log N(u) - log |d tanh / du|, the derivative taken numerically
    h = 1e-4
    dtanh = (np.tanh(u + h) - np.tanh(u - h)) / (2 * h)
    logn = -0.5 * eps[:, 0] ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    keep = dtanh > 1e-12
    np.testing.assert_allclose(lp[keep], (logn - np.log(dtanh))[keep], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a[:, 0], np.tanh(u), rtol=1e-12)
    # far out, where 1 - tanh(u)^2 underflows, the stable form stays exact: log(1 - tanh^2 u) =
    # log 4 - 2|u| - 2 log(1 + exp(-2|u|))
    u = np.array([-400.0, -30.0, 30.0, 400.0])
    eps = ((u - mean) / 0.8)[:, None]
    out = np.tile([[mean, log_std]], (u.size, 1))
    lp = np.empty(u.size)
    M._squash_head(out, eps, -20.0, 2.0, np.ones(1), np.zeros(1), np.empty((u.size, 1)), lp)
    logn = -0.5 * eps[:, 0] ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(lp, logn - (np.log(4.0) - 2 * np.abs(u)), rtol=1e-12)


def test_squashed_density_integrates_to_one():
    # density of the squashed action a in (-1, 1): exp(log pi) on a grid in a, integrated
    a = np.linspace(-1 + 1e-12, 1 - 1e-12, 400001)
    u = np.arctanh(a)
    mean, std = -0.3, 0.6
    eps = ((u - mean) / std)[:, None]
    out = np.tile([[mean, np.log(std)]], (a.size, 1))
    lp = np.empty(a.size)
    K._squash_head(out, eps, -20.0, 2.0, np.ones(1), np.zeros(1), np.empty((a.size, 1)), lp)
    assert abs(np.trapezoid(np.exp(lp), a) - 1.0) < 1e-4


# --------------------------------------------------------------------------- Adam and Polyak
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_torch_formula(impl, dtype):
    M = IMPLS[impl]
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=50).astype(dtype)
    p, m, v = p0.copy(), np.zeros(50, dtype), np.zeros(50, dtype)
    pw, mw, vw = p0.astype(np.float64), np.zeros(50), np.zeros(50)
    for t in (1, 2, 3):
        g = rng.normal(size=50).astype(dtype)
        M._adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, t)
        mw = 0.9 * mw + 0.1 * g
        vw = 0.999 * vw + 0.001 * g.astype(np.float64) ** 2
        pw -= (1e-2 / (1 - 0.9 ** t)) * mw / (np.sqrt(vw) / np.sqrt(1 - 0.999 ** t) + 1e-8)
        if t == 1:  # Adam's first step is lr * sign(g)
            np.testing.assert_allclose(p, p0 - 1e-2 * np.sign(g), rtol=RTOL[dtype], atol=1e-6)
    close(p, pw, dtype)


@pytest.mark.parametrize("impl", IMPLS)
def test_polyak(impl):
    M = IMPLS[impl]
    t = np.array([1.0, -2.0, 4.0])
    M._polyak_update(t, np.array([3.0, 0.0, 4.0]), 0.25)
    np.testing.assert_allclose(t, [1.5, -1.5, 4.0])
    M._polyak_update(t, np.array([0.0, 0.0, 0.0]), 1.0)
    np.testing.assert_array_equal(t, 0.0)


# ------------------------------------------ the fused step's buffered passes (_forward_into, ...)
@pytest.mark.parametrize("impl", [K, R], ids=["kernel", "twin"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act_code", [1, 2])
def test_buffered_passes_match_the_list_passes_for_any_row_split(impl, dtype, act_code):
    """_forward_into writes the activations of _mlp_forward; _backward_into over two row ranges
    gives parameter gradients that sum to the full batch's and the same input gradient rows."""
    p = make_problem(dtype, act_code)
    dims, critic = p["dims_c"], p["critic"]
    z = np.concatenate([p["obs"], p["act"]], axis=1)
    abuf = np.full(impl._act_size(dims, B), np.nan, dtype)
    out = impl._forward_into(critic, dims, 2, 1, act_code, z, abuf)
    acts = R._mlp_forward(critic, dims, 2, 1, act_code, z)
    close(out, acts[-1], dtype)
    for l in range(1, dims.size):
        close(impl._act_view(abuf, dims, B, l), acts[l], dtype)
    dy = np.random.default_rng(1).normal(size=(B, 1)).astype(dtype)
    g_full = np.zeros_like(critic)
    dx_full = R._mlp_backward(critic, dims, 2, 1, act_code, acts, dy, g_full, True, O)
    g_sum = np.zeros_like(critic)
    dx = np.full((B, A), np.nan, dtype)
    for r0, r1 in ((0, 4), (4, B)):              # uneven halves, as an odd batch gives
        g = np.zeros_like(critic)
        dbuf = np.empty(2 * (r1 - r0) * H, dtype)
        impl._backward_into(critic, dims, 2, 1, act_code, z, abuf, r0, r1, dy[r0:r1], g, True, O,
                            dx[r0:r1], dbuf)
        g_sum += g
    close(g_sum, g_full, dtype)
    close(dx, dx_full, dtype)
    for l in range(dims.size - 1):               # member 0 untouched: only member 1 was asked
        W0, b0 = R._layer(g_sum, dims, 2, 0, l)
        assert not W0.any() and not b0.any()


@pytest.mark.parametrize("impl", [K, R], ids=["kernel", "twin"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_by_ranges_is_adam_on_the_whole(impl, dtype):
    """_adam_range over pieces (as the two threads split it) is bit-identical to one range, and
    matches _adam_update."""
    rng = np.random.default_rng(0)
    n = 103
    p0, g = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    m0, v0 = rng.normal(size=n).astype(dtype), rng.random(n).astype(dtype)
    c = impl._adam_coeffs(p0, 1e-2, 0.9, 0.999, 1e-8, 7)
    whole = [a.copy() for a in (p0, m0, v0)]
    impl._adam_range(whole[0], g, whole[1], whole[2], c, 0, n)
    split = [a.copy() for a in (p0, m0, v0)]
    for i0, i1 in (K._split(n, 0, 2), K._split(n, 1, 2)):
        impl._adam_range(split[0], g, split[1], split[2], c, i0, i1)
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)
    ref = [a.copy() for a in (p0, m0, v0)]
    R._adam_update(ref[0], g, ref[1], ref[2], 1e-2, 0.9, 0.999, 1e-8, 7)
    for a, b in zip(whole, ref):
        close(a, b, dtype)


def test_split_covers_the_range_once():
    for n in (0, 1, 15, 16, 17, 103, 134402):
        parts = [K._split(n, t, 2) for t in range(2)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert parts[0][1] == parts[1][0]
        assert parts[0][1] % 16 == 0 or parts[0][1] == n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squash_head_vjp_matches_twin(dtype):
    """The one squashed-Gaussian backward pass (actor loss, model-based actor VJP, fused step)
    against its twin, with raw log-stds inside and outside the clip bounds."""
    rng = np.random.default_rng(4)
    out = rng.normal(size=(B, 2 * A)).astype(dtype)
    out[:3, A:] = [[-30.0, 1.0], [3.0, -1.0], [0.5, 5.0]]      # clipped entries pass no gradient
    eps, d_act = rng.normal(size=(B, A)).astype(dtype), rng.normal(size=(B, A)).astype(dtype)
    d_logp = rng.normal(size=B)
    scale = np.array([2.0, 0.5], dtype)
    got, want = np.empty((B, 2 * A), dtype), np.empty((B, 2 * A), dtype)
    K._squash_head_vjp(out, eps, d_act, d_logp, -20.0, 2.0, scale, got)
    R._squash_head_vjp(out, eps, d_act, d_logp, -20.0, 2.0, scale, want)
    close(got, want, dtype)
    assert got[0, A] == 0.0 and got[1, A] == 0.0 and got[2, A + 1] == 0.0
