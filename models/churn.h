/*
 * churn.h - the churn engine: delayed labels, inactivity checkpoints,
 * prequential learning and scoring, alerts. docs/CHURN.md is the
 * specification.
 *
 * Pure C: no Kafka, no Redis, no threads, no clock. The shard (and
 * `funnelctl eval`) drives it with a user's events and its partition's
 * watermark; it never looks at wall time, so a replay gives the same
 * examples and labels with any number of workers or instances.
 *
 * Episodes. An event at L = f.last_ts opens an episode: the example "at
 * the event" (features evaluated at L) and, as the watermark passes
 * L + cp_ms[i], one example per inactivity checkpoint (features at
 * L + cp_ms[i]: decays applied, recency = the silence so far). All
 * examples of an episode share its label: 1 when no event of the user
 * follows in (L, L + H), else 0. The label becomes known either at the
 * user's next event t2 > L (label t2 >= L + H) or when the watermark
 * reaches L + H (label 1, the user has churned). The examples are
 * recomputed from the state at that moment (the state does not change
 * between L and the next event but for late events within lateness,
 * which fold into it): nothing per example is stored.
 *
 * Per user the engine keeps an fd_churn_user (models/churn_user.h) inside
 * fd_user; the caller keeps one timer per user with an open episode, due
 * at fd_churn_next_due.
 */
#ifndef FD_CHURN_H
#define FD_CHURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "features/features.h"
#include "features/user.h"
#include "models/churn_user.h"
#include "models/lr.h"
#include "models/quality.h"

#define FD_CHURN_MAX_CP 5

typedef struct fd_churn_params {
    const fd_feat_params *feat;     /* the feature vector (its fd_feat_count inputs) */
    int64_t horizon_ms;             /* churn.horizon: default 14 days */
    int n_cp;                       /* inactivity checkpoints: default 5 */
    int64_t cp_ms[FD_CHURN_MAX_CP]; /* default H/8, H/4, 3H/8, H/2, 5H/8 (increasing, < H) */
    double threshold;               /* churn.alert_threshold: default 0.5 */
    double rearm_margin;            /* churn.rearm_margin: default 0.1 */
    int64_t min_events;             /* churn.min_events: default 3 */
    int64_t cooldown_ms;            /* churn.alert_cooldown: default 7 days */
    uint64_t warmup_examples;       /* churn.warmup_examples: default 5000 */
    fd_lr_params lr;                /* churn.alpha, beta, l1, l2: default 0.5, 1, 0, 0.1 */
} fd_churn_params;

/* Defaults (above) for the feature params. */
void fd_churn_params_default(fd_churn_params *p, const fd_feat_params *feat);
/* Horizon H, with the checkpoints at H/8, H/4, 3H/8, H/2, 5H/8. */
void fd_churn_params_set_horizon(fd_churn_params *p, int64_t horizon_ms);
/* 0, or -1 with a message naming the bad value. */
int fd_churn_params_check(const fd_churn_params *p, char *errstr, size_t errstr_size);

/* One shard's replica: the model and its quality sums. */
typedef struct fd_churn_model {
    fd_lr lr;
    fd_quality q;
} fd_churn_model;

void fd_churn_model_init(fd_churn_model *m, const fd_churn_params *p);

#define FD_CHURN_REASONS 3

typedef struct fd_churn_alert {
    const fd_user *user;
    char alert_id[17]; /* 16 hex digits: hash of (user id, episode start L, checkpoint) */
    int64_t ts;        /* event time the user was scored at (L + cp_ms[i], or L) */
    double risk, threshold;
    uint64_t model_version;
    int n_reasons;
    int reason_feature[FD_CHURN_REASONS];    /* fd_feat_name index */
    double reason_value[FD_CHURN_REASONS];   /* raw value (fd_feat_eval) */
    double reason_contrib[FD_CHURN_REASONS]; /* w_i * x_i */
    int64_t last_activity_ts;                /* L */
    int64_t monetary_cents;                  /* the user's revenue_cents */
} fd_churn_alert;

/* Where the engine's outputs go. Any callback may be NULL. */
typedef struct fd_churn_sink {
    void *ctx;
    void (*alert)(void *ctx, const fd_churn_alert *a);
    /* Every example learned, in order: raw inputs (n of them), its label,
     * the prequential prediction and the event time it was taken at. */
    void (*example)(void *ctx, const fd_user *u, int64_t ts, const double *raw, int n, int label,
                    double p);
} fd_churn_sink;

/* Before fd_core_apply applies an event at ev_ts to u (u->f is still the
 * state before it): when ev_ts > u->f.last_ts and an episode is open, its
 * examples are learned with label (ev_ts >= L + H); a user whose last
 * episode ended in churn is counted reactivated. */
void fd_churn_before_event(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t ev_ts,
                           const fd_churn_sink *sink);

/* After fd_core_apply: scores the user at the event (risk), opens the
 * episode at the new last_ts (when the event moved it), re-arms alerts
 * (the user is active). Returns fd_churn_next_due(p, u). */
int64_t fd_churn_after_event(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t ev_ts,
                             const fd_churn_sink *sink);

/* The user's timer came due with the partition watermark at wm: every
 * checkpoint at or before wm is scored (and may alert), and at L + H the
 * episode's examples are learned with label 1. Returns the next due time,
 * or -1 when the user needs no timer now. A timer that is early (the user
 * moved on since it was set) does nothing but return the right due. */
int64_t fd_churn_on_timer(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t wm,
                          const fd_churn_sink *sink);

/* When the user's next timer is due (-1: none), from its state alone. */
int64_t fd_churn_next_due(const fd_churn_params *p, const fd_user *u);

/* The user's risk as last scored, 0..1. */
static inline double fd_churn_risk(const fd_user *u)
{
    return u->churn.risk_q / 65535.0;
}

/* The persisted part of fd_churn_user as the user record's suffix
 * " m RISK_Q NEXT_CP FLAGS ALERT_TS" (FD_CHURN_USER_TEXT_MAX bytes, NUL
 * added); returns the length. fd_churn_user_parse reads that whole
 * suffix (starting with " m "): 0, or -1 with errstr (c untouched). */
#define FD_CHURN_USER_TEXT_MAX 64
size_t fd_churn_user_format(const fd_churn_user *c, char *buf);
int fd_churn_user_parse(fd_churn_user *c, const char *s, size_t len, char *errstr,
                        size_t errstr_size);

#endif
