/*
 * alert.c - the churn-alert message (see alert.h, docs/EVENTS.md). Like
 * metrics.c: JSON by hand (byte-for-byte deterministic, user ids with any
 * bytes pass through), Avro through a schema checked at load (outmsg.h).
 */
#include "pipeline/alert.h"
#include "pipeline/outmsg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const fd_om_field spec_reason[] = {
    {"feature", AVRO_STRING, NULL, 0, AVRO_NULL},
    {"value", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
    {"contribution", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
};
static const fd_om_field spec_top[] = {
    {"alert_id", AVRO_STRING, NULL, 0, AVRO_NULL},
    {"user_id", AVRO_STRING, NULL, 0, AVRO_NULL},
    {"ts_ms", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"risk", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
    {"threshold", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
    {"model_version", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"reasons", AVRO_ARRAY, spec_reason, 3, AVRO_NULL},
    {"last_activity_ms", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"monetary_cents", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"recommended_items", AVRO_ARRAY, NULL, 0, AVRO_STRING},
    {"producer", AVRO_STRING, NULL, 0, AVRO_NULL},
};

struct fd_alert_enc {
    int json;
    char *producer;
    fd_om_avro av;
    fd_om_buf out;
};

void fd_alert_enc_free(fd_alert_enc *a)
{
    if (!a)
        return;
    fd_om_avro_close(&a->av);
    fd_om_free(&a->out);
    free(a->producer);
    free(a);
}

fd_alert_enc *fd_alert_enc_new(int json, const char *schema_path, const char *producer, char *err,
                               size_t n)
{
    fd_alert_enc *a = calloc(1, sizeof *a);
    if (!a || !(a->producer = strdup(producer ? producer : "funneld " FD_VERSION))) {
        fd_om_fail(err, n, "out of memory");
        fd_alert_enc_free(a);
        return NULL;
    }
    a->json = json != 0;
    if (!a->json && fd_om_avro_open(&a->av, schema_path, "alerts schema", spec_top,
                                    (int)(sizeof spec_top / sizeof *spec_top), err, n) != 0) {
        fd_alert_enc_free(a);
        return NULL;
    }
    return a;
}

static int encode_json(fd_alert_enc *a, const fd_alert_msg *m)
{
    fd_om_buf *b = &a->out;
    b->len = 0;
    if (fd_om_put(b, "{", 1) || fd_om_key(b, true, "alert_id") || fd_om_str(b, m->alert_id) ||
        fd_om_key(b, false, "user_id") || fd_om_str(b, m->user_id) ||
        fd_om_key(b, false, "ts_ms") || fd_om_i64(b, m->ts_ms) || fd_om_key(b, false, "risk") ||
        fd_om_double(b, m->risk) || fd_om_key(b, false, "threshold") ||
        fd_om_double(b, m->threshold) || fd_om_key(b, false, "model_version") ||
        fd_om_i64(b, m->model_version) || fd_om_key(b, false, "reasons") || fd_om_put(b, "[", 1))
        return -1;
    for (int i = 0; i < m->n_reasons; i++) {
        const fd_alert_reason *r = &m->reasons[i];
        if ((i > 0 && fd_om_put(b, ",", 1)) || fd_om_put(b, "{", 1) ||
            fd_om_key(b, true, "feature") || fd_om_str(b, r->feature) ||
            fd_om_key(b, false, "value") || fd_om_double(b, r->value) ||
            fd_om_key(b, false, "contribution") || fd_om_double(b, r->contribution) ||
            fd_om_put(b, "}", 1))
            return -1;
    }
    if (fd_om_put(b, "]", 1) || fd_om_key(b, false, "last_activity_ms") ||
        fd_om_i64(b, m->last_activity_ms) || fd_om_key(b, false, "monetary_cents") ||
        fd_om_i64(b, m->monetary_cents) || fd_om_key(b, false, "recommended_items") ||
        fd_om_put(b, "[", 1))
        return -1;
    for (int i = 0; i < m->n_items; i++)
        if ((i > 0 && fd_om_put(b, ",", 1)) || fd_om_str(b, m->items[i]))
            return -1;
    return fd_om_put(b, "]", 1) || fd_om_key(b, false, "producer") || fd_om_str(b, a->producer) ||
           fd_om_put(b, "}", 1);
}

static int encode_avro(fd_alert_enc *a, const fd_alert_msg *m)
{
    avro_value_t *v = &a->av.val, arr;
    if (avro_value_reset(v) || fd_om_av_str(v, "alert_id", m->alert_id) ||
        fd_om_av_str(v, "user_id", m->user_id) || fd_om_av_long(v, "ts_ms", m->ts_ms) ||
        fd_om_av_double(v, "risk", m->risk) || fd_om_av_double(v, "threshold", m->threshold) ||
        fd_om_av_long(v, "model_version", m->model_version) || fd_om_av_field(v, "reasons", &arr))
        return -1;
    for (int i = 0; i < m->n_reasons; i++) {
        avro_value_t el;
        const fd_alert_reason *r = &m->reasons[i];
        if (avro_value_append(&arr, &el, NULL) || fd_om_av_str(&el, "feature", r->feature) ||
            fd_om_av_double(&el, "value", r->value) ||
            fd_om_av_double(&el, "contribution", r->contribution))
            return -1;
    }
    if (fd_om_av_long(v, "last_activity_ms", m->last_activity_ms) ||
        fd_om_av_long(v, "monetary_cents", m->monetary_cents) ||
        fd_om_av_field(v, "recommended_items", &arr))
        return -1;
    for (int i = 0; i < m->n_items; i++) {
        avro_value_t el;
        if (avro_value_append(&arr, &el, NULL) ||
            avro_value_set_string_len(&el, m->items[i], strlen(m->items[i]) + 1))
            return -1;
    }
    if (fd_om_av_str(v, "producer", a->producer))
        return -1;
    return fd_om_avro_write(&a->av, &a->out);
}

int fd_alert_encode(fd_alert_enc *a, const fd_alert_msg *m, const void **out, size_t *len)
{
    if (!m->alert_id || !m->user_id || m->n_reasons < 0 || m->n_reasons > FD_ALERT_REASONS ||
        m->n_items < 0 || (m->n_items > 0 && !m->items) || !isfinite(m->risk) ||
        !isfinite(m->threshold))
        return -1;
    for (int i = 0; i < m->n_reasons; i++)
        if (!m->reasons[i].feature || !isfinite(m->reasons[i].value) ||
            !isfinite(m->reasons[i].contribution))
            return -1;
    for (int i = 0; i < m->n_items; i++)
        if (!m->items[i])
            return -1;
    if ((a->json ? encode_json(a, m) : encode_avro(a, m)) != 0)
        return -1;
    *out = a->out.p;
    *len = a->out.len;
    return 0;
}
