/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "proc.h"
#include "qdm.h"
#include "test-support.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define QDM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QDM_TEST_ASAN 1
#endif
#endif

#ifdef QDM_TEST_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
size_t test_heap_in_use(void)
{
        return __sanitizer_get_current_allocated_bytes();
}
#else
size_t test_heap_in_use(void)
{
        struct mallinfo2 mi = mallinfo2();
        return mi.uordblks + mi.hblkhd;
}
#endif

int test_count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        if (!d)
                return -errno;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the DIR's own fd */
}

char *test_mkdtemp(const char *tag)
{
        const char *base = getenv("TMPDIR");
        char *path = NULL;
        if (asprintf(&path, "%s/qdm-test-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
                return NULL;
        if (!mkdtemp(path)) {
                free(path);
                return NULL;
        }
        return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if (flag == FTW_DP || flag == FTW_D)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

void test_rm_rf(const char *path)
{
        if (path)
                (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *test_qemu_binary(void)
{
        static char found[4096];
        const char *env = getenv("QDM_TEST_QEMU");
        if (env && *env)
                return access(env, X_OK) == 0 ? env : NULL;
        if (found[0])
                return found;
        const char *path = getenv("PATH");
        if (!path)
                path = "/usr/bin:/bin";
        for (const char *dir = path; *dir;) {
                size_t len = strcspn(dir, ":");
                snprintf(found, sizeof(found), "%.*s/qemu-system-x86_64", (int)len, dir);
                if (len > 0 && access(found, X_OK) == 0)
                        return found;
                dir += len + (dir[len] == ':');
        }
        found[0] = '\0';
        return NULL;
}

bool test_kvm_usable(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        close(fd);
        return true;
}

char *test_build_path(const char *relative)
{
        const char *build = getenv("QDM_TEST_BUILD_DIR");
        char *p = NULL;
        if (asprintf(&p, "%s/%s", build && *build ? build : ".", relative) < 0)
                return NULL;
        return p;
}

static int listen_unix(const char *path)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path)) {
                close(fd);
                return -ENAMETOOLONG;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int test_proc_start(char *const *argv, const char *tag, test_proc *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->pid = -1;
        ret->pidfd = -1;
        ret->dir = test_mkdtemp(tag);
        if (!ret->dir)
                return -errno;
        if (asprintf(&ret->socket_path, "%s/qmp.sock", ret->dir) < 0)
                return -ENOMEM;
        int lfd = listen_unix(ret->socket_path);
        if (lfd < 0)
                return lfd;

        size_t n = 0;
        while (argv[n])
                n++;
        char **args = calloc(n + 1, sizeof(char *));
        if (!args) {
                close(lfd);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const char *a = argv[i];
                char *at = strstr(a, "@FD@");
                if (at) {
                        if (asprintf(&args[i], "%.*s3%s", (int)(at - a), a, at + 4) < 0)
                                args[i] = NULL;
                } else
                        args[i] = strdup(a);
        }

        bool verbose = getenv("QDM_TEST_VERBOSE") != NULL;
        pid_t pid = fork();
        if (pid == 0) {
                /* A test that crashes must not leave its QEMU behind. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int devnull = open("/dev/null", O_RDWR);
                dup2(devnull, 0);
                dup2(devnull, 1);
                if (!verbose)
                        dup2(devnull, 2);
                if (lfd == 3) /* dup2() onto itself would keep CLOEXEC */
                        fcntl(3, F_SETFD, 0);
                else
                        dup2(lfd, 3); /* the copy is without CLOEXEC */
                for (int fd = 4; fd < 1024; fd++)
                        close(fd);
                execv(args[0], args);
                _exit(127);
        }
        int r = pid < 0 ? -errno : 0;
        close(lfd); /* R5: the parent keeps no copy, so the child's death shows as EOF */
        for (size_t i = 0; i < n; i++)
                free(args[i]);
        free(args);
        if (r < 0)
                return r;
        ret->pid = pid;
        ret->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        return 0;
}

int test_qemu_start(const char *const *extra_args, test_proc *ret)
{
        const char *qemu = test_qemu_binary();
        if (!qemu)
                return -ENOENT;
        const char *base[] = {qemu,          "-S",
                              "-nodefaults", "-nographic",
                              "-machine",    "none",
                              "-chardev",    "socket,id=qmp,fd=@FD@,server=on,wait=off",
                              "-mon",        "chardev=qmp,mode=control"};
        const char *argv[64];
        size_t n = 0;
        for (size_t i = 0; i < ELEMENTSOF(base); i++)
                argv[n++] = base[i];
        for (size_t i = 0; extra_args && extra_args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = extra_args[i];
        argv[n] = NULL;
        return test_proc_start((char *const *)argv, "qemu", ret);
}

int test_fake_start(const char *mode, const char *const *extra_args, test_proc *ret)
{
        _cleanup_free_ char *fake = test_build_path("tests/fake/fake-qmp");
        if (!fake)
                return -ENOMEM;
        const char *argv[64] = {fake, "--fd", "@FD@", "--mode", mode};
        size_t n = 5;
        for (size_t i = 0; extra_args && extra_args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = extra_args[i];
        argv[n] = NULL;
        return test_proc_start((char *const *)argv, "fake", ret);
}

int test_fake_logged_start(const char *mode, const char *delay_ms, const char *tag,
                           test_fake_logged *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->proc.pid = -1;
        ret->proc.pidfd = -1;
        ret->log_dir = test_mkdtemp(tag);
        if (!ret->log_dir)
                return -errno;
        if (asprintf(&ret->log_path, "%s/log", ret->log_dir) < 0) {
                ret->log_path = NULL;
                return -ENOMEM;
        }
        const char *extra[] = {"--log", ret->log_path, delay_ms ? "--delay-ms" : NULL, delay_ms,
                               NULL};
        return test_fake_start(mode, extra, &ret->proc);
}

void test_fake_logged_stop(test_fake_logged *f)
{
        test_proc_stop(&f->proc);
        test_rm_rf(f->log_dir);
        free(f->log_dir);
        free(f->log_path);
        f->log_dir = f->log_path = NULL;
}

int test_proc_wait(test_proc *p, int timeout_ms)
{
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        int r = poll(&pfd, 1, timeout_ms);
        return r > 0 ? 0 : -ETIMEDOUT;
}

int test_proc_stop(test_proc *p)
{
        int status = -1;
        if (p->pid > 0) {
                kill(p->pid, SIGKILL);
                while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
                        ;
                p->pid = -1;
        }
        p->pidfd = safe_close(p->pidfd);
        test_rm_rf(p->dir);
        free(p->dir);
        free(p->socket_path);
        p->dir = p->socket_path = NULL;
        return status;
}

int test_raw_connect(const char *path)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

ssize_t test_raw_readline(int fd, char *buf, size_t size, int timeout_ms)
{
        size_t n = 0;
        while (n + 1 < size) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int r = poll(&pfd, 1, timeout_ms);
                if (r == 0)
                        return -ETIMEDOUT;
                if (r < 0)
                        return -errno;
                ssize_t k = read(fd, buf + n, 1);
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                if (buf[n] == '\n') {
                        if (n > 0 && buf[n - 1] == '\r')
                                n--;
                        buf[n] = '\0';
                        return (ssize_t)n + (n == 0);
                }
                n++;
        }
        buf[n] = '\0';
        return (ssize_t)n;
}

int test_raw_send(int fd, const char *text)
{
        size_t len = strlen(text);
        while (len > 0) {
                ssize_t k = send(fd, text, len, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                text += k;
                len -= (size_t)k;
        }
        return 0;
}

void test_result_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        test_result *r = userdata;
        r->calls++;
        r->error = error;
        if (error == 0)
                snprintf(r->json, sizeof(r->json), "%s", qdm_qmp_message_get_json(m));
}

uint64_t test_ns_ino(pid_t pid, const char *ns)
{
        uint64_t ino = 0;
        assert_int_equal(proc_ns_ino(pid, ns, &ino), 0);
        return ino;
}

struct qdm_config *test_config(const char *fmt, ...)
{
        va_list ap;
        char *json = NULL;
        va_start(ap, fmt);
        assert_true(vasprintf(&json, fmt, ap) > 0);
        va_end(ap);
        qdm_config *c = NULL;
        char *error = NULL;
        int r = qdm_config_new_from_json(json, strlen(json), &c, &error);
        if (r < 0)
                print_message("config error: %s\n", error ? error : "?");
        assert_int_equal(r, 0);
        free(json);
        free(error);
        return c;
}

void test_assert_no_device_models(const char *run_dir, const pid_t *pids, const uid_t *uids,
                                  size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (pids[i] > 0) {
                        char p[64];
                        snprintf(p, sizeof(p), "/proc/%d/status", (int)pids[i]);
                        assert_int_equal(access(p, F_OK), -1);
                }
                if (uids[i] == 0 || uids[i] == geteuid())
                        continue;
                pid_t *all = NULL;
                size_t n_all = 0;
                assert_int_equal(proc_list_pids(&all, &n_all), 0);
                for (size_t j = 0; j < n_all; j++) {
                        proc_status st;
                        if (proc_status_read(all[j], &st) == 0)
                                assert_int_not_equal(st.uid[0], uids[i]);
                }
                free(all);
        }
        DIR *d = opendir(run_dir);
        if (d) {
                struct dirent *de;
                while ((de = readdir(d)))
                        assert_true(de->d_name[0] == '.');
                closedir(d);
        }
}

ssize_t test_read_file(const char *path, char *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, size - 1);
        int e = errno;
        close(fd);
        if (n < 0)
                return -e;
        buf[n] = '\0';
        return n;
}
