/*
 * quality.h - prequential quality of the churn model: AUC over a bounded
 * recent window, log loss, calibration by decile, alert precision, recall
 * and lead time. Mergeable: every figure is kept as sums, so shards keep
 * their own and the writer adds the deltas.
 *
 * AUC comes from two score histograms (FD_Q_BINS bins over [0,1]; ties in
 * a bin count one half). The window is bounded by decay: when the
 * examples in the histograms pass FD_Q_WINDOW, every bin is halved.
 *
 * Pure C: no I/O, no clock, no threads.
 */
#ifndef FD_QUALITY_H
#define FD_QUALITY_H

#include <stddef.h>
#include <stdint.h>

#define FD_Q_BINS   512
#define FD_Q_WINDOW 200000.0

typedef struct fd_quality {
    double pos[FD_Q_BINS], neg[FD_Q_BINS];  /* windowed score histograms */
    double in_window;                       /* sum of both histograms */
    double logloss_sum, n;                  /* all examples ever (n counts them) */
    double cal_p[10], cal_y[10], cal_n[10]; /* by decile of the score: sums */
    /* alerts (counted by the churn engine, see churn.h) */
    double alerts;          /* alerts emitted */
    double alerts_resolved; /* alerts whose episode's label is known */
    double alerts_true;     /* ... and ended in churn */
    double churned;         /* episodes that ended in churn */
    double churned_alerted; /* ... with an alert before the horizon */
    double lead_sum_s;      /* sum of lead times (horizon end - first alert) of those, s */
    double lead_hist[32];   /* lead times by bin of horizon/32 (median) */
    double reactivated;     /* churned users that came back */
} fd_quality;

void fd_quality_init(fd_quality *q);
/* One prequential example: p the prediction made before learning it. */
void fd_quality_add(fd_quality *q, double p, int label);

double fd_quality_auc(const fd_quality *q);     /* 0.5 with no example of a class */
double fd_quality_logloss(const fd_quality *q); /* mean, p clamped to [1e-15, 1-1e-15] */
double fd_quality_precision(const fd_quality *q);
double fd_quality_recall(const fd_quality *q);
/* Median lead time in seconds from lead_hist (horizon_s / 32 per bin). */
double fd_quality_median_lead_s(const fd_quality *q, double horizon_s);
/* Record a churned episode's first alert lead (lead_s in 0..horizon_s). */
void fd_quality_add_lead(fd_quality *q, double lead_s, double horizon_s);

/* out = base + (cur - at) for every sum (windowed histograms: the window
 * rule is applied after). Used to merge shards' deltas. */
void fd_quality_add_delta(fd_quality *out, const fd_quality *cur, const fd_quality *at);

/* Text form for Redis (doubles %.17g): FD_Q_TEXT_MAX bytes; parse 0 / -1. */
#define FD_Q_TEXT_MAX ((2 * FD_Q_BINS + 80) * 26)
size_t fd_quality_format(const fd_quality *q, char *buf);
int fd_quality_parse(fd_quality *q, const char *s, size_t len, char *errstr, size_t errstr_size);

#endif
