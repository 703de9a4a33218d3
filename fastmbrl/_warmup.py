"""``fastmbrl.warmup()``: compile every Numba kernel once, so later processes load them from the cache.

Numba compiles a kernel on its first call (seconds) and, with ``cache=True``, stores the machine code
beside the module (``__pycache__/*.nbi``/``*.nbc``). Call ``warmup()`` once after installing (or set
``NUMBA_CACHE_DIR`` to a writable folder when the install is read-only); afterwards a fresh process
loads each kernel in a few milliseconds.
"""
import time

import numpy as np


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (or load from the cache) the rollout kernels and the known environments' reward and
    termination functions for each dtype in ``dtypes``.

    Returns
    -------
    seconds : dict
        Time spent per part ("planning", "envs", "model_vjp"), in seconds.
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
    return spent
