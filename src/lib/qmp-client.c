/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The asynchronous QMP client: one connection to one QEMU monitor.
 *
 * It owns the socket, the greeting and qmp_capabilities negotiation, command ids, per-command
 * timeouts, event delivery, fd passing and the drain on close. It knows nothing of device
 * models. Two rules shape everything here:
 *
 *  R3  A connection is closed only when every command sent on it has its reply, or QEMU hung
 *      up. A timed-out command is reported at its deadline but stays in the table until its
 *      late reply arrives and is discarded; a connection the caller let go with commands
 *      outstanding floats on the context until drained.
 *  R4  Replies are matched by id only. Ids carry a per-connection random prefix, so a stale
 *      reply that QEMU hands us from an earlier client (QEMU 7.2 does that) can never match.
 *
 * Connection states:
 *
 *   INIT --connect/adopt--> CONNECTING --connected--> GREETING --greeting--> NEGOTIATING
 *   NEGOTIATING --qmp_capabilities ok--> READY
 *   any of CONNECTING..READY --EOF/error/protocol failure--> CLOSED
 */
#include <assert.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "loop.h"
#include "qmp-client.h"

#define READ_CHUNK        (64 * 1024)
#define READS_PER_WAKEUP  16
#define MAX_FDS_PER_CMD   16
#define CONNECT_RETRY_MIN (1 * USEC_PER_MSEC)
#define CONNECT_RETRY_MAX (50 * USEC_PER_MSEC)
#define ID_PREFIX_LEN     8

typedef enum qmp_state {
        QMP_INIT,
        QMP_CONNECTING,
        QMP_GREETING,
        QMP_NEGOTIATING,
        QMP_READY,
        QMP_CLOSED,
} qmp_state;

typedef struct qmp_cmd {
        qdm_qmp *qmp;
        uint64_t serial;
        char *name;
        qdm_qmp_reply_fn fn; /* NULL once the caller no longer wants the reply */
        void *userdata;
        loop_source *timer;
        bool sent;      /* its bytes are on the out queue (or written) */
        bool timed_out; /* caller was told; the late reply will be discarded */
        bool internal;  /* qmp_capabilities */

        /* Serialized form, waiting to be written. */
        char *buf;
        size_t len, off;
        int fds[MAX_FDS_PER_CMD];
        size_t n_fds;

        struct qmp_cmd *next_out;  /* out queue, in send order */
        struct qmp_cmd *next_wait; /* queued before READY */
} qmp_cmd;

struct qdm_qmp {
        unsigned n_ref;
        unsigned dispatching; /* > 0 while one of our loop callbacks runs */
        qdm_ctx *ctx;         /* referenced while not floating */
        bool floating;        /* owned by the context while it drains (R3) */
        qmp_state state;
        int fd;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        loop_source *io, *connect_timer, *defer;
        uint64_t connect_retry;
        int pending_error; /* set by a write failure, acted on from the defer */
        int close_error;   /* why the connection ended, once CLOSED */
        bool ready_reported;

        qmp_wire *wire;
        size_t max_message;

        char id_prefix[ID_PREFIX_LEN + 1]; /* random; the decimal serial follows */
        size_t id_prefix_len;
        uint64_t next_serial;

        /* Every command without its reply yet (queued, sent, or timed out and awaiting its late
         * reply), indexed by serial in a ring covering [base_serial, next_serial). */
        qmp_cmd **ring;
        size_t ring_mask;
        uint64_t base_serial;
        size_t n_outstanding;

        /* Two orders over commands owned by the ring: */
        qmp_cmd *out_head, *out_tail;   /* bytes to write, in send order */
        qmp_cmd *wait_head, *wait_tail; /* user commands waiting for READY, in call order */

        int version[3];
        char **capabilities;

        qdm_qmp_ready_fn ready_fn;
        void *ready_userdata;
        qdm_qmp_event_fn event_fn;
        void *event_userdata;
        qdm_qmp_disconnect_fn disconnect_fn;
        void *disconnect_userdata;
        void (*greeting_fn)(qdm_qmp *qmp, void *userdata);
        void *greeting_userdata;

        qdm_qmp_stats stats;
};

static void qmp_fail(qdm_qmp *q, int error);
static int qmp_flush(qdm_qmp *q);

static void cmd_free(qmp_cmd *c)
{
        if (!c)
                return;
        c->timer = loop_source_free(c->timer);
        for (size_t i = 0; i < c->n_fds; i++)
                safe_close(c->fds[i]);
        free(c->buf);
        free(c->name);
        free(c);
}

static void cmd_freep(qmp_cmd **c)
{
        cmd_free(*c);
}

/* ---- the serial-indexed ring ------------------------------------------------------------ */

static int ring_reserve(qdm_qmp *q)
{
        uint64_t window = q->next_serial - q->base_serial + 1;
        size_t size = q->ring ? q->ring_mask + 1 : 0;
        if (window <= size)
                return 0;
        size_t n = size ? size * 2 : 64;
        while (n < window)
                n *= 2;
        qmp_cmd **ring = calloc(n, sizeof(*ring));
        if (!ring)
                return -ENOMEM;
        for (uint64_t s = q->base_serial; s < q->next_serial; s++)
                ring[s & (n - 1)] = q->ring[s & q->ring_mask];
        free(q->ring);
        q->ring = ring;
        q->ring_mask = n - 1;
        return 0;
}

static qmp_cmd *ring_get(qdm_qmp *q, uint64_t serial)
{
        if (!q->ring || serial < q->base_serial || serial >= q->next_serial)
                return NULL;
        qmp_cmd *c = q->ring[serial & q->ring_mask];
        return c && c->serial == serial ? c : NULL;
}

/* Give the command its serial and its slot. */
static int cmd_register(qdm_qmp *q, qmp_cmd *c)
{
        int r = ring_reserve(q);
        if (r < 0)
                return r;
        c->serial = q->next_serial++;
        q->ring[c->serial & q->ring_mask] = c;
        q->n_outstanding++;
        return 0;
}

static void ring_remove(qdm_qmp *q, qmp_cmd *c)
{
        assert(ring_get(q, c->serial) == c);
        q->ring[c->serial & q->ring_mask] = NULL;
        q->n_outstanding--;
        while (q->base_serial < q->next_serial && !q->ring[q->base_serial & q->ring_mask])
                q->base_serial++;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

QDM_EXPORT int qdm_qmp_new(qdm_ctx *ctx, qdm_qmp **ret_qmp)
{
        assert_return(ctx, -EINVAL);
        assert_return(ret_qmp, -EINVAL);

        qdm_qmp *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->n_ref = 1;
        q->fd = -1;
        q->max_message = QMP_WIRE_DEFAULT_MAX_MESSAGE;
        q->version[0] = q->version[1] = q->version[2] = -1;

        /* A per-connection random prefix makes every id unique across connections and
         * processes, so a reply meant for another client never matches one of ours. It is
         * short on purpose: QEMU reads commands a byte per main-loop iteration. 8 characters
         * of 6 random bits each (48 bits) keep a collision between two clients of one monitor
         * at 2^-48. */
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        uint64_t nonce;
        if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
                nonce = now_usec() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)q;
        for (size_t i = 0; i < ID_PREFIX_LEN; i++, nonce >>= 6)
                q->id_prefix[i] = alphabet[nonce & 63];
        q->id_prefix[ID_PREFIX_LEN] = '\0';
        q->id_prefix_len = ID_PREFIX_LEN;
        q->next_serial = q->base_serial = 1;
        q->ctx = qdm_ctx_ref(ctx);
        *ret_qmp = q;
        return 0;
}

QDM_EXPORT qdm_qmp *qdm_qmp_ref(qdm_qmp *qmp)
{
        if (qmp)
                qmp->n_ref++;
        return qmp;
}

/* Release the socket and every command, without calling anything. */
static void qmp_teardown(qdm_qmp *q)
{
        q->io = loop_source_free(q->io);
        q->connect_timer = loop_source_free(q->connect_timer);
        q->defer = loop_source_free(q->defer);
        q->fd = safe_close(q->fd);
        for (uint64_t s = q->base_serial; q->ring && s < q->next_serial; s++) {
                qmp_cmd *c = q->ring[s & q->ring_mask];
                if (c)
                        cmd_free(c);
                q->ring[s & q->ring_mask] = NULL;
        }
        q->n_outstanding = 0;
        q->base_serial = q->next_serial;
        /* Members of the ring, freed above. */
        q->wait_head = q->wait_tail = NULL;
        q->out_head = q->out_tail = NULL;
        q->wire = qmp_wire_free(q->wire);
}

static void qmp_free(qdm_qmp *q)
{
        qmp_teardown(q);
        free(q->ring);
        for (char **c = q->capabilities; c && *c; c++)
                free(*c);
        free(q->capabilities);
        if (!q->floating)
                qdm_ctx_unref(q->ctx);
        free(q);
}

/* Free once nobody holds a reference, no callback of ours is on the stack, and the context
 * does not own it for draining. */
static void qmp_maybe_free(qdm_qmp *q)
{
        if (q->n_ref == 0 && q->dispatching == 0 && !q->floating)
                qmp_free(q);
}

static void dispatch_begin(qdm_qmp *q)
{
        q->dispatching++;
}

static void dispatch_end(qdm_qmp *q)
{
        assert(q->dispatching > 0);
        q->dispatching--;
        qmp_maybe_free(q);
}

/* Called by the context for floating connections still draining when it is freed. */
static void qmp_floating_close(void *object)
{
        qdm_qmp *q = object;
        ctx_log(q->ctx, LOG_DEBUG_LEVEL, "qmp: context freed with %zu replies outstanding",
                q->n_outstanding);
        qmp_free(q);
}

/* A floating connection has drained, or QEMU hung up: the context lets it go. */
static void qmp_floating_done(qdm_qmp *q)
{
        if (!q->floating)
                return;
        ctx_floating_remove(q->ctx, q);
        q->floating = false;
        /* It held no reference on the context while floating; qmp_free() drops one. */
        qdm_ctx_ref(q->ctx);
        qmp_maybe_free(q);
}

QDM_EXPORT qdm_qmp *qdm_qmp_unref(qdm_qmp *qmp)
{
        if (!qmp)
                return NULL;
        assert(qmp->n_ref > 0);
        if (--qmp->n_ref > 0)
                return NULL;

        /* The caller is gone: nothing of theirs may be called any more. */
        qmp->ready_fn = NULL;
        qmp->event_fn = NULL;
        qmp->disconnect_fn = NULL;
        qmp->greeting_fn = NULL;
        while (qmp->wait_head) { /* never sent: nothing to drain */
                qmp_cmd *c = qmp->wait_head;
                qmp->wait_head = c->next_wait;
                ring_remove(qmp, c);
                cmd_free(c);
        }
        qmp->wait_tail = NULL;
        for (uint64_t s = qmp->base_serial; s < qmp->next_serial; s++) {
                qmp_cmd *c = qmp->ring[s & qmp->ring_mask];
                if (c)
                        c->fn = NULL;
        }

        bool drain = qmp->n_outstanding > 0 && qmp->fd >= 0 && qmp->state != QMP_CLOSED &&
                     qmp->pending_error == 0;
        if (drain && ctx_floating_add(qmp->ctx, qmp, qmp_floating_close) >= 0) {
                ctx_log(qmp->ctx, LOG_DEBUG_LEVEL,
                        "qmp: draining %zu outstanding replies before closing", qmp->n_outstanding);
                qmp->floating = true;
                /* The context owns us now; a reference on it would keep it alive forever. */
                qdm_ctx_unref(qmp->ctx);
                return NULL;
        }
        /* Nothing outstanding (or out of memory, where closing early is all that is left). */
        qmp_maybe_free(qmp);
        return NULL;
}

QDM_EXPORT int qdm_qmp_set_max_message(qdm_qmp *qmp, size_t bytes)
{
        assert_return(qmp, -EINVAL);
        assert_return(bytes >= 64, -EINVAL);
        assert_return(qmp->state == QMP_INIT, -EBUSY);
        qmp->max_message = bytes;
        return 0;
}

QDM_EXPORT void qdm_qmp_set_ready_callback(qdm_qmp *qmp, qdm_qmp_ready_fn fn, void *userdata)
{
        if (!qmp)
                return;
        qmp->ready_fn = fn;
        qmp->ready_userdata = userdata;
}

QDM_EXPORT void qdm_qmp_set_event_callback(qdm_qmp *qmp, qdm_qmp_event_fn fn, void *userdata)
{
        if (!qmp)
                return;
        qmp->event_fn = fn;
        qmp->event_userdata = userdata;
}

QDM_EXPORT void qdm_qmp_set_disconnect_callback(qdm_qmp *qmp, qdm_qmp_disconnect_fn fn,
                                                void *userdata)
{
        if (!qmp)
                return;
        qmp->disconnect_fn = fn;
        qmp->disconnect_userdata = userdata;
}

/* ---- reporting --------------------------------------------------------------------------- */

static void report_ready(qdm_qmp *q, int error)
{
        if (q->ready_reported)
                return;
        q->ready_reported = true;
        if (q->ready_fn)
                q->ready_fn(q, error, q->ready_userdata);
}

/* Deliver a command's outcome and forget it. The command must be out of every list. */
static void cmd_complete(qdm_qmp *q, qmp_cmd *c, int error, const qmp_msg *msg)
{
        qdm_qmp_reply_fn fn = c->timed_out ? NULL : c->fn;
        void *userdata = c->userdata;
        cmd_free(c);
        if (fn) {
                q->stats.replies_delivered += msg != NULL;
                struct qdm_qmp_message m = {.msg = msg};
                fn(q, error, msg ? &m : NULL, userdata);
        }
}

/*
 * The connection is over: EOF, a socket error, or a protocol failure. Every command still
 * waiting is failed with the error, then the ready and disconnect callbacks run. Runs only
 * from dispatch (io, timer or defer callbacks), never from a public call.
 */
static void qmp_fail(qdm_qmp *q, int error)
{
        if (q->state == QMP_CLOSED)
                return;
        assert(error < 0);
        q->state = QMP_CLOSED;
        q->close_error = error;
        ctx_log(q->ctx, error == -ECONNRESET ? LOG_DEBUG_LEVEL : LOG_INFO_LEVEL,
                "qmp: connection ended: %s", strerror(-error));

        dispatch_begin(q);
        q->io = loop_source_free(q->io);
        q->connect_timer = loop_source_free(q->connect_timer);
        q->fd = safe_close(q->fd);
        q->out_head = q->out_tail = NULL;
        q->wait_head = q->wait_tail = NULL;

        /* In serial order, which is the order the caller sent them in. */
        while (q->n_outstanding > 0) {
                qmp_cmd *c = ring_get(q, q->base_serial);
                assert(c);
                ring_remove(q, c);
                cmd_complete(q, c, error, NULL);
        }
        report_ready(q, error);
        if (q->disconnect_fn)
                q->disconnect_fn(q, error, q->disconnect_userdata);
        qmp_floating_done(q);
        dispatch_end(q);
}

/* Failures noticed inside a public call (a write error in qdm_qmp_send) are acted on from a
 * deferred call, so no callback runs inside the caller's call. */
static void qmp_defer_cb(loop_source *s, void *userdata)
{
        qdm_qmp *q = userdata;
        if (q->pending_error < 0)
                qmp_fail(q, q->pending_error);
}

static void qmp_fail_later(qdm_qmp *q, int error)
{
        if (q->pending_error == 0)
                q->pending_error = error;
        if (q->defer)
                loop_defer_arm(q->defer);
        else if (loop_add_defer(q->ctx, qmp_defer_cb, q, &q->defer) < 0)
                q->pending_error = error; /* picked up by the next io event */
        if (q->io)
                (void)loop_io_set_events(q->io, EPOLLIN);
}

/* ---- writing ---------------------------------------------------------------------------- */

static void out_push(qdm_qmp *q, qmp_cmd *c)
{
        c->next_out = NULL;
        if (q->out_tail)
                q->out_tail->next_out = c;
        else
                q->out_head = c;
        q->out_tail = c;
}

/*
 * Write as much of the out queue as the socket takes. Consecutive commands without fds go out
 * in one sendmsg; a command with fds starts its own sendmsg so the fds ride on its first byte
 * (QEMU takes the fds that arrive with the bytes it is parsing).
 */
static int qmp_flush(qdm_qmp *q)
{
        while (q->out_head) {
                struct iovec iov[64];
                size_t n_iov = 0;
                qmp_cmd *c = q->out_head;
                bool with_fds = c->n_fds > 0 && c->off == 0;
                for (qmp_cmd *i = c; i && n_iov < ELEMENTSOF(iov); i = i->next_out) {
                        if (i != c && i->n_fds > 0)
                                break;
                        iov[n_iov].iov_base = i->buf + i->off;
                        iov[n_iov].iov_len = i->len - i->off;
                        n_iov++;
                }

                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_CMD)];
                } control;
                struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n_iov};
                if (with_fds) {
                        memset(&control, 0, sizeof(control));
                        mh.msg_control = control.buf;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * c->n_fds);
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int) * c->n_fds);
                        memcpy(CMSG_DATA(cm), c->fds, sizeof(int) * c->n_fds);
                }

                ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return loop_io_set_events(q->io, EPOLLIN | EPOLLOUT);
                        return -errno;
                }
                if (with_fds) { /* delivered with the first byte; ours can go */
                        for (size_t i = 0; i < c->n_fds; i++)
                                c->fds[i] = safe_close(c->fds[i]);
                        c->n_fds = 0;
                }
                size_t left = (size_t)n;
                while (q->out_head && left > 0) {
                        qmp_cmd *h = q->out_head;
                        size_t chunk = h->len - h->off;
                        if (left < chunk) {
                                h->off += left;
                                break;
                        }
                        left -= chunk;
                        q->out_head = h->next_out;
                        if (!q->out_head)
                                q->out_tail = NULL;
                        h->buf = (free(h->buf), NULL);
                        h->len = h->off = 0;
                }
        }
        return q->io ? loop_io_set_events(q->io, EPOLLIN) : 0;
}

/* Put a registered command on the wire: serialize it with its id and queue its bytes. */
static int cmd_transmit(qdm_qmp *q, qmp_cmd *c, json_object *args)
{
        char id[64];
        snprintf(id, sizeof(id), "%s%llu", q->id_prefix, (unsigned long long)c->serial);
        json_object *jid = json_object_new_string(id);
        if (!jid)
                return -ENOMEM;
        int r = qmp_wire_format_command(c->name, args, jid, &c->buf, &c->len);
        json_object_put(jid);
        if (r < 0)
                return r;
        c->sent = true;
        q->stats.commands_sent++;
        out_push(q, c);
        return 0;
}

/* ---- timeouts ------------------------------------------------------------------------------ */

static int cmd_timeout_cb(loop_source *s, uint64_t usec, void *userdata)
{
        qmp_cmd *c = userdata;
        qdm_qmp *q = c->qmp;
        c->timer = loop_source_free(c->timer);

        dispatch_begin(q);
        if (!c->sent) {
                /* Still waiting for READY: it never reached QEMU, so it can simply go. */
                qmp_cmd **p = &q->wait_head, *prev = NULL;
                while (*p && *p != c) {
                        prev = *p;
                        p = &(*p)->next_wait;
                }
                assert(*p);
                *p = c->next_wait;
                if (q->wait_tail == c)
                        q->wait_tail = prev;
                ring_remove(q, c);
                ctx_log(q->ctx, LOG_INFO_LEVEL, "qmp: %s timed out before it could be sent",
                        c->name);
                cmd_complete(q, c, -ETIMEDOUT, NULL);
        } else {
                /* R3: tell the caller, keep the command until its late reply arrives. */
                ctx_log(q->ctx, LOG_INFO_LEVEL,
                        "qmp: %s timed out; keeping the connection until its reply arrives",
                        c->name);
                qdm_qmp_reply_fn fn = c->fn;
                c->timed_out = true;
                c->fn = NULL;
                if (fn)
                        fn(q, -ETIMEDOUT, NULL, c->userdata);
        }
        dispatch_end(q);
        return 0;
}

/* ---- sending ------------------------------------------------------------------------------ */

static bool command_name_valid(const char *s)
{
        if (!s || !*s || strlen(s) > 128)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
                        return false;
        return true;
}

static int qmp_enqueue(qdm_qmp *q, const char *command, json_object *args, const int *fds,
                       size_t n_fds, uint64_t timeout_usec, qdm_qmp_reply_fn fn, void *userdata,
                       bool internal, uint64_t *ret_serial)
{
        _cleanup_(cmd_freep) qmp_cmd *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->qmp = q;
        c->fn = fn;
        c->userdata = userdata;
        c->internal = internal;
        c->name = strdup(command);
        if (!c->name)
                return -ENOMEM;
        for (size_t i = 0; i < n_fds; i++) {
                c->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (c->fds[i] < 0)
                        return negative_errno();
                c->n_fds++;
        }
        if (timeout_usec != USEC_INFINITY) {
                int r = loop_add_time(q->ctx, usec_add(now_usec(), timeout_usec), cmd_timeout_cb, c,
                                      &c->timer);
                if (r < 0)
                        return r;
                loop_source_set_description(c->timer, "qmp command timeout");
        }

        int r = cmd_register(q, c);
        if (r < 0)
                return r;
        if (q->state == QMP_READY || internal) {
                r = cmd_transmit(q, c, args);
                if (r < 0) {
                        ring_remove(q, c);
                        return r;
                }
                r = qmp_flush(q);
                if (r < 0)
                        qmp_fail_later(q, r);
        } else {
                /* Keep the arguments as text until READY: the caller's object may change. */
                if (args) {
                        c->buf = strdup(
                                json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN));
                        if (!c->buf) {
                                ring_remove(q, c);
                                return -ENOMEM;
                        }
                }
                c->next_wait = NULL;
                if (q->wait_tail)
                        q->wait_tail->next_wait = c;
                else
                        q->wait_head = c;
                q->wait_tail = c;
        }
        if (ret_serial)
                *ret_serial = c->serial;
        TAKE_PTR(c);
        return 0;
}

int qmp_client_send(qdm_qmp *qmp, const char *command, json_object *args, const int *fds,
                    size_t n_fds, uint64_t timeout_usec, qdm_qmp_reply_fn fn, void *userdata,
                    uint64_t *ret_serial)
{
        assert_return(qmp, -EINVAL);
        assert_return(command_name_valid(command), -EINVAL);
        assert_return(!args || json_object_is_type(args, json_type_object), -EINVAL);
        assert_return(n_fds <= MAX_FDS_PER_CMD, -EINVAL);
        assert_return(n_fds == 0 || fds, -EINVAL);
        assert_return(!streq_ptr(command, "qmp_capabilities"), -EINVAL);
        /* A failure already noticed but not yet reported (a refused connect, a write error)
         * fails this command too, from the loop, with the same error as the others. */
        if (qmp->state == QMP_INIT || qmp->state == QMP_CLOSED)
                return -ENOTCONN;
        return qmp_enqueue(qmp, command, args, fds, n_fds, timeout_usec, fn, userdata, false,
                           ret_serial);
}

QDM_EXPORT int qdm_qmp_send(qdm_qmp *qmp, const char *command, const char *args_json,
                            const int *fds, size_t n_fds, uint64_t timeout_usec,
                            qdm_qmp_reply_fn fn, void *userdata, uint64_t *ret_serial)
{
        assert_return(qmp, -EINVAL);
        json_object *args = NULL;
        if (args_json) {
                int r = qmp_json_parse(args_json, strlen(args_json), QMP_WIRE_DEFAULT_MAX_DEPTH,
                                       &args);
                if (r < 0)
                        return -EINVAL;
        }
        int r = qmp_client_send(qmp, command, args, fds, n_fds, timeout_usec, fn, userdata,
                                ret_serial);
        json_object_put(args);
        return r;
}

/* Negotiation finished: send what the caller queued meanwhile, in order. */
static int flush_waiting(qdm_qmp *q)
{
        while (q->wait_head) {
                qmp_cmd *c = q->wait_head;
                q->wait_head = c->next_wait;
                if (!q->wait_head)
                        q->wait_tail = NULL;
                json_object *args = NULL;
                int r = 0;
                if (c->buf) {
                        r = qmp_json_parse(c->buf, strlen(c->buf), QMP_WIRE_DEFAULT_MAX_DEPTH,
                                           &args);
                        c->buf = (free(c->buf), NULL);
                }
                if (r >= 0)
                        r = cmd_transmit(q, c, args);
                json_object_put(args);
                if (r < 0) {
                        ring_remove(q, c);
                        cmd_complete(q, c, r, NULL);
                }
        }
        return qmp_flush(q);
}

/* ---- receiving ---------------------------------------------------------------------------- */

static void caps_reply_cb(qdm_qmp *q, int error, const qdm_qmp_message *m, void *userdata)
{
        if (q->state == QMP_CLOSED)
                return; /* the connection ended; qmp_fail() reports it */
        if (error < 0) {
                ctx_log(q->ctx, LOG_WARNING_LEVEL, "qmp: qmp_capabilities failed: %s",
                        error == -EREMOTEIO ? m->msg->error_desc : strerror(-error));
                qmp_fail(q, -EPROTO);
                return;
        }
        q->state = QMP_READY;
        int r = flush_waiting(q);
        if (r < 0) {
                qmp_fail(q, r);
                return;
        }
        report_ready(q, 0);
}

static int on_greeting(qdm_qmp *q, const qmp_msg *m)
{
        if (q->state != QMP_GREETING) {
                /* A second greeting is a protocol violation by a peer we don't trust; drop it
                 * rather than tear down a connection that may have replies outstanding. */
                q->stats.rejected++;
                ctx_log(q->ctx, LOG_WARNING_LEVEL, "qmp: dropping a second greeting");
                return 0;
        }
        q->version[0] = m->version_major;
        q->version[1] = m->version_minor;
        q->version[2] = m->version_micro;
        size_t n = m->capabilities ? json_object_array_length(m->capabilities) : 0;
        q->capabilities = calloc(n + 1, sizeof(char *));
        if (!q->capabilities)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *s =
                        json_object_get_string(json_object_array_get_idx(m->capabilities, i));
                q->capabilities[i] = strdup(s ? s : "");
                if (!q->capabilities[i])
                        return -ENOMEM;
        }
        ctx_log(q->ctx, LOG_DEBUG_LEVEL, "qmp: greeting from QEMU %d.%d.%d", q->version[0],
                q->version[1], q->version[2]);
        q->state = QMP_NEGOTIATING;
        if (q->greeting_fn)
                q->greeting_fn(q, q->greeting_userdata);
        /* Negotiation is bounded by whoever waits for readiness (the device model's start
         * deadline, qdm_qmp_wait_ready()), not by a timer of its own. */
        return qmp_enqueue(q, "qmp_capabilities", NULL, NULL, 0, USEC_INFINITY, caps_reply_cb, NULL,
                           true, NULL);
}

/* Our ids are "<8-character prefix><decimal serial>"; anything else is not ours. */
static qmp_cmd *lookup_reply(qdm_qmp *q, json_object *id)
{
        if (!id || !json_object_is_type(id, json_type_string))
                return NULL;
        const char *s = json_object_get_string(id);
        size_t len = (size_t)json_object_get_string_len(id);
        if (len <= q->id_prefix_len || len > q->id_prefix_len + 20 ||
            memcmp(s, q->id_prefix, q->id_prefix_len) != 0)
                return NULL;
        uint64_t serial = 0;
        for (size_t i = q->id_prefix_len; i < len; i++) {
                if (s[i] < '0' || s[i] > '9' || serial > (UINT64_MAX - 9) / 10)
                        return NULL;
                serial = serial * 10 + (uint64_t)(s[i] - '0');
        }
        return ring_get(q, serial);
}

static void on_reply(qdm_qmp *q, const qmp_msg *m)
{
        qmp_cmd *c = lookup_reply(q, m->id);
        if (!c) {
                q->stats.replies_stray++;
                ctx_log(q->ctx, LOG_INFO_LEVEL,
                        "qmp: dropping a reply with an id we never sent: %s",
                        m->id ? json_object_to_json_string_ext(m->id, JSON_C_TO_STRING_PLAIN)
                              : "(none)");
                return;
        }
        ring_remove(q, c);
        if (c->timed_out) {
                q->stats.replies_late++;
                ctx_log(q->ctx, LOG_DEBUG_LEVEL, "qmp: discarding late reply to %s", c->name);
                cmd_free(c);
                return;
        }
        cmd_complete(q, c, m->kind == QMP_MSG_ERROR ? -EREMOTEIO : 0, m);
}

static void on_message(qdm_qmp *q, const qmp_msg *m)
{
        switch (m->kind) {
        case QMP_MSG_GREETING: {
                int r = on_greeting(q, m);
                if (r < 0)
                        qmp_fail(q, r);
                break;
        }
        case QMP_MSG_RETURN:
        case QMP_MSG_ERROR:
                on_reply(q, m);
                break;
        case QMP_MSG_EVENT:
                q->stats.events++;
                if (q->event_fn) {
                        struct qdm_qmp_message msg = {.msg = m};
                        q->event_fn(q, &msg, q->event_userdata);
                }
                break;
        }
}

static int qmp_read(qdm_qmp *q)
{
        char buf[READ_CHUNK];
        for (int i = 0; i < READS_PER_WAKEUP && q->state != QMP_CLOSED; i++) {
                ssize_t n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                int r = qmp_wire_feed(q->wire, buf, (size_t)n);
                if (r < 0)
                        return r;
                for (;;) {
                        qmp_msg *m = NULL;
                        r = qmp_wire_next(q->wire, &m);
                        if (r == 0)
                                break;
                        if (r < 0) {
                                q->stats.rejected++;
                                ctx_log(q->ctx, LOG_WARNING_LEVEL,
                                        "qmp: dropping a malformed message from QEMU: %s",
                                        strerror(-r));
                                continue;
                        }
                        on_message(q, m);
                        qmp_msg_free(m);
                        if (q->state == QMP_CLOSED)
                                return 0;
                }
                q->stats.skipped_pre_greeting = qmp_wire_skipped(q->wire);
                if ((size_t)n < sizeof(buf))
                        return 0;
        }
        return 0;
}

static int qmp_io_cb(loop_source *s, int fd, uint32_t revents, void *userdata)
{
        qdm_qmp *q = userdata;
        int r = 0;

        dispatch_begin(q);
        if (q->pending_error < 0)
                r = q->pending_error;
        else if (q->state == QMP_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err != 0)
                        r = -err;
                else {
                        q->state = QMP_GREETING;
                        r = loop_io_set_events(q->io, EPOLLIN);
                }
        }
        if (r >= 0 && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                r = qmp_read(q);
        if (r >= 0 && q->state != QMP_CLOSED && (revents & EPOLLOUT))
                r = qmp_flush(q);
        if (r < 0)
                qmp_fail(q, r);
        else if (q->floating && q->n_outstanding == 0) {
                /* R3 satisfied: a connection the caller let go can close now. */
                ctx_log(q->ctx, LOG_DEBUG_LEVEL, "qmp: drained; closing");
                qmp_floating_done(q);
        }
        dispatch_end(q);
        return 0;
}

/* ---- connecting --------------------------------------------------------------------------- */

static int qmp_attach(qdm_qmp *q, int fd, qmp_state state)
{
        q->wire = qmp_wire_new(q->max_message, QMP_WIRE_DEFAULT_MAX_DEPTH);
        if (!q->wire)
                return -ENOMEM;
        q->fd = fd;
        int r = loop_add_io(q->ctx, fd, state == QMP_CONNECTING ? EPOLLOUT : EPOLLIN, qmp_io_cb, q,
                            &q->io);
        if (r < 0) {
                q->fd = -1;
                q->wire = qmp_wire_free(q->wire);
                return r;
        }
        loop_source_set_description(q->io, "qmp socket");
        q->state = state;
        return 0;
}

static int try_connect(qdm_qmp *q);

static int connect_retry_cb(loop_source *s, uint64_t usec, void *userdata)
{
        qdm_qmp *q = userdata;
        dispatch_begin(q);
        int r = try_connect(q);
        if (r < 0)
                qmp_fail(q, r);
        dispatch_end(q);
        return 0;
}

/* A UNIX listener with a full backlog makes a non-blocking connect() fail with EAGAIN rather
 * than EINPROGRESS (QEMU keeps a backlog of one, R7): retry with a short backoff. */
static int try_connect(qdm_qmp *q)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, q->path, strlen(q->path));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == EAGAIN) {
                        q->connect_retry =
                                q->connect_retry ? q->connect_retry * 2 : CONNECT_RETRY_MIN;
                        if (q->connect_retry > CONNECT_RETRY_MAX)
                                q->connect_retry = CONNECT_RETRY_MAX;
                        uint64_t when = usec_add(now_usec(), q->connect_retry);
                        if (q->connect_timer)
                                return loop_time_set(q->connect_timer, when);
                        return loop_add_time(q->ctx, when, connect_retry_cb, q, &q->connect_timer);
                }
                if (errno != EINPROGRESS)
                        return negative_errno();
                q->connect_timer = loop_source_free(q->connect_timer);
                int r = qmp_attach(q, fd, QMP_CONNECTING);
                if (r >= 0)
                        TAKE_FD(fd);
                return r;
        }
        q->connect_timer = loop_source_free(q->connect_timer);
        int r = qmp_attach(q, fd, QMP_GREETING);
        if (r >= 0)
                TAKE_FD(fd);
        return r;
}

static void connect_failed_cb(loop_source *s, void *userdata)
{
        qdm_qmp *q = userdata;
        qmp_fail(q, q->pending_error);
}

QDM_EXPORT int qdm_qmp_connect(qdm_qmp *qmp, const char *path)
{
        assert_return(qmp, -EINVAL);
        assert_return(path && *path, -EINVAL);
        assert_return(strlen(path) < sizeof(qmp->path), -EINVAL);
        assert_return(qmp->state == QMP_INIT, -EBUSY);

        memcpy(qmp->path, path, strlen(path) + 1);
        qmp->state = QMP_CONNECTING;
        int r = try_connect(qmp);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* Refused, missing, ...: reported through the callbacks, never from here. */
                qmp->pending_error = r;
                r = loop_add_defer(qmp->ctx, connect_failed_cb, qmp, &qmp->defer);
                if (r < 0)
                        return r;
        }
        return 0;
}

QDM_EXPORT int qdm_qmp_adopt_fd(qdm_qmp *qmp, int fd)
{
        _cleanup_close_ int owned = fd;
        assert_return(qmp, -EINVAL);
        assert_return(fd >= 0, -EBADF);
        assert_return(qmp->state == QMP_INIT, -EBUSY);

        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
                return -EBADF;
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return negative_errno();
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return negative_errno();
        int r = qmp_attach(qmp, fd, QMP_GREETING);
        if (r < 0)
                return r;
        TAKE_FD(owned);
        return 0;
}

/* ---- blocking helpers ----------------------------------------------------------------------- */

typedef struct exec_result {
        bool done;
        int error;
        char *json;
        char *error_text;
} exec_result;

static void exec_reply_cb(qdm_qmp *q, int error, const qdm_qmp_message *m, void *userdata)
{
        exec_result *res = userdata;
        res->done = true;
        res->error = error;
        if (error == 0)
                res->json = strdup(qdm_qmp_message_get_json(m));
        else if (error == -EREMOTEIO &&
                 asprintf(&res->error_text, "%s: %s", m->msg->error_class, m->msg->error_desc) < 0)
                res->error_text = NULL;
}

QDM_EXPORT int qdm_qmp_execute(qdm_qmp *qmp, const char *command, const char *args_json,
                               uint64_t timeout_usec, char **ret_json, char **ret_error)
{
        assert_return(qmp, -EINVAL);
        exec_result res = {0};
        int r = qdm_qmp_send(qmp, command, args_json, NULL, 0, timeout_usec, exec_reply_cb, &res,
                             NULL);
        if (r < 0)
                return r;
        qdm_qmp_ref(qmp);
        while (!res.done) {
                r = qdm_ctx_run(qmp->ctx, USEC_INFINITY);
                if (r < 0)
                        break;
        }
        qdm_qmp_unref(qmp);
        if (!res.done)
                return r; /* the loop failed; the command stays outstanding */
        if (res.error == 0 && !res.json)
                res.error = -ENOMEM;
        if (res.error == 0 && ret_json)
                *ret_json = TAKE_PTR(res.json);
        if (res.error == -EREMOTEIO && ret_error)
                *ret_error = TAKE_PTR(res.error_text);
        free(res.json);
        free(res.error_text);
        return res.error;
}

QDM_EXPORT int qdm_qmp_wait_ready(qdm_qmp *qmp, uint64_t timeout_usec)
{
        assert_return(qmp, -EINVAL);
        assert_return(qmp->state != QMP_INIT, -ENOTCONN);
        uint64_t deadline = usec_add(now_usec(), timeout_usec);
        qdm_qmp_ref(qmp);
        int r = 0;
        while (qmp->state != QMP_READY) {
                if (qmp->state == QMP_CLOSED) {
                        r = qmp->close_error < 0 ? qmp->close_error : -ECONNRESET;
                        break;
                }
                uint64_t now = now_usec();
                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                r = qdm_ctx_run(qmp->ctx,
                                deadline == USEC_INFINITY ? USEC_INFINITY : deadline - now);
                if (r < 0)
                        break;
                r = 0;
        }
        qdm_qmp_unref(qmp);
        return r;
}

/* ---- accessors -------------------------------------------------------------------------- */

void qmp_client_set_greeting_hook(qdm_qmp *qmp, void (*fn)(qdm_qmp *qmp, void *userdata),
                                  void *userdata)
{
        qmp->greeting_fn = fn;
        qmp->greeting_userdata = userdata;
}

bool qmp_client_is_ready(qdm_qmp *qmp)
{
        return qmp && qmp->state == QMP_READY && qmp->pending_error == 0;
}

QDM_EXPORT int qdm_qmp_get_version(qdm_qmp *qmp, int *ret_major, int *ret_minor, int *ret_micro)
{
        assert_return(qmp, -EINVAL);
        assert_return(qmp->capabilities, -ENODATA);
        if (ret_major)
                *ret_major = qmp->version[0];
        if (ret_minor)
                *ret_minor = qmp->version[1];
        if (ret_micro)
                *ret_micro = qmp->version[2];
        return 0;
}

QDM_EXPORT int qdm_qmp_has_capability(qdm_qmp *qmp, const char *name)
{
        assert_return(qmp && name, -EINVAL);
        assert_return(qmp->capabilities, -ENODATA);
        for (char **c = qmp->capabilities; *c; c++)
                if (strcmp(*c, name) == 0)
                        return 1;
        return 0;
}

QDM_EXPORT int qdm_qmp_get_stats(qdm_qmp *qmp, qdm_qmp_stats *ret_stats)
{
        assert_return(qmp && ret_stats, -EINVAL);
        if (qmp->wire)
                qmp->stats.skipped_pre_greeting = qmp_wire_skipped(qmp->wire);
        *ret_stats = qmp->stats;
        return 0;
}

QDM_EXPORT size_t qdm_qmp_get_outstanding(qdm_qmp *qmp)
{
        if (!qmp)
                return 0;
        size_t n = qmp->n_outstanding;
        for (qmp_cmd *c = qmp->wait_head; c; c = c->next_wait)
                n++;
        return n;
}

json_object *qmp_message_json(const qdm_qmp_message *m)
{
        if (!m || !m->msg)
                return NULL;
        switch (m->msg->kind) {
        case QMP_MSG_RETURN:
                return m->msg->ret;
        case QMP_MSG_EVENT:
                return m->msg->data;
        default:
                return NULL;
        }
}

QDM_EXPORT const char *qdm_qmp_message_get_json(const qdm_qmp_message *m)
{
        if (!m || !m->msg)
                return NULL;
        if (m->msg->kind == QMP_MSG_EVENT && !m->msg->data)
                return "{}";
        if (m->msg->kind != QMP_MSG_RETURN && m->msg->kind != QMP_MSG_EVENT)
                return NULL;
        /* json-c keeps the string inside the object: valid as long as the message. */
        return json_object_to_json_string_ext(qmp_message_json(m), JSON_C_TO_STRING_PLAIN);
}

QDM_EXPORT const char *qdm_qmp_message_get_error_class(const qdm_qmp_message *m)
{
        return m && m->msg && m->msg->kind == QMP_MSG_ERROR ? m->msg->error_class : NULL;
}

QDM_EXPORT const char *qdm_qmp_message_get_error_desc(const qdm_qmp_message *m)
{
        return m && m->msg && m->msg->kind == QMP_MSG_ERROR ? m->msg->error_desc : NULL;
}

QDM_EXPORT const char *qdm_qmp_message_get_event(const qdm_qmp_message *m)
{
        return m && m->msg && m->msg->kind == QMP_MSG_EVENT ? m->msg->event : NULL;
}

QDM_EXPORT uint64_t qdm_qmp_message_get_timestamp(const qdm_qmp_message *m)
{
        return m && m->msg && m->msg->kind == QMP_MSG_EVENT ? m->msg->timestamp_usec : 0;
}

QDM_EXPORT const char *qdm_qmp_message_get_string(const qdm_qmp_message *m, const char *key)
{
        json_object *o = qmp_message_json(m), *v = NULL;
        if (!o || !key || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}
