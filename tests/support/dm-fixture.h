/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fixture of the device-model tests (tests/integration/test-dm.c, test-jail.c): a context,
 * a run directory in a private temporary directory, the states and the QEMUs its device
 * models went through, starting one and waiting for an operation, and the checks every test
 * ends with: no process of a device model, no directory, no fd of ours left.
 *
 * A test's own fixture embeds a dm_fixture as its first member, so that the pointer cmocka
 * passes around is both:
 *
 *         typedef struct fixture {
 *                 dm_fixture dm;
 *                 int what_this_test_needs;
 *         } fixture;
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qdm.h"

typedef struct dm_fixture dm_fixture;

/* A test's own part of the state callback, called after the fixture recorded the state. */
typedef void (*dm_fixture_state_fn)(dm_fixture *f, qdm_dm *dm, qdm_dm_state new_state);

struct dm_fixture {
        int fds_before;
        char *dir;     /* private temp dir */
        char *run_dir; /* dir/run */
        qdm_ctx *ctx;
        /* Every state the device models entered, in order (a test may reset n_states). */
        qdm_dm_state states[32];
        size_t n_states;
        /* The QEMU of every device model that got as far as GREETING, and its uid. */
        pid_t pids_seen[8];
        uid_t uids_seen[8];
        size_t n_seen;
        dm_fixture_state_fn on_state; /* may be NULL */
};

/* cmocka setup: allocate the test's fixture (size bytes, beginning with the dm_fixture) in
 * *state, with a context (logging to stderr when QDM_TEST_VERBOSE is set) and a run directory
 * in a fresh private directory named after tag. Fails (-1) when QEMU is not installed. */
int dm_fixture_setup(void **state, size_t size, const char *tag, dm_fixture_state_fn on_state);

/* A test's cmocka teardown is these two halves, with whatever it must undo itself (a faked
 * /dev/kvm, say) in between. The first: kill every QEMU a failed assertion left behind (so
 * that one failure does not cascade into leftovers; the checks still fail), flush and free
 * the context. */
void dm_fixture_stop(dm_fixture *f);
/* The second half: nothing of any device model survived, no fd more than at setup; removes
 * the directory and frees the fixture (the whole allocation of dm_fixture_setup()). */
void dm_fixture_free(dm_fixture *f);

/* An operation's completion (qdm_dm_done_fn): dm_done_cb with a dm_done as userdata. */
typedef struct dm_done {
        bool called;
        int error;
        unsigned calls;
} dm_done;

void dm_done_cb(qdm_dm *dm, int error, void *userdata);

/* Dispatch until d was called, for timeout_usec at most, then a little more: it must have been
 * called exactly once. Returns the error it was called with. */
int dm_fixture_wait_done(dm_fixture *f, dm_done *d, uint64_t timeout_usec);

/* A device model for config (which it frees: the device model keeps its own reference) under
 * the fixture's run directory, with the fixture's state callback, started: the start must
 * not complete synchronously, and must complete within 30 s with expect. */
qdm_dm *dm_fixture_start(dm_fixture *f, qdm_config *config, int expect);

/* Dispatch until dm has EXITED. */
void dm_fixture_wait_exited(dm_fixture *f, qdm_dm *dm);
