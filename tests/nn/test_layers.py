"""Layer normalization, dropout, the fused block and critic ensembles (``fastmbrl.nn._layers_kernels``).

Each Numba kernel against its NumPy twin (float32 and float64; C, Fortran, strided and read-only
inputs where the kernel takes any layout), gradients against central differences in float64, and,
when PyTorch is installed, against torch's layer_norm / dropout kernels and autograd.
"""
import numba
import numpy as np
import pytest

from fastmbrl._config import ATOL, RTOL
from fastmbrl.nn import _layers_kernels as K
from fastmbrl.nn import _layers_reference as R
from fastmbrl.nn._flat import param_offsets

DTYPES = [np.float32, np.float64]
LAYOUTS = ["C", "F", "strided", "readonly"]
GRAD_RTOL, GRAD_ATOL = 1e-6, 1e-8                # central differences, float64
TORCH_RTOL = {np.float32: 1e-5, np.float64: 1e-9}
KEY = np.uint64(0xD1B54A32D192ED03)
CTR = np.uint64(12345)

# a small DHMBPO-like critic: [obs | act] -> 16 -> 16 -> 1, LayerNorm on the inputs of the hidden and
# output layers, dropout after the first two linear layers (erl_lib's EnsembleCriticNetwork)
DIMS = np.array([5, 16, 16, 1], np.int64)
LN_EPS = np.array([0.0, 1e-5, 1e-5])
P_DROP = np.array([0.2, 0.2, 0.0])
MODEL_LN_EPS = np.array([0.0, 1.0, 0.1])          # erl_lib's model: eps 1, 0.1, 0.01 by depth


def _close(a, b, dtype, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


def _layout(a, layout):
    """a (1-D or 2-D) in the given memory layout; "readonly" is C-contiguous and not writable."""
    a = np.array(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "readonly":
        a.flags.writeable = False
    return a


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _nan(shape, dtype):
    return np.full(shape, np.nan, dtype)


def _net(rng, dtype, ensemble_size, dims=DIMS, scale=0.5):
    flat = (scale * rng.standard_normal(param_offsets(dims, ensemble_size)[-1])).astype(dtype)
    return flat


def _buffers(dims, ensemble_size, B, dtype):
    nf, nm = K._cache_sizes(dims, B)
    wmax = int(max(dims[1:]))
    return (np.zeros((ensemble_size, nf), dtype), np.zeros((ensemble_size, nm), np.uint8),
            np.zeros((ensemble_size, 2 * B * wmax), dtype))


@pytest.fixture(scope="module", autouse=True)
def _single_thread_blas():
    """The kernels expect a one-thread BLAS (their callers pin it, as ``SAC`` does): a BLAS team
    beside the Numba team oversubscribes the cores. scipy's OpenBLAS (Numba's np.dot) is loaded
    first so that threadpoolctl sees it."""
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(n)


def _torch_close(ours, theirs, dtype):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    scale = max(1.0, float(np.abs(theirs).max())) if theirs.size else 1.0
    np.testing.assert_allclose(ours, theirs, rtol=TORCH_RTOL[dtype],
                               atol=TORCH_RTOL[dtype] * 0.1 * scale)


# ------------------------------------------------------------------------ layer normalization
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape, eps", [((1, 1), 1e-5), ((5, 3), 1.0), ((33, 257), 1e-5)])
def test_layernorm_matches_twin(rng, dtype, layout, affine, shape, eps):
    B, D = shape
    x = _layout((3 * rng.standard_normal(shape) + 1.5).astype(dtype), layout)
    g = _layout(rng.standard_normal(D).astype(dtype) if affine else np.zeros(0, dtype), layout)
    b = _layout(rng.standard_normal(D).astype(dtype) if affine else np.zeros(0, dtype), layout)
    dy = _layout(rng.standard_normal(shape).astype(dtype), layout)
    outs = [_nan(shape, dtype), _nan(B, dtype), _nan(B, dtype)]
    refs = [np.empty_like(o) for o in outs]
    K._layernorm_forward(x, g, b, eps, *outs)
    R._layernorm_forward(x, g, b, eps, *refs)
    for o, r in zip(outs, refs):
        _close(o, r, dtype)
    Dg = D if affine else 0
    bw = [_nan(shape, dtype), _nan(Dg, dtype), _nan(Dg, dtype)]
    bw_ref = [np.empty_like(o) for o in bw]
    K._layernorm_backward(dy, x, g, outs[1], outs[2], *bw)
    R._layernorm_backward(dy, x, g, outs[1], outs[2], *bw_ref)
    for o, r in zip(bw, bw_ref):
        _close(o, r, dtype, scale=10.0)
    # in place: dx_out is dy, y_out is x (rows are read before they are written)
    dy2, x2 = np.array(dy), np.array(x)
    K._layernorm_backward(dy2, x, g, outs[1], outs[2], dy2, *bw[1:])
    _close(dy2, bw[0], dtype)
    K._layernorm_forward(x2, g, b, eps, x2, outs[1], outs[2])
    _close(x2, outs[0], dtype)


def test_layernorm_float32_statistics_are_float64_accurate(rng):
    # a large offset: float32 sums would lose digits, the float64 statistics do not; the float32
    # output is within about one rounding of the float64 computation
    x = (1e3 + rng.standard_normal((64, 256))).astype(np.float32)
    y, mu, rs = np.empty_like(x), np.empty(64, np.float32), np.empty(64, np.float32)
    K._layernorm_forward(x, np.zeros(0, np.float32), np.zeros(0, np.float32), 1e-5, y, mu, rs)
    x64 = x.astype(np.float64)
    exact = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    assert np.max(np.abs(y - exact) / np.maximum(np.abs(exact), 1.0)) < 2 * np.finfo(np.float32).eps
    np.testing.assert_allclose(mu, x64.mean(1), rtol=1e-7)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("eps", [1e-5, 1.0])
def test_layernorm_gradient(rng, num_grad, affine, eps):
    B, D = 4, 6
    x = rng.standard_normal((B, D))
    g = rng.standard_normal(D) if affine else np.zeros(0)
    b = rng.standard_normal(D) if affine else np.zeros(0)
    G = rng.standard_normal((B, D))
    y, mu, rs = np.empty((B, D)), np.empty(B), np.empty(B)

    def loss():
        K._layernorm_forward(x, g, b, eps, y, mu, rs)
        return float(np.sum(G * y))

    loss()
    dx, dg, db = np.empty((B, D)), np.empty(g.size), np.empty(b.size)
    K._layernorm_backward(G, x, g, mu, rs, dx, dg, db)
    np.testing.assert_allclose(dx, num_grad(loss, x), rtol=GRAD_RTOL, atol=GRAD_ATOL)
    if affine:
        np.testing.assert_allclose(dg, num_grad(loss, g), rtol=GRAD_RTOL, atol=GRAD_ATOL)
        np.testing.assert_allclose(db, num_grad(loss, b), rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("eps", [1e-5, 1.0])
def test_layernorm_matches_torch(torch, rng, dtype, affine, eps):
    B, D = 37, 256
    x = (2 * rng.standard_normal((B, D)) + 0.5).astype(dtype)
    g = rng.standard_normal(D).astype(dtype) if affine else np.zeros(0, dtype)
    b = rng.standard_normal(D).astype(dtype) if affine else np.zeros(0, dtype)
    G = rng.standard_normal((B, D)).astype(dtype)
    y, mu, rs = np.empty((B, D), dtype), np.empty(B, dtype), np.empty(B, dtype)
    K._layernorm_forward(x, g, b, eps, y, mu, rs)
    dx, dg, db = np.empty((B, D), dtype), np.empty(g.size, dtype), np.empty(b.size, dtype)
    K._layernorm_backward(G, x, g, mu, rs, dx, dg, db)

    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(g, requires_grad=True) if affine else None
    tb = torch.tensor(b, requires_grad=True) if affine else None
    ty, tmu, trs = torch.native_layer_norm(tx, [D], tg, tb, eps)
    (ty * torch.tensor(G)).sum().backward()
    _torch_close(y, ty, dtype)
    _torch_close(mu, tmu[:, 0], dtype)
    _torch_close(rs, trs[:, 0], dtype)
    _torch_close(dx, tx.grad, dtype)
    if affine:
        _torch_close(dg, tg.grad, dtype)
        _torch_close(db, tb.grad, dtype)
    # and the public functional form
    _torch_close(y, torch.nn.functional.layer_norm(tx, [D], tg, tb, eps), dtype)


# --------------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("p", [0.0, 1e-3, 0.3])
def test_dropout_matches_twin(rng, dtype, layout, p):
    shape = (19, 33)
    x = _layout(rng.standard_normal(shape).astype(dtype), layout)
    dy = _layout(rng.standard_normal(shape).astype(dtype), layout)
    y, m = _nan(shape, dtype), np.full(shape, 7, np.uint8)
    y_ref, m_ref = np.empty_like(y), np.empty_like(m)
    K._dropout_forward(x, p, KEY, CTR, y, m)
    R._dropout_forward(x, p, KEY, CTR, y_ref, m_ref)
    np.testing.assert_array_equal(m, m_ref)
    _close(y, y_ref, dtype)
    dx, dx_ref = _nan(shape, dtype), np.empty(shape, dtype)
    K._dropout_backward(dy, _layout(m, layout), p, dx)
    R._dropout_backward(dy, m, p, dx_ref)
    _close(dx, dx_ref, dtype)
    # the mask kernel alone, into a non-contiguous output: same C-order counters
    m2 = np.zeros((shape[1], shape[0]), np.uint8).T
    K._dropout_mask(KEY, CTR, p, m2)
    np.testing.assert_array_equal(m2, m_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_p0_is_exact_identity(rng, dtype):
    x = rng.standard_normal((17, 31)).astype(dtype)
    x[0, :4] = [np.nan, np.inf, -0.0, 1e-40]                      # copied bit for bit
    y, m = _nan(x.shape, dtype), np.zeros(x.shape, np.uint8)
    K._dropout_forward(x, 0.0, KEY, CTR, y, m)
    assert y.tobytes() == x.tobytes() and np.all(m == 1)
    dx = _nan(x.shape, dtype)
    K._dropout_backward(x, m, 0.0, dx)
    assert dx.tobytes() == x.tobytes()


@pytest.mark.parametrize("p", [1e-3, 0.1, 0.5, 0.9])
def test_dropout_kept_fraction_and_scale(p):
    m = np.empty((2000, 256), np.uint8)
    K._dropout_mask(KEY, CTR, p, m)
    n = m.size
    dropped = n - int(m.sum())
    sigma = np.sqrt(n * p * (1 - p))
    assert abs(dropped - n * p) < 5 * sigma
    if p >= 0.1:
        # every column drops at the same rate, and neighbours independently (no lattice structure)
        cols = m.mean(axis=0)
        assert np.max(np.abs(cols - (1 - p))) < 6 * np.sqrt(p * (1 - p) / m.shape[0])
        both = np.mean((m[:, 1:] == 0) & (m[:, :-1] == 0))
        assert abs(both - p * p) < 6 * np.sqrt(p * p * (1 - p * p) / m[:, 1:].size)
    x = np.ones((2000, 256), np.float32)
    y = np.empty_like(x)
    K._dropout_forward(x, p, KEY, CTR, y, m)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / (1 - p))}
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)          # unbiased


def test_dropout_mask_is_a_function_of_key_and_counter():
    D = 64
    full = np.empty((10, D), np.uint8)
    K._dropout_mask(KEY, CTR, 0.5, full)
    again = np.empty_like(full)
    K._dropout_mask(KEY, CTR, 0.5, again)
    np.testing.assert_array_equal(full, again)                 # same seed, same mask
    part = np.empty((4, D), np.uint8)                          # rows 3..6 on their own
    K._dropout_mask(KEY, CTR + np.uint64(3 * D), 0.5, part)
    np.testing.assert_array_equal(part, full[3:7])
    other = np.empty_like(full)
    K._dropout_mask(KEY + np.uint64(1), CTR, 0.5, other)
    assert np.mean(other != full) > 0.3                        # another key, another mask
    K._dropout_mask(KEY, CTR + np.uint64(full.size), 0.5, other)
    assert np.mean(other != full) > 0.3                        # the next counters, another mask


def test_dropout_gradient(rng, num_grad):
    x = rng.standard_normal((6, 7))
    G = rng.standard_normal((6, 7))
    y, m = np.empty_like(x), np.empty(x.shape, np.uint8)

    def loss():
        K._dropout_forward(x, 0.4, KEY, CTR, y, m)         # same key and counter: a fixed mask
        return float(np.sum(G * y))

    loss()
    assert 0 < m.sum() < m.size
    dx = np.empty_like(x)
    K._dropout_backward(G, m, 0.4, dx)
    np.testing.assert_allclose(dx, num_grad(loss, x), rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_matches_torch_with_the_same_mask(torch, rng, dtype):
    p = 0.25
    x = rng.standard_normal((64, 128)).astype(dtype)
    G = rng.standard_normal(x.shape).astype(dtype)
    y, m = np.empty_like(x), np.empty(x.shape, np.uint8)
    K._dropout_forward(x, p, KEY, CTR, y, m)
    dx = np.empty_like(x)
    K._dropout_backward(G, m, p, dx)
    tm = torch.tensor(m.astype(bool))
    # torch's own dropout kernel (grad * mask * scale) fed with this mask, both ways
    fwd = torch.ops.aten.native_dropout_backward(torch.tensor(x), tm, 1.0 / (1.0 - p))
    bwd = torch.ops.aten.native_dropout_backward(torch.tensor(G), tm, 1.0 / (1.0 - p))
    _torch_close(y, fwd, dtype)
    _torch_close(dx, bwd, dtype)
    # autograd through x * mask / (1 - p)
    tx = torch.tensor(x, requires_grad=True)
    (tx * tm.to(tx.dtype) / (1 - p) * torch.tensor(G)).sum().backward()
    _torch_close(dx, tx.grad, dtype)


# ------------------------------------------------------------------------------ the fused block
BLOCK_DIMS = np.array([4, 6, 7, 5], np.int64)     # block at layer 1: 6 -> 7, member 2 of 3
BLOCK_E, BLOCK_L, BLOCK_K = 2, 1, 3


def _block_case(rng, dtype, ln, p, R_=9):
    din, dout = int(BLOCK_DIMS[BLOCK_L]), int(BLOCK_DIMS[BLOCK_L + 1])
    flat = _net(rng, dtype, BLOCK_K, BLOCK_DIMS, scale=0.7)
    x = (rng.standard_normal((R_, din)) + 0.3).astype(dtype)
    affine = ln == "affine"
    g = (1 + 0.3 * rng.standard_normal(din)).astype(dtype) if affine else np.zeros(0, dtype)
    b = (0.3 * rng.standard_normal(din)).astype(dtype) if affine else np.zeros(0, dtype)
    eps = 0.0 if ln == "none" else 1e-3
    dh = rng.standard_normal((R_, dout)).astype(dtype)
    return flat, x, g, b, eps, dh


def _block_fwd(mod, flat, x, g, b, eps, p, act, dtype):
    R_, din = x.shape
    dout = int(BLOCK_DIMS[BLOCK_L + 1])
    outs = [_nan((R_, din), dtype), _nan(R_, dtype), _nan(R_, dtype),
            np.full((R_, dout), 7, np.uint8), _nan((R_, dout), dtype), _nan((R_, dout), dtype)]
    mod._block_forward(flat, BLOCK_DIMS, BLOCK_K, BLOCK_E, BLOCK_L, act, eps, g, b, p, KEY, CTR, x,
                       *outs)
    return outs


def _block_bwd(mod, flat, x, g, eps, p, act, outs, dh, dtype, want_dx=True):
    R_, din = x.shape
    dout = dh.shape[1]
    grad = _nan(flat.shape, dtype)
    dg, db = _nan(g.size, dtype), _nan(g.size, dtype)
    dx, da = _nan((R_, din), dtype), _nan((R_, dout), dtype)
    mod._block_backward(flat, BLOCK_DIMS, BLOCK_K, BLOCK_E, BLOCK_L, act, eps, g, p, x, *outs, dh,
                        True, grad, dg, db, want_dx, dx, da)
    return grad, dg, db, dx, da


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1, 2, 3])
@pytest.mark.parametrize("ln", ["none", "plain", "affine"])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_block_matches_twin(rng, dtype, act, ln, p):
    flat, x, g, b, eps, dh = _block_case(rng, dtype, ln, p)
    _readonly(flat, x, g, b, dh)
    outs = _block_fwd(K, flat, x, g, b, eps, p, act, dtype)
    refs = _block_fwd(R, flat, x, g, b, eps, p, act, dtype)
    for i in ([0, 1, 2] if eps > 0 else []) + [4, 5]:
        _close(outs[i], refs[i], dtype)
    if p > 0:
        np.testing.assert_array_equal(outs[3], refs[3])
    else:
        assert np.all(outs[3] == 7)                         # no dropout: the mask is not touched
    if eps == 0:
        assert np.all(np.isnan(outs[0]))                    # no normalization: u is not touched
    _readonly(*outs)
    got = _block_bwd(K, flat, x, g, eps, p, act, outs, dh, dtype)
    ref = _block_bwd(R, flat, x, g, eps, p, act, outs, dh, dtype)
    W_lo = int(param_offsets(BLOCK_DIMS, BLOCK_K)[2 * BLOCK_L])
    hi = int(param_offsets(BLOCK_DIMS, BLOCK_K)[2 * BLOCK_L + 2])
    for o, r in zip(got, ref):
        _close(o, r, dtype, scale=10.0)
    # only member e's W_l, b_l are written in the gradient
    written = ~np.isnan(got[0])
    assert written.sum() == 6 * 7 + 7 and np.all(np.flatnonzero(written) >= W_lo)
    assert np.all(np.flatnonzero(written) < hi)
    if ln == "affine":                                     # gain/bias gradients even without dx
        alone = _block_bwd(K, flat, x, g, eps, p, act, outs, dh, dtype, want_dx=False)
        _close(alone[1], got[1], dtype)
        _close(alone[2], got[2], dtype)


@pytest.mark.parametrize("act", [0, 2, 3])
@pytest.mark.parametrize("ln", ["none", "plain", "affine"])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_block_gradient(rng, num_grad, act, ln, p):
    flat, x, g, b, eps, G = _block_case(rng, np.float64, ln, p, R_=5)
    outs = _block_fwd(K, flat, x, g, b, eps, p, act, np.float64)

    def loss():
        o = _block_fwd(K, flat, x, g, b, eps, p, act, np.float64)   # the same mask every call
        return float(np.sum(G * o[5]))

    grad, dg, db, dx, _ = _block_bwd(K, flat, x, g, eps, p, act, outs, G, np.float64)
    W, bl = R._layer(flat, BLOCK_DIMS, BLOCK_K, BLOCK_E, BLOCK_L)
    gW, gb = R._layer(grad, BLOCK_DIMS, BLOCK_K, BLOCK_E, BLOCK_L)
    for analytic, wrt in ((dx, x), (gW, W), (gb, bl), (dg, g), (db, b)):
        if wrt.size:
            np.testing.assert_allclose(analytic, num_grad(loss, wrt), rtol=GRAD_RTOL,
                                       atol=GRAD_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [1, 2, 3])
@pytest.mark.parametrize("ln", ["none", "plain", "affine"])
def test_block_matches_torch(torch, rng, dtype, act, ln):
    p = 0.3
    flat, x, g, b, eps, dh = _block_case(rng, dtype, ln, p, R_=33)
    outs = _block_fwd(K, flat, x, g, b, eps, p, act, dtype)
    grad, dg, db, dx, _ = _block_bwd(K, flat, x, g, eps, p, act, outs, dh, dtype)

    F = torch.nn.functional
    W, bl = R._layer(flat, BLOCK_DIMS, BLOCK_K, BLOCK_E, BLOCK_L)
    tW, tbl = torch.tensor(W, requires_grad=True), torch.tensor(bl, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(g, requires_grad=True) if ln == "affine" else None
    tb = torch.tensor(b, requires_grad=True) if ln == "affine" else None
    u = F.layer_norm(tx, [x.shape[1]], tg, tb, eps) if eps > 0 else tx
    z = (u @ tW + tbl) * torch.tensor(outs[3].astype(bool)).to(tx.dtype) / (1 - p)
    h = {1: F.relu, 2: torch.tanh, 3: F.silu}[act](z)
    (h * torch.tensor(dh)).sum().backward()
    _torch_close(outs[5], h, dtype)
    _torch_close(dx, tx.grad, dtype)
    gW, gb = R._layer(grad, BLOCK_DIMS, BLOCK_K, BLOCK_E, BLOCK_L)
    _torch_close(gW, tW.grad, dtype)
    _torch_close(gb, tbl.grad, dtype)
    if ln == "affine":
        _torch_close(dg, tg.grad, dtype)
        _torch_close(db, tb.grad, dtype)


# ------------------------------------------------------------------------- ensembles of critics
def _ens_case(rng, dtype, ensemble_size=5, B=9, dims=DIMS):
    flat = _net(rng, dtype, ensemble_size, dims)
    x = rng.standard_normal((B, int(dims[0]))).astype(dtype)
    y = rng.standard_normal(B).astype(dtype)
    return flat, x, y


def _ens_forward(mod, flat, x, ensemble_size, act, ln_eps=LN_EPS, p_drop=P_DROP, dims=DIMS):
    cbuf, mbuf, dbuf = _buffers(dims, ensemble_size, x.shape[0], flat.dtype)
    q = _nan((ensemble_size, x.shape[0]), flat.dtype)
    mod._ensemble_forward(flat, dims, ensemble_size, act, ln_eps, p_drop, KEY, CTR, x, cbuf, mbuf,
                          q)
    return q, cbuf, mbuf, dbuf


def _ens_backward(mod, flat, x, ensemble_size, act, cache, dq, want_grads=True, want_dx=True,
                  ln_eps=LN_EPS, p_drop=P_DROP, dims=DIMS):
    _, cbuf, mbuf, dbuf = cache
    B = x.shape[0]
    grad = _nan(flat.shape, flat.dtype)
    dxk = _nan((ensemble_size, B, int(dims[0])), flat.dtype)
    dx = _nan((B, int(dims[0])), flat.dtype)
    mod._ensemble_backward(flat, dims, ensemble_size, act, ln_eps, p_drop, x, cbuf, mbuf, dq,
                           want_grads, grad, want_dx, dxk, dx, dbuf)
    return grad, dx


@pytest.mark.parametrize("mod", [K, R], ids=["compiled", "twin"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("members", [[3, 1], [0], [4, 0, 2]])
def test_ensemble_forward_subset_equals_rows_of_whole_pass(rng, mod, dtype, members):
    """The subset pass gives, bit for bit, the rows of the whole pass with the same counter, dropout
    masks included (member e's masks start at counter + e nm in both)."""
    ensemble_size = 5
    flat, x, _ = _ens_case(rng, dtype, ensemble_size)
    q, _, mbuf, _ = _ens_forward(mod, flat, x, ensemble_size, 1)
    idx = np.array(members, np.int64)
    cbuf, mbuf_sub, _ = _buffers(DIMS, len(members), x.shape[0], dtype)
    q_sub = _nan((len(members), x.shape[0]), dtype)
    mod._ensemble_forward_subset(flat, DIMS, ensemble_size, idx, 1, LN_EPS, P_DROP, KEY, CTR, x,
                                 cbuf, mbuf_sub, q_sub)
    np.testing.assert_array_equal(q_sub, q[idx])
    np.testing.assert_array_equal(mbuf_sub[:len(members)], mbuf[idx])
    assert 0 < mbuf_sub.sum() < mbuf_sub.size                # dropout was on


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [1, 3])
@pytest.mark.parametrize("ensemble_size", [1, 2, 5])
def test_ensemble_forward_backward_match_twin(rng, dtype, act, ensemble_size):
    flat, x, _ = _ens_case(rng, dtype, ensemble_size)
    q, cbuf, mbuf, dbuf = _ens_forward(K, flat, x, ensemble_size, act)
    q_ref, cbuf_ref, mbuf_ref, _ = _ens_forward(R, flat, x, ensemble_size, act)
    _close(q, q_ref, dtype)
    _close(cbuf, cbuf_ref, dtype, scale=10.0)
    np.testing.assert_array_equal(mbuf, mbuf_ref)
    assert 0 < mbuf.sum() < mbuf.size                        # dropout did drop something
    dq = rng.standard_normal(q.shape).astype(dtype)
    got = _ens_backward(K, flat, x, ensemble_size, act, (q, cbuf, mbuf, dbuf), dq)
    ref = _ens_backward(R, flat, x, ensemble_size, act, (q_ref, cbuf_ref, mbuf_ref, dbuf), dq)
    for o, r in zip(got, ref):
        assert not np.any(np.isnan(o))
        _close(o, r, dtype, scale=10.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [[5, 1], [5, 8, 1]], ids=["L1", "L2"])
def test_shallow_ensembles_match_twin(rng, dtype, dims):
    # one block that is both first and last layer, and two blocks (the other branches of the chain)
    dims = np.array(dims, np.int64)
    L = len(dims) - 1
    ln_eps, p_drop = np.full(L, 0.5), np.full(L, 0.3)       # LN on the raw input too, here
    flat, x, _ = _ens_case(rng, dtype, 3, 7, dims)
    got = _ens_forward(K, flat, x, 3, 2, ln_eps, p_drop, dims)
    ref = _ens_forward(R, flat, x, 3, 2, ln_eps, p_drop, dims)
    _close(got[0], ref[0], dtype)
    np.testing.assert_array_equal(got[2], ref[2])
    dq = rng.standard_normal(got[0].shape).astype(dtype)
    g = _ens_backward(K, flat, x, 3, 2, got, dq, ln_eps=ln_eps, p_drop=p_drop, dims=dims)
    r = _ens_backward(R, flat, x, 3, 2, ref, dq, ln_eps=ln_eps, p_drop=p_drop, dims=dims)
    for o, rr in zip(g, r):
        _close(o, rr, dtype, scale=10.0)


def test_two_plain_critics_reproduce_the_sac_critic_loss(rng):
    # K = 2, no normalization, no dropout, ReLU and scale 0.5: SAC's twin-critic TD loss
    from fastmbrl.agents import _sac_kernels

    dims = np.array([5, 16, 16, 1], np.int64)
    flat, x, y = _ens_case(rng, np.float64, 2, 12, dims)
    off = np.zeros(3)
    cbuf, mbuf, dbuf = _buffers(dims, 2, 12, np.float64)
    q, dq, grad = np.empty((2, 12)), np.empty((2, 12)), np.empty_like(flat)
    loss = K._ensemble_mse_loss_grad(flat, dims, 2, 1, off, off, KEY, CTR, x, y, 0.5, cbuf, mbuf,
                                     dbuf, q, dq, grad)
    grad_sac = np.empty_like(flat)
    loss_sac, mean_q = _sac_kernels._sac_critic_loss_grad(flat, dims, 1, x[:, :3].copy(), x[:, 3:].copy(), y,
                                                          grad_sac)
    assert loss == pytest.approx(loss_sac, rel=1e-12)
    assert q.mean() == pytest.approx(mean_q, rel=1e-12)
    np.testing.assert_allclose(grad, grad_sac, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ensemble_mse_loss_grad_matches_twin(rng, dtype):
    Ke, B = 5, 11
    flat, x, y = _ens_case(rng, dtype, Ke, B)
    outs = []
    for mod in (K, R):
        cbuf, mbuf, dbuf = _buffers(DIMS, Ke, B, dtype)
        q, dq, grad = _nan((Ke, B), dtype), _nan((Ke, B), dtype), _nan(flat.shape, dtype)
        loss = mod._ensemble_mse_loss_grad(flat, DIMS, Ke, 3, LN_EPS, P_DROP, KEY, CTR, x, y, 1.0,
                                           cbuf, mbuf, dbuf, q, dq, grad)
        outs.append((loss, q, dq, grad))
    (loss, q, dq, grad), (loss_r, q_r, dq_r, grad_r) = outs
    assert loss == pytest.approx(loss_r, rel=RTOL[dtype])
    _close(q, q_r, dtype)
    _close(dq, dq_r, dtype)
    _close(grad, grad_r, dtype, scale=10.0)
    dq2 = np.empty_like(dq)
    assert K._ensemble_mse_grad(q, y, 1.0, dq2) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_array_equal(dq2, dq)


def test_ensemble_read_only_inputs(rng):
    dtype = np.float64
    flat, x, _ = _ens_case(rng, dtype, 3)
    q, cbuf, mbuf, dbuf = _ens_forward(K, flat, x, 3, 3)
    _readonly(flat, x)
    q_ro = _ens_forward(K, flat, x, 3, 3)[0]
    np.testing.assert_array_equal(q_ro, q)
    dq = rng.standard_normal(q.shape)
    _readonly(dq)
    grad, dx = _ens_backward(K, flat, x, 3, 3, (q, cbuf, mbuf, dbuf), dq)
    grad_r, dx_r = _ens_backward(R, flat, x, 3, 3, (q, cbuf, mbuf, dbuf), dq)
    _close(grad, grad_r, dtype)
    _close(dx, dx_r, dtype)


def test_ensemble_results_independent_of_thread_count(rng):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread only")
    dtype = np.float32
    Ke, B = 5, 64
    flat, x, y = _ens_case(rng, dtype, Ke, B)
    before = numba.get_num_threads()
    runs = []
    try:
        for nt in (1, 2):
            numba.set_num_threads(nt)
            q, cbuf, mbuf, dbuf = _ens_forward(K, flat, x, Ke, 3)
            grad, dx = _ens_backward(K, flat, x, Ke, 3, (q, cbuf, mbuf, dbuf),
                                     np.ones_like(q) / B)
            cb2, mb2, db2 = _buffers(DIMS, Ke, B, dtype)
            q2, dq2, g2 = np.empty_like(q), np.empty_like(q), np.empty_like(flat)
            loss = K._ensemble_mse_loss_grad(flat, DIMS, Ke, 3, LN_EPS, P_DROP, KEY, CTR, x, y,
                                             0.5, cb2, mb2, db2, q2, dq2, g2)
            runs.append((q, mbuf, grad, dx, q2, mb2, g2, np.array(loss)))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*runs):
        assert a.tobytes() == b.tobytes()                # bit for bit, masks included


@pytest.fixture
def one_numba_thread():
    """Finite differences call a parallel kernel thousands of times: one thread avoids the team's
    wake-ups on a busy machine (the results do not depend on it)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def test_ensemble_mse_gradient(rng, num_grad, one_numba_thread):
    Ke, B = 3, 4
    dims = np.array([4, 6, 5, 1], np.int64)
    flat, x, y = _ens_case(rng, np.float64, Ke, B, dims)
    cbuf, mbuf, dbuf = _buffers(dims, Ke, B, np.float64)
    q, dq = np.empty((Ke, B)), np.empty((Ke, B))

    def loss():
        g = np.empty_like(flat)
        return K._ensemble_mse_loss_grad(flat, dims, Ke, 3, LN_EPS, P_DROP, KEY, CTR, x, y, 0.7,
                                         cbuf, mbuf, dbuf, q, dq, g)

    grad = np.empty_like(flat)
    K._ensemble_mse_loss_grad(flat, dims, Ke, 3, LN_EPS, P_DROP, KEY, CTR, x, y, 0.7, cbuf, mbuf,
                              dbuf, q, dq, grad)
    assert 0 < mbuf.sum() < mbuf.size
    np.testing.assert_allclose(grad, num_grad(loss, flat), rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("reduction", [K.RED_MIN, K.RED_MEAN])
@pytest.mark.parametrize("ln_eps", [LN_EPS, MODEL_LN_EPS], ids=["critic-eps", "model-eps"])
def test_ensemble_reduction_gradient(rng, num_grad, one_numba_thread, reduction, ln_eps):
    Ke, B = 5, 4
    dims = np.array([4, 6, 5, 1], np.int64)
    flat, x, _ = _ens_case(rng, np.float64, Ke, B, dims)
    w = rng.standard_normal(B)
    idx = np.empty(2, np.int64)
    K._draw_subset(KEY, CTR, Ke, idx)
    out, arg = np.empty(B), np.empty(B, np.int64)

    def loss():
        q = _ens_forward(K, flat, x, Ke, 3, ln_eps, P_DROP, dims)[0]
        K._ensemble_reduce(q, idx, reduction, out, arg)
        return float(w @ out)

    loss()
    cache = _ens_forward(K, flat, x, Ke, 3, ln_eps, P_DROP, dims)
    if reduction == K.RED_MIN:       # differences of 1e-6 must not switch the minimum member
        q_sub = np.sort(cache[0][idx], axis=0)
        assert np.min(q_sub[1] - q_sub[0]) > 1e-4
    dq = np.empty((Ke, B))
    K._ensemble_reduce_backward(reduction, arg, w, dq)
    grad, dx = _ens_backward(K, flat, x, Ke, 3, cache, dq, ln_eps=ln_eps, dims=dims)
    np.testing.assert_allclose(dx, num_grad(loss, x), rtol=GRAD_RTOL, atol=GRAD_ATOL)
    np.testing.assert_allclose(grad, num_grad(loss, flat), rtol=GRAD_RTOL, atol=GRAD_ATOL)
    # input gradient alone: members outside the subset are skipped, same result
    _, dx_only = _ens_backward(K, flat, x, Ke, 3, cache, dq, want_grads=False, ln_eps=ln_eps,
                               dims=dims)
    np.testing.assert_allclose(dx_only, dx, rtol=1e-12, atol=1e-15)


def test_draw_subset_matches_twin_and_is_uniform():
    for K_, n in ((5, 2), (10, 3), (2, 2), (5, 5), (1, 1)):
        for c in range(50):
            a, b = np.empty(n, np.int64), np.empty(n, np.int64)
            K._draw_subset(KEY, np.uint64(c), K_, a)
            R._draw_subset(KEY, np.uint64(c), K_, b)
            np.testing.assert_array_equal(a, b)
            assert len(set(a)) == n and a.min() >= 0 and a.max() < K_
            if n == K_:
                np.testing.assert_array_equal(a, np.arange(K_))
    counts = np.zeros((5, 5))
    idx = np.empty(2, np.int64)
    N = 20000
    for c in range(N):
        K._draw_subset(KEY, np.uint64(2 * c), 5, idx)
        counts[idx[0], idx[1]] += 1
    expected = N / 20                                  # 20 ordered pairs of distinct members
    off = counts[~np.eye(5, dtype=bool)]
    assert np.all(np.abs(off - expected) < 5 * np.sqrt(expected)) and np.all(np.diag(counts) == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", [K.RED_MIN, K.RED_MEAN])
def test_ensemble_reduce_matches_twin(rng, dtype, reduction):
    q = rng.standard_normal((5, 40)).astype(dtype)
    q[3, :5] = q[1, :5]                                   # ties: the first in idx order wins
    idx = np.array([3, 1], np.int64)
    w = rng.standard_normal(40).astype(dtype)
    res = []
    for mod in (K, R):
        out, arg, dq = _nan(40, dtype), np.full(40, -7, np.int64), _nan((5, 40), dtype)
        mod._ensemble_reduce(q, idx, reduction, out, arg)
        mod._ensemble_reduce_backward(reduction, arg, w, dq)
        res.append((out, arg, dq))
    (out, arg, dq), (out_r, arg_r, dq_r) = res
    _close(out, out_r, dtype)
    np.testing.assert_array_equal(arg, arg_r)
    _close(dq, dq_r, dtype)
    if reduction == K.RED_MIN:
        np.testing.assert_array_equal(out, np.minimum(q[3], q[1]))
        assert np.all(arg[:5] == 3)
        assert np.all(dq[[0, 2, 4]] == 0)


def _torch_ensemble(torch, flat, dims, Ke, act, ln_eps, mbuf, p_drop, x):
    """erl_lib's EnsembleCriticNetwork in torch: per layer LayerNorm (no affine) on the input when
    eps > 0, linear, dropout with the kernel's masks, activation (none on the last layer)."""
    F = torch.nn.functional
    tflat = torch.tensor(flat, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    B = x.shape[0]
    offs = param_offsets(dims, Ke)
    L = len(dims) - 1
    qs = []
    for e in range(Ke):
        h = tx
        for l in range(L):
            din, dout = int(dims[l]), int(dims[l + 1])
            W = tflat[offs[2 * l]:offs[2 * l + 1]].view(Ke, din, dout)[e]
            b = tflat[offs[2 * l + 1]:offs[2 * l + 2]].view(Ke, dout)[e]
            if ln_eps[l] > 0:
                h = F.layer_norm(h, [din], eps=float(ln_eps[l]))
            h = h @ W + b
            if p_drop[l] > 0:
                m = R._cache_views(np.zeros(R._cache_sizes(dims, B)[0]), mbuf[e], dims, B, l)[5]
                h = h * torch.tensor(m.astype(bool)).to(h.dtype) / (1 - float(p_drop[l]))
            if l < L - 1:
                h = {1: F.relu, 2: torch.tanh, 3: F.silu}[act](h)
        qs.append(h[:, 0])
    return tflat, tx, torch.stack(qs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [1, 3])
def test_ensemble_mse_matches_torch(torch, rng, dtype, act):
    Ke, B = 5, 32
    flat, x, y = _ens_case(rng, dtype, Ke, B)
    cbuf, mbuf, dbuf = _buffers(DIMS, Ke, B, dtype)
    q, dq, grad = np.empty((Ke, B), dtype), np.empty((Ke, B), dtype), np.empty_like(flat)
    loss = K._ensemble_mse_loss_grad(flat, DIMS, Ke, act, LN_EPS, P_DROP, KEY, CTR, x, y, 1.0,
                                     cbuf, mbuf, dbuf, q, dq, grad)
    tflat, tx, tq = _torch_ensemble(torch, flat, DIMS, Ke, act, LN_EPS, mbuf, P_DROP, x)
    # erl_lib's critic loss: F.mse_loss(reduction="none") summed over members, mean over the batch
    ty = torch.tensor(y)[None, :].expand(Ke, B)
    tloss = torch.nn.functional.mse_loss(tq, ty, reduction="none").sum(0).mean()
    tloss.backward()
    _torch_close(q, tq, dtype)
    _torch_close(np.array(loss), tloss, dtype)
    _torch_close(grad, tflat.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", [K.RED_MIN, K.RED_MEAN])
def test_ensemble_reduction_matches_torch(torch, rng, dtype, reduction):
    Ke, B = 5, 32
    flat, x, _ = _ens_case(rng, dtype, Ke, B)
    w = (rng.standard_normal(B) / B).astype(dtype)
    q, cbuf, mbuf, dbuf = _ens_forward(K, flat, x, Ke, 3)
    idx = np.empty(2, np.int64)
    K._draw_subset(KEY, CTR, Ke, idx)
    out, arg, dq = np.empty(B, dtype), np.empty(B, np.int64), np.empty((Ke, B), dtype)
    K._ensemble_reduce(q, idx, reduction, out, arg)
    K._ensemble_reduce_backward(reduction, arg, w, dq)
    grad, dx = _ens_backward(K, flat, x, Ke, 3, (q, cbuf, mbuf, dbuf), dq)
    tflat, tx, tq = _torch_ensemble(torch, flat, DIMS, Ke, 3, LN_EPS, mbuf, P_DROP, x)
    if reduction == K.RED_MIN:       # erl_lib's _reduce: min over a random pair (REDQ)
        tout = torch.min(tq[torch.tensor(idx)], dim=0).values
    else:                            # actor_reduction "mean": all members
        tout = tq.mean(0)
    (tout * torch.tensor(w)).sum().backward()
    _torch_close(out, tout, dtype)
    _torch_close(dx, tx.grad, dtype)
    _torch_close(grad, tflat.grad, dtype)
