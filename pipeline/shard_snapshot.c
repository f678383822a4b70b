/*
 * shard_snapshot.c - a shard's answer to a flush marker (shard.c handles
 * the marker): every user changed since the last marker as a user record
 * (MSET), the funnel window deltas, the funnel's unique users (PFADD), the
 * churn model's part (risk ranking, pending sets, alert outbox) and its
 * replica, all filed by partition (see shard.c on why), then the eviction
 * of users whose last state a confirmed epoch carried. Shard thread only.
 */
#include "features/fmt.h"
#include "pipeline/shard_int.h"

static fd_chunk *chunk_for(fd_snapshot *sn, int *idx, int32_t p)
{
    if (idx[p] < 0) {
        idx[p] = sn->n_chunks++;
        fd_chunk *c = &sn->chunks[idx[p]];
        memset(c, 0, sizeof *c);
        c->partition = p;
    }
    return &sn->chunks[idx[p]];
}

/* The next key-value pair of a partition's MSETs (of at most MSET_MAX
 * pairs; mset_left counted them, each MSET starts with its length). */
static void mset_pair(fd_resp *cmds, pstate *ps)
{
    if (ps->mset_open == 0) {
        size_t k = ps->mset_left < MSET_MAX ? ps->mset_left : MSET_MAX;
        fd_resp_cmd(cmds, 1 + 2 * (int)k);
        fd_resp_str(cmds, "MSET");
        ps->mset_open = k;
    }
    ps->mset_open--;
    ps->mset_left--;
}

typedef struct evict_arg {
    uint32_t confirmed;
} evict_arg;

static bool keep_unconfirmed(const fd_user *u, void *arg)
{
    const evict_arg *a = arg;
    return u->dirty || (int32_t)(u->epoch - a->confirmed) > 0;
}

/* What eviction keeps: the unconfirmed users, and a user that still has a
 * churn timer (its timer could not be turned into a ghost: out of memory;
 * the timer points at the user). */
static bool keep_on_evict(const fd_user *u, void *arg)
{
    return keep_unconfirmed(u, arg) || u->churn.heap_pos != 0;
}

/* The churn part of a snapshot's commands, per partition, after its MSETs:
 * ZADD PREFIX churn:risk of the users just written (their latest risk), and
 * SADD / SREM of PREFIX churn:pending:P for the users whose open episode
 * started or ended (docs/REDIS_KEYS.md). */
/* The user's risk is not in PREFIX churn:risk as it is now, to the four
 * decimals written there: its ZADD is due. A user's first write after a
 * load always is (risk_known starts false; sch_parse clears it), so
 * churn:risk never keeps a value the record does not have. Skipping the
 * others saves formatting, sending and Redis's parsing and lookup of a
 * member whose score would not change: comparing the four decimals rather
 * than RISK_Q left out about half of the ZADD members in the bench
 * (204,695 of 400,000) and 5-20 % of Redis's time in ZADD
 * (docs/BENCHMARKS.md). */
static bool risk_changed(const fd_user *u)
{
    return !u->risk_known || fd_fmt_risk4_n(u->risk_w) != fd_fmt_risk4_n(u->churn.risk_q);
}

static void churn_commands(fd_shard *s, fd_snapshot *sn, int *idx, size_t nd)
{
    char key[600], score[32];
    fd_user *u;
    sch_risk_key(s, key, sizeof key);
    /* The pending set: the SREMs and SADDs are counted per partition in the
     * ZADD pass, then sent as few commands of at most MSET_MAX members: all
     * SREMs first, then all SADDs, so one command's members are never cut
     * by the other's header (a mixed epoch once gave Redis a protocol
     * error). The users whose membership changes are kept at the front of
     * s->dl (its last use), so those two passes touch no other user. */
    for (int p = 0; p < s->n_parts; p++)
        s->parts[p].set_left[0] = s->parts[p].set_left[1] = s->parts[p].set_open[0] =
            s->parts[p].set_open[1] = 0;
    size_t nchg = 0;
    for (size_t j = 0; j < nd; j++) {
        u = s->dl[j];
        pstate *ps = &s->parts[u->partition];
        if (risk_changed(u)) {
            fd_chunk *c = chunk_for(sn, idx, u->partition);
            if (ps->risk_open == 0) {
                size_t k = ps->risk_left < MSET_MAX ? ps->risk_left : MSET_MAX;
                fd_resp_cmd(&c->cmds, 2 + 2 * (int)k);
                fd_resp_str(&c->cmds, "ZADD");
                fd_resp_str(&c->cmds, key);
                ps->risk_open = k;
            }
            /* "%.4f" of fd_churn_risk(u), without printf (features/fmt.h) */
            char *e = fd_fmt_risk4(score, u->churn.risk_q);
            fd_resp_arg(&c->cmds, score, (size_t)(e - score));
            fd_resp_arg(&c->cmds, fd_user_id(u), u->id_len);
            ps->risk_open--;
            ps->risk_left--;
            u->risk_w = u->churn.risk_q;
            u->risk_known = true;
        }
        int add = (u->churn.flags & FD_CU_PENDING) != 0;
        if (add != (int)u->churn.in_set) {
            ps->set_left[add]++;
            s->dl[nchg++] = u;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t j = 0; j < nchg; j++) {
            u = s->dl[j];
            int add = (u->churn.flags & FD_CU_PENDING) != 0;
            if (add != pass)
                continue;
            pstate *ps = &s->parts[u->partition];
            fd_chunk *c = chunk_for(sn, idx, u->partition);
            if (ps->set_open[add] == 0) {
                size_t k = ps->set_left[add] < MSET_MAX ? ps->set_left[add] : MSET_MAX;
                fd_resp_cmd(&c->cmds, 2 + (int)k);
                fd_resp_str(&c->cmds, add ? "SADD" : "SREM");
                fd_resp_str(&c->cmds, sch_pending_key(s, u->partition, key, sizeof key));
                ps->set_open[add] = k;
            }
            fd_resp_arg(&c->cmds, fd_user_id(u), u->id_len);
            ps->set_open[add]--;
            ps->set_left[add]--;
            u->churn.in_set = (unsigned)add;
        }
    }
    /* the alerts fired since the last snapshot (shard_churn.c) */
    for (int p = 0; p < s->n_parts; p++)
        if (s->parts[p].outbox.len) {
            fd_chunk *c = chunk_for(sn, idx, p);
            sch_outbox(s, p, &c->cmds);
        }
}

void shard_make_snapshot(fd_shard *s, uint64_t epoch)
{
    fd_snapshot *sn = calloc(1, sizeof *sn);
    int *idx = malloc((size_t)(s->n_parts ? s->n_parts : 1) * sizeof *idx);
    if (sn)
        sn->chunks = calloc((size_t)(s->n_parts ? s->n_parts : 1), sizeof *sn->chunks);
    if (!sn || !idx || !sn->chunks) {
        fd_err("shard", "shard=%d out of memory making a snapshot", s->id);
        if (sn)
            sn->error = 1;
        goto publish;
    }
    sn->epoch = epoch;
    for (int p = 0; p < s->n_parts; p++)
        idx[p] = -1;
    /* Changed users as MSETs of at most MSET_MAX users, per partition:
     * count them first (each MSET starts with its length). */
    size_t cur = 0;
    fd_user *u;
    char rec[FD_FEAT_RECORD_MAX + FD_CHURN_USER_TEXT_MAX + FD_MF_USER_TEXT_MAX];
    for (int p = 0; p < s->n_parts; p++)
        s->parts[p].mset_left = s->parts[p].mset_open = s->parts[p].risk_left =
            s->parts[p].risk_open = 0;
    /* The users to write: the shard listed them as they turned dirty
     * (shard_mark_dirty), so no scan of the whole table (a cache miss per
     * user kept, per epoch: ~3-5 % of funneld's CPU with epochs of 16,384
     * users). Only after a list entry was lost (out of memory) or users were
     * removed (a dropped partition) is the table scanned. Every later pass
     * goes over this list. */
    size_t nd = 0, pairs = 0, pair_bytes = 0;
    if (s->dl_lost) {
        s->n_dl = 0;
        while ((u = fd_user_table_next(s->users, &cur))) {
            if (!u->dirty)
                continue;
            if (s->n_dl == s->dl_cap && shard_grow_dl(s) != 0) {
                fd_err("shard", "shard=%d out of memory making a snapshot", s->id);
                sn->error = 1;
                goto publish;
            }
            s->dl[s->n_dl++] = u;
        }
        s->dl_lost = false;
    }
    for (size_t j = 0; j < s->n_dl; j++) {
        u = s->dl[j];
        if (u->partition < 0 || u->partition >= s->n_parts) {
            s->dl_lost = true; /* stays dirty: found again by the next scan */
            continue;
        }
        s->dl[nd++] = u;
        /* pairs: the user's record, and its refreshed recommendations (shard_mf.c) */
        s->parts[u->partition].mset_left += 1 + (s->mf && u->mf.recs_due);
    }
    s->n_dl = 0;
    for (size_t j = 0, end = 0; j < nd; j++) {
        if (j == end) /* the next batch of recommendations to refresh */
            end = j + smf_prepare(s, s->dl + j, nd - j);
        u = s->dl[j];
        pstate *ps = &s->parts[u->partition];
        bool fresh = idx[u->partition] < 0;
        fd_chunk *c = chunk_for(sn, idx, u->partition);
        if (fresh) /* sized once for its MSETs (the pairs of the last snapshot
                      give the bytes per pair), not grown by doubling */
            fd_resp_reserve(&c->cmds, ps->mset_left * (s->pair_bytes ? s->pair_bytes : 640) + 4096);
        size_t len0 = c->cmds.len;
        mset_pair(&c->cmds, ps);
        fd_resp_arg(&c->cmds, s->key, shard_user_key_len(s, fd_user_id(u), u->id_len));
        size_t rl = fd_feat_record_format(&s->env->core->feat, &u->f, rec);
        if (s->cm)
            rl += sch_suffix(u, rec + rl);
        rl += smf_suffix(s, u, rec + rl);
        fd_resp_arg(&c->cmds, rec, rl);
        int recs = s->mf && u->mf.recs_due;
        if (recs) {
            const char *key, *val;
            size_t kl, vl;
            if (smf_recs(s, u, &key, &kl, &val, &vl) != 0)
                sn->error = 1;
            mset_pair(&c->cmds, ps);
            fd_resp_arg(&c->cmds, key, kl);
            fd_resp_arg(&c->cmds, val, vl);
        }
        pair_bytes += c->cmds.len - len0;
        c->users++;
        pairs += 1 + recs;
        u->dirty = false;
        u->epoch = (uint32_t)epoch;
        if (s->cm && risk_changed(u))
            ps->risk_left++;
    }
    if (s->cm)
        churn_commands(s, sn, idx, nd);
    if (pairs)
        s->pair_bytes = pair_bytes / pairs + 1;
    cur = 0;
    const fd_funnel_delta *d;
    while ((d = fd_funnel_next(s->funnel, &cur))) {
        fd_chunk *c = chunk_for(sn, idx, d->partition);
        if (c->n_win == c->cap_win) {
            int cap = c->cap_win ? c->cap_win * 2 : 16;
            fd_funnel_delta *nw = realloc(c->win, (size_t)cap * sizeof *nw);
            if (!nw) {
                sn->error = 1;
                continue;
            }
            c->win = nw;
            c->cap_win = cap;
        }
        c->win[c->n_win++] = *d;
    }
    if (build_reaches(s, &sn->pfadd) != 0)
        sn->error = 1;
    if (sch_snapshot(s, sn, epoch) != 0 || smf_snapshot(s, sn) != 0)
        sn->error = 1;
    fd_funnel_clear(s->funnel, -1);
    atomic_store(&s->dirty_base, atomic_load(&s->n_dirty));
    for (int p = 0; p < s->n_parts; p++) {
        pstate *ps = &s->parts[p];
        if (!ps->touched)
            continue;
        fd_chunk *c = chunk_for(sn, idx, p);
        memcpy(c->stats, ps->stats, sizeof c->stats);
        memset(ps->stats, 0, sizeof ps->stats);
        ps->touched = false;
    }
    for (int i = 0; i < sn->n_chunks; i++)
        if (!fd_resp_ok(&sn->chunks[i].cmds))
            sn->error = sn->chunks[i].cmds.oom ? 1 : 2;
    if (!fd_resp_ok(&sn->pfadd))
        sn->error = sn->pfadd.oom ? 1 : 2;
publish:
    free(idx);
    if (!sn)
        return; /* the writer times out waiting and stops without writing */
    pthread_mutex_lock(&s->mu);
    fd_snapshot *old = s->snap;
    s->snap = sn;
    pthread_mutex_unlock(&s->mu);
    fd_snapshot_free(old); /* an abandoned epoch's */

    if (fd_user_table_count(s->users) > s->env->max_users) {
        evict_arg a = {(uint32_t)atomic_load(s->env->confirmed_epoch)};
        size_t before = fd_user_table_count(s->users);
        /* an evicted user's churn timer stays, holding its id (shard_churn.c) */
        cur = 0;
        while (s->cm && (u = fd_user_table_next(s->users, &cur)))
            if (u->churn.heap_pos && !keep_unconfirmed(u, &a))
                sch_ghost(s, u);
        fd_user_table_filter(s->users, keep_on_evict, &a);
        fd_debug("shard", "shard=%d evicted %zu users", s->id,
                 before - fd_user_table_count(s->users));
        atomic_store(&s->n_users, fd_user_table_count(s->users));
    }
}
