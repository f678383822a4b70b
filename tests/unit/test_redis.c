/*
 * test_redis.c - pipeline/redis.c against real redis-server processes (what
 * needs no server, URL parsing, backoff, error codes and reading RESP back,
 * is test_redis_wire.c).
 *
 * Starts its own redis-server instances in a private temp dir (one on a unix
 * socket plus a loopback TCP port, one with --requirepass), and kills them
 * and removes the dir at exit, also when a CHECK fails. Children get
 * PR_SET_PDEATHSIG so a crashed test (e.g. a sanitizer abort) does not leave
 * a server behind.
 */
#include "pipeline/redis.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/resp.h"
#include "tests/unit/check.h"

#define MAX_SERVERS 4

static char tmpdir[256];
static int slack = 1; /* 3 under sanitizers (FD_SANITIZE set): timing bounds */
static pid_t servers[MAX_SERVERS];

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void stop_server(int slot, int sig)
{
    if (servers[slot] > 0) {
        kill(servers[slot], sig);
        waitpid(servers[slot], NULL, 0);
        servers[slot] = 0;
    }
}

static void cleanup(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        stop_server(i, SIGKILL);
    if (tmpdir[0]) {
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        tmpdir[0] = '\0';
    }
}

static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("free_tcp_port");
        exit(2);
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Any reply (even NOAUTH) on the socket means the server is up. */
static int server_answers(const char *sock)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    int up = 0;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        up = rep != NULL;
        if (rep)
            freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return up;
}

/* Start redis-server in slot on unix socket sock (and TCP port when > 0),
 * extra args (NULL-terminated) appended. Waits until it answers. */
static void start_server(int slot, const char *sock, int port, const char *const *extra)
{
    char portbuf[16], logpath[300];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(logpath, sizeof logpath, "%s/redis-%d.log", tmpdir, slot);
    const char *argv[32] = {"redis-server", "--port",      portbuf,  "--bind", "127.0.0.1",
                            "--unixsocket", sock,          "--save", "",       "--appendonly",
                            "no",           "--daemonize", "no",     "--dir",  tmpdir};
    int argc = 15;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    servers[slot] = pid;
    int64_t deadline = mono_ms() + 5000;
    while (mono_ms() < deadline) {
        if (server_answers(sock))
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            servers[slot] = 0;
            fprintf(stderr, "redis-server exited early; see %s\n", logpath);
            exit(2);
        }
        sleep_ms(20);
    }
    fprintf(stderr, "redis-server on %s did not answer within 5 s\n", sock);
    exit(2);
}

static fd_redis_opts base_opts(const char *url)
{
    fd_redis_opts o = {.url = url,
                       .connect_timeout_ms = 1000,
                       .command_timeout_ms = 2000,
                       .backoff_min_ms = 40,
                       .backoff_max_ms = 320};
    return o;
}

/* New handle + ensure; NULL (and a failed CHECK) if either fails. */
static fd_redis *connect_url(const char *url)
{
    char err[512] = "";
    fd_redis_opts o = base_opts(url);
    fd_redis *r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (!r) {
        fprintf(stderr, "fd_redis_new(%s): %s\n", url, err);
        return NULL;
    }
    int rc = fd_redis_ensure(r, err, sizeof err);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "fd_redis_ensure(%s): %s\n", url, err);
        fd_redis_destroy(r);
        return NULL;
    }
    return r;
}

/* Run a command expecting a status/string reply equal to want (NULL = nil). */
static void check_cmd_str(fd_redis *r, const char *want, const char *fmt, const char *a,
                          const char *b)
{
    char err[512] = "";
    redisReply *rep = fd_redis_command(r, err, sizeof err, fmt, a, b);
    CHECK(rep != NULL);
    if (!rep) {
        fprintf(stderr, "command %s: %s\n", fmt, err);
        return;
    }
    if (want) {
        CHECK(rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING);
        CHECK_STR(rep->str, want);
    } else {
        CHECK(rep->type == REDIS_REPLY_NIL);
    }
    freeReplyObject(rep);
}

static void test_unix_and_tcp(const char *sock, int port)
{
    char url[400];
    snprintf(url, sizeof url, "unix://%s", sock);
    fd_redis *u = connect_url(url);
    if (u) {
        CHECK(fd_redis_connected(u));
        CHECK_STR(fd_redis_url(u), url);
        check_cmd_str(u, "OK", "SET %s %s", "fd:test:unix", "via-unix");
        check_cmd_str(u, "via-unix", "GET %s%s", "fd:test:unix", "");
    }

    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    fd_redis *t = connect_url(url);
    if (t) {
        CHECK(fd_redis_connected(t));
        /* Same server: TCP sees what the unix client wrote. */
        check_cmd_str(t, "via-unix", "GET %s%s", "fd:test:unix", "");
    }

    /* SELECT: db 3 via unix ?db=3 and via TCP /3; db 0 must not see it. */
    snprintf(url, sizeof url, "unix://%s?db=3", sock);
    fd_redis *u3 = connect_url(url);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port);
    fd_redis *t3 = connect_url(url);
    if (u3 && t3 && u) {
        check_cmd_str(u3, "OK", "SET %s %s", "fd:test:db3", "three");
        check_cmd_str(t3, "three", "GET %s%s", "fd:test:db3", "");
        check_cmd_str(u, NULL, "GET %s%s", "fd:test:db3", "");
    }

    /* Nothing listens on this port: a clean error naming the URL. */
    char err[512] = "";
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", free_tcp_port());
    fd_redis_opts o = base_opts(url);
    fd_redis *dead = fd_redis_new(&o, err, sizeof err);
    CHECK(dead != NULL);
    if (dead) {
        CHECK(fd_redis_ensure(dead, err, sizeof err) == -1);
        CHECK_CONTAINS(err, url);
        CHECK(!fd_redis_connected(dead));
        CHECK(fd_redis_appendf(dead, "PING") == -1);
        CHECK(fd_redis_read_replies(dead, NULL, 0, err, sizeof err) == -1);
    }

    fd_redis_destroy(dead);
    fd_redis_destroy(t3);
    fd_redis_destroy(u3);
    fd_redis_destroy(t);
    fd_redis_destroy(u);
}

static void test_pipeline(const char *sock)
{
    char url[400], err[512] = "";
    snprintf(url, sizeof url, "unix://%s?db=1", sock);
    fd_redis *r = connect_url(url);
    if (!r)
        return;

    const char bin[] = {'a', '\0', 'b'}; /* binary-safe value via appendv */
    const char *argv[] = {"HSET", "fd:test:h", "bin", bin};
    const size_t argvlen[] = {4, 9, 3, sizeof bin};

    CHECK(fd_redis_pending(r) == 0);
    CHECK(fd_redis_appendf(r, "MULTI") == 0);
    CHECK(fd_redis_appendf(r, "HSET %s %s %s", "fd:test:h", "f1", "v1") == 0);
    CHECK(fd_redis_appendv(r, 4, argv, argvlen) == 0);
    CHECK(fd_redis_appendf(r, "HINCRBY %s %s %d", "fd:test:h", "n", 5) == 0);
    CHECK(fd_redis_appendf(r, "EXEC") == 0);
    CHECK(fd_redis_pending(r) == 5);
    /* While replies are pending, a one-shot command is refused. */
    CHECK(fd_redis_command(r, err, sizeof err, "PING") == NULL);
    CHECK_CONTAINS(err, "pending");
    CHECK(fd_redis_connected(r));

    redisReply *rep[8] = {0};
    CHECK(fd_redis_read_replies(r, rep, 5, err, sizeof err) == 0);
    CHECK(fd_redis_pending(r) == 0);
    if (rep[0] && rep[4]) {
        CHECK(rep[0]->type == REDIS_REPLY_STATUS);
        CHECK_STR(rep[0]->str, "OK");
        for (int i = 1; i <= 3; i++) {
            CHECK(rep[i]->type == REDIS_REPLY_STATUS);
            CHECK_STR(rep[i]->str, "QUEUED");
        }
        CHECK(rep[4]->type == REDIS_REPLY_ARRAY);
        CHECK(rep[4]->elements == 3);
        if (rep[4]->elements == 3) {
            CHECK(rep[4]->element[0]->type == REDIS_REPLY_INTEGER);
            CHECK(rep[4]->element[0]->integer == 1);
            CHECK(rep[4]->element[1]->integer == 1);
            CHECK(rep[4]->element[2]->integer == 5);
        }
    } else {
        CHECK(0);
    }
    for (int i = 0; i < 8; i++)
        if (rep[i])
            freeReplyObject(rep[i]);

    /* Binary value came through intact. */
    redisReply *g = fd_redis_command(r, err, sizeof err, "HGET %s %s", "fd:test:h", "bin");
    CHECK(g && g->type == REDIS_REPLY_STRING && g->len == sizeof bin &&
          memcmp(g->str, bin, sizeof bin) == 0);
    if (g)
        freeReplyObject(g);

    /* An error reply is a reply: the connection stays. */
    CHECK(fd_redis_appendf(r, "HSET %s", "onlykey") == 0);
    CHECK(fd_redis_appendf(r, "PING") == 0);
    redisReply *e[2] = {0};
    CHECK(fd_redis_read_replies(r, e, 2, err, sizeof err) == 0);
    CHECK(e[0] && e[0]->type == REDIS_REPLY_ERROR);
    CHECK(e[1] && e[1]->type == REDIS_REPLY_STATUS);
    for (int i = 0; i < 2; i++)
        if (e[i])
            freeReplyObject(e[i]);
    CHECK(fd_redis_connected(r));

    /* Discarding replies. */
    CHECK(fd_redis_appendf(r, "DEL %s", "fd:test:h") == 0);
    CHECK(fd_redis_read_replies(r, NULL, 0, err, sizeof err) == 0);
    check_cmd_str(r, NULL, "HGET %s %s", "fd:test:h", "f1");

    /* Reading in parts: the first reply, then the next, in order. */
    CHECK(fd_redis_appendf(r, "ECHO %s", "first") == 0);
    CHECK(fd_redis_appendf(r, "ECHO %s", "second") == 0);
    redisReply *one[1] = {0};
    CHECK(fd_redis_read_replies(r, one, 1, err, sizeof err) == 0);
    CHECK(one[0] && one[0]->type == REDIS_REPLY_STRING && !strcmp(one[0]->str, "first"));
    if (one[0])
        freeReplyObject(one[0]);
    one[0] = NULL;
    CHECK(fd_redis_pending(r) == 1);
    CHECK(fd_redis_read_replies(r, one, 1, err, sizeof err) == 0);
    CHECK(one[0] && one[0]->type == REDIS_REPLY_STRING && !strcmp(one[0]->str, "second"));
    if (one[0])
        freeReplyObject(one[0]);

    /* Asking for more replies than pending: refused, and the pipeline is dropped. */
    CHECK(fd_redis_appendf(r, "PING") == 0);
    one[0] = NULL;
    redisReply *two[2] = {0};
    CHECK(fd_redis_read_replies(r, two, 2, err, sizeof err) == -1);
    CHECK(two[0] == NULL);
    CHECK(!fd_redis_connected(r));
    CHECK(fd_redis_pending(r) == 0);

    fd_redis_destroy(r);
}

/* The send queue: commands in the wire protocol appended by reference
 * (more buffers than one sendmsg takes, several MB, over TCP so the socket
 * buffer fills), interleaved with formatted ones, reach Redis in order and
 * whole; the bytes counted as sent are exactly the bytes appended. */
static void test_send_queue(int port)
{
    char url[400], err[512] = "";
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/2", port);
    fd_redis *r = connect_url(url);
    if (!r)
        return;
    enum { NBUF = 3000, VAL = 2000 };
    fd_resp *bufs = calloc(NBUF, sizeof *bufs);
    char *val = malloc(VAL);
    CHECK(bufs && val);
    if (!bufs || !val) {
        free(bufs);
        free(val);
        fd_redis_destroy(r);
        return;
    }
    uint64_t b0, s0, b1, s1;
    fd_redis_sent(r, &b0, &s0);
    size_t bytes = 0, n_cmds = 0;
    CHECK(fd_redis_appendf(r, "DEL %s", "fd:test:q:list") == 0);
    bytes += strlen("*2\r\n$3\r\nDEL\r\n$14\r\nfd:test:q:list\r\n");
    n_cmds++;
    for (int i = 0; i < NBUF; i++) {
        char key[32];
        snprintf(key, sizeof key, "fd:test:q:%d", i);
        memset(val, 'a' + i % 26, VAL);
        fd_resp_cmd(&bufs[i], 3);
        fd_resp_str(&bufs[i], "SET");
        fd_resp_str(&bufs[i], key);
        fd_resp_arg(&bufs[i], val, VAL);
        CHECK(fd_resp_ok(&bufs[i]));
        CHECK(fd_redis_append_raw(r, bufs[i].p, bufs[i].len, 1) == 0);
        bytes += bufs[i].len;
        n_cmds++;
        if (i % 7 == 0) { /* a formatted command between two referenced ones */
            char num[16];
            int nl = snprintf(num, sizeof num, "%d", i);
            CHECK(fd_redis_appendf(r, "RPUSH %s %s", "fd:test:q:list", num) == 0);
            bytes += (size_t)snprintf(
                NULL, 0, "*3\r\n$5\r\nRPUSH\r\n$14\r\nfd:test:q:list\r\n$%d\r\n%s\r\n", nl, num);
            n_cmds++;
        }
    }
    CHECK(fd_redis_pending(r) == n_cmds);
    CHECK(fd_redis_read_replies(r, NULL, 0, err, sizeof err) == 0);
    CHECK(fd_redis_connected(r));
    fd_redis_sent(r, &b1, &s1);
    CHECK(b1 - b0 == bytes);
    CHECK(s1 - s0 == 1);
    /* in order: the list holds 0, 7, 14, ... and every value is whole */
    redisReply *l = fd_redis_command(r, err, sizeof err, "LRANGE %s 0 -1", "fd:test:q:list");
    CHECK(l && l->type == REDIS_REPLY_ARRAY && l->elements == (NBUF + 6) / 7);
    for (size_t i = 0; l && l->type == REDIS_REPLY_ARRAY && i < l->elements; i++)
        CHECK(atoi(l->element[i]->str) == (int)(7 * i));
    if (l)
        freeReplyObject(l);
    for (int i = 0; i < NBUF; i += 499) {
        char key[32];
        snprintf(key, sizeof key, "fd:test:q:%d", i);
        redisReply *g = fd_redis_command(r, err, sizeof err, "GET %s", key);
        CHECK(g && g->type == REDIS_REPLY_STRING && g->len == VAL && g->str[0] == 'a' + i % 26 &&
              g->str[VAL - 1] == 'a' + i % 26);
        if (g)
            freeReplyObject(g);
    }
    /* A queue that is dropped is never sent: nothing of it reaches Redis. */
    CHECK(fd_redis_appendf(r, "SET %s %s", "fd:test:q:dropped", "x") == 0);
    fd_redis_disconnect(r);
    CHECK(fd_redis_pending(r) == 0);
    CHECK(fd_redis_connect_wait(r, 5000, NULL, err, sizeof err) == 0);
    redisReply *d = fd_redis_command(r, err, sizeof err, "EXISTS %s", "fd:test:q:dropped");
    CHECK(d && d->type == REDIS_REPLY_INTEGER && d->integer == 0);
    if (d)
        freeReplyObject(d);
    redisReply *f = fd_redis_command(r, err, sizeof err, "FLUSHDB");
    if (f)
        freeReplyObject(f);
    for (int i = 0; i < NBUF; i++)
        fd_resp_free(&bufs[i]);
    free(bufs);
    free(val);
    fd_redis_destroy(r);
}

static void test_password(const char *sock)
{
    static const char *pw = "s3cr3t-Pw-41";
    const char *extra[] = {"--requirepass", pw, NULL};
    start_server(1, sock, 0, extra);

    char url[400], err[512], pwfile[300];
    snprintf(url, sizeof url, "unix://%s", sock);
    snprintf(pwfile, sizeof pwfile, "%s/redis.pw", tmpdir);
    FILE *f = fopen(pwfile, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f, "%s\n", pw);
    fclose(f);

    /* From the file. */
    fd_redis_opts o = base_opts(url);
    o.password_file = pwfile;
    o.password_env = "FD_TEST_REDIS_PW_UNSET";
    err[0] = '\0';
    fd_redis *r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        CHECK(fd_redis_ensure(r, err, sizeof err) == 0);
        check_cmd_str(r, "PONG", "PING%s%s", "", "");
    }
    fd_redis_destroy(r);

    /* From the environment. */
    setenv("FD_TEST_REDIS_PW", pw, 1);
    o = base_opts(url);
    o.password_env = "FD_TEST_REDIS_PW";
    r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        CHECK(fd_redis_ensure(r, err, sizeof err) == 0);
        check_cmd_str(r, "PONG", "PING%s%s", "", "");
    }
    fd_redis_destroy(r);

    /* The file wins over the environment. */
    setenv("FD_TEST_REDIS_PW", "not-this-one", 1);
    o.password_file = pwfile;
    r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (r)
        CHECK(fd_redis_ensure(r, err, sizeof err) == 0);
    fd_redis_destroy(r);

    /* Wrong password: error mentions AUTH and the URL, never the password. */
    static const char *wrong = "wrong-Pw-9137";
    setenv("FD_TEST_REDIS_PW", wrong, 1);
    o = base_opts(url);
    o.password_env = "FD_TEST_REDIS_PW";
    r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        err[0] = '\0';
        CHECK(fd_redis_ensure(r, err, sizeof err) == -1);
        CHECK_CONTAINS(err, "AUTH");
        CHECK_CONTAINS(err, url);
        CHECK(strstr(err, wrong) == NULL);
        CHECK(strstr(err, pw) == NULL);
        CHECK(!fd_redis_connected(r));
        /* The retry message carries the same cause, still without it. */
        err[0] = '\0';
        CHECK(fd_redis_ensure(r, err, sizeof err) == -1);
        CHECK(strstr(err, wrong) == NULL);
    }
    fd_redis_destroy(r);

    /* No password at all: the server's NOAUTH surfaces. Empty env = none. */
    setenv("FD_TEST_REDIS_PW", "", 1);
    r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        err[0] = '\0';
        CHECK(fd_redis_ensure(r, err, sizeof err) == -1);
        CHECK_CONTAINS(err, "NOAUTH");
    }
    fd_redis_destroy(r);
    unsetenv("FD_TEST_REDIS_PW");

    /* Unreadable password file: fails at new, naming file and errno text. */
    char missing[320];
    snprintf(missing, sizeof missing, "%s/no-such.pw", tmpdir);
    o = base_opts(url);
    o.password_file = missing;
    err[0] = '\0';
    CHECK(fd_redis_new(&o, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, missing);
    CHECK_CONTAINS(err, strerror(ENOENT));

    stop_server(1, SIGTERM);
}

/* A hung server (SIGSTOP): the command timeout fires, the context is
 * dropped, and once the server runs again the handle reconnects. */
static void test_command_timeout(const char *sock)
{
    char url[400], err[512] = "";
    snprintf(url, sizeof url, "unix://%s", sock);
    fd_redis_opts o = base_opts(url);
    o.command_timeout_ms = 150;
    fd_redis *r = fd_redis_new(&o, err, sizeof err);
    CHECK(r != NULL);
    if (!r || fd_redis_ensure(r, err, sizeof err) != 0) {
        CHECK(0);
        fd_redis_destroy(r);
        return;
    }
    kill(servers[0], SIGSTOP);
    int64_t t0 = mono_ms();
    CHECK(fd_redis_appendf(r, "PING") == 0);
    CHECK(fd_redis_read_replies(r, NULL, 0, err, sizeof err) == -1);
    int64_t took = mono_ms() - t0;
    kill(servers[0], SIGCONT);
    CHECK(took >= 140 && took < 1000 * slack);
    CHECK_CONTAINS(err, "lost connection");
    CHECK(!fd_redis_connected(r));
    CHECK(fd_redis_connect_wait(r, 2000, NULL, err, sizeof err) == 0);
    check_cmd_str(r, "PONG", "PING%s%s", "", "");
    fd_redis_destroy(r);
}

static void test_outage(const char *sock, int port)
{
    char url[400], err[512] = "", logpath[300], want_line[64] = "reconnected after";
    snprintf(url, sizeof url, "unix://%s?db=2", sock);
    snprintf(logpath, sizeof logpath, "%s/outage.log", tmpdir);

    /* Capture our own log lines (fd_log writes to fd 2). */
    fflush(stderr);
    int saved = dup(2);
    int lf = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (lf >= 0) {
        dup2(lf, 2);
        close(lf);
    }

    fd_redis *r = connect_url(url);
    if (!r)
        goto out;
    CHECK(fd_redis_backoff_ms(r) == 0);

    stop_server(0, SIGKILL);

    /* A command on the dead connection fails and drops it. */
    CHECK(fd_redis_command(r, err, sizeof err, "PING") == NULL);
    CHECK(!fd_redis_connected(r));
    CHECK(fd_redis_pending(r) == 0);
    CHECK(fd_redis_appendf(r, "PING") == -1);
    CHECK(fd_redis_read_replies(r, NULL, 0, err, sizeof err) == -1);

    /* ensure() inside the backoff returns at once. */
    int64_t t0 = mono_ms();
    CHECK(fd_redis_ensure(r, err, sizeof err) == -1);
    CHECK(mono_ms() - t0 < 20 * slack);
    CHECK_CONTAINS(err, "next attempt");
    int64_t b1 = fd_redis_backoff_ms(r);
    CHECK(b1 >= 36 && b1 <= 44);
    CHECK(fd_redis_retry_in_ms(r) > 0);

    /* Each failed attempt doubles the delay, capped at backoff_max. */
    int64_t prev = b1, delays[6];
    int grew = 1;
    for (int i = 0; i < 5; i++) {
        sleep_ms(fd_redis_retry_in_ms(r) + 2);
        t0 = mono_ms();
        CHECK(fd_redis_ensure(r, err, sizeof err) == -1);
        CHECK(mono_ms() - t0 < 200); /* a refused connect, not a timeout */
        delays[i] = fd_redis_backoff_ms(r);
        if (i < 3 && delays[i] <= prev)
            grew = 0;
        prev = delays[i];
    }
    CHECK(grew);
    CHECK(delays[1] >= 144 && delays[1] <= 176); /* 40 -> 80 -> 160, +-10% */
    CHECK(delays[3] >= 288 && delays[3] <= 320); /* capped at 320 */
    CHECK(delays[4] >= 288 && delays[4] <= 320);
    CHECK(fd_redis_attempts(r) == 5);

    /* connect_wait honours stop and timeout while the server is down. */
    volatile int stop = 1;
    t0 = mono_ms();
    CHECK(fd_redis_connect_wait(r, 5000, &stop, err, sizeof err) == -1);
    CHECK(mono_ms() - t0 < 50 * slack);
    stop = 0;
    t0 = mono_ms();
    CHECK(fd_redis_connect_wait(r, 400, &stop, err, sizeof err) == -1);
    int64_t waited = mono_ms() - t0;
    CHECK(waited >= 390 && waited < 1000 * slack);
    CHECK_CONTAINS(err, "not connected after");

    /* Back on the same socket: connect_wait reconnects, commands work. */
    unsigned failed = fd_redis_attempts(r);
    CHECK(failed >= 5);
    snprintf(want_line, sizeof want_line, "reconnected after %u attempts", failed + 1);
    start_server(0, sock, port, NULL);
    t0 = mono_ms();
    CHECK(fd_redis_connect_wait(r, 5000, &stop, err, sizeof err) == 0);
    CHECK(mono_ms() - t0 < 1000);
    CHECK(fd_redis_connected(r));
    CHECK(fd_redis_backoff_ms(r) == 0);
    check_cmd_str(r, "OK", "SET %s %s", "fd:test:after", "back");
    CHECK(fd_redis_appendf(r, "GET %s", "fd:test:after") == 0);
    redisReply *rep = NULL;
    CHECK(fd_redis_read_replies(r, &rep, 1, err, sizeof err) == 0);
    CHECK(rep && rep->type == REDIS_REPLY_STRING);
    if (rep) {
        CHECK_STR(rep->str, "back");
        freeReplyObject(rep);
    }
    fd_redis_destroy(r);

out:
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
    /* One warning for the whole outage, one line when it ended. */
    FILE *f = fopen(logpath, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    char line[2048];
    int warns = 0, reconnected = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, " warn  redis: "))
            warns++;
        if (strstr(line, " info  redis: ") && strstr(line, want_line))
            reconnected++;
    }
    fclose(f);
    CHECK(warns == 1);
    CHECK(reconnected == 1);
}

/* What the writer sees of a Redis that refuses writes (maxmemory below what
 * it uses, noeviction): each queued write command is refused with OOM and
 * EXEC answers EXECABORT; reads still work. The cause is the queued reply. */
static void test_refused_transaction(const char *sock)
{
    char url[400], err[512] = "", code[32];
    snprintf(url, sizeof url, "unix://%s?db=5", sock);
    fd_redis *r = connect_url(url);
    if (!r)
        return;
    check_cmd_str(r, "OK", "SET %s %s", "fd:test:oom", "x");
    check_cmd_str(r, "OK", "CONFIG SET %s %s", "maxmemory", "1");
    CHECK(fd_redis_appendf(r, "MULTI") == 0);
    CHECK(fd_redis_appendf(r, "HINCRBY %s %s %d", "fd:test:oomh", "f", 1) == 0);
    CHECK(fd_redis_appendf(r, "EXEC") == 0);
    CHECK(fd_redis_appendf(r, "GET %s", "fd:test:oom") == 0);
    redisReply *rep[4] = {0};
    CHECK(fd_redis_read_replies(r, rep, 4, err, sizeof err) == 0);
    CHECK(rep[1] && rep[1]->type == REDIS_REPLY_ERROR);
    if (rep[1] && rep[1]->type == REDIS_REPLY_ERROR)
        CHECK_STR(fd_redis_error_code(rep[1]->str, code, sizeof code), "OOM");
    CHECK(rep[2] && rep[2]->type == REDIS_REPLY_ERROR);
    if (rep[2] && rep[2]->type == REDIS_REPLY_ERROR)
        CHECK_STR(fd_redis_error_code(rep[2]->str, code, sizeof code), "EXECABORT");
    CHECK(rep[3] && rep[3]->type == REDIS_REPLY_STRING);
    for (int i = 0; i < 4; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    CHECK(fd_redis_connected(r)); /* an error reply is not an I/O error */
    check_cmd_str(r, "OK", "CONFIG SET %s %s", "maxmemory", "0");
    fd_redis_destroy(r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("FD_SANITIZE") && *getenv("FD_SANITIZE"))
        slack = 3;
    snprintf(tmpdir, sizeof tmpdir, "%s/fd-test-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    atexit(cleanup);

    char sock[300], sock_pw[300];
    snprintf(sock, sizeof sock, "%s/redis.sock", tmpdir);
    snprintf(sock_pw, sizeof sock_pw, "%s/redis-pw.sock", tmpdir);
    int port = free_tcp_port();

    start_server(0, sock, port, NULL);
    test_refused_transaction(sock);
    test_unix_and_tcp(sock, port);
    test_pipeline(sock);
    test_send_queue(port);
    test_password(sock_pw);
    test_command_timeout(sock);
    test_outage(sock, port);

    cleanup();
    return check_report();
}
