"""Cost of one model-based SAC update (MVE n, SVG(H) h) against a plain SAC update, same networks,
same run (ratios). Pendulum sizes: D_obs 3, D_act 1, SAC (256, 256), batch 256, the default
model (5 x (200, 200, 200), SiLU, angle dim 0) untrained (the cost does not depend on the fit).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_model_based_update_cost.py
"""
import argparse
import time

import numpy as np


def main():
    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS before threadpoolctl)
    from threadpoolctl import threadpool_info, threadpool_limits

    from fastmbrl.agents import SAC, _mb_grads
    from fastmbrl.envs import reward_fns
    from fastmbrl.models import GaussianEnsemble, ModelEnv

    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    B = args.batch
    rng = np.random.default_rng(0)
    agent = SAC(3, 1, ([-2.0], [2.0]), batch_size=B, seed=0, n_threads=1)
    model = GaussianEnsemble(3, 1, hidden=(200, 200, 200), ensemble_size=5, num_elites=5,
                             angle_dims=(0,), learn_reward=False, seed=0, weight_decay="pets",
                             n_threads=1)
    menv = ModelEnv(model, reward_fn=reward_fns.pendulum)
    th = rng.uniform(-np.pi, np.pi, B)
    obs = np.stack([np.cos(th), np.sin(th), rng.normal(size=B)], 1).astype(np.float32)
    batch = {"obs": obs, "act": rng.uniform(-2, 2, (B, 1)).astype(np.float32),
                 "reward": rng.normal(size=B).astype(np.float32), "next_obs": obs.copy(),
                 "terminated": np.zeros(B, bool)}
    cases = [("sac", 1, 0), ("mve n=5", 5, 0), ("svg h=5", 1, 5), ("mve n=5 + svg h=5", 5, 5),
             ("mve n=3", 3, 0), ("svg h=3", 1, 3)]
    with threadpool_limits(limits=1, user_api="blas"):
        print("BLAS:", [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
                        for i in threadpool_info() if i.get("user_api") == "blas"])
        times = {name: [] for name, _, _ in cases}
        for name, n, h in cases:                       # warm up (compile / cache load)
            _mb_grads.model_based_update(agent, menv, *batch.values(), critic_horizon=n,
                                         actor_horizon=h)
        for _ in range(args.repeats):                  # interleaved: load changes hit all alike
            for name, n, h in cases:
                t0 = time.perf_counter()
                _mb_grads.model_based_update(agent, menv, *batch.values(), critic_horizon=n,
                                             actor_horizon=h)
                times[name].append(time.perf_counter() - t0)
    base = np.median(times["sac"])
    print(f"{'update':22s} {'median ms':>10s} {'x sac':>7s}")
    for name, _, _ in cases:
        med = np.median(times[name])
        print(f"{name:22s} {1e3 * med:10.2f} {med / base:7.2f}")


if __name__ == "__main__":
    main()
