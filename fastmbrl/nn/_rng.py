"""The counter-based generator of the compiled kernels: SplitMix64's output function (Steele, Lea
and Flood 2014) applied to ``key + counter * golden``.

Every draw is a function of (key, counter) alone, so a generator's state is two integers, fill
loops vectorize, any thread can compute any element, and the NumPy twin (``_rng_reference``)
reproduces every draw. SAC's update draws ``_mix64(key + c * GOLDEN)`` and the planners'
``_splitmix64(key, q)`` is ``_mix64(key + (q + 1) * GOLDEN)``.
"""
import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True)
def _mix64(z):
    """SplitMix64's output function of the uint64 ``z``."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))
