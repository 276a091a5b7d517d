/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * restrict.c and proc.c against the real kernel: the pre-exec restriction applied to the probe
 * (tests/helpers/spawn-probe.c) and read back from /proc, the empty root, uid allocation across
 * processes, and killing every process of a uid. Most of it needs root; without root those
 * tests are skipped with a printed reason. The real-QEMU check is test-restrict-qemu.c.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "proc.h"
#include "restrict.h"
#include "spawn.h"
#include "test-leaks.h"
#include "test-support.h"
#include "test-uids.h"
#include "util.h"

#ifndef SPAWN_PROBE_PATH
#error "SPAWN_PROBE_PATH must be defined by the build"
#endif

extern char **environ;

/* A slice of the default range of its own: tests of other layers allocate from other lock dirs
 * (their run dirs), and must never be handed a uid whose processes we kill. Within the slice,
 * tests that run processes as the uid allocate from a lock dir shared by every running
 * instance of these tests (test-uids.h); pure allocation tests use private dirs. */
#define UID_MIN 64900
#define UID_MAX 64949

static bool need_root(void)
{
        if (geteuid() == 0)
                return true;
        fprintf(stderr, "# SKIP: this test needs root (it changes uids and capabilities)\n");
        return false;
}

#define REQUIRE_ROOT()            \
        do {                      \
                if (!need_root()) \
                        skip();   \
        } while (0)

/* libxl's defaults, as config.c fills them in. */
static qdm_restrict default_restrict(void)
{
        return (qdm_restrict){
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
}

static char *make_tmpdir(void)
{
        char *d = test_mkdtemp("restrict");
        assert_non_null(d);
        return d;
}

/* A uid for a test that runs processes as it: from the lock dir every running instance of the
 * tests shares (see test-uids.h). */
static void alloc_shared_uid(uid_t *ret_uid, int *ret_lock)
{
        const char *dir = test_shared_uid_lock_dir();
        assert_non_null(dir);
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, false, ret_uid, ret_lock), 0);
}

/* Remove DIR and the plain files in it (lock files). */
static void remove_tmpdir(char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
        closedir(d);
        assert_int_equal(rmdir(dir), 0);
        free(dir);
}

static void wait_ready(int fd)
{
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char c = 0;

        assert_int_equal(poll(&pfd, 1, 5000), 1);
        assert_int_equal(read(fd, &c, 1), 1);
        assert_int_equal(c, 'r');
}

static void kill_and_reap(int pidfd)
{
        siginfo_t si;
        assert_int_equal(pidfd_send_signal(pidfd, SIGKILL, NULL, 0), 0);
        assert_int_equal(spawn_reap(pidfd, &si), 0);
        assert_int_equal(si.si_code, CLD_KILLED);
        close(pidfd);
}

/* Fork; the child runs FN (no cmocka in there: plain checks, result as exit status). Returns
 * the child's wait status. */
static int run_in_child(int (*fn)(void *), void *arg)
{
        int status;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(fn(arg));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return status;
}

static int become(uid_t uid)
{
        if (syscall(SYS_setgroups, 0, NULL) < 0 ||
            syscall(SYS_setresgid, (gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
            syscall(SYS_setresuid, uid, uid, uid) < 0)
                return -errno;
        return 0;
}

/* A child that becomes UID (after naming itself NAME, if not NULL) and waits to be killed; the
 * caller kills and reaps it with stop_stranger(). */
static pid_t start_stranger(uid_t uid, const char *name)
{
        int ready[2];
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (name)
                        (void)prctl(PR_SET_NAME, name);
                if (become(uid) < 0 || write(ready[1], "r", 1) != 1)
                        _exit(10);
                for (;;)
                        pause();
        }
        wait_ready(ready[0]);
        close(ready[0]);
        close(ready[1]);
        return pid;
}

static void stop_stranger(pid_t pid)
{
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
}

/* ---- the restriction, applied to the probe ---------------------------------------------- */

static void assert_rlimit(pid_t pid, int resource, rlim_t cur, rlim_t max)
{
        struct rlimit rl;
        assert_int_equal(proc_rlimit(pid, resource, &rl), 0);
        assert_int_equal(rl.rlim_cur, cur);
        assert_int_equal(rl.rlim_max, max);
}

static void test_restricted_probe(void **state)
{
        qdm_restrict r = default_restrict();
        char *argv[] = {(char *)"spawn-probe", (char *)"3", NULL};
        int ready[2];
        pid_t pid;
        int pidfd;
        char *error = NULL;

        (void)state;
        REQUIRE_ROOT();
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        spawn_fd plan[] = {{ready[1], 3}};
        spawn_params p = {.path = SPAWN_PROBE_PATH,
                          .argv = argv,
                          .envp = environ,
                          .fds = plan,
                          .n_fds = 1,
                          .restrict_ = &r};
        int k = spawn_process(&p, &pid, &pidfd, &error);
        if (k < 0)
                fprintf(stderr, "# %s\n", error);
        assert_int_equal(k, 0);
        wait_ready(ready[0]);

        /* Root keeps exactly the bounding set through exec; nothing inheritable/ambient. */
        proc_status st;
        assert_int_equal(proc_status_read(pid, &st), 0);
        assert_int_equal(st.uid[PROC_ID_EFFECTIVE], 0);
        assert_int_equal(st.cap_bnd, RESTRICT_QEMU_KEEP_CAPS);
        assert_int_equal(st.cap_prm, RESTRICT_QEMU_KEEP_CAPS);
        assert_int_equal(st.cap_eff, RESTRICT_QEMU_KEEP_CAPS);
        assert_int_equal(st.cap_inh, 0);
        assert_int_equal(st.cap_amb, 0);
        assert_int_equal(st.no_new_privs, 1);

        /* New mount and IPC namespaces, nothing else. */
        static const char *const fresh[] = {"mnt", "ipc"}, *const same[] = {"uts", "net", "pid"};
        for (size_t i = 0; i < ELEMENTSOF(fresh) + ELEMENTSOF(same); i++) {
                const char *ns = i < ELEMENTSOF(fresh) ? fresh[i] : same[i - ELEMENTSOF(fresh)];
                uint64_t mine, its;
                assert_int_equal(proc_ns_ino(0, ns, &mine), 0);
                assert_int_equal(proc_ns_ino(pid, ns, &its), 0);
                if (i < ELEMENTSOF(fresh))
                        assert_int_not_equal(mine, its);
                else
                        assert_int_equal(mine, its);
        }

        /* Every mount private: no peer group ("shared:N") in its mountinfo. */
        char path[64], buf[65536];
        snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        size_t got = 0;
        ssize_t n;
        while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
                got += (size_t)n;
        close(fd);
        buf[got] = '\0';
        assert_true(got > 0);
        assert_null(strstr(buf, " shared:"));

        struct rlimit nofile;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &nofile), 0);
        assert_rlimit(pid, RLIMIT_FSIZE, 256 * 1024, 256 * 1024);
        assert_rlimit(pid, RLIMIT_CORE, 0, 0);
        assert_rlimit(pid, RLIMIT_MSGQUEUE, 0, 0);
        assert_rlimit(pid, RLIMIT_LOCKS, 0, 0);
        assert_rlimit(pid, RLIMIT_MEMLOCK, 0, 0);
        assert_rlimit(pid, RLIMIT_NOFILE, nofile.rlim_cur, nofile.rlim_max); /* inherited */

        kill_and_reap(pidfd);
        close(ready[0]);
        close(ready[1]);
}

/* A configured limit above the inherited hard limit is clamped to it, not an error. */
static int child_rlimit_clamped(void *arg)
{
        qdm_restrict r = default_restrict();
        char *argv[] = {(char *)"spawn-probe", (char *)"3", NULL};
        struct rlimit low = {4096, 4096}, rl;
        int ready[2], pidfd;
        pid_t pid;
        char c;

        (void)arg;
        if (setrlimit(RLIMIT_FSIZE, &low) < 0 || pipe2(ready, O_CLOEXEC) < 0)
                return 10;
        spawn_fd plan[] = {{ready[1], 3}};
        spawn_params p = {.path = SPAWN_PROBE_PATH,
                          .argv = argv,
                          .envp = environ,
                          .fds = plan,
                          .n_fds = 1,
                          .restrict_ = &r};
        if (spawn_process(&p, &pid, &pidfd, NULL) < 0)
                return 11;
        if (read(ready[0], &c, 1) != 1)
                return 12;
        int ok = proc_rlimit(pid, RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur == 4096 &&
                 rl.rlim_max == 4096;
        siginfo_t si;
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        spawn_reap(pidfd, &si);
        return ok ? 0 : 13;
}

static void test_rlimit_clamped(void **state)
{
        (void)state;
        REQUIRE_ROOT();
        int status = run_in_child(child_rlimit_clamped, NULL);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* A step that cannot be applied fails the start, naming the step. Not root: unshare fails. */
static int child_unprivileged_restrict(void *arg)
{
        qdm_restrict r = default_restrict();
        char *argv[] = {(char *)"spawn-probe", (char *)"0", NULL};
        pid_t pid;
        int pidfd;
        char *error = NULL;

        if (become(*(uid_t *)arg) < 0)
                return 10;
        spawn_params p = {.path = SPAWN_PROBE_PATH, .argv = argv, .restrict_ = &r};
        int k = spawn_process(&p, &pid, &pidfd, &error);
        if (k != -EPERM || !error ||
            strcmp(error, "unshare(CLONE_NEWNS|CLONE_NEWIPC): Operation not permitted") != 0) {
                fprintf(stderr, "# got %d, \"%s\"\n", k, error ? error : "(null)");
                return 11;
        }
        free(error);
        return 0;
}

static void test_restrict_failure_reported(void **state)
{
        uid_t uid;
        int lock;

        (void)state;
        REQUIRE_ROOT();
        alloc_shared_uid(&uid, &lock);
        int status = run_in_child(child_unprivileged_restrict, &uid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        close(lock);
}

static void test_prepare(void **state)
{
        restrict_plan plan;
        const char *reason = NULL;
        qdm_restrict r = default_restrict();
        char buf[128];

        (void)state;
        assert_int_equal(restrict_prepare(NULL, NULL, &plan, &reason), 0);
        assert_int_equal(plan.mode, QDM_RESTRICT_NONE);
        assert_int_equal(restrict_prepare(&r, NULL, &plan, &reason), 0);
        assert_int_equal(plan.mode, QDM_RESTRICT_QEMU);
        assert_int_equal(plan.n_rlimits, 5); /* nofile is RLIM_INFINITY: left alone */
        assert_int_equal(plan.keep_caps, RESTRICT_QEMU_KEEP_CAPS);
        assert_true(plan.cap_last >= CAP_AUDIT_READ);
        assert_int_equal(plan.unshare_flags, CLONE_NEWNS | CLONE_NEWIPC);
        assert_false(plan.new_pid_ns);

        /* Jail mode needs a jail, and never hands out root's ids or group 0. */
        r.mode = QDM_RESTRICT_JAIL;
        assert_int_equal(restrict_prepare(&r, NULL, &plan, &reason), -EINVAL);
        restrict_mount mounts[] = {{(char *)"/usr/bin/true", (char *)"/usr/bin/true", 0}};
        restrict_jail j = {.root = "/run/qdm/vm0/root",
                           .mounts = mounts,
                           .n_mounts = 1,
                           .uid = 64000,
                           .gid = 64000};
        r.unshare_net = r.unshare_pid = true;
        assert_int_equal(restrict_prepare(&r, &j, &plan, &reason), 0);
        assert_int_equal(plan.mode, QDM_RESTRICT_JAIL);
        assert_int_equal(plan.unshare_flags,
                         CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET);
        assert_true(plan.new_pid_ns);
        assert_int_equal(plan.keep_caps, 0);
        assert_ptr_equal(plan.jail, &j);
        j.uid = 0;
        assert_int_equal(restrict_prepare(&r, &j, &plan, &reason), -EINVAL);
        j.uid = 64000;
        j.groups[0] = 0;
        j.n_groups = 1;
        assert_int_equal(restrict_prepare(&r, &j, &plan, &reason), -EINVAL);
        assert_string_equal(reason, "jail mode never gives QEMU group 0");
        j.n_groups = 0;
        const char *unclean[] = {
                "usr/bin/true", "/usr/../etc/passwd", "/usr//bin", "/usr/bin/", "/", "/usr/./bin"};
        for (size_t i = 0; i < ELEMENTSOF(unclean); i++) {
                mounts[0].target = (char *)unclean[i];
                assert_int_equal(restrict_prepare(&r, &j, &plan, &reason), -EINVAL);
        }

        assert_string_equal(restrict_describe_step(NULL, RESTRICT_STEP_SETRLIMIT, RLIMIT_FSIZE, buf,
                                                   sizeof(buf)),
                            "setrlimit(RLIMIT_FSIZE)");
        assert_string_equal(restrict_describe_step(NULL, RESTRICT_STEP_CAPBSET_DROP, CAP_SYS_ADMIN,
                                                   buf, sizeof(buf)),
                            "prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN)");
        assert_string_equal(restrict_describe_step(NULL, RESTRICT_STEP_UNSHARE,
                                                   CLONE_NEWNS | CLONE_NEWIPC, buf, sizeof(buf)),
                            "unshare(CLONE_NEWNS|CLONE_NEWIPC)");
        mounts[0].target = (char *)"/usr/bin/true";
        assert_string_equal(
                restrict_describe_step(&j, RESTRICT_STEP_JAIL_BIND, 0, buf, sizeof(buf)),
                "jail: bind-mounting /usr/bin/true on /usr/bin/true");
        assert_string_equal(
                restrict_describe_step(&j, RESTRICT_STEP_JAIL_PIVOT, 0, buf, sizeof(buf)),
                "jail: pivot_root into /run/qdm/vm0/root");
}

/* ---- the empty root ------------------------------------------------------------------------ */

static int child_make_root_unprivileged(void *arg)
{
        if (become(*(uid_t *)arg) < 0)
                return 10;
        return restrict_make_empty_root("/tmp/qdm-never-created") == -EPERM ? 0 : 11;
}

static void test_make_empty_root(void **state)
{
        char *dir, *root, *file, *link;
        struct stat st;

        (void)state;
        REQUIRE_ROOT();
        dir = make_tmpdir();
        /* A setgid parent with a foreign group and no umask: the new directory would inherit
         * the group and the setgid bit if restrict_make_empty_root trusted mkdir. */
        assert_int_equal(chown(dir, 0, 12345), 0);
        assert_int_equal(chmod(dir, 02777), 0);
        mode_t old_umask = umask(0);
        assert_true(asprintf(&root, "%s/root", dir) > 0);
        assert_true(asprintf(&file, "%s/root/file", dir) > 0);
        assert_true(asprintf(&link, "%s/link", dir) > 0);

        assert_int_equal(restrict_make_empty_root(root), 0);
        assert_int_equal(lstat(root, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0);
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_gid, 0);
        /* Again: an existing empty root-owned dir is accepted. */
        assert_int_equal(restrict_make_empty_root(root), 0);

        int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(restrict_make_empty_root(root), -ENOTEMPTY);
        assert_int_equal(unlink(file), 0);

        assert_int_equal(symlink(root, link), 0);
        assert_int_equal(restrict_make_empty_root(link), -ENOTDIR);
        assert_int_equal(unlink(link), 0);

        assert_int_equal(chown(root, 12345, 0), 0);
        assert_int_equal(restrict_make_empty_root(root), -EEXIST);
        assert_int_equal(rmdir(root), 0);

        fd = open(root, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(restrict_make_empty_root(root), -ENOTDIR);
        assert_int_equal(unlink(root), 0);

        assert_int_equal(restrict_make_empty_root(NULL), -EINVAL);
        assert_int_equal(restrict_make_empty_root(""), -EINVAL);

        uid_t uid;
        int lock;
        alloc_shared_uid(&uid, &lock);
        int status = run_in_child(child_make_root_unprivileged, &uid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        close(lock);

        umask(old_umask);
        free(root);
        free(file);
        free(link);
        remove_tmpdir(dir);
}

/* ---- uid allocation ------------------------------------------------------------------------ */

typedef struct alloc_args {
        const char *dir;
        uid_t min, max;
        bool share;
        int expect_r;
        uid_t expect_uid;
} alloc_args;

static int child_alloc(void *arg)
{
        const alloc_args *a = arg;
        uid_t uid = 0;
        int lock = -1;
        int r = uid_alloc(a->dir, a->min, a->max, a->share, &uid, &lock);
        if (r != a->expect_r) {
                fprintf(stderr, "# uid_alloc in child: %d, expected %d\n", r, a->expect_r);
                return 10;
        }
        if (r == 0 && uid != a->expect_uid) {
                fprintf(stderr, "# uid_alloc in child: uid %u\n", (unsigned)uid);
                return 11;
        }
        return 0;
}

static void assert_child_alloc(const alloc_args *a)
{
        int status = run_in_child(child_alloc, (void *)a);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_uid_alloc(void **state)
{
        char *dir;
        uid_t a, b, c;
        int la, lb, lc;

        (void)state;
        dir = make_tmpdir();

        /* Two allocations: two different uids, in range, neither an account. */
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, false, &a, &la), 0);
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, false, &b, &lb), 0);
        assert_int_not_equal(a, b);
        assert_true(a >= UID_MIN && a <= UID_MAX && b >= UID_MIN && b <= UID_MAX);
        assert_null(getpwuid(a));
        assert_null(getpwuid(b));
        assert_true(fcntl(la, F_GETFD) & FD_CLOEXEC);

        /* Held: not given again, not even to another process. */
        assert_int_equal(uid_alloc(dir, a, a, false, &c, &lc), -ENOSPC);
        assert_child_alloc(&(alloc_args){dir, a, a, false, -ENOSPC, 0});
        assert_child_alloc(&(alloc_args){dir, a, a, true, -ENOSPC, 0});
        /* Released by closing the fd: available again, also to another process. */
        close(la);
        assert_child_alloc(&(alloc_args){dir, a, a, false, 0, a});
        assert_int_equal(uid_alloc(dir, a, a, false, &c, &lc), 0);
        assert_int_equal(c, a);
        close(lc);
        close(lb);

        /* 0 is never given; a range of accounts only has nothing to give. */
        assert_int_equal(uid_alloc(dir, 0, 0, false, &c, &lc), -ENOSPC);
        if (getpwuid(1)) {
                assert_int_equal(uid_alloc(dir, 0, 1, false, &c, &lc), -ENOSPC);
                assert_int_equal(uid_alloc(dir, 0, 1, true, &c, &lc), -ENOSPC);
        } else {
                fprintf(stderr, "# no account with uid 1 here: range 0..1 not tested\n");
        }
        /* A range starting at 0 skips it. */
        assert_int_equal(uid_alloc(dir, 0, UID_MAX, false, &c, &lc), 0);
        assert_int_not_equal(c, 0);
        assert_null(getpwuid(c));
        close(lc);
        assert_int_equal(uid_alloc(dir, (uid_t)-1, (uid_t)-1, false, &c, &lc), -ENOSPC);

        /* A number that is a group's gid (but no account's uid) is not given either: QEMU
         * runs with gid == uid. */
        gid_t g = 0;
        for (gid_t i = 1; i < 65534 && !g; i++)
                if (getgrgid(i) && !getpwuid(i))
                        g = i;
        if (g)
                assert_int_equal(uid_alloc(dir, g, g, false, &c, &lc), -ENOSPC);
        else
                fprintf(stderr, "# no group without a same-numbered account: not tested\n");

        assert_int_equal(uid_alloc(NULL, 1, 2, false, &c, &lc), -EINVAL);
        assert_int_equal(uid_alloc(dir, 5, 4, false, &c, &lc), -EINVAL);
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, false, NULL, &lc), -EINVAL);
        assert_int_equal(uid_alloc("/nonexistent-qdm", UID_MIN, UID_MAX, false, &c, &lc), -ENOENT);
        remove_tmpdir(dir);
}

static void test_uid_alloc_share(void **state)
{
        char *dir;
        uid_t a, b, c;
        int la, lb, lc;

        (void)state;
        dir = make_tmpdir();
        /* Sharers converge on one uid... */
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, true, &a, &la), 0);
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, true, &b, &lb), 0);
        assert_int_equal(a, b);
        assert_child_alloc(&(alloc_args){dir, UID_MIN, UID_MAX, true, 0, a});
        /* ...which an exclusive allocation does not get. */
        assert_int_equal(uid_alloc(dir, a, a, false, &c, &lc), -ENOSPC);
        assert_int_equal(uid_alloc(dir, UID_MIN, UID_MAX, false, &c, &lc), 0);
        assert_int_not_equal(c, a);
        /* And a sharer does not join a uid held exclusively. */
        assert_int_equal(uid_alloc(dir, c, c, true, &b, &lb), -ENOSPC);
        close(lc);
        close(la);
        close(lb);
        remove_tmpdir(dir);
}

/* A uid some process has (not through qdm) is not given out. */
static void test_uid_alloc_skips_live_process(void **state)
{
        const char *dir = test_shared_uid_lock_dir();
        uid_t u, c;
        int lu, lc;

        (void)state;
        REQUIRE_ROOT();
        alloc_shared_uid(&u, &lu);
        /* Released before forking: a forked child would hold the flock too. */
        close(lu);
        pid_t pid = start_stranger(u, NULL);
        /* The lock is free, but a process of u exists. */
        assert_int_equal(uid_alloc(dir, u, u, false, &c, &lc), -ENOSPC);
        assert_int_equal(uid_alloc(dir, u, u, true, &c, &lc), -ENOSPC);
        stop_stranger(pid);
        assert_int_equal(uid_alloc(dir, u, u, false, &c, &lc), 0);
        close(lc);
}

/* A uid released with the clean mark is handed out again without the /proc scan, once: the
 * mark is consumed, so a holder that dies without marking leaves the uid to be scanned. */
static void test_uid_alloc_clean_mark(void **state)
{
        const char *dir = test_shared_uid_lock_dir();
        uid_t u, c;
        int lu, lc;
        char path[4096], buf[128];

        (void)state;
        REQUIRE_ROOT();
        alloc_shared_uid(&u, &lu);
        assert_int_equal(uid_mark_clean(lu), 0);
        snprintf(path, sizeof(path), "%s/uid-%u.lock", dir, (unsigned)u);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_true(strncmp(buf, "clean ", 6) == 0);
        close(lu);

        /* What the mark trusts: nothing outside qdm starts a process of the uid meanwhile. Such a
         * process is not looked for while the mark stands... */
        pid_t pid = start_stranger(u, NULL);
        assert_int_equal(uid_alloc(dir, u, u, false, &c, &lc), 0);
        assert_int_equal(c, u);
        /* ...and the allocation consumed the mark: released without one, the uid is scanned
         * again and the process found. */
        close(lc);
        assert_int_equal(uid_alloc(dir, u, u, false, &c, &lc), -ENOSPC);
        /* A mark from another boot is no mark. */
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        const char *other = "clean 00000000-0000-0000-0000-000000000000\n";
        assert_int_equal(write(fd, other, strlen(other)), (ssize_t)strlen(other));
        close(fd);
        assert_int_equal(uid_alloc(dir, u, u, false, &c, &lc), -ENOSPC);
        stop_stranger(pid);
}

/* ---- killing every process of a uid -------------------------------------------------------- */

static size_t count_live(uid_t uid)
{
        pid_t *pids = NULL;
        size_t n = 0, live = 0;

        assert_int_equal(proc_list_pids(&pids, &n), 0);
        for (size_t i = 0; i < n; i++) {
                proc_status st;
                if (proc_status_read(pids[i], &st) < 0 || st.state == 'Z' || st.state == 'X')
                        continue;
                if (st.uid[PROC_ID_REAL] == uid || st.uid[PROC_ID_EFFECTIVE] == uid ||
                    st.uid[PROC_ID_SAVED] == uid)
                        live++;
        }
        free(pids);
        return live;
}

static void test_uid_kill_all(void **state)
{
        uid_t u;
        int lock, ready[2];
        pid_t pids[3];

        (void)state;
        REQUIRE_ROOT();
        alloc_shared_uid(&u, &lock);
        assert_int_equal(uid_kill_all(u), 0); /* nothing to kill */

        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] != 0)
                        continue;
                if (i < 2) {
                        /* Two `sleep 1000` as u, with a recognisable FSIZE limit. */
                        struct rlimit rl = {12345 * 512, 12345 * 512};
                        char fdarg[16];
                        snprintf(fdarg, sizeof(fdarg), "%d", ready[1]);
                        if (setrlimit(RLIMIT_FSIZE, &rl) < 0 || become(u) < 0 ||
                            fcntl(ready[1], F_SETFD, 0) < 0)
                                _exit(10);
                        execl(SPAWN_PROBE_PATH, "spawn-probe", fdarg, (char *)NULL);
                        _exit(11);
                }
                /* One with u as effective uid only (real and saved 0): kill(-1) as u cannot
                 * reach it; uid_kill_all must find it in /proc. */
                if (syscall(SYS_setresuid, 0, u, 0) < 0 || write(ready[1], "r", 1) != 1)
                        _exit(12);
                for (;;)
                        pause();
        }
        for (size_t i = 0; i < ELEMENTSOF(pids); i++)
                wait_ready(ready[0]);
        assert_int_equal(count_live(u), 3);

        /* prlimit() of another uid needs CAP_SYS_RESOURCE; proc_rlimit falls back to
         * /proc/PID/limits where it is missing. Either way the value is the same. */
        struct rlimit rl;
        assert_int_equal(proc_rlimit(pids[0], RLIMIT_FSIZE, &rl), 0);
        assert_int_equal(rl.rlim_cur, 12345 * 512);
        assert_int_equal(rl.rlim_max, 12345 * 512);
        assert_int_equal(proc_rlimit(pids[0], RLIMIT_NICE, &rl), 0);

        assert_int_equal(uid_kill_all(u), 0);
        assert_int_equal(count_live(u), 0);
        for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                assert_true(WIFSIGNALED(status));
                assert_int_equal(WTERMSIG(status), SIGKILL);
        }
        close(ready[0]);
        close(ready[1]);
        close(lock);
}

/* uid 0 is refused. Run unprivileged in a child, so that even a broken guard could not kill
 * anything: the helper would fail to become root. */
static int child_kill_root(void *arg)
{
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        if (become(*(uid_t *)arg) < 0)
                return 10;
        /* Debug builds assert (SIGABRT); NDEBUG builds return -EINVAL. */
        return uid_kill_all(0) == -EINVAL ? 0 : 11;
}

static void test_uid_kill_all_refuses_root(void **state)
{
        uid_t u;
        int lock;

        (void)state;
        REQUIRE_ROOT();
        alloc_shared_uid(&u, &lock);
        int status = run_in_child(child_kill_root, &u);
        if (WIFSIGNALED(status))
                assert_int_equal(WTERMSIG(status), SIGABRT);
        else
                assert_int_equal(WEXITSTATUS(status), 0);
        close(lock);
}

/* ---- /proc readers --------------------------------------------------------------------------- */

static void test_proc_self(void **state)
{
        proc_status st;
        struct stat s;
        uint64_t ino;
        struct rlimit rl, mine;
        char *root = NULL;

        (void)state;
        assert_int_equal(proc_status_read(0, &st), 0);
        assert_int_equal(st.uid[PROC_ID_REAL], getuid());
        assert_int_equal(st.uid[PROC_ID_EFFECTIVE], geteuid());
        assert_int_equal(st.gid[PROC_ID_REAL], getgid());
        assert_int_equal(st.ppid, getppid());
        assert_true(st.state == 'R');
        proc_status st2;
        assert_int_equal(proc_status_read(getpid(), &st2), 0);
        assert_int_equal(st2.cap_bnd, st.cap_bnd);
        assert_int_equal(proc_status_read(INT32_MAX - 1, &st), -ESRCH);

        assert_int_equal(proc_ns_ino(0, "mnt", &ino), 0);
        assert_int_equal(stat("/proc/self/ns/mnt", &s), 0);
        assert_int_equal(ino, s.st_ino);
        assert_int_equal(proc_ns_ino(0, "bogus", &ino), -ENOENT);
        assert_int_equal(proc_ns_ino(0, "../fd", &ino), -EINVAL);
        assert_int_equal(proc_ns_ino(INT32_MAX - 1, "mnt", &ino), -ESRCH);
        assert_int_equal(proc_ns_ino(getpid(), "bogus", &ino), -ENOENT);
        assert_int_equal(proc_ns_ino(getpid(), "ipc", &ino), 0);

        assert_int_equal(proc_root(0, &root), 0);
        assert_string_equal(root, "/");
        free(root);
        assert_int_equal(proc_root(INT32_MAX - 1, &root), -ESRCH);

        assert_int_equal(proc_rlimit(0, RLIMIT_NOFILE, &rl), 0);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &mine), 0);
        assert_int_equal(rl.rlim_cur, mine.rlim_cur);
        assert_int_equal(rl.rlim_max, mine.rlim_max);
        assert_int_equal(proc_rlimit(0, 99, &rl), -EINVAL);

        /* proc_list_fds(0) does not list its own directory fd, and matches the count. */
        proc_fd *fds = NULL;
        size_t n = 0;
        assert_int_equal(proc_list_fds(0, &fds, &n), 0);
        assert_int_equal((int)n, proc_count_fds());
        proc_fds_free(fds, n);
        assert_int_equal(proc_list_fds(getpid(), &fds, &n), 0);
        assert_int_equal((int)n, proc_count_fds());
        for (size_t i = 1; i < n; i++)
                assert_true(fds[i - 1].fd < fds[i].fd);
        proc_fds_free(fds, n);

        pid_t pgrp, sid;
        assert_int_equal(proc_stat_session(0, &pgrp, &sid), 0);
        assert_int_equal(pgrp, getpgrp());
        assert_int_equal(sid, getsid(0));
}

/* proc_ids_read() agrees with the full parser on every process of the host, and a process
 * that names itself like a status line cannot pass for root. */
static void test_proc_ids(void **state)
{
        pid_t *pids = NULL;
        size_t n = 0, compared = 0;
        uid_t u;
        int lock;
        proc_ids ids;

        (void)state;
        assert_int_equal(proc_list_pids(&pids, &n), 0);
        for (size_t i = 0; i < n; i++) {
                proc_status st;
                if (proc_status_read(pids[i], &st) < 0 || proc_ids_read(pids[i], &ids) < 0)
                        continue; /* gone in between */
                for (int k = 0; k < _PROC_ID_MAX; k++) {
                        assert_int_equal(ids.uid[k], st.uid[k]);
                        assert_int_equal(ids.gid[k], st.gid[k]);
                }
                compared++;
        }
        free(pids);
        assert_true(compared > 0);
        assert_int_equal(proc_ids_read(INT32_MAX - 1, &ids), -ESRCH);

        REQUIRE_ROOT();
        alloc_shared_uid(&u, &lock);
        close(lock);
        pid_t pid = start_stranger(u, "\nUid:\t0\t0\t0\t0\nGid:\t0");
        assert_int_equal(proc_ids_read(pid, &ids), 0);
        for (int k = 0; k < _PROC_ID_MAX; k++) {
                assert_int_equal(ids.uid[k], u);
                assert_int_equal(ids.gid[k], u);
        }
        stop_stranger(pid);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                leak_checked_test(test_prepare),
                leak_checked_test(test_restricted_probe),
                leak_checked_test(test_rlimit_clamped),
                leak_checked_test(test_restrict_failure_reported),
                leak_checked_test(test_make_empty_root),
                leak_checked_test(test_uid_alloc),
                leak_checked_test(test_uid_alloc_share),
                leak_checked_test(test_uid_alloc_skips_live_process),
                leak_checked_test(test_uid_alloc_clean_mark),
                leak_checked_test(test_uid_kill_all),
                leak_checked_test(test_uid_kill_all_refuses_root),
                leak_checked_test(test_proc_self),
                leak_checked_test(test_proc_ids),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
