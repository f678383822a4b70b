/*
 * engine.c - see engine.h.
 *
 * Exactly-once state, the way this file keeps it:
 *
 *  - Every effect of a message lives in memory until a flush writes it, in
 *    one MULTI/EXEC, together with the next offset of its partition (key
 *    PREFIX part:TOPIC:P, fields offset and max_ts). On (re)assignment the
 *    partition is sought to that offset, so Redis never holds an effect
 *    without the offset that covers it, nor the reverse.
 *  - Users' counters are written as absolute values (they were loaded from
 *    Redis on first sight); per-minute and stats counters are HINCRBY
 *    deltas. Deltas are not idempotent, so a flush whose EXEC reply was lost
 *    is not blindly retried: the next attempt WATCHes the partition keys and
 *    reads the offsets first. Offsets equal to what we wrote mean the lost
 *    EXEC did apply; equal to the previous ones mean it did not; anything
 *    else means another instance owns the partition now (we drop what we
 *    hold for it and seek to what is stored).
 *  - A flush happens only between batches (no half-applied batch), and only
 *    after every dead letter produced so far was delivered, so an offset past
 *    a rejected message is never stored before its dead letter exists.
 *  - When Redis or the producer is not available, every assigned partition
 *    is paused (backpressure, nothing dropped), the consumer keeps polling so
 *    the group membership stays alive, and work resumes when they are back.
 */
#include "pipeline/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "features/user.h"
#include "features/window.h"
#include "pipeline/codec.h"
#include "pipeline/kafka.h"
#include "pipeline/kafka_mock.h"
#include "pipeline/redis.h"

#define MAX_BATCH           10000 /* messages taken per poll round */
#define FLUSH_DIRTY_USERS   50000 /* flush early past this many dirty users */
#define MAX_USERS_IN_MEMORY 1000000
#define SHUTDOWN_TIMEOUT_MS 10000

/* Per-partition counters written to PREFIX stats by HINCRBY. */
enum { ST_EVENTS = 0, ST_DLQ, ST_DATA_LOSS, ST_DLQ_REASON0 };
#define ST__COUNT (ST_DLQ_REASON0 + FD_REJ__COUNT)

typedef struct part {
    bool assigned, paused, need_resolve, dirty;
    int64_t next_offset;   /* next offset to consume; -1 = not known yet */
    int64_t stored_offset; /* offset in Redis; -1 = none */
    int64_t max_ts;        /* latest accepted event time (future check) */
    int64_t stats[ST__COUNT];
} part;

typedef struct pending {
    fd_event ev;
    int32_t partition;
} pending;

struct fd_engine {
    const fd_config *cfg;
    fd_mock *mock;
    char *bootstraps;
    rd_kafka_t *consumer, *producer;
    fd_codec *codec;
    fd_redis *redis;
    fd_user_table *users;
    fd_window_table *windows;
    part *parts;
    int n_parts;
    pending *pend;
    size_t n_pend;
    size_t dirty_users;
    bool blocked;         /* Redis or producer unavailable: partitions paused */
    bool flush_ambiguous; /* last EXEC's outcome unknown */
    int fatal;
    int64_t last_flush_ms;
    char key[FD_ID_MAX + 512];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *stat_name(int i, char *buf, size_t n)
{
    if (i == ST_EVENTS)
        return "events";
    if (i == ST_DLQ)
        return "dlq";
    if (i == ST_DATA_LOSS)
        return "data_loss_offsets";
    snprintf(buf, n, "dlq.%s", fd_reject_name((fd_reject)(i - ST_DLQ_REASON0)));
    return buf;
}

static part *get_part(fd_engine *e, int32_t p)
{
    if (p < 0 || p > 1000000)
        return NULL;
    if (p >= e->n_parts) {
        int n = e->n_parts ? e->n_parts : 16;
        while (n <= p)
            n *= 2;
        part *np = realloc(e->parts, (size_t)n * sizeof *np);
        if (!np)
            return NULL;
        for (int i = e->n_parts; i < n; i++) {
            memset(&np[i], 0, sizeof np[i]);
            np[i].next_offset = np[i].stored_offset = -1;
        }
        e->parts = np;
        e->n_parts = n;
    }
    return &e->parts[p];
}

static const char *part_key(fd_engine *e, int32_t p)
{
    snprintf(e->key, sizeof e->key, "%spart:%s:%" PRId32, e->cfg->redis_key_prefix,
             e->cfg->kafka_topic_events, p);
    return e->key;
}

static const char *user_key(fd_engine *e, const char *id)
{
    snprintf(e->key, sizeof e->key, "%suser:%s", e->cfg->redis_key_prefix, id);
    return e->key;
}

/* ---- pausing --------------------------------------------------------- */

static void set_paused(fd_engine *e, int32_t p, bool paused)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, e->cfg->kafka_topic_events, p);
    rd_kafka_resp_err_t err = paused ? rd_kafka_pause_partitions(e->consumer, l)
                                     : rd_kafka_resume_partitions(e->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        fd_warn("engine", "%s partition=%" PRId32 ": %s", paused ? "pause" : "resume", p,
                rd_kafka_err2str(err));
    else
        e->parts[p].paused = paused;
}

/* Make every assigned partition's paused state match what it should be. */
static void sync_pause(fd_engine *e)
{
    for (int32_t p = 0; p < e->n_parts; p++) {
        part *pt = &e->parts[p];
        if (!pt->assigned)
            continue;
        bool want = e->blocked || pt->need_resolve;
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

/* ---- dropping a partition's unwritten state --------------------------- */

typedef struct drop_set {
    const bool *drop; /* indexed by partition */
    int n;
} drop_set;

static bool keep_user(const fd_user *u, void *arg)
{
    const drop_set *d = arg;
    return !(u->partition >= 0 && u->partition < d->n && d->drop[u->partition]);
}

/* Forget everything held for the partitions flagged in drop[]: users,
 * window deltas, stats, pending events. Redis still has their last
 * consistent state and offset. */
static void drop_partitions(fd_engine *e, const bool *drop)
{
    drop_set d = {drop, e->n_parts};
    if (fd_user_table_filter(e->users, keep_user, &d) != 0) {
        /* Out of memory while rebuilding: drop every clean and dirty user of
         * all partitions is not possible either; stop rather than corrupt. */
        fd_err("engine", "out of memory dropping partition state");
        e->fatal = 1;
    }
    size_t w = 0;
    for (size_t i = 0; i < e->n_pend; i++)
        if (!drop[e->pend[i].partition])
            e->pend[w++] = e->pend[i];
    e->n_pend = w;
    e->dirty_users = 0;
    size_t cur = 0;
    fd_user *u;
    while ((u = fd_user_table_next(e->users, &cur)))
        e->dirty_users += u->dirty;
    for (int32_t p = 0; p < e->n_parts; p++) {
        if (!drop[p])
            continue;
        fd_window_clear(e->windows, p);
        part *pt = &e->parts[p];
        memset(pt->stats, 0, sizeof pt->stats);
        pt->dirty = false;
        pt->next_offset = pt->stored_offset;
    }
}

/* ---- reading state from Redis ----------------------------------------- */

static int64_t reply_int(const redisReply *r, int64_t dflt)
{
    if (!r || r->type != REDIS_REPLY_STRING)
        return r && r->type == REDIS_REPLY_INTEGER ? r->integer : dflt;
    char *end;
    errno = 0;
    long long v = strtoll(r->str, &end, 10);
    return (errno || *end) ? dflt : v;
}

/* Load every user of the pending batch that is not in memory yet, in one
 * pipelined round trip. 0, or -1 when Redis failed (retry later). */
static int load_users(fd_engine *e)
{
    size_t *need = malloc((e->n_pend ? e->n_pend : 1) * sizeof *need);
    if (!need)
        return -1;
    size_t n_need = 0;
    for (size_t i = 0; i < e->n_pend; i++) {
        const fd_event *ev = &e->pend[i].ev;
        bool created;
        fd_user *u = fd_user_table_upsert(e->users, ev->user_id, strlen(ev->user_id), &created);
        if (!u) {
            free(need);
            fd_err("engine", "out of memory adding user=%s", ev->user_id);
            e->fatal = 1;
            return -1;
        }
        if (!u->loaded && u->partition != -2) {
            u->partition = -2; /* marks "queued for loading" until loaded */
            need[n_need++] = i;
        }
    }
    int rc = 0;
    char err[256];
    if (n_need && fd_redis_ensure(e->redis, err, sizeof err) != 0)
        rc = -1;
    for (size_t k = 0; rc == 0 && k < n_need; k++) {
        const char *argv[] = {"HMGET",    user_key(e, e->pend[need[k]].ev.user_id),
                              "click",    "cart",
                              "purchase", "first_ts",
                              "last_ts"};
        if (fd_redis_appendv(e->redis, 7, argv, NULL) != 0)
            rc = -1;
    }
    redisReply **rep = NULL;
    if (rc == 0 && n_need) {
        rep = calloc(n_need, sizeof *rep);
        if (!rep || fd_redis_read_replies(e->redis, rep, n_need, err, sizeof err) != 0)
            rc = -1;
    }
    for (size_t k = 0; k < n_need; k++) {
        const char *id = e->pend[need[k]].ev.user_id;
        fd_user *u = fd_user_table_find(e->users, id, strlen(id));
        u->partition = -1;
        if (rc != 0)
            continue;
        const redisReply *r = rep[k];
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
            fd_err("engine", "unexpected reply loading user=%s (type %d)", id, r->type);
            rc = -1;
            continue;
        }
        for (int t = 0; t < FD_EV__COUNT; t++)
            u->count[t] = reply_int(r->element[t], 0);
        u->first_ts = reply_int(r->element[3], 0);
        u->last_ts = reply_int(r->element[4], 0);
        u->loaded = true;
    }
    if (rep)
        for (size_t k = 0; k < n_need; k++)
            freeReplyObject(rep[k]);
    free(rep);
    free(need);
    if (rc != 0)
        set_blocked(e, true, "Redis unavailable while loading users");
    return rc;
}

static void apply_pending(fd_engine *e)
{
    for (size_t i = 0; i < e->n_pend; i++) {
        const pending *pd = &e->pend[i];
        fd_user *u = fd_user_table_find(e->users, pd->ev.user_id, strlen(pd->ev.user_id));
        if (!u->dirty)
            e->dirty_users++;
        if (fd_core_apply(u, e->windows, pd->partition, &pd->ev) != 0) {
            fd_err("engine", "out of memory counting windows");
            e->fatal = 1;
        }
        e->parts[pd->partition].stats[ST_EVENTS]++;
    }
    e->n_pend = 0;
}

/* ---- assignment -------------------------------------------------------- */

/* Read stored offsets of newly assigned partitions, check them against the
 * log's start (data loss is never silent), seek, and let them resume. */
static void resolve_partitions(fd_engine *e)
{
    int32_t todo[1024];
    int n = 0;
    for (int32_t p = 0; p < e->n_parts && n < 1024; p++)
        if (e->parts[p].assigned && e->parts[p].need_resolve)
            todo[n++] = p;
    if (!n)
        return;
    char err[256];
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable while reading partition offsets");
        return;
    }
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "HMGET %s offset max_ts", part_key(e, todo[i]));
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
            stored = reply_int(rep[i]->element[0], -1);
            max_ts = reply_int(rep[i]->element[1], 0);
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
        if (stored >= 0 && stored < lo) {
            fd_err("engine",
                   "DATA LOSS partition=%" PRId32 " stored offset %" PRId64
                   " is below the log start %" PRId64 ": %" PRId64
                   " offsets were deleted by the broker before they were consumed",
                   p, stored, lo, lo - stored);
            pt->stats[ST_DATA_LOSS] += lo - stored;
            pt->dirty = true;
            start = lo;
        } else if (stored > hi) {
            fd_err("engine",
                   "partition=%" PRId32 " stored offset %" PRId64 " is beyond the log end %" PRId64
                   " (topic recreated?): starting at the log start %" PRId64,
                   p, stored, hi, lo);
            start = lo;
        }
        pt->stored_offset = stored;
        pt->next_offset = start;
        pt->max_ts = max_ts;
        if (start != stored)
            pt->dirty = true; /* the new position must be stored */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, e->cfg->kafka_topic_events, p)->offset = start;
        rd_kafka_error_t *serr = rd_kafka_seek_partitions(e->consumer, l, 5000);
        if (!serr && l->elems[0].err)
            fd_warn("engine", "partition=%" PRId32 ": seek: %s", p,
                    rd_kafka_err2str(l->elems[0].err));
        rd_kafka_topic_partition_list_destroy(l);
        if (serr) {
            fd_warn("engine", "partition=%" PRId32 ": seek to %" PRId64 ": %s (will retry)", p,
                    start, rd_kafka_error_string(serr));
            rd_kafka_error_destroy(serr);
            continue;
        }
        pt->need_resolve = false;
        fd_info("engine", "partition=%" PRId32 " assigned, starting at offset %" PRId64 "%s", p,
                start, stored < 0 ? " (no stored offset: log start)" : "");
    }
}

static int flush(fd_engine *e);

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
            pt->next_offset = pt->stored_offset = -1;
            pt->assigned = pt->need_resolve = true;
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
        for (int i = 0; i < parts->cnt; i++)
            e->parts[parts->elems[i].partition].paused = true;
        fd_info("engine", "assigned %d partition(s) (%s)", parts->cnt,
                coop ? "cooperative" : "eager");
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Write what we hold first (bounded), then forget the partitions. */
        int64_t deadline = now_ms() + SHUTDOWN_TIMEOUT_MS;
        while (e->n_pend == 0 && flush(e) != 0 && now_ms() < deadline && !e->fatal) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        bool *drop = calloc((size_t)e->n_parts + 1, sizeof *drop);
        if (drop) {
            for (int i = 0; i < parts->cnt; i++) {
                int32_t p = parts->elems[i].partition;
                if (p >= 0 && p < e->n_parts) {
                    drop[p] = true;
                    if (e->parts[p].dirty)
                        fd_warn("engine",
                                "partition=%" PRId32 " revoked with unwritten state: it will be "
                                "reprocessed by its next owner from offset %" PRId64,
                                p, e->parts[p].stored_offset);
                }
            }
            drop_partitions(e, drop);
            for (int i = 0; i < parts->cnt; i++) {
                int32_t p = parts->elems[i].partition;
                if (p >= 0 && p < e->n_parts) {
                    memset(&e->parts[p], 0, sizeof e->parts[p]);
                    e->parts[p].next_offset = e->parts[p].stored_offset = -1;
                }
            }
            free(drop);
        }
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

/* ---- flushing ------------------------------------------------------------ */

static void finish_flush(fd_engine *e, const int32_t *dirty, int n_dirty)
{
    size_t cur = 0;
    fd_user *u;
    while ((u = fd_user_table_next(e->users, &cur)))
        u->dirty = false;
    e->dirty_users = 0;
    fd_window_clear(e->windows, -1);
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(n_dirty);
    for (int i = 0; i < n_dirty; i++) {
        part *pt = &e->parts[dirty[i]];
        memset(pt->stats, 0, sizeof pt->stats);
        pt->stored_offset = pt->next_offset;
        pt->dirty = false;
        if (pt->next_offset >= 0)
            rd_kafka_topic_partition_list_add(commit, e->cfg->kafka_topic_events, dirty[i])
                ->offset = pt->next_offset;
    }
    e->flush_ambiguous = false;
    /* Kafka's committed offsets follow Redis, for lag tools only. */
    if (commit->cnt)
        rd_kafka_commit(e->consumer, commit, 1);
    rd_kafka_topic_partition_list_destroy(commit);
    if (fd_user_table_count(e->users) > MAX_USERS_IN_MEMORY) {
        fd_user_table_free(e->users); /* all clean now: reload on next sight */
        e->users = fd_user_table_new(1024);
        if (!e->users)
            e->fatal = 1;
    }
}

/* Append one command built from up to 16 string arguments. */
static int cmd(fd_engine *e, int argc, const char **argv)
{
    return fd_redis_appendv(e->redis, argc, argv, NULL);
}

/* Write every dirty partition's state and offset in one MULTI/EXEC.
 * 0 when written (or nothing to write); -1 to retry later. */
static int flush(fd_engine *e)
{
    int32_t *dirty = malloc((size_t)(e->n_parts ? e->n_parts : 1) * sizeof *dirty);
    if (!dirty)
        return -1;
    int n_dirty = 0;
    for (int32_t p = 0; p < e->n_parts; p++)
        if (e->parts[p].assigned && e->parts[p].dirty && !e->parts[p].need_resolve)
            dirty[n_dirty++] = p;
    int rc = -1;
    char err[256];
    redisReply **rep = NULL;
    if (n_dirty == 0) {
        rc = 0;
        goto out;
    }
    if (fd_kafka_delivery_failures(e->producer) > 0) {
        fd_err("engine", "a dead letter could not be delivered; stopping without storing the "
                         "offsets past it (they will be reprocessed)");
        e->fatal = 1;
        goto out;
    }
    if (fd_kafka_drain(e->producer, 100) != 0) {
        set_blocked(e, true, "waiting for dead letters to be delivered");
        goto out;
    }
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable");
        goto out;
    }

    /* Round trip 1: WATCH the partition keys and read what is stored. */
    rep = calloc((size_t)n_dirty + 2, sizeof *rep);
    if (!rep)
        goto out;
    for (int i = 0; i < n_dirty; i++) {
        const char *argv[] = {"WATCH", part_key(e, dirty[i])};
        cmd(e, 2, argv);
    }
    for (int i = 0; i < n_dirty; i++) {
        const char *argv[] = {"HGET", part_key(e, dirty[i]), "offset"};
        cmd(e, 3, argv);
    }
    if (fd_redis_read_replies(e->redis, NULL, (size_t)n_dirty, err, sizeof err) != 0 ||
        fd_redis_read_replies(e->redis, rep, (size_t)n_dirty, err, sizeof err) != 0) {
        set_blocked(e, true, "Redis unavailable");
        goto out;
    }
    int applied = 0, fenced = 0;
    bool *drop = calloc((size_t)e->n_parts, sizeof *drop);
    if (!drop)
        goto out;
    for (int i = 0; i < n_dirty; i++) {
        part *pt = &e->parts[dirty[i]];
        int64_t s = reply_int(rep[i], -1);
        freeReplyObject(rep[i]);
        rep[i] = NULL;
        if (s == pt->stored_offset)
            continue;
        if (e->flush_ambiguous && s == pt->next_offset) {
            applied++;
            continue;
        }
        fd_err("engine",
               "partition=%" PRId32 " stored offset moved to %" PRId64 " (expected %" PRId64
               "): another instance wrote it; dropping this instance's state for it",
               dirty[i], s, pt->stored_offset);
        drop[dirty[i]] = true;
        fenced++;
    }
    if (applied == n_dirty) {
        fd_info("engine", "the previous flush did apply (its reply was lost)");
        const char *argv[] = {"UNWATCH"};
        cmd(e, 1, argv);
        fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
        finish_flush(e, dirty, n_dirty);
        free(drop);
        rc = 0;
        goto out;
    }
    if (fenced) {
        drop_partitions(e, drop);
        for (int32_t p = 0; p < e->n_parts; p++)
            if (drop[p])
                e->parts[p].need_resolve = true; /* re-read and seek */
        free(drop);
        const char *argv[] = {"UNWATCH"};
        cmd(e, 1, argv);
        fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
        sync_pause(e);
        goto out;
    }
    free(drop);

    /* Round trip 2: MULTI, the state, the offsets, EXEC. */
    size_t n_cmds = 0;
    const char *multi[] = {"MULTI"};
    cmd(e, 1, multi);
    n_cmds++;
    size_t cur = 0;
    fd_user *u;
    char nb[5][24];
    while ((u = fd_user_table_next(e->users, &cur))) {
        if (!u->dirty)
            continue;
        snprintf(nb[0], 24, "%" PRId64, u->count[FD_EV_CLICK]);
        snprintf(nb[1], 24, "%" PRId64, u->count[FD_EV_CART]);
        snprintf(nb[2], 24, "%" PRId64, u->count[FD_EV_PURCHASE]);
        snprintf(nb[3], 24, "%" PRId64, u->first_ts);
        snprintf(nb[4], 24, "%" PRId64, u->last_ts);
        const char *argv[] = {
            "HSET", user_key(e, u->id), "click", nb[0],     "cart", nb[1], "purchase",
            nb[2],  "first_ts",         nb[3],   "last_ts", nb[4]};
        cmd(e, 12, argv);
        n_cmds++;
    }
    cur = 0;
    const fd_window_delta *d;
    while ((d = fd_window_next(e->windows, &cur))) {
        char wkey[128];
        snprintf(wkey, sizeof wkey, "%sfunnel:1m:%" PRId64, e->cfg->redis_key_prefix, d->start_ms);
        for (int f = 0; f < FD_WC__COUNT; f++) {
            if (!d->c[f])
                continue;
            snprintf(nb[0], 24, "%" PRId64, d->c[f]);
            const char *argv[] = {"HINCRBY", wkey, fd_window_field_names[f], nb[0]};
            cmd(e, 4, argv);
            n_cmds++;
        }
    }
    char skey[128], sname[64];
    snprintf(skey, sizeof skey, "%sstats", e->cfg->redis_key_prefix);
    for (int i = 0; i < n_dirty; i++) {
        part *pt = &e->parts[dirty[i]];
        for (int s = 0; s < ST__COUNT; s++) {
            if (!pt->stats[s])
                continue;
            snprintf(nb[0], 24, "%" PRId64, pt->stats[s]);
            const char *argv[] = {"HINCRBY", skey, stat_name(s, sname, sizeof sname), nb[0]};
            cmd(e, 4, argv);
            n_cmds++;
        }
        snprintf(nb[0], 24, "%" PRId64, pt->next_offset);
        snprintf(nb[1], 24, "%" PRId64, pt->max_ts);
        const char *argv[] = {"HSET", part_key(e, dirty[i]), "offset", nb[0], "max_ts", nb[1]};
        cmd(e, 6, argv);
        n_cmds++;
    }
    const char *exec[] = {"EXEC"};
    cmd(e, 1, exec);
    n_cmds++;
    /* Replies: +OK, QUEUED * (n_cmds - 2), then EXEC's. Only EXEC's matters. */
    if (fd_redis_read_replies(e->redis, NULL, n_cmds - 1, err, sizeof err) != 0 ||
        fd_redis_read_replies(e->redis, rep, 1, err, sizeof err) != 0) {
        e->flush_ambiguous = true;
        set_blocked(e, true, "Redis failed during a flush");
        goto out;
    }
    redisReply *x = rep[0];
    if (x->type == REDIS_REPLY_NIL) {
        fd_info("engine", "flush raced with another writer (WATCH); retrying");
    } else if (x->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < x->elements; i++)
            if (x->element[i]->type == REDIS_REPLY_ERROR)
                fd_err("engine", "flush command %zu failed inside EXEC: %s", i + 1,
                       x->element[i]->str);
        finish_flush(e, dirty, n_dirty);
        set_blocked(e, false, NULL);
        rc = 0;
    } else {
        fd_err("engine", "EXEC: unexpected reply: %s",
               x->type == REDIS_REPLY_ERROR ? x->str : "(not an array)");
        set_blocked(e, true, "Redis refused the flush");
    }
    freeReplyObject(x);
    rep[0] = NULL;
out:
    if (rep) {
        for (int i = 0; i < n_dirty + 2; i++)
            if (rep[i])
                freeReplyObject(rep[i]);
        free(rep);
    }
    free(dirty);
    return rc;
}

/* ---- messages ------------------------------------------------------------ */

static void dead_letter(fd_engine *e, const rd_kafka_message_t *m, part *pt, fd_reject why,
                        const char *msg)
{
    fd_debug("engine", "dead letter partition=%" PRId32 " offset=%" PRId64 " reason=%s: %s",
             m->partition, m->offset, fd_reject_name(why), msg);
    if (fd_kafka_produce_dlq(e->producer, e->cfg->kafka_topic_dlq, m, why, msg) != 0) {
        e->fatal = 1; /* offset not advanced: reprocessed after restart */
        return;
    }
    pt->stats[ST_DLQ]++;
    pt->stats[ST_DLQ_REASON0 + why]++;
}

static void handle_message(fd_engine *e, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fd_warn("engine", "consumer: %s", rd_kafka_message_errstr(m));
        return;
    }
    part *pt = get_part(e, m->partition);
    if (!pt || !pt->assigned || pt->need_resolve)
        return; /* stale: fetched before a rebalance or a seek */
    if (pt->next_offset >= 0 && m->offset < pt->next_offset)
        return; /* already processed (refetched after a seek) */
    if (pt->next_offset >= 0 && m->offset > pt->next_offset)
        fd_debug("engine", "partition=%" PRId32 " offset gap %" PRId64 " -> %" PRId64, m->partition,
                 pt->next_offset, m->offset);
    char msg[512];
    pending *pd = &e->pend[e->n_pend];
    fd_reject why = fd_codec_decode(e->codec, m->payload, m->len, &pd->ev, msg, sizeof msg);
    if (why == FD_OK) {
        rd_kafka_timestamp_type_t tst;
        int64_t ref = rd_kafka_message_timestamp(m, &tst);
        if (pt->max_ts > ref)
            ref = pt->max_ts;
        why = fd_event_validate(&pd->ev, ref, e->cfg->input_max_future_skew_ms, msg, sizeof msg);
    }
    if (why != FD_OK) {
        dead_letter(e, m, pt, why, msg);
    } else {
        pd->partition = m->partition;
        if (pd->ev.ts_ms > pt->max_ts)
            pt->max_ts = pd->ev.ts_ms;
        e->n_pend++;
    }
    if (!e->fatal) {
        pt->next_offset = m->offset + 1;
        pt->dirty = true;
    }
}

static void poll_batch(fd_engine *e, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(e->consumer, timeout_ms);
    while (m) {
        handle_message(e, m);
        rd_kafka_message_destroy(m);
        if (e->n_pend >= MAX_BATCH || e->fatal)
            break;
        m = rd_kafka_consumer_poll(e->consumer, 0);
    }
}

/* ---- life cycle ---------------------------------------------------------- */

fd_engine *fd_engine_new(const fd_config *cfg, char *errstr, size_t errstr_size)
{
    fd_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    e->cfg = cfg;
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
    fd_schema_ref refs[FD_CONFIG_MAX_SCHEMA_IDS];
    for (int i = 0; i < cfg->input_n_schema_ids; i++) {
        refs[i].id = cfg->input_schema_ids[i].id;
        refs[i].path = cfg->input_schema_ids[i].path;
    }
    fd_codec_opts co = {.format = (fd_format)fd_format_parse(cfg->input_format),
                        .schema_path = cfg->input_schema,
                        .schema_ids = refs,
                        .n_schema_ids = (size_t)cfg->input_n_schema_ids,
                        .encode_schema_id = cfg->input_n_schema_ids ? refs[0].id : 1,
                        .max_message_bytes = (size_t)cfg->input_max_message_bytes};
    char err[512];
    if (!(e->codec = fd_codec_new(&co, err, sizeof err))) {
        snprintf(errstr, errstr_size, "input: %s", err);
        goto fail;
    }
    fd_redis_opts ro = {.url = cfg->redis_url,
                        .password_file = cfg->redis_password_file,
                        .password_env = cfg->redis_password_env,
                        .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                        .command_timeout_ms = cfg->redis_command_timeout_ms,
                        .backoff_min_ms = cfg->redis_backoff_min_ms,
                        .backoff_max_ms = cfg->redis_backoff_max_ms};
    if (!(e->redis = fd_redis_new(&ro, err, sizeof err))) {
        snprintf(errstr, errstr_size, "redis: %s", err);
        goto fail;
    }
    e->users = fd_user_table_new(1024);
    e->windows = fd_window_table_new();
    e->pend = malloc(MAX_BATCH * sizeof *e->pend);
    if (!e->users || !e->windows || !e->pend) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (!(e->producer = fd_kafka_producer_new(cfg, e->bootstraps, errstr, errstr_size)))
        goto fail;
    if (!(e->consumer =
              fd_kafka_consumer_new(cfg, e->bootstraps, rebalance_cb, e, errstr, errstr_size)))
        goto fail;
    return e;
fail:
    fd_engine_destroy(e);
    return NULL;
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
    e->last_flush_ms = now_ms();
    while (!*sig->stop && !e->fatal) {
        if (sig->reload && *sig->reload) {
            *sig->reload = 0;
            if (sig->on_reload)
                sig->on_reload(sig->arg);
        }
        resolve_partitions(e);
        if (e->n_pend && load_users(e) == 0)
            apply_pending(e);
        int64_t now = now_ms();
        bool due = now - e->last_flush_ms >= e->cfg->redis_flush_interval_ms ||
                   e->dirty_users >= FLUSH_DIRTY_USERS || e->blocked;
        if (e->n_pend == 0 && due) {
            if (flush(e) == 0) {
                e->last_flush_ms = now;
                set_blocked(e, false, NULL);
            }
        }
        sync_pause(e);
        int timeout = e->blocked ? 100 : 20;
        if (e->n_pend < MAX_BATCH)
            poll_batch(e, timeout);
        else
            rd_kafka_consumer_poll(e->consumer, 0); /* keep membership alive */
    }
    /* Drain: finish the batch, write everything, then leave the group. */
    int64_t deadline = now_ms() + SHUTDOWN_TIMEOUT_MS;
    while (!e->fatal && now_ms() < deadline) {
        if (e->n_pend && load_users(e) == 0)
            apply_pending(e);
        if (e->n_pend == 0 && flush(e) == 0)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rd_kafka_consumer_close(e->consumer);
    fd_kafka_drain(e->producer, 5000);
    fd_info("engine", "stopped");
    return e->fatal ? -1 : 0;
}

void fd_engine_destroy(fd_engine *e)
{
    if (!e)
        return;
    if (e->consumer)
        rd_kafka_destroy(e->consumer);
    fd_kafka_producer_destroy(e->producer);
    fd_mock_destroy(e->mock);
    fd_codec_destroy(e->codec);
    fd_redis_destroy(e->redis);
    fd_user_table_free(e->users);
    fd_window_table_free(e->windows);
    free(e->pend);
    free(e->parts);
    free(e->bootstraps);
    free(e);
}
