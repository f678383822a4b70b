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
/* Round trip 1 of a write: append HGET of the stored model's lr; returns
 * the commands appended (0 or 1). */
size_t eng_churn_check(fd_engine *e);
/* Its reply: 0, or -1 with the cause when another writer left a model this
 * instance cannot read (the write is refused until it is deleted). */
int eng_churn_checked(fd_engine *e, const redisReply *hget, char *cause, size_t cause_size);
/* Append the model of ep to the writer's transaction: an EVAL of the merge
 * script (what this instance learned since base, added onto what is
 * stored) and an HSET of the summary fields. Returns the commands
 * appended (0 or 2); the EVAL is the first. */
size_t eng_churn_append(fd_engine *e, const epoch *ep);
/* The write that carried the model is in Redis. r: the EVAL's reply (the
 * merged texts), or NULL when the reply was lost (the stored model is read
 * then). The merged model is the new base; when other instances' learning
 * was in it, the engine's model and its unwritten epochs take it over. */
void eng_churn_written(fd_engine *e, const redisReply *r);

#endif
