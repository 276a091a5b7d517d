/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * argv: model + probe + start parameters -> QEMU's command line (see argv.h). Pure: it reads
 * nothing but its arguments, so tests/unit/test-argv.c pins every option path with golden
 * files. The model is trusted (config.c validated it: no ',' inside option values, no control
 * characters); the parameters from the starter are checked, and a restriction that cannot be
 * expressed for this QEMU fails closed instead of being left out.
 *
 * Spellings, each verified against QEMU 7.2:
 *  - "-machine type=M" plus "-accel A": the implicit "-machine M" would make a machine named
 *    "help" print the list and exit; accel= inside -machine is the legacy spelling.
 *  - Disks as "-blockdev" (format node over a file or host_device protocol node) plus
 *    "-device virtio-blk-pci": no -drive defaults, no probing of the image format, and
 *    read-only set on the node (the device inherits it). A block device needs the
 *    host_device driver: 'file' refuses it.
 *  - "-runas UID:GID": numeric ids are accepted since QEMU 3.0 (added for libxl), so no user
 *    needs to exist in the host's passwd.
 *  - Jail mode: "-add-fd fd=N,set=I" plus "file.filename=/dev/fdset/I": file-posix opens its
 *    file with qemu_open(), which takes /dev/fdset/I as "dup the fd of set I whose access mode
 *    matches" (O_RDONLY for read-only=on, O_RDWR otherwise), for host_device as well. -kernel
 *    and -initrd are read with plain fopen()/g_file_get_contents(), which know no fd sets:
 *    they get fixed paths inside the jail instead.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>

#include "argv.h"

#define SANDBOX_DROPS_ITSELF \
        "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
/* In jail mode QEMU never changes its ids, so it may not gain the syscalls to do so. */
#define SANDBOX_JAILED "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

char **strv_free(char **v)
{
        if (!v)
                return NULL;
        for (char **i = v; *i; i++)
                free(*i);
        free(v);
        return NULL;
}

typedef struct strv_builder {
        char **v;
        size_t n, cap;
        bool oom;
} strv_builder;

/* Takes ownership of s; NULL (a failed allocation) marks the builder failed. */
static void push(strv_builder *b, char *s)
{
        if (b->oom || !s) {
                free(s);
                b->oom = true;
                return;
        }
        if (b->n + 2 > b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 64;
                char **v = realloc(b->v, cap * sizeof(char *));
                if (!v) {
                        free(s);
                        b->oom = true;
                        return;
                }
                b->v = v;
                b->cap = cap;
        }
        b->v[b->n++] = s;
        b->v[b->n] = NULL;
}

static void add(strv_builder *b, const char *s)
{
        push(b, strdup(s));
}

_printf_(2, 3) static void addf(strv_builder *b, const char *fmt, ...)
{
        char *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        push(b, r < 0 ? NULL : s);
}

_printf_(2, 3) static int check_fail(char **ret_error, const char *fmt, ...)
{
        va_list ap;
        int r;

        if (!ret_error)
                return -EINVAL;
        va_start(ap, fmt);
        r = vasprintf(ret_error, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

int qdm_argv_check(const qdm_model *m, const qemu_probe *probe, const qdm_argv_params *p,
                   char **ret_error)
{
        int r;

        assert(m);
        assert(probe);
        assert(p);

        if (p->monitor_fd < 0 || p->event_fd < -1 || p->event_fd == p->monitor_fd) {
                r = check_fail(ret_error, "invalid monitor fds (control %d, events %d)",
                               p->monitor_fd, p->event_fd);
                return r == -EINVAL ? -EBADF : r;
        }
        if ((m->accel == QDM_ACCEL_KVM && !p->kvm) || (m->accel == QDM_ACCEL_TCG && p->kvm))
                return check_fail(ret_error, "accel \"%s\" was configured but %s was chosen",
                                  m->accel == QDM_ACCEL_KVM ? "kvm" : "tcg",
                                  p->kvm ? "kvm" : "tcg");
        if (m->restrict_.mode == QDM_RESTRICT_NONE)
                return 0;
        if (!probe->sandbox)
                return check_fail(ret_error,
                                  "-sandbox is not supported by %s: QEMU was built without "
                                  "seccomp (restricted starts need it; restrict.mode \"none\" "
                                  "does not)",
                                  m->qemu);
        if (m->restrict_.mode == QDM_RESTRICT_QEMU) {
                if (!p->chroot_dir || p->chroot_dir[0] != '/' || strchr(p->chroot_dir, ','))
                        return check_fail(ret_error,
                                          "restrict.mode \"qemu\" needs an absolute chroot "
                                          "directory without ','");
                if (p->uid == 0 || p->gid == 0 || p->uid == (uid_t)-1 || p->gid == (gid_t)-1)
                        return check_fail(ret_error,
                                          "restrict.mode \"qemu\" needs a uid and gid other "
                                          "than 0 and -1 (got %u:%u)",
                                          (unsigned)p->uid, (unsigned)p->gid);
        }
        if (m->restrict_.mode == QDM_RESTRICT_JAIL) {
                if (p->n_disk_fds != m->n_disks || (m->n_disks > 0 && !p->disk_fds))
                        return check_fail(ret_error,
                                          "restrict.mode \"jail\" needs one fd per disk (%zu "
                                          "disks, %zu fds)",
                                          m->n_disks, p->n_disk_fds);
                for (size_t i = 0; i < p->n_disk_fds; i++) {
                        int fd = p->disk_fds[i];
                        if (fd < 0 || fd == p->monitor_fd || fd == p->event_fd) {
                                r = check_fail(ret_error, "invalid fd %d for disks[%zu]", fd, i);
                                return r == -EINVAL ? -EBADF : r;
                        }
                }
        }
        return 0;
}

static void add_restriction(strv_builder *b, const qdm_model *m, const qemu_probe *probe,
                            const qdm_argv_params *p)
{
        switch (m->restrict_.mode) {
        case QDM_RESTRICT_NONE:
                return;
        case QDM_RESTRICT_QEMU:
                if (probe->run_with_chroot && probe->run_with_user) {
                        add(b, "-run-with");
                        addf(b, "chroot=%s,user=%u:%u", p->chroot_dir, (unsigned)p->uid,
                             (unsigned)p->gid);
                } else {
                        if (probe->run_with_chroot) {
                                add(b, "-run-with");
                                addf(b, "chroot=%s", p->chroot_dir);
                        } else {
                                add(b, "-chroot");
                                add(b, p->chroot_dir);
                        }
                        if (probe->run_with_user) {
                                add(b, "-run-with");
                                addf(b, "user=%u:%u", (unsigned)p->uid, (unsigned)p->gid);
                        } else {
                                add(b, "-runas");
                                addf(b, "%u:%u", (unsigned)p->uid, (unsigned)p->gid);
                        }
                }
                add(b, "-sandbox");
                add(b, SANDBOX_DROPS_ITSELF);
                return;
        case QDM_RESTRICT_JAIL:
                add(b, "-sandbox");
                add(b, SANDBOX_JAILED);
                return;
        }
        assert(!"unknown restriction mode");
}

int qdm_argv_build(const qdm_model *m, const qemu_probe *probe, const qdm_argv_params *p,
                   char ***ret_argv)
{
        strv_builder b = {};
        int r;

        assert(ret_argv);
        r = qdm_argv_check(m, probe, p, NULL);
        if (r < 0)
                return r;
        /* config.c guarantees these; an option string must never be split by a value. */
        assert(m->qemu && m->name && m->machine);
        assert(!strchr(m->name, ',') && !strchr(m->machine, ','));

        add(&b, m->qemu);
        add(&b, "-S");
        add(&b, "-nodefaults");
        add(&b, "-no-user-config");
        add(&b, "-display");
        add(&b, "none");
        add(&b, "-name");
        addf(&b, "guest=%s", m->name);
        add(&b, "-machine");
        addf(&b, "type=%s", m->machine);
        add(&b, "-accel");
        add(&b, p->kvm ? "kvm" : "tcg");
        if (m->memory_mib > 0) {
                add(&b, "-m");
                addf(&b, "%" PRIu64 "M", m->memory_mib);
        }
        if (m->vcpus > 0) {
                add(&b, "-smp");
                addf(&b, "%u", m->vcpus);
        }

        add(&b, "-chardev");
        addf(&b, "socket,id=qdm-control,fd=%d,server=on,wait=off", p->monitor_fd);
        add(&b, "-mon");
        add(&b, "chardev=qdm-control,mode=control");
        if (p->event_fd >= 0) {
                /* Already connected: no server=, QEMU just talks on it. */
                add(&b, "-chardev");
                addf(&b, "socket,id=qdm-events,fd=%d", p->event_fd);
                add(&b, "-mon");
                add(&b, "chardev=qdm-events,mode=control");
        }
        add(&b, "-no-shutdown");

        bool jail = m->restrict_.mode == QDM_RESTRICT_JAIL;
        if (m->kernel) {
                add(&b, "-kernel");
                add(&b, jail ? QDM_JAIL_KERNEL : m->kernel);
        }
        if (m->initrd) {
                add(&b, "-initrd");
                add(&b, jail ? QDM_JAIL_INITRD : m->initrd);
        }
        if (m->append) {
                add(&b, "-append");
                add(&b, m->append);
        }

        for (size_t i = 0; i < m->n_disks; i++) {
                const qdm_disk *d = &m->disks[i];

                assert(d->path && d->format && !strchr(d->path, ',') && !strchr(d->format, ','));
                if (jail) {
                        add(&b, "-add-fd");
                        addf(&b, "fd=%d,set=%zu", p->disk_fds[i], i);
                }
                add(&b, "-blockdev");
                if (jail)
                        addf(&b,
                             "driver=%s,node-name=qdm-disk%zu,read-only=%s,file.driver=%s,"
                             "file.filename=/dev/fdset/%zu",
                             d->format, i, d->readonly ? "on" : "off",
                             d->block_device ? "host_device" : "file", i);
                else
                        addf(&b,
                             "driver=%s,node-name=qdm-disk%zu,read-only=%s,file.driver=%s,"
                             "file.filename=%s",
                             d->format, i, d->readonly ? "on" : "off",
                             d->block_device ? "host_device" : "file", d->path);
                add(&b, "-device");
                addf(&b, "virtio-blk-pci,id=qdm-vblk%zu,drive=qdm-disk%zu", i, i);
        }

        add_restriction(&b, m, probe, p);

        for (size_t i = 0; i < m->n_extra_args; i++)
                add(&b, m->extra_args[i]);

        if (b.oom) {
                strv_free(b.v);
                return -ENOMEM;
        }
        *ret_argv = b.v;
        return 0;
}
