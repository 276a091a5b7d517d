/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * argv: a validated model (model.h) plus the facts of one QEMU binary (probe.h) plus what the
 * starter decided (fds, chroot, uid, accelerator) -> QEMU's command line. A pure function: no
 * I/O, no globals, no environment; the golden tests in tests/unit/golden pin its output.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "model.h"
#include "probe.h"
#include "util.h"

typedef struct qdm_argv_params {
        int monitor_fd;         /* the LISTENING control socket, at this number in QEMU (R5) */
        int event_fd;           /* a CONNECTED socket (socketpair end) for the event monitor,
                                   at this number in QEMU; -1 for none */
        const char *chroot_dir; /* restrict.mode "qemu": the empty directory QEMU chroots into;
                                   absolute, no ','. Ignored in the other modes. */
        uid_t uid;              /* restrict.mode "qemu": what QEMU drops to; never 0 */
        gid_t gid;
        bool kvm; /* the accelerator, resolved by the caller (m->accel "auto" is its choice) */
        /* restrict.mode "jail": QEMU opens no host path. Disk i is the fd disk_fds[i] (its
           number in QEMU, opened by the caller O_RDONLY or O_RDWR as the disk is readonly or
           not), added to fd set i with -add-fd and opened by QEMU as /dev/fdset/i; the kernel
           and initrd are bound into the jail at QDM_JAIL_KERNEL / QDM_JAIL_INITRD. */
        const int *disk_fds;
        size_t n_disk_fds;
} qdm_argv_params;

/* Where a jailed QEMU finds the configured kernel and initrd (read-only binds, see jail.h). */
#define QDM_JAIL_KERNEL "/kernel"
#define QDM_JAIL_INITRD "/initrd"

/* Name:    qdm_argv_check
 * Desc:    Whether qdm_argv_build() can build a command line for this combination, and if not,
 *          why: restricted modes need a QEMU with seccomp (-sandbox) and fail closed without
 *          it; mode "qemu" needs a chroot directory and a non-root uid/gid; mode "jail" needs
 *          one fd per disk, distinct from the monitors'; m->accel "kvm" or "tcg" must agree
 *          with p->kvm; monitor_fd must be valid and event_fd distinct from it.
 *          On failure *ret_error (if non-NULL) receives a malloc'd message.
 * Returns: 0, -EINVAL, -EBADF (fds), -ENOMEM. */
int qdm_argv_check(const qdm_model *m, const qemu_probe *probe, const qdm_argv_params *p,
                   char **ret_error);

/* Name:    qdm_argv_build
 * Desc:    The command line: m->qemu as argv[0], then (in this order) -S, -nodefaults,
 *          -no-user-config, -display none, -name, -machine, -accel, -m, -smp, the control
 *          monitor, the event monitor, -no-shutdown, kernel/initrd/append, one -blockdev plus
 *          -device virtio-blk-pci per disk (mode "jail": preceded by its -add-fd), the
 *          privilege drop (mode "qemu": -chroot/-runas or
 *          -run-with, as the probe says), -sandbox (modes "qemu" and "jail"), and extra_args.
 *          *ret_argv is a NULL-terminated malloc'd vector; free it with strv_free().
 * Returns: 0, or the error qdm_argv_check() returns (ask it for the message). */
int qdm_argv_build(const qdm_model *m, const qemu_probe *probe, const qdm_argv_params *p,
                   char ***ret_argv);

/* Frees a NULL-terminated vector and its strings; NULL is a no-op. Returns NULL. */
char **strv_free(char **v);

static inline void strv_freep(char ***v)
{
        strv_free(*v);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)
