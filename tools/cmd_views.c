/*
 * cmd_views.c - `funnelctl funnel`, `top-risk`, `model` and `status`: what
 * a running deployment shows, without writing a query. The first three
 * read Redis through daemon/views.c, the code the HTTP listener's /api/
 * serves, so the terminal and the API show the same numbers; `status`
 * summarises a running funneld's /metrics. Each takes --json.
 */
#include "tools/commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/views.h"
#include "tools/cli.h"

typedef struct view_args {
    const char *config, *redis, *prefix, *span, *http;
    bool json;
    uint64_t n;
} view_args;

static const char *vprog;
static int vmode; /* 0 funnel, 1 top-risk, 2 model, 3 status */

static void view_usage(FILE *f)
{
    static const char *const head[] = {
        "usage: funnelctl funnel [-c CONFIG] [--redis URL] [--prefix P] [--last N] [--span 1m|1h]"
        " [--json]\n\n"
        "The funnel of the last N windows (default 10), newest first: sessions at each\n"
        "stage, events, revenue and the conversion rates, as a table, then a bar chart\n"
        "of the stages summed over those windows.\n",
        "usage: funnelctl top-risk [N] [-c CONFIG] [--redis URL] [--prefix P] [--json]\n\n"
        "The N users (default 10) with the highest latest churn risk, highest first.\n",
        "usage: funnelctl model [-c CONFIG] [--redis URL] [--prefix P] [--json]\n\n"
        "The churn model's quality figures and weights (with feature names; the\n"
        "names follow features.half_lives of -c CONFIG) and the recommendation\n"
        "model's figures.\n",
        "usage: funnelctl status [-c CONFIG] [--http HOST:PORT] [--json]\n\n"
        "A running funneld's state from its HTTP listener (http.listen of -c CONFIG,\n"
        "default 127.0.0.1:9108): readiness, event rate, lag, dead letters, writes.\n"
        "Exit status 0 when ready, 1 when not (or unreachable).\n"};
    fputs(head[vmode], f);
    fputs("\noptions:\n"
          "  -c, --config FILE  funneld's config (redis.url, redis.key_prefix, passwords,\n"
          "                     http.listen, features.half_lives)\n"
          "  --redis URL        redis://host:port[/db] or unix:///path[?db=N]\n"
          "  --prefix P         key prefix (default fd:v2:)\n"
          "  --json             one JSON document (the same as the HTTP /api/ answer)\n",
          f);
}

enum { O_REDIS = 256, O_PREFIX, O_LAST, O_SPAN, O_JSON, O_HTTP };

static int parse(int argc, char **argv, view_args *a)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"redis", required_argument, 0, O_REDIS},
                                         {"prefix", required_argument, 0, O_PREFIX},
                                         {"last", required_argument, 0, O_LAST},
                                         {"span", required_argument, 0, O_SPAN},
                                         {"json", no_argument, 0, O_JSON},
                                         {"http", required_argument, 0, O_HTTP},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->n = 10;
    a->span = "1m";
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case O_REDIS:
            a->redis = optarg;
            break;
        case O_PREFIX:
            a->prefix = optarg;
            break;
        case O_LAST:
            if (vmode != 0 ||
                fd_cli_parse_u64(vprog, "--last", optarg, 1, FD_VIEW_MAX_WINDOWS, &a->n) != 0)
                return -1;
            break;
        case O_SPAN:
            if (strcmp(optarg, "1m") && strcmp(optarg, "1h")) {
                fprintf(stderr, "%s: --span: invalid value '%s' (expected 1m or 1h)\n", vprog,
                        optarg);
                return -1;
            }
            a->span = optarg;
            break;
        case O_JSON:
            a->json = true;
            break;
        case O_HTTP:
            a->http = optarg;
            break;
        case 'h':
            return 1;
        default:
            fprintf(stderr, "%s: unknown option '%s'\n", vprog, argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc && vmode == 1) {
        if (fd_cli_parse_u64(vprog, "N", argv[optind], 1, FD_VIEW_MAX_USERS, &a->n) != 0)
            return -1;
        optind++;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", vprog, argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- terminal output ---------------------------------------------------- */

static void bar(double frac, int width)
{
    int full = (int)lround(frac * width);
    for (int i = 0; i < width; i++)
        fputs(i < full ? "\u2588" : " ", stdout);
}

static void print_funnel(const json_t *doc)
{
    json_t *ws = json_object_get(doc, "windows");
    size_t n = json_array_size(ws);
    if (n == 0) {
        printf("no %s windows in Redis yet\n", json_string_value(json_object_get(doc, "span")));
        return;
    }
    printf("%-17s %8s %8s %8s %8s %7s %7s %7s %7s %12s\n", "window (UTC)", "visit", "click", "cart",
           "purchase", "click%", "cart%", "buy%", "conv%", "revenue");
    long long tot[4] = {0};
    static const char *const st[4] = {"sessions_visit", "sessions_click", "sessions_cart",
                                      "sessions_purchase"};
    for (size_t i = 0; i < n; i++) {
        json_t *w = json_array_get(ws, i);
        time_t t = (time_t)(json_integer_value(json_object_get(w, "start_ms")) / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        long long v[4];
        for (int s = 0; s < 4; s++) {
            v[s] = json_integer_value(json_object_get(w, st[s]));
            tot[s] += v[s];
        }
        printf("%-16s%s %8lld %8lld %8lld %8lld %6.1f%% %6.1f%% %6.1f%% %6.1f%% %12.2f\n", when,
               json_is_true(json_object_get(w, "closed")) ? " " : "*", v[0], v[1], v[2], v[3],
               100 * json_real_value(json_object_get(w, "click_rate")),
               100 * json_real_value(json_object_get(w, "cart_rate")),
               100 * json_real_value(json_object_get(w, "purchase_rate")),
               100 * json_real_value(json_object_get(w, "conversion")),
               (double)json_integer_value(json_object_get(w, "revenue_cents")) / 100.0);
    }
    printf("(* = window still open)\n\nthe %zu window(s) together:\n", n);
    static const char *const names[4] = {"visit", "click", "cart", "purchase"};
    for (int s = 0; s < 4; s++) {
        printf("  %-8s %10lld ", names[s], tot[s]);
        bar(tot[0] > 0 ? (double)tot[s] / (double)tot[0] : 0, 40);
        if (s > 0)
            printf(" %5.1f%% of %s",
                   tot[s - 1] > 0 ? 100.0 * (double)tot[s] / (double)tot[s - 1] : 0, names[s - 1]);
        putchar('\n');
    }
}

static void print_top_risk(const json_t *doc)
{
    json_t *us = json_object_get(doc, "users");
    if (json_array_size(us) == 0) {
        printf("no user has a churn risk in Redis yet\n");
        return;
    }
    printf("%4s  %-6s  %-44s  %s\n", "rank", "risk", "reasons (feature: w*x)", "user");
    for (size_t i = 0; i < json_array_size(us); i++) {
        json_t *u = json_array_get(us, i);
        const char *id = json_string_value(json_object_get(u, "user_id"));
        printf("%4zu  %.4f  ", i + 1, json_real_value(json_object_get(u, "risk")));
        char rs[256] = "";
        size_t rl = 0;
        json_t *why = json_object_get(u, "reasons");
        for (size_t k = 0; k < json_array_size(why) && rl < sizeof rs; k++) {
            json_t *e = json_array_get(why, k);
            int w = snprintf(rs + rl, sizeof rs - rl, "%s%s: %+.2f", k ? ", " : "",
                             json_string_value(json_object_get(e, "feature")),
                             json_real_value(json_object_get(e, "contribution")));
            rl += w > 0 ? (size_t)w : 0;
        }
        printf("%-44s  ", rs);
        for (const char *p = id; p && *p; p++) /* a control character shown, not obeyed */
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                printf("\\x%02x", (unsigned char)*p);
            else
                putchar(*p);
        putchar('\n');
    }
}

static void print_figures(const char *title, json_t *o)
{
    printf("%s\n", title);
    if (!json_is_object(o)) {
        printf("  (no model stored yet)\n");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (json_is_integer(v))
            printf("  %-28s %" JSON_INTEGER_FORMAT "\n", k, json_integer_value(v));
        else if (json_is_real(v))
            printf("  %-28s %.6g\n", k, json_real_value(v));
    }
}

static void print_model(const json_t *doc)
{
    json_t *churn = json_object_get(doc, "churn");
    print_figures("churn model", churn);
    json_t *w = json_object_get(churn, "weights");
    if (json_array_size(w)) {
        printf("  weights (standardised inputs), largest first:\n");
        size_t n = json_array_size(w);
        size_t *ord = malloc(n * sizeof *ord);
        for (size_t i = 0; ord && i < n; i++)
            ord[i] = i;
        for (size_t i = 0; ord && i < n; i++) /* n <= 64: selection sort by |w| */
            for (size_t j = i + 1; j < n; j++) {
                double a =
                    fabs(json_real_value(json_object_get(json_array_get(w, ord[i]), "weight")));
                double b =
                    fabs(json_real_value(json_object_get(json_array_get(w, ord[j]), "weight")));
                if (b > a) {
                    size_t t = ord[i];
                    ord[i] = ord[j];
                    ord[j] = t;
                }
            }
        for (size_t i = 0; ord && i < n; i++) {
            json_t *e = json_array_get(w, ord[i]);
            printf("    %-28s %+.5f\n", json_string_value(json_object_get(e, "feature")),
                   json_real_value(json_object_get(e, "weight")));
        }
        printf("    %-28s %+.5f\n", "(bias)", json_real_value(json_object_get(churn, "bias")));
        free(ord);
    }
    print_figures("recommendation model", json_object_get(doc, "recs"));
}

/* ---- status: GET /metrics --------------------------------------------- */

/* GET path from host:port (loopback in practice); the body in a new
 * string, *status the HTTP status. NULL with err. */
static char *http_get(const char *addr, const char *path, int *status, char *err, size_t n)
{
    char host[256], port[16];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host ||
        strlen(colon + 1) >= sizeof port) {
        snprintf(err, n, "%s: expected HOST:PORT", addr);
        return NULL;
    }
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
        memcpy(host, addr + 1, hl - 2);
        host[hl - 2] = 0;
    } else {
        memcpy(host, addr, hl);
        host[hl] = 0;
    }
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        snprintf(err, n, "%s: %s", addr, gai_strerror(g));
        return NULL;
    }
    int fd = -1;
    for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
        if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, n, "cannot connect to %s: %s (is funneld running, with http.listen there?)",
                 addr, strerror(errno));
        return NULL;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
    if (write(fd, req, (size_t)rl) != rl) {
        snprintf(err, n, "%s: write: %s", addr, strerror(errno));
        close(fd);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf || len + 1 >= cap) {
            char *b = buf ? realloc(buf, cap * 2) : NULL;
            if (!b || cap > (64u << 20)) {
                free(buf);
                close(fd);
                snprintf(err, n, "%s: answer too large", addr);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !body || sscanf(buf + 9, "%d", status) != 1) {
        free(buf);
        snprintf(err, n, "%s: not an HTTP answer", addr);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* Sum of the samples of metric `name` (with any labels) in a text exposition. */
static double metric(const char *text, const char *name, bool *found)
{
    double sum = 0;
    size_t nl = strlen(name);
    *found = false;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) || (p[nl] != ' ' && p[nl] != '{'))
            continue;
        const char *v = p[nl] == '{' ? strchr(p + nl, '}') : p + nl;
        if (!v)
            continue;
        v += *v == '}';
        sum += strtod(v, NULL);
        *found = true;
    }
    return sum;
}

static int status_cmd(const view_args *a, const fd_config *cfg)
{
    const char *addr = a->http ? a->http : cfg->http_listen;
    char err[512];
    int st_ready = 0, st_health = 0, st_metrics = 0;
    char *ready = http_get(addr, "/readyz", &st_ready, err, sizeof err);
    char *health = ready ? http_get(addr, "/healthz", &st_health, err, sizeof err) : NULL;
    char *m = health ? http_get(addr, "/metrics", &st_metrics, err, sizeof err) : NULL;
    if (!m) {
        free(ready);
        free(health);
        if (a->json) {
            json_t *o = json_pack("{s:b,s:s}", "reachable", 0, "error", err);
            char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (t)
                puts(t);
            free(t);
            json_decref(o);
        }
        fprintf(stderr, "%s: %s\n", vprog, err);
        return 1;
    }
    for (char *s = ready; *s; s++)
        if (*s == '\n')
            *s = 0;
    for (char *s = health; *s; s++)
        if (*s == '\n')
            *s = 0;
    static const struct {
        const char *key, *metric;
    } rows[] = {{"events_per_second", "funneld_events_per_second"},
                {"events_total", "funneld_events_total"},
                {"dead_letters_total", "funneld_dead_letters_total"},
                {"lag", "funneld_consumer_lag_messages"},
                {"partitions_assigned", "funneld_partitions_assigned"},
                {"users_in_memory", "funneld_users_in_memory"},
                {"writes_total", "funneld_redis_write_seconds_count"},
                {"write_seconds_sum", "funneld_redis_write_seconds_sum"},
                {"churn_auc", "funneld_churn_auc"},
                {"recs_recall_at_10", "funneld_recs_recall_at_10"}};
    json_t *doc = json_object();
    json_object_set_new(doc, "reachable", json_true());
    json_object_set_new(doc, "ready", json_boolean(st_ready == 200));
    json_object_set_new(doc, "ready_reason", json_string(ready));
    json_object_set_new(doc, "healthy", json_boolean(st_health == 200));
    json_object_set_new(doc, "health_reason", json_string(health));
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bool found;
        double v = metric(m, rows[i].metric, &found);
        json_object_set_new(doc, rows[i].key, found ? json_real(v) : json_null());
    }
    if (a->json) {
        char *s = json_dumps(doc, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
    } else {
        printf("funneld at %s\n  %-20s %s\n  %-20s %s\n", addr, "ready", ready, "health", health);
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v)
        {
            if (json_is_real(v))
                printf("  %-20s %.6g\n", k, json_real_value(v));
        }
    }
    json_decref(doc);
    free(ready);
    free(health);
    free(m);
    return st_ready == 200 ? 0 : 1;
}

static int run_view(int argc, char **argv)
{
    view_args a;
    int done = fd_cli_args_done(parse(argc, argv, &a), vprog, view_usage);
    if (done >= 0)
        return done;
    char err[1024];
    fd_config cfg;
    fd_config_defaults(&cfg);
    if (a.config && fd_config_load(&cfg, a.config, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", vprog, err);
        fd_config_free(&cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (vmode == 3) {
        int rc = status_cmd(&a, &cfg);
        fd_config_free(&cfg);
        return rc;
    }
    int rc = 1;
    fd_log_set_level(FD_LOG_ERROR);
    fd_redis_opts ro = fd_redis_opts_from_config(&cfg);
    if (a.redis)
        ro.url = a.redis;
    fd_redis *r = fd_redis_new(&ro, err, sizeof err);
    json_t *doc = NULL;
    if (!r || fd_redis_ensure(r, err, sizeof err) != 0) {
        fprintf(stderr, "%s: cannot reach Redis: %s\n", vprog, err);
        goto out;
    }
    const char *prefix = a.prefix ? a.prefix : cfg.redis_key_prefix;
    int64_t hl[4];
    char why[256];
    int nh = fd_config_half_lives(&cfg, hl, why, sizeof why);
    fd_feat_params fp;
    bool have_fp =
        nh > 0 && fd_feat_params_init(&fp, hl, nh, cfg.session_gap_ms, why, sizeof why) == 0;
    if (vmode == 0)
        doc = fd_view_funnel(r, prefix, a.span, (int)a.n, err, sizeof err);
    else if (vmode == 1)
        doc = fd_view_top_risk(r, prefix, have_fp ? &fp : NULL, (int)a.n, err, sizeof err);
    else
        doc = fd_view_model(r, prefix, have_fp ? &fp : NULL, err, sizeof err);
    if (!doc) {
        fprintf(stderr, "%s: %s\n", vprog, err);
        goto out;
    }
    if (a.json) {
        char *s = json_dumps(doc, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
    } else if (vmode == 0) {
        print_funnel(doc);
    } else if (vmode == 1) {
        print_top_risk(doc);
    } else {
        print_model(doc);
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    json_decref(doc);
    fd_redis_destroy(r);
    fd_config_free(&cfg);
    return rc;
}

int fd_cmd_funnel(int argc, char **argv)
{
    vprog = "funnelctl funnel";
    vmode = 0;
    return run_view(argc, argv);
}

int fd_cmd_top_risk(int argc, char **argv)
{
    vprog = "funnelctl top-risk";
    vmode = 1;
    return run_view(argc, argv);
}

int fd_cmd_model(int argc, char **argv)
{
    vprog = "funnelctl model";
    vmode = 2;
    return run_view(argc, argv);
}

int fd_cmd_status(int argc, char **argv)
{
    vprog = "funnelctl status";
    vmode = 3;
    return run_view(argc, argv);
}
