/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client against the fake server: what real QEMU will not do on demand (a pre-4.2
 * wedging monitor, stale and reordered replies, split and merged writes, garbage, floods,
 * endless lines, deep nesting, bad UTF-8, a second greeting, a close in mid-message).
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "qdm.h"
#include "test-support.h"
#include "util.h"

typedef struct fixture {
        int fds_before;
        test_fake_logged fake;
        qdm_ctx *ctx;
} fixture;

static int fixture_start(void **state, const char *mode, const char *delay_ms)
{
        fixture *f = calloc(1, sizeof(*f));
        f->fds_before = test_count_fds();
        assert_int_equal(test_fake_logged_start(mode, delay_ms, "fakelog", &f->fake), 0);
        assert_int_equal(qdm_ctx_new(&f->ctx), 0);
        *state = f;
        return 0;
}

#define FIXTURE(mode, delay)                               \
        static int setup_##mode(void **state)              \
        {                                                  \
                return fixture_start(state, #mode, delay); \
        }

FIXTURE(normal, NULL)
FIXTURE(stale, NULL)
FIXTURE(reorder, NULL)
FIXTURE(events, NULL)
FIXTURE(slow, "300")
FIXTURE(wedge, "200")
FIXTURE(misroute, "50")
FIXTURE(split, NULL)
FIXTURE(merge, NULL)
FIXTURE(garbage, NULL)
FIXTURE(endless, NULL)
FIXTURE(flood, "1000")
FIXTURE(deep, NULL)
FIXTURE(badutf8, NULL)

static int setup_greet_twice(void **state)
{
        return fixture_start(state, "greet-twice", NULL);
}

static int setup_close_mid(void **state)
{
        return fixture_start(state, "close-mid", NULL);
}

static int teardown(void **state)
{
        fixture *f = *state;
        assert_int_equal(qdm_ctx_flush(f->ctx, 10 * USEC_PER_SEC), 0);
        f->ctx = qdm_ctx_unref(f->ctx);
        test_fake_logged_stop(&f->fake);
        assert_int_equal(test_count_fds(), f->fds_before);
        free(f);
        return 0;
}

static bool log_contains(fixture *f, const char *needle)
{
        FILE *l = fopen(f->fake.log_path, "r");
        if (!l)
                return false;
        char line[1024];
        bool found = false;
        while (!found && fgets(line, sizeof(line), l))
                found = strstr(line, needle) != NULL;
        fclose(l);
        return found;
}

static qdm_qmp *connect_to(fixture *f)
{
        qdm_qmp *q = NULL;
        assert_int_equal(qdm_qmp_new(f->ctx, &q), 0);
        assert_int_equal(qdm_qmp_connect(q, f->fake.proc.socket_path), 0);
        return q;
}

static void run_until(fixture *f, const unsigned *counter, unsigned target, uint64_t timeout)
{
        uint64_t deadline = now_usec() + timeout;
        while (*counter < target && now_usec() < deadline)
                assert_true(qdm_ctx_run(f->ctx, 50 * USEC_PER_MSEC) >= 0);
        assert_true(*counter >= target);
}

static void expect_status(fixture *f, qdm_qmp *q)
{
        test_result r = {0};
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 10 * USEC_PER_SEC,
                                      test_result_cb, &r, NULL),
                         0);
        run_until(f, &r.calls, 1, 10 * USEC_PER_SEC);
        assert_int_equal(r.error, 0);
        assert_non_null(strstr(r.json, "\"status\""));
}

/* ---- callbacks are never synchronous; connection failures are reported, not returned -- */

typedef struct ready_state {
        unsigned calls;
        int error;
        unsigned events_before_ready;
        unsigned events;
} ready_state;

static void on_ready(qdm_qmp *qmp, int error, void *userdata)
{
        ready_state *s = userdata;
        s->calls++;
        s->error = error;
        s->events_before_ready = s->events;
}

static void on_event_count(qdm_qmp *qmp, const qdm_qmp_message *ev, void *userdata)
{
        ready_state *s = userdata;
        s->events++;
}

static void test_never_synchronous(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = NULL;
        ready_state rs = {0};
        test_result r = {0};
        assert_int_equal(qdm_qmp_new(f->ctx, &q), 0);
        qdm_qmp_set_ready_callback(q, on_ready, &rs);
        assert_int_equal(qdm_qmp_connect(q, "/nonexistent/qmp.sock"), 0);
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, USEC_INFINITY,
                                      test_result_cb, &r, NULL),
                         0);
        assert_int_equal(rs.calls, 0);
        assert_int_equal(r.calls, 0);
        run_until(f, &rs.calls, 1, USEC_PER_SEC);
        assert_int_equal(rs.error, -ENOENT);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.error, -ENOENT);
        qdm_qmp_unref(q);

        /* Invalid input is refused at once and never calls back. */
        q = connect_to(f);
        assert_int_equal(qdm_qmp_send(q, "bad name!", NULL, NULL, 0, USEC_INFINITY, test_result_cb,
                                      &r, NULL),
                         -EINVAL);
        assert_int_equal(qdm_qmp_send(q, "x-echo", "[1,2]", NULL, 0, USEC_INFINITY, test_result_cb,
                                      &r, NULL),
                         -EINVAL);
        assert_int_equal(qdm_qmp_send(q, "x-echo", "{\"a\":", NULL, 0, USEC_INFINITY,
                                      test_result_cb, &r, NULL),
                         -EINVAL);
        expect_status(f, q);
        qdm_qmp_unref(q);
}

/* Commands queued before the greeting go out after negotiation, in order; a callback may
 * drop the last reference. */
static void unref_in_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        test_result *r = userdata;
        r->calls++;
        r->error = error;
        qdm_qmp_unref(qmp);
}

static void test_queue_before_greeting_and_unref_in_callback(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        test_result r[3] = {0};
        assert_int_equal(qdm_qmp_send(q, "x-echo", "{\"n\": 1}", NULL, 0, 5 * USEC_PER_SEC,
                                      test_result_cb, &r[0], NULL),
                         0);
        assert_int_equal(qdm_qmp_send(q, "x-echo", "{\"n\": 2}", NULL, 0, 5 * USEC_PER_SEC,
                                      test_result_cb, &r[1], NULL),
                         0);
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC,
                                      unref_in_cb, &r[2], NULL),
                         0);
        run_until(f, &r[2].calls, 1, 5 * USEC_PER_SEC);
        assert_string_equal(r[0].json, "{\"n\":1}");
        assert_string_equal(r[1].json, "{\"n\":2}");
        assert_int_equal(r[2].error, 0);
}

static void test_stale_replies_dropped(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        expect_status(f, q);
        qdm_qmp_stats st;
        assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
        /* One stale line before the greeting, one with a foreign id and one without after. */
        assert_true(st.skipped_pre_greeting >= 1);
        assert_true(st.replies_stray >= 2);
        qdm_qmp_unref(q);
}

static void test_reordered_replies(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        test_result r[10] = {0};
        unsigned done = 0;
        for (int i = 0; i < 10; i++) {
                char args[32];
                snprintf(args, sizeof(args), "{\"n\": %d}", i);
                assert_int_equal(qdm_qmp_send(q, "x-echo", args, NULL, 0, 10 * USEC_PER_SEC,
                                              test_result_cb, &r[i], NULL),
                                 0);
        }
        uint64_t deadline = now_usec() + 10 * USEC_PER_SEC;
        while (done < 10 && now_usec() < deadline) {
                assert_true(qdm_ctx_run(f->ctx, 50 * USEC_PER_MSEC) >= 0);
                done = 0;
                for (int i = 0; i < 10; i++)
                        done += r[i].calls;
        }
        for (int i = 0; i < 10; i++) {
                char want[32];
                snprintf(want, sizeof(want), "{\"n\":%d}", i);
                assert_int_equal(r[i].calls, 1);
                assert_string_equal(r[i].json, want);
        }
        qdm_qmp_unref(q);
}

static void test_events_interleaved(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = NULL;
        ready_state rs = {0};
        assert_int_equal(qdm_qmp_new(f->ctx, &q), 0);
        qdm_qmp_set_ready_callback(q, on_ready, &rs);
        qdm_qmp_set_event_callback(q, on_event_count, &rs);
        assert_int_equal(qdm_qmp_connect(q, f->fake.proc.socket_path), 0);
        run_until(f, &rs.calls, 1, 5 * USEC_PER_SEC);
        assert_int_equal(rs.error, 0);
        /* X_EARLY came before negotiation finished and was still delivered. */
        assert_true(rs.events_before_ready >= 1);
        unsigned before = rs.events;
        expect_status(f, q);
        assert_true(rs.events > before); /* X_BETWEEN, between the command and its reply */
        qdm_qmp_unref(q);
}

static void test_timeout_keeps_connection(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        assert_int_equal(qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC), 0);
        test_result slow = {0};
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 50 * USEC_PER_MSEC,
                                      test_result_cb, &slow, NULL),
                         0);
        run_until(f, &slow.calls, 1, 5 * USEC_PER_SEC);
        assert_int_equal(slow.error, -ETIMEDOUT);
        /* R3: still connected, the late reply still owed. */
        assert_int_equal(qdm_qmp_get_outstanding(q), 1);
        expect_status(f, q);
        qdm_qmp_stats st;
        assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
        assert_int_equal(st.replies_late, 1);
        assert_int_equal(slow.calls, 1); /* exactly once, even with the late reply */
        qdm_qmp_unref(q);
}

/*
 * The pre-4.2 monitor: hanging up before a reply wedges it for every later client. qdm's
 * client, with timeouts far shorter than the command, drains instead of hanging up, so the
 * monitor stays usable; a naive client that hangs up on timeout wedges it. The test tells the
 * two apart through the server's own log and through a later client's fate.
 */
static void test_wedge_qdm_never_wedges(void **state)
{
        fixture *f = *state;
        for (int i = 0; i < 10; i++) {
                qdm_qmp *q = connect_to(f);
                test_result r = {0};
                assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 20 * USEC_PER_MSEC,
                                              test_result_cb, &r, NULL),
                                 0);
                run_until(f, &r.calls, 1, 5 * USEC_PER_SEC);
                assert_int_equal(r.error, -ETIMEDOUT);
                /* Let go at once, like an impatient caller: the context drains it. */
                qdm_qmp_unref(q);
        }
        assert_int_equal(qdm_ctx_flush(f->ctx, 30 * USEC_PER_SEC), 0);
        assert_false(log_contains(f, "WEDGED"));
        qdm_qmp *q = connect_to(f);
        assert_int_equal(qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC), 0);
        expect_status(f, q);
        qdm_qmp_unref(q);
}

static void test_wedge_naive_client_wedges(void **state)
{
        fixture *f = *state;
        char line[4096];
        int fd = test_raw_connect(f->fake.proc.socket_path);
        assert_true(fd >= 0);
        assert_true(test_raw_readline(fd, line, sizeof(line), 5000) > 0);
        assert_int_equal(test_raw_send(fd, "{\"execute\":\"qmp_capabilities\",\"id\":1}\r\n"), 0);
        assert_true(test_raw_readline(fd, line, sizeof(line), 5000) > 0);
        assert_int_equal(test_raw_send(fd, "{\"execute\":\"query-status\",\"id\":2}\r\n"), 0);
        /* "Timed out" after 20 ms: hang up without the reply. */
        assert_int_equal(test_raw_readline(fd, line, sizeof(line), 20), -ETIMEDOUT);
        close(fd);

        qdm_qmp *q = connect_to(f);
        /* The greeting arrives, negotiation never completes: the monitor is wedged. */
        assert_int_equal(qdm_qmp_wait_ready(q, 1 * USEC_PER_SEC), -ETIMEDOUT);
        assert_true(log_contains(f, "WEDGED"));
        qdm_qmp_unref(q);
        /* Our client now has qmp_capabilities outstanding on a wedged monitor: it can only be
         * released by the server going away (R3 "or when QEMU is being killed"). */
        test_proc_stop(&f->fake.proc);
}

/* QEMU 7.2: an abandoned reply goes to the next client, right after its greeting. */
static void test_misrouted_reply(void **state)
{
        fixture *f = *state;
        int wrong = 0;
        for (int i = 0; i < 10; i++) {
                char line[4096];
                int fd = test_raw_connect(f->fake.proc.socket_path);
                assert_true(fd >= 0);
                assert_true(test_raw_readline(fd, line, sizeof(line), 5000) > 0);
                assert_int_equal(test_raw_send(fd, "{\"execute\":\"qmp_capabilities\"}\r\n"), 0);
                assert_true(test_raw_readline(fd, line, sizeof(line), 5000) > 0);
                qdm_qmp *q = connect_to(f);
                test_result r = {0};
                assert_int_equal(qdm_qmp_send(q, "x-echo", "{\"mine\": true}", NULL, 0,
                                              5 * USEC_PER_SEC, test_result_cb, &r, NULL),
                                 0);
                assert_int_equal(test_raw_send(fd, "{\"execute\":\"x-echo\",\"arguments\":"
                                                   "{\"theirs\":true},\"id\":\"1\"}\r\n"),
                                 0);
                close(fd);
                run_until(f, &r.calls, 1, 5 * USEC_PER_SEC);
                assert_int_equal(r.error, 0);
                wrong += strcmp(r.json, "{\"mine\":true}") != 0;
                qdm_qmp_stats st;
                assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
                assert_int_equal(st.replies_stray + st.skipped_pre_greeting, 1);
                qdm_qmp_unref(q);
        }
        assert_int_equal(wrong, 0);
}

static void many_status(fixture *f, unsigned n)
{
        qdm_qmp *q = connect_to(f);
        test_result *r = calloc(n, sizeof(*r));
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 30 * USEC_PER_SEC,
                                              test_result_cb, &r[i], NULL),
                                 0);
        run_until(f, &r[n - 1].calls, 1, 30 * USEC_PER_SEC);
        for (unsigned i = 0; i < n; i++) {
                assert_int_equal(r[i].error, 0);
                assert_non_null(strstr(r[i].json, "prelaunch"));
        }
        free(r);
        qdm_qmp_unref(q);
}

static void test_split_writes(void **state)
{
        many_status(*state, 20);
}

static void test_merged_writes(void **state)
{
        many_status(*state, 50);
}

static void test_garbage_skipped(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        expect_status(f, q);
        expect_status(f, q);
        qdm_qmp_stats st;
        assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
        assert_true(st.rejected >= 6); /* three bad lines before each reply */
        assert_true(st.skipped_pre_greeting >= 1);
        qdm_qmp_unref(q);
}

static long heap_kib(void)
{
        return (long)(test_heap_in_use() / 1024);
}

static void test_endless_line_bounded(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = NULL;
        assert_int_equal(qdm_qmp_new(f->ctx, &q), 0);
        assert_int_equal(qdm_qmp_set_max_message(q, 1024 * 1024), 0);
        assert_int_equal(qdm_qmp_connect(q, f->fake.proc.socket_path), 0);
        assert_int_equal(qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC), 0);
        long before = heap_kib();
        test_result r = {0};
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 2 * USEC_PER_SEC,
                                      test_result_cb, &r, NULL),
                         0);
        run_until(f, &r.calls, 1, 10 * USEC_PER_SEC);
        assert_int_equal(r.error, -ETIMEDOUT);
        /* 64 MiB arrived without a newline; we held at most the 1 MiB limit of it. */
        long after = heap_kib();
        print_message("heap in use before %ld KiB, after %ld KiB\n", before, after);
        assert_true(after - before < 8 * 1024);
        qdm_qmp_unref(q);
        /* The reply never ends: only the server going away releases the connection. */
        test_proc_stop(&f->fake.proc);
}

static void test_event_flood(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = NULL;
        ready_state rs = {0};
        assert_int_equal(qdm_qmp_new(f->ctx, &q), 0);
        qdm_qmp_set_event_callback(q, on_event_count, &rs);
        assert_int_equal(qdm_qmp_connect(q, f->fake.proc.socket_path), 0);
        assert_int_equal(qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC), 0);
        long before = heap_kib();
        expect_status(f, q);
        /* Keep reading through the flood; commands are still answered. */
        uint64_t until = now_usec() + 1200 * USEC_PER_MSEC;
        while (now_usec() < until)
                assert_true(qdm_ctx_run(f->ctx, 50 * USEC_PER_MSEC) >= 0);
        expect_status(f, q);
        print_message("%u events in the flood\n", rs.events);
        assert_true(rs.events > 10000);
        assert_true(heap_kib() - before < 8 * 1024);
        qdm_qmp_unref(q);
}

static void expect_rejected_reply(fixture *f)
{
        qdm_qmp *q = connect_to(f);
        assert_int_equal(qdm_qmp_wait_ready(q, 5 * USEC_PER_SEC), 0);
        test_result r = {0};
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 500 * USEC_PER_MSEC,
                                      test_result_cb, &r, NULL),
                         0);
        run_until(f, &r.calls, 1, 5 * USEC_PER_SEC);
        /* The reply was unusable (and dropped), so the command timed out. */
        assert_int_equal(r.error, -ETIMEDOUT);
        qdm_qmp_stats st;
        assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
        assert_int_equal(st.rejected, 1);
        qdm_qmp_unref(q);
        /* R3: its reply can never be matched now, so the connection keeps draining until the
         * peer goes away; it is not closed early. */
        assert_int_equal(qdm_ctx_flush(f->ctx, 200 * USEC_PER_MSEC), -ETIMEDOUT);
        test_proc_stop(&f->fake.proc);
        assert_int_equal(qdm_ctx_flush(f->ctx, 5 * USEC_PER_SEC), 0);
}

static void test_deep_nesting(void **state)
{
        expect_rejected_reply(*state);
}

static void test_bad_utf8(void **state)
{
        expect_rejected_reply(*state);
}

static void test_greeting_twice(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        expect_status(f, q);
        qdm_qmp_stats st;
        assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
        assert_int_equal(st.rejected, 1);
        qdm_qmp_unref(q);
}

typedef struct disconnect_state {
        unsigned calls;
        int error;
} disconnect_state;

static void on_disconnect(qdm_qmp *qmp, int error, void *userdata)
{
        disconnect_state *d = userdata;
        d->calls++;
        d->error = error;
}

static void test_close_mid_message(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        disconnect_state d = {0};
        qdm_qmp_set_disconnect_callback(q, on_disconnect, &d);
        test_result r[2] = {0};
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC,
                                      test_result_cb, &r[0], NULL),
                         0);
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC,
                                      test_result_cb, &r[1], NULL),
                         0);
        run_until(f, &d.calls, 1, 5 * USEC_PER_SEC);
        assert_int_equal(d.error, -ECONNRESET);
        /* Every pending command failed with the distinct EOF error, exactly once. */
        for (int i = 0; i < 2; i++) {
                assert_int_equal(r[i].calls, 1);
                assert_int_equal(r[i].error, -ECONNRESET);
        }
        assert_int_equal(
                qdm_qmp_send(q, "query-status", NULL, NULL, 0, USEC_INFINITY, NULL, NULL, NULL),
                -ENOTCONN);
        qdm_qmp_unref(q);
}

/* The context's fd is all a host loop needs: poll it, then process. */
static void test_host_loop_embedding(void **state)
{
        fixture *f = *state;
        qdm_qmp *q = connect_to(f);
        test_result r = {0};
        assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC,
                                      test_result_cb, &r, NULL),
                         0);
        uint64_t t = 0;
        assert_int_equal(qdm_ctx_get_timeout(f->ctx, &t), 0);
        assert_true(t != QDM_USEC_INFINITY); /* the command's deadline */
        while (r.calls == 0) {
                struct pollfd p = {.fd = qdm_ctx_get_fd(f->ctx), .events = POLLIN};
                assert_int_equal(poll(&p, 1, 5000), 1);
                assert_true(qdm_ctx_process(f->ctx) >= 0);
        }
        assert_int_equal(r.error, 0);
        qdm_qmp_unref(q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_never_synchronous, setup_normal, teardown),
                cmocka_unit_test_setup_teardown(test_queue_before_greeting_and_unref_in_callback,
                                                setup_normal, teardown),
                cmocka_unit_test_setup_teardown(test_host_loop_embedding, setup_normal, teardown),
                cmocka_unit_test_setup_teardown(test_stale_replies_dropped, setup_stale, teardown),
                cmocka_unit_test_setup_teardown(test_reordered_replies, setup_reorder, teardown),
                cmocka_unit_test_setup_teardown(test_events_interleaved, setup_events, teardown),
                cmocka_unit_test_setup_teardown(test_timeout_keeps_connection, setup_slow,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_wedge_qdm_never_wedges, setup_wedge, teardown),
                cmocka_unit_test_setup_teardown(test_wedge_naive_client_wedges, setup_wedge,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_misrouted_reply, setup_misroute, teardown),
                cmocka_unit_test_setup_teardown(test_split_writes, setup_split, teardown),
                cmocka_unit_test_setup_teardown(test_merged_writes, setup_merge, teardown),
                cmocka_unit_test_setup_teardown(test_garbage_skipped, setup_garbage, teardown),
                cmocka_unit_test_setup_teardown(test_endless_line_bounded, setup_endless, teardown),
                cmocka_unit_test_setup_teardown(test_event_flood, setup_flood, teardown),
                cmocka_unit_test_setup_teardown(test_deep_nesting, setup_deep, teardown),
                cmocka_unit_test_setup_teardown(test_bad_utf8, setup_badutf8, teardown),
                cmocka_unit_test_setup_teardown(test_greeting_twice, setup_greet_twice, teardown),
                cmocka_unit_test_setup_teardown(test_close_mid_message, setup_close_mid, teardown),
        };
        return cmocka_run_group_tests_name("qmp-fake", tests, NULL, NULL);
}
