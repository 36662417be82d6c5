/* Unit tests for the explain module's writers into fixed buffers, at their bounds: the
 * search_path value (whole or nothing, exactly what fits), the side connections' keywords, the
 * advisor's DDL and predicates with names and literals made of quotes and backslashes. Run
 * under ASan: every buffer is allocated at its exact size. */
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

#include "../../src/explain/explain_int.h"
#include "pgscope/advisor.h"
#include "pgscope/explain.h"

/* ---- search_path ---- */

/* explain_search_path_change into a heap buffer of exactly cap bytes. */
static explain_path_change path_in(const char *sql, size_t cap, char **value)
{
    *value = malloc(cap);
    assert_non_null(*value);
    return explain_search_path_change(sql, *value, cap);
}

/* A value that fits to the last byte is kept: "a" quoted is 3 bytes and the NUL. */
static void test_path_exact_fit(void **state)
{
    char *v;

    (void)state;
    assert_int_equal(path_in("SET search_path = a", 4, &v), EXPLAIN_PATH_SET);
    assert_string_equal(v, "\"a\"");
    free(v);
    assert_int_equal(path_in("SET search_path = a", 3, &v), EXPLAIN_PATH_UNKNOWN);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(path_in("SET search_path = a, b", 9, &v), EXPLAIN_PATH_SET);
    assert_string_equal(v, "\"a\", \"b\"");
    free(v);
    assert_int_equal(path_in("SET search_path = a, b", 8, &v), EXPLAIN_PATH_UNKNOWN);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(path_in("SET search_path = '\"'", 5, &v), EXPLAIN_PATH_SET);
    assert_string_equal(v, "\"\"\"\"");
    free(v);
    assert_int_equal(path_in("SET search_path = '\"'", 4, &v), EXPLAIN_PATH_UNKNOWN);
    free(v);
    assert_int_equal(path_in("SET search_path = a", 1, &v), EXPLAIN_PATH_UNKNOWN);
    free(v);
}

/* An element of 10,000 quotes doubles to 20,002 bytes: dropped from 1 kB, whole in 20,003. */
static void test_path_of_quotes(void **state)
{
    char *sql = run_of("SET search_path = '", '"', 10000, "'");
    char *want = run_of("\"", '"', 20000, "\"");
    char *v;

    (void)state;
    assert_int_equal(path_in(sql, 1024, &v), EXPLAIN_PATH_UNKNOWN);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(path_in(sql, 20002, &v), EXPLAIN_PATH_UNKNOWN);
    free(v);
    assert_int_equal(path_in(sql, 20003, &v), EXPLAIN_PATH_SET);
    assert_string_equal(v, want);
    free(v);
    free(sql);
    free(want);
    /* single quotes in a name are no quotes of the list syntax: as they are */
    sql = run_of("SET search_path = '", '\'', 10000, "'"); /* 5000 quotes, '' each */
    want = run_of("\"", '\'', 5000, "\"");
    assert_int_equal(path_in(sql, 5002, &v), EXPLAIN_PATH_UNKNOWN);
    free(v);
    assert_int_equal(path_in(sql, 5003, &v), EXPLAIN_PATH_SET);
    assert_string_equal(v, want);
    free(v);
    free(sql);
    free(want);
}

/* ---- the side connections' keywords ---- */

static void test_conn_keywords_all_given(void **state)
{
    explain_conn_target t = {"host=h dbname=d", "h", "5432", "require", "/ca.pem", "u", "db",
                             "pgscope",         "5"};
    const char **keys = malloc(EXPLAIN_CONN_KEYWORDS * sizeof *keys);
    const char **vals = malloc(EXPLAIN_CONN_KEYWORDS * sizeof *vals);
    int n = 0;

    (void)state;
    assert_non_null(keys);
    assert_non_null(vals);
    explain_conn_keywords(&t, keys, vals);
    while (keys[n] != NULL)
        n++;
    assert_int_equal(n, 13); /* 10 defaults, dbname twice, fallback_application_name */
    assert_true(n < EXPLAIN_CONN_KEYWORDS);
    assert_null(vals[n]);
    assert_string_equal(keys[n - 1], "fallback_application_name");
    free(keys);
    free(vals);
}

/* ---- the advisor's DDL and predicates ---- */

/* Every name 63 quotes, three columns, a predicate of 255 bytes: the longest DDL, whole in a
 * suggestion's field. */
static void test_ddl_longest(void **state)
{
    advisor_index ix;
    advisor_suggestion *s = malloc(sizeof *s);
    char quotes[127], pred[256];
    char *want;
    size_t cap = sizeof s->ddl;
    char *out = malloc(cap);

    (void)state;
    assert_non_null(s);
    assert_non_null(out);
    memset(&ix, 0, sizeof ix);
    memset(ix.schema, '"', ADVISOR_NAME - 1);
    memset(ix.table, '"', ADVISOR_NAME - 1);
    for (int i = 0; i < ADVISOR_MAX_COLUMNS; i++)
        memset(ix.columns[i], '"', ADVISOR_NAME - 1);
    ix.n_columns = ADVISOR_MAX_COLUMNS;
    memset(pred, 'x', 255);
    pred[255] = '\0';
    memcpy(ix.predicate, pred, sizeof pred);
    memset(quotes, '"', 126);
    quotes[126] = '\0';
    want = malloc(2048);
    assert_non_null(want);
    snprintf(want, 2048,
             "CREATE INDEX CONCURRENTLY ON \"%s\".\"%s\" (\"%s\", \"%s\", \"%s\") WHERE %s", quotes,
             quotes, quotes, quotes, quotes, pred);
    assert_true(strlen(want) < cap);
    advisor_ddl(&ix, true, out, cap);
    assert_string_equal(out, want);
    /* names the caller left without their NUL are read to ADVISOR_NAME - 1 bytes */
    memset(ix.table, '"', ADVISOR_NAME);
    memset(ix.predicate, 'x', ADVISOR_PREDICATE);
    advisor_ddl(&ix, true, out, cap);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(s);
}

/* Cut to a small cap, always terminated; nothing written to a cap of 0. */
static void test_ddl_small_caps(void **state)
{
    advisor_index ix;

    (void)state;
    memset(&ix, 0, sizeof ix);
    strcpy(ix.table, "t\"t");
    strcpy(ix.columns[0], "c");
    ix.n_columns = 1;
    for (size_t cap = 1; cap < 40; cap++) {
        char *out = malloc(cap);
        assert_non_null(out);
        advisor_ddl(&ix, false, out, cap);
        assert_true(strlen(out) < cap);
        assert_memory_equal(out, "CREATE INDEX ON \"t\"\"t\" (\"c\")", strlen(out));
        free(out);
    }
    advisor_ddl(&ix, false, NULL, 0);
}

/* A partial index's predicate quotes its constant: quotes doubled, backslashes in an E'' string;
 * one that does not fit ADVISOR_PREDICATE is left out, never cut. */
static void test_predicate_literals(void **state)
{
    advisor_index out[16];
    char *sql, *want;
    int n;

    (void)state;
    n = advisor_candidates("SELECT * FROM t WHERE a = 1 AND s = 'it''s'", out, 16);
    assert_true(n >= 2);
    assert_string_equal(out[n - 1].predicate, "s = 'it''s'");
    n = advisor_candidates("SELECT * FROM t WHERE a = 1 AND s = E'a\\\\b\\'c'", out, 16);
    assert_true(n >= 2);
    assert_string_equal(out[n - 1].predicate, "s = E'a\\\\b''c'");
    n = advisor_candidates("SELECT * FROM t WHERE a = 1 AND s = ''", out, 16);
    assert_true(n >= 2);
    assert_string_equal(out[n - 1].predicate, "s = ''");
    /* 124 quotes in the value make "s = '...'" 254 bytes: it fits, with its NUL */
    sql = run_of("SELECT * FROM t WHERE a = 1 AND s = '", '\'', 248, "'");
    want = run_of("s = '", '\'', 248, "'");
    n = advisor_candidates(sql, out, 16);
    assert_true(n >= 2);
    assert_string_equal(out[n - 1].predicate, want);
    free(sql);
    free(want);
    /* 125 make 256 bytes: no partial index on s */
    sql = run_of("SELECT * FROM t WHERE a = 1 AND s = '", '\'', 250, "'");
    n = advisor_candidates(sql, out, 16);
    for (int i = 0; i < n; i++)
        assert_null(strstr(out[i].predicate, "s = "));
    free(sql);
    /* 10,000 quotes, 10,000 backslashes: no partial index on s, and nothing cut */
    sql = run_of("SELECT * FROM t WHERE a = 1 AND s = '", '\'', 10000, "'");
    n = advisor_candidates(sql, out, 16);
    for (int i = 0; i < n; i++)
        assert_null(strstr(out[i].predicate, "s = "));
    free(sql);
    sql = run_of("SELECT * FROM t WHERE a = 1 AND s = E'", '\\', 10000, "'");
    n = advisor_candidates(sql, out, 16);
    for (int i = 0; i < n; i++)
        assert_null(strstr(out[i].predicate, "s = "));
    free(sql);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_exact_fit),          cmocka_unit_test(test_path_of_quotes),
        cmocka_unit_test(test_conn_keywords_all_given), cmocka_unit_test(test_ddl_longest),
        cmocka_unit_test(test_ddl_small_caps),          cmocka_unit_test(test_predicate_literals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
