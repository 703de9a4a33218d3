"""The fused GaussianTrainStep: compiled against the composition of the twins, state, failures."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl._config import ATOL, RTOL
from fastmbrl.nn import _kernels, _reference, train


def _make(dtype, activation="silu", E=3, d_in=4, hidden=(7, 5), D=2, seed=0, **kw):
    net = fm.nn.EnsembleMLP(d_in, 2 * D, hidden=hidden, ensemble_size=E, activation=activation,
                            dtype=dtype, seed=seed)
    kw.setdefault("weight_decay", [1e-3, 0.0, 2e-3, 0.0, 3e-3, 0.0])
    return fm.nn.GaussianTrainStep(net, lr=1e-2, **kw)


def _batch(rng, dtype, E=3, B=11, d_in=4, D=2):
    x = rng.standard_normal((E, B, d_in)).astype(dtype)
    target = (np.sin(x[..., :D]) + 0.1 * rng.standard_normal((E, B, D))).astype(dtype)
    return x, target


@pytest.fixture
def twin_step(monkeypatch):
    """Make GaussianTrainStep run on the NumPy twin composition."""
    _ = _kernels._impl
    monkeypatch.setattr(_kernels, "_gaussian_train_step", _reference._gaussian_train_step)
    monkeypatch.setattr(_kernels, "_train_workspace_size", _reference._train_workspace_size)


def _run_twin(step, x, target, update=True, out=None):
    net = step.net
    t = step.t + 1 if update else max(step.t, 1)
    loss = _reference._gaussian_train_step(
        x, target, net.flat, net.grad_flat, net.layer_dims, net.activation_code, step._bounds,
        step.bounds_grad, step.m, step.v, step._bm, step._bv, step._seg_end, step._seg_decay,
        step.lr, step.beta1, step.beta2, step.eps, t, step.bound_penalty, update, step.member_loss,
        None, 0, 1, out)
    if update:
        step.t = t
    return loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "identity"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("chunk", [None, 4])
def test_compiled_step_matches_twin(rng, monkeypatch, dtype, activation, n_threads, chunk):
    if not _kernels.COMPILED:
        pytest.skip("compiled extension not built or FASTMBRL_PUREPYTHON=1")
    if chunk is not None:
        monkeypatch.setattr(train, "MAX_CHUNK_ROWS", chunk)  # several row chunks per thread
    fast = _make(dtype, activation, n_threads=n_threads)
    slow = _make(dtype, activation)
    x, target = _batch(rng, dtype)
    for _ in range(4):
        loss_fast = fast(x, target)
        loss_slow = _run_twin(slow, x, target)
        assert loss_fast == pytest.approx(loss_slow, rel=RTOL[dtype])
        # gradients are compared at identical weights: copy the twin's weights over after checking
        np.testing.assert_allclose(fast.net.grad_flat, slow.net.grad_flat, rtol=RTOL[dtype],
                                   atol=ATOL[dtype])
        np.testing.assert_allclose(fast.bounds_grad, slow.bounds_grad, rtol=RTOL[dtype],
                                   atol=ATOL[dtype])
        np.testing.assert_allclose(fast.net.flat, slow.net.flat, rtol=RTOL[dtype], atol=ATOL[dtype])
        np.testing.assert_allclose(fast._bounds, slow._bounds, rtol=RTOL[dtype], atol=ATOL[dtype])
        np.testing.assert_allclose(fast.m, slow.m, rtol=RTOL[dtype], atol=ATOL[dtype])
        np.testing.assert_allclose(fast.v, slow.v, rtol=RTOL[dtype], atol=ATOL[dtype] ** 2)
        fast.net.flat[...] = slow.net.flat
        fast._bounds[...] = slow._bounds
    assert fast.t == slow.t == 4
    np.testing.assert_allclose(fast.evaluate(x, target), _eval_twin(slow, x, target),
                               rtol=RTOL[dtype])
    out_fast, out_slow = (np.full(x.shape[:2] + (fast.net.out_dim,), np.nan, dtype) for _ in "ab")
    fast.evaluate(x, target, out=out_fast)
    _run_twin(slow, x, target, update=False, out=out_slow)
    np.testing.assert_allclose(out_fast, out_slow, rtol=RTOL[dtype], atol=ATOL[dtype])


def _eval_twin(step, x, target):
    _run_twin(step, x, target, update=False)
    return step.member_loss.copy()


def test_step_reduces_loss_and_learns_bounds(rng):
    step = _make(np.float32, E=2, hidden=(32, 32))
    x, target = _batch(rng, np.float32, E=2, B=64)
    max0 = step.max_logvar.copy()
    losses = [step(x, target) for _ in range(200)]
    assert losses[-1] < losses[0] - 1.0
    assert not np.array_equal(step.max_logvar, max0)  # the bounds are live, trained arrays
    assert step.max_logvar.base is step._bounds


@pytest.mark.parametrize("E, B", [(3, 64), (5, 1), (1, 9)])
def test_threads_give_identical_results(rng, compiled, E, B):
    # members are shared out whole and reduced in member order: bit-identical for any n_threads,
    # including more threads than members
    x, target = _batch(rng, np.float32, E=E, B=B)
    runs = []
    for nt in (1, 2, 2, 4):
        step = _make(np.float32, E=E, n_threads=nt)
        runs.append(([step(x, target) for _ in range(3)], step.net.flat.copy(),
                     step._bounds.copy(), step.evaluate(x, target)))
    for other in runs[1:]:
        assert other[0] == runs[0][0]
        for a, b in zip(other[1:], runs[0][1:]):
            np.testing.assert_array_equal(a, b)


def test_evaluate_does_not_update(rng):
    step = _make(np.float64)
    x, target = _batch(rng, np.float64, B=700)  # more rows than one chunk
    flat, bounds, m = step.net.flat.copy(), step._bounds.copy(), step.m.copy()
    member = step.evaluate(x, target)
    assert member.shape == (3,)
    np.testing.assert_array_equal(step.net.flat, flat)
    np.testing.assert_array_equal(step._bounds, bounds)
    np.testing.assert_array_equal(step.m, m)
    assert step.t == 0
    # per-member NLL from the public pieces
    out, _ = step.net.forward(x)
    lv, _ = fm.nn.soft_bound_logvar(np.ascontiguousarray(out[..., 2:]), step.max_logvar, step.min_logvar)
    mean = out[..., :2]
    expected = np.mean(np.sum((target - mean) ** 2 * np.exp(-lv) + lv, axis=2), axis=1)
    np.testing.assert_allclose(member, expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_evaluate_out_is_the_network_output(rng, dtype, n_threads):
    # a holdout score takes its predictions from the evaluation's own forward pass
    step = _make(dtype, n_threads=n_threads)
    x, target = _batch(rng, dtype, B=700)  # more rows than one chunk
    flat = step.net.flat.copy()
    out = np.full((3, 700, 4), np.nan, dtype)
    member = step.evaluate(x, target, out=out)
    np.testing.assert_array_equal(member, step.evaluate(x, target))
    np.testing.assert_allclose(out, step.net.forward(x)[0], rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_array_equal(step.net.flat, flat)


@pytest.mark.parametrize("out", [np.empty((3, 10, 4), np.float32), np.empty((3, 11, 4), np.float64),
                                 np.empty((3, 11, 8), np.float32)[..., :4], [0.0]],
                         ids=["rows", "dtype", "strided", "list"])
def test_bad_evaluate_out_is_refused(rng, out):
    step = _make(np.float32)
    x, target = _batch(rng, np.float32)
    with pytest.raises(ValueError, match="out"):
        step.evaluate(x, target, out=out)


def test_state_dict_round_trip(rng):
    x, target = _batch(rng, np.float32)
    a = _make(np.float32)
    for _ in range(3):
        a(x, target)
    state = a.state_dict()
    b = _make(np.float32)
    b.net.flat[...] = a.net.flat
    b.load_state_dict(state)
    assert b.t == 3
    assert a(x, target) == b(x, target)
    np.testing.assert_array_equal(a.net.flat, b.net.flat)
    np.testing.assert_array_equal(a.max_logvar, b.max_logvar)
    with pytest.raises(ValueError, match="state\\['m'\\]"):
        b.load_state_dict({**state, "m": np.zeros(3)})
    with pytest.raises(KeyError, match="bounds_v"):
        b.load_state_dict({k: v for k, v in state.items() if k != "bounds_v"})


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the twin overflows on purpose here
def test_non_finite_loss_leaves_weights(rng):
    step = _make(np.float32)
    x, target = _batch(rng, np.float32)
    step(x, target)
    flat, bounds, t = step.net.flat.copy(), step._bounds.copy(), step.t
    huge = np.full_like(x, 3e38)  # finite input whose forward pass overflows
    with pytest.raises(FloatingPointError, match="loss"):
        step(huge, target)
    np.testing.assert_array_equal(step.net.flat, flat)
    np.testing.assert_array_equal(step._bounds, bounds)
    assert step.t == t
    step(x, target)  # and it keeps working


@pytest.mark.parametrize("what, match, exc", [
    ("x_dtype", "x: expected a float32 array", TypeError),
    ("x_shape", r"x: expected shape \(3, B, 4\)", ValueError),
    ("members", r"target: expected shape \(3, B, 2\)", ValueError),
    ("rows", "target: expected 11 rows", ValueError),
    ("nan", "target: contains non-finite", ValueError),
    ("list", "x: expected a float32 array, got list", TypeError),
])
def test_bad_batch_is_refused(rng, what, match, exc):
    step = _make(np.float32)
    x, target = _batch(rng, np.float32)
    if what == "x_dtype":
        x = x.astype(np.float64)
    elif what == "x_shape":
        x = x[..., :3]
    elif what == "members":
        target = target[:2]
    elif what == "rows":
        target = target[:, :5]
    elif what == "nan":
        target[0, 0, 0] = np.nan
    elif what == "list":
        x = x.tolist()
    with pytest.raises(exc, match=match):
        step(x, target)
    assert step.t == 0


def test_bad_construction_is_refused():
    net = fm.nn.EnsembleMLP(3, 5, hidden=(4,), ensemble_size=2)
    with pytest.raises(ValueError, match="net: expected out_dim = 2 D"):
        fm.nn.GaussianTrainStep(net)
    with pytest.raises(TypeError, match="net"):
        fm.nn.GaussianTrainStep("net")
    net = fm.nn.EnsembleMLP(3, 4, hidden=(4,), ensemble_size=2)
    with pytest.raises(ValueError, match=r"max_logvar: expected shape \(2,\)"):
        fm.nn.GaussianTrainStep(net, max_logvar=np.zeros(3))
    with pytest.raises(ValueError, match="min_logvar: expected values below"):
        fm.nn.GaussianTrainStep(net, max_logvar=[0.0, 0.0], min_logvar=[-1.0, 1.0])
    with pytest.raises(ValueError, match="weight_decay: expected a float or 4 values"):
        fm.nn.GaussianTrainStep(net, weight_decay=[0.1, 0.2])
    with pytest.raises(ValueError, match="n_threads"):
        fm.nn.GaussianTrainStep(net, n_threads=0)
    with pytest.raises(ValueError, match="lr"):
        fm.nn.GaussianTrainStep(net, lr=-1.0)


def test_twin_composition_runs_through_the_public_class(rng, twin_step):
    step = _make(np.float64)
    x, target = _batch(rng, np.float64)
    loss = step(x, target)
    assert np.isfinite(loss) and step.t == 1


def test_pure_python_switch():
    code = ("import numpy as np, fastmbrl as fm\n"
            "from fastmbrl.nn import _kernels\n"
            "net = fm.nn.EnsembleMLP(2, 2, hidden=(3,), ensemble_size=2)\n"
            "step = fm.nn.GaussianTrainStep(net)\n"
            "x = np.ones((2, 4, 2), np.float32); t = np.zeros((2, 4, 1), np.float32)\n"
            "step(x, t)\n"
            "import sys\n"
            "print(_kernels.COMPILED, _kernels._impl.__name__, 'fastmbrl._ext._nn' in sys.modules)\n")
    env = dict(os.environ, FASTMBRL_PUREPYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.split() == ["False", "fastmbrl.nn._reference", "False"]


@pytest.mark.parametrize("layout", ["F", "strided", "readonly"])
def test_step_accepts_any_layout(rng, layout):
    x, target = _batch(rng, np.float32)
    a, b = _make(np.float32), _make(np.float32)
    if layout == "F":
        xs, ts = np.asfortranarray(x), np.asfortranarray(target)
    elif layout == "strided":
        xs, ts = np.repeat(x, 2, axis=1)[:, ::2], np.repeat(target, 2, axis=1)[:, ::2]
    else:
        xs, ts = x.copy(), target.copy()
        xs.flags.writeable = False
        ts.flags.writeable = False
    assert a(x, target) == b(xs, ts)
    np.testing.assert_array_equal(a.net.flat, b.net.flat)
    np.testing.assert_array_equal(a.evaluate(x, target), b.evaluate(xs, ts))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_portable_variant_step_matches_twin(rng, compiled, dtype):
    # the non-AVX2 build of every kernel, as it runs on CPUs without AVX2/FMA
    fast, slow = _make(dtype), _make(dtype)
    x, target = _batch(rng, dtype)
    compiled._force_portable(True)
    try:
        for _ in range(2):
            assert fast(x, target) == pytest.approx(_run_twin(slow, x, target), rel=RTOL[dtype])
    finally:
        compiled._force_portable(False)
    np.testing.assert_allclose(fast.net.flat, slow.net.flat, rtol=RTOL[dtype], atol=ATOL[dtype])


def test_blas_threads_are_restored(rng, compiled, monkeypatch):
    # the step holds scipy's BLAS to one thread while it runs, through the C hooks or, where those
    # are missing, threadpoolctl; either way the caller's setting is back afterwards
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    x, target = _batch(rng, np.float32)
    for hooks in (True, False):
        monkeypatch.setattr(train, "_BLAS_HOOKS", hooks)
        with threadpool_limits(limits=2, user_api="blas"):
            before = blas_threads()
            step = _make(np.float32)
            assert np.isfinite(step(x, target))
            assert step.t == 1
            assert blas_threads() == before
