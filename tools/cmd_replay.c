/*
 * cmd_replay.c - `funnelctl replay`: a public dataset (MovieLens, Taobao
 * UserBehavior, REES46 eCommerce) or our own JSON lines produced to Kafka
 * as funneld's events, in time order, as fast as possible or paced.
 *
 * Why it is built this way:
 *
 * - The rows are parsed by tools/replay_formats.c and ordered by
 *   tools/replay_reader.c (shared with `funnelctl eval --input`); this file
 *   is the edge: options, the codec, the sink, the clock for pacing and
 *   progress.
 * - The whole file is read and checked before the first event is produced:
 *   time order needs every row anyway, and with --strict a malformed row
 *   then stops the replay with nothing produced at all.
 * - The sink is `funnelctl gen`'s (tools/gen_sink.c): a producer that never
 *   drops (a full queue is served and retried), checks every delivery
 *   report, keys by user id and compresses with lz4; or a framed file.
 *   Within a partition the order produced is the order stored, so each
 *   partition holds its events in time order.
 * - Pacing: --speed X maps event time onto wall time X times faster (the
 *   first event at once); --rate N spaces events 1/N s apart. While
 *   waiting, the producer's delivery reports are served.
 */
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/gen_int.h"
#include "tools/replay_formats.h"
#include "tools/replay_reader.h"

#define PROG "funnelctl replay"

typedef struct rp_args {
    int format, wire;
    const char *file, *schema, *brokers, *topic, *out;
    int32_t schema_id;
    double speed, rate;
    uint64_t limit, max_reports;
    bool strict;
    const char *props[MAX_PROPS];
    int n_props;
} rp_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: funnelctl replay --format FORMAT [OPTIONS] (--brokers LIST --topic T | --out "
            "FILE) FILE\n"
            "\n"
            "Produces a dataset's rows as funneld events (conf/schemas/event.avsc), keyed\n"
            "by user id, in time order (rows sorted by timestamp, ties in file order).\n"
            "\n"
            "  --format F            the input: movielens (u.data or ratings.csv; rating >= 4\n"
            "                        is a purchase, else a click), taobao (UserBehavior.csv;\n"
            "                        pv/fav click, cart, buy purchase), rees46 (view click,\n"
            "                        cart, purchase with its price; remove_from_cart skipped),\n"
            "                        json (funneld's own events, one object per line)\n"
            "  --brokers LIST        Kafka bootstrap servers (with --topic)\n"
            "  --topic T             Kafka topic\n"
            "  --out FILE            framed file instead (as funnelctl gen --out); - = stdout\n"
            "  --output-format F     avro | confluent-avro | json (default avro)\n"
            "  --schema PATH         Avro schema (default conf/schemas/event.avsc, else the "
            "installed one)\n"
            "  --schema-id N         confluent-avro schema id (default 1)\n"
            "  -X, --producer-prop K=V  extra librdkafka producer property (repeatable)\n"
            "  --speed X             pace by event time, X times faster than real time\n"
            "  --rate N              pace at N events/s (default: as fast as possible)\n"
            "  --limit N             read only the first N rows\n"
            "  --strict              stop at the first malformed row (exit 1, nothing produced)\n"
            "  --max-reports N       malformed rows printed (default 100; all are counted)\n"
            "\n"
            "Malformed rows are reported as FILE:LINE on stderr, skipped and counted.\n"
            "Progress goes to stderr (a bar on a terminal), the summary to stdout.\n"
            "Exit status: 0 done, 1 I/O, Kafka or (--strict) data error, 2 usage error.\n");
}

enum {
    O_FORMAT = 256,
    O_BROKERS,
    O_TOPIC,
    O_OUT,
    O_WIRE,
    O_SCHEMA,
    O_SCHEMA_ID,
    O_SPEED,
    O_RATE,
    O_LIMIT,
    O_STRICT,
    O_REPORTS
};

static int bad_value(const char *opt, const char *v, const char *want)
{
    fprintf(stderr, PROG ": %s: invalid value '%s' (expected %s)\n", opt, v, want);
    return -1;
}

/* Returns 0, 1 for --help, or -1 after printing the error. */
static int parse_args(int argc, char **argv, rp_args *a)
{
    static const struct option opts[] = {
        {"format", required_argument, 0, O_FORMAT},
        {"brokers", required_argument, 0, O_BROKERS},
        {"topic", required_argument, 0, O_TOPIC},
        {"out", required_argument, 0, O_OUT},
        {"output-format", required_argument, 0, O_WIRE},
        {"schema", required_argument, 0, O_SCHEMA},
        {"schema-id", required_argument, 0, O_SCHEMA_ID},
        {"speed", required_argument, 0, O_SPEED},
        {"rate", required_argument, 0, O_RATE},
        {"limit", required_argument, 0, O_LIMIT},
        {"strict", no_argument, 0, O_STRICT},
        {"max-reports", required_argument, 0, O_REPORTS},
        {"producer-prop", required_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->format = -1;
    a->wire = FD_FMT_AVRO;
    a->schema = "conf/schemas/event.avsc";
#ifdef FD_SCHEMA_DIR
    if (access(a->schema, R_OK) != 0 && access(FD_SCHEMA_DIR "/event.avsc", R_OK) == 0)
        a->schema = FD_SCHEMA_DIR "/event.avsc"; /* installed: share/funneld/schemas */
#endif
    a->schema_id = 1;
    a->max_reports = 100;
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
        case O_FORMAT:
            a->format = fd_row_format_parse(optarg);
            if (a->format < 0)
                return bad_value(opt, optarg, fd_row_format_list());
            break;
        case O_BROKERS:
            a->brokers = optarg;
            break;
        case O_TOPIC:
            a->topic = optarg;
            break;
        case O_OUT:
            a->out = optarg;
            break;
        case O_WIRE:
            a->wire = fd_format_parse(optarg);
            if (a->wire < 0)
                return bad_value(opt, optarg, "avro, confluent-avro or json");
            break;
        case O_SCHEMA:
            a->schema = optarg;
            break;
        case O_SCHEMA_ID:
            if (fd_cli_parse_u64(PROG, opt, optarg, 0, INT32_MAX, &v) < 0)
                return -1;
            a->schema_id = (int32_t)v;
            break;
        case O_SPEED:
        case O_RATE: {
            char *end;
            double d = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(d) || d <= 0 || d > 1e9)
                return bad_value(opt, optarg, "a positive number");
            *(c == O_SPEED ? &a->speed : &a->rate) = d;
            break;
        }
        case O_LIMIT:
            if (fd_cli_parse_u64(PROG, opt, optarg, 1, UINT64_MAX, &a->limit) < 0)
                return -1;
            break;
        case O_STRICT:
            a->strict = true;
            break;
        case O_REPORTS:
            if (fd_cli_parse_u64(PROG, opt, optarg, 0, UINT64_MAX, &a->max_reports) < 0)
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
            fprintf(stderr, PROG ": %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, PROG ": unknown option '%s'\n", argv[optind - 1]);
            return -1;
        }
    }
    if (a->format < 0) {
        fprintf(stderr, PROG ": --format is required (%s)\n", fd_row_format_list());
        return -1;
    }
    if (optind >= argc) {
        fprintf(stderr, PROG ": missing FILE (the dataset to replay)\n");
        return -1;
    }
    a->file = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s' (one FILE)\n", argv[optind]);
        return -1;
    }
    if (a->out && (a->brokers || a->topic)) {
        fprintf(stderr, PROG ": --out and --brokers/--topic exclude each other\n");
        return -1;
    }
    if (!a->out && (!a->brokers || !a->topic)) {
        fprintf(stderr, PROG ": need --brokers LIST and --topic T, or --out FILE\n");
        return -1;
    }
    if (a->speed > 0 && a->rate > 0) {
        fprintf(stderr, PROG ": --speed and --rate exclude each other\n");
        return -1;
    }
    return 0;
}

/* ---- progress ------------------------------------------------------------ */

typedef struct rp_progress {
    const char *file;
    bool tty;
    double t0, next, prod_t0; /* start, next line due, first event produced */
    const fd_replay *r;
    uint64_t produced;
    bool producing;
} rp_progress;

static void show(rp_progress *p, bool force)
{
    double now = fd_cli_now_s();
    if (!force && now < p->next)
        return;
    p->next = now + (p->tty ? 0.2 : 2.0);
    const fd_replay_stats *st = fd_replay_get_stats(p->r);
    double el = now - p->t0;
    if (p->tty && p->producing) {
        int width = 30;
        uint64_t total = st->events;
        int fill = total ? (int)((double)p->produced / (double)total * width) : width;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\rreplay: [%s] %3d%% %" PRIu64 "/%" PRIu64 " events, %.0f ev/s ", bar,
                total ? (int)(100.0 * (double)p->produced / (double)total) : 100, p->produced,
                total, now > p->prod_t0 ? (double)p->produced / (now - p->prod_t0) : 0.0);
    } else if (p->tty) {
        fprintf(stderr, "\rreplay: reading %s: %" PRIu64 " rows, %" PRIu64 " skipped ", p->file,
                st->rows, st->skipped);
    } else {
        fprintf(stderr,
                "replay: %s: %" PRIu64 " rows read, %" PRIu64 " events produced, %" PRIu64
                " skipped, %.1f s\n",
                p->file, st->rows, p->produced, st->skipped, el);
    }
}

static void tick(void *ctx)
{
    show(ctx, false);
}

/* Wait until due (monotonic seconds), serving the producer meanwhile. */
static void wait_until(sink *s, double due)
{
    for (;;) {
        double ahead = due - fd_cli_now_s();
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

static void ts_text(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "%" PRId64, ms);
}

static void summary(const rp_args *a, const fd_replay_stats *st, uint64_t produced, double el)
{
    FILE *f = stdout;
    char t1[40], t2[40];
    ts_text(st->first_ts, t1, sizeof t1);
    ts_text(st->last_ts, t2, sizeof t2);
    fprintf(f, "replay: %s (%s)\n", a->file, fd_row_format_name(a->format));
    fprintf(f, "  rows        %" PRIu64 "\n", st->rows);
    fprintf(f, "  produced    %" PRIu64 " events to %s (%s)\n", produced,
            a->out ? a->out : a->topic, fd_format_name((fd_format)a->wire));
    fprintf(f, "  skipped     %" PRIu64 " (%" PRIu64 " malformed)\n", st->skipped, st->malformed);
    for (int i = 0; i < st->n_reasons; i++)
        fprintf(f, "    %-18s %" PRIu64 "\n", st->reason[i], st->count[i]);
    if (st->events)
        fprintf(f, "  event time  %s .. %s (%s)\n", t1, t2,
                st->sorted ? "the file was in time order" : "sorted: the file was not");
    fprintf(f, "  elapsed     %.2f s, %.0f events/s\n", el, el > 0 ? (double)produced / el : 0.0);
    fflush(f);
}

int fd_cmd_replay(int argc, char **argv)
{
    rp_args a;
    int done = fd_cli_args_done(parse_args(argc, argv, &a), PROG, usage);
    if (done >= 0)
        return done;

    int rc = 1;
    char err[512] = "";
    fd_codec *codec = NULL;
    fd_replay *r = NULL;
    sink s;
    memset(&s, 0, sizeof s);
    rp_progress pg = {.file = a.file, .tty = isatty(STDERR_FILENO) == 1, .t0 = fd_cli_now_s()};
    pg.next = pg.t0 + (pg.tty ? 0.2 : 2.0);

    codec = gen_codec_new(PROG, a.wire, a.schema, a.schema_id);
    if (!codec)
        goto out;
    fd_replay_opts ro = {.format = a.format,
                         .prog = PROG,
                         .strict = a.strict,
                         .sort = true,
                         .limit = a.limit,
                         .max_reports = a.max_reports,
                         .tick = tick,
                         .tick_ctx = &pg};
    r = fd_replay_open(a.file, &ro, err, sizeof err);
    if (!r) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    pg.r = r;
    fd_cli_catch_stop();
    int lr = fd_replay_load(r);
    if (pg.tty)
        fputc('\n', stderr);
    if (lr < 0) {
        if (lr == -2)
            fprintf(stderr, PROG ": nothing produced\n");
        goto out;
    }
    const fd_replay_stats *st = fd_replay_get_stats(r);
    sink_opts so = {.prog = PROG,
                    .client_id = "funnelctl-replay",
                    .brokers = a.brokers,
                    .topic = a.topic,
                    .out = a.out,
                    .props = a.props,
                    .n_props = a.n_props};
    if (gen_sink_open(&s, &so) < 0)
        goto out;

    pg.producing = true;
    double t0 = pg.prod_t0 = fd_cli_now_s();
    fd_event ev;
    int nr, werr = 0;
    while (!fd_cli_stop && (nr = fd_replay_next(r, &ev)) == 1) {
        if (a.rate > 0)
            wait_until(&s, t0 + (double)pg.produced / a.rate);
        else if (a.speed > 0)
            wait_until(&s, t0 + (double)(ev.ts_ms - st->first_ts) / 1000.0 / a.speed);
        if (fd_cli_stop)
            break;
        const void *buf;
        size_t len;
        if (fd_codec_encode(codec, &ev, &buf, &len) != 0) {
            fprintf(stderr, PROG ": encode of event %s failed\n", ev.event_id);
            werr = -1;
            break;
        }
        if (gen_sink_write(&s, ev.user_id, strlen(ev.user_id), buf, len) < 0) {
            werr = -1;
            break;
        }
        pg.produced++;
        if ((pg.produced & 1023) == 0)
            show(&pg, false);
    }
    if (nr < 0)
        werr = -1;
    int cerr = gen_sink_close(&s);
    show(&pg, true);
    if (pg.tty)
        fputc('\n', stderr);
    summary(&a, st, pg.produced, fd_cli_now_s() - pg.t0);
    if (werr < 0 || cerr < 0) {
        fprintf(stderr, PROG ": stopped after %" PRIu64 " events\n", pg.produced);
        goto out;
    }
    if (fd_cli_stop) {
        fprintf(stderr, PROG ": interrupted after %" PRIu64 " events\n", pg.produced);
        rc = 130;
        goto out;
    }
    rc = 0;
out:
    gen_sink_close(&s);
    fd_replay_free(r);
    fd_codec_destroy(codec);
    return rc;
}
