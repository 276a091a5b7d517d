/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * spawn.c against real processes: the probe (tests/helpers/spawn-probe.c) is started through
 * spawn_process() and inspected through /proc while it waits, so every assertion is about what
 * the kernel says the child has, not what the child claims.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "proc.h"
#include "spawn.h"
#include "test-leaks.h"
#include "test-support.h"
#include "util.h"

#ifndef SPAWN_PROBE_PATH
#error "SPAWN_PROBE_PATH must be defined by the build"
#endif

extern char **environ;

/* Wait (5 s at most) for the probe's "running" byte on FD. */
static void wait_ready(int fd)
{
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char c = 0;

        assert_int_equal(poll(&pfd, 1, 5000), 1);
        assert_int_equal(read(fd, &c, 1), 1);
        assert_int_equal(c, 'r');
}

static char *fd_target(int fd)
{
        char path[64], buf[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, buf, sizeof(buf) - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        return strdup(buf);
}

static void kill_and_reap(int pidfd, const char *expect)
{
        siginfo_t si;

        assert_int_equal(pidfd_send_signal(pidfd, SIGKILL, NULL, 0), 0);
        assert_int_equal(spawn_reap(pidfd, &si), 0);
        _cleanup_free_ char *d = spawn_describe_exit(&si);
        assert_non_null(d);
        assert_string_equal(d, expect);
        close(pidfd);
}

/* Spawn the probe with PLAN, telling it to report on child fd READY_CHILD_FD; READY_R is the
 * parent's read end of that channel. */
static void spawn_probe(const spawn_fd *plan, size_t n, int ready_child_fd, int ready_r,
                        pid_t *ret_pid, int *ret_pidfd)
{
        char fdarg[16];
        snprintf(fdarg, sizeof(fdarg), "%d", ready_child_fd);
        char *argv[] = {(char *)"spawn-probe", fdarg, NULL};
        spawn_params p = {
                .path = SPAWN_PROBE_PATH, .argv = argv, .envp = environ, .fds = plan, .n_fds = n};
        char *error = NULL;

        int r = spawn_process(&p, ret_pid, ret_pidfd, &error);
        if (r < 0)
                fprintf(stderr, "# spawn_process: %s\n", error ? error : "?");
        assert_int_equal(r, 0);
        assert_null(error);
        wait_ready(ready_r);
}

typedef struct expect_fd {
        int fd;
        const char *target;
} expect_fd;

static void assert_child_fds(pid_t pid, const expect_fd *expect, size_t n_expect)
{
        proc_fd *fds = NULL;
        size_t n = 0;

        assert_int_equal(proc_list_fds(pid, &fds, &n), 0);
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, "#   child fd %d -> %s\n", fds[i].fd, fds[i].target);
        assert_int_equal(n, n_expect);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(fds[i].fd, expect[i].fd);
                assert_string_equal(fds[i].target, expect[i].target);
        }
        proc_fds_free(fds, n);
}

/* The child has exactly stdin (/dev/null) and the plan, however many fds the parent has open,
 * CLOEXEC or not. Run with close_range() and with its /proc fallback. */
static void check_exact_fds(bool fallback)
{
        int junk[20], ready[2], payload[2];
        pid_t pid;
        int pidfd;

        for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                junk[i] = open("/dev/zero", O_RDONLY | (i % 2 ? O_CLOEXEC : 0));
                assert_true(junk[i] >= 0);
        }
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        assert_int_equal(pipe(payload), 0); /* no CLOEXEC: must still only appear as planned */

        spawn_fd plan[] = {{ready[1], 3}, {payload[0], 7}};
        spawn_test_disable_close_range = fallback;
        spawn_probe(plan, ELEMENTSOF(plan), 3, ready[0], &pid, &pidfd);
        spawn_test_disable_close_range = false;

        _cleanup_free_ char *t_ready = fd_target(ready[1]);
        _cleanup_free_ char *t_payload = fd_target(payload[0]);
        expect_fd expect[] = {{0, "/dev/null"}, {3, t_ready}, {7, t_payload}};
        assert_child_fds(pid, expect, ELEMENTSOF(expect));

        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");
        for (size_t i = 0; i < ELEMENTSOF(junk); i++)
                close(junk[i]);
        close(ready[0]);
        close(ready[1]);
        close(payload[0]);
        close(payload[1]);
}

static void test_exact_fds(void **state)
{
        (void)state;
        check_exact_fds(false);
}

static void test_exact_fds_without_close_range(void **state)
{
        (void)state;
        check_exact_fds(true);
}

/* Make parent fd NUMBER a CLOEXEC copy of a fresh pipe's write end; returns the read end. */
static int pipe_at(int number, int *ret_extra_write)
{
        int p[2], r, w;

        assert_int_equal(fcntl(number, F_GETFD), -1); /* the test needs the number free */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        /* Out of the way first: pipe2() itself may have used NUMBER. */
        r = fcntl(p[0], F_DUPFD_CLOEXEC, 100);
        w = fcntl(p[1], F_DUPFD_CLOEXEC, 100);
        assert_true(r >= 100 && w >= 100);
        close(p[0]);
        close(p[1]);
        assert_int_equal(dup3(w, number, O_CLOEXEC), number);
        close(w);
        *ret_extra_write = number;
        return r;
}

/* Overlapping plans: a swap (5 -> 3 while 3 -> 5), an identity mapping of a CLOEXEC fd, one
 * source for two targets; then a rotation (3 -> 4 -> 5 -> 3). */
static void test_overlapping_fds(void **state)
{
        int w3, w4, w5, r3, r4, r5;
        pid_t pid;
        int pidfd;

        (void)state;
        r3 = pipe_at(3, &w3);
        r4 = pipe_at(4, &w4);
        r5 = pipe_at(5, &w5);
        _cleanup_free_ char *t3 = fd_target(3);
        _cleanup_free_ char *t4 = fd_target(4);
        _cleanup_free_ char *t5 = fd_target(5);

        spawn_fd swap[] = {{5, 3}, {3, 5}, {4, 4}, {4, 8}};
        spawn_probe(swap, ELEMENTSOF(swap), 4, r4, &pid, &pidfd);
        expect_fd expect_swap[] = {{0, "/dev/null"}, {3, t5}, {4, t4}, {5, t3}, {8, t4}};
        assert_child_fds(pid, expect_swap, ELEMENTSOF(expect_swap));
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");

        /* The probe reports on child fd 5, which is parent fd 4 here. */
        spawn_fd rotate[] = {{3, 4}, {4, 5}, {5, 3}};
        spawn_probe(rotate, ELEMENTSOF(rotate), 5, r4, &pid, &pidfd);
        expect_fd expect_rotate[] = {{0, "/dev/null"}, {3, t5}, {4, t3}, {5, t4}};
        assert_child_fds(pid, expect_rotate, ELEMENTSOF(expect_rotate));
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");

        /* The parent's own fds are untouched, CLOEXEC still set. */
        assert_int_equal(fcntl(3, F_GETFD), FD_CLOEXEC);
        assert_int_equal(fcntl(4, F_GETFD), FD_CLOEXEC);
        _cleanup_free_ char *t3_after = fd_target(3);
        assert_string_equal(t3, t3_after);

        close(w3);
        close(w4);
        close(w5);
        close(r3);
        close(r4);
        close(r5);
}

/* A plan that maps 0 replaces /dev/null. */
static void test_plan_maps_stdin(void **state)
{
        int ready[2], in[2];
        pid_t pid;
        int pidfd;

        (void)state;
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        spawn_fd plan[] = {{in[0], 0}, {ready[1], 1}};
        spawn_probe(plan, ELEMENTSOF(plan), 1, ready[0], &pid, &pidfd);
        _cleanup_free_ char *t_in = fd_target(in[0]);
        _cleanup_free_ char *t_ready = fd_target(ready[1]);
        expect_fd expect[] = {{0, t_in}, {1, t_ready}};
        assert_child_fds(pid, expect, ELEMENTSOF(expect));
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");
        close(ready[0]);
        close(ready[1]);
        close(in[0]);
        close(in[1]);
}

static void assert_spawn_fails(const spawn_params *p, int expect_r, const char *expect_error)
{
        pid_t pid = -7;
        int pidfd = -7;
        char *error = NULL;
        uint64_t t0 = now_usec();

        assert_int_equal(spawn_process(p, &pid, &pidfd, &error), expect_r);
        /* Promptly: the error comes through the pipe, not from a timeout. */
        assert_true(now_usec() - t0 < USEC_PER_SEC);
        assert_non_null(error);
        assert_string_equal(error, expect_error);
        free(error);
        /* Out-parameters untouched on failure. */
        assert_int_equal(pid, -7);
        assert_int_equal(pidfd, -7);
}

/* A missing binary: -ENOENT at once, a readable error, the child reaped (teardown checks). */
static void test_exec_missing(void **state)
{
        char *argv[] = {(char *)"qdm-no-such-binary", NULL};
        spawn_params p = {.path = "/nonexistent/qdm-no-such-binary", .argv = argv};

        (void)state;
        assert_spawn_fails(&p, -ENOENT,
                           "exec /nonexistent/qdm-no-such-binary: No such file or directory");
        /* And with no ret_error at all. */
        pid_t pid;
        int pidfd;
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), -ENOENT);
}

/* Not executable: exec fails with EACCES even for root. */
static void test_exec_not_executable(void **state)
{
        const char *tmp = getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof(path), "%s/qdm-test-spawn-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        int fd = mkstemp(path);

        (void)state;
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(chmod(path, 0644), 0);
        char *argv[] = {path, NULL};
        spawn_params p = {.path = path, .argv = argv};
        _cleanup_free_ char *expect = NULL;
        assert_true(asprintf(&expect, "exec %s: Permission denied", path) > 0);
        assert_spawn_fails(&p, -EACCES, expect);
        unlink(path);
}

/* A pre-exec step failing is reported with the step. */
static void test_chdir_failure(void **state)
{
        char *argv[] = {(char *)"spawn-probe", (char *)"0", NULL};
        spawn_params p = {.path = SPAWN_PROBE_PATH, .argv = argv, .cwd = "/nonexistent-qdm"};

        (void)state;
        assert_spawn_fails(&p, -ENOENT, "chdir /nonexistent-qdm: No such file or directory");
}

static void test_bad_parameters(void **state)
{
        char *argv[] = {(char *)"spawn-probe", (char *)"0", NULL};
        spawn_params p = {.path = SPAWN_PROBE_PATH, .argv = argv};
        pid_t pid;
        int pidfd;

        (void)state;
        /* fd 900 is not open. */
        spawn_fd closed[] = {{900, 3}};
        p.fds = closed;
        p.n_fds = 1;
        assert_spawn_fails(&p, -EBADF, "fd plan: parent fd 900 is not open");

        spawn_fd twice[] = {{1, 3}, {2, 3}};
        p.fds = twice;
        p.n_fds = 2;
        assert_spawn_fails(&p, -EINVAL, "fd plan: child fd 3 given twice");

        spawn_fd negative[] = {{1, -1}};
        p.fds = negative;
        p.n_fds = 1;
        assert_spawn_fails(&p, -EINVAL, "fd plan: invalid entry 1 -> -1");

        p.fds = NULL;
        p.n_fds = 0;
        assert_int_equal(spawn_process(NULL, &pid, &pidfd, NULL), -EINVAL);
        assert_int_equal(spawn_process(&p, NULL, &pidfd, NULL), -EINVAL);
        char *no_argv0[] = {NULL};
        p.argv = no_argv0;
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), -EINVAL);

        siginfo_t si;
        assert_int_equal(spawn_reap(-1, &si), -EBADF);
}

/* A jail that cannot be built fails the spawn, naming the step. (Jails that work are proven
 * with real QEMU in tests/integration/test-jail.c.) */
static void test_jail_errors(void **state)
{
        char *argv[] = {(char *)"spawn-probe", (char *)"0", NULL};
        qdm_restrict jail = {.mode = QDM_RESTRICT_JAIL};
        spawn_params p = {.path = SPAWN_PROBE_PATH, .argv = argv, .restrict_ = &jail};

        (void)state;
        assert_spawn_fails(&p, -EINVAL, "jail mode needs an absolute root directory");
        if (geteuid() != 0) {
                print_message("not root: the jail's mounts are not tried\n");
                return;
        }
        char *dir = test_mkdtemp("spawn-jail");
        assert_non_null(dir);
        restrict_mount mounts[] = {{(char *)"/nonexistent/qdm-test", (char *)"/x/y", 0}};
        restrict_jail j = {
                .root = dir, .mounts = mounts, .n_mounts = 1, .uid = 64999, .gid = 64999};
        p.jail = &j;
        assert_spawn_fails(&p, -ENOENT,
                           "jail: bind-mounting /nonexistent/qdm-test on /x/y: No such file or "
                           "directory");
        /* Nothing of the child's private mounts shows on the host. */
        char *x = NULL;
        assert_true(asprintf(&x, "%s/x", dir) > 0);
        assert_int_equal(access(x, F_OK), -1);
        free(x);
        test_rm_rf(dir);
        free(dir);
}

static void sigusr1_handler(int sig)
{
        (void)sig;
}

#define SIGBIT(s) (UINT64_C(1) << ((s)-1))

/* The parent ignores SIGPIPE, catches SIGUSR1 and blocks SIGTERM; the child starts with all of
 * them at their defaults, and the parent's own state is exactly as before. */
static void test_signals_reset(void **state)
{
        struct sigaction ign = {.sa_handler = SIG_IGN}, catch = {.sa_handler = sigusr1_handler};
        struct sigaction old_pipe, old_usr1, now;
        sigset_t term, old_mask, mask_after;
        int ready[2];
        pid_t pid;
        int pidfd;

        (void)state;
        assert_int_equal(sigaction(SIGPIPE, &ign, &old_pipe), 0);
        assert_int_equal(sigaction(SIGUSR1, &catch, &old_usr1), 0);
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        assert_int_equal(sigprocmask(SIG_BLOCK, &term, &old_mask), 0);

        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        spawn_fd plan[] = {{ready[1], 3}};
        spawn_probe(plan, 1, 3, ready[0], &pid, &pidfd);

        proc_status st;
        assert_int_equal(proc_status_read(pid, &st), 0);
        assert_int_equal(st.sig_blk, 0);
        assert_int_equal(st.sig_ign, 0);
        assert_false(st.sig_cgt & SIGBIT(SIGUSR1));
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");

        /* The parent's mask and dispositions are what they were. */
        assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &mask_after), 0);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP && sig < SIGRTMIN)
                        assert_int_equal(sigismember(&mask_after, sig),
                                         sig == SIGTERM || sigismember(&old_mask, sig));
        assert_int_equal(sigaction(SIGPIPE, NULL, &now), 0);
        assert_ptr_equal(now.sa_handler, SIG_IGN);
        assert_int_equal(sigaction(SIGUSR1, NULL, &now), 0);
        assert_ptr_equal(now.sa_handler, sigusr1_handler);

        assert_int_equal(sigprocmask(SIG_SETMASK, &old_mask, NULL), 0);
        assert_int_equal(sigaction(SIGPIPE, &old_pipe, NULL), 0);
        assert_int_equal(sigaction(SIGUSR1, &old_usr1, NULL), 0);
        close(ready[0]);
        close(ready[1]);
}

static void check_session(bool new_session)
{
        char *argv[] = {(char *)"spawn-probe", (char *)"3", NULL};
        int ready[2];
        pid_t pid, pgrp, sid;
        int pidfd;

        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        spawn_fd plan[] = {{ready[1], 3}};
        spawn_params p = {.path = SPAWN_PROBE_PATH,
                          .argv = argv,
                          .fds = plan,
                          .n_fds = 1,
                          .new_session = new_session};
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), 0);
        wait_ready(ready[0]);
        assert_int_equal(proc_stat_session(pid, &pgrp, &sid), 0);
        if (new_session) {
                assert_int_equal(sid, pid);
                assert_int_equal(pgrp, pid);
        } else {
                assert_int_equal(sid, getsid(0));
                assert_int_equal(pgrp, getpgrp());
        }
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");
        close(ready[0]);
        close(ready[1]);
}

static void test_new_session(void **state)
{
        (void)state;
        check_session(true);
        check_session(false);
}

/* The environment is exactly envp (NULL = empty), cwd is applied, and an exit status is
 * reported as such. */
static void test_env_cwd_exit(void **state)
{
        char *argv[] = {(char *)"spawn-probe", (char *)"3", (char *)"exit", (char *)"3", NULL};
        char *envp[] = {(char *)"QDM_TEST=1", (char *)"B=two words", NULL};
        int ready[2];
        pid_t pid;
        int pidfd;
        siginfo_t si;

        (void)state;
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        spawn_fd plan[] = {{ready[1], 3}};
        spawn_params p = {.path = SPAWN_PROBE_PATH,
                          .argv = argv,
                          .envp = envp,
                          .fds = plan,
                          .n_fds = 1,
                          .cwd = "/tmp"};
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), 0);
        wait_ready(ready[0]);
        /* It may already be a zombie: environ and cwd are gone then, so read them from a
         * probe that waits instead. The exit status first. */
        assert_int_equal(spawn_reap(pidfd, &si), 0);
        assert_int_equal(si.si_code, CLD_EXITED);
        assert_int_equal(si.si_status, 3);
        _cleanup_free_ char *d = spawn_describe_exit(&si);
        assert_string_equal(d, "exited with status 3");
        close(pidfd);

        argv[2] = NULL;
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), 0);
        wait_ready(ready[0]);
        char path[64], buf[256];
        snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        const char expect_env[] = "QDM_TEST=1\0B=two words";
        assert_int_equal(n, sizeof(expect_env));
        assert_memory_equal(buf, expect_env, sizeof(expect_env));
        _cleanup_free_ char *cwd = NULL;
        assert_int_equal(proc_cwd(pid, &cwd), 0);
        assert_string_equal(cwd, "/tmp");
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");

        /* NULL envp: empty environment. */
        p.envp = NULL;
        p.cwd = NULL;
        assert_int_equal(spawn_process(&p, &pid, &pidfd, NULL), 0);
        wait_ready(ready[0]);
        snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, buf, sizeof(buf)), 0);
        close(fd);
        kill_and_reap(pidfd, "killed by signal 9 (SIGKILL)");

        close(ready[0]);
        close(ready[1]);
}

static void test_describe_exit(void **state)
{
        siginfo_t si = {0};
        char *d;

        (void)state;
        si.si_code = CLD_EXITED;
        si.si_status = 1;
        d = spawn_describe_exit(&si);
        assert_string_equal(d, "exited with status 1");
        free(d);
        si.si_code = CLD_KILLED;
        si.si_status = SIGKILL;
        d = spawn_describe_exit(&si);
        assert_string_equal(d, "killed by signal 9 (SIGKILL)");
        free(d);
        si.si_code = CLD_DUMPED;
        si.si_status = SIGSEGV;
        d = spawn_describe_exit(&si);
        assert_string_equal(d, "killed by signal 11 (SIGSEGV), core dumped");
        free(d);
        si.si_code = CLD_KILLED;
        si.si_status = SIGRTMIN + 2;
        d = spawn_describe_exit(&si);
        assert_non_null(d);
        assert_non_null(strstr(d, "killed by signal"));
        free(d);
        assert_null(spawn_describe_exit(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                leak_checked_test(test_exact_fds),
                leak_checked_test(test_exact_fds_without_close_range),
                leak_checked_test(test_overlapping_fds),
                leak_checked_test(test_plan_maps_stdin),
                leak_checked_test(test_exec_missing),
                leak_checked_test(test_exec_not_executable),
                leak_checked_test(test_chdir_failure),
                leak_checked_test(test_bad_parameters),
                leak_checked_test(test_jail_errors),
                leak_checked_test(test_signals_reset),
                leak_checked_test(test_new_session),
                leak_checked_test(test_env_cwd_exit),
                leak_checked_test(test_describe_exit),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
