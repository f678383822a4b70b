/*
 * test_gen_truth.c - the generator's session and funnel truth
 * (tools/gen_truth.c) on hand-worked sequences: every expected number below
 * was worked out from docs/FEATURES.md by hand, not by running the code.
 */
#include "tools/gen_truth.h"

#include "tests/unit/check.h"
#include "tools/gen.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>

#define B   1767225600000LL /* 2026-01-01T00:00:00Z, hour aligned */
#define MIN 60000LL
#define GAP (30 * MIN)

static fd_event mkev(const char *user, int type, int64_t ts, const char *sid)
{
    fd_event e;
    memset(&e, 0, sizeof e);
    snprintf(e.user_id, sizeof e.user_id, "%s", user);
    e.type = (uint8_t)type;
    e.ts_ms = ts;
    e.quantity = 1;
    if (sid) {
        snprintf(e.session_id, sizeof e.session_id, "%s", sid);
        e.has_session = true;
    }
    return e;
}

static int add(fd_truth *t, const char *user, int type, int64_t ts, const char *sid)
{
    fd_event e = mkev(user, type, ts, sid);
    return fd_truth_add(t, &e);
}

static fd_truth *mk_late(uint32_t partitions, const char *const *cats, size_t ncats,
                         int64_t lateness)
{
    fd_truth_opts o;
    fd_truth_opts_default(&o);
    o.allowed_lateness_ms = lateness;
    o.partitions = partitions;
    o.categories = cats;
    o.n_categories = ncats;
    char err[256] = "";
    fd_truth *t = fd_truth_new(&o, err, sizeof err);
    if (!t)
        fprintf(stderr, "fd_truth_new: %s\n", err);
    return t;
}

static fd_truth *mk(uint32_t partitions, const char *const *cats, size_t ncats)
{
    return mk_late(partitions, cats, ncats, 2 * MIN);
}

/* Window starting at start, or NULL (after fd_truth_finish). */
static const fd_truth_window *win(const fd_truth *t, int64_t start, size_t *index)
{
    for (size_t i = 0; i < fd_truth_n_windows(t); i++)
        if (fd_truth_window_at(t, i)->start_ms == start) {
            if (index)
                *index = i;
            return fd_truth_window_at(t, i);
        }
    return NULL;
}

static void test_defaults_and_options(void)
{
    fd_truth_opts o;
    fd_truth_opts_default(&o);
    CHECK(o.partitions == 4 && o.session_gap_ms == GAP && o.window_ms == MIN &&
          o.allowed_lateness_ms == 2 * MIN && o.n_categories == 0);
    char err[256];
    o.window_ms = 7 * MIN; /* does not divide an hour */
    CHECK(fd_truth_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "divide");
    o.window_ms = 5 * MIN;
    o.partitions = 0;
    CHECK(fd_truth_new(&o, err, sizeof err) == NULL);
    o.partitions = 1;
    const char *dup[] = {"a", "a"};
    o.categories = dup;
    o.n_categories = 2;
    CHECK(fd_truth_new(&o, err, sizeof err) == NULL);
    o.n_categories = 1;
    fd_truth *t = fd_truth_new(&o, err, sizeof err);
    CHECK(t != NULL);
    fd_truth_free(t);
    CHECK(!strcmp(fd_truth_counter_name(0), "sessions_visit"));
    CHECK(!strcmp(fd_truth_counter_name(FD_TRUTH_REVENUE_CENTS), "revenue_cents"));
    CHECK(fd_truth_counter_name(FD_TRUTH__COUNTERS) == NULL);
}

/* The gap: exactly gap after S.last is NEW, gap - 1 is JOIN. */
static void test_gap(void)
{
    fd_truth *t = mk(1, NULL, 0);
    CHECK(add(t, "a", FD_EV_CLICK, B, "s1") == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, B + GAP - 1, "s1") == FD_TRUTH_JOIN);
    /* S.last is now B + GAP - 1 */
    CHECK(add(t, "a", FD_EV_CLICK, B + 2 * GAP - 2, "s1") == FD_TRUTH_JOIN);
    CHECK(add(t, "a", FD_EV_CLICK, B + 3 * GAP - 2, "s1") == FD_TRUTH_NEW);
    const fd_truth_user *u = fd_truth_user_find(t, "a");
    CHECK(u && u->sessions == 2);
    CHECK(u && u->s_start == B + 3 * GAP - 2 && u->s_last == B + 3 * GAP - 2);
    CHECK(u && u->s_stage == FD_STAGE_CLICK);
    CHECK(fd_truth_finish(t) == 0);
    const fd_truth_window *w = win(t, B, NULL);
    CHECK(w && w->c[FD_TRUTH_SESSIONS_VISIT] == 1 && w->c[FD_TRUTH_SESSIONS_CLICK] == 1);
    const fd_truth_window *w2 = win(t, B + 29 * MIN, NULL); /* B + GAP - 1 */
    CHECK(w2 && w2->c[FD_TRUTH_SESSIONS_VISIT] == 0 && w2->c[FD_TRUTH_CLICK] == 1);
    CHECK(w2 && w2->users[0] == 0);
    const fd_truth_window *w3 = win(t, B + 89 * MIN, NULL); /* B + 3 GAP - 2 */
    CHECK(w3 && w3->c[FD_TRUTH_SESSIONS_VISIT] == 1 && w3->users[0] == 1 && w3->users[1] == 1);
    fd_truth_free(t);
}

/* A changed session id starts a session; a missing one joins and does not
 * change the id; the id is adopted when the session had none. */
static void test_session_id(void)
{
    fd_truth *t = mk(1, NULL, 0);
    CHECK(add(t, "a", FD_EV_CLICK, B, "s1") == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, B + 1000, "s2") == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, B + 2000, NULL) == FD_TRUTH_JOIN);
    const fd_truth_user *u = fd_truth_user_find(t, "a");
    CHECK(u && u->session_id && !strcmp(u->session_id, "s2"));
    CHECK(add(t, "a", FD_EV_CLICK, B + 3000, "s2") == FD_TRUTH_JOIN);
    CHECK(add(t, "a", FD_EV_CLICK, B + 4000, "s1") == FD_TRUTH_NEW);
    CHECK(u && u->sessions == 3);

    CHECK(add(t, "b", FD_EV_CLICK, B, NULL) == FD_TRUTH_NEW);
    u = fd_truth_user_find(t, "b");
    CHECK(u && u->session_id == NULL);
    CHECK(add(t, "b", FD_EV_CLICK, B + 10, "x") == FD_TRUTH_JOIN);
    CHECK(u && u->session_id && !strcmp(u->session_id, "x"));
    CHECK(add(t, "b", FD_EV_CLICK, B + 20, "y") == FD_TRUTH_NEW);
    CHECK(u && u->sessions == 2);
    fd_truth_free(t);
}

/* A session whose first event is a purchase reaches all four stages in the
 * purchase's window. */
static void test_purchase_first(void)
{
    fd_truth *t = mk(1, NULL, 0);
    fd_event e = mkev("a", FD_EV_PURCHASE, B + 5 * MIN + 7, "s1");
    e.has_price = true;
    e.price = 19.99;
    e.quantity = 3;
    CHECK(fd_truth_add(t, &e) == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, B + 5 * MIN + 8, "s1") == FD_TRUTH_JOIN);
    CHECK(fd_truth_finish(t) == 0);
    CHECK(fd_truth_n_windows(t) == 1);
    const fd_truth_window *w = win(t, B + 5 * MIN, NULL);
    CHECK(w != NULL);
    if (w) {
        for (int s = 0; s < 4; s++) {
            CHECK(w->c[FD_TRUTH_SESSIONS_VISIT + s] == 1);
            CHECK(w->users[s] == 1);
        }
        CHECK(w->c[FD_TRUTH_PURCHASE] == 1 && w->c[FD_TRUTH_CLICK] == 1 &&
              w->c[FD_TRUTH_CART] == 0);
        CHECK(w->c[FD_TRUTH_REVENUE_CENTS] == 1999 * 3);
    }
    const fd_truth_user *u = fd_truth_user_find(t, "a");
    CHECK(u && u->revenue_cents == 5997 && u->last_purchase_ts == B + 5 * MIN + 7);
    CHECK(u && u->last_cart_ts == 0 && u->s_stage == FD_STAGE_PURCHASE);
    fd_truth_free(t);
}

/* Out of order: earlier than S.start joins backwards while within the gap
 * (strictly), else is STALE; a STALE event counts as an event, reaches no
 * stage and changes no session state. */
static void test_backwards_and_stale(void)
{
    fd_truth *t = mk_late(1, NULL, 0, 86400000); /* nothing late here */
    const int64_t T = B + 40 * MIN;
    CHECK(add(t, "a", FD_EV_CLICK, T, "s1") == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, T - 500, "s1") == FD_TRUTH_JOIN);
    const fd_truth_user *u = fd_truth_user_find(t, "a");
    CHECK(u && u->s_start == T - 500 && u->s_last == T);
    /* exactly gap before S.start: STALE */
    CHECK(add(t, "a", FD_EV_CART, T - 500 - GAP, "s1") == FD_TRUTH_STALE);
    CHECK(u && u->s_start == T - 500 && u->s_stage == FD_STAGE_CLICK && u->stale == 1);
    /* another session id, even close: STALE */
    CHECK(add(t, "a", FD_EV_CLICK, T - 600, "s0") == FD_TRUTH_STALE);
    /* one ms closer: JOIN backwards, and the cart takes the session on */
    CHECK(add(t, "a", FD_EV_CART, T - 500 - GAP + 1, "s1") == FD_TRUTH_JOIN);
    CHECK(u && u->s_start == T - 500 - GAP + 1 && u->s_last == T);
    CHECK(u && u->s_stage == FD_STAGE_CART && u->sessions == 1 && u->stale == 2);
    CHECK(u && u->last_cart_ts == T - 500 - GAP + 1); /* the latest cart event time */
    CHECK(fd_truth_finish(t) == 0);
    const fd_truth_window *ws = win(t, B + 9 * MIN, NULL); /* T - 500 - GAP */
    CHECK(ws && ws->c[FD_TRUTH_CART] == 2 && ws->c[FD_TRUTH_SESSIONS_CART] == 1);
    CHECK(ws && ws->c[FD_TRUTH_SESSIONS_VISIT] == 0 && ws->users[2] == 1 && ws->users[0] == 0);
    const fd_truth_window *wt = win(t, B + 39 * MIN, NULL); /* T - 500, T - 600 */
    CHECK(wt && wt->c[FD_TRUTH_CLICK] == 2 && wt->c[FD_TRUTH_SESSIONS_VISIT] == 0);
    CHECK(fd_truth_late_events(t) == 0);
    fd_truth_free(t);
}

/* Late: start + W <= max_ts - lateness, with the watermark taken before the
 * event, per partition. Late events still move the session. */
static void test_late(void)
{
    for (int shift = 0; shift < 2; shift++) {
        fd_truth *t = mk(1, NULL, 0);
        int64_t max = B + 10 * MIN - shift; /* watermark B + 8 min - shift */
        CHECK(add(t, "a", FD_EV_CLICK, max, "s1") == FD_TRUTH_NEW);
        /* window [B + 7m, B + 8m): end == watermark when shift is 0 */
        int r = add(t, "b", FD_EV_CLICK, B + 8 * MIN - 1, "s9");
        CHECK(FD_TRUTH_KIND(r) == FD_TRUTH_NEW);
        CHECK(!!(r & FD_TRUTH_LATE) == (shift == 0));
        /* the window [B + 8m, B + 9m) is never late here */
        CHECK(add(t, "b", FD_EV_CART, B + 8 * MIN, "s9") == FD_TRUTH_JOIN);
        CHECK(fd_truth_late_events(t) == (shift == 0 ? 1u : 0u));
        const fd_truth_user *u = fd_truth_user_find(t, "b");
        CHECK(u && u->sessions == 1 && u->late == (shift == 0 ? 1u : 0u));
        CHECK(fd_truth_finish(t) == 0);
        const fd_truth_window *w7 = win(t, B + 7 * MIN, NULL);
        const fd_truth_window *w8 = win(t, B + 8 * MIN, NULL);
        if (shift == 0) {
            CHECK(w7 == NULL); /* the session's visit and click are lost */
            CHECK(w8 && w8->c[FD_TRUTH_SESSIONS_VISIT] == 0 && w8->c[FD_TRUTH_SESSIONS_CART] == 1);
            CHECK(w8 && w8->users[0] == 0 && w8->users[2] == 1);
            CHECK(fd_truth_n_windows(t) == 2);
        } else {
            CHECK(w7 && w7->c[FD_TRUTH_SESSIONS_VISIT] == 1 && w7->c[FD_TRUTH_CLICK] == 1);
            CHECK(w8 && w8->c[FD_TRUTH_SESSIONS_VISIT] == 0 && w8->c[FD_TRUTH_CART] == 1);
            CHECK(fd_truth_n_windows(t) == 3);
        }
        fd_truth_free(t);
    }

    /* The watermark is before the event: a first far-ahead event is not
     * late itself. The partition's max_ts never goes down. */
    fd_truth *t = mk(1, NULL, 0);
    CHECK(add(t, "a", FD_EV_CLICK, B, "s1") == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, B + 100 * MIN, "s2") == FD_TRUTH_NEW);
    CHECK(add(t, "a", FD_EV_CLICK, B + 50 * MIN, "s2") & FD_TRUTH_LATE);
    CHECK(!(add(t, "a", FD_EV_CLICK, B + 98 * MIN, "s2") & FD_TRUTH_LATE));
    CHECK(add(t, "a", FD_EV_CLICK, B + 98 * MIN - 1, "s2") & FD_TRUTH_LATE);
    CHECK(fd_truth_late_events(t) == 2);
    fd_truth_free(t);

    /* Two partitions: a far-ahead event on one does not make the other
     * late. Find users on different partitions. */
    t = mk(2, NULL, 0);
    char a[16] = "", b[16] = "";
    for (int i = 1; i < 100 && (!*a || !*b); i++) {
        char id[16];
        snprintf(id, sizeof id, "u%d", i);
        char *dst = fd_truth_partition(id, strlen(id), 2) == 0 ? a : b;
        if (!*dst)
            memcpy(dst, id, sizeof id);
    }
    CHECK(*a && *b);
    CHECK(add(t, a, FD_EV_CLICK, B + 100 * MIN, "s") == FD_TRUTH_NEW);
    CHECK(add(t, b, FD_EV_CLICK, B, "s") == FD_TRUTH_NEW); /* not late: other partition */
    CHECK(add(t, a, FD_EV_CLICK, B + 1, "s") == (FD_TRUTH_STALE | FD_TRUTH_LATE));
    CHECK(fd_truth_late_events(t) == 1);
    const fd_truth_user *ua = fd_truth_user_find(t, a), *ub = fd_truth_user_find(t, b);
    CHECK(ua && ub && ua->partition == 0 && ub->partition == 1);
    fd_truth_free(t);
}

/* Distinct users per stage are users, not sessions. */
static void test_distinct_users(void)
{
    fd_truth *t = mk(1, NULL, 0);
    add(t, "a", FD_EV_CLICK, B + 1, "s1");
    add(t, "a", FD_EV_CLICK, B + 2, "s2");
    add(t, "a", FD_EV_CART, B + 3, "s2");
    add(t, "b", FD_EV_CLICK, B + 4, "s1");
    add(t, "c", FD_EV_CLICK, B + MIN, "s1"); /* next window, same hour */
    add(t, "a", FD_EV_CLICK, B + MIN + 1, "s3");
    CHECK(fd_truth_finish(t) == 0);
    const fd_truth_window *w = win(t, B, NULL);
    CHECK(w && w->c[FD_TRUTH_SESSIONS_VISIT] == 3 && w->users[0] == 2);
    CHECK(w && w->c[FD_TRUTH_SESSIONS_CART] == 1 && w->users[2] == 1 && w->users[3] == 0);
    CHECK(fd_truth_n_hours(t) == 1);
    const fd_truth_window *h = fd_truth_hour_at(t, 0);
    CHECK(h && h->start_ms == B && h->c[FD_TRUTH_SESSIONS_VISIT] == 5 && h->users[0] == 3);
    CHECK(h && h->users[1] == 3 && h->users[2] == 1);
    fd_truth_free(t);
}

/* Categories: configured names, everything else (and none) is "other". */
static void test_categories(void)
{
    const char *cats[] = {"books", "toys"};
    fd_truth *t = mk(1, cats, 2);
    fd_event e = mkev("a", FD_EV_CLICK, B, "s1");
    e.has_category = true;
    strcpy(e.category, "books");
    fd_truth_add(t, &e);
    e.ts_ms++;
    strcpy(e.category, "food");
    e.type = FD_EV_CART;
    fd_truth_add(t, &e);
    e.ts_ms++;
    e.has_category = false;
    e.category[0] = '\0';
    e.type = FD_EV_PURCHASE;
    e.has_price = true;
    e.price = 2.5;
    fd_truth_add(t, &e);
    CHECK(fd_truth_finish(t) == 0);
    CHECK(!strcmp(fd_truth_category_name(t, 0), "books"));
    CHECK(!strcmp(fd_truth_category_name(t, 2), "other"));
    CHECK(fd_truth_category_name(t, 3) == NULL);
    const int64_t *bk = fd_truth_window_cat(t, 0, 0), *ty = fd_truth_window_cat(t, 0, 1);
    const int64_t *ot = fd_truth_window_cat(t, 0, 2);
    CHECK(bk && ty && ot);
    if (bk && ty && ot) {
        CHECK(bk[FD_TRUTH_CLICK] == 1 && bk[FD_TRUTH_SESSIONS_VISIT] == 1 &&
              bk[FD_TRUTH_SESSIONS_CLICK] == 1 && bk[FD_TRUTH_SESSIONS_CART] == 0);
        for (int k = 0; k < FD_TRUTH__COUNTERS; k++)
            CHECK(ty[k] == 0);
        CHECK(ot[FD_TRUTH_CART] == 1 && ot[FD_TRUTH_PURCHASE] == 1 &&
              ot[FD_TRUTH_SESSIONS_CART] == 1 && ot[FD_TRUTH_SESSIONS_PURCHASE] == 1 &&
              ot[FD_TRUTH_SESSIONS_VISIT] == 0 && ot[FD_TRUTH_REVENUE_CENTS] == 250);
    }
    CHECK(fd_truth_window_cat(t, 0, 3) == NULL);
    fd_truth_free(t);

    t = mk(1, NULL, 0);
    add(t, "a", FD_EV_CLICK, B, "s");
    CHECK(fd_truth_finish(t) == 0);
    CHECK(fd_truth_window_cat(t, 0, 0) == NULL);
    fd_truth_free(t);
}

/* A generated stream with disorder: the hours are the sums of their
 * windows, the categories sum to the windows, users are bounded. */
static void test_rollups_on_generated_stream(void)
{
    fd_gen_opts go;
    fd_gen_opts_default(&go);
    go.users = 3000;
    go.items = 500;
    go.events = 60000;
    go.span_ms = 2LL * 86400000;
    go.max_disorder_ms = 200000;
    char err[256];
    fd_gen *g = fd_gen_new(&go, err, sizeof err);
    const char *cats[] = {"c1", "c2", "c3"};
    fd_truth *t = mk(4, cats, 3);
    CHECK(g && t);
    if (!g || !t) {
        fd_gen_destroy(g);
        fd_truth_free(t);
        return;
    }
    fd_event e;
    uint64_t n = 0, stale = 0;
    int bad = 0;
    while (fd_gen_next(g, &e)) {
        int r = fd_truth_add(t, &e);
        bad |= r < 0;
        stale += FD_TRUTH_KIND(r) == FD_TRUTH_STALE;
        n++;
    }
    CHECK(!bad && n == go.events && fd_truth_events(t) == n);
    CHECK(fd_truth_finish(t) == 0);
    CHECK(fd_truth_late_events(t) > 0);
    CHECK(fd_truth_late_events(t) < n / 10);
    /* a session's last events can arrive after the next session's first:
     * STALE (different session id, earlier than S.start) */
    printf("generated: %llu events, %llu late, %llu stale\n", (unsigned long long)n,
           (unsigned long long)fd_truth_late_events(t), (unsigned long long)stale);
    /* windows sorted and per hour sums */
    int64_t sum[FD_TRUTH__COUNTERS] = {0}, total_events = 0;
    size_t hi = 0, nh = fd_truth_n_hours(t), bad_sum = 0, bad_cat = 0, bad_users = 0;
    uint64_t umax[4] = {0}, usum[4] = {0};
    for (size_t i = 0; i <= fd_truth_n_windows(t); i++) {
        const fd_truth_window *w = fd_truth_window_at(t, i);
        const fd_truth_window *h = hi < nh ? fd_truth_hour_at(t, hi) : NULL;
        if (!w || (h && w->start_ms >= h->start_ms + 3600000)) {
            /* close the hour */
            for (int k = 0; k < FD_TRUTH__COUNTERS; k++)
                bad_sum += !h || h->c[k] != sum[k];
            for (int s = 0; h && s < 4; s++)
                bad_users += h->users[s] < umax[s] || h->users[s] > usum[s];
            memset(sum, 0, sizeof sum);
            memset(umax, 0, sizeof umax);
            memset(usum, 0, sizeof usum);
            hi++;
        }
        if (!w)
            break;
        if (i > 0)
            CHECK(w->start_ms > fd_truth_window_at(t, i - 1)->start_ms);
        for (int k = 0; k < FD_TRUTH__COUNTERS; k++) {
            sum[k] += w->c[k];
            int64_t cs = 0;
            for (size_t c = 0; c <= 3; c++)
                cs += fd_truth_window_cat(t, i, c)[k];
            bad_cat += cs != w->c[k];
        }
        for (int s = 0; s < 4; s++) {
            umax[s] = w->users[s] > umax[s] ? w->users[s] : umax[s];
            usum[s] += w->users[s];
            bad_users += w->users[s] > (uint64_t)w->c[FD_TRUTH_SESSIONS_VISIT + s];
        }
        total_events += w->c[FD_TRUTH_CLICK] + w->c[FD_TRUTH_CART] + w->c[FD_TRUTH_PURCHASE];
    }
    CHECK(hi == nh);
    CHECK(bad_sum == 0);
    CHECK(bad_cat == 0);
    CHECK(bad_users == 0);
    CHECK((uint64_t)total_events + fd_truth_late_events(t) == n);
    /* per user: sessions as the generator numbered them ("s-u<k>-<n>") */
    size_t bad_sessions = 0;
    for (size_t i = 0; i < fd_truth_n_users(t); i++) {
        const fd_truth_user *u = fd_truth_user_at(t, i);
        const char *dash = strrchr(u->session_id ? u->session_id : "", '-');
        bad_sessions += !dash || strtoull(dash + 1, NULL, 10) < u->sessions;
    }
    CHECK(bad_sessions == 0);
    fd_truth_free(t);
    fd_gen_destroy(g);
}

static void test_crc_and_partitioner(void)
{
    CHECK(fd_truth_crc32("123456789", 9) == 0xCBF43926u);
    CHECK(fd_truth_crc32("", 0) == 0);
    CHECK(fd_truth_crc32("a", 1) == 0xE8B7BE43u);
    unsigned long long x = 88172645463325252ULL;
    size_t mismatch = 0, checked = 0;
    for (int i = 0; i < 3000; i++) {
        char key[64];
        size_t len;
        if (i < 1000) {
            len = (size_t)snprintf(key, sizeof key, "u%d", i + 1);
        } else { /* random bytes, 1..63 long, NULs and high bytes included */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            len = 1 + x % 63;
            for (size_t k = 0; k < len; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                key[k] = (char)(x >> 24);
            }
        }
        for (int32_t p = 1; p <= 64; p += (p < 12 ? 1 : 13)) {
            int32_t want =
                rd_kafka_msg_partitioner_consistent_random(NULL, key, len, p, NULL, NULL);
            mismatch += fd_truth_partition(key, len, p) != want;
            checked++;
        }
    }
    CHECK(checked > 30000);
    CHECK(mismatch == 0);
    CHECK(fd_truth_partition("u1", 2, 0) == -1);
}

int main(void)
{
    test_defaults_and_options();
    test_gap();
    test_session_id();
    test_purchase_first();
    test_backwards_and_stale();
    test_late();
    test_distinct_users();
    test_categories();
    test_rollups_on_generated_stream();
    test_crc_and_partitioner();
    return check_report();
}
