/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device models through libqdm against real QEMU 7.2: a restricted start checked from /proc,
 * the lifecycle, and faults at every step (QEMU missing, failing at once, never answering,
 * killed between each pair of steps). After every test: no process of the device model, no
 * directory, no fd of ours left.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dm-fixture.h"
#include "proc.h"
#include "qdm.h"
#include "test-support.h"
#include "util.h"

typedef struct fixture {
        dm_fixture dm;
        int kill_at;              /* kill QEMU when entering this state (-1: never) */
        const char *ready_marker; /* a file whose existence is recorded at READY */
        int marker_at_ready;      /* -1: READY not seen; 0/1: the marker existed */
} fixture;

static void kill_at_state(dm_fixture *df, qdm_dm *dm, qdm_dm_state new_state)
{
        fixture *f = (fixture *)df;
        if ((int)new_state == f->kill_at)
                kill(qdm_dm_get_pid(dm), SIGKILL);
        if (new_state == QDM_DM_READY && f->ready_marker)
                f->marker_at_ready = access(f->ready_marker, F_OK) == 0;
}

static int setup(void **state)
{
        int r = dm_fixture_setup(state, sizeof(fixture), "dm", kill_at_state);
        if (r == 0)
                ((fixture *)*state)->kill_at = -1;
        return r;
}

static int teardown(void **state)
{
        fixture *f = *state;
        dm_fixture_stop(&f->dm);
        dm_fixture_free(&f->dm);
        return 0;
}

static void test_restricted_start(void **state)
{
        fixture *f = *state;
        /* A marker fd without CLOEXEC: QEMU must not inherit it (only the planned fds). */
        char *marker_path = NULL;
        assert_true(asprintf(&marker_path, "%s/marker", f->dm.dir) > 0);
        int marker = open(marker_path, O_RDWR | O_CREAT, 0600);
        assert_true(marker >= 0);

        /* Mode "qemu" (libxl's), which chroots itself; jail mode: test-jail.c. */
        qdm_dm *dm = dm_fixture_start(
                &f->dm,
                test_config("{\"name\": \"r1\", \"machine\": \"none\", \"restrict\": "
                            "{\"mode\": \"qemu\"}}"),
                0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_READY);
        /* The states went in order, and READY came last: only after query-status. */
        const qdm_dm_state expected[] = {QDM_DM_SPAWNING, QDM_DM_GREETING, QDM_DM_NEGOTIATING,
                                         QDM_DM_QUERYING, QDM_DM_READY};
        assert_int_equal(f->dm.n_states, ELEMENTSOF(expected));
        for (size_t i = 0; i < ELEMENTSOF(expected); i++)
                assert_int_equal(f->dm.states[i], expected[i]);

        pid_t pid = qdm_dm_get_pid(dm);
        proc_status st;
        assert_int_equal(proc_status_read(pid, &st), 0);
        for (int i = 0; i < 4; i++) {
                assert_int_not_equal(st.uid[i], 0);
                assert_int_not_equal(st.gid[i], 0);
        }
        assert_int_equal(st.uid[0], qdm_dm_get_uid(dm));
        assert_int_equal(st.cap_eff, 0);
        assert_int_equal(st.cap_prm, 0);
        assert_int_equal(st.no_new_privs, 1);
        assert_int_equal(st.seccomp, 2);

        char *root = NULL;
        assert_int_equal(proc_root(pid, &root), 0);
        char *expect_root = NULL;
        assert_true(asprintf(&expect_root, "%s/r1/root", f->dm.run_dir) > 0);
        assert_string_equal(root, expect_root);
        struct stat sb;
        assert_int_equal(stat(expect_root, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0);
        free(root);
        free(expect_root);

        assert_int_not_equal(test_ns_ino(pid, "mnt"), test_ns_ino(getpid(), "mnt"));
        assert_int_not_equal(test_ns_ino(pid, "ipc"), test_ns_ino(getpid(), "ipc"));

        struct rlimit rl;
        assert_int_equal(proc_rlimit(pid, RLIMIT_FSIZE, &rl), 0);
        assert_int_equal(rl.rlim_cur, 256 * 1024);
        assert_int_equal(proc_rlimit(pid, RLIMIT_CORE, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);
        assert_int_equal(proc_rlimit(pid, RLIMIT_MEMLOCK, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);
        assert_int_equal(proc_rlimit(pid, RLIMIT_LOCKS, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);
        assert_int_equal(proc_rlimit(pid, RLIMIT_MSGQUEUE, &rl), 0);
        assert_int_equal(rl.rlim_max, 0);

        /* Only the planned fds: nothing of ours (the marker) leaked in; stdin is /dev/null,
         * stdout and stderr the pipe qdm reads. */
        proc_fd *fds = NULL;
        size_t n_fds = 0;
        int lr = proc_list_fds(pid, &fds, &n_fds);
        if (lr < 0)
                print_message("proc_list_fds(%d): %s\n", (int)pid, strerror(-lr));
        assert_int_equal(lr, 0);
        for (size_t i = 0; i < n_fds; i++) {
                if (strcmp(fds[i].target, marker_path) == 0)
                        print_message("QEMU holds the marker as fd %d\n", fds[i].fd);
                assert_string_not_equal(fds[i].target, marker_path);
                if (fds[i].fd == 0)
                        assert_string_equal(fds[i].target, "/dev/null");
                if (fds[i].fd == 1 || fds[i].fd == 2)
                        assert_non_null(strstr(fds[i].target, "pipe:["));
        }
        proc_fds_free(fds, n_fds);
        close(marker);
        unlink(marker_path);
        free(marker_path);

        /* The socket and the directory are closed to others. */
        assert_int_equal(stat(qdm_dm_get_socket_path(dm), &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
        assert_int_equal(stat(qdm_dm_get_dir(dm), &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0700);

        /* While held, the uid's lock file carries no clean mark (the allocation consumed any);
         * after destroy's sweep it does, so the next holder may skip the /proc scan. */
        char lock_path[PATH_MAX], mark[64] = "";
        snprintf(lock_path, sizeof(lock_path), "%s/uid-%u.lock", QDM_UID_LOCK_DIR,
                 (unsigned)qdm_dm_get_uid(dm));
        assert_int_equal(test_read_file(lock_path, mark, sizeof(mark)), 0);
        assert_int_equal(qdm_dm_destroy(dm), 0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_EXITED);
        assert_int_equal(access(qdm_dm_get_dir(dm), F_OK), -1);
        assert_true(test_read_file(lock_path, mark, sizeof(mark)) > 0);
        assert_true(strncmp(mark, "clean ", 6) == 0);
        qdm_dm_unref(dm);
}

static void test_lifecycle(void **state)
{
        fixture *f = *state;
        qdm_dm *dm = dm_fixture_start(&f->dm,
                                      test_config("{\"name\": \"life\", \"machine\": \"q35\", "
                                                  "\"memory_mib\": 64}"),
                                      0);
        /* Ready means prelaunch, asked independently on the same control connection. */
        char *json = NULL;
        assert_int_equal(qdm_qmp_execute(qdm_dm_get_qmp(dm), "query-status", NULL, 5 * USEC_PER_SEC,
                                         &json, NULL),
                         0);
        assert_non_null(strstr(json, "\"prelaunch\""));
        free(json);

        dm_done d = {0};
        assert_int_equal(qdm_dm_pause(dm, dm_done_cb, &d), -EBUSY); /* READY is paused already */
        assert_int_equal(qdm_dm_resume(dm, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_RUNNING);
        assert_int_equal(qdm_qmp_execute(qdm_dm_get_qmp(dm), "query-status", NULL, 5 * USEC_PER_SEC,
                                         &json, NULL),
                         0);
        assert_non_null(strstr(json, "\"running\""));
        free(json);

        d = (dm_done){0};
        assert_int_equal(qdm_dm_pause(dm, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_PAUSED);

        /* q35 without a guest OS ignores ACPI power-off: the grace period ends it. */
        d = (dm_done){0};
        assert_int_equal(qdm_dm_shutdown(dm, 300 * USEC_PER_MSEC, dm_done_cb, &d), 0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_STOPPING);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), -ETIMEDOUT);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_EXITED);
        assert_int_equal(access(qdm_dm_get_dir(dm), F_OK), -1);
        qdm_dm_unref(dm);
}

static void test_shutdown_never_ran(void **state)
{
        fixture *f = *state;
        qdm_dm *dm = dm_fixture_start(&f->dm, test_config("{\"name\": \"quit\"}"), 0);
        dm_done d = {0};
        assert_int_equal(qdm_dm_shutdown(dm, 10 * USEC_PER_SEC, dm_done_cb, &d), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC), 0);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_EXITED);
        int status = -1;
        assert_int_equal(qdm_dm_get_exit(dm, &status), 0);
        assert_int_equal(status, 0);
        qdm_dm_unref(dm);
}

static void test_two_uids(void **state)
{
        fixture *f = *state;
        qdm_dm *a = dm_fixture_start(&f->dm, test_config("{\"name\": \"a\"}"), 0);
        qdm_dm *b = dm_fixture_start(&f->dm, test_config("{\"name\": \"b\"}"), 0);
        assert_int_not_equal(qdm_dm_get_uid(a), qdm_dm_get_uid(b));
        assert_int_not_equal(qdm_dm_get_uid(a), 0);
        /* A name in use is refused, and the existing one is untouched. */
        qdm_dm *dup = dm_fixture_start(&f->dm, test_config("{\"name\": \"a\"}"), -EEXIST);
        assert_int_equal(qdm_dm_get_state(dup), QDM_DM_FAILED);
        qdm_dm_unref(dup);
        assert_int_equal(qdm_dm_get_state(a), QDM_DM_READY);
        assert_int_equal(access(qdm_dm_get_socket_path(a), F_OK), 0);
        /* The last unref of a live device model destroys it. */
        qdm_dm_unref(a);
        qdm_dm_unref(b);
}

static void test_unrestricted(void **state)
{
        fixture *f = *state;
        qdm_dm *dm = dm_fixture_start(&f->dm,
                                      test_config("{\"name\": \"plain\", \"restrict\": {\"mode\": "
                                                  "\"none\"}}"),
                                      0);
        proc_status st;
        assert_int_equal(proc_status_read(qdm_dm_get_pid(dm), &st), 0);
        assert_int_equal(st.uid[0], geteuid());
        assert_int_equal(st.seccomp, 0);
        qdm_dm_unref(dm);
}

/* ---- faults ------------------------------------------------------------------------------ */

static void test_binary_vanished(void **state)
{
        fixture *f = *state;
        char *path = NULL;
        assert_true(asprintf(&path, "%s/qemu-gone", f->dm.dir) > 0);
        int fd = open(path, O_WRONLY | O_CREAT, 0755);
        assert_true(fd >= 0);
        close(fd);
        qdm_config *c = test_config("{\"name\": \"gone\", \"qemu\": \"%s\"}", path);
        unlink(path);
        qdm_dm *dm = dm_fixture_start(&f->dm, c, -ENOENT);
        assert_non_null(strstr(qdm_dm_get_error(dm), "qemu-gone"));
        qdm_dm_unref(dm);
        free(path);
}

static void test_exits_at_once(void **state)
{
        fixture *f = *state;
        uint64_t t0 = now_usec();
        qdm_dm *dm =
                dm_fixture_start(&f->dm,
                                 test_config("{\"name\": \"bad\", \"restrict\": {\"mode\": "
                                             "\"none\"}, \"extra_args\": [\"-no-such-option\"]}"),
                                 -ESRCH);
        uint64_t took = now_usec() - t0;
        const char *e = qdm_dm_get_error(dm);
        /* How it died, and QEMU's own words. */
        assert_non_null(strstr(e, "exited with status 1"));
        assert_non_null(strstr(e, "-no-such-option"));
        print_message("failed start reported after %.1f ms: %s\n", (double)took / 1000, e);
        qdm_dm_unref(dm);
}

/* A "QEMU" (script qemu-NAME) that passes the probe (which gets the real binary) but then runs
 * the fake server in MODE on its control monitor (fd 3): what real QEMU will not do on demand.
 * Its event monitor (fd 4) is left unserved, or with EVENT_SERVER served by that Python
 * program. */
static char *fake_qemu(fixture *f, const char *name, const char *mode, const char *event_server)
{
        char *fake = test_build_path("tests/fake/fake-qmp");
        char *path = NULL;
        assert_true(asprintf(&path, "%s/qemu-%s", f->dm.dir, name) > 0);
        FILE *s = fopen(path, "w");
        assert_non_null(s);
        fprintf(s,
                "#!/bin/sh\n"
                "for a; do case \"$a\" in *id=probe*) exec %s \"$@\";; esac; done\n",
                test_qemu_binary());
        if (event_server)
                fprintf(s, "%s --fd 3 --mode %s 4<&- &\nexec 3<&- python3 -c '%s'\n", fake, mode,
                        event_server);
        else
                fprintf(s, "exec %s --fd 3 --mode %s\n", fake, mode);
        fclose(s);
        chmod(path, 0755);
        free(fake);
        return path;
}

static void test_never_answers(void **state)
{
        fixture *f = *state;
        const char *modes[] = {"nogreet", "silent"};
        const qdm_dm_state stuck[] = {QDM_DM_GREETING, QDM_DM_NEGOTIATING};
        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                char *q = fake_qemu(f, modes[i], modes[i], NULL);
                f->dm.n_states = 0;
                qdm_dm *dm =
                        dm_fixture_start(&f->dm,
                                         test_config("{\"name\": \"mute\", \"qemu\": \"%s\", "
                                                     "\"start_timeout_ms\": 400, \"restrict\": "
                                                     "{\"mode\": \"none\"}}",
                                                     q),
                                         -ETIMEDOUT);
                assert_int_equal(f->dm.states[f->dm.n_states - 2], stuck[i]);
                assert_non_null(strstr(qdm_dm_get_error(dm), "not ready within 400 ms"));
                assert_int_equal(qdm_dm_get_state(dm), QDM_DM_FAILED);
                qdm_dm_unref(dm);
                free(q);
        }
}

/* READY needs the event monitor negotiated too: QEMU drops events for a monitor that is still
 * negotiating, so a guest resumed at READY could otherwise leave no RESUME in the event log.
 * Here the event monitor greets 300 ms late and creates a marker file just before its
 * qmp_capabilities reply: READY must come after it. */
static void test_ready_waits_for_the_event_monitor(void **state)
{
        fixture *f = *state;
        char *marker = NULL;
        assert_true(asprintf(&marker, "%s/events-negotiated", f->dm.dir) > 0);
        char *server = NULL;
        assert_true(asprintf(&server,
                             "import json, socket, time\n"
                             "s = socket.socket(fileno=4); f = s.makefile(\"rw\")\n"
                             "time.sleep(0.3)\n"
                             "f.write(json.dumps({\"QMP\": {\"version\": {}, \"capabilities\": "
                             "[]}}) + \"\\n\"); f.flush()\n"
                             "cmd = json.loads(f.readline())\n"
                             "open(\"%s\", \"w\").close()\n"
                             "f.write(json.dumps({\"return\": {}, \"id\": cmd[\"id\"]}) + "
                             "\"\\n\"); f.flush()\n"
                             "f.readline()\n",
                             marker) > 0);
        char *q = fake_qemu(f, "late-events", "normal", server);
        f->ready_marker = marker;
        f->marker_at_ready = -1;
        qdm_dm *dm =
                dm_fixture_start(&f->dm,
                                 test_config("{\"name\": \"late\", \"qemu\": \"%s\", \"restrict\": "
                                             "{\"mode\": \"none\"}}",
                                             q),
                                 0);
        assert_int_equal(f->marker_at_ready, 1);
        qdm_dm_unref(dm);

        /* An event monitor that never greets: the start fails at its deadline, and says why. */
        free(q);
        q = fake_qemu(f, "mute-events", "normal", "import time; time.sleep(3600)");
        f->ready_marker = NULL;
        dm = dm_fixture_start(&f->dm,
                              test_config("{\"name\": \"mute-ev\", \"qemu\": \"%s\", "
                                          "\"start_timeout_ms\": 500, \"restrict\": "
                                          "{\"mode\": \"none\"}}",
                                          q),
                              -ETIMEDOUT);
        assert_non_null(strstr(qdm_dm_get_error(dm), "stuck while negotiating the event monitor"));
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_FAILED);
        qdm_dm_unref(dm);
        free(q);
        free(server);
        free(marker);
}

static void test_killed_between_steps(void **state)
{
        fixture *f = *state;
        const qdm_dm_state steps[] = {QDM_DM_GREETING, QDM_DM_NEGOTIATING, QDM_DM_QUERYING};
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                f->kill_at = (int)steps[i];
                f->dm.n_states = 0;
                uint64_t t0 = now_usec();
                qdm_dm *dm =
                        dm_fixture_start(&f->dm, test_config("{\"name\": \"k%zu\"}", i), -ESRCH);
                uint64_t took = now_usec() - t0;
                assert_non_null(strstr(qdm_dm_get_error(dm), "killed by signal 9"));
                assert_int_equal(f->dm.states[f->dm.n_states - 1], QDM_DM_FAILED);
                print_message("killed at %s: failed start reported %.1f ms after start\n",
                              qdm_dm_state_to_string(steps[i]), (double)took / 1000);
                qdm_dm_unref(dm);
        }
        /* After ready and while running: the state machine ends at EXITED. */
        f->kill_at = -1;
        qdm_dm *dm = dm_fixture_start(&f->dm, test_config("{\"name\": \"k-ready\"}"), 0);
        kill(qdm_dm_get_pid(dm), SIGKILL);
        dm_fixture_wait_exited(&f->dm, dm);
        int status = 0;
        assert_int_equal(qdm_dm_get_exit(dm, &status), 0);
        assert_int_equal(status, -SIGKILL);
        qdm_dm_unref(dm);

        f->kill_at = (int)QDM_DM_RUNNING;
        dm = dm_fixture_start(&f->dm, test_config("{\"name\": \"k-running\"}"), 0);
        dm_done d = {0};
        assert_int_equal(qdm_dm_resume(dm, dm_done_cb, &d), 0);
        (void)dm_fixture_wait_done(&f->dm, &d, 10 * USEC_PER_SEC);
        dm_fixture_wait_exited(&f->dm, dm);
        qdm_dm_unref(dm);
}

static void test_destroy_while_starting(void **state)
{
        fixture *f = *state;
        qdm_dm *dm = NULL;
        qdm_config *c = test_config("{\"name\": \"early\"}");
        assert_int_equal(qdm_dm_new(f->dm.ctx, c, f->dm.run_dir, &dm), 0);
        qdm_config_free(c); /* the device model keeps its own reference */
        dm_done d = {0};
        assert_int_equal(qdm_dm_start(dm, dm_done_cb, &d), 0);
        assert_int_equal(qdm_dm_destroy(dm), 0);
        assert_int_equal(dm_fixture_wait_done(&f->dm, &d, 5 * USEC_PER_SEC), -ECANCELED);
        assert_int_equal(qdm_dm_get_state(dm), QDM_DM_FAILED);
        qdm_dm_unref(dm);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_restricted_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shutdown_never_ran, setup, teardown),
                cmocka_unit_test_setup_teardown(test_two_uids, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unrestricted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_binary_vanished, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exits_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_never_answers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ready_waits_for_the_event_monitor, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_killed_between_steps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_destroy_while_starting, setup, teardown),
        };
        return cmocka_run_group_tests_name("dm", tests, NULL, NULL);
}
