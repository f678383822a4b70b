/*
 * shard.c - see shard.h.
 *
 * Why the shard decodes: decoding costs more than consuming (about 1.5 us
 * an Avro event against about 3 us a message for librdkafka), so doing it
 * on the consumer thread would cap funneld well below what the broker
 * delivers. The consumer routes by the Kafka key, which the event contract
 * makes the user id; the shard checks that the decoded user_id equals the
 * key (key_mismatch otherwise), so a user's events always meet in one shard
 * whatever the worker count.
 *
 * Why snapshots are per partition: the writer must be able to drop exactly
 * one partition's unwritten effects (revoked, or taken over by another
 * instance) and keep the rest, so every Redis command a shard prepares is
 * filed under the partition whose offset covers it.
 *
 * Eviction keeps a user in memory until the epoch that carried its last
 * state is confirmed written: reloading it earlier could read an older
 * state from Redis.
 */
#include "pipeline/shard_int.h"

#include <unistd.h>

const char *fd_stat_name(int i, char *buf, size_t n)
{
    if (i == FD_ST_EVENTS)
        return "events";
    if (i == FD_ST_DLQ)
        return "dlq";
    if (i == FD_ST_DATA_LOSS)
        return "data_loss_offsets";
    if (i == FD_ST_LATE)
        return "late_events";
    if (i == FD_ST_USER_UNREADABLE)
        return "user_records_unreadable";
    if (i == FD_ST_DLQ_FAILED)
        return "dlq_failed";
    if (i == FD_ST_SATURATED)
        return "saturated_sums";
    if (i == FD_ST_ALERTS)
        return "churn_alerts";
    if (i >= FD_ST_EVENTS_TYPE0 && i < FD_ST_EVENTS_TYPE_END) {
        static const char *const type[] = {"events.click", "events.cart", "events.purchase"};
        return type[i - FD_ST_EVENTS_TYPE0];
    }
    if (i >= FD_ST_DLQ_FAILED_REASON0)
        snprintf(buf, n, "dlq_failed.%s",
                 fd_reject_name((fd_reject)(i - FD_ST_DLQ_FAILED_REASON0)));
    else
        snprintf(buf, n, "dlq.%s", fd_reject_name((fd_reject)(i - FD_ST_DLQ_REASON0)));
    return buf;
}

const char *fd_funnel_key(char *buf, size_t n, const char *prefix, const char *span, int64_t start,
                          const char *sep, const char *name)
{
    if (sep)
        snprintf(buf, n, "%sfunnel:%s:%lld%s%s", prefix, span, (long long)start, sep, name);
    else
        snprintf(buf, n, "%sfunnel:%s:%lld", prefix, span, (long long)start);
    return buf;
}

int fd_shard_of(const char *id, size_t len, int n_shards)
{
    return n_shards <= 1 ? 0 : (int)(fd_user_hash(id, len) % (uint32_t)n_shards);
}

void fd_snapshot_free(fd_snapshot *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_chunks; i++) {
        fd_resp_free(&s->chunks[i].cmds);
        free(s->chunks[i].win);
    }
    fd_resp_free(&s->pfadd);
    free(s->chunks);
    free(s->lr_cur);
    free(s->lr_prev);
    free(s->q_delta);
    fd_mf_delta_free(s->mf_delta);
    free(s->mf_delta);
    free(s->mf_q);
    free(s);
}

static pstate *part_of(fd_shard *s, int32_t p)
{
    if (p < 0 || p > 1000000)
        return NULL;
    if (p >= s->n_parts) {
        int n = s->n_parts ? s->n_parts : 16;
        while (n <= p)
            n *= 2;
        pstate *np = realloc(s->parts, (size_t)n * sizeof *np);
        if (!np)
            return NULL;
        memset(np + s->n_parts, 0, (size_t)(n - s->n_parts) * sizeof *np);
        s->parts = np;
        s->n_parts = n;
    }
    return &s->parts[p];
}

int shard_grow_dl(fd_shard *s)
{
    if (s->dl_cap > SIZE_MAX / 2 / sizeof *s->dl)
        return -1;
    size_t cap = s->dl_cap ? s->dl_cap * 2 : 1024;
    fd_user **dl = realloc(s->dl, cap * sizeof *dl);
    if (!dl)
        return -1;
    s->dl = dl;
    s->dl_cap = cap;
    return 0;
}

/* PREFIX "user:" id, in the shard's buffer (no snprintf: this runs for
 * every user loaded and every user written). */
size_t shard_user_key_len(fd_shard *s, const char *id, size_t li)
{
    const char *prefix = s->env->cfg->redis_key_prefix;
    size_t lp = s->prefix_len;
    if (lp + 5 + li + 1 > sizeof s->key) { /* a prefix longer than 255 bytes */
        snprintf(s->key, sizeof s->key, "%suser:%s", prefix, id);
        return strlen(s->key);
    }
    memcpy(s->key, prefix, lp);
    memcpy(s->key + lp, "user:", 5);
    memcpy(s->key + lp + 5, id, li + 1);
    return lp + 5 + li;
}

const char *shard_user_key(fd_shard *s, const char *id)
{
    shard_user_key_len(s, id, strlen(id));
    return s->key;
}

/* ---- loading users ------------------------------------------------------ */

/* A user record funneld cannot read (another program wrote the key): say
 * so with the key, count it, and the user starts afresh (its next write
 * replaces the value). */
static void unreadable(fd_shard *s, size_t k, const char *why)
{
    const char *id = s->batch[s->need[k]].user_id;
    fd_err("shard", "user=%s key %s: unreadable user record, starting it afresh: %s", id,
           shard_user_key(s, id), why);
    pstate *ps = part_of(s, s->batch_part[s->need[k]]);
    if (ps) {
        ps->stats[FD_ST_USER_UNREADABLE]++;
        ps->touched = true;
    }
}

/* MGET answers nil both for an absent key and for one of another type (a
 * list, a hash, ...), so the load also asks EXISTS of the same keys: when
 * it counts more keys than MGET returned strings, the nil ones are asked
 * their TYPE (rare: only then a second round trip). A foreign value of any
 * type is treated as an unreadable record. 0, or -1 when Redis failed. */
static int check_foreign(fd_shard *s, const redisReply *r, size_t n_need, long long n_exist)
{
    long long n_str = 0;
    for (size_t k = 0; k < n_need; k++)
        n_str += r->element[k]->type == REDIS_REPLY_STRING;
    if (n_exist <= n_str)
        return 0;
    char err[256];
    size_t n_nil = 0;
    for (size_t k = 0; k < n_need; k++)
        if (r->element[k]->type != REDIS_REPLY_STRING) {
            fd_redis_appendf(s->redis, "TYPE %s", shard_user_key(s, s->batch[s->need[k]].user_id));
            n_nil++;
        }
    redisReply **t = calloc(n_nil, sizeof *t);
    if (!t || fd_redis_read_replies(s->redis, t, n_nil, err, sizeof err) != 0) {
        if (fd_redis_pending(s->redis))
            fd_redis_disconnect(s->redis);
        free(t);
        return -1;
    }
    for (size_t k = 0, j = 0; k < n_need; k++) {
        if (r->element[k]->type == REDIS_REPLY_STRING)
            continue;
        const redisReply *ty = t[j++];
        if (ty->type == REDIS_REPLY_STATUS && strcmp(ty->str, "none") != 0 &&
            strcmp(ty->str, "string") != 0) {
            char why[64];
            snprintf(why, sizeof why, "the key holds a %s, not a string", ty->str);
            unreadable(s, k, why);
        }
    }
    for (size_t j = 0; j < n_nil; j++)
        freeReplyObject(t[j]);
    free(t);
    return 0;
}

/* One MGET for every user of the batch not in memory, and an EXISTS of the
 * same keys (one round trip). 0, or -1 when Redis failed (nothing applied;
 * retry). */
static int load_once(fd_shard *s)
{
    size_t n_need = 0;
    for (size_t i = 0; i < s->n_batch; i++) {
        const char *id = s->batch[i].user_id;
        bool created;
        fd_user *u = fd_user_table_upsert(s->users, id, strlen(id), &created);
        s->batch_user[i] = u; /* users never move: process_batch applies through it */
        if (!u) {             /* out of memory: unmark what was queued, retry later */
            for (size_t k = 0; k < n_need; k++)
                s->batch_user[s->need[k]]->queued = false;
            return -1;
        }
        if (!u->loaded && !u->queued) {
            u->queued = true;
            s->need[n_need++] = i;
        }
    }
    if (!n_need)
        return 0;
    int rc = 0;
    char err[256];
    redisReply *rr[2] = {NULL, NULL}, *r = NULL;
    fd_resp_reset(&s->mget);
    for (int c = 0; c < 2; c++) {
        fd_resp_cmd(&s->mget, 1 + (int)n_need);
        fd_resp_str(&s->mget, c == 0 ? "MGET" : "EXISTS");
        for (size_t k = 0; k < n_need; k++)
            fd_resp_str(&s->mget, shard_user_key(s, s->batch[s->need[k]].user_id));
    }
    if (s->mget.oom || fd_redis_ensure(s->redis, err, sizeof err) != 0 ||
        fd_redis_append_raw(s->redis, s->mget.p, s->mget.len, 2) != 0 ||
        fd_redis_read_replies(s->redis, rr, 2, err, sizeof err) != 0)
        rc = -1;
    if (rc != 0 && fd_redis_pending(s->redis))
        fd_redis_disconnect(s->redis);
    r = rr[0];
    if (rc == 0 && (r->type != REDIS_REPLY_ARRAY || r->elements != n_need ||
                    rr[1]->type != REDIS_REPLY_INTEGER)) {
        /* E.g. LOADING while Redis restarts: logged once, until a load works
         * (process_batch retries every 50 ms). */
        const redisReply *bad = r->type != REDIS_REPLY_ARRAY ? r : rr[1];
        if (!s->load_err_logged)
            fd_err("shard", "shard=%d: unexpected reply (type %d) to the load of %zu users%s%s",
                   s->id, bad->type, n_need, bad->type == REDIS_REPLY_ERROR ? ": " : "",
                   bad->type == REDIS_REPLY_ERROR ? bad->str : "");
        s->load_err_logged = true;
        rc = -1;
    }
    if (rc == 0 && check_foreign(s, r, n_need, rr[1]->integer) != 0)
        rc = -1;
    if (rc == 0)
        s->load_err_logged = false;
    for (size_t k = 0; k < n_need; k++) {
        fd_user *u = s->batch_user[s->need[k]];
        u->queued = false;
        if (rc != 0)
            continue;
        const redisReply *e = r->element[k];
        const fd_feat_params *fp = &s->env->core->feat;
        memset(&u->f, 0, sizeof u->f);
        if (e->type == REDIS_REPLY_STRING &&
            fd_feat_record_parse(fp, &u->f, e->str, e->len, NULL, err, sizeof err) != 0) {
            memset(&u->f, 0, sizeof u->f);
            unreadable(s, k, err);
        } else if (e->type == REDIS_REPLY_STRING) {
            sch_parse(s, u, e->str, e->len);
        }
        u->loaded = true;
    }
    for (int c = 0; c < 2; c++)
        if (rr[c])
            freeReplyObject(rr[c]);
    return rc;
}

/* Load (waiting out a Redis outage: the queue fills and the consumer
 * pauses), then apply the batch. */
static void process_batch(fd_shard *s)
{
    if (!s->n_batch)
        return;
    bool warned = false;
    while (load_once(s) != 0) {
        if (atomic_load(s->env->abort)) {
            s->n_batch = 0; /* shutting down without Redis: nothing more is written */
            if (warned)
                atomic_fetch_sub(s->env->stalled, 1);
            return;
        }
        if (!warned) {
            fd_warn("shard", "shard=%d waiting for Redis to load users", s->id);
            atomic_fetch_add(s->env->stalled, 1);
        }
        warned = true;
        fd_sleep_ms(50);
    }
    if (warned) {
        fd_info("shard", "shard=%d loading users again", s->id);
        atomic_fetch_sub(s->env->stalled, 1);
    }
    sch_adopt(s);
    smf_adopt(s);
    for (size_t i = 0; i < s->n_batch; i++) {
        const fd_event *ev = &s->batch[i];
        fd_user *u = s->batch_user[i];
        if (i + FD_USER_PREFETCH_AHEAD < s->n_batch) /* as funnelctl bench --no-io does */
            fd_user_prefetch(s->batch_user[i + FD_USER_PREFETCH_AHEAD]);
        int32_t p = s->batch_part[i];
        shard_mark_dirty(s, u); /* before sch_before and fd_core_apply, which may set
                                   dirty too: listed here, once */
        uint64_t sat = fd_funnel_saturated(s->funnel);
        sch_before(s, u, p, ev->ts_ms, s->batch_ref[i]);
        int rc = fd_core_apply(s->env->core, u, s->funnel, p, ev, s->batch_ref[i]);
        sch_after(s, u, p, ev->ts_ms);
        smf_event(s, u, ev);
        s->parts[p].stats[FD_ST_SATURATED] += (int64_t)(fd_funnel_saturated(s->funnel) - sat);
        if (rc < 0)
            fd_err("shard", "shard=%d out of memory counting windows", s->id);
        else if (rc == 1)
            s->parts[p].stats[FD_ST_LATE]++;
        s->parts[p].stats[FD_ST_EVENTS]++;
        if (ev->type < 3)
            s->parts[p].stats[FD_ST_EVENTS_TYPE0 + ev->type]++;
        s->parts[p].touched = true;
    }
    s->n_batch = 0;
    atomic_store(&s->n_users, fd_user_table_count(s->users));
}

/* ---- messages ------------------------------------------------------------ */

/* Decode, validate and batch one message (the caller disposes of it).
 * part_max_ts: the partition's max event time before it. */
static void handle_msg(fd_shard *s, rd_kafka_message_t *m, int64_t part_max_ts)
{
    pstate *ps = part_of(s, m->partition);
    if (!ps) {
        fd_err("shard", "partition %d out of range", (int)m->partition);
        return;
    }
    char msg[512];
    fd_event *ev = &s->batch[s->n_batch];
    fd_reject why = fd_codec_decode(s->codec, m->payload, m->len, ev, msg, sizeof msg);
    if (why == FD_OK) {
        rd_kafka_timestamp_type_t tst;
        int64_t ref = rd_kafka_message_timestamp(m, &tst);
        if (part_max_ts > ref)
            ref = part_max_ts;
        /* fd_codec_decode ran every other check of fd_event_validate */
        why = fd_event_validate_future(ev, ref, s->env->cfg->input_max_future_skew_ms, msg,
                                       sizeof msg);
    }
    if (why == FD_OK) {
        size_t n = strlen(ev->user_id);
        if (!m->key || m->key_len != n || memcmp(m->key, ev->user_id, n) != 0) {
            why = FD_REJ_KEY_MISMATCH;
            snprintf(msg, sizeof msg,
                     "key: the Kafka key must be the user_id \"%.64s\" (got %zu bytes%s)",
                     ev->user_id, m->key ? m->key_len : 0, m->key ? "" : ", no key");
        }
    }
    if (why != FD_OK) {
        fd_debug("shard", "dead letter partition=%d offset=%lld reason=%s: %s", (int)m->partition,
                 (long long)m->offset, fd_reject_name(why), msg);
        /* Given up at once only on an error retrying cannot mend (it was
         * logged): counted with this partition's epoch, never silent. */
        if (fd_kafka_produce_dlq(s->env->producer, s->env->cfg->kafka_topic_dlq, m, why, msg) !=
            0) {
            ps->stats[FD_ST_DLQ_FAILED]++;
            ps->stats[FD_ST_DLQ_FAILED_REASON0 + why]++;
        }
        ps->stats[FD_ST_DLQ]++;
        ps->stats[FD_ST_DLQ_REASON0 + why]++;
        ps->touched = true;
    } else {
        s->batch_ref[s->n_batch] = part_max_ts;
        s->batch_part[s->n_batch++] = m->partition;
        if (s->n_batch == POP_MAX)
            process_batch(s);
    }
}

/* ---- control ----------------------------------------------------------- */

fd_user *shard_load_user(fd_shard *s, const char *id, size_t len, int32_t p)
{
    char err[256];
    bool created;
    fd_user *u = fd_user_table_upsert(s->users, id, len, &created);
    if (!u || u->loaded)
        return u;
    redisReply *g = NULL;
    if (fd_redis_ensure(s->redis, err, sizeof err) != 0 ||
        fd_redis_appendf(s->redis, "GET %s", shard_user_key(s, fd_user_id(u))) != 0 ||
        fd_redis_read_replies(s->redis, &g, 1, err, sizeof err) != 0) {
        if (fd_redis_pending(s->redis))
            fd_redis_disconnect(s->redis);
        return NULL; /* stays not loaded: the next sight loads it */
    }
    memset(&u->f, 0, sizeof u->f);
    memset(&u->churn, 0, sizeof u->churn);
    memset(&u->mf, 0, sizeof u->mf);
    if (g->type == REDIS_REPLY_STRING && fd_feat_record_parse(&s->env->core->feat, &u->f, g->str,
                                                              g->len, NULL, err, sizeof err) == 0)
        sch_parse(s, u, g->str, g->len);
    else
        memset(&u->f, 0, sizeof u->f);
    freeReplyObject(g);
    u->loaded = true;
    u->partition = p;
    atomic_store(&s->n_users, fd_user_table_count(s->users));
    return u;
}

/* A partition starts: its users with an open episode (PREFIX
 * churn:pending:P) that this shard owns are loaded and their timers armed,
 * so an episode whose user never returns still ends at L + H. Waits out a
 * Redis outage like a load. */
static int partinit_once(fd_shard *s, int32_t p)
{
    char key[600], err[256];
    redisReply *r = NULL;
    if (fd_redis_ensure(s->redis, err, sizeof err) != 0 ||
        fd_redis_appendf(s->redis, "SMEMBERS %s", sch_pending_key(s, p, key, sizeof key)) != 0 ||
        fd_redis_read_replies(s->redis, &r, 1, err, sizeof err) != 0) {
        if (fd_redis_pending(s->redis))
            fd_redis_disconnect(s->redis);
        return -1;
    }
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = -1;
        goto out;
    }
    size_t armed = 0;
    for (size_t i = 0; i < r->elements && rc == 0; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || fd_shard_of(e->str, e->len, s->env->n_shards) != s->id)
            continue;
        fd_user *u = shard_load_user(s, e->str, e->len, p);
        if (!u) {
            rc = -1;
            break;
        }
        int64_t due = fd_churn_next_due(&s->cp, u);
        if (due >= 0 && u->churn.heap_pos == 0) {
            sch_arm(s, u, p, due);
            armed++;
        }
    }
    if (armed)
        fd_info("churn", "shard=%d partition=%d: %zu users with an open episode, timers armed",
                s->id, (int)p, armed);
out:
    freeReplyObject(r);
    return rc;
}

static void partinit_churn(fd_shard *s, int32_t p)
{
    bool warned = false;
    while (partinit_once(s, p) != 0) {
        if (atomic_load(s->env->abort))
            return;
        if (!warned)
            fd_warn("shard", "shard=%d waiting for Redis to load partition %d's open episodes",
                    s->id, (int)p);
        warned = true;
        fd_sleep_ms(50);
    }
    atomic_store(&s->n_users, fd_user_table_count(s->users));
}

typedef struct drop_arg {
    int32_t partition;
} drop_arg;

static bool keep_other_partitions(const fd_user *u, void *arg)
{
    return u->partition != ((const drop_arg *)arg)->partition;
}

static void drop_partition(fd_shard *s, int32_t p)
{
    fd_funnel_clear(s->funnel, p); /* first: its reaches borrow the users' ids */
    sch_drop(s, p);                /* and its timers point at them */
    drop_arg a = {p};
    s->dl_lost = true; /* the dirty list may name removed users: the next snapshot scans */
    /* in place, cannot fail: the other partitions' users, dirty or not,
     * and their timers stay as they are */
    fd_user_table_filter(s->users, keep_other_partitions, &a);
    pstate *ps = part_of(s, p);
    if (ps)
        memset(ps, 0, sizeof *ps);
    atomic_store(&s->n_users, fd_user_table_count(s->users));
}

static void handle_control(fd_shard *s, const fd_item *it)
{
    process_batch(s);
    switch (it->kind) {
    case FD_ITEM_PARTINIT:
        if (part_of(s, it->partition) && s->cm)
            partinit_churn(s, it->partition);
        break;
    case FD_ITEM_MARKER:
        shard_make_snapshot(s, (uint64_t)it->value);
        break;
    case FD_ITEM_DROP:
        drop_partition(s, it->partition);
        break;
    case FD_ITEM_WATERMARK:
        if (it->partition >= 0 && it->partition < s->n_parts)
            sch_watermark(s, it->partition, it->value);
        break;
    case FD_ITEM_RELOAD:
        sch_reload(s);
        break;
    default:
        break;
    }
}

/* Hand consumed messages back to the consumer thread, which destroys them
 * in bulk (fd_shard_reap): freeing them here, one by one, made every shard
 * contend with librdkafka's fetcher for its allocator arena and its
 * reference counts (futex wake-ups in perf). Destroyed here when the list
 * cannot grow. */
static void hand_back(fd_shard *s, rd_kafka_message_t **msgs, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->n_done + n > s->cap_done) {
        size_t cap = s->cap_done ? s->cap_done : 4096;
        while (cap < s->n_done + n)
            cap *= 2;
        rd_kafka_message_t **nd = realloc(s->done, cap * sizeof *nd);
        if (nd) {
            s->done = nd;
            s->cap_done = cap;
        }
    }
    bool fits = s->n_done + n <= s->cap_done;
    if (fits) {
        memcpy(s->done + s->n_done, msgs, n * sizeof *msgs);
        s->n_done += n;
    }
    pthread_mutex_unlock(&s->mu);
    if (!fits)
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
}

#define PREFETCH_MSG 8 /* messages ahead */

static void *shard_main(void *arg)
{
    fd_shard *s = arg;
    fd_item items[POP_MAX];
    rd_kafka_message_t *consumed[POP_MAX];
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->count == 0 && !s->stop)
            pthread_cond_wait(&s->nonempty, &s->mu);
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        size_t n = s->count < POP_MAX ? s->count : POP_MAX, msgs = 0;
        if (s->hang_file) { /* test-only: a hung shard, for the watchdog test */
            bool stop = false;
            pthread_mutex_unlock(&s->mu);
            while (!stop && access(s->hang_file, F_OK) == 0) {
                fd_sleep_ms(50);
                pthread_mutex_lock(&s->mu);
                stop = s->stop;
                pthread_mutex_unlock(&s->mu);
            }
            pthread_mutex_lock(&s->mu);
            n = s->count < POP_MAX ? s->count : POP_MAX;
        }
        for (size_t i = 0; i < n; i++) {
            items[i] = s->ring[(s->head + i) % s->cap];
            msgs += items[i].kind == FD_ITEM_MSG;
        }
        s->head = (s->head + n) % s->cap;
        s->count -= n;
        atomic_store(&s->queued, s->count);
        s->msgs -= msgs;
        pthread_mutex_unlock(&s->mu);
        size_t n_consumed = 0;
        for (size_t i = 0; i < n; i++) {
            /* The messages were written by librdkafka's fetcher on another
             * core: fetch the next ones' headers and payloads early (the
             * first read of each was ~7 % of a shard's time). */
            if (i + PREFETCH_MSG < n && items[i + PREFETCH_MSG].kind == FD_ITEM_MSG)
                __builtin_prefetch(items[i + PREFETCH_MSG].msg);
            if (i + PREFETCH_MSG / 2 < n && items[i + PREFETCH_MSG / 2].kind == FD_ITEM_MSG)
                __builtin_prefetch(items[i + PREFETCH_MSG / 2].msg->payload);
            if (items[i].kind == FD_ITEM_MSG) {
                handle_msg(s, items[i].msg, items[i].value);
                consumed[n_consumed++] = items[i].msg;
            } else {
                handle_control(s, &items[i]);
            }
        }
        process_batch(s);
        hand_back(s, consumed, n_consumed);
        atomic_fetch_add(&s->batches, 1);
    }
    return NULL;
}

/* ---- consumer side --------------------------------------------------- */

fd_codec *fd_input_codec_new(const fd_config *cfg, char *errstr, size_t errstr_size)
{
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
                        .max_message_bytes = (size_t)cfg->input_max_message_bytes,
                        .max_price = cfg->input_max_price};
    char err[512];
    fd_codec *c = fd_codec_new(&co, err, sizeof err);
    if (!c)
        snprintf(errstr, errstr_size, "input: %s", err);
    return c;
}

fd_shard *fd_shard_new(const fd_shard_env *env, int id, char *errstr, size_t errstr_size)
{
    const fd_config *cfg = env->cfg;
    fd_shard *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    /* test-only fault hook: the watchdog test hangs shard 0 with it */
    if (id == 0)
        s->hang_file = getenv("FUNNELD_TEST_HANG_FILE");
    s->env = env;
    s->prefix_len = strlen(env->cfg->redis_key_prefix);
    s->id = id;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->nonempty, NULL);
    s->msg_cap = (size_t)cfg->engine_queue_messages;
    s->cap = s->msg_cap + CONTROL_ROOM;
    s->ring = malloc(s->cap * sizeof *s->ring);
    s->batch = malloc(POP_MAX * sizeof *s->batch);
    s->batch_part = malloc(POP_MAX * sizeof *s->batch_part);
    s->batch_ref = malloc(POP_MAX * sizeof *s->batch_ref);
    s->batch_user = malloc(POP_MAX * sizeof *s->batch_user);
    s->need = malloc(POP_MAX * sizeof *s->need);
    s->users = fd_user_table_new(1024);
    s->funnel = fd_funnel_table_new();
    if (!s->ring || !s->batch || !s->batch_part || !s->batch_ref || !s->batch_user || !s->need ||
        !s->users || !s->funnel) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    char err[512];
    if (sch_new(s, errstr, errstr_size) != 0 || smf_new(s, errstr, errstr_size) != 0)
        goto fail;
    if (!(s->codec = fd_input_codec_new(cfg, errstr, errstr_size)))
        goto fail;
    fd_redis_opts ro = fd_redis_opts_from_config(cfg);
    if (!(s->redis = fd_redis_new(&ro, err, sizeof err))) {
        snprintf(errstr, errstr_size, "redis: %s", err);
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, shard_main, s) != 0) {
        snprintf(errstr, errstr_size, "cannot start shard thread %d", id);
        goto fail;
    }
    s->started = true;
    return s;
fail:
    fd_shard_destroy(s);
    return NULL;
}

void fd_shard_destroy(fd_shard *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->nonempty);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < s->count; i++) {
        fd_item *it = &s->ring[(s->head + i) % s->cap];
        if (it->kind == FD_ITEM_MSG && it->msg)
            rd_kafka_message_destroy(it->msg);
    }
    for (size_t i = 0; i < s->n_done; i++)
        rd_kafka_message_destroy(s->done[i]);
    free(s->done);
    fd_snapshot_free(s->snap);
    fd_codec_destroy(s->codec);
    fd_redis_destroy(s->redis);
    sch_free(s); /* before the users: the timers point at them */
    smf_free(s);
    fd_user_table_free(s->users);
    free(s->dl);
    fd_funnel_table_free(s->funnel);
    free(s->batch_ref);
    free(s->batch_user);
    free(s->parts);
    free(s->batch);
    free(s->batch_part);
    free(s->need);
    fd_resp_free(&s->mget);
    free(s->sreach);
    free(s->ring);
    pthread_cond_destroy(&s->nonempty);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

size_t fd_shard_push(fd_shard *s, const fd_item *items, size_t n)
{
    pthread_mutex_lock(&s->mu);
    bool was_empty = s->count == 0;
    size_t i = 0;
    for (; i < n; i++) {
        bool is_msg = items[i].kind == FD_ITEM_MSG;
        if (s->count == s->cap || (is_msg && s->msgs == s->msg_cap))
            break;
        s->ring[(s->head + s->count) % s->cap] = items[i];
        s->count++;
        atomic_store(&s->queued, s->count);
        s->msgs += is_msg;
    }
    if (i && was_empty)
        pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
    return i;
}

void fd_shard_reap(fd_shard *s, rd_kafka_message_t ***buf, size_t *cap)
{
    rd_kafka_message_t **mine = *buf;
    size_t mine_cap = *cap, n;
    pthread_mutex_lock(&s->mu);
    /* swap the lists: the shard keeps appending to our emptied one */
    *buf = s->done;
    *cap = s->cap_done;
    n = s->n_done;
    s->done = mine;
    s->cap_done = mine_cap;
    s->n_done = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy((*buf)[i]);
}

size_t fd_shard_room(fd_shard *s)
{
    pthread_mutex_lock(&s->mu);
    size_t r = s->msg_cap - s->msgs;
    if (s->cap - s->count < r)
        r = s->cap - s->count;
    pthread_mutex_unlock(&s->mu);
    return r;
}

fd_snapshot *fd_shard_take(fd_shard *s, uint64_t epoch)
{
    pthread_mutex_lock(&s->mu);
    fd_snapshot *sn = s->snap;
    if (sn && sn->epoch == epoch)
        s->snap = NULL;
    else
        sn = NULL;
    pthread_mutex_unlock(&s->mu);
    return sn;
}

void fd_shard_progress(fd_shard *s, uint64_t *batches, size_t *queued)
{
    *batches = atomic_load(&s->batches);
    *queued = atomic_load(&s->queued);
}

size_t fd_shard_dirty(fd_shard *s, size_t *at_snapshot)
{
    *at_snapshot = atomic_load(&s->dirty_base);
    return atomic_load(&s->n_dirty);
}

size_t fd_shard_users(fd_shard *s)
{
    return atomic_load(&s->n_users);
}
