"""Planning in the background of a control loop: ``AsyncController``.

A synchronous controller calls ``agent.act(obs)`` and waits for the plan; here a planning thread
keeps planning from the latest observation while the control loop runs, and ``step(obs)`` returns
at once with the freshest plan's action for the current step. The rollout kernels release the GIL,
so the planning thread uses the other core while the caller steps its system.

Ownership (no data race): the planning thread is the only one that calls the agent while the
controller is open; the caller's observations are copied in ``step`` and the plans copied out of
the agent, so neither side ever reads an array the other writes. Do not call the agent yourself
until ``close()`` (its lock would make you wait for a whole plan, and your call would change its
warm-start state).
"""
import inspect
import sys
import threading
import time

import numpy as np

from fastmbrl._validate import as_float_array, check_float, check_time_budget

__all__ = ["AsyncController"]


class AsyncController:
    """Runs ``agent.plan`` in a background thread; ``step(obs)`` returns an action at once.

    Parameters
    ----------
    agent : PETS (or any object with ``plan(obs, time_budget=None) -> (H, D_act)``, ``low``,
        ``high`` and optionally ``reset()``)
        The planning agent; owned by the planning thread while the controller is open.
    control_period : float, optional
        Seconds per control step of the caller's loop. Only used for the statistics (a plan that
        took longer than one period counts in ``stats["slow_plans"]``); the controller never
        sleeps for the caller.
    time_budget : float, optional
        Seconds per plan passed to ``agent.plan`` (None: plan unhurried). A shorter budget keeps
        the plans fresh (smaller plan age) at the price of fewer scored candidates.
    first_step : {"plan", "middle"}
        What ``step`` does before any plan exists (at the start and after ``reset``): "plan" waits
        until the planning thread has planned from that observation (one synchronous plan's
        latency), "middle" returns the middle of the action bounds at once.
    gil_switch_interval : float or None
        While the controller is open, ``sys.setswitchinterval`` is lowered to this (seconds; the
        interpreter default is 5 ms, which would let the planning thread's Python code hold the
        GIL for up to 5 ms while ``step`` waits). Restored by ``close``. None leaves it alone.

    Notes
    -----
    The action for step ``k`` comes from the freshest plan, made from the observation of step
    ``k0 <= k``: ``plan[k - k0]`` (the plan advanced by the steps that passed since its
    observation), or its last action when ``k - k0`` reaches the horizon (counted as stale). The
    planning thread waits on a condition variable when no new observation has come (no busy
    waiting); each new plan warm-starts from the previous one advanced by ``k0_new - k0_old``
    steps. An exception in the planning thread is re-raised by the next ``step`` (and every later
    one); ``close()`` stops and joins the thread and is idempotent; the controller is a context
    manager.
    """

    def __init__(self, agent, control_period=None, time_budget=None, first_step="plan",
                 gil_switch_interval=2e-4):
        if not callable(getattr(agent, "plan", None)):
            raise TypeError(f"agent: expected an agent with plan(obs, time_budget=...) (e.g. "
                            f"PETS), got {type(agent).__name__}")
        self.agent = agent
        self.control_period = (None if control_period is None else
                               check_float("control_period", control_period, 0.0, strict_min=True))
        self.time_budget = check_time_budget("time_budget", time_budget)
        if first_step not in ("plan", "middle"):
            raise ValueError(f"first_step: expected 'plan' or 'middle', got {first_step!r}")
        self.first_step = first_step
        if gil_switch_interval is not None:
            gil_switch_interval = check_float("gil_switch_interval", gil_switch_interval, 0.0,
                                              strict_min=True)
        self._low = np.asarray(agent.low, dtype=np.float64).copy()
        self._high = np.asarray(agent.high, dtype=np.float64).copy()
        self._dtype = np.dtype(getattr(agent, "action_dtype", np.float32))
        try:
            self._takes_shift = "shift" in inspect.signature(agent.plan).parameters
        except (TypeError, ValueError):   # pragma: no cover - builtins without a signature
            self._takes_shift = False
        self._cond = threading.Condition()
        self._k = -1                      # index of the last step() call
        self._obs = None
        self._obs_k = -1
        self._plan = None
        self._plan_k = -1
        self._plan_t = 0.0
        self._epoch = 0                   # bumped by reset(): plans of older epochs are dropped
        self._error = None
        self._stop = False
        self._closed = False
        # statistics (written under the condition's lock)
        self._ages_steps = []
        self._ages_s = []
        self._plan_s = []
        self._replans = 0
        self._n_steps = 0
        self._missed = 0
        self._stale = 0
        self._t_first = None
        self._old_switch = None
        if gil_switch_interval is not None:
            self._old_switch = sys.getswitchinterval()
            sys.setswitchinterval(gil_switch_interval)
            self._set_switch = sys.getswitchinterval()
        self._thread = threading.Thread(target=self._run, name="fastmbrl-planner", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ planning thread
    def _run(self):
        prev_k = None
        epoch = self._epoch
        reset = False
        while True:
            with self._cond:
                while not self._stop and self._obs_k == (-1 if prev_k is None else prev_k) \
                        and epoch == self._epoch:
                    self._cond.wait()
                if self._stop:
                    return
                if epoch != self._epoch:          # reset(): a new episode
                    epoch = self._epoch
                    prev_k = None
                    reset = True
                if self._obs_k < 0:
                    continue
                obs, k = self._obs, self._obs_k
            try:
                if reset and callable(getattr(self.agent, "reset", None)):
                    self.agent.reset()
                reset = False
                t0 = time.perf_counter()
                kwargs = {"time_budget": self.time_budget}
                if self._takes_shift and prev_k is not None:
                    kwargs["shift"] = max(1, k - prev_k)
                plan = np.array(self.agent.plan(obs, **kwargs), dtype=np.float64)   # our copy
                if plan.ndim != 2 or plan.shape[1] != self._low.shape[0] or plan.shape[0] < 1:
                    raise ValueError(f"agent.plan: expected a plan of shape (H, "
                                     f"{self._low.shape[0]}), got {plan.shape}")
                elapsed = time.perf_counter() - t0
            except BaseException as exc:  # re-raised in the caller's thread by step()
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if epoch == self._epoch:
                    self._plan, self._plan_k, self._plan_t = plan, k, t0
                    self._replans += 1
                    self._plan_s.append(elapsed)
                    self._cond.notify_all()
            prev_k = k

    # ------------------------------------------------------------------ caller's side
    def _raise_if_failed(self):
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("AsyncController: step() after close()")

    def step(self, obs):
        """Hand over the current observation; return the action (D_act,) for this step.

        Parameters
        ----------
        obs : float array (D_obs,)

        Returns
        -------
        action : array (D_act,) in the agent's action dtype, inside the bounds

        Raises
        ------
        Exception
            Whatever the planning thread raised (re-raised here, on this and every later call).
        """
        obs = np.array(as_float_array("obs", obs, dtype=np.float64, ndim=1))   # our own copy
        now = time.perf_counter()
        with self._cond:
            self._raise_if_failed()
            self._k += 1
            self._n_steps += 1
            k = self._k
            self._obs, self._obs_k = obs, k
            if self._t_first is None:
                self._t_first = now
            self._cond.notify_all()
            if self._plan is None:
                if self.first_step == "middle":
                    return ((self._low + self._high) / 2).astype(self._dtype)
                self._cond.wait_for(lambda: self._plan is not None or self._error is not None
                                    or self._closed)
                self._raise_if_failed()
            plan, plan_k, plan_t = self._plan, self._plan_k, self._plan_t
            age = k - plan_k
            self._ages_steps.append(age)
            self._ages_s.append(now - plan_t)
            if age > 1:
                self._missed += 1
            if age >= plan.shape[0]:
                self._stale += 1
        a = plan[min(age, plan.shape[0] - 1)]
        return np.minimum(np.maximum(a, self._low), self._high).astype(self._dtype)

    def reset(self):
        """Start a new episode: drop the current plan; the agent is reset in the planning thread.

        The next ``step`` behaves like the first one (see ``first_step``).
        """
        with self._cond:
            self._raise_if_failed()
            self._epoch += 1
            self._plan = None
            self._obs, self._obs_k = None, -1
            self._k = -1
            self._cond.notify_all()

    @property
    def stats(self):
        """Statistics since the start: a dict.

        ``steps``; ``replans``; ``replans_per_second`` (over the time since the first step);
        ``plan_age_steps_p50/p99`` and ``plan_age_ms_p50/p99`` (age at use of the plan an action
        came from: steps since its observation, and time since its planning started);
        ``missed`` (steps served by a plan older than one step: the planner did not keep up);
        ``stale`` (steps beyond the plan's horizon); ``plan_ms_p50/p99`` (time per plan);
        ``slow_plans`` (plans longer than ``control_period``, when given).
        """
        with self._cond:
            ages = np.asarray(self._ages_steps, dtype=np.float64)
            ages_s = np.asarray(self._ages_s)
            plan_s = np.asarray(self._plan_s)
            span = (time.perf_counter() - self._t_first) if self._t_first is not None else 0.0
            pct = (lambda x, q, s=1.0: float(np.percentile(x, q)) * s if x.size else None)
            return {
                "steps": self._n_steps,
                "replans": self._replans,
                "replans_per_second": self._replans / span if span > 0 else 0.0,
                "plan_age_steps_p50": pct(ages, 50), "plan_age_steps_p99": pct(ages, 99),
                "plan_age_ms_p50": pct(ages_s, 50, 1e3), "plan_age_ms_p99": pct(ages_s, 99, 1e3),
                "missed": self._missed, "stale": self._stale,
                "plan_ms_p50": pct(plan_s, 50, 1e3), "plan_ms_p99": pct(plan_s, 99, 1e3),
                "slow_plans": (int(np.sum(plan_s > self.control_period))
                               if self.control_period is not None else None),
            }

    @property
    def running(self):
        """True while the planning thread is alive."""
        return self._thread.is_alive()

    def close(self, timeout=None):
        """Stop the planning thread and wait for it (after its current plan); idempotent.

        Restores the interpreter's GIL switch interval if the controller changed it.
        """
        with self._cond:
            already = self._closed
            self._closed = True
            self._stop = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if not already and self._old_switch is not None:
            if sys.getswitchinterval() == self._set_switch:
                sys.setswitchinterval(self._old_switch)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
