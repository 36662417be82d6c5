/* Unit tests for the wire module: framing, the first packet, authentication rewriting, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/wire.h"

/* ---- building byte streams ---- */

#define MAX_MSGS 32

/* Bytes under construction, with the offset at which each of its messages starts. */
typedef struct {
    uint8_t b[16384];
    size_t n;
    size_t starts[MAX_MSGS];
    size_t count;
    size_t open; /* where the message or packet being written starts */
} stream;

static void s_u8(stream *s, uint8_t v)
{
    assert_true(s->n < sizeof(s->b));
    s->b[s->n++] = v;
}

static void s_u16(stream *s, uint16_t v)
{
    s_u8(s, (uint8_t)(v >> 8));
    s_u8(s, (uint8_t)v);
}

static void s_u32(stream *s, uint32_t v)
{
    s_u16(s, (uint16_t)(v >> 16));
    s_u16(s, (uint16_t)v);
}

static void s_bytes(stream *s, const void *p, size_t n)
{
    assert_true(n <= sizeof(s->b) - s->n);
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

/* A string with its terminating NUL. */
static void s_str(stream *s, const char *str)
{
    s_bytes(s, str, strlen(str) + 1);
}

static void set_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A typed message: type byte, then a length field fixed by msg_end. */
static void msg_begin(stream *s, uint8_t type)
{
    assert_true(s->count < MAX_MSGS);
    s->starts[s->count++] = s->n;
    s->open = s->n;
    s_u8(s, type);
    s_u32(s, 0);
}

static void msg_end(stream *s)
{
    set_u32(s->b + s->open + 1, (uint32_t)(s->n - s->open - 1));
}

/* A message with the given type and no body. */
static void msg_empty(stream *s, uint8_t type)
{
    msg_begin(s, type);
    msg_end(s);
}

/* An untyped first packet: a length field fixed by pkt_end, then the code. */
static void pkt_begin(stream *s, uint32_t code)
{
    s->open = s->n;
    s_u32(s, 0);
    s_u32(s, code);
}

static void pkt_end(stream *s)
{
    set_u32(s->b + s->open, (uint32_t)(s->n - s->open));
}

static void client_stream(stream *s)
{
    memset(s, 0, sizeof(*s));
    msg_begin(s, 'P'); /* Parse */
    s_str(s, "");
    s_str(s, "SELECT $1::int4 + 1");
    s_u16(s, 1);
    s_u32(s, 23);
    msg_end(s);
    msg_begin(s, 'B'); /* Bind */
    s_str(s, "");
    s_str(s, "");
    s_u16(s, 0);
    s_u16(s, 1);
    s_u32(s, 1);
    s_bytes(s, "7", 1);
    s_u16(s, 0);
    msg_end(s);
    msg_begin(s, 'D'); /* Describe portal */
    s_u8(s, 'P');
    s_str(s, "");
    msg_end(s);
    msg_begin(s, 'E'); /* Execute */
    s_str(s, "");
    s_u32(s, 0);
    msg_end(s);
    msg_empty(s, 'S'); /* Sync */
    msg_begin(s, 'Q');
    s_str(s, "COPY t FROM STDIN");
    msg_end(s);
    msg_begin(s, 'd');
    s_bytes(s, "1\tfoo\n", 6);
    msg_end(s);
    msg_begin(s, 'd');
    s_bytes(s, "2\tbar\n", 6);
    msg_end(s);
    msg_empty(s, 'c'); /* CopyDone */
    /* no Terminate: it ends the stream (test_terminate_stops_the_client_stream) */
}

static void server_stream(stream *s)
{
    memset(s, 0, sizeof(*s));
    msg_empty(s, '1'); /* ParseComplete */
    msg_empty(s, '2'); /* BindComplete */
    msg_begin(s, 'T'); /* RowDescription */
    s_u16(s, 1);
    s_str(s, "?column?");
    s_u32(s, 0);
    s_u16(s, 0);
    s_u32(s, 23);
    s_u16(s, 4);
    s_u32(s, 0xffffffffu);
    s_u16(s, 0);
    msg_end(s);
    msg_begin(s, 'D'); /* DataRow */
    s_u16(s, 1);
    s_u32(s, 1);
    s_bytes(s, "8", 1);
    msg_end(s);
    msg_begin(s, 'C'); /* CommandComplete */
    s_str(s, "SELECT 1");
    msg_end(s);
    msg_begin(s, 0xfe); /* a type no protocol version has */
    s_bytes(s, "\x00\x01\x02", 3);
    msg_end(s);
    msg_begin(s, 'Z'); /* ReadyForQuery */
    s_u8(s, 'I');
    msg_end(s);
}

/* ---- framer expectations ---- */

static bool at_message_start_or_end(const stream *s, size_t pos)
{
    if (pos == s->n)
        return true;
    for (size_t i = 0; i < s->count; i++)
        if (s->starts[i] == pos)
            return true;
    return false;
}

/* Messages whose five header bytes lie within the first pos bytes. */
static uint64_t headers_within(const stream *s, size_t pos)
{
    uint64_t c = 0;

    for (size_t i = 0; i < s->count; i++)
        if (s->starts[i] + WIRE_HEADER_LEN <= pos)
            c++;
    return c;
}

/* The state after the first pos bytes of s, whatever the chunks they came in. */
static void assert_framer_state(const wire_framer *f, const stream *s, size_t pos)
{
    assert_int_equal(wire_framer_at_boundary(f), at_message_start_or_end(s, pos));
    assert_int_equal(f->messages, headers_within(s, pos));
    if (f->remaining > 0) {
        size_t i = (size_t)f->messages - 1;
        assert_int_equal(f->type, s->b[s->starts[i]]);
        assert_int_equal(pos + f->remaining, i + 1 < s->count ? s->starts[i + 1] : s->n);
    }
}

static void feed_whole(wire_side side, const stream *s)
{
    wire_framer f;
    size_t bad_at = 12345;

    wire_framer_init(&f, side);
    assert_true(wire_framer_at_boundary(&f));
    assert_int_equal(wire_framer_feed(&f, s->b, s->n, &bad_at), WIRE_OK);
    assert_int_equal(bad_at, 12345);
    assert_int_equal(f.messages, s->count);
    assert_framer_state(&f, s, s->n);
}

static void feed_split_everywhere(wire_side side, const stream *s)
{
    for (size_t k = 0; k <= s->n; k++) {
        wire_framer f;
        size_t bad_at;

        wire_framer_init(&f, side);
        assert_int_equal(wire_framer_feed(&f, s->b, k, &bad_at), WIRE_OK);
        assert_framer_state(&f, s, k);
        assert_int_equal(wire_framer_feed(&f, s->b + k, s->n - k, &bad_at), WIRE_OK);
        assert_int_equal(f.messages, s->count);
        assert_framer_state(&f, s, s->n);
    }
}

static void feed_byte_by_byte(wire_side side, const stream *s)
{
    wire_framer f;
    size_t bad_at;

    wire_framer_init(&f, side);
    for (size_t i = 0; i < s->n; i++) {
        assert_int_equal(wire_framer_feed(&f, s->b + i, 1, &bad_at), WIRE_OK);
        assert_framer_state(&f, s, i + 1);
    }
    assert_int_equal(f.messages, s->count);
}

/* ---- framing: realistic streams ---- */

static void test_client_stream_fed_whole(void **state)
{
    (void)state;
    stream s;
    client_stream(&s);
    feed_whole(WIRE_FROM_CLIENT, &s);
}

static void test_client_stream_split_at_every_offset(void **state)
{
    (void)state;
    stream s;
    client_stream(&s);
    feed_split_everywhere(WIRE_FROM_CLIENT, &s);
}

static void test_client_stream_fed_byte_by_byte(void **state)
{
    (void)state;
    stream s;
    client_stream(&s);
    feed_byte_by_byte(WIRE_FROM_CLIENT, &s);
}

static void test_server_stream_fed_whole(void **state)
{
    (void)state;
    stream s;
    server_stream(&s);
    feed_whole(WIRE_FROM_SERVER, &s);
}

static void test_server_stream_split_at_every_offset(void **state)
{
    (void)state;
    stream s;
    server_stream(&s);
    feed_split_everywhere(WIRE_FROM_SERVER, &s);
}

static void test_server_stream_fed_byte_by_byte(void **state)
{
    (void)state;
    stream s;
    server_stream(&s);
    feed_byte_by_byte(WIRE_FROM_SERVER, &s);
}

static void test_server_accepts_every_type_byte(void **state)
{
    (void)state;
    for (unsigned t = 0; t <= 0xff; t++)
        assert_int_equal(wire_check_header(WIRE_FROM_SERVER, (uint8_t)t, 4), WIRE_OK);
}

static void test_empty_feed_is_ok_and_changes_nothing(void **state)
{
    (void)state;
    wire_framer f;
    size_t bad_at = 7;

    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, (const uint8_t *)"", 0, &bad_at), WIRE_OK);
    assert_int_equal(bad_at, 7);
    assert_true(wire_framer_at_boundary(&f));
    assert_int_equal(f.messages, 0);
}

static void test_partial_header_is_not_a_boundary(void **state)
{
    (void)state;
    wire_framer f;
    size_t bad_at;

    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, (const uint8_t *)"S\0\0", 3, &bad_at), WIRE_OK);
    assert_false(wire_framer_at_boundary(&f));
    assert_int_equal(f.hdr_have, 3);
    assert_int_equal(f.messages, 0);
    assert_int_equal(wire_framer_feed(&f, (const uint8_t *)"\0\x04", 2, &bad_at), WIRE_OK);
    assert_true(wire_framer_at_boundary(&f));
    assert_int_equal(f.messages, 1);
}

/* ---- framing: the client's Terminate ends its stream ---- */

/* Terminate then a queued query (node-postgres's end() in its connect callback): the framer stops
 * right after the Terminate, whatever chunks the bytes come in. */
static void test_terminate_stops_the_client_stream(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    msg_empty(&s, 'S');
    msg_empty(&s, 'X');
    size_t end = s.n;
    msg_empty(&s, 'S');
    s_bytes(&s, "\x01garbage", 8);
    for (size_t split = 0; split <= s.n; split++) {
        wire_framer f;
        size_t stop = SIZE_MAX;
        wire_framer_init(&f, WIRE_FROM_CLIENT);
        wire_error err = wire_framer_feed(&f, s.b, split, &stop);
        if (err == WIRE_OK) { /* the Terminate ends in the second chunk */
            err = wire_framer_feed(&f, s.b + split, s.n - split, &stop);
            stop += split;
        }
        assert_int_equal(err, WIRE_TERMINATED);
        assert_int_equal(stop, end);
        assert_true(f.terminated);
        assert_int_equal(f.messages, 2);
        assert_int_equal(wire_framer_feed(&f, s.b + end, s.n - end, &stop), WIRE_TERMINATED);
        assert_int_equal(stop, 0);
    }
}

/* A Terminate with a body (legal for the server, which reads it whole) ends after the body. */
static void test_terminate_with_body_ends_after_it(void **state)
{
    (void)state;
    static const uint8_t b[] = {'X', 0, 0, 0, 6, 'a', 'b', 'Q'};
    wire_framer f;
    size_t stop = SIZE_MAX;

    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, b, sizeof(b), &stop), WIRE_TERMINATED);
    assert_int_equal(stop, 7);
}

/* 'X' from the server is not a Terminate (it is no backend message, but framed like any). */
static void test_server_x_is_not_terminate(void **state)
{
    (void)state;
    static const uint8_t b[] = {'X', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'I'};
    wire_framer f;
    size_t stop = SIZE_MAX;

    wire_framer_init(&f, WIRE_FROM_SERVER);
    assert_int_equal(wire_framer_feed(&f, b, sizeof(b), &stop), WIRE_OK);
    assert_int_equal(f.messages, 2);
    assert_false(f.terminated);
}

/* ---- framing: bad headers ---- */

/* Feeds header (type, len) alone on side and returns the framer's verdict. */
static wire_error feed_header(wire_side side, uint8_t type, uint32_t len)
{
    uint8_t h[WIRE_HEADER_LEN] = {type};
    wire_framer f;
    size_t bad_at = 99;

    set_u32(h + 1, len);
    wire_framer_init(&f, side);
    wire_error err = wire_framer_feed(&f, h, sizeof(h), &bad_at);
    if (err == WIRE_TERMINATED) { /* an empty Terminate: framed, and the end of the stream */
        assert_int_equal(len, 4);
        assert_int_equal(bad_at, WIRE_HEADER_LEN);
        return WIRE_OK;
    }
    if (err != WIRE_OK) {
        assert_int_equal(bad_at, 0);
        assert_int_equal(f.messages, 0);
    } else {
        assert_int_equal(f.messages, 1);
        assert_int_equal(f.remaining, len - 4);
    }
    return err;
}

static void test_client_query_above_large_limit_rejected(void **state)
{
    (void)state;
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'Q', WIRE_LARGE_MSG_MAX), WIRE_OK);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'Q', WIRE_LARGE_MSG_MAX + 1),
                     WIRE_ERR_LONG_LENGTH);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'Q', 0xffffffffu), WIRE_ERR_LONG_LENGTH);
}

static void test_client_sync_above_small_limit_rejected(void **state)
{
    (void)state;
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'S', WIRE_SMALL_MSG_MAX), WIRE_OK);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'S', WIRE_SMALL_MSG_MAX + 1),
                     WIRE_ERR_LONG_LENGTH);
}

static void test_client_password_above_65535_rejected(void **state)
{
    (void)state;
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'p', 65535), WIRE_OK);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'p', 65536), WIRE_ERR_LONG_LENGTH);
}

static void test_server_message_above_1gib_rejected(void **state)
{
    (void)state;
    assert_int_equal(feed_header(WIRE_FROM_SERVER, 'D', 0x40000000u), WIRE_OK);
    assert_int_equal(feed_header(WIRE_FROM_SERVER, 'D', 0x40000001u), WIRE_ERR_LONG_LENGTH);
    assert_int_equal(feed_header(WIRE_FROM_SERVER, 'T', 0xffffffffu), WIRE_ERR_LONG_LENGTH);
}

static void test_lengths_below_4_rejected_both_sides(void **state)
{
    (void)state;
    for (uint32_t len = 0; len < 4; len++) {
        assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'Q', len), WIRE_ERR_SHORT_LENGTH);
        assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'S', len), WIRE_ERR_SHORT_LENGTH);
        assert_int_equal(feed_header(WIRE_FROM_SERVER, 'Z', len), WIRE_ERR_SHORT_LENGTH);
    }
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'S', 4), WIRE_OK);
}

static void test_unknown_client_types_rejected(void **state)
{
    (void)state;
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'Z', 5), WIRE_ERR_UNKNOWN_TYPE);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 0x00, 4), WIRE_ERR_UNKNOWN_TYPE);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 0xff, 4), WIRE_ERR_UNKNOWN_TYPE);
    assert_int_equal(feed_header(WIRE_FROM_CLIENT, 'T', 4), WIRE_ERR_UNKNOWN_TYPE);
}

static void test_every_frontend_type_accepted_and_no_other(void **state)
{
    (void)state;
    static const char valid[] = "BCDEFHPQSXcdfp";

    for (unsigned t = 0; t <= 0xff; t++) {
        bool known = t != 0 && strchr(valid, (int)t) != NULL;
        wire_error err = wire_check_header(WIRE_FROM_CLIENT, (uint8_t)t, 4);
        assert_int_equal(err, known ? WIRE_OK : WIRE_ERR_UNKNOWN_TYPE);
        assert_int_equal(feed_header(WIRE_FROM_CLIENT, (uint8_t)t, 4), err);
    }
}

static void test_check_header_limit_per_type(void **state)
{
    (void)state;
    static const char large[] = "QPBFd", small[] = "EDCHScfX";

    for (const char *t = large; *t; t++) {
        assert_int_equal(wire_check_header(WIRE_FROM_CLIENT, (uint8_t)*t, WIRE_LARGE_MSG_MAX),
                         WIRE_OK);
        assert_int_equal(wire_check_header(WIRE_FROM_CLIENT, (uint8_t)*t, WIRE_LARGE_MSG_MAX + 1),
                         WIRE_ERR_LONG_LENGTH);
    }
    for (const char *t = small; *t; t++) {
        assert_int_equal(wire_check_header(WIRE_FROM_CLIENT, (uint8_t)*t, WIRE_SMALL_MSG_MAX),
                         WIRE_OK);
        assert_int_equal(wire_check_header(WIRE_FROM_CLIENT, (uint8_t)*t, WIRE_SMALL_MSG_MAX + 1),
                         WIRE_ERR_LONG_LENGTH);
    }
}

/* Query and Sync, then a Sync announcing a body above the small limit. */
static void stream_with_bad_sync(stream *s, size_t *bad_start)
{
    memset(s, 0, sizeof(*s));
    msg_begin(s, 'Q');
    s_str(s, "SELECT 1");
    msg_end(s);
    msg_empty(s, 'S');
    *bad_start = s->n;
    s_u8(s, 'S');
    s_u32(s, WIRE_SMALL_MSG_MAX + 1);
    s_bytes(s, "trailing", 8);
}

static void test_bad_header_reported_at_its_start_after_good_messages(void **state)
{
    (void)state;
    stream s;
    size_t bad_start, bad_at = 0;
    wire_framer f;

    stream_with_bad_sync(&s, &bad_start);
    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, s.b, s.n, &bad_at), WIRE_ERR_LONG_LENGTH);
    assert_int_equal(bad_at, bad_start);
    assert_int_equal(f.messages, 2);
}

static void test_bad_header_split_over_two_chunks_reported_at_zero(void **state)
{
    (void)state;
    stream s;
    size_t bad_start, bad_at = 99;
    wire_framer f;

    stream_with_bad_sync(&s, &bad_start);
    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, s.b, bad_start + 2, &bad_at), WIRE_OK);
    assert_int_equal(bad_at, 99);
    assert_int_equal(f.messages, 2);
    assert_int_equal(wire_framer_feed(&f, s.b + bad_start + 2, s.n - bad_start - 2, &bad_at),
                     WIRE_ERR_LONG_LENGTH);
    assert_int_equal(bad_at, 0);
    assert_int_equal(f.messages, 2);
}

static void test_bad_header_found_whatever_the_split(void **state)
{
    (void)state;
    stream s;
    size_t bad_start;

    stream_with_bad_sync(&s, &bad_start);
    for (size_t k = 0; k <= s.n; k++) {
        wire_framer f;
        size_t bad_at = 99;

        wire_framer_init(&f, WIRE_FROM_CLIENT);
        wire_error err = wire_framer_feed(&f, s.b, k, &bad_at);
        if (k >= bad_start + WIRE_HEADER_LEN) {
            assert_int_equal(err, WIRE_ERR_LONG_LENGTH);
            assert_int_equal(bad_at, bad_start);
        } else {
            assert_int_equal(err, WIRE_OK);
            err = wire_framer_feed(&f, s.b + k, s.n - k, &bad_at);
            assert_int_equal(err, WIRE_ERR_LONG_LENGTH);
            assert_int_equal(bad_at, k <= bad_start ? bad_start - k : 0);
        }
        assert_int_equal(f.messages, 2);
    }
}

static void test_unknown_type_after_good_message_reported_at_its_start(void **state)
{
    (void)state;
    stream s;
    size_t bad_at = 0;
    wire_framer f;

    memset(&s, 0, sizeof(s));
    msg_empty(&s, 'S');
    msg_empty(&s, 'Z');
    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, s.b, s.n, &bad_at), WIRE_ERR_UNKNOWN_TYPE);
    assert_int_equal(bad_at, 5);
    assert_int_equal(f.messages, 1);
}

/* ---- framing: a large body passes without being held ---- */

static void test_100mb_body_streamed_in_64k_chunks(void **state)
{
    (void)state;
    enum { CHUNK = 64 * 1024 };
    static const uint8_t zeros[CHUNK];
    const uint32_t body = 100u * 1024 * 1024;
    uint8_t hdr[WIRE_HEADER_LEN] = {'d'};
    wire_framer f;
    size_t bad_at;

    set_u32(hdr + 1, body + 4);
    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, hdr, sizeof(hdr), &bad_at), WIRE_OK);
    assert_int_equal(f.messages, 1);
    assert_int_equal(f.type, 'd');
    assert_int_equal(f.remaining, body);
    for (uint32_t sent = 0; sent < body; sent += CHUNK) {
        assert_false(wire_framer_at_boundary(&f));
        assert_int_equal(wire_framer_feed(&f, zeros, CHUNK, &bad_at), WIRE_OK);
        assert_int_equal(f.remaining, body - sent - CHUNK);
        assert_int_equal(f.messages, 1);
    }
    assert_true(wire_framer_at_boundary(&f));
    assert_int_equal(wire_framer_feed(&f, (const uint8_t *)"S\0\0\0\x04", 5, &bad_at), WIRE_OK);
    assert_int_equal(f.messages, 2);
    assert_true(wire_framer_at_boundary(&f));
}

static void test_body_and_next_header_in_one_chunk(void **state)
{
    (void)state;
    static const uint8_t rest[] = {'x', 'y', 'S', 0, 0, 0, 4, 'H', 0, 0};
    wire_framer f;
    size_t bad_at;

    wire_framer_init(&f, WIRE_FROM_CLIENT);
    assert_int_equal(wire_framer_feed(&f, (const uint8_t *)"d\0\0\0\x06", 5, &bad_at), WIRE_OK);
    assert_int_equal(f.remaining, 2);
    assert_int_equal(wire_framer_feed(&f, rest, sizeof(rest), &bad_at), WIRE_OK);
    assert_int_equal(f.messages, 2);
    assert_int_equal(f.hdr_have, 3);
    assert_false(wire_framer_at_boundary(&f));
}

static void test_get_u32_is_big_endian(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x12, 0x34, 0x56, 0x78, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(wire_get_u32(b), 0x12345678u);
    assert_int_equal(wire_get_u32(b + 4), 0xffffffffu);
}

static void test_error_str_names_each_error(void **state)
{
    (void)state;
    const wire_error all[] = {WIRE_OK, WIRE_ERR_SHORT_LENGTH, WIRE_ERR_LONG_LENGTH,
                              WIRE_ERR_UNKNOWN_TYPE};
    for (size_t i = 0; i < 4; i++) {
        assert_non_null(wire_error_str(all[i]));
        assert_true(strlen(wire_error_str(all[i])) > 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(wire_error_str(all[i]), wire_error_str(all[j]));
    }
}

/* ---- the first packet ---- */

static void ssl_request(stream *s)
{
    memset(s, 0, sizeof(*s));
    pkt_begin(s, WIRE_CODE_SSL);
    pkt_end(s);
}

static void gssenc_request(stream *s)
{
    memset(s, 0, sizeof(*s));
    pkt_begin(s, WIRE_CODE_GSSENC);
    pkt_end(s);
}

static void cancel_request(stream *s, size_t key_len)
{
    memset(s, 0, sizeof(*s));
    pkt_begin(s, WIRE_CODE_CANCEL);
    s_u32(s, 4242); /* process id */
    for (size_t i = 0; i < key_len; i++)
        s_u8(s, (uint8_t)(0xa0 + i));
    pkt_end(s);
}

static void startup_v3(stream *s, uint32_t version)
{
    memset(s, 0, sizeof(*s));
    pkt_begin(s, version);
    s_str(s, "user");
    s_str(s, "alice");
    s_str(s, "database");
    s_str(s, "shop");
    s_str(s, "options");
    s_str(s, "-c search_path=app");
    s_str(s, "replication");
    s_str(s, "database");
    s_str(s, "application_name");
    s_str(s, "");
    s_u8(s, 0);
    pkt_end(s);
}

/* The fixed 296-byte StartupPacket of protocols 1 and 2. */
static void startup_old(stream *s, uint32_t version)
{
    memset(s, 0, sizeof(*s));
    pkt_begin(s, version);
    s_str(s, "shop");
    s->n = 8 + 64;
    s_str(s, "alice");
    s->n = 8 + 64 + 32 + 64 + 64 + 64;
    pkt_end(s);
    assert_int_equal(s->n, 296);
}

/* PostgreSQL closes without a word: no SQLSTATE, a reason for the log. */
static void assert_closed(const wire_first *r)
{
    assert_int_equal(r->kind, WIRE_FIRST_BAD);
    assert_null(r->sqlstate);
    assert_true(r->message[0] != '\0');
    assert_non_null(memchr(r->message, '\0', sizeof(r->message)));
}

/* PostgreSQL refuses the protocol version with exactly this text. */
static void assert_unsupported(const wire_first *r, const char *message)
{
    assert_int_equal(r->kind, WIRE_FIRST_UNSUPPORTED);
    assert_string_equal(r->sqlstate, "0A000");
    assert_string_equal(r->message, message);
}

/* A StartupMessage forwarded for the server to refuse: pgscope reads none of its parameters. */
static void assert_malformed_startup(const wire_first *r)
{
    assert_int_equal(r->kind, WIRE_FIRST_STARTUP);
    assert_false(r->params_ok);
}

/* Every proper prefix asks for more, and the whole packet gives kind. */
static void assert_prefixes_need_more(const stream *s, wire_first_kind kind)
{
    for (size_t n = 0; n < s->n; n++) {
        wire_first r = wire_first_parse(s->b, n);
        assert_int_equal(r.kind, WIRE_FIRST_NEED_MORE);
        if (n >= 4)
            assert_int_equal(r.len, s->n);
    }
    wire_first r = wire_first_parse(s->b, s->n);
    assert_int_equal(r.kind, kind);
    assert_int_equal(r.len, s->n);
}

static void test_first_ssl_request(void **state)
{
    (void)state;
    stream s;
    ssl_request(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_SSL);
    assert_int_equal(r.len, 8);
    assert_int_equal(r.code, WIRE_CODE_SSL);
    assert_null(r.sqlstate);
}

static void test_first_gssenc_request(void **state)
{
    (void)state;
    stream s;
    gssenc_request(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_GSSENC);
    assert_int_equal(r.len, 8);
    assert_int_equal(r.code, WIRE_CODE_GSSENC);
}

/* PostgreSQL reads only the code of an encryption request: a longer one is still one. */
static void test_first_encryption_request_with_payload_read_by_its_code(void **state)
{
    (void)state;
    stream s;

    ssl_request(&s);
    s_u32(&s, 0);
    pkt_end(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_SSL);
    assert_int_equal(r.len, 12);

    gssenc_request(&s);
    s_u32(&s, 0);
    pkt_end(&s);
    r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_GSSENC);
    assert_int_equal(r.len, 12);
}

/* A cancel request goes to the server as it came, whatever its key length: the server judges. */
static void test_first_cancel_of_any_key_length_forwarded(void **state)
{
    (void)state;
    static const size_t keys[] = {0, 3, 4, 8, 256, 257};
    stream s;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        cancel_request(&s, keys[i]);
        wire_first r = wire_first_parse(s.b, s.n);
        assert_int_equal(r.kind, WIRE_FIRST_CANCEL);
        assert_int_equal(r.len, 12 + keys[i]);
        assert_int_equal(r.code, WIRE_CODE_CANCEL);
    }
}

/* A second SSLRequest or GSSENCRequest is read as a protocol version, in PostgreSQL's words. */
static void test_first_repeated_encryption_request_refused_as_protocol(void **state)
{
    (void)state;
    stream s;

    ssl_request(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    wire_first_unsupported(&r);
    assert_unsupported(&r, "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0");
    gssenc_request(&s);
    r = wire_first_parse(s.b, s.n);
    wire_first_unsupported(&r);
    assert_unsupported(&r, "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0");
}

static void test_first_startup_v3_with_params(void **state)
{
    (void)state;
    stream s;
    startup_v3(&s, 0x00030000);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_STARTUP);
    assert_int_equal(r.len, s.n);
    assert_int_equal(r.code, 0x00030000);
    assert_null(r.sqlstate);
}

static void test_startup_param_lookup(void **state)
{
    (void)state;
    stream s;
    startup_v3(&s, 0x00030000);
    assert_int_equal(wire_first_parse(s.b, s.n).kind, WIRE_FIRST_STARTUP);
    assert_string_equal(wire_startup_param(s.b, s.n, "user"), "alice");
    assert_string_equal(wire_startup_param(s.b, s.n, "database"), "shop");
    assert_string_equal(wire_startup_param(s.b, s.n, "options"), "-c search_path=app");
    assert_string_equal(wire_startup_param(s.b, s.n, "replication"), "database");
    assert_string_equal(wire_startup_param(s.b, s.n, "application_name"), "");
}

static void test_startup_param_missing_key_is_null(void **state)
{
    (void)state;
    stream s;
    startup_v3(&s, 0x00030000);
    assert_null(wire_startup_param(s.b, s.n, "client_encoding"));
    assert_null(wire_startup_param(s.b, s.n, "alice")); /* a value, not a name */
    assert_null(wire_startup_param(s.b, s.n, "use"));
    assert_null(wire_startup_param(s.b, s.n, ""));
}

/* PostgreSQL keeps the last value of a repeated parameter (ProcessStartupPacket assigns each one
 * in turn), so the proxy must read the same user as the server it forwards the packet to. */
static void test_startup_param_repeated_key_gives_last_value_like_server(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    s_str(&s, "user");
    s_str(&s, "alice");
    s_str(&s, "user");
    s_str(&s, "postgres");
    s_u8(&s, 0);
    pkt_end(&s);
    assert_int_equal(wire_first_parse(s.b, s.n).kind, WIRE_FIRST_STARTUP);
    assert_string_equal(wire_startup_param(s.b, s.n, "user"), "postgres");
}

static void test_first_protocol_3_2_accepted(void **state)
{
    (void)state;
    stream s;
    startup_v3(&s, 0x00030002);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_STARTUP);
    assert_int_equal(r.code, 0x00030002);
    assert_string_equal(wire_startup_param(s.b, s.n, "user"), "alice");
}

static void test_first_protocol_2_refused_with_0A000(void **state)
{
    (void)state;
    stream s;
    startup_old(&s, 0x00020000);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_unsupported(&r, "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
    assert_int_equal(r.code, 0x00020000);
}

static void test_first_protocol_1_refused_with_0A000(void **state)
{
    (void)state;
    stream s;
    startup_old(&s, 0x00010000);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_unsupported(&r, "unsupported frontend protocol 1.0: server supports 3.0 to 3.0");
}

static void test_first_protocol_4_and_unknown_codes_refused_with_0A000(void **state)
{
    (void)state;
    stream s;
    startup_v3(&s, 0x00040000);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_unsupported(&r, "unsupported frontend protocol 4.0: server supports 3.0 to 3.0");
    uint8_t b[16] = {0, 0, 0, 16, 0x04, 0xd2, 0x12, 0x34};
    r = wire_first_parse(b, sizeof(b));
    assert_unsupported(&r, "unsupported frontend protocol 1234.4660: server supports 3.0 to 3.0");
}

static void test_first_length_below_8_closed(void **state)
{
    (void)state;
    uint8_t b[8];

    for (uint32_t len = 0; len < 8; len++) {
        set_u32(b, len);
        set_u32(b + 4, 0x00030000);
        wire_first r = wire_first_parse(b, 4); /* the length word alone decides */
        assert_closed(&r);
        r = wire_first_parse(b, sizeof(b));
        assert_closed(&r);
    }
}

static void test_first_length_above_max_closed(void **state)
{
    (void)state;
    static const uint32_t lens[] = {WIRE_STARTUP_MAX + 5, 0x7fffffffu, 0xffffffffu};
    uint8_t b[8];

    for (size_t i = 0; i < 3; i++) {
        set_u32(b, lens[i]);
        set_u32(b + 4, 0x00030000);
        wire_first r = wire_first_parse(b, 4);
        assert_closed(&r);
        r = wire_first_parse(b, sizeof(b));
        assert_closed(&r);
    }
}

/* PostgreSQL bounds the packet without its length word, so 10004 bytes in all are legal. */
static void test_first_startup_of_max_length_accepted(void **state)
{
    (void)state;
    stream s;
    char value[WIRE_STARTUP_MAX + 4];

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    s_str(&s, "user");
    s_str(&s, "alice");
    s_str(&s, "options");
    size_t fill = WIRE_STARTUP_MAX + 4 - s.n - 2;
    memset(value, 'x', fill);
    value[fill] = '\0';
    s_str(&s, value);
    s_u8(&s, 0);
    pkt_end(&s);
    assert_int_equal(s.n, WIRE_STARTUP_MAX + 4);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_STARTUP);
    assert_int_equal(strlen(wire_startup_param(s.b, s.n, "options")), fill);
}

static void test_first_startup_without_terminator_forwarded(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    s_str(&s, "user");
    s_str(&s, "alice");
    pkt_end(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_malformed_startup(&r);
}

static void test_first_startup_name_without_value_forwarded(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    s_str(&s, "user");
    s_str(&s, "alice");
    s_str(&s, "database");
    pkt_end(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_malformed_startup(&r);
}

static void test_first_startup_unterminated_value_forwarded(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    s_str(&s, "user");
    s_bytes(&s, "alice", 5);
    pkt_end(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_malformed_startup(&r);
}

static void test_first_startup_bytes_after_terminator_forwarded(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    s_str(&s, "user");
    s_str(&s, "alice");
    s_u8(&s, 0);
    s_str(&s, "x");
    pkt_end(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_malformed_startup(&r);
}

static void test_first_startup_without_payload_forwarded(void **state)
{
    (void)state;
    stream s;

    memset(&s, 0, sizeof(s));
    pkt_begin(&s, 0x00030000);
    pkt_end(&s);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_malformed_startup(&r);
}

static void test_first_prefixes_of_valid_packets_need_more(void **state)
{
    (void)state;
    stream s;

    ssl_request(&s);
    assert_prefixes_need_more(&s, WIRE_FIRST_SSL);
    gssenc_request(&s);
    assert_prefixes_need_more(&s, WIRE_FIRST_GSSENC);
    cancel_request(&s, 4);
    assert_prefixes_need_more(&s, WIRE_FIRST_CANCEL);
    cancel_request(&s, 8);
    assert_prefixes_need_more(&s, WIRE_FIRST_CANCEL);
    cancel_request(&s, 256);
    assert_prefixes_need_more(&s, WIRE_FIRST_CANCEL);
    startup_v3(&s, 0x00030000);
    assert_prefixes_need_more(&s, WIRE_FIRST_STARTUP);
    startup_v3(&s, 0x00030002);
    assert_prefixes_need_more(&s, WIRE_FIRST_STARTUP);
}

static void test_first_bytes_after_the_packet_ignored(void **state)
{
    (void)state;
    stream s;

    startup_v3(&s, 0x00030000);
    size_t len = s.n;
    s_bytes(&s, "Q\0\0\0\x0dSELECT 1", 14);
    wire_first r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_STARTUP);
    assert_int_equal(r.len, len);

    ssl_request(&s);
    s_bytes(&s, "\x16\x03\x01", 3);
    r = wire_first_parse(s.b, s.n);
    assert_int_equal(r.kind, WIRE_FIRST_SSL);
    assert_int_equal(r.len, 8);
}

static void test_first_direct_tls_closed(void **state)
{
    (void)state;
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01,
                                    0x00, 0x01, 0xfc, 0x03, 0x03};

    wire_first r = wire_first_parse(hello, 3);
    assert_int_equal(r.kind, WIRE_FIRST_NEED_MORE);
    r = wire_first_parse(hello, 4);
    assert_closed(&r);
    r = wire_first_parse(hello, sizeof(hello));
    assert_closed(&r);
}

/* ---- authentication ---- */

/* An 'R' message with code and body, its length field set. */
static void auth_msg(stream *s, uint32_t code, const void *body, size_t n)
{
    memset(s, 0, sizeof(*s));
    msg_begin(s, 'R');
    s_u32(s, code);
    s_bytes(s, body, n);
    msg_end(s);
}

#define MECHS(lit) lit, sizeof(lit) - 1

static void test_auth_code_of_ok_md5_and_sasl(void **state)
{
    (void)state;
    stream s;

    auth_msg(&s, WIRE_AUTH_OK, "", 0);
    assert_int_equal(s.n, 9);
    assert_int_equal(wire_auth_code(s.b, s.n), WIRE_AUTH_OK);
    auth_msg(&s, 5, "salt", 4);
    assert_int_equal(wire_auth_code(s.b, s.n), 5);
    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256\0\0"));
    assert_int_equal(wire_auth_code(s.b, s.n), WIRE_AUTH_SASL);
}

static void test_auth_code_rejects_other_messages(void **state)
{
    (void)state;
    stream s;

    auth_msg(&s, WIRE_AUTH_OK, "", 0);
    assert_int_equal(wire_auth_code(s.b, s.n - 1), -1); /* too short */
    s.b[0] = 'E';
    assert_int_equal(wire_auth_code(s.b, s.n), -1); /* not 'R' */
    auth_msg(&s, 5, "salt", 4);
    assert_int_equal(wire_auth_code(s.b, s.n - 1), -1); /* length field disagrees */
    set_u32(s.b + 1, 9);
    assert_int_equal(wire_auth_code(s.b, s.n), -1);
}

static void assert_sasl_rewrite(const void *mechs, size_t n)
{
    static const uint8_t want[] = "R\0\0\0\x17"
                                  "\0\0\0\x0a"
                                  "SCRAM-SHA-256\0";
    stream s;
    uint8_t out[128];

    auth_msg(&s, WIRE_AUTH_SASL, mechs, n);
    memset(out, 0xaa, sizeof(out));
    size_t len = wire_sasl_without_plus(s.b, s.n, out, s.n);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(out, want, sizeof(want)); /* the literal's own NUL ends the list */
    assert_int_equal(wire_get_u32(out + 1), len - 1);
    assert_int_equal(out[len], 0xaa);
    assert_int_equal(wire_auth_code(out, len), WIRE_AUTH_SASL);
}

static void test_sasl_plus_listed_first_is_removed(void **state)
{
    (void)state;
    assert_sasl_rewrite(MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"));
}

static void test_sasl_plus_listed_last_is_removed(void **state)
{
    (void)state;
    assert_sasl_rewrite(MECHS("SCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0\0"));
}

static void test_sasl_without_plus_offer_returns_0(void **state)
{
    (void)state;
    stream s;
    uint8_t out[128];

    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256\0\0"));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUSX\0SCRAM-SHA-256\0\0"));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
    auth_msg(&s, WIRE_AUTH_SASL, MECHS("\0"));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
}

static void test_sasl_missing_terminator_returns_0(void **state)
{
    (void)state;
    stream s;
    uint8_t out[128];

    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0"));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256"));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
}

static void test_sasl_wrong_length_field_returns_0(void **state)
{
    (void)state;
    stream s;
    uint8_t out[128];

    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"));
    set_u32(s.b + 1, (uint32_t)s.n);
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
    set_u32(s.b + 1, (uint32_t)s.n - 2);
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
}

static void test_sasl_non_sasl_auth_code_returns_0(void **state)
{
    (void)state;
    stream s;
    uint8_t out[128];

    auth_msg(&s, 11, MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")); /* SASLContinue */
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"));
    s.b[0] = 'E';
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
}

static void test_sasl_empty_name_inside_list_returns_0(void **state)
{
    (void)state;
    stream s;
    uint8_t out[128];

    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUS\0\0SCRAM-SHA-256\0\0"));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, sizeof(out)), 0);
}

static void test_sasl_cap_below_input_length_returns_0(void **state)
{
    (void)state;
    stream s;
    uint8_t out[128];

    auth_msg(&s, WIRE_AUTH_SASL, MECHS("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"));
    memset(out, 0xaa, sizeof(out));
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, s.n - 1), 0);
    assert_int_equal(wire_sasl_without_plus(s.b, s.n, out, s.n), s.n - 19);
}

/* ---- messages pgscope writes ---- */

static void test_error_response_exact_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = "E\0\0\0\x3c"
                                  "SFATAL\0"
                                  "VFATAL\0"
                                  "C08P01\0"
                                  "Minvalid length of startup packet\0";
    uint8_t out[128];

    memset(out, 0xaa, sizeof(out));
    size_t n = wire_error_response(out, sizeof(out), "FATAL", "08P01",
                                   "invalid length of startup packet", NULL, NULL);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want)); /* the literal's NUL is the terminator */
    assert_int_equal(wire_get_u32(out + 1), n - 1);
    assert_int_equal(out[n], 0xaa);
}

static void test_error_response_with_detail_and_hint(void **state)
{
    (void)state;
    static const uint8_t want[] = "E\0\0\0\x44"
                                  "SERROR\0"
                                  "VERROR\0"
                                  "C53300\0"
                                  "Mtoo many clients\0"
                                  "Dlimit is 10\0"
                                  "Htry later\0";
    uint8_t out[128];

    memset(out, 0xaa, sizeof(out));
    size_t n = wire_error_response(out, sizeof(out), "ERROR", "53300", "too many clients",
                                   "limit is 10", "try later");
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(wire_get_u32(out + 1), n - 1);
    assert_int_equal(out[n], 0xaa);
}

static void test_error_response_hint_without_detail(void **state)
{
    (void)state;
    static const uint8_t want[] = "E\0\0\0\x23"
                                  "SFATAL\0"
                                  "VFATAL\0"
                                  "C28000\0"
                                  "Mno\0"
                                  "Hyes\0";
    uint8_t out[64];

    size_t n = wire_error_response(out, sizeof(out), "FATAL", "28000", "no", NULL, "yes");
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}

static void test_error_response_never_writes_past_cap(void **state)
{
    (void)state;
    uint8_t full[128], out[128];
    size_t need = wire_error_response(full, sizeof(full), "ERROR", "53300", "too many clients",
                                      "limit is 10", "try later");

    for (size_t cap = 0; cap <= need; cap++) {
        memset(out, 0xaa, sizeof(out));
        size_t n = wire_error_response(out, cap, "ERROR", "53300", "too many clients",
                                       "limit is 10", "try later");
        assert_int_equal(n, need);
        for (size_t i = cap; i < sizeof(out); i++)
            assert_int_equal(out[i], 0xaa);
    }
    assert_memory_equal(out, full, need);
}

static void test_error_v2_exact_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = "Eunsupported frontend protocol 2.0\n";
    uint8_t out[64];

    memset(out, 0xaa, sizeof(out));
    size_t n = wire_error_v2(out, sizeof(out), "unsupported frontend protocol 2.0");
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(out[n], 0xaa);
}

static void test_error_v2_never_writes_past_cap(void **state)
{
    (void)state;
    uint8_t out[64];

    for (size_t cap = 0; cap < 6; cap++) {
        memset(out, 0xaa, sizeof(out));
        assert_int_equal(wire_error_v2(out, cap, "oops"), 7);
        for (size_t i = cap; i < sizeof(out); i++)
            assert_int_equal(out[i], 0xaa);
    }
}

/* ---- bind parameter values as text (value.c) ---- */

static void check_value(uint32_t type, const char *hex_bytes, const char *want)
{
    uint8_t v[64];
    size_t n = strlen(hex_bytes) / 2;

    assert_true(n <= sizeof(v));
    for (size_t i = 0; i < n; i++) {
        unsigned byte;
        assert_int_equal(sscanf(hex_bytes + 2 * i, "%2x", &byte), 1);
        v[i] = (uint8_t)byte;
    }
    char *text = wire_value_text(type, v, n, true);
    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
}

static void test_value_integers_and_bool(void **state)
{
    (void)state;
    check_value(21, "fffe", "-2");
    check_value(23, "7fffffff", "2147483647");
    check_value(20, "00000016fee0e53b", "98765432123"); /* above 2^31: the int8 defect's value */
    check_value(20, "8000000000000000", "-9223372036854775808");
    check_value(26, "ffffffff", "4294967295");
    check_value(16, "01", "true");
    check_value(16, "00", "false");
}

static void test_value_floats_shortest(void **state)
{
    (void)state;
    check_value(701, "3ff8000000000000", "1.5");
    check_value(701, "3fb999999999999a", "0.1");
    check_value(701, "4059000000000000", "100");
    check_value(701, "44b52d02c7e14af6", "1e+23");
    check_value(701, "7ff0000000000000", "Infinity");
    check_value(701, "7ff8000000000000", "NaN");
    check_value(700, "3dcccccd", "0.1");
    check_value(700, "c2f6e979", "-123.456");
}

static void test_value_numeric(void **state)
{
    (void)state;
    /* 12345.678: digits 1 2345 6780, weight 1, dscale 3 */
    check_value(1700,
                "0003000100000003"
                "0001"
                "0929"
                "1a7c",
                "12345.678");
    /* -0.0012: digits 12 (weight -1 = 0.0012), dscale 4 */
    check_value(1700,
                "0001ffff40000004"
                "000c",
                "-0.0012");
    /* 0 with scale 2: no digits */
    check_value(1700, "0000000000000002", "0.00");
    /* 10000000: digits 1000 0000 stored as 1000, weight 1 (trailing zero groups dropped) */
    check_value(1700,
                "0001000100000000"
                "03e8",
                "10000000");
    /* 0.00000001: weight -2, digit 100 (0.0000 0001 -> group 0001 at weight -2), dscale 8 */
    check_value(1700,
                "0001fffe00000008"
                "0001",
                "0.00000001");
    check_value(1700, "00000000c0000000", "NaN");
    check_value(1700, "00000000d0000000", "Infinity");
    /* a digit above 9999 is not a numeric: hex with the type */
    check_value(1700,
                "0001000000000000"
                "2710",
                "\\x00010000000000002710 (numeric)");
}

static void test_value_dates_and_times(void **state)
{
    (void)state;
    check_value(1082, "00000000", "2000-01-01");
    check_value(1082, "ffffffff", "1999-12-31");
    check_value(1082, "00000e8c", "2010-03-13"); /* 3724 days */
    check_value(1082, "00000422", "2002-11-24");
    check_value(1082, "fffdc58a", "1600-02-29"); /* a leap day of a 400-year cycle */
    check_value(1082, "fffcf982", "1457-02-26");
    check_value(1082, "fff4dbf8", "0001-12-31 BC"); /* year 0 is 1 BC */
    check_value(1082, "7fffffff", "infinity");
    check_value(1082, "80000000", "-infinity");
    check_value(1114, "0000000000000000", "2000-01-01 00:00:00");
    check_value(1114, "0002b58341667c00", "2024-02-29 12:34:56");
    check_value(1114, "0002b58341667c01", "2024-02-29 12:34:56.000001");
    check_value(1184, "fffffffffff0bdc0", "1999-12-31 23:59:59+00");
    check_value(1184, "fffffffffffe7960", "1999-12-31 23:59:59.9+00");
    check_value(1083, "0000000bf60baac0", "14:16:12.6");
    check_value(1114, "7fffffffffffffff", "infinity");
}

static void test_value_other_types(void **state)
{
    (void)state;
    check_value(2950, "a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    check_value(25, "68c3a96c6c6f", "h\xc3\xa9llo");
    check_value(1043, "", "");
    check_value(3802, "017b7d", "{}");
    check_value(17, "00ff10", "\\x00ff10");
    check_value(869, "02200004c0a80001", "\\x02200004c0a80001 (inet)");
    check_value(16385, "01", "\\x01 (type 16385)");
    check_value(0, "0000002a", "\\x0000002a (type unknown)");
    check_value(23, "002a", "\\x002a (int4)");     /* wrong length */
    check_value(25, "610062", "\\x610062 (text)"); /* a NUL is not text */
}

static void test_value_text_format_as_is(void **state)
{
    (void)state;
    char *text = wire_value_text(20, (const uint8_t *)"98765432123", 11, false);
    assert_string_equal(text, "98765432123");
    free(text);
    assert_string_equal(wire_type_name(1184), "timestamptz");
    assert_null(wire_type_name(424242));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_stream_fed_whole),
        cmocka_unit_test(test_client_stream_split_at_every_offset),
        cmocka_unit_test(test_client_stream_fed_byte_by_byte),
        cmocka_unit_test(test_server_stream_fed_whole),
        cmocka_unit_test(test_server_stream_split_at_every_offset),
        cmocka_unit_test(test_server_stream_fed_byte_by_byte),
        cmocka_unit_test(test_server_accepts_every_type_byte),
        cmocka_unit_test(test_empty_feed_is_ok_and_changes_nothing),
        cmocka_unit_test(test_partial_header_is_not_a_boundary),
        cmocka_unit_test(test_client_query_above_large_limit_rejected),
        cmocka_unit_test(test_client_sync_above_small_limit_rejected),
        cmocka_unit_test(test_client_password_above_65535_rejected),
        cmocka_unit_test(test_server_message_above_1gib_rejected),
        cmocka_unit_test(test_lengths_below_4_rejected_both_sides),
        cmocka_unit_test(test_unknown_client_types_rejected),
        cmocka_unit_test(test_every_frontend_type_accepted_and_no_other),
        cmocka_unit_test(test_check_header_limit_per_type),
        cmocka_unit_test(test_bad_header_reported_at_its_start_after_good_messages),
        cmocka_unit_test(test_bad_header_split_over_two_chunks_reported_at_zero),
        cmocka_unit_test(test_bad_header_found_whatever_the_split),
        cmocka_unit_test(test_unknown_type_after_good_message_reported_at_its_start),
        cmocka_unit_test(test_100mb_body_streamed_in_64k_chunks),
        cmocka_unit_test(test_body_and_next_header_in_one_chunk),
        cmocka_unit_test(test_get_u32_is_big_endian),
        cmocka_unit_test(test_error_str_names_each_error),
        cmocka_unit_test(test_terminate_stops_the_client_stream),
        cmocka_unit_test(test_terminate_with_body_ends_after_it),
        cmocka_unit_test(test_server_x_is_not_terminate),
        cmocka_unit_test(test_first_ssl_request),
        cmocka_unit_test(test_first_gssenc_request),
        cmocka_unit_test(test_first_encryption_request_with_payload_read_by_its_code),
        cmocka_unit_test(test_first_cancel_of_any_key_length_forwarded),
        cmocka_unit_test(test_first_repeated_encryption_request_refused_as_protocol),
        cmocka_unit_test(test_first_protocol_4_and_unknown_codes_refused_with_0A000),
        cmocka_unit_test(test_first_startup_v3_with_params),
        cmocka_unit_test(test_startup_param_lookup),
        cmocka_unit_test(test_startup_param_missing_key_is_null),
        cmocka_unit_test(test_startup_param_repeated_key_gives_last_value_like_server),
        cmocka_unit_test(test_first_protocol_3_2_accepted),
        cmocka_unit_test(test_first_protocol_2_refused_with_0A000),
        cmocka_unit_test(test_first_protocol_1_refused_with_0A000),
        cmocka_unit_test(test_first_length_below_8_closed),
        cmocka_unit_test(test_first_length_above_max_closed),
        cmocka_unit_test(test_first_startup_of_max_length_accepted),
        cmocka_unit_test(test_first_startup_without_terminator_forwarded),
        cmocka_unit_test(test_first_startup_name_without_value_forwarded),
        cmocka_unit_test(test_first_startup_unterminated_value_forwarded),
        cmocka_unit_test(test_first_startup_bytes_after_terminator_forwarded),
        cmocka_unit_test(test_first_startup_without_payload_forwarded),
        cmocka_unit_test(test_first_prefixes_of_valid_packets_need_more),
        cmocka_unit_test(test_first_bytes_after_the_packet_ignored),
        cmocka_unit_test(test_first_direct_tls_closed),
        cmocka_unit_test(test_auth_code_of_ok_md5_and_sasl),
        cmocka_unit_test(test_auth_code_rejects_other_messages),
        cmocka_unit_test(test_sasl_plus_listed_first_is_removed),
        cmocka_unit_test(test_sasl_plus_listed_last_is_removed),
        cmocka_unit_test(test_sasl_without_plus_offer_returns_0),
        cmocka_unit_test(test_sasl_missing_terminator_returns_0),
        cmocka_unit_test(test_sasl_wrong_length_field_returns_0),
        cmocka_unit_test(test_sasl_non_sasl_auth_code_returns_0),
        cmocka_unit_test(test_sasl_empty_name_inside_list_returns_0),
        cmocka_unit_test(test_sasl_cap_below_input_length_returns_0),
        cmocka_unit_test(test_error_response_exact_bytes),
        cmocka_unit_test(test_error_response_with_detail_and_hint),
        cmocka_unit_test(test_error_response_hint_without_detail),
        cmocka_unit_test(test_error_response_never_writes_past_cap),
        cmocka_unit_test(test_error_v2_exact_bytes),
        cmocka_unit_test(test_error_v2_never_writes_past_cap),
        cmocka_unit_test(test_value_integers_and_bool),
        cmocka_unit_test(test_value_floats_shortest),
        cmocka_unit_test(test_value_numeric),
        cmocka_unit_test(test_value_dates_and_times),
        cmocka_unit_test(test_value_other_types),
        cmocka_unit_test(test_value_text_format_as_is),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
