/*
 * replay_reader.c - a dataset file as a time-ordered stream of events (see
 * replay_reader.h for the two passes and why).
 */
#include "tools/replay_reader.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "tools/replay_formats.h"

typedef struct row_ref {
    int64_t ts;
    uint64_t line;
    off_t off;
} row_ref;

struct fd_replay {
    fd_replay_opts o;
    char *path;
    FILE *f;
    fd_rows *rows;
    row_ref *refs;
    size_t n_refs, cap_refs, next;
    off_t pos; /* where f is, for fd_replay_next (-1: unknown) */
    char *line;
    size_t line_cap;
    bool loaded;
    fd_replay_stats st;
};

fd_replay *fd_replay_open(const char *path, const fd_replay_opts *opts, char *errstr,
                          size_t errstr_size)
{
    fd_replay *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    r->o = *opts;
    if (!r->o.prog)
        r->o.prog = "funnelctl";
    r->path = strdup(path);
    r->rows = fd_rows_new(opts->format, errstr, errstr_size);
    if (!r->path || !r->rows) {
        if (!r->path)
            snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    r->f = fopen(path, "r");
    if (!r->f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fileno(r->f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(errstr, errstr_size, "%s: not a regular file", path);
        goto fail;
    }
    return r;
fail:
    fd_replay_free(r);
    return NULL;
}

void fd_replay_free(fd_replay *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    fd_rows_free(r->rows);
    free(r->refs);
    free(r->line);
    free(r->path);
    free(r);
}

const fd_replay_stats *fd_replay_get_stats(const fd_replay *r)
{
    return &r->st;
}

/* Count a skipped row under its reason (static names; past the table's size
 * everything else goes under "other"). */
static void count_reason(fd_replay_stats *st, const char *reason)
{
    for (int i = 0; i < st->n_reasons; i++)
        if (!strcmp(st->reason[i], reason)) {
            st->count[i]++;
            return;
        }
    if (st->n_reasons == FD_REPLAY_MAX_REASONS - 1)
        reason = "other";
    if (st->n_reasons == FD_REPLAY_MAX_REASONS) {
        st->count[FD_REPLAY_MAX_REASONS - 1]++;
        return;
    }
    st->reason[st->n_reasons] = reason;
    st->count[st->n_reasons++] = 1;
}

static int by_time(const void *a, const void *b)
{
    const row_ref *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line; /* stable: file order */
}

int fd_replay_load(fd_replay *r)
{
    if (r->loaded)
        return 0;
    r->loaded = true;
    fd_replay_stats *st = &r->st;
    st->sorted = true;
    fd_event ev;
    char err[512];
    int rc = 0;
    off_t off = 0;
    ssize_t n;
    while ((n = getline(&r->line, &r->line_cap, r->f)) >= 0) {
        off_t here = off;
        off += n;
        st->lines++;
        if (r->o.tick && (st->lines & 4095) == 0)
            r->o.tick(r->o.tick_ctx);
        size_t len = (size_t)n;
        if (len > 0 && r->line[len - 1] == '\n')
            len--;
        const char *reason;
        fd_row_result res =
            fd_rows_parse(r->rows, r->line, len, st->lines, &ev, &reason, err, sizeof err);
        if (res == FD_ROW_IGNORED)
            continue;
        st->rows++;
        if (res == FD_ROW_SKIPPED) {
            st->skipped++;
            count_reason(st, reason);
        } else if (res == FD_ROW_BAD) {
            st->skipped++;
            st->malformed++;
            count_reason(st, reason);
            if (r->o.strict) {
                fprintf(stderr, "%s: %s:%" PRIu64 ": malformed row (%s): %s; stopping (--strict)\n",
                        r->o.prog, r->path, st->lines, reason, err);
                rc = -2;
                break;
            }
            if (st->malformed <= r->o.max_reports)
                fprintf(stderr, "%s: %s:%" PRIu64 ": skipped (%s): %s\n", r->o.prog, r->path,
                        st->lines, reason, err);
            if (st->malformed == r->o.max_reports + 1)
                fprintf(stderr, "%s: %s: further malformed rows are counted, not shown\n",
                        r->o.prog, r->path);
        } else {
            if (r->n_refs == r->cap_refs) {
                size_t cap = r->cap_refs ? r->cap_refs * 2 : 4096;
                row_ref *p = realloc(r->refs, cap * sizeof *p);
                if (!p) {
                    fprintf(stderr, "%s: %s: out of memory after %" PRIu64 " rows\n", r->o.prog,
                            r->path, st->rows);
                    rc = -1;
                    break;
                }
                r->refs = p;
                r->cap_refs = cap;
            }
            if (r->n_refs && ev.ts_ms < r->refs[r->n_refs - 1].ts)
                st->sorted = false;
            r->refs[r->n_refs++] = (row_ref){ev.ts_ms, st->lines, here};
            st->events++;
        }
        if (r->o.limit && st->rows >= r->o.limit)
            break;
    }
    if (rc == 0 && ferror(r->f)) {
        fprintf(stderr, "%s: %s: read error: %s\n", r->o.prog, r->path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && r->o.sort && !st->sorted)
        qsort(r->refs, r->n_refs, sizeof *r->refs, by_time);
    if (r->n_refs) {
        int64_t lo = r->refs[0].ts, hi = lo;
        for (size_t i = 1; i < r->n_refs; i++) {
            lo = r->refs[i].ts < lo ? r->refs[i].ts : lo;
            hi = r->refs[i].ts > hi ? r->refs[i].ts : hi;
        }
        st->first_ts = lo;
        st->last_ts = hi;
    }
    r->pos = -1;
    if (rc != 0)
        r->n_refs = 0; /* a failed load hands nothing out */
    return rc;
}

int fd_replay_next(fd_replay *r, fd_event *ev)
{
    if (!r->loaded || r->next >= r->n_refs)
        return 0;
    const row_ref *ref = &r->refs[r->next];
    if (r->pos != ref->off) {
        clearerr(r->f);
        if (fseeko(r->f, ref->off, SEEK_SET) != 0) {
            fprintf(stderr, "%s: %s: seek: %s\n", r->o.prog, r->path, strerror(errno));
            return -1;
        }
    }
    ssize_t n = getline(&r->line, &r->line_cap, r->f);
    if (n < 0) {
        fprintf(stderr, "%s: %s:%" PRIu64 ": cannot read the row again (%s)\n", r->o.prog, r->path,
                ref->line, ferror(r->f) ? strerror(errno) : "end of file");
        return -1;
    }
    r->pos = ref->off + n;
    size_t len = (size_t)n;
    if (len > 0 && r->line[len - 1] == '\n')
        len--;
    const char *reason;
    char err[512];
    if (fd_rows_parse(r->rows, r->line, len, ref->line, ev, &reason, err, sizeof err) !=
            FD_ROW_EVENT ||
        ev->ts_ms != ref->ts) {
        fprintf(stderr, "%s: %s:%" PRIu64 ": the row changed since it was read\n", r->o.prog,
                r->path, ref->line);
        return -1;
    }
    r->next++;
    return 1;
}
