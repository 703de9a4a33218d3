"""PETS: model predictive control with a probabilistic ensemble and trajectory sampling.

At each control step the agent takes a snapshot of the model (``model.arrays()``), binds it with the
observation into the compiled rollout objective and lets a zero-order planner choose an action
sequence; the first action is executed (course notes Sec. 5.1; Chua et al. 2018).
"""
import os
import time

import numpy as np

from fastmbrl._validate import as_float_array
from fastmbrl.agents.base import Agent, action_bounds
from fastmbrl.models.arrays import ModelArrays
from fastmbrl.planning.optimizers import CEM
from fastmbrl.planning.rollout import CHUNK_ROWS, PROPAGATIONS, ModelRollout, check_model_arrays

# Rows (population x particles) from which the second core is used by default (the rollout then
# has several chunks; below 3000 rows it has one and a second thread would idle). Measured on the
# 2-core machine: config (b) act() took 1.73 s on 1 thread and 0.88 s on 2 while the other core
# was free (1.97x, 146 GFLOP/s); with another job holding that core, 2 threads cost 3-5% (349 vs
# 365 ms per objective call), since the chunks go through a shared queue. For (a) (500 rows)
# splitting bought nothing even on one thread (1.36 vs 1.45 ms per call with 2 chunks), so small
# problems stay on one thread.
AUTO_THREADS_MIN_ROWS = 2 * CHUNK_ROWS


class PETS(Agent):
    """Probabilistic ensemble + trajectory sampling MPC agent.

    Parameters
    ----------
    model : GaussianEnsemble or ModelArrays
        Anything with ``arrays()`` returning a ``fastmbrl.models.ModelArrays`` (called at every
        ``act``, so a refitted model is picked up), or a ModelArrays snapshot itself. Only
        ``arrays.members`` (the elites) are used.
    reward_fn : callable or None
        ``reward_fn(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs)) -> (N,)``; a ``numba.njit``
        function runs inside the compiled rollout. None uses the model's learned reward.
    action_space : gymnasium Box or (low, high) pair
        Finite action bounds (D_act,).
    planner : RandomShooting, CEM, ICEM or MPPI, optional
        Default ``CEM(horizon=15, population=350, elite_frac=0.1, iterations=5, alpha=0.1)``.
    particles : int
        Trajectories per candidate sequence.
    propagation : {"ts1", "tsinf", "expectation"}
        See ``fastmbrl.planning.ModelRollout``.
    termination_fn : callable or None
        Same signature as ``reward_fn``, returning bool (N,).
    warm_start : bool
        Start each plan from the previous one shifted by one step (its last step filled with the
        middle of the bounds); False resets the distribution to its default at every action.
    n_threads : 1, 2 or "auto"
        Kernel workers; "auto" uses 2 when ``population * particles >= AUTO_THREADS_MIN_ROWS`` and
        two cores exist, since below that the hand-off costs about what the second core gains.
    blas_threads : int or None
        OpenBLAS threads while planning (threadpoolctl); 1 by default because BLAS teams inside
        the rollout workers collapse on a 2-core machine (PERF.md; see ``ModelRollout``). None
        leaves BLAS alone.
    seed : int or None
        Seeds the rollout's noise and member assignments.
    bonus_weight : float
        Optimism bonus ``w >= 0`` (exploration from the ensemble's disagreement): plans maximize
        the return plus ``w`` times the elite members' disagreement summed along the trajectory
        (see ``fastmbrl.planning.ModelRollout``). 0 (default) is plain PETS.

    Attributes
    ----------
    last_plan : float64 array (H, D_act) or None
    """

    def __init__(self, model, reward_fn, action_space, planner=None, particles=20,
                 propagation="ts1", termination_fn=None, warm_start=True, n_threads="auto",
                 blas_threads=1, seed=None, bonus_weight=0.0):
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation: expected one of {sorted(PROPAGATIONS)}, got "
                             f"{propagation!r}")
        if not isinstance(model, ModelArrays) and not callable(getattr(model, "arrays", None)):
            raise TypeError(f"model: expected a GaussianEnsemble (with .arrays()) or a "
                            f"ModelArrays, got {type(model).__name__}")
        self.model = model
        self.low, self.high, self.action_dtype = action_bounds(action_space)
        self.planner = planner if planner is not None else CEM(
            horizon=15, population=350, elite_frac=0.1, iterations=5, alpha=0.1, seed=seed)
        if not callable(getattr(self.planner, "optimize", None)):
            raise TypeError(f"planner: expected an optimizer with optimize(), got "
                            f"{type(self.planner).__name__}")
        if n_threads == "auto":
            rows = getattr(self.planner, "population", 1) * (
                1 if propagation == "expectation" else particles)
            n_threads = 2 if (rows >= AUTO_THREADS_MIN_ROWS and (os.cpu_count() or 1) >= 2) else 1
        self.n_threads = n_threads
        self.rollout = ModelRollout(reward_fn, termination_fn, particles=particles,
                                    propagation=propagation, n_threads=n_threads, seed=seed,
                                    blas_threads=blas_threads, bonus_weight=bonus_weight)
        self.particles = self.rollout.particles
        self.propagation = propagation
        self.warm_start = bool(warm_start)
        self.last_plan = None
        arrays = self._arrays()
        check_model_arrays(arrays, act_dim=self.low.shape[0])

    @property
    def horizon(self):
        """H, the planner's horizon (steps per planned sequence)."""
        return self.planner.horizon

    def _arrays(self):
        return self.model if isinstance(self.model, ModelArrays) else self.model.arrays()

    def reset(self):
        """Start a new episode: drop the warm-start plan and the planner's kept elites."""
        self.last_plan = None
        self.planner.reset()

    def plan(self, obs, time_budget=None):
        """Plan an action sequence from ``obs``.

        Parameters
        ----------
        obs : float array (D_obs,)
            Current observation (finite).
        time_budget : float, optional
            Seconds for this call; the planner stops iterating when its next iteration would exceed
            what is left and returns the best plan so far.

        Returns
        -------
        plan : float64 array (H, D_act), inside the action bounds
        """
        start = time.perf_counter()
        arrays = self._arrays()
        d_obs = np.shape(arrays.angle_mask)[0]
        obs = as_float_array("obs", obs, dtype=np.float64, shape=(d_obs,))
        objective = self.rollout.objective(arrays, obs)
        init_mean = None
        if self.warm_start and self.last_plan is not None:
            init_mean = np.empty_like(self.last_plan)
            init_mean[:-1] = self.last_plan[1:]
            init_mean[-1] = (self.low + self.high) / 2
        budget = None
        if time_budget is not None:
            if not (np.isfinite(time_budget) and time_budget > 0):
                raise ValueError(f"time_budget: expected a positive number of seconds or None, got "
                                 f"{time_budget!r}")
            budget = max(time_budget - (time.perf_counter() - start), 1e-9)
        with self.rollout.blas_limit():
            plan = self.planner.optimize(objective, self.low, self.high, init_mean=init_mean,
                                         time_budget=budget)
        self.last_plan = plan
        return plan

    def act(self, obs, time_budget=None):
        """Return the first action (D_act,) of the plan from ``obs``, inside the action bounds.

        Parameters
        ----------
        obs : float array (D_obs,)
        time_budget : float, optional
            Seconds for this call (see ``plan``).
        """
        plan = self.plan(obs, time_budget=time_budget)
        # = np.clip (low <= high, checked at construction), cheaper per call
        return np.minimum(np.maximum(plan[0], self.low), self.high).astype(self.action_dtype)

    def close(self):
        """Stop the rollout's worker thread."""
        self.rollout.close()
