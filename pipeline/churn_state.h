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
/* Append the HSET of ep's model to the writer's transaction; returns the
 * number of commands appended (0 or 1). */
size_t eng_churn_append(fd_engine *e, const epoch *ep);

#endif
