/*
 * cmd_gen.c - `funnelctl gen`: the synthetic clickstream written to Kafka or
 * to a framed file, with the ground truth as JSON.
 *
 * Why it is built this way:
 *
 * - The generator (tools/gen.c) is pure; this file is the edge: options,
 *   the codec, the sink, the clock (only for --rate and the progress line),
 *   and the truth file. Event content never depends on the clock.
 *
 * - The Kafka sink never drops. A full local queue is answered by serving
 *   delivery reports (rd_kafka_poll) and retrying the same message; every
 *   delivery report is checked, and one failure stops the run with exit 1
 *   after the queue has been flushed. The key is the user id, so a
 *   partition owns its users as the daemon expects. lz4 keeps the mock
 *   cluster's ~5 MiB per-partition log from silently dropping old data.
 *
 * - The framed file ("u32 BE key length, key, u32 BE value length, value")
 *   is trivially replayable by another producer (tests/integration/
 *   produce_framed.py), so tests can load a topic with a client that shares
 *   no code with funneld.
 *
 * - The truth is written by hand as streaming JSON (one user or minute per
 *   line) into a temporary file that is renamed into place only when every
 *   event was delivered: a truth file that exists always matches the
 *   output. 200k users take a few hundred milliseconds this way.
 *
 * - The session and funnel part of the truth (tools/gen_truth.c) sees every
 *   event written, in the order written, which is each partition's offset
 *   order: the order funneld applies them in. Its options mirror the
 *   daemon's configuration keys so a test can set both the same way.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "pipeline/codec.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/gen.h"
#include "tools/gen_truth.h"

#define MAX_PROPS 32

typedef struct gen_args {
    fd_gen_opts g;
    double rate;
    int format;
    const char *schema;
    int32_t schema_id;
    const char *brokers, *topic, *out, *truth, *latent;
    const char *props[MAX_PROPS]; /* "key=value" for librdkafka */
    int n_props;
    fd_truth_opts t;                                 /* sessions and funnel truth */
    char cat_buf[FD_TRUTH_MAX_CATEGORIES * 64 + 64]; /* --categories, split in place */
    const char *cats[FD_TRUTH_MAX_CATEGORIES];
} gen_args;

typedef struct sink {
    FILE *f;
    bool close_f;
    rd_kafka_t *rk;
    const char *topic;
    uint64_t delivered, failed;
    char first_error[256];
} sink;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: funnelctl gen [OPTIONS] (--out FILE | --brokers LIST --topic T)\n"
            "\n"
            "Deterministic synthetic clickstream (click -> cart -> purchase sessions of users\n"
            "with latent tastes, heavy users, churners) with its ground truth.\n"
            "\n"
            "model:\n"
            "  --seed N              PRNG seed (default 1)\n"
            "  --users N             users u1..uN (default 10000)\n"
            "  --items N             items i1..iN (default 2000)\n"
            "  --events N            events to emit (default 100000)\n"
            "  --start TIME          event time of the start: epoch ms or RFC 3339\n"
            "                        (default 2026-01-01T00:00:00Z)\n"
            "  --span DURATION       rough event-time length of the stream: N[ms|s|m|h|d]\n"
            "                        (default 7d)\n"
            "  --max-disorder-ms N   emit out of order by at most N ms (default 0)\n"
            "  --churn-fraction F    share of users that churn, 0..1 (default 0.2)\n"
            "output:\n"
            "  --format F            avro | confluent-avro | json (default avro)\n"
            "  --schema PATH         Avro schema (default conf/schemas/event.avsc)\n"
            "  --schema-id N         confluent-avro schema id (default 1)\n"
            "  --out FILE            framed file (u32 BE key len, key, u32 BE value len,\n"
            "                        value); - = stdout\n"
            "  --brokers LIST        Kafka bootstrap servers (with --topic); key = user id\n"
            "  --topic T             Kafka topic\n"
            "  -X, --producer-prop K=V  extra librdkafka producer property (repeatable)\n"
            "  --rate N              events per second, 0 = as fast as possible (default 0)\n"
            "truth:\n"
            "  --truth FILE          ground truth JSON (users, minutes, churn, totals,\n"
            "                        sessions and funnel windows as funneld computes them)\n"
            "  --truth-partitions N  partitions of the topic funneld reads, for the\n"
            "                        per-partition watermark (default 4)\n"
            "  --session-gap D       session.gap of funneld (default 30m)\n"
            "  --window D            funnel.window, must divide 1h (default 1m)\n"
            "  --allowed-lateness D  funnel.allowed_lateness (default 2m)\n"
            "  --categories LIST     funnel.categories: up to 32 names, comma-separated\n"
            "                        (default none: no category breakdown)\n"
            "  --truth-latent FILE   latent user/item vectors, JSON lines\n"
            "  -h, --help            this help\n"
            "\n"
            "Exit status: 0 ok, 1 runtime error (delivery failed, I/O), 2 usage error.\n");
}

static int bad_value(const char *opt, const char *val, const char *expect)
{
    fprintf(stderr, "funnelctl gen: %s: invalid value '%s' (expected %s)\n", opt, val, expect);
    return -1;
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    return fd_cli_parse_u64("funnelctl gen", opt, s, min, max, out);
}

/* "N" (ms) or "N<unit>" with unit ms|s|m|h|d. */
static int parse_duration(const char *opt, const char *s, int64_t *out)
{
    const char *expect = "a duration like 90000, 30s, 15m, 12h or 7d";
    char *end;
    errno = 0;
    if (!*s || *s == '-' || *s == '+')
        return bad_value(opt, s, expect);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return bad_value(opt, s, expect);
    int64_t mul;
    if (!*end || !strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else if (!strcmp(end, "d"))
        mul = 86400000;
    else
        return bad_value(opt, s, expect);
    if (v > (unsigned long long)(INT64_MAX / mul))
        return bad_value(opt, s, expect);
    *out = (int64_t)v * mul;
    return 0;
}

/* Epoch ms, or RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)". */
static int parse_time(const char *opt, const char *s, int64_t *out)
{
    const char *expect = "epoch milliseconds or RFC 3339 like 2026-01-01T00:00:00Z";
    if (*s >= '0' && *s <= '9' && strspn(s, "0123456789") == strlen(s)) {
        uint64_t v;
        if (parse_u64(opt, s, 0, (uint64_t)INT64_MAX, &v) < 0)
            return -1;
        *out = (int64_t)v;
        return 0;
    }
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return bad_value(opt, s, expect);
    const char *p = s + n;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        if (!digits)
            return bad_value(opt, s, expect);
        for (; digits < 3; digits++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
            return bad_value(opt, s, expect);
        off = (oh * 60 + om) * 60000LL * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return bad_value(opt, s, expect);
    }
    if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
        return bad_value(opt, s, expect);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    *out = (int64_t)t * 1000 + frac - off;
    if (*out < 0)
        return bad_value(opt, s, expect);
    return 0;
}

/* "c1,c2,..." into a->cats (empty string: none). */
static int parse_categories(gen_args *a, const char *opt, const char *s)
{
    const char *expect = "up to 32 distinct non-empty names but \"other\", comma-separated";
    if (strlen(s) >= sizeof a->cat_buf)
        return bad_value(opt, s, expect);
    memcpy(a->cat_buf, s, strlen(s) + 1);
    a->t.n_categories = 0;
    a->t.categories = a->cats;
    if (!*s)
        return 0;
    for (char *p = a->cat_buf;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (!*p || a->t.n_categories == FD_TRUTH_MAX_CATEGORIES || !strcmp(p, "other"))
            return bad_value(opt, s, expect);
        for (size_t i = 0; i < a->t.n_categories; i++)
            if (!strcmp(a->cats[i], p))
                return bad_value(opt, s, expect);
        a->cats[a->t.n_categories++] = p;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

enum {
    O_SEED = 1000,
    O_USERS,
    O_ITEMS,
    O_EVENTS,
    O_RATE,
    O_FORMAT,
    O_SCHEMA,
    O_SCHEMA_ID,
    O_START,
    O_SPAN,
    O_DISORDER,
    O_CHURN,
    O_BROKERS,
    O_TOPIC,
    O_OUT,
    O_TRUTH,
    O_LATENT,
    O_T_PARTS,
    O_T_GAP,
    O_T_WINDOW,
    O_T_LATE,
    O_T_CATS,
};

/* Returns 0, 1 for --help, or -1 after printing the error. */
static int parse_args(int argc, char **argv, gen_args *a)
{
    static const struct option opts[] = {
        {"seed", required_argument, 0, O_SEED},
        {"users", required_argument, 0, O_USERS},
        {"items", required_argument, 0, O_ITEMS},
        {"events", required_argument, 0, O_EVENTS},
        {"rate", required_argument, 0, O_RATE},
        {"format", required_argument, 0, O_FORMAT},
        {"schema", required_argument, 0, O_SCHEMA},
        {"schema-id", required_argument, 0, O_SCHEMA_ID},
        {"start", required_argument, 0, O_START},
        {"span", required_argument, 0, O_SPAN},
        {"max-disorder-ms", required_argument, 0, O_DISORDER},
        {"churn-fraction", required_argument, 0, O_CHURN},
        {"brokers", required_argument, 0, O_BROKERS},
        {"topic", required_argument, 0, O_TOPIC},
        {"out", required_argument, 0, O_OUT},
        {"truth", required_argument, 0, O_TRUTH},
        {"truth-latent", required_argument, 0, O_LATENT},
        {"truth-partitions", required_argument, 0, O_T_PARTS},
        {"session-gap", required_argument, 0, O_T_GAP},
        {"window", required_argument, 0, O_T_WINDOW},
        {"allowed-lateness", required_argument, 0, O_T_LATE},
        {"categories", required_argument, 0, O_T_CATS},
        {"producer-prop", required_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    fd_gen_opts_default(&a->g);
    a->format = FD_FMT_AVRO;
    a->schema = "conf/schemas/event.avsc";
    a->schema_id = 1;
    fd_truth_opts_default(&a->t);
    optind = 1;
    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":hX:", opts, NULL)) != -1) {
        const char *name = NULL;
        for (const struct option *o = opts; o->name; o++)
            if (o->val == c)
                name = o->name;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", name ? name : "?");
        switch (c) {
        case 'h':
            return 1;
        case O_SEED:
            if (parse_u64(opt, optarg, 0, UINT64_MAX, &a->g.seed) < 0)
                return -1;
            break;
        case O_USERS:
        case O_ITEMS:
            if (parse_u64(opt, optarg, 1, 100000000, &v) < 0)
                return -1;
            *(c == O_USERS ? &a->g.users : &a->g.items) = (uint32_t)v;
            break;
        case O_EVENTS:
            if (parse_u64(opt, optarg, 0, (uint64_t)1 << 48, &a->g.events) < 0)
                return -1;
            break;
        case O_RATE:
            if (parse_u64(opt, optarg, 0, 100000000, &v) < 0)
                return -1;
            a->rate = (double)v;
            break;
        case O_FORMAT:
            a->format = fd_format_parse(optarg);
            if (a->format < 0)
                return bad_value(opt, optarg, "avro, confluent-avro or json");
            break;
        case O_SCHEMA:
            a->schema = optarg;
            break;
        case O_SCHEMA_ID:
            if (parse_u64(opt, optarg, 0, INT32_MAX, &v) < 0)
                return -1;
            a->schema_id = (int32_t)v;
            break;
        case O_START:
            if (parse_time(opt, optarg, &a->g.start_ms) < 0)
                return -1;
            break;
        case O_SPAN:
            if (parse_duration(opt, optarg, &a->g.span_ms) < 0)
                return -1;
            if (a->g.span_ms < 60000)
                return bad_value(opt, optarg, "at least 1 minute");
            break;
        case O_DISORDER:
            if (parse_u64(opt, optarg, 0, (uint64_t)INT64_MAX, &v) < 0)
                return -1;
            a->g.max_disorder_ms = (int64_t)v;
            break;
        case O_CHURN: {
            char *end;
            errno = 0;
            double f = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(f >= 0 && f <= 1))
                return bad_value(opt, optarg, "a fraction in 0..1");
            a->g.churn_fraction = f;
            break;
        }
        case O_BROKERS:
            a->brokers = optarg;
            break;
        case O_TOPIC:
            a->topic = optarg;
            break;
        case O_OUT:
            a->out = optarg;
            break;
        case O_TRUTH:
            a->truth = optarg;
            break;
        case O_LATENT:
            a->latent = optarg;
            break;
        case O_T_PARTS:
            if (parse_u64(opt, optarg, 1, 1u << 20, &v) < 0)
                return -1;
            a->t.partitions = (uint32_t)v;
            break;
        case O_T_GAP:
        case O_T_WINDOW:
        case O_T_LATE: {
            int64_t d;
            if (parse_duration(opt, optarg, &d) < 0)
                return -1;
            if (c == O_T_GAP && d <= 0)
                return bad_value(opt, optarg, "a positive duration");
            if (c == O_T_WINDOW && (d <= 0 || 3600000 % d != 0))
                return bad_value(opt, optarg, "a duration that divides 1h, like 1m or 5m");
            *(c == O_T_GAP      ? &a->t.session_gap_ms
              : c == O_T_WINDOW ? &a->t.window_ms
                                : &a->t.allowed_lateness_ms) = d;
            break;
        }
        case O_T_CATS:
            if (parse_categories(a, opt, optarg) < 0)
                return -1;
            break;
        case 'X':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return bad_value("--producer-prop", optarg, "KEY=VALUE");
            if (a->n_props == MAX_PROPS)
                return bad_value("--producer-prop", optarg, "at most 32 properties");
            a->props[a->n_props++] = optarg;
            break;
        case ':':
            fprintf(stderr, "funnelctl gen: %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "funnelctl gen: unknown option '%s'\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "funnelctl gen: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (a->out && (a->brokers || a->topic)) {
        fprintf(stderr, "funnelctl gen: --out and --brokers/--topic exclude each other\n");
        return -1;
    }
    if (!a->out && (!a->brokers || !a->topic)) {
        fprintf(stderr, "funnelctl gen: need --out FILE, or --brokers LIST and --topic T\n");
        return -1;
    }
    if (a->g.max_disorder_ms > a->g.span_ms) {
        fprintf(stderr, "funnelctl gen: --max-disorder-ms: %" PRId64 " is longer than --span\n",
                a->g.max_disorder_ms);
        return -1;
    }
    return 0;
}

/* ---- sinks ---------------------------------------------------------------- */

/* librdkafka thread or the polling thread (this one). */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    sink *s = opaque;
    if (m->err) {
        if (!s->failed++)
            snprintf(s->first_error, sizeof s->first_error, "%s", rd_kafka_err2str(m->err));
    } else {
        s->delivered++;
    }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    fd_log(level <= 3   ? FD_LOG_ERROR
           : level == 4 ? FD_LOG_WARN
           : level <= 6 ? FD_LOG_INFO
                        : FD_LOG_DEBUG,
           "kafka", "%s: %s", fac, buf);
}

/* Open the sink named by the options. Returns 0, or -1 with a message
 * printed; sink_close() undoes a partial open. */
static int sink_open(sink *s, const gen_args *a)
{
    char err[512];
    memset(s, 0, sizeof *s);
    if (a->out) {
        if (!strcmp(a->out, "-")) {
            s->f = stdout;
        } else {
            s->f = fopen(a->out, "wb");
            if (!s->f) {
                fprintf(stderr, "funnelctl gen: --out %s: %s\n", a->out, strerror(errno));
                return -1;
            }
            s->close_f = true;
        }
        setvbuf(s->f, NULL, _IOFBF, 1 << 20);
        return 0;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", a->brokers},
        {"compression.codec", "lz4"},
        {"linger.ms", "5"},
        {"enable.idempotence", "true"},
        {"client.id", "funnelctl-gen"},
        /* A broker gone for a minute fails the run (exit 1, no truth)
         * instead of hanging; -X message.timeout.ms=0 waits forever. */
        {"message.timeout.ms", "60000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "funnelctl gen: kafka %s=%s: %s\n", kv[i][0], kv[i][1], err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    for (int i = 0; i < a->n_props; i++) {
        char k[256];
        const char *eq = strchr(a->props[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - a->props[i]), a->props[i]);
        if (rd_kafka_conf_set(conf, k, eq + 1, err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "funnelctl gen: --producer-prop %s: %s\n", a->props[i], err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, s);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!s->rk) {
        fprintf(stderr, "funnelctl gen: kafka producer: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    conf = NULL; /* owned by rk now */
    s->topic = a->topic;
    return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Write one record. Returns 0, or -1 with a message printed. */
static int sink_write(sink *s, const char *key, size_t klen, const void *val, size_t vlen)
{
    if (s->f) {
        uint8_t hdr[4];
        put_be32(hdr, (uint32_t)klen);
        fwrite(hdr, 1, 4, s->f);
        fwrite(key, 1, klen, s->f);
        put_be32(hdr, (uint32_t)vlen);
        fwrite(hdr, 1, 4, s->f);
        if (fwrite(val, 1, vlen, s->f) != vlen) {
            fprintf(stderr, "funnelctl gen: write: %s\n", strerror(errno));
            return -1;
        }
        return 0;
    }
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_KEY(key, klen),
                              RD_KAFKA_V_VALUE((void *)val, vlen),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!e)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "funnelctl gen: produce to %s: %s\n", s->topic, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(s->rk, 50); /* serve delivery reports, then retry */
    }
    rd_kafka_poll(s->rk, 0);
    if (s->failed) {
        fprintf(stderr, "funnelctl gen: delivery to %s failed: %s\n", s->topic, s->first_error);
        return -1;
    }
    return 0;
}

/* Flush and close. Returns 0 when every record reached the file or broker. */
static int sink_close(sink *s)
{
    int rc = 0;
    if (s->f) {
        if (fflush(s->f) != 0 || ferror(s->f)) {
            fprintf(stderr, "funnelctl gen: write: %s\n", strerror(errno));
            rc = -1;
        }
        if (s->close_f && fclose(s->f) != 0 && rc == 0) {
            fprintf(stderr, "funnelctl gen: close: %s\n", strerror(errno));
            rc = -1;
        }
        s->f = NULL;
    }
    if (s->rk) {
        /* Every message ends in a delivery report (message.timeout.ms bounds
         * it), so this loop ends. */
        while (rd_kafka_outq_len(s->rk) > 0)
            rd_kafka_flush(s->rk, 1000);
        if (s->failed) {
            fprintf(stderr, "funnelctl gen: %" PRIu64 " deliveries to %s failed, first: %s\n",
                    s->failed, s->topic, s->first_error);
            rc = -1;
        }
        rd_kafka_destroy(s->rk);
        s->rk = NULL;
    }
    return rc;
}

/* ---- truth ---------------------------------------------------------------- */

static int close_checked(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "funnelctl gen: writing %s failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void json_counts(FILE *f, const uint64_t *n)
{
    fprintf(f, "\"click\":%" PRIu64 ",\"cart\":%" PRIu64 ",\"purchase\":%" PRIu64, n[0], n[1],
            n[2]);
}

/* A JSON string (category names come from the command line). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_counters(FILE *f, const int64_t *c)
{
    for (int i = 0; i < FD_TRUTH__COUNTERS; i++)
        fprintf(f, "%s\"%s\":%" PRId64, i ? "," : "", fd_truth_counter_name(i), c[i]);
}

/* "windows" or "hours": start -> counters and distinct users per stage. */
static void json_windows(FILE *f, const fd_truth *tr, bool hours)
{
    static const char *const stage[4] = {"visit", "click", "cart", "purchase"};
    size_t n = hours ? fd_truth_n_hours(tr) : fd_truth_n_windows(tr);
    const char *sep = "\n";
    for (size_t i = 0; i < n; i++) {
        const fd_truth_window *w = hours ? fd_truth_hour_at(tr, i) : fd_truth_window_at(tr, i);
        fprintf(f, "%s\"%" PRId64 "\":{", sep, w->start_ms);
        json_counters(f, w->c);
        for (int s = 0; s < 4; s++)
            fprintf(f, ",\"users_%s\":%" PRIu64, stage[s], w->users[s]);
        fputc('}', f);
        sep = ",\n";
    }
}

/* The "funnel" object (see docs/man/funnelctl.1). */
static void json_funnel(FILE *f, const fd_truth *tr)
{
    const fd_truth_opts *o = fd_truth_get_opts(tr);
    fprintf(f,
            "\"funnel\":{\"window_ms\":%" PRId64 ",\"late_events\":%" PRIu64
            ",\"partitions\":%" PRIu32 ",\"session_gap_ms\":%" PRId64
            ",\"allowed_lateness_ms\":%" PRId64 ",\n\"windows\":{",
            o->window_ms, fd_truth_late_events(tr), o->partitions, o->session_gap_ms,
            o->allowed_lateness_ms);
    json_windows(f, tr, false);
    fputs("},\n\"hours\":{", f);
    json_windows(f, tr, true);
    fputs("},\n\"categories\":{", f);
    const char *sep = "\n";
    for (size_t i = 0; o->n_categories && i < fd_truth_n_windows(tr); i++) {
        fprintf(f, "%s\"%" PRId64 "\":{", sep, fd_truth_window_at(tr, i)->start_ms);
        const char *csep = "";
        for (size_t c = 0; c <= o->n_categories; c++) {
            const int64_t *v = fd_truth_window_cat(tr, i, c);
            bool any = false;
            for (int k = 0; k < FD_TRUTH__COUNTERS; k++)
                any |= v[k] != 0;
            if (!any)
                continue;
            fputs(csep, f);
            json_str(f, fd_truth_category_name(tr, c));
            fputs(":{", f);
            json_counters(f, v);
            fputc('}', f);
            csep = ",";
        }
        fputc('}', f);
        sep = ",\n";
    }
    fputs("}}", f);
}

/* Write the truth JSON to path + ".tmp"; the caller renames it. */
static int write_truth(const fd_gen *g, fd_truth *tr, const char *path)
{
    if (fd_truth_finish(tr) < 0) {
        fprintf(stderr, "funnelctl gen: --truth: out of memory\n");
        return -1;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "funnelctl gen: --truth %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    const fd_gen_opts *o = fd_gen_get_opts(g);
    fprintf(f, "{\"seed\":%" PRIu64 ",\"events\":%" PRIu64 ",\n\"users\":{", o->seed,
            fd_gen_emitted(g));
    const char *sep = "\n";
    for (uint32_t u = 0; u < o->users; u++) {
        const fd_gen_user_truth *t = fd_gen_user(g, u);
        if (!(t->n[0] | t->n[1] | t->n[2]))
            continue;
        fprintf(f, "%s\"u%" PRIu32 "\":{", sep, u + 1);
        json_counts(f, t->n);
        fprintf(f, ",\"first_ts\":%" PRId64 ",\"last_ts\":%" PRId64, t->first_ts, t->last_ts);
        char id[16];
        snprintf(id, sizeof id, "u%" PRIu32, u + 1);
        const fd_truth_user *tu = fd_truth_user_find(tr, id);
        if (tu)
            fprintf(f,
                    ",\"sessions\":%" PRIu64 ",\"revenue_cents\":%" PRId64
                    ",\"last_cart_ts\":%" PRId64 ",\"last_purchase_ts\":%" PRId64,
                    tu->sessions, tu->revenue_cents, tu->last_cart_ts, tu->last_purchase_ts);
        fputc('}', f);
        sep = ",\n";
    }
    fputs("},\n\"minutes\":{", f);
    int64_t w0;
    size_t nm = fd_gen_minutes(g, &w0);
    sep = "\n";
    for (size_t i = 0; i < nm; i++) {
        const fd_gen_minute_truth *m = fd_gen_minute(g, i);
        if (!(m->n[0] | m->n[1] | m->n[2]))
            continue;
        fprintf(f, "%s\"%" PRId64 "\":{", sep, w0 + (int64_t)i * 60000);
        json_counts(f, m->n);
        fprintf(f, ",\"revenue_cents\":%" PRId64 "}", m->revenue_cents);
        sep = ",\n";
    }
    fputs("},\n\"churn\":{", f);
    sep = "\n";
    for (uint32_t u = 0; u < o->users; u++) {
        const fd_gen_user_truth *t = fd_gen_user(g, u);
        int64_t c = fd_gen_churn_ts(g, u);
        if (c < 0 || !(t->n[0] | t->n[1] | t->n[2]))
            continue;
        fprintf(f, "%s\"u%" PRIu32 "\":%" PRId64, sep, u + 1, c);
        sep = ",\n";
    }
    fd_gen_minute_truth tot;
    fd_gen_totals(g, &tot);
    fputs("},\n\"totals\":{", f);
    json_counts(f, tot.n);
    fprintf(f, ",\"revenue_cents\":%" PRId64 "},\n", tot.revenue_cents);
    json_funnel(f, tr);
    fputs("}\n", f);
    return close_checked(f, tmp);
}

static void json_vec(FILE *f, const float *v)
{
    for (int d = 0; d < FD_GEN_DIM; d++)
        fprintf(f, "%s%.9g", d ? "," : "", (double)v[d]);
}

/* Latent model as JSON lines, one user or item per line. */
static int write_latent(const fd_gen *g, const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "funnelctl gen: --truth-latent %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    const fd_gen_opts *o = fd_gen_get_opts(g);
    for (uint32_t u = 0; u < o->users; u++) {
        fprintf(f, "{\"user\":\"u%" PRIu32 "\",\"churn_ts\":%" PRId64 ",\"vec\":[", u + 1,
                fd_gen_churn_ts(g, u));
        json_vec(f, fd_gen_user_vec(g, u));
        fputs("]}\n", f);
    }
    for (uint32_t i = 0; i < o->items; i++) {
        fprintf(f,
                "{\"item\":\"i%" PRIu32 "\",\"category\":\"c%d\",\"price_cents\":%" PRId64
                ",\"bias\":%.9g,\"vec\":[",
                i + 1, fd_gen_item_category(g, i) + 1, fd_gen_item_price_cents(g, i),
                (double)fd_gen_item_bias(g, i));
        json_vec(f, fd_gen_item_vec(g, i));
        fputs("]}\n", f);
    }
    return close_checked(f, tmp);
}

static int publish(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "funnelctl gen: rename %s -> %s: %s\n", tmp, path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

static void progress(uint64_t n, uint64_t total, double elapsed)
{
    int width = 30, fill = total ? (int)((double)n / (double)total * width) : width;
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\rgen: [%s] %3d%% %" PRIu64 "/%" PRIu64 " events, %.0f ev/s ", bar,
            total ? (int)(100.0 * (double)n / (double)total) : 100, n, total,
            elapsed > 0 ? (double)n / elapsed : 0.0);
}

/* Wait until event n is due at --rate, serving the producer meanwhile. */
static void pace(sink *s, double t0, double rate, uint64_t n)
{
    for (;;) {
        double ahead = t0 + (double)n / rate - fd_cli_now_s();
        if (ahead <= 0 || fd_cli_stop)
            return;
        if (s->rk) {
            rd_kafka_poll(s->rk, ahead > 0.1 ? 100 : (int)(ahead * 1000) + 1);
        } else {
            double d = ahead > 0.1 ? 0.1 : ahead;
            struct timespec ts = {0, (long)(d * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}

int fd_cmd_gen(int argc, char **argv)
{
    gen_args a;
    int done = fd_cli_args_done(parse_args(argc, argv, &a), "funnelctl gen", usage);
    if (done >= 0)
        return done;

    int rc = 1;
    char err[512] = "";
    fd_gen *g = NULL;
    fd_truth *tr = NULL;
    fd_codec *codec = NULL;
    sink s;
    memset(&s, 0, sizeof s);

    g = fd_gen_new(&a.g, err, sizeof err);
    if (!g) {
        fprintf(stderr, "funnelctl gen: %s\n", err);
        rc = 2;
        goto out;
    }
    a.t.users_hint = a.g.users;
    tr = fd_truth_new(&a.t, err, sizeof err);
    if (!tr) {
        fprintf(stderr, "funnelctl gen: truth: %s\n", err);
        rc = 2;
        goto out;
    }
    fd_schema_ref ref = {a.schema_id, a.schema};
    fd_codec_opts co = {
        .format = (fd_format)a.format,
        .schema_path = a.format == FD_FMT_JSON ? NULL : a.schema,
        .schema_ids = a.format == FD_FMT_CONFLUENT_AVRO ? &ref : NULL,
        .n_schema_ids = a.format == FD_FMT_CONFLUENT_AVRO ? 1 : 0,
        .encode_schema_id = a.schema_id,
    };
    codec = fd_codec_new(&co, err, sizeof err);
    if (!codec) {
        fprintf(stderr, "funnelctl gen: codec: %s\n", err);
        goto out;
    }
    if (sink_open(&s, &a) < 0)
        goto out;

    fd_cli_catch_stop();

    bool tty = isatty(STDERR_FILENO);
    double t0 = fd_cli_now_s(), next_bar = t0;
    fd_event ev;
    uint64_t n = 0;
    int werr = 0;
    while (!fd_cli_stop && fd_gen_next(g, &ev)) {
        if (a.rate > 0)
            pace(&s, t0, a.rate, n);
        const void *buf;
        size_t len;
        if (fd_codec_encode(codec, &ev, &buf, &len) != 0) {
            fprintf(stderr, "funnelctl gen: encode of event %s failed\n", ev.event_id);
            werr = -1;
            break;
        }
        if (sink_write(&s, ev.user_id, strlen(ev.user_id), buf, len) < 0) {
            werr = -1;
            break;
        }
        n++;
        if (a.truth && fd_truth_add(tr, &ev) < 0) {
            fprintf(stderr, "funnelctl gen: truth: out of memory\n");
            werr = -1;
            break;
        }
        if (tty && (n & 4095) == 0) {
            double t = fd_cli_now_s();
            if (t >= next_bar) {
                progress(n, a.g.events, t - t0);
                next_bar = t + 0.2;
            }
        }
    }
    int cerr = sink_close(&s);
    double elapsed = fd_cli_now_s() - t0;
    if (tty) {
        progress(n, a.g.events, elapsed);
        fputc('\n', stderr);
    }
    if (werr < 0 || cerr < 0) {
        fprintf(stderr, "funnelctl gen: stopped after %" PRIu64 " events; no truth written\n", n);
        goto out;
    }
    if (a.truth && (write_truth(g, tr, a.truth) < 0 || publish(a.truth) < 0))
        goto out;
    if (a.latent && (write_latent(g, a.latent) < 0 || publish(a.latent) < 0))
        goto out;
    fprintf(stderr, "gen: %" PRIu64 " events, %" PRIu32 " users, %.1f s, %.0f ev/s\n", n, a.g.users,
            elapsed, elapsed > 0 ? (double)n / elapsed : 0.0);
    if (fd_cli_stop) {
        fprintf(stderr,
                "funnelctl gen: interrupted; the truth covers the %" PRIu64 " events written\n", n);
        goto out;
    }
    if (n < a.g.events)
        fprintf(stderr, "funnelctl gen: every user churned after %" PRIu64 " events\n", n);
    rc = 0;
out:
    sink_close(&s);
    fd_codec_destroy(codec);
    fd_truth_free(tr);
    fd_gen_destroy(g);
    return rc;
}
