/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Golden tests for the argv builder: one golden file (tests/unit/golden/NAME.argv, one
 * argument per line) per option path, compared byte for byte. QDM_UPDATE_GOLDEN=1 rewrites the
 * files instead of comparing; review every changed line before committing them. The models
 * are built here by hand (not through config.c) so the output depends on nothing but the code.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "argv.h"
#include "model.h"
#include "util.h"

#ifndef QDM_TEST_GOLDEN_DIR
#error "QDM_TEST_GOLDEN_DIR must name tests/unit/golden"
#endif

/* The QEMU generations qdm supports, as probe.c would describe them. */
static const qemu_probe probe_7_2 = {
        .major = 7, .minor = 2, .sandbox = true,
        /* -runas, -chroot */
};
static const qemu_probe probe_8_1 = {
        .major = 8,
        .minor = 1,
        .sandbox = true,
        .run_with_chroot = true, /* -run-with chroot=, still -runas */
};
static const qemu_probe probe_9_1 = {
        .major = 9,
        .minor = 1,
        .sandbox = true,
        .run_with_chroot = true,
        .run_with_user = true,
};
static const qemu_probe probe_no_seccomp = {.major = 7, .minor = 2};

static const qdm_argv_params params_default = {
        .monitor_fd = 3,
        .event_fd = -1,
        .chroot_dir = "/run/qdm/vm0/root",
        .uid = 64000,
        .gid = 64000,
        .kvm = false,
};

static char *xstrdup(const char *s)
{
        char *p = strdup(s);
        assert_non_null(p);
        return p;
}

/* What config.c produces for {"name":"vm0","restrict":{"mode":"none"}}, with QEMU at its
 * Debian path. */
static qdm_model *model_new_base(void)
{
        qdm_model *m = calloc(1, sizeof(*m));

        assert_non_null(m);
        m->name = xstrdup("vm0");
        m->qemu = xstrdup("/usr/bin/qemu-system-x86_64");
        m->machine = xstrdup("none");
        m->accel = QDM_ACCEL_AUTO;
        m->restrict_.mode = QDM_RESTRICT_NONE;
        m->restrict_.uid_min = 64000;
        m->restrict_.uid_max = 64999;
        m->start_timeout_ms = 60000;
        return m;
}

static void model_set_machine(qdm_model *m, const char *machine)
{
        free(m->machine);
        m->machine = xstrdup(machine);
}

static void model_add_disk(qdm_model *m, const char *path, const char *format, bool readonly,
                           bool block_device)
{
        qdm_disk *d = realloc(m->disks, (m->n_disks + 1) * sizeof(qdm_disk));

        assert_non_null(d);
        m->disks = d;
        m->disks[m->n_disks++] = (qdm_disk){
                .path = xstrdup(path),
                .format = xstrdup(format),
                .readonly = readonly,
                .block_device = block_device,
        };
}

static void model_set_extra(qdm_model *m, const char *const *args)
{
        size_t n = 0;

        while (args[n])
                n++;
        m->extra_args = calloc(n + 1, sizeof(char *));
        assert_non_null(m->extra_args);
        for (size_t i = 0; i < n; i++)
                m->extra_args[i] = xstrdup(args[i]);
        m->n_extra_args = n;
}

static char *read_file(const char *path)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t size = 0;
        FILE *out;
        int c;

        if (!f)
                return NULL;
        out = open_memstream(&buf, &size);
        assert_non_null(out);
        while ((c = fgetc(f)) != EOF)
                fputc(c, out);
        assert_int_equal(fclose(out), 0);
        return buf;
}

static char *strv_render(char **argv)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&buf, &size);

        assert_non_null(out);
        for (char **a = argv; *a; a++) {
                /* One argument per line is unambiguous only while no argument has a newline. */
                assert_null(strchr(*a, '\n'));
                fprintf(out, "%s\n", *a);
        }
        assert_int_equal(fclose(out), 0);
        return buf;
}

static void report_first_difference(const char *name, const char *expected, const char *actual)
{
        unsigned line = 1;
        size_t i = 0, start = 0;

        while (expected[i] && expected[i] == actual[i]) {
                if (expected[i] == '\n') {
                        line++;
                        start = i + 1;
                }
                i++;
        }
        print_error("golden %s differs at line %u:\n  expected: %.*s\n  actual:   %.*s\n", name,
                    line, (int)strcspn(expected + start, "\n"), expected + start,
                    (int)strcspn(actual + start, "\n"), actual + start);
}

static void check_golden(const char *name, const qdm_model *m, const qemu_probe *probe,
                         const qdm_argv_params *p)
{
        _cleanup_free_ char *path = NULL, *actual = NULL, *expected = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        const char *update = getenv("QDM_UPDATE_GOLDEN");

        assert_int_equal(qdm_argv_build(m, probe, p, &argv), 0);
        assert_non_null(argv);
        assert_string_equal(argv[0], m->qemu);
        actual = strv_render(argv);
        assert_true(asprintf(&path, "%s/%s.argv", QDM_TEST_GOLDEN_DIR, name) > 0);

        if (update && streq_ptr(update, "1")) {
                _cleanup_fclose_ FILE *f = fopen(path, "we");
                assert_non_null(f);
                assert_true(fputs(actual, f) >= 0);
                print_message("updated %s\n", path);
                return;
        }
        expected = read_file(path);
        if (!expected)
                fail_msg("cannot read %s (QDM_UPDATE_GOLDEN=1 creates it)", path);
        if (strcmp(expected, actual) != 0) {
                report_first_difference(name, expected, actual);
                fail_msg("%s does not match (QDM_UPDATE_GOLDEN=1 rewrites it)", path);
        }
}

/* ---- golden: one option path each ------------------------------------------------------- */

static void test_golden_none_tcg(void **state)
{
        qdm_model *m = model_new_base();

        m->accel = QDM_ACCEL_TCG;
        check_golden("none-tcg", m, &probe_7_2, &params_default);
        qdm_model_free(m);
}

static void test_golden_q35_kvm(void **state)
{
        qdm_model *m = model_new_base();
        qdm_argv_params p = params_default;

        model_set_machine(m, "q35");
        p.kvm = true; /* accel "auto" resolved to KVM by the caller */
        check_golden("q35-kvm", m, &probe_7_2, &p);
        qdm_model_free(m);
}

static void test_golden_memory_smp(void **state)
{
        qdm_model *m = model_new_base();

        model_set_machine(m, "pc-q35-7.2");
        m->memory_mib = 2048;
        m->vcpus = 4;
        check_golden("memory-smp", m, &probe_7_2, &params_default);
        qdm_model_free(m);
}

static void test_golden_kernel(void **state)
{
        qdm_model *m = model_new_base();

        model_set_machine(m, "microvm");
        m->kernel = xstrdup("/var/lib/qdm/vmlinuz");
        m->initrd = xstrdup("/var/lib/qdm/initrd.img");
        /* Commas are fine here: -append is not an option string. */
        m->append = xstrdup("console=ttyS0,115200 root=/dev/vda ro quiet");
        check_golden("kernel-initrd-append", m, &probe_7_2, &params_default);
        qdm_model_free(m);
}

static void test_golden_disks(void **state)
{
        qdm_model *m = model_new_base();

        model_set_machine(m, "q35");
        model_add_disk(m, "/var/lib/qdm/root.raw", "raw", false, false);
        model_add_disk(m, "/var/lib/qdm/seed.raw", "raw", true, false);
        model_add_disk(m, "/var/lib/qdm/data.qcow2", "qcow2", false, false);
        model_add_disk(m, "/var/lib/qdm/base.qcow2", "qcow2", true, false);
        model_add_disk(m, "/dev/vg0/vm0-swap", "raw", false, true);
        check_golden("disks", m, &probe_7_2, &params_default);
        qdm_model_free(m);
}

static void test_golden_event_fd(void **state)
{
        qdm_model *m = model_new_base();
        qdm_argv_params p = params_default;

        p.event_fd = 4;
        check_golden("event-fd", m, &probe_7_2, &p);
        qdm_model_free(m);
}

static void test_golden_extra_args(void **state)
{
        qdm_model *m = model_new_base();

        model_set_machine(m, "q35");
        model_set_extra(m, (const char *const[]){"-device", "virtio-rng-pci", "-global",
                                                 "kvm-pit.lost_tick_policy=discard", "-incoming",
                                                 "defer", NULL});
        check_golden("extra-args", m, &probe_7_2, &params_default);
        qdm_model_free(m);
}

static qdm_model *model_new_restricted(qdm_restrict_mode mode)
{
        qdm_model *m = model_new_base();

        model_set_machine(m, "q35");
        m->restrict_.mode = mode;
        return m;
}

static void test_golden_qemu_7_2(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_QEMU);

        check_golden("mode-qemu-7.2", m, &probe_7_2, &params_default);
        qdm_model_free(m);
}

static void test_golden_qemu_8_1(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_QEMU);

        check_golden("mode-qemu-8.1", m, &probe_8_1, &params_default);
        qdm_model_free(m);
}

static void test_golden_qemu_9_1(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_QEMU);

        check_golden("mode-qemu-9.1", m, &probe_9_1, &params_default);
        qdm_model_free(m);
}

static void test_golden_jail(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_JAIL);
        qdm_argv_params p = params_default;

        /* Jail mode drops privileges before exec: chroot/uid must not reach QEMU's argv. */
        p.chroot_dir = NULL;
        p.uid = 0;
        p.gid = 0;
        check_golden("mode-jail", m, &probe_9_1, &p);
        qdm_model_free(m);
}

/* A jailed QEMU opens no host path: disks come as fds in fd sets, kernel and initrd from the
 * fixed places the jail binds them at. */
static void test_golden_jail_disks_kernel(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_JAIL);
        qdm_argv_params p = params_default;
        const int disk_fds[] = {5, 6, 7};

        p.chroot_dir = NULL;
        p.uid = 0;
        p.gid = 0;
        p.event_fd = 4;
        p.disk_fds = disk_fds;
        p.n_disk_fds = ELEMENTSOF(disk_fds);
        m->kernel = xstrdup("/var/lib/qdm/vmlinuz");
        m->initrd = xstrdup("/var/lib/qdm/initrd.img");
        m->append = xstrdup("console=ttyS0");
        model_add_disk(m, "/var/lib/qdm/root.raw", "raw", false, false);
        model_add_disk(m, "/var/lib/qdm/base.qcow2", "qcow2", true, false);
        model_add_disk(m, "/dev/vg0/vm0-swap", "raw", false, true);
        check_golden("mode-jail-disks-kernel", m, &probe_7_2, &p);
        qdm_model_free(m);
}

/* Everything at once, as a libxl-like restricted start on Debian 12 would look. */
static void test_golden_full(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_QEMU);
        qdm_argv_params p = params_default;

        m->accel = QDM_ACCEL_KVM;
        m->memory_mib = 1024;
        m->vcpus = 2;
        m->kernel = xstrdup("/var/lib/qdm/vmlinuz");
        m->initrd = xstrdup("/var/lib/qdm/initrd.img");
        m->append = xstrdup("console=ttyS0");
        model_add_disk(m, "/var/lib/qdm/root.qcow2", "qcow2", false, false);
        model_set_extra(m, (const char *const[]){"-device", "virtio-rng-pci", NULL});
        p.event_fd = 4;
        p.kvm = true;
        check_golden("full", m, &probe_7_2, &p);
        qdm_model_free(m);
}

/* ---- impossible combinations fail closed ------------------------------------------------- */

static void expect_check_error(const qdm_model *m, const qemu_probe *probe,
                               const qdm_argv_params *p, int error, const char *prefix)
{
        _cleanup_free_ char *message = NULL;
        char **argv = NULL;

        assert_int_equal(qdm_argv_check(m, probe, p, &message), error);
        assert_non_null(message);
        if (strncmp(message, prefix, strlen(prefix)) != 0)
                fail_msg("message \"%s\" does not start with \"%s\"", message, prefix);
        /* The builder refuses the same way, and leaves ret_argv alone. */
        assert_int_equal(qdm_argv_build(m, probe, p, &argv), error);
        assert_null(argv);
        /* And the check works without a message too. */
        assert_int_equal(qdm_argv_check(m, probe, p, NULL), error);
}

static void test_no_seccomp(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_QEMU);
        _cleanup_strv_free_ char **argv = NULL;

        expect_check_error(m, &probe_no_seccomp, &params_default, -EINVAL,
                           "-sandbox is not supported by /usr/bin/qemu-system-x86_64: QEMU was "
                           "built without seccomp");
        m->restrict_.mode = QDM_RESTRICT_JAIL;
        expect_check_error(m, &probe_no_seccomp, &params_default, -EINVAL,
                           "-sandbox is not supported by");
        /* Unrestricted starts do not need seccomp, and get no -sandbox. */
        m->restrict_.mode = QDM_RESTRICT_NONE;
        assert_int_equal(qdm_argv_build(m, &probe_no_seccomp, &params_default, &argv), 0);
        for (char **a = argv; *a; a++)
                assert_string_not_equal(*a, "-sandbox");
        qdm_model_free(m);
}

static void test_accel_mismatch(void **state)
{
        qdm_model *m = model_new_base();
        qdm_argv_params p = params_default;

        m->accel = QDM_ACCEL_KVM;
        p.kvm = false;
        expect_check_error(m, &probe_7_2, &p, -EINVAL,
                           "accel \"kvm\" was configured but tcg was chosen");
        m->accel = QDM_ACCEL_TCG;
        p.kvm = true;
        expect_check_error(m, &probe_7_2, &p, -EINVAL,
                           "accel \"tcg\" was configured but kvm was chosen");
        qdm_model_free(m);
}

static void test_bad_fds(void **state)
{
        qdm_model *m = model_new_base();
        qdm_argv_params p = params_default;

        p.monitor_fd = -1;
        expect_check_error(m, &probe_7_2, &p, -EBADF, "invalid monitor fds");
        p.monitor_fd = 3;
        p.event_fd = 3;
        expect_check_error(m, &probe_7_2, &p, -EBADF, "invalid monitor fds (control 3, events 3)");
        p.event_fd = -2;
        expect_check_error(m, &probe_7_2, &p, -EBADF, "invalid monitor fds");
        qdm_model_free(m);
}

static void test_bad_drop(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_QEMU);
        qdm_argv_params p = params_default;

        p.chroot_dir = NULL;
        expect_check_error(m, &probe_7_2, &p, -EINVAL, "restrict.mode \"qemu\" needs an absolute");
        p.chroot_dir = "run/qdm/vm0/root";
        expect_check_error(m, &probe_7_2, &p, -EINVAL, "restrict.mode \"qemu\" needs an absolute");
        p.chroot_dir = "/run/qdm/vm0,user=0:0/root";
        expect_check_error(m, &probe_9_1, &p, -EINVAL, "restrict.mode \"qemu\" needs an absolute");
        p = params_default;
        p.uid = 0;
        expect_check_error(m, &probe_7_2, &p, -EINVAL,
                           "restrict.mode \"qemu\" needs a uid and gid other than 0 and -1 (got "
                           "0:64000)");
        p = params_default;
        p.gid = 0;
        expect_check_error(m, &probe_7_2, &p, -EINVAL, "restrict.mode \"qemu\" needs a uid");
        p = params_default;
        p.uid = (uid_t)-1;
        expect_check_error(m, &probe_7_2, &p, -EINVAL, "restrict.mode \"qemu\" needs a uid");
        qdm_model_free(m);
}

static void test_bad_jail_fds(void **state)
{
        qdm_model *m = model_new_restricted(QDM_RESTRICT_JAIL);
        qdm_argv_params p = params_default;
        int disk_fds[] = {5};

        model_add_disk(m, "/var/lib/qdm/root.raw", "raw", false, false);
        expect_check_error(m, &probe_7_2, &p, -EINVAL,
                           "restrict.mode \"jail\" needs one fd per disk (1 disks, 0 fds)");
        p.disk_fds = disk_fds;
        p.n_disk_fds = 1;
        disk_fds[0] = 3;
        expect_check_error(m, &probe_7_2, &p, -EBADF, "invalid fd 3 for disks[0]");
        disk_fds[0] = -1;
        expect_check_error(m, &probe_7_2, &p, -EBADF, "invalid fd -1 for disks[0]");
        qdm_model_free(m);
}

static void test_strv_free_null(void **state)
{
        assert_null(strv_free(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_golden_none_tcg),
                cmocka_unit_test(test_golden_q35_kvm),
                cmocka_unit_test(test_golden_memory_smp),
                cmocka_unit_test(test_golden_kernel),
                cmocka_unit_test(test_golden_disks),
                cmocka_unit_test(test_golden_event_fd),
                cmocka_unit_test(test_golden_extra_args),
                cmocka_unit_test(test_golden_qemu_7_2),
                cmocka_unit_test(test_golden_qemu_8_1),
                cmocka_unit_test(test_golden_qemu_9_1),
                cmocka_unit_test(test_golden_jail),
                cmocka_unit_test(test_golden_full),
                cmocka_unit_test(test_golden_jail_disks_kernel),
                cmocka_unit_test(test_bad_jail_fds),
                cmocka_unit_test(test_no_seccomp),
                cmocka_unit_test(test_accel_mismatch),
                cmocka_unit_test(test_bad_fds),
                cmocka_unit_test(test_bad_drop),
                cmocka_unit_test(test_strv_free_null),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
