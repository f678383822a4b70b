/*
 * fmt.h - number formatting without printf, for the per-user write path.
 *
 * Every flush formats the record of every changed user (integers, hashes,
 * a churn risk, recommendation scores); snprintf parses its format string
 * and goes through glibc's generic conversion for each number, which is
 * most of the cost. Each function here writes exactly the bytes of one
 * snprintf conversion, and tests/unit/test_fmt.c and tests/fuzz/fuzz_fmt.c
 * compare them with glibc's snprintf (all inputs where that is feasible):
 * a reader of Redis cannot tell which one wrote a value.
 *
 * Each function writes into p (the caller has room for the _MAX bytes
 * below) and returns the pointer past the last byte written; no NUL is
 * written. Pure C: no I/O, no state, any thread.
 */
#ifndef FD_FMT_H
#define FD_FMT_H

#include <stdint.h>

#define FD_FMT_U64_MAX   20 /* "18446744073709551615" */
#define FD_FMT_I64_MAX   20 /* "-9223372036854775808" */
#define FD_FMT_HEX32_MAX 8  /* "ffffffff" */
#define FD_FMT_RISK4_MAX 6  /* "0.1234", "1.0000" */
#define FD_FMT_G6_MAX    12 /* "-1.17549e-38"; "-nan", "-inf" are shorter */

/* "00", "01", ... "99": the two digits of n at 2 * n (for callers that
 * write fixed-width digit groups, as features.c's decayed values). */
extern const char fd_fmt_digit_pairs[201];

/* v as "%llu" (decimal, no leading zeros; "0" for 0). */
char *fd_fmt_u64(char *p, uint64_t v);

/* v as "%lld" ('-' and the magnitude; INT64_MIN included). */
char *fd_fmt_i64(char *p, int64_t v);

/* v as "%x" (lowercase hex, no leading zeros; "0" for 0). */
char *fd_fmt_hex32(char *p, uint32_t v);

/* The churn risk q / 65535 as "%.4f" of the double q / 65535.0 (what
 * fd_churn_risk returns): "0.0000" .. "1.0000", for every q. */
char *fd_fmt_risk4(char *p, uint16_t q);

/* The N of fd_fmt_risk4's "N / 10^4" (0 .. 10000): two q with the same N
 * print the same (fmt.c says why this is what printf would round to). */
static inline uint32_t fd_fmt_risk4_n(uint16_t q)
{
    return ((uint32_t)q * 20000u + 65535u) / 131070u; /* < 2^31 */
}

/* f as "%.6g" of (double)f, for every float (signed zeros, denormals, NaN
 * and infinities included). Computed without printf for 1e-7 <= |f| <
 * 999999.5 and zeros; other values go through snprintf (same bytes). */
char *fd_fmt_g6(char *p, float f);

/* A finite f as a JSON number that a reader parses as a float: fd_fmt_g6,
 * and ".0" after it when that has neither '.' nor 'e' ("1" -> "1.0",
 * "-0" -> "-0.0"). Needs FD_FMT_G6_MAX + 2 bytes. Not for NaN or inf,
 * which JSON cannot say. */
char *fd_fmt_json_g6(char *p, float f);

#endif
