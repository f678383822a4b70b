/*
 * cmd_bench.c - `funnelctl bench`: funneld end to end, next to the limit the
 * broker sets and to the functional core alone, in one run.
 *
 * Why it is built this way:
 *
 * - A throughput figure means little without the ceiling next to it. The
 *   same topic is therefore read three ways in one run: by a plain
 *   librdkafka consumer that only counts (the rate funneld cannot exceed on
 *   this broker), by `kcat -C` (an independent client sharing no code with
 *   us), and by funneld itself. `ratio` is funneld over the plain consumer.
 *   Both consumers join a consumer group of their own, so both pay the
 *   group join; kcat uses simple assignment and pays none.
 *
 * - funneld is measured as a black box: the real binary, a config file, a
 *   private redis-server. "Done" is defined by the exactly-once contract
 *   (docs/REDIS_KEYS.md): the next offset stored in Redis for every
 *   partition reached the partition's end. Those offsets are written in the
 *   same MULTI/EXEC as the state they cover, so at that moment every event
 *   is in Redis, not merely consumed. The clock starts at fork().
 *
 * - Redis traffic is counted by the server (INFO total_commands_processed),
 *   minus our own polling commands, which are counted as they are sent and
 *   calibrated against what one INFO adds. The peak RSS is the kernel's
 *   VmHWM of the funneld process, read just before SIGTERM.
 *
 * - The core figure (tools/bench_core.c) is the per-event work of a shard on
 *   pre-decoded events, one thread: what one core can do once Kafka and
 *   Redis are out of the picture. It runs last, after funneld stopped, so
 *   the two never compete for the CPU.
 *
 * - The input is generated in-process (fd_gen + fd_codec, the same bytes as
 *   `funnelctl gen`) into the embedded mock cluster, lz4-compressed, over
 *   enough partitions that the mock's ~5 MiB per-partition log keeps all of
 *   it. Every partition's low watermark is checked to be 0 before anything
 *   is measured: a broker that dropped data aborts the run.
 *
 * - Everything started is stopped: children run in their own process group
 *   (a terminal's Ctrl-C reaches only us; we stop them in order) and get
 *   SIGKILL from the kernel should we die first (PR_SET_PDEATHSIG). One
 *   cleanup path stops funneld, redis-server, the mock cluster, removes the
 *   temp dir and, with --redis, deletes the keys under our unique prefix.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "pipeline/kafka_mock.h"
#include "pipeline/redis.h"
#include "tools/bench.h"
#include "tools/bench_int.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/gen.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: funnelctl bench [OPTIONS]\n"
            "\n"
            "Measures, in one run on the same topic: a plain librdkafka consumer (the limit),\n"
            "kcat -C (independent peer), funneld end to end (start until the offsets in Redis\n"
            "reach the end of every partition) and the functional core without I/O.\n"
            "\n"
            "input:\n"
            "  --events N        events to generate (default 2000000)\n"
            "  --users N         users (default 200000)\n"
            "  --partitions N    partitions of the events topic (default 16; the mock\n"
            "                    cluster keeps ~5 MiB per partition)\n"
            "  --format F        avro | confluent-avro | json (default avro)\n"
            "  --seed N          generator seed (default 1)\n"
            "  --schema PATH     Avro schema (default conf/schemas/event.avsc, found from\n"
            "                    the working directory or next to the build directory)\n"
            "where:\n"
            "  --brokers LIST    use this Kafka cluster (a new topic is created) instead\n"
            "                    of an in-process mock cluster\n"
            "  --topic T         topic name with --brokers (default funnelctl-bench-PID-TIME)\n"
            "  --redis URL       use this Redis (keys under a unique prefix, deleted after)\n"
            "                    instead of a private redis-server\n"
            "  --funneld PATH    funneld binary (default: next to funnelctl)\n"
            "  --workers N       engine.workers for funneld, if it supports the key\n"
            "                    (default: number of cores)\n"
            "run:\n"
            "  --core-only       only the functional core (--no-io part), print ns/event\n"
            "  --no-io           same as --core-only\n"
            "  --reps N          timed passes of the core; the median is reported (default 3)\n"
            "  --no-kcat         skip the kcat measurement\n"
            "  --peer            also run the consumer a team would write instead\n"
            "                    (tools/peer_consumer.py: confluent_kafka + redis-py, per-user\n"
            "                    decayed counts and per-minute counters) on the same topic,\n"
            "                    and report funneld / peer in steady state\n"
            "  --rss-users LIST  memory instead: for each user count in LIST (comma-separated,\n"
            "                    2 to 8 values, e.g. 20000,200000,1000000) run funneld alone\n"
            "                    on a fresh topic of max(--events, 5 x users) events and\n"
            "                    report its peak RSS, then the least-squares fit over the\n"
            "                    users present: fixed cost (MiB) and slope (bytes per user).\n"
            "                    Every run uses the same partition count (at least\n"
            "                    --partitions, one per 125,000 events of the largest run)\n"
            "  --preload LIB     run funneld (only) with LD_PRELOAD=LIB, e.g. an allocator:\n"
            "                    /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (libjemalloc2) or\n"
            "                    /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 (libmimalloc2.0)\n"
            "  --funneld-log PATH  keep funneld's log there, at level debug\n"
            "  --timeout SEC     limit of each measured phase (default 600)\n"
            "  --json            print one JSON object on stdout (the table goes to stderr)\n"
            "  -h, --help        this help\n"
            "\n"
            "Progress goes to stderr. Exit status: 0 ok, 1 failure, 2 usage, 130 interrupted.\n");
}

/* ---- small helpers --------------------------------------------------------- */

static int parse_num(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    return fd_cli_parse_u64(PROG, opt, s, min, max, out);
}

/* --rss-users: 2..RSS_MAX_POINTS user counts, comma-separated. 0 / -1. */
static int parse_rss_users(const char *s, bench_args *a)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    a->n_rss = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (a->n_rss == RSS_MAX_POINTS) {
            fprintf(stderr, PROG ": --rss-users: at most %d user counts\n", RSS_MAX_POINTS);
            return -1;
        }
        if (parse_num("--rss-users", t, 1, 100000000, &v))
            return -1;
        a->rss_users[a->n_rss++] = (uint32_t)v;
    }
    if (a->n_rss < 2) {
        fprintf(stderr, PROG ": --rss-users: give at least two user counts (a line needs two)\n");
        return -1;
    }
    return 0;
}

/* ---- arguments and main ------------------------------------------------------ */

enum {
    O_EVENTS = 1000,
    O_USERS,
    O_PARTS,
    O_FORMAT,
    O_SEED,
    O_SCHEMA,
    O_BROKERS,
    O_TOPIC,
    O_REDIS,
    O_FUNNELD,
    O_WORKERS,
    O_CORE,
    O_REPS,
    O_NO_KCAT,
    O_PEER,
    O_FUNNELD_LOG,
    O_RSS_USERS,
    O_PRELOAD,
    O_TIMEOUT,
    O_JSON,
};

/* 0, 1 for --help, -1 after printing the error. */
static int parse_args(int argc, char **argv, bench_args *a)
{
    static const struct option opts[] = {
        {"events", required_argument, 0, O_EVENTS},
        {"users", required_argument, 0, O_USERS},
        {"partitions", required_argument, 0, O_PARTS},
        {"format", required_argument, 0, O_FORMAT},
        {"seed", required_argument, 0, O_SEED},
        {"schema", required_argument, 0, O_SCHEMA},
        {"brokers", required_argument, 0, O_BROKERS},
        {"topic", required_argument, 0, O_TOPIC},
        {"redis", required_argument, 0, O_REDIS},
        {"funneld", required_argument, 0, O_FUNNELD},
        {"workers", required_argument, 0, O_WORKERS},
        {"core-only", no_argument, 0, O_CORE},
        {"no-io", no_argument, 0, O_CORE},
        {"reps", required_argument, 0, O_REPS},
        {"no-kcat", no_argument, 0, O_NO_KCAT},
        {"peer", no_argument, 0, O_PEER},
        {"funneld-log", required_argument, 0, O_FUNNELD_LOG},
        {"rss-users", required_argument, 0, O_RSS_USERS},
        {"preload", required_argument, 0, O_PRELOAD},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    fd_gen_opts_default(&a->gen);
    a->gen.events = 2000000;
    a->gen.users = 200000;
    a->partitions = 16;
    a->format = FD_FMT_AVRO;
    a->reps = 3;
    a->timeout_s = 600;
    optind = 1;
    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        const char *opt = argv[optind - 1];
        switch (c) {
        case 'h':
            return 1;
        case O_EVENTS:
            if (parse_num("--events", optarg, 1, (uint64_t)1 << 40, &a->gen.events))
                return -1;
            break;
        case O_USERS:
            if (parse_num("--users", optarg, 1, 100000000, &v))
                return -1;
            a->gen.users = (uint32_t)v;
            break;
        case O_PARTS:
            if (parse_num("--partitions", optarg, 1, MAX_PARTS, &v))
                return -1;
            a->partitions = (int)v;
            break;
        case O_FORMAT:
            a->format = fd_format_parse(optarg);
            if (a->format < 0) {
                fprintf(stderr, PROG ": --format: '%s' is not avro, confluent-avro or json\n",
                        optarg);
                return -1;
            }
            break;
        case O_SEED:
            if (parse_num("--seed", optarg, 0, UINT64_MAX, &a->gen.seed))
                return -1;
            break;
        case O_SCHEMA:
            a->schema = optarg;
            break;
        case O_BROKERS:
            a->brokers = optarg;
            break;
        case O_TOPIC:
            a->topic = optarg;
            break;
        case O_REDIS:
            a->redis_url = optarg;
            break;
        case O_FUNNELD:
            a->funneld = optarg;
            break;
        case O_WORKERS:
            if (parse_num("--workers", optarg, 1, 1024, &v))
                return -1;
            a->workers = (int)v;
            break;
        case O_CORE:
            a->core_only = true;
            break;
        case O_REPS:
            if (parse_num("--reps", optarg, 1, 100, &v))
                return -1;
            a->reps = (int)v;
            break;
        case O_NO_KCAT:
            a->no_kcat = true;
            break;
        case O_PEER:
            a->peer = true;
            break;
        case O_FUNNELD_LOG:
            a->funneld_log = optarg;
            break;
        case O_PRELOAD:
            if (access(optarg, R_OK) != 0) {
                fprintf(stderr, PROG ": --preload %s: %s\n", optarg, strerror(errno));
                return -1;
            }
            a->preload = optarg;
            break;
        case O_RSS_USERS:
            if (parse_rss_users(optarg, a) != 0)
                return -1;
            break;
        case O_TIMEOUT:
            if (parse_num("--timeout", optarg, 1, 86400, &v))
                return -1;
            a->timeout_s = (double)v;
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
    if (a->n_rss && (a->core_only || a->peer || a->brokers)) {
        fprintf(stderr, PROG ": --rss-users runs funneld on the embedded cluster only (no "
                             "--core-only, --peer or --brokers)\n");
        return -1;
    }
    if (a->topic && !a->brokers) {
        fprintf(stderr, PROG ": --topic needs --brokers (the embedded cluster uses 'events')\n");
        return -1;
    }
    return 0;
}

/* Find the schema (option, working directory, or the source tree next to
 * the build directory) and funneld (option, or next to this executable). */
static int locate_files(bench_run *run, const bench_args *a)
{
    char dir[PATH_MAX];
    bool have_dir = bench_exe_dir(dir, sizeof dir) == 0;
    if (bench_find_schema(a->schema, run->schema) != 0) {
        fprintf(stderr, PROG ": Avro schema %s not found (give --schema PATH)\n",
                a->schema ? a->schema : "conf/schemas/event.avsc");
        return -1;
    }
    if (a->core_only)
        return 0;
    if (a->funneld)
        snprintf(run->funneld, sizeof run->funneld, "%s", a->funneld);
    else if (have_dir)
        snprintf(run->funneld, sizeof run->funneld, "%s/funneld", dir);
    char abs[PATH_MAX];
    if (!run->funneld[0] || !realpath(run->funneld, abs) || access(abs, X_OK) != 0) {
        fprintf(stderr, PROG ": funneld binary '%s' not found or not executable (give --funneld)\n",
                run->funneld);
        return -1;
    }
    snprintf(run->funneld, sizeof run->funneld, "%s", abs);
    return 0;
}

/* Undo everything in reverse order. Safe on a partial run; the run can be
 * set up again afterwards (bench_setup_topic). */
void bench_run_cleanup(bench_run *run)
{
    if (run->funneld_pid > 0)
        bench_stop_child(&run->funneld_pid, SIGTERM, STOP_WAIT_S);
    if (run->redis && run->given_redis && fd_redis_connected(run->redis))
        bench_redis_delete_prefix(run);
    fd_redis_destroy(run->redis);
    run->redis = NULL;
    if (run->redis_pid > 0)
        bench_stop_child(&run->redis_pid, SIGTERM, 10);
    fd_mock_destroy(run->mock);
    run->mock = NULL;
    if (run->dir[0])
        nftw(run->dir, bench_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    run->dir[0] = '\0';
}

/* The temp dir, the cluster (embedded unless --brokers, with a->partitions
 * partitions) and the topic loaded with a->gen's events. 0 / -1 (printed). */
int bench_setup_topic(bench_run *run, const bench_args *a)
{
    char err[512];
    snprintf(run->dir, sizeof run->dir, "%s/funnelctl-bench-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(run->dir)) {
        fprintf(stderr, PROG ": mkdtemp %s: %s\n", run->dir, strerror(errno));
        run->dir[0] = '\0';
        return -1;
    }
    run->nparts = a->partitions;
    if (a->brokers) {
        snprintf(run->brokers, sizeof run->brokers, "%s", a->brokers);
        if (a->topic)
            snprintf(run->topic, sizeof run->topic, "%s", a->topic);
        else
            snprintf(run->topic, sizeof run->topic, "funnelctl-bench-%ld-%ld", (long)getpid(),
                     (long)time(NULL));
    } else {
        const char *topics[] = {"events", "events.dlq", "churn-alerts", "funnel-metrics"};
        snprintf(run->topic, sizeof run->topic, "events");
        run->mock = fd_mock_new(1, topics, 4, a->partitions, err, sizeof err);
        if (!run->mock) {
            fprintf(stderr, PROG ": mock cluster: %s\n", err);
            return -1;
        }
        snprintf(run->brokers, sizeof run->brokers, "%s", fd_mock_bootstraps(run->mock));
        fprintf(stderr, "bench: embedded mock cluster at %s\n", run->brokers);
    }
    return bench_load_topic(run, a);
}

int fd_cmd_bench(int argc, char **argv)
{
    bench_args a;
    int done = fd_cli_args_done(parse_args(argc, argv, &a), PROG, usage);
    if (done >= 0)
        return done;
    int rc = 1;
    char err[512];
    bench_run *run = calloc(1, sizeof *run);
    bench_result *res = calloc(1, sizeof *res);
    if (!run || !res) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    fd_cli_catch_stop();
    signal(SIGPIPE, SIG_IGN);
    if (locate_files(run, &a) != 0)
        goto out;
    if (a.n_rss) {
        rc = bench_rss_series(run, &a);
        goto out;
    }

    if (!a.core_only) {
        if (bench_setup_topic(run, &a) != 0)
            goto out;

        fprintf(stderr, "bench: raw librdkafka consumer\n");
        if (bench_raw_measure(run, a.timeout_s, res) != 0)
            goto out;

        char kcat[PATH_MAX];
        if (!a.no_kcat && bench_find_in_path("kcat", kcat, sizeof kcat) == 0) {
            fprintf(stderr, "bench: kcat -C\n");
            int k = bench_kcat_consume(run, kcat, a.timeout_s, &res->kcat_s);
            if (k < 0)
                goto out;
            res->have_kcat = k == 0;
            if (res->have_kcat)
                res->kcat_eps = (double)run->total / res->kcat_s;
        } else if (!a.no_kcat) {
            fprintf(stderr, "bench: kcat is not on PATH: no kcat figure\n");
        }

        if (bench_redis_open(run, &a) != 0 || bench_run_funneld(run, &a, res) != 0)
            goto out;
        if (a.peer) {
            fprintf(stderr, "bench: the python peer (tools/peer_consumer.py)\n");
            if (bench_run_peer(run, &a, res) < 0)
                goto out;
        }
    }
    if (fd_cli_stop)
        goto out;

    fprintf(stderr, "bench: core --no-io (%d passes of %" PRIu64 " events)\n", a.reps,
            a.gen.events);
    fd_bench_core_opts co = {.gen = a.gen, .partitions = a.partitions, .reps = a.reps};
    int cr = fd_bench_core_run(&co, &fd_cli_stop, &res->core, err, sizeof err);
    if (cr != 0) {
        if (cr < 0)
            fprintf(stderr, PROG ": core: %s\n", err);
        goto out;
    }
    if (a.json) {
        bench_print_json(&a, run, res);
        bench_print_table(stderr, &a, run, res); /* for the log of the run */
    } else {
        bench_print_table(stdout, &a, run, res);
    }
    fflush(stdout);
    rc = 0;
out:
    if (run)
        bench_run_cleanup(run);
    if (fd_cli_stop) {
        fprintf(stderr, PROG ": interrupted; everything started was stopped\n");
        rc = 130;
    }
    free(res);
    free(run);
    return rc;
}
