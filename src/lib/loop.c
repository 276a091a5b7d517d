/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The context: one epoll fd with every io source registered directly, plus one timerfd
 * (armed at the earliest timer of a binary heap) and one eventfd (readable while deferred
 * calls are queued). This is what lets a host loop embed libqdm by polling a single fd.
 *
 * This file owns dispatch order and source lifetime. It never reads or writes an io source's
 * fd, never installs signal handlers and never blocks except in qdm_ctx_run().
 */
#include <assert.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include "loop.h"

typedef enum source_type {
        SOURCE_IO,
        SOURCE_TIME,
        SOURCE_DEFER,
} source_type;

struct loop_source {
        qdm_ctx *ctx;
        source_type type;
        bool dead;
        const char *description;
        loop_source *gc_next; /* on ctx->garbage once dead */
        void *userdata;
        union {
                struct {
                        int fd;
                        uint32_t events;
                        loop_io_fn fn;
                } io;
                struct {
                        uint64_t usec;
                        size_t heap_index; /* SIZE_MAX when not in the heap */
                        loop_time_fn fn;
                } time;
                struct {
                        bool armed;
                        loop_source *next; /* queue of armed defers */
                        loop_defer_fn fn;
                } defer;
        };
};

typedef struct floating {
        void *object;
        ctx_floating_close_fn close_fn;
        struct floating *next;
} floating;

struct qdm_ctx {
        unsigned n_ref;
        int epoll_fd;
        int timer_fd;
        int defer_fd;
        bool defer_fd_signalled;

        loop_source **heap; /* min-heap of armed timers by usec */
        size_t heap_size, heap_alloc;
        uint64_t timer_fd_armed; /* what timer_fd is set to, USEC_INFINITY = disarmed */

        loop_source *defer_head, *defer_tail;
        loop_source *garbage;
        unsigned dispatch_depth;

        floating *floating;

        qdm_log_fn log_fn;
        void *log_userdata;
        int log_max_level;
};

/* Sentinels stored in epoll_event.data.ptr for the context's own fds. */
static char timer_tag, defer_tag;

void ctx_log(qdm_ctx *ctx, int level, const char *fmt, ...)
{
        if (!ctx_log_enabled(ctx, level))
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = NULL;
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r >= 0)
                ctx->log_fn(level, msg, ctx->log_userdata);
}

bool ctx_log_enabled(qdm_ctx *ctx, int level)
{
        return ctx && ctx->log_fn && level <= ctx->log_max_level;
}

QDM_EXPORT int qdm_ctx_new(qdm_ctx **ret_ctx)
{
        assert_return(ret_ctx, -EINVAL);

        qdm_ctx *ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
                return -ENOMEM;
        ctx->n_ref = 1;
        ctx->timer_fd = ctx->defer_fd = -1;
        ctx->timer_fd_armed = USEC_INFINITY;

        int r;
        ctx->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (ctx->epoll_fd < 0)
                goto fail_errno;
        ctx->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (ctx->timer_fd < 0)
                goto fail_errno;
        ctx->defer_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ctx->defer_fd < 0)
                goto fail_errno;

        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &timer_tag};
        if (epoll_ctl(ctx->epoll_fd, EPOLL_CTL_ADD, ctx->timer_fd, &ev) < 0)
                goto fail_errno;
        ev.data.ptr = &defer_tag;
        if (epoll_ctl(ctx->epoll_fd, EPOLL_CTL_ADD, ctx->defer_fd, &ev) < 0)
                goto fail_errno;

        *ret_ctx = ctx;
        return 0;

fail_errno:
        r = negative_errno();
        qdm_ctx_unref(ctx);
        return r;
}

QDM_EXPORT qdm_ctx *qdm_ctx_ref(qdm_ctx *ctx)
{
        if (ctx)
                ctx->n_ref++;
        return ctx;
}

static void collect_garbage(qdm_ctx *ctx)
{
        while (ctx->garbage) {
                loop_source *s = ctx->garbage;
                ctx->garbage = s->gc_next;
                free(s);
        }
}

QDM_EXPORT qdm_ctx *qdm_ctx_unref(qdm_ctx *ctx)
{
        if (!ctx)
                return NULL;
        assert(ctx->n_ref > 0);
        if (--ctx->n_ref > 0)
                return NULL;

        /* Floating objects hold no reference on the context, so they end here. Closing one
         * may free sources, which needs the context alive: take a temporary reference. */
        ctx->n_ref++;
        while (ctx->floating) {
                floating *f = ctx->floating;
                ctx->floating = f->next;
                f->close_fn(f->object);
                free(f);
        }
        ctx->n_ref--;

        /* Every other source belongs to an object that holds a reference on the context, so
         * none can be left except garbage awaiting the end of a dispatch round. */
        assert(ctx->heap_size == 0);
        collect_garbage(ctx);
        free(ctx->heap);
        safe_close(ctx->defer_fd);
        safe_close(ctx->timer_fd);
        safe_close(ctx->epoll_fd);
        free(ctx);
        return NULL;
}

QDM_EXPORT void qdm_ctx_set_log(qdm_ctx *ctx, int max_level, qdm_log_fn fn, void *userdata)
{
        if (!ctx)
                return;
        ctx->log_fn = fn;
        ctx->log_userdata = userdata;
        ctx->log_max_level = max_level;
}

QDM_EXPORT int qdm_ctx_get_fd(qdm_ctx *ctx)
{
        assert_return(ctx, -EINVAL);
        return ctx->epoll_fd;
}

QDM_EXPORT int qdm_ctx_get_timeout(qdm_ctx *ctx, uint64_t *ret_usec)
{
        assert_return(ctx, -EINVAL);
        assert_return(ret_usec, -EINVAL);
        if (ctx->defer_head)
                *ret_usec = 0;
        else
                *ret_usec = ctx->heap_size > 0 ? ctx->heap[0]->time.usec : USEC_INFINITY;
        return 0;
}

/* ---- sources -------------------------------------------------------------------------- */

static loop_source *source_new(qdm_ctx *ctx, source_type type, void *userdata)
{
        loop_source *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->ctx = ctx;
        s->type = type;
        s->userdata = userdata;
        return s;
}

void loop_source_set_description(loop_source *s, const char *what)
{
        if (s)
                s->description = what;
}

int loop_add_io(qdm_ctx *ctx, int fd, uint32_t events, loop_io_fn fn, void *userdata,
                loop_source **ret)
{
        assert(ctx && fd >= 0 && fn && ret);
        loop_source *s = source_new(ctx, SOURCE_IO, userdata);
        if (!s)
                return -ENOMEM;
        s->io.fd = fd;
        s->io.events = events;
        s->io.fn = fn;
        struct epoll_event ev = {.events = events, .data.ptr = s};
        if (epoll_ctl(ctx->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = negative_errno();
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int loop_io_set_events(loop_source *s, uint32_t events)
{
        assert(s && s->type == SOURCE_IO && !s->dead);
        if (s->io.events == events)
                return 0;
        struct epoll_event ev = {.events = events, .data.ptr = s};
        if (epoll_ctl(s->ctx->epoll_fd, EPOLL_CTL_MOD, s->io.fd, &ev) < 0)
                return negative_errno();
        s->io.events = events;
        return 0;
}

/* Timer heap: heap[0] is the earliest. Each source remembers its index for O(log n) removal. */
static void heap_swap(qdm_ctx *ctx, size_t a, size_t b)
{
        loop_source *t = ctx->heap[a];
        ctx->heap[a] = ctx->heap[b];
        ctx->heap[b] = t;
        ctx->heap[a]->time.heap_index = a;
        ctx->heap[b]->time.heap_index = b;
}

static void heap_up(qdm_ctx *ctx, size_t i)
{
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (ctx->heap[parent]->time.usec <= ctx->heap[i]->time.usec)
                        break;
                heap_swap(ctx, i, parent);
                i = parent;
        }
}

static void heap_down(qdm_ctx *ctx, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < ctx->heap_size && ctx->heap[l]->time.usec < ctx->heap[m]->time.usec)
                        m = l;
                if (r < ctx->heap_size && ctx->heap[r]->time.usec < ctx->heap[m]->time.usec)
                        m = r;
                if (m == i)
                        return;
                heap_swap(ctx, i, m);
                i = m;
        }
}

static int heap_insert(qdm_ctx *ctx, loop_source *s)
{
        if (ctx->heap_size == ctx->heap_alloc) {
                size_t n = ctx->heap_alloc ? ctx->heap_alloc * 2 : 16;
                loop_source **h = realloc(ctx->heap, n * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                ctx->heap = h;
                ctx->heap_alloc = n;
        }
        s->time.heap_index = ctx->heap_size;
        ctx->heap[ctx->heap_size++] = s;
        heap_up(ctx, s->time.heap_index);
        return 0;
}

static void heap_remove(qdm_ctx *ctx, loop_source *s)
{
        size_t i = s->time.heap_index;
        if (i == SIZE_MAX)
                return;
        assert(i < ctx->heap_size && ctx->heap[i] == s);
        s->time.heap_index = SIZE_MAX;
        ctx->heap_size--;
        if (i == ctx->heap_size)
                return;
        ctx->heap[i] = ctx->heap[ctx->heap_size];
        ctx->heap[i]->time.heap_index = i;
        heap_down(ctx, i);
        heap_up(ctx, i);
}

/* Keep the timerfd pointed at the earliest timer; skip the syscall when nothing changed. */
static int timer_fd_sync(qdm_ctx *ctx)
{
        uint64_t next = ctx->heap_size > 0 ? ctx->heap[0]->time.usec : USEC_INFINITY;
        if (next == ctx->timer_fd_armed)
                return 0;
        struct itimerspec its = {0};
        if (next != USEC_INFINITY) {
                /* 0 would disarm the timerfd: an already expired time becomes 1 ns. */
                uint64_t when = next > 0 ? next : 1;
                its.it_value.tv_sec = (time_t)(when / USEC_PER_SEC);
                its.it_value.tv_nsec = (long)((when % USEC_PER_SEC) * NSEC_PER_USEC);
                if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
                        its.it_value.tv_nsec = 1;
        }
        if (timerfd_settime(ctx->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                return negative_errno();
        ctx->timer_fd_armed = next;
        return 0;
}

int loop_add_time(qdm_ctx *ctx, uint64_t usec, loop_time_fn fn, void *userdata, loop_source **ret)
{
        assert(ctx && fn && ret);
        loop_source *s = source_new(ctx, SOURCE_TIME, userdata);
        if (!s)
                return -ENOMEM;
        s->time.fn = fn;
        s->time.heap_index = SIZE_MAX;
        int r = loop_time_set(s, usec);
        if (r < 0) {
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int loop_time_set(loop_source *s, uint64_t usec)
{
        assert(s && s->type == SOURCE_TIME && !s->dead);
        qdm_ctx *ctx = s->ctx;
        s->time.usec = usec;
        if (usec == USEC_INFINITY)
                heap_remove(ctx, s);
        else if (s->time.heap_index == SIZE_MAX) {
                int r = heap_insert(ctx, s);
                if (r < 0)
                        return r;
        } else {
                heap_down(ctx, s->time.heap_index);
                heap_up(ctx, s->time.heap_index);
        }
        return timer_fd_sync(ctx);
}

int loop_add_defer(qdm_ctx *ctx, loop_defer_fn fn, void *userdata, loop_source **ret)
{
        assert(ctx && fn && ret);
        loop_source *s = source_new(ctx, SOURCE_DEFER, userdata);
        if (!s)
                return -ENOMEM;
        s->defer.fn = fn;
        loop_defer_arm(s);
        *ret = s;
        return 0;
}

void loop_defer_arm(loop_source *s)
{
        assert(s && s->type == SOURCE_DEFER && !s->dead);
        qdm_ctx *ctx = s->ctx;
        if (s->defer.armed)
                return;
        s->defer.armed = true;
        s->defer.next = NULL;
        if (ctx->defer_tail)
                ctx->defer_tail->defer.next = s;
        else
                ctx->defer_head = s;
        ctx->defer_tail = s;
        /* Make the epoll fd readable so host loops wake up for deferred work. */
        if (!ctx->defer_fd_signalled) {
                uint64_t one = 1;
                if (write(ctx->defer_fd, &one, sizeof(one)) == sizeof(one))
                        ctx->defer_fd_signalled = true;
        }
}

static void defer_unlink(qdm_ctx *ctx, loop_source *s)
{
        if (!s->defer.armed)
                return;
        loop_source **p = &ctx->defer_head, *prev = NULL;
        while (*p && *p != s) {
                prev = *p;
                p = &(*p)->defer.next;
        }
        if (*p) {
                *p = s->defer.next;
                if (ctx->defer_tail == s)
                        ctx->defer_tail = prev;
        }
        s->defer.armed = false;
        s->defer.next = NULL;
}

loop_source *loop_source_free(loop_source *s)
{
        if (!s)
                return NULL;
        assert(!s->dead);
        qdm_ctx *ctx = s->ctx;
        switch (s->type) {
        case SOURCE_IO:
                /* The fd may already be closed by a peer-less owner; ignore ENOENT/EBADF. */
                (void)epoll_ctl(ctx->epoll_fd, EPOLL_CTL_DEL, s->io.fd, NULL);
                break;
        case SOURCE_TIME:
                heap_remove(ctx, s);
                (void)timer_fd_sync(ctx);
                break;
        case SOURCE_DEFER:
                defer_unlink(ctx, s);
                break;
        }
        /* Events for it may sit in the current epoll batch: free after the round. */
        s->dead = true;
        s->gc_next = ctx->garbage;
        ctx->garbage = s;
        if (ctx->dispatch_depth == 0)
                collect_garbage(ctx);
        return NULL;
}

/* ---- floating objects ------------------------------------------------------------------ */

int ctx_floating_add(qdm_ctx *ctx, void *object, ctx_floating_close_fn close_fn)
{
        floating *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->object = object;
        f->close_fn = close_fn;
        f->next = ctx->floating;
        ctx->floating = f;
        return 0;
}

void ctx_floating_remove(qdm_ctx *ctx, void *object)
{
        for (floating **p = &ctx->floating; *p; p = &(*p)->next)
                if ((*p)->object == object) {
                        floating *f = *p;
                        *p = f->next;
                        free(f);
                        return;
                }
}

size_t ctx_floating_count(qdm_ctx *ctx)
{
        size_t n = 0;
        for (floating *f = ctx ? ctx->floating : NULL; f; f = f->next)
                n++;
        return n;
}

/* ---- dispatch -------------------------------------------------------------------------- */

static int dispatch_timers(qdm_ctx *ctx)
{
        uint64_t expirations;
        (void)!read(ctx->timer_fd, &expirations, sizeof(expirations));
        ctx->timer_fd_armed = USEC_INFINITY; /* a fired ABSTIME timerfd is disarmed */

        uint64_t now = now_usec();
        int n = 0;
        while (ctx->heap_size > 0 && ctx->heap[0]->time.usec <= now) {
                loop_source *s = ctx->heap[0];
                heap_remove(ctx, s);
                s->time.usec = USEC_INFINITY;
                int r = s->time.fn(s, now, s->userdata);
                if (r < 0)
                        ctx_log(ctx, LOG_DEBUG_LEVEL, "timer %s: %s", s->description ?: "(unnamed)",
                                strerror(-r));
                n++;
        }
        int r = timer_fd_sync(ctx);
        return r < 0 ? r : n;
}

static int dispatch_defers(qdm_ctx *ctx)
{
        uint64_t v;
        (void)!read(ctx->defer_fd, &v, sizeof(v));
        ctx->defer_fd_signalled = false;

        /* Run only what was queued before this round; defers armed by these callbacks run in
         * the next round (their arming re-signals the eventfd). */
        loop_source *tail = ctx->defer_tail;
        int n = 0;
        while (ctx->defer_head) {
                loop_source *s = ctx->defer_head;
                bool last = s == tail;
                defer_unlink(ctx, s);
                s->defer.fn(s, s->userdata);
                n++;
                if (last)
                        break;
        }
        return n;
}

static int dispatch(qdm_ctx *ctx, int timeout_ms)
{
        struct epoll_event events[64];
        int n;

        if (ctx->defer_head)
                timeout_ms = 0;
        for (;;) {
                n = epoll_wait(ctx->epoll_fd, events, (int)ELEMENTSOF(events), timeout_ms);
                if (n >= 0)
                        break;
                if (errno != EINTR)
                        return -errno;
        }

        qdm_ctx_ref(ctx);
        ctx->dispatch_depth++;
        int dispatched = 0;
        bool timers = false, defers = false;
        for (int i = 0; i < n; i++) {
                void *p = events[i].data.ptr;
                if (p == &timer_tag) {
                        timers = true;
                        continue;
                }
                if (p == &defer_tag) {
                        defers = true;
                        continue;
                }
                loop_source *s = p;
                if (s->dead)
                        continue;
                int r = s->io.fn(s, s->io.fd, events[i].events, s->userdata);
                if (r < 0)
                        ctx_log(ctx, LOG_DEBUG_LEVEL, "io %s: %s", s->description ?: "(unnamed)",
                                strerror(-r));
                dispatched++;
        }
        if (timers) {
                int r = dispatch_timers(ctx);
                if (r > 0)
                        dispatched += r;
        }
        if (defers || ctx->defer_head)
                dispatched += dispatch_defers(ctx);

        if (--ctx->dispatch_depth == 0)
                collect_garbage(ctx);
        qdm_ctx_unref(ctx);
        return dispatched;
}

QDM_EXPORT int qdm_ctx_process(qdm_ctx *ctx)
{
        assert_return(ctx, -EINVAL);
        return dispatch(ctx, 0);
}

QDM_EXPORT int qdm_ctx_run(qdm_ctx *ctx, uint64_t timeout_usec)
{
        assert_return(ctx, -EINVAL);
        int ms;
        if (timeout_usec == USEC_INFINITY)
                ms = -1;
        else if (timeout_usec >= (uint64_t)INT32_MAX * USEC_PER_MSEC)
                ms = INT32_MAX;
        else /* round up: waking early would spin */
                ms = (int)((timeout_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
        return dispatch(ctx, ms);
}

QDM_EXPORT int qdm_ctx_flush(qdm_ctx *ctx, uint64_t timeout_usec)
{
        assert_return(ctx, -EINVAL);
        uint64_t deadline = usec_add(now_usec(), timeout_usec);
        while (ctx->floating) {
                uint64_t now = now_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                int r = qdm_ctx_run(ctx,
                                    deadline == USEC_INFINITY ? USEC_INFINITY : deadline - now);
                if (r < 0)
                        return r;
        }
        return 0;
}
