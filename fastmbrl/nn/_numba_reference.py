"""NumPy twins of the Numba inference kernels in ``fastmbrl.nn._numba`` (same names and signatures).

They are the ground truth the compiled kernels are tested against, and what runs when
``FASTMBRL_PUREPYTHON=1``. Scratch arguments are accepted for signature parity and left unused.
"""
import numpy as np

from fastmbrl.nn._reference import _activation_forward


def _silu_bias_f32(h, b, ebuf):
    """Reference of the float32 fused bias + SiLU: in place ``h = silu(h + b)``."""
    h[...] = _activation_forward(h + b, 3)


def _exp_inplace(x, ebuf):
    """Reference of the in-place exponential: ``x = exp(x)`` (float32 arguments clamped to +-87)."""
    if x.dtype == np.float32:
        x[...] = np.exp(np.clip(x, -87.0, 87.0))
    else:
        x[...] = np.exp(x)


def _bias_activation(h, b, activation, ebuf):
    """Reference fused bias + activation: in place ``h = act(h + b)`` (codes of ACTIVATIONS)."""
    h[...] = _activation_forward(h + b, activation)


def _mlp_forward_flat(flat, layer_dims, ensemble_size, member, activation, x, out, h0, h1, ebuf):
    """Reference forward pass of one ensemble member over a block of rows; writes ``out``.

    Parameters
    ----------
    flat : float array (n_params,), layout of ``fastmbrl.nn._flat``
    layer_dims : int64 array (L+1,)
    ensemble_size : int
    member : int
    activation : int
    x : float array (rows, D0)
    out : float array (rows, DL), written
    h0, h1, ebuf : unused scratch (signature parity with the Numba kernel)
    """
    n_layers = len(layer_dims) - 1
    offset = 0
    h = x
    for layer in range(n_layers):
        fan_in, fan_out = int(layer_dims[layer]), int(layer_dims[layer + 1])
        w_size = fan_in * fan_out
        w = flat[offset + member * w_size:offset + (member + 1) * w_size].reshape(fan_in, fan_out)
        offset += ensemble_size * w_size
        b = flat[offset + member * fan_out:offset + (member + 1) * fan_out]
        offset += ensemble_size * fan_out
        h = h @ w
        if layer < n_layers - 1:
            _bias_activation(h, b, activation, ebuf)
        else:
            h += b
    out[...] = h
