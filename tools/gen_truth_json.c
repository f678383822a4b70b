/*
 * gen_truth_json.c - `funnelctl gen`: the truth and latent files, written
 * as streaming JSON into a temporary file that gen_publish() renames.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tools/gen.h"
#include "tools/gen_int.h"
#include "tools/gen_truth.h"

/* ---- truth ---------------------------------------------------------------- */

static int close_checked(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "funnelctl gen: writing %s failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void json_counts(FILE *f, const uint64_t *n)
{
    fprintf(f, "\"click\":%" PRIu64 ",\"cart\":%" PRIu64 ",\"purchase\":%" PRIu64, n[0], n[1],
            n[2]);
}

/* A JSON string (category names come from the command line). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_counters(FILE *f, const int64_t *c)
{
    for (int i = 0; i < FD_TRUTH__COUNTERS; i++)
        fprintf(f, "%s\"%s\":%" PRId64, i ? "," : "", fd_truth_counter_name(i), c[i]);
}

/* "windows" or "hours": start -> counters and distinct users per stage. */
static void json_windows(FILE *f, const fd_truth *tr, bool hours)
{
    static const char *const stage[4] = {"visit", "click", "cart", "purchase"};
    size_t n = hours ? fd_truth_n_hours(tr) : fd_truth_n_windows(tr);
    const char *sep = "\n";
    for (size_t i = 0; i < n; i++) {
        const fd_truth_window *w = hours ? fd_truth_hour_at(tr, i) : fd_truth_window_at(tr, i);
        fprintf(f, "%s\"%" PRId64 "\":{", sep, w->start_ms);
        json_counters(f, w->c);
        for (int s = 0; s < 4; s++)
            fprintf(f, ",\"users_%s\":%" PRIu64, stage[s], w->users[s]);
        fputc('}', f);
        sep = ",\n";
    }
}

/* The "funnel" object (see docs/man/funnelctl.1). */
static void json_funnel(FILE *f, const fd_truth *tr)
{
    const fd_truth_opts *o = fd_truth_get_opts(tr);
    fprintf(f,
            "\"funnel\":{\"window_ms\":%" PRId64 ",\"late_events\":%" PRIu64
            ",\"partitions\":%" PRIu32 ",\"session_gap_ms\":%" PRId64
            ",\"allowed_lateness_ms\":%" PRId64 ",\n\"windows\":{",
            o->window_ms, fd_truth_late_events(tr), o->partitions, o->session_gap_ms,
            o->allowed_lateness_ms);
    json_windows(f, tr, false);
    fputs("},\n\"hours\":{", f);
    json_windows(f, tr, true);
    fputs("},\n\"categories\":{", f);
    const char *sep = "\n";
    for (size_t i = 0; o->n_categories && i < fd_truth_n_windows(tr); i++) {
        fprintf(f, "%s\"%" PRId64 "\":{", sep, fd_truth_window_at(tr, i)->start_ms);
        const char *csep = "";
        for (size_t c = 0; c <= o->n_categories; c++) {
            const int64_t *v = fd_truth_window_cat(tr, i, c);
            bool any = false;
            for (int k = 0; k < FD_TRUTH__COUNTERS; k++)
                any |= v[k] != 0;
            if (!any)
                continue;
            fputs(csep, f);
            json_str(f, fd_truth_category_name(tr, c));
            fputs(":{", f);
            json_counters(f, v);
            fputc('}', f);
            csep = ",";
        }
        fputc('}', f);
        sep = ",\n";
    }
    fputs("}}", f);
}

/* Write the truth JSON to path + ".tmp"; the caller renames it. */
int gen_write_truth(const fd_gen *g, fd_truth *tr, const char *path)
{
    if (fd_truth_finish(tr) < 0) {
        fprintf(stderr, "funnelctl gen: --truth: out of memory\n");
        return -1;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "funnelctl gen: --truth %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    const fd_gen_opts *o = fd_gen_get_opts(g);
    fprintf(f, "{\"seed\":%" PRIu64 ",\"events\":%" PRIu64 ",\n\"users\":{", o->seed,
            fd_gen_emitted(g));
    const char *sep = "\n";
    for (uint32_t u = 0; u < o->users; u++) {
        const fd_gen_user_truth *t = fd_gen_user(g, u);
        if (!(t->n[0] | t->n[1] | t->n[2]))
            continue;
        fprintf(f, "%s\"u%" PRIu32 "\":{", sep, u + 1);
        json_counts(f, t->n);
        fprintf(f, ",\"first_ts\":%" PRId64 ",\"last_ts\":%" PRId64, t->first_ts, t->last_ts);
        char id[16];
        snprintf(id, sizeof id, "u%" PRIu32, u + 1);
        const fd_truth_user *tu = fd_truth_user_find(tr, id);
        if (tu)
            fprintf(f,
                    ",\"sessions\":%" PRIu64 ",\"revenue_cents\":%" PRId64
                    ",\"last_cart_ts\":%" PRId64 ",\"last_purchase_ts\":%" PRId64,
                    tu->sessions, tu->revenue_cents, tu->last_cart_ts, tu->last_purchase_ts);
        fputc('}', f);
        sep = ",\n";
    }
    fputs("},\n\"minutes\":{", f);
    int64_t w0;
    size_t nm = fd_gen_minutes(g, &w0);
    sep = "\n";
    for (size_t i = 0; i < nm; i++) {
        const fd_gen_minute_truth *m = fd_gen_minute(g, i);
        if (!(m->n[0] | m->n[1] | m->n[2]))
            continue;
        fprintf(f, "%s\"%" PRId64 "\":{", sep, w0 + (int64_t)i * 60000);
        json_counts(f, m->n);
        fprintf(f, ",\"revenue_cents\":%" PRId64 "}", m->revenue_cents);
        sep = ",\n";
    }
    fputs("},\n\"churn\":{", f);
    sep = "\n";
    for (uint32_t u = 0; u < o->users; u++) {
        const fd_gen_user_truth *t = fd_gen_user(g, u);
        int64_t c = fd_gen_churn_ts(g, u);
        if (c < 0 || !(t->n[0] | t->n[1] | t->n[2]))
            continue;
        fprintf(f, "%s\"u%" PRIu32 "\":%" PRId64, sep, u + 1, c);
        sep = ",\n";
    }
    fd_gen_minute_truth tot;
    fd_gen_totals(g, &tot);
    fputs("},\n\"totals\":{", f);
    json_counts(f, tot.n);
    fprintf(f, ",\"revenue_cents\":%" PRId64 "},\n", tot.revenue_cents);
    json_funnel(f, tr);
    fputs("}\n", f);
    return close_checked(f, tmp);
}

static void json_vec(FILE *f, const float *v)
{
    for (int d = 0; d < FD_GEN_DIM; d++)
        fprintf(f, "%s%.9g", d ? "," : "", (double)v[d]);
}

/* Latent model as JSON lines, one user or item per line. */
int gen_write_latent(const fd_gen *g, const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "funnelctl gen: --truth-latent %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    const fd_gen_opts *o = fd_gen_get_opts(g);
    for (uint32_t u = 0; u < o->users; u++) {
        fprintf(f, "{\"user\":\"u%" PRIu32 "\",\"churn_ts\":%" PRId64 ",\"vec\":[", u + 1,
                fd_gen_churn_ts(g, u));
        json_vec(f, fd_gen_user_vec(g, u));
        fputs("]}\n", f);
    }
    for (uint32_t i = 0; i < o->items; i++) {
        fprintf(f,
                "{\"item\":\"i%" PRIu32 "\",\"category\":\"c%d\",\"price_cents\":%" PRId64
                ",\"bias\":%.9g,\"vec\":[",
                i + 1, fd_gen_item_category(g, i) + 1, fd_gen_item_price_cents(g, i),
                (double)fd_gen_item_bias(g, i));
        json_vec(f, fd_gen_item_vec(g, i));
        fputs("]}\n", f);
    }
    return close_checked(f, tmp);
}

int gen_publish(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "funnelctl gen: rename %s -> %s: %s\n", tmp, path, strerror(errno));
        return -1;
    }
    return 0;
}
