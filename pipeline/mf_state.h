/* mf_state.h - the engine's side of the recommendation model (mf_state.c). */
#ifndef FD_MF_STATE_H
#define FD_MF_STATE_H

#include "pipeline/engine_int.h"

/* Parameters from the config and the stored model loaded (waits up to 30 s
 * for Redis). 0, or -1 with a message. */
int eng_mf_init(fd_engine *e, char *errstr, size_t errstr_size);
void eng_mf_free(fd_engine *e);
/* Epoch ep is complete: add its shards' changes to the merged items and
 * publish them. 0, or -1 out of memory. */
int eng_mf_merge(fd_engine *e, epoch *ep);
/* Append the rows changed since the last confirmed write and the model's
 * totals to the writer's transaction (the merge script first: its reply
 * is the first command's); returns the commands appended and sets *src to
 * them (for naming a refused one). */
size_t eng_mf_append(fd_engine *e, const fd_resp **src);
/* The write that carried them is in Redis. r: the script's reply (what
 * it merged), or NULL when the reply was lost: what is stored is read
 * back. */
void eng_mf_written(fd_engine *e, const redisReply *r);

#endif
