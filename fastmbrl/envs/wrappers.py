"""Gymnasium wrappers that make an environment's reward computable from its observations."""
import gymnasium as gym
import numpy as np


class XDisplacementObservation(gym.ObservationWrapper):
    """Replace the absolute x position in observation column 0 by its change during the last step.

    Locomotion rewards such as HalfCheetah's are ``(x_after - x_before) / dt``: exact from
    observations only if x is observed, but an absolute x grows without bound and makes a poor model
    input (the normaliser is always extrapolating). The displacement carries exactly the information
    the reward needs, stays bounded, and is a good input. Build the inner environment with
    ``exclude_current_positions_from_observation=False`` so that column 0 is x.

    Parameters
    ----------
    env : gymnasium.Env
        Environment whose observation column 0 is the absolute x position (float64).
    """

    def __init__(self, env):
        super().__init__(env)
        self._last_x = 0.0

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_x = float(obs[0])
        out = np.array(obs, copy=True)
        out[0] = 0.0
        return out, info

    def observation(self, observation):
        x = float(observation[0])
        out = np.array(observation, copy=True)
        out[0] = x - self._last_x
        self._last_x = x
        return out
