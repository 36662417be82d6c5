/* Unit tests for the fingerprint module: the lexer, the pre-digest against libpg_query, the
 * cache, splitting and sqlcommenter tags. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <pg_query.h>

#include "pgscope/fingerprint.h"

/* ---- helpers ---- */

static uint64_t pd(const char *text)
{
    return fp_predigest(text, strlen(text));
}

/* libpg_query's own fingerprint; *ok false when it cannot parse the text. */
static uint64_t lib_fp(const char *text, bool *ok)
{
    PgQueryFingerprintResult r = pg_query_fingerprint(text);
    uint64_t id = r.fingerprint;

    *ok = r.error == NULL;
    pg_query_free_fingerprint_result(r);
    return *ok ? id : 0;
}

static void same_predigest(const char *a, const char *b)
{
    if (pd(a) != pd(b))
        fail_msg("pre-digests differ:\n  [%s]\n  [%s]", a, b);
}

static void different_predigest(const char *a, const char *b)
{
    if (pd(a) == pd(b))
        fail_msg("pre-digests are equal:\n  [%s]\n  [%s]", a, b);
}

/* The crucial property for one pair: equal pre-digests imply equal libpg_query results. */
static void check_implication(const char *a, const char *b)
{
    bool ok_a, ok_b;
    uint64_t fa = lib_fp(a, &ok_a), fb = lib_fp(b, &ok_b);

    if (pd(a) == pd(b) && (ok_a != ok_b || fa != fb))
        fail_msg("equal pre-digests, different fingerprints:\n  [%s]\n  [%s]", a, b);
}

/* What the lexer makes of a text libpg_query rejects: the fallback normalized text. */
static void lexes_as(const char *text, const char *expected)
{
    fp_cache *c = fp_cache_new(16);
    fp_result r;

    fp_statement(c, text, strlen(text), &r);
    assert_true(r.fallback);
    assert_string_equal(r.normalized, expected);
    fp_cache_free(c);
}

/* ---- the lexer ---- */

static void test_lexer_every_literal_kind(void **state)
{
    (void)state;
    lexes_as("SELEC 42, 1.5, .5e-3, 99999999999, 'it''s', E'a\\'b', B'101', X'ff', N'n', "
             "U&'d\\0061t', $$x$$, $t$ $$ $t$, $1",
             "SELEC ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, $1");
}

static void test_lexer_comments_nest_and_vanish(void **state)
{
    (void)state;
    lexes_as("SELEC /* a /* nested */ still comment */ a -- to the end\n, b", "SELEC a , b");
    same_predigest("SELECT /* a /* b */ c */ 1", "SELECT 1");
    same_predigest("-- leading\nSELECT 1 -- trailing", "SELECT 1");
    different_predigest("SELECT 1 /* never closed", "SELECT 1");
    different_predigest("SELECT 1 /* /* */", "SELECT 1");
}

static void test_lexer_dollar_quotes_with_tags(void **state)
{
    (void)state;
    lexes_as("SELEC $a$ it's $b$ not $ab$ the end $a$, $a", "SELEC ?, $a");
    same_predigest("SELECT $a$ x $b$ y $a$, 1", "SELECT $$z$$, 2");
    different_predigest("SELECT $a$ x", "SELECT $a$ x $a$");
    same_predigest("SELECT a$b$c FROM t", "SELECT A$B$C FROM t"); /* $ inside identifiers */
}

static void test_lexer_escape_strings(void **state)
{
    (void)state;
    lexes_as("SELEC E'\\'', E'\\\\', E'''', e'x' y", "SELEC ?, ?, ?, ? y");
    same_predigest("SELECT E'abc' FROM t", "SELECT e'xyz' FROM t");
    /* a backslash escape can be an error (E'\u00'): its value is kept */
    different_predigest("SELECT E'\\u0041'", "SELECT E'\\u00'");
    different_predigest("SELECT E'x'", "SELECT e 'x'"); /* a type named e */
    same_predigest("COPY t FROM E'\\\\x'", "copy t from e'\\\\x'");
}

static void test_lexer_quoted_identifiers_kept(void **state)
{
    (void)state;
    lexes_as("SELEC \"a\"\"b\", U&\"c\" FROM \"T\"", "SELEC \"a\"\"b\", U&\"c\" FROM \"T\"");
    different_predigest("SELECT \"a\"\"b\" FROM t", "SELECT \"a\" FROM t");
    different_predigest("SELECT \"Foo\" FROM t", "SELECT \"foo\" FROM t");
    same_predigest("SELECT foo FROM t", "SELECT FOO FROM T");
    different_predigest("SELECT \"never closed FROM t", "SELECT \"never\" FROM t");
}

static void test_lexer_unicode_text(void **state)
{
    bool ok1, ok2;

    (void)state;
    same_predigest("SELECT 'héllo wörld ✓ 日本' FROM \"tàble\"", "SELECT 'x' FROM \"tàble\"");
    different_predigest("SELECT 1 FROM \"tàble\"", "SELECT 1 FROM \"table\"");
    /* PostgreSQL folds ASCII letters only */
    same_predigest("SELECT Café FROM t", "SELECT cAfé FROM t");
    different_predigest("SELECT café FROM t", "SELECT CAFÉ FROM t");
    assert_int_equal(lib_fp("SELECT Café FROM t", &ok1), lib_fp("SELECT cAfé FROM t", &ok2));
    assert_true(ok1 && ok2);
}

static void test_lexer_numbers(void **state)
{
    (void)state;
    same_predigest("SELECT 1", "SELECT 2147483647");
    different_predigest("SELECT 1", "SELECT 2147483648"); /* an int and a numeric */
    different_predigest("SELECT 1", "SELECT 1.0");
    same_predigest("SELECT 1.5", "SELECT 1e10");
    same_predigest("SELECT 00000000001", "SELECT 7");
    different_predigest("SELECT 1e", "SELECT 1 e");   /* trailing junk is an error */
    different_predigest("SELECT 1..2", "SELECT 1.2"); /* 1, .., 2 */
    lexes_as("SELECT 123abc, 1.5x, $1y", "SELECT ?, ?, ?");
    /* after a type name, ARRAY[5] is a bound that fingerprints keep, not an array */
    different_predigest("SELECT x::int ARRAY[5]", "SELECT x::int ARRAY[6]");
    check_implication("SELECT x::int ARRAY[1]", "SELECT x::int ARRAY[1, 2]");
    same_predigest("SELECT ARRAY[1] || ARRAY[2, 3]", "SELECT ARRAY[4, 5] || ARRAY[6]");
}

static void test_lexer_string_continuation(void **state)
{
    (void)state;
    /* quoted strings separated by a newline are one literal; on one line, a syntax error */
    same_predigest("SELECT 'a'\n  'b'", "SELECT 'c'");
    same_predigest("SELECT 'a'\r'b'", "SELECT 'c'");
    different_predigest("SELECT 'a' 'b'", "SELECT 'c'");
    different_predigest("SELECT 'a' -- c\n'b'", "SELECT 'c'");
    check_implication("SELECT 'a' -- c\n'b'", "SELECT 'a'\n'b'");
    check_implication("SELECT 'a' 'b'", "SELECT 'a'\n'b'");
    different_predigest("SELECT B'1'\n'0'", "SELECT B'1' '0'");
}

static void test_lexer_operators_and_comments(void **state)
{
    (void)state;
    same_predigest("SELECT a+b", "SELECT a + b");
    different_predigest("SELECT a <= b", "SELECT a < = b");
    different_predigest("SELECT a::int", "SELECT a: :int");
    same_predigest("SELECT a+--c\nb", "SELECT a + b");
    same_predigest("SELECT a+/*c*/b", "SELECT a + b");
    different_predigest("SELECT ab FROM t", "SELECT a b FROM t");
    different_predigest("SELECT a FROM t WHERE x = $1", "SELECT a FROM t WHERE x = $2");
}

static void test_lexer_stops_at_nul(void **state)
{
    static const char text[] = "SELECT 1\0 garbage";

    (void)state;
    assert_int_equal(fp_predigest(text, sizeof text - 1), pd("SELECT 1"));
    assert_int_equal(fp_predigest("SELECT 1 FROM t", 8), pd("SELECT 1"));
    assert_int_equal(fp_predigest(NULL, 0), pd(""));
}

/* ---- the pre-digest ---- */

static void test_predigest_ignores_literals_spacing_comments_case(void **state)
{
    (void)state;
    same_predigest("select   a,b from T where X=1 and y='q'",
                   "SELECT a , b\nFROM t /* x */ WHERE x = 2 AND Y = 'it''s'");
    same_predigest("UPDATE t SET a = 1 WHERE id = 2", "update T set A=3 where ID=4");
}

static void test_predigest_differs_on_structure(void **state)
{
    (void)state;
    different_predigest("SELECT a FROM t", "SELECT b FROM t");
    different_predigest("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x > 1");
    different_predigest("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = y");
    different_predigest("SELECT a, b FROM t", "SELECT b, a FROM t");
    different_predigest("SELECT 1", "SELECT '1'");
    different_predigest("SELECT x FROM t WHERE a = -1", "SELECT x FROM t WHERE a = -'1'");
    different_predigest("SELECT 1; SELECT 2", "SELECT 1");
}

static void test_predigest_collapses_in_lists(void **state)
{
    (void)state;
    same_predigest("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (4)");
    same_predigest("SELECT * FROM t WHERE id = ANY(ARRAY[1, 2])",
                   "SELECT * FROM t WHERE id = ANY(ARRAY['a'])");
    different_predigest("SELECT * FROM t WHERE id IN (1, x)", "SELECT * FROM t WHERE id IN (1)");
    different_predigest("SELECT * FROM t WHERE id IN (1, 2,)", "SELECT * FROM t WHERE id IN (1)");
    check_implication("SELECT * FROM t WHERE id IN (1, 2,)", "SELECT * FROM t WHERE id IN (1)");
    same_predigest("SELECT * FROM t WHERE id IN (NULL, TRUE, 'x')",
                   "SELECT * FROM t WHERE id IN (1)");
    /* rows of constants, however many */
    same_predigest("INSERT INTO t (a, b) VALUES (1, 'x'), (2, NULL), (DEFAULT, TRUE) RETURNING id",
                   "INSERT INTO t (a, b) VALUES (3, 'y') RETURNING id");
    same_predigest("INSERT INTO t VALUES (1), (2)", "INSERT INTO t VALUES (3, 4, 5)");
    same_predigest("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)",
                   "SELECT * FROM (VALUES (3)) AS v(id, name)");
    different_predigest("INSERT INTO t VALUES (1), (now())", "INSERT INTO t VALUES (1)");
    check_implication("INSERT INTO t VALUES (1), (2) x", "INSERT INTO t VALUES (1) x");
    different_predigest("INSERT INTO t VALUES (1), 2", "INSERT INTO t VALUES (1)");
}

static void test_predigest_ignores_savepoint_and_cursor_names(void **state)
{
    (void)state;
    same_predigest("SAVEPOINT \"s140_x1\"", "SAVEPOINT \"s140_x2\"");
    same_predigest("SAVEPOINT sa_savepoint_1", "savepoint \"x\"");
    same_predigest("RELEASE SAVEPOINT \"s1_x1\"", "RELEASE SAVEPOINT active_record_2");
    same_predigest("ROLLBACK TO SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s2");
    same_predigest("DECLARE \"c_1\" CURSOR FOR SELECT 1", "DECLARE \"c_2\" CURSOR FOR SELECT 2");
    same_predigest("CLOSE \"c_1\"", "CLOSE c2");
    same_predigest("FETCH FORWARD 10 FROM \"c_1\"", "FETCH FORWARD 10 FROM c2");
    /* a reserved word is no name: SAVEPOINT select is a syntax error */
    different_predigest("SAVEPOINT s1", "SAVEPOINT select");
    different_predigest("SAVEPOINT \"\"", "SAVEPOINT \"a\"");
    check_implication("SAVEPOINT \"\"", "SAVEPOINT \"a\"");
}

/* libpg_query does not skip a comment right after NOT, NULLS, WITH or U&'': it fails there. */
static void test_predigest_counts_comments_where_libpg_query_looks_ahead(void **state)
{
    static const char *const pairs[][2] = {
        {"SELECT 1 FROM t WHERE a NOT /* c */ LIKE 'x'", "SELECT 1 FROM t WHERE a NOT LIKE 'x'"},
        {"SELECT 1 FROM t WHERE a NOT -- c\nIN (1)", "SELECT 1 FROM t WHERE a NOT IN (1)"},
        {"SELECT 1 FROM t ORDER BY a NULLS /**/ FIRST", "SELECT 1 FROM t ORDER BY a NULLS FIRST"},
        {"SELECT now()::timestamp WITH /**/ TIME ZONE", "SELECT now()::timestamp WITH TIME ZONE"},
        {"SELECT U&'x' /**/ UESCAPE '!'", "SELECT U&'x' UESCAPE '!'"},
        {"SELECT U&\"x\" UESCAPE /**/ '!'", "SELECT U&\"x\" UESCAPE '!'"},
    };
    bool ok;

    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        lib_fp(pairs[i][0], &ok);
        assert_false(ok);
        lib_fp(pairs[i][1], &ok);
        assert_true(ok);
        different_predigest(pairs[i][0], pairs[i][1]);
    }
    same_predigest("SELECT 1 FROM t WHERE a /* c */ NOT LIKE 'x'",
                   "SELECT 1 FROM t WHERE a NOT LIKE 'y'");
    check_implication("WITH /* c */ x AS (SELECT 1) SELECT 1", "WITH x AS (SELECT 2) SELECT 3");
}

/* The id a fresh cache gives a text: computed, never a cached answer. */
static uint64_t fresh_id(const char *text, bool *fallback)
{
    fp_cache *c = fp_cache_new(1);
    fp_result r;

    fp_statement(c, text, strlen(text), &r);
    uint64_t id = r.id;
    if (fallback != NULL)
        *fallback = r.fallback;
    fp_cache_free(c);
    return id;
}

/* Where libpg_query's fingerprint keeps a literal's value, pgscope's shape does not: one shape
 * for every payload, comment or password (which a stored fingerprint could otherwise confirm),
 * and one cache entry, so that a new value costs no parse. */
static void test_shapes_ignore_values_that_fingerprints_keep(void **state)
{
    static const char *const pairs[][2] = {
        {"COPY t FROM '/tmp/a.csv'", "COPY t FROM '/tmp/b.csv'"},
        {"CREATE TABLE t (a int) WITH (fillfactor = 70)",
         "CREATE TABLE t (a int) WITH (fillfactor = 80)"},
        {"COMMENT ON TABLE t IS 'a'", "COMMENT ON TABLE t IS 'b'"},
        {"NOTIFY chan, 'a'", "NOTIFY chan, 'b'"},
        {"NOTIFY jobs, '{\"job_id\": 1}'", "notify  jobs,'{\"job_id\": 20000}'"},
        {"SELECT pg_notify('jobs', 'a')", "SELECT pg_notify('jobs', 'b')"}, /* DML all along */
        {"FETCH 10 FROM c1", "FETCH 20 FROM c1"},
        {"EXPLAIN (FORMAT 'json') SELECT 1", "EXPLAIN (FORMAT 'text') SELECT 1"},
        {"COPY (SELECT 1) TO '/tmp/a'", "COPY (SELECT 1) TO '/tmp/b'"},
        {"ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD 'guess'"},
        {"CREATE ROLE app LOGIN PASSWORD 'hunter2'", "CREATE ROLE app LOGIN PASSWORD 'x'"},
        {"ALTER ROLE app SET work_mem = '64MB'", "ALTER ROLE app SET work_mem = '1GB'"},
        {"CREATE INDEX i ON t (a) WHERE b = 'x'", "CREATE INDEX i ON t (a) WHERE b = 'y'"},
        {"CREATE TABLE t (a float(10))", "CREATE TABLE t (a float(30))"},
        {"SECURITY LABEL ON TABLE t IS 'secret'", "SECURITY LABEL ON TABLE t IS 'public'"},
        {"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
         "CREATE FUNCTION f() RETURNS int AS $$ SELECT 2 $$ LANGUAGE sql"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        bool fb_a, fb_b;
        uint64_t a = fresh_id(pairs[i][0], &fb_a), b = fresh_id(pairs[i][1], &fb_b);
        assert_false(fb_a || fb_b); /* parsed: not flagged as fallbacks */
        if (a != b)
            fail_msg("a value shapes the statement:\n  [%s]\n  [%s]", pairs[i][0], pairs[i][1]);
        same_predigest(pairs[i][0], pairs[i][1]);
    }
    /* A SET value written as a word is a value too; words stay in the pre-digest (a name
     * could stand there), so each costs a parse, but the shape is the same. */
    static const char *const words[][2] = {
        {"ALTER ROLE app SET app.token = hunter2", "ALTER ROLE app SET app.token = guess"},
        {"SET app.token = hunter2", "SET app.token TO guess"},
    };
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (fresh_id(words[i][0], NULL) != fresh_id(words[i][1], NULL))
            fail_msg("a value shapes the statement:\n  [%s]\n  [%s]", words[i][0], words[i][1]);
    /* The id is not libpg_query's (which keeps the password), and differs from any fallback. */
    bool ok;
    uint64_t lib = lib_fp("ALTER ROLE app PASSWORD 'hunter2'", &ok);
    assert_true(ok);
    assert_int_not_equal(fresh_id("ALTER ROLE app PASSWORD 'hunter2'", NULL), lib);
}

/* Statements that differ in anything but values still differ. */
static void test_shapes_still_tell_statements_apart(void **state)
{
    static const char *const pairs[][2] = {
        {"NOTIFY jobs, 'a'", "NOTIFY mail, 'a'"},
        {"NOTIFY jobs, 'a'", "NOTIFY jobs"},
        {"COMMENT ON TABLE t IS 'a'", "COMMENT ON TABLE u IS 'a'"},
        {"COMMENT ON TABLE t IS 'a'", "COMMENT ON COLUMN t.a IS 'a'"},
        {"ALTER ROLE app PASSWORD 'x'", "ALTER ROLE admin PASSWORD 'x'"},
        {"ALTER ROLE app PASSWORD 'x'", "ALTER ROLE app PASSWORD NULL"},
        {"ALTER ROLE app SET work_mem = '64MB'", "ALTER ROLE app SET temp_buffers = '64MB'"},
        {"SET app.token = hunter2", "SET app.other = hunter2"},
        {"FETCH 10 FROM c1", "MOVE 10 FROM c1"},
        {"COPY t FROM '/tmp/a.csv'", "COPY t TO '/tmp/a.csv'"},
        {"CREATE TABLE t (a varchar(10))", "CREATE TABLE t (a char(10))"},
        {"CREATE TYPE e AS ENUM ('a', 'b')", "CREATE TYPE e AS ENUM ('a', 'b', 'c')"},
        {"SELECT x::float(10) FROM t", "SELECT x::float(30) FROM t"},
        {"SELECT current_time(3)", "SELECT current_time(4)"},
        {"SELECT x::int[5] FROM t", "SELECT x::int[6] FROM t"},
        {"SELECT 1", "NOTIFY x"},
        /* a string in doubt (standard_conforming_strings off) cuts the normalized text, not the
         * id: what follows still tells statements apart (the guard's verdict is kept by id) */
        {"SELECT 'a\\' , x FROM t", "SELECT 'a\\' , nextval('s') FROM t"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        if (fresh_id(pairs[i][0], NULL) == fresh_id(pairs[i][1], NULL))
            fail_msg("one shape for:\n  [%s]\n  [%s]", pairs[i][0], pairs[i][1]);
        different_predigest(pairs[i][0], pairs[i][1]);
    }
}

/* A value-bearing statement costs one parse: later values are cache hits. */
static void test_cache_hits_value_bearing_statements(void **state)
{
    fp_cache *c = fp_cache_new(100);
    fp_counters n;
    fp_result r;
    uint64_t id = 0;
    char text[128];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(text, sizeof text, "NOTIFY jobs, '{\"job_id\": %d}'", i);
        fp_statement(c, text, (size_t)len, &r);
        if (i == 0)
            id = r.id;
        assert_int_equal(r.id, id);
        assert_string_equal(r.normalized, "NOTIFY jobs, $1");
    }
    fp_get_counters(c, &n);
    assert_int_equal(n.parses, 1);
    assert_int_equal(n.hits, 999);
    fp_cache_free(c);
}

/* Texts where a literal's value decides whether PostgreSQL accepts them. */
static void test_predigest_keeps_validity(void **state)
{
    static const char *const pairs[][2] = {
        {"SELECT E'\\u0041'", "SELECT E'\\u00'"},
        {"SELECT E'\\x41'", "SELECT E'\\xff'"},
        {"SELECT U&'\\0041'", "SELECT U&'\\zzzz'"},
        {"SELECT U&'d!0061t' UESCAPE '!'", "SELECT U&'d!0061t' UESCAPE '+'"},
        {"SELECT x::varchar(10)", "SELECT x::varchar(99999999999)"},
        {"SELECT x::float(1)", "SELECT x::float(0)"},
        /* in a column definition the precision's value is left out, its validity is not */
        {"CREATE TABLE t (a float(1))", "CREATE TABLE t (a float(0))"},
        {"CREATE TABLE t (a float(53))", "CREATE TABLE t (a float(54))"},
        {"CREATE TABLE t (a float(00))", "CREATE TABLE t (a float(10))"},
        {"SELECT 1 e", "SELECT 1e"},
        {"SELECT 'a'\n'b'", "SELECT 'a' 'b'"},
        {"SAVEPOINT s1", "SAVEPOINT select"},
        {"SELECT 1", "SELECT 1 /* never closed"},
        {"SELECT $1", "SELECT $1a"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++)
        check_implication(pairs[i][0], pairs[i][1]);
}

/* A $n mark never touches a word before it, whatever the spacing: TO'x' must not read as the
 * identifier to$2 (found by fuzz_fingerprint: equal pre-digests, different shapes). */
static void test_marks_never_touch_words(void **state)
{
    static const char *const texts[][2] = {
        {"COPY (SELECT 1) TO' /tmp/a'", "COPY (SELECT $1) TO $2"},
        {"COPY (SELECT 1) TO '/tmp/b'", "COPY (SELECT $1) TO $2"},
        {"SELECT x FROM t WHERE a=1", "SELECT x FROM t WHERE a=$1"},
    };
    uint64_t id = 0;

    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        fp_cache *c = fp_cache_new(16);
        fp_result r;
        fp_statement(c, texts[i][0], strlen(texts[i][0]), &r);
        assert_string_equal(r.normalized, texts[i][1]);
        if (i == 0)
            id = r.id;
        if (i == 1)
            assert_true(r.id == id);
        fp_cache_free(c);
    }
}

/* ---- the property: same pre-digest, same libpg_query fingerprint ---- */

/* Real-world statements; {x} is replaced by a random literal of one kind (see put_value). */
static const char *const templates[] = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = {i}",
    "UPDATE pgbench_tellers SET tbalance = tbalance + {i} WHERE tid = {i}",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({i}, {i}, {i}, {i}, "
    "CURRENT_TIMESTAMP)",
    "SELECT u.id, u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id LEFT OUTER JOIN "
    "addresses a ON a.user_id = u.id WHERE u.id = {i} AND o.status = '{s}'",
    "SELECT \"auth_user\".\"id\", \"auth_user\".\"username\" FROM \"auth_user\" WHERE "
    "\"auth_user\".\"id\" IN ({L}) LIMIT {i}",
    "SELECT * FROM products WHERE category_id IN ({L}) AND price BETWEEN {f} AND {f}",
    "SELECT * FROM events WHERE created_at BETWEEN '{s}' AND '{s}' ORDER BY created_at DESC "
    "LIMIT {i} OFFSET {i}",
    "SELECT name FROM users WHERE email LIKE '{s}%' OR name ILIKE '%{s}' OR bio NOT LIKE '{w}' "
    "ESCAPE '!'",
    "SELECT CASE WHEN score > {i} THEN '{s}' WHEN score > {f} THEN '{s}' ELSE NULL END AS grade "
    "FROM results",
    "SELECT CAST(price AS numeric(10, 2)), '{s}'::date, amount::float8 * {f}, {i}::bigint FROM "
    "items",
    "SELECT tags[1], ARRAY[{L}] || ids FROM posts WHERE tags @> ARRAY['{s}', '{w}']::text[] AND "
    "id = ANY(ARRAY[{L}])",
    "SELECT data->>'{w}', data->'{w}'->>{i} FROM docs WHERE data @> '{s}'::jsonb AND "
    "(data->>'n')::int > {i} AND data ? '{w}'",
    "INSERT INTO users (email, name, created_at) VALUES ('{s}', E'{w}', now()) RETURNING id",
    "INSERT INTO counters (key, n) VALUES ('{s}', {i}) ON CONFLICT (key) DO UPDATE SET n = "
    "counters.n + EXCLUDED.n WHERE counters.n < {i}",
    "INSERT INTO t (a, b) VALUES ({i}, '{s}') ON CONFLICT DO NOTHING",
    "UPDATE users SET last_login = now(), login_count = login_count + {i}, note = $${w}$$ WHERE "
    "id = {i} RETURNING *",
    "DELETE FROM sessions WHERE expires_at < now() - interval '{s}' AND user_id = {i}",
    "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE state = '{w}' ORDER BY id FOR "
    "UPDATE SKIP LOCKED LIMIT {i}) RETURNING payload",
    "WITH recent AS (SELECT user_id, count(*) AS n FROM orders WHERE created_at > '{s}' GROUP BY "
    "user_id HAVING count(*) > {i}) SELECT u.name, r.n FROM recent r JOIN users u ON u.id = "
    "r.user_id",
    "WITH RECURSIVE tree AS (SELECT id, parent_id, {i} AS depth FROM nodes WHERE id = {i} UNION "
    "ALL SELECT n.id, n.parent_id, t.depth + {i} FROM nodes n JOIN tree t ON n.parent_id = t.id) "
    "SELECT * FROM tree",
    "SELECT user_id, amount, sum(amount) OVER (PARTITION BY user_id ORDER BY created_at ROWS "
    "BETWEEN {i} PRECEDING AND CURRENT ROW), row_number() OVER w, lag(amount, {i}) OVER w FROM "
    "payments WINDOW w AS (ORDER BY amount DESC)",
    "SELECT date_trunc('{w}', created_at) AS day, count(*) FILTER (WHERE status = '{w}') FROM "
    "orders GROUP BY 1 ORDER BY 1",
    "SELECT x FROM t WHERE ts > now() - INTERVAL '{i} minutes' AND ts::date = DATE '{s}' AND flag "
    "IS NOT TRUE",
    "SELECT coalesce(nullif(name, '{s}'), '{s}'), substring(code FROM {i} FOR {i}), "
    "position('{w}' IN code), B'{B}', X'{X}', N'{w}'",
    "SELECT EXISTS (SELECT 1 FROM memberships m WHERE m.group_id = {i} AND m.user_id = {i})",
    "SELECT a.* FROM accounts a WHERE a.balance >= {f} AND a.kind <> '{w}' AND NOT (a.id = {i} "
    "OR a.owner IS NULL) ORDER BY a.balance DESC NULLS LAST FETCH FIRST {i} ROWS ONLY",
    "SELECT id FROM big WHERE id > {b} AND ratio < -{f}",
    "SELECT 'x' || {i} || E'\\n', -{i}, +{f}, x::float(24), current_timestamp(3), y::int[] FROM t",
    "SELECT * FROM \"Weird \"\"Name\"\"\" WHERE \"Col\" = {i}",
    "VALUES ({i}, '{s}'), ({i}, '{s}')",
    "INSERT INTO \"app_event\" (\"order_id\", \"kind\", \"done\") VALUES {R} RETURNING "
    "\"app_event\".\"id\"",
    "MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = "
    "s.qty + d.qty + {i} WHEN NOT MATCHED THEN INSERT VALUES (d.item, {i})",
    "SET statement_timeout = {i}",
    "SET search_path TO '{w}', public",
    "SET LOCAL lock_timeout = '{i}ms'",
    "SET TIME ZONE '{s}'",
    "BEGIN ISOLATION LEVEL REPEATABLE READ",
    "COMMIT",
    "SAVEPOINT {n}",
    "RELEASE SAVEPOINT {n}",
    "ROLLBACK TO SAVEPOINT {n}",
    "DECLARE {n} CURSOR WITH HOLD FOR SELECT * FROM t WHERE id > {i}",
    "FETCH FORWARD 100 FROM {n}",
    "CLOSE {n}",
    "PREPARE {n} (int, text) AS SELECT * FROM t WHERE id = $1 AND s = $2 AND k = {i}",
    "EXECUTE {n}({i}, '{s}')",
    "DEALLOCATE {n}",
    "CALL do_something({i}, '{s}')",
    "SELECT pg_advisory_lock({i})",
    "LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE",
    "TRUNCATE TABLE sessions, tokens RESTART IDENTITY CASCADE",
    "CREATE TABLE IF NOT EXISTS audit_log (id bigserial PRIMARY KEY, level int NOT NULL DEFAULT "
    "{i}, note text DEFAULT '{s}', ratio numeric(5, 2) DEFAULT {f}, created_at timestamptz "
    "DEFAULT now())",
    "ALTER TABLE users ADD COLUMN score int DEFAULT {i}",
    "CREATE VIEW active_users AS SELECT id, email FROM users WHERE last_login > '{s}' AND status "
    "IN ({L})",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (lower(email)) WHERE "
    "deleted_at IS NULL",
    "COPY (SELECT id, name FROM users WHERE created_at > '{s}' AND kind = {i}) TO STDOUT WITH "
    "(FORMAT csv, HEADER true)",
    "COPY users (id, email) FROM STDIN WITH (FORMAT csv)",
    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM t WHERE a = {i} AND b = '{s}'",
    "NOTIFY jobs, '{s}'",
    "COMMENT ON TABLE t IS '{s}'",
    "ALTER ROLE app PASSWORD '{s}'",
    "ALTER ROLE app IN DATABASE db SET statement_timeout = {i}",
    "CREATE INDEX ON t (a) WHERE b = '{w}' AND c > {i}",
};

/* Templates with a literal where libpg_query's fingerprint keeps values: their id is pgscope's
 * (the hash of their normalized text), not libpg_query's. */
static bool value_shaped(const char *tpl)
{
    static const char *const starts[] = {"FETCH",   "CREATE TABLE", "NOTIFY",
                                         "COMMENT", "ALTER ROLE",   "CREATE INDEX ON"};

    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++)
        if (strncmp(tpl, starts[i], strlen(starts[i])) == 0)
            return true;
    return false;
}

static const char *const string_pool[] = {
    "",
    "x",
    "it''s",
    "a;b",
    "O''Brien",
    "ü€ ✓ 日本",
    "--not a comment",
    "/* nor this */",
    "back\\slash",
    "100%",
    "\"dq\"",
    "line\nbreak",
    "tab\there",
    "$$",
    "2024-01-31",
};
static const char *const word_pool[] = {"alpha", "b", "Zed", "x1", "hello_world", "q"};

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

typedef struct buf {
    char b[4096];
    size_t n;
} buf;

static void put(buf *o, const char *s)
{
    size_t n = strlen(s);
    assert_true(o->n + n < sizeof o->b);
    memcpy(o->b + o->n, s, n + 1);
    o->n += n;
}

static void putf(buf *o, const char *fmt, unsigned a, unsigned b)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, fmt, a, b);
    put(o, tmp);
}

static void put_number(buf *o, char kind)
{
    static const char *const fmts[] = {"%u.%u", ".%u%u", "%u.%ue3", "%ue-%u", "%u.%uE+1"};
    static const unsigned ints[] = {0, 1, 7, 2147483647, 123456};

    if (kind == 'i') {
        unsigned v = rnd_below(3) ? rnd_below(1000000) : ints[rnd_below(5)];
        putf(o, "%u", v, 0);
    } else if (kind == 'b') {
        putf(o, "9%u%u", 100000000 + rnd_below(800000000), rnd_below(1000));
    } else {
        putf(o, fmts[rnd_below(5)], rnd_below(100000), 1 + rnd_below(30));
    }
}

static void put_bits(buf *o, const char *alphabet, unsigned base)
{
    for (unsigned i = 0, n = 1 + rnd_below(12); i < n; i++) {
        char c[2] = {alphabet[rnd_below(base)], 0};
        put(o, c);
    }
}

static void put_name(buf *o)
{
    switch (rnd_below(3)) {
    case 0:
        putf(o, "\"s%u_x%u\"", rnd_below(100000), rnd_below(50));
        break;
    case 1:
        putf(o, "sa_savepoint_%u", rnd_below(1000), 0);
        break;
    default:
        putf(o, "c%u", rnd_below(100000), 0);
        break;
    }
}

static void put_value(buf *o, char kind)
{
    switch (kind) {
    case 's':
        put(o, string_pool[rnd_below(sizeof string_pool / sizeof *string_pool)]);
        break;
    case 'w':
        put(o, word_pool[rnd_below(sizeof word_pool / sizeof *word_pool)]);
        break;
    case 'B':
        put_bits(o, "01", 2);
        break;
    case 'X':
        put_bits(o, "0123456789abcdefABCDEF", 22);
        break;
    case 'n':
        put_name(o);
        break;
    case 'R': /* rows of a bulk INSERT */
        for (unsigned i = 0, n = 1 + rnd_below(5); i < n; i++) {
            put(o, i > 0 ? ", (" : "(");
            if (rnd_below(4))
                put_number(o, 'i');
            else
                put(o, "DEFAULT");
            put(o, ", '");
            put_value(o, 's');
            put(o, rnd_below(2) ? "', NULL)" : "', TRUE)");
        }
        break;
    case 'L':
        for (unsigned i = 0, n = 1 + rnd_below(8); i < n; i++) {
            if (i > 0)
                put(o, ", ");
            put_number(o, 'i');
        }
        break;
    default:
        put_number(o, kind);
        break;
    }
}

/* Whether the output ends with NOT, NULLS or WITH, after which libpg_query cannot take a
 * comment (see test_predigest_counts_comments_where_libpg_query_looks_ahead). */
static bool ends_with_lookahead_word(const buf *o)
{
    static const char *const words[] = {"not", "nulls", "with"};
    size_t end = o->n, start = end;

    while (start > 0 && ((o->b[start - 1] | 0x20) >= 'a' && (o->b[start - 1] | 0x20) <= 'z'))
        start--;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (end - start == strlen(words[i]) &&
            strncasecmp(o->b + start, words[i], end - start) == 0)
            return true;
    return false;
}

static void put_space(buf *o, int variant)
{
    static const char *const spaces[] = {" ", "   ", "\n", "\t", " /* c */ ", " -- c\n", "\r\n"};
    size_t n = ends_with_lookahead_word(o) ? 4 : sizeof spaces / sizeof *spaces;

    put(o, variant == 0 ? " " : spaces[rnd_below((unsigned)n)]);
}

/* One variant of a template: random literals, and from variant 1 on random spacing and
 * comments, and keyword case flipped in odd variants. */
static void expand(const char *tpl, int variant, buf *o)
{
    char quote = 0;

    o->n = 0;
    o->b[0] = '\0';
    for (const char *p = tpl; *p; p++) {
        char c[2] = {*p, 0};
        if (p[0] == '{' && p[1] != '\0' && p[2] == '}') {
            put_value(o, p[1]);
            p += 2;
        } else if (quote != 0 || *p == '\'' || *p == '"') {
            quote = quote == 0 ? *p : (*p == quote ? 0 : quote);
            put(o, c);
        } else if (*p == ' ') {
            put_space(o, variant);
        } else {
            if (variant % 2 == 1 && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                c[0] = (char)(*p ^ 0x20);
            put(o, c);
        }
    }
}

#define VARIANTS 8

/* Every variant has the same pre-digest and, computed afresh, the same id as the cache gives;
 * that id is libpg_query's fingerprint unless the template is value-shaped. */
static void check_template(const char *tpl, fp_cache *cache)
{
    buf first, v;
    uint64_t digest = 0, id = 0;

    for (int k = 0; k < VARIANTS; k++) {
        bool ok, fallback;
        fp_result r;
        expand(tpl, k, k == 0 ? &first : &v);
        const char *text = k == 0 ? first.b : v.b;
        uint64_t f = lib_fp(text, &ok), fresh = fresh_id(text, &fallback);
        if (!ok)
            fail_msg("libpg_query rejects a test statement: [%s]", text);
        fp_statement(cache, text, strlen(text), &r);
        assert_false(r.fallback || fallback);
        assert_int_equal(r.id, fresh);
        if (value_shaped(tpl) ? f == fresh : f != fresh)
            fail_msg("id %s libpg_query's: [%s]", value_shaped(tpl) ? "is" : "is not", text);
        if (k == 0) {
            digest = pd(text);
            id = fresh;
        } else if (pd(text) != digest) {
            fail_msg("pre-digests differ:\n  [%s]\n  [%s]", first.b, text);
        } else if (fresh != id) {
            fail_msg("equal pre-digests, different ids:\n  [%s]\n  [%s]", first.b, text);
        }
    }
}

static void test_property_literal_variants(void **state)
{
    fp_cache *cache = fp_cache_new(1000);
    fp_counters n;
    size_t count = sizeof templates / sizeof *templates;

    (void)state;
    for (int round = 0; round < 5; round++)
        for (size_t i = 0; i < count; i++)
            check_template(templates[i], cache);
    fp_get_counters(cache, &n);
    assert_int_equal(n.lookups, 5 * count * VARIANTS);
    assert_int_equal(n.parses, count); /* one parse per shape */
    assert_int_equal(n.fallbacks, 0);
    fp_cache_free(cache);
}

/* ---- the cache ---- */

static void test_cache_one_parse_per_shape(void **state)
{
    fp_cache *c = fp_cache_new(100);
    fp_counters n;
    fp_result r;
    uint64_t id = 0;
    char text[128];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(text, sizeof text, "SELECT * FROM t WHERE id = %d AND name = 'n%d'",
                           i * 7919, i);
        fp_statement(c, text, (size_t)len, &r);
        if (i == 0)
            id = r.id;
        assert_int_equal(r.id, id);
        assert_false(r.fallback);
        assert_string_equal(r.normalized, "SELECT * FROM t WHERE id = $1 AND name = $2");
    }
    fp_get_counters(c, &n);
    assert_int_equal(n.lookups, 1000);
    assert_int_equal(n.hits, 999);
    assert_int_equal(n.parses, 1);
    assert_int_equal(n.fallbacks, 0);
    assert_int_equal(n.evictions, 0);
    fp_cache_free(c);
}

/* A bound statement's text, back byte for byte, is not lexed again; a text one byte apart is,
 * and gets its own shape; texts with literals do not push a bound text out of its slot. */
static void test_cache_exact_text(void **state)
{
    fp_cache *c = fp_cache_new(100);
    fp_counters n;
    fp_result r;
    const char *bound = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
    const char *other = "SELECT abalance FROM pgbench_accounts WHERE bid = $1";
    char text[128];

    (void)state;
    fp_statement(c, bound, strlen(bound), &r);
    uint64_t id = r.id;
    for (int i = 0; i < 100; i++) {
        fp_statement(c, bound, strlen(bound), &r);
        assert_int_equal(r.id, id);
        assert_string_equal(r.normalized, bound);
        int len = snprintf(text, sizeof text,
                           "SELECT abalance FROM pgbench_accounts WHERE aid = %d", i * 7919);
        fp_statement(c, text, (size_t)len, &r);
        assert_int_equal(r.id, id);
    }
    fp_statement(c, other, strlen(other), &r);
    assert_int_not_equal(r.id, id);
    assert_string_equal(r.normalized, other);
    fp_statement(c, bound, 10, &r); /* a prefix of a known text is not that text */
    assert_int_not_equal(r.id, id);
    fp_get_counters(c, &n);
    assert_int_equal(n.lookups, 203);
    assert_int_equal(n.exact_hits, 100);
    assert_int_equal(n.parses, 4); /* bound, inlined (its own pre-digest, same id), other, prefix */
    fp_cache_free(c);
}

static void ignore_value(const char *value, size_t len, void *arg)
{
    (void)value;
    (void)len;
    (void)arg;
}

/* fp_result.values is false only for texts fp_literals finds no value in: the analysis then
 * skips reading the text for literals. */
static void test_values_flag_never_hides_a_value(void **state)
{
    static const char *const with[] = {
        "SELECT 1",
        "SELECT * FROM t WHERE a = 'x'",
        "SELECT true",
        "SELECT null",
        "SELECT * FROM t LIMIT ALL",
        "SELECT EXTRACT(year FROM d) FROM t",
        "SELECT x IS NFC NORMALIZED FROM t",
        "SELECT normalize(x, nfkd) FROM t",
        "SELECT $1, -2",
    };
    static const char *const without[] = {"BEGIN", "SELECT * FROM t WHERE id = $1", "COMMIT",
                                          "select a, b from t order by a"};
    fp_cache *c = fp_cache_new(16);
    fp_result r;

    (void)state;
    for (size_t i = 0; i < sizeof(with) / sizeof(with[0]); i++) {
        fp_statement(c, with[i], strlen(with[i]), &r);
        assert_true(r.values);
        assert_true(fp_literals(with[i], strlen(with[i]), ignore_value, NULL) > 0);
    }
    for (size_t i = 0; i < sizeof(without) / sizeof(without[0]); i++) {
        for (int twice = 0; twice < 2; twice++) { /* digested, then from its exact-text slot */
            fp_statement(c, without[i], strlen(without[i]), &r);
            assert_false(r.values);
        }
        assert_int_equal(fp_literals(without[i], strlen(without[i]), ignore_value, NULL), 0);
    }
    fp_cache_free(c);
}

static void test_cache_normalized_text_is_the_first_seen(void **state)
{
    fp_cache *c = fp_cache_new(10);
    fp_result r;
    const char *a = "SELECT a FROM t WHERE id IN (1, 2, 3)  /* app='x' */ -- tail";
    const char *b = "select a from t where id in (4)";

    (void)state;
    fp_statement(c, a, strlen(a), &r);
    assert_string_equal(r.normalized, "SELECT a FROM t WHERE id IN ($1, $2, $3)");
    fp_statement(c, b, strlen(b), &r);
    assert_string_equal(r.normalized, "SELECT a FROM t WHERE id IN ($1, $2, $3)");
    fp_cache_free(c);
}

static void shape_text(char *out, size_t cap, int shape, int literal)
{
    snprintf(out, cap, "SELECT c FROM table_%d WHERE k = %d", shape, literal);
}

static void test_cache_evicts_least_recently_used(void **state)
{
    fp_cache *c = fp_cache_new(4);
    fp_counters n;
    fp_result r;
    char text[64];
    static const int order[] = {0, 1, 2, 3, 0, 4}; /* touching 0 makes 1 the oldest */

    (void)state;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        shape_text(text, sizeof text, order[i], (int)i);
        fp_statement(c, text, strlen(text), &r);
    }
    fp_get_counters(c, &n);
    assert_int_equal(n.evictions, 1);
    assert_int_equal(n.parses, 5);
    shape_text(text, sizeof text, 0, 99);
    fp_statement(c, text, strlen(text), &r);
    fp_get_counters(c, &n);
    assert_int_equal(n.parses, 5); /* still there */
    shape_text(text, sizeof text, 1, 99);
    fp_statement(c, text, strlen(text), &r);
    fp_get_counters(c, &n);
    assert_int_equal(n.parses, 6); /* evicted, parsed again */
    assert_int_equal(n.evictions, 2);
    fp_cache_free(c);
}

/* A statement of about 10 kB of normalized text: 1000 columns named for shape k. */
static char *long_statement(int k)
{
    size_t cap = 16384, n = 0;
    char *text = malloc(cap);

    assert_non_null(text);
    n += (size_t)snprintf(text, cap, "SELECT ");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(text + n, cap - n, "%scol_%d_%d", i ? ", " : "", k, i);
    snprintf(text + n, cap - n, " FROM t");
    return text;
}

/* Long texts fill the text budget before the cache is full: the least recently used entries
 * make room, the recent ones stay, and the places they leave are reused. */
static void test_cache_text_budget(void **state)
{
    /* 3 MB of text for a budget of 1 MiB (1000 x 640 bytes, at least 1 MiB), in a cache that
     * could hold 1000 entries. */
    enum { SHAPES = 300 };
    fp_cache *c = fp_cache_new(1000);
    fp_counters n;
    fp_result r;

    (void)state;
    for (int k = 0; k < SHAPES; k++) {
        char *text = long_statement(k);
        fp_statement(c, text, strlen(text), &r);
        assert_false(r.fallback);
        assert_true(strlen(r.normalized) > 8000);
        free(text);
    }
    fp_get_counters(c, &n);
    assert_true(n.evictions >= SHAPES - (1 << 20) / 8000); /* at most ~130 texts kept */
    assert_int_equal(n.parses, SHAPES);
    for (int k = SHAPES - 10; k < SHAPES; k++) { /* the latest are still there */
        char *text = long_statement(k);
        fp_statement(c, text, strlen(text), &r);
        free(text);
    }
    char *first = long_statement(0); /* the first is gone */
    fp_statement(c, first, strlen(first), &r);
    free(first);
    fp_get_counters(c, &n);
    assert_int_equal(n.hits, 10);
    assert_int_equal(n.parses, SHAPES + 1);
    fp_cache_free(c);
}

/* A long random workload against a model of LRU order: hits exactly when expected, and every
 * answer right, through many evictions. */
static void test_cache_matches_lru_model(void **state)
{
    enum { MAX = 50, SHAPES = 200, STEPS = 20000 };
    fp_cache *c = fp_cache_new(MAX);
    uint64_t ids[SHAPES] = {0};
    int recent[MAX], n_recent = 0;
    uint64_t hits = 0;
    fp_counters n;
    char text[64];

    (void)state;
    for (int step = 0; step < STEPS; step++) {
        int shape = rnd_below(4) ? (int)rnd_below(MAX) : (int)rnd_below(SHAPES);
        int pos = -1;
        fp_result r;
        for (int i = 0; i < n_recent; i++)
            if (recent[i] == shape)
                pos = i;
        hits += pos >= 0;
        if (pos < 0)
            pos = n_recent < MAX ? n_recent++ : MAX - 1;
        memmove(recent + 1, recent, (size_t)pos * sizeof *recent);
        recent[0] = shape;
        shape_text(text, sizeof text, shape, step);
        fp_statement(c, text, strlen(text), &r);
        if (ids[shape] == 0)
            ids[shape] = r.id;
        assert_int_equal(r.id, ids[shape]);
    }
    fp_get_counters(c, &n);
    assert_int_equal(n.hits, hits);
    assert_int_equal(n.lookups, STEPS);
    assert_int_equal(n.evictions, n.parses - MAX);
    fp_cache_free(c);
}

static void test_cache_fallback_for_syntax_error(void **state)
{
    fp_cache *c = fp_cache_new(10);
    fp_result r;
    fp_counters n;
    bool ok;
    uint64_t id;

    (void)state;
    fp_statement(c, "SELEC 1", 7, &r);
    assert_true(r.fallback);
    assert_string_equal(r.normalized, "SELEC ?");
    id = r.id;
    assert_int_not_equal(id, pd("SELEC 1"));
    /* the variants of an unknown statement share its pre-digest, and so the fallback id */
    fp_statement(c, "selec  2", 8, &r);
    assert_true(r.fallback);
    assert_int_equal(r.id, id);
    fp_statement(c, "SELECT 1", 8, &r);
    assert_false(r.fallback);
    assert_int_equal(r.id, lib_fp("SELECT 1", &ok));
    assert_int_not_equal(r.id, id);
    fp_get_counters(c, &n);
    assert_int_equal(n.fallbacks, 1);
    assert_int_equal(n.parses, 2);
    assert_int_equal(n.hits, 1);
    fp_cache_free(c);
}

static void test_cache_fallback_shared_by_variants(void **state)
{
    fp_cache *c = fp_cache_new(10);
    fp_result r;
    fp_counters n;
    uint64_t id;
    const char *a = "SELECT * FROM t WHERE a = 1 AND";
    const char *b = "select * from t  where a = 42 and";
    const char *other = "SELECT * FROM t WHERE a = 'x' AND";

    (void)state;
    fp_statement(c, a, strlen(a), &r);
    assert_true(r.fallback);
    id = r.id;
    fp_statement(c, b, strlen(b), &r);
    assert_true(r.fallback);
    assert_int_equal(r.id, id);
    assert_string_equal(r.normalized, "SELECT * FROM t WHERE a = ? AND"); /* the first text's */
    fp_statement(c, other, strlen(other), &r); /* a string where a number was */
    assert_true(r.fallback);
    assert_int_not_equal(r.id, id);
    fp_get_counters(c, &n);
    assert_int_equal(n.hits, 1);
    assert_int_equal(n.fallbacks, 2);
    fp_cache_free(c);
}

static void test_cache_fallback_for_cut_text(void **state)
{
    fp_cache *c = fp_cache_new(10);
    fp_result r;
    const char *cut = "SELECT * FROM t WHERE name = 'abc";
    const char *half = "UPDATE accounts SET balance = balance + 12 WHERE";

    (void)state;
    fp_statement(c, cut, strlen(cut), &r);
    assert_true(r.fallback);
    assert_string_equal(r.normalized, "SELECT * FROM t WHERE name = ?");
    fp_statement(c, half, strlen(half), &r);
    assert_true(r.fallback);
    assert_string_equal(r.normalized, "UPDATE accounts SET balance = balance + ? WHERE");
    fp_cache_free(c);
}

static void test_cache_fallback_text_is_capped(void **state)
{
    size_t len = 20000;
    char *text = malloc(len + 1);
    fp_cache *c = fp_cache_new(10);
    fp_result r;

    (void)state;
    assert_non_null(text);
    memcpy(text, "SELEC ", 6);
    for (size_t i = 6; i < len; i += 2)
        memcpy(text + i, "é", 2); /* a 2-byte character on every even offset */
    text[len] = '\0';
    fp_statement(c, text, len, &r);
    assert_true(r.fallback);
    assert_true(strlen(r.normalized) <= 4096);
    assert_true(strlen(r.normalized) >= 4090);
    assert_int_equal(strlen(r.normalized) % 2, 0); /* never half a character */
    fp_cache_free(c);
    free(text);
}

static void test_cache_text_need_not_be_terminated(void **state)
{
    fp_cache *c = fp_cache_new(10);
    fp_result r;
    bool ok;

    (void)state;
    fp_statement(c, "SELECT 1XYZ", 8, &r);
    assert_false(r.fallback);
    assert_int_equal(r.id, lib_fp("SELECT 1", &ok));
    assert_string_equal(r.normalized, "SELECT $1");
    fp_statement(c, "", 0, &r);
    assert_non_null(r.normalized);
    fp_cache_free(c);
}

static void test_cache_of_one_entry(void **state)
{
    fp_cache *c = fp_cache_new(0);
    fp_result r;
    fp_counters n;

    (void)state;
    fp_statement(c, "SELECT 1", 8, &r);
    fp_statement(c, "SELECT a", 8, &r);
    assert_string_equal(r.normalized, "SELECT a");
    fp_statement(c, "SELECT 2", 8, &r);
    assert_string_equal(r.normalized, "SELECT $1");
    fp_get_counters(c, &n);
    assert_int_equal(n.parses, 3);
    assert_int_equal(n.evictions, 2);
    fp_cache_free(c);
    fp_cache_free(NULL);
}

/* ---- no constant left in a normalized text ---- */

typedef struct norm_case {
    const char *sql, *normalized;
} norm_case;

static void normalizes_to(fp_cache *c, const char *sql, const char *want)
{
    fp_result r;

    fp_statement(c, sql, strlen(sql), &r);
    if (r.fallback || strcmp(r.normalized, want) != 0)
        fail_msg("[%s]\n  normalized [%s]%s\n  wanted     [%s]", sql, r.normalized,
                 r.fallback ? " (fallback)" : "", want);
}

/* Every kind of statement that can hold a literal: where libpg_query's normalize leaves one in
 * place (utility statements, DDL, NOTIFY, EXECUTE...), it is marked all the same, numbered on
 * after normalize's own. */
static void test_normalized_every_statement_kind(void **state)
{
    static const norm_case cases[] = {
        {"SELECT E'v\\n', U&'v', B'01', X'1F', $$v$$, $q$v$q$, 1e5, 12345678901, date 'v', "
         "'{v}'::text[]",
         "SELECT $1, $2, $3, $4, $5, $6, $7, $8, date $9, $10::text[]"},
        {"INSERT INTO t (a) VALUES ('v') ON CONFLICT (id) DO UPDATE SET a = 'w'",
         "INSERT INTO t (a) VALUES ($1) ON CONFLICT (id) DO UPDATE SET a = $2"},
        {"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (a) VALUES ('v')",
         "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (a) VALUES ($1)"},
        {"COPY t TO STDOUT WITH (NULL 'v', DELIMITER '|')",
         "COPY t TO STDOUT WITH (NULL $1, DELIMITER $2)"},
        {"COPY t FROM '/tmp/v'", "COPY t FROM $1"},
        {"COPY (SELECT 'v') TO STDOUT", "COPY (SELECT $1) TO STDOUT"},
        {"PREPARE p(text) AS SELECT $1, 'v'", "PREPARE p(text) AS SELECT $1, $2"},
        {"PREPARE q AS SELECT 'v', $1", "PREPARE q AS SELECT $2, $1"},
        {"EXECUTE p('v', 42)", "EXECUTE p($1, $2)"},
        {"CALL proc('v', 4.2)", "CALL proc($1, $2)"},
        {"DO $$BEGIN PERFORM 'v'; END$$", "DO $1"},
        {"DO LANGUAGE plpgsql 'BEGIN END'", "DO LANGUAGE plpgsql $1"},
        {"NOTIFY chan, 'v'", "NOTIFY chan, $1"},
        {"COMMENT ON TABLE t IS 'v'", "COMMENT ON TABLE t IS $1"},
        {"SECURITY LABEL FOR selinux ON TABLE t IS 'v'",
         "SECURITY LABEL FOR selinux ON TABLE t IS $1"},
        {"CREATE TABLE t2 AS SELECT 'v' AS a", "CREATE TABLE t2 AS SELECT $1 AS a"},
        {"CREATE MATERIALIZED VIEW m AS SELECT 'v' AS a",
         "CREATE MATERIALIZED VIEW m AS SELECT $1 AS a"},
        {"CREATE VIEW v AS SELECT 'v' AS a", "CREATE VIEW v AS SELECT $1 AS a"},
        {"CREATE TABLE t (a text DEFAULT 'v' CHECK (a <> 'w'), b varchar(20))",
         "CREATE TABLE t (a text DEFAULT $1 CHECK (a <> $2), b varchar($3))"},
        {"CREATE TABLE p1 PARTITION OF p FOR VALUES IN ('v')",
         "CREATE TABLE p1 PARTITION OF p FOR VALUES IN ($1)"},
        {"CREATE FUNCTION f(a text DEFAULT 'v') RETURNS text LANGUAGE sql AS 'SELECT 1'",
         "CREATE FUNCTION f(a text DEFAULT $2) RETURNS text LANGUAGE sql AS $1"},
        {"CREATE FUNCTION f() RETURNS text LANGUAGE sql RETURN 'v'",
         "CREATE FUNCTION f() RETURNS text LANGUAGE sql RETURN $1"},
        {"ALTER FUNCTION f(text) SET x.y = 'v'", "ALTER FUNCTION f(text) SET x.y = $1"},
        {"CREATE ROLE r PASSWORD 'v' VALID UNTIL '2030-01-01'",
         "CREATE ROLE r PASSWORD $1 VALID UNTIL $2"},
        {"ALTER ROLE r WITH PASSWORD 'v'", "ALTER ROLE r WITH PASSWORD $1"},
        {"ALTER ROLE r CONNECTION LIMIT 5", "ALTER ROLE r CONNECTION LIMIT $1"},
        {"ALTER ROLE r SET x.y = 'v'", "ALTER ROLE r SET x.y = $1"},
        {"ALTER DATABASE d SET x.y TO 'v'", "ALTER DATABASE d SET x.y TO $1"},
        {"ALTER SYSTEM SET x.y = 'v'", "ALTER SYSTEM SET x.y = $1"},
        {"SET x.y = 'v'", "SET x.y = $1"},
        {"SET LOCAL x.y TO 'v'", "SET LOCAL x.y TO $1"},
        {"SELECT set_config('x.y', 'v', false)", "SELECT set_config($1, $2, $3)"},
        {"DECLARE c CURSOR FOR SELECT 'v'", "DECLARE c CURSOR FOR SELECT $1"},
        {"FETCH FORWARD 5 FROM c", "FETCH FORWARD $1 FROM c"},
        {"MOVE ABSOLUTE 5 IN c", "MOVE ABSOLUTE $1 IN c"},
        {"CREATE FOREIGN DATA WRAPPER w OPTIONS (o 'v')",
         "CREATE FOREIGN DATA WRAPPER w OPTIONS (o $1)"},
        {"CREATE SERVER s VERSION 'v' FOREIGN DATA WRAPPER w OPTIONS (host 'v')",
         "CREATE SERVER s VERSION $1 FOREIGN DATA WRAPPER w OPTIONS (host $2)"},
        {"CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'v', password 'w')",
         "CREATE USER MAPPING FOR u SERVER s OPTIONS (user $1, password $2)"},
        {"ALTER USER MAPPING FOR u SERVER s OPTIONS (SET password 'v')",
         "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET password $1)"},
        {"CREATE DOMAIN d AS text DEFAULT 'v' CHECK (VALUE <> 'w')",
         "CREATE DOMAIN d AS text DEFAULT $1 CHECK (VALUE <> $2)"},
        {"ALTER DOMAIN d SET DEFAULT 'v'", "ALTER DOMAIN d SET DEFAULT $1"},
        {"ALTER TABLE t ALTER COLUMN a SET DEFAULT 'v'",
         "ALTER TABLE t ALTER COLUMN a SET DEFAULT $1"},
        {"CREATE INDEX i ON t (a) WHERE a <> 'v'", "CREATE INDEX i ON t (a) WHERE a <> $1"},
        {"CREATE POLICY p ON t USING (a = 'v')", "CREATE POLICY p ON t USING (a = $1)"},
        {"CREATE RULE r AS ON INSERT TO t WHERE NEW.a = 'v' DO INSTEAD NOTHING",
         "CREATE RULE r AS ON INSERT TO t WHERE NEW.a = $1 DO INSTEAD NOTHING"},
        {"CREATE TRIGGER g BEFORE INSERT ON t FOR EACH ROW WHEN (NEW.a = 'v') "
         "EXECUTE FUNCTION f('w')",
         "CREATE TRIGGER g BEFORE INSERT ON t FOR EACH ROW WHEN (NEW.a = $1) "
         "EXECUTE FUNCTION f($2)"},
        {"CREATE TYPE e AS ENUM ('v', 'w')", "CREATE TYPE e AS ENUM ($1, $2)"},
        {"ALTER TYPE e ADD VALUE 'v'", "ALTER TYPE e ADD VALUE $1"},
        {"ALTER TYPE e RENAME VALUE 'v' TO 'w'", "ALTER TYPE e RENAME VALUE $1 TO $2"},
        {"CREATE SEQUENCE s START 100 MAXVALUE 1000", "CREATE SEQUENCE s START $1 MAXVALUE $2"},
        {"ALTER SEQUENCE s RESTART WITH 7", "ALTER SEQUENCE s RESTART WITH $1"},
        {"CREATE AGGREGATE a(int) (SFUNC = int4pl, STYPE = int, INITCOND = '0')",
         "CREATE AGGREGATE a(int) (SFUNC = int4pl, STYPE = int, INITCOND = $1)"},
        {"CREATE TABLESPACE s LOCATION '/v'", "CREATE TABLESPACE s LOCATION $1"},
        {"CREATE DATABASE d CONNECTION LIMIT 5", "CREATE DATABASE d CONNECTION LIMIT $1"},
        {"CREATE EXTENSION e VERSION 'v'", "CREATE EXTENSION e VERSION $1"},
        {"CREATE PUBLICATION p FOR TABLE t WHERE (a <> 'v')",
         "CREATE PUBLICATION p FOR TABLE t WHERE (a <> $1)"},
        {"CREATE SUBSCRIPTION s CONNECTION 'password=v' PUBLICATION p",
         "CREATE SUBSCRIPTION s CONNECTION $1 PUBLICATION p"},
        {"CREATE STATISTICS s ON (a || 'v'), b FROM t",
         "CREATE STATISTICS s ON (a || $1), b FROM t"},
        {"EXPLAIN SELECT 'v'", "EXPLAIN SELECT $1"},
        {"LOAD 'v'", "LOAD $1"},
        {"VACUUM (PARALLEL 2) t", "VACUUM (PARALLEL $1) t"},
        {"PREPARE TRANSACTION 'v'", "PREPARE TRANSACTION $1"},
        {"COMMIT PREPARED 'v'", "COMMIT PREPARED $1"},
    };
    fp_cache *c = fp_cache_new(256);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        normalizes_to(c, cases[i].sql, cases[i].normalized);
    fp_cache_free(c);
}

/* The value of a SET may be a bare word; normalize leaves it in ALTER ... SET. UPDATE's SET,
 * a DEFAULT and FROM CURRENT hold no value. */
static void test_normalized_set_values_that_are_words(void **state)
{
    static const norm_case cases[] = {
        {"ALTER ROLE r IN DATABASE d SET x.y TO hunter2, 'a', -5",
         "ALTER ROLE r IN DATABASE d SET x.y TO $1, $2, -$3"},
        {"ALTER SYSTEM SET x=-5", "ALTER SYSTEM SET x=-$1"},
        {"ALTER DATABASE d SET x = hunter2", "ALTER DATABASE d SET x = $1"},
        {"ALTER FUNCTION f() SET search_path = public, \"$user\"",
         "ALTER FUNCTION f() SET search_path = $1, $2"},
        {"ALTER FUNCTION f() SET x = DEFAULT", "ALTER FUNCTION f() SET x = DEFAULT"},
        {"ALTER FUNCTION f() SET x FROM CURRENT", "ALTER FUNCTION f() SET x FROM CURRENT"},
        {"ALTER TABLE t ALTER COLUMN c SET DEFAULT x",
         "ALTER TABLE t ALTER COLUMN c SET DEFAULT x"},
        {"ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u ON DELETE SET DEFAULT ON UPDATE SET NULL",
         "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u ON DELETE SET DEFAULT ON UPDATE SET NULL"},
        {"CREATE RULE r AS ON INSERT TO t DO ALSO UPDATE u SET a = new.b, c = d",
         "CREATE RULE r AS ON INSERT TO t DO ALSO UPDATE u SET a = new.b, c = d"},
        {"UPDATE t SET a = b, c = d", "UPDATE t SET a = b, c = d"},
    };
    fp_cache *c = fp_cache_new(64);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        normalizes_to(c, cases[i].sql, cases[i].normalized);
    fp_cache_free(c);
    lexes_as("SET x = hunter4 garbage (", "SET x = ? garbage (");
    lexes_as("ALTER ROLE r SET x TO hunter4, y z (", "ALTER ROLE r SET x TO ?, ? z (");
}

/* With standard_conforming_strings off, a backslash escapes a quote: 'x\' AS hunter2 --' is one
 * string there, while libpg_query reads a string, an alias and a comment. From such a string
 * on, nothing is kept; a backslash that cannot move the string's end changes nothing. */
static void test_normalized_string_in_doubt(void **state)
{
    fp_cache *c = fp_cache_new(16);
    fp_result r;
    const char *doubt = "SELECT 'x\\' AS hunter2 --'";

    (void)state;
    fp_statement(c, doubt, strlen(doubt), &r);
    assert_false(r.fallback);
    assert_string_equal(r.normalized, "SELECT ?");
    normalizes_to(c, "SELECT 'C:\\dir\\file', 2", "SELECT $1, $2");
    normalizes_to(c, "SELECT 'a\\\\', E'b\\'c'", "SELECT $1, $2");
    fp_cache_free(c);
    lexes_as("SELEC 'x\\' hunter2 'y'", "SELEC ?");
}

/* Statements whose values normalize leaves, but whose fingerprints ignore them (EXECUTE, CALL,
 * PREPARE TRANSACTION): one parse for any values, and the cached text holds none of them. */
static void test_normalized_text_cached_without_values(void **state)
{
    static const char *const texts[] = {"EXECUTE p('hunter2')", "EXECUTE p('other')",
                                        "CALL f('sk_live_1', 3)", "CALL f('sk_live_2', 4)"};
    fp_cache *c = fp_cache_new(16);
    fp_counters n;
    fp_result r;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        fp_statement(c, texts[i], strlen(texts[i]), &r);
        assert_string_equal(r.normalized, i < 2 ? "EXECUTE p($1)" : "CALL f($1, $2)");
    }
    fp_get_counters(c, &n);
    assert_int_equal(n.parses, 2);
    assert_int_equal(n.hits, 2);
    fp_cache_free(c);
}

static void test_hex(void **state)
{
    char out[17];

    (void)state;
    fp_hex(0, out);
    assert_string_equal(out, "0000000000000000");
    fp_hex(0x0123456789abcdefULL, out);
    assert_string_equal(out, "0123456789abcdef");
    fp_hex(UINT64_MAX, out);
    assert_string_equal(out, "ffffffffffffffff");
}

/* ---- splitting ---- */

static void expect_split(const char *text, int count, const char *const *parts)
{
    fp_span spans[8];
    int n = fp_split(text, strlen(text), spans, 8);

    if (n != count)
        fail_msg("%d statements instead of %d in [%s]", n, count, text);
    for (int i = 0; i < n && i < 8; i++) {
        if (strlen(parts[i]) != spans[i].len ||
            memcmp(text + spans[i].offset, parts[i], spans[i].len))
            fail_msg("statement %d is [%.*s], not [%s]", i, (int)spans[i].len,
                     text + spans[i].offset, parts[i]);
    }
}

static void test_split_basic(void **state)
{
    static const char *const p1[] = {"SELECT 1", "SELECT 'a;b'"};
    static const char *const p2[] = {"SELECT \"a;b\" FROM t", "SELECT E'\\';'"};
    static const char *const p3[] = {"SELECT 1 /* ; /* ; */ ; */", "SELECT 2"};
    static const char *const p4[] = {"SELECT $tag$ ; $x$ ; $tag$"};
    static const char *const p5[] = {"SELECT 'a; SELECT 2"};
    static const char *const p6[] = {"-- lead\nSELECT 1 -- tail;"};

    (void)state;
    expect_split("SELECT 1; SELECT 'a;b'; -- x;", 2, p1);
    expect_split("  SELECT \"a;b\" FROM t ;\n SELECT E'\\';'", 2, p2);
    expect_split("SELECT 1 /* ; /* ; */ ; */ ; SELECT 2;", 2, p3);
    expect_split("SELECT $tag$ ; $x$ ; $tag$", 1, p4);
    expect_split("SELECT 'a; SELECT 2", 1, p5);
    expect_split(" ;; ; /* c */ ; -- x\n", 0, NULL);
    expect_split("", 0, NULL);
    expect_split("-- lead\nSELECT 1 -- tail;\n", 1, p6);
}

static void test_split_function_bodies(void **state)
{
    static const char *const p1[] = {
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql",
        "SELECT f()"};
    static const char *const p2[] = {
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT "
        "CASE WHEN true THEN 2 END; END",
        "SELECT 3"};
    static const char *const p3[] = {
        "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES "
        "(2))",
        "SELECT 1"};
    static const char *const p4[] = {"BEGIN", "SELECT 1", "END"};

    (void)state;
    expect_split("CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE "
                 "plpgsql; SELECT f()",
                 2, p1);
    expect_split("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
                 "SELECT CASE WHEN true THEN 2 END; END; SELECT 3",
                 2, p2);
    expect_split("CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO "
                 "b VALUES (2)); SELECT 1",
                 2, p3);
    expect_split("BEGIN; SELECT 1; END;", 3, p4);
}

/* PostgreSQL's own grammar (through libpg_query) counts the same statements. */
static void test_split_agrees_with_parser(void **state)
{
    static const char *const texts[] = {
        "SELECT 1; SELECT 'a;b'; -- x;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; "
        "SELECT 3;",
        "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); DELETE FROM b); "
        "SELECT 1",
        "INSERT INTO t VALUES ($$;$$, ';', E'\\';', \";\"); /* ; */ UPDATE t SET a = 1;;",
        "BEGIN; SAVEPOINT s1; ROLLBACK TO s1; COMMIT",
        "DO $body$ BEGIN PERFORM 1; END $body$; SELECT 'x'\n';'",
    };

    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        PgQuerySplitResult pr = pg_query_split_with_parser(texts[i]);
        assert_null(pr.error);
        int n = fp_split(texts[i], strlen(texts[i]), NULL, 0);
        if (n != pr.n_stmts)
            fail_msg("%d statements, libpg_query says %d: [%s]", n, pr.n_stmts, texts[i]);
        pg_query_free_split_result(pr);
    }
}

static void test_split_fills_at_most_max(void **state)
{
    fp_span spans[2];
    const char *text = "SELECT 1; SELECT 2; SELECT 3; SELECT 4; SELECT 5";

    (void)state;
    memset(spans, 0, sizeof spans);
    assert_int_equal(fp_split(text, strlen(text), spans, 2), 5);
    assert_int_equal(spans[1].offset, 10);
    assert_int_equal(spans[1].len, 8);
    assert_int_equal(fp_split(text, strlen(text), NULL, 0), 5);
}

/* ---- sqlcommenter tags ---- */

static void expect_tags(const char *text, size_t cap, int count, const char *canonical)
{
    char out[256];

    memset(out, 'Z', sizeof out);
    assert_int_equal(fp_tags(text, strlen(text), out, cap), count);
    assert_string_equal(out, canonical);
    assert_true(strlen(out) < cap);
    assert_int_equal(out[cap], 'Z'); /* nothing written past cap */
}

static void test_tags_sqlcommenter(void **state)
{
    (void)state;
    expect_tags("SELECT * FROM users /*controller='users',action='index',"
                "framework='django%3A4.2'*/",
                200, 3, "action=index,controller=users,framework=django:4.2");
    expect_tags("SELECT 1 /*traceparent='00-4bf92f-00f067-01', route='%2Fpolls%2F%3Cid%3E'*/;", 200,
                2, "route=/polls/<id>,traceparent=00-4bf92f-00f067-01");
    expect_tags("/* name='O\\'Brien' */ SELECT 1", 200, 1, "name=O'Brien");
    expect_tags("SELECT 1 /*a='', b = ' x ' */", 200, 2, "a=,b= x ");
}

static void test_tags_choose_the_first_tag_comment(void **state)
{
    (void)state;
    expect_tags("/* just a comment */ SELECT 1 /*a='1'*/ /*b='2'*/", 200, 1, "a=1");
    expect_tags("SELECT '/*a=''1''*/' -- /*b='2'*/", 200, 0, "");
    expect_tags("SELECT 1 /*a='1'x*/", 200, 0, "");
    expect_tags("SELECT 1 /*a='1'", 200, 0, "");
    expect_tags("SELECT 1 /* a = b */", 200, 0, "");
    expect_tags("SELECT 1", 200, 0, "");
}

static void test_tags_canonical_form(void **state)
{
    (void)state;
    expect_tags("SELECT 1 /*b='2',a='1',b='3'*/", 200, 2, "a=1,b=2"); /* first b wins */
    expect_tags("SELECT 1 /*route='%2Fa%2Cb%3Dc',x='100%25',y='%zz'*/", 200, 3,
                "route=/a%2Cb%3Dc,x=100%25,y=%25zz");
    expect_tags("SELECT 1 /*k='line%0Abreak'*/", 200, 1, "k=line%0Abreak");
}

static void test_tags_cut_to_cap(void **state)
{
    char out[4] = "ZZZ";

    (void)state;
    expect_tags("SELECT 1 /*controller='users',action='index'*/", 10, 2, "action=in");
    expect_tags("SELECT 1 /*k='%C3%A9'*/", 4, 1, "k="); /* é does not fit: not cut in half */
    expect_tags("SELECT 1 /*k='%C3%A9'*/", 5, 1, "k=é");
    assert_int_equal(fp_tags("SELECT 1 /*a='1'*/", 18, out, 0), 1);
    assert_string_equal(out, "ZZZ");
}

/* ---- literal values ---- */

typedef struct lit_list {
    char v[16][64];
    size_t len[16];
    int n;
} lit_list;

static void add_lit(const char *value, size_t len, void *arg)
{
    lit_list *l = arg;

    if (l->n < 16) {
        l->len[l->n] = len;
        snprintf(l->v[l->n++], sizeof l->v[0], "%.*s", (int)len, value);
    }
}

/* fp_literals gives exactly the n values that follow. */
static void literals_are(const char *text, int n, ...)
{
    lit_list l;
    va_list ap;

    memset(&l, 0, sizeof l);
    assert_int_equal(fp_literals(text, strlen(text), add_lit, &l), n);
    assert_int_equal(l.n, n);
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        if (strcmp(l.v[i], want) != 0)
            fail_msg("literal %d of [%s]: [%s], expected [%s]", i + 1, text, l.v[i], want);
    }
    va_end(ap);
}

static void test_literals_decoded(void **state)
{
    (void)state;
    literals_are("SELECT * FROM customers WHERE id = 42", 1, "42");
    literals_are("SELECT * FROM customers WHERE name = 'O''Brien'", 1, "O'Brien");
    literals_are("SELECT E'a\\nb\\x41\\101\\u00e9\\'', e'\\\\'", 2, "a\nbAA\xc3\xa9'", "\\");
    literals_are("SELECT E'\\U0001F600', E'\\ud83d\\ude00', E'\\q'", 3, "\xf0\x9f\x98\x80",
                 "\xf0\x9f\x98\x80", "q");
    literals_are("SELECT $$it's$$, $tag$ $$ $tag$, $$$$", 3, "it's", " $$ ", "");
    literals_are("SELECT B'101', X'1f', N'n''x'", 3, "101", "00011111", "n'x");
    literals_are("SELECT U&'d\\0061t\\+000061\\\\', U&'d!0061t' UESCAPE '!'", 2, "data\\", "dat");
    literals_are("SELECT 'a'\n  'b' \n'c', 'd'", 2, "abc", "d");
    literals_are("SELECT 1.5e3, .5, 99999999999, -7, - 8, 1 - 9, 2 -10", 9, "1.5e3", ".5",
                 "99999999999", "-7", "-8", "1", "9", "2", "10");
    literals_are("SELECT * FROM t WHERE a=-5 AND b<>-6 AND c=+-7 AND d @-8", 4, "-5", "-6", "-7",
                 "8");
    literals_are("SELECT TRUE, False, NULL WHERE x IS NULL AND y IS NOT TRUE LIMIT ALL", 4, "true",
                 "false", "null", "all");
    literals_are("SELECT extract(YEAR FROM ts), interval '1 day', 'x'::varchar(10)", 3, "year",
                 "1 day", "x");
}

static void test_literals_only_what_normalize_replaces(void **state)
{
    (void)state;
    literals_are("SELECT a FROM t WHERE b = $1", 0);
    literals_are("SELECT a::numeric(10,2), CAST(b AS char(4)), c::int[3], current_time(3) FROM t "
                 "ORDER BY 1 DESC, 2",
                 0);
    literals_are("SELECT * FROM t GROUP BY 1, 2 + 3 ORDER BY -1 NULLS LAST", 2, "2", "3");
    literals_are("SELECT numeric(5,2) '1.5', float(24) '2'", 2, "1.5", "2");
    literals_are("SELECT a FROM t -- 42\n /* 'x' */ WHERE b = 'y'", 1, "y");
}

static void test_literals_odd_input(void **state)
{
    size_t n = 100000;
    char *deep = malloc(2 * n + 16);
    lit_list l;

    (void)state;
    literals_are("", 0);
    assert_int_equal(fp_literals(NULL, 0, add_lit, &l), 0);
    literals_are("SELECT 'unterminated", 1, "unterminated");
    literals_are("SELECT E'\\", 1, "\\");
    literals_are("SELECT $x$ never ends", 1, " never e");
    literals_are("SELECT 1x, 2", 1, "2");
    memset(&l, 0, sizeof l);
    assert_int_equal(fp_literals("SELECT 1\0 2", 11, add_lit, &l), 1); /* stops at a NUL */
    assert_non_null(deep);
    memset(deep, '(', n);
    memcpy(deep + n, "SELECT 5", 8);
    memset(deep + n + 8, ')', n);
    deep[2 * n + 8] = '\0';
    literals_are(deep, 1, "5");
    memcpy(deep + n, "VALUES 5", 8);
    literals_are(deep + 1, 1, "5"); /* unbalanced */
    free(deep);
}

/* Puts the values back in place of libpg_query's $n: getting the text back means fp_literals
 * gave normalize's constants in normalize's numbering. Numbers and keywords go back bare,
 * other values quoted, so the texts write their strings in plain quotes. */
static void check_numbering(const char *text)
{
    PgQueryNormalizeResult r = pg_query_normalize(text);
    char back[2048];
    size_t o = 0;
    int first = 0;
    lit_list l;

    memset(&l, 0, sizeof l);
    fp_literals(text, strlen(text), add_lit, &l);
    for (const char *p = strchr(text, '$'); p; p = strchr(p + 1, '$'))
        first = atoi(p + 1) > first ? atoi(p + 1) : first; /* numbering starts after them */
    assert_null(r.error);
    for (const char *p = r.normalized_query; *p && o < sizeof back - 80;) {
        char *end;
        long k = *p == '$' ? strtol(p + 1, &end, 10) : 0;
        if (k <= first || k - first > l.n) {
            back[o++] = *p++;
            continue;
        }
        const char *v = l.v[k - first - 1];
        bool bare = strspn(v, "-0123456789.e") == strlen(v) || strcmp(v, "true") == 0 ||
                    strcmp(v, "null") == 0 || strcmp(v, "year") == 0;
        if (!bare)
            back[o++] = '\'';
        for (; *v; v++)
            o += (size_t)snprintf(back + o, sizeof back - o, *v == '\'' && !bare ? "''" : "%c", *v);
        if (!bare)
            back[o++] = '\'';
        p = end;
    }
    back[o] = '\0';
    if (strcmp(back, text) != 0)
        fail_msg("numbered differently:\n  text   [%s]\n  normal [%s]\n  back   [%s]", text,
                 r.normalized_query, back);
    pg_query_free_normalize_result(r);
}

static void test_literals_numbered_like_normalize(void **state)
{
    static const char *const texts[] = {
        "SELECT * FROM customers WHERE id = 42",
        "SELECT * FROM t WHERE a = 1 LIMIT 10 OFFSET 5",
        "SELECT x FROM t WHERE a = 1 OFFSET 2 LIMIT 3",
        "SELECT * FROM t WHERE a = 1 ORDER BY a DESC NULLS LAST OFFSET 10 ROWS FETCH NEXT 5 ROWS "
        "ONLY",
        "WITH x AS (SELECT 1 FROM t WHERE a = 2) SELECT 3 FROM x WHERE b = 4 LIMIT 5",
        "SELECT 1 UNION SELECT 2 LIMIT 3",
        "SELECT (SELECT 1) UNION (SELECT 2 ORDER BY 3 LIMIT 4) ORDER BY 1 LIMIT 5",
        "SELECT * FROM (SELECT 1) s WHERE x = 2 UNION ALL SELECT 3 INTERSECT SELECT 4",
        "SELECT a FROM t GROUP BY a HAVING count(*) > 2 ORDER BY a + 3",
        "SELECT * FROM t WHERE a = 1 AND b IN (SELECT c FROM u WHERE d = 2 LIMIT 3) AND e = 4",
        "SELECT (SELECT 1 LIMIT 2 OFFSET 3) FROM t WHERE x = 4",
        "SELECT count(*) FILTER (WHERE a = 1) OVER (PARTITION BY 2 ORDER BY 3) FROM t "
        "WHERE b = 4 ORDER BY 5",
        "SELECT * FROM t WHERE a = 1 WINDOW w AS (ORDER BY 2)",
        "SELECT true, null, 'a' FROM t WHERE b IS NULL AND c IS NOT TRUE",
        "SELECT extract(year FROM ts), extract('day' FROM ts) FROM t",
        "SELECT * FROM t WHERE a = $1 AND b = 2 AND c = $2",
        "SELECT * FROM t WHERE a IN (1,2,3) AND b = ANY(ARRAY[4,5])",
        "SELECT * FROM t WHERE a=-5 AND b <>-6 AND c=+-7 AND d @-8 AND e - 9 > 0",
        "SELECT x::varchar(10), x::numeric(5,2)[], CAST(y AS char(4)) FROM t WHERE z = 9",
        "SELECT * FROM t WHERE ts > now() - interval '5 minutes' AND k = 'x'::text",
        "SELECT a FROM t WHERE b = 1 FOR UPDATE SKIP LOCKED",
        "SELECT \"app_order\".\"id\" FROM \"app_order\" WHERE (\"app_order\".\"status\" = 'open' "
        "AND \"app_order\".\"total\" > 10) ORDER BY \"app_order\".\"created\" DESC LIMIT 21",
        "SELECT \"customers\".* FROM \"customers\" WHERE \"customers\".\"id\" = 42 LIMIT 1",
        "SELECT customers.id AS customers_id FROM customers WHERE customers.id = 42",
        "SELECT * FROM t t1 JOIN u ON u.x = 3 LEFT JOIN v ON v.y = 'w' WHERE t1.y = 4",
        "SELECT CASE WHEN a = 1 THEN 'one' ELSE 'other' END FROM t WHERE b BETWEEN 2 AND 3",
        "SELECT * FROM t WHERE a LIKE 'x%' ESCAPE '!' AND b = 'O''Brien'",
        "SELECT DISTINCT ON (1) a, 2 FROM t WHERE b = 3",
        "VALUES (1, 2), (3, 4)",
        "UPDATE t SET a = 1 FROM u WHERE u.x = 2 AND t.y = 3 RETURNING 4",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') ON CONFLICT (a) DO UPDATE SET b = 'z' "
        "RETURNING 5",
        "WITH w AS (SELECT 1) INSERT INTO t SELECT 2 FROM w WHERE 3 = 3",
        "WITH w AS (SELECT 1) UPDATE t SET a = 2 WHERE b = 3",
        "DELETE FROM t USING u WHERE t.a = u.a AND u.b = 1 RETURNING 2",
        "EXPLAIN SELECT * FROM t WHERE a = 1 LIMIT 2 OFFSET 3",
        "SELECT 1; SELECT 2 LIMIT 3 OFFSET 4",
    };

    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        check_numbering(texts[i]);
}

/* ---- the one table of a SELECT ---- */

static void table_is(const char *text, const char *want)
{
    char out[64] = "junk";

    fp_single_table(text, strlen(text), out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("table of [%s]: [%s], expected [%s]", text, out, want);
}

static void test_single_table(void **state)
{
    char small[8] = "junk";

    (void)state;
    table_is("SELECT * FROM orders WHERE id = 1", "orders");
    table_is("select * from public.orders o where o.id = 1", "public.orders");
    table_is("SELECT \"customers\".* FROM \"customers\" WHERE \"customers\".\"id\" = $1 LIMIT $2",
             "customers");
    table_is("SELECT * FROM Orders", "orders");
    table_is("SELECT * FROM \"My \"\"Table\"\"\".\"X\"", "My \"Table\".X");
    table_is("SELECT * FROM ONLY orders AS o TABLESAMPLE system (10) WHERE x FOR UPDATE", "orders");
    table_is("SELECT extract(year FROM ts) FROM events WHERE a IS DISTINCT FROM b", "events");
    table_is("SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers)", "orders");
    table_is("WITH x AS (SELECT 1) SELECT * FROM orders", "orders");
    table_is("WITH x AS (SELECT 1) SELECT * FROM x", "");
    table_is("SELECT * FROM a, b", "");
    table_is("SELECT * FROM a JOIN b ON a.x = b.x", "");
    table_is("SELECT * FROM a NATURAL JOIN b", "");
    table_is("SELECT * FROM a o, LATERAL f(o.id)", "");
    table_is("SELECT * FROM (SELECT 1) s", "");
    table_is("SELECT * FROM generate_series(1, 3)", "");
    table_is("SELECT * FROM t UNION SELECT * FROM u", "");
    table_is("SELECT 1", "");
    table_is("UPDATE t SET a = 1", "");
    table_is("DELETE FROM t", "");
    table_is("", "");
    table_is("SELECT * FROM \"unterminated", "");
    fp_single_table("SELECT * FROM a_long_table_name", 31, small, sizeof small);
    assert_string_equal(small, "");                   /* a cut name would be another table's */
    fp_single_table("SELECT * FROM t", 15, small, 0); /* nothing written */
    assert_string_equal(small, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lexer_every_literal_kind),
        cmocka_unit_test(test_lexer_comments_nest_and_vanish),
        cmocka_unit_test(test_lexer_dollar_quotes_with_tags),
        cmocka_unit_test(test_lexer_escape_strings),
        cmocka_unit_test(test_lexer_quoted_identifiers_kept),
        cmocka_unit_test(test_lexer_unicode_text),
        cmocka_unit_test(test_lexer_numbers),
        cmocka_unit_test(test_lexer_string_continuation),
        cmocka_unit_test(test_lexer_operators_and_comments),
        cmocka_unit_test(test_lexer_stops_at_nul),
        cmocka_unit_test(test_predigest_ignores_literals_spacing_comments_case),
        cmocka_unit_test(test_predigest_differs_on_structure),
        cmocka_unit_test(test_predigest_collapses_in_lists),
        cmocka_unit_test(test_predigest_ignores_savepoint_and_cursor_names),
        cmocka_unit_test(test_predigest_counts_comments_where_libpg_query_looks_ahead),
        cmocka_unit_test(test_shapes_ignore_values_that_fingerprints_keep),
        cmocka_unit_test(test_shapes_still_tell_statements_apart),
        cmocka_unit_test(test_marks_never_touch_words),
        cmocka_unit_test(test_cache_exact_text),
        cmocka_unit_test(test_values_flag_never_hides_a_value),
        cmocka_unit_test(test_predigest_keeps_validity),
        cmocka_unit_test(test_property_literal_variants),
        cmocka_unit_test(test_cache_one_parse_per_shape),
        cmocka_unit_test(test_cache_hits_value_bearing_statements),
        cmocka_unit_test(test_cache_text_budget),
        cmocka_unit_test(test_cache_normalized_text_is_the_first_seen),
        cmocka_unit_test(test_cache_evicts_least_recently_used),
        cmocka_unit_test(test_cache_matches_lru_model),
        cmocka_unit_test(test_cache_fallback_for_syntax_error),
        cmocka_unit_test(test_cache_fallback_shared_by_variants),
        cmocka_unit_test(test_cache_fallback_for_cut_text),
        cmocka_unit_test(test_cache_fallback_text_is_capped),
        cmocka_unit_test(test_cache_text_need_not_be_terminated),
        cmocka_unit_test(test_cache_of_one_entry),
        cmocka_unit_test(test_normalized_every_statement_kind),
        cmocka_unit_test(test_normalized_set_values_that_are_words),
        cmocka_unit_test(test_normalized_string_in_doubt),
        cmocka_unit_test(test_normalized_text_cached_without_values),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_split_basic),
        cmocka_unit_test(test_split_function_bodies),
        cmocka_unit_test(test_split_agrees_with_parser),
        cmocka_unit_test(test_split_fills_at_most_max),
        cmocka_unit_test(test_tags_sqlcommenter),
        cmocka_unit_test(test_tags_choose_the_first_tag_comment),
        cmocka_unit_test(test_tags_canonical_form),
        cmocka_unit_test(test_tags_cut_to_cap),
        cmocka_unit_test(test_literals_decoded),
        cmocka_unit_test(test_literals_only_what_normalize_replaces),
        cmocka_unit_test(test_literals_odd_input),
        cmocka_unit_test(test_literals_numbered_like_normalize),
        cmocka_unit_test(test_single_table),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    pg_query_exit(); /* frees libpg_query's per-thread memory, for leak checkers */
    return failed;
}
