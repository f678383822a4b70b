/*
 * bench_mf.c - the recommendation model's half of `funnelctl bench-model`
 * (models/mf.h), one core, no Kafka or Redis:
 *
 * - update: fd_mf_learn (one positive, k = 32, 4 sampled negatives) on a
 *   stream of (user, item) pairs drawn before the clock starts from 10,000
 *   users and 100,000 items (Zipf-like item popularity), factors in memory
 *   as the shards keep them; best of --reps passes.
 * - top-10 over 100,000 items: fd_mf_top_n (cblas_sgemv over the item
 *   matrix, then a partial selection) against the same selection over a
 *   plain loop of dot products, both single-threaded; the output says which
 *   one wins and checks that both chose the same items.
 * - the shards' refresh at a snapshot: the top 14 of 64 users over 2,000
 *   items (the default bench's catalogue), one cblas_sgemv per user against
 *   one cblas_sgemm for the batch, each followed by the selections.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/mf.h"
#include "tools/bench_mf.h"
#include "tools/cli.h"

#define USERS         10000
#define ITEMS         100000
#define STREAM        65536
#define REFRESH_USERS 64
#define REFRESH_ITEMS 2000
#define REFRESH_TOP   14

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* top-10 with a plain loop of dot products and the library's selection */
static int top_loop(const fd_mf_items *it, const float *u, float *scratch, int32_t *idx)
{
    for (uint32_t i = 0; i < it->n; i++)
        scratch[i] = fd_mf_score(it, u, (int32_t)i);
    return fd_mf_top_of(scratch, it->n, NULL, 0, 10, idx, NULL);
}

int fd_bench_mf(uint64_t updates, uint64_t reps, uint64_t seed, fd_bench_mf_result *r)
{
    fd_mf_params p;
    fd_mf_params_default(&p);
    fd_mf_items it;
    int rc = -1;
    float *U = malloc((size_t)USERS * (size_t)p.k * sizeof *U);
    float *scratch = malloc(ITEMS * sizeof *scratch);
    uint32_t *su = malloc(STREAM * sizeof *su), *si = malloc(STREAM * sizeof *si);
    uint8_t *st = malloc(STREAM);
    if (fd_mf_items_init(&it, &p) != 0 || !U || !scratch || !su || !si || !st) {
        fprintf(stderr, "funnelctl bench-model: out of memory\n");
        goto out;
    }
    char id[32];
    for (int i = 0; i < ITEMS; i++) {
        int len = snprintf(id, sizeof id, "item-%d", i);
        if (fd_mf_item(&it, &p, id, (size_t)len, true) != i) {
            fprintf(stderr, "funnelctl bench-model: item table\n");
            goto out;
        }
    }
    for (int u = 0; u < USERS; u++) {
        int len = snprintf(id, sizeof id, "user-%d", u);
        fd_mf_user_init(&p, id, (size_t)len, U + (size_t)u * (size_t)p.k);
    }
    uint64_t s = seed * 2654435761ULL + 1;
    for (int e = 0; e < STREAM; e++) {
        su[e] = (uint32_t)(next(&s) % USERS);
        /* Zipf-like: the square of a uniform picks low indexes more often */
        double x = (double)(next(&s) >> 11) * 0x1p-53;
        si[e] = (uint32_t)(x * x * ITEMS);
        st[e] = (uint8_t)(next(&s) % 3);
    }
    r->update_ns = INFINITY;
    for (uint64_t rep = 0; rep < reps; rep++) {
        double t0 = fd_cli_now_s();
        for (uint64_t e = 0; e < updates; e++) {
            size_t k = e % STREAM;
            /* as a shard over a batch: the item a few events ahead */
            fd_mf_prefetch(&it, (int32_t)si[(k + 8) % STREAM]);
            __builtin_prefetch(U + (size_t)su[(k + 8) % STREAM] * (size_t)p.k, 1);
            fd_mf_learn(&p, &it, U + (size_t)su[k] * (size_t)p.k, (int32_t)si[k], st[k],
                        (int64_t)e * 1000);
        }
        double ns = (fd_cli_now_s() - t0) * 1e9 / (double)updates;
        if (ns < r->update_ns)
            r->update_ns = ns;
    }
    openblas_set_num_threads(1);
    int32_t a[10], b[10];
    r->top_blas_ms = r->top_loop_ms = r->top_select_ms = INFINITY;
    r->top_same = 1;
    for (uint64_t rep = 0; rep < reps; rep++) {
        const float *u = U + (size_t)(rep % USERS) * (size_t)p.k;
        double t0 = fd_cli_now_s();
        int m1 = fd_mf_top_n(&it, u, NULL, 0, 10, scratch, a, NULL);
        double t1 = fd_cli_now_s();
        int m2 = top_loop(&it, u, scratch, b);
        double t2 = fd_cli_now_s();
        int32_t c[10];
        int m3 = fd_mf_top_of(scratch, it.n, NULL, 0, 10, c, NULL); /* scores still there */
        double t3 = fd_cli_now_s();
        if ((t3 - t2) * 1e3 < r->top_select_ms)
            r->top_select_ms = (t3 - t2) * 1e3;
        if (m3 != 10 || memcmp(b, c, sizeof b) != 0)
            r->top_same = 0;
        if ((t1 - t0) * 1e3 < r->top_blas_ms)
            r->top_blas_ms = (t1 - t0) * 1e3;
        if ((t2 - t1) * 1e3 < r->top_loop_ms)
            r->top_loop_ms = (t2 - t1) * 1e3;
        if (m1 != 10 || m2 != 10 || memcmp(a, b, sizeof a) != 0)
            r->top_same = 0; /* float sums in another order may swap a tie */
    }
    /* the refresh: the first REFRESH_ITEMS rows are a catalogue of their own */
    float *S = malloc((size_t)REFRESH_USERS * REFRESH_ITEMS * sizeof *S);
    if (!S) {
        fprintf(stderr, "funnelctl bench-model: out of memory\n");
        goto out;
    }
    r->refresh_sgemv_us = r->refresh_sgemm_us = r->refresh_select_us = INFINITY;
    for (uint64_t rep = 0; rep < reps * 20; rep++) {
        const float *u = U + (size_t)(rep * REFRESH_USERS % (USERS - REFRESH_USERS)) * (size_t)p.k;
        int32_t top[REFRESH_TOP];
        int got = 0;
        double t0 = fd_cli_now_s();
        for (int x = 0; x < REFRESH_USERS; x++) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, REFRESH_ITEMS, it.k, 1.0f, it.v, it.k,
                        u + (size_t)x * (size_t)p.k, 1, 0.0f, scratch, 1);
            got += fd_mf_top_of(scratch, REFRESH_ITEMS, NULL, 0, REFRESH_TOP, top, NULL);
        }
        double t1 = fd_cli_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, REFRESH_USERS, REFRESH_ITEMS, it.k,
                    1.0f, u, p.k, it.v, it.k, 0.0f, S, REFRESH_ITEMS);
        double t2 = fd_cli_now_s();
        for (int x = 0; x < REFRESH_USERS; x++)
            got += fd_mf_top_of(S + (size_t)x * REFRESH_ITEMS, REFRESH_ITEMS, NULL, 0, REFRESH_TOP,
                                top, NULL);
        double t3 = fd_cli_now_s(), per = 1e6 / REFRESH_USERS;
        if (got != 2 * REFRESH_USERS * REFRESH_TOP)
            r->top_same = 0;
        if ((t1 - t0) * per < r->refresh_sgemv_us)
            r->refresh_sgemv_us = (t1 - t0) * per;
        if ((t3 - t1) * per < r->refresh_sgemm_us)
            r->refresh_sgemm_us = (t3 - t1) * per;
        if ((t3 - t2) * per < r->refresh_select_us)
            r->refresh_select_us = (t3 - t2) * per;
    }
    free(S);
    r->refresh_users = REFRESH_USERS;
    r->refresh_items = REFRESH_ITEMS;
    r->k = p.k;
    r->negatives = p.negatives;
    r->items = ITEMS;
    rc = 0;
out:
    fd_mf_items_free(&it);
    free(U);
    free(scratch);
    free(su);
    free(si);
    free(st);
    return rc;
}
