/*
 * closer.c - the closer thread (see engine_int.h): closes the funnel
 * windows the topic's watermark has passed, sends their metrics, deletes
 * expired ones, with its own Redis connection.
 */
#include "pipeline/engine_int.h"

/* ---- funnel windows ------------------------------------------------- */

/* PREFIX funnel:SPAN:START[:cat:NAME] into buf. */
const char *eng_window_key(fd_engine *e, char *buf, size_t n, const char *span, int64_t start,
                           int32_t cat)
{
    return fd_funnel_key(buf, n, e->cfg->redis_key_prefix, span, start,
                         cat == FD_CAT_TOTAL ? NULL : ":cat:",
                         cat == FD_CAT_TOTAL ? NULL : fd_funnel_cat_name(&e->core.funnel, cat));
}

bool eng_hourly(const fd_engine *e)
{
    return e->core.funnel.window_ms != FD_HOUR_MS;
}

/* A shard's window delta into the writer's table: partition 0 holds the
 * windows, partition 1 the hourly roll-up. */
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
        fd_redis_appendf(e->cl.redis, "HGET %s max_ts", eng_part_key(e, p, pkey));
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
                     eng_window_key(e, key, sizeof key, span, start, FD_CAT_TOTAL));
    for (int s = FD_STAGE_VISIT; s <= FD_STAGE_PURCHASE; s++)
        fd_redis_appendf(e->cl.redis, "PFCOUNT %s",
                         fd_funnel_key(key, sizeof key, e->cfg->redis_key_prefix, span, start,
                                       ":users:", fd_stage_name(s)));
    for (int c = 0; c < ncat; c++)
        fd_redis_appendf(e->cl.redis, "HGETALL %s",
                         eng_window_key(e, key, sizeof key, span, start, c));
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
        if (!((*argv)[(*n)++] = strdup(eng_window_key(e, key, sizeof key, span, start, c))))
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

/* One batch of eng_close_windows. Returns 1 when a full batch was closed (there
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
            eng_window_key(e, key, sizeof key, span, start, FD_CAT_TOTAL);
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

void eng_close_windows(fd_engine *e)
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

/* ---- churn alerts ----------------------------------------------------- */

#define ALERT_BATCH 512

typedef struct apair {
    const redisReply *f, *v;
} apair;

static int cmp_field(const void *a, const void *b)
{
    const redisReply *x = ((const apair *)a)->f, *y = ((const apair *)b)->f;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->str, y->str, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* One batch of the alert outbox (PREFIX churn:outbox, filled by the shards
 * in the epochs' MULTI/EXEC, shard_churn.c) to kafka.topic_alerts, oldest
 * event time first, keyed by user id; the fields are deleted only once
 * every message is delivered. Delivery is at-least-once: a crash between
 * the delivery and the HDEL, or two instances draining at once, sends an
 * alert twice with the same alert_id. 1: more to send, 0: empty, -1: an
 * error (retried at the next tick). */
static int send_alert_batch(fd_engine *e)
{
    char key[512], err[256], cursor[32] = "0";
    snprintf(key, sizeof key, "%schurn:outbox", e->cfg->redis_key_prefix);
    redisReply *pages[16] = {0};
    int n_pages = 0;
    size_t n = 0;
    do { /* HSCAN pages until ALERT_BATCH pairs or the end */
        redisReply *r = NULL;
        if (fd_redis_appendf(e->cl.redis, "HSCAN %s %s COUNT %d", key, cursor, ALERT_BATCH) ||
            fd_redis_read_replies(e->cl.redis, &r, 1, err, sizeof err) != 0)
            goto fail;
        pages[n_pages++] = r;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
            r->element[0]->len >= sizeof cursor) {
            fd_err("engine", "alerts: unexpected HSCAN reply for %s", key);
            goto fail;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        n += r->element[1]->elements / 2;
    } while (strcmp(cursor, "0") != 0 && n < ALERT_BATCH && n_pages < 16);

    int rc = strcmp(cursor, "0") != 0 ? 1 : 0;
    if (n == 0)
        goto out;
    /* field, value pairs, sorted by field ("<ts>:<id>"), duplicates dropped */
    apair *pairs = malloc(n * sizeof *pairs);
    const char **argv = malloc((n + 2) * sizeof *argv);
    size_t *argl = malloc((n + 2) * sizeof *argl);
    if (!pairs || !argv || !argl) {
        free(pairs);
        free(argv);
        free(argl);
        goto fail;
    }
    size_t k = 0;
    for (int i = 0; i < n_pages; i++) {
        redisReply *a = pages[i]->element[1];
        for (size_t j = 0; j + 1 < a->elements; j += 2)
            pairs[k++] = (apair){a->element[j], a->element[j + 1]};
    }
    qsort(pairs, k, sizeof *pairs, cmp_field);
    int64_t failed0 = fd_kafka_delivery_failures(e->producer);
    size_t n_del = 0, sent = 0;
    bool ok = true;
    for (size_t i = 0; i < k && ok; i++) {
        if (i > 0 && cmp_field(&pairs[i - 1], &pairs[i]) == 0)
            continue;
        const redisReply *f = pairs[i].f, *val = pairs[i].v;
        if (f->type != REDIS_REPLY_STRING)
            continue;
        argv[2 + n_del] = f->str;
        argl[2 + n_del] = f->len;
        n_del++;
        const char *nul =
            val && val->type == REDIS_REPLY_STRING ? memchr(val->str, '\0', val->len) : NULL;
        if (!nul) {
            fd_err("engine", "alerts: %s field %.*s is not \"<user id>\\0<message>\"; deleted", key,
                   (int)(f->len > 64 ? 64 : f->len), f->str);
            continue;
        }
        size_t kl = (size_t)(nul - val->str);
        if (fd_kafka_produce(e->producer, e->cfg->kafka_topic_alerts, val->str, kl, nul + 1,
                             val->len - kl - 1) != 0)
            ok = false; /* logged; nothing of this batch is deleted */
        else
            sent++;
    }
    if (ok && sent &&
        (fd_kafka_drain(e->producer, 10000) != 0 ||
         fd_kafka_delivery_failures(e->producer) != failed0)) {
        fd_warn("engine", "alerts: %zu alert(s) to %s not all delivered; sent again later", sent,
                e->cfg->kafka_topic_alerts);
        ok = false;
    }
    if (ok) {
        argv[0] = "HDEL";
        argl[0] = 4;
        argv[1] = key;
        argl[1] = strlen(key);
        redisReply *r = NULL;
        if (fd_redis_appendv(e->cl.redis, (int)(2 + n_del), argv, argl) != 0 ||
            fd_redis_read_replies(e->cl.redis, &r, 1, err, sizeof err) != 0)
            ok = false;
        if (r)
            freeReplyObject(r);
        fd_debug("engine", "alerts: sent %zu churn alert(s) to %s", sent,
                 e->cfg->kafka_topic_alerts);
    }
    free(pairs);
    free(argv);
    free(argl);
    if (!ok)
        rc = -1;
out:
    for (int i = 0; i < n_pages; i++)
        freeReplyObject(pages[i]);
    return rc;
fail:
    for (int i = 0; i < n_pages; i++)
        freeReplyObject(pages[i]);
    return -1;
}

void eng_send_alerts(fd_engine *e)
{
    char err[256];
    if (!e->env.churn || fd_redis_ensure(e->cl.redis, err, sizeof err) != 0)
        return;
    for (int round = 0; round < 64 && send_alert_batch(e) == 1; round++)
        ;
}

/* While a backlog is read, windows close at most this often: ingest first. */
#define CLOSER_BACKLOG_MS 5000

void *eng_closer_main(void *arg)
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
            eng_close_windows(e);
            eng_send_alerts(e);
        }
        pthread_mutex_lock(&e->cl.t.mu);
    }
    pthread_mutex_unlock(&e->cl.t.mu);
    return NULL;
}

/* A write landed: windows may have closed. */
void eng_closer_kick(fd_engine *e)
{
    pthread_mutex_lock(&e->cl.t.mu);
    e->cl.kicks++;
    pthread_cond_signal(&e->cl.t.cv);
    pthread_mutex_unlock(&e->cl.t.mu);
}

/* Stop and join the thread; its state is the caller's afterwards. */
void eng_closer_stop(fd_engine *e)
{
    eng_bg_stop(&e->cl.t);
}
