"""Ablation of the model-based actor-critic switches: SAC, SAC with MBPO's networks and
updates per step, MBPO, MVE (n = 3, 5), SVG (h = 3, 5; the svg preset keeps MBPO's Dyna data), SVG
without Dyna data, and MBPO + MVE + SVG. Environment steps to reach the threshold, return at fixed
budgets, wall time and its split, the cost of one update (updates/s).

Usage (runs one after the other; the machine may be shared, say so with the figures)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_ablation_table.py \\
        --env Pendulum-v1 --seeds 0 1 2 --steps 3000 --out benchmarks/results/ablation_pendulum.md

Every run uses the environment's defaults (``fastmbrl.envs.specs``) plus the variant's ``mbpo``
switches and ``sac.eval_every`` (250: the resolution of "steps to threshold"). Writes the table,
``<out>.json`` (the raw rows) and ``<out>.png`` (return against env steps and wall time).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from run_mbpo_table import at, blas_info, run_one

from fastmbrl.envs import get_spec

# "sac, MBPO's nets and updates": the fair model-free baseline, SAC with the env's mbpo.hidden,
# mbpo.updates_per_step and mbpo.random_steps (the spec's own sac settings otherwise)
MATCH_MBPO = "match mbpo"
VARIANTS = {
    "sac": ("sac", {}),
    "sac, MBPO's nets and updates": ("sac", MATCH_MBPO),
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
    p.add_argument("--out", default="benchmarks/results/ablation_pendulum.md")
    p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="run nothing: merge the raw rows of earlier runs (their <out>.json, e.g. "
                        "variants split over two processes) into one table and plot")
    args = p.parse_args(argv)
    thr = THRESHOLD.get(args.env, 0.0)
    marks = [args.steps // 3, 2 * args.steps // 3, args.steps]
    lines = [f"# Ablation of MVE / SVG(H) on {args.env} ({args.steps} env steps)", "",
             f"BLAS: {blas_info()}. Machine: 2 cores shared with other jobs (times are noisy).", "",
             f"| variant | seed | steps to {thr:g} | " + " | ".join(f"return @{m}" for m in marks)
             + " | wall s | updates s | model fit s | rollouts s | env s | updates/s |",
             "|---|---|---|" + "---|" * len(marks) + "---|---|---|---|---|---|"]
    rows = []
    if args.from_json:
        for path in args.from_json:
            with open(path, encoding="utf-8") as fh:
                rows += json.load(fh)
        lines += [row_line(r, thr, marks) for r in rows]
        args.variants = []
    for name in args.variants:
        alg, switches = VARIANTS[name]
        for seed in args.seeds:
            config = {"sac": {"eval_every": args.eval_every}}
            if switches == MATCH_MBPO:
                mb = get_spec(args.env).defaults.get("mbpo", {})
                config["sac"].update({k: mb[j] for k, j in (
                    ("hidden", "hidden"), ("updates_per_step", "updates_per_step"),
                    ("learning_starts", "random_steps")) if j in mb})
            elif alg != "sac":
                config["mbpo"] = dict(switches)
            row = run_one(args.env, alg, seed, args.steps, config)
            row["variant"] = name
            rows.append(row)
            print(json.dumps(row), flush=True)
            lines.append(row_line(row, thr, marks))
            write(args.out, lines + [""] + summary(rows, thr, marks), rows)
    table = lines + [""] + summary(rows, thr, marks)
    write(args.out, table, rows)
    try:
        plot(rows, os.path.splitext(args.out)[0] + ".png", args.env, thr)
    except ImportError:
        pass
    print("\n".join(table))


def row_line(row, thr, marks):
    """The table line of one run."""
    hit = steps_to(row, thr)
    rets = " | ".join("-" if at(row, m) is None else f"{at(row, m):.0f}" for m in marks)
    sp = row["split"]
    return (f"| {row['variant']} | {row['seed']} | {'-' if hit is None else hit} | {rets} | "
            f"{row['wall'][-1]:.0f} | {sp['update']:.0f} | {sp['fit']:.0f} | "
            f"{sp['rollout+plan']:.1f} | {sp['env']:.1f} | {row['updates_per_s']:.0f} |")


def write(path, lines, rows):
    """The table so far and the raw rows (rewritten after every run: nothing lost on failure)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.splitext(path)[0] + ".json", "w", encoding="utf-8") as fh:
        json.dump(rows, fh)


def summary(rows, thr, marks):
    """One line per variant: seeds reaching the threshold, median steps to it, mean returns."""
    out = [f"| variant | seeds reaching {thr:g} | median steps to {thr:g} | "
           + " | ".join(f"mean return @{m}" for m in marks) + " | mean wall s | updates/s |",
           "|---|---|---|" + "---|" * len(marks) + "---|---|"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == name]
        hits = [steps_to(r, thr) for r in rs]
        reached = [h for h in hits if h is not None]
        med = f"{np.median(reached):.0f}" if len(reached) == len(rs) else (
            f"{np.median(reached):.0f} ({len(reached)} seeds)" if reached else "-")
        vals = [[at(r, m) for r in rs if at(r, m) is not None] for m in marks]
        rets = " | ".join(f"{np.mean(v):.0f}" if v else "-" for v in vals)
        out.append(f"| {name} | {len(reached)}/{len(rs)} | {med} | {rets} | "
                   f"{np.mean([r['wall'][-1] for r in rs]):.0f} | "
                   f"{np.median([r['updates_per_s'] for r in rs]):.0f} |")
    return out


def plot(rows, path, env, thr):
    """Mean evaluation return (over seeds) against env steps and against wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, name in enumerate(dict.fromkeys(r["variant"] for r in rows)):
        rs = [r for r in rows if r["variant"] == name]
        n = min(len(r["steps"]) for r in rs)
        steps = np.asarray(rs[0]["steps"][:n])
        ret = np.mean([r["returns"][:n] for r in rs], axis=0)
        wall = np.mean([r["wall"][:n] for r in rs], axis=0)
        color = f"C{i % 10}"
        axes[0].plot(steps, ret, color=color, label=f"{name} ({len(rs)} seeds)")
        axes[1].plot(wall, ret, color=color)
    for ax, xlabel in zip(axes, ("environment steps", "wall time (s)")):
        ax.axhline(thr, color="grey", ls=":", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("evaluation return (mean over seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{env}: model-based actor-critic ablation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
