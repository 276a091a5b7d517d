/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restriction layer: what a device model's QEMU is allowed to be.
 *  - restrict_prepare() (parent, before fork) turns a qdm_restrict into a restrict_plan that
 *    holds no pointers, so that restrict_apply_child() can run between fork and exec, where
 *    only async-signal-safe calls are allowed.
 *  - restrict_make_empty_root(): the empty chroot QEMU's -chroot enters.
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
        RESTRICT_STEP_UNSHARE,       /* unshare(CLONE_NEWNS|CLONE_NEWIPC) */
        RESTRICT_STEP_MOUNT_PRIVATE, /* mount(NULL, "/", MS_REC|MS_PRIVATE) */
        RESTRICT_STEP_GETRLIMIT,     /* detail: RLIMIT_* */
        RESTRICT_STEP_SETRLIMIT,     /* detail: RLIMIT_* */
        RESTRICT_STEP_SECUREBITS,    /* clearing inherited securebits */
        RESTRICT_STEP_CAPBSET_DROP,  /* detail: capability number */
        RESTRICT_STEP_AMBIENT_CLEAR, /* PR_CAP_AMBIENT_CLEAR_ALL */
        RESTRICT_STEP_CAPGET,        /* capget() */
        RESTRICT_STEP_CAPSET,        /* capset() clearing the inheritable set */
        RESTRICT_STEP_NO_NEW_PRIVS,  /* PR_SET_NO_NEW_PRIVS */
        _RESTRICT_STEP_MAX,
} restrict_step;

#define RESTRICT_MAX_RLIMITS 8

typedef struct restrict_plan {
        qdm_restrict_mode mode;
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
 *          restriction (same as mode QDM_RESTRICT_NONE).
 * Returns: 0; -EOPNOTSUPP for QDM_RESTRICT_JAIL (not implemented yet); -EINVAL for a bad
 *          mode. On failure *ret_reason (if non-NULL) points to a static human string. */
int restrict_prepare(const qdm_restrict *r, restrict_plan *ret_plan, const char **ret_reason);

/* Name:    restrict_apply_child
 * Desc:    Apply the plan to the calling process. Only async-signal-safe calls and raw
 *          syscalls: this runs in a forked child of a possibly multi-threaded parent.
 *          Order: unshare + private mounts, rlimits, securebits, bounding set, ambient and
 *          inheritable sets, NO_NEW_PRIVS.
 * Returns: 0, or a negative errno with *ret_step / *ret_detail naming what failed. */
int restrict_apply_child(const restrict_plan *p, int *ret_step, int *ret_detail);

/* Name:    restrict_describe_step
 * Desc:    A human name for a failed step, e.g. "setrlimit(RLIMIT_FSIZE)". Writes into buf
 *          (always NUL-terminated) and returns it. */
const char *restrict_describe_step(int step, int detail, char *buf, size_t size);

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
