/*
 * redis.c - funneld's one connection to Redis, see redis.h.
 *
 * Why it is built this way:
 *
 * Redis is funneld's durable state, so losing the connection is an expected
 * event, not a crash. Everything here follows from treating it as one:
 *
 * - A hiredis context that reported an error is never used again. hiredis
 *   keeps unread bytes and half-written commands in its buffers after an
 *   error, and a reply read afterwards may belong to an older command. So any
 *   I/O or protocol error frees the context and forgets the pending count;
 *   the caller's flush simply failed and will be retried in full (the writer
 *   puts offsets in the same MULTI/EXEC as the state, so a retried flush is
 *   idempotent).
 *
 * - Reconnecting is lazy and never sleeps. fd_redis_ensure() is called from
 *   the writer's loop; it tries at most once, and only after the backoff
 *   since the last failure has passed, so a dead Redis costs the hot loop a
 *   clock read, not a connect timeout per flush. The backoff doubles from
 *   backoff_min to backoff_max with +-10% jitter (several instances that lost
 *   the same Redis do not reconnect in lock step) and resets on success. Only
 *   fd_redis_connect_wait(), for start-up and tools, sleeps.
 *
 * - An outage is logged twice: one warning when it starts and one info line
 *   when it ends, with the number of attempts. A retry every 100 ms must not
 *   fill the journal; errstr still tells each caller what went wrong.
 *
 * - The password is read once, at fd_redis_new(), so a missing or unreadable
 *   password file fails at start-up with the file's name, not at the first
 *   reconnect hours later. It is never written into a message: AUTH errors
 *   are reported with the server's text, redacted should it echo the secret,
 *   and the memory is wiped on destroy. URLs with credentials are rejected.
 *
 * - Times come from CLOCK_MONOTONIC, so a wall-clock step neither stalls nor
 *   hurries reconnection.
 *
 * - Commands are not copied into hiredis' output buffer. Every append goes
 *   into one send queue: commands already in the wire protocol (a shard's
 *   chunk of user records, the epoch's windows; fd_redis_append_raw) by
 *   reference, small ones (MULTI, EXEC, a WATCH) built into a reused fd_resp
 *   buffer of our own. The first read of replies sends the queue with
 *   sendmsg(2), many buffers per call. hiredis' sdscatlen copy of each
 *   epoch's commands into a fresh output buffer, which grew by 1 MiB steps
 *   and was freed after every write (so faulted in again for the next),
 *   was ~9 % of funneld's samples with Avro input (BENCHMARKS.md, issue
 *   14). hiredis still parses the replies.
 *
 * The queue is sent with MSG_NOSIGNAL; hiredis' own writes (connect-time
 * commands) use write(2), so a peer that vanished raises SIGPIPE there: the
 * process must ignore SIGPIPE (funneld's main does; so do the tests).
 *
 * What needs no connection (backoff, error codes, reading RESP back,
 * integer replies) is in redis_wire.c.
 *
 * Thread: a handle is used by one thread at a time; nothing here is shared.
 */
#include "pipeline/redis.h"
#include "pipeline/resp.h"

#include "daemon/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>

#include "daemon/clock.h"
#include "daemon/log.h"

#define SUBSYS "redis"

struct fd_redis {
    redisContext *c; /* NULL while disconnected */
    char *url;
    char host[256]; /* host name / address, or the socket path */
    int port;
    int is_unix;
    int db;
    char *password; /* NULL = no AUTH */
    char *username; /* NULL = AUTH password (the default user); else AUTH username password */
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;

    size_t pending;    /* replies still to read */
    fd_backoff bo;     /* when the next connect attempt may be made */
    unsigned attempts; /* connect attempts since the outage began */
    int in_outage;     /* a warning was logged and no success since */
    int ever_connected;
    char last_err[512];
    bool auth_refused; /* the last attempt's AUTH was refused (a setting, not an outage) */

    /* The send queue: commands appended and not yet sent, in order. A
     * segment is a caller's buffer (ref) or bytes of own at off. */
    struct out_seg {
        const char *ref;
        size_t off, len;
    } * segs;
    size_t n_segs, cap_segs;
    fd_resp own;       /* the small commands, built here (memory kept) */
    struct iovec *iov; /* sendmsg's vector, reused */
    size_t cap_iov;
    uint64_t bytes_sent, sends;
};

static struct timeval ms_to_tv(int64_t ms)
{
    struct timeval tv;
    if (ms < 0)
        ms = 0;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
}

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* ---- URL ---------------------------------------------------------------- */

/* Parse a decimal integer in [lo, hi] from s[0..len). 0 or -1. */
static int parse_int_range(const char *s, size_t len, long lo, long hi, int *out)
{
    if (len == 0 || len > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int copy_part(char *dst, size_t dst_size, const char *src, size_t len)
{
    if (len + 1 > dst_size)
        return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

int fd_redis_parse_url(const char *url, char *host, size_t host_size, int *port, int *is_unix,
                       int *db, char *errstr, size_t errstr_size)
{
    if (!url || !*url) {
        set_err(errstr, errstr_size,
                "redis URL is empty (want redis://host:port/db or "
                "unix:///path?db=N)");
        return -1;
    }
    *port = 6379;
    *db = 0;
    *is_unix = 0;

    if (!strncmp(url, "unix://", 7)) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (plen == 0 || path[0] != '/') {
            set_err(errstr, errstr_size,
                    "bad redis URL \"%s\": unix socket path must be absolute "
                    "(unix:///path/to/redis.sock)",
                    url);
            return -1;
        }
        if (copy_part(host, host_size, path, plen) < 0) {
            set_err(errstr, errstr_size, "bad redis URL \"%s\": socket path longer than %zu bytes",
                    url, host_size - 1);
            return -1;
        }
        if (q) {
            const char *v = q + 1;
            if (strncmp(v, "db=", 3) != 0 ||
                parse_int_range(v + 3, strlen(v + 3), 0, INT_MAX, db) < 0) {
                set_err(errstr, errstr_size,
                        "bad redis URL \"%s\": query must be ?db=N with N a database number", url);
                return -1;
            }
        }
        *is_unix = 1;
        return 0;
    }

    char shown[512]; /* the URL as it may be printed: no credentials */
    fd_config_redact_urls(url, shown, sizeof shown);
    if (!strncmp(url, "rediss://", 9)) {
        set_err(errstr, errstr_size, "bad redis URL \"%s\": TLS (rediss://) is not supported",
                shown);
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        set_err(errstr, errstr_size,
                "bad redis URL \"%s\": scheme must be redis:// or unix:// "
                "(redis://host:port/db, unix:///path?db=N)",
                shown);
        return -1;
    }
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    size_t alen = slash ? (size_t)(slash - p) : strlen(p);
    if (memchr(p, '@', alen)) {
        /* Do not echo the URL: it holds a secret. */
        set_err(errstr, errstr_size,
                "bad redis URL: credentials in the URL are not supported; "
                "use redis.password_file or redis.password_env");
        return -1;
    }
    const char *hs, *he, *rest; /* host start/end, after host */
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', alen > 0 ? alen - 1 : 0);
        if (!he) {
            set_err(errstr, errstr_size, "bad redis URL \"%s\": '[' without ']' in IPv6 host", url);
            return -1;
        }
        rest = he + 1;
    } else {
        hs = p;
        he = p;
        while (he < p + alen && *he != ':')
            he++;
        rest = he;
    }
    if (he == hs) {
        set_err(errstr, errstr_size, "bad redis URL \"%s\": host is empty", url);
        return -1;
    }
    if (copy_part(host, host_size, hs, (size_t)(he - hs)) < 0) {
        set_err(errstr, errstr_size, "bad redis URL \"%s\": host longer than %zu bytes", url,
                host_size - 1);
        return -1;
    }
    const char *aend = p + alen;
    if (rest < aend) {
        if (*rest != ':') {
            set_err(errstr, errstr_size, "bad redis URL \"%s\": unexpected \"%.*s\" after host",
                    url, (int)(aend - rest), rest);
            return -1;
        }
        if (parse_int_range(rest + 1, (size_t)(aend - rest - 1), 1, 65535, port) < 0) {
            set_err(errstr, errstr_size, "bad redis URL \"%s\": port \"%.*s\" is not 1..65535", url,
                    (int)(aend - rest - 1), rest + 1);
            return -1;
        }
    }
    if (slash && slash[1]) {
        if (parse_int_range(slash + 1, strlen(slash + 1), 0, INT_MAX, db) < 0) {
            set_err(errstr, errstr_size,
                    "bad redis URL \"%s\": database \"%s\" is not a non-negative integer", url,
                    slash + 1);
            return -1;
        }
    }
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Read the first line of path into a fresh string. NULL with errstr. */
static char *read_password_file(const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(errstr, errstr_size, "redis password file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    errno = 0;
    ssize_t n = getline(&line, &cap, f);
    int e = errno;
    fclose(f);
    if (n < 0) {
        if (line)
            explicit_bzero(line, cap);
        free(line);
        if (e)
            set_err(errstr, errstr_size, "redis password file %s: %s", path, strerror(e));
        else
            set_err(errstr, errstr_size, "redis password file %s: file is empty", path);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0) {
        explicit_bzero(line, cap);
        free(line);
        set_err(errstr, errstr_size, "redis password file %s: first line is empty", path);
        return NULL;
    }
    return line;
}

fd_redis *fd_redis_new(const fd_redis_opts *opts, char *errstr, size_t errstr_size)
{
    fd_redis *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (fd_redis_parse_url(opts->url, r->host, sizeof r->host, &r->port, &r->is_unix, &r->db,
                           errstr, errstr_size) < 0)
        goto fail;
    r->url = strdup(opts->url);
    if (!r->url) {
        set_err(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (opts->password_file && *opts->password_file) {
        r->password = read_password_file(opts->password_file, errstr, errstr_size);
        if (!r->password)
            goto fail;
    } else if (opts->password_env && *opts->password_env) {
        const char *v = getenv(opts->password_env);
        if (v && *v) {
            r->password = strdup(v);
            if (!r->password) {
                set_err(errstr, errstr_size, "out of memory");
                goto fail;
            }
        }
    }
    if (opts->username && *opts->username) {
        if (!r->password) {
            set_err(errstr, errstr_size,
                    "ACL user \"%s\" (redis.username) has no password: set redis.password_file, "
                    "or the environment variable named by redis.password_env",
                    opts->username);
            goto fail;
        }
        r->username = strdup(opts->username);
        if (!r->username) {
            set_err(errstr, errstr_size, "out of memory");
            goto fail;
        }
    }
    r->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 2000;
    r->command_timeout_ms = opts->command_timeout_ms > 0 ? opts->command_timeout_ms : 5000;
    fd_backoff_init(&r->bo, opts->backoff_min_ms > 0 ? opts->backoff_min_ms : 100,
                    opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 10000,
                    (uint64_t)fd_mono_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)r);
    return r;
fail:
    fd_redis_destroy(r);
    return NULL;
}

void fd_redis_destroy(fd_redis *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    if (r->password) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->username);
    free(r->url);
    free(r->segs);
    fd_resp_free(&r->own);
    free(r->iov);
    free(r);
}

/* ---- connection state --------------------------------------------------- */

/* A connect attempt failed or the connection was lost: remember why, log
 * once per outage, schedule the next attempt. */
static void note_failure(fd_redis *r, const char *what)
{
    snprintf(r->last_err, sizeof r->last_err, "%s", what);
    fd_backoff_fail(&r->bo, fd_mono_ms());
    if (!r->in_outage) {
        r->in_outage = 1;
        fd_warn(SUBSYS, "url=%s %s; retrying with backoff %lld..%lld ms", r->url, what,
                (long long)r->bo.min_ms, (long long)r->bo.max_ms);
    }
}

/* Drop the context after an error (never reuse it) and start the backoff. */
static void drop(fd_redis *r, const char *what)
{
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    r->pending = 0;
    r->n_segs = 0; /* what was queued is never sent: the caller retries it all */
    fd_resp_reset(&r->own);
    r->attempts = 0;
    note_failure(r, what);
}

/* Run one command during connect; expects a non-error reply (and, when
 * want_status is set, that status text). 0 or -1 with errstr. The password
 * never reaches errstr: callers pass a label, and server text is redacted. */
static int setup_command(fd_redis *r, redisContext *c, const char *label, const char *want_status,
                         char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!rep) {
        set_err(errstr, errstr_size, "%s failed: %s", label, c->errstr[0] ? c->errstr : "no reply");
        return -1;
    }
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR) {
        const char *msg = rep->str ? rep->str : "";
        if (r->password && strstr(msg, r->password))
            msg = "(server error text withheld: it contains the password)";
        if (!strcmp(label, "AUTH") || !strncmp(msg, "NOAUTH", 6) || !strncmp(msg, "NOPERM", 6))
            r->auth_refused = true;
        set_err(errstr, errstr_size, "%s rejected: %s", label, msg);
        rc = -1;
    } else if (want_status && (rep->type != REDIS_REPLY_STATUS || !rep->str ||
                               strcmp(rep->str, want_status) != 0)) {
        set_err(errstr, errstr_size, "%s: unexpected reply (type %d)", label, rep->type);
        rc = -1;
    }
    freeReplyObject(rep);
    return rc;
}

/* One connect attempt: connect, timeouts, AUTH, SELECT, PING. */
static int try_connect(fd_redis *r, char *errstr, size_t errstr_size)
{
    char err[400];
    struct timeval ctv = ms_to_tv(r->connect_timeout_ms);
    redisContext *c = r->is_unix ? redisConnectUnixWithTimeout(r->host, ctv)
                                 : redisConnectWithTimeout(r->host, r->port, ctv);
    if (!c) {
        snprintf(err, sizeof err, "connect failed: out of memory");
        goto fail;
    }
    if (c->err) {
        snprintf(err, sizeof err, "connect failed: %s", c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, ms_to_tv(r->command_timeout_ms)) != REDIS_OK) {
        snprintf(err, sizeof err, "setting the command timeout failed: %s", c->errstr);
        goto fail;
    }
    if (r->password && r->username &&
        setup_command(r, c, "AUTH", "OK", err, sizeof err, "AUTH %s %s", r->username, r->password) <
            0)
        goto fail;
    if (r->password && !r->username &&
        setup_command(r, c, "AUTH", "OK", err, sizeof err, "AUTH %s", r->password) < 0)
        goto fail;
    if (r->db != 0) {
        char label[32];
        snprintf(label, sizeof label, "SELECT %d", r->db);
        if (setup_command(r, c, label, "OK", err, sizeof err, "SELECT %d", r->db) < 0)
            goto fail;
    }
    if (setup_command(r, c, "PING", "PONG", err, sizeof err, "PING") < 0)
        goto fail;
    r->c = c;
    return 0;
fail:
    if (c)
        redisFree(c);
    set_err(errstr, errstr_size, "redis %s: %s", r->url, err);
    note_failure(r, err);
    return -1;
}

int fd_redis_ensure(fd_redis *r, char *errstr, size_t errstr_size)
{
    if (r->c)
        return 0;
    int64_t now = fd_mono_ms();
    if (!fd_backoff_ready(&r->bo, now)) {
        set_err(errstr, errstr_size, "redis %s: not connected (%s); next attempt in %lld ms",
                r->url, r->last_err[0] ? r->last_err : "disconnected",
                (long long)(r->bo.until_ms - now));
        return -1;
    }
    r->attempts++;
    if (try_connect(r, errstr, errstr_size) < 0)
        return -1;
    if (r->in_outage)
        fd_info(SUBSYS, "url=%s %sconnected after %u attempts", r->url,
                r->ever_connected ? "re" : "", r->attempts);
    else
        fd_info(SUBSYS, "url=%s connected (db %d)", r->url, r->db);
    r->in_outage = 0;
    r->ever_connected = 1;
    r->attempts = 0;
    r->pending = 0;
    fd_backoff_reset(&r->bo);
    r->last_err[0] = '\0';
    return 0;
}

int fd_redis_connect_wait(fd_redis *r, int64_t timeout_ms, volatile int *stop, char *errstr,
                          size_t errstr_size)
{
    int64_t deadline = fd_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (stop && *stop) {
            set_err(errstr, errstr_size, "redis %s: stopped while connecting", r->url);
            return -1;
        }
        r->auth_refused = false;
        if (fd_redis_ensure(r, errstr, errstr_size) == 0)
            return 0;
        if (r->auth_refused) { /* waiting will not change the password: say so now */
            set_err(errstr, errstr_size, "redis %s: %s", r->url,
                    r->last_err[0] ? r->last_err : "AUTH rejected");
            return -1;
        }
        int64_t now = fd_mono_ms();
        if (now >= deadline) {
            set_err(errstr, errstr_size, "redis %s: not connected after %lld ms: %s", r->url,
                    (long long)timeout_ms, r->last_err[0] ? r->last_err : "unknown error");
            return -1;
        }
        int64_t wake = r->bo.until_ms < deadline ? r->bo.until_ms : deadline;
        int64_t nap = wake - now;
        if (nap > 50) /* look at *stop at least every 50 ms */
            nap = 50;
        if (nap < 1)
            nap = 1;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int fd_redis_connected(const fd_redis *r)
{
    return r && r->c != NULL;
}

void fd_redis_disconnect(fd_redis *r)
{
    if (r && r->c)
        drop(r, "disconnected by caller");
}

int64_t fd_redis_backoff_ms(const fd_redis *r)
{
    return r->bo.last_ms;
}

int64_t fd_redis_retry_in_ms(const fd_redis *r)
{
    if (r->c)
        return 0;
    int64_t d = r->bo.until_ms - fd_mono_ms();
    return d > 0 ? d : 0;
}

unsigned fd_redis_attempts(const fd_redis *r)
{
    return r->attempts;
}

const char *fd_redis_url(const fd_redis *r)
{
    return r->url;
}

/* ---- commands ----------------------------------------------------------- */

/* Queue len bytes: the caller's (ref), or own's from off (ref NULL), which
 * extend the previous segment when it ends where they begin. */
static int queue(fd_redis *r, const char *ref, size_t off, size_t len)
{
    if (!len)
        return 0;
    struct out_seg *last = r->n_segs ? &r->segs[r->n_segs - 1] : NULL;
    if (!ref && last && !last->ref && last->off + last->len == off) {
        last->len += len;
        return 0;
    }
    if (r->n_segs == r->cap_segs) {
        size_t cap = r->cap_segs ? r->cap_segs * 2 : 64;
        struct out_seg *n = realloc(r->segs, cap * sizeof *n);
        if (!n)
            return -1;
        r->segs = n;
        r->cap_segs = cap;
    }
    r->segs[r->n_segs++] = (struct out_seg){.ref = ref, .off = off, .len = len};
    return 0;
}

/* Send the queue (blocking, within the command timeout). 0, or -1 with the
 * connection dropped and errstr set. */
static int send_queue(fd_redis *r, char *errstr, size_t errstr_size)
{
    if (!r->n_segs)
        return 0;
    if (r->cap_iov < r->n_segs) {
        struct iovec *n = realloc(r->iov, r->n_segs * sizeof *n);
        if (!n) {
            set_err(errstr, errstr_size, "redis %s: out of memory sending", r->url);
            drop(r, "out of memory sending");
            return -1;
        }
        r->iov = n;
        r->cap_iov = r->n_segs;
    }
    for (size_t i = 0; i < r->n_segs; i++) {
        const struct out_seg *g = &r->segs[i];
        r->iov[i].iov_base = (void *)(g->ref ? g->ref : r->own.p + g->off);
        r->iov[i].iov_len = g->len;
    }
    struct iovec *v = r->iov;
    size_t nv = r->n_segs;
    while (nv) {
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = nv < IOV_MAX ? nv : IOV_MAX};
        ssize_t w = sendmsg(r->c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            char what[300];
            snprintf(what, sizeof what, "lost connection: %s",
                     w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "write timed out"
                     : w < 0                                            ? strerror(errno)
                                                                        : "nothing written");
            set_err(errstr, errstr_size, "redis %s: %s", r->url, what);
            drop(r, what);
            return -1;
        }
        r->bytes_sent += (uint64_t)w;
        size_t done = (size_t)w;
        while (nv && done >= v->iov_len) {
            done -= v->iov_len;
            v++;
            nv--;
        }
        if (nv) {
            v->iov_base = (char *)v->iov_base + done;
            v->iov_len -= done;
        }
    }
    r->sends++;
    r->n_segs = 0;
    fd_resp_reset(&r->own);
    return 0;
}

int fd_redis_appendv(fd_redis *r, int argc, const char **argv, const size_t *argvlen)
{
    if (!r->c)
        return -1;
    size_t off = r->own.len;
    fd_resp_cmd(&r->own, argc);
    for (int i = 0; i < argc; i++)
        fd_resp_arg(&r->own, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    if (!fd_resp_ok(&r->own) || queue(r, NULL, off, r->own.len - off) != 0) {
        drop(r, "cannot append command (out of memory)");
        return -1;
    }
    r->pending++;
    return 0;
}

int fd_redis_append_raw(fd_redis *r, const char *buf, size_t len, size_t n_cmds)
{
    if (!r->c)
        return -1;
    if (queue(r, buf, 0, len) != 0) {
        drop(r, "cannot append commands (out of memory)");
        return -1;
    }
    r->pending += n_cmds;
    return 0;
}

int fd_redis_appendf(fd_redis *r, const char *fmt, ...)
{
    if (!r->c)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL; /* hiredis' printf-style formatting: few commands per write */
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    size_t off = r->own.len;
    if (len >= 0)
        fd_resp_cat(&r->own, &(fd_resp){.p = cmd, .len = (size_t)len, .n_cmds = 1});
    redisFreeCommand(cmd);
    if (len < 0 || !fd_resp_ok(&r->own) || queue(r, NULL, off, r->own.len - off) != 0) {
        drop(r, "cannot append command (bad format or out of memory)");
        return -1;
    }
    r->pending++;
    return 0;
}

void fd_redis_sent(const fd_redis *r, uint64_t *bytes, uint64_t *sends)
{
    *bytes = r->bytes_sent;
    *sends = r->sends;
}

size_t fd_redis_pending(const fd_redis *r)
{
    return r->pending;
}

int fd_redis_read_replies(fd_redis *r, redisReply **replies, size_t n, char *errstr,
                          size_t errstr_size)
{
    if (!r->c) {
        set_err(errstr, errstr_size, "redis %s: not connected", r->url);
        return -1;
    }
    size_t want = (!replies && n == 0) ? r->pending : n; /* NULL, 0: discard all */
    if (want > r->pending) {
        char what[96];
        snprintf(what, sizeof what, "asked for %zu replies, %zu pending", n, r->pending);
        set_err(errstr, errstr_size, "redis %s: %s", r->url, what);
        drop(r, what); /* the pipeline cannot be resynchronised */
        return -1;
    }
    if (want && send_queue(r, errstr, errstr_size) != 0)
        return -1;
    for (size_t i = 0; i < want; i++) {
        void *rep = NULL;
        if (redisGetReply(r->c, &rep) != REDIS_OK || !rep || r->c->err) {
            char what[300];
            snprintf(what, sizeof what, "lost connection: %s",
                     r->c->errstr[0] ? r->c->errstr : "no reply");
            set_err(errstr, errstr_size, "redis %s: %s", r->url, what);
            if (rep)
                freeReplyObject(rep);
            if (replies) {
                for (size_t j = 0; j < i; j++) {
                    freeReplyObject(replies[j]);
                    replies[j] = NULL;
                }
            }
            drop(r, what);
            return -1;
        }
        if (replies)
            replies[i] = rep;
        else
            freeReplyObject(rep);
        r->pending--;
    }
    return 0;
}

redisReply *fd_redis_command(fd_redis *r, char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!r->c) {
        set_err(errstr, errstr_size, "redis %s: not connected", r->url);
        return NULL;
    }
    if (r->pending) {
        set_err(errstr, errstr_size, "redis %s: %zu pipelined replies pending; read them first",
                r->url, r->pending);
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(r->c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        set_err(errstr, errstr_size, "redis %s: cannot append command: %s", r->url, r->c->errstr);
        drop(r, r->c->errstr[0] ? r->c->errstr : "cannot append command");
        return NULL;
    }
    r->pending = 1;
    redisReply *rep = NULL;
    if (fd_redis_read_replies(r, &rep, 1, errstr, errstr_size) < 0)
        return NULL;
    return rep;
}

fd_redis_opts fd_redis_opts_from_config(const fd_config *cfg)
{
    fd_redis_opts o = {.url = cfg->redis_url,
                       .password_file = cfg->redis_password_file,
                       .password_env = cfg->redis_password_env,
                       .username = cfg->redis_username,
                       .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                       .command_timeout_ms = cfg->redis_command_timeout_ms,
                       .backoff_min_ms = cfg->redis_backoff_min_ms,
                       .backoff_max_ms = cfg->redis_backoff_max_ms};
    return o;
}
