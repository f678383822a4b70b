/*
 * codec_avro_schema.c - reader and writer schemas: loading, the compatibility
 * check, projection and resolution, the per-writer decoders, fd_avro_init /
 * fd_avro_free. Why it is built this way: see codec_avro.c.
 *
 * Thread: everything here runs on the thread that owns the codec.
 */
#include <avro.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/codec_avro_internal.h"

const char *const fd_avro_field_names[F__COUNT] = {
    "event_id", "user_id", "ts", "type", "item_id", "session_id", "price", "quantity", "category",
};
static const bool field_required[F__COUNT] = {true, true, true, true};

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
        if (strcmp(fd_avro_field_names[f], name) == 0)
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

/* Is s the canonical Event record (conf/schemas/event.avsc): exactly the
 * fields of fd_avro_field_names, in that order, with their types? Then messages in
 * it are decoded straight from the bytes (fd_avro_fast_decode) after the prescan,
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
        if (!name || !t || strcmp(name, fd_avro_field_names[f]) != 0)
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

/* Build the decoder for writer schema w (reference taken) read as the
 * codec's reader schema. wpath names the writer file in errors. */
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
        d->idx[f] = avro_schema_record_field_get_index(view_schema, fd_avro_field_names[f]);
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
        a->ridx[f] = avro_schema_record_field_get_index(r, fd_avro_field_names[f]);
        a->null_branch[f] = a->val_branch[f] = -1;
        if (a->ridx[f] < 0) {
            if (field_required[f]) {
                fd_codec_fail(errstr, errstr_size, FD_OK, "%s: reader schema has no field %s",
                              rpath, fd_avro_field_names[f]);
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
