/* churn_setup.h - the churn engine's parameters from the configuration
 * (churn.* keys; docs/CHURN.md). Shared by the daemon and funnelctl eval. */
#ifndef FD_CHURN_SETUP_H
#define FD_CHURN_SETUP_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/config.h"
#include "features/features.h"
#include "models/churn.h"
#include "models/mf.h"

/* p from cfg for the feature params feat (which must outlive p). 0, or -1
 * with a message naming the key that is wrong. */
int fd_churn_params_from_config(fd_churn_params *p, const fd_config *cfg,
                                const fd_feat_params *feat, char *errstr, size_t errstr_size);

/* churn.enabled */
bool fd_churn_enabled(const fd_config *cfg);

/* mf.enabled, and the mf.* keys as fd_mf_params: 0, or -1 with a message. */
bool fd_mf_enabled(const fd_config *cfg);
int fd_mf_params_from_config(fd_mf_params *p, const fd_config *cfg, char *errstr,
                             size_t errstr_size);

#endif
