/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restriction proven on the real thing: QEMU 7.2 started through spawn_process() in mode
 * QDM_RESTRICT_QEMU (as root, -chroot into restrict_make_empty_root(), -runas an allocated uid,
 * the libxl sandbox string), the listening monitor socket handed over by the fd plan (R5).
 * Once QMP answers query-status (R1; a small blocking client here, matching replies by id),
 * /proc must show what restrict.h promises. Then QEMU is killed, reaped, its uid emptied, and
 * everything removed. Needs root and qemu-system-x86_64; KVM cases are skipped without a
 * usable /dev/kvm, with the reason printed.
 */
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include "proc.h"
#include "restrict.h"
#include "spawn.h"
#include "test-leaks.h"
#include "test-support.h"
#include "test-uids.h"
#include "util.h"

/* Its own slice of the default range, allocated from the lock dir all running instances share
 * (test-uids.h): another test program's uid_kill_all() never hits our QEMU. */
#define UID_MIN 64950
#define UID_MAX 64999

#define SANDBOX "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"

/* ---- a tiny blocking QMP client ------------------------------------------------------------ */

typedef struct qmp {
        int fd;
        char buf[1 << 16];
        size_t len;
} qmp;

/* The next message (one line), parsed; NULL on EOF, error or timeout. */
static json_object *qmp_next(qmp *q, int timeout_ms)
{
        uint64_t deadline = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;

        for (;;) {
                char *nl = memchr(q->buf, '\n', q->len);
                if (nl) {
                        *nl = '\0';
                        json_object *o = json_tokener_parse(q->buf);
                        size_t used = (size_t)(nl + 1 - q->buf);
                        memmove(q->buf, nl + 1, q->len - used);
                        q->len -= used;
                        if (o)
                                return o;
                        continue;
                }
                uint64_t now = now_usec();
                if (now >= deadline || q->len == sizeof(q->buf))
                        return NULL;
                struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
                if (poll(&pfd, 1, (int)((deadline - now) / USEC_PER_MSEC) + 1) <= 0)
                        return NULL;
                ssize_t n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
                if (n <= 0)
                        return NULL;
                q->len += (size_t)n;
        }
}

/* Send COMMAND with ID and return its reply's "return" member as a string ("" if not a
 * string), skipping events; NULL if none came or it was an error. */
static char *qmp_command(qmp *q, const char *command, const char *id)
{
        char line[256];
        int n = snprintf(line, sizeof(line), "{\"execute\":\"%s\",\"id\":\"%s\"}\n", command, id);
        if (write(q->fd, line, (size_t)n) != n)
                return NULL;
        for (;;) {
                json_object *o = qmp_next(q, 20000), *rid, *ret;
                if (!o)
                        return NULL;
                if (!json_object_object_get_ex(o, "id", &rid) ||
                    !streq_ptr(json_object_get_string(rid), id)) {
                        json_object_put(o); /* an event, or a reply we did not ask for */
                        continue;
                }
                char *result = NULL;
                if (json_object_object_get_ex(o, "return", &ret)) {
                        json_object *status;
                        if (json_object_object_get_ex(ret, "status", &status))
                                result = strdup(json_object_get_string(status));
                        else
                                result = strdup("");
                }
                json_object_put(o);
                return result;
        }
}

/* ---- one restricted QEMU -------------------------------------------------------------------- */

typedef struct qemu_case {
        const char *machine;
        const char *accel; /* NULL: QEMU's default */
        bool cont;         /* also resume it and check it keeps running */
} qemu_case;

static void dump_stderr(int fd)
{
        char buf[4096];
        ssize_t n;
        fcntl(fd, F_SETFL, O_NONBLOCK);
        while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
                buf[n] = '\0';
                fprintf(stderr, "# qemu: %s", buf);
        }
}

static void run_restricted_qemu(const qemu_case *c)
{
        const char *qemu = test_qemu_binary();
        const char *locks = test_shared_uid_lock_dir();
        _cleanup_free_ char *dir = NULL, *root = NULL, *sockpath = NULL, *lockfile = NULL;
        char runas[32];
        uid_t uid;
        int lock, errpipe[2];
        pid_t pid;
        int pidfd;
        char *error = NULL;

        if (geteuid() != 0) {
                fprintf(stderr, "# SKIP: restricted QEMU starts as root and drops itself\n");
                skip();
        }
        if (!qemu) {
                fprintf(stderr, "# SKIP: qemu-system-x86_64 not found (set QDM_TEST_QEMU)\n");
                skip();
        }
        if (c->accel && streq_ptr(c->accel, "kvm") && !test_kvm_usable()) {
                fprintf(stderr, "# SKIP: /dev/kvm is not usable here\n");
                skip();
        }

        assert_non_null(locks);
        dir = test_mkdtemp("rqemu");
        assert_non_null(dir);
        assert_true(asprintf(&root, "%s/root", dir) > 0);
        assert_true(asprintf(&sockpath, "%s/qmp.sock", dir) > 0);
        assert_int_equal(restrict_make_empty_root(root), 0);
        assert_int_equal(uid_alloc(locks, UID_MIN, UID_MAX, false, &uid, &lock), 0);
        assert_true(asprintf(&lockfile, "%s/uid-%u.lock", locks, (unsigned)uid) > 0);
        snprintf(runas, sizeof(runas), "%u:%u", (unsigned)uid, (unsigned)uid);

        /* R5: we listen, QEMU gets the listening fd. */
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        assert_true(strlen(sockpath) < sizeof(sa.sun_path));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sockpath);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 1), 0);
        assert_int_equal(pipe2(errpipe, O_CLOEXEC), 0);

        char *argv[32];
        size_t n = 0;
        argv[n++] = (char *)qemu;
        argv[n++] = (char *)"-S";
        argv[n++] = (char *)"-nodefaults";
        argv[n++] = (char *)"-display";
        argv[n++] = (char *)"none";
        argv[n++] = (char *)"-machine";
        argv[n++] = (char *)c->machine;
        if (c->accel) {
                argv[n++] = (char *)"-accel";
                argv[n++] = (char *)c->accel;
        }
        argv[n++] = (char *)"-chroot";
        argv[n++] = root;
        argv[n++] = (char *)"-runas";
        argv[n++] = runas;
        argv[n++] = (char *)"-sandbox";
        argv[n++] = (char *)SANDBOX;
        argv[n++] = (char *)"-chardev";
        argv[n++] = (char *)"socket,id=qmp,fd=3,server=on,wait=off";
        argv[n++] = (char *)"-mon";
        argv[n++] = (char *)"chardev=qmp,mode=control";
        argv[n] = NULL;

        qdm_restrict r = {
                .mode = QDM_RESTRICT_QEMU,
                .uid_min = UID_MIN,
                .uid_max = UID_MAX,
                .rlimits = {.fsize = 256 * 1024,
                            .core = 0,
                            .msgqueue = 0,
                            .locks = 0,
                            .memlock = 0,
                            .nofile = RLIM_INFINITY},
        };
        spawn_fd plan[] = {{lfd, 3}, {errpipe[1], 2}};
        spawn_params p = {.path = qemu,
                          .argv = argv,
                          .fds = plan,
                          .n_fds = ELEMENTSOF(plan),
                          .restrict_ = &r,
                          .new_session = true};
        int k = spawn_process(&p, &pid, &pidfd, &error);
        if (k < 0)
                fprintf(stderr, "# spawn_process: %s\n", error);
        assert_int_equal(k, 0);
        /* R5: every copy of QEMU's ends is closed in the parent. */
        close(lfd);
        close(errpipe[1]);

        qmp *q = calloc(1, sizeof(qmp));
        assert_non_null(q);
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(q->fd >= 0);
        assert_int_equal(connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        json_object *greeting = qmp_next(q, 20000);
        if (!greeting)
                dump_stderr(errpipe[0]);
        assert_non_null(greeting);
        assert_true(json_object_object_get_ex(greeting, "QMP", NULL));
        json_object_put(greeting);
        char *s = qmp_command(q, "qmp_capabilities", "caps");
        assert_non_null(s);
        free(s);
        /* R1: ready is a query-status reply, which QEMU sends only after dropping. */
        s = qmp_command(q, "query-status", "status");
        if (!s)
                dump_stderr(errpipe[0]);
        assert_non_null(s);
        assert_string_equal(s, "prelaunch");
        free(s);

        proc_status st;
        assert_int_equal(proc_status_read(pid, &st), 0);
        for (int i = 0; i < _PROC_ID_MAX; i++) {
                assert_int_equal(st.uid[i], uid);
                assert_int_equal(st.gid[i], uid);
        }
        assert_int_equal(st.cap_eff, 0);
        assert_int_equal(st.cap_prm, 0);
        assert_int_equal(st.cap_inh, 0);
        assert_int_equal(st.cap_amb, 0);
        assert_int_equal(st.cap_bnd, RESTRICT_QEMU_KEEP_CAPS);
        assert_int_equal(st.seccomp, 2);
        assert_int_equal(st.no_new_privs, 1);

        _cleanup_free_ char *its_root = NULL;
        assert_int_equal(proc_root(pid, &its_root), 0);
        assert_string_equal(its_root, root);
        static const char *const fresh[] = {"mnt", "ipc"};
        for (size_t i = 0; i < ELEMENTSOF(fresh); i++) {
                uint64_t mine, its;
                assert_int_equal(proc_ns_ino(0, fresh[i], &mine), 0);
                assert_int_equal(proc_ns_ino(pid, fresh[i], &its), 0);
                assert_int_not_equal(mine, its);
        }

        static const struct {
                int resource;
                rlim_t value;
        } limits[] = {{RLIMIT_FSIZE, 256 * 1024},
                      {RLIMIT_CORE, 0},
                      {RLIMIT_MSGQUEUE, 0},
                      {RLIMIT_LOCKS, 0},
                      {RLIMIT_MEMLOCK, 0}};
        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                struct rlimit rl;
                assert_int_equal(proc_rlimit(pid, limits[i].resource, &rl), 0);
                assert_int_equal(rl.rlim_cur, limits[i].value);
                assert_int_equal(rl.rlim_max, limits[i].value);
        }

        /* fd 0 is /dev/null, 3 the monitor socket; nothing of ours leaked in (the lock). */
        proc_fd *fds = NULL;
        size_t nfds = 0;
        assert_int_equal(proc_list_fds(pid, &fds, &nfds), 0);
        assert_true(nfds >= 3);
        assert_int_equal(fds[0].fd, 0);
        assert_string_equal(fds[0].target, "/dev/null");
        bool has_monitor = false;
        for (size_t i = 0; i < nfds; i++) {
                assert_null(strstr(fds[i].target, lockfile));
                if (fds[i].fd == 3 && strncmp(fds[i].target, "socket:", 7) == 0)
                        has_monitor = true;
        }
        assert_true(has_monitor);
        proc_fds_free(fds, nfds);

        if (c->cont) {
                /* MEMLOCK 0 and the sandbox must not stop it from running. */
                s = qmp_command(q, "cont", "cont");
                assert_non_null(s);
                free(s);
                usleep(300 * 1000);
                s = qmp_command(q, "query-status", "status2");
                assert_non_null(s);
                assert_string_equal(s, "running");
                free(s);
        }

        assert_int_equal(pidfd_send_signal(pidfd, SIGKILL, NULL, 0), 0);
        siginfo_t si;
        assert_int_equal(spawn_reap(pidfd, &si), 0);
        _cleanup_free_ char *how = spawn_describe_exit(&si);
        assert_string_equal(how, "killed by signal 9 (SIGKILL)");
        close(pidfd);
        assert_int_equal(uid_kill_all(uid), 0);

        close(q->fd);
        free(q);
        close(errpipe[0]);
        close(lock);
        assert_int_equal(unlink(sockpath), 0);
        assert_int_equal(rmdir(root), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_machine_none(void **state)
{
        (void)state;
        run_restricted_qemu(&(qemu_case){.machine = "none", .cont = true});
}

static void test_q35_kvm(void **state)
{
        (void)state;
        run_restricted_qemu(&(qemu_case){.machine = "q35", .accel = "kvm", .cont = true});
}

static void test_q35_tcg(void **state)
{
        (void)state;
        run_restricted_qemu(&(qemu_case){.machine = "q35", .accel = "tcg", .cont = true});
}

/* R6 at this layer: a restricted QEMU that fails shows up on the pidfd at once, with its exit
 * status and its stderr. */
static void test_early_exit(void **state)
{
        const char *qemu = test_qemu_binary();
        char *argv[] = {(char *)qemu,
                        (char *)"-S",
                        (char *)"-nodefaults",
                        (char *)"-machine",
                        (char *)"qdm-no-such-machine",
                        (char *)"-display",
                        (char *)"none",
                        NULL};
        int errpipe[2];
        pid_t pid;
        int pidfd;

        (void)state;
        if (geteuid() != 0 || !qemu) {
                fprintf(stderr, "# SKIP: needs root and qemu-system-x86_64\n");
                skip();
        }
        qdm_restrict r = {.mode = QDM_RESTRICT_QEMU,
                          .rlimits = {.fsize = 256 * 1024,
                                      .core = 0,
                                      .msgqueue = 0,
                                      .locks = 0,
                                      .memlock = 0,
                                      .nofile = RLIM_INFINITY}};
        assert_int_equal(pipe2(errpipe, O_CLOEXEC), 0);
        spawn_fd plan[] = {{errpipe[1], 2}};
        spawn_params p = {.path = qemu, .argv = argv, .fds = plan, .n_fds = 1, .restrict_ = &r};
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), 0);
        close(errpipe[1]);

        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        siginfo_t si;
        assert_int_equal(spawn_reap(pidfd, &si), 0);
        _cleanup_free_ char *how = spawn_describe_exit(&si);
        assert_string_equal(how, "exited with status 1");
        char buf[1024];
        ssize_t n = read(errpipe[0], buf, sizeof(buf) - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_non_null(strstr(buf, "unsupported machine type"));
        close(errpipe[0]);
        close(pidfd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                leak_checked_test(test_machine_none),
                leak_checked_test(test_q35_kvm),
                leak_checked_test(test_q35_tcg),
                leak_checked_test(test_early_exit),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
