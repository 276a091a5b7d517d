/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm qmp: one QMP command, its "return" value on stdout.
 *
 * The command's timeout is reported as a failure, but the connection is held until the late
 * reply has been read (R3), up to --drain-timeout, so this tool can never wedge a pre-4.2
 * monitor or hand its answer to the next client.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "util.h"

#define DEFAULT_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define DEFAULT_DRAIN_USEC   (30 * USEC_PER_SEC)

static void usage(FILE *f)
{
        fprintf(f, "Usage: qdm qmp --socket PATH [OPTIONS] COMMAND [ARGS_JSON]\n"
                   "\n"
                   "Run one QMP command and print its \"return\" value as JSON.\n"
                   "\n"
                   "  --socket PATH          any QMP UNIX socket\n"
                   "  --timeout SECONDS      for connecting and the command (default 30)\n"
                   "  --drain-timeout SECONDS  after a timeout, how long to wait for the late\n"
                   "                         reply before hanging up anyway (default 30)\n"
                   "  --pretty               indent the output\n"
                   "  -h, --help             show this help\n"
                   "\n"
                   "ARGS_JSON is a JSON object, e.g. '{\"id\": 1}'.\n"
                   "Exit status: 0 success; 1 QMP error (class and description on stderr),\n"
                   "timeout, or connection failure; 2 bad usage.\n");
}

typedef struct reply {
        bool done;
        int error;
        char *json;
        char *error_class, *error_desc;
} reply;

static void reply_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        reply *r = userdata;
        r->done = true;
        r->error = error;
        if (error == 0)
                r->json = strdup(qdm_qmp_message_get_json(m));
        else if (error == -EREMOTEIO) {
                r->error_class = strdup(qdm_qmp_message_get_error_class(m));
                r->error_desc = strdup(qdm_qmp_message_get_error_desc(m));
        }
}

static int print_json(const char *text, bool pretty)
{
        if (!pretty) {
                puts(text);
                return 0;
        }
        json_object *o = json_tokener_parse(text);
        if (!o)
                return -EINVAL;
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return 0;
}

int cmd_qmp(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"timeout", required_argument, NULL, 't'},
                {"drain-timeout", required_argument, NULL, 'd'},
                {"pretty", no_argument, NULL, 'p'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *socket_path = NULL;
        uint64_t timeout = DEFAULT_TIMEOUT_USEC, drain = DEFAULT_DRAIN_USEC;
        bool pretty = false;
        int c;

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        socket_path = optarg;
                        break;
                case 't':
                        if (cli_parse_seconds(optarg, &timeout) < 0 || timeout == 0)
                                return cli_error(EXIT_USAGE,
                                                 "--timeout: '%s' is not a number "
                                                 "of seconds > 0",
                                                 optarg);
                        break;
                case 'd':
                        if (cli_parse_seconds(optarg, &drain) < 0)
                                return cli_error(EXIT_USAGE,
                                                 "--drain-timeout: '%s' is not a "
                                                 "number of seconds",
                                                 optarg);
                        break;
                case 'p':
                        pretty = true;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_OK;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        int left = argc - optind;
        if (!socket_path)
                return cli_error(EXIT_USAGE, "qmp: --socket PATH is required (see 'qdm qmp "
                                             "--help')");
        if (left < 1 || left > 2)
                return cli_error(EXIT_USAGE, "qmp: expected COMMAND [ARGS_JSON] (see 'qdm qmp "
                                             "--help')");
        const char *command = argv[optind];
        const char *args = left == 2 ? argv[optind + 1] : NULL;

        _cleanup_(qdm_ctx_unrefp) qdm_ctx *ctx = NULL;
        int r = cli_ctx_new(g, &ctx);
        if (r < 0)
                return cli_error(EXIT_FAILED, "cannot create a context: %s", strerror(-r));
        _cleanup_(qdm_qmp_unrefp) qdm_qmp *qmp = NULL;
        r = qdm_qmp_new(ctx, &qmp);
        if (r < 0)
                return cli_error(EXIT_FAILED, "%s", strerror(-r));

        r = qdm_qmp_connect(qmp, socket_path);
        if (r == -EINVAL)
                return cli_error(EXIT_USAGE, "qmp: --socket: path too long: %s", socket_path);
        if (r < 0)
                return cli_error(EXIT_FAILED, "cannot connect to %s: %s", socket_path,
                                 strerror(-r));

        /* The timeout covers connecting, the greeting and negotiation as well. */
        reply res = {0};
        r = qdm_qmp_send(qmp, command, args, NULL, 0, timeout, reply_cb, &res, NULL);
        if (r == -EINVAL)
                return cli_error(EXIT_USAGE,
                                 args ? "qmp: invalid command name '%s' or ARGS_JSON is not a "
                                        "JSON object: %s"
                                      : "qmp: invalid command name '%s'%s",
                                 command, args ? args : "");
        if (r < 0)
                return cli_error(EXIT_FAILED, "cannot send %s: %s", command, strerror(-r));

        while (!res.done) {
                r = qdm_ctx_run(ctx, USEC_INFINITY);
                if (r < 0)
                        return cli_error(EXIT_FAILED, "event loop failed: %s", strerror(-r));
        }

        int ret = EXIT_FAILED;
        switch (res.error) {
        case 0:
                if (print_json(res.json, pretty) >= 0)
                        ret = EXIT_OK;
                break;
        case -EREMOTEIO:
                cli_error(EXIT_FAILED, "%s: %s", res.error_class, res.error_desc);
                break;
        case -ETIMEDOUT:
                cli_error(EXIT_FAILED, "%s: no reply within %.3g s%s", command,
                          (double)timeout / 1e6,
                          qdm_qmp_get_outstanding(qmp) > 0
                                  ? "; reading its late reply before hanging up"
                                  : "");
                break;
        default:
                cli_error(EXIT_FAILED, "%s: %s", socket_path, strerror(-res.error));
        }
        free(res.json);
        free(res.error_class);
        free(res.error_desc);

        /* R3: let go of the connection and wait for anything still outstanding. */
        qmp = qdm_qmp_unref(qmp);
        if (qdm_ctx_flush(ctx, drain) < 0)
                cli_error(EXIT_FAILED, "gave up waiting for the late reply after %.3g s",
                          (double)drain / 1e6);
        return ret;
}
