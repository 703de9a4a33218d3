"""Dynamics models: the heteroskedastic Gaussian ensemble (course notes, section 4)."""
from fastmbrl.models.arrays import ModelArrays, predict_from_arrays, step_from_arrays
from fastmbrl.models.gaussian_ensemble import GaussianEnsemble
from fastmbrl.models.model_env import ModelEnv, PolicyArrays, RolloutBatch
from fastmbrl.models.normalizer import Normalizer
from fastmbrl.models.trainer import FitHistory

__all__ = ["GaussianEnsemble", "FitHistory", "ModelArrays", "ModelEnv", "predict_from_arrays",
           "step_from_arrays", "Normalizer", "PolicyArrays", "RolloutBatch"]
