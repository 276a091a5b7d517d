/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * probe: what one QEMU binary supports, learned from the binary itself (a throwaway
 * `-machine none` QEMU asked over QMP, as libxl does, and its answer to `-L help`), cached per
 * path + mtime + size + inode
 * so a warm start pays nothing. argv.c turns a model plus this into a command line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QEMU_PROBE_MAX_DATA_DIRS 8
#define QEMU_PROBE_DATA_DIR_MAX  512

typedef struct qemu_probe {
        int major, minor, micro;
        bool sandbox;         /* -sandbox exists (QEMU built with seccomp) */
        bool run_with_user;   /* -run-with user=  (QEMU >= 9.1); else -runas */
        bool run_with_chroot; /* -run-with chroot= (QEMU >= 8.1); else -chroot */
        /* Where QEMU looks for firmware and option ROMs, its answer to "-L help" in its order
         * (e.g. "/usr/bin/../share/qemu"): what a jail must bind. Longer paths are left out.
         * Only learned when asked for (data_dirs_known). */
        bool data_dirs_known;
        char data_dirs[QEMU_PROBE_MAX_DATA_DIRS][QEMU_PROBE_DATA_DIR_MAX];
        size_t n_data_dirs;
} qemu_probe;

/* Name:    qemu_probe_get
 * Desc:    What `binary` (an absolute path) supports, and with want_data_dirs also where it
 *          loads firmware from (a second run, "-L help", about 15 ms). Blocking: on a cache
 *          miss it runs a throwaway QEMU for about 50 ms on a private context. cache_dir (may
 *          be NULL: no cache) must be a directory only trusted users can write. timeout_usec
 *          bounds a probe (at most 15 s): callers pass what is left of their own deadline.
 * Returns: 0, or a negative errno with *ret_error (may be NULL) describing the failure. A
 *          QEMU that cannot answer "-L help" is no failure: it leaves the list empty. */
int qemu_probe_get(const char *binary, const char *cache_dir, uint64_t timeout_usec,
                   bool want_data_dirs, qemu_probe *ret, char **ret_error);

/* The cache files of RUN_DIR/.cache, shared by the probe and the jail (jail.c). */

/* Name:    probe_cache_path
 * Desc:    CACHE_DIR/KIND-HASH(KEY)SUFFIX, e.g. ".cache/probe-0123456789abcdef.json" for the
 *          binary KEY. Two keys may share a file (a 64-bit hash): its content names its key.
 * Returns: a malloc'd path, or NULL (out of memory). */
char *probe_cache_path(const char *cache_dir, const char *kind, const char *key,
                       const char *suffix);

/* Name:    probe_cache_read
 * Desc:    Read a cache file whole, as untrusted input: a regular file (a symlink is refused),
 *          owned by the effective uid, not writable by group or others, at most MAX bytes.
 * Returns: 0 with *ret (malloc'd, NUL-terminated; may hold other NULs) and *ret_size; -EPERM
 *          (type, owner or mode), -EFBIG (bigger than MAX), -ENOMEM, or the errno of open()
 *          (-ENOENT: no cache yet) or read(). */
int probe_cache_read(const char *file, size_t max, char **ret, size_t *ret_size);

/* Name:    probe_cache_write
 * Desc:    Replace FILE with DATA atomically: a new temporary file of its own (mode 0600) next
 *          to it, renamed over it, so that a concurrent reader sees the old file or the new
 *          one, never a part.
 * Returns: 0 or a negative errno (the temporary file is removed). */
int probe_cache_write(const char *file, const char *data, size_t size);
