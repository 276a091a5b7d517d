/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm audit: proof, not promise. Reads the running QEMU's restriction back from /proc (ids,
 * groups, capability sets, NoNewPrivs, seccomp, root, namespaces against ours, rlimits, every
 * open fd; in jail mode also every mount of its mount namespace) and marks each line as
 * expected or not for the configured restriction mode.
 * Exit 1 if anything is off. Nothing here trusts what qdm meant to do: only what /proc shows.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control.h"
#include "proc.h"
#include "restrict.h"
#include "util.h"

typedef struct audit {
        json_object *checks;
        unsigned total, off;
        bool json;
} audit;

_printf_(5, 6) static void check(audit *a, const char *item, bool expected, const char *expect,
                                 const char *fmt, ...)
{
        char value[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(value, sizeof(value), fmt, ap);
        va_end(ap);
        a->total++;
        a->off += !expected;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "item", json_object_new_string(item));
        json_object_object_add(o, "value", json_object_new_string(value));
        json_object_object_add(o, "expected", json_object_new_boolean(expected));
        if (expect)
                json_object_object_add(o, "expect", json_object_new_string(expect));
        json_object_array_add(a->checks, o);
        if (!a->json)
                printf("  %-4s %-16s %s%s%s%s\n", expected ? "ok" : "OFF", item, value,
                       expect ? "  (" : "", expect ? expect : "", expect ? ")" : "");
}

/* "Groups:" is not in proc_status: supplementary groups, as a string. */
static char *read_groups(pid_t pid)
{
        char path[64], line[1024];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "re");
        char *out = NULL;
        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, "Groups:", 7) == 0) {
                        char *s = line + 7;
                        s += strspn(s, " \t");
                        s[strcspn(s, "\n")] = '\0';
                        size_t len = strlen(s);
                        while (len > 0 && s[len - 1] == ' ')
                                s[--len] = '\0';
                        out = strdup(s);
                        break;
                }
        if (f)
                fclose(f);
        return out;
}

static bool dir_is_empty(const char *path)
{
        DIR *d = opendir(path);
        if (!d)
                return false;
        struct dirent *de;
        bool empty = true;
        while (empty && (de = readdir(d)))
                empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
        closedir(d);
        return empty;
}

/* The configured disks, as paths and as the kernel names the files behind them. */
static bool is_disk(const dm_state *s, const char *target)
{
        for (size_t i = 0; s->disks && s->disks[i]; i++) {
                if (streq_ptr(target, s->disks[i]))
                        return true;
                _cleanup_free_ char *real = realpath(s->disks[i], NULL);
                if (real && streq_ptr(target, real))
                        return true;
        }
        return false;
}

/* What a restricted QEMU may hold: what qdm planned (0 /dev/null, 1-2 the stderr pipe, 3-4
 * the monitors; in a jail, the disks as fd sets), sockets and kernel objects of its own, the
 * few devices it opens itself, and its disks. A pipe elsewhere was inherited, not planned; a
 * path to any other host file was opened before the drop and survives the chroot. Neither is
 * expected. */
static bool fd_expected(const dm_state *s, int fd, const char *target)
{
        if (fd == 0)
                return streq_ptr(target, "/dev/null");
        if (fd == 1 || fd == 2)
                return strncmp(target, "pipe:[", 6) == 0;
        if (is_disk(s, target))
                return true;
        static const char *const prefixes[] = {"socket:[", "anon_inode:"};
        static const char *const devices[] = {"/dev/null",   "/dev/kvm",     "/dev/urandom",
                                              "/dev/random", "/dev/net/tun", "/dev/vhost-net"};
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(target, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        for (size_t i = 0; i < ELEMENTSOF(devices); i++)
                if (strcmp(target, devices[i]) == 0)
                        return true;
        return false;
}

/* The group a jailed QEMU may hold besides its own: /dev/kvm's, when that is how KVM is made
 * usable for device models (group-accessible, and not root's group). */
static bool kvm_group(gid_t *ret)
{
        struct stat st;
        if (stat("/dev/kvm", &st) < 0 || !S_ISCHR(st.st_mode) || (st.st_mode & 0060) != 0060 ||
            st.st_gid == 0)
                return false;
        *ret = st.st_gid;
        return true;
}

static bool mount_has_option(const char *options, const char *want)
{
        size_t k = strlen(want);
        for (const char *o = options; *o;) {
                size_t n = strcspn(o, ",");
                if (n == k && strncmp(o, want, k) == 0)
                        return true;
                o += n + (o[n] == ',');
        }
        return false;
}

/* Jail mode: QEMU's mount namespace, from /proc/PID/mountinfo. It must hold a read-only tmpfs
 * as its root and nothing but read-only, nosuid binds of single host files or directories
 * below it: no proc, sysfs or other kernel interface, no writable place. One line per mount
 * that is not so, and a summary. */
static void audit_jail_mounts(audit *a, pid_t pid)
{
        static const char *const kernel_fs[] = {
                "proc",   "sysfs",    "cgroup",      "cgroup2", "debugfs", "tracefs",
                "bpf",    "configfs", "securityfs",  "mqueue",  "devpts",  "hugetlbfs",
                "pstore", "efivarfs", "binfmt_misc", "fusectl", "autofs",  "nsfs",
        };
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
                check(a, "mounts", false, NULL, "unreadable");
                return;
        }
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        unsigned n = 0, bad = 0;
        bool root_ok = false;
        while (getline(&line, &cap, f) > 0) {
                /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
                char *field[6] = {0}, *save = NULL, *sep = strstr(line, " - ");
                if (!sep)
                        continue;
                *sep = '\0';
                char *fstype = sep + 3;
                fstype[strcspn(fstype, " \n")] = '\0';
                char *tok = strtok_r(line, " ", &save);
                for (int i = 0; tok && i < 6; i++, tok = strtok_r(NULL, " ", &save))
                        field[i] = tok;
                if (!field[5])
                        continue;
                const char *root = field[3], *where = field[4], *options = field[5];
                bool ro = mount_has_option(options, "ro");
                bool nosuid = mount_has_option(options, "nosuid");
                n++;
                if (strcmp(where, "/") == 0) {
                        root_ok = n == 1 && ro && nosuid && strcmp(fstype, "tmpfs") == 0;
                        if (!root_ok) {
                                bad++;
                                check(a, "mount", false, "a read-only tmpfs", "/ (%s, %s)", fstype,
                                      options);
                        }
                        continue;
                }
                bool kernel = false;
                for (size_t i = 0; i < ELEMENTSOF(kernel_fs); i++)
                        kernel |= strcmp(fstype, kernel_fs[i]) == 0;
                /* A device node is fine; the whole of /dev (a devtmpfs root) is not. */
                bool whole_dev = strcmp(fstype, "devtmpfs") == 0 && strcmp(root, "/") == 0;
                if (!ro || !nosuid || kernel || whole_dev) {
                        bad++;
                        check(a, "mount", false, "a read-only, nosuid bind", "%s (%s%s, %s)", where,
                              fstype, whole_dev ? " root" : "", options);
                }
        }
        check(a, "mounts", root_ok && bad == 0 && n > 0, "a read-only tmpfs root, read-only binds",
              "%u: a %s tmpfs root and %u binds%s", n, root_ok ? "read-only" : "WRONG",
              n > 0 ? n - 1 : 0, bad ? ", not all as expected" : ", all read-only and nosuid");
}

static void audit_restricted(audit *a, const control *c, pid_t pid, bool restricted)
{
        const dm_state *s = &c->record;
        bool jail = streq_ptr(s->restrict_, "jail");
        proc_status st;
        if (proc_status_read(pid, &st) < 0) {
                check(a, "process", false, "alive", "gone");
                return;
        }
        bool ids_ok = true, gids_ok = true;
        for (int i = 0; i < 4; i++) {
                ids_ok &= restricted ? st.uid[i] == s->uid && st.uid[i] != 0 : true;
                gids_ok &= restricted ? st.gid[i] == s->gid && st.gid[i] != 0 : true;
        }
        const char *own = restricted ? "the device model's own, not 0" : NULL;
        check(a, "uid", ids_ok, own, "%u/%u/%u/%u (real/effective/saved/fs)", (unsigned)st.uid[0],
              (unsigned)st.uid[1], (unsigned)st.uid[2], (unsigned)st.uid[3]);
        check(a, "gid", gids_ok, own, "%u/%u/%u/%u", (unsigned)st.gid[0], (unsigned)st.gid[1],
              (unsigned)st.gid[2], (unsigned)st.gid[3]);
        _cleanup_free_ char *groups = read_groups(pid);
        char own_gid[32], kvm_gid[32] = "";
        gid_t kg;
        snprintf(own_gid, sizeof(own_gid), "%u", (unsigned)s->gid);
        if (jail && kvm_group(&kg))
                snprintf(kvm_gid, sizeof(kvm_gid), "%u", (unsigned)kg);
        bool groups_ok =
                !restricted || (groups && (*groups == '\0' || strcmp(groups, own_gid) == 0 ||
                                           (*kvm_gid && strcmp(groups, kvm_gid) == 0)));
        check(a, "groups", groups_ok,
              !restricted ? NULL
              : jail      ? "none but its own, or /dev/kvm's group"
                          : "none but its own",
              "%s", groups && *groups ? groups : "none");

        const struct {
                const char *name;
                uint64_t value, want;
        } caps[] = {
                {"CapInh", st.cap_inh, 0},
                {"CapPrm", st.cap_prm, 0},
                {"CapEff", st.cap_eff, 0},
                {"CapAmb", st.cap_amb, 0},
                /* A jailed QEMU never had a capability; mode qemu keeps what its drop needs. */
                {"CapBnd", st.cap_bnd, jail ? 0 : RESTRICT_QEMU_KEEP_CAPS},
        };
        for (size_t i = 0; i < ELEMENTSOF(caps); i++) {
                char want[64];
                snprintf(want, sizeof(want), "%016llx", (unsigned long long)caps[i].want);
                check(a, caps[i].name, !restricted || caps[i].value == caps[i].want,
                      restricted ? want : NULL, "%016llx", (unsigned long long)caps[i].value);
        }
        check(a, "NoNewPrivs", !restricted || st.no_new_privs == 1, restricted ? "1" : NULL, "%d",
              st.no_new_privs);
        check(a, "Seccomp", !restricted || st.seccomp == 2, restricted ? "2 (filter)" : NULL, "%d",
              st.seccomp);

        _cleanup_free_ char *root = NULL;
        _cleanup_free_ char *want_root = rundir_path(c->run_dir, c->name, "root");
        uint64_t mnt_theirs = 0, mnt_ours = 0;
        bool own_mnt = proc_ns_ino(pid, "mnt", &mnt_theirs) >= 0 &&
                       proc_ns_ino(getpid(), "mnt", &mnt_ours) >= 0 && mnt_theirs != mnt_ours;
        if (proc_root(pid, &root) < 0)
                check(a, "root", !restricted, NULL, "unreadable");
        else if (jail) {
                /* Pivoted into its own tmpfs: seen from here, its root is "/" of a mount
                 * namespace that is not ours, and the directory it was built on stays empty. */
                struct stat sb;
                bool empty = want_root && stat(want_root, &sb) == 0 && (sb.st_mode & 07777) == 0 &&
                             dir_is_empty(want_root);
                check(a, "root", streq_ptr(root, "/") && own_mnt && empty,
                      "/ of its own mount namespace", "%s%s%s", root,
                      own_mnt ? " (its own mount namespace)" : " (the host's mount namespace!)",
                      empty ? "" : " (the host's root directory for it is not empty)");
                audit_jail_mounts(a, pid);
        } else {
                struct stat sb;
                bool empty = want_root && stat(want_root, &sb) == 0 && (sb.st_mode & 07777) == 0 &&
                             dir_is_empty(want_root);
                check(a, "root", !restricted || (streq_ptr(root, want_root) && empty),
                      restricted ? "the empty mode-0000 directory" : NULL, "%s%s", root,
                      restricted && empty ? " (empty, mode 0000)" : "");
        }

        static const char *const namespaces[] = {"mnt", "ipc", "uts", "net", "pid", "user"};
        for (size_t i = 0; i < ELEMENTSOF(namespaces); i++) {
                uint64_t theirs = 0, ours = 0;
                if (proc_ns_ino(pid, namespaces[i], &theirs) < 0 ||
                    proc_ns_ino(getpid(), namespaces[i], &ours) < 0)
                        continue;
                bool must_differ = restricted && (i == 0 || i == 1);
                if (jail)
                        must_differ = i <= 2 || (i == 3 && s->ns_net) || (i == 4 && s->ns_pid);
                char item[32];
                snprintf(item, sizeof(item), "ns %s", namespaces[i]);
                check(a, item, !must_differ || theirs != ours, must_differ ? "its own" : NULL,
                      "%s (%llu)", theirs == ours ? "the host's" : "its own",
                      (unsigned long long)theirs);
        }

        for (size_t i = 0; i < RUNDIR_N_RLIMITS; i++) {
                struct rlimit rl;
                if (proc_rlimit(pid, rundir_rlimits[i].resource, &rl) < 0)
                        continue;
                char item[32], want[48], value[64];
                snprintf(item, sizeof(item), "rlimit %s", rundir_rlimits[i].name);
                int64_t w = s->rlimits[i];
                if (w >= 0)
                        snprintf(want, sizeof(want), "%lld", (long long)w);
                if (rl.rlim_max == RLIM_INFINITY)
                        snprintf(value, sizeof(value), "unlimited");
                else
                        snprintf(value, sizeof(value), "%llu", (unsigned long long)rl.rlim_max);
                bool ok = w < 0 || (rl.rlim_cur == (rlim_t)w && rl.rlim_max == (rlim_t)w);
                check(a, item, ok, w >= 0 ? want : NULL, "%s", value);
        }

        proc_fd *fds = NULL;
        size_t n = 0;
        if (proc_list_fds(pid, &fds, &n) < 0) {
                check(a, "fds", false, NULL, "unreadable");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                char item[32];
                snprintf(item, sizeof(item), "fd %d", fds[i].fd);
                bool ok = !restricted || fd_expected(s, fds[i].fd, fds[i].target);
                check(a, item, ok, ok ? NULL : "not planned by qdm", "%s", fds[i].target);
        }
        proc_fds_free(fds, n);
}

int cmd_audit(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        audit a = {0};
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'j':
                        a.json = true;
                        break;
                case 'h':
                        printf("Usage: qdm audit [--json] NAME\n\n"
                               "Read the running QEMU's restriction back from /proc: uid/gid, "
                               "groups,\ncapability sets, NoNewPrivs, seccomp, root directory, "
                               "namespaces against\nthe host's, rlimits and every open fd, each "
                               "marked as expected or not\nfor the configured restriction mode. "
                               "Exit status 1 if anything is off.\n");
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (argc - optind != 1)
                return cli_error(EXIT_USAGE, "audit: expected NAME (see 'qdm audit --help')");
        control ctl;
        int r = control_lookup(g, argv[optind], &ctl);
        if (r != 0) {
                control_close(&ctl, 0);
                return r;
        }
        int fd = proc_ident_open(&ctl.record.qemu);
        if (fd < 0) {
                r = cli_error(EXIT_FAILED, "%s: QEMU is not running: nothing to audit", ctl.name);
                control_close(&ctl, 0);
                return r;
        }
        close(fd);
        bool restricted = !streq_ptr(ctl.record.restrict_, "none");
        a.checks = json_object_new_array();
        if (!a.json)
                printf("%s: QEMU pid %d, restrict %s\n", ctl.name, (int)ctl.record.qemu.pid,
                       ctl.record.restrict_);
        audit_restricted(&a, &ctl, ctl.record.qemu.pid, restricted);

        if (a.json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(ctl.name));
                json_object_object_add(o, "qemu_pid", json_object_new_int(ctl.record.qemu.pid));
                json_object_object_add(o, "restrict", json_object_new_string(ctl.record.restrict_));
                json_object_object_add(o, "ok", json_object_new_boolean(a.off == 0));
                json_object_object_add(o, "checks", json_object_get(a.checks));
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
        } else
                printf("%u checks, %u not as expected\n", a.total, a.off);
        json_object_put(a.checks);
        control_close(&ctl, 0);
        return a.off == 0 ? EXIT_OK : EXIT_FAILED;
}
