/*
 * window.h - per-minute funnel counters, kept as deltas per (partition,
 * window) until they are flushed.
 *
 * Keeping deltas per partition lets the pipeline drop exactly the effects of
 * a partition whose state was not written (revoked during an outage) without
 * touching the others. Pure C; one table per thread.
 */
#ifndef FD_WINDOW_H
#define FD_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

#define FD_WINDOW_MS 60000

enum { FD_WC_CLICK = 0, FD_WC_CART, FD_WC_PURCHASE, FD_WC_REVENUE_CENTS, FD_WC__COUNT };

/* Field names in Redis, indexed by FD_WC_*: click, cart, purchase, revenue_cents. */
extern const char *const fd_window_field_names[FD_WC__COUNT];

typedef struct fd_window_delta {
    int32_t partition; /* -1 = empty slot */
    int64_t start_ms;  /* window start (ts - ts mod FD_WINDOW_MS) */
    int64_t c[FD_WC__COUNT];
} fd_window_delta;

typedef struct fd_window_table fd_window_table;

fd_window_table *fd_window_table_new(void);
void fd_window_table_free(fd_window_table *t); /* NULL accepted */

/* Window start of an event time. */
int64_t fd_window_start(int64_t ts_ms);

/* Revenue of an event in cents: llround(price * 100) * quantity for a
 * PURCHASE with a price, else 0. Integer so sums are exact in any order. */
int64_t fd_event_revenue_cents(const fd_event *ev);

/* Count one validated event of `partition`. 0 or -1 (out of memory). */
int fd_window_add(fd_window_table *t, int32_t partition, const fd_event *ev);

/* Add another delta's counters into (partition, d->start_ms). 0 or -1. */
int fd_window_merge(fd_window_table *t, int32_t partition, const fd_window_delta *d);

/* Iterate non-empty deltas: *cursor starts at 0; NULL at the end. */
const fd_window_delta *fd_window_next(const fd_window_table *t, size_t *cursor);

size_t fd_window_count(const fd_window_table *t);

/* The whole per-event state update of the functional core: the user's
 * counters and the per-minute window counters of `partition`. The user must
 * be loaded (or known new). 0 or -1 (out of memory). Used by the engine's
 * shards and by `funnelctl bench --no-io`, so both measure the same work. */
struct fd_user;
int fd_core_apply(struct fd_user *u, fd_window_table *w, int32_t partition, const fd_event *ev);

/* Forget the deltas of one partition (partition >= 0) or all (-1). */
void fd_window_clear(fd_window_table *t, int32_t partition);

#endif
