/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restriction layer: what a device model's QEMU is allowed to be.
 *  - restrict_prepare() (parent, before fork) turns a qdm_restrict into a restrict_plan that
 *    allocates nothing (jail mode borrows the caller's restrict_jail), so that
 *    restrict_apply_child() can run between fork and exec, where only async-signal-safe calls
 *    are allowed.
 *  - restrict_make_empty_root(): the empty chroot QEMU's -chroot enters; in jail mode, the
 *    directory the child mounts its private tmpfs root on.
 *  - uid_alloc() / uid_kill_all(): a uid per device model, and making sure none of its
 *    processes survive the device model.
 * Fail-closed: a measure that cannot be applied is an error, never a silent downgrade.
 */
#pragma once

#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "model.h"

/* The bounding set a restricted QEMU (mode QDM_RESTRICT_QEMU) keeps: exactly what its own drop
 * (-chroot DIR -runas UID:GID) needs. Determined experimentally with QEMU 7.2; see
 * restrict.c for the experiment and why each is needed. QEMU ends with all of them out of its
 * effective and permitted sets (setuid to a non-zero uid clears them); the bounding set only
 * guarantees that nothing it execs, nor QEMU itself, can ever regain any other. */
#define RESTRICT_QEMU_KEEP_CAPS                                      \
        ((UINT64_C(1) << CAP_SETUID) | (UINT64_C(1) << CAP_SETGID) | \
         (UINT64_C(1) << CAP_SYS_CHROOT) | (UINT64_C(1) << CAP_DAC_READ_SEARCH))

/* The child-side steps, for error reports ("which step failed"). */
typedef enum restrict_step {
        RESTRICT_STEP_NONE,
        RESTRICT_STEP_UNSHARE,       /* unshare(); detail: the CLONE_NEW* flags */
        RESTRICT_STEP_MOUNT_PRIVATE, /* mount(NULL, "/", MS_REC|MS_PRIVATE) */
        RESTRICT_STEP_GETRLIMIT,     /* detail: RLIMIT_* */
        RESTRICT_STEP_SETRLIMIT,     /* detail: RLIMIT_* */
        RESTRICT_STEP_SECUREBITS,    /* clearing inherited securebits */
        RESTRICT_STEP_CAPBSET_DROP,  /* detail: capability number */
        RESTRICT_STEP_AMBIENT_CLEAR, /* PR_CAP_AMBIENT_CLEAR_ALL */
        RESTRICT_STEP_CAPGET,        /* capget() */
        RESTRICT_STEP_CAPSET,        /* capset() clearing the inheritable set */
        RESTRICT_STEP_NO_NEW_PRIVS,  /* PR_SET_NO_NEW_PRIVS */
        /* Jail mode only. detail: the index of the mount in restrict_jail.mounts. */
        RESTRICT_STEP_JAIL_TMPFS,      /* the tmpfs root on restrict_jail.root */
        RESTRICT_STEP_JAIL_MKDIR,      /* a parent directory of a mount point */
        RESTRICT_STEP_JAIL_MOUNTPOINT, /* the empty file or directory a bind goes on */
        RESTRICT_STEP_JAIL_BIND,       /* mount(source, target, MS_BIND) */
        RESTRICT_STEP_JAIL_REMOUNT,    /* the bind made read-only (nosuid, nodev/noexec) */
        RESTRICT_STEP_JAIL_PIVOT,      /* pivot_root(".", ".") into the tmpfs */
        RESTRICT_STEP_JAIL_UMOUNT_OLD, /* umount2(old root, MNT_DETACH) */
        RESTRICT_STEP_JAIL_ROOT_RO,    /* the new root remounted read-only */
        RESTRICT_STEP_JAIL_HOSTNAME,   /* sethostname() in the new UTS namespace */
        RESTRICT_STEP_JAIL_SETGROUPS,  /* setgroups(): only the device's groups */
        RESTRICT_STEP_JAIL_SETRESGID,
        RESTRICT_STEP_JAIL_SETRESUID,
        RESTRICT_STEP_JAIL_CHDIR, /* chdir into the jail: ".", then "/" */
        _RESTRICT_STEP_MAX,
} restrict_step;

#define RESTRICT_MAX_RLIMITS 8
#define RESTRICT_MAX_GROUPS  4

/* One bind mount of a jail's root (see jail.h for how the list is found). */
enum {
        RESTRICT_MOUNT_DIR = 1 << 0,    /* the source is a directory (else a file or device) */
        RESTRICT_MOUNT_DEVICE = 1 << 1, /* a device node: keep "dev" on its mount */
        RESTRICT_MOUNT_EXEC = 1 << 2,   /* executable or mappable as code: keep "exec" */
};
typedef struct restrict_mount {
        char *source;   /* host path; mount(2) follows symlinks in it */
        char *target;   /* absolute path inside the jail: no ".", "..", "//" or trailing "/" */
        unsigned flags; /* RESTRICT_MOUNT_* */
} restrict_mount;

/* Jail mode: what the parent decided for the child. Everything is borrowed and must outlive
 * restrict_apply_child() (it runs on the forked copy, which reads but never frees). */
typedef struct restrict_jail {
        const char *root; /* an existing empty directory (RUN_DIR/NAME/root): the child mounts
                             its tmpfs root there in its own mount namespace, so the host sees
                             nothing; absolute */
        const restrict_mount *mounts; /* sorted so that parents come first; none under another
                                         directory mount's target */
        size_t n_mounts;
        uid_t uid;                         /* never 0 */
        gid_t gid;                         /* never 0 */
        gid_t groups[RESTRICT_MAX_GROUPS]; /* supplementary groups (e.g. /dev/kvm's); never 0 */
        size_t n_groups;
        const char *hostname; /* in the new UTS namespace; NULL keeps the host's copy */
} restrict_jail;

typedef struct restrict_plan {
        qdm_restrict_mode mode;
        int unshare_flags;         /* CLONE_NEW* for unshare() in the child */
        bool new_pid_ns;           /* jail: the child must be created in a new PID namespace */
        const restrict_jail *jail; /* jail mode only */
        struct {
                int resource; /* RLIMIT_* */
                rlim_t value; /* soft = hard = min(value, inherited hard limit) */
        } rlimits[RESTRICT_MAX_RLIMITS];
        size_t n_rlimits;
        unsigned cap_last; /* highest capability this kernel knows */
        uint64_t keep_caps;
} restrict_plan;

/* Name:    restrict_prepare
 * Desc:    Compute, in the parent, everything restrict_apply_child() needs. r == NULL means no
 *          restriction (same as mode QDM_RESTRICT_NONE). Mode QDM_RESTRICT_JAIL needs `jail`
 *          (ignored otherwise), which the plan borrows. A plan with new_pid_ns set must be
 *          applied in a child created with CLONE_NEWPID (spawn.c does that).
 * Returns: 0; -EINVAL for a bad mode, a jail mode without a valid jail (root 0 ids, a
 *          relative root or target). On failure *ret_reason (if non-NULL) points to a static
 *          human string. */
int restrict_prepare(const qdm_restrict *r, const restrict_jail *jail, restrict_plan *ret_plan,
                     const char **ret_reason);

/* Name:    restrict_apply_child
 * Desc:    Apply the plan to the calling process. Only async-signal-safe calls and raw
 *          syscalls: this runs in a forked child of a possibly multi-threaded parent.
 *          Order: unshare + private mounts, (jail: the tmpfs root, its bind mounts,
 *          pivot_root, the old root detached, the new one read-only, the hostname), rlimits,
 *          securebits, bounding set, ambient and inheritable sets, (jail: groups, gid, uid,
 *          every capability set emptied), NO_NEW_PRIVS. A jailed child ends with its cwd at
 *          the new "/".
 * Returns: 0, or a negative errno with *ret_step / *ret_detail naming what failed. */
int restrict_apply_child(const restrict_plan *p, int *ret_step, int *ret_detail);

/* Name:    restrict_describe_step
 * Desc:    A human name for a failed step, e.g. "setrlimit(RLIMIT_FSIZE)", or for a jail
 *          step "jail: bind-mounting /usr/bin/qemu-system-x86_64 on /usr/bin/qemu-system-x86_64"
 *          (jail, which may be NULL, names the mount). Writes into buf (always
 *          NUL-terminated) and returns it. */
const char *restrict_describe_step(const restrict_jail *jail, int step, int detail, char *buf,
                                   size_t size);

/* Name:    restrict_make_empty_root
 * Desc:    Create PATH as a directory owned by root:root with mode 0000, whatever the umask.
 *          An existing empty root-owned directory (not a symlink) is accepted and its mode
 *          reset, so a stale one from a crashed run does not block a restart.
 * Returns: 0; -EPERM if not running as root; -ENOTEMPTY / -ENOTDIR / -EEXIST (exists but not
 *          an empty root-owned directory); another negative errno. */
int restrict_make_empty_root(const char *path);

/* Name:    uid_alloc
 * Desc:    Choose a uid in [min, max] for a device model and lock it. A candidate is never 0
 *          or (uid_t)-1, never the uid of an account or the gid of a group (qdm runs QEMU
 *          with gid == uid; no such group needs to exist, and one that exists would hand
 *          QEMU its permissions), and its lock file LOCK_DIR/uid-N.lock must be flock()able.
 *          Without SHARE, the lock is exclusive and no process (live or zombie) may have the
 *          number as any of its uids or gids. With SHARE, the lock is shared: the lowest
 *          usable uid is chosen so that sharers converge; the first sharer still requires it
 *          to be unused by processes, later ones join it. Lock files are never deleted
 *          (deleting a locked file races with the next flock on a new inode). LOCK_DIR must
 *          exist. NSS is consulted, so call this in the parent, never after fork.
 * Returns: 0 with *ret_uid and *ret_lock_fd (O_CLOEXEC; holding it holds the uid, closing it
 *          or dying releases it); -EINVAL; -ENOSPC if no uid in the range is usable; another
 *          negative errno (e.g. the lock dir is missing). */
int uid_alloc(const char *lock_dir, uid_t min, uid_t max, bool share, uid_t *ret_uid,
              int *ret_lock_fd);

/* Name:    uid_mark_clean
 * Desc:    Record in a uid's lock file, held exclusively through LOCK_FD, that no process of
 *          the uid is left: call it after uid_kill_all() returned 0, just before releasing
 *          the lock. The next exclusive uid_alloc() of the uid then skips its /proc scan (the
 *          cost of which grows with the host's process count) and consumes the mark, so a
 *          holder that dies without calling this (a crashed supervisor whose QEMU lives on)
 *          leaves the uid to be scanned. The mark names the boot it was made in. It trusts,
 *          as systemd's dynamic users and libxl do, that nothing outside qdm starts processes
 *          with uids of qdm's range; NSS is still asked on every allocation.
 * Returns: 0, or a negative errno (then no mark, and the next allocation scans). */
int uid_mark_clean(int lock_fd);

/* Name:    uid_kill_all
 * Desc:    Make sure no process of UID survives. A forked helper takes UID as its real,
 *          effective and saved uid and calls kill(-1, SIGKILL), which reaches every process
 *          whose real or saved uid is UID (libxl's trick: atomic against a process of UID
 *          forking meanwhile); stragglers found in /proc with UID only as effective uid are
 *          killed through a pidfd. Repeats until /proc shows no live process with UID as real,
 *          effective or saved uid. Zombies do not count: they run nothing, but they keep the
 *          number visible in /proc (and so unavailable to uid_alloc) until their parent reaps
 *          them. Must be called as root. Blocks for at most UID_KILL_ALL_TIMEOUT_USEC.
 * Returns: 0; -EINVAL for uid 0 or (uid_t)-1 (and an assert() fires in debug builds, since
 *          asking to kill every root process is always a bug); -ETIMEDOUT if processes
 *          remain (e.g. stuck in uninterruptible sleep); another negative errno. */
#define UID_KILL_ALL_TIMEOUT_USEC UINT64_C(5000000)
int uid_kill_all(uid_t uid);
