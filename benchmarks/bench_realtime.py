"""Real-time control: ``act(obs, time_budget=b)`` latency and control loops run in wall-clock time.

Three parts (``run_realtime_table.py`` writes them as markdown tables):

1. Budget latency (pytest-benchmark, ``test_budget_latency``): bench_planning's configurations
   with random weights, ``act(obs, time_budget=b)`` timed call by call (p50/p99/max) with the
   deadline checked between rollout chunks (this code), against, in the same run, the previous
   behaviour (the budget only checked between optimizer iterations: the objective is handed to
   the planner as a plain callable) and a machine-noise probe (a fixed ~1 ms of BLAS work timed
   the same way: its p99/p50 says how much the shared machine alone stretches a millisecond).
2. Control loops (``control_loop``): an environment stepped on a wall-clock grid (50 Hz, 200 Hz)
   by a PETS agent with a trained model (``train_model``: ``fm.run`` for a few episodes on the
   spec's defaults with bench_planning config (a)'s network, 2 x 64), in three modes:
   "unhurried" (``act(obs)`` with no clock, the return reference), "sync" (``act(obs,
   time_budget=0.7 * period)`` inside the loop), "async" (``AsyncController.step``, plans in a
   background thread with ``time_budget=period``) and "null" (the same loop returning a zero
   action: the timing floor of the loop itself on this machine). Reported: the loop period's p50/p99/max, the
   fraction of periods within 1 ms of the nominal period, the fraction of deadlines met (the
   step's work done within its period) and the return.
3. Overrun (``overrun``): ``act(obs, time_budget=b)`` wall time minus ``b`` (the overrun, in ms;
   the target is p99 <= 1 ms on a quiet machine, <= 2 ms with every core kept busy by another
   process) for bench_planning's small and cartpole-size configurations, 1 and 2 threads, quiet or
   under ``busy_load`` (busy-loop processes, one per core); the first budgeted call of a fresh
   agent (its cost estimates not calibrated yet) is reported apart from the steady calls, and
   ``spin_floor`` (a call that spins until its deadline) gives what the operating system alone
   makes late in the same conditions.

Run from the repository root (see docs/performance.md on the OpenBLAS variables):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_realtime.py \
        --benchmark-only
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_realtime_table.py
"""
import contextlib
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.envs import reward_fns, termination_fns

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_planning import CONFIGS, bounds, make_arrays, make_planner  # noqa: E402

SMALL = CONFIGS["a_small"]


def blas_info():
    """The BLAS libraries and kernels loaded (threadpoolctl), as a short string."""
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls)
    from threadpoolctl import threadpool_info
    return "; ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')} "
                     f"x{i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas")


def noise_probe(n=200, reps=50):
    """Seconds per call of a fixed ~1 ms of single-threaded BLAS work, ``n`` times."""
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).random((200, 200), dtype=np.float32)
    x = np.random.default_rng(1).random((20, 200), dtype=np.float32)
    out = []
    with threadpool_limits(1):
        for _ in range(n):
            t0 = time.perf_counter()
            for _ in range(reps):
                x @ a
            out.append(time.perf_counter() - t0)
    return np.asarray(out)


def budget_agent(name, iteration_granular=False, n_threads=1, seed=0):
    """PETS on bench_planning config ``name`` (random weights); optionally the old budget rule."""
    cfg = CONFIGS[name]
    term = getattr(termination_fns, cfg["term"]) if cfg["term"] else None
    agent = fm.agents.PETS(make_arrays(cfg), getattr(reward_fns, cfg["reward"]), bounds(cfg),
                           planner=make_planner(cfg, seed), particles=cfg["particles"],
                           propagation="ts1", termination_fn=term, n_threads=n_threads,
                           seed=seed)
    if iteration_granular:
        bind = agent.rollout.objective

        def plain(arrays, obs):
            f = bind(arrays, obs)
            return lambda samples: f(samples)     # no evaluate_until: cut between iterations
        agent.rollout.objective = plain
    return agent, cfg


def budget_latency(name, budget, calls=200, iteration_granular=False, n_threads=1):
    """Per-call wall seconds of ``act(obs, time_budget=budget)``, candidates scored, whether the
    budget cut the call, and the calling thread's CPU seconds (``time.thread_time``: on a loaded
    machine the wall time minus this is time the thread was descheduled)."""
    agent, cfg = budget_agent(name, iteration_granular, n_threads)
    obs = np.random.default_rng(1).standard_normal(cfg["d_obs"]) * 0.1
    agent.act(obs)                                  # compile / load the kernels
    agent.act(obs, time_budget=budget)
    times, cpu, scored, cut = [], [], [], []
    for _ in range(calls):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        agent.act(obs, time_budget=budget)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        info = agent.last_plan_info
        scored.append(info["n_evaluated"])
        cut.append(info["budget_cut"])
    agent.close()
    return np.asarray(times), np.asarray(scored), np.asarray(cut), np.asarray(cpu)


def summary_ms(times):
    t = np.asarray(times) * 1e3
    return {"p50_ms": round(float(np.median(t)), 3),
            "p99_ms": round(float(np.percentile(t, 99)), 3), "max_ms": round(float(t.max()), 3)}


# ------------------------------------------------------------------ overrun of the budget
@contextlib.contextmanager
def busy_load(n_procs):
    """Context running ``n_procs`` busy-loop processes (``python -c "while True: pass"``, same
    niceness as this one), killed (by their own ids) and reaped at exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(n_procs)]
    try:
        time.sleep(0.3)                       # let them start spinning
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _busy_ticks():
    """Clock ticks the machine's CPUs spent busy (``/proc/stat``, steal time included)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]            # minus idle and iowait


def _process_ticks(pid):
    """User plus system clock ticks of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class OtherLoad:
    """Context measuring the CPU used by other processes than this one and ``pids`` while it is
    open: ``cores`` (average cores busy with them; None where ``/proc`` is missing)."""

    def __init__(self, pids=()):
        self.pids = [os.getpid(), *pids]
        self.cores = None

    def _sample(self):
        return time.perf_counter(), _busy_ticks(), sum(_process_ticks(p) for p in self.pids)

    def __enter__(self):
        try:
            self._start = self._sample()
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            t1, busy1, own1 = self._sample()
            t0, busy0, own0 = self._start
            ticks = (busy1 - busy0) - (own1 - own0)
            self.cores = max(0.0, ticks / os.sysconf("SC_CLK_TCK") / (t1 - t0))
        return False


def spin_floor(budget, calls=300, gap=0.0):
    """Overruns (seconds) of a call that only spins until its deadline (``time.perf_counter``
    read in a loop), called like ``overrun`` calls ``act``: the lateness the operating system
    alone causes (a stall at the deadline), which no budgeted call can beat."""
    out = []
    for _ in range(calls):
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        end = t0 + budget
        while time.perf_counter() < end:
            pass
        out.append(time.perf_counter() - t0 - budget)
    return np.asarray(out)


def overrun(name, budget, calls=300, n_threads=1, first_calls=3, gap=0.0, seed=0):
    """Overruns (seconds, ``act`` wall time minus ``budget``) of budgeted ``act`` calls.

    Parameters
    ----------
    name : str
        A bench_planning configuration (random weights).
    budget : float
        Seconds per call.
    calls : int
        Steady calls timed (after the fresh agents' first calls).
    n_threads : {1, 2}
    first_calls : int
        Fresh agents whose first call is budgeted (kernels loaded, nothing calibrated).
    gap : float
        Seconds slept between calls (0: back to back, the worst case for the scheduler).

    Returns
    -------
    dict of arrays: ``steady`` (calls,) and ``first`` (first_calls,) overruns in seconds,
    ``scored`` (candidates scored), ``fallback`` (bool), ``cut`` (the budget cut the call), and
    ``infos``, the steady calls' ``last_plan_info``.
    """
    cfg = CONFIGS[name]
    obs = np.random.default_rng(1).standard_normal(cfg["d_obs"]) * 0.1
    warm, _ = budget_agent(name, n_threads=n_threads, seed=seed)
    warm.act(obs)                                     # kernels compiled / loaded in this process
    warm.close()
    first = []
    for i in range(first_calls):
        agent, _ = budget_agent(name, n_threads=n_threads, seed=seed + 1 + i)
        t0 = time.perf_counter()
        agent.act(obs, time_budget=budget)
        first.append(time.perf_counter() - t0 - budget)
        if i < first_calls - 1:
            agent.close()
    steady, infos = [], []
    for _ in range(calls):
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        agent.act(obs, time_budget=budget)
        steady.append(time.perf_counter() - t0 - budget)
        infos.append(dict(agent.last_plan_info))
    agent.close()
    return {"steady": np.asarray(steady), "first": np.asarray(first), "infos": infos,
            "scored": np.asarray([i["n_evaluated"] or 0 for i in infos]),
            "fallback": np.asarray([i["fallback"] is not None for i in infos]),
            "cut": np.asarray([bool(i["budget_cut"]) for i in infos])}


# ------------------------------------------------------------------ control loops
def train_model(env_id, episodes=5, seed=0):
    """A model trained by ``fm.run`` (spec defaults, config (a)'s 2 x 64 network)."""
    result = fm.run(env_id, episodes=episodes, seed=seed,
                    config={"model": {"hidden": [64, 64]}})
    return result.model, result


def small_agent(model, made, seed=0, horizon=None):
    """PETS with bench_planning config (a)'s planner on a trained model (``made``: fm.envs.make).

    ``horizon`` replaces config (a)'s 10 steps (too short to swing Pendulum-v1 up).
    """
    cfg = SMALL
    planner = fm.planning.CEM(horizon=horizon or cfg["horizon"], population=cfg["population"],
                              elite_frac=cfg["n_elites"] / cfg["population"],
                              iterations=cfg["iterations"], alpha=0.1, seed=seed)
    term = made.spec.planning_termination_fn or made.termination_fn
    return fm.agents.PETS(model, made.reward_fn, made.env.action_space, planner=planner,
                          particles=cfg["particles"], termination_fn=term, n_threads=1,
                          seed=seed)


def _wait_until(t, spin=7e-4):
    """Sleep until ``spin`` seconds before ``t``, then spin (sleep alone overshoots ~0.1 ms)."""
    dt = t - time.perf_counter() - spin
    if dt > 0:
        time.sleep(dt)
    while time.perf_counter() < t:
        pass


def control_loop(made, agent, mode, period, seed, max_steps=None):
    """One episode stepped every ``period`` seconds of wall-clock time.

    Returns a dict: return, steps, the loop's periods (s), the per-step work (s) and, for
    "async", the controller's statistics. The grid slips (no catch-up burst) when a step's work
    overruns its period.
    """
    env = made.env
    obs, _ = env.reset(seed=seed)
    agent.reset()
    steps = max_steps or made.spec.max_episode_steps
    ctrl = None
    if mode == "async":
        ctrl = fm.control.AsyncController(agent, control_period=period, time_budget=period)
        act = ctrl.step
    elif mode == "null":                      # the loop alone: the machine's timing floor
        zero = np.zeros(made.env.action_space.shape, dtype=made.env.action_space.dtype)
        act = (lambda o: zero)
    elif mode == "sync":
        budget = 0.7 * period
        act = (lambda o: agent.act(o, time_budget=budget))
    else:
        act = agent.act
    starts, work, ret = [], [], 0.0
    t_next = time.perf_counter()
    try:
        for k in range(steps):
            if mode != "unhurried":
                _wait_until(t_next)
            t0 = time.perf_counter()
            starts.append(t0)
            a = act(obs)
            obs, r, term, trunc, _ = env.step(a)
            ret += float(r)
            work.append(time.perf_counter() - t0)
            t_next = max(t_next + period, time.perf_counter())
            if term or trunc:
                break
        stats = ctrl.stats if ctrl is not None else None
    finally:
        if ctrl is not None:
            ctrl.close()
    return {"return": ret, "steps": len(starts), "periods": np.diff(starts),
            "work": np.asarray(work), "stats": stats}


def loop_summary(runs, period):
    periods = np.concatenate([r["periods"] for r in runs])
    work = np.concatenate([r["work"] for r in runs])
    out = {"return_mean": float(np.mean([r["return"] for r in runs])),
           "returns": [round(r["return"], 1) for r in runs]}
    if periods.size:
        p = periods * 1e3
        out.update(period_p50_ms=float(np.median(p)), period_p99_ms=float(np.percentile(p, 99)),
                   period_max_ms=float(p.max()),
                   within_1ms=float(np.mean(np.abs(periods - period) <= 1e-3)),
                   deadlines_met=float(np.mean(work <= period)))
    stats = [r["stats"] for r in runs if r["stats"]]
    if stats:
        out["plan_age_steps_p99"] = max(s["plan_age_steps_p99"] or 0 for s in stats)
        out["replans_per_s"] = float(np.mean([s["replans_per_second"] for s in stats]))
        out["missed"] = int(sum(s["missed"] for s in stats))
        out["stale"] = int(sum(s["stale"] for s in stats))
    return out


# ------------------------------------------------------------------ pytest-benchmark entry
@pytest.mark.parametrize("granular", [False, True], ids=["chunk-deadline", "iteration-only"])
@pytest.mark.parametrize("name,budget", [("b_cartpole", 0.005), ("a_small", 0.002)])
def test_budget_latency(benchmark, name, budget, granular):
    benchmark.group = f"budget-{name}-{budget}"
    agent, cfg = budget_agent(name, granular)
    obs = np.random.default_rng(1).standard_normal(cfg["d_obs"]) * 0.1
    agent.act(obs)
    rounds = 100 if not granular or name == "a_small" else 5
    benchmark.pedantic(agent.act, args=(obs,), kwargs={"time_budget": budget}, rounds=rounds,
                       warmup_rounds=1, iterations=1)
    times = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info.update(summary_ms(times))
    benchmark.extra_info["blas"] = blas_info()
    probe = noise_probe(100)
    benchmark.extra_info["noise_probe_p99_over_p50"] = round(
        float(np.percentile(probe, 99) / np.median(probe)), 2)
    assert agent.last_plan_info is not None
    agent.close()
