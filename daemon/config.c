/*
 * config.c - funneld's configuration loader, printer and documenter.
 *
 * Why it is built this way
 * ------------------------
 * Every key exists exactly once, in cf_keys[] below: its dotted name, type,
 * default, bounds, one-line description and offset into struct fd_config.
 * Loading, defaults, --print-config and docs/CONFIG.md are all loops over
 * that table, so a key cannot be documented but unparsed, parsed but never
 * defaulted, or printed under a different name than it is read. Adding a
 * key is one struct field plus one table row.
 *
 * The file is read with libyaml's *event* API rather than its document API.
 * Events carry the line and column of every key and value, which is what an
 * operator needs in an error ("FILE:LINE:COLUMN: key.path: what is wrong"),
 * and they let us stop at the first problem without building a tree. The
 * config has a fixed shape (sections of scalars, plus two flat maps), so the
 * walker never descends deeper than three levels whatever the input holds:
 * a deeply nested or huge document fails at its first unexpected node.
 * Aliases are rejected outright ("billion laughs" cannot expand), anchors
 * and tags are ignored.
 *
 * The loader is strict on purpose: unknown keys (with a "did you mean"
 * hint), duplicate keys, null values, wrong node kinds, out-of-range numbers
 * and malformed durations/sizes/URLs are errors, never warnings. A daemon
 * that starts with a typo'd key silently defaulted is worse than one that
 * refuses to start. Only the first error is reported; it is precise.
 *
 * Nothing here is global except the const table; the loader state lives on
 * the stack of fd_config_load_buffer(). The result is built in a scratch
 * struct and moved into the caller's only on success, so a failed load
 * leaves *cfg freed and zeroed.
 *
 * Relative paths (input.schema, input.schema_ids values,
 * kafka.metrics_schema, redis.password_file), written in the file or left at
 * their defaults, are resolved against the directory of the file, never the
 * working directory, so `--check-config` and the start agree from anywhere
 * (for a buffer: left as they are).
 */
#include "daemon/config_table.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CF_MAX_FILE_BYTES (1024 * 1024) /* a config bigger than this is a mistake */
#define CF_MAX_PATH       512           /* longest dotted key path we build */

/* ---------------------------------------------------------------- helpers */

static char **str_at(fd_config *cfg, const struct cf_key *k)
{
    return (char **)((char *)cfg + k->off);
}

static int *int_at(fd_config *cfg, size_t off)
{
    return (int *)((char *)cfg + off);
}

static int64_t *i64_at(fd_config *cfg, const struct cf_key *k)
{
    return (int64_t *)((char *)cfg + k->off);
}

/* Copy s for an error message: at most ~48 chars, non-printables as '?'. */
static void quote_val(char *dst, size_t size, const char *s)
{
    size_t j = 0, max = size > 52 ? 48 : size - 4;
    for (size_t i = 0; s[i] && j < max; i++)
        dst[j++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (s[j] && j == max)
        dst[j++] = '.', dst[j++] = '.', dst[j++] = '.';
    dst[j] = 0;
}

static bool enum_has(const char *vals, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = vals; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Nearest known key or section to path, or NULL. Writes into buf. */
static const char *suggest(const char *path, char *buf, size_t size)
{
    size_t best = SIZE_MAX;
    const char *last = strrchr(path, '.');
    last = last ? last + 1 : path;
    buf[0] = 0;
    for (size_t i = 0; i < cf_nkeys; i++) {
        const char *name = cf_keys[i].name;
        /* the key itself and each of its sections ("kafka") */
        for (const char *end = name; end;) {
            end = strchr(end + 1, '.');
            size_t len = end ? (size_t)(end - name) : strlen(name);
            char cand[CF_MAX_PATH];
            if (len >= sizeof cand)
                break;
            memcpy(cand, name, len);
            cand[len] = 0;
            size_t d = edit_distance(path, cand);
            size_t limit = len / 4 > 2 ? len / 4 : 2;
            if (d <= limit && d < best) {
                best = d;
                snprintf(buf, size, "%s", cand);
            }
        }
    }
    if (!buf[0]) {
        /* right key, wrong section: "kafka.url" -> "redis.url" */
        for (size_t i = 0; i < cf_nkeys; i++) {
            const char *kl = strrchr(cf_keys[i].name, '.');
            if (kl && strcmp(kl + 1, last) == 0) {
                snprintf(buf, size, "%s", cf_keys[i].name);
                break;
            }
        }
    }
    return buf[0] ? buf : NULL;
}

/* ---------------------------------------------------------------- loader */

struct loader {
    fd_config *cfg;
    const char *name;    /* FILE in messages */
    const char *basedir; /* NULL: leave relative paths as they are */
    const char *buf;
    size_t len;
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev;
    bool set[CF_MAX_KEYS];
    yaml_mark_t mark[CF_MAX_KEYS]; /* where each key's value was, if set */
    char *errstr;
    size_t errstr_size;
    bool failed;
};

static int fail(struct loader *ld, yaml_mark_t m, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct loader *ld, yaml_mark_t m, const char *path, const char *fmt, ...)
{
    if (ld->failed)
        return -1;
    ld->failed = true;
    if (!ld->errstr || ld->errstr_size == 0)
        return -1;
    int n = snprintf(ld->errstr, ld->errstr_size, "%s:%zu:%zu: %s: ", ld->name, m.line + 1,
                     m.column + 1, path && *path ? path : "-");
    if (n >= 0 && (size_t)n < ld->errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->errstr + n, ld->errstr_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* A message may quote a value: never a URL's credentials. */
    char *copy = strdup(ld->errstr);
    if (copy) {
        fd_config_redact_urls(copy, ld->errstr, ld->errstr_size);
        free(copy);
    }
    return -1;
}

static int oom(struct loader *ld, yaml_mark_t m, const char *path)
{
    return fail(ld, m, path, "out of memory");
}

/* Advance to the next event; a parser error becomes a syntax error. */
static int next(struct loader *ld, const char *path)
{
    if (ld->have_ev) {
        yaml_event_delete(&ld->ev);
        ld->have_ev = false;
    }
    if (!yaml_parser_parse(&ld->parser, &ld->ev)) {
        yaml_parser_t *p = &ld->parser;
        yaml_mark_t m = p->problem_mark;
        if (p->error == YAML_READER_ERROR) {
            /* the reader reports a byte offset, not a mark */
            memset(&m, 0, sizeof m);
            for (size_t i = 0; i < p->problem_offset && i < ld->len; i++) {
                if (ld->buf[i] == '\n')
                    m.line++, m.column = 0;
                else
                    m.column++;
            }
        }
        if (p->error == YAML_MEMORY_ERROR)
            return oom(ld, m, path);
        if (p->context)
            return fail(ld, m, path, "YAML syntax error: %s %s", p->problem ? p->problem : "?",
                        p->context);
        return fail(ld, m, path, "YAML syntax error: %s", p->problem ? p->problem : "?");
    }
    ld->have_ev = true;
    return 0;
}

static const char *scalar(const yaml_event_t *ev)
{
    return (const char *)ev->data.scalar.value;
}

static bool is_null(const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT || !ev->data.scalar.plain_implicit)
        return false;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
        ev->data.scalar.style != YAML_ANY_SCALAR_STYLE)
        return false;
    const char *s = scalar(ev);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *kind(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
        return "a sequence";
    case YAML_ALIAS_EVENT:
        return "an alias";
    default:
        return "a scalar";
    }
}

/* The current event must be a non-null scalar without NUL bytes. */
static int want_scalar(struct loader *ld, const char *path, const char *what)
{
    yaml_event_t *ev = &ld->ev;
    if (ev->type == YAML_ALIAS_EVENT)
        return fail(ld, ev->start_mark, path, "aliases are not supported");
    if (ev->type != YAML_SCALAR_EVENT)
        return fail(ld, ev->start_mark, path, "expected %s, got %s", what, kind(ev));
    if (is_null(ev))
        return fail(ld, ev->start_mark, path, "missing value");
    if (strlen(scalar(ev)) != ev->data.scalar.length)
        return fail(ld, ev->start_mark, path, "value contains a NUL byte");
    return 0;
}

static char *resolve_path(const char *basedir, const char *v)
{
    if (!basedir || !*basedir || v[0] == '/' || !*v)
        return strdup(v);
    size_t n = strlen(basedir) + 1 + strlen(v) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", basedir, v);
    return p;
}

static const char *type_word(enum cf_type t)
{
    switch (t) {
    case CF_INT:
        return "an integer";
    case CF_DURATION:
        return "a duration";
    case CF_SIZE:
        return "a size";
    case CF_PROPS:
    case CF_SCHEMA_IDS:
        return "a mapping";
    default:
        return "a string";
    }
}

static int load_props(struct loader *ld, const struct cf_key *k);
static int load_schema_ids(struct loader *ld, const struct cf_key *k);
static int join_sequence(struct loader *ld, const char *path, char **out);
static int load_value(struct loader *ld, const struct cf_key *k, const char *path, const char *v);

/* Current event is the value of leaf key k (at path). */
static int load_leaf(struct loader *ld, const struct cf_key *k, const char *path)
{
    yaml_event_t *ev = &ld->ev;
    size_t idx = (size_t)(k - cf_keys);

    ld->set[idx] = true;
    ld->mark[idx] = ev->start_mark;
    if (k->type == CF_PROPS)
        return load_props(ld, k);
    if (k->type == CF_SCHEMA_IDS)
        return load_schema_ids(ld, k);
    char *joined = NULL;
    if ((k->flags & CF_LIST) && ev->type == YAML_SEQUENCE_START_EVENT) {
        if (join_sequence(ld, path, &joined) < 0)
            return -1;
    } else if (want_scalar(ld, path, type_word(k->type)) < 0) {
        return -1;
    }
    int rc = load_value(ld, k, path, joined ? joined : scalar(ev));
    free(joined);
    return rc;
}

/* A YAML sequence of scalars (current event: its start) as one string
 * joined with ','; the sequence's position stays the key's for errors. */
static int join_sequence(struct loader *ld, const char *path, char **out)
{
    size_t len = 0, cap = 64;
    char *buf = malloc(cap);
    if (!buf)
        return oom(ld, ld->ev.start_mark, path);
    buf[0] = '\0';
    for (;;) {
        if (next(ld, path) < 0) {
            free(buf);
            return -1;
        }
        if (ld->ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (want_scalar(ld, path, "a scalar list item") < 0) {
            free(buf);
            return -1;
        }
        const char *item = scalar(&ld->ev);
        size_t n = strlen(item);
        if (len + n + 2 > cap) {
            cap = (len + n + 2) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return oom(ld, ld->ev.start_mark, path);
            }
            buf = nb;
        }
        if (len)
            buf[len++] = ',';
        memcpy(buf + len, item, n + 1);
        len += n;
    }
    *out = buf;
    return 0;
}

/* The value text v of leaf key k; errors point at the value's position. */
static int load_value(struct loader *ld, const struct cf_key *k, const char *path, const char *v)
{
    fd_config *cfg = ld->cfg;
    const yaml_mark_t mark = ld->mark[(size_t)(k - cf_keys)]; /* the value's position */
    char q[64], why[160], lo[32], hi[32], got[32];
    quote_val(q, sizeof q, v);

    if (cf_is_string_type(k->type)) {
        if ((k->flags & CF_NONEMPTY) && !*v)
            return fail(ld, mark, path, "must not be empty");
        if (k->type == CF_ENUM && !enum_has(k->enum_vals, v)) {
            char list[128];
            snprintf(list, sizeof list, "%s", k->enum_vals);
            return fail(ld, mark, path, "invalid value '%s' (expected one of: %s)", q, list);
        }
        if (k->check && k->check(v, why, sizeof why) < 0)
            return fail(ld, mark, path, "invalid value '%s': %s", q, why);
        char *copy = k->type == CF_PATH ? resolve_path(ld->basedir, v) : strdup(v);
        if (!copy)
            return oom(ld, mark, path);
        char **slot = str_at(cfg, k);
        free(*slot);
        *slot = copy;
        return 0;
    }

    int64_t n;
    int rc = cf_parse_with_unit(v,
                                k->type == CF_DURATION ? cf_dur_units
                                : k->type == CF_SIZE   ? cf_size_units
                                                       : cf_no_units,
                                &n);
    cf_format_num(lo, sizeof lo, k, k->min);
    cf_format_num(hi, sizeof hi, k, k->max);
    if (rc == -1) {
        if (k->type == CF_DURATION)
            return fail(ld, mark, path,
                        "invalid duration '%s' (integer milliseconds or a number with unit "
                        "ms, s, m, h, d)",
                        q);
        if (k->type == CF_SIZE)
            return fail(ld, mark, path,
                        "invalid size '%s' (integer bytes or a number with unit B, KiB, MiB, GiB)",
                        q);
        return fail(ld, mark, path, "expected an integer, got '%s'", q);
    }
    if (rc == -2 || n < k->min || n > k->max) {
        if (rc == -2)
            snprintf(got, sizeof got, "%s", "too large");
        else
            cf_format_num(got, sizeof got, k, n);
        return fail(ld, mark, path, "out of range: %s (must be %s..%s)", rc == -2 ? q : got, lo,
                    hi);
    }
    if (k->type == CF_INT)
        *int_at(cfg, k->off) = (int)n;
    else
        *i64_at(cfg, k) = n;
    return 0;
}

static int build_path(char *dst, size_t size, const char *prefix, const char *key)
{
    int n = *prefix ? snprintf(dst, size, "%s.%s", prefix, key) : snprintf(dst, size, "%s", key);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Read one key of a map: current event is its key. On success *kp is the
 * scalar key text (valid until next()) and dst holds prefix.key. */
static int map_key(struct loader *ld, const char *prefix, char *dst, size_t size, const char **kp)
{
    yaml_event_t *ev = &ld->ev;
    if (ev->type == YAML_ALIAS_EVENT)
        return fail(ld, ev->start_mark, prefix, "aliases are not supported");
    if (ev->type != YAML_SCALAR_EVENT)
        return fail(ld, ev->start_mark, prefix, "keys must be scalars, got %s", kind(ev));
    const char *key = scalar(ev);
    if (!*key || strlen(key) != ev->data.scalar.length)
        return fail(ld, ev->start_mark, prefix, "empty or invalid key");
    if (build_path(dst, size, prefix, key) < 0)
        return fail(ld, ev->start_mark, prefix, "key too long");
    *kp = key;
    return 0;
}

static int load_props(struct loader *ld, const struct cf_key *k)
{
    fd_kv *kv = (fd_kv *)((char *)ld->cfg + k->off);
    int *n = int_at(ld->cfg, k->off2);
    char path[CF_MAX_PATH];
    const char *key;

    if (ld->ev.type != YAML_MAPPING_START_EVENT) {
        if (want_scalar(ld, k->name, "a mapping") < 0)
            return -1;
        return fail(ld, ld->ev.start_mark, k->name, "expected a mapping, got a scalar");
    }
    for (;;) {
        if (next(ld, k->name) < 0)
            return -1;
        if (ld->ev.type == YAML_MAPPING_END_EVENT)
            return 0;
        if (map_key(ld, k->name, path, sizeof path, &key) < 0)
            return -1;
        yaml_mark_t km = ld->ev.start_mark;
        for (int i = 0; i < *n; i++)
            if (strcmp(kv[i].key, key) == 0)
                return fail(ld, km, path, "duplicate key");
        if (*n >= FD_CONFIG_MAX_PROPS)
            return fail(ld, km, path, "too many properties (max %d)", FD_CONFIG_MAX_PROPS);
        char *kcopy = strdup(key);
        if (!kcopy)
            return oom(ld, km, path);
        kv[*n].key = kcopy;
        kv[*n].value = NULL;
        (*n)++;
        if (next(ld, path) < 0 || want_scalar(ld, path, "a scalar") < 0)
            return -1;
        if (!(kv[*n - 1].value = strdup(scalar(&ld->ev))))
            return oom(ld, ld->ev.start_mark, path);
        kv[*n - 1].line = (int)ld->ev.start_mark.line + 1;
        kv[*n - 1].col = (int)ld->ev.start_mark.column + 1;
    }
}

static int load_schema_ids(struct loader *ld, const struct cf_key *k)
{
    fd_config_schema_id *ids = (fd_config_schema_id *)((char *)ld->cfg + k->off);
    int *n = int_at(ld->cfg, k->off2);
    char path[CF_MAX_PATH], q[64];
    const char *key;

    if (ld->ev.type != YAML_MAPPING_START_EVENT) {
        if (want_scalar(ld, k->name, "a mapping") < 0)
            return -1;
        return fail(ld, ld->ev.start_mark, k->name, "expected a mapping, got a scalar");
    }
    for (;;) {
        if (next(ld, k->name) < 0)
            return -1;
        if (ld->ev.type == YAML_MAPPING_END_EVENT)
            return 0;
        if (map_key(ld, k->name, path, sizeof path, &key) < 0)
            return -1;
        yaml_mark_t km = ld->ev.start_mark;
        int64_t id;
        if (!cf_parse_i64(key, strlen(key), &id) || id < 0 || id > INT32_MAX) {
            quote_val(q, sizeof q, key);
            return fail(ld, km, path, "schema id must be an integer in 0..%d, got '%s'", INT32_MAX,
                        q);
        }
        for (int i = 0; i < *n; i++)
            if (ids[i].id == (int32_t)id)
                return fail(ld, km, path, "duplicate schema id %" PRId64, id);
        if (*n >= FD_CONFIG_MAX_SCHEMA_IDS)
            return fail(ld, km, path, "too many schema ids (max %d)", FD_CONFIG_MAX_SCHEMA_IDS);
        if (next(ld, path) < 0 || want_scalar(ld, path, "a path") < 0)
            return -1;
        if (!*scalar(&ld->ev))
            return fail(ld, ld->ev.start_mark, path, "must not be empty");
        char *p = resolve_path(ld->basedir, scalar(&ld->ev));
        if (!p)
            return oom(ld, ld->ev.start_mark, path);
        ids[*n].id = (int32_t)id;
        ids[*n].path = p;
        (*n)++;
    }
}

static const struct cf_key *find_key(const char *path)
{
    for (size_t i = 0; i < cf_nkeys; i++)
        if (strcmp(cf_keys[i].name, path) == 0)
            return &cf_keys[i];
    return NULL;
}

static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < cf_nkeys; i++)
        if (strncmp(cf_keys[i].name, path, n) == 0 && cf_keys[i].name[n] == '.')
            return true;
    return false;
}

#define CF_MAX_KEYS_PER_MAP 64

/* Current event is MAPPING_START of the section at prefix ("" = top). */
static int load_section(struct loader *ld, const char *prefix, int depth)
{
    struct {
        char name[64];
        size_t line;
    } seen[CF_MAX_KEYS_PER_MAP];
    size_t nseen = 0;
    char path[CF_MAX_PATH], hint[CF_MAX_PATH];
    const char *key;

    for (;;) {
        if (next(ld, prefix) < 0)
            return -1;
        if (ld->ev.type == YAML_MAPPING_END_EVENT)
            return 0;
        if (map_key(ld, prefix, path, sizeof path, &key) < 0)
            return -1;
        yaml_mark_t km = ld->ev.start_mark;
        if (strchr(key, '.'))
            return fail(ld, km, path, "dotted keys are not supported; nest each part as a mapping");
        const struct cf_key *k = find_key(path);
        bool section = !k && depth < 3 && is_section(path);
        if (!k && !section) {
            if (suggest(path, hint, sizeof hint))
                return fail(ld, km, path, "unknown key (did you mean '%s'?)", hint);
            return fail(ld, km, path, "unknown key");
        }
        /* known keys are short; only they reach the duplicate list */
        for (size_t i = 0; i < nseen; i++)
            if (strcmp(seen[i].name, key) == 0)
                return fail(ld, km, path, "duplicate key (first at line %zu)", seen[i].line);
        if (nseen < CF_MAX_KEYS_PER_MAP && strlen(key) < sizeof seen[0].name) {
            snprintf(seen[nseen].name, sizeof seen[0].name, "%s", key);
            seen[nseen++].line = km.line + 1;
        }
        if (next(ld, path) < 0)
            return -1;
        if (k) {
            if (load_leaf(ld, k, path) < 0)
                return -1;
            continue;
        }
        if (ld->ev.type != YAML_MAPPING_START_EVENT) {
            if (want_scalar(ld, path, "a mapping") < 0)
                return -1;
            return fail(ld, ld->ev.start_mark, path, "expected a mapping, got a scalar");
        }
        if (load_section(ld, path, depth + 1) < 0)
            return -1;
    }
}

static int load_stream(struct loader *ld)
{
    if (next(ld, "-") < 0)
        return -1;
    if (ld->ev.type != YAML_STREAM_START_EVENT)
        return fail(ld, ld->ev.start_mark, "-", "internal: expected stream start");
    if (next(ld, "-") < 0)
        return -1;
    if (ld->ev.type == YAML_STREAM_END_EVENT)
        return 0; /* empty file: all defaults */
    /* DOCUMENT_START */
    if (next(ld, "-") < 0)
        return -1;
    if (ld->ev.type == YAML_MAPPING_START_EVENT) {
        if (load_section(ld, "", 1) < 0)
            return -1;
    } else if (!is_null(&ld->ev)) {
        return fail(ld, ld->ev.start_mark, "-", "top level must be a mapping, got %s",
                    kind(&ld->ev));
    }
    if (next(ld, "-") < 0) /* DOCUMENT_END */
        return -1;
    if (next(ld, "-") < 0)
        return -1;
    if (ld->ev.type != YAML_STREAM_END_EVENT)
        return fail(ld, ld->ev.start_mark, "-", "only one YAML document is allowed");
    return 0;
}

/* Cross-key checks, after every key has been read. */
#define FD_HOUR_MS_ 3600000LL
static int check_cross(struct loader *ld)
{
    const fd_config *cfg = ld->cfg;
    if (FD_HOUR_MS_ % cfg->funnel_window_ms != 0) {
        const struct cf_key *k = find_key("funnel.window");
        char a[32];
        cf_format_num(a, sizeof a, k, cfg->funnel_window_ms);
        return fail(ld, ld->mark[(size_t)(k - cf_keys)], k->name,
                    "%s does not divide one hour (the hourly roll-up sums whole windows)", a);
    }
    if (cfg->redis_backoff_min_ms > cfg->redis_backoff_max_ms) {
        const struct cf_key *kmax = find_key("redis.backoff_max_ms");
        const struct cf_key *kmin = find_key("redis.backoff_min_ms");
        size_t imax = (size_t)(kmax - cf_keys), imin = (size_t)(kmin - cf_keys);
        bool at_max = ld->set[imax];
        char a[32], b[32];
        cf_format_num(a, sizeof a, kmin, cfg->redis_backoff_min_ms);
        cf_format_num(b, sizeof b, kmax, cfg->redis_backoff_max_ms);
        return fail(ld, at_max ? ld->mark[imax] : ld->mark[imin], at_max ? kmax->name : kmin->name,
                    "redis.backoff_min_ms (%s) must not exceed redis.backoff_max_ms (%s)", a, b);
    }
    return 0;
}

static int defaults_into(fd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = 0;
    if (!(cfg->source_path = strdup("")))
        rc = -1;
    for (size_t i = 0; i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        if (cf_is_string_type(k->type)) {
            if (!(*str_at(cfg, k) = strdup(k->def_str)))
                rc = -1;
        } else if (k->type == CF_INT) {
            *int_at(cfg, k->off) = (int)k->def_num;
        } else if (k->type == CF_DURATION || k->type == CF_SIZE) {
            *i64_at(cfg, k) = k->def_num;
        }
    }
    return rc;
}

void fd_config_defaults(fd_config *cfg)
{
    if (defaults_into(cfg) < 0)
        fd_config_free(cfg); /* out of memory: leave it empty, not half-set */
}

/* Shared by both loaders; basedir NULL = leave relative paths alone. */
static int load_common(fd_config *cfg, const char *name, const char *basedir, const char *buf,
                       size_t len, char *errstr, size_t errstr_size)
{
    struct loader ld;
    fd_config tmp;
    yaml_mark_t zero = {0, 0, 0};
    int rc = -1;

    memset(&ld, 0, sizeof ld);
    ld.cfg = &tmp;
    ld.name = name ? name : "<buffer>";
    ld.basedir = basedir;
    ld.buf = buf;
    ld.len = len;
    ld.errstr = errstr;
    ld.errstr_size = errstr_size;
    if (errstr && errstr_size)
        errstr[0] = 0;

    if (defaults_into(&tmp) < 0) {
        oom(&ld, zero, "-");
        goto out_cfg;
    }
    free(tmp.source_path);
    if (!(tmp.source_path = strdup(name ? name : ""))) {
        oom(&ld, zero, "-");
        goto out_cfg;
    }
    if (!yaml_parser_initialize(&ld.parser)) {
        oom(&ld, zero, "-");
        goto out_cfg;
    }
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)buf, len);
    if (load_stream(&ld) == 0 && check_cross(&ld) == 0)
        rc = 0;
    for (size_t i = 0; rc == 0 && i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        if (ld.set[i]) {
            tmp.key_line[i] = (int)ld.mark[i].line + 1;
            tmp.key_col[i] = (int)ld.mark[i].column + 1;
        } else if (k->type == CF_PATH && basedir) {
            /* A default path is relative to the file's directory too: the
             * same file finds the same schemas from any working directory. */
            char **slot = str_at(&tmp, k);
            if (*slot && **slot && (*slot)[0] != '/') {
                char *p = resolve_path(basedir, *slot);
                if (!p) {
                    rc = oom(&ld, zero, k->name);
                    break;
                }
                free(*slot);
                *slot = p;
            }
        }
    }

    if (ld.have_ev)
        yaml_event_delete(&ld.ev);
    yaml_parser_delete(&ld.parser);
out_cfg:
    fd_config_free(cfg); /* what the caller had: defaults or an older load */
    if (rc == 0) {
        *cfg = tmp;
    } else {
        fd_config_free(&tmp);
        memset(cfg, 0, sizeof *cfg);
    }
    return rc;
}

int fd_config_load_buffer(fd_config *cfg, const char *name, const char *buf, size_t len,
                          char *errstr, size_t errstr_size)
{
    return load_common(cfg, name, NULL, buf ? buf : "", buf ? len : 0, errstr, errstr_size);
}

/* An error about the file as a whole: reported at 1:1 with key "-". */
static void file_err(char *errstr, size_t errstr_size, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void file_err(char *errstr, size_t errstr_size, const char *path, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    int n = snprintf(errstr, errstr_size, "%s:1:1: -: ", path);
    if (n >= 0 && (size_t)n < errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr + n, errstr_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

int fd_config_load(fd_config *cfg, const char *path, char *errstr, size_t errstr_size)
{
    char *buf = NULL, *dir = NULL;
    size_t len = 0;
    int rc = -1;
    bool loaded = false;
    FILE *f = fopen(path, "rb");

    if (!f) {
        file_err(errstr, errstr_size, path, "cannot open: %s", strerror(errno));
        goto out;
    }
    if (!(buf = malloc(CF_MAX_FILE_BYTES + 1))) {
        file_err(errstr, errstr_size, path, "out of memory");
        goto out;
    }
    len = fread(buf, 1, CF_MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        file_err(errstr, errstr_size, path, "read error: %s", strerror(errno));
        goto out;
    }
    if (len > CF_MAX_FILE_BYTES) {
        file_err(errstr, errstr_size, path, "file larger than %d bytes", CF_MAX_FILE_BYTES);
        goto out;
    }
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dlen = slash == path ? 1 : (size_t)(slash - path);
        if (!(dir = strndup(path, dlen))) {
            file_err(errstr, errstr_size, path, "out of memory");
            goto out;
        }
    }
    rc = load_common(cfg, path, dir, buf, len, errstr, errstr_size);
    loaded = true;
out:
    if (!loaded) {
        fd_config_free(cfg);
        memset(cfg, 0, sizeof *cfg);
    }
    free(dir);
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

void fd_config_free(fd_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->source_path);
    cfg->source_path = NULL;
    for (size_t i = 0; i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        if (cf_is_string_type(k->type)) {
            char **slot = str_at(cfg, k);
            free(*slot);
            *slot = NULL;
        }
    }
    for (int i = 0; i < FD_CONFIG_MAX_PROPS; i++) {
        free(cfg->kafka_props[i].key);
        free(cfg->kafka_props[i].value);
        cfg->kafka_props[i].key = cfg->kafka_props[i].value = NULL;
    }
    cfg->kafka_n_props = 0;
    for (int i = 0; i < FD_CONFIG_MAX_SCHEMA_IDS; i++) {
        free(cfg->input_schema_ids[i].path);
        cfg->input_schema_ids[i].path = NULL;
    }
    cfg->input_n_schema_ids = 0;
}
