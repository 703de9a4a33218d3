"""Each compiled neural kernel against its NumPy twin, float32 and float64, AVX2 and portable variants."""
import numpy as np
import pytest

from fastmbrl._config import ATOL, RTOL
from fastmbrl.nn import _reference

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1, 1), (3, 17, 5, 9), (2, 33, 64, 40)]  # (E, B, I, O): odd sizes hit loop tails


def _close(a, b, dtype, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _data(rng, dtype, *shapes, scale=1.0):
    return [(scale * rng.standard_normal(s)).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_dense_forward_matches_twin(impl, rng, dtype, activation, shape):
    E, B, I, O = shape
    x, W, b = _data(rng, dtype, (E, B, I), (E, I, O), (E, O), scale=1.5)
    _readonly(x, W, b)
    z, y = np.full((E, B, O), np.nan, dtype), np.full((E, B, O), np.nan, dtype)
    z_ref, y_ref = np.empty_like(z), np.empty_like(y)
    impl._dense_forward(x, W, b, activation, z, y)
    _reference._dense_forward(x, W, b, activation, z_ref, y_ref)
    _close(z, z_ref, dtype)
    _close(y, y_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_dense_backward_matches_twin(impl, rng, dtype, activation, shape):
    E, B, I, O = shape
    x, W, z, dy = _data(rng, dtype, (E, B, I), (E, I, O), (E, B, O), (E, B, O), scale=1.5)
    _readonly(x, W, z, dy)
    outs = [np.full(s, np.nan, dtype) for s in ((E, B, O), (E, I, O), (E, O), (E, B, I))]
    refs = [np.empty_like(o) for o in outs]
    impl._dense_backward(x, W, z, dy, activation, *outs)
    _reference._dense_backward(x, W, z, dy, activation, *refs)
    for o, r in zip(outs, refs):
        _close(o, r, dtype, scale=10.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_tanh_extreme_arguments(impl, dtype):
    # the polynomial exp is clamped: huge |z| must give the limits, not inf/NaN
    z_in = np.array([[[-1e4, -100.0, -88.0, -20.0, -1e-3, 0.0, 1e-3, 0.29, 0.31, 20.0, 88.0, 1e4]]],
                    dtype=dtype)
    x = np.ones((1, 1, 1), dtype)
    W = z_in.reshape(1, 1, -1).copy()
    b = np.zeros((1, W.shape[2]), dtype)
    for act in (2, 3):
        z, y = np.empty((1, 1, W.shape[2]), dtype), np.empty((1, 1, W.shape[2]), dtype)
        impl._dense_forward(x, W, b, act, z, y)
        z_ref, y_ref = np.empty_like(z), np.empty_like(y)
        _reference._dense_forward(x, W, b, act, z_ref, y_ref)
        assert np.all(np.isfinite(y))
        _close(y, y_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_accuracy_dense_sweep(impl, dtype):
    # SiLU over a dense sweep of arguments: the float32 polynomial exp stays within ~1e-6 relative
    z_in = np.linspace(-30, 30, 20001).astype(dtype)
    x = np.ones((1, 1, 1), dtype)
    W = z_in.reshape(1, 1, -1)
    b = np.zeros((1, z_in.size), dtype)
    z, y = np.empty((1, 1, z_in.size), dtype), np.empty((1, 1, z_in.size), dtype)
    impl._dense_forward(x, W, b, 3, z, y)
    exact = z_in.astype(np.float64) / (1 + np.exp(-z_in.astype(np.float64)))
    rel = np.abs(y[0, 0] - exact) / np.maximum(np.abs(exact), 1e-30)
    assert rel.max() < (2e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 13, 3), (5, 64, 4)])
def test_gaussian_nll_grad_matches_twin(impl, rng, dtype, shape):
    mean, target = _data(rng, dtype, shape, shape)
    logvar = rng.uniform(-8, 4, shape).astype(dtype)
    _readonly(mean, target, logvar)
    dm, dl = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    dm_ref, dl_ref = np.empty_like(dm), np.empty_like(dl)
    loss = impl._gaussian_nll_grad(mean, logvar, target, dm, dl)
    loss_ref = _reference._gaussian_nll_grad(mean, logvar, target, dm_ref, dl_ref)
    assert loss == pytest.approx(loss_ref, rel=RTOL[dtype])
    _close(dm, dm_ref, dtype)
    _close(dl, dl_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 13, 3), (5, 64, 4)])
def test_soft_bounds_match_twin(impl, rng, dtype, shape):
    D = shape[2]
    raw = rng.uniform(-25, 10, shape).astype(dtype)  # well past both bounds on either side
    max_lv = rng.uniform(0.0, 1.0, D).astype(dtype)
    min_lv = rng.uniform(-12.0, -8.0, D).astype(dtype)
    d_lv = rng.standard_normal(shape).astype(dtype)
    _readonly(raw, max_lv, min_lv, d_lv)
    lv, lv_ref = np.full(shape, np.nan, dtype), np.empty(shape, dtype)
    impl._soft_bound_forward(raw, max_lv, min_lv, lv)
    _reference._soft_bound_forward(raw, max_lv, min_lv, lv_ref)
    _close(lv, lv_ref, dtype)
    assert np.all(lv <= max_lv + 1e-5) and np.all(lv >= min_lv - 1e-5)
    outs = [np.full(shape, np.nan, dtype), np.full(D, np.nan, dtype), np.full(D, np.nan, dtype)]
    refs = [np.empty_like(o) for o in outs]
    impl._soft_bound_backward(raw, max_lv, min_lv, d_lv, *outs)
    _reference._soft_bound_backward(raw, max_lv, min_lv, d_lv, *refs)
    for o, r in zip(outs, refs):
        _close(o, r, dtype, scale=10.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decays", [[0.0], [0.0, 1e-2, 0.5]])
def test_adam_update_matches_twin(impl, rng, dtype, decays):
    n = 1001
    ends = np.linspace(0, n, len(decays) + 1).astype(np.int64)[1:]
    param, grad = _data(rng, dtype, (n,), (n,))
    m = (0.1 * rng.standard_normal(n)).astype(dtype)
    v = rng.uniform(0, 0.1, n).astype(dtype)
    _readonly(grad)
    p2, m2, v2 = param.copy(), m.copy(), v.copy()
    for step in (1, 2, 7):
        impl._adam_update(param, grad, m, v, ends, np.array(decays), 1e-2, 0.9, 0.999, 1e-8, step)
        _reference._adam_update(p2, grad, m2, v2, ends, np.array(decays), 1e-2, 0.9, 0.999, 1e-8, step)
        _close(m, m2, dtype)
        _close(v, v2, dtype)
        _close(param, p2, dtype)


def test_compiled_kernels_reject_inconsistent_shapes(compiled):
    x = np.zeros((2, 3, 4), np.float32)
    W = np.zeros((2, 5, 6), np.float32)  # fan-in 5 != 4
    b = np.zeros((2, 6), np.float32)
    z = np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match="W"):
        compiled._dense_forward(x, W, b, 0, z, z.copy())
    W = np.zeros((2, 4, 6), np.float32)
    with pytest.raises(ValueError, match="z_out"):
        compiled._dense_forward(x, W, b, 0, np.zeros((2, 3, 7), np.float32), z)
    with pytest.raises(ValueError, match="activation"):
        compiled._dense_forward(x, W, b, 9, z, z.copy())
    with pytest.raises((TypeError, ValueError)):
        compiled._dense_forward(x.astype(np.float64), W, b, 0, z, z.copy())  # mixed dtypes
    with pytest.raises(ValueError, match="seg_end"):
        p = np.zeros(10, np.float32)
        compiled._adam_update(p, p.copy(), p.copy(), p.copy(), np.array([9]), np.zeros(1), 1e-3,
                              0.9, 0.999, 1e-8, 1)


def test_compiled_kernels_reject_non_contiguous_buffers(compiled):
    # the kernels take C-contiguous buffers; the public API makes them so, the kernels refuse others
    x = np.zeros((2, 4, 3), np.float32).transpose(0, 2, 1)
    W = np.zeros((2, 4, 6), np.float32)
    with pytest.raises(ValueError):
        compiled._dense_forward(x, W, np.zeros((2, 6), np.float32), 0, np.zeros((2, 3, 6), np.float32),
                                np.zeros((2, 3, 6), np.float32))


def test_build_reports_features(compiled):
    assert isinstance(compiled._have_openmp(), bool)
    assert isinstance(compiled._have_avx2(), bool)


def test_compiled_train_step_rejects_inconsistent_buffers(compiled):
    import fastmbrl as fm

    net = fm.nn.EnsembleMLP(3, 4, hidden=(5,), ensemble_size=2, seed=0)
    step = fm.nn.GaussianTrainStep(net)
    x = np.zeros((2, 6, 3), np.float32)
    t = np.zeros((2, 6, 2), np.float32)
    work, chunk = step._workspace(6)

    def call(**over):
        args = dict(x=x, target=t, flat=net.flat, grad_flat=net.grad_flat, layer_dims=net.layer_dims,
                    activation=3, bounds=step._bounds, bounds_grad=step.bounds_grad, m=step.m, v=step.v,
                    bm=step._bm, bv=step._bv, seg_end=step._seg_end, seg_decay=step._seg_decay,
                    lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1, bound_penalty=0.01,
                    update=True, member_loss=step.member_loss, work=work, chunk_rows=chunk,
                    n_threads=1)
        args.update(over)
        return compiled._gaussian_train_step(*args.values())

    assert np.isfinite(call())
    with pytest.raises(ValueError, match="work"):
        call(work=work[:10])
    with pytest.raises(ValueError, match="target"):
        call(target=np.zeros((2, 5, 2), np.float32))
    with pytest.raises(ValueError, match="x"):
        call(x=x.astype(np.float64))
    with pytest.raises(ValueError, match="m"):
        call(m=step.m[:-1])
    with pytest.raises(ValueError, match="layer_dims"):
        call(layer_dims=np.array([3, 5, 5], np.int64))
    with pytest.raises(ValueError, match="member_loss"):
        call(member_loss=np.zeros(3))
    out = np.full((2, 6, 4), np.nan, np.float32)
    assert np.isfinite(call(update=False, out=out)) and np.isfinite(out).all()
    for bad in (out[:, :5], out.astype(np.float64), np.zeros((2, 6, 8), np.float32)[..., :4]):
        with pytest.raises(ValueError, match="out"):
            call(out=bad)
