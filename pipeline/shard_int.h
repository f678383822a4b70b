/*
 * shard_int.h - what shard.c and shard_reach.c share: the shard's state.
 * Not an API (shard.h is). Every field belongs to the shard's thread
 * unless its comment says otherwise.
 */
#ifndef FD_SHARD_INT_H
#define FD_SHARD_INT_H

#include "pipeline/shard.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "features/user.h"
#include "features/funnel.h"
#include "pipeline/codec.h"
#include "pipeline/kafka.h"
#include "pipeline/redis.h"
#include "models/churn.h"
#include "models/timer.h"
#include "models/mf.h"

#define POP_MAX      1024
#define CONTROL_ROOM 1024
#define MSET_MAX     1024 /* users per MSET */
#define DENSE_SET    4096 /* hour HyperLogLogs remembered as dense */

_Static_assert(FD_REJ__COUNT <= 32, "raise the stats' room for reasons (shard.h)");

typedef struct pstate {
    int64_t stats[FD_ST__COUNT];
    bool touched;
    size_t mset_left;                /* make_snapshot: changed users not yet in an MSET */
    size_t mset_open;                /* make_snapshot: users the open MSET still takes */
    fd_timer_heap timers;            /* churn label and checkpoint timers (shard_churn.c) */
    size_t risk_left, risk_open;     /* make_snapshot: the ZADDs of the risk ranking */
    size_t set_left[2], set_open[2]; /* ... the SREMs [0] and SADDs [1] of the pending set */
    fd_resp outbox;                  /* HSETs of the churn alerts fired since the last snapshot */
} pstate;

struct fd_shard {
    const fd_shard_env *env;
    int id;
    pthread_t thread;
    bool started;

    /* queue and mailbox: guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t nonempty;
    fd_item *ring;
    size_t cap, head, count, msgs, msg_cap;
    bool stop;
    fd_snapshot *snap;
    /* consumed messages, handed back to the consumer thread to destroy */
    rd_kafka_message_t **done;
    size_t n_done, cap_done;
    atomic_size_t n_users;
    atomic_size_t n_dirty;        /* users that turned dirty, ever (monotonic; written by the
                                     shard thread only) */
    atomic_size_t dirty_base;     /* n_dirty when the last snapshot was taken (ditto) */
    atomic_uint_fast64_t batches; /* batches done: the watchdog's progress */
    atomic_size_t queued;         /* items waiting in the ring (count, unlocked) */
    const char *hang_file;        /* test-only (FUNNELD_TEST_HANG_FILE): shard 0 stops
                                     while this file exists */

    /* the shard thread's own */
    size_t pair_bytes; /* RESP bytes per MSET pair in the last snapshot (0: none yet) */
    fd_codec *codec;
    fd_redis *redis;
    fd_user_table *users;
    fd_funnel_table *funnel;
    pstate *parts;
    int n_parts;
    fd_event *batch;
    int32_t *batch_part;
    int64_t *batch_ref;    /* partition max event time before each event */
    fd_user **batch_user;  /* each event's user, set by load_once */
    fd_resp mget;          /* the MGET of users to load */
    struct sreach *sreach; /* their sort buffer */
    size_t cap_sreach;
    uint64_t dense[DENSE_SET]; /* hour HyperLogLogs made dense (dense_first) */
    size_t n_dense;
    size_t n_batch;
    size_t *need; /* batch indices of users to load (POP_MAX) */
    char key[FD_ID_MAX + 512];
    size_t prefix_len;    /* strlen(redis.key_prefix) */
    bool load_err_logged; /* an error reply to the MGET was logged; cleared on success */

    /* the churn model (shard_churn.c); cm NULL when churn is off */
    fd_churn_model *cm; /* the replica R and the quality counted since the last marker */
    fd_churn_params cp; /* the shard's copy of env->churn: SIGHUP changes its alert
                           fields at an FD_ITEM_RELOAD, in stream order (sch_reload) */
    fd_lr *prev;        /* R at the last marker (or the merged model it adopted since) */
    uint64_t prev_epoch;
    fd_churn_sink sink;
    int32_t cur_part; /* the partition of the user the engine is working on */
    struct fd_alert_enc *alert_enc;
    char alert_key[512]; /* PREFIX churn:outbox */

    /* the recommendation model (shard_mf.c); mf NULL when mf is off */
    fd_mf_items *mf;   /* the replica of the item factors */
    uint64_t mf_seen;  /* merges of the published items taken over */
    float *mf_scratch; /* scores of every item (mf_scratch_n) */
    uint32_t mf_scratch_n;
    uint64_t mf_positives; /* positives seen (mf.eval_every) */
    fd_mf_quality mfq;     /* since the last marker */
    bool mf_full_logged;   /* mf.max_items reached: said once */
    char *recs_buf;        /* smf_recs: the key and the value */
    size_t recs_cap;
    struct smf_res *mf_res; /* smf_prepare's refreshed lists (BATCH_MAX) */
    int mf_res_n, mf_res_next;
    float *mf_bu; /* the batch's user factors */
    float *mf_bs; /* the batch's scores of every item (mf_bs_cap floats) */
    size_t mf_bs_cap;

    /* The users that turned dirty since the last snapshot, in that order
     * (shard_mark_dirty), so a snapshot need not scan the whole table; the
     * snapshot then uses it for the users it writes. dl_lost: an entry
     * could not be kept or users were removed, the next snapshot scans. */
    fd_user **dl;
    size_t n_dl, dl_cap;
    bool dl_lost;
};

/* shard_churn.c */
int sch_new(fd_shard *s, char *errstr, size_t errstr_size);
void sch_free(fd_shard *s);
/* Around fd_core_apply of an event at ts of u on partition p; ref: the
 * partition's max event time before it (the watermark input). */
void sch_before(fd_shard *s, fd_user *u, int32_t p, int64_t ts, int64_t ref);
void sch_after(fd_shard *s, fd_user *u, int32_t p, int64_t ts);
/* Arm u's timer at due (a user loaded with an open episode). */
void sch_arm(fd_shard *s, fd_user *u, int32_t p, int64_t due);
/* Attach the model to a snapshot (and start the next epoch's delta). */
int sch_snapshot(fd_shard *s, fd_snapshot *sn, uint64_t epoch);
/* Adopt a merged model the writer published, when it is this shard's. */
void sch_adopt(fd_shard *s);
/* The partition's max event time reached max_ts: fire its due timers. */
void sch_watermark(fd_shard *s, int32_t p, int64_t max_ts);
/* u is about to be evicted: its timer keeps its id instead (a ghost),
 * and loads it again when it fires. */
void sch_ghost(fd_shard *s, fd_user *u);
/* shard.c: find or load (one GET) a user of partition p; NULL on a Redis
 * error or out of memory. */
fd_user *shard_load_user(fd_shard *s, const char *id, size_t len, int32_t p);
/* PREFIX "user:" id, in the shard's key buffer (shard.c). */
const char *shard_user_key(fd_shard *s, const char *id);
/* Double s->dl; 0, or -1 out of memory. */
int shard_grow_dl(fd_shard *s);
/* Mark u dirty; the first time since its last write, count it and list it
 * (s->dl), so it is listed once. */
static inline void shard_mark_dirty(fd_shard *s, fd_user *u)
{
    if (u->dirty)
        return;
    u->dirty = true;
    atomic_fetch_add(&s->n_dirty, 1);
    if (s->n_dl == s->dl_cap && shard_grow_dl(s) != 0) {
        s->dl_lost = true;
        return;
    }
    s->dl[s->n_dl++] = u;
}
/* The same in s->key, for an id of li bytes; returns the key's length. */
size_t shard_user_key_len(fd_shard *s, const char *id, size_t li);
/* Answer flush marker `epoch` with a snapshot (shard_snapshot.c). */
void shard_make_snapshot(fd_shard *s, uint64_t epoch);
/* Forget a partition's timers. */
void sch_drop(fd_shard *s, int32_t p);
/* The alerts of partition p since the last snapshot into c (an HSET each). */
void sch_outbox(fd_shard *s, int32_t p, fd_resp *cmds);
/* FD_ITEM_RELOAD: take the alert parameters from env->reload. */
void sch_reload(fd_shard *s);
/* The user record's suffix (models/churn.h), and reading it back. */
size_t sch_suffix(const fd_user *u, char *buf);
void sch_parse(fd_shard *s, fd_user *u, const char *rec, size_t len);
/* PARTINIT: load the partition's users with open episodes and arm their
 * timers. 0, or -1 (Redis error: retried by the caller). */
int sch_partinit(fd_shard *s, int32_t p);
/* Keys (docs/REDIS_KEYS.md) */
const char *sch_pending_key(const fd_shard *s, int32_t p, char *buf, size_t n);
const char *sch_risk_key(const fd_shard *s, char *buf, size_t n);

/* shard_mf.c */
int smf_new(fd_shard *s, char *errstr, size_t errstr_size);
void smf_free(fd_shard *s);
/* After fd_core_apply of ev to u: learn it when it names an item. */
void smf_event(fd_shard *s, fd_user *u, const fd_event *ev);
/* Take over the merges published since the last call. */
void smf_adopt(fd_shard *s);
/* Into the snapshot: the replica's change and quality since the last marker. 0 / -1. */
int smf_snapshot(fd_shard *s, fd_snapshot *sn);
/* The recommendations of u (best first, at most FD_MF_TOP_MAX): the popularity
 * list for a cold user. Item ids point into the replica. */
int smf_top(fd_shard *s, const fd_user *u, int n, const char **ids, float *scores);
/* Refresh, ahead of smf_recs, the recommendations of the due users among
 * us[0..n), at most one batch (one cblas_sgemm): returns how many of us it
 * went through (>= 1 when n >= 1; n when the model is off). smf_recs then
 * takes them in that order; a user it did not prepare is scored alone. */
typedef struct smf_res smf_res;
size_t smf_prepare(fd_shard *s, fd_user *const *us, size_t n);
/* u's refreshed recommendations as a key (PREFIX recs:<id>) and a JSON
 * value, in the shard's buffers until the next call. 0, or -1 out of
 * memory (the value is then "[]"). */
int smf_recs(fd_shard *s, fd_user *u, const char **key, size_t *key_len, const char **val,
             size_t *len);
/* The user record's suffix and reading it back (after the churn one). */
size_t smf_suffix(const fd_shard *s, const fd_user *u, char *buf);
void smf_parse(fd_shard *s, fd_user *u, const char *suffix, size_t len);

/* shard_reach.c: the PFADDs of the funnel's unique users of a snapshot
 * (each hour HyperLogLog made dense first), into b. 0 or -1. */
int build_reaches(fd_shard *s, fd_resp *b);

#endif
