"""Callbacks: how a caller watches a run (and stops it early)."""

__all__ = ["Callback", "as_callback"]


class Callback:
    """Hooks into a run. Override any; a plain callable is used as ``on_episode_end``.

    Returning True from ``on_episode_end`` (or ``on_step``) stops the run after the current
    episode (after its checkpoint is written).
    """

    def on_run_start(self, config, start_episode):
        """Called once, before the first episode this call runs."""

    def on_fit_end(self, episode, history):
        """Called after each model refit with the model's FitHistory."""

    def on_step(self, episode, step, max_steps):
        """Called after each environment step of a learning episode (max_steps: the episode's
        step limit, or None when unknown)."""

    def on_episode_end(self, record):
        """Called after each episode / evaluation record (and its checkpoint)."""


_HOOKS = ("on_run_start", "on_fit_end", "on_step", "on_episode_end")


class _CallableCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_episode_end(self, record):
        return self.fn(record)


class _DuckCallback(Callback):
    """Any object with some of Callback's hook methods (the missing ones do nothing)."""

    def __init__(self, obj):
        for hook in _HOOKS:
            if callable(getattr(obj, hook, None)):
                setattr(self, hook, getattr(obj, hook))


def as_callback(cb):
    """A Callback from a Callback, an object with some hook methods, or a callable."""
    if isinstance(cb, Callback):
        return cb
    if any(callable(getattr(cb, h, None)) for h in _HOOKS):
        return _DuckCallback(cb)
    if callable(cb):
        return _CallableCallback(cb)
    raise TypeError(f"callbacks: expected Callback objects or callables, got {cb!r}")
