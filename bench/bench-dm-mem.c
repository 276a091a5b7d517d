/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-dm-mem: the memory a process holds per device model it keeps ready, libqdm against the
 * least code. Both sides start K paused QEMUs at once from one process, wait until all are
 * ready (R1), and report how much the process's heap grew, divided by K.
 *
 *   --lib K   libqdm: one qdm_ctx, K x (qdm_config_new_from_json, qdm_dm_new, qdm_dm_start),
 *             the caller's config reference dropped (each device model keeps its own), the
 *             context run until every start completed. Measured at READY: the device model,
 *             its config, its two QMP clients (control and events) with their buffers, the loop
 *             sources, the uid lock, whatever the library allocated for it.
 *   --raw K   raw-launch's own code (bench-util.h): K x (calloc a bench_qemu and a bench_conn,
 *             bench_qemu_prepare, bench_qemu_spawn), then bench_qemu_wait_ready on each; the
 *             connected control socket and its line buffer (64 KiB, raw-launch's) are kept.
 *
 * Heap = mallinfo2().uordblks + hblkhd (bytes in use from malloc, mmap'd chunks included),
 * read before the K starts and once all are ready. Before measuring, each side starts and
 * tears down one device model unmeasured, so one-time costs (libqdm's probe cache, the NSS
 * modules a uid lookup loads, json-c's and stdio's first allocations) are not counted per
 * device model. Not counted: QEMU's memory (another process), kernel memory (socket buffers,
 * the pidfd, epoll entries), the code and data of the libraries (mapped once, see VmRSS in
 * run.py's scale section) and the stack. File descriptors are counted (/proc/self/fd).
 *
 * Output, one line: "lib k=K heap_before=B heap_ready=B heap_after=B per_dm_bytes=X
 * fds_per_dm=Y" (heap_after: after everything was torn down again; "raw ..." likewise).
 * Options: --run-dir DIR (libqdm; required for --lib), --qemu PATH, --machine M, --accel A,
 * --mode none|qemu|jail (libqdm) / --restricted (raw), --name-prefix P, --uid-min/--uid-max,
 * --runas U:G (raw), --timeout-ms T.
 */
#include <dirent.h>
#include <getopt.h>
#include <malloc.h>

#include "bench-util.h"
#include "qdm.h"

static size_t heap_bytes(void)
{
        struct mallinfo2 m = mallinfo2();
        return m.uordblks + m.hblkhd;
}

static long count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        if (!d)
                return -1;
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n - 1; /* the DIR's own fd */
}

typedef struct opts {
        const char *run_dir, *qemu, *machine, *accel, *mode, *prefix, *runas;
        unsigned long long uid_min, uid_max, timeout_ms;
        bool restricted;
} opts;

/* ---- libqdm ------------------------------------------------------------------------------- */

typedef struct start_state {
        size_t done;
        int error;
} start_state;

static void start_done(qdm_dm *dm, int error, void *userdata)
{
        start_state *s = userdata;
        s->done++;
        if (error < 0 && s->error == 0) {
                s->error = error;
                fprintf(stderr, "bench-dm-mem: %s: %s\n", qdm_dm_get_name(dm),
                        qdm_dm_get_error(dm) ? qdm_dm_get_error(dm) : strerror(-error));
        }
}

static qdm_dm *new_dm(qdm_ctx *ctx, const opts *o, const char *name)
{
        char json[2048];
        if (strcmp(o->mode, "none") == 0)
                snprintf(json, sizeof(json),
                         "{\"name\":\"%s\",\"qemu\":\"%s\",\"machine\":\"%s\",\"accel\":\"%s\","
                         "\"restrict\":{\"mode\":\"none\"},\"start_timeout_ms\":%llu}",
                         name, o->qemu, o->machine, o->accel, o->timeout_ms);
        else
                snprintf(json, sizeof(json),
                         "{\"name\":\"%s\",\"qemu\":\"%s\",\"machine\":\"%s\",\"accel\":\"%s\","
                         "\"restrict\":{\"mode\":\"%s\",\"uid_min\":%llu,\"uid_max\":%llu},"
                         "\"start_timeout_ms\":%llu}",
                         name, o->qemu, o->machine, o->accel, o->mode, o->uid_min, o->uid_max,
                         o->timeout_ms);
        qdm_config *cfg = NULL;
        char *err = NULL;
        if (qdm_config_new_from_json(json, strlen(json), &cfg, &err) < 0) {
                fprintf(stderr, "bench-dm-mem: config: %s\n", err ? err : "invalid");
                free(err);
                return NULL;
        }
        qdm_dm *dm = NULL;
        int r = qdm_dm_new(ctx, cfg, o->run_dir, &dm);
        qdm_config_free(cfg); /* the device model keeps its own reference */
        if (r < 0) {
                fprintf(stderr, "bench-dm-mem: qdm_dm_new: %s\n", strerror(-r));
                return NULL;
        }
        return dm;
}

/* Start dms[0..k) at once; run the loop until every start completed. 0 when all are READY. */
static int start_all(qdm_ctx *ctx, qdm_dm **dms, size_t k)
{
        start_state s = {0};
        size_t started = 0;
        for (size_t i = 0; i < k; i++) {
                int r = qdm_dm_start(dms[i], start_done, &s);
                if (r < 0) {
                        fprintf(stderr, "bench-dm-mem: qdm_dm_start: %s\n", strerror(-r));
                        s.error = r;
                        break;
                }
                started++;
        }
        while (s.done < started) {
                int r = qdm_ctx_run(ctx, QDM_USEC_INFINITY);
                if (r < 0)
                        return r;
        }
        return s.error;
}

static void destroy_all(qdm_ctx *ctx, qdm_dm **dms, size_t k)
{
        for (size_t i = 0; i < k; i++)
                if (dms[i]) {
                        qdm_dm_destroy(dms[i]);
                        dms[i] = qdm_dm_unref(dms[i]);
                }
        (void)qdm_ctx_flush(ctx, 10 * 1000000u);
        /* Deferred callbacks of the destroyed device models. */
        while (qdm_ctx_process(ctx) > 0)
                ;
}

/* One result line, the format run.py parses: heap bytes and fds per device model. */
static void report(const char *side, size_t k, size_t before, size_t ready, size_t after, long fds)
{
        printf("%s k=%zu heap_before=%zu heap_ready=%zu heap_after=%zu per_dm_bytes=%.0f "
               "fds_per_dm=%.2f\n",
               side, k, before, ready, after, ((double)ready - (double)before) / (double)k,
               (double)fds / (double)k);
}

static int run_lib(const opts *o, size_t k)
{
        if (!o->run_dir) {
                fprintf(stderr, "bench-dm-mem: --lib needs --run-dir\n");
                return -1;
        }
        qdm_ctx *ctx = NULL;
        if (qdm_ctx_new(&ctx) < 0)
                return -1;
        qdm_dm **dms = calloc(k + 1, sizeof(*dms));
        char name[128];
        int r = -1;
        if (!dms)
                goto out;

        /* Warm-up, not counted. */
        snprintf(name, sizeof(name), "%smem-warm", o->prefix);
        dms[0] = new_dm(ctx, o, name);
        if (!dms[0] || start_all(ctx, dms, 1) < 0) {
                destroy_all(ctx, dms, 1);
                goto out;
        }
        destroy_all(ctx, dms, 1);

        size_t before = heap_bytes();
        long fds_before = count_fds();
        for (size_t i = 0; i < k; i++) {
                snprintf(name, sizeof(name), "%smem-%zu", o->prefix, i);
                dms[i] = new_dm(ctx, o, name);
                if (!dms[i]) {
                        destroy_all(ctx, dms, k);
                        goto out;
                }
        }
        if (start_all(ctx, dms, k) < 0) {
                destroy_all(ctx, dms, k);
                goto out;
        }
        size_t ready = heap_bytes();
        long fds_ready = count_fds();
        destroy_all(ctx, dms, k);
        report("lib", k, before, ready, heap_bytes(), fds_ready - fds_before);
        r = 0;
out:
        free(dms);
        qdm_ctx_unref(ctx);
        return r;
}

/* ---- raw-launch's code ---------------------------------------------------------------------- */

typedef struct raw_child {
        bench_qemu q;
        bench_conn *c;
} raw_child;

static int raw_start_all(raw_child **ch, size_t k, const bench_qemu_opts *bo)
{
        for (size_t i = 0; i < k; i++) {
                ch[i] = calloc(1, sizeof(*ch[i]));
                if (!ch[i])
                        return -1;
                ch[i]->q.listen_fd = -1;
                ch[i]->c = calloc(1, sizeof(*ch[i]->c));
                if (!ch[i]->c)
                        return -1;
                ch[i]->c->fd = -1;
                if (bench_qemu_prepare(&ch[i]->q, bo->restricted, false) < 0 ||
                    bench_qemu_spawn(&ch[i]->q, bo) < 0)
                        return -1;
        }
        for (size_t i = 0; i < k; i++)
                if (bench_qemu_wait_ready(&ch[i]->q, ch[i]->c) < 0) {
                        fprintf(stderr, "bench-dm-mem: raw QEMU %zu not ready\n", i);
                        return -1;
                }
        return 0;
}

static void raw_cleanup_all(raw_child **ch, size_t k)
{
        for (size_t i = 0; i < k; i++) {
                if (!ch[i])
                        continue;
                if (ch[i]->c) {
                        if (ch[i]->c->fd >= 0)
                                close(ch[i]->c->fd);
                        free(ch[i]->c);
                }
                bench_qemu_cleanup(&ch[i]->q);
                free(ch[i]);
                ch[i] = NULL;
        }
}

static int run_raw(const opts *o, size_t k)
{
        bench_qemu_opts bo = {.qemu = o->qemu,
                              .machine = o->machine,
                              .accel = o->accel,
                              .restricted = o->restricted,
                              .runas = o->runas};
        raw_child **ch = calloc(k + 1, sizeof(*ch));
        if (!ch)
                return -1;
        int r = -1;
        /* Warm-up, not counted. */
        if (raw_start_all(ch, 1, &bo) < 0) {
                raw_cleanup_all(ch, 1);
                goto out;
        }
        raw_cleanup_all(ch, 1);

        size_t before = heap_bytes();
        long fds_before = count_fds();
        if (raw_start_all(ch, k, &bo) < 0) {
                raw_cleanup_all(ch, k);
                goto out;
        }
        size_t ready = heap_bytes();
        long fds_ready = count_fds();
        raw_cleanup_all(ch, k);
        report("raw", k, before, ready, heap_bytes(), fds_ready - fds_before);
        r = 0;
out:
        free(ch);
        return r;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: bench-dm-mem (--lib K --run-dir DIR [--mode M] [--uid-min N --uid-max N]"
                   " | --raw K [--restricted] [--runas U:G])\n"
                   "                    [--qemu PATH] [--machine M] [--accel A] [--name-prefix P]"
                   " [--timeout-ms T]\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"lib", required_argument, NULL, 'l'},
                {"raw", required_argument, NULL, 'r'},
                {"run-dir", required_argument, NULL, 'd'},
                {"qemu", required_argument, NULL, 'q'},
                {"machine", required_argument, NULL, 'm'},
                {"accel", required_argument, NULL, 'a'},
                {"mode", required_argument, NULL, 'M'},
                {"restricted", no_argument, NULL, 'R'},
                {"name-prefix", required_argument, NULL, 'p'},
                {"uid-min", required_argument, NULL, 'u'},
                {"uid-max", required_argument, NULL, 'U'},
                {"runas", required_argument, NULL, 'w'},
                {"timeout-ms", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        opts o = {.qemu = "qemu-system-x86_64",
                  .machine = "none",
                  .accel = "tcg",
                  .mode = "qemu",
                  .prefix = "bench-",
                  .runas = "64999:64999",
                  .uid_min = 64000,
                  .uid_max = 64999,
                  .timeout_ms = 60000};
        int side = 0;
        uint64_t k = 0, v;
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'l':
                case 'r':
                        if (!bench_parse_u64(optarg, &k) || k == 0 || k > 1024) {
                                usage(stderr);
                                return 2;
                        }
                        side = c;
                        break;
                case 'd':
                        o.run_dir = optarg;
                        break;
                case 'q':
                        o.qemu = optarg;
                        break;
                case 'm':
                        o.machine = optarg;
                        break;
                case 'a':
                        o.accel = optarg;
                        break;
                case 'M':
                        o.mode = optarg;
                        break;
                case 'R':
                        o.restricted = true;
                        break;
                case 'p':
                        o.prefix = optarg;
                        break;
                case 'w':
                        o.runas = optarg;
                        break;
                case 'u':
                case 'U':
                case 't':
                        if (!bench_parse_u64(optarg, &v)) {
                                usage(stderr);
                                return 2;
                        }
                        *(c == 'u' ? &o.uid_min : c == 'U' ? &o.uid_max : &o.timeout_ms) = v;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!side || optind != argc) {
                usage(stderr);
                return 2;
        }
        int r = side == 'l' ? run_lib(&o, (size_t)k) : run_raw(&o, (size_t)k);
        if (r < 0)
                fprintf(stderr, "bench-dm-mem: failed\n");
        return r < 0 ? 1 : 0;
}
