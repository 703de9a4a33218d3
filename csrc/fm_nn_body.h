/* Body of the fastmbrl neural kernels, included by fm_nn.c once per (dtype, instruction set).
 *
 * Before including, fm_nn.c defines:
 *   REAL        float or double
 *   FM_F32      1 for float (selects the polynomial exp/log1p that vectorizes), 0 for double
 *   FM_FN(name) name with the variant suffix, e.g. name##_f32_avx2
 *   FM_FMA(a, b, c)  a * b + c, fused where the variant has FMA
 *   GEMM_FN     fm_sgemm_fn or fm_dgemm_fn
 *   FM_AVX2     1 in the AVX2+FMA variants (enables the hand-vectorized float32 SiLU)
 * Everything here is static; fm_nn.c exposes dispatching entry points.
 * Loops are written branch-free and over contiguous memory so GCC/Clang vectorize them at -O3.
 */

/* ------------------------------------------------------------------------------------------- */
/* Scalar building blocks (inlined into vectorized loops)                                       */
/* ------------------------------------------------------------------------------------------- */

#if FM_F32
/* exp(x) for float: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split keeps r exact to float
 * rounding), exp(r) by its degree-6 Taylor polynomial (truncation < 1.3e-7 relative), 2^n built in
 * the exponent bits. About 2 ulp; libm expf does not vectorize (docs/performance.md). Arguments
 * are clamped to [-87.3, 88] so 2^n stays a normal number: exp underflows to ~1e-38 instead of 0,
 * which callers only ever add to 1 or multiply by something finite. */
static inline REAL FM_FN(expr)(REAL x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick: exact IEEE ops, vectorizes without SSE4.1 */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = FM_FMA(n, -0.693145751953125f, x);
    r = FM_FMA(n, -1.428606820309417e-06f, r);
    float p = FM_FMA(r, 1.0f / 720.0f, 1.0f / 120.0f);
    p = FM_FMA(p, r, 1.0f / 24.0f);
    p = FM_FMA(p, r, 1.0f / 6.0f);
    p = FM_FMA(p, r, 0.5f);
    p = FM_FMA(p, r, 1.0f);
    p = FM_FMA(p, r, 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, series to s^13 (error
 * < 1e-8); relative accuracy holds for tiny e as well, unlike log(1 + e) rounded in float. */
static inline REAL FM_FN(log1p01)(REAL e)
{
    float s = e / (2.0f + e);
    float s2 = s * s;
    float p = FM_FMA(s2, 1.0f / 13.0f, 1.0f / 11.0f);
    p = FM_FMA(p, s2, 1.0f / 9.0f);
    p = FM_FMA(p, s2, 1.0f / 7.0f);
    p = FM_FMA(p, s2, 1.0f / 5.0f);
    p = FM_FMA(p, s2, 1.0f / 3.0f);
    p = FM_FMA(p, s2, 1.0f);
    return 2.0f * s * p;
}
#else
/* float64 is the precision used by tests and gradient checks: libm, exact to an ulp. */
static inline REAL FM_FN(expr)(REAL x) { return exp(x); }
static inline REAL FM_FN(log1p01)(REAL e) { return log1p(e); }
#endif

static inline REAL FM_FN(absr)(REAL x) { return x < 0 ? -x : x; }

/* tanh(z) = sign(z) (1 - e) / (1 + e) with e = exp(-2|z|): no overflow, vectorizes. Below |z| = 0.3
 * 1 - e cancels (relative error ~1e-7 / |z|), so the odd Taylor series to z^9 is used there
 * (truncation < 2e-8 relative). float64 keeps libm's tanh. */
static inline REAL FM_FN(tanhr)(REAL z)
{
#if FM_F32
    float az = FM_FN(absr)(z);
    float e = FM_FN(expr)(-2.0f * az);
    float big = (1.0f - e) / (1.0f + e);
    float z2 = z * z;
    float p = FM_FMA(z2, 62.0f / 2835.0f, -17.0f / 315.0f);
    p = FM_FMA(p, z2, 2.0f / 15.0f);
    p = FM_FMA(p, z2, -1.0f / 3.0f);
    float small = FM_FMA(p * z2, az, az);
    float t = az < 0.3f ? small : big;
    return z < 0 ? -t : t;
#else
    return tanh(z);
#endif
}

#if FM_F32 && FM_AVX2
/* Eight lanes of FM_FN(expr), the same algorithm written with intrinsics. */
static inline __m256 FM_FN(exp8)(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428606820309417e-06f), r);
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 720.0f), _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
                                     23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* One row of z += b, s = sigmoid(z), y = z s. The reciprocal 1 / (1 + e) is rcpps refined by one
 * Newton step (about 2 ulp, like the exp) instead of vdivps, whose latency dominated this loop. */
static void FM_FN(silu_row8)(int64_t cols, const REAL *restrict b, REAL *restrict z,
                             REAL *restrict y, REAL *restrict s)
{
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) {
        __m256 zz = _mm256_add_ps(_mm256_loadu_ps(z + j), _mm256_loadu_ps(b + j));
        _mm256_storeu_ps(z + j, zz);
        __m256 d = _mm256_add_ps(one, FM_FN(exp8)(_mm256_sub_ps(_mm256_setzero_ps(), zz)));
        __m256 r = _mm256_rcp_ps(d);
        r = _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, two));
        if (s != NULL)
            _mm256_storeu_ps(s + j, r);
        _mm256_storeu_ps(y + j, _mm256_mul_ps(zz, r));
    }
    for (; j < cols; j++) {
        REAL zz = z[j] + b[j];
        REAL sg = 1 / (1 + FM_FN(expr)(-zz));
        z[j] = zz;
        if (s != NULL)
            s[j] = sg;
        y[j] = zz * sg;
    }
}
#endif

/* ------------------------------------------------------------------------------------------- */
/* Row-major GEMM through a column-major BLAS                                                   */
/* ------------------------------------------------------------------------------------------- */

/* C (M x N, ldc) = alpha op(A) op(B) + beta C, all row-major. A column-major BLAS sees each
 * row-major matrix as its transpose, so it computes C^T = op(B)^T op(A)^T with the operands swapped. */
static void FM_FN(gemm_rm)(GEMM_FN g, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           REAL alpha, const REAL *A, int64_t lda, const REAL *B, int64_t ldb,
                           REAL beta, REAL *C, int64_t ldc)
{
    char ta = trans_b ? 'T' : 'N';
    char tb = trans_a ? 'T' : 'N';
    int m = (int)N, n = (int)M, k = (int)K;
    int la = (int)(ldb > 1 ? ldb : 1), lb = (int)(lda > 1 ? lda : 1), lc = (int)(ldc > 1 ? ldc : 1);
    if (M == 0 || N == 0)
        return;
    g(&ta, &tb, &m, &n, &k, &alpha, (REAL *)B, &la, (REAL *)A, &lb, &beta, C, &lc);
}

/* ------------------------------------------------------------------------------------------- */
/* Dense layer: fused bias + activation and its derivative                                      */
/* ------------------------------------------------------------------------------------------- */

/* z[r, :] += b; y = act(z); for SiLU also s = sigmoid(z) when s != NULL (backward reuses it). */
static void FM_FN(bias_act)(int64_t rows, int64_t cols, const REAL *restrict b, int act,
                            REAL *restrict z, REAL *restrict y, REAL *restrict s)
{
#if FM_F32 && FM_AVX2
    if (act == FM_SILU) {
        for (int64_t r = 0; r < rows; r++)
            FM_FN(silu_row8)(cols, b, z + r * cols, y + r * cols, s != NULL ? s + r * cols : NULL);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) {
        REAL *restrict zr = z + r * cols;
        REAL *restrict yr = y + r * cols;
        for (int64_t j = 0; j < cols; j++)
            zr[j] += b[j];
        if (act == FM_IDENTITY) {
            if (yr != zr)
                for (int64_t j = 0; j < cols; j++)
                    yr[j] = zr[j];
        } else if (act == FM_RELU) {
            for (int64_t j = 0; j < cols; j++)
                yr[j] = zr[j] > 0 ? zr[j] : (REAL)0;
        } else if (act == FM_TANH) {
            for (int64_t j = 0; j < cols; j++)
                yr[j] = FM_FN(tanhr)(zr[j]);
        } else if (s != NULL) {
            REAL *restrict sr = s + r * cols;
            for (int64_t j = 0; j < cols; j++) {
                REAL sg = 1 / (1 + FM_FN(expr)(-zr[j]));
                sr[j] = sg;
                yr[j] = zr[j] * sg;
            }
        } else {
            for (int64_t j = 0; j < cols; j++)
                yr[j] = zr[j] / (1 + FM_FN(expr)(-zr[j]));
        }
    }
}

/* dz = dy act'(z) over n elements. y = act(z) (used by tanh and, with s, by SiLU); s = sigmoid(z)
 * or NULL (then recomputed). dz may alias dy. */
static void FM_FN(act_backward)(int64_t n, int act, const REAL *z, const REAL *y, const REAL *s,
                                const REAL *dy, REAL *dz)
{
    if (act == FM_IDENTITY) {
        if (dz != dy)
            for (int64_t i = 0; i < n; i++)
                dz[i] = dy[i];
    } else if (act == FM_RELU) {
        for (int64_t i = 0; i < n; i++)
            dz[i] = z[i] > 0 ? dy[i] : (REAL)0;
    } else if (act == FM_TANH) {
        if (y != NULL) {
            for (int64_t i = 0; i < n; i++)
                dz[i] = dy[i] * (1 - y[i] * y[i]);
        } else {
            for (int64_t i = 0; i < n; i++) {
                REAL t = FM_FN(tanhr)(z[i]);
                dz[i] = dy[i] * (1 - t * t);
            }
        }
    } else if (s != NULL && y != NULL) {
        /* d/dz [z s(z)] = s + z s (1 - s) = s + y (1 - s) */
        for (int64_t i = 0; i < n; i++)
            dz[i] = dy[i] * (s[i] + y[i] * (1 - s[i]));
    } else {
        for (int64_t i = 0; i < n; i++) {
            REAL sg = 1 / (1 + FM_FN(expr)(-z[i]));
            dz[i] = dy[i] * (sg * (1 + z[i] * (1 - sg)));
        }
    }
}

/* out[j] (+)= sum_r x[r, j]; the row loop is outermost so the column loop vectorizes. */
static void FM_FN(col_sum)(int64_t rows, int64_t cols, const REAL *restrict x, REAL *restrict out,
                           int accumulate)
{
    if (!accumulate)
        for (int64_t j = 0; j < cols; j++)
            out[j] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            out[j] += x[r * cols + j];
}

/* Sum in double with 8 independent partial sums (a vectorizable reduction without -ffast-math). */
static double FM_FN(sum)(int64_t n, const REAL *restrict x)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[i + k];
    for (; i < n; i++)
        acc[0] += (double)x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void FM_FN(dense_forward)(GEMM_FN g, int64_t E, int64_t B, int64_t Din, int64_t Dout,
                                 const REAL *x, const REAL *W, const REAL *b, int act, REAL *z,
                                 REAL *y)
{
    for (int64_t e = 0; e < E; e++) {
        FM_FN(gemm_rm)(g, 0, 0, B, Dout, Din, 1, x + e * B * Din, Din, W + e * Din * Dout, Dout, 0, z + e * B * Dout, Dout);
        FM_FN(bias_act)(B, Dout, b + e * Dout, act, z + e * B * Dout, y + e * B * Dout, NULL);
    }
}

static void FM_FN(dense_backward)(GEMM_FN g, int64_t E, int64_t B, int64_t Din, int64_t Dout,
                                  const REAL *x, const REAL *W, const REAL *z, const REAL *dy,
                                  int act, REAL *dz, REAL *dW, REAL *db, REAL *dx)
{
    for (int64_t e = 0; e < E; e++) {
        REAL *dze = dz + e * B * Dout;
        FM_FN(act_backward)(B * Dout, act, z + e * B * Dout, NULL, NULL, dy + e * B * Dout, dze);
        FM_FN(gemm_rm)(g, 1, 0, Din, Dout, B, 1, x + e * B * Din, Din, dze, Dout, 0, dW + e * Din * Dout, Dout);
        FM_FN(col_sum)(B, Dout, dze, db + e * Dout, 0);
        FM_FN(gemm_rm)(g, 0, 1, B, Din, Dout, 1, dze, Dout, W + e * Din * Dout, Dout, 0, dx + e * B * Din, Din);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Gaussian NLL and soft log-variance bounds                                                    */
/* ------------------------------------------------------------------------------------------- */

/* Per element: loss term, dmean and dlogvar (scale = 1 / number of rows). */
static double FM_FN(nll_grad)(int64_t n, const REAL *restrict mean, const REAL *restrict logvar,
                              const REAL *restrict target, double scale, REAL *restrict dmean,
                              REAL *restrict dlogvar)
{
    const REAL sc = (REAL)scale;
    const REAL m2sc = (REAL)(-2.0 * scale);
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i0 = 0;
    while (i0 < n) {
        /* blocks of 8 keep the reduction in separate lanes so the body vectorizes */
        int64_t len = n - i0 < 8 ? n - i0 : 8;
        for (int64_t k = 0; k < len; k++) {
            int64_t i = i0 + k;
            REAL inv = FM_FN(expr)(-logvar[i]);
            REAL diff = target[i] - mean[i];
            REAL sq = diff * diff * inv;
            dmean[i] = m2sc * diff * inv;
            dlogvar[i] = sc * (1 - sq);
            acc[k] += (double)(sq + logvar[i]);
        }
        i0 += len;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* The soft bounds of one output column over n rows: lv, a = sigmoid(mx - raw), c = sigmoid(lv1 - mn).
 * softplus(u) = max(u, 0) + log1p(exp(-|u|)), sigmoid from the same exp(-|u|). */
static void FM_FN(soft_bound_col)(int64_t n, const REAL *restrict raw, REAL mx, REAL mn,
                                  REAL *restrict lv, REAL *restrict a, REAL *restrict c)
{
    for (int64_t i = 0; i < n; i++) {
        REAL u = mx - raw[i];
        REAL eu = FM_FN(expr)(-FM_FN(absr)(u));
        REAL spu = (u > 0 ? u : (REAL)0) + FM_FN(log1p01)(eu);
        REAL su = u >= 0 ? 1 / (1 + eu) : eu / (1 + eu);
        REAL w = (mx - spu) - mn;
        REAL ew = FM_FN(expr)(-FM_FN(absr)(w));
        REAL spw = (w > 0 ? w : (REAL)0) + FM_FN(log1p01)(ew);
        REAL sw = w >= 0 ? 1 / (1 + ew) : ew / (1 + ew);
        lv[i] = mn + spw;
        a[i] = su;
        c[i] = sw;
    }
}

static void FM_FN(soft_bound_forward)(int64_t rows, int64_t D, const REAL *raw, const REAL *mx,
                                      const REAL *mn, REAL *lv)
{
    REAL a, c;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < D; d++)
            FM_FN(soft_bound_col)(1, raw + r * D + d, mx[d], mn[d], lv + r * D + d, &a, &c);
}

static void FM_FN(soft_bound_backward)(int64_t rows, int64_t D, const REAL *raw, const REAL *mx,
                                       const REAL *mn, const REAL *dlv, REAL *draw, REAL *dmax,
                                       REAL *dmin)
{
    for (int64_t d = 0; d < D; d++) {
        double smax = 0, smin = 0;
        for (int64_t r = 0; r < rows; r++) {
            REAL lv, a, c;
            int64_t i = r * D + d;
            FM_FN(soft_bound_col)(1, raw + i, mx[d], mn[d], &lv, &a, &c);
            draw[i] = dlv[i] * a * c;
            smax += (double)(dlv[i] * (1 - a) * c);
            smin += (double)(dlv[i] * (1 - c));
        }
        dmax[d] = (REAL)smax;
        dmin[d] = (REAL)smin;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Adam                                                                                          */
/* ------------------------------------------------------------------------------------------- */

/* Adam on indices [lo, hi) of a flat vector whose weight decay is given per segment. */
static void FM_FN(adam_range)(int64_t lo, int64_t hi, REAL *restrict param, REAL *restrict grad,
                              const REAL *restrict grad2, REAL *restrict m, REAL *restrict v,
                              int64_t n_seg, const int64_t *seg_end, const double *seg_decay,
                              double lr, double beta1, double beta2, double eps, int64_t step)
{
    const double bc1 = 1.0 - pow(beta1, (double)step);
    const double bc2 = 1.0 - pow(beta2, (double)step);
    const REAL step_size = (REAL)(lr / bc1);
    const REAL inv_bc2 = (REAL)(1.0 / bc2);
    const REAL b1 = (REAL)beta1, b2 = (REAL)beta2, c1 = (REAL)(1.0 - beta1),
               c2 = (REAL)(1.0 - beta2), ep = (REAL)eps;
    int64_t start = 0;
    for (int64_t sgi = 0; sgi < n_seg; sgi++) {
        int64_t a = start > lo ? start : lo;
        int64_t b = seg_end[sgi] < hi ? seg_end[sgi] : hi;
        const REAL decay = (REAL)seg_decay[sgi];
        start = seg_end[sgi];
        if (a >= b)
            continue;
        if (grad2 != NULL)
            for (int64_t i = a; i < b; i++)
                grad[i] += grad2[i];
        for (int64_t i = a; i < b; i++) {
            REAL g = grad[i] + decay * param[i];
            REAL mi = b1 * m[i] + c1 * g;
            REAL vi = b2 * v[i] + c2 * g * g;
            m[i] = mi;
            v[i] = vi;
            param[i] -= step_size * mi / (sqrt(vi * inv_bc2) + ep);
        }
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The fused Gaussian training step                                                             */
/* ------------------------------------------------------------------------------------------- */

/* Offset of W_l in the flat layout (b_l follows at + E * Din * Dout). */
static int64_t FM_FN(w_offset)(int64_t l, const int64_t *dims, int64_t E)
{
    int64_t off = 0;
    for (int64_t k = 0; k < l; k++)
        off += E * (dims[k] * dims[k + 1] + dims[k + 1]);
    return off;
}

/* One member e, all B rows in chunks of at most R rows: forward, head, and (update) backward into
 * that member's slots of grad; out (E, B, 2D), unless NULL, receives the member's network output.
 * Per-thread workspace tw: for each layer l, z_l (R x O_l), and for hidden layers y_l, s_l
 * (R x O_l); then two gradient buffers (R x max width) and 12 head columns (R x D). acc (doubles,
 * this member's own): loss sum, dmax (D), dmin (D). Members touch disjoint memory, so threads can
 * take members in any order and the result does not depend on it. */
static void FM_FN(member)(GEMM_FN g, const REAL *x, const REAL *target, int64_t E, int64_t B,
                          int64_t L, const int64_t *dims, int act, const REAL *flat, REAL *grad,
                          const REAL *bounds, int update, REAL *out, REAL *tw, double *acc,
                          int64_t R, int64_t e)
{
    const int64_t D = dims[L] / 2;
    const double scale = 1.0 / (double)(E * B);
    int64_t maxw = 0;
    for (int64_t l = 1; l <= L; l++)
        maxw = dims[l] > maxw ? dims[l] : maxw;
    /* carve the workspace */
    REAL *p = tw;
    REAL *zb[64], *yb[64], *sb[64];
    for (int64_t l = 0; l < L; l++) {
        int64_t Dout = dims[l + 1];
        zb[l] = p;
        p += R * Dout;
        if (l < L - 1) {
            yb[l] = p;
            p += R * Dout;
            sb[l] = p;
            p += R * Dout;
        } else {
            yb[l] = zb[l];
            sb[l] = NULL;
        }
    }
    REAL *gA = p;
    p += R * maxw;
    REAL *gB = p;
    p += R * maxw;
    REAL *meanT = p, *rawT = p + R * D, *tgtT = p + 2 * R * D, *lvT = p + 3 * R * D,
         *aT = p + 4 * R * D, *cT = p + 5 * R * D, *dmT = p + 6 * R * D, *dlvT = p + 7 * R * D,
         *t1 = p + 8 * R * D, *t2 = p + 9 * R * D, *t3 = p + 10 * R * D;
    double *loss_acc = acc, *dmax_acc = acc + 1, *dmin_acc = acc + 1 + D;
    const REAL *mx = bounds, *mn = bounds + D;
    for (int64_t i = 0; i < 1 + 2 * D; i++)
        acc[i] = 0;

    int first = 1;
    for (int64_t c0 = 0; c0 < B; c0 += R) {
        const int64_t rows = (B - c0) < R ? (B - c0) : R;
        const REAL *xe = x + (e * B + c0) * dims[0];
        const REAL *te = target + (e * B + c0) * D;
        /* forward */
        const REAL *h = xe;
        for (int64_t l = 0; l < L; l++) {
            int64_t Din = dims[l], Dout = dims[l + 1];
            int64_t off = FM_FN(w_offset)(l, dims, E);
            const REAL *W = flat + off + e * Din * Dout;
            const REAL *bl = flat + off + E * Din * Dout + e * Dout;
            FM_FN(gemm_rm)(g, 0, 0, rows, Dout, Din, 1, h, Din, W, Dout, 0, zb[l], Dout);
            FM_FN(bias_act)(rows, Dout, bl, l < L - 1 ? act : FM_IDENTITY, zb[l], yb[l], sb[l]);
            h = yb[l];
        }
        /* head: split the interleaved (rows, 2D) output into contiguous columns so the
         * element-wise work vectorizes over rows */
        const REAL *y_last = zb[L - 1];
        if (out != NULL)
            memcpy(out + (e * B + c0) * 2 * D, y_last, (size_t)(rows * 2 * D) * sizeof(REAL));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t d = 0; d < D; d++) {
                meanT[d * rows + r] = y_last[r * 2 * D + d];
                rawT[d * rows + r] = y_last[r * 2 * D + D + d];
                tgtT[d * rows + r] = te[r * D + d];
            }
        double loss_sum = 0;
        for (int64_t d = 0; d < D; d++) {
            REAL *lv = lvT + d * rows, *a = aT + d * rows, *c = cT + d * rows;
            REAL *dm = dmT + d * rows, *dlv = dlvT + d * rows;
            FM_FN(soft_bound_col)(rows, rawT + d * rows, mx[d], mn[d], lv, a, c);
            loss_sum += FM_FN(nll_grad)(rows, meanT + d * rows, lv, tgtT + d * rows, scale, dm,
                                        dlv);
            if (update) {
                for (int64_t r = 0; r < rows; r++) {
                    REAL gl = dlv[r];
                    t1[r] = gl * (1 - a[r]) * c[r];
                    t2[r] = gl * (1 - c[r]);
                    t3[r] = gl * a[r] * c[r];
                }
                dmax_acc[d] += FM_FN(sum)(rows, t1);
                dmin_acc[d] += FM_FN(sum)(rows, t2);
                for (int64_t r = 0; r < rows; r++) {
                    gA[r * 2 * D + d] = dm[r];
                    gA[r * 2 * D + D + d] = t3[r];
                }
            }
        }
        *loss_acc += loss_sum;
        if (!update)
            continue;
        /* backward */
        REAL *dy = gA, *dnext = gB;
        for (int64_t l = L - 1; l >= 0; l--) {
            int64_t Din = dims[l], Dout = dims[l + 1];
            int64_t off = FM_FN(w_offset)(l, dims, E);
            const REAL *W = flat + off + e * Din * Dout;
            REAL *dW = grad + off + e * Din * Dout;
            REAL *db = grad + off + E * Din * Dout + e * Dout;
            if (l < L - 1)
                FM_FN(act_backward)(rows * Dout, act, zb[l], yb[l], sb[l], dy, dy);
            const REAL *hin = l == 0 ? xe : yb[l - 1];
            FM_FN(gemm_rm)(g, 1, 0, Din, Dout, rows, 1, hin, Din, dy, Dout, first ? 0 : 1, dW,
                           Dout);
            FM_FN(col_sum)(rows, Dout, dy, db, !first);
            if (l > 0) {
                FM_FN(gemm_rm)(g, 0, 1, rows, Din, Dout, 1, dy, Dout, W, Dout, 0, dnext, Din);
                REAL *tmp = dy;
                dy = dnext;
                dnext = tmp;
            }
        }
        first = 0;
    }
}

static double FM_FN(train_step)(GEMM_FN g, const REAL *x, const REAL *target, int64_t E,
                                int64_t B, int64_t L, const int64_t *dims, int act, REAL *flat,
                                REAL *grad_flat, REAL *bounds, REAL *bounds_grad, REAL *m, REAL *v,
                                REAL *bm, REAL *bv, int64_t n_seg, const int64_t *seg_end,
                                const double *seg_decay, double lr, double beta1, double beta2,
                                double eps, int64_t step, double bound_penalty, int update,
                                double *member_loss, REAL *out, REAL *work, int64_t R,
                                int64_t n_threads)
{
    const int64_t D = dims[L] / 2;
    const int64_t n_params = FM_FN(w_offset)(L, dims, E);
    const int64_t region = fm_thread_region(L, dims, R);
    const int64_t acc_len = 1 + 2 * D;
    double *acc = (double *)work;
    REAL *regions = work + fm_acc_elems(E * acc_len, sizeof(REAL));
    int64_t nt = n_threads < 1 ? 1 : n_threads;
    if (nt > E)
        nt = E;
#ifndef _OPENMP
    nt = 1;
#endif
    /* phase 1: forward, head and backward; threads take whole members, first come first served
     * (a thread the OS has paused does not hold the others back beyond its current member) */
#ifdef _OPENMP
#pragma omp parallel num_threads((int)nt) if (nt > 1)
#endif
    {
        int64_t t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        REAL *tw = regions + t * region;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t e = 0; e < E; e++)
            FM_FN(member)(g, x, target, E, B, L, dims, act, flat, grad_flat, bounds, update, out,
                          tw, acc + e * acc_len, R, e);
    }
    /* member-order reduction: the same sums whatever the number of threads */
    double total = 0;
    for (int64_t e = 0; e < E; e++) {
        member_loss[e] = acc[e * acc_len] / (double)B;
        total += member_loss[e];
    }
    total /= (double)E;
    if (!update || !isfinite(total))
        return total;
    for (int64_t d = 0; d < D; d++) {
        double smax = 0, smin = 0;
        for (int64_t e = 0; e < E; e++) {
            smax += acc[e * acc_len + 1 + d];
            smin += acc[e * acc_len + 1 + D + d];
        }
        bounds_grad[d] = (REAL)(smax + bound_penalty);
        bounds_grad[D + d] = (REAL)(smin - bound_penalty);
    }
    /* phase 2: Adam over the network (halves per thread: element-wise, so thread-independent)
     * and over the bounds */
#ifdef _OPENMP
#pragma omp parallel num_threads((int)nt) if (nt > 1)
#endif
    {
        int64_t t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        int64_t lo = t * n_params / nt, hi = (t + 1) * n_params / nt;
        FM_FN(adam_range)(lo, hi, flat, grad_flat, NULL, m, v, n_seg, seg_end, seg_decay, lr,
                          beta1, beta2, eps, step);
    }
    {
        const int64_t bend = 2 * D;
        const double bdecay = 0.0;
        FM_FN(adam_range)(0, 2 * D, bounds, bounds_grad, NULL, bm, bv, 1, &bend, &bdecay, lr,
                          beta1, beta2, eps, step);
    }
    return total;
}
