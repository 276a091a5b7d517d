/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the raw baselines share: a monotonic clock, a blocking line reader for QMP over a UNIX
 * socket, and the one way the raw baselines start QEMU (socket+bind+listen, fork, exec with
 * the listening fd at 3). Deliberately minimal: the baselines exist to show what the least
 * possible code costs, so nothing here validates QEMU's JSON beyond a substring check.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Sorts v in place. */
static inline uint64_t bench_median(uint64_t *v, size_t n)
{
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), bench_cmp_u64);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline bool bench_parse_u64(const char *s, uint64_t *ret)
{
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno != 0 || !end || end == s || *end != '\0')
                return false;
        *ret = v;
        return true;
}

/* ---- a blocking QMP line reader -------------------------------------------------------------- */

typedef struct bench_conn {
        int fd;
        char buf[65536];
        size_t start, end; /* unread bytes are buf[start..end) */
} bench_conn;

/* No read waits longer than this for QEMU (milliseconds): a wedged QEMU fails the measurement
 * instead of hanging the benchmark. */
static int bench_read_timeout_ms = 30000;

/* One line (without "\r\n") into *ret_line, valid until the next call; 0, or -1 on EOF,
 * error or timeout (errno ETIMEDOUT). */
static inline int bench_read_line(bench_conn *c, char **ret_line, size_t *ret_len)
{
        for (;;) {
                char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
                if (nl) {
                        char *line = c->buf + c->start;
                        size_t len = (size_t)(nl - line);
                        c->start += len + 1;
                        if (len > 0 && line[len - 1] == '\r')
                                len--;
                        line[len] = '\0';
                        *ret_line = line;
                        if (ret_len)
                                *ret_len = len;
                        return 0;
                }
                if (c->start > 0) {
                        memmove(c->buf, c->buf + c->start, c->end - c->start);
                        c->end -= c->start;
                        c->start = 0;
                }
                if (c->end == sizeof(c->buf))
                        return -1; /* a line this long is not what we asked for */
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                int k = poll(&p, 1, bench_read_timeout_ms);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k == 0)
                        errno = ETIMEDOUT;
                if (k <= 0)
                        return -1;
                ssize_t n = read(c->fd, c->buf + c->end, sizeof(c->buf) - c->end);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                c->end += (size_t)n;
        }
}

static inline int bench_write_all(int fd, const char *s, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, s, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -1;
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Read lines until one carrying "return" or "error" (events are skipped). 0 for a return
 * containing `want` (if non-NULL), -1 otherwise. */
static inline int bench_read_reply(bench_conn *c, const char *want)
{
        char *line;
        for (;;) {
                if (bench_read_line(c, &line, NULL) < 0)
                        return -1;
                if (strstr(line, "\"return\""))
                        return !want || strstr(line, want) ? 0 : -1;
                if (strstr(line, "\"error\""))
                        return -1;
        }
}

static inline int bench_command(bench_conn *c, const char *json, const char *want)
{
        if (bench_write_all(c->fd, json, strlen(json)) < 0)
                return -1;
        return bench_read_reply(c, want);
}

/* A bare "\n" ends a command, as libqdm's client does: QEMU's parser needs neither "\r" nor
 * "\n", and it reads commands a byte per main-loop iteration, so the baseline sends no byte it
 * does not need. */
#define BENCH_CAPS  "{\"execute\":\"qmp_capabilities\"}\n"
#define BENCH_QUERY "{\"execute\":\"query-status\"}\n"

/* socket + connect to path; -1 on error. */
static inline int bench_connect(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path))
                return -1;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Greeting, then qmp_capabilities. 0 or -1. */
static inline int bench_negotiate(bench_conn *c)
{
        char *line;
        if (bench_read_line(c, &line, NULL) < 0 || !strstr(line, "\"QMP\""))
                return -1;
        return bench_command(c, BENCH_CAPS, NULL);
}

/* ---- starting QEMU the minimal way --------------------------------------------------------------
 */

typedef struct bench_qemu_opts {
        const char *qemu;     /* binary, default qemu-system-x86_64 from PATH */
        const char *machine;  /* none | q35 | ... */
        const char *accel;    /* kvm | tcg */
        bool restricted;      /* -chroot EMPTYDIR -runas RUNAS -sandbox ... */
        const char *runas;    /* "uid:gid", default "64999:64999" */
        bool blocking_listen; /* hand QEMU a blocking listening socket (see below) */
} bench_qemu_opts;

typedef struct bench_qemu {
        char dir[96];   /* private temp dir under $TMPDIR (or /tmp): qmp.sock, root/ */
        char sock[128]; /* dir/qmp.sock */
        char root[128]; /* dir/root, mode 0000, the empty chroot */
        int listen_fd;
        pid_t pid;
} bench_qemu;

/* mkdtemp + socket + bind + listen.
 *
 * The listening socket is non-blocking unless blocking_listen: QEMU 7.2 can dispatch the
 * listener's accept in the main loop *and* in the monitor's I/O thread for the same pending
 * connection (a client that connects before QEMU is up, as here); the loser's accept4() on a
 * blocking socket then never returns and the main loop is wedged for good (no QMP reply, no
 * guest). Seen in this benchmark: gdb showed the main thread in qio_channel_socket_accept() ->
 * accept4(fd 3) while the I/O thread held the accepted connection. With O_NONBLOCK the loser
 * gets EAGAIN and QEMU carries on. */
static inline int bench_qemu_prepare(bench_qemu *q, bool restricted, bool blocking_listen)
{
        q->pid = 0;
        q->listen_fd = -1;
        const char *tmp = getenv("TMPDIR");
        if (!tmp || tmp[0] != '/')
                tmp = "/tmp";
        if ((size_t)snprintf(q->dir, sizeof(q->dir), "%s/qdm-bench-raw.XXXXXX", tmp) >=
            sizeof(q->dir)) {
                q->dir[0] = '\0';
                errno = ENAMETOOLONG;
                return -1;
        }
        if (!mkdtemp(q->dir)) {
                q->dir[0] = '\0';
                return -1;
        }
        snprintf(q->sock, sizeof(q->sock), "%s/qmp.sock", q->dir);
        snprintf(q->root, sizeof(q->root), "%s/root", q->dir);
        if (restricted && mkdir(q->root, 0) < 0)
                return -1;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(q->sock) >= sizeof(sa.sun_path)) {
                errno = ENAMETOOLONG;
                return -1;
        }
        memcpy(sa.sun_path, q->sock, strlen(q->sock) + 1);
        q->listen_fd = socket(
                AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (blocking_listen ? 0 : SOCK_NONBLOCK), 0);
        if (q->listen_fd < 0 || bind(q->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(q->listen_fd, 1) < 0)
                return -1;
        return 0;
}

/* fork + exec QEMU with the listening socket at fd 3, stdin/stdout on /dev/null. */
static inline int bench_qemu_spawn(bench_qemu *q, const bench_qemu_opts *o)
{
        const char *argv[32];
        size_t n = 0;
        argv[n++] = o->qemu ? o->qemu : "qemu-system-x86_64";
        argv[n++] = "-S";
        argv[n++] = "-nodefaults";
        argv[n++] = "-display";
        argv[n++] = "none";
        argv[n++] = "-machine";
        argv[n++] = o->machine;
        argv[n++] = "-accel";
        argv[n++] = o->accel;
        argv[n++] = "-chardev";
        argv[n++] = "socket,id=m,fd=3,server=on,wait=off";
        argv[n++] = "-mon";
        argv[n++] = "chardev=m,mode=control";
        if (o->restricted) {
                argv[n++] = "-chroot";
                argv[n++] = q->root;
                argv[n++] = "-runas";
                argv[n++] = o->runas ? o->runas : "64999:64999";
                argv[n++] = "-sandbox";
                argv[n++] = "on,obsolete=deny,elevateprivileges=allow,spawn=deny,"
                            "resourcecontrol=deny";
        }
        argv[n] = NULL;

        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                /* Should the benchmark kill this launcher, QEMU must not outlive it (cleared by
                 * -runas's credential change, but those QEMUs are found by their -chroot path). */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int null = open("/dev/null", O_RDWR);
                if (null >= 0) {
                        dup2(null, 0);
                        dup2(null, 1);
                }
                /* dup2 clears CLOEXEC on the copy: fd 3 is the one QEMU gets. */
                if (q->listen_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(q->listen_fd, 3) < 0)
                        _exit(127);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        q->pid = pid;
        return 0;
}

/* SIGKILL, reap, remove the socket, the chroot and the directory. */
static inline void bench_qemu_cleanup(bench_qemu *q)
{
        if (q->pid > 0) {
                kill(q->pid, SIGKILL);
                while (waitpid(q->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                q->pid = 0;
        }
        if (q->listen_fd >= 0)
                close(q->listen_fd);
        q->listen_fd = -1;
        if (q->dir[0]) {
                unlink(q->sock);
                rmdir(q->root);
                rmdir(q->dir);
                q->dir[0] = '\0';
        }
}

/* Connect to a freshly spawned QEMU and wait for R1 readiness: greeting, capabilities,
 * query-status answering "prelaunch". Returns the connected socket (negotiated), or -1. */
static inline int bench_qemu_wait_ready(bench_qemu *q, bench_conn *c)
{
        c->fd = bench_connect(q->sock);
        c->start = c->end = 0;
        if (c->fd < 0)
                return -1;
        if (bench_negotiate(c) < 0 || bench_command(c, BENCH_QUERY, "\"prelaunch\"") < 0) {
                close(c->fd);
                c->fd = -1;
                return -1;
        }
        return c->fd;
}
