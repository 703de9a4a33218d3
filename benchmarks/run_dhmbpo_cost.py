"""Cost split of DHMBPO per 1000 environment steps, each part against the hardware floor measured in
the same run.

Parts, at the env's dhmbpo defaults (``fastmbrl envs``; Hopper-v5: 8 x (256, 256, 256) model,
refit every 250 steps bounded to 200 minibatch steps, a distribution rollout of 256 x 20 every 20
updates, one update per step with a training rollout of 5 steps, a 5-member 3 x 256 critic
ensemble, a 3 x 256 actor, batch 256):

- model fit: one refit (``GaussianEnsemble.fit``, ``model_fit_steps`` minibatch steps) x refits
  per 1000 steps;
- distribution rollouts: one ``ModelEnv.rollout`` x rollouts per 1000 steps;
- one update, timed in its three phases (the calls of ``double_horizon_update``, in its order):
  the training rollout (actor samples and taped model steps), the critic (target, loss, gradient,
  Adam), the actor (the ensemble's input gradient, backpropagation through the rollout, Adam,
  temperature); x 1000.

Floor: the dense products of each part (multiply-adds of its matrix products, x 2 flops; the
model fit's count is ``_floor.fit_flops``, holdout scoring included) divided by the float32 GEMM
rate of the BLAS the kernels call (scipy's OpenBLAS), measured in this run on (256 x 256) @
(256 x 256) products on one thread (``_floor.sgemm_rate``), times the kernels' thread count (the
kernels split their work over Numba threads, each calling a one-thread BLAS). The fraction
printed is floor time / measured time: 100% would be a part running at GEMM speed on every
thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_dhmbpo_cost.py --env Hopper-v5

Run it on quiet cores (pause any training run: ``kill -STOP``).
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _macs(dims, rows):
    """Multiply-adds of one forward pass of an MLP of widths ``dims`` over ``rows`` rows."""
    return rows * _floor.mlp_macs(dims)


def setup(env, threads, rows):
    """What one DHMBPO update of ``env``'s suite defaults needs, untrained: ``(spec, cfg, made,
    agent, critic, model, obs, act, next_obs)`` with ``rows`` transitions of random actions (the
    cost does not depend on what the model learned; ``bench_dhmbpo.py`` uses it too)."""
    import fastmbrl as fm
    from fastmbrl.algorithms.dhmbpo import _model_config, make_agent, make_critic
    from fastmbrl.algorithms.pets import make_model
    from fastmbrl.config import RunConfig, from_dict
    from fastmbrl.envs import get_spec

    spec = get_spec(env)
    cfg = from_dict({**spec.defaults, "sac": {**spec.defaults.get("sac", {}),
                                              "n_threads": threads}},
                    base=RunConfig(env=env))
    cfg = _model_config(cfg)
    made = fm.envs.make(env)
    O, A = made.obs_dim, made.act_dim
    agent = make_agent(made, cfg, 0)
    critic = make_critic(made, cfg, 1)
    model = make_model(O, A, cfg, made.angle_dims, 2)
    rng = np.random.default_rng(0)
    obs = np.empty((rows, O), np.float32)
    act = rng.uniform(-1, 1, (rows, A)).astype(np.float32)
    nxt = np.empty_like(obs)
    o, _ = made.env.reset(seed=0)
    for i in range(rows):
        obs[i] = o
        o2, _, term, trunc, _ = made.env.step(act[i])
        nxt[i] = o2
        o = made.env.reset()[0] if (term or trunc) else o2
    return spec, cfg, made, agent, critic, model, obs, act, nxt


def update_flops(agent, critic, model, h):
    """Matrix-product flops of one update's three phases (dict; ``double_horizon_update``'s
    calls, batch ``agent.batch_size``, training rollout of ``h`` steps)."""
    B, K = agent.batch_size, critic.members
    Fc = _macs(critic.dims, B)                  # one member's forward
    Fa = _macs(agent.dims_actor, B)
    Fm = _macs([model.in_dim] + list(model.hidden) + [2 * model.out_dim], B)   # one member per row
    return {
        # actor forward + model step per rollout step, actor forward at s_h
        "training rollout": 2 * (h * (Fa + Fm) + Fa),
        # target forward (the target_members its minimum reads), loss forward + weight and input
        # gradients (3 K), Adam
        "critic": 2 * (critic.target_members * Fc + 3 * K * Fc),
        # ensemble forward + input gradient (2 K), model VJPs (2 Fm per step: input gradient via
        # recomputed hidden layers), actor VJPs (forward again + backward: 3 Fa per step + at s_h)
        "actor": 2 * (2 * K * Fc + h * 2 * Fm + (h + 1) * 3 * Fa),
    }


def main():
    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS before threadpoolctl)

    from fastmbrl.agents import double_horizon as dh
    from fastmbrl.agents._mb_grads import _model_arrays, draw_noise
    from fastmbrl.models import ModelEnv

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--updates", type=int, default=30, help="timed updates (median)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args()

    rows = 20000
    spec, cfg, made, agent, critic, model, obs, act, nxt = setup(args.env, args.threads, rows)
    d, m = cfg.dhmbpo, cfg.model
    rng = np.random.default_rng(0)
    menv = ModelEnv(model, reward_fn=spec.reward_fn, termination_fn=spec.termination_fn)

    print(f"{args.env}: cpu {_cpu()}, {args.threads} kernel threads, model "
          f"{m.ensemble_size} x {tuple(m.hidden)}, critic {d.critic_members} x "
          f"{tuple(d.critic_hidden)}, actor {tuple(d.hidden)}, batch {agent.batch_size}, "
          f"h {d.horizon}")
    rate1 = _floor.sgemm_rate(1)
    rate_t = args.threads * rate1
    print(f"sgemm (256 x 256) @ (256 x 256): {rate1 / 1e9:.1f} GFLOP/s on 1 thread; floor "
          f"{rate_t / 1e9:.1f} GFLOP/s on {args.threads}")

    # ---- model fit
    t0 = time.perf_counter()
    model.fit(obs, act, nxt, None, max_epochs=m.max_epochs, max_steps=d.model_fit_steps or None,
              batch_size=m.batch_size, progress=False)           # compile / warm up
    t0 = time.perf_counter()
    hist = model.fit(obs, act, nxt, None, max_epochs=m.max_epochs,
                     max_steps=d.model_fit_steps or None, batch_size=m.batch_size, progress=False)
    fit_s = time.perf_counter() - t0
    model_dims = [model.in_dim] + list(model.hidden) + [2 * model.out_dim]
    fit_flops = _floor.history_fit_flops(model, hist, m.batch_size, d.model_fit_steps or None)

    # ---- distribution rollout
    starts = obs[rng.integers(0, rows, d.rollout_starts)]
    with agent.kernel_context():
        menv.rollout(agent, starts, d.rollout_length, np.random.default_rng(1))
        t0 = time.perf_counter()
        batch = menv.rollout(agent, starts, d.rollout_length, np.random.default_rng(2))
        roll_s = time.perf_counter() - t0
    live = int(batch.counts.sum())
    actor_dims = agent.dims_actor
    roll_flops = 2 * live * (_macs(model_dims, 1) + _macs(actor_dims, 1))

    # ---- updates, phase by phase (double_horizon_update's calls)
    B, h = agent.batch_size, d.horizon
    states = batch.obs[rng.integers(0, live, B)].astype(np.float32)
    phases = {"training rollout": [], "critic": [], "actor": []}

    def one_update(record):
        noise = draw_noise(agent, _model_arrays(menv), B, h + 1, h, menv.out_dim)
        alpha = agent.temperature
        t0 = time.perf_counter()
        rec = dh.taped_rollout(agent, menv, states, h, noise, alpha)
        t1 = time.perf_counter()
        soft = np.concatenate([r - alpha * lp for r, lp in zip(rec.rewards, rec.logps)])
        critic.update_bounds(soft, agent.gamma)
        c_h = rec.c_h.astype(np.float64)
        q_end = critic.target_min(rec.s_h, rec.a_h)
        y = rec.total + alpha * rec.logps[0] + c_h * (q_end - alpha * rec.logp_h)
        gc = np.empty_like(critic.params)
        critic.loss_grad(states, rec.actions[0], y, gc)
        critic.step(gc)
        t2 = time.perf_counter()
        _, d_s, d_a = critic.mean_vjp(rec.s_h, rec.a_h, -c_h / B)
        ga = np.empty_like(agent.actor)
        dh.rollout_backward(agent, rec, d_s.astype(agent.dtype), d_a.astype(agent.dtype), alpha,
                            ga)
        t3 = time.perf_counter()
        if record:
            phases["training rollout"].append(t1 - t0)
            phases["critic"].append(t2 - t1)
            phases["actor"].append(t3 - t2)

    with agent.kernel_context():
        for _ in range(3):
            one_update(False)
        for _ in range(args.updates):
            one_update(True)
        t0 = time.perf_counter()
        for _ in range(args.updates):
            dh.double_horizon_update(agent, critic, menv, states, h)
        whole = (time.perf_counter() - t0) / args.updates

    flops = update_flops(agent, critic, model, h)
    per_k = 1000.0
    refits = per_k / d.model_train_every
    rounds = per_k / d.rollout_every
    rows_out = [("model fit", fit_s * refits, fit_flops * refits),
                ("distribution rollouts", roll_s * rounds, roll_flops * rounds)]
    for name in phases:
        rows_out.append((f"update: {name}", np.median(phases[name]) * per_k * d.updates_per_step,
                         flops[name] * per_k * d.updates_per_step))
    total = sum(r[1] for r in rows_out)
    print(f"\n{'part (per 1000 env steps)':34s} {'seconds':>8s} {'share':>6s} {'GFLOP':>8s} "
          f"{'GFLOP/s':>8s} {'of sgemm':>8s}")
    for name, secs, fl in rows_out:
        print(f"{name:34s} {secs:8.2f} {secs / total:6.1%} {fl / 1e9:8.1f} {fl / secs / 1e9:8.1f} "
              f"{fl / secs / rate_t:8.1%}")
    print(f"{'total':34s} {total:8.2f}")
    print(f"\none whole update (double_horizon_update): {1e3 * whole:.1f} ms, mean of "
          f"{args.updates}; phases (medians) sum to {1e3 * sum(np.median(v) for v in phases.values()):.1f} ms")
    print(f"projected wall per 100k env steps (parts only, no env/eval): {total * 100 / 3600:.2f} h")


if __name__ == "__main__":
    main()
