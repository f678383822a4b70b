/*
 * codec_internal.h - what codec.c, codec_avro*.c and codec_json.c share.
 * Not part of the public API: include only from pipeline/codec*.c.
 */
#ifndef FD_CODEC_INTERNAL_H
#define FD_CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"
#include "pipeline/codec.h"

typedef struct fd_avro_state fd_avro_state; /* codec_avro_internal.h */

struct fd_codec {
    fd_format format;
    size_t max_message_bytes;
    int64_t max_price; /* input.max_price (resolved: never 0) */
    int32_t encode_schema_id;
    fd_avro_state *avro; /* avro and confluent-avro only */
    int fast_path;       /* canonical Avro layout decoded without Avro-C, common JSON
                            layout without jansson (default 1) */
    uint64_t fast_decodes, slow_decodes; /* decodes by each path (fd_codec_path_counts) */
    /* encode output, reused across calls (json; avro grows its own) */
    char *out;
    size_t out_cap;
    fd_event *scratch; /* fd_codec_peek_ts's full decode */
};

/* printf into errstr (NULL / 0 accepted) and return r. */
fd_reject fd_codec_fail(char *errstr, size_t errstr_size, fd_reject r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy a string field of known length into a fixed fd_event buffer.
 * Rejects (FIELD_TOO_LONG) over FD_ID_MAX bytes and strings holding a NUL
 * (BAD_USER_ID for user_id, FIELD_TYPE otherwise). */
fd_reject fd_codec_copy_id(char dst[FD_ID_MAX + 1], const char *field, const char *s, size_t len,
                           char *errstr, size_t errstr_size);

/* codec_avro*.c: set up / tear down c->avro from opts (errstr names the file). */
int fd_avro_init(fd_codec *c, const fd_codec_opts *opts, char *errstr, size_t errstr_size);
void fd_avro_free(fd_avro_state *a);
fd_reject fd_avro_decode(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev, char *errstr,
                         size_t errstr_size);
fd_reject fd_avro_decode_confluent(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev,
                                   char *errstr, size_t errstr_size);
int fd_avro_peek_ts(const fd_codec *c, const uint8_t *p, size_t n, int64_t *ts);
int fd_avro_encode(fd_codec *c, const fd_event *ev, int framed, const void **out, size_t *out_len);

/* codec_json.c */
fd_reject fd_json_decode(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev, char *errstr,
                         size_t errstr_size);
int fd_json_encode(fd_codec *c, const fd_event *ev, const void **out, size_t *out_len);

/* codec_json_fast.c: the common JSON layout without jansson. 0 with *ev
 * filled exactly as jansson's path would (before fd_event_validate), or -1
 * when the input is anything else (*ev then partly written: reset it). */
int fd_json_fast_decode(const uint8_t *p, size_t n, fd_event *ev);
/* The event type of a JSON "type" value of n bytes, case-insensitive
 * ("view" is a click): an FD_EV_* value, or -1. */
int fd_json_event_type(const char *s, size_t n);
/* The top-level "ts" of a JSON object, other values skipped: 0 and *ts, or
 * -1 when it cannot be read that way. */
int fd_json_fast_peek_ts(const uint8_t *p, size_t n, int64_t *ts);

#endif
