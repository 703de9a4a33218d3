"""The model objective: action sequences -> expected returns under a Gaussian ensemble.

``ModelRollout`` holds what persists across control steps (the RNG streams, buffers, the worker
thread); ``ModelRollout.objective(arrays, obs)`` binds a model snapshot and the current observation
and returns the callable the planners maximize. Each call of that callable crosses into compiled
code once per worker (``fastmbrl.planning._kernels._rollout_values``): the whole horizon, the
ensemble, the sampling and a Numba reward/termination function all run there.

Notes
-----
How the candidates are cut into chunks and run on one or two threads, with or without a deadline,
is ``fastmbrl.planning._schedule`` (its notes); the checks of the model snapshot are
``fastmbrl.planning._checks``.

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

Deadlines: ``objective.evaluate_until(actions, deadline, clock)`` scores a prefix of the
candidates within a deadline, in chunks sized by their measured costs, and stops a chunk still
running at the deadline between two model steps (the kernel reads a stop flag before each step);
``objective.budget_check(seconds, horizon)`` refuses a budget that cannot fit one candidate
(``fastmbrl.planning._schedule``, ``fastmbrl.planning._deadline``).

One worker's work arrays, the kernel's compiled entry points and the bound objective callable are
``fastmbrl.planning._rollout_parts``.
"""
import contextlib
import threading
import time

import numpy as np

from fastmbrl import backend
from fastmbrl._config import PROPAGATION_MODES
from fastmbrl._threads import limit_blas
from fastmbrl._validate import as_float_array, check_int
from fastmbrl.config import PlannerConfig
from fastmbrl.models._user_functions import (REWARD_FN, REWARD_LATER, REWARD_LEARNED,
                                             TERM_FN, TERM_LATER, TERM_NONE,
                                             _check_output_dtype, _check_user_function,
                                             _compiled_function_handle, _expected_signature,
                                             _PythonStatusHandle, is_numba_function)
from fastmbrl.models.arrays import ModelArrays
from fastmbrl.planning._checks import _writable, check_bonus_weight, check_model_arrays
from fastmbrl.planning._rollout_parts import _ENTRY_POINTS, _Buffers, _entry_point, _Objective
from fastmbrl.planning._deadline import (ABORT_GRACE, ALARM, STALLS, ChunkCosts,
                                         prior_seconds_per_candidate)
from fastmbrl.planning._schedule import MAX_CHUNKS, ChunkThreads, chunk_bounds

PROPAGATIONS = {name: code for code, name in enumerate(PROPAGATION_MODES)}   # kernel codes


def _kernels():
    return backend.kernels("fastmbrl.planning._kernels")


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

    def __init__(self, reward_fn=None, termination_fn=None, particles=PlannerConfig.particles,
                 propagation=PlannerConfig.propagation, n_threads=1, seed=None, blas_threads=1,
                 bonus_weight=PlannerConfig.bonus_weight):
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
        self._deadline_buffers = {}
        self._allocations = 0        # buffers made so far (their first chunk is not timed)
        self._buffer_key = None
        self._no_stop = np.zeros(1, dtype=np.uint8)     # the stop flag of calls without deadline
        self._key_lock = threading.Lock()
        self._threads = ChunkThreads()
        self._handles = {}
        self.n_calls = 0
        self.blas_threads = blas_threads
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
        with limit_blas(self.blas_threads):
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
        if not hasattr(self, "_costs"):
            self._costs = {}     # measured chunk costs under deadlines, kept across reseeds
            self._stalls = STALLS     # the process's record of the machine's load

    def _rng(self, chunk):
        while len(self._rngs) <= chunk:
            self._rngs.append(np.random.default_rng(self._seed_seq.spawn(1)[0]))
        return self._rngs[chunk]

    def close(self):
        """Stop the worker thread (also done at garbage collection)."""
        self._threads.close()

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
            self._deadline_buffers = {}
            self._buffer_key = key
        handles = self._function_handles(dtype, d_obs, d_act, reward_mode, term_mode)
        return _Objective(self, arrays, obs, dtype, d_obs, d_act, reward_mode, term_mode, handles)

    def _modes(self, arrays):
        if self.reward_fn is None:
            if not arrays.has_reward:
                raise ValueError("reward_fn: None needs a model with a learned reward head "
                                 "(arrays.has_reward), this model has none")
            reward_mode = REWARD_LEARNED
        elif is_numba_function(self.reward_fn):
            reward_mode = REWARD_FN
        else:
            reward_mode = REWARD_LATER
        if self.termination_fn is None:
            term_mode = TERM_NONE
        elif is_numba_function(self.termination_fn):
            term_mode = TERM_FN
        else:
            term_mode = TERM_LATER
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
                (self.reward_fn, reward_mode, REWARD_FN, k._zero_reward, "reward_fn"),
                (self.termination_fn, term_mode, TERM_FN, k._never_done, "termination_fn")):
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
        # chunk = ("deadline", worker) under a deadline: power-of-two sizes, kept apart
        store = self._deadline_buffers if isinstance(chunk, tuple) else self._buffers
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
            with self._key_lock:
                self._allocations += 1
        return buf

    def _run_chunk(self, chunk, bound, actions, values_out, keys=None, slot=None, stop=None):
        """Draw this chunk's random numbers and run its kernel call on its block of candidates.

        ``keys`` (2,) replaces the draw from chunk ``chunk``'s stream, ``slot`` the buffer key
        and ``stop`` the flag the kernel reads before each step (all three under a deadline).

        Returns ``(buffers, particles, steps)``: ``steps`` is the horizon, or fewer when ``stop``
        stopped the rollout (then ``values_out`` is not written).
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
            buf.ebuf, values_out, self.bonus_weight, buf.bonus_mean, buf.bonus_var, buf.bonus,
            self._no_stop if stop is None else stop)
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
        if status < 0:                     # stopped before step -1 - status
            return buf, n_part, -1 - int(status)
        if status:
            self._raise_user_failure(int(status), buf)
        return buf, n_part, horizon

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
        for fn, mode, later, what in ((self.reward_fn, bound.reward_mode, REWARD_LATER,
                                       "reward_fn"),
                                      (self.termination_fn, bound.term_mode, TERM_LATER,
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
        later = bound.reward_mode == REWARD_LATER or bound.term_mode == TERM_LATER
        done = [None] * n_chunks

        def run(c):
            lo, hi = edges[c], edges[c + 1]
            done[c] = self._run_chunk(c, bound, actions[lo:hi], values[lo:hi])

        with self.blas_limit():
            self._threads.run_all(n_chunks, run, self.n_threads)
        if later:
            for c in range(n_chunks):
                buf, n_p, _ = done[c]
                self._finish_in_python(bound, buf, n_p, values[edges[c]:edges[c + 1]])
        return values

    def chunk_costs(self, bound, horizon):
        """The measured chunk costs (``fastmbrl.planning._deadline.ChunkCosts``) of this model
        size, horizon and particle count under deadlines (made on first use, kept)."""
        n_part = 1 if self.propagation == "expectation" else self.particles
        key = (self._buffer_key, int(horizon), n_part)
        costs = self._costs.get(key)
        if costs is None:
            costs = self._costs[key] = ChunkCosts(horizon, prior_seconds_per_candidate(
                bound.arrays.layer_dims, horizon, n_part))
        return costs

    def budget_check(self, bound, seconds, horizon):
        """None when one candidate of ``horizon`` steps is estimated to fit in ``seconds``, else
        why not: ``"budget_below_one_step"`` (not even one model step of it),
        ``"budget_below_one_candidate"``, or ``"machine_load"`` (it would fit but for the
        reserve kept on a loaded machine). A refusal relaxes the load-inflated part of the
        estimates (``fastmbrl.planning._deadline``)."""
        costs = self.chunk_costs(bound, horizon)
        cand, step = costs.unit()
        if cand <= seconds - self._stalls.reserve():
            return None
        costs.relax()
        self._stalls.idle()
        if cand <= seconds:
            return "machine_load"
        return "budget_below_one_step" if step > seconds else "budget_below_one_candidate"

    def evaluate_until(self, bound, actions, deadline, clock):
        """Score candidates in order until ``deadline``; return ``(values (P,), n, n_aborted)``.

        Only the first ``n`` values are set (the others are NaN); ``n_aborted`` candidates were
        started but not counted (their rollout was stopped at the deadline). A chunk starts only
        when its estimated cost ends it before the deadline, and a running chunk stops at its
        next model step once the deadline has passed (``fastmbrl.planning._schedule``); ``n``
        may be 0.
        """
        self.n_calls += 1
        n_cand, horizon, _ = actions.shape
        values = np.full(n_cand, np.nan, dtype=bound.dtype)
        costs = self.chunk_costs(bound, horizon)
        later = bound.reward_mode == REWARD_LATER or bound.term_mode == TERM_LATER
        stop = np.zeros(1, dtype=np.uint8)
        if clock is time.perf_counter and np.isfinite(deadline):   # the alarm's own time
            ALARM.arm(deadline + ABORT_GRACE, stop)

        def run(lo, hi, worker):
            with self._key_lock:
                keys = self._deadline_rng.bit_generator.random_raw(2)
            buf, n_p, steps = self._run_chunk(lo, bound, actions[lo:hi], values[lo:hi],
                                              keys=keys, slot=("deadline", worker), stop=stop)
            if steps == horizon and later:
                self._finish_in_python(bound, buf, n_p, values[lo:hi])
            return steps

        with self.blas_limit():
            n_done, n_aborted = self._threads.run_until(
                n_cand, deadline, clock, costs, self._stalls, run, self.n_threads,
                disturbances=lambda: len(_ENTRY_POINTS) + self._allocations, stop=stop)
        # a copy: a worker's chunk left behind may still write into ``values``
        out = np.full(n_cand, np.nan, dtype=bound.dtype)
        out[:n_done] = values[:n_done]
        return out, n_done, n_aborted


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
