/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The supervisor: `qdm __supervise`, one per device model, started by `qdm create` in a new
 * session. It is QEMU's parent: it runs the library's start (so QEMU's death during the start
 * is seen at once through the pidfd, R6), reports the outcome to `create` over a pipe, then
 * lets go of the control monitor for good and only keeps the event-only monitor: it appends
 * events to events.log, copies QEMU's stderr into stderr.log (capped), reaps QEMU when it ends
 * and records how in state.json. SIGTERM makes it destroy the device model and exit.
 *
 * It embeds libqdm the way any host loop would: poll() on the context's fd plus its own
 * signalfd, then qdm_ctx_process().
 *
 * fds from `create`: 3 = the configuration (JSON, read to EOF), 4 = the report pipe.
 * Report lines: "ready <ready_usec>\n" or "error <errno> <message>\n".
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "config.h"
#include "rundir.h"
#include "util.h"

#define CONFIG_FD      3
#define REPORT_FD      4
#define STDERR_LOG_MAX (1024 * 1024)
#define EVENTS_LOG_MAX (4 * 1024 * 1024)

typedef struct supervisor {
        const char *run_dir;
        qdm_ctx *ctx;
        qdm_dm *dm;
        dm_state record;
        int report_fd;
        int events_fd;
        int lock_fd; /* the monitor lock, held while we use the control monitor (R7) */
        uint64_t events_written;
        bool paused;
        bool start_done;
        int start_error;
        bool terminate;
} supervisor;

static void report(supervisor *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(supervisor *s, const char *fmt, ...)
{
        if (s->report_fd < 0)
                return;
        char buf[8192];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n > sizeof(buf) - 2)
                n = (int)sizeof(buf) - 2;
        /* One line: QEMU's words may contain newlines; the reader takes everything. */
        buf[n++] = '\n';
        (void)!write(s->report_fd, buf, (size_t)n);
        s->report_fd = safe_close(s->report_fd);
}

static void record_write(supervisor *s)
{
        int r = dm_state_write(s->run_dir, &s->record);
        if (r < 0)
                fprintf(stderr, "qdm supervisor: cannot write state: %s\n", strerror(-r));
}

static void record_set_state(supervisor *s, const char *state)
{
        char *d = strdup(state);
        if (!d)
                return;
        free(s->record.state);
        s->record.state = d;
        record_write(s);
}

/* ---- events ------------------------------------------------------------------------------- */

static void events_append(supervisor *s, const qdm_qmp_message *ev)
{
        if (s->events_fd < 0 || s->events_written >= EVENTS_LOG_MAX)
                return;
        json_object *data = json_tokener_parse(qdm_qmp_message_get_json(ev));
        json_object *o = json_object_new_object();
        uint64_t ts = qdm_qmp_message_get_timestamp(ev);
        json_object_object_add(o, "timestamp", json_object_new_double((double)ts / 1e6));
        json_object_object_add(o, "event", json_object_new_string(qdm_qmp_message_get_event(ev)));
        json_object_object_add(o, "data", data ? data : json_object_new_object());
        const char *line = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        size_t len = strlen(line);
        _cleanup_free_ char *buf = malloc(len + 2);
        if (buf) {
                memcpy(buf, line, len);
                buf[len] = '\n';
                if (write(s->events_fd, buf, len + 1) == (ssize_t)(len + 1))
                        s->events_written += len + 1;
        }
        if (s->events_written >= EVENTS_LOG_MAX) {
                static const char note[] = "{\"event\":\"QDM_EVENT_LOG_TRUNCATED\"}\n";
                (void)!write(s->events_fd, note, sizeof(note) - 1);
        }
        json_object_put(o);
}

static void on_event(qdm_dm *dm, const qdm_qmp_message *ev, void *userdata)
{
        supervisor *s = userdata;
        events_append(s, ev);
        if (!s->start_done)
                return;
        /* Other processes drive QEMU through the control socket; its events tell us. */
        const char *name = qdm_qmp_message_get_event(ev);
        if (streq_ptr(name, "RESUME"))
                record_set_state(s, "running");
        else if (streq_ptr(name, "STOP"))
                record_set_state(s, "paused");
        else if (streq_ptr(name, "SHUTDOWN"))
                record_set_state(s, "shutdown");
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void on_state(qdm_dm *dm, qdm_dm_state old_state, qdm_dm_state new_state, void *userdata)
{
        supervisor *s = userdata;
        if (new_state == QDM_DM_SPAWNING) {
                /* The directory exists now: open the event log inside it. */
                _cleanup_free_ char *p = rundir_path(s->run_dir, s->record.name, EVENTS_LOG);
                if (p)
                        s->events_fd = open(
                                p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
                /* Ours alone until the start is over: `qdm` commands queue on it (R7). The
                 * directory is brand new, so nobody else can hold it yet. */
                int fd = rundir_lock(s->run_dir, s->record.name, 0);
                s->lock_fd = fd >= 0 ? fd : -1;
                /* Recorded before QEMU exists, so that a supervisor killed at any moment from
                 * here on leaves a record: 'qdm destroy' then finds QEMU by its socket. */
                record_write(s);
        }
        if (new_state == QDM_DM_GREETING) {
                /* QEMU runs: record it now, so that `qdm status` and `qdm destroy` work while
                 * the start is still under way. */
                proc_ident_get(qdm_dm_get_pid(dm), &s->record.qemu);
                s->record.uid = qdm_dm_get_uid(dm);
                s->record.gid = qdm_dm_get_gid(dm);
                record_write(s);
        }
        if (new_state == QDM_DM_EXITED && s->start_done) {
                int status = 0;
                s->record.ended = true;
                s->record.ended_at = (uint64_t)time(NULL);
                if (qdm_dm_get_exit(dm, &status) >= 0) {
                        s->record.exit_code = status >= 0 ? status : 0;
                        s->record.exit_signal = status < 0 ? -status : 0;
                }
                const char *why = qdm_dm_get_error(dm);
                free(s->record.end_reason);
                s->record.end_reason = why ? strdup(why) : NULL;
                record_set_state(s, "exited");
        }
}

static void on_resumed(qdm_dm *dm, int error, void *userdata)
{
        supervisor *s = userdata;
        s->start_done = true;
        s->start_error = error;
}

static void on_started(qdm_dm *dm, int error, void *userdata)
{
        supervisor *s = userdata;
        if (error < 0 || s->paused) {
                s->start_done = true;
                s->start_error = error;
                return;
        }
        int r = qdm_dm_resume(dm, on_resumed, s);
        if (r < 0) {
                s->start_done = true;
                s->start_error = r;
        }
}

/* Remove what the CLI put into the device model's directory, then the directory (libqdm
 * removed its own files already). */
static void remove_files(supervisor *s)
{
        s->events_fd = safe_close(s->events_fd);
        (void)rundir_remove(s->run_dir, s->record.name);
}

static int run_loop(supervisor *s, int sfd, bool (*done)(supervisor *s))
{
        while (!done(s)) {
                struct pollfd p[2] = {
                        {.fd = qdm_ctx_get_fd(s->ctx), .events = POLLIN},
                        {.fd = sfd, .events = POLLIN},
                };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[1].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        if (read(sfd, &si, sizeof(si)) == sizeof(si))
                                s->terminate = true;
                }
                if (s->terminate)
                        return 0;
                int r = qdm_ctx_process(s->ctx);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool start_finished(supervisor *s)
{
        return s->start_done;
}

static bool dm_over(supervisor *s)
{
        qdm_dm_state st = qdm_dm_get_state(s->dm);
        return st == QDM_DM_EXITED || st == QDM_DM_FAILED;
}

static char *read_all(int fd, size_t max)
{
        size_t size = 0, alloc = 4096;
        char *buf = malloc(alloc);
        while (buf) {
                if (size + 1 >= alloc) {
                        if (alloc >= max + 1) {
                                free(buf);
                                return NULL;
                        }
                        char *b = realloc(buf, alloc * 2);
                        if (!b)
                                break;
                        buf = b;
                        alloc *= 2;
                }
                ssize_t n = read(fd, buf + size, alloc - size - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        break;
                if (n == 0) {
                        buf[size] = '\0';
                        return buf;
                }
                size += (size_t)n;
        }
        free(buf);
        return NULL;
}

int cmd_supervise(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"run-dir", required_argument, NULL, 'r'},
                {"paused", no_argument, NULL, 'p'},
                {"timeout-usec", required_argument, NULL, 't'},
                {0},
        };
        supervisor s = {.report_fd = REPORT_FD, .events_fd = -1, .lock_fd = -1};
        uint64_t timeout = 0;
        int c;
        while ((c = getopt_long(argc, argv, "+", options, NULL)) >= 0) {
                switch (c) {
                case 'r':
                        s.run_dir = optarg;
                        break;
                case 'p':
                        s.paused = true;
                        break;
                case 't':
                        timeout = strtoull(optarg, NULL, 10);
                        break;
                default:
                        return EXIT_USAGE;
                }
        }
        if (!s.run_dir || fcntl(CONFIG_FD, F_GETFD) < 0 || fcntl(REPORT_FD, F_GETFD) < 0) {
                fprintf(stderr, "qdm: __supervise is internal to 'qdm create'\n");
                return EXIT_USAGE;
        }
        fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

        _cleanup_free_ char *text = read_all(CONFIG_FD, 1024 * 1024);
        close(CONFIG_FD);
        qdm_config *config = NULL;
        _cleanup_free_ char *why = NULL;
        int r = text ? qdm_config_new_from_json(text, strlen(text), &config, &why) : -EIO;
        if (r < 0) {
                report(&s, "error %d configuration: %s", -r, why ? why : strerror(-r));
                return EXIT_FAILED;
        }
        const qdm_model *m = qdm_config_model(config);
        bool share_uid = m->restrict_.share_uid;
        r = cli_ctx_new(g, &s.ctx);
        if (r >= 0)
                r = qdm_dm_new(s.ctx, config, s.run_dir, &s.dm);
        if (r < 0) {
                report(&s, "error %d %s", -r, strerror(-r));
                qdm_config_free(config);
                qdm_ctx_unref(s.ctx);
                return EXIT_FAILED;
        }

        s.record.name = strdup(m->name);
        s.record.state = strdup("starting");
        s.record.restrict_ = strdup(qdm_restrict_mode_to_string(m->restrict_.mode));
        s.record.machine = strdup(m->machine);
        s.record.accel = strdup(qdm_accel_to_string(m->accel));
        s.record.ns_net = m->restrict_.unshare_net;
        s.record.ns_pid = m->restrict_.unshare_pid;
        if (m->n_disks > 0 && (s.record.disks = calloc(m->n_disks + 1, sizeof(char *))))
                for (size_t i = 0; i < m->n_disks; i++)
                        s.record.disks[i] = strdup(m->disks[i].path);
        s.record.created = (uint64_t)time(NULL);
        const rlim_t configured[RUNDIR_N_RLIMITS] = {
                m->restrict_.rlimits.fsize,    m->restrict_.rlimits.core,
                m->restrict_.rlimits.msgqueue, m->restrict_.rlimits.locks,
                m->restrict_.rlimits.memlock,  m->restrict_.rlimits.nofile,
        };
        for (size_t i = 0; i < RUNDIR_N_RLIMITS; i++)
                s.record.rlimits[i] =
                        m->restrict_.mode == QDM_RESTRICT_NONE || configured[i] == RLIM_INFINITY
                                ? -1
                                : (int64_t)configured[i];
        proc_ident_get(getpid(), &s.record.supervisor);
        qdm_config_free(config);

        _cleanup_free_ char *log = rundir_path(s.run_dir, s.record.name, STDERR_LOG);
        if (log)
                qdm_dm_set_stderr_log(s.dm, log, STDERR_LOG_MAX);
        if (timeout > 0)
                qdm_dm_set_start_timeout(s.dm, timeout);
        qdm_dm_set_event_callback(s.dm, on_event, &s);
        qdm_dm_set_state_callback(s.dm, on_state, &s);

        int ret = EXIT_FAILED;
        r = qdm_dm_start(s.dm, on_started, &s);
        if (r >= 0)
                r = run_loop(&s, sfd, start_finished);
        if (r < 0 || s.terminate || s.start_error < 0) {
                int err = r < 0 ? r : s.start_error < 0 ? s.start_error : -ECANCELED;
                const char *detail = qdm_dm_get_error(s.dm);
                bool existed = err == -EEXIST;
                qdm_dm_destroy(s.dm);
                /* A name in use belongs to someone else: touch nothing of it. */
                if (!existed)
                        remove_files(&s);
                report(&s, "error %d %s", -err, detail ? detail : strerror(-err));
                goto out;
        }

        s.record.uid = qdm_dm_get_uid(s.dm);
        s.record.gid = qdm_dm_get_gid(s.dm);
        s.record.own_uid = qdm_dm_get_uid_lock_fd(s.dm) >= 0 && !share_uid;
        s.record.ready_usec = qdm_dm_get_start_usec(s.dm);
        free(s.record.state);
        s.record.state = strdup(s.paused ? "ready" : "running");
        record_write(&s);

        /* From here on the control monitor belongs to `qdm` commands, one at a time (R7). */
        qdm_dm_release_control(s.dm);
        s.lock_fd = safe_close(s.lock_fd);
        report(&s, "ready %llu", (unsigned long long)s.record.ready_usec);

        r = run_loop(&s, sfd, dm_over);
        if (s.terminate) {
                qdm_dm_destroy(s.dm);
                remove_files(&s);
        }
        ret = EXIT_OK;
out:
        s.dm = qdm_dm_unref(s.dm);
        (void)qdm_ctx_flush(s.ctx, 5 * USEC_PER_SEC);
        s.ctx = qdm_ctx_unref(s.ctx);
        safe_close(s.events_fd);
        safe_close(s.lock_fd);
        dm_state_done(&s.record);
        return ret;
}
