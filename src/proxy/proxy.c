/* proxy.c — the event loop: listeners, signals (graceful stop, reload), settings in force. */
#include "config.h"

#include "proxy_int.h"

#include "pgscope/log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

bool proxy_parse_sslmode(const char *name, proxy_sslmode *out)
{
    static const char *const names[] = {"disable", "prefer", "require", "verify-ca", "verify-full"};

    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (proxy_sslmode)i;
            return true;
        }
    }
    return false;
}

/* The port a Unix socket directory without one uses: the first TCP listener's, else 6432. */
static int default_unix_port(const proxy_settings *s)
{
    for (int i = 0; i < s->n_listen; i++) {
        const char *colon = strrchr(s->listen[i], ':');
        if (s->listen[i][0] != '/' && colon)
            return atoi(colon + 1);
    }
    return 6432;
}

/* Builds the TLS contexts the settings ask for; on failure nothing is replaced. */
static bool build_tls(const proxy_settings *s, SSL_CTX **server_ctx, SSL_CTX **client_ctx,
                      char *err, size_t errlen)
{
    *server_ctx = NULL;
    *client_ctx = NULL;
    if (!!s->tls_cert_file[0] != !!s->tls_key_file[0]) {
        snprintf(err, errlen, "tls_cert_file and tls_key_file go together");
        return false;
    }
    if (s->tls_cert_file[0]) {
        *server_ctx = proxy_tls_server_ctx(s->tls_cert_file, s->tls_key_file, err, errlen);
        if (!*server_ctx)
            return false;
    }
    if (s->upstream_sslmode != PROXY_SSL_DISABLE) {
        *client_ctx = proxy_tls_client_ctx(s->upstream_sslmode, s->upstream_ca_file, err, errlen);
        if (!*client_ctx) {
            SSL_CTX_free(*server_ctx);
            *server_ctx = NULL;
            return false;
        }
    }
    return true;
}

bool proxy_settings_check(const proxy_settings *s, char *err, size_t errlen)
{
    proxy_addr a;
    SSL_CTX *sc, *cc;

    if (s->n_listen == 0) {
        snprintf(err, errlen, "no listen address");
        return false;
    }
    for (int i = 0; i < s->n_listen; i++)
        if (!proxy_addr_parse_listen(s->listen[i], default_unix_port(s), &a, err, errlen))
            return false;
    if (!proxy_addr_parse_upstream(s->upstream, &a, err, errlen))
        return false;
    if (!build_tls(s, &sc, &cc, err, errlen))
        return false;
    SSL_CTX_free(sc);
    SSL_CTX_free(cc);
    return true;
}

/* ---- listeners ---- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    proxy *px = arg;

    if (px->stopping) {
        close(fd);
        return;
    }
    session_start(px, fd, sa, salen);
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    proxy *px = arg;

    for (int i = 0; i < px->n_listeners; i++)
        evconnlistener_enable(px->listeners[i]);
}

/* Out of descriptors or memory: the pending connection stays in the backlog and the listener
 * would fire again at once. Stop accepting for a second, serving the sessions we have. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    proxy *px = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval pause = {1, 0};

    log_warning(NULL, "accept failed: %s; not accepting for 1 s",
                evutil_socket_error_to_string(err));
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return;
    for (int i = 0; i < px->n_listeners; i++)
        evconnlistener_disable(px->listeners[i]);
    evtimer_add(px->accept_timer, &pause);
}

/* Two descriptors per session, one per connection still to send its startup packet: ask for as
 * many as the hard limit allows. */
static void raise_fd_limit(int max_connections, int max_startup)
{
    struct rlimit rl;
    long long need = (long long)max_connections * 2 + max_startup + 32;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur)
        log_warning(NULL,
                    "max_connections %d and max_startup_connections %d need about %lld "
                    "descriptors; the limit is %llu",
                    max_connections, max_startup, need, (unsigned long long)rl.rlim_cur);
}

static void sweep_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sessions_sweep_idle(arg);
}

static struct evconnlistener *listen_unix(proxy *px, const proxy_addr *a, char *err, size_t errlen)
{
    const struct sockaddr_un *un = (const void *)&a->ss;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    unlink(un->sun_path); /* a stale socket of an earlier run */
    if (bind(fd, (const struct sockaddr *)un, a->len) < 0 || chmod(un->sun_path, 0777) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
        close(fd);
        return NULL;
    }
    struct evconnlistener *l =
        evconnlistener_new(px->base, on_accept, px, LEV_OPT_CLOSE_ON_FREE, 1024, fd);
    if (!l) {
        snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
        close(fd);
        unlink(un->sun_path);
        return NULL;
    }
    snprintf(px->unix_paths[px->n_listeners], sizeof(px->unix_paths[0]), "%s", un->sun_path);
    return l;
}

static bool open_listeners(proxy *px, char *err, size_t errlen)
{
    const proxy_settings *s = &px->settings;

    for (int i = 0; i < s->n_listen; i++) {
        proxy_addr a;
        struct evconnlistener *l;
        if (!proxy_addr_parse_listen(s->listen[i], default_unix_port(s), &a, err, errlen))
            return false;
        if (a.is_unix) {
            l = listen_unix(px, &a, err, errlen);
        } else {
            unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
            if (a.ss.ss_family == AF_INET6)
                flags |= LEV_OPT_BIND_IPV6ONLY;
            l = evconnlistener_new_bind(px->base, on_accept, px, flags, 1024,
                                        (struct sockaddr *)&a.ss, (int)a.len);
            if (!l)
                snprintf(err, errlen, "cannot listen on %s: %s", a.text, strerror(errno));
        }
        if (!l)
            return false;
        evconnlistener_set_error_cb(l, on_accept_error);
        px->listeners[px->n_listeners++] = l;
        log_info(NULL, "listening on %s", a.text);
    }
    return true;
}

static void close_listeners(proxy *px)
{
    for (int i = 0; i < px->n_listeners; i++) {
        evconnlistener_free(px->listeners[i]);
        if (px->unix_paths[i][0])
            unlink(px->unix_paths[i]);
    }
    px->n_listeners = 0;
}

/* ---- stopping ---- */

void proxy_session_ended(proxy *px)
{
    px->ended_since_sweep++;
    px->n_sessions--;
    if (px->stopping && px->n_sessions == 0)
        event_base_loopexit(px->base, NULL);
}

static void stop_deadline(evutil_socket_t fd, short what, void *arg)
{
    proxy *px = arg;

    log_info(NULL, "shutdown timeout: closing %d remaining session(s)", px->n_sessions);
    sessions_abort_all(px, "57P01", "pgscope: terminating connection: pgscope is shutting down");
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    proxy *px = arg;

    if (px->stopping) {
        log_info(NULL, "second stop signal: exiting now");
        event_base_loopexit(px->base, NULL);
        return;
    }
    px->stopping = true;
    close_listeners(px);
    log_info(NULL, "%s: no new connections; waiting up to %d s for %d session(s)",
             strsignal((int)sig), px->settings.shutdown_timeout, px->n_sessions);
    if (px->n_sessions == 0) {
        event_base_loopexit(px->base, NULL);
        return;
    }
    struct timeval tv = {px->settings.shutdown_timeout, 0};
    evtimer_add(px->stop_timer, &tv);
}

/* ---- reloading ---- */

static void describe_restart_only(const proxy_settings *old, const proxy_settings *new)
{
    bool same = old->n_listen == new->n_listen;

    for (int i = 0; same && i < old->n_listen; i++)
        same = strcmp(old->listen[i], new->listen[i]) == 0;
    if (!same)
        log_warning(NULL, "listen addresses change only on restart");
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    proxy *px = arg;
    proxy_settings next;
    proxy_addr upstream;
    SSL_CTX *sc, *cc;
    char err[512];

    log_info(NULL, "SIGHUP: reloading settings");
    if (!px->reload || !px->reload(&next, px->reload_arg))
        return;
    if (!proxy_addr_parse_upstream(next.upstream, &upstream, err, sizeof(err)) ||
        !build_tls(&next, &sc, &cc, err, sizeof(err))) {
        log_error(NULL, "reload refused, settings unchanged: %s", err);
        return;
    }
    describe_restart_only(&px->settings, &next);
    memcpy(next.listen, px->settings.listen, sizeof(next.listen));
    next.n_listen = px->settings.n_listen;
    next.events = px->settings.events; /* the analysis queue lives as long as the run */
    SSL_CTX_free(px->server_ctx);      /* sessions keep their own reference through SSL_new */
    SSL_CTX_free(px->client_ctx);
    px->server_ctx = sc;
    px->client_ctx = cc;
    px->upstream = upstream;
    px->settings = next;
    log_info(NULL, "settings reloaded; upstream %s", upstream.text);
}

/* ---- running ---- */

static void proxy_cleanup(proxy *px, struct event **sigs, int n)
{
    close_listeners(px);
    px->stopping = false; /* no loop exit requests from here on */
    sessions_destroy_all(px);
    for (int i = 0; i < n; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (px->stop_timer)
        event_free(px->stop_timer);
    if (px->accept_timer)
        event_free(px->accept_timer);
    if (px->sweep_timer)
        event_free(px->sweep_timer);
    SSL_CTX_free(px->server_ctx);
    SSL_CTX_free(px->client_ctx);
    event_base_free(px->base);
}

int proxy_run(const proxy_settings *s, proxy_reload_fn reload, void *reload_arg)
{
    static proxy px; /* one per process: signal handlers find it through the event base */
    struct event *sigs[3] = {NULL, NULL, NULL};
    char err[512];

    memset(&px, 0, sizeof(px));
    px.settings = *s;
    px.reload = reload;
    px.reload_arg = reload_arg;
    LIST_INIT(&px.sessions);
    TAILQ_INIT(&px.pending);
    signal(SIGPIPE, SIG_IGN);
    px.base = event_base_new();
    if (!px.base) {
        log_error(NULL, "cannot create the event loop");
        return 1;
    }
    raise_fd_limit(s->max_connections, s->max_startup_connections);
    px.accept_timer = evtimer_new(px.base, resume_accepting, &px);
    if (!proxy_addr_parse_upstream(s->upstream, &px.upstream, err, sizeof(err)) ||
        !build_tls(s, &px.server_ctx, &px.client_ctx, err, sizeof(err)) ||
        !open_listeners(&px, err, sizeof(err))) {
        log_error(NULL, "%s", err);
        proxy_cleanup(&px, sigs, 3);
        return 1;
    }
    px.stop_timer = evtimer_new(px.base, stop_deadline, &px);
    px.sweep_timer = event_new(px.base, -1, EV_PERSIST, sweep_idle, &px);
    struct timeval sweep_every = {PROXY_IDLE_SWEEP, 0};
    if (px.sweep_timer)
        event_add(px.sweep_timer, &sweep_every);
    sigs[0] = evsignal_new(px.base, SIGTERM, on_stop_signal, &px);
    sigs[1] = evsignal_new(px.base, SIGINT, on_stop_signal, &px);
    sigs[2] = evsignal_new(px.base, SIGHUP, on_reload_signal, &px);
    for (int i = 0; i < 3; i++)
        evsignal_add(sigs[i], NULL);
    log_info(NULL, "forwarding to %s (upstream TLS %s, client TLS %s)", px.upstream.text,
             px.client_ctx ? "on" : "off", px.server_ctx ? "on" : "off");
    event_base_dispatch(px.base);
    log_info(NULL, "stopped");
    proxy_cleanup(&px, sigs, 3);
    return 0;
}
