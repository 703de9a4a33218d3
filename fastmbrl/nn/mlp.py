"""EnsembleMLP: E independent MLPs evaluated as one batched network, with hand-written backward."""
import numpy as np

from fastmbrl._config import ACTIVATIONS, DEFAULT_DTYPE
from fastmbrl._validate import check_dtype, check_int, check_int_sequence, check_seed
from fastmbrl.nn import _kernels
from fastmbrl.nn._flat import param_offsets, param_shapes, unflatten


def truncated_normal(rng, shape, std, dtype):
    """Normal(0, std) samples redrawn until they fall within two standard deviations."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * std).astype(dtype)


class EnsembleMLP:
    """An ensemble of E multilayer perceptrons with identical architecture.

    Parameters
    ----------
    in_dim, out_dim : int
        D_in and D_out.
    hidden : sequence of int
        Widths of the hidden layers.
    ensemble_size : int
        E, the number of members.
    activation : {"silu", "relu", "tanh", "identity"}
        Hidden-layer activation; the output layer is linear.
    dtype : float32 (default) or float64
    seed : int or None

    Attributes
    ----------
    flat : 1-D array holding every parameter (layout of ``fastmbrl.nn._flat``)
    params : list of views ``[W0, b0, W1, b1, ...]`` into ``flat``; W_l (E, fan_in, fan_out), b_l (E, fan_out)
    grad_flat, grads : the same layout for the gradients written by ``backward``
    layer_dims : int64 array (D_in, hidden..., D_out)

    Notes
    -----
    Initialisation as in PETS (Chua et al. 2018) and mbrl-lib: weights from a normal with standard
    deviation 1 / (2 sqrt(fan_in)) truncated at two standard deviations, zero biases.
    """

    def __init__(self, in_dim, out_dim, hidden=(200, 200, 200), ensemble_size=5, activation="silu",
                 dtype=DEFAULT_DTYPE, seed=0):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        ensemble_size = check_int("ensemble_size", ensemble_size)
        hidden = check_int_sequence("hidden", hidden, minimum=1)
        self.dtype = check_dtype("dtype", dtype)
        self.activation = activation
        self.activation_code = ACTIVATIONS[activation]
        self.n_members = int(ensemble_size)
        self.layer_dims = np.array((int(in_dim),) + hidden + (int(out_dim),), dtype=np.int64)
        self.n_layers = len(self.layer_dims) - 1
        self.offsets = param_offsets(self.layer_dims, self.n_members)
        self.flat = np.zeros(self.offsets[-1], dtype=self.dtype)
        self.grad_flat = np.zeros_like(self.flat)
        self.params = unflatten(self.flat, self.layer_dims, self.n_members)
        self.grads = unflatten(self.grad_flat, self.layer_dims, self.n_members)
        rng = np.random.default_rng(check_seed("seed", seed))
        for layer in range(self.n_layers):
            W = self.params[2 * layer]
            W[...] = truncated_normal(rng, W.shape, 1.0 / (2.0 * np.sqrt(W.shape[1])), self.dtype)
        self._cache_rows = -1
        self._x = None

    @property
    def in_dim(self):
        return int(self.layer_dims[0])

    @property
    def out_dim(self):
        return int(self.layer_dims[-1])

    @property
    def shapes(self):
        return param_shapes(self.layer_dims, self.n_members)

    def _buffers(self, rows):
        """(Re)allocate per-layer buffers when the batch size changes; reused otherwise."""
        if rows != self._cache_rows:
            E = self.n_members
            self._z = [np.empty((E, rows, d), self.dtype) for d in self.layer_dims[1:]]
            self._y = [np.empty((E, rows, d), self.dtype) for d in self.layer_dims[1:]]
            self._dz = [np.empty((E, rows, d), self.dtype) for d in self.layer_dims[1:]]
            self._dx = [np.empty((E, rows, d), self.dtype) for d in self.layer_dims[:-1]]
            self._cache_rows = rows

    def _check_input(self, name, x, width):
        if not isinstance(x, np.ndarray) or x.dtype != self.dtype:
            got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise TypeError(f"{name}: expected a {np.dtype(self.dtype).name} array, got {got}")
        if x.ndim != 3 or x.shape[0] != self.n_members or x.shape[2] != width:
            raise ValueError(f"{name}: expected shape ({self.n_members}, B, {width}) "
                             f"(ensemble_size, rows, width), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
        return np.ascontiguousarray(x)

    def forward(self, x):
        """Evaluate all members.

        Parameters
        ----------
        x : array (E, B, D_in) of the network's dtype

        Returns
        -------
        y : array (E, B, D_out), a buffer owned by the network (copy it to keep it past the next call)
        """
        x = self._check_input("x", x, self.in_dim)
        self._buffers(x.shape[1])
        self._x = x
        h = x
        last = self.n_layers - 1
        for layer in range(self.n_layers):
            act = self.activation_code if layer < last else 0
            _kernels._dense_forward(h, self.params[2 * layer], self.params[2 * layer + 1], act,
                                    self._z[layer], self._y[layer])
            h = self._y[layer]
        return h

    def backward(self, dy):
        """Backpropagate ``dy`` = dLoss/dy through the last ``forward``.

        Parameters
        ----------
        dy : array (E, B, D_out)

        Returns
        -------
        grads : list of arrays aligned with ``params`` (views into ``grad_flat``, overwritten each call)
        dx : array (E, B, D_in), dLoss/dx: the input gradient used for backpropagation through the model
        """
        if self._x is None:
            raise RuntimeError("backward: call forward first")
        dy = self._check_input("dy", dy, self.out_dim)
        if dy.shape[1] != self._x.shape[1]:
            raise ValueError(f"dy: expected {self._x.shape[1]} rows as in the last forward, got {dy.shape[1]}")
        last = self.n_layers - 1
        grad_out = dy
        for layer in range(last, -1, -1):
            act = self.activation_code if layer < last else 0
            inp = self._x if layer == 0 else self._y[layer - 1]
            _kernels._dense_backward(inp, self.params[2 * layer], self._z[layer], grad_out, act,
                                     self._dz[layer], self.grads[2 * layer], self.grads[2 * layer + 1],
                                     self._dx[layer])
            grad_out = self._dx[layer]
        return self.grads, grad_out

    def __repr__(self):
        dims = "x".join(str(int(d)) for d in self.layer_dims)
        return (f"EnsembleMLP({dims}, ensemble_size={self.n_members}, activation={self.activation!r}, "
                f"dtype={np.dtype(self.dtype).name})")
