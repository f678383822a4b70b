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

typedef struct fd_model_pub {
    pthread_mutex_t mu; /* guards the rest */
    uint64_t epoch;     /* the epoch lr was merged at; 0 = as loaded at start */
    fd_lr lr;
} fd_model_pub;

#endif
