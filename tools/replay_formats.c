/*
 * replay_formats.c - dataset rows to events (see replay_formats.h).
 *
 * Why it is built this way:
 *
 * - Strict per field, lenient per file. A row is accepted only when every
 *   field it needs is exactly what the dataset documents (ids are decimal
 *   numbers, timestamps whole seconds, a rating in 0..5, a price a finite
 *   number), because a silently misread row would skew every feature
 *   downstream. A bad row never stops the file: the caller reports it with
 *   its line number and goes on (or stops, with --strict).
 * - No CSV quoting. None of the three datasets quotes a field (rees46's
 *   category_code and brand hold no commas); a field wrapped in double quotes
 *   has them removed, anything else is taken literally, so a stray comma
 *   shows up as a wrong field count rather than a shifted value.
 * - The header is recognised only as the first non-blank line and only when
 *   it is the documented one; anything else there is parsed as a row, so a
 *   truncated or foreign file is reported rather than half-skipped.
 * - Every event goes through fd_event_validate, the daemon's own rules, so
 *   what replay produces is never dead-lettered by funneld for its content
 *   (the future-time check needs a partition's clock and is left to it).
 *
 * Thread: the thread that owns the parser.
 */
#include "tools/replay_formats.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec.h"

#define MAX_FIELDS 12

static const char *const names[FD_ROWS__COUNT] = {"movielens", "taobao", "rees46", "json"};

int fd_row_format_parse(const char *s)
{
    for (int i = 0; i < FD_ROWS__COUNT; i++)
        if (s && !strcmp(s, names[i]))
            return i;
    return -1;
}

const char *fd_row_format_name(int f)
{
    return f >= 0 && f < FD_ROWS__COUNT ? names[f] : "unknown";
}

const char *fd_row_format_list(void)
{
    return "movielens, taobao, rees46 or json";
}

typedef enum ml_layout { ML_UNKNOWN = 0, ML_UDATA, ML_CSV } ml_layout;

struct fd_rows {
    int format;
    bool started;     /* the first non-blank line was seen */
    ml_layout layout; /* movielens: fixed by the first non-blank line */
    fd_codec *codec;  /* json */
};

fd_rows *fd_rows_new(int f, char *errstr, size_t errstr_size)
{
    if (f < 0 || f >= FD_ROWS__COUNT) {
        snprintf(errstr, errstr_size, "unknown format (expected %s)", fd_row_format_list());
        return NULL;
    }
    fd_rows *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->format = f;
    if (f == FD_ROWS_JSON) {
        fd_codec_opts co = {.format = FD_FMT_JSON};
        p->codec = fd_codec_new(&co, errstr, errstr_size);
        if (!p->codec) {
            free(p);
            return NULL;
        }
    }
    return p;
}

void fd_rows_free(fd_rows *p)
{
    if (!p)
        return;
    fd_codec_destroy(p->codec);
    free(p);
}

/* ---- fields -------------------------------------------------------------- */

typedef struct field {
    const char *s;
    size_t n;
} field;

/* Split s[0..len) at sep into at most MAX_FIELDS fields; returns the count
 * (MAX_FIELDS + 1 when there are more). Surrounding double quotes go. */
static int split(const char *s, size_t len, char sep, field *f)
{
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != sep)
            continue;
        if (n == MAX_FIELDS)
            return MAX_FIELDS + 1;
        f[n].s = s + start;
        f[n].n = i - start;
        if (f[n].n >= 2 && f[n].s[0] == '"' && f[n].s[f[n].n - 1] == '"') {
            f[n].s++;
            f[n].n -= 2;
        }
        n++;
        start = i + 1;
    }
    return n;
}

static fd_row_result bad(const char **reason, const char *why, char *errstr, size_t errstr_size,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static fd_row_result bad(const char **reason, const char *why, char *errstr, size_t errstr_size,
                         const char *fmt, ...)
{
    *reason = why;
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return FD_ROW_BAD;
}

/* A field shown in a message: at most 40 bytes of it. */
#define SHOW(f) (int)((f).n > 40 ? 40 : (f).n), (f).s

static bool all_digits(field f)
{
    if (f.n == 0)
        return false;
    for (size_t i = 0; i < f.n; i++)
        if (f.s[i] < '0' || f.s[i] > '9')
            return false;
    return true;
}

/* A decimal id into dst (a FD_ID_MAX + 1 buffer). */
static fd_row_result id_field(field f, const char *name, char *dst, const char **reason,
                              char *errstr, size_t errstr_size)
{
    if (!all_digits(f))
        return bad(reason, "bad_number", errstr, errstr_size, "%s: '%.*s' is not a decimal id",
                   name, SHOW(f));
    if (f.n > FD_ID_MAX)
        return bad(reason, fd_reject_name(FD_REJ_FIELD_TOO_LONG), errstr, errstr_size,
                   "%s: longer than %d bytes", name, FD_ID_MAX);
    memcpy(dst, f.s, f.n);
    dst[f.n] = '\0';
    return FD_ROW_EVENT;
}

/* A free-text field (category code, session) into dst; empty is allowed. */
static fd_row_result text_field(field f, const char *name, char *dst, const char **reason,
                                char *errstr, size_t errstr_size)
{
    if (f.n > FD_ID_MAX)
        return bad(reason, fd_reject_name(FD_REJ_FIELD_TOO_LONG), errstr, errstr_size,
                   "%s: longer than %d bytes", name, FD_ID_MAX);
    if (memchr(f.s, '\0', f.n))
        return bad(reason, fd_reject_name(FD_REJ_FIELD_TYPE), errstr, errstr_size,
                   "%s: contains a NUL byte", name);
    memcpy(dst, f.s, f.n);
    dst[f.n] = '\0';
    return FD_ROW_EVENT;
}

/* Whole seconds since the epoch into ms. */
static fd_row_result seconds_field(field f, const char *name, int64_t *ms, const char **reason,
                                   char *errstr, size_t errstr_size)
{
    if (!all_digits(f) || f.n > 15)
        return bad(reason, "bad_ts", errstr, errstr_size,
                   "%s: '%.*s' is not a timestamp (whole seconds since 1970, > 0)", name, SHOW(f));
    int64_t s = 0;
    for (size_t i = 0; i < f.n; i++)
        s = s * 10 + (f.s[i] - '0');
    if (s <= 0 || s > FD_TS_MAX_MS / 1000)
        return bad(reason, "bad_ts", errstr, errstr_size,
                   "%s: %" PRId64 " is out of range (1..%lld seconds)", name, s,
                   FD_TS_MAX_MS / 1000);
    *ms = s * 1000;
    return FD_ROW_EVENT;
}

/* A finite decimal number (strtod syntax, no hex, no inf/nan). */
static int number_field(field f, double *out)
{
    char buf[64];
    if (f.n == 0 || f.n >= sizeof buf)
        return -1;
    for (size_t i = 0; i < f.n; i++)
        if (!strchr("0123456789.-+eE", f.s[i]))
            return -1;
    memcpy(buf, f.s, f.n);
    buf[f.n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + f.n || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static bool field_is(field f, const char *s)
{
    return f.n == strlen(s) && !memcmp(f.s, s, f.n);
}

static bool line_is(const char *line, size_t len, const char *s)
{
    return len == strlen(s) && !memcmp(line, s, len);
}

/* ---- formats ------------------------------------------------------------- */

static fd_row_result movielens(fd_rows *p, const char *line, size_t len, fd_event *ev,
                               const char **reason, char *errstr, size_t errstr_size)
{
    field f[MAX_FIELDS];
    char sep = p->layout == ML_UDATA ? '\t' : ',';
    int n = split(line, len, sep, f);
    if (n != 4)
        return bad(reason, "field_count", errstr, errstr_size, "%d fields, expected 4 (%s)",
                   n > MAX_FIELDS ? n - 1 : n,
                   p->layout == ML_UDATA ? "user<TAB>item<TAB>rating<TAB>timestamp"
                                         : "userId,movieId,rating,timestamp");
    fd_row_result r;
    if ((r = id_field(f[0], "user", ev->user_id, reason, errstr, errstr_size)) ||
        (r = id_field(f[1], "item", ev->item_id, reason, errstr, errstr_size)))
        return r;
    double rating;
    if (number_field(f[2], &rating) < 0)
        return bad(reason, "bad_number", errstr, errstr_size, "rating: '%.*s' is not a number",
                   SHOW(f[2]));
    if (rating < 0 || rating > 5)
        return bad(reason, "bad_rating", errstr, errstr_size, "rating: %g is out of range (0..5)",
                   rating);
    if ((r = seconds_field(f[3], "timestamp", &ev->ts_ms, reason, errstr, errstr_size)))
        return r;
    ev->has_item = true;
    ev->type = rating >= 4 ? FD_EV_PURCHASE : FD_EV_CLICK;
    return FD_ROW_EVENT;
}

static fd_row_result taobao(const char *line, size_t len, fd_event *ev, const char **reason,
                            char *errstr, size_t errstr_size)
{
    field f[MAX_FIELDS];
    int n = split(line, len, ',', f);
    if (n != 5)
        return bad(reason, "field_count", errstr, errstr_size,
                   "%d fields, expected 5 (user,item,category,behavior,ts)",
                   n > MAX_FIELDS ? n - 1 : n);
    fd_row_result r;
    if ((r = id_field(f[0], "user", ev->user_id, reason, errstr, errstr_size)) ||
        (r = id_field(f[1], "item", ev->item_id, reason, errstr, errstr_size)) ||
        (r = id_field(f[2], "category", ev->category, reason, errstr, errstr_size)))
        return r;
    if (field_is(f[3], "pv") || field_is(f[3], "fav"))
        ev->type = FD_EV_CLICK;
    else if (field_is(f[3], "cart"))
        ev->type = FD_EV_CART;
    else if (field_is(f[3], "buy"))
        ev->type = FD_EV_PURCHASE;
    else
        return bad(reason, "unknown_behavior", errstr, errstr_size,
                   "behavior: '%.*s' is not pv, fav, cart or buy", SHOW(f[3]));
    if ((r = seconds_field(f[4], "ts", &ev->ts_ms, reason, errstr, errstr_size)))
        return r;
    ev->has_item = ev->has_category = true;
    return FD_ROW_EVENT;
}

static fd_row_result rees46(const char *line, size_t len, fd_event *ev, const char **reason,
                            char *errstr, size_t errstr_size)
{
    field f[MAX_FIELDS];
    int n = split(line, len, ',', f);
    if (n != 9)
        return bad(reason, "field_count", errstr, errstr_size,
                   "%d fields, expected 9 (event_time,event_type,product_id,category_id,"
                   "category_code,brand,price,user_id,user_session)",
                   n > MAX_FIELDS ? n - 1 : n);
    /* "2019-10-01 00:00:00 UTC", or any RFC 3339 time */
    char tbuf[64];
    field t = f[0];
    if (t.n > 4 && t.n < sizeof tbuf && !memcmp(t.s + t.n - 4, " UTC", 4)) {
        memcpy(tbuf, t.s, t.n - 4);
        tbuf[t.n - 4] = 'Z';
        t.s = tbuf;
        t.n -= 3;
    }
    const char *why;
    if (fd_rfc3339_parse(t.s, t.n, &ev->ts_ms, &why) < 0)
        return bad(reason, "bad_ts", errstr, errstr_size,
                   "event_time: '%.*s' is not a time like 2019-10-01 00:00:00 UTC", SHOW(f[0]));
    if (field_is(f[1], "view")) {
        ev->type = FD_EV_CLICK;
    } else if (field_is(f[1], "cart")) {
        ev->type = FD_EV_CART;
    } else if (field_is(f[1], "purchase")) {
        ev->type = FD_EV_PURCHASE;
    } else if (field_is(f[1], "remove_from_cart")) {
        *reason = "remove_from_cart";
        return FD_ROW_SKIPPED;
    } else {
        return bad(reason, "unknown_behavior", errstr, errstr_size,
                   "event_type: '%.*s' is not view, cart, remove_from_cart or purchase",
                   SHOW(f[1]));
    }
    fd_row_result r;
    if ((r = id_field(f[2], "product_id", ev->item_id, reason, errstr, errstr_size)) ||
        (r = id_field(f[7], "user_id", ev->user_id, reason, errstr, errstr_size)))
        return r;
    /* the readable category when there is one, else its id */
    if (f[4].n) {
        if ((r = text_field(f[4], "category_code", ev->category, reason, errstr, errstr_size)))
            return r;
    } else if (f[3].n) {
        if ((r = id_field(f[3], "category_id", ev->category, reason, errstr, errstr_size)))
            return r;
    }
    ev->has_category = ev->category[0] != '\0';
    if ((r = text_field(f[8], "user_session", ev->session_id, reason, errstr, errstr_size)))
        return r;
    ev->has_session = ev->session_id[0] != '\0';
    if (number_field(f[6], &ev->price) < 0)
        return bad(reason, fd_reject_name(FD_REJ_BAD_PRICE), errstr, errstr_size,
                   "price: '%.*s' is not a number", SHOW(f[6]));
    ev->has_item = ev->has_price = true;
    return FD_ROW_EVENT;
}

fd_row_result fd_rows_parse(fd_rows *p, const char *line, size_t len, uint64_t lineno, fd_event *ev,
                            const char **reason, char *errstr, size_t errstr_size)
{
    *reason = "ok";
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        len--;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len)
        return FD_ROW_IGNORED;
    bool first = !p->started;
    p->started = true;
    fd_event_init(ev);
    fd_row_result r = FD_ROW_EVENT;
    switch (p->format) {
    case FD_ROWS_MOVIELENS:
        if (first) {
            p->layout = memchr(line, '\t', len) ? ML_UDATA : ML_CSV;
            if (line_is(line, len, "userId,movieId,rating,timestamp"))
                return FD_ROW_IGNORED;
        }
        r = movielens(p, line, len, ev, reason, errstr, errstr_size);
        break;
    case FD_ROWS_TAOBAO:
        if (first && line_is(line, len, "user,item,category,behavior,ts"))
            return FD_ROW_IGNORED;
        r = taobao(line, len, ev, reason, errstr, errstr_size);
        break;
    case FD_ROWS_REES46:
        if (first && line_is(line, len,
                             "event_time,event_type,product_id,category_id,category_code,brand,"
                             "price,user_id,user_session"))
            return FD_ROW_IGNORED;
        r = rees46(line, len, ev, reason, errstr, errstr_size);
        break;
    case FD_ROWS_JSON: {
        fd_reject why = fd_codec_decode(p->codec, line, len, ev, errstr, errstr_size);
        if (why != FD_OK) {
            *reason = fd_reject_name(why);
            return FD_ROW_BAD;
        }
        break;
    }
    default:
        return bad(reason, "unknown_format", errstr, errstr_size, "unknown format");
    }
    if (r != FD_ROW_EVENT)
        return r;
    if (p->format != FD_ROWS_JSON)
        snprintf(ev->event_id, sizeof ev->event_id, "%s-%" PRIu64, names[p->format], lineno);
    fd_reject why = fd_event_validate(ev, 0, 0, errstr, errstr_size);
    if (why != FD_OK) {
        *reason = fd_reject_name(why);
        return FD_ROW_BAD;
    }
    return FD_ROW_EVENT;
}
