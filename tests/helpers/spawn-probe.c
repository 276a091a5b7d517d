/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * spawn-probe READY_FD [exit CODE]
 * A child for the spawn and restrict tests. It writes one byte to READY_FD once it runs (so the
 * dynamic loader and any sanitizer runtime are done opening files), then either exits with
 * CODE or waits to be killed. The test inspects it from outside through /proc in that steady
 * state: the probe itself reports nothing, so what is checked is what the kernel says.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_int(const char *s, int *ret)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 255 * 1024)
                return -1;
        *ret = (int)v;
        return 0;
}

int main(int argc, char **argv)
{
        int fd, code = 0;

        if (argc < 2 || parse_int(argv[1], &fd) < 0)
                return 2;
        if (argc == 4 && (strcmp(argv[2], "exit") != 0 || parse_int(argv[3], &code) < 0))
                return 2;
        if (write(fd, "r", 1) != 1)
                return 3;
        if (argc == 4)
                return code;
        for (;;)
                pause();
}
