"""Where the run loop imports its learning-curve writer from; the plots live in fastmbrl.plot."""
from fastmbrl.plot import plot_learning_curve

__all__ = ["plot_learning_curve"]
