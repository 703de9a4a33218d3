"""PETS ``act()`` against mbrl-lib's, natively and on the AVX2 path, each pair in one session.

    bash benchmarks/mbrl_lib/setup_mbrl_lib_venv.sh      # once: mbrl-lib in /tmp/mbrl-venv
    python benchmarks/run_pets_vs_mbrl_lib.py --mbrl-python /tmp/mbrl-venv/bin/python

For each path (native, then AVX2 as ``avx2_env.py`` sets it for fastmbrl and PyTorch alike):
fastmbrl's ``bench_planning.py`` cases (the small config on 1 thread, the cartpole-size one on 2),
then ``mbrl_lib/run_mbrl_lib_pets.py`` on the same configurations and threads. Prints a markdown
table of the medians and the ratios. Take it on quiet cores.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_avx2_table import path_env, run_path  # noqa: E402

CASES = [("a_small", 1, "small: E=5, 2x64, pop 100, H 10, 3 iterations, 5 particles"),
         ("b_cartpole", 2, "cartpole: E=7, 4x200, pop 350, H 15, 5 iterations, 20 particles")]


def mbrl_lib_median(python, path, config, threads, rounds):
    """Median seconds of mbrl-lib's ``act()`` (``run_mbrl_lib_pets.py``) on ``path``."""
    out = subprocess.run([python, str(HERE / "mbrl_lib" / "run_mbrl_lib_pets.py"), "--config",
                          config, "--threads", str(threads), "--rounds", str(rounds)],
                         env=path_env(path), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mbrl-python", default="/tmp/mbrl-venv/bin/python")
    p.add_argument("--rounds", type=int, default=10, help="mbrl-lib's timed calls per case")
    args = p.parse_args(argv)
    nodes = [f"bench_planning.py::test_pets_act[{c}-{t}]" for c, t, _ in CASES]
    lines = ["| config, threads | path | fastmbrl | mbrl-lib 0.2.0 | ratio |",
             "| --- | --- | --- | --- | --- |"]
    for path in ("native", "avx2"):
        ours = run_path(path, nodes, min_rounds=5)
        for (config, threads, label), node in zip(CASES, nodes):
            theirs = mbrl_lib_median(args.mbrl_python, path, config, threads, args.rounds)
            mine = ours[node][0]
            lines.append(f"| {label}, {threads} thread{'s' if threads > 1 else ''} | {path} | "
                         f"{mine * 1e3:.1f} ms | {theirs * 1e3:.1f} ms | {theirs / mine:.2f}x |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
