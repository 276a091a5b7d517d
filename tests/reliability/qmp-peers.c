/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libqdm's QMP client against misbehaving peers (tests/fake), many times over, with figures.
 * tests/integration/test-qmp-fake.c checks each misbehaviour once; this repeats them with
 * randomized timing and measures what the issue asks: wedges, wrong answers, memory, errors.
 *
 *   qmp-peers [--wedge-cycles N] [--misroute-runs N] [--hostile-cycles N] [--seed S]
 *
 * wedge     The pre-4.2 monitor (fake --mode wedge --delay-ms 2): N cycles of connect,
 *           query-status with a 1 ms timeout (shorter than its 2 ms execution), -ETIMEDOUT,
 *           and let go at once. R3 drains every late reply, so the monitor never wedges: the
 *           fake's log has no WEDGED, every command was answered, and a final client is served.
 * misroute  QEMU 7.2 (fake --mode misroute --delay-ms 2): a naive client sends x-echo and hangs
 *           up after a random 0-4 ms, while a qdm client, queued behind it, sends its own x-echo
 *           at a random moment. When the naive client leaves mid-command, its reply goes to the
 *           qdm client. Counted: how often that happened (the fake logs MISROUTE), and how often
 *           the qdm client got a wrong answer (must be 0).
 * hostile   Each of: an endless line (64 MiB without a newline), an event flood (as fast as we
 *           read), a reply nested 100000 deep, a reply with invalid UTF-8, replies to commands
 *           never sent (stale), a second greeting, a close in mid-message. N cycles each, with
 *           a fresh server where the mode needs one: the error the caller gets is checked, and
 *           RSS is measured after the first cycle and after the last (memory stays bounded).
 * Every case ends with no fd of ours left open and no child process left.
 * Exit status: 0 when everything held, 1 otherwise.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qdm.h"
#include "rel-common.h"

static unsigned failures;

#define CHECK(cond, ...)                                  \
        do {                                              \
                if (!(cond))                              \
                        rel_fail(&failures, __VA_ARGS__); \
        } while (0)

#define RUN_UNTIL(ctx, cond, timeout)                                   \
        ({                                                              \
                uint64_t _dl = now_usec() + (timeout);                  \
                while (!(cond) && now_usec() < _dl)                     \
                        if (qdm_ctx_run((ctx), 20 * USEC_PER_MSEC) < 0) \
                                break;                                  \
                (bool)(cond);                                           \
        })

static int fake_start(test_fake_logged *f, const char *mode, const char *delay_ms)
{
        return test_fake_logged_start(mode, delay_ms, "rel-peers", f);
}

/* Lines of the fake's log that start with prefix. */
static unsigned log_count(test_fake_logged *f, const char *prefix)
{
        FILE *l = fopen(f->log_path, "re");
        char line[1024];
        unsigned n = 0;
        while (l && fgets(line, sizeof(line), l))
                n += strncmp(line, prefix, strlen(prefix)) == 0;
        if (l)
                fclose(l);
        return n;
}

static qdm_qmp *connect_to(qdm_ctx *ctx, test_fake_logged *f)
{
        qdm_qmp *q = NULL;
        if (qdm_qmp_new(ctx, &q) < 0 || qdm_qmp_connect(q, f->proc.socket_path) < 0) {
                rel_fail(&failures, "cannot connect to the fake");
                return qdm_qmp_unref(q);
        }
        return q;
}

/* ---- wedge ------------------------------------------------------------------------------ */

static void test_wedge(unsigned cycles)
{
        unsigned before = failures;
        int fds_before = test_count_fds();
        test_fake_logged f;
        CHECK(fake_start(&f, "wedge", "2") == 0, "wedge: cannot start the fake");
        qdm_ctx *ctx = NULL;
        qdm_ctx_new(&ctx);
        unsigned timed_out = 0, answered = 0, not_ready = 0;
        long rss0 = 0;
        uint64_t t0 = now_usec();
        for (unsigned i = 0; i < cycles; i++) {
                if (i == 10)
                        rss0 = rel_rss_kib(0);
                qdm_qmp *q = connect_to(ctx, &f);
                if (!q)
                        break;
                /* Served only once the previous client's late reply has been drained. */
                int r = qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC);
                if (r < 0) {
                        not_ready++;
                        rel_fail(&failures, "wedge cycle %u: not served: %s (wedged?)", i,
                                 strerror(-r));
                        qdm_qmp_unref(q);
                        break;
                }
                test_result res = {0};
                CHECK(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 1 * USEC_PER_MSEC,
                                   test_result_cb, &res, NULL) == 0,
                      "wedge: send refused");
                CHECK(RUN_UNTIL(ctx, res.calls > 0, 5 * USEC_PER_SEC), "wedge: no callback");
                if (res.error == -ETIMEDOUT)
                        timed_out++;
                else if (res.error == 0)
                        answered++;
                else
                        rel_fail(&failures, "wedge cycle %u: %s", i, strerror(-res.error));
                /* Let go at once, like an impatient caller: the context drains it (R3). */
                qdm_qmp_unref(q);
        }
        CHECK(qdm_ctx_flush(ctx, 10 * USEC_PER_SEC) == 0, "wedge: still draining after 10 s");
        double secs = (double)(now_usec() - t0) / 1e6;
        long rss1 = rel_rss_kib(0);
        /* A final client is served. */
        qdm_qmp *q = connect_to(ctx, &f);
        char *json = NULL;
        int r = q ? qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC) : -ENOTCONN;
        if (r == 0)
                r = qdm_qmp_execute(q, "query-status", NULL, 5 * USEC_PER_SEC, &json, NULL);
        CHECK(r == 0 && json && strstr(json, "\"status\""),
              "wedge: the final client was not "
              "served: %s",
              strerror(-r));
        free(json);
        qdm_qmp_unref(q);
        CHECK(qdm_ctx_flush(ctx, 5 * USEC_PER_SEC) == 0, "wedge: final flush");
        qdm_ctx_unref(ctx);
        unsigned wedged = log_count(&f, "WEDGED");
        unsigned cmds = log_count(&f, "CMD query-status");
        unsigned replies = log_count(&f, "REPLY");
        unsigned drops = log_count(&f, "DROP") + log_count(&f, "UNSENT");
        CHECK(wedged == 0, "wedge: the fake logged WEDGED %u times", wedged);
        CHECK(drops == 0, "wedge: %u replies were dropped or unsent (a client hung up early)",
              drops);
        test_fake_logged_stop(&f);
        CHECK(test_count_fds() == fds_before, "wedge: %d fds, %d before", test_count_fds(),
              fds_before);
        printf("%-12s cycles %6u  failures %u  wedges %u  timed out %u, answered in time %u  "
               "commands seen by the server %u, replies written %u, dropped %u  %.1f s  "
               "RSS %ld -> %ld KiB\n",
               "wedge", cycles, failures - before, wedged, timed_out, answered, cmds, replies,
               drops, secs, rss0, rss1);
}

/* ---- misroute ------------------------------------------------------------------------------ */

static int raw_handshake(const char *path)
{
        char line[4096];
        int fd = test_raw_connect(path);
        if (fd < 0)
                return fd;
        if (test_raw_readline(fd, line, sizeof(line), 5000) <= 0 ||
            test_raw_send(fd, "{\"execute\":\"qmp_capabilities\"}\r\n") < 0 ||
            test_raw_readline(fd, line, sizeof(line), 5000) <= 0) {
                close(fd);
                return -EPROTO;
        }
        return fd;
}

static void test_misroute(unsigned runs)
{
        unsigned before = failures;
        int fds_before = test_count_fds();
        test_fake_logged f;
        CHECK(fake_start(&f, "misroute", "2") == 0, "misroute: cannot start the fake");
        qdm_ctx *ctx = NULL;
        qdm_ctx_new(&ctx);
        unsigned wrong = 0, dropped_by_qdm = 0;
        for (unsigned i = 0; i < runs; i++) {
                int a = raw_handshake(f.proc.socket_path);
                if (a < 0) {
                        rel_fail(&failures, "misroute run %u: naive client: %s", i, strerror(-a));
                        break;
                }
                /* The qdm client queues behind the naive one (one client at a time). */
                qdm_qmp *q = connect_to(ctx, &f);
                if (!q) {
                        close(a);
                        break;
                }
                char mine[64], theirs[128];
                snprintf(mine, sizeof(mine), "{\"mine\": %u}", i);
                snprintf(
                        theirs, sizeof(theirs),
                        "{\"execute\":\"x-echo\",\"arguments\":{\"theirs\":%u},\"id\":\"a%u\"}\r\n",
                        i, i);
                test_result res = {0};
                unsigned order = (unsigned)random() % 3;
                if (order == 0) /* ours queued before theirs is even sent */
                        CHECK(qdm_qmp_send(q, "x-echo", mine, NULL, 0, 10 * USEC_PER_SEC,
                                           test_result_cb, &res, NULL) == 0,
                              "misroute: send");
                CHECK(test_raw_send(a, theirs) == 0, "misroute: naive send");
                if (order == 1)
                        CHECK(qdm_qmp_send(q, "x-echo", mine, NULL, 0, 10 * USEC_PER_SEC,
                                           test_result_cb, &res, NULL) == 0,
                              "misroute: send");
                /* Hang up after 0-4 ms: before, during or after the 2 ms execution. */
                rel_sleep_usec(rel_random_usec(4000));
                close(a);
                if (order == 2) {
                        /* Ours after a random moment of our own. */
                        uint64_t until = now_usec() + rel_random_usec(3000);
                        while (now_usec() < until)
                                (void)qdm_ctx_run(ctx, 500);
                        CHECK(qdm_qmp_send(q, "x-echo", mine, NULL, 0, 10 * USEC_PER_SEC,
                                           test_result_cb, &res, NULL) == 0,
                              "misroute: send");
                }
                CHECK(RUN_UNTIL(ctx, res.calls > 0, 15 * USEC_PER_SEC), "misroute run %u: no reply",
                      i);
                char want[64];
                snprintf(want, sizeof(want), "{\"mine\":%u}", i);
                if (res.error != 0 || strcmp(res.json, want) != 0) {
                        wrong++;
                        rel_fail(&failures, "misroute run %u: got %s (error %d), expected %s", i,
                                 res.json, res.error, want);
                }
                qdm_qmp_stats st;
                if (qdm_qmp_get_stats(q, &st) == 0)
                        dropped_by_qdm += (unsigned)(st.replies_stray + st.skipped_pre_greeting);
                qdm_qmp_unref(q);
        }
        CHECK(qdm_ctx_flush(ctx, 10 * USEC_PER_SEC) == 0, "misroute: still draining");
        qdm_ctx_unref(ctx);
        unsigned misrouted = log_count(&f, "MISROUTE");
        test_fake_logged_stop(&f);
        CHECK(test_count_fds() == fds_before, "misroute: fd leak");
        printf("%-12s runs   %6u  failures %u  wrong answers %u  replies misrouted to the qdm "
               "client by the server %u, dropped by it as not its own %u\n",
               "misroute", runs, failures - before, wrong, misrouted, dropped_by_qdm);
}

/* ---- hostile peers ------------------------------------------------------------------------- */

typedef struct hostile {
        const char *mode;
        const char *delay_ms;
        const char *expect; /* what the caller must get, for the report */
        unsigned cycles, failures;
        long rss_first, rss_last, rss_peak;
        long heap_first, heap_last; /* live heap, KiB: what the assertion uses */
        uint64_t max_cycle_usec;
        uint64_t events;
        double events_per_sec;
} hostile;

typedef struct disc {
        unsigned calls;
        int error;
} disc;

static void on_disconnect(qdm_qmp *qmp, int error, void *userdata)
{
        disc *d = userdata;
        d->calls++;
        d->error = error;
}

static void on_event_count(qdm_qmp *qmp, const qdm_qmp_message *ev, void *userdata)
{
        (*(uint64_t *)userdata)++;
}

static void hostile_cycle(hostile *h, qdm_ctx *ctx)
{
        unsigned *fc = &h->failures;
        test_fake_logged f;
        if (fake_start(&f, h->mode, h->delay_ms) < 0) {
                rel_fail(fc, "%s: cannot start the fake", h->mode);
                return;
        }
        qdm_qmp *q = connect_to(ctx, &f);
        if (!q) {
                test_fake_logged_stop(&f);
                return;
        }
        uint64_t events = 0;
        disc d = {0};
        qdm_qmp_set_event_callback(q, on_event_count, &events);
        qdm_qmp_set_disconnect_callback(q, on_disconnect, &d);
        int r = qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC);
        if (r < 0) {
                rel_fail(fc, "%s: negotiation: %s", h->mode, strerror(-r));
                qdm_qmp_unref(q);
                test_fake_logged_stop(&f);
                return;
        }
        test_result res[2] = {{0}};
        qdm_qmp_stats st = {0};
        bool kill_server = false;
        if (strcmp(h->mode, "endless") == 0 || strcmp(h->mode, "deep") == 0 ||
            strcmp(h->mode, "badutf8") == 0) {
                /* The reply never completes or is unusable: the command times out; the
                 * connection stays (R3) until the peer goes away. */
                qdm_qmp_send(q, "query-status", NULL, NULL, 0, 300 * USEC_PER_MSEC, test_result_cb,
                             &res[0], NULL);
                if (!RUN_UNTIL(ctx, res[0].calls > 0, 10 * USEC_PER_SEC))
                        rel_fail(fc, "%s: hang: no callback within 10 s", h->mode);
                else if (res[0].error != -ETIMEDOUT)
                        rel_fail(fc, "%s: %d, expected -ETIMEDOUT", h->mode, res[0].error);
                qdm_qmp_get_stats(q, &st);
                if (strcmp(h->mode, "endless") != 0 && st.rejected != 1)
                        rel_fail(fc, "%s: %llu messages rejected, expected 1", h->mode,
                                 (unsigned long long)st.rejected);
                kill_server = true;
        } else if (strcmp(h->mode, "flood") == 0) {
                uint64_t t0 = now_usec();
                qdm_qmp_send(q, "query-status", NULL, NULL, 0, 10 * USEC_PER_SEC, test_result_cb,
                             &res[0], NULL);
                /* Read through the flood; then a command is still answered. */
                uint64_t until = t0 + (uint64_t)atoi(h->delay_ms) * USEC_PER_MSEC;
                while (now_usec() < until)
                        (void)qdm_ctx_run(ctx, 20 * USEC_PER_MSEC);
                double secs = (double)(now_usec() - t0) / 1e6;
                qdm_qmp_send(q, "query-status", NULL, NULL, 0, 10 * USEC_PER_SEC, test_result_cb,
                             &res[1], NULL);
                if (!RUN_UNTIL(ctx, res[0].calls && res[1].calls, 10 * USEC_PER_SEC))
                        rel_fail(fc, "flood: commands not answered");
                else if (res[0].error || res[1].error || !strstr(res[1].json, "\"status\""))
                        rel_fail(fc, "flood: %d/%d %s", res[0].error, res[1].error, res[1].json);
                h->events += events;
                double rate = (double)events / secs;
                if (rate > h->events_per_sec)
                        h->events_per_sec = rate;
                qdm_qmp_get_stats(q, &st);
                if (st.events != events)
                        rel_fail(fc, "flood: %llu events counted, %llu delivered",
                                 (unsigned long long)st.events, (unsigned long long)events);
        } else if (strcmp(h->mode, "stale") == 0 || strcmp(h->mode, "greet-twice") == 0) {
                qdm_qmp_send(q, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC, test_result_cb,
                             &res[0], NULL);
                if (!RUN_UNTIL(ctx, res[0].calls > 0, 10 * USEC_PER_SEC))
                        rel_fail(fc, "%s: hang", h->mode);
                else if (res[0].error != 0 || !strstr(res[0].json, "prelaunch"))
                        rel_fail(fc, "%s: %d %s", h->mode, res[0].error, res[0].json);
                qdm_qmp_get_stats(q, &st);
                if (strcmp(h->mode, "stale") == 0 &&
                    (st.replies_stray < 2 || st.skipped_pre_greeting < 1))
                        rel_fail(fc, "stale: %llu stray, %llu skipped",
                                 (unsigned long long)st.replies_stray,
                                 (unsigned long long)st.skipped_pre_greeting);
                if (strcmp(h->mode, "greet-twice") == 0 && st.rejected != 1)
                        rel_fail(fc, "greet-twice: %llu rejected", (unsigned long long)st.rejected);
        } else if (strcmp(h->mode, "close-mid") == 0) {
                /* One command: half its reply, then the server closes. (With a second
                 * command written after the close, that write fails first and the error is
                 * -EPIPE, also "the peer hung up"; test-qmp-fake.c covers queued ones.) */
                qdm_qmp_send(q, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC, test_result_cb,
                             &res[0], NULL);
                if (!RUN_UNTIL(ctx, d.calls > 0 && res[0].calls, 10 * USEC_PER_SEC))
                        rel_fail(fc, "close-mid: hang");
                if (d.error != -ECONNRESET || res[0].error != -ECONNRESET)
                        rel_fail(fc, "close-mid: disconnect %d, reply %d", d.error, res[0].error);
                if (qdm_qmp_send(q, "query-status", NULL, NULL, 0, USEC_INFINITY, NULL, NULL,
                                 NULL) != -ENOTCONN)
                        rel_fail(fc, "close-mid: a send after the close was accepted");
        }
        for (int i = 0; i < 2; i++)
                if (res[i].calls > 1)
                        rel_fail(fc, "%s: a callback was called %u times", h->mode, res[i].calls);
        qdm_qmp_unref(q);
        if (kill_server) {
                /* R3: an unmatched command keeps its connection draining until the peer goes
                 * away; it must not be closed early, and must end once it does. */
                if (qdm_ctx_flush(ctx, 100 * USEC_PER_MSEC) != -ETIMEDOUT)
                        rel_fail(fc, "%s: the connection was closed with a command outstanding",
                                 h->mode);
                test_proc_stop(&f.proc);
        }
        if (qdm_ctx_flush(ctx, 5 * USEC_PER_SEC) != 0)
                rel_fail(fc, "%s: still draining 5 s after the peer went away", h->mode);
        test_fake_logged_stop(&f);
}

static void test_hostile(unsigned cycles)
{
        hostile modes[] = {
                {.mode = "endless", .delay_ms = NULL, .expect = "-ETIMEDOUT, 64 MiB line dropped"},
                {.mode = "flood",
                 .delay_ms = "300",
                 .expect = "events delivered, commands answered"},
                {.mode = "deep", .delay_ms = NULL, .expect = "-ETIMEDOUT, 1 rejected"},
                {.mode = "badutf8", .delay_ms = NULL, .expect = "-ETIMEDOUT, 1 rejected"},
                {.mode = "stale", .delay_ms = NULL, .expect = "answer ok, strays dropped"},
                {.mode = "greet-twice", .delay_ms = NULL, .expect = "answer ok, 1 rejected"},
                {.mode = "close-mid", .delay_ms = NULL, .expect = "-ECONNRESET, then -ENOTCONN"},
        };
        for (size_t m = 0; m < ELEMENTSOF(modes); m++) {
                hostile *h = &modes[m];
                int fds_before = test_count_fds();
                qdm_ctx *ctx = NULL;
                qdm_ctx_new(&ctx);
                rel_peak_reset();
                long rss_before = rel_rss_kib(0);
                unsigned n = strcmp(h->mode, "flood") == 0 ? (cycles + 4) / 5 : cycles;
                for (unsigned i = 0; i < n; i++) {
                        uint64_t t0 = now_usec();
                        hostile_cycle(h, ctx);
                        uint64_t took = now_usec() - t0;
                        if (took > h->max_cycle_usec)
                                h->max_cycle_usec = took;
                        long rss = rel_rss_kib(0);
                        long heap = (long)(test_heap_in_use() / 1024);
                        if (i == 0) {
                                h->rss_first = rss;
                                h->heap_first = heap;
                        }
                        h->rss_last = rss;
                        h->heap_last = heap;
                        h->cycles++;
                }
                h->rss_peak = rel_peak_kib();
                qdm_ctx_unref(ctx);
                if (test_count_fds() != fds_before)
                        rel_fail(&h->failures, "%s: %d fds open, %d before", h->mode,
                                 test_count_fds(), fds_before);
                if (rel_have_children())
                        rel_fail(&h->failures, "%s: a child process remains", h->mode);
                /* Memory stays bounded: what one cycle needed, later cycles reuse. Asserted on
                 * the live heap: RSS (printed) is inflated by allocator caches and, under ASan,
                 * by its quarantine of freed memory. */
                if (h->heap_last - h->heap_first > 16 * 1024)
                        rel_fail(&h->failures, "%s: the heap grew from %ld to %ld KiB", h->mode,
                                 h->heap_first, h->heap_last);
                failures += h->failures;
                printf("%-12s cycles %6u  failures %u  (%s)  RSS before %ld KiB, after first cycle "
                       "%ld, after last %ld, peak %ld KiB  slowest cycle %.0f ms",
                       h->mode, h->cycles, h->failures, h->expect, rss_before, h->rss_first,
                       h->rss_last, h->rss_peak, (double)h->max_cycle_usec / 1000.0);
                if (h->events)
                        printf("  %llu events, up to %.0f events/s", (unsigned long long)h->events,
                               h->events_per_sec);
                printf("\n");
                fflush(stdout);
        }
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"wedge-cycles", required_argument, NULL, 'w'},
                {"misroute-runs", required_argument, NULL, 'm'},
                {"hostile-cycles", required_argument, NULL, 'h'},
                {"seed", required_argument, NULL, 's'},
                {0},
        };
        unsigned wedge = 1000, misroute = 200, hostile_n = 5;
        unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
        int o;
        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (o) {
                case 'w':
                        wedge = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'm':
                        misroute = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'h':
                        hostile_n = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 's':
                        seed = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                default:
                        return 2;
                }
        }
        /* A peer that hangs up must not kill us. */
        signal(SIGPIPE, SIG_IGN);
        srandom(seed);
        printf("qmp-peers: seed %u\n", seed);
        long rss_start = rel_rss_kib(0);
        if (wedge)
                test_wedge(wedge);
        if (misroute)
                test_misroute(misroute);
        if (hostile_n)
                test_hostile(hostile_n);
        printf("qmp-peers: RSS at start %ld KiB, at end %ld KiB; %s (%u failed checks)\n",
               rss_start, rel_rss_kib(0), failures ? "FAILED" : "ok", failures);
        return failures ? 1 : 0;
}
