/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libqdm: start and run QEMU device models restricted, paused, and known ready.
 *
 * This header is the contract. Conventions that hold for every function below:
 *  - Errors are negative errno values; 0 (or a documented positive value) is success.
 *  - Human detail (QEMU's error class/description, the tail of QEMU's stderr) is read from the
 *    object that failed, never from global errno.
 *  - Out-parameters are named ret_*, come last, and are left untouched on failure.
 *  - Objects are created with *_new() and released with *_unref(); unref of NULL is a no-op
 *    and returns NULL.
 *  - Times are uint64_t microseconds; absolute times are CLOCK_MONOTONIC. QDM_USEC_INFINITY
 *    means "no deadline".
 *  - Callbacks are called exactly once (unless documented otherwise) and never from inside the
 *    call that registered them: only from qdm_ctx_process()/qdm_ctx_run().
 *  - The library never prints, never exits, never installs signal handlers, starts no threads.
 *  - Every fd the library creates is O_CLOEXEC.
 */
#ifndef QDM_H
#define QDM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QDM_USEC_INFINITY UINT64_MAX

/* ------------------------------------------------------------------------------------------
 * The context: one epoll fd holding every socket, timer (timerfd) and child (pidfd) of the
 * objects created on it. Embed it in any event loop by polling qdm_ctx_get_fd() for POLLIN and
 * calling qdm_ctx_process() when it is readable. Timers are timerfds inside that fd, so polling
 * the fd alone is enough; qdm_ctx_get_timeout() is there for loops that want the deadline.
 * A context and its objects are used from one thread at a time.
 * ------------------------------------------------------------------------------------------ */
typedef struct qdm_ctx qdm_ctx;

/* Log levels are syslog's (3 = error ... 7 = debug). */
typedef void (*qdm_log_fn)(int level, const char *message, void *userdata);

/* Name:    qdm_ctx_new
 * Desc:    Create a context.
 * Returns: 0, or -ENOMEM / -EMFILE (epoll/timerfd/eventfd creation failed). */
int qdm_ctx_new(qdm_ctx **ret_ctx);
qdm_ctx *qdm_ctx_ref(qdm_ctx *ctx);
/* Dropping the last reference closes every connection still draining (see qdm_qmp_unref) and
 * frees the context. Call qdm_ctx_flush() first to let drains finish. */
qdm_ctx *qdm_ctx_unref(qdm_ctx *ctx);

/* Install a log callback (NULL to silence). Messages at a level above max_level are not
 * formatted at all. Default: no logging. */
void qdm_ctx_set_log(qdm_ctx *ctx, int max_level, qdm_log_fn fn, void *userdata);

/* Name:    qdm_ctx_get_fd
 * Desc:    The one fd to poll for POLLIN. Owned by the context: do not close it.
 * Returns: the fd, or -EINVAL. */
int qdm_ctx_get_fd(qdm_ctx *ctx);

/* Name:    qdm_ctx_get_timeout
 * Desc:    The absolute CLOCK_MONOTONIC time (usec) of the earliest pending timer, or
 *          QDM_USEC_INFINITY when none is pending. Pending deferred callbacks make it 0.
 * Returns: 0, or -EINVAL. */
int qdm_ctx_get_timeout(qdm_ctx *ctx, uint64_t *ret_usec);

/* Name:    qdm_ctx_process
 * Desc:    Dispatch whatever is ready now, without blocking.
 * Returns: >0 if anything was dispatched, 0 if nothing was ready, <0 on error. */
int qdm_ctx_process(qdm_ctx *ctx);

/* Name:    qdm_ctx_run
 * Desc:    Wait up to timeout_usec (relative; QDM_USEC_INFINITY = forever) for something to be
 *          ready, then dispatch it. One iteration, like sd_event_run().
 * Returns: >0 dispatched, 0 timed out, <0 error (-EINTR is retried internally). */
int qdm_ctx_run(qdm_ctx *ctx, uint64_t timeout_usec);

/* Name:    qdm_ctx_flush
 * Desc:    Run until no connection is draining (R3) or the relative timeout passes.
 * Returns: 0 when nothing is left draining, -ETIMEDOUT otherwise. */
int qdm_ctx_flush(qdm_ctx *ctx, uint64_t timeout_usec);

/* ------------------------------------------------------------------------------------------
 * QMP messages handed to callbacks. Valid only during the callback; copy what you keep.
 * ------------------------------------------------------------------------------------------ */
typedef struct qdm_qmp_message qdm_qmp_message;

/* The "return" value of a reply, or the "data" of an event, as compact JSON text
 * ("{}" when an event has no data). NULL for an error reply. */
const char *qdm_qmp_message_get_json(const qdm_qmp_message *m);
/* For an error reply: QEMU's class and description ("" when QEMU sent none); else NULL. */
const char *qdm_qmp_message_get_error_class(const qdm_qmp_message *m);
const char *qdm_qmp_message_get_error_desc(const qdm_qmp_message *m);
/* For an event: its name, and QEMU's timestamp in wall-clock usec (0 when absent); else NULL/0. */
const char *qdm_qmp_message_get_event(const qdm_qmp_message *m);
uint64_t qdm_qmp_message_get_timestamp(const qdm_qmp_message *m);
/* For a "return" whose value is an object: the member `key` when it is a string, else NULL.
 * A convenience for the common case (e.g. query-status's "status"). */
const char *qdm_qmp_message_get_string(const qdm_qmp_message *m, const char *key);

/* ------------------------------------------------------------------------------------------
 * The asynchronous QMP client.
 *
 * A connection reads QEMU's greeting, records its version and capabilities, negotiates
 * qmp_capabilities, and then sends commands. Commands sent before negotiation completes are
 * queued and sent after it. Every command carries an id unique across connections and
 * processes; replies are matched by id only, never by position, and a reply whose id this
 * connection did not send is dropped and counted (R4).
 *
 * R3, never abandon a command: a connection is closed only once every command sent on it has
 * its reply (or QEMU hung up). A command that times out gets -ETIMEDOUT at its deadline, but
 * the connection stays open until the late reply arrives and is discarded. Unreferencing a
 * connection with commands outstanding hands it to the context, which drains it in the
 * background without calling any more of its callbacks.
 * ------------------------------------------------------------------------------------------ */
typedef struct qdm_qmp qdm_qmp;

/* Error values passed to callbacks:
 *   0             success
 *   -EREMOTEIO    QEMU answered with an error (class and desc in the message)
 *   -ETIMEDOUT    the command's own deadline passed (its late reply will be discarded)
 *   -ECONNRESET   QEMU hung up (EOF) before replying
 *   -EPROTO       QEMU broke the protocol (no valid greeting, failed negotiation)
 *   -ECANCELED    the connection was closed by the caller before the command was sent
 *   other         the socket error (e.g. -EPIPE, -ECONNREFUSED, -ENOENT) */

/* Called once per command. m is NULL unless error is 0 or -EREMOTEIO. The callback may send
 * more commands and may unref the connection. */
typedef void (*qdm_qmp_reply_fn)(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata);
/* Called once when negotiation has completed (error 0) or failed (error < 0). */
typedef void (*qdm_qmp_ready_fn)(qdm_qmp *qmp, int error, void *userdata);
/* Called for each event, in order, including events that arrive before negotiation completes.
 * May be called many times. */
typedef void (*qdm_qmp_event_fn)(qdm_qmp *qmp, const qdm_qmp_message *event, void *userdata);
/* Called once when the connection ends for any reason other than the caller's unref: error is
 * -ECONNRESET for EOF, or the socket/protocol error. Pending replies have been failed first. */
typedef void (*qdm_qmp_disconnect_fn)(qdm_qmp *qmp, int error, void *userdata);

int qdm_qmp_new(qdm_ctx *ctx, qdm_qmp **ret_qmp);
qdm_qmp *qdm_qmp_ref(qdm_qmp *qmp);
/* See R3 above: outstanding commands are drained in the background; no callback is called
 * after the last reference is gone. */
qdm_qmp *qdm_qmp_unref(qdm_qmp *qmp);

/* Name:    qdm_qmp_set_max_message
 * Desc:    Largest message accepted from QEMU, in bytes (default 16 MiB). Larger ones are
 *          dropped and counted; the stream goes on at the next line. Set before connecting.
 * Returns: 0, -EINVAL, -EBUSY (already connected). */
int qdm_qmp_set_max_message(qdm_qmp *qmp, size_t bytes);

void qdm_qmp_set_ready_callback(qdm_qmp *qmp, qdm_qmp_ready_fn fn, void *userdata);
void qdm_qmp_set_event_callback(qdm_qmp *qmp, qdm_qmp_event_fn fn, void *userdata);
void qdm_qmp_set_disconnect_callback(qdm_qmp *qmp, qdm_qmp_disconnect_fn fn, void *userdata);

/* Name:    qdm_qmp_connect
 * Desc:    Connect to a UNIX socket path, without blocking. Negotiation starts by itself and
 *          is reported through the ready callback (a refused or missing socket too).
 * Returns: 0, -EINVAL (path too long), -EBUSY (already connected), -ENOMEM. */
int qdm_qmp_connect(qdm_qmp *qmp, const char *path);

/* Name:    qdm_qmp_adopt_fd
 * Desc:    Use an already connected stream socket (e.g. one end of a socketpair QEMU was given).
 *          Ownership of fd passes to the connection in every case, success or failure.
 * Returns: 0, -EBADF, -EBUSY. */
int qdm_qmp_adopt_fd(qdm_qmp *qmp, int fd);

/* Name:    qdm_qmp_send
 * Desc:    Queue `command` with `args_json` (a JSON object text, or NULL for none), passing
 *          n_fds fds with SCM_RIGHTS on the first byte of this command (for getfd/add-fd; the
 *          fds are duplicated, the caller keeps its own). timeout_usec is relative to now
 *          (QDM_USEC_INFINITY = none). The reply goes to fn exactly once.
 * Returns: 0 and the command's serial number in *ret_serial (may be NULL);
 *          -EINVAL (bad command name or args not a JSON object), -ENOTCONN (never connected,
 *          or the connection has ended), -ENOMEM. On failure fn is never called. */
int qdm_qmp_send(qdm_qmp *qmp, const char *command, const char *args_json, const int *fds,
                 size_t n_fds, uint64_t timeout_usec, qdm_qmp_reply_fn fn, void *userdata,
                 uint64_t *ret_serial);

/* Name:    qdm_qmp_execute
 * Desc:    Blocking convenience: wait for negotiation if needed, send one command, and run the
 *          context until its reply. Other objects on the context are dispatched meanwhile.
 *          On success *ret_json is the "return" value as JSON text (caller frees). On a QMP
 *          error (-EREMOTEIO) *ret_error is "Class: description" (caller frees); may be NULL.
 * Returns: 0, or an error as for the reply callback. */
int qdm_qmp_execute(qdm_qmp *qmp, const char *command, const char *args_json, uint64_t timeout_usec,
                    char **ret_json, char **ret_error);

/* Name:    qdm_qmp_wait_ready
 * Desc:    Blocking: run the context until negotiation completes or the timeout passes.
 * Returns: 0, -ETIMEDOUT, or why the connection ended (-ENOENT, -ECONNREFUSED for a missing
 *          or refused socket, -ECONNRESET for EOF, -EPROTO for a failed negotiation). */
int qdm_qmp_wait_ready(qdm_qmp *qmp, uint64_t timeout_usec);

/* Greeting facts, valid once the ready callback reported success. */
int qdm_qmp_get_version(qdm_qmp *qmp, int *ret_major, int *ret_minor, int *ret_micro);
/* 1 if QEMU offered capability `name` (e.g. "oob"), 0 if not, <0 error. */
int qdm_qmp_has_capability(qdm_qmp *qmp, const char *name);

/* Counters for what was received and not delivered. */
typedef struct qdm_qmp_stats {
        uint64_t commands_sent;
        uint64_t replies_delivered;
        uint64_t replies_late;  /* replies to commands that had already timed out */
        uint64_t replies_stray; /* replies with an id (or no id) this connection never sent */
        uint64_t skipped_pre_greeting; /* lines before the greeting, stale replies included */
        uint64_t rejected;             /* oversized, too deep, invalid UTF-8 or malformed lines */
        uint64_t events;
} qdm_qmp_stats;
int qdm_qmp_get_stats(qdm_qmp *qmp, qdm_qmp_stats *ret_stats);

/* Number of commands sent or queued whose reply has not arrived (timed-out ones included). */
size_t qdm_qmp_get_outstanding(qdm_qmp *qmp);

/* ------------------------------------------------------------------------------------------
 * Configuration: a JSON document (see qdm.json(5)) validated into a device-model description.
 * Unknown keys, duplicate keys, wrong types, out-of-range numbers, trailing garbage, NUL bytes
 * and values that would smuggle QEMU options are errors naming the offending field.
 * ------------------------------------------------------------------------------------------ */
typedef struct qdm_config qdm_config;

/* Name:    qdm_config_new_from_json / qdm_config_new_from_file
 * Desc:    Parse and validate. On failure *ret_error (if non-NULL) receives a malloc'd message
 *          that starts with the field's JSON path, e.g. "restrict.uid_min: must be > 0".
 * Returns: 0; -EINVAL (invalid document); -ENOENT/-EACCES/... (file unreadable); -ENOMEM;
 *          -EFBIG (document larger than 1 MiB). */
int qdm_config_new_from_json(const char *text, size_t len, qdm_config **ret_config,
                             char **ret_error);
int qdm_config_new_from_file(const char *path, qdm_config **ret_config, char **ret_error);
/* A configuration is immutable once parsed; device models keep a reference of their own, so
 * the caller may free its copy at any time. Freeing drops one reference. */
qdm_config *qdm_config_ref(qdm_config *config);
qdm_config *qdm_config_free(qdm_config *config);
const char *qdm_config_get_name(const qdm_config *config);

/* ------------------------------------------------------------------------------------------
 * Device models: one QEMU, started restricted and paused (-S), known ready over QMP alone
 * (R1: greeting, qmp_capabilities, then query-status answers "prelaunch", or "paused" /
 * "inmigrate" for a restore), then resumed, paused, shut down or destroyed.
 *
 * Lifecycle (qdm_dm_get_state()):
 *
 *   NEW -> SPAWNING -> GREETING -> NEGOTIATING -> QUERYING -> READY (paused, never run)
 *   READY|PAUSED --resume--> RUNNING --pause--> PAUSED
 *   READY|RUNNING|PAUSED --shutdown--> STOPPING -> EXITED
 *   READY|RUNNING|PAUSED|STOPPING --QEMU exits / destroy--> EXITED
 *   SPAWNING..QUERYING --QEMU dies / deadline / destroy / error--> FAILED
 *
 * Everything a device model creates lives in RUN_DIR/NAME (mode 0700): the control socket
 * (qmp.sock), the empty chroot (root, mode 0000; in jail mode the mount point of the jail's
 * tmpfs root, which only QEMU's own mount namespace sees). A failed start, qdm_dm_destroy() and the
 * last unref of a live device model remove all of it and leave no process of its uid alive.
 * ------------------------------------------------------------------------------------------ */
typedef struct qdm_dm qdm_dm;

/* Restricted device models take their uid from a range; the locks that keep two live device
 * models off one uid are host-wide, whatever run directory each uses. */
#define QDM_DEFAULT_RUN_DIR "/run/qdm"
#define QDM_UID_LOCK_DIR    QDM_DEFAULT_RUN_DIR "/.uids"

typedef enum qdm_dm_state {
        QDM_DM_NEW,
        QDM_DM_SPAWNING,
        QDM_DM_GREETING,
        QDM_DM_NEGOTIATING,
        QDM_DM_QUERYING,
        QDM_DM_READY,
        QDM_DM_RUNNING,
        QDM_DM_PAUSED,
        QDM_DM_STOPPING,
        QDM_DM_EXITED,
        QDM_DM_FAILED,
} qdm_dm_state;

/* "new", "spawning", ..., "failed". */
const char *qdm_dm_state_to_string(qdm_dm_state state);

/* Completion of start/resume/pause/shutdown: called exactly once, error 0 or negative errno
 * (detail in qdm_dm_get_error()). The callback may call any qdm_dm function, unref included. */
typedef void (*qdm_dm_done_fn)(qdm_dm *dm, int error, void *userdata);
/* Every state change, including QEMU exiting on its own. May be called many times. */
typedef void (*qdm_dm_state_fn)(qdm_dm *dm, qdm_dm_state old_state, qdm_dm_state new_state,
                                void *userdata);
/* Events from QEMU's event-only monitor (a second monitor on a socketpair). */
typedef void (*qdm_dm_event_fn)(qdm_dm *dm, const qdm_qmp_message *event, void *userdata);

/* Name:    qdm_dm_new
 * Desc:    A device model for `config` (referenced: the caller may free its own) whose
 *          runtime state goes under run_dir (created 0700 if missing; it must be owned by this
 *          user and not writable by others).
 * Returns: 0, -EINVAL (run_dir not absolute), -ENAMETOOLONG (its control socket path would
 *          not fit a UNIX socket address), -ENOMEM. The run directory itself is created and
 *          checked by qdm_dm_start(). */
int qdm_dm_new(qdm_ctx *ctx, qdm_config *config, const char *run_dir, qdm_dm **ret_dm);
qdm_dm *qdm_dm_ref(qdm_dm *dm);
/* The last unref of a device model whose QEMU is alive destroys it (see qdm_dm_destroy()).
 * No callback is called after it. */
qdm_dm *qdm_dm_unref(qdm_dm *dm);

void qdm_dm_set_state_callback(qdm_dm *dm, qdm_dm_state_fn fn, void *userdata);
void qdm_dm_set_event_callback(qdm_dm *dm, qdm_dm_event_fn fn, void *userdata);

/* Name:    qdm_dm_set_start_timeout
 * Desc:    Override the configuration's start_timeout_ms. Before qdm_dm_start().
 * Returns: 0, -EINVAL, -EBUSY. */
int qdm_dm_set_start_timeout(qdm_dm *dm, uint64_t usec);

/* Name:    qdm_dm_set_stderr_log
 * Desc:    Also append QEMU's stderr to `path` (created 0600), stopping at max_bytes with a
 *          final "[qdm: log truncated]" line. Before qdm_dm_start().
 * Returns: 0, -EINVAL, -EBUSY, -ENOMEM. */
int qdm_dm_set_stderr_log(qdm_dm *dm, const char *path, uint64_t max_bytes);

/* Name:    qdm_dm_start
 * Desc:    Check privileges, allocate a uid (restricted modes), probe the QEMU binary (cached),
 *          create the runtime directory, bind the control socket and hand QEMU the listening
 *          fd (R5), spawn QEMU with -S, and wait over QMP for R1 readiness (and for the
 *          event-only monitor's negotiation, so that no event after READY is lost). fn gets 0
 *          at READY.
 *          On failure fn gets the error and everything created is gone: -EEXIST (name in use
 *          in run_dir), -EPERM (restriction needs root), -ENOENT (binary), -ESRCH (QEMU died:
 *          the detail has how, and the tail of its stderr), -ETIMEDOUT (deadline: QEMU was
 *          killed), -EPROTO (QEMU answered something other than a paused state), -ECANCELED
 *          (destroyed meanwhile), -EUSERS (no free uid in the range). restrict.mode "jail"
 *          also: the disks are opened here, by the caller's process (errors name the disk),
 *          and -EACCES when accel "kvm" was asked for but /dev/kvm is not usable by the
 *          device model's uid (the detail says how to make it so; accel "auto" then uses TCG).
 * Returns: 0 if started (fn will be called), or -EINVAL/-EBUSY (not NEW) without calling fn. */
int qdm_dm_start(qdm_dm *dm, qdm_dm_done_fn fn, void *userdata);

/* Name:    qdm_dm_resume / qdm_dm_pause
 * Desc:    "cont" (READY or PAUSED -> RUNNING) / "stop" (RUNNING -> PAUSED) on the control
 *          connection. fn gets 0, -EREMOTEIO (QEMU refused; detail has its words), -ESRCH.
 * Returns: 0, -EBUSY (another operation is in progress or the state does not allow it),
 *          -ENOTCONN (the control connection was released). */
int qdm_dm_resume(qdm_dm *dm, qdm_dm_done_fn fn, void *userdata);
int qdm_dm_pause(qdm_dm *dm, qdm_dm_done_fn fn, void *userdata);

/* Name:    qdm_dm_shutdown
 * Desc:    Ask the guest to power off (system_powerdown); once QEMU reports SHUTDOWN, quit it.
 *          If QEMU has not exited after grace_usec it is killed. fn gets 0 for a clean
 *          shutdown, -ETIMEDOUT when it had to be killed. The state ends at EXITED.
 * Returns: 0, -EBUSY, -ENOTCONN. */
int qdm_dm_shutdown(qdm_dm *dm, uint64_t grace_usec, qdm_dm_done_fn fn, void *userdata);

/* Name:    qdm_dm_destroy
 * Desc:    Now: kill QEMU (SIGKILL), reap it, kill every process left with its uid, close every
 *          connection, and remove the runtime directory. A pending start or operation gets
 *          -ECANCELED (from the loop, not from this call).
 * Returns: 0 (also when nothing was running). */
int qdm_dm_destroy(qdm_dm *dm);

/* Name:    qdm_dm_release_control
 * Desc:    Close the control connection (drained, R3) so that other clients can use the
 *          control socket; resume/pause/shutdown then return -ENOTCONN. For supervisors that
 *          hand the monitor to other processes.
 * Returns: 0, -EBUSY (an operation is in progress). */
int qdm_dm_release_control(qdm_dm *dm);

qdm_dm_state qdm_dm_get_state(qdm_dm *dm);
const char *qdm_dm_get_name(qdm_dm *dm);
/* Human detail of the last failure (QEMU's words included), or NULL. */
const char *qdm_dm_get_error(qdm_dm *dm);
/* QEMU's pid (0 before spawning), its pidfd (-1; owned by the device model). */
pid_t qdm_dm_get_pid(qdm_dm *dm);
int qdm_dm_get_pidfd(qdm_dm *dm);
/* The uid/gid QEMU runs as (its own in restricted modes; the caller's otherwise). */
uid_t qdm_dm_get_uid(qdm_dm *dm);
gid_t qdm_dm_get_gid(qdm_dm *dm);
/* RUN_DIR/NAME, and the control socket inside it. */
const char *qdm_dm_get_dir(qdm_dm *dm);
const char *qdm_dm_get_socket_path(qdm_dm *dm);
/* The control connection for the caller's own commands (borrowed; NULL once released). */
qdm_qmp *qdm_dm_get_qmp(qdm_dm *dm);
/* How QEMU ended, once EXITED/FAILED after it ran: exit code (>= 0) or -signal. */
int qdm_dm_get_exit(qdm_dm *dm, int *ret_status);
/* The uid lock fd of a restricted device model, or -1 (supervisors keep it across exec). */
int qdm_dm_get_uid_lock_fd(qdm_dm *dm);
/* How long the start took, from qdm_dm_start() to READY, in microseconds. */
uint64_t qdm_dm_get_start_usec(qdm_dm *dm);

#ifdef __cplusplus
}
#endif

#endif
