"""MBPO wall time per 1k environment steps at mbrl-lib's InvertedPendulum settings: fastmbrl
against mbrl-lib 0.2.0 (PyTorch) on the same machine, in alternating processes.

mbrl-lib runs in its own virtual environment (``benchmarks/mbrl_lib/setup_mbrl_lib_venv.sh``);
fastmbrl runs ``run_mbpo_table.cost_run`` in this interpreter. Each round runs fastmbrl, then
mbrl-lib at each ``--mbrl-threads`` count, so slow drifts of a noisy machine hit both. Both time
1k learning steps at 10 SAC updates per step with four refits (mbrl-lib after its first 250
learning steps, which make no SAC update).

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_mbpo_vs_mbrl_lib.py \\
        --rounds 2 --out benchmarks/results/mbpo_vs_mbrl_lib.md
"""
import argparse
import json
import os
import platform
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT = ["SAC updates", "model fit", "rollouts", "env + act"]
# mbrl-lib's JSON names for the same parts of the loop
MBRL_LIB_SPLIT = {"SAC updates": "sac_updates", "model fit": "model_fit",
                  "rollouts": "model_rollouts", "env + act": "env_act"}


def last_json_line(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def fastmbrl_run(steps):
    code = (f"import sys, json; sys.path.insert(0, {HERE!r}); import run_mbpo_table as t; "
            f"print(json.dumps(t.cost_run({steps})))")
    r = last_json_line([sys.executable, "-c", code])
    per_k = 1000.0 / r["steps"]
    return {"wall": r["wall"] * per_k, **{k: r["split"][k] * per_k for k in SPLIT},
            "updates/s": r["updates_per_s"], "fit epochs": r["fit_epochs"]}


def mbrl_lib_run(python, steps, threads):
    r = last_json_line([python, os.path.join(HERE, "mbrl_lib", "run_mbrl_lib_mbpo.py"),
                        "--steps", str(steps), "--skip", "250", "--threads", str(threads)])
    per = r["per_1k_steps_s"]
    return {"wall": per["wall"], **{k: per[MBRL_LIB_SPLIT[k]] for k in SPLIT},
            "updates/s": r["sac_updates_per_s"], "fit epochs": r["fit_epochs_per_refit"][1:],
            "version": r["lib"]}


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mbrl_lib_label(threads):
    return f"mbrl-lib, {threads} thread{'s' * (threads > 1)}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mbrl-python", default="/tmp/mbrl-venv/bin/python",
                   help="the interpreter of mbrl-lib's virtual environment")
    p.add_argument("--mbrl-threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--out", default=None, help="markdown file to write")
    args = p.parse_args(argv)

    runs = {"fastmbrl": []}
    runs.update({mbrl_lib_label(t): [] for t in args.mbrl_threads})
    for i in range(args.rounds):
        runs["fastmbrl"].append(fastmbrl_run(args.steps))
        print(f"round {i + 1} fastmbrl: {runs['fastmbrl'][-1]['wall']:.1f} s", flush=True)
        for t in args.mbrl_threads:
            name = mbrl_lib_label(t)
            runs[name].append(mbrl_lib_run(args.mbrl_python, args.steps, t))
            print(f"round {i + 1} {name}: {runs[name][-1]['wall']:.1f} s", flush=True)

    sys.path.insert(0, HERE)
    from run_mbpo_table import blas_info  # the BLAS library and kernel set it names

    ours = float(np.median([r["wall"] for r in runs["fastmbrl"]]))
    lines = [(f"MBPO at mbrl-lib's InvertedPendulum settings, seconds per 1k environment steps "
              f"(median of {args.rounds} alternating rounds; each run's figures in brackets). "
              f"{cpu_name()}, {os.cpu_count()} cores; fastmbrl's BLAS: {blas_info()}. fastmbrl "
              f"uses both cores (SAC update kernel and model fit on 2 threads)."), "",
             "| | wall | " + " | ".join(SPLIT) + " | SAC updates/s | fastmbrl faster by |",
             "| --- | --- | " + " | ".join("---" for _ in SPLIT) + " | --- | --- |"]
    def cell(rs, key, fmt="{:.1f}"):
        vals = [r[key] for r in rs]
        return fmt.format(np.median(vals)) + " (" + ", ".join(fmt.format(v) for v in vals) + ")"

    for name, rs in runs.items():
        wall = float(np.median([r["wall"] for r in rs]))
        ratio = "" if name == "fastmbrl" else f"{wall / ours:.2f}x"
        lines.append(f"| {name} | **{cell(rs, 'wall')}** | "
                     + " | ".join(cell(rs, k) for k in SPLIT)
                     + f" | {cell(rs, 'updates/s', '{:.0f}')} | {ratio} |")
    lines += ["", "Model fit epochs per refit: "
              + "; ".join(f"{name} {rs[0]['fit epochs']}" for name, rs in runs.items()) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
