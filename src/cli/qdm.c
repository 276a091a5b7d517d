/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm: the command-line tool. This file holds the global options and the dispatch to one
 * file per subcommand; it owns the process's exit code conventions (0 ok, 1 failed, 2 usage).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "qdm-config.h"

static int cmd_version(const cli_globals *g, int argc, char **argv);

static const struct {
        const char *name;
        cli_command_fn fn;
        const char *summary;
} commands[] = {
        {"create", cmd_create, "start a device model: restricted, paused, known ready"},
        {"status", cmd_status, "show a device model's state, pids, uid and restriction"},
        {"list", cmd_list, "list the device models"},
        {"resume", cmd_resume, "let a paused device model run (QMP cont)"},
        {"pause", cmd_pause, "pause a running device model (QMP stop)"},
        {"shutdown", cmd_shutdown, "power the guest off, then end QEMU"},
        {"audit", cmd_audit, "show a running device model's restriction, read from /proc"},
        {"destroy", cmd_destroy, "kill a device model and remove everything it had"},
        {"qmp", cmd_qmp, "run one QMP command on a device model or any QMP socket"},
        {"events", cmd_events, "print a device model's QMP events"},
        {"logs", cmd_logs, "print what QEMU wrote to stderr"},
        {"version", cmd_version, "print qdm's version"},
};

static int cmd_version(const cli_globals *g, int argc, char **argv)
{
        (void)g;
        if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                printf("Usage: qdm version\n\nPrint qdm's version.\n");
                return EXIT_OK;
        }
        if (argc > 1)
                return cli_error(EXIT_USAGE, "version: takes no arguments");
        printf("qdm %s\n", QDM_VERSION);
        return EXIT_OK;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: qdm [--run-dir DIR] [-v] COMMAND [ARGS...]\n"
                   "\n"
                   "Start and run QEMU device models restricted, paused, and known ready.\n"
                   "\n"
                   "Commands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
        fprintf(f,
                "\n"
                "Options:\n"
                "  --run-dir DIR  where device models keep their state (also $QDM_RUN_DIR;\n"
                "                 default /run/qdm for root, $XDG_RUNTIME_DIR/qdm otherwise)\n"
                "  -v, --verbose  show library diagnostics on stderr (twice: debug)\n"
                "  -h, --help     show this help\n"
                "  --version      show the version\n"
                "\n"
                "Run 'qdm COMMAND --help' for a command's options.\n"
                "Exit status: 0 success, 1 the operation failed, 2 bad usage or configuration.\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"run-dir", required_argument, NULL, 'r'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        cli_globals g = {.run_dir = getenv("QDM_RUN_DIR")};
        int c;

        /* '+': stop at the subcommand, whose options are its own. */
        while ((c = getopt_long(argc, argv, "+vh", options, NULL)) >= 0) {
                switch (c) {
                case 'r':
                        g.run_dir = optarg;
                        break;
                case 'v':
                        g.verbose++;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_OK;
                case 'V':
                        printf("qdm %s\n", QDM_VERSION);
                        return EXIT_OK;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *name = argv[optind];
        int optind_saved = optind;
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, name) == 0) {
                        int sub_argc = argc - optind;
                        char **sub_argv = argv + optind;
                        optind = 0; /* reset getopt for the subcommand */
                        return commands[i].fn(&g, sub_argc, sub_argv);
                }
        /* The supervisor: an internal mode of this binary, started by `qdm create`. */
        if (strcmp(name, "__supervise") == 0) {
                optind = 0;
                return cmd_supervise(&g, argc - optind_saved, argv + optind_saved);
        }
        if (strcmp(name, "help") == 0) {
                usage(stdout);
                return EXIT_OK;
        }
        return cli_error(EXIT_USAGE, "unknown command '%s' (see 'qdm --help')", name);
}
