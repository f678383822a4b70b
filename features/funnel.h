/*
 * funnel.h - funnel-stage window counters in event time, kept as deltas per
 * (partition, window, category) until they are flushed, and the whole
 * per-event update of the functional core (fd_core_apply).
 *
 * Keeping deltas per partition lets the pipeline drop exactly the effects of
 * a partition whose state was not written (revoked during an outage) without
 * touching the others. docs/FEATURES.md specifies the counters, the
 * lateness rule and the hourly roll-up. Pure C; one table per thread.
 */
#ifndef FD_FUNNEL_H
#define FD_FUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "features/event.h"
#include "features/features.h"

#define FD_FUNNEL_MAX_CATS 32
#define FD_HOUR_MS         3600000

enum {
    FD_FC_SESS_VISIT = 0, /* sessions that reached visit in the window */
    FD_FC_SESS_CLICK,
    FD_FC_SESS_CART,
    FD_FC_SESS_PURCHASE,
    FD_FC_CLICK, /* events by type: FD_FC_CLICK + FD_EV_* */
    FD_FC_CART,
    FD_FC_PURCHASE,
    FD_FC_REVENUE_CENTS,
    FD_FC__COUNT
};

/* Field names in Redis, indexed by FD_FC_*: sessions_visit ... revenue_cents. */
extern const char *const fd_funnel_field_names[FD_FC__COUNT];

typedef struct fd_funnel_params {
    int64_t window_ms;   /* divides FD_HOUR_MS */
    int64_t lateness_ms; /* funnel.allowed_lateness */
    char window_name[FD_DURATION_NAME_MAX];
    int n_cats; /* breakdown categories; index n_cats is "other" */
    char cats[FD_FUNNEL_MAX_CATS][FD_ID_MAX + 1];
    uint64_t cat_hash[FD_FUNNEL_MAX_CATS];
} fd_funnel_params;

/* cats are copied. 0, or -1 with a message (window not dividing an hour,
 * negative lateness, too many, empty, too long, repeated or "other"). */
int fd_funnel_params_init(fd_funnel_params *p, int64_t window_ms, int64_t lateness_ms,
                          const char *const *cats, int n_cats, char *errstr, size_t errstr_size);

/* Name of category index c (0..n_cats): a configured name or "other". */
const char *fd_funnel_cat_name(const fd_funnel_params *p, int c);

#define FD_CAT_TOTAL (-1)

typedef struct fd_funnel_delta {
    int32_t partition; /* -1 = empty slot */
    int32_t cat;       /* FD_CAT_TOTAL, or category index */
    int64_t start_ms;  /* window start */
    int64_t c[FD_FC__COUNT];
} fd_funnel_delta;

/* A user that reached a stage in a window (for the HyperLogLogs). The id is
 * borrowed from the user table: valid while the user stays in memory. */
typedef struct fd_funnel_reach {
    int32_t partition;
    int32_t stage; /* FD_STAGE_VISIT..FD_STAGE_PURCHASE */
    int64_t start_ms;
    const char *user;
    uint32_t user_len;
} fd_funnel_reach;

typedef struct fd_funnel_table fd_funnel_table;

fd_funnel_table *fd_funnel_table_new(void);
void fd_funnel_table_free(fd_funnel_table *t); /* NULL accepted */

/* Window start of an event time. */
int64_t fd_funnel_start(const fd_funnel_params *p, int64_t ts_ms);

/* Whether an event at ts is late on a partition whose max event time before
 * it is part_max_ts (0 = none yet): its window ends at or before the
 * watermark part_max_ts - lateness. */
bool fd_funnel_is_late(const fd_funnel_params *p, int64_t ts_ms, int64_t part_max_ts);

/* Count one accepted, not late event whose session step is `step`, of user
 * `user`. 0 or -1 (out of memory). Counters saturate at INT64_MAX (counted
 * in fd_funnel_saturated) instead of wrapping. */
int fd_funnel_add(fd_funnel_table *t, const fd_funnel_params *p, int32_t partition,
                  const fd_event *ev, const fd_sess_step *step, const char *user,
                  uint32_t user_len);

/* Add counters into (partition, cat, start). 0 or -1. Saturating, like
 * fd_funnel_add: a counter that would pass INT64_MAX (or INT64_MIN) stays
 * there and fd_funnel_saturated counts it. */
int fd_funnel_merge(fd_funnel_table *t, int32_t partition, int32_t cat, int64_t start_ms,
                    const int64_t *c);

/* How many times a sum saturated instead of overflowing since the table was
 * created (never reset, not even by fd_funnel_clear): a window counter in
 * fd_funnel_add / fd_funnel_merge, or a user total in fd_core_apply
 * (fd_feat_update's answer). A caller reports the growth. */
uint64_t fd_funnel_saturated(const fd_funnel_table *t);

/* Iterate non-empty deltas: *cursor starts at 0; NULL at the end. */
const fd_funnel_delta *fd_funnel_next(const fd_funnel_table *t, size_t *cursor);
size_t fd_funnel_count(const fd_funnel_table *t);

/* The stage reaches recorded since the last clear, in order. */
const fd_funnel_reach *fd_funnel_reaches(const fd_funnel_table *t, size_t *n);

/* Forget the deltas and reaches of one partition (partition >= 0) or all (-1). */
void fd_funnel_clear(fd_funnel_table *t, int32_t partition);

/* ---- the functional core ------------------------------------------------- */

typedef struct fd_core_params {
    fd_feat_params feat;
    fd_funnel_params funnel;
} fd_core_params;

struct fd_user;

/* The whole per-event state update: the user's features and session, then,
 * unless the event is late on its partition (part_max_ts: the partition's
 * max event time before this event), the funnel windows of `partition`.
 * The user must be loaded (or known new). Returns 0, 1 when the event was
 * late (features updated, no window), -1 out of memory. A sum of the user
 * or of a window that saturated is counted in fd_funnel_saturated(w). Used
 * by the engine's shards and by `funnelctl bench --no-io`. */
int fd_core_apply(const fd_core_params *p, struct fd_user *u, fd_funnel_table *w, int32_t partition,
                  const fd_event *ev, int64_t part_max_ts);

#endif
