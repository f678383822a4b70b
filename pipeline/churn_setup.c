/* churn_setup.c - fd_churn_params from the churn.* configuration keys. */
#include "pipeline/churn_setup.h"

#include <stdio.h>
#include <string.h>

bool fd_churn_enabled(const fd_config *cfg)
{
    return !cfg->churn_enabled || strcmp(cfg->churn_enabled, "off") != 0;
}

int fd_churn_params_from_config(fd_churn_params *p, const fd_config *cfg,
                                const fd_feat_params *feat, char *errstr, size_t errstr_size)
{
    fd_churn_params_default(p, feat);
    fd_churn_params_set_horizon(p, cfg->churn_horizon_ms);
    p->threshold = fd_config_real(cfg->churn_alert_threshold);
    p->rearm_margin = fd_config_real(cfg->churn_rearm_margin);
    p->min_events = cfg->churn_min_events;
    p->cooldown_ms = cfg->churn_alert_cooldown_ms;
    p->warmup_examples = (uint64_t)cfg->churn_warmup_examples;
    p->lr.alpha = fd_config_real(cfg->churn_alpha);
    p->lr.beta = fd_config_real(cfg->churn_beta);
    p->lr.l1 = fd_config_real(cfg->churn_l1);
    p->lr.l2 = fd_config_real(cfg->churn_l2);
    char why[200];
    if (fd_churn_params_check(p, why, sizeof why) != 0) {
        snprintf(errstr, errstr_size, "churn: %s", why);
        return -1;
    }
    return 0;
}
