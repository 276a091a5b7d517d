/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the reliability programs share: a small failure counter (they loop hundreds of times
 * and report how many runs failed, rather than stopping at the first), latency samples with
 * median and maximum, RSS, a seeded random delay, and the leftover checks every run ends
 * with (fds of this process, processes of a uid, children, a run directory's contents).
 * Header-only, like tests/helpers/test-leaks.h, so each program gets its own counters.
 */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "test-support.h"
#include "util.h"

/* The uid range every reliability configuration uses: no other suite allocates from it. */
#define REL_UID_MIN 64500
#define REL_UID_MAX 64799

/* ---- failures: counted per case, the first few printed ----------------------------------- */

static unsigned rel_failures_printed;

_printf_(2, 3) _unused_ static void rel_fail(unsigned *counter, const char *fmt, ...)
{
        (*counter)++;
        if (rel_failures_printed++ >= 40)
                return;
        va_list ap;
        va_start(ap, fmt);
        fputs("FAIL: ", stdout);
        vfprintf(stdout, fmt, ap);
        fputc('\n', stdout);
        va_end(ap);
        fflush(stdout);
}

/* ---- latency samples ----------------------------------------------------------------------- */

typedef struct rel_samples {
        uint64_t *v;
        size_t n, alloc;
} rel_samples;

_unused_ static void rel_samples_add(rel_samples *s, uint64_t usec)
{
        if (s->n == s->alloc) {
                size_t a = s->alloc ? s->alloc * 2 : 64;
                uint64_t *v = realloc(s->v, a * sizeof(*v));
                if (!v)
                        return;
                s->v = v;
                s->alloc = a;
        }
        s->v[s->n++] = usec;
}

_unused_ static int rel_cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Median and maximum in milliseconds; 0 when there are no samples. */
_unused_ static void rel_samples_stats(rel_samples *s, double *ret_median_ms, double *ret_max_ms)
{
        *ret_median_ms = *ret_max_ms = 0;
        if (s->n == 0)
                return;
        qsort(s->v, s->n, sizeof(*s->v), rel_cmp_u64);
        uint64_t med = s->n % 2 ? s->v[s->n / 2] : (s->v[s->n / 2 - 1] + s->v[s->n / 2]) / 2;
        *ret_median_ms = (double)med / 1000.0;
        *ret_max_ms = (double)s->v[s->n - 1] / 1000.0;
}

_unused_ static void rel_samples_free(rel_samples *s)
{
        free(s->v);
        *s = (rel_samples){0};
}

/* ---- time, randomness ---------------------------------------------------------------------- */

_unused_ static void rel_sleep_usec(uint64_t usec)
{
        struct timespec ts = {.tv_sec = (time_t)(usec / USEC_PER_SEC),
                              .tv_nsec = (long)(usec % USEC_PER_SEC) * 1000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* A random delay in [0, max_usec], from the program's seeded generator. */
_unused_ static uint64_t rel_random_usec(uint64_t max_usec)
{
        return (uint64_t)random() % (max_usec + 1);
}

/* ---- memory -------------------------------------------------------------------------------- */

/* VmRSS of pid (0: this process) in KiB, or -1. */
_unused_ static long rel_rss_kib(pid_t pid)
{
        char path[64], line[256];
        snprintf(path, sizeof(path), pid ? "/proc/%d/status" : "/proc/self/status", (int)pid);
        FILE *f = fopen(path, "re");
        long kib = -1;
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

/* Peak RSS (VmHWM) of this process in KiB since the last rel_peak_reset(), or -1. */
_unused_ static long rel_peak_kib(void)
{
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");
        long kib = -1;
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

/* Reset the peak to the current RSS (Linux >= 4.0: "5" to clear_refs). */
_unused_ static void rel_peak_reset(void)
{
        FILE *f = fopen("/proc/self/clear_refs", "we");
        if (f) {
                fputs("5", f);
                fclose(f);
        }
}

/* ---- leftovers ----------------------------------------------------------------------------- */

/* Live (not zombie) processes that have uid as any of their uids, besides this one. */
_unused_ static size_t rel_count_uid_procs(uid_t uid, pid_t *ret_example)
{
        pid_t *pids = NULL;
        size_t n = 0, found = 0;
        if (proc_list_pids(&pids, &n) < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                proc_status st;
                if (pids[i] == getpid() || proc_status_read(pids[i], &st) < 0)
                        continue;
                if (st.state == 'Z' || st.state == 'X')
                        continue;
                for (int k = 0; k < _PROC_ID_MAX; k++)
                        if (st.uid[k] == uid) {
                                if (ret_example)
                                        *ret_example = pids[i];
                                found++;
                                break;
                        }
        }
        free(pids);
        return found;
}

/* Live processes of the whole reliability uid range. */
_unused_ static size_t rel_count_range_procs(pid_t *ret_example)
{
        pid_t *pids = NULL;
        size_t n = 0, found = 0;
        if (proc_list_pids(&pids, &n) < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                proc_status st;
                if (proc_status_read(pids[i], &st) < 0 || st.state == 'Z' || st.state == 'X')
                        continue;
                for (int k = 0; k < _PROC_ID_MAX; k++)
                        if (st.uid[k] >= REL_UID_MIN && st.uid[k] <= REL_UID_MAX) {
                                if (ret_example)
                                        *ret_example = pids[i];
                                found++;
                                break;
                        }
        }
        free(pids);
        return found;
}

/* Does any child of ours, running or zombie, remain? (ECHILD is the only proof of none.) */
_unused_ static bool rel_have_children(void)
{
        siginfo_t si = {0};
        return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 || errno != ECHILD;
}

/* Entries of dir other than the dot-directories (.cache, .uids); writes the first to
 * ret_name (size 256). A missing directory holds nothing. */
_unused_ static size_t rel_dir_entries(const char *dir, char *ret_name)
{
        DIR *d = opendir(dir);
        size_t n = 0;
        if (!d)
                return 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        if (n++ == 0 && ret_name)
                                snprintf(ret_name, 256, "%s", de->d_name);
                }
        closedir(d);
        return n;
}

/* Is pid still a live process (not a zombie) with the given start time? */
_unused_ static bool rel_pid_alive(pid_t pid)
{
        proc_status st;
        if (pid <= 0 || proc_status_read(pid, &st) < 0)
                return false;
        return st.state != 'Z' && st.state != 'X';
}

/* A QEMU stopped with SIGSTOP that a failed run left: continue and kill it, so one failure
 * does not cascade into the next run. */
_unused_ static void rel_reap_stray(pid_t pid)
{
        if (pid > 0 && rel_pid_alive(pid)) {
                kill(pid, SIGKILL);
                kill(pid, SIGCONT);
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
}
