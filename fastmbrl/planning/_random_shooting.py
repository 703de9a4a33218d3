"""Random shooting (``fastmbrl.planning.optimizers``)."""
import numpy as np

from fastmbrl.config import PlannerConfig
from fastmbrl.planning._optimizer import _Optimizer


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
    The defaults of ``horizon``, ``population`` and ``iterations`` are the run configuration's
    (``fastmbrl.config.PlannerConfig``).

    The warm-start mean, when given, is evaluated alongside the samples, so a good previous plan is
    never lost. Nagabandi et al. (2018), "Neural network dynamics for model-based deep RL with
    model-free fine-tuning".
    """

    def __init__(self, horizon=PlannerConfig.horizon, population=PlannerConfig.population,
                 iterations=PlannerConfig.iterations, seed=None):
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
