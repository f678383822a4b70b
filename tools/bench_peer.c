/*
 * bench_peer.c - `funnelctl bench --peer`: the consumer a team would write
 * instead (tools/peer_consumer.py: confluent_kafka + redis-py, per-user
 * decayed counts and per-minute counters, one pipelined MULTI per batch,
 * commit after) on the same topic and Redis (its own group and key
 * prefix), timed like the others from its first message to its last.
 */
#include "tools/bench_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "tools/cli.h"

/* The script: next to the source tree of this build, or installed. */
static int find_script(char *buf, size_t n)
{
    char dir[PATH_MAX];
    if (bench_exe_dir(dir, sizeof dir) == 0) {
        snprintf(buf, n, "%s/../tools/peer_consumer.py", dir);
        if (access(buf, R_OK) == 0)
            return 0;
    }
    if (access("tools/peer_consumer.py", R_OK) == 0) {
        snprintf(buf, n, "tools/peer_consumer.py");
        return 0;
    }
#ifdef FD_SCHEMA_DIR
    snprintf(buf, n, "%s/../peer_consumer.py", FD_SCHEMA_DIR);
    if (access(buf, R_OK) == 0)
        return 0;
#endif
    return -1;
}

int bench_run_peer(const bench_run *run, const bench_args *a, bench_result *res)
{
    char script[PATH_MAX + 64], out[PATH_MAX + 16], log[PATH_MAX + 16], events[32];
    if (find_script(script, sizeof script) != 0) {
        fprintf(stderr, PROG ": --peer: tools/peer_consumer.py not found\n");
        return 1;
    }
    snprintf(out, sizeof out, "%s/peer.json", run->dir);
    snprintf(log, sizeof log, "%s/peer.log", run->dir);
    snprintf(events, sizeof events, "%" PRIu64, run->total);
    const char *fmt = fd_format_name((fd_format)a->format);
    char *argv[] = {"/usr/bin/python3",
                    script,
                    "--brokers",
                    (char *)run->brokers,
                    "--topic",
                    (char *)run->topic,
                    "--redis",
                    (char *)fd_redis_url(run->redis),
                    "--prefix",
                    "peer:",
                    "--format",
                    (char *)fmt,
                    "--schema",
                    (char *)run->schema,
                    "--events",
                    events,
                    NULL};
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int efd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    pid_t pid = ofd >= 0 && efd >= 0 ? bench_spawn(argv, ofd, efd) : -1;
    if (ofd >= 0)
        close(ofd);
    if (efd >= 0)
        close(efd);
    if (pid < 0) {
        fprintf(stderr, PROG ": --peer: starting python3: %s\n", strerror(errno));
        return 1;
    }
    int st = bench_wait_child(&pid, a->timeout_s);
    if (st == -1) {
        bench_stop_child(&pid, SIGKILL, 5);
        fprintf(stderr, PROG ": --peer: did not finish within %.0f s\n", a->timeout_s);
        bench_show_tail("peer", log);
        return fd_cli_stop ? -1 : 1;
    }
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    json_t *ev = j ? json_object_get(j, "events") : NULL;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !json_is_integer(ev) ||
        (uint64_t)json_integer_value(ev) != run->total) {
        fprintf(stderr, PROG ": --peer: failed (status %d); no peer figure\n", st);
        bench_show_tail("peer", log);
        json_decref(j);
        return 1;
    }
    res->peer_first_s = json_number_value(json_object_get(j, "first_s"));
    res->peer_s = json_number_value(json_object_get(j, "end_s"));
    res->peer_cpu_s = json_number_value(json_object_get(j, "cpu_s"));
    res->peer_steady_eps = res->peer_s > res->peer_first_s
                               ? (double)run->total / (res->peer_s - res->peer_first_s)
                               : 0;
    res->have_peer = true;
    json_decref(j);
    return 0;
}
