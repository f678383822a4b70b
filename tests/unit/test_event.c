/*
 * test_event.c - fd_event_validate: every rule, its reason and that the
 * message names the field; reject names are the documented stable strings.
 */
#include <math.h>
#include <string.h>

#include "features/event.h"
#include "tests/unit/check.h"

static fd_event good(void)
{
    fd_event ev;
    fd_event_init(&ev);
    strcpy(ev.event_id, "e1");
    strcpy(ev.user_id, "u1");
    ev.ts_ms = 1767225600000;
    return ev;
}

static fd_reject v(const fd_event *ev, int64_t ref, int64_t skew, char *err)
{
    err[0] = '\0';
    return fd_event_validate(ev, ref, skew, err, 256);
}

int main(void)
{
    char err[256];
    fd_event ev;

    CHECK_STR(fd_reject_name(FD_OK), "ok");
    CHECK_STR(fd_reject_name(FD_REJ_TOO_LARGE), "message_too_large");
    CHECK_STR(fd_reject_name(FD_REJ_BAD_MAGIC), "bad_magic");
    CHECK_STR(fd_reject_name(FD_REJ_UNKNOWN_SCHEMA), "unknown_schema_id");
    CHECK_STR(fd_reject_name(FD_REJ_AVRO), "avro_decode");
    CHECK_STR(fd_reject_name(FD_REJ_JSON_SYNTAX), "json_syntax");
    CHECK_STR(fd_reject_name(FD_REJ_FIELD_TYPE), "field_type");
    CHECK_STR(fd_reject_name(FD_REJ_FIELD_MISSING), "field_missing");
    CHECK_STR(fd_reject_name(FD_REJ_FIELD_TOO_LONG), "field_too_long");
    CHECK_STR(fd_reject_name(FD_REJ_UNKNOWN_TYPE), "unknown_event_type");
    CHECK_STR(fd_reject_name(FD_REJ_BAD_USER_ID), "bad_user_id");
    CHECK_STR(fd_reject_name(FD_REJ_BAD_TS), "bad_ts");
    CHECK_STR(fd_reject_name(FD_REJ_FUTURE_TS), "future_ts");
    CHECK_STR(fd_reject_name(FD_REJ_BAD_PRICE), "bad_price");
    CHECK_STR(fd_reject_name(FD_REJ_BAD_QUANTITY), "bad_quantity");
    CHECK_STR(fd_reject_name(FD_REJ_KEY_MISMATCH), "key_mismatch");
    CHECK_STR(fd_reject_name(FD_REJ__COUNT), "unknown");
    CHECK_STR(fd_reject_name((fd_reject)-1), "unknown");
    CHECK_STR(fd_event_type_name(FD_EV_CLICK), "click");
    CHECK_STR(fd_event_type_name(FD_EV_CART), "cart");
    CHECK_STR(fd_event_type_name(FD_EV_PURCHASE), "purchase");
    CHECK_STR(fd_event_type_name(7), "unknown");

    fd_event_init(&ev);
    CHECK(ev.quantity == 1 && !ev.has_item && !ev.has_price && !ev.has_session &&
          !ev.has_category && ev.user_id[0] == '\0' && ev.type == FD_EV_CLICK);

    ev = good();
    CHECK(v(&ev, 0, 0, err) == FD_OK);
    CHECK_STR(err, "");

    ev = good();
    ev.user_id[0] = '\0';
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_USER_ID);
    CHECK_CONTAINS(err, "user_id");

    ev = good();
    memset(ev.user_id, 'x', sizeof ev.user_id); /* no terminator */
    CHECK(v(&ev, 0, 0, err) == FD_REJ_FIELD_TOO_LONG);
    CHECK_CONTAINS(err, "user_id");
    ev = good();
    memset(ev.user_id, 'x', FD_ID_MAX);
    ev.user_id[FD_ID_MAX] = '\0';
    CHECK(v(&ev, 0, 0, err) == FD_OK);

    ev = good();
    memset(ev.category, 'x', sizeof ev.category);
    CHECK(v(&ev, 0, 0, err) == FD_REJ_FIELD_TOO_LONG);
    CHECK_CONTAINS(err, "category");

    ev = good();
    ev.ts_ms = 0;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_TS);
    CHECK_CONTAINS(err, "ts: 0");
    ev.ts_ms = -5;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_TS);
    CHECK_CONTAINS(err, "ts: -5");

    /* future: only with a reference */
    ev = good();
    ev.ts_ms = 1000000 + 3600000 + 1;
    CHECK(v(&ev, 1000000, 3600000, err) == FD_REJ_FUTURE_TS);
    CHECK_CONTAINS(err, "ts:");
    ev.ts_ms = 1000000 + 3600000;
    CHECK(v(&ev, 1000000, 3600000, err) == FD_OK);
    ev.ts_ms = FD_TS_MAX_MS;
    CHECK(v(&ev, 0, 3600000, err) == FD_OK); /* no reference: no future check */
    CHECK(v(&ev, 1000000, 0, err) == FD_REJ_FUTURE_TS);
    CHECK(v(&ev, FD_TS_MAX_MS - 5, 3600000, err) == FD_OK);
    CHECK(fd_ts_is_future(INT64_MAX, INT64_MAX - 5, 3600000) == false); /* no overflow */
    CHECK(fd_ts_is_future(INT64_MAX, 1000000, 0) == true);
    ev.ts_ms = FD_TS_MAX_MS + 1; /* past 9999-12-31: bad whatever the reference */
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_TS);
    CHECK_CONTAINS(err, "ts: 253402300800000 is not a valid timestamp");
    ev.ts_ms = INT64_MAX;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_TS);

    ev = good();
    ev.type = 3;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_UNKNOWN_TYPE);
    CHECK_CONTAINS(err, "type");

    ev = good();
    ev.has_price = true;
    ev.price = NAN;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    CHECK_STR(err, "price: NaN is not a valid price (must be finite and >= 0)");
    ev.price = INFINITY;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    CHECK_CONTAINS(err, "price: +Inf");
    ev.price = -INFINITY;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    ev.price = -0.01;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    CHECK_CONTAINS(err, "price: -0.01");
    ev.price = 0;
    CHECK(v(&ev, 0, 0, err) == FD_OK);
    ev.has_price = false;
    ev.price = NAN; /* ignored when absent */
    CHECK(v(&ev, 0, 0, err) == FD_OK);

    /* input.max_price: the unit price and the line total price x quantity */
    ev = good();
    ev.has_price = true;
    ev.price = (double)FD_MAX_PRICE_DEFAULT;
    CHECK(v(&ev, 0, 0, err) == FD_OK);
    ev.price = 1000000000.01;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    CHECK_STR(err, "price: 1000000000.01 is over input.max_price (1000000000)");
    ev.price = 1e300;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    ev.price = 5e16;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);
    ev.price = 0.25;
    ev.quantity = FD_QUANTITY_MAX;
    CHECK(v(&ev, 0, 0, err) == FD_OK);
    ev.price = 1000.01; /* x 1e6 = 1,000,010,000 */
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_QUANTITY);
    CHECK_STR(err, "quantity: 1000000 x price 1000.01 = 1000010000.00 is over input.max_price "
                   "(1000000000)");
    /* fd_event_validate_max: another bound; <= 0 is the default, the limit caps */
    ev.price = 100.0;
    ev.quantity = 1;
    CHECK(fd_event_validate_max(&ev, 0, 0, 100, err, 256) == FD_OK);
    ev.quantity = 2;
    CHECK(fd_event_validate_max(&ev, 0, 0, 100, err, 256) == FD_REJ_BAD_QUANTITY);
    CHECK(fd_event_validate_max(&ev, 0, 0, 200, err, 256) == FD_OK);
    ev.price = 100.01;
    ev.quantity = 1;
    CHECK(fd_event_validate_max(&ev, 0, 0, 100, err, 256) == FD_REJ_BAD_PRICE);
    CHECK_CONTAINS(err, "input.max_price (100)");
    ev.price = 1.5e9;
    CHECK(fd_event_validate_max(&ev, 0, 0, 0, err, 256) == FD_REJ_BAD_PRICE);
    CHECK(fd_event_validate_max(&ev, 0, 0, INT64_MAX, err, 256) == FD_OK);
    ev.price = 2.5e9;
    CHECK(fd_event_validate_max(&ev, 0, 0, INT64_MAX, err, 256) == FD_REJ_BAD_PRICE);
    /* the order of the checks: a bad price before a bad quantity */
    ev.quantity = 0;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_PRICE);

    ev = good();
    ev.quantity = 0;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_QUANTITY);
    CHECK_CONTAINS(err, "quantity: 0");
    ev.quantity = -1;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_QUANTITY);
    ev.quantity = 1000001;
    CHECK(v(&ev, 0, 0, err) == FD_REJ_BAD_QUANTITY);
    CHECK_CONTAINS(err, "1000001");
    ev.quantity = 1000000;
    CHECK(v(&ev, 0, 0, err) == FD_OK);
    ev.quantity = 1;
    CHECK(v(&ev, 0, 0, err) == FD_OK);

    /* NULL errstr is accepted */
    ev.quantity = 0;
    CHECK(fd_event_validate(&ev, 0, 0, NULL, 0) == FD_REJ_BAD_QUANTITY);
    return check_report();
}
