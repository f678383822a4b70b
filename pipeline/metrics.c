/*
 * metrics.c - the funnel-metrics message (see metrics.h, docs/EVENTS.md).
 *
 * JSON is written by hand, not through jansson, so the output is byte-for-
 * byte deterministic (field order, number formats) and category names with
 * arbitrary bytes pass through without a UTF-8 check. Avro goes through
 * Avro-C generic values; the schema file is checked at load against the
 * expected layout (every field by name and type, nothing extra), so a
 * mismatch is a start-up error naming the file and the field, never a
 * message that consumers cannot read.
 */
#include "pipeline/metrics.h"
#include "pipeline/outmsg.h"

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const fd_rate_names[4] = {"click_rate", "cart_rate", "purchase_rate", "conversion"};

/* Sub-record field names, in output order. Stages index FD_FC_SESS_* and
 * users[]; events index FD_FC_CLICK + i. */
static const char *const stage_names[4] = {"visit", "click", "cart", "purchase"};
static const char *const event_names[3] = {"click", "cart", "purchase"};

void fd_window_report_init(fd_window_report *r, const char *span, int64_t span_ms, int64_t start_ms)
{
    memset(r, 0, sizeof *r);
    snprintf(r->span, sizeof r->span, "%s", span ? span : "");
    r->start_ms = start_ms;
    r->end_ms = start_ms + span_ms;
    snprintf(r->id, sizeof r->id, "%s:%" PRId64, r->span, start_ms);
}

static double ratio(int64_t num, int64_t den)
{
    return den == 0 ? 0.0 : (double)num / (double)den;
}

void fd_window_report_rates(fd_window_report *r)
{
    const int64_t *c = r->c;
    r->rates[0] = ratio(c[FD_FC_SESS_CLICK], c[FD_FC_SESS_VISIT]);
    r->rates[1] = ratio(c[FD_FC_SESS_CART], c[FD_FC_SESS_CLICK]);
    r->rates[2] = ratio(c[FD_FC_SESS_PURCHASE], c[FD_FC_SESS_CART]);
    r->rates[3] = ratio(c[FD_FC_SESS_PURCHASE], c[FD_FC_SESS_VISIT]);
}

/* ---- expected schema layout --------------------------------------------- */

static const fd_om_field spec_stages[] = {
    {"visit", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"click", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"cart", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"purchase", AVRO_INT64, NULL, 0, AVRO_NULL},
};
static const fd_om_field spec_events[] = {
    {"click", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"cart", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"purchase", AVRO_INT64, NULL, 0, AVRO_NULL},
};
static const fd_om_field spec_rates[] = {
    {"click_rate", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
    {"cart_rate", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
    {"purchase_rate", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
    {"conversion", AVRO_DOUBLE, NULL, 0, AVRO_NULL},
};
static const fd_om_field spec_cat[] = {
    {"category", AVRO_STRING, NULL, 0, AVRO_NULL},
    {"sessions", AVRO_RECORD, spec_stages, 4, AVRO_NULL},
    {"events", AVRO_RECORD, spec_events, 3, AVRO_NULL},
    {"revenue_cents", AVRO_INT64, NULL, 0, AVRO_NULL},
};
static const fd_om_field spec_top[] = {
    {"id", AVRO_STRING, NULL, 0, AVRO_NULL},
    {"span", AVRO_STRING, NULL, 0, AVRO_NULL},
    {"window_start_ms", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"window_end_ms", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"sessions", AVRO_RECORD, spec_stages, 4, AVRO_NULL},
    {"events", AVRO_RECORD, spec_events, 3, AVRO_NULL},
    {"users", AVRO_RECORD, spec_stages, 4, AVRO_NULL},
    {"revenue_cents", AVRO_INT64, NULL, 0, AVRO_NULL},
    {"rates", AVRO_RECORD, spec_rates, 4, AVRO_NULL},
    {"categories", AVRO_ARRAY, spec_cat, 4, AVRO_NULL},
    {"producer", AVRO_STRING, NULL, 0, AVRO_NULL},
};

/* ---- encoder ------------------------------------------------------------ */

struct fd_metrics_enc {
    int json;
    char *producer;
    fd_om_avro av;
    fd_om_buf out;
};

void fd_metrics_enc_free(fd_metrics_enc *m)
{
    if (!m)
        return;
    fd_om_avro_close(&m->av);
    fd_om_free(&m->out);
    free(m->producer);
    free(m);
}

fd_metrics_enc *fd_metrics_enc_new(int json, const char *schema_path, const char *producer,
                                   char *err, size_t n)
{
    fd_metrics_enc *m = calloc(1, sizeof *m);
    if (!m) {
        fd_om_fail(err, n, "out of memory");
        return NULL;
    }
    m->json = json != 0;
    m->producer = strdup(producer ? producer : "funneld " FD_VERSION);
    if (!m->producer) {
        fd_om_fail(err, n, "out of memory");
        goto bad;
    }
    if (m->json)
        return m;
    if (fd_om_avro_open(&m->av, schema_path, "metrics schema", spec_top,
                        (int)(sizeof spec_top / sizeof *spec_top), err, n) != 0)
        goto bad;
    return m;
bad:
    fd_metrics_enc_free(m);
    return NULL;
}

/* ---- JSON --------------------------------------------------------------- */

#define put(m, s, l)     fd_om_put(&(m)->out, s, l)
#define put_i64(m, v)    fd_om_i64(&(m)->out, v)
#define put_double(m, d) fd_om_double(&(m)->out, d)
#define put_str(m, s)    fd_om_str(&(m)->out, s)
#define put_key(m, f, k) fd_om_key(&(m)->out, f, k)

static int put_longs(fd_metrics_enc *m, const char *const *names, const int64_t *v, int nv)
{
    if (put(m, "{", 1) != 0)
        return -1;
    for (int i = 0; i < nv; i++)
        if (put_key(m, i == 0, names[i]) || put_i64(m, v[i]))
            return -1;
    return put(m, "}", 1);
}

static int encode_json(fd_metrics_enc *m, const fd_window_report *r)
{
    m->out.len = 0;
    if (put(m, "{", 1) || put_key(m, true, "id") || put_str(m, r->id) ||
        put_key(m, false, "span") || put_str(m, r->span) || put_key(m, false, "window_start_ms") ||
        put_i64(m, r->start_ms) || put_key(m, false, "window_end_ms") || put_i64(m, r->end_ms) ||
        put_key(m, false, "sessions") || put_longs(m, stage_names, &r->c[FD_FC_SESS_VISIT], 4) ||
        put_key(m, false, "events") || put_longs(m, event_names, &r->c[FD_FC_CLICK], 3) ||
        put_key(m, false, "users") || put_longs(m, stage_names, r->users, 4) ||
        put_key(m, false, "revenue_cents") || put_i64(m, r->c[FD_FC_REVENUE_CENTS]) ||
        put_key(m, false, "rates") || put(m, "{", 1))
        return -1;
    for (int i = 0; i < 4; i++)
        if (put_key(m, i == 0, fd_rate_names[i]) || put_double(m, r->rates[i]))
            return -1;
    if (put(m, "}", 1) || put_key(m, false, "categories") || put(m, "[", 1))
        return -1;
    for (int i = 0; i < r->n_cats; i++) {
        const fd_window_cat *k = &r->cats[i];
        if ((i > 0 && put(m, ",", 1)) || put(m, "{", 1) || put_key(m, true, "category") ||
            put_str(m, k->name) || put_key(m, false, "sessions") ||
            put_longs(m, stage_names, &k->c[FD_FC_SESS_VISIT], 4) || put_key(m, false, "events") ||
            put_longs(m, event_names, &k->c[FD_FC_CLICK], 3) ||
            put_key(m, false, "revenue_cents") || put_i64(m, k->c[FD_FC_REVENUE_CENTS]) ||
            put(m, "}", 1))
            return -1;
    }
    return put(m, "]", 1) || put_key(m, false, "producer") || put_str(m, m->producer) ||
           put(m, "}", 1);
}

/* ---- Avro --------------------------------------------------------------- */

#define av_field  fd_om_av_field
#define av_long   fd_om_av_long
#define av_double fd_om_av_double
#define av_str    fd_om_av_str

static int av_longs(avro_value_t *rec, const char *name, const char *const *names, const int64_t *v,
                    int nv)
{
    avro_value_t sub;
    if (av_field(rec, name, &sub) != 0)
        return -1;
    for (int i = 0; i < nv; i++)
        if (av_long(&sub, names[i], v[i]) != 0)
            return -1;
    return 0;
}

static int encode_avro(fd_metrics_enc *m, const fd_window_report *r)
{
    avro_value_t *v = &m->av.val, sub, arr;
    if (avro_value_reset(v) != 0 || av_str(v, "id", r->id) || av_str(v, "span", r->span) ||
        av_long(v, "window_start_ms", r->start_ms) || av_long(v, "window_end_ms", r->end_ms) ||
        av_longs(v, "sessions", stage_names, &r->c[FD_FC_SESS_VISIT], 4) ||
        av_longs(v, "events", event_names, &r->c[FD_FC_CLICK], 3) ||
        av_longs(v, "users", stage_names, r->users, 4) ||
        av_long(v, "revenue_cents", r->c[FD_FC_REVENUE_CENTS]) || av_field(v, "rates", &sub))
        return -1;
    for (int i = 0; i < 4; i++)
        if (av_double(&sub, fd_rate_names[i], r->rates[i]) != 0)
            return -1;
    if (av_field(v, "categories", &arr))
        return -1;
    for (int i = 0; i < r->n_cats; i++) {
        const fd_window_cat *k = &r->cats[i];
        avro_value_t el;
        if (avro_value_append(&arr, &el, NULL) || av_str(&el, "category", k->name) ||
            av_longs(&el, "sessions", stage_names, &k->c[FD_FC_SESS_VISIT], 4) ||
            av_longs(&el, "events", event_names, &k->c[FD_FC_CLICK], 3) ||
            av_long(&el, "revenue_cents", k->c[FD_FC_REVENUE_CENTS]))
            return -1;
    }
    if (av_str(v, "producer", m->producer))
        return -1;
    return fd_om_avro_write(&m->av, &m->out);
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

int fd_metrics_encode(fd_metrics_enc *m, const fd_window_report *r, const void **out, size_t *len)
{
    if (r->n_cats < 0 || r->n_cats > FD_FUNNEL_MAX_CATS + 1 || !terminated(r->id, sizeof r->id) ||
        !terminated(r->span, sizeof r->span))
        return -1;
    for (int i = 0; i < r->n_cats; i++)
        if (!terminated(r->cats[i].name, sizeof r->cats[i].name))
            return -1;
    for (int i = 0; i < 4; i++)
        if (!isfinite(r->rates[i]))
            return -1;
    if ((m->json ? encode_json(m, r) : encode_avro(m, r)) != 0)
        return -1;
    *out = m->out.p;
    *len = m->out.len;
    return 0;
}
