/*
 * bench_proc.c - `funnelctl bench`: small helpers (PATH, own directory, log
 * tails) and the child processes (bench_spawn, wait, stop).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/clock.h"
#include "tools/bench_int.h"
#include "tools/cli.h"

/* ---- small helpers --------------------------------------------------------- */

/* Absolute path of an executable named `name` on PATH into buf. 0 / -1. */
int bench_find_in_path(const char *name, char *buf, size_t size)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && (size_t)snprintf(buf, size, "%.*s/%s", (int)n, path, name) < size &&
            access(buf, X_OK) == 0)
            return 0;
        path += n + (path[n] == ':');
    }
    return -1;
}

/* Directory of this executable (/proc/self/exe) into buf. 0 / -1. */
int bench_exe_dir(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

/* Print the last ~2 KB of a log file to stderr, for a failed child. */
void bench_show_tail(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[2048];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "---- last lines of %s (%s) ----\n%s%s----\n", what, path, buf,
            n && buf[n - 1] != '\n' ? "\n" : "");
}

/* ---- child processes ------------------------------------------------------- */

/* Start argv[0] (an absolute path) in its own process group; stdin from
 * /dev/null, stdout/stderr to out_fd/err_fd (-1 = /dev/null). The kernel
 * sends it SIGKILL if this process dies. Returns the pid, or -1. Main
 * thread only (PR_SET_PDEATHSIG follows the forking thread). */
pid_t bench_spawn(char *const argv[], int out_fd, int err_fd)
{
    return bench_spawn_preload(argv, NULL, out_fd, err_fd);
}

pid_t bench_spawn_preload(char *const argv[], const char *preload, int out_fd, int err_fd)
{
    extern char **environ;
    char **envp = NULL, *pre = NULL;
    if (preload) { /* built before fork: the child only execs */
        size_t n = 0;
        while (environ[n])
            n++;
        envp = malloc((n + 2) * sizeof *envp);
        size_t plen = strlen(preload) + sizeof "LD_PRELOAD=";
        pre = malloc(plen);
        if (!envp || !pre) {
            free(envp);
            free(pre);
            return -1;
        }
        snprintf(pre, plen, "LD_PRELOAD=%s", preload);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
                envp[k++] = environ[i];
        envp[k++] = pre;
        envp[k] = NULL;
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        free(envp);
        free(pre);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(devnull, 0);
        dup2(out_fd >= 0 ? out_fd : devnull, 1);
        dup2(err_fd >= 0 ? err_fd : devnull, 2);
        execve(argv[0], argv, envp ? envp : environ);
        _exit(127);
    }
    close(devnull);
    free(envp);
    free(pre);
    return pid;
}

/* Wait up to timeout_s for *pid; returns its wait status, or -1 when it is
 * still running. *pid becomes 0 once reaped. */
int bench_wait_child(pid_t *pid, double timeout_s)
{
    double end = fd_cli_now_s() + timeout_s;
    for (;;) {
        int st;
        pid_t r = waitpid(*pid, &st, WNOHANG);
        if (r == *pid || (r < 0 && errno == ECHILD)) {
            *pid = 0;
            return r < 0 ? 0 : st;
        }
        if (fd_cli_now_s() >= end)
            return -1;
        fd_sleep_ms(10);
    }
}

/* Send sig, wait up to timeout_s, then SIGKILL. Returns the wait status
 * (-1 when it had to be killed). No-op when *pid is 0. */
int bench_stop_child(pid_t *pid, int sig, double timeout_s)
{
    if (*pid <= 0)
        return 0;
    kill(*pid, sig);
    int st = bench_wait_child(pid, timeout_s);
    if (st == -1) {
        kill(*pid, SIGKILL);
        bench_wait_child(pid, 5);
        *pid = 0;
    }
    return st;
}

/* Run argv to completion with output to `log` (opened for writing). Returns
 * the wait status or -1. */
int bench_run_to_end(char *const argv[], const char *log, double timeout_s)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    pid_t pid = bench_spawn(argv, fd, fd);
    close(fd);
    if (pid < 0)
        return -1;
    int st = bench_wait_child(&pid, timeout_s);
    if (st == -1)
        bench_stop_child(&pid, SIGKILL, 5);
    return st;
}

int bench_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

int bench_find_schema(const char *given, char out[PATH_MAX])
{
    char dir[PATH_MAX], cand[PATH_MAX + 64];
    const char *schema = given;
    if (!schema && access("conf/schemas/event.avsc", R_OK) == 0)
        schema = "conf/schemas/event.avsc";
    if (!schema && bench_exe_dir(dir, sizeof dir) == 0) {
        snprintf(cand, sizeof cand, "%s/../conf/schemas/event.avsc", dir);
        if (access(cand, R_OK) == 0)
            schema = cand;
    }
#ifdef FD_SCHEMA_DIR
    if (!schema && access(FD_SCHEMA_DIR "/event.avsc", R_OK) == 0)
        schema = FD_SCHEMA_DIR "/event.avsc"; /* installed (share/funneld/schemas) */
#endif
    return schema && realpath(schema, out) ? 0 : -1;
}
