/*
 * cmd_broker.c - `funnelctl broker`: a standalone Kafka mock cluster on
 * loopback. Prints the bootstrap address as the first line of stdout, then
 * stays up until SIGTERM/SIGINT. Tests, demos and benchmarks use it as the
 * broker; kcat and confluent_kafka talk to it over TCP.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "pipeline/kafka_mock.h"
#include "tools/commands.h"

static volatile sig_atomic_t broker_stop;

static void on_signal(int sig)
{
    (void)sig;
    broker_stop = 1;
}

static void broker_usage(FILE *out)
{
    fprintf(out, "usage: funnelctl broker [--partitions N] [--brokers N] [--topic NAME]...\n"
                 "\n"
                 "Runs a Kafka mock cluster (librdkafka) on 127.0.0.1 until SIGTERM or SIGINT.\n"
                 "The first line of stdout is the bootstrap address.\n"
                 "\n"
                 "  --partitions N  partitions of each topic (default 4, 1..1024)\n"
                 "  --brokers N     number of brokers (default 1, 1..16)\n"
                 "  --topic NAME    topic to create (repeatable; default: events, events.dlq,\n"
                 "                  churn-alerts, funnel-metrics)\n");
}

int fd_cmd_broker(int argc, char **argv)
{
    static const struct option opts[] = {{"partitions", required_argument, 0, 'p'},
                                         {"brokers", required_argument, 0, 'b'},
                                         {"topic", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int partitions = 4, brokers = 1, n_topics = 0;
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

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!broker_stop)
        usleep(100 * 1000);
    fd_info("broker", "stopping");
    fd_mock_destroy(m);
    return 0;
}
