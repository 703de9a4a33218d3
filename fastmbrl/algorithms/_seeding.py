"""Seeded random streams of a run: every random number of a run comes from one of these streams,
derived from the run seed.

Stream numbers are part of the results' identity: never renumber, only append.
"""
import numpy as np

__all__ = ["derive_seed", "STREAM_ENV", "STREAM_PLANNER", "STREAM_RANDOM_ACTIONS",
           "STREAM_INITIAL_ENV", "STREAM_MODEL", "STREAM_AGENT", "STREAM_EVAL_ENV",
           "STREAM_ROLLOUT"]

# Independent streams derived from the run seed (SeedSequence entropy [seed, stream, i]).
(STREAM_ENV, STREAM_PLANNER, STREAM_RANDOM_ACTIONS, STREAM_INITIAL_ENV, STREAM_MODEL,
 STREAM_AGENT, STREAM_EVAL_ENV) = range(7)
# Streams of the step-based loops (appended after the episode-based ones).
STREAM_ROLLOUT = 7


def derive_seed(seed, stream, index):
    """A 32-bit seed for item ``index`` of random ``stream`` of the run seeded ``seed``.

    Parameters
    ----------
    seed : int
        The run seed (``config.seed``).
    stream : int
        One of the ``STREAM_*`` constants.
    index : int
        The item of the stream (an episode, a refit, ...).

    Returns
    -------
    int
        ``SeedSequence([seed, stream, index])``'s first 32-bit word.
    """
    return int(np.random.SeedSequence([int(seed), stream, int(index)]).generate_state(1)[0])
