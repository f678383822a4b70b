/*
 * timer.h - an indexed binary min-heap of (due event time, reference): the
 * label and checkpoint timers of one partition, driven by its watermark
 * (never by wall time). At most one entry per reference: its position is
 * reported through the heap's `moved` callback (1 + index, 0 when it left
 * the heap), so a caller can move an entry's due time (fd_timer_set) or
 * remove it in O(log n). Callers must not depend on the order of equal due
 * times. Pure C; one heap per thread.
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
    /* called with 1 + the new index whenever an entry moves, and with 0
     * when it leaves the heap; NULL: positions are not tracked (then only
     * push, top and pop may be used) */
    void (*moved)(void *ref, size_t pos);
} fd_timer_heap; /* zeroed = empty */

/* 0, or -1 out of memory (heap unchanged). */
int fd_timer_push(fd_timer_heap *h, int64_t due, void *ref);
/* Set the due time of the entry at pos (1 + index, as last reported by
 * moved), or push a new one when pos is 0. 0, or -1 out of memory. */
int fd_timer_set(fd_timer_heap *h, size_t pos, int64_t due, void *ref);
/* Remove the entry at pos (1 + index); pos 0 does nothing. */
void fd_timer_remove(fd_timer_heap *h, size_t pos);
/* The earliest timer, or NULL when empty. */
const fd_timer *fd_timer_top(const fd_timer_heap *h);
/* Remove the earliest (the heap must not be empty). */
fd_timer fd_timer_pop(fd_timer_heap *h);
void fd_timer_clear(fd_timer_heap *h); /* empty (moved(ref, 0) for each), keeps the memory */
void fd_timer_free(fd_timer_heap *h);  /* clear and free; zeroed again but for moved */
/* Bytes the heap holds (for bytes_per_user). */
size_t fd_timer_bytes(const fd_timer_heap *h);

#endif
