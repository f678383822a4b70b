/*
 * fmt.c - see fmt.h.
 *
 * Each function reproduces one snprintf conversion of glibc byte for byte.
 * The integer ones are exact by construction (digit pairs from the low end,
 * as features.c's record writer has always done). The two fractional ones
 * rest on one fact about glibc: its printf converts the exact binary value
 * of the double it is given and rounds that value correctly, to nearest
 * with ties to even in the default rounding mode (funneld never changes
 * it; the functions here assume it). So whenever the decimal rounding can
 * be done exactly in integers (or in doubles whose results are exact), the
 * digits are the same; the comments below say why they can be here, and
 * tests/unit/test_fmt.c checks every input or a large sample.
 */
#include "features/fmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char fd_fmt_digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

/* "%llu": two digits per division, from the low end. Exact by
 * construction; test_fmt compares edge values and millions of random ones. */
char *fd_fmt_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 20;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        tmp[--n] = fd_fmt_digit_pairs[d + 1];
        tmp[--n] = fd_fmt_digit_pairs[d];
    }
    if (v >= 10) {
        unsigned d = (unsigned)v * 2;
        tmp[--n] = fd_fmt_digit_pairs[d + 1];
        tmp[--n] = fd_fmt_digit_pairs[d];
    } else {
        tmp[--n] = (char)('0' + v);
    }
    memcpy(p, tmp + n, (size_t)(20 - n));
    return p + (20 - n);
}

/* "%lld": the magnitude is taken in uint64_t, so INT64_MIN needs no
 * special case (0 - 2^63 mod 2^64 is 2^63). */
char *fd_fmt_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return fd_fmt_u64(p, 0 - (uint64_t)v);
    }
    return fd_fmt_u64(p, (uint64_t)v);
}

/* "%x": as many nibbles as v has significant ones (one for 0). */
char *fd_fmt_hex32(char *p, uint32_t v)
{
    static const char hex[16] = "0123456789abcdef";
    int n = v ? (32 - __builtin_clz(v) + 3) / 4 : 1;
    for (int i = n - 1; i >= 0; i--) {
        p[i] = hex[v & 15];
        v >>= 4;
    }
    return p + n;
}

/*
 * "%.4f" of x = q / 65535.0. Let t = 10^4 q / 65535 (exact rational); the
 * output is "N/10^4" with N = t rounded to an integer, computed here as
 * floor((20000 q + 65535) / 131070) = floor(t + 1/2).
 *
 * Why that is what glibc prints from the double x: glibc rounds 10^4 x
 * (exactly) to nearest. x is q / 65535 correctly rounded, so
 * |10^4 x - t| <= 10^4 * 2^-53 < 1.2e-12. And t is never near a tie:
 * t - (m + 1/2) = (20000 q - 65535 (2m + 1)) / 131070, an even number
 * minus an odd one over 131070, so |t - (m + 1/2)| >= 1/131070 > 7.6e-6.
 * 10^4 x therefore lies on the same side of every tie as t and rounds to
 * the same N (and, t being no tie, floor(t + 1/2) is that nearest N).
 * test_fmt checks all 65536 q.
 */
char *fd_fmt_risk4(char *p, uint16_t q)
{
    uint32_t n = fd_fmt_risk4_n(q); /* 0 .. 10000 */
    uint32_t hi = n / 100 % 100, lo = n % 100;
    p[0] = (char)('0' + n / 10000);
    p[1] = '.';
    memcpy(p + 2, fd_fmt_digit_pairs + 2 * hi, 2);
    memcpy(p + 4, fd_fmt_digit_pairs + 2 * lo, 2);
    return p + 6;
}

static char *g6_printf(char *p, float f)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.6g", (double)f);
    n = n < 0 ? 0 : n > FD_FMT_G6_MAX ? FD_FMT_G6_MAX : n; /* never: at most 12 */
    memcpy(p, tmp, (size_t)n);
    return p + n;
}

/* 10^0 .. 10^12: exact doubles (5^12 < 2^53). */
static const double pow10_exact[13] = {1e0, 1e1, 1e2, 1e3,  1e4,  1e5, 1e6,
                                       1e7, 1e8, 1e9, 1e10, 1e11, 1e12};

/*
 * "%.6g" of (double)f. %g with precision P = 6: let X be the decimal
 * exponent of the value rounded to 6 significant digits; when
 * -4 <= X < 6 it is printed as %f with 5 - X decimals, otherwise as %e
 * with 5; then trailing zeros of the fraction are removed, and the '.' when
 * nothing follows it.
 *
 * For a float v = |f| we pick p10 in 0..12 with r = v * 10^p10 in
 * [1e5, 1e6), by exact comparisons (the estimate from the binary exponent
 * is only a starting point). r is exact: v's 24-bit mantissa times 5^p10
 * (< 2^28) fits a double's 53 bits, and 10^p10 is itself exact. So rounding
 * r to an integer D (ties to even; r < 2^51) is exactly glibc's rounding of
 * v to 6 significant digits: D's digits are the digits, X = 5 - p10, and a
 * carry to D = 10^6 means D = 100000 and X + 1 (the %f rounding with one
 * decimal fewer then gives the same power of ten). p10 <= 12 covers
 * v >= 1e-7, i.e. X >= -7; v < 999999.5 keeps X <= 5 (P - 1) after
 * rounding. Zeros print "0" / "-0". The rest (|f| < 1e-7, denormals,
 * |f| >= 999999.5, infinities, NaN) goes through snprintf itself.
 *
 * test_fmt checks every rounding tie of a float at 6 digits, every
 * exponent with thousands of mantissas, the boundaries and millions of
 * random floats; `test_fmt --all-floats` checks all 2^32 of them.
 */
char *fd_fmt_g6(char *p, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const int eb = (int)(bits >> 23 & 0xff);
    const double v = fabs((double)f);
    if (v == 0) {
        if (bits >> 31)
            *p++ = '-';
        *p++ = '0';
        return p;
    }
    if (eb == 0 || !(v < 999999.5)) /* denormal, too large, inf, NaN */
        return g6_printf(p, f);

    /* v in [2^e2, 2^(e2+1)); k ~ floor(e2 * log10(2)) (1233 / 4096) */
    const int e2 = eb - 127;
    const int k = e2 >= 0 ? (e2 * 1233) >> 12 : -((-e2 * 1233 + 4095) >> 12);
    int p10 = 5 - k;
    p10 = p10 < 0 ? 0 : p10 > 12 ? 12 : p10;
    double r = v * pow10_exact[p10];
    while (r >= 1e6) /* stops at p10 = 0 at the latest: v < 1e6 */
        r = v * pow10_exact[--p10];
    while (r < 1e5) {
        if (p10 == 12)
            return g6_printf(p, f);
        r = v * pow10_exact[++p10];
    }
    /* to nearest, ties to even, in the default rounding mode: adding
     * 1.5 * 2^52 pushes the fraction out of the mantissa (as features.c's
     * rnd); the same rounding as nearbyint, without the call */
    uint32_t d = (uint32_t)((r + 0x1.8p52) - 0x1.8p52);
    int x = 5 - p10;
    if (d == 1000000) {
        d = 100000;
        x++;
    }

    char dg[6];
    memcpy(dg, fd_fmt_digit_pairs + 2 * (d / 10000), 2);
    memcpy(dg + 2, fd_fmt_digit_pairs + 2 * (d / 100 % 100), 2);
    memcpy(dg + 4, fd_fmt_digit_pairs + 2 * (d % 100), 2);
    int len = 6; /* significant digits without trailing zeros; dg[0] != '0' */
    while (dg[len - 1] == '0')
        len--;

    if (bits >> 31)
        *p++ = '-';
    if (x >= 0) { /* "123.45", "123456" */
        memcpy(p, dg, (size_t)x + 1);
        p += x + 1;
        if (len > x + 1) {
            *p++ = '.';
            memcpy(p, dg + x + 1, (size_t)(len - x - 1));
            p += len - x - 1;
        }
    } else if (x >= -4) { /* "0.00012345" */
        memcpy(p, "0.000", (size_t)(1 - x));
        p += 1 - x;
        memcpy(p, dg, (size_t)len);
        p += len;
    } else { /* "1.2345e-05": X is -5 .. -7 here */
        *p++ = dg[0];
        if (len > 1) {
            *p++ = '.';
            memcpy(p, dg + 1, (size_t)(len - 1));
            p += len - 1;
        }
        memcpy(p, "e-0", 3);
        p[3] = (char)('0' - x);
        p += 4;
    }
    return p;
}

char *fd_fmt_json_g6(char *p, float f)
{
    char *e = fd_fmt_g6(p, f);
    if (!memchr(p, '.', (size_t)(e - p)) && !memchr(p, 'e', (size_t)(e - p))) {
        memcpy(e, ".0", 2);
        e += 2;
    }
    return e;
}
