/*
 * replay_formats.h - one row of a public dataset (or of our own JSON lines)
 * turned into funneld's event: the row parsers of `funnelctl replay` and
 * `funnelctl eval --input`.
 *
 * Pure C: no I/O, no clock, no allocation after fd_rows_new. A parser keeps
 * a little state (which MovieLens layout the file has, whether the header
 * line was seen), so one parser reads one file, in one thread.
 *
 * Mappings (docs/man/funnelctl.1, "replay"):
 *   movielens  u.data "user<TAB>item<TAB>rating<TAB>ts" (no header) or
 *              ratings.csv "userId,movieId,rating,timestamp" (header), told
 *              apart by the first line: rating >= 4 is a purchase, else a
 *              click; ts in seconds
 *   taobao     UserBehavior.csv "user,item,category,behavior,ts": pv and fav
 *              are clicks, cart a cart, buy a purchase; ts in seconds
 *   rees46     "event_time,event_type,product_id,category_id,category_code,
 *              brand,price,user_id,user_session" (header): view is a click,
 *              cart a cart, purchase a purchase with its price (currency
 *              units, as the schema's price); remove_from_cart is skipped
 *   json       funneld's own event schema, one object per line
 * Dataset rows get the event id "FORMAT-LINE"; ids are the dataset's
 * decimal numbers as strings. Every event handed out passed
 * fd_event_validate (no future check: a dataset has no reference time).
 */
#ifndef FD_REPLAY_FORMATS_H
#define FD_REPLAY_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

typedef enum fd_row_format {
    FD_ROWS_MOVIELENS = 0,
    FD_ROWS_TAOBAO,
    FD_ROWS_REES46,
    FD_ROWS_JSON,
    FD_ROWS__COUNT
} fd_row_format;

/* "movielens" / "taobao" / "rees46" / "json"; -1 when unknown. */
int fd_row_format_parse(const char *s);
const char *fd_row_format_name(int f);
/* "movielens, taobao, rees46 or json", for messages. */
const char *fd_row_format_list(void);

/* What fd_rows_parse made of a line. */
typedef enum fd_row_result {
    FD_ROW_EVENT = 0, /* *ev holds a valid event */
    FD_ROW_IGNORED,   /* a blank line or the header: not a row */
    FD_ROW_SKIPPED,   /* a well-formed row the mapping leaves out (reason) */
    FD_ROW_BAD,       /* a malformed row (reason, and a message in errstr) */
} fd_row_result;

typedef struct fd_rows fd_rows;

/* A parser for one file of format f. NULL when out of memory (or f is not
 * a format), with a message in errstr. Free with fd_rows_free. */
fd_rows *fd_rows_new(int f, char *errstr, size_t errstr_size);
/* NULL is accepted. */
void fd_rows_free(fd_rows *p);

/*
 * Parse one line (len bytes, without its newline; a trailing CR is
 * ignored) of the file, line number lineno (1-based, for the event id).
 * Lines must be handed in file order the first time; a line already seen
 * may be parsed again later (the same result: replay re-reads rows after
 * sorting them). On FD_ROW_SKIPPED and FD_ROW_BAD *reason is a stable
 * snake_case name ("remove_from_cart", "field_count", "bad_number",
 * "unknown_behavior", "bad_ts", "bad_rating", "bad_price", or a reject name
 * of fd_reject_name); on FD_ROW_BAD errstr says what was wrong.
 */
fd_row_result fd_rows_parse(fd_rows *p, const char *line, size_t len, uint64_t lineno, fd_event *ev,
                            const char **reason, char *errstr, size_t errstr_size);

#endif
