"""Shared fixtures: deterministic data with corner cases and a seed whose contract is 'any of 0-99'."""
import numpy as np
import pytest


@pytest.fixture
def global_random_seed():
    """Tests using this seed must pass for any value in 0-99; 0 is what runs by default."""
    return 0


@pytest.fixture
def rng(global_random_seed):
    return np.random.default_rng(global_random_seed)
