"""Type aliases shared across fastmbrl."""
from typing import Callable

import numpy as np

Array = np.ndarray
# reward_fn(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs)) -> (N,) float
RewardFn = Callable[[Array, Array, Array], Array]
# termination_fn(obs, act, next_obs) -> (N,) bool
TermFn = Callable[[Array, Array, Array], Array]
