/*
 * lr.c - online logistic regression: the standardiser and FTRL-Proximal
 * (McMahan et al., "Ad Click Prediction: a View from the Trenches", 2013).
 *
 * Why it is built this way:
 *
 * - One example, in this order (fd_lr_learn):
 *     1. t = fd_lr_fast_log1p2(raw) per input;
 *     2. the standardiser sums take t (s_n, s_sum, s_sq), and mean/inv_std
 *        are refreshed when since_refresh reaches FD_LR_STD_REFRESH;
 *     3. x = (t - mean) * inv_std, p = sigmoid(w . x + w_bias);
 *     4. one FTRL step per coordinate with g = (p - y) x_i.
 *   The standardiser is updated BEFORE the FTRL step: it looks at inputs
 *   only, never at the label, so p is still a prediction made without the
 *   example's label (prequential), and p and x are the same for the value
 *   returned and for the gradient. p equals what fd_lr_predict would have
 *   said just before, except on the example that triggers a refresh, where
 *   the new mean/inv_std (which include that example's inputs) are used.
 *   Before any refresh (fewer than FD_LR_STD_REFRESH examples) mean is 0
 *   and inv_std 1: the log transform alone keeps the inputs in range.
 *
 * - FTRL per coordinate i, with sigma = (sqrt(g2 + g^2) - sqrt(g2)) / alpha:
 *     z_i += g - sigma w_i;  g2_i += g^2;
 *     w_i = 0 when |z_i| <= l1, else
 *     w_i = -(z_i - sgn(z_i) l1) / ((beta + sqrt(g2_i)) / alpha + l2).
 *   The bias (coordinate FD_LR_MAX_FEAT, x = 1) takes no L1 and no L2: it
 *   carries the base rate of churn, which a penalty would pull towards 0.5
 *   for no benefit (one coordinate cannot overfit). It goes through the
 *   same formula with l1 = l2 = 0 (|z| <= 0 still gives w = 0, so a zero
 *   denominator with beta = 0 never divides 0 by 0).
 *   w is derived from z and g2 and kept current after every step (and by
 *   init, merge, rebase and parse), so scoring reads w directly.
 *   Precision: z, g2 (the state, in the text form and in merges) and
 *   sigma are double; the learning-rate terms are float arithmetic, which
 *   is what makes the step fast (a float sqrt and divide over 8 or 16
 *   lanes cost a fraction of double ones): sg_i = sqrt(g2_i) rounded to a
 *   float (g2 rounded to a float first, the root clamped at 2^60) is kept
 *   per coordinate as derived state, so the old root is never computed
 *   again; sigma = (sg_new - sg_old) / alpha is exact up to the
 *   multiplication (a difference of two floats is exact in double), so
 *   the sum of the sigmas still telescopes to sg / alpha; w is a float
 *   quotient (|z| - l1 and the denominator in float, the parameters taken
 *   as floats in {0} and [2^-60, 2^60], the quotient clamped at FLT_MAX),
 *   within a few float ulps of the double formula. derive_w computes sg and
 *   w with the very same operations as the step, so a model merged from
 *   one replica, or read back from its text, has the same w bit for bit.
 *
 * - Speed: the hot loops run over the n inputs rounded up to a multiple
 *   of 8 (nv_of: no remainder loop), no branches (selects; clamps are
 *   integer operations on the bits, since GCC does not if-convert float
 *   compares here), so GCC vectorises them at -O2; coordinates from n up
 *   see x = 0, which keeps their z, g2 and w at 0 (g = 0 changes nothing),
 *   so the loops leave out those from nv up (they ran over all
 *   FD_LR_MAX_FEAT before: 64 against 40 for the default 35 inputs). sqrtf
 *   needs -fno-math-errno to become sqrtps (CMakeLists.txt sets it for this
 *   file). The dot product keeps 8 partial sums in a fixed order, so it
 *   vectorises without -ffast-math and the result does not depend on the
 *   vector width. Helpers called from the hot functions must be inlined
 *   (INL): an out-of-line call from the AVX-512 clone into baseline code
 *   cost ~150 ns per example when consts_of was one.
 *
 * - Determinism: only IEEE + - * / and sqrt, in double and float, and the
 *   conversions between them (all correctly rounded everywhere), no libm
 *   call (the sigmoid uses fd_exp2_neg, the log is
 *   our own), no FMA contraction (ISO C mode), sums in a fixed order: the
 *   same examples in the same order give bit-identical state on any x86-64
 *   or other IEEE machine.
 *
 * - The standardiser's refresh: mean = s_sum / s_n, var = s_sq / s_n -
 *   mean^2 (clamped at 0: cancellation can make it slightly negative),
 *   inv_std = 1 / sqrt(var + 1e-6). Only coordinates 0..n-1; the others
 *   keep mean 0, inv_std 1. Refreshed at every FD_LR_STD_REFRESH examples
 *   learned, and by init, merge and rebase (since_refresh = 0 then).
 *   fd_lr_parse restores mean and inv_std as formatted (they are part of
 *   the text), so a model read back predicts and continues learning bit for
 *   bit like the one written, whatever its since_refresh.
 *
 * - A NaN or +-inf input is taken as 0 (t = 0) so one bad value cannot
 *   poison z and g2 for good; finite inputs past 2^126 give t = +-126.
 */
#include "models/lr.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/features.h"

/* The hot functions are compiled three times, for AVX-512 (16 float or 8
 * double lanes), AVX2 and the x86-64 baseline (SSE2), and the loader picks
 * one for the CPU (GCC function multi-versioning). All do the same IEEE
 * operations in the same order (no FMA: ISO C mode keeps
 * -ffp-contract=off), so they give the same bits; FD_LR_NO_CLONES builds
 * one ISA only (-mavx512f, -mavx2 or none), which is how that was checked:
 * the same stream gave the same text form and predictions in all three and
 * at -O0.
 * The helpers they call are always inlined, so they are vectorised for
 * the clone's ISA too. */
#include "models/hot.h"

#define NF          FD_LR_MAX_FEAT
#define BIAS        FD_LR_MAX_FEAT
#define MARGIN      35.0
#define VAR_EPS     1e-6
#define LOG2E       1.4426950408889634074 /* 1 / ln 2 */
#define SQRT2       1.4142135623730950488
#define TWO52       4503599627370496.0 /* 2^52 */
#define EXP_ONES    0x3FF0000000000000ULL
#define MANT_MASK   0x000FFFFFFFFFFFFFULL
#define EXP_MASK    0x7FF0000000000000ULL
#define SQRT2_MANT  0x6A09E667F3BCDULL /* mantissa bits of sqrt(2) */
#define SIGN_BIT    0x8000000000000000ULL
#define TINY_BITS   0x00800000U /* 2^-126 as a float */
#define HUGE_BITS   0x7E800000U /* 2^126 as a float */
#define SQRT2_MANTF 0x3504F3U   /* mantissa bits of sqrt(2) as a float */
#define SG_MAX_BITS 0x5D800000U /* 2^60 as a float */
#define FMAXF_BITS  0x7F7FFFFFU /* FLT_MAX as a float */

void fd_lr_params_default(fd_lr_params *p, int n)
{
    p->n = n;
    p->alpha = 0.05;
    p->beta = 1.0;
    p->l1 = 1.0;
    p->l2 = 1.0;
}

int fd_lr_params_check(const fd_lr_params *p, char *errstr, size_t errstr_size)
{
    if (p->n < 1 || p->n > FD_LR_MAX_FEAT) {
        snprintf(errstr, errstr_size, "lr: n = %d inputs is out of range 1..%d", p->n,
                 FD_LR_MAX_FEAT);
        return -1;
    }
    /* !(a > 0) is true for NaN too */
    if (!(p->alpha > 0) || !isfinite(p->alpha)) {
        snprintf(errstr, errstr_size, "lr: alpha = %g must be a finite number > 0", p->alpha);
        return -1;
    }
    if (!(p->beta >= 0) || !isfinite(p->beta)) {
        snprintf(errstr, errstr_size, "lr: beta = %g must be a finite number >= 0", p->beta);
        return -1;
    }
    if (!(p->l1 >= 0) || !isfinite(p->l1)) {
        snprintf(errstr, errstr_size, "lr: l1 = %g must be a finite number >= 0", p->l1);
        return -1;
    }
    if (!(p->l2 >= 0) || !isfinite(p->l2)) {
        snprintf(errstr, errstr_size, "lr: l2 = %g must be a finite number >= 0", p->l2);
        return -1;
    }
    return 0;
}

/* ---- the transform ------------------------------------------------------- */

static inline uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double double_of(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline uint32_t bits_of_f(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/*
 * log2(1 + |v|) with the sign of v, in float arithmetic (8 lanes a vector
 * with AVX2) from a double v. |v| is first clamped to [2^-126, 2^126] with
 * integer operations on its bits (below 2^-126 it is taken as 0, above as
 * 2^126: t saturates at +-126, and float subnormals, which are slow, never
 * occur), then rounded to a float a. u = 1 + a = 2^e m with m in
 * [sqrt(1/2), sqrt(2)) taken from the float's bits (integer operations and
 * an int32 -> float conversion only, no compare, so the loops vectorise on
 * SSE2 too); log2(m) = f Q(f) with f = m - 1 and Q a degree-5 Chebyshev
 * fit of log2(1 + f) / f on that range (relative error 8.3e-6; f Q(f)
 * stays accurate for tiny f). The rounding error of 1 + a, c = a - (u - 1)
 * (exact for u < 2^24), is added back as c 2^-e / ln 2, which keeps the
 * relative error down to 2^-126. Relative error < 1e-5 in all (rounding v to
 * a float adds 6e-8 at most); exact at 2^k - 1.
 */
INL double log1p2(double v)
{
    uint32_t b = bits_of_f((float)v); /* past FLT_MAX: inf */
    uint32_t sign = b & 0x80000000U;
    uint32_t ab = b & 0x7FFFFFFFU;
    uint32_t lo = (ab - TINY_BITS) >> 31; /* 1 when |v| < 2^-126 */
    uint32_t hi = (HUGE_BITS - ab) >> 31; /* 1 when |v| > 2^126 (inf too) */
    ab = (ab & (lo + hi - 1)) | (HUGE_BITS & (0 - hi));
    float a = float_of(ab);
    float u = 1.0f + a;
    float c = a - (u - 1.0f);
    uint32_t bu = bits_of_f(u);
    uint32_t E = bu >> 23; /* 127..253 */
    uint32_t mant = bu & 0x7FFFFFU;
    uint32_t big = (SQRT2_MANTF - mant) >> 31; /* 1 when m > sqrt(2) */
    float e = (float)(int32_t)(E + big - 127);
    float m = float_of(mant | ((127 - big) << 23));
    float scale = float_of((254 - E) << 23); /* 2^-(E - 127), a normal float */
    float f = m - 1.0f;
    float q = -0.202289268f;
    q = q * f + 0.316898197f;
    q = q * f - 0.366925776f;
    q = q * f + 0.479925573f;
    q = q * f - 0.721195757f;
    q = q * f + 1.44270039f;
    float r = e + (f * q + c * scale * (float)LOG2E); /* >= +0 */
    return (double)float_of(bits_of_f(r) | sign);
}

double fd_lr_fast_log1p2(double v)
{
    if (!(fabs(v) <= DBL_MAX))
        return v; /* +-inf, NaN */
    return log1p2(v);
}

/* The coordinates the hot loops run over: the n inputs rounded up to a
 * multiple of 8 (one AVX-512 double vector, two AVX2 ones), so the loops
 * have no remainder. The coordinates from n up see x = 0 and keep z, g2,
 * w and the sums at 0, so leaving out those from nv up changes no bit;
 * with the default 35 inputs the loops run 40 times instead of 64. */
INL int nv_of(const fd_lr *m)
{
    int nv = (m->n + 7) & ~7; /* 1 <= n <= FD_LR_MAX_FEAT (fd_lr_params_check) */
    return nv > NF ? NF : nv; /* tells GCC the arrays of NF are not overrun */
}

/* t[0..nv) from raw[0..n): padded with zeros; NaN and +-inf are taken as 0
 * (bit masks, no compare: the loop vectorises). */
INL void transform_t(int n, int nv, const double *raw, double *t)
{
    double r[NF];
    const double *src = raw;
    if (n < nv) {
        memcpy(r, raw, (size_t)n * sizeof *r);
        memset(r + n, 0, (size_t)(nv - n) * sizeof *r);
        src = r;
    }
    for (int i = 0; i < nv; i++) {
        uint64_t b = bits_of(src[i]);
        uint64_t finite = ((b & EXP_MASK) - EXP_MASK) >> 63; /* exponent not all ones */
        t[i] = log1p2(double_of(b & (0 - finite)));
    }
}

INL void standardise(const fd_lr *m, int nv, const double *t, double *x)
{
    for (int i = 0; i < nv; i++)
        x[i] = (t[i] - m->mean[i]) * m->inv_std[i];
}

HOT void fd_lr_transform(const fd_lr *m, const double *raw, double *x)
{
    double t[NF], xx[NF];
    int nv = nv_of(m);
    transform_t(m->n, nv, raw, t);
    standardise(m, nv, t, xx);
    memcpy(x, xx, (size_t)m->n * sizeof *x);
}

/* ---- scoring ------------------------------------------------------------- */

/* w . x + w_bias, summed in 8 lanes then a fixed tree: vectorises without
 * reassociation and gives the same bits at any vector width. */
INL double margin_of(const fd_lr *m, int nv, const double *x)
{
    double acc[8] = {0};
    for (int i = 0; i < nv; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += m->w[i + j] * x[i + j];
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    return s + m->w[BIAS];
}

/* 1 / (1 + e^-a), a clamped to +-MARGIN; fd_exp2_neg is deterministic
 * (no libm) and accurate to 1e-9 relative. */
static double sigmoid(double a)
{
    if (a > MARGIN)
        a = MARGIN;
    else if (a < -MARGIN)
        a = -MARGIN;
    else if (a != a)
        a = 0;
    double e = fd_exp2_neg(fabs(a) * LOG2E); /* e^-|a| in (0, 1] */
    return a >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

HOT double fd_lr_predict(const fd_lr *m, const double *raw)
{
    double t[NF], x[NF];
    int nv = nv_of(m);
    transform_t(m->n, nv, raw, t);
    standardise(m, nv, t, x);
    return sigmoid(margin_of(m, nv, x));
}

/* ---- derived state ------------------------------------------------------- */

/* The learning-rate terms are float (8 lanes a vector, and float sqrt and
 * divide cost a fraction of double ones); z and g2 stay double. to_f
 * clamps at FLT_MAX so a huge g2 or z (only reachable through a parsed
 * text) gives a huge finite float, never inf (inf - inf would be NaN). */
/* min(q, the float of bits lim) for q >= 0 (inf too): integer operations,
 * no compare, so the loops vectorise */
INL float clamp_f(float q, uint32_t lim)
{
    uint32_t b = bits_of_f(q);
    uint32_t big = (lim - b) >> 31;
    return float_of((b & (big - 1)) | (lim & (0 - big)));
}

/* sqrt(g2) as the schedule uses it (kept per coordinate in sg): a float,
 * clamped at 2^60 (a g2 past FLT_MAX is inf as a float). */
INL float sqrt_of(double g2)
{
    return clamp_f(sqrtf((float)g2), SG_MAX_BITS);
}

typedef struct lr_consts {
    double inv_alpha;
    float ia, beta, l1, l2, d_floor;
} lr_consts;

/* A parameter as a float in {0} and [2^-60, 2^60]: the denominator below
 * stays finite and normal. */
INL float fparam(double v)
{
    return v < 0x1p-60 ? 0.0f : v > 0x1p60 ? 0x1p60f : (float)v;
}

/* d_floor is FLT_MIN when beta = l2 = 0 as floats (a coordinate with
 * g2 = 0 would divide 0 by 0) and 0 otherwise (d + 0 = d exactly). */
INL lr_consts consts_of(const fd_lr_params *p, int bias)
{
    double l2 = bias ? 0.0 : p->l2;
    lr_consts c = {.inv_alpha = 1.0 / p->alpha};
    c.l1 = bias ? 0.0f : p->l1 > 0x1p120 ? 0x1p120f : (float)p->l1;
    c.ia = fparam(c.inv_alpha);
    if (c.ia == 0)
        c.ia = 0x1p-60f;
    c.beta = fparam(p->beta);
    c.l2 = fparam(l2);
    c.d_floor = c.beta == 0 && c.l2 == 0 ? FLT_MIN : 0.0f;
    return c;
}

/* w for one coordinate from z and sg = sqrt_of(g2): max(|z| - l1, 0) is
 * (a + |a|) / 2 (exact), no compare, so the loops vectorise; the quotient
 * is a float one, clamped at FLT_MAX. */
INL double weight_of(double z, float sg, const lr_consts *c)
{
    float d = (c->beta + sg) * c->ia + c->l2 + c->d_floor;
    float zf = (float)z; /* past FLT_MAX: inf, and q is clamped */
    float a = fabsf(zf) - c->l1;
    float q = clamp_f(0.5f * (a + fabsf(a)) / d, FMAXF_BITS);
    return -(double)copysignf(q, zf);
}

/* sg and w from z and g2 for every coordinate. */
static void derive_w(fd_lr *m, const fd_lr_params *p)
{
    lr_consts c = consts_of(p, 0), cb = consts_of(p, 1);
    for (int i = 0; i < NF; i++) {
        m->sg[i] = sqrt_of(m->g2[i]);
        m->w[i] = weight_of(m->z[i], m->sg[i], &c);
    }
    m->sg[BIAS] = sqrt_of(m->g2[BIAS]);
    m->w[BIAS] = weight_of(m->z[BIAS], m->sg[BIAS], &cb);
}

/* mean / inv_std from the sums (inputs 0..n-1; the rest stay 0 / 1). */
static void refresh_std(fd_lr *m)
{
    for (int i = 0; i < NF; i++) {
        m->mean[i] = 0.0;
        m->inv_std[i] = 1.0;
    }
    if (m->s_n > 0) {
        for (int i = 0; i < m->n; i++) {
            double mean = m->s_sum[i] / m->s_n;
            double var = m->s_sq[i] / m->s_n - mean * mean;
            if (!(var > 0))
                var = 0;
            m->mean[i] = mean;
            m->inv_std[i] = 1.0 / sqrt(var + VAR_EPS);
        }
    }
    m->since_refresh = 0;
}

void fd_lr_init(fd_lr *m, const fd_lr_params *p)
{
    memset(m, 0, sizeof *m);
    m->n = p->n;
    refresh_std(m);
    derive_w(m, p);
}

/* ---- learning ------------------------------------------------------------ */

HOT double fd_lr_learn(fd_lr *m, const fd_lr_params *p, const double *raw, int label)
{
    double t[NF], x[NF];
    int nv = nv_of(m);
    transform_t(m->n, nv, raw, t);

    /* the standardiser first (inputs only: p stays prequential) */
    m->s_n += 1.0;
    for (int i = 0; i < nv; i++) {
        m->s_sum[i] += t[i];
        m->s_sq[i] += t[i] * t[i];
    }
    m->examples++;
    if (++m->since_refresh >= FD_LR_STD_REFRESH)
        refresh_std(m);

    standardise(m, nv, t, x);
    double pr = sigmoid(margin_of(m, nv, x));
    double gy = pr - (label ? 1.0 : 0.0);

    lr_consts c = consts_of(p, 0), cb = consts_of(p, 1);
    for (int i = 0; i < nv; i++) {
        double g = gy * x[i];
        double g2n = m->g2[i] + g * g;
        float sn = sqrt_of(g2n);
        /* the difference of two floats is exact in double */
        double sigma = ((double)sn - (double)m->sg[i]) * c.inv_alpha;
        double z = m->z[i] + (g - sigma * m->w[i]);
        m->z[i] = z;
        m->g2[i] = g2n;
        m->sg[i] = sn;
        m->w[i] = weight_of(z, sn, &c);
    }
    {
        double g = gy;
        double g2n = m->g2[BIAS] + g * g;
        float sn = sqrt_of(g2n);
        double sigma = ((double)sn - (double)m->sg[BIAS]) * cb.inv_alpha;
        m->z[BIAS] += g - sigma * m->w[BIAS];
        m->g2[BIAS] = g2n;
        m->sg[BIAS] = sn;
        m->w[BIAS] = weight_of(m->z[BIAS], sn, &cb);
    }
    return pr;
}

/* ---- reasons ------------------------------------------------------------- */

int fd_lr_top_reasons(const fd_lr *m, const double *raw, int k_max, int *idx, double *contrib)
{
    double t[NF], x[NF], c[NF];
    bool used[NF];
    if (k_max > 8)
        k_max = 8;
    int nv = nv_of(m);
    transform_t(m->n, nv, raw, t);
    standardise(m, nv, t, x);
    for (int i = 0; i < m->n; i++) {
        c[i] = m->w[i] * x[i];
        used[i] = m->w[i] == 0.0; /* +-0: no reason */
    }
    int k = 0;
    while (k < k_max) {
        int best = -1;
        for (int i = 0; i < m->n; i++)
            if (!used[i] && (best < 0 || c[i] > c[best]))
                best = i; /* ties: the lower index first */
        if (best < 0)
            break;
        used[best] = true;
        idx[k] = best;
        contrib[k] = c[best];
        k++;
    }
    return k;
}

/* ---- merge and rebase ---------------------------------------------------- */

/* A replica learned since base when it has more examples; anything else is
 * a copy of base (or not derived from it) and takes no weight. */
static inline int learned(const fd_lr *r, const fd_lr *base)
{
    return r->examples > base->examples;
}

void fd_lr_merge(fd_lr *out, const fd_lr *base, const fd_lr *const *replicas, int n_replicas,
                 const fd_lr_params *p)
{
    int first = -1;
    double total = 0;
    uint64_t dex = 0;
    for (int r = 0; r < n_replicas; r++)
        if (learned(replicas[r], base)) {
            if (first < 0)
                first = r;
            total += (double)(replicas[r]->examples - base->examples);
            dex += replicas[r]->examples - base->examples;
        }
    if (first < 0) {
        if (out != base)
            *out = *base;
        return;
    }
    fd_lr res;
    memset(&res, 0, sizeof res);
    res.n = p->n;
    /* z, g2: weighted means (the weight is exactly 1.0 for a lone replica,
     * so merging one replica gives its z and g2 bit for bit) */
    for (int r = 0; r < n_replicas; r++) {
        const fd_lr *rp = replicas[r];
        if (!learned(rp, base))
            continue;
        double k = (double)(rp->examples - base->examples) / total;
        for (int i = 0; i <= NF; i++) {
            res.z[i] += k * rp->z[i];
            res.g2[i] += k * rp->g2[i];
        }
    }
    /* sums: base + the deltas, computed as the first learned replica plus
     * the others' deltas (the same sum, and exactly the replica alone) */
    const fd_lr *f = replicas[first];
    res.s_n = f->s_n;
    memcpy(res.s_sum, f->s_sum, sizeof res.s_sum);
    memcpy(res.s_sq, f->s_sq, sizeof res.s_sq);
    for (int r = first + 1; r < n_replicas; r++) {
        const fd_lr *rp = replicas[r];
        if (!learned(rp, base))
            continue;
        res.s_n += rp->s_n - base->s_n;
        for (int i = 0; i < NF; i++) {
            res.s_sum[i] += rp->s_sum[i] - base->s_sum[i];
            res.s_sq[i] += rp->s_sq[i] - base->s_sq[i];
        }
    }
    for (int i = 0; i < NF; i++)
        if (!(res.s_sq[i] > 0))
            res.s_sq[i] = 0;
    res.examples = base->examples + dex;
    res.version = base->version + 1;
    refresh_std(&res);
    derive_w(&res, p);
    *out = res;
}

/* merged + (cur - at), and cur itself, bit for bit, where merged == at: a
 * lone shard's model then passes through the merge and the hand-off
 * unchanged, so a restart from the stored model goes on exactly as the
 * run that stored it would have. */
static inline double carry(double merged, double cur, double at)
{
    return merged == at ? cur : merged + (cur - at);
}

void fd_lr_rebase(fd_lr *m, const fd_lr *at_handoff, const fd_lr *merged, const fd_lr_params *p)
{
    if (m->examples <= at_handoff->examples) {
        if (m != merged)
            *m = *merged;
        return;
    }
    fd_lr res = *merged;
    for (int i = 0; i <= NF; i++) {
        res.z[i] = carry(merged->z[i], m->z[i], at_handoff->z[i]);
        double g2 = carry(merged->g2[i], m->g2[i], at_handoff->g2[i]);
        res.g2[i] = g2 > 0 ? g2 : 0;
    }
    res.s_n = carry(merged->s_n, m->s_n, at_handoff->s_n);
    for (int i = 0; i < NF; i++) {
        res.s_sum[i] = carry(merged->s_sum[i], m->s_sum[i], at_handoff->s_sum[i]);
        double q = carry(merged->s_sq[i], m->s_sq[i], at_handoff->s_sq[i]);
        res.s_sq[i] = q > 0 ? q : 0;
    }
    res.examples = merged->examples + (m->examples - at_handoff->examples);
    res.version = merged->version;
    res.n = p->n;
    refresh_std(&res);
    derive_w(&res, p);
    *m = res;
}

/* ---- text form ----------------------------------------------------------- */

static size_t put_d(char *buf, size_t off, double v)
{
    return off + (size_t)sprintf(buf + off, " %.17g", v);
}

size_t fd_lr_format(const fd_lr *m, char *buf)
{
    int n = m->n;
    size_t off =
        (size_t)sprintf(buf, "lr1 %d %llu %llu %llu", n, (unsigned long long)m->examples,
                        (unsigned long long)m->version, (unsigned long long)m->since_refresh);
    off = put_d(buf, off, m->s_n);
    for (int i = 0; i < n; i++)
        off = put_d(buf, off, m->z[i]);
    off = put_d(buf, off, m->z[BIAS]);
    for (int i = 0; i < n; i++)
        off = put_d(buf, off, m->g2[i]);
    off = put_d(buf, off, m->g2[BIAS]);
    for (int i = 0; i < n; i++)
        off = put_d(buf, off, m->s_sum[i]);
    for (int i = 0; i < n; i++)
        off = put_d(buf, off, m->s_sq[i]);
    for (int i = 0; i < n; i++)
        off = put_d(buf, off, m->mean[i]);
    for (int i = 0; i < n; i++)
        off = put_d(buf, off, m->inv_std[i]);
    return off;
}

typedef struct tok_reader {
    const char *s, *end;
    int no; /* tokens read so far */
    char tok[48];
    char *errstr;
    size_t errstr_size;
} tok_reader;

/* The next space-separated token into rd->tok; -1 (errstr) when missing or
 * too long. */
static int next_tok(tok_reader *rd, const char *what)
{
    while (rd->s < rd->end && *rd->s == ' ')
        rd->s++;
    const char *b = rd->s;
    while (rd->s < rd->end && *rd->s != ' ')
        rd->s++;
    size_t len = (size_t)(rd->s - b);
    rd->no++;
    if (len == 0) {
        snprintf(rd->errstr, rd->errstr_size, "lr: token %d (%s) is missing", rd->no, what);
        return -1;
    }
    if (len >= sizeof rd->tok) {
        snprintf(rd->errstr, rd->errstr_size, "lr: token %d (%s) '%.20s...' is too long", rd->no,
                 what, b);
        return -1;
    }
    memcpy(rd->tok, b, len);
    rd->tok[len] = '\0';
    return 0;
}

static int read_u64(tok_reader *rd, const char *what, uint64_t *out)
{
    if (next_tok(rd, what))
        return -1;
    char *e;
    if (rd->tok[0] < '0' || rd->tok[0] > '9')
        goto bad;
    errno = 0;
    unsigned long long v = strtoull(rd->tok, &e, 10);
    if (*e || errno)
        goto bad;
    *out = v;
    return 0;
bad:
    snprintf(rd->errstr, rd->errstr_size, "lr: token %d (%s) '%s' is not an unsigned integer",
             rd->no, what, rd->tok);
    return -1;
}

enum { D_ANY, D_NONNEG, D_POS };

static int read_d(tok_reader *rd, const char *what, int i, int kind, double *out)
{
    char name[32];
    if (i >= 0)
        snprintf(name, sizeof name, "%s[%d]", what, i);
    else
        snprintf(name, sizeof name, "%s", what);
    if (next_tok(rd, name))
        return -1;
    char *e;
    double v = strtod(rd->tok, &e);
    if (*e || !isfinite(v)) {
        snprintf(rd->errstr, rd->errstr_size, "lr: token %d (%s) '%s' is not a finite number",
                 rd->no, name, rd->tok);
        return -1;
    }
    if ((kind == D_NONNEG && v < 0) || (kind == D_POS && !(v > 0))) {
        snprintf(rd->errstr, rd->errstr_size, "lr: token %d (%s) '%s' must be %s", rd->no, name,
                 rd->tok, kind == D_POS ? "> 0" : ">= 0");
        return -1;
    }
    *out = v;
    return 0;
}

int fd_lr_parse(fd_lr *m, const fd_lr_params *p, const char *s, size_t len, char *errstr,
                size_t errstr_size)
{
    tok_reader rd = {.s = s, .end = s + len, .errstr = errstr, .errstr_size = errstr_size};
    fd_lr r;
    memset(&r, 0, sizeof r);
    if (next_tok(&rd, "magic"))
        return -1;
    if (strcmp(rd.tok, "lr1") != 0) {
        snprintf(errstr, errstr_size, "lr: token 1 (magic) '%s' is not 'lr1'", rd.tok);
        return -1;
    }
    uint64_t n;
    if (read_u64(&rd, "n", &n))
        return -1;
    if (n != (uint64_t)p->n) {
        snprintf(errstr, errstr_size, "lr: token 2 (n) '%s': the model has %s inputs, %d expected",
                 rd.tok, rd.tok, p->n);
        return -1;
    }
    r.n = p->n;
    if (read_u64(&rd, "examples", &r.examples) || read_u64(&rd, "version", &r.version) ||
        read_u64(&rd, "since", &r.since_refresh))
        return -1;
    if (r.since_refresh >= FD_LR_STD_REFRESH) {
        snprintf(errstr, errstr_size, "lr: token 5 (since) '%s' must be below %d", rd.tok,
                 FD_LR_STD_REFRESH);
        return -1;
    }
    if (read_d(&rd, "s_n", -1, D_NONNEG, &r.s_n))
        return -1;
    int nn = p->n;
    for (int i = 0; i < nn; i++)
        if (read_d(&rd, "z", i, D_ANY, &r.z[i]))
            return -1;
    if (read_d(&rd, "z_bias", -1, D_ANY, &r.z[BIAS]))
        return -1;
    for (int i = 0; i < nn; i++)
        if (read_d(&rd, "g2", i, D_NONNEG, &r.g2[i]))
            return -1;
    if (read_d(&rd, "g2_bias", -1, D_NONNEG, &r.g2[BIAS]))
        return -1;
    for (int i = 0; i < nn; i++)
        if (read_d(&rd, "sum", i, D_ANY, &r.s_sum[i]))
            return -1;
    for (int i = 0; i < nn; i++)
        if (read_d(&rd, "sq", i, D_NONNEG, &r.s_sq[i]))
            return -1;
    for (int i = 0; i < NF; i++) {
        r.mean[i] = 0.0;
        r.inv_std[i] = 1.0;
    }
    for (int i = 0; i < nn; i++)
        if (read_d(&rd, "mean", i, D_ANY, &r.mean[i]))
            return -1;
    for (int i = 0; i < nn; i++)
        if (read_d(&rd, "inv_std", i, D_POS, &r.inv_std[i]))
            return -1;
    while (rd.s < rd.end && *rd.s == ' ')
        rd.s++;
    if (rd.s < rd.end) {
        const char *b = rd.s;
        while (rd.s < rd.end && *rd.s != ' ')
            rd.s++;
        snprintf(errstr, errstr_size, "lr: token %d '%.*s' is one too many", rd.no + 1,
                 (int)(rd.s - b > 20 ? 20 : rd.s - b), b);
        return -1;
    }
    derive_w(&r, p);
    *m = r;
    return 0;
}
