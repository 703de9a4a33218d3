"""Tiny Pendulum-v1 runs (sac, mbpo, pets, an unfinished sac) made once per session, and a copy of
a run to damage."""
import shutil

import pytest

SAC_CONFIG = {"sac": {"hidden": [32, 32], "learning_starts": 100, "eval_every": 300,
                      "eval_episodes": 1}}
MBPO_CONFIG = {"sac": {"hidden": [32, 32], "batch_size": 64, "learning_starts": 60,
                       "eval_every": 60, "eval_episodes": 1, "lr": 1e-3},
               "model": {"hidden": [32, 32], "ensemble_size": 3, "num_elites": 2,
                         "max_epochs": 5, "batch_size": 32},
               "mbpo": {"hidden": [32, 32], "random_steps": 60, "model_train_every": 20,
                        "rollouts_per_step": 20, "rollout_schedule": [1, 1, 2, 2],
                        "updates_per_step": 2, "real_ratio": 0.1},
               "algorithm": {"max_episode_steps": 20}}
PETS_CONFIG = {"model": {"hidden": [16, 16], "ensemble_size": 2, "num_elites": 2,
                         "max_epochs": 5},
               "planner": {"population": 20, "particles": 2, "horizon": 3, "iterations": 2},
               "algorithm": {"initial_steps": 20, "max_episode_steps": 10}}


def _run(tmp_path_factory, name, **kwargs):
    import fastmbrl as fm

    out = tmp_path_factory.mktemp("runs") / name
    result = fm.run("Pendulum-v1", out_dir=out, seed=0, **kwargs)
    return out, result


@pytest.fixture(scope="session")
def sac_run(tmp_path_factory):
    """(run folder, RunResult) of a 300-step SAC run."""
    return _run(tmp_path_factory, "sac", algorithm="sac", steps=300, config=SAC_CONFIG)


@pytest.fixture(scope="session")
def mbpo_run(tmp_path_factory):
    """(run folder, RunResult) of a 120-step MBPO run (3-member model)."""
    return _run(tmp_path_factory, "mbpo", algorithm="mbpo", steps=120, config=MBPO_CONFIG)


@pytest.fixture(scope="session")
def pets_run(tmp_path_factory):
    """(run folder, RunResult) of a 2-episode PETS run (2-member model, tiny planner)."""
    return _run(tmp_path_factory, "pets", algorithm="pets", episodes=2, config=PETS_CONFIG)


@pytest.fixture(scope="session")
def unfinished_run(tmp_path_factory):
    """(run folder, RunResult) of a SAC run stopped by a callback after its first of two
    evaluations: checkpointed, not finished."""
    config = {"sac": dict(SAC_CONFIG["sac"], eval_every=150)}
    out, result = _run(tmp_path_factory, "unfinished", algorithm="sac", steps=300, config=config,
                       callbacks=[lambda record: True])
    assert result.stopped_early and len(result.records) == 1
    return out, result


@pytest.fixture
def copy_run(tmp_path):
    """``copy_run(folder) -> a copy in tmp_path`` (to damage)."""
    def copy(folder):
        dst = tmp_path / f"copy_{folder.name}"
        shutil.copytree(folder, dst)
        return dst
    return copy
