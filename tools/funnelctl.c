/*
 * funnelctl - the operator's and tester's tool: synthetic data, a standalone
 * Kafka mock broker, the benchmark, users' feature vectors from Redis, the
 * replay of real datasets, eval, and (in later issues) live views.
 */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: funnelctl COMMAND [OPTIONS]\n"
        "\n"
        "commands:\n"
        "  gen       write a synthetic clickstream to Kafka or a file, with ground truth\n"
        "  replay    produce a dataset (MovieLens, Taobao, REES46, JSON) to Kafka in time order\n"
        "  broker    run a standalone Kafka mock cluster on loopback until SIGTERM\n"
        "  bench     funneld end to end vs a plain consumer and kcat, and the core alone\n"
        "  features  users' feature vectors as funneld stored them in Redis\n"
        "  user      a user's features, churn risk and recommendations with scores\n"
        "  funnel    the funnel of the last windows: a table and a bar chart\n"
        "  top-risk  the users with the highest churn risk\n"
        "  model     the churn model's weights and quality, the recommendation model's\n"
        "  status    a running funneld's readiness, rate, lag and dead letters\n"
        "  bench-model  the churn model's learning and scoring speed on one core\n"
        "  bench-codec  decoding speed per format, direct decoders beside the libraries\n"
        "  eval      the models' prequential quality over a stream, beside their peers\n"
        "\n"
        "funnelctl COMMAND --help shows a command's options.\n");
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1); /* as funneld (daemon/main.c): one thread per worker */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "gen"))
        return fd_cmd_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "replay"))
        return fd_cmd_replay(argc - 1, argv + 1);
    if (!strcmp(cmd, "broker"))
        return fd_cmd_broker(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return fd_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-model"))
        return fd_cmd_bench_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-codec"))
        return fd_cmd_bench_codec(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return fd_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "features"))
        return fd_cmd_features(argc - 1, argv + 1);
    if (!strcmp(cmd, "user"))
        return fd_cmd_user(argc - 1, argv + 1);
    if (!strcmp(cmd, "funnel"))
        return fd_cmd_funnel(argc - 1, argv + 1);
    if (!strcmp(cmd, "top-risk"))
        return fd_cmd_top_risk(argc - 1, argv + 1);
    if (!strcmp(cmd, "model"))
        return fd_cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "status"))
        return fd_cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("funnelctl %s\n", FD_VERSION);
        return 0;
    }
    fprintf(stderr, "funnelctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
