/*
 * cmd_features.c - `funnelctl features`: the feature vector of users as a
 * person or a script reads it, from what funneld stored in Redis.
 *
 * Why it is built this way:
 *
 * - It reads, it never writes. Each user is one GET of the user record
 *   `PREFIX user:<id>` (features.h), parsed with fd_feat_record_parse and
 *   evaluated with fd_feat_eval: the same code funneld resumes a user
 *   with, so the tool and the daemon cannot disagree on the vector. A
 *   record is one value, so a user is always one consistent state even
 *   while funneld writes. The GETs are pipelined in batches, so a long
 *   list of users costs a few round trips.
 *
 * - The vector's layout depends on features.half_lives (names and decays)
 *   and session.gap (session_stage), so the tool takes them from funneld's
 *   config (-c) or funneld's defaults, with overrides. A half-life that
 *   the record lacks (its header lists those funneld wrote with) is an
 *   error for that user, never a vector of silent zeros.
 *
 * - --at before the user's last event cannot be honoured (the stored state
 *   is as of last_ts and cannot be un-decayed); fd_feat_eval takes last_ts,
 *   and the header/"at" shows the time the values are really as of.
 *
 * - Text values are the shortest decimal that reads back as the same double;
 *   JSON values are %.17g. Both parse to the same doubles. Feature names
 *   are plain ASCII; the user id goes through jansson (escapes, UTF-8).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/config.h"
#include "daemon/log.h"
#include "features/features.h"
#include "models/churn.h"
#include "pipeline/codec.h"
#include "pipeline/redis.h"
#include "tools/cli.h"
#include "tools/commands.h"

/* "funnelctl features", or "funnelctl user" (the features with the
 * models' view of the user: risk and recommendations) */
static const char *prog = "funnelctl features";
static bool user_mode;

__attribute__((format(printf, 1, 2))) static void perr(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
#define BATCH       64  /* users per pipelined round trip */
#define MAX_USER_ID 256 /* funneld's user ids: 1 to 256 bytes */

typedef struct feat_args {
    const char *config, *redis, *prefix, *half_lives, *at;
    int64_t gap_ms; /* -1 = from the config */
    int64_t at_ms;  /* -1 = each user's last_ts */
    bool json, names;
    char **users;
    int n_users;
} feat_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: funnelctl features [-c CONFIG] [--redis URL] [--prefix P]\n"
            "                          [--half-lives LIST] [--session-gap DUR] [--at TIME]\n"
            "                          [--json] USER_ID...\n"
            "       funnelctl features [-c CONFIG] [--half-lives LIST] [--json] --names\n"
            "\n"
            "Reads each user's hash PREFIX user:<USER_ID> from Redis and prints the\n"
            "feature vector (docs/FEATURES.md) evaluated at TIME: a line\n"
            "'user <id> at <ms>' then one 'name value' line per feature, a blank line\n"
            "between users. Nothing is written to Redis.\n"
            "\n"
            "  -c, --config FILE     funneld's config: redis.url, redis.key_prefix, the\n"
            "                        password options, features.half_lives, session.gap\n"
            "                        (default: funneld's defaults)\n"
            "  --redis URL           redis://host:port[/db] or unix:///path[?db=N]\n"
            "  --prefix P            key prefix (redis.key_prefix, default fd:v2:)\n"
            "  --half-lives LIST     features.half_lives, comma-separated (e.g. 1h,1d,7d,30d)\n"
            "  --session-gap DUR     session.gap: N[ms|s|m|h|d] (e.g. 30m)\n"
            "  --at TIME             evaluate at TIME: epoch ms, RFC 3339 like\n"
            "                        2026-01-01T12:00:00Z, or now (wall clock); default:\n"
            "                        each user's last event (last_ts). A TIME before\n"
            "                        last_ts is taken as last_ts.\n"
            "  --json                one JSON object per user per line: {\"user\", \"at\",\n"
            "                        \"version\", \"features\": {name: value, ...}}\n"
            "  --names               print the vector's names in order, one per line (with\n"
            "                        --json: one JSON array); needs no Redis and no USER_ID\n"
            "  -h, --help            this help\n"
            "\n"
            "Exit status: 0 ok; 1 runtime error (a user not found, Redis unreachable, a\n"
            "config file that does not load); 2 usage error.\n");
}

static void user_usage(FILE *out)
{
    fprintf(out,
            "usage: funnelctl user [-c CONFIG] [--redis URL] [--prefix P] [--at TIME]\n"
            "                      [--json] USER_ID...\n"
            "\n"
            "What funneld knows of each user, from Redis: the feature vector (as\n"
            "funnelctl features prints it), the churn model's latest risk and episode\n"
            "(the user record's churn part, docs/CHURN.md) and the cached\n"
            "recommendations with their scores (PREFIX recs:<USER_ID>, JSON, docs/RECS.md),\n"
            "best first: 'churn_risk R', 'churn_episode open|closed', then one\n"
            "'recommendation ITEM SCORE' line each. Nothing is written to Redis.\n"
            "\n"
            "  -c, --config FILE     funneld's config (redis.url, redis.key_prefix, ...)\n"
            "  --redis URL           redis://host:port[/db] or unix:///path[?db=N]\n"
            "  --prefix P            key prefix (redis.key_prefix, default fd:v2:)\n"
            "  --half-lives LIST, --session-gap DUR, --at TIME: as funnelctl features\n"
            "  --json                one JSON object per user per line: funnelctl features'\n"
            "                        object plus \"churn\": {\"risk\", \"episode_open\"} (null\n"
            "                        when the model never scored the user) and\n"
            "                        \"recommendations\": [{\"item\", \"score\"}, ...]\n"
            "  -h, --help            this help\n"
            "\n"
            "Exit status: 0 ok; 1 runtime error (a user not found, Redis unreachable, a\n"
            "config file that does not load); 2 usage error.\n");
}

static int bad_value(const char *opt, const char *val, const char *expect)
{
    perr("%s: invalid value '%s' (expected %s)\n", opt, val, expect);
    return -1;
}

static int bad_value_why(const char *opt, const char *val, const char *why)
{
    perr("%s: invalid value '%s': %s\n", opt, val, why);
    return -1;
}

/* session.gap's spelling and bounds: N (ms) or N<ms|s|m|h|d>, 1s..7d. */
static int parse_gap(const char *opt, const char *s, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t mul;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *expect = "a duration from 1s to 7d like 30m, 1h or 90000 (ms)";
    char *end;
    if (!(*s >= '0' && *s <= '9'))
        return bad_value(opt, s, expect);
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return bad_value(opt, s, expect);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (v > (unsigned long long)(7 * 86400000LL / units[i].mul))
            return bad_value(opt, s, expect);
        int64_t ms = (int64_t)v * units[i].mul;
        if (ms < 1000)
            return bad_value(opt, s, expect);
        *out = ms;
        return 0;
    }
    return bad_value(opt, s, expect);
}

/* Epoch ms, RFC 3339 or "now". */
static int parse_at(const char *opt, const char *s, int64_t *out)
{
    const char *expect = "epoch milliseconds, RFC 3339 like 2026-01-01T00:00:00Z, or now";
    if (!strcmp(s, "now")) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        *out = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        return 0;
    }
    if (*s >= '0' && *s <= '9' && strspn(s, "0123456789") == strlen(s)) {
        errno = 0;
        unsigned long long v = strtoull(s, NULL, 10);
        if (errno || v > (unsigned long long)INT64_MAX)
            return bad_value(opt, s, expect);
        *out = (int64_t)v;
        return 0;
    }
    const char *why = NULL;
    if (fd_rfc3339_parse(s, strlen(s), out, &why) != 0 || *out < 0) {
        if (*s >= '0' && *s <= '9') /* meant as a date: say what is wrong with it */
            perr("%s: invalid value '%s' (expected %s): RFC 3339: %s\n", opt, s, expect,
                 why ? why : "before 1970");
        else
            bad_value(opt, s, expect);
        return -1;
    }
    return 0;
}

enum { O_REDIS = 1000, O_PREFIX, O_HALF_LIVES, O_GAP, O_AT, O_JSON, O_NAMES };

/* 0, 1 for --help, or -1 after printing the error. */
static int parse_args(int argc, char **argv, feat_args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},
        {"redis", required_argument, 0, O_REDIS},
        {"prefix", required_argument, 0, O_PREFIX},
        {"half-lives", required_argument, 0, O_HALF_LIVES},
        {"session-gap", required_argument, 0, O_GAP},
        {"at", required_argument, 0, O_AT},
        {"json", no_argument, 0, O_JSON},
        {"names", no_argument, 0, O_NAMES},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->gap_ms = -1;
    a->at_ms = -1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hc:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            return 1;
        case 'c':
            a->config = optarg;
            break;
        case O_REDIS: {
            char why[256];
            if (fd_config_parse_redis_url(optarg, NULL, why, sizeof why) != 0)
                return bad_value_why("--redis", optarg, why);
            a->redis = optarg;
            break;
        }
        case O_PREFIX:
            a->prefix = optarg;
            break;
        case O_HALF_LIVES: {
            int64_t hl[4];
            char why[256];
            fd_config probe;
            memset(&probe, 0, sizeof probe);
            probe.features_half_lives = optarg;
            if (fd_config_half_lives(&probe, hl, why, sizeof why) < 0)
                return bad_value_why("--half-lives", optarg, why);
            a->half_lives = optarg;
            break;
        }
        case O_GAP:
            if (parse_gap("--session-gap", optarg, &a->gap_ms) < 0)
                return -1;
            break;
        case O_AT:
            if (parse_at("--at", optarg, &a->at_ms) < 0)
                return -1;
            a->at = optarg;
            break;
        case O_JSON:
            a->json = true;
            break;
        case O_NAMES:
            a->names = true;
            break;
        case ':':
            perr("%s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            perr("unknown option '%s'\n", argv[optind - 1]);
            return -1;
        }
    }
    a->users = argv + optind;
    a->n_users = argc - optind;
    if (a->names && a->n_users) {
        perr("--names takes no USER_ID ('%s')\n", a->users[0]);
        return -1;
    }
    if (!a->names && !a->n_users) {
        perr("need at least one USER_ID (or --names)\n");
        return -1;
    }
    for (int i = 0; i < a->n_users; i++)
        if (!a->users[i][0]) {
            perr("an empty USER_ID (user ids are 1 to %d bytes)\n", MAX_USER_ID);
            return -1;
        }
    return 0;
}

/* The shortest "%.Ng" (N = 15..17) that reads back as v. */
static void fmt_value(char *buf, size_t n, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* Length of the valid UTF-8 sequence at p (left bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t left)
{
    size_t n;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0)
        n = 2, cp = p[0] & 0x1F;
    else if ((p[0] & 0xF0) == 0xE0)
        n = 3, cp = p[0] & 0x0F;
    else if ((p[0] & 0xF8) == 0xF0)
        n = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* s as a JSON string; bytes that are not UTF-8 become U+FFFD (user ids are
 * any bytes but NUL, JSON strings are Unicode). */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s);
    char *buf = malloc(len * 3 + 1), *o = buf;
    if (!buf)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_len((const unsigned char *)s + i, len - i);
        if (k) {
            memcpy(o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *o = '\0';
    j = json_string(buf);
    free(buf);
    return j;
}

static int print_names(const fd_feat_params *p, bool json)
{
    char buf[64];
    int n = fd_feat_count(p);
    if (!json) {
        for (int i = 0; i < n; i++)
            printf("%s\n", fd_feat_name(p, i, buf, sizeof buf));
        return 0;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_string(fd_feat_name(p, i, buf, sizeof buf)));
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!s) {
        perr("out of memory\n");
        return -1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

/* funnelctl user: the models' part of a user */
typedef struct user_extra {
    bool scored;  /* the record has the churn model's part */
    double risk;  /* its latest risk */
    bool open;    /* an episode is open */
    json_t *recs; /* PREFIX recs:<id>: [{"item", "score"}, ...], or NULL */
} user_extra;

static void print_extra_text(const user_extra *x)
{
    if (x->scored)
        printf("churn_risk %.4f\nchurn_episode %s\n", x->risk, x->open ? "open" : "closed");
    size_t i;
    json_t *r;
    json_array_foreach(x->recs, i, r)
    {
        char v[40];
        fmt_value(v, sizeof v, json_number_value(json_object_get(r, "score")));
        printf("recommendation %s %s\n", json_string_value(json_object_get(r, "item")), v);
    }
}

/* ,"churn":...,"recommendations":[...] */
static int print_extra_json(const user_extra *x)
{
    if (x->scored)
        printf(",\"churn\":{\"risk\":%.4f,\"episode_open\":%s}", x->risk,
               x->open ? "true" : "false");
    else
        fputs(",\"churn\":null", stdout);
    fputs(",\"recommendations\":[", stdout);
    size_t i;
    json_t *r;
    json_array_foreach(x->recs, i, r)
    {
        char *t = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!t)
            return -1;
        printf("%s%s", i ? "," : "", t);
        free(t);
    }
    fputs("]", stdout);
    return 0;
}

/* Print one user's vector (and x, for funnelctl user). Returns 0 or -1
 * (out of memory). */
static int print_user(const fd_feat_params *p, const char *id, int64_t at, const double *v,
                      bool json, bool first, const user_extra *x)
{
    char name[64];
    int n = fd_feat_count(p);
    if (!json) {
        char val[40];
        printf("%suser %s at %" PRId64 "\n", first ? "" : "\n", id, at);
        for (int i = 0; i < n; i++) {
            fmt_value(val, sizeof val, v[i]);
            printf("%s %s\n", fd_feat_name(p, i, name, sizeof name), val);
        }
        if (x)
            print_extra_text(x);
        return 0;
    }
    json_t *user = json_text(id);
    char *u = user ? json_dumps(user, JSON_ENCODE_ANY) : NULL;
    json_decref(user);
    if (!u) {
        perr("out of memory\n");
        return -1;
    }
    printf("{\"user\":%s,\"at\":%" PRId64 ",\"version\":%d,\"features\":{", u, at, FD_FEAT_VERSION);
    free(u);
    for (int i = 0; i < n; i++) {
        printf(i ? ",\"%s\":" : "\"%s\":", fd_feat_name(p, i, name, sizeof name));
        if (isfinite(v[i]))
            printf("%.17g", v[i]);
        else
            fputs("null", stdout);
    }
    fputs("}", stdout);
    if (x && print_extra_json(x) != 0) {
        perr("out of memory\n");
        return -1;
    }
    fputs("}\n", stdout);
    return 0;
}

typedef struct feat_run {
    const feat_args *a;
    const fd_feat_params *p;
    fd_redis *redis;
    const char *prefix;
    const char *hl_list; /* the half-lives in use, as given */
    char *key;
    int printed;
    int missing; /* users not found or not readable */
} feat_run;

/* One GET reply: print the user, or say why not. 0, or -1 to stop. */
static int one_user(feat_run *run, const char *id, const char *key, const redisReply *r,
                    const redisReply *recs)
{
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "WRONGTYPE", 9) == 0)
            perr("user '%s': key %s is not a funneld user record (%s)\n", id, key, r->str);
        else
            perr("user '%s': GET %s: %s\n", id, key, r->str);
        run->missing++;
        return 0;
    }
    if (r->type == REDIS_REPLY_NIL) {
        perr("user '%s' not found (no key %s)\n", id, key);
        run->missing++;
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING) {
        perr("user '%s': unexpected reply (type %d) to GET %s\n", id, r->type, key);
        run->missing++;
        return 0;
    }
    fd_feat f;
    unsigned missing_hl;
    char why[256];
    if (fd_feat_record_parse(run->p, &f, r->str, r->len, &missing_hl, why, sizeof why) != 0) {
        perr("user '%s': key %s: unreadable user record: %s\n", id, key, why);
        run->missing++;
        return 0;
    }
    if (missing_hl) {
        int i = 0;
        while (!(missing_hl & (1u << i)))
            i++;
        const char *sp = memchr(r->str + 3, ' ', r->len - 3);
        int hl_len = sp ? (int)(sp - (r->str + 3)) : 0;
        perr("user '%s': %s has no half-life %s (so no field click_%s): funneld wrote it "
             "with half-lives %.*s, not %s %s (give -c with funneld's config, or "
             "--half-lives)\n",
             id, key, run->p->hl_name[i], run->p->hl_name[i], hl_len, r->str + 3,
             run->a->half_lives ? "--half-lives" : "features.half_lives", run->hl_list);
        run->missing++;
        return 0;
    }
    int64_t at = run->a->at_ms < 0 ? f.last_ts : run->a->at_ms;
    if (at < f.last_ts)
        at = f.last_ts; /* what fd_feat_eval does: the values are as of last_ts */
    double v[FD_FEAT_MAX];
    fd_feat_eval(run->p, &f, at, v);
    user_extra x = {0}, *xp = NULL;
    if (user_mode) {
        xp = &x;
        fd_churn_user cu;
        size_t fl = fd_feat_record_len(r->str, r->len);
        const char *m = fl < r->len ? memmem(r->str + fl, r->len - fl, " m ", 3) : NULL;
        if (m) {
            const char *end = memmem(m, (size_t)(r->str + r->len - m), " f ", 3);
            size_t ml = (size_t)((end ? end : r->str + r->len) - m);
            if (fd_churn_user_parse(&cu, m, ml, why, sizeof why) == 0) {
                x.scored = true;
                x.risk = cu.risk_q / 65535.0;
                x.open = (cu.flags & FD_CU_PENDING) != 0;
            } else {
                perr("user '%s': key %s: the churn part of the record: %s\n", id, key, why);
            }
        }
        if (recs && recs->type == REDIS_REPLY_STRING) {
            json_error_t je;
            x.recs = json_loadb(recs->str, recs->len, 0, &je);
            bool ok = json_is_array(x.recs);
            size_t i;
            json_t *e;
            json_array_foreach(x.recs, i, e) ok = ok &&
                                                  json_is_string(json_object_get(e, "item")) &&
                                                  json_is_number(json_object_get(e, "score"));
            if (!ok) {
                perr("user '%s': its recommendations (%srecs:%s) are not a JSON list of "
                     "{\"item\", \"score\"}: %.80s\n",
                     id, run->prefix, id, recs->str);
                json_decref(x.recs);
                x.recs = NULL;
            }
        } else if (recs && recs->type == REDIS_REPLY_ERROR) {
            perr("user '%s': its recommendations: %s\n", id, recs->str);
        }
    }
    int prc = print_user(run->p, id, at, v, run->a->json, run->printed == 0, xp);
    json_decref(x.recs);
    if (prc < 0)
        return -1;
    run->printed++;
    return 0;
}

/* GET users[from..to) in one pipeline. 0, or -1 (runtime error, printed). */
static int read_batch(feat_run *run, int from, int to)
{
    char err[512];
    size_t plen = strlen(run->prefix);
    for (int u = from; u < to; u++) {
        const char *id = run->a->users[u];
        size_t idlen = strlen(id);
        memcpy(run->key, run->prefix, plen);
        memcpy(run->key + plen, "user:", 5);
        memcpy(run->key + plen + 5, id, idlen);
        const char *argv[2] = {"GET", run->key};
        size_t argvlen[2] = {3, plen + 5 + idlen};
        if (fd_redis_appendv(run->redis, 2, argv, argvlen) != 0) {
            perr("redis %s: not connected\n", fd_redis_url(run->redis));
            return -1;
        }
        if (user_mode) { /* the recs cache: PREFIX recs:<id> */
            memcpy(run->key + plen, "recs:", 5);
            const char *zv[2] = {"GET", run->key};
            size_t zl[2] = {3, plen + 5 + idlen};
            if (fd_redis_appendv(run->redis, 2, zv, zl) != 0) {
                perr("redis %s: not connected\n", fd_redis_url(run->redis));
                return -1;
            }
        }
    }
    redisReply *rep[2 * BATCH];
    size_t per = user_mode ? 2 : 1;
    if (fd_redis_read_replies(run->redis, rep, per * (size_t)(to - from), err, sizeof err) != 0) {
        perr("%s\n", err);
        return -1;
    }
    int rc = 0;
    for (int u = from; u < to; u++) {
        const char *id = run->a->users[u];
        size_t idlen = strlen(id);
        memcpy(run->key + plen, "user:", 5); /* the key again, NUL-terminated */
        memcpy(run->key + plen + 5, id, idlen + 1);
        size_t at = per * (size_t)(u - from);
        if (rc == 0 && one_user(run, id, run->key, rep[at], per == 2 ? rep[at + 1] : NULL) < 0)
            rc = -1;
        for (size_t i = 0; i < per; i++)
            freeReplyObject(rep[at + i]);
    }
    return rc;
}

int fd_cmd_user(int argc, char **argv)
{
    prog = "funnelctl user";
    user_mode = true;
    return fd_cmd_features(argc, argv);
}

int fd_cmd_features(int argc, char **argv)
{
    feat_args a;
    int done = fd_cli_args_done(parse_args(argc, argv, &a), prog, user_mode ? user_usage : usage);
    if (done >= 0)
        return done;

    int rc = 1;
    char err[1024];
    fd_config cfg;
    fd_redis *redis = NULL;
    feat_run run;
    memset(&run, 0, sizeof run);
    fd_config_defaults(&cfg);
    if (a.config && fd_config_load(&cfg, a.config, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }

    int64_t hl[4];
    char why[256];
    const char *hl_list = a.half_lives ? a.half_lives : cfg.features_half_lives;
    fd_config probe;
    memset(&probe, 0, sizeof probe);
    probe.features_half_lives = (char *)hl_list;
    int nh = fd_config_half_lives(&probe, hl, why, sizeof why);
    fd_feat_params p;
    if (nh < 0 || fd_feat_params_init(&p, hl, nh, a.gap_ms > 0 ? a.gap_ms : cfg.session_gap_ms, why,
                                      sizeof why) != 0) {
        perr("features: %s\n", why);
        goto out;
    }
    if (a.names) {
        rc = print_names(&p, a.json) < 0 ? 1 : 0;
        goto out;
    }

    /* hiredis writes with write(2); a closed stdout is noticed by ferror. */
    signal(SIGPIPE, SIG_IGN);
    int old_level = fd_log_get_level();
    fd_log_set_level(FD_LOG_ERROR); /* connect/retry notes: the errors below say it */
    fd_redis_opts ro = fd_redis_opts_from_config(&cfg);
    if (a.redis)
        ro.url = a.redis;
    redis = fd_redis_new(&ro, err, sizeof err);
    if (!redis) {
        perr("redis %s: %s\n", ro.url, err);
        fd_log_set_level(old_level);
        goto out;
    }
    if (fd_redis_ensure(redis, err, sizeof err) != 0) {
        perr("cannot reach Redis: %s\n", err);
        fd_log_set_level(old_level);
        goto out;
    }
    fd_log_set_level(old_level);

    run.a = &a;
    run.p = &p;
    run.redis = redis;
    run.prefix = a.prefix ? a.prefix : cfg.redis_key_prefix;
    run.hl_list = hl_list;
    size_t max_id = 0;
    for (int u = 0; u < a.n_users; u++)
        if (strlen(a.users[u]) > max_id)
            max_id = strlen(a.users[u]);
    run.key = malloc(strlen(run.prefix) + 5 + max_id + 1);
    if (!run.key) {
        perr("out of memory\n");
        goto out;
    }

    int status = 0;
    for (int u = 0; u < a.n_users && status == 0; u += BATCH) {
        int to = u + BATCH < a.n_users ? u + BATCH : a.n_users;
        status = read_batch(&run, u, to);
        if (fflush(stdout) != 0 || ferror(stdout))
            break;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE)
            perr("writing standard output: %s\n", strerror(errno));
        goto out;
    }
    if (status == 0 && run.missing == 0)
        rc = 0;
out:
    free(run.key);
    fd_redis_destroy(redis);
    fd_config_free(&cfg);
    return rc;
}
