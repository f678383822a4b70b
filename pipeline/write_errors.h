/* write_errors.h - the writer's error half (write_errors.c). Consumer
 * thread only. */
#ifndef FD_WRITE_ERRORS_H
#define FD_WRITE_ERRORS_H

#include "pipeline/engine_int.h"

/* The name of stats field i (SF_*), in buf or static. */
const char *eng_stat_field(int i, char *buf, size_t n);
/* Record that commands sg.first .. sg.first + sg.n - 1 of the write in
 * flight are of kind sg.kind (to name a refused one's key). */
void eng_seg_add(fd_engine *e, wseg sg);
/* Count and name the commands of an applied EXEC (reply x) that failed. */
void eng_count_refused(fd_engine *e, const redisReply *x);
/* Redis refused a whole write for cause: back off, pause, log. */
void eng_refused(fd_engine *e, const char *cause);
/* A write was accepted: the refusal, if any, is over. */
void eng_refusal_over(fd_engine *e);
/* Whether a refused write's backoff still runs. */
bool eng_refusal_wait(const fd_engine *e);

#endif
