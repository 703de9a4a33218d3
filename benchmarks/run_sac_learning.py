"""Pendulum-v1 learning curves: fastmbrl's SAC against Stable-Baselines3's, seeds run one after another.

fastmbrl runs its own small loop on gymnasium (random actions for ``learning_starts`` steps, then one
update per step, evaluation of the deterministic policy every ``eval_every`` steps over
``eval_episodes`` episodes on a separate environment). SB3 runs with rl-zoo's Pendulum-v1 settings
(hyperparams/sac.yml: learning_rate 1e-3, everything else SB3's defaults: buffer 1e6,
learning_starts 100, batch 256, tau 0.005, gamma 0.99, train_freq 1, ent_coef auto), evaluated the
same way through a callback. fastmbrl uses the same lr 1e-3 and learning_starts 100. Wall times exclude
evaluation. Run with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_sac_learning.py``.
"""
import argparse
import json
import os
import sys
import time

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fastmbrl.agents import SAC
from fastmbrl.buffer import ReplayBuffer


def evaluate(policy, seed, episodes):
    env = gym.make("Pendulum-v1")
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed * 100 + ep)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs))
            total += r
            done = term or trunc
        returns.append(total)
    return float(np.mean(returns))


def run_fastmbrl(seed, steps, eval_every, episodes, learning_starts=100, lr=1e-3):
    env = gym.make("Pendulum-v1")
    agent = SAC(3, 1, env.action_space, lr=lr, seed=seed)
    buf = ReplayBuffer(steps, 3, 1)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rows, wall = [], 0.0
    for t in range(1, steps + 1):
        start = time.perf_counter()
        if t <= learning_starts:
            a = rng.uniform(-2.0, 2.0, 1).astype(np.float32)
        else:
            a = agent.act(obs)
        nobs, r, term, trunc, _ = env.step(a)
        buf.add(obs, a, r, nobs, term, trunc)
        obs = nobs
        if term or trunc:
            obs, _ = env.reset()
        if t > learning_starts:
            agent.update_from(buf, 1)
        wall += time.perf_counter() - start
        if t % eval_every == 0:
            ret = evaluate(lambda o: agent.act(o, deterministic=True), seed, episodes)
            rows.append({"impl": "fastmbrl", "seed": seed, "steps": t, "ret": ret, "wall": wall})
            print(rows[-1], flush=True)
    return rows


def run_sb3(seed, steps, eval_every, episodes):
    import torch
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    rows = []

    class Eval(BaseCallback):
        def __init__(self):
            super().__init__()
            self.wall, self.last = 0.0, None

        def _on_training_start(self):
            self.last = time.perf_counter()

        def _on_step(self):
            if self.num_timesteps % eval_every == 0:
                self.wall += time.perf_counter() - self.last
                ret = evaluate(lambda o: self.model.predict(o, deterministic=True)[0], seed, episodes)
                rows.append({"impl": "sb3", "seed": seed, "steps": self.num_timesteps, "ret": ret,
                                 "wall": self.wall})
                print(rows[-1], flush=True)
                self.last = time.perf_counter()
            return True

    model = SB3SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_rate=1e-3, seed=seed, verbose=0,
                   device="cpu")
    model.learn(steps, callback=Eval())
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--impl", nargs="+", default=["fastmbrl", "sb3"])
    p.add_argument("--out", default="sac_learning.json")
    args = p.parse_args()
    from threadpoolctl import threadpool_info, threadpool_limits
    print("BLAS:", [(i["internal_api"], i.get("architecture"), i["num_threads"])
                    for i in threadpool_info()])
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for impl in args.impl:
            for seed in args.seeds:
                fn = run_fastmbrl if impl == "fastmbrl" else run_sb3
                rows += fn(seed, args.steps, args.eval_every, args.eval_episodes)
                with open(args.out, "w") as fh:
                    json.dump(rows, fh, indent=1)
    lines = ["| impl | seed | " + " | ".join(f"{s // 1000}k" for s in
                                            range(args.eval_every, args.steps + 1, args.eval_every))
             + " | wall s |", "|---|---|" + "---|" * (args.steps // args.eval_every) + "---|"]
    for impl in args.impl:
        for seed in args.seeds:
            rs = [r for r in rows if r["impl"] == impl and r["seed"] == seed]
            lines.append(f"| {impl} | {seed} | " + " | ".join(f"{r['ret']:.0f}" for r in rs)
                         + f" | {rs[-1]['wall']:.1f} |" if rs else "")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
