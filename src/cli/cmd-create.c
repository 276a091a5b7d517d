/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qdm create: validate the configuration here (exit 2 with the field named), then start a
 * supervisor for it and wait for its one-line report: the device model is ready (R1) and,
 * without --paused, running; or it failed, with QEMU's own words, and nothing is left.
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "rundir.h"
#include "spawn.h"
#include "util.h"

extern char **environ;

static void usage(FILE *f)
{
        fprintf(f, "Usage: qdm create [--paused] [--timeout SECONDS] CONFIG.json\n"
                   "\n"
                   "Start the device model CONFIG.json describes (see qdm.json(5)): restricted,\n"
                   "paused with -S, and known ready over QMP; then resume it unless --paused.\n"
                   "Returns once it is ready. On failure nothing is left behind.\n"
                   "\n"
                   "  --paused            leave it paused (ready, never run)\n"
                   "  --timeout SECONDS   start deadline (default: the configuration's\n"
                   "                      start_timeout_ms, 60 s unless set)\n"
                   "  -h, --help          show this help\n"
                   "\n"
                   "Exit status: 0 ready; 1 the start failed (QEMU's words on stderr) or the name\n"
                   "is in use; 2 bad usage or an invalid configuration.\n");
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
        /* O_NONBLOCK: a FIFO must not hang us in open(); only regular files are read. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if (st.st_size > QDM_CONFIG_MAX_SIZE)
                return -EFBIG;
        size_t size = (size_t)st.st_size;
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        size_t got = 0;
        while (got < size) {
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        buf[got] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = got;
        return 0;
}

/* Read the supervisor's report to EOF (it is the only writer). */
static char *read_report(int fd)
{
        char buf[16384];
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0 || n + (size_t)k >= sizeof(buf) - 1) {
                        if (k > 0)
                                n += (size_t)k;
                        break;
                }
                n += (size_t)k;
        }
        buf[n] = '\0';
        return n > 0 ? strdup(buf) : NULL;
}

int cmd_create(const cli_globals *g, int argc, char **argv)
{
        static const struct option options[] = {
                {"paused", no_argument, NULL, 'p'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool paused = false;
        uint64_t timeout = 0;
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'p':
                        paused = true;
                        break;
                case 't':
                        if (cli_parse_seconds(optarg, &timeout) < 0 || timeout == 0)
                                return cli_error(EXIT_USAGE,
                                                 "create: --timeout: '%s' is not a number of "
                                                 "seconds > 0",
                                                 optarg);
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_OK;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (argc - optind != 1)
                return cli_error(EXIT_USAGE, "create: expected one CONFIG.json (see 'qdm create "
                                             "--help')");
        const char *file = argv[optind];

        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_file(file, &text, &len);
        if (r == -EFBIG)
                return cli_error(EXIT_USAGE, "%s: larger than %d bytes", file, QDM_CONFIG_MAX_SIZE);
        if (r < 0)
                return cli_error(EXIT_USAGE, "%s: %s", file, strerror(-r));
        qdm_config *config = NULL;
        _cleanup_free_ char *why = NULL;
        r = qdm_config_new_from_json(text, len, &config, &why);
        if (r < 0)
                return cli_error(EXIT_USAGE, "%s: %s", file, why ? why : strerror(-r));
        const qdm_model *m = qdm_config_model(config);
        _cleanup_free_ char *name = strdup(m->name);
        r = config_check_privileges(m, &why);
        qdm_config_free(config);
        if (r < 0)
                return cli_error(EXIT_USAGE, "%s: %s", file, why ? why : strerror(-r));

        _cleanup_free_ char *run_dir = NULL;
        r = rundir_resolve(g, true, &run_dir);
        if (r != 0)
                return r > 0 ? r : EXIT_FAILED;
        _cleanup_free_ char *dir = rundir_path(run_dir, name, NULL);
        _cleanup_free_ char *sock = rundir_path(run_dir, name, SOCKET_FILE);
        if (sock && strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return cli_error(EXIT_USAGE,
                                 "%s: the control socket %s would be %zu bytes long, more than a "
                                 "UNIX socket path can hold (%zu): use a shorter name or run "
                                 "directory",
                                 file, sock, strlen(sock),
                                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        struct stat st;
        if (dir && lstat(dir, &st) == 0)
                return cli_error(EXIT_FAILED,
                                 "a device model named \"%s\" already exists in %s (see 'qdm "
                                 "status %s')",
                                 name, run_dir, name);

        /* The validated text goes to the supervisor as is, through a sealed-off memfd. */
        _cleanup_close_ int cfd = memfd_create("qdm-config", MFD_CLOEXEC);
        if (cfd < 0 || write(cfd, text, len) != (ssize_t)len || lseek(cfd, 0, SEEK_SET) < 0)
                return cli_error(EXIT_FAILED, "cannot pass the configuration on: %s",
                                 strerror(errno));
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return cli_error(EXIT_FAILED, "pipe: %s", strerror(errno));
        _cleanup_close_ int report_r = p[0], report_w = p[1];
        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

        char timeout_arg[32];
        snprintf(timeout_arg, sizeof(timeout_arg), "%llu", (unsigned long long)timeout);
        char *sv_argv[16];
        size_t n = 0;
        sv_argv[n++] = "qdm";
        for (int i = 0; i < g->verbose && i < 2; i++)
                sv_argv[n++] = "-v";
        sv_argv[n++] = "__supervise";
        sv_argv[n++] = "--run-dir";
        sv_argv[n++] = run_dir;
        if (paused)
                sv_argv[n++] = "--paused";
        if (timeout > 0) {
                sv_argv[n++] = "--timeout-usec";
                sv_argv[n++] = timeout_arg;
        }
        sv_argv[n] = NULL;

        /* The supervisor outlives us: it must not hold our stdout/stderr, or a pipeline
         * reading them would never see EOF. With -v it keeps stderr for diagnostics. */
        const spawn_fd plan[] = {
                {devnull, 0}, {devnull, 1},  {g->verbose ? STDERR_FILENO : devnull, 2},
                {cfd, 3},     {report_w, 4},
        };
        spawn_params sp = {
                .path = "/proc/self/exe",
                .argv = sv_argv,
                .envp = environ,
                .fds = plan,
                .n_fds = ELEMENTSOF(plan),
                .new_session = true,
                .cwd = "/",
        };
        pid_t pid;
        int pidfd_raw;
        _cleanup_free_ char *spawn_error = NULL;
        r = spawn_process(&sp, &pid, &pidfd_raw, &spawn_error);
        if (r < 0)
                return cli_error(EXIT_FAILED, "cannot start the supervisor: %s",
                                 spawn_error ? spawn_error : strerror(-r));
        _cleanup_close_ int pidfd = pidfd_raw;
        report_w = safe_close(report_w);
        cfd = safe_close(cfd);

        _cleanup_free_ char *rep = read_report(report_r);
        unsigned long long ready_usec = 0;
        if (rep && sscanf(rep, "ready %llu", &ready_usec) == 1) {
                printf("%s: ready in %.1f ms, %s\n", name, (double)ready_usec / 1000.0,
                       paused ? "paused" : "running");
                return EXIT_OK;
        }

        /* Failed: the supervisor has cleaned up and exits; wait for it so that nothing of
         * this device model is left when we return. */
        siginfo_t si;
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
                (void)kill(pid, SIGKILL);
        (void)spawn_reap(pidfd, &si);

        int err = 0, off = 0;
        if (rep && sscanf(rep, "error %d %n", &err, &off) == 1 && off > 0) {
                size_t l = strlen(rep);
                while (l > 0 && rep[l - 1] == '\n')
                        rep[--l] = '\0';
                return cli_error(EXIT_FAILED, "create %s: %s", name, rep + off);
        }
        _cleanup_free_ char *how = spawn_describe_exit(&si);
        return cli_error(EXIT_FAILED, "create %s: the supervisor %s without reporting", name,
                         how ? how : "ended");
}
