/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jail: the host files a jailed QEMU needs (see jail.h), found in the parent. It only reads:
 * ELF program headers and dynamic sections, /etc/ld.so.cache, directory listings. Nothing
 * here runs the binary or its loader (no ldd: that maps the libraries and may run code).
 *
 * Why exact files for libraries and whole directories for data: the libraries a binary maps
 * are exactly knowable (they are named in its dynamic section, and ld.so's search rules are
 * documented), about 90 binds for QEMU 7.2 on Debian 12 cost about 1.5 ms, and binding all of
 * /usr/lib/<multiarch> would show QEMU every library on the host. Which firmware file QEMU
 * loads depends on the machine, the devices and their options (bios-256k.bin, vgabios-*.bin,
 * efi-*.rom, kvmvapic.bin, linuxboot_dma.bin, ...), so its data directories are bound whole:
 * they hold public, read-only data and nothing of the host's state. Modules are bound one by
 * one, only those a device model can load (accel-*, hw-*). Of /etc, only ld.so.cache and
 * localtime (so that "-rtc base=localtime" keeps its meaning) are bound; no /proc, /sys,
 * /tmp or /run.
 *
 * Trust: the binary and the libraries are root's (QEMU is run from them as root in mode
 * "qemu"), but this code still bounds every size and offset it reads, because a malformed
 * file must give an error, not a crash of the toolstack.
 */
#include "jail.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <pwd.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "argv.h"
#include "qdm-config.h"
#include "util.h"

#define MAX_MOUNTS      1024
#define MAX_OBJECTS     512
#define MAX_PHDRS       512
#define MAX_DYN_BYTES   (1024 * 1024)
#define MAX_STRTAB      (64 * 1024 * 1024)
#define MAX_CACHE_BYTES (64 * 1024 * 1024)

#if defined(__x86_64__) && defined(__LP64__)
#define MULTIARCH "x86_64-linux-gnu"
#elif defined(__aarch64__)
#define MULTIARCH "aarch64-linux-gnu"
#elif defined(__i386__)
#define MULTIARCH "i386-linux-gnu"
#endif

#if __SIZEOF_POINTER__ == 8
#define ELFCLASS_NATIVE ELFCLASS64
#else
#define ELFCLASS_NATIVE ELFCLASS32
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ELFDATA_NATIVE ELFDATA2LSB
#else
#define ELFDATA_NATIVE ELFDATA2MSB
#endif

/* Where ld.so looks when neither a run path nor the cache has a name: glibc's default
 * directories (Debian's multiarch ones, then the others'). */
static const char *const default_lib_dirs[] = {
#ifdef MULTIARCH
        "/lib/" MULTIARCH, "/usr/lib/" MULTIARCH,
#endif
        "/lib64",          "/usr/lib64",          "/lib", "/usr/lib",
};

#define NOT_ELF_MESSAGE                                                                  \
        "jail: %s is not an ELF executable for this machine: a jail runs QEMU's binary " \
        "itself, with nothing to interpret a wrapper script"

static const char *const devices[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};

_printf_(2, 3) static int set_error(char **ret_error, const char *fmt, ...)
{
        va_list ap;
        if (!ret_error)
                return 0;
        free(*ret_error);
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return 0;
}

/* "/a//b/./c/../d" -> "/a/b/d", lexically (what a path means inside the jail, where nothing on
 * the way is a symlink). NULL for a relative path or on allocation failure. */
static char *path_clean(const char *path)
{
        if (!path || path[0] != '/')
                return NULL;
        size_t len = strlen(path);
        char *out = malloc(len + 2);
        if (!out)
                return NULL;
        size_t n = 0;
        for (const char *c = path; *c;) {
                while (*c == '/')
                        c++;
                size_t k = strcspn(c, "/");
                if (k == 0)
                        break;
                if (k == 1 && c[0] == '.') {
                        /* nothing */
                } else if (k == 2 && c[0] == '.' && c[1] == '.') {
                        while (n > 0 && out[n - 1] != '/')
                                n--;
                        if (n > 0)
                                n--; /* the '/' before the component */
                } else {
                        out[n++] = '/';
                        memcpy(out + n, c, k);
                        n += k;
                }
                c += k;
        }
        if (n == 0)
                out[n++] = '/';
        out[n] = '\0';
        return out;
}

/* True if PATH is DIR or below it (both clean). */
static bool path_below(const char *path, const char *dir)
{
        size_t k = strlen(dir);
        return strncmp(path, dir, k) == 0 && (path[k] == '\0' || path[k] == '/' || k == 1);
}

/* ---- the list being built --------------------------------------------------------------- */

/* One input of a result: what stat() ('f'), lstat() ('l') or realpath() ('r') said of a path
 * when the result was computed. The same answer now means the same result. */
typedef struct jail_dep {
        char kind;
        int err; /* 0, or the errno the call failed with */
        uint64_t dev, ino, size, mtime_ns, ctime_ns;
        uint32_t mode;
        char *path;
        char *value; /* 'r': the canonical path (NULL with err) */
} jail_dep;

typedef struct finder {
        restrict_mount *mounts;
        size_t n_mounts, cap_mounts;
        char **error;
        /* the binary's ELF identity: every library must match it */
        unsigned char cls;
        uint16_t machine;
        /* ld.so.cache, whole, and its new-format table */
        char *cache;
        size_t cache_size;
        const char *cache_base; /* strings are at offsets from here */
        size_t cache_span;      /* bytes from cache_base to the end of the file */
        const uint8_t *cache_entries;
        uint32_t cache_n;
        /* closure bookkeeping */
        char *names[MAX_OBJECTS]; /* DT_NEEDED names already resolved */
        size_t n_names;
        char *queue[MAX_OBJECTS]; /* objects whose dependencies are still to be read */
        bool queue_required[MAX_OBJECTS];
        size_t n_queue, next;
        /* what the result depends on (see "the cache" below) */
        jail_dep *deps;
        size_t n_deps, cap_deps;
        bool deps_lost; /* one could not be recorded: the result is not cached */
} finder;

static int add_mount(finder *f, const char *source, const char *target, unsigned flags)
{
        _cleanup_free_ char *t = path_clean(target);
        if (!t)
                return -ENOMEM;
        if (strcmp(t, "/") == 0) {
                set_error(f->error, "jail: refusing to bind %s on the jail's root", source);
                return -EINVAL;
        }
        for (size_t i = 0; i < f->n_mounts; i++)
                if (strcmp(f->mounts[i].target, t) == 0) {
                        f->mounts[i].flags |= flags;
                        return 0;
                }
        if (f->n_mounts >= MAX_MOUNTS) {
                set_error(f->error, "jail: more than %d bind mounts", MAX_MOUNTS);
                return -E2BIG;
        }
        if (f->n_mounts == f->cap_mounts) {
                size_t cap = f->cap_mounts ? f->cap_mounts * 2 : 128;
                restrict_mount *m = realloc(f->mounts, cap * sizeof(*m));
                if (!m)
                        return -ENOMEM;
                f->mounts = m;
                f->cap_mounts = cap;
        }
        char *s = strdup(source);
        if (!s)
                return -ENOMEM;
        f->mounts[f->n_mounts++] = (restrict_mount){
                .source = s,
                .target = TAKE_PTR(t),
                .flags = flags,
        };
        return 0;
}

/* ---- what a result depends on ------------------------------------------------------------- */

static uint64_t timespec_ns(const struct timespec *t)
{
        return (uint64_t)t->tv_sec * UINT64_C(1000000000) + (uint64_t)t->tv_nsec;
}

static void dep_fill(jail_dep *d, const struct stat *st)
{
        d->dev = st->st_dev;
        d->ino = st->st_ino;
        d->size = (uint64_t)st->st_size;
        d->mtime_ns = timespec_ns(&st->st_mtim);
        d->ctime_ns = timespec_ns(&st->st_ctim);
        d->mode = st->st_mode;
}

static void dep_add(finder *f, const jail_dep *d, const char *path, const char *value)
{
        if (f->deps_lost)
                return;
        if (f->n_deps == f->cap_deps) {
                size_t cap = f->cap_deps ? f->cap_deps * 2 : 128;
                jail_dep *n = realloc(f->deps, cap * sizeof(*n));
                if (!n) {
                        f->deps_lost = true;
                        return;
                }
                f->deps = n;
                f->cap_deps = cap;
        }
        jail_dep *e = &f->deps[f->n_deps];
        *e = *d;
        e->path = strdup(path);
        e->value = value ? strdup(value) : NULL;
        if (!e->path || (value && !e->value)) {
                free(e->path);
                free(e->value);
                f->deps_lost = true;
                return;
        }
        f->n_deps++;
}

/* stat() (or, KIND 'l', lstat()) PATH and remember the answer; errno is kept for the caller. */
static int dep_stat(finder *f, char kind, const char *path, struct stat *st)
{
        int k = kind == 'l' ? lstat(path, st) : stat(path, st);
        int saved = errno;
        jail_dep d = {.kind = kind, .err = k < 0 ? errno : 0};
        if (k >= 0)
                dep_fill(&d, st);
        if (f)
                dep_add(f, &d, path, NULL);
        errno = saved;
        return k;
}

/* fstat() FD, opened from PATH, and remember the answer as PATH's: what was read is what
 * counts, even if PATH changes meanwhile. Without FD (open() failed), PATH's stat(). */
static int dep_fstat(finder *f, const char *path, int fd, struct stat *st)
{
        if (fd < 0) {
                int saved = errno;
                struct stat ignored;
                (void)dep_stat(f, 'f', path, &ignored);
                errno = saved;
                return -1;
        }
        int k = fstat(fd, st);
        if (k < 0 || !f)
                return k;
        jail_dep d = {.kind = 'f'};
        dep_fill(&d, st);
        dep_add(f, &d, path, NULL);
        return 0;
}

/* realpath(), remembered. */
static char *dep_realpath(finder *f, const char *path)
{
        char *r = realpath(path, NULL);
        int saved = errno;
        jail_dep d = {.kind = 'r', .err = r ? 0 : errno};
        dep_add(f, &d, path, r);
        errno = saved;
        return r;
}

/* ---- ELF ----------------------------------------------------------------------------------- */

typedef struct elf_deps {
        unsigned char cls;
        uint16_t machine;
        char *interp;
        char **needed;
        size_t n_needed;
        char *rpath, *runpath;
        bool nodeflib;
} elf_deps;

static void elf_deps_done(elf_deps *d)
{
        free(d->interp);
        for (size_t i = 0; i < d->n_needed; i++)
                free(d->needed[i]);
        free(d->needed);
        free(d->rpath);
        free(d->runpath);
        memset(d, 0, sizeof(*d));
}

static int pread_full(int fd, void *buf, size_t size, uint64_t off)
{
        if (off > (uint64_t)INT64_MAX)
                return -ENOEXEC;
        size_t got = 0;
        while (got < size) {
                ssize_t n = pread(fd, (char *)buf + got, size - got, (off_t)(off + got));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        return -ENOEXEC; /* truncated */
                got += (size_t)n;
        }
        return 0;
}

static int elf_header(int fd, ElfW(Ehdr) * ret)
{
        int r = pread_full(fd, ret, sizeof(*ret), 0);
        if (r < 0)
                return r;
        if (memcmp(ret->e_ident, ELFMAG, SELFMAG) != 0 ||
            ret->e_ident[EI_CLASS] != ELFCLASS_NATIVE || ret->e_ident[EI_DATA] != ELFDATA_NATIVE)
                return -ENOEXEC;
        return 0;
}

/* The string at OFF of a string table, or NULL if it is not NUL-terminated inside it. */
static const char *strtab_get(const char *tab, size_t size, uint64_t off)
{
        if (off >= size || !memchr(tab + off, '\0', size - (size_t)off))
                return NULL;
        return tab + off;
}

static int elf_deps_read(finder *f, const char *path, elf_deps *ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (dep_fstat(f, path, fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -ENOEXEC;

        ElfW(Ehdr) eh;
        int r = elf_header(fd, &eh);
        if (r < 0)
                return r;
        if (eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 || eh.e_phnum > MAX_PHDRS)
                return -ENOEXEC;
        _cleanup_free_ ElfW(Phdr) *ph = calloc(eh.e_phnum, sizeof(*ph));
        if (!ph)
                return -ENOMEM;
        r = pread_full(fd, ph, eh.e_phnum * sizeof(*ph), eh.e_phoff);
        if (r < 0)
                return r;

        elf_deps d = {.cls = eh.e_ident[EI_CLASS], .machine = eh.e_machine};
        const ElfW(Phdr) *dyn_ph = NULL;
        _cleanup_free_ ElfW(Dyn) *dyn = NULL;
        _cleanup_free_ char *tab = NULL;
        for (size_t i = 0; i < eh.e_phnum; i++) {
                if (ph[i].p_type == PT_DYNAMIC)
                        dyn_ph = &ph[i];
                else if (ph[i].p_type == PT_INTERP && !d.interp) {
                        if (ph[i].p_filesz < 2 || ph[i].p_filesz > PATH_MAX)
                                goto bad;
                        d.interp = calloc(1, ph[i].p_filesz + 1);
                        if (!d.interp)
                                goto oom;
                        r = pread_full(fd, d.interp, ph[i].p_filesz, ph[i].p_offset);
                        if (r < 0)
                                goto fail;
                        if (strlen(d.interp) == 0 || d.interp[0] != '/')
                                goto bad;
                }
        }
        if (!dyn_ph) { /* static: nothing to load */
                *ret = d;
                return 0;
        }
        if (dyn_ph->p_filesz > MAX_DYN_BYTES || dyn_ph->p_filesz < sizeof(ElfW(Dyn)))
                goto bad;
        size_t n_dyn = dyn_ph->p_filesz / sizeof(ElfW(Dyn));
        dyn = calloc(n_dyn, sizeof(*dyn));
        if (!dyn)
                goto oom;
        r = pread_full(fd, dyn, n_dyn * sizeof(*dyn), dyn_ph->p_offset);
        if (r < 0)
                goto fail;

        uint64_t strtab = 0, strsz = 0, rpath = UINT64_MAX, runpath = UINT64_MAX;
        size_t n_needed = 0;
        for (size_t i = 0; i < n_dyn && dyn[i].d_tag != DT_NULL; i++) {
                switch (dyn[i].d_tag) {
                case DT_NEEDED:
                        n_needed++;
                        break;
                case DT_STRTAB:
                        strtab = dyn[i].d_un.d_ptr;
                        break;
                case DT_STRSZ:
                        strsz = dyn[i].d_un.d_val;
                        break;
                case DT_RPATH:
                        rpath = dyn[i].d_un.d_val;
                        break;
                case DT_RUNPATH:
                        runpath = dyn[i].d_un.d_val;
                        break;
                case DT_FLAGS_1:
                        d.nodeflib = dyn[i].d_un.d_val & DF_1_NODEFLIB;
                        break;
                default:
                        break;
                }
        }
        if (n_needed == 0 && rpath == UINT64_MAX && runpath == UINT64_MAX) {
                *ret = d;
                return 0;
        }
        if (strsz == 0 || strsz > MAX_STRTAB || n_needed > MAX_OBJECTS)
                goto bad;
        /* DT_STRTAB is an address: find the file offset through the loadable segment. */
        uint64_t str_off = UINT64_MAX;
        for (size_t i = 0; i < eh.e_phnum; i++)
                if (ph[i].p_type == PT_LOAD && strtab >= ph[i].p_vaddr &&
                    strtab - ph[i].p_vaddr < ph[i].p_filesz &&
                    strsz <= ph[i].p_filesz - (strtab - ph[i].p_vaddr)) {
                        str_off = strtab - ph[i].p_vaddr + ph[i].p_offset;
                        break;
                }
        if (str_off == UINT64_MAX)
                goto bad;
        tab = malloc(strsz);
        if (!tab)
                goto oom;
        r = pread_full(fd, tab, strsz, str_off);
        if (r < 0)
                goto fail;

        d.needed = calloc(n_needed, sizeof(char *));
        if (n_needed > 0 && !d.needed)
                goto oom;
        for (size_t i = 0; i < n_dyn && dyn[i].d_tag != DT_NULL; i++) {
                if (dyn[i].d_tag != DT_NEEDED)
                        continue;
                const char *s = strtab_get(tab, strsz, dyn[i].d_un.d_val);
                if (!s || !*s)
                        goto bad;
                d.needed[d.n_needed] = strdup(s);
                if (!d.needed[d.n_needed++])
                        goto oom;
        }
        const struct {
                uint64_t off;
                char **dst;
        } paths[] = {{rpath, &d.rpath}, {runpath, &d.runpath}};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                if (paths[i].off == UINT64_MAX)
                        continue;
                const char *s = strtab_get(tab, strsz, paths[i].off);
                if (!s)
                        goto bad;
                *paths[i].dst = strdup(s);
                if (!*paths[i].dst)
                        goto oom;
        }
        *ret = d;
        return 0;

bad:
        r = -ENOEXEC;
        goto fail;
oom:
        r = -ENOMEM;
fail:
        elf_deps_done(&d);
        return r;
}

/* 1 if PATH is a regular ELF file of the binary's class and machine, 0 if not (or missing). */
static int elf_matches(finder *f, const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (dep_fstat(f, path, fd, &st) < 0)
                return fd < 0 && errno == ENOMEM ? -ENOMEM : 0;
        ElfW(Ehdr) eh;
        if (!S_ISREG(st.st_mode) || elf_header(fd, &eh) < 0)
                return 0;
        return eh.e_ident[EI_CLASS] == f->cls && eh.e_machine == f->machine;
}

/* ---- /etc/ld.so.cache ----------------------------------------------------------------------- */

/* glibc's formats (sysdeps/generic/dl-cache.h). The new one ("glibc-ld.so.cache1.1", the only
 * one glibc >= 2.32 writes) may follow an old "ld.so-1.7.0" table. */
#define CACHE_OLD_MAGIC   "ld.so-1.7.0"
#define CACHE_NEW_MAGIC   "glibc-ld.so.cache"
#define CACHE_NEW_VERSION "1.1"
#define CACHE_NEW_HEADER                                                                    \
        48                  /* magic 17, version 3, nlibs 4, len_strings 4, flags 1, pad 3, \
                               extension_offset 4, unused 12 */
#define CACHE_NEW_ENTRY  24 /* flags 4, key 4, value 4, osversion 4, hwcap 8 */
#define CACHE_OLD_ENTRY  12 /* flags 4, key 4, value 4 */
#define CACHE_FLAG_TYPE  0x00ff
#define CACHE_FLAG_LIBC6 0x0003

static uint32_t get_u32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

/* Best effort: no cache (or one we do not understand) only means ld.so searches its default
 * directories, in the jail as on the host. */
static void cache_load(finder *f)
{
        _cleanup_close_ int fd = open("/etc/ld.so.cache", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (dep_fstat(f, "/etc/ld.so.cache", fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            st.st_size < 64 || st.st_size > MAX_CACHE_BYTES)
                return;
        size_t size = (size_t)st.st_size;
        char *data = malloc(size);
        if (!data || pread_full(fd, data, size, 0) < 0) {
                free(data);
                return;
        }
        size_t off = 0;
        if (memcmp(data, CACHE_OLD_MAGIC, strlen(CACHE_OLD_MAGIC)) == 0) {
                uint32_t n_old = get_u32((const uint8_t *)data + 12);
                if (n_old > size / CACHE_OLD_ENTRY) {
                        free(data);
                        return;
                }
                off = (16 + (size_t)n_old * CACHE_OLD_ENTRY + 7) & ~(size_t)7;
        }
        if (off + CACHE_NEW_HEADER > size ||
            memcmp(data + off, CACHE_NEW_MAGIC, strlen(CACHE_NEW_MAGIC)) != 0 ||
            memcmp(data + off + 17, CACHE_NEW_VERSION, 3) != 0) {
                free(data);
                return;
        }
        uint32_t n = get_u32((const uint8_t *)data + off + 20);
        if (n > (size - off - CACHE_NEW_HEADER) / CACHE_NEW_ENTRY) {
                free(data);
                return;
        }
        f->cache = data;
        f->cache_size = size;
        f->cache_base = data + off;
        f->cache_span = size - off;
        f->cache_entries = (const uint8_t *)data + off + CACHE_NEW_HEADER;
        f->cache_n = n;
}

static const char *cache_string(const finder *f, uint32_t off)
{
        return strtab_get(f->cache_base, f->cache_span, off);
}

/* ---- resolution ------------------------------------------------------------------------------ */

/* "$ORIGIN/../lib" -> "/dir/of/obj/../lib". NULL for entries with other tokens ($LIB,
 * $PLATFORM: left out, as an unexpandable run path entry) or on allocation failure. */
static char *expand_origin(const char *entry, const char *origin)
{
        const char *tokens[] = {"${ORIGIN}", "$ORIGIN"};
        char *out = NULL;
        size_t size = 0;
        FILE *s = open_memstream(&out, &size);
        if (!s)
                return NULL;
        bool ok = true;
        for (const char *c = entry; *c && ok;) {
                if (*c != '$') {
                        fputc(*c++, s);
                        continue;
                }
                ok = false;
                for (size_t i = 0; i < ELEMENTSOF(tokens); i++)
                        if (strncmp(c, tokens[i], strlen(tokens[i])) == 0) {
                                fputs(origin, s);
                                c += strlen(tokens[i]);
                                ok = true;
                                break;
                        }
        }
        if (fclose(s) != 0 || !ok) {
                free(out);
                return NULL;
        }
        return out;
}

/* Look for NAME in each directory of a colon-separated run path. 1 with *ret_path when found. */
static int search_run_path(finder *f, const char *list, const char *origin, const char *name,
                           char **ret_path)
{
        for (const char *c = list; *c;) {
                size_t k = strcspn(c, ":");
                _cleanup_free_ char *entry = strndup(c, k);
                c += k + (c[k] == ':');
                if (!entry)
                        return -ENOMEM;
                if (k == 0)
                        continue;
                _cleanup_free_ char *dir = expand_origin(entry, origin);
                if (!dir || dir[0] != '/')
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, name) < 0)
                        return -ENOMEM;
                int r = elf_matches(f, path);
                if (r < 0)
                        return r;
                if (r > 0) {
                        *ret_path = TAKE_PTR(path);
                        return 1;
                }
        }
        return 0;
}

/* Where ld.so would load NAME (needed by OBJ at OBJ_PATH) from: bind it there. Every cache
 * entry for the name that fits is bound (ld.so may prefer a hwcaps variant); the first is the
 * one whose own needs are followed. 1 with *ret_primary, 0 when nowhere. */
static int resolve(finder *f, const elf_deps *obj, const char *obj_path, const elf_deps *exe,
                   const char *name, char **ret_primary)
{
        _cleanup_free_ char *origin = NULL;
        int r;

        /* $ORIGIN: the directory of the object as ld.so sees it (through symlinks). */
        if (obj->rpath || obj->runpath || (exe && exe->rpath)) {
                origin = dep_realpath(f, obj_path);
                if (!origin)
                        return negative_errno();
                *strrchr(origin, '/') = '\0';
        }

        if (strchr(name, '/')) { /* a path: used as is (relative ones are not) */
                if (name[0] != '/')
                        return 0;
                r = elf_matches(f, name);
                if (r > 0 && !(*ret_primary = strdup(name)))
                        return -ENOMEM;
                return r;
        }
        /* DT_RPATH counts only without DT_RUNPATH; the executable's applies to all it loads. */
        const char *rpaths[] = {!obj->runpath ? obj->rpath : NULL,
                                exe && exe != obj && !exe->runpath ? exe->rpath : NULL};
        for (size_t i = 0; i < ELEMENTSOF(rpaths); i++) {
                if (!rpaths[i])
                        continue;
                r = search_run_path(f, rpaths[i], origin ? origin : "", name, ret_primary);
                if (r != 0)
                        return r;
        }
        if (obj->runpath) {
                r = search_run_path(f, obj->runpath, origin ? origin : "", name, ret_primary);
                if (r != 0)
                        return r;
        }
        if (obj->nodeflib)
                return 0;

        char *primary = NULL;
        for (uint32_t i = 0; i < f->cache_n; i++) {
                const uint8_t *e = f->cache_entries + (size_t)i * CACHE_NEW_ENTRY;
                if ((get_u32(e) & CACHE_FLAG_TYPE) != CACHE_FLAG_LIBC6)
                        continue;
                const char *key = cache_string(f, get_u32(e + 4));
                const char *value = cache_string(f, get_u32(e + 8));
                if (!key || !value || strcmp(key, name) != 0 || value[0] != '/')
                        continue;
                r = elf_matches(f, value);
                if (r < 0)
                        goto fail;
                if (r == 0)
                        continue;
                r = add_mount(f, value, value, RESTRICT_MOUNT_EXEC);
                if (r < 0)
                        goto fail;
                if (!primary && !(primary = strdup(value))) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (primary) {
                *ret_primary = primary;
                return 1;
        }
        for (size_t i = 0; i < ELEMENTSOF(default_lib_dirs); i++) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", default_lib_dirs[i], name) < 0)
                        return -ENOMEM;
                r = elf_matches(f, path);
                if (r < 0)
                        return r;
                if (r > 0) {
                        *ret_primary = TAKE_PTR(path);
                        return 1;
                }
        }
        return 0;
fail:
        free(primary);
        return r;
}

static int enqueue(finder *f, const char *path, bool required)
{
        for (size_t i = 0; i < f->n_queue; i++)
                if (strcmp(f->queue[i], path) == 0) {
                        f->queue_required[i] |= required;
                        return 0;
                }
        if (f->n_queue >= MAX_OBJECTS) {
                set_error(f->error, "jail: more than %d shared objects to follow", MAX_OBJECTS);
                return -E2BIG;
        }
        f->queue[f->n_queue] = strdup(path);
        if (!f->queue[f->n_queue])
                return -ENOMEM;
        f->queue_required[f->n_queue++] = required;
        return 0;
}

static bool name_seen(const finder *f, const char *name)
{
        for (size_t i = 0; i < f->n_names; i++)
                if (strcmp(f->names[i], name) == 0)
                        return true;
        return false;
}

/* Follow DT_NEEDED from every queued object, breadth first, like ld.so. A library missing for
 * the binary itself is an error (QEMU could not start); one missing for a module only means
 * that module cannot be loaded, on the host either. */
static int follow_needs(finder *f, const elf_deps *exe)
{
        for (; f->next < f->n_queue; f->next++) {
                const char *path = f->queue[f->next];
                bool required = f->queue_required[f->next];
                elf_deps d = {0};
                int r = elf_deps_read(f, path, &d);
                if (r < 0) {
                        if (!required)
                                continue;
                        set_error(f->error, "jail: cannot read the dynamic section of %s: %s", path,
                                  strerror(-r));
                        return r;
                }
                if (d.cls != f->cls || d.machine != f->machine) {
                        elf_deps_done(&d);
                        if (!required)
                                continue;
                        set_error(f->error, "jail: %s is not an ELF object for this machine", path);
                        return -ENOEXEC;
                }
                for (size_t i = 0; i < d.n_needed && r >= 0; i++) {
                        if (name_seen(f, d.needed[i]))
                                continue;
                        _cleanup_free_ char *found = NULL;
                        r = resolve(f, &d, path, exe ? exe : &d, d.needed[i], &found);
                        if (r == 0) {
                                if (required) {
                                        set_error(f->error,
                                                  "jail: %s needs %s, which the dynamic loader "
                                                  "would not find",
                                                  path, d.needed[i]);
                                        r = -ENOENT;
                                }
                                break;
                        }
                        if (r < 0)
                                break;
                        if (f->n_names >= MAX_OBJECTS) {
                                r = -E2BIG;
                                break;
                        }
                        if (!(f->names[f->n_names] = strdup(d.needed[i]))) {
                                r = -ENOMEM;
                                break;
                        }
                        f->n_names++;
                        r = add_mount(f, found, found, RESTRICT_MOUNT_EXEC);
                        if (r >= 0)
                                r = enqueue(f, found, required);
                }
                elf_deps_done(&d);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- directories ------------------------------------------------------------------------------
 */

static bool is_module_name(const char *name)
{
        size_t len = strlen(name);
        if (len < 4 || strcmp(name + len - 3, ".so") != 0)
                return false;
        return strncmp(name, "accel-", 6) == 0 || strncmp(name, "hw-", 3) == 0;
}

/* QEMU loads modules from one module directory, found relative to its own (Debian:
 * /usr/bin/../lib/x86_64-linux-gnu/qemu): the first candidate that holds modules. Only the
 * modules a device model can use are bound, each with its closure. */
static int add_modules(finder *f, const char *exec_path)
{
        _cleanup_free_ char *prefix = strdup(exec_path);
        if (!prefix)
                return -ENOMEM;
        for (int up = 0; up < 2; up++) {
                char *slash = strrchr(prefix, '/');
                if (!slash)
                        return 0;
                *slash = '\0';
        }
        static const char *const rel[] = {
#ifdef MULTIARCH
                "lib/" MULTIARCH "/qemu",
#endif
                "lib64/qemu",
                "lib/qemu",
        };
        for (size_t i = 0; i < ELEMENTSOF(rel); i++) {
                _cleanup_free_ char *dir = NULL;
                if (asprintf(&dir, "%s/%s", prefix, rel[i]) < 0)
                        return -ENOMEM;
                DIR *d = opendir(dir);
                struct stat dst;
                if (dep_fstat(f, dir, d ? dirfd(d) : -1, &dst) < 0) {
                        if (d)
                                closedir(d);
                        continue;
                }
                struct dirent *de;
                bool found = false;
                int r = 0;
                while (r >= 0 && (de = readdir(d))) {
                        if (!is_module_name(de->d_name))
                                continue;
                        _cleanup_free_ char *path = NULL;
                        if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        struct stat st;
                        if (dep_stat(f, 'f', path, &st) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        found = true;
                        r = add_mount(f, path, path, RESTRICT_MOUNT_EXEC);
                        if (r >= 0)
                                r = enqueue(f, path, false);
                }
                closedir(d);
                if (r < 0 || found)
                        return r;
        }
        return 0;
}

/* A data directory is bound whole; a symlink in it that leads outside every bound directory
 * (Debian: /usr/share/qemu/OVMF.fd -> ../ovmf/OVMF.fd) gets its target bound where the link
 * points inside the jail. One level: QEMU opens files directly in its data directories. */
static int add_data_dir(finder *f, const char *dir)
{
        struct stat st;
        if (dep_stat(f, 'f', dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return 0; /* QEMU lists directories it would use if they existed */
        _cleanup_free_ char *target = path_clean(dir);
        if (!target)
                return -ENOMEM;
        return add_mount(f, dir, target, RESTRICT_MOUNT_DIR);
}

static int add_data_links(finder *f, const char *dir)
{
        _cleanup_free_ char *target_dir = path_clean(dir);
        if (!target_dir)
                return -ENOMEM;
        DIR *d = opendir(dir);
        struct stat dst;
        if (dep_fstat(f, dir, d ? dirfd(d) : -1, &dst) < 0) {
                if (d)
                        closedir(d);
                return 0;
        }
        int r = 0;
        struct dirent *de;
        while (r >= 0 && (de = readdir(d))) {
                if (de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
                        continue;
                _cleanup_free_ char *link = NULL, *text = NULL, *joined = NULL, *where = NULL;
                if (asprintf(&link, "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                struct stat lst, st;
                if (dep_stat(f, 'l', link, &lst) < 0 || !S_ISLNK(lst.st_mode) ||
                    dep_stat(f, 'f', link, &st) < 0)
                        continue; /* not a link, or a dangling one: QEMU cannot use it either */
                if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                        continue;
                text = calloc(1, PATH_MAX + 1);
                if (!text) {
                        r = -ENOMEM;
                        break;
                }
                if (readlink(link, text, PATH_MAX) <= 0)
                        continue;
                if (text[0] == '/')
                        where = path_clean(text);
                else if (asprintf(&joined, "%s/%s", target_dir, text) >= 0)
                        where = path_clean(joined);
                if (!where) {
                        r = -ENOMEM;
                        break;
                }
                bool visible = false;
                for (size_t i = 0; i < f->n_mounts && !visible; i++)
                        visible = (f->mounts[i].flags & RESTRICT_MOUNT_DIR) &&
                                  path_below(where, f->mounts[i].target);
                if (!visible)
                        r = add_mount(f, link, where, S_ISDIR(st.st_mode) ? RESTRICT_MOUNT_DIR : 0);
        }
        closedir(d);
        return r;
}

/* ---- files ------------------------------------------------------------------------------------
 */

static int add_device(finder *f, const char *path)
{
        struct stat st;
        if (stat(path, &st) < 0) {
                int r = negative_errno();
                set_error(f->error, "jail: %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISCHR(st.st_mode)) {
                set_error(f->error, "jail: %s is not a character device", path);
                return -ENODEV;
        }
        return add_mount(f, path, path, RESTRICT_MOUNT_DEVICE);
}

/* The kernel and initrd are opened by QEMU, as the device model's uid: they must be readable
 * by others (as Debian installs /boot/vmlinuz-*). Checked here so the error names the file and
 * the fix, instead of QEMU's "could not open /kernel". */
static int add_boot_file(finder *f, const char *key, const char *path, const char *target)
{
        struct stat st;
        if (stat(path, &st) < 0) {
                int r = negative_errno();
                set_error(f->error, "%s: %s: %s", key, path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                set_error(f->error, "%s: %s is not a regular file", key, path);
                return -EINVAL;
        }
        if (!(st.st_mode & S_IROTH)) {
                set_error(f->error,
                          "%s: %s (mode %04o) is not readable by others: a jailed QEMU opens it "
                          "as the device model's own uid; make it world-readable (chmod o+r) or "
                          "use a readable copy",
                          key, path, (unsigned)(st.st_mode & 07777));
                return -EACCES;
        }
        return add_mount(f, path, target, 0);
}

static int mount_compare(const void *a, const void *b)
{
        return strcmp(((const restrict_mount *)a)->target, ((const restrict_mount *)b)->target);
}

/* Parents before children (a prefix sorts first), and nothing below a directory mount: the
 * directory shows the host's file at that place already, and its mount is read-only, so no
 * mount point could be made there. */
static void mounts_finish(finder *f)
{
        qsort(f->mounts, f->n_mounts, sizeof(*f->mounts), mount_compare);
        size_t kept = 0;
        for (size_t i = 0; i < f->n_mounts; i++) {
                bool nested = false;
                for (size_t j = 0; j < kept && !nested; j++)
                        nested = (f->mounts[j].flags & RESTRICT_MOUNT_DIR) &&
                                 path_below(f->mounts[i].target, f->mounts[j].target);
                if (nested) {
                        free(f->mounts[i].source);
                        free(f->mounts[i].target);
                        continue;
                }
                f->mounts[kept++] = f->mounts[i];
        }
        f->n_mounts = kept;
}

static void finder_done(finder *f)
{
        for (size_t i = 0; i < f->n_mounts; i++) {
                free(f->mounts[i].source);
                free(f->mounts[i].target);
        }
        free(f->mounts);
        for (size_t i = 0; i < f->n_names; i++)
                free(f->names[i]);
        for (size_t i = 0; i < f->n_queue; i++)
                free(f->queue[i]);
        free(f->cache);
        for (size_t i = 0; i < f->n_deps; i++) {
                free(f->deps[i].path);
                free(f->deps[i].value);
        }
        free(f->deps);
        *f = (finder){.error = f->error};
}

/* The part of a jail that depends only on the binary and the host's files, not on the
 * configuration: the binary, its interpreter, the libraries and modules, ld.so.cache, the data
 * directories. This is what the cache holds. */
static int find_host_files(finder *f, const jail_params *p, const char *exec_path)
{
        elf_deps exe = {0};
        int r = elf_deps_read(f, exec_path, &exe);
        if (r == -ENOEXEC)
                set_error(f->error, NOT_ELF_MESSAGE, exec_path);
        else if (r < 0)
                set_error(f->error, "jail: cannot read the dynamic section of %s: %s", exec_path,
                          strerror(-r));
        if (r < 0)
                return r;
        f->cls = exe.cls;
        f->machine = exe.machine;
        cache_load(f);

        r = add_mount(f, exec_path, exec_path, RESTRICT_MOUNT_EXEC);
        if (r >= 0 && exe.interp) {
                r = elf_matches(f, exe.interp);
                if (r == 0) {
                        set_error(f->error,
                                  "jail: %s: the ELF interpreter %s is missing or foreign",
                                  exec_path, exe.interp);
                        r = -ENOENT;
                }
                if (r > 0)
                        r = add_mount(f, exe.interp, exe.interp, RESTRICT_MOUNT_EXEC);
        }
        if (r >= 0 && f->cache)
                r = add_mount(f, "/etc/ld.so.cache", "/etc/ld.so.cache", 0);
        if (r >= 0)
                r = enqueue(f, exec_path, true);
        if (r >= 0)
                r = add_modules(f, exec_path);
        if (r >= 0)
                r = follow_needs(f, &exe);
        for (size_t i = 0; r >= 0 && i < p->probe->n_data_dirs; i++)
                r = add_data_dir(f, p->probe->data_dirs[i]);
        for (size_t i = 0; r >= 0 && i < p->probe->n_data_dirs; i++)
                r = add_data_links(f, p->probe->data_dirs[i]);
        elf_deps_done(&exe);
        return r < 0 ? r : 0;
}

/* ---- the cache ----------------------------------------------------------------------------
 *
 * find_host_files() reads about 500 ELF headers, dynamic sections and directories (3 ms of a
 * 22 ms start with QEMU 7.2 on Debian 12), and its answer only changes when one of them does.
 * So it is kept in CACHE_DIR/jail-HASH.txt (HASH: of the binary's canonical path), with every
 * input it was computed from, and used only while each of them is as it was:
 *   - the format, this qdm's version, the binary's canonical path, the probe's data
 *     directories (in order), in the file's first lines;
 *   - every path it stat()ed, lstat()ed, opened or listed, with what stat() said (device,
 *     inode, size, mtime, ctime, type and mode; or the errno, for paths that were missing):
 *     the binary, ld.so.cache, every library and every candidate it tried, the module and data
 *     directories (their mtime and ctime change with each entry added, removed or renamed),
 *     the links in the data directories; and what realpath() said of the objects whose
 *     $ORIGIN counted.
 * Checking them costs one stat() each (about 120). What depends on the start (devices, KVM,
 * kernel, initrd, the time zone) is never cached: jail_files_find() adds it every time.
 *
 * A file modified in the same clock tick as it was read could keep its timestamps: a result
 * that read anything changed in the last CACHE_RACY_NS is not stored (the next start stores it,
 * as git treats a "racily clean" index entry).
 *
 * The file is untrusted input (probe_cache_read(): ours, not writable by others, bounded);
 * every line and field is checked, and anything unexpected means "compute it again", never an
 * error. One line per record, fields separated by tabs, paths last; a result with a tab or
 * newline in a path is not cached. Lines:
 *   qdm-jail-cache TAB 1 TAB QDM_VERSION       (bump the 1 whenever find_host_files() changes)
 *   exec TAB path                               (the binary, canonical)
 *   data TAB dir                                (each data directory of the probe, in order)
 *   f|l TAB errno TAB dev TAB ino TAB size TAB mtime_ns TAB ctime_ns TAB mode TAB path
 *   r TAB errno TAB path TAB canonical path     (empty when errno is not 0)
 *   m TAB flags TAB source TAB target           (a mount, RESTRICT_MOUNT_* flags)
 *   end
 */
#define CACHE_FORMAT    "1"
#define CACHE_MAX_FILE  (1024 * 1024)
#define CACHE_MAX_DEPS  4096
#define CACHE_RACY_NS   (UINT64_C(2) * 1000000000)
#define CACHE_MAX_ERRNO 4095

static bool cache_str_ok(const char *s)
{
        return s && *s && !strpbrk(s, "\t\n");
}

static int dep_compare(const void *a, const void *b)
{
        const jail_dep *x = a, *y = b;
        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        return strcmp(x->path, y->path);
}

static bool dep_equal(const jail_dep *a, const jail_dep *b)
{
        return a->kind == b->kind && a->err == b->err && a->dev == b->dev && a->ino == b->ino &&
               a->size == b->size && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
               a->mode == b->mode && streq_ptr(a->value, b->value);
}

/* Whether DEP says what the host says now. */
static bool dep_holds(const jail_dep *dep)
{
        if (dep->kind == 'r') {
                _cleanup_free_ char *now = realpath(dep->path, NULL);
                return now ? dep->err == 0 && streq_ptr(now, dep->value) : dep->err == errno;
        }
        struct stat st;
        if ((dep->kind == 'l' ? lstat(dep->path, &st) : stat(dep->path, &st)) < 0)
                return dep->err == errno;
        jail_dep now = {.kind = dep->kind};
        dep_fill(&now, &st);
        return dep_equal(&now, dep);
}

/* Best effort: a result that cannot be stored only costs the next start the same work. */
static void jail_cache_store(finder *f, const char *file, const jail_params *p,
                             const char *exec_path, uint64_t began_ns)
{
        if (f->deps_lost || f->n_deps > CACHE_MAX_DEPS || !cache_str_ok(exec_path))
                return;
        qsort(f->deps, f->n_deps, sizeof(*f->deps), dep_compare);
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        _cleanup_fclose_ FILE *out = open_memstream(&text, &size);
        if (!out)
                return;
        fprintf(out, "qdm-jail-cache\t" CACHE_FORMAT "\t%s\nexec\t%s\n", QDM_VERSION, exec_path);
        for (size_t i = 0; i < p->probe->n_data_dirs; i++) {
                if (!cache_str_ok(p->probe->data_dirs[i]))
                        return;
                fprintf(out, "data\t%s\n", p->probe->data_dirs[i]);
        }
        for (size_t i = 0; i < f->n_deps; i++) {
                const jail_dep *d = &f->deps[i];
                if (i > 0 && dep_compare(d, d - 1) == 0) {
                        if (!dep_equal(d, d - 1))
                                return; /* it changed while we read it */
                        continue;
                }
                if (!cache_str_ok(d->path) || (d->value && !cache_str_ok(d->value)))
                        return;
                if (d->kind == 'r') {
                        fprintf(out, "r\t%d\t%s\t%s\n", d->err, d->path, d->value ? d->value : "");
                        continue;
                }
                if (d->err == 0 && (d->mtime_ns + CACHE_RACY_NS > began_ns ||
                                    d->ctime_ns + CACHE_RACY_NS > began_ns))
                        return;
                fprintf(out,
                        "%c\t%d\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                        "\t%" PRIu32 "\t%s\n",
                        d->kind, d->err, d->dev, d->ino, d->size, d->mtime_ns, d->ctime_ns, d->mode,
                        d->path);
        }
        for (size_t i = 0; i < f->n_mounts; i++) {
                const restrict_mount *m = &f->mounts[i];
                if (!cache_str_ok(m->source) || !cache_str_ok(m->target))
                        return;
                fprintf(out, "m\t%u\t%s\t%s\n", m->flags, m->source, m->target);
        }
        fputs("end\n", out);
        if (fflush(out) != 0 || ferror(out) || size > CACHE_MAX_FILE)
                return;
        (void)probe_cache_write(file, text, size);
}

/* A decimal number without sign, spaces or leading zeros, at most MAX. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;
        if (!*s || (s[0] == '0' && s[1]))
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        if (v > max)
                return false;
        *ret = v;
        return true;
}

/* Split LINE (modified) at tabs into exactly N fields. */
static bool split_fields(char *line, char **fields, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                fields[i] = line;
                char *tab = strchr(line, '\t');
                if (i + 1 == n)
                        return !tab;
                if (!tab)
                        return false;
                *tab = '\0';
                line = tab + 1;
        }
        return false;
}

/* Absolute; a mount's target must also be clean (restrict.c's rule), not "/". */
static bool cache_path_ok(const char *path, bool clean)
{
        if (path[0] != '/')
                return false;
        if (!clean)
                return true;
        _cleanup_free_ char *c = path_clean(path);
        return c && strcmp(c, path) == 0 && strcmp(path, "/") != 0;
}

typedef struct cache_parse {
        enum { SEEN_NOTHING, SEEN_HEADER, SEEN_EXEC, SEEN_DEPS, SEEN_MOUNTS, SEEN_END } state;
        size_t n_data, n_deps;
} cache_parse;

/* One line of the cache, in the order the file must have. 1 if it holds, 0 if not (stale or
 * malformed), -ENOMEM. */
static int cache_line(finder *f, char *line, const jail_params *p, const char *exec_path,
                      cache_parse *c)
{
        char *v[9];
        uint64_t n[7];
        switch (line[0]) {
        case 'q':
                if (c->state != SEEN_NOTHING || !split_fields(line, v, 3) ||
                    strcmp(v[0], "qdm-jail-cache") != 0 || strcmp(v[1], CACHE_FORMAT) != 0 ||
                    strcmp(v[2], QDM_VERSION) != 0)
                        return 0;
                c->state = SEEN_HEADER;
                return 1;
        case 'e':
                if (c->state == SEEN_MOUNTS && strcmp(line, "end") == 0) {
                        c->state = SEEN_END;
                        return 1;
                }
                if (c->state != SEEN_HEADER || !split_fields(line, v, 2) ||
                    strcmp(v[0], "exec") != 0 || strcmp(v[1], exec_path) != 0)
                        return 0;
                c->state = SEEN_EXEC;
                return 1;
        case 'd':
                return c->state == SEEN_EXEC && split_fields(line, v, 2) &&
                       strcmp(v[0], "data") == 0 && c->n_data < p->probe->n_data_dirs &&
                       strcmp(v[1], p->probe->data_dirs[c->n_data++]) == 0;
        case 'f':
        case 'l':
        case 'r': {
                if (c->state == SEEN_EXEC && c->n_data == p->probe->n_data_dirs)
                        c->state = SEEN_DEPS;
                if (c->state != SEEN_DEPS || ++c->n_deps > CACHE_MAX_DEPS)
                        return 0;
                jail_dep d = {.kind = line[0]};
                if (d.kind == 'r') {
                        if (!split_fields(line, v, 4) || strcmp(v[0], "r") != 0 ||
                            !parse_u64(v[1], CACHE_MAX_ERRNO, &n[0]) ||
                            !cache_path_ok(v[2], false) || (n[0] == 0) != (v[3][0] != '\0') ||
                            (n[0] == 0 && !cache_path_ok(v[3], false)))
                                return 0;
                        d.path = v[2];
                        d.value = n[0] == 0 ? v[3] : NULL;
                } else {
                        if (!split_fields(line, v, 9) || v[0][1] != '\0' ||
                            !parse_u64(v[1], CACHE_MAX_ERRNO, &n[0]) || !cache_path_ok(v[8], false))
                                return 0;
                        for (size_t i = 1; i < 7; i++)
                                if (!parse_u64(v[i + 1], i == 6 ? UINT32_MAX : UINT64_MAX, &n[i]))
                                        return 0;
                        d.dev = n[1];
                        d.ino = n[2];
                        d.size = n[3];
                        d.mtime_ns = n[4];
                        d.ctime_ns = n[5];
                        d.mode = (uint32_t)n[6];
                        d.path = v[8];
                }
                d.err = (int)n[0];
                return dep_holds(&d);
        }
        case 'm': {
                if (c->state == SEEN_DEPS)
                        c->state = SEEN_MOUNTS;
                if (c->state != SEEN_MOUNTS || !split_fields(line, v, 4) ||
                    strcmp(v[0], "m") != 0 ||
                    !parse_u64(v[1],
                               RESTRICT_MOUNT_DIR | RESTRICT_MOUNT_DEVICE | RESTRICT_MOUNT_EXEC,
                               &n[0]) ||
                    !cache_path_ok(v[2], false) || !cache_path_ok(v[3], true))
                        return 0;
                int r = add_mount(f, v[2], v[3], (unsigned)n[0]);
                return r == -ENOMEM ? r : r >= 0;
        }
        default:
                return 0;
        }
}

/* The cached result for the binary at EXEC_PATH into F's mounts, if every input still holds.
 * 1 if it was used; 0 if not (F is left empty); -ENOMEM. */
static int jail_cache_load(finder *f, const char *file, const jail_params *p, const char *exec_path)
{
        _cleanup_free_ char *buf = NULL;
        size_t size;
        if (probe_cache_read(file, CACHE_MAX_FILE, &buf, &size) < 0 || strlen(buf) != size ||
            size == 0 || buf[size - 1] != '\n')
                return 0;
        cache_parse c = {SEEN_NOTHING};
        int r = 1;
        for (char *line = buf; r > 0 && *line;) {
                char *nl = strchr(line, '\n'); /* there is one: the file ends with it */
                *nl = '\0';
                r = cache_line(f, line, p, exec_path, &c);
                line = nl + 1;
        }
        if (r > 0 && c.state == SEEN_END)
                return 1;
        finder_done(f);
        return r < 0 ? r : 0;
}

int jail_files_find(const jail_params *p, jail_files *ret, char **ret_error)
{
        assert_return(p && p->qemu && p->probe && ret, -EINVAL);

        _cleanup_free_ char *error = NULL;
        finder f = {.error = &error};
        _cleanup_free_ char *exec_path = realpath(p->qemu, NULL);
        _cleanup_free_ char *file = NULL;
        bool cached = false;
        int r;

        if (!exec_path) {
                r = negative_errno();
                set_error(&error, "jail: %s: %s", p->qemu, strerror(-r));
                goto out;
        }
        if (p->cache_dir) {
                file = probe_cache_path(p->cache_dir, "jail", exec_path, ".txt");
                r = file ? jail_cache_load(&f, file, p, exec_path) : -ENOMEM;
                if (r < 0)
                        goto out;
                cached = r > 0;
        }
        if (!cached) {
                struct timespec began;
                clock_gettime(CLOCK_REALTIME, &began);
                r = find_host_files(&f, p, exec_path);
                if (r < 0)
                        goto out;
                if (file)
                        jail_cache_store(&f, file, p, exec_path, timespec_ns(&began));
        }

        /* Never cached: what depends on this start, and the host's time zone (one stat()),
         * so that "-rtc base=localtime" means what it means outside (without it, glibc
         * silently takes UTC). Public; skipped when the host has none. */
        struct stat tz;
        r = 0;
        if (stat("/etc/localtime", &tz) == 0 && S_ISREG(tz.st_mode))
                r = add_mount(&f, "/etc/localtime", "/etc/localtime", 0);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(devices); i++)
                r = add_device(&f, devices[i]);
        if (r >= 0 && p->kvm)
                r = add_device(&f, "/dev/kvm");
        if (r >= 0 && p->kernel)
                r = add_boot_file(&f, "kernel", p->kernel, QDM_JAIL_KERNEL);
        if (r >= 0 && p->initrd)
                r = add_boot_file(&f, "initrd", p->initrd, QDM_JAIL_INITRD);
        if (r < 0)
                goto out;

        mounts_finish(&f);
        *ret = (jail_files){
                .mounts = TAKE_PTR(f.mounts),
                .n_mounts = f.n_mounts,
                .exec_path = TAKE_PTR(exec_path),
                .cached = cached,
        };
        f.n_mounts = 0;
        r = 0;
out:
        if (r < 0 && ret_error)
                *ret_error = error ? TAKE_PTR(error) : strdup(strerror(-r));
        finder_done(&f);
        return r;
}

int jail_check_binary(const char *qemu, char **ret_error)
{
        assert_return(qemu, -EINVAL);
        _cleanup_close_ int fd = open(qemu, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        int r = 0;
        struct stat st;
        ElfW(Ehdr) eh;
        if (fd < 0 || fstat(fd, &st) < 0)
                r = negative_errno();
        else if (!S_ISREG(st.st_mode) || elf_header(fd, &eh) < 0 ||
                 (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
                r = -ENOEXEC;
        if (r < 0 && ret_error) {
                if (r == -ENOEXEC)
                        set_error(ret_error, NOT_ELF_MESSAGE, qemu);
                else
                        set_error(ret_error, "jail: %s: %s", qemu, strerror(-r));
        }
        return r;
}

void jail_files_done(jail_files *f)
{
        if (!f)
                return;
        for (size_t i = 0; i < f->n_mounts; i++) {
                free(f->mounts[i].source);
                free(f->mounts[i].target);
        }
        free(f->mounts);
        free(f->exec_path);
        memset(f, 0, sizeof(*f));
}

/* ---- /dev/kvm ------------------------------------------------------------------------------- */

static void id_names(const struct stat *st, char *owner, size_t osize, char *group, size_t gsize)
{
        struct passwd pw, *pwr = NULL;
        struct group gr, *grr = NULL;
        char buf[4096];
        if (getpwuid_r(st->st_uid, &pw, buf, sizeof(buf), &pwr) == 0 && pwr)
                snprintf(owner, osize, "%s", pwr->pw_name);
        else
                snprintf(owner, osize, "%u", (unsigned)st->st_uid);
        if (getgrgid_r(st->st_gid, &gr, buf, sizeof(buf), &grr) == 0 && grr)
                snprintf(group, gsize, "%s", grr->gr_name);
        else
                snprintf(group, gsize, "%u", (unsigned)st->st_gid);
}

int jail_kvm_access(const char *dev, uid_t uid, gid_t *ret_group, char **ret_why)
{
        assert_return(dev && ret_group, -EINVAL);

        struct stat st;
        if (stat(dev, &st) < 0)
                return negative_errno();
        if (!S_ISCHR(st.st_mode)) {
                if (ret_why && asprintf(ret_why, "%s is not a character device", dev) < 0)
                        *ret_why = NULL;
                return 0;
        }
        if ((st.st_mode & 0006) == 0006) {
                *ret_group = (gid_t)-1;
                return 1;
        }
        if ((st.st_mode & 0060) == 0060 && st.st_gid != 0) {
                *ret_group = st.st_gid;
                return 1;
        }
        if (ret_why) {
                char owner[64], group[64];
                id_names(&st, owner, sizeof(owner), group, sizeof(group));
                if (asprintf(ret_why,
                             "%s is %s:%s mode %04o, so the jailed device model (uid %u) cannot "
                             "open it%s: make it group-accessible with \"chgrp kvm %s && chmod "
                             "0660 %s\" (or a udev rule: KERNEL==\"kvm\", GROUP=\"kvm\", "
                             "MODE=\"0660\")",
                             dev, owner, group, (unsigned)(st.st_mode & 07777), (unsigned)uid,
                             (st.st_mode & 0060) == 0060 ? " (its group is root's, which a device "
                                                           "model is never given)"
                                                         : "",
                             dev, dev) < 0)
                        *ret_why = NULL;
        }
        return 0;
}
