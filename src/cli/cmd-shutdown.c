/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm shutdown: ask the guest to power off (system_powerdown), and once QEMU reports SHUTDOWN
 * (it stays alive: qdm starts it with -no-shutdown) tell it to quit. A guest that never ran
 * cannot power off, so a device model still in prelaunch is quit directly. With --force, a
 * guest that has not powered off by the timeout is killed. The device model stays listed as
 * exited until `qdm destroy`.
 */
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

#define DEFAULT_TIMEOUT_USEC (60 * USEC_PER_SEC)

typedef struct watch {
        bool shutdown;
} watch;

static void on_event(qdm_qmp *qmp, const qdm_qmp_message *ev, void *userdata)
{
        watch *w = userdata;
        if (streq_ptr(qdm_qmp_message_get_event(ev), "SHUTDOWN"))
                w->shutdown = true;
}

int cmd_shutdown(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"timeout", required_argument, NULL, 't'},
                {"force", no_argument, NULL, 'f'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        uint64_t timeout = DEFAULT_TIMEOUT_USEC;
        bool force = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 't':
                        if (cli_parse_seconds(optarg, &timeout) < 0 || timeout == 0)
                                return cli_error(EXIT_USAGE,
                                                 "shutdown: --timeout: '%s' is not "
                                                 "a number of seconds > 0",
                                                 optarg);
                        break;
                case 'f':
                        force = true;
                        break;
                case 'h':
                        printf("Usage: qdm shutdown [--timeout SECONDS] [--force] NAME\n\n"
                               "Power the guest off (ACPI), then end QEMU. A guest that never "
                               "ran, or has\nalready powered off, is ended at once; a paused "
                               "guest cannot power itself\noff, so it is refused (or, with "
                               "--force, killed at once). The device model\nstays listed as "
                               "exited until 'qdm destroy'.\n\n"
                               "  --timeout SECONDS  how long the guest may take (default 60)\n"
                               "  --force            kill QEMU if the guest has not powered off "
                               "by then;\n"
                               "                     exit 0 once it is gone\n"
                               "  -h, --help         show this help\n");
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (argc - optind != 1)
                return cli_error(EXIT_USAGE, "shutdown: expected NAME (see 'qdm shutdown "
                                             "--help')");
        control ctl;
        int r = control_lookup(g, argv[optind], &ctl);
        int qemu_fd = r == 0 ? proc_ident_open(&ctl.record.qemu) : -1;
        if (r == 0 && qemu_fd < 0)
                r = cli_error(EXIT_FAILED, "%s: QEMU is not running", ctl.name);
        if (r == 0)
                r = control_connect(&ctl, timeout, timeout);
        if (r != 0) {
                safe_close(qemu_fd);
                control_close(&ctl, 0);
                return r;
        }

        uint64_t deadline = usec_add(now_usec(), timeout);
        watch w = {0};
        qdm_qmp_set_event_callback(ctl.qmp, on_event, &w);
        char *json = NULL;
        r = control_execute(&ctl, "query-status", NULL, timeout, &json);
        /* A guest that never ran, or has already powered off, is ended at once. */
        bool prelaunch = json && (strstr(json, "\"prelaunch\"") || strstr(json, "\"shutdown\""));
        bool paused = json && strstr(json, "\"paused\"");
        free(json);
        if (r == 0 && paused && !force)
                r = cli_error(EXIT_FAILED,
                              "%s: the guest is paused and cannot power itself off (resume it "
                              "first, or use --force to kill it)",
                              ctl.name);
        if (r == 0 && paused) /* --force: no point waiting for a guest that cannot run */
                deadline = now_usec();
        else if (r == 0 && !prelaunch)
                r = control_execute(&ctl, "system_powerdown", NULL, timeout, NULL);
        /* Wait for the guest to power off, or QEMU to end. */
        bool exited = false;
        while (r == 0 && !w.shutdown && !prelaunch && !paused) {
                uint64_t now = now_usec();
                if (now >= deadline)
                        break;
                struct pollfd p[2] = {{.fd = qdm_ctx_get_fd(ctl.ctx), .events = POLLIN},
                                      {.fd = qemu_fd, .events = POLLIN}};
                int k = poll(p, 2, (int)((deadline - now + 999) / 1000));
                if (k < 0 && errno != EINTR)
                        break;
                if (p[1].revents & POLLIN) {
                        exited = true;
                        break;
                }
                qdm_ctx_process(ctl.ctx);
        }
        if (r == 0 && !exited && (w.shutdown || prelaunch))
                r = control_execute(&ctl, "quit", NULL, timeout, NULL);
        control_close(&ctl, timeout);

        if (r == 0) {
                struct pollfd p = {.fd = qemu_fd, .events = POLLIN};
                uint64_t now = now_usec();
                int wait_ms = now < deadline ? (int)((deadline - now + 999) / 1000) : 0;
                exited = exited || poll(&p, 1, wait_ms) > 0;
                if (!exited && force) {
                        (void)syscall(SYS_pidfd_send_signal, qemu_fd, SIGKILL, NULL, 0);
                        exited = poll(&p, 1, 10000) > 0;
                        if (exited && paused)
                                printf("%s: the guest was paused; killed QEMU\n", argv[optind]);
                        else if (exited)
                                printf("%s: the guest did not power off within %.0f s; "
                                       "killed QEMU\n",
                                       argv[optind], (double)timeout / 1e6);
                } else if (exited)
                        printf("%s: shut down\n", argv[optind]);
                if (!exited)
                        r = cli_error(EXIT_FAILED,
                                      "%s: the guest did not power off within %.0f s (use "
                                      "--force to kill it)",
                                      argv[optind], (double)timeout / 1e6);
        }
        safe_close(qemu_fd);
        return r;
}
