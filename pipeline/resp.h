/*
 * resp.h - building Redis commands in the wire protocol (RESP) directly
 * into a growable buffer, so a shard can prepare its part of a flush
 * without a Redis connection and the writer sends the bytes as they are.
 */
#ifndef FD_RESP_H
#define FD_RESP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fd_resp {
    char *p;
    size_t len, cap;
    size_t n_cmds; /* commands appended */
    int oom;       /* an allocation failed: the buffer is incomplete */
    int64_t owed;  /* arguments the open command still expects */
    int cut;       /* a command got fewer or more arguments than it announced:
                    * the buffer must never reach Redis (a protocol error
                    * closes the connection, and the retry would fail alike) */
} fd_resp;

/* The buffer is whole: no allocation failed and every command got exactly
 * the arguments it announced. */
static inline int fd_resp_ok(const fd_resp *b)
{
    return !b->oom && !b->cut && b->owed == 0;
}

/* Start a command of argc arguments (the name counts). */
void fd_resp_cmd(fd_resp *b, int argc);
void fd_resp_arg(fd_resp *b, const char *s, size_t n);
void fd_resp_str(fd_resp *b, const char *s); /* NUL-terminated */
void fd_resp_int(fd_resp *b, int64_t v);
/* Append another buffer's commands. */
void fd_resp_cat(fd_resp *b, const fd_resp *other);
void fd_resp_reset(fd_resp *b); /* keep the memory */
/* Make room for `bytes` more without growing again (a buffer whose size is
 * known ahead: no doubling and copying). 0, or -1 when that much could not
 * be had: only a hint, so the buffer stays usable (not oom) and grows as
 * it must. */
int fd_resp_reserve(fd_resp *b, size_t bytes);
void fd_resp_free(fd_resp *b); /* NULL accepted */

#endif
