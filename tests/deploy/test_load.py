"""fm.load: the trained agent of every algorithm, in a fresh process, from finished and unfinished
runs; bad folders and damaged checkpoints named in one clear error."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.agents import PETS, SAC, RandomAgent
from tests.deploy.helpers import random_obs


def test_fm_load_is_the_deploy_function():
    from fastmbrl.deploy import load

    assert fm.load is load
    assert "load" in dir(fm)


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["config"] == sb["config"] | {"n_threads": 1}
    for k in sa:
        if k != "config":
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("fixture", ["sac_run", "mbpo_run", "unfinished_run"])
def test_load_sac_family_restores_the_run_agent(fixture, request):
    out, result = request.getfixturevalue(fixture)
    agent = fm.load(out)
    assert isinstance(agent, SAC)
    _same_state(agent, result.agent)
    obs = random_obs(64)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True),
                                  result.agent.act(obs, deterministic=True))
    a = agent.act(obs[0], deterministic=True)
    assert a.shape == (1,) and a.dtype == np.float32 and -2.0 <= a[0] <= 2.0


def test_load_in_a_fresh_process(mbpo_run):
    out, result = mbpo_run
    obs = random_obs(8)
    code = ("import json, sys, numpy as np, fastmbrl as fm\n"
            "agent = fm.load(sys.argv[1])\n"
            "obs = np.array(json.loads(sys.argv[2]), np.float32)\n"
            "print(json.dumps(agent.act(obs, deterministic=True).tolist()))\n"
            "print(type(agent).__name__)")
    proc = subprocess.run([sys.executable, "-c", code, str(out), json.dumps(obs.tolist())],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    got = np.array(json.loads(lines[0]), np.float32)
    np.testing.assert_array_equal(got, result.agent.act(obs, deterministic=True))
    assert lines[1].startswith("SAC")


def test_load_pets_plans_with_the_checkpointed_model(pets_run):
    out, result = pets_run
    agent = fm.load(out)
    try:
        assert isinstance(agent, PETS)
        cfg = result.config.planner
        assert agent.horizon == cfg.horizon == 3
        assert agent.planner.population == cfg.population and agent.particles == cfg.particles
        obs = random_obs(5).astype(np.float64)
        acts = random_obs(5, dim=1, seed=1, scale=2.0)
        for got, want in zip(agent.model.predict(obs, acts), result.model.predict(obs, acts)):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(agent.model.elites, result.model.elites)
        action = agent.act(obs[0])
        assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
        # deterministic: the same load plans the same action
        again = fm.load(out)
        assert again.act(obs[0]) == action
        again.close()
        other = fm.load(out, seed=123)
        assert isinstance(other, PETS)
        other.close()
    finally:
        agent.close()


def test_load_random_run(tmp_path):
    out = tmp_path / "random"
    fm.run("Pendulum-v1", algorithm="random", episodes=1, out_dir=out,
           config={"algorithm": {"initial_steps": 5, "max_episode_steps": 5}})
    agent = fm.load(out)
    assert isinstance(agent, RandomAgent)
    assert agent.act(np.zeros(3)).shape == (1,)


def test_load_reads_no_buffer(mbpo_run, copy_run):
    out = copy_run(mbpo_run[0])
    _, ckpt = _checkpoint(out)
    os.remove(os.path.join(ckpt, "buffer.npz"))
    assert isinstance(fm.load(out), SAC)


def _checkpoint(out):
    pointer = json.loads((out / "checkpoint.json").read_text())
    return pointer, os.path.join(out, pointer["dir"])


# --------------------------------------------------------------------------- custom environments
def test_pets_on_a_custom_env_needs_reward_fn(tmp_path):
    from tests.algorithms.systems import LinearSystem, linear_reward

    out = tmp_path / "linear"
    config = {"model": {"hidden": [8], "ensemble_size": 2, "num_elites": 2, "max_epochs": 2},
              "planner": {"population": 10, "particles": 1, "horizon": 2, "iterations": 1},
              "algorithm": {"initial_steps": 10, "max_episode_steps": 5}}
    fm.run(LinearSystem(), algorithm="pets", episodes=1, reward_fn=linear_reward, config=config,
           out_dir=out)
    with pytest.raises(ValueError, match=r"reward_fn=.*termination_fn=.*fm\.load"):
        fm.load(out)
    # the environment (an object, not a gymnasium id) cannot be rebuilt to read the bounds
    with pytest.raises(ValueError, match="action_space="):
        fm.load(out, reward_fn=linear_reward)
    env = LinearSystem()
    agent = fm.load(out, reward_fn=linear_reward, action_space=env.action_space)
    try:
        assert isinstance(agent, PETS)
        assert agent.act(np.zeros(env.observation_space.shape[0])).shape == env.action_space.shape
    finally:
        agent.close()
    with pytest.raises(TypeError, match="reward_fn"):
        fm.load(out, reward_fn=3)


# ------------------------------------------------------------------------------------ bad input
def test_not_a_run_folder(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        fm.load(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"not a fastmbrl run folder \(no config.json\)"):
        fm.load(tmp_path)
    with pytest.raises(TypeError, match="run_dir"):
        fm.load(3)


def test_run_without_checkpoint(sac_run, copy_run):
    out = copy_run(sac_run[0])
    os.remove(out / "checkpoint.json")
    with pytest.raises(ValueError, match=r"holds no checkpoint yet \(no checkpoint.json\)"):
        fm.load(out)


def test_unknown_algorithm(sac_run, copy_run):
    out = copy_run(sac_run[0])
    config = json.loads((out / "config.json").read_text())
    config["algorithm"]["name"] = "dreamer"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        fm.load(out)
    msg = str(info.value)
    assert "config.json" in msg and "'dreamer'" in msg and "sac" in msg and "pets" in msg


def test_damaged_config_json(sac_run, copy_run):
    out = copy_run(sac_run[0])
    (out / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        fm.load(out)
    (out / "config.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(ValueError, match="names no environment"):
        fm.load(out)


@pytest.mark.parametrize("fixture, name", [("sac_run", "agent.npz"), ("sac_run", "agent.json"),
                                           ("pets_run", "model.npz"), ("mbpo_run", "model.npz")])
def test_damaged_checkpoint_file(fixture, name, request, copy_run):
    from fastmbrl.deploy import export

    out = copy_run(request.getfixturevalue(fixture)[0])
    _, ckpt = _checkpoint(out)
    path = os.path.join(ckpt, name)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(ValueError) as info:
        if fixture == "mbpo_run":       # its SAC agent needs no model: the export reads it
            export(out, "numpy", out / "exported")
        else:
            fm.load(out)
    msg = str(info.value)
    assert repr(path) in msg and "damaged" in msg, msg
    assert not (out / "exported").exists()


def test_missing_checkpoint_file(sac_run, pets_run, copy_run):
    out = copy_run(sac_run[0])
    _, ckpt = _checkpoint(out)
    os.remove(os.path.join(ckpt, "agent.npz"))
    with pytest.raises(ValueError, match=r"agent.npz' is missing"):
        fm.load(out)
    out = copy_run(pets_run[0])
    _, ckpt = _checkpoint(out)
    os.remove(os.path.join(ckpt, "model.npz"))
    with pytest.raises(ValueError, match=r"model.npz' is missing"):
        fm.load(out)


def test_damaged_pointer(sac_run, copy_run):
    out = copy_run(sac_run[0])
    (out / "checkpoint.json").write_text(json.dumps({"format_version": 1, "episode": 7,
                                                     "dir": "checkpoints/ep0007"}))
    with pytest.raises(ValueError, match=r"^load: .*checkpoint.json.*missing"):
        fm.load(out)
