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

/* Kill whoever holds the device model's control socket: its QEMU, even one no record names
 * (a supervisor killed between spawning QEMU and recording its pid). Through pidfds. (Its uid
 * is not swept here: with share_uid it is not this device model's alone, and QEMU runs with
 * -sandbox spawn=deny, so it has no children.) */
static int kill_socket_holders(const char *run_dir, const char *name)
{
        pid_t holders[8];
        int n = rundir_socket_holders(run_dir, name, holders, ELEMENTSOF(holders));
        int killed = 0;
        for (int i = 0; i < n; i++) {
                proc_ident who;
                if (proc_ident_get(holders[i], &who) == 0 && signal_and_wait(&who, SIGKILL, 10000))
                        killed++;
        }
        return killed;
}

/* A directory without state.json: a create that died before QEMU ran (the supervisor records
 * QEMU as soon as it is spawned), or one still starting. The latter holds the monitor lock;
 * the former holds nothing and only files remain. Returns an exit code, or -1 when this is
 * not such a case. */
static int destroy_remains(const cli_globals *g, const char *name)
{
        _cleanup_free_ char *run_dir = NULL;
        if (rundir_resolve(g, false, &run_dir) != 0)
                return -1;
        _cleanup_free_ char *dir = rundir_path(run_dir, name, NULL);
        _cleanup_free_ char *state = rundir_path(run_dir, name, STATE_FILE);
        if (!dir || !state || access(dir, F_OK) < 0 || access(state, F_OK) == 0)
                return -1;
        int lock = rundir_lock(run_dir, name, 0);
        if (lock == -ETIMEDOUT)
                return cli_error(EXIT_FAILED, "%s is still starting; try again in a moment", name);
        safe_close(lock);
        /* No record, but a QEMU may still hold the socket (its supervisor died right after
         * spawning it): it goes first. */
        int killed = kill_socket_holders(run_dir, name);
        int r = rundir_remove(run_dir, name);
        if (r < 0)
                return cli_error(EXIT_FAILED, "%s: cannot remove %s: %s", name, dir, strerror(-r));
        if (killed > 0)
                printf("%s: killed the QEMU nothing had recorded, and removed what the failed "
                       "start left\n",
                       name);
        else
                printf("%s: removed what a failed start left\n", name);
        return EXIT_OK;
}

int cmd_destroy(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
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
        const char *name = argv[optind];
        if (config_name_valid(name)) {
                int r = destroy_remains(g, name);
                if (r >= 0)
                        return r;
        }
        control ctl;
        int r = control_lookup(g, name, &ctl);
        if (r != 0) {
                control_close(&ctl, 0);
                return r;
        }
        const dm_state *s = &ctl.record;

        /* The supervisor destroys through libqdm: it is QEMU's parent and reaps it at once. */
        bool supervisor_done = signal_and_wait(&s->supervisor, SIGTERM, 5000);
        if (!supervisor_done)
                (void)signal_and_wait(&s->supervisor, SIGKILL, 5000);
        /* A live supervisor destroys through libqdm (QEMU killed and reaped, its uid swept, the
         * directory removed): if it did, there is nothing left to do twice. */
        _cleanup_free_ char *dir = rundir_path(ctl.run_dir, ctl.name, NULL);
        if (supervisor_done && s->supervisor.pid > 0 && dir && access(dir, F_OK) < 0 &&
            errno == ENOENT) {
                printf("%s: destroyed\n", ctl.name);
                control_close(&ctl, 0);
                return EXIT_OK;
        }
        /* Whatever is left (the supervisor was gone or stuck): kill QEMU directly. */
        if (!signal_and_wait(&s->qemu, SIGKILL, 10000))
                cli_error(EXIT_FAILED, "%s: QEMU pid %d does not die", ctl.name, (int)s->qemu.pid);
        /* A record written before QEMU's pid was known names no QEMU: find it by its socket. */
        (void)kill_socket_holders(ctl.run_dir, ctl.name);
        int ret = EXIT_OK;
        if (s->own_uid && s->uid != 0) {
                r = uid_kill_all(s->uid);
                if (r < 0)
                        ret = cli_error(EXIT_FAILED, "%s: cannot kill the processes of uid %u: %s",
                                        ctl.name, (unsigned)s->uid, strerror(-r));
        }
        r = rundir_remove(ctl.run_dir, ctl.name);
        if (r < 0)
                ret = cli_error(EXIT_FAILED, "%s: cannot remove %s/%s: %s", ctl.name, ctl.run_dir,
                                ctl.name, strerror(-r));
        if (ret == EXIT_OK)
                printf("%s: destroyed\n", ctl.name);
        control_close(&ctl, 0);
        return ret;
}
