"""Zero-order optimizers over action sequences: random shooting, CEM, iCEM and MPPI.

They know nothing about models: ``optimize(objective, lower, upper, init_mean=None)`` maximizes
``objective``, a callable mapping candidate sequences (P, H, D_act) to values (P,), over sequences
inside the box ``[lower, upper]`` and returns the chosen sequence (H, D_act). The sampling
distribution starts from its default for every call unless ``init_mean`` is given (the agent passes
the previous plan shifted by one step when warm starting). Sampling and the elite statistics are
NumPy on (P, H, D_act) arrays, except CEM's, which are two small compiled calls per iteration
(``_kernels._cem_sample``/``_cem_refit``, NumPy twins in ``_reference``): at the size of the small
planning benchmark (benchmarks/bench_planning.py) the NumPy version was a visible share of
``act()`` (benchmarks/README.md).

Time budget: ``optimize(..., time_budget=s)`` starts the first iteration, then starts another only
if the elapsed time plus the estimated cost of that iteration (the last measured time per candidate
times its population) stays within ``s``; the best plan so far is returned. ``last_iterations``
records how many iterations scored at least one candidate and ``last_info`` what the call did.

Within an iteration, an objective that has a method ``evaluate_until(samples, deadline, clock) ->
(values (P,), n)`` (the model rollout's objective has) is asked to score the candidates in order and
to stop before the deadline (``clock()`` at most ``deadline``, in the optimizer's clock); only its
first ``n`` values are read and the update uses those members alone: random shooting and iCEM keep
the best of them, CEM and iCEM refit to the best ``min(num_elites, n)`` of them, MPPI weights only
them. An iteration cut short ends the call. A plain callable is always evaluated whole (it cannot
be interrupted), so with one the budget holds between iterations only.

Non-finite values (NaN, +-inf: a diverged model, a reward returning NaN) mark a candidate as
invalid: it is never chosen and never an elite. If no candidate of the call had a finite value, or
none could be scored within the budget, the call returns its fallback: ``init_mean`` when given,
else the middle of the bounds, with a ``RuntimeWarning`` in the non-finite case;
``last_info["fallback"]`` says which.
"""
import time
import warnings

import numpy as np

from fastmbrl import backend
from fastmbrl._validate import (alpha_in_range, as_float_array, check_bool, check_int, check_float,
                                check_seed, check_time_budget)
from fastmbrl.config import PlannerConfig


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
        if partial is not None:
            values, n = partial(samples, deadline, self.clock)
            n = int(n)
            if not 0 <= n <= n_cand:
                raise ValueError(f"objective.evaluate_until: expected a count in [0, {n_cand}], "
                                 f"got {n}")
        else:
            values, n = objective(samples), n_cand
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n_cand,):
            raise ValueError(f"objective: expected values of shape ({n_cand},), got "
                             f"{values.shape}")
        if n < n_cand:
            values = values[:n]
            state["cut"] = True
        # a diverging model gives NaN or inf; such a candidate must never be chosen
        finite = np.isfinite(values)
        n_finite = int(np.count_nonzero(finite))
        if n_finite < n:
            values = np.where(finite, values, -np.inf)
        state["n_sampled"] += n_cand
        state["n_evaluated"] += n
        state["n_finite"] += n_finite
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
            It may also offer ``evaluate_until(samples, deadline, clock) -> (values (P,), n)`` to
            be cut within an iteration under a time budget (see the module notes).
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
        ``last_info`` is then a dict: ``n_evaluated`` (candidates scored), ``population``
        (candidates sampled), ``n_finite`` (scored with a finite value), ``iterations_done``
        (iterations that scored at least one), ``budget_cut`` (the budget stopped the call
        early), ``fallback`` (None, or "init_mean" / "middle" when nothing usable was scored).
        """
        lo, hi, init_mean, time_budget = self._prepare(lower, upper, init_mean, time_budget)
        start = self.clock()
        state = self._init_state(lo, hi, init_mean)
        state.update(deadline=None if time_budget is None else start + time_budget, cut=False,
                     n_sampled=0, n_evaluated=0, n_finite=0)
        self.last_iterations = 0
        budget_cut = False
        for it in range(self.iterations):
            if time_budget is not None and it > 0 and self._sec_per_candidate is not None:
                estimate = self._sec_per_candidate * self._population_at(it)
                if self.clock() - start + estimate > time_budget:
                    budget_cut = True
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
                budget_cut = True
                break
        self.last_best_value = state["best_value"]
        fallback = None
        if state["n_finite"] == 0:
            fallback = "middle" if init_mean is None else "init_mean"
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
                          "budget_cut": budget_cut, "fallback": fallback}
        return plan

    def _no_result(self, state):
        """Called instead of ``_result`` when no candidate had a finite value."""

    @staticmethod
    def _track_best(state, samples, values):
        if values.shape[0] == 0:
            return
        i = int(np.argmax(values))
        if values[i] > state["best_value"] or state["best"] is None:
            state["best_value"] = float(values[i])
            state["best"] = samples[i].copy()


class RandomShooting(_Optimizer):
    """Random shooting: sample uniform sequences, keep the best.

    Parameters
    ----------
    horizon : int
        H, steps per sequence.
    population : int
        P, sequences sampled per iteration.
    iterations : int
        Rounds of sampling (each independent; more rounds = more samples within a time budget).
    seed : int or None

    Notes
    -----
    The warm-start mean, when given, is evaluated alongside the samples, so a good previous plan is
    never lost. Nagabandi et al. (2018), "Neural network dynamics for model-based deep RL with
    model-free fine-tuning".
    """

    def __init__(self, horizon=PlannerConfig.horizon, population=1000, iterations=1, seed=None):
        super().__init__(horizon, population, iterations, seed)

    def _init_state(self, lo, hi, init_mean):
        return {"best": None, "best_value": -np.inf, "init_mean": init_mean}

    def _iterate(self, objective, state, it, lo, hi):
        samples = self.rng.uniform(lo, hi, size=(self.population,) + lo.shape)
        if it == 0 and state["init_mean"] is not None:
            samples[0] = state["init_mean"]
        values, _ = self._evaluate(objective, samples, state)
        self._track_best(state, samples, values)

    def _result(self, state, lo, hi):
        return np.clip(state["best"], lo, hi)


def _truncated_normal(rng, shape, bound=2.0):
    """Standard normal samples truncated to [-bound, bound] (rejection: draw extra, keep inside).

    At ``bound = 2`` 4.6% fall outside, so one draw of 1.1 n + 16 almost always suffices; this
    keeps the per-iteration overhead to a handful of NumPy calls (it matters for small configs).
    """
    n = 1
    for s in shape:
        n *= int(s)
    if n == 0:
        return np.empty(shape)
    # the first draw almost always suffices: take it without the concatenation (same stream use)
    z = rng.standard_normal(int(1.1 * n) + 16)
    kept = z[np.abs(z) <= bound]
    while kept.size < n:
        z = rng.standard_normal(int(1.1 * (n - kept.size)) + 16)
        kept = np.concatenate([kept, z[np.abs(z) <= bound]])
    return kept[:n].reshape(shape)


class CEM(_Optimizer):
    """Cross-entropy method over action sequences (maximizing).

    Parameters
    ----------
    horizon : int
        H.
    population : int
        P, sequences sampled per iteration.
    elite_frac : float in (0, 1]
        Fraction of the population kept as elites (at least one).
    iterations : int
        Refits of the sampling distribution per call.
    alpha : float in [0, 1)
        Smoothing: ``mean = alpha * mean + (1 - alpha) * elite_mean`` (same for the variance);
        1 would never move the distribution (the rule ``alpha_in_range``, shared with the config).
    init_std : float or array (D_act,), optional
        Initial standard deviation; default a quarter of the bounds' width.
    return_mean_elites : bool
        Return the final distribution mean (True, the elites' smoothed mean) or the best sample
        seen.
    seed : int or None

    Notes
    -----
    The defaults of ``horizon``, ``population``, ``elite_frac``, ``iterations`` and ``alpha`` are
    the run configuration's (``fastmbrl.config.PlannerConfig``): 15, 350, 0.1, 5 and 0.1.

    Samples are Gaussian truncated at two standard deviations, and the variance is capped so that
    two standard deviations stay inside the bounds (as mbrl-lib does); a final clip guards rounding.
    Rubinstein (1997); Chua et al. (2018), PETS, Sec. 5. Course notes Sec. 5.1.
    """

    def __init__(self, horizon=PlannerConfig.horizon, population=PlannerConfig.population,
                 elite_frac=PlannerConfig.elite_frac, iterations=PlannerConfig.iterations,
                 alpha=PlannerConfig.alpha, init_std=None, return_mean_elites=True, seed=None):
        super().__init__(horizon, population, iterations, seed)
        self.elite_frac = _check_fraction("elite_frac", elite_frac, closed_low=False)
        self.alpha = _check_alpha(alpha)
        self.num_elites = max(1, int(round(self.elite_frac * self.population)))
        if init_std is not None:
            std = as_float_array("init_std", init_std, dtype=np.float64)
            if np.any(std < 0):
                raise ValueError(f"init_std: expected a number or array (D_act,) of values >= 0, "
                                 f"got {init_std!r}")
        self.init_std = init_std
        self.return_mean_elites = check_bool("return_mean_elites", return_mean_elites)

    def _init_state(self, lo, hi, init_mean):
        mean = (lo + hi) / 2 if init_mean is None else init_mean.copy()
        std = (hi - lo) / 4 if self.init_std is None else np.broadcast_to(
            as_float_array("init_std", self.init_std, dtype=np.float64), lo.shape).copy()
        # float64 C-contiguous copies: the compiled refit updates them in place
        return {"mean": np.ascontiguousarray(mean, dtype=np.float64),
                "var": np.ascontiguousarray(std ** 2, dtype=np.float64), "best": None,
                "best_value": -np.inf}

    def _iterate(self, objective, state, it, lo, hi):
        k = _kernels()
        mean, var = state["mean"], state["var"]
        z = _truncated_normal(self.rng, (self.population,) + mean.shape)
        samples = np.empty_like(z)
        k._cem_sample(mean, var, lo, hi, z, samples)
        values, n_finite = self._evaluate(objective, samples, state)
        n = values.shape[0]
        self._track_best(state, samples, values)
        if n_finite >= self.num_elites:   # the elites are all finite (-inf sorts last)
            k._cem_refit(samples[:n], values, self.num_elites, self.alpha, mean, var)   # in place
        elif n_finite > 0:              # fewer valid members than elites: refit to those
            finite = values > -np.inf
            k._cem_refit(np.ascontiguousarray(samples[:n][finite]), values[finite], n_finite,
                         self.alpha, mean, var)

    def _result(self, state, lo, hi):
        plan = state["mean"] if self.return_mean_elites else state["best"]
        return np.minimum(np.maximum(plan, lo), hi)   # = np.clip for lo <= hi, cheaper per call


def colored_noise(beta, shape, rng):
    """Gaussian noise with power spectral density ``1 / f**beta`` along the last axis.

    Parameters
    ----------
    beta : float >= 0
        Colour exponent: 0 white, 1 pink, 2 red (Brownian-like, smoother in time).
    shape : tuple of int
        Output shape; the last axis is time (length T).
    rng : numpy.random.Generator

    Returns
    -------
    float64 array of ``shape`` with zero mean and unit variance per entry (in expectation).

    Notes
    -----
    Random Fourier coefficients scaled by ``f**(-beta/2)`` (the lowest frequency standing in for 0),
    transformed back with an inverse real FFT and normalised by the theoretical standard deviation
    (Timmer and Koenig 1995). Pinneri et al. (2020), iCEM, Sec. 3.
    """
    n_time = shape[-1]
    freqs = np.fft.rfftfreq(n_time)
    freqs[0] = 1.0 / n_time
    scale = freqs ** (-beta / 2.0)
    # exact std of the output: DC and (even T) Nyquist terms are real with variance 2 s^2, the
    # others contribute 4 s^2 (real and imaginary parts, counted twice by the real inverse FFT)
    power = 2 * scale[0] ** 2
    if n_time % 2 == 0:
        power += 4 * np.sum(scale[1:-1] ** 2) + 2 * scale[-1] ** 2
    else:
        power += 4 * np.sum(scale[1:] ** 2)
    sigma = np.sqrt(power) / n_time
    coef_shape = tuple(shape[:-1]) + (freqs.size,)
    real = rng.standard_normal(coef_shape) * scale
    imag = rng.standard_normal(coef_shape) * scale
    if n_time % 2 == 0:  # the Nyquist coefficient of a real signal is real
        imag[..., -1] = 0.0
        real[..., -1] *= np.sqrt(2.0)
    imag[..., 0] = 0.0
    real[..., 0] *= np.sqrt(2.0)
    return np.fft.irfft(real + 1j * imag, n=n_time, axis=-1) / sigma


class ICEM(_Optimizer):
    """Improved cross-entropy method (iCEM, Pinneri et al. 2020), maximizing.

    Parameters
    ----------
    horizon : int
        H.
    population : int
        P, samples in the first iteration; iteration ``i`` samples
        ``max(P * population_decay**-i, 2 * num_elites)``.
    elite_frac : float in (0, 1]
        Elites as a fraction of ``population``.
    iterations : int
    alpha : float in [0, 1)
        Momentum of the mean and standard deviation updates (the rule ``alpha_in_range``).
    noise_beta : float >= 0
        Colour of the sampling noise along time (0 white; the paper uses 2-2.5 for most tasks).
    population_decay : float >= 1
    keep_elites_frac : float in [0, 1]
        Fraction of the elites carried into the next iteration (and, shifted by one step, into the
        next call when ``shift_elites``).
    shift_elites : bool
        Reuse the last call's elites, shifted by one step, in the first iteration of the next call.
    add_mean : bool
        Evaluate the distribution mean in the last iteration.
    init_std_frac : float
        Initial standard deviation as a fraction of half the bounds' width.
    seed : int or None

    Notes
    -----
    Returns the best sequence evaluated in the call (iCEM executes the best, not the mean).
    Samples are clipped to the bounds. Pinneri et al. (2020), "Sample-efficient cross-entropy method
    for real-time planning", CoRL, Alg. 1.
    """

    def __init__(self, horizon=30, population=300, elite_frac=PlannerConfig.elite_frac,
                 iterations=3, alpha=PlannerConfig.alpha, noise_beta=2.0, population_decay=1.25,
                 keep_elites_frac=0.3, shift_elites=True, add_mean=True, init_std_frac=0.5,
                 seed=None):
        super().__init__(horizon, population, iterations, seed)
        self.elite_frac = _check_fraction("elite_frac", elite_frac, closed_low=False)
        self.alpha = _check_alpha(alpha)
        self.noise_beta = check_float("noise_beta", noise_beta, minimum=0.0)
        self.population_decay = check_float("population_decay", population_decay, minimum=1.0)
        self.keep_elites_frac = _check_fraction("keep_elites_frac", keep_elites_frac)
        self.shift_elites = check_bool("shift_elites", shift_elites)
        self.add_mean = check_bool("add_mean", add_mean)
        self.init_std_frac = _check_fraction("init_std_frac", init_std_frac, high=np.inf,
                                             closed_low=False)
        self.num_elites = max(1, int(round(self.elite_frac * self.population)))
        self._kept = None

    def reset(self):
        """Drop the elites kept from the previous call (call at an episode start)."""
        self._kept = None

    def _population_at(self, iteration):
        n = int(self.population * self.population_decay ** (-iteration))
        return max(n, 2 * self.num_elites)

    def _init_state(self, lo, hi, init_mean):
        mean = (lo + hi) / 2 if init_mean is None else init_mean.copy()
        std = self.init_std_frac * (hi - lo) / 2
        kept = None
        if self.shift_elites and self._kept is not None and self._kept.shape[1:] == lo.shape:
            # shift by one step; the new last step is drawn from the fresh distribution
            kept = np.empty_like(self._kept)
            kept[:, :-1] = self._kept[:, 1:]
            kept[:, -1] = mean[-1] + std[-1] * self.rng.standard_normal(kept[:, -1].shape)
            kept = np.clip(kept, lo, hi)
        return {"mean": mean, "std": std, "kept": kept, "best": None, "best_value": -np.inf,
                "elites": None}

    def _iterate(self, objective, state, it, lo, hi):
        mean, std = state["mean"], state["std"]
        n = self._population_at(it)
        noise = colored_noise(self.noise_beta, (n, mean.shape[1], self.horizon), self.rng)
        samples = mean + std * noise.transpose(0, 2, 1)
        parts = [samples]
        if state["kept"] is not None:
            parts.append(state["kept"])
        if self.add_mean and it == self.iterations - 1:
            parts.append(mean[None])
        if state["deadline"] is not None and len(parts) > 1:
            # under a budget the carried elites and the mean are scored first: they are the
            # likeliest to be good and the last candidates may not be scored at all
            parts = parts[1:] + parts[:1]
        samples = np.clip(np.concatenate(parts) if len(parts) > 1 else samples, lo, hi)
        values, n_finite = self._evaluate(objective, samples, state)
        self._track_best(state, samples, values)
        k = min(self.num_elites, n_finite)    # elites among the scored, finite members only
        if k == 0:
            return
        order = np.argsort(-values, kind="stable")[:k]
        elites = samples[order]
        state["elites"] = elites
        n_keep = int(round(self.keep_elites_frac * k))
        state["kept"] = elites[:n_keep].copy() if n_keep > 0 else None
        state["mean"] = self.alpha * mean + (1 - self.alpha) * elites.mean(axis=0)
        state["std"] = self.alpha * std + (1 - self.alpha) * elites.std(axis=0)

    def _result(self, state, lo, hi):
        n_keep = int(round(self.keep_elites_frac * self.num_elites))
        self._kept = state["elites"][:n_keep].copy() if n_keep > 0 else None
        return np.clip(state["best"], lo, hi)

    def _no_result(self, state):
        self._kept = None


class MPPI(_Optimizer):
    """Model predictive path integral control (Williams et al.), maximizing.

    Parameters
    ----------
    horizon : int
        H.
    population : int
        K, perturbed sequences per iteration.
    iterations : int
        Updates of the nominal sequence per call (MPPI uses 1 per control step, warm started).
    temperature : float > 0
        lambda; weights are ``exp((value - max value) / lambda)``, so it is in units of the returns.
    noise_std : float or array (D_act,)
        Perturbation standard deviation as a fraction of half the bounds' width.
    seed : int or None

    Notes
    -----
    ``U <- U + sum_k w_k (V_k - U)``, ``w_k proportional to exp(S_k / lambda)``, where ``V_k =
    clip(U + eps_k)``; using the clipped perturbation keeps ``U`` a convex combination of in-bound
    sequences. Returns ``U``. Williams et al. (2017), "Information theoretic MPC for model-based
    RL", ICRA, Alg. 2.
    """

    def __init__(self, horizon=PlannerConfig.horizon, population=500, iterations=1,
                 temperature=1.0, noise_std=0.3, seed=None):
        super().__init__(horizon, population, iterations, seed)
        self.temperature = check_float("temperature", temperature, minimum=0.0, strict_min=True)
        frac = as_float_array("noise_std", noise_std, dtype=np.float64)
        if np.any(frac < 0):
            raise ValueError(f"noise_std: expected a number or array (D_act,) of values >= 0, "
                             f"got {noise_std!r}")
        self.noise_std = noise_std

    def _init_state(self, lo, hi, init_mean):
        mean = (lo + hi) / 2 if init_mean is None else init_mean.copy()
        frac = as_float_array("noise_std", self.noise_std, dtype=np.float64)
        if np.any(frac < 0):
            raise ValueError(f"noise_std: expected values >= 0, got {self.noise_std!r}")
        return {"mean": mean, "std": frac * (hi - lo) / 2, "best": None, "best_value": -np.inf}

    def _iterate(self, objective, state, it, lo, hi):
        mean = state["mean"]
        samples = mean + state["std"] * self.rng.standard_normal((self.population,) + mean.shape)
        np.clip(samples, lo, hi, out=samples)
        values, _ = self._evaluate(objective, samples, state)
        samples = samples[:values.shape[0]]     # the scored members alone are weighted
        self._track_best(state, samples, values)
        finite = np.isfinite(values)
        if finite.any():
            w = np.zeros_like(values)
            w[finite] = np.exp((values[finite] - values[finite].max()) / self.temperature)
            w /= w.sum()
            state["mean"] = mean + np.tensordot(w, samples - mean, axes=1)

    def _result(self, state, lo, hi):
        return np.clip(state["mean"], lo, hi)
