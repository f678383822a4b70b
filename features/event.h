/*
 * event.h - the clickstream event as the functional core sees it.
 *
 * Every wire format (Avro, Confluent-framed Avro, JSON) decodes into this one
 * fixed-size struct. Strings are copied into fixed buffers so an event owns
 * no heap memory: decoding allocates nothing per event and an event can be
 * copied by value into a queue. Identifiers longer than FD_ID_MAX bytes are
 * rejected by the decoders (FD_REJ_FIELD_TOO_LONG), never truncated.
 *
 * Pure C: no I/O, no clock, no threads.
 */
#ifndef FD_EVENT_H
#define FD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FD_ID_MAX 256 /* max bytes of user_id / item_id / ... (without NUL) */

/*
 * The numeric bounds of an accepted event (docs/EVENTS.md "Numeric
 * bounds"). They make every integer derived from an event exact and every
 * sum of them overflow-free per event:
 *
 *   price     0 .. max_price currency units (input.max_price, at most
 *             FD_MAX_PRICE_LIMIT), finite: price * 100 <= 2e11 is exact in a
 *             double and fits an int64, so it is rounded to cents only after
 *             this check;
 *   quantity  1 .. FD_QUANTITY_MAX;
 *   price * quantity  <= max_price as well (the line total): checked in
 *             integer cents, where llround(price * 100) * quantity <=
 *             2e11 * 1e6 = 2e17 cannot overflow;
 *   ts        1 .. FD_TS_MAX_MS: adding any duration funneld knows (session
 *             gap, window, lateness, retention: all under 2^50 ms) to an
 *             event time cannot overflow.
 *
 * So an event carries at most max_price * 100 <= 2e11 cents of revenue, and
 * in the decayed values' millionths of a unit at most 2e15 < 2^51 (exact).
 * Sums over events are saturating (features.h: fd_sat_add).
 */
#define FD_QUANTITY_MAX      1000000
#define FD_MAX_PRICE_DEFAULT 1000000000LL      /* input.max_price default: 1e9 currency units */
#define FD_MAX_PRICE_LIMIT   2000000000LL      /* largest input.max_price */
#define FD_TS_MAX_MS         253402300799999LL /* 9999-12-31T23:59:59.999Z */

typedef enum fd_event_type {
    FD_EV_CLICK = 0,
    FD_EV_CART = 1,
    FD_EV_PURCHASE = 2,
    FD_EV__COUNT
} fd_event_type;

typedef struct fd_event {
    char event_id[FD_ID_MAX + 1];
    char user_id[FD_ID_MAX + 1];
    char item_id[FD_ID_MAX + 1];    /* "" unless has_item */
    char session_id[FD_ID_MAX + 1]; /* "" unless has_session */
    char category[FD_ID_MAX + 1];   /* "" unless has_category */
    int64_t ts_ms;                  /* event time, epoch milliseconds */
    double price;                   /* unit price; 0 unless has_price */
    int32_t quantity;               /* 1 by default */
    uint8_t type;                   /* fd_event_type */
    bool has_item, has_session, has_price, has_category;
} fd_event;

/* Why a message was rejected. Names (fd_reject_name) are stable: they appear
 * in the dead-letter header "fd.reason", in Redis counters and in metrics. */
typedef enum fd_reject {
    FD_OK = 0,
    FD_REJ_TOO_LARGE,      /* "message_too_large": over input.max_message_bytes */
    FD_REJ_BAD_MAGIC,      /* "bad_magic": confluent framing byte 0 is not 0 */
    FD_REJ_UNKNOWN_SCHEMA, /* "unknown_schema_id": id not in input.schema_ids */
    FD_REJ_AVRO,           /* "avro_decode": truncated or corrupt Avro body */
    FD_REJ_JSON_SYNTAX,    /* "json_syntax": not a JSON object */
    FD_REJ_FIELD_TYPE,     /* "field_type": a field has the wrong JSON type */
    FD_REJ_FIELD_MISSING,  /* "field_missing": a required field is absent */
    FD_REJ_FIELD_TOO_LONG, /* "field_too_long": a string over FD_ID_MAX bytes */
    FD_REJ_UNKNOWN_TYPE,   /* "unknown_event_type": type not click/cart/purchase */
    FD_REJ_BAD_USER_ID,    /* "bad_user_id": empty or containing NUL */
    FD_REJ_BAD_TS,         /* "bad_ts": not 1..FD_TS_MAX_MS or unparsable */
    FD_REJ_FUTURE_TS,      /* "future_ts": beyond input.max_future_skew */
    FD_REJ_BAD_PRICE,      /* "bad_price": NaN, infinite, negative or over max_price */
    FD_REJ_BAD_QUANTITY,   /* "bad_quantity": outside 1..1000000, or price * quantity
                              over max_price */
    FD_REJ_KEY_MISMATCH,   /* "key_mismatch": Kafka key is not the user_id */
    FD_REJ__COUNT
} fd_reject;

/* Stable snake_case name of a reject reason ("ok" for FD_OK). Never NULL. */
const char *fd_reject_name(fd_reject r);

/* "click", "cart", "purchase"; "unknown" otherwise. */
const char *fd_event_type_name(int type);

/* Revenue of an event in cents: llround(price * 100) * quantity for a
 * PURCHASE with a price, else 0. Integer so sums are exact in any order.
 * For a validated event it is at most max_price * 100 (<= 2e11). Defined
 * for any event: a price that is NaN or negative counts 0, one whose cents
 * would not fit an int64 (an event no validator accepted) INT64_MAX; no
 * out-of-range double is ever converted to an integer. */
int64_t fd_event_revenue_cents(const fd_event *ev);

/* Reset an event to defaults (all absent, quantity 1). Only the first byte
 * of each string is cleared: compare events field by field, not with memcmp. */
void fd_event_init(fd_event *ev);

/* Whether two events hold the same values (strings up to their terminator,
 * price bit for bit). */
bool fd_event_equal(const fd_event *a, const fd_event *b);

/*
 * Validate a decoded event. ref_ts_ms is the reference for the future check:
 * the caller passes the latest event time seen on the event's partition (or
 * the broker timestamp of the message when larger; 0 when neither is known,
 * which disables the future check). Returns FD_OK or the reason; on a reject
 * writes a one-line human message naming the field into errstr. The price
 * bound is FD_MAX_PRICE_DEFAULT; fd_event_validate_max takes it
 * (input.max_price, currency units; <= 0 means the default, values over
 * FD_MAX_PRICE_LIMIT count as FD_MAX_PRICE_LIMIT).
 */
fd_reject fd_event_validate(const fd_event *ev, int64_t ref_ts_ms, int64_t max_future_skew_ms,
                            char *errstr, size_t errstr_size);
fd_reject fd_event_validate_max(const fd_event *ev, int64_t ref_ts_ms, int64_t max_future_skew_ms,
                                int64_t max_price, char *errstr, size_t errstr_size);

/* Whether ts_ms is beyond ref_ts_ms + max_future_skew_ms (never when
 * ref_ts_ms <= 0: no reference). The one rule of the future check, used by
 * fd_event_validate and by the engine's per-partition watermark. */
bool fd_ts_is_future(int64_t ts_ms, int64_t ref_ts_ms, int64_t max_future_skew_ms);

/* The future-time check of fd_event_validate alone: for an event that
 * fd_codec_decode already validated in every other respect. */
fd_reject fd_event_validate_future(const fd_event *ev, int64_t ref_ts_ms,
                                   int64_t max_future_skew_ms, char *errstr, size_t errstr_size);

#endif
