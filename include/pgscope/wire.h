/* wire.h — the PostgreSQL v3 protocol as pure functions: framing, decoding, encoding. No I/O. */
#ifndef PGSCOPE_WIRE_H
#define PGSCOPE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, as the PostgreSQL 15 server enforces them (postgres.c, postmaster.c). */
#define WIRE_HEADER_LEN 5              /* type byte + int32 length */
#define WIRE_STARTUP_MAX 10000         /* MAX_STARTUP_PACKET_LENGTH, length word excluded */
#define WIRE_SMALL_MSG_MAX 10000       /* PQ_SMALL_MESSAGE_LIMIT */
#define WIRE_LARGE_MSG_MAX 0x3ffffffeU /* PQ_LARGE_MESSAGE_LIMIT: MaxAllocSize - 1 */
#define WIRE_AUTH_MSG_MAX 262144       /* messages before AuthenticationOk are small */

/* Codes carried in place of a protocol version by the first, untyped packet. */
#define WIRE_CODE_CANCEL 80877102u
#define WIRE_CODE_SSL 80877103u
#define WIRE_CODE_GSSENC 80877104u

/* Which peer wrote the bytes being framed. */
typedef enum { WIRE_FROM_CLIENT, WIRE_FROM_SERVER } wire_side;

typedef enum {
    WIRE_OK = 0,
    WIRE_ERR_SHORT_LENGTH, /* a length field below its own four bytes */
    WIRE_ERR_LONG_LENGTH,  /* a length above the limit for that message type */
    WIRE_ERR_UNKNOWN_TYPE, /* a message type the frontend protocol does not have */
    WIRE_TERMINATED,       /* not an error: the client's Terminate ended its stream */
} wire_error;

const char *wire_error_str(wire_error err);

/* ---- the first packet of a connection: int32 length, int32 code, payload ---- */

typedef enum {
    WIRE_FIRST_NEED_MORE,   /* not all of it has arrived yet */
    WIRE_FIRST_SSL,         /* SSLRequest (of any length: PostgreSQL reads only the code) */
    WIRE_FIRST_GSSENC,      /* GSSENCRequest (likewise) */
    WIRE_FIRST_CANCEL,      /* CancelRequest: forwarded as it is, the server judges it */
    WIRE_FIRST_STARTUP,     /* StartupMessage of protocol 3: forwarded as it is */
    WIRE_FIRST_UNSUPPORTED, /* another protocol version: refused with sqlstate and message */
    WIRE_FIRST_BAD,         /* an invalid length: PostgreSQL closes without a word; see message */
} wire_first_kind;

/* The newest minor version of protocol 3 pgscope names when it refuses another protocol, as
 * PostgreSQL 14 to 17 do ("server supports 3.0 to 3.0"). */
#define WIRE_PROTOCOL_LATEST_MINOR 0

typedef struct {
    wire_first_kind kind;
    uint32_t len;         /* whole packet length, once known */
    uint32_t code;        /* protocol version or request code */
    bool params_ok;       /* STARTUP: the parameter list is well formed (else the server says so) */
    const char *sqlstate; /* UNSUPPORTED: the SQLSTATE to report */
    char message[128];    /* UNSUPPORTED: the server's text; BAD: why, for the log */
} wire_first;

/* Classifies the first packet from the n bytes at buf as PostgreSQL does. An invalid length is
 * known from the first four bytes; otherwise the kind is WIRE_FIRST_NEED_MORE until the whole
 * packet is there (len then tells how many bytes it needs). */
wire_first wire_first_parse(const uint8_t *buf, size_t n);

/* Turns f into the refusal PostgreSQL sends for f->code taken as a protocol version (what it does
 * with an SSLRequest or GSSENCRequest that comes once that negotiation is over). */
void wire_first_unsupported(wire_first *f);

/* The value of a StartupMessage parameter, pointing into pkt, or NULL. pkt must have passed
 * wire_first_parse as WIRE_FIRST_STARTUP with params_ok. */
const char *wire_startup_param(const uint8_t *pkt, size_t len, const char *key);

/* ---- streaming framing of the regular message flow ---- */

/* Where a framer hands the messages someone wants to look at. For each message it asks `want`:
 * 0 skips the message; any other value has it delivered to `message` once it has wholly passed,
 * with up to that many of its leading body bytes (never more than cap) and its full body length.
 * The bytes are captured into room the sink's owner gives for each message (`reserve`, at least
 * n bytes; NULL, out of memory, skips the message), so that an idle connection need hold none.
 * Nothing else is held. */
typedef struct wire_sink {
    uint32_t (*want)(void *arg, uint8_t type, uint32_t body_len);
    void (*message)(void *arg, uint8_t type, const uint8_t *body, uint32_t captured,
                    uint32_t body_len);
    uint8_t *(*reserve)(void *arg, uint32_t n);
    void *arg;
    uint32_t cap; /* the most any message may capture */
} wire_sink;

/* Follows message boundaries in one direction without holding any message: it keeps only the
 * (at most five) header bytes of the message being started, the body bytes still due, and what
 * the sink asked to capture. */
typedef struct {
    wire_side side;
    uint8_t hdr[WIRE_HEADER_LEN];
    uint8_t hdr_have;   /* header bytes of the current message seen so far */
    uint8_t type;       /* type of the message whose body is passing */
    uint32_t remaining; /* body bytes of that message still to come */
    uint32_t body_len;  /* its whole body length */
    uint32_t want;      /* body bytes the sink asked to capture of it */
    uint32_t captured;  /* of which captured so far */
    bool deliver;       /* the sink wants this message */
    uint8_t *capture;   /* where its bytes go: room the sink reserved for it */
    uint64_t messages;  /* messages whose header was complete and valid */
    bool terminated;    /* a client's Terminate has passed: nothing after it is framed */
    const wire_sink *sink;
} wire_framer;

void wire_framer_init(wire_framer *f, wire_side side);
/* Sends every later message of this stream to sink (NULL: none). */
void wire_framer_set_sink(wire_framer *f, const wire_sink *sink);

/* Feeds n bytes. Returns WIRE_OK when all were framed. Otherwise *stop_at tells how many bytes of
 * this chunk were: WIRE_TERMINATED when the client's Terminate ends there (the bytes after it are
 * never for the server), or the error found in the header that starts there. */
wire_error wire_framer_feed(wire_framer *f, const uint8_t *buf, size_t n, size_t *stop_at);

/* True when the stream is between two messages, where a message of our own may be inserted. */
bool wire_framer_at_boundary(const wire_framer *f);

/* Checks a message header: type and int32 length (which counts itself, not the type byte). */
wire_error wire_check_header(wire_side side, uint8_t type, uint32_t len);

/* Reads the big-endian int32 at p. */
uint32_t wire_get_u32(const uint8_t *p);

/* ---- authentication messages (server to client) ---- */

#define WIRE_AUTH_OK 0
#define WIRE_AUTH_SASL 10

/* The authentication code of a whole 'R' message, or -1 if msg is not one. */
int wire_auth_code(const uint8_t *msg, size_t len);

/* Rewrites a whole AuthenticationSASL message without the SCRAM-SHA-256-PLUS mechanism into out
 * (cap bytes; at most len needed). Returns the new length, or 0 when msg is not a well-formed
 * AuthenticationSASL message or does not offer that mechanism. */
size_t wire_sasl_without_plus(const uint8_t *msg, size_t len, uint8_t *out, size_t cap);

/* ---- messages pgscope writes itself ---- */

/* Encodes an ErrorResponse (severity S and V, code C, message M, optional detail D and hint H)
 * into out. Returns the length it needs; nothing is written beyond cap, and when the result is
 * above cap the caller must retry with a larger buffer. */
size_t wire_error_response(uint8_t *out, size_t cap, const char *severity, const char *sqlstate,
                           const char *message, const char *detail, const char *hint);

/* Encodes the protocol 2 form of an error ('E', then the text and a NUL), which is all a client
 * speaking protocol 2 can read. Returns the length it needs, like wire_error_response. */
size_t wire_error_v2(uint8_t *out, size_t cap, const char *message);

/* ---- bind parameter values, for people (src/wire/value.c) ---- */

/* The name of a built-in type ("int4", "timestamptz"...), NULL when not one of those known. */
const char *wire_type_name(uint32_t type_oid);

/* A bind parameter's value as text: a value in text format as it is (len bytes); one in binary
 * format, when of a type read here (bool, int2/4/8, oid, float4/8, numeric, text, varchar,
 * bpchar, name, json, jsonb, uuid, date, time, timestamp, timestamptz, bytea), as PostgreSQL's
 * output function prints it (timestamptz in UTC; bytea as \x hex); any other binary value, or
 * one whose bytes are not a valid value of its type, as \x hex followed by its type in
 * parentheses: "\x0a000001 (inet)", "\x01 (type 16385)", "\x01 (type unknown)" for type 0.
 * Malloc'd, NUL-terminated; NULL when out of memory. */
char *wire_value_text(uint32_t type_oid, const uint8_t *v, size_t len, bool binary);

#endif
