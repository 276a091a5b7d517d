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
 * Returns: 0, -ETIMEDOUT, or the negotiation error. */
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
qdm_config *qdm_config_free(qdm_config *config);
const char *qdm_config_get_name(const qdm_config *config);

#ifdef __cplusplus
}
#endif

#endif
