"""SAC update speed (pytest-benchmark): fastmbrl vs Stable-Baselines3 ``SAC.train()`` vs plain PyTorch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_sac.py -s

Each benchmark round runs CHUNK updates (sampling included) of one implementation; the
implementations and cases are those of ``run_sac_table.py`` (a: obs 3, act 1, 256 x 256; b: obs 17,
act 6, 256 x 256; c: obs 3, act 1, 64 x 64; batch 256), on 1 and 2 threads. ``extra_info`` holds
updates/s and GFLOP/s (``run_sac_table.update_flops``, the same count for every implementation)
and the fraction of the sgemm rate of the same session (``_floor.py``); the module ends by
printing (to stderr, so run with -s) the medians and same-run ratios.
"""
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import _floor
from run_sac_table import CASES, MAKERS, blas_info, update_flops

CHUNK = {"a": 10, "b": 10, "c": 40}
MEDIANS = {}


@pytest.fixture(scope="module", autouse=True)
def _print_blas():
    sys.stderr.write(f"\nBLAS kernels: {blas_info()}\n")
    yield
    lines = ["", "SAC updates/s (medians of this run)"]
    for (case, impl, nt), sec in sorted(MEDIANS.items()):
        ref = MEDIANS.get((case, "sb3", nt))
        ratio = f"{ref / sec:.2f}x SB3" if ref else ""
        lines.append(f"  {case} {impl:>8} {nt} thread(s): {1 / sec:7.0f} updates/s "
                     f"{update_flops(*CASES[case]) / sec / 1e9:6.0f} GFLOP/s {ratio}")
    sys.stderr.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("impl", ["fastmbrl", "sb3", "torch"])
@pytest.mark.parametrize("case", list(CASES))
def test_sac_update(benchmark, case, impl, n_threads):
    if impl != "fastmbrl":
        pytest.importorskip("torch")
        if impl == "sb3":
            pytest.importorskip("stable_baselines3")
    run = MAKERS[impl](*CASES[case], n_threads)
    n = CHUNK[case]
    benchmark.group = f"sac-{case}-{n_threads}thr"
    result = benchmark.pedantic(run, args=(n,), rounds=5, iterations=1, warmup_rounds=1)
    if impl == "fastmbrl":
        assert all(math.isfinite(v) for v in result.values())   # finite metrics came back
    _floor.record(benchmark, n * update_flops(*CASES[case]), n_threads)
    if benchmark.disabled:
        return
    sec = benchmark.stats.stats.median / n
    MEDIANS[(case, impl, n_threads)] = sec
    benchmark.extra_info.update(updates_per_s=1 / sec,
                                gflops=update_flops(*CASES[case]) / sec / 1e9)
