/*
 * test_redis_wire.c - the parts of the Redis client that need no server
 * (pipeline/redis_wire.c, and the URL parser of redis.c): URLs accepted and
 * refused with their reason, the reconnect backoff, error codes, and an
 * argument read back out of commands in the wire protocol.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/redis.h"
#include "pipeline/resp.h"
#include "tests/unit/check.h"

static void test_parse_url(void)
{
    char host[256], err[512];
    int port, is_unix, db;

    CHECK(fd_redis_parse_url("redis://localhost", host, sizeof host, &port, &is_unix, &db, err,
                             sizeof err) == 0);
    CHECK_STR(host, "localhost");
    CHECK(port == 6379 && db == 0 && is_unix == 0);

    CHECK(fd_redis_parse_url("redis://127.0.0.1:6380/2", host, sizeof host, &port, &is_unix, &db,
                             err, sizeof err) == 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK(port == 6380 && db == 2 && is_unix == 0);

    CHECK(fd_redis_parse_url("redis://[::1]:6380/2", host, sizeof host, &port, &is_unix, &db, err,
                             sizeof err) == 0);
    CHECK_STR(host, "::1");
    CHECK(port == 6380 && db == 2);

    CHECK(fd_redis_parse_url("redis://[::1]", host, sizeof host, &port, &is_unix, &db, err,
                             sizeof err) == 0);
    CHECK_STR(host, "::1");
    CHECK(port == 6379 && db == 0);

    CHECK(fd_redis_parse_url("redis://cache.internal/7", host, sizeof host, &port, &is_unix, &db,
                             err, sizeof err) == 0);
    CHECK_STR(host, "cache.internal");
    CHECK(port == 6379 && db == 7);

    CHECK(fd_redis_parse_url("redis://h:1/", host, sizeof host, &port, &is_unix, &db, err,
                             sizeof err) == 0);
    CHECK(port == 1 && db == 0);

    CHECK(fd_redis_parse_url("unix:///run/redis/redis.sock", host, sizeof host, &port, &is_unix,
                             &db, err, sizeof err) == 0);
    CHECK_STR(host, "/run/redis/redis.sock");
    CHECK(is_unix == 1 && db == 0);

    CHECK(fd_redis_parse_url("unix:///tmp/r.sock?db=5", host, sizeof host, &port, &is_unix, &db,
                             err, sizeof err) == 0);
    CHECK_STR(host, "/tmp/r.sock");
    CHECK(is_unix == 1 && db == 5);

    static const struct {
        const char *url, *why;
    } bad[] = {
        {"http://h:6379", "scheme"},
        {"redis://", "host is empty"},
        {"redis://:6379/0", "host is empty"},
        {"redis://h:0", "port"},
        {"redis://h:65536", "port"},
        {"redis://h:abc/1", "port"},
        {"redis://h:", "port"},
        {"redis://h/x", "database"},
        {"redis://h/-1", "database"},
        {"redis://h/1/2", "database"},
        {"redis://[::1:6379", "IPv6"},
        {"redis://[::1]x:6379", "after host"},
        {"rediss://h:6379", "TLS"},
        {"unix://relative/path.sock", "absolute"},
        {"unix://", "absolute"},
        {"unix:///p.sock?db=x", "db=N"},
        {"unix:///p.sock?foo=1", "db=N"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = fd_redis_parse_url(bad[i].url, host, sizeof host, &port, &is_unix, &db, err,
                                    sizeof err);
        CHECK(rc == -1);
        CHECK_CONTAINS(err, bad[i].url);
        CHECK_CONTAINS(err, bad[i].why);
    }

    err[0] = '\0';
    CHECK(fd_redis_parse_url("", host, sizeof host, &port, &is_unix, &db, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "empty");

    /* Credentials in the URL: rejected, and the secret is not echoed. */
    err[0] = '\0';
    CHECK(fd_redis_parse_url("redis://user:hunter2@h:6379/0", host, sizeof host, &port, &is_unix,
                             &db, err, sizeof err) == -1);
    CHECK_CONTAINS(err, "password_file");
    CHECK(strstr(err, "hunter2") == NULL);

    /* fd_redis_new reports a bad URL too. */
    fd_redis_opts o = {.url = "redis://h:99999"};
    err[0] = '\0';
    CHECK(fd_redis_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "redis://h:99999");
}

/* fd_backoff: doubling from min to max with +-10% jitter, reset. */
static void test_backoff(void)
{
    fd_backoff b;
    fd_backoff_init(&b, 100, 1000, 42);
    CHECK(fd_backoff_ready(&b, 0));
    int64_t want[] = {100, 200, 400, 800, 1000, 1000};
    for (int i = 0; i < 6; i++) {
        int64_t d = fd_backoff_fail(&b, 5000);
        int64_t lo = want[i] - want[i] / 10, hi = want[i] + want[i] / 10;
        if (lo < 100)
            lo = 100;
        if (hi > 1000)
            hi = 1000;
        CHECK(d >= lo && d <= hi);
        CHECK(b.last_ms == d);
        CHECK(!fd_backoff_ready(&b, 5000 + d - 1));
        CHECK(fd_backoff_ready(&b, 5000 + d));
    }
    fd_backoff_reset(&b);
    CHECK(fd_backoff_ready(&b, 0) && b.last_ms == 0);
    int64_t d = fd_backoff_fail(&b, 0);
    CHECK(d >= 100 && d <= 110);
    fd_backoff_init(&b, 500, 100, 1); /* max below min: min wins */
    CHECK(fd_backoff_fail(&b, 0) == 500 && fd_backoff_fail(&b, 0) == 500);
}

/* Error codes and the keys of commands in the wire protocol. */
static void test_error_code_and_wire(void)
{
    char code[32];
    CHECK_STR(fd_redis_error_code("OOM command not allowed when used memory > 'maxmemory'.", code,
                                  sizeof code),
              "OOM");
    CHECK_STR(fd_redis_error_code("WRONGTYPE Operation against a key", code, sizeof code),
              "WRONGTYPE");
    CHECK_STR(fd_redis_error_code("EXECABORT Transaction discarded", code, sizeof code),
              "EXECABORT");
    CHECK_STR(fd_redis_error_code("LOADING", code, sizeof code), "LOADING");
    CHECK_STR(fd_redis_error_code("hash value is not an integer", code, sizeof code), "ERR");
    CHECK_STR(fd_redis_error_code("OOMx", code, sizeof code), "ERR");
    CHECK_STR(fd_redis_error_code(NULL, code, sizeof code), "ERR");
    CHECK_STR(fd_redis_error_code("MISCONF Redis is configured", code, 4), "ERR"); /* too long */

    fd_resp b = {0};
    fd_resp_cmd(&b, 4);
    fd_resp_str(&b, "HINCRBY");
    fd_resp_str(&b, "fd:v2:funnel:1m:60000");
    fd_resp_str(&b, "click");
    fd_resp_int(&b, 3);
    fd_resp_cmd(&b, 3);
    fd_resp_str(&b, "PFADD");
    fd_resp_arg(&b, "k\r\n2", 4); /* any bytes */
    fd_resp_str(&b, "u1");
    CHECK(!b.oom);
    const char *a = NULL;
    size_t len = 0;
    CHECK(fd_redis_wire_arg(b.p, b.len, 0, 1, &a, &len) == 0);
    CHECK(len == 21 && !memcmp(a, "fd:v2:funnel:1m:60000", len));
    CHECK(fd_redis_wire_arg(b.p, b.len, 0, 3, &a, &len) == 0 && len == 1 && a[0] == '3');
    CHECK(fd_redis_wire_arg(b.p, b.len, 1, 1, &a, &len) == 0);
    CHECK(len == 4 && !memcmp(a, "k\r\n2", 4));
    CHECK(fd_redis_wire_arg(b.p, b.len, 1, 0, &a, &len) == 0 && len == 5);
    CHECK(fd_redis_wire_arg(b.p, b.len, 1, 3, &a, &len) == -1);     /* no such argument */
    CHECK(fd_redis_wire_arg(b.p, b.len, 2, 1, &a, &len) == -1);     /* no such command */
    CHECK(fd_redis_wire_arg(b.p, b.len - 3, 1, 2, &a, &len) == -1); /* cut short */
    CHECK(fd_redis_wire_arg("*1\r\n$9\r\nab\r\n", 13, 0, 0, &a, &len) == -1);
    fd_resp_free(&b);
}

int main(void)
{
    test_parse_url();
    test_backoff();
    test_error_code_and_wire();
    return check_report();
}
