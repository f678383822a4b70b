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

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FD_VERSION
#define FD_VERSION "unknown"
#endif

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

typedef struct fspec {
    const char *name;
    avro_type_t type;
    const struct fspec *sub; /* record fields, or the array's item record fields */
    int n_sub;
} fspec;

static const fspec spec_stages[] = {
    {"visit", AVRO_INT64, NULL, 0},
    {"click", AVRO_INT64, NULL, 0},
    {"cart", AVRO_INT64, NULL, 0},
    {"purchase", AVRO_INT64, NULL, 0},
};
static const fspec spec_events[] = {
    {"click", AVRO_INT64, NULL, 0},
    {"cart", AVRO_INT64, NULL, 0},
    {"purchase", AVRO_INT64, NULL, 0},
};
static const fspec spec_rates[] = {
    {"click_rate", AVRO_DOUBLE, NULL, 0},
    {"cart_rate", AVRO_DOUBLE, NULL, 0},
    {"purchase_rate", AVRO_DOUBLE, NULL, 0},
    {"conversion", AVRO_DOUBLE, NULL, 0},
};
static const fspec spec_cat[] = {
    {"category", AVRO_STRING, NULL, 0},
    {"sessions", AVRO_RECORD, spec_stages, 4},
    {"events", AVRO_RECORD, spec_events, 3},
    {"revenue_cents", AVRO_INT64, NULL, 0},
};
static const fspec spec_top[] = {
    {"id", AVRO_STRING, NULL, 0},
    {"span", AVRO_STRING, NULL, 0},
    {"window_start_ms", AVRO_INT64, NULL, 0},
    {"window_end_ms", AVRO_INT64, NULL, 0},
    {"sessions", AVRO_RECORD, spec_stages, 4},
    {"events", AVRO_RECORD, spec_events, 3},
    {"users", AVRO_RECORD, spec_stages, 4},
    {"revenue_cents", AVRO_INT64, NULL, 0},
    {"rates", AVRO_RECORD, spec_rates, 4},
    {"categories", AVRO_ARRAY, spec_cat, 4},
    {"producer", AVRO_STRING, NULL, 0},
};

static const char *type_name(avro_type_t t)
{
    switch (t) {
    case AVRO_STRING:
        return "string";
    case AVRO_INT64:
        return "long";
    case AVRO_DOUBLE:
        return "double";
    case AVRO_RECORD:
        return "record";
    case AVRO_ARRAY:
        return "array of records";
    default:
        return "?";
    }
}

static avro_schema_t deref(avro_schema_t s)
{
    while (s && avro_typeof(s) == AVRO_LINK)
        s = avro_schema_link_target(s);
    return s;
}

static void fail(char *err, size_t n, const char *fmt, ...)
{
    if (!err || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* Record s must have exactly the fields of spec (by name, with their types). */
static int check_record(const char *file, avro_schema_t s, const fspec *spec, int n_spec,
                        const char *prefix, char *err, size_t n)
{
    for (int i = 0; i < n_spec; i++) {
        const fspec *f = &spec[i];
        char path[256];
        snprintf(path, sizeof path, "%s%s", prefix, f->name);
        int idx = avro_schema_record_field_get_index(s, f->name);
        if (idx < 0) {
            fail(err, n, "%s: field %s is missing (expected %s)", file, path, type_name(f->type));
            return -1;
        }
        avro_schema_t t = deref(avro_schema_record_field_get_by_index(s, idx));
        avro_schema_t rec = t;
        if (f->type == AVRO_ARRAY && t && avro_typeof(t) == AVRO_ARRAY)
            rec = deref(avro_schema_array_items(t));
        bool ok = t && avro_typeof(t) == f->type &&
                  (f->type != AVRO_ARRAY || (rec && avro_typeof(rec) == AVRO_RECORD));
        if (!ok) {
            fail(err, n, "%s: field %s has type %s, expected %s", file, path,
                 t ? avro_schema_type_name(t) : "?", type_name(f->type));
            return -1;
        }
        if (f->sub) {
            char sub[sizeof path + 4];
            snprintf(sub, sizeof sub, "%s%s.", path, f->type == AVRO_ARRAY ? "[]" : "");
            if (check_record(file, rec, f->sub, f->n_sub, sub, err, n) != 0)
                return -1;
        }
    }
    size_t have = avro_schema_record_size(s);
    for (size_t i = 0; i < have; i++) {
        const char *name = avro_schema_record_field_name(s, (int)i);
        bool known = false;
        for (int j = 0; j < n_spec && !known; j++)
            known = strcmp(name, spec[j].name) == 0;
        if (!known) {
            fail(err, n, "%s: unexpected field %s%s", file, prefix, name);
            return -1;
        }
    }
    return 0;
}

static char *slurp(const char *path, size_t *len, char *err, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, n, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, used = 0;
    bool oom = false;
    for (;;) {
        if (used + 4096 + 1 > cap) {
            size_t nc = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, nc);
            if (!nb) {
                oom = true;
                break;
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + used, 1, cap - used - 1, f);
        used += got;
        if (got == 0)
            break;
    }
    bool bad = oom || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fail(err, n, "%s: %s", path, oom ? "out of memory" : "read error");
        return NULL;
    }
    buf[used] = '\0';
    *len = used;
    return buf;
}

/* ---- encoder ------------------------------------------------------------ */

struct fd_metrics_enc {
    int json;
    char *producer;
    /* avro */
    avro_schema_t schema;
    avro_value_iface_t *cls;
    avro_value_t val;
    bool have_val;
    avro_writer_t writer;
    /* output */
    char *buf;
    size_t cap, len;
};

void fd_metrics_enc_free(fd_metrics_enc *m)
{
    if (!m)
        return;
    if (m->have_val)
        avro_value_decref(&m->val);
    if (m->cls)
        avro_value_iface_decref(m->cls);
    if (m->schema)
        avro_schema_decref(m->schema);
    if (m->writer)
        avro_writer_free(m->writer);
    free(m->producer);
    free(m->buf);
    free(m);
}

fd_metrics_enc *fd_metrics_enc_new(int json, const char *schema_path, const char *producer,
                                   char *err, size_t n)
{
    fd_metrics_enc *m = calloc(1, sizeof *m);
    if (!m) {
        fail(err, n, "out of memory");
        return NULL;
    }
    m->json = json != 0;
    m->producer = strdup(producer ? producer : "funneld " FD_VERSION);
    if (!m->producer) {
        fail(err, n, "out of memory");
        goto bad;
    }
    if (m->json)
        return m;
    if (!schema_path || !*schema_path) {
        fail(err, n, "metrics schema: no file given");
        goto bad;
    }
    size_t len = 0;
    char *text = slurp(schema_path, &len, err, n);
    if (!text)
        goto bad;
    int rc = avro_schema_from_json_length(text, len, &m->schema);
    free(text);
    if (rc != 0) {
        m->schema = NULL;
        fail(err, n, "%s: invalid Avro schema: %s", schema_path, avro_strerror());
        goto bad;
    }
    if (avro_typeof(m->schema) != AVRO_RECORD) {
        fail(err, n, "%s: top-level schema must be a record", schema_path);
        goto bad;
    }
    if (check_record(schema_path, m->schema, spec_top, (int)(sizeof spec_top / sizeof *spec_top),
                     "", err, n) != 0)
        goto bad;
    m->cls = avro_generic_class_from_schema(m->schema);
    if (!m->cls || avro_generic_value_new(m->cls, &m->val) != 0) {
        fail(err, n, "%s: cannot build Avro values: %s", schema_path, avro_strerror());
        goto bad;
    }
    m->have_val = true;
    m->writer = avro_writer_memory("", 0);
    if (!m->writer) {
        fail(err, n, "out of memory");
        goto bad;
    }
    return m;
bad:
    fd_metrics_enc_free(m);
    return NULL;
}

static int reserve(fd_metrics_enc *m, size_t need)
{
    if (need <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < need)
        cap *= 2;
    char *nb = realloc(m->buf, cap);
    if (!nb)
        return -1;
    m->buf = nb;
    m->cap = cap;
    return 0;
}

/* ---- JSON --------------------------------------------------------------- */

static int put(fd_metrics_enc *m, const char *s, size_t l)
{
    if (reserve(m, m->len + l + 1) != 0)
        return -1;
    memcpy(m->buf + m->len, s, l);
    m->len += l;
    m->buf[m->len] = '\0';
    return 0;
}

static int puts_(fd_metrics_enc *m, const char *s)
{
    return put(m, s, strlen(s));
}

static int put_i64(fd_metrics_enc *m, int64_t v)
{
    char b[32];
    int l = snprintf(b, sizeof b, "%" PRId64, v);
    return put(m, b, (size_t)l);
}

/* %.17g round-trips; ".0" is added to integral values so every JSON parser
 * reads a rate as a floating-point number. */
static int put_double(fd_metrics_enc *m, double d)
{
    char b[40];
    int l = snprintf(b, sizeof b, "%.17g", d);
    if (l <= 0 || (size_t)l >= sizeof b - 3)
        return -1;
    if (!strpbrk(b, ".eE")) {
        memcpy(b + l, ".0", 3);
        l += 2;
    }
    return put(m, b, (size_t)l);
}

/* A JSON string: '"', '\\' and control bytes escaped, bytes >= 0x80 as is. */
static int put_str(fd_metrics_enc *m, const char *s)
{
    if (put(m, "\"", 1) != 0)
        return -1;
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* bytes of p[...] not yet copied */
    for (;; p++) {
        unsigned char ch = *p;
        const char *esc = NULL;
        char u[8];
        if (ch == '"')
            esc = "\\\"";
        else if (ch == '\\')
            esc = "\\\\";
        else if (ch == '\n')
            esc = "\\n";
        else if (ch == '\r')
            esc = "\\r";
        else if (ch == '\t')
            esc = "\\t";
        else if (ch == '\b')
            esc = "\\b";
        else if (ch == '\f')
            esc = "\\f";
        else if (ch != 0 && ch < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", ch);
            esc = u;
        }
        if (ch == 0 || esc) {
            if (put(m, (const char *)p - run, run) != 0)
                return -1;
            run = 0;
            if (ch == 0)
                break;
            if (puts_(m, esc) != 0)
                return -1;
        } else {
            run++;
        }
    }
    return put(m, "\"", 1);
}

static int put_key(fd_metrics_enc *m, bool first, const char *k)
{
    if (!first && put(m, ",", 1) != 0)
        return -1;
    return put(m, "\"", 1) || puts_(m, k) || put(m, "\":", 2);
}

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
    m->len = 0;
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

static int av_field(avro_value_t *rec, const char *name, avro_value_t *f)
{
    return avro_value_get_by_name(rec, name, f, NULL) != 0 ? -1 : 0;
}

static int av_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    return av_field(rec, name, &f) || avro_value_set_long(&f, v);
}

static int av_double(avro_value_t *rec, const char *name, double v)
{
    avro_value_t f;
    return av_field(rec, name, &f) || avro_value_set_double(&f, v);
}

static int av_str(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f;
    /* Avro-C string lengths include the NUL */
    return av_field(rec, name, &f) || avro_value_set_string_len(&f, s, strlen(s) + 1);
}

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
    avro_value_t *v = &m->val, sub, arr;
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
    size_t size = 0;
    if (avro_value_sizeof(v, &size) != 0 || reserve(m, size + 1) != 0)
        return -1;
    avro_writer_memory_set_dest(m->writer, m->buf, (int64_t)m->cap);
    if (avro_value_write(m->writer, v) != 0 || (size_t)avro_writer_tell(m->writer) != size)
        return -1;
    m->len = size;
    return 0;
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
    *out = m->buf;
    *len = m->len;
    return 0;
}
