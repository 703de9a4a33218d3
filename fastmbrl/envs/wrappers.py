"""Gymnasium wrappers that make an environment's reward computable from its observations."""
import gymnasium as gym
import numpy as np


def _prepended_space(space):
    """``space`` (a 1-D Box) with one unbounded column in front, same dtype."""
    low = np.concatenate([np.array([-np.inf], dtype=space.dtype), space.low])
    high = np.concatenate([np.array([np.inf], dtype=space.dtype), space.high])
    return gym.spaces.Box(low=low, high=high, dtype=space.dtype)


def _prepend(value, observation):
    """``[value, *observation]`` as a new array of the observation's dtype."""
    observation = np.asarray(observation)
    out = np.empty(observation.shape[0] + 1, dtype=observation.dtype)
    out[0] = value
    out[1:] = observation
    return out


class XDisplacementObservation(gym.ObservationWrapper):
    """Observe the change of an x position during the last step (0 right after ``reset``).

    Locomotion rewards such as HalfCheetah's are ``(x_after - x_before) / dt``: exact from
    observations only if x is observed, but an absolute x grows without bound and makes a poor model
    input (the normaliser is always extrapolating). The displacement carries exactly the information
    the reward needs, stays bounded, and is a good input.

    Parameters
    ----------
    env : gymnasium.Env
        The environment. Without ``position``, its observation (D,) must have the absolute x in
        column 0 (build it with ``exclude_current_positions_from_observation=False``).
    position : callable, optional
        ``position(env.unwrapped) -> float``: the x position the environment's forward reward
        uses, read after ``reset`` and after each step (e.g. ``lambda u: u.data.body(1).xpos[0]``).
        When given, the displacement is prepended as a new column 0 and the observation grows
        from (D,) to (D + 1,); when None (default), column 0 (the absolute x) is replaced.

    Returns
    -------
    gymnasium.Env
        Observations (D,) (replace) or (D + 1,) (prepend), of the inner observation's dtype.

    Notes
    -----
    ``obs'[0] = x_after - x_before`` with ``x_before`` the value read after the previous step (or
    after ``reset``), which is what the environment itself reads at the start of ``step``; so
    ``forward_weight * obs'[0] / dt`` is the forward reward to the last bit. After ``reset``
    ``obs[0] = 0``.
    """

    def __init__(self, env, position=None):
        super().__init__(env)
        self._position = position
        self._last_x = 0.0
        if position is not None:
            self.observation_space = _prepended_space(env.observation_space)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self._position is not None:
            self._last_x = float(self._position(self.env.unwrapped))
            return _prepend(0.0, obs), info
        self._last_x = float(obs[0])
        out = np.array(obs, copy=True)
        out[0] = 0.0
        return out, info

    def observation(self, observation):
        if self._position is not None:
            x = float(self._position(self.env.unwrapped))
            out = _prepend(x - self._last_x, observation)
            self._last_x = x
            return out
        x = float(observation[0])
        out = np.array(observation, copy=True)
        out[0] = x - self._last_x
        self._last_x = x
        return out


class StepCostObservation(gym.ObservationWrapper):
    """Prepend the cost of the last step (0 right after ``reset``) as observation column 0.

    Some reward terms cannot be computed from positions and velocities, e.g. Ant's and Humanoid's
    contact cost (a function of the contact forces). Observing the term makes the reward exact
    from observations again; a learned model then predicts it like any other column.

    Parameters
    ----------
    env : gymnasium.Env
        The environment, with observations of shape (D,).
    cost : callable
        ``cost(env.unwrapped) -> float``: the term as the environment computed it during the last
        step, read right after the step (e.g. ``lambda u: u.contact_cost``).

    Returns
    -------
    gymnasium.Env
        Observations of shape (D + 1,), of the inner observation's dtype.

    Notes
    -----
    ``obs'[0] = cost(env.unwrapped)`` read after each step; ``obs[0] = 0`` after ``reset``.
    """

    def __init__(self, env, cost):
        super().__init__(env)
        self._cost = cost
        self.observation_space = _prepended_space(env.observation_space)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return _prepend(0.0, obs), info

    def observation(self, observation):
        return _prepend(float(self._cost(self.env.unwrapped)), observation)
