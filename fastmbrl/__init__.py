"""fastmbrl: fast model-based reinforcement learning on a plain CPU.

Submodules are imported lazily so that ``import fastmbrl`` stays cheap (Numba and gymnasium load
only when a part that needs them is first touched).
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = ("nn", "models", "planning", "agents", "envs", "buffer", "algorithms", "config",
               "backend", "control")
_LAZY_ATTRS = {
    "run": ("fastmbrl.algorithms", "run"),
    "ReplayBuffer": ("fastmbrl.buffer", "ReplayBuffer"),
    "warmup": ("fastmbrl._warmup", "warmup"),
    "sweep": ("fastmbrl._sweep", "sweep"),
    "load": ("fastmbrl.deploy", "load"),
}

__all__ = list(_SUBMODULES) + list(_LAZY_ATTRS) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"fastmbrl.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        mod_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(mod_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastmbrl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
