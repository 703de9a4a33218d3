"""Run configuration: one frozen :class:`RunConfig` made of frozen dataclass sections.

The split: this module defines the run configuration (the dataclasses, their checks, JSON and
``--set`` parsing); ``fastmbrl._config`` exists beside it because the constants this configuration
checks against (allowed activations, planner names, propagation modes, the default dtype and
episode bound) are also needed by low layers that must not depend on the run configuration, so
they live there and are only imported here. The conversion of JSON values to field types, the
plain-JSON view (``to_dict``) and the merging of overrides are generic over dataclasses and live
in ``fastmbrl._config_values``, re-exported here with ``ConfigError``.

Defaults: each setting has one default, the field's here, and the library's constructors take
theirs from these dataclasses (e.g. ``CEM(horizon=PlannerConfig.horizon, ...)``,
``GaussianEnsemble(hidden=ModelConfig.hidden, ...)``, ``SAC(gamma=SACConfig.gamma, ...)``), so an
object built with its defaults is the one a default run builds. Options without a field here (an
optimizer's own, e.g. MPPI's temperature) keep their constructor's default.

A run is described by one :class:`RunConfig`. It resolves in layers, each overriding the last:
the dataclass defaults, the environment's defaults (``fastmbrl.envs`` specs), a JSON file
(``--config``), then ``key=value`` overrides (``--set planner.horizon=20``). ``to_dict`` and
``from_dict`` round-trip through plain JSON types; unknown keys and ill-typed values are refused
with a message naming the key.

Sections. Every field of RunConfig whose value is a frozen dataclass is a section: ``model``,
``planner`` (PETS's agent) and ``algorithm`` (the outer loop, shared by every algorithm, with the
algorithm's ``name``). A new algorithm adds its own section by adding one field, e.g.
``sac: SACConfig = field(default_factory=SACConfig)``; JSON files, ``--set sac.lr=3e-4``,
``to_dict`` and ``from_dict`` then work for it with no other change. A section checks its own
value ranges in a ``checks()`` method returning ``(name, ok, expected)`` triples.
"""
import dataclasses
import json
import os
import pkgutil
import sys
import typing
from dataclasses import dataclass, field

from fastmbrl._config import (DEFAULT_DTYPE, HIDDEN_ACTIVATIONS, PLANNERS, PROPAGATION_MODES,
                              SUPPORTED_DTYPES)
from fastmbrl._config_values import (ConfigError, _build_section, _coerce, _env_kwargs, merge,
                                     to_dict)
from fastmbrl._validate import alpha_in_range

_DTYPE_NAMES = tuple(d.__name__ for d in SUPPORTED_DTYPES)

__all__ = ["ModelConfig", "PlannerConfig", "AlgorithmConfig", "SACConfig", "MBPOConfig",
           "DHMBPOConfig",
           "RunConfig", "to_dict", "from_dict",
           "apply_overrides", "parse_override", "validate", "sections", "ConfigError",
           "algorithm_names"]


def algorithm_names():
    """Names of the algorithms: the public modules of the ``fastmbrl.algorithms`` package (with
    the plug-in folders on its ``__path__`` once it is imported), found without importing it, so
    that this lower layer does not depend on the loops it configures."""
    package = sys.modules.get("fastmbrl.algorithms")
    path = (list(package.__path__) if package is not None
            else [os.path.join(os.path.dirname(os.path.abspath(__file__)), "algorithms")])
    return sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))


@dataclass(frozen=True)
class ModelConfig:
    """Settings of the probabilistic ensemble dynamics model and of its refits."""

    hidden: tuple = (200, 200, 200)
    """Widths of the hidden layers."""
    ensemble_size: int = 5
    """Number of bootstrapped members E."""
    num_elites: int = 5
    """Members with the best holdout loss used for planning (<= ensemble_size)."""
    activation: str = "silu"
    """Hidden activation: 'silu', 'relu' or 'tanh'."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 5e-5
    """L2 weight decay (Adam's decoupled decay is not used; this is added to the gradient)."""
    max_epochs: int = 50
    """Upper bound on epochs per refit (early stopping usually ends sooner)."""
    batch_size: int = 256
    """Minibatch rows per member."""
    holdout_frac: float = 0.1
    """Fraction of the buffer held out for early stopping and elite selection."""
    patience: int = 5
    """Epochs without holdout improvement before a refit stops."""
    learn_reward: bool = False
    """Also learn the reward (needed only when no reward function is known)."""
    dtype: str = DEFAULT_DTYPE.__name__
    """'float32' or 'float64'."""
    n_threads: object = "auto"
    """Threads of the compiled fit step, each taking whole members: 'auto' is 2 on a machine with
    2 or more cores and an OpenMP build, else 1. Fits are bit-identical for any value
    (``GaussianTrainStep``)."""

    def checks(self):
        """``(name, ok, expected)`` for each value range of this section."""
        return [
            ("ensemble_size", self.ensemble_size >= 1, "at least 1"),
            ("n_threads", self.n_threads == "auto" or (type(self.n_threads) is int
                                                      and self.n_threads >= 1),
             "'auto' or an integer >= 1"),
            ("num_elites", 1 <= self.num_elites <= self.ensemble_size,
             "between 1 and ensemble_size"),
            ("activation", self.activation in HIDDEN_ACTIVATIONS, " or ".join(HIDDEN_ACTIVATIONS)),
            ("lr", self.lr > 0, "positive"),
            ("weight_decay", self.weight_decay >= 0, "non-negative"),
            ("max_epochs", self.max_epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("holdout_frac", 0 <= self.holdout_frac < 1, "in [0, 1)"),
            ("patience", self.patience >= 1, "at least 1"),
            ("dtype", self.dtype in _DTYPE_NAMES, " or ".join(_DTYPE_NAMES)),
        ]


@dataclass(frozen=True)
class PlannerConfig:
    """Settings of the MPC agent: the trajectory optimizer and the particle propagation."""

    name: str = "cem"
    """Optimizer: 'cem', 'icem', 'mppi' or 'rs' (random shooting)."""
    horizon: int = 15
    """Planning horizon H in steps."""
    population: int = 350
    """Action sequences P scored per optimizer iteration."""
    elite_frac: float = 0.1
    """Fraction of the population refitted to (CEM/iCEM)."""
    iterations: int = 5
    """Optimizer iterations per action."""
    alpha: float = 0.1
    """Momentum of the sampling distribution's update (CEM/iCEM)."""
    particles: int = 20
    """Particles per action sequence (PETS trajectory sampling)."""
    propagation: str = "ts1"
    """Particle propagation: 'ts1', 'tsinf' or 'expectation'."""
    options: dict = field(default_factory=dict)
    """Extra keyword arguments passed to the optimizer's constructor (e.g. MPPI's temperature)."""
    bonus_weight: float = 0.0
    """Optimism bonus w: plans maximise return + w * the ensemble's disagreement (0: off)."""
    bonus_decay_episodes: int = 0
    """Episode k plans with w * max(0, 1 - (k - 1) / bonus_decay_episodes); 0: w throughout."""

    def checks(self):
        """``(name, ok, expected)`` for each value range of this section (``options`` are checked
        by building the optimizer before a run writes anything)."""
        return [
            ("name", self.name in PLANNERS, ", ".join(PLANNERS)),
            ("horizon", self.horizon >= 1, "at least 1"),
            ("population", self.population >= 2, "at least 2"),
            ("elite_frac", 0 < self.elite_frac <= 1, "in (0, 1]"),
            ("iterations", self.iterations >= 1, "at least 1"),
            ("alpha", alpha_in_range(self.alpha), "in [0, 1)"),   # the planners' own rule
            ("particles", self.particles >= 1, "at least 1"),
            ("propagation", self.propagation in PROPAGATION_MODES, ", ".join(PROPAGATION_MODES)),
            ("bonus_weight", 0 <= self.bonus_weight < float("inf"), "a finite number >= 0"),
            ("bonus_decay_episodes", self.bonus_decay_episodes >= 0, "non-negative"),
        ]


@dataclass(frozen=True)
class AlgorithmConfig:
    """Settings of the outer loop, shared by every algorithm (PETS: Algorithm 1 of the notes)."""

    name: str = "pets"
    """The algorithm (``fastmbrl.algorithms.available()``): 'pets', or 'random' (the baseline)."""
    episodes: int = 10
    """Episodes after the random data (episode-based algorithms such as pets)."""
    steps: typing.Optional[int] = None
    """Environment steps after the random data (step-based algorithms); pets refuses it."""
    initial_steps: int = 200
    """Transitions collected with uniformly random actions before the first fit."""
    max_episode_steps: typing.Optional[int] = None
    """Cap on an episode's length; None keeps the environment's own time limit (and, when the
    environment has none, cuts episodes at ``fastmbrl._config.DEFAULT_MAX_EPISODE_STEPS`` = 1000
    steps with a warning)."""
    buffer_capacity: int = 200_000
    """Replay buffer capacity (transitions); the oldest are overwritten beyond it."""
    warm_start: bool = True
    """Refit the model from its current weights (True) or from a fresh initialisation (False)."""
    progress: bool = True
    """Show a progress bar while acting (command line only)."""

    def checks(self):
        """``(name, ok, expected)`` for each value range of this section."""
        names = algorithm_names()
        return [
            ("name", self.name in names, "one of " + ", ".join(names)),
            ("episodes", self.episodes >= 0, "non-negative"),
            ("steps", self.steps is None or self.steps >= 0, "non-negative or null"),
            ("initial_steps", self.initial_steps >= 1, "at least 1"),
            ("max_episode_steps", self.max_episode_steps is None or self.max_episode_steps >= 1,
             "at least 1 or null"),
            ("buffer_capacity", self.buffer_capacity >= self.initial_steps,
             f"at least algorithm.initial_steps ({self.initial_steps}), or the random data "
             "could never be collected"),
        ]


@dataclass(frozen=True)
class SACConfig:
    """Settings of the soft actor-critic loop (``algorithm="sac"``) and of MBPO's actor-critic.

    Defaults are the SAC paper's / Stable-Baselines3's; the environment specs override some
    (``fastmbrl.envs.specs``, key ``"sac"``).
    """

    total_steps: int = 10_000
    """Environment steps of a run when ``algorithm.steps`` is unset (``steps=`` and ``--steps``
    set ``algorithm.steps``, which wins)."""
    hidden: tuple = (256, 256)
    """Hidden widths of the actor and of each critic."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    lr: float = 3e-4
    """Adam learning rate of actor, critics and temperature."""
    batch_size: int = 256
    """Minibatch rows per update."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha (learned; target entropy -D_act)."""
    learning_starts: int = 100
    """Environment steps of uniformly random actions before the first update (MBPO: before the
    first model fit)."""
    updates_per_step: int = 1
    """Gradient updates per environment step once learning has started (sac only; MBPO has its
    own ``mbpo.updates_per_step``)."""
    eval_every: int = 1000
    """Environment steps between evaluations of the deterministic policy (and checkpoints); the
    last step of the budget is always evaluated."""
    eval_episodes: int = 5
    """Episodes per evaluation, on an environment instance of their own."""
    buffer_capacity: int = 1_000_000
    """Environment replay buffer capacity (transitions). Exact resume needs a buffer that never
    wrapped (capacity >= steps): a reloaded ring is stored oldest first."""
    n_threads: object = "auto"
    """Threads of the SAC update kernel (``fastmbrl.agents.SAC``'s ``n_threads``): 'auto' is 2 on
    a machine with 2 or more cores, else 1. Updates are bit-identical for any value."""
    dtype: str = DEFAULT_DTYPE.__name__
    """'float32' or 'float64' (networks, replay buffer)."""

    def checks(self):
        """``(name, ok, expected)`` for each value range of this section."""
        return [
            ("total_steps", self.total_steps >= 1, "at least 1"),
            ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"),
            ("tau", 0 < self.tau <= 1, "in (0, 1]"),
            ("lr", self.lr > 0, "positive"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("init_temperature", self.init_temperature > 0, "positive"),
            ("learning_starts", self.learning_starts >= 1, "at least 1"),
            ("updates_per_step", self.updates_per_step >= 0, "non-negative"),
            ("eval_every", self.eval_every >= 1, "at least 1"),
            ("eval_episodes", self.eval_episodes >= 1, "at least 1"),
            ("buffer_capacity", self.buffer_capacity >= self.learning_starts,
             f"at least sac.learning_starts ({self.learning_starts})"),
            ("n_threads", self.n_threads == "auto" or (type(self.n_threads) is int
                                                      and self.n_threads >= 1),
             "'auto' or an integer >= 1"),
            ("dtype", self.dtype in ("float32", "float64"), "float32 or float64"),
        ]


@dataclass(frozen=True)
class MBPOConfig:
    """Settings of model-based policy optimisation (``algorithm="mbpo"``, Janner et al. 2019).

    The ensemble is the ``model`` section, the actor-critic the ``sac`` section (its
    ``updates_per_step``, ``total_steps`` and, when set here, ``hidden`` and the random steps are
    replaced by this section's).
    """

    total_steps: int = 10_000
    """Environment steps of a run when ``algorithm.steps`` is unset."""
    random_steps: int = 0
    """Uniformly random steps before the first model fit; 0 uses ``sac.learning_starts``."""
    model_train_every: int = 250
    """Environment steps between model refits (and rollout batches)."""
    rollouts_per_step: int = 100
    """Model rollouts per environment step: each refit starts ``rollouts_per_step *
    model_train_every`` rollouts from states drawn from the environment buffer."""
    rollout_schedule: tuple = (1, 1, 1, 1)
    """``(start_step, end_step, from_length, to_length)``: the rollout length grows linearly from
    ``from_length`` at environment step ``start_step`` to ``to_length`` at ``end_step`` (MBPO's
    schedule, in environment steps), and is held outside."""
    model_retain: int = 1
    """Refits whose rollouts the model buffer keeps (FIFO by refit)."""
    real_ratio: float = 0.05
    """Fraction of each SAC minibatch drawn from the environment buffer (the rest from the model
    buffer)."""
    updates_per_step: int = 10
    """SAC updates per environment step (MBPO's G; the paper uses 20-40, 10 halves the wall
    time and, on the environments measured here, not the sample efficiency)."""
    model_fit_seconds: float = 0.0
    """Wall-clock bound of one refit in seconds (checked after each epoch); 0: none."""
    model_fit_steps: int = 0
    """Upper bound on the minibatch steps of one refit, across epochs (0: none). It keeps a
    refit's cost flat as the buffer grows, and unlike ``model_fit_seconds`` the result does not
    depend on the machine's speed (a run stays reproducible)."""
    hidden: tuple = ()
    """Hidden widths of MBPO's actor and critics; () uses ``sac.hidden``. MBPO makes many more
    updates per environment step than SAC, so its wall time is mostly the networks' width."""
    dyna_rollouts: bool = True
    """Model rollouts into the model buffer at each refit (MBPO's Dyna data); false: none, every
    minibatch is real data (the ``mve`` preset)."""
    critic_horizon: int = 1
    """n of the value-expansion critic target (MVE, notes 5.3): ``r + sum_{1<=t<n} gamma^t (r_t -
    alpha log pi_t) + gamma^n (min Q'(s_n, a_n) - alpha log pi_n)`` with s_2..s_n imagined by the
    model under the current policy from each minibatch row's s', terminations masked; 1: SAC's
    TD target."""
    td_k: bool = False
    """With critic_horizon > 1, also fit the critic at the imagined states s_1..s_{n-1} to their
    own shorter targets (MVE's TD-k trick)."""
    actor_horizon: int = 0
    """h of the actor objective through the model (SVG(H), notes 5.4): the actor maximises
    ``sum_{t<h} gamma^t (r_t - alpha log pi_t) + gamma^h (min Q(s_h, a_h) - alpha log pi_h)`` over
    h reparameterized model steps from each minibatch row's s, backpropagated through every step;
    0: SAC's actor loss."""
    actor_grad_clip: float = 0.0
    """Global L2-norm clip of the actor's gradient in the model-based updates; 0: none."""

    def checks(self):
        """``(name, ok, expected)`` for each value range of this section."""
        s = self.rollout_schedule
        return [
            ("total_steps", self.total_steps >= 1, "at least 1"),
            ("random_steps", self.random_steps == 0 or self.random_steps >= 2,
             "0 (use sac.learning_starts) or at least 2 (the model's first fit)"),
            ("model_train_every", self.model_train_every >= 1, "at least 1"),
            ("rollouts_per_step", self.rollouts_per_step >= 1, "at least 1"),
            ("rollout_schedule", len(s) == 4 and s[0] <= s[1] and (s[0] < s[1] or s[2] == s[3]),
             "(start_step, end_step, from_length, to_length) of positive integers with "
             "start_step <= end_step (start_step < end_step unless the lengths are equal)"),
            ("model_retain", self.model_retain >= 1, "at least 1"),
            ("real_ratio", 0 <= self.real_ratio <= 1, "in [0, 1]"),
            ("updates_per_step", self.updates_per_step >= 0, "non-negative"),
            ("model_fit_seconds", self.model_fit_seconds >= 0, "non-negative (0: unbounded)"),
            ("model_fit_steps", self.model_fit_steps >= 0, "non-negative (0: unbounded)"),
            ("critic_horizon", 1 <= self.critic_horizon <= 20, "an integer in [1, 20]"),
            ("actor_horizon", 0 <= self.actor_horizon <= 20, "an integer in [0, 20]"),
            ("actor_grad_clip", self.actor_grad_clip >= 0, "non-negative (0: no clipping)"),
        ]


@dataclass(frozen=True)
class DHMBPOConfig:
    """Settings of double-horizon model-based policy optimization (``algorithm="dhmbpo"``, Kubo,
    Parmas, Ishii 2025): long distribution rollouts fill a state buffer, short training rollouts
    give the critic ensemble its targets and the actor its gradient through the model.

    The ensemble is the ``model`` section (with ``model_hidden`` and ``model_members`` here when
    set), the actor's step size, batch, Polyak rate, dtype and threads the ``sac`` section's.
    """

    total_steps: int = 10_000
    """Environment steps of a run when ``algorithm.steps`` is unset."""
    random_steps: int = 1000
    """Uniformly random steps before the first model fit (at least 2)."""
    model_train_every: int = 250
    """Environment steps between model refits."""
    model_fit_steps: int = 0
    """Upper bound on the minibatch steps of one refit, across epochs (0: none)."""
    model_hidden: tuple = ()
    """Hidden widths of the model; () uses ``model.hidden``."""
    model_members: int = 0
    """Members of the model ensemble, all used (no elites); 0 uses ``model.ensemble_size`` and
    ``model.num_elites``."""
    rollout_every: int = 20
    """Updates between distribution rollouts."""
    rollout_starts: int = 256
    """Start states (from the environment buffer) of one distribution rollout."""
    rollout_length: int = 20
    """Steps of a distribution rollout (the long horizon)."""
    rounds_kept: int = 10
    """Distribution rollouts whose states the state buffer keeps (FIFO)."""
    horizon: int = 5
    """Steps of the training rollout (the short horizon): the critic's target is the h-step soft
    return, the actor's objective is backpropagated through h model steps."""
    updates_per_step: int = 1
    """Updates (critic, actor, temperature) per environment step."""
    update_every: int = 1
    """Environment steps between batches of updates: every ``update_every`` steps after the random
    ones, ``update_every * updates_per_step`` updates at once (1: interleaved with acting; the
    released code: 1000, with ``model_train_every=1000``)."""
    catch_up: bool = True
    """At the first training step, also make one update per random step (``updates_per_step``
    each), as if the policy had been trained from the start."""
    clear_rounds: bool = False
    """Empty the state buffer D_roll at each model refit, so that the updates after a refit start
    from the new model's rollouts (the released code); False: keep the older rounds."""
    critic_warmup: int = 0
    """Critic-only updates right after each model refit, from a fresh distribution rollout
    (the released code: 250 per 1000 steps); 0: none."""
    hidden: tuple = (256, 256, 256)
    """Hidden widths of the actor."""
    critic_hidden: tuple = (256, 256, 256)
    """Hidden widths of each critic."""
    critic_members: int = 5
    """Critics in the ensemble (the target is the minimum over ``critic_target_members``)."""
    critic_target_members: int = 2
    """Target networks whose minimum is the critics' target, drawn at random per update (2:
    REDQ's random pair; up to ``critic_members``, a more pessimistic target)."""
    critic_lower_bound: str = "reward"
    """The critics' lower bound (their targets are clipped into the bounds): "reward", the low
    quantile of the soft rewards over ``1 - gamma`` (the released code); "zero", at most 0, the
    value of an episode that ends, for environments that end episodes and pay positive rewards
    while alive (Hopper, Walker2d, Ant, Humanoid)."""
    critic_ln_eps: float = 1e-5
    """Layer-normalization epsilon on the critics' hidden inputs (0: none)."""
    critic_dropout: float = 1e-3
    """Dropout probability after the critics' hidden layers (0: none)."""
    gamma: float = 0.995
    """Discount factor."""
    init_temperature: float = 0.1
    """Initial entropy temperature alpha."""
    reset_optimizers: bool = False
    """After each model refit, restart the Adam optimizers of the actor, the temperature and the
    critics (moments and step counts to zero), as the released code does; False: keep them."""
    normalize_inputs: bool = False
    """Train the actor and the critics on normalized observations ``(s - mean) / std``, with the
    environment buffer's statistics taken at each model refit (``fastmbrl.agents.obs_scaling``);
    False: raw observations."""
    model_noise: bool = True
    """Sample the model's Gaussian in the distribution and training rollouts (each row's member
    and its predicted standard deviation); False: each row's member predicts its mean, so the
    rollouts' only randomness is the member drawn per row and step and the policy's own samples."""

    def checks(self):
        """``(name, ok, expected)`` for each value range of this section."""
        return [
            ("total_steps", self.total_steps >= 1, "at least 1"),
            ("random_steps", self.random_steps >= 2, "at least 2 (the model's first fit)"),
            ("model_train_every", self.model_train_every >= 1, "at least 1"),
            ("model_fit_steps", self.model_fit_steps >= 0, "non-negative (0: unbounded)"),
            ("model_members", self.model_members >= 0, "non-negative (0: model.ensemble_size)"),
            ("rollout_every", self.rollout_every >= 1, "at least 1"),
            ("rollout_starts", self.rollout_starts >= 1, "at least 1"),
            ("rollout_length", self.rollout_length >= 1, "at least 1"),
            ("rounds_kept", self.rounds_kept >= 1, "at least 1"),
            ("horizon", 1 <= self.horizon <= 20, "an integer in [1, 20]"),
            ("updates_per_step", self.updates_per_step >= 1, "at least 1"),
            ("update_every", self.update_every >= 1, "at least 1"),
            ("critic_warmup", self.critic_warmup >= 0, "non-negative (0: none)"),
            ("critic_members", self.critic_members >= 2, "at least 2"),
            ("critic_target_members", 2 <= self.critic_target_members <= self.critic_members,
             "an integer in [2, critic_members]"),
            ("critic_lower_bound", self.critic_lower_bound in ("reward", "zero"),
             "'reward' or 'zero'"),
            ("critic_ln_eps", self.critic_ln_eps >= 0, "non-negative (0: none)"),
            ("critic_dropout", 0 <= self.critic_dropout < 1, "in [0, 1)"),
            ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"),
            ("init_temperature", self.init_temperature > 0, "positive"),
        ]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run (together with the environment's code)."""

    env: str = "Pendulum-v1"
    """Environment id (a fastmbrl spec or a gymnasium id)."""
    env_kwargs: dict = field(default_factory=dict)
    """Keywords for the environment's constructor (JSON values), e.g. ``{"reset_noise_scale":
    0.01}``; on the command line ``--set env_kwargs.reset_noise_scale=0.01``."""
    seed: int = 0
    """Seed of every random stream (environment, model, planner, random actions)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Dynamics model settings."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """MPC agent settings."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Outer-loop settings."""
    sac: SACConfig = field(default_factory=SACConfig)
    """Soft actor-critic settings (algorithms sac and mbpo)."""
    mbpo: MBPOConfig = field(default_factory=MBPOConfig)
    """MBPO settings (model refits, model rollouts, the model buffer)."""
    dhmbpo: DHMBPOConfig = field(default_factory=DHMBPOConfig)
    """DHMBPO settings (the two horizons, the critic ensemble)."""


def sections(config_class=None):
    """``{name: dataclass}`` of the sections of ``config_class`` (default RunConfig), in field
    order: every field whose default is a dataclass."""
    return {f.name: f.default_factory for f in dataclasses.fields(config_class or RunConfig)
            if f.default_factory is not dataclasses.MISSING
            and dataclasses.is_dataclass(f.default_factory)}


_SCALARS = ("env", "env_kwargs", "seed")


def from_dict(values, base=None):
    """Build a RunConfig from nested dicts, on top of ``base`` (default: RunConfig()).

    Parameters
    ----------
    values : dict
        Any subset of ``to_dict``'s keys, e.g. ``{"planner": {"horizon": 20}, "seed": 3}``.
    base : RunConfig, optional
        Settings not named in ``values`` are taken from here.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        On an unknown key or a value of the wrong type, naming the key.
    """
    config = RunConfig() if base is None else base
    if not isinstance(values, dict):
        raise ConfigError(f"config: expected a JSON object, got {type(values).__name__}")
    known = sections(type(config))
    changes = {}
    for key, value in values.items():
        if key in known:
            changes[key] = _build_section(known[key], key, value, getattr(config, key))
        elif key == "env":
            changes[key] = _coerce("env", value, str, "")
        elif key == "seed":
            changes[key] = _coerce("seed", value, int, 0)
        elif key == "env_kwargs":
            changes[key] = _env_kwargs(value)
        else:
            raise ConfigError(f"{key}: unknown setting; known: "
                              f"{', '.join(_SCALARS + tuple(known))}")
    config = dataclasses.replace(config, **changes)
    validate(config)
    return config


def validate(config):
    """Check value ranges that types alone do not catch; raise ConfigError naming the key."""
    if not config.seed >= 0:
        raise ConfigError(f"seed: expected non-negative, got {config.seed!r}")
    for section in sections(type(config)):
        values = getattr(config, section)
        for name, ok, want in values.checks():
            if not ok:
                raise ConfigError(f"{section}.{name}: expected {want}, got "
                                  f"{getattr(values, name)!r}")


def parse_override(text, config_class=None):
    """Split ``"section.key=value"`` into a nested dict; the value is read as JSON if it parses.

    ``"planner.horizon=20"`` -> ``{"planner": {"horizon": 20}}``; ``"model.hidden=[64,64]"`` and
    ``"model.hidden=64,64"`` both give a list; bare words stay strings (``planner.name=icem``).
    ``config_class`` (default RunConfig) says which sections exist.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set: expected key=value (e.g. planner.horizon=20), got {text!r}")
    key, _, raw = text.partition("=")
    key = key.strip()
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        if "," in raw:
            try:
                value = [json.loads(v) for v in raw.split(",")]
            except json.JSONDecodeError:
                value = raw
        else:
            value = raw
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in ("env", "seed"):
        return {parts[0]: value}
    if len(parts) == 2 and parts[0] == "env_kwargs" and parts[1]:
        return {"env_kwargs": {parts[1]: value}}
    known = sections(config_class)
    if len(parts) != 2 or parts[0] not in known or not parts[1]:
        raise ConfigError(f"--set {key}: expected section.key with section one of "
                          f"{', '.join(known)} (or env, seed, env_kwargs.KEYWORD)")
    return {parts[0]: {parts[1]: value}}


def apply_overrides(config, overrides):
    """Return ``config`` with ``key=value`` strings (``--set``) applied, checked like from_dict."""
    return from_dict(merge(*[parse_override(o, type(config)) for o in overrides]), base=config)
