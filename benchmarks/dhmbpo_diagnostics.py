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
3. Gradients: what the actor's update through the model relies on. From each start state and the
   policy's action, central differences (step ``--fd-step`` in every action coordinate) of
   (a) the next observation (the one-step Jacobian d s'/d a) and (b) the reward summed over
   ``--grad-horizon`` steps of the deterministic policy, in the environment and in the model
   (the members' mean prediction, the exact reward and termination); reported as the cosine
   between the model's and the environment's and the model's relative error, median over the
   states, beside the same cosine between two members (how much the members agree).

Start states are drawn from the last 5000 transitions of the buffer of the run's last checkpoint
(with ``--before-falls K`` only those K to 2K steps before a termination).
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


def start_states(checkpoint, n, rng, before_falls=0):
    """n states of the last 5000 transitions of the buffer; with ``before_falls=k`` only states
    k to 2k steps before a termination of their episode."""
    buf = np.load(os.path.join(checkpoint, "buffer.npz"))
    first = max(0, len(buf["obs"]) - 5000)
    obs, terminated = buf["obs"][first:], buf["terminated"][first:]
    if not before_falls:
        return obs[rng.integers(0, len(obs), n)].astype(np.float64)
    ends = np.flatnonzero(terminated)
    pool = np.unique(np.concatenate([e - np.arange(before_falls, 2 * before_falls + 1)
                                     for e in ends])) if len(ends) else np.empty(0, int)
    pool = pool[pool >= 0]
    # a state belongs to the fall's episode when no other termination lies between them
    pool = np.array([i for i in pool if not terminated[i:i + before_falls].any()], int)
    if len(pool) == 0:
        raise SystemExit("--before-falls: no terminations in the last 5000 transitions")
    return obs[rng.choice(pool, n)].astype(np.float64)


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


def _env_next(env, s, a, seed):
    put_in_state(env, s, seed)
    return env.step(a)[0]


def _env_return(env, policy, s, a, steps, seed):
    put_in_state(env, s, seed)
    g = 0.0
    for _ in range(steps):
        o, r, terminated, _, _ = env.step(a)
        g += r
        if terminated:
            break
        a = policy.act(o, deterministic=True)
    return g


def _model_return(model, spec, policy, s, a, steps):
    """Summed exact reward along the members' mean prediction (rows: start states, actions)."""
    g, alive = np.zeros(len(s)), np.ones(len(s), bool)
    for _ in range(steps):
        nxt = model.predict(s, a)[0].astype(np.float64).mean(axis=0)
        g += alive * spec.reward_fn(s, a, nxt)
        alive &= ~spec.termination_fn(s, a, nxt)
        s = nxt
        a = np.array([policy.act(o, deterministic=True) for o in s])
    return g


def _cos(x, y):
    return float(x.ravel() @ y.ravel() / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-300))


def gradients(spec, model, policy, starts, actions, h, steps):
    """Median cosines and relative errors of check 3 (module docstring)."""
    env, A = spec.env, actions.shape[1]
    lo, hi = spec.env.action_space.low, spec.env.action_space.high
    out = {"jac_cos": [], "jac_err": [], "jac_members_cos": [], "ret_cos": [], "ret_err": []}
    for i, (s, a) in enumerate(zip(starts, actions)):
        a = np.clip(a, lo + h, hi - h)
        plus = a + h * np.eye(A)
        minus = a - h * np.eye(A)
        je = np.stack([_env_next(env, s, p, i) - _env_next(env, s, m, i)
                       for p, m in zip(plus, minus)], axis=1) / (2 * h)          # (D, A)
        S = np.repeat(s[None], A, axis=0)
        mp = model.predict(S, plus)[0].astype(np.float64)                        # (E, A, D)
        mm = model.predict(S, minus)[0].astype(np.float64)
        jm_members = np.transpose(mp - mm, (0, 2, 1)) / (2 * h)                   # (E, D, A)
        jm = jm_members.mean(axis=0)
        out["jac_cos"].append(_cos(jm, je))
        out["jac_err"].append(np.linalg.norm(jm - je) / np.linalg.norm(je))
        out["jac_members_cos"].append(_cos(jm_members[0], jm_members[1]))
        ge = np.array([_env_return(env, policy, s, p, steps, i)
                       - _env_return(env, policy, s, m, steps, i)
                       for p, m in zip(plus, minus)]) / (2 * h)
        gm = (_model_return(model, spec, policy, S, plus, steps)
              - _model_return(model, spec, policy, S, minus, steps)) / (2 * h)
        out["ret_cos"].append(_cos(gm, ge))
        out["ret_err"].append(np.linalg.norm(gm - ge) / np.linalg.norm(ge))
    return {k: float(np.median(v)) for k, v in out.items()}


def diagnose(run_dir, n, horizon, seed, fd_step=1e-2, grad_horizon=5, before_falls=0):
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
    starts = start_states(checkpoint, n, rng, before_falls)
    model = load_model(run)
    menv = ModelEnv(model, reward_fn=spec.reward_fn, termination_fn=spec.termination_fn)
    steps = max(STEPS_SHOWN)
    where = f", {before_falls}-{2 * before_falls} steps before a fall" if before_falls else ""
    print(f"{run_dir} ({cfg.env}, {len(starts)} states of the last 5000 of the buffer{where})")
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
    g = gradients(spec, model, policy, starts, actions, fd_step, grad_horizon)
    print(f"  d s'/d a: cosine model-environment {g['jac_cos']:.2f} (two members "
          f"{g['jac_members_cos']:.2f}), relative error {g['jac_err']:.2f}; gradient of the "
          f"{grad_horizon}-step reward: cosine {g['ret_cos']:.2f}, relative error "
          f"{g['ret_err']:.2f} (medians over the states, central differences of {fd_step})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--states", type=int, default=64, help="start states (default 64)")
    ap.add_argument("--horizon", type=int, default=600,
                    help="environment steps of each return (default 600: discount^600 < 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fd-step", type=float, default=1e-2,
                    help="central-difference step in the actions (default 0.01)")
    ap.add_argument("--grad-horizon", type=int, default=5,
                    help="steps of the summed reward whose gradient check 3 compares (default 5, "
                         "the training rollout's)")
    ap.add_argument("--before-falls", type=int, default=0, metavar="K",
                    help="start states only K to 2K steps before a termination (default 0: any)")
    args = ap.parse_args()
    if args.states < 2 or args.horizon < 1 or args.grad_horizon < 1 or not args.fd_step > 0:
        ap.error("--states: at least 2; --horizon, --grad-horizon: at least 1; --fd-step: "
                 "positive")
    for run_dir in args.run_dirs:
        diagnose(run_dir, args.states, args.horizon, args.seed, args.fd_step, args.grad_horizon,
                 args.before_falls)


if __name__ == "__main__":
    main()
