"""ModelEnv.step and ModelEnv.step_vjp: the compiled model step and its VJP against the NumPy twins.

Case: E=7, 4 x 200 SiLU, half-cheetah size (obs 18, act 6, the HalfCheetah reward and
its exact gradient), float32, random weights, B = 256 and 4096 rows, a random member per row,
random noise and cotangents, one BLAS thread. ``step_vjp`` is the taped forward pass plus the backward pass (two
compiled calls and the reward gradient between them), so it does about twice the step's
multiply-adds. The twins run through the same ``ModelEnv`` calls with
``fastmbrl.backend.PURE_PYTHON`` switched on, in the same run; the table printed at the end holds
the medians, the ratio twin / compiled and GFLOP/s (network multiply-adds only, 2 flops each; the
VJP: the forward pass and every layer's input gradient, no weight gradient). The session's FLOP
table sets both against the sgemm rate on one thread (``_floor.py``).

Run (BLAS variables unset for this command only, see docs/performance.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_model_env.py \
        --benchmark-only --benchmark-columns=median,ops -q
"""
import os
import sys

import numpy as np
import pytest

from fastmbrl import backend
from fastmbrl.envs import reward_fns
from fastmbrl.models import ModelArrays, ModelEnv
from fastmbrl.nn._flat import param_offsets

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

E, HIDDEN, D_OBS, D_ACT = 7, (200,) * 4, 18, 6
ROWS = (256, 4096)
MEDIANS = {}        # (call, impl, rows) -> median seconds


def make_arrays(seed=0):
    """Random-weight ModelArrays (fan-in scaled, so activations stay O(1) through the depth)."""
    rng = np.random.default_rng(seed)
    d_in = D_OBS + D_ACT
    dims = np.array([d_in, *HIDDEN, 2 * D_OBS], np.int64)
    flat = np.empty(param_offsets(dims, E)[-1], np.float32)
    offset = 0
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        w = rng.standard_normal(E * fan_in * fan_out) / np.sqrt(fan_in)
        flat[offset:offset + w.size] = w
        offset += w.size
        flat[offset:offset + E * fan_out] = 0.01 * rng.standard_normal(E * fan_out)
        offset += E * fan_out
    f32 = np.float32
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=E, activation=3, members=np.arange(5),
        angle_mask=np.zeros(D_OBS, bool), delta_mask=np.ones(D_OBS, bool),
        in_mean=np.zeros(d_in, f32), in_std=np.ones(d_in, f32), out_mean=np.zeros(D_OBS, f32),
        out_std=np.full(D_OBS, 0.1, f32), max_logvar=np.full(D_OBS, 0.5, f32),
        min_logvar=np.full(D_OBS, -10.0, f32), has_reward=False)


DIMS = (D_OBS + D_ACT,) + HIDDEN + (2 * D_OBS,)


def step_flops(rows):
    """FLOPs of one model step: a forward pass of one member per row."""
    return _floor.forward_flops(DIMS, rows)


def call_flops(call, rows):
    """FLOPs of one ``call``: the step, or the step and its input gradients (the VJP)."""
    return step_flops(rows) if call == "step" else _floor.vjp_flops(DIMS, rows)


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    """One BLAS thread (docs/performance.md: one thread per kernel), and the table of medians at the end."""
    import scipy.linalg  # noqa: F401  (load scipy's OpenBLAS, the one Numba's np.dot calls)
    from threadpoolctl import threadpool_info, threadpool_limits

    limits = threadpool_limits(1)
    blas = [(p.get("internal_api"), p.get("architecture"), p.get("num_threads"),
             p.get("filepath", "").split("/")[-1]) for p in threadpool_info()]
    yield
    limits.restore_original_limits()
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capture is None or not MEDIANS:
        return
    with capture.global_and_fixture_disabled():
        _write_table(tr, blas)


def _write_table(tr, blas):
    tr.section("ModelEnv.step / step_vjp: medians of this run (float32, E=7, 4x200, obs 18)")
    tr.write_line(f"BLAS: {blas}")
    tr.write_line(f"{'call':<10}{'rows':>6}{'compiled ms':>13}{'twin ms':>10}{'twin/comp':>11}"
                  f"{'GFLOP/s':>9}{'vs step':>9}")
    for call in ("step", "step_vjp"):
        for rows in ROWS:
            comp = MEDIANS.get((call, "compiled", rows))
            twin = MEDIANS.get((call, "twin", rows))
            if comp is None:
                continue
            flops = call_flops(call, rows)
            ratio = f"{twin / comp:11.2f}" if twin is not None else f"{'-':>11}"
            twin_ms = f"{twin * 1e3:10.3f}" if twin is not None else f"{'-':>10}"
            step = MEDIANS.get(("step", "compiled", rows))
            tr.write_line(f"{call:<10}{rows:>6}{comp * 1e3:13.3f}{twin_ms}{ratio}"
                          f"{flops / comp / 1e9:9.1f}{comp / step:9.2f}")


@pytest.mark.benchmark(group="model_env")
@pytest.mark.parametrize("impl", ["twin", "compiled"])
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("call", ["step", "step_vjp"])
def test_model_env(benchmark, monkeypatch, call, rows, impl):
    monkeypatch.setattr(backend, "PURE_PYTHON", impl == "twin")
    arrays = make_arrays()
    menv = ModelEnv(arrays, reward_fn=reward_fns.half_cheetah)
    assert menv.reward_grad_fn is reward_fns.half_cheetah_grad
    rng = np.random.default_rng(1)
    obs = rng.standard_normal((rows, D_OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, (rows, D_ACT)).astype(np.float32)
    members = rng.integers(0, 5, rows)
    noise = rng.standard_normal((rows, D_OBS)).astype(np.float32)
    d_next = rng.standard_normal((rows, D_OBS)).astype(np.float32)
    d_rew = rng.standard_normal(rows).astype(np.float32)
    if call == "step":
        def run():
            return menv.step(obs, act, noise=noise, members=members)
    else:
        def run():
            return menv.step_vjp(obs, act, noise, members, d_next, d_rew)
    n_rounds = {256: 40, 4096: 8}[rows] if impl == "compiled" else {256: 10, 4096: 3}[rows]
    out = benchmark.pedantic(run, rounds=n_rounds, iterations=1, warmup_rounds=2)
    assert all(np.all(np.isfinite(a)) for a in out[:2])
    assert out[0].shape == ((rows, D_OBS))
    _floor.record(benchmark, call_flops(call, rows), 1)
    if benchmark.disabled:
        return
    med = benchmark.stats.stats.median
    MEDIANS[(call, impl, rows)] = med
    benchmark.extra_info["gflops"] = call_flops(call, rows) / med / 1e9
    twin = MEDIANS.get((call, "twin", rows))
    if impl == "compiled" and twin is not None:
        benchmark.extra_info["twin_over_compiled"] = twin / med
