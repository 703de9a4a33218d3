"""SAC update speed: fastmbrl vs Stable-Baselines3 ``SAC.train()`` vs a plain PyTorch update, as markdown.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_sac_table.py --out sac_table.md

Cases (batch 256): a = obs 3, act 1, 256 x 256; b = obs 17, act 6, 256 x 256; c = obs 3, act 1, 64 x 64.
Every implementation runs ``--chunk`` updates per call, minibatch sampling from a 10k-row buffer
included (SB3: ``train(gradient_steps=chunk)``); rounds alternate between the implementations so that
the machine's load hits them alike, and the table gives medians. GFLOP/s counts the multiply-adds of
the matrix products SB3 performs (forward and backward passes of the updates). The helpers here are
also used by ``bench_sac.py``.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import itertools

from fastmbrl.agents import SAC
from fastmbrl.buffer import ReplayBuffer

CASES = {"a": (3, 1, 256), "b": (17, 6, 256), "c": (3, 1, 64)}
BATCH = 256
ROWS = 10_000


def update_flops(obs_dim, act_dim, hidden, batch=BATCH):
    """Multiply-add FLOPs (2 per MAC) of the matrix products of one SAC update, counted as SB3 does
    them: actor forward on s and s' with backward; target critics forward on s'; critics forward on
    (s, a), backward with parameter and hidden-input gradients; critics forward on (s, a~) with
    backward down to the action."""
    def macs(dims):
        return sum(a * b for a, b in itertools.pairwise(dims))

    actor = macs([obs_dim, hidden, hidden, 2 * act_dim])
    critic = macs([obs_dim + act_dim, hidden, hidden, 1])
    critic_hidden = macs([hidden, hidden, 1])   # backward products below the first layer
    total = 2 * actor                             # actor forward on s', s
    total += 2 * critic                           # target twins on s'
    total += 2 * critic + 2 * (critic + critic_hidden)   # critic twins: forward, dW, dx
    total += 2 * critic + 2 * critic              # twins on (s, a~): forward, dx (to the action)
    total += actor + (actor - obs_dim * hidden)   # actor backward: dW, dx above the first layer
    return 2.0 * batch * total


def random_buffer(obs_dim, act_dim, seed=0):
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(ROWS, obs_dim, act_dim)
    buf.add_batch(rng.normal(size=(ROWS, obs_dim)), rng.uniform(-1, 1, (ROWS, act_dim)),
                  rng.normal(size=ROWS), rng.normal(size=(ROWS, obs_dim)), rng.random(ROWS) < 0.01,
                  np.zeros(ROWS, bool))
    return buf


def make_fastmbrl(obs_dim, act_dim, hidden, n_threads):
    agent = SAC(obs_dim, act_dim, (-np.ones(act_dim), np.ones(act_dim)), hidden=(hidden, hidden),
                batch_size=BATCH, n_threads=n_threads)
    buf = random_buffer(obs_dim, act_dim)

    def run(n):
        return agent.update_from(buf, n)
    return run


def make_sb3(obs_dim, act_dim, hidden, n_threads):
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import Logger

    class Dummy(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(obs_dim, np.float32), {}

        def step(self, action):
            return np.zeros(obs_dim, np.float32), 0.0, False, False, {}

    torch.set_num_threads(n_threads)
    model = SB3SAC("MlpPolicy", Dummy(), buffer_size=ROWS, batch_size=BATCH, learning_starts=0,
                   policy_kwargs={"net_arch": [hidden, hidden]}, device="cpu", seed=0)
    model.set_logger(Logger(folder=None, output_formats=[]))
    rng = np.random.default_rng(0)
    rb = model.replay_buffer
    rb.observations[:] = rng.normal(size=rb.observations.shape)
    rb.next_observations[:] = rng.normal(size=rb.next_observations.shape)
    rb.actions[:] = rng.uniform(-1, 1, rb.actions.shape)
    rb.rewards[:] = rng.normal(size=rb.rewards.shape)
    rb.dones[:] = rng.random(rb.dones.shape) < 0.01
    rb.full = True

    def run(n):
        torch.set_num_threads(n_threads)
        model.train(gradient_steps=n, batch_size=BATCH)
    return run


def make_torch(obs_dim, act_dim, hidden, n_threads):
    """A plain PyTorch SAC update (same math as SB3 and fastmbrl), twin critics as two MLPs."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(n_threads)

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, o))

    actor = mlp(obs_dim, 2 * act_dim)
    q = nn.ModuleList([mlp(obs_dim + act_dim, 1) for _ in range(2)])
    qt = nn.ModuleList([mlp(obs_dim + act_dim, 1) for _ in range(2)])
    qt.load_state_dict(q.state_dict())
    log_alpha = torch.zeros(1, requires_grad=True)
    opt_a = torch.optim.Adam(actor.parameters(), lr=3e-4)
    opt_q = torch.optim.Adam(q.parameters(), lr=3e-4)
    opt_t = torch.optim.Adam([log_alpha], lr=3e-4)
    rng = np.random.default_rng(0)
    data = [torch.as_tensor(rng.normal(size=(ROWS, obs_dim)), dtype=torch.float32),
            torch.as_tensor(rng.uniform(-1, 1, (ROWS, act_dim)), dtype=torch.float32),
            torch.as_tensor(rng.normal(size=(ROWS, 1)), dtype=torch.float32),
            torch.as_tensor(rng.normal(size=(ROWS, obs_dim)), dtype=torch.float32),
            torch.as_tensor(rng.random((ROWS, 1)) < 0.01, dtype=torch.float32)]

    def sample(s):
        out = actor(s)
        mean, log_std = out[:, :act_dim], out[:, act_dim:].clamp(-20, 2)
        std = log_std.exp()
        eps = torch.randn_like(mean)
        u = mean + std * eps
        logp = (-0.5 * eps ** 2 - log_std - 0.5 * np.log(2 * np.pi)
                - 2 * (np.log(2) - u - nn.functional.softplus(-2 * u))).sum(1, keepdim=True)
        return torch.tanh(u), logp

    def run(n):
        torch.set_num_threads(n_threads)
        for _ in range(n):
            idx = torch.randint(0, ROWS, (BATCH,))
            s, a, r, s2, d = (x[idx] for x in data)
            alpha = log_alpha.detach().exp()
            with torch.no_grad():
                a2, lp2 = sample(s2)
                z2 = torch.cat([s2, a2], 1)
                y = r + 0.99 * (1 - d) * (torch.min(qt[0](z2), qt[1](z2)) - alpha * lp2)
            z = torch.cat([s, a], 1)
            q_loss = 0.5 * sum(nn.functional.mse_loss(qi(z), y) for qi in q)
            opt_q.zero_grad()
            q_loss.backward()
            opt_q.step()
            api, lp = sample(s)
            zp = torch.cat([s, api], 1)
            for p in q.parameters():
                p.requires_grad_(False)
            a_loss = (alpha * lp - torch.min(q[0](zp), q[1](zp))).mean()
            opt_a.zero_grad()
            a_loss.backward()
            opt_a.step()
            for p in q.parameters():
                p.requires_grad_(True)
            t_loss = -(log_alpha * (lp.detach() - act_dim)).mean()
            opt_t.zero_grad()
            t_loss.backward()
            opt_t.step()
            with torch.no_grad():
                for p, pt in zip(q.parameters(), qt.parameters()):
                    pt.mul_(0.995).add_(p, alpha=0.005)
    return run


MAKERS = {"fastmbrl": make_fastmbrl, "sb3": make_sb3, "torch": make_torch}


def blas_info():
    from threadpoolctl import threadpool_info
    return "; ".join(f"{i['internal_api']} {i.get('architecture')} ({os.path.basename(i['filepath'])})"
                     for i in threadpool_info())


def measure(cases, threads, impls, chunk, rounds, log=sys.stderr):
    """Median seconds per update for every (case, impl, n_threads), rounds interleaved."""
    results = {}
    for case in cases:
        obs_dim, act_dim, hidden = CASES[case]
        n = chunk if hidden >= 256 else 4 * chunk
        for nt in threads:
            runs = {impl: MAKERS[impl](obs_dim, act_dim, hidden, nt) for impl in impls}
            for run in runs.values():       # warm-up: compilation, allocator, caches
                run(2)
            times = {impl: [] for impl in impls}
            for _ in range(rounds):
                for impl, run in runs.items():
                    t0 = time.perf_counter()
                    run(n)
                    times[impl].append((time.perf_counter() - t0) / n)
            for impl in impls:
                results[(case, impl, nt)] = statistics.median(times[impl])
                log.write(f"{case} {impl} {nt} thread(s): {1 / results[(case, impl, nt)]:.0f} "
                          f"updates/s\n")
                log.flush()
    return results


def table(results):
    lines = ["| case | threads | impl | updates/s | GFLOP/s | vs SB3 | vs torch |",
             "|---|---|---|---|---|---|---|"]
    for (case, impl, nt), sec in sorted(results.items()):
        fl = update_flops(*CASES[case])
        sb3 = results.get((case, "sb3", nt))
        tor = results.get((case, "torch", nt))
        lines.append(f"| {case} {CASES[case]} | {nt} | {impl} | {1 / sec:.0f} | {fl / sec / 1e9:.0f} | "
                     f"{sb3 / sec if sb3 else float('nan'):.2f} | "
                     f"{tor / sec if tor else float('nan'):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CASES))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--impls", nargs="+", default=list(MAKERS))
    p.add_argument("--chunk", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    results = measure(args.cases, args.threads, args.impls, args.chunk, args.rounds)
    text = (f"BLAS: {blas_info()}\n\nOPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
            f"load average {os.getloadavg()[0]:.1f} at the end\n\n" + table(results) + "\n")
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
