"""The model objective: action sequences -> expected returns under a Gaussian ensemble.

``ModelRollout`` holds what persists across control steps (the RNG streams, buffers, the worker
thread); ``ModelRollout.objective(arrays, obs)`` binds a model snapshot and the current observation
and returns the callable the planners maximize. Each call of that callable crosses into compiled
code once per worker (``fastmbrl.planning._kernels._rollout_values``): the whole horizon, the
ensemble, the sampling and a Numba reward/termination function all run there.

Notes
-----
Chunks and threads: the candidates are split into contiguous chunks by problem size alone (one
chunk below ``2 * CHUNK_ROWS`` particle rows, else an even number of chunks of at least
``CHUNK_ROWS`` rows, at most ``MAX_CHUNKS``). Each chunk is one GIL-free kernel call with its own
RNG stream and buffers, so the values depend on the seed only, not on ``n_threads`` nor on which
thread ran which chunk. With ``n_threads=2`` the calling thread and one worker take chunks from a
shared queue: on a shared machine a descheduled thread then delays only the chunk it holds instead
of half the work (fixed halves made 2 threads slower than 1 under load). The agent limits
BLAS to one thread meanwhile (``threadpoolctl``): spinning OpenBLAS teams collapse on 2 busy cores
(docs/performance.md, "Threads").

Numba reward functions and the on-disk cache (numba 0.68): passing an ``njit`` dispatcher
straight into the ``cache=True`` kernel types that argument as ``Dispatcher(<function at 0x...>)``;
the key holds the object's address, so every new process misses the cache, recompiles the kernel
and appends one more entry to the cache index. The rollout therefore hands the kernel a
first-class function value instead (Numba's wrapper-address protocol: the compiled function's
signature and C address). The kernel is then keyed by the signature alone, one cached kernel serves
every reward function of that signature, and a fresh process with a warm cache pays only Numba's
start-up and the cache loads for its first ``act()`` (figures in benchmarks/README.md). The call
through a function pointer happens once per step.
A plain Python/NumPy function works too: the kernel then stores every state and Python calls the
function once per worker on all ``H * R`` transitions, applying termination masks afterwards.

Deadlines (``objective.evaluate_until(actions, deadline, clock)``, what the planners call under a
time budget): the candidates are cut into chunks sized so that one costs about
``BUDGET_CHUNK_SECONDS`` (from the measured seconds per particle row of this model size and
horizon, or a conservative estimate from the layer widths before the first measurement; rounded
down to a power of two candidates so that few buffer sizes exist), and a chunk starts only if
``clock()`` plus its estimated cost stays within the deadline. A compiled call cannot be
interrupted, so the overrun is bounded by the estimate's error on one chunk (a fraction
of a millisecond) and not by the population. Chunks are taken in order (by both workers), so the
scored candidates are always a prefix. The chunks draw their random numbers from a stream of
their own (seeded from ``seed``): results under a deadline depend on the timing, results without
one do not and are unaffected by calls with one.
"""
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue

import numpy as np

from fastmbrl import backend
from fastmbrl._config import PROPAGATION_MODES
from fastmbrl._validate import as_float_array, check_int
from fastmbrl.models._user_functions import (_check_output_dtype,  # noqa: F401
                                             _check_user_function, _compiled_function_handle,
                                             _expected_signature, _PythonStatusHandle,
                                             is_numba_function)
from fastmbrl.models.arrays import ModelArrays

PROPAGATIONS = {name: code for code, name in enumerate(PROPAGATION_MODES)}   # kernel codes

# Particle rows per chunk: big enough that each member's block (rows / M) keeps BLAS efficient
# (>= ~300 rows of a 200-wide layer), small enough for load balancing between two threads.
CHUNK_ROWS = 1500
MAX_CHUNKS = 8

# Under a deadline: the target cost of one chunk, and the throughput assumed for the first chunk
# of a model size before any measurement (low on purpose: a too-small first chunk costs little).
BUDGET_CHUNK_SECONDS = 3e-4
BUDGET_ASSUMED_FLOPS = 2e10


def chunk_bounds(n_cand, n_particles):
    """Candidate boundaries (n_chunks + 1,) of the rollout's chunks; depends on the sizes only."""
    n_rows = n_cand * n_particles
    if n_rows < 2 * CHUNK_ROWS or n_cand < 2:
        n_chunks = 1
    else:
        n_chunks = min(MAX_CHUNKS, 2 * (n_rows // (2 * CHUNK_ROWS)), n_cand)
    return (np.arange(n_chunks + 1) * n_cand) // n_chunks


def _kernels():
    if backend.use_compiled():
        from fastmbrl.planning import _kernels as k
    else:
        from fastmbrl.planning import _reference as k
    return k


_ENTRY_LOCK = threading.Lock()
_ENTRY_POINTS = {}


def _entry_point(args, key):
    """The kernel's compiled entry point for these argument types (compiled or loaded once)."""
    ep = _ENTRY_POINTS.get(key)
    if ep is None:
        from numba import typeof

        from fastmbrl.planning._kernels import _rollout_values
        with _ENTRY_LOCK:
            ep = _ENTRY_POINTS.get(key)
            if ep is None:
                ep = _rollout_values.compile(tuple(typeof(a) for a in args))
                _ENTRY_POINTS[key] = ep
    return ep


def check_bonus_weight(bonus_weight):
    """The optimism bonus weight as a float ``>= 0``; raise ValueError naming it otherwise."""
    if isinstance(bonus_weight, bool) or not isinstance(bonus_weight, (int, float, np.floating,
                                                                       np.integer)):
        raise TypeError(f"bonus_weight: expected a number >= 0, got {bonus_weight!r}")
    w = float(bonus_weight)
    if not (np.isfinite(w) and w >= 0):
        raise ValueError(f"bonus_weight: expected a finite number >= 0, got {bonus_weight!r}")
    return w


def _writable(a):
    # Numba types read-only arrays differently; the kernel's entry point is compiled for writable
    # ones, so read-only inputs (np.load mmap, frozen model snapshots) are copied.
    return a if a.flags.writeable else a.copy()


def check_model_arrays(arrays, obs_dim=None, act_dim=None):
    """Validate a ModelArrays snapshot; return ``(arrays cast to one dtype, dtype, D_obs, D_act)``.

    Raises
    ------
    TypeError, ValueError
        Naming the offending field, what was expected and what came.
    """
    if not isinstance(arrays, ModelArrays):
        raise TypeError(f"model: expected a GaussianEnsemble (with .arrays()) or a ModelArrays, "
                        f"got {type(arrays).__name__}")
    flat = _writable(np.ascontiguousarray(arrays.flat))
    if flat.dtype not in (np.float32, np.float64) or flat.ndim != 1:
        raise TypeError(f"model.flat: expected a 1-D float32/float64 array, got {flat.dtype} "
                        f"{flat.shape}")
    dtype = flat.dtype
    dims = _writable(np.ascontiguousarray(arrays.layer_dims, dtype=np.int64))
    ensemble_size = int(arrays.ensemble_size)
    n_params = 0
    dims_list = dims.tolist()   # Python ints: NumPy scalar arithmetic is slower, at every act()
    for fan_in, fan_out in zip(dims_list[:-1], dims_list[1:]):
        n_params += ensemble_size * (fan_in * fan_out + fan_out)
    if flat.size != n_params:
        raise ValueError(f"model.flat: expected {n_params} parameters for layer_dims {tuple(dims)} "
                         f"and {ensemble_size} members, got {flat.size}")
    angle_mask = np.asarray(arrays.angle_mask, dtype=bool)
    delta_mask = _writable(np.ascontiguousarray(arrays.delta_mask, dtype=bool))
    d_obs = angle_mask.shape[0]
    if angle_mask.ndim != 1 or delta_mask.shape != (d_obs,):
        raise ValueError(f"model.delta_mask: expected shape ({d_obs},) like angle_mask, got "
                         f"{delta_mask.shape}")
    if obs_dim is not None and d_obs != obs_dim:
        raise ValueError(f"model: predicts {d_obs} observation dims, the agent expects {obs_dim}")
    d_out = d_obs + int(bool(arrays.has_reward))
    if dims[-1] != 2 * d_out:
        raise ValueError(f"model.layer_dims: expected last width 2 * {d_out} = {2 * d_out}, got "
                         f"{dims[-1]}")
    d_act = int(dims[0]) - d_obs - int(angle_mask.sum())
    if act_dim is not None and d_act != act_dim:
        raise ValueError(f"model: network input width {dims[0]} implies {d_act} action dims, the "
                         f"action space has {act_dim}")
    members = _writable(np.ascontiguousarray(arrays.members, dtype=np.int64))
    if members.ndim != 1 or members.size == 0 or members.min() < 0 or members.max() >= ensemble_size:
        raise ValueError(f"model.members: expected a non-empty 1-D array of indices in "
                         f"[0, {ensemble_size}), got {np.asarray(arrays.members)!r}")
    if int(arrays.activation) not in (0, 1, 2, 3):
        raise ValueError(f"model.activation: expected a code in 0..3, got {arrays.activation}")

    def vec(name, x, n):
        # An array already in the kernel's form needs only the finiteness check: this runs at
        # every act(), where as_float_array's general path would add its cost for every vector.
        if (type(x) is np.ndarray and x.dtype == dtype and x.shape == (n,)
                and x.flags.c_contiguous and x.flags.writeable and np.isfinite(x).all()):
            return x
        return _writable(as_float_array(f"model.{name}", x, dtype=dtype, shape=(n,)))

    d_in = int(dims[0])
    cast = ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=ensemble_size, activation=int(arrays.activation),
        members=members, angle_mask=angle_mask, delta_mask=delta_mask,
        in_mean=vec("in_mean", arrays.in_mean, d_in), in_std=vec("in_std", arrays.in_std, d_in),
        out_mean=vec("out_mean", arrays.out_mean, d_out),
        out_std=vec("out_std", arrays.out_std, d_out),
        max_logvar=vec("max_logvar", arrays.max_logvar, d_out),
        min_logvar=vec("min_logvar", arrays.min_logvar, d_out),
        has_reward=bool(arrays.has_reward))
    return cast, dtype, d_obs, d_act


class _Buffers:
    """Every array one worker's kernel call needs for ``R`` rows, allocated once and reused."""

    def __init__(self, n_rows, horizon, dims, d_obs, d_act, d_out, dtype, n_perm_steps, noisy,
                 bonus_members=0):
        max_hidden = int(max(dims[1:-1])) if len(dims) > 2 else 1
        self.perm_uniforms = np.zeros((n_perm_steps, n_rows))
        self.perms = np.zeros((n_perm_steps, n_rows), dtype=np.int64)
        self.noise = np.zeros((horizon, n_rows, d_out) if noisy else (1, 1, d_out), dtype=dtype)
        self.states = np.zeros((horizon + 1, n_rows, d_obs), dtype=dtype)
        self.act_rows = np.zeros((horizon, n_rows, d_act), dtype=dtype)
        self.rewards = np.zeros((horizon, n_rows), dtype=dtype)
        self.dones = np.zeros((horizon, n_rows), dtype=np.bool_)
        self.x = np.zeros((n_rows, int(dims[0])), dtype=dtype)
        self.y = np.zeros((n_rows, int(dims[-1])), dtype=dtype)
        self.std = np.zeros((n_rows, d_out), dtype=dtype)
        pred_rows = 1 if noisy else n_rows          # "expectation": one member's mean and variance
        self.pred_mean = np.zeros((1, pred_rows, d_out), dtype=dtype)
        self.pred_var = np.zeros((1, pred_rows, d_out), dtype=dtype)
        self.h0 = np.zeros(n_rows * max_hidden, dtype=dtype)
        self.h1 = np.zeros(n_rows * max_hidden, dtype=dtype)
        self.ebuf = np.zeros(2 * n_rows * max(max_hidden, d_out), dtype=dtype)
        # optimism bonus: every member's mean at every row (only when on; else placeholders)
        b_shape = (bonus_members, n_rows, d_out) if bonus_members > 0 else (1, 1, d_out)
        self.bonus_mean = np.zeros(b_shape, dtype=dtype)
        self.bonus_var = np.zeros(b_shape, dtype=dtype)
        self.bonus = np.zeros((horizon, n_rows) if bonus_members > 0 else (1, 1), dtype=dtype)


class ModelRollout:
    """Scores action sequences by rolling particles through a Gaussian ensemble (PETS).

    Parameters
    ----------
    reward_fn : callable or None
        ``reward_fn(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs)) -> (N,)``; a ``numba.njit``
        function runs inside the compiled rollout. None uses the model's learned reward head.
    termination_fn : callable or None
        Same signature, returning bool (N,); rewards after a particle's termination are not counted.
    particles : int
        N, trajectories per candidate.
    propagation : {"ts1", "tsinf", "expectation"}
        "ts1": each particle draws a random member at every step (rows are permuted among the
        members so each member gets an equal block, as in mbrl-lib); "tsinf": a member fixed per
        particle for the whole horizon; "expectation": the deterministic mean of the members' means
        (one particle suffices, so only one is computed).
    n_threads : {1, 2}
        Threads taking chunks of candidates from a shared queue (results do not depend on it).
    seed : int or None
        Seeds the noise and member assignment streams.
    blas_threads : int or None
        OpenBLAS threads while the kernels run (threadpoolctl), 1 by default: with scipy's
        two-thread OpenBLAS team left on, objective calls ran several times slower on the shared
        2-core machine (benchmarks/README.md).
        None leaves BLAS alone. ``blas_limit()`` applies the limit around several calls.
    bonus_weight : float
        ``w >= 0``, weight of the optimism bonus (exploration from the ensemble's disagreement):
        a candidate's value becomes ``return + w * (1/N) sum_i sum_t u[t, i]`` where ``u[t, i]`` is
        the variance across the elite members' predicted means of the next state from particle
        ``i``'s state at step ``t``, in the target normaliser's units, summed over observation
        dims (``fastmbrl.planning._kernels._disagreement``), counted until termination. It needs
        every elite member's forward pass on every row at every step (M + 1 passes instead of 1
        for ts1/tsinf; "expectation" computes them anyway and the bonus reuses them), so it is
        computed only when ``w > 0``; 0 (default) is the plain PETS objective, bit for bit.
    """

    def __init__(self, reward_fn=None, termination_fn=None, particles=20, propagation="ts1",
                 n_threads=1, seed=None, blas_threads=1, bonus_weight=0.0):
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation: expected one of {sorted(PROPAGATIONS)}, got "
                             f"{propagation!r}")
        particles = check_int("particles", particles)
        if isinstance(n_threads, bool) or n_threads not in (1, 2):
            raise ValueError(f"n_threads: expected 1 or 2, got {n_threads!r}")
        for name, fn in (("reward_fn", reward_fn), ("termination_fn", termination_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name}: expected a callable or None, got {type(fn).__name__}")
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.bonus_weight = check_bonus_weight(bonus_weight)
        self.particles = int(particles)
        self.propagation = propagation
        self.n_threads = int(n_threads)
        self.reseed(seed)
        self._buffers = {}
        self._buffer_key = None
        self._executor = None
        self._handles = {}
        self.n_calls = 0
        self.blas_threads = blas_threads
        self._blas = None
        self._blas_depth = 0

    @contextlib.contextmanager
    def blas_limit(self):
        """Context limiting OpenBLAS to ``blas_threads`` (re-entrant; a no-op when None)."""
        if self.blas_threads is None or self._blas_depth > 0:
            self._blas_depth += 1
            try:
                yield
            finally:
                self._blas_depth -= 1
            return
        if self._blas is None:
            # Numba's np.dot calls scipy's OpenBLAS (scipy.linalg.cython_blas), which is loaded
            # only when a kernel first runs; a controller made before that would see numpy's copy
            # alone and leave scipy's thread team running inside the kernels.
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController
            self._blas = ThreadpoolController().select(user_api="blas")
        with self._blas.limit(limits=self.blas_threads):
            self._blas_depth += 1
            try:
                yield
            finally:
                self._blas_depth -= 1

    def reseed(self, seed):
        """Restart the random streams from ``seed`` (chunk ``c`` draws from child stream ``c``)."""
        self._seed_seq = np.random.SeedSequence(seed)
        self._rngs = []
        # calls under a deadline draw their chunk keys from a separate stream, so that they leave
        # the streams of calls without one untouched
        self._deadline_rng = np.random.default_rng(np.random.SeedSequence(
            self._seed_seq.entropy, spawn_key=(0xD7AD11E,)))
        if not hasattr(self, "_sec_per_row"):
            self._sec_per_row = {}

    def _rng(self, chunk):
        while len(self._rngs) <= chunk:
            self._rngs.append(np.random.default_rng(self._seed_seq.spawn(1)[0]))
        return self._rngs[chunk]

    def close(self):
        """Stop the worker thread (also done at garbage collection)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # ------------------------------------------------------------------ binding
    def objective(self, arrays, obs):
        """Bind a model snapshot and the observation; return ``f(actions (P, H, D_act)) -> (P,)``.

        Parameters
        ----------
        arrays : ModelArrays
        obs : float array (D_obs,)

        Returns
        -------
        callable
            Maps float array (P, H, D_act) of candidate sequences to their values (P,) in the
            model's dtype (mean over particles of the summed rewards, plus the optimism bonus
            when ``bonus_weight > 0``).
        """
        arrays, dtype, d_obs, d_act = check_model_arrays(arrays)
        obs = _writable(as_float_array("obs", obs, dtype=dtype, shape=(d_obs,)))
        reward_mode, term_mode = self._modes(arrays)
        key = (tuple(arrays.layer_dims), dtype, d_obs, d_act)
        if key != self._buffer_key:
            self._buffers = {}
            self._buffer_key = key
        handles = self._function_handles(dtype, d_obs, d_act, reward_mode, term_mode)
        return _Objective(self, arrays, obs, dtype, d_obs, d_act, reward_mode, term_mode, handles)

    def _modes(self, arrays):
        k = _kernels()
        if self.reward_fn is None:
            if not arrays.has_reward:
                raise ValueError("reward_fn: None needs a model with a learned reward head "
                                 "(arrays.has_reward), this model has none")
            reward_mode = k.REWARD_LEARNED
        elif is_numba_function(self.reward_fn):
            reward_mode = k.REWARD_FN
        else:
            reward_mode = k.REWARD_LATER
        if self.termination_fn is None:
            term_mode = k.TERM_NONE
        elif is_numba_function(self.termination_fn):
            term_mode = k.TERM_FN
        else:
            term_mode = k.TERM_LATER
        return reward_mode, term_mode

    def _function_handles(self, dtype, d_obs, d_act, reward_mode, term_mode):
        """The reward and termination functions as the kernel receives them (checked once).

        Each is first called from Python on two rows of the kernel's exact argument types (its
        signature, output shape and dtype are checked there), then wrapped so that the kernel
        gets a status back: an exception or an output of the wrong length at any N stops the
        rollout and is raised in Python (:meth:`_raise_user_failure`).
        """
        k = _kernels()
        out = []
        for fn, mode, on, placeholder, what in (
                (self.reward_fn, reward_mode, k.REWARD_FN, k._zero_reward, "reward_fn"),
                (self.termination_fn, term_mode, k.TERM_FN, k._never_done, "termination_fn")):
            if fn is not None and mode != on:      # a NumPy function, called later in Python
                later_key = ("later", id(fn), np.dtype(dtype).name, d_obs, d_act)
                if later_key not in self._handles:
                    _check_user_function(fn, dtype, d_obs, d_act, what)
                    self._handles[later_key] = (fn, None)
            fn = fn if mode == on else placeholder
            key = (id(fn), np.dtype(dtype).name)
            handle = self._handles.get(key)
            if handle is None:
                if backend.use_compiled():
                    handle = _compiled_function_handle(fn, dtype, d_obs, d_act, what)
                else:
                    _check_user_function(fn, dtype, d_obs, d_act, what)
                    handle = _PythonStatusHandle(fn, what)
                self._handles[key] = (fn, handle)   # fn kept so its id is not reused
            else:
                handle = handle[1]
            out.append(handle)
        return tuple(out)

    # ------------------------------------------------------------------ evaluation
    def _get_buffers(self, chunk, n_rows, horizon, arrays, d_obs, d_act, dtype):
        bonus_members = int(arrays.ensemble_size) if self.bonus_weight > 0 else 0
        key = (chunk, n_rows, horizon)
        store = self._buffers
        buf = store.get(key)
        if buf is None or (bonus_members > 0 and buf.bonus_mean.shape[:2] != (
                bonus_members, n_rows)):
            if len(store) > 4 * MAX_CHUNKS:  # a decaying population uses a few sizes; bound it
                store.clear()
            noisy = self.propagation != "expectation"
            n_perm = horizon if self.propagation == "ts1" else 1
            buf = _Buffers(n_rows, horizon, arrays.layer_dims, d_obs, d_act, d_obs + int(
                arrays.has_reward), dtype, n_perm, noisy, bonus_members)
            store[key] = buf
        return buf

    def _run_chunk(self, chunk, bound, actions, values_out, keys=None, slot=None):
        """Draw this chunk's random numbers and run its kernel call on its block of candidates.

        ``keys`` (2,) replaces the draw from chunk ``chunk``'s stream and ``slot`` the buffer key
        (both used under a deadline).
        """
        k = _kernels()
        arrays = bound.arrays
        n_cand, horizon, _ = actions.shape
        n_part = 1 if self.propagation == "expectation" else self.particles
        buf = self._get_buffers(chunk if slot is None else slot, n_cand * n_part, horizon, arrays,
                                bound.d_obs, bound.d_act, bound.dtype)
        if self.propagation != "expectation":
            # the chunk's stream gives two keys; compiled counter-based generators expand them,
            # about ten times faster than numpy's Generator at these sizes (docs/performance.md)
            if keys is None:
                keys = self._rng(chunk).bit_generator.random_raw(2)
            k._fill_uniform(keys[0], buf.perm_uniforms.reshape(-1))
            k._fill_normal(keys[1], buf.noise.reshape(-1))
        args = (
            actions, bound.obs, n_part, buf.perm_uniforms, buf.perms, buf.noise, arrays.flat,
            arrays.layer_dims, arrays.ensemble_size, arrays.activation, arrays.members,
            bound.plain_idx, bound.angle_idx, arrays.delta_mask, arrays.in_mean, arrays.in_std,
            arrays.out_mean, arrays.out_std, arrays.max_logvar, arrays.min_logvar,
            PROPAGATIONS[self.propagation], bound.reward_mode, bound.term_mode,
            bound.kernel_reward_fn, bound.kernel_term_fn, buf.states, buf.act_rows, buf.rewards,
            buf.dones, buf.x, buf.y, buf.std, buf.pred_mean, buf.pred_var, buf.h0, buf.h1,
            buf.ebuf, values_out, self.bonus_weight, buf.bonus_mean, buf.bonus_var, buf.bonus)
        if backend.use_compiled():
            # the argument types are fixed for a bound objective: look the entry point up once
            # (hashing the function signatures for the key at every call would cost more)
            ep = bound.entry_point
            if ep is None:
                key = (np.dtype(bound.dtype).name, bound.kernel_reward_fn.sig,
                       bound.kernel_term_fn.sig)
                ep = bound.entry_point = _entry_point(args, key)
            status = ep(*args)
        else:
            status = k._rollout_values(*args)
        if status:
            self._raise_user_failure(int(status), buf)
        return buf, n_part

    def _raise_user_failure(self, code, buf):
        """Turn the kernel's failure status into the user function's error, named.

        ``code = (t * 2 + which) * 4 + status`` (see ``_kernels._rollout_values``). The failing
        call is repeated from Python on the same inputs (the step's rows, still in the buffers) so
        the error carries the user's own exception and traceback.
        """
        status, which, t = code % 4, (code // 4) % 2, code // 8
        what = "reward_fn" if which == 0 else "termination_fn"
        fn = self.reward_fn if which == 0 else self.termination_fn
        obs, act, nxt = buf.states[t].copy(), buf.act_rows[t].copy(), buf.states[t + 1].copy()
        n = obs.shape[0]
        where = f"at horizon step {t} of the rollout (N={n} rows); the rollout was stopped"
        if status == 1:
            try:
                fn(obs, act, nxt)
            except Exception as exc:
                raise RuntimeError(f"{what} raised {type(exc).__name__}: {exc} {where}") from exc
            raise RuntimeError(f"{what} raised an exception {where} (called again from Python on "
                               f"the same inputs, it did not)")
        try:
            shape = np.shape(fn(obs, act, nxt))
        except Exception:  # pragma: no cover - it returned once, inside the rollout
            shape = "unknown"
        raise ValueError(f"{what}: expected an array of shape (N,) for N={n} rows, got shape "
                         f"{shape} {where}")

    def _finish_in_python(self, bound, buf, n_part, values_out):
        """Reward/termination functions that are not compiled: one call on all H * R transitions."""
        k = _kernels()
        horizon, n_rows, d_obs = buf.states.shape[0] - 1, buf.states.shape[1], buf.states.shape[2]
        obs = buf.states[:-1].reshape(horizon * n_rows, d_obs)
        nxt = buf.states[1:].reshape(horizon * n_rows, d_obs)
        act = buf.act_rows.reshape(horizon * n_rows, -1)
        for fn, mode, later, what in ((self.reward_fn, bound.reward_mode, k.REWARD_LATER,
                                       "reward_fn"),
                                      (self.termination_fn, bound.term_mode, k.TERM_LATER,
                                       "termination_fn")):
            if mode != later:
                continue
            try:
                res = np.asarray(fn(obs, act, nxt))
            except Exception as exc:
                raise RuntimeError(f"{what} raised {type(exc).__name__}: {exc} (called on the "
                                   f"rollout's N={horizon * n_rows} transitions)") from exc
            if res.shape != (horizon * n_rows,):
                raise ValueError(f"{what}: expected an array of shape (N,) for "
                                 f"N={horizon * n_rows} rows, got shape {res.shape}")
            _check_output_dtype(res, what, _expected_signature(what, bound.dtype, d_obs,
                                                               act.shape[1]))
            if what == "reward_fn":
                buf.rewards[...] = res.reshape(horizon, n_rows)
            else:
                buf.dones[...] = res.reshape(horizon, n_rows)
        k._masked_returns(buf.rewards, buf.dones, n_part, values_out)
        if self.bonus_weight > 0:
            k._add_bonus(buf.bonus, buf.dones, n_part, self.bonus_weight, values_out)

    def evaluate(self, bound, actions):
        """Values (P,) of candidate sequences ``actions`` (P, H, D_act) for a bound objective."""
        self.n_calls += 1
        n_cand = actions.shape[0]
        values = np.empty(n_cand, dtype=bound.dtype)
        n_part = 1 if self.propagation == "expectation" else self.particles
        edges = chunk_bounds(n_cand, n_part)
        n_chunks = len(edges) - 1
        for c in range(n_chunks):          # create streams and buffers before any thread starts
            self._rng(c)
        later = bound.reward_mode == 2 or bound.term_mode == 2
        done = [None] * n_chunks
        with self.blas_limit():
            if self.n_threads == 1 or n_chunks == 1:
                # the chunks in order on this thread, without the work queue (what drain() below
                # would do alone; its queue and closure would be a visible cost on small problems)
                for c in range(n_chunks):
                    lo, hi = edges[c], edges[c + 1]
                    done[c] = self._run_chunk(c, bound, actions[lo:hi], values[lo:hi])
            else:
                queue = SimpleQueue()
                for c in range(n_chunks):
                    queue.put(c)

                def drain():
                    while True:
                        try:
                            c = queue.get_nowait()
                        except Empty:
                            return
                        lo, hi = edges[c], edges[c + 1]
                        done[c] = self._run_chunk(c, bound, actions[lo:hi], values[lo:hi])

                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1,
                                                        thread_name_prefix="fastmbrl-rollout")
                future = self._executor.submit(drain)
                try:
                    drain()
                finally:
                    future.result()
        if later:
            for c in range(n_chunks):
                buf, n_p = done[c]
                self._finish_in_python(bound, buf, n_p, values[edges[c]:edges[c + 1]])
        return values

    def _initial_sec_per_row(self, bound, horizon):
        dims = bound.arrays.layer_dims.tolist()
        macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        return 2.0 * macs * horizon / BUDGET_ASSUMED_FLOPS

    def evaluate_until(self, bound, actions, deadline, clock):
        """Score candidates in order until ``deadline``; return ``(values (P,), n)``.

        Only the first ``n`` values are set (the others are NaN). A chunk starts only when
        ``clock() + estimated cost <= deadline`` (module notes); ``n`` may be 0.
        """
        import time

        self.n_calls += 1
        n_cand, horizon, _ = actions.shape
        values = np.full(n_cand, np.nan, dtype=bound.dtype)
        n_part = 1 if self.propagation == "expectation" else self.particles
        rate_key = (self._buffer_key, horizon, n_part)
        sec_per_row = self._sec_per_row.get(rate_key)
        if sec_per_row is None:
            sec_per_row = self._initial_sec_per_row(bound, horizon)
        per_chunk = max(1, min(n_cand, int(BUDGET_CHUNK_SECONDS / (sec_per_row * n_part))))
        # a power of two: each chunk size has its own buffers, so sizes must come from a small set
        # (reallocating them at every call cost more than the chunks themselves on small problems)
        per_chunk = 1 << (per_chunk.bit_length() - 1)
        edges = list(range(0, n_cand, per_chunk)) + [n_cand]
        n_chunks = len(edges) - 1
        keys = self._deadline_rng.bit_generator.random_raw(2 * n_chunks).reshape(n_chunks, 2)
        later = bound.reward_mode == 2 or bound.term_mode == 2
        lock = threading.Lock()
        progress = {"next": 0, "sec_per_row": sec_per_row, "done": 0, "measured": []}

        def work(worker):
            while True:
                with lock:
                    c = progress["next"]
                    if c >= n_chunks:
                        return
                    lo, hi = edges[c], edges[c + 1]
                    if clock() + progress["sec_per_row"] * (hi - lo) * n_part > deadline:
                        progress["next"] = n_chunks       # the other worker stops too
                        return
                    progress["next"] = c + 1
                n_compiled = len(_ENTRY_POINTS)
                t0 = time.perf_counter()
                buf, n_p = self._run_chunk(c, bound, actions[lo:hi], values[lo:hi],
                                           keys=keys[c], slot=("deadline", worker))
                if later:
                    self._finish_in_python(bound, buf, n_p, values[lo:hi])
                measured = (time.perf_counter() - t0) / ((hi - lo) * n_part)
                with lock:
                    progress["done"] += 1
                    if len(_ENTRY_POINTS) == n_compiled:   # not a compilation or cache load
                        progress["measured"].append(measured)
                        progress["sec_per_row"] = 0.5 * (progress["sec_per_row"] + measured)

        with self.blas_limit():
            if self.n_threads == 1 or n_chunks == 1:
                work(0)
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1,
                                                        thread_name_prefix="fastmbrl-rollout")
                future = self._executor.submit(work, 1)
                try:
                    work(0)
                finally:
                    future.result()
        if progress["measured"]:
            # the median of this call's chunks: one descheduled chunk does not shrink later ones
            self._sec_per_row[rate_key] = float(np.median(progress["measured"]))
        elif progress["done"] == 0:
            # nothing fitted: an estimate spoilt by a slow chunk (machine load) must not block
            # every later call, so it decays until a chunk fits again
            self._sec_per_row[rate_key] = 0.1 * sec_per_row
        return values, edges[progress["done"]]


class _Objective:
    """A ModelRollout bound to one model snapshot and observation; call it on (P, H, D_act)."""

    def __init__(self, rollout, arrays, obs, dtype, d_obs, d_act, reward_mode, term_mode,
                 handles):
        self.rollout = rollout
        self.arrays = arrays
        self.obs = obs
        self.dtype = dtype
        self.d_obs = d_obs
        self.d_act = d_act
        self.reward_mode = reward_mode
        self.term_mode = term_mode
        self.plain_idx = np.flatnonzero(~arrays.angle_mask).astype(np.int64)
        self.angle_idx = np.flatnonzero(arrays.angle_mask).astype(np.int64)
        self.kernel_reward_fn, self.kernel_term_fn = handles
        self.entry_point = None

    def __call__(self, actions):
        actions = np.asarray(actions)
        if actions.ndim != 3 or actions.shape[2] != self.d_act:
            raise ValueError(f"actions: expected shape (P, H, {self.d_act}), got {actions.shape}")
        actions = _writable(np.ascontiguousarray(actions, dtype=self.dtype))
        return self.rollout.evaluate(self, actions)

    def evaluate_until(self, actions, deadline, clock):
        """Score candidates (P, H, D_act) in order while ``clock()`` allows; ``(values, n)``.

        See ``ModelRollout.evaluate_until``: values (P,) of which the first ``n`` are set.
        """
        actions = np.asarray(actions)
        if actions.ndim != 3 or actions.shape[2] != self.d_act:
            raise ValueError(f"actions: expected shape (P, H, {self.d_act}), got {actions.shape}")
        actions = _writable(np.ascontiguousarray(actions, dtype=self.dtype))
        return self.rollout.evaluate_until(self, actions, deadline, clock)


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (or load from the on-disk cache) the rollout kernels for ``dtypes``.

    Covers every reward/termination function whose signature is the common one (float arrays of the
    model's dtype in, a float array of that dtype or a bool array out), since the kernel receives
    them as first-class function values typed by signature only; also the learned-reward and NumPy
    paths, and CEM's sampling/refit kernels. Returns the seconds spent.
    """
    import time

    from fastmbrl.nn._flat import param_offsets

    start = time.perf_counter()
    for dtype in dtypes:
        dims = np.array([2, 4, 2], dtype=np.int64)
        arrays = ModelArrays(
            flat=np.zeros(param_offsets(dims, 1)[-1], dtype=dtype), layer_dims=dims, ensemble_size=1,
            activation=3, members=np.zeros(1, dtype=np.int64), angle_mask=np.zeros(1, bool),
            delta_mask=np.ones(1, bool), in_mean=np.zeros(2, dtype), in_std=np.ones(2, dtype),
            out_mean=np.zeros(1, dtype), out_std=np.ones(1, dtype),
            max_logvar=np.zeros(1, dtype), min_logvar=np.full(1, -5.0, dtype), has_reward=False)
        k = _kernels()
        for propagation in ("ts1", "expectation"):
            rollout = ModelRollout(k._zero_reward, k._never_done, particles=2,
                                   propagation=propagation, seed=0)
            rollout.objective(arrays, np.zeros(1))(np.zeros((2, 2, 1)))
    # CEM's sampling and refit kernels (float64 whatever the model's dtype)
    from fastmbrl.planning.optimizers import CEM
    CEM(horizon=2, population=4, elite_frac=0.5, iterations=1, seed=0).optimize(
        lambda s: -np.abs(s).sum(axis=(1, 2)), -np.ones(1), np.ones(1))
    return time.perf_counter() - start
