"""ModelEnv: the learned model as a batched environment (one compiled model step underneath).

``ModelEnv.step`` is what model-based policy learning needs from the model (course notes, sections
5.2-5.4: Dyna/MBPO rollouts, model-based targets, gradients through the model): every row is an
independent transition ``(obs, act) -> (next_obs, reward, terminated)``, sampled from one member's
Gaussian per row with noise the caller may fix (the reparameterization ``next = mean + std * eps``).
It runs ``fastmbrl.models._kernels._model_step``, the same kernel as ``GaussianEnsemble.sample`` and
the planners' rollout.

``ModelEnv.rollout`` is the policy rollout generator (MBPO's model data, and the building block of
value expansion and of gradients through the model): many branched rollouts from given start
states in one compiled kernel per chunk of rows; its machinery, :class:`PolicyArrays` and
:class:`RolloutBatch` are in ``fastmbrl.models.policy_rollout`` (re-exported here).
"""
import logging
import warnings

import numpy as np

from fastmbrl._validate import as_float_array
from fastmbrl.models.arrays import ModelArrays, check_members, step_from_arrays
from fastmbrl.models.policy_rollout import (ROLLOUT_CHUNK_ROWS, PolicyArrays, RolloutBatch,
                                            policy_rollout)

__all__ = ["ModelEnv", "PolicyArrays", "RolloutBatch", "ROLLOUT_CHUNK_ROWS"]

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
        arrays = self.kernel_arrays()
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

    def kernel_arrays(self):
        """The ModelArrays this environment steps with now: the model's current weights and
        elites (a GaussianEnsemble's ``arrays()``, so a refit is seen at once), for compiled code
        that runs the model step itself (``fastmbrl.models.arrays``)."""
        return self.model if isinstance(self.model, ModelArrays) else self.model.arrays()

    def claim_fallback_warning(self):
        """True the first time it is called on this ModelEnv, False after: the caller that gets
        True warns that the learned reward head stands in for a missing ``reward_grad_fn`` (one
        warning per ModelEnv, shared by :meth:`step_vjp` and the model-based SAC updates)."""
        if self._warned_fallback:
            return False
        self._warned_fallback = True
        return True

    def reward_of(self, obs, act, next_obs):
        """``reward_fn(obs, act, next_obs)`` as an array (B,) (the function's dtype), its shape
        checked (ValueError naming ``reward_fn``)."""
        return self._call("reward_fn", self.reward_fn, obs, act, next_obs, np.shape(obs)[0])

    def terminated_of(self, obs, act, next_obs):
        """``termination_fn(obs, act, next_obs)`` as an array (B,) (the function's dtype), its
        shape checked (ValueError naming ``termination_fn``)."""
        return self._call("termination_fn", self.termination_fn, obs, act, next_obs,
                          np.shape(obs)[0])

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
        arrays = self.kernel_arrays()
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

        arrays = self.kernel_arrays()
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
            if self.claim_fallback_warning():
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
        return policy_rollout(self, policy, start_obs, length, rng, act_noise=act_noise,
                              model_noise=model_noise, members=members, chunk_rows=chunk_rows)

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
