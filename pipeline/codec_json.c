/*
 * codec_json.c - JSON events (jansson) and the RFC 3339 timestamp parser.
 *
 * Why it is built this way: JSON is the format people type by hand and
 * send from scripts, so the decoder is strict about what it means and
 * explicit when it refuses. Choices, documented in docs/EVENTS.md:
 *
 * - The common layout (a flat object of our keys, ASCII strings) is read
 *   without jansson by codec_json_fast.c; everything else comes here.
 * - json_loadb with JSON_REJECT_DUPLICATES: {"user_id":"a","user_id":"b"}
 *   is ambiguous, so it is a json_syntax reject rather than last-one-wins.
 *   JSON_ALLOW_NUL so "\u0000" reaches our own check and is reported as
 *   bad_user_id / field_type naming the field. jansson caps nesting depth
 *   (2048) itself; an event is flat, so depth never matters otherwise.
 * - Unknown extra fields are ignored (producers may add fields first).
 * - type is case-insensitive ("Click", "PURCHASE"); "view" means click.
 * - ts is an integer (epoch ms) or an RFC 3339 string; we parse RFC 3339
 *   ourselves with a days-from-civil formula, so neither the locale, the
 *   TZ variable nor timegm() are involved. Fractions beyond milliseconds
 *   are truncated.
 * - Encoding writes a compact object with snprintf-style appends into a
 *   buffer owned by the codec (no allocation per call); absent optionals
 *   are omitted, ts is an integer, price uses %.17g so it round-trips.
 *
 * Thread: the thread that owns the codec.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec_internal.h"

/* ---- RFC 3339 ----------------------------------------------------------- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/*
 * Parse "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" (T may be t or a
 * space, Z may be z) into epoch ms. A leap second (:60) is accepted and
 * counts as the next second. Returns 0 or -1 with a reason in why.
 */
int fd_rfc3339_parse(const char *s, size_t len, int64_t *out_ms, const char **why)
{
    int Y, M, D, h, mi, sec, ms = 0;
    *why = "expected YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)";
    if (len < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    size_t i = 19;
    if (i < len && s[i] == '.') {
        i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (i - start < 3)
                ms = ms * 10 + (s[i] - '0');
            i++;
        }
        if (i == start) {
            *why = "empty fraction of a second";
            return -1;
        }
        for (size_t k = i - start; k < 3; k++)
            ms *= 10;
    }
    int off_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (len - i < 6 || digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            digits(s + i + 4, 2, &om) || oh > 23 || om > 59) {
            *why = "bad UTC offset (expected +HH:MM or -HH:MM)";
            return -1;
        }
        off_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        *why = "missing time zone (Z or +HH:MM)";
        return -1;
    }
    if (i != len) {
        *why = "trailing characters";
        return -1;
    }
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || (M == 2 && D == 29 && !leap)) {
        *why = "no such date";
        return -1;
    }
    if (h > 23 || mi > 59 || sec > 60) {
        *why = "no such time of day";
        return -1;
    }
    int64_t secs = days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + sec - off_min * 60;
    *out_ms = secs * 1000 + ms;
    return 0;
}

/* ---- decode ------------------------------------------------------------- */

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return "null";
    }
}

static fd_reject wrong_type(const char *field, const json_t *v, const char *want, char *errstr,
                            size_t errstr_size)
{
    return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE, "%s: expected %s, got %s", field,
                         want, jtype(v));
}

/* Required string (opt == NULL) or optional string-or-null. */
static fd_reject get_str(json_t *o, const char *field, char *dst, bool *present, char *errstr,
                         size_t errstr_size)
{
    json_t *v = json_object_get(o, field);
    if (!v || (present && json_is_null(v))) {
        if (present) {
            *present = false;
            return FD_OK;
        }
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_MISSING,
                             "%s: required field is missing", field);
    }
    if (!json_is_string(v))
        return wrong_type(field, v, present ? "string or null" : "string", errstr, errstr_size);
    fd_reject r = fd_codec_copy_id(dst, field, json_string_value(v), json_string_length(v), errstr,
                                   errstr_size);
    if (r == FD_OK && present)
        *present = true;
    return r;
}

fd_reject fd_json_decode(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev, char *errstr,
                         size_t errstr_size)
{
    if (c->fast_path) {
        if (fd_json_fast_decode(p, n, ev) == 0) {
            c->fast_decodes++;
            return FD_OK;
        }
        fd_event_init(ev); /* the fast path may have filled some fields */
    }
    c->slow_decodes++;
    json_error_t jerr;
    json_t *o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!o)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_JSON_SYNTAX,
                             "json: line %d column %d (byte %d): %s", jerr.line, jerr.column,
                             jerr.position, jerr.text);
    fd_reject r = FD_OK;
    if (!json_is_object(o)) {
        r = fd_codec_fail(errstr, errstr_size, FD_REJ_JSON_SYNTAX,
                          "json: top level is %s, expected an object", jtype(o));
        goto out;
    }
    if ((r = get_str(o, "event_id", ev->event_id, NULL, errstr, errstr_size)) ||
        (r = get_str(o, "user_id", ev->user_id, NULL, errstr, errstr_size)))
        goto out;

    json_t *v = json_object_get(o, "ts");
    if (!v) {
        r = fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_MISSING,
                          "ts: required field is missing");
        goto out;
    }
    if (json_is_integer(v)) {
        ev->ts_ms = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *why;
        if (fd_rfc3339_parse(json_string_value(v), json_string_length(v), &ev->ts_ms, &why)) {
            r = fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_TS,
                              "ts: \"%.64s\" is not an RFC 3339 timestamp: %s",
                              json_string_value(v), why);
            goto out;
        }
    } else {
        r = wrong_type("ts", v, "integer epoch ms or RFC 3339 string", errstr, errstr_size);
        goto out;
    }

    v = json_object_get(o, "type");
    if (!v) {
        r = fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_MISSING,
                          "type: required field is missing");
        goto out;
    }
    if (!json_is_string(v)) {
        r = wrong_type("type", v, "string", errstr, errstr_size);
        goto out;
    }
    const char *ts = json_string_value(v);
    size_t tl = json_string_length(v);
    int t = fd_json_event_type(ts, tl);
    if (t >= 0)
        ev->type = (fd_event_type)t;
    else {
        r = fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_TYPE,
                          "type: \"%.64s\" is not click, cart, purchase or view", ts);
        goto out;
    }

    if ((r = get_str(o, "item_id", ev->item_id, &ev->has_item, errstr, errstr_size)) ||
        (r = get_str(o, "session_id", ev->session_id, &ev->has_session, errstr, errstr_size)) ||
        (r = get_str(o, "category", ev->category, &ev->has_category, errstr, errstr_size)))
        goto out;

    v = json_object_get(o, "price");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v)) {
            r = wrong_type("price", v, "number or null", errstr, errstr_size);
            goto out;
        }
        ev->price = json_number_value(v);
        ev->has_price = true;
    }
    v = json_object_get(o, "quantity");
    if (v) {
        if (!json_is_integer(v)) {
            r = wrong_type("quantity", v, "integer", errstr, errstr_size);
            goto out;
        }
        json_int_t q = json_integer_value(v);
        if (q < 1 || q > FD_QUANTITY_MAX) { /* before the cast to int32 */
            r = fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                              "quantity: %" JSON_INTEGER_FORMAT
                              " is not a valid quantity (must be 1..%d)",
                              q, FD_QUANTITY_MAX);
            goto out;
        }
        ev->quantity = (int32_t)q;
    }
out:
    json_decref(o);
    return r;
}

/* ---- encode ------------------------------------------------------------- */

typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf;

static void put(jbuf *b, const char *s, size_t n)
{
    if (b->len + n <= b->cap)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_str(jbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(b, "\"", 1);
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        if (*q == '"' || *q == '\\') {
            esc[1] = (char)*q;
            put(b, esc, 2);
        } else if (*q < 0x20) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*q >> 4];
            esc[5] = hex[*q & 15];
            put(b, esc, 6);
        } else {
            put(b, (const char *)q, 1);
        }
    }
    put(b, "\"", 1);
}

static void put_key_str(jbuf *b, const char *key, const char *val)
{
    put(b, ",\"", 2);
    put(b, key, strlen(key));
    put(b, "\":", 2);
    put_str(b, val);
}

/* See codec.h. Output lives in c->out until the next call. */
int fd_json_encode(fd_codec *c, const fd_event *ev, const void **out, size_t *out_len)
{
    /* 5 ids of at most FD_ID_MAX bytes, 6 bytes per escaped byte, + keys and
     * numbers: a fixed bound, so one allocation for the codec's life. */
    size_t cap = 5 * (FD_ID_MAX * 6 + 2) + 512;
    if (ev->type >= FD_EV__COUNT || (ev->has_price && !isfinite(ev->price)))
        return -1;
    if (!c->out) {
        c->out = malloc(cap);
        if (!c->out)
            return -1;
        c->out_cap = cap;
    }
    jbuf b = {c->out, 0, c->out_cap};
    char num[64];
    put(&b, "{\"event_id\":", 12);
    put_str(&b, ev->event_id);
    put_key_str(&b, "user_id", ev->user_id);
    int n = snprintf(num, sizeof num, ",\"ts\":%" PRId64 ",\"type\":\"%s\"", ev->ts_ms,
                     fd_event_type_name(ev->type));
    put(&b, num, (size_t)n);
    if (ev->has_item)
        put_key_str(&b, "item_id", ev->item_id);
    if (ev->has_session)
        put_key_str(&b, "session_id", ev->session_id);
    if (ev->has_category)
        put_key_str(&b, "category", ev->category);
    if (ev->has_price) {
        n = snprintf(num, sizeof num, ",\"price\":%.17g", ev->price);
        put(&b, num, (size_t)n);
    }
    n = snprintf(num, sizeof num, ",\"quantity\":%" PRId32 "}", ev->quantity);
    put(&b, num, (size_t)n);
    if (b.len > b.cap)
        return -1; /* ids not NUL-terminated within FD_ID_MAX: cannot happen */
    *out = c->out;
    *out_len = b.len;
    return 0;
}
