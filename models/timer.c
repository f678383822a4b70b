/*
 * timer.c - the indexed binary min-heap of timers (timer.h).
 *
 * a[0] is the earliest; the children of i are 2i+1 and 2i+2. Push sifts
 * up, pop moves the last element to the root and sifts down, set and
 * remove sift the changed entry whichever way it must go: O(log n). Every
 * store into a[] reports the new position through moved(). The array
 * doubles when full (16 entries first), so a push is amortised O(1) in
 * allocation; it never shrinks (clear keeps it; free releases it). A failed
 * growth leaves the heap as it was.
 */
#include "models/timer.h"

#include <stdint.h>
#include <stdlib.h>

#define FIRST_CAP 16

static inline void put(fd_timer_heap *h, size_t i, fd_timer t)
{
    h->a[i] = t;
    if (h->moved)
        h->moved(t.ref, i + 1);
}

/* Place t at hole i, moving it up while its parent is later. */
static void sift_up(fd_timer_heap *h, size_t i, fd_timer t)
{
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h->a[up].due <= t.due)
            break;
        put(h, i, h->a[up]);
        i = up;
    }
    put(h, i, t);
}

/* Place t at hole i, moving it down while a child is earlier. */
static void sift_down(fd_timer_heap *h, size_t i, fd_timer t)
{
    size_t n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h->a[c + 1].due < h->a[c].due)
            c++;
        if (t.due <= h->a[c].due)
            break;
        put(h, i, h->a[c]);
        i = c;
    }
    put(h, i, t);
}

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
    fd_timer t = {due, ref};
    sift_up(h, h->n++, t);
    return 0;
}

int fd_timer_set(fd_timer_heap *h, size_t pos, int64_t due, void *ref)
{
    if (pos == 0 || pos > h->n)
        return fd_timer_push(h, due, ref);
    size_t i = pos - 1;
    fd_timer t = {due, h->a[i].ref};
    if (i > 0 && h->a[(i - 1) / 2].due > due)
        sift_up(h, i, t);
    else
        sift_down(h, i, t);
    return 0;
}

void fd_timer_remove(fd_timer_heap *h, size_t pos)
{
    if (pos == 0 || pos > h->n)
        return;
    size_t i = pos - 1;
    void *gone = h->a[i].ref;
    fd_timer last = h->a[--h->n];
    if (i < h->n) {
        if (i > 0 && h->a[(i - 1) / 2].due > last.due)
            sift_up(h, i, last);
        else
            sift_down(h, i, last);
    }
    if (h->moved)
        h->moved(gone, 0);
}

const fd_timer *fd_timer_top(const fd_timer_heap *h)
{
    return h->n ? &h->a[0] : NULL;
}

fd_timer fd_timer_pop(fd_timer_heap *h)
{
    fd_timer top = h->a[0];
    fd_timer last = h->a[--h->n];
    if (h->n)
        sift_down(h, 0, last);
    if (h->moved)
        h->moved(top.ref, 0);
    return top;
}

void fd_timer_clear(fd_timer_heap *h)
{
    if (h->moved)
        for (size_t i = 0; i < h->n; i++)
            h->moved(h->a[i].ref, 0);
    h->n = 0;
}

void fd_timer_free(fd_timer_heap *h)
{
    if (!h)
        return;
    fd_timer_clear(h);
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

size_t fd_timer_bytes(const fd_timer_heap *h)
{
    return h->cap * sizeof *h->a;
}
