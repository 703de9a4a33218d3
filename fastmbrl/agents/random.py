"""RandomAgent: uniform actions, for collecting the initial data (Algorithm 1, line 1)."""
import threading

import numpy as np

from fastmbrl._validate import check_seed
from fastmbrl.agents.base import Agent, action_bounds


class RandomAgent(Agent):
    """Uniformly random actions inside the bounds.

    Parameters
    ----------
    action_space : gymnasium Box or (low, high) pair
        Finite bounds, each of shape (D_act,).
    seed : int >= 0 or None
        Seeds the agent's own generator (the environment's is left alone).

    Notes
    -----
    Thread safety: ``act`` holds the agent's lock, so the random stream is never used by two
    threads at once.
    """

    def __init__(self, action_space, seed=None):
        self.low, self.high, self.dtype = action_bounds(action_space)
        with np.errstate(over="ignore"):
            if not np.all(np.isfinite(self.high - self.low)):
                raise ValueError(f"action_space: the width high - low overflows float64 "
                                 f"({self.low} to {self.high})")
        self.seed = check_seed("seed", seed, allow_none=True)
        self.rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def act(self, obs=None, **kwargs):
        """Return a uniform action (D_act,) in the action space's dtype; ``obs`` is ignored."""
        with self._lock:
            a = self.rng.uniform(self.low, self.high).astype(self.dtype)
        return np.clip(a, self.low.astype(self.dtype), self.high.astype(self.dtype))

    def reset(self):
        """Nothing to forget: the random stream continues across episodes."""
