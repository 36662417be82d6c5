/* Unit tests for the fingerprint module's texts at their bounds: literal values that grow when
 * decoded (X'' strings 4 times, U& and E'' escapes), normalized and fallback texts of quotes,
 * sqlcommenter tags whose values grow when encoded again. Run under ASan: every output is
 * checked whole, and no buffer is overrun. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text_runs.h"

#include "pgscope/fingerprint.h"

/* ---- literal values ---- */

typedef struct values {
    char *v[8];
    size_t len[8];
    int n;
} values;

static void keep(const char *value, size_t len, void *arg)
{
    values *vs = arg;

    if (vs->n < 8) {
        vs->v[vs->n] = malloc(len + 1);
        assert_non_null(vs->v[vs->n]);
        memcpy(vs->v[vs->n], value, len + 1);
        vs->len[vs->n++] = len;
    }
}

static void values_free(values *vs)
{
    for (int i = 0; i < vs->n; i++)
        free(vs->v[i]);
    memset(vs, 0, sizeof *vs);
}

/* The one literal of sql is want (of want_len bytes). */
static void one_value(const char *sql, const char *want, size_t want_len)
{
    values vs;

    memset(&vs, 0, sizeof vs);
    assert_int_equal(fp_literals(sql, strlen(sql), keep, &vs), 1);
    assert_int_equal(vs.len[0], want_len);
    assert_memory_equal(vs.v[0], want, want_len);
    values_free(&vs);
}

static void test_values_of_quotes(void **state)
{
    char *sql = run_of("SELECT '", '\'', 10000, "'"), *want = run_of("", '\'', 5000, "");

    (void)state;
    one_value("SELECT ''", "", 0);
    one_value("SELECT ''''", "'", 1);
    one_value("SELECT 'a''b'", "a'b", 3);
    one_value(sql, want, 5000);
    free(sql);
    free(want);
    one_value("SELECT $$x''y$$", "x''y", 4);
    one_value("SELECT $q$$q$", "", 0);
    one_value("SELECT 'a'\n'b'", "ab", 2);
    one_value("SELECT -1", "-1", 2);
}

/* X'' strings: each hex digit is 4 bits, 4 bytes of '0' and '1': the value is 4 times the
 * literal's length, the most any literal grows. */
static void test_values_that_grow(void **state)
{
    char *sql = run_of("SELECT X'", 'F', 10000, "'"), *want = run_of("", '1', 40000, "");

    (void)state;
    one_value(sql, want, 40000);
    free(sql);
    free(want);
    one_value("SELECT X'A5'", "10100101", 8);
    one_value("SELECT x''", "", 0);
    one_value("SELECT U&'\\+01F600'", "\xF0\x9F\x98\x80", 4);
    one_value("SELECT U&'!0041!+01F600' UESCAPE '!'", "A\xF0\x9F\x98\x80", 5);
    one_value("SELECT E'\\U0001F600\\u00e9'", "\xF0\x9F\x98\x80\xC3\xA9", 6);
    one_value("SELECT E'\\uD83D\\uDE00'", "\xF0\x9F\x98\x80", 4);
}

/* E'' strings: backslashes escape a quote, a backslash, or a letter. */
static void test_values_of_backslashes(void **state)
{
    char *sql = run_of("SELECT E'", '\\', 10000, "'"), *want = run_of("", '\\', 5000, "");

    (void)state;
    one_value("SELECT E'it\\'s'", "it's", 4);
    one_value("SELECT E'\\\\'", "\\", 1);
    one_value("SELECT E'a\\tb\\x41\\101'", "a\tbAA", 5);
    one_value("SELECT E'\\''''", "''", 2);
    one_value(sql, want, 5000);
    free(sql);
    free(want);
    /* a standard string: a backslash is a character */
    one_value("SELECT 'a\\'", "a\\", 2);
}

/* Unterminated literals: the text is bad SQL, the value is what the literal holds. */
static void test_values_unterminated(void **state)
{
    values vs;
    char *sql = run_of("SELECT '", '\'', 10000, "");

    (void)state;
    memset(&vs, 0, sizeof vs);
    fp_literals("SELECT 'abc", 11, keep, &vs);
    fp_literals("SELECT E'abc\\", 13, keep, &vs);
    fp_literals(sql, strlen(sql), keep, &vs);
    fp_literals("SELECT $a$never", 15, keep, &vs);
    for (int i = 0; i < vs.n; i++)
        assert_true(vs.len[i] <= strlen(sql));
    values_free(&vs);
    free(sql);
}

/* ---- normalized and fallback texts ---- */

static void normalized_is(fp_cache *c, const char *sql, const char *want, bool fallback)
{
    fp_result r;

    fp_statement(c, sql, strlen(sql), &r);
    assert_int_equal(r.fallback, fallback);
    if (strcmp(r.normalized, want) != 0)
        fail_msg("normalized [%.100s]: [%.100s], want [%.100s]", sql, r.normalized, want);
}

static void test_normalized_quotes(void **state)
{
    fp_cache *c = fp_cache_new(64);
    char *quotes = run_of("SELECT '", '\'', 10000, "'");
    char *odd = run_of("SELECT '", '\'', 10000, ""); /* one quote short */
    char *many = malloc(10000 * 3 + 64);
    fp_result r;

    (void)state;
    assert_non_null(c);
    assert_non_null(many);
    normalized_is(c, "SELECT ''", "SELECT $1", false);
    normalized_is(c, "SELECT ''''", "SELECT $1", false);
    normalized_is(c, quotes, "SELECT $1", false);
    normalized_is(c, "SELECT E'\\\\', $$''$$", "SELECT $1, $2", false);
    /* rejected by the parser: the lexer's text, every literal a ?, cut at 4 kB */
    normalized_is(c, odd, "SELECT ?", true);
    normalized_is(c, "SELECT 'a' 'b", "SELECT ? ?", true);
    /* 10,000 empty literals and a syntax error: 30 kB of text, a fallback text cut at 4 kB */
    strcpy(many, "SELECT ");
    for (size_t i = 0; i < 10000; i++)
        memcpy(many + 7 + i * 3, "'',", 3);
    strcpy(many + 7 + 10000 * 3, " FROM");
    fp_statement(c, many, strlen(many), &r);
    assert_true(r.fallback);
    assert_true(strlen(r.normalized) <= 4096);
    assert_memory_equal(r.normalized, "SELECT ?,?,?,", 13);
    free(quotes);
    free(odd);
    free(many);
    fp_cache_free(c);
}

/* ---- sqlcommenter tags ---- */

/* A value of commas: each one decoded from \, or %2C, then encoded again as %2C, 3 bytes. */
static void test_tags_that_grow(void **state)
{
    size_t n = 3000;
    char *sql = malloc(n * 3 + 64), *want = malloc(n * 3 + 8), *out;
    int k = 0;

    (void)state;
    assert_non_null(sql);
    assert_non_null(want);
    k = sprintf(sql, "SELECT 1 /*k='");
    for (size_t i = 0; i < n; i++)
        k += sprintf(sql + k, "%s", i % 2 ? "%2C" : ",");
    strcpy(sql + k, "'*/");
    k = sprintf(want, "k=");
    for (size_t i = 0; i < n; i++)
        k += sprintf(want + k, "%%2C");
    out = malloc((size_t)k + 1);
    assert_non_null(out);
    assert_int_equal(fp_tags(sql, strlen(sql), out, (size_t)k + 1), 1);
    assert_string_equal(out, want);
    /* one byte short: cut, and terminated */
    assert_int_equal(fp_tags(sql, strlen(sql), out, (size_t)k), 1);
    assert_int_equal(strlen(out), (size_t)k - 1);
    free(out);
    free(sql);
    free(want);
}

static void test_tags_of_quotes(void **state)
{
    char out[64];
    char *sql = run_of("SELECT 1 /*a='", '\'', 0, "\\'\\'\\'',b='%27'*/");

    (void)state;
    assert_int_equal(fp_tags(sql, strlen(sql), out, sizeof out), 2);
    assert_string_equal(out, "a=''',b='");
    assert_int_equal(fp_tags("SELECT 1 /*a=''*/", 17, out, sizeof out), 1);
    assert_string_equal(out, "a=");
    assert_int_equal(fp_tags("SELECT 1 /*a='*/", 16, out, sizeof out), 0);
    assert_string_equal(out, "");
    free(sql);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_of_quotes),      cmocka_unit_test(test_values_that_grow),
        cmocka_unit_test(test_values_of_backslashes), cmocka_unit_test(test_values_unterminated),
        cmocka_unit_test(test_normalized_quotes),     cmocka_unit_test(test_tags_that_grow),
        cmocka_unit_test(test_tags_of_quotes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
