"""Numba kernels of soft actor-critic (SAC): the critic, actor and temperature steps, Polyak, sampling.

Design
------
- Networks live in the flat layout of ``fastmbrl.nn._flat`` (``W_l (E, D_l, D_l+1), b_l (E, D_l+1)``
  layer after layer): the actor is a 1-member ensemble ``D_obs -> hidden -> 2 D_act`` (mean, raw
  log-std), the twin critics one 2-member ensemble ``D_obs + D_act -> hidden -> 1``.
- Matrix products are ``np.dot`` on contiguous 2-D views, which Numba hands to scipy's BLAS
  (``?gemm``, transposes passed as flags, no copies); everything element-wise (bias + ReLU, the
  squashed-Gaussian head, its backward pass, Adam, Polyak) is a plain loop that LLVM vectorizes for
  the host CPU (AVX-512 where present).
- ``_sac_update`` is one whole gradient step (critic, actor, temperature, Polyak) in one call;
  ``_sac_update_from`` runs n of them, drawing the minibatch indices and the Gaussian noise itself from
  a counter-based generator (splitmix64 of key + counter), so its state is two integers and the
  NumPy twin reproduces every draw. The step's large scratch arrays (``_sac_workspace``) are
  made once by the caller (``SAC`` keeps them) and passed in, not allocated per step.
- The step expects denormals flushed to zero (x86 FTZ/DAZ) on its threads, which ``SAC`` arranges
  around each call (``fastmbrl.nn._numba._flush_denormals_team``): subnormal float32 values, which
  SAC's training produces, take microcode assists on Intel cores. The kernels run correctly
  without it, only slower; the NumPy twins keep IEEE subnormals, and results differ only below
  float32's smallest normal number (1.2e-38).
- Nothing here validates: ``fastmbrl.agents.sac.SAC`` checks shapes and dtypes. Every function the
  agents call has a NumPy twin of the same name and signature in ``sac_reference.py`` (the fused
  update's internals, ``_sac_update_in``, ``_td_targets``, ``_gather_rows``, ``_split``,
  ``_add_range``, ``_polyak_range``, have none: their twin is the composition in ``_sac_update``).

Modules, whose NumPy twins are all in the one readable module ``fastmbrl.agents.sac_reference``:

- ``_sac_rng_kernels``: the random draws (minibatch indices, Gaussian noise);
- ``_sac_loss_kernels``: the actor's action, the critic, actor and temperature losses and gradients;
- ``_sac_optim_kernels``: Adam and the Polyak average;
- ``_sac_update_kernels``: the fused update (``_sac_update``, ``_sac_update_in``,
  ``_sac_update_from``) and its workspace;
- ``_sac_mb_kernels``: the pieces of model-based gradients (``fastmbrl.agents._mb_grads``);
- ``_sac_mixed_kernels``: the update on minibatches mixing two buffers (MBPO).

This module gathers them under one name, with the network pieces of ``fastmbrl.nn._mlp_kernels``:
``fastmbrl.backend.kernels("fastmbrl.agents._sac_kernels")`` gives it or its twin
``sac_reference`` (so does ``kernels`` of any part above).
"""
from fastmbrl.agents._sac_loss_kernels import (_actor_loss_grad_core,  # noqa: F401
                                               _concat_obs_act, _critic_target_core, _sac_act,
                                               _sac_actor_loss_grad, _sac_critic_loss_grad,
                                               _sac_critic_target, _sac_temperature_loss_grad,
                                               _td_targets)
from fastmbrl.agents._sac_mb_kernels import _actor_sample, _actor_vjp, _critic_min_vjp  # noqa: F401
from fastmbrl.agents._sac_optim_kernels import (_adam_coeffs, _adam_range,  # noqa: F401
                                                _adam_update, _add_range, _polyak_range,
                                                _polyak_update, _split)
from fastmbrl.agents._sac_rng_kernels import _sac_draw_normals, _sac_sample_indices  # noqa: F401
from fastmbrl.agents._sac_update_kernels import (_gather_rows, _sac_update,  # noqa: F401
                                                 _sac_update_from, _sac_update_in,
                                                 _sac_workspace)
# the network pieces (re-exported: the twin tests and the rollout compare them by these names)
from fastmbrl.nn._mlp_kernels import (_act_backward, _act_size, _act_view,  # noqa: F401
                                      _backward_into, _bias_act, _bias_grad, _forward_into,
                                      _layer, _mlp_backward, _mlp_forward, _squash_head,
                                      _squash_head_vjp)
