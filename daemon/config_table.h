/*
 * config_table.h - private to daemon/config*.c: the key table that drives
 * loading, defaults, --print-config and docs, and the value helpers that the
 * loader and the printer share. See the essay at the top of config.c.
 */
#ifndef FD_CONFIG_TABLE_H
#define FD_CONFIG_TABLE_H

#include "daemon/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MS_SEC  1000LL
#define MS_MIN  (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY  (24 * MS_HOUR)
#define KIB     1024LL
#define MIB     (1024 * KIB)
#define GIB     (1024 * MIB)

/* upper bound on the table's length (checked statically) */
#define CF_MAX_KEYS FD_CONFIG_MAX_KEYS

enum cf_type {
    CF_STR,        /* char *; any scalar text */
    CF_PATH,       /* char *; resolved against the config file's directory */
    CF_ENUM,       /* char *; one of enum_vals ("a|b|c") */
    CF_INT,        /* int; decimal integer in [min, max] */
    CF_DURATION,   /* int64_t milliseconds; integer ms or "250ms","30s","5m","1h","7d" */
    CF_SIZE,       /* int64_t bytes; integer or "64KiB","1MiB","1GiB" */
    CF_PROPS,      /* fd_kv[FD_CONFIG_MAX_PROPS] + int count at off2 */
    CF_SCHEMA_IDS, /* fd_config_schema_id[FD_CONFIG_MAX_SCHEMA_IDS] + int count at off2 */
};

enum {
    CF_NONEMPTY = 1 << 0,
    CF_LIST = 1 << 1,   /* CF_STR: a YAML sequence of scalars is joined with ',' */
    CF_RELOAD = 1 << 2, /* SIGHUP applies a change of it to the running daemon */
};

struct cf_key {
    const char *name; /* dotted path, e.g. "kafka.brokers" */
    enum cf_type type;
    size_t off;  /* offsetof(fd_config, field) */
    size_t off2; /* maps: offset of the count */
    const char *def_str;
    int64_t def_num;
    int64_t min, max;
    unsigned flags;
    const char *enum_vals;
    int (*check)(const char *val, char *why, size_t why_size);
    const char *desc;
};

/* The table, in --print-config and docs order, and its length. */
extern const struct cf_key cf_keys[];
extern const size_t cf_nkeys;

struct unit {
    const char *suffix;
    int64_t mult;
};
extern const struct unit cf_dur_units[], cf_size_units[], cf_no_units[];

bool cf_is_string_type(enum cf_type t);
/* Key k's value in cfg: the string field (string types), the number. */
char *const *cf_cstr_at(const fd_config *cfg, const struct cf_key *k);
int64_t cf_num_get(const fd_config *cfg, const struct cf_key *k);
bool cf_all_digits(const char *s, size_t n);
/* Parse an optionally signed decimal integer that fills all of s[0..len). */
bool cf_parse_i64(const char *s, size_t len, int64_t *out);
/* "<int><unit>" or "<int>" (unit 1). 0 ok, -1 malformed, -2 overflow. */
int cf_parse_with_unit(const char *s, const struct unit *units, int64_t *out);
/* v in k's natural notation: "30s" for durations, "1MiB" for sizes. */
void cf_format_num(char *buf, size_t size, const struct cf_key *k, int64_t v);

#endif
