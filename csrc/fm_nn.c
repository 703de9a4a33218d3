/* fastmbrl neural kernels: variants and run-time dispatch. See fm_nn.h for the design.
 *
 * fm_nn_body.h is included four times: float and double, each compiled for AVX2+FMA (x86 with
 * GCC/Clang) and portable. The public fm_* functions pick the AVX2 variant when the CPU has it,
 * so what users install never needs -march=native.
 */
#include "fm_nn.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FM_X86_DISPATCH 1
#include <immintrin.h>
#else
#define FM_X86_DISPATCH 0
#endif

/* Elements (of size elem) that hold n doubles, rounded up to 64 bytes so regions stay aligned. */
static int64_t fm_acc_elems(int64_t n_doubles, size_t elem)
{
    int64_t bytes = (n_doubles * 8 + 63) / 64 * 64;
    return bytes / (int64_t)elem;
}

/* Per-thread workspace of the train step, in elements: layer buffers for R rows, two gradient
 * buffers and the head columns; rounded to 16 elements so each region stays 64-byte aligned. */
static int64_t fm_thread_region(int64_t L, const int64_t *dims, int64_t R)
{
    int64_t D = dims[L] / 2, maxw = 0, n = 0;
    for (int64_t l = 1; l <= L; l++)
        maxw = dims[l] > maxw ? dims[l] : maxw;
    for (int64_t l = 0; l < L; l++)
        n += (l < L - 1 ? 3 : 1) * R * dims[l + 1];
    n += 2 * R * maxw + 12 * R * D;
    return (n + 15) / 16 * 16;
}

int64_t fm_train_workspace_size(int64_t n_layers, const int64_t *dims, int64_t ensemble_size,
                                int64_t chunk_rows, int64_t n_threads)
{
    /* per-member double accumulators (sized for 4-byte elements: enough for 8-byte ones too),
     * then one region per thread */
    int64_t acc = fm_acc_elems(ensemble_size * (1 + dims[n_layers]), 4);
    int64_t nt = n_threads < 1 ? 1 : n_threads;
    return acc + nt * fm_thread_region(n_layers, dims, chunk_rows);
}

int fm_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static int fm_force_portable_flag = 0;

void fm_force_portable(int on) { fm_force_portable_flag = on; }

int fm_have_avx2(void)
{
#if FM_X86_DISPATCH
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached && !fm_force_portable_flag;
#else
    return 0;
#endif
}

/* ---- float32, portable ---- */
#define FM_AVX2 0
#define REAL float
#define FM_F32 1
#define GEMM_FN fm_sgemm_fn
#define FM_FMA(a, b, c) ((a) * (b) + (c))
#define FM_FN(name) name##_f32_gen
#include "fm_nn_body.h"
#undef FM_FN
#undef FM_FMA
#undef GEMM_FN
#undef FM_F32
#undef REAL

/* ---- float64, portable ---- */
#define REAL double
#define FM_F32 0
#define GEMM_FN fm_dgemm_fn
#define FM_FMA(a, b, c) ((a) * (b) + (c))
#define FM_FN(name) name##_f64_gen
#include "fm_nn_body.h"
#undef FM_FN
#undef FM_FMA
#undef GEMM_FN
#undef FM_F32
#undef REAL

#if FM_X86_DISPATCH
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

/* ---- float32, AVX2 + FMA ---- */
#undef FM_AVX2
#define FM_AVX2 1
#define REAL float
#define FM_F32 1
#define GEMM_FN fm_sgemm_fn
#define FM_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
#define FM_FN(name) name##_f32_avx2
#include "fm_nn_body.h"
#undef FM_FN
#undef FM_FMA
#undef GEMM_FN
#undef FM_F32
#undef REAL
#undef FM_AVX2
#define FM_AVX2 0

/* ---- float64, AVX2 + FMA ---- */
#define REAL double
#define FM_F32 0
#define GEMM_FN fm_dgemm_fn
#define FM_FMA(a, b, c) __builtin_fma((a), (b), (c))
#define FM_FN(name) name##_f64_avx2
#include "fm_nn_body.h"
#undef FM_FN
#undef FM_FMA
#undef GEMM_FN
#undef FM_F32
#undef REAL

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#define FM_PICK(name, sfx) (fm_have_avx2() ? name##_##sfx##_avx2 : name##_##sfx##_gen)
#else
#define FM_PICK(name, sfx) (name##_##sfx##_gen)
#endif

/* ------------------------------------------------------------------------------------------- */
/* Entry points                                                                                  */
/* ------------------------------------------------------------------------------------------- */

#define FM_ENTRY_POINTS(SFX, REAL, GEMM)                                                          \
    void fm_dense_forward_##SFX(GEMM g, int64_t E, int64_t B, int64_t Din, int64_t Dout,               \
                                const REAL *x, const REAL *W, const REAL *b, int act, REAL *z,     \
                                REAL *y)                                                           \
    {                                                                                              \
        FM_PICK(dense_forward, SFX)(g, E, B, Din, Dout, x, W, b, act, z, y);                            \
    }                                                                                              \
    void fm_dense_backward_##SFX(GEMM g, int64_t E, int64_t B, int64_t Din, int64_t Dout,              \
                                 const REAL *x, const REAL *W, const REAL *z, const REAL *dy,      \
                                 int act, REAL *dz, REAL *dW, REAL *db, REAL *dx)                  \
    {                                                                                              \
        FM_PICK(dense_backward, SFX)(g, E, B, Din, Dout, x, W, z, dy, act, dz, dW, db, dx);             \
    }                                                                                              \
    double fm_gaussian_nll_grad_##SFX(int64_t n, const REAL *mean, const REAL *logvar,            \
                                      const REAL *target, double scale, REAL *dmean,               \
                                      REAL *dlogvar)                                               \
    {                                                                                              \
        return FM_PICK(nll_grad, SFX)(n, mean, logvar, target, scale, dmean, dlogvar);             \
    }                                                                                              \
    void fm_soft_bound_forward_##SFX(int64_t rows, int64_t D, const REAL *raw, const REAL *mx,    \
                                     const REAL *mn, REAL *lv)                                     \
    {                                                                                              \
        FM_PICK(soft_bound_forward, SFX)(rows, D, raw, mx, mn, lv);                                \
    }                                                                                              \
    void fm_soft_bound_backward_##SFX(int64_t rows, int64_t D, const REAL *raw, const REAL *mx,   \
                                      const REAL *mn, const REAL *dlv, REAL *draw, REAL *dmax,     \
                                      REAL *dmin)                                                  \
    {                                                                                              \
        FM_PICK(soft_bound_backward, SFX)(rows, D, raw, mx, mn, dlv, draw, dmax, dmin);            \
    }                                                                                              \
    void fm_adam_update_##SFX(int64_t n, REAL *param, REAL *grad, const REAL *grad2, REAL *m,     \
                              REAL *v, int64_t n_seg, const int64_t *seg_end,                      \
                              const double *seg_decay, double lr, double beta1, double beta2,      \
                              double eps, int64_t step)                                            \
    {                                                                                              \
        FM_PICK(adam_range, SFX)(0, n, param, grad, grad2, m, v, n_seg, seg_end, seg_decay, lr,    \
                                 beta1, beta2, eps, step);                                         \
    }                                                                                              \
    double fm_gaussian_train_step_##SFX(                                                          \
        GEMM g, const REAL *x, const REAL *target, int64_t E, int64_t B, int64_t n_layers,         \
        const int64_t *dims, int act, REAL *flat, REAL *grad_flat, REAL *bounds,                   \
        REAL *bounds_grad, REAL *m, REAL *v, REAL *bm, REAL *bv, int64_t n_seg,                    \
        const int64_t *seg_end, const double *seg_decay, double lr, double beta1, double beta2,    \
        double eps, int64_t step, double bound_penalty, int update, double *member_loss,           \
        REAL *out, REAL *work, int64_t chunk_rows, int64_t n_threads)                              \
    {                                                                                              \
        return FM_PICK(train_step, SFX)(g, x, target, E, B, n_layers, dims, act, flat, grad_flat,  \
                                        bounds, bounds_grad, m, v, bm, bv, n_seg, seg_end,         \
                                        seg_decay, lr, beta1, beta2, eps, step, bound_penalty,     \
                                        update, member_loss, out, work, chunk_rows, n_threads);    \
    }

FM_ENTRY_POINTS(f32, float, fm_sgemm_fn)
FM_ENTRY_POINTS(f64, double, fm_dgemm_fn)
