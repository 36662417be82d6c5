/* Unit tests for the EXPLAIN guard: which captured statements may be replayed, and why not. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/explain.h"

typedef struct {
    const char *sql;
    explain_guard_kind kind;
    const char *reason; /* a part of the reason; NULL: anything */
} guard_case;

/* clang-format off */
#define ALLOWED(sql) {sql, EXPLAIN_GUARD_SELECT, NULL}
#define DML(sql, why) {sql, EXPLAIN_GUARD_DML, why}
#define REFUSED(sql, why) {sql, EXPLAIN_GUARD_REFUSED, why}
#define PLAN_ONLY(sql, why) {sql, EXPLAIN_GUARD_PLAN_ONLY, why}
/* clang-format on */
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

static const char *kind_name(explain_guard_kind k)
{
    switch (k) {
    case EXPLAIN_GUARD_SELECT:
        return "SELECT";
    case EXPLAIN_GUARD_DML:
        return "DML";
    case EXPLAIN_GUARD_REFUSED:
        return "REFUSED";
    case EXPLAIN_GUARD_PLAN_ONLY:
        return "PLAN_ONLY";
    }
    return "?";
}

/* A verdict must be one of the three kinds with a terminated reason, whatever the input. */
static explain_guard_result guard_sane(const char *sql)
{
    explain_guard_result r = explain_guard(sql);

    if (r.kind != EXPLAIN_GUARD_SELECT && r.kind != EXPLAIN_GUARD_DML &&
        r.kind != EXPLAIN_GUARD_REFUSED && r.kind != EXPLAIN_GUARD_PLAN_ONLY)
        fail_msg("verdict of unknown kind %d", (int)r.kind);
    if (strnlen(r.reason, sizeof r.reason) == sizeof r.reason)
        fail_msg("reason not terminated");
    if ((r.kind == EXPLAIN_GUARD_REFUSED || r.kind == EXPLAIN_GUARD_PLAN_ONLY) &&
        r.reason[0] == '\0')
        fail_msg("refused without a reason: [%.200s]", sql ? sql : "(null)");
    return r;
}

static void expect(const char *sql, explain_guard_kind kind, const char *reason)
{
    explain_guard_result r = guard_sane(sql);

    if (r.kind != kind)
        fail_msg("[%.300s]\n  expected %s, got %s (%s)", sql ? sql : "(null)", kind_name(kind),
                 kind_name(r.kind), r.reason);
    if (reason != NULL && strstr(r.reason, reason) == NULL)
        fail_msg("[%.300s]\n  %s as expected, but the reason \"%s\" lacks \"%s\"",
                 sql ? sql : "(null)", kind_name(kind), r.reason, reason);
}

static void expect_all(const guard_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect(cases[i].sql, cases[i].kind, cases[i].reason);
}

/* prefix, then unit repeated until the text holds about size bytes, then suffix (malloc'd). */
static char *repeated(const char *prefix, const char *unit, size_t size, const char *suffix)
{
    size_t p = strlen(prefix), u = strlen(unit), s = strlen(suffix);
    size_t count = size > p + s ? (size - p - s) / u : 0;
    char *text = malloc(p + count * u + s + 1), *at;

    assert_non_null(text);
    memcpy(text, prefix, p);
    at = text + p;
    for (size_t i = 0; i < count; i++, at += u)
        memcpy(at, unit, u);
    memcpy(at, suffix, s + 1);
    return text;
}

/* open repeated n times, then middle, then close repeated n times (malloc'd). */
static char *nested(const char *open, const char *middle, const char *close, size_t n)
{
    size_t o = strlen(open), m = strlen(middle), c = strlen(close);
    char *text = malloc(n * (o + c) + m + 1), *at = text;

    assert_non_null(text);
    for (size_t i = 0; i < n; i++, at += o)
        memcpy(at, open, o);
    memcpy(at, middle, m);
    at += m;
    for (size_t i = 0; i < n; i++, at += c)
        memcpy(at, close, c);
    *at = '\0';
    return text;
}

static void expect_owned(char *sql, explain_guard_kind kind, const char *reason)
{
    expect(sql, kind, reason);
    free(sql);
}

/* A small deterministic generator, so a failure can be replayed. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* ---- queries that may run under EXPLAIN ANALYZE ---- */

static void test_plain_selects_allowed(void **state)
{
    static const guard_case cases[] = {
        ALLOWED("SELECT 1"),
        ALLOWED("select * from orders where status = 'pending'"),
        ALLOWED("SELECT 1;"),
        ALLOWED("  -- leading comment\n SELECT /* inline */ a FROM t -- trailing"),
        ALLOWED("SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id "
                "LEFT JOIN items i USING (order_id) WHERE o.total > 100 ORDER BY o.id LIMIT 10"),
        ALLOWED("SELECT * FROM t WHERE id IN (SELECT order_id FROM items WHERE qty > 3)"),
        ALLOWED("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.t_id = t.id)"),
        ALLOWED("SELECT * FROM (SELECT a, b FROM t) AS s WHERE s.a > 1"),
        ALLOWED("WITH recent AS (SELECT * FROM orders WHERE created > now() - interval '1 day') "
                "SELECT count(*) FROM recent"),
        ALLOWED("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
                "SELECT * FROM r"),
        ALLOWED("WITH a AS MATERIALIZED (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT * FROM b"),
        ALLOWED("SELECT id, row_number() OVER (PARTITION BY customer_id ORDER BY created DESC), "
                "sum(total) OVER w FROM orders WINDOW w AS (ORDER BY id)"),
        ALLOWED("VALUES (1, 'a'), (2, 'b')"),
        ALLOWED("SELECT * FROM (VALUES (1), (2)) AS v(x)"),
        ALLOWED("SELECT a FROM t UNION SELECT a FROM u"),
        ALLOWED("SELECT a FROM t UNION ALL SELECT a FROM u INTERSECT SELECT a FROM w "
                "EXCEPT SELECT a FROM z"),
        ALLOWED("TABLE orders"),
        ALLOWED("SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id LIMIT 1) l"),
        ALLOWED("SELECT * FROM t TABLESAMPLE SYSTEM (10)"),
        ALLOWED("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC NULLS LAST"),
        ALLOWED("SELECT a, count(*) FROM t GROUP BY ROLLUP (a) HAVING count(*) > 1"),
        ALLOWED("SELECT CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' ELSE 'zero' END FROM t"),
        ALLOWED("SELECT t.end, t.case FROM t"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* Texts as the extended protocol carries them: parameters as $n. */
static void test_parameters_allowed(void **state)
{
    static const guard_case cases[] = {
        ALLOWED("SELECT * FROM t WHERE id = $1"),
        ALLOWED("SELECT * FROM t WHERE a = $1 AND b > $2 ORDER BY c LIMIT $3 OFFSET $4"),
        ALLOWED("SELECT * FROM t WHERE id = ANY($1::int[])"),
        ALLOWED("SELECT $1::jsonb -> 'a' ->> $2"),
        ALLOWED("SELECT * FROM t WHERE name LIKE $1 || '%'"),
        ALLOWED("SELECT $$ dollar $quoted$ text $$, $tag$ it's $tag$ FROM t WHERE x = $1"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

static void test_harmless_functions_allowed(void **state)
{
    static const guard_case cases[] = {
        ALLOWED("SELECT now(), current_timestamp, clock_timestamp(), statement_timestamp()"),
        ALLOWED("SELECT count(*), count(DISTINCT a), max(b), avg(c) FILTER (WHERE c > 0) FROM t"),
        ALLOWED("SELECT coalesce(a, b, 0), nullif(a, 0), greatest(a, b), least(a, b) FROM t"),
        ALLOWED("SELECT lower(name), upper(name), length(name), substring(name FROM 1 FOR 3)"),
        ALLOWED("SELECT jsonb_build_object('a', 1), jsonb_agg(x), x->>'k', "
                "jsonb_path_query(doc, '$.a') FROM t"),
        ALLOWED("SELECT json_extract_path_text(j, 'a'), to_jsonb(t) FROM t"),
        ALLOWED("SELECT currval('orders_id_seq')"),
        ALLOWED("SELECT lastval()"),
        ALLOWED("SELECT pg_catalog.lower(a), pg_catalog.now() FROM t"),
        ALLOWED("SELECT txid_current_if_assigned(), pg_current_xact_id_if_assigned()"),
        ALLOWED("SELECT txid_current_snapshot(), pg_backend_pid(), version()"),
        ALLOWED("SELECT * FROM generate_series(1, 10) g, unnest(ARRAY[1, 2]) u"),
        ALLOWED("SELECT my_func(a), app.compute_total(o.id) FROM orders o"),
        ALLOWED("SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)"),
        ALLOWED("SELECT format('%s', a), regexp_replace(a, 'x', 'y'), md5(a) FROM t"),
        ALLOWED("SELECT pg_relation_size('t'), pg_size_pretty(1024::bigint)"),
        /* names, not calls: a column, a string */
        ALLOWED("SELECT nextval FROM t"),
        ALLOWED("SELECT 'nextval(''s'')', 'pg_sleep(10)' FROM t"),
        ALLOWED("SELECT \"nextval\" FROM t"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* ---- SELECTs that must not run ---- */

static void test_locking_clauses_refused(void **state)
{
    static const guard_case cases[] = {
        REFUSED("SELECT * FROM t WHERE id = 1 FOR UPDATE", "FOR UPDATE"),
        REFUSED("SELECT * FROM t FOR SHARE", "FOR SHARE"),
        REFUSED("SELECT * FROM t FOR NO KEY UPDATE", "FOR NO KEY UPDATE"),
        REFUSED("SELECT * FROM t FOR KEY SHARE", "FOR KEY SHARE"),
        REFUSED("SELECT * FROM t FOR UPDATE NOWAIT", "locking clause"),
        REFUSED("SELECT * FROM jobs LIMIT 1 FOR UPDATE SKIP LOCKED", "locking clause"),
        REFUSED("SELECT * FROM t FOR UPDATE OF t", "locking clause"),
        REFUSED("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", "FOR UPDATE"),
        REFUSED("SELECT * FROM (SELECT * FROM u FOR SHARE) s", "FOR SHARE"),
        REFUSED("WITH locked AS (SELECT * FROM u FOR UPDATE) SELECT * FROM locked", "FOR UPDATE"),
        REFUSED("(SELECT a FROM t FOR UPDATE) UNION SELECT a FROM u", "FOR UPDATE"),
        REFUSED("SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id FOR KEY SHARE) l",
                "FOR KEY SHARE"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

static void test_writable_ctes_refused(void **state)
{
    static const guard_case cases[] = {
        REFUSED("WITH x AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM x",
                "data-modifying WITH (DELETE)"),
        REFUSED("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x",
                "data-modifying WITH (INSERT)"),
        REFUSED("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM x",
                "data-modifying WITH (UPDATE)"),
        REFUSED("WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE) "
                "SELECT 1",
                "data-modifying WITH (MERGE)"),
        REFUSED("WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING *) SELECT * FROM a", "DELETE"),
        REFUSED("SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s",
                "DELETE"),
        REFUSED("WITH RECURSIVE x AS (UPDATE t SET a = 1 RETURNING *) SELECT 1 UNION "
                "SELECT 2",
                "UPDATE"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* Planned, never executed: planning does not call a VOLATILE function. Those the planner may
 * call (not VOLATILE) are refused outright. */
static void test_denied_functions_planned_only(void **state)
{
    static const guard_case cases[] = {
        PLAN_ONLY("SELECT nextval('s')", "nextval"),
        PLAN_ONLY("SELECT * FROM t WHERE id = nextval('s')", "nextval"),
        PLAN_ONLY("SELECT setval('s', 42)", "setval"),
        PLAN_ONLY("SELECT pg_catalog.nextval('s')", "nextval"),
        PLAN_ONLY("SELECT NEXTVAL('s'), \"SetVal\"('s', 1)", "nextval"),
        PLAN_ONLY("SELECT \"SetVal\"('s', 1)", "SetVal"),
        PLAN_ONLY("SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
        PLAN_ONLY("SELECT pg_advisory_xact_lock_shared(1, 2)", "pg_advisory_xact_lock_shared"),
        PLAN_ONLY("SELECT pg_advisory_unlock_all()", "pg_advisory_unlock_all"),
        PLAN_ONLY("SELECT pg_try_advisory_xact_lock(7)", "pg_try_advisory_xact_lock"),
        PLAN_ONLY("SELECT * FROM dblink('dbname=x', 'SELECT 1') AS r(a int)", "dblink"),
        PLAN_ONLY("SELECT dblink_exec('dbname=x', 'DELETE FROM t')", "dblink_exec"),
        PLAN_ONLY("SELECT ext.dblink_connect('c', 'dbname=x')", "dblink_connect"),
        PLAN_ONLY("SELECT pg_notify('channel', 'payload')", "pg_notify"),
        PLAN_ONLY("SELECT * FROM t WHERE a = (SELECT pg_sleep(1))", "pg_sleep"),
        PLAN_ONLY("SELECT pg_sleep_for('1 second'), pg_sleep_until(now())", "pg_sleep_for"),
        PLAN_ONLY("SELECT set_config('search_path', 'x', false)", "set_config"),
        PLAN_ONLY("SELECT lo_import('/etc/passwd')", "lo_import"),
        PLAN_ONLY("SELECT lo_export(42, '/tmp/x')", "lo_export"),
        PLAN_ONLY("SELECT lowrite(0, 'x')", "lowrite"),
        REFUSED("SELECT txid_current()", "txid_current"),
        REFUSED("SELECT pg_current_xact_id()", "pg_current_xact_id"),
        REFUSED("SELECT query_to_xml('DELETE FROM t RETURNING *', true, false, '')",
                "query_to_xml"),
        REFUSED("SELECT table_to_xmlschema('t', true, false, '')", "table_to_xmlschema"),
        REFUSED("SELECT ts_stat('SELECT v FROM t')", "ts_stat"),
        REFUSED("SELECT ts_rewrite('a'::tsquery, 'SELECT t, s FROM aliases')", "ts_rewrite"),
        PLAN_ONLY("SELECT pg_terminate_backend(123)", "pg_terminate_backend"),
        PLAN_ONLY("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "pg_cancel_backend"),
        PLAN_ONLY("SELECT pg_reload_conf()", "pg_reload_conf"),
        PLAN_ONLY("SELECT pg_rotate_logfile()", "pg_rotate_logfile"),
        PLAN_ONLY("SELECT pg_read_file('postgresql.conf')", "pg_read_file"),
        PLAN_ONLY("SELECT pg_read_binary_file('x')", "pg_read_binary_file"),
        PLAN_ONLY("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir"),
        PLAN_ONLY("SELECT * FROM pg_ls_waldir()", "pg_ls_waldir"),
        PLAN_ONLY("SELECT pg_stat_file('x')", "pg_stat_file"),
        PLAN_ONLY("SELECT pg_create_restore_point('x')", "pg_create_restore_point"),
        PLAN_ONLY("SELECT pg_create_logical_replication_slot('s', 'pgoutput')", "replication"),
        PLAN_ONLY("SELECT pg_drop_replication_slot('s')", "pg_drop_replication_slot"),
        PLAN_ONLY("SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)", "pg_logical"),
        PLAN_ONLY("SELECT pg_logical_emit_message(true, 'p', 'm')", "pg_logical_emit_message"),
        PLAN_ONLY("SELECT pg_replication_origin_create('o')", "pg_replication_origin_create"),
        PLAN_ONLY("SELECT pg_switch_wal()", "pg_switch_wal"),
        PLAN_ONLY("SELECT pg_backup_start('label')", "pg_backup_start"),
        PLAN_ONLY("SELECT pg_start_backup('label')", "pg_start_backup"),
        PLAN_ONLY("SELECT pg_promote()", "pg_promote"),
        PLAN_ONLY("SELECT pg_export_snapshot()", "pg_export_snapshot"),
        PLAN_ONLY("SELECT pg_import_system_collations('pg_catalog')", "pg_import"),
        PLAN_ONLY("SELECT pg_stat_reset()", "pg_stat_reset"),
        PLAN_ONLY("SELECT pg_stat_statements_reset()", "pg_stat_statements_reset"),
        PLAN_ONLY("SELECT pg_log_backend_memory_contexts(1)", "pg_log_backend_memory_contexts"),
        PLAN_ONLY("SELECT brin_summarize_new_values('i')", "brin_summarize_new_values"),
        PLAN_ONLY("SELECT gin_clean_pending_list('i')", "gin_clean_pending_list"),
        PLAN_ONLY("SELECT pg_background_launch('DELETE FROM t')", "pg_background_launch"),
        PLAN_ONLY("SELECT net.http_post('https://example.com', '{}')", "http_post"),
        /* what else refuses a statement still does */
        REFUSED("SELECT nextval('s') FROM t FOR UPDATE", "FOR UPDATE"),
        REFUSED("SELECT pg_sleep(1), txid_current()", "txid_current"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* A denied call is found wherever a SELECT may hold an expression. */
static void test_denied_call_found_anywhere(void **state)
{
    static const char *const places[] = {
        "SELECT %s",
        "SELECT a FROM t WHERE b = %s",
        "SELECT * FROM %s AS f",
        "SELECT * FROM ROWS FROM (generate_series(1, 2), %s) AS f",
        "SELECT * FROM t, LATERAL (SELECT %s) l",
        "SELECT a FROM t ORDER BY %s",
        "SELECT a FROM t GROUP BY a HAVING count(*) > %s",
        "SELECT a FROM t LIMIT %s",
        "WITH c AS (SELECT %s AS x) SELECT x FROM c",
        "WITH c AS (WITH d AS (SELECT %s) SELECT * FROM d) SELECT * FROM c",
        "SELECT 1 UNION ALL SELECT %s",
        "SELECT 1 INTERSECT (SELECT 2 EXCEPT SELECT %s)",
        "VALUES (1), (%s)",
        "SELECT CASE WHEN a THEN 1 ELSE %s END FROM t",
        "SELECT coalesce(a, %s) FROM t",
        "SELECT sum(a) OVER (PARTITION BY %s) FROM t",
        "SELECT count(*) FILTER (WHERE a = %s) FROM t",
        "SELECT * FROM t JOIN u ON u.id = %s",
        "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = (SELECT %s))",
        "SELECT ARRAY[1, %s]",
        "SELECT (%s)::text",
        "SELECT * FROM t WHERE EXISTS (SELECT 1 WHERE %s IS NOT NULL)",
    };
    static const char *const calls[][2] = {
        {"nextval('s')", "nextval"},
        {"pg_catalog.setval('s', 1)", "setval"},
        {"pg_try_advisory_lock(a)", "pg_try_advisory_lock"},
        {"public.dblink('x', 'y')", "dblink"},
        {"pg_sleep(0.1)", "pg_sleep"},
    };
    char sql[512];

    (void)state;
    for (size_t p = 0; p < COUNT(places); p++) {
        for (size_t c = 0; c < COUNT(calls); c++) {
            snprintf(sql, sizeof sql, places[p], calls[c][0]);
            expect(sql, EXPLAIN_GUARD_PLAN_ONLY, calls[c][1]);
        }
    }
}

static void test_select_into_refused(void **state)
{
    static const guard_case cases[] = {
        REFUSED("SELECT * INTO new_table FROM t", "SELECT INTO"),
        REFUSED("SELECT 1 INTO TEMP x UNION SELECT 2", "SELECT INTO"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* ---- DML: plain EXPLAIN only, unless it acts outside the transaction ---- */

static void test_dml(void **state)
{
    static const guard_case cases[] = {
        DML("INSERT INTO t (a, b) VALUES ($1, $2)", "DML: INSERT"),
        DML("INSERT INTO t SELECT * FROM u RETURNING id", "DML: INSERT"),
        DML("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a", "INSERT"),
        DML("UPDATE t SET a = a + 1 WHERE id = $1", "DML: UPDATE"),
        DML("UPDATE t SET a = u.a FROM u WHERE u.id = t.id RETURNING t.*", "DML: UPDATE"),
        DML("DELETE FROM t WHERE id = 1", "DML: DELETE"),
        DML("DELETE FROM t USING u WHERE u.id = t.id RETURNING *", "DML: DELETE"),
        DML("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a "
            "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a)",
            "DML: MERGE"),
        DML("WITH old AS (SELECT id FROM t WHERE a < 0) DELETE FROM t WHERE id IN "
            "(SELECT id FROM old)",
            "DML: DELETE"),
        /* a writable WITH in DML is still DML: the whole statement is explained without
         * ANALYZE, or rolled back */
        DML("WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d",
            "DML: INSERT"),
        /* row locks end with the transaction */
        DML("DELETE FROM jobs WHERE id = (SELECT id FROM jobs LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "RETURNING *",
            "DML: DELETE"),
        DML("UPDATE t SET a = currval('s')", "DML: UPDATE"),
        /* a rollback would not undo these, were DML ever run under ANALYZE */
        PLAN_ONLY("INSERT INTO t VALUES (nextval('s'), 'x')", "DML, but calls nextval()"),
        PLAN_ONLY("DELETE FROM jobs WHERE pg_try_advisory_lock(id) RETURNING *",
                  "pg_try_advisory_lock"),
        PLAN_ONLY("UPDATE t SET a = (SELECT x FROM dblink('c', 'SELECT 1') AS r(x int))", "dblink"),
        REFUSED("UPDATE t SET a = txid_current()", "DML, but calls txid_current()"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* ---- everything else ---- */

static void test_statement_count(void **state)
{
    static const guard_case cases[] = {
        REFUSED("SELECT 1; SELECT 2", "2 statements"),
        REFUSED("SELECT 1; DELETE FROM t", "2 statements"),
        REFUSED("SELECT 1;;;SELECT 2;SELECT 3", "3 statements"),
        REFUSED("", "no statement"),
        REFUSED("   \n\t ", "no statement"),
        REFUSED("-- nothing but a comment", "no statement"),
        REFUSED("/* nothing */ ;", "no statement"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

static void test_utility_statements_refused(void **state)
{
    static const guard_case cases[] = {
        REFUSED("SET search_path = app, public", "SET"),
        REFUSED("SET LOCAL statement_timeout = 0", "SET"),
        REFUSED("SHOW work_mem", "SHOW"),
        REFUSED("BEGIN", "transaction control"),
        REFUSED("COMMIT", "transaction control"),
        REFUSED("ROLLBACK TO SAVEPOINT s", "transaction control"),
        REFUSED("COPY t TO STDOUT", "COPY"),
        REFUSED("COPY (SELECT * FROM t) TO '/tmp/x'", "COPY"),
        REFUSED("CALL p()", "CALL"),
        REFUSED("DO $$BEGIN DELETE FROM t; END$$", "DO"),
        REFUSED("EXPLAIN SELECT 1", "EXPLAIN"),
        REFUSED("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN"),
        REFUSED("PREPARE q AS SELECT 1", "PREPARE"),
        REFUSED("EXECUTE q(1)", "EXECUTE"),
        REFUSED("DEALLOCATE ALL", "DEALLOCATE"),
        REFUSED("VACUUM t", "VACUUM"),
        REFUSED("ANALYZE t", "ANALYZE"),
        REFUSED("CREATE TABLE x AS SELECT * FROM t", "CREATE TABLE AS"),
        REFUSED("CREATE MATERIALIZED VIEW v AS SELECT 1", "CREATE TABLE AS"),
        REFUSED("LISTEN ch", "LISTEN"),
        REFUSED("NOTIFY ch, 'x'", "NOTIFY"),
        REFUSED("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK"),
        REFUSED("DECLARE c CURSOR FOR SELECT 1", "DECLARE CURSOR"),
        REFUSED("FETCH 10 FROM c", "FETCH"),
        REFUSED("TRUNCATE t", "TRUNCATE"),
        REFUSED("CREATE TABLE x (a int)", "CREATE TABLE"),
        REFUSED("DROP TABLE t", "DROP"),
        REFUSED("ALTER TABLE t ADD COLUMN b int", "ALTER TABLE"),
        REFUSED("CREATE INDEX ON t (a)", "CREATE INDEX"),
        REFUSED("REFRESH MATERIALIZED VIEW v", "REFRESH"),
        REFUSED("DISCARD ALL", "DISCARD"),
        REFUSED("CHECKPOINT", "CHECKPOINT"),
        REFUSED("GRANT SELECT ON t TO bob", "GrantStmt"),
        REFUSED("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT nextval(''s'')::int'",
                "not a query"),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

static void test_text_that_does_not_parse(void **state)
{
    static const guard_case cases[] = {
        REFUSED(NULL, "no statement text"),
        REFUSED("SELEC 1", "does not parse: syntax error"),
        REFUSED("SELECT * FROM t WHERE a = ", "does not parse"),
        REFUSED("SELECT * FROM orders WHERE status = 'pend", "does not parse"),
        REFUSED("SELECT $$never closed", "does not parse"),
        REFUSED("SELECT /* never closed", "does not parse"),
        REFUSED("SELECT (1", "does not parse"),
        REFUSED("SELECT 1)", "does not parse"),
        REFUSED("SELECT \xff\xfe FROM t", NULL),
        REFUSED("SELECT E'\\xff'", NULL),
    };
    (void)state;
    expect_all(cases, COUNT(cases));
}

/* ---- size and nesting: refused or allowed, never a crash ---- */

static void test_large_statements(void **state)
{
    const size_t size = 200 * 1024;

    (void)state;
    expect_owned(repeated("SELECT * FROM t WHERE id IN (", "12345, ", size, "0)"),
                 EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(repeated("SELECT * FROM t WHERE id IN (", "$1, ", size, "$2)"),
                 EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(repeated("INSERT INTO t (a, b) VALUES ", "(1, 'x'), ", size, "(2, 'y')"),
                 EXPLAIN_GUARD_DML, "INSERT");
    expect_owned(repeated("SELECT * FROM t WHERE ", "(a = 1 AND b = 'x') OR ", size, "false"),
                 EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(repeated("UPDATE t SET a = CASE id ", "WHEN 1 THEN 'x' ", size, "END"),
                 EXPLAIN_GUARD_DML, "UPDATE");
    expect_owned(repeated("SELECT CASE ", "WHEN a = 1 THEN b + 1 ", size, "END FROM t"),
                 EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(repeated("SELECT '", ")))(((,,, '' AND + - ", size, "'"), EXPLAIN_GUARD_SELECT,
                 NULL);
    expect_owned(repeated("SELECT ", "a, ", size, "nextval('s') FROM t"), EXPLAIN_GUARD_PLAN_ONLY,
                 "nextval");
    /* left-deep chains: libpg_query would overflow its stack writing them out */
    expect_owned(repeated("SELECT 1", " + 1", size, ""), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(repeated("SELECT 'a'", " || 'a'", size, ""), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(repeated("SELECT 1", " UNION SELECT 1", size, ""), EXPLAIN_GUARD_REFUSED,
                 "deeply");
    expect_owned(repeated("SELECT * FROM t0", " JOIN t ON true", size, ""), EXPLAIN_GUARD_REFUSED,
                 "deeply");
    expect_owned(repeated("SELECT 1", "::int", size, ""), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(repeated("SELECT ", "NOT ", size, "true"), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(repeated("SELECT ", "- ", size, "1"), EXPLAIN_GUARD_REFUSED, "deeply");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    expect_owned(nested("(", "SELECT 1", ")", 10000), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(nested("SELECT (", "1", ")", 10000), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(nested("SELECT (", "1", ")", 1000), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(nested("SELECT * FROM (SELECT * FROM (", "SELECT 1", ") a) b", 5000),
                 EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(nested("SELECT CASE WHEN a THEN ", "1", " END", 10000), EXPLAIN_GUARD_REFUSED,
                 "deeply");
    expect_owned(nested("SELECT ARRAY[", "1", "]", 10000), EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(nested("SELECT f(", "1", ")", 10000), EXPLAIN_GUARD_REFUSED, "deeply");
    /* names that look like keywords must not hide a chain */
    expect_owned(repeated("SELECT 1", " + t.end + t.and + t.then", 200 * 1024, ""),
                 EXPLAIN_GUARD_REFUSED, "deeply");
    expect_owned(nested("SELECT CASE WHEN a THEN t.end ELSE ", "1", " END", 10000),
                 EXPLAIN_GUARD_REFUSED, "deeply");
    /* nesting real queries have */
    expect_owned(nested("SELECT (", "1", ")", 100), EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(
        nested("SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c IN (", "SELECT 1", "))", 20),
        EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(repeated("SELECT 1", " + 1", 1000, ""), EXPLAIN_GUARD_SELECT, NULL);
    expect_owned(nested("(SELECT ", "nextval('s')", ")", 60), EXPLAIN_GUARD_PLAN_ONLY, "nextval");
    expect_owned(nested("(SELECT ", "1 FROM t FOR UPDATE", ")", 60), EXPLAIN_GUARD_REFUSED,
                 "FOR UPDATE");
}

/* ---- fuzzing: any bytes, never a crash ---- */

static void test_fuzz_random_bytes(void **state)
{
    char text[513];

    (void)state;
    for (int i = 0; i < 10000; i++) {
        size_t len = rng() % (sizeof text);
        for (size_t j = 0; j < len; j++)
            text[j] = (char)(1 + rng() % 255);
        text[len] = '\0';
        guard_sane(text);
    }
}

/* Random sequences of SQL pieces parse far more often than random bytes, and reach the walk. */
static void test_fuzz_sql_pieces(void **state)
{
    /* clang-format off */
    static const char *const pieces[] = {
        "SELECT ", "* ", "a ", "1 ", "$1 ", "'x' ", "FROM t ", "WHERE ", "AND ", "OR ", "NOT ",
        "= ", "+ ", "|| ", "::int ", ", ", "(", ") ", "[", "] ", "CASE WHEN ", "THEN ", "ELSE ",
        "END ", "UNION ", "JOIN u ON ", "true ", "WITH c AS ", "(SELECT 1) ", "nextval('s') ",
        "FOR UPDATE ", "INSERT INTO t ", "VALUES ", "DELETE FROM t ", "RETURNING * ", "; ",
        "t.end ", "f(", "$$x$$ ", "E'\\'' ", "-- c\n", "/* c */ ", "\"q\" ", "INTO x ", "LIMIT ",
        "ORDER BY ", "GROUP BY ", "LATERAL ", "EXISTS ", "IN ", "IS NULL ", "BETWEEN ",
    };
    /* clang-format on */
    char text[2048];

    (void)state;
    for (int i = 0; i < 10000; i++) {
        size_t len = 0, n = 1 + rng() % 60;
        for (size_t j = 0; j < n; j++) {
            const char *p = pieces[rng() % COUNT(pieces)];
            size_t pl = strlen(p);
            if (len + pl >= sizeof text)
                break;
            memcpy(text + len, p, pl);
            len += pl;
        }
        text[len] = '\0';
        guard_sane(text);
    }
}

/* Every prefix of statements the guard refuses: cut texts are what a capped capture gives. */
static void test_every_prefix(void **state)
{
    static const char *const texts[] = {
        "WITH x AS (DELETE FROM t WHERE id = $1 RETURNING *) SELECT * FROM x FOR UPDATE",
        "SELECT a, nextval('s'), $$q$$, E'\\'' /* c */ FROM t WHERE b IN (SELECT pg_sleep(1))",
        "SELECT CASE WHEN a THEN t.end ELSE ARRAY[1, 2][1] END || 'x' FROM t JOIN u ON true",
    };
    char text[256];

    (void)state;
    for (size_t t = 0; t < COUNT(texts); t++) {
        size_t n = strlen(texts[t]);
        for (size_t len = 0; len <= n; len++) {
            memcpy(text, texts[t], len);
            text[len] = '\0';
            guard_sane(text);
        }
    }
}

/* ---- the client's search_path ---- */

static explain_path_change path_change(const char *sql, char *value)
{
    return explain_search_path_change(sql, value, 256);
}

static void test_search_path_changes(void **state)
{
    char v[256];

    (void)state;
    assert_int_equal(path_change("SET search_path TO app, public", v), EXPLAIN_PATH_SET);
    assert_string_equal(v, "\"app\", \"public\"");
    assert_int_equal(path_change("set SESSION search_path = '$user', \"My Schema\"", v),
                     EXPLAIN_PATH_SET);
    assert_string_equal(v, "\"$user\", \"My Schema\"");
    assert_int_equal(path_change("SET search_path = 'we\"ird'", v), EXPLAIN_PATH_SET);
    assert_string_equal(v, "\"we\"\"ird\"");
    assert_int_equal(path_change("SET LOCAL search_path TO app", v), EXPLAIN_PATH_SET_LOCAL);
    assert_string_equal(v, "\"app\"");
    assert_int_equal(path_change("RESET search_path", v), EXPLAIN_PATH_RESET);
    assert_string_equal(v, "");
    assert_int_equal(path_change("SET search_path TO DEFAULT", v), EXPLAIN_PATH_RESET);
    assert_int_equal(path_change("RESET ALL", v), EXPLAIN_PATH_RESET);
    assert_int_equal(path_change("DISCARD ALL", v), EXPLAIN_PATH_RESET);
    assert_int_equal(path_change("SET search_path FROM CURRENT", v), EXPLAIN_PATH_UNKNOWN);
    /* Not about search_path, or not one statement the server would run. */
    assert_int_equal(path_change("SET work_mem = '64MB'", v), EXPLAIN_PATH_NONE);
    assert_int_equal(path_change("DISCARD PLANS", v), EXPLAIN_PATH_NONE);
    assert_int_equal(path_change("SELECT 'search_path'", v), EXPLAIN_PATH_NONE);
    assert_int_equal(path_change("SET search_path TO", v), EXPLAIN_PATH_NONE);
    assert_int_equal(path_change("SET search_path TO a; SET search_path TO b", v),
                     EXPLAIN_PATH_NONE);
    /* A value longer than the room for it is not followed, never cut. */
    assert_int_equal(explain_search_path_change("SET search_path TO abcdefgh", v, 8),
                     EXPLAIN_PATH_UNKNOWN);
    assert_string_equal(v, "");
}

/* ---- the client's temporary relations ---- */

/* What explain_temp_follow reported: "+name" created, "-name" dropped, space separated. */
static void note_temp(bool created, const char *name, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);

    snprintf(out + n, 256 - n, "%s%c%s", n ? " " : "", created ? '+' : '-', name);
}

static bool temp_follow(const char *sql, char *out)
{
    out[0] = '\0';
    return explain_temp_follow(sql, note_temp, out);
}

static void test_temp_relations_followed(void **state)
{
    char v[256];

    (void)state;
    assert_false(temp_follow("CREATE TEMP TABLE Scratch (a int)", v));
    assert_string_equal(v, "+scratch");
    assert_false(temp_follow("create temporary table t2 as select 1", v));
    assert_string_equal(v, "+t2");
    assert_false(temp_follow("SELECT 1 AS a INTO TEMP t3", v));
    assert_string_equal(v, "+t3");
    assert_false(temp_follow("CREATE TEMP VIEW v AS SELECT 1", v));
    assert_string_equal(v, "+v");
    assert_false(temp_follow("CREATE TEMP SEQUENCE s", v));
    assert_string_equal(v, "+s");
    assert_false(temp_follow("CREATE TABLE pg_temp.w (a int)", v));
    assert_string_equal(v, "+w");
    assert_false(temp_follow("DROP TABLE t2, pg_temp.t3, app.t4", v));
    assert_string_equal(v, "-t2 -t3");
    /* Permanent relations, other statements, text the server would refuse: nothing. */
    assert_false(temp_follow("CREATE TABLE temp_orders (a int)", v));
    assert_false(temp_follow("SELECT * INTO archive FROM temp_orders", v));
    assert_false(temp_follow("CREATE TEMP TABLE", v));
    assert_false(temp_follow("DROP FUNCTION f()", v));
    assert_string_equal(v, "");
    assert_true(temp_follow("DISCARD TEMP", v));
    assert_true(temp_follow("discard all", v));
    assert_false(temp_follow("DISCARD PLANS", v));
}

static void test_temp_relations_used(void **state)
{
    const char *const names[] = {"scratch", "t2"};

    (void)state;
    assert_true(explain_temp_uses("SELECT count(*) FROM scratch", names, 2));
    assert_true(explain_temp_uses("SELECT * FROM orders o JOIN T2 ON t2.id = o.id", names, 2));
    assert_true(
        explain_temp_uses("SELECT * FROM orders WHERE id IN (SELECT a FROM scratch)", names, 2));
    assert_true(explain_temp_uses("UPDATE scratch SET a = 1", names, 2));
    assert_true(explain_temp_uses("SELECT * FROM pg_temp.anything", NULL, 0));
    assert_true(explain_temp_uses("SELECT * FROM pg_temp_3.anything", NULL, 0));
    /* Qualified by another schema, only a column or a literal of that name, or no names. */
    assert_false(explain_temp_uses("SELECT * FROM app.scratch", names, 2));
    assert_false(explain_temp_uses("SELECT scratch FROM orders WHERE x = 't2'", names, 2));
    assert_false(explain_temp_uses("SELECT * FROM scratch", NULL, 0));
    assert_false(explain_temp_uses("SELEC nonsense", names, 2));
}

static void test_login_refused(void **state)
{
    (void)state;
    assert_true(explain_login_refused("connection to server at \"127.0.0.1\", port 5432 failed: "
                                      "fe_sendauth: no password supplied"));
    assert_true(explain_login_refused("connection to server on socket \"/run/x\" failed: FATAL:  "
                                      "password authentication failed for user \"app\""));
    assert_true(explain_login_refused("FATAL:  no pg_hba.conf entry for host \"10.0.0.1\""));
    assert_true(explain_login_refused("FATAL:  Peer authentication failed for user \"app\""));
    assert_true(explain_login_refused("FATAL:  role \"ghost\" does not exist"));
    assert_false(explain_login_refused("connection to server at \"127.0.0.1\", port 1 failed: "
                                       "Connection refused"));
    assert_false(explain_login_refused("backing off after a failed connection"));
    assert_false(explain_login_refused(NULL));
}

/* ---- the plan check: what a plain EXPLAIN (VERBOSE) plan calls ---- */

/* A plan of one node holding the given members (JSON text, without braces). */
static explain_calls *read_plan(const char *members)
{
    char json[4096], why[256] = "";
    explain_calls *c;

    snprintf(json, sizeof json, "[{\"Plan\": {%s}, \"Settings\": {\"search_path\": \"f(x)\"}}]",
             members);
    c = explain_calls_read(json, why, sizeof why);
    if (c == NULL)
        fail_msg("plan not read (%s): %s", why, json);
    return c;
}

static void expect_name(const explain_calls *c, explain_call_kind kind, const char *schema,
                        const char *name)
{
    if (!explain_calls_has(c, kind, schema, name))
        fail_msg("kind %d: %s.%s not found", (int)kind, schema, name);
}

static void expect_no_name(const explain_calls *c, explain_call_kind kind, const char *schema,
                           const char *name)
{
    if (explain_calls_has(c, kind, schema, name))
        fail_msg("kind %d: %s.%s found", (int)kind, schema, name);
}

/* Functions as the deparser prints them: bare, qualified, quoted; never inside a literal. */
static void test_plan_functions(void **state)
{
    explain_calls *c;

    (void)state;
    c = read_plan("\"Node Type\": \"Seq Scan\", \"Relation Name\": \"big\", \"Schema\": "
                  "\"public\", \"Alias\": \"big\", \"Output\": [\"big.id\", "
                  "\"report_and_cleanup()\", \"'a b(c'::text\", \"'it''s f(x)'::text\", "
                  "\"E'x\\\\' g(1)'\", \"\\\"Weird Name\\\"(big.id)\", "
                  "\"audit.\\\"Log\\\"(1)\", \"count(*)\", \"row_number() OVER (?)\"], "
                  "\"Filter\": \"((big.id + (random())::integer) > 0)\"");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "report_and_cleanup");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "random");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "Weird Name");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "audit", "Log");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "count");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "row_number");
    expect_no_name(c, EXPLAIN_CALL_FUNCTION, "", "b");
    expect_no_name(c, EXPLAIN_CALL_FUNCTION, "", "f");
    expect_no_name(c, EXPLAIN_CALL_FUNCTION, "", "g"); /* inside E'x\' g(1)' */
    expect_no_name(c, EXPLAIN_CALL_FUNCTION, "big", "id");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "+");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", ">");
    expect_no_name(c, EXPLAIN_CALL_OPERATOR, "", "*"); /* count(*) */
    expect_no_name(c, EXPLAIN_CALL_OPERATOR, "", "?"); /* OVER (?) */
    expect_name(c, EXPLAIN_CALL_TYPE, "", "integer");
    expect_name(c, EXPLAIN_CALL_TYPE, "", "text");
    expect_name(c, EXPLAIN_CALL_RELATION, "public", "big");
    expect_no_name(c, EXPLAIN_CALL_TARGET, "public", "big");
    assert_int_equal(explain_calls_count(c, EXPLAIN_CALL_FUNCTION), 6);
    explain_calls_free(c);
}

/* Operators, bare and OPERATOR(schema.op), and the = hidden in IS DISTINCT FROM and NULLIF. */
static void test_plan_operators(void **state)
{
    explain_calls *c;

    (void)state;
    c = read_plan("\"Node Type\": \"Seq Scan\", \"Filter\": \"((m.id === 5) AND (m.id "
                  "OPERATOR(other.===) 6) AND (m.doc @> '{}'::jsonb) AND (m.t.*) IS NOT NULL)\"");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "===");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "other", "===");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "@>");
    expect_no_name(c, EXPLAIN_CALL_OPERATOR, "", "=");
    expect_no_name(c, EXPLAIN_CALL_FUNCTION, "", "operator");
    expect_name(c, EXPLAIN_CALL_TYPE, "", "jsonb");
    explain_calls_free(c);
    c = read_plan("\"Node Type\": \"Result\", \"Output\": [\"((m.vc)::text IS DISTINCT FROM "
                  "'x'::text)\"]");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "=");
    explain_calls_free(c);
    c = read_plan("\"Node Type\": \"Result\", \"Output\": [\"NULLIF(m.id, 3)\"]");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "=");
    explain_calls_free(c);
}

/* What nodes name: the function they scan, the index, the tables written, partitions too. */
static void test_plan_nodes(void **state)
{
    explain_calls *c;

    (void)state;
    c = read_plan(
        "\"Node Type\": \"ModifyTable\", \"Operation\": \"Update\", \"Relation Name\": \"pt\", "
        "\"Schema\": \"public\", \"Target Tables\": [{\"Relation Name\": \"pt1\", \"Schema\": "
        "\"public\", \"Alias\": \"pt_1\"}], \"Plans\": [{\"Node Type\": \"Function Scan\", "
        "\"Function Name\": \"kill_all\", \"Schema\": \"ops\", \"Alias\": \"k\"}, {\"Node Type\": "
        "\"Index Scan\", \"Index Name\": \"big_pkey\", \"Relation Name\": \"big\", \"Schema\": "
        "\"public\", \"Alias\": \"b\", \"Index Cond\": \"(b.id = 1)\"}, {\"Node Type\": \"Sample "
        "Scan\", \"Relation Name\": \"big\", \"Schema\": \"public\", \"Sampling Method\": "
        "\"system_rows\"}]");
    expect_name(c, EXPLAIN_CALL_TARGET, "public", "pt");
    expect_name(c, EXPLAIN_CALL_TARGET, "public", "pt1");
    expect_no_name(c, EXPLAIN_CALL_TARGET, "public", "big");
    expect_name(c, EXPLAIN_CALL_RELATION, "public", "big");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "ops", "kill_all");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "system_rows");
    expect_name(c, EXPLAIN_CALL_INDEX, "public", "big_pkey");
    expect_no_name(c, EXPLAIN_CALL_FUNCTION, "", "f"); /* the Settings object is not read */
    explain_calls_free(c);
}

/* Fail closed: what is not a plan, or what cannot be checked, is not cleared. */
static void test_plan_unreadable(void **state)
{
    static const char *const bad[] = {
        NULL,
        "",
        "not json",
        "{}",
        "[]",
        "[{\"Query\": {}}]",
        "[{\"Plan\": {}}, 3]",
        "[{\"Plan\": {\"Node Type\": \"Foreign Scan\", \"Relations\": \"(a) JOIN (b)\"}}]",
    };
    char why[256], *many;
    size_t at = 0;

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        why[0] = '\0';
        assert_null(explain_calls_read(bad[i], why, sizeof why));
        assert_true(why[0] != '\0');
    }
    /* more distinct names than are looked up */
    many = malloc(3000 * 16 + 64);
    assert_non_null(many);
    at += (size_t)sprintf(many, "[{\"Plan\": {\"Output\": [\"");
    for (int i = 0; i < 3000; i++)
        at += (size_t)sprintf(many + at, "f%d() ", i);
    sprintf(many + at, "\"]}}]");
    assert_null(explain_calls_read(many, why, sizeof why));
    assert_non_null(strstr(why, "too much"));
    free(many);
}

/* What plans do not print: MERGE actions and ON CONFLICT DO UPDATE cannot be cleared. */
static void test_plan_unseen_actions(void **state)
{
    static const char *const unseen[][2] = {
        {"[{\"Plan\": {\"Node Type\": \"ModifyTable\", \"Operation\": \"Merge\", "
         "\"Relation Name\": \"t\", \"Schema\": \"public\"}}]",
         "MERGE"},
        {"[{\"Plan\": {\"Node Type\": \"ModifyTable\", \"Operation\": \"Insert\", "
         "\"Relation Name\": \"t\", \"Schema\": \"public\", \"Conflict Resolution\": "
         "\"UPDATE\"}}]",
         "ON CONFLICT"},
    };
    char why[256];
    explain_calls *c;

    (void)state;
    for (size_t i = 0; i < COUNT(unseen); i++) {
        assert_null(explain_calls_read(unseen[i][0], why, sizeof why));
        assert_non_null(strstr(why, unseen[i][1]));
    }
    c = read_plan("\"Node Type\": \"ModifyTable\", \"Operation\": \"Insert\", \"Relation "
                  "Name\": \"t\", \"Schema\": \"public\", \"Conflict Resolution\": \"NOTHING\"");
    expect_name(c, EXPLAIN_CALL_TARGET, "public", "t");
    explain_calls_free(c);
}

/* What the statement's text names where its plan does not print it. */
static void test_statement_names(void **state)
{
    explain_calls *c;

    (void)state;
    c = read_plan("\"Node Type\": \"Result\"");
    assert_true(explain_calls_add_statement(
        c, "SELECT * FROM (VALUES (audit.kill())) v(x), app.report r "
           "WHERE x ==== ANY (SELECT y FROM w) AND x IN (SELECT 1) AND x BETWEEN 1 AND 2 "
           "AND 'x'::app.mood IS DISTINCT FROM $1 ORDER BY x USING <<< "
           "LIMIT lim() OFFSET off()"));
    expect_name(c, EXPLAIN_CALL_FUNCTION, "audit", "kill");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "lim");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "off");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "====");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "=");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "<=");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "", "<<<");
    expect_name(c, EXPLAIN_CALL_TYPE, "app", "mood");
    expect_name(c, EXPLAIN_CALL_RELATION, "app", "report");
    expect_name(c, EXPLAIN_CALL_RELATION, "", "w");
    assert_false(explain_calls_add_statement(c, "SELECT (((("));
    assert_false(explain_calls_add_statement(NULL, "SELECT 1"));
    explain_calls_free(c);
    c = read_plan("\"Node Type\": \"Result\"");
    assert_true(explain_calls_add_statement(
        c, "SELECT sum(a) OVER (ROWS BETWEEN frame() PRECEDING AND CURRENT ROW) FROM t "
           "WHERE a OPERATOR(s.===) 1"));
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "frame");
    expect_name(c, EXPLAIN_CALL_FUNCTION, "", "sum");
    expect_name(c, EXPLAIN_CALL_OPERATOR, "s", "===");
    explain_calls_free(c);
}

/* The catalog query's values: text[] literals nothing in a name can break out of. */
static void test_plan_params(void **state)
{
    char *values[EXPLAIN_CALLS_PARAMS];
    explain_calls *c;

    (void)state;
    c = read_plan("\"Output\": [\"\\\"a\\\"\\\"b\\\\c\\\"(1)\", \"s.f(2)\"]");
    assert_true(explain_calls_params(c, values));
    assert_string_equal(values[0], "{\"\",\"s\"}");
    assert_string_equal(values[1], "{\"a\\\"b\\\\c\",\"f\"}");
    assert_string_equal(values[2], "{}");
    for (int i = 0; i < EXPLAIN_CALLS_PARAMS; i++)
        free(values[i]);
    explain_calls_free(c);
    assert_false(explain_calls_params(NULL, values));
    assert_non_null(strstr(explain_calls_sql, "$12"));
    assert_null(strstr(explain_calls_sql, "$13"));
}

static char *quote_for_test(void *arg, const char *value)
{
    size_t n = strlen(value) + 3;
    char *q = malloc(n);

    (*(int *)arg)++;
    if (q != NULL)
        snprintf(q, n, "'%s'", value);
    return q;
}

/* The script sent: jit off around the query, every $n replaced by its quoted value. */
static void test_plan_script(void **state)
{
    char *values[EXPLAIN_CALLS_PARAMS], *sql;
    explain_calls *c;
    int quoted = 0;

    (void)state;
    c = read_plan("\"Output\": [\"f(1)\"]");
    assert_true(explain_calls_params(c, values));
    sql = explain_calls_script(values, quote_for_test, free, &quoted);
    assert_non_null(sql);
    assert_int_equal(quoted, EXPLAIN_CALLS_PARAMS);
    assert_true(strncmp(sql, "SET LOCAL jit = off;", 20) == 0);
    assert_non_null(
        strstr(sql, "unnest('{\"\"}'::pg_catalog.text[]), pg_catalog.unnest('{\"f\"}'"));
    assert_non_null(strstr(sql, "'{}'::pg_catalog.text[]"));
    assert_null(strchr(sql, '$'));
    assert_non_null(strstr(sql, "SET LOCAL jit TO DEFAULT"));
    free(sql);
    free(values[3]);
    values[3] = NULL; /* a value that cannot be had: no script */
    assert_null(explain_calls_script(values, quote_for_test, free, &quoted));
    for (int i = 0; i < EXPLAIN_CALLS_PARAMS; i++)
        free(values[i]);
    explain_calls_free(c);
}

static explain_called builtin(const char *name, char volatility)
{
    explain_called f = {.schema = "pg_catalog",
                        .name = name,
                        .via = "called by name",
                        .volatility = volatility,
                        .kind = 'f',
                        .nargs = 1,
                        .builtin = true};
    return f;
}

static explain_called user(const char *schema, const char *name)
{
    explain_called f = {.schema = schema,
                        .name = name,
                        .via = "called by name",
                        .volatility = 'v',
                        .kind = 'f',
                        .nargs = 0};
    return f;
}

static void expect_call(const explain_called *f, const char *allow, bool read_write, bool ok,
                        const char *reason)
{
    char why[256] = "";
    explain_allow *a = explain_allow_parse(allow);
    bool got;

    assert_non_null(a);
    got = explain_call_allowed(f, a, read_write, why, sizeof why);
    explain_allow_free(a);
    if (got != ok)
        fail_msg("%s.%s(): expected %s, got %s (%s)", f->schema, f->name,
                 ok ? "allowed" : "refused", got ? "allowed" : "refused", why);
    if (!ok && (reason == NULL || strstr(why, reason) == NULL))
        fail_msg("%s.%s(): the reason \"%s\" lacks \"%s\"", f->schema, f->name, why,
                 reason ? reason : "(null)");
}

/* Only what is known to act on nothing runs: stable and immutable built-ins, a few volatile
 * readers, and what the user vouches for; never a name on the deny list. */
static void test_call_verdicts(void **state)
{
    explain_called f;

    (void)state;
    f = builtin("lower", 'i');
    expect_call(&f, "", false, true, NULL);
    f = builtin("now", 's');
    expect_call(&f, "", false, true, NULL);
    f = builtin("random", 'v');
    expect_call(&f, "", false, true, NULL);
    f = builtin("pg_stat_get_numscans", 'v');
    expect_call(&f, "", false, true, NULL);
    f = builtin("setseed", 'v');
    expect_call(&f, "", false, false, "volatile built-in");
    f = builtin("pg_terminate_backend", 'v');
    expect_call(&f, "pg_terminate_backend", false, false, "signals another backend");
    f = builtin("pg_advisory_lock", 'v');
    expect_call(&f, "", false, false, "lock");
    f = builtin("txid_current", 's'); /* stable, but on the deny list */
    expect_call(&f, "", false, false, "transaction id");
    f = builtin("nextval", 'v');
    f.via = "in a default of table ins";
    expect_call(&f, "", true, false, "in a default of table ins");
    /* FOREIGN KEY triggers run in the transaction the rollback undoes */
    f = builtin("RI_FKey_check_ins", 'v');
    f.trigger = true;
    expect_call(&f, "", true, true, NULL);
    expect_call(&f, "", false, false, "volatile");
    /* the user's own */
    f = user("public", "report_and_cleanup");
    expect_call(&f, "", false, false, "not built in");
    expect_call(&f, "report_and_cleanup", false, true, NULL);
    expect_call(&f, " other , public.report_and_cleanup ", false, true, NULL);
    expect_call(&f, "public.*", false, true, NULL);
    expect_call(&f, "other.report_and_cleanup, other.*", false, false, "not built in");
    expect_call(&f, "Report_And_Cleanup", false, false, "not built in");
    f = user("public", "dblink_exec_cached");
    expect_call(&f, "public.*", false, false, "another connection");
    f = user("public", "my_agg");
    f.kind = 'a'; /* its support functions are looked up and judged on their own */
    expect_call(&f, "", false, true, NULL);
    /* LANGUAGE internal: judged by the server function it runs */
    f = user("public", "harmless_name");
    f.internal = true;
    f.src = "pg_terminate_backend";
    expect_call(&f, "harmless_name", false, false, "signals");
    f.src = "textin";
    f.volatility = 'i';
    expect_call(&f, "", false, true, NULL);
}

static void test_allow_list(void **state)
{
    explain_allow *a;

    (void)state;
    a = explain_allow_parse(" a, public.b ,, s.* ,");
    assert_int_equal(explain_allow_count(a), 3);
    explain_allow_free(a);
    a = explain_allow_parse(NULL);
    assert_int_equal(explain_allow_count(a), 0);
    explain_allow_free(a);
    explain_allow_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_selects_allowed),
        cmocka_unit_test(test_parameters_allowed),
        cmocka_unit_test(test_harmless_functions_allowed),
        cmocka_unit_test(test_locking_clauses_refused),
        cmocka_unit_test(test_writable_ctes_refused),
        cmocka_unit_test(test_denied_functions_planned_only),
        cmocka_unit_test(test_denied_call_found_anywhere),
        cmocka_unit_test(test_select_into_refused),
        cmocka_unit_test(test_dml),
        cmocka_unit_test(test_statement_count),
        cmocka_unit_test(test_utility_statements_refused),
        cmocka_unit_test(test_text_that_does_not_parse),
        cmocka_unit_test(test_large_statements),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_fuzz_random_bytes),
        cmocka_unit_test(test_fuzz_sql_pieces),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_search_path_changes),
        cmocka_unit_test(test_temp_relations_followed),
        cmocka_unit_test(test_temp_relations_used),
        cmocka_unit_test(test_login_refused),
        cmocka_unit_test(test_plan_functions),
        cmocka_unit_test(test_plan_operators),
        cmocka_unit_test(test_plan_nodes),
        cmocka_unit_test(test_plan_unreadable),
        cmocka_unit_test(test_plan_unseen_actions),
        cmocka_unit_test(test_statement_names),
        cmocka_unit_test(test_plan_params),
        cmocka_unit_test(test_plan_script),
        cmocka_unit_test(test_call_verdicts),
        cmocka_unit_test(test_allow_list),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
