/*
 * test_log.c - daemon/log.c: the text and JSON line formats, escaping of
 * what comes from events (quotes, control characters, bytes that are not
 * UTF-8), the level threshold, and credentials redacted in both formats.
 * stderr is redirected into a temporary file and read back.
 */
#include "daemon/log.h"
#include "tests/unit/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE *cap;
static int saved;

static void begin(void)
{
    fflush(stderr);
    cap = tmpfile();
    saved = dup(STDERR_FILENO);
    dup2(fileno(cap), STDERR_FILENO);
}

/* What was logged since begin(), NUL-terminated (static buffer). */
static const char *end(void)
{
    static char buf[65536];
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(cap);
    size_t n = fread(buf, 1, sizeof buf - 1, cap);
    buf[n] = 0;
    fclose(cap);
    return buf;
}

int main(void)
{
    unsetenv("JOURNAL_STREAM");
    CHECK(fd_log_format_parse("text") == FD_LOG_TEXT);
    CHECK(fd_log_format_parse("json") == FD_LOG_JSON);
    CHECK(fd_log_format_parse("JSON") == -1);
    CHECK(fd_log_format_parse(NULL) == -1);

    /* text: timestamp, level, component, message */
    begin();
    fd_info("engine", "partition=%d assigned", 3);
    const char *t = end();
    CHECK(strlen(t) > 25 && t[4] == '-' && t[10] == 'T' && t[23] == 'Z');
    CHECK_CONTAINS(t, " info  engine: partition=3 assigned\n");

    /* json: one object per line, strings escaped */
    fd_log_set_format(FD_LOG_JSON);
    begin();
    fd_warn("shard", "user \"%s\" tab\there ctl\x01 bad\xff utf8 \xc3\xa9 <img src=x>\nnext",
            "a\\b");
    fd_debug("shard", "not logged at info level");
    const char *j = end();
    CHECK(!strncmp(j, "{\"ts\":\"", 7));
    CHECK_CONTAINS(j, "\",\"level\":\"warn\",\"component\":\"shard\",\"msg\":\"user \\\"a\\\\b\\\" "
                      "tab\\u0009here ctl\\u0001 bad\\u00ff utf8 \xc3\xa9 <img src=x>\\nnext\"}\n");
    CHECK(strchr(j, '\n') == j + strlen(j) - 1); /* one line: the debug one was not logged */

    /* an overlong form and a surrogate are not UTF-8: escaped byte by byte */
    begin();
    fd_info("t", "over\xc0\xaf sur\xed\xa0\x80 ok\xf0\x9f\x98\x80");
    j = end();
    CHECK_CONTAINS(j,
                   "\"msg\":\"over\\u00c0\\u00af sur\\u00ed\\u00a0\\u0080 ok\xf0\x9f\x98\x80\"}");

    /* a URL's credentials never appear, in either format */
    begin();
    fd_err("redis", "cannot reach redis://alice:s3cret@db:6379/0");
    const char *r = end();
    CHECK(strstr(r, "s3cret") == NULL);
    CHECK_CONTAINS(r, "\"level\":\"error\"");
    fd_log_set_format(FD_LOG_TEXT);
    begin();
    fd_err("redis", "cannot reach redis://alice:s3cret@db:6379/0");
    r = end();
    CHECK(strstr(r, "s3cret") == NULL);
    CHECK_CONTAINS(r, "error redis: cannot reach redis://");
    return check_report();
}
