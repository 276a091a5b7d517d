/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client against real QEMU (qemu-system-x86_64 -S -machine none), the monitor on a
 * listening socket the test created and handed over as an fd (R5).
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "qdm.h"
#include "test-support.h"
#include "util.h"

typedef struct fixture {
        int fds_before;
        test_proc qemu;
        qdm_ctx *ctx;
        qdm_qmp *qmp;
} fixture;

static int setup(void **state)
{
        if (!test_qemu_binary()) {
                print_message("qemu-system-x86_64 is not installed\n");
                return -1;
        }
        fixture *f = calloc(1, sizeof(*f));
        f->fds_before = test_count_fds();
        assert_int_equal(test_qemu_start(NULL, &f->qemu), 0);
        assert_int_equal(qdm_ctx_new(&f->ctx), 0);
        assert_int_equal(qdm_qmp_new(f->ctx, &f->qmp), 0);
        assert_int_equal(qdm_qmp_connect(f->qmp, f->qemu.socket_path), 0);
        assert_int_equal(qdm_qmp_wait_ready(f->qmp, 10 * USEC_PER_SEC), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        f->qmp = qdm_qmp_unref(f->qmp);
        assert_int_equal(qdm_ctx_flush(f->ctx, 5 * USEC_PER_SEC), 0);
        f->ctx = qdm_ctx_unref(f->ctx);
        test_proc_stop(&f->qemu);
        /* No fd of the test's survives it. */
        assert_int_equal(test_count_fds(), f->fds_before);
        free(f);
        return 0;
}

static void test_greeting_and_status(void **state)
{
        fixture *f = *state;
        int major = 0, minor = 0, micro = 0;
        assert_int_equal(qdm_qmp_get_version(f->qmp, &major, &minor, &micro), 0);
        assert_true(major >= 7);
        assert_int_equal(qdm_qmp_has_capability(f->qmp, "oob"), 1);
        assert_int_equal(qdm_qmp_has_capability(f->qmp, "no-such-capability"), 0);

        char *json = NULL;
        assert_int_equal(
                qdm_qmp_execute(f->qmp, "query-status", NULL, 5 * USEC_PER_SEC, &json, NULL), 0);
        json_object *o = json_tokener_parse(json);
        json_object *status = NULL;
        assert_true(json_object_object_get_ex(o, "status", &status));
        assert_string_equal(json_object_get_string(status), "prelaunch");
        json_object_put(o);
        free(json);
}

static void test_error_reply(void **state)
{
        fixture *f = *state;
        char *json = NULL, *error = NULL;
        assert_int_equal(
                qdm_qmp_execute(f->qmp, "no-such-command", NULL, 5 * USEC_PER_SEC, &json, &error),
                -EREMOTEIO);
        assert_null(json);
        assert_non_null(strstr(error, "CommandNotFound"));
        free(error);
}

static void test_big_schema(void **state)
{
        fixture *f = *state;
        char *json = NULL;
        assert_int_equal(
                qdm_qmp_execute(f->qmp, "query-qmp-schema", NULL, 10 * USEC_PER_SEC, &json, NULL),
                0);
        /* About 200 KB on QEMU 7.2; a JSON array of schema entries. */
        assert_true(strlen(json) > 100000);
        json_object *o = json_tokener_parse(json);
        assert_true(json_object_is_type(o, json_type_array));
        assert_true(json_object_array_length(o) > 100);
        json_object_put(o);
        free(json);
}

typedef struct event_log {
        char names[16][32];
        size_t n;
} event_log;

static void record_event(qdm_qmp *qmp, const qdm_qmp_message *ev, void *userdata)
{
        event_log *log = userdata;
        if (log->n < ELEMENTSOF(log->names))
                snprintf(log->names[log->n++], sizeof(log->names[0]), "%s",
                         qdm_qmp_message_get_event(ev));
        assert_true(qdm_qmp_message_get_timestamp(ev) > 0);
}

static bool saw_event(const event_log *log, const char *name)
{
        for (size_t i = 0; i < log->n; i++)
                if (strcmp(log->names[i], name) == 0)
                        return true;
        return false;
}

static void test_cont_resume_event(void **state)
{
        fixture *f = *state;
        event_log log = {0};
        qdm_qmp_set_event_callback(f->qmp, record_event, &log);
        assert_int_equal(qdm_qmp_execute(f->qmp, "cont", NULL, 5 * USEC_PER_SEC, NULL, NULL), 0);
        /* RESUME is sent before cont's reply, so it has been delivered by now. */
        assert_true(saw_event(&log, "RESUME"));
        char *json = NULL;
        assert_int_equal(
                qdm_qmp_execute(f->qmp, "query-status", NULL, 5 * USEC_PER_SEC, &json, NULL), 0);
        assert_non_null(strstr(json, "\"running\""));
        free(json);
}

typedef struct disconnect_state {
        int calls;
        int error;
} disconnect_state;

static void on_disconnect(qdm_qmp *qmp, int error, void *userdata)
{
        disconnect_state *d = userdata;
        d->calls++;
        d->error = error;
}

static void test_quit_shutdown_eof(void **state)
{
        fixture *f = *state;
        event_log log = {0};
        disconnect_state d = {0};
        qdm_qmp_set_event_callback(f->qmp, record_event, &log);
        qdm_qmp_set_disconnect_callback(f->qmp, on_disconnect, &d);
        assert_int_equal(qdm_qmp_execute(f->qmp, "quit", NULL, 5 * USEC_PER_SEC, NULL, NULL), 0);
        while (d.calls == 0)
                assert_true(qdm_ctx_run(f->ctx, 5 * USEC_PER_SEC) > 0);
        assert_int_equal(d.calls, 1);
        assert_int_equal(d.error, -ECONNRESET);
        assert_true(saw_event(&log, "SHUTDOWN"));
        assert_int_equal(test_proc_wait(&f->qemu, 5000), 0);
        /* A command on an ended connection is refused at once, never queued. */
        assert_int_equal(qdm_qmp_send(f->qmp, "query-status", NULL, NULL, 0, USEC_INFINITY, NULL,
                                      NULL, NULL),
                         -ENOTCONN);
}

typedef struct chain {
        qdm_qmp *qmp;
        unsigned left, ok, failed;
        uint64_t t0, t1;
} chain;

static void chain_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        chain *c = userdata;
        if (error == 0 && streq_ptr(qdm_qmp_message_get_string(m, "status"), "prelaunch"))
                c->ok++;
        else
                c->failed++;
        if (--c->left > 0)
                assert_int_equal(qdm_qmp_send(qmp, "query-status", NULL, NULL, 0, 10 * USEC_PER_SEC,
                                              chain_cb, c, NULL),
                                 0);
        else
                c->t1 = now_usec();
}

static void test_10000_sequential(void **state)
{
        fixture *f = *state;
        chain c = {.qmp = f->qmp, .left = 10000, .t0 = now_usec()};
        assert_int_equal(qdm_qmp_send(f->qmp, "query-status", NULL, NULL, 0, 10 * USEC_PER_SEC,
                                      chain_cb, &c, NULL),
                         0);
        while (c.left > 0)
                assert_true(qdm_ctx_run(f->ctx, 10 * USEC_PER_SEC) > 0);
        assert_int_equal(c.ok, 10000);
        assert_int_equal(c.failed, 0);
        print_message("10000 sequential query-status: %.0f commands/s\n",
                      10000.0 / ((double)(c.t1 - c.t0) / 1e6));
}

typedef struct counter {
        unsigned ok, failed;
        uint64_t last_serial;
        bool in_order;
} counter;

static void count_cb(qdm_qmp *qmp, int error, const qdm_qmp_message *m, void *userdata)
{
        counter *c = userdata;
        if (error == 0 && streq_ptr(qdm_qmp_message_get_string(m, "status"), "prelaunch"))
                c->ok++;
        else
                c->failed++;
}

static void test_10000_pipelined(void **state)
{
        fixture *f = *state;
        counter c = {0};
        uint64_t t0 = now_usec();
        for (int i = 0; i < 10000; i++)
                assert_int_equal(qdm_qmp_send(f->qmp, "query-status", NULL, NULL, 0,
                                              30 * USEC_PER_SEC, count_cb, &c, NULL),
                                 0);
        while (c.ok + c.failed < 10000)
                assert_true(qdm_ctx_run(f->ctx, 30 * USEC_PER_SEC) > 0);
        assert_int_equal(c.ok, 10000);
        print_message("10000 pipelined query-status: %.0f commands/s\n",
                      10000.0 / ((double)(now_usec() - t0) / 1e6));
        assert_int_equal(qdm_qmp_get_outstanding(f->qmp), 0);
}

/* getfd with an fd: QEMU only accepts it if the fd arrived with the command's bytes. */
static void test_fd_passing(void **state)
{
        fixture *f = *state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        char *error = NULL;
        /* Without an fd QEMU refuses. */
        assert_int_equal(qdm_qmp_execute(f->qmp, "getfd", "{\"fdname\": \"x\"}", 5 * USEC_PER_SEC,
                                         NULL, &error),
                         -EREMOTEIO);
        free(error);

        counter c = {0};
        /* Several commands queued back to back: the fd must ride on getfd's first byte. */
        assert_int_equal(qdm_qmp_send(f->qmp, "query-status", NULL, NULL, 0, 5 * USEC_PER_SEC,
                                      count_cb, &c, NULL),
                         0);
        int rc = -1;
        char *json = NULL;
        assert_int_equal(qdm_qmp_send(f->qmp, "getfd", "{\"fdname\": \"x\"}", &p[0], 1,
                                      5 * USEC_PER_SEC, count_cb, &c, NULL),
                         0);
        while (c.ok + c.failed < 2)
                assert_true(qdm_ctx_run(f->ctx, 5 * USEC_PER_SEC) > 0);
        assert_int_equal(c.ok, 1);     /* query-status */
        assert_int_equal(c.failed, 1); /* getfd returns {} which has no "status": counted here */
        /* closefd succeeds only if QEMU holds an fd named x. */
        rc = qdm_qmp_execute(f->qmp, "closefd", "{\"fdname\": \"x\"}", 5 * USEC_PER_SEC, &json,
                             &error);
        assert_int_equal(rc, 0);
        free(json);

        /* add-fd puts it in an fd set that query-fdsets then shows. */
        char *out = NULL;
        uint64_t serial = 0;
        assert_int_equal(qdm_qmp_send(f->qmp, "add-fd", "{\"fdset-id\": 7}", &p[1], 1,
                                      5 * USEC_PER_SEC, count_cb, &c, &serial),
                         0);
        assert_true(serial > 0);
        while (c.ok + c.failed < 3)
                assert_true(qdm_ctx_run(f->ctx, 5 * USEC_PER_SEC) > 0);
        assert_int_equal(
                qdm_qmp_execute(f->qmp, "query-fdsets", NULL, 5 * USEC_PER_SEC, &out, NULL), 0);
        assert_non_null(strstr(out, "\"fdset-id\":7"));
        free(out);
        close(p[0]);
        close(p[1]);
}

/*
 * The misrouted reply (QEMU 7.2): while our client waits in the listen backlog, another client
 * sends query-qmp-schema and hangs up ~0.5 ms later without reading. QEMU accepts the waiting
 * client and hands it the abandoned reply right after the greeting.
 */
static int raw_negotiate(const char *path)
{
        char line[4096];
        int fd = test_raw_connect(path);
        assert_true(fd >= 0);
        assert_true(test_raw_readline(fd, line, sizeof(line), 5000) > 0);
        assert_non_null(strstr(line, "\"QMP\""));
        assert_int_equal(test_raw_send(fd, "{\"execute\":\"qmp_capabilities\"}\r\n"), 0);
        assert_true(test_raw_readline(fd, line, sizeof(line), 5000) > 0);
        assert_non_null(strstr(line, "\"return\""));
        return fd;
}

static void hang_up_during_schema(int fd)
{
        assert_int_equal(test_raw_send(fd, "{\"execute\":\"query-qmp-schema\",\"id\":\"abandoned\"}"
                                           "\r\n"),
                         0);
        struct timespec ts = {.tv_nsec = 500 * 1000};
        nanosleep(&ts, NULL);
        close(fd);
}

static void test_misrouted_reply(void **state)
{
        fixture *f = *state;
        /* Free the monitor for the raw clients. */
        f->qmp = qdm_qmp_unref(f->qmp);
        assert_int_equal(qdm_ctx_flush(f->ctx, 5 * USEC_PER_SEC), 0);

        const int runs = 50;
        int qdm_right = 0, qdm_saw_stale = 0, naive_wrong = 0;
        for (int i = 0; i < runs; i++) {
                int a = raw_negotiate(f->qemu.socket_path);

                qdm_qmp *q = NULL;
                assert_int_equal(qdm_qmp_new(f->ctx, &q), 0);
                assert_int_equal(qdm_qmp_connect(q, f->qemu.socket_path), 0);
                counter c = {0};
                assert_int_equal(qdm_qmp_send(q, "query-status", NULL, NULL, 0, 10 * USEC_PER_SEC,
                                              count_cb, &c, NULL),
                                 0);
                hang_up_during_schema(a);
                while (c.ok + c.failed == 0)
                        assert_true(qdm_ctx_run(f->ctx, 10 * USEC_PER_SEC) > 0);
                qdm_qmp_stats st;
                assert_int_equal(qdm_qmp_get_stats(q, &st), 0);
                qdm_right += c.ok;
                if (st.replies_stray + st.skipped_pre_greeting > 0)
                        qdm_saw_stale++;
                q = qdm_qmp_unref(q);
                assert_int_equal(qdm_ctx_flush(f->ctx, 5 * USEC_PER_SEC), 0);
        }

        /* The same race against a client that takes "the next return" as its answer. */
        for (int i = 0; i < runs; i++) {
                int a = raw_negotiate(f->qemu.socket_path);
                int b = test_raw_connect(f->qemu.socket_path);
                assert_true(b >= 0);
                hang_up_during_schema(a);
                char *line = malloc(1 << 20);
                ssize_t n;
                /* Greeting (possibly preceded by the stale reply: skip to it). */
                do
                        n = test_raw_readline(b, line, 1 << 20, 10000);
                while (n > 0 && !strstr(line, "\"QMP\""));
                assert_true(n > 0);
                assert_int_equal(test_raw_send(b, "{\"execute\":\"qmp_capabilities\"}\r\n"), 0);
                assert_true(test_raw_readline(b, line, 1 << 20, 10000) > 0);
                assert_int_equal(test_raw_send(b, "{\"execute\":\"query-status\"}\r\n"), 0);
                n = test_raw_readline(b, line, 1 << 20, 10000);
                assert_true(n > 0);
                if (!strstr(line, "\"status\""))
                        naive_wrong++;
                /* Read what is left so this client does not itself abandon a reply. */
                while (test_raw_readline(b, line, 1 << 20, 200) > 0)
                        ;
                free(line);
                close(b);
        }
        print_message("misrouted reply, %d runs: qdm right %d (saw the stale reply %d times); "
                      "naive client wrong %d\n",
                      runs, qdm_right, qdm_saw_stale, naive_wrong);
        assert_int_equal(qdm_right, runs);
        /* The test proves it exercises the race: the naive client is hit. */
        assert_true(naive_wrong > 0);
        assert_true(qdm_saw_stale > 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_greeting_and_status, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
                cmocka_unit_test_setup_teardown(test_big_schema, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cont_resume_event, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quit_shutdown_eof, setup, teardown),
                cmocka_unit_test_setup_teardown(test_10000_sequential, setup, teardown),
                cmocka_unit_test_setup_teardown(test_10000_pipelined, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fd_passing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_misrouted_reply, setup, teardown),
        };
        return cmocka_run_group_tests_name("qmp-qemu", tests, NULL, NULL);
}
