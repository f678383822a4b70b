/*
 * fuzz_decode.h - what every decoder fuzz target checks: fd_codec_decode
 * must never crash, leak or allocate without bound on any input; every
 * accepted event passes fd_event_validate and survives an encode/decode
 * round trip; every reject carries a message; the direct decoders agree
 * with the libraries byte for byte (the canonical Avro layout with Avro-C's
 * generic path, the common JSON layout with jansson: same answer, same
 * event, same message); and the watermark's peek reads the ts the decode
 * accepted.
 *
 * The codec is created once (schemas from conf/schemas relative to the cwd,
 * or to $FD_SOURCE_DIR when set) with the daemon's default 1 MiB limit.
 * Included by one target each (static functions, one codec per program).
 */
#ifndef FD_FUZZ_DECODE_H
#define FD_FUZZ_DECODE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec.h"

static fd_codec *c;
static fd_format fuzz_format;

/* Avro-C keeps pointers to its buffers where LeakSanitizer cannot see them,
 * so a codec alive at exit reads as a leak: free it before LSan looks. */
static void free_codec(void)
{
    fd_codec_destroy(c);
    c = NULL;
}

static fd_codec *codec(void)
{
    static char paths[3][1024];
    if (c)
        return c;
    const char *dir = getenv("FD_SOURCE_DIR");
    const char *rel[3] = {"conf/schemas/event.avsc", "conf/schemas/event.v0.avsc", ""};
    for (int i = 0; i < 2; i++)
        snprintf(paths[i], sizeof paths[i], "%s%s%s", dir ? dir : "", dir ? "/" : "", rel[i]);
    static fd_schema_ref ids[2];
    ids[0] = (fd_schema_ref){1, paths[0]};
    ids[1] = (fd_schema_ref){7, paths[1]};
    fd_codec_opts o = {.format = fuzz_format,
                       .schema_path = paths[0],
                       .schema_ids = ids,
                       .n_schema_ids = 2,
                       .encode_schema_id = 1,
                       .max_message_bytes = 1 << 20};
    char err[512];
    c = fd_codec_new(&o, err, sizeof err);
    if (!c) {
        fprintf(stderr, "fuzz: fd_codec_new: %s\n", err);
        abort();
    }
    atexit(free_codec);
    return c;
}

/* Decode one input with the codec of `fmt` and check every property above;
 * abort() on a violation. */
static int fuzz_decode(fd_format fmt, const uint8_t *data, size_t size)
{
    fuzz_format = fmt;
    fd_event ev;
    char err[512];
    fd_reject r = fd_codec_decode(codec(), data, size, &ev, err, sizeof err);
    /* Differential: the direct decoders and the libraries (Avro-C's generic
     * path, jansson) agree on every input. */
    fd_event slow;
    char err2[512];
    fd_codec_set_fast_path(codec(), 0);
    fd_reject r2 = fd_codec_decode(codec(), data, size, &slow, err2, sizeof err2);
    fd_codec_set_fast_path(codec(), 1);
    if (r != r2 || (r == FD_OK && !fd_event_equal(&ev, &slow)) || strcmp(err, err2) != 0) {
        fprintf(stderr, "direct path: %s (%s), library: %s (%s)\n", fd_reject_name(r), err,
                fd_reject_name(r2), err2);
        abort();
    }
    int64_t peeked;
    if (r == FD_OK && (fd_codec_peek_ts(codec(), data, size, &peeked) != 0 || peeked != ev.ts_ms)) {
        fprintf(stderr, "peek_ts disagrees with the decoded ts %lld\n", (long long)ev.ts_ms);
        abort();
    }
    if (r == FD_OK) {
        if (fd_event_validate(&ev, 0, 0, err, sizeof err) != FD_OK)
            abort(); /* decode accepted what validation rejects */
        /* an accepted event re-encodes and decodes to the same */
        const void *out;
        size_t n;
        if (fd_codec_encode(codec(), &ev, &out, &n) != 0)
            abort();
        fd_event ev2;
        if (fd_codec_decode(codec(), out, n, &ev2, err, sizeof err) != FD_OK ||
            strcmp(ev.user_id, ev2.user_id) != 0 || ev.ts_ms != ev2.ts_ms ||
            ev.quantity != ev2.quantity || ev.type != ev2.type)
            abort();
    } else if (err[0] == '\0' || r >= FD_REJ__COUNT) {
        abort(); /* every reject carries a message */
    }
    return 0;
}

#endif
