"""CartPole with a continuous action: the classic cart-pole dynamics driven by force = action * force_mag.

This is the environment that PETS work calls "cartpole continuous": Barto, Sutton and Anderson's
cart-pole (Euler integration, tau = 0.02 s), one action in [-1, 1] scaled to a force of up to 10 N,
a reward of 1 for every step (the terminating step included, as in gymnasium's CartPole-v1) and the
classic termination (|x| > 2.4 or |theta| > 12 degrees). Registered as
``fastmbrl/CartPoleContinuous-v0`` with a 200-step time limit.

Termination is decided on the float32 observation that the agent sees, so that
``fastmbrl.envs.termination_fns.cartpole`` reproduces it exactly from observations.
"""
import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
HALF_POLE_LENGTH = 0.5
FORCE_MAG = 10.0
TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360


class CartPoleContinuousEnv(gym.Env):
    """Classic cart-pole with a continuous force.

    Observation: float32 array (4,) = (x, x_dot, theta, theta_dot).
    Action: float32 array (1,) in [-1, 1]; force = clip(action) * 10 N.
    Reward: 1.0 per step. Terminated when |x| > 2.4 or |theta| > 12 degrees.

    References
    ----------
    A. G. Barto, R. S. Sutton, C. W. Anderson (1983), "Neuronlike adaptive elements that can solve
    difficult learning control problems", IEEE SMC 13(5). Dynamics as corrected by R. Florian (2005).
    """

    metadata = {"render_modes": []}

    def __init__(self, render_mode=None):
        high = np.array([X_THRESHOLD * 2, np.finfo(np.float32).max, THETA_THRESHOLD * 2,
                         np.finfo(np.float32).max], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.render_mode = render_mode
        self.state = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(low=-0.05, high=0.05, size=(4,))
        return self.state.astype(np.float32), {}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("CartPoleContinuousEnv.step: call reset() before step()")
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        force = a * FORCE_MAG
        x, x_dot, theta, theta_dot = self.state
        total_mass = MASS_CART + MASS_POLE
        pole_ml = MASS_POLE * HALF_POLE_LENGTH
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        temp = (force + pole_ml * theta_dot * theta_dot * sin_t) / total_mass
        theta_acc = (GRAVITY * sin_t - cos_t * temp) / (
            HALF_POLE_LENGTH * (4.0 / 3.0 - MASS_POLE * cos_t * cos_t / total_mass))
        x_acc = temp - pole_ml * theta_acc * cos_t / total_mass
        # Explicit Euler, the classic integrator.
        self.state = np.array([x + TAU * x_dot, x_dot + TAU * x_acc,
                               theta + TAU * theta_dot, theta_dot + TAU * theta_acc])
        obs = self.state.astype(np.float32)
        terminated = bool(abs(float(obs[0])) > X_THRESHOLD or abs(float(obs[2])) > THETA_THRESHOLD)
        return obs, 1.0, terminated, False, {}
