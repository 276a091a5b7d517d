/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "proc.h"
#include "rundir.h"
#include "util.h"

static int check_private_dir(const char *path)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (st.st_uid != geteuid() || (st.st_mode & 0022))
                return -EPERM;
        return 0;
}

static int mkdir_parents(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int rundir_resolve(const cli_globals *g, bool create, char **ret_path)
{
        _cleanup_free_ char *path = NULL;
        if (g->run_dir && *g->run_dir)
                path = strdup(g->run_dir);
        else if (geteuid() == 0)
                path = strdup(QDM_DEFAULT_RUN_DIR);
        else {
                const char *xdg = getenv("XDG_RUNTIME_DIR");
                if (!xdg || xdg[0] != '/')
                        return cli_error(EXIT_USAGE, "no run directory: set --run-dir, "
                                                     "QDM_RUN_DIR or XDG_RUNTIME_DIR");
                if (asprintf(&path, "%s/qdm", xdg) < 0)
                        path = NULL;
        }
        if (!path)
                return cli_error(EXIT_FAILED, "out of memory");
        if (path[0] != '/') {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                char *abs = NULL;
                if (!cwd || asprintf(&abs, "%s/%s", cwd, path) < 0)
                        return cli_error(EXIT_FAILED, "cannot resolve the run directory %s", path);
                free(path);
                path = abs;
        }
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/')
                path[--len] = '\0';
        if (len > 80)
                return cli_error(EXIT_USAGE,
                                 "run directory %s is too long for UNIX socket paths (max 80)",
                                 path);
        if (create) {
                int r = mkdir_parents(path, 0700);
                if (r < 0)
                        return cli_error(EXIT_FAILED, "cannot create run directory %s: %s", path,
                                         strerror(-r));
        }
        int r = check_private_dir(path);
        if (r == -ENOENT)
                return -ENOENT;
        if (r == -EPERM)
                return cli_error(EXIT_FAILED,
                                 "run directory %s is not owned by uid %u or is writable by "
                                 "others; refusing to trust it",
                                 path, (unsigned)geteuid());
        if (r < 0)
                return cli_error(EXIT_FAILED, "run directory %s: %s", path, strerror(-r));
        *ret_path = TAKE_PTR(path);
        return 0;
}

char *rundir_path(const char *run_dir, const char *name, const char *file)
{
        char *p = NULL;
        int r = file ? asprintf(&p, "%s/%s/%s", run_dir, name, file)
                     : asprintf(&p, "%s/%s", run_dir, name);
        return r < 0 ? NULL : p;
}

int rundir_remove(const char *run_dir, const char *name)
{
        static const char *const files[] = {SOCKET_FILE, STATE_FILE, STATE_FILE ".tmp",
                                            STDERR_LOG,  EVENTS_LOG, LOCK_FILE};
        static const char *const dirs[] = {"root", NULL};
        int first = 0;
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = rundir_path(run_dir, name, files[i]);
                if (p && unlink(p) < 0 && errno != ENOENT && first == 0)
                        first = -errno;
        }
        /* The chroot, then the directory itself: rmdir, so anything unexpected stays. */
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_free_ char *p = rundir_path(run_dir, name, dirs[i]);
                if (p && rmdir(p) < 0 && errno != ENOENT && first == 0)
                        first = -errno;
        }
        return first;
}

/* ---- process identity ---------------------------------------------------------------------- */

int proc_ident_get(pid_t pid, proc_ident *ret)
{
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return -ESRCH;
        buf[n] = '\0';
        /* The command name may contain spaces and parentheses: fields start after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EBADMSG;
        p++;
        char state = 0;
        unsigned long long start = 0;
        /* Field 3 is the state, field 22 the start time. */
        int field = 2;
        for (char *tok = p; *tok && field < 22;) {
                while (*tok == ' ')
                        tok++;
                field++;
                if (field == 3)
                        state = *tok;
                if (field == 22) {
                        char *end = NULL;
                        errno = 0;
                        start = strtoull(tok, &end, 10);
                        if (errno != 0 || end == tok)
                                return -EBADMSG;
                        break;
                }
                while (*tok && *tok != ' ')
                        tok++;
        }
        if (field != 22)
                return -EBADMSG;
        if (state == 'Z' || state == 'X')
                return -ESRCH;
        ret->pid = pid;
        ret->start_time = start;
        return 0;
}

int proc_ident_open(const proc_ident *ident)
{
        if (ident->pid <= 0)
                return -ESRCH;
        int fd = (int)syscall(SYS_pidfd_open, ident->pid, 0);
        if (fd < 0)
                return errno == ESRCH ? -ESRCH : -errno;
        proc_ident now;
        if (proc_ident_get(ident->pid, &now) < 0 || now.start_time != ident->start_time) {
                close(fd);
                return -ESRCH;
        }
        return fd;
}

const struct rundir_rlimit rundir_rlimits[RUNDIR_N_RLIMITS] = {
        {"fsize", RLIMIT_FSIZE}, {"core", RLIMIT_CORE},       {"msgqueue", RLIMIT_MSGQUEUE},
        {"locks", RLIMIT_LOCKS}, {"memlock", RLIMIT_MEMLOCK}, {"nofile", RLIMIT_NOFILE},
};

/* ---- state.json ------------------------------------------------------------------------------ */

void dm_state_done(dm_state *s)
{
        free(s->name);
        free(s->state);
        free(s->restrict_);
        free(s->machine);
        free(s->accel);
        free(s->end_reason);
        for (size_t i = 0; s->disks && s->disks[i]; i++)
                free(s->disks[i]);
        free(s->disks);
        memset(s, 0, sizeof(*s));
}

static char *get_str(json_object *o, const char *key)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return strdup(json_object_get_string(v));
}

static bool get_u64(json_object *o, const char *key, uint64_t *ret)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        int64_t i = json_object_get_int64(v);
        if (i < 0)
                return false;
        *ret = (uint64_t)i;
        return true;
}

int dm_state_parse(const char *buf, size_t n, const char *name, dm_state *ret)
{
        if (n == 0 || n > STATE_MAX_BYTES || memchr(buf, '\0', n))
                return -EBADMSG;
        json_tokener *tok = json_tokener_new_ex(8);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        json_object *o = json_tokener_parse_ex(tok, buf, (int)n);
        bool complete = json_tokener_get_error(tok) == json_tokener_success &&
                        json_tokener_get_parse_end(tok) == (size_t)n;
        json_tokener_free(tok);
        if (!o || !complete || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }

        dm_state s = {0};
        uint64_t v;
        s.name = get_str(o, "name");
        s.state = get_str(o, "state");
        s.restrict_ = get_str(o, "restrict");
        s.machine = get_str(o, "machine");
        s.accel = get_str(o, "accel");
        s.end_reason = get_str(o, "end_reason");
        bool ok = s.name && s.state && s.restrict_ && streq_ptr(s.name, name);
        if (get_u64(o, "qemu_pid", &v) && v < INT32_MAX)
                s.qemu.pid = (pid_t)v;
        get_u64(o, "qemu_start_time", &s.qemu.start_time);
        if (get_u64(o, "supervisor_pid", &v) && v < INT32_MAX)
                s.supervisor.pid = (pid_t)v;
        get_u64(o, "supervisor_start_time", &s.supervisor.start_time);
        if (get_u64(o, "uid", &v) && v < UINT32_MAX)
                s.uid = (uid_t)v;
        if (get_u64(o, "gid", &v) && v < UINT32_MAX)
                s.gid = (gid_t)v;
        json_object *b;
        s.own_uid = json_object_object_get_ex(o, "own_uid", &b) &&
                    json_object_is_type(b, json_type_boolean) && json_object_get_boolean(b);
        json_object *rl = NULL;
        bool have_rl = json_object_object_get_ex(o, "rlimits", &rl) &&
                       json_object_is_type(rl, json_type_object);
        for (size_t i = 0; i < RUNDIR_N_RLIMITS; i++) {
                json_object *lim = NULL;
                s.rlimits[i] = -1;
                if (have_rl && json_object_object_get_ex(rl, rundir_rlimits[i].name, &lim) &&
                    json_object_is_type(lim, json_type_int) && json_object_get_int64(lim) >= 0)
                        s.rlimits[i] = json_object_get_int64(lim);
        }
        json_object *ns = NULL, *v_ns = NULL;
        if (json_object_object_get_ex(o, "namespaces", &ns) &&
            json_object_is_type(ns, json_type_object)) {
                s.ns_net = json_object_object_get_ex(ns, "net", &v_ns) &&
                           json_object_is_type(v_ns, json_type_boolean) &&
                           json_object_get_boolean(v_ns);
                s.ns_pid = json_object_object_get_ex(ns, "pid", &v_ns) &&
                           json_object_is_type(v_ns, json_type_boolean) &&
                           json_object_get_boolean(v_ns);
        }
        json_object *disks = NULL;
        if (json_object_object_get_ex(o, "disks", &disks) &&
            json_object_is_type(disks, json_type_array) && json_object_array_length(disks) < 256) {
                size_t n_disks = json_object_array_length(disks);
                s.disks = calloc(n_disks + 1, sizeof(char *));
                ok = ok && s.disks;
                for (size_t i = 0, k = 0; ok && i < n_disks; i++) {
                        json_object *d = json_object_array_get_idx(disks, i);
                        if (!json_object_is_type(d, json_type_string))
                                continue;
                        s.disks[k] = strdup(json_object_get_string(d));
                        ok = s.disks[k++] != NULL;
                }
        }
        get_u64(o, "created", &s.created);
        get_u64(o, "ready_usec", &s.ready_usec);
        get_u64(o, "ended_at", &s.ended_at);
        if (get_u64(o, "exit_code", &v) && v < 256) {
                s.ended = true;
                s.exit_code = (int)v;
        }
        if (get_u64(o, "exit_signal", &v) && v < 128) {
                s.ended = true;
                s.exit_signal = (int)v;
        }
        json_object_put(o);
        if (!ok) {
                dm_state_done(&s);
                return -EBADMSG;
        }
        *ret = s;
        return 0;
}

int dm_state_read(const char *run_dir, const char *name, dm_state *ret)
{
        _cleanup_free_ char *path = rundir_path(run_dir, name, STATE_FILE);
        if (!path)
                return -ENOMEM;
        /* O_NONBLOCK: something other than our regular file (a FIFO) must not hang open(). */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return errno == ELOOP ? -EPERM : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        /* Written only by our supervisor: anything else has been tampered with. */
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022))
                return -EPERM;
        if (st.st_size > STATE_MAX_BYTES)
                return -EBADMSG;
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        ssize_t n = read(fd, buf, (size_t)st.st_size);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return dm_state_parse(buf, (size_t)n, name, ret);
}

json_object *dm_state_to_json(const dm_state *s)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "name", json_object_new_string(s->name));
        json_object_object_add(o, "state", json_object_new_string(s->state));
        json_object_object_add(o, "restrict", json_object_new_string(s->restrict_));
        if (s->machine)
                json_object_object_add(o, "machine", json_object_new_string(s->machine));
        if (s->accel)
                json_object_object_add(o, "accel", json_object_new_string(s->accel));
        json_object_object_add(o, "qemu_pid", json_object_new_int64(s->qemu.pid));
        json_object_object_add(o, "qemu_start_time", json_object_new_uint64(s->qemu.start_time));
        json_object_object_add(o, "supervisor_pid", json_object_new_int64(s->supervisor.pid));
        json_object_object_add(o, "supervisor_start_time",
                               json_object_new_uint64(s->supervisor.start_time));
        json_object_object_add(o, "uid", json_object_new_int64(s->uid));
        json_object_object_add(o, "gid", json_object_new_int64(s->gid));
        json_object_object_add(o, "own_uid", json_object_new_boolean(s->own_uid));
        json_object *rl = json_object_new_object();
        for (size_t i = 0; i < RUNDIR_N_RLIMITS; i++)
                if (s->rlimits[i] >= 0)
                        json_object_object_add(rl, rundir_rlimits[i].name,
                                               json_object_new_int64(s->rlimits[i]));
        json_object_object_add(o, "rlimits", rl);
        if (s->ns_net || s->ns_pid) {
                json_object *ns = json_object_new_object();
                json_object_object_add(ns, "net", json_object_new_boolean(s->ns_net));
                json_object_object_add(ns, "pid", json_object_new_boolean(s->ns_pid));
                json_object_object_add(o, "namespaces", ns);
        }
        if (s->disks && s->disks[0]) {
                json_object *disks = json_object_new_array();
                for (size_t i = 0; s->disks[i]; i++)
                        json_object_array_add(disks, json_object_new_string(s->disks[i]));
                json_object_object_add(o, "disks", disks);
        }
        json_object_object_add(o, "created", json_object_new_uint64(s->created));
        json_object_object_add(o, "ready_usec", json_object_new_uint64(s->ready_usec));
        if (s->ended) {
                if (s->ended_at > 0)
                        json_object_object_add(o, "ended_at", json_object_new_uint64(s->ended_at));
                if (s->exit_signal > 0)
                        json_object_object_add(o, "exit_signal",
                                               json_object_new_int(s->exit_signal));
                else
                        json_object_object_add(o, "exit_code", json_object_new_int(s->exit_code));
        }
        if (s->end_reason)
                json_object_object_add(o, "end_reason", json_object_new_string(s->end_reason));
        return o;
}

int dm_state_write(const char *run_dir, const dm_state *s)
{
        json_object *o = dm_state_to_json(s);
        if (!o)
                return -ENOMEM;
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);

        _cleanup_free_ char *path = rundir_path(run_dir, s->name, STATE_FILE);
        _cleanup_free_ char *tmp = rundir_path(run_dir, s->name, STATE_FILE ".tmp");
        int r = 0;
        if (!path || !tmp)
                r = -ENOMEM;
        else {
                int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        r = -errno;
                else {
                        size_t len = strlen(text);
                        if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
                                r = errno ? -errno : -EIO;
                        close(fd);
                        if (r == 0 && rename(tmp, path) < 0)
                                r = -errno;
                        if (r < 0)
                                unlink(tmp);
                }
        }
        json_object_put(o);
        return r;
}

/* ---- the monitor lock (R7) ------------------------------------------------------------------ */

int rundir_lock(const char *run_dir, const char *name, uint64_t timeout_usec)
{
        _cleanup_free_ char *path = rundir_path(run_dir, name, LOCK_FILE);
        if (!path)
                return -ENOMEM;
        _cleanup_close_ int fd =
                open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return errno == ENOENT ? -ENOENT : -errno;
        /* flock() has no timeout: poll with a short backoff. Waiters are served in no
         * particular order, but every one of them is served. */
        uint64_t deadline = usec_add(now_usec(), timeout_usec);
        long sleep_us = 200;
        for (;;) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                        return TAKE_FD(fd);
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return -errno;
                if (now_usec() >= deadline)
                        return -ETIMEDOUT;
                struct timespec ts = {.tv_nsec = sleep_us * 1000};
                nanosleep(&ts, NULL);
                if (sleep_us < 5000)
                        sleep_us *= 2;
        }
}

/* ---- finding QEMU by its socket ---------------------------------------------------------------
 */

int rundir_socket_holders(const char *run_dir, const char *name, pid_t *ret, size_t max)
{
        _cleanup_free_ char *sock = rundir_path(run_dir, name, SOCKET_FILE);
        _cleanup_fclose_ FILE *f = fopen("/proc/net/unix", "re");
        if (!sock || !f)
                return 0;
        char line[512], want[8][48];
        size_t n_inodes = 0;
        while (fgets(line, sizeof(line), f) && n_inodes < ELEMENTSOF(want)) {
                unsigned long inode = 0;
                char path[256];
                /* Num RefCount Protocol Flags Type St Inode Path */
                if (sscanf(line, "%*s %*s %*s %*s %*s %*s %lu %255s", &inode, path) == 2 &&
                    strcmp(path, sock) == 0)
                        snprintf(want[n_inodes++], sizeof(want[0]), "socket:[%lu]", inode);
        }
        if (n_inodes == 0)
                return 0;

        pid_t *pids = NULL;
        size_t n_pids = 0;
        if (proc_list_pids(&pids, &n_pids) < 0)
                return 0;
        size_t found = 0;
        for (size_t i = 0; i < n_pids && found < max; i++) {
                proc_fd *fds = NULL;
                size_t n_fds = 0;
                if (pids[i] == getpid() || proc_list_fds(pids[i], &fds, &n_fds) < 0)
                        continue;
                bool holds = false;
                for (size_t j = 0; j < n_fds && !holds; j++)
                        for (size_t k = 0; k < n_inodes && !holds; k++)
                                holds = streq_ptr(fds[j].target, want[k]);
                proc_fds_free(fds, n_fds);
                if (holds)
                        ret[found++] = pids[i];
        }
        free(pids);
        return (int)found;
}
