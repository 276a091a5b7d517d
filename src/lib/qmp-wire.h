/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-wire: QMP without I/O. Bytes go in (qmp_wire_feed), whole validated and classified
 * messages come out (qmp_wire_next); commands become bytes (qmp_wire_format_command).
 *
 * It owns framing (CRLF or LF terminated lines), the per-message size limit, the JSON nesting
 * limit, strict UTF-8, and classification. It never touches a socket, a clock or a callback,
 * so it can be fuzzed and tested at every byte split. Everything QEMU sends is untrusted: any
 * field may be missing or of the wrong type; such a message is reported as an error and the
 * stream goes on with the next line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define QMP_WIRE_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)
#define QMP_WIRE_DEFAULT_MAX_DEPTH   128

typedef enum qmp_msg_kind {
        QMP_MSG_GREETING, /* {"QMP": {"version": ..., "capabilities": [...]}} */
        QMP_MSG_RETURN,   /* {"return": ANY, "id": ANY?} */
        QMP_MSG_ERROR,    /* {"error": {"class": STR, "desc": STR}, "id": ANY?} */
        QMP_MSG_EVENT,    /* {"event": STR, "data": OBJ?, "timestamp": {...}} */
} qmp_msg_kind;

typedef struct qmp_msg {
        qmp_msg_kind kind;
        json_object *root; /* the whole message; owned (freed by qmp_msg_free) */

        /* RETURN and ERROR: the "id" member if present (borrowed from root), else NULL. */
        json_object *id;

        /* RETURN: the "return" value (borrowed; any JSON type). */
        json_object *ret;

        /* ERROR: borrowed strings; both always non-NULL for an ERROR ("" if QEMU sent none). */
        const char *error_class;
        const char *error_desc;

        /* EVENT: name (non-NULL), data (borrowed object or NULL), timestamp (0 if absent/bad). */
        const char *event;
        json_object *data;
        uint64_t timestamp_usec; /* seconds * 1e6 + microseconds, wall clock as QEMU sent it */

        /* GREETING: version numbers (-1 when absent), package string (borrowed, "" if absent),
         * and the offered capabilities (borrowed array of strings, or NULL). */
        int version_major, version_minor, version_micro;
        const char *package;
        json_object *capabilities;
} qmp_msg;

typedef struct qmp_wire qmp_wire;

/* Limits: max_message in bytes per line (0 = default 16 MiB), max_depth of JSON nesting
 * (0 = default 128). Returns NULL only on allocation failure. */
qmp_wire *qmp_wire_new(size_t max_message, int max_depth);
qmp_wire *qmp_wire_free(qmp_wire *w);

/* Append bytes read from the peer. Never fails except -ENOMEM. Bytes are only buffered up to
 * the current line's limit: an over-long line is discarded as it arrives (bounded memory). */
int qmp_wire_feed(qmp_wire *w, const void *data, size_t size);

/*
 * Take the next complete message.
 *   1   *ret_msg is set (caller frees with qmp_msg_free)
 *   0   need more bytes
 *  <0   one line was rejected; call again to continue with the following line:
 *       -EMSGSIZE   longer than max_message (the rest of it up to the newline is skipped)
 *       -ELOOP      JSON nesting deeper than max_depth
 *       -EILSEQ     invalid UTF-8
 *       -EBADMSG    not JSON, trailing garbage, or not a JSON object
 *       -EPROTO     valid JSON object but not a QMP message (missing/mistyped fields)
 *
 * Until a greeting has been seen, every line that is not a valid greeting (including valid
 * replies and events: a stale reply meant for an earlier client) is skipped and counted in
 * qmp_wire_skipped(), never returned and never an error. Blank lines are ignored always.
 */
int qmp_wire_next(qmp_wire *w, qmp_msg **ret_msg);

bool qmp_wire_greeted(const qmp_wire *w);
uint64_t qmp_wire_skipped(const qmp_wire *w);  /* lines skipped before the greeting */
uint64_t qmp_wire_rejected(const qmp_wire *w); /* lines reported as errors by qmp_wire_next */
size_t qmp_wire_buffered(const qmp_wire *w);   /* bytes held waiting for a newline */

void qmp_msg_free(qmp_msg *m);

/*
 * Serialize {"execute": command, "arguments": args, "id": id} followed by "\n".
 * args may be NULL (no "arguments" member) and must otherwise be a JSON object; id must be
 * non-NULL. Neither is consumed. Returns 0 and a malloc'd buffer + length, or -EINVAL/-ENOMEM.
 */
int qmp_wire_format_command(const char *command, json_object *args, json_object *id, char **ret_buf,
                            size_t *ret_len);

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), which
 * json-c 0.16 does not enforce. Returns n if all of text is valid, else the offset of the
 * first byte that is not. */
size_t qmp_utf8_check(const char *text, size_t n);

/* Parse a JSON text strictly with the same limits (used for caller-supplied arguments).
 * Returns 0 and a new reference, or the same negative errors as qmp_wire_next. */
int qmp_json_parse(const char *text, size_t len, int max_depth, json_object **ret);
