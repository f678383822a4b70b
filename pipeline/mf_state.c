/*
 * mf_state.c - the engine's side of the recommendation model (model_pub.h,
 * docs/RECS.md): load the item factors at start, add the shards' changes
 * when an epoch's snapshots are all in, publish the merged rows to the
 * shards, and write them in the epoch's MULTI/EXEC (writer.c):
 *
 *   HSET PREFIX mf:item ID ROW ...   ROW: k float32 then the decayed
 *                                    popularity as a float64, little-endian
 *   HSET PREFIX model:mf k K items N positives P pop_t0 T ... (quality)
 *   SET PREFIX mf:ring ID\nID...     the negative sampler: the items of the
 *                                    last 4096 positives, oldest first
 *
 * Why it is built this way:
 *
 * - The merge runs once per epoch, when the epoch is complete, in epoch
 *   order (as the churn model's): the rows an epoch's write carries have
 *   learned exactly the positives before its offsets.
 *
 * - A write carries every row changed by a merge since the last confirmed
 *   write (chg > written), at its latest value: values, not increments, so
 *   a write that is retried, or whose reply was lost, writes the same
 *   thing again harmlessly. The positives and quality counts are totals
 *   for the same reason.
 *
 * - Several instances: each writes the rows it changed, so two instances
 *   that learn the same item overwrite each other's learning of it (last
 *   writer wins; the positives count is this instance's view). Merging
 *   item rows through Redis as the churn model does is not built yet
 *   (docs/RECS.md names the limit).
 */
#include "pipeline/mf_state.h"

#include <inttypes.h>
#include <math.h>

#include "pipeline/churn_setup.h"

#define HSET_ROWS 512 /* item rows per HSET */

static const char *key_of(const fd_engine *e, const char *what, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s", e->cfg->redis_key_prefix, what);
    return buf;
}

static int chg_room(fd_mf_pub *pub)
{
    if (pub->g.cap <= pub->cap_chg)
        return 0;
    uint64_t *c = realloc(pub->chg, (size_t)pub->g.cap * sizeof *c);
    if (!c)
        return -1;
    memset(c + pub->cap_chg, 0, (size_t)(pub->g.cap - pub->cap_chg) * sizeof *c);
    pub->chg = c;
    pub->cap_chg = pub->g.cap;
    return 0;
}

static size_t row_bytes(int k)
{
    return (size_t)k * 4 + 8;
}

static void pack_row(const fd_mf_items *g, uint32_t i, unsigned char *out)
{
    int k = g->k;
    for (int f = 0; f < k; f++) {
        uint32_t b;
        memcpy(&b, g->v + (size_t)i * (size_t)k + f, 4);
        for (int j = 0; j < 4; j++)
            out[4 * f + j] = (unsigned char)(b >> (8 * j));
    }
    uint64_t q;
    memcpy(&q, &g->pop[i], 8);
    for (int j = 0; j < 8; j++)
        out[4 * k + j] = (unsigned char)(q >> (8 * j));
}

/* 0, or -1 when the row is not k finite factors and a finite popularity */
static int unpack_row(const char *s, size_t len, int k, float *v, double *pop)
{
    if (len != row_bytes(k))
        return -1;
    const unsigned char *u = (const unsigned char *)s;
    for (int f = 0; f < k; f++) {
        uint32_t b = 0;
        for (int j = 0; j < 4; j++)
            b |= (uint32_t)u[4 * f + j] << (8 * j);
        memcpy(&v[f], &b, 4);
        if (!(v[f] >= -FD_MF_CLAMP && v[f] <= FD_MF_CLAMP))
            return -1;
    }
    uint64_t q = 0;
    for (int j = 0; j < 8; j++)
        q |= (uint64_t)u[4 * k + j] << (8 * j);
    memcpy(pop, &q, 8);
    return *pop >= 0 && *pop < 1e300 ? 0 : -1;
}

static const char *field(const redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && !strcmp(r->element[i]->str, name) &&
            r->element[i + 1]->type == REDIS_REPLY_STRING)
            return r->element[i + 1]->str;
    return NULL;
}

/* The stored model: model:mf's totals, then mf:item by HSCAN. */
static int load(fd_engine *e, char *errstr, size_t errstr_size)
{
    char err[256], mkey[600], ikey[600];
    key_of(e, "model:mf", mkey, sizeof mkey);
    key_of(e, "mf:item", ikey, sizeof ikey);
    redisReply *r = fd_redis_command(e->redis, err, sizeof err, "HGETALL %s", mkey);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(errstr, errstr_size, "redis: cannot load the recommendation model %s: %s", mkey,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : err);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    fd_mf_items *g = &e->mfpub.g;
    int64_t t0 = 0;
    const char *kk = field(r, "k");
    if (kk && atoi(kk) != e->mfp.k) {
        snprintf(errstr, errstr_size,
                 "redis: %s was learned with k = %s factors but mf.k is %d (set mf.k back, or "
                 "delete %s and %s to start the model over)",
                 mkey, kk, e->mfp.k, mkey, ikey);
        freeReplyObject(r);
        return -1;
    }
    const char *v;
    if ((v = field(r, "positives")))
        g->positives = strtoull(v, NULL, 10);
    if ((v = field(r, "pop_t0")))
        t0 = strtoll(v, NULL, 10);
    fd_mf_quality *q = &e->mfq;
    if ((v = field(r, "checks")))
        q->checks = strtoull(v, NULL, 10);
    if ((v = field(r, "hits")))
        q->hits = strtoull(v, NULL, 10);
    if ((v = field(r, "pop_hits")))
        q->pop_hits = strtoull(v, NULL, 10);
    if ((v = field(r, "refused")))
        q->refused = strtoull(v, NULL, 10);
    if ((v = field(r, "ndcg_sum")))
        q->ndcg = strtod(v, NULL);
    if ((v = field(r, "pop_ndcg_sum")))
        q->pop_ndcg = strtod(v, NULL);
    if (!(q->ndcg >= 0 && q->ndcg < 1e18) || !(q->pop_ndcg >= 0 && q->pop_ndcg < 1e18))
        q->ndcg = q->pop_ndcg = 0;
    freeReplyObject(r);
    char cursor[32] = "0";
    float row[FD_MF_MAX_K];
    uint64_t bad = 0;
    do {
        r = fd_redis_command(e->redis, err, sizeof err, "HSCAN %s %s COUNT 1000", ikey, cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            snprintf(errstr, errstr_size, "redis: cannot load the item factors %s: %s", ikey,
                     r && r->type == REDIS_REPLY_ERROR ? r->str : err);
            if (r)
                freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *a = r->element[1];
        for (size_t i = 0; i + 1 < a->elements; i += 2) {
            const redisReply *id = a->element[i], *val = a->element[i + 1];
            double pop;
            if (id->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING ||
                unpack_row(val->str, val->len, e->mfp.k, row, &pop) != 0) {
                if (bad++ == 0)
                    fd_warn("mf", "%s field %.64s: not %d factors and a popularity (%zu bytes); "
                            "the item starts over", ikey, id->type == REDIS_REPLY_STRING ? id->str : "?",
                            e->mfp.k, row_bytes(e->mfp.k));
                continue;
            }
            int32_t idx = fd_mf_item(g, &e->mfp, id->str, id->len, true);
            if (idx < 0) {
                snprintf(errstr, errstr_size,
                         "redis: %s holds more items than mf.max_items (%" PRIu32 ")", ikey,
                         e->mfp.max_items);
                freeReplyObject(r);
                return -1;
            }
            fd_mf_set_row(g, &e->mfp, idx, row, pop, t0);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    if (bad > 1)
        fd_warn("mf", "%s: %" PRIu64 " unreadable items started over", ikey, bad);
    char rkey[600];
    key_of(e, "mf:ring", rkey, sizeof rkey);
    r = fd_redis_command(e->redis, err, sizeof err, "GET %s", rkey);
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        snprintf(errstr, errstr_size, "redis: cannot load the negative sampler %s: %s", rkey,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : err);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (size_t at = 0; r->type == REDIS_REPLY_STRING && at < r->len;) {
        const char *nl = memchr(r->str + at, '\n', r->len - at);
        size_t l = nl ? (size_t)(nl - (r->str + at)) : r->len - at;
        int32_t idx = l ? fd_mf_item(g, &e->mfp, r->str + at, l, false) : -1;
        if (idx >= 0) /* an item with no row is not sampled */
            fd_mf_ring_push(g, (uint32_t)idx);
        at += l + 1;
    }
    freeReplyObject(r);
    if (g->n || g->positives)
        fd_info("mf", "recommendation model loaded: %" PRIu32 " items, %" PRIu64 " positives learned",
                g->n, g->positives);
    else
        fd_info("mf", "no stored recommendation model (%s): learning from scratch", mkey);
    e->mf_t0_written = g->pop_t0;
    return 0;
}

int eng_mf_init(fd_engine *e, char *errstr, size_t errstr_size)
{
    pthread_mutex_init(&e->mfpub.mu, NULL);
    e->mf_on = fd_mf_enabled(e->cfg);
    if (!e->mf_on)
        return 0;
    if (fd_mf_params_from_config(&e->mfp, e->cfg, errstr, errstr_size) != 0)
        return -1;
    if (fd_mf_items_init(&e->mfpub.g, &e->mfp) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    char err[256];
    volatile int stop = 0;
    if (fd_redis_connect_wait(e->redis, 30000, &stop, err, sizeof err) != 0) {
        snprintf(errstr, errstr_size, "redis: cannot load the recommendation model: %s", err);
        return -1;
    }
    if (load(e, errstr, errstr_size) != 0)
        return -1;
    if (chg_room(&e->mfpub) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

void eng_mf_free(fd_engine *e)
{
    fd_mf_items_free(&e->mfpub.g);
    free(e->mfpub.chg);
    e->mfpub.chg = NULL;
    fd_resp_free(&e->mfbuf);
    pthread_mutex_destroy(&e->mfpub.mu);
}

int eng_mf_merge(fd_engine *e, epoch *ep)
{
    if (!e->mf_on)
        return 0;
    fd_mf_pub *pub = &e->mfpub;
    int rc = 0;
    uint64_t lost = 0;
    pthread_mutex_lock(&pub->mu);
    uint64_t m = pub->merges + 1;
    bool changed = false, ring_changed = false;
    for (int i = 0; i < e->n_shards; i++) {
        fd_snapshot *sn = ep->snaps[i];
        if (!sn->mf_delta)
            continue;
        const fd_mf_delta *d = sn->mf_delta;
        if (sn->mf_q) {
            fd_mf_quality *q = &e->mfq;
            q->checks += sn->mf_q->checks;
            q->hits += sn->mf_q->hits;
            q->pop_hits += sn->mf_q->pop_hits;
            q->refused += sn->mf_q->refused;
            q->ndcg += sn->mf_q->ndcg;
            q->pop_ndcg += sn->mf_q->pop_ndcg;
        }
        if (d->n_ring)
            ring_changed = true;
        if (d->n == 0) {
            pub->g.positives += d->positives;
            continue;
        }
        int32_t *at = malloc((size_t)d->n * sizeof *at);
        if (!at) {
            rc = -1;
            break;
        }
        lost += fd_mf_add_delta(&pub->g, &e->mfp, d, at);
        if (chg_room(pub) != 0) {
            free(at);
            rc = -1;
            break;
        }
        for (uint32_t t = 0; t < d->n; t++)
            if (at[t] >= 0)
                pub->chg[at[t]] = m;
        free(at);
        changed = true;
    }
    if (changed)
        pub->merges = m;
    if (ring_changed)
        e->mf_ring_ver++;
    pthread_mutex_unlock(&pub->mu);
    if (lost)
        fd_warn("mf", "%" PRIu64 " learned item rows could not be merged (mf.max_items reached)",
                lost);
    return rc;
}

size_t eng_mf_append(fd_engine *e, const fd_resp **src)
{
    *src = NULL;
    if (!e->mf_on)
        return 0;
    const fd_mf_items *g = &e->mfpub.g;
    const uint64_t *chg = e->mfpub.chg;
    char ikey[600], mkey[600];
    key_of(e, "mf:item", ikey, sizeof ikey);
    key_of(e, "model:mf", mkey, sizeof mkey);
    fd_resp *b = &e->mfbuf;
    fd_resp_reset(b);
    bool all = g->pop_t0 != e->mf_t0_written; /* popularity rescaled: every row changed */
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->n; i++)
        n += all || chg[i] > e->mf_written;
    unsigned char row[FD_MF_MAX_K * 4 + 8];
    size_t rb = row_bytes(g->k);
    uint32_t left = n, open = 0;
    for (uint32_t i = 0; i < g->n && left; i++) {
        if (!all && chg[i] <= e->mf_written)
            continue;
        if (open == 0) {
            open = left < HSET_ROWS ? left : HSET_ROWS;
            fd_resp_cmd(b, 2 + 2 * (int)open);
            fd_resp_str(b, "HSET");
            fd_resp_str(b, ikey);
        }
        fd_resp_str(b, g->ids[i]);
        pack_row(g, i, row);
        fd_resp_arg(b, (const char *)row, rb);
        open--;
        left--;
    }
    if (e->mf_ring_ver != e->mf_ring_written && g->ring_n) { /* the sampler, oldest first */
        size_t len = 0;
        for (uint32_t j = 0; j < g->ring_n; j++)
            len += strlen(g->ids[fd_mf_ring_at(g, j)]) + 1;
        char *t = malloc(len);
        if (!t) {
            fd_err("mf", "out of memory writing the negative sampler; stopping without it");
            e->fatal = 1;
            return 0;
        }
        size_t o = 0;
        for (uint32_t j = 0; j < g->ring_n; j++) {
            const char *id = g->ids[fd_mf_ring_at(g, j)];
            size_t l = strlen(id);
            memcpy(t + o, id, l);
            o += l;
            t[o++] = '\n';
        }
        char rkey[600];
        fd_resp_cmd(b, 3);
        fd_resp_str(b, "SET");
        fd_resp_str(b, key_of(e, "mf:ring", rkey, sizeof rkey));
        fd_resp_arg(b, t, o - 1);
        free(t);
    }
    e->mf_ring_sent = e->mf_ring_ver;
    const fd_mf_quality *q = &e->mfq;
    double c = q->checks ? (double)q->checks : 1.0;
    char buf[1024];
    int l = snprintf(buf, sizeof buf,
                     "%d %" PRIu32 " %" PRIu64 " %" PRId64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                     " %" PRIu64 " %.17g %.17g %.6f %.6f %.6f %.6f",
                     g->k, g->n, g->positives, g->pop_t0, q->checks, q->hits, q->pop_hits,
                     q->refused, q->ndcg, q->pop_ndcg, (double)q->hits / c, q->ndcg / c,
                     (double)q->pop_hits / c, q->pop_ndcg / c);
    static const char *names[] = {"k",
                                  "items",
                                  "positives",
                                  "pop_t0",
                                  "checks",
                                  "hits",
                                  "pop_hits",
                                  "refused",
                                  "ndcg_sum",
                                  "pop_ndcg_sum",
                                  "recall_at_10",
                                  "ndcg_at_10",
                                  "popularity_recall_at_10",
                                  "popularity_ndcg_at_10"};
    int nf = (int)(sizeof names / sizeof names[0]);
    fd_resp_cmd(b, 2 + 2 * nf);
    fd_resp_str(b, "HSET");
    fd_resp_str(b, mkey);
    char *save, *tok = l > 0 ? strtok_r(buf, " ", &save) : NULL;
    for (int i = 0; i < nf; i++) {
        fd_resp_str(b, names[i]);
        fd_resp_str(b, tok ? tok : "0");
        tok = tok ? strtok_r(NULL, " ", &save) : NULL;
    }
    if (!fd_resp_ok(b)) {
        fd_err("mf", "out of memory building the item rows' write; stopping without it");
        e->fatal = 1;
        return 0;
    }
    e->mf_sent = e->mfpub.merges;
    e->mf_t0_sent = g->pop_t0;
    fd_redis_append_raw(e->redis, b->p, b->len, b->n_cmds);
    *src = b;
    return b->n_cmds;
}

void eng_mf_written(fd_engine *e)
{
    if (!e->mf_on)
        return;
    e->mf_written = e->mf_sent;
    e->mf_t0_written = e->mf_t0_sent;
    e->mf_ring_written = e->mf_ring_sent;
}
