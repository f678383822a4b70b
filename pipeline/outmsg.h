/*
 * outmsg.h - what the output messages (funnel metrics, churn alerts) share:
 * a growable byte buffer with a deterministic JSON writer, and an Avro-C
 * record loaded from a schema file that is checked against the layout the
 * encoder writes (every field by name and type, nothing extra), so a
 * mismatch is a start-up error naming the file and the field, never a
 * message consumers cannot read.
 *
 * Thread: a buffer or an Avro record belongs to one thread.
 */
#ifndef FD_OUTMSG_H
#define FD_OUTMSG_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef FD_VERSION
#define FD_VERSION "unknown"
#endif

typedef struct fd_om_buf {
    char *p; /* NUL-terminated after each JSON append */
    size_t cap, len;
} fd_om_buf;

int fd_om_reserve(fd_om_buf *b, size_t need); /* 0, or -1 out of memory */
void fd_om_free(fd_om_buf *b);

/* JSON pieces; each 0 or -1 (out of memory). Strings escape '"', '\\' and
 * control bytes and pass bytes >= 0x80 as they are; doubles are %.17g with
 * ".0" added to integral values (a parser reads them as floating point),
 * -1 for a non-finite one. */
int fd_om_put(fd_om_buf *b, const char *s, size_t l);
int fd_om_puts(fd_om_buf *b, const char *s);
int fd_om_i64(fd_om_buf *b, int64_t v);
int fd_om_double(fd_om_buf *b, double d);
int fd_om_str(fd_om_buf *b, const char *s);
int fd_om_key(fd_om_buf *b, bool first, const char *k); /* [,]"k": */

/* The expected layout of a record. An AVRO_ARRAY field has either sub (an
 * array of records with those fields) or item (an array of that type). */
typedef struct fd_om_field {
    const char *name;
    avro_type_t type;
    const struct fd_om_field *sub;
    int n_sub;
    avro_type_t item;
} fd_om_field;

typedef struct fd_om_avro {
    avro_schema_t schema;
    avro_value_iface_t *cls;
    avro_value_t val; /* the record to fill (avro_value_reset first) */
    bool have_val;
    avro_writer_t writer;
} fd_om_avro;

/* Load the schema at path (what: "metrics schema", for a missing path),
 * check it against spec, build the value. 0, or -1 with the reason. */
int fd_om_avro_open(fd_om_avro *a, const char *path, const char *what, const fd_om_field *spec,
                    int n_spec, char *err, size_t n);
void fd_om_avro_close(fd_om_avro *a);
/* Serialise a->val into b (b->len = its size). 0 or -1. */
int fd_om_avro_write(fd_om_avro *a, fd_om_buf *b);

/* Set a field of a record value by name; 0 or -1. Strings are NUL-terminated. */
int fd_om_av_field(avro_value_t *rec, const char *name, avro_value_t *f);
int fd_om_av_long(avro_value_t *rec, const char *name, int64_t v);
int fd_om_av_double(avro_value_t *rec, const char *name, double v);
int fd_om_av_str(avro_value_t *rec, const char *name, const char *s);

/* snprintf into err (NULL or n == 0 accepted). */
void fd_om_fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
