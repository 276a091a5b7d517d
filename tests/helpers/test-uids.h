/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The uid lock directory for tests that run processes as an allocated uid (and kill every
 * process of it). uid_alloc's locks only exclude allocations made in the same lock directory;
 * the same test running at the same time from another build directory must not be handed the
 * same uid, or one would kill the other's processes. So these tests share one directory under
 * $TMPDIR (CI removes its TMPDIR afterwards). Its name does not start with "qdm-test-":
 * lock files are never deleted, and it is not a leftover of any one test.
 */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static const char *test_shared_uid_lock_dir(void)
{
        static char path[4096];
        const char *base = getenv("TMPDIR");

        if (!path[0]) {
                snprintf(path, sizeof(path), "%s/qdm-uid-locks.tests",
                         base && *base ? base : "/tmp");
                if (mkdir(path, 0700) < 0 && errno != EEXIST)
                        return NULL;
        }
        return path;
}
