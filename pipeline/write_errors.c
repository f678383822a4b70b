/*
 * write_errors.c - what a refused write or a refused command means (the
 * writer's error half, writer.c is the other): which key a command of the
 * MULTI/EXEC wrote (the write's segments), the write_errors stats, the
 * backoff while Redis refuses whole writes, and the stats deltas carried
 * over to the next write. Consumer thread only.
 *
 * A refused write (an error before EXEC, EXECABORT) changes nothing in
 * Redis: it is retried with backoff and consumption pauses. A refused
 * command inside an applied EXEC (WRONGTYPE on a key another client wrote,
 * say) loses only that command's effect: it is counted under
 * write_errors.KIND in PREFIX stats and its key is named in the log once.
 */
#include "pipeline/write_errors.h"

/* The name of stats field i (SF_*). */
const char *eng_stat_field(int i, char *buf, size_t n)
{
    if (i < FD_ST__COUNT)
        return fd_stat_name(i, buf, n);
    if (i == SF_WE_TOTAL)
        return "write_errors";
    snprintf(buf, n, "write_errors.%s", we_kind[i - SF_WE0]);
    return buf;
}

void eng_seg_add(fd_engine *e, wseg sg)
{
    if (sg.n == 0)
        return;
    if (e->n_segs == e->cap_segs) {
        size_t cap = e->cap_segs ? 2 * e->cap_segs : 256;
        wseg *p = realloc(e->segs, cap * sizeof *p);
        if (!p) {
            e->segs_oom = true;
            return;
        }
        e->segs = p;
        e->cap_segs = cap;
    }
    e->segs[e->n_segs++] = sg;
}

/* The run holding reply at (before MULTI when pre, else EXEC's element). */
static const wseg *seg_find(const fd_engine *e, bool pre, size_t at)
{
    for (size_t i = 0; i < e->n_segs; i++) {
        const wseg *sg = &e->segs[i];
        if (sg->pre == pre && at >= sg->first && at < sg->first + sg->n)
            return sg;
    }
    return NULL;
}

/* The key of command k of run sg into buf. */
static const char *seg_key(fd_engine *e, const wseg *sg, size_t k, char *buf, size_t n)
{
    const char *prefix = e->cfg->redis_key_prefix;
    const char *a;
    size_t len;
    if (sg->src) {
        if (fd_redis_wire_arg(sg->src->p, sg->src->len, k, 1, &a, &len) != 0)
            snprintf(buf, n, "(a %s key)", we_kind[sg->kind]);
        else
            snprintf(buf, n, "%.*s", (int)(len < 1000 ? len : 1000), a);
    } else if (sg->kind == WE_FUNNEL_OPEN) {
        snprintf(buf, n, "%sfunnel:open", prefix);
    } else if (sg->kind == WE_STATS) {
        snprintf(buf, n, "%sstats", prefix);
    } else if (sg->kind == WE_PART) {
        char pk[PART_KEY_MAX];
        snprintf(buf, n, "%s", eng_part_key(e, sg->part, pk));
    } else {
        snprintf(buf, n, "(a %s key)", we_kind[sg->kind]);
    }
    return buf;
}

static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ? h : 1;
}

/* What a refused command of each kind means (the log line's second half). */
static const char *const we_meaning[WE__COUNT] = {
    [WE_WINDOW] = "the funnel counts it carried are lost (counted in stats write_errors.window)",
    [WE_UNIQUE_USERS] = "the users it carried are missing from that HyperLogLog (counted in "
                        "stats write_errors.unique_users)",
    [WE_FUNNEL_OPEN] = "the windows of this write are not registered as open: they are not "
                       "closed, reported or deleted (counted in stats write_errors.funnel_open)",
    [WE_USER] = "that user's new record is not stored (counted in stats write_errors.user)",
    [WE_STATS] = "its counts are kept in memory and sent again with every following write until "
                 "Redis takes them (a restart before that loses them); repair the key (DEL or "
                 "RENAME it)",
    [WE_PART] = "the partition's offsets were not stored with this write (counted in stats "
                "write_errors.part); writes stop until the key is repaired",
    [WE_MODEL] = "the churn model learned in this write is not stored (counted in stats "
                 "write_errors.model); a restart goes back to the last stored model",
};

/* Name a key Redis refused a command on, at most once per WKEY_RELOG_MS;
 * the others are summed up every WSUMMARY_MS. */
static void name_key(fd_engine *e, const char *key, int kind, const char *msg)
{
    wkeys *w = &e->wkeys;
    int64_t now = fd_mono_ms();
    uint64_t h = key_hash(key);
    int slot = 0;
    for (int i = 0; i < WKEY_SLOTS; i++) {
        if (w->at[i] && w->hash[i] == h && now - w->at[i] < WKEY_RELOG_MS) {
            w->quiet++;
            if (now - w->summary_at >= WSUMMARY_MS) {
                fd_err("engine",
                       "Redis refused %" PRIu64 " more command(s) on keys named before (in "
                       "the last %" PRId64 " s; counted in stats write_errors.KIND)",
                       w->quiet, (now - w->summary_at) / 1000);
                w->quiet = 0;
                w->summary_at = now;
            }
            return;
        }
        if (w->at[i] < w->at[slot])
            slot = i; /* free (0) or the oldest */
    }
    w->hash[slot] = h;
    w->at[slot] = now;
    if (!w->summary_at)
        w->summary_at = now;
    fd_err("engine", "key %s: Redis refused a command of a write (%s key): %s; %s", key,
           we_kind[kind], msg, we_meaning[kind]);
}

/* One command Redis refused inside an applied write: counted by kind (a
 * refused stats delta is kept instead), named in the log. */
static void refused_cmd(fd_engine *e, const wseg *sg, size_t at, const char *msg)
{
    char key[1100];
    int kind = sg ? sg->kind : WE_WINDOW;
    e->carry[SF_WE0 + kind]++;
    e->carry[SF_WE_TOTAL]++;
    if (sg && kind == WE_STATS)
        e->carry[sg->field] += sg->value;
    if (sg)
        seg_key(e, sg, at - sg->first, key, sizeof key);
    else
        snprintf(key, sizeof key, "(unknown: out of memory)");
    name_key(e, key, kind, msg ? msg : "(no text)");
}

/* An applied write (EXEC answered an array): count what Redis refused in
 * it. Before confirm: the runs point into the epochs' snapshots. */
void eng_count_refused(fd_engine *e, const redisReply *x)
{
    for (int i = 0; i < SF__COUNT; i++) {
        e->carry[i] -= e->carry_sent[i]; /* stored, but what is refused below */
        e->carry_sent[i] = 0;
    }
    size_t np = e->io.n_pre_err < IO_ERR_MAX ? e->io.n_pre_err : IO_ERR_MAX;
    for (size_t j = 0; j < np; j++) {
        const wseg *sg = seg_find(e, true, e->io.pre_err_at[j]);
        refused_cmd(e, sg, e->io.pre_err_at[j], e->io.pre_err[j]);
    }
    if (e->io.n_pre_err > IO_ERR_MAX) { /* only PFADDs come before MULTI */
        uint64_t more = e->io.n_pre_err - IO_ERR_MAX;
        e->carry[SF_WE0 + WE_UNIQUE_USERS] += (int64_t)more;
        e->carry[SF_WE_TOTAL] += (int64_t)more;
        e->wkeys.quiet += more;
    }
    for (size_t k = 0; k < x->elements; k++)
        if (x->element[k]->type == REDIS_REPLY_ERROR)
            refused_cmd(e, seg_find(e, false, k), k, x->element[k]->str);
}

/* Redis refused a whole write (nothing of it applied): back off. */
void eng_refused(fd_engine *e, const char *cause)
{
    wrefusal *r = &e->refuse;
    int64_t now = fd_mono_ms();
    if (!r->bo.min_ms)
        fd_backoff_init(&r->bo, e->cfg->redis_backoff_min_ms, e->cfg->redis_backoff_max_ms,
                        (uint64_t)now * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)e);
    char code[sizeof r->code];
    fd_redis_error_code(cause, code, sizeof code);
    int64_t delay = fd_backoff_fail(&r->bo, now);
    r->attempts++;
    if (!r->active || strcmp(code, r->code) != 0) {
        fd_err("engine",
               "Redis refuses writes: %s; consumption paused, retrying with backoff %" PRId64
               "..%" PRId64 " ms (nothing is lost)",
               cause, r->bo.min_ms, r->bo.max_ms);
        if (!r->active) {
            r->since = now;
            r->attempts = 1;
        }
        r->active = true;
        r->summary_at = now;
        r->at_summary = r->attempts;
        snprintf(r->code, sizeof r->code, "%s", code);
        snprintf(r->cause, sizeof r->cause, "%s", cause);
    } else if (now - r->summary_at >= REFUSE_SUMMARY_MS) {
        fd_warn("engine",
                "Redis still refuses writes (%s) after %" PRId64 " s: %" PRIu64
                " attempt(s) in the last %" PRId64 " s; next in %" PRId64 " ms",
                r->code, (now - r->since) / 1000, r->attempts - r->at_summary,
                (now - r->summary_at) / 1000, delay);
        r->summary_at = now;
        r->at_summary = r->attempts;
    }
    eng_set_blocked(e, true, "Redis refuses writes");
}

/* A write was accepted: the refusal, if any, is over. */
void eng_refusal_over(fd_engine *e)
{
    wrefusal *r = &e->refuse;
    if (!r->active)
        return;
    fd_info("engine",
            "Redis accepts writes again after %" PRId64 " ms and %" PRIu64
            " refused attempt(s) (%s)",
            fd_mono_ms() - r->since, r->attempts, r->code);
    r->active = false;
    r->attempts = 0;
    fd_backoff_reset(&r->bo);
}

/* Backing off after a refused write: not yet time to try again. */
bool eng_refusal_wait(const fd_engine *e)
{
    return e->refuse.active && !fd_backoff_ready(&e->refuse.bo, fd_mono_ms());
}

static bool carry_any(const fd_engine *e)
{
    for (int i = 0; i < SF__COUNT; i++)
        if (e->carry[i])
            return true;
    return false;
}

/* Stats deltas left over (refused, or write errors found in the last
 * write's reply) while no epoch is pending: written on their own, so that
 * they do not wait for the next event. Retried with backoff while Redis
 * refuses them; force = once more regardless (shutdown). */
void eng_flush_carry(fd_engine *e, bool force)
{
    if (e->wf.active || e->n_epochs || e->write_ambiguous || !carry_any(e))
        return;
    int64_t now = fd_mono_ms();
    if (!e->carry_bo.min_ms)
        fd_backoff_init(&e->carry_bo, e->cfg->redis_backoff_min_ms, e->cfg->redis_backoff_max_ms,
                        (uint64_t)now ^ 0x5851F42D4C957F2DULL);
    if (!force && (!fd_backoff_ready(&e->carry_bo, now) || eng_refusal_wait(e)))
        return;
    char err[256], key[600], name[64];
    if (fd_redis_ensure(e->redis, err, sizeof err) != 0)
        return;
    snprintf(key, sizeof key, "%sstats", e->cfg->redis_key_prefix);
    int field[SF__COUNT];
    int64_t sent[SF__COUNT];
    size_t n = 0;
    fd_redis_appendf(e->redis, "MULTI");
    for (int i = 0; i < SF__COUNT; i++)
        if (e->carry[i]) {
            fd_redis_appendf(e->redis, "HINCRBY %s %s %lld", key,
                             eng_stat_field(i, name, sizeof name), (long long)e->carry[i]);
            field[n] = i;
            sent[n++] = e->carry[i];
        }
    fd_redis_appendf(e->redis, "EXEC");
    redisReply *x = NULL;
    char queued[256] = "";
    for (size_t i = 0; i < n + 2; i++) {
        redisReply *y = NULL;
        if (fd_redis_read_replies(e->redis, &y, 1, err, sizeof err) != 0) {
            /* Sent, outcome unknown: not sent again (that could count twice). */
            fd_err("engine",
                   "writing stats deltas kept from earlier writes: %s; whether they "
                   "were stored is unknown, and they are not sent again:",
                   err);
            for (size_t k = 0; k < n; k++)
                fd_err("engine", "  not stored (perhaps): %s %s %lld", key,
                       eng_stat_field(field[k], name, sizeof name), (long long)sent[k]);
            memset(e->carry, 0, sizeof e->carry);
            return;
        }
        if (i == n + 1)
            x = y;
        else {
            if (y->type == REDIS_REPLY_ERROR && !queued[0])
                snprintf(queued, sizeof queued, "%s", y->str);
            freeReplyObject(y);
        }
    }
    if (x->type == REDIS_REPLY_ARRAY) {
        if (e->refuse.active) {
            eng_refusal_over(e);
            eng_set_blocked(e, false, NULL);
        }
        bool again = false;
        for (size_t k = 0; k < n; k++)
            if (k >= x->elements || x->element[k]->type != REDIS_REPLY_ERROR) {
                e->carry[field[k]] -= sent[k];
            } else {
                wseg sg = {.kind = WE_STATS, .field = field[k], .value = 0};
                refused_cmd(e, &sg, 0, x->element[k]->str);
                again = true;
            }
        if (again)
            fd_backoff_fail(&e->carry_bo, fd_mono_ms());
        else
            fd_backoff_reset(&e->carry_bo);
    } else {
        eng_refused(e, queued[0]                      ? queued
                       : x->type == REDIS_REPLY_ERROR ? x->str
                                                      : "EXEC: no array");
    }
    freeReplyObject(x);
}

/* At shutdown: stats deltas that could not be stored are named, so an
 * operator can add them by hand. */
void eng_report_carry(fd_engine *e)
{
    if (!carry_any(e))
        return;
    char name[64];
    fd_err("engine",
           "shutdown: stats deltas Redis did not take (add them by hand with HINCRBY "
           "%sstats FIELD N once the key is repaired):",
           e->cfg->redis_key_prefix);
    for (int i = 0; i < SF__COUNT; i++)
        if (e->carry[i])
            fd_err("engine", "  %s %lld", eng_stat_field(i, name, sizeof name),
                   (long long)e->carry[i]);
}
