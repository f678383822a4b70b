/*
 * metrics.h - the funnel-metrics topic message: one per closed window (a
 * tumbling window such as "1m", or the hourly roll-up "1h"), encoded as
 * Avro binary (conf/schemas/funnel_metrics.avsc, record funneld.FunnelMetrics)
 * or as one JSON object with the same field names and nesting.
 * docs/EVENTS.md "The funnel-metrics topic" is the contract.
 *
 * Thread: an encoder belongs to one thread; reports are plain values.
 */
#ifndef FD_METRICS_H
#define FD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "features/funnel.h"

typedef struct fd_window_cat {
    char name[FD_ID_MAX + 1]; /* any bytes but NUL */
    int64_t c[FD_FC__COUNT];  /* counters, FD_FC_* order */
} fd_window_cat;

typedef struct fd_window_report {
    char id[64];   /* "<span>:<start_ms>" */
    char span[16]; /* "1m", "1h" */
    int64_t start_ms, end_ms;
    int64_t c[FD_FC__COUNT]; /* counters, FD_FC_* order */
    int64_t users[4];        /* HLL estimates: visit, click, cart, purchase */
    double rates[4];         /* click_rate, cart_rate, purchase_rate, conversion */
    int n_cats;              /* 0..FD_FUNNEL_MAX_CATS + 1 (configured ones, then "other") */
    fd_window_cat cats[FD_FUNNEL_MAX_CATS + 1];
} fd_window_report;

/* Fill id/span/end from span name + start + span ms, zero the rest. A span
 * name longer than 15 bytes is truncated. */
void fd_window_report_init(fd_window_report *r, const char *span, int64_t span_ms,
                           int64_t start_ms);

/* rates from the session counters (0 when a denominator is 0):
 * click_rate = sessions_click/sessions_visit, cart_rate = sessions_cart/sessions_click,
 * purchase_rate = sessions_purchase/sessions_cart, conversion = sessions_purchase/sessions_visit */
void fd_window_report_rates(fd_window_report *r);

/* "click_rate", "cart_rate", "purchase_rate", "conversion" (rates[] order). */
extern const char *const fd_rate_names[4];

typedef struct fd_metrics_enc fd_metrics_enc;

/* json != 0: JSON (one object, same field names and nesting as the Avro
 * record, fixed field order, no trailing newline); else Avro binary (no
 * framing) with the schema at schema_path, which must be a record with
 * exactly the fields of conf/schemas/funnel_metrics.avsc (names and types;
 * order free). producer: the "producer" field; NULL = "funneld <version>".
 * NULL + a message naming the file (and the field) on error. */
fd_metrics_enc *fd_metrics_enc_new(int json, const char *schema_path, const char *producer,
                                   char *err, size_t n);

/* Encode one report. The buffer is owned by m, valid until the next call.
 * 0, or -1: out of memory, n_cats out of range, an unterminated string in r,
 * a non-finite rate, or Avro-C failing to encode. */
int fd_metrics_encode(fd_metrics_enc *m, const fd_window_report *r, const void **out, size_t *len);

void fd_metrics_enc_free(fd_metrics_enc *m); /* NULL accepted */

#endif
