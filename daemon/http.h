/*
 * http.h - funneld's HTTP listener (http.listen, default 127.0.0.1:9108;
 * libmicrohttpd): /metrics in the Prometheus text format, /healthz (the
 * engine thread and every shard make progress) and /readyz (partitions
 * assigned, Redis takes writes), each 200 or 503 with a one-line reason.
 * docs/OPERATIONS.md lists the metrics.
 */
#ifndef FD_HTTP_H
#define FD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/engine.h"

typedef struct fd_http fd_http;

/* 0 when listen is "off", empty, or HOST:PORT with an IP address (IPv6 in
 * brackets); -1 with why. */
int fd_http_check_listen(const char *listen, char *why, size_t n);

/* Listen (its own thread). NULL with errstr "" when listen is "off" or
 * empty; NULL with a message when it cannot listen. */
fd_http *fd_http_start(const char *listen, char *errstr, size_t errstr_size);
/* The port it listens on (http.listen's port 0 picks one). */
int fd_http_port(const fd_http *h);
/* Where /api/ reads (redis.*, features.*): call once, before requests come
 * (right after fd_http_start). NULL h accepted. */
void fd_http_set_source(fd_http *h, const fd_config *cfg);
/* The engine thread's copy of what to serve (m NULL: only "alive"). */
void fd_http_publish(fd_http *h, const fd_engine_metrics *m, bool stopping);
void fd_http_stop(fd_http *h); /* NULL accepted */

#endif
