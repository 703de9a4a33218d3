"""NumPy export: the weights as ``.npz`` files plus standalone pure-NumPy runtime modules.

``policy.npz`` + ``fastmbrl_policy.py``
    ``fastmbrl_policy.load("policy.npz").act(obs)``: obs (D_obs,) or (B, D_obs) -> float32
    action (D_act,) or (B, D_act), the SAC actor's deterministic action.
``model.npz`` + ``fastmbrl_model.py``
    ``fastmbrl_model.load("model.npz").predict(obs, act)``: a dict with ``mean``, ``logvar``
    float32 (E, D_obs) for one row or (E, B, D_obs) for B rows (and ``reward_mean``,
    ``reward_logvar`` (E,) / (E, B) with a learned reward head).

The modules are copies of ``fastmbrl.deploy.numpy_policy`` and ``fastmbrl.deploy.numpy_model``:
they import only NumPy, so they run where fastmbrl and Numba are not installed.
"""
import importlib.resources

from fastmbrl.deploy._params import ModelParams, PolicyParams, model_arrays, policy_arrays

__all__ = ["policy_files", "model_files", "runtime_source"]


def runtime_source(kind):
    """The source text of a NumPy runtime module.

    Parameters
    ----------
    kind : {"policy", "model"}

    Returns
    -------
    str
        The text of ``fastmbrl/deploy/numpy_<kind>.py``.

    Raises
    ------
    ValueError
        For another ``kind``.
    """
    if kind not in ("policy", "model"):
        raise ValueError(f"kind: expected 'policy' or 'model', got {kind!r}")
    return importlib.resources.files("fastmbrl.deploy").joinpath(
        f"numpy_{kind}.py").read_text(encoding="utf-8")


def policy_files(params):
    """The files of the NumPy policy export.

    Parameters
    ----------
    params : PolicyParams

    Returns
    -------
    dict
        ``{"policy.npz": dict of arrays, "fastmbrl_policy.py": str}``.

    Raises
    ------
    TypeError
        When ``params`` is not a PolicyParams.
    """
    if not isinstance(params, PolicyParams):
        raise TypeError(f"params: expected PolicyParams, got {type(params).__name__}")
    return {"policy.npz": policy_arrays(params), "fastmbrl_policy.py": runtime_source("policy")}


def model_files(params):
    """The files of the NumPy model export.

    Parameters
    ----------
    params : ModelParams

    Returns
    -------
    dict
        ``{"model.npz": dict of arrays, "fastmbrl_model.py": str}``.

    Raises
    ------
    TypeError
        When ``params`` is not a ModelParams.
    """
    if not isinstance(params, ModelParams):
        raise TypeError(f"params: expected ModelParams, got {type(params).__name__}")
    return {"model.npz": model_arrays(params), "fastmbrl_model.py": runtime_source("model")}
