"""Model predictive path integral control (``fastmbrl.planning.optimizers``)."""
import numpy as np

from fastmbrl._validate import as_float_array, check_float
from fastmbrl.config import PlannerConfig
from fastmbrl.planning._optimizer import _Optimizer


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
    The defaults of ``horizon``, ``population`` and ``iterations`` are the run configuration's
    (``fastmbrl.config.PlannerConfig``); MPPI proper makes 1 iteration per control step.

    ``U <- U + sum_k w_k (V_k - U)``, ``w_k proportional to exp(S_k / lambda)``, where ``V_k =
    clip(U + eps_k)``; using the clipped perturbation keeps ``U`` a convex combination of in-bound
    sequences. Returns ``U``. Williams et al. (2017), "Information theoretic MPC for model-based
    RL", ICRA, Alg. 2.
    """

    def __init__(self, horizon=PlannerConfig.horizon, population=PlannerConfig.population,
                 iterations=PlannerConfig.iterations, temperature=1.0, noise_std=0.3, seed=None):
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
