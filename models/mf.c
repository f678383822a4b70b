/*
 * mf.c - see mf.h. docs/RECS.md is the specification.
 *
 * Why the negatives come from a ring of recent positives: a uniform draw
 * from that ring is a draw in proportion to recent popularity, in O(1)
 * with no tree or alias table to maintain, and it forgets old popularity
 * by itself (FD_MF_RING positives). Popular items are the ones a
 * popularity baseline would recommend, so pushing the user's score of
 * them down where the user showed no interest is what lets the model beat
 * that baseline (the weighted-negatives idea of ISGD's follow-ups).
 *
 * Why popularity is scaled instead of decayed: every item's count would
 * have to be multiplied at every event. Adding 2^((t - t0) / h) instead
 * keeps every ratio of the decayed counts; when the scale passes 2^64 all
 * counts are rescaled once. Counts only grow, so the top list is kept
 * incrementally: an item whose count grew either is in it (and moves up)
 * or may replace the last one.
 *
 * Arithmetic: floats in a fixed order, no FMA contraction assumed (the
 * dot products are plain loops); the same events in the same order give
 * the same factors bit for bit.
 */
#include "models/mf.h"
#include "models/mf_user.h"
#include "features/fmt.h"
#include "features/user.h"
#include "models/hot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL

void fd_mf_params_default(fd_mf_params *p)
{
    memset(p, 0, sizeof *p);
    p->k = 32;
    p->eta = 0.05f;
    p->lambda = 0.01f;
    p->negatives = 4;
    p->weight[0] = 1.0f;
    p->weight[1] = 3.0f;
    p->weight[2] = 5.0f;
    p->init = 0.1f;
    p->pop_half_life_ms = 7 * DAY_MS;
    p->max_items = 1000000;
}

int fd_mf_params_check(const fd_mf_params *p, char *errstr, size_t errstr_size)
{
    const char *bad = NULL;
    if (p->k < 1 || p->k > FD_MF_MAX_K)
        bad = "k must be 1..64";
    else if (!(p->eta > 0 && p->eta <= 1))
        bad = "learning rate must be in (0, 1]";
    else if (!(p->lambda >= 0 && p->lambda < 1))
        bad = "regularisation must be in [0, 1)";
    else if (p->negatives < 0 || p->negatives > FD_MF_MAX_NEG)
        bad = "negatives must be 0..32";
    else if (!(p->init >= 0 && p->init <= 1))
        bad = "initial scale must be in [0, 1]";
    else if (p->pop_half_life_ms < 1000)
        bad = "popularity half-life must be at least 1 s";
    else if (p->max_items < 1 || p->max_items > (1u << 30))
        bad = "max items must be 1..2^30";
    for (int t = 0; !bad && t < FD_MF_TYPES; t++)
        if (!(p->weight[t] >= 0 && p->weight[t] <= 100))
            bad = "event weights must be in [0, 100]";
    if (bad) {
        snprintf(errstr, errstr_size, "mf: %s", bad);
        return -1;
    }
    return 0;
}

/* ---- deterministic randomness --------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* FNV-1a, 64 bits */
static uint64_t hash_id(const char *id, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* k values uniform in +-init/sqrt(k), from the id alone. salt tells users
 * from items with the same id. */
static void init_vec(const fd_mf_params *p, const char *id, size_t len, uint64_t salt, float *v)
{
    uint64_t s = hash_id(id, len) ^ salt;
    float scale = p->init / sqrtf((float)p->k);
    for (int f = 0; f < p->k; f++) {
        uint64_t r = splitmix64(&s);
        float u01 = (float)(r >> 40) * (1.0f / 16777216.0f); /* [0, 1), 24 bits */
        v[f] = (2.0f * u01 - 1.0f) * scale;
    }
}

void fd_mf_user_init(const fd_mf_params *p, const char *id, size_t len, float *u)
{
    init_vec(p, id, len, 0x75736572ULL /* "user" */, u);
}

void fd_mf_item_init(const fd_mf_params *p, const char *id, size_t len, float *v)
{
    init_vec(p, id, len, 0x6974656dULL /* "item" */, v);
}

/* ---- items ------------------------------------------------------------------ */

int fd_mf_items_init(fd_mf_items *it, const fd_mf_params *p)
{
    memset(it, 0, sizeof *it);
    it->k = p->k;
    it->max = p->max_items;
    it->cap = 1024 < it->max ? 1024 : it->max;
    it->v = malloc((size_t)it->cap * (size_t)it->k * sizeof *it->v);
    it->pop = calloc(it->cap, sizeof *it->pop);
    it->ids = calloc(it->cap, sizeof *it->ids);
    it->slots = calloc(2 * (size_t)it->cap, sizeof *it->slots);
    it->rng = 0x6d662d6e6567ULL; /* "mf-neg" */
    if (!it->v || !it->pop || !it->ids || !it->slots) {
        fd_mf_items_free(it);
        return -1;
    }
    return 0;
}

void fd_mf_items_free(fd_mf_items *it)
{
    if (!it)
        return;
    if (it->ids)
        for (uint32_t i = 0; i < it->n; i++)
            free(it->ids[i]);
    free(it->v);
    free(it->pop);
    free(it->ids);
    free(it->slots);
    free(it->tmark);
    free(it->tlist);
    free(it->tbase);
    free(it->tpop);
    memset(it, 0, sizeof *it);
}

/* Twice the capacity (bounded by max): arrays and a rebuilt slot table.
 * 0 / -1 (unchanged). */
static int grow(fd_mf_items *it)
{
    uint32_t cap = it->cap > it->max / 2 ? it->max : it->cap * 2;
    if (cap <= it->cap)
        return -1;
    float *v = realloc(it->v, (size_t)cap * (size_t)it->k * sizeof *v);
    if (!v)
        return -1;
    it->v = v;
    double *pop = realloc(it->pop, (size_t)cap * sizeof *pop);
    if (!pop)
        return -1;
    it->pop = pop;
    char **ids = realloc(it->ids, (size_t)cap * sizeof *ids);
    if (!ids)
        return -1;
    it->ids = ids;
    if (it->tmark) {
        uint32_t *tm = realloc(it->tmark, (size_t)cap * sizeof *tm);
        if (!tm)
            return -1;
        memset(tm + it->cap, 0, (size_t)(cap - it->cap) * sizeof *tm);
        it->tmark = tm;
    }
    uint32_t *slots = calloc(2 * (size_t)cap, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t i = 0; i < it->n; i++) {
        uint64_t h = hash_id(it->ids[i], strlen(it->ids[i]));
        size_t at = (size_t)(h % (2 * (uint64_t)cap));
        while (slots[at])
            at = (at + 1) % (2 * (size_t)cap);
        slots[at] = i + 1;
    }
    free(it->slots);
    it->slots = slots;
    it->cap = cap;
    return 0;
}

int32_t fd_mf_item(fd_mf_items *it, const fd_mf_params *p, const char *id, size_t len, bool create)
{
    if (len == 0)
        return -1;
    uint64_t h = hash_id(id, len);
    size_t ns = 2 * (size_t)it->cap, at = (size_t)(h % ns);
    while (it->slots[at]) {
        uint32_t i = it->slots[at] - 1;
        if (strncmp(it->ids[i], id, len) == 0 && it->ids[i][len] == '\0')
            return (int32_t)i;
        at = (at + 1) % ns;
    }
    if (!create)
        return -1;
    if (it->n == it->cap) {
        if (grow(it) != 0)
            return -1;
        return fd_mf_item(it, p, id, len, true);
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, id, len);
    copy[len] = '\0';
    uint32_t i = it->n++;
    it->ids[i] = copy;
    it->pop[i] = 0;
    fd_mf_item_init(p, id, len, it->v + (size_t)i * (size_t)it->k);
    it->slots[at] = i + 1;
    return (int32_t)i;
}

/* ---- learning --------------------------------------------------------------- */

/* a.b in a fixed order: 8 partial sums (lanes) over f = 0, 8, 16, ...
 * then the lanes pairwise, so the compiler may use vectors without
 * reassociating anything, and the result is the same at any width. */
INL float dot(const float *restrict a, const float *restrict b, int k)
{
    float acc[8] = {0};
    int f = 0;
    for (; f + 8 <= k; f += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[f + j] * b[f + j];
    for (int j = 0; f < k; f++, j++)
        acc[j] += a[f] * b[f];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* each line is exactly minss / maxss (a < b ? a : b), so the compiler
 * uses them, in vectors too, with no branch; NaN cannot reach here
 * (every input is a clamped factor or a bounded parameter) */
INL float clampf(float x)
{
    x = x < FD_MF_CLAMP ? x : FD_MF_CLAMP;
    return x > -FD_MF_CLAMP ? x : -FD_MF_CLAMP;
}

/* One SGD step on (u, v) towards target with weight w. */
INL void step(const fd_mf_params *p, float *restrict u, float *restrict v, float target, float w)
{
    int k = p->k;
    float e = w * (target - dot(u, v, k));
    float eta = p->eta, lam = p->lambda;
    int f = 0;
    for (; f + 8 <= k; f += 8) /* blocks of 8: vectorised at -O2 */
        for (int j = 0; j < 8; j++) {
            float uf = u[f + j], vf = v[f + j];
            u[f + j] = clampf(uf + eta * (e * vf - lam * uf));
            v[f + j] = clampf(vf + eta * (e * uf - lam * vf));
        }
    for (; f < k; f++) {
        float uf = u[f], vf = v[f];
        u[f] = clampf(uf + eta * (e * vf - lam * uf));
        v[f] = clampf(vf + eta * (e * uf - lam * vf));
    }
}

void fd_mf_prefetch(const fd_mf_items *it, int32_t idx)
{
    const float *v = it->v + (size_t)idx * (size_t)it->k;
    for (int f = 0; f < it->k; f += 16)
        __builtin_prefetch(v + f, 1);
    __builtin_prefetch(it->pop + idx, 1);
}

float fd_mf_score(const fd_mf_items *it, const float *u, int32_t idx)
{
    return dot(u, it->v + (size_t)idx * (size_t)it->k, it->k);
}

/* The popularity top list after item i's count grew. */
static void top_update(fd_mf_items *it, uint32_t i)
{
    /* below the last of a full list: not in it (every member is at least
     * the last), and not entering it */
    if (it->n_top == FD_MF_TOP_MAX && it->pop[i] < it->pop[it->top[FD_MF_TOP_MAX - 1]])
        return;
    int at = -1;
    for (int r = 0; r < it->n_top; r++)
        if (it->top[r] == i) {
            at = r;
            break;
        }
    if (at < 0) {
        if (it->n_top < FD_MF_TOP_MAX)
            at = it->n_top++;
        else if (it->pop[i] > it->pop[it->top[FD_MF_TOP_MAX - 1]])
            at = FD_MF_TOP_MAX - 1;
        else
            return;
        it->top[at] = i;
    }
    /* move up while better than the one above (ties: the earlier stays) */
    while (at > 0 && it->pop[it->top[at - 1]] < it->pop[i]) {
        it->top[at] = it->top[at - 1];
        it->top[at - 1] = i;
        at--;
    }
}

/* Every count (and every tracked base) to the scale of t0. */
static void pop_rescale(fd_mf_items *it, double ex, int64_t t0)
{
    double f = exp2(-ex);
    for (uint32_t j = 0; j < it->n; j++)
        it->pop[j] *= f;
    for (uint32_t j = 0; j < it->n_t; j++)
        it->tpop[j] *= f;
    it->pop_t0 = t0;
}

/* The factor that brings a count of scale t0 to it's scale (2^-64 at
 * least: far older is negligible); rescales it first when t0 is far ahead. */
static double pop_factor(const fd_mf_params *p, fd_mf_items *it, int64_t t0)
{
    if (!it->pop_set) {
        it->pop_t0 = t0;
        it->pop_set = true;
    }
    double ex = (double)(t0 - it->pop_t0) / (double)p->pop_half_life_ms;
    if (ex > 64) { /* rescale every count: the new t0 is t0 */
        pop_rescale(it, ex, t0);
        ex = 0;
    }
    if (ex < -64)
        ex = -64;
    return exp2(ex);
}

static void add_popularity(const fd_mf_params *p, fd_mf_items *it, uint32_t i, float w, int64_t ts)
{
    it->pop[i] += (double)w * pop_factor(p, it, ts);
    top_update(it, i);
}

/* Row i is about to change: remember it as it was (tracking). */
static void touch(fd_mf_items *it, uint32_t i)
{
    if (!it->tracking || it->tmark[i])
        return;
    if (it->n_t == it->cap_t) {
        uint32_t cap = it->cap_t ? it->cap_t * 2 : 256;
        uint32_t *l = realloc(it->tlist, (size_t)cap * sizeof *l);
        if (l)
            it->tlist = l;
        float *b = l ? realloc(it->tbase, (size_t)cap * (size_t)it->k * sizeof *b) : NULL;
        if (b)
            it->tbase = b;
        double *q = b ? realloc(it->tpop, (size_t)cap * sizeof *q) : NULL;
        if (!q) {
            it->track_oom = true; /* fd_mf_take reports it */
            return;
        }
        it->tpop = q;
        it->cap_t = cap;
    }
    uint32_t t = it->n_t++;
    it->tlist[t] = i;
    memcpy(it->tbase + (size_t)t * (size_t)it->k, it->v + (size_t)i * (size_t)it->k,
           (size_t)it->k * sizeof(float));
    it->tpop[t] = it->pop[i];
    it->tmark[i] = t + 1;
}

HOT float fd_mf_learn(const fd_mf_params *p, fd_mf_items *it, float *u, int32_t idx, int type,
                      int64_t ts)
{
    int k = p->k;
    float *vi = it->v + (size_t)idx * (size_t)k;
    float before = dot(u, vi, k);
    float w = type >= 0 && type < FD_MF_TYPES ? p->weight[type] : 1.0f;
    /* the negatives are drawn first and their rows prefetched, so their
     * cache misses overlap the positive step */
    uint32_t neg[FD_MF_MAX_NEG];
    int n_neg = 0;
    if (it->ring_n > 1 || (it->ring_n == 1 && it->ring[0] != (uint32_t)idx))
        for (int s = 0; s < p->negatives; s++) {
            uint32_t j = it->ring[splitmix64(&it->rng) % it->ring_n];
            if (j == (uint32_t)idx)
                continue;
            neg[n_neg++] = j;
            const float *vj = it->v + (size_t)j * (size_t)k;
            for (int f = 0; f < k; f += 16)
                __builtin_prefetch(vj + f, 1);
        }
    if (it->tracking) {
        touch(it, (uint32_t)idx);
        for (int s = 0; s < n_neg; s++)
            touch(it, neg[s]);
    }
    step(p, u, vi, 1.0f, w);
    for (int s = 0; s < n_neg; s++)
        step(p, u, it->v + (size_t)neg[s] * (size_t)k, 0.0f, 1.0f);
    add_popularity(p, it, (uint32_t)idx, w, ts);
    fd_mf_ring_push(it, (uint32_t)idx);
    it->positives++;
    return before;
}

/* ---- bfloat16 ------------------------------------------------------------------ */

void fd_mf_bf16_pack(const float *v, int k, uint16_t *out)
{
    for (int f = 0; f < k; f++) {
        uint32_t b;
        memcpy(&b, &v[f], sizeof b);
        b += 0x7FFFu + ((b >> 16) & 1u); /* round to nearest even */
        out[f] = (uint16_t)(b >> 16);
    }
}

void fd_mf_bf16_unpack(const uint16_t *in, int k, float *v)
{
    for (int f = 0; f < k; f++) {
        uint32_t b = (uint32_t)in[f] << 16;
        memcpy(&v[f], &b, sizeof b);
    }
}

/* ---- replicas ------------------------------------------------------------------ */

void fd_mf_ring_push(fd_mf_items *it, uint32_t idx)
{
    it->ring[it->ring_pos] = idx;
    it->ring_pos = (it->ring_pos + 1) % FD_MF_RING;
    if (it->ring_n < FD_MF_RING)
        it->ring_n++;
}

uint32_t fd_mf_ring_at(const fd_mf_items *it, uint32_t j)
{
    uint32_t first = it->ring_n < FD_MF_RING ? 0 : it->ring_pos;
    return it->ring[(first + j) % FD_MF_RING];
}

int fd_mf_track(fd_mf_items *it, bool on)
{
    if (on && !it->tmark) {
        it->tmark = calloc(it->cap, sizeof *it->tmark);
        if (!it->tmark)
            return -1;
    }
    if (!on) {
        for (uint32_t t = 0; t < it->n_t; t++)
            it->tmark[it->tlist[t]] = 0;
        it->n_t = 0;
    }
    it->tracking = on;
    it->positives_mark = it->positives;
    return 0;
}

void fd_mf_delta_free(fd_mf_delta *d)
{
    if (!d)
        return;
    free(d->ids);
    free(d->dv);
    free(d->dpop);
    free(d->ring_ids);
    memset(d, 0, sizeof *d);
}

int fd_mf_take(fd_mf_items *it, fd_mf_delta *d)
{
    memset(d, 0, sizeof *d);
    d->k = it->k;
    d->pop_t0 = it->pop_t0;
    if (it->track_oom)
        return -1; /* a row's base is missing: its change cannot be told */
    size_t idl = 0;
    for (uint32_t t = 0; t < it->n_t; t++)
        idl += strlen(it->ids[it->tlist[t]]) + 1;
    if (it->n_t) {
        d->ids = malloc(idl);
        d->dv = malloc((size_t)it->n_t * (size_t)it->k * sizeof *d->dv);
        d->dpop = malloc((size_t)it->n_t * sizeof *d->dpop);
        if (!d->ids || !d->dv || !d->dpop) {
            fd_mf_delta_free(d);
            return -1;
        }
    }
    /* the sampler's newest entries: those of the positives since the last take */
    uint64_t np = it->positives - it->positives_mark;
    uint32_t nr = np < it->ring_n ? (uint32_t)np : it->ring_n;
    size_t rl = 0;
    for (uint32_t j = it->ring_n - nr; j < it->ring_n; j++)
        rl += strlen(it->ids[fd_mf_ring_at(it, j)]) + 1;
    if (nr) {
        d->ring_ids = malloc(rl);
        if (!d->ring_ids) {
            fd_mf_delta_free(d);
            return -1;
        }
        char *rw = d->ring_ids;
        for (uint32_t j = it->ring_n - nr; j < it->ring_n; j++) {
            const char *id = it->ids[fd_mf_ring_at(it, j)];
            size_t l = strlen(id) + 1;
            memcpy(rw, id, l);
            rw += l;
        }
        d->n_ring = nr;
    }
    char *w = d->ids;
    int k = it->k;
    for (uint32_t t = 0; t < it->n_t; t++) {
        uint32_t i = it->tlist[t];
        size_t l = strlen(it->ids[i]) + 1;
        memcpy(w, it->ids[i], l);
        w += l;
        const float *v = it->v + (size_t)i * (size_t)k, *b = it->tbase + (size_t)t * (size_t)k;
        float *o = d->dv + (size_t)t * (size_t)k;
        for (int f = 0; f < k; f++)
            o[f] = v[f] - b[f];
        d->dpop[t] = it->pop[i] - it->tpop[t];
        it->tmark[i] = 0;
    }
    d->n = it->n_t;
    d->positives = it->positives - it->positives_mark;
    it->positives_mark = it->positives;
    it->n_t = 0;
    return 0;
}

uint32_t fd_mf_add_delta(fd_mf_items *it, const fd_mf_params *p, const fd_mf_delta *d, int32_t *at)
{
    uint32_t lost = 0;
    int k = it->k;
    double scale = d->n ? pop_factor(p, it, d->pop_t0) : 1.0;
    const char *id = d->ids;
    for (uint32_t t = 0; t < d->n; t++) {
        size_t l = strlen(id);
        int32_t i = d->k == k ? fd_mf_item(it, p, id, l, true) : -1;
        if (at)
            at[t] = i;
        if (i < 0) {
            lost++;
        } else {
            float *v = it->v + (size_t)i * (size_t)k;
            const float *dv = d->dv + (size_t)t * (size_t)k;
            for (int f = 0; f < k; f++)
                v[f] = clampf(v[f] + dv[f]);
            if (d->dpop[t] > 0) {
                it->pop[i] += d->dpop[t] * scale;
                top_update(it, (uint32_t)i);
            }
        }
        id += l + 1;
    }
    it->positives += d->positives;
    id = d->ring_ids;
    for (uint32_t j = 0; j < d->n_ring; j++) {
        size_t l = strlen(id);
        int32_t i = fd_mf_item(it, p, id, l, true);
        if (i >= 0)
            fd_mf_ring_push(it, (uint32_t)i);
        id += l + 1;
    }
    return lost;
}

int fd_mf_adopt_row(fd_mf_items *it, const fd_mf_params *p, const char *id, size_t len,
                    const float *g)
{
    int32_t i = fd_mf_item(it, p, id, len, true);
    if (i < 0)
        return -1;
    int k = it->k;
    float *v = it->v + (size_t)i * (size_t)k;
    uint32_t t = it->tracking ? it->tmark[i] : 0;
    if (t) { /* v = g + (v - base); base = g */
        float *b = it->tbase + (size_t)(t - 1) * (size_t)k;
        for (int f = 0; f < k; f++) {
            v[f] = clampf(g[f] + (v[f] - b[f]));
            b[f] = g[f];
        }
    } else {
        memcpy(v, g, (size_t)k * sizeof *v);
    }
    return 0;
}

void fd_mf_set_row(fd_mf_items *it, const fd_mf_params *p, int32_t idx, const float *v, double pop,
                   int64_t pop_t0)
{
    float *r = it->v + (size_t)idx * (size_t)it->k;
    for (int f = 0; f < it->k; f++)
        r[f] = v[f] == v[f] ? clampf(v[f]) : 0.0f;
    if (pop > 0 && pop == pop) {
        it->pop[idx] = pop * pop_factor(p, it, pop_t0);
        top_update(it, (uint32_t)idx);
    }
}

/* ---- quality and the user's suffix ---------------------------------------------- */

void fd_mf_check(const int32_t *list, int n, int32_t idx, uint64_t *hits, double *ndcg)
{
    for (int r = 0; r < n; r++)
        if (list[r] == idx) {
            (*hits)++;
            *ndcg += 1.0 / log2(2.0 + r);
            return;
        }
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t fd_mf_user_format(const fd_mf_user *m, int k, char *buf)
{
    if (!m->has || k < 1 || k > FD_MF_USER_K)
        return 0;
    unsigned char raw[2 * FD_MF_USER_K];
    for (int f = 0; f < k; f++) { /* little-endian */
        raw[2 * f] = (unsigned char)(m->v[f] & 0xff);
        raw[2 * f + 1] = (unsigned char)(m->v[f] >> 8);
    }
    size_t n = (size_t)(2 * k), o = 0;
    buf[o++] = ' ';
    buf[o++] = 'f';
    buf[o++] = ' ';
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)raw[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < n)
            w |= raw[i + 2];
        buf[o++] = B64[(w >> 18) & 63];
        buf[o++] = B64[(w >> 12) & 63];
        buf[o++] = i + 1 < n ? B64[(w >> 6) & 63] : '=';
        buf[o++] = i + 2 < n ? B64[w & 63] : '=';
    }
    /* " %ld" of recs_min and "%c%x" of each hash, as printf wrote them */
    _Static_assert(3 + (2 * FD_MF_USER_K + 2) / 3 * 4 + 1 + 11 +
                           FD_MF_USER_BOUGHT * (1 + FD_FMT_HEX32_MAX) + 1 <=
                       FD_MF_USER_TEXT_MAX,
                   "the longest suffix and its NUL fit FD_MF_USER_TEXT_MAX");
    char *e = buf + o;
    *e++ = ' ';
    e = fd_fmt_i64(e, m->recs_min);
    for (int i = 0; i < FD_MF_USER_BOUGHT && m->bought[i]; i++) {
        *e++ = i ? ',' : ' ';
        e = fd_fmt_hex32(e, m->bought[i]);
    }
    *e = '\0';
    return (size_t)(e - buf);
}

void fd_mf_user_bought(fd_mf_user *m, const char *id, size_t len)
{
    uint32_t h = fd_user_hash(id, len);
    if (h == 0)
        h = 1; /* 0 marks an empty slot */
    int at = FD_MF_USER_BOUGHT - 1;
    for (int i = 0; i < FD_MF_USER_BOUGHT; i++)
        if (m->bought[i] == h) {
            at = i;
            break;
        }
    for (int i = at; i > 0; i--)
        m->bought[i] = m->bought[i - 1];
    m->bought[0] = h;
}

bool fd_mf_user_has_bought(const fd_mf_user *m, const char *id, size_t len)
{
    uint32_t h = fd_user_hash(id, len);
    if (h == 0)
        h = 1;
    for (int i = 0; i < FD_MF_USER_BOUGHT && m->bought[i]; i++)
        if (m->bought[i] == h)
            return true;
    return false;
}

static int b64val(char c)
{
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

int fd_mf_user_parse(fd_mf_user *m, int k, const char *s, size_t len, char *errstr,
                     size_t errstr_size)
{
    size_t n = (size_t)(2 * k), enc = (n + 2) / 3 * 4;
    if (k < 1 || k > FD_MF_USER_K || len < 3 + enc + 2 || memcmp(s, " f ", 3) != 0 ||
        s[3 + enc] != ' ') {
        snprintf(errstr, errstr_size,
                 "mf suffix: expected \" f FACTORS RECS_MIN\" with %d factors (mf.k changed?)", k);
        return -1;
    }
    unsigned char raw[2 * FD_MF_USER_K + 3];
    size_t o = 0;
    for (size_t i = 0; i < enc; i += 4) {
        int a = b64val(s[3 + i]), b = b64val(s[4 + i]), c = s[5 + i] == '=' ? 0 : b64val(s[5 + i]),
            d = s[6 + i] == '=' ? 0 : b64val(s[6 + i]);
        if (a < 0 || b < 0 || c < 0 || d < 0) {
            snprintf(errstr, errstr_size, "mf suffix: the factors are not base64");
            return -1;
        }
        uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        raw[o++] = (unsigned char)(w >> 16);
        raw[o++] = (unsigned char)(w >> 8);
        raw[o++] = (unsigned char)w;
    }
    char tmp[FD_MF_USER_TEXT_MAX];
    size_t rest = len - (3 + enc + 1);
    if (rest == 0 || rest >= sizeof tmp) {
        snprintf(errstr, errstr_size, "mf suffix: no refresh time");
        return -1;
    }
    memcpy(tmp, s + 3 + enc + 1, rest);
    tmp[rest] = '\0';
    char *end;
    long long rm = strtoll(tmp, &end, 10);
    if (end == tmp || (*end && *end != ' ') || rm < 0 || rm > INT32_MAX) {
        snprintf(errstr, errstr_size, "mf suffix: refresh time \"%.20s\" out of range", tmp);
        return -1;
    }
    fd_mf_user out = {0};
    for (int i = 0; *end; i++) { /* " H1,H2,...": the bought items' hashes */
        const char *p = end + 1;
        unsigned long h = strtoul(p, &end, 16);
        if (i >= FD_MF_USER_BOUGHT || end == p || h == 0 || h > UINT32_MAX ||
            (*end && *end != ',')) {
            snprintf(errstr, errstr_size, "mf suffix: bought items \"%.40s\" unreadable", p);
            return -1;
        }
        out.bought[i] = (uint32_t)h;
    }
    for (int f = 0; f < k; f++) {
        out.v[f] = (uint16_t)(raw[2 * f] | raw[2 * f + 1] << 8);
        float x;
        uint32_t b = (uint32_t)out.v[f] << 16;
        memcpy(&x, &b, sizeof x);
        if (!(x >= -FD_MF_CLAMP && x <= FD_MF_CLAMP)) {
            snprintf(errstr, errstr_size, "mf suffix: factor %d is not finite or out of range", f);
            return -1;
        }
    }
    out.recs_min = (int32_t)rm;
    out.has = 1;
    *m = out;
    return 0;
}
