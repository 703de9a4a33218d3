"""MBPO vs fastmbrl's SAC vs PETS: evaluation return against environment steps and wall time, the
time split, and MBPO's wall time per 1k environment steps at mbrl-lib's InvertedPendulum settings.

Usage (seeds run one after the other; the machine may be shared, say so with the figures)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_mbpo_table.py \\
        --envs Pendulum-v1 InvertedPendulum-v5 --algorithms mbpo sac pets --seeds 0 1 2 \\
        --cost-steps 1000 --out benchmarks/results/mbpo_table.md

Writes a markdown table (and ``<out>.png`` curves with matplotlib when installed). Every run uses
the environment's defaults (``fastmbrl.envs.specs``) unless ``--set`` overrides them.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import fastmbrl as fm  # noqa: E402

BUDGETS = {"Pendulum-v1": 3000, "InvertedPendulum-v5": 5000, "HalfCheetah-v5": 50000}
# mbrl-lib's MBPO settings for InvertedPendulum (conf/overrides/mbpo_inv_pendulum.yaml)
MBRL_LIB_SETTINGS = {"sac": {"hidden": [256, 256], "batch_size": 256, "learning_starts": 250,
                             "eval_every": 250, "eval_episodes": 1},
                     # mbpo.hidden too: MBPO's networks are mbpo.hidden, which the InvertedPendulum
                     # spec sets to 64x64 (sac.hidden alone is not used by MBPO)
                     "mbpo": {"hidden": [256, 256], "updates_per_step": 10,
                              "rollouts_per_step": 400,
                              "model_train_every": 250, "rollout_schedule": [1, 15, 1, 1],
                              "real_ratio": 0.05, "model_retain": 1},
                     "model": {"hidden": [200, 200, 200, 200], "ensemble_size": 7,
                               "num_elites": 5, "batch_size": 256, "patience": 5,
                               "max_epochs": 100}}
# mbrl-lib measured on this machine, one thread, per 250 environment steps
MBRL_LIB_PER_250 = {"SAC updates": 23.0, "model fit": 10.0, "rollouts": 1.0}


def blas_info():
    import scipy.linalg.cython_blas  # noqa: F401 - Numba's BLAS
    from threadpoolctl import threadpool_info

    return "; ".join(f"{i['internal_api']} {i.get('architecture')} {i['num_threads']} threads"
                     for i in threadpool_info())


def run_one(env, alg, seed, steps, config):
    t0 = time.perf_counter()
    if alg == "pets":
        spec = fm.envs.get_spec(env)
        init = spec.defaults.get("algorithm", {}).get("initial_steps", 200)
        episodes = max(1, int(np.ceil((steps - init) / spec.max_episode_steps)))
        r = fm.run(env, algorithm="pets", episodes=episodes, seed=seed, config=config)
        split = {"fit": float(r.fit_times.sum()), "rollout+plan": float(r.act_times.sum()),
                 "update": 0.0, "env": float(r.env_times.sum())}
        upd = []  # PETS makes no gradient updates (its episode records have no such field)
    else:
        r = fm.run(env, algorithm=alg, steps=steps, seed=seed, config=config)
        split = {"fit": sum(x.fit_time for x in r.records),
                 "rollout+plan": sum(x.rollout_time for x in r.records),
                 "update": sum(x.update_time for x in r.records),
                 "env": sum(x.env_time for x in r.records)}
        upd = [x.updates_per_s for x in r.records if x.updates_per_s > 0]
    return {"env": env, "alg": alg, "seed": seed, "steps": r.steps.tolist(),
            "returns": r.returns.tolist(), "wall": r.wall_times.tolist(),
            "total": time.perf_counter() - t0, "split": split,
            "updates_per_s": float(np.median(upd)) if upd else 0.0}


def at(row, budget):
    """Return of the last record at or before ``budget`` steps (None if none)."""
    vals = [ret for s, ret in zip(row["steps"], row["returns"]) if s <= budget]
    return vals[-1] if vals else None


def cost_run(steps, seed=0, fit_seconds=0.0):
    """MBPO at mbrl-lib's InvertedPendulum settings: wall time and split per 1k steps."""
    total = 250 + steps
    config = json.loads(json.dumps(MBRL_LIB_SETTINGS))
    config["mbpo"]["model_fit_seconds"] = fit_seconds
    r = fm.run("InvertedPendulum-v5", algorithm="mbpo", steps=total, seed=seed, config=config)
    recs = [x for x in r.records if x.steps > 250]      # the learning steps only
    n = sum(x.segment_steps or 250 for x in recs)
    split = {"SAC updates": sum(x.update_time for x in recs),
             "model fit": sum(x.fit_time for x in recs),
             "rollouts": sum(x.rollout_time for x in recs),
             "env + act": sum(x.env_time + x.act_time for x in recs),
             "eval": sum(x.eval_time for x in recs)}
    wall = recs[-1].wall_time - r.records[0].wall_time if len(r.records) > 1 else recs[-1].wall_time
    return {"steps": n, "wall": wall, "split": split, "returns": r.returns.tolist(),
            "fit_seconds": fit_seconds, "fit_epochs": [x.fit_epochs for x in recs],
            "updates_per_s": float(np.mean([x.updates_per_s for x in recs]))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", nargs="*", default=["Pendulum-v1", "InvertedPendulum-v5"])
    p.add_argument("--algorithms", nargs="*", default=["mbpo", "sac", "pets"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="budget (default per env)")
    p.add_argument("--cost-steps", type=int, default=0,
                   help="learning steps of the mbrl-lib-settings cost run (0: skip)")
    p.add_argument("--fit-seconds", nargs="+", type=float, default=[0.0],
                   help="mbpo.model_fit_seconds of the cost runs (0: unbounded)")
    p.add_argument("--out", default="benchmarks/results/mbpo_table.md")
    p.add_argument("--json", default=None, help="also write the raw rows here")
    p.add_argument("--table-from", default=None, metavar="DIR",
                   help="only write the per-evaluation table and split of the finished run in DIR "
                        "(a `fastmbrl run ... --out DIR`), e.g. the long HalfCheetah-v5 MBPO run")
    args = p.parse_args(argv)
    if args.table_from:
        text = table_from(args.table_from)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(text)
        return

    lines = [f"# MBPO vs SAC vs PETS (fastmbrl)", "",
             f"BLAS: {blas_info()}. Machine: 2 cores shared with other jobs (figures are noisy).",
             ""]
    rows = []
    for env in args.envs:
        budget = args.steps or BUDGETS.get(env, 5000)
        marks = [budget // 3, 2 * budget // 3, budget]
        lines += [f"## {env}: evaluation return ({budget} env steps)", "",
                  "| algorithm | seed | " + " | ".join(f"return @{m}" for m in marks)
                  + " | wall s | model fit s | rollouts/planning s | SAC updates s | env s |",
                  "|---|---|" + "---|" * len(marks) + "---|---|---|---|---|"]
        for alg in args.algorithms:
            for seed in args.seeds:
                row = run_one(env, alg, seed, budget, None)
                rows.append(row)
                print(json.dumps(row), flush=True)
                s = row["split"]
                rets = " | ".join("-" if at(row, m) is None else f"{at(row, m):.0f}" for m in marks)
                lines.append(f"| {alg} | {seed} | {rets} | {row['wall'][-1]:.0f} | {s['fit']:.0f} | "
                             f"{s['rollout+plan']:.0f} | {s['update']:.0f} | {s['env']:.1f} |")
        lines.append("")
    if args.cost_steps:
        lib1k = {k: 4 * v for k, v in MBRL_LIB_PER_250.items()}
        lines += ["## Wall time per 1k env steps, mbrl-lib's InvertedPendulum MBPO settings", "",
                  "10 SAC updates/step (256x256, batch 256), 400 model rollouts/step, ensemble 7 of "
                  "4x200, refit every 250 steps, rollout length 1. mbrl-lib: measured on this "
                  "machine, one thread. Seconds per 1k learning steps.", "",
                  "| | wall | SAC updates | model fit | rollouts | env + act | eval | returns |",
                  "|---|---|---|---|---|---|---|---|"]
        for fit_seconds in args.fit_seconds:
            c = cost_run(args.cost_steps, fit_seconds=fit_seconds)
            per1k = {k: 1000.0 * v / c["steps"] for k, v in c["split"].items()}
            wall1k = 1000.0 * c["wall"] / c["steps"]
            name = "fastmbrl" + (f", fit <= {fit_seconds:g} s/refit" if fit_seconds else "")
            lines.append(f"| {name} | {wall1k:.1f} | {per1k['SAC updates']:.1f} | "
                         f"{per1k['model fit']:.1f} | {per1k['rollouts']:.2f} | "
                         f"{per1k['env + act']:.2f} | {per1k['eval']:.2f} | {c['returns']} |")
            rows.append({"cost": c})
            print(json.dumps(c), flush=True)
        lines += [f"| mbrl-lib | ~140 | {lib1k['SAC updates']:.0f} | {lib1k['model fit']:.0f} | "
                  f"{lib1k['rollouts']:.0f} | | | |", ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh)
    try:
        _plot(rows, os.path.splitext(args.out)[0] + ".png")
    except ImportError:
        pass
    print("\n".join(lines))


def table_from(run_dir):
    """Markdown: evaluation return and the time split per segment of a finished run's results."""
    with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as fh:
        res = json.load(fh)
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    recs, summ = res["episodes"], res["summary"]
    mb, sac, model = cfg.get("mbpo", {}), cfg.get("sac", {}), cfg.get("model", {})
    nets = "x".join(map(str, mb.get("hidden") or sac.get("hidden", [])))
    widths = model.get("hidden") or [0]
    setup = (f"From `{run_dir}`. {mb.get('random_steps')} random steps, refit every "
             f"{mb.get('model_train_every')}, {mb.get('rollouts_per_step')} rollouts/step, "
             f"{mb.get('updates_per_step')} SAC updates/step ({nets}), ensemble "
             f"{model.get('ensemble_size')} of {len(widths)}x{widths[0]}, model fit threads "
             f"{model.get('n_threads', 1)}. Times per row are for the segment since the previous "
             "evaluation.")
    lines = [f"# {res['env']} {res['algorithm'].upper()} (fastmbrl), seed {res['seed']}", "",
             setup, "",
             ("| env steps | eval return | wall s (cumulative) | SAC updates s | model fit s | "
              "rollouts s | env + act s | updates/s |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['steps']} | {r['return']:.0f} | {r['wall_time']:.0f} | "
                     f"{r['update_time']:.0f} | {r['fit_time']:.0f} | {r['rollout_time']:.1f} | "
                     f"{r['env_time'] + r['act_time']:.1f} | {r['updates_per_s']:.0f} |")
    steps, wall = summ["steps"], summ["wall_time"]
    per1k = {k: 1000.0 * summ[k] / steps for k in ("update_time", "fit_time", "rollout_time")}
    env_act = 1000.0 * (summ["env_time"] + summ["act_time"]) / steps
    lines += ["", (f"Total: {steps} steps in {wall:.0f} s ({wall / 60:.1f} min; per 1k steps "
                   f"{1000 * wall / steps:.1f} s: SAC updates {per1k['update_time']:.1f}, model fit "
                   f"{per1k['fit_time']:.1f}, rollouts {per1k['rollout_time']:.2f}, env + act "
                   f"{env_act:.2f}); best return {summ['best_return']:.0f}, last "
                   f"{summ['last_return']:.0f}."), ""]
    return "\n".join(lines)


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r["env"] for r in rows if "env" in r})
    if not envs:
        return
    fig, axes = plt.subplots(len(envs), 2, figsize=(10, 3.5 * len(envs)), squeeze=False)
    colors = {"mbpo": "C0", "sac": "C1", "pets": "C2"}
    for i, env in enumerate(envs):
        for r in rows:
            if r.get("env") != env:
                continue
            c = colors.get(r["alg"], "k")
            axes[i, 0].plot(r["steps"], r["returns"], color=c, alpha=0.7, label=r["alg"])
            axes[i, 1].plot(r["wall"], r["returns"], color=c, alpha=0.7, label=r["alg"])
        axes[i, 0].set_xlabel("environment steps")
        axes[i, 1].set_xlabel("wall time (s)")
        axes[i, 0].set_ylabel(f"{env} eval return")
        handles, labels = axes[i, 0].get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        axes[i, 0].legend(uniq.values(), uniq.keys())
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
