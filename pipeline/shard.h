/*
 * shard.h - a worker thread that owns the users whose id hashes to it.
 *
 * The consumer thread hands a shard the Kafka messages keyed by its users
 * (the message itself: no copy) through a bounded queue, plus control
 * items in the same FIFO: partition start (its stored max event time),
 * flush markers and partition drops. The shard decodes and validates each
 * message (rejects go to the dead-letter topic from here), loads unknown
 * users from Redis with one pipelined round trip per batch, and applies the
 * functional core. At a flush marker it serialises, per partition, the
 * users and counters that changed into Redis commands (a snapshot) and
 * hands them to the writer; it never writes to Redis itself.
 *
 * Threads: fd_shard_new/push/take/destroy are called by the consumer thread
 * only; everything else runs on the shard's own thread.
 */
#ifndef FD_SHARD_H
#define FD_SHARD_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"
#include "pipeline/resp.h"

/* Per-partition counters a shard reports in its snapshot (HINCRBY stats). */
enum {
    FD_ST_EVENTS = 0,
    FD_ST_DLQ,
    FD_ST_DATA_LOSS,
    FD_ST_LATE,
    FD_ST_USER_UNREADABLE, /* stored user records funneld could not read */
    FD_ST_DLQ_FAILED,      /* dead letters given up (fd_kafka_dlq_failed) */
    FD_ST_SATURATED,       /* sums that stopped at their limit (fd_funnel_saturated) */
    FD_ST_ALERTS,          /* churn alerts fired (written to the outbox) */
    FD_ST_EVENTS_TYPE0,    /* "events.click", "events.cart", "events.purchase" */
    FD_ST_EVENTS_TYPE_END = FD_ST_EVENTS_TYPE0 + 3,
    FD_ST_DLQ_REASON0 = FD_ST_EVENTS_TYPE_END,         /* "dlq.REASON": FD_REJ__COUNT of them */
    FD_ST_DLQ_FAILED_REASON0 = FD_ST_DLQ_REASON0 + 32, /* "dlq_failed.REASON" */
};
#define FD_ST__COUNT (FD_ST_DLQ_FAILED_REASON0 + 32)
const char *fd_stat_name(int i, char *buf, size_t n);

typedef enum fd_item_kind {
    FD_ITEM_MSG = 0,   /* msg: consumed message (handed back, see fd_shard_reap); value:
                          the partition's max event time before it (watermark input) */
    FD_ITEM_PARTINIT,  /* partition starts (value unused) */
    FD_ITEM_MARKER,    /* epoch: snapshot what changed since the last marker */
    FD_ITEM_DROP,      /* partition: forget its users and counters */
    FD_ITEM_WATERMARK, /* value: the partition's max event time (churn timers), before a marker */
    FD_ITEM_RELOAD,    /* SIGHUP: take the alert parameters in env->reload */
} fd_item_kind;

typedef struct fd_item {
    rd_kafka_message_t *msg;
    int64_t value; /* MSG: partition max event time before it; MARKER: epoch */
    int32_t partition;
    uint8_t kind;
} fd_item;

/* What changed in one partition since the previous marker. */
typedef struct fd_chunk {
    int32_t partition;
    fd_resp cmds;                /* MSET of the changed users' records (absolute values) */
    struct fd_funnel_delta *win; /* window deltas (the writer merges them) */
    int n_win, cap_win;
    int64_t stats[FD_ST__COUNT]; /* deltas */
    size_t users;                /* user records in cmds */
} fd_chunk;

typedef struct fd_snapshot {
    uint64_t epoch;
    fd_chunk *chunks;
    int n_chunks;
    fd_resp pfadd; /* PFADDs of the funnel's unique users, all partitions (idempotent:
                      sent before the MULTI/EXEC, whatever becomes of the partitions) */
    int error;     /* 1 out of memory, 2 a malformed command: the epoch cannot be written */
    /* the churn model (model_pub.h): the replica at this marker and at the
     * previous one, and the quality the shard counted in between; NULL when
     * churn is off */
    struct fd_lr *lr_cur, *lr_prev;
    struct fd_quality *q_delta;
    /* the recommendation model: what the shard's replica learned since the
     * previous marker and its quality counts; NULL when mf is off */
    struct fd_mf_delta *mf_delta;
    struct fd_mf_quality *mf_q;
} fd_snapshot;

void fd_snapshot_free(fd_snapshot *s); /* NULL accepted */

/* What SIGHUP changes in the shards (fd_engine_reload): the churn alert
 * parameters, published under mu and taken by each shard at the
 * FD_ITEM_RELOAD that follows, so the change applies at one point of
 * each shard's stream. */
typedef struct fd_reload_box {
    pthread_mutex_t mu;
    double threshold, rearm_margin;
    int64_t min_events, cooldown_ms;
} fd_reload_box;

/* Shared, read-only environment of every shard. */
struct fd_core_params;

typedef struct fd_shard_env {
    const fd_config *cfg;
    const struct fd_core_params *core; /* features and funnel parameters */
    rd_kafka_t *producer;              /* dead letters */
    int n_shards;
    size_t max_users;                            /* per shard */
    const atomic_uint_fast64_t *confirmed_epoch; /* last epoch written to Redis */
    atomic_int *abort;                   /* set at a failed shutdown: stop waiting for Redis */
    atomic_int *stalled;                 /* shards now waiting for Redis to load users */
    const struct fd_churn_params *churn; /* NULL: churn.enabled off */
    struct fd_model_pub *model;          /* the merged model (model_pub.h) */
    const struct fd_mf_params *mf;       /* NULL: mf.enabled off */
    struct fd_mf_pub *mfpub;             /* the merged item factors (model_pub.h) */
    fd_reload_box *reload;               /* SIGHUP's alert parameters */
} fd_shard_env;

typedef struct fd_shard fd_shard;

/* Create and start shard `id`. NULL with errstr on failure. */
fd_shard *fd_shard_new(const fd_shard_env *env, int id, char *errstr, size_t errstr_size);

/* Stop the thread, destroy any queued messages, free. NULL accepted. */
void fd_shard_destroy(fd_shard *s);

/* Queue items without blocking. Messages use at most engine.queue_messages
 * slots; control items have reserved room. Returns how many were queued
 * (a prefix of items). */
size_t fd_shard_push(fd_shard *s, const fd_item *items, size_t n);

/* Destroy the messages the shard has finished with. buf and cap are the
 * caller's scratch list (swapped with the shard's, so neither allocates in
 * the steady state; start with NULL/0, free(*buf) at the end). */
void fd_shard_reap(fd_shard *s, rd_kafka_message_t ***buf, size_t *cap);

/* Free message slots now. */
size_t fd_shard_room(fd_shard *s);

/* The snapshot for `epoch` once the shard made it (ownership passes to the
 * caller), else NULL. */
fd_snapshot *fd_shard_take(fd_shard *s, uint64_t epoch);

/* Users that turned dirty (changed since the snapshot before) since the
 * shard started (monotonic), and *at_snapshot: that count when the shard
 * took its last snapshot. The engine counts the users of the epoch being
 * built from these (eng_epoch_full). Any thread. */
size_t fd_shard_dirty(fd_shard *s, size_t *at_snapshot);
/* The watchdog's view (any thread): batches the shard finished, and items
 * waiting in its queue. A shard with items waiting whose count does not
 * move is stuck. */
void fd_shard_progress(fd_shard *s, uint64_t *batches, size_t *queued);

/* Users in memory (approximate; for metrics and tests). */
size_t fd_shard_users(fd_shard *s);

struct fd_codec;
/* A codec for the events topic as configured (input.*). NULL with errstr. */
struct fd_codec *fd_input_codec_new(const fd_config *cfg, char *errstr, size_t errstr_size);

/* The key of a funnel window or hour (docs/REDIS_KEYS.md) into buf:
 * PREFIX funnel:SPAN:START, then SEP NAME when sep is not NULL
 * (":users:", stage name; ":cat:", category). Returns buf. The one place
 * the shape is spelled: the shards' PFADDs and the engine's writes, reads
 * and deletions use it. */
const char *fd_funnel_key(char *buf, size_t n, const char *prefix, const char *span, int64_t start,
                          const char *sep, const char *name);

/* The shard that owns a user id (or Kafka key). */
int fd_shard_of(const char *id, size_t len, int n_shards);

#endif
