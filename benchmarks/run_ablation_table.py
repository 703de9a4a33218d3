"""Ablation of the model-based actor-critic switches on Pendulum-v1 (issue 11): SAC, MBPO, MVE
(n = 3, 5), SVG (h = 3, 5; the svg preset keeps MBPO's Dyna data), SVG without Dyna data, and
MBPO + MVE + SVG. Environment steps to reach the threshold, return at fixed budgets, wall time.

Usage (runs one after the other; the machine may be shared, say so with the figures)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_ablation_table.py \\
        --seeds 0 1 2 --steps 3000 --out benchmarks/results/ablation_table.md

Every run uses the environment's defaults (``fastmbrl.envs.specs``) plus the variant's ``mbpo``
switches and ``sac.eval_every`` (250: the resolution of "steps to threshold").
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from run_mbpo_table import at, blas_info, run_one

VARIANTS = {
    "sac": ("sac", {}),
    "mbpo": ("mbpo", {}),
    "mve n=3": ("mve", {"critic_horizon": 3}),
    "mve n=5": ("mve", {"critic_horizon": 5}),
    "svg h=3": ("svg", {"actor_horizon": 3}),
    "svg h=5": ("svg", {"actor_horizon": 5}),
    "svg h=3 no Dyna": ("svg", {"actor_horizon": 3, "dyna_rollouts": False, "real_ratio": 1.0}),
    "mbpo+mve n=3+svg h=3": ("mbpo", {"critic_horizon": 3, "actor_horizon": 3}),
}
THRESHOLD = {"Pendulum-v1": -200.0, "InvertedPendulum-v5": 1000.0}


def steps_to(row, threshold):
    """First evaluation step whose return reaches ``threshold`` (None: never)."""
    for s, ret in zip(row["steps"], row["returns"]):
        if ret >= threshold:
            return s
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=250, help="sac.eval_every (resolution)")
    p.add_argument("--out", default="benchmarks/results/ablation_table.md")
    args = p.parse_args(argv)
    thr = THRESHOLD.get(args.env, 0.0)
    marks = [args.steps // 3, 2 * args.steps // 3, args.steps]
    lines = [f"# Ablation of MVE / SVG(H) on {args.env} ({args.steps} env steps)", "",
             f"BLAS: {blas_info()}. Machine: 2 cores shared with other jobs (times are noisy).", "",
             f"| variant | seed | steps to {thr:g} | " + " | ".join(f"return @{m}" for m in marks)
             + " | wall s | updates s |", "|---|---|---|" + "---|" * len(marks) + "---|---|"]
    for name in args.variants:
        alg, switches = VARIANTS[name]
        for seed in args.seeds:
            config = {"sac": {"eval_every": args.eval_every}}
            if alg != "sac":
                config["mbpo"] = dict(switches)
            row = run_one(args.env, alg, seed, args.steps, config)
            row["variant"] = name
            print(json.dumps(row), flush=True)
            hit = steps_to(row, thr)
            rets = " | ".join("-" if at(row, m) is None else f"{at(row, m):.0f}" for m in marks)
            lines.append(f"| {name} | {seed} | {'-' if hit is None else hit} | {rets} | "
                         f"{row['wall'][-1]:.0f} | {row['split']['update']:.0f} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
