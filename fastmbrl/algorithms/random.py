"""The random baseline: Algorithm 1's loop with uniformly random actions and no model.

Same budget, records, results files and checkpoints as ``pets`` (``fastmbrl.algorithms.pets``);
episode i acts with a RandomAgent seeded from (seed, i).
"""
from fastmbrl.algorithms import pets

__all__ = ["BUDGET", "check", "run"]

BUDGET = "episodes"
USES = ("algorithm.",)


def check(ctx):
    """Refuse a step budget (see ``pets.check``)."""
    pets.check(ctx, random_policy=True)


def run(ctx):
    """Run the baseline from ``ctx``; returns a RunResult with ``model`` None."""
    return pets.run(ctx, random_policy=True)
