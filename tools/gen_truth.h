/*
 * gen_truth.h - ground truth of sessions and funnel windows (docs/FEATURES.md).
 *
 * A second, independent implementation of the session, watermark and funnel
 * window rules of docs/FEATURES.md, fed with every event the generator emits
 * in emission order. It shares nothing with features/ but the fd_event
 * struct, so comparing the two (through Redis) checks both.
 *
 * Pure: no I/O, no clock, no global state. Used by one thread at a time.
 */
#ifndef FD_GEN_TRUTH_H
#define FD_GEN_TRUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

#define FD_TRUTH_MAX_CATEGORIES 32

typedef struct fd_truth_opts {
    uint32_t partitions;           /* Kafka partitions of the topic, >= 1 */
    int64_t session_gap_ms;        /* > 0 */
    int64_t window_ms;             /* > 0 and divides 3600000 */
    int64_t allowed_lateness_ms;   /* >= 0 */
    const char *const *categories; /* names with their own breakdown; others are "other" */
    size_t n_categories;           /* 0..FD_TRUTH_MAX_CATEGORIES */
    uint32_t users_hint;           /* expected users (sizing only), 0 = unknown */
} fd_truth_opts;

/* Defaults: 4 partitions, gap 30m, window 1m, lateness 2m, no categories. */
void fd_truth_opts_default(fd_truth_opts *o);

/* Stages of a session. */
enum { FD_STAGE_NONE = 0, FD_STAGE_VISIT, FD_STAGE_CLICK, FD_STAGE_CART, FD_STAGE_PURCHASE };

/* Window counters, in this order; names by fd_truth_counter_name(). */
enum {
    FD_TRUTH_SESSIONS_VISIT = 0,
    FD_TRUTH_SESSIONS_CLICK,
    FD_TRUTH_SESSIONS_CART,
    FD_TRUTH_SESSIONS_PURCHASE,
    FD_TRUTH_CLICK,
    FD_TRUTH_CART,
    FD_TRUTH_PURCHASE,
    FD_TRUTH_REVENUE_CENTS,
    FD_TRUTH__COUNTERS
};

/* "sessions_visit", ..., "revenue_cents"; NULL out of range. */
const char *fd_truth_counter_name(int i);

/* What fd_truth_add did with an event: the session rule (low bits) plus
 * FD_TRUTH_LATE when the event missed its window. */
enum { FD_TRUTH_NEW = 1, FD_TRUTH_JOIN = 2, FD_TRUTH_STALE = 3, FD_TRUTH_LATE = 8 };
#define FD_TRUTH_KIND(r) ((r)&7)

typedef struct fd_truth_user {
    const char *user_id;
    int32_t partition;
    /* session state (FEATURES.md "Sessions") */
    bool has_session;
    const char *session_id; /* NULL when the session's id is unknown (0) */
    int64_t s_start, s_last;
    int s_stage;
    /* results */
    uint64_t n[FD_EV__COUNT]; /* events per type, late and STALE included */
    int64_t first_ts, last_ts;
    uint64_t sessions;        /* NEW events */
    uint64_t late, stale;     /* events of the user that were late / STALE */
    int64_t revenue_cents;    /* sum of round(price * 100) * quantity */
    int64_t last_cart_ts;     /* latest cart event time, 0 = never */
    int64_t last_purchase_ts; /* latest purchase event time, 0 = never */
} fd_truth_user;

/* A window or an hour. users[s - 1] is the number of distinct users that
 * reached stage s (visit..purchase) in it; valid after fd_truth_finish(). */
typedef struct fd_truth_window {
    int64_t start_ms;
    int64_t c[FD_TRUTH__COUNTERS];
    uint64_t users[4];
} fd_truth_window;

typedef struct fd_truth fd_truth;

/* NULL with a message in err when an option is out of range or memory is
 * short. The category names are copied. */
fd_truth *fd_truth_new(const fd_truth_opts *o, char *err, size_t n);

/* NULL is accepted. */
void fd_truth_free(fd_truth *t);

/* Account one event; call for every event in emission (= per-partition
 * offset) order. Returns FD_TRUTH_NEW/JOIN/STALE, ORed with FD_TRUTH_LATE,
 * or -1: an unknown event type (nothing changed) or out of memory (the
 * truth is then incomplete and must not be used). */
int fd_truth_add(fd_truth *t, const fd_event *ev);

/* Count the distinct users per stage of every window and hour and sort the
 * windows by start. Call after the last fd_truth_add (again after more
 * adds). Returns 0, or -1 when out of memory. */
int fd_truth_finish(fd_truth *t);

const fd_truth_opts *fd_truth_get_opts(const fd_truth *t);
uint64_t fd_truth_events(const fd_truth *t);
uint64_t fd_truth_late_events(const fd_truth *t);

/* Users in order of first appearance. */
size_t fd_truth_n_users(const fd_truth *t);
const fd_truth_user *fd_truth_user_at(const fd_truth *t, size_t i);
const fd_truth_user *fd_truth_user_find(const fd_truth *t, const char *user_id);

/* Windows / hours that counted at least one event, by start, as of the
 * last fd_truth_finish (none before it). */
size_t fd_truth_n_windows(const fd_truth *t);
const fd_truth_window *fd_truth_window_at(const fd_truth *t, size_t i);
size_t fd_truth_n_hours(const fd_truth *t);
const fd_truth_window *fd_truth_hour_at(const fd_truth *t, size_t i);

/* Category breakdown of window i (sorted index): counters of category c,
 * 0 <= c <= n_categories, c == n_categories being "other". NULL without
 * categories. */
const int64_t *fd_truth_window_cat(const fd_truth *t, size_t i, size_t c);
/* Name of category c ("other" for c == n_categories). */
const char *fd_truth_category_name(const fd_truth *t, size_t c);

/* CRC-32 (zlib / IEEE 802.3, reflected 0xEDB88320) and the partition
 * librdkafka's default "consistent_random" partitioner picks for a
 * non-empty key: crc32(key) % partitions. */
uint32_t fd_truth_crc32(const void *buf, size_t len);
int32_t fd_truth_partition(const void *key, size_t len, int32_t partitions);

#endif
