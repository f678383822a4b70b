/*
 * engine_status.c - what the engine tells the outside (engine.h): its
 * status for systemd and /healthz, the metrics copy for /metrics, the
 * stats fields' names, and SIGHUP's reloadable keys. Engine thread only,
 * unless said otherwise.
 */
#include "pipeline/churn_setup.h"
#include "pipeline/engine_int.h"
#include "pipeline/write_errors.h"

void fd_engine_get_status(fd_engine *e, int64_t stall_ms, fd_engine_status *st)
{
    int64_t now = fd_mono_ms();
    memset(st, 0, sizeof *st);
    st->ready = e->assigned_once;
    st->messages = e->handed;
    st->dead_letters = fd_kafka_dlq_sent(e->producer);
    st->writes = e->writes;
    st->write_ms_sum = e->write_ms_sum;
    st->last_write_ms = e->last_write_ms;
    st->stuck_shard = -1;
    if (!e->wd_batches) {
        e->wd_batches = calloc((size_t)e->n_shards, sizeof *e->wd_batches);
        e->wd_change_ms = calloc((size_t)e->n_shards, sizeof *e->wd_change_ms);
        if (!e->wd_batches || !e->wd_change_ms) {
            free(e->wd_batches);
            free(e->wd_change_ms);
            e->wd_batches = NULL;
            e->wd_change_ms = NULL;
            st->progressing = true; /* cannot tell: do not stop the pings for it */
            return;
        }
        for (int i = 0; i < e->n_shards; i++)
            e->wd_change_ms[i] = now;
    }
    bool waiting_redis = atomic_load(&e->stalled) > 0;
    st->progressing = true;
    for (int i = 0; i < e->n_shards; i++) {
        uint64_t b;
        size_t queued;
        fd_shard_progress(e->shards[i], &b, &queued);
        if (b != e->wd_batches[i] || queued == 0) {
            e->wd_batches[i] = b;
            e->wd_change_ms[i] = now;
        } else if (now - e->wd_change_ms[i] >= stall_ms && !waiting_redis) {
            st->progressing = false;
            if (st->stuck_shard < 0)
                st->stuck_shard = i;
        }
    }
    int64_t lag = 0;
    bool known = false;
    for (int32_t p = 0; p < e->n_parts; p++) {
        if (!e->parts[p].assigned)
            continue;
        st->assigned++;
        int64_t lo, hi;
        if (e->parts[p].stored_offset < 0 ||
            rd_kafka_get_watermark_offsets(e->consumer, e->cfg->kafka_topic_events, p, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue;
        known = true;
        if (hi > e->parts[p].stored_offset)
            lag += hi - e->parts[p].stored_offset;
    }
    st->lag = known ? lag : -1;
}

volatile sig_atomic_t *eng_start_stop;

void fd_engine_startup_stop(volatile sig_atomic_t *flag)
{
    eng_start_stop = flag;
}

int fd_engine_reload(fd_engine *e, const fd_config *next, const char *key, char *errstr,
                     size_t errstr_size)
{
    if (!strcmp(key, "redis.flush_interval_ms")) {
        e->flush_ms = next->redis_flush_interval_ms;
        return 0;
    }
    if (strncmp(key, "churn.", 6) != 0) {
        snprintf(errstr, errstr_size, "%s cannot be changed while running", key);
        return -1;
    }
    if (!e->churn_on)
        return 0; /* nothing runs with it: applied at the next start */
    fd_churn_params p;
    if (fd_churn_params_from_config(&p, next, &e->core.feat, errstr, errstr_size) != 0)
        return -1;
    pthread_mutex_lock(&e->reload.mu);
    if (!strcmp(key, "churn.alert_threshold"))
        e->reload.threshold = p.threshold;
    else if (!strcmp(key, "churn.rearm_margin"))
        e->reload.rearm_margin = p.rearm_margin;
    else if (!strcmp(key, "churn.min_events"))
        e->reload.min_events = p.min_events;
    else if (!strcmp(key, "churn.alert_cooldown"))
        e->reload.cooldown_ms = p.cooldown_ms;
    pthread_mutex_unlock(&e->reload.mu);
    /* every shard takes it at this point of its queue: after what was
     * routed before the SIGHUP, before what comes after */
    eng_broadcast(e, (fd_item){.kind = FD_ITEM_RELOAD});
    return 0;
}

void fd_engine_get_metrics(fd_engine *e, fd_engine_metrics *m)
{
    memset(m, 0, sizeof *m);
    fd_engine_get_status(e, 10000, &m->st);
    /* every stats field by index; fd_engine_stat_name names them */
    for (int i = 0; i < SF__COUNT && i < 128; i++)
        m->stat[i] = e->totals[i];
    m->n_stats = SF__COUNT < 128 ? SF__COUNT : 128;
    memcpy(m->write_le, e->write_le, sizeof m->write_le);
    m->write_seconds_sum = (double)e->write_ms_sum / 1000.0;
    m->rebalances = e->rebalances;
    m->n_shards = e->n_shards < 64 ? e->n_shards : 64;
    for (int i = 0; i < e->n_shards; i++) {
        m->users += fd_shard_users(e->shards[i]);
        if (i < 64) {
            uint64_t b;
            size_t q;
            fd_shard_progress(e->shards[i], &b, &q);
            m->queued[i] = (int64_t)q;
        }
    }
    for (int32_t p = 0; p < e->n_parts && m->n_lag < FD_METRICS_PARTS; p++) {
        if (!e->parts[p].assigned)
            continue;
        int64_t lo, hi, lag = -1;
        if (e->parts[p].stored_offset >= 0 &&
            rd_kafka_get_watermark_offsets(e->consumer, e->cfg->kafka_topic_events, p, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0)
            lag = hi > e->parts[p].stored_offset ? hi - e->parts[p].stored_offset : 0;
        m->lag_part[m->n_lag] = p;
        m->lag[m->n_lag++] = lag;
    }
    m->redis_ok = !e->blocked;
    m->churn = e->churn_on;
    if (e->churn_on) {
        m->auc = fd_quality_auc(&e->Gq);
        m->logloss = fd_quality_logloss(&e->Gq);
        m->examples = e->G.examples;
    }
    m->mf = e->mf_on;
    if (e->mf_on) {
        const fd_mf_quality *q = &e->mfq;
        double c = q->checks ? (double)q->checks : 1.0;
        m->recall = (double)q->hits / c;
        m->ndcg = q->ndcg / c;
        m->pop_recall = (double)q->pop_hits / c;
        m->pop_ndcg = q->pop_ndcg / c;
        m->positives = e->mfpub.g.positives;
    }
}

const char *fd_engine_stat_name(int i, char *buf, size_t n)
{
    return eng_stat_field(i, buf, n);
}
