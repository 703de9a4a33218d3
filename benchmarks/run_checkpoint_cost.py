"""What one MBPO checkpoint costs at 100k environment steps: bytes on disk and seconds to write.

    python benchmarks/run_checkpoint_cost.py [--env Humanoid-v5] [--steps 100000] [--repeats 3]

Builds the state a run of the env's MBPO defaults holds after ``--steps`` steps: the environment
buffer with that many rows, the model and the agent of the spec's sizes, and the model buffer's
refit sources (``fastmbrl.algorithms.mbpo.RefitSource``: a copy of the model and of the policy per
retained refit), then times ``fastmbrl._checkpoint.save_checkpoint`` (written, fsynced, pointer
replaced, the older checkpoint removed) and the read back, and prints the bytes per file. The
data are random: only the sizes matter. The share of a run's wall time is seconds per
checkpoint times checkpoints per run (one per evaluation) over the run's wall time, given with
``--run-hours``.
"""
import argparse
import os
import tempfile
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Humanoid-v5")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-hours", type=float, default=4.0,
                        help="wall time of the whole run, for the share (default 4 h)")
    args = parser.parse_args()

    from fastmbrl import config as cfg_mod
    from fastmbrl import envs
    from fastmbrl._checkpoint import load_checkpoint, save_checkpoint
    from fastmbrl.algorithms import mbpo, sac
    from fastmbrl.algorithms.pets import make_model
    from fastmbrl.buffer import ReplayBuffer

    spec = envs.get_spec(args.env)
    cfg = cfg_mod.from_dict(spec.defaults, base=cfg_mod.RunConfig(env=spec.id))
    env = envs.resolve(spec.id)
    rng = np.random.default_rng(0)
    n = args.steps
    buffer = ReplayBuffer(cfg.sac.buffer_capacity, env.obs_dim, env.act_dim,
                          dtype=np.float32, overflow="wrap")
    obs = rng.standard_normal((n, env.obs_dim)).astype(np.float32)
    buffer.add_batch(obs, rng.uniform(-0.4, 0.4, (n, env.act_dim)).astype(np.float32),
                     rng.standard_normal(n).astype(np.float32), obs, np.zeros(n, bool),
                     np.zeros(n, bool))
    model = make_model(env.obs_dim, env.act_dim, cfg, env.angle_dims, seed=0)
    model.fit(obs[:2000], buffer.act[:2000], obs[:2000] + 0.01, max_epochs=1, progress=False)
    agent = sac.make_agent(env, cfg, seed=0, hidden=cfg.mbpo.hidden)
    model_buffer = mbpo.ModelBuffer(cfg.mbpo.model_retain, env.obs_dim, env.act_dim, np.float32)
    for i in range(cfg.mbpo.model_retain):
        source = mbpo.RefitSource.snapshot(n, i + 1, 1, model, agent)
        model_buffer.sources.append(source)
    algo_state = {"model_buffer": model_buffer.state()}
    state = {"records": [], "loop": {}}

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as out:
        times, reads = [], []
        for episode in range(1, args.repeats + 1):
            t0 = time.perf_counter()
            ckpt = save_checkpoint(out, episode, buffer, model, state, agent=agent,
                                   algo_state=algo_state)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            load_checkpoint(out)
            reads.append(time.perf_counter() - t0)
        sizes = {name: os.path.getsize(os.path.join(ckpt, name)) for name in sorted(os.listdir(ckpt))}
    total = sum(sizes.values())
    per_run = -(-n // cfg.sac.eval_every)
    write = float(np.median(times))
    print(f"{spec.id} MBPO defaults at {n} steps: checkpoint {total / 2**20:.1f} MB "
          f"({', '.join(f'{k} {v / 2**20:.1f} MB' for k, v in sizes.items())})")
    print(f"write {write:.2f} s (median of {args.repeats}: {', '.join(f'{t:.2f}' for t in times)}), "
          f"read {float(np.median(reads)):.2f} s")
    print(f"{per_run} checkpoints per {n} steps (sac.eval_every {cfg.sac.eval_every}): "
          f"{per_run * write:.0f} s, {100 * per_run * write / (args.run_hours * 3600):.2f}% of a "
          f"{args.run_hours:g} h run (the last checkpoints are the largest: an upper bound)")


if __name__ == "__main__":
    main()
