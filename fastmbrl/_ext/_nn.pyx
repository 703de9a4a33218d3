# cython: language_level=3
"""Cython wrappers of the C neural kernels in ``csrc/fm_nn.c``.

Design
------
* Each ``def`` here has exactly the signature of its NumPy twin in ``fastmbrl.nn._reference``:
  float32 or float64 C-contiguous arrays in (fused ``floating`` memoryviews), results written into
  the ``*_out`` arguments, scalars returned. Only cheap shape-consistency checks (so that a wrong
  call raises instead of writing out of bounds); the public API in ``fastmbrl.nn`` validates values.
* Matrix products: the C code calls ``scipy.linalg.cython_blas.sgemm``/``dgemm`` through a function
  pointer handed over here, so no BLAS is linked at build time; row-major order is handled in C.
* Every C call runs with the GIL released. Nothing here allocates per step: the train step's
  workspace is allocated once per batch size by ``fastmbrl.nn.train``.
* ``_gaussian_train_step`` takes ndarrays (typed memoryviews cost more per argument:
  docs/performance.md) and runs a whole minibatch step (forward, loss, backward, Adam) in one call. While it runs, scipy's
  OpenBLAS is held to one thread through hooks found by ``fastmbrl.nn.train``, so the threads of
  the step are the only ones (its members shared out when ``n_threads > 1``).
"""
from cython cimport floating
from libc.stdint cimport int64_t, uintptr_t

cimport numpy as cnp
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()


# Hot-path specialisations, declared in pairs on purpose: every C kernel exists once per dtype
# (``*_f32`` / ``*_f64``, compiled from one body in csrc/fm_nn_body.h), and each wrapper below
# picks one for its fused ``floating`` arguments. The pairs differ only in float/double.
cdef extern from "fm_nn.h" nogil:
    ctypedef void (*fm_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                                 float *, int *, float *, float *, int *)
    ctypedef void (*fm_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                                 double *, int *, double *, double *, int *)
    int fm_have_openmp()
    int fm_have_avx2()
    void fm_force_portable(int on)
    void fm_dense_forward_f32(fm_sgemm_fn g, int64_t E, int64_t B, int64_t I, int64_t O,
                              const float *x, const float *W, const float *b, int act, float *z,
                              float *y)
    void fm_dense_forward_f64(fm_dgemm_fn g, int64_t E, int64_t B, int64_t I, int64_t O,
                              const double *x, const double *W, const double *b, int act,
                              double *z, double *y)
    void fm_dense_backward_f32(fm_sgemm_fn g, int64_t E, int64_t B, int64_t I, int64_t O,
                               const float *x, const float *W, const float *z, const float *dy,
                               int act, float *dz, float *dW, float *db, float *dx)
    void fm_dense_backward_f64(fm_dgemm_fn g, int64_t E, int64_t B, int64_t I, int64_t O,
                               const double *x, const double *W, const double *z, const double *dy,
                               int act, double *dz, double *dW, double *db, double *dx)
    double fm_gaussian_nll_grad_f32(int64_t n, const float *mean, const float *logvar,
                                    const float *target, double scale, float *dmean,
                                    float *dlogvar)
    double fm_gaussian_nll_grad_f64(int64_t n, const double *mean, const double *logvar,
                                    const double *target, double scale, double *dmean,
                                    double *dlogvar)
    void fm_soft_bound_forward_f32(int64_t rows, int64_t D, const float *raw, const float *mx,
                                   const float *mn, float *lv)
    void fm_soft_bound_forward_f64(int64_t rows, int64_t D, const double *raw, const double *mx,
                                   const double *mn, double *lv)
    void fm_soft_bound_backward_f32(int64_t rows, int64_t D, const float *raw, const float *mx,
                                    const float *mn, const float *dlv, float *draw, float *dmax,
                                    float *dmin)
    void fm_soft_bound_backward_f64(int64_t rows, int64_t D, const double *raw, const double *mx,
                                    const double *mn, const double *dlv, double *draw,
                                    double *dmax, double *dmin)
    void fm_adam_update_f32(int64_t n, float *param, float *grad, const float *grad2, float *m,
                            float *v, int64_t n_seg, const int64_t *seg_end,
                            const double *seg_decay, double lr, double beta1, double beta2,
                            double eps, int64_t step)
    void fm_adam_update_f64(int64_t n, double *param, double *grad, const double *grad2,
                            double *m, double *v, int64_t n_seg, const int64_t *seg_end,
                            const double *seg_decay, double lr, double beta1, double beta2,
                            double eps, int64_t step)
    int64_t fm_train_workspace_size(int64_t n_layers, const int64_t *dims, int64_t ensemble_size,
                                    int64_t chunk_rows, int64_t n_threads)
    double fm_gaussian_train_step_f32(fm_sgemm_fn g, const float *x, const float *target,
                                      int64_t E, int64_t B, int64_t n_layers, const int64_t *dims,
                                      int act, float *flat, float *grad_flat, float *bounds,
                                      float *bounds_grad, float *m, float *v, float *bm,
                                      float *bv, int64_t n_seg, const int64_t *seg_end,
                                      const double *seg_decay, double lr, double beta1,
                                      double beta2, double eps, int64_t step,
                                      double bound_penalty, int update, double *member_loss,
                                      float *out, float *work, int64_t chunk_rows, int64_t n_threads)
    double fm_gaussian_train_step_f64(fm_dgemm_fn g, const double *x, const double *target,
                                      int64_t E, int64_t B, int64_t n_layers, const int64_t *dims,
                                      int act, double *flat, double *grad_flat, double *bounds,
                                      double *bounds_grad, double *m, double *v, double *bm,
                                      double *bv, int64_t n_seg, const int64_t *seg_end,
                                      const double *seg_decay, double lr, double beta1,
                                      double beta2, double eps, int64_t step,
                                      double bound_penalty, int update, double *member_loss,
                                      double *out, double *work, int64_t chunk_rows, int64_t n_threads)


ctypedef int (*blas_get_fn)() noexcept nogil
ctypedef void (*blas_set_fn)(int) noexcept nogil

cdef blas_get_fn _blas_get = NULL
cdef blas_set_fn _blas_set = NULL


def _set_blas_thread_hooks(uintptr_t get_addr, uintptr_t set_addr):
    """Install scipy's OpenBLAS ``get_num_threads``/``set_num_threads`` (addresses; 0 disables)."""
    global _blas_get, _blas_set
    if get_addr == 0 or set_addr == 0:
        _blas_get = NULL
        _blas_set = NULL
    else:
        _blas_get = <blas_get_fn>get_addr
        _blas_set = <blas_set_fn>set_addr


def _have_blas_thread_hooks():
    """True when the train step can hold scipy's OpenBLAS to one thread itself."""
    return _blas_get != NULL


def _have_openmp():
    """True when the extension was built with OpenMP (``n_threads > 1`` is honoured)."""
    return bool(fm_have_openmp())


def _have_avx2():
    """True when the AVX2+FMA variants of the kernels run on this CPU."""
    return bool(fm_have_avx2())


def _force_portable(bint on):
    """Tests only: make every kernel take its portable (non-AVX2) variant while ``on``."""
    fm_force_portable(1 if on else 0)


cdef inline void _check(bint ok, str name, str what) except *:
    if not ok:
        raise ValueError(f"{name}: {what}")


def _dense_forward(const floating[:, :, ::1] x, const floating[:, :, ::1] W,
                   const floating[:, ::1] b, int activation, floating[:, :, ::1] z_out,
                   floating[:, :, ::1] y_out):
    """One ensemble layer: ``z = x @ W + b``, ``y = act(z)`` (bias and activation fused).

    Parameters
    ----------
    x : float32/float64 array (E, B, I)                       # IN
    W : array (E, I, O);  b : array (E, O)                    # IN
    activation : int, code of ``fastmbrl._config.ACTIVATIONS``
    z_out : array (E, B, O), pre-activation                   # OUT
    y_out : array (E, B, O), activation                       # OUT
    """
    cdef int64_t E = x.shape[0], B = x.shape[1], I = x.shape[2], O = W.shape[2]
    _check(W.shape[0] == E and W.shape[1] == I, "W", f"expected ({E}, {I}, O), got {tuple(W.shape)[:3]}")
    _check(b.shape[0] == E and b.shape[1] == O, "b", f"expected ({E}, {O}), got {tuple(b.shape)[:2]}")
    for name, arr in (("z_out", z_out), ("y_out", y_out)):
        _check(arr.shape[0] == E and arr.shape[1] == B and arr.shape[2] == O, name,
               f"expected ({E}, {B}, {O}), got {tuple(arr.shape)[:3]}")
    _check(0 <= activation <= 3, "activation", f"unknown code {activation}")
    _check(I > 0, "x", "expected at least one input feature")
    if E == 0 or B == 0 or O == 0:
        return
    with nogil:
        if floating is float:
            fm_dense_forward_f32(<fm_sgemm_fn>sgemm, E, B, I, O, &x[0, 0, 0], &W[0, 0, 0],
                                 &b[0, 0], activation, &z_out[0, 0, 0], &y_out[0, 0, 0])
        else:
            fm_dense_forward_f64(<fm_dgemm_fn>dgemm, E, B, I, O, &x[0, 0, 0], &W[0, 0, 0],
                                 &b[0, 0], activation, &z_out[0, 0, 0], &y_out[0, 0, 0])


def _dense_backward(const floating[:, :, ::1] x, const floating[:, :, ::1] W,
                    const floating[:, :, ::1] z, const floating[:, :, ::1] dy, int activation,
                    floating[:, :, ::1] dz_out, floating[:, :, ::1] dW_out,
                    floating[:, ::1] db_out, floating[:, :, ::1] dx_out):
    """Backward of ``_dense_forward``: dz = dy act'(z), dW = x^T dz, db = sum_rows dz, dx = dz W^T.

    Parameters
    ----------
    x : (E, B, I);  W : (E, I, O);  z : (E, B, O);  dy : (E, B, O)           # IN
    dz_out : (E, B, O);  dW_out : (E, I, O);  db_out : (E, O);  dx_out : (E, B, I)   # OUT
    """
    cdef int64_t E = x.shape[0], B = x.shape[1], I = x.shape[2], O = W.shape[2]
    _check(W.shape[0] == E and W.shape[1] == I, "W", f"expected ({E}, {I}, O), got {tuple(W.shape)[:3]}")
    for name, arr in (("z", z), ("dy", dy), ("dz_out", dz_out)):
        _check(arr.shape[0] == E and arr.shape[1] == B and arr.shape[2] == O, name,
               f"expected ({E}, {B}, {O}), got {tuple(arr.shape)[:3]}")
    _check(dW_out.shape[0] == E and dW_out.shape[1] == I and dW_out.shape[2] == O, "dW_out",
           f"expected ({E}, {I}, {O}), got {tuple(dW_out.shape)[:3]}")
    _check(db_out.shape[0] == E and db_out.shape[1] == O, "db_out",
           f"expected ({E}, {O}), got {tuple(db_out.shape)[:2]}")
    _check(dx_out.shape[0] == E and dx_out.shape[1] == B and dx_out.shape[2] == I, "dx_out",
           f"expected ({E}, {B}, {I}), got {tuple(dx_out.shape)[:3]}")
    _check(0 <= activation <= 3, "activation", f"unknown code {activation}")
    if E == 0 or B == 0 or O == 0 or I == 0:
        return
    with nogil:
        if floating is float:
            fm_dense_backward_f32(<fm_sgemm_fn>sgemm, E, B, I, O, &x[0, 0, 0], &W[0, 0, 0],
                                  &z[0, 0, 0], &dy[0, 0, 0], activation, &dz_out[0, 0, 0],
                                  &dW_out[0, 0, 0], &db_out[0, 0], &dx_out[0, 0, 0])
        else:
            fm_dense_backward_f64(<fm_dgemm_fn>dgemm, E, B, I, O, &x[0, 0, 0], &W[0, 0, 0],
                                  &z[0, 0, 0], &dy[0, 0, 0], activation, &dz_out[0, 0, 0],
                                  &dW_out[0, 0, 0], &db_out[0, 0], &dx_out[0, 0, 0])


def _gaussian_nll_grad(const floating[:, :, ::1] mean, const floating[:, :, ::1] logvar,
                       const floating[:, :, ::1] target, floating[:, :, ::1] dmean_out,
                       floating[:, :, ::1] dlogvar_out):
    """Gaussian NLL ``1/(E B) sum (t - m)^2 exp(-lv) + lv`` and its gradient.

    Parameters
    ----------
    mean, logvar, target : arrays (E, B, D)                   # IN
    dmean_out, dlogvar_out : arrays (E, B, D)                 # OUT

    Returns
    -------
    loss : float
    """
    cdef int64_t E = mean.shape[0], B = mean.shape[1], D = mean.shape[2]
    cdef double loss = 0.0
    for name, arr in (("logvar", logvar), ("target", target), ("dmean_out", dmean_out),
                      ("dlogvar_out", dlogvar_out)):
        _check(arr.shape[0] == E and arr.shape[1] == B and arr.shape[2] == D, name,
               f"expected ({E}, {B}, {D}), got {tuple(arr.shape)[:3]}")
    if E * B == 0:
        return float("nan")
    if D == 0:
        return 0.0
    with nogil:
        if floating is float:
            loss = fm_gaussian_nll_grad_f32(E * B * D, &mean[0, 0, 0], &logvar[0, 0, 0],
                                            &target[0, 0, 0], 1.0 / (E * B), &dmean_out[0, 0, 0],
                                            &dlogvar_out[0, 0, 0])
        else:
            loss = fm_gaussian_nll_grad_f64(E * B * D, &mean[0, 0, 0], &logvar[0, 0, 0],
                                            &target[0, 0, 0], 1.0 / (E * B), &dmean_out[0, 0, 0],
                                            &dlogvar_out[0, 0, 0])
    return loss / (E * B)


def _soft_bound_forward(const floating[:, :, ::1] raw, const floating[::1] max_logvar,
                        const floating[::1] min_logvar, floating[:, :, ::1] lv_out):
    """PETS soft bounds ``lv = min + softplus(max - softplus(max - raw) - min)``.

    Parameters
    ----------
    raw : array (E, B, D)                                     # IN
    max_logvar, min_logvar : arrays (D,)                      # IN
    lv_out : array (E, B, D)                                  # OUT
    """
    cdef int64_t E = raw.shape[0], B = raw.shape[1], D = raw.shape[2]
    _check(max_logvar.shape[0] == D, "max_logvar", f"expected ({D},), got ({max_logvar.shape[0]},)")
    _check(min_logvar.shape[0] == D, "min_logvar", f"expected ({D},), got ({min_logvar.shape[0]},)")
    _check(lv_out.shape[0] == E and lv_out.shape[1] == B and lv_out.shape[2] == D, "lv_out",
           f"expected ({E}, {B}, {D}), got {tuple(lv_out.shape)[:3]}")
    if E * B * D == 0:
        return
    with nogil:
        if floating is float:
            fm_soft_bound_forward_f32(E * B, D, &raw[0, 0, 0], &max_logvar[0], &min_logvar[0],
                                      &lv_out[0, 0, 0])
        else:
            fm_soft_bound_forward_f64(E * B, D, &raw[0, 0, 0], &max_logvar[0], &min_logvar[0],
                                      &lv_out[0, 0, 0])


def _soft_bound_backward(const floating[:, :, ::1] raw, const floating[::1] max_logvar,
                         const floating[::1] min_logvar, const floating[:, :, ::1] d_lv,
                         floating[:, :, ::1] d_raw_out, floating[::1] d_max_out,
                         floating[::1] d_min_out):
    """Gradient of ``_soft_bound_forward`` with respect to raw, max_logvar and min_logvar.

    Parameters
    ----------
    raw, d_lv : arrays (E, B, D);  max_logvar, min_logvar : arrays (D,)     # IN
    d_raw_out : array (E, B, D);  d_max_out, d_min_out : arrays (D,), summed over members and rows  # OUT
    """
    cdef int64_t E = raw.shape[0], B = raw.shape[1], D = raw.shape[2]
    for name, arr in (("max_logvar", max_logvar), ("min_logvar", min_logvar),
                      ("d_max_out", d_max_out), ("d_min_out", d_min_out)):
        _check(arr.shape[0] == D, name, f"expected ({D},), got ({arr.shape[0]},)")
    for name, arr in (("d_lv", d_lv), ("d_raw_out", d_raw_out)):
        _check(arr.shape[0] == E and arr.shape[1] == B and arr.shape[2] == D, name,
               f"expected ({E}, {B}, {D}), got {tuple(arr.shape)[:3]}")
    if D == 0:
        return
    if E * B == 0:
        d_max_out[:] = 0
        d_min_out[:] = 0
        return
    with nogil:
        if floating is float:
            fm_soft_bound_backward_f32(E * B, D, &raw[0, 0, 0], &max_logvar[0], &min_logvar[0],
                                       &d_lv[0, 0, 0], &d_raw_out[0, 0, 0], &d_max_out[0],
                                       &d_min_out[0])
        else:
            fm_soft_bound_backward_f64(E * B, D, &raw[0, 0, 0], &max_logvar[0], &min_logvar[0],
                                       &d_lv[0, 0, 0], &d_raw_out[0, 0, 0], &d_max_out[0],
                                       &d_min_out[0])


def _adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                 const int64_t[::1] seg_end, const double[::1] seg_decay, double lr, double beta1,
                 double beta2, double eps, int64_t step):
    """One Adam step in place on a flat vector with per-segment coupled L2 weight decay.

    Parameters
    ----------
    param, m, v : arrays (n,), updated in place               # IN/OUT
    grad : array (n,)                                         # IN
    seg_end : int64 array (S,), exclusive segment ends, last = n;  seg_decay : float64 array (S,)
    lr, beta1, beta2, eps : float;  step : int, 1-based count after this update
    """
    cdef int64_t n = param.shape[0]
    for name, arr in (("grad", grad), ("m", m), ("v", v)):
        _check(arr.shape[0] == n, name, f"expected ({n},), got ({arr.shape[0]},)")
    _check(seg_end.shape[0] == seg_decay.shape[0], "seg_decay",
           f"expected {seg_end.shape[0]} values like seg_end, got {seg_decay.shape[0]}")
    _check(seg_end.shape[0] > 0 and seg_end[seg_end.shape[0] - 1] == n, "seg_end",
           f"expected the last end to be {n}")
    _check(step >= 1, "step", f"expected >= 1, got {step}")
    if n == 0:
        return
    with nogil:
        if floating is float:
            fm_adam_update_f32(n, &param[0], <float *>&grad[0], NULL, &m[0], &v[0],
                               seg_end.shape[0], &seg_end[0], &seg_decay[0], lr, beta1, beta2,
                               eps, step)
        else:
            fm_adam_update_f64(n, &param[0], <double *>&grad[0], NULL, &m[0], &v[0],
                               seg_end.shape[0], &seg_end[0], &seg_decay[0], lr, beta1, beta2,
                               eps, step)


def _train_workspace_size(cnp.ndarray layer_dims, int64_t ensemble_size, int64_t chunk_rows,
                          int64_t n_threads):
    """Elements of the workspace ``_gaussian_train_step`` needs (layer_dims: int64 (L+1,))."""
    cdef int64_t n_layers = layer_dims.shape[0] - 1
    return int(fm_train_workspace_size(n_layers, <const int64_t *>cnp.PyArray_DATA(layer_dims),
                                       ensemble_size, chunk_rows, n_threads))


cdef inline bint _is(cnp.ndarray a, int typenum, int64_t size) noexcept:
    return (cnp.PyArray_TYPE(a) == typenum and cnp.PyArray_IS_C_CONTIGUOUS(a)
            and (size < 0 or cnp.PyArray_SIZE(a) == size))


cdef int _check_step_args(cnp.ndarray x, cnp.ndarray target, cnp.ndarray flat,
                          cnp.ndarray grad_flat, cnp.ndarray layer_dims, cnp.ndarray bounds,
                          cnp.ndarray bounds_grad, cnp.ndarray m, cnp.ndarray v, cnp.ndarray bm,
                          cnp.ndarray bv, cnp.ndarray seg_end, cnp.ndarray seg_decay,
                          cnp.ndarray member_loss, cnp.ndarray work, int64_t chunk_rows,
                          int64_t n_threads) except -1:
    """Integer-only consistency checks (about a microsecond) so that no call can write out of bounds."""
    cdef int64_t L = layer_dims.shape[0] - 1, n_params = 0, k
    cdef int t = cnp.PyArray_TYPE(flat)
    _check(_is(layer_dims, cnp.NPY_INT64, -1) and layer_dims.ndim == 1 and 1 <= L <= 64,
           "layer_dims", "expected a contiguous int64 array of 2 to 65 widths")
    cdef const int64_t *dims = <const int64_t *>cnp.PyArray_DATA(layer_dims)
    for k in range(L + 1):
        _check(dims[k] >= 1, "layer_dims", "expected positive widths")
    for k in range(L):
        n_params += x.shape[0] * (dims[k] * dims[k + 1] + dims[k + 1])
    cdef int64_t D = dims[L] // 2, E = x.shape[0] if x.ndim == 3 else 0
    _check(t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64, "flat", "expected float32 or float64")
    _check(dims[L] % 2 == 0, "layer_dims", "expected an even output width 2 D")
    _check(x.ndim == 3 and _is(x, t, -1) and x.shape[2] == dims[0] and x.shape[1] >= 1, "x",
           "expected a C-contiguous (E, B, D_in) array of the parameters' dtype")
    _check(target.ndim == 3 and _is(target, t, E * x.shape[1] * D) and target.shape[0] == E
           and target.shape[2] == D, "target", "expected a C-contiguous (E, B, D) array like x")
    for name, arr, size in (("flat", flat, n_params), ("grad_flat", grad_flat, n_params),
                            ("m", m, n_params), ("v", v, n_params), ("bounds", bounds, 2 * D),
                            ("bounds_grad", bounds_grad, 2 * D), ("bm", bm, 2 * D),
                            ("bv", bv, 2 * D)):
        _check(_is(arr, t, size), name, f"expected a C-contiguous array of {size} elements of the "
               f"parameters' dtype")
    _check(_is(seg_end, cnp.NPY_INT64, -1) and _is(seg_decay, cnp.NPY_FLOAT64, seg_end.shape[0])
           and seg_end.shape[0] >= 1 and seg_end[seg_end.shape[0] - 1] == n_params, "seg_end",
           f"expected int64 segment ends finishing at {n_params}, with float64 seg_decay alike")
    _check(_is(member_loss, cnp.NPY_FLOAT64, E), "member_loss", f"expected float64 ({E},)")
    _check(chunk_rows >= 1 and n_threads >= 1, "chunk_rows", "expected chunk_rows, n_threads >= 1")
    _check(_is(work, t, -1) and cnp.PyArray_SIZE(work) >= fm_train_workspace_size(
        L, dims, E, chunk_rows, n_threads), "work", "too small for chunk_rows and n_threads")
    return 0


def _gaussian_train_step(cnp.ndarray x, cnp.ndarray target, cnp.ndarray flat,
                         cnp.ndarray grad_flat, cnp.ndarray layer_dims, int activation,
                         cnp.ndarray bounds, cnp.ndarray bounds_grad, cnp.ndarray m,
                         cnp.ndarray v, cnp.ndarray bm, cnp.ndarray bv, cnp.ndarray seg_end,
                         cnp.ndarray seg_decay, double lr, double beta1, double beta2, double eps,
                         int64_t step, double bound_penalty, bint update,
                         cnp.ndarray member_loss, cnp.ndarray work, int64_t chunk_rows,
                         int64_t n_threads, cnp.ndarray out=None):
    """One fused minibatch step of a Gaussian ensemble MLP (or, with ``update=False``, its loss).

    All arrays C-contiguous, of one float dtype except the int64/float64 ones; the caller
    (``fastmbrl.nn.train.GaussianTrainStep``) checks shapes once per batch size.

    Parameters
    ----------
    x : (E, B, D_in);  target : (E, B, D), ``layer_dims[-1] == 2 D``                 # IN
    flat, grad_flat : (n_params,) network and its gradient (``fastmbrl.nn._flat``)    # IN/OUT
    layer_dims : int64 (L+1,);  activation : hidden activation code
    bounds : (2 D,) = [max_logvar, min_logvar];  bounds_grad : (2 D,)                # IN/OUT
    m, v : (n_params,);  bm, bv : (2 D,) Adam moments                                 # IN/OUT
    seg_end : int64 (S,);  seg_decay : float64 (S,) weight decay of each segment of ``flat``
    lr, beta1, beta2, eps : Adam;  step : 1-based count after this update
    bound_penalty : float, weight of ``sum(max_logvar) - sum(min_logvar)``
    update : bool, False evaluates only (no gradient, no update)
    member_loss : float64 (E,), each member's NLL                                     # OUT
    work : (``_train_workspace_size``,) scratch;  chunk_rows, n_threads : as sized
    out : (E, B, 2 D) or None, receives the network output of every row (mean, then the raw
        log-variance), e.g. for a holdout MSE without a second forward pass              # OUT

    Returns
    -------
    loss : float, the mean NLL before the update (NaN/inf: nothing was updated)

    Notes
    -----
    With ``n_threads > 1`` threads take whole members (OpenMP dynamic schedule) and then halves of
    the Adam update; every member's sums are reduced in member order, so the result is identical
    for any ``n_threads``.
    """
    cdef int64_t E = x.shape[0], B = x.shape[1]
    cdef int64_t n_layers = layer_dims.shape[0] - 1
    cdef int old_threads = 0
    _check_step_args(x, target, flat, grad_flat, layer_dims, bounds, bounds_grad, m, v, bm, bv,
                     seg_end, seg_decay, member_loss, work, chunk_rows, n_threads)
    cdef double loss = 0.0
    cdef const int64_t *dims = <const int64_t *>cnp.PyArray_DATA(layer_dims)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *pt = cnp.PyArray_DATA(target)
    cdef void *pflat = cnp.PyArray_DATA(flat)
    cdef void *pgrad = cnp.PyArray_DATA(grad_flat)
    cdef void *pb = cnp.PyArray_DATA(bounds)
    cdef void *pbg = cnp.PyArray_DATA(bounds_grad)
    cdef void *pm = cnp.PyArray_DATA(m)
    cdef void *pv = cnp.PyArray_DATA(v)
    cdef void *pbm = cnp.PyArray_DATA(bm)
    cdef void *pbv = cnp.PyArray_DATA(bv)
    cdef const int64_t *pse = <const int64_t *>cnp.PyArray_DATA(seg_end)
    cdef const double *psd = <const double *>cnp.PyArray_DATA(seg_decay)
    cdef double *pml = <double *>cnp.PyArray_DATA(member_loss)
    cdef void *pw = cnp.PyArray_DATA(work)
    cdef void *pout = NULL
    if out is not None:
        _check(out.ndim == 3 and _is(out, cnp.PyArray_TYPE(flat), E * B * dims[n_layers])
               and out.shape[0] == E and out.shape[1] == B, "out",
               f"expected a C-contiguous ({E}, {B}, {dims[n_layers]}) array of the parameters' dtype")
        pout = cnp.PyArray_DATA(out)
    cdef int64_t n_seg = seg_end.shape[0]
    cdef bint is_f32 = cnp.PyArray_TYPE(flat) == cnp.NPY_FLOAT32
    with nogil:
        if _blas_get != NULL:
            old_threads = _blas_get()
            if old_threads != 1:
                _blas_set(1)
        if is_f32:
            loss = fm_gaussian_train_step_f32(
                <fm_sgemm_fn>sgemm, <const float *>px, <const float *>pt, E, B, n_layers, dims,
                activation, <float *>pflat, <float *>pgrad, <float *>pb, <float *>pbg,
                <float *>pm, <float *>pv, <float *>pbm, <float *>pbv, n_seg, pse, psd, lr, beta1,
                beta2, eps, step, bound_penalty, update, pml, <float *>pout, <float *>pw,
                chunk_rows, n_threads)
        else:
            loss = fm_gaussian_train_step_f64(
                <fm_dgemm_fn>dgemm, <const double *>px, <const double *>pt, E, B, n_layers, dims,
                activation, <double *>pflat, <double *>pgrad, <double *>pb, <double *>pbg,
                <double *>pm, <double *>pv, <double *>pbm, <double *>pbv, n_seg, pse, psd, lr,
                beta1, beta2, eps, step, bound_penalty, update, pml, <double *>pout,
                <double *>pw, chunk_rows, n_threads)
        if _blas_get != NULL and old_threads != 1:
            _blas_set(old_threads)
    return loss
