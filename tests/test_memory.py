"""The peak-memory estimate: checked before anything is allocated or written, naming the setting
that dominates."""
import pytest

import fastmbrl as fm
from fastmbrl.algorithms import _memory
from fastmbrl.config import ConfigError, RunConfig, from_dict
from tests.algorithms.systems import LinearSystem, linear_reward


@pytest.mark.parametrize("algorithm, config, setting", [
    ("pets", {"planner": {"horizon": 1_000_000_000}}, "planner.horizon"),
    ("pets", {"planner": {"population": 10_000_000, "particles": 1000}}, "planner.population"),
    ("mbpo", {"mbpo": {"rollouts_per_step": 10_000_000, "model_train_every": 1000}},
     "mbpo.rollouts_per_step"),
])
def test_a_run_that_cannot_fit_is_refused_before_the_folder_is_written(algorithm, config, setting,
                                                                        tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=rf"^{setting}: this run would need about .* more than "
                                          r"the .* of memory available"):
        fm.run(LinearSystem(), algorithm=algorithm, reward_fn=linear_reward, config=config,
               out_dir=out, **({"steps": 2000} if algorithm == "mbpo" else {}))
    assert not out.exists()


def test_estimate_grows_with_the_settings_that_scale_memory():
    base = from_dict({"algorithm": {"name": "mbpo"}, "mbpo": {"total_steps": 50_000}})
    small = _memory.estimate(base, 11, 3)
    for change in ({"mbpo": {"rollouts_per_step": 800}}, {"mbpo": {"model_retain": 5}},
                   {"mbpo": {"rollout_schedule": [1, 2, 1, 5]}}, {"sac": {"hidden": [1024, 1024]}},
                   {"mbpo": {"total_steps": 500_000}}):
        assert _memory.estimate(from_dict(change, base=base), 11, 3).total > small.total, change
    pets = from_dict({"algorithm": {"name": "pets"}})
    assert _memory.estimate(from_dict({"planner": {"horizon": 60}}, base=pets), 11, 3).total > \
        _memory.estimate(pets, 11, 3).total


def test_the_description_names_parts_and_the_total():
    est = _memory.estimate(RunConfig(), 3, 1)
    assert est.total > _memory.BASE_BYTES
    assert est.describe().startswith("about ") and "base 450.0 MB" in est.describe()
