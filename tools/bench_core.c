/*
 * bench_core.c - `funnelctl bench --no-io`: throughput of the functional
 * core on one thread. See bench.h for the contract.
 *
 * What is timed per chunk: core_upsert_chunk() (fd_user_table_upsert of
 * every event's user; a new user is marked loaded, as the engine does once
 * Redis said the user is absent) and core_apply_chunk() (fd_core_apply:
 * the feature vector, the session and the funnel windows with the default
 * parameters of conf/funneld.yaml). Together that is the whole per-event
 * state work of a shard; decoding, queues and Redis are measured end to end
 * instead. core_apply_chunk alone is the "features + funnel" figure of
 * issue 4. Both are never inlined so that callgrind can count their
 * instructions exactly (--toggle-collect=core_apply_chunk, see
 * docs/BENCHMARKS.md).
 *
 * With the churn model (the default, as in the daemon), core_model_chunk
 * replaces core_apply_chunk: per event, the partition's label timers due
 * at its watermark fire, then fd_churn_before_event, fd_core_apply and
 * fd_churn_after_event (re-arming the user's timer), as a shard's
 * process_batch with pipeline/shard_churn.c. The passes without the model
 * give the "features + funnel" figure; the user table's heap is measured
 * in a pass with the model, timers included.
 */
#include "tools/bench.h"
#include "tools/cli.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "features/event.h"
#include "features/user.h"
#include "features/funnel.h"
#include "models/churn.h"
#include "models/timer.h"
#include "models/mf.h"

/* Events per timed chunk: a shard applies its decoded events in batches of
 * 1024 (POP_MAX in pipeline/shard.c), just decoded and so still in cache;
 * the chunk is the same size so the bench measures the same situation. */
#define CHUNK 1024

static double mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Heap bytes in use: arena chunks plus mmapped blocks (large tables). */
static double heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.uordblks + (double)mi.hblkhd;
}

/* Timed, part 1: the users of a chunk into the table, their addresses into
 * users[] (users never move), as a shard's load_once. 0, or -1 when out of
 * memory. */
__attribute__((noinline)) int core_upsert_chunk(fd_user_table *ut, const fd_event *ev, size_t n,
                                                fd_user **users)
{
    for (size_t i = 0; i < n; i++) {
        bool created;
        fd_user *u = fd_user_table_upsert(ut, ev[i].user_id, strlen(ev[i].user_id), &created);
        if (!u)
            return -1;
        if (created)
            u->loaded = true;
        users[i] = u;
    }
    return 0;
}

/* Timed, part 2: features, session and funnel of every event, as a shard's
 * process_batch. 0, or -1 when out of memory. */
__attribute__((noinline)) int core_apply_chunk(const fd_core_params *cp, fd_user **users,
                                               fd_funnel_table *wt, const fd_event *ev,
                                               const int32_t *part, const int64_t *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i + FD_USER_PREFETCH_AHEAD < n)
            fd_user_prefetch(users[i + FD_USER_PREFETCH_AHEAD]);
        if (fd_core_apply(cp, users[i], wt, part[i], &ev[i], ref[i]) < 0)
            return -1;
    }
    return 0;
}

/* The models of a pass: the churn model's replica and a timer heap per
 * partition; the recommendation model's item replica (every event names an
 * item), checked prequentially every MF_EVAL_EVERY-th positive as the
 * daemon's default mf.eval_every does. */
#define MF_EVAL_EVERY 1000
typedef struct core_churn {
    fd_churn_params p;
    fd_churn_model m;
    fd_timer_heap *timers;
    int64_t lateness;
    fd_mf_params mp;
    fd_mf_items *mf;
    float *scratch; /* scores of every item: n_scratch */
    uint32_t n_scratch;
    uint64_t positives, hits;
} core_churn;

/* As shard_mf.c's smf_event. 0, or -1 out of memory. */
static int mf_event(core_churn *ch, fd_user *u, const fd_event *ev)
{
    if (!ev->has_item || ev->type >= FD_MF_TYPES)
        return 0;
    fd_mf_items *it = ch->mf;
    int32_t idx = fd_mf_item(it, &ch->mp, ev->item_id, strlen(ev->item_id), true);
    if (idx < 0)
        return -1;
    float v[FD_MF_USER_K];
    if (u->mf.has)
        fd_mf_bf16_unpack(u->mf.v, ch->mp.k, v);
    else
        fd_mf_user_init(&ch->mp, fd_user_id(u), u->id_len, v);
    if (ch->positives++ % MF_EVAL_EVERY == 0) {
        if (ch->n_scratch < it->cap) {
            float *sc = realloc(ch->scratch, (size_t)it->cap * sizeof *sc);
            if (!sc)
                return -1;
            ch->scratch = sc;
            ch->n_scratch = it->cap;
        }
        int32_t top[10];
        double ndcg = 0;
        int n = fd_mf_top_n(it, v, NULL, 0, 10, ch->scratch, top, NULL);
        fd_mf_check(top, n, idx, &ch->hits, &ndcg);
    }
    fd_mf_learn(&ch->mp, it, v, idx, ev->type, ev->ts_ms);
    fd_mf_bf16_pack(v, ch->mp.k, u->mf.v);
    u->mf.has = 1;
    return 0;
}

static void timer_moved(void *ref, size_t pos)
{
    ((fd_user *)ref)->churn.heap_pos = (uint32_t)pos;
}

static int set_timer(fd_timer_heap *h, fd_user *u, int64_t due)
{
    if (due < 0) {
        fd_timer_remove(h, u->churn.heap_pos);
        return 0;
    }
    return fd_timer_set(h, u->churn.heap_pos, due, u);
}

/* Timed, part 2 with the churn model (see the top of the file). */
__attribute__((noinline)) int core_model_chunk(const fd_core_params *cp, core_churn *ch,
                                               fd_user **users, fd_funnel_table *wt,
                                               const fd_event *ev, const int32_t *part,
                                               const int64_t *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i + FD_USER_PREFETCH_AHEAD < n)
            fd_user_prefetch(users[i + FD_USER_PREFETCH_AHEAD]);
        fd_timer_heap *h = &ch->timers[part[i]];
        int64_t pmax = ref[i] > ev[i].ts_ms ? ref[i] : ev[i].ts_ms;
        int64_t wm = pmax - ch->lateness;
        const fd_timer *t;
        while ((t = fd_timer_top(h)) && t->due <= wm) {
            fd_user *u = t->ref;
            if (set_timer(h, u, fd_churn_on_timer(&ch->p, &ch->m, u, wm, NULL)) < 0)
                return -1;
        }
        fd_user *u = users[i];
        fd_churn_before_event(&ch->p, &ch->m, u, ev[i].ts_ms, NULL);
        if (fd_core_apply(cp, u, wt, part[i], &ev[i], ref[i]) < 0)
            return -1;
        if (set_timer(h, u, fd_churn_after_event(&ch->p, &ch->m, u, ev[i].ts_ms, NULL)) < 0)
            return -1;
        if (mf_event(ch, u, &ev[i]) < 0)
            return -1;
    }
    return 0;
}

/* Generate up to max events into ev/part, with each partition's max event
 * time before the event in ref (as the engine's consumer thread computes
 * it; pmax carries it across chunks). Returns how many. */
static size_t fill_chunk(fd_gen *g, fd_event *ev, int32_t *part, int64_t *ref, int64_t *pmax,
                         size_t max, int partitions)
{
    size_t n = 0;
    while (n < max && fd_gen_next(g, &ev[n])) {
        const char *id = ev[n].user_id;
        int32_t p = (int32_t)(fd_user_hash(id, strlen(id)) % (uint32_t)partitions);
        part[n] = p;
        ref[n] = pmax[p];
        if (ev[n].ts_ms > pmax[p])
            pmax[p] = ev[n].ts_ms;
        n++;
    }
    return n;
}

/* One pass over `limit` events (0 = all). *ns receives the time spent in
 * core_apply_chunk. With mem != NULL, the user table's heap is measured.
 * 0, -1 (errstr), 1 (stopped). */
static int one_pass(const fd_bench_core_opts *o, uint64_t limit, bool model, fd_event *ev,
                    int32_t *part, volatile sig_atomic_t *stop, double *ns, double *apply_ns,
                    uint64_t *count, uint64_t *users, double *mem, char *errstr, size_t errstr_size)
{
    int rc = -1;
    fd_core_params cp;
    int64_t hl[] = {3600000LL, 86400000LL, 7 * 86400000LL, 30 * 86400000LL};
    if (fd_feat_params_init(&cp.feat, hl, 4, 30 * 60000LL, errstr, errstr_size) != 0 ||
        fd_funnel_params_init(&cp.funnel, 60000, 120000, NULL, 0, errstr, errstr_size) != 0)
        return -1;
    core_churn ch = {.lateness = 120000};
    fd_mf_params_default(&ch.mp);
    if (model) {
        fd_churn_params_default(&ch.p, &cp.feat);
        fd_churn_model_init(&ch.m, &ch.p);
        ch.mf = malloc(sizeof *ch.mf);
        if (!ch.mf || fd_mf_items_init(ch.mf, &ch.mp) != 0) {
            free(ch.mf);
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    int64_t *ref = malloc(CHUNK * sizeof *ref);
    fd_user **uptr = malloc(CHUNK * sizeof *uptr);
    int64_t *pmax = calloc((size_t)o->partitions, sizeof *pmax);
    fd_gen_opts go = o->gen;
    if (limit)
        go.events = limit < go.events ? limit : go.events;
    fd_gen *g = fd_gen_new(&go, errstr, errstr_size);
    fd_user_table *ut = NULL;
    fd_funnel_table *wt = NULL;
    if (!g)
        goto out;
    double before = heap_in_use();
    ut = fd_user_table_new(1024); /* as the engine */
    wt = fd_funnel_table_new();
    if (model) {
        ch.timers = calloc((size_t)o->partitions, sizeof *ch.timers);
        if (ch.timers)
            for (int i = 0; i < o->partitions; i++)
                ch.timers[i].moved = timer_moved;
    }
    if (!ut || !wt || !ref || !uptr || !pmax || (model && !ch.timers)) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    *ns = *apply_ns = 0;
    *count = 0;
    size_t n;
    while ((n = fill_chunk(g, ev, part, ref, pmax, CHUNK, o->partitions)) > 0) {
        if (stop && *stop) {
            rc = 1;
            goto out;
        }
        double t0 = mono_ns();
        int r = core_upsert_chunk(ut, ev, n, uptr);
        double t1 = mono_ns();
        if (r == 0)
            r = model ? core_model_chunk(&cp, &ch, uptr, wt, ev, part, ref, n)
                      : core_apply_chunk(&cp, uptr, wt, ev, part, ref, n);
        double t2 = mono_ns();
        *ns += t2 - t0;
        *apply_ns += t2 - t1;
        fd_funnel_clear(wt, -1); /* as a shard after each flush */
        *count += n;
        if (r != 0) {
            snprintf(errstr, errstr_size, "out of memory in the core");
            goto out;
        }
    }
    *users = fd_user_table_count(ut);
    if (mem) {
        fd_funnel_table_free(wt); /* only the user table stays in use */
        wt = NULL;
        if (ch.mf) /* the items are not per user */
            fd_mf_items_free(ch.mf);
        free(ch.scratch);
        ch.scratch = NULL;
        ch.n_scratch = 0;
        double after = heap_in_use();
        *mem = after > before ? after - before : -1;
    }
    rc = 0;
out:
    if (ch.timers)
        for (int i = 0; i < o->partitions; i++)
            fd_timer_free(&ch.timers[i]);
    free(ch.timers);
    if (ch.mf)
        fd_mf_items_free(ch.mf);
    free(ch.mf);
    free(ch.scratch);
    fd_funnel_table_free(wt);
    fd_user_table_free(ut);
    fd_gen_destroy(g);
    free(ref);
    free(uptr);
    free(pmax);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int fd_bench_core_run(const fd_bench_core_opts *opts, volatile sig_atomic_t *stop,
                      fd_bench_core_result *out, char *errstr, size_t errstr_size)
{
    int rc = -1;
    memset(out, 0, sizeof *out);
    out->user_table_bytes = out->bytes_per_user = -1;
    double *per = NULL, *per_apply = NULL, *per_nomodel = NULL;
    fd_event *ev = malloc(CHUNK * sizeof *ev);
    int32_t *part = malloc(CHUNK * sizeof *part);
    if (opts->reps < 1 || opts->partitions < 1 || opts->gen.events == 0) {
        snprintf(errstr, errstr_size, "need reps >= 1, partitions >= 1 and events >= 1");
        goto out;
    }
    per = calloc((size_t)opts->reps, sizeof *per);
    per_apply = calloc((size_t)opts->reps, sizeof *per_apply);
    per_nomodel = calloc((size_t)opts->reps, sizeof *per_nomodel);
    if (!ev || !part || !per || !per_apply || !per_nomodel) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    double ns, apply_ns;
    uint64_t count, users;
    rc = one_pass(opts, CHUNK, true, ev, part, stop, &ns, &apply_ns, &count, &users, NULL, errstr,
                  errstr_size);
    if (rc != 0)
        goto out;
    fd_cli_progress pg = {.label = "bench: core", .unit = "passes", .tty = -1};
    for (int r = 0; r < opts->reps; r++) {
        double mem = -1;
        /* without the model: features + funnel, and the core without it */
        rc = one_pass(opts, 0, false, ev, part, stop, &ns, &apply_ns, &count, &users, NULL, errstr,
                      errstr_size);
        if (rc != 0)
            goto out;
        per_apply[r] = apply_ns / (double)(count ? count : 1);
        per_nomodel[r] = ns / (double)(count ? count : 1);
        /* with the churn model, as the daemon runs: the reported figure */
        rc = one_pass(opts, 0, true, ev, part, stop, &ns, &apply_ns, &count, &users,
                      r == 0 ? &mem : NULL, errstr, errstr_size);
        if (rc != 0)
            goto out;
        if (count == 0) {
            snprintf(errstr, errstr_size, "the generator produced no events");
            rc = -1;
            goto out;
        }
        per[r] = ns / (double)count;
        char ptext[64];
        snprintf(ptext, sizeof ptext, "%.1f ns/event with both models", per[r]);
        fd_cli_progress_show(&pg, (uint64_t)r + 1, (uint64_t)opts->reps, ptext,
                             r + 1 == opts->reps);
        out->events = count;
        if (r == 0 && mem > 0 && users > 0) {
            out->user_table_bytes = mem;
            out->bytes_per_user = mem / (double)users;
        }
        out->users = users;
    }
    qsort(per, (size_t)opts->reps, sizeof *per, cmp_double);
    qsort(per_apply, (size_t)opts->reps, sizeof *per_apply, cmp_double);
    qsort(per_nomodel, (size_t)opts->reps, sizeof *per_nomodel, cmp_double);
    out->median_no_model_ns_per_event =
        opts->reps % 2 ? per_nomodel[opts->reps / 2]
                       : (per_nomodel[opts->reps / 2 - 1] + per_nomodel[opts->reps / 2]) / 2;
    out->median_apply_ns_per_event =
        opts->reps % 2 ? per_apply[opts->reps / 2]
                       : (per_apply[opts->reps / 2 - 1] + per_apply[opts->reps / 2]) / 2;
    out->reps = opts->reps;
    out->best_ns_per_event = per[0];
    out->median_ns_per_event =
        opts->reps % 2 ? per[opts->reps / 2] : (per[opts->reps / 2 - 1] + per[opts->reps / 2]) / 2;
    out->median_events_per_s = out->median_ns_per_event > 0 ? 1e9 / out->median_ns_per_event : 0;
    rc = 0;
out:
    free(per);
    free(per_apply);
    free(per_nomodel);
    free(part);
    free(ev);
    return rc;
}
