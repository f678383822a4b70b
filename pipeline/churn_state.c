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
    freeReplyObject(r);
    e->pub.lr = e->G;
    e->pub.epoch = 0;
    return rc;
}

void eng_churn_free(fd_engine *e)
{
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

size_t eng_churn_append(fd_engine *e, const epoch *ep)
{
    if (!e->churn_on || !ep->model)
        return 0;
    static char lr_text[FD_LR_TEXT_MAX], q_text[FD_Q_TEXT_MAX]; /* consumer thread only */
    char key[600];
    fd_lr_format(ep->model, lr_text);
    fd_quality_format(ep->quality, q_text);
    const fd_quality *q = ep->quality;
    double hs = (double)e->churn.horizon_ms / 1000.0;
    fd_redis_appendf(e->redis,
                     "HSET %s lr %s quality %s examples %" PRIu64 " version %" PRIu64
                     " auc %.6f logloss %.6f alert_precision %.6f alert_recall %.6f"
                     " median_lead_time_s %.0f alerts %.0f churned %.0f reactivated %.0f"
                     " horizon_s %.0f",
                     model_key(e, key, sizeof key), lr_text, q_text, ep->model->examples,
                     ep->model->version, fd_quality_auc(q), fd_quality_logloss(q),
                     fd_quality_precision(q), fd_quality_recall(q), fd_quality_median_lead_s(q, hs),
                     q->alerts, q->churned, q->reactivated, hs);
    return 1;
}
