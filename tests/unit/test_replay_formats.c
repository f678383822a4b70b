/*
 * test_replay_formats.c - the dataset row parsers of `funnelctl replay`:
 * each mapping, the header rule, and that a malformed row is BAD with the
 * documented reason and a message naming the field; the sorted reader
 * hands rows out by time, ties in file order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tools/replay_formats.h"
#include "tools/replay_reader.h"

static fd_row_result parse(fd_rows *p, const char *line, uint64_t no, fd_event *ev,
                           const char **reason, char *err)
{
    return fd_rows_parse(p, line, strlen(line), no, ev, reason, err, 256);
}

static void expect_bad(int fmt, const char *first, const char *line, const char *reason,
                       const char *field)
{
    char err[256];
    fd_event ev;
    const char *why;
    fd_rows *p = fd_rows_new(fmt, err, sizeof err);
    CHECK(p != NULL);
    if (!p)
        return;
    if (first)
        parse(p, first, 1, &ev, &why, err);
    CHECK(parse(p, line, 2, &ev, &why, err) == FD_ROW_BAD);
    CHECK_STR(why, reason);
    CHECK_CONTAINS(err, field);
    fd_rows_free(p);
}

int main(void)
{
    char err[256];
    fd_event ev;
    const char *why;

    CHECK(fd_row_format_parse("movielens") == FD_ROWS_MOVIELENS);
    CHECK(fd_row_format_parse("rees46") == FD_ROWS_REES46);
    CHECK(fd_row_format_parse("csv") == -1);
    CHECK(fd_rows_new(-1, err, sizeof err) == NULL);

    /* movielens u.data: tabs, no header; rating 4 is a purchase */
    fd_rows *p = fd_rows_new(FD_ROWS_MOVIELENS, err, sizeof err);
    CHECK(parse(p, "196\t242\t4\t881250949\r", 1, &ev, &why, err) == FD_ROW_EVENT);
    CHECK_STR(ev.user_id, "196");
    CHECK_STR(ev.item_id, "242");
    CHECK(ev.has_item && !ev.has_price && ev.type == FD_EV_PURCHASE);
    CHECK(ev.ts_ms == 881250949000LL);
    CHECK_STR(ev.event_id, "movielens-1");
    CHECK(parse(p, "186\t302\t3\t891717742", 2, &ev, &why, err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_CLICK);
    CHECK(parse(p, "", 3, &ev, &why, err) == FD_ROW_IGNORED);
    /* the same line parsed again gives the same event */
    CHECK(parse(p, "196\t242\t4\t881250949", 1, &ev, &why, err) == FD_ROW_EVENT);
    CHECK_STR(ev.event_id, "movielens-1");
    fd_rows_free(p);

    /* movielens ratings.csv: the header only as the first line */
    p = fd_rows_new(FD_ROWS_MOVIELENS, err, sizeof err);
    CHECK(parse(p, "userId,movieId,rating,timestamp", 1, &ev, &why, err) == FD_ROW_IGNORED);
    CHECK(parse(p, "1,1,3.5,964982703", 2, &ev, &why, err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_CLICK && ev.ts_ms == 964982703000LL);
    CHECK(parse(p, "userId,movieId,rating,timestamp", 3, &ev, &why, err) == FD_ROW_BAD);
    CHECK_STR(why, "bad_number");
    fd_rows_free(p);
    expect_bad(FD_ROWS_MOVIELENS, NULL, "1,1,4.0", "field_count", "3 fields");
    expect_bad(FD_ROWS_MOVIELENS, NULL, "1,1,x,964982703", "bad_number", "rating");
    expect_bad(FD_ROWS_MOVIELENS, NULL, "1,1,5.5,964982703", "bad_rating", "rating");
    expect_bad(FD_ROWS_MOVIELENS, NULL, "1,1,nan,964982703", "bad_number", "rating");
    expect_bad(FD_ROWS_MOVIELENS, NULL, "1,1,4,0", "bad_ts", "timestamp");
    expect_bad(FD_ROWS_MOVIELENS, NULL, "1,1,4,99999999999999", "bad_ts", "timestamp");
    expect_bad(FD_ROWS_MOVIELENS, NULL, "-1,1,4,964982703", "bad_number", "user");

    /* taobao */
    p = fd_rows_new(FD_ROWS_TAOBAO, err, sizeof err);
    CHECK(parse(p, "1,2268318,2520377,buy,1511544070", 7, &ev, &why, err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_PURCHASE && ev.has_category);
    CHECK_STR(ev.category, "2520377");
    CHECK_STR(ev.event_id, "taobao-7");
    CHECK(parse(p, "1,2268318,2520377,cart,1511544070", 8, &ev, &why, err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_CART);
    CHECK(parse(p, "1,2268318,2520377,fav,1511544070", 9, &ev, &why, err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_CLICK);
    fd_rows_free(p);
    expect_bad(FD_ROWS_TAOBAO, NULL, "1,2,3,like,1511544070", "unknown_behavior", "like");
    expect_bad(FD_ROWS_TAOBAO, NULL, "1,2,3,pv", "field_count", "4 fields");

    /* rees46 */
    const char *hdr = "event_time,event_type,product_id,category_id,category_code,brand,price,"
                      "user_id,user_session";
    p = fd_rows_new(FD_ROWS_REES46, err, sizeof err);
    CHECK(parse(p, hdr, 1, &ev, &why, err) == FD_ROW_IGNORED);
    CHECK(parse(p,
                "2019-10-01 00:00:04 UTC,purchase,1004856,2053013555631882655,"
                "electronics.smartphone,samsung,130.76,543272936,8187d148",
                2, &ev, &why, err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_PURCHASE && ev.has_price && ev.price == 130.76);
    CHECK(ev.ts_ms == 1569888004000LL);
    CHECK_STR(ev.category, "electronics.smartphone");
    CHECK_STR(ev.session_id, "8187d148");
    CHECK(fd_event_revenue_cents(&ev) == 13076);
    CHECK(parse(p, "2019-10-01 00:00:04 UTC,view,1,2053013555631882655,,,0,5,", 3, &ev, &why,
                err) == FD_ROW_EVENT);
    CHECK(ev.type == FD_EV_CLICK && !ev.has_session);
    CHECK_STR(ev.category, "2053013555631882655");
    CHECK(parse(p, "2019-10-01 00:00:04 UTC,remove_from_cart,1,2,,,1,5,s", 4, &ev, &why, err) ==
          FD_ROW_SKIPPED);
    CHECK_STR(why, "remove_from_cart");
    fd_rows_free(p);
    expect_bad(FD_ROWS_REES46, hdr, "2019-10-01 00:00:04 UTC,view,1,2,,,1e12,5,s", "bad_price",
               "price");
    expect_bad(FD_ROWS_REES46, hdr, "2019-10-01 00:00:04 UTC,view,1,2,,,-3,5,s", "bad_price",
               "price");
    expect_bad(FD_ROWS_REES46, hdr, "yesterday,view,1,2,,,1,5,s", "bad_ts", "event_time");
    expect_bad(FD_ROWS_REES46, hdr, "2019-10-01 00:00:04 UTC,view,1,2,,,1,,s", "bad_number",
               "user_id");

    /* json: funneld's own decoder and rules */
    p = fd_rows_new(FD_ROWS_JSON, err, sizeof err);
    CHECK(parse(p, "{\"event_id\":\"x\",\"user_id\":\"u\",\"ts\":5,\"type\":\"cart\"}", 1, &ev,
                &why, err) == FD_ROW_EVENT);
    CHECK_STR(ev.event_id, "x");
    CHECK(ev.type == FD_EV_CART);
    CHECK(parse(p, "{\"event_id\":\"x\",\"user_id\":\"u\",\"ts\":5,\"type\":\"cart\",\"price\":-1}",
                2, &ev, &why, err) == FD_ROW_BAD);
    CHECK_STR(why, "bad_price");
    fd_rows_free(p);

    /* the reader: time order, ties in file order, skipped rows counted */
    char path[] = "/tmp/test_replay_formats-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("3\t1\t4\t30\n1\t1\t4\t10\nbad\n2\t1\t4\t30\n4\t1\t4\t5\n", f);
    fclose(f);
    fd_replay_opts ro = {.format = FD_ROWS_MOVIELENS, .prog = "test", .sort = true};
    fd_replay *r = fd_replay_open(path, &ro, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        CHECK(fd_replay_load(r) == 0);
        const char *order[] = {"4", "1", "3", "2"};
        for (int i = 0; i < 4; i++) {
            CHECK(fd_replay_next(r, &ev) == 1);
            CHECK_STR(ev.user_id, order[i]);
        }
        CHECK(fd_replay_next(r, &ev) == 0);
        const fd_replay_stats *st = fd_replay_get_stats(r);
        CHECK(st->rows == 5 && st->events == 4 && st->skipped == 1 && !st->sorted);
        CHECK(st->n_reasons == 1 && st->count[0] == 1);
        CHECK(st->first_ts == 5000 && st->last_ts == 30000);
        fd_replay_free(r);
    }
    ro.strict = true;
    r = fd_replay_open(path, &ro, err, sizeof err);
    CHECK(r && fd_replay_load(r) == -2 && fd_replay_next(r, &ev) == 0);
    fd_replay_free(r);
    unlink(path);
    CHECK(fd_replay_open(path, &ro, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, path);
    return check_report();
}
