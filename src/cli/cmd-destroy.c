/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm destroy: end a device model whatever state it and its supervisor are in, and remove
 * everything it had. The supervisor is asked first (SIGTERM: it destroys through libqdm and
 * reaps QEMU at once); whatever is still alive after that is killed directly. Every pid comes
 * from state.json and is checked against its start time before being signalled. Nothing
 * waits for init to reap orphans: a dead process is one whose pidfd is readable.
 */
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "control.h"
#include "restrict.h"
#include "util.h"

static bool signal_and_wait(const proc_ident *who, int sig, int timeout_ms)
{
        int fd = proc_ident_open(who);
        if (fd < 0)
                return true; /* already gone (or a different process now has the pid) */
        (void)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r;
        do
                r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        close(fd);
        return r > 0;
}

/* What a device model's directory may hold: libqdm's and the CLI's files. */
static int remove_dir(const char *run_dir, const char *name)
{
        static const char *const files[] = {SOCKET_FILE, STATE_FILE, STATE_FILE ".tmp",
                                            STDERR_LOG,  EVENTS_LOG, LOCK_FILE};
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = rundir_path(run_dir, name, files[i]);
                if (p && unlink(p) < 0 && errno != ENOENT)
                        return -errno;
        }
        _cleanup_free_ char *root = rundir_path(run_dir, name, "root");
        if (root && rmdir(root) < 0 && errno != ENOENT)
                return -errno;
        _cleanup_free_ char *dir = rundir_path(run_dir, name, NULL);
        if (dir && rmdir(dir) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int cmd_destroy(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        printf("Usage: qdm destroy NAME\n\n"
                               "Kill the device model's QEMU and supervisor, every process of its "
                               "uid,\nand remove its run directory. Works whatever state it is "
                               "in.\n");
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (argc - optind != 1)
                return cli_error(EXIT_USAGE, "destroy: expected NAME (see 'qdm destroy --help')");
        control ctl;
        int r = control_lookup(g, argv[optind], &ctl);
        if (r != 0) {
                control_close(&ctl, 0);
                return r;
        }
        const dm_state *s = &ctl.record;

        /* The supervisor destroys through libqdm: it is QEMU's parent and reaps it at once. */
        if (!signal_and_wait(&s->supervisor, SIGTERM, 5000))
                (void)signal_and_wait(&s->supervisor, SIGKILL, 5000);
        /* Whatever is left (the supervisor was gone or stuck): kill QEMU directly. */
        if (!signal_and_wait(&s->qemu, SIGKILL, 10000))
                cli_error(EXIT_FAILED, "%s: QEMU pid %d does not die", ctl.name, (int)s->qemu.pid);
        int ret = EXIT_OK;
        if (s->own_uid && s->uid != 0) {
                r = uid_kill_all(s->uid);
                if (r < 0)
                        ret = cli_error(EXIT_FAILED, "%s: cannot kill the processes of uid %u: %s",
                                        ctl.name, (unsigned)s->uid, strerror(-r));
        }
        r = remove_dir(ctl.run_dir, ctl.name);
        if (r < 0)
                ret = cli_error(EXIT_FAILED, "%s: cannot remove %s/%s: %s", ctl.name, ctl.run_dir,
                                ctl.name, strerror(-r));
        if (ret == EXIT_OK)
                printf("%s: destroyed\n", ctl.name);
        control_close(&ctl, 0);
        return ret;
}
