/*
 * cmd_bench_model.c - `funnelctl bench-model`: the churn model's speed on
 * one core, without Kafka or Redis.
 *
 * Why it is built this way:
 *
 * - Learning: fd_lr_learn (transform, standardiser, score and one FTRL
 *   step) on 64 dense synthetic inputs shaped like fd_feat_eval's (decayed
 *   counts, recency seconds up to ~1e6, revenue, -1 for "never"). The
 *   examples are generated before the clock starts, into a pool of at most
 *   POOL examples (2 MiB: the timed loop measures the model, not the memory
 *   bus) that the loop cycles through; labels come from a hidden logistic
 *   model of the inputs, so the model really learns. Each pass starts from
 *   a fresh model; the best of --reps passes is reported (the others are
 *   noise from the machine, not the code).
 *
 * - Vowpal Wabbit's published figure (~84 ns per example with 8 features)
 *   is printed beside ours for scale, with the per-input figures of both:
 *   the work grows with the number of inputs.
 *
 * - Batch scoring of --batch examples from the standardised matrix X
 *   (rows of fd_lr_transform's x): a plain loop of dot products (what
 *   fd_lr_predict does after the transform) against OpenBLAS cblas_dgemv
 *   (y = X w). OpenBLAS runs single-threaded here so both figures are one
 *   core's; the output says which one wins. The transform is timed apart.
 *
 * - The recommendation model (tools/bench_mf.c): one fd_mf_learn with
 *   k = 32 and 4 negatives, and a top-10 over 100,000 items with OpenBLAS
 *   cblas_sgemv against a plain loop.
 *
 * - --json prints one object on stdout (the table then goes to stderr).
 */
#include <cblas.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/lr.h"
#include "tools/bench_mf.h"
#include "tools/cli.h"
#include "tools/commands.h"

#define PROG    "funnelctl bench-model"
#define NFEAT   64 /* default inputs (FD_LR_MAX_FEAT); funneld's churn model has 35 */
#define POOL    4096
#define VW_NS   84.0 /* Vowpal Wabbit, published: ns per example, 8 features */
#define VW_FEAT 8

typedef struct bm_args {
    uint64_t examples, batch, reps, seed, inputs;
    bool json;
} bm_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: funnelctl bench-model [--examples N] [--batch N] [--reps N] [--seed N]\n"
            "                             [--inputs N] [--json]\n"
            "\n"
            "Times the churn model (models/lr.h) on one core with %d (--inputs) dense\n"
            "synthetic inputs: fd_lr_learn per example (beside Vowpal Wabbit's published\n"
            "~84 ns per example with 8 features), and scoring a batch from the\n"
            "standardised matrix with a plain loop vs OpenBLAS cblas_dgemv.\n"
            "\n"
            "  --examples N  examples learned per pass (default 2000000)\n"
            "  --batch N     examples in the scoring batch (default 4096)\n"
            "  --reps N      passes; the best is reported (default 3)\n"
            "  --seed N      synthetic data seed (default 1)\n"
            "  --inputs N    dense inputs, 1..%d (default %d; funneld's churn model has\n"
            "                35 with the default four half-lives)\n"
            "  --json        print one JSON object on stdout (the table goes to stderr)\n",
            NFEAT, FD_LR_MAX_FEAT, NFEAT);
}

enum { O_EXAMPLES = 256, O_BATCH, O_REPS, O_SEED, O_INPUTS, O_JSON };

static int parse_args(int argc, char **argv, bm_args *a)
{
    static const struct option opts[] = {
        {"examples", required_argument, 0, O_EXAMPLES},
        {"batch", required_argument, 0, O_BATCH},
        {"reps", required_argument, 0, O_REPS},
        {"seed", required_argument, 0, O_SEED},
        {"inputs", required_argument, 0, O_INPUTS},
        {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    a->examples = 2000000;
    a->batch = 4096;
    a->reps = 3;
    a->seed = 1;
    a->inputs = NFEAT;
    a->json = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        const char *opt = argv[optind - 1];
        switch (c) {
        case 'h':
            return 1;
        case O_EXAMPLES:
            if (fd_cli_parse_u64(PROG, "--examples", optarg, 1, (uint64_t)1 << 36, &a->examples))
                return -1;
            break;
        case O_BATCH:
            if (fd_cli_parse_u64(PROG, "--batch", optarg, 1, 1 << 20, &a->batch))
                return -1;
            break;
        case O_REPS:
            if (fd_cli_parse_u64(PROG, "--reps", optarg, 1, 100, &a->reps))
                return -1;
            break;
        case O_SEED:
            if (fd_cli_parse_u64(PROG, "--seed", optarg, 0, UINT64_MAX, &a->seed))
                return -1;
            break;
        case O_INPUTS:
            if (fd_cli_parse_u64(PROG, "--inputs", optarg, 1, FD_LR_MAX_FEAT, &a->inputs))
                return -1;
            break;
        case O_JSON:
            a->json = true;
            break;
        case ':':
            fprintf(stderr, PROG ": %s needs a value\n", opt);
            return -1;
        default:
            fprintf(stderr, PROG ": unknown option '%s'\n", opt);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* splitmix64: a seeded stream, the same on every machine */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double next_unit(uint64_t *s)
{
    return (double)(next_u64(s) >> 11) * 0x1p-53;
}

/* n examples of nf (>= 1) inputs shaped like fd_feat_eval's, labels from a
 * hidden logistic model of inputs 0, 1 and 3 (a missing one taken as
 * neutral: 0 for 1, 0.5 for 3). */
static void gen_pool(uint64_t seed, size_t n, int nf, double *raw, int *label)
{
    uint64_t s = seed;
    for (size_t e = 0; e < n; e++) {
        double *r = raw + e * (size_t)nf;
        double u0 = next_unit(&s);
        for (int i = 0; i < nf; i++) {
            double u = next_unit(&s);
            switch (i % 4) {
            case 0: /* decayed count, heavy tail */
                r[i] = floor(-log(1.0 - u) * 5.0 * (1.0 + u0)) * (u0 < 0.1 ? 0 : 1);
                break;
            case 1: /* recency seconds, up to ~1e6; -1 = never */
                r[i] = u < 0.05 ? -1.0 : u * u * 1.2e6;
                break;
            case 2: /* revenue */
                r[i] = u < 0.5 ? 0.0 : exp(8.0 * u);
                break;
            default: /* rate or ratio */
                r[i] = u;
                break;
            }
        }
        /* churn more likely with long recency, less with many events */
        double r0 = r[0], r1 = nf > 1 ? r[1] : 0, r3 = nf > 3 ? r[3] : 0.5;
        double m =
            1.5 * log2(2.0 + r1) / 20.0 - 0.8 * log2(1.0 + r0) / 4.0 + 0.3 * (r3 - 0.5) - 1.0;
        double p = 1.0 / (1.0 + exp(-4.0 * m));
        label[e] = next_unit(&s) < p;
    }
}

typedef struct bm_result {
    double learn_ns, predict_ns, transform_ns, loop_ns, blas_ns;
    double mean_p; /* of the last learning pass: proves the work was done */
    double check;  /* |loop - blas| largest difference of the margins */
    fd_bench_mf_result mf;
} bm_result;

static int run(const bm_args *a, bm_result *res)
{
    size_t pool = a->examples < POOL ? (size_t)a->examples : POOL;
    size_t nb = (size_t)a->batch;
    int nf = (int)a->inputs;
    size_t stride = (size_t)nf;
    double *raw = malloc(pool * stride * sizeof *raw);
    int *label = malloc(pool * sizeof *label);
    double *braw = malloc(nb * stride * sizeof *braw);
    int *blabel = malloc(nb * sizeof *blabel);
    double *X = malloc(nb * stride * sizeof *X);
    double *y1 = malloc(nb * sizeof *y1), *y2 = malloc(nb * sizeof *y2);
    fd_lr *m = malloc(sizeof *m);
    int rc = -1;
    if (!raw || !label || !braw || !blabel || !X || !y1 || !y2 || !m) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    gen_pool(a->seed, pool, nf, raw, label);
    gen_pool(a->seed + 1, nb, nf, braw, blabel);
    fd_lr_params p;
    fd_lr_params_default(&p, nf);

    /* learning */
    res->learn_ns = INFINITY;
    for (uint64_t r = 0; r < a->reps; r++) {
        fd_lr_init(m, &p);
        double sp = 0;
        size_t e = 0;
        double t0 = fd_cli_now_s();
        for (uint64_t k = 0; k < a->examples; k++) {
            sp += fd_lr_learn(m, &p, raw + e * stride, label[e]);
            if (++e == pool)
                e = 0;
        }
        double ns = (fd_cli_now_s() - t0) * 1e9 / (double)a->examples;
        if (ns < res->learn_ns)
            res->learn_ns = ns;
        res->mean_p = sp / (double)a->examples;
    }

    /* scoring with the trained model: enough batches for ~0.1 s a figure */
    uint64_t passes = 1 + 20000000 / (nb * stride);
    double t0 = fd_cli_now_s();
    double acc = 0;
    for (uint64_t r = 0; r < passes; r++)
        for (size_t e = 0; e < nb; e++)
            acc += fd_lr_predict(m, braw + e * stride);
    res->predict_ns = (fd_cli_now_s() - t0) * 1e9 / (double)(passes * nb);

    t0 = fd_cli_now_s();
    for (uint64_t r = 0; r < passes; r++)
        for (size_t e = 0; e < nb; e++)
            fd_lr_transform(m, braw + e * stride, X + e * stride);
    res->transform_ns = (fd_cli_now_s() - t0) * 1e9 / (double)(passes * nb);

    const double *w = m->w;
    double bias = m->w[FD_LR_MAX_FEAT];
    t0 = fd_cli_now_s();
    for (uint64_t r = 0; r < passes; r++) {
        for (size_t e = 0; e < nb; e++) {
            const double *x = X + e * stride;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int i = 0;
            for (; i + 4 <= nf; i += 4) {
                s0 += w[i] * x[i];
                s1 += w[i + 1] * x[i + 1];
                s2 += w[i + 2] * x[i + 2];
                s3 += w[i + 3] * x[i + 3];
            }
            for (; i < nf; i++)
                s0 += w[i] * x[i];
            y1[e] = (s0 + s1) + (s2 + s3) + bias;
        }
        acc += y1[r % nb];
    }
    res->loop_ns = (fd_cli_now_s() - t0) * 1e9 / (double)(passes * nb);

    openblas_set_num_threads(1);
    t0 = fd_cli_now_s();
    for (uint64_t r = 0; r < passes; r++) {
        for (size_t e = 0; e < nb; e++)
            y2[e] = bias;
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)nb, nf, 1.0, X, nf, w, 1, 1.0, y2, 1);
        acc += y2[r % nb];
    }
    res->blas_ns = (fd_cli_now_s() - t0) * 1e9 / (double)(passes * nb);
    res->check = 0;
    for (size_t e = 0; e < nb; e++)
        if (fabs(y1[e] - y2[e]) > res->check)
            res->check = fabs(y1[e] - y2[e]);
    if (!isfinite(acc))
        fprintf(stderr, PROG ": warning: scores are not finite\n");
    rc = 0;
out:
    free(raw);
    free(label);
    free(braw);
    free(blabel);
    free(X);
    free(y1);
    free(y2);
    free(m);
    return rc;
}

static void print_table(FILE *out, const bm_args *a, const bm_result *r)
{
    fprintf(out, "bench-model: %d dense inputs, %" PRIu64 " examples, best of %" PRIu64 "\n",
            (int)a->inputs, a->examples, a->reps);
    fprintf(out, "  learn (fd_lr_learn)          %8.1f ns/example  %6.2f ns/input\n", r->learn_ns,
            r->learn_ns / (double)(a->inputs + 1));
    fprintf(out, "  Vowpal Wabbit (published)    %8.1f ns/example  %6.2f ns/input (%d inputs)\n",
            VW_NS, VW_NS / (VW_FEAT + 1), VW_FEAT);
    fprintf(out, "  predict (fd_lr_predict)      %8.1f ns/example\n", r->predict_ns);
    fprintf(out, "  transform (fd_lr_transform)  %8.1f ns/example\n", r->transform_ns);
    fprintf(out, "  batch of %" PRIu64 " from the standardised matrix:\n", a->batch);
    fprintf(out, "    plain loop                 %8.2f ns/example\n", r->loop_ns);
    fprintf(out, "    cblas_dgemv (1 thread)     %8.2f ns/example\n", r->blas_ns);
    fprintf(out, "    faster: %s (%.2fx)\n",
            r->loop_ns <= r->blas_ns ? "plain loop" : "cblas_dgemv",
            r->loop_ns <= r->blas_ns ? r->blas_ns / r->loop_ns : r->loop_ns / r->blas_ns);
    fprintf(out, "  mean prequential p %.4f; loop vs dgemv margins differ by %.3g at most\n",
            r->mean_p, r->check);
    fprintf(out, "recommendations (models/mf.h), k = %d:\n", r->mf.k);
    fprintf(out, "  update (fd_mf_learn, %d negatives) %8.1f ns  (target < 1000: %s)\n",
            r->mf.negatives, r->mf.update_ns, r->mf.update_ns < 1000 ? "met" : "NOT met");
    fprintf(out, "  top-10 of %d items, cblas_sgemv %8.3f ms  (target < 2: %s)\n", r->mf.items,
            r->mf.top_blas_ms, r->mf.top_blas_ms < 2 ? "met" : "NOT met");
    fprintf(out, "  top-10 of %d items, plain loop  %8.3f ms  (%s; same items: %s)\n", r->mf.items,
            r->mf.top_loop_ms,
            r->mf.top_blas_ms <= r->mf.top_loop_ms ? "cblas_sgemv faster" : "plain loop faster",
            r->mf.top_same ? "yes" : "not always");
    fprintf(out, "  of which the selection (fd_mf_top_of) %8.3f ms\n", r->mf.top_select_ms);
    fprintf(out, "  refresh, top 14 of %d users over %d items, per user:\n", r->mf.refresh_users,
            r->mf.refresh_items);
    fprintf(out, "    one cblas_sgemv each             %8.3f us\n", r->mf.refresh_sgemv_us);
    fprintf(out, "    one cblas_sgemm for the batch    %8.3f us  (%.2fx; the shards' way)\n",
            r->mf.refresh_sgemm_us, r->mf.refresh_sgemv_us / r->mf.refresh_sgemm_us);
    fprintf(out, "    of which the selection           %8.3f us\n", r->mf.refresh_select_us);
    fprintf(out, "  published pure-Python ISGD: 1.3 ms per update\n");
}

static void print_json(const bm_args *a, const bm_result *r)
{
    printf("{\"inputs\": %d, \"examples\": %" PRIu64 ", \"reps\": %" PRIu64 ", \"batch\": %" PRIu64
           ", \"learn_ns_per_example\": %.3f, \"vw_published_ns_per_example\": %.1f, "
           "\"vw_published_inputs\": %d, \"predict_ns_per_example\": %.3f, "
           "\"transform_ns_per_example\": %.3f, \"batch_loop_ns_per_example\": %.3f, "
           "\"batch_dgemv_ns_per_example\": %.3f, \"batch_faster\": \"%s\", "
           "\"mean_p\": %.6f, \"mf_k\": %d, \"mf_negatives\": %d, "
           "\"mf_update_ns\": %.3f, \"mf_items\": %d, \"mf_top10_sgemv_ms\": %.4f, "
           "\"mf_top10_loop_ms\": %.4f, \"mf_top10_select_ms\": %.4f, \"mf_top10_same\": %s, "
           "\"mf_refresh_items\": %d, \"mf_refresh_sgemv_us\": %.4f, "
           "\"mf_refresh_sgemm_us\": %.4f, \"mf_refresh_select_us\": %.4f}\n",
           (int)a->inputs, a->examples, a->reps, a->batch, r->learn_ns, VW_NS, VW_FEAT,
           r->predict_ns, r->transform_ns, r->loop_ns, r->blas_ns,
           r->loop_ns <= r->blas_ns ? "loop" : "dgemv", r->mean_p, r->mf.k, r->mf.negatives,
           r->mf.update_ns, r->mf.items, r->mf.top_blas_ms, r->mf.top_loop_ms, r->mf.top_select_ms,
           r->mf.top_same ? "true" : "false", r->mf.refresh_items, r->mf.refresh_sgemv_us,
           r->mf.refresh_sgemm_us, r->mf.refresh_select_us);
}

int fd_cmd_bench_model(int argc, char **argv)
{
    bm_args a;
    int d = fd_cli_args_done(parse_args(argc, argv, &a), PROG, usage);
    if (d >= 0)
        return d;
    bm_result r;
    memset(&r, 0, sizeof r);
    if (run(&a, &r) != 0)
        return 1;
    if (fd_bench_mf(a.examples, a.reps, a.seed, &r.mf) != 0)
        return 1;
    if (a.json) {
        print_json(&a, &r);
        print_table(stderr, &a, &r);
    } else {
        print_table(stdout, &a, &r);
    }
    fflush(stdout);
    return 0;
}
