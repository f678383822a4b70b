/*
 * timer.c - the binary min-heap of timers (timer.h).
 *
 * a[0] is the earliest; the children of i are 2i+1 and 2i+2. Push sifts
 * up, pop moves the last element to the root and sifts down: O(log n).
 * The array doubles when full (16 entries first), so a push is amortised
 * O(1) in allocation; it never shrinks (clear keeps it; free releases it).
 * A failed growth leaves the heap as it was.
 */
#include "models/timer.h"

#include <stdint.h>
#include <stdlib.h>

#define FIRST_CAP 16

int fd_timer_push(fd_timer_heap *h, int64_t due, void *ref)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : FIRST_CAP;
        if (cap < h->cap || cap > SIZE_MAX / sizeof *h->a)
            return -1;
        fd_timer *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h->a[up].due <= due)
            break;
        h->a[i] = h->a[up];
        i = up;
    }
    h->a[i].due = due;
    h->a[i].ref = ref;
    return 0;
}

const fd_timer *fd_timer_top(const fd_timer_heap *h)
{
    return h->n ? &h->a[0] : NULL;
}

fd_timer fd_timer_pop(fd_timer_heap *h)
{
    fd_timer top = h->a[0];
    fd_timer last = h->a[--h->n];
    size_t n = h->n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h->a[c + 1].due < h->a[c].due)
            c++;
        if (last.due <= h->a[c].due)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n)
        h->a[i] = last;
    return top;
}

void fd_timer_clear(fd_timer_heap *h)
{
    h->n = 0;
}

void fd_timer_free(fd_timer_heap *h)
{
    if (!h)
        return;
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

size_t fd_timer_bytes(const fd_timer_heap *h)
{
    return h->cap * sizeof *h->a;
}
