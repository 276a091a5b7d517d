/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * /proc readers (see proc.h). Every number is parsed with a full strtoull check: the kernel's
 * format is stable, but a parse that silently yields 0 would turn "uid 64000" into "root" in
 * an audit, which is the one mistake this file must never make.
 */
#include "proc.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "util.h"

static void proc_path(char *buf, size_t size, pid_t pid, const char *what)
{
        if (pid == 0)
                snprintf(buf, size, "/proc/self/%s", what);
        else
                snprintf(buf, size, "/proc/%d/%s", (int)pid, what);
}

/* A vanished process shows up as ENOENT on its /proc files; callers want ESRCH. */
static int proc_errno(void)
{
        return errno == ENOENT ? -ESRCH : negative_errno();
}

static int parse_u64(const char *s, int base, uint64_t *ret, const char **ret_end)
{
        char *end;

        while (*s == ' ' || *s == '\t')
                s++;
        if (!isxdigit((unsigned char)*s))
                return -EBADMSG;
        errno = 0;
        unsigned long long v = strtoull(s, &end, base);
        if (errno != 0 || end == s)
                return -EBADMSG;
        *ret = v;
        if (ret_end)
                *ret_end = end;
        return 0;
}

/* "Uid:\t0\t0\t0\t0": four ids, each must fit in 32 bits. */
static int parse_ids(const char *s, uint32_t ids[_PROC_ID_MAX])
{
        for (int i = 0; i < _PROC_ID_MAX; i++) {
                uint64_t v;
                int r = parse_u64(s, 10, &v, &s);
                if (r < 0)
                        return r;
                if (v > UINT32_MAX)
                        return -EBADMSG;
                ids[i] = (uint32_t)v;
        }
        return 0;
}

static int parse_hex(const char *s, uint64_t *ret)
{
        return parse_u64(s, 16, ret, NULL);
}

static int parse_int(const char *s, int *ret)
{
        uint64_t v;
        int r = parse_u64(s, 10, &v, NULL);
        if (r < 0)
                return r;
        if (v > INT32_MAX)
                return -EBADMSG;
        *ret = (int)v;
        return 0;
}

int proc_status_read(pid_t pid, proc_status *ret)
{
        char path[64];
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        proc_status st = {0};
        unsigned seen = 0;
        enum {
                SEEN_STATE = 1u << 0,
                SEEN_PPID = 1u << 1,
                SEEN_UID = 1u << 2,
                SEEN_GID = 1u << 3,
                SEEN_CAPINH = 1u << 4,
                SEEN_CAPPRM = 1u << 5,
                SEEN_CAPEFF = 1u << 6,
                SEEN_CAPBND = 1u << 7,
                SEEN_CAPAMB = 1u << 8,
                SEEN_NNP = 1u << 9,
                SEEN_SECCOMP = 1u << 10,
                SEEN_SIGBLK = 1u << 11,
                SEEN_SIGIGN = 1u << 12,
                SEEN_SIGCGT = 1u << 13,
                SEEN_ALL = (1u << 14) - 1,
        };

        assert_return(ret, -EINVAL);
        assert_return(pid >= 0, -EINVAL);

        proc_path(path, sizeof(path), pid, "status");
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return proc_errno();

        while (getline(&line, &size, f) >= 0) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = '\0';
                const char *key = line, *v = colon + 1;
                int r = 0;
                uint32_t ids[_PROC_ID_MAX];

                if (streq_ptr(key, "State")) {
                        while (*v == ' ' || *v == '\t')
                                v++;
                        if (!isalpha((unsigned char)*v))
                                return -EBADMSG;
                        st.state = *v;
                        seen |= SEEN_STATE;
                } else if (streq_ptr(key, "PPid")) {
                        int p;
                        r = parse_int(v, &p);
                        st.ppid = p;
                        seen |= SEEN_PPID;
                } else if (streq_ptr(key, "Uid")) {
                        r = parse_ids(v, ids);
                        for (int i = 0; i < _PROC_ID_MAX; i++)
                                st.uid[i] = ids[i];
                        seen |= SEEN_UID;
                } else if (streq_ptr(key, "Gid")) {
                        r = parse_ids(v, ids);
                        for (int i = 0; i < _PROC_ID_MAX; i++)
                                st.gid[i] = ids[i];
                        seen |= SEEN_GID;
                } else if (streq_ptr(key, "CapInh")) {
                        r = parse_hex(v, &st.cap_inh);
                        seen |= SEEN_CAPINH;
                } else if (streq_ptr(key, "CapPrm")) {
                        r = parse_hex(v, &st.cap_prm);
                        seen |= SEEN_CAPPRM;
                } else if (streq_ptr(key, "CapEff")) {
                        r = parse_hex(v, &st.cap_eff);
                        seen |= SEEN_CAPEFF;
                } else if (streq_ptr(key, "CapBnd")) {
                        r = parse_hex(v, &st.cap_bnd);
                        seen |= SEEN_CAPBND;
                } else if (streq_ptr(key, "CapAmb")) {
                        r = parse_hex(v, &st.cap_amb);
                        seen |= SEEN_CAPAMB;
                } else if (streq_ptr(key, "NoNewPrivs")) {
                        r = parse_int(v, &st.no_new_privs);
                        seen |= SEEN_NNP;
                } else if (streq_ptr(key, "Seccomp")) {
                        r = parse_int(v, &st.seccomp);
                        seen |= SEEN_SECCOMP;
                } else if (streq_ptr(key, "SigBlk")) {
                        r = parse_hex(v, &st.sig_blk);
                        seen |= SEEN_SIGBLK;
                } else if (streq_ptr(key, "SigIgn")) {
                        r = parse_hex(v, &st.sig_ign);
                        seen |= SEEN_SIGIGN;
                } else if (streq_ptr(key, "SigCgt")) {
                        r = parse_hex(v, &st.sig_cgt);
                        seen |= SEEN_SIGCGT;
                }
                if (r < 0)
                        return r;
        }
        if (ferror(f))
                return proc_errno();
        /* A process reaped between open and read leaves an empty file behind. */
        if (seen == 0)
                return -ESRCH;
        if (seen != SEEN_ALL)
                return -EBADMSG;

        *ret = st;
        return 0;
}

/* The start of /proc/PID/WHAT, with one read() into BUF (NUL-terminated): for the small files
 * read once per process of the host, where stdio would cost more than the parse. */
static int proc_read_head(pid_t pid, const char *what, char *buf, size_t size)
{
        char path[64];
        ssize_t n;

        proc_path(path, sizeof(path), pid, what);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return proc_errno();
        do
                n = read(fd, buf, size - 1);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return proc_errno();
        /* A process reaped between open and read leaves an empty file behind. */
        if (n == 0)
                return -ESRCH;
        buf[n] = '\0';
        return 0;
}

int proc_ids_read(pid_t pid, proc_ids *ret)
{
        /* State, Uid and Gid are the 3rd, 9th and 10th lines; only Name (at most 64 bytes,
         * escaped to at most 4 each) is long before them. 1 KiB always holds them. */
        char buf[1024];
        proc_ids ids = {0};
        unsigned seen = 0;

        assert_return(ret, -EINVAL);
        assert_return(pid >= 0, -EINVAL);

        int r = proc_read_head(pid, "status", buf, sizeof(buf));
        if (r < 0)
                return r;

        for (char *line = buf, *next; line && seen != 7; line = next) {
                next = strchr(line, '\n');
                if (!next)
                        break; /* a cut-off last line is never trusted */
                *next++ = '\0';
                const char *v;
                r = 0;
                if ((v = startswith(line, "State:"))) {
                        while (*v == ' ' || *v == '\t')
                                v++;
                        if (!isalpha((unsigned char)*v))
                                return -EBADMSG;
                        ids.state = *v;
                        seen |= 1;
                } else if ((v = startswith(line, "Uid:"))) {
                        r = parse_ids(v, ids.uid);
                        seen |= 2;
                } else if ((v = startswith(line, "Gid:"))) {
                        r = parse_ids(v, ids.gid);
                        seen |= 4;
                }
                if (r < 0)
                        return r;
        }
        if (seen != 7)
                return -EBADMSG;
        *ret = ids;
        return 0;
}

int proc_stat_session(pid_t pid, pid_t *ret_pgrp, pid_t *ret_sid)
{
        char buf[1024];
        int pgrp, sid;

        assert_return(pid >= 0, -EINVAL);

        int r = proc_read_head(pid, "stat", buf, sizeof(buf));
        if (r < 0)
                return r;

        /* "pid (comm) state ppid pgrp session ...": comm may contain anything, so the
         * fields start after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EBADMSG;
        if (sscanf(p + 1, " %*c %*d %d %d", &pgrp, &sid) != 2)
                return -EBADMSG;
        if (ret_pgrp)
                *ret_pgrp = pgrp;
        if (ret_sid)
                *ret_sid = sid;
        return 0;
}

int proc_ns_ino(pid_t pid, const char *ns, uint64_t *ret_ino)
{
        char path[96], what[64];
        struct stat st;

        assert_return(pid >= 0, -EINVAL);
        assert_return(ns && *ns && !strchr(ns, '/') && strlen(ns) < 32, -EINVAL);
        assert_return(ret_ino, -EINVAL);

        snprintf(what, sizeof(what), "ns/%s", ns);
        proc_path(path, sizeof(path), pid, what);
        if (stat(path, &st) < 0) {
                /* ENOENT is either "no such process" or "no such namespace type". */
                if (errno == ENOENT) {
                        char dir[64];
                        proc_path(dir, sizeof(dir), pid, "ns");
                        if (access(dir, F_OK) == 0)
                                return -ENOENT;
                }
                return proc_errno();
        }
        *ret_ino = (uint64_t)st.st_ino;
        return 0;
}

static int readlink_malloc(const char *path, char **ret)
{
        for (size_t size = 256;; size *= 2) {
                _cleanup_free_ char *buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                ssize_t n = readlink(path, buf, size);
                if (n < 0)
                        return negative_errno();
                if ((size_t)n < size) {
                        buf[n] = '\0';
                        *ret = TAKE_PTR(buf);
                        return 0;
                }
                if (size >= 65536)
                        return -ENAMETOOLONG;
        }
}

static int proc_readlink(pid_t pid, const char *what, char **ret_path)
{
        char path[64];
        int r;

        assert_return(pid >= 0, -EINVAL);
        assert_return(ret_path, -EINVAL);

        proc_path(path, sizeof(path), pid, what);
        r = readlink_malloc(path, ret_path);
        return r == -ENOENT ? -ESRCH : r;
}

int proc_root(pid_t pid, char **ret_path)
{
        return proc_readlink(pid, "root", ret_path);
}

int proc_cwd(pid_t pid, char **ret_path)
{
        return proc_readlink(pid, "cwd", ret_path);
}

/* A /proc directory entry name that is a plain non-negative decimal number, or -1. */
static long dirent_number(const char *name)
{
        char *end;

        if (!isdigit((unsigned char)name[0]))
                return -1;
        errno = 0;
        long v = strtol(name, &end, 10);
        if (errno != 0 || *end != '\0' || v < 0 || v > INT32_MAX)
                return -1;
        return v;
}

void proc_fds_free(proc_fd *fds, size_t n)
{
        for (size_t i = 0; fds && i < n; i++)
                free(fds[i].target);
        free(fds);
}

static int proc_fd_compare(const void *a, const void *b)
{
        const proc_fd *x = a, *y = b;
        return (x->fd > y->fd) - (x->fd < y->fd);
}

int proc_list_fds(pid_t pid, proc_fd **ret_fds, size_t *ret_n)
{
        char path[64];
        proc_fd *fds = NULL;
        size_t n = 0, allocated = 0;
        int r = 0;

        assert_return(pid >= 0, -EINVAL);
        assert_return(ret_fds && ret_n, -EINVAL);

        proc_path(path, sizeof(path), pid, "fd");
        DIR *d = opendir(path);
        if (!d)
                return proc_errno();
        int self_fd = pid == 0 || pid == getpid() ? dirfd(d) : -1;

        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = proc_errno();
                        break;
                }
                long fd = dirent_number(de->d_name);
                if (fd < 0 || fd == self_fd)
                        continue;

                char link[96];
                char *target = NULL;
                snprintf(link, sizeof(link), "%s/%ld", path, fd);
                r = readlink_malloc(link, &target);
                if (r == -ENOENT) { /* closed meanwhile */
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                if (n == allocated) {
                        size_t na = allocated ? allocated * 2 : 16;
                        proc_fd *nf = reallocarray(fds, na, sizeof(*fds));
                        if (!nf) {
                                free(target);
                                r = -ENOMEM;
                                break;
                        }
                        fds = nf;
                        allocated = na;
                }
                fds[n++] = (proc_fd){.fd = (int)fd, .target = target};
        }
        closedir(d);
        if (r < 0) {
                proc_fds_free(fds, n);
                return r;
        }
        if (n > 0)
                qsort(fds, n, sizeof(*fds), proc_fd_compare);
        *ret_fds = fds;
        *ret_n = n;
        return 0;
}

int proc_count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        int n = 0, r = 0;

        if (!d)
                return negative_errno();
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = negative_errno();
                        break;
                }
                long fd = dirent_number(de->d_name);
                if (fd >= 0 && fd != dirfd(d))
                        n++;
        }
        closedir(d);
        return r < 0 ? r : n;
}

/* The row names of /proc/PID/limits (fs/proc/base.c lnames[]), indexed by RLIMIT_*. */
static const char *const limit_names[] = {
        [RLIMIT_CPU] = "Max cpu time",
        [RLIMIT_FSIZE] = "Max file size",
        [RLIMIT_DATA] = "Max data size",
        [RLIMIT_STACK] = "Max stack size",
        [RLIMIT_CORE] = "Max core file size",
        [RLIMIT_RSS] = "Max resident set",
        [RLIMIT_NPROC] = "Max processes",
        [RLIMIT_NOFILE] = "Max open files",
        [RLIMIT_MEMLOCK] = "Max locked memory",
        [RLIMIT_AS] = "Max address space",
        [RLIMIT_LOCKS] = "Max file locks",
        [RLIMIT_SIGPENDING] = "Max pending signals",
        [RLIMIT_MSGQUEUE] = "Max msgqueue size",
        [RLIMIT_NICE] = "Max nice priority",
        [RLIMIT_RTPRIO] = "Max realtime priority",
        [RLIMIT_RTTIME] = "Max realtime timeout",
};

static int parse_limit(const char **s, rlim_t *ret)
{
        while (**s == ' ')
                (*s)++;
        if (strncmp(*s, "unlimited", 9) == 0) {
                *s += 9;
                *ret = RLIM_INFINITY;
                return 0;
        }
        uint64_t v;
        int r = parse_u64(*s, 10, &v, s);
        if (r < 0)
                return r;
        *ret = (rlim_t)v;
        return 0;
}

static int proc_rlimit_from_file(pid_t pid, int resource, struct rlimit *ret)
{
        char path[64];
        _cleanup_free_ char *line = NULL;
        size_t size = 0, len = strlen(limit_names[resource]);

        proc_path(path, sizeof(path), pid, "limits");
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return proc_errno();
        while (getline(&line, &size, f) >= 0) {
                /* The name is left-aligned in a 25-wide column followed by a space, so the
                 * prefix match needs a space right after it ("Max file size" vs a longer
                 * name sharing the prefix). */
                if (strncmp(line, limit_names[resource], len) != 0 || line[len] != ' ')
                        continue;
                const char *p = line + len;
                struct rlimit rl;
                int r = parse_limit(&p, &rl.rlim_cur);
                if (r >= 0)
                        r = parse_limit(&p, &rl.rlim_max);
                if (r < 0)
                        return r;
                *ret = rl;
                return 0;
        }
        return ferror(f) ? proc_errno() : -EBADMSG;
}

int proc_rlimit(pid_t pid, int resource, struct rlimit *ret)
{
        struct rlimit rl;

        assert_return(pid >= 0, -EINVAL);
        assert_return(resource >= 0 && (size_t)resource < ELEMENTSOF(limit_names) &&
                              limit_names[resource],
                      -EINVAL);
        assert_return(ret, -EINVAL);

        if (prlimit(pid, (__rlimit_resource_t)resource, NULL, &rl) >= 0) {
                *ret = rl;
                return 0;
        }
        if (errno != EPERM)
                return negative_errno();
        return proc_rlimit_from_file(pid, resource, ret);
}

int proc_list_pids(pid_t **ret_pids, size_t *ret_n)
{
        pid_t *pids = NULL;
        size_t n = 0, allocated = 0;
        int r = 0;

        assert_return(ret_pids && ret_n, -EINVAL);

        DIR *d = opendir("/proc");
        if (!d)
                return negative_errno();
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = negative_errno();
                        break;
                }
                long pid = dirent_number(de->d_name);
                if (pid <= 0)
                        continue;
                if (n == allocated) {
                        size_t na = allocated ? allocated * 2 : 256;
                        pid_t *np = reallocarray(pids, na, sizeof(*pids));
                        if (!np) {
                                r = -ENOMEM;
                                break;
                        }
                        pids = np;
                        allocated = na;
                }
                pids[n++] = (pid_t)pid;
        }
        closedir(d);
        if (r < 0) {
                free(pids);
                return r;
        }
        *ret_pids = pids;
        *ret_n = n;
        return 0;
}
