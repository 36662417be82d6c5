/* proxy_int.h — what the files of the proxy module share; not part of its public face. */
#ifndef PGSCOPE_PROXY_INT_H
#define PGSCOPE_PROXY_INT_H

#include "pgscope/proxy.h"
#include "pgscope/wire.h"

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

/* ---- addresses (address.c) ---- */

typedef struct proxy_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    bool is_unix;
    char host[256]; /* host as written, for TLS name checks; empty for Unix sockets */
    char text[PROXY_ADDR_MAX + 32]; /* for log lines */
} proxy_addr;

/* Parses a listen address (HOST:PORT, [V6]:PORT, /dir[:PORT]); unix_port names the socket
 * file of a directory without a port. */
bool proxy_addr_parse_listen(const char *spec, int unix_port, proxy_addr *out, char *err,
                             size_t errlen);
/* Parses an upstream address (HOST:PORT, [V6]:PORT, a socket path, /dir[:PORT]). */
bool proxy_addr_parse_upstream(const char *spec, proxy_addr *out, char *err, size_t errlen);

/* ---- TLS contexts (tls.c) ---- */

SSL_CTX *proxy_tls_server_ctx(const char *cert_file, const char *key_file, char *err,
                              size_t errlen);
SSL_CTX *proxy_tls_client_ctx(proxy_sslmode mode, const char *ca_file, char *err, size_t errlen);
/* A client-side SSL for one upstream connection, checking the host name for verify-full. */
SSL *proxy_tls_client_ssl(SSL_CTX *ctx, proxy_sslmode mode, const char *host);
/* The reason of the last TLS failure on ssl, for the client and the log. */
void proxy_tls_error(SSL *ssl, int ret, char *buf, size_t len);

/* ---- one socket, plain or TLS, with its two buffers (endpoint.c) ---- */

typedef struct endpoint endpoint;
typedef void (*endpoint_cb)(endpoint *ep, void *arg);

struct endpoint {
    int fd;
    SSL *ssl;
    struct event *ev_read, *ev_write;
    struct evbuffer *in;  /* bytes read from the peer, not yet handled */
    struct evbuffer *out; /* bytes waiting to be written to the peer */
    bool connecting;      /* non-blocking connect() in progress */
    bool handshaking;     /* TLS handshake in progress */
    bool reading;         /* the session wants bytes from this peer */
    bool read_eof;        /* the peer will send nothing more */
    bool write_shut;      /* we told the peer we send nothing more */
    bool failed;          /* a socket or TLS error; errmsg says which */
    bool tls_read_wants_write, tls_write_wants_read;
    int tls_retry_len; /* SSL_write must be retried with the same length */
    char *errmsg;      /* why it failed: set with `failed`, NULL before (see endpoint_error) */
    uint64_t bytes_in, bytes_out;
    endpoint_cb on_read;  /* bytes arrived, or EOF, or an error */
    endpoint_cb on_write; /* bytes of `out` were written */
    endpoint_cb on_ready; /* connect() or the TLS handshake finished (check `failed`) */
    void *arg;
};

bool endpoint_init(endpoint *ep, struct event_base *base, int fd, void *arg);
void endpoint_free(endpoint *ep);
/* Why ep failed, "" when it did not. */
const char *endpoint_error(const endpoint *ep);
/* Starts a non-blocking connect; on_ready follows. */
bool endpoint_connect(endpoint *ep, const proxy_addr *addr);
/* Starts TLS on the socket (ssl is owned by ep from here on); on_ready follows. */
void endpoint_start_tls(endpoint *ep, SSL *ssl, bool accept);
void endpoint_want_read(endpoint *ep, bool on);
/* Writes what it can of `out` now; arms the write event for the rest. False on error. */
bool endpoint_flush(endpoint *ep);
/* Half-closes: no more bytes from us (TLS: close_notify as well). */
void endpoint_shutdown_write(endpoint *ep);
/* Stops every callback of ep; used when the session is going away. */
void endpoint_silence(endpoint *ep);

/* ---- the proxy and its sessions ---- */

typedef struct proxy proxy;
typedef struct proxy_session proxy_session;

struct proxy {
    struct event_base *base;
    proxy_settings settings;
    proxy_addr upstream;
    SSL_CTX *server_ctx; /* for clients that ask for TLS; NULL when not configured */
    SSL_CTX *client_ctx; /* for upstream TLS; NULL when upstream_sslmode is disable */
    struct evconnlistener *listeners[PROXY_MAX_LISTEN];
    char unix_paths[PROXY_MAX_LISTEN][sizeof(((struct sockaddr_un *)0)->sun_path)];
    int n_listeners;
    LIST_HEAD(, proxy_session) sessions;
    int n_sessions;
    TAILQ_HEAD(, proxy_session) pending; /* before their startup packet, oldest first */
    int n_pending;
    int ended_since_sweep; /* sessions freed since the last idle sweep */
    uint64_t next_id;
    bool stopping;
    struct event *stop_timer;
    struct event *accept_timer; /* re-enables accepting after descriptors ran out */
    struct event *sweep_timer;  /* gives back the room of idle sessions */
    proxy_reload_fn reload;
    void *reload_arg;
};

/* Takes over an accepted client socket. */
void session_start(proxy *px, int fd, const struct sockaddr *sa, int salen);
/* Ends every session, telling each client why when the protocol allows. */
void sessions_abort_all(proxy *px, const char *sqlstate, const char *message);
/* Seconds between two sweeps of idle sessions (sessions_sweep_idle). */
#define PROXY_IDLE_SWEEP 5
/* Gives back the room of sessions quiet since the last sweep. */
void sessions_sweep_idle(proxy *px);
/* Frees every session now; only for the end of the process. */
void sessions_destroy_all(proxy *px);
/* Sets TCP_NODELAY and SO_KEEPALIVE (no-ops on Unix sockets). */
void proxy_tune_socket(int fd);

void proxy_session_ended(proxy *px);

#endif
