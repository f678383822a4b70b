/*
 * kafka.c - see kafka.h.
 *
 * funneld owns its offsets: the durable position of each partition is the
 * one written to Redis in the same MULTI/EXEC as the state it produced
 * (DESIGN.md decision 4). So auto commit and auto offset store are off; the
 * committed offsets in Kafka are written after each flush only for lag tools.
 * The producer is idempotent and retries forever: a dead letter must be
 * delivered before the offset past it is stored, and a slow broker must
 * slow us down rather than lose messages (decision 6).
 */
#include "pipeline/kafka.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"

typedef struct producer_state {
    atomic_llong failures;
    atomic_llong dlq_sent, dlq_done; /* dead letters produced / reported */
} producer_state;

/* msg_opaque of a dead letter: its delivery report counts in dlq_done */
static char dlq_tag;

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    int lvl = level <= 3   ? FD_LOG_ERROR
              : level <= 4 ? FD_LOG_WARN
              : level <= 6 ? FD_LOG_INFO
                           : FD_LOG_DEBUG;
    /* kafka.properties go to the consumer and the producer alike, so each
     * warns about the other's properties: that is expected, not a problem. */
    if (!strcmp(fac, "CONFWARN") && (strstr(buf, "is a consumer property and will be ignored") ||
                                     strstr(buf, "is a producer property and will be ignored")))
        lvl = FD_LOG_DEBUG;
    fd_log(lvl, "kafka", "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        fd_err("kafka", "%s: fatal error %s: %s", rd_kafka_name(rk), rd_kafka_err2name(orig), buf);
        return;
    }
    fd_warn("kafka", "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                    size_t errstr_size)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "%s: %s", name, err);
        return -1;
    }
    return 0;
}

/* A user property rejected by librdkafka, reported at its place in the
 * config file: "FILE:LINE:COL: kafka.properties.NAME: librdkafka's text". */
static int user_prop_set(rd_kafka_conf_t *conf, const fd_config *cfg, const fd_kv *kv, char *errstr,
                         size_t errstr_size)
{
    char err[512];
    if (rd_kafka_conf_set(conf, kv->key, kv->value, err, sizeof err) == RD_KAFKA_CONF_OK)
        return 0;
    if (cfg->source_path && *cfg->source_path && kv->line > 0)
        snprintf(errstr, errstr_size, "%s:%d:%d: kafka.properties.%s: %s", cfg->source_path,
                 kv->line, kv->col, kv->key, err);
    else
        snprintf(errstr, errstr_size, "kafka.properties.%s: %s", kv->key, err);
    return -1;
}

int fd_kafka_check_properties(const fd_config *cfg, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    for (int i = 0; i < cfg->kafka_n_props && rc == 0; i++)
        rc = user_prop_set(conf, cfg, &cfg->kafka_props[i], errstr, errstr_size);
    rd_kafka_conf_destroy(conf);
    return rc;
}

/* Common settings, then the user's kafka.properties (which win). */
static rd_kafka_conf_t *base_conf(const fd_config *cfg, const char *bootstraps,
                                  const char *const *defaults, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", bootstraps, errstr, errstr_size) != 0)
        goto fail;
    for (size_t i = 0; defaults[i]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size) != 0)
            goto fail;
    for (int i = 0; i < cfg->kafka_n_props; i++)
        if (user_prop_set(conf, cfg, &cfg->kafka_props[i], errstr, errstr_size) != 0)
            goto fail;
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_t *fd_kafka_consumer_new(const fd_config *cfg, const char *bootstraps,
                                  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                       rd_kafka_topic_partition_list_t *, void *),
                                  void *opaque, char *errstr, size_t errstr_size)
{
    static const char *const defaults[] = {
        "client.id", "funneld", "enable.auto.commit", "false", "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest", "enable.partition.eof", "false", "session.timeout.ms",
        "10000", "heartbeat.interval.ms", "1000",
        /* librdkafka's 100000 starves the shards
         * in bursts (BENCHMARKS.md); 1000000 was
         * faster but held ~0.9 GB on a backlog */
        "queued.min.messages", FD_KAFKA_QUEUED_MIN, NULL};
    rd_kafka_conf_t *conf = base_conf(cfg, bootstraps, defaults, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (conf_set(conf, "group.id", cfg->kafka_group_id, errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, opaque);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        snprintf(errstr, errstr_size, "creating Kafka consumer: %s", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    producer_state *ps = opaque;
    if (m->_private == &dlq_tag)
        atomic_fetch_add(&ps->dlq_done, 1);
    if (m->err) {
        atomic_fetch_add(&ps->failures, 1);
        fd_err("kafka", "delivery to %s [%" PRId32 "] failed: %s", rd_kafka_topic_name(m->rkt),
               m->partition, rd_kafka_err2str(m->err));
    }
    (void)rk;
}

rd_kafka_t *fd_kafka_producer_new(const fd_config *cfg, const char *bootstraps, char *errstr,
                                  size_t errstr_size)
{
    static const char *const defaults[] = {"client.id",
                                           "funneld-producer",
                                           "enable.idempotence",
                                           "true",
                                           "message.timeout.ms",
                                           "0",
                                           "linger.ms",
                                           "5",
                                           "compression.codec",
                                           "lz4",
                                           NULL};
    rd_kafka_conf_t *conf = base_conf(cfg, bootstraps, defaults, errstr, errstr_size);
    if (!conf)
        return NULL;
    producer_state *ps = calloc(1, sizeof *ps);
    if (!ps) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, ps);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        snprintf(errstr, errstr_size, "creating Kafka producer: %s", err);
        rd_kafka_conf_destroy(conf);
        free(ps);
        return NULL;
    }
    return rk;
}

int64_t fd_kafka_delivery_failures(rd_kafka_t *producer)
{
    producer_state *ps = rd_kafka_opaque(producer);
    return ps ? (int64_t)atomic_load(&ps->failures) : 0;
}

void fd_kafka_producer_destroy(rd_kafka_t *producer)
{
    if (!producer)
        return;
    producer_state *ps = rd_kafka_opaque(producer);
    rd_kafka_destroy(producer);
    free(ps);
}

/* A dead letter keeps at most this much of a value the output topic would
 * refuse as too large; header fd.truncated then holds the original length. */
#define DLQ_TRUNCATE_BYTES (64 * 1024)

int fd_kafka_produce_dlq(rd_kafka_t *producer, const char *dlq_topic, const rd_kafka_message_t *src,
                         fd_reject reason, const char *error)
{
    char part[16], off[24], orig_len[24];
    snprintf(part, sizeof part, "%" PRId32, src->partition);
    snprintf(off, sizeof off, "%" PRId64, src->offset);
    snprintf(orig_len, sizeof orig_len, "%zu", src->len);
    const char *src_topic = src->rkt ? rd_kafka_topic_name(src->rkt) : "";
    size_t len = src->len;
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(6);
        rd_kafka_header_add(h, "fd.reason", -1, fd_reject_name(reason), -1);
        rd_kafka_header_add(h, "fd.error", -1, error, -1);
        rd_kafka_header_add(h, "fd.source.topic", -1, src_topic, -1);
        rd_kafka_header_add(h, "fd.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "fd.source.offset", -1, off, -1);
        if (len < src->len)
            rd_kafka_header_add(h, "fd.truncated", -1, orig_len, -1);
        producer_state *ps = rd_kafka_opaque(producer);
        atomic_fetch_add(&ps->dlq_sent, 1); /* before its report can come */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(src->key, src->key_len), RD_KAFKA_V_VALUE(src->payload, len),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(&dlq_tag), RD_KAFKA_V_END);
        if (err)
            atomic_fetch_sub(&ps->dlq_sent, 1);
        if (!err) {
            rd_kafka_poll(producer, 0);
            return 0; /* headers now owned by the message */
        }
        rd_kafka_headers_destroy(h);
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && len > DLQ_TRUNCATE_BYTES) {
            fd_warn("kafka",
                    "dead letter for partition=%s offset=%s is %zu bytes, too large for %s: "
                    "keeping its first %d bytes (header fd.truncated)",
                    part, off, src->len, dlq_topic, DLQ_TRUNCATE_BYTES);
            len = DLQ_TRUNCATE_BYTES;
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fd_err("kafka", "producing dead letter for partition=%s offset=%s: %s", part, off,
                   rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(producer, 100); /* wait out a full queue; never drop */
    }
}

int fd_kafka_produce(rd_kafka_t *producer, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t value_len)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
            RD_KAFKA_V_END);
        if (!err) {
            rd_kafka_poll(producer, 0);
            return 0;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fd_err("kafka", "producing to %s: %s", topic, rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(producer, 100); /* wait out a full queue; never drop */
    }
}

int64_t fd_kafka_dlq_pending(rd_kafka_t *producer)
{
    producer_state *ps = rd_kafka_opaque(producer);
    if (!ps)
        return 0;
    rd_kafka_poll(producer, 0); /* serve delivery reports */
    /* done first: 0 then means every letter sent before that load is done */
    int64_t done = atomic_load(&ps->dlq_done);
    return (int64_t)atomic_load(&ps->dlq_sent) - done;
}

int fd_kafka_drain(rd_kafka_t *producer, int timeout_ms)
{
    if (rd_kafka_outq_len(producer) == 0)
        return 0;
    rd_kafka_flush(producer, timeout_ms);
    return rd_kafka_outq_len(producer) == 0 ? 0 : -1;
}

void fd_fetch_nudge_init(fd_fetch_nudge *n, rd_kafka_t *rk)
{
    memset(n, 0, sizeof *n);
    char v[32];
    size_t len = sizeof v;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "queued.min.messages", v, &len) != RD_KAFKA_CONF_OK ||
        atol(v) <= 0)
        return;
    n->queued_min = (size_t)atol(v);
    n->q = rd_kafka_queue_get_consumer(rk);
}

void fd_fetch_nudge_destroy(fd_fetch_nudge *n)
{
    if (n->q)
        rd_kafka_queue_destroy(n->q);
    n->q = NULL;
}

int fd_fetch_nudge_check(fd_fetch_nudge *n, rd_kafka_t *rk)
{
    if (!n->q)
        return 0;
    size_t len = rd_kafka_queue_length(n->q);
    if (len >= n->queued_min - n->queued_min / 8) {
        n->full = true; /* at the mark, or just below it: fetching may have stopped */
        return 0;
    }
    if (!n->full || len > n->queued_min / 2)
        return 0;
    n->full = false;
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR || !l)
        return 0;
    for (int i = 0; i < l->cnt; i++)
        l->elems[i].offset = RD_KAFKA_OFFSET_END; /* "latest" */
    if (l->cnt) {
        /* The request is queued before it waits, and queueing is what
         * wakes the thread: a short timeout, and a timeout is harmless. */
        rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, 10);
        n->nudges++;
        fd_debug("kafka", "consumer queue drained to %zu of %zu: woke the fetcher (%s)", len,
                 n->queued_min, err ? rd_kafka_err2str(err) : "ok");
    }
    rd_kafka_topic_partition_list_destroy(l);
    return 1;
}
