/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jail: what a jailed QEMU needs from the host, found in the parent, before the child builds
 * the jail's root from it (restrict.c). The answer is a list of read-only bind mounts: the
 * binary, its ELF interpreter and exactly the shared libraries the dynamic loader would map
 * for it and for the modules a device model can load, QEMU's module and data directories
 * (firmware, option ROMs), a few character devices, the time zone, and the kernel and
 * initrd. Nothing else of the host is in a jail: no /proc, /sys, /tmp or /run, and of /etc
 * only ld.so.cache and localtime.
 *
 * Also here: whether /dev/kvm is usable by a device model's uid, and through which group.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "probe.h"
#include "restrict.h"

typedef struct jail_params {
        const char *qemu;        /* the binary as configured (absolute; may be a symlink) */
        const qemu_probe *probe; /* its data directories */
        bool kvm;                /* bind /dev/kvm */
        const char *kernel;      /* host paths, or NULL; bound at QDM_JAIL_KERNEL/_INITRD */
        const char *initrd;
        const char *cache_dir; /* where the part that depends only on the binary and the host's
                                  files is cached (RUN_DIR/.cache; only trusted users may write
                                  it), or NULL for no cache */
} jail_params;

typedef struct jail_files {
        restrict_mount *mounts; /* sorted by target, parents first, none below a directory
                                   mount's target: what restrict_jail.mounts wants */
        size_t n_mounts;
        char *exec_path; /* the binary's canonical path: execute it (and pass it as argv[0]),
                            so that QEMU, which has no /proc/self/exe in the jail, finds its
                            module and data directories relative to the same directory as on
                            the host */
        bool cached;     /* the host's part came from the cache */
} jail_files;

/* Name:    jail_files_find
 * Desc:    Everything a jail for P must hold, as bind mounts. Reads the ELF headers of the
 *          binary and of every library it (transitively) needs: DT_NEEDED names resolved as
 *          ld.so does (DT_RPATH/DT_RUNPATH with $ORIGIN, then /etc/ld.so.cache, then the
 *          default directories), each library bound at the path that resolution gives, and
 *          ld.so.cache itself, so the jailed loader makes the same choices. Modules: every
 *          accel-*.so and hw-*.so in QEMU's module directories (PREFIX/lib/<multiarch>/qemu,
 *          PREFIX/lib64/qemu, PREFIX/lib/qemu) contributes its closure too; ui-*, audio-*,
 *          block-* and chardev-* modules reach hosts, displays and sound servers a jail does
 *          not have (or options restricted modes refuse), and their libraries stay out.
 * Returns: 0 and *ret (free with jail_files_done()); -ENOEXEC (the binary or a library it
 *          needs is not an ELF object of the binary's class and machine), -ENOENT (a needed
 *          library is nowhere to be found; a kernel, initrd or device missing), -EACCES
 *          (kernel or initrd not world-readable: QEMU opens them as the device model's uid),
 *          -E2BIG (more mounts than a jail takes), -ENOMEM. *ret_error (if non-NULL) gets a
 *          malloc'd message naming the file.
 *          With P->cache_dir, the part that depends only on the binary and the host's files
 *          (all of the above but devices, kernel, initrd and /etc/localtime, which are looked
 *          up on every call) is kept in CACHE_DIR/jail-HASH.txt with every input it was
 *          computed from, and taken from there (ret->cached) while each input is unchanged;
 *          a stale, malformed or foreign cache file is ignored and replaced. See jail.c. */
int jail_files_find(const jail_params *p, jail_files *ret, char **ret_error);

/* Name:    jail_check_binary
 * Desc:    Whether QEMU (the configured path) can run in a jail at all: an ELF executable of
 *          this machine's class (no wrapper script: nothing in a jail would interpret it).
 *          Cheap (one header read): done before anything else is started for a jail.
 * Returns: 0, -ENOEXEC, or the errno of opening it; *ret_error (if non-NULL) says which. */
int jail_check_binary(const char *qemu, char **ret_error);
void jail_files_done(jail_files *f);

/* Name:    jail_kvm_access
 * Desc:    Whether a process with a device model's uid (never an account, never the owner of
 *          anything) can open DEV (/dev/kvm) read-write, and which supplementary group it needs
 *          for that: none when the node is world-accessible (rw for others), its group when it
 *          is group-accessible and that group is not root's, else none at all. Mode bits only:
 *          ACLs are not consulted (a jail grants nothing through them).
 * Returns: 1 (usable; *ret_group is the gid to add, or (gid_t)-1 for none), 0 (not usable:
 *          *ret_why, if non-NULL, gets a malloc'd sentence saying why and how to fix it),
 *          or a negative errno from stat() (-ENOENT: no KVM on this host). */
int jail_kvm_access(const char *dev, uid_t uid, gid_t *ret_group, char **ret_why);
