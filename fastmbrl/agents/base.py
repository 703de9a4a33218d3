"""The agent protocol (``act``/``reset``) and action-space handling shared by the agents."""
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
