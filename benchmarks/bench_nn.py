"""One Gaussian-ensemble training step (forward, NLL with soft log-variance bounds, backward, Adam).

Cases (float32, batch 256 rows per member):
  (a) E=5, 4 -> 64 -> 64 -> 2x3, SiLU     per-call overhead dominates
  (b) E=7, 5 -> 200 x 4 -> 2x4, SiLU      matrix products dominate
  (c) E=8, 14 -> 256 x 3 -> 2x11, SiLU    DHMBPO's Hopper-v5 model (11 + 3 inputs, 11 targets)

Each case runs the compiled fused step (``fastmbrl.nn.GaussianTrainStep``), the composition of the
NumPy twins, and, when PyTorch is importable, the same step in PyTorch (baddbmm + SiLU, autograd,
``torch.optim.Adam(fused=True)``), each on 1 and 2 threads, in one run. ``extra_info`` holds
steps/s, GFLOP/s (multiply-adds of forward, weight gradients and input gradients of every layer
but the first, counted as 2 flops), the fraction of the sgemm rate of the same session
(``_floor.py``) and the final loss; the compiled tests also hold the ratios to the NumPy and
PyTorch medians measured earlier in the same run (tests run in file order). The import-time test
is not matrix products ("n/a" in the session's FLOP table).

Run:  python -m pytest benchmarks/bench_nn.py --benchmark-columns=median,ops -q
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastmbrl as fm
from fastmbrl.nn import _reference

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

CASES = {
    "a": dict(E=5, d_in=4, hidden=(64, 64), d_out=3),
    "b": dict(E=7, d_in=5, hidden=(200, 200, 200, 200), d_out=4),
    "c": dict(E=8, d_in=14, hidden=(256, 256, 256), d_out=11),
}
BATCH = 256
LR = 1e-4
MEDIANS = {}  # (case, impl, n_threads) -> median seconds, shared by the tests of one run


def step_flops(case):
    """FLOPs of one training step: forward, dW for every layer, dx for every layer but the
    first, on BATCH rows of each of the E members."""
    c = CASES[case]
    dims = (c["d_in"],) + c["hidden"] + (2 * c["d_out"],)
    return _floor.train_step_flops(dims, BATCH, c["E"])


def make_data(case, seed=0):
    c = CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c["E"], BATCH, c["d_in"])).astype(np.float32)
    w = rng.standard_normal((c["d_in"], c["d_out"])).astype(np.float32) / np.sqrt(c["d_in"])
    target = (np.tanh(x @ w) + 0.1 * rng.standard_normal((c["E"], BATCH, c["d_out"]))).astype(np.float32)
    return x, target


def make_step(case, n_threads):
    c = CASES[case]
    net = fm.nn.EnsembleMLP(c["d_in"], 2 * c["d_out"], hidden=c["hidden"], ensemble_size=c["E"],
                            activation="silu", dtype=np.float32, seed=0)
    return fm.nn.GaussianTrainStep(net, lr=LR, weight_decay=5e-5, n_threads=n_threads)


def record(benchmark, case, impl, n_threads, loss):
    _floor.record(benchmark, step_flops(case), n_threads)
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    MEDIANS[(case, impl, n_threads)] = median
    benchmark.extra_info.update({
        "case": case, "impl": impl, "n_threads": n_threads, "steps_per_s": 1.0 / median,
        "gflops": step_flops(case) / median / 1e9, "final_loss": float(loss)})
    for other in ("numpy", "torch"):
        ref = MEDIANS.get((case, other, n_threads))
        if impl == "compiled" and ref is not None:
            benchmark.extra_info[f"speedup_vs_{other}"] = ref / median


def run(benchmark, fn, case):
    rounds = 200 if case == "a" else 30
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_step_torch(benchmark, case, n_threads):
    torch = pytest.importorskip("torch")
    benchmark.group = f"train-step-{case}"
    c = CASES[case]
    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    dims = (c["d_in"],) + c["hidden"] + (2 * c["d_out"],)
    Ws, bs = [], []
    for a, b in zip(dims[:-1], dims[1:]):
        W = torch.randn(c["E"], a, b) / (2 * a ** 0.5)
        Ws.append(W.requires_grad_())
        bs.append(torch.zeros(c["E"], 1, b, requires_grad=True))
    D = c["d_out"]
    max_lv = torch.full((D,), 0.5, requires_grad=True)
    min_lv = torch.full((D,), -10.0, requires_grad=True)
    opt = torch.optim.Adam(Ws + bs + [max_lv, min_lv], lr=LR, fused=True)
    x_np, t_np = make_data(case)
    x, target = torch.from_numpy(x_np), torch.from_numpy(t_np)
    F = torch.nn.functional

    def step():
        h = x
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, W)
            if i < len(Ws) - 1:
                h = F.silu(h)
        mean, raw = h[..., :D], h[..., D:]
        lv = max_lv - F.softplus(max_lv - raw)
        lv = min_lv + F.softplus(lv - min_lv)
        nll = (((target - mean) ** 2) * torch.exp(-lv) + lv).sum(-1).mean()
        loss = nll + 0.01 * (max_lv.sum() - min_lv.sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return nll.item()

    loss = run(benchmark, step, case)
    assert np.isfinite(loss)
    record(benchmark, case, "torch", n_threads, loss)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_step_numpy(benchmark, case, n_threads):
    benchmark.group = f"train-step-{case}"
    st = make_step(case, 1)
    net = st.net
    x, target = make_data(case)

    def step():
        st.t += 1
        return _reference._gaussian_train_step(
            x, target, net.flat, net.grad_flat, net.layer_dims, net.activation_code, st._bounds,
            st.bounds_grad, st.m, st.v, st._bm, st._bv, st._seg_end, st._seg_decay, st.lr,
            st.beta1, st.beta2, st.eps, st.t, st.bound_penalty, True, st.member_loss, None, 0, 1)

    with threadpool_limits(limits=n_threads, user_api="blas"):
        loss = run(benchmark, step, case)
    assert np.isfinite(loss)
    record(benchmark, case, "numpy", n_threads, loss)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_step_compiled(benchmark, case, n_threads):
    from fastmbrl.nn import _kernels

    if not _kernels.COMPILED:
        pytest.skip("compiled extension not built (or FASTMBRL_PUREPYTHON=1)")
    benchmark.group = f"train-step-{case}"
    st = make_step(case, n_threads)
    x, target = make_data(case)
    loss = run(benchmark, lambda: st(x, target), case)
    assert np.isfinite(loss)
    record(benchmark, case, "compiled", n_threads, loss)


def test_import_time(benchmark):
    """Wall time of ``import fastmbrl; import fastmbrl.nn`` in a fresh interpreter."""
    benchmark.group = "import"
    code = ("import time; t = time.perf_counter(); import fastmbrl, fastmbrl.nn; "
            "print(time.perf_counter() - t)")

    def once():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        return float(out.stdout.strip())

    times = []
    benchmark.pedantic(lambda: times.append(once()), rounds=5, iterations=1, warmup_rounds=1)
    if times:
        benchmark.extra_info["import_seconds_median"] = float(np.median(times))
        benchmark.extra_info["import_seconds_min"] = float(np.min(times))
    _floor.not_counted(benchmark, "starting an interpreter and importing modules")
    assert all(t > 0 for t in times)
