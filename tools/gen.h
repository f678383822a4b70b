/*
 * gen.h - deterministic synthetic clickstream with ground truth.
 *
 * The pure core of `funnelctl gen`: no I/O, no clock, no global state. For a
 * given fd_gen_opts the sequence of events is identical on every run and
 * every machine (own PRNG, integer time arithmetic). The truth (per user,
 * per minute, churners, latent vectors) is accumulated over exactly the
 * events handed out by fd_gen_next, so it can be compared with anything
 * downstream that consumed the same events.
 *
 * A generator is used by one thread at a time.
 */
#ifndef FD_GEN_H
#define FD_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

#define FD_GEN_DIM        8  /* latent dimensions of users and items */
#define FD_GEN_CATEGORIES 20 /* item categories "c1".."c20" */

typedef struct fd_gen_opts {
    uint64_t seed;
    uint32_t users;          /* "u1".."u<users>", >= 1 */
    uint32_t items;          /* "i1".."i<items>", >= 1 */
    uint64_t events;         /* fd_gen_next returns 0 after this many */
    int64_t start_ms;        /* event time of the stream's start, epoch ms */
    int64_t span_ms;         /* rough event-time length of the whole stream */
    int64_t max_disorder_ms; /* 0 = emitted in timestamp order */
    double churn_fraction;   /* share of users that churn, 0..1 */
} fd_gen_opts;

/* Defaults: seed 1, 10000 users, 2000 items, 100000 events, start
 * 2026-01-01T00:00:00Z, span 7 days, no disorder, 20% churners. */
void fd_gen_opts_default(fd_gen_opts *o);

typedef struct fd_gen fd_gen;

typedef struct fd_gen_user_truth {
    uint64_t n[FD_EV__COUNT];  /* events emitted per type */
    int64_t first_ts, last_ts; /* 0 when the user emitted nothing */
} fd_gen_user_truth;

typedef struct fd_gen_minute_truth {
    uint64_t n[FD_EV__COUNT];
    int64_t revenue_cents; /* purchases: price cents * quantity */
} fd_gen_minute_truth;

/* Create a generator. Returns NULL when an option is out of range or memory
 * is short, with a message in errstr. Memory is O(users + items + minutes of
 * the span). Caller frees with fd_gen_destroy(). */
fd_gen *fd_gen_new(const fd_gen_opts *opts, char *errstr, size_t errstr_size);

/* NULL is accepted. */
void fd_gen_destroy(fd_gen *g);

/* Write the next event into *out (every field set). Returns 1, or 0 once
 * opts.events have been emitted (or, with every user churned, earlier). */
int fd_gen_next(fd_gen *g, fd_event *out);

const fd_gen_opts *fd_gen_get_opts(const fd_gen *g);
uint64_t fd_gen_emitted(const fd_gen *g);

/* Truth of user index u (0-based; its id is "u<u+1>"). */
const fd_gen_user_truth *fd_gen_user(const fd_gen *g, uint32_t u);
/* Users that emitted at least one event so far. */
uint32_t fd_gen_active_users(const fd_gen *g);
/* Churn time of user u (epoch ms; the user emits nothing at or after it), or
 * -1 when u does not churn. */
int64_t fd_gen_churn_ts(const fd_gen *g, uint32_t u);

/* Minute windows: *first_window_ms receives the start of window 0; window i
 * starts at first_window_ms + i * 60000. Returns the number of windows
 * covered so far (some may be empty). */
size_t fd_gen_minutes(const fd_gen *g, int64_t *first_window_ms);
const fd_gen_minute_truth *fd_gen_minute(const fd_gen *g, size_t i);
/* Sum over all windows. */
void fd_gen_totals(const fd_gen *g, fd_gen_minute_truth *out);

/* Latent model: FD_GEN_DIM floats per user / item; item bias, category
 * (0-based; name "c<cat+1>") and price in cents. */
const float *fd_gen_user_vec(const fd_gen *g, uint32_t u);
const float *fd_gen_item_vec(const fd_gen *g, uint32_t i);
float fd_gen_item_bias(const fd_gen *g, uint32_t i);
int fd_gen_item_category(const fd_gen *g, uint32_t i);
int64_t fd_gen_item_price_cents(const fd_gen *g, uint32_t i);

#endif
