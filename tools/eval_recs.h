/* eval_recs.h - prequential quality of the recommendation model for
 * `funnelctl eval` (eval_recs.c, docs/RECS.md). Calling thread only. */
#ifndef FD_EVAL_RECS_H
#define FD_EVAL_RECS_H

#include <stdbool.h>
#include <stdint.h>

#include "features/event.h"
#include "models/mf.h"

typedef struct fd_eval_recs fd_eval_recs;

typedef struct fd_eval_recs_result {
    uint64_t positives; /* events with an item, learned */
    uint64_t evaluated; /* of which checked against the lists first */
    uint64_t skipped;   /* items past mf max_items: neither learned nor checked */
    uint64_t hits, pop_hits;
    double ndcg_sum, pop_ndcg_sum;
    uint32_t items, users;
    double recall, ndcg, pop_recall, pop_ndcg; /* @10, over evaluated */
} fd_eval_recs_result;

/* every: evaluate every Nth positive (1: all); bf16: keep the user factors
 * as bfloat16 between events, as a user state of 2 bytes a factor would.
 * NULL out of memory. */
fd_eval_recs *fd_eval_recs_new(const fd_mf_params *p, uint64_t every, bool bf16);
void fd_eval_recs_free(fd_eval_recs *e); /* NULL ok */
/* One event in stream order: 0, or -1 out of memory. */
int fd_eval_recs_event(fd_eval_recs *e, const fd_event *ev);
void fd_eval_recs_get(const fd_eval_recs *e, fd_eval_recs_result *out);

#endif
