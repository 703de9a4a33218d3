"""GaussianEnsemble: the heteroskedastic Gaussian dynamics model of the course notes, section 4.

Each of E members maps (s, a) to a diagonal Gaussian over the next state, trained by maximum
likelihood on its own bootstrap resample. The notes' tricks (section 4.2) are built in: the network
outputs a log-variance (softly bounded between learnable limits, PETS), predicts state changes,
feeds angles as (sin, cos), and standardizes inputs and targets with statistics from the data.
The maths of one prediction is written out in ``fastmbrl.models.arrays``; it runs in one compiled
model-step kernel (``fastmbrl.models._kernels``) that ``predict``, ``sample``, ``ModelEnv`` and the
planners' rollout share, fed by :meth:`GaussianEnsemble.arrays`. The fit's data checks,
normalization, warm-start carry-over and weight decay are ``fastmbrl.models._fitting``; the
minibatch loop is ``fastmbrl.models.trainer``; saving and loading ``fastmbrl.models._persistence``.
"""
import numpy as np

from fastmbrl._config import ACTIVATIONS, DEFAULT_DTYPE
from fastmbrl._threads import limit_blas, resolve_threads
from fastmbrl._validate import (as_float_array, check_bool, check_callable, check_dtype,
                                check_float, check_int, check_int_sequence, check_seed)
from fastmbrl.config import ModelConfig
from fastmbrl.models._fitting import (INIT_MAX_LOGVAR, INIT_MIN_LOGVAR, carry_over_normalization,
                                      check_fit_data, normalized_fit_data, pets_weight_decay,
                                      resolve_weight_decay)
from fastmbrl.models._persistence import load_model, save_model
from fastmbrl.models.arrays import ModelArrays, check_members, predict_from_arrays, step_from_arrays
from fastmbrl.models.normalizer import Normalizer
from fastmbrl.models.trainer import EnsembleTrainer
from fastmbrl.nn import EnsembleMLP, GaussianTrainStep
from fastmbrl.nn.train import fit_threads_pay

__all__ = ["GaussianEnsemble", "pets_weight_decay"]   # pets_weight_decay: from models._fitting


class GaussianEnsemble:
    """Ensemble of heteroskedastic Gaussian dynamics models, s' ~ N(mu(s, a), diag sigma^2(s, a)).

    Parameters
    ----------
    obs_dim, act_dim : int
        D_obs and D_act.
    hidden : sequence of int
        Hidden layer widths.
    ensemble_size : int
        E, the number of members.
    num_elites : int
        Members kept for planning and sampling after each fit (lowest holdout loss); <= E.
    activation : {"silu", "relu", "tanh", "identity"}
    predict_delta : bool or sequence of D_obs bools
        True: predict ``s' - s`` (notes, 4.2 trick 2); False dims are predicted directly.
    angle_dims : sequence of int
        Observation dims that are angles: fed to the network as (sin, cos) (trick 3); their
        change targets are wrapped into [-pi, pi).
    learn_reward : bool
        Add a reward target column (the learned reward head).
    dtype : {np.float32, np.float64}
    seed : int
        Seeds the weights and the model's own generator (splits, bootstrap, shuffles, sampling).
    lr : float
        Adam learning rate.
    weight_decay : "pets", float or sequence of float
        L2 decay of the weight matrices (one value, or one per layer); biases and the log-variance
        bounds are not decayed. "pets" uses :func:`pets_weight_decay` (PETS' depth ramp).
    logvar_penalty : float
        Weight of ``sum(max_logvar) - sum(min_logvar)`` in the loss (PETS: 0.01).
    n_threads : int or "auto"
        Threads of the compiled training step (``fastmbrl.nn.GaussianTrainStep``): with 2, two
        threads take whole members of each minibatch step; the fit is bit-identical for any value.
        "auto" is 2 on a machine with 2 or more cores and an OpenMP build, else 1.

    Attributes
    ----------
    elites : int64 array (num_elites,)
        Members used by :meth:`sample`, :meth:`uncertainty` and :meth:`arrays` (all members, or
        the first ``num_elites``, before the first fit).
    input_normalizer, output_normalizer : Normalizer
    max_logvar, min_logvar : float arrays (D_out,)
        The learnable soft bounds, in normalized target units.
    history : FitHistory or None
        The last fit's history.

    Notes
    -----
    Defaults: every argument with a run-configuration field takes its default from there
    (``fastmbrl.config.ModelConfig``: 3 x 200 hidden, 5 members, 5 elites, SiLU, lr 1e-3, weight
    decay 5e-5, n_threads "auto"), so a model built here equals the one a default run builds.
    PETS' own model (4 x 200, 7 members, ``weight_decay="pets"``) is a matter of passing those.

    Examples
    --------
    >>> model = GaussianEnsemble(3, 1, hidden=(32, 32), ensemble_size=3, num_elites=2)
    >>> hist = model.fit(obs, act, next_obs, progress=False)          # doctest: +SKIP
    >>> mean, var = model.predict(obs[:10], act[:10])                  # (3, 10, 3) each
    """

    def __init__(self, obs_dim, act_dim, hidden=ModelConfig.hidden,
                 ensemble_size=ModelConfig.ensemble_size, num_elites=ModelConfig.num_elites,
                 activation=ModelConfig.activation, predict_delta=True, angle_dims=(),
                 learn_reward=ModelConfig.learn_reward, dtype=DEFAULT_DTYPE, seed=0,
                 lr=ModelConfig.lr, weight_decay=ModelConfig.weight_decay, logvar_penalty=0.01,
                 n_threads=ModelConfig.n_threads):
        self.obs_dim = check_int("obs_dim", obs_dim)
        self.act_dim = check_int("act_dim", act_dim)
        self.hidden = check_int_sequence("hidden", hidden, minimum=1)
        self.ensemble_size = check_int("ensemble_size", ensemble_size)
        self.num_elites = check_int("num_elites", num_elites)
        if self.num_elites > self.ensemble_size:
            raise ValueError(f"num_elites: expected at most ensemble_size={self.ensemble_size}, "
                             f"got {num_elites}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.activation = activation
        self.dtype = check_dtype("dtype", dtype)
        self.seed = check_seed("seed", seed)
        self.learn_reward = check_bool("learn_reward", learn_reward)
        self.lr = check_float("lr", lr, minimum=0.0, strict_min=True)
        self.logvar_penalty = check_float("logvar_penalty", logvar_penalty, minimum=0.0)
        self.n_threads = check_int("n_threads", resolve_threads(n_threads, fit_threads_pay))

        # ---- which dims are changes, which are angles
        if isinstance(predict_delta, (bool, np.bool_)):
            delta = np.full(self.obs_dim, bool(predict_delta))
        else:
            delta = np.asarray(predict_delta)
            if delta.dtype != bool or delta.shape != (self.obs_dim,):
                raise ValueError(f"predict_delta: expected a bool or {self.obs_dim} bools, "
                                 f"got {predict_delta!r}")
        self.delta_mask = delta.copy()
        angles = np.array(check_int_sequence("angle_dims", angle_dims, minimum=0,
                                             maximum=self.obs_dim, distinct=True), np.int64)
        self.angle_mask = np.zeros(self.obs_dim, bool)
        self.angle_mask[angles] = True
        self.angle_dims = tuple(int(a) for a in np.flatnonzero(self.angle_mask))
        self._wrap_mask = self.angle_mask & self.delta_mask
        self.delta_mask.flags.writeable = False
        self.angle_mask.flags.writeable = False

        self.in_dim = self.obs_dim + len(self.angle_dims) + self.act_dim
        self.out_dim = self.obs_dim + int(self.learn_reward)
        decays = resolve_weight_decay(weight_decay, len(self.hidden) + 1)
        self.weight_decay = decays

        # ---- parameters, normalizers, optimizers
        self.net = EnsembleMLP(self.in_dim, 2 * self.out_dim, self.hidden, self.ensemble_size,
                               activation, self.dtype, self.seed)
        self.input_normalizer = Normalizer(self.in_dim, self.dtype)
        self.output_normalizer = Normalizer(self.out_dim, self.dtype)
        param_decay = []
        for w in decays:
            param_decay += [w, 0.0]
        # The fused compiled step owns Adam's state and the learnable bounds.
        self._step = GaussianTrainStep(
            self.net, lr=self.lr, weight_decay=param_decay,
            max_logvar=np.full(self.out_dim, INIT_MAX_LOGVAR),
            min_logvar=np.full(self.out_dim, INIT_MIN_LOGVAR),
            bound_penalty=self.logvar_penalty, n_threads=self.n_threads)
        self.max_logvar = self._step.max_logvar
        self.min_logvar = self._step.min_logvar
        self._trainer = EnsembleTrainer(self.net, self._step)
        self._rng = np.random.default_rng(self.seed)
        self.elites = np.arange(self.num_elites, dtype=np.int64)
        self.n_fits = 0
        self.history = None
        self._arrays = None

    def __repr__(self):
        dims = "x".join(str(int(d)) for d in self.net.layer_dims)
        return (f"GaussianEnsemble(obs_dim={self.obs_dim}, act_dim={self.act_dim}, net={dims}, "
                f"ensemble_size={self.ensemble_size}, num_elites={self.num_elites}, "
                f"angle_dims={self.angle_dims}, learn_reward={self.learn_reward}, "
                f"dtype={np.dtype(self.dtype).name}, fitted={self.n_fits > 0})")

    # ------------------------------------------------------------------ transforms
    def _check_obs_act(self, obs, act, name_obs="obs", name_act="act"):
        obs = as_float_array(name_obs, obs, ndim=2, shape=(None, self.obs_dim))
        act = as_float_array(name_act, act, ndim=2, shape=(obs.shape[0], self.act_dim))
        return obs, act

    def model_inputs(self, obs, act):
        """The network input before normalization.

        ``[obs[~angle], sin(obs[angle]), cos(obs[angle]), act]``

        Parameters
        ----------
        obs : float array (B, D_obs)
        act : float array (B, D_act)

        Returns
        -------
        float array (B, D_in), the dtype of ``obs``
        """
        m = self.angle_mask
        if not m.any():
            return np.concatenate([obs, act], axis=1)
        a = obs[:, m]
        return np.concatenate([obs[:, ~m], np.sin(a), np.cos(a), act], axis=1)

    def model_targets(self, obs, next_obs, reward=None):
        """The regression targets before normalization.

        Parameters
        ----------
        obs, next_obs : float arrays (B, D_obs)
        reward : float array (B,), required when ``learn_reward``

        Returns
        -------
        float array (B, D_out)
            ``next_obs - obs`` on delta dims (wrapped into [-pi, pi) on angle dims), ``next_obs``
            elsewhere, then the reward column when the model learns rewards.
        """
        tgt = np.where(self.delta_mask, next_obs - obs, next_obs)
        if self._wrap_mask.any():
            w = self._wrap_mask
            tgt[:, w] = np.mod(tgt[:, w] + np.pi, 2 * np.pi) - np.pi
        if self.learn_reward:
            tgt = np.concatenate([tgt, np.reshape(reward, (-1, 1))], axis=1)
        return tgt

    # ------------------------------------------------------------------ fitting
    def fit(self, obs, act, next_obs, reward=None, *, max_epochs=ModelConfig.max_epochs,
            batch_size=ModelConfig.batch_size, holdout_frac=ModelConfig.holdout_frac,
            patience=ModelConfig.patience, min_rel_improvement=0.01, bootstrap=True,
            holdout_metric="nll", progress=True, callback=None, max_steps=None):
        """Fit every member by maximum likelihood on (a bootstrap resample of) the given data.

        Call it with the whole replay buffer each time: the normalization statistics are
        recomputed from these rows, and the weights and optimizer state continue from the
        previous fit (warm start).

        Parameters
        ----------
        obs, next_obs : float arrays (N, D_obs)
        act : float array (N, D_act)
        reward : float array (N,), required when ``learn_reward`` (ignored otherwise)
        max_epochs : int
            Upper bound on passes over the training split. This and the next three default to
            the run configuration's (``fastmbrl.config.ModelConfig``).
        batch_size : int
            Rows per member per step.
        holdout_frac : float in [0, 1)
            Fraction of rows held out for early stopping and elite selection; 0 disables both
            (``max_epochs`` epochs are run and the first ``num_elites`` members are the elites).
            The holdout rows are drawn afresh on every call, so after a warm start some of them
            were trained on before and the holdout score is slightly optimistic (as in mbrl-lib).
        patience : int
            Epochs a member may go without a relative holdout improvement above
            ``min_rel_improvement`` before it is done; training stops when all members are done.
        min_rel_improvement : float
        bootstrap : bool
            Train each member on its own resample (with replacement) of the training split.
        holdout_metric : {"nll", "mse"}
            Holdout score for early stopping and elites (normalized units). "nll" (default) keeps
            training while the variance head still improves, so the predicted sigma is
            calibrated (``FitHistory.calibration``); "mse", as in PETS and mbrl-lib, stops as soon
            as the mean stops improving, often before the variance has been learned
            (benchmarks/README.md).
        progress : bool
            Show a one-line progress display on stderr.
        callback : callable, optional
            ``callback(epoch, train_loss, holdout_loss)`` after each epoch (``holdout_loss`` is a
            float64 array (E,), or None without holdout); returning True stops training.
        max_steps : int, optional
            Upper bound on the minibatch steps of this fit, across epochs: the epoch in which it
            is reached ends there (then holdout scoring and elites as after any epoch). It bounds
            the cost of a refit as the data grows, deterministically. None: no bound.

        Returns
        -------
        FitHistory

        Raises
        ------
        ValueError
            On bad shapes, non-finite data, or data that is finite in float64 but not once
            normalized in the model dtype.
        FloatingPointError
            When training produces a non-finite loss.

        Whatever is raised (also by ``callback``, or KeyboardInterrupt), the model is left
        exactly as it was before the call: weights, bounds, optimizer state, normalizers,
        elites, generator state and ``history``.
        """
        # ---- validate everything before touching the model
        obs, act, next_obs, reward = check_fit_data(self, obs, act, next_obs, reward)
        max_epochs = check_int("max_epochs", max_epochs)
        if max_steps is not None:
            max_steps = check_int("max_steps", max_steps)
        batch_size = check_int("batch_size", batch_size)
        patience = check_int("patience", patience)
        holdout_frac = check_float("holdout_frac", holdout_frac, minimum=0.0, maximum=1.0,
                                   strict_max=True)
        min_rel_improvement = check_float("min_rel_improvement", min_rel_improvement,
                                          minimum=0.0)
        bootstrap = check_bool("bootstrap", bootstrap)
        progress = check_bool("progress", progress)
        check_callable("callback", callback)
        if holdout_metric not in ("mse", "nll"):
            raise ValueError(f"holdout_metric: expected 'mse' or 'nll', got {holdout_metric!r}")
        in_norm, out_norm, X, Y = normalized_fit_data(self, obs, act, next_obs, reward)

        # ---- commit, train; any exception restores everything (a failed fit changes nothing)
        saved = self._snapshot()
        try:
            previous = [a.astype(np.float64) for a in (
                self.input_normalizer.mean, self.input_normalizer.std,
                self.output_normalizer.mean, self.output_normalizer.std)]
            self.input_normalizer.load_state_dict(in_norm.state_dict())
            self.output_normalizer.load_state_dict(out_norm.state_dict())
            if self.n_fits > 0:
                carry_over_normalization(self, *previous)
            self._arrays = None
            # The BLAS pools stay at one thread during the fit: the step threads itself, and
            # spin-waiting BLAS teams collapse when the other core is busy (docs/performance.md: a
            # 20x slower holdout evaluation was measured on a loaded 2-core machine).
            with limit_blas(1):
                history = self._trainer.fit(
                    X, Y, self._rng, max_epochs=max_epochs, batch_size=batch_size,
                    holdout_frac=holdout_frac, patience=patience,
                    min_rel_improvement=min_rel_improvement, bootstrap=bootstrap,
                    num_elites=self.num_elites, holdout_metric=holdout_metric,
                    progress=progress, callback=callback, max_steps=max_steps)
        except BaseException:
            self._restore(saved)
            raise
        self.elites = history.elites
        self.n_fits += 1
        self.history = history
        return history

    def _snapshot(self):
        """Copies of everything ``fit`` may change (restored bit-exactly by :meth:`_restore`)."""
        return {"flat": self.net.flat.copy(), "step": self._step.state_dict(),
                "in": self.input_normalizer.state_dict(),
                "out": self.output_normalizer.state_dict(),
                "rng": self._rng.bit_generator.state, "elites": self.elites,
                "n_fits": self.n_fits, "history": self.history, "arrays": self._arrays}

    def _restore(self, saved):
        self.net.flat[...] = saved["flat"]
        self._step.load_state_dict(saved["step"])
        self.input_normalizer.load_state_dict(saved["in"])
        self.output_normalizer.load_state_dict(saved["out"])
        self._rng.bit_generator.state = saved["rng"]
        self.elites = saved["elites"]
        self.n_fits = saved["n_fits"]
        self.history = saved["history"]
        self._arrays = saved["arrays"]

    # ------------------------------------------------------------------ querying
    def _all_members(self):
        return np.arange(self.ensemble_size, dtype=np.int64)

    def predict(self, obs, act, return_reward=False):
        """Per-member Gaussian over the next observation, in raw units.

        Parameters
        ----------
        obs : float array (B, D_obs)
        act : float array (B, D_act)
        return_reward : bool
            Also return the learned reward's mean and variance (needs ``learn_reward``).

        Returns
        -------
        mean, var : arrays (E, B, D_obs) in the model dtype
            Mean and variance of s' for every member (all E, not only the elites).
        reward_mean, reward_var : arrays (E, B), only with ``return_reward``

        Notes
        -----
        One call of the compiled model step (``fastmbrl.models._kernels._model_predict``) through
        ``fastmbrl.models.arrays.predict_from_arrays(model.arrays(), obs, act)``.
        """
        if return_reward and not self.learn_reward:
            raise ValueError("return_reward: the model has no reward head (learn_reward=False)")
        obs, act = self._check_obs_act(obs, act)
        mean, var, r_mean, r_var = predict_from_arrays(self.arrays(), obs, act, self._all_members())
        if return_reward:
            return mean, var, r_mean, r_var
        return mean, var

    def sample(self, obs, act, rng=None, members=None, return_reward=False, *, noise=None):
        """Draw one next observation per row from one member's Gaussian (PETS' TS-1 step).

        Parameters
        ----------
        obs : float array (B, D_obs)
        act : float array (B, D_act)
        rng : numpy.random.Generator, optional
            Draws the members (when ``members`` is None) and the noise (when ``noise`` is None).
        members : int or int array (B,), optional
            The member to use for each row; default a uniformly random elite per row.
        return_reward : bool
            Also return a sampled reward (B,) (needs ``learn_reward``).
        noise : float array (B, D_out), optional
            Standard normal draws (D_out = D_obs, plus 1 with a reward head): the sample is then
            reparameterized, ``next = mean + std * noise`` in raw units (zeros give the mean).
            Default: ``rng.standard_normal((B, D_obs))``, then ``rng.standard_normal(B)`` for the
            reward when it is returned.

        Returns
        -------
        next_obs : array (B, D_obs)
        reward : array (B,), only with ``return_reward``

        Notes
        -----
        One member's forward pass per row (``fastmbrl.models._kernels._model_step``).
        """
        if return_reward and not self.learn_reward:
            raise ValueError("return_reward: the model has no reward head (learn_reward=False)")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        obs, act = self._check_obs_act(obs, act)
        B = obs.shape[0]
        if (members is None or noise is None) and rng is None:
            raise ValueError("rng: a numpy.random.Generator is required unless both members and "
                             "noise are given, got None")
        if members is None:
            members = self.elites[rng.integers(0, self.elites.size, size=B)]
        else:
            members = check_members("members", members, B, self.ensemble_size)
        if noise is None:
            noise = np.zeros((B, self.out_dim), self.dtype)
            noise[:, :self.obs_dim] = rng.standard_normal((B, self.obs_dim))
            if return_reward:
                noise[:, self.obs_dim] = rng.standard_normal(B)
        else:
            noise = as_float_array("noise", noise, ndim=2, shape=(B, self.out_dim))
        next_obs, reward = step_from_arrays(self.arrays(), obs, act, members, noise)
        if return_reward:
            return next_obs, reward
        return next_obs

    def uncertainty(self, obs, act, members=None):
        """Aleatoric and epistemic variance of the next observation.

        Parameters
        ----------
        obs : float array (B, D_obs)
        act : float array (B, D_act)
        members : int array, optional
            Members to pool; default the elites.

        Returns
        -------
        aleatoric : array (B, D_obs)
            Mean over members of each member's predicted variance (the noise model).
        epistemic : array (B, D_obs)
            Variance over members of the members' means (ensemble disagreement).
        """
        mean, var = self.predict(obs, act)
        if members is None:
            members = self.elites
        else:
            members = np.array(check_int_sequence("members", np.reshape(members, -1), minimum=0,
                                                  maximum=self.ensemble_size), np.int64)
            if members.size == 0:
                raise ValueError(f"members: expected indices in [0, {self.ensemble_size}), "
                                 f"got none")
        return var[members].mean(axis=0), mean[members].var(axis=0)

    def arrays(self):
        """The model as plain arrays for compiled code (see ``fastmbrl.models.arrays``).

        Returns
        -------
        ModelArrays
            Live views of the weights and statistics (no copy); call again after ``fit`` or
            ``load`` (the elites may change).
        """
        if self._arrays is None or self._arrays.members is not self.elites:
            self._arrays = ModelArrays(
                flat=self.net.flat, layer_dims=self.net.layer_dims,
                ensemble_size=self.ensemble_size,
                activation=ACTIVATIONS[self.activation], members=self.elites,
                angle_mask=self.angle_mask, delta_mask=self.delta_mask,
                in_mean=self.input_normalizer.mean, in_std=self.input_normalizer.std,
                out_mean=self.output_normalizer.mean, out_std=self.output_normalizer.std,
                max_logvar=self.max_logvar, min_logvar=self.min_logvar,
                has_reward=self.learn_reward)
        return self._arrays

    # ------------------------------------------------------------------ persistence
    @property
    def train_step(self):
        """The fused training step (``fastmbrl.nn.GaussianTrainStep``) that owns Adam's state and
        the learnable log-variance bounds; its ``state_dict`` is part of a saved model."""
        return self._step

    @property
    def generator(self):
        """The model's own ``numpy.random.Generator`` (holdout splits, bootstrap, shuffles); its
        state is part of a saved model."""
        return self._rng

    def init_kwargs(self):
        """The constructor's arguments that rebuild this model (plain JSON types, dtype by name;
        ``weight_decay`` as the per-layer list in use)."""
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden),
                "ensemble_size": self.ensemble_size, "num_elites": self.num_elites,
                "activation": self.activation, "predict_delta": [bool(v) for v in self.delta_mask],
                "angle_dims": list(self.angle_dims), "learn_reward": self.learn_reward,
                "dtype": np.dtype(self.dtype).name, "seed": self.seed, "lr": self.lr,
                "weight_decay": list(self.weight_decay), "logvar_penalty": self.logvar_penalty,
                "n_threads": self.n_threads}

    def save(self, path):
        """Write the whole model to one ``.npz`` file (atomically: a temporary file, then rename).

        The file holds the configuration, the weights, the log-variance bounds, both normalizers,
        the elites, both optimizers' state and the generator state, so a loaded model predicts
        bit-identically and a refit continues exactly where this one would.

        Parameters
        ----------
        path : str or os.PathLike
            Written exactly there (no suffix added).
        """
        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`.

        Raises
        ------
        ValueError
            Naming ``path``, if the file is unreadable or truncated, not a GaussianEnsemble file, of
            another format version, its arrays do not match its configuration, or a value is out
            of its domain: non-finite weights, normalizer statistics, bounds or optimizer moments,
            a non-positive normalizer std, ``min_logvar >= max_logvar``, negative second moments,
            or elites that are not distinct member indices.
        """
        return load_model(cls, path)
