/* message.c — decoding of the authentication messages pgscope looks into, and encoding of the
 * few messages it writes itself (errors). */
#include "config.h"

#include "pgscope/wire.h"

#include <string.h>

#define SCRAM_PLUS "SCRAM-SHA-256-PLUS"

int wire_auth_code(const uint8_t *msg, size_t len)
{
    if (len < 9 || msg[0] != 'R' || wire_get_u32(msg + 1) != len - 1)
        return -1;
    return (int)wire_get_u32(msg + 5);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t wire_sasl_without_plus(const uint8_t *msg, size_t len, uint8_t *out, size_t cap)
{
    if (wire_auth_code(msg, len) != WIRE_AUTH_SASL || cap < len || msg[len - 1] != '\0')
        return 0;
    size_t o = 9, pos = 9;
    bool removed = false;
    memcpy(out, msg, 9);
    /* The body is a list of NUL-terminated mechanism names ended by an empty name. */
    while (pos < len - 1) {
        const uint8_t *nul = memchr(msg + pos, '\0', len - pos);
        size_t n = (size_t)(nul - (msg + pos)) + 1;
        if (n == 1)
            return 0; /* an empty name before the end */
        if (n == sizeof(SCRAM_PLUS) && memcmp(msg + pos, SCRAM_PLUS, n) == 0) {
            removed = true;
        } else {
            memcpy(out + o, msg + pos, n);
            o += n;
        }
        pos += n;
    }
    if (!removed || pos != len - 1)
        return 0;
    out[o++] = '\0';
    put_u32(out + 1, (uint32_t)(o - 1));
    return o;
}

/* Appends field code + NUL-terminated text at *o, counting past cap without writing there. */
static void put_field(uint8_t *out, size_t cap, size_t *o, char code, const char *text)
{
    size_t n = strlen(text) + 1;

    if (*o + 1 + n <= cap) {
        out[*o] = (uint8_t)code;
        memcpy(out + *o + 1, text, n);
    }
    *o += 1 + n;
}

size_t wire_error_response(uint8_t *out, size_t cap, const char *severity, const char *sqlstate,
                           const char *message, const char *detail, const char *hint)
{
    size_t o = 5;

    put_field(out, cap, &o, 'S', severity);
    put_field(out, cap, &o, 'V', severity);
    put_field(out, cap, &o, 'C', sqlstate);
    put_field(out, cap, &o, 'M', message);
    if (detail)
        put_field(out, cap, &o, 'D', detail);
    if (hint)
        put_field(out, cap, &o, 'H', hint);
    if (o + 1 <= cap)
        out[o] = '\0';
    o++;
    if (o <= cap) {
        out[0] = 'E';
        put_u32(out + 1, (uint32_t)(o - 1));
    }
    return o;
}

size_t wire_error_v2(uint8_t *out, size_t cap, const char *message)
{
    size_t n = strlen(message);
    size_t need = 1 + n + 2; /* 'E', text, newline, NUL */

    if (need <= cap) {
        out[0] = 'E';
        memcpy(out + 1, message, n);
        out[1 + n] = '\n';
        out[2 + n] = '\0';
    }
    return need;
}
