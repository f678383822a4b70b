/*
 * churn_user.h - what the churn model keeps per user (inside fd_user; its
 * own header so features/user.h can hold it without the model's API).
 * 16 bytes; docs/CHURN.md.
 */
#ifndef FD_CHURN_USER_H
#define FD_CHURN_USER_H

#include <stdint.h>

/* flags (persisted) */
#define FD_CU_PENDING  0x01 /* an episode is open: its examples wait for their label */
#define FD_CU_CHURNED  0x02 /* the last episode ended in churn (next event: reactivated) */
#define FD_CU_DISARMED 0x04 /* alerted in this at-risk episode: no alert until re-armed */
#define FD_CU_ALERTED  0x08 /* an alert fired in the open episode (precision, lead time) */

typedef struct fd_churn_user {
    int64_t alert_ts; /* event time of the user's last alert (0 = never): cooldown */
    uint16_t risk_q;  /* latest risk * 65535, rounded */
    uint8_t next_cp;  /* next inactivity checkpoint of the open episode to score
                         (0..n_cp; n_cp: only the horizon is left) */
    uint8_t flags;    /* FD_CU_* */
    /* not persisted: the shard's bookkeeping (pipeline/shard_churn.c) */
    uint32_t
        heap_pos : 31;   /* 1 + index of the user's entry in its partition's timer heap; 0 = none */
    uint32_t in_set : 1; /* the user is in its partition's pending set in Redis (as last written) */
} fd_churn_user;

#endif
