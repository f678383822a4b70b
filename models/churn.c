/*
 * churn.c - the churn engine (churn.h): episodes, delayed labels,
 * inactivity checkpoints, prequential learning, scoring and alerts.
 *
 * Why it is built this way (docs/CHURN.md is the specification):
 *
 * - Nothing per example is stored. An open episode is L = f.last_ts and
 *   the flag FD_CU_PENDING; its examples are "the user as of L" and "the
 *   user as of L + cp_ms[i]" for each checkpoint the silence reached. The
 *   state does not move between L and the next event (late events within
 *   lateness fold into it, in partition order, the same on every run), and
 *   fd_feat_eval is deterministic, so the examples are recomputed when the
 *   label becomes known: 0 bytes per pending example, 16 bytes per user.
 *
 * - Which checkpoint examples an episode has is decided by event time
 *   alone: checkpoint i belongs to the episode when L + cp_ms[i] is before
 *   its end (the next event, or L + H). Whether the watermark had already
 *   passed it (it was scored, it may have alerted) does not matter, so the
 *   examples and labels are the same with any batching, any number of
 *   workers and any replay speed.
 *
 * - The label of an episode is resolved by whichever comes first: the
 *   user's next event t2 > L (label t2 >= L + H) or the timer at L + H
 *   (label 1). Both give the same examples and label; the next event after
 *   a churn counts the user as reactivated either way.
 *
 * - The prediction learned with each example is the model's pre-update
 *   prediction (fd_lr_learn): prequential, so quality is measured on
 *   examples the model had not seen.
 *
 * - Alerts: when the user is scored (at its event, at each checkpoint the
 *   watermark passes), risk >= threshold, at least min_events events, the
 *   model past warm-up, not disarmed, and the cooldown since the user's
 *   last alert over. An alert disarms the user; scoring below threshold -
 *   rearm_margin or a new event re-arms it. The alert id hashes (user id,
 *   L, checkpoint), so a replay gives the same ids.
 */
#include "models/churn.h"
#include "features/fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL

/* Checkpoints at H/8, H/4, 3H/8, H/2, 5H/8 for horizon h (docs/CHURN.md:
 * the fifth lifted the share of churned users alerted from 0.58 to 0.71
 * with the median lead time unchanged). */
static void default_checkpoints(fd_churn_params *p)
{
    p->n_cp = 5;
    p->cp_ms[0] = p->horizon_ms / 8;
    p->cp_ms[1] = p->horizon_ms / 4;
    p->cp_ms[2] = 3 * p->horizon_ms / 8;
    p->cp_ms[3] = p->horizon_ms / 2;
    p->cp_ms[4] = 5 * p->horizon_ms / 8;
}

void fd_churn_params_default(fd_churn_params *p, const fd_feat_params *feat)
{
    memset(p, 0, sizeof *p);
    p->feat = feat;
    p->horizon_ms = 14 * DAY_MS;
    default_checkpoints(p);
    p->threshold = 0.5;
    p->rearm_margin = 0.1;
    p->min_events = 3;
    p->cooldown_ms = 7 * DAY_MS;
    p->warmup_examples = 5000;
    fd_lr_params_default(&p->lr, feat ? fd_feat_count(feat) : 1);
    p->lr.alpha = 0.5; /* measured with funnelctl eval (docs/CHURN.md) */
    p->lr.l1 = 0.0;
    p->lr.l2 = 0.1;
}

int fd_churn_params_check(const fd_churn_params *p, char *errstr, size_t errstr_size)
{
    if (!p->feat) {
        snprintf(errstr, errstr_size, "churn: no feature parameters");
        return -1;
    }
    int nf = fd_feat_count(p->feat);
    if (nf > FD_LR_MAX_FEAT || p->lr.n != nf) {
        snprintf(errstr, errstr_size, "churn: model inputs %d do not match the %d features",
                 p->lr.n, nf);
        return -1;
    }
    if (p->horizon_ms < 8 || p->horizon_ms > FD_TS_MAX_MS) {
        snprintf(errstr, errstr_size, "churn: horizon %lld ms out of range",
                 (long long)p->horizon_ms);
        return -1;
    }
    if (p->n_cp < 0 || p->n_cp > FD_CHURN_MAX_CP) {
        snprintf(errstr, errstr_size, "churn: %d checkpoints (at most %d)", p->n_cp,
                 FD_CHURN_MAX_CP);
        return -1;
    }
    for (int i = 0; i < p->n_cp; i++)
        if (p->cp_ms[i] <= (i ? p->cp_ms[i - 1] : 0) || p->cp_ms[i] >= p->horizon_ms) {
            snprintf(errstr, errstr_size,
                     "churn: checkpoint %d at %lld ms must be after the previous one and "
                     "before the horizon",
                     i, (long long)p->cp_ms[i]);
            return -1;
        }
    if (!(p->threshold > 0 && p->threshold < 1)) {
        snprintf(errstr, errstr_size, "churn: alert threshold %g must be in (0, 1)", p->threshold);
        return -1;
    }
    if (!(p->rearm_margin >= 0 && p->rearm_margin < 1)) {
        snprintf(errstr, errstr_size, "churn: rearm margin %g must be in [0, 1)", p->rearm_margin);
        return -1;
    }
    if (p->min_events < 0 || p->cooldown_ms < 0) {
        snprintf(errstr, errstr_size, "churn: min_events and cooldown must be >= 0");
        return -1;
    }
    return fd_lr_params_check(&p->lr, errstr, errstr_size);
}

void fd_churn_model_init(fd_churn_model *m, const fd_churn_params *p)
{
    fd_lr_init(&m->lr, &p->lr);
    fd_quality_init(&m->q);
}

/* ---- helpers ------------------------------------------------------------- */

static int64_t events_of(const fd_user *u)
{
    int64_t n = 0;
    for (int i = 0; i < FD_EV__COUNT; i++)
        n += u->f.count[i] > 0 ? u->f.count[i] : 0;
    return n;
}

static uint16_t quantise(double p)
{
    if (!(p > 0))
        return 0;
    if (p >= 1)
        return 65535;
    return (uint16_t)(p * 65535.0 + 0.5);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* 16 hex digits of a hash of (user id, L, checkpoint). */
static void alert_id_of(const fd_user *u, int64_t L, int cp, char out[17])
{
    const unsigned char *s = (const unsigned char *)fd_user_id(u);
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
    for (uint32_t i = 0; i < u->id_len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    h = mix64(h ^ mix64((uint64_t)L)) ^ mix64((uint64_t)cp + 0x9e3779b97f4a7c15ULL);
    h = mix64(h);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++)
        out[i] = hex[(h >> (60 - 4 * i)) & 15];
    out[16] = 0;
}

/* Score u as of ts (cp: checkpoint index, n_cp for "at the event"), keep
 * the risk, and alert when the rules allow. */
static void score(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t ts, int cp,
                  const fd_churn_sink *sink)
{
    double raw[FD_LR_MAX_FEAT];
    fd_feat_eval(p->feat, &u->f, ts, raw);
    double risk = fd_lr_predict(&m->lr, raw);
    fd_churn_user *c = &u->churn;
    c->risk_q = quantise(risk);
    if (risk < p->threshold - p->rearm_margin)
        c->flags &= (uint8_t)~FD_CU_DISARMED;
    if (risk < p->threshold || (c->flags & FD_CU_DISARMED) || m->lr.examples < p->warmup_examples ||
        events_of(u) < p->min_events)
        return;
    if (c->alert_ts != 0 && ts - c->alert_ts < p->cooldown_ms)
        return;
    c->flags |= FD_CU_DISARMED | FD_CU_ALERTED;
    c->alert_ts = ts;
    m->q.alerts += 1;
    if (!sink || !sink->alert)
        return;
    fd_churn_alert a;
    memset(&a, 0, sizeof a);
    a.user = u;
    alert_id_of(u, u->f.last_ts, cp, a.alert_id);
    a.ts = ts;
    a.risk = risk;
    a.threshold = p->threshold;
    a.model_version = m->lr.version;
    int idx[FD_CHURN_REASONS];
    double contrib[FD_CHURN_REASONS];
    a.n_reasons = fd_lr_top_reasons(&m->lr, raw, FD_CHURN_REASONS, idx, contrib);
    for (int k = 0; k < a.n_reasons; k++) {
        a.reason_feature[k] = idx[k];
        a.reason_value[k] = raw[idx[k]];
        a.reason_contrib[k] = contrib[k];
    }
    a.last_activity_ts = u->f.last_ts;
    a.monetary_cents = u->f.revenue_cents;
    sink->alert(sink->ctx, &a);
}

static void learn_one(const fd_churn_params *p, fd_churn_model *m, const fd_user *u, int64_t ts,
                      int label, const fd_churn_sink *sink)
{
    double raw[FD_LR_MAX_FEAT];
    fd_feat_eval(p->feat, &u->f, ts, raw);
    double pr = fd_lr_learn(&m->lr, &p->lr, raw, label);
    fd_quality_add(&m->q, pr, label);
    if (sink && sink->example)
        sink->example(sink->ctx, u, ts, raw, p->lr.n, label, pr);
}

/* The open episode ends at `end` (the next event, or L + H) with `label`:
 * learn its examples, count the outcome. */
static void resolve(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t end, int label,
                    const fd_churn_sink *sink)
{
    fd_churn_user *c = &u->churn;
    int64_t L = u->f.last_ts;
    learn_one(p, m, u, L, label, sink);
    for (int i = 0; i < p->n_cp; i++)
        if (L + p->cp_ms[i] < end)
            learn_one(p, m, u, L + p->cp_ms[i], label, sink);
    if (c->flags & FD_CU_ALERTED) {
        m->q.alerts_resolved += 1;
        m->q.alerts_true += label;
    }
    if (label) {
        m->q.churned += 1;
        if (c->flags & FD_CU_ALERTED) {
            m->q.churned_alerted += 1;
            double lead = (double)(L + p->horizon_ms - c->alert_ts) / 1000.0;
            if (lead < 0)
                lead = 0;
            fd_quality_add_lead(&m->q, lead, (double)p->horizon_ms / 1000.0);
        }
        c->flags |= FD_CU_CHURNED;
    }
    c->flags &= (uint8_t) ~(FD_CU_PENDING | FD_CU_ALERTED);
    c->next_cp = 0;
}

/* ---- the engine ---------------------------------------------------------- */

void fd_churn_before_event(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t ev_ts,
                           const fd_churn_sink *sink)
{
    fd_churn_user *c = &u->churn;
    if (u->f.last_ts == 0 || ev_ts <= u->f.last_ts)
        return; /* first event, or late: the episode goes on */
    int64_t L = u->f.last_ts;
    if (c->flags & FD_CU_PENDING) {
        /* overflow-safe: L and H are both bounded by FD_TS_MAX_MS */
        int label = ev_ts - L >= p->horizon_ms;
        resolve(p, m, u, label ? L + p->horizon_ms : ev_ts, label, sink);
    }
    if (c->flags & FD_CU_CHURNED) {
        m->q.reactivated += 1;
        c->flags &= (uint8_t)~FD_CU_CHURNED;
    }
}

int64_t fd_churn_after_event(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t ev_ts,
                             const fd_churn_sink *sink)
{
    fd_churn_user *c = &u->churn;
    (void)ev_ts;
    if (!(c->flags & FD_CU_PENDING)) {
        c->flags |= FD_CU_PENDING;
        c->next_cp = 0;
        c->flags &= (uint8_t)~FD_CU_DISARMED; /* active again: re-armed */
        score(p, m, u, u->f.last_ts, p->n_cp, sink);
    } else {
        /* a late event folded into the open episode: the risk as of the
         * latest point scored */
        int64_t at = c->next_cp ? u->f.last_ts + p->cp_ms[c->next_cp - 1] : u->f.last_ts;
        double raw[FD_LR_MAX_FEAT];
        fd_feat_eval(p->feat, &u->f, at, raw);
        c->risk_q = quantise(fd_lr_predict(&m->lr, raw));
    }
    return fd_churn_next_due(p, u);
}

int64_t fd_churn_next_due(const fd_churn_params *p, const fd_user *u)
{
    const fd_churn_user *c = &u->churn;
    if (!(c->flags & FD_CU_PENDING))
        return -1;
    if (c->next_cp < p->n_cp)
        return u->f.last_ts + p->cp_ms[c->next_cp];
    return u->f.last_ts + p->horizon_ms;
}

int64_t fd_churn_on_timer(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t wm,
                          const fd_churn_sink *sink)
{
    fd_churn_user *c = &u->churn;
    for (;;) {
        int64_t due = fd_churn_next_due(p, u);
        if (due < 0 || due > wm)
            return due;
        if (c->next_cp < p->n_cp) {
            int cp = c->next_cp++;
            score(p, m, u, u->f.last_ts + p->cp_ms[cp], cp, sink);
        } else {
            resolve(p, m, u, u->f.last_ts + p->horizon_ms, 1, sink);
            /* churned: scored as of the horizon, so the ranking shows it */
            double raw[FD_LR_MAX_FEAT];
            fd_feat_eval(p->feat, &u->f, u->f.last_ts + p->horizon_ms, raw);
            c->risk_q = quantise(fd_lr_predict(&m->lr, raw));
        }
    }
}

/* ---- persistence --------------------------------------------------------- */

size_t fd_churn_user_format(const fd_churn_user *c, char *buf)
{
    /* " m %u %u %u %lld", as printf wrote it: at most 3 + 6 + 4 + 4 + 20
     * bytes and the NUL */
    _Static_assert(3 + 6 + 4 + 4 + FD_FMT_I64_MAX + 1 <= FD_CHURN_USER_TEXT_MAX,
                   "the longest suffix and its NUL fit FD_CHURN_USER_TEXT_MAX");
    char *e = buf;
    memcpy(e, " m ", 3);
    e = fd_fmt_u64(e + 3, c->risk_q);
    *e++ = ' ';
    e = fd_fmt_u64(e, c->next_cp);
    *e++ = ' ';
    e = fd_fmt_u64(e, c->flags);
    *e++ = ' ';
    e = fd_fmt_i64(e, c->alert_ts);
    *e = '\0';
    return (size_t)(e - buf);
}

int fd_churn_user_parse(fd_churn_user *c, const char *s, size_t len, char *errstr,
                        size_t errstr_size)
{
    char tmp[FD_CHURN_USER_TEXT_MAX];
    if (len >= sizeof tmp || len < 3 || memcmp(s, " m ", 3) != 0) {
        snprintf(errstr, errstr_size, "churn suffix: expected \" m RISK NEXT_CP FLAGS ALERT_TS\"");
        return -1;
    }
    memcpy(tmp, s, len);
    tmp[len] = 0;
    unsigned long risk, cp, flags;
    long long ats;
    int used = 0;
    if (sscanf(tmp + 3, "%lu %lu %lu %lld%n", &risk, &cp, &flags, &ats, &used) != 4 ||
        (size_t)used + 3 != len || risk > 65535 || cp > FD_CHURN_MAX_CP || flags > 0x0f ||
        ats < 0 || ats > FD_TS_MAX_MS + 3650 * DAY_MS) {
        snprintf(errstr, errstr_size, "churn suffix \"%.40s\": a value is out of range", tmp);
        return -1;
    }
    c->risk_q = (uint16_t)risk;
    c->next_cp = (uint8_t)cp;
    c->flags = (uint8_t)flags;
    c->alert_ts = ats;
    c->heap_pos = 0;
    c->in_set = (flags & FD_CU_PENDING) != 0; /* written in the same MULTI/EXEC */
    return 0;
}

void fd_churn_params_set_horizon(fd_churn_params *p, int64_t horizon_ms)
{
    p->horizon_ms = horizon_ms;
    default_checkpoints(p);
}
