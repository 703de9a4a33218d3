"""Wall time of mbrl-lib 0.2.0's MBPO (PyTorch, CPU) on InvertedPendulum-v4 per 1k environment
steps, split like fastmbrl's cost run (``benchmarks/run_mbpo_table.py --cost-steps``).

mbrl-lib pins gymnasium 0.26.3 and hydra-core 1.0.3, so it runs in its own virtual environment
(``setup_mbrl_lib_venv.sh``), never in fastmbrl's. The config is built the way mbrl-lib's
``examples/main.py`` builds it (main.yaml + algorithm/mbpo.yaml +
dynamics_model/gaussian_mlp_ensemble.yaml + overrides/mbpo_inv_pendulum.yaml), then the benchmark
settings are set explicitly (the JSON lists where they differ from mbrl-lib's files). The hot
functions are wrapped to accumulate time, and the run stops after ``--skip + --steps`` learning
steps (environment steps of ``mbpo.train``'s main loop, after the initial exploration); only the
last ``--steps`` are timed. mbrl-lib makes no SAC update before its first refit (the end of
learning step 250), so ``--skip 250`` times its steady state: 10 updates per step.

Usage (prints one JSON line)::

    bash benchmarks/mbrl_lib/setup_mbrl_lib_venv.sh          # once: /tmp/mbrl-venv
    /tmp/mbrl-venv/bin/python benchmarks/mbrl_lib/run_mbrl_lib_mbpo.py --steps 1000 --skip 250 \
        --threads 2
"""
import argparse
import json
import os
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1000, help="learning steps to measure")
    p.add_argument("--skip", type=int, default=0, help="learning steps run before the clock starts")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mbrl_lib_mbpo"),
                   help="mbrl-lib's output folder (its logs and saved models)")
    return p.parse_args()


args = parse_args()
# must be set before torch (and numpy's BLAS) are imported
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

import numpy as np  # noqa: E402
import omegaconf  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(args.threads)

import mbrl  # noqa: E402
import mbrl.env.termination_fns  # noqa: E402
import mbrl.models  # noqa: E402
import mbrl.third_party.pytorch_sac_pranz24.sac as pranz_sac  # noqa: E402
import mbrl.util.common  # noqa: E402
import mbrl.util.env  # noqa: E402
from mbrl.algorithms import mbpo  # noqa: E402

CONF_DIR = os.path.join(os.path.dirname(mbrl.__file__), "examples", "conf")


# --------------------------------------------------------------------------
# Config: mbrl-lib's own files, then the benchmark settings set explicitly.
# --------------------------------------------------------------------------
def build_cfg(seed: int) -> omegaconf.DictConfig:
    def load(rel):
        return omegaconf.OmegaConf.load(os.path.join(CONF_DIR, rel))

    main = load("main.yaml")
    for k in ("defaults", "hydra"):
        main.pop(k, None)
    cfg = omegaconf.OmegaConf.merge(
        main,
        {
            "algorithm": load("algorithm/mbpo.yaml"),
            "dynamics_model": load("dynamics_model/gaussian_mlp_ensemble.yaml"),
            "overrides": load("overrides/mbpo_inv_pendulum.yaml"),
        },
    )
    base = omegaconf.OmegaConf.to_container(cfg, resolve=False)

    settings = {
        "seed": seed,
        "device": "cpu",
        "overrides": {
            "env": "gym___InvertedPendulum-v4",
            "term_fn": "inverted_pendulum",
            "sac_hidden_size": 256,
            "sac_batch_size": 256,
            "num_sac_updates_per_step": 10,
            "sac_updates_every_steps": 1,
            "effective_model_rollouts_per_step": 400,
            "rollout_schedule": [1, 15, 1, 1],
            "num_elites": 5,
            "model_batch_size": 256,
            "patience": 5,
            "num_epochs_train_model": 100,  # not in mbrl-lib's override (None = no cap)
            "freq_train_model": 250,
            "epoch_length": 250,
        },
        "algorithm": {
            "real_data_ratio": 0.05,  # mbpo.yaml: 0.0
            "initial_exploration_steps": 250,  # mbpo.yaml: 5000
            "num_eval_episodes": 1,
        },
        "dynamics_model": {"ensemble_size": 7, "num_layers": 4, "hid_size": 200},
    }
    cfg = omegaconf.OmegaConf.merge(cfg, settings)

    # record where the final config differs from mbrl-lib's own files
    final = omegaconf.OmegaConf.to_container(cfg, resolve=False)
    diffs = {}
    for grp in ("overrides", "algorithm", "dynamics_model"):
        for k, v in final[grp].items():
            if base[grp].get(k, "<absent>") != v:
                diffs[f"{grp}.{k}"] = [base[grp].get(k, "<absent>"), v]
    for k in ("device",):
        if base.get(k) != final.get(k):
            diffs[k] = [base.get(k), final.get(k)]
    return cfg, diffs


# --------------------------------------------------------------------------
# Instrumentation
# --------------------------------------------------------------------------
class StopBench(Exception):
    pass


T = {"sac": 0.0, "fit": 0.0, "fit_wrapper": 0.0, "rollout": 0.0, "eval": 0.0}
N = {"sac": 0, "fit": 0, "rollout": 0, "eval": 0}
fit_epochs = []
eval_returns = []
state = {"phase": "init", "steps": 0, "t0": None, "t_end": None, "target": args.steps}


def timed(key, fn, post=None):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        T[key] += time.perf_counter() - t
        if key in N:
            N[key] += 1
        if post is not None:
            post(out)
        return out

    wrapper.__wrapped__ = fn
    return wrapper


pranz_sac.SAC.update_parameters = timed("sac", pranz_sac.SAC.update_parameters)
mbrl.models.ModelTrainer.train = timed(
    "fit", mbrl.models.ModelTrainer.train, post=lambda out: fit_epochs.append(len(out[0]))
)
# includes ModelTrainer.train + normalizer update + iterator build + model/buffer save
mbrl.util.common.train_model_and_save_model_and_data = timed(
    "fit_wrapper", mbrl.util.common.train_model_and_save_model_and_data
)
mbpo.rollout_model_and_populate_sac_buffer = timed(
    "rollout", mbpo.rollout_model_and_populate_sac_buffer
)
mbpo.evaluate = timed("eval", mbpo.evaluate, post=lambda r: eval_returns.append(float(r)))

_orig_rollout_agent_traj = mbrl.util.common.rollout_agent_trajectories


def _init_explore(*a, **kw):
    out = _orig_rollout_agent_traj(*a, **kw)
    state["phase"] = "learn"
    return out


mbrl.util.common.rollout_agent_trajectories = _init_explore

_orig_step = mbrl.util.common.step_env_and_add_to_buffer


def _step(*a, **kw):
    # The initial exploration also calls this (as a module global): ignore it.
    if state["phase"] == "learn":
        if state["steps"] == args.skip:
            # start the clock at the first learning step; nothing timed before
            for k in T:
                T[k] = 0.0
            for k in N:
                N[k] = 0
            state["t0"] = time.perf_counter()
        elif state["steps"] >= state["target"] + args.skip:
            state["t_end"] = time.perf_counter()
            raise StopBench()
        state["steps"] += 1
    return _orig_step(*a, **kw)


mbrl.util.common.step_env_and_add_to_buffer = _step


def main():
    cfg, diffs = build_cfg(args.seed)
    # mirror mbrl-lib's examples/main.py
    env, term_fn, _ = mbrl.util.env.EnvHandler.make_env(cfg)
    assert term_fn is mbrl.env.termination_fns.inverted_pendulum
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    test_env, *_ = mbrl.util.env.EnvHandler.make_env(cfg)

    work_dir = os.path.join(args.workdir, f"s{args.seed}")
    os.makedirs(work_dir, exist_ok=True)

    t_start = time.perf_counter()
    try:
        mbpo.train(
            env,
            test_env,
            mbrl.env.termination_fns.inverted_pendulum,
            cfg,
            silent=True,
            work_dir=work_dir,
        )
        state["t_end"] = time.perf_counter()  # ran out of num_steps
    except StopBench:
        pass
    t_total = time.perf_counter() - t_start

    steps = state["steps"] - args.skip
    wall = state["t_end"] - state["t0"]
    timed_sum = T["sac"] + T["fit_wrapper"] + T["rollout"] + T["eval"]
    split = {
        "sac_updates": T["sac"],
        "model_fit": T["fit"],
        "model_rollouts": T["rollout"],
        "env_act": wall - timed_sum + (T["fit_wrapper"] - T["fit"]),
        "eval": T["eval"],
    }
    per1k = {k: round(v * 1000.0 / steps, 3) for k, v in split.items()}
    per1k["wall"] = round(wall * 1000.0 / steps, 3)
    import gymnasium
    import mujoco

    out = {
        "lib": f"mbrl-lib {mbrl.__version__}",
        "env": cfg.overrides.env,
        "seed": args.seed,
        "steps_measured": steps,
        "initial_exploration_steps": cfg.algorithm.initial_exploration_steps,
        "wall_s": round(wall, 3),
        "split_s": {k: round(v, 3) for k, v in split.items()},
        "per_1k_steps_s": per1k,
        "env_act_includes_fit_bookkeeping_s": round(T["fit_wrapper"] - T["fit"], 3),
        "counts": {
            "sac_updates": N["sac"],
            "model_fits": N["fit"],
            "rollout_calls": N["rollout"],
            "eval_episodes": N["eval"] * cfg.algorithm.num_eval_episodes,
        },
        "fit_epochs_per_refit": fit_epochs,
        "eval_returns": eval_returns,
        "sac_updates_per_s": round(N["sac"] / T["sac"], 1) if T["sac"] else None,
        # mbrl-lib makes no SAC update before its first refit (end of learning step 250),
        # so per-1k SAC time above covers fewer than 10k updates; this rescales to 10k.
        "sac_s_per_10k_updates": round(T["sac"] * 1e4 / N["sac"], 3) if N["sac"] else None,
        "torch_num_threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "gymnasium": gymnasium.__version__,
            "mujoco": mujoco.__version__,
        },
        "cfg_diff_vs_mbrl_lib_files": diffs,
        "process_total_s": round(t_total, 3),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
