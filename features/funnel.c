/*
 * funnel.c - see funnel.h. A small open-addressing hash keyed by
 * (partition, category, window start), cleared after every successful
 * flush, so it stays as small as the windows touched between two flushes;
 * plus an append-only list of stage reaches for the HyperLogLogs.
 */
#include "features/funnel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/user.h"

const char *const fd_funnel_field_names[FD_FC__COUNT] = {
    "sessions_visit", "sessions_click", "sessions_cart", "sessions_purchase",
    "click",          "cart",           "purchase",      "revenue_cents"};

#define LAST_N 64

struct fd_funnel_table {
    fd_funnel_delta *slots;
    size_t cap, count;
    /* the slot found last per partition (mod LAST_N / 2), one for the
     * total and one for a category: events of a partition come mostly in
     * time order, so mostly the same window (slot_get looks here before
     * hashing; reset whenever slots move or are cleared) */
    fd_funnel_delta *last[LAST_N];
    fd_funnel_reach *reach;
    size_t n_reach, cap_reach;
    uint64_t saturated; /* fd_funnel_saturated */
};

int fd_funnel_params_init(fd_funnel_params *p, int64_t window_ms, int64_t lateness_ms,
                          const char *const *cats, int n_cats, char *errstr, size_t errstr_size)
{
    memset(p, 0, sizeof *p);
    if (window_ms <= 0 || FD_HOUR_MS % window_ms != 0) {
        snprintf(errstr, errstr_size, "window %lld ms does not divide one hour",
                 (long long)window_ms);
        return -1;
    }
    if (lateness_ms < 0) {
        snprintf(errstr, errstr_size, "allowed lateness is negative");
        return -1;
    }
    if (n_cats < 0 || n_cats > FD_FUNNEL_MAX_CATS) {
        snprintf(errstr, errstr_size, "at most %d categories", FD_FUNNEL_MAX_CATS);
        return -1;
    }
    for (int i = 0; i < n_cats; i++) {
        if (!*cats[i] || strlen(cats[i]) > FD_ID_MAX) {
            snprintf(errstr, errstr_size, "category %d is empty or longer than %d bytes", i + 1,
                     FD_ID_MAX);
            return -1;
        }
        if (strcmp(cats[i], "other") == 0) {
            snprintf(errstr, errstr_size, "category \"other\" is reserved");
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(cats[i], cats[j]) == 0) {
                snprintf(errstr, errstr_size, "category \"%s\" is listed twice", cats[i]);
                return -1;
            }
        memcpy(p->cats[i], cats[i], strlen(cats[i]) + 1);
        p->cat_hash[i] = fd_str_hash(p->cats[i]); /* the copy: 7 bytes follow its NUL */
    }
    p->n_cats = n_cats;
    p->window_ms = window_ms;
    p->lateness_ms = lateness_ms;
    fd_duration_name(window_ms, p->window_name, sizeof p->window_name);
    return 0;
}

const char *fd_funnel_cat_name(const fd_funnel_params *p, int c)
{
    return c >= 0 && c < p->n_cats ? p->cats[c] : "other";
}

static int cat_index(const fd_funnel_params *p, const fd_event *ev)
{
    if (!ev->has_category)
        return p->n_cats;
    uint64_t h = fd_str_hash(ev->category);
    for (int i = 0; i < p->n_cats; i++)
        if (p->cat_hash[i] == h && strcmp(p->cats[i], ev->category) == 0)
            return i;
    return p->n_cats;
}

static void clear_slots(fd_funnel_delta *s, size_t n)
{
    memset(s, 0, n * sizeof *s);
    for (size_t i = 0; i < n; i++)
        s[i].partition = -1;
}

fd_funnel_table *fd_funnel_table_new(void)
{
    fd_funnel_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cap = 256;
    t->slots = malloc(t->cap * sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    clear_slots(t->slots, t->cap);
    return t;
}

void fd_funnel_table_free(fd_funnel_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->reach);
    free(t);
}

int64_t fd_funnel_start(const fd_funnel_params *p, int64_t ts_ms)
{
    int64_t r = ts_ms % p->window_ms;
    if (r < 0)
        r += p->window_ms;
    return ts_ms - r;
}

static inline bool late_start(const fd_funnel_params *p, int64_t start, int64_t part_max_ts)
{
    return part_max_ts > 0 && start + p->window_ms <= part_max_ts - p->lateness_ms;
}

bool fd_funnel_is_late(const fd_funnel_params *p, int64_t ts_ms, int64_t part_max_ts)
{
    return late_start(p, fd_funnel_start(p, ts_ms), part_max_ts);
}

static size_t slot_of(const fd_funnel_delta *slots, size_t cap, int32_t p, int32_t cat,
                      int64_t start)
{
    uint64_t h = (uint64_t)start * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)p * 0xC2B2AE3Dull ^
                 (uint64_t)(uint32_t)(cat + 1) * 0x165667B19E3779F9ull;
    size_t i = (size_t)(h >> 17) & (cap - 1);
    while (slots[i].partition != -1 &&
           (slots[i].partition != p || slots[i].cat != cat || slots[i].start_ms != start))
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(fd_funnel_table *t)
{
    size_t ncap = t->cap * 2;
    fd_funnel_delta *ns = malloc(ncap * sizeof *ns);
    if (!ns)
        return -1;
    clear_slots(ns, ncap);
    for (size_t i = 0; i < t->cap; i++) {
        const fd_funnel_delta *d = &t->slots[i];
        if (d->partition != -1)
            ns[slot_of(ns, ncap, d->partition, d->cat, d->start_ms)] = *d;
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    memset(t->last, 0, sizeof t->last);
    return 0;
}

/* t->last's entry for (partition, cat): the total's or a category's. */
static inline size_t last_of(int32_t partition, int32_t cat)
{
    return ((size_t)(uint32_t)partition & (LAST_N / 2 - 1)) * 2 + (cat == FD_CAT_TOTAL);
}

/* The slot of (partition, cat, start), created empty when absent; NULL when
 * out of memory. */
static fd_funnel_delta *slot_get(fd_funnel_table *t, int32_t partition, int32_t cat, int64_t start)
{
    fd_funnel_delta *c = t->last[last_of(partition, cat)];
    if (c && c->partition == partition && c->cat == cat && c->start_ms == start)
        return c;
    size_t i = slot_of(t->slots, t->cap, partition, cat, start);
    if (t->slots[i].partition == -1) {
        if ((t->count + 1) * 2 > t->cap) {
            if (grow(t) != 0)
                return NULL;
            i = slot_of(t->slots, t->cap, partition, cat, start);
        }
        t->slots[i].partition = partition;
        t->slots[i].cat = cat;
        t->slots[i].start_ms = start;
        t->count++;
    }
    return t->last[last_of(partition, cat)] = &t->slots[i];
}

int fd_funnel_merge(fd_funnel_table *t, int32_t partition, int32_t cat, int64_t start_ms,
                    const int64_t *c)
{
    fd_funnel_delta *s = slot_get(t, partition, cat, start_ms);
    if (!s)
        return -1;
    bool sat = false;
    for (int f = 0; f < FD_FC__COUNT; f++)
        s->c[f] = fd_sat_add(s->c[f], c[f], &sat);
    t->saturated += sat;
    return 0;
}

uint64_t fd_funnel_saturated(const fd_funnel_table *t)
{
    return t->saturated;
}

static void count_into(fd_funnel_table *t, fd_funnel_delta *d, const fd_event *ev,
                       const fd_sess_step *step, int64_t rc)
{
    bool sat = false;
    for (int s = step->from + 1; s <= step->to; s++) {
        int64_t *c = &d->c[FD_FC_SESS_VISIT + s - FD_STAGE_VISIT];
        *c = fd_sat_add(*c, 1, &sat);
    }
    d->c[FD_FC_CLICK + ev->type] = fd_sat_add(d->c[FD_FC_CLICK + ev->type], 1, &sat);
    d->c[FD_FC_REVENUE_CENTS] = fd_sat_add(d->c[FD_FC_REVENUE_CENTS], rc, &sat);
    t->saturated += sat;
}

static int add_at(fd_funnel_table *t, const fd_funnel_params *p, int32_t partition,
                  const fd_event *ev, const fd_sess_step *step, const char *user, uint32_t user_len,
                  int64_t start)
{
    int64_t rc = step->revenue_cents;
    fd_funnel_delta *d = slot_get(t, partition, FD_CAT_TOTAL, start);
    if (!d)
        return -1;
    count_into(t, d, ev, step, rc);
    if (p->n_cats > 0) {
        fd_funnel_delta *dc = slot_get(t, partition, cat_index(p, ev), start);
        if (!dc)
            return -1;
        count_into(t, dc, ev, step, rc);
    }
    for (int s = step->from + 1; s <= step->to; s++) {
        if (t->n_reach == t->cap_reach) {
            size_t ncap = t->cap_reach ? t->cap_reach * 2 : 1024;
            fd_funnel_reach *nr = realloc(t->reach, ncap * sizeof *nr);
            if (!nr)
                return -1;
            t->reach = nr;
            t->cap_reach = ncap;
        }
        t->reach[t->n_reach++] = (fd_funnel_reach){.partition = partition,
                                                   .stage = s,
                                                   .start_ms = start,
                                                   .user = user,
                                                   .user_len = user_len};
    }
    return 0;
}

int fd_funnel_add(fd_funnel_table *t, const fd_funnel_params *p, int32_t partition,
                  const fd_event *ev, const fd_sess_step *step, const char *user, uint32_t user_len)
{
    return add_at(t, p, partition, ev, step, user, user_len, fd_funnel_start(p, ev->ts_ms));
}

const fd_funnel_delta *fd_funnel_next(const fd_funnel_table *t, size_t *cursor)
{
    while (*cursor < t->cap) {
        const fd_funnel_delta *d = &t->slots[(*cursor)++];
        if (d->partition != -1)
            return d;
    }
    return NULL;
}

size_t fd_funnel_count(const fd_funnel_table *t)
{
    return t->count;
}

const fd_funnel_reach *fd_funnel_reaches(const fd_funnel_table *t, size_t *n)
{
    *n = t->n_reach;
    return t->reach;
}

void fd_funnel_clear(fd_funnel_table *t, int32_t partition)
{
    memset(t->last, 0, sizeof t->last);
    if (partition < 0) {
        clear_slots(t->slots, t->cap);
        t->count = 0;
        t->n_reach = 0;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->n_reach; i++)
        if (t->reach[i].partition != partition)
            t->reach[k++] = t->reach[i];
    t->n_reach = k;
    /* Rebuild without that partition (keeps probe chains intact). */
    fd_funnel_delta *old = t->slots;
    fd_funnel_delta *ns = malloc(t->cap * sizeof *ns);
    if (!ns) { /* fall back: zero the partition's deltas in place */
        for (size_t i = 0; i < t->cap; i++)
            if (old[i].partition == partition)
                memset(old[i].c, 0, sizeof old[i].c);
        return;
    }
    clear_slots(ns, t->cap);
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (old[i].partition != -1 && old[i].partition != partition) {
            ns[slot_of(ns, t->cap, old[i].partition, old[i].cat, old[i].start_ms)] = old[i];
            n++;
        }
    free(old);
    t->slots = ns;
    t->count = n;
}

int fd_core_apply(const fd_core_params *p, struct fd_user *u, fd_funnel_table *w, int32_t partition,
                  const fd_event *ev, int64_t part_max_ts)
{
    fd_sess_step step;
    if (fd_feat_update(&p->feat, &u->f, ev, &step))
        w->saturated++;
    u->dirty = true;
    u->partition = partition;
    int64_t start = fd_funnel_start(&p->funnel, ev->ts_ms); /* one division per event */
    if (late_start(&p->funnel, start, part_max_ts))
        return 1;
    return add_at(w, &p->funnel, partition, ev, &step, fd_user_id(u), u->id_len, start) == 0 ? 0
                                                                                             : -1;
}
