/*
 * hot.h - how models/ builds its hottest loops for the machine it runs on
 * (models/lr.c explains the choice): HOT functions get an AVX-512, an AVX2
 * and a baseline clone, picked once at start by the dynamic linker, and
 * the helpers they call are INL (always inlined), so they are vectorised
 * for the clone's ISA too. The sums are in a fixed order and floating
 * point is not contracted (C11, -ffp-contract=off), so every clone gives
 * the same bits. FD_NO_CLONES (or FD_LR_NO_CLONES) builds one ISA only,
 * which is how that is checked.
 */
#ifndef FD_HOT_H
#define FD_HOT_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) &&       \
    !defined(__SANITIZE_THREAD__) /* an ifunc resolver runs before TSan is up */ &&                \
    !defined(FD_NO_CLONES) && !defined(FD_LR_NO_CLONES)
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif
#define INL static inline __attribute__((always_inline))

#endif
