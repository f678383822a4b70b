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
 *
 * It keeps one request in flight per broker. With more, librdkafka takes
 * a later request's success after an earlier one's failure (a timeout, or
 * an error that says nothing was written) as proof the earlier messages
 * were written too, and reports them delivered ("implicit ack",
 * rdkafka_request.c). That holds only against a broker that checks the
 * idempotent sequence and refuses the later request out of order; the
 * librdkafka mock cluster checks it only for transactional producers, and
 * test_faults lost 2 of 40 dead letters to it (reported delivered, never
 * on the topic). One request at a time makes a failed request retried
 * before anything after it is sent, whatever the broker checks. The
 * producer carries alerts, metrics and dead letters (little volume), so
 * one request per round trip costs nothing that shows; kafka.properties
 * may set max.in.flight.requests.per.connection again.
 */
#include "pipeline/kafka.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clock.h"
#include "daemon/log.h"

typedef struct producer_state {
    atomic_llong failures;                  /* other messages (metrics) failed for good */
    atomic_llong dlq_sent, dlq_done;        /* dead letters produced / reported */
    atomic_llong dlq_failed[FD_REJ__COUNT]; /* dead letters given up, by reason */
    rd_kafka_topic_t *dlq_rkt;              /* the dead-letter topic, its own message.timeout.ms */
    size_t max_bytes;                       /* the producer's message.max.bytes */
    int64_t dlq_timeout_ms;
    /* At most DLQ_LOG_BURST lines per DLQ_LOG_WINDOW_MS about failed dead
     * letters; the rest are summed up in one line. Any thread. */
    pthread_mutex_t log_lock;
    int64_t log_window_start;
    int log_lines;
    int64_t log_suppressed;
} producer_state;

#define DLQ_LOG_BURST     10
#define DLQ_LOG_WINDOW_MS 10000

/* msg_opaque of a dead letter: where it came from, for its delivery report
 * (counted in dlq_done, and in dlq_failed when it failed). Other messages
 * are produced with no opaque. */
typedef struct dlq_ref {
    int32_t partition;
    int64_t offset;
    fd_reject reason;
} dlq_ref;

/* One line about a dead letter given up, within the rate limit. */
static void dlq_log_failed(producer_state *ps, const dlq_ref *ref, const char *topic,
                           const char *why)
{
    int64_t now = fd_mono_ms(), suppressed = 0;
    bool log = false;
    pthread_mutex_lock(&ps->log_lock);
    if (now - ps->log_window_start >= DLQ_LOG_WINDOW_MS) {
        suppressed = ps->log_suppressed;
        ps->log_suppressed = 0;
        ps->log_window_start = now;
        ps->log_lines = 0;
    }
    if (ps->log_lines < DLQ_LOG_BURST) {
        ps->log_lines++;
        log = true;
    } else {
        ps->log_suppressed++;
    }
    pthread_mutex_unlock(&ps->log_lock);
    if (suppressed)
        fd_err("kafka",
               "%" PRId64 " more dead letters were given up in the last %d s (see stats "
               "dlq_failed)",
               suppressed, DLQ_LOG_WINDOW_MS / 1000);
    if (log)
        fd_err("kafka",
               "dead letter for partition=%" PRId32 " offset=%" PRId64
               " (reason %s) could not be delivered to %s: %s; given up, counted in stats "
               "dlq_failed.%s",
               ref->partition, ref->offset, fd_reject_name(ref->reason), topic, why,
               fd_reject_name(ref->reason));
}

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
    char err[512], red[512];
    if (rd_kafka_conf_set(conf, kv->key, kv->value, err, sizeof err) == RD_KAFKA_CONF_OK)
        return 0;
    /* librdkafka's message may quote the value: not a secret's, nor a URL's
     * credentials. */
    if (fd_config_is_secret_key(kv->key) && kv->value && *kv->value && strstr(err, kv->value))
        snprintf(err, sizeof err, "invalid value (<redacted>)");
    fd_config_redact_urls(err, red, sizeof red);
    memcpy(err, red, sizeof err);
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
        /* the consumer queue's bounds: see kafka.h */
        "queued.min.messages", FD_KAFKA_QUEUED_MIN, "queued.max.messages.kbytes",
        FD_KAFKA_QUEUED_MAX_KBYTES, "max.partition.fetch.bytes", FD_KAFKA_PARTITION_FETCH_BYTES,
        NULL};
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
    dlq_ref *ref = m->_private;
    if (ref) {
        /* failed first: dlq_pending 0 then means the failure is counted */
        if (m->err) {
            atomic_fetch_add(&ps->dlq_failed[ref->reason], 1);
            dlq_log_failed(ps, ref, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        }
        atomic_fetch_add(&ps->dlq_done, 1);
        free(ref);
    } else if (m->err) {
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
                                           "max.in.flight.requests.per.connection",
                                           "1",
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
    pthread_mutex_init(&ps->log_lock, NULL);
    ps->dlq_timeout_ms = cfg->kafka_dlq_timeout_ms > 0 ? cfg->kafka_dlq_timeout_ms : 60000;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, ps);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        snprintf(errstr, errstr_size, "creating Kafka producer: %s", err);
        rd_kafka_conf_destroy(conf);
        pthread_mutex_destroy(&ps->log_lock);
        free(ps);
        return NULL;
    }
    char v[32];
    size_t vlen = sizeof v;
    long mb = 0;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", v, &vlen) == RD_KAFKA_CONF_OK)
        mb = atol(v);
    ps->max_bytes = mb > 0 ? (size_t)mb : 1000000;
    /* Dead letters, unlike other output, are given up after
     * kafka.dlq_timeout_ms (retries included): the writes of every
     * partition wait for them, so a topic that refuses them must not stop
     * the daemon. Created here, before any thread produces, so that this
     * topic configuration is the one librdkafka keeps. */
    if (cfg->kafka_topic_dlq && *cfg->kafka_topic_dlq) {
        rd_kafka_topic_conf_t *tc = rd_kafka_topic_conf_new();
        char tmo[24];
        snprintf(tmo, sizeof tmo, "%" PRId64, ps->dlq_timeout_ms);
        if (rd_kafka_topic_conf_set(tc, "message.timeout.ms", tmo, err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.dlq_timeout_ms: %s", err);
            rd_kafka_topic_conf_destroy(tc);
            fd_kafka_producer_destroy(rk);
            return NULL;
        }
        ps->dlq_rkt = rd_kafka_topic_new(rk, cfg->kafka_topic_dlq, tc);
        if (!ps->dlq_rkt) {
            snprintf(errstr, errstr_size, "kafka.topic_dlq: %s: %s", cfg->kafka_topic_dlq,
                     rd_kafka_err2str(rd_kafka_last_error()));
            fd_kafka_producer_destroy(rk);
            return NULL;
        }
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
    if (ps && ps->dlq_rkt)
        rd_kafka_topic_destroy(ps->dlq_rkt);
    rd_kafka_destroy(producer); /* reports of undelivered dead letters free their refs */
    if (ps) {
        if (ps->log_suppressed)
            fd_err("kafka", "%" PRId64 " more dead letters were given up (see stats dlq_failed)",
                   ps->log_suppressed);
        pthread_mutex_destroy(&ps->log_lock);
    }
    free(ps);
}

int64_t fd_kafka_dlq_failed(rd_kafka_t *producer, fd_reject reason)
{
    producer_state *ps = rd_kafka_opaque(producer);
    if (!ps || (int)reason < 0 || reason >= FD_REJ__COUNT)
        return 0;
    return (int64_t)atomic_load(&ps->dlq_failed[reason]);
}

/* What a dead letter keeps of the rejected message (docs/EVENTS.md):
 * - the key: at most FD_DLQ_KEY_MAX bytes (header fd.key.truncated then
 *   holds the original length); a longer key is no user id anyway;
 * - the value: whole when key, value and headers fit the producer's
 *   message.max.bytes, else its first FD_DLQ_VALUE_MAX bytes (or less if
 *   even that does not fit), with header fd.truncated = the original length. */
#define DLQ_HEADER_ROOM 2048 /* headers (fd.error is < 512 bytes) and framing */

int fd_kafka_produce_dlq(rd_kafka_t *producer, const char *dlq_topic, const rd_kafka_message_t *src,
                         fd_reject reason, const char *error)
{
    producer_state *ps = rd_kafka_opaque(producer);
    char part[16], off[24], orig_len[24], orig_key_len[24];
    snprintf(part, sizeof part, "%" PRId32, src->partition);
    snprintf(off, sizeof off, "%" PRId64, src->offset);
    snprintf(orig_len, sizeof orig_len, "%zu", src->len);
    snprintf(orig_key_len, sizeof orig_key_len, "%zu", src->key_len);
    const char *src_topic = src->rkt ? rd_kafka_topic_name(src->rkt) : "";
    if ((int)reason < 0 || reason >= FD_REJ__COUNT)
        reason = FD_REJ_FIELD_TYPE;
    size_t key_len = src->key ? src->key_len : 0;
    if (key_len > FD_DLQ_KEY_MAX)
        key_len = FD_DLQ_KEY_MAX;
    size_t len = src->len, room = 0;
    if (ps->max_bytes > key_len + DLQ_HEADER_ROOM)
        room = ps->max_bytes - key_len - DLQ_HEADER_ROOM;
    if (len > room)
        len = room < FD_DLQ_VALUE_MAX ? room : FD_DLQ_VALUE_MAX;
    if (len < src->len || key_len < src->key_len)
        fd_warn("kafka",
                "dead letter for partition=%s offset=%s: key %zu and value %zu bytes, too large "
                "for %s: keeping %zu and %zu bytes (headers fd.key.truncated, fd.truncated)",
                part, off, src->key_len, src->len, dlq_topic, key_len, len);
    dlq_ref ref0 = {.partition = src->partition, .offset = src->offset, .reason = reason};
    int64_t queue_full_since = 0;
    for (;;) {
        dlq_ref *ref = malloc(sizeof *ref);
        if (!ref) {
            dlq_log_failed(ps, &ref0, dlq_topic, "out of memory");
            return -1;
        }
        *ref = ref0;
        rd_kafka_headers_t *h = rd_kafka_headers_new(8);
        rd_kafka_header_add(h, "fd.reason", -1, fd_reject_name(reason), -1);
        rd_kafka_header_add(h, "fd.error", -1, error, -1);
        rd_kafka_header_add(h, "fd.source.topic", -1, src_topic, -1);
        rd_kafka_header_add(h, "fd.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "fd.source.offset", -1, off, -1);
        if (len < src->len)
            rd_kafka_header_add(h, "fd.truncated", -1, orig_len, -1);
        if (key_len < src->key_len)
            rd_kafka_header_add(h, "fd.key.truncated", -1, orig_key_len, -1);
        atomic_fetch_add(&ps->dlq_sent, 1); /* before its report can come */
        /* the handle with kafka.dlq_timeout_ms; another topic (tests) gets
         * librdkafka's refcounted handle of that name */
        bool own = !ps->dlq_rkt || strcmp(dlq_topic, rd_kafka_topic_name(ps->dlq_rkt)) != 0;
        rd_kafka_topic_t *rkt = own ? rd_kafka_topic_new(producer, dlq_topic, NULL) : ps->dlq_rkt;
        rd_kafka_resp_err_t err =
            !rkt ? rd_kafka_last_error()
                 : rd_kafka_producev(
                       producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                       RD_KAFKA_V_KEY(src->key, key_len), RD_KAFKA_V_VALUE(src->payload, len),
                       RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END);
        if (own && rkt)
            rd_kafka_topic_destroy(rkt);
        if (!err) {
            rd_kafka_poll(producer, 0);
            return 0; /* headers and ref now owned by the message */
        }
        atomic_fetch_sub(&ps->dlq_sent, 1);
        rd_kafka_headers_destroy(h);
        free(ref);
        /* A full queue is waited out (librdkafka gives up on what it holds
         * after kafka.dlq_timeout_ms, so this ends), but not for longer. */
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            int64_t now = fd_mono_ms();
            if (!queue_full_since)
                queue_full_since = now;
            if (now - queue_full_since < ps->dlq_timeout_ms) {
                rd_kafka_poll(producer, 100);
                continue;
            }
        }
        dlq_log_failed(ps, &ref0, dlq_topic, rd_kafka_err2str(err));
        return -1; /* the caller counts it: it knows the partition's epoch */
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

int64_t fd_kafka_dlq_sent(rd_kafka_t *producer)
{
    producer_state *ps = producer ? rd_kafka_opaque(producer) : NULL;
    return ps ? (int64_t)atomic_load(&ps->dlq_sent) : 0;
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
