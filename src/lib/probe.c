/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * probe: learn what a QEMU binary supports by asking it, as libxl does: a throwaway
 * `-S -machine none` QEMU on a socketpair monitor answers query-command-line-options for
 * "sandbox" (absent when QEMU was built without seccomp) and "run-with" (QEMU >= 8.1 has
 * chroot=, >= 9.1 user=), then quits. For jail mode only, a second run, `QEMU -L help`, lists
 * the directories QEMU loads firmware and option ROMs from (they depend on how it was built and
 * where it lives; no QMP command tells): a jail binds exactly those.
 *
 * The answer is cached in a small JSON file per binary, keyed by path, device, inode, size and
 * mtime, so a warm start pays one stat() and one small read. A cache entry that does not match
 * or does not parse is ignored and rewritten; the cache is never trusted for anything else.
 * The reading (ours, not writable by others, bounded) and the atomic writing are shared with
 * jail.c's cache (probe_cache_read/_write).
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "loop.h"
#include "probe.h"
#include "qmp-client.h"
#include "spawn.h"
#include "util.h"

#define PROBE_TIMEOUT_USEC     (15 * USEC_PER_SEC)
#define CACHE_MAX_BYTES        8192
#define DATA_DIRS_TIMEOUT_USEC (5 * USEC_PER_SEC)

typedef struct probe_key {
        const char *path;
        uint64_t dev, ino, size, mtime_ns;
} probe_key;

static uint64_t fnv1a(const char *s)
{
        uint64_t h = UINT64_C(14695981039346656037);
        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= UINT64_C(1099511628211);
        }
        return h;
}

char *probe_cache_path(const char *cache_dir, const char *kind, const char *key, const char *suffix)
{
        char *f = NULL;
        if (asprintf(&f, "%s/%s-%016llx%s", cache_dir, kind, (unsigned long long)fnv1a(key),
                     suffix) < 0)
                return NULL;
        return f;
}

int probe_cache_read(const char *file, size_t max, char **ret, size_t *ret_size)
{
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        struct stat st;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022))
                return -EPERM;
        if (st.st_size < 0 || (uint64_t)st.st_size > max)
                return -EFBIG;
        /* One byte more than it claims: a file that grew meanwhile is too big, not cut. */
        size_t size = (size_t)st.st_size, n = 0;
        _cleanup_free_ char *buf = malloc(size + 2);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, size + 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n > size)
                        return -EFBIG;
        }
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

int probe_cache_write(const char *file, const char *data, size_t size)
{
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.XXXXXX", file) < 0)
                return -ENOMEM;
        /* A name of its own (mode 0600), so that concurrent writers, threads included, never
         * share a temporary file; rename() replaces the old cache in one step. */
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        int r = 0;
        for (size_t n = 0; n < size && r == 0;) {
                ssize_t k = write(fd, data + n, size - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        r = k < 0 ? negative_errno() : -EIO;
                else
                        n += (size_t)k;
        }
        if (close(fd) < 0 && r == 0)
                r = negative_errno();
        if (r == 0 && rename(tmp, file) < 0)
                r = negative_errno();
        if (r < 0)
                unlink(tmp);
        return r;
}

static bool get_u64(json_object *o, const char *key, uint64_t *ret)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

static bool get_bool(json_object *o, const char *key, bool *ret)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return false;
        *ret = json_object_get_boolean(v);
        return true;
}

static int cache_load(const char *file, const probe_key *key, qemu_probe *ret)
{
        _cleanup_free_ char *buf = NULL;
        size_t n;
        int k = probe_cache_read(file, CACHE_MAX_BYTES, &buf, &n);
        if (k < 0)
                return k;
        json_object *o = json_tokener_parse(buf);
        if (!o)
                return -EBADMSG;
        json_object *p;
        uint64_t dev, ino, size, mtime, major, minor, micro;
        qemu_probe r = {0};
        bool ok = json_object_is_type(o, json_type_object) &&
                  json_object_object_get_ex(o, "path", &p) &&
                  streq_ptr(json_object_get_string(p), key->path) && get_u64(o, "dev", &dev) &&
                  get_u64(o, "ino", &ino) && get_u64(o, "size", &size) &&
                  get_u64(o, "mtime_ns", &mtime) && dev == key->dev && ino == key->ino &&
                  size == key->size && mtime == key->mtime_ns && get_u64(o, "major", &major) &&
                  get_u64(o, "minor", &minor) && get_u64(o, "micro", &micro) && major < 1000 &&
                  minor < 1000 && micro < 1000 && get_bool(o, "sandbox", &r.sandbox) &&
                  get_bool(o, "run_with_user", &r.run_with_user) &&
                  get_bool(o, "run_with_chroot", &r.run_with_chroot);
        json_object *dirs = NULL;
        if (ok && json_object_object_get_ex(o, "data_dirs", &dirs)) {
                ok = json_object_is_type(dirs, json_type_array) &&
                     json_object_array_length(dirs) <= QEMU_PROBE_MAX_DATA_DIRS;
                r.data_dirs_known = ok;
        }
        for (size_t i = 0; ok && dirs && i < json_object_array_length(dirs); i++) {
                json_object *d = json_object_array_get_idx(dirs, i);
                ok = json_object_is_type(d, json_type_string) &&
                     json_object_get_string_len(d) > 0 &&
                     json_object_get_string_len(d) < QEMU_PROBE_DATA_DIR_MAX;
                if (ok)
                        memcpy(r.data_dirs[r.n_data_dirs++], json_object_get_string(d),
                               (size_t)json_object_get_string_len(d) + 1);
        }
        json_object_put(o);
        if (!ok)
                return -ESTALE;
        r.major = (int)major;
        r.minor = (int)minor;
        r.micro = (int)micro;
        *ret = r;
        return 0;
}

/* Written by rename so a concurrent reader never sees half a file. Best effort: a cache that
 * cannot be written only costs the next start a probe. */
static void cache_store(const char *file, const probe_key *key, const qemu_probe *p)
{
        json_object *o = json_object_new_object();
        if (!o)
                return;
        json_object_object_add(o, "path", json_object_new_string(key->path));
        json_object_object_add(o, "dev", json_object_new_uint64(key->dev));
        json_object_object_add(o, "ino", json_object_new_uint64(key->ino));
        json_object_object_add(o, "size", json_object_new_uint64(key->size));
        json_object_object_add(o, "mtime_ns", json_object_new_uint64(key->mtime_ns));
        json_object_object_add(o, "major", json_object_new_int(p->major));
        json_object_object_add(o, "minor", json_object_new_int(p->minor));
        json_object_object_add(o, "micro", json_object_new_int(p->micro));
        json_object_object_add(o, "sandbox", json_object_new_boolean(p->sandbox));
        json_object_object_add(o, "run_with_user", json_object_new_boolean(p->run_with_user));
        json_object_object_add(o, "run_with_chroot", json_object_new_boolean(p->run_with_chroot));
        if (p->data_dirs_known) {
                json_object *dirs = json_object_new_array();
                for (size_t i = 0; i < p->n_data_dirs; i++)
                        json_object_array_add(dirs, json_object_new_string(p->data_dirs[i]));
                json_object_object_add(o, "data_dirs", dirs);
        }
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (text)
                (void)probe_cache_write(file, text, strlen(text));
        json_object_put(o);
}

/* ---- asking QEMU ------------------------------------------------------------------------ */

typedef struct probe_run {
        qemu_probe result;
        int pending;
        int error;
} probe_run;

static void sandbox_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        probe_run *p = userdata;
        p->pending--;
        /* An error means QEMU does not know -sandbox: built without seccomp. */
        if (error == 0)
                p->result.sandbox = true;
        else if (error != -EREMOTEIO)
                p->error = error;
}

static void run_with_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        probe_run *p = userdata;
        p->pending--;
        if (error == -EREMOTEIO) /* no -run-with: QEMU < 8.1 */
                return;
        if (error < 0) {
                p->error = error;
                return;
        }
        /* [{"option": "run-with", "parameters": [{"name": "chroot", ...}, ...]}] */
        json_object *opts = qmp_message_json(m);
        size_t n = json_object_is_type(opts, json_type_array) ? json_object_array_length(opts) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *params = NULL;
                if (!json_object_object_get_ex(json_object_array_get_idx(opts, i), "parameters",
                                               &params) ||
                    !json_object_is_type(params, json_type_array))
                        continue;
                for (size_t j = 0; j < json_object_array_length(params); j++) {
                        json_object *name = NULL;
                        if (!json_object_object_get_ex(json_object_array_get_idx(params, j), "name",
                                                       &name))
                                continue;
                        const char *s = json_object_get_string(name);
                        if (streq_ptr(s, "user"))
                                p->result.run_with_user = true;
                        else if (streq_ptr(s, "chroot"))
                                p->result.run_with_chroot = true;
                }
        }
}

static void quit_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        probe_run *p = userdata;
        p->pending--;
}

/* What a QEMU that failed the probe said: the end of its stderr, control characters masked
 * (QEMU is untrusted input for the caller's terminal too). */
static char *read_tail(int fd)
{
        char buf[2048];
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t)k;
                if (n == sizeof(buf) - 1) { /* keep the end: QEMU's last words matter most */
                        memmove(buf, buf + n / 2, n - n / 2);
                        n -= n / 2;
                }
        }
        return text_tail_printable(buf, n, sizeof(buf));
}

/* `QEMU -L help`: one directory per line on stdout, then exit 0. Best effort: a QEMU that
 * cannot say leaves the list empty (a jail then has no firmware, and QEMU says what it misses).
 * It runs in a session of its own: on a timeout its whole process group is killed. */
static void probe_data_dirs(const char *binary, uint64_t timeout_usec, qemu_probe *p)
{
        p->data_dirs_known = true;
        p->n_data_dirs = 0;
        if (timeout_usec > DATA_DIRS_TIMEOUT_USEC)
                timeout_usec = DATA_DIRS_TIMEOUT_USEC;
        int out[2];
        if (pipe2(out, O_CLOEXEC) < 0)
                return;
        _cleanup_close_ int out_ours = out[0], out_theirs = out[1];
        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return;
        char *const argv[] = {(char *)binary, "-L", "help", NULL};
        char *const envp[] = {NULL};
        const spawn_fd plan[] = {{out_theirs, 1}, {devnull, 2}};
        spawn_params sp = {
                .path = binary,
                .argv = argv,
                .envp = envp,
                .fds = plan,
                .n_fds = ELEMENTSOF(plan),
                .new_session = true,
        };
        pid_t pid;
        int pidfd_raw;
        if (spawn_process(&sp, &pid, &pidfd_raw, NULL) < 0)
                return;
        _cleanup_close_ int pidfd = pidfd_raw;
        out_theirs = safe_close(out_theirs);

        char buf[QEMU_PROBE_MAX_DATA_DIRS * QEMU_PROBE_DATA_DIR_MAX];
        size_t n = 0;
        bool eof = false;
        uint64_t deadline = usec_add(now_usec(), timeout_usec);
        while (!eof && n < sizeof(buf) - 1) {
                uint64_t now = now_usec();
                if (now >= deadline)
                        break;
                struct pollfd pfd = {.fd = out_ours, .events = POLLIN};
                uint64_t left_ms = (deadline - now) / USEC_PER_MSEC + 1;
                int k = poll(&pfd, 1, left_ms > INT32_MAX ? INT32_MAX : (int)left_ms);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                ssize_t got = read(out_ours, buf + n, sizeof(buf) - 1 - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        eof = true;
                else
                        n += (size_t)got;
        }
        buf[n] = '\0';
        if (!eof) /* pid is ours and unreaped: as group id it cannot have been reused */
                (void)kill(-pid, SIGKILL);
        siginfo_t si = {0};
        if (spawn_reap(pidfd, &si) < 0 || !eof || si.si_code != CLD_EXITED || si.si_status != 0)
                return;
        for (char *line = buf, *next; *line && p->n_data_dirs < QEMU_PROBE_MAX_DATA_DIRS;
             line = next) {
                next = line + strcspn(line, "\n");
                if (*next)
                        *next++ = '\0';
                size_t len = strlen(line);
                if (line[0] == '/' && len < QEMU_PROBE_DATA_DIR_MAX)
                        memcpy(p->data_dirs[p->n_data_dirs++], line, len + 1);
        }
}

static int probe_binary(const char *binary, uint64_t timeout_usec, qemu_probe *ret,
                        char **ret_error)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        _cleanup_close_ int ours = sv[0], theirs = sv[1];
        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return negative_errno();

        char *const argv[] = {(char *)binary,
                              "-S",
                              "-nodefaults",
                              "-no-user-config",
                              "-display",
                              "none",
                              "-machine",
                              "none",
                              "-chardev",
                              "socket,id=probe,fd=3",
                              "-mon",
                              "chardev=probe,mode=control",
                              NULL};
        char *const envp[] = {NULL};
        int err[2];
        if (pipe2(err, O_CLOEXEC) < 0)
                return negative_errno();
        _cleanup_close_ int err_ours = err[0], err_theirs = err[1];
        if (fcntl(err_ours, F_SETFL, O_NONBLOCK) < 0)
                return negative_errno();
        const spawn_fd plan[] = {{err_theirs, 1}, {err_theirs, 2}, {theirs, 3}};
        spawn_params sp = {
                .path = binary,
                .argv = argv,
                .envp = envp,
                .fds = plan,
                .n_fds = ELEMENTSOF(plan),
                .new_session = true,
        };
        pid_t pid;
        int pidfd_raw;
        int r = spawn_process(&sp, &pid, &pidfd_raw, ret_error);
        if (r < 0)
                return r;
        _cleanup_close_ int pidfd = pidfd_raw;
        theirs = safe_close(theirs);
        err_theirs = safe_close(err_theirs);

        /* A private context: probing must not dispatch the caller's objects. */
        qdm_ctx *ctx = NULL;
        qdm_qmp *qmp = NULL;
        probe_run run = {0};
        r = qdm_ctx_new(&ctx);
        if (r >= 0)
                r = qdm_qmp_new(ctx, &qmp);
        if (r >= 0)
                r = qdm_qmp_adopt_fd(qmp, TAKE_FD(ours));
        uint64_t deadline = usec_add(now_usec(), timeout_usec);
        if (r >= 0) {
                r = qdm_qmp_wait_ready(qmp, timeout_usec);
                if (r >= 0)
                        r = qdm_qmp_get_version(qmp, &run.result.major, &run.result.minor,
                                                &run.result.micro);
        }
        if (r >= 0) {
                json_object *sandbox = json_object_new_object();
                json_object *run_with = json_object_new_object();
                json_object_object_add(sandbox, "option", json_object_new_string("sandbox"));
                json_object_object_add(run_with, "option", json_object_new_string("run-with"));
                const struct {
                        const char *command;
                        json_object *args;
                        qdm_qmp_reply_fn fn;
                } steps[] = {
                        {"query-command-line-options", sandbox, sandbox_cb},
                        {"query-command-line-options", run_with, run_with_cb},
                        {"quit", NULL, quit_cb},
                };
                uint64_t now = now_usec(), left = deadline > now ? deadline - now : 1;
                for (size_t i = 0; i < ELEMENTSOF(steps) && r >= 0; i++) {
                        r = qmp_client_send(qmp, steps[i].command, steps[i].args, NULL, 0, left,
                                            steps[i].fn, &run, NULL);
                        if (r >= 0)
                                run.pending++;
                }
                json_object_put(sandbox);
                json_object_put(run_with);
                while (r >= 0 && run.pending > 0)
                        r = qdm_ctx_run(ctx, USEC_INFINITY);
                if (r >= 0)
                        r = run.error;
        }
        /* It quits by itself after "quit". If anything went wrong, kill it before letting go
         * of the monitor (R3: a connection with commands outstanding closes only once its QEMU
         * is gone), then say how it ended and what it said: a QEMU that cannot start at all
         * (a missing library, a bad binary) fails here first. */
        if (r < 0)
                (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        qdm_qmp_unref(qmp);
        (void)qdm_ctx_flush(ctx, PROBE_TIMEOUT_USEC);
        qdm_ctx_unref(ctx);
        siginfo_t si = {0};
        bool died_by_itself = spawn_reap(pidfd, &si) >= 0 &&
                              !(si.si_code == CLD_KILLED && si.si_status == SIGKILL && r < 0);
        if (r < 0 && ret_error) {
                _cleanup_free_ char *how = died_by_itself ? spawn_describe_exit(&si) : NULL;
                _cleanup_free_ char *words = read_tail(err_ours);
                if (asprintf(ret_error, "probing %s failed: %s%s%s%s", binary, how ? "QEMU " : "",
                             how ? how : strerror(-r), words && *words ? ": " : "",
                             words ? words : "") < 0)
                        *ret_error = NULL;
        }
        if (r < 0)
                return died_by_itself ? -ESRCH : r;
        *ret = run.result;
        return 0;
}

int qemu_probe_get(const char *binary, const char *cache_dir, uint64_t timeout_usec,
                   bool want_data_dirs, qemu_probe *ret, char **ret_error)
{
        struct stat st;
        if (stat(binary, &st) < 0) {
                int r = negative_errno();
                if (ret_error && asprintf(ret_error, "%s: %s", binary, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        probe_key key = {
                .path = binary,
                .dev = st.st_dev,
                .ino = st.st_ino,
                .size = (uint64_t)st.st_size,
                .mtime_ns = (uint64_t)st.st_mtim.tv_sec * UINT64_C(1000000000) +
                            (uint64_t)st.st_mtim.tv_nsec,
        };
        _cleanup_free_ char *file =
                cache_dir ? probe_cache_path(cache_dir, "probe", binary, ".json") : NULL;
        qemu_probe p;
        bool cached = file && cache_load(file, &key, &p) >= 0;
        if (cached && (p.data_dirs_known || !want_data_dirs)) {
                *ret = p;
                return 0;
        }

        if (timeout_usec > PROBE_TIMEOUT_USEC)
                timeout_usec = PROBE_TIMEOUT_USEC;
        uint64_t deadline = usec_add(now_usec(), timeout_usec);
        if (!cached) {
                int r = probe_binary(binary, timeout_usec, &p, ret_error);
                if (r < 0)
                        return r;
        }
        if (want_data_dirs) {
                uint64_t now = now_usec();
                probe_data_dirs(binary, deadline > now ? deadline - now : 1, &p);
        }
        if (file)
                cache_store(file, &key, &p);
        *ret = p;
        return 0;
}
