"""MBPO (fastmbrl.run, algorithm "mbpo"): the rollout-length schedule, the model buffer's FIFO
retention, the real/model mixing ratio (kernel vs twin), termination handling in the loop, a linear
system where MBPO beats SAC alone, resume, bad settings, and a slow Pendulum run."""
import copy

import numpy as np
import pytest
from numba import njit

import fastmbrl as fm
from fastmbrl.agents import SAC, sac_reference
from fastmbrl.algorithms.mbpo import ModelBuffer, rollout_length
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.config import ConfigError
from fastmbrl.models.model_env import RolloutBatch
from tests.algorithms.systems import LinearSystem, linear_reward

TINY = {"sac": {"hidden": [32, 32], "batch_size": 64, "learning_starts": 60, "eval_every": 60,
                "eval_episodes": 5, "updates_per_step": 1, "lr": 1e-3},
        "model": {"hidden": [32, 32], "ensemble_size": 3, "num_elites": 3, "max_epochs": 50,
                  "patience": 10, "batch_size": 32, "weight_decay": 0.0},
        "mbpo": {"model_train_every": 20, "rollouts_per_step": 20, "rollout_schedule": [1, 1, 3, 3],
                 "real_ratio": 0.1, "updates_per_step": 10, "model_retain": 3},
        "algorithm": {"max_episode_steps": 20}}


def run_tiny(algorithm="mbpo", steps=240, config=None, **kwargs):
    kwargs.setdefault("seed", 0)
    return fm.run(LinearSystem(), algorithm=algorithm, steps=steps, reward_fn=linear_reward,
                  config=TINY if config is None else config, **kwargs)


@njit(cache=True)
def _outside(obs, act, next_obs):
    out = np.empty(obs.shape[0], dtype=np.bool_)
    for i in range(obs.shape[0]):
        out[i] = next_obs[i, 0] ** 2 + next_obs[i, 1] ** 2 > 1.44
    return out


class EscapeSystem(LinearSystem):
    """The linear system, terminated when the point leaves the disc of radius 1.2."""

    def step(self, action):
        obs, r, _, trunc, info = super().step(action)
        return obs, r, bool(obs @ obs > 1.44), trunc, info


# ------------------------------------------------------------------------------- schedule
def test_rollout_length_schedule():
    sched = (20, 100, 1, 15)
    assert [rollout_length(sched, t) for t in (0, 20, 21, 60, 99, 100, 500)] == \
        [1, 1, 1, 8, 14, 15, 15]
    # decreasing schedules and constant ones
    assert [rollout_length((10, 20, 5, 1), t) for t in (5, 15, 25)] == [5, 3, 1]
    assert rollout_length((1, 1, 4, 4), 1000) == 4


def test_schedule_applies_in_the_loop():
    cfg = copy.deepcopy(TINY)
    cfg["mbpo"]["rollout_schedule"] = [60, 100, 1, 3]
    cfg["mbpo"]["model_retain"] = 1
    cfg["algorithm"]["max_episode_steps"] = 1000      # no termination, no truncation in rollouts
    # refits at steps 60, 80, 100: lengths 1, 2, 3 -> 400 start states x length rows
    for steps, rows in ((60, 400), (80, 800), (100, 1200)):
        cfg["sac"]["eval_every"] = steps
        result = run_tiny(steps=steps, config=cfg)
        assert len(result.model_buffer) == rows
        assert result.records[-1].model_rows == rows


# --------------------------------------------------------------------------- model buffer
def _batch(n, value, terminated=False):
    return RolloutBatch(np.full((n, 2), value, np.float32), np.zeros((n, 1), np.float32),
                        np.full(n, value, np.float32), np.full((n, 2), value, np.float32),
                        np.full(n, terminated), np.array([n]))


def test_model_buffer_keeps_the_last_refits_fifo():
    mb = ModelBuffer(2, 2, 1, np.float32)
    mb.add_refit(_batch(5, 1.0))
    mb.add_refit(_batch(3, 2.0, terminated=True))
    assert len(mb) == 8 and sorted(set(mb.buffer.reward.tolist())) == [1.0, 2.0]
    mb.add_refit(_batch(4, 3.0))
    assert len(mb) == 7 and sorted(set(mb.buffer.reward.tolist())) == [2.0, 3.0]
    np.testing.assert_array_equal(mb.buffer.terminated, [True] * 3 + [False] * 4)
    mb.add_refit(_batch(2, 4.0))
    assert sorted(set(mb.buffer.reward.tolist())) == [3.0, 4.0]


def test_model_buffer_drops_non_finite_rows():
    mb = ModelBuffer(1, 2, 1, np.float32)
    b = _batch(4, 1.0)
    b.next_obs[1, 0] = np.inf
    b.reward[2] = np.nan
    mb.add_refit(b)
    assert len(mb) == 2 and mb.dropped == 2


# ----------------------------------------------------------------------------- mixing
def _buffers(seed=0):
    rng = np.random.default_rng(seed)
    real, model = ReplayBuffer(40, 3, 2, np.float64), ReplayBuffer(70, 3, 2, np.float64)
    for buf, n, sign in ((real, 40, 1.0), (model, 70, -1.0)):
        obs = sign * (1.0 + rng.random((n, 3)))            # real rows positive, model rows negative
        buf.add_batch(obs, rng.uniform(-1, 1, (n, 2)), rng.normal(size=n),
                      rng.normal(size=(n, 3)), rng.random(n) < 0.2, np.zeros(n, bool))
    return real, model


def _agent(**kw):
    return SAC(3, 2, (np.array([-1.0, -1.0]), np.array([1.0, 1.0])), hidden=(8, 8),
               batch_size=20, dtype=np.float64, seed=4, **kw)


@pytest.mark.parametrize("real_ratio, n_real", [(0.05, 1), (0.25, 5), (0.5, 10), (0.0, 0)])
def test_mixing_ratio(monkeypatch, real_ratio, n_real):
    real, model = _buffers()
    seen = []
    original = sac_reference._sac_update

    def spy(*args):
        seen.append(args[15].copy())          # the minibatch's obs
        return original(*args)

    monkeypatch.setattr(sac_reference, "_sac_update", spy)
    from fastmbrl.agents import sac as sac_module
    monkeypatch.setattr(sac_module, "_km", sac_reference)
    _agent().update_from(real, 3, model_buffer=model, real_ratio=real_ratio)
    assert len(seen) == 3
    for obs in seen:
        assert obs.shape == (20, 3)
        assert np.all(obs[:n_real] > 0) and np.all(obs[n_real:] < 0)
    # the minibatch rows are rows of the buffers
    assert all(any(np.array_equal(o, r) for r in real.obs) for o in seen[0][:n_real])
    assert all(any(np.array_equal(o, r) for r in model.obs) for o in seen[0][n_real:])


def test_mixed_kernel_matches_twin(monkeypatch):
    real, model = _buffers(1)
    a, b = _agent(), _agent()
    ma = a.update_from(real, 5, model_buffer=model, real_ratio=0.3)
    from fastmbrl.agents import sac as sac_module
    monkeypatch.setattr(sac_module, "_km", sac_reference)
    mb = b.update_from(real, 5, model_buffer=model, real_ratio=0.3)
    for k in ma:
        np.testing.assert_allclose(ma[k], mb[k], rtol=1e-9, atol=1e-12, err_msg=k)
    for k, v in a.state_dict().items():
        if k != "config":
            np.testing.assert_allclose(v, b.state_dict()[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_real_only_paths_are_plain_update_from():
    real, model = _buffers(2)
    a, b, c = _agent(), _agent(), _agent()
    a.update_from(real, 4)
    b.update_from(real, 4, model_buffer=model, real_ratio=1.0)
    c.update_from(real, 4, model_buffer=ReplayBuffer(5, 3, 2, np.float64), real_ratio=0.1)
    for k in ("actor", "critic", "rng_state"):
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
        np.testing.assert_array_equal(a.state_dict()[k], c.state_dict()[k])
    with pytest.raises(ValueError, match="real_ratio"):
        a.update_from(real, 1, model_buffer=model, real_ratio=1.5)


# ------------------------------------------------------------------------- the loop
def test_termination_in_model_rollouts():
    cfg = copy.deepcopy(TINY)
    result = fm.run(EscapeSystem(), algorithm="mbpo", steps=120, seed=1, reward_fn=linear_reward,
                    termination_fn=_outside, config=cfg)
    mb = result.model_buffer.buffer
    outside = np.sum(mb.next_obs ** 2, axis=1) > 1.44
    np.testing.assert_array_equal(mb.terminated, outside)
    assert mb.terminated.any()
    # nothing starts outside: terminated rows never continue (start states are real, inside)
    assert np.all(np.sum(mb.obs ** 2, axis=1) <= 1.44 + 1e-6)
    # rewards are the reward function's of the stored transitions
    np.testing.assert_allclose(mb.reward, -np.sum(mb.next_obs ** 2, axis=1), rtol=1e-5)


def test_mbpo_with_an_exact_model_learns_faster_than_sac():
    """x' = x + 0.2 a is learned (nearly) exactly from the 60 random steps; MBPO trains its
    actor-critic at 10 updates per step on model data, SAC alone at its standard 1."""
    for seed in (0, 1):
        mbpo = run_tiny(seed=seed)
        sac = run_tiny("sac", seed=seed)
        assert mbpo.steps.tolist() == sac.steps.tolist() == [60, 120, 180, 240]
        # the model is exact to ~1e-3 on the visited states
        buf = mbpo.buffer
        mean, _ = mbpo.model.predict(buf.obs, buf.act)
        assert np.max(np.abs(mean.mean(axis=0) - buf.next_obs)) < 0.05
        # after 120 learning steps: near the optimum (about -1), SAC still far from it
        assert mbpo.returns[2] > -2.0 and sac.returns[2] < -5.0, (mbpo.returns, sac.returns)
        assert np.all(mbpo.returns[1:] > sac.returns[1:])


def test_results_and_time_split(tmp_path):
    result = run_tiny(steps=120, out_dir=tmp_path)
    rec = result.records[-1]
    assert rec.fit_time > 0 and rec.rollout_time > 0 and rec.update_time > 0 and rec.env_time > 0
    assert rec.fit_epochs > 0 and np.isfinite(rec.holdout_mse)
    # refits at 60, 80, 100, 120 (retain 3: the last three), 400 rows of length 3 each
    assert rec.model_rows == 3 * 400 * 3
    assert result.records[-1].updates == 10 * (120 - 60 + 1)


def test_resume_rebuilds_the_model_buffer_exactly(tmp_path):
    first = run_tiny(steps=240, out_dir=tmp_path, callbacks=[lambda rec: rec.steps == 120])
    assert first.stopped_early
    kept = first.buffer.obs.copy()
    sources = [src.rows for src in first.model_buffer.sources]
    rest = fm.run(LinearSystem(), reward_fn=linear_reward, out_dir=tmp_path, resume=True)
    full = run_tiny(steps=240)
    assert rest.steps.tolist() == [60, 120, 180, 240]
    np.testing.assert_array_equal(rest.returns[:2], first.returns)
    np.testing.assert_array_equal(rest.returns, full.returns)
    np.testing.assert_array_equal(rest.buffer.obs[:120], kept)
    np.testing.assert_array_equal(rest.model_buffer.buffer.obs, full.model_buffer.buffer.obs)
    # the retained refits at the stop: steps 80, 100 and 120 (their start states' rows)
    assert sources == [80, 100, 120]
    assert len(rest.buffer) == 240 and rest.returns[-1] > -2.0


def test_resume_of_a_checkpoint_without_model_buffer_sources_warns(tmp_path, caplog):
    run_tiny(steps=240, out_dir=tmp_path, callbacks=[lambda rec: rec.steps == 120])
    ckpt = tmp_path / "checkpoints" / "ep0002"
    (ckpt / "algo.json").unlink()          # as written by a fastmbrl before model-buffer sources
    (ckpt / "algo.npz").unlink()
    rest = fm.run(LinearSystem(), reward_fn=linear_reward, out_dir=tmp_path, resume=True)
    assert rest.steps.tolist() == [60, 120, 180, 240]
    assert "no longer bit-identical" in caplog.text


@pytest.mark.parametrize("config, match", [
    ({"mbpo": {"real_ratio": 1.5}}, "mbpo.real_ratio"),
    ({"mbpo": {"rollout_schedule": [50, 10, 1, 5]}}, "mbpo.rollout_schedule"),
    ({"mbpo": {"model_train_every": 0}}, "mbpo.model_train_every"),
    ({"model": {"num_elites": 9}}, "model.num_elites"),
    ({"sac": {"learning_starts": 1}}, "learning_starts"),
])
def test_bad_config_refused_before_writing(tmp_path, config, match):
    out = tmp_path / "never"
    with pytest.raises((ConfigError, ValueError), match=match):
        fm.run(LinearSystem(), algorithm="mbpo", steps=100, reward_fn=linear_reward,
               config=config, out_dir=out)
    assert not out.exists()


@pytest.mark.slow
def test_pendulum_beats_random():
    result = fm.run("Pendulum-v1", algorithm="mbpo", steps=3000, seed=1,
                    config={"sac": {"eval_every": 1000, "eval_episodes": 5}})
    # uniformly random actions score about -1200 on Pendulum-v1; the defaults reach about -200
    # by 3k steps (how soon depends on the seed and even on the BLAS kernel's rounding). Measured
    # (seed 1, OpenBLAS on the shared 2-core machine): -995 / -122 / -121 at 1k / 2k / 3k steps,
    # the last with an evaluation spread of 1.7; -400 leaves room for another rounding's curve
    assert result.returns[-1] > -400, result.returns
