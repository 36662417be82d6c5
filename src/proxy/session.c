/* session.c — one client connection and its own upstream connection: the startup phase (TLS,
 * cancel, refusal of what the protocol forbids), then byte-exact relaying both ways, framed as
 * it passes so that errors can be told to the client at a message boundary. */
#include "config.h"

#include "proxy_int.h"

#include "pgscope/clock.h"
#include "pgscope/log.h"

#include <arpa/inet.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <time.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum {
    ST_STARTUP,    /* reading the client's first packets */
    ST_CONNECTING, /* connecting to the server (TCP, then maybe TLS) */
    ST_UP_SSLREQ,  /* SSLRequest sent to the server, waiting for 'S' or 'N' */
    ST_AUTH,       /* startup sent; server messages handled whole until AuthenticationOk */
    ST_RELAY,      /* streaming both ways */
    ST_CANCEL,     /* CancelRequest sent; waiting for the server to close */
    ST_CLOSING,    /* a last message to the client is being flushed */
} session_state;

/* Room for the bytes track reads of one direction's messages: reserved as a message needs it,
 * given back between statements when a large one took more than CAPTURE_KEEP, so that an idle
 * connection holds little (issue: 23 KB per idle connection when it was reserved up front). */
typedef struct capture {
    uint8_t *buf;
    uint32_t size;
} capture;

/* Kept between statements: what most messages track reads fit in. */
#define CAPTURE_KEEP 512

struct proxy_session {
    proxy *px;
    uint64_t id;
    char *tag;     /* log prefix: id, client address, user@database (NULL: out of memory) */
    char addr[64]; /* client address for the report */
    endpoint client, server;
    session_state state;
    wire_framer from_client, from_server;
    uint8_t *first; /* StartupMessage or CancelRequest, forwarded verbatim */
    uint32_t first_len;
    bool client_paused; /* reading the client waits for the server's queue to drain */
    bool server_paused;
    bool client_is_unix;
    bool ssl_done,
        gss_done;           /* negotiations over: a second request is refused, as PostgreSQL does */
    bool plain_after_ssl;   /* bytes came behind the SSLRequest: refused once TLS is up */
    bool client_terminated; /* the client's Terminate passed: nothing more goes to the server */
    bool client_raw;        /* a header pgscope could not frame: the rest passes unframed */
    bool active;            /* bytes passed since the last idle sweep */
    bool trimmed;           /* quiet since a sweep gave back its room */
    bool dead;
    struct event *timer; /* connect and closing deadlines; at the end, frees the session once
                          * the current callback is over (session_close) */
    track_conn *track;   /* protocol state for statement events; NULL when not tracking */
    wire_sink client_sink, server_sink;
    capture client_capture, server_capture;
    LIST_ENTRY(proxy_session) link;
    bool pending; /* in px->pending: no startup packet yet */
    TAILQ_ENTRY(proxy_session) pending_link;
};

static void client_read(endpoint *ep, void *arg);
static void server_read(endpoint *ep, void *arg);
static void on_write(endpoint *ep, void *arg);
static void server_ready(endpoint *ep, void *arg);
static void client_ready(endpoint *ep, void *arg);

void proxy_tune_socket(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/* ---- statement tracking: the framers hand messages to track, track hands events to the queue */

/* Bytes of a server message track may capture: the first DataRows of a result are sampled. */
#define SERVER_CAPTURE 4096

/* An event the analysis queue has no room for is dropped (and counted by the queue). */
static void emit_event(track_event *ev, void *arg)
{
    proxy *px = arg;

    bool vital = ev->kind == TRACK_EV_CONNECT || ev->kind == TRACK_EV_DISCONNECT;
    size_t bytes = track_event_bytes(ev);

    if (!(vital ? queue_push_vital(px->settings.events, ev, bytes)
                : queue_push(px->settings.events, ev, bytes)))
        track_event_free(ev);
}

static uint32_t want_from_client(void *arg, uint8_t type, uint32_t len)
{
    return track_want(((proxy_session *)arg)->track, WIRE_FROM_CLIENT, type, len);
}

static uint32_t want_from_server(void *arg, uint8_t type, uint32_t len)
{
    return track_want(((proxy_session *)arg)->track, WIRE_FROM_SERVER, type, len);
}

static uint8_t *capture_reserve(capture *c, uint32_t n)
{
    if (n <= c->size && c->buf)
        return c->buf;
    uint32_t size = n < CAPTURE_KEEP ? CAPTURE_KEEP : n;
    uint8_t *b = malloc(size); /* the old bytes belong to a message already delivered */
    if (!b)
        return NULL;
    free(c->buf);
    c->buf = b;
    c->size = size;
    return b;
}

static void capture_free(capture *c)
{
    free(c->buf);
    c->buf = NULL;
    c->size = 0;
}

static void capture_trim(capture *c)
{
    if (c->size > CAPTURE_KEEP)
        capture_free(c);
}

static uint8_t *reserve_from_client(void *arg, uint32_t n)
{
    return capture_reserve(&((proxy_session *)arg)->client_capture, n);
}

static uint8_t *reserve_from_server(void *arg, uint32_t n)
{
    return capture_reserve(&((proxy_session *)arg)->server_capture, n);
}

static void message_from_client(void *arg, uint8_t type, const uint8_t *body, uint32_t n,
                                uint32_t len)
{
    track_message(((proxy_session *)arg)->track, WIRE_FROM_CLIENT, type, body, n, len);
}

static void message_from_server(void *arg, uint8_t type, const uint8_t *body, uint32_t n,
                                uint32_t len)
{
    proxy_session *s = arg;

    track_message(s->track, WIRE_FROM_SERVER, type, body, n, len);
    if (type == 'Z') { /* ReadyForQuery: between statements */
        capture_trim(&s->client_capture);
        capture_trim(&s->server_capture);
    }
}

static void start_tracking(proxy_session *s, const char *client_addr)
{
    const proxy_settings *st = &s->px->settings;
    uint32_t cap = track_capture_size(&st->limits);

    if (!st->events)
        return;
    s->track = track_conn_new(s->id, &st->limits, emit_event, s->px);
    s->client_sink =
        (wire_sink){want_from_client, message_from_client, reserve_from_client, s, cap};
    s->server_sink =
        (wire_sink){want_from_server, message_from_server, reserve_from_server, s, SERVER_CAPTURE};
    if (!s->track)
        return;
    track_startup(s->track, s->first, s->first_len, client_addr, clock_wall_us());
}

/* After authentication: from here on every message passes by track (passwords never do). */
static void attach_tracking(proxy_session *s)
{
    if (!s->track)
        return;
    wire_framer_set_sink(&s->from_client, &s->client_sink);
    wire_framer_set_sink(&s->from_server, &s->server_sink);
}

/* ---- ending a session ---- */

/* ---- connections before their startup packet ----
 *
 * They have a cap and a deadline of their own (max_startup_connections, startup_timeout), apart
 * from max_connections: a slowloris that opens thousands of connections and says nothing takes
 * no slot of a client that authenticates. When the cap is reached the oldest silent connection
 * is closed to make room, so a new client is always read. */

static void pending_leave(proxy_session *s)
{
    if (!s->pending)
        return;
    s->pending = false;
    TAILQ_REMOVE(&s->px->pending, s, pending_link);
    s->px->n_pending--;
}

static void session_close(proxy_session *s);

static void pending_enter(proxy_session *s)
{
    proxy *px = s->px;

    s->pending = true;
    TAILQ_INSERT_TAIL(&px->pending, s, pending_link);
    px->n_pending++;
    if (px->n_pending > px->settings.max_startup_connections) {
        proxy_session *oldest = TAILQ_FIRST(&px->pending);
        log_info(oldest->tag,
                 "closed: %d connections have not sent a startup packet "
                 "(max_startup_connections), this one the longest",
                 px->n_pending - 1);
        pending_leave(oldest);
        session_close(oldest);
    }
}

static void session_destroy(proxy_session *s)
{
    proxy *px = s->px;

    pending_leave(s);
    log_debug(s->tag, "closed: %llu bytes from client, %llu from server",
              (unsigned long long)s->client.bytes_in, (unsigned long long)s->server.bytes_in);
    LIST_REMOVE(s, link);
    if (s->track) {
        track_disconnect(s->track, s->client.bytes_in, s->server.bytes_in, clock_wall_us());
        track_conn_free(s->track);
        free(s->client_capture.buf);
        free(s->server_capture.buf);
    }
    endpoint_free(&s->client);
    endpoint_free(&s->server); /* fd -1 and NULL members when never connected */
    if (s->timer)
        event_free(s->timer);
    free(s->first);
    free(s->tag);
    free(s);
    proxy_session_ended(px);
}

static void reap(evutil_socket_t fd, short what, void *arg)
{
    session_destroy(arg);
}

/* Arms the session's one timer with cb after secs. Never once the session is dead: its timer
 * is then the event that frees it. */
static void arm_timer(proxy_session *s, event_callback_fn cb, int secs)
{
    struct timeval tv = {secs, 0};

    if (s->dead)
        return;
    event_del(s->timer);
    event_assign(s->timer, s->px->base, -1, 0, cb, s);
    event_add(s->timer, &tv);
}

/* Marks the session dead: no callback of it runs again, and it is freed shortly. */
static void session_close(proxy_session *s)
{
    if (s->dead)
        return;
    s->dead = true;
    endpoint_silence(&s->client);
    if (s->server.ev_read)
        endpoint_silence(&s->server);
    /* The deadline timer, of no more use, becomes the event that frees the session: one event
     * fewer in every connection. */
    event_del(s->timer);
    event_assign(s->timer, s->px->base, -1, 0, reap, s);
    event_active(s->timer, EV_TIMEOUT, 1);
}

/* True when an ErrorResponse may be put in front of the client now without cutting a message. */
static bool client_can_take_error(const proxy_session *s)
{
    switch (s->state) {
    case ST_STARTUP:
    case ST_CONNECTING:
    case ST_UP_SSLREQ:
    case ST_AUTH: /* whole messages only in this phase */
        return !s->client.write_shut;
    case ST_RELAY:
        return !s->client.write_shut && wire_framer_at_boundary(&s->from_server);
    default:
        return false;
    }
}

static void closing_deadline(evutil_socket_t fd, short what, void *arg)
{
    session_close(arg);
}

/* Writes a last message to the client and closes the session once it is written (or after a
 * short deadline for a client that does not read). */
static void session_last_words(proxy_session *s, const uint8_t *msg, size_t n)
{
    if (s->server.ev_read)
        endpoint_silence(&s->server);
    s->state = ST_CLOSING;
    evbuffer_add(s->client.out, msg, n);
    endpoint_want_read(&s->client, false);
    if (!endpoint_flush(&s->client) || evbuffer_get_length(s->client.out) == 0) {
        session_close(s);
        return;
    }
    arm_timer(s, closing_deadline, 5);
}

/* Sends a FATAL ErrorResponse to the client if the protocol allows it here, then closes. */
static void session_abort(proxy_session *s, const char *sqlstate, const char *message,
                          const char *detail)
{
    uint8_t buf[1024];

    if (s->dead)
        return;
    if (!client_can_take_error(s)) {
        session_close(s);
        return;
    }
    size_t n = wire_error_response(buf, sizeof(buf), "FATAL", sqlstate, message, detail, NULL);
    if (n > sizeof(buf))
        n = wire_error_response(buf, sizeof(buf), "FATAL", sqlstate, "pgscope: fatal error", NULL,
                                NULL);
    session_last_words(s, buf, n);
}

/* pgscope speaks for itself: a failure that exists because of it (the upstream cannot be reached,
 * its own limits, its shutdown). The text starts with "pgscope:". */
static void abortf(proxy_session *s, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void abortf(proxy_session *s, const char *sqlstate, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_info(s->tag, "%s (SQLSTATE %s)", msg, sqlstate);
    session_abort(s, sqlstate, msg, NULL);
}

/* Detail PostgreSQL gives with its refusal of bytes that came behind an encryption request. */
#define UNENCRYPTED_DETAIL                                                                         \
    "This could be either a client-software bug or evidence of an attempted man-in-the-middle "    \
    "attack."

/* PostgreSQL's own refusal of bytes that came behind an SSLRequest or GSSENCRequest
 * (CVE-2021-23214), with its words. */
static void refuse_unencrypted(proxy_session *s, const char *request)
{
    char msg[128];

    snprintf(msg, sizeof(msg), "received unencrypted data after %s", request);
    log_info(s->tag, "%s (SQLSTATE 08P01)", msg);
    session_abort(s, "08P01", msg, UNENCRYPTED_DETAIL);
}

/* Both directions finished and flushed: the session is over. */
static void close_if_done(proxy_session *s)
{
    if (s->client.write_shut && s->server.write_shut && s->client.read_eof && s->server.read_eof)
        session_close(s);
}

/* ---- relaying ---- */

/* Moves framed bytes from src's input to dst's output and writes them. Returns the framing
 * error that stopped it, if any (the bytes before the bad header are passed on). */
static wire_error relay(proxy_session *s, endpoint *src, endpoint *dst, wire_framer *f,
                        bool *paused)
{
    if (dst->write_shut || dst->failed) {
        /* The other side is gone: what is still coming has nowhere to go. */
        evbuffer_drain(src->in, evbuffer_get_length(src->in));
        return WIRE_OK;
    }
    s->active = true;
    s->trimmed = false;
    if (s->track && f && f->sink)
        track_set_clock(s->track, clock_wall_us());
    if (!f) /* unframed: every byte as it comes */
        evbuffer_remove_buffer(src->in, dst->out, evbuffer_get_length(src->in));
    while (evbuffer_get_length(src->in) > 0) {
        struct evbuffer_iovec vec[32];
        int nv = evbuffer_peek(src->in, -1, NULL, vec, 32);
        size_t good = 0;
        wire_error err = WIRE_OK;
        for (int i = 0; i < nv && i < 32 && err == WIRE_OK; i++) {
            size_t stop_at = 0;
            err = wire_framer_feed(f, vec[i].iov_base, vec[i].iov_len, &stop_at);
            good += err == WIRE_OK ? vec[i].iov_len : stop_at;
        }
        evbuffer_remove_buffer(src->in, dst->out, good);
        if (err != WIRE_OK) {
            endpoint_flush(dst);
            return err;
        }
    }
    endpoint_flush(dst);
    /* Bounded queue per direction: stop reading until the other side drains. */
    if (evbuffer_get_length(dst->out) >= (size_t)s->px->settings.buffer_size && !*paused) {
        *paused = true;
        endpoint_want_read(src, false);
    }
    return WIRE_OK;
}

/* After the peer's EOF and once its queue is written, pass the half-close on. The session may
 * be over either way: the other direction may have finished first. */
static void pass_on_eof(proxy_session *s, endpoint *from, endpoint *to)
{
    if (from->read_eof && !to->write_shut && evbuffer_get_length(to->out) == 0)
        endpoint_shutdown_write(to);
    close_if_done(s);
}

static void server_gone(proxy_session *s);

/* What the framer stopped at. After a Terminate the server reads nothing more, so nothing more is
 * sent to it. A header pgscope cannot frame is the server's to judge, as it would be without
 * pgscope (an unknown type gets its FATAL, a bad length a silent close): it and all that follows
 * pass on unframed. */
static void client_stream_stopped(proxy_session *s, wire_error err)
{
    if (err == WIRE_TERMINATED) {
        s->client_terminated = true;
        evbuffer_drain(s->client.in, evbuffer_get_length(s->client.in));
        return;
    }
    log_info(s->tag, "%s from the client (type 0x%02x): passed on unframed for the server to judge",
             wire_error_str(err), s->from_client.hdr[0]);
    s->client_raw = true;
    relay(s, &s->client, &s->server, NULL, &s->client_paused);
}

static void relay_from_client(proxy_session *s)
{
    if (s->client_terminated) {
        evbuffer_drain(s->client.in, evbuffer_get_length(s->client.in));
    } else {
        wire_error err = relay(s, &s->client, &s->server, s->client_raw ? NULL : &s->from_client,
                               &s->client_paused);
        if (err != WIRE_OK)
            client_stream_stopped(s, err);
    }
    if (s->server.failed) {
        server_gone(s);
        return;
    }
    pass_on_eof(s, &s->client, &s->server);
}

/* A client whose server has gone and that does not close its end is let go after this long. */
#define GONE_TIMEOUT 30

/* The server finished or failed. The client sees it as it would without pgscope: every byte the
 * server sent, then EOF; pgscope adds nothing of its own. */
static void server_gone(proxy_session *s)
{
    if (!s->client_terminated)
        log_info(s->tag, "the server closed the connection%s%s", s->server.failed ? ": " : "",
                 endpoint_error(&s->server));
    if (s->state == ST_AUTH) /* a message the server did not finish is passed on as it is */
        evbuffer_remove_buffer(s->server.in, s->client.out, evbuffer_get_length(s->server.in));
    s->server.read_eof = true;
    endpoint_shutdown_write(&s->server);
    evbuffer_drain(s->server.out, evbuffer_get_length(s->server.out)); /* undeliverable now */
    if (s->client_paused) {
        /* Read on, so that the client's own EOF is seen and the session can end. */
        s->client_paused = false;
        endpoint_want_read(&s->client, true);
    }
    pass_on_eof(s, &s->server, &s->client);
    close_if_done(s);
    arm_timer(s, closing_deadline, GONE_TIMEOUT);
}

static void relay_from_server(proxy_session *s)
{
    wire_error err = relay(s, &s->server, &s->client, &s->from_server, &s->server_paused);

    if (err != WIRE_OK) {
        log_warning(s->tag, "bad bytes from the upstream server: %s (type 0x%02x)",
                    wire_error_str(err), s->from_server.hdr[0]);
        session_close(s); /* mid-stream: no boundary to put an error at */
        return;
    }
    if (s->client.failed) {
        session_close(s);
        return;
    }
    if (s->server.failed || s->server.read_eof)
        server_gone(s);
}

/* ---- the authentication phase: server messages whole, so one may be rewritten ---- */

/* No client can bind SCRAM to the server's TLS channel through pgscope: a TLS client would bind
 * to pgscope's certificate, and libpq refuses a PLUS offer on a link without TLS. So the server's
 * offer of SCRAM-SHA-256-PLUS (made only when the upstream link is TLS) is withheld from every
 * client. This is the one rewrite pgscope makes to the byte stream. */
static void forward_auth_message(proxy_session *s, uint8_t type, size_t len)
{
    uint8_t *msg = evbuffer_pullup(s->server.in, (ssize_t)len);
    uint8_t out[512];

    if (type == 'R' && len <= sizeof(out)) {
        size_t n = wire_sasl_without_plus(msg, len, out, sizeof(out));
        if (n > 0) {
            log_debug(s->tag, "SCRAM-SHA-256-PLUS withheld from the client");
            evbuffer_add(s->client.out, out, n);
            evbuffer_drain(s->server.in, len);
            return;
        }
    }
    if (type == 'E' && memmem(msg, len, "channel binding", 15))
        log_warning(s->tag, "the server refused SCRAM channel binding; with client TLS ending "
                            "at pgscope use upstream_sslmode=disable on a trusted link, or "
                            "channel_binding=disable in the client");
    if (type == 'R' && wire_auth_code(msg, len) == WIRE_AUTH_OK) {
        s->state = ST_RELAY;
        attach_tracking(s);
    }
    s->from_server.type = type;
    evbuffer_remove_buffer(s->server.in, s->client.out, len);
}

static void auth_phase(proxy_session *s)
{
    while (s->state == ST_AUTH) {
        uint8_t hdr[WIRE_HEADER_LEN];
        if (evbuffer_copyout(s->server.in, hdr, sizeof(hdr)) < (ssize_t)sizeof(hdr))
            break;
        uint32_t len = wire_get_u32(hdr + 1);
        if (len < 4 || len > WIRE_AUTH_MSG_MAX) {
            abortf(s, "08P01", "pgscope: invalid message length %u from the upstream server", len);
            return;
        }
        if (evbuffer_get_length(s->server.in) < (size_t)len + 1)
            break;
        forward_auth_message(s, hdr[0], (size_t)len + 1);
    }
    endpoint_flush(&s->client);
}

/* ---- the server side ---- */

static void upstream_failed(proxy_session *s, const char *what)
{
    abortf(s, "08001", "pgscope: could not connect to upstream %s: %s", s->px->upstream.text, what);
}

/* Connected (and TLS settled, if any): send the client's first packet as it came. */
static void upstream_ready(proxy_session *s)
{
    event_del(s->timer);
    evbuffer_add(s->server.out, s->first, s->first_len);
    if (s->state == ST_CONNECTING || s->state == ST_UP_SSLREQ) {
        s->state =
            s->first_len && wire_get_u32(s->first + 4) == WIRE_CODE_CANCEL ? ST_CANCEL : ST_AUTH;
    }
    if (!endpoint_flush(&s->server)) {
        upstream_failed(s, endpoint_error(&s->server));
        return;
    }
    endpoint_want_read(&s->server, true);
    if (s->state == ST_CANCEL) {
        /* The server closes the connection once it has read the request; do not wait on a
         * server that does not. */
        arm_timer(s, closing_deadline, s->px->settings.connect_timeout);
        return;
    }
    wire_framer_init(&s->from_client, WIRE_FROM_CLIENT);
    wire_framer_init(&s->from_server, WIRE_FROM_SERVER);
    endpoint_want_read(&s->client, true);
    if (evbuffer_get_length(s->client.in) > 0)
        relay_from_client(s);
}

static void start_upstream_tls(proxy_session *s)
{
    SSL *ssl = proxy_tls_client_ssl(s->px->client_ctx, s->px->settings.upstream_sslmode,
                                    s->px->upstream.host);
    if (!ssl) {
        upstream_failed(s, "cannot create a TLS session");
        return;
    }
    s->state = ST_CONNECTING;
    endpoint_start_tls(&s->server, ssl, false);
}

/* The server's one-byte answer to our SSLRequest. */
static void upstream_ssl_answer(proxy_session *s)
{
    uint8_t answer;
    size_t n = evbuffer_get_length(s->server.in);

    if (n == 0) {
        if (s->server.read_eof || s->server.failed)
            upstream_failed(s, "connection closed during TLS negotiation");
        return;
    }
    evbuffer_remove(s->server.in, &answer, 1);
    if (answer == 'S' && n > 1) {
        upstream_failed(s, "unexpected data after the server's TLS answer");
    } else if (answer == 'S') {
        endpoint_want_read(&s->server, false);
        start_upstream_tls(s);
    } else if (answer == 'N' && s->px->settings.upstream_sslmode >= PROXY_SSL_REQUIRE) {
        upstream_failed(s, "the server does not support TLS (upstream_sslmode requires it)");
    } else if (answer == 'N') {
        upstream_ready(s);
    } else {
        upstream_failed(s, "the server sent an unexpected answer to the TLS request");
    }
}

static void server_read(endpoint *ep, void *arg)
{
    proxy_session *s = arg;

    if (s->dead)
        return;
    switch (s->state) {
    case ST_UP_SSLREQ:
        upstream_ssl_answer(s);
        return;
    case ST_AUTH:
        auth_phase(s);
        if (s->dead || s->state == ST_CLOSING)
            return;
        if (s->state == ST_RELAY)
            relay_from_server(s);
        else if (s->server.read_eof || s->server.failed)
            server_gone(s);
        return;
    case ST_RELAY:
        relay_from_server(s);
        return;
    case ST_CANCEL:
        evbuffer_drain(ep->in, evbuffer_get_length(ep->in));
        if (ep->read_eof || ep->failed)
            session_close(s);
        return;
    default:
        return;
    }
}

static void connect_deadline(evutil_socket_t fd, short what, void *arg)
{
    proxy_session *s = arg;

    upstream_failed(s, "timeout");
}

static void server_ready(endpoint *ep, void *arg)
{
    proxy_session *s = arg;
    static const uint8_t ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};

    if (s->dead)
        return;
    if (ep->failed) {
        upstream_failed(s, endpoint_error(ep));
        return;
    }
    if (ep->ssl) { /* the TLS handshake is done */
        upstream_ready(s);
        return;
    }
    if (!s->px->upstream.is_unix)
        proxy_tune_socket(ep->fd);
    if (s->px->settings.upstream_sslmode == PROXY_SSL_DISABLE || s->px->upstream.is_unix) {
        upstream_ready(s);
        return;
    }
    s->state = ST_UP_SSLREQ;
    evbuffer_add(ep->out, ssl_request, sizeof(ssl_request));
    endpoint_flush(ep);
    endpoint_want_read(ep, true);
}

/* A client that connects and never says who it is would hold a connection slot forever.
 * PostgreSQL's authentication_timeout ends such a connection without a word; so does pgscope. */
static void startup_deadline(evutil_socket_t fd, short what, void *arg)
{
    proxy_session *s = arg;

    log_info(s->tag, "no startup packet within %d s: closed", s->px->settings.startup_timeout);
    session_close(s);
}

static void connect_upstream(proxy_session *s)
{
    proxy *px = s->px;
    int fd = socket(px->upstream.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    s->state = ST_CONNECTING;
    endpoint_want_read(&s->client, false);
    if (fd < 0) {
        upstream_failed(s, strerror(errno));
        return;
    }
    if (!endpoint_init(&s->server, px->base, fd, s)) {
        endpoint_free(&s->server); /* closes fd, frees what was made */
        upstream_failed(s, "out of memory");
        return;
    }
    s->server.on_read = server_read;
    s->server.on_write = on_write;
    s->server.on_ready = server_ready;
    arm_timer(s, connect_deadline, px->settings.connect_timeout); /* replaces the startup one */
    if (!endpoint_connect(&s->server, &px->upstream))
        upstream_failed(s, endpoint_error(&s->server));
}

/* ---- the client's first packets ---- */

static bool send_byte(proxy_session *s, char c)
{
    evbuffer_add(s->client.out, &c, 1);
    return endpoint_flush(&s->client) && evbuffer_get_length(s->client.out) == 0;
}

/* Another protocol version: PostgreSQL's refusal, in the only form a client of protocol 2 or
 * older can read when it speaks one. */
static void refuse_protocol(proxy_session *s, const wire_first *f)
{
    uint8_t buf[256];
    char text[sizeof(f->message) + 16];

    log_info(s->tag, "%s (SQLSTATE %s)", f->message, f->sqlstate);
    if (f->code >> 16 >= 3) {
        session_abort(s, f->sqlstate, f->message, NULL);
        return;
    }
    snprintf(text, sizeof(text), "FATAL:  %s", f->message);
    size_t n = wire_error_v2(buf, sizeof(buf), text);
    session_last_words(s, buf, n < sizeof(buf) ? n : sizeof(buf));
}

/* An SSLRequest: TLS when pgscope has a certificate (never on a Unix socket, as PostgreSQL),
 * otherwise 'N'. After 'S' a GSSENCRequest is refused as well. */
static void client_asks_tls(proxy_session *s)
{
    s->ssl_done = true;
    if (!s->px->server_ctx || s->client_is_unix) {
        if (!send_byte(s, 'N'))
            session_close(s);
        else if (evbuffer_get_length(s->client.in) > 0)
            refuse_unencrypted(s, "SSL request");
        return;
    }
    s->gss_done = true;
    SSL *ssl = SSL_new(s->px->server_ctx);
    if (!ssl || !send_byte(s, 'S')) {
        SSL_free(ssl);
        session_close(s);
        return;
    }
    /* Bytes already behind the request were not encrypted. PostgreSQL completes the handshake,
     * then refuses them; so does pgscope (client_ready). */
    if (evbuffer_get_length(s->client.in) > 0) {
        s->plain_after_ssl = true;
        evbuffer_drain(s->client.in, evbuffer_get_length(s->client.in));
    }
    endpoint_want_read(&s->client, false);
    endpoint_start_tls(&s->client, ssl, true);
}

/* A GSSENCRequest: pgscope cannot encrypt with GSSAPI, so 'N' (see doc/architecture.md). */
static void client_asks_gssenc(proxy_session *s)
{
    s->gss_done = true;
    if (!send_byte(s, 'N'))
        session_close(s);
    else if (evbuffer_get_length(s->client.in) > 0)
        refuse_unencrypted(s, "GSSAPI encryption request");
}

static void client_ready(endpoint *ep, void *arg)
{
    proxy_session *s = arg;

    if (s->dead)
        return;
    if (ep->failed) {
        log_info(s->tag, "client TLS handshake failed: %s", endpoint_error(ep));
        session_close(s);
        return;
    }
    if (s->plain_after_ssl) {
        refuse_unencrypted(s, "SSL request");
        return;
    }
    endpoint_want_read(ep, true);
    event_active(ep->ev_read, EV_READ, 1); /* the startup packet may already be decrypted */
}

/* The log prefix, "c<id> <address>" and then who, on the heap at its length: a buffer for the
 * longest in every session would cost each idle connection hundreds of bytes. */
static void set_tag(proxy_session *s, const char *who)
{
    char tag[320];

    snprintf(tag, sizeof(tag), "c%llu %s%s", (unsigned long long)s->id, s->addr, who);
    char *copy = strdup(tag);
    if (copy || !s->tag) {
        free(s->tag);
        s->tag = copy;
    }
}

static void name_session(proxy_session *s)
{
    const char *user = wire_startup_param(s->first, s->first_len, "user");
    const char *db = wire_startup_param(s->first, s->first_len, "database");
    char who[160];

    snprintf(who, sizeof(who), " %.60s@%.60s%s", user ? user : "?", db ? db : (user ? user : "?"),
             s->client.ssl ? " tls" : "");
    set_tag(s, who);
}

/* Keeps the first packet to forward it verbatim once the server is connected. A StartupMessage
 * whose parameter list is malformed goes too: the server's refusal is the one to give. */
static void take_first(proxy_session *s, const wire_first *f)
{
    bool cancel = f->kind == WIRE_FIRST_CANCEL;
    proxy *px = s->px;

    pending_leave(s);
    if (!cancel && px->n_sessions - px->n_pending > px->settings.max_connections) {
        /* Like PostgreSQL, after the negotiation, so that the client reads the reason. */
        abortf(s, "53300", "pgscope: sorry, too many clients already (max_connections %d)",
               s->px->settings.max_connections);
        return;
    }
    s->first = malloc(f->len);
    if (!s->first) {
        abortf(s, "53200", "pgscope: out of memory");
        return;
    }
    s->first_len = f->len;
    evbuffer_remove(s->client.in, s->first, f->len);
    if (cancel) {
        log_debug(s->tag, "cancel request forwarded to the server");
    } else if (f->params_ok) {
        name_session(s);
        log_debug(s->tag, "startup");
        start_tracking(s, s->addr);
    } else {
        log_info(s->tag, "malformed startup packet: forwarded for the server to refuse");
    }
    connect_upstream(s);
}

static void startup_phase(proxy_session *s)
{
    while (!s->dead && s->state == ST_STARTUP) {
        size_t n = evbuffer_get_length(s->client.in);
        if (n == 0)
            break;
        size_t want = n < WIRE_STARTUP_MAX + 4 ? n : WIRE_STARTUP_MAX + 4;
        wire_first f = wire_first_parse(evbuffer_pullup(s->client.in, (ssize_t)want), want);
        if ((f.kind == WIRE_FIRST_SSL && s->ssl_done) ||
            (f.kind == WIRE_FIRST_GSSENC && s->gss_done))
            wire_first_unsupported(&f); /* a second request is read as a protocol version */
        switch (f.kind) {
        case WIRE_FIRST_NEED_MORE:
            return;
        case WIRE_FIRST_SSL:
            evbuffer_drain(s->client.in, f.len);
            client_asks_tls(s);
            return;
        case WIRE_FIRST_GSSENC:
            evbuffer_drain(s->client.in, f.len);
            client_asks_gssenc(s);
            continue;
        case WIRE_FIRST_CANCEL:
        case WIRE_FIRST_STARTUP:
            take_first(s, &f);
            return;
        case WIRE_FIRST_UNSUPPORTED:
            refuse_protocol(s, &f);
            return;
        case WIRE_FIRST_BAD:
            /* PostgreSQL logs it and closes without a word to the client. */
            log_info(s->tag, "%s: closed", f.message);
            session_close(s);
            return;
        }
    }
}

static void client_read(endpoint *ep, void *arg)
{
    proxy_session *s = arg;

    if (s->dead)
        return;
    if (ep->failed) {
        log_debug(s->tag, "client connection error: %s", endpoint_error(ep));
        session_close(s);
        return;
    }
    switch (s->state) {
    case ST_STARTUP:
        startup_phase(s);
        if (!s->dead && s->state == ST_STARTUP && ep->read_eof)
            session_close(s); /* gone before saying who it is */
        return;
    case ST_AUTH:
    case ST_RELAY:
        relay_from_client(s);
        return;
    case ST_CLOSING:
        evbuffer_drain(ep->in, evbuffer_get_length(ep->in));
        return;
    default:
        if (ep->read_eof)
            session_close(s);
        return;
    }
}

/* Output was written: resume the other side if it waited, pass on a pending half-close. */
static void on_write(endpoint *ep, void *arg)
{
    proxy_session *s = arg;
    bool to_client = ep == &s->client;
    endpoint *src = to_client ? &s->server : &s->client;
    bool *paused = to_client ? &s->server_paused : &s->client_paused;

    if (s->dead)
        return;
    if (ep->failed) {
        if (to_client)
            session_close(s);
        else
            server_gone(s);
        return;
    }
    if (s->state == ST_CLOSING) {
        if (evbuffer_get_length(s->client.out) == 0)
            session_close(s);
        return;
    }
    if (*paused && evbuffer_get_length(ep->out) <= (size_t)s->px->settings.buffer_size / 2) {
        *paused = false;
        endpoint_want_read(src, true);
        if (evbuffer_get_length(src->in) > 0)
            event_active(src->ev_read, EV_READ, 1);
    }
    pass_on_eof(s, src, ep);
}

void session_start(proxy *px, int fd, const struct sockaddr *sa, int salen)
{
    proxy_session *s = calloc(1, sizeof(*s));
    char host[INET6_ADDRSTRLEN] = "unix";
    int port = 0;

    if (!s) {
        close(fd);
        return;
    }
    s->px = px;
    s->id = ++px->next_id;
    s->server.fd = -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(s->addr, sizeof(s->addr), port ? "%s:%d" : "%s", host, port);
    set_tag(s, "");
    s->client_is_unix = sa->sa_family == AF_UNIX;
    if (!s->client_is_unix)
        proxy_tune_socket(fd);
    s->timer = event_new(px->base, -1, 0, startup_deadline, s);
    LIST_INSERT_HEAD(&px->sessions, s, link);
    px->n_sessions++;
    if (!endpoint_init(&s->client, px->base, fd, s) || !s->timer) {
        log_error(s->tag, "out of memory");
        session_destroy(s); /* no reap event to defer to */
        return;
    }
    s->client.on_read = client_read;
    s->client.on_write = on_write;
    s->client.on_ready = client_ready;
    s->state = ST_STARTUP;
    log_debug(s->tag, "connected");
    /* Past max_connections a client is refused once it has sent its startup packet
     * (take_first); before that it counts against max_startup_connections. */
    pending_enter(s);
    struct timeval tv = {px->settings.startup_timeout, 0};
    event_add(s->timer, &tv);
    endpoint_want_read(&s->client, true);
}

void sessions_abort_all(proxy *px, const char *sqlstate, const char *message)
{
    proxy_session *s, *next;

    for (s = LIST_FIRST(&px->sessions); s; s = next) {
        next = LIST_NEXT(s, link);
        session_abort(s, sqlstate, message, NULL);
    }
}

/* Called every PROXY_IDLE_SWEEP seconds: a session quiet since the last call gives back what
 * it keeps for its next statement (capture room, track's queue and sample blocks), so that a
 * thousand idle connections cost little. Nothing on the forwarding path waits for it. */
void sessions_sweep_idle(proxy *px)
{
    proxy_session *s;
    bool gave_back = px->ended_since_sweep > 0;

    LIST_FOREACH(s, &px->sessions, link)
    {
        if (s->active || s->trimmed || s->state != ST_RELAY) {
            s->active = false;
            continue;
        }
        s->trimmed = true;
        capture_free(&s->client_capture);
        capture_free(&s->server_capture);
        if (s->track)
            track_idle(s->track);
        gave_back = true;
    }
    px->ended_since_sweep = 0;
#ifdef __GLIBC__
    /* glibc keeps freed pages resident until asked: give them back to the system, once per
     * sweep that freed something (it walks the heap, so not on every free). */
    if (gave_back)
        malloc_trim(0);
#endif
}

void sessions_destroy_all(proxy *px)
{
    proxy_session *s;

    while ((s = LIST_FIRST(&px->sessions)) != NULL)
        session_destroy(s);
}
