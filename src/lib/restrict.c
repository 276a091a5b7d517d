/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restriction layer (see restrict.h): pre-exec steps for a restricted QEMU, the empty
 * chroot, per-device-model uids and their cleanup.
 *
 * restrict_apply_child() runs between fork and exec: it must stay async-signal-safe (no
 * malloc, no stdio, no NSS, no locks) and must not use glibc's set*id wrappers (they
 * broadcast to threads the child does not have). Everything it needs is computed by
 * restrict_prepare() in the parent.
 *
 * Mode QDM_RESTRICT_QEMU, libxl-compatible: QEMU starts as root and drops itself with
 * -chroot DIR -runas UID:GID. The bounding set is cut to RESTRICT_QEMU_KEEP_CAPS. That set was
 * determined with QEMU 7.2.22 (Debian 12), kernel 6.x, as root, with every other step of this
 * file applied (new mount+IPC namespaces, private mounts, FSIZE 256 KiB, CORE/MSGQUEUE/LOCKS/
 * MEMLOCK 0, NO_NEW_PRIVS, empty inheritable and ambient sets), running
 *   qemu-system-x86_64 -S -nodefaults -machine none -chroot EMPTY -runas 64123:64123
 *     -sandbox on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny
 *     -chardev socket,id=mon,fd=N,server=on,wait=off -mon chardev=mon,mode=control
 * and treating "query-status answers prelaunch" as success, removing one capability at a time:
 *   - without CAP_SETGID:          "Failed to setgid(64123)" (setgid and setgroups)
 *   - without CAP_SETUID:          "Failed to setuid(64123)"
 *   - without CAP_SYS_CHROOT:      "chroot failed"
 *   - without CAP_DAC_READ_SEARCH: "chroot failed": the empty root is mode 0000, and chroot()
 *     needs search permission on it. CAP_DAC_OVERRIDE also works, but it grants write access
 *     too; DAC_READ_SEARCH is the narrower one.
 * With exactly these four, machine none, q35 and pc with -accel kvm, and q35 and microvm with
 * -accel tcg reach prelaunch, and q35 (kvm and tcg) and none keep running after "cont".
 * /dev/kvm (root-owned) and root-owned disk images (a mode 0600 raw image on virtio-blk, q35,
 * kvm) need no capability: QEMU opens them as their owner before dropping. Installing the seccomp
 * filter needs no CAP_SYS_ADMIN: the process has NO_NEW_PRIVS. Afterwards QEMU shows Uid/Gid 64123,
 * CapPrm = CapEff = 0, CapBnd = these four, NoNewPrivs 1, Seccomp 2.
 *
 * Mode QDM_RESTRICT_JAIL: QEMU never runs as root. The child (created by spawn.c with
 * clone3, in a new PID namespace when asked) unshares mount, IPC and UTS namespaces (and the
 * network's when asked), makes every mount private, mounts a tmpfs on the device model's
 * empty root directory (visible only in its own namespace), bind-mounts read-only exactly what
 * jail.c found (binary, libraries, module and data files, devices, kernel), pivots into it,
 * detaches the old root and remounts the new one read-only. Then rlimits as above, an empty
 * bounding set (QEMU needs no capability at all: it never changes its ids), supplementary
 * groups reduced to what the device needs (the group of /dev/kvm when KVM is used), setresgid
 * and setresuid to the device model's ids, every capability set emptied, NO_NEW_PRIVS; QEMU
 * then runs with -sandbox ...,elevateprivileges=deny.
 *
 * Rlimit findings, same setup: MEMLOCK 0 does not disturb QEMU 7.2 (none, q35 with kvm and with
 * tcg, prelaunch and running); it does break "-overcommit mem-lock=on" ("mlockall: Operation
 * not permitted"), so that option needs memlock RLIM_INFINITY. LOCKS is not enforced by Linux
 * since 2.4. FSIZE 256 KiB is libxl's value; any write beyond offset 256 KiB of a regular file
 * raises SIGXFSZ (default action: terminate; checked with dd, not with a guest), so a writable
 * file-backed disk needs fsize RLIM_INFINITY. Block devices are not subject to it (checked on
 * a loop device).
 */
#include "restrict.h"

#include <assert.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "proc.h"
#include "util.h"

static const char *const rlimit_names[] = {
        [RLIMIT_CPU] = "RLIMIT_CPU",           [RLIMIT_FSIZE] = "RLIMIT_FSIZE",
        [RLIMIT_DATA] = "RLIMIT_DATA",         [RLIMIT_STACK] = "RLIMIT_STACK",
        [RLIMIT_CORE] = "RLIMIT_CORE",         [RLIMIT_RSS] = "RLIMIT_RSS",
        [RLIMIT_NPROC] = "RLIMIT_NPROC",       [RLIMIT_NOFILE] = "RLIMIT_NOFILE",
        [RLIMIT_MEMLOCK] = "RLIMIT_MEMLOCK",   [RLIMIT_AS] = "RLIMIT_AS",
        [RLIMIT_LOCKS] = "RLIMIT_LOCKS",       [RLIMIT_SIGPENDING] = "RLIMIT_SIGPENDING",
        [RLIMIT_MSGQUEUE] = "RLIMIT_MSGQUEUE", [RLIMIT_NICE] = "RLIMIT_NICE",
        [RLIMIT_RTPRIO] = "RLIMIT_RTPRIO",     [RLIMIT_RTTIME] = "RLIMIT_RTTIME",
};

/* By number rather than by macro: the installed headers may predate the running kernel. */
static const char *const cap_names[] = {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
};

static int read_cap_last(unsigned *ret)
{
        char buf[32];
        _cleanup_close_ int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);

        if (fd >= 0) {
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                if (n > 0) {
                        char *end;
                        buf[n] = '\0';
                        errno = 0;
                        unsigned long v = strtoul(buf, &end, 10);
                        if (errno == 0 && end != buf && (*end == '\n' || *end == '\0') && v < 64) {
                                *ret = (unsigned)v;
                                return 0;
                        }
                }
        }
        /* No /proc (or an odd value): ask the kernel which bounding-set bits it knows. */
        for (unsigned cap = 0; cap < 64; cap++) {
                if (prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0) < 0) {
                        if (errno != EINVAL || cap == 0)
                                return negative_errno();
                        *ret = cap - 1;
                        return 0;
                }
        }
        return -EOVERFLOW;
}

/* A jail target must be a clean absolute path: the child creates its components one by one
 * in a fresh tmpfs, where "." or ".." would lead elsewhere. */
static bool jail_target_valid(const char *t)
{
        size_t len = t ? strlen(t) : 0;

        if (len < 2 || len >= PATH_MAX || t[0] != '/' || t[len - 1] == '/')
                return false;
        for (const char *c = t; *c; c++) {
                if (*c != '/')
                        continue;
                const char *n = c + 1;
                size_t k = strcspn(n, "/");
                if (k == 0 || (k == 1 && n[0] == '.') || (k == 2 && n[0] == '.' && n[1] == '.'))
                        return false;
        }
        return true;
}

static int jail_check(const restrict_jail *j, const char **ret_reason)
{
        if (!j || !j->root || j->root[0] != '/' || strlen(j->root) >= PATH_MAX) {
                *ret_reason = "jail mode needs an absolute root directory";
                return -EINVAL;
        }
        if (j->uid == 0 || j->gid == 0 || j->uid == (uid_t)-1 || j->gid == (gid_t)-1) {
                *ret_reason = "jail mode needs a uid and gid other than 0 and -1";
                return -EINVAL;
        }
        if (j->n_groups > RESTRICT_MAX_GROUPS) {
                *ret_reason = "jail mode: too many supplementary groups";
                return -EINVAL;
        }
        for (size_t i = 0; i < j->n_groups; i++)
                if (j->groups[i] == 0 || j->groups[i] == (gid_t)-1) {
                        *ret_reason = "jail mode never gives QEMU group 0";
                        return -EINVAL;
                }
        if (j->n_mounts > 0 && !j->mounts) {
                *ret_reason = "jail mode: mounts missing";
                return -EINVAL;
        }
        for (size_t i = 0; i < j->n_mounts; i++)
                if (!j->mounts[i].source || j->mounts[i].source[0] != '/' ||
                    !jail_target_valid(j->mounts[i].target)) {
                        *ret_reason = "jail mode: a bind mount with a relative or unclean path";
                        return -EINVAL;
                }
        /* The child binds everything before making anything read-only: a mount point below a
         * directory bind would be created in the host's directory. Sorted, each target once,
         * which is also what lets the child create each parent directory once. */
        for (size_t i = 1; i < j->n_mounts; i++)
                if (strcmp(j->mounts[i - 1].target, j->mounts[i].target) >= 0) {
                        *ret_reason = "jail mode: bind mounts not sorted by target, or a "
                                      "target twice";
                        return -EINVAL;
                }
        for (size_t i = 0; i < j->n_mounts; i++) {
                if (!(j->mounts[i].flags & RESTRICT_MOUNT_DIR))
                        continue;
                size_t k = strlen(j->mounts[i].target);
                for (size_t l = i + 1; l < j->n_mounts; l++)
                        if (strncmp(j->mounts[l].target, j->mounts[i].target, k) == 0 &&
                            j->mounts[l].target[k] == '/') {
                                *ret_reason = "jail mode: a bind mount below a directory bind";
                                return -EINVAL;
                        }
        }
        if (j->hostname && strlen(j->hostname) > 64) {
                *ret_reason = "jail mode: hostname longer than 64 bytes";
                return -EINVAL;
        }
        return 0;
}

int restrict_prepare(const qdm_restrict *r, const restrict_jail *jail, restrict_plan *ret_plan,
                     const char **ret_reason)
{
        restrict_plan plan = {.mode = QDM_RESTRICT_NONE};
        const char *reason = NULL;
        int k;

        assert_return(ret_plan, -EINVAL);

        if (!r || r->mode == QDM_RESTRICT_NONE) {
                *ret_plan = plan;
                return 0;
        }
        switch (r->mode) {
        case QDM_RESTRICT_QEMU:
                plan.unshare_flags = CLONE_NEWNS | CLONE_NEWIPC;
                plan.keep_caps = RESTRICT_QEMU_KEEP_CAPS;
                break;
        case QDM_RESTRICT_JAIL:
                k = jail_check(jail, &reason);
                if (k < 0)
                        goto fail;
                plan.jail = jail;
                plan.unshare_flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                                     (r->unshare_net ? CLONE_NEWNET : 0);
                plan.new_pid_ns = r->unshare_pid;
                plan.keep_caps = 0; /* QEMU never holds a capability, not even a bounding one */
                break;
        default:
                reason = "unknown restriction mode";
                k = -EINVAL;
                goto fail;
        }

        plan.mode = r->mode;
        const struct {
                int resource;
                rlim_t value;
        } limits[] = {
                {RLIMIT_FSIZE, r->rlimits.fsize},       {RLIMIT_CORE, r->rlimits.core},
                {RLIMIT_MSGQUEUE, r->rlimits.msgqueue}, {RLIMIT_LOCKS, r->rlimits.locks},
                {RLIMIT_MEMLOCK, r->rlimits.memlock},   {RLIMIT_NOFILE, r->rlimits.nofile},
        };
        static_assert(ELEMENTSOF(limits) <= RESTRICT_MAX_RLIMITS, "plan too small");
        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                if (limits[i].value == RLIM_INFINITY)
                        continue;
                plan.rlimits[plan.n_rlimits].resource = limits[i].resource;
                plan.rlimits[plan.n_rlimits].value = limits[i].value;
                plan.n_rlimits++;
        }

        k = read_cap_last(&plan.cap_last);
        if (k < 0) {
                reason = "cannot determine the kernel's last capability";
                goto fail;
        }
        *ret_plan = plan;
        return 0;

fail:
        if (ret_reason)
                *ret_reason = reason;
        return k;
}

/* ---- between fork and exec: async-signal-safe only ------------------------------------- */

static int child_fail(int step, int detail, int *ret_step, int *ret_detail)
{
        int r = negative_errno();
        *ret_step = step;
        *ret_detail = detail;
        return r;
}

/* mkdir -p of the directories above TARGET ("/a/b/c": a, a/b), relative to the cwd (the
 * jail's tmpfs), except those DONE already holds: DONE is the parent of the previous target
 * ("a/b", or "" at first), updated here. Targets come sorted, so the entries of a directory are
 * contiguous and most share the previous target's parent: about 20 mkdir() for 110 binds
 * instead of 250. A stack buffer, no allocation. */
static int jail_mkdir_parents(const char *target, char done[static PATH_MAX])
{
        char buf[PATH_MAX];
        size_t len = strlen(target);

        if (len >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(buf, target + 1, len); /* without the leading '/', with the NUL */
        const char *slash = strrchr(buf, '/');
        size_t parent = slash ? (size_t)(slash - buf) : 0;

        /* The directories both paths share: whole components only. */
        size_t k = 0;
        while (k < parent && buf[k] == done[k])
                k++;
        if (!((k == parent || buf[k] == '/') && (done[k] == '\0' || done[k] == '/')))
                while (k > 0 && buf[--k] != '/')
                        ;
        for (size_t i = k + 1; i <= parent; i++) {
                if (i < parent && buf[i] != '/')
                        continue;
                buf[i] = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                buf[i] = '/';
        }
        memcpy(done, buf, parent);
        done[parent] = '\0';
        return 0;
}

#ifndef MOUNT_ATTR_RDONLY /* glibc < 2.36 */
struct mount_attr {
        uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV  0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* Every bind read-only and nosuid, nodev unless a device, noexec unless code: with
 * mount_setattr(2) (Linux >= 5.12), one recursive call gives the whole tree the most common
 * state (code: ro, nosuid, nodev, exec; the tmpfs root too, until it is remounted noexec after
 * pivot_root), then one call per entry that differs (data, devices: about 10 of 110). 1 if done,
 * 0 if the recursive call failed (no mount_setattr: ENOSYS, EINVAL on old kernels, EPERM under
 * some seccomp profiles) and nothing was changed, so that the caller remounts entry by entry;
 * <0 if a later call failed. */
static int jail_setattr_all(const restrict_jail *j, int *ret_step, int *ret_detail)
{
#ifdef SYS_mount_setattr
        struct mount_attr code = {
                .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                .attr_clr = MOUNT_ATTR_NOEXEC,
        };
        /* All or nothing: the kernel checks every mount before it changes one. */
        if (syscall(SYS_mount_setattr, AT_FDCWD, ".", AT_RECURSIVE, &code, sizeof(code)) < 0)
                return 0;
        for (size_t i = 0; i < j->n_mounts; i++) {
                const restrict_mount *m = &j->mounts[i];
                if ((m->flags & (RESTRICT_MOUNT_EXEC | RESTRICT_MOUNT_DEVICE)) ==
                    RESTRICT_MOUNT_EXEC)
                        continue;
                struct mount_attr attr = {0};
                if (!(m->flags & RESTRICT_MOUNT_EXEC))
                        attr.attr_set |= MOUNT_ATTR_NOEXEC;
                if (m->flags & RESTRICT_MOUNT_DEVICE)
                        attr.attr_clr |= MOUNT_ATTR_NODEV;
                if (syscall(SYS_mount_setattr, AT_FDCWD, m->target + 1, 0, &attr, sizeof(attr)) < 0)
                        return child_fail(RESTRICT_STEP_JAIL_REMOUNT, (int)i, ret_step, ret_detail);
        }
        return 1;
#else
        return 0;
#endif
}

/* The jail's root, in the child's own (already private) mount namespace: a tmpfs on j->root,
 * one bind per entry, all made read-only (jail_setattr_all(), else one remount per entry),
 * then pivot_root into it and the old root detached, so no path leads back to the host's tree.
 * The tmpfs itself ends read-only, nosuid, nodev, noexec: only the binds that need it keep
 * exec (code) or dev (device nodes). Binding everything before anything is read-only is safe
 * because no target is below a directory bind (jail_check()): every mount point is made in the
 * tmpfs. */
static int jail_build_root(const restrict_jail *j, int *ret_step, int *ret_detail)
{
        /* The tmpfs holds only empty mount points; bounded anyway. */
        if (mount("tmpfs", j->root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=0755,size=1m,nr_inodes=4096") < 0)
                return child_fail(RESTRICT_STEP_JAIL_TMPFS, 0, ret_step, ret_detail);
        if (chdir(j->root) < 0)
                return child_fail(RESTRICT_STEP_JAIL_CHDIR, 0, ret_step, ret_detail);

        char done[PATH_MAX] = "";
        for (size_t i = 0; i < j->n_mounts; i++) {
                const restrict_mount *m = &j->mounts[i];
                const char *rel = m->target + 1;
                int k = jail_mkdir_parents(m->target, done);
                if (k < 0) {
                        errno = -k;
                        return child_fail(RESTRICT_STEP_JAIL_MKDIR, (int)i, ret_step, ret_detail);
                }
                /* mknod(S_IFREG) makes the empty file in one call (no fd to close). */
                if ((m->flags & RESTRICT_MOUNT_DIR) ? mkdir(rel, 0755) < 0 && errno != EEXIST
                                                    : mknod(rel, S_IFREG | 0444, 0) < 0)
                        return child_fail(RESTRICT_STEP_JAIL_MOUNTPOINT, (int)i, ret_step,
                                          ret_detail);
                /* Not MS_REC: what is mounted below a bound directory on the host stays out. */
                if (mount(m->source, rel, NULL, MS_BIND, NULL) < 0)
                        return child_fail(RESTRICT_STEP_JAIL_BIND, (int)i, ret_step, ret_detail);
        }

        int k = jail_setattr_all(j, ret_step, ret_detail);
        if (k < 0)
                return k;
        for (size_t i = 0; k == 0 && i < j->n_mounts; i++) {
                const restrict_mount *m = &j->mounts[i];
                unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID;
                if (!(m->flags & RESTRICT_MOUNT_DEVICE))
                        flags |= MS_NODEV;
                if (!(m->flags & RESTRICT_MOUNT_EXEC))
                        flags |= MS_NOEXEC;
                if (mount(NULL, m->target + 1, NULL, flags, NULL) < 0)
                        return child_fail(RESTRICT_STEP_JAIL_REMOUNT, (int)i, ret_step, ret_detail);
        }

        /* pivot_root(".", ".") stacks the old root on the new one; detaching the top of "."
         * then drops the whole host tree from this namespace (pivot_root(2), NOTES). */
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return child_fail(RESTRICT_STEP_JAIL_PIVOT, 0, ret_step, ret_detail);
        if (umount2(".", MNT_DETACH) < 0)
                return child_fail(RESTRICT_STEP_JAIL_UMOUNT_OLD, 0, ret_step, ret_detail);
        if (chdir("/") < 0)
                return child_fail(RESTRICT_STEP_JAIL_CHDIR, 1, ret_step, ret_detail);
        if (mount(NULL, "/", NULL,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return child_fail(RESTRICT_STEP_JAIL_ROOT_RO, 0, ret_step, ret_detail);
        if (j->hostname && sethostname(j->hostname, strlen(j->hostname)) < 0)
                return child_fail(RESTRICT_STEP_JAIL_HOSTNAME, 0, ret_step, ret_detail);
        return 0;
}

/* Become the device model's uid for good: groups first (setgroups needs CAP_SETGID, which the
 * uid change takes away), then the gid, then the uid. Raw syscalls: glibc's wrappers would try
 * to synchronize threads this child does not have. With no SECBIT_KEEP_CAPS, setresuid() to a
 * non-zero uid clears the permitted and effective sets. */
static int jail_drop_ids(const restrict_jail *j, int *ret_step, int *ret_detail)
{
        if (syscall(SYS_setgroups, j->n_groups, j->n_groups > 0 ? j->groups : NULL) < 0)
                return child_fail(RESTRICT_STEP_JAIL_SETGROUPS, 0, ret_step, ret_detail);
        if (syscall(SYS_setresgid, j->gid, j->gid, j->gid) < 0)
                return child_fail(RESTRICT_STEP_JAIL_SETRESGID, (int)j->gid, ret_step, ret_detail);
        if (syscall(SYS_setresuid, j->uid, j->uid, j->uid) < 0)
                return child_fail(RESTRICT_STEP_JAIL_SETRESUID, (int)j->uid, ret_step, ret_detail);
        return 0;
}

int restrict_apply_child(const restrict_plan *p, int *ret_step, int *ret_detail)
{
        if (p->mode == QDM_RESTRICT_NONE)
                return 0;
        if ((p->mode != QDM_RESTRICT_QEMU && p->mode != QDM_RESTRICT_JAIL) ||
            (p->mode == QDM_RESTRICT_JAIL && !p->jail)) {
                *ret_step = RESTRICT_STEP_NONE;
                *ret_detail = 0;
                return -EINVAL;
        }

        /* Our own namespaces (mount and IPC; jail: UTS, network if asked), with nothing
         * propagating back to the host's mounts. */
        if (unshare(p->unshare_flags) < 0)
                return child_fail(RESTRICT_STEP_UNSHARE, p->unshare_flags, ret_step, ret_detail);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return child_fail(RESTRICT_STEP_MOUNT_PRIVATE, 0, ret_step, ret_detail);
        if (p->mode == QDM_RESTRICT_JAIL) {
                /* The parent's umask must not narrow the jail's directories. */
                mode_t saved_umask = umask(0);
                int k = jail_build_root(p->jail, ret_step, ret_detail);
                umask(saved_umask);
                if (k < 0)
                        return k;
        }

        /* soft = hard = the configured value, but never above the inherited hard limit:
         * raising it needs CAP_SYS_RESOURCE (containers often lack it), and a stricter
         * inherited limit already is what was asked for. */
        for (size_t i = 0; i < p->n_rlimits; i++) {
                int res = p->rlimits[i].resource;
                struct rlimit rl;
                if (getrlimit((__rlimit_resource_t)res, &rl) < 0)
                        return child_fail(RESTRICT_STEP_GETRLIMIT, res, ret_step, ret_detail);
                rlim_t v = p->rlimits[i].value;
                if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < v)
                        v = rl.rlim_max;
                rl.rlim_cur = rl.rlim_max = v;
                if (setrlimit((__rlimit_resource_t)res, &rl) < 0)
                        return child_fail(RESTRICT_STEP_SETRLIMIT, res, ret_step, ret_detail);
        }

        /* Inherited securebits survive exec (except KEEP_CAPS); NO_SETUID_FIXUP would let QEMU
         * keep its capabilities across -runas, NOROOT would make it start without the ones it
         * needs. Start from none; a locked bit makes this fail, which is what we want. */
        int sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
        if (sb < 0 || (sb != 0 && prctl(PR_SET_SECUREBITS, 0, 0, 0, 0) < 0))
                return child_fail(RESTRICT_STEP_SECUREBITS, sb, ret_step, ret_detail);

        /* The bounding set caps what root gets at exec: after this QEMU starts with exactly
         * keep_caps in its permitted and effective sets. */
        for (unsigned cap = 0; cap <= p->cap_last; cap++) {
                if (cap < 64 && (p->keep_caps & (UINT64_C(1) << cap)))
                        continue;
                if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) < 0)
                        return child_fail(RESTRICT_STEP_CAPBSET_DROP, (int)cap, ret_step,
                                          ret_detail);
        }

        /* Ambient and inheritable capabilities would survive exec beside the bounding set.
         * EINVAL: a kernel without ambient capabilities (< 4.3) has none to clear. */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return child_fail(RESTRICT_STEP_AMBIENT_CLEAR, 0, ret_step, ret_detail);
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
        if (syscall(SYS_capget, &hdr, data) < 0)
                return child_fail(RESTRICT_STEP_CAPGET, 0, ret_step, ret_detail);
        for (size_t i = 0; i < ELEMENTSOF(data); i++)
                data[i].inheritable = 0;
        if (syscall(SYS_capset, &hdr, data) < 0)
                return child_fail(RESTRICT_STEP_CAPSET, 0, ret_step, ret_detail);

        if (p->mode == QDM_RESTRICT_JAIL) {
                int k = jail_drop_ids(p->jail, ret_step, ret_detail);
                if (k < 0)
                        return k;
                /* The uid change emptied permitted and effective; say so explicitly, so that
                 * nothing (a securebit we did not expect) can leave one behind. */
                memset(data, 0, sizeof(data));
                if (syscall(SYS_capset, &hdr, data) < 0)
                        return child_fail(RESTRICT_STEP_CAPSET, 1, ret_step, ret_detail);
        }

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return child_fail(RESTRICT_STEP_NO_NEW_PRIVS, 0, ret_step, ret_detail);
        return 0;
}

/* ---- back in the parent ------------------------------------------------------------------ */

static void describe_unshare(int flags, char *buf, size_t size)
{
        static const struct {
                int flag;
                const char *name;
        } names[] = {
                {CLONE_NEWNS, "CLONE_NEWNS"},   {CLONE_NEWIPC, "CLONE_NEWIPC"},
                {CLONE_NEWUTS, "CLONE_NEWUTS"}, {CLONE_NEWNET, "CLONE_NEWNET"},
                {CLONE_NEWPID, "CLONE_NEWPID"},
        };
        size_t n = (size_t)snprintf(buf, size, "unshare(");
        const char *sep = "";
        for (size_t i = 0; i < ELEMENTSOF(names) && n < size; i++)
                if (flags & names[i].flag) {
                        n += (size_t)snprintf(buf + n, size - n, "%s%s", sep, names[i].name);
                        sep = "|";
                }
        if (n < size)
                snprintf(buf + n, size - n, ")");
}

static const char *describe_jail_step(const restrict_jail *j, int step, int detail, char *buf,
                                      size_t size)
{
        const restrict_mount *m =
                j && detail >= 0 && (size_t)detail < j->n_mounts ? &j->mounts[detail] : NULL;
        const char *root = j && j->root ? j->root : "the jail's root";

        switch ((restrict_step)step) {
        case RESTRICT_STEP_JAIL_TMPFS:
                snprintf(buf, size, "jail: mounting a tmpfs on %s", root);
                break;
        case RESTRICT_STEP_JAIL_MKDIR:
        case RESTRICT_STEP_JAIL_MOUNTPOINT:
                if (m)
                        snprintf(buf, size, "jail: creating the mount point for %s", m->target);
                else
                        snprintf(buf, size, "jail: creating mount point #%d", detail);
                break;
        case RESTRICT_STEP_JAIL_BIND:
        case RESTRICT_STEP_JAIL_REMOUNT:
                if (m)
                        snprintf(buf, size, "jail: %s %s on %s",
                                 step == RESTRICT_STEP_JAIL_BIND ? "bind-mounting"
                                                                 : "making read-only the bind of",
                                 m->source, m->target);
                else
                        snprintf(buf, size, "jail: bind mount #%d", detail);
                break;
        case RESTRICT_STEP_JAIL_PIVOT:
                snprintf(buf, size, "jail: pivot_root into %s", root);
                break;
        case RESTRICT_STEP_JAIL_UMOUNT_OLD:
                snprintf(buf, size, "jail: detaching the old root");
                break;
        case RESTRICT_STEP_JAIL_ROOT_RO:
                snprintf(buf, size, "jail: remounting the new root read-only");
                break;
        case RESTRICT_STEP_JAIL_HOSTNAME:
                snprintf(buf, size, "jail: sethostname()");
                break;
        case RESTRICT_STEP_JAIL_SETGROUPS:
                snprintf(buf, size, "jail: setgroups()");
                break;
        case RESTRICT_STEP_JAIL_SETRESGID:
                snprintf(buf, size, "jail: setresgid(%u)", (unsigned)detail);
                break;
        case RESTRICT_STEP_JAIL_SETRESUID:
                snprintf(buf, size, "jail: setresuid(%u)", (unsigned)detail);
                break;
        case RESTRICT_STEP_JAIL_CHDIR:
                snprintf(buf, size, "jail: chdir(%s)", detail == 0 ? root : "/");
                break;
        default:
                snprintf(buf, size, "restriction");
                break;
        }
        return buf;
}

const char *restrict_describe_step(const restrict_jail *jail, int step, int detail, char *buf,
                                   size_t size)
{
        if (step >= RESTRICT_STEP_JAIL_TMPFS && step < _RESTRICT_STEP_MAX)
                return describe_jail_step(jail, step, detail, buf, size);

        const char *rl = detail >= 0 && (size_t)detail < ELEMENTSOF(rlimit_names)
                                 ? rlimit_names[detail]
                                 : NULL;
        const char *cap =
                detail >= 0 && (size_t)detail < ELEMENTSOF(cap_names) ? cap_names[detail] : NULL;

        switch ((restrict_step)step) {
        case RESTRICT_STEP_UNSHARE:
                describe_unshare(detail, buf, size);
                break;
        case RESTRICT_STEP_MOUNT_PRIVATE:
                snprintf(buf, size, "mount(\"/\", MS_REC|MS_PRIVATE)");
                break;
        case RESTRICT_STEP_GETRLIMIT:
        case RESTRICT_STEP_SETRLIMIT:
                if (rl)
                        snprintf(buf, size, "%s(%s)",
                                 step == RESTRICT_STEP_GETRLIMIT ? "getrlimit" : "setrlimit", rl);
                else
                        snprintf(buf, size, "%s(%d)",
                                 step == RESTRICT_STEP_GETRLIMIT ? "getrlimit" : "setrlimit",
                                 detail);
                break;
        case RESTRICT_STEP_SECUREBITS:
                snprintf(buf, size, "prctl(PR_SET_SECUREBITS, 0) (securebits were %#x)",
                         (unsigned)detail);
                break;
        case RESTRICT_STEP_CAPBSET_DROP:
                if (cap)
                        snprintf(buf, size, "prctl(PR_CAPBSET_DROP, %s)", cap);
                else
                        snprintf(buf, size, "prctl(PR_CAPBSET_DROP, %d)", detail);
                break;
        case RESTRICT_STEP_AMBIENT_CLEAR:
                snprintf(buf, size, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
                break;
        case RESTRICT_STEP_CAPGET:
                snprintf(buf, size, "capget()");
                break;
        case RESTRICT_STEP_CAPSET:
                snprintf(buf, size, detail == 0 ? "capset(inheritable = 0)" : "capset(all = 0)");
                break;
        case RESTRICT_STEP_NO_NEW_PRIVS:
                snprintf(buf, size, "prctl(PR_SET_NO_NEW_PRIVS)");
                break;
        case RESTRICT_STEP_NONE:
        default:
                snprintf(buf, size, "restriction");
                break;
        }
        return buf;
}

int restrict_make_empty_root(const char *path)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        assert_return(path && *path, -EINVAL);

        if (geteuid() != 0)
                return -EPERM;
        /* mkdir's mode is already minimal; the fchmod below is what guarantees 0000, also for
         * an existing directory and against a setgid parent (which would make ours setgid). */
        if (mkdir(path, 0000) < 0 && errno != EEXIST)
                return negative_errno();
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP ? -ENOTDIR : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (st.st_uid != 0)
                return -EEXIST;

        /* Empty: QEMU must find nothing at all inside its root. */
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return negative_errno();
        DIR *d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return negative_errno();
        }
        int r = 0;
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = negative_errno();
                        break;
                }
                if (!streq_ptr(de->d_name, ".") && !streq_ptr(de->d_name, "..")) {
                        r = -ENOTEMPTY;
                        break;
                }
        }
        closedir(d);
        if (r < 0)
                return r;

        if (st.st_gid != 0 && fchown(fd, 0, 0) < 0)
                return negative_errno();
        if (fchmod(fd, 0000) < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if ((st.st_mode & 07777) != 0 || st.st_uid != 0 || st.st_gid != 0)
                return -EIO;
        return 0;
}

/* ---- uids ---------------------------------------------------------------------------------- */

/* >0 if some account has uid ID or some group has gid ID, 0 if neither, <0 on lookup error.
 * The _r variants tell "no such entry" (result NULL, return 0 or one of the errnos POSIX lets
 * NSS modules use for it) from a failed lookup, which must not read as "free". */
static int id_is_account(uid_t id)
{
        long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t size = hint > 0 ? (size_t)hint : 16384;

        for (int which = 0; which < 2; which++) {
                for (;;) {
                        _cleanup_free_ char *buf = malloc(size);
                        struct passwd pw, *pwr = NULL;
                        struct group gr, *grr = NULL;
                        int e;

                        if (!buf)
                                return -ENOMEM;
                        if (which == 0)
                                e = getpwuid_r(id, &pw, buf, size, &pwr);
                        else
                                e = getgrgid_r((gid_t)id, &gr, buf, size, &grr);
                        if (e == ERANGE && size < 1024 * 1024) {
                                size *= 2;
                                continue;
                        }
                        if (e == 0 && (pwr || grr))
                                return 1;
                        if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
                                break;
                        return -e;
                }
        }
        return 0;
}

/* >0 if any process (zombies included) has ID among its uids or gids. */
static int id_used_by_process(uid_t id)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = proc_list_pids(&pids, &n);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                proc_ids st;
                r = proc_ids_read(pids[i], &st);
                if (r == -ESRCH)
                        continue;
                if (r < 0)
                        return r;
                for (int k = 0; k < _PROC_ID_MAX; k++)
                        if (st.uid[k] == id || st.gid[k] == (gid_t)id)
                                return 1;
        }
        return 0;
}

#define UID_CLEAN_MARK "clean "

/* This boot's id, "clean " before it: a mark from another boot is not this one's. */
static int clean_mark(char buf[static 64])
{
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        size_t k = strlen(UID_CLEAN_MARK);
        memcpy(buf, UID_CLEAN_MARK, k);
        ssize_t n = read(fd, buf + k, 64 - k - 1);
        if (n < 0)
                return negative_errno();
        if (n < 32)
                return -EIO;
        buf[k + (size_t)n] = '\0';
        return (int)(k + (size_t)n);
}

/* True if the lock file held through FD carries this boot's clean mark. */
static bool lock_is_clean(int fd)
{
        char want[64], have[64];
        int k = clean_mark(want);
        if (k < 0)
                return false;
        ssize_t n = pread(fd, have, sizeof(have), 0);
        return n == k && memcmp(have, want, (size_t)k) == 0;
}

int uid_mark_clean(int lock_fd)
{
        char mark[64];
        int k = clean_mark(mark);

        assert_return(lock_fd >= 0, -EBADF);
        if (k < 0)
                return k;
        if (ftruncate(lock_fd, 0) < 0)
                return negative_errno();
        ssize_t n = pwrite(lock_fd, mark, (size_t)k, 0);
        if (n < 0)
                return negative_errno();
        return n == k ? 0 : -EIO;
}

/* 1 if FD now holds the right lock on uid ID and ID is usable, 0 if not, <0 on error. The lock
 * is taken before the checks: so that no other qdm can start a process of ID between our check
 * and our use of it, and so that a uid another device model holds costs one flock() instead of
 * the NSS lookups and the /proc scan (N device models starting together would otherwise look
 * up each other's uids, N^2/2 lookups in all). */
static int uid_lock(int fd, uid_t id, bool share)
{
        int r;

        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return negative_errno();
                if (!share)
                        return 0;
                /* Held: join it if the holders are sharers, not if one holds it exclusively. */
                if (flock(fd, LOCK_SH | LOCK_NB) < 0)
                        return errno == EWOULDBLOCK ? 0 : negative_errno();
                return 1;
        }
        /* Nobody else holds it: an account's id is never ours, and any process of ID is a
         * stranger or a leftover, unless its last holder swept it and said so (the mark is
         * consumed here: whoever holds it next must say so again). Dropping the lock (by
         * closing FD) leaves the lock file, which is harmless. */
        bool clean = lock_is_clean(fd);
        if (clean && ftruncate(fd, 0) < 0)
                return negative_errno();
        r = id_is_account(id);
        if (r == 0 && !clean)
                r = id_used_by_process(id);
        if (r != 0)
                return r < 0 ? r : 0;
        /* A downgrade is not atomic; an exclusive allocator slipping in makes this fail. */
        if (share && flock(fd, LOCK_SH | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? 0 : negative_errno();
        return 1;
}

int uid_alloc(const char *lock_dir, uid_t min, uid_t max, bool share, uid_t *ret_uid,
              int *ret_lock_fd)
{
        _cleanup_close_ int dfd = -1;

        assert_return(lock_dir && *lock_dir, -EINVAL);
        assert_return(min <= max, -EINVAL);
        assert_return(ret_uid && ret_lock_fd, -EINVAL);

        dfd = open(lock_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();

        for (uint64_t u = min; u <= max; u++) {
                uid_t id = (uid_t)u;
                char name[32];
                _cleanup_close_ int fd = -1;
                int r;

                if (id == 0 || id == (uid_t)-1)
                        continue;
                snprintf(name, sizeof(name), "uid-%u.lock", (unsigned)id);
                fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return negative_errno();
                r = uid_lock(fd, id, share);
                if (r < 0)
                        return r;
                if (r > 0) {
                        *ret_uid = id;
                        *ret_lock_fd = TAKE_FD(fd);
                        return 0;
                }
        }
        return -ENOSPC;
}

/* Fork a helper that becomes UID and sends kill(-1, SIGKILL). Signals stay blocked in it so
 * that no handler of the host program runs in the helper. */
static int kill_as_uid(uid_t uid)
{
        sigset_t all, saved;
        int status;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        pid_t pid = fork();
        if (pid == 0) {
                if (syscall(SYS_setgroups, 0, NULL) < 0 ||
                    syscall(SYS_setresgid, (gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
                    syscall(SYS_setresuid, uid, uid, uid) < 0)
                        _exit(10);
                /* ESRCH: nothing of UID to kill. */
                if (kill(-1, SIGKILL) < 0 && errno != ESRCH)
                        _exit(11);
                _exit(0);
        }
        int saved_errno = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (pid < 0)
                return -saved_errno;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        if (!WIFEXITED(status))
                return -EIO;
        switch (WEXITSTATUS(status)) {
        case 0:
                return 0;
        case 10:
                return -EPERM;
        default:
                return -EIO;
        }
}

static bool status_has_uid(const proc_ids *st, uid_t uid)
{
        return st->uid[PROC_ID_REAL] == uid || st->uid[PROC_ID_EFFECTIVE] == uid ||
               st->uid[PROC_ID_SAVED] == uid;
}

/* Count live processes of UID; SIGKILL each through a pidfd. The pidfd pins the pid, so the
 * status read after opening it is the status of the process we signal, not of a successor
 * that reused the number. */
static int kill_remaining(uid_t uid, size_t *ret_live)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0, live = 0;
        int r = proc_list_pids(&pids, &n);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                proc_ids st;
                r = proc_ids_read(pids[i], &st);
                if (r == -ESRCH)
                        continue;
                if (r < 0)
                        return r;
                if (!status_has_uid(&st, uid) || st.state == 'Z' || st.state == 'X')
                        continue;

                _cleanup_close_ int pidfd = pidfd_open(pids[i], 0);
                if (pidfd < 0) {
                        if (errno == ESRCH)
                                continue;
                        return negative_errno();
                }
                r = proc_ids_read(pids[i], &st);
                if (r == -ESRCH)
                        continue;
                if (r < 0)
                        return r;
                if (!status_has_uid(&st, uid) || st.state == 'Z' || st.state == 'X')
                        continue;
                live++;
                if (pidfd_send_signal(pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
                        return negative_errno();
        }
        *ret_live = live;
        return 0;
}

int uid_kill_all(uid_t uid)
{
        assert(uid != 0);
        assert_return(uid != 0 && uid != (uid_t)-1, -EINVAL);

        uint64_t deadline = usec_add(now_usec(), UID_KILL_ALL_TIMEOUT_USEC);
        for (unsigned attempt = 0;; attempt++) {
                size_t live = 0;
                int r = kill_as_uid(uid);
                if (r < 0)
                        return r;
                r = kill_remaining(uid, &live);
                if (r < 0)
                        return r;
                if (live == 0)
                        return 0;
                if (now_usec() >= deadline)
                        return -ETIMEDOUT;
                /* SIGKILLed processes take a moment to become zombies. */
                usleep(attempt < 20 ? 1000 : 10000);
        }
}
