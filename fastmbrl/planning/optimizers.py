"""Zero-order optimizers over action sequences: random shooting, CEM, iCEM and MPPI.

They know nothing about models: ``optimize(objective, lower, upper, init_mean=None)`` maximizes
``objective``, a callable mapping candidate sequences (P, H, D_act) to values (P,), over sequences
inside the box ``[lower, upper]`` and returns the chosen sequence (H, D_act). The sampling
distribution starts from its default for every call unless ``init_mean`` is given (the agent passes
the previous plan shifted by one step when warm starting). Sampling and the elite statistics are
NumPy on (P, H, D_act) arrays, except CEM's, which are two small compiled calls per iteration
(``_kernels._cem_sample``/``_cem_refit``, NumPy twins in ``_reference``): at config (a)'s size the
NumPy version cost ~60 us per iteration, 5% of the whole ``act()``.

Time budget: ``optimize(..., time_budget=s)`` runs the first iteration, then starts another only if
the elapsed time plus the estimated cost of that iteration (the last measured time per candidate
times its population) stays within ``s``; the best plan so far is returned. ``last_iterations``
records how many ran.
"""
import time

import numpy as np

from fastmbrl import backend
from fastmbrl._validate import as_float_array, check_int


def _kernels():
    if backend.use_compiled():
        from fastmbrl.planning import _kernels as k
    else:
        from fastmbrl.planning import _reference as k
    return k


def _check_fraction(name, value, low=0.0, high=1.0, closed_low=True):
    ok = (value >= low if closed_low else value > low) and value <= high
    if not np.isfinite(value) or not ok:
        bracket = "[" if closed_low else "("
        raise ValueError(f"{name}: expected a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


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
    return lo, hi


class _Optimizer:
    """Shared machinery: argument checks, the iteration loop with a time budget, best-so-far."""

    def __init__(self, horizon, population, iterations, seed):
        self.horizon = check_int("horizon", horizon)
        self.population = check_int("population", population)
        self.iterations = check_int("iterations", iterations)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.clock = time.perf_counter
        self.last_iterations = 0
        self.last_best_value = -np.inf
        self._sec_per_candidate = None

    def reset(self):
        """Forget state carried between calls (kept elites, timing estimates stay)."""

    def _population_at(self, iteration):
        return self.population

    def _evaluate(self, objective, samples):
        values = np.asarray(objective(samples), dtype=np.float64)
        if values.shape != (samples.shape[0],):
            raise ValueError(f"objective: expected values of shape ({samples.shape[0]},), got "
                             f"{values.shape}")
        # a diverging model gives NaN; such a candidate must never be chosen
        return np.where(np.isnan(values), -np.inf, values)

    def _prepare(self, lower, upper, init_mean, time_budget):
        lo, hi = check_bounds(lower, upper, self.horizon)
        if init_mean is not None:
            init_mean = as_float_array("init_mean", init_mean, dtype=np.float64,
                                       shape=(self.horizon, lo.shape[1]))
            # = np.clip (lo <= hi and the values are finite, both checked), at a third of its cost
            init_mean = np.minimum(np.maximum(init_mean, lo), hi)
        if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
            raise ValueError(f"time_budget: expected a positive number of seconds or None, got "
                             f"{time_budget!r}")
        return lo, hi, init_mean

    def optimize(self, objective, lower, upper, init_mean=None, time_budget=None):
        """Maximize ``objective`` over action sequences inside ``[lower, upper]``.

        Parameters
        ----------
        objective : callable
            Maps float64 array (P, H, D_act) of candidates to their values (P,); larger is better.
        lower, upper : float arrays (D_act,) or (H, D_act)
            Action bounds, ``lower <= upper``.
        init_mean : float array (H, D_act), optional
            Centre of the first sampling distribution (e.g. the previous plan shifted by one step);
            default: the middle of the bounds.
        time_budget : float, optional
            Seconds; stop iterating when the next iteration would exceed it (at least one runs).

        Returns
        -------
        plan : float64 array (H, D_act), inside the bounds
        """
        lo, hi, init_mean = self._prepare(lower, upper, init_mean, time_budget)
        start = self.clock()
        state = self._init_state(lo, hi, init_mean)
        self.last_iterations = 0
        for it in range(self.iterations):
            if time_budget is not None and it > 0 and self._sec_per_candidate is not None:
                estimate = self._sec_per_candidate * self._population_at(it)
                if self.clock() - start + estimate > time_budget:
                    break
            t0 = self.clock()
            n_evaluated = self._iterate(objective, state, it, lo, hi)
            elapsed = self.clock() - t0
            self._sec_per_candidate = elapsed / max(n_evaluated, 1)
            self.last_iterations = it + 1
        self.last_best_value = state["best_value"]
        return self._result(state, lo, hi)

    @staticmethod
    def _track_best(state, samples, values):
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

    def __init__(self, horizon=15, population=1000, iterations=1, seed=None):
        super().__init__(horizon, population, iterations, seed)

    def _init_state(self, lo, hi, init_mean):
        return {"best": None, "best_value": -np.inf, "init_mean": init_mean}

    def _iterate(self, objective, state, it, lo, hi):
        samples = self.rng.uniform(lo, hi, size=(self.population,) + lo.shape)
        if it == 0 and state["init_mean"] is not None:
            samples[0] = state["init_mean"]
        values = self._evaluate(objective, samples)
        self._track_best(state, samples, values)
        return samples.shape[0]

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
    alpha : float in [0, 1]
        Smoothing: ``mean = alpha * mean + (1 - alpha) * elite_mean`` (same for the variance).
    init_std : float or array (D_act,), optional
        Initial standard deviation; default a quarter of the bounds' width.
    return_mean_elites : bool
        Return the final distribution mean (True, the elites' smoothed mean) or the best sample
        seen.
    seed : int or None

    Notes
    -----
    Samples are Gaussian truncated at two standard deviations, and the variance is capped so that
    two standard deviations stay inside the bounds (as mbrl-lib does); a final clip guards rounding.
    Rubinstein (1997); Chua et al. (2018), PETS, Sec. 5. Course notes Sec. 5.1.
    """

    def __init__(self, horizon=15, population=350, elite_frac=0.1, iterations=5, alpha=0.1,
                 init_std=None, return_mean_elites=True, seed=None):
        super().__init__(horizon, population, iterations, seed)
        self.elite_frac = _check_fraction("elite_frac", elite_frac, closed_low=False)
        self.alpha = _check_fraction("alpha", alpha)
        self.num_elites = max(1, int(round(self.elite_frac * self.population)))
        self.init_std = init_std
        self.return_mean_elites = bool(return_mean_elites)

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
        values = self._evaluate(objective, samples)
        self._track_best(state, samples, values)
        k._cem_refit(samples, values, self.num_elites, self.alpha, mean, var)   # in place
        return samples.shape[0]

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
    alpha : float in [0, 1]
        Momentum of the mean and standard deviation updates.
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

    def __init__(self, horizon=30, population=300, elite_frac=0.1, iterations=3, alpha=0.1,
                 noise_beta=2.0, population_decay=1.25, keep_elites_frac=0.3, shift_elites=True,
                 add_mean=True, init_std_frac=0.5, seed=None):
        super().__init__(horizon, population, iterations, seed)
        self.elite_frac = _check_fraction("elite_frac", elite_frac, closed_low=False)
        self.alpha = _check_fraction("alpha", alpha)
        if not (np.isfinite(noise_beta) and noise_beta >= 0):
            raise ValueError(f"noise_beta: expected a number >= 0, got {noise_beta!r}")
        if not (np.isfinite(population_decay) and population_decay >= 1):
            raise ValueError(f"population_decay: expected a number >= 1, got {population_decay!r}")
        self.noise_beta = float(noise_beta)
        self.population_decay = float(population_decay)
        self.keep_elites_frac = _check_fraction("keep_elites_frac", keep_elites_frac)
        self.shift_elites = bool(shift_elites)
        self.add_mean = bool(add_mean)
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
        samples = np.clip(np.concatenate(parts) if len(parts) > 1 else samples, lo, hi)
        values = self._evaluate(objective, samples)
        self._track_best(state, samples, values)
        k = min(self.num_elites, samples.shape[0])
        order = np.argsort(-values, kind="stable")[:k]
        elites = samples[order]
        state["elites"] = elites
        n_keep = int(round(self.keep_elites_frac * k))
        state["kept"] = elites[:n_keep].copy() if n_keep > 0 else None
        state["mean"] = self.alpha * mean + (1 - self.alpha) * elites.mean(axis=0)
        state["std"] = self.alpha * std + (1 - self.alpha) * elites.std(axis=0)
        return samples.shape[0]

    def _result(self, state, lo, hi):
        n_keep = int(round(self.keep_elites_frac * self.num_elites))
        self._kept = state["elites"][:n_keep].copy() if n_keep > 0 else None
        return np.clip(state["best"], lo, hi)


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

    def __init__(self, horizon=15, population=500, iterations=1, temperature=1.0, noise_std=0.3,
                 seed=None):
        super().__init__(horizon, population, iterations, seed)
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        self.temperature = float(temperature)
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
        values = self._evaluate(objective, samples)
        self._track_best(state, samples, values)
        finite = np.isfinite(values)
        if finite.any():
            w = np.zeros_like(values)
            w[finite] = np.exp((values[finite] - values[finite].max()) / self.temperature)
            w /= w.sum()
            state["mean"] = mean + np.tensordot(w, samples - mean, axes=1)
        return samples.shape[0]

    def _result(self, state, lo, hi):
        return np.clip(state["mean"], lo, hi)
