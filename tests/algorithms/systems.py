"""Tiny deterministic environments shared by the algorithm tests."""
import gymnasium as gym
import numpy as np
from numba import njit

STEP = 0.2        # x' = x + STEP * a, a in [-1, 1]^2
EPISODE_STEPS = 20


@njit(cache=True)
def linear_reward(obs, act, next_obs):
    """-||x'||^2, the tiny system's reward (tests only)."""
    out = np.empty(obs.shape[0], dtype=obs.dtype)
    for i in range(obs.shape[0]):
        out[i] = -(next_obs[i, 0] ** 2 + next_obs[i, 1] ** 2)
    return out


class LinearSystem(gym.Env):
    """x' = x + 0.2 a in the plane, reward -||x'||^2, start uniform in [-1, 1]^2.

    ``episode_steps`` steps per episode (truncated), or no time limit at all when None.
    """

    def __init__(self, episode_steps=EPISODE_STEPS):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.episode_steps = episode_steps
        self.x = None
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1.0, 1.0, size=2)
        self.t = 0
        return self.x.copy(), {}

    def step(self, action):
        self.x = self.x + STEP * np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.t += 1
        truncated = self.episode_steps is not None and self.t >= self.episode_steps
        return self.x.copy(), -float(self.x @ self.x), False, truncated, {}


TINY = {"model": {"hidden": [32, 32], "ensemble_size": 3, "num_elites": 3, "max_epochs": 60,
                  "patience": 10, "batch_size": 64, "weight_decay": 0.0},
        "planner": {"horizon": 5, "population": 100, "iterations": 3, "particles": 4,
                    "elite_frac": 0.1},
        "algorithm": {"initial_steps": 100, "episodes": 3}}

# Small and fast: the golden-run configuration.
GOLDEN = {"model": {"hidden": [16, 16], "ensemble_size": 2, "num_elites": 2, "max_epochs": 8,
                    "patience": 3, "batch_size": 32},
          "planner": {"horizon": 4, "population": 40, "iterations": 2, "particles": 2,
                      "elite_frac": 0.2},
          "algorithm": {"initial_steps": 50, "episodes": 2}}


def fingerprint(result):
    """Exact summary of a run: returns and lengths as hex floats, hashes of the buffer's arrays."""
    import hashlib

    buf = result.buffer
    out = {"returns": [float(r).hex() for r in result.returns],
           "lengths": [int(n) for n in result.lengths],
           "initial_returns": [float(r.ret).hex() for r in result.initial_records],
           "buffer_size": len(buf)}
    for name in ("obs", "act", "reward", "next_obs", "terminated", "truncated"):
        arr = np.ascontiguousarray(getattr(buf, name))
        out[f"sha256_{name}"] = hashlib.sha256(arr.tobytes()).hexdigest()
    return out
