/*
 * engine.h - the consume -> decode -> state -> Redis loop.
 *
 * This engine runs on one thread (the caller's): it consumes the
 * events topic in a consumer group, decodes and validates every message,
 * sends rejects to the dead-letter topic, keeps per-user and per-minute
 * counters in memory and writes them behind to Redis together with each
 * partition's next offset in one MULTI/EXEC (exactly-once state).
 */
#ifndef FD_ENGINE_H
#define FD_ENGINE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"

typedef struct fd_engine fd_engine;

/* Build the engine: codec, Redis handle, Kafka clients (and the embedded
 * mock cluster when kafka.brokers is "embedded"). Does not block on Redis.
 * NULL with errstr on failure. Caller destroys. cfg must outlive it. */
fd_engine *fd_engine_new(const fd_config *cfg, char *errstr, size_t errstr_size);

/* Load and check everything the start reads besides the network: the
 * schemas (and their compatibility), the Redis URL and password file, the
 * feature and funnel parameters. 0, or -1 with "FILE:LINE:COL: KEY: why"
 * (or "FILE: KEY (default): why") in errstr. No connection is made. Both
 * `funneld --check-config` and the start run it, so they agree. */
int fd_engine_check_config(const fd_config *cfg, char *errstr, size_t errstr_size);

/* What the engine polls between batches: *stop ends the run; when *reload
 * becomes non-zero it is reset and on_reload(arg) is called on the engine's
 * thread (may be NULL). Signal handlers only set these flags. */
typedef struct fd_engine_signals {
    volatile sig_atomic_t *stop;
    volatile sig_atomic_t *reload;
    void (*on_reload)(void *arg);
    void *arg;
    /* Called on the engine's thread before every poll (and once with the
     * engine stopping), as Redis' ae.c calls beforesleep: the daemon's
     * notify/watchdog hook. It must return quickly; it may call
     * fd_engine_get_status. May be NULL. */
    void (*before_poll)(fd_engine *e, bool stopping, void *hook_arg);
    void *hook_arg;
} fd_engine_signals;

/* What the engine tells systemd (fd_engine_get_status). */
typedef struct fd_engine_status {
    bool ready;            /* the group assigned this instance its partitions once (Redis
                              answered at start, or the engine would not run) */
    bool progressing;      /* every shard finished a batch in the last stall_ms, or has
                              nothing queued, or waits for Redis */
    int stuck_shard;       /* the first shard that is not progressing, or -1 */
    int assigned;          /* partitions assigned now */
    uint64_t messages;     /* messages handed to the shards since start */
    int64_t lag;           /* messages past the offsets stored in Redis, in the assigned
                              partitions (from librdkafka's cached high watermarks); -1 unknown */
    int64_t dead_letters;  /* dead letters produced since start */
    uint64_t writes;       /* MULTI/EXEC writes confirmed since start */
    int64_t write_ms_sum;  /* their round trips, summed */
    int64_t last_write_ms; /* the last one's */
} fd_engine_status;

/* What /metrics serves (daemon/http.c), taken on the engine thread. */
#define FD_WRITE_BUCKETS 10 /* Redis write latency: 5 ms .. 5 s, then +Inf */
extern const double fd_write_bucket_s[FD_WRITE_BUCKETS];
#define FD_METRICS_PARTS 256 /* partitions whose lag is reported */
typedef struct fd_engine_metrics {
    fd_engine_status st;
    int n_stats;                         /* the stats this instance stored since start, by index: */
    int64_t stat[128];                   /* fd_engine_stat_name names them (PREFIX stats fields) */
    uint64_t write_le[FD_WRITE_BUCKETS]; /* writes within each bucket (not cumulative) */
    double write_seconds_sum;
    uint64_t rebalances;
    uint64_t users; /* in memory, all shards */
    int n_shards;
    int64_t queued[64]; /* per shard */
    int n_lag;
    int32_t lag_part[FD_METRICS_PARTS];
    int64_t lag[FD_METRICS_PARTS]; /* -1 unknown */
    bool redis_ok;                 /* the last write went through (not blocked) */
    bool churn, mf;                /* the models are on */
    double auc, logloss;           /* churn: prequential */
    uint64_t examples;
    double recall, ndcg, pop_recall, pop_ndcg; /* mf: prequential @10 */
    uint64_t positives;
} fd_engine_metrics;

/* The flag a SIGTERM sets, looked at while fd_engine_new waits for Redis
 * (up to 30 s): a stop asked for during start-up ends the wait. */
void fd_engine_startup_stop(volatile sig_atomic_t *flag);

/* SIGHUP (engine thread only, from on_reload): apply the reloadable key
 * `key` (redis.flush_interval_ms, churn.alert_threshold, churn.rearm_margin,
 * churn.min_events, churn.alert_cooldown) from next, a validated config.
 * The shards take churn changes in stream order. 0, or -1 with errstr. */
int fd_engine_reload(fd_engine *e, const fd_config *next, const char *key, char *errstr,
                     size_t errstr_size);

/* Fill m (engine thread only, from before_poll). */
void fd_engine_get_metrics(fd_engine *e, fd_engine_metrics *m);
/* The name of stats field i ("events", "dlq.avro_decode", ...), in buf
 * unless static. Any thread. */
const char *fd_engine_stat_name(int i, char *buf, size_t n);

/* The engine's status now (engine thread only, from before_poll). A shard
 * is stuck when it had items queued and finished no batch for stall_ms. */
void fd_engine_get_status(fd_engine *e, int64_t stall_ms, fd_engine_status *st);

/* Run until *sig->stop becomes non-zero, then drain, flush, close the
 * consumer. Returns 0 on a clean stop, -1 on a fatal error (logged).
 * Calling thread only. */
int fd_engine_run(fd_engine *e, const fd_engine_signals *sig);

/* Bootstrap address of the embedded cluster, or NULL. */
const char *fd_engine_embedded_bootstraps(const fd_engine *e);

void fd_engine_destroy(fd_engine *e); /* NULL accepted */

#endif
