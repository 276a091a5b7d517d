/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The library side of the load test (load.py): one process using libqdm's QMP client on the
 * control sockets of device models the CLI created, for a fixed time, round-robin.
 *
 *   load-client --run-dir DIR --seconds S NAME...
 *
 * Each call takes the device model's monitor lock first (RUN_DIR/NAME/lock, flock: the
 * convention every qdm command follows, R7), connects, negotiates, asks query-name (must be
 * {"name": NAME}) and query-status (must be a state a device model can be in), and closes.
 * Prints one line: calls, failures, wrong answers, this process's RSS and fds at start
 * (after the first round) and at the end. Exit status 1 if any call failed or was wrong.
 */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "qdm.h"
#include "rel-common.h"

static int lock_dm(const char *run_dir, const char *name, uint64_t timeout_usec)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s/lock", run_dir, name);
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        uint64_t deadline = now_usec() + timeout_usec;
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK && errno != EINTR) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                if (now_usec() >= deadline) {
                        close(fd);
                        return -ETIMEDOUT;
                }
                rel_sleep_usec(500);
        }
        return fd;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"run-dir", required_argument, NULL, 'r'},
                {"seconds", required_argument, NULL, 's'},
                {0},
        };
        const char *run_dir = NULL;
        double seconds = 5;
        int o;
        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (o) {
                case 'r':
                        run_dir = optarg;
                        break;
                case 's':
                        seconds = atof(optarg);
                        break;
                default:
                        return 2;
                }
        }
        if (!run_dir || optind >= argc) {
                fprintf(stderr, "usage: load-client --run-dir DIR --seconds S NAME...\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        int n_names = argc - optind;
        char **names = argv + optind;
        unsigned calls = 0, failed = 0, wrong = 0;
        long rss_start = -1, rss0 = rel_rss_kib(0);
        int fds_start = -1, fds0 = test_count_fds();
        uint64_t deadline = now_usec() + (uint64_t)(seconds * 1e6);
        for (unsigned i = 0; now_usec() < deadline; i++) {
                const char *name = names[i % (unsigned)n_names];
                if (i == (unsigned)n_names) { /* after one round: warm */
                        rss_start = rel_rss_kib(0);
                        fds_start = test_count_fds();
                }
                int lock = lock_dm(run_dir, name, 30 * USEC_PER_SEC);
                if (lock < 0) {
                        rel_fail(&failed, "%s: lock: %s", name, strerror(-lock));
                        continue;
                }
                char sock[4096];
                snprintf(sock, sizeof(sock), "%s/%s/qmp.sock", run_dir, name);
                qdm_ctx *ctx = NULL;
                qdm_qmp *q = NULL;
                char *json = NULL, *err = NULL;
                int r = qdm_ctx_new(&ctx);
                if (r >= 0)
                        r = qdm_qmp_new(ctx, &q);
                if (r >= 0)
                        r = qdm_qmp_connect(q, sock);
                if (r >= 0)
                        r = qdm_qmp_wait_ready(q, 10 * USEC_PER_SEC);
                if (r >= 0)
                        r = qdm_qmp_execute(q, "query-name", NULL, 10 * USEC_PER_SEC, &json, &err);
                calls++;
                if (r < 0)
                        rel_fail(&failed, "%s: query-name: %s %s", name, strerror(-r),
                                 err ? err : "");
                else {
                        char want[128];
                        snprintf(want, sizeof(want), "{\"name\":\"%s\"}", name);
                        if (!json || strcmp(json, want) != 0)
                                rel_fail(&wrong, "%s: query-name answered %s", name,
                                         json ? json : "(null)");
                }
                free(json);
                free(err);
                json = err = NULL;
                if (r >= 0) {
                        r = qdm_qmp_execute(q, "query-status", NULL, 10 * USEC_PER_SEC, &json,
                                            &err);
                        calls++;
                        if (r < 0)
                                rel_fail(&failed, "%s: query-status: %s", name, strerror(-r));
                        else if (!json ||
                                 (!strstr(json, "\"prelaunch\"") && !strstr(json, "\"running\"") &&
                                  !strstr(json, "\"paused\"")))
                                rel_fail(&wrong, "%s: query-status answered %s", name,
                                         json ? json : "(null)");
                        free(json);
                        free(err);
                }
                qdm_qmp_unref(q);
                if (qdm_ctx_flush(ctx, 10 * USEC_PER_SEC) < 0)
                        rel_fail(&failed, "%s: still draining after 10 s", name);
                qdm_ctx_unref(ctx);
                close(lock);
        }
        if (rss_start < 0) {
                rss_start = rss0;
                fds_start = fds0;
        }
        printf("load-client: calls %u failed %u wrong %u rss_kib_first %ld rss_kib_start %ld "
               "rss_kib_end %ld fds_start %d fds_end %d\n",
               calls, failed, wrong, rss0, rss_start, rel_rss_kib(0), fds_start, test_count_fds());
        return failed || wrong || test_count_fds() != fds_start ? 1 : 0;
}
