"""What the zero-order optimizers share (``fastmbrl.planning.optimizers``, its notes): the checks
of the action bounds and of fractions, and :class:`_Optimizer`, the iteration loop with a time
budget, non-finite values and the fallback plan, around each family's ``_iterate``.
"""
import time
import warnings

import numpy as np

from fastmbrl import backend
from fastmbrl._validate import alpha_in_range, as_float_array, check_float, check_int, check_seed, \
    check_time_budget


def _kernels():
    return backend.kernels("fastmbrl.planning._kernels")


def _check_fraction(name, value, low=0.0, high=1.0, closed_low=True):
    return check_float(name, value, minimum=low, maximum=None if high == np.inf else high,
                       strict_min=not closed_low)


def _check_alpha(alpha):
    if not alpha_in_range(alpha):
        check_float("alpha", alpha, 0.0, 1.0, strict_max=True)   # raises the typed error
        raise ValueError(f"alpha: expected a finite number in [0.0, 1.0), got {alpha!r}")
    return float(alpha)


def check_bounds(lower, upper, horizon):
    """Broadcast action bounds to (H, D_act) float64 and check ``lower <= upper``.

    Parameters
    ----------
    lower, upper : float arrays (D_act,) or (H, D_act)
    horizon : int

    Returns
    -------
    lower, upper : float64 arrays (H, D_act)
    """
    lo = as_float_array("lower", lower, dtype=np.float64)
    hi = as_float_array("upper", upper, dtype=np.float64)
    for name, b in (("lower", lo), ("upper", hi)):
        if b.ndim not in (1, 2) or (b.ndim == 2 and b.shape[0] != horizon):
            raise ValueError(f"{name}: expected shape (D_act,) or ({horizon}, D_act), got "
                             f"{b.shape}")
    if lo.shape[-1] != hi.shape[-1]:
        raise ValueError(f"lower, upper: action widths differ ({lo.shape[-1]} vs {hi.shape[-1]})")
    # filled by assignment: np.broadcast_to(...).copy() costs several times more per act()
    lo_h = np.empty((horizon, lo.shape[-1]))
    lo_h[...] = lo
    hi_h = np.empty((horizon, hi.shape[-1]))
    hi_h[...] = hi
    lo, hi = lo_h, hi_h
    if (lo > hi).any():
        h, a = np.argwhere(lo > hi)[0]
        raise ValueError(f"lower, upper: expected lower <= upper, got lower[{h}, {a}] = "
                         f"{lo[h, a]} > upper[{h}, {a}] = {hi[h, a]}")
    with np.errstate(over="ignore"):
        width = hi - lo
    if not np.isfinite(width).all():
        h, a = np.argwhere(~np.isfinite(width))[0]
        raise ValueError(f"lower, upper: the width upper - lower overflows float64 at [{h}, {a}] "
                         f"({lo[h, a]} to {hi[h, a]}); the samplers need a finite width")
    return lo, hi


class _Optimizer:
    """Shared machinery: argument checks, the iteration loop with a time budget, best-so-far."""

    def __init__(self, horizon, population, iterations, seed):
        self.horizon = check_int("horizon", horizon)
        self.population = check_int("population", population)
        self.iterations = check_int("iterations", iterations)
        self.seed = check_seed("seed", seed, allow_none=True)
        self.rng = np.random.default_rng(seed)
        self.clock = time.perf_counter
        self.last_iterations = 0
        self.last_best_value = -np.inf
        self.last_info = None
        self.last_evaluated_at = None     # clock() when the last call's last evaluation ended
        self._sec_per_candidate = None

    def reset(self):
        """Forget state carried between calls (kept elites, timing estimates stay)."""

    def _population_at(self, iteration):
        return self.population

    def _evaluate(self, objective, samples, state):
        """Values of the candidates scored (a prefix of ``samples``, all without a deadline).

        Non-finite values are mapped to -inf; ``state`` counts sampled / scored / finite members.
        """
        n_cand = samples.shape[0]
        deadline = state["deadline"]
        partial = getattr(objective, "evaluate_until", None) if deadline is not None else None
        n_aborted = 0
        if partial is not None:
            result = partial(samples, deadline, self.clock)
            values, n = result[0], int(result[1])
            if not 0 <= n <= n_cand:
                raise ValueError(f"objective.evaluate_until: expected a count in [0, {n_cand}], "
                                 f"got {n}")
            if len(result) > 2:
                n_aborted = int(result[2])
        else:
            values, n = objective(samples), n_cand
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n_cand,):
            raise ValueError(f"objective: expected values of shape ({n_cand},), got "
                             f"{values.shape}")
        if n < n_cand:
            values = values[:n]
            state["cut"] = True
            state["cut_by"] = "aborted" if n_aborted > 0 else "candidates"
        state["n_aborted"] += n_aborted
        # a diverging model gives NaN or inf; such a candidate must never be chosen
        finite = np.isfinite(values)
        n_finite = int(np.count_nonzero(finite))
        if n_finite < n:
            values = np.where(finite, values, -np.inf)
        state["n_sampled"] += n_cand
        state["n_evaluated"] += n
        state["n_finite"] += n_finite
        self.last_evaluated_at = self.clock()
        return values, n_finite

    def _prepare(self, lower, upper, init_mean, time_budget):
        lo, hi = check_bounds(lower, upper, self.horizon)
        if init_mean is not None:
            init_mean = as_float_array("init_mean", init_mean, dtype=np.float64,
                                       shape=(self.horizon, lo.shape[1]))
            # = np.clip (lo <= hi and the values are finite, both checked), at a third of its cost
            init_mean = np.minimum(np.maximum(init_mean, lo), hi)
        time_budget = check_time_budget("time_budget", time_budget)
        return lo, hi, init_mean, time_budget

    def optimize(self, objective, lower, upper, init_mean=None, time_budget=None):
        """Maximize ``objective`` over action sequences inside ``[lower, upper]``.

        Parameters
        ----------
        objective : callable
            Maps float64 array (P, H, D_act) of candidates to their values (P,); larger is better.
            Under a time budget it may also offer ``evaluate_until(samples, deadline, clock) ->
            (values (P,), n[, n_aborted])``, to be cut within an iteration, and
            ``budget_check(seconds, horizon) -> None or reason``, to refuse a budget too small
            for one candidate before anything is sampled (see the module notes).
        lower, upper : float arrays (D_act,) or (H, D_act)
            Action bounds, ``lower <= upper``, with a finite width.
        init_mean : float array (H, D_act), optional
            Centre of the first sampling distribution (e.g. the previous plan shifted by one step);
            default: the middle of the bounds. Also the fallback plan.
        time_budget : float, optional
            Seconds; stop iterating when the next iteration would exceed it, and cut an iteration
            short when the objective supports ``evaluate_until``.

        Returns
        -------
        plan : float64 array (H, D_act), inside the bounds

        Notes
        -----
        ``last_info`` is then a dict:

        - ``n_evaluated`` (candidates scored), ``population`` (candidates sampled), ``n_finite``
          (scored with a finite value), ``iterations_done`` (iterations that scored at least one);
        - ``budget_cut``: the budget stopped the call early; ``cut_by`` says how: None (not cut),
          ``"next_iteration"`` (the next iteration's estimated cost did not fit in what was
          left), ``"candidates"`` (the rest of an iteration's candidates did not fit: a prefix was
          scored), ``"aborted"`` (rollouts running at the deadline were stopped), or the reason
          of a budget refused before anything started (below);
        - ``n_aborted``: candidates whose rollout was started but stopped at the deadline (their
          work is lost);
        - ``fallback``: None, or ``"init_mean"`` / ``"middle"`` when nothing usable was scored,
          and ``fallback_reason``: None, ``"budget_below_one_step"`` /
          ``"budget_below_one_candidate"`` (the budget was below the estimated cost of one model
          step / one candidate's rollout, so nothing was started: the call returned at once),
          another reason of the objective's ``budget_check`` (the model rollout's
          ``"machine_load"``), ``"budget_spent"`` (the budget ran out before any candidate was
          scored) or ``"non_finite"`` (every value scored was NaN or infinite).
        """
        start = self.clock()
        lo, hi, init_mean, time_budget = self._prepare(lower, upper, init_mean, time_budget)
        self.last_iterations = 0
        self.last_evaluated_at = None
        if time_budget is not None:
            refused = self._refuse_budget(objective, time_budget - (self.clock() - start))
            if refused is not None:
                return self._fallback_at_once(lo, hi, init_mean, refused)
        state = self._init_state(lo, hi, init_mean)
        state.update(deadline=None if time_budget is None else start + time_budget, cut=False,
                     cut_by=None, n_sampled=0, n_evaluated=0, n_finite=0, n_aborted=0)
        for it in range(self.iterations):
            if time_budget is not None and it > 0 and self._sec_per_candidate is not None:
                estimate = self._sec_per_candidate * self._population_at(it)
                if self.clock() - start + estimate > time_budget:
                    state["cut_by"] = "next_iteration"
                    break
            t0 = self.clock()
            before = state["n_evaluated"]
            self._iterate(objective, state, it, lo, hi)
            n_evaluated = state["n_evaluated"] - before
            elapsed = self.clock() - t0
            if n_evaluated > 0:
                self._sec_per_candidate = elapsed / n_evaluated
                self.last_iterations = it + 1
            if state["cut"]:
                break
        self.last_best_value = state["best_value"]
        fallback = reason = None
        if state["n_finite"] == 0:
            fallback = "middle" if init_mean is None else "init_mean"
            reason = "non_finite" if state["n_evaluated"] > 0 else "budget_spent"
            if state["n_evaluated"] > 0:
                warnings.warn(f"{type(self).__name__}: all {state['n_evaluated']} candidates "
                              f"scored had a non-finite value (a diverged model or a reward "
                              f"returning NaN/inf); returning the fallback plan ({fallback})",
                              RuntimeWarning, stacklevel=2)
            self._no_result(state)
            plan = (lo + hi) / 2 if init_mean is None else init_mean.copy()
        else:
            plan = self._result(state, lo, hi)
        self.last_info = {"n_evaluated": state["n_evaluated"], "population": state["n_sampled"],
                          "n_finite": state["n_finite"], "iterations_done": self.last_iterations,
                          "budget_cut": state["cut_by"] is not None, "fallback": fallback,
                          "fallback_reason": reason, "cut_by": state["cut_by"],
                          "n_aborted": state["n_aborted"]}
        return plan

    def _refuse_budget(self, objective, seconds):
        """The objective's reason to refuse ``seconds`` (None: it may fit one candidate, or the
        objective cannot tell)."""
        if seconds <= 0:
            return "budget_below_one_step"
        check = getattr(objective, "budget_check", None)
        return None if check is None else check(seconds, self.horizon)

    def _fallback_at_once(self, lo, hi, init_mean, reason):
        """The fallback plan of a budget refused before anything was sampled (``last_info``)."""
        self.last_best_value = -np.inf
        self._no_result(None)
        self.last_info = {"n_evaluated": 0, "population": 0, "n_finite": 0, "iterations_done": 0,
                          "budget_cut": True, "fallback": "middle" if init_mean is None else
                          "init_mean", "fallback_reason": reason, "cut_by": reason,
                          "n_aborted": 0}
        return (lo + hi) / 2 if init_mean is None else init_mean.copy()

    def _no_result(self, state):
        """Called instead of ``_result`` when no candidate had a finite value (``state`` is None
        when the budget was refused before anything was sampled)."""

    @staticmethod
    def _track_best(state, samples, values):
        if values.shape[0] == 0:
            return
        i = int(np.argmax(values))
        if values[i] > state["best_value"] or state["best"] is None:
            state["best_value"] = float(values[i])
            state["best"] = samples[i].copy()
