/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * restrict.mode "jail" against real QEMU 7.2: QEMU is unprivileged from its first instruction
 * (checked in /proc right after exec, when qemu mode is still root), lives in its own
 * namespaces under a read-only root that holds no host path, gets its disks as fds it can
 * write through but no other host file, boots a kernel bound into the jail, and uses KVM only
 * through a group when /dev/kvm allows it (faked per test in a private mount namespace, so
 * the host's /dev/kvm is never touched). After every test: no process, directory or fd left.
 */
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "dm-fixture.h"
#include "proc.h"
#include "qdm.h"
#include "restrict.h"
#include "test-support.h"
#include "util.h"

typedef struct seen_status {
        bool read;
        proc_status st;
} seen_status;

typedef struct fixture {
        dm_fixture dm;
        /* QEMU's /proc/PID/status as the state callback saw it right after exec (GREETING)
         * and once its greeting had arrived (NEGOTIATING). */
        seen_status at_greeting, at_negotiating;
        int saved_mnt_ns; /* the test's own mount namespace while /dev/kvm is faked */
        char *kvm_dir;
} fixture;

static void read_status(dm_fixture *df, qdm_dm *dm, qdm_dm_state new_state)
{
        fixture *f = (fixture *)df;
        seen_status *seen = new_state == QDM_DM_GREETING      ? &f->at_greeting
                            : new_state == QDM_DM_NEGOTIATING ? &f->at_negotiating
                                                              : NULL;
        if (seen)
                seen->read = proc_status_read(qdm_dm_get_pid(dm), &seen->st) == 0;
}

static int setup(void **state)
{
        if (geteuid() != 0) {
                print_message("jail mode needs root\n");
                return -1;
        }
        int r = dm_fixture_setup(state, sizeof(fixture), "jail", read_status);
        if (r == 0)
                ((fixture *)*state)->saved_mnt_ns = -1;
        return r;
}

static void restore_kvm(fixture *f);

static int teardown(void **state)
{
        fixture *f = *state;
        dm_fixture_stop(&f->dm);
        restore_kvm(f);
        dm_fixture_free(&f->dm);
        return 0;
}

static qdm_dm *start(fixture *f, qdm_config *config, int expect)
{
        f->at_greeting.read = f->at_negotiating.read = false;
        return dm_fixture_start(&f->dm, config, expect);
}

/* One QMP command on the device model's control connection; its return value as JSON. */
static json_object *qmp(qdm_dm *dm, const char *command, const char *args)
{
        char *json = NULL, *error = NULL;
        int r = qdm_qmp_execute(qdm_dm_get_qmp(dm), command, args, 10 * USEC_PER_SEC, &json,
                                &error);
        if (r < 0)
                print_message("%s: %s\n", command, error ? error : strerror(-r));
        assert_int_equal(r, 0);
        json_object *o = json_tokener_parse(json);
        assert_non_null(o);
        free(json);
        free(error);
        return o;
}

/* An HMP command's output (QEMU reports HMP errors there, with a successful QMP reply). */
static char *hmp(qdm_dm *dm, const char *command_line)
{
        json_object *args = json_object_new_object();
        json_object_object_add(args, "command-line", json_object_new_string(command_line));
        json_object *out = qmp(dm, "human-monitor-command", json_object_to_json_string(args));
        char *s = strdup(json_object_get_string(out));
        json_object_put(out);
        json_object_put(args);
        return s;
}

/* ---- unprivileged from the first instruction -------------------------------------------- */

static void assert_unprivileged(const proc_status *st, uid_t uid)
{
        for (int i = 0; i < _PROC_ID_MAX; i++) {
                assert_int_equal(st->uid[i], uid);
                assert_int_not_equal(st->uid[i], 0);
                assert_int_not_equal(st->gid[i], 0);
        }
        assert_int_equal(st->cap_inh, 0);
        assert_int_equal(st->cap_prm, 0);
        assert_int_equal(st->cap_eff, 0);
        assert_int_equal(st->cap_amb, 0);
        assert_int_equal(st->cap_bnd, 0);
        assert_int_equal(st->no_new_privs, 1);
}

/* Whether the comma-separated OPTS holds OPT. */
static bool has_opt(const char *opts, const char *opt)
{
        size_t k = strlen(opt);
        for (const char *c = opts; c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL)
                if (strncmp(c, opt, k) == 0 && (c[k] == ',' || c[k] == '\0'))
                        return true;
        return false;
}

/* Jail: everything qdm promises, read back from /proc. */
static void check_jailed(fixture *f, qdm_dm *dm, const char *name)
{
        pid_t pid = qdm_dm_get_pid(dm);
        uid_t uid = qdm_dm_get_uid(dm);
        assert_int_not_equal(uid, 0);
        assert_int_equal(qdm_dm_get_gid(dm), (gid_t)uid);

        proc_status st;
        assert_int_equal(proc_status_read(pid, &st), 0);
        assert_unprivileged(&st, uid);
        assert_int_equal(st.seccomp, 2);

        /* Its root is "/" of a mount namespace of its own; the directory it was built on is
         * still empty and mode 0000 on the host: the tmpfs exists only in QEMU's namespace. */
        char *root = NULL;
        assert_int_equal(proc_root(pid, &root), 0);
        assert_string_equal(root, "/");
        free(root);
        char *host_root = NULL;
        assert_true(asprintf(&host_root, "%s/%s/root", f->dm.run_dir, name) > 0);
        struct stat sb;
        assert_int_equal(stat(host_root, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0);
        DIR *d = opendir(host_root);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
                assert_true(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0);
        closedir(d);
        free(host_root);
        const char *own[] = {"mnt", "ipc", "uts"};
        for (size_t i = 0; i < ELEMENTSOF(own); i++)
                assert_int_not_equal(test_ns_ino(pid, own[i]), test_ns_ino(getpid(), own[i]));

        /* Its mounts: a read-only tmpfs root first, then nothing but read-only, nosuid binds,
         * among them the binary; no /proc, /sys, /etc/passwd, /tmp, run directory. */
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
        FILE *mi = fopen(path, "re");
        assert_non_null(mi);
        char line[4096];
        unsigned n = 0;
        bool binary = false;
        while (fgets(line, sizeof(line), mi)) {
                char where[1024], opts[256];
                assert_int_equal(sscanf(line, "%*s %*s %*s %*s %1023s %255s", where, opts), 2);
                const char *fstype = strstr(line, " - ");
                assert_non_null(fstype);
                if (n++ == 0) {
                        assert_string_equal(where, "/");
                        assert_non_null(strstr(fstype, " - tmpfs "));
                }
                assert_true(strncmp(opts, "ro,", 3) == 0);
                assert_non_null(strstr(opts, "nosuid"));
                /* nodev but on device nodes; noexec but on code (the binary, its interpreter,
                 * libraries and modules), whichever way the child set them. */
                bool device = strncmp(where, "/dev/", 5) == 0;
                const char *base = strrchr(where, '/') + 1;
                bool code = strcmp(where, "/etc/ld.so.cache") != 0 &&
                            (strstr(base, ".so.") || strstr(base, "qemu-system-") ||
                             (strlen(base) > 3 && strcmp(base + strlen(base) - 3, ".so") == 0));
                if (has_opt(opts, "nodev") == device || has_opt(opts, "noexec") == code)
                        fail_msg("mount %s: options %s", where, opts);
                binary |= strcmp(where, "/usr/bin/qemu-system-x86_64") == 0 ||
                          strstr(where, "qemu-system-x86_64") != NULL;
                const char *never[] = {"/proc", "/sys", "/etc/passwd", "/tmp", "/run", "/home"};
                for (size_t i = 0; i < ELEMENTSOF(never); i++)
                        assert_false(strncmp(where, never[i], strlen(never[i])) == 0);
        }
        fclose(mi);
        assert_true(binary);
        assert_true(n > 10);

        struct rlimit rl;
        assert_int_equal(proc_rlimit(pid, RLIMIT_CORE, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);
        assert_int_equal(proc_rlimit(pid, RLIMIT_MEMLOCK, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);
        assert_int_equal(proc_rlimit(pid, RLIMIT_MSGQUEUE, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);
}

static void test_jail_none(void **state)
{
        fixture *f = *state;
        /* A marker fd without CLOEXEC: QEMU must not inherit it. */
        char *marker_path = NULL;
        assert_true(asprintf(&marker_path, "%s/marker", f->dm.dir) > 0);
        int marker = open(marker_path, O_RDWR | O_CREAT, 0600);
        assert_true(marker >= 0);

        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-none\", \"machine\": \"none\", "
                                       "\"restrict\": {\"mode\": \"jail\"}}"),
                           0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_READY);
        uid_t uid = qdm_dm_get_uid(dm);

        /* Right after exec, before QEMU ran its own code to any extent, and when its greeting
         * arrived: already the device model's uid, with no capability, not even a bounding
         * one, and NO_NEW_PRIVS. */
        assert_true(f->at_greeting.read);
        assert_unprivileged(&f->at_greeting.st, uid);
        assert_true(f->at_negotiating.read);
        assert_unprivileged(&f->at_negotiating.st, uid);

        check_jailed(f, dm, "j-none");
        struct rlimit rl;
        assert_int_equal(proc_rlimit(qdm_dm_get_pid(dm), RLIMIT_FSIZE, &rl), 0);
        assert_int_equal(rl.rlim_cur, 256 * 1024);

        /* Only the planned fds. */
        proc_fd *fds = NULL;
        size_t n_fds = 0;
        assert_int_equal(proc_list_fds(qdm_dm_get_pid(dm), &fds, &n_fds), 0);
        for (size_t i = 0; i < n_fds; i++) {
                assert_string_not_equal(fds[i].target, marker_path);
                if (fds[i].fd == 0)
                        assert_string_equal(fds[i].target, "/dev/null");
                if (fds[i].fd == 1 || fds[i].fd == 2)
                        assert_non_null(strstr(fds[i].target, "pipe:["));
                /* Anything else is a socket, an anonymous inode or a device. */
                if (fds[i].fd > 2)
                        assert_true(strncmp(fds[i].target, "socket:[", 8) == 0 ||
                                    strncmp(fds[i].target, "anon_inode:", 11) == 0 ||
                                    strncmp(fds[i].target, "/dev/", 5) == 0);
        }
        proc_fds_free(fds, n_fds);
        close(marker);
        unlink(marker_path);
        free(marker_path);

        /* It runs, and shuts down cleanly. */
        dm_done d = {0};
        assert_int_equal(qdm_dm_resume(dm, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        d = (dm_done){0};
        assert_int_equal(qdm_dm_shutdown(dm, 10 * USEC_PER_SEC, dm_done_cb, &d), 0);
        (void)dm_fixture_wait_done(&f->dm, &d, 15 * USEC_PER_SEC);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_EXITED);
        assert_int_equal(access(qdm_dm_get_dir(dm), F_OK), -1);
        qdm_dm_unref(dm);
}

/* The contrast: in mode qemu, QEMU begins as root and drops itself later. Right after exec it
 * is uid 0 with the four capabilities its drop needs in its effective set. Its greeting is no
 * proof of the drop either (R1): QEMU 7.2 serves QMP from its monitor I/O thread, which
 * greets while the main thread is still initializing, before -runas (seen as uid 0 here on
 * every run so far, but that is a race, so it is printed, not asserted). Its bounding set
 * holds those four for its whole life. */
static void test_qemu_mode_contrast(void **state)
{
        fixture *f = *state;
        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"q-none\", \"machine\": \"none\", "
                                       "\"restrict\": {\"mode\": \"qemu\"}}"),
                           0);
        assert_true(f->at_greeting.read);
        const proc_status *g = &f->at_greeting.st, *n = &f->at_negotiating.st;
        print_message("mode qemu right after exec: uid %u, CapEff %016llx, CapBnd %016llx\n",
                      (unsigned)g->uid[0], (unsigned long long)g->cap_eff,
                      (unsigned long long)g->cap_bnd);
        assert_true(f->at_negotiating.read);
        print_message("mode qemu at its greeting:  uid %u, CapEff %016llx, CapBnd %016llx\n",
                      (unsigned)n->uid[0], (unsigned long long)n->cap_eff,
                      (unsigned long long)n->cap_bnd);
        /* QEMU needs tens of milliseconds from exec to its -runas; the callback runs within
         * microseconds of exec. */
        assert_int_equal(g->uid[0], 0);
        assert_int_equal(g->cap_eff, RESTRICT_QEMU_KEEP_CAPS);
        assert_int_equal(g->cap_bnd, RESTRICT_QEMU_KEEP_CAPS);
        assert_int_equal(n->cap_bnd, RESTRICT_QEMU_KEEP_CAPS);
        qdm_dm_unref(dm);
}

/* ---- disks as fds ----------------------------------------------------------------------- */

static char *make_image(fixture *f, const char *name, off_t size)
{
        char *path = NULL;
        assert_true(asprintf(&path, "%s/%s", f->dm.dir, name) > 0);
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, size), 0); /* sparse */
        close(fd);
        return path;
}

static json_object *find_block(json_object *blocks, const char *qdev)
{
        for (size_t i = 0; i < json_object_array_length(blocks); i++) {
                json_object *b = json_object_array_get_idx(blocks, i), *q = NULL;
                if (json_object_object_get_ex(b, "qdev", &q) &&
                    strcmp(json_object_get_string(q), qdev) == 0)
                        return b;
        }
        return NULL;
}

static const char *inserted_field(json_object *block, const char *key)
{
        json_object *ins = NULL, *v = NULL;
        assert_true(json_object_object_get_ex(block, "inserted", &ins));
        assert_true(json_object_object_get_ex(ins, key, &v));
        return json_object_get_string(v);
}

static void test_jail_q35_disks(void **state)
{
        fixture *f = *state;
        char *rw = make_image(f, "rw.raw", 1024 * 1024);
        char *ro = make_image(f, "ro.raw", 1024 * 1024);
        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-q35\", \"machine\": \"q35\", "
                                       "\"memory_mib\": 64, \"disks\": ["
                                       "{\"path\": \"%s\", \"format\": \"raw\"}, "
                                       "{\"path\": \"%s\", \"format\": \"raw\", \"readonly\": "
                                       "true}], \"restrict\": {\"mode\": \"jail\"}}",
                                       rw, ro),
                           0);
        check_jailed(f, dm, "j-q35");
        assert_true(f->at_greeting.read);
        assert_unprivileged(&f->at_greeting.st, qdm_dm_get_uid(dm));

        /* The guest's devices have the disks: the first writable, the second read-only, both
         * opened by QEMU from its fd sets (it knows no host path for them). */
        json_object *blocks = qmp(dm, "query-block", NULL);
        json_object *b0 = find_block(blocks, "/machine/peripheral/qdm-vblk0/virtio-backend");
        json_object *b1 = find_block(blocks, "/machine/peripheral/qdm-vblk1/virtio-backend");
        assert_non_null(b0);
        assert_non_null(b1);
        assert_string_equal(inserted_field(b0, "ro"), "false");
        assert_string_equal(inserted_field(b0, "file"), "/dev/fdset/0");
        assert_string_equal(inserted_field(b1, "ro"), "true");
        assert_string_equal(inserted_field(b1, "file"), "/dev/fdset/1");
        json_object_put(blocks);

        /* Writing through the guest's device lands in the host's file; the read-only one
         * refuses. */
        char *out = hmp(dm, "qemu-io -d /machine/peripheral/qdm-vblk0/virtio-backend "
                            "\"write -P 0xab 4096 4096\"");
        assert_null(strstr(out, "rror"));
        free(out);
        int fd = open(rw, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        unsigned char buf[4096];
        assert_int_equal(pread(fd, buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
        close(fd);
        for (size_t i = 0; i < sizeof(buf); i++)
                assert_int_equal(buf[i], 0xab);
        out = hmp(dm, "qemu-io -d /machine/peripheral/qdm-vblk1/virtio-backend "
                      "\"write -P 0xab 0 512\"");
        print_message("writing the read-only disk: %s", out);
        assert_non_null(strstr(out, "ead-only"));
        free(out);

        /* The fds QEMU holds for them are the disks. */
        proc_fd *fds = NULL;
        size_t n_fds = 0;
        unsigned n_rw = 0, n_ro = 0;
        assert_int_equal(proc_list_fds(qdm_dm_get_pid(dm), &fds, &n_fds), 0);
        for (size_t i = 0; i < n_fds; i++) {
                n_rw += strcmp(fds[i].target, rw) == 0;
                n_ro += strcmp(fds[i].target, ro) == 0;
        }
        proc_fds_free(fds, n_fds);
        assert_true(n_rw >= 1);
        assert_true(n_ro >= 1);

        /* The guest runs with them. */
        dm_done d = {0};
        assert_int_equal(qdm_dm_resume(dm, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        qdm_dm_unref(dm);
        free(rw);
        free(ro);
}

/* A jailed QEMU cannot open host paths: neither a host file, nor the disk it was given as an
 * fd (by its path), nor /proc; and what its jail does show it (its own binary, say), it
 * cannot open for writing. */
static void test_jail_no_host_paths(void **state)
{
        fixture *f = *state;
        char *disk = make_image(f, "disk.raw", 1024 * 1024);
        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-paths\", \"machine\": \"q35\", "
                                       "\"memory_mib\": 64, \"disks\": [{\"path\": \"%s\", "
                                       "\"format\": \"raw\"}], \"restrict\": {\"mode\": "
                                       "\"jail\"}}",
                                       disk),
                           0);
        char *sock = NULL;
        assert_true(asprintf(&sock, "%s/j-paths/qmp.sock", f->dm.run_dir) > 0);
        const char *paths[] = {"/etc/passwd", disk, "/proc/self/environ", sock,
                               "/usr/bin/qemu-system-x86_64,format=raw,auto-read-only=off"};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                char *cmd = NULL;
                assert_true(asprintf(&cmd, "drive_add 0 if=none,id=x%zu,file=%s", i, paths[i]) > 0);
                char *out = hmp(dm, cmd);
                print_message("%s: %s", cmd, out);
                assert_non_null(strstr(out, "Could not open"));
                free(out);
                free(cmd);
        }
        json_object *blocks = qmp(dm, "query-block", NULL);
        assert_int_equal(json_object_array_length(blocks), 1);
        json_object_put(blocks);
        qdm_dm_unref(dm);
        free(sock);
        free(disk);
}

/* ---- direct kernel boot ------------------------------------------------------------------ */

/* A small kernel a Debian package ships: iPXE's Linux-format image (package ipxe, which
 * scripts/install-deps.sh installs), else an installed linux-image's vmlinuz. */
static char *find_kernel(bool *ret_ipxe)
{
        *ret_ipxe = access("/boot/ipxe.lkrn", R_OK) == 0;
        if (*ret_ipxe)
                return strdup("/boot/ipxe.lkrn");
        glob_t g;
        char *k = NULL;
        if (glob("/boot/vmlinuz-*", 0, NULL, &g) == 0 && g.gl_pathc > 0)
                k = strdup(g.gl_pathv[g.gl_pathc - 1]);
        globfree(&g);
        return k;
}

/* Bytes of guest-physical memory, through HMP "xp". */
static size_t guest_read(qdm_dm *dm, uint64_t addr, unsigned char *buf, size_t n)
{
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "xp /%zuxb 0x%llx", n, (unsigned long long)addr);
        char *out = hmp(dm, cmd);
        size_t got = 0;
        for (char *line = out; line && *line && got < n;) {
                char *colon = strchr(line, ':');
                char *end = strchr(line, '\n');
                if (!colon)
                        break;
                for (char *p = colon + 1; got < n && (p = strstr(p, "0x")) && (!end || p < end);
                     p += 2)
                        buf[got++] = (unsigned char)strtoul(p, NULL, 16);
                line = end ? end + 1 : NULL;
        }
        free(out);
        return got;
}

static void test_jail_kernel_boot(void **state)
{
        fixture *f = *state;
        bool ipxe = false;
        char *kernel = find_kernel(&ipxe);
        if (!kernel) {
                print_message("SKIPPED: no kernel installed (neither /boot/ipxe.lkrn from the "
                              "ipxe package nor /boot/vmlinuz-*)\n");
                skip();
        }
        print_message("kernel: %s\n", kernel);
        char *initrd = NULL;
        assert_true(asprintf(&initrd, "%s/initrd.img", f->dm.dir) > 0);
        static const char initrd_data[] = "qdm initrd, bound into the jail";
        int fd = open(initrd, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, initrd_data, sizeof(initrd_data)), (ssize_t)sizeof(initrd_data));
        close(fd);

        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-kernel\", \"machine\": \"q35\", "
                                       "\"memory_mib\": 128, \"kernel\": \"%s\", \"initrd\": "
                                       "\"%s\", \"append\": \"console=ttyS0\", \"restrict\": "
                                       "{\"mode\": \"jail\"}}",
                                       kernel, initrd),
                           0);
        check_jailed(f, dm, "j-kernel");
        /* QEMU read /kernel and /initrd from its jail at machine creation (it fails to start
         * otherwise) and set up its Linux loader option ROM. */
        char *roms = hmp(dm, "info roms");
        assert_non_null(strstr(roms, "linuxboot"));
        free(roms);

        dm_done d = {0};
        assert_int_equal(qdm_dm_resume(dm, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        if (ipxe) {
                /* The firmware copies the kernel's protected-mode part to 1 MiB, and the
                 * initrd where the setup header (at 64 KiB for boot protocol >= 2.02) says:
                 * compare both with the files. */
                unsigned char want[16], have[16], hdr[4];
                fd = open(kernel, O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                unsigned char setup_sects = 0;
                assert_int_equal(pread(fd, &setup_sects, 1, 0x1f1), 1);
                off_t prot = ((off_t)(setup_sects ? setup_sects : 4) + 1) * 512;
                assert_int_equal(pread(fd, want, sizeof(want), prot), (ssize_t)sizeof(want));
                close(fd);
                bool kernel_seen = false, initrd_seen = false;
                /* Up to 30 s: TCG under a loaded CI machine (or ASan) is slow to get there. */
                for (int i = 0; i < 600 && !(kernel_seen && initrd_seen); i++) {
                        usleep(50 * 1000);
                        kernel_seen =
                                guest_read(dm, 0x100000, have, sizeof(have)) == sizeof(have) &&
                                memcmp(have, want, sizeof(want)) == 0;
                        if (guest_read(dm, 0x10218, hdr, sizeof(hdr)) != sizeof(hdr))
                                continue;
                        uint64_t at = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint64_t)hdr[3] << 24;
                        initrd_seen = at != 0 &&
                                      guest_read(dm, at, have, sizeof(have)) == sizeof(have) &&
                                      memcmp(have, initrd_data, sizeof(have)) == 0;
                }
                assert_true(kernel_seen);
                assert_true(initrd_seen);
        }
        json_object *st = qmp(dm, "query-status", NULL);
        json_object *running = NULL;
        assert_true(json_object_object_get_ex(st, "running", &running));
        assert_true(json_object_get_boolean(running));
        json_object_put(st);
        qdm_dm_unref(dm);
        free(kernel);
        free(initrd);
}

/* The jailed QEMU opens the kernel as the device model's uid: a kernel only root can read is
 * refused before QEMU starts, naming the file and the fix. */
static void test_jail_kernel_unreadable(void **state)
{
        fixture *f = *state;
        char *kernel = NULL;
        assert_true(asprintf(&kernel, "%s/vmlinuz", f->dm.dir) > 0);
        int fd = open(kernel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "not a kernel", 12), 12);
        close(fd);
        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-secret\", \"machine\": \"q35\", "
                                       "\"kernel\": \"%s\", \"restrict\": {\"mode\": \"jail\"}}",
                                       kernel),
                           -EACCES);
        const char *e = qdm_dm_get_error(dm);
        print_message("%s\n", e);
        assert_non_null(strstr(e, kernel));
        assert_non_null(strstr(e, "(mode 0600) is not readable by others"));
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_FAILED);
        qdm_dm_unref(dm);
        free(kernel);
}

/* ---- namespaces --------------------------------------------------------------------------- */

/* With a PID namespace, QEMU is that namespace's init: NSpid shows its host pid and 1. The
 * pid and pidfd qdm holds are QEMU's own, so killing QEMU ends the device model at once, with
 * QEMU's own exit status. */
static void test_jail_pid_net_namespaces(void **state)
{
        fixture *f = *state;
        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-ns\", \"machine\": \"none\", "
                                       "\"restrict\": {\"mode\": \"jail\", \"namespaces\": "
                                       "{\"net\": true, \"pid\": true}}}"),
                           0);
        pid_t pid = qdm_dm_get_pid(dm);
        check_jailed(f, dm, "j-ns");
        assert_int_not_equal(test_ns_ino(pid, "net"), test_ns_ino(getpid(), "net"));
        assert_int_not_equal(test_ns_ino(pid, "pid"), test_ns_ino(getpid(), "pid"));

        char path[64], line[256], nspid[256] = "";
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        FILE *s = fopen(path, "re");
        assert_non_null(s);
        while (fgets(line, sizeof(line), s))
                if (strncmp(line, "NSpid:", 6) == 0)
                        snprintf(nspid, sizeof(nspid), "%s", line + 6);
        fclose(s);
        char want[64];
        snprintf(want, sizeof(want), "\t%d\t1\n", (int)pid);
        assert_string_equal(nspid, want);
        /* Its cmdline is QEMU's: the process qdm watches is QEMU, not a helper. */
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        s = fopen(path, "re");
        assert_non_null(s);
        assert_non_null(fgets(line, sizeof(line), s));
        fclose(s);
        assert_non_null(strstr(line, "qemu-system-x86_64"));

        uint64_t t0 = now_usec();
        kill(pid, SIGKILL);
        dm_fixture_wait_exited(&f->dm, dm);
        int status = 0;
        assert_int_equal(qdm_dm_get_exit(dm, &status), 0);
        assert_int_equal(status, -SIGKILL);
        print_message("QEMU's death noticed after %.1f ms\n", (double)(now_usec() - t0) / 1000);
        qdm_dm_unref(dm);
}

/* ---- KVM ------------------------------------------------------------------------------------ */

/* Replace /dev/kvm, for this test process only, by a node for the same device with the given
 * owner group and mode: a private mount namespace (nothing propagates to the host) with the
 * node on a tmpfs bound over /dev/kvm. Device models started meanwhile inherit it. */
static void fake_kvm(fixture *f, gid_t gid, mode_t mode)
{
        struct stat st;
        assert_int_equal(stat("/dev/kvm", &st), 0);
        f->saved_mnt_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        assert_true(f->saved_mnt_ns >= 0);
        assert_int_equal(unshare(CLONE_NEWNS), 0);
        assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        f->kvm_dir = test_mkdtemp("kvm");
        assert_non_null(f->kvm_dir);
        assert_int_equal(mount("tmpfs", f->kvm_dir, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"),
                         0);
        char *node = NULL;
        assert_true(asprintf(&node, "%s/kvm", f->kvm_dir) > 0);
        assert_int_equal(mknod(node, S_IFCHR | 0600, st.st_rdev), 0);
        assert_int_equal(chown(node, 0, gid), 0);
        assert_int_equal(chmod(node, mode), 0);
        assert_int_equal(mount(node, "/dev/kvm", NULL, MS_BIND, NULL), 0);
        free(node);
}

static void restore_kvm(fixture *f)
{
        if (f->saved_mnt_ns < 0)
                return;
        char cwd[4096];
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(setns(f->saved_mnt_ns, CLONE_NEWNS), 0);
        assert_int_equal(chdir(cwd), 0);
        f->saved_mnt_ns = safe_close(f->saved_mnt_ns);
        test_rm_rf(f->kvm_dir); /* the tmpfs was only in the private namespace */
        free(f->kvm_dir);
        f->kvm_dir = NULL;
}

static bool kvm_accel_enabled(qdm_dm *dm)
{
        json_object *k = qmp(dm, "query-kvm", NULL), *enabled = NULL;
        assert_true(json_object_object_get_ex(k, "enabled", &enabled));
        bool on = json_object_get_boolean(enabled);
        json_object_put(k);
        return on;
}

/* root:root 0600 (this machine's own /dev/kvm is so, Debian's default is root:kvm 0660): a
 * device model's uid cannot open it. accel "kvm" fails with exactly what to change; accel
 * "auto" falls back to TCG, which is what "auto" means. */
static void test_jail_kvm_not_usable(void **state)
{
        fixture *f = *state;
        if (access("/dev/kvm", F_OK) < 0) {
                print_message("SKIPPED: no /dev/kvm on this host\n");
                skip();
        }
        fake_kvm(f, 0, 0600);
        qdm_dm *dm = start(f,
                           test_config("{\"name\": \"j-kvm\", \"machine\": \"none\", \"accel\": "
                                       "\"kvm\", \"restrict\": {\"mode\": \"jail\"}}"),
                           -EACCES);
        char *want = NULL;
        assert_true(asprintf(&want,
                             "accel \"kvm\": /dev/kvm is root:root mode 0600, so the jailed "
                             "device model (uid %u) cannot open it: make it group-accessible "
                             "with \"chgrp kvm /dev/kvm && chmod 0660 /dev/kvm\" (or a udev rule: "
                             "KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\")",
                             (unsigned)qdm_dm_get_uid(dm)) > 0);
        assert_string_equal(qdm_dm_get_error(dm), want);
        free(want);
        assert_int_equal(f->dm.n_seen, 0); /* refused before any QEMU ran */
        qdm_dm_unref(dm);

        dm = start(f,
                   test_config("{\"name\": \"j-auto\", \"machine\": \"none\", \"restrict\": "
                               "{\"mode\": \"jail\"}}"),
                   0);
        assert_false(kvm_accel_enabled(dm));
        qdm_dm_unref(dm);
}

/* Group-accessible through a group of its own (Debian's root:kvm 0660): the jail gets that
 * group as its only supplementary group, and QEMU really uses KVM. */
static void test_jail_kvm_group(void **state)
{
        fixture *f = *state;
        if (!test_kvm_usable()) {
                print_message("SKIPPED: KVM is not usable on this host\n");
                skip();
        }
        struct group *g = getgrnam("kvm");
        gid_t gid = g ? g->gr_gid : 64990; /* no kvm group here: any group but root's works */
        fake_kvm(f, gid, 0660);
        qdm_dm *dm =
                start(f,
                      test_config("{\"name\": \"j-kvm\", \"machine\": \"q35\", \"memory_mib\": "
                                  "64, \"accel\": \"kvm\", \"restrict\": {\"mode\": "
                                  "\"jail\"}}"),
                      0);
        check_jailed(f, dm, "j-kvm");
        assert_true(kvm_accel_enabled(dm));
        char path[64], line[256], groups[256] = "";
        snprintf(path, sizeof(path), "/proc/%d/status", (int)qdm_dm_get_pid(dm));
        FILE *s = fopen(path, "re");
        assert_non_null(s);
        while (fgets(line, sizeof(line), s))
                if (strncmp(line, "Groups:", 7) == 0)
                        snprintf(groups, sizeof(groups), "%s", line + 7);
        fclose(s);
        char want[64];
        snprintf(want, sizeof(want), "\t%u \n", (unsigned)gid);
        assert_string_equal(groups, want);
        dm_done d = {0};
        assert_int_equal(qdm_dm_resume(dm, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        qdm_dm_unref(dm);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_jail_none, setup, teardown),
                cmocka_unit_test_setup_teardown(test_qemu_mode_contrast, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_q35_disks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_no_host_paths, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_kernel_boot, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_kernel_unreadable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_pid_net_namespaces, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_kvm_not_usable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_kvm_group, setup, teardown),
        };
        return cmocka_run_group_tests_name("jail", tests, NULL, NULL);
}
