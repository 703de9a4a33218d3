"""Real-time control tables: budget latency and wall-clock control loops, as markdown.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_realtime_table.py
    ... --envs Pendulum-v1 --rates 200 --episodes 2 --out realtime.md       # quicker
    ... --skip-latency --skip-loops --loads 0 2     # the overrun table alone, quiet and loaded

See bench_realtime.py for what is measured. The machine load is printed with the tables
(``os.getloadavg``) together with the noise probe: on a shared 2-core machine every figure is an
upper bound of what an idle machine gives.
"""
import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_realtime as br  # noqa: E402

import fastmbrl as fm  # noqa: E402


def latency_table(calls):
    rows = ["| config | budget | deadline check | p50 ms | p99 ms | max ms | CPU p99 ms | "
            "scored p50 | cut |", "|---|---|---|---|---|---|---|---|---|"]
    for name, budget in (("b_cartpole", 0.005), ("a_small", 0.002), ("a_small", 0.005)):
        for granular in (False, True):
            n = calls if not (granular and name == "b_cartpole") else max(5, calls // 20)
            t, scored, cut, cpu = br.budget_latency(name, budget, calls=n,
                                                    iteration_granular=granular)
            s = br.summary_ms(t)
            rows.append(f"| {name} | {budget * 1e3:g} ms | "
                        f"{'iterations only (before)' if granular else 'rollout chunks (now)'} | "
                        f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} | "
                        f"{np.percentile(cpu, 99) * 1e3:.2f} | {int(np.median(scored))} | "
                        f"{np.mean(cut):.0%} |")
            sys.stderr.write(rows[-1] + "\n")
    probe = br.noise_probe(300)
    rows.append("")
    rows.append(f"Noise probe (fixed single-thread BLAS work, same run): p50 "
                f"{np.median(probe) * 1e3:.2f} ms, p99 {np.percentile(probe, 99) * 1e3:.2f} ms, "
                f"max {probe.max() * 1e3:.2f} ms.")
    return rows


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reasons(infos):
    """The fallback reasons of ``last_plan_info`` dicts with their counts, e.g. "load 3"."""
    found = [i.get("fallback_reason") for i in infos if i.get("fallback") is not None]
    names, counts = np.unique([str(f) for f in found], return_counts=True)
    return ", ".join(f"{n.replace('budget_below_', 'below ').replace('_', ' ')} {c}"
                     for n, c in zip(names, counts)) or "-"


def overrun_table(configs, budgets_ms, threads, loads, calls, gap_ms):
    """Overrun (``act`` wall time minus the budget) rows: config x budget x threads x load."""
    rows = ["| config | budget | threads | load | steady overrun p50 / p99 / max ms | "
            "> +1 ms | > +2 ms | first call overrun max ms | scored p50 | cut | fallback | "
            "fallback reasons | other processes (cores) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for load in loads:
        with br.busy_load(load) as procs:
            load_name = "quiet" if load == 0 else f"{load} busy loops"
            for b_ms in budgets_ms:
                with br.OtherLoad([p.pid for p in procs]) as other:
                    o = br.spin_floor(b_ms * 1e-3, calls=calls, gap=gap_ms * 1e-3) * 1e3
                others = "-" if other.cores is None else f"{other.cores:.2f}"
                rows.append(f"| spin to the deadline (floor) | {b_ms:g} ms | 1 | {load_name} | "
                            f"{np.median(o):+.2f} / {np.percentile(o, 99):+.2f} / "
                            f"{o.max():+.2f} | {np.mean(o > 1):.1%} | {np.mean(o > 2):.1%} | - | "
                            f"- | - | - | - | {others} |")
                sys.stderr.write(rows[-1] + "\n")
            for name in configs:
                for n_threads in threads:
                    for b_ms in budgets_ms:
                        with br.OtherLoad([p.pid for p in procs]) as other:
                            r = br.overrun(name, b_ms * 1e-3, calls=calls, n_threads=n_threads,
                                           gap=gap_ms * 1e-3)
                        o = r["steady"] * 1e3
                        others = "-" if other.cores is None else f"{other.cores:.2f}"
                        rows.append(
                            f"| {name} | {b_ms:g} ms | {n_threads} | {load_name} | "
                            f"{np.median(o):+.2f} / {np.percentile(o, 99):+.2f} / {o.max():+.2f} | "
                            f"{np.mean(o > 1):.1%} | {np.mean(o > 2):.1%} | "
                            f"{r['first'].max() * 1e3:+.2f} | {int(np.median(r['scored']))} | "
                            f"{np.mean(r['cut']):.0%} | {np.mean(r['fallback']):.0%} | "
                            f"{reasons(r['infos'])} | {others} |")
                        sys.stderr.write(rows[-1] + "\n")
    return rows


def loop_table(envs, rates, episodes, train_episodes, horizons):
    rows = ["| env | H | rate | mode | return (mean) | vs unhurried (rel.) | period p50 / p99 / max ms | "
            "within 1 ms | deadlines met | plan age p99 (steps) | replans/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for env_id in envs:
        t0 = time.perf_counter()
        model, result = br.train_model(env_id, episodes=train_episodes, seed=0)
        sys.stderr.write(f"{env_id}: trained on {train_episodes} fm.run episodes "
                         f"({time.perf_counter() - t0:.0f} s), returns "
                         f"{np.round(result.returns, 1).tolist()}\n")
        made = fm.envs.make(env_id)
        for horizon in horizons:
            agent = br.small_agent(model, made, seed=0, horizon=horizon)
            seeds = [100 + i for i in range(episodes)]
            ref = br.loop_summary([br.control_loop(made, agent, "unhurried", 0.0, s)
                                   for s in seeds], 0.0)
            rows.append(f"| {env_id} | {horizon} | - | unhurried | {ref['return_mean']:.1f} | "
                        f"(reference) | - | - | - | - | - |")
            sys.stderr.write(rows[-1] + f" {ref['returns']}\n")
            for hz in rates:
                period = 1.0 / hz
                for mode in ("null", "sync", "async"):
                    runs = [br.control_loop(made, agent, mode, period, s) for s in seeds]
                    m = br.loop_summary(runs, period)
                    # signed relative difference: negative = a lower (worse) return
                    rel = ((m["return_mean"] - ref["return_mean"]) / abs(ref["return_mean"])
                           if ref["return_mean"] else np.nan)
                    age = (f"{m['plan_age_steps_p99']:.1f}" if "plan_age_steps_p99" in m
                           else "-")
                    replans = f"{m['replans_per_s']:.0f}" if "replans_per_s" in m else "-"
                    ret = "-" if mode == "null" else f"{m['return_mean']:.1f}"
                    rows.append(
                        f"| {env_id} | {horizon} | {hz} Hz | {mode} | "
                        f"{ret} | "
                        f"{'-' if mode == 'null' else f'{rel:+.0%}'} | "
                        f"{m['period_p50_ms']:.2f} / {m['period_p99_ms']:.2f} / "
                        f"{m['period_max_ms']:.2f} | {m['within_1ms']:.1%} | "
                        f"{m['deadlines_met']:.1%} | {age} | {replans} |")
                    sys.stderr.write(rows[-1] + f" {m['returns']}\n")
            agent.close()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=["Pendulum-v1", "CartPoleContinuous-v0"])
    ap.add_argument("--rates", nargs="+", type=int, default=[50, 200])
    ap.add_argument("--episodes", type=int, default=3, help="timed episodes per mode")
    ap.add_argument("--train-episodes", type=int, default=5)
    ap.add_argument("--horizons", nargs="+", type=int, default=[10, 25],
                    help="planner horizons (config (a) has 10)")
    ap.add_argument("--calls", type=int, default=200, help="act() calls per latency row")
    ap.add_argument("--overrun-configs", nargs="+", default=["a_small", "b_cartpole"])
    ap.add_argument("--overrun-budgets", nargs="+", type=float, default=[2, 5, 10],
                    help="budgets of the overrun table, ms")
    ap.add_argument("--overrun-threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--loads", nargs="+", type=int, default=[0, 2],
                    help="busy-loop processes beside the overrun table's calls (0: quiet)")
    ap.add_argument("--overrun-calls", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="sleep between the overrun table's calls (0: back to back)")
    ap.add_argument("--skip-overrun", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-loops", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    lines = [f"# Real-time control ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"{cpu_name()}, {os.cpu_count()} cores; BLAS: "
             f"{br.blas_info()}; load average at start {os.getloadavg()}", ""]
    if not args.skip_latency:
        lines += ["## act(obs, time_budget) latency (random weights, 1 thread)", ""]
        lines += latency_table(args.calls) + [""]
    if not args.skip_overrun:
        lines += ["## Overrun: act(obs, time_budget=b) wall time minus b (random weights)", "",
                  f"{args.overrun_calls} steady calls per row after the first budgeted call of 3 "
                  f"fresh agents, {args.gap_ms:g} ms between calls; busy loops: "
                  f"`python -c \"while True: pass\"` processes beside this one.", ""]
        lines += overrun_table(args.overrun_configs, args.overrun_budgets, args.overrun_threads,
                               args.loads, args.overrun_calls, args.gap_ms) + [""]
    if not args.skip_loops:
        lines += ["## Control loops in wall-clock time (trained model, config (a) planner)", ""]
        lines += loop_table(args.envs, args.rates, args.episodes, args.train_episodes,
                            args.horizons) + [""]
    lines.append(f"Load average at the end: {os.getloadavg()}")
    text = "\n".join(lines) + "\n"
    if args.out:
        pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
