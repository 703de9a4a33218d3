"""Model-based value expansion (Feinberg et al. 2018; course notes 5.3) on MBPO's loop.

MBPO's loop (``fastmbrl.algorithms.mbpo``) with the preset: no Dyna data (``mbpo.dyna_rollouts =
false``, ``mbpo.real_ratio = 1``: every minibatch row is real) and the critic's TD target expanded
``mbpo.critic_horizon`` steps through the model (an unset horizon, 1, becomes 3). The model is
still refit every ``mbpo.model_train_every`` steps; updates start after the first fit. See
``fastmbrl.agents._mb_grads`` for the target.
"""
import dataclasses

from fastmbrl.algorithms import mbpo as _mbpo

__all__ = ["BUDGET", "check", "preset", "run"]

BUDGET = "steps"
SECTION = "mbpo"   # the RunConfig section holding total_steps
USES = _mbpo.USES
DEFAULT_CRITIC_HORIZON = 3


def preset(config):
    """``config`` with the mve preset applied to its ``mbpo`` section."""
    mb = config.mbpo
    n = mb.critic_horizon if mb.critic_horizon > 1 else DEFAULT_CRITIC_HORIZON
    return dataclasses.replace(config, mbpo=dataclasses.replace(
        mb, dyna_rollouts=False, real_ratio=1.0, critic_horizon=n))


def check(ctx):
    """mbpo's checks on the preset configuration."""
    _mbpo.check(_mbpo.with_preset(ctx, preset))


def run(ctx):
    """Run MBPO's loop with the mve preset; returns a RunResult (its ``config`` is the preset's)."""
    return _mbpo.run(_mbpo.with_preset(ctx, preset))
