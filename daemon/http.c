/*
 * http.c - see http.h.
 *
 * Why it is built this way:
 *
 * - libmicrohttpd (Debian libmicrohttpd-dev) parses HTTP, with its own
 *   thread; funneld writes no parser of its own.
 * - The engine's state belongs to the engine thread, so that thread
 *   publishes a copy (fd_engine_metrics) about once a second from its
 *   before_poll hook (notify.c), under a mutex; the HTTP thread formats
 *   only from that copy and never touches the engine. A scrape costs the
 *   engine nothing, and a hung engine thread shows as a stale copy:
 *   /healthz says so.
 * - Only GET and HEAD; other methods get 405. Nothing served comes from
 *   events (no user or item id), so nothing needs escaping here.
 */
#include "daemon/http.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/views.h"
#include "features/event.h"

#define STALE_MS 15000 /* no copy published for this long: the engine thread hangs */

struct fd_http {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu; /* guards what follows */
    fd_engine_metrics m;
    bool have, stopping;
    int64_t at_ms;      /* when m was published */
    uint64_t prev_msgs; /* events per second: messages at the previous copy */
    int64_t prev_ms;
    double rate;
    /* /api/: where the views read (fd_http_set_source); set before requests */
    bool api;
    fd_redis_opts ro;
    char *url, *pw_file, *pw_env, *user, *prefix;
    fd_feat_params fp;
    bool have_fp;
};

void fd_http_set_source(fd_http *h, const fd_config *cfg)
{
    if (!h)
        return;
    h->ro = fd_redis_opts_from_config(cfg);
    h->url = strdup(cfg->redis_url);
    h->pw_file = strdup(cfg->redis_password_file ? cfg->redis_password_file : "");
    h->pw_env = strdup(cfg->redis_password_env ? cfg->redis_password_env : "");
    h->user = strdup(cfg->redis_username ? cfg->redis_username : "");
    h->prefix = strdup(cfg->redis_key_prefix);
    h->ro.url = h->url;
    h->ro.password_file = h->pw_file;
    h->ro.password_env = h->pw_env;
    h->ro.username = h->user;
    int64_t hl[4];
    char why[256];
    int nh = fd_config_half_lives(cfg, hl, why, sizeof why);
    h->have_fp =
        nh > 0 && fd_feat_params_init(&h->fp, hl, nh, cfg->session_gap_ms, why, sizeof why) == 0;
    h->api = h->url && h->pw_file && h->pw_env && h->user && h->prefix;
}

static bool loopback_client(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* ---- the text ----------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
    bool oom;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            t->oom = true;
            return;
        }
        t->p = q;
        t->cap = cap;
    }
}

static void family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The stats fields named prefix + LABEL as one family with that label. */
static void stat_family(text *t, const fd_engine_metrics *m, const char *metric, const char *help,
                        const char *prefix, const char *label)
{
    family(t, metric, "counter", help);
    size_t pl = strlen(prefix);
    char buf[64];
    for (int i = 0; i < m->n_stats; i++) {
        const char *n = fd_engine_stat_name(i, buf, sizeof buf);
        if (strncmp(n, prefix, pl) != 0 || !n[pl] || !strcmp(n + pl, "unknown"))
            continue;
        put(t, "%s{%s=\"%s\"} %" PRId64 "\n", metric, label, n + pl, m->stat[i]);
    }
}

/* One stats field as a counter. */
static void stat_one(text *t, const fd_engine_metrics *m, const char *metric, const char *help,
                     const char *field)
{
    char buf[64];
    for (int i = 0; i < m->n_stats; i++)
        if (!strcmp(fd_engine_stat_name(i, buf, sizeof buf), field)) {
            family(t, metric, "counter", help);
            put(t, "%s %" PRId64 "\n", metric, m->stat[i]);
            return;
        }
}

static void gauge(text *t, const char *name, const char *help, double v)
{
    family(t, name, "gauge", help);
    put(t, "%s %.17g\n", name, v);
}

static void metrics_text(text *t, const fd_engine_metrics *m, double rate)
{
    gauge(t, "funneld_up", "1 while funneld runs.", 1);
    gauge(t, "funneld_ready", "1 once the group assigned partitions and Redis takes writes.",
          m->st.ready && m->redis_ok ? 1 : 0);
    family(t, "funneld_messages_total", "counter",
           "Messages taken from the events topic (valid or not).");
    put(t, "funneld_messages_total %" PRIu64 "\n", m->st.messages);
    stat_family(t, m, "funneld_events_total",
                "Events counted into Redis by this instance, by type.", "events.", "type");
    stat_family(t, m, "funneld_dead_letters_total",
                "Messages sent to the dead-letter topic by this instance, by reason.", "dlq.",
                "reason");
    stat_family(t, m, "funneld_dead_letters_failed_total",
                "Dead letters given up (not delivered), by reason.", "dlq_failed.", "reason");
    stat_one(t, m, "funneld_late_events_total", "Events later than funnel.allowed_lateness.",
             "late_events");
    stat_one(t, m, "funneld_data_loss_offsets_total",
             "Offsets lost to retention before funneld read them.", "data_loss_offsets");
    stat_one(t, m, "funneld_churn_alerts_total", "Churn alerts fired.", "churn_alerts");
    stat_family(t, m, "funneld_redis_write_errors_total",
                "Commands Redis refused inside a write, by key family.", "write_errors.", "kind");
    family(t, "funneld_redis_write_seconds", "histogram",
           "Round trip of each MULTI/EXEC write of an epoch.");
    uint64_t cum = 0;
    for (int b = 0; b < FD_WRITE_BUCKETS; b++) {
        cum += m->write_le[b];
        put(t, "funneld_redis_write_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", fd_write_bucket_s[b],
            cum);
    }
    put(t, "funneld_redis_write_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", m->st.writes);
    put(t, "funneld_redis_write_seconds_sum %.3f\n", m->write_seconds_sum);
    put(t, "funneld_redis_write_seconds_count %" PRIu64 "\n", m->st.writes);
    family(t, "funneld_consumer_lag_messages", "gauge",
           "Messages past the offset stored in Redis, per assigned partition.");
    for (int i = 0; i < m->n_lag; i++)
        if (m->lag[i] >= 0)
            put(t, "funneld_consumer_lag_messages{partition=\"%" PRId32 "\"} %" PRId64 "\n",
                m->lag_part[i], m->lag[i]);
    gauge(t, "funneld_partitions_assigned", "Partitions of the events topic assigned now.",
          m->st.assigned);
    family(t, "funneld_queue_depth_messages", "gauge", "Messages queued for each worker shard.");
    for (int i = 0; i < m->n_shards; i++)
        put(t, "funneld_queue_depth_messages{shard=\"%d\"} %" PRId64 "\n", i, m->queued[i]);
    gauge(t, "funneld_users_in_memory", "Users held in the shards' memory.", (double)m->users);
    family(t, "funneld_rebalances_total", "counter", "Assignments the consumer group handed over.");
    put(t, "funneld_rebalances_total %" PRIu64 "\n", m->rebalances);
    gauge(t, "funneld_events_per_second", "Messages per second over the last second or so.", rate);
    if (m->churn) {
        gauge(t, "funneld_churn_auc", "Churn model: prequential AUC over a recent window.", m->auc);
        gauge(t, "funneld_churn_logloss", "Churn model: prequential log loss.", m->logloss);
        family(t, "funneld_churn_examples_total", "counter", "Churn model: examples learned.");
        put(t, "funneld_churn_examples_total %" PRIu64 "\n", m->examples);
    }
    if (m->mf) {
        gauge(t, "funneld_recs_recall_at_10", "Recommendations: prequential recall@10.", m->recall);
        gauge(t, "funneld_recs_ndcg_at_10", "Recommendations: prequential NDCG@10.", m->ndcg);
        gauge(t, "funneld_recs_popularity_recall_at_10",
              "The decayed popularity list's recall@10 on the same positives.", m->pop_recall);
        gauge(t, "funneld_recs_popularity_ndcg_at_10",
              "The decayed popularity list's NDCG@10 on the same positives.", m->pop_ndcg);
        family(t, "funneld_recs_positives_total", "counter",
               "Recommendations: positive events learned.");
        put(t, "funneld_recs_positives_total %" PRIu64 "\n", m->positives);
    }
}

/* ---- the server ------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len, bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (!strncmp(type, "text/html", 9)) /* the page runs its own inline script, nothing else */
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                "'unsafe-inline'; connect-src 'self'; img-src 'none'; "
                                "frame-ancestors 'none'");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result line(struct MHD_Connection *c, unsigned status, const char *msg)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s\n", msg);
    return reply(c, status, "text/plain; charset=utf-8", buf, (size_t)n, false);
}

extern const unsigned char fd_dashboard_html[]; /* daemon/dashboard.html (CMake) */
extern const size_t fd_dashboard_html_len;

static int64_t stat_value(const fd_engine_metrics *m, const char *field)
{
    char buf[64];
    for (int i = 0; i < m->n_stats; i++)
        if (!strcmp(fd_engine_stat_name(i, buf, sizeof buf), field))
            return m->stat[i];
    return 0;
}

/* GET /api/status: the engine's published copy (no Redis). */
static enum MHD_Result api_status(fd_http *h, struct MHD_Connection *c)
{
    pthread_mutex_lock(&h->mu);
    fd_engine_metrics *m = malloc(sizeof *m);
    bool have = h->have, stopping = h->stopping;
    double rate = h->rate;
    if (m)
        *m = h->m;
    pthread_mutex_unlock(&h->mu);
    if (!m)
        return line(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    json_t *o = json_object();
    json_object_set_new(o, "ready", json_boolean(have && !stopping && m->st.ready && m->redis_ok));
    json_object_set_new(o, "healthy", json_boolean(have && m->st.progressing));
    json_object_set_new(o, "partitions_assigned", json_integer(have ? m->st.assigned : 0));
    json_object_set_new(o, "events_total", json_integer(stat_value(m, "events")));
    json_object_set_new(o, "dead_letters_total", json_integer(have ? m->st.dead_letters : 0));
    json_object_set_new(o, "churn_alerts_total", json_integer(stat_value(m, "churn_alerts")));
    json_object_set_new(o, "events_per_second", json_real(have ? rate : 0));
    json_object_set_new(o, "lag", have && m->st.lag >= 0 ? json_integer(m->st.lag) : json_null());
    json_object_set_new(o, "users_in_memory", json_integer((json_int_t)m->users));
    free(m);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body)
        return line(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return reply(c, MHD_HTTP_OK, "application/json", body, strlen(body), true);
}

/* An integer query argument in 1..max, or dflt when absent; -1 when bad. */
static int query_int(struct MHD_Connection *c, const char *name, int dflt, int max)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n >= 1 && n <= max ? (int)n : -1;
}

/* GET /api/funnel[?last=N&span=1m|1h], /api/top-risk[?n=N], /api/model:
 * daemon/views.c over a connection of its own, loopback clients only. */
static enum MHD_Result api(fd_http *h, struct MHD_Connection *c, const char *what)
{
    if (!loopback_client(c))
        return line(c, MHD_HTTP_FORBIDDEN, "forbidden: /api/ answers loopback clients only");
    if (!h->api)
        return line(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable: no Redis source configured");
    if (!strcmp(what, "status"))
        return api_status(h, c);
    int n = 10;
    const char *span = "1m";
    if (!strcmp(what, "funnel")) {
        n = query_int(c, "last", 10, FD_VIEW_MAX_WINDOWS);
        span = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "span");
        if (!span)
            span = "1m";
        if (strcmp(span, "1m") && strcmp(span, "1h"))
            return line(c, MHD_HTTP_BAD_REQUEST, "bad request: span is 1m or 1h");
    } else if (!strcmp(what, "top-risk")) {
        n = query_int(c, "n", 10, FD_VIEW_MAX_USERS);
    } else if (strcmp(what, "model")) {
        return line(c, MHD_HTTP_NOT_FOUND,
                    "not found: /api/status, /api/funnel, /api/top-risk and /api/model are "
                    "served");
    }
    if (n < 0)
        return line(c, MHD_HTTP_BAD_REQUEST, "bad request: a count out of range");
    char err[512] = "";
    fd_redis *r = fd_redis_new(&h->ro, err, sizeof err);
    json_t *doc = NULL;
    if (r && fd_redis_ensure(r, err, sizeof err) == 0) {
        if (!strcmp(what, "funnel"))
            doc = fd_view_funnel(r, h->prefix, span, n, err, sizeof err);
        else if (!strcmp(what, "top-risk"))
            doc = fd_view_top_risk(r, h->prefix, h->have_fp ? &h->fp : NULL, n, err, sizeof err);
        else
            doc = fd_view_model(r, h->prefix, h->have_fp ? &h->fp : NULL, err, sizeof err);
    }
    fd_redis_destroy(r);
    if (!doc) {
        char msg[256];
        snprintf(msg, sizeof msg, "unavailable: Redis: %.200s", err);
        return line(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
    }
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!body)
        return line(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return reply(c, MHD_HTTP_OK, "application/json", body, strlen(body), true);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    (void)state;
    fd_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return line(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD");
    if (*upload_size)
        return line(c, MHD_HTTP_BAD_REQUEST, "no body expected");
    if (!strncmp(url, "/api/", 5))
        return api(h, c, url + 5);
    if (!strcmp(url, "/")) {
        if (!loopback_client(c))
            return line(c, MHD_HTTP_FORBIDDEN,
                        "forbidden: the dashboard answers loopback clients only");
        return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)fd_dashboard_html,
                     fd_dashboard_html_len, false);
    }
    bool metrics = !strcmp(url, "/metrics"), health = !strcmp(url, "/healthz"),
         ready = !strcmp(url, "/readyz");
    if (!metrics && !health && !ready)
        return line(c, MHD_HTTP_NOT_FOUND,
                    "not found: /, /metrics, /healthz, /readyz and /api/ are served");
    pthread_mutex_lock(&h->mu);
    fd_engine_metrics *m = malloc(sizeof *m);
    bool have = h->have, stopping = h->stopping;
    int64_t age = fd_mono_ms() - h->at_ms;
    double rate = h->rate;
    if (m)
        *m = h->m;
    pthread_mutex_unlock(&h->mu);
    if (!m)
        return line(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    enum MHD_Result rc;
    char msg[200];
    if (health) {
        if (!have || age > STALE_MS) {
            snprintf(msg, sizeof msg,
                     "unhealthy: the engine thread reported nothing for %" PRId64 " ms",
                     have ? age : fd_mono_ms() - h->at_ms);
            rc = line(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
        } else if (!m->st.progressing) {
            snprintf(msg, sizeof msg,
                     "unhealthy: shard %d has had work queued and finished nothing for 10 s",
                     m->st.stuck_shard);
            rc = line(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
        } else {
            rc = line(c, MHD_HTTP_OK, "ok: the engine and every shard make progress");
        }
    } else if (ready) {
        if (stopping)
            rc = line(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: stopping");
        else if (!have || !m->st.ready)
            rc = line(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                      "not ready: the consumer group has not assigned partitions yet");
        else if (!m->redis_ok)
            rc = line(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                      "not ready: Redis does not take writes (see the log)");
        else {
            snprintf(msg, sizeof msg, "ready: %d partition(s) assigned, Redis takes writes",
                     m->st.assigned);
            rc = line(c, MHD_HTTP_OK, msg);
        }
    } else {
        text t = {0};
        if (have)
            metrics_text(&t, m, rate);
        else
            put(&t, "# funneld is starting\n");
        if (t.oom) {
            free(t.p);
            rc = line(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        } else {
            rc =
                reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", t.p, t.len, true);
        }
    }
    free(m);
    return rc;
}

/* "HOST:PORT" or "[V6]:PORT" into addr. 0, or -1 with why. */
static int parse_listen(const char *s, struct sockaddr_storage *addr, char *why, size_t n)
{
    memset(addr, 0, sizeof *addr);
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        snprintf(why, n, "\"%s\": expected HOST:PORT (e.g. 127.0.0.1:9108 or [::1]:9108)", s);
        return -1;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(why, n, "\"%s\": the port must be 0..65535", s);
        return -1;
    }
    char host[64];
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl >= sizeof host) {
        snprintf(why, n, "\"%s\": the host is too long", s);
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    snprintf(why, n, "\"%s\": the host must be an IPv4 or IPv6 address", host);
    return -1;
}

int fd_http_check_listen(const char *listen, char *why, size_t n)
{
    if (!listen || !*listen || !strcmp(listen, "off"))
        return 0;
    struct sockaddr_storage a;
    return parse_listen(listen, &a, why, n);
}

fd_http *fd_http_start(const char *listen, char *errstr, size_t errstr_size)
{
    errstr[0] = '\0';
    if (!listen || !*listen || !strcmp(listen, "off"))
        return NULL;
    struct sockaddr_storage addr;
    char why[160];
    if (parse_listen(listen, &addr, why, sizeof why) != 0) {
        snprintf(errstr, errstr_size, "http.listen: %s", why);
        return NULL;
    }
    fd_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    h->at_ms = fd_mono_ms();
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, 64u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!h->d) {
        snprintf(errstr, errstr_size,
                 "http.listen %s: cannot listen there (in use, or not an address of this "
                 "machine?)",
                 listen);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : 0;
    return h;
}

int fd_http_port(const fd_http *h)
{
    return h ? h->port : 0;
}

void fd_http_publish(fd_http *h, const fd_engine_metrics *m, bool stopping)
{
    if (!h)
        return;
    int64_t now = fd_mono_ms();
    pthread_mutex_lock(&h->mu);
    if (m) {
        if (h->prev_ms && now > h->prev_ms)
            h->rate = (double)(m->st.messages - h->prev_msgs) * 1000.0 / (double)(now - h->prev_ms);
        h->prev_msgs = m->st.messages;
        h->prev_ms = now;
        h->m = *m;
        h->have = true;
    }
    h->at_ms = now;
    h->stopping = h->stopping || stopping;
    pthread_mutex_unlock(&h->mu);
}

void fd_http_stop(fd_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    free(h->url);
    free(h->pw_file);
    free(h->pw_env);
    free(h->user);
    free(h->prefix);
    free(h);
}
