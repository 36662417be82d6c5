/* proxy.h — the forwarding proxy: listeners, client/server pairs, TLS, cancel routing. */
#ifndef PGSCOPE_PROXY_H
#define PGSCOPE_PROXY_H

#include "pgscope/queue.h"
#include "pgscope/track.h"

#include <stdbool.h>
#include <stddef.h>

#define PROXY_MAX_LISTEN 16
#define PROXY_ADDR_MAX 512

typedef enum {
    PROXY_SSL_DISABLE,
    PROXY_SSL_PREFER,
    PROXY_SSL_REQUIRE,
    PROXY_SSL_VERIFY_CA,
    PROXY_SSL_VERIFY_FULL,
} proxy_sslmode;

/* What the proxy needs to run; built by the caller from its configuration. */
typedef struct proxy_settings {
    char listen[PROXY_MAX_LISTEN][PROXY_ADDR_MAX];
    int n_listen;
    char upstream[PROXY_ADDR_MAX];
    proxy_sslmode upstream_sslmode;
    char upstream_ca_file[PROXY_ADDR_MAX];
    char tls_cert_file[PROXY_ADDR_MAX];
    char tls_key_file[PROXY_ADDR_MAX];
    int shutdown_timeout;        /* seconds */
    int connect_timeout;         /* seconds */
    int buffer_size;             /* bytes queued per direction before reading pauses */
    int max_connections;         /* sessions past their startup packet */
    int max_startup_connections; /* sessions before it; past it the oldest is closed */
    int startup_timeout;         /* seconds to send the startup packet */
    queue *events;               /* where statement events go; NULL: no tracking */
    track_limits limits;         /* what tracking keeps of each statement */
} proxy_settings;

/* Called on SIGHUP to read the settings again; false keeps the current ones. */
typedef bool (*proxy_reload_fn)(proxy_settings *out, void *arg);

bool proxy_parse_sslmode(const char *name, proxy_sslmode *out);

/* Checks addresses and TLS files before anything starts; false with a reason in err. */
bool proxy_settings_check(const proxy_settings *s, char *err, size_t errlen);

/* Serves until SIGTERM or SIGINT and the sessions have ended (or the shutdown timeout).
 * Returns the process exit code: 0 after a clean stop, 1 when it could not start. */
int proxy_run(const proxy_settings *s, proxy_reload_fn reload, void *reload_arg);

#endif
