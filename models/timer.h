/*
 * timer.h - a binary min-heap of (due event time, reference): the label and
 * checkpoint timers of one partition, driven by its watermark (never by
 * wall time). Ties pop in push order... not guaranteed: callers must not
 * depend on the order of equal due times. Pure C; one heap per thread.
 */
#ifndef FD_TIMER_H
#define FD_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct fd_timer {
    int64_t due;
    void *ref;
} fd_timer;

typedef struct fd_timer_heap {
    fd_timer *a;
    size_t n, cap;
} fd_timer_heap; /* zeroed = empty */

/* 0, or -1 out of memory (heap unchanged). */
int fd_timer_push(fd_timer_heap *h, int64_t due, void *ref);
/* The earliest timer, or NULL when empty. */
const fd_timer *fd_timer_top(const fd_timer_heap *h);
/* Remove the earliest (the heap must not be empty). */
fd_timer fd_timer_pop(fd_timer_heap *h);
void fd_timer_clear(fd_timer_heap *h); /* empty, keeps the memory */
void fd_timer_free(fd_timer_heap *h);  /* empty, frees; zeroed again */
/* Bytes the heap holds (for bytes_per_user). */
size_t fd_timer_bytes(const fd_timer_heap *h);

#endif
