/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm events / qdm logs: print the event log (JSON lines: timestamp, event, data) or QEMU's
 * stderr log; with --follow keep printing what is appended until the device model ends or is
 * destroyed.
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

static int copy_new(int fd)
{
        char buf[65536];
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0;
                if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
                        return -EPIPE;
        }
}

static bool still_live(control *c)
{
        /* The supervisor appends to both logs; once it and QEMU are gone, nothing more comes. */
        int a = proc_ident_open(&c->record.supervisor);
        int b = proc_ident_open(&c->record.qemu);
        bool live = a >= 0 || b >= 0;
        safe_close(a);
        safe_close(b);
        return live;
}

static int run(const cli_globals *g, int argc, char **argv, const char *verb, const char *file,
               const char *description)
{
        static const struct option options[] = {
                {"follow", no_argument, NULL, 'f'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool follow = false;
        int c;
        while ((c = getopt_long(argc, argv, "fh", options, NULL)) >= 0) {
                switch (c) {
                case 'f':
                        follow = true;
                        break;
                case 'h':
                        printf("Usage: qdm %s [--follow] NAME\n\n%s\n\n"
                               "  -f, --follow  keep printing until the device model ends\n"
                               "  -h, --help    show this help\n",
                               verb, description);
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (argc - optind != 1)
                return cli_error(EXIT_USAGE, "%s: expected NAME (see 'qdm %s --help')", verb, verb);
        control ctl;
        int r = control_lookup(g, argv[optind], &ctl);
        if (r != 0) {
                control_close(&ctl, 0);
                return r;
        }
        _cleanup_free_ char *path = rundir_path(ctl.run_dir, ctl.name, file);
        _cleanup_close_ int fd =
                path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) : -1;
        if (fd < 0 && errno != ENOENT) {
                r = cli_error(EXIT_FAILED, "%s: %s", path, strerror(errno));
                control_close(&ctl, 0);
                return r;
        }
        r = fd >= 0 ? copy_new(fd) : 0;
        fflush(stdout);
        while (follow && r == 0) {
                bool live = still_live(&ctl);
                struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
                nanosleep(&ts, NULL);
                if (fd < 0 && path)
                        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (fd >= 0)
                        r = copy_new(fd);
                fflush(stdout);
                if (!live)
                        break;
                _cleanup_free_ char *dir = rundir_path(ctl.run_dir, ctl.name, NULL);
                if (dir && access(dir, F_OK) < 0)
                        break; /* destroyed */
        }
        control_close(&ctl, 0);
        return r == 0 ? EXIT_OK : EXIT_FAILED;
}

int cmd_events(const cli_globals *g, int argc, char **argv)
{
        return run(g, argc, argv, "events", EVENTS_LOG,
                   "Print the device model's QMP events, one JSON object per line:\n"
                   "{\"timestamp\": SECONDS, \"event\": NAME, \"data\": {...}}.");
}

int cmd_logs(const cli_globals *g, int argc, char **argv)
{
        return run(g, argc, argv, "logs", STDERR_LOG,
                   "Print what QEMU wrote to stderr (capped at 1 MiB).");
}
