/*
 * notify.c - see notify.h.
 *
 * Why the watchdog asks the shards: the engine thread runs this hook, so
 * a ping proves that thread alive, but a shard thread can hang on its own
 * (a lock, a lost Redis reply) while the engine keeps polling. A shard
 * that has items queued and finished no batch for half the watchdog
 * interval stops the pings, and systemd restarts funneld (WatchdogSec=):
 * the state in Redis is exactly-once, so a restart loses nothing. A shard
 * waiting for Redis to load users is not stuck (an outage is not a
 * reason to restart).
 */
#include "daemon/notify.h"

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "daemon/clock.h"
#include "daemon/http.h"
#include "daemon/log.h"

#define STATUS_EVERY_MS 2000

void fd_notify_init(fd_notify *n, int64_t progress_every_ms)
{
    memset(n, 0, sizeof *n);
    n->progress_every_ms = progress_every_ms;
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        n->watchdog_usec = usec;
    n->start_ms = fd_mono_ms();
    n->last_status_ms = n->start_ms;
    n->progress_ms = n->start_ms;
}

/* The progress line: what happened since the last one. */
static void progress_line(fd_notify *n, const fd_engine_status *st, int64_t now)
{
    double secs = (double)(now - n->progress_ms) / 1000.0;
    uint64_t ev = st->messages - n->progress_messages, w = st->writes - n->progress_writes;
    int64_t wms = st->write_ms_sum - n->progress_write_ms;
    char lag[32];
    if (st->lag >= 0)
        snprintf(lag, sizeof lag, "%" PRId64, st->lag);
    else
        snprintf(lag, sizeof lag, "unknown");
    fd_info("main",
            "progress: %" PRIu64 " events in %.0f s (%.0f/s), %" PRId64
            " dead letters, lag %s, %" PRIu64 " writes (avg %.0f ms, last %" PRId64
            " ms), %d partition(s)%s",
            ev, secs, secs > 0 ? (double)ev / secs : 0.0, st->dead_letters - n->progress_dead, lag,
            w, w ? (double)wms / (double)w : 0.0, st->last_write_ms, st->assigned,
            st->progressing ? "" : ", a shard is stuck");
    n->progress_ms = now;
    n->progress_messages = st->messages;
    n->progress_writes = st->writes;
    n->progress_write_ms = st->write_ms_sum;
    n->progress_dead = st->dead_letters;
}

static void status_line(fd_notify *n, const fd_engine_status *st, int64_t now, char *buf,
                        size_t size)
{
    double secs = (double)(now - n->last_status_ms) / 1000.0;
    double rate = secs > 0 ? (double)(st->messages - n->last_messages) / secs : 0;
    char lag[32];
    if (st->lag >= 0)
        snprintf(lag, sizeof lag, "%" PRId64, st->lag);
    else
        snprintf(lag, sizeof lag, "unknown");
    snprintf(buf, size,
             "STATUS=%d partition(s), %.0f events/s, lag %s, %" PRIu64 " events since start%s",
             st->assigned, rate, lag, st->messages, st->progressing ? "" : ", a shard is stuck");
    n->last_messages = st->messages;
    n->last_status_ms = now;
}

void fd_notify_before_poll(fd_engine *e, bool stopping, void *arg)
{
    fd_notify *n = arg;
    if (stopping) {
        fd_http_publish(n->http, NULL, true);
        if (!n->stopping_sent) {
            sd_notify(0, "STOPPING=1\nSTATUS=draining: writing the last state to Redis");
            n->stopping_sent = true;
        }
        return;
    }
    int64_t now = fd_mono_ms();
    int64_t half = n->watchdog_usec ? (int64_t)(n->watchdog_usec / 2000) : 0;
    /* systemd arms the watchdog once the start-up is done (READY=1): no
     * keep-alive before it */
    bool ping_due = half > 0 && n->ready_sent && now - n->last_ping_ms >= half;
    bool status_due = now - n->last_status_ms >= STATUS_EVERY_MS;
    bool progress_due = n->progress_every_ms > 0 && now - n->progress_ms >= n->progress_every_ms;
    if (n->http && now - n->published_ms >= 1000) {
        if (!n->metrics)
            n->metrics = malloc(sizeof *n->metrics);
        if (n->metrics) {
            fd_engine_get_metrics(e, n->metrics);
            fd_http_publish(n->http, n->metrics, false);
        } else {
            fd_http_publish(n->http, NULL, false); /* alive, with the last copy */
        }
        n->published_ms = now;
    }
    if (n->ready_sent && !ping_due && !status_due && !progress_due)
        return; /* the common case: nothing to say */
    fd_engine_status st;
    /* stuck: items queued and no batch done for half the watchdog
     * interval (10 s without a watchdog: then only STATUS says it) */
    fd_engine_get_status(e, half > 0 ? half : 10000, &st);
    char status[256];
    if (!n->ready_sent && st.ready) {
        status_line(n, &st, now, status, sizeof status);
        char msg[300];
        snprintf(msg, sizeof msg, "READY=1\n%s", status);
        sd_notify(0, msg);
        n->ready_sent = true;
        fd_info("main", "ready: %d partition(s) assigned", st.assigned);
        ping_due = half > 0; /* the first keep-alive right after */
    } else if (status_due) {
        status_line(n, &st, now, status, sizeof status);
        sd_notify(0, status);
    }
    if (progress_due)
        progress_line(n, &st, now);
    if (ping_due) {
        if (st.progressing) {
            sd_notify(0, "WATCHDOG=1");
            n->last_ping_ms = now;
        } else if (now - n->stuck_logged_ms >= 10000) {
            fd_err("main",
                   "shard %d has had work queued and finished nothing for %" PRId64
                   " ms: no watchdog keep-alive (systemd restarts funneld after "
                   "WatchdogSec)",
                   st.stuck_shard, half);
            n->stuck_logged_ms = now;
        }
    }
}
