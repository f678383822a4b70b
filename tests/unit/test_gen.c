/*
 * test_gen.c - the synthetic clickstream generator (tools/gen.c).
 *
 *  The generator lives in tools/ (in the fdtools library behind funnelctl),
 * this test links it through the fdtools library. Every check recounts what the generator
 * handed out and compares it with the truth it claims, or with a property a
 * broken generator would violate (determinism, funnel order, bounded
 * disorder, skew, churners going quiet).
 */
#include "tools/gen.h"

#include "tests/unit/check.h"

#include <inttypes.h>
#include <stdlib.h>

static fd_gen *mk(uint64_t seed, uint32_t users, uint64_t events, int64_t span_ms,
                  int64_t disorder_ms)
{
    fd_gen_opts o;
    fd_gen_opts_default(&o);
    o.seed = seed;
    o.users = users;
    o.items = 500;
    o.events = events;
    if (span_ms)
        o.span_ms = span_ms;
    o.max_disorder_ms = disorder_ms;
    char err[256] = "";
    fd_gen *g = fd_gen_new(&o, err, sizeof err);
    if (!g)
        fprintf(stderr, "fd_gen_new: %s\n", err);
    return g;
}

static uint32_t num_after(const char *s, char c)
{
    const char *p = strrchr(s, c);
    return p ? (uint32_t)strtoul(p + 1, NULL, 10) : 0;
}

static void test_determinism(void)
{
    fd_gen *a = mk(42, 2000, 20000, 0, 2000), *b = mk(42, 2000, 20000, 0, 2000);
    fd_gen *c = mk(43, 2000, 20000, 0, 2000);
    CHECK(a && b && c);
    if (!a || !b || !c)
        goto out;
    fd_event ea, eb, ec;
    uint64_t n = 0, same = 0, differ_c = 0;
    while (fd_gen_next(a, &ea)) {
        int rb = fd_gen_next(b, &eb), rc = fd_gen_next(c, &ec);
        if (rb && fd_event_equal(&ea, &eb))
            same++;
        if (!rc || strcmp(ea.user_id, ec.user_id) || ea.ts_ms != ec.ts_ms)
            differ_c++;
        n++;
    }
    CHECK(n == 20000);
    CHECK(same == n);
    CHECK(fd_gen_next(b, &eb) == 0);
    CHECK(differ_c > n / 2);
    CHECK(fd_gen_emitted(a) == 20000);
    CHECK(!strncmp(ea.event_id, "e-42-", 5));
out:
    fd_gen_destroy(a);
    fd_gen_destroy(b);
    fd_gen_destroy(c);
}

/* Recount per user and per minute, compare with the truth; event ids are
 * unique; prices are whole cents. */
static void test_truth_recount(int64_t disorder_ms)
{
    const uint32_t users = 3000;
    const uint64_t events = 60000;
    fd_gen *g = mk(7, users, events, 0, disorder_ms);
    CHECK(g != NULL);
    if (!g)
        return;
    fd_gen_user_truth *ut = calloc(users, sizeof *ut);
    size_t nmin = 20000;
    fd_gen_minute_truth *mt = calloc(nmin, sizeof *mt);
    uint8_t *seen = calloc(events * 4 + 1, 1);
    int64_t m0 = fd_gen_get_opts(g)->start_ms - fd_gen_get_opts(g)->start_ms % 60000;
    uint64_t n = 0, dup = 0, bad_id = 0, bad_price = 0, bad_min = 0;
    fd_event e;
    while (fd_gen_next(g, &e)) {
        n++;
        uint32_t u = (uint32_t)strtoul(e.user_id + 1, NULL, 10);
        if (e.user_id[0] != 'u' || u < 1 || u > users) {
            bad_id++;
            continue;
        }
        fd_gen_user_truth *t = &ut[u - 1];
        if (!t->n[0] && !t->n[1] && !t->n[2])
            t->first_ts = t->last_ts = e.ts_ms;
        t->n[e.type]++;
        if (e.ts_ms < t->first_ts)
            t->first_ts = e.ts_ms;
        if (e.ts_ms > t->last_ts)
            t->last_ts = e.ts_ms;
        int64_t w = e.ts_ms - e.ts_ms % 60000;
        size_t mi = (size_t)((w - m0) / 60000);
        if (w < m0 || mi >= nmin) {
            bad_min++;
            continue;
        }
        mt[mi].n[e.type]++;
        uint32_t item = num_after(e.item_id, 'i');
        if (e.type == FD_EV_PURCHASE && e.has_price)
            mt[mi].revenue_cents += llround(e.price * 100) * e.quantity;
        if (llround(e.price * 100) != fd_gen_item_price_cents(g, item - 1) ||
            e.price != (double)fd_gen_item_price_cents(g, item - 1) / 100.0 ||
            llround(e.price * 100) % 100 != 99)
            bad_price++;
        uint32_t seq = num_after(e.event_id, '-');
        if (seq == 0 || seq > events * 4)
            bad_id++;
        else if (seen[seq]++)
            dup++;
    }
    CHECK(n == events);
    CHECK(bad_id == 0);
    CHECK(dup == 0);
    CHECK(bad_min == 0);
    CHECK(bad_price == 0);

    uint64_t user_mismatch = 0, active = 0;
    for (uint32_t u = 0; u < users; u++) {
        const fd_gen_user_truth *a = fd_gen_user(g, u), *b = &ut[u];
        if (memcmp(a->n, b->n, sizeof a->n) || a->first_ts != b->first_ts ||
            a->last_ts != b->last_ts)
            user_mismatch++;
        if (b->n[0] + b->n[1] + b->n[2])
            active++;
    }
    CHECK(user_mismatch == 0);
    CHECK(active == fd_gen_active_users(g));

    int64_t first;
    size_t gm = fd_gen_minutes(g, &first);
    CHECK(first == m0);
    CHECK(gm <= nmin);
    uint64_t min_mismatch = 0;
    for (size_t i = 0; i < nmin; i++) {
        const fd_gen_minute_truth *a = fd_gen_minute(g, i), *b = &mt[i];
        fd_gen_minute_truth zero = {{0}, 0};
        if (!a)
            a = &zero;
        if (memcmp(a->n, b->n, sizeof a->n) || a->revenue_cents != b->revenue_cents)
            min_mismatch++;
    }
    CHECK(min_mismatch == 0);

    fd_gen_minute_truth tot;
    fd_gen_totals(g, &tot);
    CHECK(tot.n[0] + tot.n[1] + tot.n[2] == events);
    CHECK(tot.n[FD_EV_CLICK] > tot.n[FD_EV_CART]);
    CHECK(tot.n[FD_EV_CART] > tot.n[FD_EV_PURCHASE]);
    CHECK(tot.n[FD_EV_PURCHASE] > 0);
    CHECK(tot.revenue_cents > 0);
    /* funnel rates near the model's 30% and 35% */
    double cart_rate = (double)tot.n[FD_EV_CART] / (double)tot.n[FD_EV_CLICK];
    double buy_rate = (double)tot.n[FD_EV_PURCHASE] / (double)tot.n[FD_EV_CART];
    CHECK(cart_rate > 0.25 && cart_rate < 0.35);
    CHECK(buy_rate > 0.28 && buy_rate < 0.42);
    free(seen);
    free(mt);
    free(ut);
    fd_gen_destroy(g);
}

/* In order (no disorder): per user, a cart follows a click of the same item
 * in the same session, a purchase follows a cart of the same item; session
 * numbers never go back; timestamps never decrease. */
static void test_funnel_order(void)
{
    const uint32_t users = 2000;
    fd_gen *g = mk(9, users, 40000, 0, 0);
    CHECK(g != NULL);
    if (!g)
        return;
    struct prev {
        int type;
        uint32_t item, session;
    } *pv = calloc(users + 1, sizeof *pv);
    for (uint32_t u = 0; u <= users; u++)
        pv[u].type = -1;
    uint64_t bad_cart = 0, bad_buy = 0, bad_sess = 0, back = 0, qty_multi = 0, qty_bad = 0;
    int64_t last = 0;
    fd_event e;
    while (fd_gen_next(g, &e)) {
        uint32_t u = (uint32_t)strtoul(e.user_id + 1, NULL, 10);
        uint32_t item = num_after(e.item_id, 'i'), sess = num_after(e.session_id, '-');
        char want[64];
        snprintf(want, sizeof want, "s-u%u-%u", u, sess);
        if (strcmp(want, e.session_id))
            bad_sess++;
        struct prev *p = &pv[u];
        if (e.type == FD_EV_CART &&
            (p->type != FD_EV_CLICK || p->item != item || p->session != sess))
            bad_cart++;
        if (e.type == FD_EV_PURCHASE &&
            (p->type != FD_EV_CART || p->item != item || p->session != sess))
            bad_buy++;
        if (sess < p->session)
            bad_sess++;
        if (e.ts_ms < last)
            back++;
        last = e.ts_ms;
        if (e.type == FD_EV_PURCHASE && e.quantity > 1)
            qty_multi++;
        if (e.quantity < 1 || e.quantity > 3 || (e.type != FD_EV_PURCHASE && e.quantity != 1))
            qty_bad++;
        p->type = e.type;
        p->item = item;
        p->session = sess;
    }
    CHECK(bad_cart == 0);
    CHECK(bad_buy == 0);
    CHECK(bad_sess == 0);
    CHECK(back == 0);
    CHECK(qty_multi > 0);
    CHECK(qty_bad == 0);
    free(pv);
    fd_gen_destroy(g);
}

/* A dense stream (50k events in one hour) with 3 s disorder: out of order,
 * but never by more than 3 s behind the newest event emitted so far. */
static void test_disorder_bounded(void)
{
    const int64_t d = 3000;
    fd_gen *g = mk(11, 5000, 50000, 3600 * 1000, d);
    CHECK(g != NULL);
    if (!g)
        return;
    int64_t maxts = 0, worst = 0;
    uint64_t out_of_order = 0, too_old = 0;
    fd_event e;
    while (fd_gen_next(g, &e)) {
        if (e.ts_ms < maxts) {
            out_of_order++;
            if (maxts - e.ts_ms > worst)
                worst = maxts - e.ts_ms;
            if (maxts - e.ts_ms > d)
                too_old++;
        } else {
            maxts = e.ts_ms;
        }
    }
    CHECK(out_of_order > 1000);
    CHECK(too_old == 0);
    CHECK(worst > d / 2);
    fd_gen_destroy(g);
}

static int cmp_u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Heavy users: the top 1% of users make well over 1% (over 8%) of events;
 * churners are about 20% of users and emit nothing at or after churn_ts; the
 * stream covers roughly the span. */
static void test_skew_churn_span(void)
{
    const uint32_t users = 10000;
    const uint64_t events = 150000;
    fd_gen *g = mk(5, users, events, 0, 0);
    CHECK(g != NULL);
    if (!g)
        return;
    fd_event e;
    int64_t last = 0;
    uint64_t after_churn = 0;
    while (fd_gen_next(g, &e)) {
        uint32_t u = (uint32_t)strtoul(e.user_id + 1, NULL, 10) - 1;
        int64_t c = fd_gen_churn_ts(g, u);
        if (c >= 0 && e.ts_ms >= c)
            after_churn++;
        last = e.ts_ms;
    }
    CHECK(after_churn == 0);
    uint64_t *tot = calloc(users, sizeof *tot);
    uint32_t churners = 0, churners_active = 0, churned_early = 0;
    int64_t span = fd_gen_get_opts(g)->span_ms, start = fd_gen_get_opts(g)->start_ms;
    for (uint32_t u = 0; u < users; u++) {
        const fd_gen_user_truth *t = fd_gen_user(g, u);
        tot[u] = t->n[0] + t->n[1] + t->n[2];
        int64_t c = fd_gen_churn_ts(g, u);
        if (c >= 0) {
            churners++;
            CHECK(c > start && c < start + span);
            if (tot[u]) {
                churners_active++;
                if (t->last_ts >= c)
                    after_churn++;
                if (c < last)
                    churned_early++;
            }
        }
    }
    CHECK(after_churn == 0);
    CHECK(churners > users * 15 / 100 && churners < users * 25 / 100);
    CHECK(churned_early > churners_active / 2);
    qsort(tot, users, sizeof *tot, cmp_u64_desc);
    uint64_t top = 0;
    for (uint32_t i = 0; i < users / 100; i++)
        top += tot[i];
    double share = (double)top / (double)events;
    CHECK(share > 0.08);
    CHECK(tot[users / 2] < tot[users / 100] / 5); /* the median user is light */
    free(tot);
    /* the stream spans a realistic period: between a third and 3x the span */
    CHECK(last - start > span / 3);
    CHECK(last - start < span * 3);
    fd_gen_destroy(g);
}

static void test_bad_options(void)
{
    fd_gen_opts o;
    char err[256];
    fd_gen_opts_default(&o);
    o.users = 0;
    err[0] = 0;
    CHECK(fd_gen_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "users");
    fd_gen_opts_default(&o);
    o.max_disorder_ms = -1;
    CHECK(fd_gen_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "disorder");
    fd_gen_opts_default(&o);
    o.churn_fraction = 1.5;
    CHECK(fd_gen_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "churn");
    fd_gen_destroy(NULL);

    /* everyone churns: the stream ends early instead of spinning */
    fd_gen_opts_default(&o);
    o.users = 50;
    o.events = 1000000;
    o.churn_fraction = 1.0;
    fd_gen *g = fd_gen_new(&o, err, sizeof err);
    CHECK(g != NULL);
    if (g) {
        fd_event e;
        uint64_t n = 0;
        while (fd_gen_next(g, &e))
            n++;
        CHECK(n > 0 && n < 1000000);
        CHECK(fd_gen_emitted(g) == n);
        fd_gen_destroy(g);
    }

    /* latent accessors */
    fd_gen_opts_default(&o);
    o.users = 10;
    o.items = 10;
    g = fd_gen_new(&o, err, sizeof err);
    CHECK(g != NULL);
    if (g) {
        CHECK(fd_gen_user_vec(g, 9) != NULL);
        CHECK(fd_gen_user_vec(g, 10) == NULL);
        CHECK(fd_gen_item_vec(g, 9) != NULL);
        CHECK(fd_gen_item_category(g, 0) >= 0 && fd_gen_item_category(g, 0) < FD_GEN_CATEGORIES);
        CHECK(fd_gen_item_price_cents(g, 0) >= 99);
        fd_gen_destroy(g);
    }
}

int main(void)
{
    test_determinism();
    test_truth_recount(0);
    test_truth_recount(20000);
    test_funnel_order();
    test_disorder_bounded();
    test_skew_churn_span();
    test_bad_options();
    return check_report();
}
