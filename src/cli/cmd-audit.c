/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm audit: proof, not promise. Reads the running QEMU's restriction back from /proc (ids,
 * groups, capability sets, NoNewPrivs, seccomp, root, namespaces against ours, rlimits, every
 * open fd) and marks each line as expected or not for the configured restriction mode.
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

/* What a restricted QEMU may hold: what qdm planned (0 /dev/null, 1-2 the stderr pipe, 3-4
 * the monitors), sockets and kernel objects of its own, and the few devices it opens itself.
 * A pipe elsewhere was inherited, not planned; a path to any other host file was opened
 * before the drop and survives the chroot. Neither is expected. */
static bool fd_expected(int fd, const char *target)
{
        if (fd == 0)
                return streq_ptr(target, "/dev/null");
        if (fd == 1 || fd == 2)
                return strncmp(target, "pipe:[", 6) == 0;
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

static void audit_restricted(audit *a, const control *c, pid_t pid, bool restricted)
{
        const dm_state *s = &c->record;
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
        char own_gid[32];
        snprintf(own_gid, sizeof(own_gid), "%u", (unsigned)s->gid);
        bool groups_ok =
                !restricted || (groups && (*groups == '\0' || strcmp(groups, own_gid) == 0));
        check(a, "groups", groups_ok, restricted ? "none but its own" : NULL, "%s",
              groups && *groups ? groups : "none");

        const struct {
                const char *name;
                uint64_t value, want;
        } caps[] = {
                {"CapInh", st.cap_inh, 0},
                {"CapPrm", st.cap_prm, 0},
                {"CapEff", st.cap_eff, 0},
                {"CapAmb", st.cap_amb, 0},
                {"CapBnd", st.cap_bnd, RESTRICT_QEMU_KEEP_CAPS},
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
        if (proc_root(pid, &root) < 0)
                check(a, "root", !restricted, NULL, "unreadable");
        else {
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
                bool ok = !restricted || fd_expected(fds[i].fd, fds[i].target);
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
