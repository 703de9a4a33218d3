"""Normalized observation inputs for the actor and the critic ensemble, kept in raw-input form.

DHMBPO's released configuration feeds its actor and critics ``(s - mean) / std``, with the
statistics of the environment buffer frozen between model refits. Hopper's velocities, for
instance, are ten times its height and angles, and Adam's per-weight steps make such scales
matter.

Here the networks are trained in the normalized space but stored *folded*: the first layer's
observation rows are divided by ``std`` and its bias shifted,

    W0' = W0 / std (row-wise over the observation inputs),   b0' = b0 - (mean / std) W0,

so ``x W0' + b0' = ((s - mean) / std) W0 + b0`` and every kernel, rollout, ``act`` call and export
uses the raw observation unchanged. Only the first layer differs between the two forms; this class
keeps its normalized-space copy (the *master*) for the actor, the critics and their targets:

- an optimizer step maps the first layer's gradient back to the master,
  ``dW0 = dW0' / std - (mean / std) db0'`` and ``db0 = db0'``, steps the master with it and folds
  the result into the network; the other layers step in place as before;
- new statistics (:meth:`set_stats`, after each model refit) refold every network from its
  master: the functions change as the normalization does, exactly as for a network that reads
  normalized inputs.

With ``mean = 0`` and ``std = 1`` this is the plain update.
"""
import numpy as np

from fastmbrl.backend import kernels
from fastmbrl.nn._flat import param_offsets

_k = kernels("fastmbrl.agents._sac_kernels")

__all__ = ["ObsScaling", "fold_first_layer", "unfold_first_layer_grad"]

STD_FLOOR = 1e-4
"""Smallest standard deviation used (a constant observation keeps a finite scale)."""


def _first_layer(flat, dims, members):
    """Views (W0 (E, D0, D1), b0 (E, D1)) of the first layer in the flat layout."""
    E, d0, d1 = int(members), int(dims[0]), int(dims[1])
    n_w = E * d0 * d1
    return flat[:n_w].reshape(E, d0, d1), flat[n_w:n_w + E * d1].reshape(E, d1)


def fold_first_layer(master, dims, members, mean, std, out):
    """Write into ``out`` (the first layer's W0, b0, flat) the raw-input form of ``master``'s.

    Parameters
    ----------
    master, out : float arrays (E D0 D1 + E D1,)
        The first layer in ``fastmbrl.nn._flat``'s layout; ``out`` may not alias ``master``.
    dims : int array
        Layer widths (D0 = input width, D1 = first hidden width, ...).
    members : int
        E.
    mean, std : float64 arrays (D,)
        Statistics of the first D <= D0 inputs (the observation; the rest, e.g. the action, is
        left as it is).
    """
    W, b = _first_layer(master, dims, members)
    Wo, bo = _first_layer(out, dims, members)
    D = mean.shape[0]
    Wd = W[:, :D, :].astype(np.float64)
    Wo[...] = W
    Wo[:, :D, :] = Wd / std[None, :, None]
    bo[...] = b - np.einsum("i,eij->ej", mean / std, Wd)


def unfold_first_layer_grad(grad, dims, members, mean, std, out):
    """Write into ``out`` the master's first-layer gradient from ``grad``, the raw-input form's
    (layouts and statistics as :func:`fold_first_layer`)."""
    gW, gb = _first_layer(grad, dims, members)
    oW, ob = _first_layer(out, dims, members)
    D = mean.shape[0]
    oW[...] = gW
    oW[:, :D, :] = (gW[:, :D, :].astype(np.float64) / std[None, :, None]
                    - (mean / std)[None, :, None] * gb[:, None, :].astype(np.float64))
    ob[...] = gb


class _Net:
    """One network's flat parameters (and optional target) with its first layer's masters."""

    def __init__(self, params, dims, members, target=None):
        self.params, self.dims, self.members, self.target = params, dims, int(members), target
        self.n0 = int(param_offsets(dims, members)[2])   # W0 and b0
        self.master = params[:self.n0].copy()
        self.target_master = None if target is None else target[:self.n0].copy()
        self.grad0 = np.empty_like(self.master)

    def refold(self, mean, std):
        fold_first_layer(self.master, self.dims, self.members, mean, std, self.params[:self.n0])
        if self.target is not None:
            fold_first_layer(self.target_master, self.dims, self.members, mean, std,
                             self.target[:self.n0])


class ObsScaling:
    """The normalized-input form of a SAC actor and an ``EnsembleCritic`` (module docstring).

    Parameters
    ----------
    agent : fastmbrl.agents.SAC
        Its ``actor`` (flat, ``dims_actor``) is kept folded.
    critic : fastmbrl.agents.ensemble_critic.EnsembleCritic
        Its ``params`` and ``target`` are kept folded (the observation part of their input).

    Attributes
    ----------
    mean, std : float64 arrays (D_obs,)
        The statistics in use (0 and 1 until :meth:`set_stats`).
    """

    def __init__(self, agent, critic):
        D = int(agent.obs_dim)
        if int(critic.obs_dim) != D:
            raise ValueError(f"critic: expected obs_dim {D} (the agent's), got {critic.obs_dim}")
        self.mean = np.zeros(D)
        self.std = np.ones(D)
        self._actor = _Net(agent.actor, agent.dims_actor, 1)
        self._critic = _Net(critic.params, critic.dims, critic.members, critic.target)

    def set_stats(self, obs):
        """Use the mean and standard deviation (floored at ``STD_FLOOR``) of ``obs`` (N, D_obs)
        from now on, and refold the networks."""
        obs = np.asarray(obs, np.float64)
        if obs.ndim != 2 or obs.shape[1] != self.mean.shape[0] or obs.shape[0] < 1:
            raise ValueError(f"obs: expected an array (N >= 1, {self.mean.shape[0]}), got shape "
                             f"{obs.shape}")
        self.mean = obs.mean(axis=0)
        self.std = np.sqrt(np.maximum(obs.var(axis=0), STD_FLOOR ** 2))
        self._actor.refold(self.mean, self.std)
        self._critic.refold(self.mean, self.std)

    def _unfold(self, net, grad):
        unfold_first_layer_grad(grad[:net.n0], net.dims, net.members, self.mean, self.std,
                                net.grad0)
        return net.grad0

    def actor_step(self, agent, grad, lr, beta1, beta2, eps, step):
        """One Adam step of the actor from ``grad``, the raw-input form's gradient (SAC's
        ``_adam_update`` arguments): the master's first layer and the other layers in place."""
        a, n = self._actor, self._actor.n0
        g0 = self._unfold(a, grad)
        m, v = agent.actor_m, agent.actor_v
        _k._adam_update(a.master, g0, m[:n], v[:n], lr, beta1, beta2, eps, step)
        _k._adam_update(agent.actor[n:], grad[n:], m[n:], v[n:], lr, beta1, beta2, eps, step)
        fold_first_layer(a.master, a.dims, 1, self.mean, self.std, agent.actor[:n])

    def critic_step(self, critic, grad):
        """``critic.step(grad)`` (Adam, then the targets' Polyak step) in the normalized form."""
        c = self._critic
        g0 = self._unfold(c, grad)
        critic.step(grad, first_layer=(c.master, g0, c.target_master))
        c.refold(self.mean, self.std)

    def state_dict(self):
        """Copies of the statistics and the masters."""
        return {"mean": self.mean.copy(), "std": self.std.copy(),
                "actor": self._actor.master.copy(), "critic": self._critic.master.copy(),
                "critic_target": self._critic.target_master.copy()}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output (shapes checked); the networks are not refolded
        (their own checkpoints hold the folded form)."""
        cur = self.state_dict()
        for k, v in cur.items():
            new = np.asarray(state.get(k)) if k in state else None
            if new is None or new.shape != v.shape:
                raise ValueError(f"state[{k!r}]: expected an array of shape {v.shape}, got "
                                 f"{None if new is None else new.shape}")
        self.mean = np.asarray(state["mean"], np.float64).copy()
        self.std = np.asarray(state["std"], np.float64).copy()
        self._actor.master[...] = state["actor"]
        self._critic.master[...] = state["critic"]
        self._critic.target_master[...] = state["critic_target"]
