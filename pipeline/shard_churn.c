/*
 * shard_churn.c - the churn model inside a shard (docs/CHURN.md): the
 * per-partition timers driven by the partition's watermark, the replica
 * the shard trains without a lock, its hand-over at each marker
 * (model_pub.h), the users' risk ranking and the pending set in Redis.
 *
 * Why it is built this way:
 *
 * - One timer heap per partition, keyed by event time. The watermark of an
 *   event is its partition's max event time before it minus
 *   funnel.allowed_lateness, so the timers fire at the same points of a
 *   partition's stream in every run, with any number of shards (a
 *   partition's events all go through one shard, in order).
 *
 * - The users with an open episode are in PREFIX churn:pending:P (a set,
 *   written in the epoch's MULTI/EXEC with their records). At a partition's
 *   start they are loaded and their timers armed, so after a restart or a
 *   rebalance an episode whose user never comes back still ends in churn
 *   at L + H: nothing is lost or learned twice.
 *
 * - Users with a timer are never evicted (their timer points at them);
 *   dropping a partition clears its heap first.
 */
#include <inttypes.h>

#include "daemon/log.h"
#include "pipeline/alert.h"
#include "pipeline/model_pub.h"
#include "pipeline/shard_int.h"

/* A timer of an evicted user: its id (the reference is tagged with bit 0). */
typedef struct ghost {
    int32_t partition;
    uint32_t len;
    char id[];
} ghost;

static inline bool is_ghost(const void *ref)
{
    return ((uintptr_t)ref & 1) != 0;
}

static inline ghost *ghost_of(void *ref)
{
    return (ghost *)((uintptr_t)ref & ~(uintptr_t)1);
}

static void moved(void *ref, size_t pos)
{
    if (!is_ghost(ref))
        ((fd_user *)ref)->churn.heap_pos = (uint32_t)pos;
}

static void free_ghosts(fd_timer_heap *h)
{
    for (size_t i = 0; i < h->n; i++)
        if (is_ghost(h->a[i].ref))
            free(ghost_of(h->a[i].ref));
}

/* An alert goes into its partition's outbox: HSET PREFIX churn:outbox
 * "<ts_ms, 16 digits>:<alert_id>" "<user id>\0<message>", written with the
 * epoch's records in its MULTI/EXEC; the closer sends the outbox to
 * kafka.topic_alerts and deletes what was delivered (closer.c). So an
 * alert of an epoch that is never written is never sent (its replay fires
 * it again, with the same id), and one that was written is sent at least
 * once. */
static void on_alert(void *ctx, const fd_churn_alert *a)
{
    fd_shard *s = ctx;
    const fd_user *u = a->user;
    pstate *ps = u->partition >= 0 && u->partition < s->n_parts ? &s->parts[u->partition] : NULL;
    if (!ps || !s->alert_enc)
        return;
    char names[FD_CHURN_REASONS][64];
    fd_alert_msg m = {.alert_id = a->alert_id,
                      .user_id = fd_user_id(u),
                      .ts_ms = a->ts,
                      .risk = a->risk,
                      .threshold = a->threshold,
                      .model_version = (int64_t)a->model_version,
                      .n_reasons = a->n_reasons,
                      .last_activity_ms = a->last_activity_ts,
                      .monetary_cents = a->monetary_cents};
    const char *items[FD_MF_TOP_MAX];
    m.n_items = smf_top(s, u, s->env->cfg->mf_top_n, items, NULL);
    m.items = items;
    for (int i = 0; i < a->n_reasons && i < FD_ALERT_REASONS; i++) {
        m.reasons[i].feature =
            fd_feat_name(&s->env->core->feat, a->reason_feature[i], names[i], sizeof names[i]);
        m.reasons[i].value = a->reason_value[i];
        m.reasons[i].contribution = a->reason_contrib[i];
    }
    const void *out;
    size_t len;
    if (fd_alert_encode(s->alert_enc, &m, &out, &len) != 0) {
        fd_err("churn", "shard=%d alert %s for user %.64s could not be encoded (out of memory?)",
               s->id, a->alert_id, fd_user_id(u));
        return;
    }
    char field[64];
    int fl = snprintf(field, sizeof field, "%016" PRId64 ":%s", a->ts < 0 ? 0 : a->ts, a->alert_id);
    fd_resp_cmd(&ps->outbox, 4);
    fd_resp_str(&ps->outbox, "HSET");
    fd_resp_str(&ps->outbox, s->alert_key);
    fd_resp_arg(&ps->outbox, field, (size_t)fl);
    /* the value: the user id (the Kafka key), a NUL, the message */
    fd_resp *b = &ps->outbox;
    size_t idl = u->id_len, vl = idl + 1 + len;
    char stack[4096], *v = vl <= sizeof stack ? stack : malloc(vl);
    if (!v) {
        b->oom = 1;
        return;
    }
    memcpy(v, fd_user_id(u), idl);
    v[idl] = '\0';
    memcpy(v + idl + 1, out, len);
    fd_resp_arg(b, v, vl);
    if (v != stack)
        free(v);
    ps->stats[FD_ST_ALERTS]++;
    ps->touched = true;
    fd_debug("churn", "alert %s user=%.64s risk=%.3f", a->alert_id, fd_user_id(u), a->risk);
}

void sch_reload(fd_shard *s)
{
    if (!s->cm || !s->env->reload)
        return;
    fd_reload_box *b = s->env->reload;
    pthread_mutex_lock(&b->mu);
    s->cp.threshold = b->threshold;
    s->cp.rearm_margin = b->rearm_margin;
    s->cp.min_events = b->min_events;
    s->cp.cooldown_ms = b->cooldown_ms;
    pthread_mutex_unlock(&b->mu);
}

void sch_outbox(fd_shard *s, int32_t p, fd_resp *cmds)
{
    pstate *ps = &s->parts[p];
    if (ps->outbox.len) {
        fd_resp_cat(cmds, &ps->outbox);
        fd_resp_reset(&ps->outbox);
    }
}

int sch_new(fd_shard *s, char *errstr, size_t errstr_size)
{
    if (!s->env->churn)
        return 0;
    s->cm = malloc(sizeof *s->cm);
    s->prev = malloc(sizeof *s->prev);
    if (!s->cm || !s->prev) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    s->cp = *s->env->churn;
    fd_churn_model_init(s->cm, &s->cp);
    pthread_mutex_lock(&s->env->model->mu);
    s->cm->lr = s->env->model->lr;
    s->prev_epoch = s->env->model->epoch;
    pthread_mutex_unlock(&s->env->model->mu);
    *s->prev = s->cm->lr;
    s->sink = (fd_churn_sink){.ctx = s, .alert = on_alert, .example = NULL};
    const fd_config *cfg = s->env->cfg;
    char err[512];
    s->alert_enc = fd_alert_enc_new(!strcmp(cfg->kafka_alerts_format, "json"),
                                    cfg->kafka_alerts_schema, NULL, err, sizeof err);
    if (!s->alert_enc) {
        snprintf(errstr, errstr_size, "kafka.alerts_schema: %s", err);
        return -1;
    }
    snprintf(s->alert_key, sizeof s->alert_key, "%schurn:outbox", cfg->redis_key_prefix);
    return 0;
}

void sch_free(fd_shard *s)
{
    for (int p = 0; p < s->n_parts; p++) {
        free_ghosts(&s->parts[p].timers);
        fd_timer_free(&s->parts[p].timers);
        fd_resp_free(&s->parts[p].outbox);
    }
    free(s->cm);
    free(s->prev);
    fd_alert_enc_free(s->alert_enc);
}

static void set_timer(fd_shard *s, fd_user *u, int32_t p, int64_t due)
{
    fd_timer_heap *h = &s->parts[p].timers;
    h->moved = moved;
    if (due < 0)
        fd_timer_remove(h, u->churn.heap_pos);
    else if (fd_timer_set(h, u->churn.heap_pos, due, u) != 0)
        fd_err("churn",
               "shard=%d out of memory arming a timer: the episode of a user ends at "
               "its next event instead",
               s->id);
}

void sch_arm(fd_shard *s, fd_user *u, int32_t p, int64_t due)
{
    set_timer(s, u, p, due);
}

void sch_ghost(fd_shard *s, fd_user *u)
{
    int32_t p = u->partition;
    if (p < 0 || p >= s->n_parts || !u->churn.heap_pos)
        return;
    fd_timer_heap *h = &s->parts[p].timers;
    int64_t due = h->a[u->churn.heap_pos - 1].due;
    ghost *g = malloc(sizeof *g + u->id_len + 1);
    if (!g)
        return; /* the user stays (keep() sees its timer) */
    g->partition = p;
    g->len = u->id_len;
    memcpy(g->id, fd_user_id(u), u->id_len + 1);
    fd_timer_remove(h, u->churn.heap_pos);
    if (fd_timer_push(h, due, (void *)((uintptr_t)g | 1)) != 0)
        free(g);
}

static void fire(fd_shard *s, int32_t p, int64_t wm)
{
    fd_timer_heap *h = &s->parts[p].timers;
    const fd_timer *t;
    while ((t = fd_timer_top(h)) && t->due <= wm) {
        if (is_ghost(t->ref)) {
            ghost *g = ghost_of(t->ref);
            fd_user *u = shard_load_user(s, g->id, g->len, g->partition);
            if (!u) {
                fd_warn("churn",
                        "shard=%d cannot load user %.64s for its churn timer; retried "
                        "at the next watermark",
                        s->id, g->id);
                return;
            }
            fd_timer_pop(h);
            free(g);
            if (u->churn.heap_pos == 0)
                set_timer(s, u, p, fd_churn_on_timer(&s->cp, s->cm, u, wm, &s->sink));
            shard_mark_dirty(s, u);
            continue;
        }
        fd_user *u = t->ref;
        int64_t due = fd_churn_on_timer(&s->cp, s->cm, u, wm, &s->sink);
        shard_mark_dirty(s, u);
        set_timer(s, u, p, due);
    }
}

void sch_watermark(fd_shard *s, int32_t p, int64_t max_ts)
{
    if (s->cm && max_ts > 0)
        fire(s, p, max_ts - s->env->cfg->funnel_allowed_lateness_ms);
}

void sch_before(fd_shard *s, fd_user *u, int32_t p, int64_t ts, int64_t ref)
{
    if (!s->cm)
        return;
    if (ref > 0)
        fire(s, p, ref - s->env->cfg->funnel_allowed_lateness_ms);
    fd_churn_before_event(&s->cp, s->cm, u, ts, &s->sink);
}

void sch_after(fd_shard *s, fd_user *u, int32_t p, int64_t ts)
{
    if (!s->cm)
        return;
    set_timer(s, u, p, fd_churn_after_event(&s->cp, s->cm, u, ts, &s->sink));
}

int sch_snapshot(fd_shard *s, fd_snapshot *sn, uint64_t epoch)
{
    if (!s->cm)
        return 0;
    sn->lr_cur = malloc(sizeof *sn->lr_cur);
    sn->lr_prev = malloc(sizeof *sn->lr_prev);
    sn->q_delta = malloc(sizeof *sn->q_delta);
    if (!sn->lr_cur || !sn->lr_prev || !sn->q_delta)
        return -1;
    *sn->lr_cur = s->cm->lr;
    *sn->lr_prev = *s->prev;
    *sn->q_delta = s->cm->q;
    fd_quality_init(&s->cm->q);
    *s->prev = s->cm->lr;
    s->prev_epoch = epoch;
    return 0;
}

void sch_adopt(fd_shard *s)
{
    if (!s->cm)
        return;
    fd_model_pub *pub = s->env->model;
    pthread_mutex_lock(&pub->mu);
    if (pub->epoch == s->prev_epoch && pub->epoch != 0 && pub->lr.version != s->prev->version) {
        /* R = G + (R - R at the marker); from now on the delta is from G */
        fd_lr_rebase(&s->cm->lr, s->prev, &pub->lr, &s->cp.lr);
        *s->prev = pub->lr;
    }
    pthread_mutex_unlock(&pub->mu);
}

void sch_drop(fd_shard *s, int32_t p)
{
    if (p >= 0 && p < s->n_parts) {
        s->parts[p].timers.moved = moved;
        free_ghosts(&s->parts[p].timers);
        fd_timer_free(&s->parts[p].timers); /* drop_partition then zeroes the pstate */
        fd_resp_free(&s->parts[p].outbox);  /* its alerts fire again on replay */
    }
}

size_t sch_suffix(const fd_user *u, char *buf)
{
    return fd_churn_user_format(&u->churn, buf);
}

void sch_parse(fd_shard *s, fd_user *u, const char *rec, size_t len)
{
    memset(&u->churn, 0, sizeof u->churn);
    u->risk_known = false; /* churn:risk is written again at its next write */
    size_t at = fd_feat_record_len(rec, len);
    /* the suffixes: the churn model's " m ...", then the recommendation
     * model's " f ..." (shard_mf.c); either may be missing */
    const char *f = NULL;
    for (size_t i = at; i + 3 <= len; i++)
        if (rec[i] == ' ' && rec[i + 1] == 'f' && rec[i + 2] == ' ') {
            f = rec + i;
            break;
        }
    smf_parse(s, u, f ? f : rec + len, f ? (size_t)(rec + len - f) : 0);
    if (f)
        len = (size_t)(f - rec);
    if (at == len)
        return; /* written without the model: no episode known */
    char err[160];
    if (fd_churn_user_parse(&u->churn, rec + at, len - at, err, sizeof err) != 0) {
        memset(&u->churn, 0, sizeof u->churn);
        fd_warn("churn", "shard=%d user %.64s: %s (its model state starts over)", s->id,
                fd_user_id(u), err);
    }
}

const char *sch_pending_key(const fd_shard *s, int32_t p, char *buf, size_t n)
{
    snprintf(buf, n, "%schurn:pending:%d", s->env->cfg->redis_key_prefix, (int)p);
    return buf;
}

const char *sch_risk_key(const fd_shard *s, char *buf, size_t n)
{
    snprintf(buf, n, "%schurn:risk", s->env->cfg->redis_key_prefix);
    return buf;
}
