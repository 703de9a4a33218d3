"""Adam with bias correction and per-parameter L2 weight decay."""
import numpy as np

from fastmbrl.nn import _kernels


def _flat_base(arrays):
    """If ``arrays`` are consecutive C-contiguous views of one buffer, return that 1-D span, else None."""
    if not arrays or any(not a.flags.c_contiguous for a in arrays):
        return None
    dtype = arrays[0].dtype
    if any(a.dtype != dtype for a in arrays):
        return None
    start = arrays[0].__array_interface__["data"][0]
    pos = start
    for a in arrays:
        if a.__array_interface__["data"][0] != pos:
            return None
        pos += a.nbytes
    base = arrays[0]
    while base.base is not None and isinstance(base.base, np.ndarray):
        base = base.base
    if not base.flags.c_contiguous:
        return None
    base_start = base.__array_interface__["data"][0]
    offset = (start - base_start) // dtype.itemsize
    total = (pos - start) // dtype.itemsize
    return base.reshape(-1)[offset:offset + total]



def parse_weight_decay(weight_decay, n, per="parameter array"):
    """One L2 decay per array: a float repeated ``n`` times, or ``n`` values, each finite and >= 0.

    Parameters
    ----------
    weight_decay : float or sequence of float
    n : int
        How many values are needed.
    per : str
        What one value belongs to, for the error message.

    Returns
    -------
    list of float, length ``n``

    Raises
    ------
    ValueError
        Naming ``weight_decay``, on a wrong count or a negative or non-finite value.
    """
    if np.ndim(weight_decay) == 0:
        decays = [float(weight_decay)] * n
    else:
        decays = [float(d) for d in weight_decay]
        if len(decays) != n:
            raise ValueError(f"weight_decay: expected a float or {n} values (one per {per}), "
                             f"got {len(decays)}")
    if any(not (np.isfinite(d) and d >= 0) for d in decays):
        raise ValueError(f"weight_decay: expected finite values >= 0, got {decays}")
    return decays

class Adam:
    """Adam (Kingma & Ba 2015) over a list of arrays, updated in place.

    Parameters
    ----------
    params : list of float arrays (updated in place by ``step``)
    lr : float
    betas : (beta1, beta2)
    eps : float
    weight_decay : float, or a sequence with one value per array in ``params``
        L2 penalty coupled into the gradient (g += decay * param), as PETS and
        ``torch.optim.Adam(weight_decay=...)`` do; PETS uses a larger decay for deeper layers.

    Notes
    -----
    When ``params`` are consecutive views of one flat buffer (``EnsembleMLP.params``), the update is a
    single kernel call over the buffer; otherwise one call per array.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = list(params)
        if not self.params:
            raise ValueError("params: expected at least one array, got none")
        for i, p in enumerate(self.params):
            if not isinstance(p, np.ndarray) or p.dtype.type not in (np.float32, np.float64):
                raise TypeError(f"params[{i}]: expected a float32 or float64 array")
        decays = parse_weight_decay(weight_decay, len(self.params), "parameter array")
        if lr <= 0:
            raise ValueError(f"lr: expected > 0, got {lr}")
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = decays
        self.t = 0
        self._flat = _flat_base(self.params)
        sizes = [p.size for p in self.params]
        if self._flat is not None:
            self._m = [np.zeros_like(self._flat)]
            self._v = [np.zeros_like(self._flat)]
            self._seg_end = [np.cumsum(sizes).astype(np.int64)]
            self._seg_decay = [np.array(decays, dtype=np.float64)]
        else:
            self._m = [np.zeros(p.size, p.dtype) for p in self.params]
            self._v = [np.zeros(p.size, p.dtype) for p in self.params]
            self._seg_end = [np.array([s], dtype=np.int64) for s in sizes]
            self._seg_decay = [np.array([d], dtype=np.float64) for d in decays]

    def step(self, grads):
        """Apply one update with ``grads`` (aligned with ``params``)."""
        if len(grads) != len(self.params):
            raise ValueError(f"grads: expected {len(self.params)} arrays, got {len(grads)}")
        for i, (g, p) in enumerate(zip(grads, self.params)):
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"grads[{i}]: expected {p.dtype} array of shape {p.shape}, "
                                 f"got {g.dtype} {g.shape}")
        self.t += 1
        if self._flat is not None:
            gflat = _flat_base(list(grads))
            if gflat is None:
                gflat = np.concatenate([g.ravel() for g in grads])
            _kernels._adam_update(self._flat, gflat, self._m[0], self._v[0], self._seg_end[0],
                                  self._seg_decay[0], self.lr, self.beta1, self.beta2, self.eps, self.t)
        else:
            for i, (p, g) in enumerate(zip(self.params, grads)):
                _kernels._adam_update(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), self._m[i],
                                      self._v[i], self._seg_end[i], self._seg_decay[i], self.lr,
                                      self.beta1, self.beta2, self.eps, self.t)

    def state_dict(self):
        """Moments and step count (copies), for checkpoints."""
        return {"t": self.t, "m": [m.copy() for m in self._m], "v": [v.copy() for v in self._v]}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned; shapes must match."""
        if len(state["m"]) != len(self._m):
            raise ValueError(f"state: expected {len(self._m)} moment arrays, got {len(state['m'])}")
        for mine, theirs, name in [(a, b, "m") for a, b in zip(self._m, state["m"])] + \
                                  [(a, b, "v") for a, b in zip(self._v, state["v"])]:
            if mine.shape != np.shape(theirs):
                raise ValueError(f"state[{name!r}]: expected shape {mine.shape}, got {np.shape(theirs)}")
            mine[...] = theirs
        self.t = int(state["t"])
