/*
 * notify.h - funneld's side of systemd's notify protocol (sd_notify(3)):
 * READY=1 once the engine has its assignment, STATUS= lines with the
 * event rate and lag, WATCHDOG=1 only while every shard makes progress,
 * STOPPING=1 when the engine starts to drain. Without NOTIFY_SOCKET every
 * call is a no-op. And, systemd or not, the periodic progress line in the
 * log (log.progress_interval). Engine thread only (the engine's
 * before_poll hook).
 */
#ifndef FD_NOTIFY_H
#define FD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/engine.h"

typedef struct fd_notify {
    bool ready_sent, stopping_sent;
    uint64_t watchdog_usec; /* WATCHDOG_USEC for us, 0: no watchdog */
    int64_t last_ping_ms, last_status_ms, stuck_logged_ms;
    uint64_t last_messages;
    int64_t start_ms;
    /* the progress line (log.progress_interval): what it last said */
    int64_t progress_every_ms, progress_ms;
    uint64_t progress_messages, progress_writes;
    int64_t progress_dead, progress_write_ms;
    /* the HTTP listener's copy (http.c), published every second */
    struct fd_http *http;
    struct fd_engine_metrics *metrics;
    int64_t published_ms;
} fd_notify;

/* Read WATCHDOG_USEC (sd_watchdog_enabled) and note the start; a progress
 * line every progress_every_ms (0: none). */
void fd_notify_init(fd_notify *n, int64_t progress_every_ms);
/* The engine's before_poll hook (arg: the fd_notify). */
void fd_notify_before_poll(fd_engine *e, bool stopping, void *arg);

#endif
