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

#endif
