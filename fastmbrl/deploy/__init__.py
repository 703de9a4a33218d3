"""From a run to a controller: load a trained agent, evaluate it, export it (docs/controller.md).

>>> import fastmbrl as fm
>>> from fastmbrl.deploy import evaluate, export
>>> agent = fm.load("runs/pendulum-mbpo")                           # doctest: +SKIP
>>> action = agent.act(obs, deterministic=True)                     # doctest: +SKIP
>>> evaluate("runs/pendulum-mbpo", episodes=5).mean                 # doctest: +SKIP
>>> export("runs/pendulum-mbpo", "c", "controller")                 # doctest: +SKIP

``load``
    The trained agent of a run folder (SAC for sac/mbpo/mve/svg, PETS for pets), from its last
    checkpoint, reading only what inference needs.
``evaluate``
    Episodes of that agent in the run's environment (``fastmbrl eval``).
``export``
    The policy and the dynamics model as ONNX graphs, C99 sources or ``.npz`` files with
    pure-NumPy runtime modules (``fastmbrl export``).
"""
from fastmbrl.deploy._export import FORMATS, PARTS, ExportResult, export
from fastmbrl.deploy.evaluation import EvalResult, evaluate
from fastmbrl.deploy.loading import RunFolder, load, open_run

__all__ = ["load", "evaluate", "export", "open_run", "RunFolder", "EvalResult", "ExportResult",
           "FORMATS", "PARTS"]
