"""The SAC loop (fastmbrl.run, algorithm "sac"): results rows, exact resume after a kill,
truncation vs termination, bad settings refused before anything is written, Pendulum learning."""
import csv
import json
import os

import gymnasium as gym
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.algorithms._common import STEP_RESULTS_FIELDS, Callback
from fastmbrl.config import ConfigError
from tests.algorithms.systems import LinearSystem, linear_reward

TINY_SAC = {"sac": {"hidden": [16, 16], "batch_size": 32, "learning_starts": 50,
                    "eval_every": 100, "eval_episodes": 2, "updates_per_step": 1}}


def run_tiny(steps=300, **kwargs):
    kwargs.setdefault("config", TINY_SAC)
    kwargs.setdefault("seed", 0)
    return fm.run(LinearSystem(), algorithm="sac", steps=steps, reward_fn=linear_reward, **kwargs)


class EscapeSystem(LinearSystem):
    """The linear system, terminated when the point leaves the disc of radius 1.2."""

    def step(self, action):
        obs, r, _, trunc, info = super().step(action)
        return obs, r, bool(obs @ obs > 1.44), trunc, info


def test_results_rows_and_columns(tmp_path):
    result = run_tiny(steps=250, out_dir=tmp_path)
    # evaluations every 100 steps and at the end of the budget
    assert result.steps.tolist() == [100, 200, 250]
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == STEP_RESULTS_FIELDS
    assert [int(r["steps"]) for r in rows] == [100, 200, 250]
    # updates start after the 50 random steps, one per step
    assert [int(r["updates"]) for r in rows] == [50, 150, 200]
    assert [int(r["evaluation"]) for r in rows] == [1, 2, 3]
    for r in rows:
        assert int(r["length"]) == 20
        assert float(r["return_std"]) >= 0.0
        assert float(r["update_time"]) > 0.0 and float(r["updates_per_s"]) > 0.0
        assert float(r["env_time"]) > 0.0 and float(r["eval_time"]) > 0.0
    wall = [float(r["wall_time"]) for r in rows]
    assert wall == sorted(wall)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["algorithm"] == "sac" and data["summary"]["updates"] == 200
    assert len(result.buffer) == 250
    assert (tmp_path / "learning_curve.png").exists()


def test_same_seed_same_results_other_seed_differs():
    a, b, c = run_tiny(steps=150), run_tiny(steps=150), run_tiny(steps=150, seed=1)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.buffer.obs, b.buffer.obs)
    assert not np.array_equal(a.buffer.obs, c.buffer.obs)


class _Kill(Callback):
    """Raises at a given step (a kill mid-segment: the progress since the checkpoint is lost)."""

    def __init__(self, at):
        self.at = at

    def on_step(self, episode, step, max_steps):
        if step == self.at:
            raise KeyboardInterrupt


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    full = run_tiny(steps=330)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        # evaluations (and checkpoints) every 110 steps: the one after step 220 is taken in the
        # middle of an episode (step 0 of 20 would be a boundary), so resuming replays it; the
        # kill at step 257 loses 37 steps of progress
        run_tiny(steps=330, config={**TINY_SAC, "sac": {**TINY_SAC["sac"], "eval_every": 110}},
                 out_dir=out, callbacks=[_Kill(257)])
    resumed = fm.run(LinearSystem(), reward_fn=linear_reward, out_dir=out, resume=True)
    full110 = run_tiny(steps=330, config={**TINY_SAC, "sac": {**TINY_SAC["sac"],
                                                               "eval_every": 110}})
    assert resumed.steps.tolist() == [110, 220, 330]
    np.testing.assert_array_equal(resumed.returns, full110.returns)
    np.testing.assert_array_equal(resumed.buffer.obs, full110.buffer.obs)
    np.testing.assert_array_equal(resumed.buffer.act, full110.buffer.act)
    for k, v in full110.agent.state_dict().items():
        if k != "config":
            np.testing.assert_array_equal(resumed.agent.state_dict()[k], v, err_msg=k)
    # the eval schedule matters: the run with eval_every 100 evaluates elsewhere
    assert full.steps.tolist() == [100, 200, 300, 330]


def test_stop_by_callback_then_extend(tmp_path):
    uninterrupted = run_tiny(steps=300)
    first = run_tiny(steps=300, out_dir=tmp_path, callbacks=[lambda rec: rec.steps == 100])
    assert first.stopped_early and first.steps.tolist() == [100]
    rest = fm.run(LinearSystem(), reward_fn=linear_reward, out_dir=tmp_path, resume=True)
    assert rest.steps.tolist() == [100, 200, 300]
    np.testing.assert_array_equal(rest.returns, uninterrupted.returns)
    assert [r.updates for r in rest.records] == [r.updates for r in uninterrupted.records]


def test_truncation_and_termination_flags():
    env = EscapeSystem()
    result = fm.run(env, algorithm="sac", steps=400, seed=2, reward_fn=linear_reward,
                    config={**TINY_SAC, "algorithm": {"max_episode_steps": 15}})
    buf = result.buffer
    term, trunc = buf.terminated, buf.truncated
    outside = np.sum(buf.next_obs ** 2, axis=1) > 1.44
    np.testing.assert_array_equal(term, outside)
    assert term.any() and trunc.any()
    # episodes: each ends on a terminated or truncated row (both at once when the point leaves
    # the disc on step 15), truncation exactly at 15 steps and never before
    ends = np.flatnonzero(term | trunc)
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert np.all(lengths[trunc[ends]] == 15)
    assert np.all(lengths[term[ends]] <= 15) and np.any(lengths[term[ends]] < 15)
    # inside an episode the next row starts where the last ended; after an end, a reset
    inside = np.setdiff1d(np.arange(len(buf) - 1), ends)
    np.testing.assert_array_equal(buf.obs[inside + 1], buf.next_obs[inside])
    assert np.all(np.any(buf.obs[ends[:-1] + 1] != buf.next_obs[ends[:-1]], axis=1))


@pytest.mark.parametrize("config, match", [
    ({"sac": {"lr": -1.0}}, "sac.lr"),
    ({"sac": {"hidden": []}}, "hidden"),
    ({"sac": {"eval_every": 0}}, "sac.eval_every"),
    ({"sac": {"learning_starts": 10, "buffer_capacity": 5}}, "sac.buffer_capacity"),
    ({"sac": {"nope": 1}}, "sac.nope"),
])
def test_bad_config_refused_before_writing(tmp_path, config, match):
    out = tmp_path / "never"
    with pytest.raises((ConfigError, ValueError), match=match):
        fm.run(LinearSystem(), algorithm="sac", steps=100, reward_fn=linear_reward,
               config=config, out_dir=out)
    assert not out.exists()


def test_zero_steps_refused(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        run_tiny(steps=0, out_dir=tmp_path / "never")
    assert not os.path.exists(tmp_path / "never")


def test_cli_runs_sac(tmp_path, capsys):
    from fastmbrl.cli import main

    out = tmp_path / "cli"
    code = main(["run", "Pendulum-v1", "--algorithm", "sac", "--steps", "120", "--quiet",
                 "--out", str(out), "--set", "sac.hidden=[8]", "--set", "sac.eval_every=60",
                 "--set", "sac.eval_episodes=1", "--set", "sac.batch_size=16",
                 "--set", "sac.learning_starts=50"])
    assert code == 0
    with open(out / "results.csv") as fh:
        assert [int(r["steps"]) for r in csv.DictReader(fh)] == [60, 120]
    assert "sac" in capsys.readouterr().out


@pytest.mark.slow
def test_pendulum_learns_within_5k_steps():
    result = fm.run("Pendulum-v1", algorithm="sac", steps=5000, seed=0,
                    config={"sac": {"eval_every": 1000, "eval_episodes": 5}})
    assert result.returns.max() >= -400, result.returns
