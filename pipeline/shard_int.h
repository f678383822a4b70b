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

#define POP_MAX      1024
#define CONTROL_ROOM 1024
#define MSET_MAX     1024 /* users per MSET */
#define DENSE_SET    4096 /* hour HyperLogLogs remembered as dense */

_Static_assert(FD_REJ__COUNT <= 32, "raise the stats' room for reasons (shard.h)");

typedef struct pstate {
    int64_t stats[FD_ST__COUNT];
    bool touched;
    size_t mset_left; /* make_snapshot: changed users not yet in an MSET */
    size_t mset_open; /* make_snapshot: users the open MSET still takes */
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
    atomic_size_t n_dirty; /* users changed since the last snapshot */

    /* the shard thread's own */
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
    bool load_err_logged; /* an error reply to the MGET was logged; cleared on success */
};

/* shard_reach.c: the PFADDs of the funnel's unique users of a snapshot
 * (each hour HyperLogLog made dense first), into b. 0 or -1. */
int build_reaches(fd_shard *s, fd_resp *b);

#endif
