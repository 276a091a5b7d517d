/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-wire: QMP without I/O (see qmp-wire.h for the contract).
 *
 * Owns: the line framer and its buffer, the per-line size limit, a strict JSON pre-scan (UTF-8,
 * number grammar, control characters, nesting) in front of json-c, the classification of each
 * message with every field type-checked, the greeting gate, and command serialization.
 * Never: touches an fd, a clock or a global; calls back; prints; trusts a byte QEMU sent.
 *
 * Why a pre-scan in front of json-c 0.16: even with JSON_TOKENER_STRICT | VALIDATE_UTF8 it
 * accepts overlong UTF-8, UTF-16 surrogates and code points above U+10FFFF, raw control
 * characters in strings, NaN/Infinity, and numbers such as "1." or "00". One linear pass over the
 * line rejects all of these before json-c builds a single object.
 *
 * Numbers: integers are exact over [INT64_MIN, UINT64_MAX] (json-c keeps values above INT64_MAX
 * as uint64). Integers beyond that range saturate to INT64_MIN / UINT64_MAX, and a double beyond
 * the range of double becomes +-inf (json-c keeps its original spelling for re-serialization);
 * none of this is an error. Clients should therefore use ids that fit in 64 bits (or strings).
 *
 * Limits: max_message counts the bytes of one line without its terminator ("\n" or "\r\n").
 * While a line is incomplete at most max_message + 1 bytes of it are held (a final "\r" may yet
 * turn out to be half of the terminator). max_depth counts nested objects and arrays, the
 * message's own object included; it is capped at 1024, QEMU's own limit (MAX_NESTING in
 * qobject/json-streamer.c), which also keeps json-c's recursive free and serializer safe.
 * max_message is capped at INT_MAX (json-c takes an int length).
 *
 * Where the header leaves room: -EMSGSIZE comes as soon as a line is known to be too long, before
 * its newline has arrived. A line of only spaces, tabs and "\r" is blank. A member that is JSON
 * null reads as a NULL pointer (json-c's null): {"return": null} gives ret == NULL, and an
 * "id": null is indistinguishable from no id, which is fine as we never send a null id.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "qmp-wire.h"
#include "util.h"

/* QEMU's parser refuses deeper input, and json-c frees and serializes recursively. */
#define QMP_WIRE_MAX_DEPTH_CEILING 1024
/* After a large message has been drained, a buffer bigger than this is given back. */
#define QMP_WIRE_KEEP_CAPACITY (1024u * 1024u)
#define QMP_WIRE_MIN_CAPACITY  4096u

struct qmp_wire {
        json_tokener *tok; /* reused for every line: json_tokener_reset() is cheap */
        size_t max_message;
        int max_depth;

        /*
         * buf[start, line_start) holds whole lines, each ending in "\n"; buf[line_start, end)
         * is the incomplete line being received. An empty stored line ("\n" alone) marks a line
         * that was too long and has been dropped: real blank lines are never stored, so the
         * marker cannot be forged by the peer.
         */
        char *buf;
        size_t cap, start, line_start, end;
        bool discarding; /* dropping the rest of an over-long line up to its "\n" */

        bool greeted;
        uint64_t skipped, rejected;
};

static int clamp_depth(int max_depth)
{
        if (max_depth <= 0)
                return QMP_WIRE_DEFAULT_MAX_DEPTH;
        if (max_depth > QMP_WIRE_MAX_DEPTH_CEILING)
                return QMP_WIRE_MAX_DEPTH_CEILING;
        return max_depth;
}

/* json-c counts a scalar inside the innermost container as one more level, and an empty
 * container as none; json_text_check() enforces max_depth exactly, json-c's own limit is set
 * one above it as a backstop. */
static json_tokener *tokener_new(int max_depth)
{
        json_tokener *tok = json_tokener_new_ex(max_depth + 1);
        if (tok)
                json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        return tok;
}

qmp_wire *qmp_wire_new(size_t max_message, int max_depth)
{
        qmp_wire *w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;

        /* json-c takes an int length. */
        if (max_message == 0)
                max_message = QMP_WIRE_DEFAULT_MAX_MESSAGE;
        if (max_message > (size_t)INT_MAX)
                max_message = (size_t)INT_MAX;
        w->max_message = max_message;
        w->max_depth = clamp_depth(max_depth);

        w->tok = tokener_new(w->max_depth);
        if (!w->tok) {
                free(w);
                return NULL;
        }
        return w;
}

qmp_wire *qmp_wire_free(qmp_wire *w)
{
        if (!w)
                return NULL;
        json_tokener_free(w->tok);
        free(w->buf);
        free(w);
        return NULL;
}

bool qmp_wire_greeted(const qmp_wire *w)
{
        assert_return(w, false);
        return w->greeted;
}

uint64_t qmp_wire_skipped(const qmp_wire *w)
{
        assert_return(w, 0);
        return w->skipped;
}

uint64_t qmp_wire_rejected(const qmp_wire *w)
{
        assert_return(w, 0);
        return w->rejected;
}

size_t qmp_wire_buffered(const qmp_wire *w)
{
        assert_return(w, 0);
        return w->end - w->line_start;
}

void qmp_msg_free(qmp_msg *m)
{
        if (!m)
                return;
        json_object_put(m->root);
        free(m);
}

/* ---- framing ------------------------------------------------------------------------------ */

/*
 * Make room for n more bytes at the end. Consumed bytes at the front are reclaimed only when
 * they are at least as many as the live ones, so each byte is moved O(1) times on average
 * however the caller interleaves feeds and reads.
 */
static int buffer_reserve(qmp_wire *w, size_t n)
{
        if (w->cap - w->end >= n)
                return 0;

        size_t live = w->end - w->start;
        if (w->start > 0 && w->start >= live) {
                memmove(w->buf, w->buf + w->start, live);
                w->line_start -= w->start;
                w->end -= w->start;
                w->start = 0;
                if (w->cap - w->end >= n)
                        return 0;
        }

        if (n > SIZE_MAX / 2 - live)
                return -ENOMEM;
        size_t cap = w->cap > QMP_WIRE_MIN_CAPACITY ? w->cap : QMP_WIRE_MIN_CAPACITY;
        while (cap < live + n)
                cap *= 2;

        char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        if (live > 0)
                memcpy(buf, w->buf + w->start, live);
        free(w->buf);
        w->buf = buf;
        w->cap = cap;
        w->line_start -= w->start;
        w->end -= w->start;
        w->start = 0;
        return 0;
}

static int buffer_append(qmp_wire *w, const char *p, size_t n)
{
        int r = buffer_reserve(w, n);
        if (r < 0)
                return r;
        memcpy(w->buf + w->end, p, n);
        w->end += n;
        return 0;
}

/* Replace the incomplete line by the over-long marker. */
static int drop_line(qmp_wire *w)
{
        w->end = w->line_start;
        int r = buffer_append(w, "\n", 1);
        if (r < 0)
                return r;
        w->line_start = w->end;
        return 0;
}

/*
 * Only the new bytes are scanned for "\n". Complete lines are copied in; a line is dropped as
 * soon as it is known to exceed the limit, so an endless line costs at most max_message + 1
 * bytes. On -ENOMEM a prefix of data may have been taken: the stream is then unusable anyway.
 */
int qmp_wire_feed(qmp_wire *w, const void *data, size_t size)
{
        assert_return(w, -EINVAL);
        assert_return(data || size == 0, -EINVAL);
        if (size == 0)
                return 0;

        const char *p = data, *e = p + size;
        while (p < e) {
                const char *nl = memchr(p, '\n', (size_t)(e - p));

                if (w->discarding) {
                        if (!nl)
                                return 0;
                        w->discarding = false;
                        p = nl + 1;
                        continue;
                }

                const char *seg_end = nl ? nl : e;
                size_t partial = w->end - w->line_start;
                size_t len = partial + (size_t)(seg_end - p);
                char last = seg_end > p ? seg_end[-1] : (partial > 0 ? w->buf[w->end - 1] : 0);
                /* A final "\r" is either the terminator's first half or, if no "\n"
                 * follows, counted once the next byte arrives. */
                size_t content = len - (last == '\r');

                if (content > w->max_message) {
                        int r = drop_line(w);
                        if (r < 0)
                                return r;
                        if (!nl) {
                                w->discarding = true;
                                return 0;
                        }
                        p = nl + 1;
                        continue;
                }

                if (!nl)
                        return buffer_append(w, p, (size_t)(e - p));

                if (content == 0) {
                        /* Blank line: never stored (see the marker above). */
                        w->end = w->line_start;
                        p = nl + 1;
                        continue;
                }

                int r = buffer_append(w, p, (size_t)(nl + 1 - p));
                if (r < 0)
                        return r;
                w->line_start = w->end;
                p = nl + 1;
        }
        return 0;
}

/* ---- strict JSON -------------------------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF), or 0 if there is none. */
static size_t utf8_sequence(const unsigned char *p, size_t n)
{
        unsigned char c = p[0];
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                if (n >= 2 && (p[1] & 0xc0) == 0x80)
                        return 2;
                return 0;
        }
        if (c >= 0xe0 && c <= 0xef) {
                if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
                        return 0;
                if (c == 0xe0 && p[1] < 0xa0) /* overlong */
                        return 0;
                if (c == 0xed && p[1] >= 0xa0) /* U+D800..U+DFFF */
                        return 0;
                return 3;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
                    (p[3] & 0xc0) != 0x80)
                        return 0;
                if (c == 0xf0 && p[1] < 0x90) /* overlong */
                        return 0;
                if (c == 0xf4 && p[1] >= 0x90) /* above U+10FFFF */
                        return 0;
                return 4;
        }
        return 0; /* continuation byte, 0xc0, 0xc1, 0xf5..0xff */
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* Length of a number per RFC 8259 at p, or 0 if it does not follow the grammar. */
static size_t number_length(const char *p, size_t n)
{
        size_t i = 0;
        if (i < n && p[i] == '-')
                i++;
        if (i < n && p[i] == '0')
                i++;
        else if (i < n && p[i] >= '1' && p[i] <= '9')
                while (i < n && is_digit(p[i]))
                        i++;
        else
                return 0;
        if (i < n && p[i] == '.') {
                i++;
                if (i >= n || !is_digit(p[i]))
                        return 0;
                while (i < n && is_digit(p[i]))
                        i++;
        }
        if (i < n && (p[i] == 'e' || p[i] == 'E')) {
                i++;
                if (i < n && (p[i] == '+' || p[i] == '-'))
                        i++;
                if (i >= n || !is_digit(p[i]))
                        return 0;
                while (i < n && is_digit(p[i]))
                        i++;
        }
        /* "00", "1.2.3", "1e5e5": json-c would read a prefix of these. */
        if (i < n && (is_digit(p[i]) || p[i] == '.' || p[i] == 'e' || p[i] == 'E' || p[i] == '+' ||
                      p[i] == '-'))
                return 0;
        return i;
}

size_t qmp_utf8_check(const char *text, size_t n)
{
        const unsigned char *s = (const unsigned char *)text;
        size_t i = 0;
        while (i < n) {
                if (s[i] < 0x80) {
                        i++;
                        continue;
                }
                size_t k = utf8_sequence(s + i, n - i);
                if (k == 0)
                        return i;
                i += k;
        }
        return n;
}

/*
 * One pass over the text for what json-c lets through (see the top of the file). Structure
 * (matching brackets, commas, colons, escapes' hex digits) is left to json-c. Errors are reported
 * for the first offending byte.
 */
static int json_text_check(const char *text, size_t n, int max_depth)
{
        const unsigned char *s = (const unsigned char *)text;
        int depth = 0;
        size_t i = 0;

        while (i < n) {
                unsigned char c = s[i];
                switch (c) {
                case ' ':
                case '\t':
                case '\r':
                case '\n':
                case ',':
                case ':':
                        i++;
                        break;
                case '{':
                case '[':
                        if (++depth > max_depth)
                                return -ELOOP;
                        i++;
                        break;
                case '}':
                case ']':
                        depth--;
                        i++;
                        break;
                case '"':
                        for (i++;; i++) {
                                if (i >= n)
                                        return -EBADMSG;
                                c = s[i];
                                if (c == '"')
                                        break;
                                if (c < 0x20)
                                        return -EBADMSG;
                                if (c == '\\') {
                                        i++;
                                        if (i >= n || s[i] == 0 || !strchr("\"\\/bfnrtu", s[i]))
                                                return -EBADMSG;
                                } else if (c >= 0x80) {
                                        size_t k = utf8_sequence(s + i, n - i);
                                        if (k == 0)
                                                return -EILSEQ;
                                        i += k - 1;
                                }
                        }
                        i++;
                        break;
                case 't':
                case 'f':
                case 'n': {
                        static const char *const literals[] = {"true", "false", "null"};
                        size_t k = 0;
                        for (size_t j = 0; j < ELEMENTSOF(literals); j++) {
                                size_t l = strlen(literals[j]);
                                if (n - i >= l && memcmp(s + i, literals[j], l) == 0) {
                                        k = l;
                                        break;
                                }
                        }
                        if (k == 0)
                                return -EBADMSG;
                        i += k;
                        break;
                }
                default:
                        if (c == '-' || is_digit((char)c)) {
                                size_t k = number_length(text + i, n - i);
                                if (k == 0)
                                        return -EBADMSG;
                                i += k;
                                break;
                        }
                        /* Invalid UTF-8 is reported as such even outside strings. */
                        if (c >= 0x80 && utf8_sequence(s + i, n - i) == 0)
                                return -EILSEQ;
                        return -EBADMSG; /* NUL, NaN, Infinity, quotes, comments, ... */
                }
        }
        return 0;
}

static bool is_json_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parse text[0, n) as exactly one JSON value. *ret may be NULL on success: JSON null. */
static int json_parse_strict(json_tokener *tok, int max_depth, const char *text, size_t n,
                             json_object **ret)
{
        if (n > (size_t)INT_MAX)
                return -EMSGSIZE;

        int r = json_text_check(text, n, max_depth);
        if (r < 0)
                return r;

        json_tokener_reset(tok);
        json_object *obj = json_tokener_parse_ex(tok, text, (int)n);
        enum json_tokener_error err = json_tokener_get_error(tok);
        if (err == json_tokener_success) {
                size_t end = json_tokener_get_parse_end(tok);
                /* A backstop: in strict mode json-c already refuses trailing bytes. */
                for (size_t i = end; i < n; i++)
                        if (!is_json_space(text[i])) {
                                json_object_put(obj);
                                return -EBADMSG;
                        }
        } else if (err == json_tokener_continue) {
                /* A top-level number or literal only ends at a delimiter: hand json-c the
                 * terminating NUL. An unfinished object or array fails here. */
                obj = json_tokener_parse_ex(tok, "", 1);
                err = json_tokener_get_error(tok);
        }

        switch (err) {
        case json_tokener_success:
                *ret = obj;
                return 0;
        case json_tokener_error_depth:
                r = -ELOOP;
                break;
        case json_tokener_error_parse_utf8_string:
                r = -EILSEQ;
                break;
        default:
                r = -EBADMSG;
                break;
        }
        json_object_put(obj);
        return r;
}

int qmp_json_parse(const char *text, size_t len, int max_depth, json_object **ret)
{
        assert_return(text, -EINVAL);
        assert_return(ret, -EINVAL);

        if (len > (size_t)INT_MAX)
                return -EMSGSIZE;

        max_depth = clamp_depth(max_depth);
        json_tokener *tok = tokener_new(max_depth);
        if (!tok)
                return -ENOMEM;

        json_object *obj = NULL;
        int r = json_parse_strict(tok, max_depth, text, len, &obj);
        json_tokener_free(tok);
        if (r < 0)
                return r;
        *ret = obj;
        return 0;
}

/* ---- classification ----------------------------------------------------------------------- */

/* A string member's value with no embedded NUL (a C string must mean what QEMU sent). */
static int string_value(json_object *v, const char **ret)
{
        if (!json_object_is_type(v, json_type_string))
                return -EPROTO;
        const char *s = json_object_get_string(v);
        if (strlen(s) != (size_t)json_object_get_string_len(v))
                return -EPROTO;
        *ret = s;
        return 0;
}

/* Optional string member: "" when absent, -EPROTO when present with another type. */
static int optional_string(json_object *obj, const char *key, const char **ret)
{
        json_object *v;
        if (!json_object_object_get_ex(obj, key, &v)) {
                *ret = "";
                return 0;
        }
        return string_value(v, ret);
}

/* Optional version number: -1 when absent, -EPROTO unless an integer in [0, INT_MAX]. */
static int optional_version_number(json_object *obj, const char *key, int *ret)
{
        json_object *v;
        if (!obj || !json_object_object_get_ex(obj, key, &v)) {
                *ret = -1;
                return 0;
        }
        if (!json_object_is_type(v, json_type_int))
                return -EPROTO;
        int64_t i = json_object_get_int64(v);
        if (i < 0 || i > INT_MAX)
                return -EPROTO;
        *ret = (int)i;
        return 0;
}

static int classify_greeting(json_object *qmp, qmp_msg *m)
{
        json_object *version = NULL, *qemu = NULL, *v;
        int r;

        if (!json_object_is_type(qmp, json_type_object))
                return -EPROTO;

        m->package = "";
        if (json_object_object_get_ex(qmp, "version", &version)) {
                if (!json_object_is_type(version, json_type_object))
                        return -EPROTO;
                if (json_object_object_get_ex(version, "qemu", &qemu) &&
                    !json_object_is_type(qemu, json_type_object))
                        return -EPROTO;
                r = optional_string(version, "package", &m->package);
                if (r < 0)
                        return r;
        }
        r = optional_version_number(qemu, "major", &m->version_major);
        if (r < 0)
                return r;
        r = optional_version_number(qemu, "minor", &m->version_minor);
        if (r < 0)
                return r;
        r = optional_version_number(qemu, "micro", &m->version_micro);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(qmp, "capabilities", &v)) {
                if (!json_object_is_type(v, json_type_array))
                        return -EPROTO;
                size_t n = json_object_array_length(v);
                for (size_t i = 0; i < n; i++) {
                        const char *s;
                        r = string_value(json_object_array_get_idx(v, i), &s);
                        if (r < 0)
                                return r;
                }
                m->capabilities = v;
        }

        m->kind = QMP_MSG_GREETING;
        return 0;
}

static int classify_error(json_object *root, json_object *error, qmp_msg *m)
{
        if (!json_object_is_type(error, json_type_object))
                return -EPROTO;
        int r = optional_string(error, "class", &m->error_class);
        if (r < 0)
                return r;
        r = optional_string(error, "desc", &m->error_desc);
        if (r < 0)
                return r;
        json_object_object_get_ex(root, "id", &m->id);
        m->kind = QMP_MSG_ERROR;
        return 0;
}

/* A timestamp QEMU could not fill in (it sends -1 then) or mangled is reported as 0: it is
 * informational, and no reason to lose the event. */
static uint64_t event_timestamp(json_object *root)
{
        json_object *ts, *sec, *usec;
        if (!json_object_object_get_ex(root, "timestamp", &ts) ||
            !json_object_is_type(ts, json_type_object) ||
            !json_object_object_get_ex(ts, "seconds", &sec) ||
            !json_object_object_get_ex(ts, "microseconds", &usec) ||
            !json_object_is_type(sec, json_type_int) || !json_object_is_type(usec, json_type_int))
                return 0;
        int64_t s = json_object_get_int64(sec), us = json_object_get_int64(usec);
        if (s < 0 || us < 0 || (uint64_t)us >= USEC_PER_SEC ||
            (uint64_t)s > (UINT64_MAX - (uint64_t)us) / USEC_PER_SEC)
                return 0;
        return (uint64_t)s * USEC_PER_SEC + (uint64_t)us;
}

static int classify_event(json_object *root, json_object *event, qmp_msg *m)
{
        json_object *data;
        int r = string_value(event, &m->event);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(root, "data", &data)) {
                if (!json_object_is_type(data, json_type_object))
                        return -EPROTO;
                m->data = data;
        }
        m->timestamp_usec = event_timestamp(root);
        m->kind = QMP_MSG_EVENT;
        return 0;
}

/* Fills m from root (borrowing from it); m->root is set by the caller. */
static int classify(json_object *root, qmp_msg *m)
{
        json_object *ret, *error, *event, *qmp;

        if (!json_object_is_type(root, json_type_object))
                return -EBADMSG;

        bool has_ret = json_object_object_get_ex(root, "return", &ret);
        bool has_error = json_object_object_get_ex(root, "error", &error);
        bool has_event = json_object_object_get_ex(root, "event", &event);
        bool has_qmp = json_object_object_get_ex(root, "QMP", &qmp);
        if (has_ret + has_error + has_event + has_qmp != 1)
                return -EPROTO;

        m->version_major = m->version_minor = m->version_micro = -1;
        if (has_qmp)
                return classify_greeting(qmp, m);
        if (has_error)
                return classify_error(root, error, m);
        if (has_event)
                return classify_event(root, event, m);

        m->ret = ret;
        json_object_object_get_ex(root, "id", &m->id);
        m->kind = QMP_MSG_RETURN;
        return 0;
}

static int parse_message(qmp_wire *w, const char *line, size_t len, qmp_msg **ret)
{
        json_object *root = NULL;
        int r = json_parse_strict(w->tok, w->max_depth, line, len, &root);
        if (r < 0)
                return r;

        qmp_msg *m = calloc(1, sizeof(*m));
        if (!m) {
                json_object_put(root);
                return -ENOMEM;
        }
        m->root = root;
        r = classify(root, m);
        if (r < 0) {
                qmp_msg_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

static bool is_blank(const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
                        return false;
        return true;
}

int qmp_wire_next(qmp_wire *w, qmp_msg **ret_msg)
{
        assert_return(w, -EINVAL);
        assert_return(ret_msg, -EINVAL);

        while (w->start < w->line_start) {
                char *line = w->buf + w->start;
                char *nl = memchr(line, '\n', w->line_start - w->start);
                assert(nl);
                size_t len = (size_t)(nl - line);
                w->start += len + 1;

                int r;
                qmp_msg *m = NULL;
                if (len == 0)
                        r = -EMSGSIZE; /* the over-long marker */
                else {
                        if (line[len - 1] == '\r')
                                len--;
                        if (is_blank(line, len))
                                continue;
                        r = parse_message(w, line, len, &m);
                }

                if (r == -ENOMEM)
                        return r; /* ours, not the peer's: not counted as a rejected line */
                if (!w->greeted) {
                        /* Whatever precedes the greeting (noise, a reply meant for the
                         * previous client) is not for us. */
                        if (r < 0 || m->kind != QMP_MSG_GREETING) {
                                qmp_msg_free(m);
                                w->skipped++;
                                continue;
                        }
                        w->greeted = true;
                } else if (r < 0) {
                        w->rejected++;
                        return r;
                }
                *ret_msg = m;
                return 1;
        }

        /* Everything read: start over at the front, and give back a buffer a big message grew. */
        if (w->start == w->end) {
                w->start = w->line_start = w->end = 0;
                if (w->cap > QMP_WIRE_KEEP_CAPACITY) {
                        free(w->buf);
                        w->buf = NULL;
                        w->cap = 0;
                }
        }
        return 0;
}

/* ---- commands ----------------------------------------------------------------------------- */

/* QAPI names: letters, digits, '-', '_' and '.' ("x-" experimental and "__vendor." downstream
 * prefixes included). Anything else could not be a command and might confuse a log reader. */
static bool command_name_valid(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++) {
                char c = *s;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
                      c == '_' || c == '.'))
                        return false;
        }
        return true;
}

static int object_add(json_object *obj, const char *key, json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(obj, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int qmp_wire_format_command(const char *command, json_object *args, json_object *id, char **ret_buf,
                            size_t *ret_len)
{
        assert_return(command, -EINVAL);
        assert_return(command_name_valid(command), -EINVAL);
        assert_return(!args || json_object_is_type(args, json_type_object), -EINVAL);
        assert_return(id, -EINVAL);
        assert_return(ret_buf, -EINVAL);
        assert_return(ret_len, -EINVAL);

        json_object *root = json_object_new_object();
        if (!root)
                return -ENOMEM;

        int r = object_add(root, "execute", json_object_new_string(command));
        if (r >= 0 && args)
                r = object_add(root, "arguments", json_object_get(args));
        if (r >= 0)
                r = object_add(root, "id", json_object_get(id));
        if (r < 0) {
                json_object_put(root);
                return r;
        }

        size_t n = 0;
        const char *s = json_object_to_json_string_length(
                root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!s) {
                json_object_put(root);
                return -ENOMEM;
        }

        /* json-c happily writes NaN, Infinity and whatever bytes a string holds. QEMU could
         * not parse that, and its error would carry no id: the command would never be answered
         * (R3). So refuse anything QEMU's strict parser would refuse. */
        r = json_text_check(s, n, QMP_WIRE_MAX_DEPTH_CEILING);
        if (r < 0) {
                json_object_put(root);
                return -EINVAL;
        }

        /* A bare "\n": QEMU's monitor reads commands one byte per main-loop iteration, so every
         * byte of a command costs a round trip a few microseconds; "\r" buys nothing. */
        char *buf = malloc(n + 2);
        if (!buf) {
                json_object_put(root);
                return -ENOMEM;
        }
        memcpy(buf, s, n);
        memcpy(buf + n, "\n", 2);
        json_object_put(root);

        *ret_buf = buf;
        *ret_len = n + 1;
        return 0;
}
