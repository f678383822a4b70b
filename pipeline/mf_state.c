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
 * - Several instances share the stored rows, merged inside Redis as the
 *   churn model is (churn_state.c): the write sends each changed row with
 *   this instance's base (the row as it last read or wrote it; its initial
 *   value for a row it created) to MERGE_SCRIPT, an EVAL in the epoch's
 *   MULTI/EXEC. A stored row equal to the base is replaced by the sent one
 *   (bit for bit what a lone instance writes); otherwise another instance
 *   wrote it since, and the script stores stored + (sent - base), factor
 *   by factor and for the popularity (converted between the instances'
 *   popularity scales), and returns it. The totals (positives, quality
 *   counts) merge the same way. The engine then takes the returned rows
 *   over (G += returned - sent, published to the shards like a merge) and
 *   keeps them as its base: each instance's learning reaches the stored
 *   rows exactly once, in the transaction with the offsets that produced
 *   it. The sampler (mf:ring) is the last writer's: it is only a sample.
 */
#include "pipeline/mf_state.h"

#include <inttypes.h>
#include <math.h>

#include "pipeline/churn_setup.h"

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

static void totals_of(const fd_engine *e, double *t);
static int base_room(mf_sync *ms, int k, uint32_t n);

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
                    fd_warn("mf",
                            "%s field %.64s: not %d factors and a popularity (%zu bytes); "
                            "the item starts over",
                            ikey, id->type == REDIS_REPLY_STRING ? id->str : "?", e->mfp.k,
                            row_bytes(e->mfp.k));
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
        fd_info("mf",
                "recommendation model loaded: %" PRIu32 " items, %" PRIu64 " positives learned",
                g->n, g->positives);
    else
        fd_info("mf", "no stored recommendation model (%s): learning from scratch", mkey);
    e->mf_t0_written = g->pop_t0;
    /* what is stored is this instance's base */
    mf_sync *ms = &e->ms;
    if (base_room(ms, g->k, g->n) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (g->n) {
        memcpy(ms->base_v, g->v, (size_t)g->n * (size_t)g->k * sizeof *g->v);
        memcpy(ms->base_pop, g->pop, (size_t)g->n * sizeof *g->pop);
    }
    ms->n_base = g->n;
    totals_of(e, ms->tot_base);
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
    if (fd_redis_connect_wait(e->redis, 30000, eng_start_stop ? eng_start_stop : &stop, err,
                              sizeof err) != 0) {
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
    free(e->ms.base_v);
    free(e->ms.base_pop);
    free(e->ms.sent);
    free(e->ms.sent_v);
    free(e->ms.sent_pop);
    e->ms = (mf_sync){0};
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

/* The merge (see the top). KEYS[1] mf:item, KEYS[2] model:mf. ARGV: k,
 * n rows, this instance's pop_t0, the popularity half-life (ms), then n
 * (id, sent row, base row), then the MF_TOTALS sent totals and their
 * bases (as decimal text). Rows are k float32 and a float64,
 * little-endian. Returns {the stored totals (MF_TOTALS texts), the number
 * of unreadable rows replaced, then id, row for each row stored otherwise
 * than sent (in this instance's popularity scale)}. */
static const char MERGE_SCRIPT[] =
    "local k, n = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local t0, h = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local fmt = '<' .. string.rep('f', k) .. 'd'\n"
    "local size = 4 * k + 8\n"
    "local st0 = redis.call('HGET', KEYS[2], 'pop_t0')\n"
    "local ts = t0\n"
    "if st0 then ts = tonumber(st0) or t0 else redis.call('HSET', KEYS[2], 'pop_t0', ARGV[3]) end\n"
    "local f = 2 ^ ((t0 - ts) / h)\n"
    "local out, bad, a = {}, 0, 5\n"
    "local function rd(s) local v = {struct.unpack(fmt, s)} v[k + 2] = nil return v end\n"
    "for r = 1, n do\n"
    "  local id, new, base = ARGV[a], ARGV[a + 1], ARGV[a + 2]\n"
    "  a = a + 3\n"
    "  local cur = redis.call('HGET', KEYS[1], id)\n"
    "  if cur and string.len(cur) ~= size then cur = nil bad = bad + 1 end\n"
    "  if not cur or (cur == base and f == 1) then\n"
    "    if f == 1 then redis.call('HSET', KEYS[1], id, new)\n"
    "    else local x = rd(new) x[k + 1] = x[k + 1] * f\n"
    "      redis.call('HSET', KEYS[1], id, struct.pack(fmt, unpack(x, 1, k + 1))) end\n"
    "  else\n"
    "    local c, x, b = rd(cur), rd(new), rd(base)\n"
    "    local m = {}\n"
    "    for i = 1, k do\n"
    "      local y = c[i] + (x[i] - b[i])\n"
    "      if y ~= y then y = 0 elseif y > 16 then y = 16 elseif y < -16 then y = -16 end\n"
    "      m[i] = y\n"
    "    end\n"
    "    local p = c[k + 1] + (x[k + 1] - b[k + 1]) * f\n"
    "    if not (p > 0) then p = 0 end\n"
    "    m[k + 1] = p\n"
    "    local packed = struct.pack(fmt, unpack(m, 1, k + 1))\n"
    "    redis.call('HSET', KEYS[1], id, packed)\n"
    "    if packed ~= new then\n"
    "      m[k + 1] = p / f\n"
    "      out[#out + 1] = id out[#out + 1] = struct.pack(fmt, unpack(m, 1, k + 1))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local names = {'positives', 'checks', 'hits', 'pop_hits', 'refused', 'ndcg_sum',\n"
    "               'pop_ndcg_sum'}\n"
    "local cur = redis.call('HMGET', KEYS[2], unpack(names))\n"
    "local tot, res = {}, {}\n"
    "for i = 1, 7 do\n"
    "  local x, b = ARGV[a + i - 1], ARGV[a + 6 + i]\n"
    "  local t = x\n"
    "  if cur[i] and cur[i] ~= b then\n"
    "    local v = (tonumber(cur[i]) or 0) + (tonumber(x) - tonumber(b))\n"
    "    if not (v > 0) then v = 0 end\n"
    "    if i <= 5 then t = string.format('%.0f', v) else t = string.format('%.17g', v) end\n"
    "  end\n"
    "  tot[i] = tonumber(t) res[i] = t\n"
    "  redis.call('HSET', KEYS[2], names[i], t)\n"
    "end\n"
    "local c = tot[2] > 0 and tot[2] or 1\n"
    "redis.call('HSET', KEYS[2], 'k', ARGV[1], 'items', redis.call('HLEN', KEYS[1]),\n"
    "  'recall_at_10', string.format('%.6f', tot[3] / c),\n"
    "  'ndcg_at_10', string.format('%.6f', tot[6] / c),\n"
    "  'popularity_recall_at_10', string.format('%.6f', tot[4] / c),\n"
    "  'popularity_ndcg_at_10', string.format('%.6f', tot[7] / c))\n"
    "res[8] = bad\n"
    "for i = 1, #out do res[8 + i] = out[i] end\n"
    "return res\n";

static void totals_of(const fd_engine *e, double *t)
{
    const fd_mf_quality *q = &e->mfq;
    t[0] = (double)e->mfpub.g.positives;
    t[1] = (double)q->checks;
    t[2] = (double)q->hits;
    t[3] = (double)q->pop_hits;
    t[4] = (double)q->refused;
    t[5] = q->ndcg;
    t[6] = q->pop_ndcg;
}

static uint64_t count_of(double v)
{
    return v > 0 && v < 9e18 ? (uint64_t)v : 0;
}

/* Room for n rows (k factors and a popularity each, and an index when idx
 * is given) in arrays of capacity *cap. 0, or -1 out of memory. */
static int rows_room(float **v, double **pop, uint32_t **idx, uint32_t *cap, int k, uint32_t n)
{
    if (n <= *cap)
        return 0;
    uint32_t c = *cap ? *cap : 1024;
    while (c < n)
        c *= 2;
    float *nv = realloc(*v, (size_t)c * (size_t)k * sizeof *nv);
    if (!nv)
        return -1;
    *v = nv;
    double *np = realloc(*pop, (size_t)c * sizeof *np);
    if (!np)
        return -1;
    *pop = np;
    if (idx) {
        uint32_t *ni = realloc(*idx, (size_t)c * sizeof *ni);
        if (!ni)
            return -1;
        *idx = ni;
    }
    *cap = c;
    return 0;
}

static int base_room(mf_sync *ms, int k, uint32_t n)
{
    return rows_room(&ms->base_v, &ms->base_pop, NULL, &ms->cap_base, k, n);
}

static int sent_room(mf_sync *ms, int k, uint32_t n)
{
    return rows_room(&ms->sent_v, &ms->sent_pop, &ms->sent, &ms->cap_sent, k, n);
}

/* The base of every row up to g->n: rows G made since, their initial value. */
static int bases_to(fd_engine *e)
{
    mf_sync *ms = &e->ms;
    const fd_mf_items *g = &e->mfpub.g;
    int k = g->k;
    if (base_room(ms, k, g->n) != 0)
        return -1;
    for (uint32_t i = ms->n_base; i < g->n; i++) {
        fd_mf_item_init(&e->mfp, g->ids[i], strlen(g->ids[i]), ms->base_v + (size_t)i * (size_t)k);
        ms->base_pop[i] = 0;
    }
    ms->n_base = g->n;
    return 0;
}

static void pack_vals(const float *v, double pop, int k, unsigned char *out)
{
    for (int f = 0; f < k; f++) {
        uint32_t b;
        memcpy(&b, v + f, 4);
        for (int j = 0; j < 4; j++)
            out[4 * f + j] = (unsigned char)(b >> (8 * j));
    }
    uint64_t q;
    memcpy(&q, &pop, 8);
    for (int j = 0; j < 8; j++)
        out[4 * k + j] = (unsigned char)(q >> (8 * j));
}

size_t eng_mf_append(fd_engine *e, const fd_resp **src)
{
    *src = NULL;
    mf_sync *ms = &e->ms;
    ms->pushing = false;
    if (!e->mf_on)
        return 0;
    const fd_mf_items *g = &e->mfpub.g;
    const uint64_t *chg = e->mfpub.chg;
    int k = g->k;
    char ikey[600], mkey[600], num[64];
    key_of(e, "mf:item", ikey, sizeof ikey);
    key_of(e, "model:mf", mkey, sizeof mkey);
    fd_resp *b = &e->mfbuf;
    fd_resp_reset(b);
    if (bases_to(e) != 0)
        goto oom;
    bool all = g->pop_t0 != e->mf_t0_written; /* popularity rescaled: every row changed */
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->n; i++)
        n += all || chg[i] > e->mf_written;
    if (sent_room(ms, k, n) != 0)
        goto oom;
    fd_resp_cmd(b, 3 + 2 + 4 + 3 * (int)n + 2 * MF_TOTALS);
    fd_resp_str(b, "EVAL");
    fd_resp_str(b, MERGE_SCRIPT);
    fd_resp_str(b, "2");
    fd_resp_str(b, ikey);
    fd_resp_str(b, mkey);
    int l = snprintf(num, sizeof num, "%d", k);
    fd_resp_arg(b, num, (size_t)l);
    l = snprintf(num, sizeof num, "%" PRIu32, n);
    fd_resp_arg(b, num, (size_t)l);
    l = snprintf(num, sizeof num, "%" PRId64, g->pop_t0);
    fd_resp_arg(b, num, (size_t)l);
    l = snprintf(num, sizeof num, "%" PRId64, e->mfp.pop_half_life_ms);
    fd_resp_arg(b, num, (size_t)l);
    unsigned char row[FD_MF_MAX_K * 4 + 8];
    size_t rb = row_bytes(k);
    ms->n_sent = 0;
    for (uint32_t i = 0; i < g->n; i++) {
        if (!all && chg[i] <= e->mf_written)
            continue;
        uint32_t t = ms->n_sent++;
        ms->sent[t] = i;
        memcpy(ms->sent_v + (size_t)t * (size_t)k, g->v + (size_t)i * (size_t)k,
               (size_t)k * sizeof(float));
        ms->sent_pop[t] = g->pop[i];
        fd_resp_str(b, g->ids[i]);
        pack_row(g, i, row);
        fd_resp_arg(b, (const char *)row, rb);
        pack_vals(ms->base_v + (size_t)i * (size_t)k, ms->base_pop[i], k, row);
        fd_resp_arg(b, (const char *)row, rb);
    }
    totals_of(e, ms->tot_sent);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < MF_TOTALS; i++) {
            double v = pass ? ms->tot_base[i] : ms->tot_sent[i];
            l = snprintf(num, sizeof num, i < 5 ? "%.0f" : "%.17g", v);
            fd_resp_arg(b, num, (size_t)l);
        }
    if (e->mf_ring_ver != e->mf_ring_written && g->ring_n) { /* the sampler, oldest first */
        size_t len = 0;
        for (uint32_t j = 0; j < g->ring_n; j++)
            len += strlen(g->ids[fd_mf_ring_at(g, j)]) + 1;
        char *t = malloc(len);
        if (!t)
            goto oom;
        size_t o = 0;
        for (uint32_t j = 0; j < g->ring_n; j++) {
            const char *id = g->ids[fd_mf_ring_at(g, j)];
            size_t il = strlen(id);
            memcpy(t + o, id, il);
            o += il;
            t[o++] = '\n';
        }
        char rkey[600];
        fd_resp_cmd(b, 3);
        fd_resp_str(b, "SET");
        fd_resp_str(b, key_of(e, "mf:ring", rkey, sizeof rkey));
        fd_resp_arg(b, t, o - 1);
        free(t);
    }
    if (!fd_resp_ok(b))
        goto oom;
    e->mf_ring_sent = e->mf_ring_ver;
    e->mf_sent = e->mfpub.merges;
    e->mf_t0_sent = g->pop_t0;
    ms->pushing = true;
    fd_redis_append_raw(e->redis, b->p, b->len, b->n_cmds);
    *src = b;
    return b->n_cmds;
oom:
    fd_err("mf", "out of memory building the item rows' write; stopping without it");
    e->fatal = 1;
    return 0;
}

/* Row gi was stored as (v, pop) where this instance sent sent t: G takes
 * over the difference (G += stored - sent) and the stored row is the new
 * base. Returns whether G changed. */
static bool take_over(fd_engine *e, uint32_t t, uint32_t gi, const float *v, double pop)
{
    mf_sync *ms = &e->ms;
    fd_mf_items *g = &e->mfpub.g;
    int k = g->k;
    const float *sv = ms->sent_v + (size_t)t * (size_t)k;
    float *gv = g->v + (size_t)gi * (size_t)k;
    bool changed = false;
    for (int f = 0; f < k; f++)
        if (v[f] != sv[f]) {
            float y = gv[f] + (v[f] - sv[f]);
            gv[f] = y > FD_MF_CLAMP ? FD_MF_CLAMP : y < -FD_MF_CLAMP ? -FD_MF_CLAMP : y;
            changed = true;
        }
    if (pop != ms->sent_pop[t]) {
        double y = g->pop[gi] + (pop - ms->sent_pop[t]);
        g->pop[gi] = y > 0 ? y : 0;
        changed = true;
    }
    memcpy(ms->base_v + (size_t)gi * (size_t)k, v, (size_t)k * sizeof *v);
    ms->base_pop[gi] = pop;
    return changed;
}

/* The sent row t's index among the sent, by id: the script returns rows
 * in the order they were sent, so a cursor finds each in one pass. */
static long find_sent(const fd_engine *e, const char *id, size_t len, uint32_t *cursor)
{
    const mf_sync *ms = &e->ms;
    const fd_mf_items *g = &e->mfpub.g;
    for (; *cursor < ms->n_sent; (*cursor)++) {
        const char *s = g->ids[ms->sent[*cursor]];
        if (strlen(s) == len && memcmp(s, id, len) == 0)
            return (long)(*cursor)++;
    }
    return -1;
}

void eng_mf_written(fd_engine *e, const redisReply *r)
{
    mf_sync *ms = &e->ms;
    if (!ms->pushing)
        return;
    ms->pushing = false;
    fd_mf_items *g = &e->mfpub.g;
    int k = g->k;
    size_t rb = row_bytes(k);
    char ikey[600], mkey[600], err[256];
    key_of(e, "mf:item", ikey, sizeof ikey);
    key_of(e, "model:mf", mkey, sizeof mkey);
    redisReply *rows = NULL, *tots = NULL;
    double stored[MF_TOTALS];
    bool have_tot = false;
    /* what the script stored otherwise than sent: (id, row) pairs */
    const redisReply *const *pairs = NULL;
    size_t n_pairs = 0;
    bool all_rows = false; /* the pairs are every sent row (read back) */
    double scale = 1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= MF_TOTALS + 1) {
        have_tot = true;
        for (int i = 0; i < MF_TOTALS; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                stored[i] = strtod(r->element[i]->str, NULL);
            else
                have_tot = false;
        if (r->element[MF_TOTALS]->type == REDIS_REPLY_INTEGER &&
            r->element[MF_TOTALS]->integer > 0)
            fd_err("mf",
                   "%s held %lld rows this instance cannot read (written by another program?): "
                   "they were replaced by this instance's",
                   ikey, r->element[MF_TOTALS]->integer);
        pairs = (const redisReply *const *)r->element + MF_TOTALS + 1;
        n_pairs = (r->elements - MF_TOTALS - 1) / 2;
    } else if (!r) {
        /* the reply was lost but the write applied: read back what is stored */
        size_t argc = 2 + ms->n_sent;
        const char **av = malloc(argc * sizeof *av);
        size_t *al = malloc(argc * sizeof *al);
        if (av && al) {
            av[0] = "HMGET";
            al[0] = 5;
            av[1] = ikey;
            al[1] = strlen(ikey);
            for (uint32_t t = 0; t < ms->n_sent; t++) {
                av[2 + t] = g->ids[ms->sent[t]];
                al[2 + t] = strlen(av[2 + t]);
            }
            if (ms->n_sent && fd_redis_appendv(e->redis, (int)argc, av, al) == 0 &&
                fd_redis_read_replies(e->redis, &rows, 1, err, sizeof err) == 0 &&
                rows->type == REDIS_REPLY_ARRAY && rows->elements == ms->n_sent)
                all_rows = true;
        }
        free(av);
        free(al);
        if (fd_redis_appendf(
                e->redis,
                "HMGET %s positives checks hits pop_hits refused ndcg_sum pop_ndcg_sum "
                "pop_t0",
                mkey) == 0 &&
            fd_redis_read_replies(e->redis, &tots, 1, err, sizeof err) == 0 &&
            tots->type == REDIS_REPLY_ARRAY && tots->elements == MF_TOTALS + 1) {
            have_tot = true;
            for (int i = 0; i < MF_TOTALS; i++)
                if (tots->element[i]->type == REDIS_REPLY_STRING)
                    stored[i] = strtod(tots->element[i]->str, NULL);
                else
                    have_tot = false;
            const redisReply *t0 = tots->element[MF_TOTALS];
            if (t0->type == REDIS_REPLY_STRING)
                scale = exp2((double)(strtoll(t0->str, NULL, 10) - e->mf_t0_sent) /
                             (double)e->mfp.pop_half_life_ms);
        }
    }
    if (!have_tot) {
        /* an error reply (counted as a refused command) or no read: the
         * base stays, so the next write carries this one's learning again */
        fd_warn("mf",
                "%s: the merged totals were not returned; the next write carries this "
                "write's learning again",
                mkey);
        goto out;
    }
    /* the rows it carried are stored: not sent again unless they change */
    e->mf_written = e->mf_sent;
    e->mf_t0_written = e->mf_t0_sent;
    e->mf_ring_written = e->mf_ring_sent;
    /* every sent row's base is what it was sent as, unless stored otherwise */
    for (uint32_t t = 0; t < ms->n_sent; t++) {
        uint32_t gi = ms->sent[t];
        memcpy(ms->base_v + (size_t)gi * (size_t)k, ms->sent_v + (size_t)t * (size_t)k,
               (size_t)k * sizeof(float));
        ms->base_pop[gi] = ms->sent_pop[t];
    }
    fd_mf_pub *pub = &e->mfpub;
    pthread_mutex_lock(&pub->mu);
    uint64_t m = pub->merges + 1;
    bool changed = false;
    uint32_t cursor = 0;
    float v[FD_MF_MAX_K];
    double pop;
    size_t n_rows = all_rows ? ms->n_sent : n_pairs;
    for (size_t j = 0; j < n_rows; j++) {
        const redisReply *id = all_rows ? NULL : pairs[2 * j],
                         *val = all_rows ? rows->element[j] : pairs[2 * j + 1];
        long t = all_rows                         ? (long)j
                 : id->type == REDIS_REPLY_STRING ? find_sent(e, id->str, id->len, &cursor)
                                                  : -1;
        if (t < 0 || val->type != REDIS_REPLY_STRING || val->len != rb ||
            unpack_row(val->str, val->len, k, v, &pop) != 0)
            continue;
        pop *= scale; /* read back: from the stored popularity scale to this instance's */
        uint32_t gi = ms->sent[t];
        if (take_over(e, (uint32_t)t, gi, v, pop)) {
            pub->chg[gi] = m;
            changed = true;
        }
    }
    if (changed)
        pub->merges = m;
    pthread_mutex_unlock(&pub->mu);
    /* the totals: G += stored - sent */
    double now[MF_TOTALS];
    totals_of(e, now);
    bool others = changed;
    for (int i = 0; i < MF_TOTALS; i++) {
        if (stored[i] != ms->tot_sent[i])
            others = true;
        now[i] += stored[i] - ms->tot_sent[i];
        if (!(now[i] > 0))
            now[i] = 0;
        ms->tot_base[i] = stored[i];
    }
    g->positives = count_of(now[0]);
    e->mfq.checks = count_of(now[1]);
    e->mfq.hits = count_of(now[2]);
    e->mfq.pop_hits = count_of(now[3]);
    e->mfq.refused = count_of(now[4]);
    e->mfq.ndcg = now[5];
    e->mfq.pop_ndcg = now[6];
    if (others) {
        if (ms->merges++ == 0)
            fd_info("mf",
                    "merged with other instances' learning (first time; later merges at debug "
                    "level): %" PRIu64 " positives",
                    g->positives);
        else
            fd_debug("mf", "merged with other instances' learning: %" PRIu64 " positives",
                     g->positives);
    }
out:
    if (rows)
        freeReplyObject(rows);
    if (tots)
        freeReplyObject(tots);
}
