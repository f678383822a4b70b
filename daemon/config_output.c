/*
 * config_output.c - what the key table (config_table.c) drives on the way
 * out: --print-config (fd_config_print, secrets redacted, strings quoted
 * so that they load back), the redaction of URL credentials for logs,
 * FILE:LINE:COLUMN of a key, the comparison and copy of keys for SIGHUP
 * (fd_config_diff, fd_config_adopt), and the key reference of
 * docs/CONFIG.md (fd_config_print_docs).
 */
#include "daemon/config_table.h"
#include "daemon/utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- output */

/* A YAML double-quoted scalar that loads back to exactly s: control
 * characters and the code points a YAML reader refuses or folds (C1, NEL,
 * LS/PS, BOM, non-characters) are written as escapes. */
static void print_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    const unsigned char *end = (const unsigned char *)s + strlen(s);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n;
        if (*p == '"' || *p == '\\') {
            fprintf(out, "\\%c", *p++);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\x%02x", *p++);
        } else if (*p < 0x80) {
            fputc(*p++, out);
        } else if ((n = fd_utf8_seq(p, (size_t)(end - p), &cp)) == 0) {
            fprintf(out, "\\x%02x", *p++); /* not from the loader: it only yields UTF-8 */
        } else {
            if (cp < 0xa0 || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
                cp == 0xffff)
                fprintf(out, cp > 0xffff ? "\\U%08" PRIx32 : "\\u%04" PRIx32, cp);
            else
                fwrite(p, 1, n, out);
            p += n;
        }
    }
    fputc('"', out);
}

/* The properties librdkafka 2.0.2 flags _RK_SENSITIVE (rdkafka_conf.c): with
 * debug=conf it prints them as [redacted] itself (checked on Debian 12's
 * 2.0.2), plus sasl.oauthbearer.client.secret (sensitive in later ones). */
static const char *const rdkafka_sensitive[] = {"sasl.username",
                                                "sasl.password",
                                                "sasl.oauthbearer.config",
                                                "ssl.key.location",
                                                "ssl.key.password",
                                                "ssl.key.pem",
                                                "ssl_key",
                                                "ssl.ca.pem",
                                                "ssl.keystore.password",
                                                "sasl.oauthbearer.client.secret",
                                                NULL};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

bool fd_config_is_secret_key(const char *key)
{
    if (!key)
        return true;
    for (size_t i = 0; rdkafka_sensitive[i]; i++)
        if (!strcasecmp(key, rdkafka_sensitive[i]))
            return true;
    return strcasestr(key, "password") || strcasestr(key, "secret") ||
           strcasestr(key, "oauthbearer") || strcasestr(key, "jaas") || strcasestr(key, "kinit") ||
           ends_with(key, ".pem") || ends_with(key, ".key") || ends_with(key, "_key");
}

const char *fd_config_redact_urls(const char *s, char *buf, size_t n)
{
    if (!n)
        return buf;
    size_t o = 0;
    const char *p = s ? s : "";
    while (*p && o + 1 < n) {
        const char *sep = strstr(p, "://");
        if (!sep) {
            size_t l = strlen(p);
            if (l > n - 1 - o)
                l = n - 1 - o;
            memcpy(buf + o, p, l);
            o += l;
            break;
        }
        /* copy through "://", then look for userinfo before the authority ends */
        size_t l = (size_t)(sep + 3 - p);
        if (l > n - 1 - o)
            l = n - 1 - o;
        memcpy(buf + o, p, l);
        o += l;
        p = sep + 3;
        size_t auth = strcspn(p, "/?# \t\"'");
        const char *at = memrchr(p, '@', auth);
        if (at) {
            static const char red[] = "<redacted>@";
            size_t rl = sizeof red - 1;
            if (rl > n - 1 - o)
                rl = n - 1 - o;
            memcpy(buf + o, red, rl);
            o += rl;
            p = at + 1;
        }
    }
    buf[o] = 0;
    return buf;
}

const char *fd_config_where(const fd_config *cfg, const char *key, char *buf, size_t n)
{
    const char *file = cfg && cfg->source_path && *cfg->source_path ? cfg->source_path : "-";
    for (size_t i = 0; i < cf_nkeys; i++)
        if (!strcmp(cf_keys[i].name, key)) {
            if (cfg && cfg->key_line[i] > 0)
                snprintf(buf, n, "%s:%d:%d: %s", file, cfg->key_line[i], cfg->key_col[i], key);
            else
                snprintf(buf, n, "%s: %s (default)", file, key);
            return buf;
        }
    snprintf(buf, n, "%s: %s", file, key);
    return buf;
}

/* A value quoted, with the credentials of any URL in it redacted. */
static void print_redacted(FILE *out, const char *v)
{
    v = v ? v : "";
    size_t n = strlen(v) + 1;
    for (const char *a = v; (a = strchr(a, '@')); a++)
        n += 11; /* "<redacted>@" for as little as "@" */
    char *buf = malloc(n);
    print_quoted(out, buf ? fd_config_redact_urls(v, buf, n) : "<redacted>");
    free(buf);
}

/* Print section headers for name ("a.b.c") that differ from prev's. */
static int print_sections(FILE *out, const char *prev, const char *name)
{
    int depth = 0;
    size_t common = 0;
    /* length of the shared section prefix (up to a '.') */
    for (size_t i = 0; prev && prev[i] && prev[i] == name[i]; i++)
        if (name[i] == '.')
            common = i + 1;
    for (const char *p = name; (p = strchr(p, '.')); p++) {
        size_t len = (size_t)(p - name);
        const char *start = name;
        for (const char *d = name; d < name + len; d++)
            if (*d == '.')
                start = d + 1;
        if (len + 1 > common)
            fprintf(out, "%*s%.*s:\n", depth * 2, "", (int)(name + len - start), start);
        depth++;
    }
    return depth;
}

void fd_config_print(const fd_config *cfg, FILE *out)
{
    const char *prev = NULL;
    char buf[64];
    for (size_t i = 0; i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        int depth = print_sections(out, prev, k->name);
        const char *leaf = strrchr(k->name, '.');
        leaf = leaf ? leaf + 1 : k->name;
        prev = k->name;
        fprintf(out, "%*s%s:", depth * 2, "", leaf);
        if (cf_is_string_type(k->type)) {
            const char *v = *cf_cstr_at(cfg, k);
            fputc(' ', out);
            print_redacted(out, v);
            fputc('\n', out);
        } else if (k->type == CF_PROPS) {
            const fd_kv *kv = (const fd_kv *)((const char *)cfg + k->off);
            int n = *(const int *)((const char *)cfg + k->off2);
            fputs(n > 0 ? "\n" : " {}\n", out);
            for (int j = 0; j < n && j < FD_CONFIG_MAX_PROPS; j++) {
                fprintf(out, "%*s", (depth + 1) * 2, "");
                print_quoted(out, kv[j].key ? kv[j].key : "");
                fputs(": ", out);
                if (fd_config_is_secret_key(kv[j].key))
                    print_quoted(out, "<redacted>");
                else
                    print_redacted(out, kv[j].value);
                fputc('\n', out);
            }
        } else if (k->type == CF_SCHEMA_IDS) {
            const fd_config_schema_id *ids =
                (const fd_config_schema_id *)((const char *)cfg + k->off);
            int n = *(const int *)((const char *)cfg + k->off2);
            fputs(n > 0 ? "\n" : " {}\n", out);
            for (int j = 0; j < n && j < FD_CONFIG_MAX_SCHEMA_IDS; j++) {
                fprintf(out, "%*s%" PRId32 ": ", (depth + 1) * 2, "", ids[j].id);
                print_quoted(out, ids[j].path ? ids[j].path : "");
                fputc('\n', out);
            }
        } else {
            cf_format_num(buf, sizeof buf, k, cf_num_get(cfg, k));
            fprintf(out, k->type == CF_INT ? " %s\n" : " \"%s\"\n", buf);
        }
    }
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool key_equal(const fd_config *a, const fd_config *b, const struct cf_key *k)
{
    if (cf_is_string_type(k->type))
        return str_eq(*cf_cstr_at(a, k), *cf_cstr_at(b, k));
    if (k->type == CF_PROPS || k->type == CF_SCHEMA_IDS) {
        int na = *(const int *)((const char *)a + k->off2);
        int nb = *(const int *)((const char *)b + k->off2);
        if (na != nb)
            return false;
        for (int j = 0; j < na; j++) {
            if (k->type == CF_PROPS) {
                const fd_kv *x = (const fd_kv *)((const char *)a + k->off) + j;
                const fd_kv *y = (const fd_kv *)((const char *)b + k->off) + j;
                if (!str_eq(x->key, y->key) || !str_eq(x->value, y->value))
                    return false;
            } else {
                const fd_config_schema_id *x =
                    (const fd_config_schema_id *)((const char *)a + k->off) + j;
                const fd_config_schema_id *y =
                    (const fd_config_schema_id *)((const char *)b + k->off) + j;
                if (x->id != y->id || !str_eq(x->path, y->path))
                    return false;
            }
        }
        return true;
    }
    return cf_num_get(a, k) == cf_num_get(b, k);
}

void fd_config_value_text(const fd_config *cfg, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "?");
    for (size_t i = 0; i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        if (strcmp(k->name, name))
            continue;
        if (cf_is_string_type(k->type)) {
            const char *v = *cf_cstr_at(cfg, k);
            snprintf(buf, n, "%s", v ? v : "");
        } else if (k->type == CF_INT || k->type == CF_DURATION || k->type == CF_SIZE) {
            cf_format_num(buf, n, k, cf_num_get(cfg, k));
        }
        return;
    }
}

bool fd_config_reloadable(const char *name)
{
    for (size_t i = 0; i < cf_nkeys; i++)
        if (!strcmp(cf_keys[i].name, name))
            return (cf_keys[i].flags & CF_RELOAD) != 0;
    return false;
}

int fd_config_adopt(fd_config *dst, const fd_config *src, const char *name)
{
    for (size_t i = 0; i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        if (strcmp(k->name, name))
            continue;
        if (cf_is_string_type(k->type)) {
            const char *v = *cf_cstr_at(src, k);
            char *copy = v ? strdup(v) : NULL;
            if (v && !copy)
                return -1;
            char **at = (char **)((char *)dst + k->off);
            free(*at);
            *at = copy;
            return 0;
        }
        if (k->type == CF_INT) {
            *(int *)((char *)dst + k->off) = *(const int *)((const char *)src + k->off);
            return 0;
        }
        if (k->type == CF_DURATION || k->type == CF_SIZE) {
            *(int64_t *)((char *)dst + k->off) = *(const int64_t *)((const char *)src + k->off);
            return 0;
        }
        return -1; /* maps are never reloaded */
    }
    return -1;
}

size_t fd_config_diff(const fd_config *a, const fd_config *b, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cf_nkeys; i++)
        if (!key_equal(a, b, &cf_keys[i])) {
            if (n < max)
                names[n] = cf_keys[i].name;
            n++;
        }
    return n;
}

static const char *type_doc(const struct cf_key *k)
{
    switch (k->type) {
    case CF_STR:
        return "string";
    case CF_PATH:
        return "path";
    case CF_ENUM:
        return "enum";
    case CF_INT:
        return "integer";
    case CF_DURATION:
        return "duration";
    case CF_SIZE:
        return "size";
    case CF_PROPS:
        return "map string -> scalar";
    case CF_SCHEMA_IDS:
        return "map id -> path";
    }
    return "?";
}

void fd_config_print_docs(FILE *out)
{
    char lo[32], hi[32];
    fputs("| key | type | default | allowed | SIGHUP | description |\n"
          "|---|---|---|---|---|---|\n",
          out);
    for (size_t i = 0; i < cf_nkeys; i++) {
        const struct cf_key *k = &cf_keys[i];
        fprintf(out, "| `%s` | %s | ", k->name, type_doc(k));
        if (cf_is_string_type(k->type))
            fprintf(out, "`\"%s\"`", k->def_str);
        else if (k->type == CF_PROPS || k->type == CF_SCHEMA_IDS)
            fputs("`{}`", out);
        else {
            cf_format_num(lo, sizeof lo, k, k->def_num);
            fprintf(out, "`%s`", lo);
        }
        fputs(" | ", out);
        if (k->type == CF_ENUM) {
            for (const char *p = k->enum_vals; *p; p++)
                if (*p == '|')
                    fputs(", ", out);
                else
                    fputc(*p, out);
        } else if (k->type == CF_INT || k->type == CF_DURATION || k->type == CF_SIZE) {
            cf_format_num(lo, sizeof lo, k, k->min);
            cf_format_num(hi, sizeof hi, k, k->max);
            fprintf(out, "%s .. %s", lo, hi);
        } else if (k->type == CF_PROPS || k->type == CF_SCHEMA_IDS) {
            fprintf(out, "at most %" PRId64 " entries", k->max);
        } else {
            fputs(k->flags & CF_NONEMPTY ? "non-empty" : "any", out);
        }
        fputs(k->flags & CF_RELOAD ? " | applied | " : " | restart | ", out);
        for (const char *p = k->desc; *p; p++)
            if (*p == '|')
                fputs("\\|", out);
            else
                fputc(*p, out);
        fputs(" |\n", out);
    }
}

const char *fd_config_key_name(size_t i)
{
    return i < cf_nkeys ? cf_keys[i].name : NULL;
}
