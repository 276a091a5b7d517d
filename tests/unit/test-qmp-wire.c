/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for the sans-I/O QMP wire layer: framing at every byte split, the size and nesting
 * limits, strict JSON, classification with every field type-checked, the greeting gate, and
 * command serialization. Each run's output is rendered as text and compared to a literal, so a
 * test fails on any difference in what comes out, not only on a crash.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qmp-wire.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *errno_name(int r)
{
        switch (r) {
        case -EMSGSIZE:
                return "EMSGSIZE";
        case -ELOOP:
                return "ELOOP";
        case -EILSEQ:
                return "EILSEQ";
        case -EBADMSG:
                return "EBADMSG";
        case -EPROTO:
                return "EPROTO";
        case -ENOMEM:
                return "ENOMEM";
        case -EINVAL:
                return "EINVAL";
        default:
                return "E?";
        }
}

static const char *js(json_object *o)
{
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void render(FILE *out, int r, const qmp_msg *m)
{
        if (r < 0) {
                fprintf(out, "ERR %s\n", errno_name(r));
                return;
        }
        switch (m->kind) {
        case QMP_MSG_GREETING:
                fprintf(out, "GREETING %d.%d.%d package=%s caps=%s\n", m->version_major,
                        m->version_minor, m->version_micro, m->package,
                        m->capabilities ? js(m->capabilities) : "-");
                break;
        case QMP_MSG_RETURN:
                fprintf(out, "RETURN id=%s ret=%s\n", m->id ? js(m->id) : "-", js(m->ret));
                break;
        case QMP_MSG_ERROR:
                fprintf(out, "ERROR id=%s class=%s desc=%s\n", m->id ? js(m->id) : "-",
                        m->error_class, m->error_desc);
                break;
        case QMP_MSG_EVENT:
                fprintf(out, "EVENT %s data=%s ts=%" PRIu64 "\n", m->event,
                        m->data ? js(m->data) : "-", m->timestamp_usec);
                break;
        default:
                fprintf(out, "KIND %d\n", (int)m->kind);
        }
}

/* Render everything qmp_wire_next yields until it needs more bytes. */
static void drain(qmp_wire *w, FILE *out)
{
        for (;;) {
                qmp_msg *m = NULL;
                int r = qmp_wire_next(w, &m);
                if (r == 0) {
                        assert_null(m);
                        return;
                }
                if (r > 0)
                        assert_non_null(m);
                else
                        assert_null(m);
                render(out, r, m);
                qmp_msg_free(m);
        }
}

typedef struct capture {
        FILE *f;
        char *text;
        size_t len;
} capture;

static void capture_begin(capture *c)
{
        c->text = NULL;
        c->len = 0;
        c->f = open_memstream(&c->text, &c->len);
        assert_non_null(c->f);
}

/* Returns the rendered text (caller frees). */
static char *capture_end(capture *c)
{
        assert_int_equal(fclose(c->f), 0);
        return c->text;
}

static void feed(qmp_wire *w, const void *data, size_t n)
{
        assert_int_equal(qmp_wire_feed(w, data, n), 0);
}

static void feed_str(qmp_wire *w, const char *s)
{
        feed(w, s, strlen(s));
}

static const char greeting[] =
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
        "\"package\": \"Debian 1:7.2+dfsg-7+deb12u7\"}, \"capabilities\": [\"oob\"]}}\r\n";

static qmp_wire *greeted_wire(size_t max_message, int max_depth)
{
        qmp_wire *w = qmp_wire_new(max_message, max_depth);
        assert_non_null(w);
        /* The realistic greeting (4 levels deep) does not fit small limits; a minimal one does. */
        bool fits = (max_message == 0 || max_message >= strlen(greeting)) &&
                    (max_depth <= 0 || max_depth >= 4);
        feed_str(w, fits ? greeting : "{\"QMP\":{}}\n");
        qmp_msg *m = NULL;
        assert_int_equal(qmp_wire_next(w, &m), 1);
        assert_int_equal(m->kind, QMP_MSG_GREETING);
        qmp_msg_free(m);
        assert_true(qmp_wire_greeted(w));
        return w;
}

/* Feed n bytes (a line, terminator included) and return the one result they produce; a
 * message is handed to the caller through ret (or freed when ret is NULL). */
static int one(qmp_wire *w, const char *data, size_t n, qmp_msg **ret)
{
        feed(w, data, n);
        qmp_msg *m = NULL;
        int r = qmp_wire_next(w, &m);
        assert_int_not_equal(r, 0);
        qmp_msg *extra = NULL;
        assert_int_equal(qmp_wire_next(w, &extra), 0);
        if (ret)
                *ret = m;
        else
                qmp_msg_free(m);
        return r;
}

static int one_line(qmp_wire *w, const char *line, qmp_msg **ret)
{
        char *buf = NULL;
        assert_true(asprintf(&buf, "%s\n", line) > 0);
        int r = one(w, buf, strlen(buf), ret);
        free(buf);
        return r;
}

/* prefix, c1 n1 times, middle, c2 n2 times, suffix: the long lines the limits are tested with. */
static char *build(const char *prefix, char c1, size_t n1, const char *middle, char c2, size_t n2,
                   const char *suffix)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        assert_non_null(f);
        fputs(prefix, f);
        for (size_t i = 0; i < n1; i++)
                fputc(c1, f);
        fputs(middle, f);
        for (size_t i = 0; i < n2; i++)
                fputc(c2, f);
        fputs(suffix, f);
        assert_int_equal(fclose(f), 0);
        return s;
}

/* {"return":"xxx..."} of exactly n bytes (n >= 13). */
static char *return_line_of_size(size_t n)
{
        assert_true(n >= 13);
        char *s = build("{\"return\":\"", 'x', n - 13, "\"}", 0, 0, "");
        assert_int_equal(strlen(s), n);
        return s;
}

/* {"return":[[...0...]]} and a newline: depth levels of nesting, the object included. */
static char *nested_line(size_t depth)
{
        assert_true(depth >= 1);
        return build("{\"return\":", '[', depth - 1, "0", ']', depth - 1, "}\n");
}

/* ---- framing: a realistic transcript at every split --------------------------------------- */

#define TRANSCRIPT_LIMIT 512

static char *transcript(size_t *ret_len)
{
        char big[601];
        memset(big, 'x', 600);
        big[600] = 0;
        char *t = NULL;
        int n = asprintf(
                &t,
                "garbage\r\n"
                "{\"return\": {}, \"id\": \"stale-1\"}\r\n"
                "%s"
                "{\"return\": {}, \"id\": 1}\r\n"
                "\r\n"
                "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": "
                "false}, \"id\": \"qdm-2\"}\n"
                "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command foo has "
                "not been found\"}, \"id\": 3}\r\n"
                "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, "
                "\"event\": \"STOP\"}\r\n"
                "not json\r\n"
                "{\"return\": [{\"name\": \"query-status\", \"ret-type\": \"1\", \"meta-type\": "
                "\"command\", \"arg-type\": \"0\"}], \"id\": 4}\n"
                "%s\r\n"
                "{\"event\": \"RESUME\", \"data\": {\"reason\": \"cont\"}, \"timestamp\": "
                "{\"seconds\": 1700000001, \"microseconds\": 5}}\r\n"
                "{\"return\": 18446744073709551615, \"id\": -9223372036854775808}\n",
                greeting, big);
        assert_true(n > 0);
        *ret_len = (size_t)n;
        return t;
}

static const char transcript_expected[] =
        "GREETING 7.2.0 package=Debian 1:7.2+dfsg-7+deb12u7 caps=[\"oob\"]\n"
        "RETURN id=1 ret={}\n"
        "RETURN id=\"qdm-2\" "
        "ret={\"status\":\"prelaunch\",\"singlestep\":false,\"running\":false}\n"
        "ERROR id=3 class=CommandNotFound desc=The command foo has not been found\n"
        "EVENT STOP data=- ts=1700000000123456\n"
        "ERR EBADMSG\n"
        "RETURN id=4 ret=[{\"name\":\"query-status\",\"ret-type\":\"1\",\"meta-type\":\"command\","
        "\"arg-type\":\"0\"}]\n"
        "ERR EMSGSIZE\n"
        "EVENT RESUME data={\"reason\":\"cont\"} ts=1700000001000005\n"
        "RETURN id=-9223372036854775808 ret=18446744073709551615\n";

static void check_transcript_end(qmp_wire *w, char *out)
{
        assert_string_equal(out, transcript_expected);
        free(out);
        assert_true(qmp_wire_greeted(w));
        assert_int_equal(qmp_wire_skipped(w), 2);
        assert_int_equal(qmp_wire_rejected(w), 2);
        assert_int_equal(qmp_wire_buffered(w), 0);
        qmp_wire_free(w);
}

static void test_transcript_one_feed(void **state)
{
        size_t n;
        char *t = transcript(&n);
        capture c;
        capture_begin(&c);
        qmp_wire *w = qmp_wire_new(TRANSCRIPT_LIMIT, 0);
        assert_non_null(w);
        feed(w, t, n);
        drain(w, c.f);
        check_transcript_end(w, capture_end(&c));
        free(t);
}

static void test_transcript_every_split(void **state)
{
        size_t n;
        char *t = transcript(&n);
        for (size_t i = 0; i <= n; i++) {
                for (int drain_between = 0; drain_between <= 1; drain_between++) {
                        capture c;
                        capture_begin(&c);
                        qmp_wire *w = qmp_wire_new(TRANSCRIPT_LIMIT, 0);
                        assert_non_null(w);
                        feed(w, t, i);
                        if (drain_between)
                                drain(w, c.f);
                        feed(w, t + i, n - i);
                        drain(w, c.f);
                        check_transcript_end(w, capture_end(&c));
                }
        }
        free(t);
}

static void test_transcript_byte_by_byte(void **state)
{
        size_t n;
        char *t = transcript(&n);
        capture c;
        capture_begin(&c);
        qmp_wire *w = qmp_wire_new(TRANSCRIPT_LIMIT, 0);
        assert_non_null(w);
        for (size_t i = 0; i < n; i++) {
                feed(w, t + i, 1);
                drain(w, c.f);
                /* Never more than a line's limit (plus a pending "\r") held. */
                assert_true(qmp_wire_buffered(w) <= TRANSCRIPT_LIMIT + 1);
        }
        check_transcript_end(w, capture_end(&c));
        free(t);
}

/* Many repetitions in pseudo-random chunks, reading at pseudo-random moments: exercises the
 * buffer's compaction and growth with lines left in it. */
static void test_transcript_random_chunks(void **state)
{
        size_t n;
        char *t = transcript(&n);
        /* Strip the pre-greeting part and greeting so the body can be repeated. */
        const char *body = strstr(t, greeting);
        assert_non_null(body);
        body += strlen(greeting);
        size_t body_len = n - (size_t)(body - t);

        const int reps = 200;
        capture c;
        capture_begin(&c);
        qmp_wire *w = qmp_wire_new(TRANSCRIPT_LIMIT, 0);
        assert_non_null(w);
        feed(w, t, (size_t)(body - t));
        drain(w, c.f);

        uint32_t seed = 12345;
        for (int rep = 0; rep < reps; rep++) {
                size_t off = 0;
                while (off < body_len) {
                        seed = seed * 1103515245u + 12345u;
                        size_t k = 1 + (seed >> 16) % 300;
                        if (k > body_len - off)
                                k = body_len - off;
                        feed(w, body + off, k);
                        off += k;
                        if ((seed >> 8) % 4 == 0)
                                drain(w, c.f);
                }
        }
        drain(w, c.f);
        char *out = capture_end(&c);

        /* Expected: the greeting once, then the body's results reps times. */
        const char *body_expected = strchr(transcript_expected, '\n') + 1;
        size_t bl = strlen(body_expected);
        size_t gl = (size_t)(body_expected - transcript_expected);
        assert_int_equal(strlen(out), gl + bl * (size_t)reps);
        assert_memory_equal(out, transcript_expected, gl);
        for (int rep = 0; rep < reps; rep++)
                assert_memory_equal(out + gl + bl * (size_t)rep, body_expected, bl);
        free(out);
        assert_int_equal(qmp_wire_rejected(w), 2 * reps);
        assert_int_equal(qmp_wire_skipped(w), 2);
        qmp_wire_free(w);
        free(t);
}

/* ---- framing details ---------------------------------------------------------------------- */

static void test_crlf_and_lf(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        capture c;
        capture_begin(&c);
        feed_str(w, "{\"return\":1,\"id\":1}\n");
        feed_str(w, "{\"return\":2,\"id\":2}\r\n");
        /* Only one "\r" is the terminator's; a second one is JSON whitespace. */
        feed_str(w, "{\"return\":3,\"id\":3}\r\r\n");
        /* A "\r" inside the line is whitespace too. */
        feed_str(w, "{\"return\":\r4,\"id\":4}\n");
        /* Blank lines of every kind are ignored and not counted. */
        feed_str(w, "\n\r\n\r\r\n \t \r\n");
        /* A lone "\r" does not end a line. */
        feed_str(w, "{\"return\":5,\"id\":5}\r");
        drain(w, c.f);
        assert_int_equal(qmp_wire_buffered(w), strlen("{\"return\":5,\"id\":5}\r"));
        feed_str(w, "{\"return\":6}\n");
        drain(w, c.f);
        char *out = capture_end(&c);
        assert_string_equal(out, "RETURN id=1 ret=1\n"
                                 "RETURN id=2 ret=2\n"
                                 "RETURN id=3 ret=3\n"
                                 "RETURN id=4 ret=4\n"
                                 "ERR EBADMSG\n");
        free(out);
        assert_int_equal(qmp_wire_rejected(w), 1);
        assert_int_equal(qmp_wire_buffered(w), 0);
        qmp_wire_free(w);
}

static void test_pre_greeting_skipped(void **state)
{
        qmp_wire *w = qmp_wire_new(256, 0);
        assert_non_null(w);
        assert_false(qmp_wire_greeted(w));

        static const char junk[] = "\x00\xff\xfe binary junk\n"                     /* 1 */
                                   "{\"return\": {}, \"id\": \"stale\"}\r\n"        /* 2 */
                                   "{\"event\":\"STOP\"}\n"                         /* 3 */
                                   "{\"error\":{\"class\":\"X\",\"desc\":\"y\"}}\n" /* 4 */
                                   "{\"QMP\": 5}\n"                                 /* 5 */
                                   "{\"QMP\": {}, \"return\": {}}\n"                /* 6 */
                                   "{\"QMP\": {\"capabilities\": [1]}}\n"           /* 7 */
                                   "\n\r\n  \n";                                    /* blank */
        feed(w, junk, sizeof(junk) - 1);
        char *deep = nested_line(200); /* 8 */
        feed_str(w, deep);
        free(deep);
        char big[1000]; /* 9: over-long, never buffered beyond the limit */
        memset(big, 'z', sizeof(big));
        feed(w, big, sizeof(big));
        assert_true(qmp_wire_buffered(w) <= 256);
        feed_str(w, "\n{\"return\": {}, \"id\": 1}\n"); /* 10 */

        qmp_msg *m = (qmp_msg *)1;
        assert_int_equal(qmp_wire_next(w, &m), 0);
        assert_ptr_equal(m, (qmp_msg *)1); /* untouched */
        assert_false(qmp_wire_greeted(w));
        assert_int_equal(qmp_wire_skipped(w), 10);
        assert_int_equal(qmp_wire_rejected(w), 0);

        feed_str(w, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": "
                    "0}, \"package\": \"\"}, \"capabilities\": []}}\n");
        assert_int_equal(qmp_wire_next(w, &m), 1);
        assert_int_equal(m->kind, QMP_MSG_GREETING);
        qmp_msg_free(m);
        assert_true(qmp_wire_greeted(w));
        assert_int_equal(qmp_wire_skipped(w), 10);

        /* From now on the same kinds of lines come out. */
        capture c;
        capture_begin(&c);
        feed(w, junk, sizeof(junk) - 1);
        drain(w, c.f);
        char *out = capture_end(&c);
        assert_string_equal(out, "ERR EBADMSG\n"
                                 "RETURN id=\"stale\" ret={}\n"
                                 "EVENT STOP data=- ts=0\n"
                                 "ERROR id=- class=X desc=y\n"
                                 "ERR EPROTO\n"
                                 "ERR EPROTO\n"
                                 "ERR EPROTO\n");
        free(out);
        assert_int_equal(qmp_wire_skipped(w), 10);
        assert_int_equal(qmp_wire_rejected(w), 4);
        qmp_wire_free(w);
}

static void test_errors_then_resync(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        capture c;
        capture_begin(&c);
        feed_str(w, "hello\n{\"return\"\n}\n{\"return\": {}, \"id\": 7}\n");
        /* Half a message then garbage on the same line: one error, then the next line. */
        feed_str(w, "{\"return\": {}, \"id\": 8}");
        feed_str(w, "xx\n{\"return\": {}, \"id\": 9}\n");
        drain(w, c.f);
        char *out = capture_end(&c);
        assert_string_equal(out, "ERR EBADMSG\n"
                                 "ERR EBADMSG\n"
                                 "ERR EBADMSG\n"
                                 "RETURN id=7 ret={}\n"
                                 "ERR EBADMSG\n"
                                 "RETURN id=9 ret={}\n");
        free(out);
        assert_int_equal(qmp_wire_rejected(w), 4);
        assert_int_equal(qmp_wire_skipped(w), 0);
        qmp_wire_free(w);
}

static void test_stale_reply_and_second_greeting(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        qmp_msg *m = NULL;
        /* A reply to a command we never sent: returned; the client drops it by id. */
        assert_int_equal(one_line(w, "{\"return\": {}, \"id\": \"not-ours\"}", &m), 1);
        assert_int_equal(m->kind, QMP_MSG_RETURN);
        assert_string_equal(json_object_get_string(m->id), "not-ours");
        qmp_msg_free(m);
        /* A second greeting is a message like any other; the client decides. */
        assert_int_equal(one(w, greeting, strlen(greeting), &m), 1);
        assert_int_equal(m->kind, QMP_MSG_GREETING);
        qmp_msg_free(m);
        assert_int_equal(qmp_wire_rejected(w), 0);
        qmp_wire_free(w);
}

/* ---- size limit ----------------------------------------------------------------------------- */

#define SMALL_LIMIT 64

static void test_size_limit_boundary(void **state)
{
        for (int crlf = 0; crlf <= 1; crlf++) {
                qmp_wire *w = greeted_wire(SMALL_LIMIT, 0);
                for (size_t n = SMALL_LIMIT - 1; n <= SMALL_LIMIT + 1; n++) {
                        char *line = return_line_of_size(n);
                        char *withnl = NULL;
                        assert_true(asprintf(&withnl, "%s%s", line, crlf ? "\r\n" : "\n") > 0);
                        qmp_msg *m = NULL;
                        int r = one(w, withnl, strlen(withnl), &m);
                        if (n <= SMALL_LIMIT) {
                                assert_int_equal(r, 1);
                                assert_int_equal(json_object_get_string_len(m->ret), n - 13);
                        } else
                                assert_int_equal(r, -EMSGSIZE);
                        qmp_msg_free(m);
                        /* And the stream goes on. */
                        assert_int_equal(one_line(w, "{\"return\":1}", NULL), 1);
                        free(line);
                        free(withnl);
                }
                assert_int_equal(qmp_wire_rejected(w), 1);
                qmp_wire_free(w);
        }
}

static void test_size_limit_pending_cr(void **state)
{
        qmp_wire *w = greeted_wire(SMALL_LIMIT, 0);
        char *line = return_line_of_size(SMALL_LIMIT);
        qmp_msg *m = NULL;

        /* limit bytes, then "\r", then "\n": the "\r" was the terminator's. */
        feed_str(w, line);
        assert_int_equal(qmp_wire_buffered(w), SMALL_LIMIT);
        feed_str(w, "\r");
        assert_int_equal(qmp_wire_buffered(w), SMALL_LIMIT + 1);
        assert_int_equal(qmp_wire_next(w, &m), 0);
        assert_int_equal(one(w, "\n", 1, &m), 1);
        assert_int_equal(m->kind, QMP_MSG_RETURN);
        qmp_msg_free(m);

        /* limit bytes, then "\r", then another byte: the "\r" was content, the line too long. */
        feed_str(w, line);
        feed_str(w, "\r");
        feed_str(w, " ");
        assert_int_equal(qmp_wire_buffered(w), 0);
        assert_int_equal(qmp_wire_next(w, &m), -EMSGSIZE);
        assert_int_equal(qmp_wire_next(w, &m), 0);
        /* The rest of that line is dropped up to its newline, then all is normal again. */
        feed_str(w, "{\"return\":3}\n");
        assert_int_equal(qmp_wire_next(w, &m), 0);
        assert_int_equal(one_line(w, " {\"return\":2}", NULL), 1);
        assert_int_equal(qmp_wire_rejected(w), 1);
        free(line);
        qmp_wire_free(w);
}

/* An endless line in small pieces: memory stays bounded, one error, then resynchronisation. */
static void test_oversize_many_feeds(void **state)
{
        const size_t limit = 1024;
        qmp_wire *w = greeted_wire(limit, 0);
        char chunk[100];
        memset(chunk, 'x', sizeof(chunk));
        int errors = 0;
        for (int i = 0; i < 10000; i++) {
                feed(w, chunk, sizeof(chunk));
                assert_true(qmp_wire_buffered(w) <= limit);
                qmp_msg *m = NULL;
                int r = qmp_wire_next(w, &m);
                if (r != 0) {
                        assert_int_equal(r, -EMSGSIZE);
                        errors++;
                }
        }
        assert_int_equal(errors, 1);
        assert_int_equal(qmp_wire_buffered(w), 0);
        feed_str(w, "xxx\n{\"return\": {}, \"id\": 42}\n");
        qmp_msg *m = NULL;
        assert_int_equal(qmp_wire_next(w, &m), 1);
        assert_int_equal(json_object_get_int(m->id), 42);
        qmp_msg_free(m);
        assert_int_equal(qmp_wire_next(w, &m), 0);
        assert_int_equal(qmp_wire_rejected(w), 1);
        qmp_wire_free(w);
}

static void test_oversize_default_limit(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        const size_t chunk_size = 64 * 1024;
        char *chunk = malloc(chunk_size);
        assert_non_null(chunk);
        memset(chunk, 'x', chunk_size);
        size_t fed = 0;
        while (fed <= QMP_WIRE_DEFAULT_MAX_MESSAGE) {
                feed(w, chunk, chunk_size);
                fed += chunk_size;
                assert_true(qmp_wire_buffered(w) <= QMP_WIRE_DEFAULT_MAX_MESSAGE);
        }
        free(chunk);
        assert_int_equal(qmp_wire_buffered(w), 0);
        feed_str(w, "\n{\"return\": 1}\n");
        capture c;
        capture_begin(&c);
        drain(w, c.f);
        char *out = capture_end(&c);
        assert_string_equal(out, "ERR EMSGSIZE\nRETURN id=- ret=1\n");
        free(out);
        qmp_wire_free(w);
}

/* ---- volume: costs must stay linear ------------------------------------------------------- */

/* A big reply (query-qmp-schema's is ~200 KB) in 1-byte and 4 KiB pieces. Rescanning the line
 * from its start on every feed would take ~10^13 steps here (minutes) and trip meson's 30 s
 * timeout. */
static void test_big_message_small_feeds(void **state)
{
        const size_t n = 4 * 1024 * 1024;
        char *line = return_line_of_size(n);
        for (size_t piece = 1; piece <= 4096; piece *= 4096) {
                qmp_wire *w = greeted_wire(0, 0);
                for (size_t off = 0; off < n; off += piece) {
                        size_t k = n - off < piece ? n - off : piece;
                        feed(w, line + off, k);
                        qmp_msg *m = NULL;
                        assert_int_equal(qmp_wire_next(w, &m), 0);
                }
                qmp_msg *m = NULL;
                assert_int_equal(one(w, "\r\n", 2, &m), 1);
                assert_int_equal(json_object_get_string_len(m->ret), n - 13);
                qmp_msg_free(m);
                qmp_wire_free(w);
        }
        free(line);
}

static void test_many_small_messages(void **state)
{
        const int count = 100000;
        size_t n = 0;
        char *all = NULL;
        FILE *f = open_memstream(&all, &n);
        assert_non_null(f);
        for (int i = 0; i < count; i++)
                fprintf(f, "{\"return\": {}, \"id\": %d}\r\n", i);
        assert_int_equal(fclose(f), 0);

        /* 0: all in one feed; 1: one feed per message, read as they come; 2: one feed per
         * message, all read at the end (the buffer only grows, never memmoves per feed). */
        for (int mode = 0; mode <= 2; mode++) {
                qmp_wire *w = greeted_wire(0, 0);
                int seen = 0;
                const char *p = all, *e = all + n;
                while (p < e) {
                        const char *q = mode == 0 ? e : strchr(p, '\n') + 1;
                        feed(w, p, (size_t)(q - p));
                        p = q;
                        if (mode == 2 && p < e)
                                continue;
                        for (;;) {
                                qmp_msg *m = NULL;
                                int r = qmp_wire_next(w, &m);
                                if (r == 0)
                                        break;
                                assert_int_equal(r, 1);
                                assert_int_equal(json_object_get_int(m->id), seen);
                                seen++;
                                qmp_msg_free(m);
                        }
                }
                assert_int_equal(seen, count);
                assert_int_equal(qmp_wire_buffered(w), 0);
                qmp_wire_free(w);
        }
        free(all);
}

/* ---- JSON strictness ---------------------------------------------------------------------- */

static void test_nesting(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        for (size_t depth = 126; depth <= 129; depth++) {
                char *line = nested_line(depth);
                assert_int_equal(one(w, line, strlen(line), NULL),
                                 depth <= QMP_WIRE_DEFAULT_MAX_DEPTH ? 1 : -ELOOP);
                free(line);
        }
        /* Object nesting counts the same as arrays. */
        char obj[1024] = "{\"return\":";
        for (int i = 1; i < 129; i++)
                strcat(obj, "{\"a\":");
        strcat(obj, "1");
        for (int i = 1; i < 129; i++)
                strcat(obj, "}");
        strcat(obj, "}\n");
        assert_int_equal(one(w, obj, strlen(obj), NULL), -ELOOP);

        /* A bomb, closed and unclosed: refused quickly, no crash, stream goes on. */
        const size_t bomb = 100000;
        char *b = build("{\"return\":", '[', bomb, "", ']', bomb, "}\n");
        assert_int_equal(one(w, b, strlen(b), NULL), -ELOOP);
        free(b);
        b = build("{\"return\":", '[', bomb, "", 0, 0, "\n");
        assert_int_equal(one(w, b, strlen(b), NULL), -ELOOP);
        free(b);
        assert_int_equal(one_line(w, "{\"return\":[[[]]]}", NULL), 1);
        qmp_wire_free(w);

        /* A small configured depth. */
        w = greeted_wire(0, 2);
        assert_int_equal(one_line(w, "{\"return\":[1]}", NULL), 1);
        assert_int_equal(one_line(w, "{\"return\":[[1]]}", NULL), -ELOOP);
        assert_int_equal(one_line(w, "{\"return\":{\"a\":1}}", NULL), 1);
        assert_int_equal(one_line(w, "{\"return\":{\"a\":{}}}", NULL), -ELOOP);
        qmp_wire_free(w);

        /* Depth is capped at QEMU's own limit, 1024. */
        w = greeted_wire(0, 100000);
        char *line = nested_line(1024);
        assert_int_equal(one(w, line, strlen(line), NULL), 1);
        free(line);
        line = nested_line(1025);
        assert_int_equal(one(w, line, strlen(line), NULL), -ELOOP);
        free(line);
        qmp_wire_free(w);
}

static void test_invalid_utf8(void **state)
{
        static const char *const bad[] = {
                "\xc0\x80",                 /* overlong NUL */
                "\xc1\xbf",                 /* overlong 2-byte */
                "\xe0\x80\x80",             /* overlong 3-byte */
                "\xe0\x9f\xbf",             /* overlong U+07FF */
                "\xf0\x80\x80\x80",         /* overlong 4-byte */
                "\xf0\x8f\xbf\xbf",         /* overlong U+FFFF */
                "\xed\xa0\x80",             /* surrogate U+D800 */
                "\xed\xbf\xbf",             /* surrogate U+DFFF */
                "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
                "\xf4\x90\x80\x80",         /* U+110000 */
                "\xf5\x80\x80\x80",         /* lead byte beyond Unicode */
                "\xff",
                "\xfe",
                "\x80", /* stray continuation */
                "\xbf",
                "\xc3", /* truncated before the closing quote */
                "\xe2\x82",
                "\xf0\x9f\x98",
                "\xe2\x28\xa1", /* bad continuation */
                "a\xc3(b",
        };
        qmp_wire *w = greeted_wire(0, 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *line = NULL;
                assert_true(asprintf(&line, "{\"return\":\"%s\"}\n", bad[i]) > 0);
                if (one(w, line, strlen(line), NULL) != -EILSEQ)
                        fail_msg("case %zu not refused as EILSEQ", i);
                free(line);
        }
        /* Truncated at the end of the line, and outside a string. */
        assert_int_equal(one_line(w, "{\"return\":\"\xe2\x82", NULL), -EILSEQ);
        assert_int_equal(one_line(w, "{\"return\":1\xff}", NULL), -EILSEQ);
        assert_int_equal(one_line(w, "{\"ret\xc0\x80urn\":1}", NULL), -EILSEQ);

        static const char *const good[] = {
                "\xc2\x80",         /* U+0080 */
                "\xc3\xa9",         /* é */
                "\xe0\xa0\x80",     /* U+0800 */
                "\xe2\x82\xac",     /* € */
                "\xed\x9f\xbf",     /* U+D7FF */
                "\xee\x80\x80",     /* U+E000 */
                "\xef\xbf\xbf",     /* U+FFFF */
                "\xf0\x90\x80\x80", /* U+10000 */
                "\xf0\x9f\x98\x80", /* 😀 */
                "\xf4\x8f\xbf\xbf", /* U+10FFFF */
                "\x7f",
        };
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                char *line = NULL;
                assert_true(asprintf(&line, "{\"return\":\"%s\"}\n", good[i]) > 0);
                qmp_msg *m = NULL;
                assert_int_equal(one(w, line, strlen(line), &m), 1);
                assert_string_equal(json_object_get_string(m->ret), good[i]);
                qmp_msg_free(m);
                free(line);
        }
        assert_int_equal(qmp_wire_rejected(w), sizeof(bad) / sizeof(bad[0]) + 3);
        qmp_wire_free(w);
}

static void test_embedded_nul(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        static const char in_string[] = "{\"return\":\"a\0b\"}\n";
        static const char after[] = "{\"return\":1}\0\n";
        static const char before[] = "\0{\"return\":1}\n";
        static const char alone[] = "\0\n";
        assert_int_equal(one(w, in_string, sizeof(in_string) - 1, NULL), -EBADMSG);
        assert_int_equal(one(w, after, sizeof(after) - 1, NULL), -EBADMSG);
        assert_int_equal(one(w, before, sizeof(before) - 1, NULL), -EBADMSG);
        assert_int_equal(one(w, alone, sizeof(alone) - 1, NULL), -EBADMSG);
        /* An escaped NUL is fine in a value nobody reads as a C string... */
        qmp_msg *m = NULL;
        assert_int_equal(one_line(w, "{\"return\":\"a\\u0000b\"}", &m), 1);
        assert_int_equal(json_object_get_string_len(m->ret), 3);
        qmp_msg_free(m);
        /* ...but not in one handed out as a C string (it would be read short). */
        assert_int_equal(one_line(w, "{\"error\":{\"class\":\"a\\u0000b\",\"desc\":\"\"}}", NULL),
                         -EPROTO);
        qmp_wire_free(w);
}

static void test_not_strict_json(void **state)
{
        static const char *const bad[] = {
                "{\"return\":NaN}",
                "{\"return\":Infinity}",
                "{\"return\":-Infinity}",
                "{\"return\":nan}",
                "{\"return\":1.}",
                "{\"return\":00}",
                "{\"return\":-01}",
                "{\"return\":.5}",
                "{\"return\":+1}",
                "{\"return\":-}",
                "{\"return\":1e}",
                "{\"return\":1e+}",
                "{\"return\":1.5.5}",
                "{\"return\":0x10}",
                "{\"return\":[1,]}",
                "{\"return\":1,}",
                "{'return':1}",
                "{\"return\":'a'}",
                "{return:1}",
                "{\"return\":1}x",
                "{\"return\":1}{\"return\":2}",
                "{\"return\":1} // comment",
                "{/* c */\"return\":1}",
                "{\"return\":\"a\tb\"}",
                "{\"return\":\"\x01\"}",
                "{\"return\":\"\x1f\"}",
                "{\"return\":\"\\x41\"}",
                "{\"return\":\"\\u12\"}",
                "{\"return\":\"\\uZZZZ\"}",
                "{\"return\":tru}",
                "{\"return\":nul}",
                "{\"return\":True}",
                "{\"return\":truex}",
                "{\"return\":\"unterminated}",
                "{\"return\":1",
                "{\"return\" 1}",
                "{\"return\":1]",
                "\f{\"return\":1}",
                "\v{\"return\":1}",
                "{\"return\":1}\f",
                "[]",
                "[{\"return\":1}]",
                "1",
                "\"return\"",
                "null",
                "true",
                "}",
                "]]]]{\"return\":1}",
        };
        qmp_wire *w = greeted_wire(0, 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (one_line(w, bad[i], NULL) != -EBADMSG)
                        fail_msg("accepted or misreported: %s", bad[i]);

        static const char *const good[] = {
                "  {\"return\":1}  ",
                "\t{ \"return\" : [ 1 , 2 ] }\t",
                "{\"return\":-0}",
                "{\"return\":0.0}",
                "{\"return\":1E+5}",
                "{\"return\":-1.5e-3}",
                "{\"return\":\"\\u00e9\\ud83d\\ude00\\/\\\"\\\\\\b\\f\\n\\r\\t\"}",
                "{\"return\":[true,false,null,{}]}",
        };
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                if (one_line(w, good[i], NULL) != 1)
                        fail_msg("refused: %s", good[i]);
        qmp_wire_free(w);
}

static void test_big_integers(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        qmp_msg *m = NULL;
        assert_int_equal(
                one_line(w,
                         "{\"return\":{\"u\":18446744073709551615,\"i\":-9223372036854775808,"
                         "\"m\":9223372036854775807,\"z\":9223372036854775808},"
                         "\"id\":18446744073709551615}",
                         &m),
                1);
        json_object *v;
        assert_true(json_object_object_get_ex(m->ret, "u", &v));
        assert_true(json_object_is_type(v, json_type_int));
        assert_true(json_object_get_uint64(v) == UINT64_MAX);
        assert_true(json_object_object_get_ex(m->ret, "i", &v));
        assert_true(json_object_get_int64(v) == INT64_MIN);
        assert_true(json_object_object_get_ex(m->ret, "m", &v));
        assert_true(json_object_get_int64(v) == INT64_MAX);
        assert_true(json_object_object_get_ex(m->ret, "z", &v));
        assert_true(json_object_get_uint64(v) == (uint64_t)INT64_MAX + 1);
        assert_true(json_object_get_uint64(m->id) == UINT64_MAX);
        /* Serialization gives the same digits back. */
        assert_string_equal(js(m->root),
                            "{\"return\":{\"u\":18446744073709551615,\"i\":-9223372036854775808,"
                            "\"m\":9223372036854775807,\"z\":9223372036854775808},"
                            "\"id\":18446744073709551615}");
        qmp_msg_free(m);

        /* Beyond 64 bits: json-c saturates integers; a huge double becomes inf but keeps its
         * spelling. Accepted, not an error; documented in qmp-wire.c. */
        assert_int_equal(
                one_line(w,
                         "{\"return\":{\"big\":18446744073709551616,\"neg\":-9223372036854775809,"
                         "\"huge\":99999999999999999999999999999999999999999999999999,"
                         "\"d\":1e400,\"nd\":-1e400,\"tiny\":1e-400}}",
                         &m),
                1);
        assert_true(json_object_object_get_ex(m->ret, "big", &v));
        assert_true(json_object_is_type(v, json_type_int));
        assert_true(json_object_get_uint64(v) == UINT64_MAX);
        assert_true(json_object_object_get_ex(m->ret, "neg", &v));
        assert_true(json_object_get_int64(v) == INT64_MIN);
        assert_true(json_object_object_get_ex(m->ret, "huge", &v));
        assert_true(json_object_get_uint64(v) == UINT64_MAX);
        assert_true(json_object_object_get_ex(m->ret, "d", &v));
        assert_true(json_object_is_type(v, json_type_double));
        assert_true(isinf(json_object_get_double(v)) && json_object_get_double(v) > 0);
        assert_string_equal(js(v), "1e400");
        assert_true(json_object_object_get_ex(m->ret, "nd", &v));
        assert_true(isinf(json_object_get_double(v)) && json_object_get_double(v) < 0);
        assert_true(json_object_object_get_ex(m->ret, "tiny", &v));
        assert_true(json_object_get_double(v) == 0.0);
        qmp_msg_free(m);

        /* A thousand digits: no crash. */
        char *line = build("{\"return\":", '9', 1000, "", 0, 0, "}");
        assert_int_equal(one_line(w, line, &m), 1);
        assert_true(json_object_get_uint64(m->ret) == UINT64_MAX);
        qmp_msg_free(m);
        free(line);
        qmp_wire_free(w);
}

/* ---- classification ----------------------------------------------------------------------- */

static void test_not_qmp(void **state)
{
        static const char *const bad[] = {
                "{}",
                "{\"x\":1}",
                "{\"Return\":1}",
                "{\"return\":1,\"error\":{}}",
                "{\"return\":1,\"event\":\"X\"}",
                "{\"QMP\":{},\"event\":\"X\"}",
                "{\"QMP\":{},\"return\":1}",
                "{\"error\":{},\"event\":\"X\"}",
                "{\"QMP\":{},\"return\":1,\"error\":{},\"event\":\"X\"}",
                /* greeting */
                "{\"QMP\":1}",
                "{\"QMP\":null}",
                "{\"QMP\":[]}",
                "{\"QMP\":{\"version\":[]}}",
                "{\"QMP\":{\"version\":null}}",
                "{\"QMP\":{\"version\":{\"qemu\":1}}}",
                "{\"QMP\":{\"version\":{\"qemu\":{\"major\":\"7\"}}}}",
                "{\"QMP\":{\"version\":{\"qemu\":{\"major\":7.0}}}}",
                "{\"QMP\":{\"version\":{\"qemu\":{\"major\":null}}}}",
                "{\"QMP\":{\"version\":{\"qemu\":{\"minor\":-1}}}}",
                "{\"QMP\":{\"version\":{\"qemu\":{\"micro\":2147483648}}}}",
                "{\"QMP\":{\"version\":{\"qemu\":{\"major\":18446744073709551615}}}}",
                "{\"QMP\":{\"version\":{\"package\":5}}}",
                "{\"QMP\":{\"version\":{\"package\":\"a\\u0000b\"}}}",
                "{\"QMP\":{\"capabilities\":\"oob\"}}",
                "{\"QMP\":{\"capabilities\":{}}}",
                "{\"QMP\":{\"capabilities\":null}}",
                "{\"QMP\":{\"capabilities\":[\"oob\",1]}}",
                "{\"QMP\":{\"capabilities\":[null]}}",
                "{\"QMP\":{\"capabilities\":[[\"oob\"]]}}",
                /* error */
                "{\"error\":\"boom\"}",
                "{\"error\":null}",
                "{\"error\":[]}",
                "{\"error\":{\"class\":1,\"desc\":\"d\"}}",
                "{\"error\":{\"class\":\"c\",\"desc\":null}}",
                "{\"error\":{\"class\":\"c\",\"desc\":{}}}",
                "{\"error\":{\"class\":\"a\\u0000b\",\"desc\":\"d\"}}",
                /* event */
                "{\"event\":1}",
                "{\"event\":null}",
                "{\"event\":{}}",
                "{\"event\":\"A\\u0000B\"}",
                "{\"event\":\"X\",\"data\":[]}",
                "{\"event\":\"X\",\"data\":null}",
                "{\"event\":\"X\",\"data\":\"s\"}",
        };
        qmp_wire *w = greeted_wire(0, 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (one_line(w, bad[i], NULL) != -EPROTO)
                        fail_msg("not refused as EPROTO: %s", bad[i]);
        assert_int_equal(qmp_wire_rejected(w), sizeof(bad) / sizeof(bad[0]));
        qmp_wire_free(w);
}

static void test_defaults_and_extras(void **state)
{
        qmp_wire *w = greeted_wire(0, 0);
        capture c;
        capture_begin(&c);
        feed_str(w, "{\"error\":{}}\n"
                    "{\"error\":{\"class\":\"GenericError\",\"extra\":1},\"id\":\"a\"}\n"
                    "{\"error\":{\"desc\":\"no class\"},\"id\":null}\n"
                    "{\"return\":null}\n"
                    "{\"return\":[1,\"two\"],\"id\":{\"n\":[1]},\"extra\":true}\n"
                    "{\"event\":\"X\",\"id\":5}\n"
                    "{\"event\":\"\",\"data\":{}}\n");
        drain(w, c.f);
        char *out = capture_end(&c);
        assert_string_equal(out, "ERROR id=- class= desc=\n"
                                 "ERROR id=\"a\" class=GenericError desc=\n"
                                 "ERROR id=- class= desc=no class\n"
                                 "RETURN id=- ret=null\n"
                                 "RETURN id={\"n\":[1]} ret=[1,\"two\"]\n"
                                 "EVENT X data=- ts=0\n"
                                 "EVENT  data={} ts=0\n");
        free(out);

        /* Fields a kind does not have stay zeroed. */
        qmp_msg *m = NULL;
        assert_int_equal(one_line(w, "{\"event\":\"X\",\"id\":5,\"return\":1}", NULL), -EPROTO);
        assert_int_equal(one_line(w, "{\"event\":\"X\",\"id\":5}", &m), 1);
        assert_null(m->id);
        assert_null(m->ret);
        assert_null(m->error_class);
        assert_null(m->capabilities);
        qmp_msg_free(m);
        assert_int_equal(one_line(w, "{\"error\":{}}", &m), 1);
        assert_non_null(m->error_class);
        assert_non_null(m->error_desc);
        assert_null(m->event);
        qmp_msg_free(m);
        qmp_wire_free(w);
}

static void test_greeting_fields(void **state)
{
        static const struct {
                const char *line, *expected;
        } cases[] = {
                {"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
                 "\"package\": \"Debian 1:7.2+dfsg-7+deb12u7\"}, \"capabilities\": [\"oob\"]}}",
                 "GREETING 7.2.0 package=Debian 1:7.2+dfsg-7+deb12u7 caps=[\"oob\"]\n"},
                {"{\"QMP\":{}}", "GREETING -1.-1.-1 package= caps=-\n"},
                {"{\"QMP\":{\"capabilities\":[]}}", "GREETING -1.-1.-1 package= caps=[]\n"},
                {"{\"QMP\":{\"version\":{}}}", "GREETING -1.-1.-1 package= caps=-\n"},
                {"{\"QMP\":{\"version\":{\"qemu\":{\"major\":9}}}}",
                 "GREETING 9.-1.-1 package= caps=-\n"},
                {"{\"QMP\":{\"version\":{\"qemu\":{\"major\":0,\"minor\":2147483647,"
                 "\"micro\":3},\"future\":[]},\"capabilities\":[\"oob\",\"x-new\"],\"more\":1}}",
                 "GREETING 0.2147483647.3 package= caps=[\"oob\",\"x-new\"]\n"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                qmp_wire *w = qmp_wire_new(0, 0);
                assert_non_null(w);
                capture c;
                capture_begin(&c);
                feed_str(w, cases[i].line);
                feed_str(w, "\n");
                drain(w, c.f);
                char *out = capture_end(&c);
                assert_string_equal(out, cases[i].expected);
                free(out);
                assert_true(qmp_wire_greeted(w));
                qmp_wire_free(w);
        }
}

static void test_event_timestamps(void **state)
{
        static const struct {
                const char *ts;
                uint64_t usec;
        } cases[] = {
                {"{\"seconds\":1700000000,\"microseconds\":123456}", UINT64_C(1700000000123456)},
                {"{\"seconds\":1,\"microseconds\":2}", UINT64_C(1000002)},
                {"{\"seconds\":0,\"microseconds\":999999}", UINT64_C(999999)},
                {"{\"seconds\":18446744073709,\"microseconds\":551615}", UINT64_MAX},
                {"{\"seconds\":18446744073709,\"microseconds\":551616}", 0},
                {"{\"seconds\":18446744073709551615,\"microseconds\":0}", 0},
                {"{\"seconds\":-1,\"microseconds\":-1}", 0},
                {"{\"seconds\":1,\"microseconds\":-1}", 0},
                {"{\"seconds\":-1,\"microseconds\":1}", 0},
                {"{\"seconds\":1,\"microseconds\":1000000}", 0},
                {"{\"seconds\":1}", 0},
                {"{\"microseconds\":1}", 0},
                {"{\"seconds\":\"1\",\"microseconds\":2}", 0},
                {"{\"seconds\":1.5,\"microseconds\":2}", 0},
                {"{\"seconds\":1,\"microseconds\":null}", 0},
                {"5", 0},
                {"null", 0},
                {"[1,2]", 0},
        };
        qmp_wire *w = greeted_wire(0, 0);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *line = NULL;
                assert_true(asprintf(&line, "{\"event\":\"STOP\",\"timestamp\":%s}", cases[i].ts) >
                            0);
                qmp_msg *m = NULL;
                assert_int_equal(one_line(w, line, &m), 1);
                assert_int_equal(m->kind, QMP_MSG_EVENT);
                assert_string_equal(m->event, "STOP");
                if (m->timestamp_usec != cases[i].usec)
                        fail_msg("%s: got %" PRIu64, cases[i].ts, m->timestamp_usec);
                qmp_msg_free(m);
                free(line);
        }
        assert_int_equal(qmp_wire_rejected(w), 0);
        qmp_wire_free(w);
}

/* ---- commands ------------------------------------------------------------------------------- */

static json_object *parse(const char *text)
{
        json_object *o = NULL;
        assert_int_equal(qmp_json_parse(text, strlen(text), 0, &o), 0);
        return o;
}

static void test_format_command(void **state)
{
        char *buf = NULL;
        size_t len = 0;
        json_object *id = json_object_new_int(1);

        assert_int_equal(qmp_wire_format_command("qmp_capabilities", NULL, id, &buf, &len), 0);
        assert_string_equal(buf, "{\"execute\":\"qmp_capabilities\",\"id\":1}\n");
        assert_int_equal(len, strlen(buf));
        free(buf);

        json_object *args = parse("{\"enable\": [\"oob\"], \"path\": \"/dev/fdset/1\", "
                                  "\"n\": 18446744073709551615, \"s\": \"\xc3\xa9\"}");
        json_object *sid = json_object_new_string("qdm-7");
        assert_int_equal(qmp_wire_format_command("x-debug.cmd_1", args, sid, &buf, &len), 0);
        assert_string_equal(buf, "{\"execute\":\"x-debug.cmd_1\",\"arguments\":{\"enable\":"
                                 "[\"oob\"],\"path\":\"/dev/fdset/1\",\"n\":18446744073709551615,"
                                 "\"s\":\"\xc3\xa9\"},\"id\":\"qdm-7\"}\n");
        assert_int_equal(len, strlen(buf));
        /* Neither argument was consumed, and the output is strict JSON. */
        assert_int_equal(json_object_get_type(args), json_type_object);
        json_object *back = NULL;
        assert_int_equal(qmp_json_parse(buf, len, 0, &back), 0);
        assert_true(json_object_equal(json_object_object_get(back, "arguments"), args));
        json_object_put(back);
        free(buf);

        assert_int_equal(qmp_wire_format_command("__com.redhat_drive-add", NULL, id, &buf, &len),
                         0);
        free(buf);

        /* Invalid input: -EINVAL, out-parameters untouched. */
        static const char *const bad_names[] = {"",     "query status", "a;b", "q\"",
                                                "a\nb", "\xc3\xa9",     "a/b", "a:b"};
        buf = (char *)0x1;
        len = 77;
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
                assert_int_equal(qmp_wire_format_command(bad_names[i], NULL, id, &buf, &len),
                                 -EINVAL);
        assert_int_equal(qmp_wire_format_command(NULL, NULL, id, &buf, &len), -EINVAL);
        assert_int_equal(qmp_wire_format_command("cont", NULL, NULL, &buf, &len), -EINVAL);
        assert_int_equal(qmp_wire_format_command("cont", NULL, id, NULL, &len), -EINVAL);
        assert_int_equal(qmp_wire_format_command("cont", NULL, id, &buf, NULL), -EINVAL);
        json_object *arr = parse("[1]"), *str = parse("\"s\"");
        assert_int_equal(qmp_wire_format_command("cont", arr, id, &buf, &len), -EINVAL);
        assert_int_equal(qmp_wire_format_command("cont", str, id, &buf, &len), -EINVAL);
        json_object_put(arr);
        json_object_put(str);

        /* Values QEMU could not parse (so it could not answer with our id). */
        json_object *nan_args = json_object_new_object();
        json_object_object_add(nan_args, "x", json_object_new_double(NAN));
        assert_int_equal(qmp_wire_format_command("cont", nan_args, id, &buf, &len), -EINVAL);
        json_object_object_add(nan_args, "x", json_object_new_double(INFINITY));
        assert_int_equal(qmp_wire_format_command("cont", nan_args, id, &buf, &len), -EINVAL);
        json_object_put(nan_args);
        json_object *bad_utf8 = json_object_new_object();
        json_object_object_add(bad_utf8, "x", json_object_new_string("\xc0\x80"));
        assert_int_equal(qmp_wire_format_command("cont", bad_utf8, id, &buf, &len), -EINVAL);
        json_object_put(bad_utf8);
        json_object *nan_id = json_object_new_double(NAN);
        assert_int_equal(qmp_wire_format_command("cont", NULL, nan_id, &buf, &len), -EINVAL);
        json_object_put(nan_id);
        assert_ptr_equal(buf, (char *)0x1);
        assert_int_equal(len, 77);

        /* A finite double and a control character are written in a form QEMU reads. */
        json_object *ok = json_object_new_object();
        json_object_object_add(ok, "d", json_object_new_double(0.5));
        json_object_object_add(ok, "c", json_object_new_string("a\tb\x01"));
        assert_int_equal(qmp_wire_format_command("cont", ok, id, &buf, &len), 0);
        assert_string_equal(
                buf, "{\"execute\":\"cont\",\"arguments\":{\"d\":0.5,\"c\":\"a\\tb\\u0001\"},"
                     "\"id\":1}\n");
        free(buf);
        json_object_put(ok);

        json_object_put(args);
        json_object_put(sid);
        json_object_put(id);
}

static void test_json_parse(void **state)
{
        json_object *o = (json_object *)0x1;
        assert_int_equal(qmp_json_parse("1", 1, 0, &o), 0);
        assert_int_equal(json_object_get_int(o), 1);
        json_object_put(o);
        assert_int_equal(qmp_json_parse(" -12.5e1 ", 9, 0, &o), 0);
        assert_true(json_object_get_double(o) == -125.0);
        json_object_put(o);
        assert_int_equal(qmp_json_parse("true", 4, 0, &o), 0);
        assert_true(json_object_get_boolean(o));
        json_object_put(o);
        o = (json_object *)0x1;
        assert_int_equal(qmp_json_parse("null", 4, 0, &o), 0);
        assert_null(o); /* json-c's JSON null */
        assert_int_equal(qmp_json_parse(" [1, {\"a\": \"b\"}]\n", 17, 0, &o), 0);
        assert_string_equal(js(o), "[1,{\"a\":\"b\"}]");
        json_object_put(o);
        /* Only len bytes are read. */
        assert_int_equal(qmp_json_parse("{}garbage", 2, 0, &o), 0);
        json_object_put(o);

        o = (json_object *)0x1;
        assert_int_equal(qmp_json_parse("", 0, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("   ", 3, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("{}x", 3, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("1 2", 3, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("{", 1, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("{}\0", 3, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("\"a\0b\"", 5, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("[1]\n[2]", 7, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("NaN", 3, 0, &o), -EBADMSG);
        assert_int_equal(qmp_json_parse("\"\xed\xa0\x80\"", 5, 0, &o), -EILSEQ);
        assert_int_equal(qmp_json_parse("[[1]]", 5, 1, &o), -ELOOP);
        assert_int_equal(qmp_json_parse("[[1]]", 5, 2, &o), 0);
        json_object_put(o);
        o = (json_object *)0x1;
        assert_int_equal(qmp_json_parse("{}", (size_t)INT_MAX + 1, 0, &o), -EMSGSIZE);
        assert_int_equal(qmp_json_parse(NULL, 0, 0, &o), -EINVAL);
        assert_int_equal(qmp_json_parse("{}", 2, 0, NULL), -EINVAL);
        assert_ptr_equal(o, (json_object *)0x1);
}

static void test_api_misuse(void **state)
{
        assert_null(qmp_wire_free(NULL));
        qmp_msg_free(NULL);
        qmp_wire *w = qmp_wire_new(0, 0);
        assert_non_null(w);
        qmp_msg *m = NULL;
        assert_int_equal(qmp_wire_feed(NULL, "x", 1), -EINVAL);
        assert_int_equal(qmp_wire_feed(w, NULL, 1), -EINVAL);
        assert_int_equal(qmp_wire_feed(w, NULL, 0), 0);
        assert_int_equal(qmp_wire_next(NULL, &m), -EINVAL);
        assert_int_equal(qmp_wire_next(w, NULL), -EINVAL);
        assert_int_equal(qmp_wire_next(w, &m), 0);
        assert_false(qmp_wire_greeted(NULL));
        assert_int_equal(qmp_wire_skipped(NULL), 0);
        assert_int_equal(qmp_wire_rejected(NULL), 0);
        assert_int_equal(qmp_wire_buffered(NULL), 0);
        assert_null(qmp_wire_free(w));

        /* Limits out of range are clamped, not refused. */
        w = qmp_wire_new(SIZE_MAX, -5);
        assert_non_null(w);
        feed_str(w, greeting);
        assert_int_equal(qmp_wire_next(w, &m), 1);
        qmp_msg_free(m);
        qmp_wire_free(w);

        /* A limit of one byte: no greeting fits, so everything is skipped. */
        w = qmp_wire_new(1, 0);
        assert_non_null(w);
        feed_str(w, greeting);
        feed_str(w, "{}\nx\n");
        assert_int_equal(qmp_wire_next(w, &m), 0);
        assert_false(qmp_wire_greeted(w));
        assert_int_equal(qmp_wire_skipped(w), 3);
        qmp_wire_free(w);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transcript_one_feed),
                cmocka_unit_test(test_transcript_every_split),
                cmocka_unit_test(test_transcript_byte_by_byte),
                cmocka_unit_test(test_transcript_random_chunks),
                cmocka_unit_test(test_crlf_and_lf),
                cmocka_unit_test(test_pre_greeting_skipped),
                cmocka_unit_test(test_errors_then_resync),
                cmocka_unit_test(test_stale_reply_and_second_greeting),
                cmocka_unit_test(test_size_limit_boundary),
                cmocka_unit_test(test_size_limit_pending_cr),
                cmocka_unit_test(test_oversize_many_feeds),
                cmocka_unit_test(test_oversize_default_limit),
                cmocka_unit_test(test_big_message_small_feeds),
                cmocka_unit_test(test_many_small_messages),
                cmocka_unit_test(test_nesting),
                cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_embedded_nul),
                cmocka_unit_test(test_not_strict_json),
                cmocka_unit_test(test_big_integers),
                cmocka_unit_test(test_not_qmp),
                cmocka_unit_test(test_defaults_and_extras),
                cmocka_unit_test(test_greeting_fields),
                cmocka_unit_test(test_event_timestamps),
                cmocka_unit_test(test_format_command),
                cmocka_unit_test(test_json_parse),
                cmocka_unit_test(test_api_misuse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
