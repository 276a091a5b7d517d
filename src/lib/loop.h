/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The context's event loop, as the rest of libqdm sees it: io sources (sockets, pipes,
 * pidfds), absolute monotonic timers (all behind one timerfd) and deferred calls (behind one
 * eventfd), all inside the single epoll fd that qdm_ctx_get_fd() hands out.
 *
 * A source may be freed from any callback, including its own: it is disarmed at once and its
 * memory released after the current dispatch round.
 */
#pragma once

#include <stdarg.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "qdm.h"
#include "util.h"

typedef struct loop_source loop_source;

/* Return value of callbacks: <0 is logged by the loop and otherwise ignored. */
typedef int (*loop_io_fn)(loop_source *s, int fd, uint32_t revents, void *userdata);
typedef int (*loop_time_fn)(loop_source *s, uint64_t usec, void *userdata);
typedef void (*loop_defer_fn)(loop_source *s, void *userdata);

/* fd stays owned by the caller; free the source before closing the fd. */
int loop_add_io(qdm_ctx *ctx, int fd, uint32_t events, loop_io_fn fn, void *userdata,
                loop_source **ret);
int loop_io_set_events(loop_source *s, uint32_t events);

/* usec is absolute CLOCK_MONOTONIC; USEC_INFINITY keeps the timer disarmed. One-shot: after
 * firing it stays disarmed until loop_time_set() is called again. */
int loop_add_time(qdm_ctx *ctx, uint64_t usec, loop_time_fn fn, void *userdata, loop_source **ret);
int loop_time_set(loop_source *s, uint64_t usec);

/* Runs fn once on the next dispatch round (never from inside this call). The source stays
 * allocated until freed; loop_defer_arm() queues it again. */
int loop_add_defer(qdm_ctx *ctx, loop_defer_fn fn, void *userdata, loop_source **ret);
void loop_defer_arm(loop_source *s);

loop_source *loop_source_free(loop_source *s);
void loop_source_set_description(loop_source *s, const char *what);

/* Objects the context keeps alive after their owner let go (a QMP connection draining its
 * outstanding replies, R3). close_fn must release the object; it is called when the object
 * calls ctx_floating_remove() itself, or for every object left when the context is freed. */
typedef void (*ctx_floating_close_fn)(void *object);
int ctx_floating_add(qdm_ctx *ctx, void *object, ctx_floating_close_fn close_fn);
void ctx_floating_remove(qdm_ctx *ctx, void *object);
size_t ctx_floating_count(qdm_ctx *ctx);

/* Logging through the caller's callback. The message is built only when it will be shown. */
void ctx_log(qdm_ctx *ctx, int level, const char *fmt, ...) _printf_(3, 4);
bool ctx_log_enabled(qdm_ctx *ctx, int level);

#define LOG_ERR_LEVEL     3
#define LOG_WARNING_LEVEL 4
#define LOG_NOTICE_LEVEL  5
#define LOG_INFO_LEVEL    6
#define LOG_DEBUG_LEVEL   7
