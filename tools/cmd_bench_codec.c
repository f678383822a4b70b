/*
 * cmd_bench_codec.c - `funnelctl bench-codec`: decoding speed per format on
 * one core, each direct decoder beside the library it stands in for.
 *
 * Why it is built this way:
 *
 * - The events are the generator's (what `funnelctl gen` and the bench
 *   produce), encoded before the clock starts into one pool per format,
 *   so the timed loop measures decoding, not the generator.
 * - Each format is decoded twice: with the direct decoder (the canonical
 *   Avro layout without Avro-C's generic path; the common JSON layout
 *   without jansson, pipeline/codec_json_fast.c) and with the library
 *   alone (fd_codec_set_fast_path off). Both are checked to give the same
 *   event for every message first: a faster path that answered differently
 *   would be no gain. The fuzz targets prove the agreement on arbitrary
 *   input; this proves it on the realistic stream and measures the gain.
 * - The router's watermark peek (fd_codec_peek_ts) is timed too: it reads
 *   only ts, so a message is decoded once, by its shard.
 * - Best of --reps passes (the others are the machine's noise); --json
 *   prints one object on stdout.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec.h"
#include "tools/bench_int.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/gen.h"

#undef PROG
#define PROG "funnelctl bench-codec"

typedef struct bc_args {
    uint64_t events, users, reps, seed;
    const char *schema;
    bool json;
} bc_args;

static void usage(FILE *out)
{
    fprintf(out, "usage: funnelctl bench-codec [--events N] [--users N] [--reps N] [--seed N]\n"
                 "                             [--schema PATH] [--json]\n"
                 "\n"
                 "Decodes the generator's events on one core in each format, with the direct\n"
                 "decoder and with the library alone (Avro-C's generic path, jansson), after\n"
                 "checking both give the same event for every message; and times the\n"
                 "watermark peek that reads only ts. Prints ns per event and the ratios.\n"
                 "\n"
                 "  --events N     events (default 200000)\n"
                 "  --users N      users (default 20000)\n"
                 "  --reps N       passes; the best is reported (default 5)\n"
                 "  --seed N       generator seed (default 1)\n"
                 "  --schema PATH  Avro schema (default conf/schemas/event.avsc)\n"
                 "  --json         print one JSON object on stdout (the table goes to stderr)\n");
}

enum { O_EVENTS = 256, O_USERS, O_REPS, O_SEED, O_SCHEMA, O_JSON };

static int parse_args(int argc, char **argv, bc_args *a)
{
    static const struct option opts[] = {
        {"events", required_argument, 0, O_EVENTS},
        {"users", required_argument, 0, O_USERS},
        {"reps", required_argument, 0, O_REPS},
        {"seed", required_argument, 0, O_SEED},
        {"schema", required_argument, 0, O_SCHEMA},
        {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *a = (bc_args){.events = 200000, .users = 20000, .reps = 5, .seed = 1};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        const char *opt = argv[optind - 1];
        switch (c) {
        case 'h':
            return 1;
        case O_EVENTS:
            if (fd_cli_parse_u64(PROG, "--events", optarg, 1, 20000000, &a->events))
                return -1;
            break;
        case O_USERS:
            if (fd_cli_parse_u64(PROG, "--users", optarg, 1, 10000000, &a->users))
                return -1;
            break;
        case O_REPS:
            if (fd_cli_parse_u64(PROG, "--reps", optarg, 1, 100, &a->reps))
                return -1;
            break;
        case O_SEED:
            if (fd_cli_parse_u64(PROG, "--seed", optarg, 0, UINT64_MAX, &a->seed))
                return -1;
            break;
        case O_SCHEMA:
            a->schema = optarg;
            break;
        case O_JSON:
            a->json = true;
            break;
        case ':':
            fprintf(stderr, PROG ": %s needs a value\n", opt);
            return -1;
        default:
            fprintf(stderr, PROG ": unknown option '%s'\n", opt);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* The encoded messages of one format, back to back. */
typedef struct pool {
    char *bytes;
    size_t len, cap;
    size_t *off; /* n + 1 offsets */
} pool;

static int pool_add(pool *p, size_t i, const void *b, size_t n)
{
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 1 << 20;
        while (cap < p->len + n)
            cap *= 2;
        char *nb = realloc(p->bytes, cap);
        if (!nb)
            return -1;
        p->bytes = nb;
        p->cap = cap;
    }
    memcpy(p->bytes + p->len, b, n);
    p->off[i] = p->len;
    p->len += n;
    p->off[i + 1] = p->len;
    return 0;
}

typedef struct fmt_result {
    const char *name;
    double direct_ns, library_ns, peek_ns, bytes_per_event;
    uint64_t direct_taken; /* JSON: messages the direct path took */
} fmt_result;

static volatile uint64_t bc_sink;

/* One timed pass: ns per event of decode (what = 0) or peek (what = 1). */
static double pass(fd_codec *c, const pool *p, uint64_t n, int what, uint64_t *sink)
{
    fd_event ev;
    double t0 = fd_cli_now_s();
    for (uint64_t i = 0; i < n; i++) {
        const char *b = p->bytes + p->off[i];
        size_t len = p->off[i + 1] - p->off[i];
        if (what == 0) {
            if (fd_codec_decode(c, b, len, &ev, NULL, 0) == FD_OK)
                *sink += (uint64_t)ev.ts_ms;
        } else {
            int64_t ts;
            if (fd_codec_peek_ts(c, b, len, &ts) == 0)
                *sink += (uint64_t)ts;
        }
    }
    return (fd_cli_now_s() - t0) * 1e9 / (double)n;
}

static double best_of(fd_codec *c, const pool *p, uint64_t n, int what, uint64_t reps,
                      uint64_t *sink)
{
    double best = 0;
    for (uint64_t r = 0; r < reps; r++) {
        double ns = pass(c, p, n, what, sink);
        if (r == 0 || ns < best)
            best = ns;
    }
    return best;
}

/* Encode the stream in c's format, check both paths agree on every
 * message, then time them. */
static int run_format(fd_codec *c, const bc_args *a, fmt_result *out)
{
    fd_gen_opts o;
    fd_gen_opts_default(&o);
    o.seed = a->seed;
    o.users = (uint32_t)a->users;
    o.events = a->events;
    char err[512];
    fd_gen *g = fd_gen_new(&o, err, sizeof err);
    if (!g) {
        fprintf(stderr, PROG ": generator: %s\n", err);
        return -1;
    }
    pool p = {0};
    p.off = calloc(a->events + 1, sizeof *p.off);
    fd_event ev, d1, d2;
    uint64_t n = 0;
    int rc = p.off ? 0 : -1;
    while (rc == 0 && fd_gen_next(g, &ev)) {
        const void *b;
        size_t len;
        if (fd_codec_encode(c, &ev, &b, &len) != 0 || pool_add(&p, n, b, len) != 0)
            rc = -1;
        n++;
    }
    fd_gen_destroy(g);
    uint64_t f0, s0, f1, s1;
    fd_codec_path_counts(c, &f0, &s0);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        const char *b = p.bytes + p.off[i];
        size_t len = p.off[i + 1] - p.off[i];
        fd_codec_set_fast_path(c, 1);
        fd_reject r1 = fd_codec_decode(c, b, len, &d1, err, sizeof err);
        fd_codec_set_fast_path(c, 0);
        fd_reject r2 = fd_codec_decode(c, b, len, &d2, err, sizeof err);
        if (r1 != r2 || (r1 == FD_OK && !fd_event_equal(&d1, &d2))) {
            fprintf(stderr,
                    PROG ": %s message %" PRIu64 ": the direct decoder and the library differ\n",
                    out->name, i);
            rc = -1;
        }
    }
    fd_codec_path_counts(c, &f1, &s1);
    if (rc == 0) {
        uint64_t sink = 0;
        out->direct_taken = f1 - f0;
        fd_codec_set_fast_path(c, 0);
        out->library_ns = best_of(c, &p, n, 0, a->reps, &sink);
        fd_codec_set_fast_path(c, 1);
        out->direct_ns = best_of(c, &p, n, 0, a->reps, &sink);
        out->peek_ns = best_of(c, &p, n, 1, a->reps, &sink);
        out->bytes_per_event = (double)p.len / (double)n;
        bc_sink = sink; /* the decoded values are used: the loops stay */
    } else {
        fprintf(stderr, PROG ": %s: encoding or agreement failed\n", out->name);
    }
    free(p.bytes);
    free(p.off);
    return rc;
}

int fd_cmd_bench_codec(int argc, char **argv)
{
    bc_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) {
        usage(pr > 0 ? stdout : stderr);
        return pr > 0 ? 0 : 2;
    }
    char schema[PATH_MAX];
    if (bench_find_schema(a.schema, schema) != 0) {
        fprintf(stderr, PROG ": Avro schema %s not found (give --schema PATH)\n",
                a.schema ? a.schema : "conf/schemas/event.avsc");
        return 1;
    }
    static const fd_format fmts[2] = {FD_FMT_AVRO, FD_FMT_JSON};
    fmt_result res[2] = {{.name = "avro"}, {.name = "json"}};
    for (int i = 0; i < 2; i++) {
        char err[512];
        fd_codec_opts o = {.format = fmts[i], .schema_path = schema, .max_message_bytes = 1 << 20};
        fd_codec *c = fd_codec_new(&o, err, sizeof err);
        if (!c) {
            fprintf(stderr, PROG ": %s\n", err);
            return 1;
        }
        int rc = run_format(c, &a, &res[i]);
        fd_codec_destroy(c);
        if (rc != 0)
            return 1;
    }
    FILE *t = a.json ? stderr : stdout;
    fprintf(t,
            "bench-codec: %" PRIu64 " events, %" PRIu64 " users, best of %" PRIu64 ", one core\n\n",
            a.events, a.users, a.reps);
    fprintf(t, "| format | bytes/event | direct ns/event | library ns/event | library / direct | "
               "peek ts ns |\n");
    fprintf(t, "|---|---|---|---|---|---|\n");
    for (int i = 0; i < 2; i++)
        fprintf(t, "| %s | %.1f | %.1f | %.1f (%s) | %.2f | %.1f |\n", res[i].name,
                res[i].bytes_per_event, res[i].direct_ns, res[i].library_ns,
                i == 0 ? "Avro-C" : "jansson", res[i].library_ns / res[i].direct_ns,
                res[i].peek_ns);
    fprintf(t,
            "\njson direct / avro direct: %.2f; json messages the direct path took: %" PRIu64
            " of %" PRIu64 "\n",
            res[1].direct_ns / res[0].direct_ns, res[1].direct_taken, a.events);
    if (a.json)
        printf("{\"events\":%" PRIu64 ",\"users\":%" PRIu64 ",\"reps\":%" PRIu64
               ",\"avro_direct_ns\":%.1f,\"avro_avroc_ns\":%.1f,\"avro_peek_ns\":%.1f,"
               "\"json_direct_ns\":%.1f,\"json_jansson_ns\":%.1f,\"json_peek_ns\":%.1f,"
               "\"json_direct_taken\":%" PRIu64 ",\"avro_bytes_per_event\":%.1f,"
               "\"json_bytes_per_event\":%.1f}\n",
               a.events, a.users, a.reps, res[0].direct_ns, res[0].library_ns, res[0].peek_ns,
               res[1].direct_ns, res[1].library_ns, res[1].peek_ns, res[1].direct_taken,
               res[0].bytes_per_event, res[1].bytes_per_event);
    return 0;
}
