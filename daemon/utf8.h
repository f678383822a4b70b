/*
 * utf8.h - the one UTF-8 decoder of the project: --print-config's quoting
 * (config_output.c), the JSON logger (log.c) and the /api/ views (views.c)
 * all need to know whether the bytes at p begin a well-formed sequence.
 */
#ifndef FD_UTF8_H
#define FD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (2..4) of the well-formed UTF-8 sequence of a non-ASCII lead byte
 * at p, within avail bytes, and its code point in *cp; 0 when it is not
 * one (a stray or truncated byte, an overlong form, a surrogate, beyond
 * U+10FFFF). */
static inline size_t fd_utf8_seq(const unsigned char *p, size_t avail, uint32_t *cp)
{
    unsigned c = p[0];
    size_t n = c >= 0xf0 && c < 0xf5   ? 4
               : c >= 0xe0 && c < 0xf0 ? 3
               : c >= 0xc2 && c < 0xe0 ? 2
                                       : 0;
    if (n == 0 || n > avail)
        return 0;
    uint32_t v = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    if ((n == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) ||
        (n == 4 && (v < 0x10000 || v > 0x10ffff)))
        return 0;
    *cp = v;
    return n;
}

#endif
