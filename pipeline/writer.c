/*
 * writer.c - the writer (see engine_int.h): the epochs' MULTI/EXEC and
 * the I/O thread that reads a write's replies (write_errors.c: what a
 * refused write or command means). The consumer thread runs it between
 * polls.
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
#include "pipeline/churn_state.h"
#include "pipeline/mf_state.h"
#include "pipeline/engine_int.h"
#include "pipeline/write_errors.h"

/* An epoch has waited this long for its dead letters' delivery: pause. */
#define DLQ_WAIT_PAUSE_MS 1000

static int merge_window(fd_engine *e, const fd_funnel_delta *d)
{
    if (fd_funnel_merge(e->merged, 0, d->cat, d->start_ms, d->c) != 0)
        return -1;
    if (eng_hourly(e) &&
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
        eng_window_key(e, key, sizeof key, span, d->start_ms, d->cat);
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

const double fd_write_bucket_s[FD_WRITE_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,  1,     2.5,  5};

/* A write is in Redis: its stats into the totals, its round trip into the
 * latency histogram (metrics, progress lines). */
static void count_write(fd_engine *e, const int64_t *stats, int64_t ms)
{
    for (int i = 0; i < SF__COUNT; i++)
        e->totals[i] += stats[i];
    e->writes++;
    e->write_ms_sum += ms;
    int b = 0;
    while (b < FD_WRITE_BUCKETS && (double)ms / 1000.0 > fd_write_bucket_s[b])
        b++;
    if (b < FD_WRITE_BUCKETS)
        e->write_le[b]++;
}

/* Write every complete pending epoch in one MULTI/EXEC: 1 when it is
 * sent (eng_write_poll finishes it), 0 when there was nothing to write (or it
 * was already written), -1 to retry later. */
int eng_write_epochs(fd_engine *e)
{
    if (e->wf.active)
        return -1;
    if (e->n_epochs == 0 || !eng_collect(e) || e->fatal)
        return e->n_epochs == 0 ? 0 : -1;
    if (eng_refusal_wait(e)) /* Redis refused the last try: backing off */
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
        eng_confirm(e, e->n_epochs);
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
            eng_set_blocked(e, true,
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
        eng_set_blocked(e, true, "Redis unavailable");
        goto out;
    }

    /* Round trip 1: WATCH the partition keys and read what is stored; read
     * the churn model's lr too, to refuse a model no instance can merge
     * into (churn_state.c). */
    rep = calloc(2 * (size_t)n + 3, sizeof *rep);
    if (!rep)
        goto out;
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "WATCH %s", eng_part_key(e, parts[i], e->key));
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "HGET %s offset", eng_part_key(e, parts[i], e->key));
    size_t n_model = eng_churn_check(e);
    if (fd_redis_read_replies(e->redis, rep, 2 * (size_t)n + n_model, err, sizeof err) != 0) {
        eng_set_blocked(e, true, "Redis unavailable");
        goto out;
    }
    if (n_model) {
        char cause[1400];
        if (eng_churn_checked(e, rep[2 * n], cause, sizeof cause) != 0) {
            fd_redis_appendf(e->redis, "UNWATCH");
            fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
            eng_refused(e, cause);
            goto out;
        }
    }
    /* An error here (LOADING, NOAUTH, a partition key of another type, ...)
     * refuses the whole write: nothing is sent, it is retried with backoff. */
    for (int i = 0; i < 2 * n; i++) {
        if (rep[i]->type != REDIS_REPLY_ERROR)
            continue;
        char cause[1400], code[32];
        int32_t p = parts[i % n];
        eng_part_key(e, p, e->key);
        if (i >= n && !strcmp(fd_redis_error_code(rep[i]->str, code, sizeof code), "WRONGTYPE"))
            snprintf(cause, sizeof cause,
                     "WRONGTYPE: key %s, partition %" PRId32
                     "'s stored offset, is not a hash (another client wrote it); restore it in "
                     "one transaction: MULTI, DEL it, HSET it offset %" PRId64 " max_ts %" PRId64
                     ", EXEC (a DEL and an HSET sent apart let this instance see the key gone "
                     "and reload the partition from Redis)",
                     e->key, p, e->parts[p].stored_offset, e->parts[p].confirmed_max_ts);
        else
            snprintf(cause, sizeof cause, "%s (%s %s)", rep[i]->str, i < n ? "WATCH" : "HGET",
                     e->key);
        fd_redis_appendf(e->redis, "UNWATCH");
        fd_redis_read_replies(e->redis, NULL, 1, err, sizeof err);
        eng_refused(e, cause);
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
        eng_drop_partition(e, p, true);
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
        eng_churn_written(e, NULL); /* the model it carried: read back */
        eng_mf_written(e, NULL);
        count_write(e, e->wf.stats, e->last_write_ms);
        eng_confirm(e, e->n_epochs);
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
                eng_seg_add(e, (wseg){.first = n_cmds,
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
    size_t users = 0, user_bytes = 0;
    fd_funnel_clear(e->merged, -1);
    for (int k = 0; k < e->n_epochs; k++) {
        epoch *ep = e->epochs[k];
        for (int i = 0; i < e->n_shards; i++)
            for (int c = 0; c < ep->snaps[i]->n_chunks; c++) {
                fd_chunk *ch = &ep->snaps[i]->chunks[c];
                int32_t p = ch->partition;
                if (p >= ep->n_parts || !ep->valid[p] || !e->parts[p].assigned)
                    continue;
                users += ch->users;
                user_bytes += ch->cmds.len;
                eng_seg_add(e, (wseg){.first = n_cmds - x0,
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
    eng_seg_add(e, (wseg){.first = w0, .n = nh, .kind = WE_WINDOW, .src = &e->wbuf});
    eng_seg_add(e, (wseg){.first = w0 + nh, .n = nw - nh, .kind = WE_FUNNEL_OPEN}); /* the ZADD */
    n_cmds += nw;
    /* The stats deltas, with those kept from earlier writes (refused, or
     * the write errors found in their replies). */
    int64_t sent_stats[SF__COUNT];
    snprintf(wkey, sizeof wkey, "%sstats", e->cfg->redis_key_prefix);
    for (int st = 0; st < SF__COUNT; st++) {
        int64_t v = (st < FD_ST__COUNT ? stats[st] : 0) + e->carry[st];
        e->carry_sent[st] = e->carry[st];
        sent_stats[st] = v;
        if (v) {
            eng_seg_add(
                e, (wseg){.first = n_cmds - x0, .n = 1, .kind = WE_STATS, .field = st, .value = v});
            fd_redis_appendf(e->redis, "HINCRBY %s %s %lld", wkey,
                             eng_stat_field(st, sname, sizeof sname), (long long)v);
            n_cmds++;
        }
    }
    if (e->fatal) { /* out of memory merging: nothing of this is sent */
        fd_redis_disconnect(e->redis);
        goto out;
    }
    /* The churn model merged at the newest of these epochs (churn_state.c):
     * with the offsets it goes with. */
    long model_at = -1;
    for (int k = e->n_epochs - 1; k >= 0; k--)
        if (e->epochs[k]->model) {
            size_t nm = eng_churn_append(e, e->epochs[k]);
            if (nm) {
                model_at = (long)(n_cmds - x0);
                eng_seg_add(e, (wseg){.first = n_cmds - x0, .n = nm, .kind = WE_MODEL});
            }
            n_cmds += nm;
            break;
        }
    /* the recommendation model's rows changed since the last write (mf_state.c) */
    const fd_resp *mf_src;
    size_t n_mf = eng_mf_append(e, &mf_src);
    long mf_at = -1;
    if (n_mf) {
        mf_at = (long)(n_cmds - x0);
        eng_seg_add(e, (wseg){.first = n_cmds - x0, .n = n_mf, .kind = WE_MODEL, .src = mf_src});
        n_cmds += n_mf;
    }
    if (e->fatal) {
        fd_redis_disconnect(e->redis);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        int32_t p = parts[i];
        eng_seg_add(e, (wseg){.first = n_cmds - x0, .n = 1, .kind = WE_PART, .part = p});
        fd_redis_appendf(e->redis, "HSET %s offset %lld max_ts %lld", eng_part_key(e, p, e->key),
                         (long long)offset[p], (long long)max_ts[p]);
        n_cmds++;
        e->attempt_offset[p] = offset[p];
    }
    fd_redis_appendf(e->redis, "EXEC");
    n_cmds++;
    /* Hand the connection to the I/O thread; eng_write_poll finishes. */
    e->wf = (inflight){.active = true,
                       .parts = parts,
                       .offset = offset,
                       .max_ts = max_ts,
                       .n = n,
                       .n_epochs = e->n_epochs,
                       .n_cmds = n_cmds,
                       .users = users,
                       .user_bytes = user_bytes,
                       .t_start = fd_mono_ms(),
                       .model_at = model_at,
                       .mf_at = mf_at};
    memcpy(e->wf.stats, sent_stats, sizeof sent_stats);
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
        for (int i = 0; i < 2 * n + 3; i++)
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
void eng_tell_closer_backlog(fd_engine *e)
{
    e->backlog_checked_ms = fd_mono_ms();
    atomic_store(&e->cl.catching_up, eng_backlog(e));
}

/* The consumer thread's side of a write whose replies io has read. */
static void finish_write(fd_engine *e, int io_rc, redisReply *x)
{
    inflight *w = &e->wf;
    if (io_rc != 0 || !x) {
        e->write_ambiguous = true;
        eng_set_blocked(e, true, "Redis failed during a write");
    } else {
        e->last_write_ms = fd_mono_ms() - w->t_start;
        fd_debug("engine",
                 "wrote %d epoch(s): %zu users (%zu bytes of their commands), %zu commands, %d "
                 "partition(s) in %" PRId64 " ms",
                 w->n_epochs, w->users, w->user_bytes, w->n_cmds, w->n, e->last_write_ms);
        if (x->type == REDIS_REPLY_NIL) {
            fd_info("engine", "write raced with another writer (WATCH); retrying");
        } else if (x->type == REDIS_REPLY_ARRAY) {
            eng_refusal_over(e);
            eng_count_refused(e, x); /* before confirm: it names keys from the snapshots */
            for (int i = 0; i < w->n; i++)
                e->parts[w->parts[i]].confirmed_max_ts = w->max_ts[w->parts[i]];
            if (w->model_at >= 0) {
                redisReply none = {.type = REDIS_REPLY_NIL}; /* no answer: base stays */
                eng_churn_written(e, (size_t)w->model_at < x->elements ? x->element[w->model_at]
                                                                       : &none);
            }
            if (w->mf_at >= 0) {
                redisReply none = {.type = REDIS_REPLY_NIL};
                eng_mf_written(e, (size_t)w->mf_at < x->elements ? x->element[w->mf_at] : &none);
            }
            count_write(e, w->stats, e->last_write_ms);
            eng_confirm(e, w->n_epochs);
            eng_set_blocked(e, false, NULL);
            if (e->n_epochs == 0) {
                eng_tell_closer_backlog(e);
                eng_closer_kick(e);
            }
        } else {
            /* EXECABORT says only that a queued command was refused: the
             * cause is that command's error (OOM, MISCONF, READONLY, ...). */
            eng_refused(e, e->io.queued_err[0] ? e->io.queued_err
                           : x->type == REDIS_REPLY_ERROR
                               ? x->str
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
void eng_write_poll(fd_engine *e, bool block)
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

void *eng_io_main(void *arg)
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

void eng_io_stop(fd_engine *e)
{
    eng_bg_stop(&e->io.t);
    if (e->io.reply)
        freeReplyObject(e->io.reply);
    e->io.reply = NULL;
}
