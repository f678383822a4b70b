/*
 * alert.h - the churn-alert topic message: one per at-risk episode (see
 * models/churn.h), encoded as Avro binary (conf/schemas/churn_alert.avsc,
 * record funneld.ChurnAlert) or as one JSON object with the same field
 * names and nesting. docs/EVENTS.md "The churn-alert topic" is the contract.
 *
 * Thread: an encoder belongs to one thread (each shard has its own).
 */
#ifndef FD_ALERT_H
#define FD_ALERT_H

#include <stddef.h>
#include <stdint.h>

#define FD_ALERT_REASONS 3

typedef struct fd_alert_reason {
    const char *feature; /* NUL-terminated */
    double value, contribution;
} fd_alert_reason;

typedef struct fd_alert_msg {
    const char *alert_id, *user_id; /* NUL-terminated */
    int64_t ts_ms;
    double risk, threshold;
    int64_t model_version;
    int n_reasons; /* 0..FD_ALERT_REASONS */
    fd_alert_reason reasons[FD_ALERT_REASONS];
    int64_t last_activity_ms, monetary_cents;
    int n_items; /* recommended items, best first */
    const char *const *items;
} fd_alert_msg;

typedef struct fd_alert_enc fd_alert_enc;

/* json != 0: JSON (fixed field order, no trailing newline); else Avro
 * binary (no framing) with the schema at schema_path, which must be a
 * record with exactly the fields of conf/schemas/churn_alert.avsc (names
 * and types; order free). producer NULL = "funneld <version>". NULL and a
 * message naming the file (and the field) on error. */
fd_alert_enc *fd_alert_enc_new(int json, const char *schema_path, const char *producer, char *err,
                               size_t n);

/* Encode one alert; the buffer is owned by a, valid until the next call.
 * 0, or -1: out of memory, n_reasons or n_items out of range, a NULL
 * string, a non-finite number, or Avro-C failing. */
int fd_alert_encode(fd_alert_enc *a, const fd_alert_msg *m, const void **out, size_t *len);

void fd_alert_enc_free(fd_alert_enc *a); /* NULL accepted */

#endif
