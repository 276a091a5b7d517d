/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fake-qmp: a scriptable fake QMP server for qdm's tests (see README.md in this directory).
 *
 * It does on demand what real QEMU does only by accident: wedge its monitor forever like
 * QEMU < 4.2, hand an abandoned reply to the next client like QEMU 7.2, reorder replies,
 * split or merge writes, and send garbage, stale ids, floods, endless lines, deep nesting
 * and invalid UTF-8.
 *
 * It is standalone on purpose: it must share no code (and so no bugs) with libqdm's client.
 * One thread around one ppoll(). Like QEMU's monitor it serves one connection at a time and
 * executes one command at a time; the kernel backlog holds the next client. Output is
 * buffered per connection and written non-blocking, so a client that stops reading never
 * stalls the timers. Every fd is CLOEXEC and nothing is ever spawned. It exits on
 * SIGTERM/SIGINT/SIGHUP (signalfd) and when its parent dies (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_     __attribute__((noreturn))

#define USEC_PER_MSEC  UINT64_C(1000)
#define MAX_MESSAGE    (8u << 20)  /* bytes of one incoming command */
#define MAX_DEPTH      64          /* JSON nesting of one incoming command */
#define QUEUE_MAX      8           /* QEMU's QMP_REQ_QUEUE_LEN_MAX: stop reading beyond */
#define FILL_LOW_WATER (1u << 20)  /* flood/endless refill the output below this */
#define ENDLESS_TOTAL  (64u << 20) /* bytes of the line that never ends */
#define ENDLESS_CHUNK  (64u << 10)
#define FLOOD_BATCH    256
#define SPLIT_GAP_US   100
#define QUIT_GRACE_US  (2000 * USEC_PER_MSEC)
#define DEEP_LEVELS    100000
#define X_SLEEP_MAX    3600000
#define X_EVENTS_MAX   1000000
#define X_BIG_MAX      (256 << 20)
#define ID_LOG_MAX     200

#define GREETING                                                                          \
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
        "\"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* garbage mode: before the greeting, and before every reply (non-JSON, invalid UTF-8, array) */
static const char garbage_pre[] = "\xff\xfe\x00 garbage before the greeting \x01\x7f\r\n";
static const char garbage_lines[] = "this is not JSON }{ ][\r\n"
                                    "{\"bad\": \"\xc3\x28\xa0\xa1\xff\"}\r\n"
                                    "[1, 2, 3]\r\n";
static const char stale_pre[] = "{\"return\": {\"stale\": true}, \"id\": \"stale-pre\"}\r\n";
static const char stale_post[] = "{\"return\": {\"stale\": true}, \"id\": \"stale-0\"}\r\n"
                                 "{\"return\": {\"stale\": true}}\r\n";
static const char badutf8_return[] = "{\"text\": \"bad \xc3\x28 \xa0\xa1 \xff\xfe end\"}";

enum mode {
        MODE_NORMAL,
        MODE_SLOW,
        MODE_REORDER,
        MODE_EVENTS,
        MODE_STALE,
        MODE_WEDGE,
        MODE_MISROUTE,
        MODE_SPLIT,
        MODE_MERGE,
        MODE_GARBAGE,
        MODE_ENDLESS,
        MODE_FLOOD,
        MODE_DEEP,
        MODE_BADUTF8,
        MODE_GREET_TWICE,
        MODE_CLOSE_MID,
        MODE_SILENT,
        MODE_NOGREET,
        N_MODES,
};

static const char *const mode_names[N_MODES] = {
        [MODE_NORMAL] = "normal",
        [MODE_SLOW] = "slow",
        [MODE_REORDER] = "reorder",
        [MODE_EVENTS] = "events",
        [MODE_STALE] = "stale",
        [MODE_WEDGE] = "wedge",
        [MODE_MISROUTE] = "misroute",
        [MODE_SPLIT] = "split",
        [MODE_MERGE] = "merge",
        [MODE_GARBAGE] = "garbage",
        [MODE_ENDLESS] = "endless",
        [MODE_FLOOD] = "flood",
        [MODE_DEEP] = "deep",
        [MODE_BADUTF8] = "badutf8",
        [MODE_GREET_TWICE] = "greet-twice",
        [MODE_CLOSE_MID] = "close-mid",
        [MODE_SILENT] = "silent",
        [MODE_NOGREET] = "nogreet",
};

/* --delay-ms when not given; what it means depends on the mode (see usage()) */
static const unsigned mode_default_delay_ms[N_MODES] = {
        [MODE_SLOW] = 100, [MODE_REORDER] = 100, [MODE_WEDGE] = 200,
        [MODE_MERGE] = 20, [MODE_FLOOD] = 1000,
};

/* All deadlines are absolute CLOCK_MONOTONIC microseconds; 0 means disarmed. */
enum timer {
        T_GREETING,  /* --greeting-delay-ms after accept */
        T_EXEC,      /* the executing command finishes */
        T_REORDER,   /* reorder: a lone pending reply is released */
        T_MERGE,     /* merge: held output is written even if it is a single message */
        T_SPLIT,     /* split: gap before the next one-byte write */
        T_FLOOD_END, /* flood: stop emitting events */
        T_QUIT,      /* quit: give up flushing and exit */
        N_TIMERS,
};

/* A byte queue: data[head, len) is pending. */
struct buf {
        char *data;
        size_t head, len, cap;
};

struct cmd {
        struct cmd *next;
        char *name;        /* the "execute" member; NULL when the input was rejected */
        char *error;       /* GenericError desc for rejected input, NULL when well-formed */
        bool has_id;       /* "id" present (possibly null) */
        json_object *id;   /* owned */
        json_object *args; /* owned, NULL when absent */
        char *id_log;      /* the id as JSON for the log, "-" when absent */
        uint64_t conn;     /* serial of the connection it came from */
        bool quit;         /* executing it asked the server to exit */
        struct buf blob;   /* rendered events + reply, waiting to be delivered */
};

struct mark {
        uint64_t end; /* absolute output offset just past the reply */
        char *id_log;
};

struct conn {
        int fd;
        uint64_t serial;
        bool greeted;
        bool ignore_input;       /* commands are read, logged and dropped */
        bool close_when_flushed; /* quit, close-mid */
        bool special_done;       /* close-mid / endless already fired */
        json_tokener *tok;
        size_t tok_fed; /* bytes of the current incomplete message */
        bool skip_line; /* resynchronising after malformed input */
        struct buf out;
        uint64_t out_written; /* bytes of out ever written to the socket */
        struct mark *marks;   /* replies queued and not yet fully written, in order */
        size_t n_marks, cap_marks;
        unsigned merge_msgs;
        bool merge_open;
        bool flood;
        uint64_t flood_sent;
        size_t endless_left;
};

static struct {
        enum mode mode;
        unsigned delay_ms;
        unsigned greeting_delay_ms;
        unsigned long max_clients; /* 0: unlimited */
        const char *listen_path;
        ino_t listen_ino; /* the socket we bound, so we unlink only our own */
        dev_t listen_dev;
        int listen_fd, sig_fd, log_fd;
        struct conn *conn;
        uint64_t accepted, served;
        uint64_t negotiated_conn; /* serial of the session that passed qmp_capabilities */
        const char *status;
        bool wedged, quitting, stop;
        struct cmd *queue, **queue_tail; /* read, not yet executing (current connection only) */
        unsigned queue_len;
        struct cmd *exec;       /* executing; outlives its connection, like QEMU's */
        struct cmd *reorder[2]; /* reorder: executed, replies held back */
        unsigned n_reorder;
        struct cmd *stash, **stash_tail; /* misroute: replies waiting for the next greeting */
        uint64_t timers[N_TIMERS];
} srv = {
        .listen_fd = -1,
        .sig_fd = -1,
        .log_fd = -1,
        .status = "prelaunch",
        .queue_tail = &srv.queue,
        .stash_tail = &srv.stash,
};

static _noreturn_ void die_oom(void)
{
        fputs("fake-qmp: out of memory\n", stderr);
        abort();
}

static void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n);
        if (!p && n)
                die_oom();
        return p;
}

static void *xcalloc(size_t n)
{
        void *p = calloc(1, n);
        if (!p)
                die_oom();
        return p;
}

static char *xstrdup(const char *s)
{
        char *p = strdup(s);
        if (!p)
                die_oom();
        return p;
}

static uint64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void arm(enum timer t, uint64_t after_us)
{
        srv.timers[t] = now_us() + after_us + 1;
}

static _printf_(1, 2) void log_line(const char *fmt, ...)
{
        char line[512];
        va_list ap;
        int n;

        if (srv.log_fd < 0)
                return;
        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n > sizeof(line) - 2)
                n = sizeof(line) - 2;
        line[n++] = '\n';
        /* One write per line on an O_APPEND fd: lines never interleave. */
        while (write(srv.log_fd, line, n) < 0 && errno == EINTR)
                ;
}

static size_t buf_pending(const struct buf *b)
{
        return b->len - b->head;
}

static const char *buf_head(const struct buf *b)
{
        return b->data + b->head;
}

/* Room for n more bytes at data + len. */
static char *buf_reserve(struct buf *b, size_t n)
{
        if (b->head == b->len)
                b->head = b->len = 0;
        if (b->cap - b->len >= n)
                return b->data + b->len;
        if (b->head > 0) {
                memmove(b->data, b->data + b->head, b->len - b->head);
                b->len -= b->head;
                b->head = 0;
        }
        if (b->cap - b->len < n) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap - b->len < n) {
                        if (cap > SIZE_MAX / 2)
                                die_oom();
                        cap *= 2;
                }
                b->data = xrealloc(b->data, cap);
                b->cap = cap;
        }
        return b->data + b->len;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
        if (n == 0)
                return;
        memcpy(buf_reserve(b, n), p, n);
        b->len += n;
}

static void buf_puts(struct buf *b, const char *s)
{
        buf_append(b, s, strlen(s));
}

static void buf_fill(struct buf *b, char c, size_t n)
{
        memset(buf_reserve(b, n), c, n);
        b->len += n;
}

static _printf_(2, 3) void buf_printf(struct buf *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf_reserve(b, 256), 256, fmt, ap);
        va_end(ap);
        if (n < 0)
                abort();
        if (n >= 256) {
                va_start(ap, fmt);
                vsnprintf(buf_reserve(b, n + 1), n + 1, fmt, ap);
                va_end(ap);
        }
        b->len += n;
}

static void buf_consume(struct buf *b, size_t n)
{
        b->head += n;
        if (b->head == b->len)
                b->head = b->len = 0;
}

static void buf_free(struct buf *b)
{
        free(b->data);
        *b = (struct buf){0};
}

static void buf_json(struct buf *b, json_object *o)
{
        buf_puts(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void buf_json_string(struct buf *b, const char *s)
{
        json_object *o = json_object_new_string(s);
        if (!o)
                die_oom();
        buf_json(b, o);
        json_object_put(o);
}

/* QEMU's event layout: timestamp first. data_json may be NULL. */
static void buf_event(struct buf *b, const char *name, const char *data_json)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        buf_printf(b,
                   "{\"timestamp\": {\"seconds\": %lld, \"microseconds\": %ld}, \"event\": \"%s\"",
                   (long long)ts.tv_sec, ts.tv_nsec / 1000, name);
        if (data_json) {
                buf_puts(b, ", \"data\": ");
                buf_puts(b, data_json);
        }
        buf_puts(b, "}\r\n");
}

static void buf_reply_tail(struct buf *b, const struct cmd *c)
{
        if (c->has_id) {
                buf_puts(b, ", \"id\": ");
                buf_json(b, c->id);
        }
        buf_puts(b, "}\r\n");
}

static void reply_return(struct buf *b, const struct cmd *c, const char *ret_json)
{
        buf_puts(b, "{\"return\": ");
        buf_puts(b, ret_json);
        buf_reply_tail(b, c);
}

static _printf_(4, 5) void reply_error(struct buf *b, const struct cmd *c, const char *class,
                                       const char *fmt, ...)
{
        char desc[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(desc, sizeof(desc), fmt, ap);
        va_end(ap);
        buf_printf(b, "{\"error\": {\"class\": \"%s\", \"desc\": ", class);
        buf_json_string(b, desc);
        buf_puts(b, "}");
        buf_reply_tail(b, c);
}

static void cmd_free(struct cmd *c)
{
        if (!c)
                return;
        free(c->name);
        free(c->error);
        json_object_put(c->id);
        json_object_put(c->args);
        free(c->id_log);
        buf_free(&c->blob);
        free(c);
}

static struct conn *conn_of(const struct cmd *c)
{
        return srv.conn && srv.conn->serial == c->conn ? srv.conn : NULL;
}

/* Queue bytes for the client; merge mode holds them until two messages are waiting. */
static void conn_queue(struct conn *k, const char *data, size_t len)
{
        buf_append(&k->out, data, len);
        if (srv.mode != MODE_MERGE)
                return;
        for (const char *p = data, *end = data + len; (p = memchr(p, '\n', end - p)); p++)
                k->merge_msgs++;
        if (k->merge_msgs >= 2)
                k->merge_open = true;
        else if (!k->merge_open && !srv.timers[T_MERGE])
                arm(T_MERGE, srv.delay_ms * USEC_PER_MSEC);
}

static void conn_queue_str(struct conn *k, const char *s)
{
        conn_queue(k, s, strlen(s));
}

static void conn_queue_event(struct conn *k, const char *name, const char *data_json)
{
        struct buf b = {0};

        buf_event(&b, name, data_json);
        conn_queue(k, buf_head(&b), buf_pending(&b));
        buf_free(&b);
}

/* Queue a command's rendered blob; "REPLY id" is logged once its last byte is written. */
static void conn_queue_reply(struct conn *k, struct cmd *c)
{
        conn_queue(k, buf_head(&c->blob), buf_pending(&c->blob));
        if (k->n_marks == k->cap_marks) {
                k->cap_marks = k->cap_marks ? 2 * k->cap_marks : 8;
                k->marks = xrealloc(k->marks, k->cap_marks * sizeof(*k->marks));
        }
        k->marks[k->n_marks++] = (struct mark){
                .end = k->out_written + buf_pending(&k->out),
                .id_log = xstrdup(c->id_log),
        };
        if (c->quit) {
                k->ignore_input = true;
                k->close_when_flushed = true;
        }
}

/* QEMU 7.2: an abandoned command's reply reaches whoever holds the monitor next. */
static void misroute(struct conn *k, struct cmd *c)
{
        log_line("MISROUTE %s %llu", c->id_log, (unsigned long long)k->serial);
        conn_queue_reply(k, c);
}

/* A finished command's blob goes to the client that sent it, or (misroute) to the next one. */
static void deliver(struct cmd *c)
{
        struct conn *k = srv.conn;

        if (k && k->serial == c->conn) {
                conn_queue_reply(k, c);
        } else if (srv.mode == MODE_MISROUTE && k && k->greeted) {
                misroute(k, c);
        } else if (srv.mode == MODE_MISROUTE) {
                log_line("STASH %s", c->id_log);
                c->next = NULL;
                *srv.stash_tail = c;
                srv.stash_tail = &c->next;
                return;
        } else {
                log_line("DROP %s", c->id_log);
                if (c->quit)
                        srv.stop = true;
        }
        cmd_free(c);
}

static bool arg_int(struct buf *b, const struct cmd *c, const char *key, int64_t max, int64_t *ret)
{
        json_object *v;

        if (!c->args || !json_object_object_get_ex(c->args, key, &v)) {
                reply_error(b, c, "GenericError", "Parameter '%s' is missing", key);
                return false;
        }
        if (!json_object_is_type(v, json_type_int)) {
                reply_error(b, c, "GenericError",
                            "Invalid parameter type for '%s', expected: integer", key);
                return false;
        }
        *ret = json_object_get_int64(v);
        if (*ret < 0 || *ret > max) {
                reply_error(b, c, "GenericError", "Parameter '%s' expects 0 to %lld", key,
                            (long long)max);
                return false;
        }
        return true;
}

static bool caps_args_valid(struct buf *b, const struct cmd *c)
{
        json_object *enable;

        if (!c->args)
                return true;
        json_object_object_foreach(c->args, key, val)
        {
                (void)val;
                if (strcmp(key, "enable") != 0) {
                        reply_error(b, c, "GenericError", "Parameter '%s' is unexpected", key);
                        return false;
                }
        }
        if (!json_object_object_get_ex(c->args, "enable", &enable))
                return true;
        if (!json_object_is_type(enable, json_type_array))
                goto invalid;
        for (size_t i = 0; i < json_object_array_length(enable); i++) {
                json_object *cap = json_object_array_get_idx(enable, i);
                if (!json_object_is_type(cap, json_type_string) ||
                    strcmp(json_object_get_string(cap), "oob") != 0)
                        goto invalid;
        }
        return true;
invalid:
        reply_error(b, c, "GenericError", "Parameter 'enable' expects a list of QMPCapability");
        return false;
}

static void start_flood(struct cmd *c)
{
        struct conn *k = conn_of(c);

        if (!k)
                return;
        k->flood = true;
        arm(T_FLOOD_END, srv.delay_ms * USEC_PER_MSEC);
        log_line("FLOOD-START %llu", (unsigned long long)k->serial);
}

static void stop_flood(struct conn *k)
{
        if (!k->flood)
                return;
        k->flood = false;
        srv.timers[T_FLOOD_END] = 0;
        log_line("FLOOD %llu", (unsigned long long)k->flood_sent);
}

/* The command's effect, and its events and reply appended to b. */
static void execute_command(struct cmd *c, struct buf *b)
{
        int64_t n;

        if (c->error) {
                reply_error(b, c, "GenericError", "%s", c->error);
                return;
        }
        if (c->conn != srv.negotiated_conn) {
                if (strcmp(c->name, "qmp_capabilities") != 0) {
                        reply_error(b, c, "CommandNotFound",
                                    "Expecting capabilities negotiation with 'qmp_capabilities'");
                        return;
                }
                if (!caps_args_valid(b, c))
                        return;
                srv.negotiated_conn = c->conn;
                reply_return(b, c, "{}");
                if (srv.mode == MODE_FLOOD)
                        start_flood(c);
                return;
        }

        if (strcmp(c->name, "qmp_capabilities") == 0) {
                reply_error(b, c, "CommandNotFound",
                            "Capabilities negotiation is already complete, command ignored");
        } else if (strcmp(c->name, "query-status") == 0) {
                bool running = strcmp(srv.status, "running") == 0;
                buf_printf(b,
                           "{\"return\": {\"status\": \"%s\", \"singlestep\": false, "
                           "\"running\": %s}",
                           srv.status, running ? "true" : "false");
                buf_reply_tail(b, c);
        } else if (strcmp(c->name, "cont") == 0) {
                if (strcmp(srv.status, "running") != 0) {
                        srv.status = "running";
                        buf_event(b, "RESUME", NULL);
                }
                reply_return(b, c, "{}");
        } else if (strcmp(c->name, "stop") == 0) {
                /* Like QEMU: stopping a VM that is not running (prelaunch) changes nothing. */
                if (strcmp(srv.status, "running") == 0) {
                        srv.status = "paused";
                        buf_event(b, "STOP", NULL);
                }
                reply_return(b, c, "{}");
        } else if (strcmp(c->name, "query-version") == 0) {
                reply_return(b, c,
                             "{\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
                             "\"package\": \"fake\"}");
        } else if (strcmp(c->name, "x-sleep") == 0) {
                /* the sleep itself happened before execution: see exec_delay_us() */
                if (arg_int(b, c, "ms", X_SLEEP_MAX, &n))
                        reply_return(b, c, "{}");
        } else if (strcmp(c->name, "x-echo") == 0) {
                buf_puts(b, "{\"return\": ");
                if (c->args)
                        buf_json(b, c->args);
                else
                        buf_puts(b, "{}");
                buf_reply_tail(b, c);
        } else if (strcmp(c->name, "x-events") == 0) {
                if (!arg_int(b, c, "count", X_EVENTS_MAX, &n))
                        return;
                for (int64_t i = 0; i < n; i++) {
                        char data[48];
                        snprintf(data, sizeof(data), "{\"n\": %lld}", (long long)i);
                        buf_event(b, "X_EVENT", data);
                }
                reply_return(b, c, "{}");
        } else if (strcmp(c->name, "x-big") == 0) {
                if (!arg_int(b, c, "bytes", X_BIG_MAX, &n))
                        return;
                buf_puts(b, "{\"return\": \"");
                buf_fill(b, 'a', (size_t)n);
                buf_puts(b, "\"");
                buf_reply_tail(b, c);
        } else if (strcmp(c->name, "quit") == 0) {
                reply_return(b, c, "{}");
                buf_event(b, "SHUTDOWN", "{\"guest\": false, \"reason\": \"host-qmp-quit\"}");
                c->quit = true;
                srv.quitting = true;
                arm(T_QUIT, QUIT_GRACE_US);
                if (conn_of(c)) {
                        conn_of(c)->ignore_input = true;
                        stop_flood(conn_of(c));
                }
        } else {
                reply_error(b, c, "CommandNotFound", "The command %s has not been found", c->name);
        }
}

/* execute_command() plus what the mode adds around or instead of the reply. */
static void render_command(struct cmd *c)
{
        bool after_caps = c->conn == srv.negotiated_conn;
        struct buf *b = &c->blob;

        if (srv.mode == MODE_GARBAGE)
                buf_append(b, garbage_lines, sizeof(garbage_lines) - 1);
        if (srv.mode == MODE_MERGE)
                buf_event(b, "X_MERGE", NULL);
        if (after_caps && (srv.mode == MODE_DEEP || srv.mode == MODE_BADUTF8)) {
                struct buf effects = {0};
                execute_command(c, &effects); /* state changes and quit still happen */
                buf_free(&effects);
                buf_puts(b, "{\"return\": ");
                if (srv.mode == MODE_DEEP) {
                        buf_fill(b, '[', DEEP_LEVELS);
                        buf_fill(b, ']', DEEP_LEVELS);
                } else {
                        buf_puts(b, badutf8_return);
                }
                buf_reply_tail(b, c);
                return;
        }
        execute_command(c, b);
}

static void drop_queue(void)
{
        while (srv.queue) {
                struct cmd *c = srv.queue;
                srv.queue = c->next;
                log_line("DROP %s", c->id_log);
                cmd_free(c);
        }
        srv.queue_tail = &srv.queue;
        srv.queue_len = 0;
}

/* close-mid and endless take over the connection on the first command after capabilities. */
static bool take_over(struct cmd *c)
{
        struct conn *k = conn_of(c);

        if ((srv.mode != MODE_CLOSE_MID && srv.mode != MODE_ENDLESS) || !k || k->special_done ||
            c->conn != srv.negotiated_conn)
                return false;
        k->special_done = true;
        k->ignore_input = true;
        if (srv.mode == MODE_CLOSE_MID) {
                render_command(c);
                conn_queue(k, buf_head(&c->blob), buf_pending(&c->blob) / 2);
                k->close_when_flushed = true;
                log_line("HALF %s", c->id_log);
        } else {
                conn_queue_str(k, "{\"return\": \"");
                k->endless_left = ENDLESS_TOTAL;
                log_line("ENDLESS %s", c->id_log);
        }
        cmd_free(c);
        drop_queue();
        return true;
}

static uint64_t exec_delay_us(const struct cmd *c)
{
        uint64_t ms = 0;

        if (srv.mode == MODE_SLOW || srv.mode == MODE_WEDGE || srv.mode == MODE_MISROUTE)
                ms += srv.delay_ms;
        if (c->name && !c->error && c->conn == srv.negotiated_conn &&
            strcmp(c->name, "x-sleep") == 0) {
                struct buf error = {0}; /* an invalid x-sleep is answered by execute_command() */
                int64_t sleep_ms;
                if (arg_int(&error, c, "ms", X_SLEEP_MAX, &sleep_ms))
                        ms += (uint64_t)sleep_ms;
                buf_free(&error);
        }
        return ms * USEC_PER_MSEC;
}

static void finish_exec(void)
{
        struct cmd *c = srv.exec;

        srv.exec = NULL;
        srv.timers[T_EXEC] = 0;
        if (take_over(c))
                return;
        render_command(c);
        deliver(c);
}

static struct cmd *queue_pop(void)
{
        struct cmd *c = srv.queue;

        srv.queue = c->next;
        if (!srv.queue)
                srv.queue_tail = &srv.queue;
        srv.queue_len--;
        c->next = NULL;
        return c;
}

/*
 * reorder: commands execute in arrival order (so qmp_capabilities still comes first), but
 * their replies are held and released newest first once two are pending.
 */
static void pump_reorder(void)
{
        while (srv.queue) {
                struct cmd *c = queue_pop();
                render_command(c);
                srv.reorder[srv.n_reorder++] = c;
                if (srv.n_reorder == 2) {
                        srv.n_reorder = 0;
                        deliver(srv.reorder[1]);
                        deliver(srv.reorder[0]);
                }
        }
        if (srv.n_reorder == 0)
                srv.timers[T_REORDER] = 0;
        else if (!srv.timers[T_REORDER])
                arm(T_REORDER, srv.delay_ms * USEC_PER_MSEC);
}

/* The monitor: one command at a time; the next starts when the previous one has finished. */
static void pump_monitor(void)
{
        if (srv.mode == MODE_REORDER) {
                pump_reorder();
                return;
        }
        while (!srv.exec && srv.queue) {
                struct cmd *c = queue_pop();
                uint64_t delay;

                srv.exec = c;
                if (srv.mode == MODE_EVENTS && conn_of(c)) {
                        json_object *data = json_object_new_object();
                        json_object_object_add(data, "command",
                                               json_object_new_string(c->name ? c->name : ""));
                        conn_queue_event(conn_of(c), "X_BETWEEN",
                                         json_object_to_json_string_ext(
                                                 data, JSON_C_TO_STRING_SPACED |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
                        json_object_put(data);
                }
                delay = exec_delay_us(c);
                if (delay) {
                        arm(T_EXEC, delay);
                        return;
                }
                finish_exec();
        }
}

/* One complete JSON value from the client (NULL for a top-level null) becomes a command. */
static struct cmd *make_cmd(struct conn *k, json_object *obj)
{
        struct cmd *c = xcalloc(sizeof(*c));
        json_object *v;

        c->conn = k->serial;
        if (!json_object_is_type(obj, json_type_object)) {
                c->error = xstrdup("QMP input must be a JSON object");
                goto out;
        }
        if (json_object_object_get_ex(obj, "id", &v)) {
                c->has_id = true;
                c->id = json_object_get(v);
        }
        json_object_object_foreach(obj, key, val)
        {
                (void)val;
                if (strcmp(key, "execute") != 0 && strcmp(key, "arguments") != 0 &&
                    strcmp(key, "id") != 0) {
                        char desc[256];
                        snprintf(desc, sizeof(desc), "QMP input member '%.64s' is unexpected", key);
                        c->error = xstrdup(desc);
                        goto out;
                }
        }
        if (!json_object_object_get_ex(obj, "execute", &v)) {
                c->error = xstrdup("QMP input lacks member 'execute'");
                goto out;
        }
        if (!json_object_is_type(v, json_type_string)) {
                c->error = xstrdup("QMP input member 'execute' must be a string");
                goto out;
        }
        c->name = xstrdup(json_object_get_string(v));
        if (json_object_object_get_ex(obj, "arguments", &v)) {
                if (!json_object_is_type(v, json_type_object)) {
                        c->error = xstrdup("QMP input member 'arguments' must be an object");
                        goto out;
                }
                c->args = json_object_get(v);
        }
out:
        if (c->has_id) {
                const char *s = json_object_to_json_string_ext(
                        c->id, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                c->id_log = strndup(s, ID_LOG_MAX);
                if (!c->id_log)
                        die_oom();
        } else {
                c->id_log = xstrdup("-");
        }
        return c;
}

static void take_cmd(struct conn *k, struct cmd *c)
{
        char name[65] = "-";

        /* the log is line-based and space-separated: keep the client's bytes from breaking it */
        if (c->name) {
                size_t i;
                for (i = 0; c->name[i] && i < sizeof(name) - 1; i++) {
                        unsigned char ch = (unsigned char)c->name[i];
                        name[i] = ch > ' ' && ch < 0x7f ? (char)ch : '?';
                }
                name[i] = 0;
        }
        log_line("CMD %s %s", name, c->id_log);
        if (k->ignore_input || srv.wedged) {
                log_line("IGNORE %s", c->id_log);
                cmd_free(c);
                return;
        }
        *srv.queue_tail = c;
        srv.queue_tail = &c->next;
        srv.queue_len++;
}

static void take_parse_error(struct conn *k, const char *desc)
{
        struct cmd *c = xcalloc(sizeof(*c));
        char text[256];

        snprintf(text, sizeof(text), "JSON parse error, %s", desc);
        c->conn = k->serial;
        c->error = xstrdup(text);
        c->id_log = xstrdup("-");
        take_cmd(k, c);
}

/*
 * A JSON stream like QEMU's: values need no newline between them. After malformed input the
 * rest of the line is skipped, so one bad line yields one error.
 */
static void conn_feed(struct conn *k, const char *data, size_t len)
{
        size_t pos = 0;

        while (pos < len) {
                enum json_tokener_error err;
                json_object *obj;
                size_t n;

                if (k->skip_line) {
                        const char *nl = memchr(data + pos, '\n', len - pos);
                        if (!nl)
                                return;
                        pos = nl - data + 1;
                        k->skip_line = false;
                        continue;
                }
                if (k->tok_fed == 0) {
                        while (pos < len && data[pos] && strchr(" \t\r\n", data[pos]))
                                pos++;
                        if (pos == len)
                                return;
                }
                n = len - pos;
                obj = json_tokener_parse_ex(k->tok, data + pos, (int)n);
                err = json_tokener_get_error(k->tok);
                if (err == json_tokener_continue) {
                        k->tok_fed += n;
                        if (k->tok_fed > MAX_MESSAGE) {
                                take_parse_error(k, "message too large");
                                json_tokener_reset(k->tok);
                                k->tok_fed = 0;
                                k->skip_line = true;
                        }
                        return;
                }
                pos += json_tokener_get_parse_end(k->tok);
                json_tokener_reset(k->tok);
                k->tok_fed = 0;
                if (err != json_tokener_success) {
                        take_parse_error(k, json_tokener_error_desc(err));
                        k->skip_line = true;
                        continue;
                }
                take_cmd(k, make_cmd(k, obj));
                json_object_put(obj);
        }
}

static void send_greeting(struct conn *k)
{
        srv.timers[T_GREETING] = 0;
        if (srv.mode == MODE_GARBAGE)
                conn_queue(k, garbage_pre, sizeof(garbage_pre) - 1);
        if (srv.mode == MODE_STALE)
                conn_queue_str(k, stale_pre);
        conn_queue_str(k, GREETING);
        if (srv.mode == MODE_GREET_TWICE)
                conn_queue_str(k, GREETING);
        k->greeted = true;
        log_line("GREETING %llu", (unsigned long long)k->serial);
        if (srv.mode == MODE_STALE)
                conn_queue_str(k, stale_post);
        if (srv.mode == MODE_EVENTS)
                conn_queue_event(k, "X_EARLY", NULL);
        if (srv.mode == MODE_SILENT)
                k->ignore_input = true;
        while (srv.stash) {
                struct cmd *c = srv.stash;
                srv.stash = c->next;
                misroute(k, c);
                cmd_free(c);
        }
        srv.stash_tail = &srv.stash;
}

/* why: NULL when the client hung up, else why the server closed the connection */
static void conn_close(struct conn *k, const char *why)
{
        bool abandoned = (srv.exec && srv.exec->conn == k->serial) || srv.queue ||
                         srv.n_reorder > 0 || k->n_marks > 0;

        if (why)
                log_line("CLOSE %llu %s", (unsigned long long)k->serial, why);
        log_line("DISCONNECT %llu", (unsigned long long)k->serial);
        if (srv.mode == MODE_WEDGE && !srv.wedged && abandoned) {
                /* QEMU < 4.2: the monitor stays suspended; nobody resumes it. */
                srv.wedged = true;
                log_line("WEDGED");
                fputs("WEDGED\n", stderr);
        }
        stop_flood(k);
        for (size_t i = 0; i < k->n_marks; i++) {
                log_line("UNSENT %s", k->marks[i].id_log);
                free(k->marks[i].id_log);
        }
        free(k->marks);
        drop_queue();
        for (unsigned i = 0; i < srv.n_reorder; i++) {
                log_line("DROP %s", srv.reorder[i]->id_log);
                cmd_free(srv.reorder[i]);
        }
        srv.n_reorder = 0;
        srv.timers[T_GREETING] = srv.timers[T_REORDER] = srv.timers[T_MERGE] = 0;
        srv.timers[T_SPLIT] = srv.timers[T_FLOOD_END] = 0;
        close(k->fd);
        json_tokener_free(k->tok);
        buf_free(&k->out);
        free(k);
        srv.conn = NULL;
        srv.served++;
        if (srv.quitting || (srv.max_clients && srv.served >= srv.max_clients))
                srv.stop = true;
}

static void conn_produce(struct conn *k)
{
        struct timespec ts;

        while (k->flood && buf_pending(&k->out) < FILL_LOW_WATER) {
                clock_gettime(CLOCK_REALTIME, &ts);
                for (int i = 0; i < FLOOD_BATCH; i++)
                        buf_printf(&k->out,
                                   "{\"timestamp\": {\"seconds\": %lld, \"microseconds\": %ld}, "
                                   "\"event\": \"FLOOD\", \"data\": {\"n\": %llu}}\r\n",
                                   (long long)ts.tv_sec, ts.tv_nsec / 1000,
                                   (unsigned long long)k->flood_sent++);
        }
        while (k->endless_left && buf_pending(&k->out) < FILL_LOW_WATER) {
                size_t n = k->endless_left < ENDLESS_CHUNK ? k->endless_left : ENDLESS_CHUNK;
                buf_fill(&k->out, 'a', n);
                k->endless_left -= n;
        }
}

static bool conn_can_write(const struct conn *k)
{
        if (buf_pending(&k->out) == 0)
                return false;
        if (srv.mode == MODE_SPLIT && srv.timers[T_SPLIT])
                return false;
        if (srv.mode == MODE_MERGE && !k->merge_open)
                return false;
        return true;
}

static bool conn_wants_read(const struct conn *k)
{
        if (!k->greeted && srv.mode != MODE_NOGREET)
                return false; /* like QEMU: nothing is read before the greeting is out */
        if (k->ignore_input || srv.wedged)
                return true;
        return srv.queue_len < QUEUE_MAX;
}

/* Returns false when the connection was closed (and freed). */
static bool conn_flush(struct conn *k)
{
        while (conn_can_write(k)) {
                size_t n = srv.mode == MODE_SPLIT ? 1 : buf_pending(&k->out);
                ssize_t w = send(k->fd, buf_head(&k->out), n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        conn_close(k, "write-error");
                        return false;
                }
                buf_consume(&k->out, (size_t)w);
                k->out_written += (uint64_t)w;
                if (srv.mode == MODE_SPLIT)
                        arm(T_SPLIT, SPLIT_GAP_US);
        }
        while (k->n_marks > 0 && k->marks[0].end <= k->out_written) {
                log_line("REPLY %s", k->marks[0].id_log);
                free(k->marks[0].id_log);
                memmove(k->marks, k->marks + 1, --k->n_marks * sizeof(*k->marks));
        }
        if (buf_pending(&k->out) == 0) {
                k->merge_open = false;
                k->merge_msgs = 0;
                srv.timers[T_MERGE] = 0;
                if (k->close_when_flushed && !k->flood && !k->endless_left) {
                        conn_close(k, "server-close");
                        return false;
                }
        }
        return true;
}

static void conn_read(struct conn *k)
{
        char data[65536];
        ssize_t n = recv(k->fd, data, sizeof(data), MSG_DONTWAIT);

        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        conn_close(k, "read-error");
                return;
        }
        if (n == 0) {
                conn_close(k, NULL);
                return;
        }
        conn_feed(k, data, (size_t)n);
        pump_monitor();
}

static int accept_client(void)
{
        struct conn *k;
        int fd = accept4(srv.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
                if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        return 0;
                fprintf(stderr, "fake-qmp: accept: %m\n");
                return -errno;
        }
        k = xcalloc(sizeof(*k));
        k->fd = fd;
        k->serial = ++srv.accepted;
        k->tok = json_tokener_new_ex(MAX_DEPTH);
        if (!k->tok)
                die_oom();
        json_tokener_set_flags(k->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                               JSON_TOKENER_VALIDATE_UTF8);
        srv.conn = k;
        log_line("CONNECT %llu", (unsigned long long)k->serial);
        if (srv.mode == MODE_NOGREET)
                k->ignore_input = true;
        else if (srv.greeting_delay_ms)
                arm(T_GREETING, srv.greeting_delay_ms * USEC_PER_MSEC);
        else
                send_greeting(k);
        return 0;
}

static void fire_timer(enum timer t)
{
        struct conn *k = srv.conn;

        switch (t) {
        case T_GREETING:
                if (k && !k->greeted)
                        send_greeting(k);
                break;
        case T_EXEC:
                if (srv.exec) {
                        finish_exec();
                        pump_monitor();
                }
                break;
        case T_REORDER:
                if (srv.n_reorder == 1) {
                        srv.n_reorder = 0;
                        deliver(srv.reorder[0]);
                }
                break;
        case T_MERGE:
                if (k)
                        k->merge_open = true;
                break;
        case T_SPLIT:
                break; /* the gate in conn_can_write() reopens */
        case T_FLOOD_END:
                if (k)
                        stop_flood(k);
                break;
        case T_QUIT:
                srv.stop = true;
                break;
        case N_TIMERS:
                break;
        }
}

static void run_timers(void)
{
        uint64_t now = now_us();

        for (int t = 0; t < N_TIMERS; t++) {
                if (srv.timers[t] && srv.timers[t] <= now) {
                        srv.timers[t] = 0;
                        fire_timer(t);
                }
        }
}

/* Time until the next deadline, for ppoll; NULL when nothing is armed. */
static struct timespec *next_timeout(struct timespec *ts)
{
        uint64_t next = UINT64_MAX, now;

        for (int t = 0; t < N_TIMERS; t++)
                if (srv.timers[t] && srv.timers[t] < next)
                        next = srv.timers[t];
        if (next == UINT64_MAX)
                return NULL;
        now = now_us();
        next = next > now ? next - now : 0;
        ts->tv_sec = next / 1000000;
        ts->tv_nsec = (next % 1000000) * 1000;
        return ts;
}

static int serve(void)
{
        while (!srv.stop) {
                struct pollfd fds[3];
                struct timespec ts;
                nfds_t nfds = 1, conn_idx = 0, listen_idx = 0;
                struct conn *k;
                int r;

                run_timers();
                if (srv.stop)
                        break;
                /*
                 * Write what is ready now (a timer may have opened the write gate), refilling
                 * from flood/endless until the socket is full; POLLOUT then does the rest.
                 */
                k = srv.conn;
                while (k) {
                        conn_produce(k);
                        if (!conn_can_write(k))
                                break;
                        if (!conn_flush(k))
                                k = NULL;
                        else if (buf_pending(&k->out) > 0)
                                break;
                }
                if (srv.stop)
                        break;
                k = srv.conn;
                fds[0] = (struct pollfd){.fd = srv.sig_fd, .events = POLLIN};
                if (k) {
                        conn_idx = nfds++;
                        fds[conn_idx] = (struct pollfd){
                                .fd = k->fd,
                                .events = (conn_wants_read(k) ? POLLIN : 0) |
                                          (conn_can_write(k) ? POLLOUT : 0),
                        };
                } else {
                        listen_idx = nfds++;
                        fds[listen_idx] = (struct pollfd){.fd = srv.listen_fd, .events = POLLIN};
                }
                r = ppoll(fds, nfds, next_timeout(&ts), NULL);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "fake-qmp: ppoll: %m\n");
                        return -errno;
                }
                if (fds[0].revents) {
                        struct signalfd_siginfo si;
                        if (read(srv.sig_fd, &si, sizeof(si)) == sizeof(si))
                                log_line("SIGNAL %u", si.ssi_signo);
                        break;
                }
                if (conn_idx) {
                        short re = fds[conn_idx].revents;
                        if ((re & POLLOUT) && !conn_flush(k))
                                continue;
                        if (re & POLLIN)
                                conn_read(k);
                        else if (re & (POLLHUP | POLLERR | POLLNVAL))
                                conn_close(k, NULL);
                } else if (listen_idx && (fds[listen_idx].revents & POLLIN)) {
                        r = accept_client();
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int listen_on_path(const char *path, int backlog)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "fake-qmp: socket path too long: %s\n", path);
                return -1;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode)) {
                        fprintf(stderr, "fake-qmp: %s exists and is not a socket\n", path);
                        return -1;
                }
                unlink(path); /* a stale socket from an earlier run */
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                fprintf(stderr, "fake-qmp: socket: %m\n");
                return -1;
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0 ||
            lstat(path, &st) < 0) {
                fprintf(stderr, "fake-qmp: bind/listen %s: %m\n", path);
                close(fd);
                return -1;
        }
        srv.listen_ino = st.st_ino;
        srv.listen_dev = st.st_dev;
        srv.listen_path = path;
        return fd;
}

static int adopt_listen_fd(int fd)
{
        int v = 0, flags;
        socklen_t len = sizeof(v);

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || !v) {
                fprintf(stderr, "fake-qmp: --fd %d is not a listening socket\n", fd);
                return -1;
        }
        /* As QEMU does with the fd it is handed: a client gone before accept() never blocks. */
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                fprintf(stderr, "fake-qmp: --fd %d: %m\n", fd);
                return -1;
        }
        return fd;
}

static void cleanup(void)
{
        struct stat st;

        if (srv.conn)
                conn_close(srv.conn, "exit");
        drop_queue();
        cmd_free(srv.exec);
        while (srv.stash) {
                struct cmd *c = srv.stash;
                srv.stash = c->next;
                cmd_free(c);
        }
        if (srv.listen_fd >= 0)
                close(srv.listen_fd);
        /* remove the socket only if it is still the one we bound */
        if (srv.listen_path && lstat(srv.listen_path, &st) == 0 && st.st_ino == srv.listen_ino &&
            st.st_dev == srv.listen_dev)
                unlink(srv.listen_path);
        if (srv.sig_fd >= 0)
                close(srv.sig_fd);
        log_line("EXIT");
        if (srv.log_fd >= 0)
                close(srv.log_fd);
}

static void usage(FILE *f)
{
        fputs("Usage: fake-qmp (--listen PATH | --fd N) [--mode MODE] [--delay-ms N]\n"
              "                [--backlog N] [--greeting-delay-ms N] [--max-clients N] [--log "
              "FILE]\n"
              "A scriptable fake QMP server (QEMU 7.2 protocol) for qdm's tests.\n"
              "Modes:",
              f);
        for (int m = 0; m < N_MODES; m++)
                fprintf(f, " %s", mode_names[m]);
        fputs("\n--delay-ms: slow/wedge/misroute: time every command takes (default 100/200/0);\n"
              "  reorder: how long a lone reply is held (100); merge: how long output is held\n"
              "  waiting for a second message (20); flood: how long the flood lasts (1000).\n"
              "See tests/fake/README.md.\n",
              f);
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *ret)
{
        char *end;
        unsigned long v;

        if (!s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v > max)
                return false;
        *ret = v;
        return true;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"listen", required_argument, NULL, 'l'},
                {"fd", required_argument, NULL, 'f'},
                {"mode", required_argument, NULL, 'm'},
                {"delay-ms", required_argument, NULL, 'd'},
                {"backlog", required_argument, NULL, 'b'},
                {"greeting-delay-ms", required_argument, NULL, 'g'},
                {"max-clients", required_argument, NULL, 'n'},
                {"log", required_argument, NULL, 'L'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *listen_path = NULL, *log_path = NULL;
        unsigned long fd_arg = 0, delay = 0, backlog = 1, v;
        bool have_fd = false, have_delay = false;
        struct sigaction sa_ign = {.sa_handler = SIG_IGN};
        sigset_t mask;
        pid_t parent = getppid();
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (opt) {
                case 'l':
                        listen_path = optarg;
                        break;
                case 'f':
                        if (!parse_uint(optarg, INT32_MAX, &fd_arg))
                                goto bad;
                        have_fd = true;
                        break;
                case 'm':
                        for (v = 0; v < N_MODES && strcmp(optarg, mode_names[v]) != 0; v++)
                                ;
                        if (v == N_MODES)
                                goto bad;
                        srv.mode = (enum mode)v;
                        break;
                case 'd':
                        if (!parse_uint(optarg, 86400000, &delay))
                                goto bad;
                        have_delay = true;
                        break;
                case 'b':
                        if (!parse_uint(optarg, 4096, &backlog))
                                goto bad;
                        break;
                case 'g':
                        if (!parse_uint(optarg, 86400000, &v))
                                goto bad;
                        srv.greeting_delay_ms = (unsigned)v;
                        break;
                case 'n':
                        if (!parse_uint(optarg, ULONG_MAX, &srv.max_clients))
                                goto bad;
                        break;
                case 'L':
                        log_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        goto bad_usage;
                }
        }
        if (optind != argc || !!listen_path == have_fd)
                goto bad_usage;
        srv.delay_ms = have_delay ? (unsigned)delay : mode_default_delay_ms[srv.mode];

        /*
         * Signals before PR_SET_PDEATHSIG, so the parent-death SIGTERM lands in the signalfd;
         * then re-check the parent in case it died before prctl().
         */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sigaction(SIGPIPE, &sa_ign, NULL) < 0)
                return 1;
        srv.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (srv.sig_fd < 0) {
                fprintf(stderr, "fake-qmp: signalfd: %m\n");
                return 1;
        }
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent) {
                cleanup();
                return 1;
        }
        if (log_path) {
                srv.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (srv.log_fd < 0) {
                        fprintf(stderr, "fake-qmp: %s: %m\n", log_path);
                        cleanup();
                        return 1;
                }
        }
        srv.listen_fd = listen_path ? listen_on_path(listen_path, (int)backlog)
                                    : adopt_listen_fd((int)fd_arg);
        if (srv.listen_fd < 0) {
                cleanup();
                return 1;
        }
        log_line("LISTEN %s %s", listen_path ? listen_path : "fd", mode_names[srv.mode]);
        if (listen_path && write(STDOUT_FILENO, "READY\n", 6) != 6)
                fprintf(stderr, "fake-qmp: could not write READY: %m\n");

        r = serve();
        cleanup();
        return r < 0 ? 1 : 0;

bad:
        fprintf(stderr, "fake-qmp: invalid argument: %s\n", optarg);
bad_usage:
        usage(stderr);
        return 2;
}
