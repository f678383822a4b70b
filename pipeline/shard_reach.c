/*
 * shard_reach.c - the funnel's unique users per stage, from a shard's
 * snapshot: one PFADD per HyperLogLog, keys sorted (see shard_int.h).
 */
#include "pipeline/shard_int.h"

/* ---- unique users per stage -------------------------------------------- */

/* An empty HyperLogLog in Redis' dense encoding: "HYLL", encoding 0
 * (dense), 3 unused bytes, an 8-byte cached cardinality (0, valid), then
 * 16384 6-bit registers, all 0. */
#define FD_HLL_DENSE_BYTES (16 + 16384 * 6 / 8)
static const char *hll_empty_dense(void)
{
    static const char hll[FD_HLL_DENSE_BYTES] = {'H', 'Y', 'L', 'L'};
    return hll;
}

/* True the first time this shard sees an hour HyperLogLog (key as in
 * sreach) since it started or last forgot: a set of keys, forgotten
 * whole when half full (sending SET NX again is harmless). */
static bool dense_first(fd_shard *s, uint64_t key)
{
    size_t mask = DENSE_SET - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 40) & mask;
    for (; s->dense[i]; i = (i + 1) & mask)
        if (s->dense[i] == key)
            return false;
    if (s->n_dense >= DENSE_SET / 2) {
        memset(s->dense, 0, sizeof s->dense);
        s->n_dense = 0;
        i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 40) & mask;
    }
    s->dense[i] = key;
    s->n_dense++;
    return true;
}

/* key: the HyperLogLog, (start << 4) | (hour << 3) | stage (event times
 * are >= 0, fd_event_validate; stages are 1..4) */
_Static_assert(FD_STAGE_PURCHASE < 8, "stage must fit in 3 bits");
typedef struct sreach {
    uint64_t key;
    const char *id;
    uint32_t len;
} sreach;

/* Sort r[0..n) by key, stable, with tmp (n entries): LSD radix over the
 * bytes in which the keys differ (an epoch's windows span a few hours to
 * days: 4-6 passes). Was qsort, ~6 % of funneld's CPU in perf. */
static sreach *sreach_sort(sreach *r, sreach *tmp, size_t n)
{
    if (n < 2)
        return r;
    uint64_t lo = r[0].key, hi = r[0].key;
    for (size_t i = 1; i < n; i++) {
        lo = r[i].key < lo ? r[i].key : lo;
        hi = r[i].key > hi ? r[i].key : hi;
    }
    uint64_t span = hi - lo;
    for (int shift = 0; shift < 64 && (span >> shift) != 0; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[((r[i].key - lo) >> shift & 0xff) + 1]++;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++)
            tmp[count[(r[i].key - lo) >> shift & 0xff]++] = r[i];
        sreach *t = r;
        r = tmp;
        tmp = t;
    }
    return r;
}

/* The PFADDs of the users that reached a stage in a window (and in its
 * hour) since the last marker, one per HyperLogLog, into b (the snapshot's
 * pfadd; the writer sends them just before its MULTI/EXEC).
 *
 * Why PFADD outside the transaction: it is idempotent (a set union), so
 * adding before the offsets that cover the events are stored is safe: a
 * crash or a lost partition replays the same events, which add the same
 * users again and change nothing; and on the writer's connection they are
 * applied before the EXEC that stores the offsets. Outside the MULTI,
 * Redis works through them between other clients' commands instead of
 * inside one transaction that stalls every shard's user loads; built
 * here, the sorting and formatting run on the shards, in parallel.
 * Returns 0, or -1 when out of memory. */
int build_reaches(fd_shard *s, fd_resp *b)
{
    size_t n;
    const fd_funnel_reach *fr = fd_funnel_reaches(s->funnel, &n);
    if (!n)
        return 0;
    const fd_funnel_params *fp = &s->env->core->funnel;
    bool hourly = fp->window_ms != FD_HOUR_MS;
    size_t m = 0, need = n * (hourly ? 2 : 1);
    if (need > s->cap_sreach) { /* the entries, then as many for the sort */
        sreach *nr = realloc(s->sreach, 2 * need * sizeof *nr);
        if (!nr)
            return -1;
        s->sreach = nr;
        s->cap_sreach = need;
    }
    sreach *r = s->sreach;
    for (size_t i = 0; i < n; i++) {
        uint64_t st = (uint64_t)fr[i].stage, start = (uint64_t)fr[i].start_ms;
        r[m++] = (sreach){start << 4 | st, fr[i].user, fr[i].user_len};
        if (hourly)
            r[m++] =
                (sreach){(start - start % FD_HOUR_MS) << 4 | 8 | st, fr[i].user, fr[i].user_len};
    }
    r = sreach_sort(r, r + need, m);
    const char *prefix = s->env->cfg->redis_key_prefix;
    char key[FD_ID_MAX + 600];
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && r[j].key == r[i].key)
            j++;
        fd_funnel_key(key, sizeof key, prefix, (r[i].key & 8) ? "1h" : fp->window_name,
                      (int64_t)(r[i].key >> 4), ":users:", fd_stage_name((int)(r[i].key & 7)));
        size_t kl = strlen(key);
        if ((r[i].key & 8) && dense_first(s, r[i].key)) {
            /* An hour's HyperLogLog starts dense (SET NX of an empty one):
             * Redis keeps a new HyperLogLog sparse until ~3 KB, and adding
             * to a large sparse one scans it per element. In funnelctl bench
             * all PFADDs (windows and hours) took 1.0 s of Redis' 1.3 s
             * of commands per 2 M events, and 0.19 s once the hours were
             * dense. An hour that reaches a few thousand users is dense
             * anyway. */
            fd_resp_cmd(b, 4);
            fd_resp_str(b, "SET");
            fd_resp_arg(b, key, kl);
            fd_resp_arg(b, hll_empty_dense(), FD_HLL_DENSE_BYTES);
            fd_resp_str(b, "NX");
        }
        fd_resp_cmd(b, 2 + (int)(j - i));
        fd_resp_str(b, "PFADD");
        fd_resp_arg(b, key, kl);
        for (size_t k = i; k < j; k++)
            fd_resp_arg(b, r[k].id, r[k].len);
        i = j;
    }
    return b->oom ? -1 : 0;
}
