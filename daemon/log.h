/*
 * log.h - one line per event, level-gated, tagged by subsystem:
 *   "2026-11-23T16:49:23.123Z info  kafka: partition=3 offset=1200 ..."
 * Under systemd (JOURNAL_STREAM set) lines carry the "<N>" priority prefix
 * instead of the timestamp so journald keeps the level. Thread-safe: each
 * line is written with one fputs-sized write to stderr.
 */
#ifndef FD_LOG_H
#define FD_LOG_H

enum { FD_LOG_ERROR = 3, FD_LOG_WARN = 4, FD_LOG_INFO = 6, FD_LOG_DEBUG = 7 };

/* Parse "error|warn|info|debug"; -1 when unknown. */
int fd_log_level_parse(const char *s);
/* Set the process-wide threshold (default info). Any thread. */
void fd_log_set_level(int level);
int fd_log_get_level(void);

/* log.format: text lines (above), or one JSON object per line:
 *   {"ts":"2026-11-23T16:49:23.123Z","level":"info","component":"kafka","msg":"..."}
 * (every string escaped; bytes that are not UTF-8 as \u00XX). */
enum { FD_LOG_TEXT = 0, FD_LOG_JSON = 1 };
/* Parse "text|json"; -1 when unknown. */
int fd_log_format_parse(const char *s);
void fd_log_set_format(int format); /* any thread */

void fd_log(int level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define fd_err(sub, ...)   fd_log(FD_LOG_ERROR, sub, __VA_ARGS__)
#define fd_warn(sub, ...)  fd_log(FD_LOG_WARN, sub, __VA_ARGS__)
#define fd_info(sub, ...)  fd_log(FD_LOG_INFO, sub, __VA_ARGS__)
#define fd_debug(sub, ...) fd_log(FD_LOG_DEBUG, sub, __VA_ARGS__)

#endif
