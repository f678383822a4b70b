/*
 * gen_int.h - what the files of `funnelctl gen` share: the options, the sink
 * and the functions one file calls in another:
 *
 *   cmd_gen.c         main: the loop from generator to codec to sink
 *   gen_cli.c         usage and options
 *   gen_sink.c        the sinks: Kafka producer or framed file (also used by
 *                     cmd_replay.c)
 *   gen_truth_json.c  the truth and latent files (streaming JSON)
 *   gen.c             the event synthesis (tools/gen.h)
 *   gen_truth.c       sessions and funnel truth (tools/gen_truth.h)
 */
#ifndef FD_GEN_INT_H
#define FD_GEN_INT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pipeline/codec.h"
#include "tools/gen.h"
#include "tools/gen_truth.h"

#define MAX_PROPS 32

typedef struct gen_args {
    fd_gen_opts g;
    double rate;
    int format;
    const char *schema;
    int32_t schema_id;
    const char *brokers, *topic, *out, *truth, *latent;
    const char *props[MAX_PROPS]; /* "key=value" for librdkafka */
    int n_props;
    fd_truth_opts t;                                 /* sessions and funnel truth */
    char cat_buf[FD_TRUTH_MAX_CATEGORIES * 64 + 64]; /* --categories, split in place */
    const char *cats[FD_TRUTH_MAX_CATEGORIES];
} gen_args;

/* Where a sink writes: a framed file (out) or a Kafka topic. Shared by
 * `funnelctl gen` and `funnelctl replay` (tools/cmd_replay.c). */
typedef struct sink_opts {
    const char *prog;      /* message prefix, e.g. "funnelctl gen" */
    const char *client_id; /* librdkafka client.id */
    const char *brokers, *topic, *out;
    const char *const *props; /* "key=value" for librdkafka */
    int n_props;
} sink_opts;

typedef struct sink {
    const char *prog;
    FILE *f;
    bool close_f;
    rd_kafka_t *rk;
    const char *topic;
    uint64_t delivered, failed;
    char first_error[256];
} sink;

/* gen_cli.c */
void gen_usage(FILE *out);
/* 0, 1 for --help, -1 after printing the error. */
int gen_parse_args(int argc, char **argv, gen_args *a);

/* gen_sink.c */
int gen_sink_open(sink *s, const sink_opts *o);
/* The encoder of the events a sink produces: format (fd_format), the Avro
 * schema (unused for JSON) and, for Confluent-framed Avro, its id. NULL
 * with "PROG: codec: why" printed. Caller destroys. */
fd_codec *gen_codec_new(const char *prog, int format, const char *schema, int32_t schema_id);
int gen_sink_write(sink *s, const char *key, size_t klen, const void *val, size_t vlen);
int gen_sink_close(sink *s);

/* gen_truth_json.c */
int gen_write_truth(const fd_gen *g, fd_truth *tr, const char *path);
int gen_write_latent(const fd_gen *g, const char *path);
int gen_publish(const char *path);

#endif
