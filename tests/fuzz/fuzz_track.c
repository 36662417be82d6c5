/* libFuzzer target for track: a conversation of both directions, framed as the proxy frames it,
 * with the limits chosen by the input, so that every cap is reached. Each message's capture gets
 * a block of exactly the size track asked for, so that any overread is reported. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgscope/track.h"
#include "pgscope/wire.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct side {
    track_conn *c;
    wire_side dir;
    uint8_t *capture; /* this message's room, exactly as large as asked */
} side;

static uint32_t want(void *arg, uint8_t type, uint32_t body_len)
{
    side *s = arg;
    return track_want(s->c, s->dir, type, body_len);
}

static uint8_t *reserve(void *arg, uint32_t n)
{
    side *s = arg;
    free(s->capture);
    s->capture = malloc(n ? n : 1);
    return s->capture;
}

static void message(void *arg, uint8_t type, const uint8_t *body, uint32_t captured,
                    uint32_t body_len)
{
    side *s = arg;
    CHECK(captured <= body_len);
    track_message(s->c, s->dir, type, body, captured, body_len);
}

/* Every event is checked against the limits, then freed. */
static void emit(track_event *ev, void *arg)
{
    const track_limits *lim = arg;
    uint32_t pos = 0;
    const uint8_t *value;
    int32_t len;
    bool binary;
    uint32_t n = 0;

    CHECK(ev->text_len <= lim->max_text);
    CHECK(ev->params_len <= lim->max_params);
    while (track_param_next(ev->params, ev->params_len, &pos, &value, &len, &binary)) {
        CHECK(len < 0 || (uint32_t)len <= lim->max_param);
        CHECK(pos <= ev->params_len);
        n++;
    }
    CHECK(track_event_bytes(ev) >= sizeof(*ev));
    track_event_free(ev);
}

/* The first bytes choose the limits; the rest is chunks: a byte whose top bit says the direction
 * (server when set) and whose low bits, times 8, the chunk's length. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    track_limits lim;
    track_limits_default(&lim);
    if (data[0] & 1) { /* small limits: every cap is reached */
        lim.max_text = 1u + data[1] % 64;
        lim.max_param = data[2] % 16;
        lim.max_params = data[3] % 64;
        lim.max_prepared = 1u + data[1] % 4;
        lim.max_pending = 1u + data[2] % 4;
    }
    side cs = {NULL, WIRE_FROM_CLIENT, NULL}, ss = {NULL, WIRE_FROM_SERVER, NULL};
    track_conn *c = track_conn_new(1, &lim, emit, &lim);
    CHECK(c != NULL);
    cs.c = ss.c = c;
    uint32_t cap = track_capture_size(&lim);
    wire_sink csink = {want, message, reserve, &cs, cap};
    wire_sink ssink = {want, message, reserve, &ss, cap < 4096 ? cap : 4096};
    wire_framer cf, sf;
    wire_framer_init(&cf, WIRE_FROM_CLIENT);
    wire_framer_init(&sf, WIRE_FROM_SERVER);
    wire_framer_set_sink(&cf, &csink);
    wire_framer_set_sink(&sf, &ssink);
    static const uint8_t pkt[] = {0, 0, 0, 16, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0};
    track_startup(c, pkt, sizeof(pkt), "fuzz", 1);

    size_t pos = 4;
    int64_t now = 2;
    bool client_done = false, server_done = false;
    while (pos < size) {
        uint8_t head = data[pos++];
        size_t n = (size_t)(head & 0x7f) * 8 + 1;
        if (n > size - pos)
            n = size - pos;
        bool to_server = head & 0x80;
        wire_framer *f = to_server ? &sf : &cf;
        bool *done = to_server ? &server_done : &client_done;
        size_t stop = 0;
        track_set_clock(c, now++);
        if (!*done && wire_framer_feed(f, data + pos, n, &stop) != WIRE_OK)
            *done = true; /* the proxy passes the rest unframed, or nothing after a Terminate */
        if (head == 0x7f)
            track_idle(c); /* a quiet spell between chunks */
        pos += n;
    }
    track_disconnect(c, 1, 2, now);
    track_conn_free(c);
    free(cs.capture);
    free(ss.capture);
    return 0;
}
