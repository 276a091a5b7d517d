/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The spawn layer: fork + exec with an explicit fd plan, optional restriction (restrict.h)
 * before exec, a pidfd for the child, and any failure before or at exec reported with the
 * step that failed. It knows nothing of QEMU or device models.
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "model.h"
#include "restrict.h"

/* One entry of the fd plan: the child gets PARENT_FD (a descriptor of the caller, not
 * consumed) as CHILD_FD, with FD_CLOEXEC cleared. */
typedef struct spawn_fd {
        int parent_fd;
        int child_fd;
} spawn_fd;

typedef struct spawn_params {
        const char *path;    /* executed as is: no PATH search */
        char *const *argv;   /* NULL-terminated, argv[0] required */
        char *const *envp;   /* NULL-terminated; NULL = empty environment */
        const spawn_fd *fds; /* the fd plan; child fds must be distinct */
        size_t n_fds;
        const qdm_restrict *restrict_; /* NULL = no restriction */
        const restrict_jail *jail;     /* restrict_->mode "jail": its root, ids and groups */
        bool new_session;              /* setsid() in the child */
        const char *cwd;               /* NULL = inherit */
} spawn_params;

/* Name:    spawn_process
 * Desc:    Start P->path in a child that has exactly these fds: the plan's, at their child
 *          numbers, plus /dev/null (read-only) as fd 0 unless the plan maps 0. Nothing else,
 *          not even 1 and 2: map them (QEMU's stderr should go to a log) or a file the
 *          program opens may land on them. Every other fd of the caller, CLOEXEC or not, is
 *          closed in the child. The child starts with every signal at its default disposition
 *          and none blocked, in a new session if asked, restricted as asked (restrict.h).
 *          Returns only after the child has exec'd (or failed to): the caller then owns a
 *          running program and its pidfd. Signals are blocked in the calling thread while
 *          forking, so no handler of the caller runs in the child.
 *          Caveat of the error-pipe technique: a fork() without exec by another thread
 *          during this call holds the pipe open and delays the return until that process
 *          execs or exits.
 * Returns: 0 with *ret_pid and *ret_pidfd (O_CLOEXEC; the caller closes it and reaps the
 *          child, e.g. with spawn_reap()). On failure a negative errno, nothing left behind
 *          (a child that failed before exec has been reaped), *ret_pid and *ret_pidfd
 *          untouched, and, if ret_error is non-NULL, *ret_error set to a human description
 *          the caller frees (NULL if even that allocation failed), e.g.
 *          "exec /usr/bin/qemu-system-x86_64: No such file or directory" or
 *          "setrlimit(RLIMIT_FSIZE): Operation not permitted" or "jail: bind-mounting
 *          /dev/kvm on /dev/kvm: No such file or directory". Errors: -EINVAL (bad
 *          parameters, duplicate child fd, jail mode without a valid jail), -EBADF (a plan fd
 *          is not open), the errno of the failed child step (-ENOENT, -EACCES, -EPERM, ...),
 *          -ECHILD (the child was reaped by someone else before its pidfd was opened: the
 *          caller ignores SIGCHLD or reaps with waitpid(-1)).
 *          Jail mode creates the child with clone3(CLONE_PIDFD), plus CLONE_NEWPID when the
 *          restriction asks for a PID namespace: the child, and so the program it execs, is
 *          then that namespace's init, and the pidfd and pid (as the caller sees it) are the
 *          program's own. */
int spawn_process(const spawn_params *p, pid_t *ret_pid, int *ret_pidfd, char **ret_error);

/* Name:    spawn_reap
 * Desc:    Wait for the child behind PIDFD to exit and reap it (waitid(P_PIDFD, WEXITED)).
 *          Blocks until it exits; when the pidfd polls readable it has, and this returns at
 *          once. Does not close PIDFD.
 * Returns: 0 with *ret filled (si_code CLD_EXITED / CLD_KILLED / CLD_DUMPED, si_status),
 *          or a negative errno (-ECHILD: already reaped). */
int spawn_reap(int pidfd, siginfo_t *ret);

/* Name:    spawn_describe_exit
 * Desc:    "exited with status 1", "killed by signal 9 (SIGKILL)",
 *          "killed by signal 11 (SIGSEGV), core dumped".
 * Returns: a string the caller frees, or NULL on allocation failure. */
char *spawn_describe_exit(const siginfo_t *si);

/* For tests only: make the child close its fds without close_range(2), exercising the
 * fallback used on kernels before 5.9. */
extern bool spawn_test_disable_close_range;
