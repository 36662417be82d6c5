/* Unit tests for the track module: protocol conversations through the framer into events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/track.h"
#include "pgscope/wire.h"

/* ---- building byte streams ---- */

#define MAX_MARKS 256

/* Bytes under construction; marks[] records where each completion message (CommandComplete,
 * EmptyQueryResponse, ErrorResponse, PortalSuspended, FunctionCallResponse) ends. */
typedef struct {
    uint8_t *b;
    size_t n, cap;
    size_t open;
    size_t marks[MAX_MARKS];
    size_t nmarks;
} bytes;

static void b_need(bytes *s, size_t more)
{
    if (s->n + more <= s->cap)
        return;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < s->n + more)
        cap *= 2;
    s->b = realloc(s->b, cap);
    assert_non_null(s->b);
    s->cap = cap;
}

static void b_free(bytes *s)
{
    free(s->b);
    memset(s, 0, sizeof(*s));
}

static void b_u8(bytes *s, uint8_t v)
{
    b_need(s, 1);
    s->b[s->n++] = v;
}

static void b_u16(bytes *s, uint16_t v)
{
    b_u8(s, (uint8_t)(v >> 8));
    b_u8(s, (uint8_t)v);
}

static void b_u32(bytes *s, uint32_t v)
{
    b_u16(s, (uint16_t)(v >> 16));
    b_u16(s, (uint16_t)v);
}

static void b_mem(bytes *s, const void *p, size_t n)
{
    b_need(s, n);
    if (n > 0)
        memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void b_str(bytes *s, const char *str)
{
    b_mem(s, str, strlen(str) + 1);
}

static void m_begin(bytes *s, uint8_t type)
{
    s->open = s->n;
    b_u8(s, type);
    b_u32(s, 0);
}

static void m_end(bytes *s)
{
    uint32_t len = (uint32_t)(s->n - s->open - 1);
    uint8_t type = s->b[s->open];

    s->b[s->open + 1] = (uint8_t)(len >> 24);
    s->b[s->open + 2] = (uint8_t)(len >> 16);
    s->b[s->open + 3] = (uint8_t)(len >> 8);
    s->b[s->open + 4] = (uint8_t)len;
    if (strchr("CIEsV", type) && s->nmarks < MAX_MARKS)
        s->marks[s->nmarks++] = s->n;
}

static void m_empty(bytes *s, uint8_t type)
{
    m_begin(s, type);
    m_end(s);
}

/* A message with an arbitrary body. */
static void m_raw(bytes *s, uint8_t type, const void *body, size_t n)
{
    m_begin(s, type);
    b_mem(s, body, n);
    m_end(s);
}

/* ---- client messages ---- */

static void c_query(bytes *s, const char *sql)
{
    m_begin(s, 'Q');
    b_str(s, sql);
    m_end(s);
}

static void c_parse(bytes *s, const char *name, const char *sql)
{
    m_begin(s, 'P');
    b_str(s, name);
    b_str(s, sql);
    b_u16(s, 1);
    b_u32(s, 0); /* one parameter, type left to the server */
    m_end(s);
}

typedef struct {
    const void *data; /* NULL: SQL NULL */
    uint32_t len;
    uint16_t format;
} pval;

/* A Bind asking for all results in result_format. */
static void c_bind_rf(bytes *s, const char *portal, const char *stmt, const pval *v, uint16_t n,
                      uint16_t result_format)
{
    bool any_binary = false;

    for (uint16_t i = 0; i < n; i++)
        any_binary |= v[i].format != 0;
    m_begin(s, 'B');
    b_str(s, portal);
    b_str(s, stmt);
    if (any_binary) {
        b_u16(s, n);
        for (uint16_t i = 0; i < n; i++)
            b_u16(s, v[i].format);
    } else {
        b_u16(s, 0);
    }
    b_u16(s, n);
    for (uint16_t i = 0; i < n; i++) {
        if (!v[i].data) {
            b_u32(s, 0xffffffffu);
            continue;
        }
        b_u32(s, v[i].len);
        b_mem(s, v[i].data, v[i].len);
    }
    b_u16(s, 1);
    b_u16(s, result_format);
    m_end(s);
}

static void c_bind(bytes *s, const char *portal, const char *stmt, const pval *v, uint16_t n)
{
    c_bind_rf(s, portal, stmt, v, n, 0);
}

/* Bind of the unnamed portal with one text parameter (NULL: none). */
static void c_bind1(bytes *s, const char *stmt, const char *value)
{
    pval v = {value, value ? (uint32_t)strlen(value) : 0, 0};
    c_bind(s, "", stmt, &v, value ? 1 : 0);
}

static void c_describe(bytes *s, char kind, const char *name)
{
    m_begin(s, 'D');
    b_u8(s, (uint8_t)kind);
    b_str(s, name);
    m_end(s);
}

static void c_execute(bytes *s, const char *portal, uint32_t max_rows)
{
    m_begin(s, 'E');
    b_str(s, portal);
    b_u32(s, max_rows);
    m_end(s);
}

static void c_close(bytes *s, char kind, const char *name)
{
    m_begin(s, 'C');
    b_u8(s, (uint8_t)kind);
    b_str(s, name);
    m_end(s);
}

static void c_sync(bytes *s)
{
    m_empty(s, 'S');
}

static void c_flush(bytes *s)
{
    m_empty(s, 'H');
}

static void c_function_call(bytes *s, uint32_t oid)
{
    m_begin(s, 'F');
    b_u32(s, oid);
    b_u16(s, 0);
    b_u16(s, 1);
    b_u32(s, 2);
    b_mem(s, "42", 2);
    b_u16(s, 0);
    m_end(s);
}

static void c_copy_data(bytes *s, const char *data)
{
    m_raw(s, 'd', data, strlen(data));
}

/* libpq's PQexecParams: Parse, Bind, Describe portal, Execute, Sync. */
static void c_exec_params(bytes *s, const char *stmt_name, const char *sql, const char *value)
{
    if (sql)
        c_parse(s, stmt_name, sql);
    c_bind1(s, stmt_name, value);
    c_describe(s, 'P', "");
    c_execute(s, "", 0);
    c_sync(s);
}

/* ---- server messages ---- */

static void s_row_description(bytes *s)
{
    m_begin(s, 'T');
    b_u16(s, 1);
    b_str(s, "col");
    b_u32(s, 0);
    b_u16(s, 0);
    b_u32(s, 23);
    b_u16(s, 4);
    b_u32(s, 0xffffffffu);
    b_u16(s, 0);
    m_end(s);
}

typedef struct {
    const char *name;
    uint32_t table_oid;
    int16_t attnum;
    uint32_t type_oid;
    int16_t format;
} coldef;

static void s_row_desc(bytes *s, const coldef *cols, uint16_t n)
{
    m_begin(s, 'T');
    b_u16(s, n);
    for (uint16_t i = 0; i < n; i++) {
        b_str(s, cols[i].name);
        b_u32(s, cols[i].table_oid);
        b_u16(s, (uint16_t)cols[i].attnum);
        b_u32(s, cols[i].type_oid);
        b_u16(s, 0xffff); /* typlen -1 */
        b_u32(s, 0xffffffffu);
        b_u16(s, (uint16_t)cols[i].format);
    }
    m_end(s);
}

/* A DataRow of n values (data NULL: SQL NULL). */
static void s_row(bytes *s, const pval *v, uint16_t n)
{
    m_begin(s, 'D');
    b_u16(s, n);
    for (uint16_t i = 0; i < n; i++) {
        if (!v[i].data) {
            b_u32(s, 0xffffffffu);
            continue;
        }
        b_u32(s, v[i].len);
        b_mem(s, v[i].data, v[i].len);
    }
    m_end(s);
}

static void s_parameter_description(bytes *s)
{
    m_begin(s, 't');
    b_u16(s, 1);
    b_u32(s, 23);
    m_end(s);
}

static void s_data_row(bytes *s, const char *value)
{
    m_begin(s, 'D');
    b_u16(s, 1);
    b_u32(s, (uint32_t)strlen(value));
    b_mem(s, value, strlen(value));
    m_end(s);
}

static void s_complete(bytes *s, const char *tag)
{
    m_begin(s, 'C');
    b_str(s, tag);
    m_end(s);
}

static void s_error_sev(bytes *s, const char *severity, const char *code, const char *msg)
{
    m_begin(s, 'E');
    b_u8(s, 'S');
    b_str(s, severity);
    b_u8(s, 'V');
    b_str(s, severity);
    b_u8(s, 'C');
    b_str(s, code);
    b_u8(s, 'M');
    b_str(s, msg);
    b_u8(s, 0);
    m_end(s);
}

static void s_error(bytes *s, const char *code)
{
    s_error_sev(s, "ERROR", code, "something went wrong");
}

static void s_notice(bytes *s)
{
    m_begin(s, 'N');
    b_u8(s, 'S');
    b_str(s, "NOTICE");
    b_u8(s, 'C');
    b_str(s, "00000");
    b_u8(s, 0);
    m_end(s);
}

static void s_notification(bytes *s)
{
    m_begin(s, 'A');
    b_u32(s, 4242);
    b_str(s, "chan");
    b_str(s, "payload");
    m_end(s);
}

static void s_parameter_status(bytes *s, const char *name, const char *value)
{
    m_begin(s, 'S');
    b_str(s, name);
    b_str(s, value);
    m_end(s);
}

static void s_ready(bytes *s, char status)
{
    m_begin(s, 'Z');
    b_u8(s, (uint8_t)status);
    m_end(s);
}

static void s_copy_response(bytes *s, uint8_t type)
{
    m_begin(s, type);
    b_u8(s, 0);
    b_u16(s, 1);
    b_u16(s, 0);
    m_end(s);
}

static void s_function_result(bytes *s, const char *value)
{
    m_begin(s, 'V');
    b_u32(s, (uint32_t)strlen(value));
    b_mem(s, value, strlen(value));
    m_end(s);
}

/* The answer to c_exec_params for a query returning one row. */
static void s_exec_params_one_row(bytes *s, bool parsed, const char *tag)
{
    if (parsed)
        m_empty(s, '1');
    m_empty(s, '2');
    s_row_description(s);
    s_data_row(s, "1");
    s_complete(s, tag);
    s_ready(s, 'I');
}

/* ---- a connection as the proxy drives it ---- */

typedef struct {
    track_conn *c;
    wire_side side;
    uint64_t rows_wanted;    /* DataRows track asked to capture */
    uint64_t rows_delivered; /* DataRows handed to track_message */
    uint8_t *buf;            /* capture room: the whole cap, given to every message */
} side_ref;

typedef struct {
    track_limits lim;
    track_conn *c;
    side_ref cref, sref;
    wire_sink csink, ssink;
    wire_framer cf, sf;
    uint8_t *cbuf, *sbuf;
    track_event **ev;
    size_t nev, evcap;
} fixture;

static uint32_t sink_want(void *arg, uint8_t type, uint32_t body_len)
{
    side_ref *r = arg;
    uint32_t want = track_want(r->c, r->side, type, body_len);

    if (r->side == WIRE_FROM_SERVER && type == 'D' && want > 0)
        r->rows_wanted++;
    return want;
}

static void sink_message(void *arg, uint8_t type, const uint8_t *body, uint32_t captured,
                         uint32_t body_len)
{
    side_ref *r = arg;

    if (r->side == WIRE_FROM_SERVER && type == 'D')
        r->rows_delivered++;
    track_message(r->c, r->side, type, body, captured, body_len);
}

static uint8_t *sink_reserve(void *arg, uint32_t n)
{
    side_ref *r = arg;

    (void)n; /* never above the sink's cap, which buf holds */
    return r->buf;
}

static void collect(track_event *ev, void *arg)
{
    fixture *fx = arg;

    if (fx->nev == fx->evcap) {
        fx->evcap = fx->evcap ? fx->evcap * 2 : 16;
        fx->ev = realloc(fx->ev, fx->evcap * sizeof(*fx->ev));
        assert_non_null(fx->ev);
    }
    fx->ev[fx->nev++] = ev;
}

static void sink_init(fixture *fx, wire_sink *sink, side_ref *ref, wire_side side, uint8_t **buf)
{
    uint32_t cap = track_capture_size(&fx->lim);

    ref->c = fx->c;
    ref->side = side;
    *buf = malloc(cap);
    assert_non_null(*buf);
    sink->want = sink_want;
    sink->message = sink_message;
    sink->arg = ref;
    ref->buf = *buf;
    sink->reserve = sink_reserve;
    sink->cap = cap;
}

static fixture *fx_new_with(const track_limits *lim)
{
    fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->lim = *lim;
    fx->c = track_conn_new(7, lim, collect, fx);
    assert_non_null(fx->c);
    sink_init(fx, &fx->csink, &fx->cref, WIRE_FROM_CLIENT, &fx->cbuf);
    sink_init(fx, &fx->ssink, &fx->sref, WIRE_FROM_SERVER, &fx->sbuf);
    wire_framer_init(&fx->cf, WIRE_FROM_CLIENT);
    wire_framer_init(&fx->sf, WIRE_FROM_SERVER);
    wire_framer_set_sink(&fx->cf, &fx->csink);
    wire_framer_set_sink(&fx->sf, &fx->ssink);
    return fx;
}

static fixture *fx_new(void)
{
    track_limits lim;

    track_limits_default(&lim);
    return fx_new_with(&lim);
}

static void fx_drop_events(fixture *fx)
{
    for (size_t i = 0; i < fx->nev; i++)
        track_event_free(fx->ev[i]);
    fx->nev = 0;
}

static void fx_free(fixture *fx)
{
    track_conn_free(fx->c);
    fx_drop_events(fx);
    free(fx->ev);
    free(fx->cbuf);
    free(fx->sbuf);
    free(fx);
}

static void feed_range(fixture *fx, wire_side side, int64_t now, const uint8_t *p, size_t n)
{
    size_t stop_at = 0;

    track_set_clock(fx->c, now);
    wire_framer *f = side == WIRE_FROM_CLIENT ? &fx->cf : &fx->sf;
    wire_error err = wire_framer_feed(f, p, n, &stop_at);
    /* the proxy passes nothing after a Terminate; a conversation may end with one */
    assert_true(err == WIRE_OK || (err == WIRE_TERMINATED && f->terminated));
}

/* Sends what s holds from one side at time now, and empties s for the next part. */
static void feed_all(fixture *fx, wire_side side, int64_t now, bytes *s)
{
    feed_range(fx, side, now, s->b, s->n);
    b_free(s);
}

static void client(fixture *fx, int64_t now, bytes *s)
{
    feed_all(fx, WIRE_FROM_CLIENT, now, s);
}

static void server(fixture *fx, int64_t now, bytes *s)
{
    feed_all(fx, WIRE_FROM_SERVER, now, s);
}

static track_event *ev_at(const fixture *fx, size_t i)
{
    assert_true(i < fx->nev);
    return fx->ev[i];
}

static uint64_t desyncs(const fixture *fx)
{
    track_counters k;

    track_get_counters(fx->c, &k);
    return k.desyncs;
}

static uint64_t overflows(const fixture *fx)
{
    track_counters k;

    track_get_counters(fx->c, &k);
    return k.pending_overflow;
}

static void assert_statement(const track_event *ev, char via, const char *text, uint32_t index,
                             const char *command, int64_t rows, const char *sqlstate,
                             char txn_status)
{
    assert_int_equal(ev->kind, TRACK_EV_STATEMENT);
    assert_int_equal(ev->conn_id, 7);
    assert_int_equal(ev->via, via);
    assert_string_equal(ev->text, text);
    assert_int_equal(ev->text_len, strlen(text));
    assert_int_equal(ev->stmt_index, index);
    assert_string_equal(ev->command, command);
    assert_int_equal(ev->rows, rows);
    assert_string_equal(ev->sqlstate, sqlstate);
    assert_int_equal(ev->txn_status, txn_status);
}

static void assert_times(const track_event *ev, int64_t start, int64_t end)
{
    assert_int_equal(ev->start_us, start);
    assert_int_equal(ev->end_us, end);
}

/* A plain round trip on a connection that is in step: exactly one new, correct event. */
static void assert_in_step(fixture *fx, int64_t now)
{
    bytes s = {0};
    size_t before = fx->nev;

    c_query(&s, "SELECT 'in step'");
    client(fx, now, &s);
    s_row_description(&s);
    s_data_row(&s, "in step");
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, now + 10, &s);
    assert_int_equal(fx->nev, before + 1);
    assert_statement(ev_at(fx, before), 'Q', "SELECT 'in step'", 0, "SELECT", 1, "", 'I');
    assert_times(ev_at(fx, before), now, now + 10);
}

static void parse_named(fixture *fx, int64_t now, const char *name, const char *sql)
{
    bytes s = {0};

    c_parse(&s, name, sql);
    c_sync(&s);
    client(fx, now, &s);
    m_empty(&s, '1');
    s_ready(&s, 'I');
    server(fx, now + 10, &s);
}

/* Executes the named statement; returns how many events that made. */
static size_t run_named(fixture *fx, int64_t now, const char *name)
{
    bytes s = {0};
    size_t before = fx->nev;

    c_bind1(&s, name, NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, now, &s);
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, now + 10, &s);
    return fx->nev - before;
}

/* ---- simple query protocol ---- */

static void test_simple_query_single(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "SELECT 1");
    client(fx, 1000, &s);
    s_row_description(&s);
    s_data_row(&s, "1");
    s_complete(&s, "SELECT 1");
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 0); /* held until ReadyForQuery tells the transaction status */
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'Q', "SELECT 1", 0, "SELECT", 1, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 2000);
    assert_null(ev_at(fx, 0)->params);
    assert_false(ev_at(fx, 0)->text_truncated);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_simple_query_multi_statement(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql =
        "INSERT INTO t VALUES (1), (2), (3); UPDATE t SET a = a + 1 WHERE a > 1; SELECT * FROM t";

    c_query(&s, sql);
    client(fx, 1000, &s);
    s_complete(&s, "INSERT 0 3");
    server(fx, 2000, &s);
    s_notice(&s); /* asynchronous messages do not disturb the matching */
    s_complete(&s, "UPDATE 2");
    server(fx, 3000, &s);
    s_row_description(&s);
    s_data_row(&s, "1");
    s_data_row(&s, "3");
    s_data_row(&s, "4");
    s_complete(&s, "SELECT 3");
    server(fx, 4000, &s);
    s_ready(&s, 'I');
    server(fx, 4100, &s);
    assert_int_equal(fx->nev, 3);
    assert_statement(ev_at(fx, 0), 'Q', sql, 0, "INSERT", 3, "", 'I');
    assert_statement(ev_at(fx, 1), 'Q', sql, 1, "UPDATE", 2, "", 'I');
    assert_statement(ev_at(fx, 2), 'Q', sql, 2, "SELECT", 3, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 2000);
    assert_times(ev_at(fx, 1), 2000, 3000);
    assert_times(ev_at(fx, 2), 3000, 4000);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_command_tags(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    static const struct {
        const char *tag, *command;
        int64_t rows;
    } tags[] = {
        {"DELETE 1", "DELETE", 1},
        {"COPY 100", "COPY", 100},
        {"MOVE 1", "MOVE", 1},
        {"FETCH 4", "FETCH", 4},
        {"MERGE 2", "MERGE", 2},
        {"CREATE TABLE", "CREATE TABLE", -1},
        {"BEGIN", "BEGIN", -1},
        {"INSERT 0 0", "INSERT", 0},
        {"SELECT 12345678901", "SELECT", 12345678901LL},
        {"CREATE MATERIALIZED VIEW", "CREATE MATERIALIZED VIEW", -1},
    };
    size_t n = sizeof(tags) / sizeof(tags[0]);

    c_query(&s, "many");
    client(fx, 1000, &s);
    for (size_t i = 0; i < n; i++)
        s_complete(&s, tags[i].tag);
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ev_at(fx, i)->command, tags[i].command);
        assert_int_equal(ev_at(fx, i)->rows, tags[i].rows);
        assert_int_equal(ev_at(fx, i)->stmt_index, i);
    }
    fx_free(fx);
}

static void test_simple_query_error_midway(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql = "SELECT 1; SELECT 1/0; SELECT 3";

    c_query(&s, sql);
    client(fx, 1000, &s);
    s_row_description(&s);
    s_data_row(&s, "1");
    s_complete(&s, "SELECT 1");
    server(fx, 2000, &s);
    s_row_description(&s);
    s_error(&s, "22012");
    server(fx, 3000, &s);
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_int_equal(fx->nev, 2);
    assert_statement(ev_at(fx, 0), 'Q', sql, 0, "SELECT", 1, "", 'I');
    assert_statement(ev_at(fx, 1), 'Q', sql, 1, "", -1, "22012", 'I');
    assert_times(ev_at(fx, 1), 2000, 3000);
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 5000);
    fx_free(fx);
}

static void test_empty_query(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "");
    client(fx, 1000, &s);
    m_empty(&s, 'I');
    s_ready(&s, 'I');
    server(fx, 1500, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'Q', "", 0, "", -1, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 1500);
    fx_free(fx);
}

/* A client that sends its next Query before the first is answered. */
static void test_pipelined_simple_queries(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "SELECT 1");
    c_query(&s, "SELECT 2");
    client(fx, 1000, &s);
    s_complete(&s, "SELECT 1");
    server(fx, 2000, &s);
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    s_complete(&s, "SELECT 1");
    server(fx, 3000, &s);
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_int_equal(fx->nev, 2);
    assert_times(ev_at(fx, 0), 1000, 2000);
    assert_times(ev_at(fx, 1), 2100, 3000); /* started when the first request completed */
    assert_string_equal(ev_at(fx, 1)->text, "SELECT 2");
    fx_free(fx);
}

/* ---- extended query protocol ---- */

static void assert_one_param(const track_event *ev, const char *value)
{
    uint32_t pos = 0;
    const uint8_t *v;
    int32_t len;
    bool binary;

    assert_int_equal(ev->n_params, 1);
    assert_false(ev->params_truncated);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &v, &len, &binary));
    assert_int_equal(len, strlen(value));
    assert_memory_equal(v, value, strlen(value));
    assert_false(binary);
    assert_false(track_param_next(ev->params, ev->params_len, &pos, &v, &len, &binary));
}

static void test_extended_unnamed(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_exec_params(&s, "", "SELECT $1::int", "42");
    client(fx, 1000, &s);
    m_empty(&s, '1');
    server(fx, 2000, &s);
    m_empty(&s, '2');
    server(fx, 2100, &s);
    s_row_description(&s);
    server(fx, 2200, &s);
    s_data_row(&s, "42");
    s_complete(&s, "SELECT 1");
    server(fx, 2300, &s);
    s_ready(&s, 'I');
    server(fx, 2400, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'E', "SELECT $1::int", 0, "SELECT", 1, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 2300); /* Parse, Bind and Describe answers do not move it */
    assert_one_param(ev_at(fx, 0), "42");
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_named_statement_reused(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql = "SELECT * FROM users WHERE id = $1";
    char value[16];

    c_parse(&s, "s1", sql);
    c_describe(&s, 'S', "s1");
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    s_parameter_description(&s);
    s_row_description(&s);
    s_ready(&s, 'I');
    server(fx, 1100, &s);
    assert_int_equal(fx->nev, 0);
    for (int i = 0; i < 20; i++) {
        int64_t t = 2000 + i * 1000;
        snprintf(value, sizeof(value), "%d", i);
        c_exec_params(&s, "s1", NULL, value);
        client(fx, t, &s);
        s_exec_params_one_row(&s, false, "SELECT 1");
        server(fx, t + 100, &s);
        assert_int_equal(fx->nev, (size_t)i + 1);
        assert_statement(ev_at(fx, i), 'E', sql, 0, "SELECT", 1, "", 'I');
        assert_one_param(ev_at(fx, i), value);
        assert_times(ev_at(fx, i), t, t + 100);
    }
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* Three Parse/Bind/Execute/Sync groups sent before any response. */
static void test_pipeline_three_groups(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql[3] = {"SELECT 'g1'", "SELECT 'g2'", "SELECT 'g3'"};

    for (int g = 0; g < 3; g++) {
        c_parse(&s, "", sql[g]);
        c_bind1(&s, "", NULL);
        c_execute(&s, "", 0);
        c_sync(&s);
    }
    client(fx, 1000, &s);
    for (int g = 0; g < 3; g++) {
        int64_t t = 2000 + g * 200;
        m_empty(&s, '1');
        server(fx, t, &s);
        m_empty(&s, '2');
        server(fx, t + 10, &s);
        s_data_row(&s, "x");
        s_notification(&s);
        s_complete(&s, "SELECT 1");
        server(fx, t + 100, &s);
        s_parameter_status(&s, "TimeZone", "UTC");
        s_ready(&s, 'I');
        server(fx, t + 110, &s);
    }
    assert_int_equal(fx->nev, 3);
    for (int g = 0; g < 3; g++) {
        assert_statement(ev_at(fx, g), 'E', sql[g], 0, "SELECT", 1, "", 'I');
        /* The first starts when sent; each later one when the group before it was done. */
        assert_times(ev_at(fx, g), g == 0 ? 1000 : 2110 + (g - 1) * 200, 2100 + g * 200);
        assert_int_equal(ev_at(fx, g)->n_params, 0);
        assert_null(ev_at(fx, g)->params);
    }

    /* An Execute sent after the previous request completed starts when it was sent. */
    c_bind1(&s, "", NULL);
    client(fx, 5000, &s);
    m_empty(&s, '2');
    server(fx, 5100, &s);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 5200, &s);
    s_complete(&s, "SELECT 1");
    server(fx, 5300, &s);
    s_ready(&s, 'I');
    server(fx, 5310, &s);
    assert_int_equal(fx->nev, 4);
    assert_statement(ev_at(fx, 3), 'E', sql[2], 0, "SELECT", 1, "", 'I');
    assert_times(ev_at(fx, 3), 5200, 5300);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_pipeline_execute_error(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql[3] = {"INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)",
                          "INSERT INTO t VALUES (2)"};

    for (int g = 0; g < 3; g++) {
        c_parse(&s, "", sql[g]);
        c_bind1(&s, "", NULL);
        c_execute(&s, "", 0);
        c_sync(&s);
    }
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "INSERT 0 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    server(fx, 2100, &s);
    s_error(&s, "23505");
    server(fx, 2200, &s);
    s_ready(&s, 'I');
    server(fx, 2300, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "INSERT 0 1");
    s_ready(&s, 'I');
    server(fx, 2400, &s);
    assert_int_equal(fx->nev, 3);
    assert_statement(ev_at(fx, 0), 'E', sql[0], 0, "INSERT", 1, "", 'I');
    assert_statement(ev_at(fx, 1), 'E', sql[1], 0, "", -1, "23505", 'I');
    assert_times(ev_at(fx, 1), 2000, 2200); /* from the first group's ReadyForQuery */
    assert_statement(ev_at(fx, 2), 'E', sql[2], 0, "INSERT", 1, "", 'I');
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* A Parse fails: the server skips the Bind and Execute up to the Sync; the next group is fine. */
static void test_pipeline_parse_error_skips_to_sync(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_exec_params(&s, "", "SELECT 'first'", NULL);
    c_exec_params(&s, "", "SELEC 'broken'", NULL);
    c_exec_params(&s, "", "SELECT 'third'", NULL);
    client(fx, 1000, &s);
    s_exec_params_one_row(&s, true, "SELECT 1");
    server(fx, 2000, &s);
    s_error(&s, "42601");
    server(fx, 2100, &s);
    s_ready(&s, 'I');
    server(fx, 2200, &s);
    s_exec_params_one_row(&s, true, "SELECT 1");
    server(fx, 2300, &s);
    assert_int_equal(fx->nev, 3);
    assert_statement(ev_at(fx, 0), 'E', "SELECT 'first'", 0, "SELECT", 1, "", 'I');
    /* the failed Parse is reported, so that syntax errors count against their statement */
    assert_statement(ev_at(fx, 1), 'E', "SELEC 'broken'", 0, "", -1, "42601", 'I');
    assert_times(ev_at(fx, 1), 2000, 2100);
    assert_statement(ev_at(fx, 2), 'E', "SELECT 'third'", 0, "SELECT", 1, "", 'I');
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* The error arrives before the client sent the rest of its group: those requests are skipped. */
static void test_error_before_rest_of_group(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_parse(&s, "", "SELEC 1");
    c_flush(&s);
    client(fx, 1000, &s);
    s_error(&s, "42601");
    server(fx, 1100, &s);
    c_bind1(&s, "", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1200, &s);
    s_ready(&s, 'I');
    server(fx, 1300, &s);
    assert_int_equal(fx->nev, 1);
    assert_string_equal(ev_at(fx, 0)->sqlstate, "42601");
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 2000);
    fx_free(fx);
}

/* A simple Query destroys the unnamed statement: a later Bind of it has no text to report. */
static void test_query_destroys_unnamed_statement(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    parse_named(fx, 1000, "", "SELECT 'unnamed'");
    assert_int_equal(run_named(fx, 1100, ""), 1);
    c_query(&s, "SELECT 1");
    client(fx, 1200, &s);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 1300, &s);
    assert_int_equal(fx->nev, 2);
    c_bind1(&s, "", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1400, &s);
    s_error(&s, "26000");
    s_ready(&s, 'I');
    server(fx, 1500, &s);
    assert_int_equal(fx->nev, 2);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_portal_suspended(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql = "SELECT * FROM generate_series(1, 5)";

    c_parse(&s, "", sql);
    c_bind1(&s, "", NULL);
    c_execute(&s, "", 2);
    c_flush(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_data_row(&s, "1");
    s_data_row(&s, "2");
    m_empty(&s, 's');
    server(fx, 2000, &s);
    c_execute(&s, "", 2);
    c_flush(&s);
    client(fx, 3000, &s);
    s_data_row(&s, "3");
    s_data_row(&s, "4");
    m_empty(&s, 's');
    server(fx, 4000, &s);
    c_execute(&s, "", 2);
    c_sync(&s);
    client(fx, 5000, &s);
    s_data_row(&s, "5");
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 6000, &s);
    assert_int_equal(fx->nev, 3);
    assert_statement(ev_at(fx, 0), 'E', sql, 0, "", 2, "", 'I');
    assert_true(ev_at(fx, 0)->suspended);
    assert_times(ev_at(fx, 0), 1000, 2000);
    assert_statement(ev_at(fx, 1), 'E', sql, 0, "", 2, "", 'I');
    assert_true(ev_at(fx, 1)->suspended);
    assert_times(ev_at(fx, 1), 3000, 4000);
    assert_statement(ev_at(fx, 2), 'E', sql, 0, "SELECT", 1, "", 'I');
    assert_false(ev_at(fx, 2)->suspended);
    assert_times(ev_at(fx, 2), 5000, 6000);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* ---- COPY ---- */

static void test_copy_from_stdin_simple(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "COPY t FROM STDIN");
    client(fx, 1000, &s);
    s_copy_response(&s, 'G');
    server(fx, 1500, &s);
    c_copy_data(&s, "1\tfoo\n");
    c_copy_data(&s, "2\tbar\n");
    m_empty(&s, 'c');
    client(fx, 1600, &s);
    s_complete(&s, "COPY 2");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'Q', "COPY t FROM STDIN", 0, "COPY", 2, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 2000);
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 3000);
    fx_free(fx);
}

/* libpq sends Sync after Execute, and again after CopyDone; the server ignores the first. */
static void test_copy_from_stdin_extended(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_exec_params(&s, "", "COPY t FROM STDIN", NULL);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    m_empty(&s, 'n');
    s_copy_response(&s, 'G');
    server(fx, 1100, &s);
    c_copy_data(&s, "1\n");
    c_sync(&s); /* ignored by the server while it reads COPY data */
    m_empty(&s, 'c');
    c_sync(&s);
    client(fx, 1200, &s);
    s_complete(&s, "COPY 1");
    s_ready(&s, 'I');
    server(fx, 1300, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'E', "COPY t FROM STDIN", 0, "COPY", 1, "", 'I');
    assert_null(ev_at(fx, 0)->columns); /* described NoData */
    assert_null(ev_at(fx, 0)->values);
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 2000);

    /* a COPY that fails: CopyFail, then the error, then Sync */
    c_exec_params(&s, "", "COPY t FROM STDIN", NULL);
    client(fx, 3000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    m_empty(&s, 'n');
    s_copy_response(&s, 'G');
    server(fx, 3100, &s);
    m_raw(&s, 'f', "no\0", 3);
    c_sync(&s);
    client(fx, 3200, &s);
    s_error(&s, "57014");
    s_ready(&s, 'I');
    server(fx, 3300, &s);
    assert_int_equal(fx->nev, 3);
    assert_string_equal(ev_at(fx, 2)->sqlstate, "57014");
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 4000);
    fx_free(fx);
}

static void test_copy_to_stdout(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "COPY t TO STDOUT");
    client(fx, 1000, &s);
    s_copy_response(&s, 'H');
    for (int i = 0; i < 100; i++)
        m_raw(&s, 'd', "row\n", 4);
    m_empty(&s, 'c');
    s_complete(&s, "COPY 100");
    server(fx, 1500, &s);
    s_ready(&s, 'I');
    server(fx, 1600, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'Q', "COPY t TO STDOUT", 0, "COPY", 100, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 1500);
    assert_null(ev_at(fx, 0)->columns); /* COPY has no result to sample */
    assert_int_equal(ev_at(fx, 0)->n_columns, 0);
    assert_int_equal(ev_at(fx, 0)->sample_rows, 0);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* ---- function calls, parameter status, transactions ---- */

static void test_function_call(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_function_call(&s, 1234);
    client(fx, 1000, &s);
    s_function_result(&s, "84");
    server(fx, 1500, &s);
    s_ready(&s, 'I');
    server(fx, 1600, &s);
    c_function_call(&s, 99);
    client(fx, 2000, &s);
    s_error(&s, "42883");
    s_ready(&s, 'I');
    server(fx, 2500, &s);
    assert_int_equal(fx->nev, 2);
    assert_statement(ev_at(fx, 0), 'F', "<function call oid 1234>", 0, "", -1, "", 'I');
    assert_times(ev_at(fx, 0), 1000, 1500);
    assert_statement(ev_at(fx, 1), 'F', "<function call oid 99>", 0, "", -1, "42883", 'I');
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 3000);
    fx_free(fx);
}

static void startup_packet(bytes *s, const char *const *kv)
{
    size_t open = s->n;

    b_u32(s, 0);
    b_u32(s, 196608);
    for (; *kv; kv++)
        b_str(s, *kv);
    b_u8(s, 0);
    uint32_t len = (uint32_t)(s->n - open);
    s->b[open] = (uint8_t)(len >> 24);
    s->b[open + 1] = (uint8_t)(len >> 16);
    s->b[open + 2] = (uint8_t)(len >> 8);
    s->b[open + 3] = (uint8_t)len;
}

static void test_application_name_change(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *kv[] = {"user", "alice", "database", "shop", "application_name", "app1", NULL};

    startup_packet(&s, kv);
    track_startup(fx->c, s.b, s.n, "10.0.0.1:5555", 500);
    b_free(&s);
    c_query(&s, "SET application_name = 'app2'");
    client(fx, 1000, &s);
    s_complete(&s, "SET");
    s_parameter_status(&s, "application_name", "app2");
    s_ready(&s, 'I');
    server(fx, 1100, &s);
    c_query(&s, "SELECT 1");
    client(fx, 2000, &s);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    assert_int_equal(fx->nev, 3);
    assert_int_equal(ev_at(fx, 0)->kind, TRACK_EV_CONNECT);
    assert_string_equal(ev_at(fx, 0)->application_name, "app1");
    assert_string_equal(ev_at(fx, 1)->application_name, "app1"); /* completed before the change */
    assert_string_equal(ev_at(fx, 2)->application_name, "app2");
    assert_string_equal(ev_at(fx, 2)->user, "alice");
    assert_string_equal(ev_at(fx, 2)->database, "shop");
    assert_string_equal(ev_at(fx, 2)->client_addr, "10.0.0.1:5555");
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_txn_status(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "BEGIN");
    client(fx, 1000, &s);
    s_complete(&s, "BEGIN");
    s_ready(&s, 'T');
    server(fx, 1100, &s);
    /* a named portal bound in one round trip and executed in the next: it lives until COMMIT */
    c_parse(&s, "", "INSERT INTO t VALUES ($1)");
    c_bind(&s, "p1", "", &(pval){"5", 1, 0}, 1);
    c_sync(&s);
    client(fx, 2000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_ready(&s, 'T');
    server(fx, 2100, &s);
    c_execute(&s, "p1", 0);
    c_sync(&s);
    client(fx, 3000, &s);
    s_complete(&s, "INSERT 0 1");
    s_ready(&s, 'T');
    server(fx, 3100, &s);
    c_query(&s, "SELECT 1/0");
    client(fx, 4000, &s);
    s_error(&s, "22012");
    s_ready(&s, 'E');
    server(fx, 4100, &s);
    c_query(&s, "ROLLBACK");
    client(fx, 5000, &s);
    s_complete(&s, "ROLLBACK");
    s_ready(&s, 'I');
    server(fx, 5100, &s);
    assert_int_equal(fx->nev, 4);
    assert_statement(ev_at(fx, 0), 'Q', "BEGIN", 0, "BEGIN", -1, "", 'T');
    assert_statement(ev_at(fx, 1), 'E', "INSERT INTO t VALUES ($1)", 0, "INSERT", 1, "", 'T');
    assert_one_param(ev_at(fx, 1), "5");
    assert_statement(ev_at(fx, 2), 'Q', "SELECT 1/0", 0, "", -1, "22012", 'E');
    assert_statement(ev_at(fx, 3), 'Q', "ROLLBACK", 0, "ROLLBACK", -1, "", 'I');

    /* after an idle ReadyForQuery the portal is gone: no event for an Execute of it */
    c_execute(&s, "p1", 0);
    c_sync(&s);
    client(fx, 6000, &s);
    s_error(&s, "34000");
    s_ready(&s, 'I');
    server(fx, 6100, &s);
    assert_int_equal(fx->nev, 4);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* ---- limits ---- */

static void test_text_truncated(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    lim.max_text = 32;
    fixture *fx = fx_new_with(&lim);
    bytes s = {0};
    char long_sql[200], exact[33];

    memset(exact, 'x', 32);
    memcpy(exact, "SELECT 1 -- ", 12);
    exact[32] = '\0';
    snprintf(long_sql, sizeof(long_sql), "SELECT 1; SELECT 2; -- %0150d", 7);
    c_query(&s, long_sql);
    client(fx, 1000, &s);
    s_complete(&s, "SELECT 1");
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 2); /* the text was cut, the statements still counted right */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ev_at(fx, i)->text_len, 32);
        assert_true(ev_at(fx, i)->text_truncated);
        assert_memory_equal(ev_at(fx, i)->text, long_sql, 32);
        assert_int_equal(ev_at(fx, i)->text[32], '\0');
        assert_int_equal(ev_at(fx, i)->stmt_index, (uint32_t)i);
    }
    c_query(&s, exact);
    client(fx, 3000, &s);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_int_equal(fx->nev, 3);
    assert_string_equal(ev_at(fx, 2)->text, exact);
    assert_false(ev_at(fx, 2)->text_truncated);

    c_exec_params(&s, "long", long_sql + 10, NULL);
    client(fx, 4000, &s);
    s_exec_params_one_row(&s, true, "SELECT 1");
    server(fx, 4100, &s);
    assert_int_equal(fx->nev, 4);
    assert_int_equal(ev_at(fx, 3)->text_len, 32);
    assert_true(ev_at(fx, 3)->text_truncated);
    assert_memory_equal(ev_at(fx, 3)->text, long_sql + 10, 32);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_params_kinds(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    char big[300];
    const uint8_t int4[4] = {0, 0, 0, 42};
    pval v[5] = {{"abc", 3, 0}, {NULL, 0, 0}, {int4, 4, 1}, {big, sizeof(big), 0}, {"", 0, 0}};
    uint32_t pos = 0;
    const uint8_t *val;
    int32_t len;
    bool binary;

    memset(big, 'x', sizeof(big));
    c_parse(&s, "", "SELECT $1, $2, $3, $4, $5");
    c_bind(&s, "", "", v, 5);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    const track_event *ev = ev_at(fx, 0);
    assert_int_equal(ev->n_params, 5);
    assert_false(ev->params_truncated);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(len, 3);
    assert_memory_equal(val, "abc", 3);
    assert_false(binary);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(len, -1);
    assert_null(val);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(len, 4);
    assert_memory_equal(val, int4, 4);
    assert_true(binary);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(len, 256); /* cut to max_param */
    assert_memory_equal(val, big, 256);
    assert_false(binary);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(len, 0);
    assert_false(binary);
    assert_false(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(pos, ev->params_len);
    fx_free(fx);
}

/* A Parse declaring its parameters' types. */
static void c_parse_types(bytes *s, const char *name, const char *sql, const uint32_t *types,
                          uint16_t n)
{
    m_begin(s, 'P');
    b_str(s, name);
    b_str(s, sql);
    b_u16(s, n);
    for (uint16_t i = 0; i < n; i++)
        b_u32(s, types[i]);
    m_end(s);
}

/* The Parse's declared types reach the event; a ParameterDescription fills those left to the
 * server (what asyncpg relies on), for the unnamed statement and a named one. */
static void test_param_types_declared_and_described(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const uint32_t declared[2] = {20, 0};
    const uint8_t int8[8] = {0, 0, 0, 0x16, 0xfe, 0xe0, 0xe5, 0x3b};
    const uint8_t int4[4] = {0, 0, 0, 7};
    pval v[2] = {{int8, 8, 1}, {int4, 4, 1}};

    c_parse_types(&s, "", "SELECT $1, $2", declared, 2);
    c_bind(&s, "", "", v, 2);
    c_execute(&s, "", 0);
    c_parse_types(&s, "q", "SELECT $1, $2", declared, 2);
    c_describe(&s, 'S', "q");
    c_bind(&s, "", "q", v, 2);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    m_empty(&s, '1');
    m_begin(&s, 't');
    b_u16(&s, 2);
    b_u32(&s, 20);
    b_u32(&s, 23);
    m_end(&s);
    m_empty(&s, 'n');
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 2);
    const track_event *ev = ev_at(fx, 0);
    assert_false(ev->param_types_cut);
    assert_int_equal(ev->n_param_types, 2);
    assert_int_equal(ev->param_types[0], 20);
    assert_int_equal(ev->param_types[1], 0);
    ev = ev_at(fx, 1);
    assert_int_equal(ev->n_param_types, 2);
    assert_int_equal(ev->param_types[0], 20);
    assert_int_equal(ev->param_types[1], 23);
    fx_free(fx);
}

/* More types than are kept: none is, and the event says so. */
static void test_param_types_too_many(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    uint32_t declared[TRACK_MAX_TYPES + 1] = {0};

    c_parse_types(&s, "", "SELECT 1", declared, TRACK_MAX_TYPES + 1);
    c_bind(&s, "", "", NULL, 0);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    assert_true(ev_at(fx, 0)->param_types_cut);
    assert_null(ev_at(fx, 0)->param_types);
    fx_free(fx);
}

static size_t count_params(const track_event *ev)
{
    uint32_t pos = 0;
    const uint8_t *val;
    int32_t len;
    bool binary;
    size_t n = 0;

    while (track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary))
        n++;
    return n;
}

static void test_params_too_many(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    lim.max_params = 32;
    fixture *fx = fx_new_with(&lim);
    bytes s = {0};
    char values[20][9];
    pval v[20];

    for (int i = 0; i < 20; i++) {
        snprintf(values[i], sizeof(values[i]), "value-%02u", (unsigned)i % 100u);
        v[i] = (pval){values[i], 8, 0};
    }
    c_parse(&s, "", "SELECT 1");
    c_bind(&s, "", "", v, 20);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    assert_int_equal(ev_at(fx, 0)->n_params, 20);
    assert_true(ev_at(fx, 0)->params_truncated);
    assert_int_equal(count_params(ev_at(fx, 0)), 3); /* 3 x (1 + 8) bytes fit in 32 */
    assert_int_equal(ev_at(fx, 0)->params_len, 27);
    fx_free(fx);
}

/* A value so large that the ones after it lie beyond the captured part of the Bind. */
static void test_params_beyond_capture(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    size_t big_len = 100000;
    char *big = malloc(big_len);
    uint32_t pos = 0;
    const uint8_t *val;
    int32_t len;
    bool binary;

    assert_non_null(big);
    memset(big, 'y', big_len);
    pval v[2] = {{big, (uint32_t)big_len, 0}, {"small", 5, 0}};
    c_parse(&s, "", "SELECT $1, $2");
    c_bind(&s, "", "", v, 2);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1000, &s);
    free(big);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    const track_event *ev = ev_at(fx, 0);
    assert_int_equal(ev->n_params, 2);
    assert_true(ev->params_truncated);
    assert_true(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(len, 256);
    assert_false(track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary));
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_param_next_rejects_bad_encoding(void **state)
{
    (void)state;
    const uint8_t short_value[] = {0x07, 'a'};             /* text of 3 bytes, 1 present */
    const uint8_t endless[] = {0x80, 0x80, 0x80};          /* a varint that never ends */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x7f}; /* longer than any value */
    uint32_t pos = 0;
    const uint8_t *val;
    int32_t len;
    bool binary;

    assert_false(track_param_next(NULL, 0, &pos, &val, &len, &binary));
    assert_false(track_param_next(short_value, sizeof(short_value), &pos, &val, &len, &binary));
    pos = 0;
    assert_false(track_param_next(endless, sizeof(endless), &pos, &val, &len, &binary));
    pos = 0;
    assert_false(track_param_next(huge, sizeof(huge), &pos, &val, &len, &binary));
    pos = 5;
    assert_false(track_param_next(huge, sizeof(huge), &pos, &val, &len, &binary));
}

static void test_close_statement_then_reuse_name(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_exec_params(&s, "s1", "SELECT 'A'", NULL);
    client(fx, 1000, &s);
    s_exec_params_one_row(&s, true, "SELECT 1");
    server(fx, 1100, &s);
    c_close(&s, 'S', "s1");
    c_sync(&s);
    client(fx, 2000, &s);
    m_empty(&s, '3');
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    /* an Execute of a portal of the closed statement: the server fails it, no text known */
    c_bind1(&s, "s1", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 3000, &s);
    s_error(&s, "26000");
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    c_exec_params(&s, "s1", "SELECT 'B'", NULL);
    client(fx, 4000, &s);
    s_exec_params_one_row(&s, true, "SELECT 1");
    server(fx, 4100, &s);
    assert_int_equal(fx->nev, 2);
    assert_string_equal(ev_at(fx, 0)->text, "SELECT 'A'");
    assert_string_equal(ev_at(fx, 1)->text, "SELECT 'B'");

    /* closing a named portal */
    c_bind(&s, "cur", "s1", NULL, 0);
    c_close(&s, 'P', "cur");
    c_execute(&s, "cur", 0);
    c_sync(&s);
    client(fx, 5000, &s);
    m_empty(&s, '2');
    m_empty(&s, '3');
    s_error(&s, "34000");
    s_ready(&s, 'I');
    server(fx, 5100, &s);
    assert_int_equal(fx->nev, 2);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void test_max_prepared_eviction(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    lim.max_prepared = 2;
    fixture *fx = fx_new_with(&lim);

    parse_named(fx, 1000, "s1", "SELECT 1");
    parse_named(fx, 1100, "s2", "SELECT 2");
    parse_named(fx, 1200, "s3", "SELECT 3"); /* forgets s1, the least recently used */
    assert_int_equal(run_named(fx, 2000, "s1"), 0);
    assert_int_equal(run_named(fx, 2100, "s2"), 1); /* s2 is now the most recently used */
    parse_named(fx, 2200, "s4", "SELECT 4");        /* so s3 goes */
    assert_int_equal(run_named(fx, 2300, "s3"), 0);
    assert_int_equal(run_named(fx, 2400, "s2"), 1);
    assert_int_equal(run_named(fx, 2500, "s4"), 1);
    assert_string_equal(ev_at(fx, fx->nev - 1)->text, "SELECT 4");
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* Names count by their first 63 bytes, as in PostgreSQL. */
static void test_long_statement_names(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    char name[200];

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    parse_named(fx, 1000, name, "SELECT 'long name'");
    name[100] = '\0'; /* the same first 63 bytes */
    assert_int_equal(run_named(fx, 2000, name), 1);
    assert_string_equal(ev_at(fx, 0)->text, "SELECT 'long name'");
    fx_free(fx);
}

/* Many statements at once: the table grows, evicts and closes through its hash chains. */
static void test_many_prepared_statements(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    lim.max_prepared = 50;
    fixture *fx = fx_new_with(&lim);
    bytes s = {0};
    char name[16], sql[32];

    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        c_parse(&s, name, sql);
    }
    c_sync(&s);
    client(fx, 1000, &s);
    for (int i = 0; i < 100; i++)
        m_empty(&s, '1');
    s_ready(&s, 'I');
    server(fx, 1100, &s);
    for (int i = 0; i < 100; i += 7) {
        snprintf(name, sizeof(name), "s%d", i);
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        size_t made = run_named(fx, 2000 + i * 10, name);
        assert_int_equal(made, i >= 50 ? 1 : 0);
        if (made)
            assert_string_equal(ev_at(fx, fx->nev - 1)->text, sql);
    }
    for (int i = 50; i < 100; i += 2) {
        snprintf(name, sizeof(name), "s%d", i);
        c_close(&s, 'S', name);
    }
    c_sync(&s);
    client(fx, 3000, &s);
    for (int i = 50; i < 100; i += 2)
        m_empty(&s, '3');
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    for (int i = 50; i < 100; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        assert_int_equal(run_named(fx, 4000 + i * 10, name), i % 2 ? 1 : 0);
    }
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* A portal name longer than the whole capture: nothing about the Bind is known but its place. */
static void test_bind_name_beyond_capture(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    size_t n = 20000;
    char *portal = malloc(n + 1);

    assert_non_null(portal);
    memset(portal, 'p', n);
    portal[n] = '\0';
    parse_named(fx, 1000, "s1", "SELECT 1");
    c_bind(&s, portal, "s1", &(pval){"1", 1, 0}, 1);
    portal[9000] = '\0'; /* Execute is a small message; the same first 63 bytes name it */
    c_execute(&s, portal, 0);
    c_sync(&s);
    free(portal);
    client(fx, 2000, &s);
    m_empty(&s, '2');
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    assert_int_equal(fx->nev, 0);
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 3000);
    fx_free(fx);
}

static void test_max_pending_overflow(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    lim.max_pending = 4;
    fixture *fx = fx_new_with(&lim);
    bytes s = {0};

    /* three groups of four requests at once: the second and third do not fit */
    c_parse(&s, "", "SELECT 'kept'");
    c_bind1(&s, "", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    c_parse(&s, "", "SELECT 'lost'");
    c_bind1(&s, "", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    c_parse(&s, "s9", "SELECT 'parsed while lost'");
    c_bind1(&s, "s9", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 1000, &s);
    assert_int_equal(overflows(fx), 8);
    for (int g = 0; g < 3; g++) {
        m_empty(&s, '1');
        m_empty(&s, '2');
        s_complete(&s, "SELECT 1");
        s_ready(&s, 'I');
        server(fx, 2000 + g * 100, &s);
    }
    assert_int_equal(fx->nev, 1);
    assert_string_equal(ev_at(fx, 0)->text, "SELECT 'kept'");
    assert_int_equal(desyncs(fx), 0);
    /* tracking resumed, and the statement prepared while requests were lost is known */
    assert_int_equal(run_named(fx, 3000, "s9"), 1);
    assert_string_equal(ev_at(fx, 1)->text, "SELECT 'parsed while lost'");
    assert_in_step(fx, 4000);
    assert_int_equal(overflows(fx), 8);
    fx_free(fx);
}

/* More completed statements than max_pending before ReadyForQuery: the oldest go out early. */
static void test_held_events_bounded(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    lim.max_pending = 4;
    fixture *fx = fx_new_with(&lim);
    bytes s = {0};

    c_query(&s, "SELECT 1; SELECT 2; SELECT 3; SELECT 4; SELECT 5; SELECT 6");
    client(fx, 1000, &s);
    for (int i = 0; i < 6; i++)
        s_complete(&s, "SELECT 1");
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 2);
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    assert_int_equal(fx->nev, 6);
    for (uint32_t i = 0; i < 6; i++) {
        assert_int_equal(ev_at(fx, i)->stmt_index, i);
        assert_int_equal(ev_at(fx, i)->txn_status, i < 2 ? 0 : 'I');
    }
    fx_free(fx);
}

/* ---- robustness ---- */

static void test_unexpected_responses(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    /* after authentication: parameters, key data and a ReadyForQuery with nothing asked */
    s_parameter_status(&s, "server_version", "15.4");
    m_raw(&s, 'K', "\0\0\0\1\0\0\0\2", 8);
    s_ready(&s, 'I');
    server(fx, 100, &s);
    assert_int_equal(desyncs(fx), 0);
    /* an error with nothing asked (e.g. idle session timeout warnings) is ignored */
    s_error(&s, "57P05");
    server(fx, 200, &s);
    assert_int_equal(desyncs(fx), 0);
    assert_int_equal(fx->nev, 0);
    /* ParseComplete with an empty queue */
    m_empty(&s, '1');
    server(fx, 300, &s);
    assert_int_equal(desyncs(fx), 1);
    c_query(&s, "SELECT 'ignored'");
    client(fx, 400, &s);
    s_complete(&s, "SELECT 1");
    server(fx, 500, &s);
    s_ready(&s, 'I');
    server(fx, 600, &s);
    assert_int_equal(fx->nev, 0); /* nothing emitted until the next ReadyForQuery */
    assert_in_step(fx, 1000);
    /* a response that does not fit the head */
    c_exec_params(&s, "", "SELECT 1", NULL);
    client(fx, 2000, &s);
    m_empty(&s, '2');
    s_ready(&s, 'I');
    server(fx, 2100, &s);
    assert_int_equal(desyncs(fx), 2);
    assert_in_step(fx, 3000);
    fx_free(fx);
}

static void test_fatal_error_ends_connection(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "SELECT 1; SELECT pg_sleep(100)");
    client(fx, 1000, &s);
    s_complete(&s, "SELECT 1");
    server(fx, 1500, &s);
    s_error_sev(&s, "FATAL", "57P01", "terminating connection due to administrator command");
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 2); /* emitted at once: no ReadyForQuery will come */
    assert_int_equal(ev_at(fx, 0)->txn_status, 0);
    assert_string_equal(ev_at(fx, 1)->sqlstate, "57P01");
    assert_int_equal(ev_at(fx, 1)->stmt_index, 1);
    assert_int_equal(track_want(fx->c, WIRE_FROM_CLIENT, 'Q', 10), 0);
    track_disconnect(fx->c, 10, 20, 3000);
    assert_int_equal(fx->nev, 3);
    assert_int_equal(ev_at(fx, 2)->kind, TRACK_EV_DISCONNECT);
    fx_free(fx);
}

/* The server's reply to a malformed client message: an error, and the ReadyForQuery messages
 * for it (when it is one that gets one) and for the Sync after it. */
static void answer_bad_request(bytes *s, uint8_t type)
{
    if (type == 'c' || type == 'f') {
        s_ready(s, 'I'); /* CopyDone and CopyFail outside COPY are ignored */
        return;
    }
    if (type == 'd' || type == 'H') {
        s_ready(s, 'I');
        return;
    }
    s_error(s, "08P01");
    if (type == 'Q' || type == 'F' || type == 'S')
        s_ready(s, 'I');
    s_ready(s, 'I');
}

typedef struct {
    uint8_t type;
    const char *body;
    size_t len;
} raw_msg;

static void test_malformed_client_bodies(void **state)
{
    (void)state;
    static const raw_msg bad[] = {
        {'Q', "SELECT 1", 8},               /* no NUL */
        {'Q', "SEL\0ECT 1\0", 10},          /* bytes after the string */
        {'P', "name", 4},                   /* name without NUL */
        {'P', "\0SELECT 1\0\0\5", 12},      /* five parameter types announced, none given */
        {'B', "\0\0\0\0\0\2\0\0\0\1x", 11}, /* two values announced, one given */
        {'B', "\0\0\0\0\0\1\xff\xff\xff\xfe\0\0", 12}, /* value length below -1 */
        {'B', "\0\0\0\0\0\1\0\0\0\x50x\0\0", 13},      /* value longer than the message */
        {'D', "Xname\0", 6},                           /* neither statement nor portal */
        {'D', "", 0},
        {'E', "\0\0\0", 3}, /* max rows cut */
        {'C', "Sname", 5},  /* name without NUL */
        {'S', "x", 1},      /* Sync has no body */
        {'F', "\0\0", 2},   /* oid cut */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fixture *fx = fx_new();
        bytes s = {0};
        m_raw(&s, bad[i].type, bad[i].body, bad[i].len);
        c_sync(&s);
        client(fx, 1000, &s);
        assert_int_equal(desyncs(fx), 1);
        answer_bad_request(&s, bad[i].type);
        server(fx, 1100, &s);
        assert_int_equal(fx->nev, 0);
        assert_in_step(fx, 2000);
        assert_int_equal(desyncs(fx), 1);
        fx_free(fx);
    }
}

static void test_malformed_server_bodies(void **state)
{
    (void)state;
    static const raw_msg bad[] = {
        {'Z', "", 0},
        {'Z', "IT", 2},
        {'Z', "X", 1},
        {'C', "SELECT 1", 8},
        {'C', "SELECT 1\0x", 10},
        {'E', "SERROR\0C42", 10},
        {'E', "SERROR\0\0x", 9},
        {'S', "application_name", 16},
        {'S', "a\0b\0c", 5},
        {'1', "x", 1},
        {'I', "x", 1},
        {'s', "x", 1},
        {'T', "", 0},
        {'T', "\xff\xff", 2},  /* negative field count */
        {'T', "\0\1col\0", 6}, /* a field cut short */
        {'T', "\0\0x", 3},     /* bytes after the fields */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fixture *fx = fx_new();
        bytes s = {0};
        c_query(&s, "SELECT 1");
        client(fx, 1000, &s);
        m_raw(&s, bad[i].type, bad[i].body, bad[i].len);
        server(fx, 1100, &s);
        assert_int_equal(desyncs(fx), 1);
        s_ready(&s, 'I');
        server(fx, 1200, &s);
        assert_int_equal(fx->nev, 0);
        assert_in_step(fx, 2000);
        assert_int_equal(desyncs(fx), 1);
        fx_free(fx);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* Random bytes, rich in NULs and in the letters the protocol uses. */
static void random_body(bytes *s, size_t n)
{
    static const char alphabet[] = "SPIVTEC1";

    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd() % 8;
        b_u8(s, r < 2 ? 0 : r == 2 ? (uint8_t)alphabet[rnd() % 8] : (uint8_t)rnd());
    }
}

static size_t random_len(void)
{
    return rnd() % 4 == 0 ? rnd() % 700 : rnd() % 24;
}

static const char client_types[] = "QPBDECSFcfdH";
static const char server_types[] = "ZCES123tTnIsVGHWDdcNAK";

/* Every message type with random bodies, in a context where a real server would answer it:
 * nothing crashes and the next round trip after the ReadyForQuery is tracked. */
static void test_random_bodies_recover(void **state)
{
    (void)state;
    for (int iter = 0; iter < 40; iter++) {
        for (const char *t = client_types; *t; t++) {
            fixture *fx = fx_new();
            bytes s = {0};
            m_begin(&s, (uint8_t)*t);
            random_body(&s, random_len());
            m_end(&s);
            c_sync(&s);
            client(fx, 1000, &s);
            answer_bad_request(&s, (uint8_t)*t);
            server(fx, 1100, &s);
            assert_in_step(fx, 2000);
            fx_free(fx);
        }
        for (const char *t = server_types; *t; t++) {
            fixture *fx = fx_new();
            bytes s = {0};
            c_query(&s, "SELECT 1");
            client(fx, 1000, &s);
            m_begin(&s, (uint8_t)*t);
            random_body(&s, random_len());
            m_end(&s);
            s_ready(&s, 'I');
            server(fx, 1100, &s);
            assert_in_step(fx, 2000);
            fx_free(fx);
        }
    }
}

static void assert_event_sane(const track_event *ev, const track_limits *lim)
{
    uint32_t pos = 0;
    const uint8_t *val;
    int32_t len;
    bool binary;
    size_t n = 0;

    assert_true(ev->kind == TRACK_EV_CONNECT || ev->kind == TRACK_EV_STATEMENT ||
                ev->kind == TRACK_EV_DISCONNECT);
    assert_non_null(ev->text);
    assert_non_null(ev->user);
    assert_non_null(ev->database);
    assert_non_null(ev->application_name);
    assert_non_null(ev->client_addr);
    assert_non_null(ev->search_path);
    if (ev->kind != TRACK_EV_CONNECT)
        assert_string_equal(ev->search_path, "");
    assert_true(strlen(ev->search_path) <= TRACK_SEARCH_PATH_MAX);
    assert_int_equal(strlen(ev->text), ev->text_len);
    assert_true(ev->text_len <= lim->max_text);
    assert_true(strlen(ev->command) < sizeof(ev->command));
    assert_true(strlen(ev->sqlstate) <= 5);
    assert_true(ev->start_us <= ev->end_us);
    assert_true(ev->txn_status == 0 || strchr("ITE", ev->txn_status));
    while (track_param_next(ev->params, ev->params_len, &pos, &val, &len, &binary)) {
        assert_true(len == -1 || (uint32_t)len <= lim->max_param);
        n++;
    }
    assert_int_equal(pos, ev->params_len);
    assert_true(n <= ev->n_params);
    assert_true(ev->params_len <= lim->max_params);
    /* the sample: columns iff described, values iff rows, within every cap */
    uint32_t width = ev->n_columns < TRACK_SAMPLE_COLS ? ev->n_columns : TRACK_SAMPLE_COLS;
    assert_true((ev->columns != NULL) == (ev->n_columns > 0));
    assert_true((ev->values != NULL) == (ev->sample_rows > 0));
    assert_true(ev->sample_rows == 0 || width > 0);
    assert_true(ev->sample_rows <= TRACK_SAMPLE_ROWS);
    assert_true(ev->sample_rows * width <= TRACK_SAMPLE_VALUES);
    for (uint32_t i = 0; i < width; i++)
        assert_true(memchr(ev->columns[i].name, '\0', sizeof(ev->columns[i].name)) != NULL);
    for (uint32_t i = 0; i < ev->sample_rows * width; i++)
        (void)ev->values[i]; /* readable: ASan checks */
    assert_true(track_event_bytes(ev) >= sizeof(*ev) + ev->text_len + ev->params_len);
}

/* Random conversations in both directions under tiny limits: no crash, sane events. */
static void test_random_conversations(void **state)
{
    (void)state;
    track_limits lim = {
        .max_text = 8, .max_param = 4, .max_params = 16, .max_prepared = 2, .max_pending = 3};

    for (int round = 0; round < 300; round++) {
        fixture *fx = fx_new_with(&lim);
        int64_t now = 1000;
        for (int i = 0; i < 60; i++) {
            bytes s = {0};
            bool from_client = rnd() % 2;
            const char *types = from_client ? client_types : server_types;
            uint8_t type = rnd() % 16 == 0 ? (uint8_t)rnd() : (uint8_t)types[rnd() % strlen(types)];
            if (from_client && wire_check_header(WIRE_FROM_CLIENT, type, 4) != WIRE_OK)
                type = 'Q';
            m_begin(&s, type);
            random_body(&s, random_len());
            m_end(&s);
            now += rnd() % 100;
            feed_all(fx, from_client ? WIRE_FROM_CLIENT : WIRE_FROM_SERVER, now, &s);
        }
        track_disconnect(fx->c, 1, 2, now + 1);
        for (size_t i = 0; i < fx->nev; i++)
            assert_event_sane(fx->ev[i], &lim);
        fx_free(fx);
    }
}

static const char *random_name(void)
{
    static const char *const names[] = {"", "a", "b"};
    return names[rnd() % 3];
}

/* A well-formed client message of a random kind. */
static void random_request(bytes *s)
{
    const pval v[3] = {{"x", 1, 0}, {NULL, 0, 0}, {"\1\2", 2, 1}};

    switch (rnd() % 12) {
    case 0:
        c_query(s, rnd() % 2 ? "SELECT 1; SELECT 2" : "COPY t FROM STDIN");
        break;
    case 1:
        c_parse(s, random_name(), rnd() % 2 ? "SELECT $1" : "SELECT 'a much longer text'");
        break;
    case 2:
        c_bind(s, random_name(), random_name(), v, (uint16_t)(rnd() % 4));
        break;
    case 3:
        c_describe(s, rnd() % 2 ? 'S' : 'P', random_name());
        break;
    case 4:
        c_execute(s, random_name(), rnd() % 3);
        break;
    case 5:
        c_close(s, rnd() % 2 ? 'S' : 'P', random_name());
        break;
    case 6:
    case 7:
        c_sync(s);
        break;
    case 8:
        c_flush(s);
        break;
    case 9:
        c_function_call(s, rnd());
        break;
    case 10:
        c_copy_data(s, "1\n");
        break;
    default:
        if (rnd() % 2)
            m_empty(s, 'c');
        else
            m_raw(s, 'f', "stop\0", 5);
        break;
    }
}

/* A well-formed server message of a random kind, answering whatever it answers. */
static void random_response(bytes *s)
{
    switch (rnd() % 16) {
    case 0:
        m_empty(s, (uint8_t) "123nIs"[rnd() % 6]);
        break;
    case 1:
        s_parameter_description(s);
        break;
    case 2:
        s_row_description(s);
        break;
    case 3:
    case 4:
        s_complete(s, rnd() % 2 ? "SELECT 1" : "INSERT 0 7");
        break;
    case 5:
        s_function_result(s, "1");
        break;
    case 6:
        s_copy_response(s, (uint8_t) "GHW"[rnd() % 3]);
        break;
    case 7:
        if (rnd() % 400 == 0)
            s_error_sev(s, "FATAL", "57P01", "bye");
        else
            s_error(s, "42000");
        break;
    case 8:
    case 9:
    case 10:
        s_ready(s, "ITE"[rnd() % 3]);
        break;
    case 11:
    case 12:
        s_data_row(s, "v");
        break;
    case 13:
        s_notice(s);
        break;
    case 14:
        s_notification(s);
        break;
    default:
        s_parameter_status(s, "application_name", rnd() % 2 ? "one" : "two");
        break;
    }
}

/* Well-formed messages in an order no server would produce: every state is reached. */
static void test_random_wellformed_conversations(void **state)
{
    (void)state;
    track_limits tiny = {
        .max_text = 8, .max_param = 1, .max_params = 4, .max_prepared = 1, .max_pending = 2};
    track_limits lim;

    for (int round = 0; round < 400; round++) {
        if (round % 2)
            track_limits_default(&lim);
        else
            lim = tiny;
        fixture *fx = fx_new_with(&lim);
        int64_t now = 1000;
        for (int i = 0; i < 100; i++) {
            bytes s = {0};
            bool from_client = rnd() % 2;
            int n = 1 + (int)(rnd() % 4);
            for (int k = 0; k < n; k++) {
                if (from_client)
                    random_request(&s);
                else
                    random_response(&s);
            }
            now += rnd() % 100;
            feed_all(fx, from_client ? WIRE_FROM_CLIENT : WIRE_FROM_SERVER, now, &s);
        }
        track_disconnect(fx->c, 1, 2, now + 1);
        for (size_t i = 0; i < fx->nev; i++)
            assert_event_sane(fx->ev[i], &lim);
        fx_free(fx);
    }
}

/* ---- connection events and the framer's questions ---- */

/* The desyncs of a connection reach the report through its DISCONNECT event. */
static void test_disconnect_carries_desyncs(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    m_empty(&s, '1'); /* a ParseComplete nothing asked for */
    server(fx, 1000, &s);
    assert_int_equal(desyncs(fx), 1);
    track_disconnect(fx->c, 1, 2, 2000);
    assert_int_equal(fx->nev, 1);
    assert_int_equal(ev_at(fx, 0)->kind, TRACK_EV_DISCONNECT);
    assert_int_equal(ev_at(fx, 0)->desyncs, 1);
    fx_free(fx);
}

static void test_startup_and_disconnect(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *kv[] = {"user", "bob", "application_name", "psql", NULL};

    startup_packet(&s, kv);
    track_startup(fx->c, s.b, s.n, "[::1]:40000", 100);
    b_free(&s);
    assert_int_equal(fx->nev, 1);
    const track_event *ev = ev_at(fx, 0);
    assert_int_equal(ev->kind, TRACK_EV_CONNECT);
    assert_int_equal(ev->conn_id, 7);
    assert_string_equal(ev->user, "bob");
    assert_string_equal(ev->database, "bob"); /* defaults to the user */
    assert_string_equal(ev->application_name, "psql");
    assert_string_equal(ev->client_addr, "[::1]:40000");
    assert_times(ev, 100, 100);
    assert_string_equal(ev->text, "");

    /* a statement completed but never confirmed by ReadyForQuery goes out at the end */
    c_query(&s, "SELECT 1");
    client(fx, 1000, &s);
    s_complete(&s, "SELECT 1");
    server(fx, 1100, &s);
    assert_int_equal(fx->nev, 1);
    track_disconnect(fx->c, 1234, 5678, 2000);
    assert_int_equal(fx->nev, 3);
    assert_int_equal(ev_at(fx, 1)->kind, TRACK_EV_STATEMENT);
    assert_string_equal(ev_at(fx, 1)->user, "bob");
    assert_int_equal(ev_at(fx, 1)->txn_status, 0);
    ev = ev_at(fx, 2);
    assert_int_equal(ev->kind, TRACK_EV_DISCONNECT);
    assert_int_equal(ev->bytes_from_client, 1234);
    assert_int_equal(ev->bytes_from_server, 5678);
    assert_int_equal(ev->desyncs, 0);
    assert_times(ev, 2000, 2000);
    track_disconnect(fx->c, 1, 1, 3000); /* only once */
    assert_int_equal(fx->nev, 3);
    fx_free(fx);

    /* a packet that is not a StartupMessage still gives a CONNECT event, with empty names */
    fx = fx_new();
    const uint8_t garbage[8] = {0, 0, 0, 8, 1, 2, 3, 4};
    track_startup(fx->c, garbage, sizeof(garbage), "x", 1);
    assert_int_equal(fx->nev, 1);
    assert_string_equal(ev_at(fx, 0)->user, "");
    fx_free(fx);
}

/* ---- search_path from the StartupMessage ---- */

/* The search_path of the CONNECT event a StartupMessage with these parameters gives. */
static void assert_search_path(const char *const *kv, const char *want)
{
    fixture *fx = fx_new();
    bytes s = {0};

    startup_packet(&s, kv);
    track_startup(fx->c, s.b, s.n, "10.0.0.1:5555", 100);
    b_free(&s);
    assert_int_equal(fx->nev, 1);
    assert_int_equal(ev_at(fx, 0)->kind, TRACK_EV_CONNECT);
    assert_string_equal(ev_at(fx, 0)->search_path, want);
    fx_free(fx);
}

/* One options parameter, with user alice. */
static void assert_options_search_path(const char *options, const char *want)
{
    const char *kv[] = {"user", "alice", "options", options, NULL};

    assert_search_path(kv, want);
}

/* A string of n bytes of c, freed by the caller. */
static char *repeated(char c, size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_search_path_none(void **state)
{
    (void)state;
    const char *plain[] = {"user", "alice", "database", "shop", NULL};
    const char *app[] = {"user", "alice", "application_name", "search_path=x", NULL};

    assert_search_path(plain, "");
    assert_search_path(app, "");
    assert_options_search_path("", "");
    assert_options_search_path("  ", "");
    assert_options_search_path("-c statement_timeout=5s", "");
    /* names that only begin or end like it */
    assert_options_search_path("-c search_path_x=a -c xsearch_path=b -c search_path", "");
    const char *other[] = {"user", "alice", "search_paths", "a", "Options", "-csearch_path=b",
                           NULL};
    assert_search_path(other, "");
    /* a packet that is not a StartupMessage */
    fixture *fx = fx_new();
    const uint8_t garbage[8] = {0, 0, 0, 8, 1, 2, 3, 4};
    track_startup(fx->c, garbage, sizeof(garbage), "x", 1);
    assert_int_equal(fx->nev, 1);
    assert_string_equal(ev_at(fx, 0)->search_path, "");
    fx_free(fx);
}

static void test_search_path_parameter(void **state)
{
    (void)state;
    const char *kv[] = {"user", "alice", "search_path", "shop, public", NULL};
    const char *quoted[] = {"user", "alice", "search_path", "\"My Schema\",\"$user\"", NULL};
    const char *twice[] = {"search_path", "a", "user", "alice", "search_path", "b", NULL};
    const char *upper[] = {"user", "alice", "SEARCH_Path", "c", NULL};
    const char *dash[] = {"user", "alice", "search-path", "d", NULL}; /* '-' only in options */
    const char *escape[] = {"user", "alice", "search_path", "a\\ b", NULL};

    assert_search_path(kv, "shop, public");
    assert_search_path(quoted, "\"My Schema\",\"$user\"");
    assert_search_path(twice, "b"); /* the last one */
    assert_search_path(upper, "c"); /* GUC names ignore case */
    assert_search_path(dash, "");
    assert_search_path(escape, "a\\ b"); /* no escapes outside options */
}

static void test_search_path_options_c(void **state)
{
    (void)state;
    assert_options_search_path("-c search_path=shop", "shop");
    assert_options_search_path("  -c   search_path=shop,public  ", "shop,public");
    assert_options_search_path("-c\tsearch_path=shop", "shop");
    assert_options_search_path("-c SEARCH_PATH=shop", "shop");
    assert_options_search_path("-c search-path=shop", "shop"); /* ParseLongOption: '-' is '_' */
    assert_options_search_path("-c search_path=a=b", "a=b");   /* split at the first '=' */
    assert_options_search_path("-c search_path=", "");
}

static void test_search_path_options_c_joined(void **state)
{
    (void)state;
    assert_options_search_path("-csearch_path=shop", "shop");
    assert_options_search_path("-csearch-path=shop", "shop");
    /* flags bundled in front of -c */
    assert_options_search_path("-Ec search_path=shop", "shop");
    assert_options_search_path("-Ecsearch_path=shop", "shop");
}

static void test_search_path_options_long_form(void **state)
{
    (void)state;
    assert_options_search_path("--search_path=shop", "shop");
    assert_options_search_path("--search-path=shop", "shop");
    assert_options_search_path("--Search_Path=shop", "shop");
    assert_options_search_path("-c work_mem=4MB --search_path=a -c geqo=off", "a");
}

static void test_search_path_options_escaped_space(void **state)
{
    (void)state;
    assert_options_search_path("-c search_path=a,\\ b", "a, b");
    assert_options_search_path("-c search_path=\"my\\ schema\",public", "\"my schema\",public");
    assert_options_search_path("-c search_path=a\\\\b", "a\\b"); /* an escaped backslash */
    assert_options_search_path("-c search\\_path=x", "x");       /* escapes in the name too */
    assert_options_search_path("-c\\ search_path=x", "");        /* "-c search_path=x": one word */
    assert_options_search_path("-c search_path=x\\", "x"); /* a trailing backslash is dropped */
}

static void test_search_path_options_last_wins(void **state)
{
    (void)state;
    assert_options_search_path("-c search_path=a -c search_path=b", "b");
    assert_options_search_path("-csearch_path=a --search_path=b -c search_path=c", "c");
    assert_options_search_path("--search_path=a -c work_mem=1MB -c search_path=b -c geqo=on", "b");
    /* the last one even when it sets the path empty */
    assert_options_search_path("-c search_path=a -c search_path=", "");
}

static void test_search_path_options_other_settings_ignored(void **state)
{
    (void)state;
    assert_options_search_path("-c statement_timeout=5s -c search_path=a -c work_mem=64MB", "a");
    assert_options_search_path("-c application_name=search_path=b", "");
    assert_options_search_path("--application_name=-csearch_path=b", "");
    /* the argument of any switch that takes one is skipped whole, whatever it looks like */
    assert_options_search_path("-d -csearch_path=x", "");
    assert_options_search_path("-B -c search_path=x", "");
    assert_options_search_path("-c -csearch_path=x", "");
    assert_options_search_path("-d 5 -c search_path=a", "a");
    assert_options_search_path("-W 0 -c search_path=a", "a");
    /* "--" ends the switches; "-" alone is not one */
    assert_options_search_path("-- -c search_path=x", "");
    assert_options_search_path("- -c search_path=a", "a");
    /* -c needs its argument */
    assert_options_search_path("-c search_path=a -c", "a");
}

static void test_search_path_parameter_wins_over_options(void **state)
{
    (void)state;
    const char *after[] = {"user",        "alice", "options", "-c search_path=opt",
                           "search_path", "param", NULL};
    const char *before[] = {"search_path",        "param", "user", "alice", "options",
                            "-c search_path=opt", NULL};
    const char *empty[] = {"user",        "alice", "options", "-c search_path=opt",
                           "search_path", "",      NULL};
    const char *two_options[] = {"options", "-c search_path=first", "user", "alice",
                                 "options", "-c work_mem=1MB",      NULL};

    assert_search_path(after, "param");
    assert_search_path(before, "param"); /* applied after the options wherever it is */
    assert_search_path(empty, "");
    assert_search_path(two_options, ""); /* the last options parameter replaces the first */
}

static void test_search_path_too_long_dropped(void **state)
{
    (void)state;
    char *most = repeated('s', TRACK_SEARCH_PATH_MAX);
    char *over = repeated('s', TRACK_SEARCH_PATH_MAX + 1);
    char opts[2 * TRACK_SEARCH_PATH_MAX + 64];

    const char *kv_most[] = {"user", "alice", "search_path", most, NULL};
    assert_search_path(kv_most, most);
    const char *kv_over[] = {"user", "alice", "search_path", over, NULL};
    assert_search_path(kv_over, "");
    /* dropped, not replaced by the options' setting the server overrode with it */
    const char *kv_over_opts[] = {"user",        "alice", "options", "-c search_path=a",
                                  "search_path", over,    NULL};
    assert_search_path(kv_over_opts, "");

    snprintf(opts, sizeof(opts), "-c search_path=%s", most);
    assert_options_search_path(opts, most);
    snprintf(opts, sizeof(opts), "-c search_path=%s", over);
    assert_options_search_path(opts, "");
    /* nor by an earlier setting in the options */
    snprintf(opts, sizeof(opts), "-c search_path=a --search_path=%s", over);
    assert_options_search_path(opts, "");
    /* the cap counts the value with its escapes undone */
    char *escaped = repeated('\\', 2 * TRACK_SEARCH_PATH_MAX);
    for (size_t i = 1; i < 2 * TRACK_SEARCH_PATH_MAX; i += 2)
        escaped[i] = 's';
    snprintf(opts, sizeof(opts), "-c search_path=%s", escaped);
    assert_options_search_path(opts, most);
    free(escaped);
    free(most);
    free(over);
}

static void test_search_path_only_on_connect(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    char *most = repeated('p', TRACK_SEARCH_PATH_MAX);
    const char *kv[] = {"user", "alice", "search_path", most, NULL};

    startup_packet(&s, kv);
    track_startup(fx->c, s.b, s.n, "10.0.0.1:5555", 100);
    b_free(&s);
    c_query(&s, "SELECT 1");
    client(fx, 1000, &s);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 1100, &s);
    track_disconnect(fx->c, 10, 20, 2000);
    assert_int_equal(fx->nev, 3);
    const track_event *ev = ev_at(fx, 0);
    assert_int_equal(ev->kind, TRACK_EV_CONNECT);
    assert_string_equal(ev->search_path, most);
    /* a long path is counted in the event's memory */
    assert_true(track_event_bytes(ev) >= sizeof(*ev) + TRACK_SEARCH_PATH_MAX);
    assert_int_equal(ev_at(fx, 1)->kind, TRACK_EV_STATEMENT);
    assert_string_equal(ev_at(fx, 1)->search_path, "");
    assert_int_equal(track_event_bytes(ev_at(fx, 1)), sizeof(*ev) + ev_at(fx, 1)->text_len + 128);
    assert_int_equal(ev_at(fx, 2)->kind, TRACK_EV_DISCONNECT);
    assert_string_equal(ev_at(fx, 2)->search_path, "");
    assert_int_equal(desyncs(fx), 0);
    free(most);
    fx_free(fx);
}

static void test_want(void **state)
{
    (void)state;
    track_limits lim;
    track_limits_default(&lim);
    track_conn *c = track_conn_new(1, &lim, NULL, NULL);
    uint32_t cap = track_capture_size(&lim);
    const uint32_t lens[] = {0, 1, 5, 64, 255, 4096, 16385, 16386, 100000, WIRE_LARGE_MSG_MAX};

    assert_non_null(c);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'D', 100), 0);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'd', 100), 0);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'd', 100), 0);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'p', 100), 0); /* secrets */
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'H', 0), 0);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'X', 0), 0);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'N', 100), 0);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'A', 100), 0);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'Z', 1), 1);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, '1', 0), 1);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'S', 0), 1);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'Q', 10), 10);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'Q', 100000), lim.max_text + 1);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'C', 1000), 64);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'E', 1000), 256);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'S', 1000), 128);
    assert_int_equal(track_want(c, WIRE_FROM_CLIENT, 'F', 1000), 4);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'T', 100), 100);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'T', 100000), 4096);
    assert_int_equal(track_want(c, WIRE_FROM_SERVER, 'D', 100), 0); /* nothing to sample */
    for (int side = 0; side < 2; side++)
        for (int type = 0; type < 256; type++)
            for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
                assert_true(track_want(c, (wire_side)side, (uint8_t)type, lens[i]) <= cap);
    track_conn_free(c);
}

/* ---- chunking: the same conversation however the bytes are split ---- */

/* A conversation covering most of the protocol, the client pipelining all of it. */
static void build_conversation(bytes *cs, bytes *ss)
{
    c_query(cs, "SELECT 1; SELECT 2");
    s_row_description(ss);
    s_data_row(ss, "1");
    s_complete(ss, "SELECT 1");
    s_row_description(ss);
    s_data_row(ss, "2");
    s_complete(ss, "SELECT 1");
    s_ready(ss, 'I');

    c_exec_params(cs, "s1", "SELECT $1", "first");
    s_exec_params_one_row(ss, true, "SELECT 1");
    c_exec_params(cs, "s1", NULL, "second");
    s_exec_params_one_row(ss, false, "SELECT 1");

    c_function_call(cs, 77);
    s_function_result(ss, "42");
    s_ready(ss, 'I');

    c_query(cs, "COPY t TO STDOUT");
    s_copy_response(ss, 'H');
    m_raw(ss, 'd', "a\n", 2);
    m_empty(ss, 'c');
    s_complete(ss, "COPY 1");
    s_ready(ss, 'I');

    c_exec_params(cs, "", "COPY t FROM STDIN", NULL);
    c_copy_data(cs, "1\n");
    m_empty(cs, 'c');
    c_sync(cs);
    m_empty(ss, '1');
    m_empty(ss, '2');
    m_empty(ss, 'n');
    s_copy_response(ss, 'G');
    s_complete(ss, "COPY 1");
    s_ready(ss, 'I');

    c_query(cs, "SELECT 1/0");
    s_error(ss, "22012");
    s_ready(ss, 'I');
}

static void assert_same_events(const fixture *a, const fixture *b)
{
    assert_int_equal(a->nev, b->nev);
    for (size_t i = 0; i < a->nev; i++) {
        const track_event *x = a->ev[i], *y = b->ev[i];
        assert_int_equal(x->via, y->via);
        assert_string_equal(x->text, y->text);
        assert_int_equal(x->stmt_index, y->stmt_index);
        assert_string_equal(x->command, y->command);
        assert_int_equal(x->rows, y->rows);
        assert_string_equal(x->sqlstate, y->sqlstate);
        assert_int_equal(x->txn_status, y->txn_status);
        assert_int_equal(x->params_len, y->params_len);
        if (x->params_len)
            assert_memory_equal(x->params, y->params, x->params_len);
        assert_int_equal(x->n_columns, y->n_columns);
        assert_int_equal(x->sample_rows, y->sample_rows);
        if (x->n_columns)
            assert_memory_equal(
                x->columns, y->columns,
                (x->n_columns < TRACK_SAMPLE_COLS ? x->n_columns : TRACK_SAMPLE_COLS) *
                    sizeof(track_column));
        if (x->sample_rows)
            assert_memory_equal(
                x->values, y->values,
                x->sample_rows *
                    (x->n_columns < TRACK_SAMPLE_COLS ? x->n_columns : TRACK_SAMPLE_COLS) *
                    sizeof(uint32_t));
    }
}

static void test_split_at_every_offset(void **state)
{
    (void)state;
    bytes cs = {0}, ss = {0};
    fixture *ref = fx_new();

    build_conversation(&cs, &ss);
    feed_range(ref, WIRE_FROM_CLIENT, 1000, cs.b, cs.n);
    feed_range(ref, WIRE_FROM_SERVER, 2000, ss.b, ss.n);
    assert_int_equal(ref->nev, 8);
    assert_int_equal(desyncs(ref), 0);
    assert_string_equal(ref->ev[3]->text, "SELECT $1");
    assert_one_param(ref->ev[3], "second");

    /* server bytes in two chunks: events end at the time of the chunk that completed them */
    for (size_t k = 0; k <= ss.n; k++) {
        fixture *fx = fx_new();
        feed_range(fx, WIRE_FROM_CLIENT, 1000, cs.b, cs.n);
        feed_range(fx, WIRE_FROM_SERVER, 2000, ss.b, k);
        feed_range(fx, WIRE_FROM_SERVER, 3000, ss.b + k, ss.n - k);
        assert_same_events(ref, fx);
        assert_int_equal(ss.nmarks, fx->nev);
        for (size_t i = 0; i < fx->nev; i++) {
            assert_int_equal(fx->ev[i]->end_us, ss.marks[i] <= k ? 2000 : 3000);
            if (i > 0)
                assert_true(fx->ev[i]->start_us >= fx->ev[i - 1]->end_us);
        }
        assert_int_equal(desyncs(fx), 0);
        fx_free(fx);
    }
    /* client bytes in two chunks */
    for (size_t k = 0; k <= cs.n; k++) {
        fixture *fx = fx_new();
        feed_range(fx, WIRE_FROM_CLIENT, 1000, cs.b, k);
        feed_range(fx, WIRE_FROM_CLIENT, 1500, cs.b + k, cs.n - k);
        feed_range(fx, WIRE_FROM_SERVER, 2000, ss.b, ss.n);
        assert_same_events(ref, fx);
        assert_int_equal(desyncs(fx), 0);
        fx_free(fx);
    }
    /* one byte at a time, both directions, the clock moving with every byte */
    fixture *fx = fx_new();
    int64_t now = 1000;
    for (size_t i = 0; i < cs.n; i++)
        feed_range(fx, WIRE_FROM_CLIENT, now++, cs.b + i, 1);
    for (size_t i = 0; i < ss.n; i++)
        feed_range(fx, WIRE_FROM_SERVER, now++, ss.b + i, 1);
    assert_same_events(ref, fx);
    for (size_t i = 1; i < fx->nev; i++) {
        assert_true(fx->ev[i]->start_us >= fx->ev[i - 1]->end_us);
        assert_true(fx->ev[i]->end_us > fx->ev[i]->start_us);
    }
    fx_free(fx);
    fx_free(ref);
    b_free(&cs);
    b_free(&ss);
}

/* ---- result sampling ---- */

static uint32_t hash_of(const pval *v)
{
    return v->data ? track_value_hash(v->data, v->len) : 0;
}

static uint32_t hash_str(const char *s)
{
    return track_value_hash(s, strlen(s));
}

static uint64_t rows_wanted(const fixture *fx)
{
    return fx->sref.rows_wanted;
}

static void test_value_hash(void **state)
{
    (void)state;
    uint8_t a[300], b[300];
    static uint32_t seen[10000];

    for (int i = 0; i < 300; i++)
        a[i] = b[i] = (uint8_t)(i * 7);
    assert_int_equal(track_value_hash("42", 2), track_value_hash("42", 2));
    assert_int_not_equal(track_value_hash("42", 2), track_value_hash("43", 2));
    assert_int_not_equal(track_value_hash("a", 1), track_value_hash("a\0", 2));
    assert_int_not_equal(track_value_hash(NULL, 0), 0);
    assert_int_not_equal(track_value_hash("", 0), 0);
    /* only the first TRACK_HASH_PREFIX bytes count */
    assert_int_equal(track_value_hash(a, 300), track_value_hash(a, TRACK_HASH_PREFIX));
    b[280] ^= 1;
    assert_int_equal(track_value_hash(a, 300), track_value_hash(b, 300));
    b[100] ^= 1;
    assert_int_not_equal(track_value_hash(a, 300), track_value_hash(b, 300));
    /* ids as text, the usual join keys: no collisions among the first ten thousand */
    for (int i = 0; i < 10000; i++) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", i);
        seen[i] = hash_str(buf);
        assert_int_not_equal(seen[i], 0);
    }
    for (int i = 0; i < 10000; i++)
        for (int j = i + 1; j < 10000; j++)
            assert_int_not_equal(seen[i], seen[j]);
}

static const coldef order_cols[3] = {
    {"id", 16385, 1, 23, 0},
    {"customer_id", 16385, 2, 23, 0},
    {"note", 0, 0, 25, 0},
};

static void assert_order_columns(const track_event *ev)
{
    assert_int_equal(ev->n_columns, 3);
    assert_non_null(ev->columns);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ev->columns[i].table_oid, order_cols[i].table_oid);
        assert_int_equal(ev->columns[i].attnum, order_cols[i].attnum);
        assert_int_equal(ev->columns[i].type_oid, order_cols[i].type_oid);
        assert_int_equal(ev->columns[i].format, order_cols[i].format);
        assert_string_equal(ev->columns[i].name, order_cols[i].name);
    }
}

/* Rows of order_cols: (i, 100 + i, a note or NULL). */
static void order_row(pval v[3], char bufs[3][32], int i)
{
    snprintf(bufs[0], 32, "%d", i);
    snprintf(bufs[1], 32, "%d", 100 + i);
    snprintf(bufs[2], 32, "note %d", i);
    for (int k = 0; k < 3; k++)
        v[k] = (pval){bufs[k], (uint32_t)strlen(bufs[k]), 0};
    if (i % 2)
        v[2].data = NULL;
}

static void send_order_rows(bytes *s, int first, int n)
{
    pval v[3];
    char bufs[3][32];

    for (int i = first; i < first + n; i++) {
        order_row(v, bufs, i);
        s_row(s, v, 3);
    }
}

static void assert_order_rows(const track_event *ev, int first, int n)
{
    pval v[3];
    char bufs[3][32];

    assert_int_equal(ev->sample_rows, n);
    assert_non_null(ev->values);
    for (int i = 0; i < n; i++) {
        order_row(v, bufs, first + i);
        for (int k = 0; k < 3; k++)
            assert_int_equal(ev->values[i * 3 + k], hash_of(&v[k]));
    }
}

static void test_sample_simple_query(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql = "SELECT id, customer_id, note FROM orders; INSERT INTO log VALUES (1); "
                      "SELECT id, customer_id, note FROM orders WHERE id > 6";

    c_query(&s, sql);
    client(fx, 1000, &s);
    s_row_desc(&s, order_cols, 3);
    send_order_rows(&s, 1, 5);
    s_complete(&s, "SELECT 5");
    s_complete(&s, "INSERT 0 1");
    s_row_desc(&s, order_cols, 3);
    send_order_rows(&s, 7, 2);
    s_complete(&s, "SELECT 2");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 3);
    const track_event *ev = ev_at(fx, 0);
    assert_statement(ev, 'Q', sql, 0, "SELECT", 5, "", 'I');
    assert_order_columns(ev);
    assert_order_rows(ev, 1, 5);
    assert_int_equal(ev->values[0 * 3 + 2], 0); /* NULL */
    assert_int_equal(ev->values[0 * 3 + 0], hash_str("1"));
    assert_int_equal(track_event_bytes(ev), sizeof(*ev) + ev->text_len + 128 +
                                                3 * sizeof(track_column) + 15 * sizeof(uint32_t));
    /* every statement starts afresh: no result, then only its own rows */
    assert_null(ev_at(fx, 1)->columns);
    assert_null(ev_at(fx, 1)->values);
    assert_int_equal(ev_at(fx, 1)->n_columns, 0);
    assert_int_equal(ev_at(fx, 1)->sample_rows, 0);
    assert_order_columns(ev_at(fx, 2));
    assert_order_rows(ev_at(fx, 2), 7, 2);
    assert_int_equal(rows_wanted(fx), 7);
    assert_int_equal(desyncs(fx), 0);

    /* a result with no rows still has its columns */
    c_query(&s, "SELECT id, customer_id, note FROM orders WHERE false");
    client(fx, 3000, &s);
    s_row_desc(&s, order_cols, 3);
    s_complete(&s, "SELECT 0");
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_int_equal(fx->nev, 4);
    assert_order_columns(ev_at(fx, 3));
    assert_int_equal(ev_at(fx, 3)->sample_rows, 0);
    assert_null(ev_at(fx, 3)->values);
    fx_free(fx);
}

/* libpq's PQexecParams: Parse, Bind, Describe portal, Execute, Sync. */
static void test_sample_extended_unnamed(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql = "SELECT id, customer_id, note FROM orders WHERE placed > $1";

    c_exec_params(&s, "", sql, "2024-01-01");
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_row_desc(&s, order_cols, 3);
    send_order_rows(&s, 1, 4);
    s_complete(&s, "SELECT 4");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    assert_statement(ev_at(fx, 0), 'E', sql, 0, "SELECT", 4, "", 'I');
    assert_order_columns(ev_at(fx, 0));
    assert_order_rows(ev_at(fx, 0), 1, 4);
    assert_one_param(ev_at(fx, 0), "2024-01-01"); /* the exact bytes, to hash like results */
    assert_int_equal(desyncs(fx), 0);

    /* a Describe answered by NoData: no result, no sample */
    c_exec_params(&s, "", "INSERT INTO log VALUES ($1)", "x");
    client(fx, 3000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    m_empty(&s, 'n');
    s_complete(&s, "INSERT 0 1");
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_int_equal(fx->nev, 2);
    assert_null(ev_at(fx, 1)->columns);
    assert_int_equal(ev_at(fx, 1)->n_columns, 0);

    /* no Describe at all, and a statement never described: DataRows are not even captured */
    uint64_t wanted = rows_wanted(fx);
    c_parse(&s, "", "SELECT 1");
    c_bind1(&s, "", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 4000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_data_row(&s, "1");
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 4100, &s);
    assert_int_equal(fx->nev, 3);
    assert_null(ev_at(fx, 2)->columns);
    assert_int_equal(rows_wanted(fx), wanted);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* A named statement described once (as pgbench -M prepared, pgx or JDBC do), then run many times
 * with Bind and Execute only: every event has the columns and its own rows. */
static void test_sample_named_described_once(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const char *sql = "SELECT id, customer_id, note FROM orders WHERE customer_id = $1";
    char value[16];

    c_parse(&s, "s1", sql);
    c_describe(&s, 'S', "s1");
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    s_parameter_description(&s);
    s_row_desc(&s, order_cols, 3);
    s_ready(&s, 'I');
    server(fx, 1100, &s);
    for (int i = 0; i < 20; i++) {
        int64_t t = 2000 + i * 1000;
        snprintf(value, sizeof(value), "%d", i);
        c_bind1(&s, "s1", value);
        c_execute(&s, "", 0);
        c_sync(&s);
        client(fx, t, &s);
        m_empty(&s, '2');
        send_order_rows(&s, i * 10, i % 4);
        snprintf(value, sizeof(value), "SELECT %d", i % 4);
        s_complete(&s, value);
        s_ready(&s, 'I');
        server(fx, t + 100, &s);
        assert_int_equal(fx->nev, (size_t)i + 1);
        const track_event *ev = ev_at(fx, i);
        assert_statement(ev, 'E', sql, 0, "SELECT", i % 4, "", 'I');
        assert_order_columns(ev);
        if (i % 4)
            assert_order_rows(ev, i * 10, i % 4);
        else
            assert_null(ev->values);
    }

    /* a named portal bound from it, results asked in binary: the columns say so */
    pval v = {"7", 1, 0};
    c_bind_rf(&s, "p1", "s1", &v, 1, 1);
    c_execute(&s, "p1", 0);
    c_sync(&s);
    client(fx, 30000, &s);
    m_empty(&s, '2');
    s_row(&s, (const pval[3]){{"\0\0\0\1", 4, 1}, {"\0\0\0\7", 4, 1}, {NULL, 0, 1}}, 3);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 30100, &s);
    assert_int_equal(fx->nev, 21);
    const track_event *ev = ev_at(fx, 20);
    assert_int_equal(ev->n_columns, 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(ev->columns[k].format, 1);
    /* a binary int4 is hashed as its text, "7", as the N+1 detector hashes parameters */
    assert_int_equal(ev->columns[1].type_oid, 23);
    assert_int_equal(ev->values[1], track_value_hash("7", 1));
    assert_int_equal(ev->values[2], 0);

    /* a format per result column: text, binary, text */
    m_begin(&s, 'B');
    b_str(&s, "");
    b_str(&s, "s1");
    b_u16(&s, 0);
    b_u16(&s, 1);
    b_u32(&s, 1);
    b_mem(&s, "8", 1);
    b_u16(&s, 3);
    b_u16(&s, 0);
    b_u16(&s, 1);
    b_u16(&s, 0);
    m_end(&s);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 31000, &s);
    m_empty(&s, '2');
    s_complete(&s, "SELECT 0");
    s_ready(&s, 'I');
    server(fx, 31100, &s);
    assert_int_equal(fx->nev, 22);
    ev = ev_at(fx, 21);
    assert_int_equal(ev->n_columns, 3);
    assert_int_equal(ev->columns[0].format, 0);
    assert_int_equal(ev->columns[1].format, 1);
    assert_int_equal(ev->columns[2].format, 0);
    assert_string_equal(ev->columns[1].name, "customer_id");

    /* prepared again under the same name: the old description goes with the old statement */
    c_parse(&s, "s1", "SELECT 1");
    c_bind1(&s, "s1", NULL);
    c_execute(&s, "", 0);
    c_sync(&s);
    client(fx, 40000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_data_row(&s, "1");
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 40100, &s);
    assert_int_equal(fx->nev, 23);
    assert_null(ev_at(fx, 22)->columns);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* pgbench -M prepared through libpq: a Describe of the portal with every execution, whose answer
 * matches the statement's description. */
static void test_sample_describe_portal_each_time(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    const coldef col = {"abalance", 16390, 3, 23, 0};

    c_parse(&s, "P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    c_describe(&s, 'S', "P0_1");
    c_sync(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    s_parameter_description(&s);
    s_row_desc(&s, &col, 1);
    s_ready(&s, 'I');
    server(fx, 1100, &s);
    for (int i = 0; i < 50; i++) {
        char value[16];
        snprintf(value, sizeof(value), "%d", i * 3);
        c_bind1(&s, "P0_1", "1");
        c_describe(&s, 'P', "");
        c_execute(&s, "", 0);
        c_sync(&s);
        client(fx, 2000 + i * 100, &s);
        m_empty(&s, '2');
        s_row_desc(&s, &col, 1);
        s_data_row(&s, value);
        s_complete(&s, "SELECT 1");
        s_ready(&s, 'I');
        server(fx, 2050 + i * 100, &s);
        const track_event *ev = ev_at(fx, (size_t)i);
        assert_int_equal(ev->n_columns, 1);
        assert_string_equal(ev->columns[0].name, "abalance");
        assert_int_equal(ev->columns[0].table_oid, 16390);
        assert_int_equal(ev->sample_rows, 1);
        assert_int_equal(ev->values[0], hash_str(value));
    }
    assert_int_equal(fx->nev, 50);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

static void one_column_rows(bytes *s, int first, int n)
{
    char value[16];

    for (int i = first; i < first + n; i++) {
        snprintf(value, sizeof(value), "%d", i);
        s_data_row(s, value);
    }
}

static void assert_one_column_rows(const track_event *ev, int first, uint32_t n)
{
    char value[16];

    assert_int_equal(ev->n_columns, 1);
    assert_int_equal(ev->sample_rows, n);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(value, sizeof(value), "%d", first + (int)i);
        assert_int_equal(ev->values[i], hash_str(value));
    }
}

/* More rows than the sample keeps: exactly TRACK_SAMPLE_ROWS sampled, all counted, and DataRows
 * after the cap are not even captured. */
static void test_sample_row_cap(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "SELECT g FROM generate_series(0, 1499) g");
    client(fx, 1000, &s);
    s_row_description(&s);
    one_column_rows(&s, 0, 1500);
    s_complete(&s, "SELECT 1500");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    assert_int_equal(ev_at(fx, 0)->rows, 1500);
    assert_one_column_rows(ev_at(fx, 0), 0, TRACK_SAMPLE_ROWS);
    assert_int_equal(rows_wanted(fx), TRACK_SAMPLE_ROWS);
    assert_int_equal(fx->sref.rows_delivered, TRACK_SAMPLE_ROWS);

    /* the next statement samples again */
    c_query(&s, "SELECT 1");
    client(fx, 3000, &s);
    s_row_description(&s);
    one_column_rows(&s, 5, 1);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_one_column_rows(ev_at(fx, 1), 5, 1);
    assert_int_equal(rows_wanted(fx), TRACK_SAMPLE_ROWS + 1);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* An Execute with a row limit: each event samples the rows that passed for it. */
static void test_sample_portal_suspended(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_parse(&s, "", "SELECT g FROM generate_series(1, 1205) g");
    c_bind1(&s, "", NULL);
    c_describe(&s, 'P', "");
    c_execute(&s, "", 1200);
    c_flush(&s);
    client(fx, 1000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_row_description(&s);
    one_column_rows(&s, 1, 1200);
    m_empty(&s, 's');
    server(fx, 2000, &s);
    c_execute(&s, "", 1200);
    c_sync(&s);
    client(fx, 3000, &s);
    one_column_rows(&s, 1201, 5);
    s_complete(&s, "SELECT 5");
    s_ready(&s, 'I');
    server(fx, 4000, &s);
    assert_int_equal(fx->nev, 2);
    assert_true(ev_at(fx, 0)->suspended);
    assert_int_equal(ev_at(fx, 0)->rows, 1200);
    assert_one_column_rows(ev_at(fx, 0), 1, TRACK_SAMPLE_ROWS);
    assert_int_equal(ev_at(fx, 1)->rows, 5);
    assert_one_column_rows(ev_at(fx, 1), 1201, 5);
    assert_int_equal(rows_wanted(fx), TRACK_SAMPLE_ROWS + 5);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* n columns named c0, c1, ... of table 16400; values "r<row>c<col>". */
static void wide_result(bytes *s, uint16_t ncols, int nrows)
{
    coldef *cols = calloc(ncols, sizeof(*cols));
    pval *v = calloc(ncols, sizeof(*v));
    char(*names)[16] = calloc(ncols, sizeof(*names));
    char(*vals)[24] = calloc(ncols, sizeof(*vals));

    assert_non_null(cols);
    assert_non_null(v);
    assert_non_null(names);
    assert_non_null(vals);
    for (uint16_t k = 0; k < ncols; k++) {
        snprintf(names[k], sizeof(names[k]), "c%u", k);
        cols[k] = (coldef){names[k], 16400, (int16_t)(k + 1), 25, 0};
    }
    s_row_desc(s, cols, ncols);
    for (int r = 0; r < nrows; r++) {
        for (uint16_t k = 0; k < ncols; k++) {
            snprintf(vals[k], sizeof(vals[k]), "r%dc%u", r, k);
            v[k] = (pval){vals[k], (uint32_t)strlen(vals[k]), 0};
        }
        s_row(s, v, ncols);
    }
    free(cols);
    free(v);
    free(names);
    free(vals);
}

static void assert_wide_sample(const track_event *ev, uint16_t ncols, uint32_t nrows)
{
    uint32_t width = ncols < TRACK_SAMPLE_COLS ? ncols : TRACK_SAMPLE_COLS;
    char buf[24];

    assert_int_equal(ev->n_columns, ncols);
    for (uint32_t k = 0; k < width; k++) {
        snprintf(buf, sizeof(buf), "c%u", k);
        assert_string_equal(ev->columns[k].name, buf);
        assert_int_equal(ev->columns[k].attnum, k + 1);
        assert_int_equal(ev->columns[k].table_oid, 16400);
    }
    assert_int_equal(ev->sample_rows, nrows);
    for (uint32_t r = 0; r < nrows; r++)
        for (uint32_t k = 0; k < width; k++) {
            snprintf(buf, sizeof(buf), "r%uc%u", r, k);
            assert_int_equal(ev->values[r * width + k], hash_str(buf));
        }
}

static void run_wide(fixture *fx, int64_t now, uint16_t ncols, int nrows)
{
    bytes s = {0};
    char tag[32];

    c_query(&s, "SELECT * FROM wide");
    client(fx, now, &s);
    wide_result(&s, ncols, nrows);
    snprintf(tag, sizeof(tag), "SELECT %d", nrows);
    s_complete(&s, tag);
    s_ready(&s, 'I');
    server(fx, now + 100, &s);
}

/* More columns than the sample keeps: the first TRACK_SAMPLE_COLS, and the real count. */
static void test_sample_many_columns(void **state)
{
    (void)state;
    fixture *fx = fx_new();

    run_wide(fx, 1000, 40, 3);
    assert_int_equal(fx->nev, 1);
    assert_wide_sample(ev_at(fx, 0), 40, 3);
    assert_int_equal(track_event_bytes(ev_at(fx, 0)), sizeof(track_event) + ev_at(fx, 0)->text_len +
                                                          128 +
                                                          TRACK_SAMPLE_COLS * sizeof(track_column) +
                                                          3 * TRACK_SAMPLE_COLS * sizeof(uint32_t));
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* Wide rows reach TRACK_SAMPLE_VALUES before TRACK_SAMPLE_ROWS. */
static void test_sample_value_cap(void **state)
{
    (void)state;
    fixture *fx = fx_new();

    run_wide(fx, 1000, 32, 300);
    assert_int_equal(ev_at(fx, 0)->rows, 300);
    assert_wide_sample(ev_at(fx, 0), 32, TRACK_SAMPLE_VALUES / 32);
    assert_int_equal(rows_wanted(fx), TRACK_SAMPLE_VALUES / 32);
    run_wide(fx, 2000, 20, 500);
    assert_wide_sample(ev_at(fx, 1), 20, TRACK_SAMPLE_VALUES / 20); /* 409 rows, 8180 values */
    assert_int_equal(rows_wanted(fx), TRACK_SAMPLE_VALUES / 32 + TRACK_SAMPLE_VALUES / 20);
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
}

/* DataRows longer than the capture: values whose first TRACK_HASH_PREFIX bytes were captured
 * hash as if whole, others count as 0; nothing past the capture is read. */
static void test_sample_cut_row(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};
    uint8_t *big = malloc(5000), *mid = malloc(4000), *small = malloc(300);

    assert_non_null(big);
    assert_non_null(mid);
    assert_non_null(small);
    for (int i = 0; i < 5000; i++)
        big[i] = (uint8_t)('a' + i % 26);
    memset(mid, 'm', 4000);
    memset(small, 's', 300);
    fx->ssink.cap = 4096; /* what the proxy gives the server side */
    c_query(&s, "SELECT a, b, c FROM t");
    client(fx, 1000, &s);
    s_row_desc(&s, order_cols, 3);
    /* 2 + 4 + 3 + 4 + 5000 + ...: the second value is cut after 4083 bytes, the third unseen */
    s_row(&s, (const pval[3]){{"abc", 3, 0}, {big, 5000, 0}, {"tail", 4, 0}}, 3);
    /* the second value is cut after 86 bytes, fewer than TRACK_HASH_PREFIX */
    s_row(&s, (const pval[3]){{mid, 4000, 0}, {small, 300, 0}, {"x", 1, 0}}, 3);
    /* 2 + 4 + 4000 + 4 + 84 = 4094: cut within the third length word */
    s_row(&s, (const pval[3]){{mid, 4000, 0}, {small, 84, 0}, {"y", 1, 0}}, 3);
    s_row(&s, (const pval[3]){{"1", 1, 0}, {"2", 1, 0}, {NULL, 0, 0}}, 3);
    s_complete(&s, "SELECT 4");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    const track_event *ev = ev_at(fx, 0);
    assert_int_equal(ev->sample_rows, 4);
    const uint32_t want[12] = {
        hash_str("abc"),
        track_value_hash(big, 5000),
        0,
        track_value_hash(mid, 4000),
        0,
        0,
        track_value_hash(mid, 4000),
        track_value_hash(small, 84),
        0,
        hash_str("1"),
        hash_str("2"),
        0,
    };
    assert_memory_equal(ev->values, want, sizeof(want));
    assert_int_equal(track_value_hash(big, 5000), track_value_hash(big, TRACK_HASH_PREFIX));
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);

    /* a smaller capture cuts the RowDescription too: the columns it cut off stay unknown */
    fx = fx_new();
    fx->ssink.cap = 1024;
    coldef cols[32];
    char names[32][64];
    pval v[32];
    for (int k = 0; k < 32; k++) {
        memset(names[k], '0' + k % 10, 63); /* the longest name PostgreSQL sends */
        names[k][0] = (char)('0' + k / 10);
        names[k][63] = '\0';
        cols[k] = (coldef){names[k], 16500, (int16_t)(k + 1), 25, 0};
        v[k] = (pval){names[k], 2, 0};
    }
    c_query(&s, "SELECT * FROM long_names");
    client(fx, 1000, &s);
    s_row_desc(&s, cols, 32); /* 2 + 32 * 82 bytes */
    s_row(&s, v, 32);
    s_complete(&s, "SELECT 1");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    ev = ev_at(fx, 0);
    assert_int_equal(ev->n_columns, 32);
    assert_string_equal(ev->columns[0].name, names[0]);
    assert_int_equal(ev->columns[11].table_oid, 16500); /* 2 + 12 * 82 = 986 bytes */
    assert_int_equal(ev->columns[11].attnum, 12);
    assert_int_equal(ev->columns[12].table_oid, 0);
    assert_string_equal(ev->columns[12].name, "");
    assert_int_equal(ev->columns[31].attnum, 0);
    assert_int_equal(ev->sample_rows, 1);
    for (int k = 0; k < 32; k++)
        assert_int_equal(ev->values[k], track_value_hash(names[k], 2));
    assert_int_equal(desyncs(fx), 0);
    fx_free(fx);
    free(big);
    free(mid);
    free(small);
}

/* DataRows that do not fit their RowDescription: desync, then back in step. Random bodies for
 * RowDescription and DataRow: no crash, back in step. */
static void test_sample_malformed(void **state)
{
    (void)state;
    static const raw_msg bad[] = {
        {'D', "", 0},
        {'D', "\0", 1},
        {'D', "\0\2\0\0\0\1x", 7},                    /* one column of two */
        {'D', "\0\3\0\0\0\1x\0\0\0\1y\0\0\0\1z", 17}, /* three columns of two */
        {'D', "\0\2\0\0\0\x50x\0\0\0\1y", 12},        /* a length past the end */
        {'D', "\0\2\xff\xff\xff\xfe\0\0\0\1y", 11},   /* a length below -1 */
        {'D', "\0\2\0\0\0\1x\0\0\0\1yz", 13},         /* bytes after the values */
        {'D', "\0\2\0\0\0\1x\0\0", 9},                /* a length word cut short */
    };
    const coldef two[2] = {{"a", 1, 1, 25, 0}, {"b", 1, 2, 25, 0}};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fixture *fx = fx_new();
        bytes s = {0};
        c_query(&s, "SELECT a, b FROM t");
        client(fx, 1000, &s);
        s_row_desc(&s, two, 2);
        s_row(&s, (const pval[2]){{"1", 1, 0}, {"2", 1, 0}}, 2);
        m_raw(&s, bad[i].type, bad[i].body, bad[i].len);
        server(fx, 1100, &s);
        assert_int_equal(desyncs(fx), 1);
        s_row(&s, (const pval[2]){{"1", 1, 0}, {"2", 1, 0}}, 2);
        s_complete(&s, "SELECT 3");
        s_ready(&s, 'I');
        server(fx, 1200, &s);
        assert_int_equal(fx->nev, 0);
        assert_in_step(fx, 2000);
        assert_int_equal(desyncs(fx), 1);
        fx_free(fx);
    }
    for (int iter = 0; iter < 500; iter++) {
        fixture *fx = fx_new();
        bytes s = {0};
        bool row = iter % 2;
        c_query(&s, "SELECT a, b FROM t");
        client(fx, 1000, &s);
        if (row)
            s_row_desc(&s, two, 2);
        m_begin(&s, row ? 'D' : 'T');
        b_u16(&s, (uint16_t)(rnd() % 4)); /* a plausible count, then anything */
        random_body(&s, random_len());
        m_end(&s);
        if (rnd() % 2)
            s_complete(&s, "SELECT 1");
        s_ready(&s, 'I');
        server(fx, 1100, &s);
        assert_true(desyncs(fx) <= 1);
        for (size_t i = 0; i < fx->nev; i++)
            assert_event_sane(fx->ev[i], &fx->lim);
        assert_in_step(fx, 2000);
        fx_free(fx);
    }
}

/* An error after some rows: the event carries the sample of the rows that passed. */
static void test_sample_error_after_rows(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "SELECT id, customer_id, note FROM orders WHERE 1 / (id - 3) > 0");
    client(fx, 1000, &s);
    s_row_desc(&s, order_cols, 3);
    send_order_rows(&s, 1, 2);
    s_error(&s, "22012");
    s_ready(&s, 'I');
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 1);
    assert_string_equal(ev_at(fx, 0)->sqlstate, "22012");
    assert_order_columns(ev_at(fx, 0));
    assert_order_rows(ev_at(fx, 0), 1, 2);

    c_exec_params(&s, "", "SELECT id, customer_id, note FROM orders WHERE 1 / (id - $1) > 0", "2");
    client(fx, 3000, &s);
    m_empty(&s, '1');
    m_empty(&s, '2');
    s_row_desc(&s, order_cols, 3);
    send_order_rows(&s, 1, 1);
    s_error(&s, "22012");
    s_ready(&s, 'I');
    server(fx, 3100, &s);
    assert_int_equal(fx->nev, 2);
    assert_string_equal(ev_at(fx, 1)->sqlstate, "22012");
    assert_order_columns(ev_at(fx, 1));
    assert_order_rows(ev_at(fx, 1), 1, 1);
    assert_int_equal(desyncs(fx), 0);
    assert_in_step(fx, 4000);
    fx_free(fx);
}

/* Events waiting for their ReadyForQuery hold a bounded number of sampled values: the oldest
 * go out early (without the transaction status) when a Query has many large results. */
static void test_sample_held_bounded(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0};

    c_query(&s, "SELECT * FROM wide; SELECT * FROM wide; ...");
    client(fx, 1000, &s);
    for (int i = 0; i < 6; i++) {
        wide_result(&s, 32, 256);
        s_complete(&s, "SELECT 256");
    }
    server(fx, 2000, &s);
    assert_int_equal(fx->nev, 2); /* four full samples may wait */
    s_ready(&s, 'T');
    server(fx, 2100, &s);
    assert_int_equal(fx->nev, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(ev_at(fx, i)->stmt_index, i);
        assert_int_equal(ev_at(fx, i)->txn_status, i < 2 ? 0 : 'T');
        assert_wide_sample(ev_at(fx, i), 32, 256);
    }
    fx_free(fx);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#endif

/* Bytes the heap holds, to show that a long result allocates nothing. */
#if defined(TEST_ASAN)
size_t __sanitizer_get_current_allocated_bytes(void); /* in the ASan runtime */
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}
#else
static size_t heap_in_use(void)
{
    return 0; /* not measurable here: the row counts below still show the hot path */
}
#endif

/* A million DataRows of 100 bytes: only the first TRACK_SAMPLE_ROWS are captured, and the
 * connection's allocations do not grow with the result. */
static void test_sample_million_rows(void **state)
{
    (void)state;
    fixture *fx = fx_new();
    bytes s = {0}, rows = {0};
    char value[95];
    const int chunk = 10000, chunks = 100;

    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    for (int i = 0; i < chunk; i++)
        s_data_row(&rows, value); /* 2 + 4 + 94 bytes of body */
    assert_int_equal(rows.n, (size_t)chunk * 105);
    c_query(&s, "SELECT v FROM big");
    client(fx, 1000, &s);
    s_row_description(&s);
    server(fx, 1100, &s);
    feed_range(fx, WIRE_FROM_SERVER, 1200, rows.b, rows.n);
    size_t heap = heap_in_use();
    for (int i = 1; i < chunks; i++)
        feed_range(fx, WIRE_FROM_SERVER, 1200 + i, rows.b, rows.n);
    assert_int_equal(heap_in_use(), heap);
    assert_int_equal(rows_wanted(fx), TRACK_SAMPLE_ROWS);
    assert_int_equal(fx->sref.rows_delivered, TRACK_SAMPLE_ROWS);
    s_complete(&s, "SELECT 1000000");
    s_ready(&s, 'I');
    server(fx, 5000, &s);
    assert_int_equal(fx->nev, 1);
    assert_int_equal(ev_at(fx, 0)->rows, 1000000);
    assert_int_equal(ev_at(fx, 0)->sample_rows, TRACK_SAMPLE_ROWS);
    assert_int_equal(ev_at(fx, 0)->values[999], hash_str(value));
    assert_int_equal(desyncs(fx), 0);
    b_free(&rows);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_query_single),
        cmocka_unit_test(test_simple_query_multi_statement),
        cmocka_unit_test(test_command_tags),
        cmocka_unit_test(test_simple_query_error_midway),
        cmocka_unit_test(test_empty_query),
        cmocka_unit_test(test_pipelined_simple_queries),
        cmocka_unit_test(test_extended_unnamed),
        cmocka_unit_test(test_named_statement_reused),
        cmocka_unit_test(test_pipeline_three_groups),
        cmocka_unit_test(test_pipeline_execute_error),
        cmocka_unit_test(test_pipeline_parse_error_skips_to_sync),
        cmocka_unit_test(test_error_before_rest_of_group),
        cmocka_unit_test(test_query_destroys_unnamed_statement),
        cmocka_unit_test(test_portal_suspended),
        cmocka_unit_test(test_copy_from_stdin_simple),
        cmocka_unit_test(test_copy_from_stdin_extended),
        cmocka_unit_test(test_copy_to_stdout),
        cmocka_unit_test(test_function_call),
        cmocka_unit_test(test_application_name_change),
        cmocka_unit_test(test_txn_status),
        cmocka_unit_test(test_text_truncated),
        cmocka_unit_test(test_params_kinds),
        cmocka_unit_test(test_param_types_declared_and_described),
        cmocka_unit_test(test_param_types_too_many),
        cmocka_unit_test(test_params_too_many),
        cmocka_unit_test(test_params_beyond_capture),
        cmocka_unit_test(test_param_next_rejects_bad_encoding),
        cmocka_unit_test(test_close_statement_then_reuse_name),
        cmocka_unit_test(test_max_prepared_eviction),
        cmocka_unit_test(test_long_statement_names),
        cmocka_unit_test(test_many_prepared_statements),
        cmocka_unit_test(test_bind_name_beyond_capture),
        cmocka_unit_test(test_max_pending_overflow),
        cmocka_unit_test(test_held_events_bounded),
        cmocka_unit_test(test_unexpected_responses),
        cmocka_unit_test(test_fatal_error_ends_connection),
        cmocka_unit_test(test_disconnect_carries_desyncs),
        cmocka_unit_test(test_malformed_client_bodies),
        cmocka_unit_test(test_malformed_server_bodies),
        cmocka_unit_test(test_random_bodies_recover),
        cmocka_unit_test(test_random_conversations),
        cmocka_unit_test(test_random_wellformed_conversations),
        cmocka_unit_test(test_startup_and_disconnect),
        cmocka_unit_test(test_search_path_none),
        cmocka_unit_test(test_search_path_parameter),
        cmocka_unit_test(test_search_path_options_c),
        cmocka_unit_test(test_search_path_options_c_joined),
        cmocka_unit_test(test_search_path_options_long_form),
        cmocka_unit_test(test_search_path_options_escaped_space),
        cmocka_unit_test(test_search_path_options_last_wins),
        cmocka_unit_test(test_search_path_options_other_settings_ignored),
        cmocka_unit_test(test_search_path_parameter_wins_over_options),
        cmocka_unit_test(test_search_path_too_long_dropped),
        cmocka_unit_test(test_search_path_only_on_connect),
        cmocka_unit_test(test_want),
        cmocka_unit_test(test_split_at_every_offset),
        cmocka_unit_test(test_value_hash),
        cmocka_unit_test(test_sample_simple_query),
        cmocka_unit_test(test_sample_extended_unnamed),
        cmocka_unit_test(test_sample_named_described_once),
        cmocka_unit_test(test_sample_describe_portal_each_time),
        cmocka_unit_test(test_sample_row_cap),
        cmocka_unit_test(test_sample_portal_suspended),
        cmocka_unit_test(test_sample_many_columns),
        cmocka_unit_test(test_sample_value_cap),
        cmocka_unit_test(test_sample_cut_row),
        cmocka_unit_test(test_sample_malformed),
        cmocka_unit_test(test_sample_error_after_rows),
        cmocka_unit_test(test_sample_held_bounded),
        cmocka_unit_test(test_sample_million_rows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
