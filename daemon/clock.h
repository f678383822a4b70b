/*
 * clock.h - the monotonic clock and short sleeps of the I/O edge (pipeline/
 * and daemon/). features/ and models/ never read a clock: they get event
 * time as arguments.
 */
#ifndef FD_CLOCK_H
#define FD_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. Any thread. */
int64_t fd_mono_ms(void);

/* Sleep ms milliseconds (interrupted sleeps return early). Any thread. */
void fd_sleep_ms(int ms);

#endif
