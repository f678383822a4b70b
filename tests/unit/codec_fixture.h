/*
 * codec_fixture.h - codec set-up shared by the codec unit tests
 * (test_codec.c, test_extreme_numbers.c): source-tree paths and a codec
 * with the reader schema and Confluent ids 1 (event.avsc) and 7 (the v0
 * writer schema event.v0.avsc). Runs with cwd = repo root (or FD_SOURCE_DIR
 * set).
 */
#ifndef FD_TEST_CODEC_FIXTURE_H
#define FD_TEST_CODEC_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pipeline/codec.h"

/* rel under the source tree; the last four results stay valid. */
static inline const char *src(const char *rel)
{
    static char bufs[4][1024];
    static int n;
    const char *dir = getenv("FD_SOURCE_DIR");
    char *b = bufs[n++ % 4];
    snprintf(b, sizeof bufs[0], "%s%s%s", dir ? dir : "", dir ? "/" : "", rel);
    return b;
}

/* A codec for format f (encode schema id 1); NULL, with the reason on
 * stderr and in err, when fd_codec_new fails. 0 for max_message_bytes or
 * max_price means the codec's default. */
static inline fd_codec *codec_fixture_new(fd_format f, size_t max_message_bytes, int64_t max_price,
                                          char *err, size_t err_size)
{
    static fd_schema_ref ids[2];
    ids[0] = (fd_schema_ref){1, src("conf/schemas/event.avsc")};
    ids[1] = (fd_schema_ref){7, src("conf/schemas/event.v0.avsc")};
    fd_codec_opts o = {.format = f,
                       .schema_path = src("conf/schemas/event.avsc"),
                       .schema_ids = ids,
                       .n_schema_ids = 2,
                       .encode_schema_id = 1,
                       .max_message_bytes = max_message_bytes,
                       .max_price = max_price};
    fd_codec *c = fd_codec_new(&o, err, err_size);
    if (!c)
        fprintf(stderr, "fd_codec_new: %s\n", err);
    return c;
}

#endif
