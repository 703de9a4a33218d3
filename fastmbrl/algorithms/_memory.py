"""Peak memory of a run, estimated from its configuration before anything is allocated.

``estimate(config, env)`` adds up the arrays a run of ``config.algorithm.name`` holds at its
largest: the environment replay buffer (the rows the budget can fill, at most its capacity), the
MBPO model buffer (the retained refits' rollouts at the longest rollout length, twice while a
refit's rows are merged in), one refit's rollout batch, the model fit's copies of the data and
its bootstrap indices, the planner's work arrays (per worker thread), and the weights with their
optimizer state, plus a fixed allowance for the interpreter and the compiled kernels. ``check``
refuses a run whose estimate exceeds the memory available, naming the setting behind the largest
part. The measured accuracy against peak RSS is in the docs (Guarantees).
"""
import os

import numpy as np

from fastmbrl.config import ConfigError

__all__ = ["estimate", "estimate_for", "check", "available_bytes", "MemoryEstimate"]

# The interpreter, NumPy/SciPy/Numba/gymnasium and the compiled kernels (measured RSS of an idle
# run process after its first compile: 350-450 MB).
BASE_BYTES = 450 * 2 ** 20


class MemoryEstimate(dict):
    """``{part: bytes}`` with the total and the setting behind each part.

    Attributes
    ----------
    total : int
        Bytes, the parts plus ``BASE_BYTES``.
    settings : dict
        ``{part: the setting that scales it}``.
    """

    def __init__(self):
        super().__init__()
        self.settings = {}

    def add(self, part, nbytes, setting):
        """Add ``nbytes`` to ``part`` (scaled by ``setting``)."""
        self[part] = self.get(part, 0) + int(nbytes)
        self.settings[part] = setting

    @property
    def total(self):
        return BASE_BYTES + sum(self.values())

    def largest(self):
        """``(part, bytes, setting)`` of the largest part."""
        part = max(self, key=self.get)
        return part, self[part], self.settings[part]

    def describe(self):
        """One line: the total and the parts above 1% of it, largest first."""
        parts = sorted(self.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in parts if v >= 0.01 * self.total)
        return f"about {_fmt(self.total)} ({shown}{', ' if shown else ''}base {_fmt(BASE_BYTES)})"


def _fmt(n):
    for unit, size in (("GB", 2 ** 30), ("MB", 2 ** 20), ("kB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _itemsize(name):
    return np.dtype(name).itemsize


def _row_bytes(obs_dim, act_dim, itemsize):
    """One transition of a ReplayBuffer: obs, act, reward, next_obs, two flags."""
    return (2 * obs_dim + act_dim + 1) * itemsize + 2


def _model(est, cfg, obs_dim, act_dim, n_angles, rows):
    """The ensemble's weights with Adam's moments, and one refit on ``rows`` transitions."""
    m = cfg.model
    item = _itemsize(m.dtype)
    d_out = obs_dim + int(m.learn_reward)
    dims = [obs_dim + n_angles + act_dim, *m.hidden, 2 * d_out]
    params = m.ensemble_size * sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
    est.add("model weights", 4 * params * item, "model.hidden")
    # the fit: inputs and targets in float64 and normalised copies, bootstrap and epoch indices
    per_row = (dims[0] + d_out) * (8 + 2 * item) + 2 * m.ensemble_size * 8
    est.add("model fit", rows * per_row, "model.ensemble_size")


def _planner(est, cfg, obs_dim, act_dim, n_angles):
    """The PETS planner's per-worker arrays (``fastmbrl.planning.rollout``)."""
    p, m = cfg.planner, cfg.model
    item = _itemsize(m.dtype)
    rows = p.population * max(p.particles, 1)
    d_out = obs_dim + int(m.learn_reward)
    d_in = obs_dim + n_angles + act_dim
    hidden = max(m.hidden) if m.hidden else 1
    per_row = ((p.horizon + 1) * obs_dim + p.horizon * (act_dim + d_out + 1)
               + d_in + 3 * d_out + 2 * hidden + 2 * max(hidden, d_out)) * item + p.horizon * 17
    workers = 2
    est.add("planner work arrays", workers * rows * per_row, "planner.horizon"
            if p.horizon * obs_dim > 4 * hidden else "planner.population")


def estimate(cfg, obs_dim, act_dim, n_angles=0, max_episode_steps=1000):
    """Estimate the peak memory of a run.

    Parameters
    ----------
    cfg : fastmbrl.config.RunConfig
        Resolved (presets applied).
    obs_dim, act_dim : int
    n_angles : int
        Observation dims fed to the model as (sin, cos).
    max_episode_steps : int
        An episode's step limit (pets: the episodes' rows).

    Returns
    -------
    MemoryEstimate
    """
    est = MemoryEstimate()
    name = cfg.algorithm.name
    if name in ("pets", "random"):
        a = cfg.algorithm
        rows = min(a.buffer_capacity, a.initial_steps + a.episodes * max_episode_steps)
        est.add("replay buffer", rows * _row_bytes(obs_dim, act_dim, 8),
                "algorithm.buffer_capacity")
        if name == "pets":
            _model(est, cfg, obs_dim, act_dim, n_angles, rows)
            _planner(est, cfg, obs_dim, act_dim, n_angles)
        return est
    s = cfg.sac
    section = (cfg.mbpo if name in ("mbpo", "mve", "svg") else cfg.dhmbpo if name == "dhmbpo"
               else s)
    steps = section.total_steps if cfg.algorithm.steps is None else cfg.algorithm.steps
    item = _itemsize(s.dtype)
    rows = min(s.buffer_capacity, steps)
    est.add("replay buffer", rows * _row_bytes(obs_dim, act_dim, item),
            "sac.buffer_capacity" if s.buffer_capacity < steps else "steps")
    hidden = (tuple(cfg.mbpo.hidden or s.hidden) if section is cfg.mbpo
              else tuple(cfg.dhmbpo.hidden) if section is cfg.dhmbpo else tuple(s.hidden))
    actor = sum((a + 1) * b for a, b in zip([obs_dim, *hidden], [*hidden, 2 * act_dim]))
    critic = sum((a + 1) * b for a, b in zip([obs_dim + act_dim, *hidden], [*hidden, 1]))
    est.add("agent weights", 4 * (actor + 4 * critic) * item, "sac.hidden")
    width = max(hidden) if hidden else 1
    est.add("agent scratch", 12 * s.batch_size * width * item * 2, "sac.batch_size")
    if section is cfg.mbpo:
        mb = cfg.mbpo
        _model(est, cfg, obs_dim, act_dim, n_angles, rows)
        if mb.dyna_rollouts:
            from fastmbrl.algorithms.mbpo import rollout_length

            # the longest rollouts within this run's budget (the schedule is linear)
            length = max(rollout_length(mb.rollout_schedule, 0),
                         rollout_length(mb.rollout_schedule, steps))
            per_refit = mb.rollouts_per_step * mb.model_train_every * length
            row = _row_bytes(obs_dim, act_dim, item)
            # while a refit's rows are merged in: the retained chunks, the old and the new buffer
            est.add("model buffer", 3 * mb.model_retain * per_refit * row,
                    "mbpo.rollouts_per_step")
            noise = (act_dim + obs_dim + 1) * item + 8
            est.add("model rollouts", per_refit * (row + noise), "mbpo.rollout_schedule")
    return est


def estimate_for(cfg):
    """:func:`estimate` for a configuration of a known environment (a fastmbrl spec), with the
    algorithm's preset applied (what ``fastmbrl run`` prints at start)."""
    from fastmbrl import envs
    from fastmbrl.algorithms import get

    made = envs.make(cfg.env, **cfg.env_kwargs)
    try:
        preset = getattr(get(cfg.algorithm.name), "preset", None)
        limit = made.env.spec.max_episode_steps if made.env.spec is not None else None
        return estimate(cfg if preset is None else preset(cfg), made.obs_dim, made.act_dim,
                        len(made.angle_dims), cfg.algorithm.max_episode_steps or limit or 1000)
    finally:
        made.env.close()


def available_bytes():
    """Memory this process may still use: ``MemAvailable`` of /proc/meminfo, or the physical
    memory where that is not readable; None when neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check(cfg, env, max_episode_steps):
    """Estimate the run's peak memory and refuse it when it exceeds what is available.

    Parameters
    ----------
    cfg : RunConfig
        Resolved, presets applied.
    env : fastmbrl.envs.ResolvedEnv
    max_episode_steps : int or None

    Returns
    -------
    MemoryEstimate

    Raises
    ------
    fastmbrl.config.ConfigError
        Naming the setting behind the largest part, the estimate and the memory available.
    """
    est = estimate(cfg, env.obs_dim, env.act_dim, len(env.angle_dims), max_episode_steps or 1000)
    avail = available_bytes()
    if avail is not None and est.total > avail:
        part, nbytes, setting = est.largest()
        raise ConfigError(f"{setting}: this run would need {est.describe()}, more than the "
                          f"{_fmt(avail)} of memory available; the largest part is the {part} "
                          f"({_fmt(nbytes)}), scaled by {setting}")
    return est
