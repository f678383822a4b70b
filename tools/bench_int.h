/*
 * bench_int.h - what the files of `funnelctl bench` share: the options, the
 * run (everything acquired, released by run_cleanup() in cmd_bench.c), the
 * result, and the functions one file calls in another:
 *
 *   cmd_bench.c      options, usage, main and cleanup
 *   bench_proc.c     small helpers and child processes
 *   bench_kafka.c    Kafka: topic, producer, consumers (the limit and kcat)
 *   bench_funneld.c  Redis and the funneld run (config, timing)
 *   bench_report.c   output: JSON and the human table
 *   bench_rss.c      --rss-users: peak RSS per user count, fixed cost and slope
 *   bench_core.c     the functional core alone (tools/bench.h)
 */
#ifndef FD_BENCH_INT_H
#define FD_BENCH_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "pipeline/kafka_mock.h"
#include "pipeline/redis.h"
#include "tools/bench.h"
#include "tools/gen.h"

struct FTW;

#define PROG           "funnelctl bench"
#define POLL_MS        50
#define MAX_PARTS      1024
#define STOP_WAIT_S    30.0
#define RSS_MAX_POINTS 8 /* --rss-users */

typedef struct bench_args {
    fd_gen_opts gen;
    int partitions, format, workers, reps;
    double timeout_s;
    const char *brokers, *topic, *redis_url, *funneld, *schema, *funneld_log;
    const char *preload; /* --preload: LD_PRELOAD for funneld only */
    bool json, core_only, no_kcat, peer;
    uint32_t rss_users[RSS_MAX_POINTS]; /* --rss-users */
    int n_rss;
} bench_args;

/* Everything the run acquires; released by run_cleanup() in reverse. */
typedef struct bench_run {
    char dir[PATH_MAX]; /* temp dir: config, logs, redis socket; "" = none */
    char schema[PATH_MAX], funneld[PATH_MAX + 16], funneld_log[PATH_MAX + 16];
    fd_mock *mock;
    char brokers[1024], topic[256], prefix[128];
    int nparts;
    int64_t hi[MAX_PARTS]; /* end offset of every partition */
    uint64_t total;        /* sum of hi */
    uint32_t active_users; /* users with at least one event in the topic (fd_gen) */
    pid_t redis_pid, funneld_pid;
    fd_redis *redis;
    bool given_redis;
} bench_run;

typedef struct bench_result {
    double raw_s, raw_first_s, raw_eps, kcat_s, kcat_eps, e2e_s, e2e_first_s, e2e_eps;
    bool have_kcat;
    int workers;
    bool workers_supported;
    double redis_cmds, redis_polls, peak_rss, funneld_cpu_s;
    /* steady state: each reader timed from its first message (raw) or the
     * first offset in Redis (funneld, the events stored by then left out)
     * to the end, so the group join both pay is not in the ratio */
    double raw_steady_eps, e2e_steady_eps;
    double e2e_first_events; /* events stored when the first offset appeared */
    double e2e_first_msg_s;  /* funneld's first consumed message (its log); -1: unknown */
    double redis_cpu_s;      /* redis-server's CPU during the funneld run; -1: unknown */
    int64_t funneld_events;
    /* --peer: tools/peer_consumer.py on the same topic (its own group) */
    bool have_peer;
    double peer_s, peer_first_s, peer_steady_eps, peer_cpu_s;
    fd_bench_core_result core;
} bench_result;

/* cmd_bench.c */
int bench_setup_topic(bench_run *run, const bench_args *a);
void bench_run_cleanup(bench_run *run);

/* bench_rss.c: --rss-users. 0 ok, 1 failure (printed). */
int bench_rss_series(bench_run *run, const bench_args *a);

/* bench_proc.c */
int bench_find_in_path(const char *name, char *buf, size_t size);
int bench_exe_dir(char *buf, size_t size);
/* The Avro schema: `given`, else conf/schemas/event.avsc from the working
 * directory, next to the build directory, or installed; its real path in
 * out. 0, or -1 when none is readable. */
int bench_find_schema(const char *given, char out[PATH_MAX]);
void bench_show_tail(const char *what, const char *path);
pid_t bench_spawn(char *const argv[], int out_fd, int err_fd);
/* The same with LD_PRELOAD=preload in the child's environment (NULL: as
 * bench_spawn): --preload, an allocator for funneld alone. */
pid_t bench_spawn_preload(char *const argv[], const char *preload, int out_fd, int err_fd);
int bench_wait_child(pid_t *pid, double timeout_s);
int bench_stop_child(pid_t *pid, int sig, double timeout_s);
int bench_run_to_end(char *const argv[], const char *log, double timeout_s);
int bench_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw);

/* bench_kafka.c */
int bench_load_topic(bench_run *run, const bench_args *a);
int bench_raw_consume(const bench_run *run, double timeout_s, double *secs, double *first_s);
/* bench_raw_consume, then its whole-run and steady rates (the steady one
 * from its first message: the group join left out) into res. */
int bench_raw_measure(const bench_run *run, double timeout_s, bench_result *res);
int bench_kcat_consume(const bench_run *run, const char *kcat, double timeout_s, double *secs);

/* bench_peer.c */
int bench_run_peer(const bench_run *run, const bench_args *a, bench_result *res);

/* bench_funneld.c */
int bench_redis_open(bench_run *run, const bench_args *a);
void bench_redis_delete_prefix(bench_run *run);
int bench_run_funneld(bench_run *run, const bench_args *a, bench_result *res);

/* bench_report.c */
void bench_print_json(const bench_args *a, const bench_run *run, const bench_result *r);
void bench_print_table(FILE *out, const bench_args *a, const bench_run *run, const bench_result *r);

#endif
