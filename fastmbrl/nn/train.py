"""The fused training step of a heteroskedastic Gaussian ensemble: one compiled call per minibatch.

``GaussianTrainStep`` runs forward, the Gaussian NLL with PETS' learnable soft log-variance bounds,
backward and Adam in a single kernel call (``fastmbrl._ext._nn._gaussian_train_step``), or in the
composition of the NumPy twins when ``FASTMBRL_PUREPYTHON=1``. Buffers are allocated once and reused.
"""
import ctypes
import ctypes.util
import logging
import os
import warnings
from contextlib import nullcontext

import numpy as np

from fastmbrl._threads import limit_blas
from fastmbrl._validate import check_float, check_int
from fastmbrl.config import ModelConfig
from fastmbrl.nn import _kernels
from fastmbrl.nn.mlp import EnsembleMLP
from fastmbrl.nn.optim import parse_weight_decay

__all__ = ["GaussianTrainStep"]

logger = logging.getLogger(__name__)

# Rows of one member processed at once: bounds the workspace for large evaluation batches; a
# training minibatch of up to this many rows per member runs in one chunk.
MAX_CHUNK_ROWS = 512

_BLAS_HOOKS = None  # None: not searched yet; True: compiled code holds BLAS to 1 thread itself


class _Dl_info(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _scipy_blas_path():
    """Path of the shared library behind scipy.linalg.cython_blas.sgemm (via dladdr), or None."""
    import scipy.linalg.cython_blas as cb

    capsule = cb.__pyx_capi__["sgemm"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype = ctypes.c_void_p
    get_ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    addr = get_ptr(capsule, get_name(capsule))
    libdl = ctypes.CDLL(ctypes.util.find_library("dl") or None)
    info = _Dl_info()
    if not addr or not libdl.dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
        return None
    return os.fsdecode(info.dli_fname) if info.dli_fname else None


def _install_blas_hooks():
    """Let the compiled step hold scipy's OpenBLAS to one thread with two plain C calls.

    The step's own threads are the only ones wanted while it runs (spin-waiting pools collapse
    when the other core is busy: docs/performance.md), and threadpoolctl's context manager costs tens of
    microseconds per call, a large share of a small step. Falls back to that context manager when
    the BLAS is not an OpenBLAS whose thread functions can be found.
    """
    global _BLAS_HOOKS
    if _BLAS_HOOKS is not None:
        return _BLAS_HOOKS
    _BLAS_HOOKS = False
    impl = _kernels._impl  # binds the kernels; a failed import turns COMPILED off
    if not _kernels.COMPILED:
        return _BLAS_HOOKS
    try:
        path = _scipy_blas_path()
        lib = ctypes.CDLL(path) if path else None
    except (OSError, AttributeError, KeyError, TypeError):
        lib = None
    if lib is not None:
        for prefix in ("scipy_openblas_", "scipy_openblas64_", "openblas_"):
            for suffix in ("", "64_"):
                try:
                    getter = getattr(lib, f"{prefix}get_num_threads{suffix}")
                    setter = getattr(lib, f"{prefix}set_num_threads{suffix}")
                except AttributeError:
                    continue
                addr = [ctypes.cast(f, ctypes.c_void_p).value for f in (getter, setter)]
                impl._set_blas_thread_hooks(addr[0], addr[1])
                _BLAS_HOOKS = True
                return _BLAS_HOOKS
    logger.debug("scipy BLAS thread functions not found; using threadpoolctl per step")
    return _BLAS_HOOKS


def _blas_single_thread():
    """Context holding the BLAS to one thread when the compiled hooks are unavailable."""
    if _BLAS_HOOKS or not _kernels.COMPILED:
        return nullcontext()
    return limit_blas(1)


def fit_threads_pay():
    """Whether a second thread pays for the fused step (what ``n_threads="auto"`` asks): True with
    an OpenMP build, and with the NumPy twins (which ignore the setting)."""
    # have_openmp() loads the extension first (a failed load turns COMPILED off)
    return _kernels.have_openmp() or not _kernels.COMPILED


class GaussianTrainStep:
    """Fused minibatch training of an ensemble MLP as a heteroskedastic Gaussian model.

    Parameters
    ----------
    net : EnsembleMLP
        The network, with ``out_dim == 2 D``: the first D outputs are the mean, the last D the raw
        log-variance. Its parameters are updated in place.
    lr : float
        Adam learning rate.
    weight_decay : float or sequence of float
        Coupled L2 decay (added to the gradient, as PETS and ``torch.optim.Adam``); a sequence gives
        one value per array of ``net.params`` (PETS uses larger decay for deeper layers). The bounds
        are not decayed.
    max_logvar, min_logvar : array (D,) or None
        Initial learnable bounds (defaults 0.5 and -10, as PETS/mbrl-lib).
    bound_penalty : float
        Weight of ``sum(max_logvar) - sum(min_logvar)`` in the minimised loss.
    betas, eps : Adam hyperparameters.
    n_threads : int
        Threads of the compiled step (default 1: thread teams collapse when the other core is busy,
        docs/performance.md). With more, threads take whole members first come first served, and Adam's update
        is split by halves of the parameter vector. Every member's gradient is computed by one
        thread in a fixed order and reduced in member order, so results are bit-identical for any
        ``n_threads``. Up to E threads are used. Needs OpenMP in the build (otherwise a warning and
        one thread). Ignored by the NumPy reference path.

    Attributes
    ----------
    max_logvar, min_logvar : arrays (D,), the live learnable bounds
    bounds_grad : array (2 D,), the last gradient of [max_logvar, min_logvar] (penalty included)
    t : int, Adam steps taken
    member_loss : float64 array (E,), each member's NLL from the last call

    Notes
    -----
    Per step, with mean = out[..., :D] and lv the soft-bounded out[..., D:] (Chua et al. 2018, A.1):
    ``loss = 1/(E B) sum_{e,b,d} [(t - mean)^2 exp(-lv) + lv]`` (course notes 4.1), minimised together
    with ``bound_penalty (sum max_logvar - sum min_logvar)`` by Adam over the network and the bounds.
    """

    def __init__(self, net, lr=ModelConfig.lr, weight_decay=0.0, max_logvar=None, min_logvar=None,
                 bound_penalty=0.01, betas=(0.9, 0.999), eps=1e-8, n_threads=1):
        if not isinstance(net, EnsembleMLP):
            raise TypeError(f"net: expected an EnsembleMLP, got {type(net).__name__}")
        if net.out_dim % 2:
            raise ValueError(f"net: expected out_dim = 2 D (mean and log-variance), got {net.out_dim}")
        if net.n_layers > 64:
            raise ValueError(f"net: at most 64 layers are supported, got {net.n_layers}")
        self.net = net
        self.dtype = net.dtype
        self.out_features = net.out_dim // 2
        D = self.out_features
        self._bounds = np.empty(2 * D, dtype=self.dtype)
        self.max_logvar = self._bounds[:D]
        self.min_logvar = self._bounds[D:]
        self.max_logvar[...] = self._check_bound("max_logvar", max_logvar, 0.5)
        self.min_logvar[...] = self._check_bound("min_logvar", min_logvar, -10.0)
        if np.any(self.min_logvar >= self.max_logvar):
            raise ValueError(f"min_logvar: expected values below max_logvar {self.max_logvar}, "
                             f"got {self.min_logvar}")
        self.bounds_grad = np.zeros(2 * D, dtype=self.dtype)

        decays = parse_weight_decay(weight_decay, len(net.params), "array of net.params")
        self.weight_decay = decays
        self._seg_end = np.cumsum([p.size for p in net.params]).astype(np.int64)
        self._seg_decay = np.array(decays, dtype=np.float64)
        lr = check_float("lr", lr, minimum=0.0, strict_min=True)
        if len(betas) != 2:
            raise ValueError(f"betas: expected two values in [0, 1), got {tuple(betas)}")
        beta1, beta2 = (check_float("betas", b, minimum=0.0, maximum=1.0, strict_max=True)
                        for b in betas)
        eps = check_float("eps", eps, minimum=0.0, strict_min=True)
        bound_penalty = check_float("bound_penalty", bound_penalty, minimum=0.0)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas: expected two values in [0, 1), got {tuple(betas)}")
        if not (np.isfinite(bound_penalty) and bound_penalty >= 0):
            raise ValueError(f"bound_penalty: expected a finite value >= 0, got {bound_penalty}")
        self.lr = float(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, float(eps)
        self.bound_penalty = float(bound_penalty)
        n_threads = check_int("n_threads", n_threads)
        if n_threads > 1 and _kernels.COMPILED and not _kernels.have_openmp():
            warnings.warn("n_threads: this build has no OpenMP; running on one thread", stacklevel=2)
            n_threads = 1
        self.n_threads = n_threads

        self.t = 0
        self.m = np.zeros_like(net.flat)
        self.v = np.zeros_like(net.flat)
        self._bm = np.zeros(2 * D, dtype=self.dtype)
        self._bv = np.zeros(2 * D, dtype=self.dtype)
        self.member_loss = np.zeros(net.ensemble_size, dtype=np.float64)
        self._work = np.empty(0, dtype=self.dtype)
        self._work_key = None
        _install_blas_hooks()

    # ---------------------------------------------------------------------------------------------
    def _check_bound(self, name, value, default):
        D = self.out_features
        if value is None:
            return np.full(D, default, dtype=self.dtype)
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
        if arr.shape != (D,):
            raise ValueError(f"{name}: expected shape ({D},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
        return arr.astype(self.dtype)

    def _check_batch(self, x, target):
        net = self.net
        E, D = net.ensemble_size, self.out_features
        for name, arr, width in (("x", x, net.in_dim), ("target", target, D)):
            if not isinstance(arr, np.ndarray) or arr.dtype != self.dtype:
                got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                raise TypeError(f"{name}: expected a {np.dtype(self.dtype).name} array, got {got}")
            if arr.ndim != 3 or arr.shape[0] != E or arr.shape[2] != width:
                raise ValueError(f"{name}: expected shape ({E}, B, {width}) (ensemble_size, rows, "
                                 f"features), got {arr.shape}")
        if target.shape[1] != x.shape[1]:
            raise ValueError(f"target: expected {x.shape[1]} rows like x, got {target.shape[1]}")
        if x.shape[1] == 0:
            raise ValueError("x: expected at least one row, got 0")
        for name, arr in (("x", x), ("target", target)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
        return np.ascontiguousarray(x), np.ascontiguousarray(target)

    def _workspace(self, rows):
        nt = self.n_threads
        chunk = min(rows, MAX_CHUNK_ROWS)
        key = (chunk, nt)
        if self._work_key is None or chunk > self._work_key[0]:
            size = _kernels._train_workspace_size(self.net.layer_dims, self.net.ensemble_size, chunk, nt)
            self._work = np.empty(max(int(size), 1), dtype=self.dtype)
            self._work_key = key
        return self._work, chunk

    def _run(self, x, target, update, out=None):
        net = self.net
        work, chunk = self._workspace(x.shape[1])
        step = self.t + 1 if update else max(self.t, 1)
        with _blas_single_thread():
            loss = _kernels._gaussian_train_step(
                x, target, net.flat, net.grad_flat, net.layer_dims, net.activation_code,
                self._bounds, self.bounds_grad, self.m, self.v, self._bm, self._bv, self._seg_end,
                self._seg_decay, self.lr, self.beta1, self.beta2, self.eps, step, self.bound_penalty,
                update, self.member_loss, work, chunk, self.n_threads, out)
        return loss

    # ---------------------------------------------------------------------------------------------
    def __call__(self, x, target):
        """One Adam step on a minibatch.

        Parameters
        ----------
        x : array (E, B, D_in) of the network's dtype, each member's input rows
        target : array (E, B, D), each member's targets

        Returns
        -------
        loss : float, the mean NLL of this minibatch before the update

        Raises
        ------
        FloatingPointError
            If the loss is not finite; the parameters, bounds and Adam state are then unchanged.
        """
        x, target = self._check_batch(x, target)
        loss = self._run(x, target, True)
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss: the training loss is not finite ({loss}); parameters "
                                     "were left unchanged (lower lr or check the data scale)")
        self.t += 1
        return float(loss)

    def evaluate(self, x, target, out=None):
        """Each member's NLL on held-out rows, without any update.

        Parameters
        ----------
        x : array (E, B, D_in);  target : array (E, B, D)
        out : C-contiguous array (E, B, 2 D) of the network's dtype, optional
            Receives the network output of every row (the mean, then the raw log-variance before
            the soft bounds), so a caller that also needs the predictions (a holdout MSE) does not
            run a second forward pass.

        Returns
        -------
        member_loss : float64 array (E,), ``1/B sum_{b,d} [(t - mean)^2 exp(-lv) + lv]`` per member
        """
        x, target = self._check_batch(x, target)
        if out is not None:
            shape = x.shape[:2] + (self.net.out_dim,)
            if (not isinstance(out, np.ndarray) or out.dtype != self.dtype or out.shape != shape
                    or not out.flags.c_contiguous):
                got = (f"{out.dtype.name} {out.shape}" if isinstance(out, np.ndarray)
                       else type(out).__name__)
                raise ValueError(f"out: expected a C-contiguous {np.dtype(self.dtype).name} array "
                                 f"of shape {shape}, got {got}")
        self._run(x, target, False, out)
        return self.member_loss.copy()

    def state_dict(self):
        """Adam moments, step count and bounds (copies), for checkpoints."""
        return {"t": self.t, "m": self.m.copy(), "v": self.v.copy(), "bounds_m": self._bm.copy(),
                "bounds_v": self._bv.copy(), "max_logvar": self.max_logvar.copy(),
                "min_logvar": self.min_logvar.copy()}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned; shapes must match."""
        targets = {"m": self.m, "v": self.v, "bounds_m": self._bm, "bounds_v": self._bv,
                   "max_logvar": self.max_logvar, "min_logvar": self.min_logvar}
        for key, mine in targets.items():
            if key not in state:
                raise KeyError(f"state: missing {key!r}")
            theirs = np.asarray(state[key])
            if theirs.shape != mine.shape:
                raise ValueError(f"state[{key!r}]: expected shape {mine.shape}, got {theirs.shape}")
            if not np.all(np.isfinite(theirs)):
                raise ValueError(f"state[{key!r}]: contains non-finite values")
        for key, mine in targets.items():
            mine[...] = state[key]
        self.t = int(state["t"])

    def __repr__(self):
        return (f"GaussianTrainStep({self.net!r}, lr={self.lr}, bound_penalty={self.bound_penalty}, "
                f"n_threads={self.n_threads})")
