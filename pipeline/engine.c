/*
 * engine.c - see engine.h and engine_int.h (which file holds what). The
 * consumer thread's life cycle: it polls Kafka, routes each message to the
 * shard that owns the user (router.c) and writes what the shards prepared
 * to Redis (writer.c, where the exactly-once rules are); a closer thread
 * closes funnel windows (closer.c); pausing is pause.c, status, metrics and
 * reload engine_status.c. This file: the helper threads,
 * epochs, creation, the main loop and shutdown.
 */
#include "pipeline/churn_setup.h"
#include "pipeline/churn_state.h"
#include "pipeline/mf_state.h"
#include "pipeline/write_errors.h"
#include "pipeline/alert.h"
#include "pipeline/engine_int.h"

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
void eng_bg_stop(bgthread *b)
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

part *eng_get_part(fd_engine *e, int32_t p)
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
const char *eng_part_key(const fd_engine *e, int32_t p, char buf[PART_KEY_MAX])
{
    snprintf(buf, PART_KEY_MAX, "%spart:%s:%" PRId32, e->cfg->redis_key_prefix,
             e->cfg->kafka_topic_events, p);
    return buf;
}

/* Queue a control item on every shard (they have reserved room for them). */
void eng_broadcast(fd_engine *e, fd_item it)
{
    for (int i = 0; i < e->n_shards; i++)
        while (fd_shard_push(e->shards[i], &it, 1) != 1)
            fd_sleep_ms(1); /* only if >1024 control items are queued: shard is stuck */
}

/* ---- epochs ---------------------------------------------------------- */

/* Note where each shard's count of dirty users stands, at a marker. */
static void mark_dirty_counts(fd_engine *e)
{
    size_t base;
    for (int i = 0; i < e->n_shards; i++)
        e->dirty_mark[i] = fd_shard_dirty(e->shards[i], &base);
}

/* The epoch bounds (engine.epoch_max_events, engine.epoch_max_users): see
 * engine_int.h. A shard's users of the epoch being built are those that
 * turned dirty after the later of the marker (its count noted then) and
 * the shard's own snapshot at that marker: until a shard reaches the
 * marker, what its queue held counts here too; once it took its snapshot,
 * only what came after. So an epoch may pass the bound by what the queues
 * held (engine.queue_messages per shard), and the count falls back as soon
 * as the shards reach the marker, so routing goes on during the write. */
bool eng_epoch_full(fd_engine *e)
{
    if (e->epoch_routed >= (uint64_t)e->cfg->engine_epoch_max_events)
        return true;
    size_t n = 0;
    for (int i = 0; i < e->n_shards; i++) {
        size_t base, d = fd_shard_dirty(e->shards[i], &base);
        size_t from = base > e->dirty_mark[i] ? base : e->dirty_mark[i];
        n += d > from ? d - from : 0;
    }
    return n >= (size_t)e->cfg->engine_epoch_max_users;
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
    free(ep->model);
    free(ep->quality);
    free(ep);
}

/* Start an epoch when something changed: record offsets, send markers. */
int eng_start_epoch(fd_engine *e)
{
    bool any = false;
    for (int32_t p = 0; p < e->n_parts; p++)
        any |= e->parts[p].assigned && e->parts[p].dirty && !e->parts[p].need_resolve;
    if (!any) {
        /* nothing to write; the bounds count afresh, so that users a
         * watermark's timers changed cannot hold routing (eng_route) */
        e->epoch_routed = 0;
        mark_dirty_counts(e);
        return 0;
    }
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
    e->epoch_routed = 0;
    mark_dirty_counts(e);
    /* The churn timers of every shard follow the partition's whole stream,
     * not only the events that shard saw (shard_churn.c). */
    for (int32_t p = 0; e->churn_on && p < e->n_parts; p++)
        if (ep->valid[p])
            eng_broadcast(
                e,
                (fd_item){.kind = FD_ITEM_WATERMARK, .partition = p, .value = e->parts[p].max_ts});
    fd_item it = {.kind = FD_ITEM_MARKER, .value = (int64_t)ep->id};
    eng_broadcast(e, it);
    return 0;
}

/* Collect the shards' answers. Returns true when every pending epoch is
 * complete. */
bool eng_collect(fd_engine *e)
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
                           " (%s); stopping without writing it",
                           i, ep->id,
                           sn->error == 2 ? "internal error: a Redis command got the wrong "
                                            "number of arguments"
                                          : "out of memory");
                    e->fatal = 1;
                }
                ep->snaps[i] = sn;
                ep->missing--;
                if (ep->missing == 0 && !e->fatal &&
                    (eng_churn_merge(e, ep) != 0 || eng_mf_merge(e, ep) != 0)) {
                    fd_err("engine",
                           "out of memory merging the models of epoch %" PRIu64
                           "; stopping without writing it",
                           ep->id);
                    e->fatal = 1;
                }
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

/* Drop everything held for partition p and make it re-read its offset. */
void eng_drop_partition(fd_engine *e, int32_t p, bool resolve_again)
{
    invalidate_partition(e, p);
    fd_item it = {.kind = FD_ITEM_DROP, .partition = p};
    eng_broadcast(e, it);
    part *pt = &e->parts[p];
    pt->dirty = false;
    pt->data_loss = 0;
    if (resolve_again) {
        bool *drop = calloc((size_t)e->n_parts, sizeof *drop);
        if (drop) {
            drop[p] = true;
            eng_drop_waiting(e, drop, e->n_parts);
            free(drop);
        }
        pt->need_resolve = true;
        eng_sync_pause(e);
    }
}

void eng_confirm(fd_engine *e, int upto)
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

/* ---- when to write ------------------------------------------------ */

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
bool eng_backlog(const fd_engine *e)
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
int64_t eng_flush_interval(const fd_engine *e)
{
    int64_t i = e->flush_ms, s = WRITE_STRETCH * e->last_write_ms;
    if (s < BACKLOG_MIN_MS)
        s = BACKLOG_MIN_MS;
    if (s > i && !eng_backlog(e))
        return i; /* no backlog: nothing to gain by waiting, and the end of a burst is fresh */
    if (s > MAX_STRETCH_MS)
        s = MAX_STRETCH_MS;
    return s > i ? s : i;
}

/* What a flush that has not finished waits on, for the error that says
 * it timed out (a stop that is not clean should say why). */
static void flush_waits(fd_engine *e, char *buf, size_t n)
{
    size_t len = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (len < n) {                                                                             \
            int w_ = snprintf(buf + len, n - len, __VA_ARGS__);                                    \
            len += w_ > 0 ? (size_t)w_ : 0;                                                        \
        }                                                                                          \
    } while (0)
    buf[0] = '\0';
    if (e->wait_len)
        ADD("; %zu message(s) still waiting for room in the shard queues", e->wait_len);
    if (e->wf.active)
        ADD("; a write of %zu command(s) in flight for %" PRId64 " ms", e->wf.n_cmds,
            fd_mono_ms() - e->wf.t_start);
    for (int k = 0; k < e->n_epochs; k++) {
        epoch *ep = e->epochs[k];
        for (int i = 0; i < e->n_shards; i++)
            if (!ep->snaps[i]) {
                uint64_t batches;
                size_t queued;
                fd_shard_progress(e->shards[i], &batches, &queued);
                ADD("; epoch %" PRIu64 " waits for shard=%d (%zu item(s) queued, %" PRIu64
                    " batches done)",
                    ep->id, i, queued, batches);
            }
    }
    int64_t dl = fd_kafka_dlq_pending(e->producer);
    if (dl > 0)
        ADD("; %" PRId64 " dead letter(s) not yet delivered", dl);
    if (eng_refusal_wait(e))
        ADD("; backing off after Redis refused a write");
    if (e->blocked)
        ADD("; blocked");
#undef ADD
    if (len == 0)
        snprintf(buf, n, "; nothing pending (the last write just missed the deadline)");
}

/* Start an epoch if none is pending, then write until done or the
 * deadline passes. Used at revocation and shutdown. */
int eng_flush_now(fd_engine *e, int64_t deadline)
{
    eng_write_poll(e, true);
    if (e->n_epochs == 0 && eng_start_epoch(e) != 0)
        return -1;
    while (e->n_epochs && !e->fatal) {
        eng_write_epochs(e);
        eng_write_poll(e, true);
        if (e->n_epochs == 0)
            break;
        if (fd_mono_ms() >= deadline)
            return -1;
        fd_sleep_ms(5);
    }
    /* Anything that changed while the pending epochs were written. */
    if (!e->fatal && eng_start_epoch(e) == 0)
        while (e->n_epochs && !e->fatal && fd_mono_ms() < deadline) {
            eng_write_epochs(e);
            eng_write_poll(e, true);
            if (e->n_epochs == 0)
                break;
            fd_sleep_ms(5);
        }
    return e->n_epochs ? -1 : 0;
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
    pthread_mutex_init(&e->pub.mu, NULL);
    pthread_mutex_init(&e->reload.mu, NULL);
    e->flush_ms = cfg->redis_flush_interval_ms;
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
    if (eng_churn_init(e, errstr, errstr_size) != 0 || eng_mf_init(e, errstr, errstr_size) != 0)
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
                            .stalled = &e->stalled,
                            .churn = e->churn_on ? &e->churn : NULL,
                            .model = &e->pub,
                            .mf = e->mf_on ? &e->mfp : NULL,
                            .mfpub = &e->mfpub,
                            .reload = &e->reload};
    e->shards = calloc((size_t)e->n_shards, sizeof *e->shards);
    e->route_buf = malloc((size_t)e->n_shards * ROUTE_CHUNK * sizeof *e->route_buf);
    e->route_n = calloc((size_t)e->n_shards, sizeof *e->route_n);
    e->route_room = calloc((size_t)e->n_shards, sizeof *e->route_room);
    e->dirty_mark = calloc((size_t)e->n_shards, sizeof *e->dirty_mark);
    e->merged = fd_funnel_table_new();
    if (!e->shards || !e->route_buf || !e->route_n || !e->route_room || !e->dirty_mark ||
        !e->merged || !eng_get_part(e, 0)) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    for (int i = 0; i < e->n_shards; i++)
        if (!(e->shards[i] = fd_shard_new(&e->env, i, errstr, errstr_size)))
            goto fail;
    if (!(e->consumer =
              fd_kafka_consumer_new(cfg, e->bootstraps, eng_rebalance_cb, e, errstr, errstr_size)))
        goto fail;
    e->cq = rd_kafka_queue_get_consumer(e->consumer);
    fd_fetch_nudge_init(&e->nudge, e->consumer);
    if (bg_start(&e->cl.t, eng_closer_main, e) != 0) {
        snprintf(errstr, errstr_size, "cannot start the window closer thread");
        goto fail;
    }
    if (bg_start(&e->io.t, eng_io_main, e) != 0) {
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
                          : cfg->redis_username && *cfg->redis_username && strstr(err, "ACL user")
                              ? "redis.username"
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
    fd_churn_params chp;
    if (fd_churn_enabled(cfg) &&
        fd_churn_params_from_config(&chp, cfg, &cp.feat, err, sizeof err)) {
        snprintf(errstr, errstr_size, "%s: %s",
                 fd_config_where(cfg, "churn.horizon", where, sizeof where), err);
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
    if (fd_churn_enabled(cfg)) {
        fd_alert_enc *a = fd_alert_enc_new(!strcmp(cfg->kafka_alerts_format, "json"),
                                           cfg->kafka_alerts_schema, NULL, err, sizeof err);
        if (!a) {
            snprintf(errstr, errstr_size, "%s: %s",
                     fd_config_where(cfg, "kafka.alerts_schema", where, sizeof where), err);
            return -1;
        }
        fd_alert_enc_free(a);
    }
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
        if (sig->before_poll)
            sig->before_poll(e, false, sig->hook_arg);
        if (sig->reload && *sig->reload) {
            *sig->reload = 0;
            if (sig->on_reload)
                sig->on_reload(sig->arg);
        }
        eng_resolve_partitions(e);
        int64_t now = fd_mono_ms();
        int64_t since = now - e->last_flush_ms; /* eng_flush_interval() asks librdkafka: not
                                                   before the configured interval */
        if (e->n_epochs == 0 &&
            ((since >= e->flush_ms && (since >= eng_flush_interval(e) || over_user_bound(e))) ||
             eng_epoch_full(e))) {
            eng_start_epoch(e);
            e->last_flush_ms = now;
        }
        if (now - e->backlog_checked_ms >= 1000)
            eng_tell_closer_backlog(e);
        eng_write_poll(e, false);
        eng_flush_carry(e, false); /* stats deltas left over, when no epoch is pending */
        if (e->n_epochs && eng_write_epochs(e) == 0 && e->n_epochs == 0) { /* already applied */
            eng_set_blocked(e, false, NULL);
            eng_closer_kick(e);
        }
        if (atomic_load(&e->stalled) > 0 && !e->blocked) {
            eng_set_blocked(e, true, "Redis unavailable (shards cannot load users)");
            e->stall_blocked = true;
        } else if (e->stall_blocked && atomic_load(&e->stalled) == 0 && e->n_epochs == 0) {
            eng_set_blocked(e, false, NULL);
        }
        if (!e->blocked)
            e->stall_blocked = false;
        eng_sync_pause(e);
        eng_unstick_partitions(e);
        eng_test_reassign(e);
        rd_kafka_poll(e->producer, 0);
        if (e->wait_len)
            eng_route(e);
        /* While messages wait for room, poll only once the partitions are
         * paused (it serves rebalances and keeps the group membership);
         * what it returns joins the waiting line, never dropped. */
        if (e->wait_len && e->queue_full &&
            fd_mono_ms() - e->queue_full_since < QUEUE_FULL_PAUSE_MS)
            fd_sleep_ms(1);
        else
            eng_poll_batch(e, e->wait_len || e->n_epochs || e->blocked ? 5 : 20);
    }
    if (sig->before_poll)
        sig->before_poll(e, true, sig->hook_arg);
    /* Drain: hand over what was polled, write everything, leave the group. */
    int64_t deadline = fd_mono_ms() + e->cfg->engine_shutdown_timeout_ms;
    e->draining = true; /* no epoch bound (eng_route): the drain writes no epoch until after */
    while (e->wait_len && !e->fatal && fd_mono_ms() < deadline) {
        eng_route(e);
        if (e->wait_len)
            fd_sleep_ms(5);
    }
    bool flushed = !e->fatal && eng_flush_now(e, deadline) == 0;
    if (!e->fatal) {
        eng_flush_carry(e, true);
        eng_report_carry(e);
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
        else {
            char waits[1024];
            flush_waits(e, waits, sizeof waits);
            fd_err("engine",
                   "shutdown: could not write all state within %" PRId64
                   " ms (engine.shutdown_timeout_ms); it will be reprocessed from the stored "
                   "offsets (%s)",
                   e->cfg->engine_shutdown_timeout_ms, waits + 2);
        }
    }
    eng_closer_stop(e); /* then close what the last writes allow, here */
    if (!e->fatal && flushed) {
        eng_close_windows(e);
        eng_send_alerts(e);
    }
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
    eng_closer_stop(e); /* it uses the producer and Redis */
    eng_write_poll(e, true);
    eng_io_stop(e);
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
    eng_churn_free(e);
    eng_mf_free(e);
    free(e->wd_batches);
    free(e->wd_change_ms);
    free(e->shards);
    free(e->route_buf);
    free(e->reap);
    free(e->route_n);
    free(e->dirty_mark);
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
