"""ModelEnv: the learned model as a batched environment (one compiled model step underneath).

``ModelEnv.step`` is what model-based policy learning needs from the model (course notes, sections
5.2-5.4: Dyna/MBPO rollouts, model-based targets, gradients through the model): every row is an
independent transition ``(obs, act) -> (next_obs, reward, terminated)``, sampled from one member's
Gaussian per row with noise the caller may fix (the reparameterization ``next = mean + std * eps``).
It runs ``fastmbrl.models._kernels._model_step``, the same kernel as ``GaussianEnsemble.sample`` and
the planners' rollout.

``ModelEnv.rollout`` is the policy rollout generator (MBPO's model data, and the building block of
value expansion and of gradients through the model): many branched rollouts from given start
states, the policy's forward pass and sample, the model step, reward and termination all inside
one compiled kernel per chunk of rows (``fastmbrl.models._rollout_kernels._policy_rollout``,
NumPy twin in ``_rollout_reference``). The policy is given as plain arrays
(:class:`PolicyArrays`, e.g. ``PolicyArrays.from_agent(sac_agent)``).
"""
import logging
import warnings
from typing import NamedTuple

import numpy as np

from fastmbrl import backend
from fastmbrl._validate import as_float_array, check_int
from fastmbrl.models.arrays import (ModelArrays, check_members, kernel_model_args,
                                    step_from_arrays)

__all__ = ["ModelEnv", "PolicyArrays", "RolloutBatch", "ROLLOUT_CHUNK_ROWS"]

# Rows per kernel call of ``ModelEnv.rollout`` (bounds the memory of the pre-drawn noise and the
# outputs; rows are independent, so chunking changes nothing but the draw order, fixed by this).
ROLLOUT_CHUNK_ROWS = 25_000


class PolicyArrays(NamedTuple):
    """A tanh-squashed Gaussian policy as plain arrays (the SAC actor's layout).

    Attributes
    ----------
    flat : float array (n_params,)   1-member MLP D_obs -> hidden -> 2 D_act, fastmbrl.nn._flat layout
    dims : int64 array (L+1,)        (D_obs, hidden..., 2 D_act)
    activation : int                 hidden activation code (1 ReLU, 2 tanh; SAC's)
    log_std_min, log_std_max : float clip of the raw log-std (output columns D_act..)
    scale, bias : float arrays (D_act,)
        ``a = scale * tanh(mean + std * eps) + bias``, clipped to ``bias +- scale``.
    """

    flat: np.ndarray
    dims: np.ndarray
    activation: int
    log_std_min: float
    log_std_max: float
    scale: np.ndarray
    bias: np.ndarray

    @classmethod
    def from_agent(cls, agent):
        """Live views of a ``fastmbrl.agents.SAC`` actor (no copy: later updates are seen)."""
        for attr in ("actor", "dims_actor", "_act_code", "log_std_bounds", "scale", "bias"):
            if not hasattr(agent, attr):
                raise TypeError(f"policy: expected a fastmbrl.agents.SAC or a PolicyArrays, got "
                                f"{type(agent).__name__} (no {attr!r})")
        lo, hi = agent.log_std_bounds
        return cls(agent.actor, agent.dims_actor, int(agent._act_code), float(lo), float(hi),
                   agent.scale, agent.bias)


class RolloutBatch(NamedTuple):
    """The transitions of a model rollout (live rows only), step 0's rows first.

    Attributes
    ----------
    obs, next_obs : (M, D_obs)
    act : (M, D_act)
    reward : (M,)
    terminated : bool (M,)   True on a row's last transition when its termination fired
    counts : int64 (T,)      live rows at each step (M = counts.sum())
    """

    obs: np.ndarray
    act: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    counts: np.ndarray


def _rollout_kernels():
    if backend.use_compiled():
        from fastmbrl.models import _rollout_kernels as k
    else:
        from fastmbrl.models import _rollout_reference as k
    return k

logger = logging.getLogger(__name__)


class ModelEnv:
    """A fitted GaussianEnsemble as a batched environment.

    Parameters
    ----------
    model : GaussianEnsemble or ModelArrays
        The model (a GaussianEnsemble is read through ``model.arrays()`` at every step, so a refit
        is seen at once).
    reward_fn : callable, optional
        ``reward_fn(obs (B, D_obs), act (B, D_act), next_obs (B, D_obs)) -> (B,)``. None: the
        model's learned reward head (the model must have one).
    termination_fn : callable, optional
        Same signature, returning bool (B,). None: never terminated.
    reward_grad_fn : callable, optional
        ``reward_grad_fn(obs, act, next_obs) -> (d_obs (B, D_obs), d_act (B, D_act),
        d_next_obs (B, D_obs))``, the gradient of each row's ``reward_fn`` (a Numba ``@njit``
        function or plain NumPy), used by :meth:`step_vjp`. None: the gradient of a built-in
        reward (``fastmbrl.envs.reward_fns``) is found by itself; for any other ``reward_fn``,
        :meth:`step_vjp` backpropagates through the model's learned reward head instead and warns
        once, or raises when the model has none.

    Attributes
    ----------
    obs_dim, act_dim : int
    out_dim : int
        D_out, the columns of ``noise``: D_obs, plus 1 when the model learns the reward.

    Examples
    --------
    >>> menv = ModelEnv(model, reward_fn=fm.envs.reward_fns.pendulum)   # doctest: +SKIP
    >>> next_obs, reward, terminated = menv.step(obs, act, rng=np.random.default_rng(0))
    """

    def __init__(self, model, reward_fn=None, termination_fn=None, reward_grad_fn=None):
        if not isinstance(model, ModelArrays) and not callable(getattr(model, "arrays", None)):
            raise TypeError(f"model: expected a GaussianEnsemble (with .arrays()) or a "
                            f"ModelArrays, got {type(model).__name__}")
        for name, fn in (("reward_fn", reward_fn), ("termination_fn", termination_fn),
                         ("reward_grad_fn", reward_grad_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name}: expected a callable or None, got {type(fn).__name__}")
        self.model = model
        arrays = self._arrays()
        self.obs_dim = int(np.asarray(arrays.delta_mask).shape[0])
        self.act_dim = int(np.asarray(arrays.layer_dims)[0]) - self.obs_dim - int(
            np.count_nonzero(arrays.angle_mask))
        self.out_dim = self.obs_dim + int(bool(arrays.has_reward))
        if reward_fn is None and not arrays.has_reward:
            raise ValueError("reward_fn: required when the model has no learned reward head "
                             "(learn_reward=False), got None")
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.reward_grad_fn = self._resolve_reward_grad(reward_fn, reward_grad_fn)
        self._warned_fallback = False

    def _arrays(self):
        return self.model if isinstance(self.model, ModelArrays) else self.model.arrays()

    def _check_noise(self, noise, n, dtype):
        """``noise`` as a (n, D_out) array of ``dtype``; the scalar 0 stands for the mean."""
        if np.ndim(noise) == 0:
            if noise != 0:
                raise ValueError(f"noise: expected an array of shape ({n}, {self.out_dim}) or 0 "
                                 f"(the mean), got the scalar {noise!r}")
            return np.zeros((n, self.out_dim), dtype)
        return as_float_array("noise", noise, dtype, ndim=2, shape=(n, self.out_dim))

    def step(self, obs, act, *, rng=None, noise=None, members=None):
        """One model step for every row.

        Parameters
        ----------
        obs : float array (B, D_obs)
        act : float array (B, D_act)
        rng : numpy.random.Generator, optional
            Draws what is not given: the members (a uniformly random elite per row) and the noise
            (standard normal, (B, D_out)). Required unless both ``members`` and ``noise`` are given.
        noise : float array (B, D_out) or 0, optional
            Standard normal draws, one column per model output (D_obs, plus the reward when it is
            learned): ``next = mean + std * noise`` in raw units, the change added back on delta
            dims. ``0`` gives each row's member mean.
        members : int or int array (B,), optional
            The member of each row.

        Returns
        -------
        next_obs : array (B, D_obs), the model's dtype
        reward : array (B,)
            ``reward_fn(obs, act, next_obs)``, or the learned reward sampled with
            ``noise[:, D_obs]``.
        terminated : bool array (B,)

        Notes
        -----
        One member's forward pass per row (``fastmbrl.models._kernels._model_step``).
        """
        arrays = self._arrays()
        dtype = np.asarray(arrays.flat).dtype
        obs = as_float_array("obs", obs, dtype, ndim=2, shape=(None, self.obs_dim))
        n = obs.shape[0]
        act = as_float_array("act", act, dtype, ndim=2, shape=(n, self.act_dim))
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        if (members is None or noise is None) and rng is None:
            raise ValueError("rng: a numpy.random.Generator is required unless both members and "
                             "noise are given, got None")
        if members is None:
            elites = np.asarray(arrays.members, dtype=np.int64)
            members = elites[rng.integers(0, elites.size, size=n)]
        else:
            members = check_members("members", members, n, int(arrays.ensemble_size))
        if noise is None:
            noise = rng.standard_normal((n, self.out_dim)).astype(dtype)
        else:
            noise = self._check_noise(noise, n, dtype)
        next_obs, learned = step_from_arrays(arrays, obs, act, members, noise)
        if self.reward_fn is None:
            reward = learned
        else:
            reward = self._call("reward_fn", self.reward_fn, obs, act, next_obs, n)
            reward = reward.astype(dtype, copy=False)
        if self.termination_fn is None:
            terminated = np.zeros(n, dtype=bool)
        else:
            terminated = self._call("termination_fn", self.termination_fn, obs, act, next_obs,
                                    n).astype(bool, copy=False)
        return next_obs, reward, terminated

    def step_vjp(self, obs, act, noise, members, d_next_obs, d_reward):
        """Vector-Jacobian product of one reparameterized model step: gradients through the step.

        Parameters
        ----------
        obs : float array (B, D_obs)
        act : float array (B, D_act)
        noise : float array (B, D_out) or 0
            The standard normal draws of the step (as given to :meth:`step`); fixed, not
            differentiated (the reparameterization trick).
        members : int or int array (B,)
            The member of each row (as given to :meth:`step`).
        d_next_obs : float array (B, D_obs) or None
            Cotangent of the step's ``next_obs`` (None: zeros).
        d_reward : float array (B,) or None
            Cotangent of the step's ``reward`` (None: zeros).

        Returns
        -------
        d_obs : array (B, D_obs), the model's dtype
            ``d_next_obs . dnext/dobs + d_reward dr/dobs`` for each row.
        d_act : array (B, D_act)
            The same with respect to the action.

        Raises
        ------
        ValueError
            Naming the argument on bad shapes or values; naming ``reward_grad_fn`` when the reward
            comes from a ``reward_fn`` without a gradient and the model has no reward head.

        Notes
        -----
        The step is ``next = obs * delta_mask + out_mean + out_std * mean_n + sqrt(var) * noise``
        with the member's network on the normalised ``[obs, sin/cos(angles), act]`` and the soft
        log-variance bounds ``lv = max - softplus(max - raw)``, ``lv = min + softplus(lv - min)``,
        ``var = out_std^2 exp(lv)``; the VJP runs back through all of it (course notes 5.4,
        backpropagation through time with the reparameterization trick). The reward's part: with a
        reward function ``r(obs, act, next_obs)`` and its ``reward_grad_fn``,
        ``d_reward (dr/dobs + dr/dnext dnext/dobs)`` (and likewise for ``act``); with the learned
        reward head, the head's sample ``out_mean + out_std (mu + std noise)`` is differentiated
        like the other columns. Termination has no gradient: it is treated as piecewise constant
        (a caller masks the cotangents of terminated rows' later steps). Two compiled calls
        (``fastmbrl.models._kernels._model_step_tape`` and ``_model_step_vjp``), the reward
        gradient between them; see ``fastmbrl.models.vjp``.
        """
        from fastmbrl.models.vjp import step_tape_from_arrays, vjp_from_tape

        arrays = self._arrays()
        dtype = np.asarray(arrays.flat).dtype
        obs = as_float_array("obs", obs, dtype, ndim=2, shape=(None, self.obs_dim))
        n = obs.shape[0]
        act = as_float_array("act", act, dtype, ndim=2, shape=(n, self.act_dim))
        noise = self._check_noise(noise, n, dtype)
        if members is None:
            raise ValueError(f"members: expected the member of each of {n} rows (an int or an int "
                             "array), got None")
        members = check_members("members", members, n, int(arrays.ensemble_size))
        d_next_obs = (np.zeros((n, self.obs_dim), dtype) if d_next_obs is None else
                      as_float_array("d_next_obs", d_next_obs, dtype, ndim=2,
                                     shape=(n, self.obs_dim)))
        d_reward = (np.zeros(n, dtype) if d_reward is None else
                    as_float_array("d_reward", d_reward, dtype, ndim=1, shape=(n,)))
        grad_fn = self.reward_grad_fn if self.reward_fn is not None else None
        if self.reward_fn is not None and grad_fn is None:
            if not arrays.has_reward:
                raise ValueError(
                    "reward_grad_fn: step_vjp needs the gradient of reward_fn "
                    f"({getattr(self.reward_fn, '__name__', type(self.reward_fn).__name__)}) or a "
                    "model with a learned reward head; got reward_grad_fn=None and a model without "
                    "a reward head (pass ModelEnv(..., reward_grad_fn=f) with "
                    "f(obs, act, next_obs) -> (d_obs, d_act, d_next_obs))")
            if not self._warned_fallback:
                self._warned_fallback = True
                msg = ("reward_grad_fn: none given for reward_fn; step_vjp backpropagates through "
                       "the model's learned reward head instead (step still returns reward_fn's "
                       "reward)")
                logger.warning(msg)
                warnings.warn(msg, UserWarning, stacklevel=2)
        next_obs, _, tape = step_tape_from_arrays(arrays, obs, act, members, noise)
        if grad_fn is None:
            return vjp_from_tape(arrays, tape, d_next_obs, d_reward)
        r_obs, r_act, r_next = self._call_grad(grad_fn, obs, act, next_obs, n)
        w = d_reward[:, None]
        d_obs, d_act = vjp_from_tape(arrays, tape, d_next_obs + w * r_next, None)
        d_obs += w * r_obs
        d_act += w * r_act
        return d_obs, d_act

    def _call_grad(self, fn, obs, act, next_obs, n):
        out = fn(obs, act, next_obs)
        if not isinstance(out, tuple) or len(out) != 3:
            raise ValueError("reward_grad_fn: expected it to return a tuple (d_obs, d_act, "
                             f"d_next_obs), got {type(out).__name__}")
        dtype = obs.dtype
        shapes = ((n, self.obs_dim), (n, self.act_dim), (n, self.obs_dim))
        return tuple(as_float_array(f"reward_grad_fn's {name}", a, dtype, shape=shape)
                     for name, a, shape in zip(("d_obs", "d_act", "d_next_obs"), out, shapes))

    @staticmethod
    def _resolve_reward_grad(reward_fn, reward_grad_fn):
        if reward_grad_fn is not None and reward_fn is None:
            raise ValueError("reward_grad_fn: given without reward_fn; with reward_fn=None the "
                             "learned reward head is differentiated itself, got "
                             f"{getattr(reward_grad_fn, '__name__', reward_grad_fn)!r}")
        if reward_grad_fn is None and reward_fn is not None:
            from fastmbrl.envs.reward_fns import gradient_of
            return gradient_of(reward_fn)
        return reward_grad_fn

    # ------------------------------------------------------------------ policy rollouts
    def rollout(self, policy, start_obs, length, rng=None, *, act_noise=None, model_noise=None,
                members=None, chunk_rows=ROLLOUT_CHUNK_ROWS):
        """Branched rollouts of ``policy`` through the model, ``length`` steps from each start.

        Every step of every row, in compiled code: the policy's forward pass and a
        tanh-squashed Gaussian sample (stochastic actions), one model step with a uniformly
        random elite per row per step, the reward (``reward_fn`` or the learned head) and the
        termination function. A row whose termination fires contributes that transition (with
        ``terminated=True``) and nothing after it.

        Parameters
        ----------
        policy : PolicyArrays or fastmbrl.agents.SAC
        start_obs : float array (N, D_obs)
        length : int
            T, steps per rollout.
        rng : numpy.random.Generator, optional
            Draws what is not given (per chunk of ``chunk_rows`` rows: members, then policy noise,
            then model noise). Required unless all three are given.
        act_noise : float array (T, N, D_act) or 0, optional
            The policy's standard normal draws; 0 gives the deterministic (mean) action.
        model_noise : float array (T, N, D_out) or 0, optional
            The model's draws (D_out = D_obs, plus 1 with a learned reward); 0 gives member means.
        members : int array (T, N), optional
            The member of each row at each step (default: a uniformly random elite).
        chunk_rows : int
            Rows per kernel call.

        Returns
        -------
        RolloutBatch
            In the model's dtype; ``counts[t]`` rows at step t.

        Notes
        -----
        Kernel: ``fastmbrl.models._rollout_kernels._policy_rollout`` (twin in
        ``_rollout_reference``). A Numba reward/termination function runs inside it; a plain
        Python reward function is called once afterwards on all transitions; a plain Python
        termination function makes the rollout run one compiled step per call (the function
        decides which rows go on). Janner et al. (2019), "When to trust your model", Alg. 2.
        """
        arrays = self._arrays()
        model = kernel_model_args(arrays)
        dtype = model[0].dtype
        pol = policy if isinstance(policy, PolicyArrays) else PolicyArrays.from_agent(policy)
        start = as_float_array("start_obs", start_obs, dtype, ndim=2, shape=(None, self.obs_dim))
        if not start.flags.writeable or not start.flags.c_contiguous:
            start = np.ascontiguousarray(start).copy()
        n, T = start.shape[0], check_int("length", length)
        chunk_rows = check_int("chunk_rows", chunk_rows)
        pdims = np.asarray(pol.dims, np.int64)
        if pdims[0] != self.obs_dim or pdims[-1] != 2 * self.act_dim:
            raise ValueError(f"policy: expected a network {self.obs_dim} -> ... -> "
                             f"{2 * self.act_dim}, got dims {pdims.tolist()}")
        flat = np.ascontiguousarray(pol.flat, dtype)
        if not flat.flags.writeable:
            flat = flat.copy()
        scale = np.ascontiguousarray(pol.scale, dtype).copy()
        bias = np.ascontiguousarray(pol.bias, dtype).copy()
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        if rng is None and (act_noise is None or model_noise is None or members is None):
            raise ValueError("rng: a numpy.random.Generator is required unless act_noise, "
                             "model_noise and members are all given, got None")
        act_noise = self._noise_arg("act_noise", act_noise, (T, n, self.act_dim), dtype)
        model_noise = self._noise_arg("model_noise", model_noise, (T, n, self.out_dim), dtype)
        if members is not None:
            members = check_members("members", np.asarray(members).reshape(-1), T * n,
                                    int(arrays.ensemble_size)).reshape(T, n)
        elites = np.asarray(arrays.members, dtype=np.int64)
        k = _rollout_kernels()
        reward_mode, term_mode, handles = self._rollout_modes(k, arrays, dtype)
        parts = []
        for lo in range(0, n, chunk_rows):
            hi = min(lo + chunk_rows, n)
            m = hi - lo
            mem = (elites[rng.integers(0, elites.size, size=(T, m))] if members is None
                   else np.ascontiguousarray(members[:, lo:hi]))
            eps = (rng.standard_normal((T, m, self.act_dim), dtype=dtype) if act_noise is None
                   else act_noise if np.ndim(act_noise) == 0
                   else np.ascontiguousarray(act_noise[:, lo:hi]))
            nz = (rng.standard_normal((T, m, self.out_dim), dtype=dtype) if model_noise is None
                  else model_noise if np.ndim(model_noise) == 0
                  else np.ascontiguousarray(model_noise[:, lo:hi]))
            if np.ndim(eps) == 0:
                eps = np.zeros((T, m, self.act_dim), dtype)
            if np.ndim(nz) == 0:
                nz = np.zeros((T, m, self.out_dim), dtype)
            args = (flat, pdims, int(pol.activation), float(pol.log_std_min),
                    float(pol.log_std_max), scale, bias)
            if term_mode == "python":
                parts.append(self._rollout_stepwise(k, start[lo:hi], args, eps, mem, nz, model,
                                                    reward_mode, handles))
            else:
                parts.append(self._rollout_chunk(k, start[lo:hi], args, eps, mem, nz, model,
                                                 reward_mode, term_mode, handles))
        batch = self._merge(parts, T, dtype)
        if reward_mode == k.REWARD_LATER and batch.obs.shape[0]:
            reward = self._call("reward_fn", self.reward_fn, batch.obs, batch.act,
                                batch.next_obs, batch.obs.shape[0]).astype(dtype, copy=False)
            batch = batch._replace(reward=np.ascontiguousarray(reward))
        return batch

    @staticmethod
    def _noise_arg(name, value, shape, dtype):
        if value is None:
            return None
        if np.ndim(value) == 0:
            if value != 0:
                raise ValueError(f"{name}: expected an array of shape {shape} or 0, got the "
                                 f"scalar {value!r}")
            return 0
        return as_float_array(name, value, dtype, ndim=3, shape=shape)

    def _rollout_modes(self, k, arrays, dtype):
        """Reward / termination modes of the kernel and the function handles it receives."""
        from fastmbrl.models import _user_functions as uf
        from fastmbrl.models._user_functions import (_check_user_function,
                                                     _compiled_function_handle,
                                                     _PythonStatusHandle, is_numba_function)

        compiled = backend.use_compiled()

        def handle(fn, what):
            if compiled:
                return _compiled_function_handle(fn, dtype, self.obs_dim, self.act_dim, what)
            _check_user_function(fn, dtype, self.obs_dim, self.act_dim, what)
            return _PythonStatusHandle(fn, what)

        if self.reward_fn is None:
            reward_mode, rfn = k.REWARD_LEARNED, uf._zero_reward
        elif is_numba_function(self.reward_fn) or not compiled:
            reward_mode, rfn = k.REWARD_FN, self.reward_fn
        else:
            _check_user_function(self.reward_fn, dtype, self.obs_dim, self.act_dim, "reward_fn")
            reward_mode, rfn = k.REWARD_LATER, uf._zero_reward
        if self.termination_fn is None:
            term_mode, tfn = k.TERM_NONE, uf._never_done
        elif is_numba_function(self.termination_fn) or not compiled:
            term_mode, tfn = k.TERM_FN, self.termination_fn
        else:
            _check_user_function(self.termination_fn, dtype, self.obs_dim, self.act_dim,
                                 "termination_fn")
            term_mode, tfn = "python", uf._never_done
        key = (id(rfn), id(tfn), np.dtype(dtype).name, compiled)
        cache = self.__dict__.setdefault("_handles", {})
        if key not in cache:
            cache[key] = (rfn, tfn, handle(rfn, "reward_fn"), handle(tfn, "termination_fn"))
        return reward_mode, term_mode, cache[key][2:]

    def _rollout_chunk(self, k, start, pargs, eps, mem, nz, model, reward_mode, term_mode,
                       handles):
        T, m = mem.shape
        dtype = start.dtype
        outs = (np.empty((T * m, self.obs_dim), dtype), np.empty((T * m, self.act_dim), dtype),
                np.empty(T * m, dtype), np.empty((T * m, self.obs_dim), dtype),
                np.empty(T * m, bool), np.empty(T, np.int64))
        status = k._policy_rollout(np.ascontiguousarray(start), *pargs, eps, mem, nz, *model,
                                   reward_mode, term_mode, handles[0], handles[1], *outs)
        if status:
            status, which, t = status % 4, (status // 4) % 2, status // 8
            what = "reward_fn" if which == 0 else "termination_fn"
            if status == 1:
                raise RuntimeError(f"{what} raised an exception at step {t} of the model rollout "
                                   f"(the rollout was stopped)")
            raise ValueError(f"{what}: returned the wrong number of rows at step {t} of the model "
                             f"rollout (expected shape (N,))")
        total = int(outs[5].sum())
        return RolloutBatch(*(o[:total] for o in outs[:5]), outs[5])

    def _rollout_stepwise(self, k, start, pargs, eps, mem, nz, model, reward_mode, handles):
        """A plain Python termination function: one compiled step per call, the function on each
        step's rows decides which go on (same draws as the one-call rollout)."""
        T = mem.shape[0]
        rows = np.arange(start.shape[0])
        cur = np.ascontiguousarray(start)
        steps, counts = [], np.zeros(T, np.int64)
        for t in range(T):
            if rows.size == 0:
                break
            part = self._rollout_chunk(k, cur, pargs, np.ascontiguousarray(eps[t:t + 1, rows]),
                                       np.ascontiguousarray(mem[t:t + 1, rows]),
                                       np.ascontiguousarray(nz[t:t + 1, rows]), model,
                                       reward_mode, k.TERM_NONE, handles)
            done = self._call("termination_fn", self.termination_fn, part.obs, part.act,
                              part.next_obs, rows.size).astype(bool, copy=False)
            steps.append(part._replace(terminated=done))
            counts[t] = rows.size
            rows = rows[~done]
            cur = np.ascontiguousarray(part.next_obs[~done])
        merged = self._merge(steps, 1, start.dtype)
        return merged._replace(counts=counts)

    def _merge(self, parts, T, dtype):
        """Concatenate chunks step by step (step 0 of every chunk, then step 1, ...)."""
        if len(parts) == 1:
            return parts[0]
        counts = np.zeros(T, np.int64)
        pieces = [[] for _ in range(5)]
        offsets = [np.concatenate([[0], np.cumsum(p.counts)]) for p in parts]
        for t in range(T):
            for p, off in zip(parts, offsets):
                if t < p.counts.size:
                    for f in range(5):
                        pieces[f].append(p[f][off[t]:off[t + 1]])
                    counts[t] += p.counts[t]
        if not pieces[0]:
            return RolloutBatch(np.empty((0, self.obs_dim), dtype), np.empty((0, self.act_dim),
                                dtype), np.empty(0, dtype), np.empty((0, self.obs_dim), dtype),
                                np.empty(0, bool), counts)
        return RolloutBatch(*(np.concatenate(x) for x in pieces), counts)

    @staticmethod
    def _call(name, fn, obs, act, next_obs, n):
        out = np.asarray(fn(obs, act, next_obs))
        if out.shape != (n,):
            raise ValueError(f"{name}: expected it to return shape ({n},) for {n} rows, got "
                             f"{out.shape}")
        return out

    def __repr__(self):
        return (f"ModelEnv(obs_dim={self.obs_dim}, act_dim={self.act_dim}, "
                f"learned_reward={self.reward_fn is None}, "
                f"termination={'none' if self.termination_fn is None else 'fn'})")
