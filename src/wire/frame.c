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
        f->deliver = want > 0;
        f->want = want < most ? want : most;
    }
}

static void end_message(wire_framer *f)
{
    if (f->deliver)
        f->sink->message(f->sink->arg, f->type, f->sink->buf, f->captured, f->body_len);
}

bool wire_framer_at_boundary(const wire_framer *f)
{
    return f->hdr_have == 0 && f->remaining == 0;
}

wire_error wire_framer_feed(wire_framer *f, const uint8_t *buf, size_t n, size_t *bad_at)
{
    size_t pos = 0;

    while (pos < n) {
        if (f->remaining > 0) {
            size_t take = n - pos < f->remaining ? n - pos : f->remaining;
            if (f->captured < f->want) {
                size_t c = f->want - f->captured < take ? f->want - f->captured : take;
                memcpy(f->sink->buf + f->captured, buf + pos, c);
                f->captured += (uint32_t)c;
            }
            f->remaining -= (uint32_t)take;
            pos += take;
            if (f->remaining == 0)
                end_message(f);
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
            if (bad_at)
                *bad_at = start > pos ? 0 : start;
            return err;
        }
        f->hdr_have = 0;
        f->messages++;
        begin_message(f, len);
        if (f->remaining == 0)
            end_message(f);
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

static wire_first first_bad(wire_first r, const char *sqlstate, const char *msg)
{
    r.kind = WIRE_FIRST_BAD;
    r.sqlstate = sqlstate;
    snprintf(r.message, sizeof(r.message), "%s", msg);
    return r;
}

wire_first wire_first_parse(const uint8_t *buf, size_t n)
{
    wire_first r;

    memset(&r, 0, sizeof(r));
    r.kind = WIRE_FIRST_NEED_MORE;
    if (n >= 1 && buf[0] == 0x16)
        return first_bad(r, "08P01", "direct TLS negotiation is not supported: use an SSLRequest");
    if (n < 8)
        return r;
    r.len = wire_get_u32(buf);
    /* PostgreSQL bounds the packet without its length word: up to 10004 bytes in all. */
    if (r.len < 8 || r.len - 4 > WIRE_STARTUP_MAX)
        return first_bad(r, "08P01", "invalid length of startup packet");
    if (n < r.len)
        return r;
    r.code = wire_get_u32(buf + 4);
    switch (r.code) {
    case WIRE_CODE_SSL:
        r.kind = r.len == 8 ? WIRE_FIRST_SSL : WIRE_FIRST_BAD;
        break;
    case WIRE_CODE_GSSENC:
        r.kind = r.len == 8 ? WIRE_FIRST_GSSENC : WIRE_FIRST_BAD;
        break;
    case WIRE_CODE_CANCEL:
        if (r.len < 12 + WIRE_CANCEL_KEY_MIN || r.len > 12 + WIRE_CANCEL_KEY_MAX)
            return first_bad(r, "08P01", "invalid length of cancel request packet");
        r.kind = WIRE_FIRST_CANCEL;
        return r;
    default:
        if (r.code >> 16 < 3) {
            snprintf(r.message, sizeof(r.message),
                     "unsupported frontend protocol %u.%u: pgscope supports 3.0 and later",
                     r.code >> 16, r.code & 0xffff);
            r.kind = WIRE_FIRST_BAD;
            r.sqlstate = "0A000";
            return r;
        }
        if (!startup_params_valid(buf + 8, r.len - 8))
            return first_bad(r, "08P01", "invalid startup packet layout: expected terminator");
        r.kind = WIRE_FIRST_STARTUP;
        return r;
    }
    if (r.kind == WIRE_FIRST_BAD)
        return first_bad(r, "08P01", "invalid length of encryption request packet");
    return r;
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
