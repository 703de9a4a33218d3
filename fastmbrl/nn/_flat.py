"""The flat parameter layout shared by the Python classes, the C kernels and the Numba kernels.

All parameters of an ensemble MLP live in one 1-D buffer, layer after layer:
``W0 (E, D0, D1), b0 (E, D1), W1 (E, D1, D2), b1 (E, D2), ...`` each C-contiguous, where
``layer_dims = (D0, D1, ..., DL)`` (D0 = input width, DL = output width). Compiled code receives the
buffer plus ``layer_dims`` and finds each array by offset, so one argument carries the whole network.
"""
import numpy as np


def param_shapes(layer_dims, ensemble_size):
    """Shapes of [W0, b0, W1, b1, ...] for the given layer widths and ensemble size."""
    shapes = []
    for fan_in, fan_out in zip(layer_dims[:-1], layer_dims[1:]):
        shapes.append((ensemble_size, int(fan_in), int(fan_out)))
        shapes.append((ensemble_size, int(fan_out)))
    return shapes


def param_offsets(layer_dims, ensemble_size):
    """Start offsets (int64, length 2L+1) of each parameter array in the flat buffer; last = total size."""
    sizes = [int(np.prod(s)) for s in param_shapes(layer_dims, ensemble_size)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def unflatten(flat, layer_dims, ensemble_size):
    """Views [W0, b0, W1, b1, ...] into ``flat`` (no copy)."""
    offsets = param_offsets(layer_dims, ensemble_size)
    if flat.size != offsets[-1]:
        raise ValueError(f"flat: expected {offsets[-1]} parameters for layer_dims {tuple(layer_dims)} "
                         f"and {ensemble_size} members, got {flat.size}")
    return [flat[offsets[i]:offsets[i + 1]].reshape(s)
            for i, s in enumerate(param_shapes(layer_dims, ensemble_size))]
