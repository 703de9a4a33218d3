"""``fastmbrl.deploy.evaluate``: episodes of a run's trained controller in its own environment."""
from typing import NamedTuple

import numpy as np

__all__ = ["evaluate", "EvalResult", "check_video_dependencies"]


class EvalResult(NamedTuple):
    """The episodes :func:`evaluate` played.

    Attributes
    ----------
    returns : float64 array (N,)
    lengths : int64 array (N,)
    algorithm, env_id : str
        The run's.
    video_dir : str or None
        Where the videos were written.
    """

    returns: np.ndarray
    lengths: np.ndarray
    algorithm: str
    env_id: str
    video_dir: object = None

    @property
    def mean(self):
        """Mean return."""
        return float(np.mean(self.returns))

    @property
    def std(self):
        """Standard deviation of the returns (over episodes, ddof 0)."""
        return float(np.std(self.returns))


def check_video_dependencies():
    """Refuse video recording early when moviepy (what gymnasium's RecordVideo writes with) is
    missing.

    Raises
    ------
    ImportError
        One line naming the package to install.
    """
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ImportError("video: recording needs moviepy; install it with pip install "
                          "moviepy") from None


def evaluate(run_dir, episodes=5, seed=None, video=None, *, reward_fn=None, termination_fn=None,
             callback=None):
    """Play episodes of a run's trained controller (``fastmbrl.load``) in the run's environment.

    sac, mbpo, mve, svg: the deterministic policy (``act(obs, deterministic=True)``), as the
    runs' own evaluations; pets: the planner (reset at each episode start); random: random
    actions.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder (finished, or its last checkpoint).
    episodes : int
        Number of episodes, at least 1.
    seed : int, optional
        Episode k starts from ``env.reset(seed=derive_seed(seed, STREAM_EVAL_ENV, k))``; default
        the run's seed, so a step-based run's last evaluation is reproduced.
    video : str or os.PathLike, optional
        Record every episode as MP4 into this folder (gymnasium's RecordVideo; needs moviepy and
        an environment that renders ``rgb_array``).
    reward_fn, termination_fn : callable, optional
        Passed to ``fastmbrl.load`` (pets on an environment without a fastmbrl spec).
    callback : callable, optional
        ``callback(k, record)`` after episode k (0-based) with its
        ``fastmbrl.algorithms._common.EpisodeRecord``.

    Returns
    -------
    EvalResult

    Raises
    ------
    ValueError
        Naming the argument, folder or file (see ``fastmbrl.load``).
    ImportError
        ``video`` without moviepy (or the renderer the environment needs).
    """
    import gymnasium as gym

    from fastmbrl._config import DEFAULT_MAX_EPISODE_STEPS
    from fastmbrl._validate import check_int, check_seed
    from fastmbrl.algorithms._common import STREAM_EVAL_ENV, collect_episode, derive_seed
    from fastmbrl.deploy import loading

    episodes = check_int("episodes", episodes)
    if seed is not None:
        seed = check_seed("seed", seed)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
    run = loading.open_run(run_dir, "eval")
    if video is not None:
        check_video_dependencies()
    agent = loading.load(run.path, reward_fn=reward_fn, termination_fn=termination_fn)
    max_steps = run.run_config().algorithm.max_episode_steps
    seed = run.seed if seed is None else seed
    extra = {"render_mode": "rgb_array"} if video is not None else {}
    env = loading.make_env(run, "eval", **extra)
    try:
        if max_steps is None and getattr(env.spec, "max_episode_steps", None) is None:
            max_steps = DEFAULT_MAX_EPISODE_STEPS
        if video is not None:
            from gymnasium.wrappers import RecordVideo

            try:
                env = RecordVideo(env, video_folder=str(video), episode_trigger=lambda k: True,
                                  name_prefix=f"{run.algorithm}-{run.env_id.replace('/', '_')}",
                                  disable_logger=True)
            except gym.error.DependencyNotInstalled as exc:
                raise ImportError(f"video: {exc}") from None
        if run.has_policy:
            def policy(obs):
                return agent.act(obs, deterministic=True)
        else:
            policy = agent.act
        returns, lengths = [], []
        for k in range(episodes):
            agent.reset()
            try:
                record, _ = collect_episode(env, policy, None,
                                            derive_seed(seed, STREAM_EVAL_ENV, k), max_steps)
            except gym.error.DependencyNotInstalled as exc:
                raise ImportError(f"video: {exc}") from None
            returns.append(record.ret)
            lengths.append(record.length)
            if callback is not None:
                callback(k, record)
    finally:
        try:
            env.close()
        finally:
            close = getattr(agent, "close", None)
            if callable(close):
                close()
    return EvalResult(returns=np.array(returns, np.float64), lengths=np.array(lengths, np.int64),
                      algorithm=run.algorithm, env_id=run.env_id,
                      video_dir=None if video is None else str(video))
