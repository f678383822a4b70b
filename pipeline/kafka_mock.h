/*
 * kafka_mock.h - the only module that touches librdkafka's experimental mock
 * cluster API (rdkafka_mock.h). It speaks the real Kafka protocol on loopback:
 * `kafka.brokers: embedded` in funneld, `funnelctl broker`, and the tests use
 * it. A real cluster is a config change.
 */
#ifndef FD_KAFKA_MOCK_H
#define FD_KAFKA_MOCK_H

#include <stddef.h>
#include <stdint.h>

typedef struct fd_mock fd_mock;

/* Start a mock cluster of n_brokers brokers and create each topic with
 * `partitions` partitions. NULL with errstr on failure. Caller destroys.
 * Any thread. */
fd_mock *fd_mock_new(int n_brokers, const char *const *topics, int n_topics, int partitions,
                     char *errstr, size_t errstr_size);

/* "127.0.0.1:PORT[,...]"; owned by the cluster. */
const char *fd_mock_bootstraps(const fd_mock *m);

/* Create another topic. 0 or -1. */
int fd_mock_create_topic(fd_mock *m, const char *topic, int partitions, char *errstr,
                         size_t errstr_size);

/* Fault injection for tests: push `count` copies of Kafka error `err` onto
 * the error stack of request type api_key (e.g. 0 = Produce, 1 = Fetch,
 * 8 = OffsetCommit). */
void fd_mock_push_errors(fd_mock *m, int16_t api_key, int count, int err);

/* Take broker `id` (1-based) down or up. 0 or -1. */
int fd_mock_broker_set_up(fd_mock *m, int32_t id, int up);

/* Give broker `id` (1-based) a round-trip time of rtt_ms (0 = none) on every
 * request it answers. 0 or -1. */
int fd_mock_broker_set_rtt(fd_mock *m, int32_t id, int rtt_ms);

/* Number of brokers of the cluster (ids are 1..n). */
int fd_mock_broker_count(const fd_mock *m);

/* NULL accepted. */
void fd_mock_destroy(fd_mock *m);

#endif
