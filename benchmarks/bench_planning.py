"""PETS ``act()`` latency: CEM over the compiled ensemble rollout (three configurations, (a)-(c) below).

Configurations (float32, random weights: the work is that of a trained model of the same size):
  (a) small:     E=5, 2 x 64 SiLU, obs 3, act 1, population 100, horizon 10, 3 iterations,
                 10 elites, 5 particles, ts1 (Pendulum reward)
  (b) cartpole:  E=7 with 5 elites, 4 x 200 SiLU, obs 4, act 1, population 350, horizon 15,
                 5 iterations, 35 elites, 20 particles, ts1 (constant reward + cart-pole
                 termination)
  (c) cheetah:   E=5, 4 x 200 SiLU, obs 18, act 6, population 500, horizon 30, 5 iterations,
                 50 elites, 20 particles, ts1 (HalfCheetah reward)

Each runs ``PETS.act`` on 1 and 2 threads and, when PyTorch is importable, the same CEM with the
rollout written in PyTorch (per step: gather, baddbmm + SiLU per layer, soft log-variance bounds,
sampling, the reward in torch ops), in the same run. ``extra_info`` holds the median and p99 ms per
action, GFLOP/s (only the network's multiply-adds, 2 flops each), the fraction of the sgemm rate
of the same session at the same thread count (``_floor.py``) and the ratio to the 1-thread median
of the same configuration when that ran first in the run.

Run from the repository root:
    python -m pytest benchmarks/bench_planning.py --benchmark-only
    python -m pytest benchmarks/bench_planning.py --benchmark-only -k small     # quick
"""
import os
import sys

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.envs import reward_fns, termination_fns
from fastmbrl.models.arrays import ModelArrays
from fastmbrl.nn._flat import param_offsets

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

CONFIGS = {
    "a_small": dict(E=5, elites=5, hidden=(64, 64), d_obs=3, d_act=1, population=100, horizon=10,
                    iterations=3, n_elites=10, particles=5, reward="pendulum", term=None,
                    rounds=60),
    "b_cartpole": dict(E=7, elites=5, hidden=(200,) * 4, d_obs=4, d_act=1, population=350,
                       horizon=15, iterations=5, n_elites=35, particles=20, reward="constant_one",
                       term="cartpole", rounds=4),
    "c_cheetah": dict(E=5, elites=5, hidden=(200,) * 4, d_obs=18, d_act=6, population=500,
                      horizon=30, iterations=5, n_elites=50, particles=20, reward="half_cheetah",
                      term=None, rounds=2),
}
MEDIANS = {}   # (config, impl, n_threads) -> median seconds within this run


def make_arrays(cfg, seed=0):
    """Random-weight ModelArrays of the configuration's size (normalisers near identity)."""
    rng = np.random.default_rng(seed)
    d_in = cfg["d_obs"] + cfg["d_act"]
    dims = np.array([d_in, *cfg["hidden"], 2 * cfg["d_obs"]], dtype=np.int64)
    n_params = param_offsets(dims, cfg["E"])[-1]
    flat = np.empty(n_params, dtype=np.float32)
    # per-layer fan-in scaling keeps activations O(1) through the depth, like a trained net
    offset = 0
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        w = rng.standard_normal(cfg["E"] * fan_in * fan_out) / np.sqrt(fan_in)
        flat[offset:offset + w.size] = w
        offset += w.size
        flat[offset:offset + cfg["E"] * fan_out] = 0.01 * rng.standard_normal(cfg["E"] * fan_out)
        offset += cfg["E"] * fan_out
    d_out = cfg["d_obs"]
    f32 = np.float32
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=cfg["E"], activation=3,
        members=np.sort(rng.choice(cfg["E"], cfg["elites"], replace=False)).astype(np.int64),
        angle_mask=np.zeros(cfg["d_obs"], bool), delta_mask=np.ones(cfg["d_obs"], bool),
        in_mean=np.zeros(d_in, f32), in_std=np.ones(d_in, f32),
        out_mean=np.zeros(d_out, f32), out_std=np.full(d_out, 0.1, f32),
        max_logvar=np.full(d_out, 0.5, f32), min_logvar=np.full(d_out, -10.0, f32),
        has_reward=False)


def act_flops(cfg):
    """FLOPs of one act(): iterations x horizon forward passes of population x particles rows
    (ts1: one member per row), 2 per network multiply-add."""
    dims = (cfg["d_obs"] + cfg["d_act"],) + cfg["hidden"] + (2 * cfg["d_obs"],)
    rows = cfg["population"] * cfg["particles"]
    return cfg["iterations"] * cfg["horizon"] * _floor.forward_flops(dims, rows)


def make_planner(cfg, seed=0):
    return fm.planning.CEM(horizon=cfg["horizon"], population=cfg["population"],
                           elite_frac=cfg["n_elites"] / cfg["population"],
                           iterations=cfg["iterations"], alpha=0.1, seed=seed)


def bounds(cfg):
    return -np.ones(cfg["d_act"]), np.ones(cfg["d_act"])


def record(benchmark, name, impl, n_threads, cfg, result_ok):
    _floor.record(benchmark, act_flops(cfg), n_threads)
    if benchmark.disabled:
        return
    times = np.asarray(benchmark.stats.stats.data)
    med = float(np.median(times))
    MEDIANS[(name, impl, n_threads)] = med
    info = benchmark.extra_info
    info["median_ms"] = round(med * 1e3, 3)
    info["p99_ms"] = round(float(np.percentile(times, 99)) * 1e3, 3)
    info["gflops"] = round(act_flops(cfg) / med / 1e9, 2)
    ref = MEDIANS.get((name, "fastmbrl", 1))
    if ref is not None:
        info["speedup_vs_fastmbrl_1thread"] = round(ref / med, 3)
    info["plan_ok"] = bool(result_ok)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pets_act(benchmark, name, n_threads):
    cfg = CONFIGS[name]
    benchmark.group = f"pets-act-{name}"
    arrays = make_arrays(cfg)
    term = getattr(termination_fns, cfg["term"]) if cfg["term"] else None
    agent = fm.agents.PETS(arrays, getattr(reward_fns, cfg["reward"]), bounds(cfg),
                           planner=make_planner(cfg), particles=cfg["particles"],
                           propagation="ts1", termination_fn=term, n_threads=n_threads, seed=0)
    obs = np.random.default_rng(1).standard_normal(cfg["d_obs"]) * 0.1
    action = benchmark.pedantic(agent.act, args=(obs,), rounds=cfg["rounds"], warmup_rounds=1,
                                iterations=1)
    ok = action.shape == (cfg["d_act"],) and np.all(np.abs(action) <= 1)
    assert ok
    record(benchmark, name, "fastmbrl", n_threads, cfg, ok)
    agent.close()


# ---------------------------------------------------------------- the same rollout in PyTorch
def torch_objective(torch, arrays, cfg, obs, generator):
    """CEM objective with the rollout in PyTorch (ts1, the same maths as the compiled kernel)."""
    dims = [int(d) for d in arrays.layer_dims]
    flat = torch.from_numpy(arrays.flat)
    params, off = [], 0
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        w = flat[off:off + cfg["E"] * fan_in * fan_out].view(cfg["E"], fan_in, fan_out)
        off += cfg["E"] * fan_in * fan_out
        b = flat[off:off + cfg["E"] * fan_out].view(cfg["E"], 1, fan_out)
        off += cfg["E"] * fan_out
        params.append((w[arrays.members], b[arrays.members]))
    n_used = len(arrays.members)
    d_obs = cfg["d_obs"]
    max_lv = torch.from_numpy(arrays.max_logvar)
    min_lv = torch.from_numpy(arrays.min_logvar)
    out_std = torch.from_numpy(arrays.out_std)
    obs0 = torch.from_numpy(obs.astype(np.float32))
    reward = cfg["reward"]

    def reward_fn(o, a, n):
        if reward == "half_cheetah":
            return n[:, 0] / 0.05 - 0.1 * (a * a).sum(1)
        if reward == "pendulum":
            th = torch.atan2(o[:, 1], o[:, 0])
            return -(th * th + 0.1 * o[:, 2] ** 2 + 0.001 * a[:, 0].clamp(-2, 2) ** 2)
        return torch.ones(o.shape[0])

    def objective(actions):
        with torch.no_grad():
            acts = torch.from_numpy(actions.astype(np.float32))
            n_cand, horizon, _ = acts.shape
            n_rows = n_cand * cfg["particles"]
            state = obs0.expand(n_rows, d_obs).clone()
            total = torch.zeros(n_rows)
            alive = torch.ones(n_rows)
            for t in range(horizon):
                a = acts[:, t].repeat_interleave(cfg["particles"], 0)
                perm = torch.randperm(n_rows, generator=generator)
                x = torch.cat([state, a], 1)[perm].view(n_used, n_rows // n_used, -1)
                for layer, (w, b) in enumerate(params):
                    x = torch.baddbmm(b, x, w)
                    if layer < len(params) - 1:
                        x = torch.nn.functional.silu(x)
                x = x.reshape(n_rows, -1)
                mean, raw = x[:, :d_obs], x[:, d_obs:]
                lv = max_lv - torch.nn.functional.softplus(max_lv - raw)
                lv = min_lv + torch.nn.functional.softplus(lv - min_lv)
                eps = torch.randn(n_rows, d_obs, generator=generator)
                delta = out_std * (mean + torch.exp(0.5 * lv) * eps)
                nxt = torch.empty_like(state)
                nxt[perm] = state[perm] + delta
                r = reward_fn(state, a, nxt)
                total += alive * r
                if cfg["term"] == "cartpole":
                    done = (nxt[:, 0].abs() > 2.4) | (nxt[:, 2].abs() > 0.20943951023931953)
                    alive = alive * (~done).float()
                state = nxt
            return total.view(n_cand, -1).mean(1).numpy().astype(np.float64)

    return objective


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pets_act_torch(benchmark, name, n_threads):
    torch = pytest.importorskip("torch")
    cfg = CONFIGS[name]
    benchmark.group = f"pets-act-{name}"
    if cfg["E"] != cfg["elites"] and (cfg["population"] * cfg["particles"]) % cfg["elites"]:
        pytest.skip("rows must split evenly among members for the batched PyTorch rollout")
    arrays = make_arrays(cfg)
    obs = np.random.default_rng(1).standard_normal(cfg["d_obs"]) * 0.1
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        gen = torch.Generator().manual_seed(0)
        objective = torch_objective(torch, arrays, cfg, obs, gen)
        planner = make_planner(cfg)
        lo, hi = bounds(cfg)
        plan = benchmark.pedantic(planner.optimize, args=(objective, lo, hi),
                                  rounds=max(1, cfg["rounds"] // 2), warmup_rounds=1,
                                  iterations=1)
    finally:
        torch.set_num_threads(old_threads)
    ok = plan.shape == (cfg["horizon"], cfg["d_act"])
    assert ok
    record(benchmark, name, "torch", n_threads, cfg, ok)
