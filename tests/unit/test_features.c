/*
 * test_features.c - the feature vector, sessions and funnel windows against
 * values worked out by hand (docs/FEATURES.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/features.h"
#include "features/funnel.h"
#include "features/user.h"
#include "tests/unit/check.h"

#define T0   1767225600000LL /* 2026-01-01T00:00:00Z */
#define MIN  60000LL
#define HOUR 3600000LL
#define DAY  86400000LL

static fd_feat_params P; /* half-lives 1h, 1d; gap 30m */

static fd_event ev_at(int type, int64_t ts, const char *session)
{
    fd_event e;
    fd_event_init(&e);
    strcpy(e.user_id, "u1");
    strcpy(e.event_id, "e");
    e.type = (uint8_t)type;
    e.ts_ms = ts;
    if (session) {
        strcpy(e.session_id, session);
        e.has_session = true;
    }
    return e;
}

static fd_sess_step apply(fd_feat *f, int type, int64_t ts, const char *session)
{
    fd_event e = ev_at(type, ts, session);
    fd_sess_step st;
    fd_feat_update(&P, f, &e, &st);
    return st;
}

static double fix(double v)
{
    return (double)v / FD_FIX;
}

static int feat_index(const char *name)
{
    char buf[64];
    for (int i = 0; i < fd_feat_count(&P); i++)
        if (strcmp(fd_feat_name(&P, i, buf, sizeof buf), name) == 0)
            return i;
    return -1;
}

static void test_exp2(void)
{
    double worst = 0;
    for (double x = 0; x < 60; x += 0.0137) {
        double rel = fabs(fd_exp2_neg(x) - exp2(-x)) / exp2(-x);
        if (rel > worst)
            worst = rel;
    }
    CHECK(worst < 1e-9);
    /* the short-gap polynomial below 2^-10, both sides of its edge, and the
     * subnormal range */
    worst = 0;
    for (double x = 1e-12; x < 0x1p-9; x *= 1.01) {
        double rel = fabs(fd_exp2_neg(x) - exp2(-x)) / exp2(-x);
        if (rel > worst)
            worst = rel;
    }
    CHECK(worst < 1e-12);
    CHECK(fabs(fd_exp2_neg(0x1p-10) - exp2(-0x1p-10)) < 1e-15);
    CHECK(fd_exp2_neg(1e-300) == 1.0);
    CHECK(fabs(fd_exp2_neg(1030.5) - exp2(-1030.5)) <= 1e-9 * exp2(-1030.5));
    CHECK(fd_exp2_neg(-3) == 1.0); /* negative: no decay */
    CHECK(fd_exp2_neg(0) == 1.0);
    CHECK(fd_exp2_neg(1) == 0.5);
    CHECK(fd_exp2_neg(2000) == 0.0);
}

/* The sketch estimates' table holds exactly what log() computes. */
static void test_sketch_table(void)
{
    for (int z = 0; z <= 64; z++) {
        uint64_t bits = z == 64 ? 0 : ~0ULL >> z; /* 64 - z bits set */
        double want = z == 0 ? 64.0 * log(64.0) : -64.0 * log((double)z / 64.0);
        double got = fd_sketch_estimate(bits);
        CHECK(memcmp(&got, &want, sizeof got) == 0);
    }
    CHECK(fd_sketch_estimate(1) > 0.99 && fd_sketch_estimate(1) < 1.01); /* one bit: ~1 */
}

static void test_params(void)
{
    char err[128];
    fd_feat_params p;
    int64_t bad[] = {HOUR, HOUR};
    CHECK(fd_feat_params_init(&p, bad, 2, 30 * MIN, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "repeats");
    CHECK(fd_feat_params_init(&p, bad, 0, 30 * MIN, err, sizeof err) == -1);
    int64_t four[] = {HOUR, DAY, 7 * DAY, 90 * MIN};
    CHECK(fd_feat_params_init(&p, four, 4, 30 * MIN, err, sizeof err) == 0);
    CHECK_STR(p.hl_name[0], "1h");
    CHECK_STR(p.hl_name[2], "7d");
    CHECK_STR(p.hl_name[3], "90m");
    CHECK(p.longest == 2);
    CHECK(fd_feat_count(&p) == 35);
    char buf[64];
    CHECK_STR(fd_feat_name(&p, 0, buf, sizeof buf), "click_1h");
    CHECK_STR(fd_feat_name(&p, 9, buf, sizeof buf), "sessions_1d");
    CHECK_STR(fd_feat_name(&p, 20, buf, sizeof buf), "revenue_total");
    CHECK_STR(fd_feat_name(&p, 34, buf, sizeof buf), "sessions_total");
    CHECK(fd_feat_name(&p, 35, buf, sizeof buf) == NULL);
}

/* Decay across gaps, out of order, long silence, a returning user. */
static void test_decay(void)
{
    fd_feat f = {0};
    apply(&f, FD_EV_CLICK, T0, NULL);
    CHECK(f.dc[FD_DC_CLICK][0] == FD_FIX);
    /* one hour later: the 1h value halves, then +1 */
    apply(&f, FD_EV_CLICK, T0 + HOUR, NULL);
    CHECK(f.dc[FD_DC_CLICK][0] == 1500000);
    CHECK_NEAR(fix(f.dc[FD_DC_CLICK][1]), 1.0 + 0.971531941153606, 1e-6); /* 2^(-1/24) */
    CHECK(f.last_ts == T0 + HOUR);
    /* out of order, 30 min before the reference: adds 2^-0.5 to the 1h cart */
    apply(&f, FD_EV_CART, T0 + 30 * MIN, NULL);
    CHECK_NEAR(fix(f.dc[FD_DC_CART][0]), 0.707107, 1e-6);
    CHECK_NEAR(fix(f.dc[FD_DC_CART][1]), 0.985663, 1e-6); /* 2^(-1/48) */
    CHECK(f.last_ts == T0 + HOUR);                        /* reference unchanged */
    CHECK(f.last_cart_ts == T0 + 30 * MIN);
    CHECK(f.first_ts == T0);
    /* the same sequence in time order gives the same values (rounding aside) */
    fd_feat g = {0};
    apply(&g, FD_EV_CLICK, T0, NULL);
    apply(&g, FD_EV_CART, T0 + 30 * MIN, NULL);
    apply(&g, FD_EV_CLICK, T0 + HOUR, NULL);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < FD_DC__COUNT - 1; k++)
            CHECK(fabs(g.dc[k][h] - f.dc[k][h]) <= 2);

    /* evaluated 30 days later without an event: the 1d click value is
     * (1 + 2^(-1/24)) * 2^-30 and recency is 30 days */
    double v[FD_FEAT_MAX];
    fd_feat_eval(&P, &f, T0 + HOUR + 30 * DAY, v);
    CHECK_NEAR(v[feat_index("click_1d")], 1.971531941153606 * pow(2, -30), 1e-12);
    CHECK(v[feat_index("click_1h")] == 0.0 || v[feat_index("click_1h")] < 1e-200);
    CHECK_NEAR(v[feat_index("recency_s")], 30.0 * 86400, 1e-9);
    CHECK_NEAR(v[feat_index("recency_cart_s")], 30.0 * 86400 + 1800, 1e-9);
    CHECK(v[feat_index("recency_purchase_s")] == -1.0);
    CHECK_NEAR(v[feat_index("tenure_s")], 30.0 * 86400 + 3600, 1e-9);
    CHECK(v[feat_index("session_stage")] == 0.0); /* long over */
    CHECK(v[feat_index("clicks_total")] == 2.0);
    /* evaluating never changes the state; "now" before R is R */
    fd_feat_eval(&P, &f, T0, v);
    CHECK_NEAR(v[feat_index("click_1h")], 1.5, 1e-12);

    /* the user returns after the silence: old values decayed, +1 */
    apply(&f, FD_EV_CLICK, T0 + HOUR + 30 * DAY, NULL);
    CHECK(f.dc[FD_DC_CLICK][0] == FD_FIX);
    CHECK(f.dc[FD_DC_CLICK][1] == FD_FIX); /* 1.971532 * 2^-30 rounds to 0 */
    CHECK(f.count[FD_EV_CLICK] == 3);
}

static void test_revenue(void)
{
    fd_feat f = {0};
    fd_event e = ev_at(FD_EV_PURCHASE, T0, NULL);
    e.has_price = true;
    e.price = 19.99;
    e.quantity = 2;
    fd_sess_step st;
    fd_feat_update(&P, &f, &e, &st);
    CHECK(f.revenue_cents == 3998);
    CHECK(f.dc[FD_DC_REVENUE][0] == 39980000); /* 39.98 in millionths */
    e.ts_ms = T0 + 2 * HOUR;
    e.quantity = 1;
    fd_feat_update(&P, &f, &e, &st);
    CHECK(f.revenue_cents == 5997);
    /* 39.98 / 4 + 19.99 */
    CHECK_NEAR(fix(f.dc[FD_DC_REVENUE][0]), 39.98 / 4 + 19.99, 1e-6);
    double v[FD_FEAT_MAX];
    fd_feat_eval(&P, &f, T0 + 2 * HOUR, v);
    CHECK_NEAR(v[feat_index("revenue_total")], 59.97, 1e-9);
    CHECK_NEAR(v[feat_index("aov")], 29.985, 1e-9);
    CHECK(v[feat_index("recency_purchase_s")] == 0.0);
}

static void test_sessions(void)
{
    fd_feat f = {0};
    fd_sess_step st = apply(&f, FD_EV_CLICK, T0, NULL);
    CHECK(st.kind == FD_SESS_NEW && st.from == FD_STAGE_NONE && st.to == FD_STAGE_CLICK);
    /* 30 min - 1 ms later: same session */
    st = apply(&f, FD_EV_CART, T0 + 30 * MIN - 1, NULL);
    CHECK(st.kind == FD_SESS_JOIN && st.from == FD_STAGE_CLICK && st.to == FD_STAGE_CART);
    /* exactly the gap after the session's last event: a new session, and
     * the ended one (stage cart, no purchase) is abandoned */
    st = apply(&f, FD_EV_CLICK, T0 + 60 * MIN - 1, NULL);
    CHECK(st.kind == FD_SESS_NEW && st.to == FD_STAGE_CLICK);
    CHECK(f.sessions == 2);
    CHECK(f.carted == 985663 && f.abandoned == f.carted); /* at T0+30m-1: 2^(-1/48) */
    CHECK(f.gap_sum_ms == 30 * MIN);
    /* an event 31 min before the session start joins it backwards */
    st = apply(&f, FD_EV_CLICK, T0 + 60 * MIN - 1 - 29 * MIN, NULL);
    CHECK(st.kind == FD_SESS_JOIN && st.from == st.to);
    CHECK(f.sess_start == T0 + 31 * MIN - 1);
    /* one more than the gap before the start: stale, nothing changes */
    st = apply(&f, FD_EV_PURCHASE, T0 + MIN - 1, NULL);
    CHECK(st.kind == FD_SESS_STALE && st.from == st.to);
    CHECK(f.sess_stage == FD_STAGE_CLICK);
    CHECK(f.count[FD_EV_PURCHASE] == 1); /* still a purchase of the user */

    /* session ids: a change starts a new session even without a gap */
    fd_feat g = {0};
    apply(&g, FD_EV_CLICK, T0, "s1");
    st = apply(&g, FD_EV_CLICK, T0 + 1000, "s1");
    CHECK(st.kind == FD_SESS_JOIN);
    st = apply(&g, FD_EV_CLICK, T0 + 2000, NULL); /* no id: neutral */
    CHECK(st.kind == FD_SESS_JOIN);
    st = apply(&g, FD_EV_PURCHASE, T0 + 3000, "s2");
    CHECK(st.kind == FD_SESS_NEW && st.from == FD_STAGE_NONE && st.to == FD_STAGE_PURCHASE);
    CHECK(g.sessions == 2 && g.carted == 0);
    /* an old session's straggler, earlier than the new session and with its
     * old id, is stale */
    st = apply(&g, FD_EV_CART, T0 + 2500, "s1");
    CHECK(st.kind == FD_SESS_STALE);
    CHECK(g.sess_stage == FD_STAGE_PURCHASE);
    /* purchase then a new session: carted, not abandoned */
    st = apply(&g, FD_EV_CLICK, T0 + 4000, "s3");
    CHECK(st.kind == FD_SESS_NEW);
    CHECK(g.carted > 999900 && g.carted < FD_FIX && g.abandoned == 0); /* 2^(-1s/1d) */
    double v[FD_FEAT_MAX];
    fd_feat_eval(&P, &g, T0 + 4000, v);
    CHECK(v[feat_index("sessions_total")] == 3.0);
    CHECK(v[feat_index("cart_abandonment")] == 0.0);
    CHECK(v[feat_index("session_stage")] == FD_STAGE_CLICK);
    CHECK_NEAR(v[feat_index("sessions_1h")], 1 + exp2(-1000.0 / HOUR) + exp2(-4000.0 / HOUR), 1e-5);
    CHECK_NEAR(v[feat_index("session_gap_mean_s")], 1.0, 1e-9); /* 3000-2000, 4000-3000 */
}

/* Field i of a user record (after "u1 <half-lives> "), and its length. */
static const char *record_field(const char *rec, int i, size_t *len)
{
    const char *t = strchr(rec, ' ');
    t = t ? strchr(t + 1, ' ') : NULL;
    for (; t && i > 0; i--)
        t = strchr(t + 1, ' ');
    if (!t)
        return NULL;
    t++;
    const char *e = strchr(t, ' ');
    *len = e ? (size_t)(e - t) : strlen(t);
    return t;
}

static void test_sketch_and_persist(void)
{
    fd_feat f = {0};
    for (int i = 0; i < 20; i++) {
        fd_event e = ev_at(FD_EV_CLICK, T0 + i * 1000, "s");
        snprintf(e.item_id, sizeof e.item_id, "i%d", i % 10);
        e.has_item = true;
        strcpy(e.category, i % 2 ? "books" : "games");
        e.has_category = true;
        fd_sess_step st;
        fd_feat_update(&P, &f, &e, &st);
    }
    double v[FD_FEAT_MAX];
    fd_feat_eval(&P, &f, T0 + 20000, v);
    CHECK(v[feat_index("items_distinct")] > 8 && v[feat_index("items_distinct")] < 12);
    CHECK(v[feat_index("categories_distinct")] > 1.5 && v[feat_index("categories_distinct")] < 2.5);

    /* every stored field round-trips exactly through the record */
    apply(&f, FD_EV_CART, T0 + 10, "s");
    fd_feat g = {0};
    char name[64], rec[FD_FEAT_RECORD_MAX], err[128];
    size_t n = fd_feat_record_format(&P, &f, rec);
    CHECK(fd_feat_record_parse(&P, &g, rec, n, NULL, err, sizeof err) == 0);
    CHECK(memcmp(&f, &g, sizeof f) == 0);
    int ci = -1;
    for (int i = 0; i < fd_feat_field_count(&P); i++)
        if (strcmp(fd_feat_field_name(&P, i, name, sizeof name), "click_1h") == 0)
            ci = i;
    CHECK(ci >= 0);
    f.dc[FD_DC_CLICK][0] = 1500000;
    fd_feat_record_format(&P, &f, rec);
    size_t tl;
    const char *tok = record_field(rec, ci, &tl);
    CHECK(tok && tl == 8 && strncmp(tok, "1.500000", 8) == 0);
    fd_feat_field_parse(&P, &g, ci, "0.25", 4);
    CHECK(g.dc[FD_DC_CLICK][0] == 250000);
}

/* The user record: exact round trip, other half-lives, bad records. */
static void test_record(void)
{
    fd_feat f, g;
    memset(&f, 0, sizeof f);
    apply(&f, FD_EV_CLICK, T0, "s");
    apply(&f, FD_EV_CART, T0 + 1000, "s");
    apply(&f, FD_EV_PURCHASE, T0 + 3 * HOUR, "t");
    f.abandoned = -2.5e6; /* a negative fixed-point value survives too */
    char rec[FD_FEAT_RECORD_MAX], err[256];
    size_t n = fd_feat_record_format(&P, &f, rec);
    CHECK(n == strlen(rec) && n < sizeof rec);
    CHECK(strncmp(rec, "u1 1h,1d ", 9) == 0);
    int spaces = 0;
    for (size_t i = 0; i < n; i++)
        spaces += rec[i] == ' ';
    CHECK(spaces == 1 + fd_feat_field_count(&P)); /* header, then one per field */
    /* token i is field i as fd_feat_field_name orders them: each parsed
     * alone into its own field rebuilds the state (the record's writer
     * lists the fields by hand; the parser goes through the accessors) */
    fd_feat h;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < fd_feat_field_count(&P); i++) {
        size_t tl;
        const char *tok = record_field(rec, i, &tl);
        CHECK(tok != NULL);
        if (tok)
            fd_feat_field_parse(&P, &h, i, tok, tl);
    }
    CHECK(memcmp(&f, &h, sizeof f) == 0);
    unsigned missing = 99;
    CHECK(fd_feat_record_parse(&P, &g, rec, n, &missing, err, sizeof err) == 0);
    CHECK(missing == 0);
    CHECK(memcmp(&f, &g, sizeof f) == 0);

    /* read with other half-lives: 1d kept, 7d missing (0), 1h dropped */
    fd_feat_params q;
    int64_t hl[2] = {7 * DAY, DAY};
    CHECK(fd_feat_params_init(&q, hl, 2, 30 * MIN, err, sizeof err) == 0);
    CHECK(fd_feat_record_parse(&q, &g, rec, n, &missing, err, sizeof err) == 0);
    CHECK(missing == 1u); /* bit 0: 7d */
    CHECK(g.count[FD_EV_CART] == 1 && g.last_ts == f.last_ts);
    for (int d = 0; d < FD_DC__COUNT; d++) {
        CHECK(g.dc[d][1] == f.dc[d][1]); /* q's 1d = P's 1d */
        CHECK(g.dc[d][0] == 0);
    }

    /* bad records: an error naming what, and an all-zero state */
    const char *bad[] = {"", "u2 1h,1d 1", "u1 1h,1d 1 2 3", "u1  1", "u1 1h,,1d", "hello"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        CHECK(fd_feat_record_parse(&P, &g, bad[i], strlen(bad[i]), NULL, err, sizeof err) == -1);
        CHECK(err[0] != '\0');
    }
    char broken[FD_FEAT_RECORD_MAX];
    memcpy(broken, rec, n + 1);
    char *third = strchr(strchr(strchr(broken + 3, ' ') + 1, ' ') + 1, ' ') + 1;
    third[0] = 'x'; /* field 3 (purchase) */
    CHECK(fd_feat_record_parse(&P, &g, broken, n, NULL, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "field 3");
    static const fd_feat zero;
    CHECK(memcmp(&g, &zero, sizeof g) == 0);
    memcpy(broken, rec, n);
    memcpy(broken + n, " 7", 3); /* one field too many */
    CHECK(fd_feat_record_parse(&P, &g, broken, n + 2, NULL, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "more than");
}

static void test_funnel(void)
{
    char err[128];
    const char *cats[] = {"books"};
    fd_funnel_params fp;
    CHECK(fd_funnel_params_init(&fp, 7 * MIN, 0, NULL, 0, err, sizeof err) == -1);
    const char *dup[] = {"a", "a"};
    CHECK(fd_funnel_params_init(&fp, MIN, 0, dup, 2, err, sizeof err) == -1);
    CHECK(fd_funnel_params_init(&fp, MIN, 2 * MIN, cats, 1, err, sizeof err) == 0);
    CHECK_STR(fp.window_name, "1m");
    /* late: window end <= partition max - lateness */
    CHECK(!fd_funnel_is_late(&fp, T0, 0));
    CHECK(!fd_funnel_is_late(&fp, T0, T0 + 3 * MIN - 1));
    CHECK(fd_funnel_is_late(&fp, T0, T0 + 3 * MIN));
    CHECK(!fd_funnel_is_late(&fp, T0 + MIN - 1, T0 + 3 * MIN - 1));

    fd_core_params cp = {.feat = P, .funnel = fp};
    fd_funnel_table *w = fd_funnel_table_new();
    fd_user_table *ut = fd_user_table_new(16);
    bool created;
    fd_user *u = fd_user_table_upsert(ut, "u1", 2, &created);
    /* a session whose first event is a purchase reaches all four stages */
    fd_event e = ev_at(FD_EV_PURCHASE, T0 + 5000, "s1");
    e.has_price = true;
    e.price = 2.5;
    e.quantity = 2;
    strcpy(e.category, "books");
    e.has_category = true;
    CHECK(fd_core_apply(&cp, u, w, 3, &e, 0) == 0);
    fd_event c = ev_at(FD_EV_CLICK, T0 + MIN + 1, "s1"); /* next minute, same session */
    CHECK(fd_core_apply(&cp, u, w, 3, &c, T0 + 5000) == 0);
    /* a late event: features yes, windows no */
    fd_event l = ev_at(FD_EV_CART, T0 + 10, "s1");
    CHECK(fd_core_apply(&cp, u, w, 3, &l, T0 + 3 * MIN) == 1);
    CHECK(u->f.count[FD_EV_CART] == 1 && u->dirty && u->partition == 3);

    int seen = 0;
    size_t cur = 0;
    const fd_funnel_delta *d;
    while ((d = fd_funnel_next(w, &cur))) {
        seen++;
        CHECK(d->partition == 3);
        if (d->start_ms == T0 && d->cat == FD_CAT_TOTAL) {
            for (int s = FD_FC_SESS_VISIT; s <= FD_FC_SESS_PURCHASE; s++)
                CHECK(d->c[s] == 1);
            CHECK(d->c[FD_FC_PURCHASE] == 1 && d->c[FD_FC_CART] == 0);
            CHECK(d->c[FD_FC_REVENUE_CENTS] == 500);
        } else if (d->start_ms == T0 && d->cat == 0) {
            CHECK(d->c[FD_FC_REVENUE_CENTS] == 500 && d->c[FD_FC_SESS_VISIT] == 1);
        } else if (d->start_ms == T0 + MIN && d->cat == FD_CAT_TOTAL) {
            CHECK(d->c[FD_FC_SESS_VISIT] == 0 && d->c[FD_FC_CLICK] == 1);
        } else if (d->start_ms == T0 + MIN && d->cat == 1) {
            CHECK_STR(fd_funnel_cat_name(&fp, d->cat), "other");
            CHECK(d->c[FD_FC_CLICK] == 1);
        } else {
            CHECK(!"unexpected delta");
        }
    }
    CHECK(seen == 4 && fd_funnel_count(w) == 4);
    size_t nr;
    const fd_funnel_reach *r = fd_funnel_reaches(w, &nr);
    CHECK(nr == 4);
    for (size_t i = 0; i < nr; i++) {
        CHECK(r[i].stage == (int)i + 1 && r[i].start_ms == T0 && r[i].user_len == 2);
        CHECK(memcmp(r[i].user, "u1", 2) == 0);
    }

    /* merge over partitions, clear one partition */
    fd_funnel_table *m = fd_funnel_table_new();
    cur = 0;
    while ((d = fd_funnel_next(w, &cur)))
        CHECK(fd_funnel_merge(m, 0, d->cat, d->start_ms - d->start_ms % HOUR, d->c) == 0);
    CHECK(fd_funnel_count(m) == 3); /* the hour: totals, books, other */
    fd_funnel_clear(w, 2);
    CHECK(fd_funnel_count(w) == 4);
    fd_funnel_clear(w, 3);
    CHECK(fd_funnel_count(w) == 0);
    fd_funnel_reaches(w, &nr);
    CHECK(nr == 0);
    fd_funnel_table_free(m);
    fd_funnel_table_free(w);
    fd_user_table_free(ut);
}

static bool keep_even(const fd_user *u, void *arg)
{
    (void)arg;
    return u->f.count[FD_EV_CLICK] % 2 == 0;
}

/* The user table: growth, removal, stable addresses, reuse of freed room. */
/* fd_user_table_filter works in place (no memory: it cannot fail where a
 * partition is dropped). Rounds of random removals and insertions on a
 * table kept small, so probe runs are long and wrap past the end of the
 * slots: afterwards every user is found iff it was kept, with its data. */
static bool keep_marked(const fd_user *u, void *arg)
{
    (void)arg;
    return u->f.count[FD_EV_CART] == 0;
}

static void test_user_table_filter_in_place(void)
{
    enum { N = 3000 };
    static bool present[N];
    fd_user_table *t = fd_user_table_new(16);
    uint64_t rng = 7;
    char id[32];
    bool created;
    int ok = 1, n_present = 0;
    for (int round = 0; round < 12; round++) {
        for (int k = 0; k < 700; k++) { /* insert (or find) random users */
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            int i = (int)((rng >> 33) % N);
            snprintf(id, sizeof id, "u%d", i);
            fd_user *u = fd_user_table_upsert(t, id, strlen(id), &created);
            ok &= u != NULL && created == !present[i];
            if (u && created) {
                u->f.count[FD_EV_CLICK] = i;
                present[i] = true;
                n_present++;
            }
        }
        size_t cur = 0; /* mark about a third of them for removal */
        fd_user *u;
        while ((u = fd_user_table_next(t, &cur))) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            u->f.count[FD_EV_CART] = (rng >> 33) % 3 == 0;
            if (u->f.count[FD_EV_CART]) {
                present[u->f.count[FD_EV_CLICK]] = false;
                n_present--;
            }
        }
        fd_user_table_filter(t, keep_marked, NULL);
        ok &= fd_user_table_count(t) == (size_t)n_present;
        for (int i = 0; i < N; i++) {
            snprintf(id, sizeof id, "u%d", i);
            fd_user *f = fd_user_table_find(t, id, strlen(id));
            ok &= present[i]
                      ? f != NULL && f->f.count[FD_EV_CLICK] == i && !strcmp(fd_user_id(f), id)
                      : f == NULL;
        }
    }
    CHECK(ok);
    CHECK(n_present > 0);
    fd_user_table_free(t);

    /* A run that wraps past the end: in a new table (1,024 slots), 8 ids
     * whose home is one of the last 2 slots and 4 homed at slot 0, so the
     * run covers slots 1022..1033 mod 1024; every other one of the first 8
     * removed. The ones left must still be found across the wrap. */
    t = fd_user_table_new(16);
    char wrap[12][32];
    int n_end = 0, n_zero = 0;
    for (int i = 0; n_end + n_zero < 12 && i < 10000000; i++) {
        snprintf(id, sizeof id, "w%d", i);
        uint32_t home = fd_user_hash(id, strlen(id)) & 1023u;
        if (home >= 1022 && n_end < 8)
            snprintf(wrap[n_end++], sizeof wrap[0], "%s", id);
        else if (home == 0 && n_zero < 4)
            snprintf(wrap[8 + n_zero++], sizeof wrap[0], "%s", id);
    }
    CHECK(n_end == 8 && n_zero == 4);
    ok = 1;
    fd_user *gone[4];
    int n_gone = 0;
    for (int i = 0; i < 12; i++) {
        fd_user *u = fd_user_table_upsert(t, wrap[i], strlen(wrap[i]), &created);
        ok &= u && created;
        if (u)
            u->f.count[FD_EV_CART] = i < 8 && i % 2 == 0; /* removed */
        if (u && i < 8 && i % 2 == 0)
            gone[n_gone++] = u;
    }
    fd_user_table_filter(t, keep_marked, NULL);
    for (int i = 0; i < 12; i++) {
        fd_user *f = fd_user_table_find(t, wrap[i], strlen(wrap[i]));
        ok &= i < 8 && i % 2 == 0 ? f == NULL : f != NULL && !strcmp(fd_user_id(f), wrap[i]);
    }
    CHECK(ok);
    CHECK(fd_user_table_count(t) == 8);
    /* the removed users' room is reused (the free list lives in it), each
     * once, and comes back cleared */
    int reused = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "new-%d", i);
        fd_user *u = fd_user_table_upsert(t, id, strlen(id), &created);
        for (int g = 0; u && g < n_gone; g++)
            if (u == gone[g]) {
                gone[g] = NULL;
                reused++;
            }
        ok &= u && created && u->f.count[FD_EV_CART] == 0 && !strcmp(fd_user_id(u), id);
    }
    CHECK(ok);
    CHECK(reused == 4);
    fd_user_table_free(t);
}

static void test_user_table(void)
{
    fd_user_table *t = fd_user_table_new(16);
    fd_user *first = NULL;
    char id[32];
    bool created;
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "user-%d", i);
        fd_user *u = fd_user_table_upsert(t, id, strlen(id), &created);
        CHECK(u && created);
        u->f.count[FD_EV_CLICK] = i;
        if (i == 0)
            first = u;
    }
    CHECK(fd_user_table_count(t) == 5000);
    CHECK(fd_user_table_find(t, "user-0", 6) == first); /* never moved while growing */
    CHECK(fd_user_table_upsert(t, "user-4999", 9, &created) && !created);
    size_t cur = 0, seen = 0;
    while (fd_user_table_next(t, &cur))
        seen++;
    CHECK(seen == 5000);
    fd_user_table_filter(t, keep_even, NULL);
    CHECK(fd_user_table_count(t) == 2500);
    CHECK(fd_user_table_find(t, "user-1", 6) == NULL);
    fd_user *u2 = fd_user_table_find(t, "user-2", 6);
    CHECK(u2 && u2->f.count[FD_EV_CLICK] == 2);
    CHECK(fd_user_table_find(t, "user-0", 6) == first);
    /* freed room is reused: 2500 new users fit without new blocks */
    for (int i = 0; i < 2500; i++) {
        snprintf(id, sizeof id, "again-%d", i);
        fd_user *u = fd_user_table_upsert(t, id, strlen(id), &created);
        CHECK(u && created && u->f.count[FD_EV_CLICK] == 0 && u->id_len == strlen(id));
    }
    CHECK(fd_user_table_count(t) == 5000);
    CHECK(fd_user_table_find(t, "again-7", 7) != NULL);
    CHECK(fd_user_table_find(t, "user-2", 6) == u2);
    CHECK(!strcmp(fd_user_id(u2), "user-2"));
    /* ids of 15 bytes are kept in the user, longer ones in a copy: both
     * read back whole, both are found, both are freed (LeakSanitizer) */
    const char *ids[] = {"fifteen-bytes-1", "sixteen-bytes-12",
                         "a-user-id-that-is-much-longer-than-the-inline-room"};
    for (int i = 0; i < 3; i++) {
        fd_user *u = fd_user_table_upsert(t, ids[i], strlen(ids[i]), &created);
        CHECK(u && created && !strcmp(fd_user_id(u), ids[i]) && u->id_len == strlen(ids[i]));
        CHECK(fd_user_table_find(t, ids[i], strlen(ids[i])) == u);
        u->f.count[FD_EV_CLICK] = i; /* odd: removed by the filter below */
    }
    CHECK(fd_user_table_find(t, "sixteen-bytes-1", 15) == NULL);
    fd_user_table_filter(t, keep_even, NULL);
    CHECK(fd_user_table_find(t, ids[1], strlen(ids[1])) == NULL);
    CHECK(fd_user_table_find(t, ids[2], strlen(ids[2])) != NULL);
    fd_user_table_free(t);
}

int main(void)
{
    test_sketch_table();
    test_user_table_filter_in_place();
    char err[128];
    int64_t hl[] = {HOUR, DAY};
    if (fd_feat_params_init(&P, hl, 2, 30 * MIN, err, sizeof err) != 0) {
        fprintf(stderr, "params: %s\n", err);
        return 1;
    }
    test_exp2();
    test_params();
    test_decay();
    test_revenue();
    test_sessions();
    test_sketch_and_persist();
    test_record();
    test_funnel();
    test_user_table();
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}
