/*
 * quality.c - the churn model's prequential quality as sums (quality.h).
 *
 * Why it is built this way:
 *
 * - Every figure is a sum, so shards keep their own fd_quality and the
 *   writer adds what each learned since the last merge (add_delta): no
 *   figure needs the examples themselves.
 *
 * - AUC from two score histograms of FD_Q_BINS bins over [0, 1]:
 *   sum over bins b of pos[b] * (neg below b + neg[b] / 2) / (P N). A
 *   positive and a negative in the same bin count one half, as ties do in
 *   the exact pairwise AUC; scores closer than 1/FD_Q_BINS are taken as
 *   ties, so the figure is within about 1/FD_Q_BINS of the exact one on
 *   smooth score distributions. Bin b holds p in [b/B, (b+1)/B); p = 1
 *   goes to the last bin.
 *
 * - The window: after an example is added, when the histograms hold more
 *   than FD_Q_WINDOW examples, every bin (and in_window) is halved. Older
 *   examples weigh 1/2, 1/4, ...: AUC follows the recent model without a
 *   ring of examples. Log loss and calibration count all examples ever.
 *
 * - Calibration by decile of the score (p in [d/10, (d+1)/10)): the mean
 *   score cal_p/cal_n beside the observed rate cal_y/cal_n.
 *
 * - Lead times: 32 bins of horizon/32 (a lead of exactly the horizon goes
 *   to the last bin). The median is the midpoint of the first bin where the
 *   cumulative count reaches half the total: exact to horizon/64.
 *   fd_quality_add_lead adds to lead_sum_s and lead_hist only; the
 *   counts (churned, churned_alerted, alerts...) are the churn engine's.
 *
 * - add_delta on windowed histograms: a shard that halved its window since
 *   `at` gives a negative delta in some bins; the result is clamped at 0
 *   per bin and in_window is summed again from the bins, then the window
 *   rule applies (halving until it fits).
 *
 * - p is clamped to [1e-15, 1 - 1e-15] (NaN taken as 1e-15) for the log
 *   loss and the bins; log() is libm's (these are figures for people, not
 *   state that must match bit for bit across machines).
 */
#include "models/quality.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P_MIN 1e-15
#define P_MAX (1.0 - 1e-15)

void fd_quality_init(fd_quality *q)
{
    memset(q, 0, sizeof *q);
}

static double clamp_p(double p)
{
    if (!(p >= P_MIN)) /* NaN too */
        return P_MIN;
    return p > P_MAX ? P_MAX : p;
}

static void halve(fd_quality *q)
{
    for (int b = 0; b < FD_Q_BINS; b++) {
        q->pos[b] *= 0.5;
        q->neg[b] *= 0.5;
    }
    q->in_window *= 0.5;
}

static void window_rule(fd_quality *q)
{
    while (q->in_window > FD_Q_WINDOW)
        halve(q);
}

void fd_quality_add(fd_quality *q, double p, int label)
{
    p = clamp_p(p);
    int b = (int)(p * FD_Q_BINS);
    if (b >= FD_Q_BINS)
        b = FD_Q_BINS - 1;
    int d = (int)(p * 10);
    if (d > 9)
        d = 9;
    if (label) {
        q->pos[b] += 1;
        q->logloss_sum -= log(p);
    } else {
        q->neg[b] += 1;
        q->logloss_sum -= log(1.0 - p);
    }
    q->n += 1;
    q->cal_p[d] += p;
    q->cal_y[d] += label ? 1 : 0;
    q->cal_n[d] += 1;
    q->in_window += 1;
    window_rule(q);
}

double fd_quality_auc(const fd_quality *q)
{
    double P = 0, N = 0;
    for (int b = 0; b < FD_Q_BINS; b++) {
        P += q->pos[b];
        N += q->neg[b];
    }
    if (!(P > 0) || !(N > 0))
        return 0.5;
    double below = 0, s = 0;
    for (int b = 0; b < FD_Q_BINS; b++) {
        s += q->pos[b] * (below + 0.5 * q->neg[b]);
        below += q->neg[b];
    }
    return s / (P * N);
}

double fd_quality_logloss(const fd_quality *q)
{
    return q->n > 0 ? q->logloss_sum / q->n : 0.0;
}

double fd_quality_precision(const fd_quality *q)
{
    return q->alerts_resolved > 0 ? q->alerts_true / q->alerts_resolved : 0.0;
}

double fd_quality_recall(const fd_quality *q)
{
    return q->churned > 0 ? q->churned_alerted / q->churned : 0.0;
}

void fd_quality_add_lead(fd_quality *q, double lead_s, double horizon_s)
{
    int b = 0;
    if (horizon_s > 0 && lead_s > 0) {
        double x = lead_s / (horizon_s / 32.0);
        b = x >= 31 ? 31 : (int)x;
    }
    q->lead_hist[b] += 1;
    q->lead_sum_s += lead_s > 0 ? lead_s : 0;
}

double fd_quality_median_lead_s(const fd_quality *q, double horizon_s)
{
    double total = 0;
    for (int b = 0; b < 32; b++)
        total += q->lead_hist[b];
    if (!(total > 0))
        return 0.0;
    double cum = 0;
    for (int b = 0; b < 32; b++) {
        cum += q->lead_hist[b];
        if (cum >= 0.5 * total)
            return (b + 0.5) * (horizon_s / 32.0);
    }
    return 31.5 * (horizon_s / 32.0); /* not reached */
}

static void add_arr(double *out, const double *cur, const double *at, int n)
{
    for (int i = 0; i < n; i++)
        out[i] += cur[i] - at[i];
}

void fd_quality_add_delta(fd_quality *out, const fd_quality *cur, const fd_quality *at)
{
    add_arr(out->pos, cur->pos, at->pos, FD_Q_BINS);
    add_arr(out->neg, cur->neg, at->neg, FD_Q_BINS);
    double w = 0;
    for (int b = 0; b < FD_Q_BINS; b++) {
        if (out->pos[b] < 0)
            out->pos[b] = 0;
        if (out->neg[b] < 0)
            out->neg[b] = 0;
        w += out->pos[b] + out->neg[b];
    }
    out->in_window = w;
    out->logloss_sum += cur->logloss_sum - at->logloss_sum;
    out->n += cur->n - at->n;
    add_arr(out->cal_p, cur->cal_p, at->cal_p, 10);
    add_arr(out->cal_y, cur->cal_y, at->cal_y, 10);
    add_arr(out->cal_n, cur->cal_n, at->cal_n, 10);
    out->alerts += cur->alerts - at->alerts;
    out->alerts_resolved += cur->alerts_resolved - at->alerts_resolved;
    out->alerts_true += cur->alerts_true - at->alerts_true;
    out->churned += cur->churned - at->churned;
    out->churned_alerted += cur->churned_alerted - at->churned_alerted;
    out->lead_sum_s += cur->lead_sum_s - at->lead_sum_s;
    add_arr(out->lead_hist, cur->lead_hist, at->lead_hist, 32);
    out->reactivated += cur->reactivated - at->reactivated;
    window_rule(out);
}

/* ---- text form: "q1" then every double in struct order ----------------- */

/* The fields in text order: pointer offsets and counts. */
typedef struct q_field {
    const char *name;
    size_t off; /* offsetof */
    int count;
} q_field;

#define QF(f, c)                                                                                   \
    {                                                                                              \
#f, offsetof(fd_quality, f), c                                                             \
    }
static const q_field q_fields[] = {
    QF(pos, FD_Q_BINS),     QF(neg, FD_Q_BINS), QF(in_window, 1),
    QF(logloss_sum, 1),     QF(n, 1),           QF(cal_p, 10),
    QF(cal_y, 10),          QF(cal_n, 10),      QF(alerts, 1),
    QF(alerts_resolved, 1), QF(alerts_true, 1), QF(churned, 1),
    QF(churned_alerted, 1), QF(lead_sum_s, 1),  QF(lead_hist, 32),
    QF(reactivated, 1),
};
#define N_FIELDS (sizeof q_fields / sizeof q_fields[0])

size_t fd_quality_format(const fd_quality *q, char *buf)
{
    size_t off = (size_t)sprintf(buf, "q1");
    for (size_t f = 0; f < N_FIELDS; f++) {
        const double *v = (const double *)((const char *)q + q_fields[f].off);
        for (int i = 0; i < q_fields[f].count; i++)
            off += (size_t)sprintf(buf + off, " %.17g", v[i]);
    }
    return off;
}

/* The next space-separated token of [*p, end) into tok; its length, 0 when
 * none is left, or sizeof tok (too long). */
static size_t next_tok(const char **p, const char *end, char *tok, size_t size)
{
    while (*p < end && **p == ' ')
        (*p)++;
    const char *b = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    size_t tl = (size_t)(*p - b);
    if (tl >= size)
        return size;
    memcpy(tok, b, tl);
    tok[tl] = '\0';
    return tl;
}

int fd_quality_parse(fd_quality *q, const char *s, size_t len, char *errstr, size_t errstr_size)
{
    const char *p = s, *end = s + len;
    char tok[48];
    size_t tl = next_tok(&p, end, tok, sizeof tok);
    if (tl == 0 || tl == sizeof tok || strcmp(tok, "q1") != 0) {
        snprintf(errstr, errstr_size, "quality: token 1 (magic) is not 'q1'");
        return -1;
    }
    int no = 1;
    fd_quality r;
    memset(&r, 0, sizeof r);
    for (size_t f = 0; f < N_FIELDS; f++) {
        double *dst = (double *)((char *)&r + q_fields[f].off);
        for (int i = 0; i < q_fields[f].count; i++) {
            char name[40];
            if (q_fields[f].count > 1)
                snprintf(name, sizeof name, "%s[%d]", q_fields[f].name, i);
            else
                snprintf(name, sizeof name, "%s", q_fields[f].name);
            no++;
            tl = next_tok(&p, end, tok, sizeof tok);
            if (tl == 0) {
                snprintf(errstr, errstr_size, "quality: token %d (%s) is missing", no, name);
                return -1;
            }
            if (tl == sizeof tok) {
                snprintf(errstr, errstr_size, "quality: token %d (%s) is too long", no, name);
                return -1;
            }
            char *e;
            double v = strtod(tok, &e);
            if (*e || !isfinite(v) || v < 0) {
                snprintf(errstr, errstr_size,
                         "quality: token %d (%s) '%s' is not a finite number >= 0", no, name, tok);
                return -1;
            }
            dst[i] = v;
        }
    }
    if (next_tok(&p, end, tok, sizeof tok) != 0) {
        snprintf(errstr, errstr_size, "quality: token %d is one too many", no + 1);
        return -1;
    }
    *q = r;
    return 0;
}
