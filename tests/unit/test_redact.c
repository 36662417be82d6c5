/* Unit tests for redaction (plans and server messages) at its edges: empty literals, which grow
 * when redacted ('' becomes '?'), runs of thousands of quotes, unterminated literals, E''
 * strings with backslashes, dollar quotes. Run under ASan: nothing may be written past a
 * buffer, and no value may be left in the text. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "pgscope/explain.h"

/* ---- helpers ---- */

/* n copies of unit, then tail; malloc'd. */
static char *repeat(const char *unit, size_t n, const char *tail)
{
    size_t u = strlen(unit), t = strlen(tail);
    char *s = malloc(u * n + t + 1);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    memcpy(s + u * n, tail, t + 1);
    return s;
}

/* The Filter of a one-node plan holding filter, after explain_plan_redact; malloc'd. */
static char *redact_filter(const char *filter)
{
    json_t *doc = json_pack("[{s:{s:s, s:s, s:s}}]", "Plan", "Node Type", "Seq Scan",
                            "Relation Name", "t", "Filter", filter);
    char *text = json_dumps(doc, JSON_COMPACT);
    char *clean = explain_plan_redact(text);
    json_t *back;
    char *out;

    assert_non_null(clean);
    back = json_loads(clean, 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(back, 0), "Plan"), "Relation Name")),
                        "t");
    out = strdup(json_string_value(
        json_object_get(json_object_get(json_array_get(back, 0), "Plan"), "Filter")));
    assert_non_null(out);
    json_decref(back);
    json_decref(doc);
    free(text);
    free(clean);
    return out;
}

static void filter_is(const char *filter, const char *want)
{
    char *got = redact_filter(filter);

    if (strcmp(got, want) != 0)
        fail_msg("redacting [%.200s]: got [%.200s], want [%.200s]", filter, got, want);
    free(got);
}

static void text_is(const char *text, const char *want)
{
    char *got = explain_redact_text(text);

    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("redacting [%.200s]: got [%.200s], want [%.200s]", text, got, want);
    free(got);
}

/* ---- plans ---- */

/* The crash of the regression suite: '' is 2 bytes, '?' 3, in a buffer sized for the input. */
static void test_plan_empty_literal(void **state)
{
    (void)state;
    filter_is("(t.a = ''::text)", "(t.a = '?'::text)");
    filter_is("(x = ''''::text)", "(x = '?'::text)");
    filter_is("''", "'?'");
    filter_is("'", "'?'");
    filter_is("(a = '')", "(a = '?')");
}

/* Thousands of empty literals: each one a byte longer once redacted. */
static void test_plan_many_empty_literals(void **state)
{
    char *filter = repeat("'' ", 10000, ""), *want = repeat("'?' ", 10000, "");

    (void)state;
    filter_is(filter, want);
    free(filter);
    free(want);
    filter = repeat("(a = ''::text) OR ", 10000, "false");
    want = repeat("(a = '?'::text) OR ", 10000, "false");
    filter_is(filter, want);
    free(filter);
    free(want);
}

/* A text of quotes only: an even run is one literal of quotes; an odd one never ends. */
static void test_plan_only_quotes(void **state)
{
    char *even = repeat("'", 10000, ""), *odd = repeat("'", 10001, "");
    char *in_expr = repeat("'", 10000, ")::text");

    (void)state;
    filter_is(even, "'?'");
    filter_is(odd, "'?'");
    in_expr[0] = '(';
    filter_is(in_expr, "('?'");
    free(even);
    free(odd);
    free(in_expr);
}

/* An unterminated literal hides all that follows it: it is a value up to the end. */
static void test_plan_unterminated(void **state)
{
    (void)state;
    filter_is("(a = 'abc", "(a = '?'");
    filter_is("(a = 'it''s", "(a = '?'");
    filter_is("(a = 'x') AND (b = 'secret", "(a = '?') AND (b = '?'");
}

/* E'' strings: a backslash takes the next byte with it, a quote included. */
static void test_plan_escape_strings(void **state)
{
    char *slashes = repeat("\\", 10000, "'::text)"), *filter, *odd;

    (void)state;
    filter_is("((a = E'x\\'y'::text) AND (b = 'z'::text))",
              "((a = E'?'::text) AND (b = '?'::text))");
    filter_is("(a = E'\\\\'::text)", "(a = E'?'::text)");
    filter_is("(a = e'\\\\\\'s' OR b = 1)", "(a = e'?' OR b = ?)");
    filter_is("(a = E'abc\\", "(a = E'?'");
    filter_is("(a = E'it''s\\\\'::text)", "(a = E'?'::text)");
    /* not an E'' string: the E ends a word, and a backslash is a character like any */
    filter_is("(a = xe'a\\' OR b = 1)", "(a = xe'?' OR b = ?)");
    filter = malloc(strlen(slashes) + 8);
    assert_non_null(filter);
    strcpy(filter, "(a = E'");
    strcat(filter, slashes);
    filter_is(filter, "(a = E'?'::text)");
    odd = repeat("\\", 10001, "'::text)"); /* the last backslash takes the quote: unterminated */
    strcpy(filter, "(a = E'");
    filter = realloc(filter, strlen(odd) + 8);
    assert_non_null(filter);
    strcat(filter, odd);
    filter_is(filter, "(a = E'?'");
    free(filter);
    free(slashes);
    free(odd);
}

/* Dollar quotes are literals too; $1 and a $ inside a name are not. */
static void test_plan_dollar_quotes(void **state)
{
    (void)state;
    filter_is("(a = $$x'y$$::text)", "(a = '?'::text)");
    filter_is("(a = $tag$x$$y$tag$) AND (b = $1)", "(a = '?') AND (b = $1)");
    filter_is("(a = $q$never closed", "(a = '?'");
    filter_is("$$", "'?'");
    filter_is("(a$$b = $2) AND ($ > 3)", "(a$$b = $2) AND ($ > ?)");
    filter_is("(a = $_9$1$_9$)", "(a = '?')");
}

/* Numbers in every form PostgreSQL reads; names keep their digits; quoted names are kept. */
static void test_plan_numbers_and_names(void **state)
{
    (void)state;
    filter_is("((x > 1.5e3) AND (y = 0x1F) AND (z = 1_000) AND (t2.c = $1))",
              "((x > ?) AND (y = ?) AND (z = ?) AND (t2.c = $1))");
    filter_is("(\"a\"\"b\" = 'c') AND (\"x1\" = 2)", "(\"a\"\"b\" = '?') AND (\"x1\" = ?)");
    filter_is("(\"never closed = 5", "(\"never closed = 5");
}

/* ---- server messages ---- */

static void test_text_double_quotes(void **state)
{
    char *many = repeat("\"\" ", 10000, ""), *want = repeat("\"?\" ", 10000, "");
    char *only = repeat("\"", 9999, "");

    (void)state;
    text_is("value \"\" is out of range", "value \"?\" is out of range");
    text_is("\"", "\"?\"");
    text_is("\"\"", "\"?\"");
    text_is("\"a\"\"b\"", "\"?\"");
    text_is(many, want);
    text_is(only, "\"?\"");
    text_is("invalid input syntax for type integer: \"12'3\"",
            "invalid input syntax for type integer: \"?\"");
    free(many);
    free(want);
    free(only);
}

static void test_text_literals_and_numbers(void **state)
{
    char *many = repeat("'' ", 10000, ""), *want = repeat("'?' ", 10000, "");

    (void)state;
    text_is("Key (id)=(42) already exists.", "Key (id)=(?) already exists.");
    text_is("''", "'?'");
    text_is("'", "'?'");
    text_is("near E'\\'' here", "near E'?' here");
    text_is("at $$x$$ and $a$y$a$", "at '?' and '?'");
    text_is("", "");
    text_is(many, want);
    assert_null(explain_redact_text(NULL));
    free(many);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_empty_literal),
        cmocka_unit_test(test_plan_many_empty_literals),
        cmocka_unit_test(test_plan_only_quotes),
        cmocka_unit_test(test_plan_unterminated),
        cmocka_unit_test(test_plan_escape_strings),
        cmocka_unit_test(test_plan_dollar_quotes),
        cmocka_unit_test(test_plan_numbers_and_names),
        cmocka_unit_test(test_text_double_quotes),
        cmocka_unit_test(test_text_literals_and_numbers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
