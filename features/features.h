/*
 * features.h - the rolling per-user feature vector and the user's session.
 *
 * docs/FEATURES.md is the specification: every formula, unit and rule of
 * this file is written there. The state is all integers (decayed values are
 * fixed-point millionths) so it round-trips through Redis bit for bit and a
 * restarted daemon continues exactly where it stopped.
 *
 * Pure C: no I/O, no clock, no threads. Time is the event time passed in.
 */
#ifndef FD_FEATURES_H
#define FD_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

#define FD_FEAT_VERSION 1
#define FD_FEAT_MAX_HL  4       /* half-lives */
#define FD_FIX          1000000 /* fixed-point scale of decayed values */
#define FD_FEAT_MAX     (5 * FD_FEAT_MAX_HL + 15)
/* Largest decayed value (millionths): the values saturate here, where doubles
 * stop being exact integers for rnd(); 2.2e9 events or currency units. */
#define FD_DC_MAX 0x1p51
/* fd_duration_name's longest spelling of an int64 ("-9223372036854775808ms") */
#define FD_DURATION_NAME_MAX 24

/* a + b, saturated at INT64_MAX / INT64_MIN instead of wrapping; sets *sat
 * when it saturated (leaves it alone otherwise). Every sum of values
 * derived from events (user totals, window and hour counters, their merges)
 * goes through it: a sum that would overflow stays at the limit, which a
 * reader can recognise, and the caller counts it (docs/FEATURES.md). */
static inline int64_t fd_sat_add(int64_t a, int64_t b, bool *sat)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        *sat = true;
        return b > 0 ? INT64_MAX : INT64_MIN;
    }
    return r;
}

/* Session stages, in funnel order. */
enum {
    FD_STAGE_NONE = 0,
    FD_STAGE_VISIT,
    FD_STAGE_CLICK,
    FD_STAGE_CART,
    FD_STAGE_PURCHASE,
    FD_STAGE__COUNT
};

/* "none", "visit", "click", "cart", "purchase". */
const char *fd_stage_name(int stage);

/* Decayed values per half-life. */
enum { FD_DC_CLICK = 0, FD_DC_CART, FD_DC_PURCHASE, FD_DC_REVENUE, FD_DC_SESSIONS, FD_DC__COUNT };

typedef struct fd_feat_params {
    int n_hl;
    int64_t hl_ms[FD_FEAT_MAX_HL];
    double inv_hl[FD_FEAT_MAX_HL]; /* 1 / hl_ms (a multiply, not a divide, per event) */
    char hl_name[FD_FEAT_MAX_HL][FD_DURATION_NAME_MAX]; /* "1h", "7d", "90m", "1500ms" */
    int longest;                                        /* index of the longest half-life */
    int64_t gap_ms;                                     /* session.gap */
} fd_feat_params;

/* Set up params. Returns 0, or -1 with a message (bad count, duplicate or
 * non-positive half-life, non-positive gap). */
int fd_feat_params_init(fd_feat_params *p, const int64_t *half_lives_ms, int n, int64_t gap_ms,
                        char *errstr, size_t errstr_size);

/* Shortest exact spelling of a duration: 3600000 -> "1h", 90000 -> "90s". */
void fd_duration_name(int64_t ms, char *buf, size_t n);

/* The persistent state of one user. Zeroed = never seen. */
typedef struct fd_feat {
    int64_t count[FD_EV__COUNT]; /* events by type */
    int64_t first_ts, last_ts;   /* min / max event time (0 = none); last_ts = R */
    /* Decayed values as of last_ts, in millionths, by value and half-life.
     * Integral doubles (exact below 2^51, i.e. 2.2e9 events or currency
     * units; they saturate at FD_DC_MAX): rounding is one add and one
     * subtract and the four half-lives of a value decay in one vector
     * operation. Unused half-lives stay 0. */
    double dc[FD_DC__COUNT][FD_FEAT_MAX_HL];
    double abandoned, carted;               /* decayed at the longest half-life, millionths */
    int64_t revenue_cents;                  /* total */
    int64_t last_cart_ts, last_purchase_ts; /* 0 = never */
    int64_t sessions;                       /* sessions started */
    int64_t gap_sum_ms;                     /* sum of gaps between consecutive sessions */
    uint64_t items_sk, cats_sk;             /* 64-bit linear-counting bitmaps */
    uint64_t sess_id;                       /* current session id hash (0 = none) */
    int64_t sess_start, sess_last;          /* current session's event-time span */
    int32_t sess_stage;                     /* FD_STAGE_*; NONE = no session yet */
} fd_feat;

/* What an event did to the user's session. */
typedef enum fd_sess_kind { FD_SESS_NEW = 0, FD_SESS_JOIN, FD_SESS_STALE } fd_sess_kind;

typedef struct fd_sess_step {
    fd_sess_kind kind;
    int from, to;          /* stages reached by the event: (from, to]; from == to: none */
    int64_t revenue_cents; /* fd_event_revenue_cents of the event (computed once) */
} fd_sess_step;

/* Apply one accepted event: counters, decayed values, session. O(1).
 * Sums saturate (fd_sat_add, FD_DC_MAX) instead of wrapping; returns
 * whether one did (true: a total of the user stays at its limit). */
bool fd_feat_update(const fd_feat_params *p, fd_feat *f, const fd_event *ev, fd_sess_step *step);

/* Number of values in the vector for these params, and their names. */
int fd_feat_count(const fd_feat_params *p);
const char *fd_feat_name(const fd_feat_params *p, int i, char *buf, size_t n);

/* Evaluate the vector at event time `now_ms` (values "as of now"; a `now_ms`
 * before last_ts is taken as last_ts). out has room for fd_feat_count(p). */
void fd_feat_eval(const fd_feat_params *p, const fd_feat *f, int64_t now_ms, double *out);

/* 2^-x for x >= 0 (0 for x > 1074). Range reduction plus a polynomial:
 * relative error < 1e-9, deterministic on IEEE doubles. */
double fd_exp2_neg(double x);

/* The hash of session ids and of the item / category sketches: a string in
 * an fd_event id buffer (7 readable bytes must follow its NUL). */
uint64_t fd_str_hash(const char *s);

/* Estimate of distinct values from a 64-bit linear-counting bitmap. */
double fd_sketch_estimate(uint64_t bits);

/* Persistence: the stored fields of a user, in a fixed order (the user
 * record below). fd_feat_field_count(p) names; fd_feat_field_name(p, i)
 * their names; fd_feat_field_parse reads field i from its text (integers;
 * decayed values as "123.456789"; bad text = 0). */
int fd_feat_field_count(const fd_feat_params *p);
const char *fd_feat_field_name(const fd_feat_params *p, int i, char *buf, size_t n);
void fd_feat_field_parse(const fd_feat_params *p, fd_feat *f, int i, const char *s, size_t len);
#define FD_FEAT_FIELD_BUF  32 /* enough for any formatted field */
#define FD_FEAT_FIELDS_MAX (18 + FD_DC__COUNT * FD_FEAT_MAX_HL)

/* The user record: the whole state of one user as one string, the value of
 * Redis key PREFIX user:<id> (docs/REDIS_KEYS.md):
 *
 *     "u1 " HALF-LIVES " " FIELD0 " " FIELD1 ... FIELDn-1
 *
 * HALF-LIVES is the comma-separated fd_duration_name of each half-life in
 * use ("1h,1d,7d,30d"), the fields in fd_feat_field_name order (integers
 * in decimal, decayed values with six decimals), single spaces between
 * tokens. Round trip is exact. One string, not
 * a hash of fields: one MGET loads a batch of users and one MSET writes
 * them, and Redis stores it with one allocation (a 38-field hash cost
 * Redis ~12 us per write, see docs/BENCHMARKS.md).
 *
 * fd_feat_record_format writes it into buf (FD_FEAT_RECORD_MAX bytes, NUL
 * added), returns the length. fd_feat_record_parse reads one: 0 with *f
 * set, or -1 with errstr naming the token that is wrong (f is then all
 * zero); a time field outside 0..FD_TS_MAX_MS is wrong too (no event
 * funneld accepts has one, and session arithmetic on it could overflow);
 * integers beyond int64 read as INT64_MAX / INT64_MIN. A record written with other half-lives is
 * read too: the fixed fields and the decayed values of every half-life in both lists are kept, the
 * others start at 0, and *missing_hl (may be NULL) gets bit i set for each half-life of p the
 * record lacks. */
#define FD_FEAT_RECORD_MAX (8 + FD_FEAT_MAX_HL * 16 + FD_FEAT_FIELDS_MAX * FD_FEAT_FIELD_BUF)
size_t fd_feat_record_format(const fd_feat_params *p, const fd_feat *f, char *buf);
int fd_feat_record_parse(const fd_feat_params *p, fd_feat *f, const char *s, size_t len,
                         unsigned *missing_hl, char *errstr, size_t errstr_size);
/* The record may go on with the churn model's suffix " m ..." (models/churn.h,
 * docs/REDIS_KEYS.md): fd_feat_record_parse reads only what comes before it.
 * The length of that part. */
size_t fd_feat_record_len(const char *s, size_t len);

#endif
