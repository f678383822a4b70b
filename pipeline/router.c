/*
 * router.c - assignment and routing (see engine_int.h): stored offsets read
 * on assignment and checked against the log (data loss is never silent),
 * the rebalance callback, and the hand-over of polled messages to shards in
 * poll order.
 */
#include "pipeline/engine_int.h"

/* ---- assignment ----------------------------------------------------- */

/* Read stored offsets of newly assigned partitions, check them against the
 * log's start (data loss is never silent), tell the shards, seek, resume. */
void eng_resolve_partitions(fd_engine *e)
{
    int32_t todo[1024];
    int n = 0;
    for (int32_t p = 0; p < e->n_parts && n < 1024; p++)
        if (e->parts[p].assigned && e->parts[p].need_resolve)
            todo[n++] = p;
    if (!n)
        return;
    eng_write_poll(e, true); /* the connection is ours again */
    /* A partition taken back must not overlap a pending epoch's view of it. */
    char err[256];
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0) {
        eng_set_blocked(e, true, "Redis unavailable while reading partition offsets");
        return;
    }
    for (int i = 0; i < n; i++)
        fd_redis_appendf(e->redis, "HMGET %s offset max_ts", eng_part_key(e, todo[i], e->key));
    redisReply *rep[1024];
    if (fd_redis_read_replies(e->redis, rep, (size_t)n, err, sizeof err) != 0) {
        eng_set_blocked(e, true, "Redis unavailable while reading partition offsets");
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
        eng_broadcast(e, it);
        fd_info("engine", "partition=%" PRId32 " assigned, starting at offset %" PRId64 "%s", p,
                start, stored < 0 ? " (no stored offset: log start)" : "");
    }
}

/* Destroy waiting (unrouted) messages of the flagged partitions. */
void eng_drop_waiting(fd_engine *e, const bool *drop, int n_drop)
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

void eng_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    fd_engine *e = opaque;
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            part *pt = eng_get_part(e, parts->elems[i].partition);
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
        e->assigned_once = true;
        e->rebalances++;
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
            eng_drop_waiting(e, drop, e->n_parts);
        /* Write what we hold first (bounded), then forget the partitions. */
        if (eng_flush_now(e, fd_mono_ms() + e->cfg->engine_shutdown_timeout_ms) != 0)
            fd_warn("engine", "could not write state before revocation: the next owner of "
                              "the revoked partitions reprocesses from their stored offsets");
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p < 0 || p >= e->n_parts)
                continue;
            eng_drop_partition(e, p, false);
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
void eng_route(fd_engine *e)
{
    for (int i = 0; i < e->n_shards; i++)
        fd_shard_reap(e->shards[i], &e->reap, &e->reap_cap);
    bool was_full = e->queue_full;
    e->queue_full = false;
    /* The epoch is full (eng_epoch_full): the rest waits for the next
     * marker. With no write pending the main loop starts it at its next
     * turn; while the previous epoch is still being written, this is a
     * full queue (backpressure). Not while draining. */
    bool bounded = !e->draining;
    if (bounded && eng_epoch_full(e)) {
        if (e->n_epochs > 0) {
            e->queue_full = true;
            if (!was_full)
                e->queue_full_since = fd_mono_ms();
        }
        return;
    }
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
        e->epoch_routed += take;
        if (bounded && eng_epoch_full(e))
            return; /* the bound above; queue_full is set on the next call */
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
void eng_take(fd_engine *e, rd_kafka_message_t *m)
{
    bool keep = false;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fd_warn("engine", "consumer: %s", rd_kafka_message_errstr(m));
    } else {
        part *pt = eng_get_part(e, m->partition);
        /* stale (before a rebalance or seek) or already handed on */
        keep = pt && pt->assigned && !pt->need_resolve &&
               (pt->polled_offset < 0 || m->offset >= pt->polled_offset);
    }
    if (keep && wait_push(e, m) == 0) {
        e->parts[m->partition].polled_offset = m->offset + 1;
        e->parts[m->partition].msgs++;
        e->handed++;
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
void eng_poll_batch(fd_engine *e, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(e->consumer, timeout_ms);
    if (m) {
        if (!e->first_consumed && !m->err) { /* funnelctl bench times steady state from here */
            e->first_consumed = true;
            fd_info("engine", "first message consumed: partition=%" PRId32 " offset=%" PRId64,
                    m->partition, m->offset);
        }
        eng_take(e, m);
        rd_kafka_message_t *batch[POLL_BATCH];
        ssize_t n = !e->fatal ? rd_kafka_consume_batch_queue(e->cq, 0, batch, POLL_BATCH) : 0;
        for (ssize_t i = 0; i < n; i++)
            if (!e->fatal)
                eng_take(e, batch[i]);
            else
                rd_kafka_message_destroy(batch[i]);
    }
    fd_fetch_nudge_check(&e->nudge, e->consumer);
    eng_route(e);
}
