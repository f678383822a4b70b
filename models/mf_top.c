/*
 * mf_top.c - the recommendation model's top-N (models/mf.h): the n best
 * items of a user's scores of every item, and the popularity list.
 * docs/RECS.md, "Top-N", says how the shards use it; how the selection goes
 * over the scores (SSE blocks of 16, a floor from blocks of 64) is said
 * where it is done. Pure C like the rest of models/; test_mf checks the
 * selection against the plain one on 6,000 inputs.
 */
#include "models/hot.h"
#include "models/mf.h"

#include <cblas.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <math.h>
#include <string.h>

static bool excluded(int32_t i, const int32_t *ex, int n_ex)
{
    for (int e = 0; e < n_ex; e++)
        if (ex[e] == i)
            return true;
    return false;
}

/* Whether any of s[0..16) is above thr (NaN never is). Four SSE compares
 * and one mask on x86-64 (the baseline ISA: GCC did not vectorise the plain
 * loop, which cost 16 compare-and-branch steps per block); the plain loop
 * elsewhere. Both answer the same. */
INL bool any_above16(const float *s, float thr)
{
#if defined(__SSE2__)
    __m128 t = _mm_set1_ps(thr);
    __m128 a = _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(s), t), _mm_cmpgt_ps(_mm_loadu_ps(s + 4), t));
    __m128 b =
        _mm_or_ps(_mm_cmpgt_ps(_mm_loadu_ps(s + 8), t), _mm_cmpgt_ps(_mm_loadu_ps(s + 12), t));
    return _mm_movemask_ps(_mm_or_ps(a, b)) != 0;
#else
    int any = 0;
    for (int j = 0; j < 16; j++)
        any |= s[j] > thr;
    return any != 0;
#endif
}

/* Insert s (item i) into the sorted list best/idx of m (at most n) kept:
 * the new m. Ties: the lower index first (items come in index order). */
INL int keep(float *best, int32_t *idx, int m, int n, float s, uint32_t i)
{
    int at = m < n ? m++ : n - 1;
    while (at > 0 && best[at - 1] < s) {
        best[at] = best[at - 1];
        idx[at] = idx[at - 1];
        at--;
    }
    best[at] = s;
    idx[at] = (int32_t)i;
    return m;
}

/* Up to this many items the first pass of top_floor pays. Top 14 of
 * random factors, us per list, before (the plain scan with the block skip)
 * and with it: 1,000 items 2.3 -> 1.0, 2,000 2.9 -> 1.4, 8,000 4.2 -> 3.1,
 * 20,000 5.9 -> 6.0, 100,000 22 -> 29 (where a full list's last already
 * skips nearly every block). */
#define FLOOR_MAX_ITEMS 16384
#define FLOOR_BLOCK     64 /* 1.35-1.4 us at 2,000 items; blocks of 16 1.5-1.7 */

/* The largest of s[0..FLOOR_BLOCK), or NaN: always one of the values
 * (maxps returns one of its operands), so a number it returns is some
 * item's score. */
INL float block_max(const float *s)
{
#if defined(__SSE2__)
    __m128 a = _mm_loadu_ps(s);
    for (int j = 4; j < FLOOR_BLOCK; j += 4)
        a = _mm_max_ps(a, _mm_loadu_ps(s + j));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
#else
    float x = s[0];
    for (int j = 1; j < FLOOR_BLOCK; j++)
        x = s[j] > x ? s[j] : x;
    return x;
#endif
}

/* A floor for the n best of scores (n_items >= n FLOOR_BLOCK): the n-th
 * largest of the maxima of the blocks of FLOOR_BLOCK. Those n maxima are n
 * different items' scores, so the n-th best score is >= it and every score
 * below it can be passed over. false when there is none (NaN or infinite
 * maxima). */
static bool top_floor(const float *scores, uint32_t n_items, int n, float *floor)
{
    float mx[FD_MF_TOP_MAX];
    int32_t from[FD_MF_TOP_MAX]; /* keep's indexes: not needed here */
    int m = 0;
    for (uint32_t i = 0; n_items - i >= FLOOR_BLOCK; i += FLOOR_BLOCK) {
        float x = block_max(scores + i);
        if (!isfinite(x) || (m == n && !(x > mx[m - 1])))
            continue;
        m = keep(mx, from, m, n, x, i);
    }
    if (m < n)
        return false;
    *floor = mx[n - 1];
    return true;
}

/* Which of s[0..16) are above thr (bit j for s[j]); NaN never is. */
INL unsigned above16(const float *s, float thr)
{
#if defined(__SSE2__)
    __m128 t = _mm_set1_ps(thr);
    return (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(s), t)) |
           (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(s + 4), t)) << 4 |
           (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(s + 8), t)) << 8 |
           (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(s + 12), t)) << 12;
#else
    unsigned m = 0;
    for (int j = 0; j < 16; j++)
        m |= (unsigned)(s[j] > thr) << j;
    return m;
#endif
}

int fd_mf_top_of(const float *scores, uint32_t n_items, const int32_t *exclude, int n_ex, int n,
                 int32_t *idx, float *score)
{
    if (n > FD_MF_TOP_MAX)
        n = FD_MF_TOP_MAX;
    if (n <= 0)
        return 0;
    /* a sorted list of the best m so far (insertion; n is small against
     * the items) */
    int m = 0;
    float best[FD_MF_TOP_MAX];
    uint32_t i = 0;
    if (n_ex == 0) {
        /* Without exclusions (the shards' refresh), whole blocks of 16 at a
         * time: the scores that can enter the list as a bit mask (above
         * the last kept one of a full list, or at or above the floor of
         * top_floor while it fills), then only those, in index order. Over
         * 2,000 items the plain scan spent most of its time in
         * mispredicted compares and in inserting the first n items and
         * every better one after them. */
        float floor = 0;
        bool floored = n_items / FLOOR_BLOCK >= (uint32_t)n && n_items <= FLOOR_MAX_ITEMS &&
                       top_floor(scores, n_items, n, &floor);
        /* s >= floor is s > the float just below it */
        float below = floored ? nextafterf(floor, -INFINITY) : -INFINITY;
        for (; n_items - i >= 16; i += 16) {
            unsigned mask;
            if (m == n) {
                if (!any_above16(scores + i, best[m - 1]))
                    continue; /* the common case, at the cost of one mask */
                mask = above16(scores + i, best[m - 1]);
            } else if (floored)
                mask = above16(scores + i, below);
            else
                mask = 0xffff; /* all of them: NaN is left out below */
            while (mask) {
                unsigned j = (unsigned)__builtin_ctz(mask);
                mask &= mask - 1;
                float s = scores[i + j];
                if (s != s || (m == n && !(s > best[m - 1])))
                    continue; /* NaN, or the list's last rose within the block */
                m = keep(best, idx, m, n, s, i + j);
            }
        }
    }
    /* the rest (all of it with exclusions): one score at a time, a block
     * of 16 none of which beats a full list's last skipped at once */
    for (; i < n_items; i++) {
        while (m == n && n_items - i >= 16 && !any_above16(scores + i, best[m - 1]))
            i += 16;
        if (i >= n_items)
            break;
        float s = scores[i];
        if (s != s)
            continue; /* NaN cannot happen (clamped factors); never rank it */
        if (m == n && !(s > best[m - 1]))
            continue;
        if (n_ex && excluded((int32_t)i, exclude, n_ex))
            continue;
        m = keep(best, idx, m, n, s, i);
    }
    if (score)
        memcpy(score, best, (size_t)m * sizeof *score);
    return m;
}

int fd_mf_top_n(const fd_mf_items *it, const float *u, const int32_t *exclude, int n_ex, int n,
                float *scratch, int32_t *idx, float *score)
{
    if (n <= 0 || it->n == 0)
        return 0;
    /* scratch = V u (row-major n x k) */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)it->n, it->k, 1.0f, it->v, it->k, u, 1, 0.0f,
                scratch, 1);
    return fd_mf_top_of(scratch, it->n, exclude, n_ex, n, idx, score);
}

int fd_mf_popular(const fd_mf_items *it, const int32_t *exclude, int n_ex, int n, int32_t *idx)
{
    int m = 0;
    for (int r = 0; r < it->n_top && m < n; r++)
        if (!excluded((int32_t)it->top[r], exclude, n_ex))
            idx[m++] = (int32_t)it->top[r];
    return m;
}
