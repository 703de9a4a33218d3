"""Every public argument of the planners and agents: a named, typed error, nothing coerced."""
import numpy as np
import pytest

from fastmbrl._validate import ArgumentTypeError
from fastmbrl.agents import PETS, RandomAgent
from fastmbrl.planning import CEM, ICEM, MPPI, RandomShooting
from fastmbrl.planning.optimizers import alpha_in_range
from planning_helpers import linear_arrays

BOUNDS = (np.array([-1.0]), np.array([1.0]))


def reward(o, a, n):
    return -n[:, 0] ** 2


def pets(**kw):
    return PETS(linear_arrays([1.0]), reward, kw.pop("action_space", BOUNDS), particles=2, **kw)


PLANNERS = {"RandomShooting": RandomShooting, "CEM": CEM, "ICEM": ICEM, "MPPI": MPPI}
COMMON = [  # (argument, bad value, exception)
    ("horizon", np.nan, ValueError), ("horizon", 0, ValueError), ("horizon", 2.0, ValueError),
    ("horizon", "15", ArgumentTypeError), ("horizon", None, ArgumentTypeError),
    ("population", 1.5, ValueError), ("population", True, ValueError),
    ("iterations", -1, ValueError), ("iterations", "3", ArgumentTypeError),
    ("seed", 1.7, ValueError), ("seed", -1, ValueError), ("seed", "0", ArgumentTypeError),
    ("seed", 3.0, ValueError),
]
SPECIFIC = [
    (CEM, "alpha", 1.0, ValueError), (CEM, "alpha", -0.1, ValueError),
    (CEM, "alpha", np.nan, ValueError), (CEM, "alpha", "0.1", ArgumentTypeError),
    (CEM, "elite_frac", 0.0, ValueError), (CEM, "elite_frac", 1.5, ValueError),
    (CEM, "elite_frac", None, ArgumentTypeError),
    (CEM, "init_std", -1.0, ValueError), (CEM, "init_std", "wide", TypeError),
    (CEM, "return_mean_elites", "yes", ArgumentTypeError),
    (ICEM, "alpha", 1.0, ValueError), (ICEM, "noise_beta", -1.0, ValueError),
    (ICEM, "noise_beta", np.inf, ValueError), (ICEM, "population_decay", 0.5, ValueError),
    (ICEM, "keep_elites_frac", 1.5, ValueError), (ICEM, "init_std_frac", 0.0, ValueError),
    (ICEM, "shift_elites", 1, ArgumentTypeError), (ICEM, "add_mean", None, ArgumentTypeError),
    (MPPI, "temperature", 0.0, ValueError), (MPPI, "temperature", -1.0, ValueError),
    (MPPI, "temperature", np.nan, ValueError), (MPPI, "temperature", "1", ArgumentTypeError),
    (MPPI, "noise_std", -0.1, ValueError), (MPPI, "noise_std", "x", TypeError),
]


@pytest.mark.parametrize("cls", list(PLANNERS.values()), ids=list(PLANNERS))
@pytest.mark.parametrize("arg,value,exc", COMMON)
def test_planner_common_arguments(cls, arg, value, exc):
    with pytest.raises(exc, match=arg):
        cls(**{arg: value})


@pytest.mark.parametrize("cls,arg,value,exc", SPECIFIC)
def test_planner_specific_arguments(cls, arg, value, exc):
    with pytest.raises(exc, match=arg):
        cls(**{arg: value})


@pytest.mark.parametrize("value,exc", [("0.1", ArgumentTypeError), (np.nan, ValueError),
                                       (0.0, ValueError), (-1.0, ValueError),
                                       (np.inf, ValueError), (True, ArgumentTypeError)])
def test_time_budget(value, exc):
    with pytest.raises(exc, match="time_budget"):
        CEM(horizon=3, population=10).optimize(lambda s: -np.abs(s).sum(axis=(1, 2)),
                                               -np.ones(1), np.ones(1), time_budget=value)
    with pytest.raises(exc, match="time_budget"):
        pets().act(np.array([0.1]), time_budget=value)


@pytest.mark.parametrize("kw,exc,arg", [
    (dict(seed=1.7), ValueError, "seed"), (dict(seed="1"), ArgumentTypeError, "seed"),
    (dict(warm_start="no"), ArgumentTypeError, "warm_start"),
    (dict(n_threads=3), ValueError, "n_threads"), (dict(n_threads=1.0), ValueError, "n_threads"),
    (dict(blas_threads=0), ValueError, "blas_threads"),
    (dict(blas_threads=1.5), ValueError, "blas_threads"),
    (dict(propagation="ts2"), ValueError, "propagation"),
    (dict(action_space=(np.array([-1e308]), np.array([1e308]))), ValueError, "overflows"),
    (dict(planner=object()), TypeError, "planner"),
])
def test_pets_arguments(kw, exc, arg):
    with pytest.raises(exc, match=arg):
        pets(**kw)


def test_pets_particles_and_shift():
    with pytest.raises(ValueError, match="particles"):
        PETS(linear_arrays([1.0]), reward, BOUNDS, particles=2.5)
    with pytest.raises(ValueError, match="shift"):
        pets().plan(np.array([0.1]), shift=0)


@pytest.mark.parametrize("kw,exc,arg", [
    (dict(seed=1.7), ValueError, "seed"), (dict(seed=-3), ValueError, "seed"),
    (dict(seed="x"), ArgumentTypeError, "seed"),
    (dict(action_space=(np.array([-1e308]), np.array([1e308]))), ValueError, "overflows"),
])
def test_random_agent_arguments(kw, exc, arg):
    with pytest.raises(exc, match=arg):
        RandomAgent(kw.pop("action_space", BOUNDS), **kw)


def test_alpha_rule_is_the_configs():
    """One rule: the class refuses exactly what the configuration refuses."""
    from fastmbrl.config import ConfigError, from_dict
    for alpha in (0.0, 0.5, 0.999, 1.0, 1.5, -0.1):
        try:
            from_dict({"planner": {"alpha": alpha}})
            config_ok = True
        except ConfigError:
            config_ok = False
        try:
            CEM(alpha=alpha)
            class_ok = True
        except ValueError:
            class_ok = False
        assert config_ok == class_ok == alpha_in_range(alpha), alpha
