"""DHMBPO layer kernels (pytest-benchmark): layer normalization and dropout (``fastmbrl.nn._layers_kernels``)
against their NumPy twins and PyTorch (CPU, 1 thread), plus one critic-ensemble loss step.

    python -m pytest benchmarks/bench_layers.py -q -s --benchmark-columns=median,ops

Cases (float32):
  layernorm   forward + backward at (256, 256), eps 1e-5, with a learnable gain/bias (torch's
              default) and without (DHMBPO's critic and model). PyTorch twice: through autograd
              (``F.layer_norm`` + ``backward``) and its two ATen kernels called directly
              (``native_layer_norm`` / ``native_layer_norm_backward``).
  dropout     forward + backward at (256, 256), p = 1e-3 (the mask draw dominates).
  critic      ``_ensemble_mse_loss_grad`` of a DHMBPO critic ensemble (K = 5, 23 -> 256 x 3 -> 1,
              LayerNorm on the inputs of layers 1-3, dropout 1e-3 after layers 0-2, SiLU, batch
              256) against the same forward/backward in PyTorch (bmm, autograd, 1 thread).
BLAS and Numba run on one thread. The module ends by printing (stderr, so run with -s) the medians
and same-run ratios; the machine is shared, so only same-run ratios mean anything. The critic cases
count their FLOPs (forward, every weight gradient, the input gradients above the first layer; the
session's FLOP table sets them against the sgemm rate); layer normalization and dropout are
element-wise ("n/a" there).
"""
import os
import sys

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastmbrl.nn import _layers_kernels as K
from fastmbrl.nn import _layers_reference as R
from fastmbrl.nn._flat import param_offsets

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

B, D = 256, 256
EPS = 1e-5
P = 1e-3
KEY, CTR = np.uint64(7), np.uint64(0)
CRITIC_DIMS = np.array([23, 256, 256, 256, 1], np.int64)
CRITIC_K = 5
CRITIC_LN = np.array([0.0, 1e-5, 1e-5, 1e-5])
CRITIC_P = np.array([P, P, P, 0.0])
MEDIANS = {}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import scipy.linalg.cython_blas  # noqa: F401  Numba's np.dot calls it: load before limiting

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    numba.set_num_threads(before)
    lines = ["", "DHMBPO layer kernels: medians of this run (float32, 1 thread)"]
    for (case, impl), sec in sorted(MEDIANS.items()):
        ref = {k: MEDIANS.get((case, k)) for k in ("numpy", "torch-autograd", "torch")}
        ratios = "  ".join(f"{ref[k] / sec:5.2f}x {k}" for k in ref if ref[k] and k != impl)
        lines.append(f"  {case:<20} {impl:>15}: {sec * 1e6:9.1f} us   {ratios}")
    sys.stderr.write("\n".join(lines) + "\n")


def _run(benchmark, case, impl, fn, rounds=200, flops=None):
    """Time ``fn``; ``flops`` per call (None: element-wise work, not counted)."""
    benchmark.group = case
    out = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=5)
    if flops is None:
        _floor.not_counted(benchmark, "element-wise work")
    else:
        _floor.record(benchmark, flops, 1)
    if not benchmark.disabled:
        MEDIANS[(case, impl)] = benchmark.stats.stats.median
    return out


def _ln_data(affine):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((B, D)) + 0.5).astype(np.float32)
    dy = rng.standard_normal((B, D)).astype(np.float32)
    g = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32) if affine else np.zeros(0, np.float32)
    b = (0.1 * rng.standard_normal(D)).astype(np.float32) if affine else np.zeros(0, np.float32)
    return x, dy, g, b


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_layernorm(benchmark, impl, affine):
    mod = K if impl == "numba" else R
    x, dy, g, b = _ln_data(affine)
    y, mu, rs = np.empty_like(x), np.empty(B, np.float32), np.empty(B, np.float32)
    dx, dg, db = np.empty_like(x), np.empty_like(g), np.empty_like(b)

    def step():
        mod._layernorm_forward(x, g, b, EPS, y, mu, rs)
        mod._layernorm_backward(dy, x, g, mu, rs, dx, dg, db)

    _run(benchmark, f"layernorm-{'affine' if affine else 'plain'}", impl, step)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("impl", ["torch-autograd", "torch"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_layernorm_torch(benchmark, impl, affine):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    x_np, dy_np, g_np, b_np = _ln_data(affine)
    x, dy = torch.from_numpy(x_np), torch.from_numpy(dy_np)
    g = torch.from_numpy(g_np).requires_grad_() if affine else None
    b = torch.from_numpy(b_np).requires_grad_() if affine else None
    mask = [True, affine, affine]

    if impl == "torch-autograd":
        xg = x.clone().requires_grad_()

        def step():
            y = torch.nn.functional.layer_norm(xg, [D], g, b, EPS)
            y.backward(dy)
    else:
        def step():
            y, mu, rs = torch.ops.aten.native_layer_norm(x, [D], g, b, EPS)
            torch.ops.aten.native_layer_norm_backward(dy, x, [D], mu, rs, g, b, mask)

    _run(benchmark, f"layernorm-{'affine' if affine else 'plain'}", impl, step)


@pytest.mark.parametrize("impl", ["numba", "numpy", "torch"])
def test_dropout(benchmark, impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, D)).astype(np.float32)
    dy = rng.standard_normal((B, D)).astype(np.float32)
    y, dx, m = np.empty_like(x), np.empty_like(x), np.empty((B, D), np.uint8)
    if impl == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(1)
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)

        def step():
            y, mask = torch.ops.aten.native_dropout(tx, P, True)
            torch.ops.aten.native_dropout_backward(tdy, mask, 1.0 / (1.0 - P))
    else:
        mod = K if impl == "numba" else R

        def step():
            mod._dropout_forward(x, P, KEY, CTR, y, m)
            mod._dropout_backward(dy, m, P, dx)

    _run(benchmark, "dropout", impl, step)


def _critic_data():
    rng = np.random.default_rng(0)
    dims = CRITIC_DIMS
    flat = np.empty(param_offsets(dims, CRITIC_K)[-1], np.float32)
    offs = param_offsets(dims, CRITIC_K)
    for l in range(len(dims) - 1):
        fan_in = int(dims[l])
        flat[offs[2 * l]:offs[2 * l + 1]] = rng.standard_normal(offs[2 * l + 1] - offs[2 * l]) / np.sqrt(fan_in)
        flat[offs[2 * l + 1]:offs[2 * l + 2]] = 0.0
    x = rng.standard_normal((B, int(dims[0]))).astype(np.float32)
    y = rng.standard_normal(B).astype(np.float32)
    return flat, x, y


@pytest.mark.parametrize("impl", ["numba", "torch-autograd"])
def test_critic_ensemble_loss_grad(benchmark, impl):
    flat, x, y = _critic_data()
    dims, Kc = CRITIC_DIMS, CRITIC_K
    if impl == "numba":
        nf, nm = K._cache_sizes(dims, B)
        cbuf = np.empty((Kc, nf), np.float32)
        mbuf = np.empty((Kc, nm), np.uint8)
        dbuf = np.empty((Kc, 2 * B * int(max(dims[1:]))), np.float32)
        q, dq, grad = (np.empty((Kc, B), np.float32), np.empty((Kc, B), np.float32),
                       np.empty_like(flat))

        def step():
            return K._ensemble_mse_loss_grad(flat, dims, Kc, 3, CRITIC_LN, CRITIC_P, KEY, CTR, x,
                                             y, 1.0, cbuf, mbuf, dbuf, q, dq, grad)
    else:
        torch = pytest.importorskip("torch")
        torch.set_num_threads(1)
        F = torch.nn.functional
        offs = param_offsets(dims, Kc)
        Ws, bs = [], []
        for l in range(len(dims) - 1):
            a, b = int(dims[l]), int(dims[l + 1])
            Ws.append(torch.from_numpy(flat[offs[2 * l]:offs[2 * l + 1]].reshape(Kc, a, b).copy())
                      .requires_grad_())
            bs.append(torch.from_numpy(flat[offs[2 * l + 1]:offs[2 * l + 2]].reshape(Kc, 1, b)
                                       .copy()).requires_grad_())
        tx = torch.from_numpy(x).expand(Kc, B, int(dims[0]))
        ty = torch.from_numpy(y)[None, :, None]

        def step():
            h = tx
            for l, (W, b) in enumerate(zip(Ws, bs)):
                if CRITIC_LN[l] > 0:
                    h = F.layer_norm(h, [h.shape[-1]], eps=float(CRITIC_LN[l]))
                h = torch.baddbmm(b, h, W)
                if CRITIC_P[l] > 0:
                    h = F.dropout(h, float(CRITIC_P[l]), training=True)
                if l < len(Ws) - 1:
                    h = F.silu(h)
            loss = F.mse_loss(h, ty.expand_as(h), reduction="none").sum(0).mean()
            for t in Ws + bs:
                t.grad = None
            loss.backward()
            return loss.item()

    loss = _run(benchmark, "critic-K5-256x3-B256", impl, step, rounds=30,
                flops=_floor.train_step_flops(dims, B, Kc))
    assert np.isfinite(loss)
