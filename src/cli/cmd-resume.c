/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm resume / qdm pause: "cont" / "stop" on the control monitor, under the lock (R7).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "util.h"

#define DEFAULT_TIMEOUT_USEC (30 * USEC_PER_SEC)

static int run(const cli_globals *g, int argc, char **argv, const char *verb, const char *command,
               const char *description)
{
        static const struct option options[] = {
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        uint64_t timeout = DEFAULT_TIMEOUT_USEC;
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 't':
                        if (cli_parse_seconds(optarg, &timeout) < 0 || timeout == 0)
                                return cli_error(EXIT_USAGE,
                                                 "%s: --timeout: '%s' is not a "
                                                 "number of seconds > 0",
                                                 verb, optarg);
                        break;
                case 'h':
                        printf("Usage: qdm %s [--timeout SECONDS] NAME\n\n%s\n\n"
                               "  --timeout SECONDS  for the lock, connecting and the command "
                               "(default 30)\n"
                               "  -h, --help         show this help\n",
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
        if (r == 0)
                r = control_connect(&ctl, timeout, timeout);
        if (r == 0)
                r = control_execute(&ctl, command, NULL, timeout, NULL);
        if (r == EXIT_OK)
                printf("%s: %s\n", ctl.name, strcmp(command, "cont") == 0 ? "running" : "paused");
        control_close(&ctl, timeout);
        return r;
}

int cmd_resume(const cli_globals *g, int argc, char **argv)
{
        return run(g, argc, argv, "resume", "cont",
                   "Let the guest run: QMP \"cont\" on the device model's control monitor.");
}

int cmd_pause(const cli_globals *g, int argc, char **argv)
{
        return run(g, argc, argv, "pause", "stop",
                   "Pause the guest: QMP \"stop\" on the device model's control monitor.");
}
