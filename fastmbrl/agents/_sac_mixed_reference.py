"""NumPy twin of ``fastmbrl.agents._sac_mixed_kernels`` (same name, same signature)."""
import numpy as np

from fastmbrl.agents._sac_rng_reference import _sac_draw_normals, _sac_sample_indices
from fastmbrl.agents._sac_update_reference import _sac_update


def _sac_update_from_mixed(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v,
                           critic_m, critic_v, alpha_state, steps, hp, scale, bias, r_obs, r_act,
                           r_reward, r_next_obs, r_terminated, n_r_rows, m_obs, m_act, m_reward,
                           m_next_obs, m_terminated, n_m_rows, n_real, batch_size, rng_state,
                           metrics_out, work):
    """Twin of the kernel (work, the kernel's scratch, is not used: the twin allocates its own)."""
    A = r_act.shape[1]
    idx_r = np.empty(n_real, dtype=np.int64)
    idx_m = np.empty(batch_size - n_real, dtype=np.int64)
    noise = np.empty((2, batch_size, A), dtype=r_obs.dtype)
    for u in range(metrics_out.shape[0]):
        _sac_sample_indices(rng_state, n_r_rows, idx_r)
        _sac_sample_indices(rng_state, n_m_rows, idx_m)
        _sac_draw_normals(rng_state, 1, noise)
        parts = [np.concatenate([a[idx_r], b[idx_m]]) for a, b in (
            (r_obs, m_obs), (r_act, m_act), (r_reward, m_reward), (r_next_obs, m_next_obs),
            (r_terminated, m_terminated))]
        _sac_update(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                    critic_v, alpha_state, steps, hp, scale, bias, *parts, noise[0], noise[1],
                    metrics_out[u])
