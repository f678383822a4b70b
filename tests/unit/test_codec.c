/*
 * test_codec.c - the event codecs: round trips in every format, schema
 * resolution from the v0 writer schema, RFC 3339, and every invalid input
 * with the reason it must produce and a message naming the field.
 * Runs with cwd = repo root (or FD_SOURCE_DIR set).
 */
#include <avro.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec.h"
#include "tests/unit/check.h"
#include "tools/gen.h"
#include "tests/unit/codec_fixture.h"

static char err[1024];

static fd_codec *mk(fd_format f, size_t max)
{
    return codec_fixture_new(f, max, 0, err, sizeof err);
}

static fd_reject dec(fd_codec *c, const void *p, size_t n, fd_event *ev)
{
    err[0] = '\0';
    return fd_codec_decode(c, p, n, ev, err, sizeof err);
}

static fd_reject decs(fd_codec *c, const char *s, fd_event *ev)
{
    return dec(c, s, strlen(s), ev);
}

static fd_event full(void)
{
    fd_event ev;
    fd_event_init(&ev);
    strcpy(ev.event_id, "ev-1");
    strcpy(ev.user_id, "user \"42\"\\\n\x01 é");
    strcpy(ev.item_id, "item-9");
    strcpy(ev.session_id, "sess-3");
    strcpy(ev.category, "shoes");
    ev.has_item = ev.has_session = ev.has_category = ev.has_price = true;
    ev.ts_ms = 1772366400123;
    ev.price = 19.99;
    ev.quantity = 3;
    ev.type = FD_EV_PURCHASE;
    return ev;
}

static fd_event minimal(void)
{
    fd_event ev;
    fd_event_init(&ev);
    strcpy(ev.event_id, "e");
    strcpy(ev.user_id, "u");
    ev.ts_ms = 1;
    ev.type = FD_EV_CART;
    return ev;
}

static int same(const fd_event *a, const fd_event *b)
{
    return strcmp(a->event_id, b->event_id) == 0 && strcmp(a->user_id, b->user_id) == 0 &&
           strcmp(a->item_id, b->item_id) == 0 && strcmp(a->session_id, b->session_id) == 0 &&
           strcmp(a->category, b->category) == 0 && a->ts_ms == b->ts_ms && a->price == b->price &&
           a->quantity == b->quantity && a->type == b->type && a->has_item == b->has_item &&
           a->has_session == b->has_session && a->has_price == b->has_price &&
           a->has_category == b->has_category;
}

static void round_trip(fd_format f)
{
    fd_codec *c = mk(f, 1 << 20);
    CHECK(c != NULL);
    if (!c)
        return;
    fd_event in[3] = {full(), minimal(), full()};
    in[2].type = FD_EV_CLICK;
    in[2].has_price = false;
    in[2].price = 0;
    in[2].has_item = false;
    in[2].item_id[0] = '\0';
    memset(in[2].session_id, 's', FD_ID_MAX); /* longest allowed */
    in[2].session_id[FD_ID_MAX] = '\0';
    for (int i = 0; i < 3; i++) {
        const void *out;
        size_t n;
        fd_event ev;
        CHECK(fd_codec_encode(c, &in[i], &out, &n) == 0);
        CHECK(dec(c, out, n, &ev) == FD_OK);
        CHECK(same(&in[i], &ev));
        if (!same(&in[i], &ev))
            fprintf(stderr, "round trip %s #%d failed: %s\n", fd_format_name(f), i, err);
    }
    if (f == FD_FMT_CONFLUENT_AVRO) {
        const uint8_t *o;
        size_t n;
        CHECK(fd_codec_encode(c, &in[0], (const void **)&o, &n) == 0);
        CHECK(n > 5 && o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] == 0 && o[4] == 1);
    }
    fd_codec_destroy(c);
}

/* ---- hand-built Avro bytes --------------------------------------------- */

typedef struct ab {
    uint8_t *p;
    size_t n, cap;
} ab;

static void ab_put(ab *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void ab_long(ab *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        uint8_t x = (uint8_t)(z | 0x80);
        ab_put(b, &x, 1);
        z >>= 7;
    }
    uint8_t x = (uint8_t)z;
    ab_put(b, &x, 1);
}
static void ab_str(ab *b, const char *s, size_t n)
{
    ab_long(b, (int64_t)n);
    ab_put(b, s, n);
}

/* An Event in the reader schema, with the knobs the tests need. */
static void raw_event(ab *b, const char *uid, size_t uid_len, int64_t ts, int64_t type_idx,
                      int has_price, double price, int64_t qty)
{
    ab_str(b, "e1", 2);
    ab_str(b, uid, uid_len);
    ab_long(b, ts);
    ab_long(b, type_idx);
    ab_long(b, 0); /* item_id null */
    ab_long(b, 1); /* session_id string */
    ab_str(b, "s1", 2);
    ab_long(b, has_price ? 1 : 0);
    if (has_price)
        ab_put(b, &price, 8); /* little-endian host */
    ab_long(b, qty);
    ab_long(b, 0); /* category null */
}

static fd_reject dec_raw(fd_codec *c, ab *b, fd_event *ev)
{
    fd_reject r = dec(c, b->p, b->n, ev);
    b->n = 0;
    return r;
}

static void avro_invalid(void)
{
    fd_codec *c = mk(FD_FMT_AVRO, 1 << 20);
    fd_codec *big = mk(FD_FMT_AVRO, 0);
    CHECK(c && big);
    if (!c || !big)
        return;
    fd_event ev;
    ab b = {0};

    raw_event(&b, "u1", 2, 1000, 2, 1, 2.5, 4);
    CHECK(dec_raw(c, &b, &ev) == FD_OK);
    CHECK(ev.type == FD_EV_PURCHASE && ev.quantity == 4 && ev.price == 2.5 && !ev.has_item &&
          ev.has_session && !ev.has_category);

    /* every prefix of a valid message is rejected, none crashes */
    fd_event full_ev = full();
    const void *out;
    size_t n;
    CHECK(fd_codec_encode(c, &full_ev, &out, &n) == 0);
    uint8_t copy[2048];
    memcpy(copy, out, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        fd_reject r = dec(c, copy, i, &ev);
        if (r != FD_REJ_AVRO)
            bad++;
    }
    CHECK(bad == 0);
    CHECK(dec(c, copy, n - 1, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "truncated");
    /* trailing garbage */
    copy[n] = 0x00;
    CHECK(dec(c, copy, n + 1, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "trailing");

    /* malicious lengths: no huge allocation, quick reject */
    static const uint8_t huge[] = {0x04, 'e', '1', 0xfe, 0xff, 0xff, 0xff, 0x0f, 'u'};
    CHECK(dec(c, huge, sizeof huge, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "user_id");
    static const uint8_t neg[] = {0x03, 'e'};
    CHECK(dec(c, neg, sizeof neg, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "event_id");
    static const uint8_t longvar[] = {0x02, 'e',  0x02, 'u',  0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK(dec(c, longvar, sizeof longvar, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "varint");
    /* int varint beyond int32 (Avro-C would fail late; the prescan says so) */
    ab_str(&b, "e1", 2);
    ab_str(&b, "u1", 2);
    ab_long(&b, 5);
    ab_long(&b, 0);
    ab_long(&b, 0);
    ab_long(&b, 0);
    ab_long(&b, 0);
    ab_long(&b, (int64_t)INT32_MAX + 1); /* quantity */
    ab_long(&b, 0);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "quantity: int 2147483648 out of range");
    /* union branch out of range */
    ab_str(&b, "e1", 2);
    ab_str(&b, "u1", 2);
    ab_long(&b, 5);
    ab_long(&b, 0);
    ab_long(&b, 4); /* item_id branch 4 */
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "item_id");

    /* enum index out of range */
    raw_event(&b, "u1", 2, 1000, 3, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_UNKNOWN_TYPE);
    CHECK_CONTAINS(err, "type");
    raw_event(&b, "u1", 2, 1000, -1, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_UNKNOWN_TYPE);

    /* NaN, +Inf, negative price */
    raw_event(&b, "u1", 2, 1000, 0, 1, NAN, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_PRICE);
    CHECK_STR(err, "price: NaN is not a valid price (must be finite and >= 0)");
    raw_event(&b, "u1", 2, 1000, 0, 1, INFINITY, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_PRICE);
    CHECK_CONTAINS(err, "price: +Inf");
    raw_event(&b, "u1", 2, 1000, 0, 1, -3, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_PRICE);
    CHECK_CONTAINS(err, "price");

    /* quantity */
    int64_t qs[] = {0, -1, 1000001};
    for (int i = 0; i < 3; i++) {
        raw_event(&b, "u1", 2, 1000, 0, 0, 0, qs[i]);
        CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_QUANTITY);
        CHECK_CONTAINS(err, "quantity");
    }
    raw_event(&b, "u1", 2, 1000, 0, 0, 0, 1000000);
    CHECK(dec_raw(c, &b, &ev) == FD_OK);

    /* ts <= 0 */
    raw_event(&b, "u1", 2, 0, 0, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_TS);
    CHECK_CONTAINS(err, "ts");
    raw_event(&b, "u1", 2, -1000, 0, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_TS);

    /* user_id: empty, NUL, too long (257), 10 MB */
    raw_event(&b, "", 0, 1000, 0, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_USER_ID);
    CHECK_CONTAINS(err, "user_id");
    raw_event(&b, "a\0b", 3, 1000, 0, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_BAD_USER_ID);
    CHECK_CONTAINS(err, "user_id");
    size_t tenmb = 10u << 20;
    char *s = malloc(tenmb);
    memset(s, 'x', tenmb);
    raw_event(&b, s, FD_ID_MAX + 1, 1000, 0, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_FIELD_TOO_LONG);
    CHECK_CONTAINS(err, "user_id");
    raw_event(&b, s, FD_ID_MAX, 1000, 0, 0, 0, 1);
    CHECK(dec_raw(c, &b, &ev) == FD_OK);
    raw_event(&b, s, tenmb, 1000, 0, 0, 0, 1);
    size_t saved = b.n;
    CHECK(dec(big, b.p, b.n, &ev) == FD_REJ_FIELD_TOO_LONG);
    CHECK_CONTAINS(err, "user_id");
    b.n = saved;
    CHECK(dec_raw(c, &b, &ev) == FD_REJ_TOO_LARGE);
    CHECK_CONTAINS(err, "bytes");

    /* encode refuses what it cannot represent */
    fd_event e = minimal();
    e.type = 9;
    CHECK(fd_codec_encode(c, &e, &out, &n) == -1);
    free(s);
    free(b.p);
    fd_codec_destroy(c);
    fd_codec_destroy(big);
}

/* ---- confluent ---------------------------------------------------------- */

static avro_schema_t load_schema(const char *path)
{
    FILE *f = fopen(path, "rb");
    char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    avro_schema_t s = NULL;
    if (avro_schema_from_json_length(buf, n, &s) != 0)
        return NULL;
    return s;
}

static void set_str(avro_value_t *rec, const char *name, const char *v)
{
    avro_value_t f = {0}, br = {0};
    avro_value_get_by_name(rec, name, &f, NULL);
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (!v) {
            avro_value_set_branch(&f, 0, &br);
            avro_value_set_null(&br);
            return;
        }
        avro_value_set_branch(&f, 1, &br);
        f = br;
    }
    avro_value_set_string(&f, v);
}

static void confluent(void)
{
    fd_codec *c = mk(FD_FMT_CONFLUENT_AVRO, 1 << 20);
    CHECK(c != NULL);
    if (!c)
        return;
    fd_event ev;

    /* v0 writer bytes built with Avro-C from event.v0.avsc */
    avro_schema_t w = load_schema(src("conf/schemas/event.v0.avsc"));
    CHECK(w != NULL);
    avro_value_iface_t *cls = avro_generic_class_from_schema(w);
    avro_value_t v = {0}, f = {0}, br = {0};
    avro_generic_value_new(cls, &v);
    set_str(&v, "user_id", "u-v0");
    set_str(&v, "event_id", "e-v0");
    avro_value_get_by_name(&v, "type", &f, NULL);
    avro_value_set_enum(&f, 1);
    avro_value_get_by_name(&v, "ts", &f, NULL);
    avro_value_set_long(&f, 1700000000000);
    set_str(&v, "session_id", "s-v0");
    set_str(&v, "item_id", NULL);
    avro_value_get_by_name(&v, "price", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_double(&br, 7.25);
    uint8_t buf[512] = {0, 0, 0, 0, 7};
    avro_writer_t wr = avro_writer_memory((char *)buf + 5, sizeof buf - 5);
    CHECK(avro_value_write(wr, &v) == 0);
    size_t n = 5 + (size_t)avro_writer_tell(wr);
    CHECK(dec(c, buf, n, &ev) == FD_OK);
    CHECK_STR(ev.user_id, "u-v0");
    CHECK_STR(ev.event_id, "e-v0");
    CHECK_STR(ev.session_id, "s-v0");
    CHECK(ev.has_session && !ev.has_item && ev.has_price && !ev.has_category);
    CHECK(ev.type == FD_EV_CART && ev.ts_ms == 1700000000000 && ev.quantity == 1);
    CHECK_NEAR(ev.price, 7.25, 0);
    if (err[0])
        fprintf(stderr, "v0: %s\n", err);
    /* the same v0 body under the reader's id 1 is garbage for that schema */
    buf[4] = 1;
    CHECK(dec(c, buf, n, &ev) != FD_OK);
    buf[4] = 7;
    /* every prefix of the v0 message is rejected */
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (dec(c, buf, i, &ev) == FD_OK)
            bad++;
    CHECK(bad == 0);
    /* trailing */
    buf[n] = 0x42;
    CHECK(dec(c, buf, n + 1, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "trailing");
    /* v0 with NaN price */
    avro_value_set_double(&br, NAN);
    avro_writer_reset(wr);
    CHECK(avro_value_write(wr, &v) == 0);
    CHECK(dec(c, buf, 5 + (size_t)avro_writer_tell(wr), &ev) == FD_REJ_BAD_PRICE);
    avro_writer_free(wr);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
    avro_schema_decref(w);

    /* framing */
    static const uint8_t magic[] = {0x01, 0, 0, 0, 1, 2, 'e'};
    CHECK(dec(c, magic, sizeof magic, &ev) == FD_REJ_BAD_MAGIC);
    CHECK_CONTAINS(err, "byte 0 is 0x01, expected 0x00");
    static const uint8_t shorth[] = {0x00, 0, 0};
    CHECK(dec(c, shorth, sizeof shorth, &ev) == FD_REJ_AVRO);
    CHECK_CONTAINS(err, "truncated header");
    CHECK(dec(c, "", 0, &ev) == FD_REJ_AVRO);
    static const uint8_t unk[] = {0x00, 0, 0, 0x01, 0x00, 2, 'e'};
    CHECK(dec(c, unk, sizeof unk, &ev) == FD_REJ_UNKNOWN_SCHEMA);
    CHECK_CONTAINS(err, "256");
    static const uint8_t unkneg[] = {0x00, 0xff, 0xff, 0xff, 0xff};
    CHECK(dec(c, unkneg, sizeof unkneg, &ev) == FD_REJ_UNKNOWN_SCHEMA);
    CHECK_CONTAINS(err, "-1");
    fd_codec_destroy(c);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void codec_new_errors(void)
{
    fd_codec_opts o = {.format = FD_FMT_AVRO, .schema_path = "/nonexistent/x.avsc"};
    CHECK(fd_codec_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "/nonexistent/x.avsc");
    write_file("/tmp/fd_test_bad.avsc", "{\"type\": \"record\", \"name\": ");
    o.schema_path = "/tmp/fd_test_bad.avsc";
    CHECK(fd_codec_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "/tmp/fd_test_bad.avsc");

    /* incompatible writer: ts is a string */
    write_file("/tmp/fd_test_w1.avsc",
               "{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"funneld\",\"fields\":["
               "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":"
               "\"string\"},{\"name\":\"ts\",\"type\":\"string\"},{\"name\":\"type\",\"type\":"
               "{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":[\"CLICK\"]}}]}");
    /* writer lacking a required field */
    write_file("/tmp/fd_test_w2.avsc",
               "{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"funneld\",\"fields\":["
               "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"ts\",\"type\":\"long\"},"
               "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\","
               "\"symbols\":[\"CLICK\"]}}]}");
    /* writer with int ts (promoted), an extra field, fewer enum symbols */
    write_file("/tmp/fd_test_w3.avsc",
               "{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"funneld\",\"fields\":["
               "{\"name\":\"extra\",\"type\":\"string\"},"
               "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":"
               "\"string\"},{\"name\":\"ts\",\"type\":\"int\"},{\"name\":\"type\",\"type\":"
               "{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":[\"CLICK\",\"CART\"]}}]}");
    const char *bad_files[] = {"/tmp/fd_test_w1.avsc", "/tmp/fd_test_w2.avsc"};
    for (int i = 0; i < 2; i++) {
        fd_schema_ref ref = {3, bad_files[i]};
        fd_codec_opts oc = {.format = FD_FMT_CONFLUENT_AVRO,
                            .schema_path = src("conf/schemas/event.avsc"),
                            .schema_ids = &ref,
                            .n_schema_ids = 1};
        CHECK(fd_codec_new(&oc, err, sizeof err) == NULL);
        CHECK_CONTAINS(err, bad_files[i]);
    }
    fd_schema_ref ref = {3, "/tmp/fd_test_w3.avsc"};
    fd_codec_opts oc = {.format = FD_FMT_CONFLUENT_AVRO,
                        .schema_path = src("conf/schemas/event.avsc"),
                        .schema_ids = &ref,
                        .n_schema_ids = 1};
    fd_codec *c = fd_codec_new(&oc, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        ab b = {0};
        uint8_t hdr[5] = {0, 0, 0, 0, 3};
        ab_put(&b, hdr, 5);
        ab_str(&b, "x", 1);
        ab_str(&b, "e3", 2);
        ab_str(&b, "u3", 2);
        ab_long(&b, 123456);
        ab_long(&b, 1);
        fd_event ev;
        CHECK(dec(c, b.p, b.n, &ev) == FD_OK);
        CHECK(ev.ts_ms == 123456 && ev.type == FD_EV_CART && ev.quantity == 1 && !ev.has_price);
        CHECK_STR(ev.user_id, "u3");
        free(b.p);
        fd_codec_destroy(c);
    }
    fd_codec_destroy(NULL);
    remove("/tmp/fd_test_bad.avsc");
    remove("/tmp/fd_test_w1.avsc");
    remove("/tmp/fd_test_w2.avsc");
    remove("/tmp/fd_test_w3.avsc");
}

/* ---- json ----------------------------------------------------------------- */

static void json_cases(void)
{
    fd_codec *c = mk(FD_FMT_JSON, 1 << 20);
    fd_codec *big = mk(FD_FMT_JSON, 0);
    CHECK(c && big);
    if (!c || !big)
        return;
    fd_event ev;

    CHECK(decs(c,
               "{\"event_id\":\"e1\",\"user_id\":\"u1\",\"ts\":1772366400000,\"type\":\"purchase\","
               "\"item_id\":\"i1\",\"session_id\":\"s1\",\"category\":\"c1\",\"price\":12.5,"
               "\"quantity\":2,\"unknown\":{\"x\":[1,2]}}",
               &ev) == FD_OK);
    CHECK_STR(ev.event_id, "e1");
    CHECK_STR(ev.user_id, "u1");
    CHECK_STR(ev.item_id, "i1");
    CHECK_STR(ev.session_id, "s1");
    CHECK_STR(ev.category, "c1");
    CHECK(ev.ts_ms == 1772366400000 && ev.type == FD_EV_PURCHASE && ev.quantity == 2);
    CHECK(ev.has_item && ev.has_session && ev.has_category && ev.has_price);
    CHECK_NEAR(ev.price, 12.5, 0);

    /* minimal, nulls, defaults, view, case, integer price */
    CHECK(decs(c,
               "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"view\","
               "\"item_id\":null,\"session_id\":null,\"category\":null,\"price\":null}",
               &ev) == FD_OK);
    CHECK(ev.type == FD_EV_CLICK && ev.quantity == 1 && !ev.has_item && !ev.has_session &&
          !ev.has_category && !ev.has_price);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"CART\",\"price\":3}",
               &ev) == FD_OK);
    CHECK(ev.type == FD_EV_CART && ev.has_price && ev.price == 3.0);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"Click\"}", &ev) ==
          FD_OK);
    CHECK(decs(c, "  {\"type\":\"purchase\",\"ts\":5,\"user_id\":\"u\",\"event_id\":\"e\"}\n",
               &ev) == FD_OK);
    CHECK(ev.type == FD_EV_PURCHASE);

    /* RFC 3339 ts */
    struct {
        const char *ts;
        int64_t ms;
    } ok[] = {
        {"2026-03-01T12:00:00Z", 1772366400000},
        {"2026-03-01T12:00:00.123+02:00", 1772366400123 - 7200000},
        {"2026-03-01t12:00:00z", 1772366400000},
        {"2026-03-01 12:00:00.5Z", 1772366400500},
        {"2026-03-01T12:00:00.123456789Z", 1772366400123},
        {"2026-03-01T12:00:00-05:30", 1772366400000 + 19800000},
        {"2024-02-29T23:59:59Z", 1709251199000},
        {"1970-01-01T00:00:01Z", 1000},
        {"2026-03-01T11:59:60Z", 1772366400000},
    };
    char js[512];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(js, sizeof js,
                 "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":\"%s\",\"type\":\"click\"}",
                 ok[i].ts);
        CHECK(decs(c, js, &ev) == FD_OK);
        CHECK(ev.ts_ms == ok[i].ms);
        if (ev.ts_ms != ok[i].ms)
            fprintf(stderr, "%s -> %lld (%s)\n", ok[i].ts, (long long)ev.ts_ms, err);
    }
    const char *badts[] = {"2026-02-29T12:00:00Z",
                           "2026-13-01T12:00:00Z",
                           "2026-03-01T12:00:00",
                           "2026-03-01T24:00:00Z",
                           "2026-03-01T12:00:00.Z",
                           "2026-03-01T12:00Z",
                           "2026-03-01T12:00:00Zjunk",
                           "2026-03-01T12:00:00+2:00",
                           "yesterday",
                           "",
                           "2026-04-31T00:00:00Z",
                           "2026-03-01T12:00:00+24:00"};
    for (size_t i = 0; i < sizeof badts / sizeof badts[0]; i++) {
        snprintf(js, sizeof js,
                 "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":\"%s\",\"type\":\"click\"}",
                 badts[i]);
        CHECK(decs(c, js, &ev) == FD_REJ_BAD_TS);
        CHECK_CONTAINS(err, "ts:");
    }
    CHECK(decs(c,
               "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":\"1969-12-31T23:59:59Z\",\"type\":"
               "\"click\"}",
               &ev) == FD_REJ_BAD_TS);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":0,\"type\":\"click\"}", &ev) ==
          FD_REJ_BAD_TS);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":-1,\"type\":\"click\"}", &ev) ==
          FD_REJ_BAD_TS);

    /* syntax */
    CHECK(decs(c, "{\"event_id\":", &ev) == FD_REJ_JSON_SYNTAX);
    CHECK_CONTAINS(err, "line 1 column");
    CHECK(decs(c, "", &ev) == FD_REJ_JSON_SYNTAX);
    CHECK(decs(c, "[1,2]", &ev) == FD_REJ_JSON_SYNTAX);
    CHECK_CONTAINS(err, "array");
    CHECK(
        decs(c,
             "{\"event_id\":\"e\",\"user_id\":\"u\",\"user_id\":\"v\",\"ts\":5,\"type\":\"click\"}",
             &ev) == FD_REJ_JSON_SYNTAX);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\"} x", &ev) ==
          FD_REJ_JSON_SYNTAX);
    CHECK(
        decs(
            c,
            "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":99999999999999999999,\"type\":\"click\"}",
            &ev) == FD_REJ_JSON_SYNTAX);
    CHECK(decs(c,
               "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"price\":1e999}",
               &ev) == FD_REJ_JSON_SYNTAX);
    CHECK(decs(c,
               "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"price\":1e300}",
               &ev) == FD_REJ_BAD_PRICE); /* over input.max_price (test_extreme_numbers) */

    /* wrong types, one per field */
    struct {
        const char *field, *value;
    } wt[] = {{"event_id", "1"},    {"user_id", "true"}, {"ts", "1.5"},
              {"ts", "{}"},         {"type", "3"},       {"item_id", "5"},
              {"session_id", "[]"}, {"category", "{}"},  {"price", "\"1\""},
              {"price", "false"},   {"quantity", "1.5"}, {"quantity", "\"2\""},
              {"quantity", "null"}, {"user_id", "null"}};
    for (size_t i = 0; i < sizeof wt / sizeof wt[0]; i++) {
        char obj[512];
        snprintf(obj, sizeof obj,
                 "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\"");
        /* replace or add the field: later duplicate would be a syntax error, so build fresh */
        const char *base[][2] = {
            {"event_id", "\"e\""}, {"user_id", "\"u\""}, {"ts", "5"}, {"type", "\"click\""}};
        size_t o = 0;
        o += (size_t)snprintf(obj + o, sizeof obj - o, "{");
        int added = 0;
        for (int k = 0; k < 4; k++) {
            const char *val = strcmp(base[k][0], wt[i].field) == 0 ? wt[i].value : base[k][1];
            added |= strcmp(base[k][0], wt[i].field) == 0;
            o += (size_t)snprintf(obj + o, sizeof obj - o, "%s\"%s\":%s", k ? "," : "", base[k][0],
                                  val);
        }
        if (!added)
            o += (size_t)snprintf(obj + o, sizeof obj - o, ",\"%s\":%s", wt[i].field, wt[i].value);
        snprintf(obj + o, sizeof obj - o, "}");
        CHECK(decs(c, obj, &ev) == FD_REJ_FIELD_TYPE);
        CHECK_CONTAINS(err, wt[i].field);
    }
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1.5,\"type\":\"click\"}", &ev) ==
          FD_REJ_FIELD_TYPE);
    CHECK_CONTAINS(err, "got real");

    /* missing required fields */
    const char *miss[][2] = {
        {"event_id", "{\"user_id\":\"u\",\"ts\":5,\"type\":\"click\"}"},
        {"user_id", "{\"event_id\":\"e\",\"ts\":5,\"type\":\"click\"}"},
        {"ts", "{\"event_id\":\"e\",\"user_id\":\"u\",\"type\":\"click\"}"},
        {"type", "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5}"},
    };
    for (int i = 0; i < 4; i++) {
        CHECK(decs(c, miss[i][1], &ev) == FD_REJ_FIELD_MISSING);
        CHECK_CONTAINS(err, miss[i][0]);
    }
    CHECK(decs(c, "{}", &ev) == FD_REJ_FIELD_MISSING);

    /* values */
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"\",\"ts\":5,\"type\":\"click\"}", &ev) ==
          FD_REJ_BAD_USER_ID);
    CHECK_CONTAINS(err, "user_id");
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"a\\u0000b\",\"ts\":5,\"type\":\"click\"}",
               &ev) == FD_REJ_BAD_USER_ID);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"refund\"}", &ev) ==
          FD_REJ_UNKNOWN_TYPE);
    CHECK_CONTAINS(err, "refund");
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"\"}", &ev) ==
          FD_REJ_UNKNOWN_TYPE);
    CHECK(decs(c, "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"price\":-1}",
               &ev) == FD_REJ_BAD_PRICE);
    CHECK_CONTAINS(err, "price");
    const char *qty[] = {"0", "-3", "1000001", "9223372036854775807"};
    for (int i = 0; i < 4; i++) {
        snprintf(
            js, sizeof js,
            "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"quantity\":%s}",
            qty[i]);
        CHECK(decs(c, js, &ev) == FD_REJ_BAD_QUANTITY);
        CHECK_CONTAINS(err, "quantity");
    }

    /* field too long: 257 bytes, and 10 MB */
    size_t tenmb = 10u << 20;
    char *s = malloc(tenmb + 256);
    int hn = snprintf(s, 256, "{\"event_id\":\"e\",\"ts\":5,\"type\":\"click\",\"user_id\":\"");
    memset(s + hn, 'x', FD_ID_MAX + 1);
    strcpy(s + hn + FD_ID_MAX + 1, "\"}");
    CHECK(decs(c, s, &ev) == FD_REJ_FIELD_TOO_LONG);
    CHECK_CONTAINS(err, "user_id");
    hn = snprintf(
        s, 256,
        "{\"event_id\":\"e\",\"ts\":5,\"type\":\"click\",\"user_id\":\"u\",\"category\":\"");
    memset(s + hn, 'x', tenmb);
    strcpy(s + hn + tenmb, "\"}");
    CHECK(decs(big, s, &ev) == FD_REJ_FIELD_TOO_LONG);
    CHECK_CONTAINS(err, "category");
    CHECK(decs(c, s, &ev) == FD_REJ_TOO_LARGE);
    free(s);

    /* encode: NaN price cannot be written */
    fd_event e = minimal();
    e.has_price = true;
    e.price = NAN;
    const void *out;
    size_t n;
    CHECK(fd_codec_encode(c, &e, &out, &n) == -1);
    e = minimal();
    CHECK(fd_codec_encode(c, &e, &out, &n) == 0);
    CHECK(
        n ==
        strlen("{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"type\":\"cart\",\"quantity\":1}"));
    CHECK(memcmp(out,
                 "{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":1,\"type\":\"cart\",\"quantity\":1}",
                 n) == 0);
    fd_codec_destroy(c);
    fd_codec_destroy(big);
}

/* ---- the direct JSON path against jansson -------------------------------- */

/* Decode with the direct path and with jansson alone: the same answer, the
 * same event; returns whether the direct path took it. */
static int json_agree(fd_codec *c, const char *s, size_t n, const char *what)
{
    uint64_t f0, s0, f1, s1;
    fd_event a, b;
    char e1[512], e2[512];
    fd_codec_path_counts(c, &f0, &s0);
    fd_reject ra = fd_codec_decode(c, s, n, &a, e1, sizeof e1);
    fd_codec_path_counts(c, &f1, &s1);
    fd_codec_set_fast_path(c, 0);
    fd_reject rb = fd_codec_decode(c, s, n, &b, e2, sizeof e2);
    fd_codec_set_fast_path(c, 1);
    int ok = ra == rb && (ra != FD_OK || fd_event_equal(&a, &b)) && !strcmp(e1, e2);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "%s: direct %s (%s), jansson %s (%s)\n", what, fd_reject_name(ra), e1,
                fd_reject_name(rb), e2);
    /* the watermark's peek reads the same ts as the decode */
    int64_t ts;
    if (ra == FD_OK)
        CHECK(fd_codec_peek_ts(c, s, n, &ts) == 0 && ts == a.ts_ms);
    return f1 > f0;
}

static void json_fast_path(void)
{
    fd_codec *c = mk(FD_FMT_JSON, 1 << 20);
    CHECK(c != NULL);
    if (!c)
        return;
    /* The generator's events (what funnelctl gen --format json produces):
     * every one takes the direct path and agrees with jansson. */
    fd_gen_opts o;
    fd_gen_opts_default(&o);
    o.events = 20000;
    o.users = 2000;
    char gerr[256];
    fd_gen *g = fd_gen_new(&o, gerr, sizeof gerr);
    CHECK(g != NULL);
    fd_event ev;
    size_t taken = 0, total = 0;
    char copy[4096];
    while (g && fd_gen_next(g, &ev)) {
        const void *out;
        size_t n;
        CHECK(fd_codec_encode(c, &ev, &out, &n) == 0 && n < sizeof copy);
        memcpy(copy, out, n); /* encode's buffer is reused by decode's peek */
        taken += (size_t)json_agree(c, copy, n, "generated");
        total++;
    }
    fd_gen_destroy(g);
    CHECK(total == 20000 && taken == total);
    if (taken != total)
        fprintf(stderr, "direct JSON path took %zu of %zu generated events\n", taken, total);

    /* Edge cases: each either taken directly with jansson's answer, or
     * given to jansson (whose answer then stands). */
    static const struct {
        const char *json;
        int direct; /* 1: the direct path must take it */
    } cases[] = {
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"VIEW\"}", 1},
        {" \t\r\n{ \"event_id\" : \"e\" , \"user_id\":\"u\",\"ts\":\"2026-03-01T12:00:00.5+01:00\","
         "\"type\":\"cart\",\"price\":-0.0,\"quantity\":1000000} \n",
         1},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"purchase\",\"price\":1e-320}",
         1},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"purchase\",\"price\":2.5E+2}",
         1},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":-0,\"type\":\"click\"}", 1},
        {"{\"event_id\":\"\",\"user_id\":\"\",\"ts\":5,\"type\":\"click\"}", 1},
        /* given to jansson */
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"ts\":6}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\\u00e9\",\"ts\":5,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\\ud800\",\"ts\":5,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"\xc3\xa9\",\"ts\":5,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"\xc0\xaf\",\"ts\":5,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"x\":[1]}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5.0,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":05,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":9223372036854775808,\"type\":\"click\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"price\":1e400}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"price\":1.}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"quantity\":2.0}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"quantity\":0}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",\"item_id\":true}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"buy\"}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\",}", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\"} x", 0},
        {"{\"event_id\":\"e\",\"user_id\":\"u\",\"ts\":5,\"type\":\"click\"}{}", 0},
        {"{}", 0},
        {"[]", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "case %zu", i);
        int direct = json_agree(c, cases[i].json, strlen(cases[i].json), what);
        CHECK(direct == cases[i].direct);
        if (direct != cases[i].direct)
            fprintf(stderr, "case %zu: direct path %s it: %s\n", i, direct ? "took" : "gave up",
                    cases[i].json);
    }
    /* An id of FD_ID_MAX bytes is taken; one byte more goes to jansson,
     * which names the field. */
    char id[FD_ID_MAX + 2], js[FD_ID_MAX + 128];
    memset(id, 'a', sizeof id - 1);
    id[FD_ID_MAX] = '\0';
    snprintf(js, sizeof js, "{\"event_id\":\"e\",\"user_id\":\"%s\",\"ts\":5,\"type\":\"click\"}",
             id);
    CHECK(json_agree(c, js, strlen(js), "FD_ID_MAX") == 1);
    id[FD_ID_MAX] = 'a';
    id[FD_ID_MAX + 1] = '\0';
    snprintf(js, sizeof js, "{\"event_id\":\"e\",\"user_id\":\"%s\",\"ts\":5,\"type\":\"click\"}",
             id);
    CHECK(json_agree(c, js, strlen(js), "FD_ID_MAX+1") == 0);
    fd_codec_destroy(c);
}

static void formats(void)
{
    CHECK(fd_format_parse("avro") == FD_FMT_AVRO);
    CHECK(fd_format_parse("confluent-avro") == FD_FMT_CONFLUENT_AVRO);
    CHECK(fd_format_parse("json") == FD_FMT_JSON);
    CHECK(fd_format_parse("JSON") == -1);
    CHECK(fd_format_parse(NULL) == -1);
    CHECK_STR(fd_format_name(FD_FMT_AVRO), "avro");
    CHECK_STR(fd_format_name(FD_FMT_CONFLUENT_AVRO), "confluent-avro");
    CHECK_STR(fd_format_name(FD_FMT_JSON), "json");
    int64_t ms;
    const char *why;
    CHECK(fd_rfc3339_parse("2026-03-01T12:00:00Z", 20, &ms, &why) == 0 && ms == 1772366400000);
    CHECK(fd_rfc3339_parse("2026-03-01T12:00:00", 19, &ms, &why) == -1 && why != NULL);
}

int main(void)
{
    formats();
    round_trip(FD_FMT_AVRO);
    round_trip(FD_FMT_CONFLUENT_AVRO);
    round_trip(FD_FMT_JSON);
    avro_invalid();
    confluent();
    codec_new_errors();
    json_cases();
    json_fast_path();
    return check_report();
}
