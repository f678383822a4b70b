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
 * - Several instances share one stored model, merged inside Redis. A write
 *   sends the epoch's model and this instance's base (the model as it last
 *   read or wrote it) to MERGE_SCRIPT, an EVAL in the epoch's MULTI/EXEC:
 *   when the key still holds base (compared as text), the epoch's model is
 *   stored as it is, bit for bit what a lone instance writes; otherwise
 *   another instance wrote since, and the script adds (model - base) onto
 *   what is stored, number by number: FTRL z and g2, standardiser sums,
 *   example counts, quality sums (g2, squares and histogram bins kept >= 0;
 *   mean and inv_std derived again as refresh_std does; the quality window
 *   halved as window_rule does). The script returns what it stored: it is
 *   the new base, and when it holds the others' learning the engine's model
 *   and its unwritten epochs take it over (fd_lr_rebase,
 *   fd_quality_add_delta). Each instance's examples reach the stored model
 *   exactly once, in the transaction with the offsets that produced them,
 *   and no instance ever waits for another (an earlier WATCH-based merge let
 *   a slow instance lose race after race).
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
    e->reload.threshold = e->churn.threshold; /* until a SIGHUP changes them */
    e->reload.rearm_margin = e->churn.rearm_margin;
    e->reload.min_events = e->churn.min_events;
    e->reload.cooldown_ms = e->churn.cooldown_ms;
    fd_lr_init(&e->G, &e->churn.lr);
    fd_quality_init(&e->Gq);
    /* the stored model: the one the stored offsets go with */
    char err[256], key[600];
    volatile int stop = 0;
    if (fd_redis_connect_wait(e->redis, 30000, eng_start_stop ? eng_start_stop : &stop, err,
                              sizeof err) != 0) {
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
    free(cs->push_lr);
    free(cs->push_qt);
    *cs = (churn_sync){0};
    pthread_mutex_destroy(&e->pub.mu);
    pthread_mutex_destroy(&e->reload.mu);
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

/* The merge, run by Redis inside the epoch's transaction (see the top).
 * KEYS[1] the model hash; ARGV: base lr, epoch lr, base quality, epoch
 * quality (base "" = none: zeros), FD_Q_WINDOW. Layouts: fd_lr_format
 * ("lr1 n examples version since s_n z[n+1] g2[n+1] sum[n] sq[n] mean[n]
 * inv_std[n]") and fd_quality_format ("q1 pos[512] neg[512] in_window
 * ..."). Returns {lr, quality, flag}: 0 stored as sent, 1 merged, 2 the
 * stored lr or quality was unreadable and was replaced, 3 the key had been
 * deleted (stored as sent). */
static const char MERGE_SCRIPT[] =
    "local function split(s) local t = {} for w in string.gmatch(s, '%S+') do t[#t + 1] = w end "
    "return t end\n"
    "local function nums(t, n) local r = {} for i = 2, n do r[i] = tonumber(t[i] or '0') "
    "if not r[i] then return nil end end return r end\n"
    "local function carry(s, b, o) if s == b then return o end return s + (o - b) end\n"
    "local function fmt(v) return string.format('%.17g', v) end\n"
    "local cur = redis.call('HMGET', KEYS[1], 'lr', 'quality')\n"
    "local flag = 0\n"
    "local lr, q = ARGV[2], ARGV[4]\n"
    "if not cur[1] and ARGV[1] ~= '' then flag = 3 end\n"
    "if cur[1] and cur[1] ~= ARGV[1] then\n"
    "  local o = split(ARGV[2]) local n = tonumber(o[2]) local k = 6 + 2 * (n + 1) + 4 * n\n"
    "  local st = split(cur[1])\n"
    "  local s, b, x = nums(st, k), nums(split(ARGV[1]), k), nums(o, k)\n"
    "  if #st ~= k or st[1] ~= 'lr1' or tonumber(st[2]) ~= n or not s or not b or not x then\n"
    "    flag = 2\n"
    "  else\n"
    "    flag = 1 local r = {}\n"
    "    for i = 3, k do r[i] = carry(s[i], b[i], x[i]) end\n"
    "    if x[3] == b[3] then r[4] = s[4] else r[4] = math.max(s[4], x[4]) + 1 end\n"
    "    r[5] = 0\n"
    "    local z0, sum0 = 7, 7 + 2 * (n + 1)\n"
    "    for i = z0 + n + 1, sum0 - 1 do if r[i] < 0 then r[i] = 0 end end\n"
    "    for i = 0, n - 1 do\n"
    "      local si, qi, mi, vi = sum0 + i, sum0 + n + i, sum0 + 2 * n + i, sum0 + 3 * n + i\n"
    "      if r[qi] < 0 then r[qi] = 0 end\n"
    "      if r[6] > 0 then\n"
    "        local mean = r[si] / r[6] local var = r[qi] / r[6] - mean * mean\n"
    "        if not (var > 0) then var = 0 end\n"
    "        r[mi] = mean r[vi] = 1.0 / math.sqrt(var + 1e-6)\n"
    "      else r[mi] = 0 r[vi] = 1 end\n"
    "    end\n"
    "    local t = {'lr1', o[2]} for i = 3, k do t[i] = fmt(r[i]) end\n"
    "    lr = table.concat(t, ' ')\n"
    "  end\n"
    "end\n"
    "if cur[2] and cur[2] ~= ARGV[3] then\n"
    "  local o = split(ARGV[4]) local k = #o local st = split(cur[2])\n"
    "  local s, b, x = nums(st, k), nums(split(ARGV[3]), k), nums(o, k)\n"
    "  if #st ~= k or st[1] ~= 'q1' or not s or not b or not x then\n"
    "    flag = 2\n"
    "  else\n"
    "    if flag == 0 then flag = 1 end\n"
    "    local r = {} for i = 2, k do r[i] = carry(s[i], b[i], x[i]) end\n"
    "    local w = 0\n"
    "    for i = 2, 513 do\n"
    "      if r[i] < 0 then r[i] = 0 end if r[i + 512] < 0 then r[i + 512] = 0 end\n"
    "      w = w + (r[i] + r[i + 512])\n"
    "    end\n"
    "    local win = tonumber(ARGV[5])\n"
    "    while w > win do\n"
    "      for i = 2, 1025 do r[i] = r[i] * 0.5 end w = w * 0.5\n"
    "    end\n"
    "    r[1026] = w\n"
    "    local t = {'q1'} for i = 2, k do t[i] = fmt(r[i]) end\n"
    "    q = table.concat(t, ' ')\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'lr', lr, 'quality', q)\n"
    "return {lr, q, flag}\n";

size_t eng_churn_check(fd_engine *e)
{
    if (!e->churn_on)
        return 0;
    char key[600];
    fd_redis_appendf(e->redis, "HGET %s lr", model_key(e, key, sizeof key));
    return 1;
}

int eng_churn_checked(fd_engine *e, const redisReply *hget, char *cause, size_t cause_size)
{
    char key[600], err[256];
    model_key(e, key, sizeof key);
    if (hget->type == REDIS_REPLY_ERROR) {
        snprintf(cause, cause_size, "%s (HGET %s lr)", hget->str, key);
        return -1;
    }
    const churn_sync *cs = &e->cs;
    if (hget->type != REDIS_REPLY_STRING || (cs->base_lr && strlen(cs->base_lr) == hget->len &&
                                             memcmp(cs->base_lr, hget->str, hget->len) == 0))
        return 0; /* none, or ours: nothing to check */
    fd_lr st;
    fd_lr_init(&st, &e->churn.lr);
    if (fd_lr_parse(&st, &e->churn.lr, hget->str, hget->len, err, sizeof err) != 0) {
        snprintf(cause, cause_size,
                 "%s field lr, written by another instance, is unreadable: %s (stop every "
                 "instance and delete the key to start the model over)",
                 key, err);
        return -1;
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
    fd_lr_format(&cs->from, cs->push_lr);
    fd_quality_format(&cs->from_q, cs->push_qt);
    fd_redis_appendf(e->redis, "EVAL %s 1 %s %s %s %s %s %.17g", MERGE_SCRIPT, key,
                     cs->base_lr ? cs->base_lr : "", cs->push_lr, cs->base_qt ? cs->base_qt : "",
                     cs->push_qt, FD_Q_WINDOW);
    /* the summary, from this instance's model (it holds the others'
     * learning up to its last write) */
    const fd_lr *m = &cs->from;
    const fd_quality *q = &cs->from_q;
    double hs = (double)e->churn.horizon_ms / 1000.0;
    fd_redis_appendf(e->redis,
                     "HSET %s examples %" PRIu64 " version %" PRIu64
                     " auc %.6f logloss %.6f alert_precision %.6f alert_recall %.6f"
                     " median_lead_time_s %.0f alerts %.0f churned %.0f reactivated %.0f"
                     " horizon_s %.0f",
                     key, m->examples, m->version, fd_quality_auc(q), fd_quality_logloss(q),
                     fd_quality_precision(q), fd_quality_recall(q), fd_quality_median_lead_s(q, hs),
                     q->alerts, q->churned, q->reactivated, hs);
    cs->pushing = true;
    return 2;
}

/* m (in this instance's lineage, at or after `from`) takes over what the
 * write added to `from`: m = merged + (m - from). */
static void adopt(fd_engine *e, const fd_lr *merged, const fd_quality *merged_q, fd_lr *m,
                  fd_quality *q)
{
    fd_lr_rebase(m, &e->cs.from, merged, &e->churn.lr);
    fd_quality d = *merged_q;
    fd_quality_add_delta(&d, q, &e->cs.from_q);
    *q = d;
}

/* *dst = a new copy of len bytes of s; the old freed. 0 / -1 (unchanged). */
static int set_text(char **dst, const char *s, size_t len)
{
    char *c = strndup(s, len);
    if (!c)
        return -1;
    free(*dst);
    *dst = c;
    return 0;
}

void eng_churn_written(fd_engine *e, const redisReply *r)
{
    churn_sync *cs = &e->cs;
    if (!cs->pushing)
        return;
    cs->pushing = false;
    char key[600], err[256];
    model_key(e, key, sizeof key);
    redisReply *read = NULL;
    if (!r) { /* the reply was lost: what is stored holds this write */
        if (fd_redis_appendf(e->redis, "HMGET %s lr quality", key) == 0 &&
            fd_redis_read_replies(e->redis, &read, 1, err, sizeof err) == 0 &&
            read->type == REDIS_REPLY_ARRAY && read->elements == 2)
            r = read;
    }
    const redisReply *lr = NULL, *qt = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        lr = r->element[0];
        qt = r->element[1];
    }
    if (!lr) {
        /* an error reply (counted as a refused command) or no read: base
         * stays, so the next write carries this one's learning too */
        fd_warn("churn",
                "%s: the merged model was not returned; the next write carries this "
                "write's learning again",
                key);
        goto out;
    }
    if (r->elements == 3 && r->element[2]->type == REDIS_REPLY_INTEGER &&
        r->element[2]->integer == 2)
        fd_err("churn",
               "%s held a model this instance cannot read (written by another "
               "program?): it was replaced by this instance's",
               key);
    bool same = strlen(cs->push_lr) == lr->len && memcmp(cs->push_lr, lr->str, lr->len) == 0 &&
                strlen(cs->push_qt) == qt->len && memcmp(cs->push_qt, qt->str, qt->len) == 0;
    if (!same) { /* the others' learning is in it: take it over */
        fd_lr merged;
        fd_quality merged_q;
        fd_lr_init(&merged, &e->churn.lr);
        fd_quality_init(&merged_q);
        if (fd_lr_parse(&merged, &e->churn.lr, lr->str, lr->len, err, sizeof err) != 0 ||
            fd_quality_parse(&merged_q, qt->str, qt->len, err, sizeof err) != 0) {
            fd_err("churn", "%s: the merged model does not parse (%s); keeping this instance's",
                   key, err);
            goto out;
        }
        adopt(e, &merged, &merged_q, &e->G, &e->Gq);
        for (int k = 0; k < e->n_epochs; k++)
            if (e->epochs[k]->model && e->epochs[k]->quality &&
                e->epochs[k]->model->examples >= cs->from.examples)
                adopt(e, &merged, &merged_q, e->epochs[k]->model, e->epochs[k]->quality);
        pthread_mutex_lock(&e->pub.mu);
        e->pub.lr = e->G; /* a new version: shards take it over at their next adoption */
        pthread_mutex_unlock(&e->pub.mu);
        if (cs->merges++ == 0)
            fd_info("churn",
                    "merged with other instances' learning (first time; later merges at debug "
                    "level): %" PRIu64 " examples, version %" PRIu64,
                    merged.examples, merged.version);
        else
            fd_debug("churn",
                     "merged with other instances' learning: %" PRIu64
                     " examples, version %" PRIu64,
                     merged.examples, merged.version);
    }
    if (r->elements == 3 && r->element[2]->type == REDIS_REPLY_INTEGER &&
        r->element[2]->integer == 3)
        fd_warn("churn",
                "%s was deleted since this instance last wrote it: it holds this instance's "
                "model now",
                key);
    if (set_text(&cs->base_lr, lr->str, lr->len) != 0 ||
        set_text(&cs->base_qt, qt->str, qt->len) != 0) {
        /* a stale base would add this write's learning twice */
        fd_err("churn", "out of memory keeping the stored model's text: stopping");
        e->fatal = 1;
    }
out:
    if (read)
        freeReplyObject(read);
}
