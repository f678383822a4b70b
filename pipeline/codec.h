/*
 * codec.h - wire formats of the events topic: decode (daemon) and encode
 * (generator, tests, benchmarks).
 *
 * Formats:
 *   FD_FMT_AVRO            binary Avro body in the reader schema
 *   FD_FMT_CONFLUENT_AVRO  0x00, 4-byte big-endian schema id, Avro body; the
 *                          id maps to a local .avsc (no registry server); an
 *                          older writer schema is resolved against the reader
 *   FD_FMT_JSON            one JSON object (jansson); type click|cart|purchase
 *                          (view == click); ts epoch ms or RFC 3339 string
 *
 * A codec is used by one thread at a time (it reuses Avro values and
 * buffers); create one per thread. Decoding allocates nothing per event
 * beyond what Avro-C/jansson do internally.
 */
#ifndef FD_CODEC_H
#define FD_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

typedef enum fd_format { FD_FMT_AVRO = 0, FD_FMT_CONFLUENT_AVRO = 1, FD_FMT_JSON = 2 } fd_format;

/* Parse "avro" / "confluent-avro" / "json"; returns -1 when unknown. */
int fd_format_parse(const char *s);
const char *fd_format_name(fd_format f);

/* Parse an RFC 3339 timestamp ("2026-03-01T12:00:00Z",
 * "2026-03-01T12:00:00.123+02:00"; T may be t or ' ', Z may be z; digits
 * past milliseconds are truncated; :60 counts as the next second) of len
 * bytes into epoch ms. Returns 0, or -1 with a static reason in *why. Pure,
 * any thread, independent of locale and TZ. */
int fd_rfc3339_parse(const char *s, size_t len, int64_t *out_ms, const char **why);

typedef struct fd_schema_ref {
    int32_t id;       /* Confluent schema id */
    const char *path; /* .avsc file of that writer schema */
} fd_schema_ref;

typedef struct fd_codec_opts {
    fd_format format;
    const char *schema_path;         /* reader schema (.avsc) for avro formats */
    const fd_schema_ref *schema_ids; /* confluent-avro: known writer schemas */
    size_t n_schema_ids;
    int32_t encode_schema_id; /* confluent-avro: id written by encode */
    size_t max_message_bytes; /* decode rejects larger (0 = no limit) */
    int64_t max_price;        /* input.max_price, currency units: 1..FD_MAX_PRICE_LIMIT
                                 (0 = FD_MAX_PRICE_DEFAULT) */
} fd_codec_opts;

typedef struct fd_codec fd_codec;

/* Create a codec. Loads and parses every schema file up front; on failure
 * returns NULL with a message naming the file (or the bad option) in errstr. Caller frees with
 * fd_codec_destroy(). Any thread; the result is single-threaded. */
fd_codec *fd_codec_new(const fd_codec_opts *opts, char *errstr, size_t errstr_size);

/* Decode one message into *out (fd_event_init'ed first). Returns FD_OK or a
 * reject reason with a one-line message in errstr naming the field or byte
 * offset. Never crashes on any input. Does not run fd_event_validate's
 * future-time check (the caller owns the partition reference time) but does
 * run every other check of fd_event_validate. */
fd_reject fd_codec_decode(fd_codec *c, const void *buf, size_t len, fd_event *out, char *errstr,
                          size_t errstr_size);

/* The event time of a message, for the partition watermark: read directly
 * for the canonical Avro layout and for a JSON object's top-level "ts" (no
 * validation of the other fields: the message is decoded once, by its
 * shard), else by a full decode. 0 and *ts (1..FD_TS_MAX_MS), or -1 when it cannot be read
 * (the message will be rejected by fd_codec_decode, or its ts is invalid). */
int fd_codec_peek_ts(fd_codec *c, const void *buf, size_t len, int64_t *ts);

/* Encode an event in the codec's format into a buffer owned by the codec,
 * valid until the next call. Returns 0 and sets *out and *out_len, or -1. */
int fd_codec_encode(fd_codec *c, const fd_event *ev, const void **out, size_t *out_len);

/* NULL is accepted. */
void fd_codec_destroy(fd_codec *c);

/* Tests: turn the direct decoders off (0) or on (1, the default): the
 * canonical Avro layout without Avro-C's generic path, the common JSON
 * layout without jansson (codec_json_fast.c). Off, every message takes the
 * library's path, to compare the two. */
void fd_codec_set_fast_path(fd_codec *c, int on);

/* Tests and benchmarks: JSON decodes that took the direct path and
 * jansson's since the codec was made (Avro: 0, 0). */
void fd_codec_path_counts(const fd_codec *c, uint64_t *fast, uint64_t *slow);

#endif
