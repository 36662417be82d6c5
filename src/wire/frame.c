/* frame.c — message boundaries: the first packet of a connection and the typed message flow. */
#include "config.h"

#include "pgscope/wire.h"

#include <stdio.h>
#include <string.h>

/* Server messages are streamed whatever their type; only their length is bounded. */
#define WIRE_SERVER_MSG_MAX 0x40000000U

/* PostgreSQL accepts a protocol 3 password/SASL/GSS message of this size at most. */
#define WIRE_AUTH_TOKEN_MAX 65535U

uint32_t wire_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

const char *wire_error_str(wire_error err)
{
    switch (err) {
    case WIRE_OK:
        return "ok";
    case WIRE_ERR_SHORT_LENGTH:
        return "invalid message length (below 4)";
    case WIRE_ERR_LONG_LENGTH:
        return "invalid message length (above the limit for its type)";
    case WIRE_ERR_UNKNOWN_TYPE:
        return "invalid frontend message type";
    case WIRE_TERMINATED:
        return "Terminate";
    }
    return "unknown error";
}

/* Largest length field PostgreSQL accepts for a frontend message type; 0 for unknown types. */
static uint32_t client_type_limit(uint8_t type)
{
    switch (type) {
    case 'Q': /* Query */
    case 'P': /* Parse */
    case 'B': /* Bind */
    case 'F': /* FunctionCall */
    case 'd': /* CopyData */
        return WIRE_LARGE_MSG_MAX;
    case 'p': /* PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse */
        return WIRE_AUTH_TOKEN_MAX;
    case 'E': /* Execute */
    case 'D': /* Describe */
    case 'C': /* Close */
    case 'H': /* Flush */
    case 'S': /* Sync */
    case 'X': /* Terminate */
    case 'c': /* CopyDone */
    case 'f': /* CopyFail */
        return WIRE_SMALL_MSG_MAX;
    default:
        return 0;
    }
}

wire_error wire_check_header(wire_side side, uint8_t type, uint32_t len)
{
    uint32_t limit = WIRE_SERVER_MSG_MAX;

    if (side == WIRE_FROM_CLIENT) {
        limit = client_type_limit(type);
        if (limit == 0)
            return WIRE_ERR_UNKNOWN_TYPE;
    }
    if (len < 4)
        return WIRE_ERR_SHORT_LENGTH;
    if (len > limit)
        return WIRE_ERR_LONG_LENGTH;
    return WIRE_OK;
}

void wire_framer_init(wire_framer *f, wire_side side)
{
    memset(f, 0, sizeof(*f));
    f->side = side;
}

void wire_framer_set_sink(wire_framer *f, const wire_sink *sink)
{
    f->sink = sink;
}

/* A header is complete: ask the sink how much of the body it wants. */
static void begin_message(wire_framer *f, uint32_t len)
{
    f->type = f->hdr[0];
    f->body_len = len - 4;
    f->remaining = f->body_len;
    f->captured = 0;
    f->want = 0;
    f->deliver = false;
    if (f->sink) {
        uint32_t want = f->sink->want(f->sink->arg, f->type, f->body_len);
        uint32_t most = f->body_len < f->sink->cap ? f->body_len : f->sink->cap;
        f->want = want < most ? want : most;
        f->capture = want > 0 ? f->sink->reserve(f->sink->arg, f->want) : NULL;
        f->deliver = f->capture != NULL;
        if (!f->deliver)
            f->want = 0;
    }
}

/* A message has wholly passed. True when it was the client's Terminate: the server reads nothing
 * after it, so neither does the framer. */
static bool end_message(wire_framer *f)
{
    if (f->deliver)
        f->sink->message(f->sink->arg, f->type, f->capture, f->captured, f->body_len);
    f->terminated = f->side == WIRE_FROM_CLIENT && f->type == 'X';
    return f->terminated;
}

bool wire_framer_at_boundary(const wire_framer *f)
{
    return f->hdr_have == 0 && f->remaining == 0;
}

wire_error wire_framer_feed(wire_framer *f, const uint8_t *buf, size_t n, size_t *stop_at)
{
    size_t pos = 0;

    if (f->terminated) {
        *stop_at = 0;
        return WIRE_TERMINATED;
    }
    while (pos < n) {
        if (f->remaining > 0) {
            size_t take = n - pos < f->remaining ? n - pos : f->remaining;
            if (f->captured < f->want) {
                size_t c = f->want - f->captured < take ? f->want - f->captured : take;
                memcpy(f->capture + f->captured, buf + pos, c);
                f->captured += (uint32_t)c;
            }
            f->remaining -= (uint32_t)take;
            pos += take;
            if (f->remaining == 0 && end_message(f)) {
                *stop_at = pos;
                return WIRE_TERMINATED;
            }
            continue;
        }
        size_t start = pos - f->hdr_have; /* may wrap when the header began in an earlier chunk */
        while (f->hdr_have < WIRE_HEADER_LEN && pos < n)
            f->hdr[f->hdr_have++] = buf[pos++];
        if (f->hdr_have < WIRE_HEADER_LEN)
            break;
        uint32_t len = wire_get_u32(f->hdr + 1);
        wire_error err = wire_check_header(f->side, f->hdr[0], len);
        if (err != WIRE_OK) {
            *stop_at = start > pos ? 0 : start;
            return err;
        }
        f->hdr_have = 0;
        f->messages++;
        begin_message(f, len);
        if (f->remaining == 0 && end_message(f)) {
            *stop_at = pos;
            return WIRE_TERMINATED;
        }
    }
    return WIRE_OK;
}

/* Checks that a StartupMessage payload is a list of NUL-terminated name/value pairs ended by
 * one more NUL, as PostgreSQL requires. */
static bool startup_params_valid(const uint8_t *p, size_t n)
{
    size_t pos = 0;

    for (;;) {
        if (pos >= n)
            return false;
        if (p[pos] == '\0')
            return pos + 1 == n;
        const uint8_t *nul = memchr(p + pos, '\0', n - pos);
        if (!nul)
            return false;
        pos = (size_t)(nul - p) + 1; /* past the name */
        nul = pos < n ? memchr(p + pos, '\0', n - pos) : NULL;
        if (!nul)
            return false;
        pos = (size_t)(nul - p) + 1; /* past the value */
    }
}

static wire_first first_bad(wire_first r, const char *msg)
{
    r.kind = WIRE_FIRST_BAD;
    snprintf(r.message, sizeof(r.message), "%s", msg);
    return r;
}

void wire_first_unsupported(wire_first *f)
{
    f->kind = WIRE_FIRST_UNSUPPORTED;
    f->sqlstate = "0A000";
    snprintf(f->message, sizeof(f->message),
             "unsupported frontend protocol %u.%u: server supports 3.0 to 3.%u", f->code >> 16,
             f->code & 0xffff, WIRE_PROTOCOL_LATEST_MINOR);
}

/* Mirrors PostgreSQL's ProcessStartupPacket: the length is judged as soon as its four bytes are
 * there, the code once the whole packet is. */
wire_first wire_first_parse(const uint8_t *buf, size_t n)
{
    wire_first r;

    memset(&r, 0, sizeof(r));
    r.kind = WIRE_FIRST_NEED_MORE;
    if (n < 4)
        return r;
    r.len = wire_get_u32(buf);
    /* PostgreSQL bounds the packet without its length word: 4 to 10000 bytes. */
    if (r.len < 8 || r.len - 4 > WIRE_STARTUP_MAX)
        return first_bad(r, n >= 1 && buf[0] == 0x16
                                ? "invalid length of startup packet (a direct TLS handshake?)"
                                : "invalid length of startup packet");
    if (n < r.len)
        return r;
    r.code = wire_get_u32(buf + 4);
    switch (r.code) {
    case WIRE_CODE_SSL:
        r.kind = WIRE_FIRST_SSL;
        return r;
    case WIRE_CODE_GSSENC:
        r.kind = WIRE_FIRST_GSSENC;
        return r;
    case WIRE_CODE_CANCEL:
        r.kind = WIRE_FIRST_CANCEL;
        return r;
    default:
        if (r.code >> 16 != 3) {
            wire_first_unsupported(&r);
            return r;
        }
        r.kind = WIRE_FIRST_STARTUP;
        r.params_ok = startup_params_valid(buf + 8, r.len - 8);
        return r;
    }
}

const char *wire_startup_param(const uint8_t *pkt, size_t len, const char *key)
{
    const char *found = NULL;
    size_t pos = 8;

    /* A name given twice takes its last value, as PostgreSQL reads it. */
    while (pos < len && pkt[pos] != '\0') {
        const char *name = (const char *)pkt + pos;
        size_t name_len = strlen(name);
        const char *value = name + name_len + 1;
        if (strcmp(name, key) == 0)
            found = value;
        pos += name_len + 1 + strlen(value) + 1;
    }
    return found;
}
