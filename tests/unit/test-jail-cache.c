/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jail.c's cache of the host files a jail holds (jail_files_find() with a cache_dir): a miss
 * computes and stores, a hit gives the same mounts, any changed input (the binary, a module,
 * a data directory's listing, the probe's data directories) recomputes, per-start inputs
 * (kernel, KVM) are never taken from the cache, and a cache file that is malformed, too big,
 * not ours, writable by others or a symlink is ignored. A fake installation in a temporary
 * directory: PREFIX/bin/qemu (a copy of /usr/bin/true: an ELF executable with libc), one
 * module PREFIX/lib/qemu/accel-test.so, the data directory PREFIX/share/qemu with a link
 * leading outside it.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "argv.h"
#include "jail.h"
#include "test-support.h"
#include "util.h"

typedef struct fixture {
        char *dir, *qemu, *cache_dir, *module_dir, *data_dir;
        qemu_probe probe;
        jail_files expected; /* computed without a cache */
        char *good;          /* the cache file as first stored */
        size_t good_size;
} fixture;

static void write_file(const char *path, const char *data, size_t size, mode_t mode)
{
        unlink(path);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, size), (ssize_t)size);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
        char *data = malloc(4 * 1024 * 1024);
        assert_non_null(data);
        int fd = open(from, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = read(fd, data, 4 * 1024 * 1024);
        assert_true(n > 0);
        close(fd);
        write_file(to, data, (size_t)n, mode);
        free(data);
}

static char *path_of(const fixture *f, const char *rel)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", f->dir, rel) > 0);
        return p;
}

static char *cache_file(const fixture *f)
{
        char *canon = realpath(f->qemu, NULL);
        assert_non_null(canon);
        char *p = probe_cache_path(f->cache_dir, "jail", canon, ".txt");
        assert_non_null(p);
        free(canon);
        return p;
}

/* jail_files_find() with the fixture's binary and probe; returns whether the cache was used. */
static bool find(const fixture *f, const char *cache_dir, const char *kernel, bool kvm,
                 jail_files *ret)
{
        jail_params p = {
                .qemu = f->qemu,
                .probe = &f->probe,
                .kvm = kvm,
                .kernel = kernel,
                .cache_dir = cache_dir,
        };
        char *error = NULL;
        int r = jail_files_find(&p, ret, &error);
        if (r < 0)
                fail_msg("jail_files_find: %s", error ? error : strerror(-r));
        free(error);
        return ret->cached;
}

static void assert_same_mounts(const jail_files *a, const jail_files *b)
{
        assert_string_equal(a->exec_path, b->exec_path);
        assert_int_equal(a->n_mounts, b->n_mounts);
        for (size_t i = 0; i < a->n_mounts; i++) {
                assert_string_equal(a->mounts[i].source, b->mounts[i].source);
                assert_string_equal(a->mounts[i].target, b->mounts[i].target);
                assert_int_equal(a->mounts[i].flags, b->mounts[i].flags);
        }
}

static bool has_target(const jail_files *j, const char *target)
{
        for (size_t i = 0; i < j->n_mounts; i++)
                if (strcmp(j->mounts[i].target, target) == 0)
                        return true;
        return false;
}

/* Uncached and cached must agree; returns whether the cache was used. */
static bool find_checked(const fixture *f, const jail_files *expected)
{
        jail_files got = {0};
        bool cached = find(f, f->cache_dir, NULL, false, &got);
        assert_same_mounts(expected, &got);
        jail_files_done(&got);
        return cached;
}

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->dir = test_mkdtemp("jail-cache");
        const char *dirs[] = {"bin",        "lib",         "lib/qemu", "share",
                              "share/qemu", "share/other", "cache"};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                char *d = path_of(f, dirs[i]);
                assert_int_equal(mkdir(d, 0755), 0);
                free(d);
        }
        f->qemu = path_of(f, "bin/qemu");
        f->cache_dir = path_of(f, "cache");
        assert_int_equal(chmod(f->cache_dir, 0700), 0);
        f->module_dir = path_of(f, "lib/qemu");
        f->data_dir = path_of(f, "share/qemu");
        copy_file("/usr/bin/true", f->qemu, 0755);
        char *module = path_of(f, "lib/qemu/accel-test.so");
        copy_file("/usr/bin/true", module, 0644);
        free(module);
        char *fw = path_of(f, "share/other/fw.bin"), *fw_link = path_of(f, "share/qemu/fw.bin");
        write_file(fw, "firmware", 8, 0644);
        assert_int_equal(symlink("../other/fw.bin", fw_link), 0);
        free(fw);
        free(fw_link);
        f->probe.data_dirs_known = true;
        f->probe.n_data_dirs = 1;
        snprintf(f->probe.data_dirs[0], sizeof(f->probe.data_dirs[0]), "%s", f->data_dir);

        /* Nothing read may be younger than 2 s when a result is stored (jail.c: a change in
         * the same clock tick would go unseen): let the fresh files age. */
        usleep(2100 * 1000);

        assert_false(find(f, NULL, NULL, false, &f->expected));
        char *fwt = path_of(f, "share/other/fw.bin");
        assert_true(has_target(&f->expected, fwt));
        free(fwt);
        assert_true(has_target(&f->expected, f->expected.exec_path));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        jail_files_done(&f->expected);
        test_rm_rf(f->dir);
        free(f->dir);
        free(f->qemu);
        free(f->cache_dir);
        free(f->module_dir);
        free(f->data_dir);
        free(f->good);
        free(f);
        return 0;
}

/* A miss stores (mode 0600), a hit gives the same mounts. */
static void test_miss_then_hit(void **state)
{
        fixture *f = *state;
        assert_false(find_checked(f, &f->expected));
        char *file = cache_file(f);
        struct stat st;
        assert_int_equal(lstat(file, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_true(find_checked(f, &f->expected));
        assert_true(find_checked(f, &f->expected));
        assert_int_equal(probe_cache_read(file, 1024 * 1024, &f->good, &f->good_size), 0);
        assert_non_null(strstr(f->good, "/lib/qemu/accel-test.so\n"));
        free(file);
}

/* Kernel and KVM come from the start, never from the cache. */
static void test_per_start(void **state)
{
        fixture *f = *state;
        char *kernel = path_of(f, "share/other/fw.bin");
        jail_files got = {0};
        assert_true(find(f, f->cache_dir, kernel, false, &got));
        assert_true(has_target(&got, QDM_JAIL_KERNEL));
        assert_int_equal(got.n_mounts, f->expected.n_mounts + 1);
        jail_files_done(&got);
        assert_true(find(f, f->cache_dir, NULL, false, &got));
        assert_false(has_target(&got, QDM_JAIL_KERNEL));
        jail_files_done(&got);
        struct stat st;
        if (stat("/dev/kvm", &st) == 0 && S_ISCHR(st.st_mode)) {
                assert_true(find(f, f->cache_dir, NULL, true, &got));
                assert_true(has_target(&got, "/dev/kvm"));
                jail_files_done(&got);
        }
        assert_false(has_target(&f->expected, "/dev/kvm"));
        free(kernel);
}

/* Each variant of the stored file is refused (the result computed again, and right); the
 * stored file itself, put back, is used. */
static void test_malformed(void **state)
{
        fixture *f = *state;
        char *file = cache_file(f);
        assert_non_null(f->good);
        const char *mutations[][2] = {
                {"\nend\n", "\n"},                              /* truncated */
                {"\nend\n", "\nend\nm\t0\t/bin/sh\t/bin/sh\n"}, /* after the end */
                {"qdm-jail-cache\t1\t", "qdm-jail-cache\t999\t"},
                {"\nexec\t", "\nexec\t/usr/bin/env\n#"},
                {"\nm\t4\t", "\nm\t8\t"},      /* unknown flags */
                {"\nm\t4\t", "\nm\t04\t"},     /* a leading zero */
                {"\nm\t4\t", "\nm\t-4\t"},     /* a sign */
                {"\nm\t4\t", "\nm\t4\t\t"},    /* an empty field */
                {"\nm\t4\t", "\nm\t4\tx\t"},   /* one field too many */
                {"\nm\t4\t/", "\nm\t4\tusr/"}, /* a relative source */
                {"\nf\t0\t", "\nf\t0\t99999999999999999999999\t"},
                {"\nf\t0\t", "\nf\t1\t"}, /* says missing: it is not */
                {"\nf\t0\t", "\nq\t0\t"}, /* unknown record */
                {"\nl\t0\t", "\nl\t0\t1"},
                {"\ndata\t", "\ndata\t/nowhere\ndata\t"}, /* a data directory more */
        };
        for (size_t i = 0; i < ELEMENTSOF(mutations); i++) {
                const char *at = strstr(f->good, mutations[i][0]);
                if (!at)
                        fail_msg("mutation %zu: \"%s\" not in the cache file", i, mutations[i][0]);
                char *bad = NULL;
                assert_true(asprintf(&bad, "%.*s%s%s", (int)(at - f->good), f->good,
                                     mutations[i][1], at + strlen(mutations[i][0])) > 0);
                write_file(file, bad, strlen(bad), 0600);
                if (find_checked(f, &f->expected))
                        fail_msg("mutation %zu was used: %s -> %s", i, mutations[i][0],
                                 mutations[i][1]);
                free(bad);
        }
        /* A NUL inside; a target that is not clean; "/" as a target. */
        char *bad = malloc(f->good_size);
        assert_non_null(bad);
        memcpy(bad, f->good, f->good_size);
        bad[f->good_size / 2] = '\0';
        write_file(file, bad, f->good_size, 0600);
        assert_false(find_checked(f, &f->expected));
        free(bad);
        const char *targets[] = {"/../etc/shadow", "/", "/a//b", "/a/./b", "relative"};
        for (size_t i = 0; i < ELEMENTSOF(targets); i++) {
                const char *end = strstr(f->good, "end\n");
                assert_non_null(end);
                assert_true(asprintf(&bad, "%.*sm\t0\t/etc/hostname\t%s\nend\n",
                                     (int)(end - f->good), f->good, targets[i]) > 0);
                write_file(file, bad, strlen(bad), 0600);
                assert_false(find_checked(f, &f->expected));
                free(bad);
        }
        /* Too big. */
        size_t big = 1024 * 1024 + 16;
        bad = malloc(big);
        assert_non_null(bad);
        memcpy(bad, f->good, f->good_size);
        memset(bad + f->good_size, '\n', big - f->good_size);
        write_file(file, bad, big, 0600);
        assert_false(find_checked(f, &f->expected));
        free(bad);

        /* The good file: used. Writable by others, not ours, a symlink: not. */
        write_file(file, f->good, f->good_size, 0600);
        assert_true(find_checked(f, &f->expected));
        write_file(file, f->good, f->good_size, 0622);
        assert_false(find_checked(f, &f->expected));
        if (geteuid() == 0) {
                write_file(file, f->good, f->good_size, 0600);
                assert_int_equal(chown(file, 1234, 1234), 0);
                assert_false(find_checked(f, &f->expected));
        }
        char *elsewhere = path_of(f, "good-cache");
        write_file(elsewhere, f->good, f->good_size, 0600);
        unlink(file);
        assert_int_equal(symlink(elsewhere, file), 0);
        assert_false(find_checked(f, &f->expected));
        free(elsewhere);
        write_file(file, f->good, f->good_size, 0600);
        assert_true(find_checked(f, &f->expected));
        free(file);
}

/* A changed input: computed again, with what changed. */
static void test_stale(void **state)
{
        fixture *f = *state;
        char *file = cache_file(f);
        jail_files got = {0};

        /* Other data directories in the probe. */
        qemu_probe saved = f->probe;
        f->probe.n_data_dirs = 0;
        assert_false(find(f, f->cache_dir, NULL, false, &got));
        jail_files_done(&got);
        f->probe = saved;
        write_file(file, f->good, f->good_size, 0600);
        assert_true(find_checked(f, &f->expected));

        /* The binary's timestamps put back as they were: its ctime still tells. */
        struct stat st;
        assert_int_equal(stat(f->qemu, &st), 0);
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        assert_int_equal(utimensat(AT_FDCWD, f->qemu, times, 0), 0);
        assert_false(find_checked(f, &f->expected));

        /* A module more, a link more in a data directory. */
        char *module = path_of(f, "lib/qemu/hw-test.so");
        copy_file("/usr/bin/true", module, 0644);
        assert_false(find(f, f->cache_dir, NULL, false, &got));
        assert_true(has_target(&got, module));
        jail_files_done(&got);
        unlink(module);
        free(module);
        char *fw2 = path_of(f, "share/other/fw2.bin"), *link2 = path_of(f, "share/qemu/fw2.bin");
        write_file(fw2, "x", 1, 0644);
        assert_int_equal(symlink("../other/fw2.bin", link2), 0);
        assert_false(find(f, f->cache_dir, NULL, false, &got));
        assert_true(has_target(&got, fw2));
        jail_files_done(&got);
        unlink(link2);
        unlink(fw2);
        free(fw2);
        free(link2);

        /* Everything as it was, but changed within the last 2 s: not stored yet. */
        assert_false(find_checked(f, &f->expected));
        assert_false(find_checked(f, &f->expected));
        free(file);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_miss_then_hit),
                cmocka_unit_test(test_per_start),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_stale),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
