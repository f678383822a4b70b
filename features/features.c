/*
 * features.c - see features.h and docs/FEATURES.md.
 *
 * Hot path: fd_feat_update is called for every accepted event. It computes
 * at most one 2^-x per half-life (none when the event is at the user's
 * reference time) and touches only the user's own struct.
 */
#include "features/features.h"
#include "features/fmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const stage_names[FD_STAGE__COUNT] = {"none", "visit", "click", "cart",
                                                         "purchase"};

const char *fd_stage_name(int stage)
{
    return stage >= 0 && stage < FD_STAGE__COUNT ? stage_names[stage] : "unknown";
}

/* 2^(-j/64), j = 0..63 (correctly rounded constants). */
static const double exp2_neg64[64] = {
    0x1.0000000000000p+0, 0x1.fa7c1819e90d8p-1, 0x1.f50765b6e4540p-1, 0x1.efa1bee615a27p-1,
    0x1.ea4afa2a490dap-1, 0x1.e502ee78b3ff6p-1, 0x1.dfc97337b9b5fp-1, 0x1.da9e603db3285p-1,
    0x1.d5818dcfba487p-1, 0x1.d072d4a07897cp-1, 0x1.cb720dcef9069p-1, 0x1.c67f12e57d14bp-1,
    0x1.c199bdd85529cp-1, 0x1.bcc1e904bc1d2p-1, 0x1.b7f76f2fb5e47p-1, 0x1.b33a2b84f15fbp-1,
    0x1.ae89f995ad3adp-1, 0x1.a9e6b5579fdbfp-1, 0x1.a5503b23e255dp-1, 0x1.a0c667b5de565p-1,
    0x1.9c49182a3f090p-1, 0x1.97d829fde4e50p-1, 0x1.93737b0cdc5e5p-1, 0x1.8f1ae99157736p-1,
    0x1.8ace5422aa0dbp-1, 0x1.868d99b4492edp-1, 0x1.82589994cce13p-1, 0x1.7e2f336cf4e62p-1,
    0x1.7a11473eb0187p-1, 0x1.75feb564267c9p-1, 0x1.71f75e8ec5f74p-1, 0x1.6dfb23c651a2fp-1,
    0x1.6a09e667f3bcdp-1, 0x1.6623882552225p-1, 0x1.6247eb03a5585p-1, 0x1.5e76f15ad2148p-1,
    0x1.5ab07dd485429p-1, 0x1.56f4736b527dap-1, 0x1.5342b569d4f82p-1, 0x1.4f9b2769d2ca7p-1,
    0x1.4bfdad5362a27p-1, 0x1.486a2b5c13cd0p-1, 0x1.44e086061892dp-1, 0x1.4160a21f72e2ap-1,
    0x1.3dea64c123422p-1, 0x1.3a7db34e59ff7p-1, 0x1.371a7373aa9cbp-1, 0x1.33c08b26416ffp-1,
    0x1.306fe0a31b715p-1, 0x1.2d285a6e4030bp-1, 0x1.29e9df51fdee1p-1, 0x1.26b4565e27cddp-1,
    0x1.2387a6e756238p-1, 0x1.2063b88628cd6p-1, 0x1.1d4873168b9aap-1, 0x1.1a35beb6fcb75p-1,
    0x1.172b83c7d517bp-1, 0x1.1429aaea92de0p-1, 0x1.11301d0125b51p-1, 0x1.0e3ec32d3d1a2p-1,
    0x1.0b5586cf9890fp-1, 0x1.0874518759bc8p-1, 0x1.059b0d3158574p-1, 0x1.02c9a3e778061p-1,
};

static inline double exp2_neg(double x)
{
    if (!(x > 0)) /* zero, negative or NaN: no decay */
        return 1.0;
    if (x < 0x1p-10) { /* a short gap against a long half-life: the common case */
        double y = x * 0.69314718055994530942; /* y < 6.8e-4: error < y^4/24 < 1e-14 */
        return 1.0 - y * (1.0 - y * (0.5 - y * (1.0 / 6)));
    }
    if (x > 1020)
        return x > 1074 ? 0.0 : ldexp(1.0, -(int)x) * exp2_neg(x - (int)x); /* subnormal */
    int n = (int)x; /* x >= 0: truncation is floor */
    /* 2^-n exactly, built from its exponent bits (no libm call) */
    union {
        uint64_t u;
        double d;
    } scale = {.u = (uint64_t)(1023 - n) << 52};
    double f = (x - n) * 64; /* 2^-(n + (j + r) / 64) = 2^-n * 2^(-j/64) * e^(-r ln2 / 64) */
    int j = (int)f;
    double a = (f - j) * (0.69314718055994530942 / 64); /* 0 <= a < 0.0109 */
    double p = 1.0 - a * (1.0 - a * (1.0 / 2 - a * (1.0 / 6 - a * (1.0 / 24))));
    return scale.d * exp2_neg64[j] * p;
}

double fd_exp2_neg(double x)
{
    return exp2_neg(x);
}

/* Linear counting over 64 bits: -64 ln(z / 64) for z zero bits (z = 0:
 * 64 ln 64, the largest estimate). The 65 values, as glibc's log gives
 * them (hex floats: the same bits; test_features compares them with
 * log() at run time): fd_feat_eval needs two per call, and libm's log was
 * ~6 % of the core's instructions with both models (callgrind). */
static const double sketch_estimate[65] = {
    0x1.0a2b23f3bab73p+8,
    0x1.0a2b23f3bab73p+8,
    0x1.bb9d3beb8c86bp+7,
    0x1.87b6f4120d562p+7,
    0x1.62e42fefa39efp+7,
    0x1.465438280904dp+7,
    0x1.2efde816246e6p+7,
    0x1.1b42b275e29bbp+7,
    0x1.0a2b23f3bab73p+7,
    0x1.f62f40794a7b8p+6,
    0x1.db365858403a3p+6,
    0x1.c2d018df03f36p+6,
    0x1.ac89b834770d4p+6,
    0x1.980c0a68b952cp+6,
    0x1.85134cf3f367fp+6,
    0x1.7369c8a541d9p+6,
    0x1.62e42fefa39efp+6,
    0x1.535f178f9aedap+6,
    0x1.44bd288178ac1p+6,
    0x1.36e5cf0e54775p+6,
    0x1.29c440606e6abp+6,
    0x1.1d46bd40f506cp+6,
    0x1.115e00e73223fp+6,
    0x1.05fcd014b45eep+6,
    0x1.f62f40794a7b8p+5,
    0x1.e148a1a2726cep+5,
    0x1.cd33e4e1cf068p+5,
    0x1.b9e1319cf495cp+5,
    0x1.a74269f84330ep+5,
    0x1.954aecaa5632p+5,
    0x1.83ef615ae013p+5,
    0x1.73258d798ae33p+5,
    0x1.62e42fefa39efp+5,
    0x1.5322e26867857p+5,
    0x1.43d9ff2f923c5p+5,
    0x1.35028ad9d8c86p+5,
    0x1.269621134db92p+5,
    0x1.188ee40f23ca6p+5,
    0x1.0ae76e2d054fap+5,
    0x1.fb358af7a4884p+4,
    0x1.e148a1a2726cep+4,
    0x1.c7ff9c74554c9p+4,
    0x1.af5295248cddp+4,
    0x1.973a3431356aep+4,
    0x1.7fafa3bd8151cp+4,
    0x1.68ac83e9c6a14p+4,
    0x1.522ae0738a3d8p+4,
    0x1.3c25277333184p+4,
    0x1.269621134db92p+4,
    0x1.1178e8227e47cp+4,
    0x1.f991c6cb3b379p+3,
    0x1.d1037f2655e7bp+3,
    0x1.a93ed3c8ad9e3p+3,
    0x1.823c16551a3c2p+3,
    0x1.5bf406b543db2p+3,
    0x1.365fcb0159016p+3,
    0x1.1178e8227e47cp+3,
    0x1.da727638446a2p+2,
    0x1.9335e5d594989p+2,
    0x1.4d3115d207eacp+2,
    0x1.08598b59e3a07p+2,
    0x1.894aa149fb343p+1,
    0x1.0415d89e74444p+1,
    0x1.0205658935847p+0,
    -0x0p+0,
};

double fd_sketch_estimate(uint64_t bits)
{
    return sketch_estimate[64 - __builtin_popcountll(bits)];
}

void fd_duration_name(int64_t ms, char *buf, size_t n)
{
    static const struct {
        const char *u;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms > 0 && ms % units[i].ms == 0) {
            snprintf(buf, n, "%lld%s", (long long)(ms / units[i].ms), units[i].u);
            return;
        }
    snprintf(buf, n, "%lldms", (long long)ms);
}

int fd_feat_params_init(fd_feat_params *p, const int64_t *hl, int n, int64_t gap_ms, char *errstr,
                        size_t errstr_size)
{
    memset(p, 0, sizeof *p);
    if (n < 1 || n > FD_FEAT_MAX_HL) {
        snprintf(errstr, errstr_size, "need 1 to %d half-lives, got %d", FD_FEAT_MAX_HL, n);
        return -1;
    }
    if (gap_ms <= 0) {
        snprintf(errstr, errstr_size, "session gap must be positive");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (hl[i] <= 0) {
            snprintf(errstr, errstr_size, "half-life %d is not positive", i + 1);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (hl[j] == hl[i]) {
                snprintf(errstr, errstr_size, "half-life %d repeats half-life %d", i + 1, j + 1);
                return -1;
            }
        p->hl_ms[i] = hl[i];
        p->inv_hl[i] = 1.0 / (double)hl[i];
        fd_duration_name(hl[i], p->hl_name[i], sizeof p->hl_name[i]);
        if (hl[i] > hl[p->longest])
            p->longest = i;
    }
    p->n_hl = n;
    p->gap_ms = gap_ms;
    return 0;
}

/* Nearest integer (ties to even) of |v| < 2^51, exactly, in the default
 * rounding mode: adding 1.5 * 2^52 pushes the fraction out of the mantissa. */
static inline double rnd(double v)
{
    return (v + 0x1.8p52) - 0x1.8p52;
}

/* A 64-bit hash of a NUL-terminated string in one of fd_event's id
 * buffers, eight bytes at a time: the buffer must have 7 readable bytes
 * after the NUL, which holds for every string field of fd_event (fields
 * follow it). Bytes after the NUL are masked off, so the result depends
 * only on the string. */
static inline uint64_t word_hash(const char *s)
{
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (;;) {
        uint64_t w;
        memcpy(&w, s, 8);
        uint64_t z = (w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull;
        if (z) {
            int nb = __builtin_ctzll(z) >> 3; /* bytes before the NUL */
            w = nb ? w & (~0ull >> (64 - 8 * nb)) : 0;
            h = (h ^ w ^ (uint64_t)nb) * 0xC2B2AE3D27D4EB4Full;
            h ^= h >> 31;
            h *= 0x165667B19E3779F9ull;
            return h ^ (h >> 29);
        }
        h = (h ^ w) * 0xC2B2AE3D27D4EB4Full;
        h ^= h >> 31;
        s += 8;
    }
}

uint64_t fd_str_hash(const char *s)
{
    return word_hash(s);
}

static inline uint64_t sketch_bit(const char *s)
{
    return 1ull << (word_hash(s) >> 58);
}

/* A decayed value after an add: at most FD_DC_MAX (*sat set when capped). */
static inline double dc_cap(double v, bool *sat)
{
    if (v > FD_DC_MAX) {
        *sat = true;
        return FD_DC_MAX;
    }
    return v;
}

bool fd_feat_update(const fd_feat_params *p, fd_feat *f, const fd_event *ev, fd_sess_step *step)
{
    const int64_t ts = ev->ts_ms;
    const int nh = p->n_hl;
    double fac[FD_FEAT_MAX_HL] = {1.0, 1.0, 1.0, 1.0}; /* contribution factors */
    bool unit = true;                                  /* every factor is 1 */

    if (f->last_ts == 0) {
        f->last_ts = f->first_ts = ts;
    } else if (ts != f->last_ts) {
        double dt = (double)(ts > f->last_ts ? ts - f->last_ts : f->last_ts - ts);
        double d[FD_FEAT_MAX_HL]; /* unused half-lives: inv_hl 0, factor 1 */
        for (int h = 0; h < FD_FEAT_MAX_HL; h++)
            d[h] = exp2_neg(dt * p->inv_hl[h]);
        if (ts > f->last_ts) { /* move the reference: decay everything */
            for (int k = 0; k < FD_DC__COUNT; k++)
                for (int h = 0; h < FD_FEAT_MAX_HL; h++)
                    f->dc[k][h] = rnd(f->dc[k][h] * d[h]);
            f->abandoned = rnd(f->abandoned * d[p->longest]);
            f->carted = rnd(f->carted * d[p->longest]);
            f->last_ts = ts;
        } else { /* out of order: the contribution is decayed instead */
            for (int h = 0; h < FD_FEAT_MAX_HL; h++)
                fac[h] = d[h];
            unit = false;
        }
    }
    if (ts < f->first_ts)
        f->first_ts = ts;

    /* counters: saturating (a validated event adds at most 2e11 cents, so
     * only 4.6e7 events at input.max_price's limit reach INT64_MAX) */
    bool sat = false;
    const int type = ev->type;
    f->count[type] = fd_sat_add(f->count[type], 1, &sat);
    int64_t rc = fd_event_revenue_cents(ev);
    step->revenue_cents = rc;
    f->revenue_cents = fd_sat_add(f->revenue_cents, rc, &sat);
    if (type == FD_EV_CART && ts > f->last_cart_ts)
        f->last_cart_ts = ts;
    if (type == FD_EV_PURCHASE && ts > f->last_purchase_ts)
        f->last_purchase_ts = ts;
    if (ev->has_item)
        f->items_sk |= sketch_bit(ev->item_id);
    if (ev->has_category)
        f->cats_sk |= sketch_bit(ev->category);
    /* revenue in millionths of a unit: <= 2e15 < FD_DC_MAX for a validated
     * event, capped for any other */
    const double rv =
        rc < (int64_t)(FD_DC_MAX / (FD_FIX / 100)) ? (double)rc * (FD_FIX / 100) : FD_DC_MAX;
    if (unit) {
        for (int h = 0; h < nh; h++) {
            f->dc[type][h] = dc_cap(f->dc[type][h] + FD_FIX, &sat);
            f->dc[FD_DC_REVENUE][h] = dc_cap(f->dc[FD_DC_REVENUE][h] + rv, &sat);
        }
    } else {
        for (int h = 0; h < nh; h++) {
            f->dc[type][h] = dc_cap(f->dc[type][h] + rnd(FD_FIX * fac[h]), &sat);
            f->dc[FD_DC_REVENUE][h] = dc_cap(f->dc[FD_DC_REVENUE][h] + rnd(rv * fac[h]), &sat);
        }
    }

    /* session */
    uint64_t sid = 0;
    if (ev->has_session) {
        sid = word_hash(ev->session_id);
        if (sid == 0)
            sid = 1;
    }
    const int ev_stage = type == FD_EV_CLICK  ? FD_STAGE_CLICK
                         : type == FD_EV_CART ? FD_STAGE_CART
                                              : FD_STAGE_PURCHASE;
    fd_sess_kind kind;
    if (f->sess_stage == FD_STAGE_NONE) {
        kind = FD_SESS_NEW;
    } else if (ts < f->sess_start) {
        bool same = sid == 0 || f->sess_id == 0 || sid == f->sess_id;
        kind = same && ts > f->sess_start - p->gap_ms ? FD_SESS_JOIN : FD_SESS_STALE;
        if (kind == FD_SESS_JOIN)
            f->sess_start = ts;
    } else if ((sid && f->sess_id && sid != f->sess_id) || ts >= f->sess_last + p->gap_ms) {
        kind = FD_SESS_NEW;
    } else {
        kind = FD_SESS_JOIN;
        if (ts > f->sess_last)
            f->sess_last = ts;
    }
    step->kind = kind;
    if (kind == FD_SESS_STALE) {
        step->from = step->to = f->sess_stage;
        return sat;
    }
    if (kind == FD_SESS_NEW) {
        if (f->sess_stage != FD_STAGE_NONE) { /* the previous session ends */
            if (f->sess_stage >= FD_STAGE_CART) {
                double e = (double)(f->last_ts - f->sess_last) * p->inv_hl[p->longest];
                double c = rnd(FD_FIX * fd_exp2_neg(e));
                f->carted = dc_cap(f->carted + c, &sat);
                if (f->sess_stage == FD_STAGE_CART)
                    f->abandoned = dc_cap(f->abandoned + c, &sat);
            }
            if (ts > f->sess_last) /* both in 0..FD_TS_MAX_MS: no overflow */
                f->gap_sum_ms = fd_sat_add(f->gap_sum_ms, ts - f->sess_last, &sat);
        }
        f->sessions = fd_sat_add(f->sessions, 1, &sat);
        for (int h = 0; h < nh; h++)
            f->dc[FD_DC_SESSIONS][h] =
                dc_cap(f->dc[FD_DC_SESSIONS][h] + (unit ? FD_FIX : rnd(FD_FIX * fac[h])), &sat);
        f->sess_id = sid;
        f->sess_start = f->sess_last = ts;
        f->sess_stage = FD_STAGE_NONE;
        step->from = FD_STAGE_NONE;
    } else {
        if (f->sess_id == 0)
            f->sess_id = sid;
        step->from = f->sess_stage;
    }
    int to = f->sess_stage > ev_stage ? f->sess_stage : ev_stage;
    f->sess_stage = to;
    step->to = to;
    return sat;
}

/* ---- the vector ---------------------------------------------------------- */

static const char *const dc_names[FD_DC__COUNT] = {"click", "cart", "purchase", "revenue",
                                                   "sessions"};
static const char *const single_names[] = {"revenue_total",       "aov",
                                           "recency_s",           "recency_cart_s",
                                           "recency_purchase_s",  "session_gap_mean_s",
                                           "cart_abandonment",    "items_distinct",
                                           "categories_distinct", "tenure_s",
                                           "session_stage",       "clicks_total",
                                           "carts_total",         "purchases_total",
                                           "sessions_total"};
#define N_SINGLE ((int)(sizeof single_names / sizeof single_names[0]))

int fd_feat_count(const fd_feat_params *p)
{
    return FD_DC__COUNT * p->n_hl + N_SINGLE;
}

const char *fd_feat_name(const fd_feat_params *p, int i, char *buf, size_t n)
{
    if (i < 0 || i >= fd_feat_count(p))
        return NULL;
    if (i < FD_DC__COUNT * p->n_hl) {
        snprintf(buf, n, "%s_%s", dc_names[i % FD_DC__COUNT], p->hl_name[i / FD_DC__COUNT]);
        return buf;
    }
    snprintf(buf, n, "%s", single_names[i - FD_DC__COUNT * p->n_hl]);
    return buf;
}

static double since_s(int64_t now, int64_t ts)
{
    return ts ? (double)(now - ts) / 1000.0 : -1.0;
}

void fd_feat_eval(const fd_feat_params *p, const fd_feat *f, int64_t now_ms, double *out)
{
    int64_t t = now_ms > f->last_ts ? now_ms : f->last_ts;
    int i = 0;
    for (int h = 0; h < p->n_hl; h++) {
        double d = fd_exp2_neg((double)(t - f->last_ts) / (double)p->hl_ms[h]);
        for (int k = 0; k < FD_DC__COUNT; k++)
            out[i++] = f->dc[k][h] / FD_FIX * d;
    }
    int64_t purchases = f->count[FD_EV_PURCHASE];
    out[i++] = (double)f->revenue_cents / 100.0;
    out[i++] = purchases ? (double)f->revenue_cents / 100.0 / (double)purchases : 0.0;
    out[i++] = f->last_ts ? (double)(t - f->last_ts) / 1000.0 : -1.0;
    out[i++] = since_s(t, f->last_cart_ts);
    out[i++] = since_s(t, f->last_purchase_ts);
    out[i++] = f->sessions > 1 ? (double)f->gap_sum_ms / 1000.0 / (double)(f->sessions - 1) : 0.0;
    out[i++] = f->carted ? f->abandoned / f->carted : 0.0;
    out[i++] = f->items_sk ? fd_sketch_estimate(f->items_sk) : 0.0;
    out[i++] = f->cats_sk ? fd_sketch_estimate(f->cats_sk) : 0.0;
    out[i++] = f->first_ts ? (double)(t - f->first_ts) / 1000.0 : 0.0;
    out[i++] = f->sess_stage != FD_STAGE_NONE && t < f->sess_last + p->gap_ms ? f->sess_stage : 0;
    out[i++] = (double)f->count[FD_EV_CLICK];
    out[i++] = (double)f->count[FD_EV_CART];
    out[i++] = (double)purchases;
    out[i++] = (double)f->sessions;
}

/* ---- persistence ----------------------------------------------------------- */

enum {
    FF_CLICK = 0,
    FF_CART,
    FF_PURCHASE,
    FF_FIRST_TS,
    FF_LAST_TS,
    FF_REVENUE_CENTS,
    FF_LAST_CART_TS,
    FF_LAST_PURCHASE_TS,
    FF_SESSIONS,
    FF_GAP_SUM_MS,
    FF_ITEMS_SK,
    FF_CATS_SK,
    FF_SESS_ID,
    FF_SESS_START,
    FF_SESS_LAST,
    FF_SESS_STAGE,
    FF_ABANDONED,
    FF_CARTED,
    FF__FIXED
};
static const char *const field_names[FF__FIXED] = {"click",           "cart",
                                                   "purchase",        "first_ts",
                                                   "last_ts",         "revenue_cents",
                                                   "last_cart_ts",    "last_purchase_ts",
                                                   "sessions",        "session_gap_sum_ms",
                                                   "items_sketch",    "categories_sketch",
                                                   "session_id_hash", "session_start",
                                                   "session_last",    "session_stage",
                                                   "abandoned",       "carted"};

int fd_feat_field_count(const fd_feat_params *p)
{
    return FF__FIXED + FD_DC__COUNT * p->n_hl;
}

const char *fd_feat_field_name(const fd_feat_params *p, int i, char *buf, size_t n)
{
    if (i < 0 || i >= fd_feat_field_count(p))
        return NULL;
    if (i < FF__FIXED)
        return field_names[i];
    i -= FF__FIXED;
    snprintf(buf, n, "%s_%s", dc_names[i % FD_DC__COUNT], p->hl_name[i / FD_DC__COUNT]);
    return buf;
}

static int64_t *int_field(fd_feat *f, int i)
{
    switch (i) {
    case FF_CLICK:
        return &f->count[FD_EV_CLICK];
    case FF_CART:
        return &f->count[FD_EV_CART];
    case FF_PURCHASE:
        return &f->count[FD_EV_PURCHASE];
    case FF_FIRST_TS:
        return &f->first_ts;
    case FF_LAST_TS:
        return &f->last_ts;
    case FF_REVENUE_CENTS:
        return &f->revenue_cents;
    case FF_LAST_CART_TS:
        return &f->last_cart_ts;
    case FF_LAST_PURCHASE_TS:
        return &f->last_purchase_ts;
    case FF_SESSIONS:
        return &f->sessions;
    case FF_GAP_SUM_MS:
        return &f->gap_sum_ms;
    case FF_SESS_START:
        return &f->sess_start;
    case FF_SESS_LAST:
        return &f->sess_last;
    default:
        return NULL;
    }
}

static double *fix_field(fd_feat *f, int i)
{
    if (i == FF_ABANDONED)
        return &f->abandoned;
    if (i == FF_CARTED)
        return &f->carted;
    if (i >= FF__FIXED) {
        i -= FF__FIXED;
        return &f->dc[i % FD_DC__COUNT][i / FD_DC__COUNT];
    }
    return NULL;
}

/* A fixed-point value (integral millionths in a double) as "-12.345678". */
static char *put_fix(char *e, double fv)
{
    /* funneld's values stay within +-FD_DC_MAX; clamp anyway, so no double
     * out of int64's range (or NaN) is ever converted */
    if (!(fv >= -FD_DC_MAX))
        fv = fv < 0 ? -FD_DC_MAX : 0;
    else if (fv > FD_DC_MAX)
        fv = FD_DC_MAX;
    int64_t x = (int64_t)fv;
    if (x < 0) {
        *e++ = '-';
        x = -x;
    }
    e = fd_fmt_u64(e, (uint64_t)(x / FD_FIX));
    *e++ = '.';
    unsigned frac = (unsigned)(x % FD_FIX); /* six digits, zero padded */
    for (int k = 4; k >= 0; k -= 2) {
        unsigned d = (frac % 100) * 2;
        frac /= 100;
        e[k] = fd_fmt_digit_pairs[d];
        e[k + 1] = fd_fmt_digit_pairs[d + 1];
    }
    return e + 6;
}

/* Unsigned decimal of s[0..len); stops at the first non-digit; saturates
 * at UINT64_MAX. */
static uint64_t parse_u64(const char *s, size_t len, size_t *pos)
{
    uint64_t v = 0;
    while (*pos < len && s[*pos] >= '0' && s[*pos] <= '9') {
        uint64_t d = (uint64_t)(s[(*pos)++] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    return v;
}

void fd_feat_field_parse(const fd_feat_params *p, fd_feat *f, int i, const char *s, size_t len)
{
    (void)p;
    size_t pos = 0;
    bool neg = len > 0 && s[0] == '-';
    if (neg)
        pos++;
    int64_t *v;
    double *fv;
    if ((v = int_field(f, i))) {
        uint64_t u = parse_u64(s, len, &pos);
        if (neg)
            *v = u > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)u;
        else
            *v = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    } else if ((fv = fix_field(f, i))) {
        uint64_t whole = parse_u64(s, len, &pos);
        int64_t frac = 0, scale = FD_FIX;
        if (pos < len && s[pos] == '.') {
            pos++;
            while (pos < len && s[pos] >= '0' && s[pos] <= '9' && scale > 1) {
                scale /= 10;
                frac += (s[pos++] - '0') * scale;
            }
        }
        /* beyond exact doubles: not a value funneld wrote (and whole * FD_FIX
         * could overflow) */
        int64_t x = whole >= (1ULL << 51) / FD_FIX ? 1LL << 51 : (int64_t)whole * FD_FIX + frac;
        if (x > (1LL << 51))
            x = 1LL << 51;
        *fv = (double)(neg ? -x : x);
    } else if (i == FF_ITEMS_SK) {
        f->items_sk = parse_u64(s, len, &pos);
    } else if (i == FF_CATS_SK) {
        f->cats_sk = parse_u64(s, len, &pos);
    } else if (i == FF_SESS_ID) {
        f->sess_id = parse_u64(s, len, &pos);
    } else if (i == FF_SESS_STAGE) {
        uint64_t u = parse_u64(s, len, &pos);
        f->sess_stage = u < FD_STAGE__COUNT ? (int32_t)u : FD_STAGE_NONE;
    }
}

/* ---- the user record ---------------------------------------------------- */

size_t fd_feat_record_format(const fd_feat_params *p, const fd_feat *f, char *buf)
{
    char *e = buf;
    memcpy(e, "u1 ", 3);
    e += 3;
    for (int i = 0; i < p->n_hl; i++) {
        size_t n = strlen(p->hl_name[i]);
        if (i)
            *e++ = ',';
        memcpy(e, p->hl_name[i], n);
        e += n;
    }
    /* The fields in fd_feat_field_name order, listed here by hand (the
     * parser reaches them through int_field/fix_field; test_record checks
     * that token i parsed alone as field i rebuilds the state). */
    const int64_t ints[] = {f->count[FD_EV_CLICK], f->count[FD_EV_CART], f->count[FD_EV_PURCHASE],
                            f->first_ts,           f->last_ts,           f->revenue_cents,
                            f->last_cart_ts,       f->last_purchase_ts,  f->sessions,
                            f->gap_sum_ms};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        *e++ = ' ';
        e = fd_fmt_i64(e, ints[i]);
    }
    const uint64_t us[] = {f->items_sk, f->cats_sk, f->sess_id};
    for (size_t i = 0; i < 3; i++) {
        *e++ = ' ';
        e = fd_fmt_u64(e, us[i]);
    }
    const int64_t sess[] = {f->sess_start, f->sess_last, f->sess_stage};
    for (size_t i = 0; i < 3; i++) {
        *e++ = ' ';
        e = fd_fmt_i64(e, sess[i]);
    }
    *e++ = ' ';
    e = put_fix(e, f->abandoned);
    *e++ = ' ';
    e = put_fix(e, f->carted);
    for (int h = 0; h < p->n_hl; h++)
        for (int d = 0; d < FD_DC__COUNT; d++) {
            *e++ = ' ';
            e = put_fix(e, f->dc[d][h]);
        }
    *e = '\0';
    return (size_t)(e - buf);
}

/* A field as fd_feat_record_format writes it: -?[0-9]{1,20}(.[0-9]{1,6})? */
static bool field_token_ok(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && s[i] == '-')
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, d++;
    if (d == 0 || d > 20)
        return false;
    if (i < n && s[i] == '.') {
        i++;
        d = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, d++;
        if (d == 0 || d > 6)
            return false;
    }
    return i == n;
}

size_t fd_feat_record_len(const char *s, size_t len)
{
    for (size_t i = 0; i + 3 <= len; i++)
        if (s[i] == ' ' && s[i + 1] == 'm' && s[i + 2] == ' ')
            return i;
    return len;
}

int fd_feat_record_parse(const fd_feat_params *p, fd_feat *f, const char *s, size_t len,
                         unsigned *missing_hl, char *errstr, size_t errstr_size)
{
    len = fd_feat_record_len(s, len); /* the model's suffix is not ours */
    memset(f, 0, sizeof *f);
    if (missing_hl)
        *missing_hl = 0;
    if (len < 3 || memcmp(s, "u1 ", 3) != 0) {
        snprintf(errstr, errstr_size, "not a user record of format u1 (starts \"%.*s\")",
                 (int)(len < 16 ? len : 16), s);
        return -1;
    }
    size_t pos = 3, end = pos;
    while (end < len && s[end] != ' ')
        end++;
    /* The half-lives the record was written with, mapped to p's. */
    int map[FD_FEAT_MAX_HL], m = 0;
    unsigned seen = 0;
    while (pos < end) {
        size_t c = pos;
        while (c < end && s[c] != ',')
            c++;
        if (m == FD_FEAT_MAX_HL || c == pos || c - pos >= sizeof p->hl_name[0]) {
            snprintf(errstr, errstr_size, "bad half-life list \"%.*s\"", (int)(end - 3), s + 3);
            return -1;
        }
        map[m] = -1;
        for (int i = 0; i < p->n_hl; i++)
            if (strlen(p->hl_name[i]) == c - pos && memcmp(p->hl_name[i], s + pos, c - pos) == 0) {
                map[m] = i;
                seen |= 1u << i;
            }
        m++;
        pos = c < end ? c + 1 : c;
    }
    if (m == 0) {
        snprintf(errstr, errstr_size, "no half-lives after \"u1\"");
        return -1;
    }
    int want = FF__FIXED + FD_DC__COUNT * m, got = 0;
    pos = end;
    while (pos < len) {
        if (s[pos] != ' ') {
            snprintf(errstr, errstr_size, "byte %zu: expected a space", pos);
            goto bad;
        }
        size_t b = ++pos;
        while (pos < len && s[pos] != ' ')
            pos++;
        if (got == want) {
            snprintf(errstr, errstr_size, "more than the %d fields of half-lives \"%.*s\"", want,
                     (int)(end - 3), s + 3);
            goto bad;
        }
        if (!field_token_ok(s + b, pos - b)) {
            snprintf(errstr, errstr_size, "field %d (byte %zu): \"%.*s\" is not a number", got + 1,
                     b, (int)(pos - b < 32 ? pos - b : 32), s + b);
            goto bad;
        }
        int i = got++;
        if (i >= FF__FIXED) {
            int k = i - FF__FIXED, hl = map[k / FD_DC__COUNT];
            if (hl < 0)
                continue; /* a half-life no longer in use */
            i = FF__FIXED + hl * FD_DC__COUNT + k % FD_DC__COUNT;
        }
        fd_feat_field_parse(p, f, i, s + b, pos - b);
    }
    if (got != want) {
        snprintf(errstr, errstr_size, "%d fields, expected %d for half-lives \"%.*s\"", got, want,
                 (int)(end - 3), s + 3);
        goto bad;
    }
    static const int time_fields[] = {FF_FIRST_TS,         FF_LAST_TS,    FF_LAST_CART_TS,
                                      FF_LAST_PURCHASE_TS, FF_SESS_START, FF_SESS_LAST};
    for (size_t k = 0; k < sizeof time_fields / sizeof time_fields[0]; k++) {
        int64_t t = *int_field(f, time_fields[k]);
        if (t < 0 || t > FD_TS_MAX_MS) {
            snprintf(errstr, errstr_size, "%s: %lld is not an event time (0..%lld)",
                     field_names[time_fields[k]], (long long)t, FD_TS_MAX_MS);
            goto bad;
        }
    }
    if (missing_hl)
        *missing_hl = ~seen & ((1u << p->n_hl) - 1);
    return 0;
bad:
    memset(f, 0, sizeof *f);
    return -1;
}
