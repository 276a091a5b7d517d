/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork/exec with an explicit fd plan (see spawn.h). The technique is libuv's: signals blocked
 * around fork, every fd CLOEXEC, the exec errno reported through a CLOEXEC pipe whose EOF means
 * "exec'd".
 *
 * Everything between fork() and execve() (child_main and what it calls) must be
 * async-signal-safe: the caller may be multi-threaded and another thread may have held the
 * malloc or stdio lock at fork time. So the parent prepares everything (fd arrays, the
 * restriction plan, the environment) and the child only makes syscalls on it.
 *
 * Why fork() and not clone3(CLONE_PIDFD) for modes "none" and "qemu": glibc's fork() leaves
 * the child in a consistent state (thread list, locks, sanitizer runtimes), which a raw clone3
 * does not. The pidfd is opened right after fork; that is race-free as long as nobody but us
 * reaps our children (see -ECHILD in spawn.h).
 *
 * Jail mode uses clone3(CLONE_PIDFD [| CLONE_NEWPID]) instead, because a PID namespace can
 * only be entered by a new process: unshare(CLONE_NEWPID) in the child would put only the
 * child's own children in it, and a second fork there would make the pidfd, the pid and the
 * exit status we watch (R6) those of an intermediate process instead of QEMU's. Created by
 * clone3, the child is itself the namespace's init and becomes QEMU at exec: the pidfd is
 * QEMU's, from the same system call (no pidfd_open race), and the pid is QEMU's as the host
 * sees it. The cost is what fork() would have fixed up: the child must not rely on glibc's
 * per-thread state (cached tid, atfork handlers, locks). It does not: everything between
 * clone and exec is already restricted to raw, async-signal-safe system calls (as systemd's
 * raw_clone() users are). QEMU as PID 1 of its namespace needs nothing more: it spawns no
 * children (-sandbox spawn=deny) to reap, and signals from the host (SIGKILL for destroy)
 * reach it; when it dies, the namespace dies with it.
 */
#include "spawn.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "restrict.h"
#include "util.h"

bool spawn_test_disable_close_range = false;

typedef enum spawn_step {
        SPAWN_STEP_SIGNALS, /* detail: signal number */
        SPAWN_STEP_SETSID,
        SPAWN_STEP_MOVE_ERRFD, /* moving the error pipe above the plan's fds */
        SPAWN_STEP_MOVE_FD,    /* detail: parent fd */
        SPAWN_STEP_DUP_FD,     /* detail: child fd */
        SPAWN_STEP_CLOSE_FDS,
        SPAWN_STEP_RESTRICT, /* sub: restrict_step, detail: its detail */
        SPAWN_STEP_CHDIR,
        SPAWN_STEP_UNBLOCK,
        SPAWN_STEP_EXEC,
} spawn_step;

/* What a failed child writes to the error pipe: one write, far below PIPE_BUF, so atomic. */
typedef struct child_error {
        int32_t step;
        int32_t sub;
        int32_t detail;
        int32_t error; /* positive errno */
} child_error;

typedef struct child_ctx {
        const spawn_params *p;
        char *const *envp;
        int err_fd;
        size_t n;        /* plan entries, /dev/null included */
        const int *src;  /* parent fds */
        const int *dst;  /* child fds */
        int *tmp;        /* scratch: src copies above max_target */
        const int *keep; /* dst sorted ascending */
        int max_target;
        restrict_plan plan;
} child_ctx;

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

/* The kernel's struct clone_args, version 0 (64 bytes); <linux/sched.h> clashes with glibc's. */
typedef struct spawn_clone_args {
        uint64_t flags;
        uint64_t pidfd;
        uint64_t child_tid;
        uint64_t parent_tid;
        uint64_t exit_signal;
        uint64_t stack;
        uint64_t stack_size;
        uint64_t tls;
} spawn_clone_args;

/* fork() plus the child's pidfd, optionally into a new PID namespace (see the top of this file).
 * Returns the child's pid in the parent (and *ret_pidfd), 0 in the child, -1 with errno. */
static pid_t clone_pidfd(bool new_pid_ns, int *ret_pidfd)
{
        int pidfd = -1;
        spawn_clone_args args = {
                .flags = CLONE_PIDFD | (new_pid_ns ? CLONE_NEWPID : 0),
                .pidfd = (uint64_t)(uintptr_t)&pidfd,
                .exit_signal = SIGCHLD,
        };
        long pid = syscall(SYS_clone3, &args, sizeof(args));
#if defined(__x86_64__) || defined(__aarch64__)
        /* Some container seccomp profiles answer ENOSYS for clone3 (to steer glibc back to
         * clone): clone() has had CLONE_PIDFD since 5.2, the pidfd landing in parent_tid. */
        if (pid < 0 && errno == ENOSYS)
                pid = syscall(SYS_clone, (unsigned long)(args.flags | SIGCHLD), NULL, &pidfd, NULL,
                              0);
#endif
        if (pid > 0)
                *ret_pidfd = pidfd;
        return (pid_t)pid;
}

/* ---- between fork and exec: async-signal-safe only ------------------------------------- */

static _Noreturn void child_fail(int fd, int step, int sub, int detail, int error)
{
        child_error e = {.step = step, .sub = sub, .detail = detail, .error = error};

        /* Nothing to do if this fails: the parent then sees EOF without a record and the
         * child's exit status 127 via the pidfd. */
        ssize_t n = write(fd, &e, sizeof(e));
        (void)n;
        _exit(127);
}

static bool is_kept(const child_ctx *c, int fd, int err_fd)
{
        if (fd == err_fd)
                return true;
        for (size_t i = 0; i < c->n; i++)
                if (c->keep[i] == fd)
                        return true;
        return false;
}

/* Parse a decimal fd name from /proc/self/fd without the C library's locale machinery. */
static int parse_fd_name(const char *s)
{
        long v = 0;

        if (!*s)
                return -1;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -1;
                v = v * 10 + (*s - '0');
                if (v > INT_MAX)
                        return -1;
        }
        return (int)v;
}

struct linux_dirent64 {
        uint64_t d_ino;
        int64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
};

/* Fallback for kernels without close_range(): walk /proc/self/fd with raw getdents64 (no
 * opendir: it mallocs). Closing entries while walking is fine: the directory is generated
 * from the fd table at each call, positioned by fd number. */
static int close_others_slow(const child_ctx *c, int err_fd)
{
        int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;

        for (;;) {
                char buf[4096] __attribute__((aligned(8)));
                long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
                if (n < 0) {
                        int e = errno;
                        close(dfd);
                        return -e;
                }
                if (n == 0)
                        break;
                for (long off = 0; off < n;) {
                        struct linux_dirent64 *de = (struct linux_dirent64 *)(buf + off);
                        int fd = parse_fd_name(de->d_name);
                        off += de->d_reclen;
                        if (fd < 0 || fd == dfd || is_kept(c, fd, err_fd))
                                continue;
                        close(fd);
                }
        }
        close(dfd);
        return 0;
}

/* Close every fd but the plan's targets and the error pipe, in gaps between them. */
static int close_others(const child_ctx *c, int err_fd)
{
        unsigned next = 0;

        if (spawn_test_disable_close_range)
                return close_others_slow(c, err_fd);

        /* err_fd is above every target, so it closes the list. */
        for (size_t i = 0; i <= c->n; i++) {
                unsigned keep = i < c->n ? (unsigned)c->keep[i] : (unsigned)err_fd;
                if (keep > next && close_range(next, keep - 1, 0) < 0)
                        return errno == ENOSYS ? close_others_slow(c, err_fd) : -errno;
                next = keep + 1;
        }
        if (close_range(next, ~0U, 0) < 0)
                return errno == ENOSYS ? close_others_slow(c, err_fd) : -errno;
        return 0;
}

static _Noreturn void child_main(const child_ctx *c)
{
        const spawn_params *p = c->p;
        int err_fd = c->err_fd, r, sub = 0, detail = 0;

        /* Handlers of the parent must never run here, and the program must start with
         * default dispositions (an ignored SIGPIPE would survive exec). Signals are blocked
         * until right before exec, so nothing is delivered on the way. EINVAL: SIGKILL,
         * SIGSTOP and the C library's internal signals, which cannot be changed. */
        struct sigaction sa = {.sa_handler = SIG_DFL};
        sigemptyset(&sa.sa_mask);
        for (int sig = 1; sig < NSIG; sig++)
                if (sigaction(sig, &sa, NULL) < 0 && errno != EINVAL)
                        child_fail(err_fd, SPAWN_STEP_SIGNALS, 0, sig, errno);

        if (p->new_session && setsid() < 0)
                child_fail(err_fd, SPAWN_STEP_SETSID, 0, 0, errno);

        /* The fd plan. First move the error pipe and a copy of every source above the highest
         * target: then no dup2() onto a target can clobber a source still to be used, however
         * the plan's numbers overlap (5 -> 3 while 3 -> 5, chains, one source for several
         * targets). dup2() clears FD_CLOEXEC on the target; the copies keep it. */
        if (err_fd <= c->max_target) {
                int fd = fcntl(err_fd, F_DUPFD_CLOEXEC, c->max_target + 1);
                if (fd < 0)
                        child_fail(err_fd, SPAWN_STEP_MOVE_ERRFD, 0, 0, errno);
                err_fd = fd;
        }
        for (size_t i = 0; i < c->n; i++) {
                c->tmp[i] = fcntl(c->src[i], F_DUPFD_CLOEXEC, c->max_target + 1);
                if (c->tmp[i] < 0)
                        child_fail(err_fd, SPAWN_STEP_MOVE_FD, 0, c->src[i], errno);
        }
        for (size_t i = 0; i < c->n; i++)
                if (dup2(c->tmp[i], c->dst[i]) < 0)
                        child_fail(err_fd, SPAWN_STEP_DUP_FD, 0, c->dst[i], errno);
        r = close_others(c, err_fd);
        if (r < 0)
                child_fail(err_fd, SPAWN_STEP_CLOSE_FDS, 0, 0, -r);

        r = restrict_apply_child(&c->plan, &sub, &detail);
        if (r < 0)
                child_fail(err_fd, SPAWN_STEP_RESTRICT, sub, detail, -r);

        if (p->cwd && chdir(p->cwd) < 0)
                child_fail(err_fd, SPAWN_STEP_CHDIR, 0, 0, errno);

        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                child_fail(err_fd, SPAWN_STEP_UNBLOCK, 0, 0, errno);

        execve(p->path, p->argv, c->envp);
        child_fail(err_fd, SPAWN_STEP_EXEC, 0, 0, errno);
}

/* ---- the parent ---------------------------------------------------------------------------- */

static const char *errstr(int e, char *buf, size_t size)
{
        return strerror_r(e, buf, size);
}

static char *describe_child_error(const spawn_params *p, const child_error *e)
{
        char eb[128], what[PATH_MAX + 256];
        const char *es = errstr(e->error, eb, sizeof(eb));
        char *s = NULL;
        int k = -1;

        switch ((spawn_step)e->step) {
        case SPAWN_STEP_SIGNALS: {
                const char *name = sigabbrev_np(e->detail);
                k = asprintf(&s, "sigaction(%s%s): %s", name ? "SIG" : "", name ? name : "?", es);
                break;
        }
        case SPAWN_STEP_SETSID:
                k = asprintf(&s, "setsid(): %s", es);
                break;
        case SPAWN_STEP_MOVE_ERRFD:
                k = asprintf(&s, "moving the error pipe above the fd plan: %s", es);
                break;
        case SPAWN_STEP_MOVE_FD:
                k = asprintf(&s, "fcntl(%d, F_DUPFD_CLOEXEC): %s", e->detail, es);
                break;
        case SPAWN_STEP_DUP_FD:
                k = asprintf(&s, "dup2() to child fd %d: %s", e->detail, es);
                break;
        case SPAWN_STEP_CLOSE_FDS:
                k = asprintf(&s, "closing the fds not in the plan: %s", es);
                break;
        case SPAWN_STEP_RESTRICT:
                k = asprintf(&s, "%s: %s",
                             restrict_describe_step(p->jail, e->sub, e->detail, what, sizeof(what)),
                             es);
                break;
        case SPAWN_STEP_CHDIR:
                k = asprintf(&s, "chdir %s: %s", p->cwd, es);
                break;
        case SPAWN_STEP_UNBLOCK:
                k = asprintf(&s, "sigprocmask(): %s", es);
                break;
        case SPAWN_STEP_EXEC:
                k = asprintf(&s, "exec %s: %s", p->path, es);
                break;
        default:
                k = asprintf(&s, "child step %d: %s", (int)e->step, es);
                break;
        }
        return k < 0 ? NULL : s;
}

_printf_(2, 3) static void set_error(char **ret_error, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        if (!ret_error)
                return;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        *ret_error = s;
}

static int int_compare(const void *a, const void *b)
{
        int x = *(const int *)a, y = *(const int *)b;
        return (x > y) - (x < y);
}

/* Wait for the child's record or EOF. 1: a complete record, 0: EOF (exec'd), <0: error. */
static int read_child_error(int fd, child_error *ret)
{
        size_t got = 0;

        while (got < sizeof(*ret)) {
                ssize_t n = read(fd, (char *)ret + got, sizeof(*ret) - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        return got == 0 ? 0 : -EIO;
                got += (size_t)n;
        }
        return 1;
}

static void reap_quietly(int pidfd)
{
        siginfo_t si;
        (void)spawn_reap(pidfd, &si);
}

int spawn_process(const spawn_params *p, pid_t *ret_pid, int *ret_pidfd, char **ret_error)
{
        static char *const empty_env[] = {NULL};
        _cleanup_free_ int *arrays = NULL;
        _cleanup_close_ int devnull = -1, pidfd = -1;
        int pipefd[2] = {-1, -1};
        const char *reason = NULL;
        char eb[128];
        child_ctx c = {.p = p};
        bool maps_stdin = false;
        sigset_t all, saved;
        int r;

        assert_return(p && p->path && p->argv && p->argv[0], -EINVAL);
        assert_return(p->n_fds == 0 || p->fds, -EINVAL);
        assert_return(p->n_fds < 4096, -EINVAL);
        assert_return(ret_pid && ret_pidfd, -EINVAL);

        for (size_t i = 0; i < p->n_fds; i++) {
                const spawn_fd *f = &p->fds[i];
                if (f->parent_fd < 0 || f->child_fd < 0 || f->child_fd == INT_MAX) {
                        set_error(ret_error, "fd plan: invalid entry %d -> %d", f->parent_fd,
                                  f->child_fd);
                        return -EINVAL;
                }
                if (fcntl(f->parent_fd, F_GETFD) < 0) {
                        set_error(ret_error, "fd plan: parent fd %d is not open", f->parent_fd);
                        return -EBADF;
                }
                for (size_t j = 0; j < i; j++)
                        if (p->fds[j].child_fd == f->child_fd) {
                                set_error(ret_error, "fd plan: child fd %d given twice",
                                          f->child_fd);
                                return -EINVAL;
                        }
                if (f->child_fd == 0)
                        maps_stdin = true;
        }

        r = restrict_prepare(p->restrict_, p->jail, &c.plan, &reason);
        if (r < 0) {
                set_error(ret_error, "%s", reason ? reason : errstr(-r, eb, sizeof(eb)));
                return r;
        }

        /* Arrays for the child, allocated now: it must not malloc. */
        c.n = p->n_fds + (maps_stdin ? 0 : 1);
        arrays = calloc(c.n * 4, sizeof(int));
        if (!arrays) {
                set_error(ret_error, "out of memory");
                return -ENOMEM;
        }
        int *src = arrays, *dst = arrays + c.n, *keep = arrays + 3 * c.n;
        c.tmp = arrays + 2 * c.n;
        for (size_t i = 0; i < p->n_fds; i++) {
                src[i] = p->fds[i].parent_fd;
                dst[i] = p->fds[i].child_fd;
        }
        if (!maps_stdin) {
                devnull = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (devnull < 0) {
                        r = negative_errno();
                        set_error(ret_error, "open /dev/null: %s", errstr(-r, eb, sizeof(eb)));
                        return r;
                }
                src[c.n - 1] = devnull;
                dst[c.n - 1] = 0;
        }
        memcpy(keep, dst, c.n * sizeof(int));
        qsort(keep, c.n, sizeof(int), int_compare);
        c.src = src;
        c.dst = dst;
        c.keep = keep;
        c.max_target = keep[c.n - 1];
        c.envp = p->envp ? p->envp : empty_env;

        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                r = negative_errno();
                set_error(ret_error, "pipe2: %s", errstr(-r, eb, sizeof(eb)));
                return r;
        }
        c.err_fd = pipefd[1];

        sigfillset(&all);
        r = pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r != 0) {
                safe_close(pipefd[0]);
                safe_close(pipefd[1]);
                set_error(ret_error, "pthread_sigmask: %s", errstr(r, eb, sizeof(eb)));
                return -r;
        }
        bool jailed = c.plan.mode == QDM_RESTRICT_JAIL;
        pid_t pid = jailed ? clone_pidfd(c.plan.new_pid_ns, &pidfd) : fork();
        if (pid == 0)
                child_main(&c);
        int fork_errno = errno;
        if (pid > 0 && !jailed) {
                pidfd = pidfd_open(pid, 0);
                fork_errno = errno;
        }
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        safe_close(pipefd[1]);

        if (pid < 0) {
                safe_close(pipefd[0]);
                set_error(ret_error, "%s: %s",
                          !jailed             ? "fork"
                          : c.plan.new_pid_ns ? "clone3(CLONE_PIDFD|CLONE_NEWPID)"
                                              : "clone3(CLONE_PIDFD)",
                          errstr(fork_errno, eb, sizeof(eb)));
                return -fork_errno;
        }
        if (pidfd < 0) {
                /* ESRCH: someone else reaped our child, and its pid may already be reused:
                 * do not touch it. Otherwise it is still ours to kill and reap. */
                if (fork_errno != ESRCH) {
                        int status;
                        kill(pid, SIGKILL);
                        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                                ;
                }
                safe_close(pipefd[0]);
                if (fork_errno == ESRCH) {
                        set_error(ret_error, "the child was reaped by someone else (is SIGCHLD "
                                             "ignored, or reaped with waitpid(-1)?)");
                        return -ECHILD;
                }
                set_error(ret_error, "pidfd_open: %s", errstr(fork_errno, eb, sizeof(eb)));
                return -fork_errno;
        }

        child_error e;
        r = read_child_error(pipefd[0], &e);
        safe_close(pipefd[0]);
        if (r == 0) {
                *ret_pid = pid;
                *ret_pidfd = TAKE_FD(pidfd);
                return 0;
        }
        reap_quietly(pidfd);
        if (r < 0) {
                set_error(ret_error, "reading the child's error pipe: %s",
                          errstr(-r, eb, sizeof(eb)));
                return r;
        }
        if (ret_error)
                *ret_error = describe_child_error(p, &e);
        return e.error > 0 ? -e.error : -EIO;
}

int spawn_reap(int pidfd, siginfo_t *ret)
{
        siginfo_t si = {0};

        assert_return(pidfd >= 0, -EBADF);
        assert_return(ret, -EINVAL);

        while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0)
                if (errno != EINTR)
                        return negative_errno();
        *ret = si;
        return 0;
}

char *spawn_describe_exit(const siginfo_t *si)
{
        const char *name;
        char *s = NULL;
        int k;

        if (!si)
                return NULL;
        switch (si->si_code) {
        case CLD_EXITED:
                k = asprintf(&s, "exited with status %d", si->si_status);
                break;
        case CLD_KILLED:
        case CLD_DUMPED:
                name = sigabbrev_np(si->si_status);
                if (name)
                        k = asprintf(&s, "killed by signal %d (SIG%s)%s", si->si_status, name,
                                     si->si_code == CLD_DUMPED ? ", core dumped" : "");
                else
                        k = asprintf(&s, "killed by signal %d%s", si->si_status,
                                     si->si_code == CLD_DUMPED ? ", core dumped" : "");
                break;
        case CLD_STOPPED:
        case CLD_TRAPPED:
                k = asprintf(&s, "stopped by signal %d", si->si_status);
                break;
        case CLD_CONTINUED:
                k = asprintf(&s, "continued");
                break;
        default:
                k = asprintf(&s, "unknown wait status (code %d, status %d)", si->si_code,
                             si->si_status);
                break;
        }
        return k < 0 ? NULL : s;
}
