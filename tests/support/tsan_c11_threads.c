/*
 * tsan_c11_threads.c - linked into the programs of ThreadSanitizer builds
 * only (FD_SANITIZE=thread).
 *
 * librdkafka (Debian's build) uses C11 <threads.h>. GCC 12's and clang 14's
 * ThreadSanitizer intercept pthread_* but not glibc's thrd_create, mtx_* and
 * cnd_*, which call the pthread functions internally: a thread started with
 * thrd_create has no TSan state (it crashes on its first malloc) and
 * librdkafka's locks are invisible (false race reports). Defining these
 * symbols in the executable makes librdkafka bind to them instead of
 * glibc's; each forwards to the pthread function TSan does intercept. glibc
 * implements them the same way (mtx_t and cnd_t wrap the pthread types).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

struct tramp {
    thrd_start_t fn;
    void *arg;
};

static void *tramp_run(void *p)
{
    struct tramp t = *(struct tramp *)p;
    free(p);
    return (void *)(intptr_t)t.fn(t.arg);
}

static int map(int e)
{
    return e == 0           ? thrd_success
           : e == ETIMEDOUT ? thrd_timedout
           : e == EBUSY     ? thrd_busy
                            : thrd_error;
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    struct tramp *t = malloc(sizeof *t);
    if (!t)
        return thrd_nomem;
    t->fn = fn;
    t->arg = arg;
    int e = pthread_create((pthread_t *)thr, NULL, tramp_run, t);
    if (e)
        free(t);
    return e == 0 ? thrd_success : e == ENOMEM ? thrd_nomem : thrd_error;
}

int thrd_join(thrd_t thr, int *res)
{
    void *v;
    if (pthread_join((pthread_t)thr, &v) != 0)
        return thrd_error;
    if (res)
        *res = (int)(intptr_t)v;
    return thrd_success;
}

int thrd_detach(thrd_t thr)
{
    return pthread_detach((pthread_t)thr) == 0 ? thrd_success : thrd_error;
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int e = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return map(e);
}

int mtx_lock(mtx_t *m)
{
    return map(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return map(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return map(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
    return map(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return map(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return map(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return map(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return map(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return map(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}
