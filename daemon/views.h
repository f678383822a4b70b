/*
 * views.h - read-only views of what funneld keeps in Redis (the contract in
 * docs/REDIS_KEYS.md) as JSON documents: the funnel of the last windows, the
 * users ranked by churn risk, the models' figures and weights. One code path
 * for `funnelctl funnel|top-risk|model --json` and the HTTP listener's
 * /api/funnel, /api/top-risk and /api/model, so both show the same numbers.
 *
 * Every string that comes from events (user ids) is made valid UTF-8 before
 * it enters a document: a byte that is not part of a UTF-8 sequence becomes
 * the code point of the same value (U+0080..U+00FF), as the JSON logger does.
 * jansson escapes the rest (quotes, control characters, '<' stays text: a
 * page must insert these strings as text, never as markup).
 */
#ifndef FD_VIEWS_H
#define FD_VIEWS_H

#include <jansson.h>
#include <stddef.h>

#include "features/features.h"
#include "pipeline/redis.h"

#define FD_VIEW_MAX_WINDOWS 1440
#define FD_VIEW_MAX_USERS   1000

/* {"span":"1m","windows":[{"start_ms", "sessions_visit", "sessions_click",
 * "sessions_cart", "sessions_purchase", "click", "cart", "purchase",
 * "revenue_cents", "click_rate", "cart_rate", "purchase_rate",
 * "conversion", "closed"}...]}: the last `last` windows of the span
 * (1..FD_VIEW_MAX_WINDOWS), newest first, open ones included. NULL with
 * err on a Redis error. */
json_t *fd_view_funnel(fd_redis *r, const char *prefix, const char *span, int last, char *err,
                       size_t n);

/* {"at_ms", "users":[{"user_id", "risk", "reasons":[{"feature", "value",
 * "contribution"}...]}...]}: the n users (1..FD_VIEW_MAX_USERS) with the
 * highest latest risk, highest first. The reasons (with fp and a stored
 * churn model) are the three largest contributions w*x of the user's
 * features evaluated at at_ms, the stream's event time now (the highest
 * max_ts of the partitions): what makes the user risky while quiet. */
json_t *fd_view_top_risk(fd_redis *r, const char *prefix, const fd_feat_params *fp, int n_users,
                         char *err, size_t n);

/* {"churn": {figures..., "weights": [{"feature", "weight"}...], "bias"} or
 * null, "recs": {figures...} or null}. fp names the inputs (NULL: weights
 * left out). */
json_t *fd_view_model(fd_redis *r, const char *prefix, const fd_feat_params *fp, char *err,
                      size_t n);

/* s[0..len) as valid UTF-8 (see above); a new NUL-terminated string (it may
 * hold a NUL of s: *out_len, when not NULL, is its length), NULL out of
 * memory. */
char *fd_view_utf8(const char *s, size_t len, size_t *out_len);

#endif
