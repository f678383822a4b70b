/*
 * test_extreme_numbers.c - extreme numeric values in every input format
 * (JSON, Avro, Confluent-framed Avro through the direct and the generic
 * decoder and through the v0 writer schema) and what they may do to the
 * sums: largest doubles, 2^63 +- 1, -0, subnormals, NaN and infinities where
 * the format can carry them, quantity at its bound and one past it, prices
 * at input.max_price and one step past it, the line total price x quantity,
 * timestamps at both ends. Every accepted event then goes through the whole
 * per-event update (fd_core_apply) and the window merges, so under
 * ASan+UBSan (float-cast-overflow and signed-integer-overflow included) any
 * out-of-range conversion or wrapped sum aborts the test. Then the sums
 * themselves at their limits: they saturate, are counted, never wrap; the
 * user record at its limits; input.max_price's config bounds.
 * Runs with cwd = repo root (or FD_SOURCE_DIR set).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "features/features.h"
#include "features/funnel.h"
#include "features/user.h"
#include "pipeline/codec.h"
#include "pipeline/shard.h"
#include "tests/unit/check.h"
#include "tests/unit/codec_fixture.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */

static char err[1024];

static fd_codec *mk(fd_format f, int64_t max_price)
{
    return codec_fixture_new(f, 0, max_price, err, sizeof err);
}

/* ---- the state every accepted event goes into ----------------------------- */

static fd_core_params CP;
static fd_user_table *UT;
static fd_funnel_table *WT, *MERGED;
static int64_t want_revenue; /* sum of the accepted purchases' cents */
static int n_accepted, n_users;

static void apply(const fd_event *ev)
{
    bool created;
    fd_user *u = fd_user_table_upsert(UT, ev->user_id, strlen(ev->user_id), &created);
    CHECK(u != NULL);
    if (!u)
        return;
    uint64_t before = fd_funnel_saturated(WT);
    CHECK(fd_core_apply(&CP, u, WT, 0, ev, 0) == 0);
    CHECK(fd_funnel_saturated(WT) == before); /* nothing near a limit here */
    int64_t rc = fd_event_revenue_cents(ev);
    CHECK(rc >= 0 && rc <= FD_MAX_PRICE_DEFAULT * 100);
    want_revenue += rc;
    n_accepted++;
}

/* Decode; the reason must be `want`; an accepted event is applied. */
static void expect(fd_codec *c, const void *p, size_t n, fd_reject want, const char *what)
{
    fd_event ev;
    err[0] = '\0';
    fd_reject r = fd_codec_decode(c, p, n, &ev, err, sizeof err);
    if (r != want) {
        check_failed++;
        fprintf(stderr, "%s: got %s (%s), expected %s\n", what, fd_reject_name(r), err,
                fd_reject_name(want));
        return;
    }
    check_passed++;
    if (r == FD_OK)
        apply(&ev);
    else
        CHECK(err[0] != '\0'); /* the usual one-line message */
}

static fd_event base(int64_t ts, double price, int32_t quantity)
{
    fd_event ev;
    fd_event_init(&ev);
    strcpy(ev.event_id, "e");
    /* one user per event: a user's decayed revenue saturates after three
     * purchases at max_price (FD_DC_MAX), which sums_at_limits checks */
    snprintf(ev.user_id, sizeof ev.user_id, "u%d", n_users++);
    strcpy(ev.session_id, "s");
    strcpy(ev.category, "books");
    ev.has_session = ev.has_category = true;
    ev.ts_ms = ts;
    ev.type = FD_EV_PURCHASE;
    ev.has_price = true;
    ev.price = price;
    ev.quantity = quantity;
    return ev;
}

/* ---- the values -------------------------------------------------------------- */

static const double MAXP = (double)FD_MAX_PRICE_DEFAULT;

static const struct price_case {
    double price;
    fd_reject want;
    const char *what;
} prices[] = {
    {DBL_MAX, FD_REJ_BAD_PRICE, "DBL_MAX"},
    {-DBL_MAX, FD_REJ_BAD_PRICE, "-DBL_MAX"},
    {0x1p63, FD_REJ_BAD_PRICE, "2^63"},
    {0x1p63 - 1024, FD_REJ_BAD_PRICE, "largest double below 2^63"},
    {0x1p63 + 2048, FD_REJ_BAD_PRICE, "smallest double above 2^63"},
    {-0x1p63, FD_REJ_BAD_PRICE, "-2^63"},
    {1e300, FD_REJ_BAD_PRICE, "1e300 (issue 10)"},
    {5e16, FD_REJ_BAD_PRICE, "5e16 (issue 10)"},
    {0x1p62, FD_REJ_BAD_PRICE, "2^62"},
    {(double)FD_MAX_PRICE_LIMIT, FD_REJ_BAD_PRICE, "the limit of max_price"},
    {1000000000.0000001, FD_REJ_BAD_PRICE, "next double above max_price"},
    {1000000000.01, FD_REJ_BAD_PRICE, "max_price + 1 cent"},
    {1000000000.0, FD_OK, "max_price"},
    {999999999.99, FD_OK, "max_price - 1 cent"},
    {999999999.995, FD_OK, "max_price - half a cent (rounds to max_price)"},
    {NAN, FD_REJ_BAD_PRICE, "NaN"},
    {-NAN, FD_REJ_BAD_PRICE, "-NaN"},
    {INFINITY, FD_REJ_BAD_PRICE, "+inf"},
    {-INFINITY, FD_REJ_BAD_PRICE, "-inf"},
    {-0.0, FD_OK, "-0"},
    {0.0, FD_OK, "0"},
    {DBL_TRUE_MIN, FD_OK, "smallest subnormal"},
    {DBL_MIN, FD_OK, "smallest normal"},
    {-DBL_TRUE_MIN, FD_REJ_BAD_PRICE, "negative subnormal"},
    {0.005, FD_OK, "half a cent"},
};

static const struct qty_case {
    int32_t quantity;
    fd_reject want;
} quantities[] = {
    {1, FD_OK},
    {FD_QUANTITY_MAX, FD_OK},
    {FD_QUANTITY_MAX + 1, FD_REJ_BAD_QUANTITY},
    {INT32_MAX, FD_REJ_BAD_QUANTITY},
    {INT32_MIN, FD_REJ_BAD_QUANTITY},
    {0, FD_REJ_BAD_QUANTITY},
    {-1, FD_REJ_BAD_QUANTITY},
};

static const struct ts_case {
    int64_t ts;
    fd_reject want;
} stamps[] = {
    {1, FD_OK},
    {FD_TS_MAX_MS, FD_OK},
    {FD_TS_MAX_MS + 1, FD_REJ_BAD_TS},
    {INT64_MAX, FD_REJ_BAD_TS},
    {INT64_MAX - 1, FD_REJ_BAD_TS},
    {INT64_MIN, FD_REJ_BAD_TS},
    {INT64_MIN + 1, FD_REJ_BAD_TS},
    {0, FD_REJ_BAD_TS},
    {-1, FD_REJ_BAD_TS},
};

/* price x quantity: the line total is bounded by max_price too */
static const struct line_case {
    double price;
    int32_t quantity;
    fd_reject want;
} lines[] = {
    {1000.0, FD_QUANTITY_MAX, FD_OK},                /* exactly 1e9 */
    {1000.01, FD_QUANTITY_MAX, FD_REJ_BAD_QUANTITY}, /* 1e9 + 10000 */
    {500000000.0, 2, FD_OK},
    {500000000.0, 3, FD_REJ_BAD_QUANTITY},
    {1e9, 2, FD_REJ_BAD_QUANTITY},
    {1e9, FD_QUANTITY_MAX, FD_REJ_BAD_QUANTITY}, /* cents x quantity = 1e17: no overflow */
    {0.01, FD_QUANTITY_MAX, FD_OK},
    {0.0, FD_QUANTITY_MAX, FD_OK},
};

/* ---- Avro: encoded with the codec, so every double and int32 reaches the
 * wire as it is --------------------------------------------------------------- */

static void avro_cases(fd_format f, int fast)
{
    fd_codec *c = mk(f, 0);
    CHECK(c != NULL);
    if (!c)
        return;
    fd_codec_set_fast_path(c, fast);
    const void *out;
    size_t len;
    char what[128];
    for (size_t i = 0; i < sizeof prices / sizeof prices[0]; i++) {
        fd_event ev = base(T0, prices[i].price, 1);
        CHECK(fd_codec_encode(c, &ev, &out, &len) == 0);
        snprintf(what, sizeof what, "%s fast=%d price %s", fd_format_name(f), fast, prices[i].what);
        expect(c, out, len, prices[i].want, what);
    }
    for (size_t i = 0; i < sizeof quantities / sizeof quantities[0]; i++) {
        fd_event ev = base(T0, 1.5, quantities[i].quantity);
        CHECK(fd_codec_encode(c, &ev, &out, &len) == 0);
        snprintf(what, sizeof what, "%s fast=%d quantity %d", fd_format_name(f), fast,
                 (int)quantities[i].quantity);
        expect(c, out, len, quantities[i].want, what);
    }
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        fd_event ev = base(stamps[i].ts, 2.25, 2);
        CHECK(fd_codec_encode(c, &ev, &out, &len) == 0);
        snprintf(what, sizeof what, "%s fast=%d ts %lld", fd_format_name(f), fast,
                 (long long)stamps[i].ts);
        expect(c, out, len, stamps[i].want, what);
        /* the watermark's peek agrees: no time outside 1..FD_TS_MAX_MS */
        int64_t ts = 0;
        CHECK((fd_codec_peek_ts(c, out, len, &ts) == 0) == (stamps[i].want == FD_OK));
    }
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        fd_event ev = base(T0, lines[i].price, lines[i].quantity);
        CHECK(fd_codec_encode(c, &ev, &out, &len) == 0);
        snprintf(what, sizeof what, "%s fast=%d %.17g x %d", fd_format_name(f), fast,
                 lines[i].price, (int)lines[i].quantity);
        expect(c, out, len, lines[i].want, what);
    }
    fd_codec_destroy(c);
}

/* Avro varints and bodies by hand, for the v0 writer schema (schema id 7:
 * user_id, event_id, type, ts, session_id, item_id, price; no quantity). */
static size_t put_varint(uint8_t *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;
    while (z >= 0x80) {
        p[n++] = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    p[n++] = (uint8_t)z;
    return n;
}

static size_t v0_body(uint8_t *p, int64_t ts, const double *price)
{
    size_t n = 0;
    p[n++] = 0; /* confluent magic */
    p[n++] = 0;
    p[n++] = 0;
    p[n++] = 0;
    p[n++] = 7;
    char id[32]; /* one user per event, as base() */
    int il = snprintf(id, sizeof id, "v%d", n_users++);
    n += put_varint(p + n, il);
    memcpy(p + n, id, (size_t)il);
    n += (size_t)il;
    n += put_varint(p + n, 1);
    p[n++] = 'e';
    n += put_varint(p + n, 2); /* PURCHASE */
    n += put_varint(p + n, ts);
    n += put_varint(p + n, 0); /* session null */
    n += put_varint(p + n, 0); /* item null */
    if (!price) {
        n += put_varint(p + n, 0);
        return n;
    }
    n += put_varint(p + n, 1);
    uint64_t bits;
    memcpy(&bits, price, 8);
    for (int i = 0; i < 8; i++)
        p[n++] = (uint8_t)(bits >> (8 * i));
    return n;
}

static void v0_cases(void)
{
    fd_codec *c = mk(FD_FMT_CONFLUENT_AVRO, 0);
    CHECK(c != NULL);
    if (!c)
        return;
    uint8_t buf[128];
    char what[128];
    for (size_t i = 0; i < sizeof prices / sizeof prices[0]; i++) {
        snprintf(what, sizeof what, "v0 price %s", prices[i].what);
        expect(c, buf, v0_body(buf, T0, &prices[i].price), prices[i].want, what);
    }
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        snprintf(what, sizeof what, "v0 ts %lld", (long long)stamps[i].ts);
        expect(c, buf, v0_body(buf, stamps[i].ts, NULL), stamps[i].want, what);
    }
    fd_codec_destroy(c);

    /* an int quantity past int32 on the wire: not a valid Avro int */
    c = mk(FD_FMT_AVRO, 0);
    fd_event ev = base(T0, 1.0, 1);
    ev.has_category = false;
    const void *out;
    size_t len;
    CHECK(c && fd_codec_encode(c, &ev, &out, &len) == 0);
    if (c) {
        /* canonical layout ends: price union + 8 bytes, quantity varint (1 =
         * 0x02), category union 0: replace the quantity by 2^31 and 2^63-1 */
        uint8_t m[256];
        memcpy(m, out, len - 2);
        size_t n = len - 2;
        n += put_varint(m + n, (int64_t)INT32_MAX + 1);
        m[n++] = 0;
        expect(c, m, n, FD_REJ_AVRO, "avro quantity 2^31");
        n = len - 2;
        n += put_varint(m + n, INT64_MAX);
        m[n++] = 0;
        expect(c, m, n, FD_REJ_AVRO, "avro quantity 2^63-1");
        n = len - 2;
        n += put_varint(m + n, FD_QUANTITY_MAX + 1);
        m[n++] = 0;
        expect(c, m, n, FD_REJ_BAD_QUANTITY, "avro quantity 1000001");
    }
    fd_codec_destroy(c);
}

/* ---- JSON: the spelling on the wire is what matters ---------------------------- */

static void json_one(fd_codec *c, const char *field, const char *value, fd_reject want)
{
    char obj[512];
    snprintf(obj, sizeof obj,
             "{\"event_id\":\"e\",\"user_id\":\"j%d\",\"type\":\"purchase\",\"category\":"
             "\"books\"%s%s%s%s%s%s%s}",
             n_users++, strcmp(field, "ts") ? ",\"ts\":1767225600000" : "",
             strcmp(field, "price") ? ",\"price\":1.5" : "",
             strcmp(field, "quantity") ? ",\"quantity\":1" : "", ",\"", field, "\":", value);
    char what[128];
    snprintf(what, sizeof what, "json %s %s", field, value);
    expect(c, obj, strlen(obj), want, what);
}

static void json_cases(void)
{
    fd_codec *c = mk(FD_FMT_JSON, 0);
    CHECK(c != NULL);
    if (!c)
        return;
    static const struct {
        const char *field, *value;
        fd_reject want;
    } cases[] = {
        {"price", "1.7976931348623157e308", FD_REJ_BAD_PRICE},
        {"price", "-1.7976931348623157e308", FD_REJ_BAD_PRICE},
        {"price", "1e309", FD_REJ_JSON_SYNTAX}, /* beyond a double: jansson refuses */
        {"price", "1e300", FD_REJ_BAD_PRICE},
        {"price", "5e16", FD_REJ_BAD_PRICE},
        {"price", "9223372036854775807", FD_REJ_BAD_PRICE}, /* a JSON integer, 2^63-1 */
        {"price", "9223372036854775806", FD_REJ_BAD_PRICE},
        {"price", "9223372036854775808", FD_REJ_JSON_SYNTAX}, /* 2^63: too big an integer */
        {"price", "-9223372036854775808", FD_REJ_BAD_PRICE},
        {"price", "9223372036854775809.0", FD_REJ_BAD_PRICE}, /* a real, 2^63+1 */
        {"price", "1000000000", FD_OK},
        {"price", "1000000000.0", FD_OK},
        {"price", "1000000000.01", FD_REJ_BAD_PRICE},
        {"price", "1000000001", FD_REJ_BAD_PRICE},
        {"price", "-0", FD_OK},
        {"price", "-0.0", FD_OK},
        {"price", "4.9406564584124654e-324", FD_OK}, /* smallest subnormal */
        {"price", "2.2250738585072014e-308", FD_OK},
        {"price", "1e-400", FD_OK}, /* underflows to 0 */
        {"price", "NaN", FD_REJ_JSON_SYNTAX},
        {"price", "Infinity", FD_REJ_JSON_SYNTAX},
        {"price", "-Infinity", FD_REJ_JSON_SYNTAX},
        {"quantity", "1000000", FD_OK}, /* x price 1.5: 1.5e6, under max_price */
        {"quantity", "1000001", FD_REJ_BAD_QUANTITY},
        {"quantity", "2147483647", FD_REJ_BAD_QUANTITY},
        {"quantity", "2147483648", FD_REJ_BAD_QUANTITY}, /* would wrap in an int32 */
        {"quantity", "4294967297", FD_REJ_BAD_QUANTITY}, /* 2^32 + 1: wraps to 1 */
        {"quantity", "9223372036854775807", FD_REJ_BAD_QUANTITY},
        {"quantity", "-9223372036854775808", FD_REJ_BAD_QUANTITY},
        {"quantity", "9223372036854775808", FD_REJ_JSON_SYNTAX},
        {"quantity", "0", FD_REJ_BAD_QUANTITY},
        {"quantity", "-0", FD_REJ_BAD_QUANTITY},
        {"quantity", "1e3", FD_REJ_FIELD_TYPE},
        {"ts", "1", FD_OK},
        {"ts", "253402300799999", FD_OK},
        {"ts", "253402300800000", FD_REJ_BAD_TS},
        {"ts", "9223372036854775807", FD_REJ_BAD_TS},
        {"ts", "-9223372036854775808", FD_REJ_BAD_TS},
        {"ts", "9223372036854775808", FD_REJ_JSON_SYNTAX},
        {"ts", "0", FD_REJ_BAD_TS},
        {"ts", "1.7976931348623157e308", FD_REJ_FIELD_TYPE},
        {"ts", "\"9999-12-31T23:59:59.999Z\"", FD_OK},
        {"ts", "\"9999-12-31T23:59:59.999-23:59\"", FD_REJ_BAD_TS}, /* past year 9999 */
        {"ts", "\"0000-01-01T00:00:00Z\"", FD_REJ_BAD_TS},
        {"ts", "\"1970-01-01T00:00:00.001Z\"", FD_OK},
        {"ts", "\"1970-01-01T00:00:00Z\"", FD_REJ_BAD_TS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_one(c, cases[i].field, cases[i].value, cases[i].want);
    }
    /* the line total in JSON */
    json_one(c, "quantity", "2", FD_OK);
    const char *over = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1767225600000,\"type\":"
                       "\"purchase\",\"price\":600000000,\"quantity\":2}";
    expect(c, over, strlen(over), FD_REJ_BAD_QUANTITY, "json 6e8 x 2");
    CHECK_CONTAINS(err, "quantity: 2 x price 600000000 = 1200000000.00 is over input.max_price");
    const char *big = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1767225600000,\"type\":"
                      "\"purchase\",\"price\":1e300}";
    expect(c, big, strlen(big), FD_REJ_BAD_PRICE, "json 1e300");
    CHECK_CONTAINS(err, "price: 1.0000000000000001e+300 is over input.max_price (1000000000)");
    fd_codec_destroy(c);
}

/* ---- the sums at their limits --------------------------------------------------- */

static void sums_at_limits(void)
{
    fd_funnel_table *w = fd_funnel_table_new();
    fd_user_table *ut = fd_user_table_new(16);
    bool created;
    fd_user *u = fd_user_table_upsert(ut, "big", 3, &created);
    CHECK(w && ut && u);
    if (!w || !ut || !u)
        return;

    /* Four purchases at the largest price and line total: the totals are
     * exact. The 4 x 5e16 never gets here (bad_price above). The
     * decayed revenue (millionths of a unit) is exact up to FD_DC_MAX, 2.25e9
     * units: two such purchases fit, the third and fourth saturate it, and
     * that is counted. */
    fd_event ev = base(T0, MAXP, 1);
    for (int i = 0; i < 4; i++) {
        CHECK(fd_core_apply(&CP, u, w, 0, &ev, 0) == 0);
        CHECK(fd_funnel_saturated(w) == (uint64_t)(i < 2 ? 0 : i - 1));
        CHECK(u->f.dc[FD_DC_REVENUE][0] == (i < 2 ? (i + 1) * 1e15 : FD_DC_MAX));
    }
    CHECK(u->f.revenue_cents == 4 * FD_MAX_PRICE_DEFAULT * 100);
    size_t cur = 0;
    const fd_funnel_delta *d;
    int seen = 0;
    while ((d = fd_funnel_next(w, &cur)))
        if (d->cat == FD_CAT_TOTAL) {
            CHECK(d->c[FD_FC_REVENUE_CENTS] == 4 * FD_MAX_PRICE_DEFAULT * 100);
            seen++;
        }
    CHECK(seen == 1);
    CHECK(fd_funnel_saturated(w) == 2);

    /* A user whose total is near INT64_MAX (e.g. 4.6e7 purchases at the
     * limit): the next purchase saturates instead of wrapping, and it is
     * counted. */
    u->f.revenue_cents = INT64_MAX - 5;
    u->f.count[FD_EV_PURCHASE] = INT64_MAX;
    u->f.sessions = INT64_MAX;
    u->f.gap_sum_ms = INT64_MAX - 1;
    fd_event late = base(T0 + 86400000LL, MAXP, 1); /* a new session: sessions++, gap sum */
    CHECK(fd_core_apply(&CP, u, w, 0, &late, 0) == 0);
    CHECK(u->f.revenue_cents == INT64_MAX);
    CHECK(u->f.count[FD_EV_PURCHASE] == INT64_MAX);
    CHECK(u->f.sessions == INT64_MAX && u->f.gap_sum_ms == INT64_MAX);
    CHECK(fd_funnel_saturated(w) == 3);
    fd_sess_step st;
    CHECK(fd_feat_update(&CP.feat, &u->f, &late, &st) == true);
    CHECK(u->f.revenue_cents == INT64_MAX);

    /* decayed values stop at FD_DC_MAX (2^51 millionths), where they stop
     * being exact, and the record keeps them */
    fd_feat g;
    memset(&g, 0, sizeof g);
    for (int h = 0; h < CP.feat.n_hl; h++)
        g.dc[FD_DC_REVENUE][h] = FD_DC_MAX - 1e6;
    fd_event small = base(T0, MAXP, 1);
    CHECK(fd_feat_update(&CP.feat, &g, &small, &st) == true);
    for (int h = 0; h < CP.feat.n_hl; h++)
        CHECK(g.dc[FD_DC_REVENUE][h] == FD_DC_MAX);
    CHECK(fd_feat_update(&CP.feat, &g, &ev, &st) == true); /* same ts: no decay */
    char rec[FD_FEAT_RECORD_MAX];
    fd_feat back;
    fd_feat_record_format(&CP.feat, &g, rec);
    CHECK(fd_feat_record_parse(&CP.feat, &back, rec, strlen(rec), NULL, err, sizeof err) == 0);
    CHECK(back.dc[FD_DC_REVENUE][0] == FD_DC_MAX && back.revenue_cents == g.revenue_cents);

    /* window merges (shards x partitions x epochs, the hour roll-up) */
    fd_funnel_table *m = fd_funnel_table_new();
    int64_t c[FD_FC__COUNT] = {0};
    c[FD_FC_REVENUE_CENTS] = INT64_MAX - 10;
    c[FD_FC_PURCHASE] = 1;
    CHECK(fd_funnel_merge(m, 1, FD_CAT_TOTAL, 0, c) == 0);
    CHECK(fd_funnel_saturated(m) == 0);
    c[FD_FC_REVENUE_CENTS] = FD_MAX_PRICE_LIMIT * 100;
    CHECK(fd_funnel_merge(m, 1, FD_CAT_TOTAL, 0, c) == 0);
    CHECK(fd_funnel_merge(m, 1, FD_CAT_TOTAL, 0, c) == 0);
    CHECK(fd_funnel_saturated(m) == 2);
    cur = 0;
    d = fd_funnel_next(m, &cur);
    CHECK(d && d->c[FD_FC_REVENUE_CENTS] == INT64_MAX && d->c[FD_FC_PURCHASE] == 3);
    c[FD_FC_REVENUE_CENTS] = INT64_MIN; /* no producer of negative deltas, but no wrap */
    c[FD_FC_PURCHASE] = 0;
    CHECK(fd_funnel_merge(m, 2, FD_CAT_TOTAL, 0, c) == 0);
    CHECK(fd_funnel_merge(m, 2, FD_CAT_TOTAL, 0, c) == 0);
    CHECK(fd_funnel_saturated(m) == 3);
    fd_funnel_clear(m, -1);
    CHECK(fd_funnel_saturated(m) == 3); /* cumulative */

    /* a window delta that reaches the limit in fd_funnel_add */
    fd_sess_step step = {FD_SESS_JOIN, FD_STAGE_PURCHASE, FD_STAGE_PURCHASE, INT64_MAX / 2 + 1};
    CHECK(fd_funnel_add(m, &CP.funnel, 0, &ev, &step, "big", 3) == 0);
    CHECK(fd_funnel_saturated(m) == 3);
    CHECK(fd_funnel_add(m, &CP.funnel, 0, &ev, &step, "big", 3) == 0);
    CHECK(fd_funnel_saturated(m) == 5); /* the total and the category breakdown */
    cur = 0;
    while ((d = fd_funnel_next(m, &cur)))
        CHECK(d->c[FD_FC_REVENUE_CENTS] == INT64_MAX && d->c[FD_FC_PURCHASE] == 2);

    fd_funnel_table_free(m);
    fd_funnel_table_free(w);
    fd_user_table_free(ut);
}

/* Revenue of events no validator passed: defined, never a wrapped or
 * converted-out-of-range value. */
static void revenue_of_anything(void)
{
    fd_event ev = base(T0, 1e300, 1);
    CHECK(fd_event_revenue_cents(&ev) == INT64_MAX);
    ev.price = INFINITY;
    CHECK(fd_event_revenue_cents(&ev) == INT64_MAX);
    ev.price = NAN;
    CHECK(fd_event_revenue_cents(&ev) == 0);
    ev.price = -1e300;
    CHECK(fd_event_revenue_cents(&ev) == 0);
    ev.price = 5e16;
    ev.quantity = 4;
    CHECK(fd_event_revenue_cents(&ev) == INT64_MAX);
    ev.price = 0x1p62 / 100 * 0.99;
    ev.quantity = INT32_MAX;
    CHECK(fd_event_revenue_cents(&ev) == INT64_MAX);
    ev.price = MAXP;
    ev.quantity = 1;
    CHECK(fd_event_revenue_cents(&ev) == FD_MAX_PRICE_DEFAULT * 100);
    ev.quantity = 0;
    CHECK(fd_event_revenue_cents(&ev) == 0);
    ev.price = DBL_TRUE_MIN;
    ev.quantity = FD_QUANTITY_MAX;
    CHECK(fd_event_revenue_cents(&ev) == 0);
    ev.price = -0.0;
    CHECK(fd_event_revenue_cents(&ev) == 0);
    /* an unvalidated event through the update: saturated, not wrapped */
    fd_feat f;
    memset(&f, 0, sizeof f);
    fd_sess_step st;
    ev = base(T0, 1e300, 1);
    CHECK(fd_feat_update(&CP.feat, &f, &ev, &st) == false); /* INT64_MAX fits once */
    CHECK(f.revenue_cents == INT64_MAX && f.dc[FD_DC_REVENUE][0] == FD_DC_MAX);
    CHECK(fd_feat_update(&CP.feat, &f, &ev, &st) == true);
    CHECK(f.revenue_cents == INT64_MAX);
}

/* User records at the limits of their fields. */
static void records_at_limits(void)
{
    fd_feat f;
    char rec[FD_FEAT_RECORD_MAX];
    memset(&f, 0, sizeof f);
    f.revenue_cents = INT64_MAX;
    f.count[FD_EV_CLICK] = INT64_MAX;
    f.gap_sum_ms = INT64_MIN;
    f.last_ts = f.first_ts = f.sess_last = f.sess_start = FD_TS_MAX_MS;
    f.sess_stage = FD_STAGE_CLICK;
    for (int h = 0; h < CP.feat.n_hl; h++)
        f.dc[FD_DC_CLICK][h] = FD_DC_MAX;
    f.carted = -FD_DC_MAX;
    f.abandoned = 1e300; /* not a value funneld keeps: clamped, not converted */
    fd_feat_record_format(&CP.feat, &f, rec);
    fd_feat g;
    CHECK(fd_feat_record_parse(&CP.feat, &g, rec, strlen(rec), NULL, err, sizeof err) == 0);
    CHECK(g.revenue_cents == INT64_MAX && g.count[FD_EV_CLICK] == INT64_MAX &&
          g.gap_sum_ms == INT64_MIN && g.last_ts == FD_TS_MAX_MS);
    CHECK(g.dc[FD_DC_CLICK][0] == FD_DC_MAX && g.carted == -FD_DC_MAX && g.abandoned == FD_DC_MAX);
    /* the next event of that user: timestamps at the end of year 9999,
     * gap and window arithmetic on them must not overflow */
    fd_event ev = base(FD_TS_MAX_MS, MAXP, 1);
    fd_sess_step st;
    CHECK(fd_feat_update(&CP.feat, &g, &ev, &st) == true); /* clicks were at INT64_MAX */
    CHECK(g.revenue_cents == INT64_MAX);

    /* 20-digit fields beyond int64 / uint64 (a record another program
     * wrote): read as the limits, no wrap */
    const int nf = fd_feat_field_count(&CP.feat);
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "u1 1h,1d");
    for (int i = 0; i < nf; i++) {
        char name[64];
        const char *fname = fd_feat_field_name(&CP.feat, i, name, sizeof name);
        const char *val = "99999999999999999999";
        size_t fl = strlen(fname);
        if ((fl > 3 && strcmp(fname + fl - 3, "_ts") == 0) || strcmp(fname, "session_start") == 0 ||
            strcmp(fname, "session_last") == 0 || strcmp(fname, "session_stage") == 0)
            val = "5";
        else if (strcmp(fname, "session_gap_sum_ms") == 0)
            val = "-99999999999999999999";
        n += (size_t)snprintf(buf + n, sizeof buf - n, " %s", val);
    }
    CHECK(fd_feat_record_parse(&CP.feat, &g, buf, n, NULL, err, sizeof err) == 0);
    CHECK(g.count[FD_EV_CLICK] == INT64_MAX && g.revenue_cents == INT64_MAX &&
          g.gap_sum_ms == INT64_MIN && g.items_sk == UINT64_MAX);
    CHECK(g.dc[FD_DC_CLICK][0] == FD_DC_MAX && g.abandoned == FD_DC_MAX);

    /* a time field no event could have set: unreadable, not arithmetic */
    static const char *bad_ts[] = {"-1", "253402300800000", "9223372036854775807",
                                   "-9223372036854775808"};
    for (size_t k = 0; k < sizeof bad_ts / sizeof bad_ts[0]; k++) {
        f.sess_last = 0;
        fd_feat_record_format(&CP.feat, &f, rec);
        /* sess_last is field 15 (after 2 tokens "u1" and the half-lives) */
        char edited[FD_FEAT_RECORD_MAX + 64];
        const char *p = rec;
        int spaces = 0;
        while (*p && spaces < 16)
            spaces += *p++ == ' ';
        const char *q = strchr(p, ' ');
        snprintf(edited, sizeof edited, "%.*s%s%s", (int)(p - rec), rec, bad_ts[k], q ? q : "");
        CHECK(fd_feat_record_parse(&CP.feat, &g, edited, strlen(edited), NULL, err, sizeof err) ==
              -1);
        CHECK_CONTAINS(err, "session_last");
    }
}

/* input.max_price: its bounds, its errors, and what the codec does with it. */
static void config_key(void)
{
    fd_config cfg = {0};
    fd_config_defaults(&cfg);
    CHECK(cfg.input_max_price == FD_MAX_PRICE_DEFAULT);
    fd_config_free(&cfg);
    static const struct {
        const char *yaml, *err;
    } bad[] = {
        {"input:\n  max_price: 2000000001\n",
         "t.yaml:2:14: input.max_price: out of range: 2000000001 (must be 1..2000000000)"},
        {"input:\n  max_price: 0\n",
         "t.yaml:2:14: input.max_price: out of range: 0 (must be 1..2000000000)"},
        {"input:\n  max_price: -1\n",
         "t.yaml:2:14: input.max_price: out of range: -1 (must be 1..2000000000)"},
        {"input:\n  max_price: 9223372036854775808\n",
         "t.yaml:2:14: input.max_price: out of range: 9223372036854775808 (must be "
         "1..2000000000)"},
        {"input:\n  max_price: 1e9\n",
         "t.yaml:2:14: input.max_price: expected an integer, got '1e9'"},
        {"input:\n  max_price: 99.5\n",
         "t.yaml:2:14: input.max_price: expected an integer, got '99.5'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fd_config c = {0};
        CHECK(fd_config_load_buffer(&c, "t.yaml", bad[i].yaml, strlen(bad[i].yaml), err,
                                    sizeof err) == -1);
        CHECK_STR(err, bad[i].err);
        fd_config_free(&c);
    }
    const char *ok = "input:\n  format: json\n  max_price: 100\n";
    CHECK(fd_config_load_buffer(&cfg, "t.yaml", ok, strlen(ok), err, sizeof err) == 0);
    CHECK(cfg.input_max_price == 100);
    fd_codec *c = fd_input_codec_new(&cfg, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        const char *at = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1767225600000,\"type\":"
                         "\"purchase\",\"price\":100,\"quantity\":1}";
        expect(c, at, strlen(at), FD_OK, "max_price 100: 100");
        const char *over = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1767225600000,\"type\":"
                           "\"purchase\",\"price\":100.01}";
        expect(c, over, strlen(over), FD_REJ_BAD_PRICE, "max_price 100: 100.01");
        CHECK_CONTAINS(err, "over input.max_price (100)");
        const char *line = "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1767225600000,\"type\":"
                           "\"purchase\",\"price\":50.01,\"quantity\":2}";
        expect(c, line, strlen(line), FD_REJ_BAD_QUANTITY, "max_price 100: 50.01 x 2");
        fd_codec_destroy(c);
    }
    fd_config_free(&cfg);
    /* the codec refuses a bound it cannot make safe */
    fd_codec_opts o = {.format = FD_FMT_JSON, .max_price = FD_MAX_PRICE_LIMIT + 1};
    CHECK(fd_codec_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "max_price");
    o.max_price = -1;
    CHECK(fd_codec_new(&o, err, sizeof err) == NULL);
    /* at the limit, the largest line total in cents still fits many times */
    c = mk(FD_FMT_AVRO, FD_MAX_PRICE_LIMIT);
    CHECK(c != NULL);
    if (c) {
        fd_event ev = base(T0, (double)FD_MAX_PRICE_LIMIT, 1);
        const void *out;
        size_t len;
        CHECK(fd_codec_encode(c, &ev, &out, &len) == 0);
        fd_event got;
        CHECK(fd_codec_decode(c, out, len, &got, err, sizeof err) == FD_OK);
        CHECK(fd_event_revenue_cents(&got) == FD_MAX_PRICE_LIMIT * 100);
        ev = base(T0, (double)FD_MAX_PRICE_LIMIT, FD_QUANTITY_MAX);
        CHECK(fd_codec_encode(c, &ev, &out, &len) == 0);
        CHECK(fd_codec_decode(c, out, len, &got, err, sizeof err) == FD_REJ_BAD_QUANTITY);
        fd_codec_destroy(c);
    }
}

int main(void)
{
    int64_t hl[2] = {3600000, 86400000};
    CHECK(fd_feat_params_init(&CP.feat, hl, 2, 30 * 60000, err, sizeof err) == 0);
    const char *cats[] = {"books"};
    CHECK(fd_funnel_params_init(&CP.funnel, 60000, 120000, cats, 1, err, sizeof err) == 0);
    UT = fd_user_table_new(64);
    WT = fd_funnel_table_new();
    MERGED = fd_funnel_table_new();

    avro_cases(FD_FMT_AVRO, 1);
    avro_cases(FD_FMT_AVRO, 0);
    avro_cases(FD_FMT_CONFLUENT_AVRO, 1);
    avro_cases(FD_FMT_CONFLUENT_AVRO, 0);
    v0_cases();
    json_cases();

    /* every accepted event's revenue is in the windows, exactly, through
     * the merge into minutes and hours as the engine does it */
    size_t cur = 0;
    const fd_funnel_delta *d;
    int64_t got = 0;
    while ((d = fd_funnel_next(WT, &cur))) {
        CHECK(fd_funnel_merge(MERGED, 0, d->cat, d->start_ms, d->c) == 0);
        CHECK(fd_funnel_merge(MERGED, 1, d->cat, d->start_ms - d->start_ms % 3600000, d->c) == 0);
        if (d->cat == FD_CAT_TOTAL)
            got += d->c[FD_FC_REVENUE_CENTS];
    }
    CHECK(got == want_revenue && n_accepted > 50);
    CHECK(fd_funnel_saturated(WT) == 0 && fd_funnel_saturated(MERGED) == 0);
    int64_t users = 0;
    cur = 0;
    for (fd_user *u; (u = fd_user_table_next(UT, &cur));)
        users += u->f.revenue_cents;
    CHECK(users == want_revenue);

    sums_at_limits();
    revenue_of_anything();
    records_at_limits();
    config_key();

    fd_funnel_table_free(MERGED);
    fd_funnel_table_free(WT);
    fd_user_table_free(UT);
    return check_report();
}
