/*
 * cmd_gen.c - `funnelctl gen`: the synthetic clickstream written to Kafka or
 * to a framed file, with the ground truth as JSON.
 *
 * Why it is built this way:
 *
 * - The generator (tools/gen.c) is pure; this file is the edge: options,
 *   the codec, the sink, the clock (only for --rate and the progress line),
 *   and the truth file. Event content never depends on the clock.
 *
 * - The Kafka sink never drops. A full local queue is answered by serving
 *   delivery reports (rd_kafka_poll) and retrying the same message; every
 *   delivery report is checked, and one failure stops the run with exit 1
 *   after the queue has been flushed. The key is the user id, so a
 *   partition owns its users as the daemon expects. lz4 keeps the mock
 *   cluster's ~5 MiB per-partition log from silently dropping old data.
 *
 * - The framed file ("u32 BE key length, key, u32 BE value length, value")
 *   is trivially replayable by another producer (tests/integration/
 *   produce_framed.py), so tests can load a topic with a client that shares
 *   no code with funneld.
 *
 * - The truth is written by hand as streaming JSON (one user or minute per
 *   line) into a temporary file that is renamed into place only when every
 *   event was delivered: a truth file that exists always matches the
 *   output. 200k users take a few hundred milliseconds this way.
 *
 * - The session and funnel part of the truth (tools/gen_truth.c) sees every
 *   event written, in the order written, which is each partition's offset
 *   order: the order funneld applies them in. Its options mirror the
 *   daemon's configuration keys so a test can set both the same way.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/gen.h"
#include "tools/gen_int.h"
#include "tools/gen_truth.h"

/* ---- main ----------------------------------------------------------------- */

/* Wait until event n is due at --rate, serving the producer meanwhile. */
static void pace(sink *s, double t0, double rate, uint64_t n)
{
    for (;;) {
        double ahead = t0 + (double)n / rate - fd_cli_now_s();
        if (ahead <= 0 || fd_cli_stop)
            return;
        if (s->rk) {
            rd_kafka_poll(s->rk, ahead > 0.1 ? 100 : (int)(ahead * 1000) + 1);
        } else {
            double d = ahead > 0.1 ? 0.1 : ahead;
            struct timespec ts = {0, (long)(d * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}

int fd_cmd_gen(int argc, char **argv)
{
    gen_args a;
    int done = fd_cli_args_done(gen_parse_args(argc, argv, &a), "funnelctl gen", gen_usage);
    if (done >= 0)
        return done;

    int rc = 1;
    char err[512] = "";
    fd_gen *g = NULL;
    fd_truth *tr = NULL;
    fd_codec *codec = NULL;
    sink s;
    memset(&s, 0, sizeof s);

    g = fd_gen_new(&a.g, err, sizeof err);
    if (!g) {
        fprintf(stderr, "funnelctl gen: %s\n", err);
        rc = 2;
        goto out;
    }
    a.t.users_hint = a.g.users;
    tr = fd_truth_new(&a.t, err, sizeof err);
    if (!tr) {
        fprintf(stderr, "funnelctl gen: truth: %s\n", err);
        rc = 2;
        goto out;
    }
    codec = gen_codec_new("funnelctl gen", a.format, a.schema, a.schema_id);
    if (!codec)
        goto out;
    sink_opts so = {.prog = "funnelctl gen",
                    .client_id = "funnelctl-gen",
                    .brokers = a.brokers,
                    .topic = a.topic,
                    .out = a.out,
                    .props = a.props,
                    .n_props = a.n_props};
    if (gen_sink_open(&s, &so) < 0)
        goto out;

    fd_cli_catch_stop();

    fd_cli_progress pg = {.label = "gen", .unit = "events", .tty = -1};
    double t0 = fd_cli_now_s();
    fd_event ev;
    uint64_t n = 0;
    int werr = 0;
    while (!fd_cli_stop && fd_gen_next(g, &ev)) {
        if (a.rate > 0)
            pace(&s, t0, a.rate, n);
        const void *buf;
        size_t len;
        if (fd_codec_encode(codec, &ev, &buf, &len) != 0) {
            fprintf(stderr, "funnelctl gen: encode of event %s failed\n", ev.event_id);
            werr = -1;
            break;
        }
        if (gen_sink_write(&s, ev.user_id, strlen(ev.user_id), buf, len) < 0) {
            werr = -1;
            break;
        }
        n++;
        if (a.truth && fd_truth_add(tr, &ev) < 0) {
            fprintf(stderr, "funnelctl gen: truth: out of memory\n");
            werr = -1;
            break;
        }
        if ((n & 4095) == 0) { /* a bar on a terminal, a line every 2 s otherwise */
            char text[64];
            snprintf(text, sizeof text, "%.1f s", fd_cli_now_s() - t0);
            fd_cli_progress_show(&pg, n, a.g.events, text, 0);
        }
    }
    int cerr = gen_sink_close(&s);
    double elapsed = fd_cli_now_s() - t0;
    if (pg.tty == 1 || n >= 4096) {
        char text[64];
        snprintf(text, sizeof text, "%.1f s", elapsed);
        fd_cli_progress_show(&pg, n, a.g.events, text, 1);
    }
    if (werr < 0 || cerr < 0) {
        fprintf(stderr, "funnelctl gen: stopped after %" PRIu64 " events; no truth written\n", n);
        goto out;
    }
    if (a.truth && (gen_write_truth(g, tr, a.truth) < 0 || gen_publish(a.truth) < 0))
        goto out;
    if (a.latent && (gen_write_latent(g, a.latent) < 0 || gen_publish(a.latent) < 0))
        goto out;
    fprintf(stderr, "gen: %" PRIu64 " events, %" PRIu32 " users, %.1f s, %.0f ev/s\n", n, a.g.users,
            elapsed, elapsed > 0 ? (double)n / elapsed : 0.0);
    if (fd_cli_stop) {
        fprintf(stderr,
                "funnelctl gen: interrupted; the truth covers the %" PRIu64 " events written\n", n);
        goto out;
    }
    if (n < a.g.events)
        fprintf(stderr, "funnelctl gen: every user churned after %" PRIu64 " events\n", n);
    rc = 0;
out:
    gen_sink_close(&s);
    fd_codec_destroy(codec);
    fd_truth_free(tr);
    fd_gen_destroy(g);
    return rc;
}
