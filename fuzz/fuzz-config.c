/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the configuration parser (src/lib/config.c): a configuration file is
 * user input, maybe from a less trusted tenant. Every byte sequence must give a configuration
 * or an error message naming a field, never a crash, a leak or an accepted document that
 * breaks a promise of the model.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        qdm_config *c = NULL;
        char *error = NULL;
        int r = qdm_config_new_from_json((const char *)data, size, &c, &error);
        if (r < 0) {
                /* Every failure explains itself. */
                if (r != -ENOMEM && (!error || !*error))
                        abort();
                free(error);
                return 0;
        }
        const qdm_model *m = qdm_config_model(c);
        /* What the model promises its readers (model.h). */
        if (!m->name || !*m->name || m->name[0] == '.' || strlen(m->name) > 64 ||
            strchr(m->name, '/') || strchr(m->name, ','))
                abort();
        if (!m->qemu || m->qemu[0] != '/' || !m->machine || strchr(m->machine, ','))
                abort();
        for (size_t i = 0; i < m->n_disks; i++)
                if (!m->disks[i].path || m->disks[i].path[0] != '/' ||
                    strchr(m->disks[i].path, ','))
                        abort();
        if (m->restrict_.uid_min == 0 || m->restrict_.uid_min > m->restrict_.uid_max)
                abort();
        qdm_config_free(c);
        return 0;
}
