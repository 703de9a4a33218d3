"""ModelEnv: the learned model as a batched environment (one compiled model step underneath).

``ModelEnv.step`` is what model-based policy learning needs from the model (course notes, sections
5.2-5.4: Dyna/MBPO rollouts, model-based targets, gradients through the model): every row is an
independent transition ``(obs, act) -> (next_obs, reward, terminated)``, sampled from one member's
Gaussian per row with noise the caller may fix (the reparameterization ``next = mean + std * eps``).
It runs ``fastmbrl.models._kernels._model_step``, the same kernel as ``GaussianEnsemble.sample`` and
the planners' rollout.
"""
import numpy as np

from fastmbrl._validate import as_float_array
from fastmbrl.models.arrays import ModelArrays, check_members, step_from_arrays


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

    def __init__(self, model, reward_fn=None, termination_fn=None):
        if not isinstance(model, ModelArrays) and not callable(getattr(model, "arrays", None)):
            raise TypeError(f"model: expected a GaussianEnsemble (with .arrays()) or a "
                            f"ModelArrays, got {type(model).__name__}")
        for name, fn in (("reward_fn", reward_fn), ("termination_fn", termination_fn)):
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

    def _arrays(self):
        return self.model if isinstance(self.model, ModelArrays) else self.model.arrays()

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
        elif np.ndim(noise) == 0:
            if noise != 0:
                raise ValueError(f"noise: expected an array of shape ({n}, {self.out_dim}) or 0 "
                                 f"(the mean), got the scalar {noise!r}")
            noise = np.zeros((n, self.out_dim), dtype)
        else:
            noise = as_float_array("noise", noise, dtype, ndim=2, shape=(n, self.out_dim))
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
