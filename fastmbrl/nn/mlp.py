"""EnsembleMLP: E independent MLPs evaluated as one batched network, with hand-written backward."""
import numpy as np

from fastmbrl._config import ACTIVATIONS, DEFAULT_DTYPE
from fastmbrl._validate import check_dtype, check_int, check_int_sequence, check_seed
from fastmbrl.config import ModelConfig
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


class ForwardCache:
    """What one :meth:`EnsembleMLP.forward` pass leaves for its backward pass.

    Attributes
    ----------
    net : EnsembleMLP, the network that made it
    x : array (E, B, D_in), the input
    z, y : lists of arrays (E, B, D_l), each layer's pre-activation and output
    """

    __slots__ = ("net", "x", "z", "y")

    def __init__(self, net, x, z, y):
        self.net, self.x, self.z, self.y = net, x, z, y


class EnsembleMLP:
    """An ensemble of E multilayer perceptrons with identical architecture.

    Parameters
    ----------
    in_dim, out_dim : int
        D_in and D_out.
    hidden : sequence of int
        Widths of the hidden layers; default the run configuration's (``ModelConfig.hidden``,
        (200, 200, 200)).
    ensemble_size : int
        E, the number of members; default ``ModelConfig.ensemble_size`` (5).
    activation : {"silu", "relu", "tanh", "identity"}
        Hidden-layer activation; the output layer is linear. Default ``ModelConfig.activation``.
    dtype : float32 (default) or float64
    seed : int or None

    Attributes
    ----------
    flat : 1-D array holding every parameter (layout of ``fastmbrl.nn._flat``)
    params : list of views ``[W0, b0, W1, b1, ...]`` into ``flat``; W_l (E, fan_in, fan_out), b_l (E, fan_out)
    grad_flat, grads : the same layout, the gradient buffer of the fused train step
        (``fastmbrl.nn.GaussianTrainStep``); ``backward`` returns its own
    layer_dims : int64 array (D_in, hidden..., D_out)

    Notes
    -----
    Initialisation as in PETS (Chua et al. 2018) and mbrl-lib: weights from a normal with standard
    deviation 1 / (2 sqrt(fan_in)) truncated at two standard deviations, zero biases.
    """

    def __init__(self, in_dim, out_dim, hidden=ModelConfig.hidden,
                 ensemble_size=ModelConfig.ensemble_size, activation=ModelConfig.activation,
                 dtype=DEFAULT_DTYPE, seed=0):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        ensemble_size = check_int("ensemble_size", ensemble_size)
        hidden = check_int_sequence("hidden", hidden, minimum=1)
        self.dtype = check_dtype("dtype", dtype)
        self.activation = activation
        self.activation_code = ACTIVATIONS[activation]
        self.ensemble_size = int(ensemble_size)
        self.layer_dims = np.array((int(in_dim),) + hidden + (int(out_dim),), dtype=np.int64)
        self.n_layers = len(self.layer_dims) - 1
        self.offsets = param_offsets(self.layer_dims, self.ensemble_size)
        self.flat = np.zeros(self.offsets[-1], dtype=self.dtype)
        self.grad_flat = np.zeros_like(self.flat)
        self.params = unflatten(self.flat, self.layer_dims, self.ensemble_size)
        self.grads = unflatten(self.grad_flat, self.layer_dims, self.ensemble_size)
        rng = np.random.default_rng(check_seed("seed", seed))
        for layer in range(self.n_layers):
            W = self.params[2 * layer]
            W[...] = truncated_normal(rng, W.shape, 1.0 / (2.0 * np.sqrt(W.shape[1])), self.dtype)

    @property
    def in_dim(self):
        return int(self.layer_dims[0])

    @property
    def out_dim(self):
        return int(self.layer_dims[-1])

    @property
    def shapes(self):
        return param_shapes(self.layer_dims, self.ensemble_size)

    def _check_input(self, name, x, width):
        if not isinstance(x, np.ndarray) or x.dtype != self.dtype:
            got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise TypeError(f"{name}: expected a {np.dtype(self.dtype).name} array, got {got}")
        if x.ndim != 3 or x.shape[0] != self.ensemble_size or x.shape[2] != width:
            raise ValueError(f"{name}: expected shape ({self.ensemble_size}, B, {width}) "
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
        y : array (E, B, D_out), a new array
        cache : ForwardCache
            What :meth:`backward` needs (the input, every layer's pre-activation and output). The
            network keeps nothing, so several passes can be alive at once.
        """
        x = self._check_input("x", x, self.in_dim)
        E, rows = self.ensemble_size, x.shape[1]
        zs, ys = [], []
        h = x
        last = self.n_layers - 1
        for layer in range(self.n_layers):
            act = self.activation_code if layer < last else 0
            width = int(self.layer_dims[layer + 1])
            z = np.empty((E, rows, width), self.dtype)
            y = np.empty((E, rows, width), self.dtype)
            _kernels._dense_forward(h, self.params[2 * layer], self.params[2 * layer + 1], act, z, y)
            zs.append(z)
            ys.append(y)
            h = y
        return h, ForwardCache(self, x, zs, ys)

    def backward(self, dy, cache, grad_flat_out=None):
        """Backpropagate ``dy`` = dLoss/dy through the pass that produced ``cache``.

        Parameters
        ----------
        dy : array (E, B, D_out)
        cache : ForwardCache
            Returned by :meth:`forward` of this network (the weights must not have changed since).
        grad_flat_out : array (n_params,) of the network's dtype, optional
            Where to write the parameter gradient (layout of ``flat``); default a new array.

        Returns
        -------
        grads : list of arrays aligned with ``params`` (views into ``grad_flat_out``)
        dx : array (E, B, D_in), dLoss/dx: the input gradient used for backpropagation through the model
        """
        if not isinstance(cache, ForwardCache) or cache.net is not self:
            raise TypeError(f"cache: expected the ForwardCache of a forward pass of this network, "
                            f"got {type(cache).__name__}")
        dy = self._check_input("dy", dy, self.out_dim)
        rows = cache.x.shape[1]
        if dy.shape[1] != rows:
            raise ValueError(f"dy: expected {rows} rows as in the cached forward pass, got "
                             f"{dy.shape[1]}")
        if grad_flat_out is None:
            grad_flat_out = np.empty_like(self.flat)
        elif (not isinstance(grad_flat_out, np.ndarray) or grad_flat_out.shape != self.flat.shape
              or grad_flat_out.dtype != self.dtype or not grad_flat_out.flags.c_contiguous):
            raise ValueError(f"grad_flat_out: expected a C-contiguous {np.dtype(self.dtype).name} "
                             f"array of shape {self.flat.shape}, got "
                             f"{getattr(grad_flat_out, 'shape', type(grad_flat_out).__name__)}")
        grads = unflatten(grad_flat_out, self.layer_dims, self.ensemble_size)
        E = self.ensemble_size
        last = self.n_layers - 1
        grad_out = dy
        for layer in range(last, -1, -1):
            act = self.activation_code if layer < last else 0
            inp = cache.x if layer == 0 else cache.y[layer - 1]
            dz = np.empty_like(cache.z[layer])
            dx = np.empty((E, rows, int(self.layer_dims[layer])), self.dtype)
            _kernels._dense_backward(inp, self.params[2 * layer], cache.z[layer], grad_out, act,
                                     dz, grads[2 * layer], grads[2 * layer + 1], dx)
            grad_out = dx
        return grads, grad_out

    def __repr__(self):
        dims = "x".join(str(int(d)) for d in self.layer_dims)
        return (f"EnsembleMLP({dims}, ensemble_size={self.ensemble_size}, activation={self.activation!r}, "
                f"dtype={np.dtype(self.dtype).name})")
