/*
 * kafka.h - librdkafka clients as funneld configures them: the events
 * consumer, the output producer (dead letters; later alerts and metrics),
 * kafka.properties pass-through, and librdkafka's log in funneld's logger.
 */
#ifndef FD_KAFKA_H
#define FD_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"
#include "features/event.h"

/* Check every kafka.properties entry with librdkafka (names and values)
 * without creating a client. 0, or -1 with "FILE:LINE:COL:
 * kafka.properties.NAME: librdkafka's message" in errstr. */
int fd_kafka_check_properties(const fd_config *cfg, char *errstr, size_t errstr_size);

/* A consumer in group cfg->kafka_group_id on `bootstraps`, offsets managed
 * by funneld (no auto commit, no auto store), with rebalance_cb and opaque.
 * kafka.properties apply on top; a rejected property gives librdkafka's
 * message in errstr, prefixed by "kafka.properties.NAME". Caller destroys. */
rd_kafka_t *fd_kafka_consumer_new(const fd_config *cfg, const char *bootstraps,
                                  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                       rd_kafka_topic_partition_list_t *, void *),
                                  void *opaque, char *errstr, size_t errstr_size);

/* An idempotent producer that never gives up on a message
 * (message.timeout.ms=0) but dead letters (kafka.dlq_timeout_ms): a full
 * queue or a broker outage is waited out. Delivery failures (only fatal
 * errors remain) are counted; see fd_kafka_delivery_failures and
 * fd_kafka_dlq_failed. Caller destroys. */
rd_kafka_t *fd_kafka_producer_new(const fd_config *cfg, const char *bootstraps, char *errstr,
                                  size_t errstr_size);

/* Destroy a producer made by fd_kafka_producer_new (NULL accepted). */
void fd_kafka_producer_destroy(rd_kafka_t *producer);

/* Messages other than dead letters whose delivery failed for good since
 * the producer was created. */
int64_t fd_kafka_delivery_failures(rd_kafka_t *producer);

/* Dead letters of this reason reported failed (after librdkafka's retries,
 * at most kafka.dlq_timeout_ms) since the producer was created; those
 * fd_kafka_produce_dlq gave up itself are not in it. */
int64_t fd_kafka_dlq_failed(rd_kafka_t *producer, fd_reject reason);

/* Bounds of what a dead letter keeps of a rejected message. */
#define FD_DLQ_KEY_MAX   1024        /* key bytes; header fd.key.truncated beyond */
#define FD_DLQ_VALUE_MAX (64 * 1024) /* value bytes kept when the whole does not fit */

/* Produce a copy of a rejected message to the dead-letter topic with its
 * key and value (bounded: FD_DLQ_KEY_MAX, and FD_DLQ_VALUE_MAX when the
 * whole does not fit message.max.bytes) and the headers fd.reason,
 * fd.error, fd.source.topic, fd.source.partition, fd.source.offset
 * (fd.truncated, fd.key.truncated when cut). Waits out a full queue, at
 * most kafka.dlq_timeout_ms. 0 when produced (its delivery is reported
 * later: fd_kafka_dlq_pending); -1 when given up here (logged, rate-limited;
 * the caller counts it). Any thread. */
int fd_kafka_produce_dlq(rd_kafka_t *producer, const char *dlq_topic, const rd_kafka_message_t *src,
                         fd_reject reason, const char *error);

/* Produce a copy of key/value to topic, waiting out a full queue. 0, or -1
 * on an error that is not retriable (logged). */
int fd_kafka_produce(rd_kafka_t *producer, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t value_len);

/* Dead letters produced (fd_kafka_produce_dlq, any thread) whose delivery
 * is not reported yet, after serving the reports that are waiting. Other
 * messages (metrics, alerts) do not count. */
int64_t fd_kafka_dlq_pending(rd_kafka_t *producer);
/* Dead letters produced since start. */
int64_t fd_kafka_dlq_sent(rd_kafka_t *producer);

/* Wait until every produced message is delivered, at most timeout_ms.
 * 0 when the queue is empty, -1 otherwise. */
int fd_kafka_drain(rd_kafka_t *producer, int timeout_ms);

/* The consumer queue funneld asks librdkafka for: queued.min.messages,
 * queued.max.messages.kbytes (librdkafka counts only payload bytes against
 * it; a queued message costs ~3x its payload with the op and the
 * decompressed batch it pins) and max.partition.fetch.bytes (what one fetch
 * can add beyond them, per partition). 300000 / 65536 / 1048576 (librdkafka's
 * kbytes and fetch defaults) held 280-320 MB within a second of the first
 * fetch; these hold ~20 MB, at the same steady rate (fd_fetch_nudge wakes the
 * fetcher; docs/BENCHMARKS.md, "Memory: fixed cost and RSS per user").
 * kbytes 8192 rather than 16384, with engine.queue_messages 8192 rather than
 * 16384, took another ~7 MiB off the peak at 20 k users, rate unchanged
 * within the noise (A/B, 2 runs each).
 * kafka.properties overrides each. */
#define FD_KAFKA_QUEUED_MIN            "50000"
#define FD_KAFKA_QUEUED_MAX_KBYTES     "8192"
#define FD_KAFKA_PARTITION_FETCH_BYTES "262144"

/* Wakes librdkafka's fetcher after its consumer queue drained.
 *
 * librdkafka 2.0 stops fetching while the consumer queue holds
 * queued.min.messages (counted over all partitions) and reconsiders only
 * when a broker thread next wakes: on a reply, on an op, or after up to a
 * second. A consumer slower than the broker drains such a queue in a few
 * hundred ms and then waits the rest of that second with nothing to read
 * (measured in docs/BENCHMARKS.md: 2-3 stops of ~0.6 s per 2 M events, for
 * funneld and for a consumer that only counts). fd_fetch_nudge, called after
 * polling, watches the queue length; once the queue was full and has drained
 * to half, it asks the leaders of the assigned partitions for their latest
 * offsets. That request is an op on each leader's broker thread, which wakes
 * it, and the thread decides to fetch again. One ListOffsets per leader per
 * drain; the answer is not used. Used by one thread. */
typedef struct fd_fetch_nudge {
    rd_kafka_queue_t *q; /* the consumer queue; NULL: disabled */
    size_t queued_min;   /* the consumer's queued.min.messages */
    bool full;           /* the queue reached it since the last nudge */
    uint64_t nudges;     /* sent so far */
} fd_fetch_nudge;

/* Set up for consumer rk (after rd_kafka_poll_set_consumer). */
void fd_fetch_nudge_init(fd_fetch_nudge *n, rd_kafka_t *rk);
void fd_fetch_nudge_destroy(fd_fetch_nudge *n);
/* Check the queue; nudge when it drained. 1 when it nudged, else 0. */
int fd_fetch_nudge_check(fd_fetch_nudge *n, rd_kafka_t *rk);

#endif
