/*
 * gen_cli.c - `funnelctl gen`: usage and option parsing.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "pipeline/codec.h"
#include "tools/cli.h"
#include "tools/gen.h"
#include "tools/gen_int.h"
#include "tools/gen_truth.h"

void gen_usage(FILE *out)
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
            "  --schema PATH         Avro schema (default conf/schemas/event.avsc, else the "
            "installed one)\n"
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
int gen_parse_args(int argc, char **argv, gen_args *a)
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
#ifdef FD_SCHEMA_DIR
    if (access(a->schema, R_OK) != 0 && access(FD_SCHEMA_DIR "/event.avsc", R_OK) == 0)
        a->schema = FD_SCHEMA_DIR "/event.avsc"; /* installed: share/funneld/schemas */
#endif
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
