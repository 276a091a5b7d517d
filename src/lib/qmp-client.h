/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the rest of libqdm may do with a QMP connection beyond the public API: send commands
 * with json-c arguments directly (no text round trip) and read replies as json-c objects.
 */
#pragma once

#include <json-c/json.h>

#include "qdm.h"
#include "qmp-wire.h"

struct qdm_qmp_message {
        const qmp_msg *msg;
};

/* Like qdm_qmp_send(), with args a json-c object (not consumed; NULL for none). */
int qmp_client_send(qdm_qmp *qmp, const char *command, json_object *args, const int *fds,
                    size_t n_fds, uint64_t timeout_usec, qdm_qmp_reply_fn fn, void *userdata,
                    uint64_t *ret_serial);

/* The "return" value of a reply / the data of an event, borrowed; NULL for errors. */
json_object *qmp_message_json(const qdm_qmp_message *m);

/* True once the greeting and qmp_capabilities succeeded and the connection is still up. */
bool qmp_client_is_ready(qdm_qmp *qmp);

/* Called once when the greeting has arrived, before qmp_capabilities is sent (lets the
 * device model report its GREETING -> NEGOTIATING step). */
void qmp_client_set_greeting_hook(qdm_qmp *qmp, void (*fn)(qdm_qmp *qmp, void *userdata),
                                  void *userdata);
