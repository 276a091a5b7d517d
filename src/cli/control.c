/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "util.h"

int control_lookup(const cli_globals *g, const char *name, control *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->lock_fd = -1;
        ret->name = name;
        if (!config_name_valid(name))
                return cli_error(EXIT_USAGE,
                                 "'%s' is not a device model name (1-64 of "
                                 "[A-Za-z0-9_.-], not starting with '.')",
                                 name);
        int r = rundir_resolve(g, false, &ret->run_dir);
        if (r == -ENOENT)
                return cli_error(EXIT_FAILED, "no device model named \"%s\" (no run directory)",
                                 name);
        if (r != 0)
                return r;
        r = dm_state_read(ret->run_dir, name, &ret->record);
        if (r == -ENOENT)
                return cli_error(EXIT_FAILED, "no device model named \"%s\" in %s", name,
                                 ret->run_dir);
        if (r == -EPERM)
                return cli_error(EXIT_FAILED,
                                 "%s/%s/state.json is not owned by uid %u or is writable by "
                                 "others; refusing to trust it",
                                 ret->run_dir, name, (unsigned)geteuid());
        if (r < 0)
                return cli_error(EXIT_FAILED, "%s/%s/state.json: %s", ret->run_dir, name,
                                 r == -EBADMSG ? "malformed" : strerror(-r));
        return 0;
}

int control_connect(control *c, uint64_t lock_usec, uint64_t ready_usec)
{
        int r = rundir_lock(c->run_dir, c->name, lock_usec);
        if (r == -ETIMEDOUT)
                return cli_error(EXIT_FAILED, "%s: the monitor stayed busy for %.0f s", c->name,
                                 (double)lock_usec / 1e6);
        if (r < 0)
                return cli_error(EXIT_FAILED, "%s: cannot take its lock: %s", c->name,
                                 strerror(-r));
        c->lock_fd = r;

        _cleanup_free_ char *sock = rundir_path(c->run_dir, c->name, SOCKET_FILE);
        if (!sock)
                return cli_error(EXIT_FAILED, "out of memory");
        /* No one else can be on the monitor now: QEMU accepts us at once. The wait for its
         * greeting starts now, after the lock, and is bounded on its own. */
        uint64_t deadline = usec_add(now_usec(), ready_usec);
        r = qdm_ctx_new(&c->ctx);
        if (r >= 0)
                r = qdm_qmp_new(c->ctx, &c->qmp);
        if (r >= 0)
                r = qdm_qmp_connect(c->qmp, sock);
        if (r >= 0 && ready_usec > 0) {
                uint64_t now = now_usec();
                r = qdm_qmp_wait_ready(c->qmp, deadline > now ? deadline - now : 1);
        }
        if (r == -ENOENT || r == -ECONNREFUSED)
                return cli_error(EXIT_FAILED, "%s: QEMU is not running (%s)", c->name,
                                 strerror(-r));
        if (r < 0)
                return cli_error(EXIT_FAILED, "%s: cannot connect to its monitor: %s", c->name,
                                 strerror(-r));
        return 0;
}

void control_close(control *c, uint64_t drain_usec)
{
        c->qmp = qdm_qmp_unref(c->qmp);
        if (c->ctx && qdm_ctx_flush(c->ctx, drain_usec) < 0)
                cli_error(EXIT_FAILED, "%s: gave up waiting for a late reply after %.0f s", c->name,
                          (double)drain_usec / 1e6);
        c->ctx = qdm_ctx_unref(c->ctx);
        c->lock_fd = safe_close(c->lock_fd);
        free(c->run_dir);
        c->run_dir = NULL;
        dm_state_done(&c->record);
}

int control_execute(control *c, const char *command, const char *args, uint64_t timeout_usec,
                    char **ret_json)
{
        char *error = NULL;
        int r = qdm_qmp_execute(c->qmp, command, args, timeout_usec, ret_json, &error);
        if (r == -EREMOTEIO) {
                cli_error(EXIT_FAILED, "%s: %s: %s", c->name, command, error ? error : "error");
                free(error);
                return EXIT_FAILED;
        }
        if (r == -ETIMEDOUT)
                return cli_error(EXIT_FAILED, "%s: %s: no reply within %.3g s", c->name, command,
                                 (double)timeout_usec / 1e6);
        if (r < 0)
                return cli_error(EXIT_FAILED, "%s: %s: %s", c->name, command, strerror(-r));
        return EXIT_OK;
}
