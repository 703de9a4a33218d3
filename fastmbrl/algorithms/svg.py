"""Actor gradients through the model, SVG(H) (Heess et al. 2015; course notes 5.4), on MBPO's loop.

MBPO's loop (``fastmbrl.algorithms.mbpo``) with the preset: the actor's objective is the soft
return of ``mbpo.actor_horizon`` reparameterized model steps plus the soft value at the last state,
backpropagated through every step (an unset horizon, 0, becomes 3); the critic is trained on real
and model data as MBPO's (Dyna rollouts kept, ``mbpo.real_ratio`` as set). See
``fastmbrl.agents._mb_grads`` for the gradient.
"""
import dataclasses

from fastmbrl.algorithms import mbpo as _mbpo

__all__ = ["BUDGET", "check", "preset", "run"]

BUDGET = "steps"
SECTION = "mbpo"   # the RunConfig section holding total_steps
USES = _mbpo.USES
DEFAULT_ACTOR_HORIZON = 3


def preset(config):
    """``config`` with the svg preset applied to its ``mbpo`` section."""
    mb = config.mbpo
    h = mb.actor_horizon if mb.actor_horizon > 0 else DEFAULT_ACTOR_HORIZON
    return dataclasses.replace(config, mbpo=dataclasses.replace(mb, actor_horizon=h))


def check(ctx):
    """mbpo's checks on the preset configuration."""
    _mbpo.check(_mbpo.with_preset(ctx, preset))


def run(ctx):
    """Run MBPO's loop with the svg preset; returns a RunResult (its ``config`` is the preset's)."""
    return _mbpo.run(_mbpo.with_preset(ctx, preset))
