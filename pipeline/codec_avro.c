/*
 * codec_avro.c - plain and Confluent-framed Avro event bodies (Avro-C):
 * the prescan, the generic decode and the decode entry points. Schema
 * set-up is in codec_avro_schema.c, the canonical-layout decoder in
 * codec_avro_fast.c, encode in codec_avro_encode.c.
 *
 * Why it is built this way:
 *
 * - Avro-C's generic values are reused: one value per known writer schema,
 *   created in fd_codec_new, filled by avro_value_read for every message.
 *   That keeps the per-event cost at what Avro-C itself allocates (string
 *   copies) instead of building and tearing down a value tree each time.
 *
 * - Avro-C trusts length prefixes: a corrupt varint can make it malloc
 *   gigabytes for one string, it leaks the buffer when the read then fails,
 *   and it does not check enum indexes. So before Avro-C sees a message we
 *   walk it once ourselves against the writer schema (prescan): every
 *   varint is bounded, every string/bytes length and array count is checked
 *   against the bytes actually left, union and enum indexes are checked,
 *   nesting depth is capped, and the walk tells us where the record ends,
 *   which is how trailing garbage is detected. Only a message the prescan
 *   accepts is handed to avro_value_read, so Avro-C can never allocate more
 *   than the message size and never fails half way through a string.
 *
 * - Schema resolution (Confluent ids mapping to older writer schemas) uses
 *   Avro-C's resolved reader, which wraps a writer-schema value and presents
 *   it in the reader schema. Avro-C 1.11 has two gaps we work around at
 *   codec_new, never per message: it does not implement reader defaults
 *   (it refuses a reader field missing from the writer), and it crashes
 *   instead of returning an error on some incompatible pairs. So we check
 *   compatibility ourselves first (names, types, promotions, enum symbols),
 *   then resolve against a *projection* of the reader schema that leaves out
 *   the reader fields the writer lacks; those fields take the reader
 *   schema's defaults from a pre-built event template.
 *
 * Thread: everything here runs on the thread that owns the codec.
 */
#include <avro.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/codec_avro_internal.h"

/* ---- prescan ------------------------------------------------------------ */

typedef struct scan {
    const uint8_t *p;
    size_t n, pos, base; /* base: offset of the body in the message */
    const char *field;   /* top-level field being read */
    char *err;
    size_t errsz;
    fd_reject rej;
} scan;

static int scan_fail(scan *s, fd_reject r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int scan_fail(scan *s, fd_reject r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->rej = r;
    fd_codec_fail(s->err, s->errsz, r, "avro: %s%s%s at byte %zu", s->field ? s->field : "",
                  s->field ? ": " : "", msg, s->base + s->pos);
    return -1;
}

static int scan_varint(scan *s, int64_t *out, int maxbytes)
{
    uint64_t v = 0;
    for (int i = 0;; i++) {
        if (i == maxbytes)
            return scan_fail(s, FD_REJ_AVRO, "varint longer than %d bytes", maxbytes);
        if (s->pos >= s->n)
            return scan_fail(s, FD_REJ_AVRO, "truncated varint");
        uint8_t b = s->p[s->pos++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return 0;
}

static int scan_skip(scan *s, int64_t len, const char *what)
{
    if (len < 0)
        return scan_fail(s, FD_REJ_AVRO, "negative %s length %lld", what, (long long)len);
    if ((uint64_t)len > s->n - s->pos)
        return scan_fail(s, FD_REJ_AVRO, "%s of %lld bytes but only %zu bytes left (truncated)",
                         what, (long long)len, s->n - s->pos);
    s->pos += (size_t)len;
    return 0;
}

static int scan_value(scan *s, avro_schema_t sc, int depth)
{
    int64_t v = 0;
    sc = deref(sc);
    if (depth > SCAN_MAX_DEPTH)
        return scan_fail(s, FD_REJ_AVRO, "nested deeper than %d", SCAN_MAX_DEPTH);
    switch (avro_typeof(sc)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        return scan_skip(s, 1, "boolean");
    case AVRO_INT32:
        if (scan_varint(s, &v, 5) != 0)
            return -1;
        if (v < INT32_MIN || v > INT32_MAX)
            return scan_fail(s, FD_REJ_AVRO, "int %lld out of range", (long long)v);
        return 0;
    case AVRO_INT64:
        return scan_varint(s, &v, 10);
    case AVRO_FLOAT:
        return scan_skip(s, 4, "float");
    case AVRO_DOUBLE:
        return scan_skip(s, 8, "double");
    case AVRO_STRING:
    case AVRO_BYTES:
        if (scan_varint(s, &v, 10) != 0)
            return -1;
        return scan_skip(s, v, avro_typeof(sc) == AVRO_STRING ? "string" : "bytes");
    case AVRO_FIXED:
        return scan_skip(s, avro_schema_fixed_size(sc), "fixed");
    case AVRO_ENUM: {
        size_t at = s->pos;
        if (scan_varint(s, &v, 5) != 0)
            return -1;
        int64_t nsym = (int64_t)avro_schema_enum_number_of_symbols(sc);
        if (v < 0 || v >= nsym) {
            s->pos = at;
            return scan_fail(
                s, s->field && strcmp(s->field, "type") == 0 ? FD_REJ_UNKNOWN_TYPE : FD_REJ_AVRO,
                "enum index %lld out of range (%lld symbols)", (long long)v, (long long)nsym);
        }
        return 0;
    }
    case AVRO_UNION: {
        size_t at = s->pos;
        if (scan_varint(s, &v, 10) != 0)
            return -1;
        if (v < 0 || v >= (int64_t)avro_schema_union_size(sc)) {
            s->pos = at;
            return scan_fail(s, FD_REJ_AVRO, "union branch %lld out of range (%zu branches)",
                             (long long)v, avro_schema_union_size(sc));
        }
        return scan_value(s, avro_schema_union_branch(sc, v), depth + 1);
    }
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(sc); i++) {
            if (depth == 0)
                s->field = avro_schema_record_field_name(sc, (int)i);
            if (scan_value(s, avro_schema_record_field_get_by_index(sc, (int)i), depth + 1) != 0)
                return -1;
        }
        if (depth == 0)
            s->field = NULL;
        return 0;
    case AVRO_ARRAY:
    case AVRO_MAP:
        for (;;) {
            if (scan_varint(s, &v, 10) != 0)
                return -1;
            if (v == 0)
                return 0;
            if (v < 0) {
                int64_t bytes;
                if (v == INT64_MIN || scan_varint(s, &bytes, 10) != 0)
                    return v == INT64_MIN ? scan_fail(s, FD_REJ_AVRO, "bad block count") : -1;
                v = -v;
            }
            /* every item takes at least one byte, except nulls: cap those too */
            if ((uint64_t)v > s->n - s->pos + 1)
                return scan_fail(s, FD_REJ_AVRO, "block of %lld items but only %zu bytes left",
                                 (long long)v, s->n - s->pos);
            for (int64_t i = 0; i < v; i++) {
                if (avro_typeof(sc) == AVRO_MAP) {
                    int64_t kl = 0;
                    if (scan_varint(s, &kl, 10) != 0 || scan_skip(s, kl, "map key") != 0)
                        return -1;
                    if (scan_value(s, avro_schema_map_values(sc), depth + 1) != 0)
                        return -1;
                } else if (scan_value(s, avro_schema_array_items(sc), depth + 1) != 0) {
                    return -1;
                }
            }
        }
    default:
        return scan_fail(s, FD_REJ_AVRO, "unsupported schema type");
    }
}

/* ---- decode ------------------------------------------------------------- */

static const char *avro_type_str(avro_type_t t)
{
    switch (t) {
    case AVRO_STRING:
        return "string";
    case AVRO_BYTES:
        return "bytes";
    case AVRO_INT32:
        return "int";
    case AVRO_INT64:
        return "long";
    case AVRO_FLOAT:
        return "float";
    case AVRO_DOUBLE:
        return "double";
    case AVRO_BOOLEAN:
        return "boolean";
    case AVRO_NULL:
        return "null";
    case AVRO_RECORD:
        return "record";
    case AVRO_ENUM:
        return "enum";
    case AVRO_FIXED:
        return "fixed";
    case AVRO_MAP:
        return "map";
    case AVRO_ARRAY:
        return "array";
    case AVRO_UNION:
        return "union";
    default:
        return "link";
    }
}

/* Field f of the view, with a union unwrapped to its current branch. */
static int get_field(avro_dec *d, int f, avro_value_t *out, avro_type_t *t)
{
    avro_value_t v;
    if (avro_value_get_by_index(d->view, d->idx[f], &v, NULL) != 0)
        return -1;
    *t = avro_value_get_type(&v);
    if (*t == AVRO_UNION) {
        if (avro_value_get_current_branch(&v, out) != 0)
            return -1;
        *t = avro_value_get_type(out);
        return 0;
    }
    *out = v;
    return 0;
}

static fd_reject get_string(avro_dec *d, int f, char *dst, bool *present, char *errstr,
                            size_t errstr_size)
{
    avro_value_t v;
    avro_type_t t;
    if (get_field(d, f, &v, &t) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s",
                             fd_avro_field_names[f], avro_strerror());
    if (t == AVRO_NULL && present) {
        *present = false;
        dst[0] = '\0';
        return FD_OK;
    }
    if (t != AVRO_STRING)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE,
                             "%s: Avro %s where a string was expected", fd_avro_field_names[f],
                             avro_type_str(t));
    const char *s = "";
    size_t size = 0;
    if (avro_value_get_string(&v, &s, &size) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s",
                             fd_avro_field_names[f], avro_strerror());
    fd_reject r =
        fd_codec_copy_id(dst, fd_avro_field_names[f], s, size ? size - 1 : 0, errstr, errstr_size);
    if (r == FD_OK && present)
        *present = true;
    return r;
}

static fd_reject get_number(avro_dec *d, int f, double *dv, int64_t *lv, bool *present,
                            char *errstr, size_t errstr_size)
{
    avro_value_t v;
    avro_type_t t;
    if (get_field(d, f, &v, &t) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s",
                             fd_avro_field_names[f], avro_strerror());
    *present = true;
    int rc = 0;
    switch (t) {
    case AVRO_NULL:
        *present = false;
        return FD_OK;
    case AVRO_INT32: {
        int32_t i = 0;
        rc = avro_value_get_int(&v, &i);
        *lv = i;
        *dv = i;
        break;
    }
    case AVRO_INT64:
        rc = avro_value_get_long(&v, lv);
        *dv = (double)*lv;
        break;
    case AVRO_FLOAT: {
        float x = 0;
        rc = avro_value_get_float(&v, &x);
        *dv = x;
        *lv = 0;
        break;
    }
    case AVRO_DOUBLE:
        rc = avro_value_get_double(&v, dv);
        *lv = 0;
        break;
    default:
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE,
                             "%s: Avro %s where a number was expected", fd_avro_field_names[f],
                             avro_type_str(t));
    }
    if (rc != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s",
                             fd_avro_field_names[f], avro_strerror());
    if (f != F_PRICE && (t == AVRO_FLOAT || t == AVRO_DOUBLE))
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE,
                             "%s: Avro %s where an integer was expected", fd_avro_field_names[f],
                             avro_type_str(t));
    return FD_OK;
}

static fd_reject decode_body(fd_codec *c, avro_dec *d, const uint8_t *p, size_t n, size_t base,
                             fd_event *ev, char *errstr, size_t errstr_size)
{
    fd_avro_state *a = c->avro;
    if (d->fast && c->fast_path) {
        if (fd_avro_strict_decode(a, p, n, ev))
            return FD_OK;
        /* Not the common case: start again from a clean event for the
         * prescan and its exact reason. */
        fd_event_init(ev);
    }
    scan s = {.p = p, .n = n, .base = base, .err = errstr, .errsz = errstr_size};
    if (scan_value(&s, d->wschema, 0) != 0)
        return s.rej;
    if (s.pos != n)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO,
                             "avro: %zu trailing bytes after the record (record ends at byte "
                             "%zu of %zu)",
                             n - s.pos, base + s.pos, base + n);
    if (d->fast && c->fast_path)
        return fd_avro_fast_decode(a, p, n, ev, errstr, errstr_size);
    avro_reader_memory_set_source(a->reader, (const char *)p, (int64_t)n);
    if (avro_value_read(a->reader, &d->wvalue) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s", avro_strerror());
    if (d->projected)
        *ev = d->tmpl;

    fd_reject r;
    if ((r = get_string(d, F_EVENT_ID, ev->event_id, NULL, errstr, errstr_size)) ||
        (r = get_string(d, F_USER_ID, ev->user_id, NULL, errstr, errstr_size)))
        return r;
    double dv;
    int64_t lv;
    bool present;
    if ((r = get_number(d, F_TS, &dv, &lv, &present, errstr, errstr_size)))
        return r;
    if (!present)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_MISSING, "ts: null");
    ev->ts_ms = lv;

    avro_value_t tv;
    avro_type_t tt;
    int sym = -1;
    if (get_field(d, F_TYPE, &tv, &tt) != 0 || tt != AVRO_ENUM || avro_value_get_enum(&tv, &sym))
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE, "type: not an Avro enum");
    if (sym < 0 || sym >= a->n_symbols || a->type_map[sym] < 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_TYPE,
                             "type: enum index %d is not click, cart or purchase", sym);
    ev->type = (uint8_t)a->type_map[sym];

    if (d->idx[F_ITEM_ID] >= 0 &&
        (r = get_string(d, F_ITEM_ID, ev->item_id, &ev->has_item, errstr, errstr_size)))
        return r;
    if (d->idx[F_SESSION_ID] >= 0 &&
        (r = get_string(d, F_SESSION_ID, ev->session_id, &ev->has_session, errstr, errstr_size)))
        return r;
    if (d->idx[F_CATEGORY] >= 0 &&
        (r = get_string(d, F_CATEGORY, ev->category, &ev->has_category, errstr, errstr_size)))
        return r;
    if (d->idx[F_PRICE] >= 0) {
        if ((r = get_number(d, F_PRICE, &dv, &lv, &present, errstr, errstr_size)))
            return r;
        ev->has_price = present;
        ev->price = present ? dv : 0;
    }
    if (d->idx[F_QUANTITY] >= 0) {
        if ((r = get_number(d, F_QUANTITY, &dv, &lv, &present, errstr, errstr_size)))
            return r;
        if (present) {
            if (lv < 1 || lv > FD_QUANTITY_MAX) /* before the cast to int32 */
                return fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                                     "quantity: %lld is not a valid quantity (must be 1..%d)",
                                     (long long)lv, FD_QUANTITY_MAX);
            ev->quantity = (int32_t)lv;
        }
    }
    return FD_OK;
}

fd_reject fd_avro_decode(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev, char *errstr,
                         size_t errstr_size)
{
    return decode_body(c, &c->avro->plain, p, n, 0, ev, errstr, errstr_size);
}

fd_reject fd_avro_decode_confluent(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev,
                                   char *errstr, size_t errstr_size)
{
    if (n >= 1 && p[0] != 0x00)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_MAGIC,
                             "confluent: byte 0 is 0x%02x, expected 0x00", p[0]);
    if (n < 5)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO,
                             "confluent: truncated header (%zu bytes, need 5)", n);
    int32_t id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
                           (uint32_t)p[4]);
    fd_avro_state *a = c->avro;
    for (size_t i = 0; i < a->n_ids; i++)
        if (a->ids[i].id == id)
            return decode_body(c, &a->ids[i], p + 5, n - 5, 5, ev, errstr, errstr_size);
    return fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_SCHEMA,
                         "confluent: schema id %d (bytes 1..4) is not in input.schema_ids",
                         (int)id);
}
