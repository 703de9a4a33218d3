"""NumPy twins of ``_sac_rng_kernels`` (same names, same signatures, the same draws)."""
import numpy as np

from fastmbrl.nn._rng_reference import GOLDEN as _GOLDEN
from fastmbrl.nn._rng_reference import _mix64


def _draws(key, start, n):
    with np.errstate(over="ignore"):
        return _mix64(key + (start + np.arange(n, dtype=np.uint64)) * _GOLDEN)


def _sac_sample_indices(rng_state, n_rows, out):
    """Twin of the kernel: uniform row indices in [0, n_rows) from stream 0 of rng_state."""
    x = _draws(rng_state[0], rng_state[1], out.size)
    out[...] = (((x >> np.uint64(32)) * np.uint64(n_rows)) >> np.uint64(32)).astype(np.int64)
    rng_state[1] = rng_state[1] + np.uint64(out.size)


def _sac_draw_normals(rng_state, slot, out):
    """Twin of the kernel: standard normals by Box-Muller from stream ``slot`` (1 update, 2 act)."""
    key = rng_state[0] ^ _GOLDEN if slot == 2 else rng_state[0]
    x = _draws(key, rng_state[slot], 2 * out.size)
    u1 = 1.0 - (x[0::2] >> np.uint64(11)).astype(np.float64) * 1.1102230246251565e-16
    u2 = (x[1::2] >> np.uint64(11)).astype(np.float64) * 1.1102230246251565e-16
    out[...] = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(out.shape)
    rng_state[slot] = rng_state[slot] + np.uint64(2 * out.size)
