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
#include "qmp-wire.h"
#include "control.h"
#include "util.h"

#define DEFAULT_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define DEFAULT_DRAIN_USEC   (30 * USEC_PER_SEC)

static void usage(FILE *f)
{
        fprintf(f, "Usage: qdm qmp [OPTIONS] NAME COMMAND [ARGS_JSON]\n"
                   "       qdm qmp --socket PATH [OPTIONS] COMMAND [ARGS_JSON]\n"
                   "\n"
                   "Run one QMP command and print its \"return\" value as JSON. With NAME, on\n"
                   "that device model's control monitor, after taking its lock: concurrent\n"
                   "callers are served one after another, never refused.\n"
                   "\n"
                   "  --socket PATH          any QMP UNIX socket instead of a device model\n"
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

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
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
        int want = socket_path ? 1 : 2;
        if (left < want || left > want + 1)
                return cli_error(EXIT_USAGE,
                                 "qmp: expected %sCOMMAND [ARGS_JSON] (see 'qdm qmp "
                                 "--help')",
                                 socket_path ? "" : "NAME ");
        const char *command = argv[optind + want - 1];
        const char *args = left == want + 1 ? argv[optind + want] : NULL;

        /* Check what we can before anything reaches QEMU. */
        if (args) {
                /* The library's strict parser: trailing data, bad UTF-8 and the like too. */
                json_object *o = NULL;
                bool ok = qmp_json_parse(args, strlen(args), QMP_WIRE_DEFAULT_MAX_DEPTH, &o) >= 0 &&
                          json_object_is_type(o, json_type_object);
                json_object_put(o);
                if (!ok)
                        return cli_error(EXIT_USAGE, "qmp: ARGS_JSON is not a JSON object: %s",
                                         args);
        }

        control ctl = {.lock_fd = -1};
        const char *label = socket_path;
        ctl.name = socket_path;
        int r;
        if (socket_path) {
                r = cli_ctx_new(g, &ctl.ctx);
                if (r >= 0)
                        r = qdm_qmp_new(ctl.ctx, &ctl.qmp);
                if (r < 0)
                        return cli_error(EXIT_FAILED, "%s", strerror(-r));
                r = qdm_qmp_connect(ctl.qmp, socket_path);
                if (r == -EINVAL) {
                        control_close(&ctl, 0);
                        return cli_error(EXIT_USAGE, "qmp: --socket: path too long: %s",
                                         socket_path);
                }
        } else {
                label = argv[optind];
                r = control_lookup(g, label, &ctl);
                if (r == 0)
                        r = control_connect(&ctl, LOCK_TIMEOUT_USEC, 0);
                if (r != 0) {
                        control_close(&ctl, drain);
                        return r;
                }
        }

        /* The timeout covers connecting, the greeting and negotiation as well. */
        reply res = {0};
        r = qdm_qmp_send(ctl.qmp, command, args, NULL, 0, timeout, reply_cb, &res, NULL);
        if (r == -EINVAL) {
                control_close(&ctl, drain);
                return cli_error(EXIT_USAGE, "qmp: invalid command name '%s'", command);
        }
        while (r >= 0 && !res.done)
                r = qdm_ctx_run(ctl.ctx, USEC_INFINITY);

        int ret = EXIT_FAILED;
        if (r < 0)
                cli_error(EXIT_FAILED, "%s: %s", label, strerror(-r));
        else
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
                                  qdm_qmp_get_outstanding(ctl.qmp) > 0
                                          ? "; reading its late reply before hanging up"
                                          : "");
                        break;
                default:
                        cli_error(EXIT_FAILED, "%s: %s", label, strerror(-res.error));
                }
        free(res.json);
        free(res.error_class);
        free(res.error_desc);

        /* R3: let go of the connection only once nothing is outstanding. */
        control_close(&ctl, drain);
        return ret;
}
