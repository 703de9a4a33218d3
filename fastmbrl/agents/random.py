"""RandomAgent: uniform actions, for collecting the initial data (Algorithm 1, line 1)."""
import numpy as np

from fastmbrl.agents.base import Agent, action_bounds


class RandomAgent(Agent):
    """Uniformly random actions inside the bounds.

    Parameters
    ----------
    action_space : gymnasium Box or (low, high) pair
        Finite bounds, each of shape (D_act,).
    seed : int or None
        Seeds the agent's own generator (the environment's is left alone).
    """

    def __init__(self, action_space, seed=None):
        self.low, self.high, self.dtype = action_bounds(action_space)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def act(self, obs=None, **kwargs):
        """Return a uniform action (D_act,) in the action space's dtype; ``obs`` is ignored."""
        a = self.rng.uniform(self.low, self.high).astype(self.dtype)
        return np.clip(a, self.low.astype(self.dtype), self.high.astype(self.dtype))

    def reset(self):
        """Nothing to forget: the random stream continues across episodes."""
