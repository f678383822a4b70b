/*
 * bench_kafka.c - `funnelctl bench`: the topic, its producer and the two
 * peers of funneld (the plain librdkafka consumer and kcat -C).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "pipeline/kafka.h"
#include "tools/bench_int.h"
#include "tools/cli.h"
#include "tools/gen.h"

/* ---- Kafka: topic, producer, consumers ------------------------------------ */

static int kconf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, PROG ": kafka %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

typedef struct delivery {
    uint64_t ok, failed;
    char first_error[256];
} delivery;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    delivery *d = opaque;
    if (!m->err)
        d->ok++;
    else if (!d->failed++)
        snprintf(d->first_error, sizeof d->first_error, "%s", rd_kafka_err2str(m->err));
}

/* Create run->topic with run->nparts partitions on a given cluster (Admin
 * API). 0 / -1 (printed). */
static int create_topic(rd_kafka_t *rk, const bench_run *run)
{
    char err[256];
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(run->topic, run->nparts, -1, err, sizeof err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;
    if (!nt || !q) {
        fprintf(stderr, PROG ": creating topic %s: %s\n", run->topic, nt ? "no queue" : err);
        goto out;
    }
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        fprintf(stderr, PROG ": creating topic %s: %s\n", run->topic,
                ev ? rd_kafka_event_error_string(ev) : "timed out");
        goto out;
    }
    size_t n;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    if (n != 1 || rd_kafka_topic_result_error(tr[0])) {
        fprintf(stderr, PROG ": creating topic %s: %s (the bench needs a new, empty topic)\n",
                run->topic, n ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
        goto out;
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* Generate the events into the topic and read every partition's end
 * offset into run->hi. Fails when a low watermark is not 0 (the broker
 * dropped data) or the end offsets do not add up to what was delivered.
 * 0 / -1 (printed). */
int bench_load_topic(bench_run *run, const bench_args *a)
{
    char err[512];
    int rc = -1;
    delivery d = {0};
    fd_gen *g = NULL;
    fd_codec *codec = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", run->brokers},
        {"compression.codec", "lz4"},
        {"linger.ms", "20"},
        {"batch.num.messages", "10000"},
        {"enable.idempotence", "true"},
        {"message.timeout.ms", "120000"},
        {"client.id", "funnelctl-bench"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (kconf(conf, kv[i][0], kv[i][1]) != 0)
            goto out;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &d);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, PROG ": kafka producer: %s\n", err);
        goto out;
    }
    conf = NULL; /* owned by rk */
    if (a->brokers && create_topic(rk, run) != 0)
        goto out;

    g = fd_gen_new(&a->gen, err, sizeof err);
    if (!g) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    fd_schema_ref ref = {1, run->schema};
    fd_codec_opts co = {
        .format = (fd_format)a->format,
        .schema_path = run->schema,
        .schema_ids = &ref,
        .n_schema_ids = 1,
        .encode_schema_id = 1,
    };
    codec = fd_codec_new(&co, err, sizeof err);
    if (!codec) {
        fprintf(stderr, PROG ": codec: %s\n", err);
        goto out;
    }
    fprintf(stderr,
            "bench: producing %" PRIu64 " events (%" PRIu32 " users, %s) to %s [%d partitions]\n",
            a->gen.events, a->gen.users, fd_format_name((fd_format)a->format), run->topic,
            run->nparts);
    double t0 = fd_cli_now_s();
    fd_event ev;
    uint64_t n = 0;
    while (!fd_cli_stop && !d.failed && fd_gen_next(g, &ev)) {
        const void *buf;
        size_t len;
        if (fd_codec_encode(codec, &ev, &buf, &len) != 0) {
            fprintf(stderr, PROG ": encoding event %s failed\n", ev.event_id);
            goto out;
        }
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(run->topic),
                                      RD_KAFKA_V_KEY(ev.user_id, strlen(ev.user_id)),
                                      RD_KAFKA_V_VALUE((void *)buf, len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 50); /* serve delivery reports, then retry */
        if (e) {
            fprintf(stderr, PROG ": produce: %s\n", rd_kafka_err2str(e));
            goto out;
        }
        rd_kafka_poll(rk, 0);
        n++;
    }
    while (rd_kafka_outq_len(rk) > 0 && !fd_cli_stop)
        rd_kafka_flush(rk, 500);
    if (fd_cli_stop)
        goto out;
    if (d.failed || d.ok != n) {
        fprintf(stderr, PROG ": %" PRIu64 " of %" PRIu64 " deliveries failed: %s\n", n - d.ok, n,
                d.failed ? d.first_error : "missing delivery reports");
        goto out;
    }
    run->active_users = fd_gen_active_users(g);
    fprintf(stderr, "bench: produced %" PRIu64 " events (%" PRIu32 " users present) in %.1f s\n", n,
            run->active_users, fd_cli_now_s() - t0);

    run->total = 0;
    for (int p = 0; p < run->nparts; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, run->topic, p, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, PROG ": watermarks of %s [%d]: %s\n", run->topic, p,
                    rd_kafka_err2str(e));
            goto out;
        }
        if (lo != 0) {
            fprintf(stderr,
                    PROG ": the broker dropped data: partition %d starts at offset %" PRId64
                         " instead of 0 (the mock cluster keeps ~5 MiB per partition; use more "
                         "--partitions)\n",
                    p, lo);
            goto out;
        }
        run->hi[p] = hi;
        run->total += (uint64_t)hi;
    }
    if (run->total != n) {
        fprintf(stderr, PROG ": the topic holds %" PRIu64 " messages, %" PRIu64 " were produced\n",
                run->total, n);
        goto out;
    }
    rc = 0;
out:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (rk)
        rd_kafka_destroy(rk);
    fd_codec_destroy(codec);
    fd_gen_destroy(g);
    return rc;
}

/* The limit: a high-level consumer in a group of its own, reading the whole
 * topic and only counting. It gets funneld's consumer queue size and the
 * same fetch wake-up (fd_fetch_nudge): with librdkafka's defaults it stops
 * for ~0.6 s whenever its queue fills, 2-3 times per 2 M events, and would
 * be no limit at all (BENCHMARKS.md). *secs is from rd_kafka_new to the
 * last message, *first_s to the first (the group join and first fetch).
 * 0 / -1 (printed). */
int bench_raw_consume(const bench_run *run, double timeout_s, double *secs, double *first_s)
{
    char err[512], group[128];
    int rc = -1;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(group, sizeof group, "funnelctl-bench-raw-%ld-%ld", (long)getpid(), (long)time(NULL));
    if (kconf(conf, "bootstrap.servers", run->brokers) || kconf(conf, "group.id", group) ||
        kconf(conf, "auto.offset.reset", "earliest") ||
        kconf(conf, "enable.auto.commit", "false") ||
        kconf(conf, "client.id", "funnelctl-bench-raw") ||
        kconf(conf, "queued.min.messages", FD_KAFKA_QUEUED_MIN)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    double t0 = fd_cli_now_s();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, PROG ": raw consumer: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);
    fd_fetch_nudge nudge;
    fd_fetch_nudge_init(&nudge, rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, run->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, topics);
    if (e) {
        fprintf(stderr, PROG ": raw consumer: subscribe: %s\n", rd_kafka_err2str(e));
        goto out;
    }
    uint64_t n = 0;
    double last = t0;
    while (n < run->total && !fd_cli_stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) {
            if (!m->err) {
                if (!n++)
                    *first_s = fd_cli_now_s() - t0;
                last = fd_cli_now_s();
            }
            rd_kafka_message_destroy(m);
        }
        if (!(n & 1023))
            fd_fetch_nudge_check(&nudge, rk);
        if (fd_cli_now_s() - t0 > timeout_s) {
            fprintf(stderr,
                    PROG ": raw consumer: only %" PRIu64 " of %" PRIu64 " messages after %.0f s\n",
                    n, run->total, timeout_s);
            goto out;
        }
    }
    if (n < run->total)
        goto out; /* stopped */
    *secs = last - t0;
    rc = 0;
out:
    fd_fetch_nudge_destroy(&nudge);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    rd_kafka_topic_partition_list_destroy(topics);
    return rc;
}

/* The independent peer: `kcat -C -e -o beginning -f '\n'`, counting lines.
 * Returns 0 with *secs (spawn to exit), 1 when kcat failed or miscounted
 * (a warning is printed; the run goes on without it), -1 when stopped. */
int bench_kcat_consume(const bench_run *run, const char *kcat, double timeout_s, double *secs)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return 1;
    char log[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/kcat.log", run->dir);
    int efd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *argv[] = {(char *)kcat, "-C", "-b", (char *)run->brokers, "-t", (char *)run->topic,
                    "-e",         "-q", "-o", "beginning",          "-f", "\\n",
                    NULL};
    double t0 = fd_cli_now_s();
    pid_t pid = bench_spawn(argv, pfd[1], efd);
    close(pfd[1]);
    if (efd >= 0)
        close(efd);
    if (pid < 0) {
        close(pfd[0]);
        return 1;
    }
    uint64_t lines = 0;
    char buf[65536];
    int rc = 1;
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (fd_cli_stop) {
            rc = -1;
            break;
        }
        if (fd_cli_now_s() - t0 > timeout_s) {
            fprintf(stderr, PROG ": warning: kcat did not finish within %.0f s\n", timeout_s);
            break;
        }
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = read(pfd[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = 0;
            break;
        }
        for (ssize_t i = 0; i < k; i++)
            lines += buf[i] == '\n';
    }
    close(pfd[0]);
    int st = rc == 0 ? bench_wait_child(&pid, 10) : -1;
    *secs = fd_cli_now_s() - t0;
    bench_stop_child(&pid, SIGKILL, 5);
    if (rc != 0)
        return rc;
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || lines != run->total) {
        fprintf(stderr,
                PROG ": warning: kcat read %" PRIu64 " of %" PRIu64
                     " messages (status %d); no kcat figure\n",
                lines, run->total, st);
        bench_show_tail("kcat", log);
        return 1;
    }
    return 0;
}

int bench_raw_measure(const bench_run *run, double timeout_s, bench_result *res)
{
    if (bench_raw_consume(run, timeout_s, &res->raw_s, &res->raw_first_s) != 0)
        return -1;
    res->raw_eps = (double)run->total / res->raw_s;
    res->raw_steady_eps = res->raw_s > res->raw_first_s
                              ? ((double)run->total - 1) / (res->raw_s - res->raw_first_s)
                              : 0;
    return 0;
}
