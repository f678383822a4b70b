/*
 * bench_rss.c - `funnelctl bench --rss-users LIST`: what funneld's memory
 * costs, as a line a user can plan with (issue 14).
 *
 * For each user count U of the list, a fresh embedded cluster gets
 * max(--events, 5 U) generated events of U users, and funneld runs alone on
 * it (a private redis-server, the plain consumer beside it for the steady
 * ratio) until the offsets in Redis reach the end. Its peak RSS (VmHWM, just
 * before SIGTERM) is one point; the x of the point is the number of users
 * that are present in the topic (the generator's count of users with at
 * least one event), not U: with Pareto activity some of the U never emit.
 * The least-squares line through the points gives the fixed cost (its value
 * at 0 users: what buffers, threads and libraries take whatever the users)
 * and the slope (RSS per user, everything included: the user table, the
 * write path's snapshots, the allocator's slack).
 *
 * Every run has at least --events events so that each fills funneld's
 * buffers (the consumer queue, the shard queues, a full-size write) the same
 * way, and all runs use one partition count (the consumer fetches per
 * partition), enough for the largest run: the mock keeps ~5 MiB per
 * partition (../shared/DESIGN.md).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec.h"
#include "tools/bench_int.h"
#include "tools/cli.h"

#define RSS_EVENTS_PER_USER      5
#define RSS_EVENTS_PER_PARTITION 125000 /* the default bench: 2 M events on 16 */

typedef struct rss_point {
    uint32_t users, present;
    uint64_t events;
    double peak_rss, seconds, steady_ratio;
    int64_t counted;
} rss_point;

typedef struct rss_fit {
    double fixed, slope, r2;
    bool ok;
} rss_fit;

static uint64_t point_events(const bench_args *a, uint32_t users)
{
    uint64_t e = (uint64_t)users * RSS_EVENTS_PER_USER;
    return e > a->gen.events ? e : a->gen.events;
}

/* Least squares of y = fixed + slope x. */
static rss_fit fit_line(const rss_point *pt, int n)
{
    rss_fit f = {0};
    double mx = 0, my = 0;
    for (int i = 0; i < n; i++) {
        mx += pt[i].present;
        my += pt[i].peak_rss;
    }
    mx /= n;
    my /= n;
    double sxx = 0, sxy = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        double dx = pt[i].present - mx, dy = pt[i].peak_rss - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if (sxx <= 0)
        return f; /* every run had the same users: no line */
    f.slope = sxy / sxx;
    f.fixed = my - f.slope * mx;
    f.r2 = syy > 0 ? sxy * sxy / (sxx * syy) : 1;
    f.ok = true;
    return f;
}

static void print_table(FILE *out, const bench_args *a, int parts, int workers, const rss_point *pt,
                        int n, const rss_fit *f)
{
    fprintf(out,
            "funnelctl bench --rss-users: funneld peak RSS per user count, %s, %d partitions, "
            "%d worker%s, seed %" PRIu64 "\n\n",
            fd_format_name((fd_format)a->format), parts, workers, workers == 1 ? "" : "s",
            a->gen.seed);
    fprintf(out, "    users  present     events  peak RSS (VmHWM)  funneld s  steady ratio\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "%9" PRIu32 " %8" PRIu32 " %10" PRIu64 " %12.1f MiB %10.2f  %12.3f\n",
                pt[i].users, pt[i].present, pt[i].events, pt[i].peak_rss / 1048576.0, pt[i].seconds,
                pt[i].steady_ratio);
    fprintf(out, "\nleast-squares line over the users present (%d runs):\n", n);
    if (!f->ok) {
        fprintf(out, "  no line: every run had the same number of users present\n");
        return;
    }
    fprintf(out, "  fixed cost (RSS at 0 users)  %8.1f MiB    target <= 128 MiB: %s\n",
            f->fixed / 1048576.0, f->fixed <= 128.0 * 1048576 ? "met" : "NOT met");
    fprintf(out, "  slope (RSS per user)         %8.1f bytes  target <= 512: %s\n", f->slope,
            f->slope <= 512 ? "met" : "NOT met");
    fprintf(out, "  r^2                          %8.4f\n", f->r2);
}

static void print_json(const bench_args *a, int parts, int workers, const rss_point *pt, int n,
                       const rss_fit *f)
{
    FILE *o = stdout;
    fprintf(o,
            "{\"version\":\"%s\",\"mode\":\"rss_users\",\"format\":\"%s\",\"partitions\":%d,"
            "\"workers\":%d,\"seed\":%" PRIu64 ",\"min_events\":%" PRIu64
            ",\"events_per_user\":%d,\"points\":[",
            FD_VERSION, fd_format_name((fd_format)a->format), parts, workers, a->gen.seed,
            a->gen.events, RSS_EVENTS_PER_USER);
    for (int i = 0; i < n; i++)
        fprintf(o,
                "%s{\"users\":%" PRIu32 ",\"users_present\":%" PRIu32 ",\"events\":%" PRIu64
                ",\"peak_rss_bytes\":%.0f,\"seconds\":%.3f,\"steady_ratio\":%.4f"
                ",\"funneld_events_counted\":%" PRId64 "}",
                i ? "," : "", pt[i].users, pt[i].present, pt[i].events, pt[i].peak_rss,
                pt[i].seconds, pt[i].steady_ratio, pt[i].counted);
    fputc(']', o);
    if (f->ok)
        fprintf(o,
                ",\"fixed_bytes\":%.0f,\"fixed_mib\":%.1f,\"slope_bytes_per_user\":%.1f,"
                "\"r2\":%.4f}\n",
                f->fixed, f->fixed / 1048576.0, f->slope, f->r2);
    else
        fputs(",\"fixed_bytes\":null,\"fixed_mib\":null,\"slope_bytes_per_user\":null,"
              "\"r2\":null}\n",
              o);
}

int bench_rss_series(bench_run *run, const bench_args *a)
{
    rss_point pt[RSS_MAX_POINTS];
    int n = 0, workers = 1;
    uint64_t max_events = 0;
    for (int i = 0; i < a->n_rss; i++) {
        uint64_t e = point_events(a, a->rss_users[i]);
        max_events = e > max_events ? e : max_events;
    }
    uint64_t need = (max_events + RSS_EVENTS_PER_PARTITION - 1) / RSS_EVENTS_PER_PARTITION;
    int parts = a->partitions > (int)need ? a->partitions : (int)need;
    if (parts > MAX_PARTS)
        parts = MAX_PARTS;
    char logpath[PATH_MAX];
    for (int i = 0; i < a->n_rss && !fd_cli_stop; i++) {
        bench_args pa = *a;
        pa.gen.users = a->rss_users[i];
        pa.gen.events = point_events(a, pa.gen.users);
        pa.partitions = parts;
        if (a->funneld_log) { /* one log per run: PATH.USERS */
            snprintf(logpath, sizeof logpath, "%s.%" PRIu32, a->funneld_log, pa.gen.users);
            pa.funneld_log = logpath;
        }
        fprintf(stderr, "bench: --rss-users run %d of %d: %" PRIu32 " users, %" PRIu64 " events\n",
                i + 1, a->n_rss, pa.gen.users, pa.gen.events);
        bench_result *res = calloc(1, sizeof *res);
        int rc = -1;
        if (!res) {
            fprintf(stderr, PROG ": out of memory\n");
        } else if (bench_setup_topic(run, &pa) == 0 &&
                   bench_raw_measure(run, pa.timeout_s, res) == 0 &&
                   bench_redis_open(run, &pa) == 0 && bench_run_funneld(run, &pa, res) == 0) {
            double raw_steady = res->raw_steady_eps;
            pt[n] = (rss_point){
                .users = pa.gen.users,
                .present = run->active_users,
                .events = run->total,
                .peak_rss = res->peak_rss,
                .seconds = res->e2e_s,
                .steady_ratio = raw_steady > 0 ? res->e2e_steady_eps / raw_steady : 0,
                .counted = res->funneld_events,
            };
            workers = res->workers;
            rc = pt[n].peak_rss > 0 ? 0 : -1;
            if (rc != 0)
                fprintf(stderr, PROG ": could not read funneld's VmHWM\n");
            else
                fprintf(stderr, "bench: %" PRIu32 " users present: peak RSS %.1f MiB\n",
                        pt[n].present, pt[n].peak_rss / 1048576.0);
            n++;
        }
        free(res);
        bench_run_cleanup(run);
        if (rc != 0)
            return 1;
    }
    if (fd_cli_stop || n < 2)
        return 1;
    rss_fit f = fit_line(pt, n);
    if (a->json) {
        print_json(a, parts, workers, pt, n, &f);
        print_table(stderr, a, parts, workers, pt, n, &f);
    } else {
        print_table(stdout, a, parts, workers, pt, n, &f);
    }
    fflush(stdout);
    return 0;
}
