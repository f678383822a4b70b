/*
 * eval_recs.c - the recommendation half of `funnelctl eval` (see
 * eval_recs.h): prequential recall@10 and NDCG@10 of the online matrix
 * factorization (models/mf.h) beside the decayed popularity list, side by
 * side on the same events.
 *
 * Every event with an item is a positive. Before the model learns from it,
 * both lists are made for the user as the daemon would make them: the
 * model's top 10 (or, for a user with fewer than FD_EVR_COLD positives so
 * far, the popularity list: the cold-start rule), and the popularity top
 * 10; both leave out the user's last FD_EVR_BOUGHT purchased items. A hit
 * is the event's item in the list; NDCG@10 with one relevant item is
 * 1 / log2(1 + rank). With --recs-every N only every Nth positive is
 * evaluated (all are learned); docs/RECS.md says which figures used it.
 */
#include "tools/eval_recs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "features/user.h"

#define FD_EVR_COLD   3 /* positives before the model's own list is used */
#define FD_EVR_BOUGHT 8 /* recent purchases left out of a user's lists */
#define TOP           10

typedef struct evr_user {
    char *id;
    uint32_t positives;
    int32_t bought[FD_EVR_BOUGHT]; /* ring of recent purchases (item index) */
    uint8_t n_bought, bought_pos;
} evr_user;

struct fd_eval_recs {
    fd_mf_params p;
    fd_mf_items items;
    evr_user *users;
    float *factors; /* users * k (float32) */
    uint16_t *bf16; /* users * k instead, with bf16 */
    bool use_bf16;
    uint32_t n_users, cap_users;
    uint32_t *slots; /* 2 * cap_users: index + 1 */
    float *scratch;  /* items.cap floats */
    uint32_t scratch_cap;
    uint64_t every, seen;
    fd_eval_recs_result r;
};

fd_eval_recs *fd_eval_recs_new(const fd_mf_params *p, uint64_t every, bool bf16)
{
    fd_eval_recs *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->p = *p;
    e->use_bf16 = bf16;
    e->every = every ? every : 1;
    e->cap_users = 1024;
    e->users = calloc(e->cap_users, sizeof *e->users);
    e->factors = malloc((size_t)e->cap_users * (size_t)p->k * sizeof *e->factors);
    e->bf16 = malloc((size_t)e->cap_users * (size_t)p->k * sizeof *e->bf16);
    e->slots = calloc(2 * (size_t)e->cap_users, sizeof *e->slots);
    if (!e->users || !e->factors || !e->bf16 || !e->slots || fd_mf_items_init(&e->items, p) != 0) {
        fd_eval_recs_free(e);
        return NULL;
    }
    return e;
}

void fd_eval_recs_free(fd_eval_recs *e)
{
    if (!e)
        return;
    if (e->users)
        for (uint32_t i = 0; i < e->n_users; i++)
            free(e->users[i].id);
    free(e->users);
    free(e->factors);
    free(e->bf16);
    free(e->slots);
    free(e->scratch);
    fd_mf_items_free(&e->items);
    free(e);
}

static int grow_users(fd_eval_recs *e)
{
    uint32_t cap = e->cap_users * 2;
    evr_user *u = realloc(e->users, (size_t)cap * sizeof *u);
    if (!u)
        return -1;
    e->users = u;
    float *f = realloc(e->factors, (size_t)cap * (size_t)e->p.k * sizeof *f);
    if (!f)
        return -1;
    e->factors = f;
    uint16_t *h = realloc(e->bf16, (size_t)cap * (size_t)e->p.k * sizeof *h);
    if (!h)
        return -1;
    e->bf16 = h;
    uint32_t *slots = calloc(2 * (size_t)cap, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t i = 0; i < e->n_users; i++) {
        size_t at = fd_user_hash(u[i].id, strlen(u[i].id)) % (2 * (size_t)cap);
        while (slots[at])
            at = (at + 1) % (2 * (size_t)cap);
        slots[at] = i + 1;
    }
    free(e->slots);
    e->slots = slots;
    e->cap_users = cap;
    return 0;
}

/* The user's index, added when new; -1 out of memory. */
static int64_t user_of(fd_eval_recs *e, const char *id)
{
    size_t len = strlen(id), ns = 2 * (size_t)e->cap_users;
    size_t at = fd_user_hash(id, len) % ns;
    while (e->slots[at]) {
        uint32_t i = e->slots[at] - 1;
        if (!strcmp(e->users[i].id, id))
            return i;
        at = (at + 1) % ns;
    }
    if (e->n_users == e->cap_users) {
        if (grow_users(e) != 0)
            return -1;
        return user_of(e, id);
    }
    uint32_t i = e->n_users;
    memset(&e->users[i], 0, sizeof e->users[i]);
    e->users[i].id = malloc(len + 1);
    if (!e->users[i].id)
        return -1;
    memcpy(e->users[i].id, id, len + 1);
    float *uf = e->factors + (size_t)i * (size_t)e->p.k;
    fd_mf_user_init(&e->p, id, len, uf);
    fd_mf_bf16_pack(uf, e->p.k, e->bf16 + (size_t)i * (size_t)e->p.k);
    e->slots[at] = i + 1;
    e->n_users++;
    return i;
}

/* rank (1-based) of item in list, 0 when absent */
static int rank_of(const int32_t *list, int n, int32_t item)
{
    for (int r = 0; r < n; r++)
        if (list[r] == item)
            return r + 1;
    return 0;
}

int fd_eval_recs_event(fd_eval_recs *e, const fd_event *ev)
{
    if (!ev->has_item || !ev->item_id[0])
        return 0;
    int64_t ui = user_of(e, ev->user_id);
    if (ui < 0)
        return -1;
    int32_t item = fd_mf_item(&e->items, &e->p, ev->item_id, strlen(ev->item_id), true);
    if (item < 0) {
        e->r.skipped++; /* the item bound: counted, not learned */
        return 0;
    }
    evr_user *u = &e->users[ui];
    float *uf = e->factors + (size_t)ui * (size_t)e->p.k;
    uint16_t *uh = e->bf16 + (size_t)ui * (size_t)e->p.k;
    if (e->use_bf16) /* what a user state of 2 bytes a factor gives back */
        fd_mf_bf16_unpack(uh, e->p.k, uf);
    if (e->scratch_cap < e->items.cap) {
        float *s = realloc(e->scratch, (size_t)e->items.cap * sizeof *s);
        if (!s)
            return -1;
        e->scratch = s;
        e->scratch_cap = e->items.cap;
    }
    if (e->seen++ % e->every == 0 && e->items.positives > 0) {
        int32_t model[TOP], pop[TOP];
        int np = fd_mf_popular(&e->items, u->bought, u->n_bought, TOP, pop);
        int nm =
            u->positives < FD_EVR_COLD
                ? fd_mf_popular(&e->items, u->bought, u->n_bought, TOP, model)
                : fd_mf_top_n(&e->items, uf, u->bought, u->n_bought, TOP, e->scratch, model, NULL);
        int rm = rank_of(model, nm, item), rp = rank_of(pop, np, item);
        e->r.evaluated++;
        if (rm) {
            e->r.hits++;
            e->r.ndcg_sum += 1.0 / log2(1.0 + rm);
        }
        if (rp) {
            e->r.pop_hits++;
            e->r.pop_ndcg_sum += 1.0 / log2(1.0 + rp);
        }
    }
    fd_mf_learn(&e->p, &e->items, uf, item, ev->type, ev->ts_ms);
    if (e->use_bf16)
        fd_mf_bf16_pack(uf, e->p.k, uh);
    u->positives++;
    if (ev->type == FD_EV_PURCHASE && rank_of(u->bought, u->n_bought, item) == 0) {
        u->bought[u->bought_pos] = item;
        u->bought_pos = (uint8_t)((u->bought_pos + 1) % FD_EVR_BOUGHT);
        if (u->n_bought < FD_EVR_BOUGHT)
            u->n_bought++;
    }
    e->r.positives++;
    return 0;
}

void fd_eval_recs_get(const fd_eval_recs *e, fd_eval_recs_result *out)
{
    *out = e->r;
    out->items = e->items.n;
    out->users = e->n_users;
    double n = e->r.evaluated ? (double)e->r.evaluated : 1.0;
    out->recall = (double)e->r.hits / n;
    out->ndcg = e->r.ndcg_sum / n;
    out->pop_recall = (double)e->r.pop_hits / n;
    out->pop_ndcg = e->r.pop_ndcg_sum / n;
}
