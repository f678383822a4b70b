/*
 * fuzz_fmt.c - libFuzzer target for features/fmt.c: every fd_fmt_*
 * function must write exactly what glibc's snprintf writes for the same
 * conversion, and nothing past its _MAX bytes; abort() on any difference.
 *
 * The input is a sequence of records: one tag byte (its low 3 bits pick
 * the function) and the value's bytes, little-endian (a short last record
 * is padded with zeros).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/fmt.h"

#define SENTINEL 0x5a

static void same(const char *what, const char *want, int n, const char *buf, const char *e,
                 size_t max)
{
    size_t len = (size_t)(e - buf);
    if (n < 0 || len != (size_t)n || len > max || memcmp(buf, want, len) != 0 ||
        (unsigned char)buf[len] != SENTINEL) {
        fprintf(stderr, "%s: snprintf \"%.*s\", fd_fmt \"%.*s\"\n", what, n < 0 ? 0 : n, want,
                (int)len, buf);
        abort();
    }
}

static uint64_t take(const uint8_t **data, size_t *size, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        if (i < *size)
            v |= (uint64_t)(*data)[i] << (8 * i);
    size_t used = n < *size ? n : *size;
    *data += used;
    *size -= used;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    while (size > 0) {
        const int tag = data[0] & 7;
        data++;
        size--;
        char want[64], buf[64];
        memset(buf, SENTINEL, sizeof buf);
        int n;
        switch (tag) {
        case 0: /* risk4 */
        {
            uint16_t q = (uint16_t)take(&data, &size, 2);
            n = snprintf(want, sizeof want, "%.4f", q / 65535.0);
            same("risk4", want, n, buf, fd_fmt_risk4(buf, q), FD_FMT_RISK4_MAX);
            break;
        }
        case 1: /* hex32 */
        {
            uint32_t v = (uint32_t)take(&data, &size, 4);
            n = snprintf(want, sizeof want, "%x", (unsigned)v);
            same("hex32", want, n, buf, fd_fmt_hex32(buf, v), FD_FMT_HEX32_MAX);
            break;
        }
        case 2: /* u64 */
        {
            uint64_t v = take(&data, &size, 8);
            n = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
            same("u64", want, n, buf, fd_fmt_u64(buf, v), FD_FMT_U64_MAX);
            break;
        }
        case 3: /* i64 */
        {
            int64_t v = (int64_t)take(&data, &size, 8);
            n = snprintf(want, sizeof want, "%lld", (long long)v);
            same("i64", want, n, buf, fd_fmt_i64(buf, v), FD_FMT_I64_MAX);
            break;
        }
        default: /* g6: half the tags, the one with real arithmetic */
        {
            uint32_t b = (uint32_t)take(&data, &size, 4);
            float f;
            memcpy(&f, &b, sizeof f);
            n = snprintf(want, sizeof want, "%.6g", (double)f);
            same("g6", want, n, buf, fd_fmt_g6(buf, f), FD_FMT_G6_MAX);
            break;
        }
        }
    }
    return 0;
}
