/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * probe: what one QEMU binary supports, learned from the binary itself (a throwaway
 * `-machine none` QEMU asked over QMP, as libxl does), cached per path + mtime + size + inode
 * so a warm start pays nothing. argv.c turns a model plus this into a command line.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct qemu_probe {
        int major, minor, micro;
        bool sandbox;         /* -sandbox exists (QEMU built with seccomp) */
        bool run_with_user;   /* -run-with user=  (QEMU >= 9.1); else -runas */
        bool run_with_chroot; /* -run-with chroot= (QEMU >= 8.1); else -chroot */
} qemu_probe;
