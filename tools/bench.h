/*
 * bench.h - the functional-core half of `funnelctl bench` (--no-io and
 * --core-only): generated events, pre-decoded in memory, pushed through
 * exactly the per-event work of an engine shard (fd_user_table_upsert +
 * fd_core_apply, with the churn model's timers, labels, learning and
 * scoring) on the calling thread, with no Kafka, Redis or clock in
 * the loop. The orchestration (broker, redis-server, funneld, kcat) lives
 * in tools/cmd_bench.c and the bench_*.c files (tools/bench_int.h).
 */
#ifndef FD_BENCH_H
#define FD_BENCH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/gen.h"

typedef struct fd_bench_core_opts {
    fd_gen_opts gen; /* the same events as the topic: same seed, users, events */
    int partitions;  /* window deltas are keyed by partition, as in a shard */
    int reps;        /* timed passes over all events, >= 1 */
} fd_bench_core_opts;

typedef struct fd_bench_core_result {
    uint64_t events;                     /* events per pass */
    uint64_t users;                      /* distinct users in the table after a pass */
    int reps;                            /* timed passes */
    double median_ns_per_event;          /* median over the passes, with the churn model (the
                                            reported figure) */
    double median_no_model_ns_per_event; /* the same work without the churn model */
    double best_ns_per_event;            /* fastest pass */
    double median_events_per_s;          /* 1e9 / median_ns_per_event */
    double median_apply_ns_per_event;    /* of which fd_core_apply: features, session, funnel
                                            (passes without the model) */
    double user_table_bytes; /* heap held by the user table after pass 1; < 0 = unknown */
    double bytes_per_user;   /* user_table_bytes / users; < 0 = unknown */
} fd_bench_core_result;

/* Run one untimed warm-up over the first chunk, then opts->reps times two
 * timed passes (without and with the churn model) over all opts->gen.events events, each into a
 * fresh user table and window table (so first-sight inserts are part of the work, as in a shard
 * after start). Events are generated in chunks into a reused array (not
 * timed): an fd_event is ~1.3 KB, so 2M of them would need 2.6 GB. Only the
 * apply loop over each chunk is timed. Heap growth of the user table is
 * measured in the first pass with mallinfo2 (in-use arena + mmapped bytes).
 *
 * Returns 0, -1 with errstr on failure, or 1 when *stop became non-zero.
 * Calling thread only; allocates and frees everything it uses. */
int fd_bench_core_run(const fd_bench_core_opts *opts, volatile sig_atomic_t *stop,
                      fd_bench_core_result *out, char *errstr, size_t errstr_size);

#endif
