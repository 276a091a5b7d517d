/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared pieces of the qdm command-line tool: exit codes, option parsing helpers and the
 * one place that prints library diagnostics. Only the CLI prints; libqdm never does.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "qdm.h"

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1, /* the operation failed */
        EXIT_USAGE = 2,  /* bad usage or bad configuration */
};

typedef struct cli_globals {
        const char *run_dir; /* --run-dir, $QDM_RUN_DIR, or the default */
        int verbose;         /* -v: library log messages to stderr */
} cli_globals;

typedef int (*cli_command_fn)(const cli_globals *g, int argc, char **argv);

static inline void qdm_ctx_unrefp(qdm_ctx **p)
{
        qdm_ctx_unref(*p);
}

static inline void qdm_qmp_unrefp(qdm_qmp **p)
{
        qdm_qmp_unref(*p);
}

/* Subcommands, one file each. */
int cmd_create(const cli_globals *g, int argc, char **argv);
int cmd_status(const cli_globals *g, int argc, char **argv);
int cmd_list(const cli_globals *g, int argc, char **argv);
int cmd_resume(const cli_globals *g, int argc, char **argv);
int cmd_pause(const cli_globals *g, int argc, char **argv);
int cmd_shutdown(const cli_globals *g, int argc, char **argv);
int cmd_audit(const cli_globals *g, int argc, char **argv);
int cmd_destroy(const cli_globals *g, int argc, char **argv);
int cmd_qmp(const cli_globals *g, int argc, char **argv);
int cmd_events(const cli_globals *g, int argc, char **argv);
int cmd_logs(const cli_globals *g, int argc, char **argv);
int cmd_supervise(const cli_globals *g, int argc, char **argv);

/* Print "qdm: <message>" to stderr and return code (for `return cli_error(...)`). */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "1.5" seconds -> microseconds; rejects negatives, garbage, and more than a day. */
int cli_parse_seconds(const char *s, uint64_t *ret_usec);

/* A context whose log goes to stderr according to -v. */
int cli_ctx_new(const cli_globals *g, qdm_ctx **ret);
