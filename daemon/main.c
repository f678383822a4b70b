/*
 * main.c - funneld: command line, config, signals, and the engine.
 *
 * Signal handlers only set a flag; the engine polls it. SIGTERM and SIGINT
 * drain, flush and exit 0.
 */
#include <cblas.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/http.h"
#include "daemon/notify.h"
#include "pipeline/engine.h"
#include "pipeline/kafka.h"

#define DEFAULT_CONFIG "/etc/funneld/funneld.yaml"

static volatile sig_atomic_t stop_flag, reload_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    reload_flag = 1;
}

/* SIGHUP: re-read and validate the config file, apply the keys that can
 * change at run time (CF_RELOAD in config_table.c: the log level, format
 * and progress interval, the flush interval, the churn alert threshold,
 * re-arm margin, least events and cooldown) and name the changed keys that
 * wait for a restart. A file that does not validate changes nothing, and
 * says why (file:line:column). Runs on the engine thread (on_reload). */
typedef struct reload_ctx {
    const char *path;
    fd_config *running; /* as started, with the reloaded keys as last applied */
    fd_engine *engine;
    fd_notify *notify;
} reload_ctx;

static void append_name(char *buf, size_t size, size_t *len, const char *s)
{
    int w = snprintf(buf + *len, size - *len, "%s%s", *len ? ", " : "", s);
    if (w > 0 && (size_t)w < size - *len)
        *len += (size_t)w;
}

static int apply_key(reload_ctx *rc, const fd_config *next, const char *name, char *err,
                     size_t errsize)
{
    if (!strcmp(name, "log.level")) {
        int lvl = fd_log_level_parse(next->log_level);
        if (lvl < 0)
            return -1;
        fd_log_set_level(lvl);
        return 0;
    }
    if (!strcmp(name, "log.format")) {
        int f = fd_log_format_parse(next->log_format);
        if (f < 0)
            return -1;
        fd_log_set_format(f);
        return 0;
    }
    if (!strcmp(name, "log.progress_interval")) {
        rc->notify->progress_every_ms = next->log_progress_interval_ms;
        return 0;
    }
    return fd_engine_reload(rc->engine, next, name, err, errsize);
}

static void reload_config(void *arg)
{
    reload_ctx *rc = arg;
    const char *path = rc->path;
    fd_config next;
    char err[1024];
    fd_config_defaults(&next);
    if (fd_config_load(&next, path, err, sizeof err) != 0 ||
        fd_kafka_check_properties(&next, err, sizeof err) != 0) {
        fd_err("main", "SIGHUP: %s: keeping the running configuration", err);
        fd_config_free(&next);
        return;
    }
    const char *names[FD_CONFIG_MAX_KEYS];
    size_t n = fd_config_diff(rc->running, &next, names, FD_CONFIG_MAX_KEYS);
    char applied[1024] = "", later[1024] = "", value[256];
    size_t la = 0, ll = 0;
    for (size_t i = 0; i < n && i < FD_CONFIG_MAX_KEYS; i++) {
        if (!fd_config_reloadable(names[i])) {
            append_name(later, sizeof later, &ll, names[i]);
            continue;
        }
        char why[256] = "";
        if (apply_key(rc, &next, names[i], why, sizeof why) != 0 ||
            fd_config_adopt(rc->running, &next, names[i]) != 0) {
            fd_err("main", "SIGHUP: %s: could not apply %s%s%s; it keeps its running value", path,
                   names[i], why[0] ? ": " : "", why);
            continue;
        }
        fd_config_value_text(rc->running, names[i], value, sizeof value);
        char item[400];
        snprintf(item, sizeof item, "%s=%s", names[i], value);
        append_name(applied, sizeof applied, &la, item);
    }
    if (!la && !ll)
        fd_info("main", "SIGHUP: %s is valid and unchanged", path);
    else
        fd_info("main", "SIGHUP: %s is valid; applied: %s; changed, taking effect on restart: %s",
                path, la ? applied : "nothing", ll ? later : "nothing");
    fd_config_free(&next);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: funneld [-c FILE] [--check-config] [--print-config] [--version] [--help]\n"
                 "\n"
                 "Streaming funnel analytics: consumes click/cart/purchase events from Kafka,\n"
                 "keeps per-user and per-minute counters in Redis, sends bad input to a\n"
                 "dead-letter topic.\n"
                 "\n"
                 "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
                 "      --check-config validate the configuration and exit 0 (valid) or 1\n"
                 "      --print-config print the effective configuration (secrets redacted)\n"
                 "  -V, --version      print the version\n"
                 "  -h, --help         this help\n");
}

int main(int argc, char **argv)
{
    /* Every worker shard is a thread already and calls OpenBLAS from it
     * (top-N scoring): OpenBLAS's own thread pool would only spin beside
     * them (measured in funnelctl bench --core-only: sched_yield and IRQ
     * handling took 40 % of the samples; 1208 ns/event with both models,
     * 1033 with one thread). */
    openblas_set_num_threads(1);
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"check-config", no_argument, 0, 'k'},
        {"print-config", no_argument, 0, 'p'}, {"version", no_argument, 0, 'V'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *path = DEFAULT_CONFIG;
    int check = 0, print = 0, c;
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'p':
            print = 1;
            break;
        case 'V':
            printf("funneld %s\n", FD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "funneld: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    fd_config cfg;
    char err[1024];
    fd_config_defaults(&cfg);
    if (fd_config_load(&cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        fd_config_free(&cfg);
        return 1;
    }
    /* Everything the start reads, before --check-config answers: the two
     * agree from any working directory. */
    if (fd_kafka_check_properties(&cfg, err, sizeof err) != 0 ||
        (!print && fd_engine_check_config(&cfg, err, sizeof err) != 0)) {
        fprintf(stderr, "%s\n", err);
        fd_config_free(&cfg);
        return 1;
    }
    if (check) {
        printf("%s: OK\n", path);
        fd_config_free(&cfg);
        return 0;
    }
    if (print) {
        fd_config_print(&cfg, stdout);
        fd_config_free(&cfg);
        return 0;
    }
    int lvl = fd_log_level_parse(cfg.log_level);
    if (lvl >= 0)
        fd_log_set_level(lvl);
    int fmt = fd_log_format_parse(cfg.log_format);
    if (fmt >= 0)
        fd_log_set_format(fmt);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fd_info("main", "funneld %s starting with %s", FD_VERSION, path);
    fd_engine_startup_stop(&stop_flag);
    fd_engine *e = fd_engine_new(&cfg, err, sizeof err);
    if (!e) {
        fd_err("main", "%s", err);
        fd_config_free(&cfg);
        return 1;
    }
    static fd_notify notify; /* systemd: READY, STATUS, WATCHDOG, STOPPING */
    fd_notify_init(&notify, cfg.log_progress_interval_ms);
    static reload_ctx reload;
    reload = (reload_ctx){.path = path, .running = &cfg, .engine = e, .notify = &notify};
    fd_engine_signals sig = {.stop = &stop_flag,
                             .reload = &reload_flag,
                             .on_reload = reload_config,
                             .arg = &reload,
                             .before_poll = fd_notify_before_poll,
                             .hook_arg = &notify};
    fd_http *http = fd_http_start(cfg.http_listen, err, sizeof err);
    if (!http && err[0]) {
        fd_err("main", "%s", err);
        fd_engine_destroy(e);
        fd_config_free(&cfg);
        return 1;
    }
    fd_http_set_source(http, &cfg);
    if (http)
        fd_info("http", "listening on %s (port %d): /metrics, /healthz, /readyz, /api/",
                cfg.http_listen, fd_http_port(http));
    notify.http = http;
    int rc = fd_engine_run(e, &sig);
    fd_http_stop(http);
    free(notify.metrics);
    fd_engine_destroy(e);
    fd_config_free(&cfg);
    fd_info("main", "exit %d", rc == 0 ? 0 : 1);
    return rc == 0 ? 0 : 1;
}
