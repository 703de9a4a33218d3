"""NumPy twins of ``_sac_optim_kernels`` (same names, same signatures)."""
import numpy as np


def _adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    """Twin of the kernel (torch.optim.Adam's formula)."""
    m[...] = beta1 * m + (1.0 - beta1) * grad
    v[...] = beta2 * v + (1.0 - beta2) * grad * grad
    step_size = lr / (1.0 - beta1 ** step)
    param -= (step_size * m / (np.sqrt(v) / np.sqrt(1.0 - beta2 ** step) + eps)).astype(param.dtype)


def _polyak_update(target, source, tau):
    """Twin of the kernel."""
    target[...] = target * (1.0 - tau) + source * tau


def _adam_coeffs(like, lr, beta1, beta2, eps, step):
    """Twin of the kernel."""
    return np.array([beta1, 1.0 - beta1, beta2, 1.0 - beta2, lr / (1.0 - beta1 ** step),
                     1.0 / np.sqrt(1.0 - beta2 ** step), eps], dtype=like.dtype)


def _adam_range(param, grad, m, v, c, i0, i1):
    """Twin of the kernel."""
    b1, nb1, b2, nb2, step_size, inv_bc2s, ep = c
    g = grad[i0:i1]
    m[i0:i1] = b1 * m[i0:i1] + nb1 * g
    v[i0:i1] = b2 * v[i0:i1] + nb2 * g * g
    param[i0:i1] -= step_size * m[i0:i1] / (np.sqrt(v[i0:i1]) * inv_bc2s + ep)
