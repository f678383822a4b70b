/* churn_state.h - the engine's side of the churn model (churn_state.c). */
#ifndef FD_CHURN_STATE_H
#define FD_CHURN_STATE_H

#include "pipeline/engine_int.h"

/* Parameters from the config, the stored model loaded (waits up to 30 s
 * for Redis). 0, or -1 with errstr. */
int eng_churn_init(fd_engine *e, char *errstr, size_t errstr_size);
void eng_churn_free(fd_engine *e);
/* Epoch ep is complete: merge its shards' replicas into the model, keep a
 * copy in ep, publish it. 0, or -1 out of memory. */
int eng_churn_merge(fd_engine *e, epoch *ep);
/* Round trip 1 of a write: append WATCH and HMGET of the stored model;
 * returns the commands appended (0 or 2). */
size_t eng_churn_watch(fd_engine *e);
/* Their replies: the stored model read (and parsed when another instance
 * wrote it): 0, or -1 with the cause (the write is refused). */
int eng_churn_watched(fd_engine *e, const redisReply *watch, const redisReply *hmget, char *cause,
                      size_t cause_size);
/* Append the HSET of ep's model to the writer's transaction: what this
 * instance learned since it last wrote, merged into what is stored (other
 * instances' learning). Returns the commands appended (0 or 1). */
size_t eng_churn_append(fd_engine *e, const epoch *ep);
/* The write that carried the model is in Redis: it is the new base; when
 * other instances' learning was merged in, the engine's model and the
 * epochs not yet written take it over (published to the shards at the
 * next merge). */
void eng_churn_written(fd_engine *e);

#endif
