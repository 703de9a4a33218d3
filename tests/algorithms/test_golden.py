"""Golden runs: PETS on fixed seeds gives exactly the returns and data recorded before the loop
was split into fastmbrl/algorithms (tests/algorithms/golden_runs.json, written by the pre-refactor
``fastmbrl.loop.run``). Any change to these bits is a change of behaviour and must be explained."""
import json
import os

import pytest

import fastmbrl as fm
from tests.algorithms.systems import GOLDEN, LinearSystem, fingerprint, linear_reward

with open(os.path.join(os.path.dirname(__file__), "golden_runs.json"), encoding="utf-8") as fh:
    RECORDED = json.load(fh)


def _run(key):
    if key.startswith("linear-pets-s"):
        return fm.run(LinearSystem(), reward_fn=linear_reward, config=GOLDEN,
                      seed=int(key.rsplit("s", 1)[1]))
    if key == "linear-random-s1":
        return fm.run(LinearSystem(), algorithm="random", reward_fn=linear_reward, config=GOLDEN,
                      seed=1)
    assert key == "pendulum-pets-s0"
    config = {**GOLDEN, "algorithm": {"initial_steps": 50, "episodes": 1, "max_episode_steps": 30}}
    return fm.run("Pendulum-v1", config=config, seed=0)


@pytest.mark.parametrize("key", sorted(RECORDED))
def test_run_matches_the_pre_refactor_recording(key):
    assert fingerprint(_run(key)) == RECORDED[key]
