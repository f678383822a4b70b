/*
 * engine.c - see engine.h. The consumer thread: polls Kafka, routes each
 * message by its key to the shard that owns the user, and writes what the
 * shards prepared to Redis (the writer; an I/O thread reads the replies of
 * the write in flight while the consumer thread goes on routing). A
 * closer thread closes funnel windows and sends their metrics.
 *
 * Exactly-once state, the way this file keeps it:
 *
 *  - Every effect of a message lives in a shard's memory until an epoch
 *    writes it. To start epoch E the consumer records, for each partition,
 *    the next offset after the last message it handed to a shard, then puts
 *    a marker in every shard's queue. A shard reaches the marker only after
 *    applying every message queued before it, and answers with a snapshot
 *    of what changed, filed by partition. The writer sends all snapshots of
 *    E and the recorded offsets (key PREFIX part:TOPIC:P, fields offset and
 *    max_ts) in one MULTI/EXEC. So Redis never holds an effect without the
 *    offset that covers it, nor the reverse; on (re)assignment a partition
 *    is sought to its stored offset. The one exception is the funnel's
 *    unique users: PFADD is idempotent, so the shards' PFADDs go just
 *    before the MULTI on the same connection (applied before the offsets
 *    that cover them; a replay adds the same users again).
 *  - Messages are handed to shards strictly in poll order: when one shard's
 *    queue is full, routing stops (later messages wait, partitions pause),
 *    so a recorded offset never skips a message still waiting.
 *  - Users are written as absolute values (loaded on first sight); minute
 *    windows and stats as HINCRBY deltas. Deltas are not idempotent, so a
 *    write whose EXEC reply was lost is not blindly repeated: the next try
 *    WATCHes the partition keys and reads the stored offsets first. Equal to
 *    what we wrote: the lost EXEC applied. Equal to the previous ones: it did
 *    not. Anything else: another instance owns the partition now; we drop
 *    what we hold for it and seek to what is stored.
 *  - Every dead letter produced so far must be delivered before an epoch is
 *    written, so an offset past a rejected message is never stored before
 *    its dead letter exists.
 *  - When Redis, the producer or a shard falls behind, every assigned
 *    partition is paused (backpressure, nothing dropped); the consumer keeps
 *    polling so the group membership stays alive.
 */
#include "pipeline/engine.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "features/user.h"
#include "features/funnel.h"
#include "pipeline/codec.h"
#include "pipeline/metrics.h"
#include "pipeline/kafka.h"
#include "pipeline/kafka_mock.h"
#include "pipeline/redis.h"
#include "pipeline/shard.h"

#define ROUTE_CHUNK  512 /* messages routed per round */
#define PART_KEY_MAX 512 /* PREFIX part:TOPIC:P (part_key) */
#define MAX_EPOCHS   4   /* pending epochs (normally one) */
/* Flush before the interval when this many users changed (bounds the size
 * of one MULTI/EXEC and the memory of a snapshot). */
#define FLUSH_DIRTY_USERS 100000

typedef struct part {
    bool assigned, paused, need_resolve, dirty;
    int64_t next_offset;      /* after the last message handed to a shard; -1 unknown */
    int64_t polled_offset;    /* after the last message polled (handed on or waiting) */
    int64_t stored_offset;    /* in Redis (confirmed); -1 = none */
    int64_t max_ts;           /* max event time routed (readable ts, not in the future) */
    int64_t confirmed_max_ts; /* max_ts stored in Redis with stored_offset */
    int64_t data_loss;        /* offsets lost to retention, not yet written */
} part;

/* The closer: a thread of its own that closes the funnel windows the
 * topic's watermark (in Redis) has passed, sends their metrics and deletes
 * expired ones, with its own Redis connection. Closing reads and writes
 * only windows no event can change any more, so it needs no lock with the
 * writer; on the consumer thread it took as long as the writes themselves
 * (a delivery wait per 512 windows) and starved the shards meanwhile.
 * Everything below is the closer thread's own while it runs; the consumer
 * thread uses it only after closer_stop joined it. */
/* A helper thread: the flag that stops it, and the lock and condition it
 * waits on (the closer and the writer's I/O thread). */
typedef struct bgthread {
    pthread_t thread;
    bool started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} bgthread;

static void bg_init(bgthread *b)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
}

static int bg_start(bgthread *b, void *(*fn)(void *), void *arg)
{
    b->started = pthread_create(&b->thread, NULL, fn, arg) == 0;
    return b->started ? 0 : -1;
}

/* Set stop, wake the thread, join it. */
static void bg_stop(bgthread *b)
{
    if (!b->started)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    b->started = false;
}

static void bg_destroy(bgthread *b)
{
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

typedef struct part_empty {
    bool empty, nonempty;     /* the broker said the partition is (not) empty */
    int64_t empty_checked_at; /* when it was last asked (mono ms) */
    int64_t empty_since;      /* first of the answers "empty" in a row (mono ms), or 0 */
} part_empty;

typedef struct closer {
    bgthread t;             /* its mu guards kicks */
    uint64_t kicks;         /* writes since start: each may let windows close */
    fd_redis *redis;        /* the closer's connection */
    fd_metrics_enc *menc;   /* funnel-metrics messages */
    int64_t closed_wm;      /* windows ending at or before this were sent */
    int n_topic_parts;      /* partitions of the events topic (metadata) */
    int64_t topic_parts_at; /* when n_topic_parts was read */
    part_empty *pe;         /* per topic partition */
    int n_pe;
    atomic_bool catching_up; /* the consumer has a backlog (set after each write) */
} closer;

/* The writer's I/O thread: once the consumer thread has queued a whole
 * write (PFADDs, MULTI ... EXEC) on the writer's connection, this thread
 * sends it and reads the replies, so the consumer thread keeps polling and
 * routing meanwhile (the shards' queues drain in ~50 ms; a write takes
 * 100-400 ms on a backlog). The connection is handed over and back under
 * mu: the consumer thread touches e->redis only while state is IO_IDLE
 * (write_poll waits for that first). */
enum { IO_IDLE = 0, IO_PENDING, IO_DONE };
#define IO_ERR_MAX 16
typedef struct wio {
    bgthread t; /* its mu guards what follows */
    int state;
    size_t n_replies;  /* to read; the last is kept */
    size_t n_pre;      /* of them, before MULTI's (the PFADDs) */
    int rc;            /* 0, or -1: the connection failed (outcome unknown) */
    redisReply *reply; /* the last one (EXEC's) */
    /* Error replies, for the consumer thread to name (see refused_cmd):
     * among the n_pre, which (the first IO_ERR_MAX) and what Redis said;
     * and the first one from MULTI on, which says why EXEC was aborted. */
    size_t n_pre_err;
    size_t pre_err_at[IO_ERR_MAX];
    char pre_err[IO_ERR_MAX][160];
    char queued_err[256];
} wio;

/* Commands Redis refused inside a write, by kind (stats write_errors.KIND):
 * the key families of docs/REDIS_KEYS.md. */
enum { WE_WINDOW = 0, WE_UNIQUE_USERS, WE_FUNNEL_OPEN, WE_USER, WE_STATS, WE_PART, WE__COUNT };
static const char *const we_kind[WE__COUNT] = {"window", "unique_users", "funnel_open",
                                               "user",   "stats",        "part"};
/* The stats fields the writer adds: the shards' (FD_ST_*), then
 * write_errors and write_errors.KIND (see stat_field). */
#define SF_WE_TOTAL FD_ST__COUNT
#define SF_WE0      (FD_ST__COUNT + 1)
#define SF__COUNT   (SF_WE0 + WE__COUNT)

/* A run of commands of one write, for naming the key of a refused one. */
typedef struct wseg {
    size_t first, n;    /* replies before MULTI's (pre), or EXEC's elements */
    bool pre;           /* before MULTI (PFADDs) */
    uint8_t kind;       /* WE_* */
    const fd_resp *src; /* the commands (alive until the write is finished), or NULL */
    int field;          /* WE_STATS: the SF_* field the HINCRBY adds to */
    int64_t value;      /*   and by how much */
    int32_t part;       /* WE_PART: the partition */
} wseg;

/* Keys already named in the log (refused_cmd): at most once per
 * WKEY_RELOG_MS each; the rest go into a summary every WSUMMARY_MS. */
#define WKEY_SLOTS    64
#define WKEY_RELOG_MS (10 * 60 * 1000)
#define WSUMMARY_MS   60000
typedef struct wkeys {
    uint64_t hash[WKEY_SLOTS];
    int64_t at[WKEY_SLOTS]; /* when logged (mono ms); 0 = free */
    uint64_t quiet;         /* refused commands not logged since the last summary */
    int64_t summary_at;
} wkeys;

/* Redis refuses whole writes (OOM, MISCONF, READONLY, LOADING, NOAUTH, a
 * partition key of another type, ...): retried with redis.backoff_*; logged
 * when it starts, every REFUSE_SUMMARY_MS while it lasts, when it ends. */
#define REFUSE_SUMMARY_MS 10000
typedef struct wrefusal {
    bool active;
    fd_backoff bo;
    char cause[320], code[32];
    int64_t since, summary_at;
    uint64_t attempts, at_summary;
} wrefusal;

/* What the consumer thread needs to finish a write once io read it. */
typedef struct inflight {
    bool active;
    int32_t *parts; /* partitions written */
    int64_t *offset, *max_ts;
    int n, n_epochs;
    size_t n_cmds;
    int64_t t_start;
} inflight;

/* One flush: the offsets recorded at its marker and the shards' snapshots. */
typedef struct epoch {
    uint64_t id;
    int n_parts;                       /* size of the arrays below */
    int64_t *offset;                   /* per partition; -1 = not in this epoch */
    int64_t *max_ts;                   /* per partition: its max_ts at the marker */
    int64_t *data_loss;                /* per partition */
    int64_t dlq_failed[FD_REJ__COUNT]; /* dead letters reported failed, taken into it */
    bool *valid;                       /* per partition: still ours (false once revoked) */
    fd_snapshot **snaps;               /* per shard; NULL until it answered */
    int missing;                       /* shards yet to answer */
} epoch;

struct fd_engine {
    const fd_config *cfg;
    fd_mock *mock;
    char *bootstraps;
    rd_kafka_t *consumer, *producer;
    fd_redis *redis;         /* the writer's connection */
    fd_funnel_table *merged; /* the writer's scratch: windows of one write */
    fd_resp wbuf;            /* the writer's scratch: commands of one write */
    fd_core_params core;     /* features and funnel parameters (shards share them) */
    fd_codec *codec;         /* the consumer thread's: event times for the watermark */
    closer cl;               /* closes windows and sends their metrics */
    fd_shard **shards;
    int n_shards;
    fd_shard_env env;
    atomic_uint_fast64_t confirmed_epoch;
    atomic_int abort;
    atomic_int stalled;
    bool stall_blocked; /* blocked because shards wait for Redis */

    part *parts;
    int n_parts;

    /* messages polled but not yet handed to a shard, in poll order */
    rd_kafka_message_t **wait;
    size_t wait_head, wait_len, wait_cap;
    fd_item *route_buf;        /* per shard ROUTE_CHUNK items */
    rd_kafka_message_t **reap; /* scratch list for fd_shard_reap */
    size_t reap_cap;
    size_t *route_n, *route_room;

    epoch *epochs[MAX_EPOCHS]; /* pending, oldest first */
    int n_epochs;
    uint64_t next_epoch;
    wio io;                  /* reads the replies of the write in flight */
    inflight wf;             /* the write whose replies io is reading */
    bool write_ambiguous;    /* the last EXEC's outcome is unknown */
    int64_t *attempt_offset; /* per partition, offsets of that EXEC */
    wrefusal refuse;         /* Redis refuses whole writes */
    wseg *segs;              /* the write in flight's runs of commands */
    size_t n_segs, cap_segs;
    bool segs_oom;                 /* a run could not be recorded: its errors go unnamed */
    wkeys wkeys;                   /* keys named in the log */
    int64_t carry[SF__COUNT];      /* stats deltas not stored yet (refused, or write errors) */
    int64_t carry_sent[SF__COUNT]; /* of them, in the write in flight (or the ambiguous one) */
    fd_backoff carry_bo;           /* flush_carry's retries */

    bool blocked;    /* Redis or the producer unavailable */
    bool queue_full; /* a shard's queue is full */
    int64_t queue_full_since;
    int fatal;
    int64_t last_flush_ms;
    int64_t last_write_ms;  /* how long the last MULTI/EXEC round trip took */
    char key[PART_KEY_MAX]; /* the consumer thread's part_key buffer */

    rd_kafka_queue_t *cq;   /* the consumer's queue (batch consume) */
    fd_fetch_nudge nudge;   /* wakes librdkafka's fetcher after a full queue drained */
    int64_t dlq_wait_since; /* a write waits for dead letters since (mono ms), or 0 */
    int64_t dlq_failed_taken[FD_REJ__COUNT]; /* fd_kafka_dlq_failed taken into epochs */
    int64_t backlog_checked_ms;              /* when cl.catching_up was last refreshed */
};

static bool backlog(const fd_engine *e);

static part *get_part(fd_engine *e, int32_t p)
{
    if (p < 0 || p > 65535)
        return NULL;
    if (p >= e->n_parts) {
        int n = e->n_parts ? e->n_parts : 16;
        while (n <= p)
            n *= 2;
        part *np = realloc(e->parts, (size_t)n * sizeof *np);
        int64_t *na = realloc(e->attempt_offset, (size_t)n * sizeof *na);
        if (!np || !na) {
            if (np)
                e->parts = np;
            if (na)
                e->attempt_offset = na;
            return NULL;
        }
        for (int i = e->n_parts; i < n; i++) {
            memset(&np[i], 0, sizeof np[i]);
            np[i].next_offset = np[i].stored_offset = np[i].polled_offset = -1;
            na[i] = -1;
        }
        e->parts = np;
        e->attempt_offset = na;
        e->n_parts = n;
    }
    return &e->parts[p];
}

/* PREFIX part:TOPIC:P into the caller's buffer (the consumer thread and
 * the closer both need it). */
static const char *part_key(const fd_engine *e, int32_t p, char buf[PART_KEY_MAX])
{
    snprintf(buf, PART_KEY_MAX, "%spart:%s:%" PRId32, e->cfg->redis_key_prefix,
             e->cfg->kafka_topic_events, p);
    return buf;
}

/* Queue a control item on every shard (they have reserved room for them). */
static void broadcast(fd_engine *e, fd_item it)
{
    for (int i = 0; i < e->n_shards; i++)
        while (fd_shard_push(e->shards[i], &it, 1) != 1)
            fd_sleep_ms(1); /* only if >1024 control items are queued: shard is stuck */
}

/* ---- pausing ----------------------------------------------------------- */

/* Pause or resume one partition. A resumed partition is sought to just
 * after the last message polled from it, so what librdkafka purged while
 * it was paused is fetched again and nothing is skipped (duplicates are
 * dropped by offset). */
static void set_paused(fd_engine *e, int32_t p, bool paused)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, e->cfg->kafka_topic_events, p);
    if (!paused && e->parts[p].polled_offset >= 0 && !e->parts[p].need_resolve) {
        l->elems[0].offset = e->parts[p].polled_offset;
        rd_kafka_error_t *serr = rd_kafka_seek_partitions(e->consumer, l, 5000);
        if (serr) {
            fd_warn("engine", "partition=%" PRId32 ": seek to %" PRId64 " on resume: %s", p,
                    e->parts[p].polled_offset, rd_kafka_error_string(serr));
            rd_kafka_error_destroy(serr);
        }
    }
    rd_kafka_resp_err_t err = paused ? rd_kafka_pause_partitions(e->consumer, l)
                                     : rd_kafka_resume_partitions(e->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        fd_warn("engine", "%s partition=%" PRId32 ": %s", paused ? "pause" : "resume", p,
                rd_kafka_err2str(err));
    else
        e->parts[p].paused = paused;
}

/* Partitions pause while their offset is unknown, while Redis or the
 * producer is unavailable, and when the shards' queues stayed full for a
 * while (a short full queue is waited out without pausing: pausing makes
 * librdkafka drop and refetch what it had prefetched). */
#define QUEUE_FULL_PAUSE_MS 2000
/* An epoch has waited this long for its dead letters' delivery: pause. */
#define DLQ_WAIT_PAUSE_MS 1000

static void sync_pause(fd_engine *e)
{
    bool stalled = e->queue_full && fd_mono_ms() - e->queue_full_since >= QUEUE_FULL_PAUSE_MS;
    for (int32_t p = 0; p < e->n_parts; p++) {
        part *pt = &e->parts[p];
        if (!pt->assigned)
            continue;
        bool want = e->blocked || stalled || pt->need_resolve;
        if (want != pt->paused)
            set_paused(e, p, want);
    }
}

static void set_blocked(fd_engine *e, bool blocked, const char *why)
{
    if (blocked && !e->blocked)
        fd_warn("engine", "pausing consumption: %s", why);
    else if (!blocked && e->blocked)
        fd_info("engine", "resuming consumption");
    e->blocked = blocked;
}

/* ---- epochs ---------------------------------------------------------- */

static size_t dirty_users(fd_engine *e)
{
    size_t n = 0;
    for (int i = 0; i < e->n_shards; i++)
        n += fd_shard_dirty(e->shards[i]);
    return n;
}

/* More users in memory than state.max_users_in_memory: flush at the
 * configured interval even while a backlog stretches it, since shards evict
 * only users whose state a confirmed flush carried. */
static bool over_user_bound(fd_engine *e)
{
    size_t n = 0;
    for (int i = 0; i < e->n_shards; i++)
        n += fd_shard_users(e->shards[i]);
    return n > (size_t)e->cfg->state_max_users_in_memory;
}

static void epoch_destroy(fd_engine *e, epoch *ep)
{
    if (!ep)
        return;
    if (ep->snaps) {
        for (int i = 0; i < e->n_shards; i++)
            fd_snapshot_free(ep->snaps[i]);
        free(ep->snaps);
    }
    free(ep->offset);
    free(ep->max_ts);
    free(ep->data_loss);
    free(ep->valid);
    free(ep);
}

/* Start an epoch when something changed: record offsets, send markers. */
static int start_epoch(fd_engine *e)
{
    bool any = false;
    for (int32_t p = 0; p < e->n_parts; p++)
        any |= e->parts[p].assigned && e->parts[p].dirty && !e->parts[p].need_resolve;
    if (!any)
        return 0;
    if (e->n_epochs == MAX_EPOCHS)
        return -1;
    epoch *ep = calloc(1, sizeof *ep);
    if (!ep)
        return -1;
    ep->id = ++e->next_epoch;
    ep->n_parts = e->n_parts;
    ep->offset = malloc((size_t)e->n_parts * sizeof *ep->offset);
    ep->max_ts = calloc((size_t)e->n_parts, sizeof *ep->max_ts);
    ep->data_loss = calloc((size_t)e->n_parts, sizeof *ep->data_loss);
    ep->valid = calloc((size_t)e->n_parts, sizeof *ep->valid);
    ep->snaps = calloc((size_t)e->n_shards, sizeof *ep->snaps);
    if (!ep->offset || !ep->max_ts || !ep->data_loss || !ep->valid || !ep->snaps) {
        epoch_destroy(e, ep);
        return -1;
    }
    for (int32_t p = 0; p < e->n_parts; p++) {
        part *pt = &e->parts[p];
        ep->offset[p] = -1;
        if (pt->assigned && pt->dirty && !pt->need_resolve) {
            ep->offset[p] = pt->next_offset;
            ep->max_ts[p] = pt->max_ts;
            ep->data_loss[p] = pt->data_loss;
            ep->valid[p] = true;
            pt->data_loss = 0;
            pt->dirty = false;
        }
    }
    ep->missing = e->n_shards;
    e->epochs[e->n_epochs++] = ep;
    fd_item it = {.kind = FD_ITEM_MARKER, .value = (int64_t)ep->id};
    broadcast(e, it);
    return 0;
}

/* Collect the shards' answers. Returns true when every pending epoch is
 * complete. */
static bool collect(fd_engine *e)
{
    bool all = true;
    for (int k = 0; k < e->n_epochs; k++) {
        epoch *ep = e->epochs[k];
        for (int i = 0; i < e->n_shards && ep->missing; i++) {
            if (ep->snaps[i])
                continue;
            fd_snapshot *sn = fd_shard_take(e->shards[i], ep->id);
            if (sn) {
                if (sn->error) {
                    fd_err("engine",
                           "shard=%d could not prepare epoch %" PRIu64
                           " (out of memory); stopping without writing it",
                           i, ep->id);
                    e->fatal = 1;
                }
                ep->snaps[i] = sn;
                ep->missing--;
            }
        }
        all &= ep->missing == 0;
    }
    return all;
}

/* Forget a partition in every pending epoch (revoked, or fenced). */
static void invalidate_partition(fd_engine *e, int32_t p)
{
    for (int k = 0; k < e->n_epochs; k++)
        if (p < e->epochs[k]->n_parts)
            e->epochs[k]->valid[p] = false;
    e->attempt_offset[p] = -1;
}

static void drop_waiting(fd_engine *e, const bool *drop, int n_drop);

/* Drop everything held for partition p and make it re-read its offset. */
static void drop_partition(fd_engine *e, int32_t p, bool resolve_again)
{
    invalidate_partition(e, p);
    fd_item it = {.kind = FD_ITEM_DROP, .partition = p};
    broadcast(e, it);
    part *pt = &e->parts[p];
    pt->dirty = false;
    pt->data_loss = 0;
    if (resolve_again) {
        bool *drop = calloc((size_t)e->n_parts, sizeof *drop);
        if (drop) {
            drop[p] = true;
            drop_waiting(e, drop, e->n_parts);
            free(drop);
        }
        pt->need_resolve = true;
        sync_pause(e);
    }
}

static void confirm(fd_engine *e, int upto)
{
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(8);
    uint64_t last = 0;
    for (int k = 0; k < upto; k++) {
        epoch *ep = e->epochs[k];
        for (int32_t p = 0; p < ep->n_parts && p < e->n_parts; p++) {
            if (!ep->valid[p] || ep->offset[p] < 0)
                continue;
            e->parts[p].stored_offset = ep->offset[p];
        }
        last = ep->id;
        epoch_destroy(e, ep);
    }
    memmove(e->epochs, e->epochs + upto, (size_t)(e->n_epochs - upto) * sizeof e->epochs[0]);
    e->n_epochs -= upto;
    for (int32_t p = 0; p < e->n_parts; p++) {
        if (e->parts[p].assigned && e->parts[p].stored_offset >= 0 && e->attempt_offset[p] >= 0)
            rd_kafka_topic_partition_list_add(commit, e->cfg->kafka_topic_events, p)->offset =
                e->parts[p].stored_offset;
        e->attempt_offset[p] = -1;
    }
    e->write_ambiguous = false;
    atomic_store(&e->confirmed_epoch, last);
    /* Kafka's committed offsets follow Redis, for lag tools only. */
    if (commit->cnt)
        rd_kafka_commit(e->consumer, commit, 1);
    rd_kafka_topic_partition_list_destroy(commit);
}

/* ---- funnel windows ------------------------------------------------- */

/* PREFIX funnel:SPAN:START[:cat:NAME] into buf. */
static const char *window_key(fd_engine *e, char *buf, size_t n, const char *span, int64_t start,
                              int32_t cat)
{
    return fd_funnel_key(buf, n, e->cfg->redis_key_prefix, span, start,
                         cat == FD_CAT_TOTAL ? NULL : ":cat:",
                         cat == FD_CAT_TOTAL ? NULL : fd_funnel_cat_name(&e->core.funnel, cat));
}

static bool hourly(const fd_engine *e)
{
    return e->core.funnel.window_ms != FD_HOUR_MS;
}

/* A shard's window delta into the writer's table: partition 0 holds the
 * windows, partition 1 the hourly roll-up. */
static int merge_window(fd_engine *e, const fd_funnel_delta *d)
{
    if (fd_funnel_merge(e->merged, 0, d->cat, d->start_ms, d->c) != 0)
        return -1;
    if (hourly(e) &&
        fd_funnel_merge(e->merged, 1, d->cat, d->start_ms - d->start_ms % FD_HOUR_MS, d->c) != 0)
        return -1;
    return 0;
}

/* HINCRBY every changed counter and remember the touched windows in the
 * open-window set (their TTL is set when they close). Returns the commands
 * queued. */
static size_t append_windows(fd_engine *e)
{
    size_t n_cmds = 0, cur = 0, n_open = 0;
    const fd_funnel_delta *d;
    char key[600], member[64];
    size_t cap = fd_funnel_count(e->merged);
    char **argv = calloc(2 + 2 * cap, sizeof *argv);
    fd_resp *b = &e->wbuf; /* RESP built here: hiredis' printf-style
                              formatting cost ~40 ms of this thread per write */
    fd_resp_reset(b);
    while ((d = fd_funnel_next(e->merged, &cur))) {
        const char *span = d->partition == 0 ? e->core.funnel.window_name : "1h";
        window_key(e, key, sizeof key, span, d->start_ms, d->cat);
        size_t klen = strlen(key);
        for (int f = 0; f < FD_FC__COUNT; f++)
            if (d->c[f]) {
                fd_resp_cmd(b, 4);
                fd_resp_str(b, "HINCRBY");
                fd_resp_arg(b, key, klen);
                fd_resp_str(b, fd_funnel_field_names[f]);
                fd_resp_int(b, d->c[f]);
                n_cmds++;
            }
        if (d->cat == FD_CAT_TOTAL && argv) {
            snprintf(member, sizeof member, "%s:%lld", span, (long long)d->start_ms);
            argv[2 + 2 * n_open] = malloc(24);
            argv[3 + 2 * n_open] = strdup(member);
            if (argv[2 + 2 * n_open])
                snprintf(argv[2 + 2 * n_open], 24, "%lld", (long long)d->start_ms);
            n_open++;
        }
    }
    if (b->oom || (n_cmds && fd_redis_append_raw(e->redis, b->p, b->len, n_cmds) != 0))
        e->fatal = 1; /* out of memory: this write is abandoned */
    if (argv && n_open) {
        char okey[512];
        snprintf(okey, sizeof okey, "%sfunnel:open", e->cfg->redis_key_prefix);
        argv[0] = strdup("ZADD");
        argv[1] = strdup(okey);
        bool ok = true;
        for (size_t i = 0; i < 2 + 2 * n_open; i++)
            ok &= argv[i] != NULL;
        if (ok) {
            fd_redis_appendv(e->redis, (int)(2 + 2 * n_open), (const char **)argv, NULL);
            n_cmds++;
        } else {
            e->fatal = 1; /* out of memory: this write is abandoned */
        }
    } else if (!argv && cap) {
        e->fatal = 1;
    }
    if (argv)
        for (size_t i = 0; i < 2 + 2 * cap; i++)
            free(argv[i]);
    free(argv);
    return n_cmds;
}

/* Partitions of the events topic (metadata), refreshed every 30 s; the
 * last known count when the broker does not answer. */
static int topic_partitions(fd_engine *e)
{
    int64_t now = fd_mono_ms();
    if (e->cl.n_topic_parts > 0 && now - e->cl.topic_parts_at < 30000)
        return e->cl.n_topic_parts;
    /* The producer's handle: nothing here may touch the consumer's state. */
    rd_kafka_topic_t *t = rd_kafka_topic_new(e->producer, e->cfg->kafka_topic_events, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (t && rd_kafka_metadata(e->producer, 0, t, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0) {
        e->cl.n_topic_parts = md->topics[0].partition_cnt;
        e->cl.topic_parts_at = now;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    return e->cl.n_topic_parts;
}

/* Whether the broker says partition p of the events topic has never held a
 * message, in two answers at least EMPTY_RECHECK_MS apart. A partition seen
 * non-empty once is not asked again; an empty one at most every
 * EMPTY_RECHECK_MS (a ListOffsets round trip). One answer is not enough: a producer that just
 * started may not have reached the partition yet, and its first events, with event times as old as
 * any other partition's, would land in windows closed without them (seen under load in
 * test_restart_mid_stream). */
#define EMPTY_RECHECK_MS 5000
static bool partition_known_empty(fd_engine *e, int32_t p)
{
    if (p >= e->cl.n_pe) {
        int n = e->cl.n_pe ? e->cl.n_pe : 16;
        while (n <= p)
            n *= 2;
        part_empty *np = realloc(e->cl.pe, (size_t)n * sizeof *np);
        if (!np)
            return false;
        memset(np + e->cl.n_pe, 0, (size_t)(n - e->cl.n_pe) * sizeof *np);
        e->cl.pe = np;
        e->cl.n_pe = n;
    }
    part_empty *pt = &e->cl.pe[p];
    if (pt->nonempty)
        return false;
    int64_t now = fd_mono_ms();
    if (pt->empty_checked_at && now - pt->empty_checked_at < EMPTY_RECHECK_MS)
        return pt->empty;
    int64_t lo = 0, hi = 0;
    pt->empty_checked_at = now;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        e->producer, e->cfg->kafka_topic_events, p, &lo, &hi, 2000);
    bool empty = err == RD_KAFKA_RESP_ERR_NO_ERROR && hi == 0;
    pt->nonempty = err == RD_KAFKA_RESP_ERR_NO_ERROR && hi > 0;
    if (!empty)
        pt->empty_since = 0;
    else if (!pt->empty_since)
        pt->empty_since = now;
    pt->empty = empty && now - pt->empty_since >= EMPTY_RECHECK_MS;
    return pt->empty;
}

/* The watermark of the whole topic, from what every instance stored in
 * Redis: the least over all partitions of (max_ts - allowed lateness).
 * A partition without a stored max_ts holds every window open unless the
 * broker says it is empty. INT64_MIN when nothing can close. Using every
 * partition, not only this instance's, makes a closed window final however
 * many instances share the topic, so every instance that closes it sends
 * the same message. */
static int64_t topic_watermark(fd_engine *e)
{
    int n = topic_partitions(e);
    if (n <= 0 || n > 65536)
        return INT64_MIN;
    char err[256], pkey[PART_KEY_MAX];
    for (int p = 0; p < n; p++)
        fd_redis_appendf(e->cl.redis, "HGET %s max_ts", part_key(e, p, pkey));
    redisReply **rep = calloc((size_t)n, sizeof *rep);
    if (!rep)
        return INT64_MIN;
    if (fd_redis_read_replies(e->cl.redis, rep, (size_t)n, err, sizeof err) != 0) {
        free(rep);
        return INT64_MIN; /* the connection is reset: nothing is left pending */
    }
    int64_t wm = INT64_MAX;
    bool ok = true;
    for (int p = 0; p < n; p++) {
        int64_t m = fd_redis_reply_int(rep[p], 0);
        freeReplyObject(rep[p]);
        if (!ok)
            continue;
        if (m <= 0) {
            if (!partition_known_empty(e, p))
                ok = false; /* has (or may have) events not yet stored */
            continue;
        }
        if (m - e->core.funnel.lateness_ms < wm)
            wm = m - e->core.funnel.lateness_ms;
    }
    free(rep);
    return ok && wm != INT64_MAX ? wm : INT64_MIN;
}

/* Queue the reads of one closed window (its hash, the four HyperLogLogs,
 * the categories' hashes). Returns the commands queued. */
static size_t append_report_reads(fd_engine *e, const char *span, int64_t start)
{
    char key[600];
    int ncat = e->core.funnel.n_cats ? e->core.funnel.n_cats + 1 : 0;
    fd_redis_appendf(e->cl.redis, "HGETALL %s",
                     window_key(e, key, sizeof key, span, start, FD_CAT_TOTAL));
    for (int s = FD_STAGE_VISIT; s <= FD_STAGE_PURCHASE; s++)
        fd_redis_appendf(e->cl.redis, "PFCOUNT %s",
                         fd_funnel_key(key, sizeof key, e->cfg->redis_key_prefix, span, start,
                                       ":users:", fd_stage_name(s)));
    for (int c = 0; c < ncat; c++)
        fd_redis_appendf(e->cl.redis, "HGETALL %s", window_key(e, key, sizeof key, span, start, c));
    return (size_t)(5 + ncat);
}

/* A report from the replies of append_report_reads (consumed: freed). */
static void parse_report(fd_engine *e, redisReply **rep, const char *span, int64_t span_ms,
                         int64_t start, fd_window_report *r)
{
    fd_window_report_init(r, span, span_ms, start);
    int ncat = e->core.funnel.n_cats ? e->core.funnel.n_cats + 1 : 0;
    for (size_t i = 0; i < (size_t)(5 + ncat); i++) {
        redisReply *x = rep[i];
        if (i >= 1 && i <= 4) {
            r->users[i - 1] = fd_redis_reply_int(x, 0);
        } else {
            int64_t *c = NULL;
            if (i == 0) {
                c = r->c;
            } else if (x->type == REDIS_REPLY_ARRAY && x->elements) {
                fd_window_cat *wc = &r->cats[r->n_cats++];
                snprintf(wc->name, sizeof wc->name, "%s",
                         fd_funnel_cat_name(&e->core.funnel, (int)i - 5));
                c = wc->c;
            }
            for (size_t j = 0; c && x->type == REDIS_REPLY_ARRAY && j + 1 < x->elements; j += 2)
                for (int f = 0; f < FD_FC__COUNT; f++)
                    if (!strcmp(x->element[j]->str, fd_funnel_field_names[f]))
                        c[f] = fd_redis_reply_int(x->element[j + 1], 0);
        }
        freeReplyObject(x);
        rep[i] = NULL;
    }
    fd_window_report_rates(r);
}

/* A member of funnel:open / funnel:closed, "<span>:<start_ms>": its span
 * name into span, its start, and its length (0 when the span is neither
 * funnel.window nor the hourly roll-up). false when malformed. */
static bool parse_member(const fd_engine *e, const char *m, char span[16], int64_t *start,
                         int64_t *span_ms)
{
    const char *colon = strchr(m, ':');
    if (!colon || colon - m >= 16)
        return false;
    snprintf(span, 16, "%.*s", (int)(colon - m), m);
    *start = strtoll(colon + 1, NULL, 10);
    *span_ms = !strcmp(span, e->core.funnel.window_name) ? e->core.funnel.window_ms
               : !strcmp(span, "1h")                     ? FD_HOUR_MS
                                                         : 0;
    return true;
}

/* Retention: a closed window's keys (hash, HyperLogLogs, categories) are
 * deleted once the topic's watermark is funnel.retention past its end (30
 * times that for the hourly roll-up). The closed windows wait in the sorted
 * set PREFIX funnel:closed, scored by that deletion time, so one ZADD per
 * batch of closed windows and one UNLINK per batch of expired ones replace
 * a TTL command per key. */
static int64_t retention_of(const fd_engine *e, const char *span)
{
    int64_t r = e->cfg->funnel_retention_ms;
    return strcmp(span, e->core.funnel.window_name) ? r * 30 : r;
}

/* Append the keys of window (span, start) to a growing argv. */
static int push_window_keys(fd_engine *e, char ***argv, size_t *n, size_t *cap, const char *span,
                            int64_t start)
{
    int ncat = e->core.funnel.n_cats ? e->core.funnel.n_cats + 1 : 0;
    if (*n + 5 + (size_t)ncat > *cap) {
        size_t nc = (*cap ? *cap * 2 : 64) + 5 + (size_t)ncat;
        char **na = realloc(*argv, nc * sizeof *na);
        if (!na)
            return -1;
        *argv = na;
        *cap = nc;
    }
    char key[600];
    for (int st = FD_STAGE_NONE; st <= FD_STAGE_PURCHASE; st++) {
        fd_funnel_key(key, sizeof key, e->cfg->redis_key_prefix, span, start,
                      st == FD_STAGE_NONE ? NULL : ":users:", fd_stage_name(st));
        if (!((*argv)[(*n)++] = strdup(key)))
            return -1;
    }
    for (int c = 0; c < ncat; c++)
        if (!((*argv)[(*n)++] = strdup(window_key(e, key, sizeof key, span, start, c))))
            return -1;
    return 0;
}

/* Delete the windows whose retention passed (watermark wm), one batch of
 * 256. Returns 1 when the batch was full (there may be more), else 0. */
static int expire_batch(fd_engine *e, int64_t wm)
{
    char ckey[512], err[256];
    snprintf(ckey, sizeof ckey, "%sfunnel:closed", e->cfg->redis_key_prefix);
    fd_redis_appendf(e->cl.redis, "ZRANGEBYSCORE %s -inf %lld LIMIT 0 %d", ckey, (long long)wm,
                     256);
    redisReply *list = NULL;
    if (fd_redis_read_replies(e->cl.redis, &list, 1, err, sizeof err) != 0)
        return 0;
    char **argv = NULL;
    size_t n = 1, cap = 0;
    bool ok = list->type == REDIS_REPLY_ARRAY && list->elements > 0;
    for (size_t i = 0; ok && i < list->elements; i++) {
        char span[16];
        int64_t start, span_ms;
        if (!parse_member(e, list->element[i]->str, span, &start, &span_ms))
            continue;
        if (push_window_keys(e, &argv, &n, &cap, span, start) != 0)
            ok = false;
    }
    int more = 0;
    const char **zrem = ok ? malloc((list->elements + 2) * sizeof *zrem) : NULL;
    if (ok && n > 1 && zrem && (argv[0] = strdup("UNLINK"))) {
        /* the keys, then exactly these members (not a score range: more may
         * have become due meanwhile, and their keys are not deleted yet) */
        zrem[0] = "ZREM";
        zrem[1] = ckey;
        for (size_t i = 0; i < list->elements; i++)
            zrem[2 + i] = list->element[i]->str;
        fd_redis_appendv(e->cl.redis, (int)n, (const char **)argv, NULL);
        fd_redis_appendv(e->cl.redis, 2 + (int)list->elements, zrem, NULL);
        if (fd_redis_read_replies(e->cl.redis, NULL, 2, err, sizeof err) == 0)
            more = list->elements == 256;
    }
    free(zrem);
    for (size_t i = 0; argv && i < n; i++)
        free(argv[i]);
    free(argv);
    freeReplyObject(list);
    return more;
}

static void expire_windows(fd_engine *e, int64_t wm)
{
    for (int round = 0; round < 64 && expire_batch(e, wm); round++)
        ;
}

#define CLOSE_BATCH 512 /* windows read in one round trip */

/* One batch of close_windows. Returns 1 when a full batch was closed (there
 * may be more), 0 when done, -1 on failure (retried after the next write). */
static int close_batch(fd_engine *e, int64_t wm)
{
    char okey[512], err[256];
    snprintf(okey, sizeof okey, "%sfunnel:open", e->cfg->redis_key_prefix);
    int64_t w = e->core.funnel.window_ms;
    fd_redis_appendf(e->cl.redis, "ZRANGEBYSCORE %s -inf %lld LIMIT 0 %d", okey,
                     (long long)(wm - w), CLOSE_BATCH);
    redisReply *list = NULL;
    if (fd_redis_read_replies(e->cl.redis, &list, 1, err, sizeof err) != 0)
        return -1;
    bool done = list->type == REDIS_REPLY_ARRAY;
    size_t n = done ? list->elements : 0, sent = 0, n_read = 0;
    int ncat = e->core.funnel.n_cats ? e->core.funnel.n_cats + 1 : 0;
    fd_window_report *r = malloc(sizeof *r);
    double(*rates)[4] = calloc(n ? n : 1, sizeof *rates);
    size_t *which = calloc(n ? n : 1, sizeof *which);
    int64_t *span_ms = calloc(n ? n : 1, sizeof *span_ms);
    redisReply **rep = calloc(n * (size_t)(5 + ncat) + 1, sizeof *rep);
    if (!r || !rates || !which || !span_ms || !rep)
        done = false;
    /* Round trip 1: read every closed window of this batch. */
    for (size_t i = 0; done && i < n; i++) {
        char span[16];
        int64_t start = 0;
        if (!parse_member(e, list->element[i]->str, span, &start, &span_ms[i]))
            continue;
        if (!span_ms[i] || start + span_ms[i] > wm) {
            span_ms[i] = 0;
            continue;
        }
        n_read += append_report_reads(e, span, start);
    }
    if (done && n_read && fd_redis_read_replies(e->cl.redis, rep, n_read, err, sizeof err) != 0)
        done = false;
    /* Send every message, then, once delivered, mark the windows. */
    size_t at = 0;
    for (size_t i = 0; done && i < n; i++) {
        if (!span_ms[i])
            continue;
        char span[16];
        int64_t start = 0, len_ms = 0; /* parsed once already: this parse succeeds */
        parse_member(e, list->element[i]->str, span, &start, &len_ms);
        parse_report(e, rep + at, span, span_ms[i], start, r);
        at += (size_t)(5 + ncat);
        const void *out;
        size_t len;
        if (fd_metrics_encode(e->cl.menc, r, &out, &len) != 0 ||
            fd_kafka_produce(e->producer, e->cfg->kafka_topic_metrics, r->id, strlen(r->id), out,
                             len) != 0) {
            fd_err("engine", "funnel metrics for window %s could not be sent", r->id);
            done = false;
            break;
        }
        memcpy(rates[sent], r->rates, sizeof rates[sent]);
        which[sent++] = i;
    }
    size_t n_cmds = 0;
    if (sent && fd_kafka_drain(e->producer, 10000) != 0) {
        done = false;
    } else if (sent) {
        const char **argv = malloc((sent + 2) * sizeof *argv);
        const char **zargv = malloc((2 * sent + 2) * sizeof *zargv);
        char(*zscore)[24] = malloc(sent * sizeof *zscore);
        if (!zscore) {
            free(zargv);
            zargv = NULL;
        }
        for (size_t k = 0; k < sent; k++) {
            const char *m = list->element[which[k]]->str;
            char span[16], key[600];
            int64_t start = 0, len_ms = 0;
            parse_member(e, m, span, &start, &len_ms);
            window_key(e, key, sizeof key, span, start, FD_CAT_TOTAL);
            const double *rt = rates[k];
            fd_redis_appendf(e->cl.redis, "HSET %s %s %.17g %s %.17g %s %.17g %s %.17g closed 1",
                             key, fd_rate_names[0], rt[0], fd_rate_names[1], rt[1],
                             fd_rate_names[2], rt[2], fd_rate_names[3], rt[3]);
            n_cmds++;
            if (zargv) {
                zargv[2 + 2 * k] = zscore[k];
                snprintf(zscore[k], sizeof zscore[k], "%lld",
                         (long long)(start + len_ms + retention_of(e, span)));
                zargv[3 + 2 * k] = m;
            }
            if (argv)
                argv[2 + k] = m;
        }
        char ckey[512];
        snprintf(ckey, sizeof ckey, "%sfunnel:closed", e->cfg->redis_key_prefix);
        if (zargv) { /* one ZADD for the batch: when each window's keys go */
            zargv[0] = "ZADD";
            zargv[1] = ckey;
            fd_redis_appendv(e->cl.redis, (int)(2 + 2 * sent), zargv, NULL);
            n_cmds++;
        }
        bool built = argv && zargv;
        if (argv) { /* one ZREM for the whole batch */
            argv[0] = "ZREM";
            argv[1] = okey;
            fd_redis_appendv(e->cl.redis, (int)(2 + sent), argv, NULL);
            n_cmds++;
            free(argv);
        }
        if (fd_redis_read_replies(e->cl.redis, NULL, n_cmds, err, sizeof err) != 0 || !built)
            done = false;
        free(zargv);
        free(zscore);
        fd_debug("engine", "sent funnel metrics of %zu closed window(s)", sent);
    }
    for (size_t i = at; rep && i < n_read; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    free(r);
    free(rates);
    free(which);
    free(span_ms);
    free(rep);
    freeReplyObject(list);
    return !done ? -1 : n == CLOSE_BATCH ? 1 : 0;
}

static void close_windows(fd_engine *e)
{
    char err[256];
    if (fd_redis_ensure(e->cl.redis, err, sizeof err) != 0)
        return; /* retried at the next write or within a second */
    int64_t wm = topic_watermark(e);
    if (wm == INT64_MIN || wm <= e->cl.closed_wm)
        return;
    int rc;
    for (int round = 0; (rc = close_batch(e, wm)) == 1 && round < 64; round++)
        ;
    if (rc == 0)
        e->cl.closed_wm = wm;
    expire_windows(e, wm);
}

/* While a backlog is read, windows close at most this often: ingest first. */
#define CLOSER_BACKLOG_MS 5000

static void *closer_main(void *arg)
{
    fd_engine *e = arg;
    uint64_t seen = 0;
    int64_t last = fd_mono_ms();
    pthread_mutex_lock(&e->cl.t.mu);
    while (!e->cl.t.stop) {
        if (e->cl.kicks == seen) { /* a second without writes: retry what failed */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&e->cl.t.cv, &e->cl.t.mu, &ts);
            if (e->cl.t.stop)
                break;
        }
        seen = e->cl.kicks;
        pthread_mutex_unlock(&e->cl.t.mu);
        int64_t now = fd_mono_ms();
        if (!atomic_load(&e->cl.catching_up) || now - last >= CLOSER_BACKLOG_MS) {
            last = now;
            close_windows(e);
        }
        pthread_mutex_lock(&e->cl.t.mu);
    }
    pthread_mutex_unlock(&e->cl.t.mu);
    return NULL;
}

/* A write landed: windows may have closed. */
static void closer_kick(fd_engine *e)
{
    pthread_mutex_lock(&e->cl.t.mu);
    e->cl.kicks++;
    pthread_cond_signal(&e->cl.t.cv);
    pthread_mutex_unlock(&e->cl.t.mu);
}

/* Stop and join the thread; its state is the caller's afterwards. */
static void closer_stop(fd_engine *e)
{
    bg_stop(&e->cl.t);
}

/* ---- refused writes and refused commands ------------------------------ */

/* The name of stats field i (SF_*). */
static const char *stat_field(int i, char *buf, size_t n)
{
    if (i < FD_ST__COUNT)
        return fd_stat_name(i, buf, n);
    if (i == SF_WE_TOTAL)
        return "write_errors";
    snprintf(buf, n, "write_errors.%s", we_kind[i - SF_WE0]);
    return buf;
}

static void seg_add(fd_engine *e, wseg sg)
{
    if (sg.n == 0)
        return;
    if (e->n_segs == e->cap_segs) {
        size_t cap = e->cap_segs ? 2 * e->cap_segs : 256;
        wseg *p = realloc(e->segs, cap * sizeof *p);
        if (!p) {
            e->segs_oom = true;
            return;
        }
        e->segs = p;
        e->cap_segs = cap;
    }
    e->segs[e->n_segs++] = sg;
}

/* The run holding reply at (before MULTI when pre, else EXEC's element). */
static const wseg *seg_find(const fd_engine *e, bool pre, size_t at)
{
    for (size_t i = 0; i < e->n_segs; i++) {
        const wseg *sg = &e->segs[i];
        if (sg->pre == pre && at >= sg->first && at < sg->first + sg->n)
            return sg;
    }
    return NULL;
}

/* The key of command k of run sg into buf. */
static const char *seg_key(fd_engine *e, const wseg *sg, size_t k, char *buf, size_t n)
{
    const char *prefix = e->cfg->redis_key_prefix;
    const char *a;
    size_t len;
    if (sg->src) {
        if (fd_redis_wire_arg(sg->src->p, sg->src->len, k, 1, &a, &len) != 0)
            snprintf(buf, n, "(a %s key)", we_kind[sg->kind]);
        else
            snprintf(buf, n, "%.*s", (int)(len < 1000 ? len : 1000), a);
    } else if (sg->kind == WE_FUNNEL_OPEN) {
        snprintf(buf, n, "%sfunnel:open", prefix);
    } else if (sg->kind == WE_STATS) {
        snprintf(buf, n, "%sstats", prefix);
    } else if (sg->kind == WE_PART) {
        char pk[PART_KEY_MAX];
        snprintf(buf, n, "%s", part_key(e, sg->part, pk));
    } else {
        snprintf(buf, n, "(a %s key)", we_kind[sg->kind]);
    }
    return buf;
}

static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ? h : 1;
}

/* What a refused command of each kind means (the log line's second half). */
static const char *const we_meaning[WE__COUNT] = {
    [WE_WINDOW] = "the funnel counts it carried are lost (counted in stats write_errors.window)",
    [WE_UNIQUE_USERS] = "the users it carried are missing from that HyperLogLog (counted in "
                        "stats write_errors.unique_users)",
    [WE_FUNNEL_OPEN] = "the windows of this write are not registered as open: they are not "
                       "closed, reported or deleted (counted in stats write_errors.funnel_open)",
    [WE_USER] = "that user's new record is not stored (counted in stats write_errors.user)",
    [WE_STATS] = "its counts are kept in memory and sent again with every following write until "
                 "Redis takes them (a restart before that loses them); repair the key (DEL or "
                 "RENAME it)",
    [WE_PART] = "the partition's offsets were not stored with this write (counted in stats "
                "write_errors.part); writes stop until the key is repaired",
};

/* Name a key Redis refused a command on, at most once per WKEY_RELOG_MS;
 * the others are summed up every WSUMMARY_MS. */
static void name_key(fd_engine *e, const char *key, int kind, const char *msg)
{
    wkeys *w = &e->wkeys;
    int64_t now = fd_mono_ms();
    uint64_t h = key_hash(key);
    int slot = 0;
    for (int i = 0; i < WKEY_SLOTS; i++) {
        if (w->at[i] && w->hash[i] == h && now - w->at[i] < WKEY_RELOG_MS) {
            w->quiet++;
            if (now - w->summary_at >= WSUMMARY_MS) {
                fd_err("engine",
                       "Redis refused %" PRIu64 " more command(s) on keys named before (in "
                       "the last %" PRId64 " s; counted in stats write_errors.KIND)",
                       w->quiet, (now - w->summary_at) / 1000);
                w->quiet = 0;
                w->summary_at = now;
            }
            return;
        }
        if (w->at[i] < w->at[slot])
            slot = i; /* free (0) or the oldest */
    }
    w->hash[slot] = h;
    w->at[slot] = now;
    if (!w->summary_at)
        w->summary_at = now;
    fd_err("engine", "key %s: Redis refused a command of a write (%s key): %s; %s", key,
           we_kind[kind], msg, we_meaning[kind]);
}

/* One command Redis refused inside an applied write: counted by kind (a
 * refused stats delta is kept instead), named in the log. */
static void refused_cmd(fd_engine *e, const wseg *sg, size_t at, const char *msg)
{
    char key[1100];
    int kind = sg ? sg->kind : WE_WINDOW;
    e->carry[SF_WE0 + kind]++;
    e->carry[SF_WE_TOTAL]++;
    if (sg && kind == WE_STATS)
        e->carry[sg->field] += sg->value;
    if (sg)
        seg_key(e, sg, at - sg->first, key, sizeof key);
    else
        snprintf(key, sizeof key, "(unknown: out of memory)");
    name_key(e, key, kind, msg ? msg : "(no text)");
}

/* An applied write (EXEC answered an array): count what Redis refused in
 * it. Before confirm: the runs point into the epochs' snapshots. */
static void count_refused(fd_engine *e, const redisReply *x)
{
    for (int i = 0; i < SF__COUNT; i++) {
        e->carry[i] -= e->carry_sent[i]; /* stored, but what is refused below */
        e->carry_sent[i] = 0;
    }
    size_t np = e->io.n_pre_err < IO_ERR_MAX ? e->io.n_pre_err : IO_ERR_MAX;
    for (size_t j = 0; j < np; j++) {
        const wseg *sg = seg_find(e, true, e->io.pre_err_at[j]);
        refused_cmd(e, sg, e->io.pre_err_at[j], e->io.pre_err[j]);
    }
    if (e->io.n_pre_err > IO_ERR_MAX) { /* only PFADDs come before MULTI */
        uint64_t more = e->io.n_pre_err - IO_ERR_MAX;
        e->carry[SF_WE0 + WE_UNIQUE_USERS] += (int64_t)more;
        e->carry[SF_WE_TOTAL] += (int64_t)more;
        e->wkeys.quiet += more;
    }
    for (size_t k = 0; k < x->elements; k++)
        if (x->element[k]->type == REDIS_REPLY_ERROR)
            refused_cmd(e, seg_find(e, false, k), k, x->element[k]->str);
}

/* Redis refused a whole write (nothing of it applied): back off. */
static void refused(fd_engine *e, const char *cause)
{
    wrefusal *r = &e->refuse;
    int64_t now = fd_mono_ms();
    if (!r->bo.min_ms)
        fd_backoff_init(&r->bo, e->cfg->redis_backoff_min_ms, e->cfg->redis_backoff_max_ms,
                        (uint64_t)now * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)e);
    char code[sizeof r->code];
    fd_redis_error_code(cause, code, sizeof code);
    int64_t delay = fd_backoff_fail(&r->bo, now);
    r->attempts++;
    if (!r->active || strcmp(code, r->code) != 0) {
        fd_err("engine",
               "Redis refuses writes: %s; consumption paused, retrying with backoff %" PRId64
               "..%" PRId64 " ms (nothing is lost)",
               cause, r->bo.min_ms, r->bo.max_ms);
        if (!r->active) {
            r->since = now;
            r->attempts = 1;
        }
        r->active = true;
        r->summary_at = now;
        r->at_summary = r->attempts;
        snprintf(r->code, sizeof r->code, "%s", code);
        snprintf(r->cause, sizeof r->cause, "%s", cause);
    } else if (now - r->summary_at >= REFUSE_SUMMARY_MS) {
        fd_warn("engine",
                "Redis still refuses writes (%s) after %" PRId64 " s: %" PRIu64
                " attempt(s) in the last %" PRId64 " s; next in %" PRId64 " ms",
                r->code, (now - r->since) / 1000, r->attempts - r->at_summary,
                (now - r->summary_at) / 1000, delay);
        r->summary_at = now;
        r->at_summary = r->attempts;
    }
    set_blocked(e, true, "Redis refuses writes");
}

/* A write was accepted: the refusal, if any, is over. */
static void refusal_over(fd_engine *e)
{
    wrefusal *r = &e->refuse;
    if (!r->active)
        return;
    fd_info("engine",
            "Redis accepts writes again after %" PRId64 " ms and %" PRIu64
            " refused attempt(s) (%s)",
            fd_mono_ms() - r->since, r->attempts, r->code);
    r->active = false;
    r->attempts = 0;
    fd_backoff_reset(&r->bo);
}

/* Backing off after a refused write: not yet time to try again. */
static bool refusal_wait(const fd_engine *e)
{
    return e->refuse.active && !fd_backoff_ready(&e->refuse.bo, fd_mono_ms());
}

static bool carry_any(const fd_engine *e)
{
    for (int i = 0; i < SF__COUNT; i++)
        if (e->carry[i])
            return true;
    return false;
}

/* Stats deltas left over (refused, or write errors found in the last
 * write's reply) while no epoch is pending: written on their own, so that
 * they do not wait for the next event. Retried with backoff while Redis
 * refuses them; force = once more regardless (shutdown). */
static void flush_carry(fd_engine *e, bool force)
{
    if (e->wf.active || e->n_epochs || e->write_ambiguous || !carry_any(e))
        return;
    int64_t now = fd_mono_ms();
    if (!e->carry_bo.min_ms)
        fd_backoff_init(&e->carry_bo, e->cfg->redis_backoff_min_ms, e->cfg->redis_backoff_max_ms,
                        (uint64_t)now ^ 0x5851F42D4C957F2DULL);
    if (!force && (!fd_backoff_ready(&e->carry_bo, now) || refusal_wait(e)))
        return;
    char err[256], key[600], name[64];
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0)
        return;
    snprintf(key, sizeof key, "%sstats", e->cfg->redis_key_prefix);
    int field[SF__COUNT];
    int64_t sent[SF__COUNT];
    size_t n = 0;
    fd_redis_appendf(e->redis, "MULTI");
    for (int i = 0; i < SF__COUNT; i++)
        if (e->carry[i]) {
            fd_redis_appendf(e->redis, "HINCRBY %s %s %lld", key, stat_field(i, name, sizeof name),
                             (long long)e->carry[i]);
            field[n] = i;
            sent[n++] = e->carry[i];
        }
    fd_redis_appendf(e->redis, "EXEC");
    redisReply *x = NULL;
    char queued[256] = "";
    for (size_t i = 0; i < n + 2; i++) {
        redisReply *y = NULL;
        if (fd_redis_read_replies(e->redis, &y, 1, err, sizeof err) != 0) {
            /* Sent, outcome unknown: not sent again (that could count twice). */
            fd_err("engine",
                   "writing stats deltas kept from earlier writes: %s; whether they "
                   "were stored is unknown, and they are not sent again:",
                   err);
            for (size_t k = 0; k < n; k++)
                fd_err("engine", "  not stored (perhaps): %s %s %lld", key,
                       stat_field(field[k], name, sizeof name), (long long)sent[k]);
            memset(e->carry, 0, sizeof e->carry);
            return;
        }
        if (i == n + 1)
            x = y;
        else {
            if (y->type == REDIS_REPLY_ERROR && !queued[0])
                snprintf(queued, sizeof queued, "%s", y->str);
            freeReplyObject(y);
        }
    }
    if (x->type == REDIS_REPLY_ARRAY) {
        if (e->refuse.active) {
            refusal_over(e);
            set_blocked(e, false, NULL);
        }
        bool again = false;
        for (size_t k = 0; k < n; k++)
            if (k >= x->elements || x->element[k]->type != REDIS_REPLY_ERROR) {
                e->carry[field[k]] -= sent[k];
            } else {
                wseg sg = {.kind = WE_STATS, .field = field[k], .value = 0};
                refused_cmd(e, &sg, 0, x->element[k]->str);
                again = true;
            }
        if (again)
            fd_backoff_fail(&e->carry_bo, fd_mono_ms());
        else
            fd_backoff_reset(&e->carry_bo);
    } else {
        refused(e, queued[0] ? queued : x->type == REDIS_REPLY_ERROR ? x->str : "EXEC: no array");
    }
    freeReplyObject(x);
}

/* At shutdown: stats deltas that could not be stored are named, so an
 * operator can add them by hand. */
static void report_carry(fd_engine *e)
{
    if (!carry_any(e))
        return;
    char name[64];
    fd_err("engine",
           "shutdown: stats deltas Redis did not take (add them by hand with HINCRBY "
           "%sstats FIELD N once the key is repaired):",
           e->cfg->redis_key_prefix);
    for (int i = 0; i < SF__COUNT; i++)
        if (e->carry[i])
            fd_err("engine", "  %s %lld", stat_field(i, name, sizeof name), (long long)e->carry[i]);
}

/* Write every complete pending epoch in one MULTI/EXEC: 1 when it is
 * sent (write_poll finishes it), 0 when there was nothing to write (or it
 * was already written), -1 to retry later. */
static int write_epochs(fd_engine *e)
{
    if (e->wf.active)
        return -1;
    if (e->n_epochs == 0 || !collect(e) || e->fatal)
        return e->n_epochs == 0 ? 0 : -1;
    if (refusal_wait(e)) /* Redis refused the last try: backing off */
        return -1;
    int rc = -1;
    char err[256];
    redisReply **rep = NULL;
    int32_t *parts = NULL;
    int64_t *offset = NULL, *max_ts = NULL;
    int n = 0;

    /* The union of the epochs' partitions: the latest offset of each. */
    parts = malloc((size_t)e->n_parts * sizeof *parts);
    offset = malloc((size_t)e->n_parts * sizeof *offset);
    max_ts = malloc((size_t)e->n_parts * sizeof *max_ts);
    if (!parts || !offset || !max_ts)
        goto out;
    for (int32_t p = 0; p < e->n_parts; p++) {
        offset[p] = -1;
        max_ts[p] = e->parts[p].confirmed_max_ts;
    }
    for (int k = 0; k < e->n_epochs; k++) {
        epoch *ep = e->epochs[k];
        for (int32_t p = 0; p < ep->n_parts && p < e->n_parts; p++)
            if (ep->valid[p] && ep->offset[p] >= 0) {
                offset[p] = ep->offset[p];
                max_ts[p] = ep->max_ts[p];
            }
    }
    for (int32_t p = 0; p < e->n_parts; p++)
        if (offset[p] >= 0)
            parts[n++] = p;
    if (n == 0) {                             /* everything in them was revoked */
        for (int k = 0; k < e->n_epochs; k++) /* counts are not lost: the next epoch's */
            for (int r = 0; r < FD_REJ__COUNT; r++)
                e->dlq_failed_taken[r] -= e->epochs[k]->dlq_failed[r];
        confirm(e, e->n_epochs);
        rc = 0;
        goto out;
    }
    if (fd_kafka_delivery_failures(e->producer) > 0) {
        fd_err("engine", "an output message could not be delivered; stopping without storing "
                         "the offsets past it (they will be reprocessed)");
        e->fatal = 1;
        goto out;
    }
    /* Only dead letters count here: the closer's metrics messages are not
     * covered by these offsets, and waiting for them (or pausing, which
     * makes librdkafka drop what it prefetched) cost a backlog ~0.7 s per
     * 2 M events. A short wait is not a reason to pause. */
    if (fd_kafka_dlq_pending(e->producer) > 0) {
        if (!e->dlq_wait_since)
            e->dlq_wait_since = fd_mono_ms();
        else if (fd_mono_ms() - e->dlq_wait_since >= DLQ_WAIT_PAUSE_MS)
            set_blocked(e, true,
                        "waiting for dead letters to be delivered (each is given up "
                        "after kafka.dlq_timeout_ms)");
        goto out;
    }
    e->dlq_wait_since = 0;
    /* Every dead letter of these epochs is reported: failures go with them
     * (and those reported since, which is early but not twice). */
    for (int r = 0; r < FD_REJ__COUNT; r++) {
        int64_t f = fd_kafka_dlq_failed(e->producer, (fd_reject)r);
        e->epochs[e->n_epochs - 1]->dlq_failed[r] += f - e->dlq_failed_taken[r];
        e->dlq_failed_taken[r] = f;
    }
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable");
        goto out;
    }

    /* Round trip 1: WATCH the partition keys and read what is stored. */
    rep = calloc(2 * (size_t)n + 1, sizeof *rep);
    if (!rep)
        goto out;
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "WATCH %s", part_key(e, parts[i], e->key));
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "HGET %s offset", part_key(e, parts[i], e->key));
    if (fd_redis_read_replies(e->redis, rep, 2 * (size_t)n, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable");
        goto out;
    }
    /* An error here (LOADING, NOAUTH, a partition key of another type, ...)
     * refuses the whole write: nothing is sent, it is retried with backoff. */
    for (int i = 0; i < 2 * n; i++) {
        if (rep[i]->type != REDIS_REPLY_ERROR)
            continue;
        char cause[1400], code[32];
        int32_t p = parts[i % n];
        part_key(e, p, e->key);
        if (i >= n && !strcmp(fd_redis_error_code(rep[i]->str, code, sizeof code), "WRONGTYPE"))
            snprintf(cause, sizeof cause,
                     "WRONGTYPE: key %s, partition %" PRId32
                     "'s stored offset, is not a hash (another client wrote it); restore it: DEL "
                     "it, then HSET it offset %" PRId64 " max_ts %" PRId64,
                     e->key, p, e->parts[p].stored_offset, e->parts[p].confirmed_max_ts);
        else
            snprintf(cause, sizeof cause, "%s (%s %s)", rep[i]->str, i < n ? "WATCH" : "HGET",
                     e->key);
        fd_redis_appendf(e->redis, "UNWATCH");
        fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
        refused(e, cause);
        goto out;
    }
    int applied = 0, fenced = 0;
    for (int i = 0; i < n; i++) {
        int32_t p = parts[i];
        int64_t s = fd_redis_reply_int(rep[n + i], -1);
        if (s == e->parts[p].stored_offset)
            continue;
        if (e->write_ambiguous && s == e->attempt_offset[p]) {
            applied++;
            continue;
        }
        fd_err("engine",
               "partition=%" PRId32 " stored offset moved to %" PRId64 " (expected %" PRId64
               "): another instance wrote it; dropping this instance's state for it",
               p, s, e->parts[p].stored_offset);
        drop_partition(e, p, true);
        fenced++;
    }
    if (applied && applied == n) {
        fd_info("engine", "the previous write did apply (its reply was lost)");
        fd_redis_appendf(e->redis, "UNWATCH");
        fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
        for (int i = 0; i < SF__COUNT; i++) { /* with the stats deltas kept from before */
            e->carry[i] -= e->carry_sent[i];
            e->carry_sent[i] = 0;
        }
        confirm(e, e->n_epochs);
        rc = 0;
        goto out;
    }
    if (fenced || applied) {
        fd_redis_appendf(e->redis, "UNWATCH");
        fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
        goto out; /* retry with what is left */
    }

    /* Round trip 2: the PFADDs of the funnel's unique users (idempotent,
     * so outside the transaction, see shard.c build_reaches), then MULTI,
     * the snapshots, the offsets, EXEC. */
    size_t n_cmds = 0;
    e->n_segs = 0; /* which command is which, to name a refused one's key */
    e->segs_oom = false;
    for (int k = 0; k < e->n_epochs; k++)
        for (int i = 0; i < e->n_shards; i++) {
            const fd_resp *pf = &e->epochs[k]->snaps[i]->pfadd;
            if (pf->n_cmds) {
                seg_add(e, (wseg){.first = n_cmds,
                                  .n = pf->n_cmds,
                                  .pre = true,
                                  .kind = WE_UNIQUE_USERS,
                                  .src = pf});
                fd_redis_append_raw(e->redis, pf->p, pf->len, pf->n_cmds);
                n_cmds += pf->n_cmds;
            }
        }
    size_t n_pre = n_cmds;
    fd_redis_appendf(e->redis, "MULTI");
    n_cmds++;
    size_t x0 = n_cmds; /* EXEC's element i answers command x0 + i */
    /* Users as the shards wrote them; minutes and stats merged over shards,
     * partitions and epochs: one HINCRBY per key and field. */
    int64_t stats[FD_ST__COUNT] = {0};
    fd_funnel_clear(e->merged, -1);
    for (int k = 0; k < e->n_epochs; k++) {
        epoch *ep = e->epochs[k];
        for (int i = 0; i < e->n_shards; i++)
            for (int c = 0; c < ep->snaps[i]->n_chunks; c++) {
                fd_chunk *ch = &ep->snaps[i]->chunks[c];
                int32_t p = ch->partition;
                if (p >= ep->n_parts || !ep->valid[p] || !e->parts[p].assigned)
                    continue;
                seg_add(e, (wseg){.first = n_cmds - x0,
                                  .n = ch->cmds.n_cmds,
                                  .kind = WE_USER,
                                  .src = &ch->cmds});
                fd_redis_append_raw(e->redis, ch->cmds.p, ch->cmds.len, ch->cmds.n_cmds);
                n_cmds += ch->cmds.n_cmds;
                uint64_t sat = fd_funnel_saturated(e->merged);
                for (int w = 0; w < ch->n_win; w++)
                    if (merge_window(e, &ch->win[w]) != 0)
                        e->fatal = 1;
                stats[FD_ST_SATURATED] += (int64_t)(fd_funnel_saturated(e->merged) - sat);
                for (int st = 0; st < FD_ST__COUNT; st++)
                    stats[st] += ch->stats[st];
            }
        for (int32_t p = 0; p < ep->n_parts; p++)
            if (ep->valid[p])
                stats[FD_ST_DATA_LOSS] += ep->data_loss[p];
        for (int r = 0; r < FD_REJ__COUNT; r++) {
            stats[FD_ST_DLQ_FAILED] += ep->dlq_failed[r];
            stats[FD_ST_DLQ_FAILED_REASON0 + r] += ep->dlq_failed[r];
        }
    }
    char wkey[600], sname[64];
    size_t w0 = n_cmds - x0, nw = append_windows(e), nh = e->wbuf.n_cmds < nw ? e->wbuf.n_cmds : nw;
    seg_add(e, (wseg){.first = w0, .n = nh, .kind = WE_WINDOW, .src = &e->wbuf});
    seg_add(e, (wseg){.first = w0 + nh, .n = nw - nh, .kind = WE_FUNNEL_OPEN}); /* the ZADD */
    n_cmds += nw;
    /* The stats deltas, with those kept from earlier writes (refused, or
     * the write errors found in their replies). */
    snprintf(wkey, sizeof wkey, "%sstats", e->cfg->redis_key_prefix);
    for (int st = 0; st < SF__COUNT; st++) {
        int64_t v = (st < FD_ST__COUNT ? stats[st] : 0) + e->carry[st];
        e->carry_sent[st] = e->carry[st];
        if (v) {
            seg_add(
                e, (wseg){.first = n_cmds - x0, .n = 1, .kind = WE_STATS, .field = st, .value = v});
            fd_redis_appendf(e->redis, "HINCRBY %s %s %lld", wkey,
                             stat_field(st, sname, sizeof sname), (long long)v);
            n_cmds++;
        }
    }
    if (e->fatal) { /* out of memory merging: nothing of this is sent */
        fd_redis_disconnect(e->redis);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        int32_t p = parts[i];
        seg_add(e, (wseg){.first = n_cmds - x0, .n = 1, .kind = WE_PART, .part = p});
        fd_redis_appendf(e->redis, "HSET %s offset %lld max_ts %lld", part_key(e, p, e->key),
                         (long long)offset[p], (long long)max_ts[p]);
        n_cmds++;
        e->attempt_offset[p] = offset[p];
    }
    fd_redis_appendf(e->redis, "EXEC");
    n_cmds++;
    /* Hand the connection to the I/O thread; write_poll finishes. */
    e->wf = (inflight){.active = true,
                       .parts = parts,
                       .offset = offset,
                       .max_ts = max_ts,
                       .n = n,
                       .n_epochs = e->n_epochs,
                       .n_cmds = n_cmds,
                       .t_start = fd_mono_ms()};
    parts = NULL;
    offset = max_ts = NULL;
    pthread_mutex_lock(&e->io.t.mu);
    e->io.n_replies = n_cmds;
    e->io.n_pre = n_pre;
    e->io.n_pre_err = 0;
    e->io.queued_err[0] = '\0';
    e->io.state = IO_PENDING;
    pthread_cond_broadcast(&e->io.t.cv);
    pthread_mutex_unlock(&e->io.t.mu);
    rc = 1;
out:
    if (rep) {
        for (int i = 0; i < 2 * n + 1; i++)
            if (rep[i])
                freeReplyObject(rep[i]);
        free(rep);
    }
    free(parts);
    free(offset);
    free(max_ts);
    return rc;
}

/* Whether a backlog is being read, for the closer, which defers to it
 * (refreshed after each write and every second). */
static void tell_closer_backlog(fd_engine *e)
{
    e->backlog_checked_ms = fd_mono_ms();
    atomic_store(&e->cl.catching_up, backlog(e));
}

/* The consumer thread's side of a write whose replies io has read. */
static void finish_write(fd_engine *e, int io_rc, redisReply *x)
{
    inflight *w = &e->wf;
    if (io_rc != 0 || !x) {
        e->write_ambiguous = true;
        set_blocked(e, true, "Redis failed during a write");
    } else {
        e->last_write_ms = fd_mono_ms() - w->t_start;
        fd_debug("engine", "wrote %d epoch(s): %zu commands, %d partition(s) in %" PRId64 " ms",
                 w->n_epochs, w->n_cmds, w->n, e->last_write_ms);
        if (x->type == REDIS_REPLY_NIL) {
            fd_info("engine", "write raced with another writer (WATCH); retrying");
        } else if (x->type == REDIS_REPLY_ARRAY) {
            refusal_over(e);
            count_refused(e, x); /* before confirm: it names keys from the snapshots */
            for (int i = 0; i < w->n; i++)
                e->parts[w->parts[i]].confirmed_max_ts = w->max_ts[w->parts[i]];
            confirm(e, w->n_epochs);
            set_blocked(e, false, NULL);
            if (e->n_epochs == 0) {
                tell_closer_backlog(e);
                closer_kick(e);
            }
        } else {
            /* EXECABORT says only that a queued command was refused: the
             * cause is that command's error (OOM, MISCONF, READONLY, ...). */
            refused(e, e->io.queued_err[0]            ? e->io.queued_err
                       : x->type == REDIS_REPLY_ERROR ? x->str
                                                      : "EXEC: unexpected reply (not an array)");
        }
    }
    if (x)
        freeReplyObject(x);
    free(w->parts);
    free(w->offset);
    free(w->max_ts);
    *w = (inflight){0};
}

/* Finish the write in flight if io is done with it (wait for that when
 * block). Afterwards, with block, e->redis is the consumer thread's. */
static void write_poll(fd_engine *e, bool block)
{
    if (!e->wf.active)
        return;
    pthread_mutex_lock(&e->io.t.mu);
    while (block && e->io.state != IO_DONE)
        pthread_cond_wait(&e->io.t.cv, &e->io.t.mu);
    if (e->io.state != IO_DONE) {
        pthread_mutex_unlock(&e->io.t.mu);
        return;
    }
    int rc = e->io.rc;
    redisReply *x = e->io.reply;
    e->io.reply = NULL;
    e->io.state = IO_IDLE;
    pthread_mutex_unlock(&e->io.t.mu);
    finish_write(e, rc, x);
}

static void *io_main(void *arg)
{
    fd_engine *e = arg;
    pthread_mutex_lock(&e->io.t.mu);
    for (;;) {
        while (!e->io.t.stop && e->io.state != IO_PENDING)
            pthread_cond_wait(&e->io.t.cv, &e->io.t.mu);
        if (e->io.state != IO_PENDING)
            break; /* stop, nothing pending */
        size_t n = e->io.n_replies;
        pthread_mutex_unlock(&e->io.t.mu);
        size_t n_pre = e->io.n_pre;
        char err[256];
        redisReply *x = NULL;
        int rc = 0;
        /* One reply at a time: the errors are kept (the consumer thread
         * names what was refused and why); the rest are freed at once. */
        for (size_t i = 0; rc == 0 && i < n; i++) {
            redisReply *y = NULL;
            rc = fd_redis_read_replies(e->redis, &y, 1, err, sizeof err);
            if (rc != 0)
                break;
            if (i + 1 == n) {
                x = y;
                break;
            }
            if (y->type == REDIS_REPLY_ERROR) {
                if (i < n_pre) {
                    if (e->io.n_pre_err < IO_ERR_MAX) {
                        e->io.pre_err_at[e->io.n_pre_err] = i;
                        snprintf(e->io.pre_err[e->io.n_pre_err], sizeof e->io.pre_err[0], "%s",
                                 y->str);
                    }
                    e->io.n_pre_err++;
                } else if (!e->io.queued_err[0]) {
                    snprintf(e->io.queued_err, sizeof e->io.queued_err, "%s", y->str);
                }
            }
            freeReplyObject(y);
        }
        if (rc != 0)
            fd_warn("engine", "write: %s", err);
        pthread_mutex_lock(&e->io.t.mu);
        e->io.rc = rc;
        e->io.reply = x;
        e->io.state = IO_DONE;
        pthread_cond_broadcast(&e->io.t.cv);
    }
    pthread_mutex_unlock(&e->io.t.mu);
    return NULL;
}

static void io_stop(fd_engine *e)
{
    bg_stop(&e->io.t);
    if (e->io.reply)
        freeReplyObject(e->io.reply);
    e->io.reply = NULL;
}

/* The interval between epochs: redis.flush_interval_ms, stretched under
 * load to WRITE_STRETCH times the last write's duration (at most
 * MAX_STRETCH_MS), so a backlog is written in fewer, larger transactions:
 * every touched window and every changed user costs one command per
 * epoch, however many events changed it. (8 and 5 s: measured with
 * funnelctl bench, see BENCHMARKS.md), and at least BACKLOG_MIN_MS. Not
 * once the consumer has caught up (backlog(): it polled up to every
 * partition's last known end): then the interval is the configured one. */
#define WRITE_STRETCH  8
#define MAX_STRETCH_MS 5000
#define BACKLOG_MIN_MS 1000 /* the least interval while a backlog is read */

/* Messages on the broker not polled yet, by the high watermarks librdkafka
 * last fetched (cached: no request). Unknown counts as a backlog. */
static bool backlog(const fd_engine *e)
{
    for (int32_t p = 0; p < e->n_parts; p++) {
        const part *pt = &e->parts[p];
        if (!pt->assigned)
            continue;
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(e->consumer, e->cfg->kafka_topic_events, p, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0 || (pt->polled_offset < 0 ? 0 : pt->polled_offset) < hi)
            return true;
    }
    return false;
}
static int64_t flush_interval(const fd_engine *e)
{
    int64_t i = e->cfg->redis_flush_interval_ms, s = WRITE_STRETCH * e->last_write_ms;
    if (s < BACKLOG_MIN_MS)
        s = BACKLOG_MIN_MS;
    if (s > i && !backlog(e))
        return i; /* no backlog: nothing to gain by waiting, and the end of a burst is fresh */
    if (s > MAX_STRETCH_MS)
        s = MAX_STRETCH_MS;
    return s > i ? s : i;
}

/* Start an epoch if none is pending, then write until done or the
 * deadline passes. Used at revocation and shutdown. */
static int flush_now(fd_engine *e, int64_t deadline)
{
    write_poll(e, true);
    if (e->n_epochs == 0 && start_epoch(e) != 0)
        return -1;
    while (e->n_epochs && !e->fatal) {
        write_epochs(e);
        write_poll(e, true);
        if (e->n_epochs == 0)
            break;
        if (fd_mono_ms() >= deadline)
            return -1;
        fd_sleep_ms(5);
    }
    /* Anything that changed while the pending epochs were written. */
    if (!e->fatal && start_epoch(e) == 0)
        while (e->n_epochs && !e->fatal && fd_mono_ms() < deadline) {
            write_epochs(e);
            write_poll(e, true);
            if (e->n_epochs == 0)
                break;
            fd_sleep_ms(5);
        }
    return e->n_epochs ? -1 : 0;
}

/* ---- assignment ----------------------------------------------------- */

/* Read stored offsets of newly assigned partitions, check them against the
 * log's start (data loss is never silent), tell the shards, seek, resume. */
static void resolve_partitions(fd_engine *e)
{
    int32_t todo[1024];
    int n = 0;
    for (int32_t p = 0; p < e->n_parts && n < 1024; p++)
        if (e->parts[p].assigned && e->parts[p].need_resolve)
            todo[n++] = p;
    if (!n)
        return;
    write_poll(e, true); /* the connection is ours again */
    /* A partition taken back must not overlap a pending epoch's view of it. */
    char err[256];
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable while reading partition offsets");
        return;
    }
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "HMGET %s offset max_ts", part_key(e, todo[i], e->key));
    redisReply *rep[1024];
    if (fd_redis_read_replies(e->redis, rep, (size_t)n, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable while reading partition offsets");
        return;
    }
    for (int i = 0; i < n; i++) {
        int32_t p = todo[i];
        part *pt = &e->parts[p];
        int64_t stored = -1, max_ts = 0;
        if (rep[i]->type == REDIS_REPLY_ARRAY && rep[i]->elements == 2) {
            stored = fd_redis_reply_int(rep[i]->element[0], -1);
            max_ts = fd_redis_reply_int(rep[i]->element[1], 0);
        }
        freeReplyObject(rep[i]);
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(
            e->consumer, e->cfg->kafka_topic_events, p, &lo, &hi, 5000);
        if (kerr) {
            fd_warn("engine", "partition=%" PRId32 ": reading watermarks: %s (will retry)", p,
                    rd_kafka_err2str(kerr));
            continue;
        }
        int64_t start = stored >= 0 ? stored : lo;
        int64_t lost = 0;
        if (stored >= 0 && stored < lo) {
            lost = lo - stored;
            fd_err("engine",
                   "DATA LOSS partition=%" PRId32 " stored offset %" PRId64
                   " is below the log start %" PRId64 ": %" PRId64
                   " offsets were deleted by the broker before they were consumed",
                   p, stored, lo, lost);
            start = lo;
        } else if (stored > hi) {
            fd_err("engine",
                   "partition=%" PRId32 " stored offset %" PRId64 " is beyond the log end %" PRId64
                   " (topic recreated?): starting at the log start %" PRId64,
                   p, stored, hi, lo);
            start = lo;
        }
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, e->cfg->kafka_topic_events, p)->offset = start;
        rd_kafka_error_t *serr = rd_kafka_seek_partitions(e->consumer, l, 5000);
        rd_kafka_topic_partition_list_destroy(l);
        if (serr) {
            fd_warn("engine", "partition=%" PRId32 ": seek to %" PRId64 ": %s (will retry)", p,
                    start, rd_kafka_error_string(serr));
            rd_kafka_error_destroy(serr);
            continue;
        }
        pt->stored_offset = stored;
        pt->next_offset = pt->polled_offset = start;
        pt->max_ts = pt->confirmed_max_ts = max_ts;
        pt->data_loss = lost;
        pt->dirty = start != stored; /* the new position must be stored */
        pt->need_resolve = false;
        e->attempt_offset[p] = -1;
        fd_item it = {.kind = FD_ITEM_PARTINIT, .partition = p};
        broadcast(e, it);
        fd_info("engine", "partition=%" PRId32 " assigned, starting at offset %" PRId64 "%s", p,
                start, stored < 0 ? " (no stored offset: log start)" : "");
    }
}

/* Destroy waiting (unrouted) messages of the flagged partitions. */
static void drop_waiting(fd_engine *e, const bool *drop, int n_drop)
{
    size_t w = e->wait_head;
    for (size_t i = e->wait_head; i < e->wait_head + e->wait_len; i++) {
        rd_kafka_message_t *m = e->wait[i];
        if (m->partition >= 0 && m->partition < n_drop && drop[m->partition])
            rd_kafka_message_destroy(m);
        else
            e->wait[w++] = m;
    }
    e->wait_len = w - e->wait_head;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    fd_engine *e = opaque;
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            part *pt = get_part(e, parts->elems[i].partition);
            if (!pt) {
                fd_err("engine", "partition %" PRId32 " out of range", parts->elems[i].partition);
                e->fatal = 1;
                continue;
            }
            memset(pt, 0, sizeof *pt);
            pt->next_offset = pt->stored_offset = pt->polled_offset = -1;
            pt->assigned = pt->need_resolve = pt->paused = true;
            parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        }
        if (coop) {
            rd_kafka_error_t *ae = rd_kafka_incremental_assign(rk, parts);
            if (ae) {
                fd_err("engine", "incremental assign: %s", rd_kafka_error_string(ae));
                rd_kafka_error_destroy(ae);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        rd_kafka_pause_partitions(rk, parts); /* until offsets are read from Redis */
        fd_info("engine", "assigned %d partition(s) (%s)", parts->cnt,
                coop ? "cooperative" : "eager");
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool *drop = calloc((size_t)e->n_parts + 1, sizeof *drop);
        if (drop)
            for (int i = 0; i < parts->cnt; i++) {
                int32_t p = parts->elems[i].partition;
                if (p >= 0 && p < e->n_parts)
                    drop[p] = true;
            }
        /* Messages not yet handed to a shard: their offsets were not
         * recorded, so the next owner reads them again. */
        if (drop)
            drop_waiting(e, drop, e->n_parts);
        /* Write what we hold first (bounded), then forget the partitions. */
        if (flush_now(e, fd_mono_ms() + e->cfg->engine_shutdown_timeout_ms) != 0)
            fd_warn("engine", "could not write state before revocation: the next owner of "
                              "the revoked partitions reprocesses from their stored offsets");
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p < 0 || p >= e->n_parts)
                continue;
            drop_partition(e, p, false);
            memset(&e->parts[p], 0, sizeof e->parts[p]);
            e->parts[p].next_offset = e->parts[p].stored_offset = -1;
        }
        free(drop);
        if (coop) {
            rd_kafka_error_t *ue = rd_kafka_incremental_unassign(rk, parts);
            if (ue)
                rd_kafka_error_destroy(ue);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        fd_info("engine", "revoked %d partition(s)", parts->cnt);
        return;
    }
    fd_err("engine", "rebalance error: %s", rd_kafka_err2str(err));
    rd_kafka_assign(rk, NULL);
}

/* ---- routing -------------------------------------------------------------- */

/* The next message routed of partition p is at offset `at`, past `from`,
 * the offset after the last one routed (or the seek position). When the
 * broker's log now starts after `from`, the gap was deleted before funneld
 * read it: librdkafka reset the position to the log start (it logs that;
 * auto.offset.reset) while reading. Counted like a stored offset found
 * below the log start, with the epoch that stores the offset past it. A
 * gap above the log start is no loss (transaction markers, compaction). */
static void check_gap(fd_engine *e, int32_t p, int64_t from, int64_t at)
{
    int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
    /* cached from the fetch responses (log start offset): no round trip */
    rd_kafka_get_watermark_offsets(e->consumer, e->cfg->kafka_topic_events, p, &lo, &hi);
    if (lo >= 0 && lo <= from) {
        fd_debug("engine",
                 "partition=%" PRId32 ": offsets %" PRId64 "..%" PRId64
                 " hold no messages (log start %" PRId64 ")",
                 p, from, at - 1, lo);
        return;
    }
    int64_t lost = at - from;
    part *pt = &e->parts[p];
    fd_err("engine",
           "DATA LOSS partition=%" PRId32 " fetch offset %" PRId64
           " is below the log start %" PRId64 ": %" PRId64
           " offsets were deleted by the broker before they were consumed "
           "(consumption goes on at offset %" PRId64 ")",
           p, from, lo >= 0 ? lo : at, lost, at);
    pt->data_loss = lost > INT64_MAX - pt->data_loss ? INT64_MAX : pt->data_loss + lost;
}

/* Hand waiting messages to shards in poll order until one shard is full. */
static void route(fd_engine *e)
{
    for (int i = 0; i < e->n_shards; i++)
        fd_shard_reap(e->shards[i], &e->reap, &e->reap_cap);
    bool was_full = e->queue_full;
    e->queue_full = false;
    while (e->wait_len) {
        size_t n = e->wait_len < ROUTE_CHUNK ? e->wait_len : ROUTE_CHUNK;
        for (int i = 0; i < e->n_shards; i++) {
            e->route_n[i] = 0;
            e->route_room[i] = fd_shard_room(e->shards[i]); /* only grows until we push */
            if (e->route_room[i] > ROUTE_CHUNK)
                e->route_room[i] = ROUTE_CHUNK;
        }
        /* The longest prefix of the waiting line that fits: order is kept. */
        size_t take = 0;
        for (; take < n; take++) {
            rd_kafka_message_t *m = e->wait[e->wait_head + take];
            if (take + 8 < n) /* key and value, written by the fetcher on another core */
                __builtin_prefetch(e->wait[e->wait_head + take + 8]->payload);
            const char *key = m->key ? (const char *)m->key : "";
            int s = fd_shard_of(key, m->key ? m->key_len : 0, e->n_shards);
            if (e->route_n[s] == e->route_room[s])
                break;
            fd_item *it = &e->route_buf[(size_t)s * ROUTE_CHUNK + e->route_n[s]++];
            it->kind = FD_ITEM_MSG;
            it->msg = m;
            /* The partition's watermark input, in offset order: the shard
             * gets the max before this event (lateness, future check). */
            part *pt = &e->parts[m->partition];
            it->value = pt->max_ts;
            int64_t ts;
            if (fd_codec_peek_ts(e->codec, m->payload, m->len, &ts) == 0 && ts > pt->max_ts) {
                rd_kafka_timestamp_type_t tst;
                int64_t ref = rd_kafka_message_timestamp(m, &tst);
                if (pt->max_ts > ref)
                    ref = pt->max_ts;
                if (!fd_ts_is_future(ts, ref, e->cfg->input_max_future_skew_ms))
                    pt->max_ts = ts;
            }
        }
        if (take == 0) {
            e->queue_full = true;
            if (!was_full)
                e->queue_full_since = fd_mono_ms();
            return;
        }
        /* Offsets first: once pushed, a shard may destroy the message. */
        for (size_t k = 0; k < take; k++) {
            rd_kafka_message_t *m = e->wait[e->wait_head + k];
            part *pt = &e->parts[m->partition];
            if (pt->next_offset >= 0 && m->offset > pt->next_offset)
                check_gap(e, m->partition, pt->next_offset, m->offset);
            pt->next_offset = m->offset + 1;
            pt->dirty = true;
        }
        for (int i = 0; i < e->n_shards; i++) {
            if (!e->route_n[i])
                continue;
            size_t pushed =
                fd_shard_push(e->shards[i], &e->route_buf[(size_t)i * ROUTE_CHUNK], e->route_n[i]);
            if (pushed != e->route_n[i]) { /* cannot happen: room was checked, only we push */
                fd_err("engine", "shard=%d took %zu of %zu messages", i, pushed, e->route_n[i]);
                abort();
            }
        }
        e->wait_head += take;
        e->wait_len -= take;
    }
    e->wait_head = 0;
}

static int wait_push(fd_engine *e, rd_kafka_message_t *m)
{
    if (e->wait_head + e->wait_len == e->wait_cap) {
        if (e->wait_head) {
            memmove(e->wait, e->wait + e->wait_head, e->wait_len * sizeof *e->wait);
            e->wait_head = 0;
        } else {
            size_t cap = e->wait_cap ? e->wait_cap * 2 : 4096;
            rd_kafka_message_t **nw = realloc(e->wait, cap * sizeof *nw);
            if (!nw)
                return -1;
            e->wait = nw;
            e->wait_cap = cap;
        }
    }
    e->wait[e->wait_head + e->wait_len++] = m;
    return 0;
}

/* Take one polled message: into the waiting line, or destroyed when stale. */
static void take(fd_engine *e, rd_kafka_message_t *m)
{
    bool keep = false;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fd_warn("engine", "consumer: %s", rd_kafka_message_errstr(m));
    } else {
        part *pt = get_part(e, m->partition);
        /* stale (before a rebalance or seek) or already handed on */
        keep = pt && pt->assigned && !pt->need_resolve &&
               (pt->polled_offset < 0 || m->offset >= pt->polled_offset);
    }
    if (keep && wait_push(e, m) == 0) {
        e->parts[m->partition].polled_offset = m->offset + 1;
        return;
    }
    if (keep) {
        fd_err("engine", "out of memory queueing a message");
        e->fatal = 1;
    }
    rd_kafka_message_destroy(m);
}

#define POLL_BATCH (ROUTE_CHUNK * 4)

/* One rd_kafka_consumer_poll (it waits up to timeout_ms, serves callbacks
 * and tells librdkafka the application polls), then what else is queued,
 * up to POLL_BATCH, in one rd_kafka_consume_batch_queue (the consumer
 * thread's CPU per 2 M messages went from ~1.05 to ~0.95 s in one timeline
 * each; see BENCHMARKS.md). */
static void poll_batch(fd_engine *e, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(e->consumer, timeout_ms);
    if (m) {
        take(e, m);
        rd_kafka_message_t *batch[POLL_BATCH];
        ssize_t n = !e->fatal ? rd_kafka_consume_batch_queue(e->cq, 0, batch, POLL_BATCH) : 0;
        for (ssize_t i = 0; i < n; i++)
            if (!e->fatal)
                take(e, batch[i]);
            else
                rd_kafka_message_destroy(batch[i]);
    }
    fd_fetch_nudge_check(&e->nudge, e->consumer);
    route(e);
}

/* ---- life cycle ------------------------------------------------------- */

/* Features and funnel parameters from the config (already validated). */
static int core_params(const fd_config *cfg, fd_core_params *cp, char *errstr, size_t n)
{
    int64_t hl[4];
    char why[256];
    char(*cats)[257] = malloc(FD_FUNNEL_MAX_CATS * sizeof *cats);
    const char *names[FD_FUNNEL_MAX_CATS];
    if (!cats) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    int nh = fd_config_half_lives(cfg, hl, why, sizeof why);
    int nc = nh < 0 ? -1 : fd_config_categories(cfg, cats, FD_FUNNEL_MAX_CATS, why, sizeof why);
    for (int i = 0; i < nc; i++)
        names[i] = cats[i];
    if (nh < 0 || nc < 0 ||
        fd_feat_params_init(&cp->feat, hl, nh, cfg->session_gap_ms, why, sizeof why) != 0 ||
        fd_funnel_params_init(&cp->funnel, cfg->funnel_window_ms, cfg->funnel_allowed_lateness_ms,
                              names, nc, why, sizeof why) != 0) {
        snprintf(errstr, n, "features/funnel: %s", why);
        free(cats);
        return -1;
    }
    free(cats); /* the params keep copies */
    return 0;
}

static int default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

fd_engine *fd_engine_new(const fd_config *cfg, char *errstr, size_t errstr_size)
{
    fd_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    e->cfg = cfg;
    bg_init(&e->cl.t);
    bg_init(&e->io.t);
    atomic_init(&e->confirmed_epoch, 0);
    atomic_init(&e->abort, 0);
    atomic_init(&e->stalled, 0);
    atomic_init(&e->cl.catching_up, false);
    if (!strcmp(cfg->kafka_brokers, "embedded")) {
        const char *topics[] = {cfg->kafka_topic_events, cfg->kafka_topic_dlq,
                                cfg->kafka_topic_alerts, cfg->kafka_topic_metrics};
        e->mock = fd_mock_new(1, topics, 4, cfg->kafka_partitions, errstr, errstr_size);
        if (!e->mock)
            goto fail;
        e->bootstraps = strdup(fd_mock_bootstraps(e->mock));
        fd_info("kafka", "embedded Kafka mock cluster listening at %s (%d partitions per topic)",
                e->bootstraps, cfg->kafka_partitions);
    } else {
        e->bootstraps = strdup(cfg->kafka_brokers);
    }
    char err[512];
    fd_redis_opts ro = fd_redis_opts_from_config(cfg);
    if (!(e->redis = fd_redis_new(&ro, err, sizeof err))) {
        snprintf(errstr, errstr_size, "redis: %s", err);
        goto fail;
    }
    if (!(e->producer = fd_kafka_producer_new(cfg, e->bootstraps, errstr, errstr_size)))
        goto fail;
    if (core_params(cfg, &e->core, errstr, errstr_size) != 0)
        goto fail;
    if (!(e->codec = fd_input_codec_new(cfg, errstr, errstr_size)))
        goto fail;
    if (!(e->cl.redis = fd_redis_new(&ro, err, sizeof err))) {
        snprintf(errstr, errstr_size, "redis: %s", err);
        goto fail;
    }
    if (!(e->cl.menc = fd_metrics_enc_new(!strcmp(cfg->kafka_metrics_format, "json"),
                                          cfg->kafka_metrics_schema, "funneld " FD_VERSION, err,
                                          sizeof err))) {
        snprintf(errstr, errstr_size, "kafka.metrics_schema: %s", err);
        goto fail;
    }
    e->cl.closed_wm = INT64_MIN;
    e->n_shards = cfg->engine_workers > 0 ? cfg->engine_workers : default_workers();
    e->env = (fd_shard_env){.cfg = cfg,
                            .core = &e->core,
                            .producer = e->producer,
                            .n_shards = e->n_shards,
                            .max_users =
                                (size_t)cfg->state_max_users_in_memory / (size_t)e->n_shards + 1,
                            .confirmed_epoch = &e->confirmed_epoch,
                            .abort = &e->abort,
                            .stalled = &e->stalled};
    e->shards = calloc((size_t)e->n_shards, sizeof *e->shards);
    e->route_buf = malloc((size_t)e->n_shards * ROUTE_CHUNK * sizeof *e->route_buf);
    e->route_n = calloc((size_t)e->n_shards, sizeof *e->route_n);
    e->route_room = calloc((size_t)e->n_shards, sizeof *e->route_room);
    e->merged = fd_funnel_table_new();
    if (!e->shards || !e->route_buf || !e->route_n || !e->route_room || !e->merged ||
        !get_part(e, 0)) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    for (int i = 0; i < e->n_shards; i++)
        if (!(e->shards[i] = fd_shard_new(&e->env, i, errstr, errstr_size)))
            goto fail;
    if (!(e->consumer =
              fd_kafka_consumer_new(cfg, e->bootstraps, rebalance_cb, e, errstr, errstr_size)))
        goto fail;
    e->cq = rd_kafka_queue_get_consumer(e->consumer);
    fd_fetch_nudge_init(&e->nudge, e->consumer);
    if (bg_start(&e->cl.t, closer_main, e) != 0) {
        snprintf(errstr, errstr_size, "cannot start the window closer thread");
        goto fail;
    }
    if (bg_start(&e->io.t, io_main, e) != 0) {
        snprintf(errstr, errstr_size, "cannot start the writer I/O thread");
        goto fail;
    }
    fd_info("engine", "%d worker shard(s), %d queued messages each, %d users in memory at most",
            e->n_shards, cfg->engine_queue_messages, cfg->state_max_users_in_memory);
    return e;
fail:
    fd_engine_destroy(e);
    return NULL;
}

int fd_engine_check_config(const fd_config *cfg, char *errstr, size_t errstr_size)
{
    char err[768], where[600];
    fd_redis_opts ro = fd_redis_opts_from_config(cfg);
    fd_redis *r = fd_redis_new(&ro, err, sizeof err);
    if (!r) {
        const char *key = cfg->redis_password_file && *cfg->redis_password_file
                              ? "redis.password_file"
                              : "redis.url";
        snprintf(errstr, errstr_size, "%s: %s", fd_config_where(cfg, key, where, sizeof where),
                 err);
        return -1;
    }
    fd_redis_destroy(r);
    fd_core_params cp;
    if (core_params(cfg, &cp, err, sizeof err) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", cfg->source_path, err);
        return -1;
    }
    fd_codec *c = fd_input_codec_new(cfg, err, sizeof err);
    if (!c) {
        const char *key = cfg->input_n_schema_ids ? "input.schema_ids" : "input.schema";
        snprintf(errstr, errstr_size, "%s: %s", fd_config_where(cfg, key, where, sizeof where),
                 err);
        return -1;
    }
    fd_codec_destroy(c);
    fd_metrics_enc *m =
        fd_metrics_enc_new(!strcmp(cfg->kafka_metrics_format, "json"), cfg->kafka_metrics_schema,
                           "funneld " FD_VERSION, err, sizeof err);
    if (!m) {
        snprintf(errstr, errstr_size, "%s: %s",
                 fd_config_where(cfg, "kafka.metrics_schema", where, sizeof where), err);
        return -1;
    }
    fd_metrics_enc_free(m);
    return 0;
}

const char *fd_engine_embedded_bootstraps(const fd_engine *e)
{
    return e->mock ? e->bootstraps : NULL;
}

int fd_engine_run(fd_engine *e, const fd_engine_signals *sig)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, e->cfg->kafka_topic_events, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(e->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        fd_err("engine", "subscribing to %s: %s", e->cfg->kafka_topic_events,
               rd_kafka_err2str(err));
        return -1;
    }
    fd_info("engine", "consuming %s as group %s from %s", e->cfg->kafka_topic_events,
            e->cfg->kafka_group_id, e->bootstraps);
    e->last_flush_ms = fd_mono_ms();
    while (!*sig->stop && !e->fatal) {
        if (sig->reload && *sig->reload) {
            *sig->reload = 0;
            if (sig->on_reload)
                sig->on_reload(sig->arg);
        }
        resolve_partitions(e);
        int64_t now = fd_mono_ms();
        int64_t since = now - e->last_flush_ms; /* flush_interval() asks librdkafka: not
                                                   before the configured interval */
        if (e->n_epochs == 0 && ((since >= e->cfg->redis_flush_interval_ms &&
                                  (since >= flush_interval(e) || over_user_bound(e))) ||
                                 dirty_users(e) >= FLUSH_DIRTY_USERS)) {
            start_epoch(e);
            e->last_flush_ms = now;
        }
        if (now - e->backlog_checked_ms >= 1000)
            tell_closer_backlog(e);
        write_poll(e, false);
        flush_carry(e, false); /* stats deltas left over, when no epoch is pending */
        if (e->n_epochs && write_epochs(e) == 0 && e->n_epochs == 0) { /* already applied */
            set_blocked(e, false, NULL);
            closer_kick(e);
        }
        if (atomic_load(&e->stalled) > 0 && !e->blocked) {
            set_blocked(e, true, "Redis unavailable (shards cannot load users)");
            e->stall_blocked = true;
        } else if (e->stall_blocked && atomic_load(&e->stalled) == 0 && e->n_epochs == 0) {
            set_blocked(e, false, NULL);
        }
        if (!e->blocked)
            e->stall_blocked = false;
        sync_pause(e);
        rd_kafka_poll(e->producer, 0);
        if (e->wait_len)
            route(e);
        /* While messages wait for room, poll only once the partitions are
         * paused (it serves rebalances and keeps the group membership);
         * what it returns joins the waiting line, never dropped. */
        if (e->wait_len && e->queue_full &&
            fd_mono_ms() - e->queue_full_since < QUEUE_FULL_PAUSE_MS)
            fd_sleep_ms(1);
        else
            poll_batch(e, e->wait_len || e->n_epochs || e->blocked ? 5 : 20);
    }
    /* Drain: hand over what was polled, write everything, leave the group. */
    int64_t deadline = fd_mono_ms() + e->cfg->engine_shutdown_timeout_ms;
    while (e->wait_len && !e->fatal && fd_mono_ms() < deadline) {
        route(e);
        if (e->wait_len)
            fd_sleep_ms(5);
    }
    bool flushed = !e->fatal && flush_now(e, deadline) == 0;
    if (!e->fatal) {
        flush_carry(e, true);
        report_carry(e);
    }
    int64_t undelivered = fd_kafka_dlq_pending(e->producer);
    if (!e->fatal && !flushed) {
        /* Nothing is lost (the offsets before it are not stored), but the
         * stop is not clean: say why, and exit non-zero. */
        if (undelivered > 0)
            fd_err("engine",
                   "shutdown: %" PRId64 " dead letter(s) not delivered to %s within %" PRId64
                   " ms (engine.shutdown_timeout_ms): the state after their offsets is not "
                   "stored and will be reprocessed",
                   undelivered, e->cfg->kafka_topic_dlq, e->cfg->engine_shutdown_timeout_ms);
        else
            fd_err("engine",
                   "shutdown: could not write all state within %" PRId64
                   " ms (engine.shutdown_timeout_ms); it will be reprocessed from the stored "
                   "offsets",
                   e->cfg->engine_shutdown_timeout_ms);
    }
    closer_stop(e); /* then close what the last writes allow, here */
    if (!e->fatal && flushed)
        close_windows(e);
    atomic_store(&e->abort, 1);
    rd_kafka_consumer_close(e->consumer);
    bool drained = fd_kafka_drain(e->producer, 5000) == 0;
    if (!drained)
        fd_err("engine", "shutdown: %d output message(s) could not be delivered within 5 s",
               rd_kafka_outq_len(e->producer));
    fd_info("engine", "stopped%s", e->fatal || !flushed || !drained ? " (not cleanly)" : "");
    return e->fatal || !flushed || !drained ? -1 : 0;
}

void fd_engine_destroy(fd_engine *e)
{
    if (!e)
        return;
    closer_stop(e); /* it uses the producer and Redis */
    write_poll(e, true);
    io_stop(e);
    atomic_store(&e->abort, 1);
    if (e->shards)
        for (int i = 0; i < e->n_shards; i++)
            fd_shard_destroy(e->shards[i]);
    for (size_t i = e->wait_head; i < e->wait_head + e->wait_len; i++)
        rd_kafka_message_destroy(e->wait[i]);
    for (int k = 0; k < e->n_epochs; k++)
        epoch_destroy(e, e->epochs[k]);
    fd_fetch_nudge_destroy(&e->nudge);
    if (e->cq)
        rd_kafka_queue_destroy(e->cq);
    if (e->consumer)
        rd_kafka_destroy(e->consumer);
    fd_kafka_producer_destroy(e->producer);
    fd_mock_destroy(e->mock);
    fd_redis_destroy(e->redis);
    free(e->shards);
    free(e->route_buf);
    free(e->reap);
    free(e->route_n);
    free(e->route_room);
    fd_funnel_table_free(e->merged);
    fd_resp_free(&e->wbuf);
    fd_codec_destroy(e->codec);
    fd_metrics_enc_free(e->cl.menc);
    fd_redis_destroy(e->cl.redis);
    free(e->cl.pe);
    bg_destroy(&e->cl.t);
    bg_destroy(&e->io.t);
    free(e->wait);
    free(e->parts);
    free(e->attempt_offset);
    free(e->segs);
    free(e->bootstraps);
    free(e);
}
