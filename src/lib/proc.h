/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Readers of /proc: what a process really is (credentials, capabilities, seccomp, namespaces,
 * root, fds, rlimits), as opposed to what we asked for. Used by restrict.c (who owns a uid),
 * by the tests to prove a restriction, and by `qdm audit`. Read-only: nothing here changes
 * a process. pid 0 means the calling process everywhere.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

enum { PROC_ID_REAL, PROC_ID_EFFECTIVE, PROC_ID_SAVED, PROC_ID_FS, _PROC_ID_MAX };

typedef struct proc_status {
        char state; /* 'R', 'S', 'D', 'Z' (zombie), 'X' (dead), ... */
        pid_t ppid;
        uid_t uid[_PROC_ID_MAX]; /* indexed by PROC_ID_* */
        gid_t gid[_PROC_ID_MAX];
        uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb; /* bit N = capability N */
        uint64_t sig_blk, sig_ign, sig_cgt; /* bit N-1 = signal N, as the kernel prints them */
        int no_new_privs;                   /* 0 or 1 */
        int seccomp;                        /* 0 off, 1 strict, 2 filter */
} proc_status;

/* Name:    proc_status_read
 * Desc:    Parse /proc/PID/status. Every field listed above must be present.
 * Returns: 0; -ESRCH if the process is gone; -EBADMSG if a field is missing or malformed. */
int proc_status_read(pid_t pid, proc_status *ret);

typedef struct proc_ids {
        char state;
        uid_t uid[_PROC_ID_MAX];
        gid_t gid[_PROC_ID_MAX];
} proc_ids;

/* Name:    proc_ids_read
 * Desc:    State, Uid and Gid from /proc/PID/status, and nothing else: the /proc scans that
 *          decide who owns a uid read every process on the host, so this one reads the file
 *          with one read() into a stack buffer and stops parsing at "Gid:".
 * Returns: 0; -ESRCH if the process is gone; -EBADMSG if a field is missing or malformed. */
int proc_ids_read(pid_t pid, proc_ids *ret);

/* Name:    proc_stat_session
 * Desc:    The session id and process group of PID, from /proc/PID/stat (the fields after the
 *          parenthesised command name, which may itself contain ')' and spaces).
 * Returns: 0, -ESRCH, or -EBADMSG. */
int proc_stat_session(pid_t pid, pid_t *ret_pgrp, pid_t *ret_sid);

/* Name:    proc_ns_ino
 * Desc:    The inode of namespace NS ("mnt", "ipc", "uts", "net", "pid", "user", ...) of PID;
 *          two processes share a namespace iff the inodes are equal.
 * Returns: 0, -ESRCH, -ENOENT (no such namespace type), or another negative errno. */
int proc_ns_ino(pid_t pid, const char *ns, uint64_t *ret_ino);

/* Name:    proc_root / proc_cwd
 * Desc:    readlink of /proc/PID/root and /proc/PID/cwd, as seen from the caller. Caller frees.
 * Returns: 0, or a negative errno. */
int proc_root(pid_t pid, char **ret_path);
int proc_cwd(pid_t pid, char **ret_path);

typedef struct proc_fd {
        int fd;
        char *target; /* readlink of /proc/PID/fd/N: a path, "pipe:[ino]", "socket:[ino]", ... */
} proc_fd;

/* Name:    proc_list_fds
 * Desc:    Every open fd of PID, ascending, with its readlink target. For pid 0 the fd used to
 *          read the directory is not listed. An fd closed while listing is skipped.
 *          Free the result with proc_fds_free().
 * Returns: 0, or a negative errno. */
int proc_list_fds(pid_t pid, proc_fd **ret_fds, size_t *ret_n);
void proc_fds_free(proc_fd *fds, size_t n);

/* Name:    proc_count_fds
 * Desc:    How many fds the calling process has open (not counting the one used to count).
 * Returns: the count (>= 0), or a negative errno. */
int proc_count_fds(void);

/* Name:    proc_rlimit
 * Desc:    The RLIMIT_* resource limit of PID. Uses prlimit(), and parses /proc/PID/limits
 *          when prlimit is not permitted (reading another uid's limits needs CAP_SYS_RESOURCE,
 *          which a container's bounding set may lack, while /proc/PID/limits is world-readable).
 * Returns: 0, -ESRCH, -EINVAL (unknown resource), or another negative errno. */
int proc_rlimit(pid_t pid, int resource, struct rlimit *ret);

/* Name:    proc_list_pids
 * Desc:    A snapshot of every numeric entry of /proc (thread-group leaders). Caller frees.
 * Returns: 0, or a negative errno. */
int proc_list_pids(pid_t **ret_pids, size_t *ret_n);
