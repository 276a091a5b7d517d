/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm status and qdm list. The record in state.json says what the supervisor last knew; the
 * pids in it are checked against their start times, and for a live QEMU its run state is
 * asked over the control monitor (under the lock, R7), so what is printed is what is true now.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control.h"
#include "util.h"

#define STATUS_QUERY_USEC (5 * USEC_PER_SEC)

typedef struct view {
        const char *state;
        const char *why; /* what the record cannot say, when the view corrects it */
        bool qemu_alive, supervisor_alive;
        bool uptime_known;
        uint64_t uptime_sec;
        char *qemu_status; /* live answer, or NULL */
} view;

static bool alive(const proc_ident *p)
{
        int fd = proc_ident_open(p);
        if (fd < 0)
                return false;
        close(fd);
        return true;
}

static const char *state_from_status(const char *status, const char *fallback)
{
        if (streq_ptr(status, "prelaunch"))
                return "ready";
        if (streq_ptr(status, "running") || streq_ptr(status, "paused") ||
            streq_ptr(status, "shutdown"))
                return status;
        return fallback;
}

static void view_build(control *c, bool query, view *v)
{
        dm_state *s = &c->record;
        /* Recorded before QEMU's pid was known, and the supervisor is gone: the holder of the
         * control socket is QEMU. */
        pid_t holder;
        if (s->qemu.pid == 0 && rundir_socket_holders(c->run_dir, c->name, &holder, 1) == 1)
                (void)proc_ident_get(holder, &s->qemu);
        v->qemu_alive = alive(&s->qemu);
        v->supervisor_alive = alive(&s->supervisor);
        v->state = s->state;
        if (streq_ptr(s->state, "starting") && !v->supervisor_alive) {
                /* The supervisor records the outcome of every start; it died before it could. */
                v->state = "failed";
                v->why = v->qemu_alive ? "the supervisor died during the start; QEMU is left "
                                         "unsupervised: 'qdm destroy' removes it"
                                       : "the supervisor died during the start";
        } else if (!v->qemu_alive && !s->ended && !streq_ptr(s->state, "starting")) {
                v->state = "exited"; /* killed behind qdm's back, with no supervisor to tell */
                v->why = "QEMU is gone and nothing recorded how it ended";
        }
        /* Uptime runs from creation to the recorded end, or to now while QEMU lives. */
        uint64_t end = s->ended && s->ended_at ? s->ended_at
                       : v->qemu_alive         ? (uint64_t)time(NULL)
                                               : 0;
        v->uptime_known = end > 0;
        v->uptime_sec = end > s->created ? end - s->created : 0;
        /* While starting, the supervisor holds the monitor: the record is the answer. */
        if (!query || !v->qemu_alive || streq_ptr(s->state, "starting"))
                return;
        /* A quiet failure here only costs the live status; the record still answers. */
        if (control_connect(c, STATUS_QUERY_USEC, STATUS_QUERY_USEC) != 0)
                return;
        char *json = NULL;
        if (qdm_qmp_execute(c->qmp, "query-status", NULL, STATUS_QUERY_USEC, &json, NULL) == 0) {
                json_object *o = json_tokener_parse(json), *st = NULL;
                if (o && json_object_object_get_ex(o, "status", &st) &&
                    json_object_is_type(st, json_type_string))
                        v->qemu_status = strdup(json_object_get_string(st));
                json_object_put(o);
        }
        free(json);
        v->state = state_from_status(v->qemu_status, v->state);
}

/* The record as written by the supervisor, with what is true now laid over it. */
static json_object *view_json(const control *c, const view *v)
{
        const dm_state *s = &c->record;
        json_object *o = dm_state_to_json(s);
        json_object_object_add(o, "state", json_object_new_string(v->state));
        json_object_object_add(o, "qemu_status",
                               v->qemu_status ? json_object_new_string(v->qemu_status) : NULL);
        json_object_object_add(o, "qemu_alive", json_object_new_boolean(v->qemu_alive));
        json_object_object_add(o, "supervisor_alive", json_object_new_boolean(v->supervisor_alive));
        if (v->uptime_known)
                json_object_object_add(o, "uptime_sec", json_object_new_uint64(v->uptime_sec));
        if (v->why && !s->end_reason)
                json_object_object_add(o, "end_reason", json_object_new_string(v->why));
        return o;
}

static void view_print(const control *c, const view *v)
{
        const dm_state *s = &c->record;
        printf("name:        %s\n", s->name);
        printf("state:       %s\n", v->state);
        printf("qemu status: %s\n", v->qemu_status ? v->qemu_status : "-");
        printf("qemu pid:    %d (%s)\n", (int)s->qemu.pid, v->qemu_alive ? "alive" : "gone");
        printf("supervisor:  %d (%s)\n", (int)s->supervisor.pid,
               v->supervisor_alive ? "alive"
               : v->qemu_alive     ? "gone: QEMU runs unsupervised; 'qdm destroy' still works"
                                   : "gone");
        printf("uid/gid:     %u/%u\n", (unsigned)s->uid, (unsigned)s->gid);
        printf("restrict:    %s\n", s->restrict_);
        if (s->machine)
                printf("machine:     %s (accel %s)\n", s->machine, s->accel ? s->accel : "-");
        if (v->uptime_known)
                printf("uptime:      %llu s\n", (unsigned long long)v->uptime_sec);
        else
                printf("uptime:      unknown\n");
        printf("ready in:    %.1f ms\n", (double)s->ready_usec / 1000.0);
        if (s->ended) {
                if (s->exit_signal > 0)
                        printf("ended:       killed by signal %d\n", s->exit_signal);
                else
                        printf("ended:       exited with status %d\n", s->exit_code);
        }
        if (s->end_reason || v->why)
                printf("reason:      %s\n", s->end_reason ? s->end_reason : v->why);
}

static bool parse_json_flag(int argc, char **argv, const char *verb, const char *help,
                            bool *ret_json, int *ret)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        *ret_json = false;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'j':
                        *ret_json = true;
                        break;
                case 'h':
                        fputs(help, stdout);
                        *ret = EXIT_OK;
                        return false;
                default:
                        *ret = EXIT_USAGE;
                        return false;
                }
        }
        (void)verb;
        return true;
}

int cmd_status(const cli_globals *g, int argc, char **argv)
{
        bool json;
        int ret;
        if (!parse_json_flag(argc, argv, "status",
                             "Usage: qdm status [--json] NAME\n\n"
                             "Lifecycle state, QEMU's own run state, pids, uid/gid, restriction,\n"
                             "uptime, and how it ended if it ended.\n",
                             &json, &ret))
                return ret;
        if (argc - optind != 1)
                return cli_error(EXIT_USAGE, "status: expected NAME (see 'qdm status --help')");
        control c;
        int r = control_lookup(g, argv[optind], &c);
        if (r != 0) {
                control_close(&c, 0);
                return r;
        }
        view v = {0};
        view_build(&c, true, &v);
        if (json) {
                json_object *o = view_json(&c, &v);
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
        } else
                view_print(&c, &v);
        free(v.qemu_status);
        control_close(&c, STATUS_QUERY_USEC);
        return EXIT_OK;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int cmd_list(const cli_globals *g, int argc, char **argv)
{
        bool json;
        int ret;
        if (!parse_json_flag(argc, argv, "list",
                             "Usage: qdm list [--json]\n\n"
                             "Every device model in the run directory: a header row, then one\n"
                             "row each, name first.\n",
                             &json, &ret))
                return ret;
        if (argc - optind != 0)
                return cli_error(EXIT_USAGE, "list: takes no arguments");
        _cleanup_free_ char *run_dir = NULL;
        int r = rundir_resolve(g, false, &run_dir);
        if (r != 0 && r != -ENOENT)
                return r;

        char **names = NULL;
        size_t n = 0;
        DIR *d = run_dir ? opendir(run_dir) : NULL;
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.' || !config_name_valid(de->d_name))
                        continue;
                char **nn = realloc(names, (n + 1) * sizeof(*names));
                if (!nn)
                        break;
                names = nn;
                names[n++] = strdup(de->d_name);
        }
        if (d)
                closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(*names), compare_names);

        json_object *arr = json ? json_object_new_array() : NULL;
        if (!json)
                printf("%-24s %-10s %-8s %-8s %-8s %s\n", "NAME", "STATE", "PID", "UID", "RESTRICT",
                       "SUPERVISOR");
        for (size_t i = 0; i < n; i++) {
                control c = {.lock_fd = -1, .name = names[i]};
                c.run_dir = strdup(run_dir);
                r = dm_state_read(run_dir, names[i], &c.record);
                if (r < 0) {
                        /* Listed all the same, with the reason: a start under way before its
                         * first record, what a failed start left, or a record not to trust. */
                        const char *why = r == -ENOENT    ? "no record (starting, or a failed "
                                                            "start's remains: 'qdm destroy')"
                                          : r == -EPERM   ? "record not trusted (owner or mode)"
                                          : r == -EBADMSG ? "record malformed"
                                                          : strerror(-r);
                        if (json) {
                                json_object *o = json_object_new_object();
                                json_object_object_add(o, "name", json_object_new_string(names[i]));
                                json_object_object_add(o, "state",
                                                       json_object_new_string("unknown"));
                                json_object_object_add(o, "error", json_object_new_string(why));
                                json_object_array_add(arr, o);
                        } else
                                printf("%-24s %-10s %s\n", names[i], "unknown", why);
                        control_close(&c, 0);
                        free(names[i]);
                        continue;
                }
                view v = {0};
                view_build(&c, false, &v);
                if (json)
                        json_object_array_add(arr, view_json(&c, &v));
                else
                        printf("%-24s %-10s %-8d %-8u %-8s %s\n", names[i], v.state,
                               (int)c.record.qemu.pid, (unsigned)c.record.uid, c.record.restrict_,
                               v.supervisor_alive ? "alive" : "gone");
                control_close(&c, 0);
                free(names[i]);
        }
        free(names);
        if (json) {
                puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(arr);
        }
        return EXIT_OK;
}
