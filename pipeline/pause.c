/*
 * pause.c - pausing (see engine_int.h): backpressure pauses every assigned
 * partition; a resumed partition is sought to its position; a partition
 * that stays stuck is sought again, then assigned again (librdkafka#5591).
 * Consumer thread only.
 */
#include "pipeline/engine_int.h"

/* Pause or resume one partition. A resumed partition is sought to just
 * after the last message polled from it, so what librdkafka purged while
 * it was paused is fetched again and nothing is skipped (duplicates are
 * dropped by offset). */
/* Pause or resume partition p. On resume the position is set again with a
 * seek AFTER the resume: a seek before it can be lost to the pause/resume
 * version barrier, leaving the partition fetching nothing for good
 * (librdkafka #2190, #3471, #5591; seen here once in ~30 runs as a
 * partition that never delivered a message). Nothing is polled between
 * the two calls, and the seek purges whatever the fetcher queued before
 * it, so no message from the old position is taken. */
static void set_paused(fd_engine *e, int32_t p, bool paused)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, e->cfg->kafka_topic_events, p);
    rd_kafka_resp_err_t err = paused ? rd_kafka_pause_partitions(e->consumer, l)
                                     : rd_kafka_resume_partitions(e->consumer, l);
    if (!err && !paused && e->parts[p].polled_offset >= 0 && !e->parts[p].need_resolve) {
        l->elems[0].offset = e->parts[p].polled_offset;
        rd_kafka_error_t *serr = rd_kafka_seek_partitions(e->consumer, l, 5000);
        if (serr) {
            fd_warn("engine", "partition=%" PRId32 ": seek to %" PRId64 " on resume: %s", p,
                    e->parts[p].polled_offset, rd_kafka_error_string(serr));
            rd_kafka_error_destroy(serr);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        fd_warn("engine", "%s partition=%" PRId32 ": %s", paused ? "pause" : "resume", p,
                rd_kafka_err2str(err));
    else
        e->parts[p].paused = paused;
    e->parts[p].idle_since_ms = fd_mono_ms(); /* the stuck check starts over */
}

/* Backstop for the same librdkafka race: a resumed partition that has
 * delivered nothing for STUCK_MS while the broker holds messages past the
 * position is sought again (after a resume), with a warning. Checked once
 * a second; a broker round trip only for partitions idle that long. */
#define STUCK_MS 3000
void eng_unstick_partitions(fd_engine *e)
{
    int64_t now = fd_mono_ms();
    if (now - e->stuck_checked_ms < 1000)
        return;
    e->stuck_checked_ms = now;
    for (int32_t p = 0; p < e->n_parts; p++) {
        part *pt = &e->parts[p];
        if (!pt->assigned || pt->need_resolve || pt->paused || pt->polled_offset < 0)
            continue;
        if (pt->msgs != pt->msgs_at_check) {
            pt->msgs_at_check = pt->msgs;
            pt->idle_since_ms = now;
            pt->stuck_tries = 0;
            continue;
        }
        if (now - pt->idle_since_ms < STUCK_MS)
            continue;
        pt->idle_since_ms = now;
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(e->consumer, e->cfg->kafka_topic_events, p, &lo, &hi,
                                             500) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi <= pt->polled_offset)
            continue; /* idle because there is nothing to read */
        if (pt->stuck_tries++ < 2) {
            fd_warn("engine",
                    "partition=%" PRId32 " delivered nothing for %d ms with %" PRId64
                    " message(s) past offset %" PRId64 ": seeking again (librdkafka lost the "
                    "position)",
                    p, STUCK_MS, hi - pt->polled_offset, pt->polled_offset);
            set_paused(e, p, false);
        } else {
            fd_warn("engine",
                    "partition=%" PRId32 " still delivers nothing with %" PRId64
                    " message(s) past offset %" PRId64
                    ": assigning it again (librdkafka left it paused inside, "
                    "confluentinc/librdkafka#5591)",
                    p, hi - pt->polled_offset, pt->polled_offset);
            eng_reassign(e, p);
            pt->stuck_tries = 0;
        }
    }
}

/* Assign partition p again at its position (the stuck partition's last
 * resort): a fresh fetch start clears a pause librdkafka kept inside.
 * Cooperative: p alone; eager: the whole assignment at each partition's
 * position (every fetcher restarts from there, nothing is skipped or
 * read twice), and what funneld has paused is paused again. */
void eng_reassign(fd_engine *e, int32_t p)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_error_t *err = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!strcmp(rd_kafka_rebalance_protocol(e->consumer), "COOPERATIVE")) {
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, e->cfg->kafka_topic_events, p)->offset =
            e->parts[p].polled_offset;
        err = rd_kafka_incremental_unassign(e->consumer, l);
        if (!err)
            err = rd_kafka_incremental_assign(e->consumer, l);
    } else {
        rerr = rd_kafka_assignment(e->consumer, &l);
        if (!rerr) {
            for (int i = 0; i < l->cnt; i++) {
                int32_t q = l->elems[i].partition;
                part *pt = q >= 0 && q < e->n_parts ? &e->parts[q] : NULL;
                l->elems[i].offset = pt && pt->polled_offset >= 0 && !pt->need_resolve
                                         ? pt->polled_offset
                                         : RD_KAFKA_OFFSET_INVALID;
            }
            rerr = rd_kafka_assign(e->consumer, l);
        }
    }
    if (err || rerr)
        fd_warn("engine", "partition=%" PRId32 ": assigning it again: %s", p,
                err ? rd_kafka_error_string(err) : rd_kafka_err2str(rerr));
    if (err)
        rd_kafka_error_destroy(err);
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    /* librdkafka starts every (re)assigned partition unpaused */
    for (int32_t q = 0; q < e->n_parts; q++) {
        part *pt = &e->parts[q];
        if (pt->assigned && pt->paused) {
            rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(one, e->cfg->kafka_topic_events, q);
            rd_kafka_pause_partitions(e->consumer, one);
            rd_kafka_topic_partition_list_destroy(one);
        }
    }
}

/* Test-only (FUNNELD_TEST_REASSIGN_AFTER=N): once N messages were handed
 * to the shards, assign the first assigned partition again, as the stuck
 * check's last resort does, so a test can show that it loses and repeats
 * nothing. */
void eng_test_reassign(fd_engine *e)
{
    static int64_t after = -2;
    if (after == -2) {
        const char *v = getenv("FUNNELD_TEST_REASSIGN_AFTER");
        after = v ? strtoll(v, NULL, 10) : -1;
    }
    if (after < 0 || e->handed < (uint64_t)after)
        return;
    after = -1;
    for (int32_t p = 0; p < e->n_parts; p++)
        if (e->parts[p].assigned && !e->parts[p].need_resolve) {
            fd_warn("engine", "test hook: assigning partition=%" PRId32 " again at offset %" PRId64,
                    p, e->parts[p].polled_offset);
            eng_reassign(e, p);
            return;
        }
}

/* Partitions pause while their offset is unknown, while Redis or the
 * producer is unavailable, and when the shards' queues stayed full for
 * QUEUE_FULL_PAUSE_MS (engine_int.h). */

void eng_sync_pause(fd_engine *e)
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

void eng_set_blocked(fd_engine *e, bool blocked, const char *why)
{
    if (blocked && !e->blocked)
        fd_warn("engine", "pausing consumption: %s", why);
    else if (!blocked && e->blocked)
        fd_info("engine", "resuming consumption");
    e->blocked = blocked;
}
