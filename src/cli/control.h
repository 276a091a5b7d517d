/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A CLI command's session with one device model's control monitor: the per-device-model
 * lock first (R7: callers queue on it, never on QEMU's backlog), then a QMP connection. Closing
 * drains outstanding replies before hanging up (R3), then releases the lock.
 */
#pragma once

#include "cli.h"
#include "rundir.h"

typedef struct control {
        char *run_dir;
        const char *name;
        dm_state record;
        int lock_fd;
        qdm_ctx *ctx;
        qdm_qmp *qmp;
} control;

#define LOCK_TIMEOUT_USEC (120 * USEC_PER_SEC)

/* Look the device model up (exit 1 "no such device model" / 2 bad name), without connecting.
 * Returns 0 or the exit code to return (the message is printed). */
int control_lookup(const cli_globals *g, const char *name, control *ret);
/* Lock and connect: wait at most lock_usec for the lock, then at most ready_usec for QEMU's
 * greeting and negotiation (0: do not wait; commands sent meanwhile are queued until then and
 * their own timeouts cover it). Returns 0 or an exit code (printed). */
int control_connect(control *c, uint64_t lock_usec, uint64_t ready_usec);
/* Drain (up to drain_usec), disconnect, unlock, free. */
void control_close(control *c, uint64_t drain_usec);

/* Run one command; on failure prints "qdm: CONTEXT: ..." and returns EXIT_FAILED. On success
 * *ret_json (may be NULL) is the return value. */
int control_execute(control *c, const char *command, const char *args, uint64_t timeout_usec,
                    char **ret_json);
