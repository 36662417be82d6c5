/* value.c — bind parameter values in binary format, written as text for people: the report
 * shows the values a plan was sampled with (when values may be kept) in the form the user would
 * type them, whatever format the driver chose. Pure: bytes in, a string out. */
#include "config.h"

#include "pgscope/wire.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Built-in type OIDs (pg_type.dat); stable across PostgreSQL versions. */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_CHAR = 18,
    OID_NAME = 19,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_OID = 26,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_UNKNOWN = 705,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
    OID_DATE = 1082,
    OID_TIME = 1083,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
    OID_UUID = 2950,
    OID_JSONB = 3802,
};

static const struct {
    uint32_t oid;
    const char *name;
} type_names[] = {
    {OID_BOOL, "bool"},
    {OID_BYTEA, "bytea"},
    {OID_CHAR, "char"},
    {OID_NAME, "name"},
    {OID_INT8, "int8"},
    {OID_INT2, "int2"},
    {OID_INT4, "int4"},
    {OID_TEXT, "text"},
    {OID_OID, "oid"},
    {OID_JSON, "json"},
    {OID_FLOAT4, "float4"},
    {OID_FLOAT8, "float8"},
    {OID_UNKNOWN, "unknown"},
    {OID_BPCHAR, "bpchar"},
    {OID_VARCHAR, "varchar"},
    {OID_DATE, "date"},
    {OID_TIME, "time"},
    {OID_TIMESTAMP, "timestamp"},
    {OID_TIMESTAMPTZ, "timestamptz"},
    {OID_NUMERIC, "numeric"},
    {OID_UUID, "uuid"},
    {OID_JSONB, "jsonb"},
    {199, "_json"},
    {650, "cidr"},
    {869, "inet"},
    {829, "macaddr"},
    {1186, "interval"},
    {1266, "timetz"},
    {1560, "bit"},
    {1562, "varbit"},
    {1007, "_int4"},
    {1016, "_int8"},
    {1009, "_text"},
    {790, "money"},
    {600, "point"},
};

const char *wire_type_name(uint32_t type_oid)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (type_names[i].oid == type_oid)
            return type_names[i].name;
    return NULL;
}

/* ---- a growing string ---- */

typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_add(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    char small[128];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(small) || b->failed) { /* every piece here is short */
        b->failed = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, small, (size_t)n + 1);
    b->len += (size_t)n;
}

static char *sb_take(strbuf *b)
{
    if (b->failed || !b->s) {
        free(b->s);
        return NULL;
    }
    return b->s;
}

static void sb_hex(strbuf *b, const uint8_t *v, size_t len)
{
    sb_add(b, "\\x");
    for (size_t i = 0; i < len; i++)
        sb_add(b, "%02x", v[i]);
}

static int64_t get_i64(const uint8_t *p)
{
    return (int64_t)((uint64_t)wire_get_u32(p) << 32 | wire_get_u32(p + 4));
}

static int16_t get_i16(const uint8_t *p)
{
    return (int16_t)(p[0] << 8 | p[1]);
}

/* ---- numbers ---- */

/* The fewest significant digits that read back as the same value, printed the way PostgreSQL
 * prints floats: plain notation for exponents from -4 to below max_exp, else d.ddde+NN. */
static bool put_float(strbuf *b, double d, bool single)
{
    char digits[40];
    int p = 1, max_p = single ? 9 : 17, max_exp = single ? 6 : 15;

    if (isnan(d) || isinf(d)) {
        sb_add(b, "%s", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
        return true;
    }
    for (; p < max_p; p++) {
        snprintf(digits, sizeof(digits), "%.*e", p - 1, d);
        if (single ? strtof(digits, NULL) == (float)d : strtod(digits, NULL) == d)
            break;
    }
    snprintf(digits, sizeof(digits), "%.*e", p - 1, d);
    int exp = atoi(strchr(digits, 'e') + 1);
    if (exp < -4 || exp >= max_exp)
        sb_add(b, "%s", digits);
    else
        sb_add(b, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, d);
    return true;
}

/* numeric: int16 ndigits, int16 weight (of the first digit, in powers of 10000), uint16 sign,
 * uint16 dscale (digits after the point), then ndigits base-10000 digits. */
static bool put_numeric(strbuf *b, const uint8_t *v, size_t len)
{
    if (len < 8)
        return false;
    int ndigits = get_i16(v), weight = get_i16(v + 2);
    unsigned sign = (unsigned)(v[4] << 8 | v[5]), dscale = (unsigned)(v[6] << 8 | v[7]);
    const char *special = sign == 0xC000   ? "NaN"
                          : sign == 0xD000 ? "Infinity"
                          : sign == 0xF000 ? "-Infinity"
                                           : NULL;
    if (special) {
        sb_add(b, "%s", special);
        return true;
    }
    if (ndigits < 0 || len != 8 + 2 * (size_t)ndigits || (sign != 0 && sign != 0x4000) ||
        dscale > 0x3FFF)
        return false;
    for (int i = 0; i < ndigits; i++)
        if (get_i16(v + 8 + 2 * i) < 0 || get_i16(v + 8 + 2 * i) > 9999)
            return false;
#define DIGIT(k) ((k) >= 0 && (k) < ndigits ? get_i16(v + 8 + 2 * (k)) : 0)
    if (sign == 0x4000)
        sb_add(b, "-");
    if (weight < 0)
        sb_add(b, "0");
    for (int k = 0; k <= weight; k++)
        sb_add(b, k == 0 ? "%d" : "%04d", DIGIT(k));
    if (dscale > 0)
        sb_add(b, ".");
    for (int j = 1; dscale > 0; j++) { /* the group of weight -j */
        char group[8];
        snprintf(group, sizeof(group), "%04d", DIGIT(weight + j));
        unsigned take = dscale < 4 ? dscale : 4;
        sb_add(b, "%.*s", (int)take, group);
        dscale -= take;
    }
#undef DIGIT
    return true;
}

static bool put_integer(strbuf *b, const uint8_t *v, size_t len, size_t want)
{
    if (len != want)
        return false;
    int64_t n = want == 2 ? get_i16(v) : want == 4 ? (int32_t)wire_get_u32(v) : get_i64(v);
    sb_add(b, "%" PRId64, n);
    return true;
}

/* ---- dates and times ---- */

#define USECS_PER_DAY INT64_C(86400000000)

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[m - 1] + (m == 2 && is_leap(y));
}

/* Days since 2000-01-01 as a proleptic Gregorian date, year 0 being 1 BC (as PostgreSQL counts):
 * whole 400-year cycles of 146097 days first, then years and months one by one. */
static void civil_date(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t cycles = days / 146097 - (days % 146097 < 0);
    int64_t rest = days - cycles * 146097; /* 0 .. 146096, from a 1 January of a cycle's start */
    int64_t year = 2000 + cycles * 400;

    while (rest >= 365 + is_leap(year))
        rest -= 365 + is_leap(year++);
    int month = 1;
    while (rest >= month_days(year, month))
        rest -= month_days(year, month++);
    *y = year;
    *m = month;
    *d = (int)rest + 1;
}

/* PostgreSQL's date range ends (Julian day 0 .. 5874897 AD): outside it, no date. */
#define DAYS_MIN INT64_C(-2451545)
#define DAYS_MAX INT64_C(2145031948)

static void put_ymd(strbuf *b, int64_t days)
{
    int64_t y;
    int m, d;
    civil_date(days, &y, &m, &d);
    sb_add(b, "%04" PRId64 "-%02d-%02d", y > 0 ? y : 1 - y, m, d);
}

static const char *era(int64_t days)
{
    int64_t y;
    int m, d;
    civil_date(days, &y, &m, &d);
    return y > 0 ? "" : " BC";
}

static bool put_date(strbuf *b, const uint8_t *v, size_t len)
{
    if (len != 4)
        return false;
    int32_t days = (int32_t)wire_get_u32(v);
    if (days == INT32_MIN || days == INT32_MAX) {
        sb_add(b, "%s", days == INT32_MIN ? "-infinity" : "infinity");
        return true;
    }
    if (days < DAYS_MIN || days > DAYS_MAX)
        return false;
    put_ymd(b, days);
    sb_add(b, "%s", era(days));
    return true;
}

/* HH:MM:SS and the microseconds, without their trailing zeros, if any. */
static void put_clock(strbuf *b, int64_t us)
{
    int64_t secs = us / 1000000;
    int frac = (int)(us % 1000000), width = 6;

    sb_add(b, "%02d:%02d:%02d", (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    if (frac == 0)
        return;
    while (frac % 10 == 0) {
        frac /= 10;
        width--;
    }
    sb_add(b, ".%0*d", width, frac);
}

static bool put_time(strbuf *b, const uint8_t *v, size_t len)
{
    if (len != 8)
        return false;
    int64_t us = get_i64(v);
    if (us < 0 || us > USECS_PER_DAY)
        return false;
    put_clock(b, us);
    return true;
}

/* Microseconds since 2000-01-01 00:00:00 (UTC for timestamptz). */
static bool put_timestamp(strbuf *b, const uint8_t *v, size_t len, bool tz)
{
    if (len != 8)
        return false;
    int64_t us = get_i64(v);
    if (us == INT64_MIN || us == INT64_MAX) {
        sb_add(b, "%s", us == INT64_MIN ? "-infinity" : "infinity");
        return true;
    }
    int64_t days = us / USECS_PER_DAY - (us % USECS_PER_DAY < 0);
    if (days < DAYS_MIN || days > DAYS_MAX)
        return false;
    put_ymd(b, days);
    sb_add(b, " ");
    put_clock(b, us - days * USECS_PER_DAY);
    sb_add(b, "%s%s", tz ? "+00" : "", era(days));
    return true;
}

/* ---- the rest ---- */

static bool put_uuid(strbuf *b, const uint8_t *v, size_t len)
{
    if (len != 16)
        return false;
    for (int i = 0; i < 16; i++)
        sb_add(b, "%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", v[i]);
    return true;
}

/* Text-like values: the same bytes in both formats (jsonb's binary form adds a version byte).
 * A NUL cannot be in a text value, and would end the string early: refused. */
static bool put_chars(strbuf *b, const uint8_t *v, size_t len)
{
    if (memchr(v, '\0', len))
        return false;
    for (size_t i = 0; i < len; i += 64)
        sb_add(b, "%.*s", (int)(len - i < 64 ? len - i : 64), (const char *)v + i);
    return true;
}

static bool put_binary(strbuf *b, uint32_t type_oid, const uint8_t *v, size_t len)
{
    switch (type_oid) {
    case OID_BOOL:
        if (len != 1 || v[0] > 1)
            return false;
        sb_add(b, "%s", v[0] ? "true" : "false");
        return true;
    case OID_INT2:
        return put_integer(b, v, len, 2);
    case OID_INT4:
        return put_integer(b, v, len, 4);
    case OID_INT8:
        return put_integer(b, v, len, 8);
    case OID_OID:
        if (len != 4)
            return false;
        sb_add(b, "%" PRIu32, wire_get_u32(v));
        return true;
    case OID_FLOAT4: {
        if (len != 4)
            return false;
        uint32_t bits = wire_get_u32(v);
        float f;
        memcpy(&f, &bits, sizeof(f));
        return put_float(b, f, true);
    }
    case OID_FLOAT8: {
        if (len != 8)
            return false;
        uint64_t bits = (uint64_t)get_i64(v);
        double d;
        memcpy(&d, &bits, sizeof(d));
        return put_float(b, d, false);
    }
    case OID_NUMERIC:
        return put_numeric(b, v, len);
    case OID_DATE:
        return put_date(b, v, len);
    case OID_TIME:
        return put_time(b, v, len);
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ:
        return put_timestamp(b, v, len, type_oid == OID_TIMESTAMPTZ);
    case OID_UUID:
        return put_uuid(b, v, len);
    case OID_BYTEA:
        sb_hex(b, v, len);
        return true;
    case OID_JSONB:
        return len >= 1 && v[0] == 1 && put_chars(b, v + 1, len - 1);
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_BPCHAR:
    case OID_NAME:
    case OID_CHAR:
    case OID_JSON:
    case OID_UNKNOWN:
        return put_chars(b, v, len);
    default:
        return false;
    }
}

char *wire_value_text(uint32_t type_oid, const uint8_t *v, size_t len, bool binary)
{
    strbuf b = {0};

    if (!binary) {
        char *s = malloc(len + 1);
        if (s) {
            if (len > 0)
                memcpy(s, v, len);
            s[len] = '\0';
        }
        return s;
    }
    sb_add(&b, "%s", "");
    if (!put_binary(&b, type_oid, v, len)) {
        const char *name = wire_type_name(type_oid);
        b.len = 0;
        sb_hex(&b, v, len);
        if (name)
            sb_add(&b, " (%s)", name);
        else if (type_oid == 0)
            sb_add(&b, " (type unknown)");
        else
            sb_add(&b, " (type %" PRIu32 ")", type_oid);
    }
    return sb_take(&b);
}
