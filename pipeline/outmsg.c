/*
 * outmsg.c - see outmsg.h.
 */
#include "pipeline/outmsg.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fd_om_fail(char *err, size_t n, const char *fmt, ...)
{
    if (!err || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}
#define fail fd_om_fail

int fd_om_reserve(fd_om_buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < need)
        cap *= 2;
    char *nb = realloc(b->p, cap);
    if (!nb)
        return -1;
    b->p = nb;
    b->cap = cap;
    return 0;
}

void fd_om_free(fd_om_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- JSON --------------------------------------------------------------- */

int fd_om_put(fd_om_buf *m, const char *s, size_t l)
{
    if (fd_om_reserve(m, m->len + l + 1) != 0)
        return -1;
    memcpy(m->p + m->len, s, l);
    m->len += l;
    m->p[m->len] = '\0';
    return 0;
}

int fd_om_puts(fd_om_buf *m, const char *s)
{
    return fd_om_put(m, s, strlen(s));
}

int fd_om_i64(fd_om_buf *m, int64_t v)
{
    char b[32];
    int l = snprintf(b, sizeof b, "%" PRId64, v);
    return fd_om_put(m, b, (size_t)l);
}

/* %.17g round-trips; ".0" is added to integral values so every JSON parser
 * reads a rate as a floating-point number. */
int fd_om_double(fd_om_buf *m, double d)
{
    char b[40];
    if (!isfinite(d))
        return -1;
    int l = snprintf(b, sizeof b, "%.17g", d);
    if (l <= 0 || (size_t)l >= sizeof b - 3)
        return -1;
    if (!strpbrk(b, ".eE")) {
        memcpy(b + l, ".0", 3);
        l += 2;
    }
    return fd_om_put(m, b, (size_t)l);
}

/* A JSON string: '"', '\\' and control bytes escaped, bytes >= 0x80 as is. */
int fd_om_str(fd_om_buf *m, const char *s)
{
    if (fd_om_put(m, "\"", 1) != 0)
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
            if (fd_om_put(m, (const char *)p - run, run) != 0)
                return -1;
            run = 0;
            if (ch == 0)
                break;
            if (fd_om_puts(m, esc) != 0)
                return -1;
        } else {
            run++;
        }
    }
    return fd_om_put(m, "\"", 1);
}

int fd_om_key(fd_om_buf *m, bool first, const char *k)
{
    if (!first && fd_om_put(m, ",", 1) != 0)
        return -1;
    return fd_om_put(m, "\"", 1) || fd_om_puts(m, k) || fd_om_put(m, "\":", 2);
}

/* ---- Avro --------------------------------------------------------------- */

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
        return "array";
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

/* Record s must have exactly the fields of spec (by name, with their types). */
static int check_record(const char *file, avro_schema_t s, const fd_om_field *spec, int n_spec,
                        const char *prefix, char *err, size_t n)
{
    for (int i = 0; i < n_spec; i++) {
        const fd_om_field *f = &spec[i];
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
                  (f->type != AVRO_ARRAY ||
                   (rec && avro_typeof(rec) == (f->sub ? AVRO_RECORD : f->item)));
        if (!ok) {
            fail(err, n, "%s: field %s has type %s, expected %s%s%s", file, path,
                 t ? avro_schema_type_name(t) : "?", type_name(f->type),
                 f->type == AVRO_ARRAY ? " of " : "",
                 f->type == AVRO_ARRAY ? (f->sub ? "records" : type_name(f->item)) : "");
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

int fd_om_avro_open(fd_om_avro *a, const char *path, const char *what, const fd_om_field *spec,
                    int n_spec, char *err, size_t n)
{
    memset(a, 0, sizeof *a);
    if (!path || !*path) {
        fail(err, n, "%s: no file given", what);
        return -1;
    }
    size_t len = 0;
    char *text = slurp(path, &len, err, n);
    if (!text)
        return -1;
    int rc = avro_schema_from_json_length(text, len, &a->schema);
    free(text);
    if (rc != 0) {
        a->schema = NULL;
        fail(err, n, "%s: invalid Avro schema: %s", path, avro_strerror());
        return -1;
    }
    if (avro_typeof(a->schema) != AVRO_RECORD) {
        fail(err, n, "%s: top-level schema must be a record", path);
        goto bad;
    }
    if (check_record(path, a->schema, spec, n_spec, "", err, n) != 0)
        goto bad;
    a->cls = avro_generic_class_from_schema(a->schema);
    if (!a->cls || avro_generic_value_new(a->cls, &a->val) != 0) {
        fail(err, n, "%s: cannot build Avro values: %s", path, avro_strerror());
        goto bad;
    }
    a->have_val = true;
    a->writer = avro_writer_memory("", 0);
    if (!a->writer) {
        fail(err, n, "out of memory");
        goto bad;
    }
    return 0;
bad:
    fd_om_avro_close(a);
    return -1;
}

void fd_om_avro_close(fd_om_avro *a)
{
    if (a->have_val)
        avro_value_decref(&a->val);
    if (a->cls)
        avro_value_iface_decref(a->cls);
    if (a->schema)
        avro_schema_decref(a->schema);
    if (a->writer)
        avro_writer_free(a->writer);
    memset(a, 0, sizeof *a);
}

int fd_om_avro_write(fd_om_avro *a, fd_om_buf *b)
{
    size_t size = 0;
    if (avro_value_sizeof(&a->val, &size) != 0 || fd_om_reserve(b, size + 1) != 0)
        return -1;
    avro_writer_memory_set_dest(a->writer, b->p, (int64_t)b->cap);
    if (avro_value_write(a->writer, &a->val) != 0 || (size_t)avro_writer_tell(a->writer) != size)
        return -1;
    b->len = size;
    return 0;
}

int fd_om_av_field(avro_value_t *rec, const char *name, avro_value_t *f)
{
    return avro_value_get_by_name(rec, name, f, NULL) != 0 ? -1 : 0;
}

int fd_om_av_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    return fd_om_av_field(rec, name, &f) || avro_value_set_long(&f, v);
}

int fd_om_av_double(avro_value_t *rec, const char *name, double v)
{
    avro_value_t f;
    return fd_om_av_field(rec, name, &f) || avro_value_set_double(&f, v);
}

int fd_om_av_str(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f;
    /* Avro-C string lengths include the NUL */
    return fd_om_av_field(rec, name, &f) || avro_value_set_string_len(&f, s, strlen(s) + 1);
}
