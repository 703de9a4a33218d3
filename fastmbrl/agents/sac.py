"""Soft actor-critic (Haarnoja et al. 2018, with automatic temperature as in SB3 and CleanRL).

The agent owns the networks in flat buffers (layout of ``fastmbrl.nn._flat``), their Adam moments,
log-alpha and a counter-based random generator, and hands all of it to one compiled kernel per call
(``_sac_kernels``; ``FASTMBRL_PUREPYTHON=1`` runs their NumPy twins instead).

SAC's math, in one NumPy file: ``fastmbrl/agents/sac_reference.py`` (the equations, then the
random draws, the policy head, the losses and their gradients, Adam, Polyak and the updates, read
top to bottom; the compiled kernels are tested against it).
"""
import os
from contextlib import contextmanager

import numba
import numpy as np

from fastmbrl._io import atomic_savez
from fastmbrl._threads import limit_blas, resolve_threads
from fastmbrl._validate import as_float_array, check_dtype, check_float, check_int
from fastmbrl.agents.base import Agent, action_bounds
from fastmbrl.backend import kernels, use_compiled
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.config import MBPOConfig, SACConfig
from fastmbrl.nn._flat import param_offsets, unflatten
from fastmbrl.nn._numba import _flush_denormals_team, _restore_fp_mode_team

# the compiled kernels or their NumPy twins (FASTMBRL_PUREPYTHON=1), chosen by fastmbrl.backend
_k = kernels("fastmbrl.agents._sac_kernels")
_km = kernels("fastmbrl.agents._sac_mixed_kernels")

SAC_FORMAT_VERSION = 1
METRICS = ("critic_loss", "actor_loss", "temperature_loss", "temperature", "entropy", "mean_q")
_ACTIVATIONS = {"relu": 1, "tanh": 2}
_HP = ("gamma", "tau", "lr_actor", "lr_critic", "lr_alpha", "beta1", "beta2", "adam_eps",
       "log_std_min", "log_std_max", "target_entropy")
_STATE_ARRAYS = ("actor", "critic", "critic_target", "actor_m", "actor_v", "critic_m", "critic_v",
                 "alpha_state", "steps", "rng_state")


class SAC(Agent):
    """Soft actor-critic with twin critics, target critics and automatic temperature.

    Parameters
    ----------
    obs_dim, act_dim : int
        D_obs and D_act.
    action_space : gymnasium Box or (low, high) pair
        Finite action bounds (D_act,); actions are ``scale * tanh(u) + bias`` with
        ``scale = (high - low) / 2``, ``bias = (high + low) / 2``.
    hidden : tuple of int
        Hidden widths of the actor and of each critic; (256, 256) as in SB3 and the SAC paper.
    gamma : float
        Discount, 0.99 (paper, SB3).
    tau : float
        Polyak coefficient of the target critics, 0.005 (paper, SB3).
    lr : float
        Adam learning rate of actor, critics and temperature, 3e-4 (paper, SB3).
    batch_size : int
        Minibatch rows of ``update_from``, 256 (paper, SB3).
    init_temperature : float
        Initial alpha, 1.0 (SB3's ``ent_coef="auto"``); log-alpha is the trained parameter.
    target_entropy : float or None
        None gives -D_act (paper, SB3).
    log_std_bounds : (float, float)
        Hard clip of the actor's log-std, (-20, 2): SB3's LOG_STD_MIN/MAX (CleanRL instead maps a tanh
        to (-5, 2)); SB3's rule is kept because its results are the reference here. The clip passes
        no gradient outside the bounds, as ``torch.clamp``.
    activation : {"relu", "tanh"}
        Hidden activation, ReLU (SB3).
    dtype : {np.float32, np.float64}
        Parameter and computation dtype; float32 by default, float64 for gradient checks.
    seed : int
        Seeds the initialization and the agent's generator (minibatches, noise).
    n_threads : int or "auto"
        Threads of the update kernel (1 or 2 are used): the actor's passes on s' and s, the twin
        critics and the halves of the actor's backward pass run side by side (Numba ``prange``),
        each on a single-threaded BLAS. Results are bit-identical for any value. "auto" (the run
        configuration's ``sac.n_threads``) is 2 on a machine with 2 or more cores, else 1.

    Notes
    -----
    Actor: a 1-member ensemble MLP D_obs -> hidden -> 2 D_act giving the mean and the raw log-std;
    ``u = mean + std * eps``, ``a = scale * tanh(u) + bias`` and

    .. math:: \\log\\pi(a|s) = \\log N(u; \\mu, \\sigma) - \\sum_j 2(\\log 2 - u_j - \\mathrm{softplus}(-2u_j)),

    the exact density of ``tanh(u)`` (the squashed action in [-1, 1], as SB3's); the constant
    ``-sum log scale_j`` of the affine map to the bounds is left out, so target_entropy keeps SB3's
    meaning. Critics: one 2-member ensemble on ``[obs, act]`` (the action in the environment's units,
    as stored in the buffer, like CleanRL), ReLU hidden layers, linear output. Initialization is
    torch's default for ``nn.Linear`` (what SB3 uses): W and b uniform in +-1/sqrt(fan_in).

    One update (SB3's ``SAC.train``): with alpha = exp(log_alpha),
    ``y = r + gamma (1 - terminated) (min_e Q'_e(s', a') - alpha log pi(a'|s'))``, a' ~ pi(.|s');
    critic loss ``0.5 sum_e mean (Q_e(s, a) - y)^2``; actor loss ``mean(alpha log pi(a~|s) -
    min_e Q_e(s, a~))`` with the updated critics; temperature loss ``-mean(log_alpha (log pi(a~|s) +
    target_entropy))``; then ``Q' <- (1 - tau) Q' + tau Q``. Bootstrapping is cut only by
    ``terminated``, never by ``truncated``. Adam as torch's (bias-corrected, eps 1e-8).

    References
    ----------
    Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905 (2018), Sec. 5
    and Appendix C; Stable-Baselines3 ``sac/sac.py``.
    """

    def __init__(self, obs_dim, act_dim, action_space, hidden=SACConfig.hidden, *,
                 gamma=SACConfig.gamma, tau=SACConfig.tau, lr=SACConfig.lr,
                 batch_size=SACConfig.batch_size, init_temperature=SACConfig.init_temperature,
                 target_entropy=None, log_std_bounds=(-20.0, 2.0), activation="relu",
                 dtype=np.float32, seed=0, n_threads=SACConfig.n_threads):
        self.obs_dim = check_int("obs_dim", obs_dim)
        self.act_dim = check_int("act_dim", act_dim)
        low, high, self.action_dtype = action_bounds(action_space)
        if low.shape != (self.act_dim,):
            raise ValueError(f"action_space: expected bounds of shape ({self.act_dim},), got "
                             f"{low.shape}")
        if not isinstance(hidden, (tuple, list)) or len(hidden) == 0:
            raise ValueError(f"hidden: expected a non-empty tuple of widths, got {hidden!r}")
        self.hidden = tuple(check_int(f"hidden[{i}]", h) for i, h in enumerate(hidden))
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.tau = check_float("tau", tau, 0.0, 1.0)
        self.lr = check_float("lr", lr, 0.0, strict_min=True)
        self.batch_size = check_int("batch_size", batch_size)
        self.init_temperature = check_float("init_temperature", init_temperature, 0.0,
                                            strict_min=True)
        self.target_entropy = (-float(self.act_dim) if target_entropy is None
                               else check_float("target_entropy", target_entropy))
        if not isinstance(log_std_bounds, (tuple, list)) or len(log_std_bounds) != 2:
            raise ValueError(f"log_std_bounds: expected (min, max), got {log_std_bounds!r}")
        lo = check_float("log_std_bounds[0]", log_std_bounds[0])
        hi = check_float("log_std_bounds[1]", log_std_bounds[1])
        if lo >= hi:
            raise ValueError(f"log_std_bounds: expected min < max, got {log_std_bounds!r}")
        self.log_std_bounds = (lo, hi)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got "
                             f"{activation!r}")
        self.activation = activation
        self.dtype = check_dtype("dtype", dtype)
        self.seed = check_int("seed", seed, minimum=0)
        self.n_threads = check_int("n_threads", resolve_threads(n_threads))
        dt = self.dtype
        self.scale = ((high - low) / 2.0).astype(dt)
        self.bias = ((high + low) / 2.0).astype(dt)
        self._low, self._high = low, high
        self.dims_actor = np.array((self.obs_dim,) + self.hidden + (2 * self.act_dim,), np.int64)
        self.dims_critic = np.array((self.obs_dim + self.act_dim,) + self.hidden + (1,), np.int64)
        self._hp = np.array([self.gamma, self.tau, self.lr, self.lr, self.lr, 0.9, 0.999, 1e-8,
                             lo, hi, self.target_entropy], np.float64)
        rng = np.random.default_rng(self.seed)
        self.actor = self._init_flat(rng, self.dims_actor, 1)
        self.critic = self._init_flat(rng, self.dims_critic, 2)
        self.critic_target = self.critic.copy()
        self.actor_m = np.zeros_like(self.actor)
        self.actor_v = np.zeros_like(self.actor)
        self.critic_m = np.zeros_like(self.critic)
        self.critic_v = np.zeros_like(self.critic)
        self.alpha_state = np.array([np.log(self.init_temperature), 0.0, 0.0], dt)
        self.steps = np.zeros(3, np.int64)
        # [key, update counter, act counter] of the counter-based generator (see _sac_kernels)
        self.rng_state = np.array([rng.integers(0, 2**63, dtype=np.uint64), 0, 0], np.uint64)
        self._act_code = _ACTIVATIONS[activation]
        self._work = None           # the update kernels' scratch (see _scratch)

    # ------------------------------------------------------------------------------ helpers
    def _init_flat(self, rng, dims, ensemble_size):
        flat = np.empty(param_offsets(dims, ensemble_size)[-1], self.dtype)
        for i, p in enumerate(unflatten(flat, dims, ensemble_size)):
            bound = 1.0 / np.sqrt(dims[i // 2])       # torch nn.Linear default: U(+-1/sqrt(fan_in))
            p[...] = rng.uniform(-bound, bound, p.shape)
        return flat

    def _scratch(self):
        """The update kernels' large scratch arrays (``_sac_workspace``, 4.5 MB at 256 x 256 and
        batch 256), made once and kept: memory of that size allocated per call came fresh from the
        OS and was page-faulted back in at every call (figures: docs/performance.md)."""
        if self._work is None or self._work[0] != self.batch_size:
            self._work = (self.batch_size, _k._sac_workspace(self.actor, self.critic,
                                                             self.dims_actor, self.dims_critic,
                                                             self.batch_size))
        return self._work[1]

    @contextmanager
    def kernel_context(self):
        """What the update kernels run under, for the duration of the ``with`` block.

        ``n_threads`` Numba threads, at most the calling thread's current Numba thread count (so
        ``numba.set_num_threads``, as fastmbrl's sweeps use per trial, caps it), each calling a
        single-threaded BLAS, with denormals flushed to zero on every thread of that team; all
        restored afterwards. Code that calls the update kernels itself (``kernel_args``; the
        model-based updates of ``fastmbrl.agents._mb_grads``) runs them in this context, as
        :meth:`update` and :meth:`update_from` do.

        Yields
        ------
        None

        Examples
        --------
        >>> with agent.kernel_context():                                 # doctest: +SKIP
        ...     _sac_kernels._sac_update(*agent.kernel_args(), *batch, eps0, eps1, metrics)
        """
        if not use_compiled():
            yield
            return
        before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(self.n_threads, before)))
        # denormals flushed on every thread of the team, restored afterwards: SAC's training makes
        # subnormal float32 values, which cost microcode assists on Intel (docs/performance.md)
        modes = np.empty(numba.get_num_threads(), np.uint32)
        _flush_denormals_team(modes)
        try:
            with limit_blas(1):
                yield
        finally:
            _restore_fp_mode_team(modes)
            numba.set_num_threads(before)

    @property
    def action_low(self):
        """float64 array (D_act,): the lower action bounds (actions are clipped to them)."""
        return self._low

    @property
    def action_high(self):
        """float64 array (D_act,): the upper action bounds."""
        return self._high

    @property
    def activation_code(self):
        """int: the hidden activation as the kernels' code (1 ReLU, 2 tanh)."""
        return self._act_code

    @property
    def hyperparameters(self):
        """dict: the update's hyperparameters as the kernels take them, float64 scalars by name.

        Keys: gamma, tau, lr_actor, lr_critic, lr_alpha, beta1, beta2, adam_eps, log_std_min,
        log_std_max, target_entropy. A fresh dict (changing it changes nothing).
        """
        return dict(zip(_HP, self._hp))

    @property
    def temperature(self):
        """The current alpha = exp(log_alpha)."""
        return float(np.exp(np.float64(self.alpha_state[0])))

    @property
    def actor_params(self):
        """Views [W0, b0, ...] of the actor (1-member layout: W_l (1, fan_in, fan_out))."""
        return unflatten(self.actor, self.dims_actor, 1)

    @property
    def critic_params(self):
        """Views [W0, b0, ...] of the twin critics (W_l (2, fan_in, fan_out), b_l (2, fan_out))."""
        return unflatten(self.critic, self.dims_critic, 2)

    # ---------------------------------------------------------------------------------- act
    def act(self, obs, deterministic=False):
        """Action(s) for one observation (D_obs,) -> (D_act,) or a batch (B, D_obs) -> (B, D_act).

        Stochastic actions draw their noise from the agent's own stream (saved in ``state_dict``);
        ``deterministic=True`` returns ``scale * tanh(mean) + bias``. Actions lie in the bounds.
        """
        x = as_float_array("obs", obs, dtype=self.dtype)
        if not x.flags.writeable:
            x = x.copy()
        single = x.ndim == 1
        if single:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape ({self.obs_dim},) or (B, {self.obs_dim}), got "
                             f"{np.shape(obs)}")
        out = np.empty((x.shape[0], self.act_dim), self.dtype)
        lo, hi = self.log_std_bounds
        _k._sac_act(self.actor, self.dims_actor, self._act_code, x, bool(deterministic), lo, hi,
                    self.scale, self.bias, self.rng_state, out)
        out = np.clip(out, self._low, self._high).astype(self.action_dtype, copy=False)
        return out[0] if single else out

    # ------------------------------------------------------------------------------- update
    def kernel_args(self):
        """The leading arguments of the update kernels (``_sac_kernels._sac_update``,
        ``_sac_update_from``, ``_sac_mixed_kernels._sac_update_from_mixed``).

        Returns
        -------
        tuple
            ``(actor, critic, critic_target, dims_actor, dims_critic, activation_code, actor_m,
            actor_v, critic_m, critic_v, alpha_state, steps, hp, scale, bias)``: the agent's own
            arrays, which the kernels update in place (``hp``: the float64 array behind
            :attr:`hyperparameters`). Call the kernels inside :meth:`kernel_context`.
        """
        return (self.actor, self.critic, self.critic_target, self.dims_actor, self.dims_critic,
                self._act_code, self.actor_m, self.actor_v, self.critic_m, self.critic_v,
                self.alpha_state, self.steps, self._hp, self.scale, self.bias)

    def _check_batch(self, batch):
        fields = {}
        for f in ("obs", "act", "reward", "next_obs", "terminated"):
            if isinstance(batch, dict):
                if f not in batch:
                    raise ValueError(f"batch: missing field {f!r} (expected obs, act, reward, "
                                     f"next_obs, terminated)")
                fields[f] = batch[f]
            elif hasattr(batch, f):
                fields[f] = getattr(batch, f)
            else:
                raise TypeError(f"batch: expected a Transition or a dict, got {type(batch).__name__}")
        obs = as_float_array("batch.obs", fields["obs"], dtype=self.dtype, ndim=2,
                             shape=(None, self.obs_dim))
        B = obs.shape[0]
        if B == 0:
            raise ValueError("batch: expected at least one row, got 0")
        act = as_float_array("batch.act", fields["act"], dtype=self.dtype, shape=(B, self.act_dim))
        rew = as_float_array("batch.reward", fields["reward"], dtype=self.dtype, shape=(B,))
        nobs = as_float_array("batch.next_obs", fields["next_obs"], dtype=self.dtype,
                              shape=(B, self.obs_dim))
        term = np.asarray(fields["terminated"])
        if term.dtype.kind not in "biu" or term.shape != (B,):
            raise ValueError(f"batch.terminated: expected booleans of shape ({B},), got dtype "
                             f"{term.dtype} shape {term.shape}")
        # the kernels take writeable arrays (one compiled signature); read-only views are copied
        out = [x if x.flags.writeable else x.copy() for x in (obs, act, rew, nobs)]
        return (*out, np.array(term, dtype=bool))

    def update(self, batch, noise=None):
        """One gradient step of critics, actor and temperature, then the Polyak update.

        Parameters
        ----------
        batch : Transition or dict
            obs (B, D_obs), act (B, D_act), reward (B,), next_obs (B, D_obs), terminated (B,) bool;
            other fields (truncated) are ignored: time limits never cut bootstrapping.
        noise : float array (2, B, D_act) or None
            Standard normal draws: noise[0] for the next-state action a', noise[1] for the current
            action of the actor loss. None draws them from the agent's generator.

        Returns
        -------
        metrics : dict
            critic_loss, actor_loss, temperature_loss, temperature (alpha used in this step),
            entropy (-mean log pi of the current actions), mean_q (mean of Q over twins and rows).
        """
        obs, act, rew, nobs, term = self._check_batch(batch)
        B = obs.shape[0]
        if noise is None:
            eps = np.empty((2, B, self.act_dim), self.dtype)
            _k._sac_draw_normals(self.rng_state, 1, eps)
        else:
            eps = as_float_array("noise", noise, dtype=self.dtype, shape=(2, B, self.act_dim))
            if not eps.flags.writeable:
                eps = eps.copy()
        metrics = np.zeros(6, np.float64)
        with self.kernel_context():
            _k._sac_update(*self.kernel_args(), obs, act, rew, nobs, term, eps[0], eps[1], metrics)
        return self._metrics_dict(metrics)

    def update_from(self, buffer, n_updates, model_buffer=None,
                    real_ratio=MBPOConfig.real_ratio):
        """``n_updates`` updates on minibatches of ``batch_size`` rows drawn uniformly with
        replacement from ``buffer`` (a ``fastmbrl.buffer.ReplayBuffer``), in one compiled call.

        With ``model_buffer`` (MBPO), each minibatch takes ``int(real_ratio * batch_size)`` rows
        from ``buffer`` and the rest from ``model_buffer`` (all from ``buffer`` while
        ``model_buffer`` is empty; ``real_ratio`` defaults to ``MBPOConfig.real_ratio``); kernel
        ``_sac_mixed_kernels._sac_update_from_mixed``.

        Returns
        -------
        metrics : dict
            The METRICS of ``update``, each averaged over the n updates.
        """
        n_updates = check_int("n_updates", n_updates)
        n, arrays, term = self.buffer_arrays(buffer)
        metrics = np.zeros((n_updates, 6), np.float64)
        if model_buffer is not None:
            real_ratio = check_float("real_ratio", real_ratio, 0.0, 1.0)
            n_real = int(real_ratio * self.batch_size)
            if len(model_buffer) > 0 and n_real < self.batch_size:
                m, m_arrays, m_term = self.buffer_arrays(model_buffer, "model_buffer")
                with self.kernel_context():
                    _km._sac_update_from_mixed(*self.kernel_args(), *arrays, term, n, *m_arrays,
                                               m_term, m, n_real, self.batch_size,
                                               self.rng_state, metrics, self._scratch())
                return self._metrics_dict(metrics.mean(axis=0))
        with self.kernel_context():
            _k._sac_update_from(*self.kernel_args(), *arrays, term, n, self.batch_size,
                                self.rng_state, metrics, self._scratch())
        return self._metrics_dict(metrics.mean(axis=0))

    def buffer_arrays(self, buffer, name="buffer"):
        """The stored rows of ``buffer`` as the update kernels take them (minibatch sources).

        Parameters
        ----------
        buffer : fastmbrl.buffer.ReplayBuffer
        name : str
            The argument's name in error messages.

        Returns
        -------
        n : int
            Rows stored.
        arrays : list of float arrays
            obs (n, D_obs), act (n, D_act), reward (n,), next_obs (n, D_obs): live views of the
            buffer's storage (``ReplayBuffer.arrays``, storage order), or copies in the agent's
            dtype when the buffer stores another.
        terminated : bool array (n,)
            A live view.

        Raises
        ------
        TypeError
            When ``buffer`` is not a ReplayBuffer.
        ValueError
            When it is empty or its widths are not the agent's.
        """
        if not isinstance(buffer, ReplayBuffer):
            raise TypeError(f"{name}: expected a fastmbrl.buffer.ReplayBuffer, got "
                            f"{type(buffer).__name__}")
        n = len(buffer)
        if n == 0:
            raise ValueError(f"{name}: is empty; add transitions before update_from")
        if buffer.obs_dim != self.obs_dim or buffer.act_dim != self.act_dim:
            raise ValueError(f"{name}: expected obs_dim {self.obs_dim} and act_dim {self.act_dim}, "
                             f"got {buffer.obs_dim} and {buffer.act_dim}")
        # Uniform sampling with replacement does not care about row order, so the stored arrays
        # are read directly (no copy even after the ring wrapped).
        stored = buffer.arrays()
        arrays = [stored.obs, stored.act, stored.reward, stored.next_obs]
        if arrays[0].dtype != self.dtype:
            arrays = [a.astype(self.dtype) for a in arrays]
        return n, arrays, stored.terminated

    @staticmethod
    def _metrics_dict(values):
        return {k: float(v) for k, v in zip(METRICS, values)}

    # -------------------------------------------------------------------------------- state
    def _config(self):
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden),
                    "gamma": self.gamma, "tau": self.tau, "lr": self.lr, "batch_size": self.batch_size,
                    "init_temperature": self.init_temperature, "target_entropy": self.target_entropy,
                    "log_std_bounds": list(self.log_std_bounds), "activation": self.activation,
                    "dtype": np.dtype(self.dtype).name, "seed": self.seed, "n_threads": self.n_threads}

    def state_dict(self):
        """Copies of everything that evolves: networks, target critics, Adam moments and step counts
        (critic, actor, alpha), alpha_state = [log_alpha, its Adam m, v], rng_state; plus "config"."""
        state = {k: getattr(self, k).copy() for k in _STATE_ARRAYS}
        state["config"] = self._config()
        return state

    def load_state_dict(self, state):
        """Restore ``state_dict()`` output in place (bit-exact); shapes and dtypes are checked."""
        for k in _STATE_ARRAYS:
            if k not in state:
                raise ValueError(f"state: missing entry {k!r}")
            cur = getattr(self, k)
            new = np.asarray(state[k])
            if new.shape != cur.shape or new.dtype != cur.dtype:
                raise ValueError(f"state[{k!r}]: expected {cur.dtype} array of shape {cur.shape}, "
                                 f"got {new.dtype} {new.shape}")
        for k in _STATE_ARRAYS:
            getattr(self, k)[...] = state[k]

    def save(self, path):
        """Write the agent (config + state) to one versioned ``.npz`` file, atomically."""
        import json
        state = self.state_dict()
        config = state.pop("config")
        low_high = np.stack([self._low, self._high])
        atomic_savez(os.fspath(path), format_version=np.array(SAC_FORMAT_VERSION),
                     config=np.array(json.dumps(config)), action_bounds=low_high, **state)

    @classmethod
    def load(cls, path):
        """Read an agent written by :meth:`save`; raises ValueError on a foreign or stale file."""
        import json
        path = os.fspath(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"path: {path!r} is not a readable SAC file ({exc})") from exc
        with data:
            missing = [k for k in ("format_version", "config", "action_bounds") + _STATE_ARRAYS
                       if k not in data.files]
            if missing:
                raise ValueError(f"path: {path!r} is not a SAC file (missing {missing})")
            version = int(data["format_version"])
            if version != SAC_FORMAT_VERSION:
                raise ValueError(f"path: {path!r} has SAC format version {version}, expected "
                                 f"{SAC_FORMAT_VERSION}")
            config = json.loads(str(data["config"]))
            bounds = data["action_bounds"]
            obs_dim, act_dim = config.pop("obs_dim"), config.pop("act_dim")
            config["hidden"] = tuple(config["hidden"])
            config["log_std_bounds"] = tuple(config["log_std_bounds"])
            config["dtype"] = np.dtype(config["dtype"]).type
            agent = cls(obs_dim, act_dim, (bounds[0], bounds[1]), **config)
            agent.load_state_dict({k: data[k] for k in _STATE_ARRAYS})
        return agent
