"""``fastmbrl.warmup()``: compile every Numba kernel once, so later processes load them from the cache.

Numba compiles a kernel on its first call (seconds) and, with ``cache=True``, stores the machine code
beside the module (``__pycache__/*.nbi``/``*.nbc``). Call ``warmup()`` once after installing (or set
``NUMBA_CACHE_DIR`` to a writable folder when the install is read-only); afterwards a fresh process
loads each kernel in a few milliseconds.
"""
import time

import numpy as np


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (or load from the cache) the rollout kernels, the known environments' reward and
    termination functions and the SAC kernels for each dtype in ``dtypes``.

    Returns
    -------
    seconds : dict
        Time spent per part ("planning", "envs", "model_vjp", "sac": SAC, its mixed batches
        and the MBPO policy rollout), in seconds.
    """
    from fastmbrl import envs, planning

    spent = {}
    start = time.perf_counter()
    planning.warmup(dtypes)
    spent["planning"] = time.perf_counter() - start

    start = time.perf_counter()
    for spec in envs.list_specs():
        for dtype in dtypes:
            # Each function is compiled for 2-D arrays of the dtype; the widths only need to be large
            # enough for the indexing inside (the largest observation here has 18 dims, actions 6).
            obs = np.zeros((2, 32), dtype=dtype)
            act = np.zeros((2, 8), dtype=dtype)
            spec.reward_fn(obs, act, obs)
            spec.termination_fn(obs, act, obs)
            if spec.reward_grad_fn is not None:
                spec.reward_grad_fn(obs, act, obs)
    spent["envs"] = time.perf_counter() - start

    from fastmbrl.models import vjp
    start = time.perf_counter()
    vjp.warmup(dtypes)
    spent["model_vjp"] = time.perf_counter() - start

    start = time.perf_counter()
    from fastmbrl.agents.sac import SAC
    from fastmbrl.buffer import ReplayBuffer
    from fastmbrl.models import GaussianEnsemble, ModelEnv
    for dtype in dtypes:   # compiles (or loads) the SAC kernels for this dtype
        agent = SAC(1, 1, ((-1.0,), (1.0,)), hidden=(2,), batch_size=2, dtype=dtype)
        obs = np.zeros((2, 1))
        agent.act(obs)
        agent.act(obs, deterministic=True)
        agent.update({"obs": obs, "act": obs, "reward": np.zeros(2), "next_obs": obs,
                          "terminated": np.zeros(2, bool)})
        buf = ReplayBuffer(2, 1, 1, dtype=dtype)
        buf.add_batch(obs, obs, np.zeros(2), obs, np.zeros(2, bool), np.zeros(2, bool))
        agent.update_from(buf, 1)
        agent.update_from(buf, 1, model_buffer=buf, real_ratio=0.5)   # MBPO's mixed batches
        # MBPO's policy rollout through the model (policy, model step, reward in one kernel)
        model = GaussianEnsemble(1, 1, hidden=(2,), ensemble_size=1, num_elites=1, dtype=dtype,
                                 learn_reward=True)
        ModelEnv(model).rollout(agent, obs, 1, np.random.default_rng(0))
    spent["sac"] = time.perf_counter() - start
    return spent
