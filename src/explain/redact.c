/* redact.c — constants out of a plan: PostgreSQL prints the values a statement ran with into
 * its plan's conditions ("(email = 'ann@example.com'::text)"), and values are stored only when
 * the user asks (store_params). What is left still shows the plan's shape and every number. */
#include "config.h"

#include "pgscope/explain.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Plan keys whose strings are names or kinds, never values: everything else a plan node holds
 * as text may be an expression ("Filter", "Run Condition", a foreign scan's "Remote SQL", keys
 * a later PostgreSQL adds) and is scrubbed. Names keep their digits: "SubPlan 1", "t2". */
static bool holds_names(const char *key)
{
    static const char *const names[] = {
        "Node Type",     "Relation Name",   "Schema",
        "Alias",         "Index Name",      "CTE Name",
        "Function Name", "Subplan Name",    "Strategy",
        "Partial Mode",  "Join Type",       "Parent Relationship",
        "Sort Method",   "Sort Space Type", "Scan Direction",
        "Operation",     "Command",         "Custom Plan Provider",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(key, names[i]) == 0)
            return true;
    return false;
}

static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || (unsigned char)c >= 0x80;
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether p, inside s, continues a word: "t2", "$1" and "a$$b" hold no number, no dollar quote. */
static bool after_word(const char *s, const char *p)
{
    return p > s && ident_char(p[-1]);
}

/* ---- a growing string: the scrubbed text can be longer than the original ('' is '?') ---- */

typedef struct outbuf {
    char *p;
    size_t len, cap;
    bool failed; /* memory ran out: the text is incomplete and must not be used */
} outbuf;

static void out_add(outbuf *b, const char *s, size_t n)
{
    size_t cap = b->cap ? b->cap : 64;
    char *p;

    if (b->failed)
        return;
    while (cap - b->len <= n) { /* room for n bytes and the NUL */
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return;
        }
        cap *= 2;
    }
    if (cap != b->cap) {
        if ((p = realloc(b->p, cap)) == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* The text built, owned by the caller; NULL when memory ran out. */
static char *out_take(outbuf *b)
{
    if (!b->failed)
        return b->p;
    free(b->p);
    return NULL;
}

/* ---- the tokens that hold values ---- */

/* The end of the quoted run opened at p (quote q): a doubled quote stays inside it, and in an
 * E'' string a backslash takes the next byte with it (E'it\'s'). An unterminated run ends with
 * the text: what it holds is as much a value as a closed one. */
static const char *skip_quoted(const char *p, char q, bool backslash)
{
    for (p++; *p; p++) {
        if (backslash && *p == '\\' && p[1] != '\0')
            p++;
        else if (*p == q && p[1] == q)
            p++;
        else if (*p == q)
            return p + 1;
    }
    return p;
}

/* Whether the ' at p opens an E'' string: an E (or e) that is a word of its own before it. */
static bool escape_string(const char *s, const char *p)
{
    return p > s && (p[-1] == 'E' || p[-1] == 'e') && !after_word(s, p - 1);
}

static bool tag_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (unsigned char)c >= 0x80 || (!first && digit(c));
}

/* The length of the dollar quote's delimiter at p ($$ or $tag$), 0 when p opens none ($1). */
static size_t dollar_tag(const char *p)
{
    size_t n = 1;

    while (tag_char(p[n], n == 1))
        n++;
    return p[n] == '$' ? n + 1 : 0;
}

/* The end of the dollar-quoted string at p, whose delimiter is n bytes long: after the first
 * repeat of the delimiter, else the end of the text. */
static const char *skip_dollar(const char *p, size_t n)
{
    for (const char *q = strchr(p + n, '$'); q; q = strchr(q + 1, '$'))
        if (strncmp(q, p, n) == 0)
            return q + n;
    return p + strlen(p);
}

/* A number not part of a name ("t2", "$1"): digits, a fraction, an exponent, and what is glued
 * to it (PostgreSQL 16 reads 0x1F, 0o17, 0b101 and 1_000 as numbers). */
static const char *skip_number(const char *p)
{
    while (digit(*p) || *p == '.' || *p == '_')
        p++;
    if ((*p == 'e' || *p == 'E') && (digit(p[1]) || ((p[1] == '-' || p[1] == '+') && digit(p[2]))))
        for (p += 2; digit(*p); p++)
            ;
    while (ident_char(*p))
        p++;
    return p;
}

/* Replaces the token at *p if it holds a value, moving *p past it; false when it holds none. */
static bool scrub_token(outbuf *b, const char *s, const char **p, bool names_too)
{
    const char *at = *p;
    size_t tag;

    if (*at == '"') {
        *p = skip_quoted(at, '"', false);
        out_add(b, names_too ? "\"?\"" : at, names_too ? 3 : (size_t)(*p - at));
    } else if (*at == '\'') {
        *p = skip_quoted(at, '\'', escape_string(s, at));
        out_add(b, "'?'", 3);
    } else if (*at == '$' && !after_word(s, at) && (tag = dollar_tag(at)) > 0) {
        *p = skip_dollar(at, tag);
        out_add(b, "'?'", 3);
    } else if (digit(*at) && !after_word(s, at)) {
        *p = skip_number(at);
        out_add(b, "?", 1);
    } else {
        return false;
    }
    return true;
}

/* Literals ('...', E'...', $$...$$) become '?' and bare numbers ?; quoted identifiers
 * ("Order") are kept, unless names_too (a server message quotes values in double quotes: value
 * "42" is out of range). The result grows as it needs to: '' alone becomes '?'. */
static char *scrub(const char *s, bool names_too)
{
    outbuf b = {0};

    out_add(&b, "", 0);
    for (const char *p = s; *p;) {
        size_t plain = strcspn(p, "\"'$0123456789");
        if (plain > 0) {
            out_add(&b, p, plain);
            p += plain;
        } else if (!scrub_token(&b, s, &p, names_too)) {
            out_add(&b, p++, 1); /* a digit or $ inside a word */
        }
    }
    return out_take(&b);
}

/* In place: the containers being walked keep their shape. A value that cannot be scrubbed (out
 * of memory) is replaced whole. */
static void redact_string(json_t *v)
{
    char *clean = scrub(json_string_value(v), false);

    if (!clean || json_string_set(v, clean) != 0)
        json_string_set(v, "?");
    free(clean);
}

static void redact_value(json_t *v);

static void redact_object(json_t *obj)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        if (json_is_string(v) && !holds_names(key))
            redact_string(v);
        else
            redact_value(v);
    }
}

static void redact_value(json_t *v)
{
    size_t i;
    json_t *item;

    if (json_is_object(v)) {
        redact_object(v);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            if (json_is_string(item))
                redact_string(item);
            else
                redact_value(item);
        }
    }
}

/* "Settings" holds the planner settings that differ from their defaults: numbers and keywords,
 * except search_path, which is the client's own (the replay follows its SET search_path = ...):
 * a value it sent. The times hold no values. */
static void redact_settings(json_t *settings)
{
    if (json_is_string(json_object_get(settings, "search_path")))
        json_object_set_new(settings, "search_path", json_string("?"));
}

char *explain_plan_redact(const char *json)
{
    json_t *doc = json ? json_loads(json, 0, NULL) : NULL;
    size_t i;
    json_t *item;

    if (!json_is_array(doc)) {
        json_decref(doc);
        return NULL;
    }
    json_array_foreach(doc, i, item)
    {
        redact_value(json_object_get(item, "Plan"));
        redact_settings(json_object_get(item, "Settings"));
    }
    char *out = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15)); /* 4635.11, not ...0997 */
    json_decref(doc);
    return out;
}

char *explain_redact_text(const char *text)
{
    return text ? scrub(text, true) : NULL;
}
