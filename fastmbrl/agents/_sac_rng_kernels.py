"""SAC's random draws (Numba): minibatch indices and Gaussian noise from a counter-based generator.

The generator's state is ``rng_state`` (uint64 (3,) = [key, update counter, act counter]): each draw
is splitmix64 of ``key + counter * golden``, so the NumPy twin (``sac_reference``) reproduces
every draw. Part of the SAC kernels (``fastmbrl.agents._sac_kernels``).
"""
import numpy as np
from numba import njit

from fastmbrl.nn._rng import GOLDEN as _GOLDEN
from fastmbrl.nn._rng import _mix64

_TWO_PI = 6.283185307179586


@njit(cache=True)
def _sac_sample_indices(rng_state, n_rows, out):
    """Draw ``out.size`` row indices uniformly in [0, n_rows) from stream 0 of ``rng_state``.

    rng_state : uint64 (3,) = [key, update counter, act counter]; the update counter advances.
    Index = high 32 bits of a splitmix64 draw times n_rows, shifted down (Lemire's multiply-shift).
    """
    key = rng_state[0]
    c = rng_state[1]
    n = np.uint64(n_rows)
    for i in range(out.size):
        x = _mix64(key + (c + np.uint64(i)) * _GOLDEN)
        out[i] = np.int64(((x >> np.uint64(32)) * n) >> np.uint64(32))
    rng_state[1] = c + np.uint64(out.size)


@njit(cache=True)
def _sac_draw_normals(rng_state, slot, out):
    """Fill ``out`` (any shape, C order) with standard normal draws (Box-Muller, cosine branch).

    slot 1 uses the update counter, slot 2 the act counter (its key is ``key ^ golden``); the counter
    advances by 2 per draw.
    """
    key = rng_state[0]
    if slot == 2:
        key = key ^ _GOLDEN
    c = rng_state[slot]
    flat = out.reshape(out.size)
    for i in range(out.size):
        x1 = _mix64(key + (c + np.uint64(2 * i)) * _GOLDEN)
        x2 = _mix64(key + (c + np.uint64(2 * i + 1)) * _GOLDEN)
        u1 = 1.0 - np.float64(x1 >> np.uint64(11)) * 1.1102230246251565e-16
        u2 = np.float64(x2 >> np.uint64(11)) * 1.1102230246251565e-16
        flat[i] = np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
    rng_state[slot] = c + np.uint64(2 * out.size)
