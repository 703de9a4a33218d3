"""Reacher-v5 planned with fastmbrl's CEM on the exact MuJoCo dynamics instead of a learned model.

It separates the planner from the model: if CEM at the spec's settings reaches a target with the
true dynamics, an episode that PETS fails on that target is the model's fault (see the Reacher
spec's comment in ``fastmbrl/envs/specs.py``). The episodes are those of ``fm.run("Reacher-v5",
seed=S)`` (same environment seeds). The objective is PETS' on Reacher: minus the sum over the
horizon of the fingertip-target distance after each step and of ``|a|^2``; candidates are rolled
out by ``mujoco.rollout`` on one thread.

    python benchmarks/reacher_exact_dynamics.py --seed 2 --episodes 6 7 8 9 10
"""
import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np
from mujoco import rollout

from fastmbrl.algorithms._common import STREAM_ENV, derive_seed
from fastmbrl.planning.optimizers import CEM

LINKS = (0.1, 0.11)     # Reacher-v5's upper arm and forearm-to-fingertip lengths


def exact_objective(model, datas, state0, target, frame_skip):
    """CEM objective: returns of candidate action sequences (P, H, 2) from ``state0``."""
    def objective(samples):
        ctrl = np.repeat(samples, frame_skip, axis=1)          # the env repeats each action
        states, _ = rollout.rollout(model, datas, state0[None], ctrl)
        q = states[:, frame_skip - 1::frame_skip, 1:3]        # arm angles after each env step
        fx = LINKS[0] * np.cos(q[..., 0]) + LINKS[1] * np.cos(q[..., 0] + q[..., 1])
        fy = LINKS[0] * np.sin(q[..., 0]) + LINKS[1] * np.sin(q[..., 0] + q[..., 1])
        dist = np.hypot(fx - target[0], fy - target[1])
        return -(dist.sum(axis=1) + np.square(samples).sum(axis=(1, 2)))
    return objective


def run_episode(env, env_seed, horizon, population, iterations, planner_seed):
    env_u = env.unwrapped
    model, data = env_u.model, env_u.data
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.empty(mujoco.mj_stateSize(model, spec))
    datas = [mujoco.MjData(model)]
    env.reset(seed=env_seed)
    cem = CEM(horizon=horizon, population=population, iterations=iterations, seed=planner_seed)
    lo, hi = env.action_space.low, env.action_space.high
    plan, ret, target = None, 0.0, data.qpos[2:4].copy()
    for _ in range(env.spec.max_episode_steps):
        mujoco.mj_getState(model, data, state0, spec)
        init = None if plan is None else np.vstack([plan[1:], np.zeros_like(plan[:1])])
        plan = cem.optimize(exact_objective(model, datas, state0, target, env_u.frame_skip),
                            lo, hi, init_mean=init)
        _, reward, _, _, _ = env.step(plan[0].astype(np.float32))
        ret += reward
    return target, ret


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="the fm.run seed whose episodes to replay")
    p.add_argument("--episodes", type=int, nargs="+", default=list(range(1, 11)))
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--population", type=int, default=200)
    p.add_argument("--iterations", type=int, default=5)
    args = p.parse_args(argv)
    env = gym.make("Reacher-v5")
    returns = []
    for ep in args.episodes:
        t0 = time.perf_counter()
        target, ret = run_episode(env, derive_seed(args.seed, STREAM_ENV, ep), args.horizon,
                                  args.population, args.iterations, planner_seed=ep)
        returns.append(ret)
        print(f"episode {ep}: target ({target[0]:+.3f}, {target[1]:+.3f}) return {ret:.2f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"mean {np.mean(returns):.2f} over episodes {args.episodes}")


if __name__ == "__main__":
    main()
