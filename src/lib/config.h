/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config: the internal side of qdm_config (include/qdm.h). A qdm_config wraps one validated
 * qdm_model (model.h); the layers below read the model through qdm_config_model() and never
 * see JSON.
 */
#pragma once

#include "qdm.h"

#include "model.h"

/* Limits of the JSON document. */
#define QDM_CONFIG_MAX_SIZE   (1024 * 1024) /* bytes; larger documents fail with -EFBIG */
#define QDM_CONFIG_MAX_DEPTH  32            /* nesting of objects and arrays */
#define QDM_CONFIG_MAX_KEYS   64            /* members of one object */
#define QDM_CONFIG_MAX_DISKS  16
#define QDM_CONFIG_MAX_EXTRA  64   /* extra_args elements */
#define QDM_CONFIG_MAX_STRING 4096 /* append and each extra_args element, in bytes */

/* The model inside a configuration; valid as long as the configuration. */
const qdm_model *qdm_config_model(const qdm_config *config);

/* A device-model name: 1-64 of [A-Za-z0-9_.-], not starting with '.'. Also what keeps a name
 * given on the command line from escaping the run directory. */
bool config_name_valid(const char *name);

/* Name:    config_check_privileges
 * Desc:    Whether this process may start the model: restriction modes "qemu" and "jail" need
 *          euid 0. Called at start time, never by the parser (a configuration stays valid
 *          whoever reads it). On -EPERM, *ret_error (if non-NULL) receives a malloc'd message
 *          naming restrict.mode and the way out.
 * Returns: 0, -EPERM, -ENOMEM. */
int config_check_privileges(const qdm_model *m, char **ret_error);

/* "none", "qemu", "jail" / "auto", "kvm", "tcg": the configuration's spelling. */
const char *qdm_restrict_mode_to_string(qdm_restrict_mode mode);
const char *qdm_accel_to_string(qdm_accel accel);
