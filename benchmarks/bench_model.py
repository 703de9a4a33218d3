"""GaussianEnsemble.fit: the time of one epoch, and the quality of a full fit, against PyTorch.

Speed case: 10,000 transitions (obs 4, act 1), E=7 members, 4 x 200 SiLU hidden layers,
batch 256 per member, float32; one ``fit(max_epochs=1)`` call = normalization, holdout split,
bootstrap, 36 training steps, and the holdout evaluation (before and after the epoch).

PyTorch runs *the same loop*: the model's own ``EnsembleTrainer`` (split, bootstrap, batching,
early stopping and elites identical, same initial weights, same data), with only the minibatch step
(baddbmm + SiLU, soft bounds, autograd, ``torch.optim.Adam(fused=True)`` with the same coupled
per-layer weight decay) and the holdout forward pass done by PyTorch. Its parameters are the model's
own arrays (``torch.from_numpy`` shares memory), so predictions and scoring share the same code.

Quality case: a full early-stopped fit on 5,000 random Pendulum-v1 transitions, scored on 2,000
transitions from other episodes: one-step MSE of the elites' mean and the Gaussian NLL (raw units,
per transition, averaged over elites).

Tests run in file order; ``extra_info`` holds the ratios to the PyTorch medians of the same run,
and the FLOPs of one call against the sgemm rate of the same session (``_floor.fit_flops``: the
training steps' products and one forward pass over the holdout rows per score, the same count
for both implementations).

Run:  python -m pytest benchmarks/bench_model.py --benchmark-columns=median,ops -q
"""
import os
import sys

import numpy as np
import pytest

from fastmbrl.config import ModelConfig
from fastmbrl.models import GaussianEnsemble
from fastmbrl.models.trainer import EnsembleTrainer

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

N_TRANSITIONS = 10_000
OBS_DIM, ACT_DIM = 4, 1
CFG = dict(hidden=(200, 200, 200, 200), ensemble_size=7, num_elites=5, weight_decay="pets",
           seed=0)
MEDIANS = {}       # (impl, n_threads) -> median seconds per epoch
QUALITY = {}       # impl -> (mse, nll)


def synthetic_data(n=N_TRANSITIONS, seed=0):
    """Cart-pole-like smooth dynamics with small noise: obs (n, 4), act (n, 1), next_obs (n, 4)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform([-2.0, -3.0, -np.pi, -6.0], [2.0, 3.0, np.pi, 6.0], size=(n, OBS_DIM))
    act = rng.uniform(-1.0, 1.0, size=(n, ACT_DIM))
    dt = 0.05
    x, v, th, w = obs.T
    acc = 2.0 * act[:, 0] - 0.1 * v
    alpha = 9.8 * np.sin(th) - acc * np.cos(th) - 0.05 * w
    nxt = np.stack([x + dt * v, v + dt * acc, th + dt * w, w + dt * alpha], axis=1)
    nxt += 0.01 * rng.standard_normal(nxt.shape)
    return obs, act, nxt


# ---------------------------------------------------------------- the PyTorch twin of the step
class TorchStep:
    """PyTorch version of ``fastmbrl.nn.GaussianTrainStep`` on the model's own parameter arrays."""

    def __init__(self, model, n_threads):
        import torch

        torch.set_num_threads(n_threads)
        self.torch = torch
        net = model.net
        self.d = model.out_dim
        self.n_layers = net.n_layers
        self.max_logvar = model.max_logvar            # numpy views shared with the tensors below
        self.min_logvar = model.min_logvar
        self.W = [torch.from_numpy(net.params[2 * i]).requires_grad_() for i in range(net.n_layers)]
        self.b = [torch.from_numpy(net.params[2 * i + 1]).requires_grad_()
                  for i in range(net.n_layers)]
        self.tmax = torch.from_numpy(self.max_logvar).requires_grad_()
        self.tmin = torch.from_numpy(self.min_logvar).requires_grad_()
        groups = [{"params": [W], "weight_decay": wd} for W, wd in zip(self.W, model.weight_decay)]
        groups.append({"params": self.b + [self.tmax, self.tmin], "weight_decay": 0.0})
        self.opt = torch.optim.Adam(groups, lr=model.lr, fused=True)
        self.penalty = model.logvar_penalty
        self.member_loss = np.zeros(net.ensemble_size)

    def outputs(self, x):
        F = self.torch.nn.functional
        h = x
        for i in range(self.n_layers):
            h = self.torch.baddbmm(self.b[i].unsqueeze(1), h, self.W[i])
            if i < self.n_layers - 1:
                h = F.silu(h)
        mean, raw = h[..., :self.d], h[..., self.d:]
        lv = self.tmax - F.softplus(self.tmax - raw)
        lv = self.tmin + F.softplus(lv - self.tmin)
        return mean, lv

    def __call__(self, xb, yb):
        torch = self.torch
        mean, lv = self.outputs(torch.from_numpy(xb))
        per = ((mean - torch.from_numpy(yb)) ** 2 * torch.exp(-lv) + lv).sum(-1).mean(-1)
        nll = per.mean()
        loss = nll + self.penalty * (self.tmax.sum() - self.tmin.sum())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.member_loss[:] = per.detach().numpy()
        return float(nll.detach())

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class TorchTrainer(EnsembleTrainer):
    """The model's trainer with the holdout forward pass in PyTorch too."""

    def evaluate(self, X, Y, batch_size=256):
        torch = self.step.torch
        with torch.no_grad():
            E = self.net.ensemble_size
            x = torch.from_numpy(X).unsqueeze(0).expand(E, -1, -1)
            y = torch.from_numpy(Y).unsqueeze(0)
            mean, lv = self.step.outputs(x)
            err2 = (mean - y) ** 2
            mse = err2.mean(dim=(1, 2)).double().numpy()
            nll = (err2 * torch.exp(-lv) + lv).sum(-1).mean(-1).double().numpy()
        return mse, nll


def make_model(impl, n_threads, obs_dim=OBS_DIM):
    model = GaussianEnsemble(obs_dim, ACT_DIM, n_threads=n_threads, **CFG)
    if impl == "torch":
        model._trainer = TorchTrainer(model.net, TorchStep(model, n_threads))
    return model


def record(benchmark, impl, n_threads, model, batch_size):
    _floor.record(benchmark, _floor.history_fit_flops(model, model.history, batch_size), n_threads)
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    MEDIANS[(impl, n_threads)] = median
    hist = model.history
    benchmark.extra_info.update({
        "impl": impl, "n_threads": n_threads, "seconds_per_epoch": median,
        "target_seconds": 0.5, "train_nll": float(hist.train_loss[-1]),
        "holdout_mse": float(np.min(hist.best_holdout))})
    ref = MEDIANS.get(("torch", n_threads))
    if impl == "fastmbrl" and ref is not None:
        benchmark.extra_info["speedup_vs_torch"] = ref / median


# ---------------------------------------------------------------- one epoch
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("impl", ["torch", "fastmbrl"])
def test_fit_epoch(benchmark, impl, n_threads):
    if impl == "torch":
        pytest.importorskip("torch")
    obs, act, nxt = synthetic_data()
    model = make_model(impl, n_threads)

    def epoch():
        return model.fit(obs, act, nxt, max_epochs=1, batch_size=256, holdout_frac=0.1,
                         progress=False)

    hist = benchmark.pedantic(epoch, rounds=5, iterations=1, warmup_rounds=1)
    assert hist.epochs_run == 1 and hist.n_train == 9000 and np.all(np.isfinite(hist.best_holdout))
    # training (warm-started over the rounds) has moved the members well below their start
    assert np.median(hist.best_holdout) < 0.5
    record(benchmark, impl, n_threads, model, batch_size=256)


# ---------------------------------------------------------------- full fit quality on Pendulum
def pendulum(n_steps, seed):
    gym = pytest.importorskip("gymnasium")
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rows = []
    for _ in range(n_steps):
        act = env.action_space.sample()
        nxt, _, terminated, truncated, _ = env.step(act)
        rows.append((obs, act, nxt))
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return tuple(np.array(col, np.float64) for col in zip(*rows))


def score(model, obs, act, nxt):
    mean, var = model.predict(obs, act)
    mean, var = mean[model.elites].astype(np.float64), var[model.elites].astype(np.float64)
    mse = float(np.mean((mean.mean(0) - nxt) ** 2))
    nll = 0.5 * (np.log(2 * np.pi * var) + (nxt - mean) ** 2 / var).sum(-1)
    return mse, float(nll.mean())


@pytest.mark.parametrize("impl", ["torch", "fastmbrl"])
def test_pendulum_fit_quality(benchmark, impl):
    if impl == "torch":
        pytest.importorskip("torch")
    obs, act, nxt = pendulum(5000, seed=0)
    t_obs, t_act, t_nxt = pendulum(2000, seed=1)
    model = make_model(impl, 1, obs_dim=3)

    def full_fit():
        return model.fit(obs, act, nxt, max_epochs=200, progress=False)

    hist = benchmark.pedantic(full_fit, rounds=1, iterations=1)
    _floor.record(benchmark, _floor.history_fit_flops(model, hist, ModelConfig.batch_size), 1)
    mse, nll = score(model, t_obs, t_act, t_nxt)
    no_change = float(np.mean((t_obs - t_nxt) ** 2))
    QUALITY[impl] = (mse, nll)
    benchmark.extra_info.update({"impl": impl, "test_mse": mse, "test_nll": nll,
                                 "no_change_mse": no_change, "epochs": hist.epochs_run,
                                 "seconds_per_epoch": hist.seconds / hist.epochs_run})
    if impl == "fastmbrl" and "torch" in QUALITY:
        benchmark.extra_info["torch_test_mse"], benchmark.extra_info["torch_test_nll"] = \
            QUALITY["torch"]
    assert mse < 0.05 * no_change
