/* libFuzzer target for the wire module: first packet, both framers, SASL rewriting, errors. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgscope/wire.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define SCRAM_PLUS "SCRAM-SHA-256-PLUS"

/* A copy of n bytes in a block of exactly that size, so that any overread is reported. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    CHECK(q != NULL);
    if (n)
        memcpy(q, p, n);
    return q;
}

/* ---- first packet ---- */

/* The value of the last occurrence of name in a well-formed StartupMessage (the one PostgreSQL
 * keeps), or NULL. */
static const char *startup_last(const uint8_t *pkt, size_t len, const char *name)
{
    const char *last = NULL;
    size_t pos = 8;

    while (pos < len && pkt[pos] != '\0') {
        const char *n = (const char *)pkt + pos;
        const char *v = n + strlen(n) + 1;
        if (strcmp(n, name) == 0)
            last = v;
        pos = (size_t)(v - (const char *)pkt) + strlen(v) + 1;
    }
    return last;
}

static void check_param(const uint8_t *pkt, size_t len, const char *key)
{
    const char *v = wire_startup_param(pkt, len, key);

    CHECK(v == startup_last(pkt, len, key));
    if (v) {
        CHECK(v >= (const char *)pkt + 8 && v < (const char *)pkt + len);
        CHECK(memchr(v, '\0', (size_t)((const char *)pkt + len - v)) != NULL);
    }
}

static void fuzz_first(const uint8_t *p, size_t n)
{
    wire_first r = wire_first_parse(p, n);

    CHECK(r.kind >= WIRE_FIRST_NEED_MORE && r.kind <= WIRE_FIRST_BAD);
    CHECK(memchr(r.message, '\0', sizeof(r.message)) != NULL);
    if (r.kind == WIRE_FIRST_BAD) {
        /* judged on the length word alone, as PostgreSQL does */
        CHECK(n >= 4 && (r.len < 8 || r.len > WIRE_STARTUP_MAX + 4));
        CHECK(r.message[0] != '\0');
        CHECK(wire_first_parse(p, 4).kind == WIRE_FIRST_BAD);
        return;
    }
    if (r.kind == WIRE_FIRST_UNSUPPORTED) {
        CHECK(r.sqlstate != NULL && strcmp(r.sqlstate, "0A000") == 0);
        CHECK(r.code >> 16 != 3 && r.message[0] != '\0');
        return;
    }
    CHECK(r.sqlstate == NULL);
    if (r.kind == WIRE_FIRST_NEED_MORE) {
        if (n >= 4)
            CHECK(r.len > n && r.len <= WIRE_STARTUP_MAX + 4);
        return;
    }

    /* A complete packet: it alone gives the same answer, and each proper prefix asks for more. */
    CHECK(r.len >= 8 && r.len <= n && r.len <= WIRE_STARTUP_MAX + 4);
    CHECK(r.code == wire_get_u32(p + 4));
    uint8_t *pkt = dup_exact(p, r.len);
    wire_first again = wire_first_parse(pkt, r.len);
    CHECK(again.kind == r.kind && again.len == r.len && again.code == r.code);
    CHECK(wire_first_parse(pkt, r.len - 1).kind == WIRE_FIRST_NEED_MORE);
    CHECK(wire_first_parse(pkt, 7).kind == WIRE_FIRST_NEED_MORE);

    switch (r.kind) {
    case WIRE_FIRST_SSL:
        CHECK(r.code == WIRE_CODE_SSL);
        break;
    case WIRE_FIRST_GSSENC:
        CHECK(r.code == WIRE_CODE_GSSENC);
        break;
    case WIRE_FIRST_CANCEL:
        CHECK(r.code == WIRE_CODE_CANCEL);
        break;
    case WIRE_FIRST_STARTUP: {
        CHECK(r.code >> 16 == 3);
        if (!r.params_ok)
            break; /* forwarded for the server to refuse; never read by pgscope */
        CHECK(pkt[r.len - 1] == '\0');
        static const char *const keys[] = {"user", "database", "options", "replication", ""};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            check_param(pkt, r.len, keys[i]);
        /* every name in the packet is found */
        size_t pos = 8;
        while (pkt[pos] != '\0') {
            const char *name = (const char *)pkt + pos;
            const char *v = name + strlen(name) + 1;
            check_param(pkt, r.len, name);
            pos = (size_t)(v - (const char *)pkt) + strlen(v) + 1;
        }
        CHECK(pos == r.len - 1);
        break;
    }
    default:
        CHECK(false);
    }
    free(pkt);
}

/* ---- framers ---- */

/* Frames the whole of p at once, in two parts cut at split, and byte by byte, and checks all
 * three against a direct walk of the buffer. */
static void fuzz_framer(wire_side side, const uint8_t *p, size_t n, size_t split)
{
    /* the walk: messages counted, and where the first bad header starts */
    uint64_t ref_messages = 0;
    wire_error ref_err = WIRE_OK;
    size_t ref_bad = 0, pos = 0;
    uint32_t ref_remaining = 0;
    uint8_t ref_hdr_have = 0, ref_type = 0;
    while (pos < n) {
        if (n - pos < WIRE_HEADER_LEN) {
            ref_hdr_have = (uint8_t)(n - pos);
            break;
        }
        uint32_t len = wire_get_u32(p + pos + 1);
        wire_error err = wire_check_header(side, p[pos], len);
        if (err != WIRE_OK) {
            ref_err = err;
            ref_bad = pos;
            break;
        }
        ref_messages++;
        ref_type = p[pos];
        size_t body = len - 4, avail = n - pos - WIRE_HEADER_LEN;
        if (body > avail) {
            ref_remaining = (uint32_t)(body - avail);
            break;
        }
        pos += WIRE_HEADER_LEN + body;
        if (side == WIRE_FROM_CLIENT && ref_type == 'X') { /* nothing is framed after it */
            ref_err = WIRE_TERMINATED;
            ref_bad = pos;
            break;
        }
    }

    /* whole */
    uint8_t *buf = dup_exact(p, n);
    wire_framer whole;
    size_t bad = SIZE_MAX;
    wire_framer_init(&whole, side);
    wire_error err = wire_framer_feed(&whole, buf, n, &bad);
    CHECK(err == ref_err);
    CHECK(whole.messages == ref_messages);
    if (err == WIRE_TERMINATED) {
        CHECK(bad == ref_bad && bad <= n);
    } else if (err != WIRE_OK) {
        CHECK(bad == ref_bad && bad + WIRE_HEADER_LEN <= n);
    } else {
        CHECK(bad == SIZE_MAX);
        CHECK(whole.remaining == ref_remaining && whole.hdr_have == ref_hdr_have);
        if (whole.remaining)
            CHECK(whole.type == ref_type);
        CHECK(wire_framer_at_boundary(&whole) == (ref_remaining == 0 && ref_hdr_have == 0));
    }

    /* two parts */
    wire_framer parts;
    size_t bad1 = SIZE_MAX, bad2 = SIZE_MAX;
    wire_framer_init(&parts, side);
    wire_error err1 = wire_framer_feed(&parts, buf, split, &bad1);
    if (err1 != WIRE_OK) {
        CHECK(err1 == err && bad1 == bad);
    } else {
        wire_error err2 = wire_framer_feed(&parts, buf + split, n - split, &bad2);
        CHECK(err2 == err);
        if (err2 != WIRE_OK)
            CHECK(bad2 == (bad >= split ? bad - split : 0));
        else
            CHECK(parts.remaining == whole.remaining && parts.hdr_have == whole.hdr_have &&
                  wire_framer_at_boundary(&parts) == wire_framer_at_boundary(&whole));
    }
    CHECK(parts.messages == whole.messages);

    /* byte by byte */
    wire_framer bytes;
    wire_framer_init(&bytes, side);
    wire_error errb = WIRE_OK;
    for (size_t i = 0; i < n; i++) {
        size_t b = SIZE_MAX;
        errb = wire_framer_feed(&bytes, buf + i, 1, &b);
        if (errb == WIRE_TERMINATED) {
            CHECK(b == 1 && i == bad - 1);
            break;
        }
        if (errb != WIRE_OK) {
            CHECK(b == 0 && i == bad + WIRE_HEADER_LEN - 1);
            break;
        }
        CHECK(bytes.hdr_have < WIRE_HEADER_LEN);
    }
    CHECK(errb == err);
    CHECK(bytes.messages == whole.messages);
    if (err == WIRE_OK)
        CHECK(bytes.remaining == whole.remaining && bytes.hdr_have == whole.hdr_have);
    free(buf);
}

/* ---- authentication ---- */

/* out must be an AuthenticationSASL message listing non-empty names, none of them PLUS. */
static void check_sasl_clean(const uint8_t *out, size_t len)
{
    CHECK(wire_auth_code(out, len) == WIRE_AUTH_SASL);
    CHECK(out[len - 1] == '\0');
    size_t pos = 9;
    while (pos < len - 1) {
        const uint8_t *nul = memchr(out + pos, '\0', len - pos);
        CHECK(nul != NULL);
        size_t n = (size_t)(nul - (out + pos));
        CHECK(n > 0);
        CHECK(!(n == strlen(SCRAM_PLUS) && memcmp(out + pos, SCRAM_PLUS, n) == 0));
        pos += n + 1;
    }
    CHECK(pos == len - 1);
    uint8_t *again = malloc(len);
    CHECK(again != NULL);
    CHECK(wire_sasl_without_plus(out, len, again, len) == 0);
    free(again);
}

static void fuzz_sasl_msg(const uint8_t *msg, size_t len)
{
    int code = wire_auth_code(msg, len);
    if (code != -1)
        CHECK(len >= 9 && msg[0] == 'R' && wire_get_u32(msg + 1) == len - 1);

    uint8_t *out = malloc(len ? len : 1);
    CHECK(out != NULL);
    size_t r = wire_sasl_without_plus(msg, len, out, len);
    if (r != 0) {
        CHECK(code == WIRE_AUTH_SASL);
        CHECK(r + sizeof(SCRAM_PLUS) <= len); /* at least one name was removed */
        check_sasl_clean(out, r);
    }
    free(out);
    if (len > 0) { /* one byte short of room never succeeds, and writes nothing */
        out = malloc(len - 1 ? len - 1 : 1);
        CHECK(out != NULL);
        CHECK(wire_sasl_without_plus(msg, len, out, len - 1) == 0);
        free(out);
    }
}

static void fuzz_auth(const uint8_t *p, size_t n)
{
    uint8_t *raw = dup_exact(p, n);
    fuzz_sasl_msg(raw, n);
    free(raw);

    /* the input as the mechanism list of an AuthenticationSASL message */
    if (n > 0xffffff)
        return;
    size_t len = 9 + n;
    uint8_t *msg = malloc(len);
    CHECK(msg != NULL);
    msg[0] = 'R';
    msg[1] = (uint8_t)((len - 1) >> 24);
    msg[2] = (uint8_t)((len - 1) >> 16);
    msg[3] = (uint8_t)((len - 1) >> 8);
    msg[4] = (uint8_t)(len - 1);
    memcpy(msg + 5, "\0\0\0\x0a", 4);
    if (n)
        memcpy(msg + 9, p, n);
    fuzz_sasl_msg(msg, len);
    free(msg);
}

/* ---- errors ---- */

/* The next NUL-terminated piece of the input at *pos, as a fresh string, or NULL at the end. */
static char *next_piece(const uint8_t *p, size_t n, size_t *pos)
{
    if (*pos > n)
        return NULL;
    const uint8_t *nul = memchr(p + *pos, '\0', n - *pos);
    size_t len = nul ? (size_t)(nul - (p + *pos)) : n - *pos;
    char *s = malloc(len + 1);
    CHECK(s != NULL);
    memcpy(s, p + *pos, len);
    s[len] = '\0';
    *pos += len + 1;
    return s;
}

static size_t check_field(const uint8_t *out, size_t o, size_t end, char code, const char *text)
{
    size_t len = strlen(text);

    CHECK(o + 1 + len + 1 <= end);
    CHECK(out[o] == (uint8_t)code);
    CHECK(memcmp(out + o + 1, text, len) == 0 && out[o + 1 + len] == '\0');
    return o + 1 + len + 1;
}

static void fuzz_error(const uint8_t *p, size_t n, size_t cut)
{
    size_t pos = 0;
    char *sev = next_piece(p, n, &pos), *state = next_piece(p, n, &pos);
    char *msg = next_piece(p, n, &pos), *detail = next_piece(p, n, &pos);
    char *hint = next_piece(p, n, &pos);
    const char *S = sev ? sev : "", *C = state ? state : "", *M = msg ? msg : "";
    uint8_t dummy;

    size_t need = wire_error_response(&dummy, 0, S, C, M, detail, hint);
    uint8_t *out = malloc(need);
    CHECK(out != NULL);
    CHECK(wire_error_response(out, need, S, C, M, detail, hint) == need);
    CHECK(out[0] == 'E');
    CHECK((size_t)wire_get_u32(out + 1) + 1 == need);
    size_t o = WIRE_HEADER_LEN;
    o = check_field(out, o, need, 'S', S);
    o = check_field(out, o, need, 'V', S);
    o = check_field(out, o, need, 'C', C);
    o = check_field(out, o, need, 'M', M);
    if (detail)
        o = check_field(out, o, need, 'D', detail);
    if (hint)
        o = check_field(out, o, need, 'H', hint);
    CHECK(o + 1 == need && out[o] == '\0');

    /* a smaller buffer: same answer, nothing written past it (the allocator would see) */
    size_t cap = cut % need;
    uint8_t *small = malloc(cap ? cap : 1);
    CHECK(small != NULL);
    CHECK(wire_error_response(small, cap, S, C, M, detail, hint) == need);
    free(small);
    free(out);

    size_t need2 = wire_error_v2(&dummy, 0, M);
    CHECK(need2 == strlen(M) + 3);
    out = malloc(need2);
    CHECK(out != NULL);
    CHECK(wire_error_v2(out, need2, M) == need2);
    CHECK(out[0] == 'E' && memcmp(out + 1, M, strlen(M)) == 0);
    CHECK(out[need2 - 2] == '\n' && out[need2 - 1] == '\0');
    free(out);
    cap = cut % need2;
    small = malloc(cap ? cap : 1);
    CHECK(small != NULL);
    CHECK(wire_error_v2(small, cap, M) == need2);
    free(small);

    free(sev);
    free(state);
    free(msg);
    free(detail);
    free(hint);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first byte chooses where inputs are cut; the rest is the data. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    size_t split = (size_t)data[0] * n / 255;

    uint8_t *copy = dup_exact(p, n);
    fuzz_first(copy, n);
    free(copy);
    fuzz_framer(WIRE_FROM_CLIENT, p, n, split);
    fuzz_framer(WIRE_FROM_SERVER, p, n, split);
    fuzz_auth(p, n);
    fuzz_error(p, n, split + data[0]);
    return 0;
}
