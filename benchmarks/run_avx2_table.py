"""The speed table with an AVX2 column: the same benchmarks on this machine's native code and on
its AVX2 code (``avx2_env.py``, for fastmbrl and its PyTorch peers alike), each path against its
peer in the same pytest session, with the fraction of the sgemm rate of that session.

    python benchmarks/run_avx2_table.py --out benchmarks/results/DATE_avx2_table_CPU.md

Runs one pytest-benchmark session per path (native first, then AVX2) on the cases below and prints
a markdown table: per case the medians, the ratio to the peer and the fraction of the sgemm rate
of each path. Take it on quiet cores (nothing else running): the two paths are measured minutes
apart, so only the ratios inside one path are same-run figures.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import avx2_env  # noqa: E402

# (label, pytest node of fastmbrl's case, the peer's node, the peer's name)
CASES = [
    ("GaussianTrainStep, E=7, 4x200, batch 256, 1 thread",
     "bench_nn.py::test_step_compiled[b-1]", "bench_nn.py::test_step_torch[b-1]", "torch"),
    ("GaussianTrainStep, E=7, 4x200, batch 256, 2 threads",
     "bench_nn.py::test_step_compiled[b-2]", "bench_nn.py::test_step_torch[b-2]", "torch"),
    ("SAC update, obs 17 / act 6, 256x256, batch 256, 1 thread (10 updates)",
     "bench_sac.py::test_sac_update[b-fastmbrl-1]", "bench_sac.py::test_sac_update[b-sb3-1]",
     "SB3"),
    ("SAC update, obs 17 / act 6, 256x256, batch 256, 2 threads (10 updates)",
     "bench_sac.py::test_sac_update[b-fastmbrl-2]", "bench_sac.py::test_sac_update[b-sb3-2]",
     "SB3"),
    ("PETS act(), small: E=5, 2x64, pop 100, H 10, 5 particles, 1 thread",
     "bench_planning.py::test_pets_act[a_small-1]",
     "bench_planning.py::test_pets_act_torch[a_small-1]", "torch"),
    ("PETS act(), cartpole: E=7, 4x200, pop 350, H 15, 20 particles, 2 threads",
     "bench_planning.py::test_pets_act[b_cartpole-2]",
     "bench_planning.py::test_pets_act_torch[b_cartpole-2]", "torch"),
]


def path_env(path):
    """The environment of one path: OpenBLAS's core type left to the library (``native``), or
    the AVX2 exports (``avx2``)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if path == "avx2":
        feats = avx2_env.avx2_features()
        if feats is None:
            raise SystemExit("this CPU has no AVX2: there is no AVX2 path to measure")
        env.update(avx2_env.avx2_exports(feats))
    return env


def run_path(path, nodes, min_rounds):
    """One pytest-benchmark session of ``nodes``; returns {node: (median s, fraction or None)}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", *nodes, "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-min-rounds={min_rounds}",
               f"--benchmark-json={out}"]
        subprocess.run(cmd, cwd=HERE, env=path_env(path), check=False)
        if not out.exists():
            raise SystemExit(f"{path}: the benchmark session wrote no results ({' '.join(cmd)})")
        data = json.loads(out.read_text())
    results = {}
    for b in data["benchmarks"]:
        node = b["fullname"].split("/")[-1]
        frac = b.get("extra_info", {}).get("fraction_of_sgemm")
        results[node] = (b["stats"]["median"], frac if isinstance(frac, float) else None)
    return results


def _ms(sec):
    return f"{sec * 1e3:.1f} ms" if sec >= 1e-3 else f"{sec * 1e6:.0f} us"


def _cell(res, node, peer):
    if node not in res:
        return "-"
    med, frac = res[node]
    text = _ms(med)
    if peer in res:
        text += f", {res[peer][0] / med:.2f}x"
    if frac is not None:
        text += f", {100 * frac:.0f}% of sgemm"
    return text


def table(native, avx2):
    lines = ["| what | native: fastmbrl, x peer, of sgemm | AVX2 path: the same | AVX2 / native "
             "(fastmbrl) | peer native / AVX2 |",
             "| --- | --- | --- | --- | --- |"]
    for label, node, peer, name in CASES:
        slow = (f"{avx2[node][0] / native[node][0]:.2f}x" if node in native and node in avx2
                else "-")
        peers = (f"{name} {_ms(native[peer][0])} / {_ms(avx2[peer][0])}"
                 if peer in native and peer in avx2 else f"{name}: not run")
        lines.append(f"| {label} | {_cell(native, node, peer)} | {_cell(avx2, node, peer)} | "
                     f"{slow} | {peers} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--min-rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="write the table (markdown) to this file too")
    args = p.parse_args(argv)
    nodes = [n for _, a, b, _ in CASES for n in (a, b)]
    native = run_path("native", nodes, args.min_rounds)
    avx2 = run_path("avx2", nodes, args.min_rounds)
    text = (f"CPU: {platform.processor() or platform.machine()}; command: python "
            f"benchmarks/run_avx2_table.py --min-rounds {args.min_rounds}\n\n{table(native, avx2)}\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
