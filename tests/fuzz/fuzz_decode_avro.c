/*
 * fuzz_decode_avro.c - libFuzzer target for the avro decoder; the checks
 * are in fuzz_decode.h.
 */
#include "tests/fuzz/fuzz_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decode(FD_FMT_AVRO, data, size);
}
