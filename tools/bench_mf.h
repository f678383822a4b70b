/* bench_mf.h - the recommendation model's microbenchmark (bench_mf.c),
 * part of `funnelctl bench-model`. */
#ifndef FD_BENCH_MF_H
#define FD_BENCH_MF_H

#include <stdint.h>

typedef struct fd_bench_mf_result {
    double update_ns;     /* fd_mf_learn, k = 32, 4 negatives: best pass */
    double top_blas_ms;   /* top-10 over `items` with cblas_sgemv: best */
    double top_loop_ms;   /* the same with a plain loop of dot products */
    double top_select_ms; /* the selection alone (fd_mf_top_of over the scores) */
    int top_same;         /* both chose the same 10 items in every rep */
    /* the shards' refresh (pipeline/shard_mf.c): REFRESH users' top 14
     * (10 + 4 bought) over refresh_items items, per user, best pass */
    double refresh_sgemv_us;  /* one cblas_sgemv per user, then the selection */
    double refresh_sgemm_us;  /* one cblas_sgemm for all of them, then the selections */
    double refresh_select_us; /* of which the selection */
    int refresh_users, refresh_items;
    int k, negatives, items;
} fd_bench_mf_result;

/* 0, or -1 (printed). Calling thread only. */
int fd_bench_mf(uint64_t updates, uint64_t reps, uint64_t seed, fd_bench_mf_result *r);

#endif
