"""Full PETS runs with the default configs, written as a markdown table.

    python benchmarks/run_loop_table.py                       # the issue's table (long: ~10 runs)
    python benchmarks/run_loop_table.py --envs Pendulum-v1 --seeds 0 --out table.md

For every (env, seed): the return of every episode, the mean of episodes 6-10 (Pendulum's target
statistic; Reacher's too), the first episode reaching the target return (CartPole: 200,
MountainCar: 90), and wall time split into
model fitting, acting (planning) and environment stepping. Runs one after the other (the machine
has two cores; the planner may use both).
"""
import argparse
import json
import platform
import sys
import time

import numpy as np

import fastmbrl as fm
from fastmbrl.config import to_dict

# env id -> (episodes, seeds, target return, "mean6-10" or "first-episode-reaching")
DEFAULT_PLAN = {
    "Pendulum-v1": (10, (0, 1, 2), -250.0, "mean6-10"),
    "CartPoleContinuous-v0": (15, (0, 1, 2), 200.0, "first"),
    "InvertedPendulum-v5": (10, (0,), 1000.0, "first"),
    "MountainCarContinuous-v0": (5, (0, 1, 2), 90.0, "first"),
    "Reacher-v5": (10, (0, 1, 2), -5.0, "mean6-10"),
    "HalfCheetah-v5": (10, (0,), float("nan"), "mean6-10"),
}


def run_one(env_id, seed, episodes, log=sys.stderr):
    t0 = time.perf_counter()
    result = fm.run(env_id, episodes=episodes, seed=seed)
    wall = time.perf_counter() - t0
    log.write(f"{env_id} seed {seed}: returns {np.round(result.returns, 1).tolist()} "
              f"({wall:.0f} s)\n")
    log.flush()
    return result, wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="*", default=list(DEFAULT_PLAN))
    parser.add_argument("--seeds", nargs="*", type=int, default=None,
                        help="seeds (default: the plan's per env)")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--out", default=None, help="markdown file (default: stdout)")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    args = parser.parse_args(argv)

    lines = ["| env | seed | returns per episode | mean ep 6-10 | target | reached at episode "
             "| fit s | act s | env s | wall s | ms/action |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    raw = []
    for env_id in args.envs:
        spec = fm.envs.get_spec(env_id)
        if not spec.available:
            sys.stderr.write(f"skipping {env_id}: needs the {spec.requires} extra\n")
            continue
        episodes, seeds, target, kind = DEFAULT_PLAN.get(env_id, (10, (0,), float("nan"), "first"))
        episodes = args.episodes or episodes
        for seed in (args.seeds if args.seeds is not None else seeds):
            result, wall = run_one(env_id, seed, episodes)
            returns = result.returns
            mean610 = float(np.mean(returns[5:10])) if len(returns) >= 10 else float("nan")
            reached = next((i + 1 for i, r in enumerate(returns) if r >= target), None)
            steps = int(result.lengths.sum())
            lines.append(
                f"| {env_id} | {seed} | {' '.join(f'{r:.0f}' for r in returns)} | "
                f"{mean610:.1f} | {target:g} ({kind}) | {reached if reached else '-'} | "
                f"{result.fit_times.sum():.1f} | {result.act_times.sum():.1f} | "
                f"{result.env_times.sum():.1f} | {wall:.1f} | "
                f"{1000 * result.act_times.sum() / max(steps, 1):.1f} |")
            raw.append({"env": env_id, "seed": seed, "returns": returns.tolist(),
                        "lengths": result.lengths.tolist(), "fit": result.fit_times.tolist(),
                        "act": result.act_times.tolist(), "env_step": result.env_times.tolist(),
                        "wall": wall, "config": to_dict(result.config)})
    header = (f"fastmbrl {fm.__version__}, default configs, {platform.processor() or platform.machine()}"
              f", command: python benchmarks/run_loop_table.py {' '.join(argv or sys.argv[1:])}\n\n")
    text = header + "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(raw, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
