"""Numba kernel of SAC updates on minibatches mixing two buffers (MBPO: real and model rows).

``_sac_update_from_mixed`` is ``_sac_update_kernels._sac_update_from`` with each minibatch made of
``n_real`` rows drawn uniformly with replacement from the first buffer and ``batch_size - n_real``
from the second; per update the draws from stream 1 of ``rng_state`` are: the ``n_real`` real
indices, the model indices, then the 2 ``batch_size`` D_act normals (next-state noise first).
Rows ``0 .. n_real - 1`` of the minibatch are the real ones. NumPy twin of the same name and
signature in ``sac_reference``.
"""
import numpy as np
from numba import njit

from fastmbrl.agents._sac_rng_kernels import _sac_draw_normals, _sac_sample_indices
from fastmbrl.agents._sac_update_kernels import _gather_rows, _sac_update_in


@njit(cache=True)
def _sac_update_from_mixed(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v,
                           critic_m, critic_v, alpha_state, steps, hp, scale, bias, r_obs, r_act,
                           r_reward, r_next_obs, r_terminated, n_r_rows, m_obs, m_act, m_reward,
                           m_next_obs, m_terminated, n_m_rows, n_real, batch_size, rng_state,
                           metrics_out, work):
    """``metrics_out.shape[0]`` SAC updates on minibatches of ``n_real`` rows of the first buffer
    (first ``n_r_rows`` rows of the r_* arrays) and ``batch_size - n_real`` of the second
    (``n_m_rows`` rows of the m_* arrays); metrics_out (n_updates, 6) as ``_sac_update``'s; work
    the scratch of ``_sac_update_kernels._sac_workspace`` at batch_size."""
    B = batch_size
    O = r_obs.shape[1]
    A = r_act.shape[1]
    dt = r_obs.dtype
    n_model = B - n_real
    idx_r = np.empty(n_real, dtype=np.int64)
    idx_m = np.empty(n_model, dtype=np.int64)
    obs = np.empty((B, O), dtype=dt)
    act = np.empty((B, A), dtype=dt)
    rew = np.empty(B, dtype=dt)
    nobs = np.empty((B, O), dtype=dt)
    term = np.empty(B, dtype=np.bool_)
    noise = np.empty((2, B, A), dtype=dt)
    for u in range(metrics_out.shape[0]):
        _sac_sample_indices(rng_state, n_r_rows, idx_r)
        _sac_sample_indices(rng_state, n_m_rows, idx_m)
        _sac_draw_normals(rng_state, 1, noise)
        _gather_rows(r_obs, r_act, r_reward, r_next_obs, r_terminated, idx_r, 0, obs, act, rew,
                     nobs, term)
        _gather_rows(m_obs, m_act, m_reward, m_next_obs, m_terminated, idx_m, n_real, obs, act,
                     rew, nobs, term)
        _sac_update_in(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v,
                       critic_m, critic_v, alpha_state, steps, hp, scale, bias, obs, act, rew,
                       nobs, term, noise[0], noise[1], metrics_out[u], work)
