"""NumPy twins of ``_sac_kernels``: same names, same signatures, same results (up to rounding).

Vectorized NumPy throughout; ``FASTMBRL_PUREPYTHON=1`` makes ``fastmbrl.agents.sac`` run on these.
See ``_sac_kernels`` for the layout and the conventions (counter-based RNG, in-place updates); like
it, this module gathers the twins of its parts (``_sac_rng_reference``, ``_sac_loss_reference``,
``_sac_optim_reference``, ``_sac_update_reference``, ``_sac_mb_reference``) under one name, with
the network pieces of ``fastmbrl.nn._mlp_reference``.
"""
from fastmbrl.agents._sac_loss_reference import (_actor_loss_grad_core,  # noqa: F401
                                                 _concat_obs_act, _critic_target_core, _sac_act,
                                                 _sac_actor_loss_grad, _sac_critic_loss_grad,
                                                 _sac_critic_target, _sac_temperature_loss_grad)
from fastmbrl.agents._sac_mb_reference import (_actor_sample, _actor_vjp,  # noqa: F401
                                               _critic_min_vjp)
from fastmbrl.agents._sac_optim_reference import (_adam_coeffs, _adam_range,  # noqa: F401
                                                  _adam_update, _polyak_update)
from fastmbrl.agents._sac_rng_reference import (_draws, _sac_draw_normals,  # noqa: F401
                                                _sac_sample_indices)
from fastmbrl.agents._sac_update_reference import (_sac_update, _sac_update_from,  # noqa: F401
                                                   _sac_workspace)
from fastmbrl.nn._mlp_reference import (_act_size, _act_view, _backward_into,  # noqa: F401
                                        _forward_into, _layer, _mlp_backward, _mlp_forward,
                                        _softplus, _squash_head, _squash_head_vjp)
