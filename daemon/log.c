/*
 * log.c - see log.h. The threshold is an atomic int so any thread may log
 * while SIGHUP handling changes the level.
 */
#include "daemon/log.h"

#include "daemon/config.h"
#include "daemon/utf8.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = FD_LOG_INFO;
static atomic_int log_json = 0; /* log.format: 0 text, 1 json */
/* -1 not decided yet; 1 stderr is the journal's stream: "<N>" prefixes and
 * no timestamps (journald adds its own); 0 anything else (a terminal, a
 * redirected file): timestamped lines. */
static atomic_int to_journal = -1;

/* systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connected
 * to stderr; a child that inherited the variable but writes elsewhere (a
 * redirect, a pipe) must not take it (systemd.exec(5)). */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char tail;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) != 2)
        return 0;
    if (fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int fd_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "error"))
        return FD_LOG_ERROR;
    if (!strcmp(s, "warn"))
        return FD_LOG_WARN;
    if (!strcmp(s, "info"))
        return FD_LOG_INFO;
    if (!strcmp(s, "debug"))
        return FD_LOG_DEBUG;
    return -1;
}

void fd_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int fd_log_get_level(void)
{
    return atomic_load(&log_level);
}

int fd_log_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "text"))
        return FD_LOG_TEXT;
    if (!strcmp(s, "json"))
        return FD_LOG_JSON;
    return -1;
}

void fd_log_set_format(int format)
{
    atomic_store(&log_json, format == FD_LOG_JSON);
}

/* s as the inside of a JSON string into out (at most n bytes with the NUL):
 * quotes, backslashes and control characters escaped; bytes that are not
 * UTF-8 (a user id is arbitrary bytes) as \u00XX of the byte, so the line
 * stays valid JSON. Returns the length written. */
static size_t json_escape(const char *s, size_t len, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len && o + 7 < n; i++) {
        unsigned c = u[i];
        uint32_t cp;
        size_t ulen = c >= 0x80 ? fd_utf8_seq(u + i, len - i, &cp) : 0;
        if (ulen && o + ulen < n) { /* a well-formed sequence: as is */
            memcpy(out + o, s + i, ulen);
            o += ulen;
            i += ulen - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20 || c >= 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
    return o;
}

static const char *level_name(int level)
{
    switch (level) {
    case FD_LOG_ERROR:
        return "error";
    case FD_LOG_WARN:
        return "warn ";
    case FD_LOG_INFO:
        return "info ";
    default:
        return "debug";
    }
}

void fd_log(int level, const char *subsys, const char *fmt, ...)
{
    if (level > atomic_load(&log_level))
        return;
    char line[2048];
    int n;
    int journal = atomic_load(&to_journal);
    if (journal < 0) { /* decided once: stderr does not change under us */
        journal = stderr_is_journal();
        atomic_store(&to_journal, journal);
    }
    if (journal) {
        n = snprintf(line, sizeof line, "<%d>%s: ", level, subsys);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), level_name(level), subsys);
    }
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len] = 0;
    /* No line shows a URL's credentials (a client.id, a broker list, a
     * librdkafka message quoting a property): cheap unless "://" and '@'. */
    if (strstr(line + n, "://") && strchr(line + n, '@')) {
        char red[sizeof line];
        fd_config_redact_urls(line + n, red, sizeof line - (size_t)n - 1);
        len = (size_t)n + strlen(red);
        memcpy(line + n, red, len - (size_t)n);
    }
    if (atomic_load(&log_json)) {
        /* {"ts":..., "level":..., "component":..., "msg":...}; under the
         * journal the "<N>" prefix still comes first (journald strips it
         * and keeps the level) and the timestamp is journald's own */
        char js[sizeof line * 6 + 256];
        size_t o = 0;
        if (journal) {
            o = (size_t)snprintf(js, sizeof js, "<%d>{", level);
        } else {
            struct timeval tv;
            struct tm tm;
            gettimeofday(&tv, NULL);
            gmtime_r(&tv.tv_sec, &tm);
            o = (size_t)snprintf(js, sizeof js, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",",
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                 tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
        }
        const char *lv = level_name(level);
        o += (size_t)snprintf(js + o, sizeof js - o, "\"level\":\"%.*s\",\"component\":\"",
                              (int)strcspn(lv, " "), lv);
        o += json_escape(subsys, strlen(subsys), js + o, sizeof js - o);
        o += (size_t)snprintf(js + o, sizeof js - o, "\",\"msg\":\"");
        o += json_escape(line + n, len - (size_t)n, js + o, sizeof js - o - 4);
        memcpy(js + o, "\"}\n", 3);
        o += 3;
        ssize_t w = write(STDERR_FILENO, js, o);
        (void)w;
        return;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
