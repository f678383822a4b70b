/*
 * codec_json_fast.c - one pass over a JSON event in the common layout, with
 * no DOM and no allocation; anything else goes to jansson (codec_json.c).
 *
 * Why it is built this way: jansson builds a tree of allocated nodes for
 * every message (an object, a hash table, a string per field) and then we
 * copy the strings out again; on a 1 M event JSON topic that was 38 % of
 * funneld's samples and most of its malloc traffic (BENCHMARKS.md, issue
 * 14). A streaming library (yajl) would drop the tree but not the
 * per-field callbacks and copies, and its answers differ from jansson's on
 * edge cases (lone surrogates, number overflow), so the two could not be
 * proven to agree. Instead this file reads what producers send - a flat
 * object of our own keys, plain ASCII strings, numbers - and gives up on
 * everything else, which then takes the jansson path unchanged. "Gives up"
 * is always safe; the only thing that must never happen is an answer that
 * differs from jansson's, and the fuzz target fuzz_decode_json checks that
 * on every input (fd_codec_set_fast_path off = jansson alone).
 *
 * The fast path gives up (returns -1) on:
 * - any key other than the event's nine, and any key given twice (jansson
 *   rejects duplicates; unknown keys would need duplicate tracking);
 * - a backslash, a control character or a byte >= 0x80 inside a string
 *   (escapes and UTF-8 validation are jansson's);
 * - nested objects or arrays, true/false, a type jansson would reject;
 * - an integer of more than 18 digits, a number of more than 63 bytes, a
 *   real that overflows;
 * - an id longer than FD_ID_MAX, a quantity outside 1..FD_QUANTITY_MAX, an
 *   unknown event type, a ts string that is not RFC 3339, a missing field;
 * - anything but whitespace after the object.
 * Reals are read with strtod, as jansson does; funneld never calls
 * setlocale, so the decimal point is '.'.
 *
 * Thread: any; no state.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec_internal.h"

typedef struct scan {
    const uint8_t *p, *end;
} scan;

static void ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A string without escapes, control or non-ASCII bytes: its bytes (after the
 * opening quote) and length; the scanner moves past the closing quote. */
static int str(scan *s, const char **out, size_t *len)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const uint8_t *b = ++s->p;
    while (s->p < s->end) {
        uint8_t c = *s->p;
        if (c == '"') {
            *out = (const char *)b;
            *len = (size_t)(s->p - b);
            s->p++;
            return 0;
        }
        if (c == '\\' || c < 0x20 || c >= 0x80)
            return -1;
        s->p++;
    }
    return -1;
}

enum num_kind { NUM_INT, NUM_REAL };

/* Move past a run of ASCII digits; how many there were. */
static size_t skip_digits(scan *s)
{
    const uint8_t *b = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return (size_t)(s->p - b);
}

/* A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int num(scan *s, enum num_kind *kind, int64_t *iv, double *dv)
{
    const uint8_t *b = s->p;
    bool neg = false;
    if (s->p < s->end && *s->p == '-') {
        neg = true;
        s->p++;
    }
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
        return -1;
    const uint8_t *d = s->p;
    size_t nd = 1; /* a leading 0 stands alone */
    if (*s->p == '0')
        s->p++;
    else
        nd = skip_digits(s);
    bool real = false;
    if (s->p < s->end && *s->p == '.') {
        real = true;
        s->p++;
        if (!skip_digits(s))
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        real = true;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!skip_digits(s))
            return -1;
    }
    if (!real) {
        if (nd > 18)
            return -1;
        int64_t v = 0;
        for (size_t i = 0; i < nd; i++)
            v = v * 10 + (d[i] - '0');
        *iv = neg ? -v : v;
        *kind = NUM_INT;
        return 0;
    }
    char tmp[64];
    size_t n = (size_t)(s->p - b);
    if (n >= sizeof tmp)
        return -1;
    memcpy(tmp, b, n);
    tmp[n] = '\0';
    errno = 0;
    char *e;
    double v = strtod(tmp, &e);
    if (e != tmp + n || ((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE))
        return -1;
    *dv = v;
    *kind = NUM_REAL;
    return 0;
}

static bool lit(scan *s, const char *w, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != b[i])
            return false;
    }
    return true;
}

/* See codec_internal.h. */
int fd_json_event_type(const char *s, size_t n)
{
    if (ieq(s, n, "click", 5) || ieq(s, n, "view", 4))
        return FD_EV_CLICK;
    if (ieq(s, n, "cart", 4))
        return FD_EV_CART;
    if (ieq(s, n, "purchase", 8))
        return FD_EV_PURCHASE;
    return -1;
}

enum key {
    K_EVENT_ID,
    K_USER_ID,
    K_TS,
    K_TYPE,
    K_ITEM_ID,
    K_SESSION_ID,
    K_CATEGORY,
    K_PRICE,
    K_QUANTITY,
    K__COUNT
};

static int key_of(const char *k, size_t n)
{
    static const char *const names[K__COUNT] = {"event_id", "user_id", "ts",
                                                "type",     "item_id", "session_id",
                                                "category", "price",   "quantity"};
    for (int i = 0; i < K__COUNT; i++)
        if (strlen(names[i]) == n && memcmp(names[i], k, n) == 0)
            return i;
    return -1;
}

/* ts: integer epoch ms or an RFC 3339 string. */
static int read_ts(scan *s, int64_t *ts)
{
    if (s->p < s->end && *s->p == '"') {
        const char *v;
        size_t n;
        const char *why;
        return str(s, &v, &n) == 0 && fd_rfc3339_parse(v, n, ts, &why) == 0 ? 0 : -1;
    }
    enum num_kind k;
    double dv;
    return num(s, &k, ts, &dv) == 0 && k == NUM_INT ? 0 : -1;
}

/* A string id (copied) or, when nullable, null. */
static int read_id(scan *s, char dst[FD_ID_MAX + 1], bool *present)
{
    if (present && lit(s, "null", 4)) {
        *present = false;
        return 0;
    }
    const char *v;
    size_t n;
    if (str(s, &v, &n) != 0 || n > FD_ID_MAX)
        return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    if (present)
        *present = true;
    return 0;
}

static int read_value(scan *s, int k, fd_event *ev)
{
    switch (k) {
    case K_EVENT_ID:
        return read_id(s, ev->event_id, NULL);
    case K_USER_ID:
        return read_id(s, ev->user_id, NULL);
    case K_ITEM_ID:
        return read_id(s, ev->item_id, &ev->has_item);
    case K_SESSION_ID:
        return read_id(s, ev->session_id, &ev->has_session);
    case K_CATEGORY:
        return read_id(s, ev->category, &ev->has_category);
    case K_TS:
        return read_ts(s, &ev->ts_ms);
    case K_TYPE: {
        const char *v;
        size_t n;
        if (str(s, &v, &n) != 0)
            return -1;
        int t = fd_json_event_type(v, n);
        if (t < 0)
            return -1;
        ev->type = (fd_event_type)t;
        return 0;
    }
    case K_PRICE: {
        if (lit(s, "null", 4))
            return 0;
        enum num_kind nk;
        int64_t iv;
        double dv;
        if (num(s, &nk, &iv, &dv) != 0)
            return -1;
        ev->price = nk == NUM_INT ? (double)iv : dv;
        ev->has_price = true;
        return 0;
    }
    case K_QUANTITY: {
        enum num_kind nk;
        int64_t iv;
        double dv;
        if (num(s, &nk, &iv, &dv) != 0 || nk != NUM_INT || iv < 1 || iv > FD_QUANTITY_MAX)
            return -1;
        ev->quantity = (int32_t)iv;
        return 0;
    }
    }
    return -1;
}

/* See codec_internal.h. */
int fd_json_fast_decode(const uint8_t *p, size_t n, fd_event *ev)
{
    scan s = {p, p + n};
    unsigned seen = 0;
    ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return -1;
    s.p++;
    ws(&s);
    if (s.p < s.end && *s.p == '}')
        return -1; /* {}: fields missing, jansson names them */
    for (;;) {
        const char *k;
        size_t kl;
        ws(&s);
        if (str(&s, &k, &kl) != 0)
            return -1;
        int key = key_of(k, kl);
        if (key < 0 || (seen & (1u << key)))
            return -1;
        seen |= 1u << key;
        ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        s.p++;
        ws(&s);
        if (read_value(&s, key, ev) != 0)
            return -1;
        ws(&s);
        if (s.p >= s.end)
            return -1;
        if (*s.p == ',') {
            s.p++;
            continue;
        }
        if (*s.p != '}')
            return -1;
        s.p++;
        break;
    }
    ws(&s);
    if (s.p != s.end)
        return -1;
    const unsigned need = 1u << K_EVENT_ID | 1u << K_USER_ID | 1u << K_TS | 1u << K_TYPE;
    return (seen & need) == need ? 0 : -1;
}

/* Skip a string (escapes allowed: only its end matters here). */
static int skip_str(scan *s)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    for (s->p++; s->p < s->end; s->p++) {
        if (*s->p == '\\') {
            s->p++;
            continue;
        }
        if (*s->p == '"') {
            s->p++;
            return 0;
        }
    }
    return -1;
}

/* See codec_internal.h: the top-level "ts" only, other values skipped
 * unread (strings by their quotes, scalars to the next ',' or '}'). */
int fd_json_fast_peek_ts(const uint8_t *p, size_t n, int64_t *ts)
{
    scan s = {p, p + n};
    ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return -1;
    s.p++;
    for (;;) {
        const char *k;
        size_t kl;
        ws(&s);
        if (str(&s, &k, &kl) != 0)
            return -1;
        ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        s.p++;
        ws(&s);
        if (kl == 2 && k[0] == 't' && k[1] == 's')
            return read_ts(&s, ts);
        if (s.p < s.end && *s.p == '"') {
            if (skip_str(&s) != 0)
                return -1;
        } else {
            while (s.p < s.end && *s.p != ',' && *s.p != '}') {
                if (*s.p == '{' || *s.p == '[' || *s.p == '"')
                    return -1; /* nested: the full decode decides */
                s.p++;
            }
        }
        ws(&s);
        if (s.p >= s.end || *s.p != ',')
            return -1;
        s.p++;
    }
}
