/* test_churn.c - the churn engine (models/churn.h): label timing,
 * checkpoints, reactivation, late events, alerts once per episode with
 * reasons, stable alert ids, the record suffix, and that the examples do
 * not depend on when the watermark moves. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "features/features.h"
#include "features/user.h"
#include "models/churn.h"
#include "models/timer.h"

#define DAY 86400000LL
#define T0  1700000000000LL

static fd_feat_params feat;

typedef struct rec {
    int n_ex, n_alert;
    int64_t ex_ts[256];
    int ex_label[256];
    double ex_raw0[256], ex_raw1[256];
    fd_churn_alert alert[16];
} rec;

static void on_alert(void *ctx, const fd_churn_alert *a)
{
    rec *r = ctx;
    if (r->n_alert < 16)
        r->alert[r->n_alert] = *a;
    r->n_alert++;
}

static void on_example(void *ctx, const fd_user *u, int64_t ts, const double *raw, int n, int label,
                       double p)
{
    rec *r = ctx;
    (void)u;
    (void)p;
    CHECK(n == fd_feat_count(&feat));
    if (r->n_ex < 256) {
        r->ex_ts[r->n_ex] = ts;
        r->ex_label[r->n_ex] = label;
        r->ex_raw0[r->n_ex] = raw[0];
        r->ex_raw1[r->n_ex] = raw[n - 1];
    }
    r->n_ex++;
}

static fd_user *new_user(const char *id)
{
    fd_user *u = calloc(1, sizeof *u);
    strcpy(u->id_.inl, id);
    u->id_len = (uint32_t)strlen(id);
    return u;
}

/* One event through the engine the way the shard drives it. */
static int64_t event(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t ts, int type,
                     rec *r)
{
    fd_churn_sink sink = {r, on_alert, on_example};
    fd_event ev;
    fd_event_init(&ev);
    strcpy(ev.user_id, fd_user_id(u));
    ev.ts_ms = ts;
    ev.type = (uint8_t)type;
    if (type == FD_EV_PURCHASE) {
        ev.has_price = true;
        ev.price = 12.5;
    }
    fd_churn_before_event(p, m, u, ts, &sink);
    fd_sess_step st;
    fd_feat_update(&feat, &u->f, &ev, &st);
    return fd_churn_after_event(p, m, u, ts, &sink);
}

static int64_t timer(const fd_churn_params *p, fd_churn_model *m, fd_user *u, int64_t wm, rec *r)
{
    fd_churn_sink sink = {r, on_alert, on_example};
    return fd_churn_on_timer(p, m, u, wm, &sink);
}

static fd_lr_params lrp; /* the tests' FTRL parameters (setup) */

/* The tests' engine: three checkpoints at H/8, H/4, H/2, threshold 0.7, and
 * a slow learner (alpha 0.05, l1 = l2 = 1) so a forced weight stays near
 * where it was put. The defaults are checked in test_params. */
static void setup(fd_churn_params *p, fd_churn_model *m)
{
    fd_churn_params_default(p, &feat);
    p->n_cp = 3;
    p->cp_ms[0] = p->horizon_ms / 8;
    p->cp_ms[1] = p->horizon_ms / 4;
    p->cp_ms[2] = p->horizon_ms / 2;
    p->threshold = 0.7;
    p->lr.alpha = 0.05;
    p->lr.l1 = 1.0;
    p->lr.l2 = 1.0;
    lrp = p->lr;
    char err[200];
    CHECK(fd_churn_params_check(p, err, sizeof err) == 0);
    fd_churn_model_init(m, p);
}

static void test_stay_and_checkpoints(void)
{
    fd_churn_params p;
    fd_churn_model m;
    setup(&p, &m);
    rec r = {0};
    fd_user *u = new_user("stay");
    int64_t H = p.horizon_ms;
    CHECK(fd_churn_next_due(&p, u) == -1);
    int64_t due = event(&p, &m, u, T0, FD_EV_CLICK, &r);
    CHECK(due == T0 + H / 8);
    CHECK(u->churn.flags & FD_CU_PENDING);
    CHECK(r.n_ex == 0); /* nothing is known yet */
    /* the watermark passes H/8 and H/4, not H/2 */
    due = timer(&p, &m, u, T0 + H / 4 + 5, &r);
    CHECK(due == T0 + H / 2);
    CHECK(u->churn.next_cp == 2);
    /* an early timer does nothing */
    CHECK(timer(&p, &m, u, T0 + H / 4 + 6, &r) == T0 + H / 2);
    CHECK(r.n_ex == 0);
    /* the user returns at 3H/8 (before H: label 0): the episode has the
     * event example and the two checkpoints before 3H/8 */
    int64_t t2 = T0 + 3 * H / 8;
    due = event(&p, &m, u, t2, FD_EV_CART, &r);
    CHECK(r.n_ex == 3);
    CHECK(r.ex_ts[0] == T0 && r.ex_ts[1] == T0 + H / 8 && r.ex_ts[2] == T0 + H / 4);
    CHECK(r.ex_label[0] == 0 && r.ex_label[1] == 0 && r.ex_label[2] == 0);
    CHECK(m.lr.examples == 3 && m.q.n == 3);
    CHECK(m.q.churned == 0 && m.q.reactivated == 0);
    CHECK(due == t2 + H / 8 && u->churn.next_cp == 0);
    /* the example at a checkpoint is the state as of then: recency grows,
     * so the vector differs from the event example */
    double a[FD_FEAT_MAX], b[FD_FEAT_MAX];
    fd_feat f0 = {0};
    (void)f0;
    fd_feat_eval(&feat, &u->f, u->f.last_ts, a);
    fd_feat_eval(&feat, &u->f, u->f.last_ts + H / 8, b);
    CHECK(memcmp(a, b, sizeof(double) * (size_t)fd_feat_count(&feat)) != 0);
    free(u);
}

static void test_churn_and_return(void)
{
    fd_churn_params p;
    fd_churn_model m;
    setup(&p, &m);
    rec r = {0};
    fd_user *u = new_user("gone");
    int64_t H = p.horizon_ms;
    event(&p, &m, u, T0, FD_EV_CLICK, &r);
    event(&p, &m, u, T0 + 1000, FD_EV_CLICK, &r); /* label 0 for T0's episode */
    CHECK(r.n_ex == 1 && r.ex_label[0] == 0);
    int64_t L = T0 + 1000;
    /* the watermark just short of L + H: checkpoints only */
    CHECK(timer(&p, &m, u, L + H - 1, &r) == L + H);
    CHECK(r.n_ex == 1 && (u->churn.flags & FD_CU_PENDING));
    /* at L + H: churned, the 1 + 3 examples learned with label 1 */
    CHECK(timer(&p, &m, u, L + H, &r) == -1);
    CHECK(r.n_ex == 5);
    for (int i = 1; i < 5; i++)
        CHECK(r.ex_label[i] == 1);
    CHECK(r.ex_ts[1] == L && r.ex_ts[4] == L + H / 2);
    CHECK(m.q.churned == 1 && (u->churn.flags & FD_CU_CHURNED) &&
          !(u->churn.flags & FD_CU_PENDING));
    CHECK(fd_churn_next_due(&p, u) == -1);
    /* back after 30 days: reactivated, no second labelling of that episode */
    event(&p, &m, u, L + 30 * DAY, FD_EV_PURCHASE, &r);
    CHECK(r.n_ex == 5 && m.q.reactivated == 1 && !(u->churn.flags & FD_CU_CHURNED));
    CHECK(u->churn.flags & FD_CU_PENDING);
    free(u);
}

/* A user whose next event comes after the horizon while the watermark lagged
 * behind (no timer fired): the same examples, label 1, churned and
 * reactivated, exactly as if the timer had fired. */
static void test_churn_resolved_by_event(void)
{
    fd_churn_params p;
    fd_churn_model m1, m2;
    setup(&p, &m1);
    fd_churn_model_init(&m2, &p);
    rec r1 = {0}, r2 = {0};
    fd_user *u1 = new_user("late"), *u2 = new_user("late");
    int64_t H = p.horizon_ms;
    event(&p, &m1, u1, T0, FD_EV_CLICK, &r1);
    event(&p, &m2, u2, T0, FD_EV_CLICK, &r2);
    timer(&p, &m1, u1, T0 + H, &r1); /* u1: the timer fired */
    event(&p, &m1, u1, T0 + H + 5, FD_EV_CLICK, &r1);
    event(&p, &m2, u2, T0 + H + 5, FD_EV_CLICK, &r2); /* u2: it did not */
    CHECK(r1.n_ex == 4 && r2.n_ex == 4);
    for (int i = 0; i < 4; i++)
        CHECK(r1.ex_ts[i] == r2.ex_ts[i] && r1.ex_label[i] == 1 && r2.ex_label[i] == 1 &&
              r1.ex_raw0[i] == r2.ex_raw0[i] && r1.ex_raw1[i] == r2.ex_raw1[i]);
    CHECK(m1.q.churned == 1 && m2.q.churned == 1);
    CHECK(m1.q.reactivated == 1 && m2.q.reactivated == 1);
    /* exactly H of silence is churn (label 1 iff no event in (L, L + H)) */
    fd_user *u3 = new_user("edge");
    rec r3 = {0};
    event(&p, &m1, u3, T0, FD_EV_CLICK, &r3);
    event(&p, &m1, u3, T0 + H, FD_EV_CLICK, &r3);
    CHECK(r3.n_ex == 4 && r3.ex_label[0] == 1);
    fd_user *u4 = new_user("edge2");
    rec r4 = {0};
    event(&p, &m1, u4, T0, FD_EV_CLICK, &r4);
    event(&p, &m1, u4, T0 + H - 1, FD_EV_CLICK, &r4);
    CHECK(r4.n_ex == 4 && r4.ex_label[0] == 0);
    free(u1);
    free(u2);
    free(u3);
    free(u4);
}

/* An event older than the user's last (late, within lateness) folds into
 * the state and the open episode goes on: no label, no new episode. */
static void test_out_of_order(void)
{
    fd_churn_params p;
    fd_churn_model m;
    setup(&p, &m);
    rec r = {0};
    fd_user *u = new_user("ooo");
    int64_t H = p.horizon_ms;
    event(&p, &m, u, T0 + 60000, FD_EV_CLICK, &r);
    timer(&p, &m, u, T0 + 60000 + H / 8, &r);
    CHECK(u->churn.next_cp == 1);
    int64_t due = event(&p, &m, u, T0, FD_EV_CART, &r); /* a minute late */
    CHECK(r.n_ex == 0 && u->f.last_ts == T0 + 60000);
    CHECK(u->churn.next_cp == 1 && due == T0 + 60000 + H / 4);
    CHECK(u->f.count[FD_EV_CART] == 1);
    /* the episode's examples see the late cart */
    event(&p, &m, u, T0 + 60000 + H / 2 + 1, FD_EV_CLICK, &r);
    CHECK(r.n_ex == 4);
    free(u);
}

/* The examples and labels depend on the events only, not on when the
 * watermark moved: timers after every event vs. one big jump at the end. */
static void test_watermark_independent(void)
{
    fd_churn_params p;
    fd_churn_model ma, mb;
    setup(&p, &ma);
    fd_churn_model_init(&mb, &p);
    rec ra = {0}, rb = {0};
    fd_user *ua = new_user("w"), *ub = new_user("w");
    int64_t H = p.horizon_ms;
    int64_t gaps[] = {1000, 3 * DAY, H / 8 + 1, 0, H / 2 + 7, 20 * DAY, H / 4, 2 * DAY};
    int64_t t = T0;
    for (size_t i = 0; i < sizeof gaps / sizeof gaps[0]; i++) {
        t += gaps[i];
        event(&p, &ma, ua, t, i % 3 == 2 ? FD_EV_PURCHASE : FD_EV_CLICK, &ra);
        timer(&p, &ma, ua, t + H / 3, &ra); /* the watermark runs ahead */
        event(&p, &mb, ub, t, i % 3 == 2 ? FD_EV_PURCHASE : FD_EV_CLICK, &rb);
    }
    timer(&p, &ma, ua, t + 2 * H, &ra);
    timer(&p, &mb, ub, t + 2 * H, &rb);
    CHECK(ra.n_ex == rb.n_ex && ra.n_ex > 8);
    int same = 1;
    for (int i = 0; i < ra.n_ex && i < 256; i++)
        same &= ra.ex_ts[i] == rb.ex_ts[i] && ra.ex_label[i] == rb.ex_label[i] &&
                ra.ex_raw0[i] == rb.ex_raw0[i] && ra.ex_raw1[i] == rb.ex_raw1[i];
    CHECK(same);
    CHECK(ma.q.churned == mb.q.churned && ma.q.reactivated == mb.q.reactivated);
    CHECK(ma.q.churned == 2 && ma.q.reactivated == 1);
    free(ua);
    free(ub);
}

/* A model that says "churn" for everyone: bias weight +8 (risk ~1). */
static void force_risk(fd_churn_model *m, double bias)
{
    /* z set to match (w is derived from z and g2 at every learning step):
     * the few steps learned during the test move it only a little */
    double a = lrp.alpha, beta = lrp.beta, l1 = lrp.l1, l2 = lrp.l2;
    m->lr.w[FD_LR_MAX_FEAT] = bias;
    m->lr.z[FD_LR_MAX_FEAT] = -bias * (beta + sqrt(m->lr.g2[FD_LR_MAX_FEAT])) / a;
    m->lr.w[0] = 0.5; /* one input with a weight: a reason */
    m->lr.z[0] = -(0.5 * ((beta + sqrt(m->lr.g2[0])) / a + l2) + l1);
}

static void test_alerts_once_per_episode(void)
{
    fd_churn_params p;
    fd_churn_model m;
    setup(&p, &m);
    p.warmup_examples = 0;
    p.cooldown_ms = 3 * DAY;
    rec r = {0};
    force_risk(&m, 8.0);
    fd_user *u = new_user("risky");
    int64_t H = p.horizon_ms;
    event(&p, &m, u, T0, FD_EV_CLICK, &r);
    CHECK(r.n_alert == 0); /* one event: under min_events */
    event(&p, &m, u, T0 + 1000, FD_EV_CLICK, &r);
    force_risk(&m, 8.0); /* learning moved w: force it again */
    event(&p, &m, u, T0 + 2000, FD_EV_PURCHASE, &r);
    force_risk(&m, 8.0);
    CHECK(r.n_alert == 1); /* the third event, risk ~1 */
    CHECK(r.alert[0].ts == T0 + 2000 && r.alert[0].last_activity_ts == T0 + 2000);
    CHECK(r.alert[0].risk > 0.99 && r.alert[0].threshold == 0.7);
    CHECK(r.alert[0].monetary_cents == 1250);
    CHECK(r.alert[0].n_reasons >= 1 && r.alert[0].reason_feature[0] == 0);
    /* contribution w x: w ~ 0.5 (two learning steps since it was forced),
     * x = log2(1 + value) (no standardiser refresh yet: mean 0, scale 1) */
    CHECK(r.alert[0].reason_value[0] > 0);
    CHECK_NEAR(r.alert[0].reason_contrib[0] / fd_lr_fast_log1p2(r.alert[0].reason_value[0]), 0.5,
               0.1);
    CHECK(strlen(r.alert[0].alert_id) == 16);
    CHECK(m.q.alerts == 1);
    /* the checkpoints: still at risk but disarmed: no second alert */
    timer(&p, &m, u, T0 + 2000 + H / 2, &r);
    CHECK(r.n_alert == 1);
    /* the risk falls below threshold - margin at the next event's scoring:
     * re-armed; it rises again at a checkpoint past the cooldown: alert */
    force_risk(&m, -8.0);
    int64_t t3 = T0 + 2000 + H / 2 + 10;
    event(&p, &m, u, t3, FD_EV_CLICK, &r);
    CHECK(r.n_alert == 1 && !(u->churn.flags & FD_CU_DISARMED));
    CHECK(fd_churn_risk(u) < 0.01);
    force_risk(&m, 8.0);
    timer(&p, &m, u, t3 + H / 8, &r);
    CHECK(r.n_alert == 2 && r.alert[1].ts == t3 + H / 8);
    CHECK(strcmp(r.alert[0].alert_id, r.alert[1].alert_id) != 0);
    /* cooldown: a new event re-arms, but 3 days have not passed */
    force_risk(&m, 8.0);
    event(&p, &m, u, t3 + H / 8 + DAY, FD_EV_CLICK, &r);
    CHECK(r.n_alert == 2);
    force_risk(&m, 8.0);
    timer(&p, &m, u, t3 + H / 8 + DAY + H / 4, &r); /* 3.5 + 1 days on: past it */
    CHECK(r.n_alert == 3);
    /* warm-up: no alert before the model learned enough */
    p.warmup_examples = 1u << 30;
    force_risk(&m, 8.0);
    event(&p, &m, u, t3 + 40 * DAY, FD_EV_CLICK, &r);
    timer(&p, &m, u, t3 + 40 * DAY + H / 2, &r);
    CHECK(r.n_alert == 3);
    free(u);
}

/* Same input, same alert ids; ids differ by user and by episode. */
static void test_alert_ids_stable(void)
{
    char ids[2][4][17];
    for (int run = 0; run < 2; run++) {
        fd_churn_params p;
        fd_churn_model m;
        setup(&p, &m);
        p.warmup_examples = 0;
        p.min_events = 1;
        rec r = {0};
        fd_user *a = new_user("a"), *b = new_user("b");
        force_risk(&m, 8.0);
        event(&p, &m, a, T0, FD_EV_CLICK, &r);
        event(&p, &m, b, T0, FD_EV_CLICK, &r);
        force_risk(&m, 8.0);
        event(&p, &m, a, T0 + 20 * DAY, FD_EV_CLICK, &r);
        force_risk(&m, 8.0);
        event(&p, &m, b, T0 + 20 * DAY, FD_EV_CLICK, &r);
        CHECK(r.n_alert == 4);
        for (int i = 0; i < 4 && i < r.n_alert; i++)
            memcpy(ids[run][i], r.alert[i].alert_id, 17);
        free(a);
        free(b);
    }
    for (int i = 0; i < 4; i++)
        CHECK_STR(ids[0][i], ids[1][i]);
    CHECK(strcmp(ids[0][0], ids[0][1]) != 0 && strcmp(ids[0][0], ids[0][2]) != 0);
}

static void test_suffix(void)
{
    fd_churn_user c = {.alert_ts = T0 + 5, .risk_q = 40000, .next_cp = 2, .flags = 0x05};
    char buf[FD_CHURN_USER_TEXT_MAX];
    size_t n = fd_churn_user_format(&c, buf);
    CHECK_STR(buf, " m 40000 2 5 1700000000005");
    fd_churn_user d;
    memset(&d, 0xff, sizeof d);
    char err[128];
    CHECK(fd_churn_user_parse(&d, buf, n, err, sizeof err) == 0);
    CHECK(d.alert_ts == c.alert_ts && d.risk_q == c.risk_q && d.next_cp == 2 && d.flags == 5);
    CHECK(d.heap_pos == 0);
    const char *bad[] = {" m 70000 2 5 1", " m 1 2 5",        " x 1 2 5 1",
                         " m 1 9 5 1",     " m 1 2 5 1 junk", " m 1 2 5 -4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(fd_churn_user_parse(&d, bad[i], strlen(bad[i]), err, sizeof err) == -1);
    CHECK_CONTAINS(err, "churn suffix");
}

static void test_params(void)
{
    fd_churn_params p;
    fd_churn_params_default(&p, &feat);
    char err[200];
    CHECK(p.n_cp == 5 && p.threshold == 0.5 && p.lr.alpha == 0.5 && p.lr.l1 == 0);
    fd_churn_params_set_horizon(&p, 8 * DAY);
    CHECK(p.cp_ms[0] == DAY && p.cp_ms[1] == 2 * DAY && p.cp_ms[2] == 3 * DAY &&
          p.cp_ms[3] == 4 * DAY && p.cp_ms[4] == 5 * DAY);
    CHECK(fd_churn_params_check(&p, err, sizeof err) == 0);
    p.threshold = 1.0;
    CHECK(fd_churn_params_check(&p, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "threshold");
    p.threshold = 0.7;
    p.cp_ms[1] = p.cp_ms[0];
    CHECK(fd_churn_params_check(&p, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "checkpoint 1");
}

/* The indexed heap against a brute-force model: random pushes, moves,
 * removals and pops; every position reported is where the entry is, and
 * pops come out in due order. */
typedef struct tref {
    size_t pos;
    int64_t due;
    int in;
} tref;

static void moved(void *ref, size_t pos)
{
    ((tref *)ref)->pos = pos;
}

static void test_timer_heap(void)
{
    enum { N = 300 };
    static tref r[N];
    memset(r, 0, sizeof r);
    fd_timer_heap h = {0};
    h.moved = moved;
    uint64_t s = 12345;
    int bad_pos = 0, bad_order = 0;
    int64_t last_pop = INT64_MIN;
    for (int step = 0; step < 20000; step++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        int k = (int)((s >> 33) % N);
        int op = (int)((s >> 20) % 5);
        int64_t due = (int64_t)((s >> 40) % 1000) + (last_pop > 0 ? last_pop : 0);
        if (op <= 1) { /* set (push or move) */
            CHECK(fd_timer_set(&h, r[k].pos, due, &r[k]) == 0);
            r[k].due = due;
            r[k].in = 1;
        } else if (op == 2) {
            fd_timer_remove(&h, r[k].pos);
            r[k].in = 0;
        } else if (op == 3 && h.n) {
            fd_timer t = fd_timer_pop(&h);
            tref *x = t.ref;
            int64_t min = INT64_MAX;
            for (int i = 0; i < N; i++)
                if (r[i].in && r[i].due < min)
                    min = r[i].due;
            bad_order += t.due != min || x->due != t.due;
            x->in = 0;
            last_pop = t.due;
        }
        size_t in = 0;
        for (int i = 0; i < N; i++) {
            in += (size_t)r[i].in;
            if (r[i].in)
                bad_pos += r[i].pos == 0 || r[i].pos > h.n || h.a[r[i].pos - 1].ref != &r[i] ||
                           h.a[r[i].pos - 1].due != r[i].due;
            else
                bad_pos += r[i].pos != 0;
        }
        bad_pos += in != h.n;
    }
    CHECK(bad_pos == 0);
    CHECK(bad_order == 0);
    CHECK(fd_timer_bytes(&h) >= h.n * sizeof(fd_timer));
    fd_timer_free(&h);
    int left = 0;
    for (int i = 0; i < N; i++)
        left += r[i].pos != 0;
    CHECK(left == 0 && h.n == 0 && h.a == NULL);
}

int main(void)
{
    int64_t hl[4] = {3600000, DAY, 7 * DAY, 30 * DAY};
    char err[128];
    if (fd_feat_params_init(&feat, hl, 4, 1800000, err, sizeof err) != 0)
        return 1;
    test_stay_and_checkpoints();
    test_churn_and_return();
    test_churn_resolved_by_event();
    test_out_of_order();
    test_watermark_independent();
    test_alerts_once_per_episode();
    test_alert_ids_stable();
    test_suffix();
    test_params();
    test_timer_heap();
    return check_report();
}
