/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The run directory as the CLI sees it: RUN_DIR/NAME per device model, holding the control
 * socket and chroot (libqdm's), and the CLI's own files: state.json (the supervisor's record,
 * written by rename), stderr.log, events.log, and the lock that serializes monitor users (R7).
 *
 * Everything read back from here is treated as untrusted: a state file must be owned by us
 * and not writable by others, and every pid in it is checked against its start time before
 * anything is signalled.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"
#include "config.h"

#define STATE_FILE  "state.json"
#define STDERR_LOG  "stderr.log"
#define EVENTS_LOG  "events.log"
#define LOCK_FILE   "lock"
#define SOCKET_FILE "qmp.sock"

#define STATE_MAX_BYTES (64 * 1024)

/* The run directory to use: --run-dir, $QDM_RUN_DIR, /run/qdm (root) or
 * $XDG_RUNTIME_DIR/qdm. Created 0700 if missing; refused unless owned by us and closed to
 * others. Returns 0 with a malloc'd absolute path, or exit-code-style errors printed. */
int rundir_resolve(const cli_globals *g, bool create, char **ret_path);

/* Remove RUN_DIR/NAME and what qdm keeps in it (libqdm's socket and empty root, the CLI's
 * files), by name only: anything else in it is left, and so is the directory. Tries everything
 * and returns the first error (ENOENT is not one). */
int rundir_remove(const char *run_dir, const char *name);

/* RUN_DIR/NAME/FILE (FILE may be NULL for the directory). Caller frees. */
char *rundir_path(const char *run_dir, const char *name, const char *file);

/* A process identity that survives pid reuse: pid plus its start time (clock ticks since
 * boot, field 22 of /proc/PID/stat). */
typedef struct proc_ident {
        pid_t pid;
        uint64_t start_time;
} proc_ident;

/* Read the start time of pid; -ESRCH if it does not exist. */
int proc_ident_get(pid_t pid, proc_ident *ret);
/* A pidfd for ident if that very process is still alive (zombies count as dead), else -ESRCH.
 * The pidfd is opened first and the start time checked after, so the check cannot race. */
int proc_ident_open(const proc_ident *ident);

/* The rlimits a restricted device model sets, in the order of rundir_rlimits[]. */
#define RUNDIR_N_RLIMITS 6
extern const struct rundir_rlimit {
        const char *name; /* as in the configuration: "fsize", "core", ... */
        int resource;     /* RLIMIT_* */
} rundir_rlimits[RUNDIR_N_RLIMITS];

typedef struct dm_state {
        char *name;
        char *state;     /* "starting", "ready", "running", "paused", "stopping", "exited", ... */
        char *restrict_; /* "none", "qemu", "jail" */
        proc_ident qemu;
        proc_ident supervisor;
        uid_t uid;
        gid_t gid;
        bool own_uid;     /* the uid was allocated for this device model alone */
        uint64_t created; /* wall clock, seconds */
        uint64_t ready_usec;
        char *machine;
        char *accel;
        /* The configured rlimits, for `qdm audit`: RLIMIT_* value, or -1 when inherited. */
        int64_t rlimits[RUNDIR_N_RLIMITS];
        /* Also for `qdm audit`: the namespaces asked for beyond the mode's own (jail), and the
         * disks (QEMU holds them open: in jail mode qdm passed them as fds). */
        bool ns_net, ns_pid;
        char **disks; /* NULL-terminated, may be NULL */
        /* How it ended, when state is "exited" or "failed". */
        bool ended;
        uint64_t ended_at; /* wall clock, seconds; 0 if not recorded */
        int exit_code;     /* >= 0 */
        int exit_signal;
        char *end_reason;
} dm_state;

void dm_state_done(dm_state *s);
/* Read RUN_DIR/NAME/state.json: -ENOENT (no such device model), -EPERM (tampered: not ours or
 * writable by others), -EBADMSG (malformed), 0. */
int dm_state_read(const char *run_dir, const char *name, dm_state *ret);
/* The same from a buffer (no trust checks on where it came from). */
int dm_state_parse(const char *buf, size_t len, const char *name, dm_state *ret);
/* The record as JSON (what state.json holds); NULL on allocation failure. */
struct json_object *dm_state_to_json(const dm_state *s);
/* Write it by rename (state.json.tmp -> state.json), mode 0600. */
int dm_state_write(const char *run_dir, const dm_state *s);

/* The processes holding RUN_DIR/NAME/qmp.sock (its inode from /proc/net/unix, its holders
 * from /proc/PID/fd): the device model's QEMU, since qdm hands the listening socket to QEMU
 * and keeps no copy (R5). Finds QEMU even when no record names it. Returns how many were put
 * in ret (at most max). */
int rundir_socket_holders(const char *run_dir, const char *name, pid_t *ret, size_t max);

/* Take the device model's monitor lock (R7), waiting up to timeout. Returns the lock fd
 * (close it to release), -ETIMEDOUT, or -ENOENT when the device model does not exist. */
int rundir_lock(const char *run_dir, const char *name, uint64_t timeout_usec);
