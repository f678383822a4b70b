/*
 * test_resp.c - the RESP builder the shards prepare writes with, and the
 * merging of minute deltas the writer does before sending them.
 */
#include "features/funnel.h"
#include "pipeline/resp.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>

static void test_resp_bytes(void)
{
    fd_resp b = {0};
    fd_resp_cmd(&b, 3);
    fd_resp_str(&b, "HSET");
    fd_resp_arg(&b, "k\0y", 3); /* binary safe */
    fd_resp_int(&b, -42);
    const char want[] = "*3\r\n$4\r\nHSET\r\n$3\r\nk\0y\r\n$3\r\n-42\r\n";
    CHECK(b.len == sizeof want - 1);
    CHECK(b.len == sizeof want - 1 && memcmp(b.p, want, b.len) == 0);
    CHECK(b.n_cmds == 1);
    CHECK(!b.oom);

    fd_resp c = {0};
    fd_resp_cmd(&c, 1);
    fd_resp_str(&c, "PING");
    fd_resp_cat(&b, &c);
    CHECK(b.n_cmds == 2);
    CHECK(b.len == sizeof want - 1 + strlen("*1\r\n$4\r\nPING\r\n"));
    CHECK(memcmp(b.p + sizeof want - 1, "*1\r\n$4\r\nPING\r\n", 14) == 0);

    /* Growth past the first allocation keeps every byte. */
    fd_resp_reset(&c);
    for (int i = 0; i < 5000; i++) {
        fd_resp_cmd(&c, 2);
        fd_resp_str(&c, "GET");
        fd_resp_int(&c, i);
    }
    CHECK(c.n_cmds == 5000);
    CHECK(c.len > 4096);
    CHECK(memcmp(c.p + c.len - 23, "*2\r\n$3\r\nGET\r\n$4\r\n4999\r\n", 23) == 0);
    fd_resp_free(&b);
    fd_resp_free(&c);
    fd_resp_free(NULL);
}

/* A command cut by another's header (the SREM/SADD bug of the pending set),
 * one with an argument too many, and one left open are all caught, so such a
 * buffer never reaches Redis. */
static void test_resp_cut(void)
{
    fd_resp b = {0};
    fd_resp_cmd(&b, 3);
    fd_resp_str(&b, "SREM");
    fd_resp_str(&b, "k");
    fd_resp_str(&b, "u1");
    CHECK(fd_resp_ok(&b));
    fd_resp_cmd(&b, 3);
    fd_resp_str(&b, "SREM");
    fd_resp_str(&b, "k");
    CHECK(!fd_resp_ok(&b)); /* one member owed */
    fd_resp_cmd(&b, 3);     /* ... and cut by the next header */
    fd_resp_str(&b, "SADD");
    fd_resp_str(&b, "k");
    fd_resp_str(&b, "u2");
    CHECK(b.cut && !fd_resp_ok(&b));
    fd_resp_reset(&b);
    CHECK(fd_resp_ok(&b));

    fd_resp_cmd(&b, 1);
    fd_resp_str(&b, "PING");
    fd_resp_str(&b, "extra");
    CHECK(!fd_resp_ok(&b));
    fd_resp_reset(&b);

    fd_resp open = {0}, whole = {0};
    fd_resp_cmd(&open, 2);
    fd_resp_str(&open, "GET");
    fd_resp_cmd(&whole, 1);
    fd_resp_str(&whole, "PING");
    fd_resp_cat(&whole, &open);
    CHECK(!fd_resp_ok(&whole)); /* an open command travels with a cat */
    fd_resp_free(&b);
    fd_resp_free(&open);
    fd_resp_free(&whole);
}

static void test_window_merge(void)
{
    char err[128];
    fd_funnel_params fp;
    CHECK(fd_funnel_params_init(&fp, 60000, 0, NULL, 0, err, sizeof err) == 0);
    fd_funnel_table *a = fd_funnel_table_new();
    fd_funnel_table *m = fd_funnel_table_new();
    fd_event ev;
    fd_event_init(&ev);
    ev.ts_ms = 60000 * 10 + 5;
    ev.type = FD_EV_PURCHASE;
    ev.has_price = true;
    ev.price = 2.5;
    ev.quantity = 3;
    fd_sess_step first = {FD_SESS_NEW, FD_STAGE_NONE, FD_STAGE_PURCHASE, 750};
    fd_sess_step none = {FD_SESS_JOIN, FD_STAGE_PURCHASE, FD_STAGE_PURCHASE, 750};
    CHECK(fd_funnel_add(a, &fp, 1, &ev, &first, "u1", 2) == 0);
    CHECK(fd_funnel_add(a, &fp, 2, &ev, &none, "u2", 2) == 0);
    ev.type = FD_EV_CLICK;
    ev.ts_ms = 60000 * 11;
    fd_sess_step click = {FD_SESS_JOIN, FD_STAGE_PURCHASE, FD_STAGE_PURCHASE, 0};
    CHECK(fd_funnel_add(a, &fp, 2, &ev, &click, "u2", 2) == 0);
    CHECK(fd_funnel_count(a) == 3);
    size_t cur = 0;
    const fd_funnel_delta *d;
    while ((d = fd_funnel_next(a, &cur)))
        CHECK(fd_funnel_merge(m, 0, d->cat, d->start_ms, d->c) == 0);
    CHECK(fd_funnel_count(m) == 2); /* partitions merged, minutes kept apart */
    cur = 0;
    int seen = 0;
    while ((d = fd_funnel_next(m, &cur))) {
        if (d->start_ms == 600000) {
            CHECK(d->c[FD_FC_PURCHASE] == 2);
            CHECK(d->c[FD_FC_REVENUE_CENTS] == 2 * 750);
            CHECK(d->c[FD_FC_SESS_VISIT] == 1 && d->c[FD_FC_SESS_PURCHASE] == 1);
            seen++;
        } else {
            CHECK(d->start_ms == 660000);
            CHECK(d->c[FD_FC_CLICK] == 1);
            CHECK(d->c[FD_FC_REVENUE_CENTS] == 0 && d->c[FD_FC_SESS_VISIT] == 0);
            seen++;
        }
    }
    CHECK(seen == 2);
    fd_funnel_clear(a, 2);
    CHECK(fd_funnel_count(a) == 1);
    fd_funnel_table_free(a);
    fd_funnel_table_free(m);
}

int main(void)
{
    test_resp_bytes();
    test_resp_cut();
    test_window_merge();
    return check_report();
}
