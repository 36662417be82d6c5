/* redact.c — constants out of a plan: PostgreSQL prints the values a statement ran with into
 * its plan's conditions ("(email = 'ann@example.com'::text)"), and values are stored only when
 * the user asks (store_params). What is left still shows the plan's shape and every number. */
#include "config.h"

#include "pgscope/explain.h"

#include <jansson.h>
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

/* The end of the quoted literal starting at p (a '), '' being a quote inside it. */
static const char *skip_literal(const char *p)
{
    for (p++; *p; p++) {
        if (*p == '\'' && p[1] == '\'')
            p++;
        else if (*p == '\'')
            return p + 1;
    }
    return p;
}

/* A number not part of a name ("t2", "$1"): digits, a fraction, an exponent. */
static const char *skip_number(const char *p)
{
    while (digit(*p) || *p == '.')
        p++;
    if ((*p == 'e' || *p == 'E') && (digit(p[1]) || ((p[1] == '-' || p[1] == '+') && digit(p[2]))))
        for (p += 2; digit(*p); p++)
            ;
    return p;
}

/* '...' becomes '?' and a bare number ?; quoted identifiers ("Order") are kept, unless
 * names_too (a server message quotes values in double quotes: value "42" is out of range). */
static char *scrub(const char *s, bool names_too)
{
    char *out = malloc(strlen(s) + 1), *o = out;

    if (!out)
        return NULL;
    for (const char *p = s; *p;) {
        if (*p == '"' && names_too) {
            const char *end = strchr(p + 1, '"');
            p = end ? end + 1 : p + strlen(p);
            memcpy(o, "\"?\"", 3);
            o += 3;
        } else if (*p == '"') {
            const char *end = strchr(p + 1, '"');
            size_t n = end ? (size_t)(end - p) + 1 : strlen(p);
            memcpy(o, p, n);
            o += n;
            p += n;
        } else if (*p == '\'') {
            p = skip_literal(p);
            memcpy(o, "'?'", 3);
            o += 3;
        } else if (digit(*p) && (p == s || !ident_char(p[-1]))) {
            p = skip_number(p);
            *o++ = '?';
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* In place: the containers being walked keep their shape. */
static void redact_string(json_t *v)
{
    char *clean = scrub(json_string_value(v), false);

    json_string_set(v, clean ? clean : "?");
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

char *explain_plan_redact(const char *json)
{
    json_t *doc = json ? json_loads(json, 0, NULL) : NULL;
    size_t i;
    json_t *item;

    if (!json_is_array(doc)) {
        json_decref(doc);
        return NULL;
    }
    /* Only the plans: "Settings" (non-default settings) and the times hold no values. */
    json_array_foreach(doc, i, item) redact_value(json_object_get(item, "Plan"));
    char *out = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15)); /* 4635.11, not ...0997 */
    json_decref(doc);
    return out;
}

char *explain_redact_text(const char *text)
{
    return text ? scrub(text, true) : NULL;
}
