/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers shared by every layer of libqdm: cleanup attributes, monotonic time, and
 * the fd/memory idioms the style guide asks for. Nothing here does I/O on its own.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define QDM_EXPORT __attribute__((visibility("default")))

#define USEC_PER_SEC  UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define NSEC_PER_USEC UINT64_C(1000)
#define USEC_INFINITY UINT64_MAX

#define ELEMENTSOF(x)  (sizeof(x) / sizeof((x)[0]))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

/* Public entry points check their arguments this way (STYLE.md rule 3). */
#define assert_return(expr, r)      \
        do {                        \
                if (!(expr))        \
                        return (r); \
        } while (0)

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(freep)
#define _cleanup_close_  _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Hand a resource out of a cleanup-guarded variable. */
#define TAKE_PTR(p)                      \
        ({                               \
                __typeof__(p) _tp = (p); \
                (p) = NULL;              \
                _tp;                     \
        })
#define TAKE_FD(fd)             \
        ({                      \
                int _tf = (fd); \
                (fd) = -1;      \
                _tf;            \
        })

static inline int safe_close(int fd)
{
        if (fd >= 0)
                closep(&fd);
        return -1;
}

static inline uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

/* Saturating "now + delta": USEC_INFINITY stays infinite. */
static inline uint64_t usec_add(uint64_t a, uint64_t b)
{
        return (a > UINT64_MAX - b) ? UINT64_MAX : a + b;
}

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* S without PREFIX if S starts with it, else NULL. */
static inline const char *startswith(const char *s, const char *prefix)
{
        size_t n = strlen(prefix);
        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* errno as a negative value, never 0 (so "r = -errno" after a failed call is always < 0). */
static inline int negative_errno(void)
{
        return errno > 0 ? -errno : -EIO;
}

/* The last `max` bytes of what an untrusted program (QEMU) wrote, for an error message:
 * trailing blank lines trimmed, control characters (NUL included) shown as '?' so nothing
 * it says can drive the caller's terminal. Returns a malloc'd string, NULL when out of memory. */
static inline char *text_tail_printable(const char *buf, size_t len, size_t max)
{
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
                len--;
        size_t start = len > max ? len - max : 0;
        char *s = malloc(len - start + 1);
        if (!s)
                return NULL;
        for (size_t i = start; i < len; i++) {
                unsigned char c = (unsigned char)buf[i];
                s[i - start] = c < 0x20 && c != '\n' && c != '\t' ? '?' : (char)c;
        }
        s[len - start] = '\0';
        return s;
}
