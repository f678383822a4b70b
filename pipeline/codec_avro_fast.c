/*
 * codec_avro_fast.c - the canonical Event layout (conf/schemas/event.avsc)
 * decoded straight from the bytes, without Avro-C's generic value; and
 * fd_avro_peek_ts, which reads only the event time of such a body.
 * codec_avro_schema.c decides which writer schemas qualify (avro_dec.fast).
 *
 * Thread: everything here runs on the thread that owns the codec.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pipeline/codec_avro_internal.h"

/* The prescan accepted the bytes for the canonical layout: every length is
 * within the message, every union index valid, every int in range. Read
 * them in field order; the checks after decoding are those of decode_body. */
static int64_t fast_varint(const uint8_t *p, size_t n, size_t *pos)
{
    uint64_t v = 0;
    for (int i = 0; i < 10 && *pos < n; i++) {
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    return (int64_t)((v >> 1) ^ (~(v & 1) + 1));
}

/* An Avro double (8 bytes little-endian) at *pos; false when truncated. */
static bool read_double(const uint8_t *p, size_t n, size_t *pos, double *out)
{
    if (n - *pos < 8)
        return false;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--)
        bits = bits << 8 | p[*pos + (size_t)i];
    *pos += 8;
    memcpy(out, &bits, sizeof *out);
    return true;
}

static fd_reject fast_string(const uint8_t *p, size_t n, size_t *pos, int f, char *dst,
                             char *errstr, size_t errstr_size)
{
    int64_t len = fast_varint(p, n, pos);
    if (len < 0 || (uint64_t)len > n - *pos) /* cannot pass the prescan; kept for safety */
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: bad length",
                             fd_avro_field_names[f]);
    fd_reject r = fd_codec_copy_id(dst, fd_avro_field_names[f], (const char *)p + *pos, (size_t)len,
                                   errstr, errstr_size);
    *pos += (size_t)len;
    return r;
}

static fd_reject fast_opt_string(const uint8_t *p, size_t n, size_t *pos, int f, char *dst,
                                 bool *present, char *errstr, size_t errstr_size)
{
    if (fast_varint(p, n, pos) == 0) {
        *present = false;
        dst[0] = '\0';
        return FD_OK;
    }
    fd_reject r = fast_string(p, n, pos, f, dst, errstr, errstr_size);
    *present = r == FD_OK;
    return r;
}

fd_reject fd_avro_fast_decode(fd_avro_state *a, const uint8_t *p, size_t n, fd_event *ev,
                              char *errstr, size_t errstr_size)
{
    size_t pos = 0;
    fd_reject r;
    if ((r = fast_string(p, n, &pos, F_EVENT_ID, ev->event_id, errstr, errstr_size)) ||
        (r = fast_string(p, n, &pos, F_USER_ID, ev->user_id, errstr, errstr_size)))
        return r;
    ev->ts_ms = fast_varint(p, n, &pos);
    int64_t sym = fast_varint(p, n, &pos);
    if (sym < 0 || sym >= a->n_symbols || a->type_map[sym] < 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_TYPE,
                             "type: enum index %d is not click, cart or purchase", (int)sym);
    ev->type = (uint8_t)a->type_map[sym];
    if ((r = fast_opt_string(p, n, &pos, F_ITEM_ID, ev->item_id, &ev->has_item, errstr,
                             errstr_size)) ||
        (r = fast_opt_string(p, n, &pos, F_SESSION_ID, ev->session_id, &ev->has_session, errstr,
                             errstr_size)))
        return r;
    if (fast_varint(p, n, &pos) == 1) {
        if (!read_double(p, n, &pos, &ev->price))
            return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: price: truncated");
        ev->has_price = true;
    } else {
        ev->has_price = false;
        ev->price = 0;
    }
    int64_t q = fast_varint(p, n, &pos);
    /* category before the quantity check: the same order as decode_body */
    if ((r = fast_opt_string(p, n, &pos, F_CATEGORY, ev->category, &ev->has_category, errstr,
                             errstr_size)))
        return r;
    if (q < 1 || q > FD_QUANTITY_MAX)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                             "quantity: %lld is not a valid quantity (must be 1..%d)", (long long)q,
                             FD_QUANTITY_MAX);
    ev->quantity = (int32_t)q;
    return FD_OK;
}

/* The common case in one pass, without the schema walk of the prescan:
 * a well-formed record of the canonical layout that the checks below
 * accept. Varints are read with the prescan's length limits, lengths and
 * union indices checked as it checks them. Returns true with *ev filled
 * exactly as prescan + fd_avro_fast_decode would; false, with *ev in an unspecified
 * state, for anything else (malformed, truncated, trailing bytes, a reject),
 * which the caller then decodes again the long way for the exact reason. */
static bool strict_varint(const uint8_t *p, size_t n, size_t *pos, int maxbytes, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < maxbytes; i++) {
        if (*pos >= n)
            return false;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
            return true;
        }
    }
    return false;
}

static bool strict_string(const uint8_t *p, size_t n, size_t *pos, char *dst)
{
    int64_t len;
    if (!strict_varint(p, n, pos, 10, &len) || len < 0 || (uint64_t)len > n - *pos ||
        len > FD_ID_MAX || (len && memchr(p + *pos, '\0', (size_t)len)))
        return false;
    memcpy(dst, p + *pos, (size_t)len);
    dst[len] = '\0';
    *pos += (size_t)len;
    return true;
}

static bool strict_opt_string(const uint8_t *p, size_t n, size_t *pos, char *dst, bool *present)
{
    int64_t branch;
    if (!strict_varint(p, n, pos, 10, &branch) || (branch != 0 && branch != 1))
        return false;
    *present = branch == 1;
    if (!*present) {
        dst[0] = '\0';
        return true;
    }
    return strict_string(p, n, pos, dst);
}

bool fd_avro_strict_decode(const fd_avro_state *a, const uint8_t *p, size_t n, fd_event *ev)
{
    size_t pos = 0;
    int64_t v;
    if (!strict_string(p, n, &pos, ev->event_id) || !strict_string(p, n, &pos, ev->user_id) ||
        !strict_varint(p, n, &pos, 10, &ev->ts_ms) || !strict_varint(p, n, &pos, 5, &v) || v < 0 ||
        v >= a->n_symbols || a->type_map[v] < 0)
        return false;
    ev->type = (uint8_t)a->type_map[v];
    if (!strict_opt_string(p, n, &pos, ev->item_id, &ev->has_item) ||
        !strict_opt_string(p, n, &pos, ev->session_id, &ev->has_session) ||
        !strict_varint(p, n, &pos, 10, &v) || (v != 0 && v != 1))
        return false;
    if (v == 1) {
        if (!read_double(p, n, &pos, &ev->price))
            return false;
        ev->has_price = true;
    } else {
        ev->has_price = false;
        ev->price = 0;
    }
    if (!strict_varint(p, n, &pos, 5, &v) || v < 1 || v > FD_QUANTITY_MAX)
        return false;
    ev->quantity = (int32_t)v;
    return strict_opt_string(p, n, &pos, ev->category, &ev->has_category) && pos == n;
}

/* The event time of a canonical-layout body without decoding the rest:
 * skip event_id and user_id, read ts. 0 ok, 1 not the canonical layout (or
 * the direct decoder is off), -1 malformed. */
static int peek_body(const fd_codec *c, const avro_dec *d, const uint8_t *p, size_t n, int64_t *ts)
{
    if (!d->fast || !c->fast_path)
        return 1;
    size_t pos = 0;
    for (int f = 0; f < 2; f++) {
        if (pos >= n)
            return -1;
        int64_t len = fast_varint(p, n, &pos);
        if (len < 0 || (uint64_t)len > n - pos)
            return -1;
        pos += (size_t)len;
    }
    if (pos >= n)
        return -1;
    *ts = fast_varint(p, n, &pos);
    return 0;
}

int fd_avro_peek_ts(const fd_codec *c, const uint8_t *p, size_t n, int64_t *ts)
{
    const fd_avro_state *a = c->avro;
    if (c->format == FD_FMT_AVRO)
        return peek_body(c, &a->plain, p, n, ts);
    if (n < 5 || p[0] != 0x00)
        return -1;
    int32_t id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
                           (uint32_t)p[4]);
    for (size_t i = 0; i < a->n_ids; i++)
        if (a->ids[i].id == id)
            return peek_body(c, &a->ids[i], p + 5, n - 5, ts);
    return -1;
}
