/*
 * codec_avro_encode.c - fd_event to plain or Confluent-framed Avro, through
 * the reader schema's reused generic value (set up in codec_avro_schema.c).
 *
 * Thread: everything here runs on the thread that owns the codec.
 */
#include <avro.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec_avro_internal.h"

/* ---- encode ------------------------------------------------------------- */

static int set_string(avro_value_t *rec, int idx, const char *s)
{
    avro_value_t f;
    if (avro_value_get_by_index(rec, idx, &f, NULL) != 0)
        return -1;
    return avro_value_set_string_len(&f, s, strlen(s) + 1);
}

static int set_optional(fd_avro_state *a, int fld, bool present, const char *s, double d)
{
    if (a->ridx[fld] < 0)
        return 0;
    avro_value_t f, b;
    if (avro_value_get_by_index(&a->enc_value, a->ridx[fld], &f, NULL) != 0)
        return -1;
    if (a->val_branch[fld] < 0) /* not a union: plain field */
        b = f;
    else if (!present)
        return a->null_branch[fld] < 0 ? -1
                                       : (avro_value_set_branch(&f, a->null_branch[fld], &b) ||
                                          avro_value_set_null(&b));
    else if (avro_value_set_branch(&f, a->val_branch[fld], &b) != 0)
        return -1;
    if (s)
        return avro_value_set_string_len(&b, s, strlen(s) + 1);
    return avro_value_set_double(&b, d);
}

/* See codec.h. Output lives in a->ebuf until the next call. */
int fd_avro_encode(fd_codec *c, const fd_event *ev, int framed, const void **out, size_t *out_len)
{
    fd_avro_state *a = c->avro;
    avro_value_t *v = &a->enc_value;
    avro_value_t f;
    if (ev->type >= FD_EV__COUNT || a->type_rev[ev->type] < 0)
        return -1;
    if (set_string(v, a->ridx[F_EVENT_ID], ev->event_id) ||
        set_string(v, a->ridx[F_USER_ID], ev->user_id) ||
        avro_value_get_by_index(v, a->ridx[F_TS], &f, NULL) || avro_value_set_long(&f, ev->ts_ms) ||
        avro_value_get_by_index(v, a->ridx[F_TYPE], &f, NULL) ||
        avro_value_set_enum(&f, a->type_rev[ev->type]))
        return -1;
    if (set_optional(a, F_ITEM_ID, ev->has_item, ev->item_id, 0) ||
        set_optional(a, F_SESSION_ID, ev->has_session, ev->session_id, 0) ||
        set_optional(a, F_CATEGORY, ev->has_category, ev->category, 0) ||
        set_optional(a, F_PRICE, ev->has_price, NULL, ev->price))
        return -1;
    if (a->ridx[F_QUANTITY] >= 0 && (avro_value_get_by_index(v, a->ridx[F_QUANTITY], &f, NULL) ||
                                     avro_value_set_int(&f, ev->quantity)))
        return -1;
    size_t size = 0;
    if (avro_value_sizeof(v, &size) != 0)
        return -1;
    size_t need = size + 5;
    if (need > a->ecap) {
        size_t cap = a->ecap ? a->ecap : 256;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(a->ebuf, cap);
        if (!nb)
            return -1;
        a->ebuf = nb;
        a->ecap = cap;
    }
    size_t off = 0;
    if (framed) {
        uint32_t id = (uint32_t)c->encode_schema_id;
        a->ebuf[0] = 0;
        a->ebuf[1] = (char)(id >> 24);
        a->ebuf[2] = (char)(id >> 16);
        a->ebuf[3] = (char)(id >> 8);
        a->ebuf[4] = (char)id;
        off = 5;
    }
    avro_writer_memory_set_dest(a->writer, a->ebuf + off, (int64_t)(a->ecap - off));
    if (avro_value_write(a->writer, v) != 0)
        return -1;
    *out = a->ebuf;
    *out_len = off + (size_t)avro_writer_tell(a->writer);
    return 0;
}
