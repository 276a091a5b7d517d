/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the tests share: finding QEMU and the fake QMP server, starting them on a listening
 * socket the test owns (as qdm does, R5), and the leak checks every test ends with.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes of heap this process has in use right now (live allocations, not RSS: sanitizers'
 * quarantines and allocator caches would hide or fake growth in RSS). */
size_t test_heap_in_use(void);

/* Number of open fds of this process. */
int test_count_fds(void);

/* Make a fresh private directory under $TMPDIR (or /tmp); remove it recursively. */
char *test_mkdtemp(const char *tag);
void test_rm_rf(const char *path);

/* Path of qemu-system-x86_64 ($QDM_TEST_QEMU overrides), or NULL when not installed. */
const char *test_qemu_binary(void);
/* Is /dev/kvm usable by this process? */
bool test_kvm_usable(void);
/* Path of a binary built in this tree, e.g. "tests/fake/fake-qmp". Caller frees. */
char *test_build_path(const char *relative);

/* A process started by a test: its pid, a pidfd and the socket path it serves. */
typedef struct test_proc {
        pid_t pid;
        int pidfd;
        char *dir;         /* private directory holding the socket; removed by test_proc_stop */
        char *socket_path; /* the listening socket the test created and handed over */
} test_proc;

/* Bind and listen on dir/name.sock (backlog 1 like QEMU's own) and start argv with the
 * listening socket as fd 3; "@FD@" in argv is replaced by "3". stderr goes to /dev/null
 * unless QDM_TEST_VERBOSE is set. Returns 0 or a negative errno. */
int test_proc_start(char *const *argv, const char *tag, test_proc *ret);
/* Real QEMU: -S -nodefaults -nographic -machine none (plus extra args), monitor on fd 3. */
int test_qemu_start(const char *const *extra_args, test_proc *ret);
/* The fake QMP server in the given mode, with extra args. */
int test_fake_start(const char *mode, const char *const *extra_args, test_proc *ret);
/* SIGKILL (if still alive), reap, remove the directory. Returns how it ended (wait status). */
int test_proc_stop(test_proc *p);
/* Wait up to timeout_ms for the process to exit by itself; returns 0 or -ETIMEDOUT. */
int test_proc_wait(test_proc *p, int timeout_ms);

/* The fake QMP server in the given mode (and --delay-ms delay_ms, unless NULL), logging what
 * it does to log_path, a file in a fresh private directory named after tag. Returns 0 or a
 * negative errno; test_fake_logged_stop() undoes what it did either way. */
typedef struct test_fake_logged {
        test_proc proc;
        char *log_dir;
        char *log_path;
} test_fake_logged;

int test_fake_logged_start(const char *mode, const char *delay_ms, const char *tag,
                           test_fake_logged *ret);
/* test_proc_stop() (again, if the test stopped it already), and remove the log. */
void test_fake_logged_stop(test_fake_logged *f);

/* A QMP command's outcome (qdm_qmp_reply_fn): test_result_cb with a test_result as userdata
 * counts the calls and keeps the error and the reply's JSON (truncated). */
struct qdm_qmp;
struct qdm_qmp_message;
typedef struct test_result {
        unsigned calls;
        int error;
        char json[256];
} test_result;

void test_result_cb(struct qdm_qmp *qmp, int error, const struct qdm_qmp_message *m,
                    void *userdata);

/* The inode of pid's namespace ns ("mnt", "ipc", ...); fails the test when unreadable. */
uint64_t test_ns_ino(pid_t pid, const char *ns);

/* A configuration from printf-style JSON text; fails the test (with the parser's message)
 * when it does not parse. The caller frees it with qdm_config_free(). */
struct qdm_config;
struct qdm_config *test_config(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Nothing of the device models a test started may survive it: none of their QEMU pids (our
 * own children, reaped by the library, so gone from /proc), no process of their uids (0 and
 * our own uid are skipped), and only dot-directories in run_dir. Fails the test otherwise. */
void test_assert_no_device_models(const char *run_dir, const pid_t *pids, const uid_t *uids,
                                  size_t n);

/* A blocking raw QMP client for tests that must behave "naively" (e.g. hang up early). */
int test_raw_connect(const char *path);
/* Read one line (without the newline) into buf; returns its length, 0 on EOF, -ETIMEDOUT. */
ssize_t test_raw_readline(int fd, char *buf, size_t size, int timeout_ms);
int test_raw_send(int fd, const char *text);

/* Read at most size - 1 bytes of PATH into BUF, NUL-terminated. Returns the byte count, or a
 * negative errno. */
ssize_t test_read_file(const char *path, char *buf, size_t size);
