/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Per-test leak checks for the spawn and restrict tests, used as cmocka setup/teardown: a test
 * fails if it leaves an fd open or a child process (running or zombie) behind. Header-only so
 * that each test program gets its own copy of the counter.
 */
#pragma once

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

#include "proc.h"

static int leaks_fds_before = -1;

static void leaks_print_fds(void)
{
        proc_fd *fds = NULL;
        size_t n = 0;

        if (proc_list_fds(0, &fds, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, "#   fd %d -> %s\n", fds[i].fd, fds[i].target);
        proc_fds_free(fds, n);
}

/* After a failed test: kill and reap what it left, so that the next test starts clean and
 * nothing is orphaned when the test program exits. */
static void leaks_kill_children(void)
{
        pid_t *pids = NULL;
        size_t n = 0;

        if (proc_list_pids(&pids, &n) == 0) {
                for (size_t i = 0; i < n; i++) {
                        proc_status st;
                        if (proc_status_read(pids[i], &st) == 0 && st.ppid == getpid())
                                kill(pids[i], SIGKILL);
                }
                free(pids);
        }
        while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
                ;
}

static int leaks_setup(void **state)
{
        (void)state;
        leaks_fds_before = proc_count_fds();
        return leaks_fds_before < 0 ? -1 : 0;
}

static int leaks_teardown(void **state)
{
        siginfo_t si = {0};
        int fds = proc_count_fds(), ok = 0;

        (void)state;
        if (fds != leaks_fds_before) {
                fprintf(stderr, "# fd leak: %d open before the test, %d after:\n", leaks_fds_before,
                        fds);
                leaks_print_fds();
                ok = -1;
        }
        /* ECHILD is the only proof that no child, running or zombie, is left. */
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 || errno != ECHILD) {
                fprintf(stderr, "# child process left behind\n");
                leaks_kill_children();
                ok = -1;
        }
        return ok;
}

#define leak_checked_test(f) cmocka_unit_test_setup_teardown(f, leaks_setup, leaks_teardown)
