/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the QMP wire layer (src/lib/qmp-wire.c): what QEMU sends is untrusted, so
 * every byte sequence must be framed, parsed and classified without a crash, a leak, unbounded
 * buffering, or an answer that depends on how the bytes were split.
 *
 * Input: byte 0 picks the line limit (< 0x80: the default, else 1..509 bytes), byte 1 the chunk
 * size (bits 0-4: 1..32 bytes), the nesting limit (bits 5-6) and whether to read between feeds
 * (bit 7 clear). The rest is the byte stream from "QEMU".
 *
 * Checked, with abort() on violation: the stream gives the same results fed whole and fed in
 * chunks; no more than limit + 1 bytes of a line are held; every message has the fields its kind
 * promises; whatever is accepted serializes back to JSON that qmp_json_parse accepts and finds
 * equal, and can be sent back as a command's arguments.
 *
 * Built without QDM_LIBFUZZER this is a replay tool: every file named on the command line (or
 * found in a directory named there) is run once. The unit tests run it over fuzz/corpus/.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qmp-wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

#define FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* What a run yielded, folded into a hash (FNV-1a) so two runs compare cheaply. */
typedef struct outcome {
        uint64_t hash;
        uint64_t results;
} outcome;

static void fold(outcome *o, const void *p, size_t n)
{
        const unsigned char *s = p;
        for (size_t i = 0; i < n; i++) {
                o->hash ^= s[i];
                o->hash *= UINT64_C(0x100000001b3);
        }
}

static void check_reparse(json_object *obj, int max_depth)
{
        size_t n = 0;
        const char *s = json_object_to_json_string_length(obj, FLAGS, &n);
        CHECK(s);
        json_object *back = NULL;
        CHECK(qmp_json_parse(s, n, max_depth, &back) == 0);
        CHECK(json_object_equal(back, obj));
        json_object_put(back);
}

/* A reply's object can be sent back as a command's arguments. */
static void check_as_arguments(json_object *args, int max_depth)
{
        json_object *id = json_object_new_int(1);
        CHECK(id);
        char *buf = NULL;
        size_t len = 0;
        CHECK(qmp_wire_format_command("fuzz-cmd", args, id, &buf, &len) == 0);
        /* One line, ended by a bare '\n' (qmp-wire.c: QEMU reads commands byte by byte). */
        CHECK(len >= 2 && buf[len - 2] != '\r' && buf[len - 1] == '\n');
        CHECK(memchr(buf, '\n', len - 1) == NULL);
        json_object *cmd = NULL;
        /* The arguments sit as deep in the command as they did in the reply. */
        CHECK(qmp_json_parse(buf, len - 1, max_depth, &cmd) == 0);
        json_object *back = NULL;
        CHECK(json_object_object_get_ex(cmd, "arguments", &back));
        CHECK(json_object_equal(back, args));
        json_object_put(cmd);
        json_object_put(id);
        free(buf);
}

static void check_msg(const qmp_msg *m, int max_depth)
{
        CHECK(json_object_is_type(m->root, json_type_object));
        switch (m->kind) {
        case QMP_MSG_GREETING:
                CHECK(m->package);
                CHECK(m->version_major >= -1 && m->version_minor >= -1 && m->version_micro >= -1);
                CHECK(!m->capabilities || json_object_is_type(m->capabilities, json_type_array));
                break;
        case QMP_MSG_RETURN:
                if (json_object_is_type(m->ret, json_type_object))
                        check_as_arguments(m->ret, max_depth);
                break;
        case QMP_MSG_ERROR:
                CHECK(m->error_class && m->error_desc);
                break;
        case QMP_MSG_EVENT:
                CHECK(m->event);
                CHECK(!m->data || json_object_is_type(m->data, json_type_object));
                break;
        default:
                CHECK(!"unknown kind");
        }
        check_reparse(m->root, max_depth);
}

static void drain(qmp_wire *w, outcome *o, int max_depth)
{
        for (;;) {
                qmp_msg *m = NULL;
                int r = qmp_wire_next(w, &m);
                if (r == 0)
                        return;
                CHECK(r == 1 || r == -EMSGSIZE || r == -ELOOP || r == -EILSEQ || r == -EBADMSG ||
                      r == -EPROTO);
                CHECK((r == 1) == (m != NULL));
                o->results++;
                fold(o, &r, sizeof(r));
                if (m) {
                        check_msg(m, max_depth);
                        fold(o, &m->kind, sizeof(m->kind));
                        fold(o, &m->timestamp_usec, sizeof(m->timestamp_usec));
                        const char *s = json_object_to_json_string_ext(m->root, FLAGS);
                        fold(o, s, strlen(s));
                        qmp_msg_free(m);
                }
        }
}

/* max_depth as given to qmp_wire_new (0 and values above the cap included); checks use the
 * depth the wire really applies. */
static outcome run(const uint8_t *data, size_t size, size_t limit, int max_depth, size_t chunk,
                   bool read_between)
{
        int applied =
                max_depth == 0 ? QMP_WIRE_DEFAULT_MAX_DEPTH : (max_depth > 1024 ? 1024 : max_depth);
        outcome o = {.hash = UINT64_C(0xcbf29ce484222325)};
        qmp_wire *w = qmp_wire_new(limit, max_depth);
        CHECK(w);
        size_t effective = limit ? limit : QMP_WIRE_DEFAULT_MAX_MESSAGE;
        for (size_t off = 0; off < size; off += chunk) {
                size_t k = size - off < chunk ? size - off : chunk;
                CHECK(qmp_wire_feed(w, data + off, k) == 0);
                CHECK(qmp_wire_buffered(w) <= effective + 1);
                if (read_between)
                        drain(w, &o, applied);
        }
        drain(w, &o, applied);
        CHECK(qmp_wire_rejected(w) <= o.results);
        uint64_t tail[3] = {qmp_wire_skipped(w), qmp_wire_rejected(w), qmp_wire_greeted(w)};
        fold(&o, tail, sizeof(tail));
        qmp_wire_free(w);
        return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const int depths[] = {0, 1, 4, 2000};

        if (size < 2)
                return 0;
        size_t limit = data[0] < 0x80 ? 0 : (size_t)(data[0] & 0x7f) * 4 + 1;
        size_t chunk = (size_t)(data[1] & 0x1f) + 1;
        int max_depth = depths[(data[1] >> 5) & 3];
        bool read_between = !(data[1] & 0x80);
        data += 2;
        size -= 2;

        outcome whole = run(data, size, limit, max_depth, size ? size : 1, true);
        outcome split = run(data, size, limit, max_depth, chunk, read_between);
        CHECK(whole.results == split.results);
        CHECK(whole.hash == split.hash);

        /* The same bytes as one JSON text. */
        json_object *obj = NULL;
        if (qmp_json_parse((const char *)data, size, max_depth, &obj) == 0) {
                check_reparse(obj, max_depth);
                json_object_put(obj);
        }
        return 0;
}
