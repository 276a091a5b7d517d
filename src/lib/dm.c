/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm: the device-model lifecycle. One QEMU, started paused (-S) and restricted, known ready
 * only when query-status answers a paused state over QMP (R1, R2), watched through its pidfd
 * at every stage (R6), and torn down completely.
 *
 * This file owns the state machine (one set_state(), table above it), the runtime directory,
 * the uid lock, QEMU's stderr, and the two monitors: the control connection (commands) and the
 * event-only monitor on a socketpair. It knows nothing of the CLI or of JSON configuration.
 */
#include <assert.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "argv.h"
#include "config.h"
#include "jail.h"
#include "loop.h"
#include "probe.h"
#include "qmp-client.h"
#include "restrict.h"
#include "spawn.h"

#define STDERR_TAIL         4096
#define DESTROY_REAP_USEC   (10 * USEC_PER_SEC)
#define QUERY_TIMEOUT_USEC  (30 * USEC_PER_SEC)
#define OP_TIMEOUT_USEC     (30 * USEC_PER_SEC)
#define CONTROL_SOCKET_NAME "qmp.sock"
#define CHROOT_NAME         "root"
#define KVM_DEVICE          "/dev/kvm"
#define JAIL_HOSTNAME       "qdm"
#define FIRST_DISK_FD       5 /* after stdio and the two monitors */
#define DEFAULT_LOG_MAX     (1024 * 1024)

typedef enum dm_op {
        OP_NONE,
        OP_START,
        OP_RESUME,
        OP_PAUSE,
        OP_SHUTDOWN,
} dm_op;

struct qdm_dm {
        unsigned n_ref;
        qdm_ctx *ctx;
        qdm_config *config; /* our reference; immutable */
        const qdm_model *model;
        qdm_dm_state state;

        char *run_dir, *dir, *socket_path, *chroot_dir, *uid_dir, *cache_dir;
        bool dir_created;
        int listen_fd;
        int uid_lock_fd;
        uid_t uid;
        gid_t gid;
        bool own_uid; /* uid allocated for this device model: kill all of it on destroy */

        pid_t pid;
        int pidfd;
        loop_source *pid_source;
        int exit_status; /* >= 0 exit code, < 0 -signal; valid when exited */
        bool reaped;

        int stderr_fd;
        loop_source *stderr_source;
        char stderr_tail[STDERR_TAIL];
        size_t stderr_len; /* bytes in stderr_tail (a sliding window of the end) */
        char *log_path;
        int log_fd;
        uint64_t log_max, log_written;

        qdm_qmp *control;
        qdm_qmp *events;
        /* Readiness needs both: query-status answered on the control monitor, and the event
         * monitor negotiated (QEMU drops events for a monitor still negotiating, so a RESUME
         * right after READY could otherwise be lost to the event log). */
        bool status_ok, events_ready;

        uint64_t start_timeout;
        uint64_t start_begin, start_took;
        loop_source *deadline; /* start deadline, then the shutdown grace timer */

        dm_op op;
        qdm_dm_done_fn op_fn;
        void *op_userdata;
        int op_result; /* delivered from op_defer */
        loop_source *op_defer;
        bool shutdown_forced;

        qdm_dm_state_fn state_fn;
        void *state_userdata;
        qdm_dm_event_fn event_fn;
        void *event_userdata;

        char *error;
};

static const char *const state_names[] = {
        [QDM_DM_NEW] = "new",           [QDM_DM_SPAWNING] = "spawning",
        [QDM_DM_GREETING] = "greeting", [QDM_DM_NEGOTIATING] = "negotiating",
        [QDM_DM_QUERYING] = "querying", [QDM_DM_READY] = "ready",
        [QDM_DM_RUNNING] = "running",   [QDM_DM_PAUSED] = "paused",
        [QDM_DM_STOPPING] = "stopping", [QDM_DM_EXITED] = "exited",
        [QDM_DM_FAILED] = "failed",
};

QDM_EXPORT const char *qdm_dm_state_to_string(qdm_dm_state state)
{
        return (unsigned)state < ELEMENTSOF(state_names) ? state_names[state] : NULL;
}

/*
 * The state table. A row lists the states reachable from its state.
 *
 *   NEW          SPAWNING FAILED
 *   SPAWNING     GREETING FAILED
 *   GREETING     NEGOTIATING FAILED
 *   NEGOTIATING  QUERYING FAILED
 *   QUERYING     READY FAILED
 *   READY        RUNNING PAUSED STOPPING EXITED
 *   RUNNING      PAUSED STOPPING EXITED
 *   PAUSED       RUNNING STOPPING EXITED
 *   STOPPING     EXITED
 *   EXITED, FAILED: final
 */
static bool transition_allowed(qdm_dm_state from, qdm_dm_state to)
{
        switch (from) {
        case QDM_DM_NEW:
                return to == QDM_DM_SPAWNING || to == QDM_DM_FAILED;
        case QDM_DM_SPAWNING:
        case QDM_DM_GREETING:
        case QDM_DM_NEGOTIATING:
        case QDM_DM_QUERYING:
                return to == from + 1 || to == QDM_DM_FAILED;
        case QDM_DM_READY:
        case QDM_DM_RUNNING:
        case QDM_DM_PAUSED:
                return to == QDM_DM_RUNNING || to == QDM_DM_PAUSED || to == QDM_DM_STOPPING ||
                       to == QDM_DM_EXITED;
        case QDM_DM_STOPPING:
                return to == QDM_DM_EXITED;
        case QDM_DM_EXITED:
        case QDM_DM_FAILED:
                return false;
        }
        return false;
}

static void set_state(qdm_dm *dm, qdm_dm_state to)
{
        qdm_dm_state from = dm->state;
        if (from == to)
                return;
        assert(transition_allowed(from, to));
        dm->state = to;
        ctx_log(dm->ctx, LOG_DEBUG_LEVEL, "dm %s: %s -> %s", dm->model->name, state_names[from],
                state_names[to]);
        if (dm->state_fn)
                dm->state_fn(dm, from, to, dm->state_userdata);
}

static bool state_is_starting(qdm_dm_state s)
{
        return s >= QDM_DM_SPAWNING && s <= QDM_DM_QUERYING;
}

static bool state_is_live(qdm_dm_state s)
{
        return s >= QDM_DM_SPAWNING && s <= QDM_DM_STOPPING;
}

_printf_(2, 3) static void set_error(qdm_dm *dm, const char *fmt, ...)
{
        va_list ap;
        char *msg = NULL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        free(dm->error);
        dm->error = msg;
        if (msg)
                ctx_log(dm->ctx, LOG_INFO_LEVEL, "dm %s: %s", dm->model->name, msg);
}

/* ---- operations: at most one at a time, completed from the loop ------------------------- */

static void op_defer_cb(loop_source *s, void *userdata)
{
        qdm_dm *dm = userdata;
        qdm_dm_done_fn fn = dm->op_fn;
        void *ud = dm->op_userdata;
        int r = dm->op_result;
        dm->op = OP_NONE;
        dm->op_fn = NULL;
        if (fn) {
                qdm_dm_ref(dm);
                fn(dm, r, ud);
                qdm_dm_unref(dm);
        }
}

/* Complete the current operation. Always through a deferred call, so that an operation that
 * fails inside the public call that started it still reports from the loop. */
static void op_complete(qdm_dm *dm, int error)
{
        if (dm->op == OP_NONE)
                return;
        dm->op_result = error;
        if (dm->op_defer)
                loop_defer_arm(dm->op_defer);
        else if (loop_add_defer(dm->ctx, op_defer_cb, dm, &dm->op_defer) < 0)
                op_defer_cb(NULL, dm); /* out of memory: better now than never */
}

static int op_begin(qdm_dm *dm, dm_op op, qdm_dm_done_fn fn, void *userdata)
{
        if (dm->op != OP_NONE)
                return -EBUSY;
        dm->op = op;
        dm->op_fn = fn;
        dm->op_userdata = userdata;
        return 0;
}

/* ---- teardown ---------------------------------------------------------------------------- */

static void stderr_drain(qdm_dm *dm);

/* Kill QEMU (if alive) and reap it. Bounded: a SIGKILLed process exits promptly unless stuck
 * in the kernel, and then we give up waiting rather than hang the caller. */
static void kill_and_reap(qdm_dm *dm)
{
        if (dm->pidfd < 0 || dm->reaped)
                return;
        (void)syscall(SYS_pidfd_send_signal, dm->pidfd, SIGKILL, NULL, 0);
        struct pollfd pfd = {.fd = dm->pidfd, .events = POLLIN};
        int r;
        do
                r = poll(&pfd, 1, (int)(DESTROY_REAP_USEC / USEC_PER_MSEC));
        while (r < 0 && errno == EINTR);
        if (r == 0) {
                ctx_log(dm->ctx, LOG_ERR_LEVEL, "dm %s: QEMU pid %d did not die", dm->model->name,
                        (int)dm->pid);
                return;
        }
        siginfo_t si = {0};
        if (waitid(P_PIDFD, (id_t)dm->pidfd, &si, WEXITED) == 0)
                dm->exit_status = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
        dm->reaped = true; /* or not ours to reap (ECHILD): either way it is gone */
}

static int rm_runtime_dir(qdm_dm *dm)
{
        if (!dm->dir_created)
                return 0;
        if (dm->socket_path)
                (void)unlink(dm->socket_path);
        if (dm->chroot_dir)
                (void)rmdir(dm->chroot_dir);
        int r = rmdir(dm->dir) < 0 && errno != ENOENT ? negative_errno() : 0;
        if (r < 0)
                ctx_log(dm->ctx, LOG_WARNING_LEVEL, "dm %s: cannot remove %s: %s", dm->model->name,
                        dm->dir, strerror(-r));
        dm->dir_created = false;
        return r;
}

/* Release every resource of a live or half-started device model. QEMU is killed first, so
 * closing its monitors then cannot abandon a command of a live QEMU (R3). */
static void teardown(qdm_dm *dm)
{
        kill_and_reap(dm);
        stderr_drain(dm);
        if (dm->own_uid && dm->uid != 0) {
                int r = uid_kill_all(dm->uid);
                if (r < 0)
                        ctx_log(dm->ctx, LOG_ERR_LEVEL,
                                "dm %s: cannot kill processes of uid %u: %s", dm->model->name,
                                (unsigned)dm->uid, strerror(-r));
                else
                        (void)uid_mark_clean(dm->uid_lock_fd); /* spares the next one a scan */
        }
        dm->control = qdm_qmp_unref(dm->control);
        dm->events = qdm_qmp_unref(dm->events);
        dm->deadline = loop_source_free(dm->deadline);
        dm->pid_source = loop_source_free(dm->pid_source);
        dm->stderr_source = loop_source_free(dm->stderr_source);
        dm->stderr_fd = safe_close(dm->stderr_fd);
        dm->pidfd = safe_close(dm->pidfd);
        dm->listen_fd = safe_close(dm->listen_fd);
        dm->log_fd = safe_close(dm->log_fd);
        rm_runtime_dir(dm);
        dm->uid_lock_fd = safe_close(dm->uid_lock_fd);
        dm->own_uid = false;
}

/* A start failed: clean up everything, report. The detail is already in dm->error. */
static void start_failed(qdm_dm *dm, int error)
{
        teardown(dm);
        set_state(dm, QDM_DM_FAILED);
        op_complete(dm, error);
}

/* QEMU ended while live (not during a start). */
/* The connection failed because QEMU went away (EOF, or a write to its dead socket): how it
 * ended is the pidfd's to report, with its exit status and stderr (R6), not the socket's. */
static bool peer_gone(int error)
{
        return error == -ECONNRESET || error == -EPIPE;
}

static void exited(qdm_dm *dm)
{
        teardown(dm);
        set_state(dm, QDM_DM_EXITED);
        /* A shutdown succeeded only if QEMU ended by itself, cleanly: killed from outside or
         * crashed meanwhile is an error, and killed by us after the grace period a timeout. */
        if (dm->op != OP_SHUTDOWN)
                op_complete(dm, -ESRCH);
        else if (dm->shutdown_forced)
                op_complete(dm, -ETIMEDOUT);
        else
                op_complete(dm, dm->exit_status == 0 ? 0 : -ESRCH);
}

/* ---- QEMU's stderr ------------------------------------------------------------------------ */

static void log_append(qdm_dm *dm, const char *buf, size_t n)
{
        if (dm->log_fd < 0)
                return;
        if (dm->log_written + n > dm->log_max) {
                static const char note[] = "\n[qdm: log truncated]\n";
                size_t room = dm->log_max > dm->log_written ? dm->log_max - dm->log_written : 0;
                if (room > 0)
                        (void)!write(dm->log_fd, buf, room);
                (void)!write(dm->log_fd, note, sizeof(note) - 1);
                dm->log_fd = safe_close(dm->log_fd);
                return;
        }
        if (write(dm->log_fd, buf, n) == (ssize_t)n)
                dm->log_written += n;
}

static void tail_append(qdm_dm *dm, const char *buf, size_t n)
{
        if (n >= STDERR_TAIL) {
                memcpy(dm->stderr_tail, buf + n - STDERR_TAIL, STDERR_TAIL);
                dm->stderr_len = STDERR_TAIL;
                return;
        }
        if (dm->stderr_len + n > STDERR_TAIL) {
                size_t drop = dm->stderr_len + n - STDERR_TAIL;
                memmove(dm->stderr_tail, dm->stderr_tail + drop, dm->stderr_len - drop);
                dm->stderr_len -= drop;
        }
        memcpy(dm->stderr_tail + dm->stderr_len, buf, n);
        dm->stderr_len += n;
}

/* Read what QEMU has written: 1 if there may be more, 0 when the pipe is empty for now,
 * -EPIPE at EOF. */
static int stderr_read(qdm_dm *dm)
{
        char buf[4096];
        for (int i = 0; i < 16; i++) {
                ssize_t n = read(dm->stderr_fd, buf, sizeof(buf));
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : negative_errno();
                if (n == 0)
                        return -EPIPE;
                tail_append(dm, buf, (size_t)n);
                log_append(dm, buf, (size_t)n);
        }
        return 1;
}

/* A dead QEMU's pipe holds everything it wrote: take it all for the error report. */
static void stderr_drain(qdm_dm *dm)
{
        if (dm->stderr_fd >= 0)
                while (stderr_read(dm) > 0)
                        ;
}

static int stderr_cb(loop_source *s, int fd, uint32_t revents, void *userdata)
{
        qdm_dm *dm = userdata;
        if (stderr_read(dm) < 0) {
                stderr_drain(dm);
                /* EOF: QEMU closed stderr (it is exiting); the pidfd tells the rest. */
                dm->stderr_source = loop_source_free(dm->stderr_source);
                dm->stderr_fd = safe_close(dm->stderr_fd);
        }
        return 0;
}

/* The last lines QEMU wrote, trimmed, for error messages. */
static char *stderr_tail_text(qdm_dm *dm)
{
        return text_tail_printable(dm->stderr_tail, dm->stderr_len, 1024);
}

/* ---- QEMU's death (R6) ------------------------------------------------------------------- */

static int pidfd_cb(loop_source *s, int fd, uint32_t revents, void *userdata)
{
        qdm_dm *dm = userdata;
        siginfo_t si = {0};
        int r = waitid(P_PIDFD, (id_t)dm->pidfd, &si, WEXITED | WNOHANG);
        if (r == 0 && si.si_pid == 0)
                return 0; /* not exited after all */
        dm->pid_source = loop_source_free(dm->pid_source);
        dm->reaped = true;
        if (r == 0)
                dm->exit_status = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
        stderr_drain(dm);

        _cleanup_free_ char *how = spawn_describe_exit(&si);
        _cleanup_free_ char *tail = stderr_tail_text(dm);
        qdm_dm_ref(dm);
        if (state_is_starting(dm->state)) {
                set_error(dm, "QEMU %s while %s%s%s", how ? how : "exited", state_names[dm->state],
                          tail && *tail ? ": " : "", tail ? tail : "");
                start_failed(dm, -ESRCH);
        } else if (state_is_live(dm->state)) {
                if (dm->state != QDM_DM_STOPPING || dm->exit_status != 0)
                        set_error(dm, "QEMU %s%s%s%s", how ? how : "exited",
                                  dm->state == QDM_DM_STOPPING ? " while stopping" : "",
                                  tail && *tail ? ": " : "", tail ? tail : "");
                exited(dm);
        }
        qdm_dm_unref(dm);
        return 0;
}

/* ---- readiness (R1) ----------------------------------------------------------------------- */

static void become_ready(qdm_dm *dm)
{
        dm->deadline = loop_source_free(dm->deadline);
        dm->start_took = now_usec() - dm->start_begin;
        set_state(dm, QDM_DM_READY);
        op_complete(dm, 0);
}

static void events_ready_cb(qdm_qmp *qmp, int error, void *userdata)
{
        qdm_dm *dm = userdata;
        if (!state_is_starting(dm->state))
                return;
        if (error < 0) {
                set_error(dm, "QMP negotiation on the event monitor failed: %s", strerror(-error));
                if (!peer_gone(error)) /* a death is the pidfd's to report */
                        start_failed(dm, error);
                return;
        }
        dm->events_ready = true;
        if (dm->state == QDM_DM_QUERYING && dm->status_ok)
                become_ready(dm);
}

static void status_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        qdm_dm *dm = userdata;
        if (dm->state != QDM_DM_QUERYING)
                return;
        if (error < 0) {
                if (error == -EREMOTEIO)
                        set_error(dm, "query-status failed: %s: %s",
                                  qdm_qmp_message_get_error_class(m),
                                  qdm_qmp_message_get_error_desc(m));
                else
                        set_error(dm, "query-status failed: %s", strerror(-error));
                /* QEMU's death, if that is what this is, is reported by the pidfd. */
                if (!peer_gone(error))
                        start_failed(dm, error == -EREMOTEIO ? -EPROTO : error);
                return;
        }
        const char *status = qdm_qmp_message_get_string(m, "status");
        if (!streq_ptr(status, "prelaunch") && !streq_ptr(status, "paused") &&
            !streq_ptr(status, "inmigrate")) {
                /* Started with -S, anything else means it is not the QEMU we started paused. */
                set_error(dm, "QEMU reports status \"%s\", expected \"prelaunch\"",
                          status ? status : "(none)");
                start_failed(dm, -EPROTO);
                return;
        }
        dm->status_ok = true;
        if (dm->events_ready)
                become_ready(dm);
}

static void control_greeting_cb(qdm_qmp *qmp, void *userdata)
{
        qdm_dm *dm = userdata;
        if (dm->state == QDM_DM_GREETING)
                set_state(dm, QDM_DM_NEGOTIATING);
}

static void control_ready_cb(qdm_qmp *qmp, int error, void *userdata)
{
        qdm_dm *dm = userdata;
        if (dm->state != QDM_DM_NEGOTIATING && dm->state != QDM_DM_GREETING)
                return;
        if (error < 0) {
                set_error(dm, "QMP negotiation failed: %s", strerror(-error));
                if (!peer_gone(error)) /* a death is the pidfd's to report */
                        start_failed(dm, error);
                return;
        }
        if (dm->state == QDM_DM_GREETING)
                set_state(dm, QDM_DM_NEGOTIATING);
        set_state(dm, QDM_DM_QUERYING);
        int r = qdm_qmp_send(qmp, "query-status", NULL, NULL, 0, QUERY_TIMEOUT_USEC, status_cb, dm,
                             NULL);
        if (r < 0) {
                set_error(dm, "cannot send query-status: %s", strerror(-r));
                start_failed(dm, r);
        }
}

static void control_disconnect_cb(qdm_qmp *qmp, int error, void *userdata)
{
        qdm_dm *dm = userdata;
        /* QEMU closing its monitor while alive is hostile or broken; its death is reported
         * by the pidfd. Either way this connection is done. */
        ctx_log(dm->ctx, LOG_INFO_LEVEL, "dm %s: control connection ended: %s", dm->model->name,
                strerror(-error));
}

static void event_cb(qdm_qmp *qmp, const qdm_qmp_message *ev, void *userdata)
{
        qdm_dm *dm = userdata;
        const char *name = qdm_qmp_message_get_event(ev);
        /* With -no-shutdown QEMU stays after the guest powers off: finish a shutdown. */
        if (dm->state == QDM_DM_STOPPING && streq_ptr(name, "SHUTDOWN") && dm->control)
                (void)qdm_qmp_send(dm->control, "quit", NULL, NULL, 0, OP_TIMEOUT_USEC, NULL, NULL,
                                   NULL);
        if (dm->event_fn)
                dm->event_fn(dm, ev, dm->event_userdata);
}

static int deadline_cb(loop_source *s, uint64_t usec, void *userdata)
{
        qdm_dm *dm = userdata;
        dm->deadline = loop_source_free(dm->deadline);
        qdm_dm_ref(dm);
        if (state_is_starting(dm->state)) {
                _cleanup_free_ char *tail = stderr_tail_text(dm);
                const char *stuck =
                        dm->status_ok ? "negotiating the event monitor" : state_names[dm->state];
                set_error(dm, "QEMU was not ready within %llu ms (stuck while %s); killed it%s%s",
                          (unsigned long long)(dm->start_timeout / USEC_PER_MSEC), stuck,
                          tail && *tail ? ": " : "", tail ? tail : "");
                start_failed(dm, -ETIMEDOUT);
        } else if (dm->state == QDM_DM_STOPPING) {
                set_error(dm, "the guest did not power off within the grace period; killed QEMU");
                dm->shutdown_forced = true;
                kill_and_reap(dm);
                exited(dm);
        }
        qdm_dm_unref(dm);
        return 0;
}

/* ---- object ------------------------------------------------------------------------------- */

QDM_EXPORT int qdm_dm_new(qdm_ctx *ctx, qdm_config *config, const char *run_dir, qdm_dm **ret_dm)
{
        assert_return(ctx, -EINVAL);
        assert_return(config, -EINVAL);
        assert_return(run_dir && run_dir[0] == '/', -EINVAL);
        assert_return(ret_dm, -EINVAL);

        qdm_dm *dm = calloc(1, sizeof(*dm));
        if (!dm)
                return -ENOMEM;
        dm->n_ref = 1;
        dm->listen_fd = dm->uid_lock_fd = dm->pidfd = dm->stderr_fd = dm->log_fd = -1;
        dm->uid = geteuid();
        dm->gid = getegid();
        dm->config = qdm_config_ref((qdm_config *)config);
        dm->model = qdm_config_model(dm->config);
        dm->start_timeout = dm->model->start_timeout_ms * USEC_PER_MSEC;
        if (asprintf(&dm->run_dir, "%s", run_dir) < 0 ||
            asprintf(&dm->dir, "%s/%s", run_dir, dm->model->name) < 0 ||
            asprintf(&dm->socket_path, "%s/%s", dm->dir, CONTROL_SOCKET_NAME) < 0 ||
            asprintf(&dm->chroot_dir, "%s/%s", dm->dir, CHROOT_NAME) < 0 ||
            asprintf(&dm->uid_dir, "%s", QDM_UID_LOCK_DIR) < 0 ||
            asprintf(&dm->cache_dir, "%s/.cache", run_dir) < 0) {
                dm->ctx = qdm_ctx_ref(ctx);
                qdm_dm_unref(dm);
                return -ENOMEM;
        }
        if (strlen(dm->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                dm->ctx = qdm_ctx_ref(ctx);
                qdm_dm_unref(dm);
                return -ENAMETOOLONG;
        }
        dm->ctx = qdm_ctx_ref(ctx);
        *ret_dm = dm;
        return 0;
}

QDM_EXPORT qdm_dm *qdm_dm_ref(qdm_dm *dm)
{
        if (dm)
                dm->n_ref++;
        return dm;
}

QDM_EXPORT qdm_dm *qdm_dm_unref(qdm_dm *dm)
{
        if (!dm)
                return NULL;
        assert(dm->n_ref > 0);
        if (--dm->n_ref > 0)
                return NULL;
        dm->op_fn = NULL;
        dm->state_fn = NULL;
        dm->event_fn = NULL;
        teardown(dm);
        dm->op_defer = loop_source_free(dm->op_defer);
        qdm_config_free(dm->config);
        free(dm->run_dir);
        free(dm->dir);
        free(dm->socket_path);
        free(dm->chroot_dir);
        free(dm->uid_dir);
        free(dm->cache_dir);
        free(dm->log_path);
        free(dm->error);
        qdm_ctx_unref(dm->ctx);
        free(dm);
        return NULL;
}

QDM_EXPORT void qdm_dm_set_state_callback(qdm_dm *dm, qdm_dm_state_fn fn, void *userdata)
{
        if (!dm)
                return;
        dm->state_fn = fn;
        dm->state_userdata = userdata;
}

QDM_EXPORT void qdm_dm_set_event_callback(qdm_dm *dm, qdm_dm_event_fn fn, void *userdata)
{
        if (!dm)
                return;
        dm->event_fn = fn;
        dm->event_userdata = userdata;
}

QDM_EXPORT int qdm_dm_set_start_timeout(qdm_dm *dm, uint64_t usec)
{
        assert_return(dm && usec > 0, -EINVAL);
        assert_return(dm->state == QDM_DM_NEW, -EBUSY);
        dm->start_timeout = usec;
        return 0;
}

QDM_EXPORT int qdm_dm_set_stderr_log(qdm_dm *dm, const char *path, uint64_t max_bytes)
{
        assert_return(dm && path && *path, -EINVAL);
        assert_return(dm->state == QDM_DM_NEW, -EBUSY);
        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        free(dm->log_path);
        dm->log_path = p;
        dm->log_max = max_bytes ? max_bytes : DEFAULT_LOG_MAX;
        return 0;
}

/* ---- starting ------------------------------------------------------------------------------ */

/* run_dir (and its .uids and .cache) must be ours and closed to others: a directory another
 * user can write could have our socket or lock files swapped under us. */
static int ensure_private_dir(qdm_dm *dm, const char *path)
{
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
                int r = negative_errno();
                set_error(dm, "cannot create %s: %s", path, strerror(-r));
                return r;
        }
        struct stat st;
        if (lstat(path, &st) < 0) {
                int r = negative_errno();
                set_error(dm, "%s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022)) {
                set_error(dm,
                          "%s must be a directory owned by uid %u and not writable by "
                          "others; refusing to use it",
                          path, (unsigned)geteuid());
                return -EPERM;
        }
        return 0;
}

static bool kvm_usable(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        close(fd);
        return true;
}

/* Jail mode: what a start prepares besides the common parts, released when start_spawn()
 * returns (QEMU has its own copies of the disk fds by then). */
typedef struct jail_start {
        jail_files files;
        restrict_jail jail;
        int *disk_fds; /* ours, O_CLOEXEC; -1 when not open */
        int *child_fds;
        size_t n_disks;
} jail_start;

static void jail_start_done(jail_start *j)
{
        for (size_t i = 0; j->disk_fds && i < j->n_disks; i++)
                safe_close(j->disk_fds[i]);
        free(j->disk_fds);
        free(j->child_fds);
        jail_files_done(&j->files);
}

/* Which accelerator a jailed QEMU gets. Its uid is no account and owns nothing, so /dev/kvm is
 * usable only through a group (or by everyone). accel "auto" falls back to TCG when it is not;
 * "kvm" fails with what to change. */
static int jail_choose_kvm(qdm_dm *dm, bool *ret_kvm, gid_t *ret_group)
{
        const qdm_model *m = dm->model;
        *ret_kvm = false;
        *ret_group = (gid_t)-1;
        if (m->accel == QDM_ACCEL_TCG)
                return 0;
        _cleanup_free_ char *why = NULL;
        int k = jail_kvm_access(KVM_DEVICE, dm->uid, ret_group, &why);
        if (m->accel == QDM_ACCEL_KVM) {
                if (k < 0) {
                        set_error(dm, "accel \"kvm\": %s: %s", KVM_DEVICE, strerror(-k));
                        return k;
                }
                if (k == 0) {
                        set_error(dm, "accel \"kvm\": %s", why ? why : "KVM is not usable");
                        return -EACCES;
                }
                *ret_kvm = true;
                return 0;
        }
        *ret_kvm = k > 0 && kvm_usable();
        if (k == 0)
                ctx_log(dm->ctx, LOG_WARNING_LEVEL, "dm %s: accel \"auto\" uses TCG: %s", m->name,
                        why ? why : "KVM is not usable");
        return 0;
}

/* Jail mode: open the disks (QEMU gets fds, never paths), find what the jail's root holds,
 * and fill in the jail. */
static int jail_prepare(qdm_dm *dm, const qemu_probe *probe, bool kvm, gid_t kvm_group,
                        jail_start *j)
{
        const qdm_model *m = dm->model;
        int r;

        j->n_disks = m->n_disks;
        if (m->n_disks > 0) {
                j->disk_fds = malloc(m->n_disks * sizeof(int));
                j->child_fds = malloc(m->n_disks * sizeof(int));
                if (!j->disk_fds || !j->child_fds)
                        return -ENOMEM;
                for (size_t i = 0; i < m->n_disks; i++)
                        j->disk_fds[i] = -1;
        }
        for (size_t i = 0; i < m->n_disks; i++) {
                const qdm_disk *d = &m->disks[i];
                /* The access mode is what QEMU matches when it opens /dev/fdset/N. */
                j->disk_fds[i] =
                        open(d->path, (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
                if (j->disk_fds[i] < 0) {
                        r = negative_errno();
                        set_error(dm, "disks[%zu]: cannot open %s: %s", i, d->path, strerror(-r));
                        return r;
                }
                j->child_fds[i] = FIRST_DISK_FD + (int)i;
        }

        _cleanup_free_ char *why = NULL;
        jail_params jp = {
                .qemu = m->qemu,
                .probe = probe,
                .kvm = kvm,
                .kernel = m->kernel,
                .initrd = m->initrd,
                .cache_dir = dm->cache_dir, /* start_spawn() made sure it is private */
        };
        r = jail_files_find(&jp, &j->files, &why);
        if (r < 0) {
                set_error(dm, "%s", why ? why : strerror(-r));
                return r;
        }
        ctx_log(dm->ctx, LOG_DEBUG_LEVEL, "dm %s: jail of %zu bind mounts%s", m->name,
                j->files.n_mounts, j->files.cached ? " (host files from the cache)" : "");
        j->jail = (restrict_jail){
                .root = dm->chroot_dir,
                .mounts = j->files.mounts,
                .n_mounts = j->files.n_mounts,
                .uid = dm->uid,
                .gid = dm->gid,
                .hostname = JAIL_HOSTNAME,
        };
        if (kvm && kvm_group != (gid_t)-1)
                j->jail.groups[j->jail.n_groups++] = kvm_group;
        return 0;
}

static int listen_control(qdm_dm *dm)
{
        /* Non-blocking: QEMU 7.2 accepts on this fd from its main loop, and a blocking
         * listener can leave that accept4() waiting for good while the monitor thread holds
         * the connection it already took (seen about once in 2,000 starts: the start then
         * sticks in NEGOTIATING until its deadline). The flag travels with the fd. */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, dm->socket_path, strlen(dm->socket_path) + 1);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        /* Inside a 0700 directory already; 0600 says the same on the socket itself. */
        if (r >= 0)
                r = chmod(dm->socket_path, 0600);
        /* QEMU itself listens with a backlog of 1; waiting clients are serialized by the
         * per-device-model lock (R7), this only bounds how many can queue. */
        if (r < 0 || listen(fd, 16) < 0) {
                r = negative_errno();
                close(fd);
                return r;
        }
        dm->listen_fd = fd;
        return 0;
}

static int start_spawn(qdm_dm *dm)
{
        const qdm_model *m = dm->model;
        int r;

        _cleanup_free_ char *why = NULL;
        r = config_check_privileges(m, &why);
        if (r < 0) {
                set_error(dm, "%s", why ? why : "insufficient privileges");
                return r;
        }
        r = ensure_private_dir(dm, dm->run_dir);
        if (r < 0)
                return r;

        qemu_probe probe;
        r = ensure_private_dir(dm, dm->cache_dir);
        if (r < 0)
                return r;
        if (m->restrict_.mode == QDM_RESTRICT_JAIL) {
                /* Before the probe runs anything: a wrapper script cannot run in a jail. */
                free(why);
                why = NULL;
                r = jail_check_binary(m->qemu, &why);
                if (r < 0) {
                        set_error(dm, "%s", why ? why : strerror(-r));
                        return r;
                }
        }
        /* The probe runs inside the start's deadline: a binary that hangs fails it in time. */
        uint64_t now = now_usec(), deadline = usec_add(dm->start_begin, dm->start_timeout);
        r = qemu_probe_get(m->qemu, dm->cache_dir, deadline > now ? deadline - now : 1,
                           m->restrict_.mode == QDM_RESTRICT_JAIL, &probe, &why);
        if (r == -ETIMEDOUT && now_usec() >= deadline) {
                set_error(dm, "QEMU was not ready within %llu ms (stuck while probing %s)",
                          (unsigned long long)(dm->start_timeout / USEC_PER_MSEC), m->qemu);
                return r;
        }
        if (r < 0) {
                set_error(dm, "%s", why ? why : strerror(-r));
                return r;
        }

        if (mkdir(dm->dir, 0700) < 0) {
                r = negative_errno();
                if (r == -EEXIST)
                        set_error(dm, "a device model named \"%s\" already exists in %s", m->name,
                                  dm->run_dir);
                else
                        set_error(dm, "cannot create %s: %s", dm->dir, strerror(-r));
                return r;
        }
        dm->dir_created = true;

        if (m->restrict_.mode != QDM_RESTRICT_NONE) {
                /* Host-wide, whatever the run directory: two run directories must never hand
                 * out the same uid (destroying one would kill the other's QEMU). */
                r = ensure_private_dir(dm, QDM_DEFAULT_RUN_DIR);
                if (r >= 0)
                        r = ensure_private_dir(dm, dm->uid_dir);
                if (r < 0)
                        return r;
                r = uid_alloc(dm->uid_dir, m->restrict_.uid_min, m->restrict_.uid_max,
                              m->restrict_.share_uid, &dm->uid, &dm->uid_lock_fd);
                if (r < 0) {
                        set_error(dm, "restrict: no free uid in %u-%u: %s",
                                  (unsigned)m->restrict_.uid_min, (unsigned)m->restrict_.uid_max,
                                  strerror(-r));
                        return r == -ENOSPC ? -EUSERS : r;
                }
                dm->gid = (gid_t)dm->uid;
                dm->own_uid = !m->restrict_.share_uid;
                r = restrict_make_empty_root(dm->chroot_dir);
                if (r < 0) {
                        set_error(dm, "cannot create the empty root %s: %s", dm->chroot_dir,
                                  strerror(-r));
                        return r;
                }
        }

        r = listen_control(dm);
        if (r < 0) {
                set_error(dm, "cannot listen on %s: %s", dm->socket_path, strerror(-r));
                return r;
        }

        int ev[2], err[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ev) < 0)
                return negative_errno();
        _cleanup_close_ int ev_ours = ev[0], ev_theirs = ev[1];
        if (pipe2(err, O_CLOEXEC) < 0)
                return negative_errno();
        _cleanup_close_ int err_theirs = err[1];
        dm->stderr_fd = err[0];
        /* Only our end is non-blocking: QEMU's writes must never fail with EAGAIN. */
        if (fcntl(dm->stderr_fd, F_SETFL, O_NONBLOCK) < 0)
                return negative_errno();
        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return negative_errno();
        if (dm->log_path) {
                dm->log_fd = open(dm->log_path,
                                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (dm->log_fd < 0) {
                        r = negative_errno();
                        set_error(dm, "cannot open %s: %s", dm->log_path, strerror(-r));
                        return r;
                }
        }

        bool jailed = m->restrict_.mode == QDM_RESTRICT_JAIL;
        bool kvm = m->accel == QDM_ACCEL_KVM || (m->accel == QDM_ACCEL_AUTO && kvm_usable());
        gid_t kvm_group = (gid_t)-1;
        _cleanup_(jail_start_done) jail_start js = {0};
        if (jailed) {
                r = jail_choose_kvm(dm, &kvm, &kvm_group);
                if (r >= 0)
                        r = jail_prepare(dm, &probe, kvm, kvm_group, &js);
                if (r < 0)
                        return r;
        }
        qdm_argv_params ap = {
                .monitor_fd = 3,
                .event_fd = 4,
                .chroot_dir = dm->chroot_dir,
                .uid = dm->uid,
                .gid = dm->gid,
                .kvm = kvm,
                .disk_fds = js.child_fds,
                .n_disk_fds = js.n_disks,
        };
        _cleanup_strv_free_ char **argv = NULL;
        r = qdm_argv_build(m, &probe, &ap, &argv);
        if (r < 0) {
                free(why);
                why = NULL;
                (void)qdm_argv_check(m, &probe, &ap, &why);
                set_error(dm, "%s", why ? why : "cannot build QEMU's command line");
                return r;
        }
        if (jailed) {
                /* QEMU finds its modules and firmware relative to argv[0] in the jail. */
                char *exe = strdup(js.files.exec_path);
                if (!exe)
                        return -ENOMEM;
                free(argv[0]);
                argv[0] = exe;
        }

        /* R5: exactly these fds; QEMU's stdout joins its stderr so nothing it says is lost.
         * In a jail, each disk follows as the fd QEMU adds to its fd set. */
        const spawn_fd common[] = {
                {devnull, 0}, {err_theirs, 1}, {err_theirs, 2}, {dm->listen_fd, 3}, {ev_theirs, 4},
        };
        _cleanup_free_ spawn_fd *plan = calloc(ELEMENTSOF(common) + js.n_disks, sizeof(*plan));
        if (!plan)
                return -ENOMEM;
        memcpy(plan, common, sizeof(common));
        for (size_t i = 0; i < js.n_disks; i++)
                plan[ELEMENTSOF(common) + i] = (spawn_fd){js.disk_fds[i], js.child_fds[i]};
        char *const envp[] = {NULL};
        spawn_params sp = {
                .path = jailed ? js.files.exec_path : m->qemu,
                .argv = argv,
                .envp = envp,
                .fds = plan,
                .n_fds = ELEMENTSOF(common) + js.n_disks,
                .restrict_ = &m->restrict_,
                .jail = jailed ? &js.jail : NULL,
                .new_session = true,
        };
        set_state(dm, QDM_DM_SPAWNING);
        int pidfd = -1;
        r = spawn_process(&sp, &dm->pid, &pidfd, &why);
        if (r < 0) {
                set_error(dm, "cannot start QEMU: %s", why ? why : strerror(-r));
                return r;
        }
        dm->pidfd = pidfd;
        /* R5: the parent keeps no copy of QEMU's ends, so its death reads as EOF. */
        err_theirs = safe_close(err_theirs);
        ev_theirs = safe_close(ev_theirs);

        r = loop_add_io(dm->ctx, dm->stderr_fd, EPOLLIN, stderr_cb, dm, &dm->stderr_source);
        if (r < 0)
                return r;
        loop_source_set_description(dm->stderr_source, "QEMU stderr");
        r = loop_add_io(dm->ctx, dm->pidfd, EPOLLIN, pidfd_cb, dm, &dm->pid_source);
        if (r < 0)
                return r;
        loop_source_set_description(dm->pid_source, "QEMU pidfd");

        /* The event-only monitor: connected before QEMU starts, so no event is missed. */
        r = qdm_qmp_new(dm->ctx, &dm->events);
        if (r < 0)
                return r;
        qdm_qmp_set_event_callback(dm->events, event_cb, dm);
        qdm_qmp_set_ready_callback(dm->events, events_ready_cb, dm);
        r = qdm_qmp_adopt_fd(dm->events, TAKE_FD(ev_ours));
        if (r < 0)
                return r;

        r = qdm_qmp_new(dm->ctx, &dm->control);
        if (r < 0)
                return r;
        qmp_client_set_greeting_hook(dm->control, control_greeting_cb, dm);
        qdm_qmp_set_ready_callback(dm->control, control_ready_cb, dm);
        qdm_qmp_set_disconnect_callback(dm->control, control_disconnect_cb, dm);
        r = qdm_qmp_connect(dm->control, dm->socket_path);
        if (r < 0)
                return r;
        set_state(dm, QDM_DM_GREETING);
        return 0;
}

QDM_EXPORT int qdm_dm_start(qdm_dm *dm, qdm_dm_done_fn fn, void *userdata)
{
        assert_return(dm, -EINVAL);
        assert_return(dm->state == QDM_DM_NEW, -EBUSY);
        int r = op_begin(dm, OP_START, fn, userdata);
        if (r < 0)
                return r;

        dm->start_begin = now_usec();
        r = loop_add_time(dm->ctx, usec_add(dm->start_begin, dm->start_timeout), deadline_cb, dm,
                          &dm->deadline);
        if (r >= 0)
                r = start_spawn(dm);
        if (r < 0) {
                if (!dm->error)
                        set_error(dm, "cannot start: %s", strerror(-r));
                start_failed(dm, r);
        }
        return 0;
}

/* ---- operations on a ready device model ---------------------------------------------------- */

static void op_reply_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        qdm_dm *dm = userdata;
        if (dm->op != OP_RESUME && dm->op != OP_PAUSE)
                return;
        if (error < 0) {
                if (error == -EREMOTEIO)
                        set_error(dm, "%s: %s: %s", dm->op == OP_RESUME ? "cont" : "stop",
                                  qdm_qmp_message_get_error_class(m),
                                  qdm_qmp_message_get_error_desc(m));
                else
                        set_error(dm, "%s: %s", dm->op == OP_RESUME ? "cont" : "stop",
                                  strerror(-error));
                /* QEMU's death is reported by the pidfd, which completes the operation. */
                if (!peer_gone(error))
                        op_complete(dm, error);
                return;
        }
        set_state(dm, dm->op == OP_RESUME ? QDM_DM_RUNNING : QDM_DM_PAUSED);
        op_complete(dm, 0);
}

static int send_op(qdm_dm *dm, dm_op op, const char *command, qdm_dm_done_fn fn, void *userdata)
{
        if (!dm->control || !qmp_client_is_ready(dm->control))
                return -ENOTCONN;
        int r = op_begin(dm, op, fn, userdata);
        if (r < 0)
                return r;
        r = qdm_qmp_send(dm->control, command, NULL, NULL, 0, OP_TIMEOUT_USEC, op_reply_cb, dm,
                         NULL);
        if (r < 0) {
                dm->op = OP_NONE;
                return r;
        }
        return 0;
}

QDM_EXPORT int qdm_dm_resume(qdm_dm *dm, qdm_dm_done_fn fn, void *userdata)
{
        assert_return(dm, -EINVAL);
        assert_return(dm->state == QDM_DM_READY || dm->state == QDM_DM_PAUSED, -EBUSY);
        return send_op(dm, OP_RESUME, "cont", fn, userdata);
}

QDM_EXPORT int qdm_dm_pause(qdm_dm *dm, qdm_dm_done_fn fn, void *userdata)
{
        assert_return(dm, -EINVAL);
        assert_return(dm->state == QDM_DM_RUNNING, -EBUSY);
        return send_op(dm, OP_PAUSE, "stop", fn, userdata);
}

QDM_EXPORT int qdm_dm_shutdown(qdm_dm *dm, uint64_t grace_usec, qdm_dm_done_fn fn, void *userdata)
{
        assert_return(dm, -EINVAL);
        assert_return(dm->state == QDM_DM_READY || dm->state == QDM_DM_RUNNING ||
                              dm->state == QDM_DM_PAUSED,
                      -EBUSY);
        if (!dm->control || !qmp_client_is_ready(dm->control))
                return -ENOTCONN;
        int r = op_begin(dm, OP_SHUTDOWN, fn, userdata);
        if (r < 0)
                return r;
        r = loop_add_time(dm->ctx, usec_add(now_usec(), grace_usec), deadline_cb, dm,
                          &dm->deadline);
        if (r < 0) {
                dm->op = OP_NONE;
                return r;
        }
        /* A guest that never ran cannot power itself off: quit it directly. */
        const char *command = dm->state == QDM_DM_READY ? "quit" : "system_powerdown";
        r = qdm_qmp_send(dm->control, command, NULL, NULL, 0, OP_TIMEOUT_USEC, NULL, NULL, NULL);
        if (r < 0) {
                dm->deadline = loop_source_free(dm->deadline);
                dm->op = OP_NONE;
                return r;
        }
        set_state(dm, QDM_DM_STOPPING);
        return 0;
}

QDM_EXPORT int qdm_dm_destroy(qdm_dm *dm)
{
        assert_return(dm, -EINVAL);
        qdm_dm_ref(dm);
        if (state_is_starting(dm->state)) {
                set_error(dm, "destroyed while starting");
                teardown(dm);
                set_state(dm, QDM_DM_FAILED);
                op_complete(dm, -ECANCELED);
        } else if (state_is_live(dm->state)) {
                teardown(dm);
                set_state(dm, QDM_DM_EXITED);
                op_complete(dm, -ECANCELED);
        } else
                teardown(dm);
        qdm_dm_unref(dm);
        return 0;
}

QDM_EXPORT int qdm_dm_release_control(qdm_dm *dm)
{
        assert_return(dm, -EINVAL);
        assert_return(dm->op == OP_NONE, -EBUSY);
        /* Outstanding replies are drained by the context (R3). */
        dm->control = qdm_qmp_unref(dm->control);
        return 0;
}

/* ---- accessors ---------------------------------------------------------------------------- */

QDM_EXPORT qdm_dm_state qdm_dm_get_state(qdm_dm *dm)
{
        return dm ? dm->state : QDM_DM_FAILED;
}

QDM_EXPORT const char *qdm_dm_get_name(qdm_dm *dm)
{
        return dm ? dm->model->name : NULL;
}

QDM_EXPORT const char *qdm_dm_get_error(qdm_dm *dm)
{
        return dm ? dm->error : NULL;
}

QDM_EXPORT pid_t qdm_dm_get_pid(qdm_dm *dm)
{
        return dm ? dm->pid : 0;
}

QDM_EXPORT int qdm_dm_get_pidfd(qdm_dm *dm)
{
        return dm ? dm->pidfd : -EINVAL;
}

QDM_EXPORT uid_t qdm_dm_get_uid(qdm_dm *dm)
{
        return dm ? dm->uid : (uid_t)-1;
}

QDM_EXPORT gid_t qdm_dm_get_gid(qdm_dm *dm)
{
        return dm ? dm->gid : (gid_t)-1;
}

QDM_EXPORT const char *qdm_dm_get_dir(qdm_dm *dm)
{
        return dm ? dm->dir : NULL;
}

QDM_EXPORT const char *qdm_dm_get_socket_path(qdm_dm *dm)
{
        return dm ? dm->socket_path : NULL;
}

QDM_EXPORT qdm_qmp *qdm_dm_get_qmp(qdm_dm *dm)
{
        return dm ? dm->control : NULL;
}

QDM_EXPORT int qdm_dm_get_exit(qdm_dm *dm, int *ret_status)
{
        assert_return(dm && ret_status, -EINVAL);
        assert_return(dm->reaped, -ENODATA);
        *ret_status = dm->exit_status;
        return 0;
}

QDM_EXPORT int qdm_dm_get_uid_lock_fd(qdm_dm *dm)
{
        return dm ? dm->uid_lock_fd : -EINVAL;
}

QDM_EXPORT uint64_t qdm_dm_get_start_usec(qdm_dm *dm)
{
        return dm ? dm->start_took : 0;
}
