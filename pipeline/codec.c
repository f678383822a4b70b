/*
 * codec.c - the front door of the event codecs: format names, codec
 * lifetime, and the checks every format shares.
 *
 * Why split this way: each wire format has its own file (codec_avro.c for
 * plain and Confluent-framed Avro, codec_json.c for JSON) and knows only how
 * to turn bytes into an fd_event. What must hold for every format lives
 * here, once: the size limit is enforced before any parser sees a byte (so a
 * hostile 100 MB message costs nothing), the event is reset to schema
 * defaults before decoding, and fd_event_validate runs after decoding (every
 * check but the future one, which needs the partition's reference time the
 * caller owns; with the codec's input.max_price). A codec is single-threaded state: the Avro
 * values, readers and the encode buffer are reused from call to call, so the hot path does not
 * allocate beyond what Avro-C and jansson do internally.
 */
#include "pipeline/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec_internal.h"

/* Any thread. */
int fd_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "avro") == 0)
        return FD_FMT_AVRO;
    if (strcmp(s, "confluent-avro") == 0)
        return FD_FMT_CONFLUENT_AVRO;
    if (strcmp(s, "json") == 0)
        return FD_FMT_JSON;
    return -1;
}

/* Any thread; never NULL. */
const char *fd_format_name(fd_format f)
{
    switch (f) {
    case FD_FMT_AVRO:
        return "avro";
    case FD_FMT_CONFLUENT_AVRO:
        return "confluent-avro";
    case FD_FMT_JSON:
        return "json";
    }
    return "unknown";
}

fd_reject fd_codec_fail(char *errstr, size_t errstr_size, fd_reject r, const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return r;
}

fd_reject fd_codec_copy_id(char dst[FD_ID_MAX + 1], const char *field, const char *s, size_t len,
                           char *errstr, size_t errstr_size)
{
    if (len > FD_ID_MAX)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TOO_LONG,
                             "%s: %zu bytes is longer than the maximum of %d", field, len,
                             FD_ID_MAX);
    if (len && memchr(s, '\0', len))
        return fd_codec_fail(errstr, errstr_size,
                             strcmp(field, "user_id") == 0 ? FD_REJ_BAD_USER_ID : FD_REJ_FIELD_TYPE,
                             "%s: string contains a NUL byte", field);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return FD_OK;
}

/* See codec.h. Caller frees with fd_codec_destroy(). */
fd_codec *fd_codec_new(const fd_codec_opts *opts, char *errstr, size_t errstr_size)
{
    if (!opts) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "codec: no options");
        return NULL;
    }
    if (fd_format_name(opts->format)[0] == 'u') {
        fd_codec_fail(errstr, errstr_size, FD_OK, "codec: unknown format %d", (int)opts->format);
        return NULL;
    }
    if (opts->max_price < 0 || opts->max_price > FD_MAX_PRICE_LIMIT) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "codec: max_price %lld is not 1..%lld",
                      (long long)opts->max_price, FD_MAX_PRICE_LIMIT);
        return NULL;
    }
    fd_codec *c = calloc(1, sizeof *c);
    if (!c) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "codec: out of memory");
        return NULL;
    }
    c->format = opts->format;
    c->max_message_bytes = opts->max_message_bytes;
    c->max_price = opts->max_price ? opts->max_price : FD_MAX_PRICE_DEFAULT;
    c->encode_schema_id = opts->encode_schema_id;
    c->fast_path = 1;
    if (c->format != FD_FMT_JSON && fd_avro_init(c, opts, errstr, errstr_size) != 0) {
        fd_codec_destroy(c);
        return NULL;
    }
    return c;
}

int fd_codec_peek_ts(fd_codec *c, const void *buf, size_t len, int64_t *ts)
{
    if (!buf || (c->max_message_bytes && len > c->max_message_bytes))
        return -1;
    if (c->format != FD_FMT_JSON) {
        int r = fd_avro_peek_ts(c, buf, len, ts);
        if (r <= 0)
            return r == 0 && *ts > 0 && *ts <= FD_TS_MAX_MS ? 0 : -1;
    } else if (c->fast_path && fd_json_fast_peek_ts(buf, len, ts) == 0) {
        return *ts > 0 && *ts <= FD_TS_MAX_MS ? 0 : -1;
    }
    if (!c->scratch && !(c->scratch = malloc(sizeof *c->scratch)))
        return -1;
    if (fd_codec_decode(c, buf, len, c->scratch, NULL, 0) != FD_OK)
        return -1;
    *ts = c->scratch->ts_ms;
    return 0;
}

/* See codec.h. The thread that owns the codec. */
fd_reject fd_codec_decode(fd_codec *c, const void *buf, size_t len, fd_event *out, char *errstr,
                          size_t errstr_size)
{
    fd_event_init(out);
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (c->max_message_bytes && len > c->max_message_bytes)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_TOO_LARGE,
                             "message: %zu bytes is over the limit of %zu bytes", len,
                             c->max_message_bytes);
    const uint8_t *p = buf ? buf : (const uint8_t *)"";
    if (!buf)
        len = 0;
    fd_reject r;
    switch (c->format) {
    case FD_FMT_AVRO:
        r = fd_avro_decode(c, p, len, out, errstr, errstr_size);
        break;
    case FD_FMT_CONFLUENT_AVRO:
        r = fd_avro_decode_confluent(c, p, len, out, errstr, errstr_size);
        break;
    default:
        r = fd_json_decode(c, p, len, out, errstr, errstr_size);
        break;
    }
    if (r != FD_OK)
        return r;
    return fd_event_validate_max(out, 0, 0, c->max_price, errstr, errstr_size);
}

/* See codec.h. The thread that owns the codec. */
int fd_codec_encode(fd_codec *c, const fd_event *ev, const void **out, size_t *out_len)
{
    switch (c->format) {
    case FD_FMT_AVRO:
        return fd_avro_encode(c, ev, 0, out, out_len);
    case FD_FMT_CONFLUENT_AVRO:
        return fd_avro_encode(c, ev, 1, out, out_len);
    default:
        return fd_json_encode(c, ev, out, out_len);
    }
}

/* NULL is accepted. */
void fd_codec_destroy(fd_codec *c)
{
    if (!c)
        return;
    fd_avro_free(c->avro);
    free(c->out);
    free(c->scratch);
    free(c);
}

void fd_codec_set_fast_path(fd_codec *c, int on)
{
    c->fast_path = on;
}

void fd_codec_path_counts(const fd_codec *c, uint64_t *fast, uint64_t *slow)
{
    *fast = c->fast_decodes;
    *slow = c->slow_decodes;
}
