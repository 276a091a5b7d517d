/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config: JSON document -> validated qdm_model. This file is the only producer of models
 * (model.h), so everything a consumer relies on is checked here: ranges, absolute and existing
 * paths, no control characters anywhere, no ',' in any value that ends up inside a QEMU
 * option string, and no extra_args that would take over qdm's monitor or lifecycle or weaken
 * the restriction. Every error names the offending field by its JSON path
 * ("disks[1].path: must be an absolute path").
 *
 * json-c (strict mode) does the parsing, but it silently keeps the last of duplicate keys,
 * truncates keys at "\u0000", and lets single-quoted strings and raw control characters
 * through. A small scanner therefore reads the raw text once more (after json-c accepted it)
 * and rejects those, comparing keys after unescaping so that "na\u006de" duplicates "name".
 *
 * The parser looks at the file system (qemu, kernel, initrd and disk paths must exist) but
 * never at privileges: config_check_privileges() is for start time.
 */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "config.h"
#include "qmp-wire.h"
#include "util.h"

struct qdm_config {
        unsigned n_ref; /* immutable once parsed, so sharing is safe (device models keep one) */
        qdm_model *model;
};

#define DEFAULT_QEMU             "qemu-system-x86_64"
#define DEFAULT_PATH             "/usr/local/bin:/usr/bin:/bin"
#define NAME_MAX_LEN             64
#define MACHINE_MAX_LEN          64
#define UID_RANGE_MIN            UINT64_C(1)
#define UID_RANGE_MAX            UINT64_C(4294967294) /* (uid_t)-1 means "no change" */
#define DEFAULT_UID_MIN          64000
#define DEFAULT_UID_MAX          64999
#define DEFAULT_START_TIMEOUT_MS 60000
#define KEY_IN_MESSAGE_MAX       64 /* user-supplied keys are cut to this in messages */

#define streq(a, b) (strcmp((a), (b)) == 0)

/* ---------------------------------------------------------------------------------------- */
/* Errors: "PARENT.KEY: message". Document-level errors use the field name "document". */

static void path_component_for_message(FILE *f, const char *s, size_t len)
{
        /* Keys are user data: keep them printable and short in messages. */
        for (size_t i = 0; i < len && i < KEY_IN_MESSAGE_MAX; i++) {
                unsigned char c = (unsigned char)s[i];
                fputc(c >= 0x20 && c < 0x7f ? c : '?', f);
        }
        if (len > KEY_IN_MESSAGE_MAX)
                fputs("...", f);
}

_printf_(4, 0) static int vfail(char **ret_error, const char *parent, const char *key,
                                const char *fmt, va_list ap)
{
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (!ret_error)
                return -EINVAL;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        if (parent && *parent)
                fputs(parent, f);
        if (key) {
                if (parent && *parent)
                        fputc('.', f);
                path_component_for_message(f, key, strlen(key));
        }
        if ((!parent || !*parent) && !key)
                fputs("document", f);
        fputs(": ", f);
        vfprintf(f, fmt, ap);
        if (fclose(f) != 0)
                return -ENOMEM;

        *ret_error = TAKE_PTR(buf);
        return -EINVAL;
}

_printf_(4, 5) static int fail(char **ret_error, const char *parent, const char *key,
                               const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vfail(ret_error, parent, key, fmt, ap);
        va_end(ap);
        return r;
}

static void offset_to_line_column(const char *text, size_t offset, size_t *ret_line,
                                  size_t *ret_column)
{
        size_t line = 1, column = 1;

        for (size_t i = 0; i < offset; i++) {
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

/* ---------------------------------------------------------------------------------------- */
/* The raw-text scanner (see the top of the file). It only runs on text json-c accepted, but
 * it is written for any input: every step advances, depth and keys per object are bounded,
 * and the memory it uses is linear in the length of the text. */

typedef struct scan_frame {
        bool is_object;
        bool want_key;     /* object: the next string is a key */
        size_t index;      /* array: the current element */
        size_t n_keys;     /* object: keys seen so far */
        size_t keys_start; /* object: where its keys begin in the arena */
        size_t key_off;    /* object: the current key (decoded) in the arena, and its length */
        size_t key_len;
} scan_frame;

typedef struct scanner {
        const char *text;
        size_t len;
        size_t pos;
        scan_frame frames[QDM_CONFIG_MAX_DEPTH];
        size_t depth;
        /* Decoded keys of the objects being parsed, each stored as [size_t length][bytes]. */
        char *arena;
        size_t arena_len, arena_cap;
} scanner;

/* The JSON path of the scanner's position; with_current includes the innermost object's
 * current key (or the innermost array's index). */
static char *scan_path(const scanner *s, bool with_current)
{
        char *buf = NULL;
        size_t size = 0;
        bool first = true;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; i < s->depth; i++) {
                const scan_frame *fr = &s->frames[i];

                if (i == s->depth - 1 && !with_current)
                        break;
                if (fr->is_object) {
                        if (fr->want_key)
                                break; /* between keys: the path ends at this object */
                        if (!first)
                                fputc('.', f);
                        path_component_for_message(f, s->arena + fr->key_off, fr->key_len);
                } else
                        fprintf(f, "[%zu]", fr->index);
                first = false;
        }
        if (first)
                fputs("document", f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

_printf_(4, 5) static int scan_fail(const scanner *s, bool with_current, char **ret_error,
                                    const char *fmt, ...)
{
        _cleanup_free_ char *path = NULL;
        va_list ap;
        int r;

        if (!ret_error)
                return -EINVAL;
        path = scan_path(s, with_current);
        if (!path)
                return -ENOMEM;
        va_start(ap, fmt);
        r = vfail(ret_error, path, NULL, fmt, ap);
        va_end(ap);
        return r;
}

_printf_(3, 4) static int scan_syntax_error(const scanner *s, char **ret_error, const char *fmt,
                                            ...)
{
        _cleanup_free_ char *what = NULL;
        size_t line, column;
        va_list ap;

        if (!ret_error)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        if (!what)
                return -ENOMEM;
        offset_to_line_column(s->text, s->pos, &line, &column);
        return fail(ret_error, NULL, NULL, "invalid JSON at line %zu, column %zu: %s", line, column,
                    what);
}

static int hex4(const char *p, const char *end, uint32_t *ret)
{
        uint32_t v = 0;

        if (end - p < 4)
                return -EINVAL;
        for (int i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t)(c - 'A' + 10);
                else
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xc0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xe0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* Scan the string at s->pos (which is '"'). With `decode`, append its decoded bytes to the
 * arena (the caller reserved room) and return their length in *ret_len. Keys must not contain
 * NUL (json-c would truncate them) or unpaired surrogates (json-c would turn them into U+FFFD,
 * making different spellings equal). */
static int scan_string(scanner *s, bool decode, size_t *ret_len, char **ret_error)
{
        const char *end = s->text + s->len;
        const char *p = s->text + s->pos + 1;
        char *out = decode ? s->arena + s->arena_len : NULL;
        size_t n = 0;

        while (p < end && *p != '"') {
                unsigned char c = (unsigned char)*p;
                uint32_t cp, lo;

                if (c < 0x20) {
                        s->pos = (size_t)(p - s->text);
                        return scan_syntax_error(s, ret_error, "control character in a string");
                }
                if (c != '\\') {
                        if (decode)
                                out[n] = (char)c;
                        n++;
                        p++;
                        continue;
                }
                if (end - p < 2)
                        break;
                switch (p[1]) {
                case '"':
                case '\\':
                case '/':
                        cp = (unsigned char)p[1];
                        break;
                case 'b':
                        cp = '\b';
                        break;
                case 'f':
                        cp = '\f';
                        break;
                case 'n':
                        cp = '\n';
                        break;
                case 'r':
                        cp = '\r';
                        break;
                case 't':
                        cp = '\t';
                        break;
                case 'u':
                        if (hex4(p + 2, end, &cp) < 0)
                                goto bad_escape;
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
                                    hex4(p + 8, end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
                                        if (decode)
                                                goto bad_surrogate;
                                        p += 6;
                                        continue;
                                }
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                p += 6;
                        } else if (cp >= 0xdc00 && cp <= 0xdfff && decode)
                                goto bad_surrogate;
                        if (cp == 0 && decode) {
                                s->pos = (size_t)(p - s->text);
                                return scan_fail(s, false, ret_error,
                                                 "a key must not contain \\u0000");
                        }
                        if (decode)
                                n += utf8_encode(cp, out + n);
                        else
                                n++;
                        p += 6;
                        continue;
                default:
                        goto bad_escape;
                }
                if (decode)
                        out[n] = (char)cp;
                n++;
                p += 2;
        }
        if (p >= end) {
                s->pos = s->len;
                return scan_syntax_error(s, ret_error, "unterminated string");
        }
        s->pos = (size_t)(p - s->text) + 1;
        if (ret_len)
                *ret_len = n;
        return 0;

bad_escape:
        s->pos = (size_t)(p - s->text);
        return scan_syntax_error(s, ret_error, "invalid escape in a string");
bad_surrogate:
        s->pos = (size_t)(p - s->text);
        return scan_fail(s, false, ret_error, "a key must not contain an unpaired surrogate");
}

static int arena_reserve(scanner *s, size_t extra)
{
        size_t need, cap;
        char *a;

        if (extra > SIZE_MAX - s->arena_len)
                return -ENOMEM;
        need = s->arena_len + extra;
        if (need <= s->arena_cap)
                return 0;
        cap = s->arena_cap ? s->arena_cap : 256;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        a = realloc(s->arena, cap);
        if (!a)
                return -ENOMEM;
        s->arena = a;
        s->arena_cap = cap;
        return 0;
}

static int scan_key(scanner *s, char **ret_error)
{
        scan_frame *fr = &s->frames[s->depth - 1];
        size_t raw_len, key_len, off;
        const char *key;
        int r;

        /* The decoded key is never longer than its raw text. */
        raw_len = s->len - s->pos;
        r = arena_reserve(s, sizeof(size_t) + raw_len);
        if (r < 0)
                return r;
        off = s->arena_len;
        s->arena_len += sizeof(size_t);
        r = scan_string(s, true, &key_len, ret_error);
        if (r < 0)
                return r;
        key = s->arena + s->arena_len;

        /* Compare with the keys this object already has: at most QDM_CONFIG_MAX_KEYS each. */
        for (size_t i = 0, at = fr->keys_start; i < fr->n_keys; i++) {
                size_t len;

                memcpy(&len, s->arena + at, sizeof(len));
                at += sizeof(len);
                if (len == key_len && memcmp(s->arena + at, key, len) == 0) {
                        fr->want_key = false;
                        fr->key_off = s->arena_len;
                        fr->key_len = key_len;
                        return scan_fail(s, true, ret_error, "duplicate key");
                }
                at += len;
        }
        if (fr->n_keys >= QDM_CONFIG_MAX_KEYS)
                return scan_fail(s, false, ret_error, "more than %d keys in one object",
                                 QDM_CONFIG_MAX_KEYS);

        memcpy(s->arena + off, &key_len, sizeof(key_len));
        s->arena_len += key_len;
        fr->n_keys++;
        fr->key_off = off + sizeof(size_t);
        fr->key_len = key_len;
        fr->want_key = false;
        return 0;
}

static int scan_document(const char *text, size_t len, char **ret_error)
{
        scanner s = {
                .text = text,
                .len = len,
        };
        int r = 0;

        while (s.pos < s.len && r >= 0) {
                char c = s.text[s.pos];
                scan_frame *top = s.depth > 0 ? &s.frames[s.depth - 1] : NULL;

                switch (c) {
                case ' ':
                case '\t':
                case '\n':
                case '\r':
                case ':':
                        s.pos++;
                        break;
                case '{':
                case '[':
                        if (s.depth >= QDM_CONFIG_MAX_DEPTH) {
                                r = scan_syntax_error(&s, ret_error, "nested deeper than %d",
                                                      QDM_CONFIG_MAX_DEPTH);
                                break;
                        }
                        s.frames[s.depth++] = (scan_frame){
                                .is_object = c == '{',
                                .want_key = c == '{',
                                .keys_start = s.arena_len,
                        };
                        s.pos++;
                        break;
                case '}':
                case ']':
                        if (!top || top->is_object != (c == '}')) {
                                r = scan_syntax_error(&s, ret_error, "unbalanced '%c'", c);
                                break;
                        }
                        s.arena_len = top->keys_start;
                        s.depth--;
                        s.pos++;
                        break;
                case ',':
                        if (top && top->is_object)
                                top->want_key = true;
                        else if (top)
                                top->index++;
                        s.pos++;
                        break;
                case '"':
                        if (top && top->is_object && top->want_key)
                                r = scan_key(&s, ret_error);
                        else
                                r = scan_string(&s, false, NULL, ret_error);
                        break;
                case '\'':
                        r = scan_syntax_error(&s, ret_error, "single-quoted string");
                        break;
                default:
                        /* A number, true, false, null (or NaN, which json-c accepts and the
                         * schema rejects): skip to the next structural character. */
                        if ((unsigned char)c < 0x20) {
                                r = scan_syntax_error(&s, ret_error, "control character");
                                break;
                        }
                        while (s.pos < s.len && !strchr(",:[]{}\"' \t\n\r", s.text[s.pos]) &&
                               (unsigned char)s.text[s.pos] >= 0x20)
                                s.pos++;
                        break;
                }
        }
        if (r >= 0 && s.depth > 0)
                r = scan_syntax_error(&s, ret_error, "unexpected end of input");
        free(s.arena);
        return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Typed access to json-c values. */

static const char *json_kind(json_object *v)
{
        switch (json_object_get_type(v)) {
        case json_type_null:
                return "null";
        case json_type_boolean:
                return "boolean";
        case json_type_double:
                return "floating-point number";
        case json_type_int:
                return "integer";
        case json_type_object:
                return "object";
        case json_type_array:
                return "array";
        case json_type_string:
                return "string";
        }
        return "unknown";
}

static bool has_control(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                        return true;
        return false;
}

/* A string with no NUL, no control character, and at most max_len bytes. */
static int get_string(json_object *v, const char *parent, const char *key, size_t max_len,
                      const char **ret_string, char **ret_error)
{
        const char *s;
        size_t len;

        if (!json_object_is_type(v, json_type_string))
                return fail(ret_error, parent, key, "expected a string, got %s", json_kind(v));
        s = json_object_get_string(v);
        len = (size_t)json_object_get_string_len(v);
        if (strlen(s) != len)
                return fail(ret_error, parent, key, "must not contain a NUL character");
        if (len > max_len)
                return fail(ret_error, parent, key, "must be at most %zu bytes long", max_len);
        if (has_control(s, len))
                return fail(ret_error, parent, key, "must not contain control characters");
        *ret_string = s;
        return 0;
}

static int dup_string(json_object *v, const char *parent, const char *key, size_t max_len,
                      char **ret_string, char **ret_error)
{
        const char *s;
        char *copy;
        int r;

        r = get_string(v, parent, key, max_len, &s, ret_error);
        if (r < 0)
                return r;
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        free(*ret_string);
        *ret_string = copy;
        return 0;
}

static int get_bool(json_object *v, const char *parent, const char *key, bool *ret,
                    char **ret_error)
{
        if (!json_object_is_type(v, json_type_boolean))
                return fail(ret_error, parent, key, "expected a boolean, got %s", json_kind(v));
        *ret = json_object_get_boolean(v);
        return 0;
}

/* An integer in [min, max]. json-c saturates integers beyond int64/uint64 to the nearest
 * bound; no field accepts UINT64_MAX or negative values, so saturation never slips through. */
static int get_uint(json_object *v, const char *parent, const char *key, uint64_t min, uint64_t max,
                    uint64_t *ret, char **ret_error)
{
        uint64_t u;

        if (!json_object_is_type(v, json_type_int))
                return fail(ret_error, parent, key, "expected an integer, got %s", json_kind(v));
        u = json_object_get_uint64(v);
        if (json_object_get_int64(v) < 0 || u < min || u > max)
                return fail(ret_error, parent, key, "must be between %" PRIu64 " and %" PRIu64, min,
                            max);
        *ret = u;
        return 0;
}

static int get_object(json_object *v, const char *parent, const char *key, char **ret_error)
{
        if (!json_object_is_type(v, json_type_object))
                return fail(ret_error, parent, key, "expected an object, got %s", json_kind(v));
        return 0;
}

static int get_array(json_object *v, const char *parent, const char *key, size_t max,
                     size_t *ret_len, char **ret_error)
{
        size_t n;

        if (!json_object_is_type(v, json_type_array))
                return fail(ret_error, parent, key, "expected an array, got %s", json_kind(v));
        n = json_object_array_length(v);
        if (n > max)
                return fail(ret_error, parent, key, "at most %zu elements are allowed", max);
        *ret_len = n;
        return 0;
}

/* One of `choices` (NULL-terminated); *ret_index is its position. `expected` is the list as the
 * error message spells it. */
static int get_choice(json_object *v, const char *parent, const char *key,
                      const char *const *choices, const char *expected, unsigned *ret_index,
                      char **ret_error)
{
        const char *s;
        int r;

        r = get_string(v, parent, key, QDM_CONFIG_MAX_STRING, &s, ret_error);
        if (r < 0)
                return r;
        for (unsigned i = 0; choices[i]; i++)
                if (streq(s, choices[i])) {
                        *ret_index = i;
                        return 0;
                }
        return fail(ret_error, parent, key, "must be %s", expected);
}

/* ---------------------------------------------------------------------------------------- */
/* Field validation. */

static bool charset_ok(const char *s, bool upper)
{
        for (; *s; s++) {
                char c = *s;
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                      c == '-' || (upper && c >= 'A' && c <= 'Z')))
                        return false;
        }
        return true;
}

bool config_name_valid(const char *name)
{
        size_t n = name ? strlen(name) : 0;
        return n >= 1 && n <= NAME_MAX_LEN && name[0] != '.' && charset_ok(name, true);
}

/* A path that becomes part of a QEMU option string or argument: absolute, no ','. */
static int check_option_path(const char *s, const char *parent, const char *key, char **ret_error)
{
        if (s[0] != '/')
                return fail(ret_error, parent, key, "must be an absolute path");
        if (strchr(s, ','))
                return fail(ret_error, parent, key,
                            "must not contain ',' (it separates QEMU option values)");
        return 0;
}

static int stat_field(const char *s, const char *parent, const char *key, struct stat *ret_st,
                      char **ret_error)
{
        if (stat(s, ret_st) < 0) {
                int e = errno;
                if (e == ENOENT || e == ENOTDIR)
                        return fail(ret_error, parent, key, "%s does not exist", s);
                return fail(ret_error, parent, key, "cannot access %s: %s", s, strerror(e));
        }
        return 0;
}

static int parse_file_path(json_object *v, const char *parent, const char *key, bool allow_block,
                           char **ret_path, bool *ret_block, char **ret_error)
{
        struct stat st;
        const char *s;
        char *copy;
        int r;

        r = get_string(v, parent, key, PATH_MAX - 1, &s, ret_error);
        if (r < 0)
                return r;
        r = check_option_path(s, parent, key, ret_error);
        if (r < 0)
                return r;
        r = stat_field(s, parent, key, &st, ret_error);
        if (r < 0)
                return r;
        if (!S_ISREG(st.st_mode) && !(allow_block && S_ISBLK(st.st_mode)))
                return fail(ret_error, parent, key,
                            allow_block ? "%s is not a regular file or block device"
                                        : "%s is not a regular file",
                            s);
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        free(*ret_path);
        *ret_path = copy;
        if (ret_block)
                *ret_block = S_ISBLK(st.st_mode);
        return 0;
}

static bool is_executable_file(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
               faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == 0;
}

/* A bare name is looked up in PATH (absolute entries only: an empty or relative entry would
 * make the binary depend on the current directory); anything with a '/' must be absolute. */
static int resolve_qemu(const char *name, char **ret_path, char **ret_error)
{
        const char *path, *p;
        char *found;

        if (strchr(name, '/')) {
                if (name[0] != '/')
                        return fail(ret_error, NULL, "qemu",
                                    "must be an absolute path or a file name to look up in PATH");
                if (!is_executable_file(name))
                        return fail(ret_error, NULL, "qemu", "%s is not an executable file", name);
                found = strdup(name);
                if (!found)
                        return -ENOMEM;
                *ret_path = found;
                return 0;
        }

        path = getenv("PATH");
        if (!path)
                path = DEFAULT_PATH;
        for (p = path; *p;) {
                size_t n = strcspn(p, ":");

                if (n > 0 && p[0] == '/') {
                        if (asprintf(&found, "%.*s/%s", (int)n, p, name) < 0)
                                return -ENOMEM;
                        if (is_executable_file(found)) {
                                *ret_path = found;
                                return 0;
                        }
                        free(found);
                }
                p += n;
                if (*p == ':')
                        p++;
        }
        return fail(ret_error, NULL, "qemu", "%s not found in PATH (set \"qemu\" to its path)",
                    name);
}

/*
 * extra_args. Two rules:
 *  - In every mode, what qdm owns is refused: the monitor, -S, the process lifecycle.
 *  - In the restricted modes, only options known to reach nothing on the host are accepted
 *    (an allow-list, fail-closed): QEMU builds the machine as root before it drops its
 *    privileges in "qemu" mode, so any option that names a host file, socket or port would
 *    be opened with root's rights, and in "jail" mode a port would still be the host's. Their
 *    values are checked too: a key that names a host path (file=, romfile=, mem-path=, ...)
 *    is refused wherever it appears, and a bare argument is refused because QEMU takes it as
 *    a disk image path.
 * Option names are matched after stripping the leading dashes and any "=value", so "--qmp"
 * and "-qmp=x" are caught too.
 */
static const struct {
        const char *name;
        const char *why;
} owned_options[] = {
        {"S", "qdm starts QEMU paused itself"},
        {"qmp", "qdm owns the QMP monitor"},
        {"qmp-pretty", "qdm owns the QMP monitor"},
        {"monitor", "qdm owns the monitor"},
        {"mon", "qdm owns the monitor"},
        {"daemonize", "qdm owns QEMU's lifecycle"},
        {"pidfile", "qdm owns QEMU's lifecycle"},
        {"preconfig", "qdm owns QEMU's lifecycle"},
        {"readconfig", "a configuration file can add monitors and chardevs"},
        {"set", "it can rewrite the options of qdm's monitor"},
};

typedef enum value_rule {
        VALUE_NONE,     /* a flag */
        VALUE_OPTS,     /* key=value list: no key may name a host path */
        VALUE_DEVICE,   /* as VALUE_OPTS, and no driver that reaches the host */
        VALUE_OBJECT,   /* as VALUE_OPTS, and only object types that reach nothing */
        VALUE_OFF,      /* only "none" or "null" (a backend turned off) */
        VALUE_DISPLAY,  /* only "none" */
        VALUE_INCOMING, /* only "defer" (the migration stream comes later, over QMP) */
} value_rule;

static const struct {
        const char *name;
        value_rule rule;
} restricted_allowed[] = {
        {"enable-kvm", VALUE_NONE},
        {"no-reboot", VALUE_NONE},
        {"no-shutdown", VALUE_NONE},
        {"no-hpet", VALUE_NONE},
        {"no-acpi", VALUE_NONE},
        {"nodefaults", VALUE_NONE},
        {"no-user-config", VALUE_NONE},
        {"usb", VALUE_NONE},
        {"device", VALUE_DEVICE},
        {"global", VALUE_OPTS},
        {"cpu", VALUE_OPTS},
        {"smp", VALUE_OPTS},
        {"m", VALUE_OPTS},
        {"accel", VALUE_OPTS},
        {"machine", VALUE_OPTS},
        {"M", VALUE_OPTS},
        {"rtc", VALUE_OPTS},
        {"boot", VALUE_OPTS},
        {"overcommit", VALUE_OPTS},
        {"msg", VALUE_OPTS},
        {"uuid", VALUE_OPTS},
        {"name", VALUE_OPTS},
        {"k", VALUE_OPTS},
        {"vga", VALUE_OPTS},
        {"numa", VALUE_OPTS},
        {"icount", VALUE_OPTS},
        {"action", VALUE_OPTS},
        {"watchdog-action", VALUE_OPTS},
        {"add-fd", VALUE_OPTS},
        {"object", VALUE_OBJECT},
        {"display", VALUE_DISPLAY},
        {"serial", VALUE_OFF},
        {"parallel", VALUE_OFF},
        {"debugcon", VALUE_OFF},
        {"virtioconsole", VALUE_OFF},
        {"incoming", VALUE_INCOMING},
};

/* Keys whose value QEMU opens, binds or executes on the host. */
static const char *const host_keys[] = {
        "file",     "filename", "path",       "mem-path", "romfile", "dir",      "sysfsdev",
        "host",     "script",   "downscript", "helper",   "splash",  "socket",   "logfile",
        "x509-dir", "dtb",      "bios",       "kernel",   "initrd",  "firmware",
};

/* Device drivers that load host files or take host devices. */
static const char *const host_drivers[] = {"loader",     "vfio-",   "vhost-",    "usb-host",
                                           "pci-assign", "ivshmem", "virtio-9p", "vhost-user"};

/* Object types that reach nothing on the host (rng-random only on the kernel's RNG). */
static const char *const safe_objects[] = {
        "rng-builtin",        "rng-random",           "iothread",  "throttle-group",
        "memory-backend-ram", "memory-backend-memfd", "main-loop", "secret"};

/* The i-th element of QEMU's "a,b=c,,d" syntax (",," is a literal comma) into buf. */
static bool opts_element(const char *s, size_t index, char *buf, size_t size)
{
        size_t i = 0, n = 0;
        for (const char *p = s;; p++) {
                if (*p == '\0' || (*p == ',' && p[1] != ',')) {
                        if (i == index) {
                                buf[n < size ? n : size - 1] = '\0';
                                return true;
                        }
                        if (*p == '\0')
                                return false;
                        i++;
                        n = 0;
                        continue;
                }
                if (*p == ',')
                        p++; /* ",," */
                if (i == index && n + 1 < size)
                        buf[n++] = *p;
        }
}

static bool prefix_in(const char *s, const char *const *list, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strncmp(s, list[i], strlen(list[i])) == 0)
                        return true;
        return false;
}

/* Why VALUE (for option OPT under RULE) could reach the host, or NULL if it cannot. */
static const char *value_refusal(value_rule rule, const char *value)
{
        char el[256];
        switch (rule) {
        case VALUE_NONE:
                return NULL;
        case VALUE_OFF:
                return streq(value, "none") || streq(value, "null")
                               ? NULL
                               : "unless its value is \"none\" or \"null\": a backend can open "
                                 "host files, sockets or a monitor";
        case VALUE_DISPLAY:
                return streq(value, "none") ? NULL
                                            : "unless its value is \"none\": a display listens "
                                              "on the host";
        case VALUE_INCOMING:
                return streq(value, "defer") ? NULL
                                             : "unless its value is \"defer\": a migration "
                                               "address listens on the host or runs a command";
        case VALUE_OPTS:
        case VALUE_DEVICE:
        case VALUE_OBJECT:
                break;
        }
        for (size_t i = 0; opts_element(value, i, el, sizeof(el)); i++) {
                char *eq = strchr(el, '=');
                if (i == 0 && !eq) {
                        if (rule == VALUE_DEVICE &&
                            prefix_in(el, host_drivers, ELEMENTSOF(host_drivers)))
                                return "with this device driver: it reaches host files or "
                                       "devices";
                        if (rule == VALUE_OBJECT) {
                                bool safe = false;
                                for (size_t k = 0; k < ELEMENTSOF(safe_objects); k++)
                                        safe = safe || streq(el, safe_objects[k]);
                                if (!safe)
                                        return "with this object type: it is not known to be safe "
                                               "(it may open host files)";
                        }
                        continue;
                }
                if (!eq)
                        continue;
                *eq = '\0';
                if (rule == VALUE_OBJECT && streq(el, "filename") &&
                    (streq(eq + 1, "/dev/urandom") || streq(eq + 1, "/dev/random")))
                        continue;
                /* "-global driver.prop=value" names the property after the last dot. */
                const char *key = strrchr(el, '.') ? strrchr(el, '.') + 1 : el;
                for (size_t k = 0; k < ELEMENTSOF(host_keys); k++)
                        if (streq(key, host_keys[k]))
                                return "with a value that names a host path (file=, romfile=, "
                                       "mem-path=, ...)";
        }
        return NULL;
}

static int check_extra_args(char *const *args, size_t n, qdm_restrict_mode mode, char **ret_error)
{
        bool restricted = mode != QDM_RESTRICT_NONE;
        const char *mode_name = qdm_restrict_mode_to_string(mode);
        for (size_t i = 0; i < n; i++) {
                char parent[48];
                snprintf(parent, sizeof(parent), "extra_args[%zu]", i);
                const char *arg = args[i];
                if (arg[0] != '-' || arg[1] == '\0') {
                        if (restricted)
                                return fail(ret_error, parent, NULL,
                                            "a bare argument is not allowed with restrict.mode "
                                            "\"%s\": QEMU opens it as a disk image",
                                            mode_name);
                        continue;
                }
                const char *name = arg;
                while (*name == '-')
                        name++;
                size_t len = strcspn(name, "=");
                for (size_t k = 0; k < ELEMENTSOF(owned_options); k++)
                        if (strlen(owned_options[k].name) == len &&
                            memcmp(owned_options[k].name, name, len) == 0)
                                return fail(ret_error, parent, NULL, "-%s is not allowed: %s",
                                            owned_options[k].name, owned_options[k].why);
                if (!restricted)
                        continue;
                size_t k = 0;
                while (k < ELEMENTSOF(restricted_allowed) &&
                       !(strlen(restricted_allowed[k].name) == len &&
                         memcmp(restricted_allowed[k].name, name, len) == 0))
                        k++;
                if (k == ELEMENTSOF(restricted_allowed))
                        return fail(ret_error, parent, NULL,
                                    "-%.*s is not allowed with restrict.mode \"%s\": it is not "
                                    "known to be safe (it may reach host files, sockets or "
                                    "ports); use the configuration's own keys, or "
                                    "restrict.mode \"none\"",
                                    (int)len, name, mode_name);
                value_rule rule = restricted_allowed[k].rule;
                if (rule == VALUE_NONE)
                        continue;
                const char *value = name[len] == '=' ? name + len + 1 : args[i + 1];
                if (name[len] != '=') {
                        if (!value)
                                return fail(ret_error, parent, NULL,
                                            "-%.*s is not allowed without its value", (int)len,
                                            name);
                        i++;
                        snprintf(parent, sizeof(parent), "extra_args[%zu]", i);
                }
                const char *why = value_refusal(rule, value);
                if (why)
                        return fail(ret_error, parent, NULL,
                                    "-%.*s is not allowed with restrict.mode \"%s\" %s", (int)len,
                                    name, mode_name, why);
        }
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The schema. Each parse_* walks one object in document order, so the first offending key in
 * the text is the one reported. */

static int parse_rlimit(json_object *v, const char *parent, const char *key, rlim_t *ret,
                        char **ret_error)
{
        uint64_t u;
        int r;

        if (json_object_is_type(v, json_type_string)) {
                if (!streq_ptr(json_object_get_string(v), "unlimited") ||
                    json_object_get_string_len(v) != (int)strlen("unlimited"))
                        return fail(ret_error, parent, key, "must be an integer or \"unlimited\"");
                *ret = RLIM_INFINITY;
                return 0;
        }
        if (!json_object_is_type(v, json_type_int))
                return fail(ret_error, parent, key, "expected an integer or \"unlimited\", got %s",
                            json_kind(v));
        r = get_uint(v, parent, key, 0, (uint64_t)RLIM_INFINITY - 1, &u, ret_error);
        if (r < 0)
                return r;
        *ret = (rlim_t)u;
        return 0;
}

static int parse_rlimits(json_object *obj, qdm_rlimits *rl, char **ret_error)
{
        static const char parent[] = "restrict.rlimits";
        int r;

        r = get_object(obj, "restrict", "rlimits", ret_error);
        if (r < 0)
                return r;
        json_object_object_foreach(obj, key, v)
        {
                rlim_t *dst;

                if (streq(key, "fsize"))
                        dst = &rl->fsize;
                else if (streq(key, "core"))
                        dst = &rl->core;
                else if (streq(key, "msgqueue"))
                        dst = &rl->msgqueue;
                else if (streq(key, "locks"))
                        dst = &rl->locks;
                else if (streq(key, "memlock"))
                        dst = &rl->memlock;
                else if (streq(key, "nofile"))
                        dst = &rl->nofile;
                else
                        return fail(ret_error, parent, key, "unknown key");
                r = parse_rlimit(v, parent, key, dst, ret_error);
                if (r < 0)
                        return r;
                if (dst == &rl->fsize)
                        rl->fsize_set = true;
        }
        return 0;
}

static int parse_namespaces(json_object *obj, qdm_restrict *rs, char **ret_error)
{
        static const char parent[] = "restrict.namespaces";
        int r;

        r = get_object(obj, "restrict", "namespaces", ret_error);
        if (r < 0)
                return r;
        json_object_object_foreach(obj, key, v)
        {
                if (streq(key, "net"))
                        r = get_bool(v, parent, key, &rs->unshare_net, ret_error);
                else if (streq(key, "pid"))
                        r = get_bool(v, parent, key, &rs->unshare_pid, ret_error);
                else
                        return fail(ret_error, parent, key, "unknown key");
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_restrict(json_object *obj, qdm_restrict *rs, char **ret_error)
{
        static const char parent[] = "restrict";
        uint64_t u;
        int r;

        r = get_object(obj, NULL, parent, ret_error);
        if (r < 0)
                return r;
        json_object_object_foreach(obj, key, v)
        {
                if (streq(key, "mode")) {
                        /* In qdm_restrict_mode order. */
                        static const char *const modes[] = {"none", "qemu", "jail", NULL};
                        unsigned i;

                        r = get_choice(v, parent, key, modes, "\"none\", \"qemu\" or \"jail\"", &i,
                                       ret_error);
                        if (r < 0)
                                return r;
                        rs->mode = (qdm_restrict_mode)i;
                } else if (streq(key, "uid_min") || streq(key, "uid_max")) {
                        r = get_uint(v, parent, key, UID_RANGE_MIN, UID_RANGE_MAX, &u, ret_error);
                        if (r < 0)
                                return r;
                        *(streq(key, "uid_min") ? &rs->uid_min : &rs->uid_max) = (uid_t)u;
                } else if (streq(key, "share_uid")) {
                        r = get_bool(v, parent, key, &rs->share_uid, ret_error);
                        if (r < 0)
                                return r;
                } else if (streq(key, "namespaces")) {
                        r = parse_namespaces(v, rs, ret_error);
                        if (r < 0)
                                return r;
                } else if (streq(key, "rlimits")) {
                        r = parse_rlimits(v, &rs->rlimits, ret_error);
                        if (r < 0)
                                return r;
                } else
                        return fail(ret_error, parent, key, "unknown key");
        }

        if (rs->uid_min > rs->uid_max)
                return fail(ret_error, parent, "uid_max",
                            "must not be below restrict.uid_min (%u > %u)", (unsigned)rs->uid_min,
                            (unsigned)rs->uid_max);
        if (rs->mode != QDM_RESTRICT_JAIL) {
                if (rs->unshare_net)
                        return fail(ret_error, "restrict.namespaces", "net",
                                    "needs restrict.mode \"jail\"");
                if (rs->unshare_pid)
                        return fail(ret_error, "restrict.namespaces", "pid",
                                    "needs restrict.mode \"jail\"");
        }
        return 0;
}

static int parse_disk(json_object *obj, const char *parent, qdm_disk *d, char **ret_error)
{
        int r;

        if (!json_object_is_type(obj, json_type_object))
                return fail(ret_error, parent, NULL, "expected an object, got %s", json_kind(obj));
        json_object_object_foreach(obj, key, v)
        {
                if (streq(key, "path")) {
                        r = parse_file_path(v, parent, key, true, &d->path, &d->block_device,
                                            ret_error);
                } else if (streq(key, "format")) {
                        static const char *const formats[] = {"raw", "qcow2", NULL};
                        unsigned i;

                        r = get_choice(v, parent, key, formats, "\"raw\" or \"qcow2\"", &i,
                                       ret_error);
                        if (r < 0)
                                return r;
                        d->format = strdup(formats[i]);
                        if (!d->format)
                                return -ENOMEM;
                } else if (streq(key, "readonly"))
                        r = get_bool(v, parent, key, &d->readonly, ret_error);
                else
                        return fail(ret_error, parent, key, "unknown key");
                if (r < 0)
                        return r;
        }
        if (!d->path)
                return fail(ret_error, parent, "path", "is required");
        if (!d->format) {
                d->format = strdup("raw");
                if (!d->format)
                        return -ENOMEM;
        }
        return 0;
}

static int parse_disks(json_object *arr, qdm_model *m, char **ret_error)
{
        size_t n;
        int r;

        r = get_array(arr, NULL, "disks", QDM_CONFIG_MAX_DISKS, &n, ret_error);
        if (r < 0)
                return r;
        m->disks = calloc(n ? n : 1, sizeof(qdm_disk));
        if (!m->disks)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char parent[48];

                snprintf(parent, sizeof(parent), "disks[%zu]", i);
                m->n_disks = i + 1; /* so that qdm_model_free() frees what was parsed */
                r = parse_disk(json_object_array_get_idx(arr, i), parent, &m->disks[i], ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_extra_args(json_object *arr, qdm_model *m, char **ret_error)
{
        size_t n;
        int r;

        r = get_array(arr, NULL, "extra_args", QDM_CONFIG_MAX_EXTRA, &n, ret_error);
        if (r < 0)
                return r;
        m->extra_args = calloc(n + 1, sizeof(char *));
        if (!m->extra_args)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char parent[48];

                snprintf(parent, sizeof(parent), "extra_args[%zu]", i);
                r = dup_string(json_object_array_get_idx(arr, i), parent, NULL,
                               QDM_CONFIG_MAX_STRING, &m->extra_args[i], ret_error);
                if (r < 0)
                        return r;
                m->n_extra_args = i + 1;
                if (m->extra_args[i][0] == '\0')
                        return fail(ret_error, parent, NULL, "must not be empty");
        }
        return 0;
}

static int parse_root(json_object *root, qdm_model *m, char **ret_error)
{
        uint64_t u;
        int r = 0;

        json_object_object_foreach(root, key, v)
        {
                if (streq(key, "name")) {
                        r = dup_string(v, NULL, key, NAME_MAX_LEN, &m->name, ret_error);
                        if (r < 0)
                                return r;
                        if (!config_name_valid(m->name))
                                return fail(ret_error, NULL, key,
                                            "must be 1-%d characters of [A-Za-z0-9_.-], not "
                                            "starting with '.'",
                                            NAME_MAX_LEN);
                } else if (streq(key, "qemu")) {
                        const char *s;

                        r = get_string(v, NULL, key, PATH_MAX - 1, &s, ret_error);
                        if (r < 0)
                                return r;
                        if (s[0] == '\0')
                                return fail(ret_error, NULL, key, "must not be empty");
                        r = resolve_qemu(s, &m->qemu, ret_error);
                } else if (streq(key, "machine")) {
                        r = dup_string(v, NULL, key, MACHINE_MAX_LEN, &m->machine, ret_error);
                        if (r < 0)
                                return r;
                        if (m->machine[0] == '\0' || !charset_ok(m->machine, false))
                                return fail(ret_error, NULL, key,
                                            "must be 1-%d characters of [a-z0-9_.-]",
                                            MACHINE_MAX_LEN);
                } else if (streq(key, "accel")) {
                        /* In qdm_accel order. */
                        static const char *const accels[] = {"auto", "kvm", "tcg", NULL};
                        unsigned i;

                        r = get_choice(v, NULL, key, accels, "\"auto\", \"kvm\" or \"tcg\"", &i,
                                       ret_error);
                        if (r >= 0)
                                m->accel = (qdm_accel)i;
                } else if (streq(key, "memory_mib")) {
                        /* 0 is accepted and means "QEMU's default", like omitting it. */
                        r = get_uint(v, NULL, key, 0, 1048576, &m->memory_mib, ret_error);
                } else if (streq(key, "vcpus")) {
                        r = get_uint(v, NULL, key, 1, 288, &u, ret_error);
                        if (r >= 0)
                                m->vcpus = (unsigned)u;
                } else if (streq(key, "kernel"))
                        r = parse_file_path(v, NULL, key, false, &m->kernel, NULL, ret_error);
                else if (streq(key, "initrd"))
                        r = parse_file_path(v, NULL, key, false, &m->initrd, NULL, ret_error);
                else if (streq(key, "append"))
                        r = dup_string(v, NULL, key, QDM_CONFIG_MAX_STRING, &m->append, ret_error);
                else if (streq(key, "disks"))
                        r = parse_disks(v, m, ret_error);
                else if (streq(key, "restrict"))
                        r = parse_restrict(v, &m->restrict_, ret_error);
                else if (streq(key, "start_timeout_ms"))
                        r = get_uint(v, NULL, key, 1, 3600000, &m->start_timeout_ms, ret_error);
                else if (streq(key, "extra_args"))
                        r = parse_extra_args(v, m, ret_error);
                else
                        return fail(ret_error, NULL, key, "unknown key");
                if (r < 0)
                        return r;
        }

        if (!m->name)
                return fail(ret_error, NULL, "name", "is required");
        if (m->initrd && !m->kernel)
                return fail(ret_error, NULL, "initrd", "requires \"kernel\"");
        if (m->append && !m->kernel)
                return fail(ret_error, NULL, "append", "requires \"kernel\"");
        /* RLIMIT_FSIZE kills a process that writes past that offset of any regular file (block
         * devices are exempt), so libxl's 256 KiB cannot stand beside a writable file-backed
         * disk: such a disk makes the default "unlimited", and asking for a limit is an error. */
        for (size_t i = 0; i < m->n_disks; i++) {
                if (m->disks[i].readonly || m->disks[i].block_device)
                        continue;
                if (!m->restrict_.rlimits.fsize_set)
                        m->restrict_.rlimits.fsize = RLIM_INFINITY;
                else if (m->restrict_.rlimits.fsize != RLIM_INFINITY &&
                         m->restrict_.mode != QDM_RESTRICT_NONE)
                        return fail(ret_error, "restrict.rlimits", "fsize",
                                    "QEMU would be killed once the guest writes past byte %llu "
                                    "of disks[%zu], a writable file: use \"unlimited\" or make "
                                    "the disk readonly",
                                    (unsigned long long)m->restrict_.rlimits.fsize, i);
        }
        /* The mode may come after extra_args in the document: check them now that it is known. */
        if (m->n_extra_args > 0) {
                r = check_extra_args(m->extra_args, m->n_extra_args, m->restrict_.mode, ret_error);
                if (r < 0)
                        return r;
        }
        if (!m->qemu) {
                r = resolve_qemu(DEFAULT_QEMU, &m->qemu, ret_error);
                if (r < 0)
                        return r;
        }
        if (!m->machine) {
                m->machine = strdup("none");
                if (!m->machine)
                        return -ENOMEM;
        }
        return 0;
}

static qdm_model *model_new(void)
{
        qdm_model *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        m->accel = QDM_ACCEL_AUTO;
        m->restrict_ = (qdm_restrict){
                /* The strongest restriction by default: QEMU never runs as root. */
                .mode = QDM_RESTRICT_JAIL,
                .uid_min = DEFAULT_UID_MIN,
                .uid_max = DEFAULT_UID_MAX,
                .rlimits =
                        {
                                .fsize = 256 * 1024,
                                .core = 0,
                                .msgqueue = 0,
                                .locks = 0,
                                .memlock = 0,
                                .nofile = RLIM_INFINITY,
                        },
        };
        m->start_timeout_ms = DEFAULT_START_TIMEOUT_MS;
        return m;
}

void qdm_model_free(qdm_model *m)
{
        if (!m)
                return;
        free(m->name);
        free(m->qemu);
        free(m->machine);
        free(m->kernel);
        free(m->initrd);
        free(m->append);
        for (size_t i = 0; i < m->n_disks; i++) {
                free(m->disks[i].path);
                free(m->disks[i].format);
        }
        free(m->disks);
        if (m->extra_args)
                for (size_t i = 0; m->extra_args[i]; i++)
                        free(m->extra_args[i]);
        free(m->extra_args);
        free(m);
}

static void qdm_model_freep(qdm_model **m)
{
        qdm_model_free(*m);
}

/* ---------------------------------------------------------------------------------------- */
/* The public API. */

static int parse_json(const char *text, size_t len, json_object **ret_root, char **ret_error)
{
        struct json_tokener *tok;
        enum json_tokener_error e;
        json_object *root;
        size_t end, line, column;
        size_t i;

        for (i = 0; i < len && strchr(" \t\n\r", text[i]); i++)
                ;
        if (i == len)
                return fail(ret_error, NULL, NULL, "empty");

        /* json-c refuses to push a level when depth >= max - 1: max is the limit plus one. */
        tok = json_tokener_new_ex(QDM_CONFIG_MAX_DEPTH + 1);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        root = json_tokener_parse_ex(tok, text, (int)len);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (!root && e == json_tokener_continue && end == len) {
                /* A top-level number or literal ends only where the input does: say so with
                 * the NUL json_tokener_parse() also passes. Incomplete text stays an error. */
                root = json_tokener_parse_ex(tok, "", 1);
                e = json_tokener_get_error(tok);
        }
        json_tokener_free(tok);

        if (e == json_tokener_success && end == len) {
                *ret_root = root; /* NULL is JSON's null */
                return 0;
        }
        json_object_put(root);
        if (e == json_tokener_continue || e == json_tokener_error_parse_eof)
                return fail(ret_error, NULL, NULL, "invalid JSON: unexpected end of input");
        if (e == json_tokener_error_depth)
                return fail(ret_error, NULL, NULL, "nested deeper than %d", QDM_CONFIG_MAX_DEPTH);
        offset_to_line_column(text, end < len ? end : len, &line, &column);
        if (e == json_tokener_success)
                return fail(ret_error, NULL, NULL,
                            "invalid JSON at line %zu, column %zu: trailing characters", line,
                            column);
        return fail(ret_error, NULL, NULL, "invalid JSON at line %zu, column %zu: %s", line, column,
                    json_tokener_error_desc(e));
}

QDM_EXPORT int qdm_config_new_from_json(const char *text, size_t len, qdm_config **ret_config,
                                        char **ret_error)
{
        _cleanup_(qdm_model_freep) qdm_model *m = NULL;
        json_object *root = NULL;
        const char *nul;
        qdm_config *c;
        int r;

        assert_return(text || len == 0, -EINVAL);
        assert_return(ret_config, -EINVAL);

        if (len > QDM_CONFIG_MAX_SIZE) {
                r = fail(ret_error, NULL, NULL, "larger than %d bytes", QDM_CONFIG_MAX_SIZE);
                return r == -EINVAL ? -EFBIG : r;
        }
        if (len == 0)
                return fail(ret_error, NULL, NULL, "empty");
        nul = memchr(text, '\0', len);
        if (nul)
                return fail(ret_error, NULL, NULL, "NUL byte at offset %zu", (size_t)(nul - text));

        /* json-c lets overlong forms, surrogates and code points above U+10FFFF through. */
        size_t bad = qmp_utf8_check(text, len);
        if (bad < len) {
                size_t line, column;
                offset_to_line_column(text, bad, &line, &column);
                return fail(ret_error, NULL, NULL,
                            "invalid utf-8 at line %zu, column %zu (an overlong form, a "
                            "surrogate or a code point above U+10FFFF)",
                            line, column);
        }
        r = parse_json(text, len, &root, ret_error);
        if (r < 0)
                return r;
        r = scan_document(text, len, ret_error);
        if (r < 0)
                goto finish;
        if (!json_object_is_type(root, json_type_object)) {
                r = fail(ret_error, NULL, NULL, "expected an object, got %s", json_kind(root));
                goto finish;
        }
        m = model_new();
        if (!m) {
                r = -ENOMEM;
                goto finish;
        }
        r = parse_root(root, m, ret_error);
        if (r < 0)
                goto finish;

        c = calloc(1, sizeof(*c));
        if (!c) {
                r = -ENOMEM;
                goto finish;
        }
        c->n_ref = 1;
        c->model = TAKE_PTR(m);
        *ret_config = c;
        r = 0;
finish:
        json_object_put(root);
        return r;
}

QDM_EXPORT int qdm_config_new_from_file(const char *path, qdm_config **ret_config, char **ret_error)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        assert_return(path, -EINVAL);
        assert_return(ret_config, -EINVAL);

        /* O_NONBLOCK: a FIFO must not block the open; only regular files are read. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
                fd = safe_close(fd);
                errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        }
        if (fd < 0) {
                int r = negative_errno();
                if (ret_error && asprintf(ret_error, "%s: %s", path,
                                          r == -EINVAL ? "not a regular file" : strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        /* One byte more than allowed tells "too large" from "exactly the limit". */
        buf = malloc(QDM_CONFIG_MAX_SIZE + 1);
        if (!buf)
                return -ENOMEM;
        while (len < QDM_CONFIG_MAX_SIZE + 1) {
                ssize_t n = read(fd, buf + len, QDM_CONFIG_MAX_SIZE + 1 - len);
                if (n < 0) {
                        int r;
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        if (ret_error && asprintf(ret_error, "%s: %s", path, strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        return qdm_config_new_from_json(buf, len, ret_config, ret_error);
}

QDM_EXPORT qdm_config *qdm_config_ref(qdm_config *config)
{
        if (config)
                config->n_ref++;
        return config;
}

QDM_EXPORT qdm_config *qdm_config_free(qdm_config *config)
{
        if (!config || --config->n_ref > 0)
                return NULL;
        qdm_model_free(config->model);
        free(config);
        return NULL;
}

QDM_EXPORT const char *qdm_config_get_name(const qdm_config *config)
{
        assert_return(config, NULL);
        return config->model->name;
}

const qdm_model *qdm_config_model(const qdm_config *config)
{
        assert(config);
        return config->model;
}

const char *qdm_restrict_mode_to_string(qdm_restrict_mode mode)
{
        switch (mode) {
        case QDM_RESTRICT_NONE:
                return "none";
        case QDM_RESTRICT_QEMU:
                return "qemu";
        case QDM_RESTRICT_JAIL:
                return "jail";
        }
        return "unknown";
}

const char *qdm_accel_to_string(qdm_accel accel)
{
        switch (accel) {
        case QDM_ACCEL_AUTO:
                return "auto";
        case QDM_ACCEL_KVM:
                return "kvm";
        case QDM_ACCEL_TCG:
                return "tcg";
        }
        return "unknown";
}

int config_check_privileges(const qdm_model *m, char **ret_error)
{
        assert(m);

        if (m->restrict_.mode == QDM_RESTRICT_NONE || geteuid() == 0)
                return 0;
        if (ret_error &&
            asprintf(ret_error,
                     "restrict.mode: \"%s\" needs root (run as root or set restrict.mode to "
                     "\"none\")",
                     qdm_restrict_mode_to_string(m->restrict_.mode)) < 0)
                return -ENOMEM;
        return -EPERM;
}
