/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for reading state.json (src/cli/rundir.c): the CLI reads it back to decide
 * which pids to signal, so a malformed or hostile file must be refused or read into a record
 * whose fields are all in range, never crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rundir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        dm_state s;
        if (dm_state_parse((const char *)data, size, "demo", &s) < 0)
                return 0;
        if (!s.name || strcmp(s.name, "demo") != 0 || !s.state || !s.restrict_ || s.qemu.pid < 0 ||
            s.supervisor.pid < 0)
                abort();
        dm_state_done(&s);
        return 0;
}
