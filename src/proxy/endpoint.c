/* endpoint.c — one socket, plain or TLS, read into and written from evbuffers. Writes go out at
 * once (no extra trip through the event loop); the write event is armed only for a remainder. */
#include "config.h"

#include "proxy_int.h"

#include <errno.h>
#include <openssl/err.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes read per wake-up; the session moves them on before reading again. */
#define READ_CHUNK 65536
#define READ_FIRST 4096

/* An endpoint's error when even its message could not be allocated. */
static char no_memory[] = "out of memory";

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

bool endpoint_init(endpoint *ep, struct event_base *base, int fd, void *arg)
{
    memset(ep, 0, sizeof(*ep));
    ep->fd = fd;
    ep->arg = arg;
    ep->in = evbuffer_new();
    ep->out = evbuffer_new();
    ep->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, ep);
    ep->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, ep);
    return ep->in && ep->out && ep->ev_read && ep->ev_write;
}

void endpoint_silence(endpoint *ep)
{
    if (ep->ev_read)
        event_del(ep->ev_read);
    if (ep->ev_write)
        event_del(ep->ev_write);
}

void endpoint_free(endpoint *ep)
{
    endpoint_silence(ep);
    if (ep->ev_read)
        event_free(ep->ev_read);
    if (ep->ev_write)
        event_free(ep->ev_write);
    if (ep->ssl) {
        if (!ep->failed && !ep->handshaking)
            SSL_shutdown(ep->ssl); /* best effort close_notify */
        SSL_free(ep->ssl);
    }
    if (ep->in)
        evbuffer_free(ep->in);
    if (ep->out)
        evbuffer_free(ep->out);
    if (ep->fd >= 0)
        close(ep->fd);
    if (ep->errmsg != no_memory)
        free(ep->errmsg);
    memset(ep, 0, sizeof(*ep));
    ep->fd = -1;
}

/* Marks ep failed for the reason given, kept on the heap: a buffer in every endpoint would cost
 * each connection hundreds of bytes for a message few ever get. */
static void set_error(endpoint *ep, const char *why)
{
    ep->failed = true;
    if (ep->errmsg != no_memory)
        free(ep->errmsg);
    ep->errmsg = strdup(why);
    if (!ep->errmsg)
        ep->errmsg = no_memory;
}

static void fail(endpoint *ep, const char *what, int err)
{
    char why[256];

    snprintf(why, sizeof(why), "%s: %s", what, strerror(err));
    set_error(ep, why);
}

static void fail_tls(endpoint *ep, int ret)
{
    char why[256];

    proxy_tls_error(ep->ssl, ret, why, sizeof(why));
    set_error(ep, why);
}

const char *endpoint_error(const endpoint *ep)
{
    return ep->errmsg ? ep->errmsg : "";
}

/* Arms or disarms the events from the endpoint's state. */
static void update_events(endpoint *ep)
{
    bool want_read = !ep->failed && (ep->handshaking || ep->tls_write_wants_read ||
                                     (ep->reading && !ep->read_eof && !ep->connecting));
    bool want_write =
        !ep->failed && (ep->connecting || ep->tls_read_wants_write ||
                        (!ep->handshaking && !ep->write_shut && evbuffer_get_length(ep->out) > 0));

    if (ep->handshaking)
        want_write = want_write || ep->tls_read_wants_write;
    if (want_read)
        event_add(ep->ev_read, NULL);
    else
        event_del(ep->ev_read);
    if (want_write)
        event_add(ep->ev_write, NULL);
    else
        event_del(ep->ev_write);
}

bool endpoint_connect(endpoint *ep, const proxy_addr *addr)
{
    if (connect(ep->fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 &&
        errno != EINPROGRESS) {
        fail(ep, "connect", errno);
        return false;
    }
    ep->connecting = true;
    update_events(ep);
    return true;
}

static void finish_connect(endpoint *ep)
{
    int err = 0;
    socklen_t len = sizeof(err);

    ep->connecting = false;
    if (getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        fail(ep, "connect", err);
    update_events(ep);
    ep->on_ready(ep, ep->arg);
}

static void drive_handshake(endpoint *ep)
{
    int r = SSL_do_handshake(ep->ssl);

    if (r == 1) {
        ep->handshaking = false;
        ep->tls_read_wants_write = false;
        update_events(ep);
        ep->on_ready(ep, ep->arg);
        return;
    }
    int e = SSL_get_error(ep->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ep->tls_read_wants_write = e == SSL_ERROR_WANT_WRITE;
        update_events(ep);
        return;
    }
    fail_tls(ep, r);
    ep->handshaking = false;
    update_events(ep);
    ep->on_ready(ep, ep->arg);
}

void endpoint_start_tls(endpoint *ep, SSL *ssl, bool accept)
{
    ep->ssl = ssl;
    SSL_set_fd(ssl, ep->fd);
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (accept)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    ep->handshaking = true;
    drive_handshake(ep);
}

void endpoint_want_read(endpoint *ep, bool on)
{
    ep->reading = on;
    update_events(ep);
    /* TLS may hold decrypted bytes the socket will not signal again. */
    if (on && ep->ssl && !ep->handshaking && SSL_has_pending(ep->ssl))
        event_active(ep->ev_read, EV_READ, 1);
}

/* A read that found nothing leaves the chain it reserved in an empty buffer, where it would stay
 * as long as the connection is idle. libevent frees the chains of a buffer only when it is drained
 * of all it holds, so an empty one is given a byte and drained of it. */
static void release_empty_chain(struct evbuffer *in)
{
    static const char nothing;

    if (evbuffer_get_length(in) == 0 && evbuffer_add(in, &nothing, 1) == 0)
        evbuffer_drain(in, 1);
}

/* read into reserved space: evbuffer_read would ask the kernel for the pending size first,
 * one more system call per read on the forwarding path. Reads on while the socket fills what
 * was reserved, up to READ_CHUNK, so bulk transfers take fewer turns of the loop. One chain is
 * reserved at a time: relaying moves it whole to the other side, which frees it once written,
 * so an idle connection keeps no reserved room (two would leave an empty one behind). */
static void read_plain(endpoint *ep)
{
    size_t total = 0;

    while (total < READ_CHUNK) {
        /* A first read of a few KiB takes a whole statement or result of most traffic; only a
         * read that fills it goes on with larger room. Large rooms for every small read would
         * leave the heap fragmented between the small blocks connections keep. */
        struct evbuffer_iovec v[1];
        int nv = evbuffer_reserve_space(ep->in, total ? READ_CHUNK / 4 : READ_FIRST, v, 1);
        if (nv < 1) {
            fail(ep, "read", ENOMEM);
            return;
        }
        size_t room = v[0].iov_len;
        ssize_t n = read(ep->fd, v[0].iov_base, room);
        if (n <= 0) {
            evbuffer_commit_space(ep->in, v, 0);
            release_empty_chain(ep->in);
            if (n == 0)
                ep->read_eof = true;
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fail(ep, "read", errno);
            return;
        }
        ep->bytes_in += (uint64_t)n;
        total += (size_t)n;
        v[0].iov_len = (size_t)n;
        evbuffer_commit_space(ep->in, v, 1);
        if ((size_t)n < room)
            return; /* the socket is drained: no need for a read that would say EAGAIN */
    }
}

static void read_tls(endpoint *ep)
{
    size_t total = 0;

    while (total < READ_CHUNK) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(ep->in, 16384, &v, 1) < 1)
            return;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(ep->ssl, v.iov_base, (int)v.iov_len);
        if (r > 0) {
            v.iov_len = (size_t)r;
            evbuffer_commit_space(ep->in, &v, 1);
            total += (size_t)r;
            ep->bytes_in += (uint64_t)r;
            continue;
        }
        evbuffer_commit_space(ep->in, &v, 0);
        int e = SSL_get_error(ep->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e == SSL_ERROR_WANT_WRITE) {
            ep->tls_read_wants_write = true;
            return;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
            ep->read_eof = true; /* close_notify, or a peer that just closed */
            return;
        }
        fail_tls(ep, r);
        return;
    }
    if (SSL_has_pending(ep->ssl))
        event_active(ep->ev_read, EV_READ, 1); /* come back for the rest */
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    endpoint *ep = arg;

    if (ep->handshaking) {
        drive_handshake(ep);
        return;
    }
    bool flushed = false;
    if (ep->tls_write_wants_read) {
        ep->tls_write_wants_read = false;
        flushed = true;
        if (!endpoint_flush(ep)) {
            ep->on_write(ep, ep->arg);
            return;
        }
    }
    if (!ep->reading || ep->read_eof) {
        update_events(ep);
        if (flushed)
            ep->on_write(ep, ep->arg); /* the writer side may be waiting on this flush */
        return;
    }
    if (ep->ssl)
        read_tls(ep);
    else
        read_plain(ep);
    update_events(ep);
    if (flushed) {
        /* Both callbacks check whether the session ended; on_write last would see it freed
         * only after the reap event, which runs after this handler returns. */
        ep->on_write(ep, ep->arg);
    }
    ep->on_read(ep, ep->arg); /* last: the callback may end the session */
}

static bool flush_plain(endpoint *ep)
{
    while (evbuffer_get_length(ep->out) > 0) {
        int n = evbuffer_write(ep->out, ep->fd);
        if (n > 0) {
            ep->bytes_out += (uint64_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return true;
        fail(ep, "write", n < 0 ? errno : EPIPE);
        return false;
    }
    return true;
}

static bool flush_tls(endpoint *ep)
{
    while (evbuffer_get_length(ep->out) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(ep->out, -1, NULL, &v, 1) < 1)
            return true;
        int len =
            ep->tls_retry_len ? ep->tls_retry_len : (int)(v.iov_len > 65536 ? 65536 : v.iov_len);
        ERR_clear_error();
        int r = SSL_write(ep->ssl, v.iov_base, len);
        if (r > 0) {
            ep->tls_retry_len = 0;
            evbuffer_drain(ep->out, (size_t)r);
            ep->bytes_out += (uint64_t)r;
            continue;
        }
        ep->tls_retry_len = len;
        int e = SSL_get_error(ep->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE)
            return true;
        if (e == SSL_ERROR_WANT_READ) {
            ep->tls_write_wants_read = true;
            return true;
        }
        fail_tls(ep, r);
        return false;
    }
    return true;
}

bool endpoint_flush(endpoint *ep)
{
    bool ok = true;

    if (ep->failed)
        return false;
    if (!ep->connecting && !ep->handshaking && !ep->write_shut)
        ok = ep->ssl ? flush_tls(ep) : flush_plain(ep);
    update_events(ep);
    return ok;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    endpoint *ep = arg;

    if (ep->connecting) {
        finish_connect(ep);
        return;
    }
    if (ep->handshaking) {
        drive_handshake(ep);
        return;
    }
    if (ep->tls_read_wants_write) {
        ep->tls_read_wants_write = false;
        event_active(ep->ev_read, EV_READ, 1);
    }
    endpoint_flush(ep);
    ep->on_write(ep, ep->arg); /* last: the callback may end the session */
}

void endpoint_shutdown_write(endpoint *ep)
{
    if (ep->write_shut)
        return;
    ep->write_shut = true;
    if (ep->failed)
        return;
    if (ep->ssl)
        SSL_shutdown(ep->ssl);
    shutdown(ep->fd, SHUT_WR);
    update_events(ep);
}
