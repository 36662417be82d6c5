/* np1_text.c — the strings of the N+1 detector: capped copies, a growable buffer, example
 * tuples as JSON. */
#include "config.h"

#include "np1_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy of at most max bytes of s, cut at a UTF-8 character boundary; NULL if s is NULL or
 * memory ran out. */
char *np1_copy_text(const char *s, size_t max)
{
    size_t n;
    char *out;

    if (s == NULL)
        return NULL;
    n = strnlen(s, max == SIZE_MAX ? max : max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

bool np1_same_text(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

int np1_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

bool np1_equal_nocase(const char *a, const char *b)
{
    for (; *a && np1_lower((unsigned char)*a) == np1_lower((unsigned char)*b); a++, b++)
        ;
    return *a == '\0' && *b == '\0';
}

/* ---- a growable string ---- */

void np1_sb_addn(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void np1_sb_add(sbuf *b, const char *s)
{
    np1_sb_addn(b, s, strlen(s));
}

void np1_sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
    } else if ((size_t)n < sizeof small) {
        np1_sb_addn(b, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            b->failed = true;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        np1_sb_addn(b, big, (size_t)n);
        free(big);
    }
}

/* The string built, owned by the caller; NULL if memory ran out along the way. */
char *np1_sb_take(sbuf *b)
{
    if (b->failed) {
        free(b->s);
        return NULL;
    }
    return b->s != NULL ? b->s : np1_copy_text("", 0);
}

/* ---- example tuples as JSON ---- */

/* The length of the valid UTF-8 character at s (n bytes left), or 0 if it is not one. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xE0) == 0xC0 ? 2
                 : (s[0] & 0xF0) == 0xE0 ? 3
                 : (s[0] & 0xF8) == 0xF0 ? 4
                                         : 0;

    if (len == 0 || len > n || (len == 2 && s[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* A JSON string of at most NP1_VALUE_MAX bytes of v; bytes that are not UTF-8 become '?'. */
static void json_value(sbuf *b, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v), used = 0;

    np1_sb_add(b, "\"");
    for (size_t i = 0; i < n && used < NP1_VALUE_MAX;) {
        size_t k = utf8_char(s + i, n - i);
        if (k == 0) {
            np1_sb_add(b, "?");
            i++;
        } else if (s[i] == '"' || s[i] == '\\') {
            np1_sb_printf(b, "\\%c", s[i]);
            i++;
        } else if (s[i] < 0x20) {
            np1_sb_printf(b, "\\u%04x", s[i]);
            i++;
        } else {
            np1_sb_addn(b, v + i, k);
            i += k;
        }
        used += k ? k : 1;
    }
    np1_sb_add(b, used < n ? "...\"" : "\"");
}

/* ["v1","v2",null]: values past the size budget are left out. */
char *np1_example_json(const np1_stmt *st)
{
    sbuf b = {0};

    np1_sb_add(&b, "[");
    for (uint16_t i = 0; i < st->n_params && b.n < NP1_EXAMPLE_MAX; i++) {
        if (i > 0)
            np1_sb_add(&b, ",");
        if (st->param_text[i] == NULL)
            np1_sb_add(&b, "null");
        else
            json_value(&b, st->param_text[i]);
    }
    np1_sb_add(&b, "]");
    return np1_sb_take(&b);
}

static bool word_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

/* Whether the word at p (any case) is w, whole. */
static bool word_at(const char *s, size_t p, const char *w)
{
    size_t n = strlen(w);

    for (size_t i = 0; i < n; i++)
        if (s[p + i] == '\0' || np1_lower((unsigned char)s[p + i]) != w[i])
            return false;
    return (p == 0 || !word_char((unsigned char)s[p - 1])) && !word_char((unsigned char)s[p + n]);
}

bool np1_is_catalog(const char *query)
{
    const char *prev = NULL; /* the word before, as "from" or "join" */

    for (size_t p = 0; query != NULL && query[p] != '\0'; p++) {
        if (!word_char((unsigned char)query[p]) ||
            (p > 0 && word_char((unsigned char)query[p - 1])))
            continue;
        if (word_at(query, p, "pg_catalog") || word_at(query, p, "information_schema"))
            return true;
        if (prev != NULL && np1_lower((unsigned char)query[p]) == 'p' &&
            np1_lower((unsigned char)query[p + 1]) == 'g' && query[p + 2] == '_')
            return true;
        prev = word_at(query, p, "from") || word_at(query, p, "join") ? query + p : NULL;
    }
    return false;
}

bool np1_first_word_is(const char *query, const char *words)
{
    size_t p = 0, n = 0;

    while (query != NULL && (query[p] == ' ' || query[p] == '\n' || query[p] == '\t' ||
                             query[p] == '\r' || query[p] == '('))
        p++;
    while (query != NULL && word_char((unsigned char)query[p + n]))
        n++;
    for (const char *w = words; n > 0 && *w != '\0';) {
        size_t len = strcspn(w, " ");
        if (len == n) {
            size_t i = 0;
            while (i < n && np1_lower((unsigned char)query[p + i]) == w[i])
                i++;
            if (i == n)
                return true;
        }
        w += len + (w[len] == ' ');
    }
    return false;
}

/* src (n bytes) into out, cut to cap - 1 bytes at a UTF-8 character boundary. */
static void copy_cut(char *out, size_t cap, const char *src, size_t n)
{
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(out, src, n);
    out[n] = '\0';
}

void np1_test_of(const char *app, const char *tags, char *out, size_t cap)
{
    /* canonical tags: "key=value,key2=value2", keys sorted */
    for (const char *t = tags; t != NULL && *t != '\0';) {
        const char *end = strchr(t, ',');
        size_t len = end ? (size_t)(end - t) : strlen(t);
        if (len > 5 && strncmp(t, "test=", 5) == 0) {
            copy_cut(out, cap, t + 5, len - 5);
            return;
        }
        t += len + (end != NULL);
    }
    copy_cut(out, cap, app != NULL ? app : "", app != NULL ? strlen(app) : 0);
}
