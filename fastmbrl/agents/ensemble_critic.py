"""An ensemble of K soft Q-functions with layer normalization and dropout (DHMBPO's critic).

Each member is ``Q_e(s, a) = w * f_e([s | a]) + c``: an MLP ``f_e`` of blocks
``act(dropout(LN(h) W + b))`` (the kernels of ``fastmbrl.nn._layers_kernels``; no normalization on the
first layer's raw input, no dropout and no activation on the last layer, whose weights start at
zero), scaled by a width ``w`` and shifted by a centre ``c`` that follow the range of soft returns
the rewards allow (:meth:`EnsembleCritic.update_bounds`). Three readings of the ensemble:

- :meth:`loss_grad`: every member regressed to the same targets, ``sum_e mean_b (Q_e - y_b)^2``,
  dropout on (training mode);
- :meth:`target_min`: the target networks, dropout off, the minimum over a random pair of members
  (REDQ's randomized ensemble target, Chen et al. 2021), clipped into the bounds;
- :meth:`mean_vjp`: the mean over members with dropout on, and its gradient with respect to the
  input state and action (the terminal value of the actor's model rollout).

Random numbers (dropout masks, the random pair) come from a counter-based generator: a key drawn
from ``seed`` and a counter advanced by every call, both part of :meth:`state_dict`, so a restored
critic continues bit for bit.
"""
import numpy as np

from fastmbrl._validate import check_dtype, check_float, check_int
from fastmbrl._config import ACTIVATIONS
from fastmbrl.backend import kernels
from fastmbrl.nn._flat import param_offsets, unflatten

__all__ = ["EnsembleCritic"]

_OPTIM = "fastmbrl.agents._sac_optim_kernels"
_STATE_ARRAYS = ("params", "target", "adam_m", "adam_v", "scalars", "rng")


def _layers():
    """The layer kernels, or their NumPy twins (FASTMBRL_PUREPYTHON=1), chosen by fastmbrl.backend
    at each call (tests switch the backend at run time)."""
    return kernels("fastmbrl.nn._layers_kernels")


class EnsembleCritic:
    """K soft Q-functions on ``[obs | act]`` with their target networks and Adam state.

    Parameters
    ----------
    obs_dim, act_dim : int
    hidden : tuple of int
        Hidden widths (DHMBPO: three layers of 256).
    members : int
        K >= 2.
    ln_eps : float
        Layer-normalization epsilon on the inputs of every layer but the first (0 = none).
    dropout : float
        Dropout probability after every hidden linear layer, in [0, 1) (0 = none).
    activation : str
        Hidden activation, one of "relu", "tanh", "silu".
    lr, tau : float
        Adam step size; Polyak rate of the target networks.
    bound_lr : float
        Rate at which the bounds follow the rewards' quantiles (:meth:`update_bounds`).
    lower_bound : {"reward", "zero"}
        "reward": the lower bound is the low reward quantile over ``1 - gamma``, the value of
        never-ending low rewards (the released code); "zero": at most 0, the value of an episode
        that ends now: where episodes can end, a state about to fail is worth less than
        ``r_lo / (1 - gamma)`` when ``r_lo > 0``, and the reward bound would clip its target up.
    dtype : numpy float type
    seed : int

    Attributes
    ----------
    params, target : float arrays
        The members' parameters and the target networks', in ``fastmbrl.nn._flat``'s layout.
    scalars : float64 array (5,)
        [q_lb, q_ub, centre, width, bounds set (0/1)].
    """

    def __init__(self, obs_dim, act_dim, hidden=(256, 256, 256), members=5, *, ln_eps=1e-5,
                 dropout=1e-3, activation="silu", lr=3e-4, tau=0.005, bound_lr=3e-4,
                 lower_bound="reward", target_members=2, dtype=np.float32, seed=0):
        self.obs_dim = check_int("obs_dim", obs_dim)
        self.act_dim = check_int("act_dim", act_dim)
        if not isinstance(hidden, (tuple, list)) or len(hidden) == 0:
            raise ValueError(f"hidden: expected a non-empty tuple of widths, got {hidden!r}")
        self.hidden = tuple(check_int(f"hidden[{i}]", h) for i, h in enumerate(hidden))
        self.members = check_int("members", members, minimum=2)
        self.target_members = check_int("target_members", target_members, minimum=2)
        if self.target_members > self.members:
            raise ValueError(f"target_members: expected at most members={self.members}, got "
                             f"{target_members}")
        self.ln_eps = check_float("ln_eps", ln_eps, 0.0)
        self.dropout = check_float("dropout", dropout, 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if activation not in ("relu", "tanh", "silu"):
            raise ValueError(f"activation: expected 'relu', 'tanh' or 'silu', got {activation!r}")
        self.activation = activation
        self.act_code = ACTIVATIONS[activation]
        self.lr = check_float("lr", lr, 0.0, strict_min=True)
        self.tau = check_float("tau", tau, 0.0, 1.0)
        self.bound_lr = check_float("bound_lr", bound_lr, 0.0, 1.0)
        if lower_bound not in ("reward", "zero"):
            raise ValueError(f"lower_bound: expected 'reward' or 'zero', got {lower_bound!r}")
        self.lower_bound = lower_bound
        self.dtype = check_dtype("dtype", dtype)
        self.seed = check_int("seed", seed, minimum=0)
        self.dims = np.array((self.obs_dim + self.act_dim,) + self.hidden + (1,), np.int64)
        L = self.dims.size - 1
        self.ln_eps_layers = np.array([0.0] + [self.ln_eps] * (L - 1), np.float64)
        self.p_drop_layers = np.array([self.dropout] * (L - 1) + [0.0], np.float64)
        self.p_off = np.zeros(L, np.float64)
        rng = np.random.default_rng(self.seed)
        self.params = np.empty(param_offsets(self.dims, self.members)[-1], self.dtype)
        views = unflatten(self.params, self.dims, self.members)
        for i, p in enumerate(views):
            bound = 1.0 / np.sqrt(self.dims[i // 2])   # torch nn.Linear default
            p[...] = rng.uniform(-bound, bound, p.shape)
        views[-2][...] = 0.0                           # the last layer starts at zero
        views[-1][...] = 0.0
        self.target = self.params.copy()
        self.adam_m = np.zeros_like(self.params)
        self.adam_v = np.zeros_like(self.params)
        # [q_lb, q_ub, centre, width, bounds set]; width 1 and centre 0 until the first bounds
        self.scalars = np.array([0.0, 0.0, 0.0, 1.0, 0.0], np.float64)
        # [key, counter, Adam steps]
        self.rng = np.array([rng.integers(0, 2**63, dtype=np.uint64), 0, 0], np.uint64)
        self._work = {}

    # ------------------------------------------------------------------------------ helpers
    def _buffers(self, B):
        work = self._work.get(B)
        if work is None:
            k = _layers()
            nf, nm = k._cache_sizes(self.dims, B)
            K = self.members
            work = (np.empty((K, nf), self.dtype), np.empty((K, nm), np.uint8),
                    np.empty((K, 2 * B * int(self.dims[1:].max())), self.dtype),
                    np.empty((K, B), self.dtype), np.empty((K, B), self.dtype),
                    np.empty((K, B, int(self.dims[0])), self.dtype))
            self._work[B] = work
        return work

    def _counter(self, n):
        """The generator's counter before this call's ``n`` draws (then advanced past them)."""
        c = np.uint64(self.rng[1])
        self.rng[1] = c + np.uint64(n)
        return c

    def _input(self, obs, act):
        x = np.empty((obs.shape[0], int(self.dims[0])), self.dtype)
        _layers()._concat_into(np.asarray(obs, self.dtype), np.asarray(act, self.dtype), x)
        return x

    def _check_rows(self, obs, act):
        obs, act = np.asarray(obs), np.asarray(act)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape (B, {self.obs_dim}), got {obs.shape}")
        if act.shape != (obs.shape[0], self.act_dim):
            raise ValueError(f"act: expected shape ({obs.shape[0]}, {self.act_dim}), got "
                             f"{act.shape}")

    @property
    def center(self):
        return float(self.scalars[2])

    @property
    def width(self):
        return float(self.scalars[3])

    # ---------------------------------------------------------------------------- readings
    def q_values(self, obs, act, train=False, target=False, pair=False, subset=2):
        """(K, B) values of every member (``target``: the target networks); ``train`` keeps
        dropout on. ``pair``: only ``subset`` distinct random members are run (a pair by
        default), (subset, B), equal to their rows of the whole pass (its dropout counters are
        taken first, then the members are drawn)."""
        self._check_rows(obs, act)
        k = _layers()
        x = self._input(obs, act)
        B = x.shape[0]
        cbuf, mbuf, _, q, _, _ = self._buffers(B)
        p = self.p_drop_layers if train else self.p_off
        flat = self.target if target else self.params
        key = np.uint64(self.rng[0])
        counter = self._counter(k._cache_sizes(self.dims, B)[1] * self.members)
        if pair:
            idx = np.empty(subset, np.int64)
            k._draw_subset(key, self._counter(subset), self.members, idx)
            k._ensemble_forward_subset(flat, self.dims, self.members, idx, self.act_code,
                                       self.ln_eps_layers, p, key, counter, x, cbuf, mbuf, q)
            q = q[:subset]
        else:
            k._ensemble_forward(flat, self.dims, self.members, self.act_code, self.ln_eps_layers,
                                p, key, counter, x, cbuf, mbuf, q)
        return q.astype(np.float64) * self.width + self.center

    def target_min(self, obs, act):
        """(B,) float64: the target networks' minimum over ``target_members`` random members (a
        pair by default, REDQ's; more members give a more pessimistic target; dropout off),
        clipped into ``[q_lb, q_ub]`` once the bounds are set."""
        out = self.q_values(obs, act, target=True, pair=True,
                            subset=self.target_members).min(axis=0)
        if self.scalars[4]:
            out = np.clip(out, self.scalars[0], self.scalars[1])
        return out

    def loss_grad(self, obs, act, y, grad_out):
        """Loss ``sum_e mean_b (Q_e(s_b, a_b) - y_b)^2`` with dropout on; its gradient with
        respect to ``params`` is written to ``grad_out``. Returns (loss, mean Q)."""
        self._check_rows(obs, act)
        x = self._input(obs, act)
        B = x.shape[0]
        cbuf, mbuf, dbuf, q, dq, _ = self._buffers(B)
        w, c = self.width, self.center
        y_raw = ((np.asarray(y, np.float64) - c) / w).astype(self.dtype)
        n_mask = _layers()._cache_sizes(self.dims, B)[1] * self.members
        loss = _layers()._ensemble_mse_loss_grad(
            self.params, self.dims, self.members, self.act_code, self.ln_eps_layers,
            self.p_drop_layers, np.uint64(self.rng[0]), self._counter(n_mask), x, y_raw,
            w * w, cbuf, mbuf, dbuf, q, dq, grad_out)
        return float(loss), float(np.mean(q, dtype=np.float64) * w + c)

    def mean_vjp(self, obs, act, cot):
        """Mean over members (dropout on) at (obs, act), and the gradient of ``sum_b cot_b
        mean_e Q_e(s_b, a_b)`` with respect to obs and act. Returns (q (B,) float64, d_obs,
        d_act)."""
        self._check_rows(obs, act)
        x = self._input(obs, act)
        B = x.shape[0]
        k = _layers()
        cbuf, mbuf, dbuf, q, dq, dxk = self._buffers(B)
        n_mask = k._cache_sizes(self.dims, B)[1] * self.members
        k._ensemble_forward(self.params, self.dims, self.members, self.act_code,
                            self.ln_eps_layers, self.p_drop_layers, np.uint64(self.rng[0]),
                            self._counter(n_mask), x, cbuf, mbuf, q)
        w, c = self.width, self.center
        qm = q.astype(np.float64).mean(axis=0) * w + c
        k._ensemble_reduce_backward(1, np.full(B, -1, np.int64),
                                    (np.asarray(cot, np.float64) * w).astype(self.dtype), dq)
        dx = np.empty((B, int(self.dims[0])), self.dtype)
        k._ensemble_backward(self.params, self.dims, self.members, self.act_code,
                             self.ln_eps_layers, self.p_drop_layers, x, cbuf, mbuf, dq, False,
                             self.params[:0], True, dxk, dx, dbuf)
        return qm, np.ascontiguousarray(dx[:, :self.obs_dim]), \
            np.ascontiguousarray(dx[:, self.obs_dim:])

    # ----------------------------------------------------------------------------- learning
    def step(self, grad, beta1=0.9, beta2=0.999, eps=1e-8, first_layer=None):
        """One Adam step on ``params`` with ``grad``, then the Polyak step of the targets.

        ``first_layer=(params0, grad0, target0)`` steps these arrays instead of the first layer's
        part (W0, b0) of ``params``, ``grad`` and ``target``: its normalized-input form, which
        the caller folds back (``fastmbrl.agents.obs_scaling``)."""
        optim = kernels(_OPTIM)
        self.rng[2] += np.uint64(1)
        t = int(self.rng[2])
        if first_layer is None:
            optim._adam_update(self.params, grad, self.adam_m, self.adam_v, self.lr, beta1, beta2,
                               eps, t)
            optim._polyak_update(self.target, self.params, self.tau)
            return
        p0, g0, t0 = first_layer
        n = p0.size
        m, v = self.adam_m, self.adam_v
        optim._adam_update(p0, g0, m[:n], v[:n], self.lr, beta1, beta2, eps, t)
        optim._adam_update(self.params[n:], grad[n:], m[n:], v[n:], self.lr, beta1, beta2, eps, t)
        optim._polyak_update(t0, p0, self.tau)
        optim._polyak_update(self.target[n:], self.params[n:], self.tau)

    def update_bounds(self, soft_rewards, gamma, lower=0.01, upper=0.99):
        """Follow the range of soft returns: the ``lower``/``upper`` quantiles of the soft rewards
        ``r - alpha log pi`` seen, over ``1 - gamma``, give ``[q_lb, q_ub]`` (set the first time,
        then moved by ``bound_lr`` towards them); centre and width are their midpoint and half
        range. With ``lower_bound="zero"`` the lower one is at most 0."""
        lo, hi = np.quantile(np.asarray(soft_rewards, np.float64), [lower, upper])
        scale = 1.0 / (1.0 - gamma)
        lo, hi = lo * scale, hi * scale
        if self.lower_bound == "zero":
            lo = min(lo, 0.0)
        s = self.scalars
        if not s[4]:
            s[0], s[1], s[4] = lo, hi, 1.0
        else:
            s[0] += self.bound_lr * (lo - s[0])
            s[1] += self.bound_lr * (hi - s[1])
        s[2] = 0.5 * (s[0] + s[1])
        s[3] = max(0.5 * (s[1] - s[0]), 1e-6)

    # -------------------------------------------------------------------------------- state
    def state_dict(self):
        """Copies of everything that evolves (parameters, targets, Adam moments, bounds,
        generator)."""
        return {k: getattr(self, k).copy() for k in _STATE_ARRAYS}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output in place; shapes and dtypes are checked."""
        for k in _STATE_ARRAYS:
            if k not in state:
                raise ValueError(f"state: missing entry {k!r}")
            cur, new = getattr(self, k), np.asarray(state[k])
            if new.shape != cur.shape or new.dtype != cur.dtype:
                raise ValueError(f"state[{k!r}]: expected {cur.dtype} array of shape {cur.shape}, "
                                 f"got {new.dtype} {new.shape}")
        for k in _STATE_ARRAYS:
            getattr(self, k)[...] = state[k]
