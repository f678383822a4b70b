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

static void put(fd_resp *b, const char *s, size_t n)
{
    if (reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

void fd_resp_cmd(fd_resp *b, int argc)
{
    char h[24];
    int n = snprintf(h, sizeof h, "*%d\r\n", argc);
    put(b, h, (size_t)n);
    b->n_cmds++;
}

void fd_resp_arg(fd_resp *b, const char *s, size_t len)
{
    char h[32];
    int n = snprintf(h, sizeof h, "$%zu\r\n", len);
    if (reserve(b, (size_t)n + len + 2) != 0)
        return;
    memcpy(b->p + b->len, h, (size_t)n);
    b->len += (size_t)n;
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
    int n = snprintf(d, sizeof d, "%" PRId64, v);
    fd_resp_arg(b, d, (size_t)n);
}

void fd_resp_cat(fd_resp *b, const fd_resp *other)
{
    if (other->oom)
        b->oom = 1;
    put(b, other->p, other->len);
    b->n_cmds += other->n_cmds;
}

void fd_resp_reset(fd_resp *b)
{
    b->len = 0;
    b->n_cmds = 0;
    b->oom = 0;
}

void fd_resp_free(fd_resp *b)
{
    if (!b)
        return;
    free(b->p);
    memset(b, 0, sizeof *b);
}
