/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * raw-launch: the least code that starts a paused QEMU and knows it is ready (R1), as the
 * baseline `qdm create --paused` is measured against. socket+bind+listen on a UNIX socket,
 * fork, exec QEMU with the listening fd at 3, connect, greeting, qmp_capabilities,
 * query-status until "prelaunch". Prints the microseconds from just before fork to that reply,
 * one line per start, then SIGKILLs and reaps QEMU and removes its directory.
 *
 * --restricted adds what qdm's restrict mode "qemu" hands QEMU (-chroot into an empty
 * mode-0000 directory, -runas 64999:64999 or --runas UID:GID, -sandbox ...) for a like-for-like
 * comparison; it
 * does not do qdm's pre-exec measures (namespaces, rlimits, capability bounding set).
 * --hold prints the figure, then keeps QEMU until stdin reaches EOF: the benchmark uses it to
 * start many at once, to time it as a whole process up to its ready line, and to read the RSS
 * of this minimal parent. --teardown then prints "teardown USEC": what SIGKILL + waitpid +
 * removing the directory took (the raw counterpart of `qdm destroy`).
 *
 * The listening socket is non-blocking: see bench_qemu_prepare() for the QEMU hang a blocking
 * one can cause. --blocking-listen hands QEMU a blocking one, as qdm does today, to count how
 * often that hangs. --timeout bounds every wait for QEMU (default 30 s).
 */
#include <getopt.h>

#include "bench-util.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: raw-launch [--qemu PATH] [--machine none|q35] [--accel kvm|tcg]\n"
                "                  [--restricted] [--count N] [--hold] [--teardown]\n"
                "                  [--timeout SECONDS] [--blocking-listen]\n"
                "Prints the microseconds from fork to the query-status reply, one line per\n"
                "start (flushed at once); with --teardown a line \"teardown USEC\" for SIGKILL,\n"
                "reap and removal; with --hold QEMU is kept until stdin reaches EOF.\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"qemu", required_argument, NULL, 'q'},
                {"machine", required_argument, NULL, 'm'},
                {"accel", required_argument, NULL, 'a'},
                {"restricted", no_argument, NULL, 'r'},
                {"count", required_argument, NULL, 'n'},
                {"hold", no_argument, NULL, 'H'},
                {"teardown", no_argument, NULL, 'T'},
                {"timeout", required_argument, NULL, 't'},
                {"blocking-listen", no_argument, NULL, 'B'},
                {"runas", required_argument, NULL, 'u'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bench_qemu_opts o = {.machine = "none", .accel = "kvm"};
        uint64_t count = 1;
        bool hold = false, teardown = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'q':
                        o.qemu = optarg;
                        break;
                case 'm':
                        o.machine = optarg;
                        break;
                case 'a':
                        o.accel = optarg;
                        break;
                case 'r':
                        o.restricted = true;
                        break;
                case 'n':
                        if (!bench_parse_u64(optarg, &count) || count == 0) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'H':
                        hold = true;
                        break;
                case 'T':
                        teardown = true;
                        break;
                case 't': {
                        uint64_t sec;
                        if (!bench_parse_u64(optarg, &sec) || sec == 0 || sec > 3600) {
                                usage(stderr);
                                return 2;
                        }
                        bench_read_timeout_ms = (int)(sec * 1000);
                        break;
                }
                case 'B':
                        o.blocking_listen = true;
                        break;
                case 'u':
                        o.runas = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }

        for (uint64_t i = 0; i < count; i++) {
                bench_qemu q = {0};
                bench_conn *conn = malloc(sizeof(*conn));
                if (!conn || bench_qemu_prepare(&q, o.restricted, o.blocking_listen) < 0) {
                        perror("raw-launch: prepare");
                        bench_qemu_cleanup(&q);
                        free(conn);
                        return 1;
                }
                uint64_t t0 = bench_now_usec();
                if (bench_qemu_spawn(&q, &o) < 0) {
                        perror("raw-launch: fork");
                        bench_qemu_cleanup(&q);
                        free(conn);
                        return 1;
                }
                int fd = bench_qemu_wait_ready(&q, conn);
                uint64_t t1 = bench_now_usec();
                if (fd < 0) {
                        fprintf(stderr, "raw-launch: QEMU did not become ready%s\n",
                                errno == ETIMEDOUT ? " (timed out)" : "");
                        bench_qemu_cleanup(&q);
                        free(conn);
                        return 1;
                }
                printf("%llu\n", (unsigned long long)(t1 - t0));
                fflush(stdout);
                if (hold) {
                        char b[256];
                        for (;;) {
                                ssize_t n = read(0, b, sizeof(b));
                                if (n > 0 || (n < 0 && errno == EINTR))
                                        continue;
                                break;
                        }
                }
                /* Killed while the monitor is idle: no command is abandoned (R3). */
                uint64_t t2 = bench_now_usec();
                bench_qemu_cleanup(&q);
                close(fd);
                free(conn);
                if (teardown) {
                        printf("teardown %llu\n", (unsigned long long)(bench_now_usec() - t2));
                        fflush(stdout);
                }
        }
        return 0;
}
