"""Package-wide constants: default dtype, numerical floors, test tolerances."""
import numpy as np

DEFAULT_DTYPE = np.float32
SUPPORTED_DTYPES = (np.float32, np.float64)

# Standard deviations below this are treated as constant dimensions and normalised by 1.
STD_FLOOR = 1e-6

# Relative tolerances used when comparing compiled kernels with their NumPy twins.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
ATOL = {np.float32: 1e-5, np.float64: 1e-12}

# Activation codes shared by the C kernels, the Numba kernels and the NumPy twins.
ACTIVATIONS = {"identity": 0, "relu": 1, "tanh": 2, "silu": 3}
