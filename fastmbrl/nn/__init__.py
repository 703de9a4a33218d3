"""The hand-written neural core: ensemble MLP, heteroskedastic Gaussian loss, Adam, fused train step."""
from fastmbrl.nn.loss import gaussian_nll, soft_bound_logvar, soft_bound_logvar_backward
from fastmbrl.nn.mlp import EnsembleMLP
from fastmbrl.nn.optim import Adam
from fastmbrl.nn.train import GaussianTrainStep

__all__ = ["EnsembleMLP", "gaussian_nll", "soft_bound_logvar", "soft_bound_logvar_backward", "Adam",
           "GaussianTrainStep"]
