/*
 * engine_int.h - what the engine's files share: its types, limits and the
 * functions one of them calls in another. Not an API: engine.h is.
 *
 *   engine.c  life cycle, helper threads, epochs (the marker and snapshot
 *             bookkeeping), when to write, the main loop and shutdown
 *   pause.c   pausing, resume-and-seek, stuck partitions sought or assigned
 *             again
 *   engine_status.c  status, /metrics copy, stats names, SIGHUP reload
 *   router.c  assignment (stored offsets, data loss) and routing by key
 *   writer.c  the MULTI/EXEC of the epochs and its exactly-once rules,
 *             refused writes and commands, the I/O thread
 *   closer.c  the closer thread: closing windows, metrics, retention
 *
 * Every field of struct fd_engine belongs to the consumer thread unless its
 * comment says otherwise (the closer's and the I/O thread's own structs).
 */
#ifndef FD_ENGINE_INT_H
#define FD_ENGINE_INT_H

#include "pipeline/engine.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "features/user.h"
#include "features/funnel.h"
#include "pipeline/codec.h"
#include "pipeline/metrics.h"
#include "pipeline/kafka.h"
#include "pipeline/kafka_mock.h"
#include "pipeline/redis.h"
#include "pipeline/shard.h"
#include "pipeline/model_pub.h"
#include "models/churn.h"

#define ROUTE_CHUNK  512 /* messages routed per round */
#define PART_KEY_MAX 512 /* PREFIX part:TOPIC:P (eng_part_key) */
#define MAX_EPOCHS   4   /* pending epochs (normally one) */

typedef struct part {
    bool assigned, paused, need_resolve, dirty;
    int64_t next_offset;          /* after the last message handed to a shard; -1 unknown */
    int64_t polled_offset;        /* after the last message polled (handed on or waiting) */
    int64_t stored_offset;        /* in Redis (confirmed); -1 = none */
    int64_t max_ts;               /* max event time routed (readable ts, not in the future) */
    int64_t confirmed_max_ts;     /* max_ts stored in Redis with stored_offset */
    int64_t data_loss;            /* offsets lost to retention, not yet written */
    uint64_t msgs, msgs_at_check; /* messages taken; at the last stuck check */
    int stuck_tries;              /* unstick_partitions' seeks since it last delivered */
    int64_t idle_since_ms;        /* no message taken since (stuck check) */
} part;

/* The closer: a thread of its own that closes the funnel windows the
 * topic's watermark (in Redis) has passed, sends their metrics and deletes
 * expired ones, with its own Redis connection. Closing reads and writes
 * only windows no event can change any more, so it needs no lock with the
 * writer; on the consumer thread it took as long as the writes themselves
 * (a delivery wait per 512 windows) and starved the shards meanwhile.
 * Everything below is the closer thread's own while it runs; the consumer
 * thread uses it only after eng_closer_stop joined it. */
/* A helper thread: the flag that stops it, and the lock and condition it
 * waits on (the closer and the writer's I/O thread). */
typedef struct bgthread {
    pthread_t thread;
    bool started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} bgthread;

typedef struct part_empty {
    bool empty, nonempty;     /* the broker said the partition is (not) empty */
    int64_t empty_checked_at; /* when it was last asked (mono ms) */
    int64_t empty_since;      /* first of the answers "empty" in a row (mono ms), or 0 */
} part_empty;

typedef struct closer {
    bgthread t;             /* its mu guards kicks */
    uint64_t kicks;         /* writes since start: each may let windows close */
    fd_redis *redis;        /* the closer's connection */
    fd_metrics_enc *menc;   /* funnel-metrics messages */
    int64_t closed_wm;      /* windows ending at or before this were sent */
    int n_topic_parts;      /* partitions of the events topic (metadata) */
    int64_t topic_parts_at; /* when n_topic_parts was read */
    part_empty *pe;         /* per topic partition */
    int n_pe;
    atomic_bool catching_up; /* the consumer has a backlog (set after each write) */
} closer;

/* The writer's I/O thread: once the consumer thread has queued a whole
 * write (PFADDs, MULTI ... EXEC) on the writer's connection, this thread
 * sends it and reads the replies, so the consumer thread keeps polling and
 * routing meanwhile (the shards' queues drain in ~50 ms; a write takes
 * 100-400 ms on a backlog). The connection is handed over and back under
 * mu: the consumer thread touches e->redis only while state is IO_IDLE
 * (eng_write_poll waits for that first). */
enum { IO_IDLE = 0, IO_PENDING, IO_DONE };
#define IO_ERR_MAX 16
typedef struct wio {
    bgthread t; /* its mu guards what follows */
    int state;
    size_t n_replies;  /* to read; the last is kept */
    size_t n_pre;      /* of them, before MULTI's (the PFADDs) */
    int rc;            /* 0, or -1: the connection failed (outcome unknown) */
    redisReply *reply; /* the last one (EXEC's) */
    /* Error replies, for the consumer thread to name (see refused_cmd):
     * among the n_pre, which (the first IO_ERR_MAX) and what Redis said;
     * and the first one from MULTI on, which says why EXEC was aborted. */
    size_t n_pre_err;
    size_t pre_err_at[IO_ERR_MAX];
    char pre_err[IO_ERR_MAX][160];
    char queued_err[256];
} wio;

/* Commands Redis refused inside a write, by kind (stats write_errors.KIND):
 * the key families of docs/REDIS_KEYS.md. */
enum {
    WE_WINDOW = 0,
    WE_UNIQUE_USERS,
    WE_FUNNEL_OPEN,
    WE_USER,
    WE_STATS,
    WE_PART,
    WE_MODEL,
    WE__COUNT
};
static const char *const we_kind[WE__COUNT] = {"window", "unique_users", "funnel_open", "user",
                                               "stats",  "part",         "model"};
/* The stats fields the writer adds: the shards' (FD_ST_*), then
 * write_errors and write_errors.KIND (see stat_field). */
#define SF_WE_TOTAL FD_ST__COUNT
#define SF_WE0      (FD_ST__COUNT + 1)
#define SF__COUNT   (SF_WE0 + WE__COUNT)

/* A run of commands of one write, for naming the key of a refused one. */
typedef struct wseg {
    size_t first, n;    /* replies before MULTI's (pre), or EXEC's elements */
    bool pre;           /* before MULTI (PFADDs) */
    uint8_t kind;       /* WE_* */
    const fd_resp *src; /* the commands (alive until the write is finished), or NULL */
    int field;          /* WE_STATS: the SF_* field the HINCRBY adds to */
    int64_t value;      /*   and by how much */
    int32_t part;       /* WE_PART: the partition */
} wseg;

/* Keys already named in the log (refused_cmd): at most once per
 * WKEY_RELOG_MS each; the rest go into a summary every WSUMMARY_MS. */
#define WKEY_SLOTS    64
#define WKEY_RELOG_MS (10 * 60 * 1000)
#define WSUMMARY_MS   60000
typedef struct wkeys {
    uint64_t hash[WKEY_SLOTS];
    int64_t at[WKEY_SLOTS]; /* when logged (mono ms); 0 = free */
    uint64_t quiet;         /* refused commands not logged since the last summary */
    int64_t summary_at;
} wkeys;

/* Redis refuses whole writes (OOM, MISCONF, READONLY, LOADING, NOAUTH, a
 * partition key of another type, ...): retried with redis.backoff_*; logged
 * when it starts, every REFUSE_SUMMARY_MS while it lasts, when it ends. */
#define REFUSE_SUMMARY_MS 10000
typedef struct wrefusal {
    bool active;
    fd_backoff bo;
    char cause[320], code[32];
    int64_t since, summary_at;
    uint64_t attempts, at_summary;
} wrefusal;

/* What the consumer thread needs to finish a write once io read it. */
typedef struct inflight {
    bool active;
    int32_t *parts; /* partitions written */
    int64_t *offset, *max_ts;
    int n, n_epochs;
    size_t n_cmds;
    size_t users;      /* user records written */
    size_t user_bytes; /* the RESP bytes of their chunks (records, recommendations, churn) */
    int64_t t_start;
    long model_at;            /* EXEC's element that answers the churn model's EVAL; -1 none */
    long mf_at;               /* ... the recommendation model's; -1 none */
    int64_t stats[SF__COUNT]; /* the stats deltas it adds (metrics totals once confirmed) */
} inflight;

/* One flush: the offsets recorded at its marker and the shards' snapshots. */
typedef struct epoch {
    uint64_t id;
    int n_parts;                       /* size of the arrays below */
    int64_t *offset;                   /* per partition; -1 = not in this epoch */
    int64_t *max_ts;                   /* per partition: its max_ts at the marker */
    int64_t *data_loss;                /* per partition */
    int64_t dlq_failed[FD_REJ__COUNT]; /* dead letters reported failed, taken into it */
    bool *valid;                       /* per partition: still ours (false once revoked) */
    fd_snapshot **snaps;               /* per shard; NULL until it answered */
    int missing;                       /* shards yet to answer */
    fd_lr *model;                      /* churn: the merged model after this epoch */
    fd_quality *quality;               /* ... and the quality sums */
} epoch;

/* The churn model's exchange with Redis (churn_state.c; consumer thread).
 * base is the model as this instance last read or wrote it in PREFIX
 * model:churn; a write sends the newest epoch's model and base, and a
 * script in the transaction adds (model - base) onto whatever is stored. */
typedef struct churn_sync {
    char *base_lr, *base_qt; /* base's stored text (NULL: none yet) */
    bool pushing;            /* the write in flight carries the model */
    uint64_t merges;         /* writes that merged another instance's learning */
    fd_lr from;              /* the epoch model the write in flight carries */
    fd_quality from_q;
    char *push_lr, *push_qt; /* its text (FD_LR_TEXT_MAX, FD_Q_TEXT_MAX) */
} churn_sync;

/* The recommendation model's exchange with Redis (mf_state.c; consumer
 * thread): what this instance last read or wrote of each item row and of
 * the totals (the base), and what the write in flight sends, so a script
 * in the transaction can add (sent - base) onto whatever is stored. */
#define MF_TOTALS 7 /* positives checks hits pop_hits refused ndcg_sum pop_ndcg_sum */
typedef struct mf_sync {
    float *base_v;    /* per row of G (k each), as last stored; rows >= n_base: */
    double *base_pop; /* their initial value and no popularity */
    uint32_t n_base, cap_base;
    uint32_t *sent; /* the rows the write in flight carries ... */
    float *sent_v;  /* ... their factors and popularity as sent */
    double *sent_pop;
    uint32_t n_sent, cap_sent;
    double tot_base[MF_TOTALS], tot_sent[MF_TOTALS];
    bool pushing;    /* the write in flight carries the model */
    uint64_t merges; /* writes that merged another instance's learning */
} mf_sync;

struct fd_engine {
    const fd_config *cfg;
    fd_mock *mock;
    char *bootstraps;
    rd_kafka_t *consumer, *producer;
    fd_redis *redis;                   /* the writer's connection */
    fd_funnel_table *merged;           /* the writer's scratch: windows of one write */
    fd_resp wbuf;                      /* the writer's scratch: commands of one write */
    fd_core_params core;               /* features and funnel parameters (shards share them) */
    fd_churn_params churn;             /* churn model parameters (shards copy them) */
    fd_reload_box reload;              /* SIGHUP's alert parameters (fd_engine_reload) */
    int64_t flush_ms;                  /* redis.flush_interval_ms, as SIGHUP last set it */
    bool churn_on;                     /* churn.enabled */
    fd_model_pub pub;                  /* the merged model, published to the shards */
    fd_lr G;                           /* the merged model (consumer thread) */
    fd_quality Gq;                     /* the merged quality sums */
    churn_sync cs;                     /* the model's exchange with Redis (other instances) */
    bool mf_on;                        /* mf.enabled */
    fd_mf_params mfp;                  /* recommendation model parameters (shards share them) */
    fd_mf_pub mfpub;                   /* the merged item factors, published to the shards */
    fd_mf_quality mfq;                 /* the prequential quality counts, totals */
    fd_resp mfbuf;                     /* the item rows of the write in flight */
    uint64_t mf_written;               /* merges whose rows a confirmed write carried */
    uint64_t mf_sent;                  /* ... the write in flight carries */
    int64_t mf_t0_written, mf_t0_sent; /* the popularity scale they were written in */
    uint64_t mf_ring_ver, mf_ring_sent, mf_ring_written; /* the sampler's changes (merges) */
    mf_sync ms;      /* the item rows' exchange with Redis (other instances) */
    fd_codec *codec; /* the consumer thread's: event times for the watermark */
    closer cl;       /* closes windows and sends their metrics */
    fd_shard **shards;
    int n_shards;
    fd_shard_env env;
    atomic_uint_fast64_t confirmed_epoch;
    atomic_int abort;
    atomic_int stalled;
    bool stall_blocked;       /* blocked because shards wait for Redis */
    bool first_consumed;      /* the first message was consumed (and logged) */
    bool assigned_once;       /* the group assigned partitions (possibly none) once */
    int64_t stuck_checked_ms; /* unstick_partitions (engine.c) last ran */
    uint64_t handed;          /* messages handed to the shards */
    uint64_t epoch_routed;    /* of them, since the last epoch started (its marker) */
    size_t *dirty_mark;       /* per shard: its users turned dirty, at that marker */
    bool draining;            /* stopping: every waiting message is handed on */
    uint64_t *wd_batches;     /* per shard: batches at wd_change_ms (fd_engine_get_status) */
    int64_t *wd_change_ms;

    part *parts;
    int n_parts;

    /* messages polled but not yet handed to a shard, in poll order */
    rd_kafka_message_t **wait;
    size_t wait_head, wait_len, wait_cap;
    fd_item *route_buf;        /* per shard ROUTE_CHUNK items */
    rd_kafka_message_t **reap; /* scratch list for fd_shard_reap */
    size_t reap_cap;
    size_t *route_n, *route_room;

    epoch *epochs[MAX_EPOCHS]; /* pending, oldest first */
    int n_epochs;
    uint64_t next_epoch;
    wio io;                  /* reads the replies of the write in flight */
    inflight wf;             /* the write whose replies io is reading */
    bool write_ambiguous;    /* the last EXEC's outcome is unknown */
    int64_t *attempt_offset; /* per partition, offsets of that EXEC */
    wrefusal refuse;         /* Redis refuses whole writes */
    wseg *segs;              /* the write in flight's runs of commands */
    size_t n_segs, cap_segs;
    bool segs_oom;                 /* a run could not be recorded: its errors go unnamed */
    wkeys wkeys;                   /* keys named in the log */
    int64_t carry[SF__COUNT];      /* stats deltas not stored yet (refused, or write errors) */
    int64_t carry_sent[SF__COUNT]; /* of them, in the write in flight (or the ambiguous one) */
    fd_backoff carry_bo;           /* eng_flush_carry's retries */

    bool blocked;    /* Redis or the producer unavailable */
    bool queue_full; /* a shard's queue is full */
    int64_t queue_full_since;
    int fatal;
    int64_t last_flush_ms;
    int64_t last_write_ms;               /* how long the last MULTI/EXEC round trip took */
    uint64_t writes;                     /* confirmed MULTI/EXEC round trips since start ... */
    int64_t write_ms_sum;                /* ... and their durations summed (progress lines) */
    uint64_t write_le[FD_WRITE_BUCKETS]; /* ... of them within each bucket (metrics) */
    int64_t totals[SF__COUNT];           /* the stats this instance stored since start (metrics) */
    uint64_t rebalances;                 /* assignments the group handed this instance */
    char key[PART_KEY_MAX];              /* the consumer thread's eng_part_key buffer */

    rd_kafka_queue_t *cq;   /* the consumer's queue (batch consume) */
    fd_fetch_nudge nudge;   /* wakes librdkafka's fetcher after a full queue drained */
    int64_t dlq_wait_since; /* a write waits for dead letters since (mono ms), or 0 */
    int64_t dlq_failed_taken[FD_REJ__COUNT]; /* fd_kafka_dlq_failed taken into epochs */
    int64_t backlog_checked_ms;              /* when cl.catching_up was last refreshed */
};

/* closer.c */
void eng_close_windows(fd_engine *e);
/* Send the churn-alert outbox to kafka.topic_alerts (closer.c). */
void eng_send_alerts(fd_engine *e);
void eng_closer_kick(fd_engine *e);
void *eng_closer_main(void *arg);
void eng_closer_stop(fd_engine *e);
bool eng_hourly(const fd_engine *e);
const char *eng_window_key(fd_engine *e, char *buf, size_t n, const char *span, int64_t start,
                           int32_t cat);
/* engine.c */
void eng_bg_stop(bgthread *b);
void eng_broadcast(fd_engine *e, fd_item it);
bool eng_collect(fd_engine *e);
void eng_confirm(fd_engine *e, int upto);
void eng_drop_partition(fd_engine *e, int32_t p, bool resolve_again);
part *eng_get_part(fd_engine *e, int32_t p);
const char *eng_part_key(const fd_engine *e, int32_t p, char buf[PART_KEY_MAX]);
void eng_set_blocked(fd_engine *e, bool blocked, const char *why);
/* engine.epoch_max_events and engine.epoch_max_users bound an epoch: when
 * that many events were handed to the shards, or that many users changed,
 * since the last marker, routing stops (router.c) and a flush starts
 * (engine.c) as soon as the previous epoch is written. An epoch's memory
 * grows with its events (funnel deltas per partition and window, stage
 * reaches) and with its users (their records, ~0.7-0.9 KB each, built before the
 * write): without the bounds, epochs grew to what the shards applied during
 * a write (5 s or more under a backlog), and with many users an epoch of
 * 131,072 events held ~100,000 users' records. docs/BENCHMARKS.md, "Memory:
 * fixed cost and RSS per user". */
bool eng_epoch_full(fd_engine *e);
/* A full shard queue is waited out this long before the partitions pause
 * (pausing makes librdkafka drop and refetch what it had prefetched). */
#define QUEUE_FULL_PAUSE_MS 2000
/* pause.c, once per loop: apply the wanted pauses (blocked, queue full,
 * resolving), seek again a resumed partition that delivers nothing while
 * the broker holds more (then assign it again), and the test-only
 * FUNNELD_TEST_REASSIGN_AFTER hook. */
void eng_sync_pause(fd_engine *e);
void eng_unstick_partitions(fd_engine *e);
void eng_test_reassign(fd_engine *e);
/* fd_engine_startup_stop's flag (NULL: none). */
extern volatile sig_atomic_t *eng_start_stop;
int eng_start_epoch(fd_engine *e);
void eng_reassign(fd_engine *e, int32_t p);
/* router.c */
void eng_drop_waiting(fd_engine *e, const bool *drop, int n_drop);
void eng_poll_batch(fd_engine *e, int timeout_ms);
void eng_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque);
void eng_resolve_partitions(fd_engine *e);
void eng_route(fd_engine *e);
void eng_take(fd_engine *e, rd_kafka_message_t *m);
/* writer.c */
bool eng_backlog(const fd_engine *e);
void eng_flush_carry(fd_engine *e, bool force);
int64_t eng_flush_interval(const fd_engine *e);
int eng_flush_now(fd_engine *e, int64_t deadline);
void *eng_io_main(void *arg);
void eng_io_stop(fd_engine *e);
void eng_report_carry(fd_engine *e);
void eng_tell_closer_backlog(fd_engine *e);
int eng_write_epochs(fd_engine *e);
void eng_write_poll(fd_engine *e, bool block);

#endif
