/*
 * churn_state.c - the engine's side of the churn model (model_pub.h): load
 * the merged model at start, merge the shards' replicas when an epoch's
 * snapshots are all in, publish the result to the shards, and write it in
 * the epoch's MULTI/EXEC (writer.c) as the hash PREFIX model:churn
 * (docs/REDIS_KEYS.md).
 *
 * Why it is built this way:
 *
 * - The merge runs once per epoch, in epoch order, on the consumer thread,
 *   when the epoch is complete (not per write attempt): a write that is
 *   retried writes the same model. The model an epoch carries has learned
 *   exactly the examples its shards resolved before their markers, i.e.
 *   those of the events before the epoch's offsets, so the model and the
 *   offsets in Redis always agree: after a crash the replay learns each
 *   lost example once more and no other.
 *
 * - Examples learned from a partition that is revoked before its epoch is
 *   written are still merged (they cannot be told apart in a replica); the
 *   instance that takes the partition over learns them again. Rebalances
 *   are rare; docs/CHURN.md names this limit.
 *
 * - Several instances share one stored model. Each write's round trip 1
 *   WATCHes PREFIX model:churn and reads it. When it still holds what this
 *   instance last read or wrote (cs.base, compared as stored text), the
 *   epoch's model is written as it is (bit for bit what a lone instance
 *   writes). Otherwise another instance wrote since: what this one learned
 *   since its base (epoch model - base) is carried onto the stored model,
 *   FTRL sums, standardiser sums, example counts and quality sums alike
 *   (fd_lr_rebase, fd_quality_add_delta), and once the write is in, the
 *   engine's model and its unwritten epochs take the others' learning over
 *   too. A third instance writing in between makes EXEC fail (WATCH); the
 *   write is retried on a fresh read. So each instance's examples reach
 *   the stored model exactly once, in the transaction with the offsets
 *   that produced them.
 */
#include "pipeline/churn_state.h"

#include <inttypes.h>

#include "pipeline/churn_setup.h"

static const char *model_key(const fd_engine *e, char *buf, size_t n)
{
    snprintf(buf, n, "%smodel:churn", e->cfg->redis_key_prefix);
    return buf;
}

int eng_churn_init(fd_engine *e, char *errstr, size_t errstr_size)
{
    e->churn_on = fd_churn_enabled(e->cfg);
    if (!e->churn_on)
        return 0;
    if (fd_churn_params_from_config(&e->churn, e->cfg, &e->core.feat, errstr, errstr_size) != 0)
        return -1;
    fd_lr_init(&e->G, &e->churn.lr);
    fd_quality_init(&e->Gq);
    /* the stored model: the one the stored offsets go with */
    char err[256], key[600];
    volatile int stop = 0;
    if (fd_redis_connect_wait(e->redis, 30000, &stop, err, sizeof err) != 0) {
        snprintf(errstr, errstr_size, "redis: cannot load the churn model: %s", err);
        return -1;
    }
    redisReply *r = fd_redis_command(e->redis, err, sizeof err, "HMGET %s lr quality",
                                     model_key(e, key, sizeof key));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        snprintf(errstr, errstr_size, "redis: cannot load the churn model %s: %s", key,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : err);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int rc = 0;
    const redisReply *lr = r->element[0], *q = r->element[1];
    if (lr->type == REDIS_REPLY_STRING) {
        if (fd_lr_parse(&e->G, &e->churn.lr, lr->str, lr->len, err, sizeof err) != 0) {
            snprintf(errstr, errstr_size,
                     "redis: %s field lr: %s (delete the key to start the model over)", key, err);
            rc = -1;
        } else if (q->type == REDIS_REPLY_STRING &&
                   fd_quality_parse(&e->Gq, q->str, q->len, err, sizeof err) != 0) {
            fd_warn("churn", "%s field quality: %s: the quality figures start over", key, err);
            fd_quality_init(&e->Gq);
        }
        if (rc == 0)
            fd_info("churn", "churn model loaded: %" PRIu64 " examples learned, version %" PRIu64,
                    e->G.examples, e->G.version);
    } else {
        fd_info("churn", "no stored churn model (%s): learning from scratch", key);
    }
    churn_sync *cs = &e->cs;
    cs->base = e->G;
    cs->base_q = e->Gq;
    if (rc == 0 && lr->type == REDIS_REPLY_STRING) {
        cs->base_lr = strndup(lr->str, lr->len);
        if (q->type == REDIS_REPLY_STRING)
            cs->base_qt = strndup(q->str, q->len);
        if (!cs->base_lr || (q->type == REDIS_REPLY_STRING && !cs->base_qt)) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = -1;
        }
    }
    cs->push_lr = malloc(FD_LR_TEXT_MAX);
    cs->push_qt = malloc(FD_Q_TEXT_MAX);
    if (!cs->push_lr || !cs->push_qt) {
        snprintf(errstr, errstr_size, "out of memory");
        rc = -1;
    }
    freeReplyObject(r);
    e->pub.lr = e->G;
    e->pub.epoch = 0;
    return rc;
}

void eng_churn_free(fd_engine *e)
{
    churn_sync *cs = &e->cs;
    free(cs->base_lr);
    free(cs->base_qt);
    free(cs->st_lr);
    free(cs->st_qt);
    free(cs->push_lr);
    free(cs->push_qt);
    *cs = (churn_sync){0};
    pthread_mutex_destroy(&e->pub.mu);
}

int eng_churn_merge(fd_engine *e, epoch *ep)
{
    if (!e->churn_on)
        return 0;
    const fd_lr *reps[256];
    fd_lr *tmp = malloc((size_t)e->n_shards * sizeof *tmp);
    ep->model = malloc(sizeof *ep->model);
    ep->quality = malloc(sizeof *ep->quality);
    if (!tmp || !ep->model || !ep->quality) {
        free(tmp);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < e->n_shards && n < 256; i++) {
        fd_snapshot *sn = ep->snaps[i];
        if (!sn->lr_cur || !sn->lr_prev)
            continue;
        /* G + (R_i,e - R_i,e-1) */
        tmp[n] = *sn->lr_cur;
        fd_lr_rebase(&tmp[n], sn->lr_prev, &e->G, &e->churn.lr);
        reps[n] = &tmp[n];
        n++;
        fd_quality zero;
        fd_quality_init(&zero);
        fd_quality_add_delta(&e->Gq, sn->q_delta, &zero);
    }
    fd_lr_merge(&e->G, &e->G, reps, n, &e->churn.lr);
    free(tmp);
    *ep->model = e->G;
    *ep->quality = e->Gq;
    pthread_mutex_lock(&e->pub.mu);
    e->pub.lr = e->G;
    e->pub.epoch = ep->id;
    pthread_mutex_unlock(&e->pub.mu);
    return 0;
}

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

size_t eng_churn_watch(fd_engine *e)
{
    if (!e->churn_on)
        return 0;
    char key[600];
    model_key(e, key, sizeof key);
    fd_redis_appendf(e->redis, "WATCH %s", key);
    fd_redis_appendf(e->redis, "HMGET %s lr quality", key);
    return 2;
}

/* A bulk string reply as a new C string in *out (NULL for nil). 0 / -1. */
static int take_text(const redisReply *r, char **out)
{
    free(*out);
    *out = NULL;
    if (r->type != REDIS_REPLY_STRING)
        return 0;
    *out = strndup(r->str, r->len);
    return *out ? 0 : -1;
}

int eng_churn_watched(fd_engine *e, const redisReply *watch, const redisReply *hmget, char *cause,
                      size_t cause_size)
{
    char key[600];
    model_key(e, key, sizeof key);
    const redisReply *bad = watch->type == REDIS_REPLY_ERROR ? watch : hmget;
    if (bad->type == REDIS_REPLY_ERROR) {
        snprintf(cause, cause_size, "%s (%s %s)", bad->str, bad == watch ? "WATCH" : "HMGET", key);
        return -1;
    }
    if (hmget->type != REDIS_REPLY_ARRAY || hmget->elements != 2) {
        snprintf(cause, cause_size, "HMGET %s: unexpected reply", key);
        return -1;
    }
    churn_sync *cs = &e->cs;
    if (take_text(hmget->element[0], &cs->st_lr) != 0 ||
        take_text(hmget->element[1], &cs->st_qt) != 0) {
        snprintf(cause, cause_size, "out of memory reading %s", key);
        return -1;
    }
    cs->foreign = !(same_text(cs->st_lr, cs->base_lr) && same_text(cs->st_qt, cs->base_qt));
    if (!cs->foreign)
        return 0;
    if (!cs->st_lr) {
        /* the key is gone (deleted by hand): this instance's model is the
         * model from now on */
        fd_warn("churn",
                "%s was deleted since this instance last wrote it: writing this "
                "instance's model",
                key);
        cs->foreign = false;
        return 0;
    }
    char err[256];
    fd_lr_init(&cs->st, &e->churn.lr);
    if (fd_lr_parse(&cs->st, &e->churn.lr, cs->st_lr, strlen(cs->st_lr), err, sizeof err) != 0) {
        snprintf(cause, cause_size,
                 "%s field lr, written by another instance, is unreadable: %s (stop every "
                 "instance and delete the key to start the model over)",
                 key, err);
        return -1;
    }
    fd_quality_init(&cs->st_q);
    if (cs->st_qt &&
        fd_quality_parse(&cs->st_q, cs->st_qt, strlen(cs->st_qt), err, sizeof err) != 0) {
        fd_warn("churn", "%s field quality: %s: the quality figures start over", key, err);
        fd_quality_init(&cs->st_q);
    }
    return 0;
}

size_t eng_churn_append(fd_engine *e, const epoch *ep)
{
    churn_sync *cs = &e->cs;
    cs->pushing = false;
    if (!e->churn_on || !ep->model)
        return 0;
    char key[600];
    model_key(e, key, sizeof key);
    cs->from = *ep->model;
    cs->from_q = *ep->quality;
    cs->push = *ep->model;
    cs->push_q = *ep->quality;
    if (cs->foreign) {
        /* another instance wrote since: stored + (this epoch's model - base) */
        bool learned = cs->push.examples > cs->base.examples;
        uint64_t v = cs->st.version > cs->push.version ? cs->st.version : cs->push.version;
        fd_lr_rebase(&cs->push, &cs->base, &cs->st, &e->churn.lr);
        if (learned)
            cs->push.version = v + 1;
        cs->push_q = cs->st_q;
        fd_quality_add_delta(&cs->push_q, &cs->from_q, &cs->base_q);
    }
    cs->push_foreign = cs->foreign;
    const fd_lr *m = &cs->push;
    const fd_quality *q = &cs->push_q;
    fd_lr_format(m, cs->push_lr);
    fd_quality_format(q, cs->push_qt);
    double hs = (double)e->churn.horizon_ms / 1000.0;
    fd_redis_appendf(e->redis,
                     "HSET %s lr %s quality %s examples %" PRIu64 " version %" PRIu64
                     " auc %.6f logloss %.6f alert_precision %.6f alert_recall %.6f"
                     " median_lead_time_s %.0f alerts %.0f churned %.0f reactivated %.0f"
                     " horizon_s %.0f",
                     key, cs->push_lr, cs->push_qt, m->examples, m->version, fd_quality_auc(q),
                     fd_quality_logloss(q), fd_quality_precision(q), fd_quality_recall(q),
                     fd_quality_median_lead_s(q, hs), q->alerts, q->churned, q->reactivated, hs);
    cs->pushing = true;
    return 1;
}

/* m (in this instance's lineage, at or after `from`) takes over what the
 * write added to `from`: m = push + (m - from). */
static void adopt_lr(fd_engine *e, fd_lr *m)
{
    fd_lr_rebase(m, &e->cs.from, &e->cs.push, &e->churn.lr);
}

static void adopt_q(fd_engine *e, fd_quality *q)
{
    fd_quality d = e->cs.push_q;
    fd_quality_add_delta(&d, q, &e->cs.from_q);
    *q = d;
}

void eng_churn_written(fd_engine *e)
{
    churn_sync *cs = &e->cs;
    if (!cs->pushing)
        return;
    cs->pushing = false;
    if (cs->push_foreign) {
        adopt_lr(e, &e->G);
        adopt_q(e, &e->Gq);
        for (int k = 0; k < e->n_epochs; k++)
            if (e->epochs[k]->model && e->epochs[k]->quality &&
                e->epochs[k]->model->examples >= cs->from.examples) {
                adopt_lr(e, e->epochs[k]->model);
                adopt_q(e, e->epochs[k]->quality);
            }
        pthread_mutex_lock(&e->pub.mu);
        e->pub.lr = e->G; /* a new version: shards take it over at their next adoption */
        pthread_mutex_unlock(&e->pub.mu);
        if (cs->merges++ == 0)
            fd_info("churn",
                    "merged with other instances' learning (first time; later merges at debug "
                    "level): %" PRIu64 " examples, version %" PRIu64,
                    cs->push.examples, cs->push.version);
        else
            fd_debug("churn",
                     "merged with other instances' learning: %" PRIu64
                     " examples, version %" PRIu64,
                     cs->push.examples, cs->push.version);
    }
    cs->base = cs->push;
    cs->base_q = cs->push_q;
    /* the stored text, as Redis will return it */
    char *lr = strdup(cs->push_lr), *qt = strdup(cs->push_qt);
    if (lr && qt) {
        free(cs->base_lr);
        free(cs->base_qt);
        cs->base_lr = lr;
        cs->base_qt = qt;
    } else { /* out of memory: the next write merges (the texts differ), which is right too */
        free(lr);
        free(qt);
    }
}
