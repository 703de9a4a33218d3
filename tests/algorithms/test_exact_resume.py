"""Exact resume of the step-based algorithms (sac, mbpo, mve, svg, dhmbpo): a run killed at any step, or
right after a checkpoint, and resumed finishes with the records, the buffers, the weights and the
model buffer of the uninterrupted run, bit for bit."""
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.algorithms._common import Callback
from tests.algorithms.systems import LinearSystem, linear_reward
from tests.algorithms.test_mbpo import TINY

STEPS = 240
# evaluations (and checkpoints) every 60 steps; refits every 20 from step 60 on, 3 of them retained;
# rollouts of length 1 -> 3 over the run; the reward is learned (linear_reward has no gradient,
# which svg needs)
CONFIG = {**TINY, "sac": {**TINY["sac"], "updates_per_step": 2},
          "model": {**TINY["model"], "learn_reward": True},
          "mbpo": {**TINY["mbpo"], "updates_per_step": 2, "rollout_schedule": [60, 200, 1, 3]},
          # dhmbpo: refits every 20 steps from step 60, a distribution rollout every 5 updates, 3
          # kept (a kill lands between two of them), a catch-up of 60 updates at step 60
          "dhmbpo": {"random_steps": 60, "model_train_every": 20, "rollout_every": 5,
                     "rollout_starts": 16, "rollout_length": 4, "rounds_kept": 3, "horizon": 2,
                     "hidden": [32, 32], "critic_hidden": [32, 32], "critic_members": 3,
                     "critic_dropout": 0.1}}


class _KillAtStep(Callback):
    """Raises at environment step ``at``: what was done since the last checkpoint is lost."""

    def __init__(self, at):
        self.at = at

    def on_step(self, episode, step, max_steps):
        if step == self.at:
            raise KeyboardInterrupt


class _KillAfterCheckpoint(Callback):
    """Raises right after evaluation ``n`` has been checkpointed."""

    def __init__(self, n):
        self.n = n

    def on_episode_end(self, record):
        if record.episode == self.n:
            raise KeyboardInterrupt


# runs named by "algorithm" or "algorithm:variant" (settings changed from CONFIG)
VARIANTS = {"dhmbpo:normalized+reset": {"dhmbpo": {**CONFIG["dhmbpo"], "normalize_inputs": True,
                                                   "reset_optimizers": True}},
            # the released schedule: batches of 20 updates at each refit, D_roll emptied, the
            # critic trained alone first (a kill can land between two batches)
            "dhmbpo:released": {"dhmbpo": {**CONFIG["dhmbpo"], "update_every": 20,
                                           "clear_rounds": True, "critic_warmup": 5,
                                           "reset_optimizers": True}}}


def _algorithm_and_config(name):
    return name.split(":")[0], {**CONFIG, **VARIANTS.get(name, {})}


def _run(name, **kwargs):
    algorithm, config = _algorithm_and_config(name)
    return fm.run(LinearSystem(), algorithm=algorithm, steps=STEPS, seed=3,
                  reward_fn=linear_reward, config=config, **kwargs)


def _assert_same_run(resumed, full):
    assert resumed.steps.tolist() == full.steps.tolist()
    np.testing.assert_array_equal(resumed.returns, full.returns)
    assert [r.updates for r in resumed.records] == [r.updates for r in full.records]
    assert [r.model_rows for r in resumed.records] == [r.model_rows for r in full.records]
    for name in ("obs", "act", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(resumed.buffer, name), getattr(full.buffer, name),
                                      err_msg=name)
    for key, value in full.agent.state_dict().items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(resumed.agent.state_dict()[key], value, err_msg=key)
    if full.model is not None:
        for a, b in zip(resumed.model.arrays(), full.model.arrays()):
            np.testing.assert_array_equal(a, b)
    assert getattr(resumed, "train_metrics", None) == getattr(full, "train_metrics", None)
    critic_full = getattr(full, "critic", None)
    if critic_full is not None:
        for key, value in critic_full.state_dict().items():
            np.testing.assert_array_equal(resumed.critic.state_dict()[key], value,
                                          err_msg=f"critic {key}")
    mb_full = getattr(full, "model_buffer", None)
    if mb_full is not None:
        mb = resumed.model_buffer
        assert len(mb) == len(mb_full) and mb.dropped == mb_full.dropped
        for name in ("obs", "act", "reward", "next_obs", "terminated"):
            np.testing.assert_array_equal(getattr(mb.buffer, name), getattr(mb_full.buffer, name),
                                          err_msg=f"model buffer {name}")


@pytest.fixture(scope="module")
def uninterrupted():
    return {}


@pytest.mark.parametrize("algorithm", ["sac", "mbpo", "mve", "svg", "dhmbpo",
                                       "dhmbpo:normalized+reset", "dhmbpo:released"])
def test_killed_at_random_steps_and_after_checkpoints_resumes_exactly(algorithm, tmp_path,
                                                                      uninterrupted):
    if algorithm not in uninterrupted:
        uninterrupted[algorithm] = _run(algorithm)
    full = uninterrupted[algorithm]
    rng = np.random.default_rng(sum(map(ord, algorithm)))
    # a kill right after the checkpoint of step 120, then two at random later steps (each resume
    # starts from the last checkpoint before its kill, so every kill is reached)
    kills = [_KillAfterCheckpoint(2)]
    kills += [_KillAtStep(int(at)) for at in np.sort(rng.choice(np.arange(121, STEPS), 2, False))]
    out = tmp_path / algorithm.replace(":", "_")
    for kill in kills:
        with pytest.raises(KeyboardInterrupt):
            _run(algorithm, out_dir=out, resume=out.exists(), callbacks=[kill])
    resumed = fm.run(LinearSystem(), reward_fn=linear_reward, out_dir=out, resume=True)
    _assert_same_run(resumed, full)
