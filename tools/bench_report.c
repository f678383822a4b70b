/*
 * bench_report.c - `funnelctl bench`: the output, one JSON object or the
 * human table.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/codec.h"
#include "tools/bench.h"
#include "tools/bench_int.h"

/* ---- output ----------------------------------------------------------------- */

static void json_num(FILE *f, const char *name, double v, int decimals, bool valid)
{
    if (valid)
        fprintf(f, ",\"%s\":%.*f", name, decimals, v);
    else
        fprintf(f, ",\"%s\":null", name);
}

void bench_print_json(const bench_args *a, const bench_run *run, const bench_result *r)
{
    FILE *f = stdout;
    bool full = !a->core_only;
    fprintf(f, "{\"version\":\"%s\",\"events\":%" PRIu64, FD_VERSION,
            full ? run->total : r->core.events);
    fprintf(f, ",\"users\":%" PRIu32 ",\"partitions\":%d,\"format\":\"%s\",\"seed\":%" PRIu64,
            a->gen.users, a->partitions, fd_format_name((fd_format)a->format), a->gen.seed);
    if (full) {
        fprintf(f, ",\"broker\":\"%s\",\"redis\":\"%s\"", a->brokers ? "given" : "embedded-mock",
                a->redis_url ? "given" : "private-unix-socket");
        fprintf(f, ",\"workers\":%d,\"engine_workers_supported\":%s", r->workers,
                r->workers_supported ? "true" : "false");
        if (a->preload) /* a path: no quotes or backslashes expected, but escape them */
            fprintf(f, ",\"preload\":\"%s\"", strpbrk(a->preload, "\"\\") ? "?" : a->preload);
        else
            fprintf(f, ",\"preload\":null");
        json_num(f, "seconds", r->e2e_s, 3, true);
        json_num(f, "events_per_s", r->e2e_eps, 1, true);
        json_num(f, "first_offset_in_redis_seconds", r->e2e_first_s, 3, r->e2e_first_s > 0);
        json_num(f, "raw_consume_seconds", r->raw_s, 3, true);
        json_num(f, "raw_first_message_seconds", r->raw_first_s, 3, true);
        json_num(f, "raw_consume_events_per_s", r->raw_eps, 1, true);
        json_num(f, "kcat_seconds", r->kcat_s, 3, r->have_kcat);
        json_num(f, "kcat_events_per_s", r->kcat_eps, 1, r->have_kcat);
        json_num(f, "ratio", r->e2e_eps / r->raw_eps, 4, true); /* whole run */
        json_num(f, "first_message_seconds", r->e2e_first_msg_s, 3, r->e2e_first_msg_s > 0);
        json_num(f, "steady_events_per_s", r->e2e_steady_eps, 1, r->e2e_steady_eps > 0);
        json_num(f, "raw_steady_events_per_s", r->raw_steady_eps, 1, r->raw_steady_eps > 0);
        json_num(f, "steady_ratio", r->e2e_steady_eps / r->raw_steady_eps, 4,
                 r->e2e_steady_eps > 0 && r->raw_steady_eps > 0);
        json_num(f, "redis_commands", r->redis_cmds, 0, r->redis_cmds >= 0);
        json_num(f, "redis_commands_per_event", r->redis_cmds / (double)run->total, 4,
                 r->redis_cmds >= 0);
        json_num(f, "peak_rss_bytes", r->peak_rss, 0, r->peak_rss > 0);
        json_num(f, "funneld_cpu_seconds", r->funneld_cpu_s, 2, r->funneld_cpu_s >= 0);
        json_num(f, "funneld_cpu_s_per_million_events", r->funneld_cpu_s * 1e6 / (double)run->total,
                 3, r->funneld_cpu_s >= 0);
        json_num(f, "redis_cpu_seconds", r->redis_cpu_s, 2, r->redis_cpu_s >= 0);
        json_num(f, "redis_cpu_s_per_million_events", r->redis_cpu_s * 1e6 / (double)run->total, 3,
                 r->redis_cpu_s >= 0);
        fprintf(f, ",\"funneld_events_counted\":%" PRId64, r->funneld_events);
        if (a->peer) {
            json_num(f, "peer_seconds", r->peer_s, 3, r->have_peer);
            json_num(f, "peer_steady_events_per_s", r->peer_steady_eps, 1, r->have_peer);
            json_num(f, "peer_cpu_s_per_million_events", r->peer_cpu_s * 1e6 / (double)run->total,
                     3, r->have_peer);
            json_num(f, "funneld_vs_peer_steady", r->e2e_steady_eps / r->peer_steady_eps, 3,
                     r->have_peer && r->peer_steady_eps > 0);
        }
    }
    json_num(f, "core_events_per_s_per_core", r->core.median_events_per_s, 1, true);
    json_num(f, "core_ns_per_event", r->core.median_ns_per_event, 2, true);
    json_num(f, "core_ns_per_event_best", r->core.best_ns_per_event, 2, true);
    json_num(f, "core_no_model_ns_per_event", r->core.median_no_model_ns_per_event, 2, true);
    fputs(",\"core_with_churn_model\":true,\"core_with_mf_model\":true", f);
    json_num(f, "features_funnel_ns_per_event", r->core.median_apply_ns_per_event, 2, true);
    fprintf(f, ",\"core_statistic\":\"median of %d passes\"", r->core.reps);
    fprintf(f, ",\"distinct_users\":%" PRIu64, r->core.users);
    json_num(f, "user_table_bytes", r->core.user_table_bytes, 0, r->core.user_table_bytes > 0);
    json_num(f, "bytes_per_user", r->core.bytes_per_user, 1, r->core.bytes_per_user > 0);
    /* the user state holds the k = 32 factors (bfloat16): the same figure */
    json_num(f, "bytes_per_user_k32", r->core.bytes_per_user, 1, r->core.bytes_per_user > 0);
    fputs("}\n", f);
}

static const char *met(bool ok)
{
    return ok ? "met" : "NOT met";
}

/* The human table, naming each figure and the peer it compares with. */
void bench_print_table(FILE *out, const bench_args *a, const bench_run *run, const bench_result *r)
{
    const fd_bench_core_result *c = &r->core;
    if (a->core_only) {
        fprintf(
            out,
            "core (--no-io, 1 thread): %" PRIu64 " events, %" PRIu64 " users, median of %d passes\n"
            "  %.1f ns/event with both models (best %.1f), %.0f events/s/core; "
            "%.1f ns/event without it\n"
            "  of which features + session + funnel (fd_core_apply): %.1f ns/event "
            "(target < 100: %s)\n"
            "  user table: %.0f bytes for %" PRIu64 " users = %.1f bytes/user\n",
            c->events, c->users, c->reps, c->median_ns_per_event, c->best_ns_per_event,
            c->median_events_per_s, c->median_no_model_ns_per_event, c->median_apply_ns_per_event,
            c->median_apply_ns_per_event < 100 ? "met" : "NOT met", c->user_table_bytes, c->users,
            c->bytes_per_user);
        return;
    }
    double ratio = r->e2e_eps / r->raw_eps, cpe = r->redis_cmds / (double)run->total;
    fprintf(out,
            "funnelctl bench: %" PRIu64 " events, %" PRIu32
            " users, %d partitions, %s, %s broker\n",
            run->total, a->gen.users, a->partitions, fd_format_name((fd_format)a->format),
            a->brokers ? "given" : "embedded mock");
    fprintf(out, "funneld workers: %d%s%s%s\n\n", r->workers,
            r->workers_supported ? "" : " (this funneld has no engine.workers key)",
            a->preload ? ", LD_PRELOAD=" : "", a->preload ? a->preload : "");
    fprintf(out, "%-44s %10s %8s %7s %7s\n", "reader of the same topic", "events/s", "seconds",
            "first", "vs raw");
    fprintf(out, "%-44s %10.0f %8.2f %7.2f %7.2f\n", "librdkafka consumer, counts only (the limit)",
            r->raw_eps, r->raw_s, r->raw_first_s, 1.0);
    if (r->have_kcat)
        fprintf(out, "%-44s %10.0f %8.2f %7s %7.2f\n", "kcat -C (independent peer, no group)",
                r->kcat_eps, r->kcat_s, "", r->kcat_eps / r->raw_eps);
    else
        fprintf(out, "%-44s %10s %8s %7s %7s\n", "kcat -C (independent peer, no group)", "n/a",
                "n/a", "", "");
    fprintf(out, "%-44s %10.0f %8.2f %7.2f %7.2f  <- whole-run ratio\n",
            "funneld end to end (offsets in Redis)", r->e2e_eps, r->e2e_s, r->e2e_first_s, ratio);
    fprintf(out, "(seconds: from start to the last event; first: to the first message, or to the\n"
                 " first offset in Redis for funneld - group join and start-up)\n\n");
    double steady = r->raw_steady_eps > 0 ? r->e2e_steady_eps / r->raw_steady_eps : 0;
    fprintf(out,
            "steady state (each reader from its first consumed message to the end; funneld's\n"
            "first message at %.2f s, from its log):\n",
            r->e2e_first_msg_s);
    fprintf(out, "  librdkafka consumer %10.0f events/s\n", r->raw_steady_eps);
    fprintf(out, "  funneld             %10.0f events/s   steady-state ratio %.3f\n",
            r->e2e_steady_eps, steady);
    if (a->peer && r->have_peer)
        fprintf(
            out,
            "  python peer         %10.0f events/s   funneld / peer %.2f  (confluent_kafka +\n"
            "                      redis-py, tools/peer_consumer.py; %.2f s CPU per M events)\n",
            r->peer_steady_eps, r->peer_steady_eps > 0 ? r->e2e_steady_eps / r->peer_steady_eps : 0,
            r->peer_cpu_s * 1e6 / (double)run->total);
    else if (a->peer)
        fprintf(out, "  python peer                n/a (it failed: see above)\n");
    fputc('\n', out);
    fprintf(out,
            "core --no-io, 1 thread     %8.0f events/s/core  (%.1f ns/event with both models, "
            "median of %d passes; best %.1f; %.1f without the model)\n",
            c->median_events_per_s, c->median_ns_per_event, c->reps, c->best_ns_per_event,
            c->median_no_model_ns_per_event);
    fprintf(out,
            "  features + funnel alone    %6.1f ns/event (fd_core_apply; issue 4 target < 100)\n",
            c->median_apply_ns_per_event);
    fprintf(out, "redis commands per event   %8.4f  (%.0f commands; %.0f polls of ours excluded)\n",
            cpe, r->redis_cmds, r->redis_polls);
    fprintf(out, "funneld peak RSS (VmHWM)   %8.1f MiB\n", r->peak_rss / 1048576.0);
    fprintf(
        out,
        "funneld CPU time           %8.2f s  (%.0f events per CPU-second; %.3f s per M events)\n",
        r->funneld_cpu_s, r->funneld_cpu_s > 0 ? (double)run->total / r->funneld_cpu_s : 0.0,
        r->funneld_cpu_s * 1e6 / (double)run->total);
    if (r->redis_cpu_s >= 0)
        fprintf(out,
                "redis-server CPU time      %8.2f s  (%.3f s per M events; /proc, during funneld's "
                "run)\n",
                r->redis_cpu_s, r->redis_cpu_s * 1e6 / (double)run->total);
    else
        fprintf(out, "redis-server CPU time           n/a  (--redis-url: not our process)\n");
    if (c->bytes_per_user > 0)
        fprintf(out,
                "bytes per user             %8.1f  (user table + churn timers heap / %" PRIu64
                " users; with the k = 32 factors, bfloat16)\n",
                c->bytes_per_user, c->users);
    else
        fprintf(out,
                "bytes per user                  n/a  (mallinfo2 unavailable, e.g. under ASan)\n");
    fprintf(out, "events counted by funneld  %" PRId64 " of %" PRIu64 "\n\n", r->funneld_events,
            run->total);
    fprintf(out, "targets (issue 3):\n");
    fprintf(out, "  steady-state ratio >= 0.8           %6.3f  %s (whole run: %.3f)\n", steady,
            met(steady >= 0.8), ratio);
    fprintf(out, "  core >= 1,000,000 events/s/core     %6.2fM %s\n", c->median_events_per_s / 1e6,
            met(c->median_events_per_s >= 1e6));
    fprintf(out, "  redis commands per event <= 0.3     %6.3f  %s\n", cpe,
            met(cpe >= 0 && cpe <= 0.3));
    fprintf(out, "  bytes per user <= 512 (k = 32)      %6.0f  %s\n", c->bytes_per_user,
            c->bytes_per_user > 0 ? met(c->bytes_per_user <= 512) : "unknown");
}
