"""Latency of mbrl-lib 0.2.0's PETS ``act()`` (PyTorch, CPU) on the configurations of
``benchmarks/bench_planning.py``: random weights of the same sizes, CEM, TS1 propagation.

mbrl-lib pins old gymnasium and hydra versions, so it runs in its own virtual environment
(``setup_mbrl_lib_venv.sh``). The agent is built as mbrl-lib's PETS example builds it
(``GaussianMLP`` ensemble, ``OneDTransitionRewardModel`` with delta targets, ``ModelEnv``,
``create_trajectory_optim_agent_for_model`` with a ``CEMOptimizer``), with
``propagation_method="random_model"`` (a random member per row, as fastmbrl's ts1).

    bash benchmarks/mbrl_lib/setup_mbrl_lib_venv.sh           # once: /tmp/mbrl-venv
    /tmp/mbrl-venv/bin/python benchmarks/mbrl_lib/run_mbrl_lib_pets.py --config a_small --threads 1

Prints one JSON line: the configuration, threads, rounds and the median / min / max seconds of
one ``act()`` (each a full replan), after warm-up calls.
"""
import argparse
import json
import os
import time

CONFIGS = {   # as bench_planning.py's (a) and (b)
    "a_small": dict(E=5, hidden=64, layers=2, d_obs=3, d_act=1, population=100, horizon=10,
                    iterations=3, n_elites=10, particles=5, env="pendulum"),
    "b_cartpole": dict(E=7, hidden=200, layers=4, d_obs=4, d_act=1, population=350, horizon=15,
                       iterations=5, n_elites=35, particles=20, env="cartpole"),
}


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--config", choices=list(CONFIGS), default="a_small")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--rounds", type=int, default=20, help="timed act() calls")
    p.add_argument("--warmup", type=int, default=3)
    return p.parse_args()


args = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import omegaconf  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(args.threads)

import mbrl.env.cartpole_continuous as cartpole_env  # noqa: E402
import mbrl.env.termination_fns as termination_fns  # noqa: E402
import mbrl.models  # noqa: E402
import mbrl.planning  # noqa: E402


def pendulum_reward(act, next_obs):
    """Pendulum-v1's cost on (cos, sin, velocity) observations, in torch ops."""
    th = torch.atan2(next_obs[:, 1], next_obs[:, 0])
    cost = th ** 2 + 0.1 * next_obs[:, 2] ** 2 + 0.001 * (act ** 2).sum(1)
    return -cost.view(-1, 1)


def constant_one(act, next_obs):
    return torch.ones(next_obs.shape[0], 1)


def make_agent(cfg):
    if cfg["env"] == "pendulum":
        env = gym.make("Pendulum-v1")
        reward_fn, term_fn = pendulum_reward, termination_fns.no_termination
    else:
        env = cartpole_env.CartPoleEnv()
        reward_fn, term_fn = constant_one, termination_fns.cartpole
    d_obs, d_act = cfg["d_obs"], cfg["d_act"]
    net = mbrl.models.GaussianMLP(
        in_size=d_obs + d_act, out_size=d_obs, device="cpu", num_layers=cfg["layers"],
        ensemble_size=cfg["E"], hid_size=cfg["hidden"], deterministic=False,
        propagation_method="random_model", learn_logvar_bounds=False,
        activation_fn_cfg=omegaconf.OmegaConf.create({"_target_": "torch.nn.SiLU"}))
    dynamics = mbrl.models.OneDTransitionRewardModel(net, target_is_delta=True, normalize=False,
                                                     learned_rewards=False)
    model_env = mbrl.models.ModelEnv(env, dynamics, term_fn, reward_fn,
                                     generator=torch.Generator().manual_seed(0))
    agent_cfg = omegaconf.OmegaConf.create({
        "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
        "action_lb": [-1.0] * d_act, "action_ub": [1.0] * d_act,
        "planning_horizon": cfg["horizon"], "replan_freq": 1, "verbose": False,
        "optimizer_cfg": {
            "_target_": "mbrl.planning.CEMOptimizer", "num_iterations": cfg["iterations"],
            "elite_ratio": cfg["n_elites"] / cfg["population"],
            "population_size": cfg["population"], "alpha": 0.1, "device": "cpu",
            "lower_bound": "???", "upper_bound": "???", "return_mean_elites": True,
            "clipped_normal": False}})
    return mbrl.planning.create_trajectory_optim_agent_for_model(
        model_env, agent_cfg, num_particles=cfg["particles"])


def main():
    cfg = CONFIGS[args.config]
    torch.manual_seed(0)
    agent = make_agent(cfg)
    obs = np.random.default_rng(1).standard_normal(cfg["d_obs"]).astype(np.float32) * 0.1
    for _ in range(args.warmup):
        agent.reset()
        agent.act(obs)
    times = []
    for _ in range(args.rounds):
        agent.reset()                     # a full replan at every call, as fastmbrl's act()
        t0 = time.perf_counter()
        action = agent.act(obs)
        times.append(time.perf_counter() - t0)
    assert np.all(np.isfinite(action)) and np.shape(action) == (cfg["d_act"],)
    print(json.dumps({"impl": "mbrl-lib 0.2.0", "config": args.config, "threads": args.threads,
                      "rounds": args.rounds, "median_s": float(np.median(times)),
                      "min_s": float(np.min(times)), "max_s": float(np.max(times)),
                      "torch_capability": torch.backends.cpu.get_cpu_capability()}))


if __name__ == "__main__":
    main()
