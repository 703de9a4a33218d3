"""The cross-entropy family (``fastmbrl.planning.optimizers``): CEM, with Gaussian samples truncated
at two standard deviations, and iCEM, with coloured noise, a decaying population and kept elites.
"""
import numpy as np

from fastmbrl._validate import as_float_array, check_bool, check_float
from fastmbrl.config import PlannerConfig
from fastmbrl.planning._optimizer import _check_alpha, _check_fraction, _kernels, _Optimizer


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
    The defaults of ``horizon``, ``population``, ``elite_frac``, ``iterations`` and ``alpha`` are
    the run configuration's (``fastmbrl.config.PlannerConfig``); the iCEM paper plans with
    H = 30, P = 300 and 3 iterations (pass them for its setting).

    Returns the best sequence evaluated in the call (iCEM executes the best, not the mean).
    Samples are clipped to the bounds. Pinneri et al. (2020), "Sample-efficient cross-entropy method
    for real-time planning", CoRL, Alg. 1.
    """

    def __init__(self, horizon=PlannerConfig.horizon, population=PlannerConfig.population,
                 elite_frac=PlannerConfig.elite_frac, iterations=PlannerConfig.iterations,
                 alpha=PlannerConfig.alpha, noise_beta=2.0, population_decay=1.25,
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
