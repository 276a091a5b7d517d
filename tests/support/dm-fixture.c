/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dm-fixture.h"
#include "qdm.h"
#include "test-support.h"
#include "util.h"

static void log_stderr(int level, const char *message, void *userdata)
{
        fprintf(stderr, "libqdm[%d]: %s\n", level, message);
}

int dm_fixture_setup(void **state, size_t size, const char *tag, dm_fixture_state_fn on_state)
{
        if (!test_qemu_binary()) {
                print_message("qemu-system-x86_64 is not installed\n");
                return -1;
        }
        assert_true(size >= sizeof(dm_fixture));
        dm_fixture *f = calloc(1, size);
        assert_non_null(f);
        f->fds_before = test_count_fds();
        f->dir = test_mkdtemp(tag);
        assert_non_null(f->dir);
        assert_true(asprintf(&f->run_dir, "%s/run", f->dir) > 0);
        assert_int_equal(qdm_ctx_new(&f->ctx), 0);
        if (getenv("QDM_TEST_VERBOSE"))
                qdm_ctx_set_log(f->ctx, 7, log_stderr, NULL);
        f->on_state = on_state;
        *state = f;
        return 0;
}

void dm_fixture_stop(dm_fixture *f)
{
        for (size_t i = 0; i < f->n_seen; i++) {
                char p[64];
                snprintf(p, sizeof(p), "/proc/%d", (int)f->pids_seen[i]);
                if (f->pids_seen[i] > 0 && access(p, F_OK) == 0)
                        kill(f->pids_seen[i], SIGKILL);
        }
        assert_int_equal(qdm_ctx_flush(f->ctx, 5 * USEC_PER_SEC), 0);
        f->ctx = qdm_ctx_unref(f->ctx);
}

void dm_fixture_free(dm_fixture *f)
{
        test_assert_no_device_models(f->run_dir, f->pids_seen, f->uids_seen, f->n_seen);
        assert_int_equal(test_count_fds(), f->fds_before);
        test_rm_rf(f->dir);
        free(f->dir);
        free(f->run_dir);
        free(f);
}

static void record_state(qdm_dm *dm, qdm_dm_state old_state, qdm_dm_state new_state, void *userdata)
{
        dm_fixture *f = userdata;
        if (f->n_states < ELEMENTSOF(f->states))
                f->states[f->n_states++] = new_state;
        if (new_state == QDM_DM_GREETING && f->n_seen < ELEMENTSOF(f->pids_seen)) {
                f->pids_seen[f->n_seen] = qdm_dm_get_pid(dm);
                f->uids_seen[f->n_seen++] = qdm_dm_get_uid(dm);
        }
        if (f->on_state)
                f->on_state(f, dm, new_state);
}

void dm_done_cb(qdm_dm *dm, int error, void *userdata)
{
        dm_done *d = userdata;
        d->called = true;
        d->error = error;
        d->calls++;
}

int dm_fixture_wait_done(dm_fixture *f, dm_done *d, uint64_t timeout_usec)
{
        uint64_t deadline = now_usec() + timeout_usec;
        while (!d->called && now_usec() < deadline)
                assert_true(qdm_ctx_run(f->ctx, 100 * USEC_PER_MSEC) >= 0);
        /* Exactly once: a little more dispatching must not call it again. */
        (void)qdm_ctx_run(f->ctx, 10 * USEC_PER_MSEC);
        assert_true(d->called);
        assert_int_equal(d->calls, 1);
        return d->error;
}

qdm_dm *dm_fixture_start(dm_fixture *f, qdm_config *config, int expect)
{
        qdm_dm *dm = NULL;
        assert_int_equal(qdm_dm_new(f->ctx, config, f->run_dir, &dm), 0);
        qdm_config_free(config); /* the device model keeps its own reference */
        qdm_dm_set_state_callback(dm, record_state, f);
        dm_done d = {0};
        assert_int_equal(qdm_dm_start(dm, dm_done_cb, &d), 0);
        /* Never synchronous. */
        assert_false(d.called);
        int r = dm_fixture_wait_done(f, &d, 30 * USEC_PER_SEC);
        if (r != expect)
                print_message("start: %d (%s): %s\n", r, strerror(-r),
                              qdm_dm_get_error(dm) ? qdm_dm_get_error(dm) : "");
        assert_int_equal(r, expect);
        return dm;
}

void dm_fixture_wait_exited(dm_fixture *f, qdm_dm *dm)
{
        while (qdm_dm_get_state(dm) != QDM_DM_EXITED)
                assert_true(qdm_ctx_run(f->ctx, 5 * USEC_PER_SEC) > 0);
}
