/*
 * mf_user.h - what the recommendation model keeps per user (inside fd_user;
 * its own header so features/user.h can hold it without the model's API).
 * 88 bytes: the factors as bfloat16 (docs/RECS.md: the quality holds), so
 * the whole per-user state stays within 512 bytes with k = 32, and the
 * items the user bought last (left out of its recommendations).
 */
#ifndef FD_MF_USER_H
#define FD_MF_USER_H

#include <stdint.h>

#define FD_MF_USER_K      32 /* factors a user state holds: mf.k is at most this */
#define FD_MF_USER_BOUGHT 4  /* last purchases remembered */

typedef struct fd_mf_user {
    uint16_t v[FD_MF_USER_K];           /* bfloat16 factors; valid when has */
    uint32_t bought[FD_MF_USER_BOUGHT]; /* FNV-1a 32 of the last purchased items' ids,
                                           newest first; 0 = none */
    int32_t recs_min;                   /* event time (minutes) the recs cache was last refreshed */
    uint8_t has;                        /* factors learned (else: initial ones, from the id) */
    uint8_t recs_due; /* not persisted: refresh the recs cache at the next snapshot */
} fd_mf_user;

#endif
