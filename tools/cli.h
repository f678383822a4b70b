/*
 * cli.h - what funnelctl's subcommands share: stop signals, the monotonic
 * clock in seconds, and integer options with one error format.
 */
#ifndef FD_CLI_H
#define FD_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

/* Set by the first SIGINT/SIGTERM once fd_cli_catch_stop() ran; a second
 * signal exits at once with status 130. */
extern volatile sig_atomic_t fd_cli_stop;

/* Install the SIGINT/SIGTERM handlers above. Main thread, once. */
void fd_cli_catch_stop(void);

/* CLOCK_MONOTONIC in seconds. */
double fd_cli_now_s(void);

/* Parse a decimal integer option value in min..max into *out. On error
 * prints "PROG: OPT: invalid value 'S' (expected an integer in MIN..MAX)"
 * and returns -1. */
int fd_cli_parse_u64(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
                     uint64_t *out);

/* What a subcommand does with its parse_args result pr (1: --help, < 0:
 * usage error, else go on): prints the usage to stdout, or the "--help"
 * hint to stderr. Returns the exit status (0 or 2), or -1 to go on. */
int fd_cli_args_done(int pr, const char *prog, void (*usage)(FILE *));

/* Progress of a long-running command on stderr: on a terminal a bar
 * redrawn in place ("\rLABEL [#####.....]  45%  DONE/TOTAL UNIT  TEXT"; no
 * bar when total is 0) at most 5 times a second; otherwise one plain line
 * ("LABEL: DONE/TOTAL UNIT (45%) TEXT") at most every 2 s, so a log or a
 * pipe gets lines, not carriage returns. final forces the last one (and
 * ends the terminal's line). */
typedef struct fd_cli_progress {
    const char *label, *unit;
    int tty; /* -1: decide at the first call (isatty of stderr) */
    double next;
    size_t width; /* of the last terminal line, to blank it */
} fd_cli_progress;
void fd_cli_progress_show(fd_cli_progress *p, uint64_t done, uint64_t total, const char *text,
                          int final);

#endif
