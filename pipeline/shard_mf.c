/*
 * shard_mf.c - the recommendation model inside a shard (docs/RECS.md): the
 * shard's replica of the item factors, learning every event that names an
 * item (the user's factors live in its fd_user, bfloat16), the prequential
 * check before learning, the hand-over of the replica's change at each
 * marker and the take-over of the merged rows (model_pub.h), and the
 * users' cached recommendations in Redis.
 *
 * Why a replica per shard: the per-event path then takes no lock and
 * shares no cache line with another shard (TSan-clean without atomics),
 * and what a shard learned in an epoch is exactly the change of its
 * replica between two markers, so the merged model the engine writes with
 * an epoch's offsets holds exactly the positives before them: a crash
 * neither loses nor repeats one. The price is memory (a replica is
 * n_items x k floats per shard: 12.8 MB for 100,000 items) and that a
 * shard sees the others' learning one merge late.
 */
#include <cblas.h>
#include <inttypes.h>
#include <math.h>

#include "features/fmt.h"
#include "pipeline/model_pub.h"
#include "pipeline/shard_int.h"

#define EVAL_N 10 /* recall@10, NDCG@10 */

int smf_new(fd_shard *s, char *errstr, size_t errstr_size)
{
    const fd_mf_params *p = s->env->mf;
    if (!p)
        return 0;
    s->mf = malloc(sizeof *s->mf);
    if (!s->mf || fd_mf_items_init(s->mf, p) != 0) {
        free(s->mf);
        s->mf = NULL;
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    /* start from the merged model (as loaded, or as merged so far) */
    fd_mf_pub *pub = s->env->mfpub;
    int rc = 0;
    pthread_mutex_lock(&pub->mu);
    const fd_mf_items *g = &pub->g;
    for (uint32_t i = 0; i < g->n && rc == 0; i++) {
        int32_t r = fd_mf_item(s->mf, p, g->ids[i], strlen(g->ids[i]), true);
        if (r < 0)
            rc = -1;
        else
            fd_mf_set_row(s->mf, p, r, g->v + (size_t)i * (size_t)g->k, g->pop[i], g->pop_t0);
    }
    for (uint32_t j = 0; j < g->ring_n && rc == 0; j++) { /* the sampler, as merged */
        const char *id = g->ids[fd_mf_ring_at(g, j)];
        int32_t r = fd_mf_item(s->mf, p, id, strlen(id), false);
        if (r >= 0)
            fd_mf_ring_push(s->mf, (uint32_t)r);
    }
    s->mf_seen = pub->merges;
    pthread_mutex_unlock(&pub->mu);
    if (rc != 0 || fd_mf_track(s->mf, true) != 0) {
        snprintf(errstr, errstr_size, "out of memory copying the item factors");
        return -1;
    }
    return 0;
}

void smf_free(fd_shard *s)
{
    if (s->mf)
        fd_mf_items_free(s->mf);
    free(s->mf);
    s->mf = NULL;
    free(s->mf_scratch);
    s->mf_scratch = NULL;
    free(s->recs_buf);
    s->recs_buf = NULL;
    s->recs_cap = 0;
    free(s->mf_res);
    free(s->mf_bu);
    free(s->mf_bs);
    s->mf_res = NULL;
    s->mf_bu = s->mf_bs = NULL;
    s->mf_bs_cap = 0;
    s->mf_res_n = s->mf_res_next = 0;
}

/* event time in minutes, as the user state keeps it */
static int32_t minutes(int64_t ts)
{
    int64_t m = ts / 60000;
    return m < 0 ? 0 : m > INT32_MAX ? INT32_MAX : (int32_t)m;
}

static void user_vec(const fd_shard *s, const fd_user *u, float *v)
{
    const fd_mf_params *p = s->env->mf;
    if (u->mf.has)
        fd_mf_bf16_unpack(u->mf.v, p->k, v);
    else
        fd_mf_user_init(p, fd_user_id(u), u->id_len, v);
}

static bool cold(const fd_shard *s, const fd_user *u)
{
    int64_t n = 0;
    for (int t = 0; t < FD_EV__COUNT; t++)
        n += u->f.count[t];
    return n < (int64_t)s->env->cfg->mf_cold_start_events;
}

/* The user's top n item indexes: the model's, or the popularity list for a
 * cold user; without the items it bought last (asked for n more, then
 * those left out). */
static int top_raw(fd_shard *s, const fd_user *u, const float *v, const float *row, int n,
                   int32_t *idx, float *score);

/* row: the user's scores of every item when computed already (a batch,
 * smf_prepare), else NULL. */
static int top_idx(fd_shard *s, const fd_user *u, const float *v, const float *row, int n,
                   int32_t *idx, float *score)
{
    int want = n + (u->mf.bought[0] ? FD_MF_USER_BOUGHT : 0);
    if (want > FD_MF_TOP_MAX)
        want = FD_MF_TOP_MAX;
    int32_t all[FD_MF_TOP_MAX];
    float sc[FD_MF_TOP_MAX];
    int m = top_raw(s, u, v, row, want, all, sc), k = 0;
    for (int i = 0; i < m && k < n; i++) {
        const char *id = fd_mf_item_id(s->mf, all[i]);
        if (u->mf.bought[0] && fd_mf_user_has_bought(&u->mf, id, strlen(id)))
            continue;
        idx[k] = all[i];
        if (score)
            score[k] = sc[i];
        k++;
    }
    return k;
}

static int top_raw(fd_shard *s, const fd_user *u, const float *v, const float *row, int n,
                   int32_t *idx, float *score)
{
    fd_mf_items *it = s->mf;
    if (cold(s, u) || it->n == 0) {
        int m = fd_mf_popular(it, NULL, 0, n, idx);
        if (score)
            for (int i = 0; i < m; i++)
                score[i] = (float)fd_mf_score(it, v, idx[i]);
        return m;
    }
    if (row)
        return fd_mf_top_of(row, it->n, NULL, 0, n, idx, score);
    if (s->mf_scratch_n < it->n) {
        uint32_t cap = it->cap;
        float *sc = realloc(s->mf_scratch, (size_t)cap * sizeof *sc);
        if (!sc)
            return fd_mf_popular(it, NULL, 0, n, idx); /* out of memory: the fallback */
        s->mf_scratch = sc;
        s->mf_scratch_n = cap;
    }
    return fd_mf_top_n(it, v, NULL, 0, n, s->mf_scratch, idx, score);
}

int smf_top(fd_shard *s, const fd_user *u, int n, const char **ids, float *scores)
{
    if (!s->mf)
        return 0;
    float v[FD_MF_USER_K];
    int32_t idx[FD_MF_TOP_MAX];
    user_vec(s, u, v);
    int m = top_idx(s, u, v, NULL, n > FD_MF_TOP_MAX ? FD_MF_TOP_MAX : n, idx, scores);
    for (int i = 0; i < m; i++)
        ids[i] = fd_mf_item_id(s->mf, idx[i]);
    return m;
}

void smf_event(fd_shard *s, fd_user *u, const fd_event *ev)
{
    if (!s->mf || !ev->has_item || ev->type >= FD_MF_TYPES)
        return;
    const fd_mf_params *p = s->env->mf;
    int32_t idx = fd_mf_item(s->mf, p, ev->item_id, strlen(ev->item_id), true);
    if (idx < 0) {
        s->mfq.refused++;
        if (!s->mf_full_logged)
            fd_warn("mf",
                    "shard=%d item %.64s not learned: mf.max_items (%" PRIu32
                    ") reached (or out of memory); such positives are counted in "
                    "model:mf refused",
                    s->id, ev->item_id, p->max_items);
        s->mf_full_logged = true;
        return;
    }
    float v[FD_MF_USER_K];
    user_vec(s, u, v);
    int every = s->env->cfg->mf_eval_every;
    if (every > 0 && s->mf_positives++ % (uint64_t)every == 0) {
        /* prequential: the lists the user would have been shown */
        int32_t top[EVAL_N];
        int n = top_idx(s, u, v, NULL, EVAL_N, top, NULL);
        fd_mf_check(top, n, idx, &s->mfq.hits, &s->mfq.ndcg);
        int32_t pop[EVAL_N + FD_MF_USER_BOUGHT];
        int m = fd_mf_popular(s->mf, NULL, 0, EVAL_N + FD_MF_USER_BOUGHT, pop);
        n = 0; /* the same list without what the user bought last, as it is shown */
        for (int i = 0; i < m && n < EVAL_N; i++) {
            const char *id = fd_mf_item_id(s->mf, pop[i]);
            if (!u->mf.bought[0] || !fd_mf_user_has_bought(&u->mf, id, strlen(id)))
                top[n++] = pop[i];
        }
        fd_mf_check(top, n, idx, &s->mfq.pop_hits, &s->mfq.pop_ndcg);
        s->mfq.checks++;
    }
    fd_mf_learn(p, s->mf, v, idx, ev->type, ev->ts_ms);
    fd_mf_bf16_pack(v, p->k, u->mf.v);
    u->mf.has = 1;
    if (ev->type == FD_EV_PURCHASE) { /* its list must not offer it: refreshed now */
        fd_mf_user_bought(&u->mf, ev->item_id, strlen(ev->item_id));
        u->mf.recs_due = 1;
    }
    if ((int64_t)minutes(u->f.last_ts) - u->mf.recs_min >= s->env->cfg->mf_refresh_ms / 60000)
        u->mf.recs_due = 1;
}

void smf_adopt(fd_shard *s)
{
    if (!s->mf)
        return;
    fd_mf_pub *pub = s->env->mfpub;
    const fd_mf_params *p = s->env->mf;
    pthread_mutex_lock(&pub->mu);
    if (pub->merges != s->mf_seen) {
        const fd_mf_items *g = &pub->g;
        uint32_t failed = 0;
        for (uint32_t i = 0; i < g->n; i++)
            if (pub->chg[i] > s->mf_seen && fd_mf_adopt_row(s->mf, p, g->ids[i], strlen(g->ids[i]),
                                                            g->v + (size_t)i * (size_t)g->k) != 0)
                failed++;
        if (failed)
            fd_warn("mf", "shard=%d could not take over %" PRIu32 " merged items (max_items?)",
                    s->id, failed);
        s->mf_seen = pub->merges;
    }
    pthread_mutex_unlock(&pub->mu);
}

int smf_snapshot(fd_shard *s, fd_snapshot *sn)
{
    if (!s->mf)
        return 0;
    sn->mf_delta = calloc(1, sizeof *sn->mf_delta);
    sn->mf_q = malloc(sizeof *sn->mf_q);
    if (!sn->mf_delta || !sn->mf_q || fd_mf_take(s->mf, sn->mf_delta) != 0)
        return -1;
    *sn->mf_q = s->mfq;
    memset(&s->mfq, 0, sizeof s->mfq);
    return 0;
}

/* ---- the refreshes of a snapshot, in batches ---------------------------------- */

/* A refresh scores every item for the user. One at a time that is a
 * cblas_sgemv, which reads the whole item matrix for each user; a batch of
 * users is one cblas_sgemm, which reads it once for the batch: top 14 over
 * 2,000 items, k = 32, selection included, 4.6 against 1.9 us per user
 * (`funnelctl bench-model`, "refresh"; docs/BENCHMARKS.md). The batch's
 * scores are at most BATCH_FLOATS (4 MB) at once. */
#define BATCH_MAX    64
#define BATCH_FLOATS ((size_t)1 << 20)

struct smf_res {
    const fd_user *u;
    int m;
    int32_t idx[FD_MF_TOP_MAX];
    float sc[FD_MF_TOP_MAX];
};

size_t smf_prepare(fd_shard *s, fd_user *const *us, size_t n)
{
    s->mf_res_n = s->mf_res_next = 0;
    fd_mf_items *it = s->mf;
    if (!it || n == 0)
        return n;
    size_t bmax = BATCH_MAX;
    if (it->n > 0 && BATCH_FLOATS / it->n < bmax)
        bmax = BATCH_FLOATS / it->n ? BATCH_FLOATS / it->n : 1;
    size_t need = bmax * (size_t)it->n;
    if (!s->mf_res) {
        s->mf_res = malloc(BATCH_MAX * sizeof *s->mf_res);
        s->mf_bu = malloc(BATCH_MAX * FD_MF_USER_K * sizeof *s->mf_bu);
    }
    if (s->mf_bs_cap < need) {
        float *b = realloc(s->mf_bs, need * sizeof *b);
        if (b) {
            s->mf_bs = b;
            s->mf_bs_cap = need;
        }
    }
    if (!s->mf_res || !s->mf_bu || s->mf_bs_cap < need)
        return n; /* out of memory: smf_recs scores each user alone */
    int top_n = s->env->cfg->mf_top_n;
    size_t j = 0, warm = 0;
    int nres = 0, rows[BATCH_MAX];
    for (; j < n && (size_t)nres < bmax; j++) {
        fd_user *u = us[j];
        if (!u->mf.recs_due)
            continue;
        s->mf_res[nres].u = u;
        if (cold(s, u) || it->n == 0) {
            rows[nres++] = -1;
        } else {
            user_vec(s, u, s->mf_bu + warm * (size_t)it->k);
            rows[nres++] = (int)warm++;
        }
    }
    if (warm)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)warm, (int)it->n, it->k, 1.0f,
                    s->mf_bu, it->k, it->v, it->k, 0.0f, s->mf_bs, (int)it->n);
    if (top_n > FD_MF_TOP_MAX)
        top_n = FD_MF_TOP_MAX;
    for (int r = 0; r < nres; r++) {
        smf_res *x = &s->mf_res[r];
        float cold_v[FD_MF_USER_K]; /* a cold user's factors: its popular items' scores */
        const float *v = cold_v, *row = NULL;
        if (rows[r] >= 0) {
            v = s->mf_bu + (size_t)rows[r] * (size_t)it->k;
            row = s->mf_bs + (size_t)rows[r] * (size_t)it->n;
        } else {
            user_vec(s, x->u, cold_v);
        }
        x->m = top_idx(s, x->u, v, row, top_n, x->idx, x->sc);
    }
    s->mf_res_n = nres;
    return j;
}

/* room for n more bytes in the shard's recs buffer at used */
static int recs_room(fd_shard *s, size_t used, size_t n)
{
    if (used + n <= s->recs_cap)
        return 0;
    size_t cap = s->recs_cap ? s->recs_cap : 4096;
    while (cap < used + n)
        cap *= 2;
    char *b = realloc(s->recs_buf, cap);
    if (!b)
        return -1;
    s->recs_buf = b;
    s->recs_cap = cap;
    return 0;
}

/* s as a JSON string at used (quotes, backslashes and control bytes
 * escaped; other bytes as they are). Returns the new used, 0 out of memory. */
static size_t json_str(fd_shard *sh, size_t used, const char *s)
{
    size_t n = strlen(s);
    if (recs_room(sh, used, 6 * n + 2) != 0)
        return 0;
    char *o = sh->recs_buf + used;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    return (size_t)(o - sh->recs_buf);
}

int smf_recs(fd_shard *s, fd_user *u, const char **key, size_t *key_len, const char **val,
             size_t *len)
{
    const char *ids[FD_MF_TOP_MAX];
    float sc_own[FD_MF_TOP_MAX];
    const float *sc = sc_own;
    int m;
    if (s->mf_res_next < s->mf_res_n && s->mf_res[s->mf_res_next].u == u) {
        const smf_res *r = &s->mf_res[s->mf_res_next++]; /* smf_prepare's */
        m = r->m;
        for (int i = 0; i < m; i++)
            ids[i] = fd_mf_item_id(s->mf, r->idx[i]);
        sc = r->sc;
    } else {
        m = smf_top(s, u, s->env->cfg->mf_top_n, ids, sc_own);
    }
    u->mf.recs_due = 0;
    u->mf.recs_min = minutes(u->f.last_ts);
    const char *prefix = s->env->cfg->redis_key_prefix;
    size_t pl = s->prefix_len; /* PREFIX "recs:" id, NUL-terminated */
    size_t kl = pl + 5 + u->id_len + 1, used = kl;
    if (recs_room(s, 0, kl + 2) != 0)
        goto oom;
    memcpy(s->recs_buf, prefix, pl);
    memcpy(s->recs_buf + pl, "recs:", 5);
    memcpy(s->recs_buf + pl + 5, fd_user_id(u), u->id_len + 1);
    s->recs_buf[used++] = '[';
    for (int i = 0; i < m; i++) {
        if (recs_room(s, used, 16) != 0)
            goto oom;
        if (i)
            s->recs_buf[used++] = ',';
        memcpy(s->recs_buf + used, "{\"item\":", 8);
        used += 8;
        if (!(used = json_str(s, used, ids[i])) || recs_room(s, used, 48) != 0)
            goto oom;
        /* ",\"score\":%.6g}" without printf, always a float to a JSON
         * reader ("1.0", not "1"; features/fmt.h) */
        char *o = s->recs_buf + used;
        memcpy(o, ",\"score\":", 9);
        o = fd_fmt_json_g6(o + 9, isfinite(sc[i]) ? sc[i] : 0.0f);
        *o++ = '}';
        used = (size_t)(o - s->recs_buf);
    }
    s->recs_buf[used++] = ']';
    *key = s->recs_buf;
    *key_len = kl - 1;
    *val = s->recs_buf + kl;
    *len = used - kl;
    return 0;
oom:
    if (s->recs_cap >= kl + 2) {
        *key = s->recs_buf;
        *key_len = kl - 1;
        memcpy(s->recs_buf + kl, "[]", 2);
        *val = s->recs_buf + kl;
        *len = 2;
    } else {
        *key = *val = "";
        *key_len = *len = 0;
    }
    return -1;
}

size_t smf_suffix(const fd_shard *s, const fd_user *u, char *buf)
{
    return s->mf ? fd_mf_user_format(&u->mf, s->env->mf->k, buf) : 0;
}

void smf_parse(fd_shard *s, fd_user *u, const char *suffix, size_t len)
{
    memset(&u->mf, 0, sizeof u->mf);
    if (!s->mf || len == 0)
        return;
    char err[160];
    if (fd_mf_user_parse(&u->mf, s->env->mf->k, suffix, len, err, sizeof err) != 0) {
        memset(&u->mf, 0, sizeof u->mf);
        fd_warn("mf", "shard=%d user %.64s: %s (its factors start over)", s->id, fd_user_id(u),
                err);
    }
}
