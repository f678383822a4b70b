/*
 * codec_avro.c - plain and Confluent-framed Avro event bodies (Avro-C).
 *
 * Why it is built this way:
 *
 * - Avro-C's generic values are reused: one value per known writer schema,
 *   created in fd_codec_new, filled by avro_value_read for every message.
 *   That keeps the per-event cost at what Avro-C itself allocates (string
 *   copies) instead of building and tearing down a value tree each time.
 *
 * - Avro-C trusts length prefixes: a corrupt varint can make it malloc
 *   gigabytes for one string, it leaks the buffer when the read then fails,
 *   and it does not check enum indexes. So before Avro-C sees a message we
 *   walk it once ourselves against the writer schema (prescan): every
 *   varint is bounded, every string/bytes length and array count is checked
 *   against the bytes actually left, union and enum indexes are checked,
 *   nesting depth is capped, and the walk tells us where the record ends,
 *   which is how trailing garbage is detected. Only a message the prescan
 *   accepts is handed to avro_value_read, so Avro-C can never allocate more
 *   than the message size and never fails half way through a string.
 *
 * - Schema resolution (Confluent ids mapping to older writer schemas) uses
 *   Avro-C's resolved reader, which wraps a writer-schema value and presents
 *   it in the reader schema. Avro-C 1.11 has two gaps we work around at
 *   codec_new, never per message: it does not implement reader defaults
 *   (it refuses a reader field missing from the writer), and it crashes
 *   instead of returning an error on some incompatible pairs. So we check
 *   compatibility ourselves first (names, types, promotions, enum symbols),
 *   then resolve against a *projection* of the reader schema that leaves out
 *   the reader fields the writer lacks; those fields take the reader
 *   schema's defaults from a pre-built event template.
 *
 * Thread: everything here runs on the thread that owns the codec.
 */
#include <avro.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/codec_internal.h"

enum {
    F_EVENT_ID,
    F_USER_ID,
    F_TS,
    F_TYPE,
    F_ITEM_ID,
    F_SESSION_ID,
    F_PRICE,
    F_QUANTITY,
    F_CATEGORY,
    F__COUNT
};
static const char *const field_names[F__COUNT] = {
    "event_id", "user_id", "ts", "type", "item_id", "session_id", "price", "quantity", "category",
};
static const bool field_required[F__COUNT] = {true, true, true, true};

#define SCAN_MAX_DEPTH 32
#define ENUM_MAX       64

/* One writer schema the codec can read, with its reused values. */
typedef struct avro_dec {
    int32_t id;                   /* confluent id (plain avro: unused) */
    avro_schema_t wschema;        /* the bytes are in this schema */
    avro_value_iface_t *wclass;   /* generic class of wschema */
    avro_value_t wvalue;          /* filled by avro_value_read */
    avro_value_iface_t *resolver; /* NULL when wschema is the reader schema */
    avro_value_t rvalue;          /* resolved view of wvalue (reader names) */
    avro_value_t *view;           /* &wvalue or &rvalue */
    int idx[F__COUNT];            /* field index in the view, -1 = use tmpl */
    bool projected;               /* some reader fields missing: start from tmpl */
    bool fast;                    /* canonical layout: decode bytes directly */
    fd_event tmpl;                /* fd_event_init + reader defaults */
} avro_dec;

struct fd_avro_state {
    avro_schema_t rschema;
    char *rjson; /* reader schema text, for projections */
    avro_reader_t reader;
    avro_dec plain; /* writer == reader */
    avro_dec *ids;  /* confluent writer schemas */
    size_t n_ids;
    int type_map[ENUM_MAX]; /* reader enum index -> fd_event_type or -1 */
    int n_symbols;
    int type_rev[FD_EV__COUNT]; /* fd_event_type -> reader enum index */
    int ridx[F__COUNT];         /* field index in the reader schema */
    int null_branch[F__COUNT], val_branch[F__COUNT];
    /* encode */
    avro_value_iface_t *enc_class;
    avro_value_t enc_value;
    avro_writer_t writer;
    char *ebuf;
    size_t ecap;
};

/* ---- schema loading ---------------------------------------------------- */

static char *slurp(const char *path, size_t *len, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        free(buf);
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: read error", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int parse_schema(const char *path, const char *text, size_t len, avro_schema_t *out,
                        char *errstr, size_t errstr_size)
{
    if (avro_schema_from_json_length(text, len, out) != 0) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: invalid Avro schema: %s", path,
                      avro_strerror());
        return -1;
    }
    if (avro_typeof(*out) != AVRO_RECORD) {
        avro_schema_decref(*out);
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: top-level schema must be a record", path);
        return -1;
    }
    return 0;
}

static avro_schema_t deref(avro_schema_t s)
{
    while (s && avro_typeof(s) == AVRO_LINK)
        s = avro_schema_link_target(s);
    return s;
}

/*
 * Can data written with w be read as r by Avro-C's resolved reader? Stricter
 * than the Avro spec where Avro-C is weaker: enum symbols must be a prefix
 * of the reader's (Avro-C maps enums by index), a writer union must meet a
 * reader union, and reader record fields must all be in the writer (the
 * top-level record is projected before this is called).
 */
static int compat(avro_schema_t w, avro_schema_t r, int depth, char *why, size_t whysz)
{
    w = deref(w);
    r = deref(r);
    if (depth > SCAN_MAX_DEPTH) {
        snprintf(why, whysz, "schema nesting deeper than %d", SCAN_MAX_DEPTH);
        return -1;
    }
    avro_type_t tw = avro_typeof(w), tr = avro_typeof(r);
    if (tw == AVRO_UNION) {
        if (tr != AVRO_UNION) {
            snprintf(why, whysz, "writer union read as %s is not supported",
                     avro_schema_type_name(r));
            return -1;
        }
        for (size_t i = 0; i < avro_schema_union_size(w); i++)
            if (compat(avro_schema_union_branch(w, i), r, depth + 1, why, whysz) != 0)
                return -1;
        return 0;
    }
    if (tr == AVRO_UNION) {
        for (size_t i = 0; i < avro_schema_union_size(r); i++) {
            char tmp[8];
            if (compat(w, avro_schema_union_branch(r, i), depth + 1, tmp, sizeof tmp) == 0)
                return 0;
        }
        snprintf(why, whysz, "writer %s matches no branch of the reader union",
                 avro_schema_type_name(w));
        return -1;
    }
    if (tw != tr) {
        bool promo =
            (tw == AVRO_INT32 && (tr == AVRO_INT64 || tr == AVRO_FLOAT || tr == AVRO_DOUBLE)) ||
            (tw == AVRO_INT64 && (tr == AVRO_FLOAT || tr == AVRO_DOUBLE)) ||
            (tw == AVRO_FLOAT && tr == AVRO_DOUBLE);
        if (!promo) {
            snprintf(why, whysz, "writer %s cannot be read as %s", avro_schema_type_name(w),
                     avro_schema_type_name(r));
            return -1;
        }
        return 0;
    }
    switch (tw) {
    case AVRO_RECORD:
        if (strcmp(avro_schema_name(w), avro_schema_name(r)) != 0) {
            snprintf(why, whysz, "record %s cannot be read as %s", avro_schema_name(w),
                     avro_schema_name(r));
            return -1;
        }
        for (size_t i = 0; i < avro_schema_record_size(r); i++) {
            const char *name = avro_schema_record_field_name(r, (int)i);
            int wi = avro_schema_record_field_get_index(w, name);
            if (wi < 0) {
                snprintf(why, whysz, "field %s.%s missing from the writer", avro_schema_name(r),
                         name);
                return -1;
            }
            if (compat(avro_schema_record_field_get_by_index(w, wi),
                       avro_schema_record_field_get_by_index(r, (int)i), depth + 1, why,
                       whysz) != 0) {
                size_t l = strlen(why);
                char tmp[256];
                snprintf(tmp, sizeof tmp, "%.*s", (int)l, why);
                snprintf(why, whysz, "field %s: %s", name, tmp);
                return -1;
            }
        }
        return 0;
    case AVRO_ENUM: {
        if (strcmp(avro_schema_name(w), avro_schema_name(r)) != 0) {
            snprintf(why, whysz, "enum %s cannot be read as %s", avro_schema_name(w),
                     avro_schema_name(r));
            return -1;
        }
        size_t nw = avro_schema_enum_number_of_symbols(w);
        size_t nr = avro_schema_enum_number_of_symbols(r);
        for (size_t i = 0; i < nw; i++) {
            const char *sw = avro_schema_enum_get(w, (int)i);
            if (i >= nr || strcmp(sw, avro_schema_enum_get(r, (int)i)) != 0) {
                snprintf(why, whysz,
                         "enum %s: writer symbol %s is not at index %zu in the reader "
                         "(symbols must be a prefix of the reader's)",
                         avro_schema_name(w), sw, i);
                return -1;
            }
        }
        return 0;
    }
    case AVRO_FIXED:
        if (strcmp(avro_schema_name(w), avro_schema_name(r)) != 0 ||
            avro_schema_fixed_size(w) != avro_schema_fixed_size(r)) {
            snprintf(why, whysz, "fixed %s cannot be read as %s", avro_schema_name(w),
                     avro_schema_name(r));
            return -1;
        }
        return 0;
    case AVRO_ARRAY:
        return compat(avro_schema_array_items(w), avro_schema_array_items(r), depth + 1, why,
                      whysz);
    case AVRO_MAP:
        return compat(avro_schema_map_values(w), avro_schema_map_values(r), depth + 1, why, whysz);
    default:
        return 0;
    }
}

/* Apply a reader default (JSON) for a field the writer lacks to tmpl. */
static int apply_default(fd_event *t, int f, json_t *def)
{
    if (json_is_null(def))
        return 0; /* absent, as fd_event_init left it */
    switch (f) {
    case F_QUANTITY:
        if (!json_is_integer(def) || json_integer_value(def) < 1 ||
            json_integer_value(def) > FD_QUANTITY_MAX)
            return -1; /* an int32 cast of it would wrap */
        t->quantity = (int32_t)json_integer_value(def);
        return 0;
    case F_PRICE:
        if (!json_is_number(def))
            return -1;
        t->price = json_number_value(def);
        t->has_price = true;
        return 0;
    case F_ITEM_ID:
    case F_SESSION_ID:
    case F_CATEGORY: {
        if (!json_is_string(def) || json_string_length(def) > FD_ID_MAX)
            return -1;
        char *dst = f == F_ITEM_ID ? t->item_id : f == F_SESSION_ID ? t->session_id : t->category;
        memcpy(dst, json_string_value(def), json_string_length(def) + 1);
        if (f == F_ITEM_ID)
            t->has_item = true;
        else if (f == F_SESSION_ID)
            t->has_session = true;
        else
            t->has_category = true;
        return 0;
    }
    default:
        return 0; /* a field we do not map: nothing to default */
    }
}

static int field_id(const char *name)
{
    for (int f = 0; f < F__COUNT; f++)
        if (strcmp(field_names[f], name) == 0)
            return f;
    return -1;
}

static void dec_free(avro_dec *d)
{
    if (d->resolver) {
        avro_value_decref(&d->rvalue);
        avro_value_iface_decref(d->resolver);
    }
    if (d->wclass) {
        avro_value_decref(&d->wvalue);
        avro_value_iface_decref(d->wclass);
    }
    if (d->wschema)
        avro_schema_decref(d->wschema);
    memset(d, 0, sizeof *d);
}

/* Build the decoder for writer schema w (reference taken) read as the
 * codec's reader schema. wpath names the writer file in errors. */
/* Is s the canonical Event record (conf/schemas/event.avsc): exactly the
 * fields of field_names, in that order, with their types? Then messages in
 * it are decoded straight from the bytes (fast_decode) after the prescan,
 * without Avro-C's generic value (which allocates for every string: perf
 * showed it as the largest share of a shard's time). Any other writer
 * schema, and any resolution, goes through Avro-C. */
static bool canonical_layout(avro_schema_t s)
{
    /* >= 0: that type; -1: ["null","string"]; -2: ["null","double"] */
    static const int want[F__COUNT] = {AVRO_STRING, AVRO_STRING, AVRO_INT64, AVRO_ENUM, -1,
                                       -1,          -2,          AVRO_INT32, -1};
    s = deref(s);
    if (!s || !is_avro_record(s) || avro_schema_record_size(s) != F__COUNT)
        return false;
    for (int f = 0; f < F__COUNT; f++) {
        const char *name = avro_schema_record_field_name(s, f);
        avro_schema_t t = deref(avro_schema_record_field_get_by_index(s, f));
        if (!name || !t || strcmp(name, field_names[f]) != 0)
            return false;
        if (want[f] >= 0) {
            if ((int)avro_typeof(t) != want[f])
                return false;
            continue;
        }
        if (!is_avro_union(t) || avro_schema_union_size(t) != 2)
            return false;
        avro_schema_t b0 = deref(avro_schema_union_branch(t, 0));
        avro_schema_t b1 = deref(avro_schema_union_branch(t, 1));
        if (!b0 || !b1 || !is_avro_null(b0) ||
            (int)avro_typeof(b1) != (want[f] == -1 ? AVRO_STRING : AVRO_DOUBLE))
            return false;
    }
    return true;
}

static int dec_init(fd_avro_state *a, avro_dec *d, avro_schema_t w, const char *wpath,
                    const char *rpath, char *errstr, size_t errstr_size)
{
    char why[512];
    avro_schema_t view_schema = NULL;
    json_t *root = NULL;
    int rc = -1;

    d->wschema = avro_schema_incref(w);
    fd_event_init(&d->tmpl);
    for (int f = 0; f < F__COUNT; f++)
        d->idx[f] = -1;

    if (avro_schema_equal(w, a->rschema)) {
        view_schema = avro_schema_incref(a->rschema);
    } else {
        /* Project the reader schema onto the writer's fields. */
        json_error_t jerr;
        root = json_loads(a->rjson, 0, &jerr);
        json_t *fields = root ? json_object_get(root, "fields") : NULL;
        if (!json_is_array(fields)) {
            fd_codec_fail(errstr, errstr_size, FD_OK, "%s: cannot re-read fields", rpath);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(fields);) {
            json_t *fj = json_array_get(fields, i);
            const char *name = json_string_value(json_object_get(fj, "name"));
            if (!name || avro_schema_record_field_get_index(w, name) >= 0) {
                i++;
                continue;
            }
            json_t *def = json_object_get(fj, "default");
            int f = field_id(name);
            if (!def || (f >= 0 && apply_default(&d->tmpl, f, def) != 0)) {
                fd_codec_fail(errstr, errstr_size, FD_OK,
                              "%s: writer schema lacks field %s, which has no usable default "
                              "in reader schema %s",
                              wpath, name, rpath);
                goto out;
            }
            d->projected = true;
            json_array_remove(fields, i);
        }
        char *text = json_dumps(root, JSON_COMPACT);
        if (!text) {
            fd_codec_fail(errstr, errstr_size, FD_OK, "%s: out of memory", wpath);
            goto out;
        }
        int prc = avro_schema_from_json_length(text, strlen(text), &view_schema);
        free(text);
        if (prc != 0) {
            view_schema = NULL;
            fd_codec_fail(errstr, errstr_size, FD_OK, "%s: cannot project reader schema: %s", rpath,
                          avro_strerror());
            goto out;
        }
        if (compat(w, view_schema, 0, why, sizeof why) != 0) {
            fd_codec_fail(errstr, errstr_size, FD_OK,
                          "%s: writer schema is incompatible with reader schema %s: %s", wpath,
                          rpath, why);
            goto out;
        }
    }

    d->wclass = avro_generic_class_from_schema(w);
    if (!d->wclass || avro_generic_value_new(d->wclass, &d->wvalue) != 0) {
        if (d->wclass)
            avro_value_iface_decref(d->wclass);
        d->wclass = NULL;
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: Avro-C cannot build a value: %s", wpath,
                      avro_strerror());
        goto out;
    }
    d->view = &d->wvalue;
    if (!avro_schema_equal(w, a->rschema)) {
        d->resolver = avro_resolved_reader_new(w, view_schema);
        if (!d->resolver) {
            fd_codec_fail(errstr, errstr_size, FD_OK, "%s: cannot resolve against %s: %s", wpath,
                          rpath, avro_strerror());
            goto out;
        }
        if (avro_resolved_reader_new_value(d->resolver, &d->rvalue) != 0) {
            avro_value_iface_decref(d->resolver);
            d->resolver = NULL;
            fd_codec_fail(errstr, errstr_size, FD_OK, "%s: cannot resolve: %s", wpath,
                          avro_strerror());
            goto out;
        }
        avro_resolved_reader_set_source(&d->rvalue, &d->wvalue);
        d->view = &d->rvalue;
    }
    for (int f = 0; f < F__COUNT; f++)
        d->idx[f] = avro_schema_record_field_get_index(view_schema, field_names[f]);
    d->fast = !d->resolver && canonical_layout(w);
    rc = 0;
out:
    if (view_schema)
        avro_schema_decref(view_schema);
    json_decref(root);
    return rc;
}

/* Reader-schema facts used by every decoder and by encode. */
static int reader_init(fd_avro_state *a, const char *rpath, char *errstr, size_t errstr_size)
{
    avro_schema_t r = a->rschema;
    for (int f = 0; f < F__COUNT; f++) {
        a->ridx[f] = avro_schema_record_field_get_index(r, field_names[f]);
        a->null_branch[f] = a->val_branch[f] = -1;
        if (a->ridx[f] < 0) {
            if (field_required[f]) {
                fd_codec_fail(errstr, errstr_size, FD_OK, "%s: reader schema has no field %s",
                              rpath, field_names[f]);
                return -1;
            }
            continue;
        }
        avro_schema_t fs = deref(avro_schema_record_field_get_by_index(r, a->ridx[f]));
        if (avro_typeof(fs) == AVRO_UNION) {
            for (size_t i = 0; i < avro_schema_union_size(fs); i++) {
                avro_type_t bt = avro_typeof(deref(avro_schema_union_branch(fs, i)));
                if (bt == AVRO_NULL)
                    a->null_branch[f] = (int)i;
                else if (a->val_branch[f] < 0)
                    a->val_branch[f] = (int)i;
            }
        }
    }
    avro_schema_t et = deref(avro_schema_record_field_get_by_index(r, a->ridx[F_TYPE]));
    if (avro_typeof(et) != AVRO_ENUM) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: field type must be an enum", rpath);
        return -1;
    }
    a->n_symbols = (int)avro_schema_enum_number_of_symbols(et);
    if (a->n_symbols > ENUM_MAX)
        a->n_symbols = ENUM_MAX;
    for (int t = 0; t < FD_EV__COUNT; t++)
        a->type_rev[t] = -1;
    for (int i = 0; i < a->n_symbols; i++) {
        const char *s = avro_schema_enum_get(et, i);
        int t = strcasecmp(s, "CLICK") == 0 || strcasecmp(s, "VIEW") == 0 ? FD_EV_CLICK
                : strcasecmp(s, "CART") == 0                              ? FD_EV_CART
                : strcasecmp(s, "PURCHASE") == 0                          ? FD_EV_PURCHASE
                                                                          : -1;
        a->type_map[i] = t;
        if (t >= 0 && a->type_rev[t] < 0 && strcasecmp(s, "VIEW") != 0)
            a->type_rev[t] = i;
    }
    return 0;
}

int fd_avro_init(fd_codec *c, const fd_codec_opts *opts, char *errstr, size_t errstr_size)
{
    const char *rpath = opts->schema_path ? opts->schema_path : "conf/schemas/event.avsc";
    fd_avro_state *a = calloc(1, sizeof *a);
    if (!a) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "codec: out of memory");
        return -1;
    }
    c->avro = a;
    size_t len;
    a->rjson = slurp(rpath, &len, errstr, errstr_size);
    if (!a->rjson || parse_schema(rpath, a->rjson, len, &a->rschema, errstr, errstr_size) != 0)
        return -1;
    if (reader_init(a, rpath, errstr, errstr_size) != 0)
        return -1;
    a->reader = avro_reader_memory("", 0);
    a->writer = avro_writer_memory("", 0);
    a->enc_class = avro_generic_class_from_schema(a->rschema);
    if (!a->reader || !a->writer || !a->enc_class ||
        avro_generic_value_new(a->enc_class, &a->enc_value) != 0) {
        if (a->enc_class)
            avro_value_iface_decref(a->enc_class);
        a->enc_class = NULL;
        fd_codec_fail(errstr, errstr_size, FD_OK, "%s: Avro-C setup failed: %s", rpath,
                      avro_strerror());
        return -1;
    }
    if (dec_init(a, &a->plain, a->rschema, rpath, rpath, errstr, errstr_size) != 0)
        return -1;
    if (opts->format != FD_FMT_CONFLUENT_AVRO || opts->n_schema_ids == 0)
        return 0;
    a->ids = calloc(opts->n_schema_ids, sizeof *a->ids);
    if (!a->ids) {
        fd_codec_fail(errstr, errstr_size, FD_OK, "codec: out of memory");
        return -1;
    }
    for (size_t i = 0; i < opts->n_schema_ids; i++) {
        const fd_schema_ref *ref = &opts->schema_ids[i];
        for (size_t j = 0; j < i; j++)
            if (a->ids[j].id == ref->id) {
                fd_codec_fail(errstr, errstr_size, FD_OK, "%s: schema id %d is listed twice",
                              ref->path ? ref->path : "?", (int)ref->id);
                return -1;
            }
        if (!ref->path) {
            fd_codec_fail(errstr, errstr_size, FD_OK, "schema id %d: no path", (int)ref->id);
            return -1;
        }
        char *text = slurp(ref->path, &len, errstr, errstr_size);
        avro_schema_t w = NULL;
        int prc = text ? parse_schema(ref->path, text, len, &w, errstr, errstr_size) : -1;
        free(text);
        if (prc != 0)
            return -1;
        a->ids[i].id = ref->id;
        prc = dec_init(a, &a->ids[i], w, ref->path, rpath, errstr, errstr_size);
        avro_schema_decref(w);
        a->n_ids = i + 1; /* dec_free must see this one */
        if (prc != 0)
            return -1;
    }
    return 0;
}

void fd_avro_free(fd_avro_state *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_ids; i++)
        dec_free(&a->ids[i]);
    free(a->ids);
    dec_free(&a->plain);
    if (a->enc_class) {
        avro_value_decref(&a->enc_value);
        avro_value_iface_decref(a->enc_class);
    }
    if (a->reader)
        avro_reader_free(a->reader);
    if (a->writer)
        avro_writer_free(a->writer);
    if (a->rschema)
        avro_schema_decref(a->rschema);
    free(a->rjson);
    free(a->ebuf);
    free(a);
}

/* ---- prescan ------------------------------------------------------------ */

typedef struct scan {
    const uint8_t *p;
    size_t n, pos, base; /* base: offset of the body in the message */
    const char *field;   /* top-level field being read */
    char *err;
    size_t errsz;
    fd_reject rej;
} scan;

static int scan_fail(scan *s, fd_reject r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int scan_fail(scan *s, fd_reject r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->rej = r;
    fd_codec_fail(s->err, s->errsz, r, "avro: %s%s%s at byte %zu", s->field ? s->field : "",
                  s->field ? ": " : "", msg, s->base + s->pos);
    return -1;
}

static int scan_varint(scan *s, int64_t *out, int maxbytes)
{
    uint64_t v = 0;
    for (int i = 0;; i++) {
        if (i == maxbytes)
            return scan_fail(s, FD_REJ_AVRO, "varint longer than %d bytes", maxbytes);
        if (s->pos >= s->n)
            return scan_fail(s, FD_REJ_AVRO, "truncated varint");
        uint8_t b = s->p[s->pos++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return 0;
}

static int scan_skip(scan *s, int64_t len, const char *what)
{
    if (len < 0)
        return scan_fail(s, FD_REJ_AVRO, "negative %s length %lld", what, (long long)len);
    if ((uint64_t)len > s->n - s->pos)
        return scan_fail(s, FD_REJ_AVRO, "%s of %lld bytes but only %zu bytes left (truncated)",
                         what, (long long)len, s->n - s->pos);
    s->pos += (size_t)len;
    return 0;
}

static int scan_value(scan *s, avro_schema_t sc, int depth)
{
    int64_t v = 0;
    sc = deref(sc);
    if (depth > SCAN_MAX_DEPTH)
        return scan_fail(s, FD_REJ_AVRO, "nested deeper than %d", SCAN_MAX_DEPTH);
    switch (avro_typeof(sc)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        return scan_skip(s, 1, "boolean");
    case AVRO_INT32:
        if (scan_varint(s, &v, 5) != 0)
            return -1;
        if (v < INT32_MIN || v > INT32_MAX)
            return scan_fail(s, FD_REJ_AVRO, "int %lld out of range", (long long)v);
        return 0;
    case AVRO_INT64:
        return scan_varint(s, &v, 10);
    case AVRO_FLOAT:
        return scan_skip(s, 4, "float");
    case AVRO_DOUBLE:
        return scan_skip(s, 8, "double");
    case AVRO_STRING:
    case AVRO_BYTES:
        if (scan_varint(s, &v, 10) != 0)
            return -1;
        return scan_skip(s, v, avro_typeof(sc) == AVRO_STRING ? "string" : "bytes");
    case AVRO_FIXED:
        return scan_skip(s, avro_schema_fixed_size(sc), "fixed");
    case AVRO_ENUM: {
        size_t at = s->pos;
        if (scan_varint(s, &v, 5) != 0)
            return -1;
        int64_t nsym = (int64_t)avro_schema_enum_number_of_symbols(sc);
        if (v < 0 || v >= nsym) {
            s->pos = at;
            return scan_fail(
                s, s->field && strcmp(s->field, "type") == 0 ? FD_REJ_UNKNOWN_TYPE : FD_REJ_AVRO,
                "enum index %lld out of range (%lld symbols)", (long long)v, (long long)nsym);
        }
        return 0;
    }
    case AVRO_UNION: {
        size_t at = s->pos;
        if (scan_varint(s, &v, 10) != 0)
            return -1;
        if (v < 0 || v >= (int64_t)avro_schema_union_size(sc)) {
            s->pos = at;
            return scan_fail(s, FD_REJ_AVRO, "union branch %lld out of range (%zu branches)",
                             (long long)v, avro_schema_union_size(sc));
        }
        return scan_value(s, avro_schema_union_branch(sc, v), depth + 1);
    }
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(sc); i++) {
            if (depth == 0)
                s->field = avro_schema_record_field_name(sc, (int)i);
            if (scan_value(s, avro_schema_record_field_get_by_index(sc, (int)i), depth + 1) != 0)
                return -1;
        }
        if (depth == 0)
            s->field = NULL;
        return 0;
    case AVRO_ARRAY:
    case AVRO_MAP:
        for (;;) {
            if (scan_varint(s, &v, 10) != 0)
                return -1;
            if (v == 0)
                return 0;
            if (v < 0) {
                int64_t bytes;
                if (v == INT64_MIN || scan_varint(s, &bytes, 10) != 0)
                    return v == INT64_MIN ? scan_fail(s, FD_REJ_AVRO, "bad block count") : -1;
                v = -v;
            }
            /* every item takes at least one byte, except nulls: cap those too */
            if ((uint64_t)v > s->n - s->pos + 1)
                return scan_fail(s, FD_REJ_AVRO, "block of %lld items but only %zu bytes left",
                                 (long long)v, s->n - s->pos);
            for (int64_t i = 0; i < v; i++) {
                if (avro_typeof(sc) == AVRO_MAP) {
                    int64_t kl = 0;
                    if (scan_varint(s, &kl, 10) != 0 || scan_skip(s, kl, "map key") != 0)
                        return -1;
                    if (scan_value(s, avro_schema_map_values(sc), depth + 1) != 0)
                        return -1;
                } else if (scan_value(s, avro_schema_array_items(sc), depth + 1) != 0) {
                    return -1;
                }
            }
        }
    default:
        return scan_fail(s, FD_REJ_AVRO, "unsupported schema type");
    }
}

/* ---- decode ------------------------------------------------------------- */

static const char *avro_type_str(avro_type_t t)
{
    switch (t) {
    case AVRO_STRING:
        return "string";
    case AVRO_BYTES:
        return "bytes";
    case AVRO_INT32:
        return "int";
    case AVRO_INT64:
        return "long";
    case AVRO_FLOAT:
        return "float";
    case AVRO_DOUBLE:
        return "double";
    case AVRO_BOOLEAN:
        return "boolean";
    case AVRO_NULL:
        return "null";
    case AVRO_RECORD:
        return "record";
    case AVRO_ENUM:
        return "enum";
    case AVRO_FIXED:
        return "fixed";
    case AVRO_MAP:
        return "map";
    case AVRO_ARRAY:
        return "array";
    case AVRO_UNION:
        return "union";
    default:
        return "link";
    }
}

/* Field f of the view, with a union unwrapped to its current branch. */
static int get_field(avro_dec *d, int f, avro_value_t *out, avro_type_t *t)
{
    avro_value_t v;
    if (avro_value_get_by_index(d->view, d->idx[f], &v, NULL) != 0)
        return -1;
    *t = avro_value_get_type(&v);
    if (*t == AVRO_UNION) {
        if (avro_value_get_current_branch(&v, out) != 0)
            return -1;
        *t = avro_value_get_type(out);
        return 0;
    }
    *out = v;
    return 0;
}

static fd_reject get_string(avro_dec *d, int f, char *dst, bool *present, char *errstr,
                            size_t errstr_size)
{
    avro_value_t v;
    avro_type_t t;
    if (get_field(d, f, &v, &t) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s", field_names[f],
                             avro_strerror());
    if (t == AVRO_NULL && present) {
        *present = false;
        dst[0] = '\0';
        return FD_OK;
    }
    if (t != AVRO_STRING)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE,
                             "%s: Avro %s where a string was expected", field_names[f],
                             avro_type_str(t));
    const char *s = "";
    size_t size = 0;
    if (avro_value_get_string(&v, &s, &size) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s", field_names[f],
                             avro_strerror());
    fd_reject r =
        fd_codec_copy_id(dst, field_names[f], s, size ? size - 1 : 0, errstr, errstr_size);
    if (r == FD_OK && present)
        *present = true;
    return r;
}

static fd_reject get_number(avro_dec *d, int f, double *dv, int64_t *lv, bool *present,
                            char *errstr, size_t errstr_size)
{
    avro_value_t v;
    avro_type_t t;
    if (get_field(d, f, &v, &t) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s", field_names[f],
                             avro_strerror());
    *present = true;
    int rc = 0;
    switch (t) {
    case AVRO_NULL:
        *present = false;
        return FD_OK;
    case AVRO_INT32: {
        int32_t i = 0;
        rc = avro_value_get_int(&v, &i);
        *lv = i;
        *dv = i;
        break;
    }
    case AVRO_INT64:
        rc = avro_value_get_long(&v, lv);
        *dv = (double)*lv;
        break;
    case AVRO_FLOAT: {
        float x = 0;
        rc = avro_value_get_float(&v, &x);
        *dv = x;
        *lv = 0;
        break;
    }
    case AVRO_DOUBLE:
        rc = avro_value_get_double(&v, dv);
        *lv = 0;
        break;
    default:
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE,
                             "%s: Avro %s where a number was expected", field_names[f],
                             avro_type_str(t));
    }
    if (rc != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: %s", field_names[f],
                             avro_strerror());
    if (f != F_PRICE && (t == AVRO_FLOAT || t == AVRO_DOUBLE))
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE,
                             "%s: Avro %s where an integer was expected", field_names[f],
                             avro_type_str(t));
    return FD_OK;
}

/* The prescan accepted the bytes for the canonical layout: every length is
 * within the message, every union index valid, every int in range. Read
 * them in field order; the checks after decoding are those of decode_body. */
static int64_t fast_varint(const uint8_t *p, size_t n, size_t *pos)
{
    uint64_t v = 0;
    for (int i = 0; i < 10 && *pos < n; i++) {
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    return (int64_t)((v >> 1) ^ (~(v & 1) + 1));
}

/* An Avro double (8 bytes little-endian) at *pos; false when truncated. */
static bool read_double(const uint8_t *p, size_t n, size_t *pos, double *out)
{
    if (n - *pos < 8)
        return false;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--)
        bits = bits << 8 | p[*pos + (size_t)i];
    *pos += 8;
    memcpy(out, &bits, sizeof *out);
    return true;
}

static fd_reject fast_string(const uint8_t *p, size_t n, size_t *pos, int f, char *dst,
                             char *errstr, size_t errstr_size)
{
    int64_t len = fast_varint(p, n, pos);
    if (len < 0 || (uint64_t)len > n - *pos) /* cannot pass the prescan; kept for safety */
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s: bad length",
                             field_names[f]);
    fd_reject r = fd_codec_copy_id(dst, field_names[f], (const char *)p + *pos, (size_t)len, errstr,
                                   errstr_size);
    *pos += (size_t)len;
    return r;
}

static fd_reject fast_opt_string(const uint8_t *p, size_t n, size_t *pos, int f, char *dst,
                                 bool *present, char *errstr, size_t errstr_size)
{
    if (fast_varint(p, n, pos) == 0) {
        *present = false;
        dst[0] = '\0';
        return FD_OK;
    }
    fd_reject r = fast_string(p, n, pos, f, dst, errstr, errstr_size);
    *present = r == FD_OK;
    return r;
}

static fd_reject fast_decode(fd_avro_state *a, const uint8_t *p, size_t n, fd_event *ev,
                             char *errstr, size_t errstr_size)
{
    size_t pos = 0;
    fd_reject r;
    if ((r = fast_string(p, n, &pos, F_EVENT_ID, ev->event_id, errstr, errstr_size)) ||
        (r = fast_string(p, n, &pos, F_USER_ID, ev->user_id, errstr, errstr_size)))
        return r;
    ev->ts_ms = fast_varint(p, n, &pos);
    int64_t sym = fast_varint(p, n, &pos);
    if (sym < 0 || sym >= a->n_symbols || a->type_map[sym] < 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_TYPE,
                             "type: enum index %d is not click, cart or purchase", (int)sym);
    ev->type = (uint8_t)a->type_map[sym];
    if ((r = fast_opt_string(p, n, &pos, F_ITEM_ID, ev->item_id, &ev->has_item, errstr,
                             errstr_size)) ||
        (r = fast_opt_string(p, n, &pos, F_SESSION_ID, ev->session_id, &ev->has_session, errstr,
                             errstr_size)))
        return r;
    if (fast_varint(p, n, &pos) == 1) {
        if (!read_double(p, n, &pos, &ev->price))
            return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: price: truncated");
        ev->has_price = true;
    } else {
        ev->has_price = false;
        ev->price = 0;
    }
    int64_t q = fast_varint(p, n, &pos);
    /* category before the quantity check: the same order as decode_body */
    if ((r = fast_opt_string(p, n, &pos, F_CATEGORY, ev->category, &ev->has_category, errstr,
                             errstr_size)))
        return r;
    if (q < 1 || q > FD_QUANTITY_MAX)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                             "quantity: %lld is not a valid quantity (must be 1..%d)", (long long)q,
                             FD_QUANTITY_MAX);
    ev->quantity = (int32_t)q;
    return FD_OK;
}

/* The common case in one pass, without the schema walk of the prescan:
 * a well-formed record of the canonical layout that the checks below
 * accept. Varints are read with the prescan's length limits, lengths and
 * union indices checked as it checks them. Returns true with *ev filled
 * exactly as prescan + fast_decode would; false, with *ev in an unspecified
 * state, for anything else (malformed, truncated, trailing bytes, a reject),
 * which the caller then decodes again the long way for the exact reason. */
static bool strict_varint(const uint8_t *p, size_t n, size_t *pos, int maxbytes, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < maxbytes; i++) {
        if (*pos >= n)
            return false;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
            return true;
        }
    }
    return false;
}

static bool strict_string(const uint8_t *p, size_t n, size_t *pos, char *dst)
{
    int64_t len;
    if (!strict_varint(p, n, pos, 10, &len) || len < 0 || (uint64_t)len > n - *pos ||
        len > FD_ID_MAX || (len && memchr(p + *pos, '\0', (size_t)len)))
        return false;
    memcpy(dst, p + *pos, (size_t)len);
    dst[len] = '\0';
    *pos += (size_t)len;
    return true;
}

static bool strict_opt_string(const uint8_t *p, size_t n, size_t *pos, char *dst, bool *present)
{
    int64_t branch;
    if (!strict_varint(p, n, pos, 10, &branch) || (branch != 0 && branch != 1))
        return false;
    *present = branch == 1;
    if (!*present) {
        dst[0] = '\0';
        return true;
    }
    return strict_string(p, n, pos, dst);
}

static bool strict_decode(const fd_avro_state *a, const uint8_t *p, size_t n, fd_event *ev)
{
    size_t pos = 0;
    int64_t v;
    if (!strict_string(p, n, &pos, ev->event_id) || !strict_string(p, n, &pos, ev->user_id) ||
        !strict_varint(p, n, &pos, 10, &ev->ts_ms) || !strict_varint(p, n, &pos, 5, &v) || v < 0 ||
        v >= a->n_symbols || a->type_map[v] < 0)
        return false;
    ev->type = (uint8_t)a->type_map[v];
    if (!strict_opt_string(p, n, &pos, ev->item_id, &ev->has_item) ||
        !strict_opt_string(p, n, &pos, ev->session_id, &ev->has_session) ||
        !strict_varint(p, n, &pos, 10, &v) || (v != 0 && v != 1))
        return false;
    if (v == 1) {
        if (!read_double(p, n, &pos, &ev->price))
            return false;
        ev->has_price = true;
    } else {
        ev->has_price = false;
        ev->price = 0;
    }
    if (!strict_varint(p, n, &pos, 5, &v) || v < 1 || v > FD_QUANTITY_MAX)
        return false;
    ev->quantity = (int32_t)v;
    return strict_opt_string(p, n, &pos, ev->category, &ev->has_category) && pos == n;
}

static fd_reject decode_body(fd_codec *c, avro_dec *d, const uint8_t *p, size_t n, size_t base,
                             fd_event *ev, char *errstr, size_t errstr_size)
{
    fd_avro_state *a = c->avro;
    if (d->fast && c->fast_path) {
        if (strict_decode(a, p, n, ev))
            return FD_OK;
        /* Not the common case: start again from a clean event for the
         * prescan and its exact reason. */
        fd_event_init(ev);
    }
    scan s = {.p = p, .n = n, .base = base, .err = errstr, .errsz = errstr_size};
    if (scan_value(&s, d->wschema, 0) != 0)
        return s.rej;
    if (s.pos != n)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO,
                             "avro: %zu trailing bytes after the record (record ends at byte "
                             "%zu of %zu)",
                             n - s.pos, base + s.pos, base + n);
    if (d->fast && c->fast_path)
        return fast_decode(a, p, n, ev, errstr, errstr_size);
    avro_reader_memory_set_source(a->reader, (const char *)p, (int64_t)n);
    if (avro_value_read(a->reader, &d->wvalue) != 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO, "avro: %s", avro_strerror());
    if (d->projected)
        *ev = d->tmpl;

    fd_reject r;
    if ((r = get_string(d, F_EVENT_ID, ev->event_id, NULL, errstr, errstr_size)) ||
        (r = get_string(d, F_USER_ID, ev->user_id, NULL, errstr, errstr_size)))
        return r;
    double dv;
    int64_t lv;
    bool present;
    if ((r = get_number(d, F_TS, &dv, &lv, &present, errstr, errstr_size)))
        return r;
    if (!present)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_MISSING, "ts: null");
    ev->ts_ms = lv;

    avro_value_t tv;
    avro_type_t tt;
    int sym = -1;
    if (get_field(d, F_TYPE, &tv, &tt) != 0 || tt != AVRO_ENUM || avro_value_get_enum(&tv, &sym))
        return fd_codec_fail(errstr, errstr_size, FD_REJ_FIELD_TYPE, "type: not an Avro enum");
    if (sym < 0 || sym >= a->n_symbols || a->type_map[sym] < 0)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_TYPE,
                             "type: enum index %d is not click, cart or purchase", sym);
    ev->type = (uint8_t)a->type_map[sym];

    if (d->idx[F_ITEM_ID] >= 0 &&
        (r = get_string(d, F_ITEM_ID, ev->item_id, &ev->has_item, errstr, errstr_size)))
        return r;
    if (d->idx[F_SESSION_ID] >= 0 &&
        (r = get_string(d, F_SESSION_ID, ev->session_id, &ev->has_session, errstr, errstr_size)))
        return r;
    if (d->idx[F_CATEGORY] >= 0 &&
        (r = get_string(d, F_CATEGORY, ev->category, &ev->has_category, errstr, errstr_size)))
        return r;
    if (d->idx[F_PRICE] >= 0) {
        if ((r = get_number(d, F_PRICE, &dv, &lv, &present, errstr, errstr_size)))
            return r;
        ev->has_price = present;
        ev->price = present ? dv : 0;
    }
    if (d->idx[F_QUANTITY] >= 0) {
        if ((r = get_number(d, F_QUANTITY, &dv, &lv, &present, errstr, errstr_size)))
            return r;
        if (present) {
            if (lv < 1 || lv > FD_QUANTITY_MAX) /* before the cast to int32 */
                return fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_QUANTITY,
                                     "quantity: %lld is not a valid quantity (must be 1..%d)",
                                     (long long)lv, FD_QUANTITY_MAX);
            ev->quantity = (int32_t)lv;
        }
    }
    return FD_OK;
}

/* The event time of a canonical-layout body without decoding the rest:
 * skip event_id and user_id, read ts. 0 ok, 1 not the canonical layout (or
 * the direct decoder is off), -1 malformed. */
static int peek_body(const fd_codec *c, const avro_dec *d, const uint8_t *p, size_t n, int64_t *ts)
{
    if (!d->fast || !c->fast_path)
        return 1;
    size_t pos = 0;
    for (int f = 0; f < 2; f++) {
        if (pos >= n)
            return -1;
        int64_t len = fast_varint(p, n, &pos);
        if (len < 0 || (uint64_t)len > n - pos)
            return -1;
        pos += (size_t)len;
    }
    if (pos >= n)
        return -1;
    *ts = fast_varint(p, n, &pos);
    return 0;
}

int fd_avro_peek_ts(const fd_codec *c, const uint8_t *p, size_t n, int64_t *ts)
{
    const fd_avro_state *a = c->avro;
    if (c->format == FD_FMT_AVRO)
        return peek_body(c, &a->plain, p, n, ts);
    if (n < 5 || p[0] != 0x00)
        return -1;
    int32_t id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
                           (uint32_t)p[4]);
    for (size_t i = 0; i < a->n_ids; i++)
        if (a->ids[i].id == id)
            return peek_body(c, &a->ids[i], p + 5, n - 5, ts);
    return -1;
}

fd_reject fd_avro_decode(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev, char *errstr,
                         size_t errstr_size)
{
    return decode_body(c, &c->avro->plain, p, n, 0, ev, errstr, errstr_size);
}

fd_reject fd_avro_decode_confluent(fd_codec *c, const uint8_t *p, size_t n, fd_event *ev,
                                   char *errstr, size_t errstr_size)
{
    if (n >= 1 && p[0] != 0x00)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_BAD_MAGIC,
                             "confluent: byte 0 is 0x%02x, expected 0x00", p[0]);
    if (n < 5)
        return fd_codec_fail(errstr, errstr_size, FD_REJ_AVRO,
                             "confluent: truncated header (%zu bytes, need 5)", n);
    int32_t id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
                           (uint32_t)p[4]);
    fd_avro_state *a = c->avro;
    for (size_t i = 0; i < a->n_ids; i++)
        if (a->ids[i].id == id)
            return decode_body(c, &a->ids[i], p + 5, n - 5, 5, ev, errstr, errstr_size);
    return fd_codec_fail(errstr, errstr_size, FD_REJ_UNKNOWN_SCHEMA,
                         "confluent: schema id %d (bytes 1..4) is not in input.schema_ids",
                         (int)id);
}

/* ---- encode ------------------------------------------------------------- */

static int set_string(avro_value_t *rec, int idx, const char *s)
{
    avro_value_t f;
    if (avro_value_get_by_index(rec, idx, &f, NULL) != 0)
        return -1;
    return avro_value_set_string_len(&f, s, strlen(s) + 1);
}

static int set_optional(fd_avro_state *a, int fld, bool present, const char *s, double d)
{
    if (a->ridx[fld] < 0)
        return 0;
    avro_value_t f, b;
    if (avro_value_get_by_index(&a->enc_value, a->ridx[fld], &f, NULL) != 0)
        return -1;
    if (a->val_branch[fld] < 0) /* not a union: plain field */
        b = f;
    else if (!present)
        return a->null_branch[fld] < 0 ? -1
                                       : (avro_value_set_branch(&f, a->null_branch[fld], &b) ||
                                          avro_value_set_null(&b));
    else if (avro_value_set_branch(&f, a->val_branch[fld], &b) != 0)
        return -1;
    if (s)
        return avro_value_set_string_len(&b, s, strlen(s) + 1);
    return avro_value_set_double(&b, d);
}

/* See codec.h. Output lives in a->ebuf until the next call. */
int fd_avro_encode(fd_codec *c, const fd_event *ev, int framed, const void **out, size_t *out_len)
{
    fd_avro_state *a = c->avro;
    avro_value_t *v = &a->enc_value;
    avro_value_t f;
    if (ev->type >= FD_EV__COUNT || a->type_rev[ev->type] < 0)
        return -1;
    if (set_string(v, a->ridx[F_EVENT_ID], ev->event_id) ||
        set_string(v, a->ridx[F_USER_ID], ev->user_id) ||
        avro_value_get_by_index(v, a->ridx[F_TS], &f, NULL) || avro_value_set_long(&f, ev->ts_ms) ||
        avro_value_get_by_index(v, a->ridx[F_TYPE], &f, NULL) ||
        avro_value_set_enum(&f, a->type_rev[ev->type]))
        return -1;
    if (set_optional(a, F_ITEM_ID, ev->has_item, ev->item_id, 0) ||
        set_optional(a, F_SESSION_ID, ev->has_session, ev->session_id, 0) ||
        set_optional(a, F_CATEGORY, ev->has_category, ev->category, 0) ||
        set_optional(a, F_PRICE, ev->has_price, NULL, ev->price))
        return -1;
    if (a->ridx[F_QUANTITY] >= 0 && (avro_value_get_by_index(v, a->ridx[F_QUANTITY], &f, NULL) ||
                                     avro_value_set_int(&f, ev->quantity)))
        return -1;
    size_t size = 0;
    if (avro_value_sizeof(v, &size) != 0)
        return -1;
    size_t need = size + 5;
    if (need > a->ecap) {
        size_t cap = a->ecap ? a->ecap : 256;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(a->ebuf, cap);
        if (!nb)
            return -1;
        a->ebuf = nb;
        a->ecap = cap;
    }
    size_t off = 0;
    if (framed) {
        uint32_t id = (uint32_t)c->encode_schema_id;
        a->ebuf[0] = 0;
        a->ebuf[1] = (char)(id >> 24);
        a->ebuf[2] = (char)(id >> 16);
        a->ebuf[3] = (char)(id >> 8);
        a->ebuf[4] = (char)id;
        off = 5;
    }
    avro_writer_memory_set_dest(a->writer, a->ebuf + off, (int64_t)(a->ecap - off));
    if (avro_value_write(a->writer, v) != 0)
        return -1;
    *out = a->ebuf;
    *out_len = off + (size_t)avro_writer_tell(a->writer);
    return 0;
}
