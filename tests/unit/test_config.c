/*
 * test_config.c - the config loader: defaults, the shipped conf/funneld.yaml,
 * one test per kind of error with its exact FILE:LINE:COLUMN: key prefix,
 * path resolution, kafka.properties pass-through, --print-config redaction
 * and round trip, and docs/CONFIG.md being in sync with the key table.
 *
 * `test_config --print-docs` prints the generated key reference that
 * docs/CONFIG.md embeds between its BEGIN/END GENERATED markers.
 */
#include "daemon/config.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "t.yaml"

static char err[1024];

/* Load yaml from a string as NAME; returns the loader's rc. */
static int load(fd_config *cfg, const char *yaml)
{
    return fd_config_load_buffer(cfg, NAME, yaml, strlen(yaml), err, sizeof err);
}

/* Expect the load to fail with exactly msg; the config must come back zeroed. */
static void expect_err(const char *yaml, const char *msg)
{
    fd_config cfg = {0};
    fd_config_defaults(&cfg); /* the failed load must free these (LSan checks) */
    int rc = load(&cfg, yaml);
    CHECK(rc == -1);
    CHECK_STR(err, msg);
    CHECK(cfg.kafka_brokers == NULL && cfg.source_path == NULL && cfg.kafka_n_props == 0);
    fd_config_free(&cfg);
}

/* Expect failure whose message starts with prefix. */
static void expect_err_prefix(const char *yaml, const char *prefix)
{
    fd_config cfg = {0};
    int rc = load(&cfg, yaml);
    CHECK(rc == -1);
    if (strncmp(err, prefix, strlen(prefix)) == 0) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "expected prefix \"%s\", got \"%s\"\n", prefix, err);
    }
    fd_config_free(&cfg);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = 0;
    fclose(f);
    return buf;
}

static char *print_to_string(const fd_config *cfg)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    fd_config_print(cfg, f);
    fclose(f);
    return out;
}

static void test_defaults(void)
{
    fd_config c = {0};
    fd_config_defaults(&c);
    CHECK_STR(c.source_path, "");
    CHECK_STR(c.kafka_brokers, "embedded");
    CHECK(c.kafka_partitions == 4);
    CHECK_STR(c.kafka_group_id, "funneld");
    CHECK_STR(c.kafka_topic_events, "events");
    CHECK_STR(c.kafka_topic_dlq, "events.dlq");
    CHECK_STR(c.kafka_topic_alerts, "churn-alerts");
    CHECK_STR(c.kafka_topic_metrics, "funnel-metrics");
    CHECK(c.kafka_n_props == 0);
    CHECK_STR(c.redis_url, "redis://127.0.0.1:6379/0");
    CHECK_STR(c.redis_password_file, "");
    CHECK_STR(c.redis_password_env, "FUNNELD_REDIS_PASSWORD");
    CHECK_STR(c.redis_key_prefix, "fd:v2:");
    CHECK(c.redis_connect_timeout_ms == 2000);
    CHECK(c.redis_command_timeout_ms == 5000);
    CHECK(c.redis_backoff_min_ms == 100);
    CHECK(c.redis_backoff_max_ms == 10000);
    CHECK(c.redis_flush_interval_ms == 200);
    CHECK_STR(c.input_format, "avro");
    CHECK_STR(c.input_schema, "schemas/event.avsc"); /* a buffer: not resolved */
    CHECK(c.input_n_schema_ids == 0);
    CHECK(c.input_max_message_bytes == 1024 * 1024);
    CHECK(c.input_max_future_skew_ms == 3600 * 1000);
    CHECK_STR(c.log_level, "info");
    fd_config_free(&c);

    /* an empty buffer, a comment-only one and a bare "---" are all defaults */
    const char *empties[] = {"", "# nothing\n", "---\n", "--- ~\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        CHECK(load(&c, empties[i]) == 0);
        CHECK_STR(c.kafka_brokers, "embedded");
        CHECK(c.redis_backoff_max_ms == 10000);
        CHECK_STR(c.source_path, NAME);
        fd_config_free(&c);
    }
    CHECK(fd_config_load_buffer(&c, "x", NULL, 0, err, sizeof err) == 0);
    fd_config_free(&c);
}

static void test_shipped_config(void)
{
    fd_config c = {0};
    /* as shipped: refused until the brokers are named, with the position */
    CHECK(fd_config_load(&c, "conf/funneld.yaml", err, sizeof err) == -1);
    CHECK_CONTAINS(err, "conf/funneld.yaml:");
    CHECK_CONTAINS(err, ": kafka.brokers: invalid value 'SET-ME': not set yet: replace SET-ME");
    /* with them named, everything else is the documented default */
    char *shipped = read_all("conf/funneld.yaml");
    char *at = shipped ? strstr(shipped, "brokers: SET-ME") : NULL;
    CHECK(at != NULL);
    FILE *f = at ? fopen("conf/.test_shipped.yaml", "w") : NULL;
    CHECK(f != NULL);
    if (!f) {
        free(shipped);
        return;
    }
    fwrite(shipped, 1, (size_t)(at - shipped), f);
    fputs("brokers: embedded", f);
    fputs(at + strlen("brokers: SET-ME"), f);
    fclose(f);
    free(shipped);
    int rc = fd_config_load(&c, "conf/.test_shipped.yaml", err, sizeof err);
    remove("conf/.test_shipped.yaml");
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "conf/funneld.yaml: %s\n", err);
        return;
    }
    CHECK_STR(c.source_path, "conf/.test_shipped.yaml");
    CHECK_STR(c.kafka_brokers, "embedded");
    CHECK_STR(c.redis_url, "redis://127.0.0.1:6379/0");
    CHECK_STR(c.input_format, "avro");
    CHECK_STR(c.input_schema, "conf/schemas/event.avsc"); /* resolved against conf/ */
    CHECK_STR(c.redis_password_file, "");
    CHECK_STR(c.redis_key_prefix, "fd:v2:");
    CHECK(c.redis_connect_timeout_ms == 2000);
    CHECK(c.redis_backoff_min_ms == 100);
    CHECK(c.input_max_message_bytes == 1048576);
    CHECK(c.input_max_future_skew_ms == 3600000);
    CHECK(c.kafka_n_props == 0 && c.input_n_schema_ids == 0);

    /* the shipped file states every default: it prints exactly like defaults
     * except for source_path, which print does not show */
    fd_config d = {0};
    fd_config_defaults(&d);
    /* default paths are relative to the file's directory, conf/ */
    char **paths[] = {&d.input_schema, &d.kafka_metrics_schema, &d.kafka_alerts_schema};
    for (size_t i = 0; i < 3; i++) {
        char *p = malloc(strlen(*paths[i]) + 6);
        if (p) {
            sprintf(p, "conf/%s", *paths[i]);
            free(*paths[i]);
            *paths[i] = p;
        }
    }
    char *a = print_to_string(&c), *b = print_to_string(&d);
    CHECK_STR(a, b);
    free(a);
    free(b);
    fd_config_free(&d);
    fd_config_free(&c);

    /* every key of the table appears in the shipped file, in its section */
    char *text = read_all("conf/funneld.yaml");
    CHECK(text != NULL);
    for (size_t i = 0; text && fd_config_key_name(i); i++) {
        const char *name = fd_config_key_name(i);
        const char *dot = strchr(name, '.');
        char sec[64], leaf[128];
        snprintf(sec, sizeof sec, "\n%.*s:\n", (int)(dot - name), name);
        snprintf(leaf, sizeof leaf, "\n  %s:", dot + 1);
        const char *s = strstr(text, sec);
        const char *l = s ? strstr(s, leaf) : NULL;
        /* the section ends at the next line starting with a letter */
        const char *next_sec = s ? s + strlen(sec) : NULL;
        while (next_sec && *next_sec &&
               !(next_sec[-1] == '\n' && next_sec[0] >= 'a' && next_sec[0] <= 'z'))
            next_sec++;
        if (s && l && (!next_sec || !*next_sec || l < next_sec)) {
            check_passed++;
        } else {
            check_failed++;
            fprintf(stderr, "conf/funneld.yaml lacks key %s\n", name);
        }
    }
    free(text);
    CHECK(fd_config_key_name(0) != NULL && strcmp(fd_config_key_name(0), "kafka.brokers") == 0);
    CHECK(fd_config_key_name(1000) == NULL);
}

static void test_values(void)
{
    fd_config c = {0};
    int rc = load(&c, "kafka:\n"
                      "  brokers: b1:9092,b2:9092\n"
                      "  partitions: 1024\n"
                      "redis:\n"
                      "  url: unix:///run/redis/redis.sock?db=3\n"
                      "  connect_timeout_ms: 30s\n"
                      "  command_timeout_ms: 1500\n"
                      "  backoff_min_ms: 1ms\n"
                      "  backoff_max_ms: 10m\n"
                      "  flush_interval_ms: 1m\n"
                      "  key_prefix: ''\n"
                      "input:\n"
                      "  format: confluent-avro\n"
                      "  max_message_bytes: 64KiB\n"
                      "  max_future_skew: 7d\n"
                      "log: {level: debug}\n");
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK_STR(c.kafka_brokers, "b1:9092,b2:9092");
    CHECK(c.kafka_partitions == 1024);
    CHECK_STR(c.redis_url, "unix:///run/redis/redis.sock?db=3");
    CHECK(c.redis_connect_timeout_ms == 30000);
    CHECK(c.redis_command_timeout_ms == 1500);
    CHECK(c.redis_backoff_min_ms == 1);
    CHECK(c.redis_backoff_max_ms == 600000);
    CHECK(c.redis_flush_interval_ms == 60000);
    CHECK_STR(c.redis_key_prefix, "");
    CHECK_STR(c.input_format, "confluent-avro");
    CHECK(c.input_max_message_bytes == 65536);
    CHECK(c.input_max_future_skew_ms == 7LL * 86400 * 1000);
    CHECK_STR(c.log_level, "debug");
    /* untouched keys keep their defaults */
    CHECK_STR(c.kafka_group_id, "funneld");
    CHECK_STR(c.input_schema, "schemas/event.avsc");
    fd_config_free(&c);

    CHECK(load(&c, "input:\n  max_message_bytes: 100MiB\n  max_future_skew: 0\n") == 0);
    CHECK(c.input_max_message_bytes == 100LL * 1024 * 1024);
    CHECK(c.input_max_future_skew_ms == 0);
    fd_config_free(&c);
    CHECK(load(&c, "input:\n  max_message_bytes: 64\n") == 0);
    CHECK(c.input_max_message_bytes == 64);
    fd_config_free(&c);
}

static void test_errors(void)
{
    /* unknown keys, with and without a hint */
    expect_err("kafka:\n  broker: x\n",
               NAME ":2:3: kafka.broker: unknown key (did you mean 'kafka.brokers'?)");
    expect_err("kafak:\n  brokers: x\n", NAME ":1:1: kafak: unknown key (did you mean 'kafka'?)");
    expect_err("kafka:\n  url: redis://h:1\n",
               NAME ":2:3: kafka.url: unknown key (did you mean 'redis.url'?)");
    expect_err("log:\n  level: info\nzzzzzz: 1\n", NAME ":3:1: zzzzzz: unknown key");
    expect_err("log: {level: info}\nkafka.brokers: x\n",
               NAME ":2:1: kafka.brokers: dotted keys are not supported; nest each part as a "
                    "mapping");
    expect_err("redis:\n  backoff_max: 1s\n",
               NAME ":2:3: redis.backoff_max: unknown key (did you mean 'redis.backoff_max_ms'?)");
    expect_err("log:\n  level:\n    deeper: 1\n",
               NAME ":3:5: log.level: expected a string, got a mapping");

    /* duplicates: a key, and a whole section */
    expect_err("log:\n  level: info\n  level: debug\n",
               NAME ":3:3: log.level: duplicate key (first at line 2)");
    expect_err("log: {level: info}\nlog: {level: warn}\n",
               NAME ":2:1: log: duplicate key (first at line 1)");

    /* wrong types */
    expect_err("kafka:\n  partitions: four\n",
               NAME ":2:15: kafka.partitions: expected an integer, got 'four'");
    expect_err("kafka:\n  partitions: 1.5\n",
               NAME ":2:15: kafka.partitions: expected an integer, got '1.5'");
    expect_err("kafka:\n  brokers: {a: 1}\n",
               NAME ":2:12: kafka.brokers: expected a string, got a mapping");
    expect_err("kafka:\n  brokers:\n    - a\n    - b\n",
               NAME ":3:5: kafka.brokers: expected a string, got a sequence");
    expect_err("kafka:\n  partitions: [1]\n",
               NAME ":2:15: kafka.partitions: expected an integer, got a sequence");
    expect_err("kafka: 5\n", NAME ":1:8: kafka: expected a mapping, got a scalar");
    expect_err("kafka: [a]\n", NAME ":1:8: kafka: expected a mapping, got a sequence");
    expect_err("kafka:\n  properties: lz4\n",
               NAME ":2:15: kafka.properties: expected a mapping, got a scalar");
    expect_err("- a\n- b\n", NAME ":1:1: -: top level must be a mapping, got a sequence");
    expect_err("hello\n", NAME ":1:1: -: top level must be a mapping, got a scalar");
    expect_err("? [a, b]\n: c\n", NAME ":1:3: -: keys must be scalars, got a sequence");

    /* missing and empty values */
    expect_err("kafka:\n  brokers:\n  group_id: g\n", NAME ":2:11: kafka.brokers: missing value");
    expect_err("kafka:\n  brokers: ~\n", NAME ":2:12: kafka.brokers: missing value");
    expect_err("kafka:\n", NAME ":1:7: kafka: missing value");
    expect_err("kafka:\n  brokers: ''\n", NAME ":2:12: kafka.brokers: must not be empty");
    expect_err("kafka:\n  brokers: \"a\\0b\"\n",
               NAME ":2:12: kafka.brokers: value contains a NUL byte");

    /* out of range, low and high, per type */
    expect_err("kafka:\n  partitions: 0\n",
               NAME ":2:15: kafka.partitions: out of range: 0 (must be 1..1024)");
    expect_err("kafka:\n  partitions: 1025\n",
               NAME ":2:15: kafka.partitions: out of range: 1025 (must be 1..1024)");
    expect_err("kafka:\n  partitions: -3\n",
               NAME ":2:15: kafka.partitions: out of range: -3 (must be 1..1024)");
    expect_err("kafka:\n  partitions: 99999999999999999999999\n",
               NAME ":2:15: kafka.partitions: out of range: 99999999999999999999999 (must be "
                    "1..1024)");
    expect_err("redis:\n  connect_timeout_ms: 0\n",
               NAME ":2:23: redis.connect_timeout_ms: out of range: 0ms (must be 1ms..10m)");
    expect_err("redis:\n  connect_timeout_ms: 11m\n",
               NAME ":2:23: redis.connect_timeout_ms: out of range: 11m (must be 1ms..10m)");
    expect_err("input:\n  max_future_skew: 31d\n",
               NAME ":2:20: input.max_future_skew: out of range: 31d (must be 0ms..30d)");
    expect_err("input:\n  max_future_skew: 9999999999999999d\n",
               NAME ":2:20: input.max_future_skew: out of range: 9999999999999999d (must be "
                    "0ms..30d)");
    expect_err("input:\n  max_message_bytes: 63\n",
               NAME ":2:22: input.max_message_bytes: out of range: 63B (must be 64B..100MiB)");
    expect_err("input:\n  max_message_bytes: 101MiB\n",
               NAME ":2:22: input.max_message_bytes: out of range: 101MiB (must be "
                    "64B..100MiB)");

    /* malformed durations and sizes */
    expect_err("redis:\n  flush_interval_ms: 5 s\n",
               NAME ":2:22: redis.flush_interval_ms: invalid duration '5 s' (integer "
                    "milliseconds or a number with unit ms, s, m, h, d)");
    expect_err_prefix("redis:\n  flush_interval_ms: 1.5s\n",
                      NAME ":2:22: redis.flush_interval_ms: invalid duration '1.5s'");
    expect_err_prefix("redis:\n  flush_interval_ms: s\n",
                      NAME ":2:22: redis.flush_interval_ms: invalid duration 's'");
    expect_err_prefix("redis:\n  flush_interval_ms: 10sec\n",
                      NAME ":2:22: redis.flush_interval_ms: invalid duration '10sec'");
    expect_err("input:\n  max_message_bytes: 1MB\n",
               NAME ":2:22: input.max_message_bytes: invalid size '1MB' (integer bytes or a "
                    "number with unit B, KiB, MiB, GiB)");
    expect_err_prefix("input:\n  max_message_bytes: KiB\n",
                      NAME ":2:22: input.max_message_bytes: invalid size 'KiB'");

    /* enums */
    expect_err("input:\n  format: xml\n",
               NAME ":2:11: input.format: invalid value 'xml' (expected one of: "
                    "avro|confluent-avro|json)");
    expect_err("log:\n  level: verbose\n",
               NAME ":2:10: log.level: invalid value 'verbose' (expected one of: "
                    "error|warn|info|debug)");
    expect_err("log:\n  level: INFO\n",
               NAME ":2:10: log.level: invalid value 'INFO' (expected one of: "
                    "error|warn|info|debug)");

    /* redis.url shapes */
    expect_err("redis:\n  url: http://h:1\n",
               NAME ":2:8: redis.url: invalid value 'http://h:1': expected "
                    "redis://host:port[/db] or unix:///path[?db=N]");
    expect_err("redis:\n  url: redis://h\n",
               NAME ":2:8: redis.url: invalid value 'redis://h': missing :port "
                    "(redis://host:port[/db])");
    expect_err_prefix("redis:\n  url: redis://h:0/0\n",
                      NAME ":2:8: redis.url: invalid value 'redis://h:0/0': port must be");
    expect_err_prefix("redis:\n  url: redis://h:6379/x\n",
                      NAME ":2:8: redis.url: invalid value 'redis://h:6379/x': database");
    expect_err_prefix("redis:\n  url: redis://:pw@h:6379\n", NAME
                      ":2:8: redis.url: invalid value 'redis://<redacted>@h:6379': credentials");
    expect_err_prefix("redis:\n  url: unix://run/r.sock\n",
                      NAME ":2:8: redis.url: invalid value 'unix://run/r.sock': unix socket "
                           "path must be absolute");
    expect_err_prefix("redis:\n  url: unix:///r.sock?database=1\n",
                      NAME ":2:8: redis.url: invalid value 'unix:///r.sock?database=1': query");

    /* YAML syntax errors: problem mark, enclosing key */
    expect_err("kafka:\n  brokers: \"abc\n",
               NAME ":3:1: kafka.brokers: YAML syntax error: found unexpected end of stream "
                    "while scanning a quoted scalar");
    expect_err_prefix("kafka:\n  brokers: a\n\tgroup_id: b\n", NAME ":3:1: kafka");
    expect_err_prefix("kafka: {brokers: a\n", NAME ":2:1: kafka");
    expect_err("kafka:\n  brokers: x\n y: 1\n",
               NAME ":3:2: -: YAML syntax error: did not find expected key while parsing a "
                    "block mapping");
    expect_err_prefix("log:\n  level: \xff\xfe\n", NAME ":2:10: ");

    /* aliases and documents */
    expect_err("kafka:\n  brokers: &b x\n  group_id: *b\n",
               NAME ":3:13: kafka.group_id: aliases are not supported");
    expect_err("---\nlog: {level: info}\n---\nlog: {level: info}\n",
               NAME ":3:1: -: only one YAML document is allowed");

    /* the cross check */
    expect_err("redis:\n  backoff_min_ms: 5s\n  backoff_max_ms: 1s\n",
               NAME ":3:19: redis.backoff_max_ms: redis.backoff_min_ms (5s) must not exceed "
                    "redis.backoff_max_ms (1s)");
    expect_err("redis:\n  backoff_min_ms: 20s\n",
               NAME ":2:19: redis.backoff_min_ms: redis.backoff_min_ms (20s) must not exceed "
                    "redis.backoff_max_ms (10s)");

    /* maps */
    expect_err("kafka:\n  properties:\n    a: 1\n    a: 2\n",
               NAME ":4:5: kafka.properties.a: duplicate key");
    expect_err("kafka:\n  properties:\n    a: [1]\n",
               NAME ":3:8: kafka.properties.a: expected a scalar, got a sequence");
    expect_err("kafka:\n  properties:\n    a:\n", NAME ":3:7: kafka.properties.a: missing value");
    expect_err("input:\n  schema_ids:\n    x: a.avsc\n",
               NAME ":3:5: input.schema_ids.x: schema id must be an integer in 0..2147483647, "
                    "got 'x'");
    expect_err_prefix("input:\n  schema_ids:\n    -1: a.avsc\n",
                      NAME ":3:5: input.schema_ids.-1: schema id must be");
    expect_err("input:\n  schema_ids:\n    1: a.avsc\n    01: b.avsc\n",
               NAME ":4:5: input.schema_ids.01: duplicate schema id 1");
    expect_err("input:\n  schema_ids:\n    1: ''\n",
               NAME ":3:8: input.schema_ids.1: must not be empty");

    /* too many properties: the 65th entry is on line 67 */
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof big, "kafka:\n  properties:\n");
    for (int i = 0; i <= FD_CONFIG_MAX_PROPS; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "    p%d: v\n", i);
    expect_err(big, NAME ":67:5: kafka.properties.p64: too many properties (max 64)");
    n = (size_t)snprintf(big, sizeof big, "input:\n  schema_ids:\n");
    for (int i = 0; i <= FD_CONFIG_MAX_SCHEMA_IDS; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "    %d: s.avsc\n", i);
    expect_err(big, NAME ":35:5: input.schema_ids.32: too many schema ids (max 32)");

    /* a file that does not exist */
    fd_config c = {0};
    CHECK(fd_config_load(&c, "/nonexistent/funneld.yaml", err, sizeof err) == -1);
    CHECK_STR(err, "/nonexistent/funneld.yaml:1:1: -: cannot open: No such file or directory");
    CHECK(c.kafka_brokers == NULL);
    fd_config_free(&c);

    /* errors in a file carry the file's name */
    char dir[] = "/tmp/test_config_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs("# comment\nlog:\n  level: loud\n", f);
    fclose(f);
    CHECK(fd_config_load(&c, path, err, sizeof err) == -1);
    char want[512];
    snprintf(want, sizeof want,
             "%s:3:10: log.level: invalid value 'loud' (expected one of: "
             "error|warn|info|debug)",
             path);
    CHECK_STR(err, want);
    unlink(path);
    rmdir(dir);

    /* a tiny errstr is truncated, not overrun */
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(fd_config_load_buffer(&c, NAME, "zzz: 1", 6, small, 5) == -1);
    CHECK_STR(small, "t.ya");
    CHECK(small[5] == 'x');
}

static void test_billion_laughs(void)
{
    const char *lol = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                      "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                      "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                      "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                      "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                      "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n";
    expect_err_prefix(lol, NAME ":1:1: a: unknown key");
    const char *lol2 = "kafka:\n  properties: &p {a: 1}\nredis:\n  url: *p\n";
    expect_err(lol2, NAME ":4:8: redis.url: aliases are not supported");
}

static void test_paths(void)
{
    char dir[] = "/tmp/test_config_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], want[512];
    snprintf(path, sizeof path, "%s/f.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs("input:\n"
          "  schema: s.avsc\n"
          "  schema_ids:\n"
          "    7: /abs/x.avsc\n"
          "    8: sub/y.avsc\n"
          "redis:\n"
          "  password_file: pw\n",
          f);
    fclose(f);
    fd_config c = {0};
    CHECK(fd_config_load(&c, path, err, sizeof err) == 0);
    CHECK_STR(c.source_path, path);
    snprintf(want, sizeof want, "%s/s.avsc", dir);
    CHECK_STR(c.input_schema, want);
    CHECK(c.input_n_schema_ids == 2);
    CHECK(c.input_schema_ids[0].id == 7);
    CHECK_STR(c.input_schema_ids[0].path, "/abs/x.avsc");
    CHECK(c.input_schema_ids[1].id == 8);
    snprintf(want, sizeof want, "%s/sub/y.avsc", dir);
    CHECK_STR(c.input_schema_ids[1].path, want);
    snprintf(want, sizeof want, "%s/pw", dir);
    CHECK_STR(c.redis_password_file, want);
    /* the printed config shows the password file path as-is */
    char *out = print_to_string(&c);
    CHECK_CONTAINS(out, want);
    free(out);
    fd_config_free(&c);
    unlink(path);
    rmdir(dir);

    /* a file in the working directory: nothing is prefixed */
    CHECK(load(&c, "input:\n  schema: s.avsc\n  schema_ids: {3: a/b.avsc}\n") == 0);
    CHECK_STR(c.input_schema, "s.avsc");
    CHECK_STR(c.input_schema_ids[0].path, "a/b.avsc");
    CHECK_STR(c.redis_password_file, "");
    fd_config_free(&c);
}

static void test_properties(void)
{
    fd_config c = {0};
    int rc = load(&c, "kafka:\n"
                      "  properties:\n"
                      "    compression.codec: lz4\n"
                      "    linger.ms: 5\n"
                      "    enable.idempotence: true\n"
                      "    batch.num.messages: \"10000\"\n"
                      "    queue.buffering.max.kbytes: 1048576.5\n"
                      "    sasl.password: hunter2\n"
                      "    ssl.keystore.password: ks-pass-9\n"
                      "    client.Secret.x: s3cr3t\n"
                      "    sasl.oauthbearer.config: tok-abc\n"
                      "    my.key: k3y-material\n"
                      "    my.keyring: visible-ring\n");
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK(c.kafka_n_props == 11);
    CHECK_STR(c.kafka_props[0].key, "compression.codec");
    CHECK_STR(c.kafka_props[0].value, "lz4");
    CHECK_STR(c.kafka_props[1].key, "linger.ms");
    CHECK_STR(c.kafka_props[1].value, "5");
    CHECK_STR(c.kafka_props[2].value, "true");
    CHECK_STR(c.kafka_props[3].value, "10000");
    CHECK_STR(c.kafka_props[4].value, "1048576.5");
    CHECK_STR(c.kafka_props[5].value, "hunter2"); /* stored in clear, only printing redacts */

    char *out = print_to_string(&c);
    CHECK_CONTAINS(out, "\"sasl.password\": \"<redacted>\"");
    CHECK_CONTAINS(out, "\"my.key\": \"<redacted>\"");
    CHECK_CONTAINS(out, "\"compression.codec\": \"lz4\"");
    CHECK_CONTAINS(out, "\"linger.ms\": \"5\"");
    CHECK_CONTAINS(out, "\"my.keyring\": \"visible-ring\"");
    CHECK(strstr(out, "hunter2") == NULL);
    CHECK(strstr(out, "ks-pass-9") == NULL);
    CHECK(strstr(out, "s3cr3t") == NULL);
    CHECK(strstr(out, "tok-abc") == NULL);
    CHECK(strstr(out, "k3y-material") == NULL);

    /* the printed config loads back to the same printed config */
    fd_config d = {0};
    rc = load(&d, out);
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "%s\n%s\n", err, out);
    char *out2 = print_to_string(&d);
    CHECK_STR(out2, out);
    CHECK(d.kafka_n_props == 11);
    free(out2);
    fd_config_free(&d);
    free(out);
    fd_config_free(&c);
}

static void test_print(void)
{
    fd_config c = {0};
    CHECK(load(&c, "kafka:\n  brokers: \"we\\\"ird\\\\\"\n"
                   "input:\n  format: json\n  schema_ids: {5: x.avsc}\n"
                   "redis:\n  connect_timeout_ms: 90000\n") == 0);
    char *out = print_to_string(&c);
    CHECK_CONTAINS(out, "kafka:\n  brokers: \"we\\\"ird\\\\\"\n  partitions: 4\n");
    CHECK_CONTAINS(out, "\nredis:\n  url: \"redis://127.0.0.1:6379/0\"\n");
    CHECK_CONTAINS(out, "  connect_timeout_ms: \"90s\"\n");
    CHECK_CONTAINS(out, "  properties: {}\n");
    CHECK_CONTAINS(out, "  schema_ids:\n    5: \"x.avsc\"\n");
    CHECK_CONTAINS(out, "  max_message_bytes: \"1MiB\"\n");
    CHECK_CONTAINS(out, "\nlog:\n  level: \"info\"\n");
    fd_config d = {0};
    CHECK(load(&d, out) == 0);
    CHECK_STR(d.kafka_brokers, "we\"ird\\");
    CHECK(d.redis_connect_timeout_ms == 90000);
    CHECK(d.input_n_schema_ids == 1 && d.input_schema_ids[0].id == 5);
    fd_config_free(&d);
    free(out);
    fd_config_free(&c);

    /* characters a YAML reader would refuse or fold are escaped, and the
     * printed value loads back byte for byte */
    const char *odd =
        "kafka:\n  group_id: \"a\\x01\\u0085\\u2028\\ufeff\\uffff\\u00e9\\U0001F600\\t\"\n";
    CHECK(load(&c, odd) == 0);
    out = print_to_string(&c);
    CHECK_CONTAINS(out,
                   "group_id: \"a\\x01\\u0085\\u2028\\ufeff\\uffff\xc3\xa9\xf0\x9f\x98\x80\\x09\"");
    CHECK(load(&d, out) == 0);
    CHECK_STR(d.kafka_group_id, c.kafka_group_id);
    fd_config_free(&d);
    free(out);
    fd_config_free(&c);
}

static void test_redis_url_parse(void)
{
    fd_redis_addr a;
    char why[128];
    CHECK(fd_config_parse_redis_url("redis://10.0.0.1:6380/2", &a, why, sizeof why) == 0);
    CHECK(!a.is_unix && a.port == 6380 && a.db == 2);
    CHECK_STR(a.host, "10.0.0.1");
    CHECK(fd_config_parse_redis_url("redis://[::1]:6379", &a, why, sizeof why) == 0);
    CHECK_STR(a.host, "::1");
    CHECK(a.port == 6379 && a.db == 0);
    CHECK(fd_config_parse_redis_url("unix:///run/r.sock?db=4", &a, why, sizeof why) == 0);
    CHECK(a.is_unix && a.db == 4 && a.port == 0);
    CHECK_STR(a.host, "/run/r.sock");
    CHECK(fd_config_parse_redis_url("redis://h:65536", &a, why, sizeof why) == -1);
    CHECK_CONTAINS(why, "port");
    CHECK(fd_config_parse_redis_url("redis://:6379/0", &a, why, sizeof why) == -1);
    CHECK_CONTAINS(why, "missing host");
}

static void test_free(void)
{
    fd_config_free(NULL);
    fd_config z = {0};
    memset(&z, 0, sizeof z);
    fd_config_free(&z);
    fd_config c = {0};
    CHECK(load(&c, "kafka: {properties: {a: b}}\ninput: {schema_ids: {1: x}}\n") == 0);
    fd_config_free(&c);
    CHECK(c.kafka_brokers == NULL && c.kafka_props[0].key == NULL && c.kafka_n_props == 0);
    CHECK(c.input_schema_ids[0].path == NULL && c.source_path == NULL);
    fd_config_free(&c); /* second free is a no-op */

    /* loading over defaults or over a loaded config frees what it replaces
     * (a leak here fails under LSan) */
    fd_config_defaults(&c);
    CHECK(load(&c, "kafka: {properties: {a: b, c: d}}\n") == 0);
    CHECK(load(&c, "input: {schema_ids: {1: x}}\nlog: {level: warn}\n") == 0);
    CHECK(c.kafka_n_props == 0 && c.kafka_props[0].key == NULL);
    CHECK_STR(c.log_level, "warn");
    CHECK(load(&c, "log: {level: loud}\n") == -1);
    CHECK(c.log_level == NULL && c.input_schema_ids[0].path == NULL);
    fd_config_defaults(&c);
    CHECK(fd_config_load(&c, "/nonexistent.yaml", err, sizeof err) == -1);
    CHECK(c.kafka_brokers == NULL);
    /* printing a freed (zeroed) config prints empty strings, not a crash */
    char *out = print_to_string(&c);
    CHECK_CONTAINS(out, "  brokers: \"\"\n");
    free(out);
    /* no error buffer at all */
    CHECK(fd_config_load_buffer(&c, NAME, "zzz: 1", 6, NULL, 0) == -1);
    CHECK(fd_config_load(&c, "/nonexistent.yaml", NULL, 0) == -1);
}

/* docs/CONFIG.md embeds fd_config_print_docs() verbatim. */
/* features.half_lives and funnel.categories: a YAML list or a string. */
static void test_lists(void)
{
    fd_config c = {0};
    CHECK(load(&c, "features:\n  half_lives: [1h, 7d, 90m]\nfunnel:\n  categories: [books, \"toys "
                   "& games\"]\n  window: 5m\n") == 0);
    int64_t hl[4];
    char why[128], cats[32][257];
    CHECK(fd_config_half_lives(&c, hl, why, sizeof why) == 3);
    CHECK(hl[0] == 3600000 && hl[1] == 7 * 86400000LL && hl[2] == 90 * 60000);
    CHECK(fd_config_categories(&c, cats, 32, why, sizeof why) == 2);
    CHECK_STR(cats[1], "toys & games");
    CHECK(c.funnel_window_ms == 300000);
    fd_config_free(&c);
    CHECK(load(&c, "features:\n  half_lives: \" 1d , 30d\"\n") == 0);
    CHECK(fd_config_half_lives(&c, hl, why, sizeof why) == 2 && hl[1] == 30 * 86400000LL);
    CHECK(fd_config_categories(&c, cats, 32, why, sizeof why) == 0);
    fd_config_free(&c);
    expect_err("features:\n  half_lives: [1h, 1h]\n",
               NAME ":2:15: features.half_lives: invalid value '1h,1h': half-life 2 repeats "
                    "half-life 1");
    expect_err("features:\n  half_lives: [1h, 2h, 3h, 4h, 5h]\n",
               NAME ":2:15: features.half_lives: invalid value '1h,2h,3h,4h,5h': at most 4 "
                    "half-lives");
    expect_err("features:\n  half_lives: [1h, soon]\n",
               NAME ":2:15: features.half_lives: invalid value '1h,soon': half-life 2 is not a "
                    "positive duration (e.g. 1h, 7d)");
    expect_err("features:\n  half_lives: [1h, {a: 1}]\n",
               NAME ":2:20: features.half_lives: expected a scalar list item, got a mapping");
    expect_err("funnel:\n  categories: [a, other]\n",
               NAME ":2:15: funnel.categories: invalid value 'a,other': category 'other' is "
                    "reserved for the rest");
    expect_err("funnel:\n  window: 7m\n",
               NAME ":2:11: funnel.window: 7m does not divide one hour (the hourly roll-up sums "
                    "whole windows)");
    expect_err("session:\n  gap: 0s\n",
               NAME ":2:8: session.gap: out of range: 0ms (must be 1s..7d)");
}

static void test_docs_in_sync(void)
{
    char *doc = read_all("docs/CONFIG.md");
    CHECK(doc != NULL);
    char *gen = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&gen, &len);
    fd_config_print_docs(f);
    fclose(f);
    CHECK_CONTAINS(gen, "| `kafka.partitions` | integer | `4` | 1 .. 1024 |");
    CHECK_CONTAINS(gen, "| `input.format` | enum | `\"avro\"` | avro, confluent-avro, json |");
    if (doc && strstr(doc, gen)) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "docs/CONFIG.md is out of date: regenerate the table with "
                        "`test_config --print-docs`\n");
    }
    for (size_t i = 0; doc && fd_config_key_name(i); i++)
        CHECK_CONTAINS(doc, fd_config_key_name(i));
    free(gen);
    free(doc);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-docs") == 0) {
        fd_config_print_docs(stdout);
        return 0;
    }
    test_defaults();
    test_shipped_config();
    test_values();
    test_errors();
    test_billion_laughs();
    test_paths();
    test_properties();
    test_print();
    test_redis_url_parse();
    test_free();
    test_lists();
    test_docs_in_sync();
    return check_report();
}
