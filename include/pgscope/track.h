/* track.h — per-connection protocol state that turns the messages passing through pgscope into
 * statement events. Pure: the proxy feeds it messages (type, captured body) with a clock
 * reading; it emits events through a callback. No I/O, no threads. */
#ifndef PGSCOPE_TRACK_H
#define PGSCOPE_TRACK_H

#include "pgscope/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    TRACK_EV_CONNECT,    /* startup seen: user, database, application_name, client address */
    TRACK_EV_STATEMENT,  /* one statement completed (or failed) */
    TRACK_EV_DISCONNECT, /* the connection ended: byte counts */
} track_ev_kind;

/* How a statement reached the server. */
#define TRACK_VIA_SIMPLE 'Q'   /* simple Query message (maybe one of several statements) */
#define TRACK_VIA_EXTENDED 'E' /* Execute of a portal bound from a prepared statement */
#define TRACK_VIA_FUNCTION 'F' /* FunctionCall message */

/* Result sampling, for proving N+1 loops: of each statement's result, the first rows (at most
 * TRACK_SAMPLE_ROWS rows, TRACK_SAMPLE_COLS columns and TRACK_SAMPLE_VALUES values in all) are
 * kept as value hashes, never as values. */
#define TRACK_SAMPLE_ROWS 1000
#define TRACK_SAMPLE_COLS 32
#define TRACK_SAMPLE_VALUES 8192
#define TRACK_HASH_PREFIX 256 /* bytes of a value that are hashed */

/* The hash of a value's bytes (a DataRow field, a bind parameter, a literal), over its first
 * TRACK_HASH_PREFIX bytes. Never 0: 0 stands for NULL. Result values in binary format hash
 * their binary bytes, so they only match binary parameters. */
uint32_t track_value_hash(const void *bytes, size_t len);

/* A result column, from RowDescription. */
typedef struct track_column {
    uint32_t table_oid; /* 0: not a plain table column */
    int16_t attnum;
    uint32_t type_oid;
    int16_t format; /* 0 text, 1 binary */
    char name[64];  /* cut to 63 bytes */
} track_column;

/* Parameter type OIDs kept per statement (a Parse declares up to 65535). */
#define TRACK_MAX_TYPES 256

/* The longest search_path (bytes) a CONNECT event carries; longer ones are dropped. */
#define TRACK_SEARCH_PATH_MAX 1024

/* One event; allocated by track, owned by whoever the emit callback hands it to, released with
 * track_event_free. Every string is NUL-terminated (may be empty, never NULL). The event and all
 * it points to are one allocation: never free or replace its pointers separately. */
typedef struct track_event {
    track_ev_kind kind;
    uint64_t conn_id;
    int64_t start_us; /* wall clock, microseconds since the Unix epoch */
    int64_t end_us;   /* equal to start_us for CONNECT and DISCONNECT */

    /* TRACK_EV_CONNECT (and application_name on every STATEMENT: it can change in a session) */
    char *user, *database, *application_name, *client_addr;
    /* TRACK_EV_CONNECT: the search_path the StartupMessage set, so that statements can be
     * replayed resolving names as they did. Read as PostgreSQL applies it: a `search_path`
     * parameter (name in any case; the last one) wins over the `options` parameter, in which the
     * last `-c search_path=V`, `-csearch_path=V` or `--search_path=V` counts (backslash escapes
     * undone; '-' may stand for '_' in the name). "" when the packet set none, set it to the
     * empty string, or set one longer than TRACK_SEARCH_PATH_MAX bytes: such a value is dropped,
     * not cut (a cut path would resolve names differently), and no earlier one stands in for it.
     * "" on every other event. */
    char *search_path;

    /* TRACK_EV_STATEMENT */
    char via;            /* TRACK_VIA_* */
    char *text;          /* the whole Query string, or the prepared statement's text */
    uint32_t text_len;   /* bytes in text (at most the text cap) */
    bool text_truncated; /* the real text was longer than the cap */
    uint32_t stmt_index; /* for TRACK_VIA_SIMPLE: which statement of text (0-based) */
    uint8_t *params;     /* encoded bind parameters, see track_param_next; NULL if none */
    uint32_t params_len;
    uint16_t n_params; /* parameters the Bind carried (even if not all were kept) */
    bool params_truncated;
    bool params_cut; /* a kept value was cut to max_param (its first bytes only) */
    /* The parameter type OIDs of the statement, for replaying its values as the server read
     * them: those the Parse declared (0: left to the server), each 0 replaced by the type the
     * server inferred when a ParameterDescription (the answer to the client's Describe of the
     * statement) was seen. Parameters past n_param_types are 0. NULL when none are known. */
    uint32_t *param_types;
    uint16_t n_param_types;
    bool param_types_cut;  /* the Parse declared more than TRACK_MAX_TYPES or they were not all
                            * captured: param_types is NULL and the declared types are unknown */
    char command[32];      /* command tag without counts: "SELECT", "INSERT", "COPY", ... */
    int64_t rows;          /* row count from the command tag; -1 when the tag has none */
    bool suspended;        /* Execute stopped at its row limit (PortalSuspended) */
    char sqlstate[6];      /* "" on success, else the ErrorResponse's code */
    char txn_status;       /* ReadyForQuery status that followed: 'I', 'T', 'E'; 0 if unknown */
    track_column *columns; /* of the result, at most TRACK_SAMPLE_COLS; NULL if none */
    uint16_t n_columns;    /* columns described (sampled: min(n_columns, TRACK_SAMPLE_COLS)) */
    uint32_t *values;      /* sample_rows x min(n_columns, TRACK_SAMPLE_COLS), row-major */
    uint32_t sample_rows;

    /* TRACK_EV_DISCONNECT */
    uint64_t bytes_from_client, bytes_from_server;
    uint64_t desyncs; /* times tracking lost its place in this connection's protocol */
} track_event;

void track_event_free(track_event *ev);

/* The memory an event holds, as the queue to the analysis thread counts it: a flat 128 bytes
 * stands for the short strings, the search_path (up to TRACK_SEARCH_PATH_MAX) is counted. */
static inline size_t track_event_bytes(const track_event *ev)
{
    size_t kept = ev->n_columns < TRACK_SAMPLE_COLS ? ev->n_columns : TRACK_SAMPLE_COLS;
    size_t search_path = ev->search_path ? strlen(ev->search_path) : 0;

    return sizeof(*ev) + ev->text_len + ev->params_len + 128 + search_path +
           (size_t)ev->n_param_types * sizeof(uint32_t) + kept * sizeof(track_column) +
           (size_t)ev->sample_rows * kept * sizeof(uint32_t);
}

/* Walks encoded parameters: *pos starts at 0. Sets *value, *len (-1 for NULL) and *binary
 * (format 1). Returns false after the last one (or at a malformed encoding). Values longer than
 * the per-value cap were cut to it (their len is the cut length).
 * Encoding, per parameter in Bind order: an unsigned LEB128 varint v (7 bits a byte, low bits
 * first, the high bit set on all but the last byte); v = 0 is NULL, otherwise
 * len = (v - 1) >> 1 and binary = (v - 1) & 1, and len value bytes follow. A value under 63
 * bytes costs one byte of header. Parameters are kept in order while they fit in max_params
 * bytes and were captured; the first that does not ends the list (params_truncated). */
bool track_param_next(const uint8_t *params, uint32_t params_len, uint32_t *pos,
                      const uint8_t **value, int32_t *len, bool *binary);

typedef struct track_limits {
    uint32_t max_text;     /* statement text kept per event (bytes); longer is cut */
    uint32_t max_param;    /* bytes kept of one parameter value */
    uint32_t max_params;   /* bytes of encoded parameters kept per event */
    uint32_t max_prepared; /* named prepared statements remembered per connection */
    uint32_t max_pending;  /* requests awaiting a response (pipeline depth) remembered */
} track_limits;

/* Defaults: 16 KiB text, 256 B per value, 4 KiB of parameters, 1000 statements, 1000 pending. */
void track_limits_default(track_limits *lim);

typedef void (*track_emit_fn)(track_event *ev, void *arg);

typedef struct track_conn track_conn;

/* New state for one connection; events go to emit (which takes ownership). */
track_conn *track_conn_new(uint64_t conn_id, const track_limits *lim, track_emit_fn emit,
                           void *arg);
/* Frees the state; statements still in flight are dropped. */
void track_conn_free(track_conn *c);

/* The connection has been quiet for a while: gives back the room kept for the next statement
 * (request queue, result sample, parameter encoding), reserved again when needed. A no-op
 * while a statement is in flight. */
void track_idle(track_conn *c);

/* The StartupMessage (whole packet, as wire_first_parse accepted it): emits TRACK_EV_CONNECT. */
void track_startup(track_conn *c, const uint8_t *pkt, size_t len, const char *client_addr,
                   int64_t now_us);

/* The end of the connection: emits TRACK_EV_DISCONNECT. */
void track_disconnect(track_conn *c, uint64_t bytes_from_client, uint64_t bytes_from_server,
                      int64_t now_us);

/* The framer's questions and answers (see wire_sink), per direction. want returns how many
 * leading body bytes track needs of that message (0: not interested); message is called once it
 * passed, with those bytes, at time now_us (set by the caller before feeding the framer, via
 * track_set_clock). */
uint32_t track_want(track_conn *c, wire_side side, uint8_t type, uint32_t body_len);
void track_message(track_conn *c, wire_side side, uint8_t type, const uint8_t *body,
                   uint32_t captured, uint32_t body_len);
void track_set_clock(track_conn *c, int64_t now_us);

/* Buffer size a sink for track needs: the largest capture it can ask for. */
uint32_t track_capture_size(const track_limits *lim);

/* Counters for the report: protocol states track could not follow (it then resynchronises at
 * the next ReadyForQuery), requests forgotten because the pipeline was deeper than max_pending. */
typedef struct track_counters {
    uint64_t desyncs;
    uint64_t pending_overflow;
} track_counters;
void track_get_counters(const track_conn *c, track_counters *out);

#endif
