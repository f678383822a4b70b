/*
 * kafka_mock.c - see kafka_mock.h. The mock cluster needs an rd_kafka_t for
 * its bookkeeping; we give it a private producer handle that is never used
 * for anything else. Its log goes into funneld's logger.
 */
#include "pipeline/kafka_mock.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/log.h"

struct fd_mock {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int n_brokers;
};

static void mock_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    fd_log(level <= 3   ? FD_LOG_ERROR
           : level <= 4 ? FD_LOG_WARN
                        : FD_LOG_DEBUG,
           "kafka-mock", "%s: %s", fac, buf);
}

fd_mock *fd_mock_new(int n_brokers, const char *const *topics, int n_topics, int partitions,
                     char *errstr, size_t errstr_size)
{
    fd_mock *m = calloc(1, sizeof *m);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!m || !conf) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, mock_log_cb);
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!m->rk)
        goto fail; /* conf is destroyed by rd_kafka_new only on success */
    conf = NULL;
    m->mc = rd_kafka_mock_cluster_new(m->rk, n_brokers);
    m->n_brokers = n_brokers;
    if (!m->mc) {
        snprintf(errstr, errstr_size, "could not start the Kafka mock cluster");
        goto fail;
    }
    for (int i = 0; i < n_topics; i++)
        if (fd_mock_create_topic(m, topics[i], partitions, errstr, errstr_size) != 0)
            goto fail;
    return m;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    fd_mock_destroy(m);
    return NULL;
}

const char *fd_mock_bootstraps(const fd_mock *m)
{
    return rd_kafka_mock_cluster_bootstraps(m->mc);
}

int fd_mock_create_topic(fd_mock *m, const char *topic, int partitions, char *errstr,
                         size_t errstr_size)
{
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(m->mc, topic, partitions, 1);
    if (err) {
        snprintf(errstr, errstr_size, "creating topic %s: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

void fd_mock_push_errors(fd_mock *m, int16_t api_key, int count, int err)
{
    /* One array, one call: pushed one at a time, the mock grows its error
     * stack by one each (100000 took over 30 s under AddressSanitizer). */
    rd_kafka_resp_err_t *errs = count > 0 ? malloc((size_t)count * sizeof *errs) : NULL;
    if (!errs) {
        for (int i = 0; i < count; i++)
            rd_kafka_mock_push_request_errors(m->mc, api_key, 1, (rd_kafka_resp_err_t)err);
        return;
    }
    for (int i = 0; i < count; i++)
        errs[i] = (rd_kafka_resp_err_t)err;
    rd_kafka_mock_push_request_errors_array(m->mc, api_key, (size_t)count, errs);
    free(errs);
}

int fd_mock_broker_set_up(fd_mock *m, int32_t id, int up)
{
    rd_kafka_resp_err_t err =
        up ? rd_kafka_mock_broker_set_up(m->mc, id) : rd_kafka_mock_broker_set_down(m->mc, id);
    return err ? -1 : 0;
}

int fd_mock_broker_set_rtt(fd_mock *m, int32_t id, int rtt_ms)
{
    return rd_kafka_mock_broker_set_rtt(m->mc, id, rtt_ms) ? -1 : 0;
}

int fd_mock_broker_count(const fd_mock *m)
{
    return m->n_brokers;
}

void fd_mock_destroy(fd_mock *m)
{
    if (!m)
        return;
    if (m->mc)
        rd_kafka_mock_cluster_destroy(m->mc);
    if (m->rk)
        rd_kafka_destroy(m->rk);
    free(m);
}
