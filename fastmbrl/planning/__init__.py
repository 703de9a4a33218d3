"""Planning: zero-order optimizers over action sequences and the compiled model rollout."""
from fastmbrl.planning.optimizers import (CEM, ICEM, MPPI, RandomShooting, check_bounds,
                                          colored_noise)
from fastmbrl.planning.rollout import ModelRollout, is_numba_function, warmup

__all__ = ["CEM", "ICEM", "MPPI", "RandomShooting", "ModelRollout", "check_bounds",
           "colored_noise", "is_numba_function", "warmup"]
