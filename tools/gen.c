/*
 * gen.c - the synthetic clickstream: users with tastes, sessions that walk
 * the funnel, a few heavy users, churners that fade out, and the truth.
 *
 * Why it is built this way:
 *
 * - Deterministic by construction. One xoshiro256** stream seeded through
 *   splitmix64 drives every choice, in an order fixed by the data (never by
 *   the clock or hash-table iteration), so the same options give the same
 *   events byte for byte. Times are integer milliseconds.
 *
 * - A merged stream of per-user processes. Each user is a small state
 *   machine (between sessions -> click -> maybe cart -> maybe purchase ->
 *   next click or end of session) with its own next-event time. A binary
 *   min-heap of (next_ts, user) pairs, O(users) memory, yields the globally
 *   next event in O(log users): the stream is in event-time order with
 *   realistic interleaving of concurrent sessions, and a user's events never
 *   overlap.
 *
 * - Tastes from a latent model. Users and items have FD_GEN_DIM-dimensional
 *   vectors clustered around category centroids; a click samples one of a
 *   dozen candidates (half from the user's favourite category) by softmax
 *   of u.v + item bias. O(1) per event, and the structure is there for the
 *   recommender to learn (the vectors are exported as truth).
 *
 * - Skew and churn. Session rates follow a Pareto(1.5) weight, so the top
 *   1% of users make roughly a fifth of the traffic. Churners slow down in
 *   the four weeks before their churn time (gaps grow up to 5x) and emit
 *   nothing at or after it; a session running into it is cut there.
 *
 * - Disorder without losing the truth. With max_disorder_ms > 0 each event
 *   gets a key ts + jitter (jitter uniform in [0, D]) and goes through a
 *   second heap; an event leaves when no event still to be generated can
 *   have a smaller key. So an emitted event is never older than D ms before
 *   the newest one emitted so far, and the truth, kept per emitted event,
 *   is unaffected.
 *
 * - Compact in the hot path. Queued events are 40-byte records; strings
 *   (ids, categories) are rendered only when an event is handed out, with a
 *   hand-rolled integer formatter instead of snprintf.
 */
#include "tools/gen.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS         60000
#define CAND              12   /* candidates per click */
#define CAND_FAV          6    /* of which from the favourite category */
#define P_CART            0.30 /* click -> cart */
#define P_PURCHASE        0.35 /* cart -> purchase */
#define MEAN_EXTRA_CLICKS 3.0
#define MAX_CLICKS        60
#define PARETO_ALPHA      1.5
#define WEIGHT_CAP        1000.0
#define CHURN_SLOWDOWN    4.0               /* gap multiplier grows to 1 + this at churn */
#define CHURN_RAMP_MS     (28 * 86400000LL) /* ... over the last 4 weeks before it */

enum { ST_CLICK = 0, ST_CART = 1, ST_PURCHASE = 2 };

typedef struct rng {
    uint64_t s[4];
} rng;

typedef struct gen_user {
    int64_t churn_ts;     /* INT64_MAX when not a churner */
    double gap_ms;        /* mean gap between sessions before slowdown */
    uint32_t sessions;    /* sessions started */
    uint32_t item;        /* item of the current click */
    uint16_t clicks_left; /* clicks still to come in this session */
    uint8_t stage;        /* what the next event is */
    uint8_t fav;          /* favourite category */
} gen_user;

typedef struct uheap_ent {
    int64_t ts;
    uint32_t user;
} uheap_ent;

typedef struct gen_ev {
    int64_t key; /* ts + jitter: emission order */
    int64_t ts;
    uint64_t seq; /* generation index, 1-based: event_id */
    uint32_t user, item, session;
    uint8_t type, qty;
} gen_ev;

struct fd_gen {
    fd_gen_opts o;
    rng r;

    gen_user *users;
    float *uvec; /* users * DIM */
    fd_gen_user_truth *ut;
    uint32_t active;

    float *ivec; /* items * DIM */
    float *ibias;
    uint8_t *icat;
    int64_t *iprice;     /* cents */
    uint32_t *cat_items; /* item indexes grouped by category */
    uint32_t cat_off[FD_GEN_CATEGORIES + 1];

    uheap_ent *uh; /* users with a next event */
    size_t uh_n;

    gen_ev *rb; /* reorder heap by (key, seq) */
    size_t rb_n, rb_cap;

    uint64_t seq, emitted;

    int64_t minute0;
    fd_gen_minute_truth *min;
    size_t min_n, min_cap;
};

/* ---- PRNG ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_u64(rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in [0, 1). */
static inline double rng_unit(rng *r)
{
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n < 2^32. */
static inline uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(((rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

static inline double rng_exp(rng *r, double mean)
{
    return -mean * log(1.0 - rng_unit(r));
}

static double rng_gauss(rng *r)
{
    double u1 = 1.0 - rng_unit(r), u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Exponential delay in whole ms, at least min_ms, capped to stay far from
 * int64 overflow. */
static inline int64_t delay_ms(rng *r, double min_ms, double mean_ms)
{
    double d = min_ms + rng_exp(r, mean_ms);
    return d > 1e15 ? (int64_t)1e15 : (int64_t)d;
}

/* ---- heaps --------------------------------------------------------------- */

static inline bool uh_less(const uheap_ent *a, const uheap_ent *b)
{
    return a->ts < b->ts || (a->ts == b->ts && a->user < b->user);
}

static void uh_sift_down(uheap_ent *h, size_t n, size_t i)
{
    uheap_ent x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && uh_less(&h[c + 1], &h[c]))
            c++;
        if (!uh_less(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void uh_push(fd_gen *g, int64_t ts, uint32_t user)
{
    size_t i = g->uh_n++;
    uheap_ent x = {ts, user};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!uh_less(&x, &g->uh[p]))
            break;
        g->uh[i] = g->uh[p];
        i = p;
    }
    g->uh[i] = x;
}

static inline bool rb_less(const gen_ev *a, const gen_ev *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static int rb_push(fd_gen *g, const gen_ev *e)
{
    if (g->rb_n == g->rb_cap) {
        size_t cap = g->rb_cap ? g->rb_cap * 2 : 256;
        gen_ev *nb = realloc(g->rb, cap * sizeof *nb);
        if (!nb)
            return -1;
        g->rb = nb;
        g->rb_cap = cap;
    }
    size_t i = g->rb_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!rb_less(e, &g->rb[p]))
            break;
        g->rb[i] = g->rb[p];
        i = p;
    }
    g->rb[i] = *e;
    return 0;
}

static gen_ev rb_pop(fd_gen *g)
{
    gen_ev top = g->rb[0], x = g->rb[--g->rb_n];
    size_t n = g->rb_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && rb_less(&g->rb[c + 1], &g->rb[c]))
            c++;
        if (!rb_less(&g->rb[c], &x))
            break;
        g->rb[i] = g->rb[c];
        i = c;
    }
    if (n)
        g->rb[i] = x;
    return top;
}

/* ---- set-up -------------------------------------------------------------- */

void fd_gen_opts_default(fd_gen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->users = 10000;
    o->items = 2000;
    o->events = 100000;
    o->start_ms = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    o->span_ms = 7LL * 24 * 3600 * 1000;
    o->max_disorder_ms = 0;
    o->churn_fraction = 0.2;
}

static void build_items(fd_gen *g, const float *centroid)
{
    rng *r = &g->r;
    double cat_price[FD_GEN_CATEGORIES];
    for (int c = 0; c < FD_GEN_CATEGORIES; c++)
        cat_price[c] = exp(log(2500.0) + 0.8 * rng_gauss(r));
    uint32_t cnt[FD_GEN_CATEGORIES] = {0};
    for (uint32_t i = 0; i < g->o.items; i++) {
        int c = (int)rng_below(r, FD_GEN_CATEGORIES);
        g->icat[i] = (uint8_t)c;
        cnt[c]++;
        for (int d = 0; d < FD_GEN_DIM; d++)
            g->ivec[(size_t)i * FD_GEN_DIM + d] =
                (float)(centroid[c * FD_GEN_DIM + d] + 0.5 * rng_gauss(r));
        g->ibias[i] = (float)(0.8 * rng_gauss(r));
        double cents = cat_price[c] * exp(0.4 * rng_gauss(r));
        int64_t whole = (int64_t)(cents / 100.0);
        g->iprice[i] = whole * 100 + 99; /* "x.99" prices, at least 0.99 */
    }
    g->cat_off[0] = 0;
    for (int c = 0; c < FD_GEN_CATEGORIES; c++)
        g->cat_off[c + 1] = g->cat_off[c] + cnt[c];
    uint32_t fill[FD_GEN_CATEGORIES];
    memcpy(fill, g->cat_off, sizeof fill);
    for (uint32_t i = 0; i < g->o.items; i++)
        g->cat_items[fill[g->icat[i]]++] = i;
}

/* Returns -1 when out of memory. */
static int build_users(fd_gen *g, const float *centroid)
{
    rng *r = &g->r;
    const fd_gen_opts *o = &g->o;
    double *w = malloc((size_t)o->users * sizeof *w);
    if (!w)
        return -1;
    double wsum = 0;
    for (uint32_t u = 0; u < o->users; u++) {
        gen_user *us = &g->users[u];
        /* favourite among non-empty categories */
        int fav;
        do
            fav = (int)rng_below(r, FD_GEN_CATEGORIES);
        while (g->cat_off[fav + 1] == g->cat_off[fav]);
        us->fav = (uint8_t)fav;
        for (int d = 0; d < FD_GEN_DIM; d++)
            g->uvec[(size_t)u * FD_GEN_DIM + d] =
                (float)(0.6 * centroid[fav * FD_GEN_DIM + d] + 0.5 * rng_gauss(r));
        double wu = pow(1.0 - rng_unit(r), -1.0 / PARETO_ALPHA);
        if (wu > WEIGHT_CAP)
            wu = WEIGHT_CAP;
        w[u] = wu;
        wsum += wu;
        us->churn_ts = INT64_MAX;
        if (rng_unit(r) < o->churn_fraction)
            us->churn_ts = o->start_ms + (int64_t)((0.15 + 0.7 * rng_unit(r)) * (double)o->span_ms);
    }
    /* Sessions needed over the span: events / expected events per session. */
    double clicks = 1.0 + MEAN_EXTRA_CLICKS;
    double per_session = clicks * (1.0 + P_CART + P_CART * P_PURCHASE);
    double sessions = (double)o->events / per_session;
    if (sessions < 1)
        sessions = 1;
    double rate = sessions / (double)o->span_ms; /* sessions per ms, all users */
    for (uint32_t u = 0; u < o->users; u++) {
        gen_user *us = &g->users[u];
        us->gap_ms = wsum / (w[u] * rate);
        int64_t first = o->start_ms + delay_ms(r, 0, us->gap_ms);
        if (first < us->churn_ts)
            uh_push(g, first, u);
    }
    free(w);
    return 0;
}

/* Contract: see gen.h. Every array is allocated here and freed by
 * fd_gen_destroy; a partial failure frees what was made. */
fd_gen *fd_gen_new(const fd_gen_opts *opts, char *errstr, size_t errstr_size)
{
    if (!opts->users || !opts->items) {
        snprintf(errstr, errstr_size, "users and items must be at least 1");
        return NULL;
    }
    if (opts->span_ms < MINUTE_MS || opts->span_ms > 100LL * 365 * 86400 * 1000) {
        snprintf(errstr, errstr_size, "span %lld ms out of range (1 minute .. 100 years)",
                 (long long)opts->span_ms);
        return NULL;
    }
    if (opts->start_ms < 0 || opts->start_ms > 4102444800000LL * 10) {
        snprintf(errstr, errstr_size, "start %lld ms out of range", (long long)opts->start_ms);
        return NULL;
    }
    if (opts->max_disorder_ms < 0 || opts->max_disorder_ms > opts->span_ms) {
        snprintf(errstr, errstr_size, "max disorder %lld ms out of range (0 .. span)",
                 (long long)opts->max_disorder_ms);
        return NULL;
    }
    if (!(opts->churn_fraction >= 0 && opts->churn_fraction <= 1)) {
        snprintf(errstr, errstr_size, "churn fraction %g out of range (0 .. 1)",
                 opts->churn_fraction);
        return NULL;
    }
    fd_gen *g = calloc(1, sizeof *g);
    if (!g)
        goto nomem;
    g->o = *opts;
    size_t nu = opts->users, ni = opts->items;
    g->users = calloc(nu, sizeof *g->users);
    g->uvec = calloc(nu * FD_GEN_DIM, sizeof *g->uvec);
    g->ut = calloc(nu, sizeof *g->ut);
    g->uh = calloc(nu, sizeof *g->uh);
    g->ivec = calloc(ni * FD_GEN_DIM, sizeof *g->ivec);
    g->ibias = calloc(ni, sizeof *g->ibias);
    g->icat = calloc(ni, sizeof *g->icat);
    g->iprice = calloc(ni, sizeof *g->iprice);
    g->cat_items = calloc(ni, sizeof *g->cat_items);
    g->min_cap = (size_t)(opts->span_ms / MINUTE_MS) + 2;
    g->min = calloc(g->min_cap, sizeof *g->min);
    if (!g->users || !g->uvec || !g->ut || !g->uh || !g->ivec || !g->ibias || !g->icat ||
        !g->iprice || !g->cat_items || !g->min)
        goto nomem;
    g->minute0 = opts->start_ms - opts->start_ms % MINUTE_MS;

    rng_seed(&g->r, opts->seed);
    float centroid[FD_GEN_CATEGORIES * FD_GEN_DIM];
    for (int i = 0; i < FD_GEN_CATEGORIES * FD_GEN_DIM; i++)
        centroid[i] = (float)rng_gauss(&g->r);
    build_items(g, centroid);
    if (build_users(g, centroid) < 0)
        goto nomem;
    return g;

nomem:
    snprintf(errstr, errstr_size, "out of memory for %u users, %u items", opts->users, opts->items);
    fd_gen_destroy(g);
    return NULL;
}

void fd_gen_destroy(fd_gen *g)
{
    if (!g)
        return;
    free(g->min);
    free(g->rb);
    free(g->cat_items);
    free(g->iprice);
    free(g->icat);
    free(g->ibias);
    free(g->ivec);
    free(g->uh);
    free(g->ut);
    free(g->uvec);
    free(g->users);
    free(g);
}

/* ---- the per-user process ------------------------------------------------ */

static uint32_t pick_item(fd_gen *g, uint32_t u)
{
    rng *r = &g->r;
    const float *uv = &g->uvec[(size_t)u * FD_GEN_DIM];
    int fav = g->users[u].fav;
    uint32_t fav_n = g->cat_off[fav + 1] - g->cat_off[fav];
    uint32_t cand[CAND];
    double p[CAND], sum = 0, best = -1e300;
    for (int k = 0; k < CAND; k++) {
        uint32_t i = k < CAND_FAV ? g->cat_items[g->cat_off[fav] + rng_below(r, fav_n)]
                                  : rng_below(r, g->o.items);
        const float *iv = &g->ivec[(size_t)i * FD_GEN_DIM];
        float s = g->ibias[i];
        for (int d = 0; d < FD_GEN_DIM; d++)
            s += uv[d] * iv[d];
        cand[k] = i;
        p[k] = s;
        if (s > best)
            best = s;
    }
    for (int k = 0; k < CAND; k++)
        sum += (p[k] = exp(p[k] - best));
    double x = rng_unit(r) * sum;
    for (int k = 0; k < CAND - 1; k++) {
        if (x < p[k])
            return cand[k];
        x -= p[k];
    }
    return cand[CAND - 1];
}

/* Schedule what user u does after an event at ts; pushes u back on the heap
 * unless the user has churned. */
static void schedule_next(fd_gen *g, uint32_t u, int64_t ts)
{
    gen_user *us = &g->users[u];
    rng *r = &g->r;
    int64_t next;
    if (us->stage == ST_CART) {
        next = ts + delay_ms(r, 2000, 15000);
    } else if (us->stage == ST_PURCHASE) {
        next = ts + delay_ms(r, 10000, 60000);
    } else if (us->clicks_left > 0) {
        next = ts + delay_ms(r, 3000, 25000);
    } else {
        /* end of session: gap to the next one, growing for churners */
        double m = 1.0;
        if (us->churn_ts != INT64_MAX) {
            /* the slowdown ramps up over the CHURN_RAMP_MS before churn_ts
             * (or since the start, when that is later) */
            int64_t from = us->churn_ts - CHURN_RAMP_MS;
            if (from < g->o.start_ms)
                from = g->o.start_ms;
            double f = (double)(ts - from) / (double)(us->churn_ts - from);
            m += CHURN_SLOWDOWN * (f < 0 ? 0 : f > 1 ? 1 : f);
        }
        /* Gamma(3) gaps: users keep a rhythm, a silence of several mean
         * gaps is rare unless the user is slipping away */
        double mean = us->gap_ms * m / 3.0;
        next = ts + delay_ms(r, 60000, 0) + delay_ms(r, 0, mean) + delay_ms(r, 0, mean) +
               delay_ms(r, 0, mean);
    }
    if (next < us->churn_ts)
        uh_push(g, next, u);
}

/* Generate the next event of the earliest user into the reorder heap. */
static int generate_one(fd_gen *g)
{
    uheap_ent top = g->uh[0];
    g->uh[0] = g->uh[--g->uh_n];
    if (g->uh_n)
        uh_sift_down(g->uh, g->uh_n, 0);

    rng *r = &g->r;
    uint32_t u = top.user;
    gen_user *us = &g->users[u];
    gen_ev e = {0};
    e.ts = top.ts;
    e.seq = ++g->seq;
    e.user = u;
    e.qty = 1;
    e.type = us->stage;
    if (us->stage == ST_CLICK) {
        if (us->clicks_left == 0) { /* a new session begins */
            us->sessions++;
            double c = 1.0 + rng_exp(r, MEAN_EXTRA_CLICKS);
            us->clicks_left = (uint16_t)(c > MAX_CLICKS ? MAX_CLICKS : c);
        }
        us->clicks_left--;
        us->item = pick_item(g, u);
        us->stage = rng_unit(r) < P_CART ? ST_CART : ST_CLICK;
    } else if (us->stage == ST_CART) {
        us->stage = rng_unit(r) < P_PURCHASE ? ST_PURCHASE : ST_CLICK;
    } else {
        double q = rng_unit(r);
        e.qty = q < 0.82 ? 1 : q < 0.95 ? 2 : 3;
        us->stage = ST_CLICK;
    }
    e.item = us->item;
    e.session = us->sessions;
    e.key = e.ts;
    if (g->o.max_disorder_ms > 0)
        e.key += (int64_t)(rng_unit(r) * (double)(g->o.max_disorder_ms + 1));
    schedule_next(g, u, e.ts);
    return rb_push(g, &e);
}

/* ---- rendering and truth ------------------------------------------------- */

/* Write v in decimal at p (no NUL); returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static void put_id(char *dst, const char *prefix, uint64_t v)
{
    while (*prefix)
        *dst++ = *prefix++;
    *put_u64(dst, v) = '\0';
}

static int account(fd_gen *g, const gen_ev *e)
{
    fd_gen_user_truth *t = &g->ut[e->user];
    if (!t->n[0] && !t->n[1] && !t->n[2]) {
        g->active++;
        t->first_ts = t->last_ts = e->ts;
    }
    t->n[e->type]++;
    if (e->ts < t->first_ts)
        t->first_ts = e->ts;
    if (e->ts > t->last_ts)
        t->last_ts = e->ts;

    size_t mi = (size_t)((e->ts - g->minute0) / MINUTE_MS);
    if (mi >= g->min_cap) {
        size_t cap = g->min_cap * 2 > mi + 1 ? g->min_cap * 2 : mi + 1;
        fd_gen_minute_truth *nm = realloc(g->min, cap * sizeof *nm);
        if (!nm)
            return -1;
        memset(nm + g->min_cap, 0, (cap - g->min_cap) * sizeof *nm);
        g->min = nm;
        g->min_cap = cap;
    }
    if (mi + 1 > g->min_n)
        g->min_n = mi + 1;
    fd_gen_minute_truth *m = &g->min[mi];
    m->n[e->type]++;
    if (e->type == FD_EV_PURCHASE)
        m->revenue_cents += g->iprice[e->item] * e->qty;
    return 0;
}

static void render(const fd_gen *g, const gen_ev *e, fd_event *out)
{
    char *p = out->event_id;
    *p++ = 'e';
    *p++ = '-';
    p = put_u64(p, g->o.seed);
    *p++ = '-';
    *put_u64(p, e->seq) = '\0';
    put_id(out->user_id, "u", (uint64_t)e->user + 1);
    put_id(out->item_id, "i", (uint64_t)e->item + 1);
    p = out->session_id;
    *p++ = 's';
    *p++ = '-';
    *p++ = 'u';
    p = put_u64(p, (uint64_t)e->user + 1);
    *p++ = '-';
    *put_u64(p, e->session) = '\0';
    put_id(out->category, "c", (uint64_t)g->icat[e->item] + 1);
    out->ts_ms = e->ts;
    out->price = (double)g->iprice[e->item] / 100.0;
    out->quantity = e->qty;
    out->type = e->type;
    out->has_item = out->has_session = out->has_price = out->has_category = true;
}

int fd_gen_next(fd_gen *g, fd_event *out)
{
    if (g->emitted >= g->o.events)
        return 0;
    for (;;) {
        if (g->rb_n && (!g->uh_n || g->rb[0].key <= g->uh[0].ts))
            break;
        if (!g->uh_n)
            return 0; /* every user churned */
        if (generate_one(g) < 0)
            return 0;
    }
    gen_ev e = rb_pop(g);
    if (account(g, &e) < 0)
        return 0;
    render(g, &e, out);
    g->emitted++;
    return 1;
}

/* ---- truth accessors ----------------------------------------------------- */

const fd_gen_opts *fd_gen_get_opts(const fd_gen *g)
{
    return &g->o;
}

uint64_t fd_gen_emitted(const fd_gen *g)
{
    return g->emitted;
}

const fd_gen_user_truth *fd_gen_user(const fd_gen *g, uint32_t u)
{
    return u < g->o.users ? &g->ut[u] : NULL;
}

uint32_t fd_gen_active_users(const fd_gen *g)
{
    return g->active;
}

int64_t fd_gen_churn_ts(const fd_gen *g, uint32_t u)
{
    if (u >= g->o.users || g->users[u].churn_ts == INT64_MAX)
        return -1;
    return g->users[u].churn_ts;
}

size_t fd_gen_minutes(const fd_gen *g, int64_t *first_window_ms)
{
    if (first_window_ms)
        *first_window_ms = g->minute0;
    return g->min_n;
}

const fd_gen_minute_truth *fd_gen_minute(const fd_gen *g, size_t i)
{
    return i < g->min_n ? &g->min[i] : NULL;
}

void fd_gen_totals(const fd_gen *g, fd_gen_minute_truth *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < g->min_n; i++) {
        for (int t = 0; t < FD_EV__COUNT; t++)
            out->n[t] += g->min[i].n[t];
        out->revenue_cents += g->min[i].revenue_cents;
    }
}

const float *fd_gen_user_vec(const fd_gen *g, uint32_t u)
{
    return u < g->o.users ? &g->uvec[(size_t)u * FD_GEN_DIM] : NULL;
}

const float *fd_gen_item_vec(const fd_gen *g, uint32_t i)
{
    return i < g->o.items ? &g->ivec[(size_t)i * FD_GEN_DIM] : NULL;
}

float fd_gen_item_bias(const fd_gen *g, uint32_t i)
{
    return i < g->o.items ? g->ibias[i] : 0.0f;
}

int fd_gen_item_category(const fd_gen *g, uint32_t i)
{
    return i < g->o.items ? g->icat[i] : -1;
}

int64_t fd_gen_item_price_cents(const fd_gen *g, uint32_t i)
{
    return i < g->o.items ? g->iprice[i] : -1;
}
