/*
 * mf.h - online matrix factorization from implicit feedback (issue 12,
 * docs/RECS.md): incremental SGD in the spirit of ISGD (Vinagre, Jorge and
 * Gama, 2014), one update per positive event weighted by its type, plus
 * sampled negatives drawn from the recent positives (so in proportion to
 * recent popularity), and top-N recommendations scored with OpenBLAS.
 *
 * Pure C over plain structs: no Kafka, no Redis, no threads, no clock.
 * The caller owns the user vectors (k floats each, in the user's state)
 * and one fd_mf_items (the item factors, popularity and sampler); every
 * function takes what it needs as arguments, so the same calls give the
 * same factors in a replay.
 *
 * One positive event (u, i, weight w) with learning rate eta, L2 lambda:
 *   e   = 1 - u.v_i                    (target 1, ISGD)
 *   u'  = u + eta (w e v_i - lambda u)
 *   v_i = v_i + eta (w e u - lambda v_i)        (with the old u)
 * then for each of `negatives` items j drawn from the ring of recent
 * positives (j != i; skipped when the ring holds nothing else):
 *   e   = 0 - u'.v_j
 *   u'' = u' + eta (e v_j - lambda u')
 *   v_j = v_j + eta (e u' - lambda v_j)
 * Every factor is clamped to +-FD_MF_CLAMP after each step, so no input
 * can make the arithmetic overflow.
 */
#ifndef FD_MF_H
#define FD_MF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FD_MF_MAX_K   64
#define FD_MF_MAX_NEG 32
#define FD_MF_RING    4096 /* recent positives the negatives are drawn from */
#define FD_MF_CLAMP   16.0f
#define FD_MF_TOP_MAX 100 /* at most this many items in a top-N list */

/* event types, as features/event.h numbers them: click, cart, purchase */
#define FD_MF_TYPES 3

typedef struct fd_mf_params {
    int k;                     /* factors, 1..FD_MF_MAX_K: default 32 */
    float eta;                 /* learning rate (0, 1]: default 0.05 */
    float lambda;              /* L2 regularisation [0, 1): default 0.01 */
    int negatives;             /* per positive, 0..FD_MF_MAX_NEG: default 4 */
    float weight[FD_MF_TYPES]; /* per event type, [0, 100]: 1, 3, 5 */
    float init;                /* initial factors in +-init/sqrt(k): default 0.1 */
    int64_t pop_half_life_ms;  /* decayed popularity: default 7 days */
    uint32_t max_items;        /* bound on distinct items: default 1,000,000 */
} fd_mf_params;

void fd_mf_params_default(fd_mf_params *p);
/* 0, or -1 with a message naming the bad value. */
int fd_mf_params_check(const fd_mf_params *p, char *errstr, size_t errstr_size);

/* The item side, shared by the users of one replica. Items are numbered
 * 0..n-1 in order of first sight; v is row-major n x k (row i = item i),
 * contiguous, so cblas_sgemv scores every item in one call. */
typedef struct fd_mf_items {
    int k;
    uint32_t n, cap, max;
    float *v;        /* cap * k */
    double *pop;     /* decayed popularity, scaled by 2^((t - t0) / half-life) */
    char **ids;      /* item id of each index (NUL-terminated copies) */
    uint32_t *slots; /* open addressing: index + 1, 0 = empty; 2 * cap slots */
    uint32_t ring[FD_MF_RING];
    uint32_t ring_n;    /* filled entries (<= FD_MF_RING) */
    uint32_t ring_pos;  /* next to overwrite */
    uint64_t rng;       /* negative sampling: splitmix64 state, starts fixed */
    int64_t pop_t0;     /* event time of popularity scale 1 */
    uint64_t positives; /* positive events learned */
    /* the decayed-popularity top list, best first (cold start, baseline) */
    uint32_t top[FD_MF_TOP_MAX];
    int n_top;
    bool pop_set; /* pop_t0 is set (at the first positive, or as loaded) */
    /* tracking (fd_mf_track): rows changed since the last fd_mf_take, with
     * their values before the first change */
    bool tracking, track_oom;
    uint32_t *tmark; /* cap: 1 + position in tlist, 0 = unchanged */
    uint32_t *tlist; /* changed rows, in order of first change */
    float *tbase;    /* their rows before (n_t * k) */
    double *tpop;    /* their popularity before */
    uint32_t n_t, cap_t;
    uint64_t positives_mark; /* positives at the last take */
} fd_mf_items;

/* 0, or -1 out of memory. fd_mf_items_free accepts NULL and a zeroed one. */
int fd_mf_items_init(fd_mf_items *it, const fd_mf_params *p);
void fd_mf_items_free(fd_mf_items *it);

/* The index of item id (len bytes, 1..256): found, or (create) added with
 * initial factors deterministic in the id. -1: not found, the bound
 * max_items reached, or out of memory. */
int32_t fd_mf_item(fd_mf_items *it, const fd_mf_params *p, const char *id, size_t len, bool create);
static inline const char *fd_mf_item_id(const fd_mf_items *it, int32_t idx)
{
    return it->ids[idx];
}

/* Initial factors of a user, deterministic in its id: k floats in u. */
void fd_mf_user_init(const fd_mf_params *p, const char *id, size_t len, float *u);
/* Those of an item (what fd_mf_item gives a new item). */
void fd_mf_item_init(const fd_mf_params *p, const char *id, size_t len, float *v);

/* Learn one positive event of type (0 click, 1 cart, 2 purchase) on item
 * idx by the user with factors u at event time ts: the update above, the
 * negatives, the item's popularity and the sampler. Returns u.v_idx before
 * the update (the model's score for this event). */
float fd_mf_learn(const fd_mf_params *p, fd_mf_items *it, float *u, int32_t idx, int type,
                  int64_t ts);

/* Start loading item idx's factors and popularity into the cache (a
 * caller with a batch of events calls it a few events ahead). */
void fd_mf_prefetch(const fd_mf_items *it, int32_t idx);

/* u.v_idx */
float fd_mf_score(const fd_mf_items *it, const float *u, int32_t idx);

/* The n best items for u (n <= FD_MF_TOP_MAX), best first, leaving out the
 * n_ex indexes in exclude: every item scored with cblas_sgemv into scratch
 * (it->n floats, the caller's), then a partial selection. Returns how many
 * were written to idx (and score, unless NULL). */
int fd_mf_top_n(const fd_mf_items *it, const float *u, const int32_t *exclude, int n_ex, int n,
                float *scratch, int32_t *idx, float *score);

/* bfloat16 storage of a factor vector (user factors in the user's state:
 * 2 bytes a factor). Rounding to nearest, ties to even; factors are
 * clamped finite, so no NaN or infinity is ever packed. */
void fd_mf_bf16_pack(const float *v, int k, uint16_t *out);
void fd_mf_bf16_unpack(const uint16_t *in, int k, float *v);

/* The selection half of fd_mf_top_n, for scores computed otherwise: the n
 * best of scores[0..n_items-1], best first, without the excluded indexes. */
int fd_mf_top_of(const float *scores, uint32_t n_items, const int32_t *exclude, int n_ex, int n,
                 int32_t *idx, float *score);

/* The n most popular items (decayed popularity), best first, leaving out
 * exclude. Returns how many were written. */
int fd_mf_popular(const fd_mf_items *it, const int32_t *exclude, int n_ex, int n, int32_t *idx);

/* Prequential quality (docs/RECS.md): positives checked against the
 * user's top 10 before learning them, hits and NDCG@10, for the model and
 * the decayed-popularity list side by side; positives not learned because
 * mf.max_items was reached. */
typedef struct fd_mf_quality {
    uint64_t checks, hits, pop_hits, refused;
    double ndcg, pop_ndcg;
} fd_mf_quality;

/* Check item idx against a list (n entries, best first): adds a hit and
 * 1/log2(1 + rank) to *hits / *ndcg when it is in it. */
void fd_mf_check(const int32_t *list, int n, int32_t idx, uint64_t *hits, double *ndcg);

/* A user's persisted model state as the user record's suffix
 * " f B64(bfloat16 factors) RECS_MIN[ H1,H2,...]" (the bought items'
 * hashes in hex, when any; FD_MF_USER_TEXT_MAX bytes, NUL added); returns
 * the length (0 when the user has no factors yet). fd_mf_user_parse reads
 * that suffix: 0, or -1 with errstr. */
#define FD_MF_USER_TEXT_MAX 176

/* A purchase of item id by the user: remembered among its last
 * FD_MF_USER_BOUGHT (newest first, no repeats). */
struct fd_mf_user;
void fd_mf_user_bought(struct fd_mf_user *m, const char *id, size_t len);
/* Whether item id is among the user's remembered purchases. */
bool fd_mf_user_has_bought(const struct fd_mf_user *m, const char *id, size_t len);
struct fd_mf_user;
size_t fd_mf_user_format(const struct fd_mf_user *m, int k, char *buf);
int fd_mf_user_parse(struct fd_mf_user *m, int k, const char *s, size_t len, char *errstr,
                     size_t errstr_size);

/* ---- replicas (the daemon's shards; docs/RECS.md "In the daemon") -------- */

/* Track (on) what fd_mf_learn changes from now on, for fd_mf_take. 0, or
 * -1 out of memory. */
int fd_mf_track(fd_mf_items *it, bool on);

/* What a replica learned between two takes, by item id. */
typedef struct fd_mf_delta {
    int k;
    uint32_t n;
    char *ids;      /* n NUL-terminated ids, one after another */
    float *dv;      /* n * k: what each row gained */
    double *dpop;   /* n: popularity gained, in the scale of pop_t0 */
    int64_t pop_t0; /* the replica's popularity scale */
    uint64_t positives;
    uint32_t n_ring; /* the sampler: the items of the last n_ring positives, oldest first */
    char *ring_ids;  /* n_ring NUL-terminated ids */
} fd_mf_delta;

/* Move what was learned since the last take into d (its own allocations;
 * empty when nothing) and start tracking again. 0, or -1 out of memory
 * (nothing moved: a later take still has it). */
int fd_mf_take(fd_mf_items *it, fd_mf_delta *d);
void fd_mf_delta_free(fd_mf_delta *d); /* NULL and a zeroed one accepted */

/* Add d onto it (the merged model): each row gains its dv (clamped), items
 * missing are created first (initial factors from the id, as the replica
 * made them, so the sum is what the replica holds), popularity converted
 * to it's scale, positives counted, the ring's entries pushed. at (d->n entries, or NULL) receives
 * each row's index in it, -1 where it could not be created (max_items
 * reached, out of memory). Returns the rows that could not be added. */
uint32_t fd_mf_add_delta(fd_mf_items *it, const fd_mf_params *p, const fd_mf_delta *d, int32_t *at);

/* A replica takes over row g of item id (len bytes) from the merged model:
 * the row becomes g, plus what the replica learned on it since its last
 * take while tracking (the base becomes g). Created when missing. 0, or -1
 * (max_items reached, out of memory). */
int fd_mf_adopt_row(fd_mf_items *it, const fd_mf_params *p, const char *id, size_t len,
                    const float *g);

/* The sampler's ring: the j-th oldest entry (j < ring_n), and adding one
 * (the newest; the oldest drops out of a full ring). */
uint32_t fd_mf_ring_at(const fd_mf_items *it, uint32_t j);
void fd_mf_ring_push(fd_mf_items *it, uint32_t idx);

/* Set item idx's factors and popularity (in the scale of pop_t0) as
 * loaded; the first call sets the scale, later ones convert to it. */
void fd_mf_set_row(fd_mf_items *it, const fd_mf_params *p, int32_t idx, const float *v, double pop,
                   int64_t pop_t0);

#endif
