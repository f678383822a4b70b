/* cli.c - see cli.h. */
#include "tools/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t fd_cli_stop;

static void on_stop(int sig)
{
    (void)sig;
    if (fd_cli_stop)
        _exit(130);
    fd_cli_stop = 1;
}

void fd_cli_catch_stop(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

double fd_cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fd_cli_parse_u64(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = (*s >= '0' && *s <= '9') ? strtoull(s, &end, 10) : 0;
    if (!(*s >= '0' && *s <= '9') || errno || *end || v < min || v > max) {
        fprintf(stderr,
                "%s: %s: invalid value '%s' (expected an integer in %" PRIu64 "..%" PRIu64 ")\n",
                prog, opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int fd_cli_args_done(int pr, const char *prog, void (*usage)(FILE *))
{
    if (pr == 1) {
        usage(stdout);
        return 0;
    }
    if (pr < 0) {
        fprintf(stderr, "%s --help shows the options.\n", prog);
        return 2;
    }
    return -1;
}

void fd_cli_progress_show(fd_cli_progress *p, uint64_t done, uint64_t total, const char *text,
                          int final)
{
    double now = fd_cli_now_s();
    if (p->tty < 0)
        p->tty = isatty(STDERR_FILENO) == 1;
    if (!final && now < p->next)
        return;
    p->next = now + (p->tty ? 0.2 : 2.0);
    double frac = total ? (double)done / (double)total : 0;
    if (frac > 1)
        frac = 1;
    char line[512];
    int n;
    if (p->tty) {
        char bar[33];
        int full = (int)(frac * 30 + 0.5);
        for (int i = 0; i < 30; i++)
            bar[i] = i < full ? '#' : '.';
        bar[30] = 0;
        if (total)
            n = snprintf(line, sizeof line, "\r%s [%s] %3d%%  %" PRIu64 "/%" PRIu64 " %s  %s",
                         p->label, bar, (int)(frac * 100), done, total, p->unit, text ? text : "");
        else
            n = snprintf(line, sizeof line, "\r%s %" PRIu64 " %s  %s", p->label, done, p->unit,
                         text ? text : "");
        size_t len = n < 0 ? 0 : (size_t)n >= sizeof line ? sizeof line - 1 : (size_t)n;
        fputs(line, stderr);
        for (size_t i = len; i < p->width; i++) /* blank what the last line had beyond */
            fputc(' ', stderr);
        p->width = len;
        if (final)
            fputc('\n', stderr);
    } else {
        if (total)
            fprintf(stderr, "%s: %" PRIu64 "/%" PRIu64 " %s (%d%%) %s\n", p->label, done, total,
                    p->unit, (int)(frac * 100), text ? text : "");
        else
            fprintf(stderr, "%s: %" PRIu64 " %s %s\n", p->label, done, p->unit, text ? text : "");
    }
    fflush(stderr);
}
