/*
 * lr.h - online logistic regression: an online standardiser in front of
 * FTRL-Proximal (McMahan et al., 2013) with L1 and L2, over dense features.
 *
 * Pure C: no I/O, no clock, no threads. One fd_lr belongs to one thread;
 * shards each train a replica and the writer merges them (fd_lr_merge).
 * docs/CHURN.md is the specification (transform, defaults, merge).
 *
 * Pipeline of one example:
 *   raw feature vector (fd_feat_eval, up to FD_LR_MAX_FEAT values)
 *   -> t_i = sign(r_i) * log2(1 + |r_i|)       (fd_lr_fast_log1p2: heavy tails;
 *                                                NaN and +-inf taken as 0)
 *   -> x_i = (t_i - mean_i) * inv_std_i        (standardiser; refreshed every
 *                                                FD_LR_STD_REFRESH examples)
 *   -> p = sigmoid(w . x + w_bias)
 * fd_lr_learn updates the standardiser sums with t, then one FTRL step.
 */
#ifndef FD_LR_H
#define FD_LR_H

#include <stddef.h>
#include <stdint.h>

#define FD_LR_MAX_FEAT    64 /* dense inputs; the bias is coordinate FD_LR_MAX_FEAT */
#define FD_LR_STD_REFRESH 256

typedef struct fd_lr_params {
    int n;        /* inputs in use, 1..FD_LR_MAX_FEAT */
    double alpha; /* FTRL learning rate (default 0.05) */
    double beta;  /* FTRL smoothing (default 1.0) */
    double l1;    /* default 1.0 (in units of summed gradients) */
    double l2;    /* default 1.0 */
} fd_lr_params;

/* Defaults for n inputs. */
void fd_lr_params_default(fd_lr_params *p, int n);
/* 0, or -1 with a message naming the bad value (n out of range, alpha <= 0,
 * beta < 0, l1 < 0, l2 < 0, any NaN). */
int fd_lr_params_check(const fd_lr_params *p, char *errstr, size_t errstr_size);

typedef struct fd_lr {
    int n;
    /* FTRL per coordinate (0..n-1 inputs, FD_LR_MAX_FEAT the bias) */
    double z[FD_LR_MAX_FEAT + 1];
    double g2[FD_LR_MAX_FEAT + 1]; /* sum of squared gradients ("n" in the paper) */
    double w[FD_LR_MAX_FEAT + 1];  /* derived from z, g2: kept current by every step */
    /* standardiser: sums over the transformed inputs of learned examples */
    double s_n;
    double s_sum[FD_LR_MAX_FEAT], s_sq[FD_LR_MAX_FEAT];
    double mean[FD_LR_MAX_FEAT], inv_std[FD_LR_MAX_FEAT]; /* derived */
    uint64_t since_refresh;       /* examples since mean/inv_std were refreshed */
    uint64_t examples;            /* examples learned, ever */
    uint64_t version;             /* bumped by every merge that changed the model */
    float sg[FD_LR_MAX_FEAT + 1]; /* derived: sqrt(g2) in float, as the schedule uses it */
} fd_lr;

void fd_lr_init(fd_lr *m, const fd_lr_params *p);

/* raw -> x (the standardised inputs the weights apply to). */
void fd_lr_transform(const fd_lr *m, const double *raw, double *x);
/* sign(v) * log2(1 + |v|) in float arithmetic, no libm call: relative
 * error < 1e-5 for 2^-126 <= |v| <= 2^126, exact at 2^k - 1, monotone;
 * +-0 (the sign kept) for |v| < 2^-126 (absolute error < 2^-125);
 * saturates at +-126 for finite |v| > 2^126; +-inf and NaN are returned
 * as they are (fd_lr_transform takes those inputs as 0). */
double fd_lr_fast_log1p2(double v);

/* Probability of label 1 for raw inputs (transform + dot + sigmoid). */
double fd_lr_predict(const fd_lr *m, const double *raw);

/* Learn one example: returns the prediction made before the update
 * (prequential). label 0 or 1. */
double fd_lr_learn(fd_lr *m, const fd_lr_params *p, const double *raw, int label);

/* The contributions w_i * x_i of raw, largest first: idx[k], contrib[k]
 * for k < k_max (k_max <= 8). Returns how many were written (inputs with a
 * zero weight are left out). */
int fd_lr_top_reasons(const fd_lr *m, const double *raw, int k_max, int *idx, double *contrib);

/* Merge replicas that each started as a copy of base and learned since:
 * z and g2 are averaged weighted by the examples each learned since base
 * (examples - base->examples); the standardiser sums and the example
 * count add up (base + sum of the deltas); w, mean and inv_std are derived
 * again; version = base->version + 1 when any replica learned, else base
 * is copied. out may alias base. Replicas with no new example take no
 * weight. */
void fd_lr_merge(fd_lr *out, const fd_lr *base, const fd_lr *const *replicas, int n_replicas,
                 const fd_lr_params *p);

/* Carry on from a new merged model: *m = merged + (m - at_handoff), for
 * the state learned after the hand-off (z, g2, sums, examples); derived
 * values refreshed. When m learned nothing since at_handoff, *m = merged
 * exactly. */
void fd_lr_rebase(fd_lr *m, const fd_lr *at_handoff, const fd_lr *merged, const fd_lr_params *p);

/* Text form for Redis: "lr1 n examples version since s_n z... g2... sum... sq..."
 * with doubles as %.17g (round trip exact). fd_lr_format returns the
 * length written (needs FD_LR_TEXT_MAX bytes, NUL added). fd_lr_parse: 0, or
 * -1 with errstr naming the token that is wrong (m untouched then); a
 * model with another n is refused. */
#define FD_LR_TEXT_MAX (64 + (4 * FD_LR_MAX_FEAT + 2 * (FD_LR_MAX_FEAT + 1) + 8) * 26)
size_t fd_lr_format(const fd_lr *m, char *buf);
int fd_lr_parse(fd_lr *m, const fd_lr_params *p, const char *s, size_t len, char *errstr,
                size_t errstr_size);

#endif
