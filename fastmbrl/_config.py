"""Package-wide constants (UPPER_CASE): default dtype, numerical floors, test tolerances, the
allowed values of run settings.

The split: this module holds constants only, with no run concept, so that the lowest layers
(kernels, argument checks) can import them; ``fastmbrl.config`` exists beside it for the run
configuration (RunConfig and its frozen-dataclass sections, the per-run settings and their
defaults), which reads its allowed values from here. A name is defined in one of the two, never
both.
"""
import numpy as np

DEFAULT_DTYPE = np.float32
SUPPORTED_DTYPES = (np.float32, np.float64)

# A standard deviation below max(STD_REL_FLOOR[dtype] * rms, STD_ABS_FLOOR) (rms: root mean square
# of the column) marks a constant dimension, normalised by 1. Relative, so data at any scale is
# standardised; the relative part is a few hundred rounding units of the dtype, the absolute part
# keeps 1 / std finite in float32.
STD_REL_FLOOR = {np.float32: 1e-5, np.float64: 1e-10}
STD_ABS_FLOOR = 1e-30

# Relative tolerances used when comparing compiled kernels with their NumPy twins.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
ATOL = {np.float32: 1e-5, np.float64: 1e-12}

# Activation codes shared by the C kernels, the Numba kernels and the NumPy twins.
ACTIVATIONS = {"identity": 0, "relu": 1, "tanh": 2, "silu": 3}

# Hidden activations a model may use (the subset of ACTIVATIONS with a name users choose).
HIDDEN_ACTIVATIONS = ("silu", "relu", "tanh")

# Run-configuration choices: planner names (config name -> fastmbrl.planning class) and particle
# propagation modes of the PETS agent.
PLANNERS = {"cem": "CEM", "icem": "ICEM", "mppi": "MPPI", "rs": "RandomShooting"}
PROPAGATION_MODES = ("ts1", "tsinf", "expectation")

# Episode bound used when the environment has no time limit and algorithm.max_episode_steps is
# unset: without it an episode could never end (a warning says when it applies).
DEFAULT_MAX_EPISODE_STEPS = 1000
