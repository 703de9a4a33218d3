"""The policy rollout through the learned model (``ModelEnv.rollout``): MBPO's model data.

Many branched rollouts from given start states, the policy's forward pass and sample, the model
step, reward and termination all inside one compiled kernel per chunk of rows
(``fastmbrl.models._rollout_kernels._policy_rollout``, NumPy twin in ``_rollout_reference``); the
building block of value expansion and of gradients through the model too. The policy is given as
plain arrays (:class:`PolicyArrays`, e.g. ``PolicyArrays.from_agent(sac_agent)``); the result is a
:class:`RolloutBatch`. :func:`policy_rollout` is ``ModelEnv.rollout``'s machinery (see its
docstring), written against the ``ModelEnv`` it is given.
"""
from typing import NamedTuple

import numpy as np

from fastmbrl import backend
from fastmbrl._validate import as_float_array, check_int
from fastmbrl.models.arrays import check_members, kernel_model_args

__all__ = ["PolicyArrays", "RolloutBatch", "ROLLOUT_CHUNK_ROWS", "policy_rollout"]

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
        for attr in ("actor", "dims_actor", "activation_code", "log_std_bounds", "scale", "bias"):
            if not hasattr(agent, attr):
                raise TypeError(f"policy: expected a fastmbrl.agents.SAC or a PolicyArrays, got "
                                f"{type(agent).__name__} (no {attr!r})")
        lo, hi = agent.log_std_bounds
        return cls(agent.actor, agent.dims_actor, int(agent.activation_code), float(lo), float(hi),
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


def policy_rollout(env, policy, start_obs, length, rng=None, *, act_noise=None,
                   model_noise=None, members=None, chunk_rows=ROLLOUT_CHUNK_ROWS):
    """Branched rollouts of ``policy`` through ``env``'s model; see :meth:`ModelEnv.rollout`.

    Parameters
    ----------
    env : ModelEnv
    policy, start_obs, length, rng, act_noise, model_noise, members, chunk_rows
        As :meth:`ModelEnv.rollout`.

    Returns
    -------
    RolloutBatch
    """
    arrays = env.kernel_arrays()
    model = kernel_model_args(arrays)
    dtype = model[0].dtype
    pol = policy if isinstance(policy, PolicyArrays) else PolicyArrays.from_agent(policy)
    start = as_float_array("start_obs", start_obs, dtype, ndim=2, shape=(None, env.obs_dim))
    if not start.flags.writeable or not start.flags.c_contiguous:
        start = np.ascontiguousarray(start).copy()
    n, T = start.shape[0], check_int("length", length)
    chunk_rows = check_int("chunk_rows", chunk_rows)
    pdims = np.asarray(pol.dims, np.int64)
    if pdims[0] != env.obs_dim or pdims[-1] != 2 * env.act_dim:
        raise ValueError(f"policy: expected a network {env.obs_dim} -> ... -> "
                         f"{2 * env.act_dim}, got dims {pdims.tolist()}")
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
    act_noise = _noise_arg("act_noise", act_noise, (T, n, env.act_dim), dtype)
    model_noise = _noise_arg("model_noise", model_noise, (T, n, env.out_dim), dtype)
    if members is not None:
        members = check_members("members", np.asarray(members).reshape(-1), T * n,
                                int(arrays.ensemble_size)).reshape(T, n)
    elites = np.asarray(arrays.members, dtype=np.int64)
    k = backend.kernels("fastmbrl.models._rollout_kernels")
    reward_mode, term_mode, handles = _rollout_modes(env, k, arrays, dtype)
    parts = []
    for lo in range(0, n, chunk_rows):
        hi = min(lo + chunk_rows, n)
        m = hi - lo
        mem = (elites[rng.integers(0, elites.size, size=(T, m))] if members is None
               else np.ascontiguousarray(members[:, lo:hi]))
        eps = (rng.standard_normal((T, m, env.act_dim), dtype=dtype) if act_noise is None
               else act_noise if np.ndim(act_noise) == 0
               else np.ascontiguousarray(act_noise[:, lo:hi]))
        nz = (rng.standard_normal((T, m, env.out_dim), dtype=dtype) if model_noise is None
              else model_noise if np.ndim(model_noise) == 0
              else np.ascontiguousarray(model_noise[:, lo:hi]))
        if np.ndim(eps) == 0:
            eps = np.zeros((T, m, env.act_dim), dtype)
        if np.ndim(nz) == 0:
            nz = np.zeros((T, m, env.out_dim), dtype)
        args = (flat, pdims, int(pol.activation), float(pol.log_std_min),
                float(pol.log_std_max), scale, bias)
        if term_mode == "python":
            parts.append(_rollout_stepwise(env, k, start[lo:hi], args, eps, mem, nz, model,
                                           reward_mode, handles))
        else:
            parts.append(_rollout_chunk(env, k, start[lo:hi], args, eps, mem, nz, model,
                                        reward_mode, term_mode, handles))
    batch = _merge(env, parts, T, dtype)
    if reward_mode == k.REWARD_LATER and batch.obs.shape[0]:
        reward = env.reward_of(batch.obs, batch.act, batch.next_obs).astype(dtype, copy=False)
        batch = batch._replace(reward=np.ascontiguousarray(reward))
    return batch


def _noise_arg(name, value, shape, dtype):
    if value is None:
        return None
    if np.ndim(value) == 0:
        if value != 0:
            raise ValueError(f"{name}: expected an array of shape {shape} or 0, got the "
                             f"scalar {value!r}")
        return 0
    return as_float_array(name, value, dtype, ndim=3, shape=shape)


def _rollout_modes(env, k, arrays, dtype):
    """Reward / termination modes of the kernel and the function handles it receives (cached on
    ``env``)."""
    # imported here: they load Numba, which ``import fastmbrl.models`` does not
    from fastmbrl.models import _user_functions as uf
    from fastmbrl.models._user_functions import (_check_user_function,
                                                 _compiled_function_handle,
                                                 _PythonStatusHandle, is_numba_function)

    compiled = backend.use_compiled()

    def handle(fn, what):
        if compiled:
            return _compiled_function_handle(fn, dtype, env.obs_dim, env.act_dim, what)
        _check_user_function(fn, dtype, env.obs_dim, env.act_dim, what)
        return _PythonStatusHandle(fn, what)

    if env.reward_fn is None:
        reward_mode, rfn = k.REWARD_LEARNED, uf._zero_reward
    elif is_numba_function(env.reward_fn) or not compiled:
        reward_mode, rfn = k.REWARD_FN, env.reward_fn
    else:
        _check_user_function(env.reward_fn, dtype, env.obs_dim, env.act_dim, "reward_fn")
        reward_mode, rfn = k.REWARD_LATER, uf._zero_reward
    if env.termination_fn is None:
        term_mode, tfn = k.TERM_NONE, uf._never_done
    elif is_numba_function(env.termination_fn) or not compiled:
        term_mode, tfn = k.TERM_FN, env.termination_fn
    else:
        _check_user_function(env.termination_fn, dtype, env.obs_dim, env.act_dim,
                             "termination_fn")
        term_mode, tfn = "python", uf._never_done
    key = (id(rfn), id(tfn), np.dtype(dtype).name, compiled)
    cache = env.__dict__.setdefault("_handles", {})
    if key not in cache:
        cache[key] = (rfn, tfn, handle(rfn, "reward_fn"), handle(tfn, "termination_fn"))
    return reward_mode, term_mode, cache[key][2:]


def _rollout_chunk(env, k, start, pargs, eps, mem, nz, model, reward_mode, term_mode, handles):
    T, m = mem.shape
    dtype = start.dtype
    outs = (np.empty((T * m, env.obs_dim), dtype), np.empty((T * m, env.act_dim), dtype),
            np.empty(T * m, dtype), np.empty((T * m, env.obs_dim), dtype),
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


def _rollout_stepwise(env, k, start, pargs, eps, mem, nz, model, reward_mode, handles):
    """A plain Python termination function: one compiled step per call, the function on each
    step's rows decides which go on (same draws as the one-call rollout)."""
    T = mem.shape[0]
    rows = np.arange(start.shape[0])
    cur = np.ascontiguousarray(start)
    steps, counts = [], np.zeros(T, np.int64)
    for t in range(T):
        if rows.size == 0:
            break
        part = _rollout_chunk(env, k, cur, pargs, np.ascontiguousarray(eps[t:t + 1, rows]),
                              np.ascontiguousarray(mem[t:t + 1, rows]),
                              np.ascontiguousarray(nz[t:t + 1, rows]), model,
                              reward_mode, k.TERM_NONE, handles)
        done = env.terminated_of(part.obs, part.act, part.next_obs).astype(bool, copy=False)
        steps.append(part._replace(terminated=done))
        counts[t] = rows.size
        rows = rows[~done]
        cur = np.ascontiguousarray(part.next_obs[~done])
    merged = _merge(env, steps, 1, start.dtype)
    return merged._replace(counts=counts)


def _merge(env, parts, T, dtype):
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
        return RolloutBatch(np.empty((0, env.obs_dim), dtype), np.empty((0, env.act_dim),
                            dtype), np.empty(0, dtype), np.empty((0, env.obs_dim), dtype),
                            np.empty(0, bool), counts)
    return RolloutBatch(*(np.concatenate(x) for x in pieces), counts)
