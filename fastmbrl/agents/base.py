"""The agent protocol (``act``/``reset``, and ``state_dict``/``load_state_dict`` for agents with
state) and action-space handling shared by the agents.

State protocol. An agent whose behaviour depends on more than its constructor arguments (learned
weights, optimizer moments, a random generator that advances across episodes, step counters) has

    state_dict() -> dict
        Everything needed to continue exactly: values are NumPy arrays, JSON scalars (int, float,
        str, bool, None), lists of them, or nested dicts of the same (keys: str without "/").
        Arrays are returned as copies or are not mutated later by the agent.
    load_state_dict(state) -> None
        Restore what ``state_dict`` returned (possibly after a save/load round trip, in which
        arrays keep dtype and shape, and tuples come back as lists). Validate first, then commit,
        so a bad state leaves the agent as it was.

Training loops save ``state_dict()`` in every checkpoint and call ``load_state_dict`` on resume
(``fastmbrl._checkpoint``). Agents without state (RandomAgent is reseeded by the loop, PETS is
rebuilt each episode from a derived seed) need neither; :func:`has_state` tells them apart.
"""
import numpy as np

from fastmbrl._validate import as_float_array


class Agent:
    """Base class of fastmbrl agents: ``act(obs) -> action`` inside the action bounds, ``reset()``.

    Subclasses implement ``act``; ``reset`` is called at the start of every episode.
    """

    def act(self, obs, **kwargs):
        """Return the action (D_act,) for observation ``obs`` (D_obs,)."""
        raise NotImplementedError

    def reset(self):
        """Forget per-episode state (warm-start plans, kept elites)."""


def has_state(agent):
    """True if ``agent`` follows the state protocol (has ``state_dict`` and ``load_state_dict``)."""
    return callable(getattr(agent, "state_dict", None)) and callable(
        getattr(agent, "load_state_dict", None))


def action_bounds(action_space, name="action_space"):
    """``(low, high, dtype)`` of a gymnasium ``Box`` or a ``(low, high)`` pair, checked finite.

    Returns
    -------
    low, high : float64 arrays (D_act,)
    dtype : numpy dtype of the actions to return (the Box's, else float32)
    """
    if hasattr(action_space, "low") and hasattr(action_space, "high"):
        low, high = action_space.low, action_space.high
        dtype = np.dtype(getattr(action_space, "dtype", np.float32))
    elif isinstance(action_space, (tuple, list)) and len(action_space) == 2:
        low, high = action_space
        dtype = np.dtype(np.float32)
    else:
        raise TypeError(f"{name}: expected a gymnasium Box or a (low, high) pair, got "
                        f"{type(action_space).__name__}")
    low = as_float_array(f"{name}.low", low, dtype=np.float64).ravel()
    high = as_float_array(f"{name}.high", high, dtype=np.float64).ravel()
    if low.shape != high.shape:
        raise ValueError(f"{name}: low and high shapes differ ({low.shape} vs {high.shape})")
    if np.any(low > high):
        i = int(np.argmax(low > high))
        raise ValueError(f"{name}: expected low <= high, got low[{i}] = {low[i]} > high[{i}] = "
                         f"{high[i]}")
    if dtype.kind != "f":
        dtype = np.dtype(np.float32)
    return low, high, dtype
