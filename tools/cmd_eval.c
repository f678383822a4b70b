/*
 * cmd_eval.c - `funnelctl eval`: the churn model's quality, measured
 * prequentially over a whole stream, beside two scikit-learn peers on the
 * same labelled examples.
 *
 * Self-contained: it runs the daemon's own features (features/) and churn
 * engine (models/churn.h) over a stream in event order, with the label and
 * checkpoint timers driven by the stream's watermark (newest event time
 * minus funnel.allowed_lateness) exactly as a shard drives them. The
 * stream is a `funnelctl gen` stream with planted churn and a fixed seed
 * (default: 2000 users, 1.5 M events over about 120 days, so with H = 14 days many episodes
 * resolve), or a recorded one (--input FILE --format json: one event
 * object per line, the schema of docs/EVENTS.md), or a dataset read by
 * `funnelctl replay`'s parsers (--format movielens|taobao|rees46,
 * tools/replay_reader.h), in time order.
 *
 * Every labelled example is written to a CSV (ts,label,p,features...: the
 * prequential prediction p made before learning it) that
 * tools/eval_peers.py reads with Debian's python3-sklearn: batch
 * LogisticRegression on a time-ordered 70/30 split and SGDClassifier
 * partial_fit prequentially. Episodes still open when the stream ends are
 * censored: their label is unknown and they are not counted.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/config.h"
#include "features/features.h"
#include "features/user.h"
#include "models/churn.h"
#include "models/timer.h"
#include "pipeline/churn_setup.h"
#include "pipeline/codec.h"
#include "tools/eval_recs.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/gen.h"
#include "tools/replay_formats.h"
#include "tools/replay_reader.h"

#define PROG   "funnelctl eval"
#define DAY_MS 86400000LL

typedef struct ev_args {
    uint64_t users, events, seed;
    int64_t span_ms, horizon_ms;
    double churn_fraction;
    const char *input, *format, *csv, *config, *peers_script;
    bool json, peers, recs, recs_bf16;
    uint64_t recs_every;
} ev_args;

static void usage(FILE *out)
{
    fprintf(out, "usage: funnelctl eval [--users N] [--events N] [--span DURATION] [--seed N]\n"
                 "                      [--churn-fraction F] [--horizon DURATION]\n"
                 "                      [--input FILE --format F] [--config FILE]\n"
                 "                      [--csv FILE] [--no-peers] [--peers-script PATH]\n"
                 "                      [--no-recs] [--recs-every N] [--recs-bf16] [--json]\n"
                 "\n"
                 "Runs funneld's features and churn model over a stream and reports the\n"
                 "model's prequential quality (AUC, log loss, calibration, alert precision,\n"
                 "recall and lead time) beside two scikit-learn peers trained on the same\n"
                 "labelled examples (tools/eval_peers.py, Debian python3-sklearn), and the\n"
                 "recommendation model's prequential recall@10 and NDCG@10 beside the\n"
                 "decayed popularity list on the same events (docs/RECS.md).\n"
                 "\n"
                 "  --users N           generated users (default 2000)\n"
                 "  --events N          generated events, at most (default 2000000)\n"
                 "  --span DURATION     generated event-time span: the stream stops there\n"
                 "                      (default 120d)\n"
                 "  --seed N            generator seed (default 1)\n"
                 "  --churn-fraction F  share of generated users that churn (default 0.3)\n"
                 "  --horizon DURATION  churn.horizon (default: the config's, 14d)\n"
                 "  --input FILE        a recorded stream or a dataset instead\n"
                 "  --format F          the input's format: json (one event per line, read in\n"
                 "                      file order), movielens, taobao or rees46 (read in time\n"
                 "                      order; the mappings of funnelctl replay)\n"
                 "  --config FILE       funneld.yaml for features.*, funnel.allowed_lateness\n"
                 "                      and churn.* (default: built-in defaults)\n"
                 "  --csv FILE          write the labelled examples here (default: a temporary\n"
                 "                      file, removed)\n"
                 "  --no-peers          do not run the scikit-learn peers\n"
                 "  --peers-script P    default: tools/eval_peers.py beside the binary's tree\n"
                 "  --no-recs           do not run the recommendation model\n"
                 "  --recs-every N      check every Nth event with an item against the lists\n"
                 "                      before learning it (default 1: every one)\n"
                 "  --recs-bf16         keep user factors as bfloat16 between events\n"
                 "  --json              one JSON object on stdout\n"
                 "\n"
                 "Durations: N[ms|s|m|h|d]. Progress goes to stderr.\n");
}

enum {
    O_USERS = 256,
    O_EVENTS,
    O_SPAN,
    O_SEED,
    O_CHURN,
    O_HORIZON,
    O_INPUT,
    O_FORMAT,
    O_CONFIG,
    O_CSV,
    O_NOPEERS,
    O_SCRIPT,
    O_JSON,
    O_NORECS,
    O_RECS_EVERY,
    O_RECS_BF16
};

static int parse_duration(const char *opt, const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = (*s >= '0' && *s <= '9') ? strtoull(s, &end, 10) : 0;
    int64_t mul = 0;
    if (*s >= '0' && *s <= '9' && !errno) {
        if (!*end || !strcmp(end, "ms"))
            mul = 1;
        else if (!strcmp(end, "s"))
            mul = 1000;
        else if (!strcmp(end, "m"))
            mul = 60000;
        else if (!strcmp(end, "h"))
            mul = 3600000;
        else if (!strcmp(end, "d"))
            mul = DAY_MS;
    }
    if (!mul || v == 0 || v > (unsigned long long)(INT64_MAX / mul)) {
        fprintf(stderr, PROG ": %s: invalid value '%s' (expected a duration like 12h or 14d)\n",
                opt, s);
        return -1;
    }
    *out = (int64_t)v * mul;
    return 0;
}

static int parse_args(int argc, char **argv, ev_args *a)
{
    static const struct option opts[] = {{"users", required_argument, 0, O_USERS},
                                         {"events", required_argument, 0, O_EVENTS},
                                         {"span", required_argument, 0, O_SPAN},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"churn-fraction", required_argument, 0, O_CHURN},
                                         {"horizon", required_argument, 0, O_HORIZON},
                                         {"input", required_argument, 0, O_INPUT},
                                         {"format", required_argument, 0, O_FORMAT},
                                         {"config", required_argument, 0, O_CONFIG},
                                         {"csv", required_argument, 0, O_CSV},
                                         {"no-peers", no_argument, 0, O_NOPEERS},
                                         {"peers-script", required_argument, 0, O_SCRIPT},
                                         {"json", no_argument, 0, O_JSON},
                                         {"no-recs", no_argument, 0, O_NORECS},
                                         {"recs-every", required_argument, 0, O_RECS_EVERY},
                                         {"recs-bf16", no_argument, 0, O_RECS_BF16},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    a->users = 2000;
    a->events = 2000000;
    a->span_ms = 120 * DAY_MS;
    a->seed = 1;
    a->churn_fraction = 0.3;
    a->peers = true;
    a->recs = true;
    a->recs_every = 1;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *opt = "";
        for (const struct option *o = opts; o->name; o++)
            if (o->val == c)
                opt = o->name;
        char optbuf[40];
        snprintf(optbuf, sizeof optbuf, "--%s", opt);
        switch (c) {
        case 'h':
            return 1;
        case O_USERS:
            if (fd_cli_parse_u64(PROG, optbuf, optarg, 1, 10000000, &a->users) < 0)
                return -1;
            break;
        case O_EVENTS:
            if (fd_cli_parse_u64(PROG, optbuf, optarg, 1, 1000000000, &a->events) < 0)
                return -1;
            break;
        case O_SEED:
            if (fd_cli_parse_u64(PROG, optbuf, optarg, 0, UINT64_MAX, &a->seed) < 0)
                return -1;
            break;
        case O_SPAN:
            if (parse_duration(optbuf, optarg, &a->span_ms) < 0)
                return -1;
            break;
        case O_HORIZON:
            if (parse_duration(optbuf, optarg, &a->horizon_ms) < 0)
                return -1;
            break;
        case O_CHURN: {
            char *end;
            a->churn_fraction = strtod(optarg, &end);
            if (*end || end == optarg || !(a->churn_fraction >= 0 && a->churn_fraction <= 1)) {
                fprintf(stderr, PROG ": --churn-fraction: invalid value '%s' (expected 0..1)\n",
                        optarg);
                return -1;
            }
            break;
        }
        case O_INPUT:
            a->input = optarg;
            break;
        case O_FORMAT:
            a->format = optarg;
            break;
        case O_CONFIG:
            a->config = optarg;
            break;
        case O_CSV:
            a->csv = optarg;
            break;
        case O_NOPEERS:
            a->peers = false;
            break;
        case O_SCRIPT:
            a->peers_script = optarg;
            break;
        case O_JSON:
            a->json = true;
            break;
        case O_NORECS:
            a->recs = false;
            break;
        case O_RECS_BF16:
            a->recs_bf16 = true;
            break;
        case O_RECS_EVERY:
            if (fd_cli_parse_u64(PROG, optbuf, optarg, 1, 1000000, &a->recs_every) < 0)
                return -1;
            break;
        default:
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (a->input && (!a->format || fd_row_format_parse(a->format) < 0)) {
        fprintf(stderr, PROG ": --input needs --format %s\n", fd_row_format_list());
        return -1;
    }
    if (!a->input && a->format) {
        fprintf(stderr, PROG ": --format goes with --input\n");
        return -1;
    }
    return 0;
}

/* ---- the run ------------------------------------------------------------- */

typedef struct ev_run {
    const fd_churn_params *cp;
    fd_churn_model m;
    fd_user_table *users;
    fd_timer_heap timers;
    FILE *csv;
    uint64_t examples, positives, alerts, events;
    uint64_t total_events; /* generated: known; read from a file: 0 (unknown) */
    int64_t max_ts;
    bool io_error;
    fd_eval_recs *recs; /* the recommendation model, beside (NULL: --no-recs) */
} ev_run;

static void moved(void *ref, size_t pos)
{
    ((fd_user *)ref)->churn.heap_pos = (uint32_t)pos;
}

static void on_example(void *ctx, const fd_user *u, int64_t ts, const double *raw, int n, int label,
                       double p)
{
    ev_run *r = ctx;
    (void)u;
    r->examples++;
    r->positives += (uint64_t)label;
    if (!r->csv)
        return;
    if (fprintf(r->csv, "%" PRId64 ",%d,%.9g", ts, label, p) < 0)
        r->io_error = true;
    for (int i = 0; i < n; i++)
        fprintf(r->csv, ",%.9g", raw[i]);
    if (fputc('\n', r->csv) == EOF)
        r->io_error = true;
}

static void on_alert(void *ctx, const fd_churn_alert *a)
{
    ev_run *r = ctx;
    (void)a;
    r->alerts++;
}

static int set_timer(ev_run *r, fd_user *u, int64_t due)
{
    if (due < 0) {
        fd_timer_remove(&r->timers, u->churn.heap_pos);
        return 0;
    }
    return fd_timer_set(&r->timers, u->churn.heap_pos, due, u);
}

static int fire(ev_run *r, int64_t wm, const fd_churn_sink *sink)
{
    const fd_timer *t;
    while ((t = fd_timer_top(&r->timers)) && t->due <= wm) {
        fd_user *u = t->ref;
        if (set_timer(r, u, fd_churn_on_timer(r->cp, &r->m, u, wm, sink)) < 0)
            return -1;
    }
    return 0;
}

static int apply(ev_run *r, const fd_feat_params *fp, const fd_event *ev, int64_t lateness,
                 const fd_churn_sink *sink)
{
    if (ev->ts_ms > r->max_ts)
        r->max_ts = ev->ts_ms;
    if (fire(r, r->max_ts - lateness, sink) < 0)
        return -1;
    bool created;
    fd_user *u = fd_user_table_upsert(r->users, ev->user_id, strlen(ev->user_id), &created);
    if (!u)
        return -1;
    if (r->recs && fd_eval_recs_event(r->recs, ev) < 0)
        return -1;
    fd_churn_before_event(r->cp, &r->m, u, ev->ts_ms, sink);
    fd_sess_step st;
    fd_feat_update(fp, &u->f, ev, &st);
    r->events++;
    return set_timer(r, u, fd_churn_after_event(r->cp, &r->m, u, ev->ts_ms, sink));
}

static void progress(const ev_run *r, int64_t start, double t0, bool force)
{
    static fd_cli_progress pg = {.label = PROG, .unit = "events", .tty = -1};
    char text[160];
    snprintf(text, sizeof text, "day %.1f, %" PRIu64 " examples, %.1f s",
             start ? (double)(r->max_ts - start) / DAY_MS : 0.0, r->examples, fd_cli_now_s() - t0);
    fd_cli_progress_show(&pg, r->events, r->total_events, text, force);
}

/* Run the events; 0, or -1 with a message printed. */
static int run_stream(const ev_args *a, ev_run *r, const fd_feat_params *fp, int64_t lateness)
{
    fd_churn_sink sink = {r, on_alert, on_example};
    double t0 = fd_cli_now_s();
    char err[512];
    fd_event ev;
    int64_t start = 0;
    if (!a->input) {
        fd_gen_opts o;
        fd_gen_opts_default(&o);
        o.seed = a->seed;
        o.users = (uint32_t)a->users;
        o.events = a->events;
        o.span_ms = a->span_ms;
        o.churn_fraction = a->churn_fraction;
        o.items = 2000;
        fd_gen *g = fd_gen_new(&o, err, sizeof err);
        if (!g) {
            fprintf(stderr, PROG ": generator: %s\n", err);
            return -1;
        }
        start = o.start_ms;
        int rc = 0;
        /* the span bounds the stream (the generator's is rough: as churners
         * leave, the others' events stretch it) */
        while (!fd_cli_stop && fd_gen_next(g, &ev) == 1 && ev.ts_ms < start + a->span_ms) {
            if (apply(r, fp, &ev, lateness, &sink) < 0) {
                fprintf(stderr, PROG ": out of memory\n");
                rc = -1;
                break;
            }
            if ((r->events & 0xffff) == 0)
                progress(r, start, t0, false);
        }
        fd_gen_destroy(g);
        if (rc < 0)
            return -1;
    } else {
        /* the shared reader (tools/replay_reader.h): datasets in time order,
         * our own JSON lines in file order, as recorded */
        int fmt = fd_row_format_parse(a->format);
        fd_replay_opts ro = {
            .format = fmt, .prog = PROG, .sort = fmt != FD_ROWS_JSON, .max_reports = 10};
        fd_replay *rd = fd_replay_open(a->input, &ro, err, sizeof err);
        if (!rd) {
            fprintf(stderr, PROG ": %s\n", err);
            return -1;
        }
        int rc = fd_replay_load(rd) < 0 ? -1 : 0, nr = 0;
        while (rc == 0 && !fd_cli_stop && (nr = fd_replay_next(rd, &ev)) == 1) {
            if (!start)
                start = ev.ts_ms;
            if (apply(r, fp, &ev, lateness, &sink) < 0) {
                fprintf(stderr, PROG ": out of memory\n");
                rc = -1;
                break;
            }
            if ((r->events & 0xffff) == 0)
                progress(r, start, t0, false);
        }
        if (nr < 0)
            rc = -1;
        const fd_replay_stats *st = fd_replay_get_stats(rd);
        if (st->skipped)
            fprintf(stderr, PROG ": %s: %" PRIu64 " lines skipped\n", a->input, st->skipped);
        fd_replay_free(rd);
        if (rc < 0)
            return -1;
    }
    /* the stream's end: timers up to its last event time (later episodes
     * are censored) */
    if (fire(r, r->max_ts - lateness, &sink) < 0)
        return -1;
    progress(r, start, t0, true);
    return 0;
}

/* The peers' JSON object (NULL on failure, with the reason printed). */
static json_t *run_peers(const char *script, const char *csv)
{
    char cmd[PATH_MAX * 2 + 64];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, csv);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, PROG ": cannot run %s: %s\n", script, strerror(errno));
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadf(p, 0, &je);
    int st = pclose(p);
    if (!j || st != 0 || !json_is_object(j)) {
        if (st != 0)
            fprintf(stderr, PROG ": the peers (%s) failed (exit %d)\n", script,
                    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        else
            fprintf(stderr, PROG ": the peers (%s) printed no JSON object: %s\n", script, je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *default_script(char *buf, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *dir = dirname(exe);
        snprintf(buf, n, "%s/../tools/eval_peers.py", dir);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    snprintf(buf, n, "tools/eval_peers.py");
    return buf;
}

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

int fd_cmd_eval(int argc, char **argv)
{
    ev_args a;
    memset(&a, 0, sizeof a);
    int pr = parse_args(argc, argv, &a);
    int done = fd_cli_args_done(pr, PROG, usage);
    if (done >= 0)
        return done;
    fd_cli_catch_stop();

    fd_config cfg;
    char err[512];
    fd_config_defaults(&cfg);
    if (a.config && fd_config_load(&cfg, a.config, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        fd_config_free(&cfg);
        return 2;
    }
    if (a.horizon_ms)
        cfg.churn_horizon_ms = a.horizon_ms;
    int64_t hl[4];
    fd_feat_params fp;
    fd_churn_params cp;
    int nh = fd_config_half_lives(&cfg, hl, err, sizeof err);
    if (nh < 0 || fd_feat_params_init(&fp, hl, nh, cfg.session_gap_ms, err, sizeof err) != 0 ||
        fd_churn_params_from_config(&cp, &cfg, &fp, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        fd_config_free(&cfg);
        return 2;
    }
    int64_t lateness = cfg.funnel_allowed_lateness_ms;

    int rc = 1;
    ev_run r;
    memset(&r, 0, sizeof r);
    r.cp = &cp;
    r.total_events = a.input ? 0 : a.events;
    r.timers.moved = moved;
    fd_churn_model_init(&r.m, &cp);
    r.users = fd_user_table_new(a.users * 2);
    char tmpcsv[] = "/tmp/funnelctl-eval-XXXXXX";
    const char *csv = a.csv;
    json_t *peers = NULL;
    if (a.recs) {
        fd_mf_params mp;
        fd_mf_params_default(&mp);
        r.recs = fd_eval_recs_new(&mp, a.recs_every, a.recs_bf16);
    }
    if (!r.users || (a.recs && !r.recs)) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    if (!csv && a.peers) {
        int fd = mkstemp(tmpcsv);
        if (fd < 0) {
            fprintf(stderr, PROG ": %s: %s\n", tmpcsv, strerror(errno));
            goto out;
        }
        close(fd);
        csv = tmpcsv;
    }
    if (csv) {
        r.csv = fopen(csv, "w");
        if (!r.csv) {
            fprintf(stderr, PROG ": %s: %s\n", csv, strerror(errno));
            goto out;
        }
        fprintf(r.csv, "ts,label,p");
        for (int i = 0; i < cp.lr.n; i++) {
            char nb[64];
            fprintf(r.csv, ",%s", fd_feat_name(&fp, i, nb, sizeof nb));
        }
        fputc('\n', r.csv);
    }
    if (run_stream(&a, &r, &fp, lateness) < 0)
        goto out;
    if (fd_cli_stop) {
        rc = 130;
        goto out;
    }
    if (r.csv) {
        int e = fclose(r.csv);
        r.csv = NULL;
        if (e != 0 || r.io_error) {
            fprintf(stderr, PROG ": %s: write error\n", csv);
            goto out;
        }
    }
    if (a.peers) {
        char sb[PATH_MAX];
        const char *script = a.peers_script ? a.peers_script : default_script(sb, sizeof sb);
        fprintf(stderr, PROG ": running the scikit-learn peers on %" PRIu64 " examples\n",
                r.examples);
        peers = run_peers(script, csv);
        if (!peers)
            goto out;
    }

    const fd_quality *q = &r.m.q;
    double hs = (double)cp.horizon_ms / 1000.0;
    json_t *o = json_object();
    json_object_set_new(o, "source", json_string(a.input ? a.input : "generated"));
    json_object_set_new(o, "events", json_integer((json_int_t)r.events));
    json_object_set_new(o, "users", json_integer((json_int_t)fd_user_table_count(r.users)));
    json_object_set_new(o, "horizon_s", json_real(hs));
    json_object_set_new(o, "examples", json_integer((json_int_t)r.examples));
    json_object_set_new(o, "positives", json_integer((json_int_t)r.positives));
    json_object_set_new(o, "auc", json_real(fd_quality_auc(q)));
    json_object_set_new(o, "logloss", json_real(fd_quality_logloss(q)));
    json_object_set_new(o, "alerts", json_integer((json_int_t)r.alerts));
    json_object_set_new(o, "alert_precision", json_real(fd_quality_precision(q)));
    json_object_set_new(o, "alert_recall", json_real(fd_quality_recall(q)));
    json_object_set_new(o, "median_lead_time_s", json_real(fd_quality_median_lead_s(q, hs)));
    json_object_set_new(o, "churned", json_real(q->churned));
    json_object_set_new(o, "reactivated", json_real(q->reactivated));
    json_object_set_new(o, "model_examples", json_integer((json_int_t)r.m.lr.examples));
    json_t *cal = json_array();
    for (int d = 0; d < 10; d++) {
        json_t *c = json_object();
        json_object_set_new(c, "decile", json_integer(d));
        json_object_set_new(c, "n", json_real(q->cal_n[d]));
        json_object_set_new(c, "mean_p", json_real(q->cal_n[d] ? q->cal_p[d] / q->cal_n[d] : 0));
        json_object_set_new(c, "rate", json_real(q->cal_n[d] ? q->cal_y[d] / q->cal_n[d] : 0));
        json_array_append_new(cal, c);
    }
    json_object_set_new(o, "calibration", cal);
    fd_eval_recs_result rr;
    if (r.recs) {
        fd_eval_recs_get(r.recs, &rr);
        json_object_set_new(o, "recall_at_10", json_real(rr.recall));
        json_object_set_new(o, "ndcg_at_10", json_real(rr.ndcg));
        json_object_set_new(o, "popularity_recall_at_10", json_real(rr.pop_recall));
        json_object_set_new(o, "popularity_ndcg_at_10", json_real(rr.pop_ndcg));
        json_object_set_new(o, "recs_positives", json_integer((json_int_t)rr.positives));
        json_object_set_new(o, "recs_evaluated", json_integer((json_int_t)rr.evaluated));
        json_object_set_new(o, "recs_items", json_integer((json_int_t)rr.items));
        json_object_set_new(o, "recs_user_factors",
                            json_string(a.recs_bf16 ? "bfloat16" : "float32"));
    }
    if (peers) {
        const char *keys[] = {"batch_auc", "sgd_auc", "online_auc", "online_auc_test",
                              "sgd_auc_test"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            json_object_set_new(o, keys[i], json_real(jnum(peers, keys[i])));
    }
    if (a.csv)
        json_object_set_new(o, "csv", json_string(a.csv));
    if (a.json) {
        json_dumpf(o, stdout, JSON_INDENT(0) | JSON_COMPACT);
        fputc('\n', stdout);
    } else {
        FILE *f = stdout;
        fprintf(f, "churn model, prequential, %" PRIu64 " events, horizon %.0f d\n", r.events,
                hs / 86400.0);
        fprintf(f, "  examples            %" PRIu64 " (%" PRIu64 " churned)\n", r.examples,
                r.positives);
        fprintf(f, "  AUC (recent window) %.4f\n", fd_quality_auc(q));
        fprintf(f, "  log loss            %.4f\n", fd_quality_logloss(q));
        fprintf(f, "  alerts              %" PRIu64 ": precision %.3f, recall %.3f\n", r.alerts,
                fd_quality_precision(q), fd_quality_recall(q));
        fprintf(f, "  median lead time    %.1f d (horizon %.0f d)\n",
                fd_quality_median_lead_s(q, hs) / 86400.0, hs / 86400.0);
        fprintf(f, "  churned / reactivated  %.0f / %.0f\n", q->churned, q->reactivated);
        fprintf(f, "  calibration (decile: mean p, observed rate, n)\n");
        for (int d = 0; d < 10; d++)
            if (q->cal_n[d] > 0)
                fprintf(f, "    %d: %.3f %.3f %.0f\n", d, q->cal_p[d] / q->cal_n[d],
                        q->cal_y[d] / q->cal_n[d], q->cal_n[d]);
        if (peers)
            fprintf(f,
                    "  peers on the same examples (scikit-learn):\n"
                    "    batch LogisticRegression, last 30%%: AUC %.4f (funneld online on the "
                    "same part: %.4f)\n"
                    "    SGDClassifier partial_fit, prequential: AUC %.4f (funneld: %.4f)\n",
                    jnum(peers, "batch_auc"), jnum(peers, "online_auc_test"),
                    jnum(peers, "sgd_auc"), jnum(peers, "online_auc"));
        if (r.recs)
            fprintf(f,
                    "recommendations, prequential, %" PRIu64 " events with an item (%" PRIu64
                    " checked), %" PRIu32 " items\n"
                    "  matrix factorization   recall@10 %.4f  NDCG@10 %.4f\n"
                    "  decayed popularity     recall@10 %.4f  NDCG@10 %.4f  (%.2fx)\n",
                    rr.positives, rr.evaluated, rr.items, rr.recall, rr.ndcg, rr.pop_recall,
                    rr.pop_ndcg, rr.pop_recall > 0 ? rr.recall / rr.pop_recall : 0.0);
    }
    json_decref(o);
    rc = 0;
out:
    if (r.csv)
        fclose(r.csv);
    if (csv == tmpcsv)
        unlink(tmpcsv);
    json_decref(peers);
    fd_timer_free(&r.timers);
    fd_user_table_free(r.users);
    fd_eval_recs_free(r.recs);
    fd_config_free(&cfg);
    return rc;
}
