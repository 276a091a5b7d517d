/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * raw-qmp: the least code that talks QMP, as the baseline for libqdm's client. Blocking
 * write + read-one-line on a UNIX socket, no JSON parsing (a substring check for "return"),
 * no ids, no timeouts. It talks to a socket path (--socket) or starts its own QEMU the way
 * raw-launch does.
 *
 *   --seq N       negotiate, then N sequential query-status (write one, read its line);
 *                 with --id each carries an id shaped like libqdm's client's (a random
 *                 prefix, then the decimal serial), to separate what the bytes cost QEMU
 *                 from what the library's code costs; --id-prefix P uses P as the prefix
 *                 (run.py passes one as long as the prefix it captured from libqdm)
 *   --pipe N      negotiate, then N query-status written at once; count the N replies
 *   --latency N   N times: connect, greeting, qmp_capabilities, one query-status, close
 *   --once [CMD]  one connection running CMD (default query-status): for whole-process timing
 *
 * Output, one line, key=value: "seq n=N usec=T cps=X", "pipe ...", "latency n=N min_usec=..
 * median_usec=.. max_usec=.. samples=a,b,..", "once usec=T" (T from connect to the reply).
 */
#include <getopt.h>

#include "bench-util.h"

static void usage(FILE *f)
{
        fprintf(f, "Usage: raw-qmp (--socket PATH | [--qemu PATH] [--machine M] [--accel A])\n"
                   "               (--seq N [--id | --id-prefix P] | --pipe N | --latency N | "
                   "--once [--command "
                   "CMD])\n");
}

static int open_negotiated(const char *path, bench_conn *c)
{
        c->start = c->end = 0;
        c->fd = bench_connect(path);
        if (c->fd < 0)
                return -1;
        if (bench_negotiate(c) < 0) {
                close(c->fd);
                c->fd = -1;
                return -1;
        }
        return 0;
}

/* With ids, the shape of what libqdm's client puts on the wire for the same command: a
 * per-connection prefix (random unless given), then the serial (qmp_capabilities was 1), and
 * "\n". */
static int run_seq(const char *path, uint64_t n, const char *prefix)
{
        static bench_conn c;
        if (open_negotiated(path, &c) < 0)
                return -1;
        char cmd[256];
        uint64_t t0 = bench_now_usec();
        for (uint64_t i = 0; i < n; i++) {
                const char *s = BENCH_QUERY;
                if (prefix) {
                        snprintf(cmd, sizeof(cmd),
                                 "{\"execute\":\"query-status\",\"id\":\"%s%llu\"}\n", prefix,
                                 (unsigned long long)i + 2);
                        s = cmd;
                }
                if (bench_command(&c, s, NULL) < 0) {
                        close(c.fd);
                        return -1;
                }
        }
        uint64_t t = bench_now_usec() - t0;
        close(c.fd);
        printf("seq n=%llu usec=%llu cps=%.1f\n", (unsigned long long)n, (unsigned long long)t,
               t ? (double)n * 1e6 / (double)t : 0.0);
        return 0;
}

static int run_pipe(const char *path, uint64_t n)
{
        static bench_conn c;
        if (open_negotiated(path, &c) < 0)
                return -1;
        size_t cmd_len = strlen(BENCH_QUERY), total = (size_t)n * cmd_len, written = 0;
        char *out = malloc(total ? total : 1);
        if (!out) {
                close(c.fd);
                return -1;
        }
        for (uint64_t i = 0; i < n; i++)
                memcpy(out + i * cmd_len, BENCH_QUERY, cmd_len);
        fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
        /* Anything left in the negotiation buffer is not a reply to ours. */
        uint64_t replies = 0;
        char buf[65536];
        uint64_t t0 = bench_now_usec();
        while (replies < n) {
                struct pollfd p = {.fd = c.fd, .events = POLLIN | (written < total ? POLLOUT : 0)};
                if (poll(&p, 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if ((p.revents & POLLOUT) && written < total) {
                        ssize_t k = write(c.fd, out + written, total - written);
                        if (k > 0)
                                written += (size_t)k;
                        else if (k < 0 && errno != EAGAIN && errno != EINTR)
                                break;
                }
                if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t k = read(c.fd, buf, sizeof(buf));
                        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                                break;
                        for (ssize_t i = 0; i < k; i++)
                                replies += buf[i] == '\n';
                }
        }
        uint64_t t = bench_now_usec() - t0;
        free(out);
        close(c.fd);
        if (replies < n)
                return -1;
        printf("pipe n=%llu usec=%llu cps=%.1f\n", (unsigned long long)n, (unsigned long long)t,
               t ? (double)n * 1e6 / (double)t : 0.0);
        return 0;
}

/* One whole control session; returns its microseconds, or 0 on failure. */
static uint64_t one_session(const char *path, const char *command)
{
        static bench_conn c;
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "{\"execute\":\"%s\"}\n", command);
        uint64_t t0 = bench_now_usec();
        if (open_negotiated(path, &c) < 0)
                return 0;
        int r = bench_command(&c, cmd, NULL);
        close(c.fd);
        uint64_t t = bench_now_usec() - t0;
        return r < 0 ? 0 : t ? t : 1;
}

static int run_latency(const char *path, uint64_t n)
{
        uint64_t *v = calloc(n, sizeof(*v));
        if (!v)
                return -1;
        for (uint64_t i = 0; i < n; i++) {
                v[i] = one_session(path, "query-status");
                if (v[i] == 0) {
                        free(v);
                        return -1;
                }
        }
        uint64_t med = bench_median(v, n);
        printf("latency n=%llu min_usec=%llu median_usec=%llu max_usec=%llu samples=",
               (unsigned long long)n, (unsigned long long)v[0], (unsigned long long)med,
               (unsigned long long)v[n - 1]);
        for (uint64_t i = 0; i < n; i++)
                printf("%s%llu", i ? "," : "", (unsigned long long)v[i]);
        printf("\n");
        free(v);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"qemu", required_argument, NULL, 'q'},
                {"machine", required_argument, NULL, 'm'},
                {"accel", required_argument, NULL, 'a'},
                {"seq", required_argument, NULL, 'S'},
                {"pipe", required_argument, NULL, 'P'},
                {"latency", required_argument, NULL, 'L'},
                {"once", no_argument, NULL, 'O'},
                {"command", required_argument, NULL, 'c'},
                {"id", no_argument, NULL, 'i'},
                {"id-prefix", required_argument, NULL, 'I'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bench_qemu_opts o = {.machine = "none", .accel = "kvm"};
        const char *path = NULL, *command = "query-status";
        int mode = 0;
        bool ids = false;
        const char *id_prefix = NULL;
        char random_prefix[9];
        uint64_t n = 0;
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        path = optarg;
                        break;
                case 'q':
                        o.qemu = optarg;
                        break;
                case 'm':
                        o.machine = optarg;
                        break;
                case 'a':
                        o.accel = optarg;
                        break;
                case 'S':
                case 'P':
                case 'L':
                        if (!bench_parse_u64(optarg, &n) || n == 0) {
                                usage(stderr);
                                return 2;
                        }
                        mode = c;
                        break;
                case 'O':
                        mode = c;
                        break;
                case 'c':
                        command = optarg;
                        break;
                case 'i':
                        ids = true;
                        break;
                case 'I':
                        /* Printable, no JSON escaping needed, and short enough for cmd[]. */
                        if (strlen(optarg) == 0 || strlen(optarg) > 64 ||
                            strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                           "0123456789-_") != strlen(optarg)) {
                                usage(stderr);
                                return 2;
                        }
                        ids = true;
                        id_prefix = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!mode || optind != argc) {
                usage(stderr);
                return 2;
        }

        bench_qemu q = {0};
        q.listen_fd = -1;
        if (!path) {
                static bench_conn ready;
                if (bench_qemu_prepare(&q, false, false) < 0 || bench_qemu_spawn(&q, &o) < 0 ||
                    bench_qemu_wait_ready(&q, &ready) < 0) {
                        fprintf(stderr, "raw-qmp: cannot start QEMU\n");
                        bench_qemu_cleanup(&q);
                        return 1;
                }
                close(ready.fd); /* idle: nothing outstanding */
                path = q.sock;
        }

        int r;
        switch (mode) {
        case 'S':
                if (ids && !id_prefix) {
                        /* libqdm's default: 8 characters of 6 random bits each. */
                        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                                                       "nopqrstuvwxyz0123456789-_";
                        srandom((unsigned)(bench_now_usec() ^ (uint64_t)getpid()));
                        for (size_t i = 0; i < 8; i++)
                                random_prefix[i] = alphabet[random() & 63];
                        random_prefix[8] = '\0';
                        id_prefix = random_prefix;
                }
                r = run_seq(path, n, ids ? id_prefix : NULL);
                break;
        case 'P':
                r = run_pipe(path, n);
                break;
        case 'L':
                r = run_latency(path, n);
                break;
        default: {
                uint64_t t = one_session(path, command);
                r = t ? 0 : -1;
                if (t)
                        printf("once usec=%llu\n", (unsigned long long)t);
        }
        }
        if (r < 0)
                fprintf(stderr, "raw-qmp: failed talking to %s\n", path);
        bench_qemu_cleanup(&q);
        return r < 0 ? 1 : 0;
}
