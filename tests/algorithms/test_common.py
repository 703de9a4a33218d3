"""What every loop shares (fastmbrl.algorithms._common, the registry, checkpoints with agent state)
and the loops that could not end ."""
import json
import logging
import os
import textwrap

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl import _checkpoint, algorithms
from fastmbrl._config import DEFAULT_MAX_EPISODE_STEPS
from fastmbrl._io import atomic_write_text, remove_stale_temporaries
from fastmbrl.agents.base import has_state
from fastmbrl.algorithms._common import STREAM_EVAL_ENV, Callback, derive_seed, evaluate
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.config import ConfigError
from tests.algorithms.systems import LinearSystem, linear_reward


class CountingAgent:
    """A toy learning agent with state: a generator, a weight vector that moves after every
    episode, a counter and a nested section."""

    def __init__(self, act_dim=2, seed=0):
        self.rng = np.random.default_rng(seed)
        self.w = np.zeros(act_dim)
        self.episodes = 0
        self.scale = np.float32(0.5)

    def act(self, obs):
        return np.clip(self.w + self.scale * self.rng.standard_normal(self.w.shape), -1,
                       1).astype(np.float32)

    def reset(self):
        pass

    def learn(self, ret):
        self.w = 0.9 * self.w + 0.01 * ret * self.rng.standard_normal(self.w.shape)
        self.episodes += 1

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "w": self.w.copy(),
                "episodes": self.episodes, "nested": {"scale": np.array(self.scale)}}

    def load_state_dict(self, state):
        w = np.asarray(state["w"], dtype=np.float64)
        if w.shape != self.w.shape:
            raise ValueError(f"state['w']: expected shape {self.w.shape}, got {w.shape}")
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        self.rng, self.w, self.episodes = rng, w.copy(), int(state["episodes"])
        self.scale = np.float32(state["nested"]["scale"])


# A step-based algorithm written as a plug-in module, to check that one module is all it takes
# and that a stateful agent resumes exactly.
TOY_MODULE = textwrap.dedent('''
    """Toy step-based algorithm (tests only)."""
    import numpy as np
    from fastmbrl.algorithms._common import (STREAM_AGENT, STREAM_ENV, RunResult, collect_episode,
                                             collect_initial_data, derive_seed, load_run_checkpoint,
                                             save_run_checkpoint)
    from fastmbrl.buffer import ReplayBuffer
    from tests.algorithms.test_common import CountingAgent

    BUDGET = "steps"


    def check(ctx):
        if ctx.config.algorithm.steps is None:
            raise ValueError("steps: toy needs a step budget")


    def run(ctx):
        cfg, env = ctx.config, ctx.env
        agent = CountingAgent(env.act_dim, derive_seed(cfg.seed, STREAM_AGENT, 0))
        restored = load_run_checkpoint(ctx, agent=agent)
        if restored is None:
            buffer = ReplayBuffer(cfg.algorithm.buffer_capacity, env.obs_dim, env.act_dim)
            initial, records, done = collect_initial_data(ctx, buffer), [], 0
            save_run_checkpoint(ctx, 0, buffer, None, records, initial, agent=agent)
        else:
            done, buffer, _, records, initial, _ = restored
        steps = records[-1].steps if records else initial[-1].steps
        budget = cfg.algorithm.initial_steps + cfg.algorithm.steps
        while steps < budget:
            done += 1
            rec, stop = collect_episode(env.env, agent.act, buffer,
                                        derive_seed(cfg.seed, STREAM_ENV, done),
                                        ctx.max_episode_steps, ctx.on_step_hook(done))
            agent.learn(rec.ret)
            steps += rec.length
            rec.episode, rec.steps = done, steps
            records.append(rec)
            save_run_checkpoint(ctx, done, buffer, None, records, initial, agent=agent)
        return RunResult(config=cfg, records=records, initial_records=initial, model=None,
                         agent=agent, buffer=buffer)
''')


@pytest.fixture
def toy_algorithm(tmp_path, monkeypatch):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "toy.py").write_text(TOY_MODULE)
    monkeypatch.setattr(algorithms, "__path__", list(algorithms.__path__) + [str(plugin_dir)])
    yield "toy"
    import sys
    sys.modules.pop("fastmbrl.algorithms.toy", None)


def test_registry_lists_modules_and_names_unknown_ones():
    assert {"pets", "random"} <= set(algorithms.available())
    assert "_common" not in algorithms.available()
    assert algorithms.get("pets").BUDGET == "episodes"
    with pytest.raises(ValueError, match="algorithm: expected one of .*pets.*got 'nosuch'"):
        algorithms.get("nosuch")
    assert fm.run is algorithms.run


def test_a_plug_in_module_is_an_algorithm(toy_algorithm):
    assert "toy" in algorithms.available()
    result = fm.run(LinearSystem(), algorithm="toy", steps=50, reward_fn=linear_reward,
                    config={"algorithm": {"initial_steps": 20}})
    assert result.config.algorithm.name == "toy"
    assert result.steps.tolist() == [40, 60, 80]
    assert len(result.buffer) == 80 and result.agent.episodes == 3
    with pytest.raises(ValueError, match="steps: toy needs"):
        fm.run(LinearSystem(), algorithm="toy", reward_fn=linear_reward)


class _Kill(Exception):
    pass


class _KillAt(Callback):
    def __init__(self, episode, step):
        self.episode, self.step = episode, step

    def on_step(self, episode, step, max_steps):
        if (episode, step) == (self.episode, self.step):
            raise _Kill()


def test_stateful_agent_resumes_exactly(toy_algorithm, tmp_path):
    kw = dict(algorithm="toy", steps=80, reward_fn=linear_reward, seed=4,
              config={"algorithm": {"initial_steps": 20}})
    full = fm.run(LinearSystem(), out_dir=tmp_path / "full", **kw)
    with pytest.raises(_Kill):
        fm.run(LinearSystem(), out_dir=tmp_path / "killed", callbacks=[_KillAt(3, 5)], **kw)
    resumed = fm.run(LinearSystem(), out_dir=tmp_path / "killed", resume=True,
                     reward_fn=linear_reward)
    assert resumed.config.algorithm.name == "toy"
    for name in ("obs", "act", "reward", "next_obs"):
        np.testing.assert_array_equal(getattr(resumed.buffer, name), getattr(full.buffer, name))
    np.testing.assert_array_equal(resumed.agent.w, full.agent.w)
    assert resumed.agent.rng.bit_generator.state == full.agent.rng.bit_generator.state
    np.testing.assert_array_equal(resumed.returns, full.returns)


def test_agent_state_round_trips_through_a_checkpoint(tmp_path):
    agent = CountingAgent(seed=1)
    for r in (-3.0, -1.0):
        agent.act(None)
        agent.learn(r)
    assert has_state(agent) and not has_state(fm.agents.RandomAgent(([-1.0], [1.0])))
    buf = ReplayBuffer(10, 2, 2)
    _checkpoint.save_checkpoint(tmp_path, 2, buf, None, {"records": []}, agent=agent)
    fresh = CountingAgent(seed=99)
    episode, _, model, state = _checkpoint.load_checkpoint(tmp_path, agent=fresh)
    assert episode == 2 and model is None
    assert state["agent"]["nested"]["scale"].dtype == np.float32
    np.testing.assert_array_equal(fresh.w, agent.w)
    assert fresh.episodes == 2 and fresh.scale == agent.scale
    np.testing.assert_array_equal(fresh.act(None), agent.act(None))   # same generator state
    # A checkpoint without agent state cannot restore an agent.
    _checkpoint.save_checkpoint(tmp_path / "b", 0, buf, None, {"records": []})
    with pytest.raises(ValueError, match="no agent state"):
        _checkpoint.load_checkpoint(tmp_path / "b", agent=CountingAgent())


@pytest.mark.parametrize("state, message", [
    ({"a/b": 1}, "without '/'"),
    ({"x": object()}, "neither an array nor JSON"),
    ({"x": np.array([None], dtype=object)}, "object array"),
    ([1, 2], "expected a dict"),
])
def test_bad_agent_state_is_refused(tmp_path, state, message):
    class Bad:
        def state_dict(self):
            return state

    with pytest.raises((TypeError, ValueError), match=message):
        _checkpoint.save_checkpoint(tmp_path, 0, ReplayBuffer(4, 2, 2), None, {}, agent=Bad())


def test_evaluate_uses_its_own_environment():
    env = LinearSystem()
    mean, records = evaluate(lambda obs: np.zeros(2, np.float32), env, 3, seed=0)
    # Zero action: the state stays at its start x0, so the return is 20 * -||x0||^2, with x0 from
    # the evaluation stream's seed of each episode.
    expected = []
    for k in range(3):
        x0, _ = LinearSystem().reset(seed=derive_seed(0, STREAM_EVAL_ENV, k))
        expected.append(-20 * float(x0 @ x0))
    assert [r.length for r in records] == [20, 20, 20]
    np.testing.assert_allclose([r.ret for r in records], expected, rtol=1e-12)
    assert mean == pytest.approx(np.mean(expected), rel=1e-12)
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(lambda obs: np.zeros(2), env, 0, seed=0)


# ---- loops that cannot end ----------------------------------------------------
def test_buffer_smaller_than_initial_data_is_refused_before_writing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="algorithm.buffer_capacity: expected at least "
                                          "algorithm.initial_steps \\(200\\)"):
        fm.run(LinearSystem(), reward_fn=linear_reward, out_dir=out,
               config={"algorithm": {"buffer_capacity": 100, "initial_steps": 200}})
    assert not out.exists()


def test_episodes_without_time_limit_are_bounded(caplog):
    env = LinearSystem(episode_steps=None)
    with caplog.at_level(logging.WARNING, logger="fastmbrl.algorithms"):
        result = fm.run(env, algorithm="random", reward_fn=linear_reward, episodes=1,
                        config={"algorithm": {"initial_steps": 30}})
    assert result.lengths.tolist() == [DEFAULT_MAX_EPISODE_STEPS]
    assert result.records[0].ret < 0 and result.initial_records[0].length == 30
    assert any("no time limit" in r.getMessage() and str(DEFAULT_MAX_EPISODE_STEPS) in
               r.getMessage() for r in caplog.records)
    # An explicit cap wins, without a warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastmbrl.algorithms"):
        result = fm.run(env, algorithm="random", reward_fn=linear_reward, episodes=1,
                        config={"algorithm": {"initial_steps": 30, "max_episode_steps": 7}})
    assert result.lengths.tolist() == [7] and not caplog.records


def test_pets_episodes_without_time_limit_are_bounded(monkeypatch):
    import fastmbrl._config as constants
    import fastmbrl.algorithms._context as context
    monkeypatch.setattr(context, "DEFAULT_MAX_EPISODE_STEPS", 12)
    assert constants.DEFAULT_MAX_EPISODE_STEPS == 1000
    from tests.algorithms.systems import GOLDEN
    result = fm.run(LinearSystem(episode_steps=None), reward_fn=linear_reward, config=GOLDEN,
                    episodes=1)
    assert result.lengths.tolist() == [12]


# ---- atomic writes: stale temporaries ---------------------------------------------------------
def _dead_pid():
    pid = 2 ** 22 - 7
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / f"results.json.tmp{_dead_pid()}"
    dead.write_text("{partial")
    alive = tmp_path / f"results.json.tmp{os.getpid()}x"       # not a temporary name
    alive.write_text("keep")
    mine = tmp_path / f"other.json.tmp{os.getppid()}"          # a live process's temporary
    mine.write_text("keep")
    atomic_write_text(tmp_path / "results.json", json.dumps({"ok": 1}))
    assert not dead.exists() and alive.exists() and mine.exists()
    dead2 = tmp_path / f"model.npz.tmp{_dead_pid()}"
    dead2.write_bytes(b"PK")
    assert remove_stale_temporaries(tmp_path) == [str(dead2)]
    assert json.loads((tmp_path / "results.json").read_text()) == {"ok": 1}
