/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The replay driver shared by every fuzz target when built without libFuzzer: each regular
 * file named on the command line, or found (not recursively) in a directory named there, is
 * passed once to LLVMFuzzerTestOneInput(). The unit tests run it over fuzz/corpus/ so every
 * normal test run exercises the seed corpora.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (len == cap) {
                        cap = cap ? cap * 2 : 4096;
                        uint8_t *nbuf = realloc(buf, cap);
                        if (!nbuf)
                                abort();
                        buf = nbuf;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        bool failed = ferror(f);
        fclose(f);
        if (failed) {
                fprintf(stderr, "%s: read error\n", path);
                free(buf);
                return -1;
        }
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        return 0;
}

/* Replays every regular file given, or found (not recursively) in a directory given. Fails if
 * nothing was replayed, so a wrong path cannot pass for a clean run. */
int main(int argc, char **argv)
{
        unsigned replayed = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (replay_file(argv[i]) < 0)
                                return EXIT_FAILURE;
                        replayed++;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                if (!d) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        char *path = NULL;
                        if (asprintf(&path, "%s/%s", argv[i], de->d_name) < 0)
                                abort();
                        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                if (replay_file(path) < 0) {
                                        free(path);
                                        closedir(d);
                                        return EXIT_FAILURE;
                                }
                                replayed++;
                        }
                        free(path);
                }
                closedir(d);
        }
        printf("replayed %u inputs\n", replayed);
        return replayed > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
