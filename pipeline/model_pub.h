/*
 * model_pub.h - the merged churn model the writer publishes to the shards.
 *
 * Each shard trains its own replica (no lock on the per-event path). At a
 * flush marker a shard puts a copy of its replica and of its replica at the
 * previous marker into the snapshot; when an epoch's snapshots are all in,
 * the engine merges: G_e = fd_lr_merge(G_{e-1}, {G_{e-1} + (R_i,e -
 * R_i,e-1)}) (models/lr.h), weighted by the examples each shard learned in
 * the epoch, and publishes G_e here. A shard whose last marker is e adopts
 * it (R = G_e + (R - R_i,e)); one that has moved on waits for a later one.
 * G_e is written in epoch e's MULTI/EXEC (writer.c), so Redis holds the
 * model that learned exactly the examples before the stored offsets.
 */
#ifndef FD_MODEL_PUB_H
#define FD_MODEL_PUB_H

#include <pthread.h>
#include <stdint.h>

#include "models/lr.h"
#include "models/mf.h"

typedef struct fd_model_pub {
    pthread_mutex_t mu; /* guards the rest */
    uint64_t epoch;     /* the epoch lr was merged at; 0 = as loaded at start */
    fd_lr lr;
} fd_model_pub;

/* The merged item factors (mf_state.c), published the same way: each shard
 * trains a replica of the items (fd_mf_track); at a marker its change
 * since the last one goes into the snapshot (fd_mf_take), the engine adds
 * the shards' changes onto g when the epoch is complete, and a shard takes
 * over every row changed by a merge it has not seen (fd_mf_adopt_row: the
 * row plus what the shard learned on it since its marker). The engine
 * changes g and chg only under mu; the shards read them under mu. */
typedef struct fd_mf_pub {
    pthread_mutex_t mu; /* guards the rest */
    fd_mf_items g;      /* the merged items */
    uint64_t *chg;      /* per row of g: the merge that last changed it (1, 2, ...) */
    uint32_t cap_chg;
    uint64_t merges; /* merges so far (0: g as loaded) */
} fd_mf_pub;

#endif
