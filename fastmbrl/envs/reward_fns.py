"""Exact reward functions of the environments fastmbrl knows, as Numba kernels.

Design: every function has the signature ``reward_fn(obs, act, next_obs) -> reward`` with obs and
next_obs float arrays of shape (N, D_obs), act of shape (N, D_act), and returns a 1-D array (N,) of
the inputs' dtype. They are module-level ``@njit(cache=True)`` functions so the compiled planning
rollout can call them on every row at full speed; called from Python on NumPy arrays they work the
same way (Numba compiles one specialisation per dtype/layout). Each one loops over rows, computes
in the input precision, and reproduces the environment's own reward on real transitions (tested to
1e-5 with float64 inputs; see tests/envs/test_reward_fns.py).

Modules: the classic-control rewards (with ``atan2_fast``) are ``fastmbrl.envs._classic_rewards``,
the MuJoCo ones ``fastmbrl.envs._mujoco_rewards``, their shared helpers
``fastmbrl.envs._reward_helpers``; this module gathers them and maps each to its gradient
(:func:`gradient_of`).
"""
from fastmbrl.envs._classic_rewards import (atan2_fast, pendulum, mountain_car_continuous,
                                            constant_one, pendulum_grad,
                                            mountain_car_continuous_grad, constant_one_grad)
from fastmbrl.envs._mujoco_rewards import (inverted_pendulum, reacher, half_cheetah, hopper,
                                           walker2d, ant, humanoid, inverted_pendulum_grad,
                                           reacher_grad, half_cheetah_grad, hopper_grad,
                                           walker2d_grad, ant_grad, humanoid_grad)

__all__ = ["atan2_fast", "pendulum", "mountain_car_continuous", "constant_one",
           "inverted_pendulum", "reacher", "half_cheetah", "hopper", "walker2d", "ant", "humanoid",
           "pendulum_grad", "mountain_car_continuous_grad", "constant_one_grad",
           "inverted_pendulum_grad", "reacher_grad", "half_cheetah_grad", "hopper_grad",
           "walker2d_grad", "ant_grad", "humanoid_grad", "gradient_of"]

# reward function -> its gradient, for every built-in reward
_GRADS = ((pendulum, pendulum_grad), (mountain_car_continuous, mountain_car_continuous_grad),
          (constant_one, constant_one_grad), (inverted_pendulum, inverted_pendulum_grad),
          (reacher, reacher_grad), (half_cheetah, half_cheetah_grad), (hopper, hopper_grad),
          (walker2d, walker2d_grad), (ant, ant_grad), (humanoid, humanoid_grad))


def gradient_of(reward_fn):
    """The ``reward_grad_fn`` of a built-in reward function of this module, else None.

    Parameters
    ----------
    reward_fn : callable

    Returns
    -------
    callable or None
        ``reward_grad_fn(obs, act, next_obs) -> (d_obs, d_act, d_next_obs)``.
    """
    for fn, grad in _GRADS:
        if reward_fn is fn:
            return grad
    return None
