"""NumPy reference twins of the neural kernels.

Design: each function has exactly the signature of its compiled counterpart in ``fastmbrl._ext._nn``
(selected by ``fastmbrl.nn._kernels``): contiguous float32/float64 arrays in, results written into the
``*_out`` arguments, scalars returned. No validation here; the public API in ``fastmbrl.nn`` checks
shapes and dtypes. These are the ground truth the compiled kernels are tested against, and what runs
when ``FASTMBRL_PUREPYTHON=1``.

Shape letters: E members, B rows per member, I fan-in, O fan-out, D output dims.
"""
import numpy as np


def _sigmoid(z):
    # exp of a non-positive argument only, so no overflow warnings for large |z|.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _softplus(z):
    return np.logaddexp(0.0, z).astype(z.dtype, copy=False)


def _activation_forward(z, activation):
    if activation == 0:
        return z
    if activation == 1:
        return np.maximum(z, 0)
    if activation == 2:
        return np.tanh(z)
    if activation == 3:
        return z * _sigmoid(z)
    raise ValueError(f"activation: unknown code {activation}")


def _activation_derivative(z, activation):
    if activation == 0:
        return np.ones_like(z)
    if activation == 1:
        return (z > 0).astype(z.dtype)
    if activation == 2:
        t = np.tanh(z)
        return 1 - t * t
    if activation == 3:
        s = _sigmoid(z)
        return s * (1 + z * (1 - s))
    raise ValueError(f"activation: unknown code {activation}")


def _dense_forward(x, W, b, activation, z_out, y_out):
    """One ensemble layer: z = x @ W + b, y = act(z).

    Parameters
    ----------
    x : float array (E, B, I)
    W : float array (E, I, O)
    b : float array (E, O)
    activation : int, code from fastmbrl._config.ACTIVATIONS
    z_out : float array (E, B, O), receives the pre-activation (kept for backward)
    y_out : float array (E, B, O), receives the activation
    """
    np.matmul(x, W, out=z_out)
    z_out += b[:, None, :]
    y_out[...] = _activation_forward(z_out, activation)


def _dense_backward(x, W, z, dy, activation, dz_out, dW_out, db_out, dx_out):
    """Backward of ``_dense_forward``.

    Notes
    -----
    dz = dy * act'(z);  dW = x^T dz;  db = sum_rows dz;  dx = dz W^T   (each per member).

    Parameters
    ----------
    x : (E, B, I) layer input;  W : (E, I, O);  z : (E, B, O) pre-activation;  dy : (E, B, O)
    dz_out : (E, B, O) scratch;  dW_out : (E, I, O);  db_out : (E, O);  dx_out : (E, B, I)
    """
    dz_out[...] = dy * _activation_derivative(z, activation)
    np.matmul(x.transpose(0, 2, 1), dz_out, out=dW_out)
    db_out[...] = dz_out.sum(axis=1)
    np.matmul(dz_out, W.transpose(0, 2, 1), out=dx_out)


def _gaussian_nll_grad(mean, logvar, target, dmean_out, dlogvar_out):
    """Heteroskedastic Gaussian MLE loss (course notes, section 4.1) and its gradient.

    Notes
    -----
    loss = 1/(E B) sum_{e,b,d} [(t - m)^2 exp(-lv) + lv]
    dloss/dm = -2 (t - m) exp(-lv) / (E B);   dloss/dlv = (1 - (t - m)^2 exp(-lv)) / (E B)

    Parameters
    ----------
    mean, logvar, target : float arrays (E, B, D)
    dmean_out, dlogvar_out : float arrays (E, B, D)

    Returns
    -------
    loss : float
    """
    n_rows = mean.shape[0] * mean.shape[1]
    diff = target - mean
    inv_var = np.exp(-logvar)
    sq = diff * diff * inv_var
    dmean_out[...] = (-2.0 / n_rows) * diff * inv_var
    dlogvar_out[...] = (1.0 - sq) / n_rows
    return float(np.sum(sq + logvar, dtype=np.float64) / n_rows)


def _soft_bound_forward(raw, max_logvar, min_logvar, lv_out):
    """PETS soft log-variance bounds.

    Notes
    -----
    lv1 = max - softplus(max - raw);  lv = min + softplus(lv1 - min)   (Chua et al. 2018, appendix A.1)

    Parameters
    ----------
    raw : (E, B, D);  max_logvar, min_logvar : (D,);  lv_out : (E, B, D)
    """
    lv1 = max_logvar - _softplus(max_logvar - raw)
    lv_out[...] = min_logvar + _softplus(lv1 - min_logvar)


def _soft_bound_backward(raw, max_logvar, min_logvar, d_lv, d_raw_out, d_max_out, d_min_out):
    """Gradient of ``_soft_bound_forward`` with respect to raw, max_logvar and min_logvar.

    Notes
    -----
    With a = sigmoid(max - raw) and c = sigmoid(lv1 - min):
    dlv/draw = a c;   dlv/dmax = (1 - a) c;   dlv/dmin = 1 - c.
    d_max_out and d_min_out (D,) are summed over members and rows.
    """
    lv1 = max_logvar - _softplus(max_logvar - raw)
    a = _sigmoid(max_logvar - raw)
    c = _sigmoid(lv1 - min_logvar)
    d_raw_out[...] = d_lv * a * c
    d_max_out[...] = np.sum(d_lv * (1 - a) * c, axis=(0, 1))
    d_min_out[...] = np.sum(d_lv * (1 - c), axis=(0, 1))


def _adam_update(param, grad, m, v, seg_end, seg_decay, lr, beta1, beta2, eps, step):
    """One Adam step in place on a flat parameter vector, with per-segment L2 weight decay.

    Notes
    -----
    g = grad + decay * param (L2, coupled, as PETS and torch.optim.Adam(weight_decay=...));
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)      (Kingma & Ba 2015, Alg. 1)

    Parameters
    ----------
    param, grad, m, v : float arrays (n,), param/m/v updated in place
    seg_end : int64 array (S,), exclusive end of each decay segment (last = n)
    seg_decay : float64 array (S,), weight decay of each segment
    lr, beta1, beta2, eps : float;  step : int, 1-based step count after this update
    """
    start = 0
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    for end, decay in zip(seg_end, seg_decay):
        p = param[start:end]
        g = grad[start:end]
        if decay != 0.0:
            g = g + decay * p
        mm = m[start:end]
        vv = v[start:end]
        mm *= beta1
        mm += (1 - beta1) * g
        vv *= beta2
        vv += (1 - beta2) * g * g
        p -= (lr * (mm / bc1) / (np.sqrt(vv / bc2) + eps)).astype(p.dtype, copy=False)
        start = end


def _train_workspace_size(layer_dims, ensemble_size, chunk_rows, n_threads):
    """Scratch elements ``_gaussian_train_step`` needs; the twin allocates its own, so 0."""
    return 0


def _gaussian_train_step(x, target, flat, grad_flat, layer_dims, activation, bounds, bounds_grad,
                         m, v, bm, bv, seg_end, seg_decay, lr, beta1, beta2, eps, step,
                         bound_penalty, update, member_loss, work, chunk_rows, n_threads,
                         out=None):
    """One minibatch step of a Gaussian ensemble MLP, composed from the twins above.

    Forward through every layer (``_dense_forward``), mean = out[..., :D], logvar soft-bounded from
    out[..., D:] (``_soft_bound_forward``), the NLL (``_gaussian_nll_grad``) plus
    ``bound_penalty * (sum(max_logvar) - sum(min_logvar))``, backward (``_soft_bound_backward``,
    ``_dense_backward``) and Adam (``_adam_update``) on the network and on the bounds.

    Parameters
    ----------
    x : float array (E, B, D_in);  target : float array (E, B, D), ``layer_dims[-1] == 2 D``
    flat, grad_flat : float arrays (n_params,), the network (``fastmbrl.nn._flat``) and its gradient
    layer_dims : int64 array (L+1,);  activation : int, hidden activation code
    bounds : float array (2 D,) = [max_logvar, min_logvar], updated;  bounds_grad : (2 D,), written
    m, v : float arrays (n_params,);  bm, bv : (2 D,): Adam moments, updated
    seg_end : int64 (S,);  seg_decay : float64 (S,): weight decay per segment of ``flat``
    lr, beta1, beta2, eps : float;  step : int, 1-based Adam count after this update
    bound_penalty : float;  update : bool, False only evaluates
    member_loss : float64 array (E,), receives each member's NLL (mean over its rows)
    work, chunk_rows, n_threads : used by the compiled kernel only
    out : float array (E, B, 2 D) or None, receives the network output (mean, then the raw
        log-variance) of every row

    Returns
    -------
    loss : float, mean of ``member_loss`` before the update; if not finite nothing is updated
    """
    E, B = x.shape[0], x.shape[1]
    D = target.shape[2]
    n_layers = len(layer_dims) - 1
    dtype = flat.dtype
    params = _unflatten(flat, layer_dims, E)
    grads = _unflatten(grad_flat, layer_dims, E)
    inputs, zs = [x], []
    for layer in range(n_layers):
        O = int(layer_dims[layer + 1])
        z = np.empty((E, B, O), dtype)
        y = np.empty((E, B, O), dtype)
        act = activation if layer < n_layers - 1 else 0
        _dense_forward(inputs[-1], params[2 * layer], params[2 * layer + 1], act, z, y)
        zs.append(z)
        inputs.append(y)
    y = inputs[-1]
    if out is not None:
        out[...] = y
    mean = np.ascontiguousarray(y[..., :D])
    raw = np.ascontiguousarray(y[..., D:])
    max_lv, min_lv = bounds[:D], bounds[D:]
    lv = np.empty_like(raw)
    _soft_bound_forward(raw, max_lv, min_lv, lv)
    dmean = np.empty_like(mean)
    dlv = np.empty_like(mean)
    for e in range(E):
        # per member, so that each member's loss is known; the gradient scale 1/B becomes 1/(E B)
        member_loss[e] = _gaussian_nll_grad(mean[e:e + 1], lv[e:e + 1], target[e:e + 1],
                                            dmean[e:e + 1], dlv[e:e + 1])
    loss = float(np.mean(member_loss))
    if not update or not np.isfinite(loss):
        return loss
    dmean /= E
    dlv /= E
    d_raw = np.empty_like(raw)
    d_max = np.empty_like(max_lv)
    d_min = np.empty_like(min_lv)
    _soft_bound_backward(raw, max_lv, min_lv, dlv, d_raw, d_max, d_min)
    bounds_grad[:D] = d_max + bound_penalty
    bounds_grad[D:] = d_min - bound_penalty
    grad_out = np.concatenate([dmean, d_raw], axis=2)
    for layer in range(n_layers - 1, -1, -1):
        act = activation if layer < n_layers - 1 else 0
        dz = np.empty_like(zs[layer])
        dx = np.empty_like(inputs[layer])
        _dense_backward(inputs[layer], params[2 * layer], zs[layer], grad_out, act, dz,
                        grads[2 * layer], grads[2 * layer + 1], dx)
        grad_out = dx
    _adam_update(flat, grad_flat, m, v, seg_end, seg_decay, lr, beta1, beta2, eps, step)
    _adam_update(bounds, bounds_grad, bm, bv, np.array([2 * D], np.int64), np.zeros(1), lr, beta1,
                 beta2, eps, step)
    return loss


def _unflatten(flat, layer_dims, ensemble_size):
    # local import keeps this module importable on its own
    from fastmbrl.nn._flat import unflatten
    return unflatten(flat, layer_dims, ensemble_size)
