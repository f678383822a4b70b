/*
 * views.c - see views.h. Reads only; every key and field is the one
 * docs/REDIS_KEYS.md documents.
 */
#include "daemon/views.h"
#include "daemon/utf8.h"

#include <stdbool.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/lr.h"

char *fd_view_utf8(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(2 * len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned c = u[i];
        uint32_t cp;
        size_t ulen = c >= 0x80 ? fd_utf8_seq(u + i, len - i, &cp) : 0;
        if (c < 0x80) { /* NUL too: the length says where the string ends */
            *o++ = (char)c;
        } else if (ulen) {
            memcpy(o, s + i, ulen);
            o += ulen;
            i += ulen - 1;
        } else { /* the byte as U+0080..U+00FF */
            *o++ = (char)(0xc0 | c >> 6);
            *o++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *o = 0;
    if (out_len)
        *out_len = (size_t)(o - out);
    return out;
}

static json_t *str_json(const char *s, size_t len)
{
    size_t n;
    char *v = fd_view_utf8(s, len, &n);
    json_t *j = v ? json_stringn(v, n) : NULL; /* an embedded NUL comes out as \u0000 */
    free(v);
    return j ? j : json_null();
}

static int64_t field_int(const redisReply *r, int64_t dflt)
{
    if (!r || r->type != REDIS_REPLY_STRING)
        return dflt;
    char *end;
    long long v = strtoll(r->str, &end, 10);
    return end != r->str && *end == 0 ? (int64_t)v : dflt;
}

static double ratio(int64_t a, int64_t b)
{
    return b > 0 ? (double)a / (double)b : 0.0;
}

typedef struct win {
    int64_t start;
} win;

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = ((const win *)a)->start, y = ((const win *)b)->start;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The windows of span named in funnel:open and funnel:closed ("1m:START"). */
static int collect_windows(fd_redis *r, const char *prefix, const char *span, win **out, size_t *n,
                           char *err, size_t errn)
{
    static const char *const sets[] = {"funnel:open", "funnel:closed"};
    size_t cap = 0, len = 0, slen = strlen(span);
    win *w = NULL;
    for (int s = 0; s < 2; s++) {
        redisReply *rep = fd_redis_command(r, err, errn, "ZRANGE %s%s 0 -1", prefix, sets[s]);
        if (!rep) {
            free(w);
            return -1;
        }
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
            const redisReply *m = rep->element[i];
            if (m->type != REDIS_REPLY_STRING || m->len <= slen + 1 ||
                memcmp(m->str, span, slen) != 0 || m->str[slen] != ':')
                continue;
            char *end;
            long long start = strtoll(m->str + slen + 1, &end, 10);
            if (*end)
                continue;
            if (len == cap) {
                size_t nc = cap ? 2 * cap : 256;
                win *g = realloc(w, nc * sizeof *g);
                if (!g) {
                    freeReplyObject(rep);
                    free(w);
                    snprintf(err, errn, "out of memory");
                    return -1;
                }
                w = g;
                cap = nc;
            }
            w[len++].start = start;
        }
        freeReplyObject(rep);
    }
    if (len)
        qsort(w, len, sizeof *w, cmp_desc);
    size_t k = 0; /* a window in both sets (closing right now) once */
    for (size_t i = 0; i < len; i++)
        if (k == 0 || w[k - 1].start != w[i].start)
            w[k++] = w[i];
    *out = w;
    *n = k;
    return 0;
}

json_t *fd_view_funnel(fd_redis *r, const char *prefix, const char *span, int last, char *err,
                       size_t n)
{
    static const char *const fields[] = {"sessions_visit",    "sessions_click", "sessions_cart",
                                         "sessions_purchase", "click",          "cart",
                                         "purchase",          "revenue_cents",  "closed"};
    enum { NF = sizeof fields / sizeof fields[0] };
    if (last < 1)
        last = 1;
    if (last > FD_VIEW_MAX_WINDOWS)
        last = FD_VIEW_MAX_WINDOWS;
    win *w = NULL;
    size_t nw = 0;
    if (collect_windows(r, prefix, span, &w, &nw, err, n) != 0)
        return NULL;
    if (nw > (size_t)last)
        nw = (size_t)last;
    json_t *doc = json_object(), *arr = json_array();
    json_object_set_new(doc, "span", json_string(span));
    json_object_set_new(doc, "windows", arr);
    for (size_t i = 0; i < nw; i++)
        fd_redis_appendf(r,
                         "HMGET %sfunnel:%s:%lld sessions_visit sessions_click sessions_cart "
                         "sessions_purchase click cart purchase revenue_cents closed",
                         prefix, span, (long long)w[i].start);
    redisReply **rep = nw ? calloc(nw, sizeof *rep) : NULL;
    if ((nw && !rep) || (nw && fd_redis_read_replies(r, rep, nw, err, n) != 0)) {
        if (nw && !rep)
            snprintf(err, n, "out of memory");
        free(rep);
        free(w);
        json_decref(doc);
        return NULL;
    }
    for (size_t i = 0; i < nw; i++) {
        int64_t v[NF];
        for (int f = 0; f < NF; f++)
            v[f] = rep[i]->type == REDIS_REPLY_ARRAY && (size_t)f < rep[i]->elements
                       ? field_int(rep[i]->element[f], 0)
                       : 0;
        json_t *o = json_object();
        json_object_set_new(o, "start_ms", json_integer(w[i].start));
        for (int f = 0; f < NF - 1; f++)
            json_object_set_new(o, fields[f], json_integer(v[f]));
        json_object_set_new(o, "click_rate", json_real(ratio(v[1], v[0])));
        json_object_set_new(o, "cart_rate", json_real(ratio(v[2], v[1])));
        json_object_set_new(o, "purchase_rate", json_real(ratio(v[3], v[2])));
        json_object_set_new(o, "conversion", json_real(ratio(v[3], v[0])));
        json_object_set_new(o, "closed", json_boolean(v[NF - 1] == 1));
        json_array_append_new(arr, o);
        freeReplyObject(rep[i]);
    }
    free(rep);
    free(w);
    return doc;
}

/* The stream's event time now: the highest max_ts of the partition keys
 * (SCAN, a few keys). 0 when none. */
static int64_t stream_now(fd_redis *r, const char *prefix)
{
    int64_t now = 0;
    char cursor[32] = "0";
    for (int rounds = 0; rounds < 1000; rounds++) {
        char err[256];
        redisReply *rep = fd_redis_command(r, err, sizeof err, "SCAN %s MATCH %spart:* COUNT 1000",
                                           cursor, prefix);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            if (rep)
                freeReplyObject(rep);
            return now;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str ? rep->element[0]->str : "0");
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements; i++)
            fd_redis_appendf(r, "HGET %b max_ts", keys->element[i]->str,
                             (size_t)keys->element[i]->len);
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *v = NULL;
            if (fd_redis_read_replies(r, &v, 1, err, sizeof err) != 0)
                break;
            int64_t t = field_int(v, 0);
            if (t > now)
                now = t;
            freeReplyObject(v);
        }
        freeReplyObject(rep);
        if (!strcmp(cursor, "0"))
            break;
    }
    return now;
}

/* The stored churn model, parsed; NULL when absent or unreadable. */
static fd_lr *load_lr(fd_redis *r, const char *prefix, const fd_feat_params *fp)
{
    char err[256];
    redisReply *rep = fd_redis_command(r, err, sizeof err, "HGET %smodel:churn lr", prefix);
    fd_lr *m = NULL;
    if (rep && rep->type == REDIS_REPLY_STRING && (m = malloc(sizeof *m))) {
        fd_lr_params p;
        fd_lr_params_default(&p, fd_feat_count(fp));
        fd_lr_init(m, &p);
        if (fd_lr_parse(m, &p, rep->str, rep->len, err, sizeof err) != 0) {
            free(m);
            m = NULL;
        }
    }
    if (rep)
        freeReplyObject(rep);
    return m;
}

/* "reasons": the user's three largest contributions w*x at event time now. */
static json_t *reasons(const fd_feat_params *fp, const fd_lr *m, const redisReply *rec, int64_t now)
{
    fd_feat f;
    char why[256];
    if (!rec || rec->type != REDIS_REPLY_STRING ||
        fd_feat_record_parse(fp, &f, rec->str, rec->len, NULL, why, sizeof why) != 0)
        return json_null();
    double raw[FD_LR_MAX_FEAT] = {0};
    fd_feat_eval(fp, &f, now > f.last_ts ? now : f.last_ts, raw);
    int idx[3];
    double contrib[3];
    int k = fd_lr_top_reasons(m, raw, 3, idx, contrib);
    json_t *arr = json_array();
    char name[128];
    for (int i = 0; i < k; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "feature", json_string(fd_feat_name(fp, idx[i], name, sizeof name)));
        json_object_set_new(o, "value", json_real(isfinite(raw[idx[i]]) ? raw[idx[i]] : 0));
        json_object_set_new(o, "contribution", json_real(isfinite(contrib[i]) ? contrib[i] : 0));
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *fd_view_top_risk(fd_redis *r, const char *prefix, const fd_feat_params *fp, int n_users,
                         char *err, size_t n)
{
    if (n_users < 1)
        n_users = 1;
    if (n_users > FD_VIEW_MAX_USERS)
        n_users = FD_VIEW_MAX_USERS;
    redisReply *rep =
        fd_redis_command(r, err, n, "ZREVRANGE %schurn:risk 0 %d WITHSCORES", prefix, n_users - 1);
    if (!rep)
        return NULL;
    fd_lr *m = fp ? load_lr(r, prefix, fp) : NULL;
    int64_t now = m ? stream_now(r, prefix) : 0;
    size_t nu = rep->type == REDIS_REPLY_ARRAY ? rep->elements / 2 : 0;
    redisReply **recs = m && nu ? calloc(nu, sizeof *recs) : NULL;
    if (recs) {
        for (size_t i = 0; i < nu; i++)
            fd_redis_appendf(r, "GET %suser:%b", prefix, rep->element[2 * i]->str,
                             (size_t)rep->element[2 * i]->len);
        if (fd_redis_read_replies(r, recs, nu, err, n) != 0) {
            free(recs);
            recs = NULL;
        }
    }
    json_t *doc = json_object(), *arr = json_array();
    json_object_set_new(doc, "users", arr);
    if (m)
        json_object_set_new(doc, "at_ms", json_integer(now));
    for (size_t i = 0; i < nu; i++) {
        const redisReply *mem = rep->element[2 * i], *s = rep->element[2 * i + 1];
        if (mem->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "user_id", str_json(mem->str, mem->len));
        json_object_set_new(o, "risk", json_real(strtod(s->str, NULL)));
        if (recs)
            json_object_set_new(o, "reasons", reasons(fp, m, recs[i], now));
        json_array_append_new(arr, o);
    }
    for (size_t i = 0; recs && i < nu; i++)
        if (recs[i])
            freeReplyObject(recs[i]);
    free(recs);
    free(m);
    freeReplyObject(rep);
    return doc;
}

/* A hash's fields as an object of numbers (strings that are not numbers
 * are left out, as are the fields in skip). NULL when the key is absent. */
static json_t *figures(const redisReply *rep, const char *const *skip)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        return NULL;
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *k = rep->element[i], *v = rep->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        bool skipped = false;
        for (const char *const *s = skip; *s && !skipped; s++)
            skipped = !strcmp(k->str, *s);
        char *end;
        double d = strtod(v->str, &end);
        if (skipped || end == v->str || *end)
            continue;
        char *name = fd_view_utf8(k->str, k->len, NULL);
        if (!name)
            continue;
        long long iv = strtoll(v->str, &end, 10);
        json_object_set_new(o, name, *end == 0 ? json_integer(iv) : json_real(d));
        free(name);
    }
    return o;
}

static const redisReply *hash_field(const redisReply *rep, const char *field)
{
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2)
        if (rep->element[i]->type == REDIS_REPLY_STRING && !strcmp(rep->element[i]->str, field))
            return rep->element[i + 1];
    return NULL;
}

json_t *fd_view_model(fd_redis *r, const char *prefix, const fd_feat_params *fp, char *err,
                      size_t n)
{
    fd_redis_appendf(r, "HGETALL %smodel:churn", prefix);
    fd_redis_appendf(r, "HGETALL %smodel:mf", prefix);
    redisReply *rep[2] = {0};
    if (fd_redis_read_replies(r, rep, 2, err, n) != 0)
        return NULL;
    static const char *const skip_churn[] = {"lr", "quality", NULL};
    static const char *const skip_mf[] = {NULL};
    json_t *doc = json_object();
    json_t *churn = figures(rep[0], skip_churn), *recs = figures(rep[1], skip_mf);
    const redisReply *lr = hash_field(rep[0], "lr");
    if (churn && fp && lr && lr->type == REDIS_REPLY_STRING) {
        fd_lr_params p;
        fd_lr_params_default(&p, fd_feat_count(fp));
        fd_lr *m = malloc(sizeof *m);
        char why[256];
        if (m) {
            fd_lr_init(m, &p);
            if (fd_lr_parse(m, &p, lr->str, lr->len, why, sizeof why) == 0) {
                json_t *w = json_array();
                char name[128];
                for (int i = 0; i < p.n; i++) {
                    json_t *o = json_object();
                    json_object_set_new(o, "feature",
                                        json_string(fd_feat_name(fp, i, name, sizeof name)));
                    json_object_set_new(o, "weight", json_real(m->w[i]));
                    json_array_append_new(w, o);
                }
                json_object_set_new(churn, "weights", w);
                json_object_set_new(churn, "bias", json_real(m->w[FD_LR_MAX_FEAT]));
            } else {
                json_object_set_new(churn, "weights_error", json_string(why));
            }
            free(m);
        }
    }
    json_object_set_new(doc, "churn", churn ? churn : json_null());
    json_object_set_new(doc, "recs", recs ? recs : json_null());
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    return doc;
}
