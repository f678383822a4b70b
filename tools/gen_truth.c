/*
 * gen_truth.c - the sessions and funnel windows of docs/FEATURES.md,
 * computed a second time, independently of features/, for the generator's
 * ground truth.
 *
 * Why it is built this way:
 *
 * - Written from the spec alone. Nothing here comes from features/ (only the
 *   fd_event struct), so a misreading of FEATURES.md shows up as a
 *   difference between Redis and the truth instead of being shared.
 *   Deliberate differences of method: session ids are compared as strings
 *   (not as 64-bit hashes), the users per stage are counted exactly (not
 *   with HyperLogLog), the hours are accumulated on their own (not summed
 *   from the windows).
 *
 * - Memory stays small for millions of events. Per user one record with a
 *   copy of the current session id; per window one record (plus the
 *   category breakdown when asked for); and per stage reached one 64-bit
 *   entry (window, stage, user). Distinct users are counted once at the
 *   end by sorting the entries (sort-unique), so there is no hash set per
 *   window. A session reaches at most four stages, so the entries are
 *   bounded by 4 x sessions.
 *
 * - The partition of a user is computed as librdkafka's default partitioner
 *   does for a keyed message (consistent_random: crc32(key) % partitions),
 *   with its own table-driven CRC-32; tests check it against librdkafka.
 */
#include "tools/gen_truth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_MS   3600000LL
#define WIN_SHIFT 34 /* entry = window << 34 | (stage - 1) << 32 | user */

typedef struct twin {
    fd_truth_window pub;
    uint32_t hour; /* index into hours (windows only) */
    int64_t *cat;  /* (n_categories + 1) * FD_TRUTH__COUNTERS, or NULL */
} twin;

typedef struct imap { /* int64 key -> index, open addressing */
    int64_t *keys;
    uint32_t *vals; /* index + 1; 0 = empty */
    size_t cap, n;
} imap;

typedef struct tpart {
    bool seen;
    int64_t max_ts;
} tpart;

struct fd_truth {
    fd_truth_opts o;
    char *cats[FD_TRUTH_MAX_CATEGORIES];

    fd_truth_user *users;
    uint64_t *uhash;
    size_t nu, cap_u;
    uint32_t *umap; /* user index + 1; 0 = empty */
    size_t umap_cap;

    tpart *parts;

    twin *win, *hours;
    size_t nw, cap_w, nh, cap_h;
    imap wmap, hmap;
    uint32_t *worder, *horder; /* sorted by start, after finish */
    size_t nw_sorted, nh_sorted;

    uint64_t *ent; /* stages reached per (window, user) */
    size_t nent, cap_ent;

    uint64_t events, late;
};

static const char *const counter_names[FD_TRUTH__COUNTERS] = {
    "sessions_visit", "sessions_click", "sessions_cart", "sessions_purchase",
    "click",          "cart",           "purchase",      "revenue_cents",
};

const char *fd_truth_counter_name(int i)
{
    return i >= 0 && i < FD_TRUTH__COUNTERS ? counter_names[i] : NULL;
}

/* ---- CRC-32 and the partitioner ------------------------------------------ */

uint32_t fd_truth_crc32(const void *buf, size_t len)
{
    /* Bitwise: it runs once per user, and a table would be global state. */
    const unsigned char *p = buf;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

int32_t fd_truth_partition(const void *key, size_t len, int32_t partitions)
{
    if (partitions <= 0)
        return -1;
    return (int32_t)(fd_truth_crc32(key, len) % (uint32_t)partitions);
}

/* ---- small hash maps ----------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static int imap_grow(imap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    int64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->vals[i])
            continue;
        size_t j = mix64((uint64_t)m->keys[i]) & (cap - 1);
        while (vals[j])
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

/* Slot of key: vals[slot] is 0 when absent. Needs cap > n. */
static size_t imap_slot(const imap *m, int64_t key)
{
    size_t j = mix64((uint64_t)key) & (m->cap - 1);
    while (m->vals[j] && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    return j;
}

/* ---- set-up -------------------------------------------------------------- */

void fd_truth_opts_default(fd_truth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->partitions = 4;
    o->session_gap_ms = 30 * 60000LL;
    o->window_ms = 60000;
    o->allowed_lateness_ms = 120000;
}

fd_truth *fd_truth_new(const fd_truth_opts *o, char *err, size_t n)
{
    if (o->partitions < 1 || o->partitions > (1u << 20)) {
        snprintf(err, n, "partitions %u out of range (1 .. 1048576)", o->partitions);
        return NULL;
    }
    if (o->session_gap_ms <= 0) {
        snprintf(err, n, "session gap must be positive");
        return NULL;
    }
    if (o->window_ms <= 0 || HOUR_MS % o->window_ms != 0) {
        snprintf(err, n, "window %lld ms does not divide one hour", (long long)o->window_ms);
        return NULL;
    }
    if (o->allowed_lateness_ms < 0) {
        snprintf(err, n, "allowed lateness must not be negative");
        return NULL;
    }
    if (o->n_categories > FD_TRUTH_MAX_CATEGORIES || (o->n_categories && !o->categories)) {
        snprintf(err, n, "at most %d categories", FD_TRUTH_MAX_CATEGORIES);
        return NULL;
    }
    for (size_t i = 0; i < o->n_categories; i++) {
        const char *c = o->categories[i];
        if (!c || !*c || !strcmp(c, "other") || strlen(c) > FD_ID_MAX) {
            snprintf(err, n, "category %zu: empty, too long or \"other\"", i + 1);
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c, o->categories[j])) {
                snprintf(err, n, "category \"%s\" given twice", c);
                return NULL;
            }
    }
    fd_truth *t = calloc(1, sizeof *t);
    if (!t)
        goto nomem;
    t->o = *o;
    t->o.categories = NULL; /* the copies below are used */
    for (size_t i = 0; i < o->n_categories; i++)
        if (!(t->cats[i] = strdup(o->categories[i])))
            goto nomem;
    t->parts = calloc(o->partitions, sizeof *t->parts);
    t->cap_u = o->users_hint ? o->users_hint : 1024;
    t->users = malloc(t->cap_u * sizeof *t->users);
    t->uhash = malloc(t->cap_u * sizeof *t->uhash);
    t->umap_cap = 1024;
    while (t->umap_cap < 2 * t->cap_u)
        t->umap_cap *= 2;
    t->umap = calloc(t->umap_cap, sizeof *t->umap);
    if (!t->parts || !t->users || !t->uhash || !t->umap)
        goto nomem;
    if (imap_grow(&t->wmap) < 0 || imap_grow(&t->hmap) < 0)
        goto nomem;
    return t;
nomem:
    snprintf(err, n, "out of memory");
    fd_truth_free(t);
    return NULL;
}

void fd_truth_free(fd_truth *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nu; i++) {
        free((char *)t->users[i].user_id);
        free((char *)t->users[i].session_id);
    }
    for (size_t i = 0; i < t->nw; i++)
        free(t->win[i].cat);
    for (size_t i = 0; i < FD_TRUTH_MAX_CATEGORIES; i++)
        free(t->cats[i]);
    free(t->users);
    free(t->uhash);
    free(t->umap);
    free(t->parts);
    free(t->win);
    free(t->hours);
    free(t->wmap.keys);
    free(t->wmap.vals);
    free(t->hmap.keys);
    free(t->hmap.vals);
    free(t->worder);
    free(t->horder);
    free(t->ent);
    free(t);
}

/* ---- lookups ------------------------------------------------------------- */

static size_t umap_slot(const fd_truth *t, const char *id, uint64_t h)
{
    size_t j = mix64(h) & (t->umap_cap - 1);
    while (t->umap[j]) {
        uint32_t i = t->umap[j] - 1;
        if (t->uhash[i] == h && !strcmp(t->users[i].user_id, id))
            break;
        j = (j + 1) & (t->umap_cap - 1);
    }
    return j;
}

static fd_truth_user *user_get(fd_truth *t, const char *id)
{
    uint64_t h = fnv1a(id);
    size_t j = umap_slot(t, id, h);
    if (t->umap[j])
        return &t->users[t->umap[j] - 1];
    if (t->nu >= UINT32_MAX - 1)
        return NULL;
    if (t->nu == t->cap_u) {
        size_t cap = t->cap_u * 2;
        fd_truth_user *nu = realloc(t->users, cap * sizeof *nu);
        if (!nu)
            return NULL;
        t->users = nu;
        uint64_t *nh = realloc(t->uhash, cap * sizeof *nh);
        if (!nh)
            return NULL;
        t->uhash = nh;
        t->cap_u = cap;
    }
    if (2 * (t->nu + 1) > t->umap_cap) {
        size_t cap = t->umap_cap * 2;
        uint32_t *m = calloc(cap, sizeof *m);
        if (!m)
            return NULL;
        for (size_t i = 0; i < t->nu; i++) {
            size_t k = mix64(t->uhash[i]) & (cap - 1);
            while (m[k])
                k = (k + 1) & (cap - 1);
            m[k] = (uint32_t)i + 1;
        }
        free(t->umap);
        t->umap = m;
        t->umap_cap = cap;
        j = umap_slot(t, id, h);
    }
    char *copy = strdup(id);
    if (!copy)
        return NULL;
    fd_truth_user *u = &t->users[t->nu];
    memset(u, 0, sizeof *u);
    u->user_id = copy;
    u->partition = fd_truth_partition(id, strlen(id), (int32_t)t->o.partitions);
    t->uhash[t->nu] = h;
    t->umap[j] = (uint32_t)++t->nu;
    return u;
}

const fd_truth_user *fd_truth_user_find(const fd_truth *t, const char *user_id)
{
    size_t j = umap_slot(t, user_id, fnv1a(user_id));
    return t->umap[j] ? &t->users[t->umap[j] - 1] : NULL;
}

static int64_t floor_to(int64_t ts, int64_t unit)
{
    int64_t r = ts % unit;
    return ts - (r < 0 ? r + unit : r);
}

/* Window (or hour) starting at start, created empty when new. */
static twin *slot_get(imap *m, twin **arr, size_t *n, size_t *cap, int64_t start, size_t ncat,
                      uint32_t *idx)
{
    if (2 * (m->n + 1) > m->cap && imap_grow(m) < 0)
        return NULL;
    size_t j = imap_slot(m, start);
    if (m->vals[j]) {
        *idx = m->vals[j] - 1;
        return &(*arr)[*idx];
    }
    if (*n >= (1u << 29))
        return NULL;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        twin *na = realloc(*arr, c * sizeof *na);
        if (!na)
            return NULL;
        *arr = na;
        *cap = c;
    }
    twin *w = &(*arr)[*n];
    memset(w, 0, sizeof *w);
    w->pub.start_ms = start;
    if (ncat) {
        w->cat = calloc(ncat * FD_TRUTH__COUNTERS, sizeof *w->cat);
        if (!w->cat)
            return NULL;
    }
    m->keys[j] = start;
    m->vals[j] = (uint32_t)++ * n;
    m->n++;
    *idx = (uint32_t)(*n - 1);
    return w;
}

static size_t category_of(const fd_truth *t, const fd_event *ev)
{
    if (ev->has_category)
        for (size_t c = 0; c < t->o.n_categories; c++)
            if (!strcmp(t->cats[c], ev->category))
                return c;
    return t->o.n_categories; /* "other" */
}

/* ---- the rules ----------------------------------------------------------- */

static bool same_or_unknown(const char *a, const char *b)
{
    return !a || !b || !strcmp(a, b);
}

int fd_truth_add(fd_truth *t, const fd_event *ev)
{
    if (ev->type >= FD_EV__COUNT)
        return -1;
    fd_truth_user *u = user_get(t, ev->user_id);
    if (!u)
        return -1;
    size_t ui = (size_t)(u - t->users);
    const int64_t ts = ev->ts_ms, gap = t->o.session_gap_ms, W = t->o.window_ms;

    /* Watermark of the partition before this event. */
    tpart *p = &t->parts[u->partition];
    int64_t wstart = floor_to(ts, W);
    bool late = p->seen && wstart + W <= p->max_ts - t->o.allowed_lateness_ms;
    if (!p->seen || ts > p->max_ts)
        p->max_ts = ts;
    p->seen = true;

    /* Session. */
    const char *sid = ev->has_session ? ev->session_id : NULL;
    int kind;
    if (!u->has_session)
        kind = FD_TRUTH_NEW;
    else if (ts < u->s_start)
        kind = same_or_unknown(sid, u->session_id) && ts > u->s_start - gap ? FD_TRUTH_JOIN
                                                                            : FD_TRUTH_STALE;
    else if ((sid && u->session_id && strcmp(sid, u->session_id)) || ts >= u->s_last + gap)
        kind = FD_TRUTH_NEW;
    else
        kind = FD_TRUTH_JOIN;

    int old = u->s_stage, evstage = FD_STAGE_CLICK + ev->type;
    if (kind == FD_TRUTH_NEW) {
        char *copy = NULL;
        if (sid && !(copy = strdup(sid)))
            return -1;
        free((char *)u->session_id);
        u->session_id = copy;
        u->has_session = true;
        u->s_start = u->s_last = ts;
        u->s_stage = FD_STAGE_VISIT;
        u->sessions++;
        old = FD_STAGE_NONE;
    } else if (kind == FD_TRUTH_JOIN) {
        if (ts < u->s_start) {
            u->s_start = ts; /* backwards; the id stays as it is */
        } else {
            if (ts > u->s_last)
                u->s_last = ts;
            if (!u->session_id && sid && !(u->session_id = strdup(sid)))
                return -1;
        }
    }
    int reached_to = old; /* stages old+1 .. reached_to were reached */
    if (kind != FD_TRUTH_STALE) {
        if (evstage > u->s_stage)
            u->s_stage = evstage;
        reached_to = u->s_stage;
    }

    /* Per user. */
    int64_t rev = 0;
    if (ev->type == FD_EV_PURCHASE)
        rev = (int64_t)llround((ev->has_price ? ev->price : 0.0) * 100.0) * ev->quantity;
    if (!(u->n[0] | u->n[1] | u->n[2]))
        u->first_ts = u->last_ts = ts;
    u->n[ev->type]++;
    if (ts < u->first_ts)
        u->first_ts = ts;
    if (ts > u->last_ts)
        u->last_ts = ts;
    u->revenue_cents += rev;
    if (ev->type == FD_EV_CART && ts > u->last_cart_ts)
        u->last_cart_ts = ts;
    if (ev->type == FD_EV_PURCHASE && ts > u->last_purchase_ts)
        u->last_purchase_ts = ts;
    if (kind == FD_TRUTH_STALE)
        u->stale++;
    t->events++;
    if (late) {
        u->late++;
        t->late++;
        return kind | FD_TRUTH_LATE;
    }

    /* Window, hour, category. */
    size_t ncat = t->o.n_categories ? t->o.n_categories + 1 : 0;
    uint32_t wi, hi;
    twin *h = slot_get(&t->hmap, &t->hours, &t->nh, &t->cap_h, floor_to(ts, HOUR_MS), 0, &hi);
    if (!h)
        return -1;
    twin *w = slot_get(&t->wmap, &t->win, &t->nw, &t->cap_w, wstart, ncat, &wi);
    if (!w)
        return -1;
    w->hour = hi;
    if (t->nent + 4 > t->cap_ent) {
        size_t c = t->cap_ent ? t->cap_ent * 2 : 4096;
        uint64_t *ne = realloc(t->ent, c * sizeof *ne);
        if (!ne)
            return -1;
        t->ent = ne;
        t->cap_ent = c;
    }
    int64_t *cat = ncat ? &w->cat[category_of(t, ev) * FD_TRUTH__COUNTERS] : NULL;
    int64_t *cs[3] = {w->pub.c, h->pub.c, cat};
    for (int k = 0; k < 3; k++) {
        if (!cs[k])
            continue;
        for (int s = old + 1; s <= reached_to; s++)
            cs[k][FD_TRUTH_SESSIONS_VISIT + s - FD_STAGE_VISIT]++;
        cs[k][FD_TRUTH_CLICK + ev->type]++;
        cs[k][FD_TRUTH_REVENUE_CENTS] += rev;
    }
    for (int s = old + 1; s <= reached_to; s++)
        t->ent[t->nent++] = (uint64_t)wi << WIN_SHIFT | (uint64_t)(s - FD_STAGE_VISIT) << 32 | ui;
    return kind;
}

/* ---- finishing ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static const twin *sort_base;

static int cmp_start(const void *a, const void *b)
{
    int64_t x = sort_base[*(const uint32_t *)a].pub.start_ms;
    int64_t y = sort_base[*(const uint32_t *)b].pub.start_ms;
    return x < y ? -1 : x > y;
}

static uint32_t *sorted_order(const twin *arr, size_t n)
{
    uint32_t *o = malloc((n ? n : 1) * sizeof *o);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++)
        o[i] = (uint32_t)i;
    sort_base = arr;
    qsort(o, n, sizeof *o, cmp_start);
    return o;
}

/* Sort and drop duplicates; returns the new length. */
static size_t sort_unique(uint64_t *a, size_t n)
{
    if (!n)
        return 0;
    qsort(a, n, sizeof *a, cmp_u64);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (a[i] != a[m - 1])
            a[m++] = a[i];
    return m;
}

int fd_truth_finish(fd_truth *t)
{
    uint32_t *wo = sorted_order(t->win, t->nw), *ho = sorted_order(t->hours, t->nh);
    uint64_t *hent = NULL;
    if (!wo || !ho)
        goto nomem;
    /* The (window, stage, user) entries are a set: keep them unique. */
    t->nent = sort_unique(t->ent, t->nent);
    hent = malloc((t->nent ? t->nent : 1) * sizeof *hent);
    if (!hent)
        goto nomem;
    const uint64_t low = ((uint64_t)1 << WIN_SHIFT) - 1;
    for (size_t i = 0; i < t->nw; i++)
        memset(t->win[i].pub.users, 0, sizeof t->win[i].pub.users);
    for (size_t i = 0; i < t->nh; i++)
        memset(t->hours[i].pub.users, 0, sizeof t->hours[i].pub.users);
    for (size_t i = 0; i < t->nent; i++) {
        uint64_t e = t->ent[i];
        twin *w = &t->win[e >> WIN_SHIFT];
        w->pub.users[(e >> 32) & 3]++;
        hent[i] = (uint64_t)w->hour << WIN_SHIFT | (e & low);
    }
    size_t nh = sort_unique(hent, t->nent);
    for (size_t i = 0; i < nh; i++)
        t->hours[hent[i] >> WIN_SHIFT].pub.users[(hent[i] >> 32) & 3]++;
    free(hent);
    free(t->worder);
    free(t->horder);
    t->worder = wo;
    t->horder = ho;
    t->nw_sorted = t->nw;
    t->nh_sorted = t->nh;
    return 0;
nomem:
    free(wo);
    free(ho);
    return -1;
}

/* ---- accessors ----------------------------------------------------------- */

const fd_truth_opts *fd_truth_get_opts(const fd_truth *t)
{
    return &t->o;
}

uint64_t fd_truth_events(const fd_truth *t)
{
    return t->events;
}

uint64_t fd_truth_late_events(const fd_truth *t)
{
    return t->late;
}

size_t fd_truth_n_users(const fd_truth *t)
{
    return t->nu;
}

const fd_truth_user *fd_truth_user_at(const fd_truth *t, size_t i)
{
    return i < t->nu ? &t->users[i] : NULL;
}

size_t fd_truth_n_windows(const fd_truth *t)
{
    return t->nw_sorted;
}

const fd_truth_window *fd_truth_window_at(const fd_truth *t, size_t i)
{
    return i < t->nw_sorted ? &t->win[t->worder[i]].pub : NULL;
}

size_t fd_truth_n_hours(const fd_truth *t)
{
    return t->nh_sorted;
}

const fd_truth_window *fd_truth_hour_at(const fd_truth *t, size_t i)
{
    return i < t->nh_sorted ? &t->hours[t->horder[i]].pub : NULL;
}

const int64_t *fd_truth_window_cat(const fd_truth *t, size_t i, size_t c)
{
    if (i >= t->nw_sorted || !t->o.n_categories || c > t->o.n_categories)
        return NULL;
    return &t->win[t->worder[i]].cat[c * FD_TRUTH__COUNTERS];
}

const char *fd_truth_category_name(const fd_truth *t, size_t c)
{
    if (c < t->o.n_categories)
        return t->cats[c];
    return c == t->o.n_categories ? "other" : NULL;
}
