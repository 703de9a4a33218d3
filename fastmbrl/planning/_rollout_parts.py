"""Parts of the model rollout (``fastmbrl.planning.rollout``): the work arrays of one worker's
kernel call, the kernel's compiled entry points (one per argument types, compiled or loaded from
the cache once per process), and the objective a ModelRollout hands the planners.
"""
import threading

import numpy as np

from fastmbrl.planning._checks import _writable

_ENTRY_LOCK = threading.Lock()
_ENTRY_POINTS = {}


def _entry_point(args, key):
    """The kernel's compiled entry point for these argument types (compiled or loaded once)."""
    ep = _ENTRY_POINTS.get(key)
    if ep is None:
        from numba import typeof

        from fastmbrl.planning._kernels import _rollout_values
        with _ENTRY_LOCK:
            ep = _ENTRY_POINTS.get(key)
            if ep is None:
                ep = _rollout_values.compile(tuple(typeof(a) for a in args))
                _ENTRY_POINTS[key] = ep
    return ep


class _Buffers:
    """Every array one worker's kernel call needs for ``R`` rows, allocated once and reused."""

    def __init__(self, n_rows, horizon, dims, d_obs, d_act, d_out, dtype, n_perm_steps, noisy,
                 bonus_members=0):
        max_hidden = int(max(dims[1:-1])) if len(dims) > 2 else 1
        self.perm_uniforms = np.zeros((n_perm_steps, n_rows))
        self.perms = np.zeros((n_perm_steps, n_rows), dtype=np.int64)
        self.noise = np.zeros((horizon, n_rows, d_out) if noisy else (1, 1, d_out), dtype=dtype)
        self.states = np.zeros((horizon + 1, n_rows, d_obs), dtype=dtype)
        self.act_rows = np.zeros((horizon, n_rows, d_act), dtype=dtype)
        self.rewards = np.zeros((horizon, n_rows), dtype=dtype)
        self.dones = np.zeros((horizon, n_rows), dtype=np.bool_)
        self.x = np.zeros((n_rows, int(dims[0])), dtype=dtype)
        self.y = np.zeros((n_rows, int(dims[-1])), dtype=dtype)
        self.std = np.zeros((n_rows, d_out), dtype=dtype)
        pred_rows = 1 if noisy else n_rows          # "expectation": one member's mean and variance
        self.pred_mean = np.zeros((1, pred_rows, d_out), dtype=dtype)
        self.pred_var = np.zeros((1, pred_rows, d_out), dtype=dtype)
        self.h0 = np.zeros(n_rows * max_hidden, dtype=dtype)
        self.h1 = np.zeros(n_rows * max_hidden, dtype=dtype)
        self.ebuf = np.zeros(2 * n_rows * max(max_hidden, d_out), dtype=dtype)
        # optimism bonus: every member's mean at every row (only when on; else placeholders)
        b_shape = (bonus_members, n_rows, d_out) if bonus_members > 0 else (1, 1, d_out)
        self.bonus_mean = np.zeros(b_shape, dtype=dtype)
        self.bonus_var = np.zeros(b_shape, dtype=dtype)
        self.bonus = np.zeros((horizon, n_rows) if bonus_members > 0 else (1, 1), dtype=dtype)


class _Objective:
    """A ModelRollout bound to one model snapshot and observation; call it on (P, H, D_act)."""

    def __init__(self, rollout, arrays, obs, dtype, d_obs, d_act, reward_mode, term_mode,
                 handles):
        self.rollout = rollout
        self.arrays = arrays
        self.obs = obs
        self.dtype = dtype
        self.d_obs = d_obs
        self.d_act = d_act
        self.reward_mode = reward_mode
        self.term_mode = term_mode
        self.plain_idx = np.flatnonzero(~arrays.angle_mask).astype(np.int64)
        self.angle_idx = np.flatnonzero(arrays.angle_mask).astype(np.int64)
        self.kernel_reward_fn, self.kernel_term_fn = handles
        self.entry_point = None

    def __call__(self, actions):
        actions = np.asarray(actions)
        if actions.ndim != 3 or actions.shape[2] != self.d_act:
            raise ValueError(f"actions: expected shape (P, H, {self.d_act}), got {actions.shape}")
        actions = _writable(np.ascontiguousarray(actions, dtype=self.dtype))
        return self.rollout.evaluate(self, actions)

    def evaluate_until(self, actions, deadline, clock):
        """Score candidates (P, H, D_act) in order while ``clock()`` allows;
        ``(values, n, n_aborted)``.

        See ``ModelRollout.evaluate_until``: values (P,) of which the first ``n`` are set.
        """
        actions = np.asarray(actions)
        if actions.ndim != 3 or actions.shape[2] != self.d_act:
            raise ValueError(f"actions: expected shape (P, H, {self.d_act}), got {actions.shape}")
        actions = _writable(np.ascontiguousarray(actions, dtype=self.dtype))
        return self.rollout.evaluate_until(self, actions, deadline, clock)

    def budget_check(self, seconds, horizon):
        """None when one candidate of ``horizon`` steps is estimated to fit in ``seconds``, else
        the reason it does not (see ``ModelRollout.budget_check``)."""
        return self.rollout.budget_check(self, seconds, horizon)
