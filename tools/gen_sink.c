/*
 * gen_sink.c - `funnelctl gen`: the sinks, a Kafka producer that never
 * drops or a framed file.
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "tools/gen_int.h"

/* ---- sinks ---------------------------------------------------------------- */

/* librdkafka thread or the polling thread (this one). */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    sink *s = opaque;
    if (m->err) {
        if (!s->failed++)
            snprintf(s->first_error, sizeof s->first_error, "%s", rd_kafka_err2str(m->err));
    } else {
        s->delivered++;
    }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    fd_log(level <= 3   ? FD_LOG_ERROR
           : level == 4 ? FD_LOG_WARN
           : level <= 6 ? FD_LOG_INFO
                        : FD_LOG_DEBUG,
           "kafka", "%s: %s", fac, buf);
}

/* Open the sink named by the options (strings are borrowed: they must
 * outlive the sink). Returns 0, or -1 with a message printed;
 * gen_sink_close() undoes a partial open. Main thread. */
fd_codec *gen_codec_new(const char *prog, int format, const char *schema, int32_t schema_id)
{
    char err[512];
    fd_schema_ref ref = {schema_id, schema};
    fd_codec_opts co = {
        .format = (fd_format)format,
        .schema_path = format == FD_FMT_JSON ? NULL : schema,
        .schema_ids = format == FD_FMT_CONFLUENT_AVRO ? &ref : NULL,
        .n_schema_ids = format == FD_FMT_CONFLUENT_AVRO ? 1 : 0,
        .encode_schema_id = schema_id,
    };
    fd_codec *c = fd_codec_new(&co, err, sizeof err);
    if (!c)
        fprintf(stderr, "%s: codec: %s\n", prog, err);
    return c;
}

int gen_sink_open(sink *s, const sink_opts *a)
{
    char err[512];
    memset(s, 0, sizeof *s);
    s->prog = a->prog;
    if (a->out) {
        if (!strcmp(a->out, "-")) {
            s->f = stdout;
        } else {
            s->f = fopen(a->out, "wb");
            if (!s->f) {
                fprintf(stderr, "%s: --out %s: %s\n", s->prog, a->out, strerror(errno));
                return -1;
            }
            s->close_f = true;
        }
        setvbuf(s->f, NULL, _IOFBF, 1 << 20);
        return 0;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", a->brokers},
        {"compression.codec", "lz4"},
        {"linger.ms", "5"},
        {"enable.idempotence", "true"},
        {"client.id", a->client_id},
        /* A broker gone for a minute fails the run (exit 1, no truth)
         * instead of hanging; -X message.timeout.ms=0 waits forever. */
        {"message.timeout.ms", "60000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s: kafka %s=%s: %s\n", s->prog, kv[i][0], kv[i][1], err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    for (int i = 0; i < a->n_props; i++) {
        char k[256];
        const char *eq = strchr(a->props[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - a->props[i]), a->props[i]);
        if (rd_kafka_conf_set(conf, k, eq + 1, err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s: --producer-prop %s: %s\n", s->prog, a->props[i], err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, s);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!s->rk) {
        fprintf(stderr, "%s: kafka producer: %s\n", s->prog, err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    conf = NULL; /* owned by rk now */
    s->topic = a->topic;
    return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Write one record. Returns 0, or -1 with a message printed. */
int gen_sink_write(sink *s, const char *key, size_t klen, const void *val, size_t vlen)
{
    if (s->f) {
        uint8_t hdr[4];
        put_be32(hdr, (uint32_t)klen);
        fwrite(hdr, 1, 4, s->f);
        fwrite(key, 1, klen, s->f);
        put_be32(hdr, (uint32_t)vlen);
        fwrite(hdr, 1, 4, s->f);
        if (fwrite(val, 1, vlen, s->f) != vlen) {
            fprintf(stderr, "%s: write: %s\n", s->prog, strerror(errno));
            return -1;
        }
        return 0;
    }
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_KEY(key, klen),
                              RD_KAFKA_V_VALUE((void *)val, vlen),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!e)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "%s: produce to %s: %s\n", s->prog, s->topic, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(s->rk, 50); /* serve delivery reports, then retry */
    }
    rd_kafka_poll(s->rk, 0);
    if (s->failed) {
        fprintf(stderr, "%s: delivery to %s failed: %s\n", s->prog, s->topic, s->first_error);
        return -1;
    }
    return 0;
}

/* Flush and close. Returns 0 when every record reached the file or broker. */
int gen_sink_close(sink *s)
{
    int rc = 0;
    if (s->f) {
        if (fflush(s->f) != 0 || ferror(s->f)) {
            fprintf(stderr, "%s: write: %s\n", s->prog, strerror(errno));
            rc = -1;
        }
        if (s->close_f && fclose(s->f) != 0 && rc == 0) {
            fprintf(stderr, "%s: close: %s\n", s->prog, strerror(errno));
            rc = -1;
        }
        s->f = NULL;
    }
    if (s->rk) {
        /* Every message ends in a delivery report (message.timeout.ms bounds
         * it), so this loop ends. */
        while (rd_kafka_outq_len(s->rk) > 0)
            rd_kafka_flush(s->rk, 1000);
        if (s->failed) {
            fprintf(stderr, "%s: %" PRIu64 " deliveries to %s failed, first: %s\n", s->prog,
                    s->failed, s->topic, s->first_error);
            rc = -1;
        }
        rd_kafka_destroy(s->rk);
        s->rk = NULL;
    }
    return rc;
}
