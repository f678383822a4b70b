/*
 * test_fmt.c - features/fmt.c against glibc's snprintf, byte for byte:
 * fd_fmt_risk4 for all 65536 inputs; fd_fmt_g6 for every float that is a
 * rounding tie at 6 digits, every exponent with thousands of mantissas,
 * the boundaries of its exact range and millions of random floats; the
 * integer ones on edge values and millions of random values. Then the
 * churn and mf user suffixes (which now use them) against the snprintf
 * formats they replaced, and back through their parsers.
 *
 * `test_fmt --all-floats` also compares fd_fmt_g6 for all 2^32 floats
 * (about 25 minutes on one core; not part of the suite).
 */
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/fmt.h"
#include "features/user.h"
#include "models/churn.h"
#include "models/mf.h"
#include "tests/unit/check.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ---- one comparison each: counts, prints the first mismatches ----------- */

static long compared, mismatched;

static void report(const char *what, const char *want, size_t nwant, const char *got, size_t ngot)
{
    if (mismatched++ < 20)
        fprintf(stderr, "%s: snprintf \"%.*s\", fd_fmt \"%.*s\"\n", what, (int)nwant, want,
                (int)ngot, got);
}

#define SENTINEL 0x5a

/* got: what fd_fmt_* wrote into buf (end e); want: snprintf's n bytes. The
 * byte after the output must be untouched (no NUL, nothing past max). */
static void same(const char *what, const char *want, int n, const char *buf, const char *e,
                 size_t max)
{
    compared++;
    size_t len = (size_t)(e - buf);
    if (n < 0 || len != (size_t)n || len > max || memcmp(buf, want, len) != 0 ||
        (unsigned char)buf[len] != SENTINEL)
        report(what, want, n < 0 ? 0 : (size_t)n, buf, len);
}

static void g6(float f)
{
    char want[64], buf[64];
    int n = snprintf(want, sizeof want, "%.6g", (double)f);
    memset(buf, SENTINEL, sizeof buf);
    char *e = fd_fmt_g6(buf, f);
    char what[64];
    uint32_t b;
    memcpy(&b, &f, 4);
    if (e - buf != n || memcmp(buf, want, (size_t)n) != 0 || (unsigned char)buf[n] != SENTINEL) {
        snprintf(what, sizeof what, "g6(%a, bits 0x%08" PRIx32 ")", (double)f, b);
        same(what, want, n, buf, e, FD_FMT_G6_MAX);
    } else {
        compared++;
    }
}

static float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static void u64(uint64_t v)
{
    char want[32], buf[32];
    int n = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
    memset(buf, SENTINEL, sizeof buf);
    same("u64", want, n, buf, fd_fmt_u64(buf, v), FD_FMT_U64_MAX);
}

static void i64(int64_t v)
{
    char want[32], buf[32];
    int n = snprintf(want, sizeof want, "%lld", (long long)v);
    memset(buf, SENTINEL, sizeof buf);
    same("i64", want, n, buf, fd_fmt_i64(buf, v), FD_FMT_I64_MAX);
}

static void hex32(uint32_t v)
{
    char want[32], buf[32];
    int n = snprintf(want, sizeof want, "%x", (unsigned)v);
    memset(buf, SENTINEL, sizeof buf);
    same("hex32", want, n, buf, fd_fmt_hex32(buf, v), FD_FMT_HEX32_MAX);
}

/* A group of comparisons: group_end CHECKs that none differed and prints
 * the count. */
static long group_c0, group_m0;

static void group_begin(void)
{
    group_c0 = compared;
    group_m0 = mismatched;
}

static void group_end(const char *name)
{
    printf("%-28s %10ld compared, %ld different\n", name, compared - group_c0,
           mismatched - group_m0);
    CHECK(mismatched == group_m0 && compared > group_c0);
}

/* ---- fd_fmt_risk4 ---------------------------------------------------------- */

/* every q, through fd_churn_risk as pipeline/shard_snapshot.c prints it */
static void test_risk4_all(void)
{
    group_begin();
    {
        for (uint32_t q = 0; q <= 65535; q++) {
            fd_user u;
            memset(&u, 0, sizeof u);
            u.churn.risk_q = (uint16_t)q;
            char want[32], buf[32];
            int n = snprintf(want, sizeof want, "%.4f", fd_churn_risk(&u));
            memset(buf, SENTINEL, sizeof buf);
            same("risk4", want, n, buf, fd_fmt_risk4(buf, (uint16_t)q), FD_FMT_RISK4_MAX);
        }
    }
    group_end("risk4: every q");
    char buf[8];
    CHECK(memcmp(buf, "1.0000", (size_t)(fd_fmt_risk4(buf, 65535) - buf)) == 0);
    CHECK(memcmp(buf, "0.0000", (size_t)(fd_fmt_risk4(buf, 0) - buf)) == 0);
    CHECK(memcmp(buf, "0.5000", (size_t)(fd_fmt_risk4(buf, 32768) - buf)) == 0);
}

/* ---- integers -------------------------------------------------------------- */

static void test_integers(void)
{
    group_begin();
    {
        const uint64_t e[] = {0,          1,
                              9,          10,
                              11,         99,
                              100,        101,
                              999,        1000,
                              UINT32_MAX, (uint64_t)UINT32_MAX + 1,
                              INT64_MAX,  (uint64_t)INT64_MAX + 1,
                              UINT64_MAX, UINT64_MAX - 1};
        for (size_t i = 0; i < sizeof e / sizeof *e; i++) {
            u64(e[i]);
            i64((int64_t)e[i]);
            i64(-(int64_t)(e[i] & (uint64_t)INT64_MAX));
        }
        uint64_t p = 1;
        for (int k = 0; k <= 19; k++, p *= 10) { /* 10^k - 1, 10^k, 10^k + 1 */
            for (uint64_t d = 0; d < 3; d++) {
                u64(p - 1 + d);
                i64((int64_t)(p - 1 + d));
                i64(-(int64_t)(p - 1 + d));
            }
        }
        for (int k = 0; k < 64; k++) { /* 2^k - 1, 2^k, 2^k + 1 */
            for (uint64_t d = 0; d < 3; d++) {
                u64((1ull << k) - 1 + d);
                i64((int64_t)((1ull << k) - 1 + d));
            }
        }
        i64(INT64_MIN);
        i64(INT64_MIN + 1);
        i64(INT64_MAX);
        i64(-1);
    }
    group_end("u64/i64: edge values");
    group_begin();
    {
        for (int i = 0; i < 1000000; i++) {
            uint64_t r = xorshift();
            u64(r >> (r & 63));                       /* every length */
            uint64_t a = xorshift() >> (r >> 6 & 63); /* negated modulo 2^64 */
            i64((int64_t)((r >> 12 & 1) ? 0 - a : a));
            i64((int64_t)xorshift());
        }
    }
    group_end("u64/i64: random");
    group_begin();
    {
        const uint32_t e[] = {0,
                              1,
                              9,
                              10,
                              15,
                              16,
                              17,
                              99,
                              100,
                              255,
                              256,
                              UINT32_MAX,
                              UINT32_MAX - 1,
                              0x80000000u,
                              0x7fffffffu,
                              0xdeadbeefu};
        for (size_t i = 0; i < sizeof e / sizeof *e; i++)
            hex32(e[i]);
        for (int k = 0; k < 32; k++) {
            hex32(1u << k);
            hex32((1u << k) - 1);
            hex32((1u << k) + 1);
        }
    }
    group_end("hex32: edge values");
    group_begin();
    {
        for (int i = 0; i < 2000000; i++) {
            uint64_t r = xorshift();
            hex32((uint32_t)(r >> 32) >> (r & 31));
        }
    }
    group_end("hex32: random");
}

/* ---- fd_fmt_g6 ---------------------------------------------------------------- */

static void test_g6_specials(void)
{
    group_begin();
    {
        const float s[] = {0.0f,      -0.0f,      INFINITY,  -INFINITY, NAN,       -NAN,
                           FLT_MAX,   -FLT_MAX,   FLT_MIN,   -FLT_MIN,  1.0f,      -1.0f,
                           1e-7f,     1e-4f,      1e-5f,     999999.5f, 1e6f,      999999.0f,
                           0.03125f,  1.5f,       2.5f,      0.5f,      123.0f,    0.1015625f,
                           100000.5f, 100001.5f,  123456.5f, 123457.5f, 12345.25f, 12345.75f,
                           1.015625f, 9.9999949f, 9.999995f, 99999.95f, 0.1f,      1.0f / 3.0f};
        for (size_t i = 0; i < sizeof s / sizeof *s; i++) {
            g6(s[i]);
            g6(-s[i]);
        }
        for (uint32_t b = 1; b < 4096; b++) { /* denormals, both ends */
            g6(from_bits(b));
            g6(from_bits(0x007fffffu - b));
            g6(from_bits(0x80000000u | b));
        }
        g6(from_bits(0x7fc00001u)); /* NaN payloads, quiet and signalling */
        g6(from_bits(0xffc00001u));
        g6(from_bits(0x7f800001u));
        g6(from_bits(0xff800001u));
    }
    group_end("g6: zeros, inf, NaN, limits");
    char buf[16];
    CHECK(memcmp(buf, "0.1", (size_t)(fd_fmt_g6(buf, 0.1f) - buf)) == 0);
    CHECK(memcmp(buf, "-0", (size_t)(fd_fmt_g6(buf, -0.0f) - buf)) == 0);
    CHECK(memcmp(buf, "123456", (size_t)(fd_fmt_g6(buf, 123456.5f) - buf)) == 0); /* to even */
    CHECK(memcmp(buf, "123458", (size_t)(fd_fmt_g6(buf, 123457.5f) - buf)) == 0);
    CHECK(memcmp(buf, "1.5e-05", (size_t)(fd_fmt_g6(buf, 1.5e-5f) - buf)) == 0);
}

/* fd_fmt_json_g6: the recommendation lists' scores; a whole number must
 * still read as a float ("1.0"), anything with '.' or 'e' is g6's own. */
static void test_json_g6(void)
{
    static const struct {
        float f;
        const char *want;
    } c[] = {{1.0f, "1.0"},   {0.0f, "0.0"},           {-0.0f, "-0.0"},
             {-3.0f, "-3.0"}, {123456.0f, "123456.0"}, {0.5f, "0.5"},
             {1e6f, "1e+06"}, {1.5e-5f, "1.5e-05"},    {-2.25f, "-2.25"}};
    char buf[FD_FMT_G6_MAX + 2 + 1];
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        char *e = fd_fmt_json_g6(buf, c[i].f);
        *e = 0;
        CHECK(strcmp(buf, c[i].want) == 0);
        if (strcmp(buf, c[i].want) != 0)
            fprintf(stderr, "json_g6(%g): \"%s\", want \"%s\"\n", (double)c[i].f, buf, c[i].want);
    }
}

/* Every float whose decimal expansion has exactly 7 significant digits,
 * the last a 5: every float that is a tie when rounded to 6 digits. Such
 * a float is m / 2^j with m odd, j >= 1 and m * 5^j in [10^6, 10^7) (its
 * expansion is m * 5^j / 10^j), so j <= 10; one in 8 is checked negated
 * too. A tie never has the e-notation (it is at least 2^-10). */
static void test_g6_ties(void)
{
    group_begin();
    {
        uint64_t p5 = 1;
        for (int j = 1; j <= 10; j++) {
            p5 *= 5;
            uint64_t lo = (1000000 + p5 - 1) / p5, hi = (10000000 - 1) / p5;
            for (uint64_t m = lo | 1; m <= hi; m += 2) {
                float f = ldexpf((float)m, -j); /* exact: m < 2^24 */
                g6(f);
                if (m % 16 == 1) /* the sign is written apart from the digits */
                    g6(-f);
            }
        }
    }
    group_end("g6: every 6-digit tie");
}

/* Every exponent (both signs) with a few thousand mantissas: the ends and
 * random ones. */
static void test_g6_exponents(void)
{
    group_begin();
    {
        for (uint32_t s = 0; s < 2; s++)
            for (uint32_t eb = 0; eb < 256; eb++) {
                const uint32_t base = s << 31 | eb << 23;
                for (uint32_t m = 0; m < 16; m++) {
                    g6(from_bits(base | m));
                    g6(from_bits(base | (0x7fffffu - m)));
                    g6(from_bits(base | (0x400000u ^ m)));
                }
                for (int i = 0; i < 2000; i++)
                    g6(from_bits(base | (uint32_t)(xorshift() >> 41)));
            }
    }
    group_end("g6: every exponent");
}

/* The boundaries: 128 floats each side of 10^k, of 9.999995 * 10^k (where
 * the 6 digits carry into the next power), of 9.5 * 10^k and of
 * 999999.5, 1e-4, 9.999995e-5 and 1e-7 (the ends of the exact range and of
 * the fixed notation). */
static void test_g6_boundaries(void)
{
    group_begin();
    {
        for (int k = -12; k <= 8; k++) {
            const double c[] = {pow(10, k), 9.999995 * pow(10, k), 9.5 * pow(10, k),
                                5 * pow(10, k)};
            for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
                float f = (float)c[i];
                float up = f, down = f;
                for (int s = 0; s < 128; s++) {
                    g6(up);
                    g6(-up);
                    g6(down);
                    g6(-down);
                    up = nextafterf(up, INFINITY);
                    down = nextafterf(down, 0);
                }
            }
        }
        const float e[] = {999999.5f, 999999.4f, 1e6f, 1e-4f, 9.999995e-5f, 1e-5f, 1e-7f, 1e-8f};
        for (size_t i = 0; i < sizeof e / sizeof *e; i++) {
            float up = e[i], down = e[i];
            for (int s = 0; s < 4096; s++) {
                g6(up);
                g6(down);
                up = nextafterf(up, INFINITY);
                down = nextafterf(down, 0);
            }
        }
    }
    group_end("g6: boundaries");
}

static void test_g6_random(void)
{
    group_begin();
    {
        for (int i = 0; i < 1000000; i++)
            g6(from_bits((uint32_t)(xorshift() >> 32)));
    }
    group_end("g6: random bit patterns");
    /* within the exact range's exponents, 2^-25 .. 2^20, both signs */
    group_begin();
    {
        for (int i = 0; i < 2000000; i++) {
            uint64_t r = xorshift();
            uint32_t eb = 127 - 25 + (uint32_t)(r % 46);
            g6(from_bits((uint32_t)(r >> 63) << 31 | eb << 23 | (uint32_t)(r >> 8 & 0x7fffff)));
        }
    }
    group_end("g6: random, 1e-8 .. 2e6");
}

/* All 2^32 floats (on request: about 25 minutes). */
static void test_g6_all(void)
{
    group_begin();
    {
        uint32_t b = 0;
        do {
            g6(from_bits(b));
            if ((b & 0x0fffffffu) == 0x0fffffffu)
                fprintf(stderr, "  ... 0x%08" PRIx32 "\n", b);
        } while (++b != 0);
    }
    group_end("g6: all 2^32 floats");
}

/* ---- the user record suffixes that use them ------------------------------ */

/* fd_churn_user_format gives snprintf's " m %u %u %u %lld" (the format it
 * used) and fd_churn_user_parse reads the state back. */
static void test_churn_suffix(void)
{
    group_begin();
    {
        for (int i = 0; i < 200000; i++) {
            uint64_t r = xorshift();
            fd_churn_user c = {0};
            c.risk_q = (uint16_t)r;
            c.next_cp = (uint8_t)(r >> 16);
            c.flags = (uint8_t)(r >> 24);
            uint64_t t = xorshift();
            uint64_t a = t >> (t & 63);
            c.alert_ts = (int64_t)((r >> 32 & 1) ? 0 - a : a);
            if (i < 150000) { /* in the parser's range */
                c.next_cp %= FD_CHURN_MAX_CP + 1;
                c.flags &= 0x0f;
                c.alert_ts = (int64_t)(t % (uint64_t)FD_TS_MAX_MS);
                if (i % 100 == 0)
                    c.alert_ts = i % 200 ? 0 : FD_TS_MAX_MS;
            }
            char want[FD_CHURN_USER_TEXT_MAX], buf[FD_CHURN_USER_TEXT_MAX + 1];
            int n = snprintf(want, sizeof want, " m %u %u %u %lld", (unsigned)c.risk_q,
                             (unsigned)c.next_cp, (unsigned)c.flags, (long long)c.alert_ts);
            memset(buf, SENTINEL, sizeof buf);
            size_t len = fd_churn_user_format(&c, buf);
            compared++;
            if (n < 0 || len != (size_t)n || strcmp(buf, want) != 0) { /* NUL added */
                report("churn suffix", want, n < 0 ? 0 : (size_t)n, buf, len);
                continue;
            }
            if (i >= 150000)
                continue;
            fd_churn_user d;
            memset(&d, 0xff, sizeof d);
            char err[128];
            if (fd_churn_user_parse(&d, buf, len, err, sizeof err) != 0 || d.risk_q != c.risk_q ||
                d.next_cp != c.next_cp || d.flags != c.flags || d.alert_ts != c.alert_ts)
                report("churn suffix parsed back", want, (size_t)n, err, strlen(err));
        }
    }
    group_end("churn suffix");
}

/* fd_mf_user_format's text after the factors gives snprintf's " %ld" and
 * "%c%x" (the formats it used), and fd_mf_user_parse reads the state back. */
static void test_mf_suffix(void)
{
    group_begin();
    {
        for (int i = 0; i < 200000; i++) {
            fd_mf_user m;
            memset(&m, 0, sizeof m);
            m.has = 1;
            int k = 1 + (int)(xorshift() % FD_MF_USER_K);
            for (int f = 0; f < FD_MF_USER_K; f++) { /* bfloat16 within the clamp */
                float x = (float)((double)(xorshift() >> 11) * 0x1p-53 * 2 - 1) * FD_MF_CLAMP;
                uint32_t bits;
                memcpy(&bits, &x, sizeof bits);
                m.v[f] = (uint16_t)(bits >> 16);
            }
            uint64_t r = xorshift();
            m.recs_min = (int32_t)((r >> 33) >> (r & 31)); /* 0 .. INT32_MAX */
            if (i % 1000 == 0)
                m.recs_min = i % 2000 ? 0 : INT32_MAX;
            const bool parsable = i < 150000;
            if (!parsable)
                m.recs_min = (int32_t)(uint32_t)xorshift();
            int nb = (int)(xorshift() % (FD_MF_USER_BOUGHT + 1));
            for (int b = 0; b < nb; b++) {
                uint64_t h = xorshift();
                m.bought[b] = (uint32_t)(h >> 32) >> (h & 31);
                if (m.bought[b] == 0)
                    m.bought[b] = 1;
            }
            char buf[FD_MF_USER_TEXT_MAX], want[FD_MF_USER_TEXT_MAX];
            memset(buf, SENTINEL, sizeof buf);
            size_t len = fd_mf_user_format(&m, k, buf);
            size_t pre = 3 + (size_t)(2 * k + 2) / 3 * 4; /* " f " and the factors */
            int n = snprintf(want, sizeof want, "%.*s %ld", (int)pre, buf, (long)m.recs_min);
            for (int b = 0; b < FD_MF_USER_BOUGHT && m.bought[b] && n > 0; b++)
                n += snprintf(want + n, sizeof want - (size_t)n, "%c%x", b ? ',' : ' ',
                              (unsigned)m.bought[b]);
            compared++;
            if (n < 0 || len != (size_t)n || len >= FD_MF_USER_TEXT_MAX || strcmp(buf, want) != 0) {
                report("mf suffix", want, n < 0 ? 0 : (size_t)n, buf, len);
                continue;
            }
            if (!parsable)
                continue;
            fd_mf_user back;
            char err[160];
            if (fd_mf_user_parse(&back, k, buf, len, err, sizeof err) != 0 || !back.has ||
                back.recs_min != m.recs_min || memcmp(back.v, m.v, (size_t)k * 2) != 0 ||
                memcmp(back.bought, m.bought, sizeof m.bought) != 0)
                report("mf suffix parsed back", want, (size_t)n, buf, len);
        }
    }
    group_end("mf suffix");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--all-floats") == 0) {
        test_g6_all();
        return check_report();
    }
    test_risk4_all();
    test_integers();
    test_g6_specials();
    test_json_g6();
    test_g6_ties();
    test_g6_exponents();
    test_g6_boundaries();
    test_g6_random();
    test_churn_suffix();
    test_mf_suffix();
    return check_report();
}
