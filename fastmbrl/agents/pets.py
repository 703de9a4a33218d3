"""PETS: model predictive control with a probabilistic ensemble and trajectory sampling.

At each control step the agent takes a snapshot of the model (``model.arrays()``), binds it with the
observation into the compiled rollout objective and lets a zero-order planner choose an action
sequence; the first action is executed (course notes Sec. 5.1; Chua et al. 2018).

Time budget: ``act(obs, time_budget=b)`` returns within ``b`` plus a margin of about one model
step of the rollout and the final bookkeeping (target: p99 <= b + 1 ms on a quiet machine; see
``fastmbrl.planning._schedule`` on deadlines). Rollouts start only when their measured cost fits
in what is left, a rollout still running at the deadline is stopped between two model steps, and
the planner uses the candidates that could be scored; a budget below the measured cost of one
candidate returns the previous plan advanced by one step at once. ``last_plan_info`` says what
each call did.

Threads: one agent may be shared by several threads; ``plan``/``act``/``reset`` hold the agent's
lock, so concurrent calls run one after the other (each sees the state the previous left) and
never mix their buffers. For planning in the background use ``fastmbrl.control.AsyncController``.
"""
import threading
import time
from collections import deque

import numpy as np

from fastmbrl._threads import resolve_threads
from fastmbrl._validate import as_float_array, check_bool, check_int, check_seed, check_time_budget
from fastmbrl.agents.base import Agent, action_bounds
from fastmbrl.config import PlannerConfig
from fastmbrl.models.arrays import ModelArrays
from fastmbrl.planning._checks import check_model_arrays
from fastmbrl.planning._schedule import CHUNK_ROWS
from fastmbrl.planning.optimizers import CEM, check_bounds
from fastmbrl.planning.rollout import PROPAGATIONS, ModelRollout

# Rows (population x particles) from which the second core is used by default: from there the
# rollout has several chunks for two threads to share (through a queue, so a busy other core costs
# little); below it has one chunk and a second thread would idle, so small problems stay on one
# thread (measured figures: docs/performance.md, "Threads").
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
        Trajectories per candidate sequence (default ``PlannerConfig.particles``, 20; like
        ``propagation`` and ``bonus_weight``, the run configuration's default).
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
        OpenBLAS threads while planning (threadpoolctl); 1 by default because spin-waiting BLAS
        teams inside the rollout workers collapse when the other core is busy (docs/performance.md;
        see ``ModelRollout``). None leaves BLAS alone.
    seed : int or None
        Seeds the rollout's noise and member assignments.
    bonus_weight : float
        Optimism bonus ``w >= 0`` (exploration from the ensemble's disagreement): plans maximize
        the return plus ``w`` times the elite members' disagreement summed along the trajectory
        (see ``fastmbrl.planning.ModelRollout``). 0 (default) is plain PETS.

    Attributes
    ----------
    last_plan : float64 array (H, D_act) or None
    last_plan_info : dict or None
        What the last ``plan``/``act`` did:

        - ``n_evaluated`` (candidate sequences scored, over all iterations), ``population``
          (candidates sampled), ``n_finite`` (scored with a finite value), ``iterations_done``,
          ``elapsed`` (seconds of the call);
        - ``budget_cut``: the time budget stopped the planner early, and ``cut_by`` how:
          ``"next_iteration"`` (the next iteration's estimated cost did not fit), ``"candidates"``
          (the rest of an iteration did not fit: a prefix of it was scored), ``"aborted"``
          (rollouts running at the deadline were stopped), or the reason of a refused budget
          (below); None when not cut;
        - ``n_aborted``: candidates whose rollout was started but stopped at the deadline;
        - ``fallback``: None, or ``"shifted"`` (the previous plan advanced by the steps since it)
          / ``"middle"`` (the middle of the bounds, when there is no previous plan) when nothing
          usable was scored, and ``fallback_reason`` why: ``"budget_below_one_step"`` or
          ``"budget_below_one_candidate"`` (the budget left was below the measured cost of one
          model step, or of one candidate's whole rollout: nothing was started and the call
          returned at once), ``"machine_load"`` (likewise, but only because of the reserve kept
          on a loaded machine, see ``fastmbrl.planning._deadline``), ``"budget_spent"`` (the
          budget ran out before any candidate was scored) or ``"non_finite"`` (every value was
          NaN or infinite; with a ``RuntimeWarning``). NaN is never returned.

        Counts and reasons are None for a planner without ``last_info``.

    Notes
    -----
    Thread safety: calls on one agent are serialized by a lock (``plan``, ``act``, ``reset``), so
    sharing an agent between threads is safe but gives no parallelism; give each thread its own
    agent to plan in parallel. Action bounds must have a finite width (``high - low`` finite).
    """

    def __init__(self, model, reward_fn, action_space, planner=None,
                 particles=PlannerConfig.particles, propagation=PlannerConfig.propagation,
                 termination_fn=None, warm_start=True, n_threads="auto", blas_threads=1, seed=None,
                 bonus_weight=PlannerConfig.bonus_weight):
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation: expected one of {sorted(PROPAGATIONS)}, got "
                             f"{propagation!r}")
        if not isinstance(model, ModelArrays) and not callable(getattr(model, "arrays", None)):
            raise TypeError(f"model: expected a GaussianEnsemble (with .arrays()) or a "
                            f"ModelArrays, got {type(model).__name__}")
        self.model = model
        self.low, self.high, self.action_dtype = action_bounds(action_space)
        check_bounds(self.low, self.high, 1)       # refuses widths that overflow (+-1e308)
        seed = check_seed("seed", seed, allow_none=True)
        if blas_threads is not None:
            check_int("blas_threads", blas_threads)
        if not (n_threads == "auto" or (isinstance(n_threads, (int, np.integer))
                                        and not isinstance(n_threads, (bool, np.bool_))
                                        and n_threads in (1, 2))):
            raise ValueError(f"n_threads: expected 1, 2 or 'auto', got {n_threads!r}")
        # CEM's defaults are the run configuration's planner defaults (PlannerConfig)
        self.planner = planner if planner is not None else CEM(seed=seed)
        if not callable(getattr(self.planner, "optimize", None)):
            raise TypeError(f"planner: expected an optimizer with optimize(), got "
                            f"{type(self.planner).__name__}")

        def big_enough():   # asked for "auto" only
            rows = getattr(self.planner, "population", 1) * (
                1 if propagation == "expectation" else particles)
            return rows >= AUTO_THREADS_MIN_ROWS

        n_threads = resolve_threads(n_threads, worthwhile=big_enough)
        self.n_threads = n_threads
        self.rollout = ModelRollout(reward_fn, termination_fn, particles=particles,
                                    propagation=propagation, n_threads=n_threads, seed=seed,
                                    blas_threads=blas_threads, bonus_weight=bonus_weight)
        self.particles = self.rollout.particles
        self.propagation = propagation
        self.warm_start = check_bool("warm_start", warm_start)
        self.last_plan = None
        self.last_plan_info = None
        self._tails = deque(maxlen=9)     # seconds after the planner's last evaluation, per call
        self._lock = threading.Lock()
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
        with self._lock:
            self.last_plan = None
            self.planner.reset()

    def _tail_reserve(self):
        """Seconds kept back from a budget for the work after the last rollout (the planner's
        last update, this call's bookkeeping): the median of the recent measured ones."""
        tails = self._tails
        if not tails:
            return 0.0
        ordered = sorted(tails)
        return ordered[len(ordered) // 2]

    def _record_tail(self):
        """Measure the time since the planner's last evaluation (``last_evaluated_at``, when its
        clock is ``time.perf_counter``)."""
        at = getattr(self.planner, "last_evaluated_at", None)
        if at is not None and getattr(self.planner, "clock", None) is time.perf_counter:
            self._tails.append(time.perf_counter() - at)

    def _shifted(self, plan, shift):
        """``plan`` advanced by ``shift`` steps, the freed steps filled with the bounds' middle."""
        out = np.empty_like(plan)
        s = min(shift, plan.shape[0])
        out[:plan.shape[0] - s] = plan[s:]
        out[plan.shape[0] - s:] = (self.low + self.high) / 2
        return out

    def plan(self, obs, time_budget=None, shift=1):
        """Plan an action sequence from ``obs``.

        Parameters
        ----------
        obs : float array (D_obs,)
            Current observation (finite).
        time_budget : float, optional
            Seconds for this call (positive). The planner stops iterating when its next iteration
            would exceed what is left, and the rollout starts only candidates whose measured cost
            fits and stops those still running at the deadline; the call returns within the
            budget plus a small margin (module notes). A budget below the measured cost of one
            candidate returns the fallback plan at once.
        shift : int >= 1
            Control steps since the previous plan was made (1 when called once per step): the
            warm start and the fallback advance the previous plan by that many steps.

        Returns
        -------
        plan : float64 array (H, D_act), inside the action bounds, finite. When nothing usable
            could be scored (``last_plan_info["fallback"]``), the previous plan advanced by
            ``shift`` steps, or the middle of the bounds when there is none.
        """
        start = time.perf_counter()
        time_budget = check_time_budget("time_budget", time_budget)
        shift = check_int("shift", shift)
        with self._lock:
            return self._plan(obs, time_budget, shift, start)

    def _plan(self, obs, time_budget, shift, start):
        arrays = self._arrays()
        d_obs = np.shape(arrays.angle_mask)[0]
        obs = as_float_array("obs", obs, dtype=np.float64, shape=(d_obs,))
        objective = self.rollout.objective(arrays, obs)
        init_mean = None
        if self.warm_start and self.last_plan is not None:
            if shift == 1:
                init_mean = np.empty_like(self.last_plan)
                init_mean[:-1] = self.last_plan[1:]
                init_mean[-1] = (self.low + self.high) / 2
            else:
                init_mean = self._shifted(self.last_plan, shift)
        with self.rollout.blas_limit():
            budget = None
            if time_budget is not None:
                # what is left, less what the call measurably takes after its last rollout
                budget = max(time_budget - (time.perf_counter() - start) - self._tail_reserve(),
                             1e-9)
            plan = self.planner.optimize(objective, self.low, self.high, init_mean=init_mean,
                                         time_budget=budget)
        info = getattr(self.planner, "last_info", None)
        info = dict(info) if isinstance(info, dict) else {
            "n_evaluated": None, "population": None, "n_finite": None,
            "iterations_done": getattr(self.planner, "last_iterations", None),
            "budget_cut": None, "fallback": None}
        for key in ("fallback_reason", "cut_by", "n_aborted"):
            info.setdefault(key, None)
        if info.get("fallback") is not None:
            if self.last_plan is not None:
                plan = self._shifted(self.last_plan, shift)
                info["fallback"] = "shifted"
            else:
                plan = (self.low + self.high) / 2 * np.ones((self.planner.horizon, 1))
                info["fallback"] = "middle"
        self._record_tail()
        info["elapsed"] = time.perf_counter() - start
        self.last_plan_info = info
        self.last_plan = plan
        return plan

    def act(self, obs, time_budget=None):
        """Return the first action (D_act,) of the plan from ``obs``, inside the action bounds.

        Parameters
        ----------
        obs : float array (D_obs,)
        time_budget : float, optional
            Seconds for this call (see ``plan``); ``last_plan_info`` reports what was done.
        """
        plan = self.plan(obs, time_budget=time_budget)
        # = np.clip (low <= high, checked at construction), cheaper per call
        return np.minimum(np.maximum(plan[0], self.low), self.high).astype(self.action_dtype)

    def close(self):
        """Stop the rollout's worker thread."""
        self.rollout.close()
