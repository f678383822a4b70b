/*
 * event.c - names and validation of the clickstream event.
 *
 * Why this file is so small and so strict: every decoder (Avro, Confluent
 * Avro, JSON) funnels into fd_event, and the one place that decides whether
 * an event is good enough for the functional core is fd_event_validate. The
 * decoders only translate wire shapes; the rules live here once, so a JSON
 * event and an Avro event with the same values are accepted or rejected for
 * the same reason with the same message. The reject names are a public
 * contract (DLQ header "fd.reason", Redis counters, metrics), hence a table
 * indexed by the enum and a compile-time check that it is complete.
 *
 * Pure C: no I/O, no clock, no allocation; every function is reentrant and
 * may be called from any thread.
 */
#include "features/event.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const reject_names[] = {
    [FD_OK] = "ok",
    [FD_REJ_TOO_LARGE] = "message_too_large",
    [FD_REJ_BAD_MAGIC] = "bad_magic",
    [FD_REJ_UNKNOWN_SCHEMA] = "unknown_schema_id",
    [FD_REJ_AVRO] = "avro_decode",
    [FD_REJ_JSON_SYNTAX] = "json_syntax",
    [FD_REJ_FIELD_TYPE] = "field_type",
    [FD_REJ_FIELD_MISSING] = "field_missing",
    [FD_REJ_FIELD_TOO_LONG] = "field_too_long",
    [FD_REJ_UNKNOWN_TYPE] = "unknown_event_type",
    [FD_REJ_BAD_USER_ID] = "bad_user_id",
    [FD_REJ_BAD_TS] = "bad_ts",
    [FD_REJ_FUTURE_TS] = "future_ts",
    [FD_REJ_BAD_PRICE] = "bad_price",
    [FD_REJ_BAD_QUANTITY] = "bad_quantity",
    [FD_REJ_KEY_MISMATCH] = "key_mismatch",
};
_Static_assert(sizeof reject_names / sizeof reject_names[0] == FD_REJ__COUNT,
               "every fd_reject needs a stable name");

/* Never NULL; "unknown" for values outside the enum. Any thread. */
const char *fd_reject_name(fd_reject r)
{
    if ((unsigned)r >= FD_REJ__COUNT)
        return "unknown";
    return reject_names[r];
}

/* Never NULL. Any thread. */
const char *fd_event_type_name(int type)
{
    switch (type) {
    case FD_EV_CLICK:
        return "click";
    case FD_EV_CART:
        return "cart";
    case FD_EV_PURCHASE:
        return "purchase";
    default:
        return "unknown";
    }
}

/* Zero everything, then the schema defaults: all optionals absent,
 * quantity 1, type click. */
void fd_event_init(fd_event *ev)
{
    /* Every field, but only the first byte of each string: a memset of the
     * whole event (1.3 KB) was ~3 % of a shard's time. Bytes after a
     * string's terminator are unspecified. */
    ev->event_id[0] = ev->user_id[0] = ev->item_id[0] = ev->session_id[0] = ev->category[0] = '\0';
    ev->ts_ms = 0;
    ev->price = 0;
    ev->quantity = 1;
    ev->type = FD_EV_CLICK;
    ev->has_item = ev->has_session = ev->has_price = ev->has_category = false;
}

bool fd_event_equal(const fd_event *a, const fd_event *b)
{
    return !strcmp(a->event_id, b->event_id) && !strcmp(a->user_id, b->user_id) &&
           !strcmp(a->item_id, b->item_id) && !strcmp(a->session_id, b->session_id) &&
           !strcmp(a->category, b->category) && a->ts_ms == b->ts_ms &&
           memcmp(&a->price, &b->price, sizeof a->price) == 0 && a->quantity == b->quantity &&
           a->type == b->type && a->has_item == b->has_item && a->has_session == b->has_session &&
           a->has_price == b->has_price && a->has_category == b->has_category;
}

static fd_reject fail(char *errstr, size_t errstr_size, fd_reject r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static fd_reject fail(char *errstr, size_t errstr_size, fd_reject r, const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* A fixed id buffer is well-formed when it is NUL-terminated within
 * FD_ID_MAX + 1 bytes. */
static int id_terminated(const char *s)
{
    return memchr(s, '\0', FD_ID_MAX + 1) != NULL;
}

bool fd_ts_is_future(int64_t ts_ms, int64_t ref_ts_ms, int64_t max_future_skew_ms)
{
    if (ref_ts_ms <= 0)
        return false;
    int64_t skew = max_future_skew_ms > 0 ? max_future_skew_ms : 0;
    /* ref + skew cannot overflow in practice, but be exact anyway. */
    return ref_ts_ms <= INT64_MAX - skew && ts_ms > ref_ts_ms + skew;
}

fd_reject fd_event_validate_future(const fd_event *ev, int64_t ref_ts_ms,
                                   int64_t max_future_skew_ms, char *errstr, size_t errstr_size)
{
    if (!fd_ts_is_future(ev->ts_ms, ref_ts_ms, max_future_skew_ms))
        return FD_OK;
    return fail(errstr, errstr_size, FD_REJ_FUTURE_TS,
                "ts: %lld is %lld ms ahead of the reference %lld (max skew %lld ms)",
                (long long)ev->ts_ms, (long long)(ev->ts_ms - ref_ts_ms), (long long)ref_ts_ms,
                (long long)(max_future_skew_ms > 0 ? max_future_skew_ms : 0));
}

/* input.max_price as used: <= 0 is the default, the limit caps it. */
static int64_t max_price_of(int64_t max_price)
{
    if (max_price <= 0)
        return FD_MAX_PRICE_DEFAULT;
    return max_price < FD_MAX_PRICE_LIMIT ? max_price : FD_MAX_PRICE_LIMIT;
}

/* The price and quantity rules. The price is compared as a double first, so
 * nothing out of range is ever rounded to an integer; then the line total in
 * integer cents, exactly as fd_event_revenue_cents computes it. */
static fd_reject check_amounts(const fd_event *ev, int64_t max_price, char *errstr,
                               size_t errstr_size)
{
    if (ev->has_price) {
        if (isnan(ev->price))
            return fail(errstr, errstr_size, FD_REJ_BAD_PRICE,
                        "price: NaN is not a valid price (must be finite and >= 0)");
        if (isinf(ev->price))
            return fail(errstr, errstr_size, FD_REJ_BAD_PRICE,
                        "price: %sInf is not a valid price (must be finite and >= 0)",
                        ev->price < 0 ? "-" : "+");
        if (ev->price < 0)
            return fail(errstr, errstr_size, FD_REJ_BAD_PRICE,
                        "price: %g is not a valid price (must be finite and >= 0)", ev->price);
        if (ev->price > (double)max_price)
            return fail(errstr, errstr_size, FD_REJ_BAD_PRICE,
                        "price: %.17g is over input.max_price (%lld)", ev->price,
                        (long long)max_price);
    }
    if (ev->quantity < 1 || ev->quantity > FD_QUANTITY_MAX)
        return fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                    "quantity: %ld is not a valid quantity (must be 1..%d)", (long)ev->quantity,
                    FD_QUANTITY_MAX);
    if (ev->has_price) {
        /* price <= max_price <= 2e9: the cents fit, and times a quantity
         * <= 1e6 they stay under 2e17 */
        int64_t line = (int64_t)llround(ev->price * 100.0) * ev->quantity;
        if (line > max_price * 100)
            return fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                        "quantity: %ld x price %.17g = %lld.%02lld is over input.max_price (%lld)",
                        (long)ev->quantity, ev->price, (long long)(line / 100),
                        (long long)(line % 100), (long long)max_price);
    }
    return FD_OK;
}

fd_reject fd_event_validate(const fd_event *ev, int64_t ref_ts_ms, int64_t max_future_skew_ms,
                            char *errstr, size_t errstr_size)
{
    return fd_event_validate_max(ev, ref_ts_ms, max_future_skew_ms, 0, errstr, errstr_size);
}

/* See event.h. Checks in a fixed order (user_id, ids, ts, type, price,
 * quantity, line total), so the reason for an event with several faults is stable.
 * Writes errstr only on a reject. Any thread; no allocation. */
fd_reject fd_event_validate_max(const fd_event *ev, int64_t ref_ts_ms, int64_t max_future_skew_ms,
                                int64_t max_price, char *errstr, size_t errstr_size)
{
    if (!id_terminated(ev->user_id))
        return fail(errstr, errstr_size, FD_REJ_FIELD_TOO_LONG, "user_id: longer than %d bytes",
                    FD_ID_MAX);
    if (ev->user_id[0] == '\0')
        return fail(errstr, errstr_size, FD_REJ_BAD_USER_ID,
                    "user_id: \"\" is not a valid user id (must be non-empty)");
    if (!id_terminated(ev->event_id))
        return fail(errstr, errstr_size, FD_REJ_FIELD_TOO_LONG, "event_id: longer than %d bytes",
                    FD_ID_MAX);
    if (!id_terminated(ev->item_id) || !id_terminated(ev->session_id) ||
        !id_terminated(ev->category)) {
        const char *f = !id_terminated(ev->item_id)      ? "item_id"
                        : !id_terminated(ev->session_id) ? "session_id"
                                                         : "category";
        return fail(errstr, errstr_size, FD_REJ_FIELD_TOO_LONG, "%s: longer than %d bytes", f,
                    FD_ID_MAX);
    }
    if (ev->ts_ms <= 0)
        return fail(errstr, errstr_size, FD_REJ_BAD_TS,
                    "ts: %lld is not a valid timestamp (must be > 0 epoch ms)",
                    (long long)ev->ts_ms);
    if (ev->ts_ms > FD_TS_MAX_MS)
        return fail(errstr, errstr_size, FD_REJ_BAD_TS,
                    "ts: %lld is not a valid timestamp (must be <= %lld epoch ms, "
                    "9999-12-31T23:59:59.999Z)",
                    (long long)ev->ts_ms, FD_TS_MAX_MS);
    fd_reject fr = fd_event_validate_future(ev, ref_ts_ms, max_future_skew_ms, errstr, errstr_size);
    if (fr != FD_OK)
        return fr;
    if (ev->type >= FD_EV__COUNT)
        return fail(errstr, errstr_size, FD_REJ_UNKNOWN_TYPE,
                    "type: %u is not a known event type (click, cart, purchase)",
                    (unsigned)ev->type);
    return check_amounts(ev, max_price_of(max_price), errstr, errstr_size);
}

int64_t fd_event_revenue_cents(const fd_event *ev)
{
    if (ev->type != FD_EV_PURCHASE || !ev->has_price || !(ev->price > 0))
        return 0; /* NaN and negative prices included: no validator passes them */
    /* Validated: price <= FD_MAX_PRICE_LIMIT, quantity <= FD_QUANTITY_MAX, so
     * cents * quantity <= 2e17. Anything beyond is saturated, not wrapped. */
    double cents = ev->price * 100.0;
    int64_t q = ev->quantity > 0 ? ev->quantity : 0;
    if (!(cents < 0x1p62) || (q && llround(cents) > INT64_MAX / q))
        return INT64_MAX;
    return (int64_t)llround(cents) * q;
}
