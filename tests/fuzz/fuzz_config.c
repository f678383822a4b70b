/*
 * fuzz_config.c - libFuzzer target for the config loader: any bytes must
 * load or fail with a "FILE:LINE:COLUMN: key: msg" error, never crash, hang
 * or leak. A successful load is also printed (to a null stream) and the
 * printed YAML must load back, so the printer is fuzzed too.
 */
#include "daemon/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fd_config cfg;
    char err[512];
    fd_config_defaults(&cfg); /* a load frees what it replaces */
    if (fd_config_load_buffer(&cfg, "fuzz", (const char *)data, size, err, sizeof err) != 0) {
        /* every error names the file and a position */
        if (strncmp(err, "fuzz:", 5) != 0)
            abort();
        fd_config_free(&cfg);
        return 0;
    }
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f) {
        fd_config_print(&cfg, f);
        fclose(f);
        fd_config again = {0};
        /* what we print must load back */
        if (fd_config_load_buffer(&again, "print", out, len, err, sizeof err) != 0)
            abort();
        fd_config_free(&again);
        free(out);
    }
    fd_config_free(&cfg);
    fd_config_free(&cfg); /* double free must be a no-op */
    return 0;
}
