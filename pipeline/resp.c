/*
 * resp.c - see resp.h. Appends never fail loudly: an allocation failure
 * sets b->oom and later appends do nothing, so a caller checks once at the
 * end instead of after every argument.
 */
#include "pipeline/resp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(fd_resp *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Decimal digits of v into the end of buf[24]; returns the first char.
 * (snprintf was a visible share of a shard's time in perf.) */
static char *fmt_i64(char *end, int64_t v)
{
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = end;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return p;
}

/* "<c><n>\r\n" */
static void put_header(fd_resp *b, char c, uint64_t n)
{
    char buf[32];
    char *end = buf + sizeof buf - 2;
    char *p = fmt_i64(end, (int64_t)n);
    *--p = c;
    end[0] = '\r';
    end[1] = '\n';
    size_t len = (size_t)(end + 2 - p);
    if (reserve(b, len) == 0) {
        memcpy(b->p + b->len, p, len);
        b->len += len;
    }
}

static void put(fd_resp *b, const char *s, size_t n)
{
    if (reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

void fd_resp_cmd(fd_resp *b, int argc)
{
    if (b->owed != 0 || argc < 1)
        b->cut = 1;
    b->owed = argc;
    put_header(b, '*', (uint64_t)argc);
    b->n_cmds++;
}

void fd_resp_arg(fd_resp *b, const char *s, size_t len)
{
    if (b->owed-- <= 0)
        b->cut = 1;
    put_header(b, '$', len);
    if (reserve(b, len + 2) != 0)
        return;
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
}

void fd_resp_str(fd_resp *b, const char *s)
{
    fd_resp_arg(b, s, strlen(s));
}

void fd_resp_int(fd_resp *b, int64_t v)
{
    char d[24];
    char *p = fmt_i64(d + sizeof d, v);
    fd_resp_arg(b, p, (size_t)(d + sizeof d - p));
}

void fd_resp_cat(fd_resp *b, const fd_resp *other)
{
    if (other->oom)
        b->oom = 1;
    if (b->owed != 0 || other->owed != 0 || other->cut)
        b->cut = 1;
    put(b, other->p, other->len);
    b->n_cmds += other->n_cmds;
}

int fd_resp_reserve(fd_resp *b, size_t bytes)
{
    if (b->oom)
        return -1;
    if (bytes > SIZE_MAX - b->len)
        return -1;
    if (b->len + bytes <= b->cap)
        return 0;
    char *p = realloc(b->p, b->len + bytes);
    if (!p)
        return -1;
    b->p = p;
    b->cap = b->len + bytes;
    return 0;
}

void fd_resp_reset(fd_resp *b)
{
    b->len = 0;
    b->n_cmds = 0;
    b->oom = 0;
    b->owed = 0;
    b->cut = 0;
}

void fd_resp_free(fd_resp *b)
{
    if (!b)
        return;
    free(b->p);
    memset(b, 0, sizeof *b);
}
