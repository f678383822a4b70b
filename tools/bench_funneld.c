/*
 * bench_funneld.c - `funnelctl bench`: Redis (private redis-server or a
 * given one) and the funneld run: its config, the timing, its stats.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "pipeline/redis.h"
#include "daemon/clock.h"
#include "tools/bench_int.h"
#include "tools/cli.h"

/* ---- Redis ---------------------------------------------------------------- */

/* Start a private redis-server on a unix socket in run->dir (unless --redis)
 * and connect run->redis. 0 / -1 (printed). */
int bench_redis_open(bench_run *run, const bench_args *a)
{
    char err[512], url[PATH_MAX + 32];
    if (a->redis_url) {
        snprintf(url, sizeof url, "%s", a->redis_url);
        run->given_redis = true;
        snprintf(run->prefix, sizeof run->prefix, "fd:bench:%ld-%ld:", (long)getpid(),
                 (long)time(NULL));
    } else {
        char exe[PATH_MAX], sock[PATH_MAX + 16], log[PATH_MAX + 16];
        if (bench_find_in_path("redis-server", exe, sizeof exe) != 0) {
            fprintf(stderr, PROG ": redis-server is not on PATH (or give --redis URL)\n");
            return -1;
        }
        snprintf(sock, sizeof sock, "%s/redis.sock", run->dir);
        snprintf(log, sizeof log, "%s/redis.log", run->dir);
        char *argv[] = {exe,      "--port",    "0", "--unixsocket", sock, "--unixsocketperm",
                        "700",    "--save",    "",  "--appendonly", "no", "--dir",
                        run->dir, "--logfile", log, "--daemonize",  "no", NULL};
        run->redis_pid = bench_spawn(argv, -1, -1);
        if (run->redis_pid < 0) {
            fprintf(stderr, PROG ": starting redis-server: %s\n", strerror(errno));
            return -1;
        }
        snprintf(url, sizeof url, "unix://%s", sock);
        snprintf(run->prefix, sizeof run->prefix, "fd:v2:");
        for (double end = fd_cli_now_s() + 10;
             access(sock, F_OK) != 0 && fd_cli_now_s() < end && !fd_cli_stop;)
            fd_sleep_ms(10); /* until redis-server listens: no retry noise */
    }
    fd_redis_opts ro = {
        .url = url,
        .password_env = "FUNNELD_REDIS_PASSWORD",
        .connect_timeout_ms = 2000,
        .command_timeout_ms = 30000,
        .backoff_min_ms = 20,
        .backoff_max_ms = 500,
    };
    run->redis = fd_redis_new(&ro, err, sizeof err);
    if (!run->redis || fd_redis_connect_wait(run->redis, 10000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": redis %s: %s\n", url, err);
        if (run->redis_pid > 0) {
            char log[PATH_MAX + 16];
            snprintf(log, sizeof log, "%s/redis.log", run->dir);
            bench_show_tail("redis-server", log);
        }
        return -1;
    }
    return 0;
}

/* INFO stats total_commands_processed, or -1. */
static double redis_total_commands(bench_run *run)
{
    char err[256];
    redisReply *r = fd_redis_command(run->redis, err, sizeof err, "INFO stats");
    double v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "total_commands_processed:");
        if (p)
            v = strtod(p + strlen("total_commands_processed:"), NULL);
    }
    if (!r)
        fprintf(stderr, PROG ": redis INFO: %s\n", err);
    freeReplyObject(r);
    return v;
}

/* HGET of one integer field; -1 when absent, -2 on error. */
static int64_t redis_hget_int(bench_run *run, const char *key, const char *field)
{
    char err[256];
    redisReply *r = fd_redis_command(run->redis, err, sizeof err, "HGET %s %s", key, field);
    int64_t v = !r ? -2 : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

/* With --redis: delete every key under our prefix (SCAN + UNLINK). */
void bench_redis_delete_prefix(bench_run *run)
{
    char err[256], cursor[32] = "0";
    uint64_t deleted = 0;
    do {
        redisReply *r = fd_redis_command(run->redis, err, sizeof err,
                                         "SCAN %s MATCH %s* COUNT 1000", cursor, run->prefix);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            fprintf(stderr, PROG ": warning: could not delete keys %s*: %s\n", run->prefix,
                    r ? "unexpected SCAN reply" : err);
            freeReplyObject(r);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *d = fd_redis_command(run->redis, err, sizeof err, "UNLINK %s",
                                             r->element[1]->element[i]->str);
            deleted += d != NULL;
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    fprintf(stderr, "bench: deleted %" PRIu64 " keys %s* from the given Redis\n", deleted,
            run->prefix);
}

/* ---- funneld ---------------------------------------------------------------- */

static void yaml_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Write funneld's config; with workers > 0 it carries engine.workers. */
static int write_config(const bench_run *run, const bench_args *a, const char *path, int workers)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    char group[128], dlq[300], url[PATH_MAX + 32];
    snprintf(group, sizeof group, "funnelctl-bench-%ld-%ld", (long)getpid(), (long)time(NULL));
    snprintf(dlq, sizeof dlq, "%s.dlq", run->topic);
    if (a->redis_url)
        snprintf(url, sizeof url, "%s", a->redis_url);
    else
        snprintf(url, sizeof url, "unix://%s/redis.sock", run->dir);
    fputs("# written by funnelctl bench\nkafka:\n  brokers: ", f);
    yaml_str(f, run->brokers);
    fputs("\n  group_id: ", f);
    yaml_str(f, group);
    fputs("\n  topic_events: ", f);
    yaml_str(f, run->topic);
    fputs("\n  topic_dlq: ", f);
    yaml_str(f, dlq);
    /* the output schemas beside the event schema (conf/schemas/) */
    char msch[PATH_MAX + 32];
    const char *slash = strrchr(run->schema, '/');
    int dirlen = slash ? (int)(slash - run->schema + 1) : 0;
    snprintf(msch, sizeof msch, "%.*sfunnel_metrics.avsc", dirlen, run->schema);
    fputs("\n  metrics_schema: ", f);
    yaml_str(f, msch);
    snprintf(msch, sizeof msch, "%.*schurn_alert.avsc", dirlen, run->schema);
    fputs("\n  alerts_schema: ", f);
    yaml_str(f, msch);
    fputs("\nredis:\n  url: ", f);
    yaml_str(f, url);
    fputs("\n  key_prefix: ", f);
    yaml_str(f, run->prefix);
    fprintf(f, "\ninput:\n  format: %s\n  schema: ", fd_format_name((fd_format)a->format));
    yaml_str(f, run->schema);
    if (a->format == FD_FMT_CONFLUENT_AVRO) {
        fputs("\n  schema_ids:\n    1: ", f);
        yaml_str(f, run->schema);
    }
    fprintf(f, "\nlog:\n  level: %s\n", a->funneld_log ? "debug" : "info");
    /* beside a funneld that may already listen on the default port */
    fputs("http:\n  listen: 127.0.0.1:0\n", f);
    if (workers > 0)
        fprintf(f, "engine:\n  workers: %d\n", workers);
    return fclose(f) == 0 ? 0 : -1;
}

/* Write the config, with engine.workers when `funneld --check-config`
 * accepts it. Sets res->workers and res->workers_supported. 0 / -1. */
static int prepare_funneld(const bench_run *run, const bench_args *a, const char *cfg,
                           bench_result *res)
{
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/check-config.log", run->dir);
    char *argv[] = {(char *)run->funneld, "--check-config", "-c", (char *)cfg, NULL};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int want = a->workers > 0 ? a->workers : (int)(cores > 0 ? cores : 1);
    int st;
    if (write_config(run, a, cfg, want) == 0 && (st = bench_run_to_end(argv, log, 30)) != -1 &&
        WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        res->workers = want;
        res->workers_supported = true;
        return 0;
    }
    if (write_config(run, a, cfg, 0) != 0) {
        fprintf(stderr, PROG ": writing %s: %s\n", cfg, strerror(errno));
        return -1;
    }
    st = bench_run_to_end(argv, log, 30);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, PROG ": funneld --check-config rejects the bench's config\n");
        bench_show_tail("funneld --check-config", log);
        return -1;
    }
    res->workers = 1; /* this funneld has no engine.workers: one engine thread */
    res->workers_supported = false;
    if (a->workers > 1)
        fprintf(stderr,
                "bench: warning: this funneld does not know engine.workers; "
                "--workers %d ignored, measuring its single engine thread\n",
                a->workers);
    return 0;
}

/* VmHWM (bytes) and utime+stime (s) of a live process; -1 when unknown. */
static void proc_stats(pid_t pid, double *hwm, double *cpu_s)
{
    char path[64], line[512];
    *hwm = *cpu_s = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmHWM:", 6))
                *hwm = strtod(line + 6, NULL) * 1024; /* kB */
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f && fgets(line, sizeof line, f)) {
        const char *p = strrchr(line, ')'); /* comm may contain spaces */
        unsigned long ut, st;
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            *cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    if (f)
        fclose(f);
}

/* Whether the file at path has needle past *off (advanced to what was
 * read, less a needle's length so a line split across reads is found). */
static bool log_has(const char *path, const char *needle, long *off)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[8192];
    bool found = false;
    size_t nl = strlen(needle);
    if (fseek(f, *off, SEEK_SET) == 0) {
        size_t n;
        while (!found && (n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
            buf[n] = '\0';
            found = strstr(buf, needle) != NULL;
            *off += (long)n;
            if (!found && n > nl) {
                *off -= (long)nl;
                fseek(f, *off, SEEK_SET);
            } else if (!found) {
                break;
            }
        }
    }
    fclose(f);
    return found;
}

/* Start funneld and time it until the offsets in Redis reach run->hi on
 * every partition; then SIGTERM it. 0 / -1 (printed). */
int bench_run_funneld(bench_run *run, const bench_args *a, bench_result *res)
{
    char cfg[PATH_MAX + 16], err[256];
    snprintf(cfg, sizeof cfg, "%s/funneld.yaml", run->dir);
    if (prepare_funneld(run, a, cfg, res) != 0)
        return -1;
    double calib0 = redis_total_commands(run), calib1 = redis_total_commands(run);
    double c0 = redis_total_commands(run);
    if (calib0 < 0 || calib1 < 0 || c0 < 0)
        return -1;
    double info_cost = calib1 - calib0; /* what one INFO adds to the counter */

    if (a->funneld_log)
        snprintf(run->funneld_log, sizeof run->funneld_log, "%s", a->funneld_log);
    else
        snprintf(run->funneld_log, sizeof run->funneld_log, "%s/funneld.log", run->dir);
    int lfd = open(run->funneld_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (lfd < 0) {
        fprintf(stderr, PROG ": %s: %s\n", run->funneld_log, strerror(errno));
        return -1;
    }
    char *argv[] = {run->funneld, "-c", cfg, NULL};
    fprintf(stderr, "bench: funneld end to end (%d worker%s%s%s%s)\n", res->workers,
            res->workers == 1 ? "" : "s", res->workers_supported ? "" : ", engine.workers unknown",
            a->preload ? ", LD_PRELOAD=" : "", a->preload ? a->preload : "");
    double redis_hwm, redis_cpu0 = -1;
    if (run->redis_pid > 0)
        proc_stats(run->redis_pid, &redis_hwm, &redis_cpu0);
    double t0 = fd_cli_now_s();
    fd_cli_progress pg = {.label = "bench: funneld", .unit = "events", .tty = -1};
    run->funneld_pid = bench_spawn_preload(argv, a->preload, lfd, lfd);
    close(lfd);
    if (run->funneld_pid < 0) {
        fprintf(stderr, PROG ": starting %s: %s\n", run->funneld, strerror(errno));
        return -1;
    }
    char key[512];
    double polls = 0, t_end = 0, t_msg = 0;
    long log_off = 0;
    for (;;) {
        if (!t_msg && log_has(run->funneld_log, "engine: first message consumed", &log_off))
            t_msg = fd_cli_now_s();
        int st;
        if (waitpid(run->funneld_pid, &st, WNOHANG) == run->funneld_pid) {
            run->funneld_pid = 0;
            if (WIFSIGNALED(st))
                fprintf(stderr,
                        PROG ": funneld exited (killed by signal %d) before consuming the topic\n",
                        WTERMSIG(st));
            else
                fprintf(stderr, PROG ": funneld exited (exit code %d) before consuming the topic\n",
                        WEXITSTATUS(st));
            bench_show_tail("funneld", run->funneld_log);
            return -1;
        }
        for (int p = 0; p < run->nparts; p++) {
            snprintf(key, sizeof key, "%spart:%s:%d", run->prefix, run->topic, p);
            fd_redis_appendf(run->redis, "HGET %s offset", key);
        }
        redisReply *rep[MAX_PARTS];
        if (fd_redis_read_replies(run->redis, rep, (size_t)run->nparts, err, sizeof err) != 0) {
            fprintf(stderr, PROG ": redis: %s\n", err);
            return -1;
        }
        polls += run->nparts;
        int done = 0;
        bool first = false;
        double stored = 0;
        for (int p = 0; p < run->nparts; p++) {
            if (rep[p]->type == REDIS_REPLY_STRING && !res->e2e_first_s)
                first = true;
            if (rep[p]->type == REDIS_REPLY_STRING) {
                long long o = strtoll(rep[p]->str, NULL, 10);
                stored += (double)(o < run->hi[p] ? o : run->hi[p]);
                if (o >= run->hi[p])
                    done++;
            }
            freeReplyObject(rep[p]);
        }
        if (first) {
            res->e2e_first_s = fd_cli_now_s() - t0;
            res->e2e_first_events = stored;
        }
        char ptext[96];
        snprintf(ptext, sizeof ptext, "stored in Redis, %d/%d partitions done, %.0f s", done,
                 run->nparts, fd_cli_now_s() - t0);
        fd_cli_progress_show(&pg, (uint64_t)stored, (uint64_t)run->total, ptext,
                             done == run->nparts);
        if (done == run->nparts) {
            t_end = fd_cli_now_s();
            break;
        }
        if (fd_cli_stop)
            return -1;
        if (fd_cli_now_s() - t0 > a->timeout_s) {
            fprintf(stderr, PROG ": funneld reached the end of %d of %d partitions in %.0f s\n",
                    done, run->nparts, a->timeout_s);
            bench_show_tail("funneld", run->funneld_log);
            return -1;
        }
        fd_sleep_ms(POLL_MS);
    }
    double c1 = redis_total_commands(run);
    proc_stats(run->funneld_pid, &res->peak_rss, &res->funneld_cpu_s);
    double redis_cpu1 = -1;
    if (run->redis_pid > 0)
        proc_stats(run->redis_pid, &redis_hwm, &redis_cpu1);
    res->redis_cpu_s = redis_cpu0 >= 0 && redis_cpu1 >= 0 ? redis_cpu1 - redis_cpu0 : -1;
    char stats[256];
    snprintf(stats, sizeof stats, "%sstats", run->prefix);
    res->funneld_events = redis_hget_int(run, stats, "events");
    res->e2e_s = t_end - t0;
    res->e2e_eps = (double)run->total / res->e2e_s;
    /* steady state: from funneld's first consumed message (its log line,
     * seen within one poll interval) to the end, as the raw consumer is
     * timed from its first message; without that line (an older funneld)
     * from the first offset in Redis, less the events stored by then */
    res->e2e_first_msg_s = t_msg ? t_msg - t0 : -1;
    double steady_s = t_msg ? t_end - t_msg : res->e2e_s - res->e2e_first_s;
    double steady_n = t_msg ? (double)run->total : (double)run->total - res->e2e_first_events;
    res->e2e_steady_eps = steady_s > 0 ? steady_n / steady_s : 0;
    res->redis_polls = polls; /* the HGET of stats above comes after c1 */
    res->redis_cmds = c1 < 0 ? -1 : c1 - c0 - polls - info_cost;
    int st = bench_stop_child(&run->funneld_pid, SIGTERM, STOP_WAIT_S);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, PROG ": funneld did not exit cleanly on SIGTERM (status %d)\n", st);
        bench_show_tail("funneld", run->funneld_log);
        return -1;
    }
    return 0;
}
