"""Two checks of a dhmbpo run folder against its environment, from states of its own buffer.

    python benchmarks/dhmbpo_diagnostics.py RUN_DIR [RUN_DIR ...] [--states 64] [--seed 0]

1. Falls: the fraction of rollouts still alive after 1, 2, 5, 10, 15 and 20 steps of the run's
   (stochastic) policy, through the run's model (its Gaussian sampled, and each member's mean) and
   through the environment, from the same start states; with the mean reward per step. This tests
   the model where the distribution rollouts use it.
2. Values: the critic ensemble's mean Q(s, a) against the discounted return the policy then
   gets in the environment from s (up to ``--horizon`` steps, discount of the run; the entropy
   bonus is left out, which makes the soft Q a little lower, not higher). A ratio above 1 means the
   critic expects more than the environment gives.

Start states are drawn from the last 5000 transitions of the buffer of the run's last checkpoint.
The environment is put in a start state with ``set_state(obs[:nq], obs[nq:])``, which needs
observations that are exactly MuJoCo's positions and velocities (the suite's Hopper-v5,
Walker2d-v5 and HalfCheetah-v5 specs, which observe the torso's x); other environments are refused.
Velocities the observation clips (Hopper's at +-10) start clipped.
"""
import argparse
import glob
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fastmbrl as fm  # noqa: E402
from fastmbrl.algorithms.dhmbpo import make_critic  # noqa: E402
from fastmbrl.deploy.loading import load_model, open_run  # noqa: E402
from fastmbrl.models import ModelEnv  # noqa: E402

STEPS_SHOWN = (1, 2, 5, 10, 15, 20)
CRITIC_STATE = ("params", "target", "adam_m", "adam_v", "scalars", "rng")   # algo.npz a0..a5


def last_checkpoint(run_dir):
    found = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "*")))
    if not found:
        raise SystemExit(f"run_dir: no checkpoint in {run_dir}")
    return found[-1]


def start_states(checkpoint, n, rng):
    obs = np.load(os.path.join(checkpoint, "buffer.npz"))["obs"]
    recent = obs[max(0, len(obs) - 5000):]
    return recent[rng.integers(0, len(recent), n)].astype(np.float64)


def put_in_state(env, obs, seed):
    env.reset(seed=seed)
    u = env.unwrapped
    nq = u.model.nq
    u.set_state(obs[:nq], obs[nq:])


def env_survival(env, policy, starts, steps):
    alive, rewards = np.zeros(steps), []
    for i, s in enumerate(starts):
        put_in_state(env, s, i)
        o = s
        for t in range(steps):
            o, r, terminated, _, _ = env.step(policy.act(o))
            rewards.append(r)
            if terminated:
                break
            alive[t] += 1
    return alive / len(starts), float(np.mean(rewards))


def model_survival(menv, policy, starts, steps, sampled, rng):
    kwargs = {} if sampled else {"model_noise": 0}
    batch = menv.rollout(policy, starts, steps, rng, **kwargs)
    ends = np.cumsum(batch.counts)
    fell = [int(batch.terminated[e - c:e].sum()) for c, e in zip(batch.counts, ends)]
    return 1.0 - np.cumsum(fell) / len(starts), float(batch.reward.mean())


def critic_values(run, checkpoint, spec, starts, actions):
    critic = make_critic(spec, run.run_config(), 0)
    saved = np.load(os.path.join(checkpoint, "algo.npz"))
    for i, name in enumerate(CRITIC_STATE):
        getattr(critic, name)[...] = saved[f"a{i}"]
    dt = critic.dtype
    return critic.q_values(starts.astype(dt), actions.astype(dt)).mean(axis=0)


def env_returns(env, policy, starts, actions, gamma, horizon):
    returns, upright = [], []
    for i, (s, a) in enumerate(zip(starts, actions)):
        put_in_state(env, s, i)
        g, disc = 0.0, 1.0
        for t in range(horizon):
            o, r, terminated, _, _ = env.step(a)
            g += disc * r
            disc *= gamma
            if terminated:
                break
            a = policy.act(o)
        returns.append(g)
        upright.append(t + 1)
    return np.array(returns), np.array(upright)


def diagnose(run_dir, n, horizon, seed):
    run = open_run(run_dir)
    if run.algorithm != "dhmbpo":
        raise SystemExit(f"run_dir: expected a dhmbpo run, got a {run.algorithm} run: {run_dir}")
    cfg = run.run_config()
    spec = fm.envs.make(cfg.env, **cfg.env_kwargs)
    u = spec.env.unwrapped
    if not hasattr(u, "set_state") or spec.obs_dim != u.model.nq + u.model.nv:
        raise SystemExit(f"env: {cfg.env} does not observe exactly MuJoCo's positions and "
                         f"velocities (obs_dim {spec.obs_dim}); these checks cannot set its state")
    checkpoint = last_checkpoint(run_dir)
    policy = fm.load(run_dir)
    rng = np.random.default_rng(seed)
    starts = start_states(checkpoint, n, rng)
    menv = ModelEnv(load_model(run), reward_fn=spec.reward_fn, termination_fn=spec.termination_fn)
    steps = max(STEPS_SHOWN)
    print(f"{run_dir} ({cfg.env}, {len(starts)} states of the last 5000 of the buffer)")
    print("  alive after steps      " + " ".join(f"{t:5d}" for t in STEPS_SHOWN) + "   reward/step")
    rows = [("environment", env_survival(spec.env, policy, starts, steps))]
    for sampled in (True, False):
        rows.append((f"model ({'sampled' if sampled else 'means'})",
                     model_survival(menv, policy, starts, steps, sampled, rng)))
    for name, (alive, reward) in rows:
        print(f"  {name:<21}" + " ".join(f"{alive[t - 1]:5.2f}" for t in STEPS_SHOWN)
              + f"   {reward:.2f}")
    actions = np.array([policy.act(s) for s in starts])
    q = critic_values(run, checkpoint, spec, starts, actions)
    g, upright = env_returns(spec.env, policy, starts, actions, cfg.dhmbpo.gamma, horizon)
    print(f"  critic mean Q {q.mean():.1f}, environment's discounted return {g.mean():.1f} "
          f"(ratio {q.mean() / g.mean():.2f}); Q above the return in {np.mean(q > g):.0%} of the "
          f"states; correlation {np.corrcoef(q, g)[0, 1]:.2f}; steps upright: median "
          f"{int(np.median(upright))} (at most {horizon})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--states", type=int, default=64, help="start states (default 64)")
    ap.add_argument("--horizon", type=int, default=600,
                    help="environment steps of each return (default 600: discount^600 < 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.states < 2 or args.horizon < 1:
        ap.error("--states: at least 2; --horizon: at least 1")
    for run_dir in args.run_dirs:
        diagnose(run_dir, args.states, args.horizon, args.seed)


if __name__ == "__main__":
    main()
