/* fastmbrl neural kernels: C99, no Python.h.
 *
 * Design
 * ------
 * - Element-wise work (bias + activation, activation derivatives, the Gaussian NLL head with PETS'
 *   soft log-variance bounds, Adam) is written here as plain loops that the compiler vectorizes.
 *   Every kernel exists as float32 (_f32) and float64 (_f64); each is compiled twice, once for
 *   AVX2+FMA and once portable, and the entry points below pick a variant at run time by CPU features.
 * - Matrix products go through a Fortran-style ?gemm passed in as a function pointer (the Cython
 *   wrapper hands over scipy.linalg.cython_blas.sgemm/dgemm), so nothing links a BLAS at build time.
 *   All arrays are row-major and C-contiguous; fm_* handles the row/column-major swap.
 * - Nothing here validates or allocates: the Python layer checks shapes and owns every buffer
 *   (workspace sizes come from fm_train_workspace_size).
 * - fm_gaussian_train_step_* is one whole minibatch step (forward, loss, backward, Adam) in one call;
 *   with n_threads > 1 and OpenMP, threads take whole ensemble members (dynamic schedule: a thread
 *   paused by the OS delays at most one member) and then halves of Adam's update. Each member's
 *   sums are kept apart and reduced in member order, so results are identical for any n_threads.
 */
#ifndef FM_NN_H
#define FM_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*fm_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                            float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*fm_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                            double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                            int *ldc);

/* Activation codes, as fastmbrl._config.ACTIVATIONS. */
enum { FM_IDENTITY = 0, FM_RELU = 1, FM_TANH = 2, FM_SILU = 3 };

int fm_have_openmp(void);
int fm_have_avx2(void);
/* Tests: on != 0 makes every entry point take the portable (non-AVX2) variant. */
void fm_force_portable(int on);

/* Forward of one ensemble layer for E members: z = x W + b, y = act(z).
 * x (E, B, Din), W (E, Din, Dout), b (E, Dout), z and y (E, B, Dout). */
void fm_dense_forward_f32(fm_sgemm_fn gemm, int64_t E, int64_t B, int64_t Din, int64_t Dout,
                          const float *x, const float *W, const float *b, int act, float *z, float *y);
void fm_dense_forward_f64(fm_dgemm_fn gemm, int64_t E, int64_t B, int64_t Din, int64_t Dout,
                          const double *x, const double *W, const double *b, int act, double *z,
                          double *y);

/* Backward of fm_dense_forward: dz = dy act'(z), dW = x^T dz, db = sum_rows dz, dx = dz W^T. */
void fm_dense_backward_f32(fm_sgemm_fn gemm, int64_t E, int64_t B, int64_t Din, int64_t Dout,
                           const float *x, const float *W, const float *z, const float *dy, int act,
                           float *dz, float *dW, float *db, float *dx);
void fm_dense_backward_f64(fm_dgemm_fn gemm, int64_t E, int64_t B, int64_t Din, int64_t Dout,
                           const double *x, const double *W, const double *z, const double *dy,
                           int act, double *dz, double *dW, double *db, double *dx);

/* Gaussian NLL over n elements: returns sum (t-m)^2 exp(-lv) + lv (in double);
 * dmean = -2 scale (t-m) exp(-lv), dlogvar = scale (1 - (t-m)^2 exp(-lv)). */
double fm_gaussian_nll_grad_f32(int64_t n, const float *mean, const float *logvar,
                                const float *target, double scale, float *dmean, float *dlogvar);
double fm_gaussian_nll_grad_f64(int64_t n, const double *mean, const double *logvar,
                                const double *target, double scale, double *dmean, double *dlogvar);

/* PETS soft bounds on rows x D: lv = mn + softplus(mx - softplus(mx - raw) - mn). */
void fm_soft_bound_forward_f32(int64_t rows, int64_t D, const float *raw, const float *mx,
                               const float *mn, float *lv);
void fm_soft_bound_forward_f64(int64_t rows, int64_t D, const double *raw, const double *mx,
                               const double *mn, double *lv);
/* Gradients of the soft bounds; d_max, d_min (D,) summed over rows. */
void fm_soft_bound_backward_f32(int64_t rows, int64_t D, const float *raw, const float *mx,
                                const float *mn, const float *dlv, float *draw, float *dmax,
                                float *dmin);
void fm_soft_bound_backward_f64(int64_t rows, int64_t D, const double *raw, const double *mx,
                                const double *mn, const double *dlv, double *draw, double *dmax,
                                double *dmin);

/* Adam with per-segment coupled L2 decay on param[0:n]; grad2 may be NULL, else g = grad + grad2
 * and the sum is written back to grad. step is the 1-based count after this update. */
void fm_adam_update_f32(int64_t n, float *param, float *grad, const float *grad2, float *m,
                        float *v, int64_t n_seg, const int64_t *seg_end, const double *seg_decay,
                        double lr, double beta1, double beta2, double eps, int64_t step);
void fm_adam_update_f64(int64_t n, double *param, double *grad, const double *grad2, double *m,
                        double *v, int64_t n_seg, const int64_t *seg_end, const double *seg_decay,
                        double lr, double beta1, double beta2, double eps, int64_t step);

/* Number of elements (of the parameter dtype) of the workspace fm_gaussian_train_step_* needs. */
int64_t fm_train_workspace_size(int64_t n_layers, const int64_t *dims, int64_t ensemble_size,
                                int64_t chunk_rows, int64_t n_threads);

/* One training step (update != 0) or an evaluation (update == 0) of a Gaussian ensemble MLP.
 *
 * x (E, B, dims[0]), target (E, B, D) with dims[L] == 2 D; flat and grad_flat hold the network in
 * the layout of fastmbrl.nn._flat; bounds (2 D,) = [max_logvar, min_logvar], bounds_grad (2 D,);
 * m, v (n_params,) and bm, bv (2 D,) Adam moments; seg_end/seg_decay per-segment weight decay of flat.
 * member_loss (E,) receives each member's NLL (mean over rows); out (E, B, 2 D), unless NULL, the
 * network output of every row (mean, then raw log-variance), so that an evaluation also gives what
 * a holdout score needs without a second forward pass. Returns the
 * mean NLL over members, or NaN/inf without touching any parameter if the loss is not finite. */
double fm_gaussian_train_step_f32(fm_sgemm_fn gemm, const float *x, const float *target,
                                  int64_t E, int64_t B, int64_t n_layers, const int64_t *dims,
                                  int act, float *flat, float *grad_flat, float *bounds,
                                  float *bounds_grad, float *m, float *v, float *bm, float *bv,
                                  int64_t n_seg, const int64_t *seg_end, const double *seg_decay,
                                  double lr, double beta1, double beta2, double eps, int64_t step,
                                  double bound_penalty, int update, double *member_loss,
                                  float *out, float *work, int64_t chunk_rows, int64_t n_threads);
double fm_gaussian_train_step_f64(fm_dgemm_fn gemm, const double *x, const double *target,
                                  int64_t E, int64_t B, int64_t n_layers, const int64_t *dims,
                                  int act, double *flat, double *grad_flat, double *bounds,
                                  double *bounds_grad, double *m, double *v, double *bm, double *bv,
                                  int64_t n_seg, const int64_t *seg_end, const double *seg_decay,
                                  double lr, double beta1, double beta2, double eps, int64_t step,
                                  double bound_penalty, int update, double *member_loss,
                                  double *out, double *work, int64_t chunk_rows, int64_t n_threads);

#ifdef __cplusplus
}
#endif
#endif
