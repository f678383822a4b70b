/*
 * cmd_broker.c - `funnelctl broker`: a standalone Kafka mock cluster on
 * loopback. Prints the bootstrap address as the first line of stdout, then
 * stays up until SIGTERM/SIGINT. Tests, demos and benchmarks use it as the
 * broker; kcat and confluent_kafka talk to it over TCP.
 *
 * With --control it also reads commands from stdin, one per line, and
 * answers each with exactly one line on stdout ("ok" or "error: <why>"), so
 * a fault-injection test can drive the cluster from another process without
 * linking librdkafka's experimental mock API:
 *
 *   errors API_KEY COUNT ERR_CODE   push COUNT copies of ERR_CODE for API_KEY
 *   down BROKER_ID | up BROKER_ID   take a broker down / bring it back
 *   rtt BROKER_ID MS                add MS of round-trip time to a broker
 *   quit                            stop (as does EOF on stdin)
 *
 * The answer line is written only after the mock cluster applied the
 * command, so "ok" means the fault is in place.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "pipeline/kafka_mock.h"
#include "tools/cli.h"
#include "tools/commands.h"

static void broker_usage(FILE *out)
{
    fprintf(out, "usage: funnelctl broker [--partitions N] [--brokers N] [--topic NAME]... "
                 "[--control]\n"
                 "\n"
                 "Runs a Kafka mock cluster (librdkafka) on 127.0.0.1 until SIGTERM or SIGINT.\n"
                 "The first line of stdout is the bootstrap address.\n"
                 "\n"
                 "  --partitions N  partitions of each topic (default 4, 1..1024)\n"
                 "  --brokers N     number of brokers (default 1, 1..16)\n"
                 "  --topic NAME    topic to create (repeatable; default: events, events.dlq,\n"
                 "                  churn-alerts, funnel-metrics)\n"
                 "  --control       read fault-injection commands from stdin, one per line;\n"
                 "                  each is answered with one line on stdout, \"ok\" or\n"
                 "                  \"error: <why>\"; EOF on stdin stops the broker:\n"
                 "                    errors API_KEY COUNT ERR_CODE  (e.g. errors 1 5 6: five\n"
                 "                                    NOT_LEADER_FOR_PARTITION on Fetch)\n"
                 "                    down BROKER_ID | up BROKER_ID\n"
                 "                    rtt BROKER_ID MS\n"
                 "                    quit\n");
}

/* Strict decimal integer in [lo, hi]; 0 or -1. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

#define CTL_MAX_LINE 1024

/* Run one control command (the line is modified). Writes the one-line
 * answer, without newline, into ans. Returns 1 when the command was
 * "quit", else 0. Main thread only. */
static int broker_command(fd_mock *m, char *line, char *ans, size_t ans_size)
{
    char *save = NULL, *argv[5];
    int argc = 0;
    for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (argc == 5) {
            snprintf(ans, ans_size, "error: too many arguments");
            return 0;
        }
        argv[argc++] = t;
    }
    long a, b, c;
    int nb = fd_mock_broker_count(m);
    if (argc == 0) {
        snprintf(ans, ans_size, "error: empty command");
    } else if (!strcmp(argv[0], "quit") && argc == 1) {
        snprintf(ans, ans_size, "ok");
        return 1;
    } else if (!strcmp(argv[0], "errors")) {
        if (argc != 4)
            snprintf(ans, ans_size, "error: usage: errors API_KEY COUNT ERR_CODE");
        else if (parse_int(argv[1], 0, 1000, &a) != 0)
            snprintf(ans, ans_size, "error: API_KEY '%s': expected 0..1000", argv[1]);
        else if (parse_int(argv[2], 1, 100000, &b) != 0)
            snprintf(ans, ans_size, "error: COUNT '%s': expected 1..100000", argv[2]);
        else if (parse_int(argv[3], 1, 1000, &c) != 0)
            snprintf(ans, ans_size, "error: ERR_CODE '%s': expected a Kafka error code 1..1000",
                     argv[3]);
        else {
            fd_mock_push_errors(m, (int16_t)a, (int)b, (int)c);
            fd_info("broker", "control: pushed %ld error(s) %ld on request type %ld", b, c, a);
            snprintf(ans, ans_size, "ok");
        }
    } else if (!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) {
        int up = !strcmp(argv[0], "up");
        if (argc != 2)
            snprintf(ans, ans_size, "error: usage: %s BROKER_ID", argv[0]);
        else if (parse_int(argv[1], 1, nb, &a) != 0)
            snprintf(ans, ans_size, "error: BROKER_ID '%s': expected 1..%d", argv[1], nb);
        else if (fd_mock_broker_set_up(m, (int32_t)a, up) != 0)
            snprintf(ans, ans_size, "error: the mock cluster refused to set broker %ld %s", a,
                     argv[0]);
        else {
            fd_info("broker", "control: broker %ld %s", a, argv[0]);
            snprintf(ans, ans_size, "ok");
        }
    } else if (!strcmp(argv[0], "rtt")) {
        if (argc != 3)
            snprintf(ans, ans_size, "error: usage: rtt BROKER_ID MS");
        else if (parse_int(argv[1], 1, nb, &a) != 0)
            snprintf(ans, ans_size, "error: BROKER_ID '%s': expected 1..%d", argv[1], nb);
        else if (parse_int(argv[2], 0, 600000, &b) != 0)
            snprintf(ans, ans_size, "error: MS '%s': expected 0..600000", argv[2]);
        else if (fd_mock_broker_set_rtt(m, (int32_t)a, (int)b) != 0)
            snprintf(ans, ans_size, "error: the mock cluster refused the rtt of broker %ld", a);
        else {
            fd_info("broker", "control: broker %ld rtt %ld ms", a, b);
            snprintf(ans, ans_size, "ok");
        }
    } else {
        snprintf(ans, ans_size, "error: unknown command '%.64s' (errors, down, up, rtt, quit)",
                 argv[0]);
    }
    return 0;
}

/* Serve control commands from stdin until quit, EOF or a signal. Main
 * thread only. */
static void broker_control_loop(fd_mock *m)
{
    char buf[CTL_MAX_LINE + 1], ans[256];
    size_t len = 0;
    bool overlong = false, eof = false;
    while (!fd_cli_stop && !eof) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int n = poll(&pfd, 1, 100);
        if (n < 0 && errno != EINTR) {
            fd_err("broker", "control: poll: %s", strerror(errno));
            return;
        }
        if (n <= 0)
            continue;
        ssize_t got = read(STDIN_FILENO, buf + len, CTL_MAX_LINE - len);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            fd_err("broker", "control: read: %s", strerror(errno));
            return;
        }
        if (got == 0) {
            eof = true;
            if (len == 0 || overlong)
                break;
            buf[len++] = '\n'; /* a last line without newline is still a command */
        }
        len += (size_t)got;
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
            if (buf[i] != '\n')
                continue;
            buf[i] = '\0';
            int quit = 0;
            if (overlong) {
                snprintf(ans, sizeof ans, "error: line longer than %d bytes", CTL_MAX_LINE - 1);
                overlong = false;
            } else {
                quit = broker_command(m, buf + start, ans, sizeof ans);
            }
            printf("%s\n", ans);
            fflush(stdout);
            start = i + 1;
            if (quit)
                return;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        if (len == CTL_MAX_LINE) { /* no newline in a full buffer: skip to the next one */
            overlong = true;
            len = 0;
        }
    }
    if (eof)
        fd_info("broker", "control: end of input");
}

int fd_cmd_broker(int argc, char **argv)
{
    static const struct option opts[] = {{"partitions", required_argument, 0, 'p'},
                                         {"brokers", required_argument, 0, 'b'},
                                         {"topic", required_argument, 0, 't'},
                                         {"control", no_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int partitions = 4, brokers = 1, n_topics = 0, control = 0;
    const char *topics[64];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:b:t:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'p':
            partitions = (int)strtol(optarg, &end, 10);
            if (*end || partitions < 1 || partitions > 1024) {
                fprintf(stderr, "funnelctl broker: --partitions '%s': expected 1..1024\n", optarg);
                return 2;
            }
            break;
        case 'b':
            brokers = (int)strtol(optarg, &end, 10);
            if (*end || brokers < 1 || brokers > 16) {
                fprintf(stderr, "funnelctl broker: --brokers '%s': expected 1..16\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (n_topics == 64) {
                fprintf(stderr, "funnelctl broker: at most 64 --topic options\n");
                return 2;
            }
            topics[n_topics++] = optarg;
            break;
        case 'c':
            control = 1;
            break;
        case 'h':
            broker_usage(stdout);
            return 0;
        default:
            broker_usage(stderr);
            return 2;
        }
    }
    if (n_topics == 0) {
        topics[n_topics++] = "events";
        topics[n_topics++] = "events.dlq";
        topics[n_topics++] = "churn-alerts";
        topics[n_topics++] = "funnel-metrics";
    }
    char err[512];
    fd_mock *m = fd_mock_new(brokers, topics, n_topics, partitions, err, sizeof err);
    if (!m) {
        fprintf(stderr, "funnelctl broker: %s\n", err);
        return 1;
    }
    printf("%s\n", fd_mock_bootstraps(m));
    fflush(stdout);
    fd_info("broker", "mock cluster up at %s (%d broker(s), %d partition(s) per topic)",
            fd_mock_bootstraps(m), brokers, partitions);

    fd_cli_catch_stop();
    if (control) {
        signal(SIGPIPE, SIG_IGN); /* a reader that went away is not a reason to die */
        broker_control_loop(m);
    } else {
        while (!fd_cli_stop)
            usleep(100 * 1000);
    }
    fd_info("broker", "stopping");
    fd_mock_destroy(m);
    return 0;
}
