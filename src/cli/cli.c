/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What every subcommand shares: error printing with the exit code, durations on the command
 * line, and the one place library diagnostics are printed.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cli_error(int code, const char *fmt, ...)
{
        va_list ap;
        fputs("qdm: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

int cli_parse_seconds(const char *s, uint64_t *ret_usec)
{
        if (!s || !*s)
                return -EINVAL;
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno != 0 || !end || *end != '\0' || !isfinite(v) || v < 0 || v > 86400)
                return -EINVAL;
        *ret_usec = (uint64_t)(v * 1e6);
        return 0;
}

static void log_to_stderr(int level, const char *message, void *userdata)
{
        static const char *const names[] = {"emerg",   "alert",  "crit", "error",
                                            "warning", "notice", "info", "debug"};
        fprintf(stderr, "qdm: %s: %s\n", names[level & 7], message);
}

int cli_ctx_new(const cli_globals *g, qdm_ctx **ret)
{
        int r = qdm_ctx_new(ret);
        if (r < 0)
                return r;
        qdm_ctx_set_log(*ret, g->verbose >= 2 ? 7 : g->verbose == 1 ? 6 : 4, log_to_stderr, NULL);
        return 0;
}
