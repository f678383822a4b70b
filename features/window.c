/*
 * window.c - see window.h. A small open-addressing hash keyed by
 * (partition, window start); cleared after every successful flush, so it
 * stays as small as the number of windows touched between two flushes.
 */
#include "features/window.h"

#include <math.h>

#include "features/user.h"
#include <stdlib.h>
#include <string.h>

const char *const fd_window_field_names[FD_WC__COUNT] = {"click", "cart", "purchase",
                                                         "revenue_cents"};

struct fd_window_table {
    fd_window_delta *slots;
    size_t cap, count;
};

static void clear_slots(fd_window_delta *s, size_t n)
{
    memset(s, 0, n * sizeof *s);
    for (size_t i = 0; i < n; i++)
        s[i].partition = -1;
}

fd_window_table *fd_window_table_new(void)
{
    fd_window_table *t = calloc(1, sizeof *t);
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

void fd_window_table_free(fd_window_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

int64_t fd_window_start(int64_t ts_ms)
{
    int64_t r = ts_ms % FD_WINDOW_MS;
    if (r < 0)
        r += FD_WINDOW_MS;
    return ts_ms - r;
}

int64_t fd_event_revenue_cents(const fd_event *ev)
{
    if (ev->type != FD_EV_PURCHASE || !ev->has_price)
        return 0;
    return (int64_t)llround(ev->price * 100.0) * ev->quantity;
}

static size_t slot_of(const fd_window_delta *slots, size_t cap, int32_t p, int64_t start)
{
    uint64_t h = (uint64_t)start * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)p * 0xC2B2AE3Dull;
    size_t i = (size_t)(h >> 17) & (cap - 1);
    while (slots[i].partition != -1 && (slots[i].partition != p || slots[i].start_ms != start))
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(fd_window_table *t)
{
    size_t ncap = t->cap * 2;
    fd_window_delta *ns = malloc(ncap * sizeof *ns);
    if (!ns)
        return -1;
    clear_slots(ns, ncap);
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].partition != -1)
            ns[slot_of(ns, ncap, t->slots[i].partition, t->slots[i].start_ms)] = t->slots[i];
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

/* The slot of (partition, start), created empty when absent; NULL when out
 * of memory. */
static fd_window_delta *slot_get(fd_window_table *t, int32_t partition, int64_t start)
{
    size_t i = slot_of(t->slots, t->cap, partition, start);
    if (t->slots[i].partition == -1) {
        if ((t->count + 1) * 2 > t->cap) {
            if (grow(t) != 0)
                return NULL;
            i = slot_of(t->slots, t->cap, partition, start);
        }
        t->slots[i].partition = partition;
        t->slots[i].start_ms = start;
        t->count++;
    }
    return &t->slots[i];
}

int fd_window_merge(fd_window_table *t, int32_t partition, const fd_window_delta *d)
{
    fd_window_delta *s = slot_get(t, partition, d->start_ms);
    if (!s)
        return -1;
    for (int f = 0; f < FD_WC__COUNT; f++)
        s->c[f] += d->c[f];
    return 0;
}

int fd_window_add(fd_window_table *t, int32_t partition, const fd_event *ev)
{
    int64_t start = fd_window_start(ev->ts_ms);
    size_t i = slot_of(t->slots, t->cap, partition, start);
    if (t->slots[i].partition == -1) {
        if ((t->count + 1) * 2 > t->cap) {
            if (grow(t) != 0)
                return -1;
            i = slot_of(t->slots, t->cap, partition, start);
        }
        t->slots[i].partition = partition;
        t->slots[i].start_ms = start;
        t->count++;
    }
    fd_window_delta *d = &t->slots[i];
    d->c[ev->type]++; /* FD_EV_* and FD_WC_* share the first three indices */
    d->c[FD_WC_REVENUE_CENTS] += fd_event_revenue_cents(ev);
    return 0;
}

int fd_core_apply(struct fd_user *u, fd_window_table *w, int32_t partition, const fd_event *ev)
{
    fd_user_apply(u, ev);
    u->partition = partition;
    return fd_window_add(w, partition, ev);
}

const fd_window_delta *fd_window_next(const fd_window_table *t, size_t *cursor)
{
    while (*cursor < t->cap) {
        const fd_window_delta *d = &t->slots[(*cursor)++];
        if (d->partition != -1)
            return d;
    }
    return NULL;
}

size_t fd_window_count(const fd_window_table *t)
{
    return t->count;
}

void fd_window_clear(fd_window_table *t, int32_t partition)
{
    if (partition < 0) {
        clear_slots(t->slots, t->cap);
        t->count = 0;
        return;
    }
    /* Rebuild without that partition (keeps probe chains intact). */
    fd_window_delta *old = t->slots;
    fd_window_delta *ns = malloc(t->cap * sizeof *ns);
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
            ns[slot_of(ns, t->cap, old[i].partition, old[i].start_ms)] = old[i];
            n++;
        }
    free(old);
    t->slots = ns;
    t->count = n;
}
