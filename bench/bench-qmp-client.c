/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-qmp-client: libqdm's asynchronous QMP client doing what raw-qmp does, through the
 * public API only (qdm_ctx_*, qdm_qmp_*), so the pair measures what the library costs over a
 * blocking write/read loop: ids, JSON parsing and validation (R4), the epoll loop, the
 * command table.
 *
 *   --seq N       N query-status, each sent from the previous one's reply callback
 *   --pipe N      N query-status queued at once, then the loop runs until every reply is in
 *   --latency N   N times: new connection, greeting, capabilities, one query-status, close
 *                 (drained, R3), on one context
 *   --once        one such session, for whole-process timing
 *   --timeout-usec T  give every command a deadline (default none), to measure the timers
 *
 * Output: the same key=value lines as raw-qmp.
 */
#include <getopt.h>

#include "bench-util.h"
#include "qdm.h"

typedef struct seq_state {
        uint64_t n, sent, done;
        uint64_t timeout;
        int error;
} seq_state;

static void seq_reply(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        seq_state *s = userdata;
        s->done++;
        if (error < 0 || !qdm_qmp_message_get_string(m, "status")) {
                s->error = error < 0 ? error : -EPROTO;
                return;
        }
        if (s->sent < s->n) {
                int r = qdm_qmp_send(qmp, "query-status", NULL, NULL, 0, s->timeout, seq_reply, s,
                                     NULL);
                if (r < 0)
                        s->error = r;
                else
                        s->sent++;
        }
}

static void pipe_reply(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        seq_state *s = userdata;
        s->done++;
        if (error < 0 || !qdm_qmp_message_get_string(m, "status"))
                s->error = error < 0 ? error : -EPROTO;
}

static int open_ready(qdm_ctx *ctx, const char *path, qdm_qmp **ret)
{
        qdm_qmp *q = NULL;
        int r = qdm_qmp_new(ctx, &q);
        if (r >= 0)
                r = qdm_qmp_connect(q, path);
        if (r >= 0)
                r = qdm_qmp_wait_ready(q, 10 * 1000000u);
        if (r < 0) {
                qdm_qmp_unref(q);
                return r;
        }
        *ret = q;
        return 0;
}

static int run_many(qdm_ctx *ctx, const char *path, uint64_t n, bool pipelined, uint64_t timeout)
{
        qdm_qmp *q = NULL;
        int r = open_ready(ctx, path, &q);
        if (r < 0)
                return r;
        seq_state s = {.n = n, .timeout = timeout};
        uint64_t t0 = bench_now_usec();
        if (pipelined) {
                for (; s.sent < n && r >= 0; s.sent++)
                        r = qdm_qmp_send(q, "query-status", NULL, NULL, 0, timeout, pipe_reply, &s,
                                         NULL);
        } else {
                r = qdm_qmp_send(q, "query-status", NULL, NULL, 0, timeout, seq_reply, &s, NULL);
                s.sent = 1;
        }
        while (r >= 0 && s.done < s.sent && s.error == 0)
                r = qdm_ctx_run(ctx, QDM_USEC_INFINITY);
        uint64_t t = bench_now_usec() - t0;
        qdm_qmp_unref(q);
        (void)qdm_ctx_flush(ctx, 10 * 1000000u);
        if (r < 0)
                return r;
        if (s.error < 0)
                return s.error;
        printf("%s n=%llu usec=%llu cps=%.1f\n", pipelined ? "pipe" : "seq", (unsigned long long)n,
               (unsigned long long)t, t ? (double)n * 1e6 / (double)t : 0.0);
        return 0;
}

/* One whole control session; its microseconds, or 0 on failure. */
static uint64_t one_session(qdm_ctx *ctx, const char *path, uint64_t timeout)
{
        uint64_t t0 = bench_now_usec();
        qdm_qmp *q = NULL;
        if (open_ready(ctx, path, &q) < 0)
                return 0;
        char *json = NULL;
        int r = qdm_qmp_execute(q, "query-status", NULL, timeout, &json, NULL);
        free(json);
        qdm_qmp_unref(q);
        if (qdm_ctx_flush(ctx, 10 * 1000000u) < 0)
                r = -ETIMEDOUT;
        uint64_t t = bench_now_usec() - t0;
        return r < 0 ? 0 : t ? t : 1;
}

static int run_latency(qdm_ctx *ctx, const char *path, uint64_t n, uint64_t timeout)
{
        uint64_t *v = calloc(n, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (uint64_t i = 0; i < n; i++) {
                v[i] = one_session(ctx, path, timeout);
                if (v[i] == 0) {
                        free(v);
                        return -EIO;
                }
        }
        uint64_t med = bench_median(v, n);
        printf("latency n=%llu min_usec=%llu median_usec=%llu max_usec=%llu samples=",
               (unsigned long long)n, (unsigned long long)v[0], (unsigned long long)med,
               (unsigned long long)v[n - 1]);
        for (uint64_t i = 0; i < n; i++)
                printf("%s%llu", i ? "," : "", (unsigned long long)v[i]);
        printf("\n");
        free(v);
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: bench-qmp-client --socket PATH (--seq N | --pipe N | --latency N | "
                   "--once)\n"
                   "                        [--timeout-usec T]\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"seq", required_argument, NULL, 'S'},
                {"pipe", required_argument, NULL, 'P'},
                {"latency", required_argument, NULL, 'L'},
                {"once", no_argument, NULL, 'O'},
                {"timeout-usec", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *path = NULL;
        uint64_t n = 0, timeout = QDM_USEC_INFINITY;
        int mode = 0, c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        path = optarg;
                        break;
                case 'S':
                case 'P':
                case 'L':
                        if (!bench_parse_u64(optarg, &n) || n == 0) {
                                usage(stderr);
                                return 2;
                        }
                        mode = c;
                        break;
                case 'O':
                        mode = c;
                        break;
                case 't':
                        if (!bench_parse_u64(optarg, &timeout) || timeout == 0) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!path || !mode || optind != argc) {
                usage(stderr);
                return 2;
        }

        qdm_ctx *ctx = NULL;
        int r = qdm_ctx_new(&ctx);
        if (r >= 0) {
                switch (mode) {
                case 'S':
                case 'P':
                        r = run_many(ctx, path, n, mode == 'P', timeout);
                        break;
                case 'L':
                        r = run_latency(ctx, path, n, timeout);
                        break;
                default: {
                        uint64_t t = one_session(ctx, path, timeout);
                        r = t ? 0 : -EIO;
                        if (t)
                                printf("once usec=%llu\n", (unsigned long long)t);
                }
                }
        }
        if (r < 0)
                fprintf(stderr, "bench-qmp-client: %s: %s\n", path, strerror(-r));
        qdm_ctx_unref(ctx);
        return r < 0 ? 1 : 0;
}
