/* churn_setup.c - the models' parameters from the churn.* and mf.* configuration keys. */
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

bool fd_mf_enabled(const fd_config *cfg)
{
    return !cfg->mf_enabled || strcmp(cfg->mf_enabled, "off") != 0;
}

int fd_mf_params_from_config(fd_mf_params *p, const fd_config *cfg, char *errstr,
                             size_t errstr_size)
{
    fd_mf_params_default(p);
    if (cfg->mf_k > 0)
        p->k = cfg->mf_k;
    if (cfg->mf_learning_rate)
        p->eta = (float)fd_config_real(cfg->mf_learning_rate);
    if (cfg->mf_regularisation)
        p->lambda = (float)fd_config_real(cfg->mf_regularisation);
    p->negatives = cfg->mf_negatives;
    const char *w[FD_MF_TYPES] = {cfg->mf_weight_click, cfg->mf_weight_cart,
                                  cfg->mf_weight_purchase};
    for (int t = 0; t < FD_MF_TYPES; t++)
        if (w[t])
            p->weight[t] = (float)fd_config_real(w[t]);
    if (cfg->mf_max_items > 0)
        p->max_items = (uint32_t)cfg->mf_max_items;
    if (cfg->mf_popularity_half_life_ms > 0)
        p->pop_half_life_ms = cfg->mf_popularity_half_life_ms;
    char why[200];
    if (p->k > FD_MF_USER_K) {
        snprintf(errstr, errstr_size, "mf.k: at most %d (the user state's room)", FD_MF_USER_K);
        return -1;
    }
    if (fd_mf_params_check(p, why, sizeof why) != 0) {
        snprintf(errstr, errstr_size, "%s", why);
        return -1;
    }
    return 0;
}
