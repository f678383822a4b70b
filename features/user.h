/*
 * user.h - per-user state and the table that holds a shard's users.
 *
 * The table is open addressing with linear probing over fixed-size slots;
 * a user's id is copied once, when the user is first seen (the only
 * allocation on the per-event path). Pure C: no I/O, no clock, no threads;
 * one table belongs to one thread.
 */
#ifndef FD_USER_H
#define FD_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "features/event.h"
#include "features/features.h"
#include "models/churn_user.h"
#include "models/mf_user.h"

/* Ids shorter than this live in the user itself (no allocation: a malloc'd
 * copy cost ~32 bytes per user, see BENCHMARKS.md "bytes per user"). */
#define FD_USER_ID_INLINE 16

typedef struct fd_user {
    union {
        char *heap;                  /* id_len >= FD_USER_ID_INLINE: owned by the table */
        char inl[FD_USER_ID_INLINE]; /* otherwise, NUL-terminated */
    } id_;                           /* read through fd_user_id */
    uint32_t id_len;
    uint32_t hash;
    int32_t partition;   /* Kafka partition the user's events come from */
    uint32_t epoch;      /* flush epoch that last carried this user's state */
    bool dirty;          /* changed since the last snapshot */
    bool loaded;         /* state read from the store (or known absent) */
    bool queued;         /* in the load request being built (shard only) */
    bool risk_known;     /* PREFIX churn:risk holds risk_w for this user (shard only) */
    uint16_t risk_w;     /* the churn risk (RISK_Q) last written there */
    fd_feat f;           /* the persistent state: features and session */
    fd_churn_user churn; /* the churn model's per-user state (models/churn.h) */
    fd_mf_user mf;       /* the recommendation model's (models/mf_user.h) */
} fd_user;

/* The user's id, NUL-terminated; valid as long as the user. */
static inline const char *fd_user_id(const fd_user *u)
{
    return u->id_len < FD_USER_ID_INLINE ? u->id_.inl : u->id_.heap;
}

typedef struct fd_user_table fd_user_table;

/* Empty table. NULL on allocation failure. Free with fd_user_table_free. */
fd_user_table *fd_user_table_new(size_t initial_capacity);
void fd_user_table_free(fd_user_table *t); /* NULL accepted */

/* 32-bit FNV-1a of a user id: the shard/partition-independent hash. */
uint32_t fd_user_hash(const char *id, size_t len);

/* Find a user; NULL when absent. A user never moves: the pointer is valid
 * until the user is removed (fd_user_table_filter) or the table freed. */
fd_user *fd_user_table_find(fd_user_table *t, const char *id, size_t len);

/* Find or insert (zeroed, loaded=false). NULL on allocation failure.
 * *created says whether it was inserted. Valid until the user is removed. */
fd_user *fd_user_table_upsert(fd_user_table *t, const char *id, size_t len, bool *created);

size_t fd_user_table_count(const fd_user_table *t);

/* How many events ahead the apply loops (shards, bench) prefetch users. */
#define FD_USER_PREFETCH_AHEAD 8

/* Ask the CPU to bring a user's state into cache ahead of fd_core_apply
 * (users are scattered over a large table: without it every event waits
 * for memory). */
static inline void fd_user_prefetch(const fd_user *u)
{
    const char *p = (const char *)u;
    for (size_t off = 0; off < sizeof *u; off += 64)
        __builtin_prefetch(p + off, 1);
}

/* Iterate: *cursor starts at 0; returns the next user or NULL at the end. */
fd_user *fd_user_table_next(fd_user_table *t, size_t *cursor);

/* Remove every user for which keep(u, arg) returns false. Cannot fail: it
 * works in place and needs no memory. */
void fd_user_table_filter(fd_user_table *t, bool (*keep)(const fd_user *u, void *arg), void *arg);

#endif
