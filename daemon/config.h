/*
 * config.h - funneld's configuration: one struct, loaded from one YAML file.
 *
 * Every key is declared once in the table in config.c (name, type, default,
 * bounds, description, offset into struct fd_config). The same table
 * validates the file, prints --print-config and documents the keys.
 * Durations in YAML accept an integer (milliseconds) or a string with a unit:
 * "250ms", "30s", "5m", "1h", "7d". Sizes accept an integer (bytes) or "64KiB",
 * "1MiB", "1GiB".
 *
 * Errors read "FILE:LINE:COLUMN: key.path: what is wrong".
 */
#ifndef FD_CONFIG_H
#define FD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FD_CONFIG_MAX_PROPS      64
#define FD_CONFIG_MAX_SCHEMA_IDS 32

typedef struct fd_kv {
    char *key;
    char *value;
    int line, col; /* position of the value in the file (1-based), for errors */
} fd_kv;

typedef struct fd_config_schema_id {
    int32_t id;
    char *path; /* resolved relative to the config file's directory */
} fd_config_schema_id;

#define FD_CONFIG_MAX_KEYS 96 /* = CF_MAX_KEYS */

typedef struct fd_config {
    char *source_path; /* file it was loaded from ("" for defaults) */
    /* Where each key's value is in the file (1-based), in the order of
     * fd_config_key_name; line 0 = not in the file (its default). */
    int key_line[FD_CONFIG_MAX_KEYS], key_col[FD_CONFIG_MAX_KEYS];

    /* kafka.* */
    char *kafka_brokers;          /* "embedded" or bootstrap list; default "embedded" */
    int kafka_partitions;         /* embedded: partitions of each topic; 1..1024, default 4 */
    char *kafka_group_id;         /* default "funneld" */
    char *kafka_topic_events;     /* default "events" */
    char *kafka_topic_dlq;        /* default "events.dlq" */
    int64_t kafka_dlq_timeout_ms; /* default 60s */
    char *kafka_topic_alerts;     /* default "churn-alerts" */
    char *kafka_topic_metrics;    /* default "funnel-metrics" */
    char *kafka_metrics_format;   /* avro | json; default avro */
    char *kafka_alerts_format;    /* avro | json; default avro */
    char *kafka_alerts_schema;  /* default conf/schemas/churn_alert.avsc (relative to config dir) */
    char *kafka_metrics_schema; /* default conf/schemas/funnel_metrics.avsc (relative to config dir)
                                 */
    fd_kv kafka_props[FD_CONFIG_MAX_PROPS]; /* kafka.properties: passed to librdkafka */
    int kafka_n_props;

    /* redis.* */
    char *redis_url;           /* redis://host:port/db or unix:///path[?db=N]; default
                                  redis://127.0.0.1:6379/0 */
    char *redis_password_file; /* "" = none */
    char *redis_password_env;  /* env var holding the password; default FUNNELD_REDIS_PASSWORD */
    char *redis_username;      /* ACL user; "" = the default user */
    char *redis_key_prefix;    /* default "fd:v2:" */
    int64_t redis_connect_timeout_ms; /* 1..600000, default 2000 */
    int64_t redis_command_timeout_ms; /* 1..600000, default 5000 */
    int64_t redis_backoff_min_ms;     /* 1..600000, default 100 */
    int64_t redis_backoff_max_ms;     /* 1..600000, default 10000 */
    int64_t redis_flush_interval_ms;  /* 1..60000, default 200 */

    /* input.* */
    char *input_format; /* avro | confluent-avro | json; default avro */
    char
        *input_schema; /* reader schema; default conf/schemas/event.avsc (relative to config dir) */
    fd_config_schema_id
        input_schema_ids[FD_CONFIG_MAX_SCHEMA_IDS]; /* input.schema_ids: {id: path} */
    int input_n_schema_ids;
    int64_t input_max_message_bytes;  /* 64..100MiB, default 1MiB */
    int64_t input_max_future_skew_ms; /* 0..30d, default 1h */
    int input_max_price; /* currency units, price and price x quantity; 1..2e9, default 1e9 */

    /* engine.*, state.* */
    int engine_workers;                 /* 0 = number of cores; 0..256 */
    int engine_queue_messages;          /* per shard; 64..1M, default 8192 */
    int engine_epoch_max_events;        /* 1024..1e9, default 131072 */
    int engine_epoch_max_users;         /* 1024..1e9, default 16384 */
    int64_t engine_shutdown_timeout_ms; /* default 10s */
    int state_max_users_in_memory;      /* default 2,000,000 */

    /* log.* */
    char *features_half_lives;          /* comma-separated durations; default "1h,1d,7d,30d" */
    int64_t session_gap_ms;             /* default 30m */
    int64_t funnel_window_ms;           /* divides 1h; default 1m */
    int64_t funnel_allowed_lateness_ms; /* default 2m */
    char *funnel_categories;            /* comma-separated names; default "" (no breakdown) */
    int64_t funnel_retention_ms;        /* TTL of window keys; default 7d */

    /* churn.* (docs/CHURN.md); the reals are validated decimal text, read with fd_config_real */
    char *churn_enabled;                                  /* on|off; default on */
    int64_t churn_horizon_ms;                             /* default 14d */
    char *churn_alert_threshold;                          /* (0,1); default "0.7" */
    char *churn_rearm_margin;                             /* [0,1); default "0.1" */
    int churn_min_events;                                 /* default 3 */
    int64_t churn_alert_cooldown_ms;                      /* default 7d */
    int churn_warmup_examples;                            /* default 5000 */
    char *churn_alpha, *churn_beta, *churn_l1, *churn_l2; /* FTRL-Proximal */

    /* mf.* (docs/RECS.md); reals as for churn.* */
    char *mf_enabled;                       /* on|off; default on */
    int mf_k;                               /* 1..32; default 32 */
    char *mf_learning_rate;                 /* (0,1]; default "0.05" */
    char *mf_regularisation;                /* [0,1); default "0.01" */
    int mf_negatives;                       /* 0..32; default 4 */
    char *mf_weight_click, *mf_weight_cart; /* [0,100]; default "1", "3" */
    char *mf_weight_purchase;               /* default "5" */
    int mf_max_items;                       /* default 1,000,000 */
    int64_t mf_popularity_half_life_ms;     /* default 7d */
    int mf_top_n;                           /* 1..100; default 10 */
    int64_t mf_refresh_ms;                  /* default 1h */
    int mf_cold_start_events;               /* default 3 */
    int mf_eval_every;                      /* default 1000 */

    char *http_listen;                /* HOST:PORT or off; default 127.0.0.1:9108 */
    char *log_level;                  /* error|warn|info|debug; default info */
    char *log_format;                 /* text|json; default text */
    int64_t log_progress_interval_ms; /* default 60s; 0 = never */
} fd_config;

/* The keys whose values differ between a and b, in table order: their
 * names in names[0..max) (names of the table: static). Returns how many
 * differ (may exceed max). */
size_t fd_config_diff(const fd_config *a, const fd_config *b, const char **names, size_t max);
/* Key `name`'s value as text ("30s", "0.5"; for log lines: only for keys
 * that hold no secret). */
void fd_config_value_text(const fd_config *cfg, const char *name, char *buf, size_t n);
/* Whether SIGHUP applies a change of key `name` to the running daemon
 * (the SIGHUP column of docs/CONFIG.md). */
bool fd_config_reloadable(const char *name);
/* Copy key `name`'s value from src into dst (a reloaded key now runs with
 * it). 0, or -1 (unknown key, a map, out of memory). */
int fd_config_adopt(fd_config *dst, const fd_config *src, const char *name);

/* A real-valued key's text (validated by the loader) as a double. */
double fd_config_real(const char *val);

/* Fill *cfg with defaults. Caller owns the strings: fd_config_free(). */
void fd_config_defaults(fd_config *cfg);

/* Load FILE over defaults. Returns 0, or -1 with "FILE:LINE:COL: key: msg"
 * in errstr (first error). Relative paths in the file are resolved against
 * the file's directory. On error *cfg is left freed (safe to free again).
 * *cfg must be zeroed, filled by fd_config_defaults() or a previous load
 * (never uninitialized): whatever it holds is freed, on success and on error. */
int fd_config_load(fd_config *cfg, const char *path, char *errstr, size_t errstr_size);

/* Same, from a memory buffer; name is used in messages as FILE. Relative
 * paths are left as written (relative to the working directory). errstr may
 * be NULL when errstr_size is 0. */
int fd_config_load_buffer(fd_config *cfg, const char *name, const char *buf, size_t len,
                          char *errstr, size_t errstr_size);

/* Print the effective config as YAML, secrets redacted (kafka.properties
 * whose key contains "password", "secret", "sasl.oauthbearer" or ends in
 * ".key" print as "<redacted>"). */
void fd_config_print(const fd_config *cfg, FILE *out);

/* Free every string owned by cfg; cfg may be NULL or zeroed. Pointers are
 * set to NULL and counts to 0, so freeing twice is safe. */
void fd_config_free(fd_config *cfg);

/* Write the key reference (a Markdown table: key, type, default, bounds,
 * description) generated from the key table. docs/CONFIG.md embeds it;
 * `test_config --print-docs` prints it. */
void fd_config_print_docs(FILE *out);

/* features.half_lives as milliseconds: the count (1..4), or -1 with a
 * message when malformed (the loader has already rejected that). */
int fd_config_half_lives(const fd_config *cfg, int64_t out[4], char *why, size_t why_size);

/* funnel.categories split at commas (surrounding blanks removed) into
 * out[max][len]: the count, or -1 with a message. */
int fd_config_categories(const fd_config *cfg, char (*out)[257], int max, char *why,
                         size_t why_size);

/* Dotted name of the i-th key ("kafka.brokers"), NULL past the last one. */
const char *fd_config_key_name(size_t i);

/* Where a key's value comes from, for a message about it:
 * "FILE:LINE:COL: KEY" when the file sets it, "FILE: KEY (default)" when
 * not. Returns buf. */
const char *fd_config_where(const fd_config *cfg, const char *key, char *buf, size_t n);

/* Is a property of this name a secret, never to be printed? librdkafka's
 * own sensitive properties, any name containing password, secret,
 * oauthbearer, jaas or kinit, and names ending in .pem or .key. */
bool fd_config_is_secret_key(const char *name);

/* s with the credentials of any URL in it ("scheme://user:pw@host")
 * replaced by "<redacted>", into buf (truncated to n). Returns buf. */
const char *fd_config_redact_urls(const char *s, char *buf, size_t n);

/* A parsed redis.url. For unix sockets host holds the socket path. */
typedef struct fd_redis_addr {
    int is_unix;
    char host[256];
    int port; /* 0 for unix sockets */
    int db;
} fd_redis_addr;

/* Parse "redis://host:port[/db]" (host may be [ipv6]) or
 * "unix:///path[?db=N]" into *out (may be NULL: validate only). Returns 0,
 * or -1 with the reason in errstr. Credentials in the URL are rejected. */
int fd_config_parse_redis_url(const char *url, fd_redis_addr *out, char *errstr,
                              size_t errstr_size);

#endif
