/*
 * redis_wire.c - the parts of the Redis client that need no connection
 * (see redis.h): the reconnect backoff, the code of an error reply,
 * reading an argument back out of commands already in the wire protocol
 * (to name a refused command's key), and integer replies. Split from
 * redis.c, which keeps the connection, its send queue and the replies.
 *
 * Thread: any; nothing here is shared.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/redis.h"

/* ---- backoff, error codes, wire protocol -------------------------------- */

static uint64_t rng_next(fd_backoff *b)
{
    /* xorshift64*: jitter only, not security. */
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void fd_backoff_init(fd_backoff *b, int64_t min_ms, int64_t max_ms, uint64_t seed)
{
    *b = (fd_backoff){.min_ms = min_ms > 0 ? min_ms : 1, .max_ms = max_ms, .rng = seed ? seed : 1};
    if (b->max_ms < b->min_ms)
        b->max_ms = b->min_ms;
    b->base_ms = b->min_ms;
}

int64_t fd_backoff_fail(fd_backoff *b, int64_t now_ms)
{
    int64_t base = b->base_ms;
    int64_t span = base / 5; /* jitter in [-10%, +10%] */
    int64_t delay =
        base - span / 2 + (span > 0 ? (int64_t)(rng_next(b) % (uint64_t)(span + 1)) : 0);
    if (delay < b->min_ms)
        delay = b->min_ms;
    if (delay > b->max_ms)
        delay = b->max_ms;
    b->last_ms = delay;
    b->until_ms = now_ms + delay;
    b->base_ms = base * 2 > b->max_ms ? b->max_ms : base * 2;
    return delay;
}

int fd_backoff_ready(const fd_backoff *b, int64_t now_ms)
{
    return now_ms >= b->until_ms;
}

void fd_backoff_reset(fd_backoff *b)
{
    b->base_ms = b->min_ms;
    b->last_ms = 0;
    b->until_ms = 0;
}

const char *fd_redis_error_code(const char *msg, char *buf, size_t n)
{
    size_t k = 0;
    if (msg)
        while (msg[k] >= 'A' && msg[k] <= 'Z')
            k++;
    if (n == 0)
        return buf;
    if (k == 0 || (msg[k] != ' ' && msg[k] != '\0') || k + 1 > n) {
        snprintf(buf, n, "ERR");
        return buf;
    }
    memcpy(buf, msg, k);
    buf[k] = '\0';
    return buf;
}

/* "<c><decimal>\r\n" at *p (within end): the number, *p moved past it; -1. */
static long long wire_num(const char **p, const char *end, char c)
{
    const char *q = *p;
    if (q >= end || *q++ != c)
        return -1;
    long long v = 0;
    int digits = 0;
    while (q < end && *q >= '0' && *q <= '9' && digits < 12) {
        v = v * 10 + (*q++ - '0');
        digits++;
    }
    if (!digits || end - q < 2 || q[0] != '\r' || q[1] != '\n')
        return -1;
    *p = q + 2;
    return v;
}

int fd_redis_wire_arg(const char *buf, size_t len, size_t cmd, int arg, const char **out,
                      size_t *out_len)
{
    const char *p = buf, *end = buf + len;
    for (size_t c = 0;; c++) {
        long long argc = wire_num(&p, end, '*');
        if (argc < 0)
            return -1;
        for (long long a = 0; a < argc; a++) {
            long long l = wire_num(&p, end, '$');
            if (l < 0 || end - p < l + 2)
                return -1;
            if (c == cmd && a == arg) {
                *out = p;
                *out_len = (size_t)l;
                return 0;
            }
            p += l + 2;
        }
        if (c == cmd)
            return -1; /* fewer arguments */
    }
}

int64_t fd_redis_reply_int(const redisReply *r, int64_t dflt)
{
    if (!r)
        return dflt;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type != REDIS_REPLY_STRING)
        return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(r->str, &end, 10);
    return (errno || end == r->str || *end) ? dflt : v;
}
