/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The validated device-model description. config.c is the only producer (JSON -> model, with
 * every field checked); argv.c, restrict.c, spawn.c and dm.c only read it. Strings are owned
 * by the model and freed by model_free(). A model that exists is valid: consumers do not
 * re-validate what config.c guarantees (documented per field).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

typedef enum qdm_restrict_mode {
        QDM_RESTRICT_NONE, /* QEMU runs as the caller, no sandbox */
        QDM_RESTRICT_QEMU, /* libxl-compatible: QEMU starts as root and drops itself */
        QDM_RESTRICT_JAIL, /* qdm drops privileges before exec: QEMU never runs as root */
} qdm_restrict_mode;

typedef enum qdm_accel {
        QDM_ACCEL_AUTO, /* KVM when /dev/kvm is usable, else TCG */
        QDM_ACCEL_KVM,
        QDM_ACCEL_TCG,
} qdm_accel;

typedef struct qdm_disk {
        char *path;   /* absolute, no comma, no control characters */
        char *format; /* "raw" or "qcow2" */
        bool readonly;
        bool block_device; /* derived by config.c (stat): QEMU needs host_device, not file */
} qdm_disk;

typedef struct qdm_rlimits {
        /* RLIM_INFINITY means "leave as inherited". Defaults are libxl's. */
        rlim_t fsize;    /* default 256 KiB */
        rlim_t core;     /* default 0 */
        rlim_t msgqueue; /* default 0 */
        rlim_t locks;    /* default 0 */
        rlim_t memlock;  /* default 0 */
        rlim_t nofile;   /* default RLIM_INFINITY (inherited) */
        bool fsize_set;  /* fsize came from the configuration, not the default */
} qdm_rlimits;

typedef struct qdm_restrict {
        qdm_restrict_mode mode; /* default QDM_RESTRICT_JAIL */
        uid_t uid_min, uid_max; /* allocation range, inclusive; default 64000..64999; never 0 */
        bool share_uid;         /* allow a uid already used by a live device model; default no */
        bool unshare_net;       /* jail: new network namespace; default false */
        bool unshare_pid;       /* jail: new PID namespace; default false */
        qdm_rlimits rlimits;
} qdm_restrict;

typedef struct qdm_model {
        char *name;    /* 1-64 of [A-Za-z0-9_.-], not starting with '.' */
        char *qemu;    /* binary; absolute path after config resolution against PATH */
        char *machine; /* "none", "q35", "pc", "microvm", ...: [a-z0-9_.-]+ */
        qdm_accel accel;
        uint64_t memory_mib; /* 0 = QEMU's default (omit -m) */
        unsigned vcpus;      /* 0 = QEMU's default (omit -smp) */
        char *kernel;        /* optional, absolute path */
        char *initrd;        /* optional, absolute path */
        char *append;        /* optional kernel command line (a single argv element) */
        qdm_disk *disks;
        size_t n_disks;
        qdm_restrict restrict_;
        uint64_t start_timeout_ms; /* default 60000 */
        char **extra_args;         /* NULL-terminated, may be NULL; vetted by config.c */
        size_t n_extra_args;
} qdm_model;

/* Frees the model and every string it owns; NULL is a no-op. */
void qdm_model_free(qdm_model *m);
