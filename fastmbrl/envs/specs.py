"""Environment specs: how to build each known environment, its exact reward and termination
functions, the model's view of its observation (angle dims) and default run settings."""
import dataclasses
import functools
import importlib.util
import inspect
import numbers
from dataclasses import dataclass, field
from typing import Callable, Optional

import gymnasium as gym
import numpy as np

from fastmbrl.envs import reward_fns, termination_fns
from fastmbrl.envs.wrappers import StepCostObservation, XDisplacementObservation

CARTPOLE_ID = "fastmbrl/CartPoleContinuous-v0"


@dataclass(frozen=True)
class EnvSpec:
    """A known environment: what ``fastmbrl.envs.make`` builds and what the loop needs to plan in it.

    Attributes
    ----------
    id : str
        Name used with ``make`` and the command line.
    factory : callable
        ``factory(**kwargs) -> gymnasium.Env``, with the time limit applied.
    reward_fn : callable
        ``reward_fn(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs)) -> (N,)``, exact.
    termination_fn : callable
        Same signature, returns a bool array (N,), exact.
    planning_termination_fn : callable or None
        A stricter termination the planner uses instead of ``termination_fn`` when set (a
        constraint on plans, not the environment's rule; returns are always the real ones).
    angle_dims : tuple of int
        Observation dims that are angles (fed to the network as sin and cos).
    max_episode_steps : int
        The time limit the factory applies.
    defaults : dict
        Nested config overrides (``{"model": {...}, "planner": {...}, "algorithm": {...}}``) that
        solve this environment quickly; see fastmbrl.config.
    reward_grad_fn : callable or None
        ``reward_grad_fn(obs, act, next_obs) -> (d_obs (N, D_obs), d_act (N, D_act),
        d_next_obs (N, D_obs))``: the exact gradient of each row's ``reward_fn`` (what
        ``ModelEnv.step_vjp`` backpropagates through a model step).
    requires : str or None
        Name of the optional extra needed ('mujoco'), or None.
    description : str
        One line for ``fastmbrl envs``.
    """

    id: str
    factory: Callable
    reward_fn: Callable
    termination_fn: Callable
    angle_dims: tuple = ()
    max_episode_steps: int = 1000
    defaults: dict = field(default_factory=dict)
    requires: Optional[str] = None
    description: str = ""
    planning_termination_fn: Optional[Callable] = None
    reward_grad_fn: Optional[Callable] = None

    @property
    def available(self):
        """True when the optional dependency this environment needs is installed."""
        if self.requires == "mujoco":
            return importlib.util.find_spec("mujoco") is not None
        return True


def _gym_factory(env_id, **fixed):
    def factory(**kwargs):
        return gym.make(env_id, **{**fixed, **kwargs})
    return factory


# Constructor keywords that change what an exact reward or termination function reads: the
# weights, ranges and frame skip of the formulas. Any of them (and any observation-layout keyword,
# ``exclude_current_positions_from_observation`` or ``include_*_in_observation``) is refused
# unless it equals the value the spec's functions assume.
_FORMULA_KEYWORDS = frozenset((
    "frame_skip", "forward_reward_weight", "ctrl_cost_weight", "contact_cost_weight",
    "contact_cost_range", "contact_force_range", "healthy_reward", "terminate_when_unhealthy",
    "healthy_z_range", "healthy_angle_range", "healthy_state_range", "main_body"))
# gymnasium.make's own keywords (the time limit and the checker), accepted as gymnasium.make does
_MAKE_KEYWORDS = ("max_episode_steps", "disable_env_checker")
# MujocoEnv.__init__ parameters the v5 classes pass themselves (not user keywords)
_MUJOCO_INTERNAL = frozenset(("self", "model_path", "frame_skip", "observation_space"))


def _is_layout_keyword(key):
    return key == "exclude_current_positions_from_observation" or (
        key.startswith("include_") and key.endswith("_in_observation"))


@functools.cache
def _constructor_keywords(env_id):
    """``{name: default}`` of every keyword the environment class of ``env_id`` accepts.

    The class's own parameters, plus ``MujocoEnv.__init__``'s (render_mode, width, height,
    camera_id, ...) when the class forwards ``**kwargs`` to it.
    """
    from gymnasium.envs.registration import load_env_creator

    cls = load_env_creator(gym.spec(env_id).entry_point)
    params = inspect.signature(cls.__init__).parameters
    out = {name: p.default for name, p in params.items()
           if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

        if issubclass(cls, MujocoEnv):
            for name, p in inspect.signature(MujocoEnv.__init__).parameters.items():
                if name not in _MUJOCO_INTERNAL:
                    out.setdefault(name, p.default)
    return out


def _same_value(value, needed):
    """True when ``value`` is ``needed`` up to its container or number type (1 == 1.0,
    [0.2, 1.0] == (0.2, 1.0)), False otherwise (True != 1, 'torso' != 1)."""
    if isinstance(needed, (tuple, list)):
        return (isinstance(value, (tuple, list, np.ndarray)) and len(value) == len(needed)
                and all(_same_value(v, n) for v, n in zip(value, needed)))
    if isinstance(needed, (bool, np.bool_)) or isinstance(value, (bool, np.bool_)):
        return (isinstance(needed, (bool, np.bool_)) and isinstance(value, (bool, np.bool_))
                and bool(value) == bool(needed))
    if isinstance(needed, numbers.Real):
        return isinstance(value, numbers.Real) and float(value) == float(needed)
    return type(value) is type(needed) and value == needed


def _make_checked(env_id, kwargs, layout):
    """``gymnasium.make(env_id, **layout, **kwargs)``, refusing keywords the exact functions need.

    Parameters
    ----------
    env_id : str
        A gymnasium id, e.g. 'Hopper-v5'.
    kwargs : dict
        The user's keywords (render_mode, reset_noise_scale, xml_file, camera settings, ...).
    layout : dict
        The observation-layout keywords the spec builds with and the values it needs.

    Returns
    -------
    gymnasium.Env

    Raises
    ------
    TypeError
        A keyword that neither the environment's constructor nor ``gymnasium.make`` accepts,
        naming the environment and the keyword and listing the accepted ones.
    ValueError
        A layout or formula keyword (``_FORMULA_KEYWORDS``) whose value differs from what the
        spec's functions assume (the layout's value, else gymnasium's default), naming the
        environment, the keyword, the needed and the given value.
    """
    accepted = _constructor_keywords(env_id)
    for key, value in kwargs.items():
        if key not in accepted and key not in _MAKE_KEYWORDS:
            raise TypeError(f"{env_id}: unknown keyword {key!r}; accepted: "
                            f"{', '.join(sorted(accepted) + list(_MAKE_KEYWORDS))}")
        if key in layout:
            needed = layout[key]
        elif key in _FORMULA_KEYWORDS or _is_layout_keyword(key):
            needed = accepted[key]
        else:
            continue
        if not _same_value(value, needed):
            raise ValueError(
                f"{env_id}: {key}={value!r} changes what fastmbrl's exact reward/termination "
                f"functions read; they need {key}={needed!r}. For other values build the "
                f"environment yourself (gymnasium.make({env_id!r}, {key}=...)) and pass it to "
                "fastmbrl.run with a reward_fn (and termination_fn) of your own")
    return gym.make(env_id, **{**layout, **kwargs})


def _half_cheetah(**kwargs):
    env = _make_checked("HalfCheetah-v5", kwargs,
                        {"exclude_current_positions_from_observation": False})
    return XDisplacementObservation(env)


def _hopper(**kwargs):
    env = _make_checked("Hopper-v5", kwargs, {"exclude_current_positions_from_observation": False})
    return XDisplacementObservation(env)


def _walker2d(**kwargs):
    env = _make_checked("Walker2d-v5", kwargs,
                        {"exclude_current_positions_from_observation": False})
    return XDisplacementObservation(env)


def _contact_cost(unwrapped):
    """The contact cost Ant-v5 / Humanoid-v5 charged in the last step."""
    return unwrapped.contact_cost


def _ant_torso_x(unwrapped):
    """What Ant-v5's step reads for its forward reward: ``data.body(main_body).xpos[0]``."""
    return unwrapped.data.body(unwrapped._main_body).xpos[0]


def _humanoid_mass_center_x(unwrapped):
    """What Humanoid-v5's step reads for its forward reward: gymnasium's ``mass_center(...)[0]``."""
    from gymnasium.envs.mujoco.humanoid_v5 import mass_center

    return mass_center(unwrapped.model, unwrapped.data)[0]


def _ant(**kwargs):
    env = _make_checked("Ant-v5", kwargs, {"exclude_current_positions_from_observation": True,
                                           "include_cfrc_ext_in_observation": False})
    return XDisplacementObservation(StepCostObservation(env, cost=_contact_cost),
                                    position=_ant_torso_x)


def _humanoid(**kwargs):
    env = _make_checked("Humanoid-v5", kwargs, {
        "exclude_current_positions_from_observation": True,
        "include_cinert_in_observation": False, "include_cvel_in_observation": False,
        "include_qfrc_actuator_in_observation": False, "include_cfrc_ext_in_observation": False})
    return XDisplacementObservation(StepCostObservation(env, cost=_contact_cost),
                                    position=_humanoid_mass_center_x)


def _config_merge(base, changes):
    """``base`` (nested dicts) with ``changes`` merged in, section by section."""
    return {k: {**base.get(k, {}), **changes.get(k, {})} for k in {**base, **changes}}


def _locomotion_defaults(rollout_schedule, hidden=200, model_train_every=250, model_retain=4,
                         updates_per_step=20):
    """Defaults of the MuJoCo locomotion specs (HalfCheetah, Hopper, Walker2d, Ant, Humanoid): PETS
    on a planning budget, MBPO as the comment above the specs says (rollout_schedule in environment steps, where MBPO counts
    epochs of 1000), rl-zoo's 10k random steps for SAC. A refit takes at most 200 minibatch
    steps, so that its cost stays flat as the buffer grows to 100k rows (MBPO refits until the
    holdout loss stops improving, which on 2 CPU cores would cost more than the policy updates).
    DHMBPO as its released configuration (5000 random steps, an 8-member ensemble of 3x256), with
    refits of 1000 minibatch steps every 250 environment steps: the released code refits every
    1000 steps for 124 epochs or more of up to 5 minibatches of 2048 rows, about as many rows;
    refits of 200 steps left Hopper-v5 below 500 at 20k steps (docs/results.md)."""
    return {"model": {"hidden": [hidden] * 4, "ensemble_size": 7, "num_elites": 5},
            "planner": {"name": "cem", "horizon": 10, "population": 150, "iterations": 5,
                        "particles": 4},
            "algorithm": {"episodes": 10, "initial_steps": 2000},
            "sac": {"learning_starts": 10000, "total_steps": 100000, "eval_every": 2500,
                    "eval_episodes": 5},
            "mbpo": {"total_steps": 100000, "random_steps": 5000, "model_fit_steps": 200,
                     "model_train_every": model_train_every, "rollouts_per_step": 400,
                     "real_ratio": 0.05, "updates_per_step": updates_per_step,
                     "model_retain": model_retain,
                     "rollout_schedule": list(rollout_schedule)},
            "dhmbpo": {"total_steps": 100000, "random_steps": 5000, "model_members": 8,
                       "model_hidden": [256, 256, 256], "model_fit_steps": 1000}}


# Defaults below were tuned on the project's 2-core machine (Pendulum-v1, CartPoleContinuous-v0;
# the others are reasonable starting points); see benchmarks/run_loop_table.py. warm_start is off
# because a warm refit after the normalisers move can early-stop on worse weights (reported).
_SPECS = [
    EnvSpec(
        id="Pendulum-v1", factory=_gym_factory("Pendulum-v1"),
        reward_fn=reward_fns.pendulum, termination_fn=termination_fns.no_termination,
        angle_dims=(), max_episode_steps=200,
        defaults={"model": {"hidden": [64, 64, 64], "ensemble_size": 5, "num_elites": 5,
                            "max_epochs": 100, "batch_size": 64, "patience": 5},
                  "planner": {"name": "cem", "horizon": 25, "population": 150, "iterations": 5,
                              "particles": 5, "elite_frac": 0.1, "alpha": 0.1},
                  "algorithm": {"episodes": 10, "initial_steps": 200, "warm_start": False},
                  # rl-zoo's Pendulum-v1 SAC: lr 1e-3, otherwise SB3's defaults
                  "sac": {"lr": 1e-3, "total_steps": 8000, "eval_every": 1000},
                  # MBPO chosen for wall time: a 64x64 actor-critic, rollouts of length 3
                  # (measured: benchmarks/results/2026-12_pendulum_mbpo_spec_notes.md)
                  "mbpo": {"total_steps": 3000, "random_steps": 250, "hidden": [64, 64],
                           "model_train_every": 250, "rollouts_per_step": 100,
                           "rollout_schedule": [1, 1, 3, 3], "updates_per_step": 20,
                           "real_ratio": 0.05}},
        description="swing up and balance a pendulum; 200 steps, solved near -150"),
    EnvSpec(
        id="MountainCarContinuous-v0", factory=_gym_factory("MountainCarContinuous-v0"),
        reward_fn=reward_fns.mountain_car_continuous,
        termination_fn=termination_fns.mountain_car_continuous,
        max_episode_steps=999,
        defaults={"model": {"hidden": [32, 32, 32], "max_epochs": 100, "batch_size": 64},
                  "planner": {"name": "cem", "horizon": 30, "population": 100, "iterations": 3,
                              "particles": 1, "propagation": "expectation",
                              "bonus_weight": 300.0, "bonus_decay_episodes": 10},
                  "algorithm": {"episodes": 5, "initial_steps": 999}},
        # The flag lies beyond a short horizon and the action cost makes standing still optimal, so
        # plans add an optimism bonus (the members' disagreement) that drives the car into states
        # the model does not know (measured: benchmarks/results/2026-12_mountaincar_spec_notes.md).
        description="drive an underpowered car up a hill; 999 steps, reward 100 at the flag"),
    EnvSpec(
        id="CartPoleContinuous-v0", factory=_gym_factory(CARTPOLE_ID),
        reward_fn=reward_fns.constant_one, termination_fn=termination_fns.cartpole,
        max_episode_steps=200,
        defaults={"model": {"hidden": [64, 64, 64], "max_epochs": 100, "batch_size": 64},
                  "planner": {"name": "cem", "horizon": 25, "population": 150, "iterations": 5,
                              "particles": 5},
                  "algorithm": {"episodes": 15, "initial_steps": 200, "warm_start": False}},
        description="classic cart-pole with force = action x 10 N; 200 steps, reward 1 per step"),
    EnvSpec(
        id="InvertedPendulum-v5", factory=_gym_factory("InvertedPendulum-v5"),
        reward_fn=reward_fns.inverted_pendulum, termination_fn=termination_fns.inverted_pendulum,
        max_episode_steps=1000, requires="mujoco",
        defaults={"model": {"hidden": [64, 64, 64], "max_epochs": 100, "batch_size": 64},
                  "planner": {"name": "cem", "horizon": 15, "population": 150, "iterations": 5,
                              "particles": 5},
                  "algorithm": {"episodes": 10, "initial_steps": 1000, "warm_start": False},
                  # (sac.lr is shared by the sac algorithm)
                  "sac": {"lr": 1e-3, "eval_every": 500},
                  # MBPO chosen for wall time: a 64x64 actor-critic, length-1 rollouts
                  # (measured: benchmarks/results/2026-11_inverted_pendulum_spec_notes.md)
                  "mbpo": {"total_steps": 5000, "random_steps": 250, "hidden": [64, 64],
                           "model_train_every": 250, "rollouts_per_step": 100,
                           "rollout_schedule": [1, 1, 1, 1], "updates_per_step": 20,
                           "real_ratio": 0.05}},
        # Plans stop short of the rail: the exact rule ends episodes at |x| = 1, which the ensemble
        # does not learn, and the reward gives no reason to stay centred (returns stay the real
        # ones; measured: benchmarks/results/2026-11_inverted_pendulum_spec_notes.md).
        planning_termination_fn=termination_fns.inverted_pendulum_rail,
        description="MuJoCo cart-pole balance; 1000 steps, reward 1 per step alive"),
    EnvSpec(
        id="Reacher-v5", factory=_gym_factory("Reacher-v5"),
        reward_fn=reward_fns.reacher, termination_fn=termination_fns.no_termination,
        max_episode_steps=50, requires="mujoco",
        defaults={"model": {"hidden": [128, 128, 128], "batch_size": 32, "max_epochs": 200,
                            "patience": 20},
                  "planner": {"name": "cem", "horizon": 15, "population": 200, "iterations": 5,
                              "particles": 5},
                  "algorithm": {"episodes": 10, "initial_steps": 1000, "warm_start": False}},
        # The model's accuracy decides Reacher, not the horizon: small batches, long training and
        # 1000 random steps give a model whose plans reach targets behind the arm (measured:
        # benchmarks/results/2026-12_reacher_spec_notes_intel-xeon.md).
        description="MuJoCo two-link arm reaching a target; 50 steps"),
    EnvSpec(
        id="HalfCheetah-v5", factory=_half_cheetah,
        reward_fn=reward_fns.half_cheetah, termination_fn=termination_fns.no_termination,
        max_episode_steps=1000, requires="mujoco",
        # A planning budget: mbrl-lib's PETS setting (horizon 30, population 350, 20 particles)
        # would take about a day of planning for 10 episodes on 2 cores; these plans are 30x
        # cheaper and shorter-sighted (benchmarks/results/2026-12_halfcheetah_pets_spec_notes.md).
        # MBPO's HalfCheetah settings (Janner et al. 2019) but 10 updates per step: the paper's
        # 40 would quadruple the dominant cost (curves in benchmarks/results/, the suite's in
        # benchmarks/results/suite.csv). PETS refits at most 20 epochs.
        defaults=_config_merge(_locomotion_defaults([20000, 150000, 1, 1], updates_per_step=10),
                               {"model": {"max_epochs": 20}}),
        description="MuJoCo running half-cheetah (x displacement observed in column 0); 1000 steps"),
    # MBPO values below come from the MBPO paper's released configs (model_retain: MBPO keeps one
    # epoch, 1000 steps, of model data).
    EnvSpec(
        id="Hopper-v5", factory=_hopper,
        reward_fn=reward_fns.hopper, termination_fn=termination_fns.hopper,
        max_episode_steps=1000, requires="mujoco",
        defaults=_locomotion_defaults([20000, 150000, 1, 15]),
        description="MuJoCo one-legged hopper; x displacement observed in column 0; 1000 steps, "
                    "ends when it falls (|qvel| >= 100 is not observed: velocities clipped at 10)"),
    EnvSpec(
        id="Walker2d-v5", factory=_walker2d,
        reward_fn=reward_fns.walker2d, termination_fn=termination_fns.walker2d,
        max_episode_steps=1000, requires="mujoco",
        defaults=_locomotion_defaults([20000, 150000, 1, 1]),
        description="MuJoCo 2-D biped walker; x displacement observed in column 0; 1000 steps, "
                    "ends when it falls"),
    EnvSpec(
        id="Ant-v5", factory=_ant,
        reward_fn=reward_fns.ant, termination_fn=termination_fns.ant,
        max_episode_steps=1000, requires="mujoco",
        defaults=_locomotion_defaults([20000, 100000, 1, 25]),
        description="MuJoCo quadruped; torso x displacement and contact cost observed in columns 0 "
                    "and 1, then the 27-dim state; 1000 steps, ends when torso z leaves [0.2, 1]"),
    EnvSpec(
        id="Humanoid-v5", factory=_humanoid,
        reward_fn=reward_fns.humanoid, termination_fn=termination_fns.humanoid,
        max_episode_steps=1000, requires="mujoco",
        defaults=_locomotion_defaults([20000, 300000, 1, 25], hidden=400,
                                      model_train_every=1000, model_retain=1),
        description="MuJoCo humanoid; centre-of-mass x displacement and contact cost observed in "
                    "columns 0 and 1, then qpos[2:] and qvel; 1000 steps, ends when it falls"),
]

# every built-in reward's exact gradient (fastmbrl.envs.reward_fns.*_grad), set in one place
_SPECS = [dataclasses.replace(spec, reward_grad_fn=reward_fns.gradient_of(spec.reward_fn))
          for spec in _SPECS]
SPECS = {spec.id: spec for spec in _SPECS}
ALIASES = {CARTPOLE_ID: "CartPoleContinuous-v0"}


def replace(spec, **changes):
    """Return a copy of ``spec`` with fields changed (a convenience over dataclasses.replace)."""
    return dataclasses.replace(spec, **changes)
