"""The run context: what an algorithm module's ``run(ctx)`` starts from (environment and
configuration resolved, episode limits set, output folder ready).
"""
import copy
import json
import logging
import os
from dataclasses import dataclass, field

from fastmbrl import config as _cfg
from fastmbrl._checkpoint import checkpoint_folders, checkpoints_folder
from fastmbrl._config import DEFAULT_MAX_EPISODE_STEPS
from fastmbrl._io import atomic_write_text, remove_stale_temporaries

__all__ = ["RunContext", "episode_limits", "prepare_output"]

log = logging.getLogger("fastmbrl.algorithms")


@dataclass
class RunContext:
    """Everything an algorithm module's ``run(ctx)`` starts from.

    Attributes
    ----------
    config : RunConfig
        Resolved and checked (``config.algorithm.name`` is the algorithm).
    env : fastmbrl.envs.ResolvedEnv
        The training environment with its reward/termination functions.
    max_episode_steps : int or None
        The cap to pass to :func:`collect_episode` (None: the environment's time limit ends
        episodes); set to ``DEFAULT_MAX_EPISODE_STEPS`` when the environment has no limit.
    step_limit : int or None
        An episode's actual step limit (shown by progress bars).
    callbacks : list of Callback
    out_dir : str or None
    resume : bool
        True when ``out_dir`` holds a checkpoint to continue from.
    t_start : float
        ``time.perf_counter()`` when the call started.
    env_kwargs : dict
        The environment constructor's keywords (for :meth:`make_env`).
    """

    config: object
    env: object
    max_episode_steps: object
    step_limit: object
    callbacks: list = field(default_factory=list)
    out_dir: object = None
    resume: bool = False
    t_start: float = 0.0
    env_kwargs: dict = field(default_factory=dict)

    def make_env(self):
        """A fresh instance of the training environment (for evaluation on its own instance)."""
        spec = self.env.spec
        if spec is not None:
            return spec.factory(**self.env_kwargs)
        if self.env.env.spec is not None:
            import gymnasium as gym

            return gym.make(self.env.env.spec, **self.env_kwargs)
        return copy.deepcopy(self.env.env)

    def on_step_hook(self, episode):
        """An ``on_step(step) -> stop`` function that forwards to the callbacks, or None."""
        if not self.callbacks:
            return None
        cbs, limit = self.callbacks, self.step_limit

        def on_step(step):
            stop = False
            for cb in cbs:
                stop = bool(cb.on_step(episode, step, limit)) or stop
            return stop
        return on_step


def episode_limits(config, env):
    """``(max_episode_steps, step_limit)`` for a run: see :class:`RunContext`.

    An environment without a time limit and no ``algorithm.max_episode_steps`` would never end an
    episode; then episodes are cut at ``DEFAULT_MAX_EPISODE_STEPS`` and a warning says so.
    """
    max_steps = config.algorithm.max_episode_steps
    env_limit = env.time_limit
    if max_steps is None and env_limit is None:
        log.warning("%s declares no time limit and algorithm.max_episode_steps is unset: episodes "
                    "are cut at %d steps (set algorithm.max_episode_steps to change it)",
                    env.env_id, DEFAULT_MAX_EPISODE_STEPS)
        max_steps = DEFAULT_MAX_EPISODE_STEPS
    step_limit = max_steps if env_limit is None else min(max_steps or env_limit, env_limit)
    return max_steps, step_limit


def prepare_output(out_dir, config):
    """Create ``out_dir``, remove stale temporaries of killed writes, write config.json."""
    os.makedirs(out_dir, exist_ok=True)
    parent = checkpoints_folder(out_dir)            # refuses a symlinked checkpoints/
    for folder in [out_dir] + [os.path.join(parent, d) for d in checkpoint_folders(out_dir)]:
        for path in remove_stale_temporaries(folder):
            log.info("removed %s, left by a killed write", path)
    atomic_write_text(os.path.join(out_dir, "config.json"),
                      json.dumps(_cfg.to_dict(config), indent=1))
