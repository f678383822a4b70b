/*
 * config_table.c - the one table of funneld's config keys, the value
 * helpers shared by loader and printer, redis.url parsing and the list and
 * value checks. What the table drives on the way out (--print-config, the
 * docs table, diff/adopt for SIGHUP) is config_output.c; the loader is
 * config.c, whose top comment explains why it is all table-driven.
 */
#include "daemon/config_table.h"

#include "daemon/http.h"    /* fd_http_check_listen */
#include "features/event.h" /* FD_MAX_PRICE_DEFAULT, FD_MAX_PRICE_LIMIT */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int check_redis_url(const char *val, char *why, size_t why_size);
static int check_half_lives(const char *val, char *why, size_t why_size);
static int check_categories(const char *val, char *why, size_t why_size);
static int check_probability(const char *val, char *why, size_t why_size);
static int check_margin(const char *val, char *why, size_t why_size);
static int check_positive_real(const char *val, char *why, size_t why_size);
static int check_nonneg_real(const char *val, char *why, size_t why_size);
static int check_rate(const char *val, char *why, size_t why_size);
static int check_listen(const char *val, char *why, size_t why_size);
static int check_brokers(const char *val, char *why, size_t why_size);

#define OFF(f) offsetof(fd_config, f)

/* The one table. Order is the order of --print-config and of the docs. */
const struct cf_key cf_keys[] = {
    {"kafka.brokers", CF_STR, OFF(kafka_brokers), 0, "embedded", 0, 0, 0, CF_NONEMPTY, NULL,
     check_brokers,
     "Kafka bootstrap servers (host:port,...), or \"embedded\" for an in-process mock cluster "
     "(demo and tests); the shipped file's placeholder SET-ME is refused until replaced"},
    {"kafka.partitions", CF_INT, OFF(kafka_partitions), 0, NULL, 4, 1, 1024, 0, NULL, NULL,
     "embedded cluster only: partitions of each topic it creates"},
    {"kafka.group_id", CF_STR, OFF(kafka_group_id), 0, "funneld", 0, 0, 0, CF_NONEMPTY, NULL, NULL,
     "consumer group; every instance of one deployment uses the same id"},
    {"kafka.topic_events", CF_STR, OFF(kafka_topic_events), 0, "events", 0, 0, 0, CF_NONEMPTY, NULL,
     NULL, "input topic (key = user id)"},
    {"kafka.topic_dlq", CF_STR, OFF(kafka_topic_dlq), 0, "events.dlq", 0, 0, 0, CF_NONEMPTY, NULL,
     NULL, "dead-letter topic for messages that fail to decode or validate"},
    {"kafka.dlq_timeout_ms", CF_DURATION, OFF(kafka_dlq_timeout_ms), 0, NULL, 60000, 1000, 3600000,
     0, NULL, NULL,
     "how long a dead letter may stay undelivered (broker retries included); then it is counted "
     "in stats dlq_failed and the writes it held back go on"},
    {"kafka.topic_alerts", CF_STR, OFF(kafka_topic_alerts), 0, "churn-alerts", 0, 0, 0, CF_NONEMPTY,
     NULL, NULL, "output topic for churn alerts"},
    {"kafka.topic_metrics", CF_STR, OFF(kafka_topic_metrics), 0, "funnel-metrics", 0, 0, 0,
     CF_NONEMPTY, NULL, NULL, "output topic for per-window funnel metrics"},
    {"kafka.metrics_format", CF_ENUM, OFF(kafka_metrics_format), 0, "avro", 0, 0, 0, 0, "avro|json",
     NULL, "encoding of the funnel-metrics messages"},
    {"kafka.metrics_schema", CF_PATH, OFF(kafka_metrics_schema), 0, "schemas/funnel_metrics.avsc",
     0, 0, 0, CF_NONEMPTY, NULL, NULL,
     "Avro schema of the funnel-metrics messages; relative to the config file's directory"},
    {"kafka.alerts_format", CF_ENUM, OFF(kafka_alerts_format), 0, "avro", 0, 0, 0, 0, "avro|json",
     NULL, "encoding of the churn-alert messages"},
    {"kafka.alerts_schema", CF_PATH, OFF(kafka_alerts_schema), 0, "schemas/churn_alert.avsc", 0, 0,
     0, CF_NONEMPTY, NULL, NULL,
     "Avro schema of the churn-alert messages; relative to the config file's directory"},
    {"kafka.properties", CF_PROPS, OFF(kafka_props), OFF(kafka_n_props), NULL, 0, 0,
     FD_CONFIG_MAX_PROPS, 0, NULL, NULL,
     "map of librdkafka properties passed through as-is (numbers and booleans as text)"},

    {"redis.url", CF_STR, OFF(redis_url), 0, "redis://127.0.0.1:6379/0", 0, 0, 0, CF_NONEMPTY, NULL,
     check_redis_url, "redis://host:port[/db] or unix:///path[?db=N]; no password here"},
    {"redis.password_file", CF_PATH, OFF(redis_password_file), 0, "", 0, 0, 0, 0, NULL, NULL,
     "file whose first line is the Redis password; \"\" = none"},
    {"redis.password_env", CF_STR, OFF(redis_password_env), 0, "FUNNELD_REDIS_PASSWORD", 0, 0, 0, 0,
     NULL, NULL, "environment variable holding the Redis password (used when set)"},
    {"redis.username", CF_STR, OFF(redis_username), 0, "", 0, 0, 0, 0, NULL, NULL,
     "Redis 6+ ACL user to authenticate as (AUTH user password; the password from "
     "password_file or password_env); \"\" = the default user"},
    {"redis.key_prefix", CF_STR, OFF(redis_key_prefix), 0, "fd:v2:", 0, 0, 0, 0, NULL, NULL,
     "prefix of every Redis key funneld writes"},
    {"redis.connect_timeout_ms", CF_DURATION, OFF(redis_connect_timeout_ms), 0, NULL, 2000, 1,
     10 * MS_MIN, 0, NULL, NULL, "timeout of one connection attempt"},
    {"redis.command_timeout_ms", CF_DURATION, OFF(redis_command_timeout_ms), 0, NULL, 5000, 1,
     10 * MS_MIN, 0, NULL, NULL, "timeout of one command or pipeline round trip"},
    {"redis.backoff_min_ms", CF_DURATION, OFF(redis_backoff_min_ms), 0, NULL, 100, 1, 10 * MS_MIN,
     0, NULL, NULL,
     "first retry delay after Redis failed (reconnect) or refused a write (OOM, ...); doubles "
     "up to backoff_max_ms"},
    {"redis.backoff_max_ms", CF_DURATION, OFF(redis_backoff_max_ms), 0, NULL, 10000, 1, 10 * MS_MIN,
     0, NULL, NULL, "longest retry delay (reconnect, refused write); must be >= backoff_min_ms"},
    {"redis.flush_interval_ms", CF_DURATION, OFF(redis_flush_interval_ms), 0, NULL, 200, 1, MS_MIN,
     CF_RELOAD, NULL, NULL,
     "how often dirty state and offsets are written behind; while a backlog is read the interval "
     "stretches to 8x the last write's duration, at least 1 s and at most 5 s"},

    {"input.format", CF_ENUM, OFF(input_format), 0, "avro", 0, 0, 0, 0, "avro|confluent-avro|json",
     NULL, "encoding of messages on the events topic"},
    {"input.schema", CF_PATH, OFF(input_schema), 0, "schemas/event.avsc", 0, 0, 0, CF_NONEMPTY,
     NULL, NULL, "reader schema (.avsc); relative to the config file's directory"},
    {"input.schema_ids", CF_SCHEMA_IDS, OFF(input_schema_ids), OFF(input_n_schema_ids), NULL, 0, 0,
     FD_CONFIG_MAX_SCHEMA_IDS, 0, NULL, NULL,
     "confluent-avro: map of writer schema id -> .avsc path"},
    {"input.max_message_bytes", CF_SIZE, OFF(input_max_message_bytes), 0, NULL, MIB, 64, 100 * MIB,
     0, NULL, NULL, "larger messages go to the dead-letter topic"},
    {"input.max_future_skew", CF_DURATION, OFF(input_max_future_skew_ms), 0, NULL, MS_HOUR, 0,
     30 * MS_DAY, 0, NULL, NULL,
     "events stamped further ahead of the watermark than this are rejected"},
    {"input.max_price", CF_INT, OFF(input_max_price), 0, NULL, FD_MAX_PRICE_DEFAULT, 1,
     FD_MAX_PRICE_LIMIT, 0, NULL, NULL,
     "largest unit price, and largest line total price x quantity, of an event, in whole currency "
     "units; above it the event is rejected (bad_price, bad_quantity). The limit keeps every "
     "amount exact and no sum can wrap (EVENTS.md, numeric bounds)"},

    {"engine.workers", CF_INT, OFF(engine_workers), 0, NULL, 0, 0, 256, 0, NULL, NULL,
     "shard threads that own the users (hash of user id); 0 = one per CPU core"},
    {"engine.queue_messages", CF_INT, OFF(engine_queue_messages), 0, NULL, 8192, 64, 1048576, 0,
     NULL, NULL,
     "messages each shard's queue holds; when a queue is full the consumer pauses (backpressure)"},
    {"engine.epoch_max_events", CF_INT, OFF(engine_epoch_max_events), 0, NULL, 131072, 1024,
     1000000000, 0, NULL, NULL,
     "most events in one epoch (one MULTI/EXEC): once this many were handed on, routing waits "
     "for the next epoch (it starts at once, or when the previous one is written). Bounds the "
     "memory of a write under a backlog "
     "(~40 MB at the default); larger: fewer, bigger writes (less Redis CPU per event, more "
     "memory; BENCHMARKS.md)"},
    {"engine.epoch_max_users", CF_INT, OFF(engine_epoch_max_users), 0, NULL, 16384, 1024,
     1000000000, 0, NULL, NULL,
     "most users changed in one epoch (approximately: counted as the shards apply events): at "
     "this many, routing waits for the next epoch (it starts at once, or when the previous one "
     "is written). "
     "The epoch's records are built in memory before they are written, so this bounds that "
     "memory when there are many users (~0.7-0.9 KB per user; BENCHMARKS.md)"},
    {"engine.shutdown_timeout_ms", CF_DURATION, OFF(engine_shutdown_timeout_ms), 0, NULL, 10000,
     100, 10 * MS_MIN, 0, NULL, NULL,
     "on SIGTERM, on revocation: how long to keep trying to write state before giving up"},
    {"state.max_users_in_memory", CF_INT, OFF(state_max_users_in_memory), 0, NULL, 2000000, 1000,
     1000000000, 0, NULL, NULL,
     "users cached in memory (all shards); beyond it clean users are evicted, reloaded on sight, "
     "and state is flushed every redis.flush_interval_ms even while a backlog is read"},

    {"features.half_lives", CF_STR, OFF(features_half_lives), 0, "1h,1d,7d,30d", 0, 0, 0,
     CF_NONEMPTY | CF_LIST, NULL, check_half_lives,
     "half-lives of the decayed per-user values: 1 to 4 distinct durations (a YAML list or a "
     "comma-separated string)"},
    {"session.gap", CF_DURATION, OFF(session_gap_ms), 0, NULL, 30 * MS_MIN, MS_SEC, 7 * MS_DAY, 0,
     NULL, NULL, "event-time silence that ends a user's session"},
    {"funnel.window", CF_DURATION, OFF(funnel_window_ms), 0, NULL, MS_MIN, MS_SEC, MS_HOUR, 0, NULL,
     NULL, "tumbling funnel window (must divide one hour); an hourly roll-up is kept too"},
    {"funnel.allowed_lateness", CF_DURATION, OFF(funnel_allowed_lateness_ms), 0, NULL, 2 * MS_MIN,
     0, 7 * MS_DAY, 0, NULL, NULL,
     "events this far behind their partition's newest event time still count in their window"},
    {"funnel.categories", CF_STR, OFF(funnel_categories), 0, "", 0, 0, 0, CF_LIST, NULL,
     check_categories,
     "categories with their own funnel breakdown (a YAML list or a comma-separated string, at most "
     "32; others count as 'other'); empty = no breakdown"},
    {"funnel.retention", CF_DURATION, OFF(funnel_retention_ms), 0, NULL, 7 * MS_DAY, MS_MIN,
     3650 * MS_DAY, 0, NULL, NULL,
     "event time a closed window's keys are kept before funneld deletes them; the hourly keys keep "
     "30 times as long"},

    {"churn.enabled", CF_ENUM, OFF(churn_enabled), 0, "on", 0, 0, 0, 0, "on|off", NULL,
     "the online churn model: labels, learning, scoring and alerts (docs/CHURN.md)"},
    {"churn.horizon", CF_DURATION, OFF(churn_horizon_ms), 0, NULL, 14 * MS_DAY, MS_MIN,
     3650 * MS_DAY, 0, NULL, NULL,
     "event-time silence after a user's last event that makes the user churned; inactivity "
     "checkpoints are scored at 1/8, 1/4, 3/8, 1/2 and 5/8 of it"},
    {"churn.alert_threshold", CF_STR, OFF(churn_alert_threshold), 0, "0.5", 0, 0, 0,
     CF_NONEMPTY | CF_RELOAD, NULL, check_probability,
     "risk (0..1, exclusive) at or above which a user is alerted"},
    {"churn.rearm_margin", CF_STR, OFF(churn_rearm_margin), 0, "0.1", 0, 0, 0,
     CF_NONEMPTY | CF_RELOAD, NULL, check_margin,
     "an alerted user is alerted again only after an event, or after its risk fell below "
     "alert_threshold minus this (0 <= margin < 1)"},
    {"churn.min_events", CF_INT, OFF(churn_min_events), 0, NULL, 3, 1, 1000000000, CF_RELOAD, NULL,
     NULL, "events a user must have had before it can be alerted"},
    {"churn.alert_cooldown", CF_DURATION, OFF(churn_alert_cooldown_ms), 0, NULL, 7 * MS_DAY, 0,
     3650 * MS_DAY, CF_RELOAD, NULL, NULL, "least event time between two alerts of one user"},
    {"churn.warmup_examples", CF_INT, OFF(churn_warmup_examples), 0, NULL, 5000, 0, 2000000000, 0,
     NULL, NULL, "no alert before the model has learned this many examples"},
    {"churn.alpha", CF_STR, OFF(churn_alpha), 0, "0.5", 0, 0, 0, CF_NONEMPTY, NULL,
     check_positive_real, "FTRL-Proximal learning rate (> 0, at most 100)"},
    {"churn.beta", CF_STR, OFF(churn_beta), 0, "1", 0, 0, 0, CF_NONEMPTY, NULL, check_nonneg_real,
     "FTRL-Proximal smoothing (0..100)"},
    {"churn.l1", CF_STR, OFF(churn_l1), 0, "0", 0, 0, 0, CF_NONEMPTY, NULL, check_nonneg_real,
     "L1 regularisation (0..100; larger: sparser weights)"},
    {"churn.l2", CF_STR, OFF(churn_l2), 0, "0.1", 0, 0, 0, CF_NONEMPTY, NULL, check_nonneg_real,
     "L2 regularisation (0..100)"},

    {"mf.enabled", CF_ENUM, OFF(mf_enabled), 0, "on", 0, 0, 0, 0, "on|off", NULL,
     "the online recommendation model: item and user factors learned from every event with an "
     "item, top-N lists per user, items in the churn alerts (docs/RECS.md)"},
    {"mf.k", CF_INT, OFF(mf_k), 0, NULL, 32, 1, 32, 0, NULL, NULL,
     "factors per user and item (a user state holds at most 32)"},
    {"mf.learning_rate", CF_STR, OFF(mf_learning_rate), 0, "0.05", 0, 0, 0, CF_NONEMPTY, NULL,
     check_rate, "SGD learning rate (above 0, at most 1)"},
    {"mf.regularisation", CF_STR, OFF(mf_regularisation), 0, "0.01", 0, 0, 0, CF_NONEMPTY, NULL,
     check_margin, "L2 regularisation of the factors (0 <= value < 1)"},
    {"mf.negatives", CF_INT, OFF(mf_negatives), 0, NULL, 4, 0, 32, 0, NULL, NULL,
     "sampled negatives per positive event, drawn from recent positives"},
    {"mf.weight_click", CF_STR, OFF(mf_weight_click), 0, "1", 0, 0, 0, CF_NONEMPTY, NULL,
     check_nonneg_real, "weight of a click as a positive (0..100)"},
    {"mf.weight_cart", CF_STR, OFF(mf_weight_cart), 0, "3", 0, 0, 0, CF_NONEMPTY, NULL,
     check_nonneg_real, "weight of a cart event (0..100)"},
    {"mf.weight_purchase", CF_STR, OFF(mf_weight_purchase), 0, "5", 0, 0, 0, CF_NONEMPTY, NULL,
     check_nonneg_real, "weight of a purchase (0..100)"},
    {"mf.max_items", CF_INT, OFF(mf_max_items), 0, NULL, 1000000, 1, 1 << 30, 0, NULL, NULL,
     "distinct items learned at most; events of further items are not learned (counted)"},
    {"mf.popularity_half_life", CF_DURATION, OFF(mf_popularity_half_life_ms), 0, NULL, 7 * MS_DAY,
     1000, 3650 * MS_DAY, 0, NULL, NULL,
     "event-time half-life of the decayed popularity (cold start and the baseline)"},
    {"mf.top_n", CF_INT, OFF(mf_top_n), 0, NULL, 10, 1, 100, 0, NULL, NULL,
     "items in a user's cached recommendations and in a churn alert"},
    {"mf.refresh", CF_DURATION, OFF(mf_refresh_ms), 0, NULL, MS_HOUR, 0, 3650 * MS_DAY, 0, NULL,
     NULL,
     "least event time between two refreshes of a user's cached recommendations (each scores "
     "every item)"},
    {"mf.cold_start_events", CF_INT, OFF(mf_cold_start_events), 0, NULL, 3, 0, 1000000, 0, NULL,
     NULL, "users with fewer events with an item get the popularity list"},
    {"mf.eval_every", CF_INT, OFF(mf_eval_every), 0, NULL, 1000, 0, 1000000, 0, NULL, NULL,
     "check every Nth positive against the user's top 10 before learning it (prequential "
     "recall@10 and NDCG@10; each check scores every item); 0 = never"},

    {"http.listen", CF_STR, OFF(http_listen), 0, "127.0.0.1:9108", 0, 0, 0, CF_NONEMPTY, NULL,
     check_listen,
     "address of the HTTP listener serving /metrics (Prometheus), /healthz and /readyz: "
     "IPv4:PORT or [IPv6]:PORT (port 0 picks one, logged), or off"},

    {"log.level", CF_ENUM, OFF(log_level), 0, "info", 0, 0, 0, CF_RELOAD, "error|warn|info|debug",
     NULL, "least severe level that is logged"},
    {"log.format", CF_ENUM, OFF(log_format), 0, "text", 0, 0, 0, CF_RELOAD, "text|json", NULL,
     "text: one line per event (timestamp, level, component, message); json: one JSON object "
     "per line (ts, level, component, msg) for log shippers"},
    {"log.progress_interval", CF_DURATION, OFF(log_progress_interval_ms), 0, NULL, 60000, 0, MS_DAY,
     CF_RELOAD, NULL, NULL,
     "how often a running funneld logs a progress line at info level (events, dead letters, "
     "lag, writes and their latency since the last line); 0 = never"},
};

const size_t cf_nkeys = sizeof cf_keys / sizeof cf_keys[0];
_Static_assert(sizeof cf_keys / sizeof cf_keys[0] <= CF_MAX_KEYS, "raise CF_MAX_KEYS");

/* ---------------------------------------------------------------- values */

char *const *cf_cstr_at(const fd_config *cfg, const struct cf_key *k)
{
    return (char *const *)((const char *)cfg + k->off);
}

int64_t cf_num_get(const fd_config *cfg, const struct cf_key *k)
{
    if (k->type == CF_INT)
        return *(const int *)((const char *)cfg + k->off);
    return *(const int64_t *)((const char *)cfg + k->off);
}

bool cf_is_string_type(enum cf_type t)
{
    return t == CF_STR || t == CF_PATH || t == CF_ENUM;
}

bool cf_parse_i64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == len)
        return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (!neg && v > (uint64_t)INT64_MAX)
        return false;
    if (neg && v > (uint64_t)INT64_MAX + 1)
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

const struct unit cf_dur_units[] = {{"ms", 1},      {"s", MS_SEC}, {"m", MS_MIN},
                                    {"h", MS_HOUR}, {"d", MS_DAY}, {NULL, 0}};
const struct unit cf_no_units[] = {{NULL, 0}};
const struct unit cf_size_units[] = {{"B", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}, {NULL, 0}};

/* "<int><unit>" or "<int>" (unit 1). 0 ok, -1 malformed, -2 overflow. */
int cf_parse_with_unit(const char *s, const struct unit *units, int64_t *out)
{
    size_t n = strlen(s), digits = 0;
    if (n && (s[0] == '-' || s[0] == '+'))
        digits = 1;
    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    int64_t v;
    if (!cf_parse_i64(s, digits, &v)) {
        /* all digits but unparsable: overflow */
        return digits == n && n > 1 ? -2 : -1;
    }
    if (digits == n) {
        *out = v;
        return 0;
    }
    for (const struct unit *u = units; u->suffix; u++) {
        if (strcmp(s + digits, u->suffix) == 0) {
            if (v > INT64_MAX / u->mult || v < INT64_MIN / u->mult)
                return -2;
            *out = v * u->mult;
            return 0;
        }
    }
    return -1;
}

/* Format v with the largest unit that divides it exactly ("30s", "1MiB"). */
static void format_with_unit(char *buf, size_t size, int64_t v, const struct unit *units)
{
    const struct unit *best = &units[0];
    for (const struct unit *u = units; u->suffix; u++)
        if (v != 0 && v % u->mult == 0)
            best = u;
    snprintf(buf, size, "%" PRId64 "%s", v / best->mult, best->suffix);
}

void cf_format_num(char *buf, size_t size, const struct cf_key *k, int64_t v)
{
    if (k->type == CF_DURATION)
        format_with_unit(buf, size, v, cf_dur_units);
    else if (k->type == CF_SIZE)
        format_with_unit(buf, size, v, cf_size_units);
    else
        snprintf(buf, size, "%" PRId64, v);
}

/* ------------------------------------------------------------ redis url */

static int url_fail(char *why, size_t why_size, const char *msg)
{
    snprintf(why, why_size, "%s", msg);
    return -1;
}

bool cf_all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int fd_config_parse_redis_url(const char *url, fd_redis_addr *out, char *why, size_t why_size)
{
    fd_redis_addr a;
    memset(&a, 0, sizeof a);
    int64_t v;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (path[0] != '/')
            return url_fail(why, why_size, "unix socket path must be absolute (unix:///path)");
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (plen < 2)
            return url_fail(why, why_size, "empty unix socket path");
        if (plen >= 108)
            return url_fail(why, why_size, "unix socket path too long (max 107 bytes)");
        memcpy(a.host, path, plen);
        a.host[plen] = 0;
        a.is_unix = 1;
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || !cf_all_digits(q + 4, strlen(q + 4)) ||
                !cf_parse_i64(q + 4, strlen(q + 4), &v) || v > 65535)
                return url_fail(why, why_size, "query must be ?db=N with N in 0..65535");
            a.db = (int)v;
        }
    } else if (strncmp(url, "redis://", 8) == 0) {
        const char *h = url + 8;
        if (strchr(h, '@'))
            return url_fail(why, why_size,
                            "credentials do not go in the URL; use redis.password_file or "
                            "redis.password_env");
        const char *hend;
        const char *hstart = h;
        if (h[0] == '[') {
            hend = strchr(h, ']');
            if (!hend)
                return url_fail(why, why_size, "unterminated [ipv6] host");
            hstart = h + 1;
            h = hend + 1;
        } else {
            hend = h + strcspn(h, ":/?");
            h = hend;
        }
        size_t hlen = (size_t)(hend - hstart);
        if (hlen == 0)
            return url_fail(why, why_size, "missing host (redis://host:port[/db])");
        if (hlen >= sizeof a.host)
            return url_fail(why, why_size, "host too long");
        memcpy(a.host, hstart, hlen);
        a.host[hlen] = 0;
        if (*h != ':')
            return url_fail(why, why_size, "missing :port (redis://host:port[/db])");
        h++;
        size_t plen = strcspn(h, "/");
        if (!cf_all_digits(h, plen) || !cf_parse_i64(h, plen, &v) || v < 1 || v > 65535)
            return url_fail(why, why_size, "port must be a number in 1..65535");
        a.port = (int)v;
        h += plen;
        if (*h == '/') {
            h++;
            if (*h) {
                if (!cf_all_digits(h, strlen(h)) || !cf_parse_i64(h, strlen(h), &v) || v > 65535)
                    return url_fail(why, why_size, "database must be a number in 0..65535");
                a.db = (int)v;
            }
        }
    } else {
        return url_fail(why, why_size, "expected redis://host:port[/db] or unix:///path[?db=N]");
    }
    if (out)
        *out = a;
    return 0;
}

static int check_redis_url(const char *val, char *why, size_t why_size)
{
    return fd_config_parse_redis_url(val, NULL, why, why_size);
}

/* ---------------------------------------------------------------- lists */

/* Split s at commas; calls fn(item, len, arg) for each item with blanks
 * trimmed. Returns the count or -1 when fn fails or an item is empty. */
static int split_list(const char *s, int (*fn)(const char *item, size_t len, int i, void *arg),
                      void *arg, char *why, size_t why_size)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *a = p;
        while (len && (*a == ' ' || *a == '\t')) {
            a++;
            len--;
        }
        while (len && (a[len - 1] == ' ' || a[len - 1] == '\t'))
            len--;
        if (!len) {
            snprintf(why, why_size, "item %d is empty", n + 1);
            return -1;
        }
        if (fn(a, len, n, arg) < 0)
            return -1;
        n++;
        if (!e)
            return n;
        p = e + 1;
    }
}

struct hl_acc {
    int64_t *out;
    char *why;
    size_t why_size;
};

static int hl_item(const char *item, size_t len, int i, void *arg)
{
    struct hl_acc *a = arg;
    char buf[32];
    if (i >= 4) {
        snprintf(a->why, a->why_size, "at most 4 half-lives");
        return -1;
    }
    int64_t v;
    if (len >= sizeof buf ||
        (memcpy(buf, item, len), buf[len] = '\0', cf_parse_with_unit(buf, cf_dur_units, &v) != 0) ||
        v <= 0) {
        snprintf(a->why, a->why_size, "half-life %d is not a positive duration (e.g. 1h, 7d)",
                 i + 1);
        return -1;
    }
    for (int j = 0; j < i; j++)
        if (a->out[j] == v) {
            snprintf(a->why, a->why_size, "half-life %d repeats half-life %d", i + 1, j + 1);
            return -1;
        }
    a->out[i] = v;
    return 0;
}

int fd_config_half_lives(const fd_config *cfg, int64_t out[4], char *why, size_t why_size)
{
    struct hl_acc a = {out, why, why_size};
    return split_list(cfg->features_half_lives, hl_item, &a, why, why_size);
}

static int check_half_lives(const char *val, char *why, size_t why_size)
{
    int64_t out[4];
    struct hl_acc a = {out, why, why_size};
    return split_list(val, hl_item, &a, why, why_size) < 0 ? -1 : 0;
}

struct cat_acc {
    char (*out)[257];
    int max;
    char *why;
    size_t why_size;
};

static int cat_item(const char *item, size_t len, int i, void *arg)
{
    struct cat_acc *a = arg;
    if (i >= a->max) {
        snprintf(a->why, a->why_size, "at most %d categories", a->max);
        return -1;
    }
    if (len > 256) {
        snprintf(a->why, a->why_size, "category %d is longer than 256 bytes", i + 1);
        return -1;
    }
    memcpy(a->out[i], item, len);
    a->out[i][len] = '\0';
    if (strcmp(a->out[i], "other") == 0) {
        snprintf(a->why, a->why_size, "category 'other' is reserved for the rest");
        return -1;
    }
    for (int j = 0; j < i; j++)
        if (strcmp(a->out[j], a->out[i]) == 0) {
            snprintf(a->why, a->why_size, "category %d repeats category %d", i + 1, j + 1);
            return -1;
        }
    return 0;
}

int fd_config_categories(const fd_config *cfg, char (*out)[257], int max, char *why,
                         size_t why_size)
{
    if (!cfg->funnel_categories || !*cfg->funnel_categories)
        return 0;
    struct cat_acc a = {out, max, why, why_size};
    return split_list(cfg->funnel_categories, cat_item, &a, why, why_size);
}

static int check_categories(const char *val, char *why, size_t why_size)
{
    if (!*val)
        return 0;
    char(*scratch)[257] = malloc(32 * sizeof *scratch);
    if (!scratch) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    struct cat_acc a = {scratch, 32, why, why_size};
    int rc = split_list(val, cat_item, &a, why, why_size) < 0 ? -1 : 0;
    free(scratch);
    return rc;
}

/* A decimal real number in [lo, hi] (exclusive ends where asked): the
 * churn model's parameters. Parsed again with fd_config_real. */
static int check_real(const char *val, double lo, double hi, bool lo_open, bool hi_open, char *why,
                      size_t why_size)
{
    char *end;
    double d = strtod(val, &end);
    if (end == val || *end || d != d) {
        snprintf(why, why_size, "\"%s\" is not a number", val);
        return -1;
    }
    if (d < lo || d > hi || (lo_open && d == lo) || (hi_open && d == hi)) {
        snprintf(why, why_size, "%s is out of range (%s%g .. %g%s)", val, lo_open ? "above " : "",
                 lo, hi, hi_open ? ", exclusive" : "");
        return -1;
    }
    return 0;
}

static int check_probability(const char *val, char *why, size_t why_size)
{
    return check_real(val, 0, 1, true, true, why, why_size);
}

static int check_margin(const char *val, char *why, size_t why_size)
{
    return check_real(val, 0, 1, false, true, why, why_size);
}

static int check_positive_real(const char *val, char *why, size_t why_size)
{
    return check_real(val, 0, 100, true, false, why, why_size);
}

static int check_nonneg_real(const char *val, char *why, size_t why_size)
{
    return check_real(val, 0, 100, false, false, why, why_size);
}

static int check_rate(const char *val, char *why, size_t why_size)
{
    return check_real(val, 0, 1, true, false, why, why_size);
}

/* The installed funneld.yaml ships "brokers: SET-ME": a fresh install must
 * not start on the in-process mock cluster and look healthy. */
static int check_brokers(const char *val, char *why, size_t why_size)
{
    if (strstr(val, "SET-ME")) {
        snprintf(why, why_size,
                 "not set yet: replace SET-ME with the Kafka bootstrap servers "
                 "(host:port,host:port); \"embedded\" runs an in-process mock cluster, for "
                 "demos and tests only");
        return -1;
    }
    return 0;
}

static int check_listen(const char *val, char *why, size_t why_size)
{
    return fd_http_check_listen(val, why, why_size);
}

double fd_config_real(const char *val)
{
    return val ? strtod(val, NULL) : 0.0;
}
