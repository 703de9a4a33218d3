"""Cost of one action of an exported policy (pytest-benchmark): the C export, the NumPy export and
onnxruntime on the ONNX export, against ``SAC.act(obs, deterministic=True)`` in Python.

    python -m pytest benchmarks/bench_deploy.py -s

One observation per call, float32, the SAC actor of each case (a: obs 3, act 1, 64 x 64, MBPO's
Pendulum-v1 actor; b: obs 3, act 1, 256 x 256, SAC's default; c: obs 17, act 6, 256 x 256,
HalfCheetah's). The C policy is compiled with ``cc -O2`` (and, as ``c-O3native``, with
``-O3 -march=native``) into a driver that calls ``fastmbrl_policy_act`` in batches of 10 for about
0.3 s and reports the median batch's microseconds per call itself (its benchmark rounds time the
whole driver, start-up included: read the figure the module prints, or
``extra_info["us_per_call"]``). The other implementations are timed per call by pytest-benchmark
(medians too). The module ends by printing (to stderr, so run with -s) microseconds per call and
the ratios to Python. The session's FLOP table (``_floor.py``) sets each against the one-thread
sgemm rate: the products of one row through the actor's mean head (the log-std half of the last
layer is not needed for the action), matrix-vector products bound by their call overheads, so
the fractions are small by nature.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastmbrl.agents import SAC
from fastmbrl.deploy import _params, export_c, numpy_policy

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

CASES = {"a": (3, 1, (64, 64)), "b": (3, 1, (256, 256)), "c": (17, 6, (256, 256))}
MEDIANS = {}            # (case, impl) -> microseconds per call

BENCH_DRIVER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "fastmbrl_policy.h"

#define BATCH 10            /* calls per timed batch */
#define MAX_BATCHES 20000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times batches of BATCH calls of fastmbrl_policy_act for about 0.3 s and prints the median
   batch's microseconds per call (a median, as pytest-benchmark reports for the Python side, so
   that time-slicing on a shared machine counts as little on both sides). */
int main(void)
{
    static double per_call[MAX_BATCHES];
    float obs[FASTMBRL_POLICY_OBS_DIM], act[FASTMBRL_POLICY_ACT_DIM];
    volatile float sink = 0.0f;
    double start = now(), t0;
    int n = 0, k, i;
    for (i = 0; i < FASTMBRL_POLICY_OBS_DIM; ++i) {
        obs[i] = 0.1f * (float)(i + 1);
    }
    while (n < MAX_BATCHES && (n < 100 || now() - start < 0.3)) {
        t0 = now();
        for (k = 0; k < BATCH; ++k) {
            obs[0] = 0.001f * (float)((n * BATCH + k) % 100);    /* a new observation each call */
            if (fastmbrl_policy_act(obs, act) != 0) {
                return 1;
            }
            sink += act[0];
        }
        per_call[n++] = 1e6 * (now() - t0) / BATCH;
    }
    qsort(per_call, (size_t)n, sizeof(double), by_value);
    printf("%.4f\n", per_call[n / 2]);
    return sink == 12345.0f;
}
"""


def _agent(case):
    obs_dim, act_dim, hidden = CASES[case]
    low = -np.linspace(1.0, 2.0, act_dim)
    return SAC(obs_dim, act_dim, (low, -low), hidden=hidden, seed=0)


def act_flops(case):
    """FLOPs of one deterministic action: one row through the actor, its mean head only."""
    obs_dim, act_dim, hidden = CASES[case]
    return _floor.forward_flops((obs_dim,) + hidden + (act_dim,), 1)


def _record(benchmark, case, impl, us):
    """Keep ``us`` (microseconds per call) for the module's summary and the FLOP table."""
    MEDIANS[(case, impl)] = us
    benchmark.extra_info["us_per_call"] = us
    _floor.record(benchmark, act_flops(case), 1, seconds=us * 1e-6)


def _obs(case):
    return np.random.default_rng(0).uniform(-1, 1, CASES[case][0]).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    lines = ["", "one action, microseconds per call (medians of this run; indicative on a shared "
             "machine)"]
    for case in CASES:
        py = MEDIANS.get((case, "python"))
        obs_dim, act_dim, hidden = CASES[case]
        for impl in ("c", "c-O3native", "numpy", "onnxruntime", "python"):
            us = MEDIANS.get((case, impl))
            if us is None:
                continue
            ratio = f"  {py / us:6.1f}x faster than python" if py and impl != "python" else ""
            lines.append(f"  {case} ({obs_dim}->{'x'.join(map(str, hidden))}->{act_dim}) "
                         f"{impl:>12}: {us:9.2f} us{ratio}")
    sys.stderr.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("flags", [("-O2",), ("-O3", "-march=native")], ids=["O2", "O3native"])
@pytest.mark.parametrize("case", list(CASES))
def test_c_policy(benchmark, case, flags, tmp_path):
    cc = next((shutil.which(c) for c in (os.environ.get("CC"), "cc", "gcc", "clang")
               if c and shutil.which(c)), None)
    if cc is None:
        pytest.skip("no C compiler found")
    source, header = export_c.policy_sources(_params.policy_params(_agent(case)))
    (tmp_path / "fastmbrl_policy.c").write_text(source)
    (tmp_path / "fastmbrl_policy.h").write_text(header)
    (tmp_path / "bench.c").write_text(BENCH_DRIVER)
    exe = tmp_path / "bench"
    subprocess.run([cc, "-std=c99", *flags, "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}",
                    str(tmp_path / "bench.c"), str(tmp_path / "fastmbrl_policy.c"), "-o", str(exe),
                    "-lm"], check=True)
    reported = []

    def run():
        out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
        reported.append(float(out))

    benchmark.group = f"deploy-{case}"
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    us = float(np.median(reported))
    impl = "c" if flags == ("-O2",) else "c-O3native"
    benchmark.extra_info["what"] = "driver-reported median per call"
    _record(benchmark, case, impl, us)


@pytest.mark.parametrize("case", list(CASES))
def test_python_act(benchmark, case):
    agent, obs = _agent(case), _obs(case)
    agent.act(obs, deterministic=True)                 # compiled kernels loaded
    benchmark.group = f"deploy-{case}"
    benchmark(agent.act, obs, deterministic=True)
    if not benchmark.disabled:
        _record(benchmark, case, "python", benchmark.stats.stats.median * 1e6)


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_runtime(benchmark, case, tmp_path):
    path = tmp_path / "policy.npz"
    np.savez(path, **_params.policy_arrays(_params.policy_params(_agent(case))))
    policy, obs = numpy_policy.load(path), _obs(case)
    benchmark.group = f"deploy-{case}"
    benchmark(policy.act, obs)
    if not benchmark.disabled:
        _record(benchmark, case, "numpy", benchmark.stats.stats.median * 1e6)


@pytest.mark.parametrize("case", list(CASES))
def test_onnxruntime(benchmark, case):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from fastmbrl.deploy import export_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(export_onnx.policy_onnx(_params.policy_params(_agent(case))),
                                options, providers=["CPUExecutionProvider"])
    feed = {"obs": _obs(case)[None, :]}
    benchmark.group = f"deploy-{case}"
    benchmark(sess.run, None, feed)
    if not benchmark.disabled:
        _record(benchmark, case, "onnxruntime", benchmark.stats.stats.median * 1e6)
