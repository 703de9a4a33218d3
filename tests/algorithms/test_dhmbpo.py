"""DHMBPO's loop (``fastmbrl.algorithms.dhmbpo``) on the tiny linear system: what a run does and
records, and the errors on bad settings. The update itself is tested in
tests/agents/test_double_horizon.py, exact resume in tests/algorithms/test_exact_resume.py."""
import copy

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.config import ConfigError
from fastmbrl.deploy.loading import load_model, open_run
from tests.algorithms.systems import LinearSystem, linear_reward
from tests.algorithms.test_exact_resume import CONFIG

STEPS = 120
CONFIG = {k: v for k, v in CONFIG.items() if k != "mbpo"}     # settings dhmbpo does not read


def _run(config=CONFIG, steps=STEPS, **kwargs):
    return fm.run(LinearSystem(), algorithm="dhmbpo", steps=steps, seed=1,
                  reward_fn=linear_reward, config=config, **kwargs)


def test_a_run_counts_its_updates_rounds_and_refits():
    d = CONFIG["dhmbpo"]
    result = _run()
    assert result.steps.tolist() == [60, 120]
    # the catch-up (one update per random step) at step 60, then one update per step
    assert result.records[-1].updates == d["random_steps"] + (STEPS - d["random_steps"] + 1)
    # at most rounds_kept rounds of rollout_starts x rollout_length states
    rows = result.records[-1].model_rows
    assert 0 < rows <= d["rounds_kept"] * d["rollout_starts"] * d["rollout_length"]
    assert result.critic.members == d["critic_members"]
    assert result.config.dhmbpo.horizon == d["horizon"]
    assert np.all(np.isfinite(result.returns))
    # the critic's values follow the rewards' range: -||x'||^2 over 1 - gamma
    assert result.critic.scalars[4] == 1.0 and result.critic.scalars[0] < 0


def test_the_model_section_is_overridden_by_dhmbpo_model_settings():
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], "model_members": 4, "model_hidden": [16, 16]}
    result = _run(cfg, steps=61)
    assert result.model.ensemble_size == 4 and result.model.num_elites == 4
    assert tuple(result.model.hidden) == (16, 16)


@pytest.mark.parametrize("key,value", [("horizon", 0), ("rollout_length", 0),
                                       ("critic_members", 1), ("critic_dropout", 1.0),
                                       ("random_steps", 1), ("update_every", 0),
                                       ("critic_warmup", -1), ("critic_lower_bound", "none")])
def test_bad_settings_are_refused_with_the_key_named(key, value):
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], key: value}
    with pytest.raises((ConfigError, ValueError), match=f"dhmbpo.{key}"):
        _run(cfg, steps=10)


def test_an_unknown_setting_is_refused():
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], "horizn": 3}
    with pytest.raises(ConfigError, match="dhmbpo.horizn"):
        _run(cfg, steps=10)


def test_a_reward_without_gradient_is_refused_naming_the_missing_function():
    cfg = copy.deepcopy(CONFIG)
    cfg["model"] = {**cfg["model"], "learn_reward": False}
    with pytest.raises(ConfigError, match="reward_grad_fn"):
        _run(cfg, steps=10)


def test_a_run_folder_loads_as_a_controller(tmp_path):
    """fm.load gives the trained actor (and the model) of a dhmbpo run folder."""
    result = _run(steps=61, out_dir=tmp_path / "run")
    agent = fm.load(tmp_path / "run", action_space=(-np.ones(2), np.ones(2)))
    obs = np.array([0.3, -0.2])
    np.testing.assert_array_equal(agent.act(obs, deterministic=True),
                                  result.agent.act(obs, deterministic=True))
    model = load_model(open_run(tmp_path / "run"))
    for a, b in zip(model.arrays(), result.model.arrays()):
        np.testing.assert_array_equal(a, b)


def test_reset_optimizers_zeroes_the_moments_and_step_counts_and_changes_the_run():
    from fastmbrl.algorithms.dhmbpo import reset_optimizers

    # refits at steps 60 and 80: the second one resets optimizers that have taken steps
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], "reset_optimizers": True}
    reset = _run(cfg, steps=90)
    result = _run(steps=90)
    agent, critic = result.agent, result.critic
    assert not np.array_equal(reset.agent.actor, agent.actor)
    assert np.any(agent.actor_m != 0) and np.any(critic.adam_v != 0) and agent.steps[1] > 0
    log_alpha = agent.alpha_state[0]
    reset_optimizers(agent, critic)
    for a in (agent.actor_m, agent.actor_v, agent.alpha_state[1:], critic.adam_m, critic.adam_v):
        assert not np.any(a)
    assert agent.steps[1:].tolist() == [0, 0] and int(critic.rng[2]) == 0
    assert agent.alpha_state[0] == log_alpha            # the temperature itself is kept


def test_model_noise_off_gives_both_rollouts_the_members_means(monkeypatch):
    """dhmbpo.model_noise=false: the distribution rollouts get model_noise=0 and every training
    rollout all-zero model normals (with the policy's normals still drawn); the run differs."""
    import fastmbrl.agents.double_horizon as dh
    from fastmbrl.models import ModelEnv

    seen = {"rollout": [], "update": []}
    rollout = ModelEnv.rollout

    def spy_rollout(self, policy, start_obs, *args, **kwargs):
        if len(start_obs) == CONFIG["dhmbpo"]["rollout_starts"]:   # not check()'s trial rollout
            seen["rollout"].append(kwargs.get("model_noise"))
        return rollout(self, policy, start_obs, *args, **kwargs)

    def spy_taped_rollout(agent, menv, obs, horizon, noise, *args, **kwargs):
        seen["update"].append(noise)            # the draws the update's training rollout uses
        return taped_rollout(agent, menv, obs, horizon, noise, *args, **kwargs)

    taped_rollout = dh.taped_rollout
    monkeypatch.setattr(ModelEnv, "rollout", spy_rollout)
    monkeypatch.setattr(dh, "taped_rollout", spy_taped_rollout)
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], "model_noise": False}
    means = _run(cfg, steps=70)
    assert seen["rollout"] and all(n is not None and np.all(n == 0) for n in seen["rollout"])
    assert seen["update"] and all(not np.any(n.model) for n in seen["update"])
    assert all(np.any(n.act) for n in seen["update"])
    assert seen["update"][0].model.shape[0] == CONFIG["dhmbpo"]["horizon"]

    seen["rollout"].clear(), seen["update"].clear()
    sampled = _run(steps=70)
    assert all(n is None for n in seen["rollout"])
    assert seen["update"] and all(np.any(n.model) for n in seen["update"])
    assert not np.array_equal(means.agent.actor, sampled.agent.actor)


def test_train_metrics_are_one_row_per_evaluation_of_the_training_phase(tmp_path):
    """train_metrics.csv: at each evaluation after the random steps, the means of the segment's
    update metrics and the critic's bounds; the same rows as result.train_metrics."""
    import csv

    from fastmbrl.algorithms.dhmbpo import TRAIN_METRICS

    result = _run(steps=120, out_dir=tmp_path / "run")
    with open(tmp_path / "run" / "train_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TRAIN_METRICS
    # evaluations at 60 (the catch-up's updates) and 120; none in the random phase before 60
    assert [int(r["steps"]) for r in rows] == [60, 120] == result.steps.tolist()
    assert [int(r["updates"]) for r in rows] == [rec.updates for rec in result.records]
    assert [{k: float(v) for k, v in r.items()} for r in rows] == \
        [{k: float(v) for k, v in r.items()} for r in result.train_metrics]
    for r in result.train_metrics:
        assert all(np.isfinite(v) for v in r.values())
        assert r["temperature"] > 0 and r["critic_loss"] >= 0 and r["q_lb"] <= r["q_ub"]
    # the last row's bounds are the critic's at the end of the run
    assert result.train_metrics[-1]["q_ub"] == float(result.critic.scalars[1])


def test_update_every_batches_the_updates():
    """update_every=20 (with refits every 20 steps): the catch-up plus 20 updates at step 60,
    then 20 at steps 80, 100 and 120, none between; interleaved runs make one per step."""
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], "update_every": 20}
    result = _run(cfg)
    assert [r.updates for r in result.records] == [60 + 20, 60 + 20 + 3 * 20]
    assert _run().records[-1].updates == 60 + 61


def test_clear_rounds_empties_the_state_buffer_at_each_refit():
    """clear_rounds: after a refit D_roll holds only the rounds since it (4 rollouts of the 20
    updates at step 120, one every 5), where it otherwise keeps rounds_kept = 10 of them."""
    base = copy.deepcopy(CONFIG)
    base["dhmbpo"] = {**base["dhmbpo"], "update_every": 20, "rounds_kept": 10}
    cleared = copy.deepcopy(base)
    cleared["dhmbpo"]["clear_rounds"] = True
    kept, fresh = _run(base).records[-1].model_rows, _run(cleared).records[-1].model_rows
    round_rows = CONFIG["dhmbpo"]["rollout_starts"] * CONFIG["dhmbpo"]["rollout_length"]
    assert kept == 10 * round_rows and fresh == 4 * round_rows


def test_critic_warmup_trains_the_critic_alone_after_each_refit(monkeypatch):
    """critic_warmup=7: after each refit (60, 80, 100, 120) one distribution rollout, then 7
    critic-only updates before the step's full ones; the runs differ."""
    import fastmbrl.agents.double_horizon as dh

    calls = []
    update = dh.double_horizon_update

    def spy(*args, train_actor=True, **kwargs):
        calls.append(train_actor)
        return update(*args, train_actor=train_actor, **kwargs)

    monkeypatch.setattr(dh, "double_horizon_update", spy)
    cfg = copy.deepcopy(CONFIG)
    cfg["dhmbpo"] = {**cfg["dhmbpo"], "critic_warmup": 7}
    warm = _run(cfg)
    assert calls.count(False) == 4 * 7
    # the warm-up comes first at the first refit, then the catch-up's full updates
    assert calls[:8] == [False] * 7 + [True]
    assert warm.records[-1].updates == 60 + 61      # warm-up updates are not counted as updates
    calls.clear()
    plain = _run()
    assert False not in calls
    assert not np.array_equal(warm.critic.params, plain.critic.params)
