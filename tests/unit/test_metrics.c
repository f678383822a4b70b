/*
 * test_metrics.c - the funnel-metrics message: report init and rates
 * (zero denominators included), JSON parsed back with jansson and Avro
 * decoded back with Avro-C's generic reader, every field compared, with
 * awkward category names; schema errors naming the file and the field.
 * Runs with cwd = repo root (or FD_SOURCE_DIR set).
 */
#include <avro.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/metrics.h"
#include "tests/unit/check.h"

static char err[1024];

static const char *src(const char *rel)
{
    static char buf[1024];
    const char *dir = getenv("FD_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s%s%s", dir ? dir : "", dir ? "/" : "", rel);
    return buf;
}

#define SCHEMA "conf/schemas/funnel_metrics.avsc"

static const char *const stages[4] = {"visit", "click", "cart", "purchase"};
static const char *const evnames[3] = {"click", "cart", "purchase"};

/* Valid UTF-8 with everything JSON must escape, and a maximal-length name. */
static const char CAT0[] = "sh\"oes\" \\ C:\\x\n\r\t\b\f\x01\x1f caf\xc3\xa9 \xe2\x9c\x93 \x7f/";

static void sample(fd_window_report *r)
{
    fd_window_report_init(r, "1m", 60000, INT64_C(1767225600000));
    for (int i = 0; i < FD_FC__COUNT; i++)
        r->c[i] = 101 + i;
    r->c[FD_FC_REVENUE_CENTS] = INT64_C(123456789012);
    for (int i = 0; i < 4; i++)
        r->users[i] = 201 + i;
    r->rates[0] = 1.0 / 3.0;
    r->rates[1] = 0.1;
    r->rates[2] = 0.0;
    r->rates[3] = 1.0;
    r->n_cats = 2;
    snprintf(r->cats[0].name, sizeof r->cats[0].name, "%s", CAT0);
    memset(r->cats[1].name, 'z', FD_ID_MAX);
    r->cats[1].name[0] = '"';
    r->cats[1].name[FD_ID_MAX - 1] = '\\';
    r->cats[1].name[FD_ID_MAX] = '\0';
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < FD_FC__COUNT; i++)
            r->cats[k].c[i] = 1000 * (k + 1) + i;
}

static void test_init_and_rates(void)
{
    fd_window_report r;
    memset(&r, 0x5a, sizeof r);
    fd_window_report_init(&r, "1h", 3600000, INT64_C(1767225600000));
    CHECK_STR(r.id, "1h:1767225600000");
    CHECK_STR(r.span, "1h");
    CHECK(r.start_ms == INT64_C(1767225600000));
    CHECK(r.end_ms == INT64_C(1767229200000));
    CHECK(r.n_cats == 0);
    int zero = 1;
    for (int i = 0; i < FD_FC__COUNT; i++)
        zero &= r.c[i] == 0;
    for (int i = 0; i < 4; i++)
        zero &= r.users[i] == 0 && r.rates[i] == 0.0;
    CHECK(zero);
    CHECK(r.cats[FD_FUNNEL_MAX_CATS].name[0] == '\0' && r.cats[FD_FUNNEL_MAX_CATS].c[7] == 0);

    CHECK_STR(fd_rate_names[0], "click_rate");
    CHECK_STR(fd_rate_names[1], "cart_rate");
    CHECK_STR(fd_rate_names[2], "purchase_rate");
    CHECK_STR(fd_rate_names[3], "conversion");

    static const struct {
        int64_t v, c, k, p;
        double want[4];
    } cases[] = {
        {20, 10, 4, 1, {0.5, 0.4, 0.25, 0.05}},
        {0, 3, 2, 1, {0, 2.0 / 3.0, 0.5, 0}}, /* visit 0 */
        {5, 0, 1, 1, {0, 0, 1, 0.2}},         /* click 0 */
        {5, 2, 0, 0, {0.4, 0, 0, 0}},         /* cart 0 */
        {0, 0, 0, 0, {0, 0, 0, 0}},           /* empty window */
        {3, 3, 3, 3, {1, 1, 1, 1}},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        fd_window_report_init(&r, "1m", 60000, 0);
        for (int i = 0; i < 4; i++)
            r.rates[i] = 9.0; /* must be overwritten, zeros included */
        r.c[FD_FC_SESS_VISIT] = cases[t].v;
        r.c[FD_FC_SESS_CLICK] = cases[t].c;
        r.c[FD_FC_SESS_CART] = cases[t].k;
        r.c[FD_FC_SESS_PURCHASE] = cases[t].p;
        r.c[FD_FC_CLICK] = 77; /* event counters play no part */
        r.c[FD_FC_PURCHASE] = 55;
        fd_window_report_rates(&r);
        for (int i = 0; i < 4; i++) {
            if (fabs(r.rates[i] - cases[t].want[i]) > 1e-15)
                fprintf(stderr, "case %zu rate %s\n", t, fd_rate_names[i]);
            CHECK_NEAR(r.rates[i], cases[t].want[i], 1e-15);
        }
    }
}

/* ---- JSON --------------------------------------------------------------- */

static int64_t jlong(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : INT64_MIN;
}

static void check_jlongs(json_t *o, const char *k, const char *const *names, const int64_t *want,
                         int n)
{
    json_t *sub = json_object_get(o, k);
    CHECK(json_is_object(sub) && json_object_size(sub) == (size_t)n);
    for (int i = 0; i < n; i++) {
        if (jlong(sub, names[i]) != want[i])
            fprintf(stderr, "%s.%s = %" PRId64 ", expected %" PRId64 "\n", k, names[i],
                    jlong(sub, names[i]), want[i]);
        CHECK(jlong(sub, names[i]) == want[i]);
    }
}

static void test_json(void)
{
    fd_metrics_enc *m = fd_metrics_enc_new(1, NULL, "funneld 9.9.9-test", err, sizeof err);
    CHECK(m != NULL);
    if (!m)
        return;
    fd_window_report r;
    sample(&r);
    const void *out;
    size_t len;
    CHECK(fd_metrics_encode(m, &r, &out, &len) == 0);
    char *text = malloc(len + 1);
    memcpy(text, out, len);
    text[len] = '\0';
    CHECK(len > 0 && text[len - 1] == '}'); /* no trailing newline */
    CHECK(strlen(text) == len);
    /* escapes as specified, UTF-8 and DEL passed through */
    CHECK_CONTAINS(text, "\"category\":\"sh\\\"oes\\\" \\\\ C:\\\\x\\n\\r\\t\\b\\f\\u0001\\u001f "
                         "caf\xc3\xa9 \xe2\x9c\x93 \x7f/\"");
    CHECK_CONTAINS(text, "\"click_rate\":0.33333333333333331,");
    CHECK_CONTAINS(text, "\"purchase_rate\":0.0,\"conversion\":1.0}");
    /* fixed field order */
    static const char *const order[] = {"{\"id\":",
                                        "\"span\":",
                                        "\"window_start_ms\":",
                                        "\"window_end_ms\":",
                                        "\"sessions\":{\"visit\":",
                                        "\"events\":{\"click\":",
                                        "\"users\":{\"visit\":",
                                        "\"revenue_cents\":",
                                        "\"rates\":{\"click_rate\":",
                                        "\"categories\":[{\"category\":",
                                        "\"producer\":"};
    const char *at = text;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *p = strstr(at, order[i]);
        if (!p)
            fprintf(stderr, "order: %s not after the previous field\n", order[i]);
        CHECK(p != NULL);
        if (p)
            at = p;
    }

    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        fprintf(stderr, "json: %s\n", je.text);
    CHECK(root != NULL);
    if (root) {
        CHECK(json_object_size(root) == 11);
        CHECK_STR(json_string_value(json_object_get(root, "id")), "1m:1767225600000");
        CHECK_STR(json_string_value(json_object_get(root, "span")), "1m");
        CHECK(jlong(root, "window_start_ms") == INT64_C(1767225600000));
        CHECK(jlong(root, "window_end_ms") == INT64_C(1767225660000));
        check_jlongs(root, "sessions", stages, &r.c[FD_FC_SESS_VISIT], 4);
        check_jlongs(root, "events", evnames, &r.c[FD_FC_CLICK], 3);
        check_jlongs(root, "users", stages, r.users, 4);
        CHECK(jlong(root, "revenue_cents") == INT64_C(123456789012));
        json_t *rates = json_object_get(root, "rates");
        CHECK(json_object_size(rates) == 4);
        for (int i = 0; i < 4; i++) {
            json_t *v = json_object_get(rates, fd_rate_names[i]);
            CHECK(json_is_real(v));                  /* 0 and 1 as 0.0 / 1.0 */
            CHECK(json_real_value(v) == r.rates[i]); /* exact round trip */
        }
        json_t *cats = json_object_get(root, "categories");
        CHECK(json_is_array(cats) && json_array_size(cats) == 2);
        for (int k = 0; k < 2 && json_is_array(cats); k++) {
            json_t *c = json_array_get(cats, (size_t)k);
            CHECK(json_object_size(c) == 4);
            json_t *name = json_object_get(c, "category");
            CHECK(json_is_string(name) && json_string_length(name) == strlen(r.cats[k].name) &&
                  memcmp(json_string_value(name), r.cats[k].name, strlen(r.cats[k].name)) == 0);
            check_jlongs(c, "sessions", stages, &r.cats[k].c[FD_FC_SESS_VISIT], 4);
            check_jlongs(c, "events", evnames, &r.cats[k].c[FD_FC_CLICK], 3);
            CHECK(jlong(c, "revenue_cents") == r.cats[k].c[FD_FC_REVENUE_CENTS]);
        }
        CHECK_STR(json_string_value(json_object_get(root, "producer")), "funneld 9.9.9-test");
        json_decref(root);
    }

    /* deterministic, and the buffer is reused correctly */
    fd_window_report r2;
    fd_window_report_init(&r2, "1h", 3600000, 0);
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == 0);
    CHECK_STR((const char *)out,
              "{\"id\":\"1h:0\",\"span\":\"1h\",\"window_start_ms\":0,\"window_end_ms\":3600000,"
              "\"sessions\":{\"visit\":0,\"click\":0,\"cart\":0,\"purchase\":0},"
              "\"events\":{\"click\":0,\"cart\":0,\"purchase\":0},"
              "\"users\":{\"visit\":0,\"click\":0,\"cart\":0,\"purchase\":0},\"revenue_cents\":0,"
              "\"rates\":{\"click_rate\":0.0,\"cart_rate\":0.0,\"purchase_rate\":0.0,"
              "\"conversion\":0.0},\"categories\":[],\"producer\":\"funneld 9.9.9-test\"}");
    CHECK(fd_metrics_encode(m, &r, &out, &len) == 0);
    CHECK(len == strlen(text) && memcmp(out, text, len) == 0);

    /* what cannot be encoded */
    r2.n_cats = FD_FUNNEL_MAX_CATS + 2;
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == -1);
    r2.n_cats = -1;
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == -1);
    r2.n_cats = 0;
    r2.rates[3] = NAN;
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == -1);
    r2.rates[3] = 0;
    r2.n_cats = 1;
    memset(r2.cats[0].name, 'x', sizeof r2.cats[0].name); /* unterminated */
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == -1);
    free(text);
    fd_metrics_enc_free(m);

    /* default producer */
    m = fd_metrics_enc_new(1, NULL, NULL, err, sizeof err);
    CHECK(m != NULL);
    if (m) {
        CHECK(fd_metrics_encode(m, &r, &out, &len) == 0);
        char tail[64];
        snprintf(tail, sizeof tail, "\"producer\":\"funneld %s\"}", FD_VERSION);
        CHECK(len >= strlen(tail) &&
              memcmp((const char *)out + len - strlen(tail), tail, strlen(tail)) == 0);
        fd_metrics_enc_free(m);
    }
}

/* ---- Avro --------------------------------------------------------------- */

static avro_schema_t load_schema(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    avro_schema_t s = NULL;
    if (avro_schema_from_json_length(text, n, &s) != 0) {
        fprintf(stderr, "schema: %s\n", avro_strerror());
        return NULL;
    }
    return s;
}

static int64_t alng(avro_value_t *rec, const char *k)
{
    avro_value_t f;
    int64_t v = INT64_MIN;
    if (avro_value_get_by_name(rec, k, &f, NULL) != 0 || avro_value_get_long(&f, &v) != 0)
        return INT64_MIN;
    return v;
}

static double adbl(avro_value_t *rec, const char *k)
{
    avro_value_t f;
    double v = NAN;
    if (avro_value_get_by_name(rec, k, &f, NULL) != 0 || avro_value_get_double(&f, &v) != 0)
        return NAN;
    return v;
}

/* 1 when string field k holds exactly the bytes of want */
static int astr_is(avro_value_t *rec, const char *k, const char *want)
{
    avro_value_t f;
    const char *s = NULL;
    size_t n = 0;
    if (avro_value_get_by_name(rec, k, &f, NULL) != 0 || avro_value_get_string(&f, &s, &n) != 0)
        return 0;
    /* Avro-C sizes include the NUL */
    return n == strlen(want) + 1 && memcmp(s, want, n) == 0;
}

static void check_alongs(avro_value_t *rec, const char *k, const char *const *names,
                         const int64_t *want, int n)
{
    avro_value_t sub;
    size_t cnt = 0;
    CHECK(avro_value_get_by_name(rec, k, &sub, NULL) == 0 && avro_value_get_size(&sub, &cnt) == 0 &&
          cnt == (size_t)n);
    for (int i = 0; i < n; i++) {
        if (alng(&sub, names[i]) != want[i])
            fprintf(stderr, "avro %s.%s = %" PRId64 ", expected %" PRId64 "\n", k, names[i],
                    alng(&sub, names[i]), want[i]);
        CHECK(alng(&sub, names[i]) == want[i]);
    }
}

static void check_avro_decode(avro_schema_t schema, const void *buf, size_t len,
                              const fd_window_report *r, const char *producer)
{
    avro_value_iface_t *cls = avro_generic_class_from_schema(schema);
    avro_value_t v;
    CHECK(cls != NULL && avro_generic_value_new(cls, &v) == 0);
    avro_reader_t rd = avro_reader_memory(buf, (int64_t)len);
    int rc = avro_value_read(rd, &v);
    if (rc != 0)
        fprintf(stderr, "avro_value_read: %s\n", avro_strerror());
    CHECK(rc == 0);
    if (rc == 0) {
        size_t size = 0; /* the record is the whole message: nothing after it */
        CHECK(avro_value_sizeof(&v, &size) == 0 && size == len);
        CHECK(astr_is(&v, "id", r->id));
        CHECK(astr_is(&v, "span", r->span));
        CHECK(alng(&v, "window_start_ms") == r->start_ms);
        CHECK(alng(&v, "window_end_ms") == r->end_ms);
        check_alongs(&v, "sessions", stages, &r->c[FD_FC_SESS_VISIT], 4);
        check_alongs(&v, "events", evnames, &r->c[FD_FC_CLICK], 3);
        check_alongs(&v, "users", stages, r->users, 4);
        CHECK(alng(&v, "revenue_cents") == r->c[FD_FC_REVENUE_CENTS]);
        avro_value_t rates;
        CHECK(avro_value_get_by_name(&v, "rates", &rates, NULL) == 0);
        for (int i = 0; i < 4; i++)
            CHECK(adbl(&rates, fd_rate_names[i]) == r->rates[i]);
        avro_value_t cats;
        size_t n = 0;
        CHECK(avro_value_get_by_name(&v, "categories", &cats, NULL) == 0 &&
              avro_value_get_size(&cats, &n) == 0 && n == (size_t)r->n_cats);
        for (int k = 0; k < r->n_cats && (size_t)k < n; k++) {
            avro_value_t c;
            CHECK(avro_value_get_by_index(&cats, (size_t)k, &c, NULL) == 0);
            CHECK(astr_is(&c, "category", r->cats[k].name));
            check_alongs(&c, "sessions", stages, &r->cats[k].c[FD_FC_SESS_VISIT], 4);
            check_alongs(&c, "events", evnames, &r->cats[k].c[FD_FC_CLICK], 3);
            CHECK(alng(&c, "revenue_cents") == r->cats[k].c[FD_FC_REVENUE_CENTS]);
        }
        CHECK(astr_is(&v, "producer", producer));
    }
    avro_reader_free(rd);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
}

static void test_avro(void)
{
    fd_metrics_enc *m = fd_metrics_enc_new(0, src(SCHEMA), "funneld 9.9.9-test", err, sizeof err);
    if (!m)
        fprintf(stderr, "fd_metrics_enc_new: %s\n", err);
    CHECK(m != NULL);
    avro_schema_t schema = load_schema(src(SCHEMA));
    CHECK(schema != NULL);
    if (!m || !schema)
        return;
    fd_window_report r;
    sample(&r);
    const void *out;
    size_t len;
    CHECK(fd_metrics_encode(m, &r, &out, &len) == 0);
    check_avro_decode(schema, out, len, &r, "funneld 9.9.9-test");
    void *first = malloc(len);
    size_t first_len = len;
    memcpy(first, out, len);

    /* no categories, then one with bytes that are not UTF-8 (passed as is) */
    fd_window_report r2;
    fd_window_report_init(&r2, "1h", 3600000, INT64_C(1767225600000));
    r2.c[FD_FC_SESS_VISIT] = 7;
    r2.users[3] = -1;
    r2.rates[2] = 0.7;
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == 0);
    check_avro_decode(schema, out, len, &r2, "funneld 9.9.9-test");
    r2.n_cats = FD_FUNNEL_MAX_CATS + 1;
    for (int k = 0; k < r2.n_cats; k++) {
        snprintf(r2.cats[k].name, sizeof r2.cats[k].name, "c%d\xff\xfe\x80", k);
        r2.cats[k].c[FD_FC_CART] = k;
        r2.cats[k].c[FD_FC_REVENUE_CENTS] = -k;
    }
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == 0);
    check_avro_decode(schema, out, len, &r2, "funneld 9.9.9-test");

    /* deterministic across reuse (the categories array is reset) */
    CHECK(fd_metrics_encode(m, &r, &out, &len) == 0);
    CHECK(len == first_len && memcmp(out, first, len) == 0);
    free(first);

    r2.n_cats = FD_FUNNEL_MAX_CATS + 2;
    CHECK(fd_metrics_encode(m, &r2, &out, &len) == -1);
    fd_metrics_enc_free(m);
    avro_schema_decref(schema);
}

/* ---- schema errors ------------------------------------------------------ */

/* The real schema with `from` replaced by `to`, in a temp file. 0 or -1. */
static int write_variant(const char *path, const char *from, const char *to)
{
    FILE *f = fopen(src(SCHEMA), "rb");
    if (!f)
        return -1;
    static char text[65536], outb[65536 + 256];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strstr(text, from);
    if (!p)
        return -1;
    snprintf(outb, sizeof outb, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
    f = fopen(path, "wb");
    if (!f)
        return -1;
    fputs(outb, f);
    return fclose(f) == 0 ? 0 : -1;
}

static void expect_schema_error(const char *from, const char *to, const char *msg)
{
    char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/test_metrics_%ld.avsc", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    CHECK(write_variant(path, from, to) == 0);
    err[0] = '\0';
    fd_metrics_enc *m = fd_metrics_enc_new(0, path, NULL, err, sizeof err);
    CHECK(m == NULL);
    fd_metrics_enc_free(m);
    CHECK_CONTAINS(err, path);
    CHECK_CONTAINS(err, msg);
    remove(path);
}

static void test_schema_errors(void)
{
    err[0] = '\0';
    fd_metrics_enc *m =
        fd_metrics_enc_new(0, "/nonexistent/dir/metrics.avsc", NULL, err, sizeof err);
    CHECK(m == NULL);
    fd_metrics_enc_free(m);
    CHECK_CONTAINS(err, "/nonexistent/dir/metrics.avsc");
    CHECK_CONTAINS(err, "cannot open");

    expect_schema_error("\"name\": \"conversion\"", "\"name\": \"conversion_x\"",
                        "field rates.conversion is missing (expected double)");
    expect_schema_error("\"name\": \"producer\"", "\"name\": \"producer_x\"",
                        "field producer is missing (expected string)");
    expect_schema_error("\"name\": \"category\"", "\"name\": \"category_x\"",
                        "field categories[].category is missing (expected string)");
    expect_schema_error("\"name\": \"revenue_cents\", \"type\": \"long\"",
                        "\"name\": \"revenue_cents\", \"type\": \"int\"",
                        "field revenue_cents has type int, expected long");
    expect_schema_error("\"name\": \"id\", \"type\": \"string\",",
                        "\"name\": \"id\", \"type\": \"string\"},"
                        "{\"name\": \"extra\", \"type\": \"long\",",
                        "unexpected field extra");
    expect_schema_error("\"fields\"", "\"fieldz\"", "invalid Avro schema");
}

int main(void)
{
    test_init_and_rates();
    test_json();
    test_avro();
    test_schema_errors();
    return check_report();
}
