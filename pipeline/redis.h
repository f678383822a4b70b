/*
 * redis.h - funneld's connection to Redis (hiredis 0.14): URL parsing,
 * password from a file or an environment variable, connect and command
 * timeouts, reconnect with exponential backoff, and pipelined transactions.
 *
 * A connection is used by one thread at a time. After any I/O or protocol
 * error the hiredis context is freed (never reused) and the next call to
 * fd_redis_ensure() reconnects once the backoff has passed.
 *
 * hiredis writes with write(2): the process must ignore SIGPIPE.
 */
#ifndef FD_REDIS_H
#define FD_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

typedef struct fd_redis_opts {
    const char *url;           /* redis://host:port[/db] or unix:///path[?db=N] */
    const char *password_file; /* NULL/"" = none; first line, trailing newline stripped */
    const char *password_env;  /* NULL/"" = none; used when the variable is set and non-empty */
    const char *username;      /* NULL/"" = the default user; else an ACL user (AUTH user pw) */
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
} fd_redis_opts;

typedef struct fd_redis fd_redis;

struct fd_config;
/* The options funneld's config gives (redis.* keys); pointers into cfg. */
fd_redis_opts fd_redis_opts_from_config(const struct fd_config *cfg);

/* An integer reply, or a string reply holding a decimal integer; dflt for
 * anything else (nil, error, junk). */
int64_t fd_redis_reply_int(const redisReply *r, int64_t dflt);

/* Create a handle (does not connect yet). Copies what it needs from opts.
 * NULL with errstr on a bad URL or unreadable password file. */
fd_redis *fd_redis_new(const fd_redis_opts *opts, char *errstr, size_t errstr_size);

/* NULL accepted. */
void fd_redis_destroy(fd_redis *r);

/* Connected? If not and the backoff since the last failure has passed, try
 * once to connect (AUTH, SELECT db, PING). Returns 0 when connected, -1
 * otherwise (errstr says why; logs at most once per state change). Never
 * sleeps. */
int fd_redis_ensure(fd_redis *r, char *errstr, size_t errstr_size);

/* Blocking variant for start-up and tools: retries with backoff until
 * connected or timeout_ms passed (or *stop becomes non-zero). 0 / -1. */
int fd_redis_connect_wait(fd_redis *r, int64_t timeout_ms, volatile int *stop, char *errstr,
                          size_t errstr_size);

int fd_redis_connected(const fd_redis *r);

/* Pipelining: append commands, then read one reply per appended command.
 * fd_redis_append* return 0 or -1 (not connected). fd_redis_read_replies
 * reads all pending replies into replies[0..n-1] (n must be >= pending,
 * else -1 and the connection is dropped; caller frees each with
 * freeReplyObject, or passes replies == NULL to discard them); returns 0, or
 * -1 on an I/O error, in which case the connection is dropped (backoff
 * starts) and nothing is returned. A Redis error reply (REDIS_REPLY_ERROR) is
 * a reply, not an I/O error: the caller checks types. */
int fd_redis_appendv(fd_redis *r, int argc, const char **argv, const size_t *argvlen);
int fd_redis_appendf(fd_redis *r, const char *fmt, ...);
/* Append n_cmds commands already in the wire protocol (see resp.h). The
 * bytes are not copied: buf must stay allocated and unchanged until the
 * replies are read (the first fd_redis_read_replies sends everything
 * queued) or the connection is dropped. */
int fd_redis_append_raw(fd_redis *r, const char *buf, size_t len, size_t n_cmds);
/* Bytes and sendmsg batches sent from the queue since the handle was made
 * (tests, benchmarks). */
void fd_redis_sent(const fd_redis *r, uint64_t *bytes, uint64_t *sends);
size_t fd_redis_pending(const fd_redis *r);
int fd_redis_read_replies(fd_redis *r, redisReply **replies, size_t n, char *errstr,
                          size_t errstr_size);

/* One command, one reply (caller frees). NULL on I/O error (connection
 * dropped) with errstr set; also NULL when not connected (it does not
 * reconnect: call fd_redis_ensure first) or when pipelined replies are
 * still pending. */
redisReply *fd_redis_command(fd_redis *r, char *errstr, size_t errstr_size, const char *fmt, ...);

/* Drop the connection now (e.g. after a protocol surprise); pending replies
 * are forgotten and the backoff starts as after an error. NULL accepted. */
void fd_redis_disconnect(fd_redis *r);

/* Observability (for tests, /metrics and logs). Any thread that owns r.
 * fd_redis_backoff_ms: the delay (ms, jitter included) scheduled after the
 * last failure; 0 while connected. fd_redis_retry_in_ms: ms until
 * fd_redis_ensure() will try again (0 = now, or connected).
 * fd_redis_attempts: connect attempts since the current outage began.
 * fd_redis_url: the URL as given (owned by r). */
int64_t fd_redis_backoff_ms(const fd_redis *r);
int64_t fd_redis_retry_in_ms(const fd_redis *r);
unsigned fd_redis_attempts(const fd_redis *r);
const char *fd_redis_url(const fd_redis *r);

/* ---- helpers the writer shares with the connection ---------------------
 *
 * fd_backoff: exponential backoff with +-10% jitter, from min_ms doubling
 * to max_ms. fd_backoff_fail schedules the next attempt after a failure
 * (returns the delay, jitter included, in [min_ms, max_ms]);
 * fd_backoff_ready says whether that time has come; fd_backoff_reset
 * starts over at min_ms (after a success). Monotonic ms throughout. */
typedef struct fd_backoff {
    int64_t min_ms, max_ms;
    int64_t base_ms;  /* the delay the next failure schedules (before jitter) */
    int64_t last_ms;  /* the delay the last failure scheduled (after jitter); 0 = none */
    int64_t until_ms; /* no attempt before this; 0 = now */
    uint64_t rng;
} fd_backoff;

void fd_backoff_init(fd_backoff *b, int64_t min_ms, int64_t max_ms, uint64_t seed);
int64_t fd_backoff_fail(fd_backoff *b, int64_t now_ms);
int fd_backoff_ready(const fd_backoff *b, int64_t now_ms);
void fd_backoff_reset(fd_backoff *b);

/* The code of a Redis error reply: its first word when that is in capitals
 * ("OOM", "MISCONF", "READONLY", "LOADING", "NOAUTH", "WRONGTYPE",
 * "EXECABORT", "ERR", ...), else "ERR". Into buf (returned). */
const char *fd_redis_error_code(const char *msg, char *buf, size_t n);

/* In the wire protocol buf[0..len) (commands as resp.h builds them), argument
 * arg (0 = the command name) of command cmd (0-based): *out and *out_len
 * point into buf. 0, or -1 when buf holds fewer commands or arguments or is
 * not well-formed. For naming the key of a command Redis refused. */
int fd_redis_wire_arg(const char *buf, size_t len, size_t cmd, int arg, const char **out,
                      size_t *out_len);

/* Parse a URL into its parts (exposed for tests). host/path buffers get the
 * host or socket path. Returns 0 or -1 with errstr. */
int fd_redis_parse_url(const char *url, char *host, size_t host_size, int *port, int *is_unix,
                       int *db, char *errstr, size_t errstr_size);

#endif
