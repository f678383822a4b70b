/*
 * replay_reader.h - a dataset file read as a stream of events, in time
 * order: what `funnelctl replay` produces and `funnelctl eval --input`
 * learns from.
 *
 * Two passes over the file. fd_replay_load reads every line once, parses
 * it (tools/replay_formats.h), reports and counts the rows it cannot use,
 * and keeps, per accepted row, only its time, line number and byte offset
 * (32 bytes a row: MovieLens latest-small takes 3 MB, not the 130 MB its
 * events would). With sorting on, the rows are then ordered by time, ties
 * in file order (a stable sort). fd_replay_next re-reads each row at its
 * offset and parses it again, so memory stays small and the file is read
 * sequentially when it is already in time order.
 *
 * The file must be a regular, seekable file. One thread.
 */
#ifndef FD_REPLAY_READER_H
#define FD_REPLAY_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "features/event.h"

#define FD_REPLAY_MAX_REASONS 24

typedef struct fd_replay_opts {
    int format;           /* fd_row_format */
    const char *prog;     /* prefix of the messages on stderr */
    bool strict;          /* stop at the first malformed row */
    bool sort;            /* hand events out in time order (stable) */
    uint64_t limit;       /* read only the first N rows (0 = all) */
    uint64_t max_reports; /* malformed rows printed on stderr; the rest are counted */
    /* called every few thousand lines of fd_replay_load (may be NULL) */
    void (*tick)(void *ctx);
    void *tick_ctx;
} fd_replay_opts;

typedef struct fd_replay_stats {
    uint64_t lines;     /* lines read */
    uint64_t rows;      /* data rows (not blank, not the header) */
    uint64_t events;    /* rows that made an event */
    uint64_t skipped;   /* rows left out: malformed plus mapped out */
    uint64_t malformed; /* of which malformed */
    bool sorted;        /* the accepted rows were already in time order */
    int n_reasons;
    const char *reason[FD_REPLAY_MAX_REASONS]; /* static names */
    uint64_t count[FD_REPLAY_MAX_REASONS];
    int64_t first_ts, last_ts; /* of the events, in time order (0 when none) */
} fd_replay_stats;

typedef struct fd_replay fd_replay;

/* Open path for format opts->format. NULL on error (the file cannot be
 * opened, out of memory) with a message naming the file in errstr. The
 * options are copied; prog must outlive the reader. Free with
 * fd_replay_free. */
fd_replay *fd_replay_open(const char *path, const fd_replay_opts *opts, char *errstr,
                          size_t errstr_size);
/* NULL is accepted. */
void fd_replay_free(fd_replay *r);

/* The first pass (once). Returns 0; -1 on a read error or out of memory
 * (message printed); -2 when opts.strict and a row was malformed (it was
 * printed). After a failure fd_replay_next hands nothing out. */
int fd_replay_load(fd_replay *r);

/* The next event in order into *ev. Returns 1, 0 at the end, -1 on a read
 * error (printed). */
int fd_replay_next(fd_replay *r, fd_event *ev);

/* Counts so far; stats->events is what fd_replay_next will hand out. */
const fd_replay_stats *fd_replay_get_stats(const fd_replay *r);

#endif
