/* store.c — the report database: creation and migration, and the writer thread that applies
 * each batch in one transaction and counts what a failed write lost. */
#include "config.h"

#include "pgscope/clock.h"
#include "pgscope/store.h"
#include "pgscope/thread.h"

#include "pgscope/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* sql/schema.sql, compiled in by the Makefile (src/store/schema_sql.c). */
extern const char store_schema_sql[];

/* Long enough to ride out a reader's checkpoint or a sqlite3 shell's short write; short enough
 * that a batch held up by a lock is counted as lost instead of piling up behind it. */
#define STORE_BUSY_MS 1000
/* The last batch is all that is left to save at a clean stop: worth a longer wait. */
#define STORE_FINAL_BUSY_MS 5000

/* Version 2: N+1 and duplicate-query findings, and the allow-list entries a run never used. The
 * new table and view are sql/schema.sql's text, character for character, so that a migrated
 * file and a new one have the same schema (tests/unit/test_store.c compares the two). */
static const char migrate_v2[] =
    "ALTER TABLE runs ADD COLUMN unused_ignores TEXT;\n"
    "CREATE TABLE n_plus_one (\n"
    "    run_id             INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    kind               TEXT NOT NULL,          -- 'n_plus_one' or 'duplicate'\n"
    "    parent_fingerprint TEXT NOT NULL,          -- '' for a duplicate\n"
    "    parent_query       TEXT,                   -- normalized; NULL for a duplicate\n"
    "    child_fingerprints TEXT NOT NULL,          -- the loop body's statements, 'fp1,fp2'\n"
    "    child_queries      TEXT NOT NULL,          -- JSON array of their normalized texts\n"
    "    confirmed          INTEGER NOT NULL DEFAULT 0, -- 1: values linked to a parent column\n"
    "    linked_column      TEXT NOT NULL DEFAULT '', -- that column, 'orders.customer_id'\n"
    "    occurrences        INTEGER NOT NULL,       -- units of work it was seen in\n"
    "    max_n              INTEGER NOT NULL,       -- most executions of the child in one unit\n"
    "    total_n            INTEGER NOT NULL,       -- executions of the child, all units\n"
    "    total_ms           REAL NOT NULL,          -- time spent in the children\n"
    "    saving_ms          REAL NOT NULL,          -- estimated time a batched query saves\n"
    "    examples           TEXT NOT NULL DEFAULT '[]', -- JSON array of parameter tuples\n"
    "    severity           TEXT NOT NULL,          -- 'high', 'medium' or 'low'\n"
    "    suggestion         TEXT,                   -- the fix, written out\n"
    "    first_seen         TEXT,\n"
    "    last_seen          TEXT,\n"
    "    PRIMARY KEY (run_id, kind, parent_fingerprint, child_fingerprints)\n"
    ");\n"
    "CREATE VIEW n_plus_one_findings AS\n"
    "SELECT n.run_id,\n"
    "       r.label AS run_label,\n"
    "       n.kind,\n"
    "       n.severity,\n"
    "       n.confirmed,\n"
    "       n.parent_query,\n"
    "       CASE WHEN json_valid(n.child_queries) THEN json_extract(n.child_queries, '$[0]') END\n"
    "           AS child_query,\n"
    "       n.linked_column,\n"
    "       n.occurrences,\n"
    "       n.max_n,\n"
    "       n.total_n,\n"
    "       n.total_ms,\n"
    "       n.saving_ms,\n"
    "       n.suggestion,\n"
    "       n.examples,\n"
    "       n.parent_fingerprint,\n"
    "       n.child_fingerprints,\n"
    "       n.child_queries,\n"
    "       n.first_seen,\n"
    "       n.last_seen\n"
    "FROM n_plus_one n\n"
    "JOIN runs r ON r.id = n.run_id\n"
    "ORDER BY n.run_id,\n"
    "         CASE n.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2\n"
    "              ELSE 3 END,\n"
    "         n.saving_ms DESC;\n";

/* Version 3: sampled EXPLAIN plans, their findings, and what became of each slow statement.
 * Same rule as above: sql/schema.sql's text, character for character. */
static const char migrate_v3[] =
    "CREATE TABLE plans (\n"
    "    id           INTEGER PRIMARY KEY,\n"
    "    run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    seq          INTEGER NOT NULL,        -- the plan's number within its run\n"
    "    fingerprint  TEXT NOT NULL,\n"
    "    database     TEXT NOT NULL,\n"
    "    user_name    TEXT NOT NULL,\n"
    "    query        TEXT NOT NULL,           -- normalized text of the statement\n"
    "    params       TEXT,                    -- JSON array of the values bound; NULL unless "
    "store_params\n"
    "    analyzed     INTEGER NOT NULL,        -- 1: EXPLAIN ANALYZE ran it; 0: planned only "
    "(DML)\n"
    "    trigger_ms   REAL NOT NULL,           -- duration of the execution that was sampled\n"
    "    planning_ms  REAL,                    -- from the plan; NULL when it has none\n"
    "    execution_ms REAL,                    -- from the plan; NULL without ANALYZE\n"
    "    side_ms      REAL NOT NULL,           -- time the side connection spent on it\n"
    "    plan         TEXT NOT NULL,           -- EXPLAIN (FORMAT JSON) output\n"
    "    taken_at     TEXT NOT NULL,\n"
    "    UNIQUE (run_id, seq)\n"
    ");\n"
    "CREATE INDEX plans_by_shape ON plans (run_id, fingerprint);\n"
    "CREATE TABLE plan_findings (\n"
    "    plan_id     INTEGER NOT NULL REFERENCES plans (id) ON DELETE CASCADE,\n"
    "    n           INTEGER NOT NULL,         -- its order within the plan\n"
    "    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    fingerprint TEXT NOT NULL,            -- the plan's statement\n"
    "    kind        TEXT NOT NULL,            -- 'seq_scan_filter', 'misestimate', 'sort_spill',\n"
    "                                          -- 'hash_batches', 'nested_loop_inner_scan',\n"
    "                                          -- 'lossy_bitmap', 'heap_fetches', 'temp_written'\n"
    "    node_path   TEXT NOT NULL,            -- 'Limit > Sort > Seq Scan on orders'\n"
    "    relation    TEXT NOT NULL DEFAULT '', -- the table involved, if any\n"
    "    detail      TEXT NOT NULL,            -- the numbers, for people\n"
    "    magnitude   REAL NOT NULL,            -- rows removed, estimate factor, KB, batches, "
    "loops...\n"
    "    PRIMARY KEY (plan_id, n)\n"
    ");\n"
    "CREATE INDEX plan_findings_by_shape ON plan_findings (run_id, fingerprint);\n"
    "CREATE TABLE explain_skips (\n"
    "    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    reason TEXT NOT NULL,\n"
    "    count  INTEGER NOT NULL,\n"
    "    PRIMARY KEY (run_id, reason)\n"
    ");\n"
    "CREATE VIEW plan_findings_ranked AS\n"
    "SELECT f.run_id,\n"
    "       r.label AS run_label,\n"
    "       coalesce(w.weight_ms, 0) AS weight_ms,\n"
    "       f.kind,\n"
    "       f.relation,\n"
    "       f.detail,\n"
    "       f.magnitude,\n"
    "       f.node_path,\n"
    "       f.fingerprint,\n"
    "       p.query,\n"
    "       f.plan_id,\n"
    "       p.analyzed,\n"
    "       w.calls,\n"
    "       w.mean_ms\n"
    "FROM plan_findings f\n"
    "JOIN plans p ON p.id = f.plan_id\n"
    "JOIN runs r ON r.id = f.run_id\n"
    "LEFT JOIN (SELECT run_id, fingerprint, total(total_ms) AS weight_ms, sum(calls) AS calls,\n"
    "                  total(total_ms) / NULLIF(sum(calls), 0) AS mean_ms\n"
    "           FROM statements GROUP BY run_id, fingerprint) w\n"
    "       ON w.run_id = f.run_id AND w.fingerprint = f.fingerprint\n"
    "ORDER BY f.run_id, weight_ms DESC, f.magnitude DESC;\n";

/* Version 4: index suggestions. Same rule: sql/schema.sql's text, character for character. */
static const char migrate_v4[] =
    "CREATE TABLE index_suggestions (\n"
    "    run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    rank             INTEGER NOT NULL,           -- 1 first\n"
    "    database         TEXT NOT NULL,\n"
    "    ddl              TEXT NOT NULL,              -- CREATE INDEX CONCURRENTLY ...\n"
    "    schema_name      TEXT NOT NULL DEFAULT '',   -- '' when the statements did not qualify "
    "it\n"
    "    table_name       TEXT NOT NULL,\n"
    "    columns          TEXT NOT NULL,              -- JSON array, in index order\n"
    "    predicate        TEXT NOT NULL DEFAULT '',   -- a partial index's WHERE; '' for none\n"
    "    verified         INTEGER NOT NULL,\n"
    "    cost_before      REAL,                       -- planner cost of the statements it helps;\n"
    "    cost_after       REAL,                       -- NULL when unverified\n"
    "    benefit_ms       REAL,                       -- their time x cost reduction; NULL "
    "unverified\n"
    "    size_bytes       REAL,                       -- hypopg's estimate; NULL unknown\n"
    "    statements       TEXT NOT NULL,              -- JSON array of the fingerprints it helps\n"
    "    write_statements INTEGER NOT NULL DEFAULT 0, -- INSERT/UPDATE/DELETE seen on the table\n"
    "    breaks_hot       INTEGER NOT NULL DEFAULT 0, -- 1: UPDATEs set one of its columns\n"
    "    misestimate      INTEGER NOT NULL DEFAULT 0, -- 1: a plan's row estimate was 10x off\n"
    "    PRIMARY KEY (run_id, rank)\n"
    ");\n";

/* Version 5: the cap on statement shapes, and what it folded into the reserved "other" row. */
static const char migrate_v5[] =
    "ALTER TABLE runs ADD COLUMN max_shapes INTEGER;\n"
    "ALTER TABLE runs ADD COLUMN folded_shapes INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE runs ADD COLUMN folded_calls INTEGER NOT NULL DEFAULT 0;\n";

/* Version 6: why the EXPLAIN side connection could not log in. */
static const char migrate_v6[] = "ALTER TABLE runs ADD COLUMN explain_login_error TEXT;\n";

/* Version 7: the chance that an N+1 proof is a coincidence, and the ORM the SQL shows. */
static const char migrate_v7[] =
    "ALTER TABLE n_plus_one ADD COLUMN chance REAL;\n"
    "ALTER TABLE n_plus_one ADD COLUMN orm TEXT NOT NULL DEFAULT '';\n";

/* Version 9: statements per test. The table is sql/schema.sql's text, character for character. */
static const char migrate_v9[] =
    "CREATE TABLE test_statements (\n"
    "    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    test        TEXT NOT NULL,\n"
    "    fingerprint TEXT NOT NULL,\n"
    "    calls       INTEGER NOT NULL,\n"
    "    total_ms    REAL NOT NULL,\n"
    "    PRIMARY KEY (run_id, test, fingerprint)\n"
    ");\n";

/* Version 8: the test a finding was seen in. */
static const char migrate_v8[] =
    "ALTER TABLE n_plus_one ADD COLUMN test TEXT NOT NULL DEFAULT '';\n";

/* Version 10: the test a sampled plan's execution ran in. */
static const char migrate_v10[] = "ALTER TABLE plans ADD COLUMN test TEXT NOT NULL DEFAULT '';\n";

/* Step i takes a file from version migrations[i].version - 1 to migrations[i].version. Version 1
 * is the base, created from sql/schema.sql. To change the schema: edit sql/schema.sql (which
 * always describes the newest version), add a step here and bump STORE_SCHEMA_VERSION. */
static const struct migration {
    int version;
    const char *sql;
} migrations[] = {
    {1, NULL},       {2, migrate_v2}, {3, migrate_v3}, {4, migrate_v4}, {5, migrate_v5},
    {6, migrate_v6}, {7, migrate_v7}, {8, migrate_v8}, {9, migrate_v9}, {10, migrate_v10},
};

enum {
    Q_STATEMENT_CLEAR,
    Q_ERROR_CLEAR,
    Q_STATEMENT_DELETE,
    Q_ERROR_DELETE,
    Q_STATEMENT,
    Q_ERROR,
    Q_TAG,
    Q_TEST,
    Q_CONNECTION,
    Q_NPLUSONE,
    Q_PLAN,
    Q_PLAN_FINDING,
    Q_SKIP,
    Q_INDEX_CLEAR,
    Q_INDEX,
    Q_RUN,
    Q_ENDED,
    Q_COUNT
};

/* The prepared statements of the writer, one per kind of row. Upserts, because a batch carries
 * cumulative figures that replace the earlier row of the same key. */
static const char *const queries[Q_COUNT] = {
    /* A batch with every statement row replaces the run's; a folded shape's row goes. */
    [Q_STATEMENT_CLEAR] = "DELETE FROM statements WHERE run_id = ?1",
    [Q_ERROR_CLEAR] = "DELETE FROM statement_errors WHERE run_id = ?1",
    [Q_STATEMENT_DELETE] = "DELETE FROM statements WHERE run_id = ?1 AND fingerprint = ?2 "
                           "AND database = ?3 AND user_name = ?4",
    [Q_ERROR_DELETE] = "DELETE FROM statement_errors WHERE run_id = ?1 AND fingerprint = ?2 "
                       "AND database = ?3 AND user_name = ?4",
    [Q_STATEMENT] =
        "INSERT INTO statements (run_id, fingerprint, database, user_name, query, command, "
        "fallback, calls, errors, rows, total_ms, min_ms, max_ms, mean_ms, stddev_ms, p50_ms, "
        "p95_ms, p99_ms, histogram, first_seen, last_seen, example_query, example_params) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
        "?18, ?19, ?20, ?21, ?22, ?23) "
        "ON CONFLICT (run_id, fingerprint, database, user_name) DO UPDATE SET "
        "query = excluded.query, command = excluded.command, fallback = excluded.fallback, "
        "calls = excluded.calls, errors = excluded.errors, rows = excluded.rows, "
        "total_ms = excluded.total_ms, min_ms = excluded.min_ms, max_ms = excluded.max_ms, "
        "mean_ms = excluded.mean_ms, stddev_ms = excluded.stddev_ms, p50_ms = excluded.p50_ms, "
        "p95_ms = excluded.p95_ms, p99_ms = excluded.p99_ms, histogram = excluded.histogram, "
        "first_seen = excluded.first_seen, last_seen = excluded.last_seen, "
        "example_query = excluded.example_query, example_params = excluded.example_params",
    [Q_ERROR] = "INSERT INTO statement_errors (run_id, fingerprint, database, user_name, sqlstate, "
                "count) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                "ON CONFLICT (run_id, fingerprint, database, user_name, sqlstate) "
                "DO UPDATE SET count = excluded.count",
    [Q_TEST] = "INSERT INTO test_statements (run_id, fingerprint, test, calls, total_ms) "
               "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (run_id, test, fingerprint) "
               "DO UPDATE SET calls = excluded.calls, total_ms = excluded.total_ms",
    [Q_TAG] = "INSERT INTO statement_tags (run_id, fingerprint, tags, calls, total_ms) "
              "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (run_id, fingerprint, tags) "
              "DO UPDATE SET calls = excluded.calls, total_ms = excluded.total_ms",
    [Q_CONNECTION] =
        "INSERT INTO connections (run_id, conn_id, client_addr, user_name, database, "
        "application_name, started_at, ended_at, bytes_from_client, bytes_from_server, "
        "statements) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
        "ON CONFLICT (run_id, conn_id) DO UPDATE SET client_addr = excluded.client_addr, "
        "user_name = excluded.user_name, database = excluded.database, "
        "application_name = excluded.application_name, started_at = excluded.started_at, "
        "ended_at = excluded.ended_at, bytes_from_client = excluded.bytes_from_client, "
        "bytes_from_server = excluded.bytes_from_server, statements = excluded.statements",
    [Q_NPLUSONE] =
        "INSERT INTO n_plus_one (run_id, kind, parent_fingerprint, parent_query, "
        "child_fingerprints, child_queries, confirmed, linked_column, occurrences, max_n, "
        "total_n, total_ms, saving_ms, examples, severity, suggestion, first_seen, last_seen, "
        "chance, orm, test) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
        "?19, ?20, ?21) "
        "ON CONFLICT (run_id, kind, parent_fingerprint, child_fingerprints) DO UPDATE SET "
        "parent_query = excluded.parent_query, child_queries = excluded.child_queries, "
        "confirmed = excluded.confirmed, linked_column = excluded.linked_column, "
        "occurrences = excluded.occurrences, max_n = excluded.max_n, total_n = excluded.total_n, "
        "total_ms = excluded.total_ms, saving_ms = excluded.saving_ms, "
        "examples = excluded.examples, severity = excluded.severity, "
        "suggestion = excluded.suggestion, first_seen = excluded.first_seen, "
        "last_seen = excluded.last_seen, chance = excluded.chance, orm = excluded.orm, "
        "test = excluded.test",
    /* A plan is written once; DO NOTHING leaves changes() at 0 for one already there. */
    [Q_PLAN] = "INSERT INTO plans (run_id, seq, fingerprint, database, user_name, query, params, "
               "analyzed, trigger_ms, planning_ms, execution_ms, side_ms, plan, taken_at, test) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
               "ON CONFLICT (run_id, seq) DO NOTHING",
    [Q_PLAN_FINDING] = "INSERT INTO plan_findings (plan_id, n, run_id, fingerprint, kind, "
                       "node_path, relation, detail, magnitude) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [Q_SKIP] = "INSERT INTO explain_skips (run_id, reason, count) VALUES (?1, ?2, ?3) "
               "ON CONFLICT (run_id, reason) DO UPDATE SET count = excluded.count",
    /* Suggestions are the latest consolidation as a whole: cleared, then written again. */
    [Q_INDEX_CLEAR] = "DELETE FROM index_suggestions WHERE run_id = ?1",
    [Q_INDEX] = "INSERT INTO index_suggestions (run_id, rank, database, ddl, schema_name, "
                "table_name, columns, predicate, verified, cost_before, cost_after, benefit_ms, "
                "size_bytes, statements, write_statements, breaks_hot, misestimate) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                "?17)",
    /* unused_ignores only when the batch carries it: a batch without it keeps the last list. */
    [Q_RUN] = "UPDATE runs SET ended_at = coalesce(?2, ended_at), connections = ?3, "
              "statements = ?4, events_dropped = ?5, fingerprint_fallbacks = ?6, "
              "fingerprint_parses = ?7, fingerprint_hits = ?8, track_desyncs = ?9, "
              "lost_writes = ?10, unused_ignores = coalesce(?11, unused_ignores), "
              "max_shapes = ?12, folded_shapes = ?13, folded_calls = ?14, "
              "explain_login_error = coalesce(?15, explain_login_error) WHERE id = ?1",
    [Q_ENDED] = "UPDATE runs SET ended_at = coalesce(ended_at, ?2), lost_writes = ?3 WHERE id = ?1",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    int64_t run_id; /* 0 until store_begin_run */

    pthread_mutex_t mu; /* guards the hand-over fields below */
    pthread_cond_t cv;
    store_batch *pending; /* handed over, not yet taken by the writer */
    bool writing;         /* the writer is applying a batch */
    bool stopping;
    bool started;
    pthread_t thread;

    _Atomic uint64_t lost;
    /* lost_writes as the file has it since the last commit, and as the batch being written
     * sets it: what the log at the end can say the file holds. Used by the writer, then by
     * store_close after the join. */
    uint64_t lost_recorded, lost_writing;
    bool discard; /* guarded by mu: the process never served, the run is to be removed */

    /* The current streak of failed writes, so that a full disk logs one line, not hundreds.
     * Used by one thread at a time: the writer, then store_close after the join. */
    unsigned failed_batches;
    int last_failure;
};

/* ---------------------------------------------------------------- batches */

static void free_statement_row(store_statement_row *r)
{
    free(r->database);
    free(r->user);
    free(r->query);
    free(r->command);
    free(r->histogram);
    free(r->example_query);
    free(r->example_params);
}

static void free_connection_row(store_connection_row *r)
{
    free(r->client_addr);
    free(r->user);
    free(r->database);
    free(r->application_name);
}

static void free_nplusone_row(store_nplusone_row *r)
{
    free(r->parent_query);
    free(r->child_queries);
    free(r->linked_column);
    free(r->examples);
    free(r->suggestion);
    free(r->test);
}

static void free_index_row(store_index_row *r)
{
    free(r->database);
    free(r->ddl);
    free(r->schema);
    free(r->table);
    free(r->columns);
    free(r->predicate);
    free(r->statements);
}

void store_plan_row_free(store_plan_row *r)
{
    free(r->database);
    free(r->user);
    free(r->query);
    free(r->params);
    free(r->plan);
    free(r->test);
    for (size_t i = 0; i < r->n_findings; i++) {
        free(r->findings[i].node_path);
        free(r->findings[i].relation);
        free(r->findings[i].detail);
    }
    free(r->findings);
}

void store_batch_free(store_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n_folded; i++) {
        free(b->folded[i].database);
        free(b->folded[i].user);
    }
    free(b->folded);
    for (size_t i = 0; i < b->n_statements; i++)
        free_statement_row(&b->statements[i]);
    for (size_t i = 0; i < b->n_connections; i++)
        free_connection_row(&b->connections[i]);
    for (size_t i = 0; i < b->n_tags; i++)
        free(b->tags[i].tags);
    for (size_t i = 0; i < b->n_tests; i++)
        free(b->tests[i].tags);
    free(b->tests);
    for (size_t i = 0; i < b->n_nplusone; i++)
        free_nplusone_row(&b->nplusone[i]);
    for (size_t i = 0; i < b->n_plans; i++)
        store_plan_row_free(&b->plans[i]);
    free(b->plans);
    for (size_t i = 0; i < b->n_indexes; i++)
        free_index_row(&b->indexes[i]);
    free(b->indexes);
    free(b->statements);
    free(b->connections);
    free(b->tags);
    free(b->nplusone);
    free(b->unused_ignores);
    free(b);
}

/* Every row a batch would write, the run's own row included: what a failed write loses. */
static uint64_t batch_rows(const store_batch *b)
{
    uint64_t n = 1 + b->n_folded + b->n_statements + b->n_connections + b->n_tags + b->n_tests +
                 b->n_nplusone + b->n_plans + b->n_indexes + (uint64_t)b->run.n_explain;

    for (size_t i = 0; i < b->n_statements; i++)
        n += (uint64_t)(b->statements[i].n_errs > 0 ? b->statements[i].n_errs : 0);
    return n;
}

/* ---------------------------------------------------------------- binding values */

/* '2026-11-21 18:40:00.123' (UTC): sorts as text and is understood by SQLite's date functions. */
static bool format_time(int64_t us, char *out, size_t cap)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;

    if (us <= 0 || !gmtime_r(&sec, &tm))
        return false;
    size_t n = strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
    if (n == 0)
        return false;
    snprintf(out + n, cap - n, ".%03d", (int)(us % 1000000 / 1000));
    return true;
}

/* A time, or NULL for "not set" (0). */
static int bind_time(sqlite3_stmt *st, int i, int64_t us)
{
    char text[40];

    if (!format_time(us, text, sizeof(text)))
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Key columns are NOT NULL: SQLite would treat NULLs as distinct and never match an upsert. */
static int bind_key(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

static int bind_fixed(sqlite3_stmt *st, int i, const char *s, size_t max)
{
    return sqlite3_bind_text(st, i, s, (int)strnlen(s, max), SQLITE_STATIC);
}

/* SQLite integers are signed: a counter beyond INT64_MAX is pinned there, not wrapped. */
static int bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    return sqlite3_bind_int64(st, i, v > INT64_MAX ? INT64_MAX : (sqlite3_int64)v);
}

static int bind_real(sqlite3_stmt *st, int i, double v)
{
    return isfinite(v) ? sqlite3_bind_double(st, i, v) : sqlite3_bind_null(st, i);
}

/* Runs a bound statement to completion and makes it ready for the next row. */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* ---------------------------------------------------------------- writing a batch */

static int write_errors(store *s, const store_statement_row *r)
{
    sqlite3_stmt *st = s->q[Q_ERROR];

    for (int i = 0; i < r->n_errs && i < (int)(sizeof(r->errs) / sizeof(r->errs[0])); i++) {
        bool bad = false;
        bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
        bad |= bind_fixed(st, 2, r->fingerprint, 16) != SQLITE_OK;
        bad |= bind_key(st, 3, r->database) != SQLITE_OK;
        bad |= bind_key(st, 4, r->user) != SQLITE_OK;
        bad |= bind_fixed(st, 5, r->errs[i].sqlstate, 5) != SQLITE_OK;
        bad |= sqlite3_bind_int64(st, 6, r->errs[i].count) != SQLITE_OK;
        int rc = bad ? SQLITE_NOMEM : step_done(st);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int write_statement(store *s, const store_statement_row *r)
{
    sqlite3_stmt *st = s->q[Q_STATEMENT];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_fixed(st, 2, r->fingerprint, 16) != SQLITE_OK;
    bad |= bind_key(st, 3, r->database) != SQLITE_OK;
    bad |= bind_key(st, 4, r->user) != SQLITE_OK;
    bad |= bind_text(st, 5, r->query) != SQLITE_OK;
    bad |= bind_text(st, 6, r->command) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 7, r->fallback) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 8, r->calls) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 9, r->errors) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 10, r->rows) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 11, isfinite(r->total_ms) ? r->total_ms : 0) != SQLITE_OK;
    const double ms[] = {r->min_ms, r->max_ms, r->mean_ms, r->stddev_ms,
                         r->p50_ms, r->p95_ms, r->p99_ms};
    for (int i = 0; i < 7; i++)
        bad |= bind_real(st, 12 + i, ms[i]) != SQLITE_OK;
    if (r->histogram && r->histogram_len > 0 && r->histogram_len <= INT32_MAX)
        bad |= sqlite3_bind_blob(st, 19, r->histogram, (int)r->histogram_len, SQLITE_STATIC) !=
               SQLITE_OK;
    bad |= bind_time(st, 20, r->first_us) != SQLITE_OK;
    bad |= bind_time(st, 21, r->last_us) != SQLITE_OK;
    bad |= bind_text(st, 22, r->example_query) != SQLITE_OK;
    bad |= bind_text(st, 23, r->example_params) != SQLITE_OK;
    int rc = bad ? SQLITE_NOMEM : step_done(st);
    return rc == SQLITE_OK ? write_errors(s, r) : rc;
}

static int write_connection(store *s, const store_connection_row *r)
{
    sqlite3_stmt *st = s->q[Q_CONNECTION];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_u64(st, 2, r->conn_id) != SQLITE_OK;
    bad |= bind_text(st, 3, r->client_addr) != SQLITE_OK;
    bad |= bind_text(st, 4, r->user) != SQLITE_OK;
    bad |= bind_text(st, 5, r->database) != SQLITE_OK;
    bad |= bind_text(st, 6, r->application_name) != SQLITE_OK;
    /* started_at is NOT NULL: a row without a start time still gets one (the epoch). */
    bad |= (r->start_us > 0 ? bind_time(st, 7, r->start_us)
                            : sqlite3_bind_text(st, 7, "1970-01-01 00:00:00.000", -1,
                                                SQLITE_STATIC)) != SQLITE_OK;
    bad |= bind_time(st, 8, r->end_us) != SQLITE_OK;
    bad |= bind_u64(st, 9, r->bytes_from_client) != SQLITE_OK;
    bad |= bind_u64(st, 10, r->bytes_from_server) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 11, r->statements) != SQLITE_OK;
    return bad ? SQLITE_NOMEM : step_done(st);
}

/* A statement_tags row (q Q_TAG), or a test_statements row (Q_TEST: the test in r->tags). */
static int write_tag(store *s, int q, const store_tag_row *r)
{
    sqlite3_stmt *st = s->q[q];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_fixed(st, 2, r->fingerprint, 16) != SQLITE_OK;
    bad |= bind_key(st, 3, r->tags) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 4, r->calls) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 5, isfinite(r->total_ms) ? r->total_ms : 0) != SQLITE_OK;
    return bad ? SQLITE_NOMEM : step_done(st);
}

/* JSON columns are NOT NULL: a finding without texts or examples has an empty array. */
static int bind_json(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s && *s ? s : "[]", -1, SQLITE_STATIC);
}

static int write_nplusone(store *s, const store_nplusone_row *r)
{
    sqlite3_stmt *st = s->q[Q_NPLUSONE];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_fixed(st, 2, r->kind, sizeof(r->kind)) != SQLITE_OK;
    bad |= bind_fixed(st, 3, r->parent_fingerprint, sizeof(r->parent_fingerprint)) != SQLITE_OK;
    bad |= bind_text(st, 4, r->parent_query) != SQLITE_OK;
    bad |= bind_fixed(st, 5, r->child_fingerprints, sizeof(r->child_fingerprints)) != SQLITE_OK;
    bad |= bind_json(st, 6, r->child_queries) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 7, r->confirmed) != SQLITE_OK;
    bad |= bind_key(st, 8, r->linked_column) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 9, r->occurrences) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 10, r->max_n) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 11, r->total_n) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 12, isfinite(r->total_ms) ? r->total_ms : 0) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 13, isfinite(r->saving_ms) ? r->saving_ms : 0) != SQLITE_OK;
    bad |= bind_json(st, 14, r->examples) != SQLITE_OK;
    bad |= bind_fixed(st, 15, r->severity, sizeof(r->severity)) != SQLITE_OK;
    bad |= bind_text(st, 16, r->suggestion) != SQLITE_OK;
    bad |= bind_time(st, 17, r->first_us) != SQLITE_OK;
    bad |= bind_time(st, 18, r->last_us) != SQLITE_OK;
    bad |= (r->confirmed && isfinite(r->chance) ? sqlite3_bind_double(st, 19, r->chance)
                                                : sqlite3_bind_null(st, 19)) != SQLITE_OK;
    bad |= bind_fixed(st, 20, r->orm, sizeof(r->orm)) != SQLITE_OK;
    bad |= bind_text(st, 21, r->test ? r->test : "") != SQLITE_OK;
    return bad ? SQLITE_NOMEM : step_done(st);
}

/* A duration that may be absent (negative) or not a number: NULL. */
static int bind_ms_or_null(sqlite3_stmt *st, int i, double ms)
{
    return isfinite(ms) && ms >= 0 ? sqlite3_bind_double(st, i, ms) : sqlite3_bind_null(st, i);
}

static int write_plan_finding(store *s, int64_t plan_id, int n, const store_plan_row *p,
                              const store_plan_finding *f)
{
    sqlite3_stmt *st = s->q[Q_PLAN_FINDING];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, plan_id) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 2, n) != SQLITE_OK;
    bad |= sqlite3_bind_int64(st, 3, s->run_id) != SQLITE_OK;
    bad |= bind_fixed(st, 4, p->fingerprint, 16) != SQLITE_OK;
    bad |= bind_fixed(st, 5, f->kind, sizeof(f->kind)) != SQLITE_OK;
    bad |= bind_key(st, 6, f->node_path) != SQLITE_OK;
    bad |= bind_key(st, 7, f->relation) != SQLITE_OK;
    bad |= bind_key(st, 8, f->detail) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 9, isfinite(f->magnitude) ? f->magnitude : 0) != SQLITE_OK;
    return bad ? SQLITE_NOMEM : step_done(st);
}

static int write_plan(store *s, const store_plan_row *r)
{
    sqlite3_stmt *st = s->q[Q_PLAN];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_u64(st, 2, r->seq) != SQLITE_OK;
    bad |= bind_fixed(st, 3, r->fingerprint, 16) != SQLITE_OK;
    bad |= bind_key(st, 4, r->database) != SQLITE_OK;
    bad |= bind_key(st, 5, r->user) != SQLITE_OK;
    bad |= bind_key(st, 6, r->query) != SQLITE_OK;
    bad |= bind_text(st, 7, r->params) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 8, r->analyzed) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 9, isfinite(r->trigger_ms) ? r->trigger_ms : 0) != SQLITE_OK;
    bad |= bind_ms_or_null(st, 10, r->planning_ms) != SQLITE_OK;
    bad |= bind_ms_or_null(st, 11, r->execution_ms) != SQLITE_OK;
    bad |= sqlite3_bind_double(st, 12, isfinite(r->side_ms) ? r->side_ms : 0) != SQLITE_OK;
    bad |= bind_key(st, 13, r->plan) != SQLITE_OK;
    bad |= bind_time(st, 14, r->taken_us) != SQLITE_OK;
    bad |= bind_key(st, 15, r->test) != SQLITE_OK;
    int rc = bad ? SQLITE_NOMEM : step_done(st);
    if (rc != SQLITE_OK || sqlite3_changes(s->db) == 0)
        return rc; /* failed, or written by an earlier batch with its findings */
    int64_t id = sqlite3_last_insert_rowid(s->db);
    for (size_t i = 0; rc == SQLITE_OK && i < r->n_findings; i++)
        rc = write_plan_finding(s, id, (int)i + 1, r, &r->findings[i]);
    return rc;
}

static int write_index(store *s, int rank, const store_index_row *r)
{
    sqlite3_stmt *st = s->q[Q_INDEX];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 2, rank) != SQLITE_OK;
    bad |= bind_key(st, 3, r->database) != SQLITE_OK;
    bad |= bind_key(st, 4, r->ddl) != SQLITE_OK;
    bad |= bind_key(st, 5, r->schema) != SQLITE_OK;
    bad |= bind_key(st, 6, r->table) != SQLITE_OK;
    bad |= bind_json(st, 7, r->columns) != SQLITE_OK;
    bad |= bind_key(st, 8, r->predicate) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 9, r->verified) != SQLITE_OK;
    bad |= bind_ms_or_null(st, 10, r->cost_before) != SQLITE_OK;
    bad |= bind_ms_or_null(st, 11, r->cost_after) != SQLITE_OK;
    bad |= bind_ms_or_null(st, 12, r->benefit_ms) != SQLITE_OK;
    bad |= bind_ms_or_null(st, 13, r->size_bytes) != SQLITE_OK;
    bad |= bind_json(st, 14, r->statements) != SQLITE_OK;
    bad |= bind_u64(st, 15, r->write_statements) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 16, r->breaks_hot) != SQLITE_OK;
    bad |= sqlite3_bind_int(st, 17, r->misestimate) != SQLITE_OK;
    return bad ? SQLITE_NOMEM : step_done(st);
}

static int write_indexes(store *s, const store_batch *b)
{
    if (!b->indexes_set)
        return SQLITE_OK; /* no new consolidation: the last one stands */
    sqlite3_stmt *clear = s->q[Q_INDEX_CLEAR];
    int rc = sqlite3_bind_int64(clear, 1, s->run_id);
    if (rc == SQLITE_OK)
        rc = step_done(clear);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_indexes; i++)
        rc = write_index(s, (int)i + 1, &b->indexes[i]);
    return rc;
}

static int write_skips(store *s, const store_run_counters *c)
{
    int rc = SQLITE_OK;

    for (int i = 0; rc == SQLITE_OK && i < c->n_explain; i++) {
        sqlite3_stmt *st = s->q[Q_SKIP];
        bool bad = sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
        bad |= bind_fixed(st, 2, c->explain[i].reason, sizeof(c->explain[i].reason)) != SQLITE_OK;
        bad |= bind_u64(st, 3, c->explain[i].count) != SQLITE_OK;
        rc = bad ? SQLITE_NOMEM : step_done(st);
    }
    return rc;
}

static int write_run(store *s, const store_batch *b)
{
    const store_run_counters *c = &b->run;
    sqlite3_stmt *st = s->q[Q_RUN];
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_time(st, 2, c->ended_us) != SQLITE_OK;
    bad |= bind_u64(st, 3, c->connections) != SQLITE_OK;
    bad |= bind_u64(st, 4, c->statements) != SQLITE_OK;
    bad |= bind_u64(st, 5, c->events_dropped) != SQLITE_OK;
    bad |= bind_u64(st, 6, c->fingerprint_fallbacks) != SQLITE_OK;
    bad |= bind_u64(st, 7, c->fingerprint_parses) != SQLITE_OK;
    bad |= bind_u64(st, 8, c->fingerprint_hits) != SQLITE_OK;
    bad |= bind_u64(st, 9, c->track_desyncs) != SQLITE_OK;
    s->lost_writing = atomic_load(&s->lost);
    bad |= bind_u64(st, 10, s->lost_writing) != SQLITE_OK;
    bad |= bind_text(st, 11, b->unused_ignores) != SQLITE_OK;
    if (c->max_shapes > 0)
        bad |= bind_u64(st, 12, c->max_shapes) != SQLITE_OK;
    bad |= bind_u64(st, 13, c->folded_shapes) != SQLITE_OK;
    bad |= bind_u64(st, 14, c->folded_calls) != SQLITE_OK;
    if (c->explain_login_error[0] != '\0')
        bad |=
            bind_fixed(st, 15, c->explain_login_error, sizeof(c->explain_login_error)) != SQLITE_OK;
    return bad ? SQLITE_NOMEM : step_done(st);
}

/* Runs one of the DELETEs of statement rows: the run's (k NULL), or one shape's. */
static int delete_rows(store *s, int q, const store_statement_key *k)
{
    sqlite3_stmt *st = s->q[q];
    bool bad = sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;

    if (k != NULL) {
        bad |= bind_fixed(st, 2, k->fingerprint, 16) != SQLITE_OK;
        bad |= bind_key(st, 3, k->database) != SQLITE_OK;
        bad |= bind_key(st, 4, k->user) != SQLITE_OK;
    }
    return bad ? SQLITE_NOMEM : step_done(st);
}

static int clear_statements(store *s)
{
    int rc = delete_rows(s, Q_ERROR_CLEAR, NULL);

    return rc == SQLITE_OK ? delete_rows(s, Q_STATEMENT_CLEAR, NULL) : rc;
}

static int delete_statement(store *s, const store_statement_key *k)
{
    int rc = delete_rows(s, Q_ERROR_DELETE, k);

    return rc == SQLITE_OK ? delete_rows(s, Q_STATEMENT_DELETE, k) : rc;
}

/* Rows of shapes folded into "other" go before the rows are written (a folded shape that came
 * back has a new row in the same batch); a complete batch replaces every row of the run, which
 * also removes the rows of folds whose batch was lost. */
static int remove_statements(store *s, const store_batch *b)
{
    if (b->statements_complete)
        return clear_statements(s);
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_folded; i++)
        rc = delete_statement(s, &b->folded[i]);
    return rc;
}

static int write_rows(store *s, const store_batch *b)
{
    int rc = remove_statements(s, b);

    for (size_t i = 0; rc == SQLITE_OK && i < b->n_statements; i++)
        rc = write_statement(s, &b->statements[i]);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_connections; i++)
        rc = write_connection(s, &b->connections[i]);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_tags; i++)
        rc = write_tag(s, Q_TAG, &b->tags[i]);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_tests; i++)
        rc = write_tag(s, Q_TEST, &b->tests[i]);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_nplusone; i++)
        rc = write_nplusone(s, &b->nplusone[i]);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n_plans; i++)
        rc = write_plan(s, &b->plans[i]);
    if (rc == SQLITE_OK)
        rc = write_indexes(s, b);
    if (rc == SQLITE_OK)
        rc = write_skips(s, &b->run);
    return rc == SQLITE_OK ? write_run(s, b) : rc;
}

static void rollback(sqlite3 *db)
{
    /* Some errors (SQLITE_FULL, SQLITE_IOERR) already rolled the transaction back. */
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static void note_failure(store *s, const char *what, int rc, const char *msg, uint64_t rows)
{
    uint64_t total = atomic_fetch_add(&s->lost, rows) + rows;

    /* One line when a streak of failures starts or its cause changes: a full disk must not
     * flood the log every few hundred milliseconds. */
    if (s->failed_batches++ == 0 || rc != s->last_failure)
        log_warning(NULL,
                    "report database: %s failed (%s): %" PRIu64 " rows not written, %" PRIu64
                    " lost so far; traffic is not affected",
                    what, msg, rows, total);
    s->last_failure = rc;
}

static void note_success(store *s)
{
    if (s->failed_batches > 0)
        log_info(NULL, "report database: writing again after %u failed batches", s->failed_batches);
    s->failed_batches = 0;
    s->last_failure = SQLITE_OK;
}

/* Applies one batch in one transaction: all of it or, counted as lost, none of it. */
static bool write_batch(store *s, const store_batch *b, const char *what)
{
    char msg[256];
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    if (rc == SQLITE_OK)
        rc = s->run_id > 0 ? write_rows(s, b) : SQLITE_MISUSE;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        s->lost_recorded = s->lost_writing;
        note_success(s);
        return true;
    }
    snprintf(msg, sizeof(msg), "%s", s->run_id > 0 ? sqlite3_errmsg(s->db) : "no run begun");
    rollback(s->db);
    note_failure(s, what, rc, msg, batch_rows(b));
    return false;
}

/* ---------------------------------------------------------------- the writer thread */

static void *writer_main(void *arg)
{
    store *s = arg;

    thread_background();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        store_batch *b = s->pending;
        if (!b)
            break; /* stopping, and nothing left to write */
        s->pending = NULL;
        s->writing = true;
        pthread_mutex_unlock(&s->mu);
        write_batch(s, b, "batch write");
        store_batch_free(b);
        pthread_mutex_lock(&s->mu);
        s->writing = false;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

bool store_start(store *s)
{
    sigset_t all, old;

    if (!s || s->started)
        return false;
    /* Signals (SIGTERM, SIGHUP) belong to the event loop's thread, never to the writer. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error(NULL, "report database: cannot start the writer thread: %s", strerror(rc));
        return false;
    }
    s->started = true;
    return true;
}

bool store_submit(store *s, store_batch *b)
{
    bool taken = false;

    if (!s || !b)
        return false;
    pthread_mutex_lock(&s->mu);
    if (s->started && !s->stopping && !s->pending && !s->writing) {
        s->pending = b;
        taken = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return taken;
}

uint64_t store_lost_writes(const store *s)
{
    return s ? atomic_load(&s->lost) : 0;
}

/* The run's end time and final count of lost rows alone: one row, which often still fits where
 * a whole batch did not (a full disk). On failure the reason is left in why. */
static bool mark_ended(store *s, int64_t ended_us, char *why, size_t whylen)
{
    sqlite3_stmt *st = s->q[Q_ENDED];
    uint64_t lost = atomic_load(&s->lost);
    bool bad = false;

    bad |= sqlite3_bind_int64(st, 1, s->run_id) != SQLITE_OK;
    bad |= bind_time(st, 2, ended_us > 0 ? ended_us : clock_wall_us()) != SQLITE_OK;
    bad |= bind_u64(st, 3, lost) != SQLITE_OK;
    int rc = bad ? SQLITE_NOMEM : step_done(st);
    if (rc != SQLITE_OK) {
        snprintf(why, whylen, "%s", sqlite3_errmsg(s->db));
        return false;
    }
    s->lost_recorded = lost;
    return true;
}

/* The end of the run goes last, so that no failure comes after the count the file keeps: the
 * last batch carries it, or, when that batch failed (its rows now counted too), an update of
 * the run's row alone. The log then states the count the file holds. */
static void record_end(store *s, store_batch *last)
{
    char why[256] = "";
    int64_t ended_us = clock_wall_us();
    bool ended = false;

    if (last) {
        if (last->run.ended_us <= 0)
            last->run.ended_us = ended_us; /* the run ends here whatever the caller knew */
        ended_us = last->run.ended_us;
        ended = write_batch(s, last, "final write");
    }
    if (!ended)
        ended = mark_ended(s, ended_us, why, sizeof(why));
    uint64_t lost = atomic_load(&s->lost);
    if (!ended)
        log_error(NULL,
                  "report database: cannot record the end of run %" PRId64
                  " (%s): its ended_at stays empty, and the file keeps lost_writes = %" PRIu64
                  " from the last batch written; %" PRIu64 " rows were lost in all",
                  s->run_id, why, s->lost_recorded, lost);
    else if (lost > 0)
        log_warning(NULL,
                    "report database: end of run %" PRId64 " recorded; %" PRIu64
                    " rows were lost in all (runs.lost_writes)",
                    s->run_id, lost);
}

void store_discard_run(store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->discard = true;
    pthread_mutex_unlock(&s->mu);
}

/* A run that never served goes, with anything written under it (the foreign keys cascade), so
 * that a failed start does not hide the run still going in the same file. */
static void discard_run(store *s)
{
    sqlite3_stmt *st = NULL;
    char why[256] = "";
    int rc = sqlite3_prepare_v2(s->db, "DELETE FROM runs WHERE id = ?1", -1, &st, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, s->run_id);
    if (rc == SQLITE_OK)
        rc = step_done(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        return;
    log_warning(NULL, "report database: cannot remove run %" PRId64 " of this failed start: %s",
                s->run_id, sqlite3_errmsg(s->db));
    if (!mark_ended(s, 0, why, sizeof(why)))
        log_warning(NULL, "report database: cannot record the end of run %" PRId64 ": %s",
                    s->run_id, why);
}

static void close_db(store *s)
{
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    /* The last connection to close checkpoints and removes the -wal and -shm files. */
    sqlite3_close_v2(s->db);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void store_close(store *s, store_batch *last)
{
    if (!s) {
        store_batch_free(last);
        return;
    }
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL); /* the pending batch, if any, is written first */
    }
    sqlite3_busy_timeout(s->db, STORE_FINAL_BUSY_MS);
    pthread_mutex_lock(&s->mu);
    bool discard = s->discard;
    pthread_mutex_unlock(&s->mu);
    if (s->run_id > 0 && discard)
        discard_run(s);
    else if (s->run_id > 0)
        record_end(s, last);
    store_batch_free(last);
    close_db(s);
}

/* ---------------------------------------------------------------- opening and schema */

static int64_t query_int(sqlite3 *db, const char *sql, const char *arg, int *rc)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    *rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (*rc == SQLITE_OK && arg)
        *rc = sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (*rc == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        else if (step != SQLITE_DONE)
            *rc = step;
    }
    sqlite3_finalize(st);
    return v;
}

/* A file that is not ours to change: refused, and nothing is written to it. */
static int refuse(bool *refused, char *err, size_t errlen, const char *path, const char *why)
{
    *refused = true;
    snprintf(err, errlen,
             "%s is not a pgscope report database (%s): it was left unchanged; use another file",
             path, why);
    return -1;
}

/* Whether another program has claimed the file: its application id or user version is set. */
static int64_t claimed_by_other(sqlite3 *db, int *rc)
{
    int64_t app = query_int(db, "PRAGMA application_id", NULL, rc);

    return *rc == SQLITE_OK && app == 0 ? query_int(db, "PRAGMA user_version", NULL, rc) : app;
}

/* The file's schema version, read without writing anything: 0 for an empty file (no objects, no
 * application id or user version: a new file, or what mktemp made). -1 with err set when it
 * cannot be used; *refused then tells a file that is not ours (another program's SQLite file,
 * not SQLite at all, a newer pgscope's) from one that could not be read (I/O, locks). */
static int read_version(sqlite3 *db, const char *path, bool *refused, char *err, size_t errlen)
{
    int rc;
    int64_t has_meta = query_int(
        db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", "meta", &rc);
    int64_t objects =
        rc == SQLITE_OK ? query_int(db, "SELECT count(*) FROM sqlite_master", NULL, &rc) : -1;
    int64_t claimed = rc == SQLITE_OK ? claimed_by_other(db, &rc) : 0;
    /* A meta table of another shape fails to prepare (SQLITE_ERROR): someone else's. */
    int64_t ours = rc == SQLITE_OK && has_meta > 0
                       ? query_int(db,
                                   "SELECT count(*) FROM meta WHERE key = 'application' AND "
                                   "value = ?1",
                                   "pgscope", &rc)
                       : 0;
    int64_t version = rc == SQLITE_OK && ours > 0
                          ? query_int(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1",
                                      "schema_version", &rc)
                          : 0;

    *refused = false;
    if ((rc & 0xff) == SQLITE_NOTADB)
        return refuse(refused, err, errlen, path, "not an SQLite file");
    if ((rc & 0xff) == SQLITE_ERROR && has_meta > 0)
        return refuse(refused, err, errlen, path, "its meta table is another program's");
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    if (has_meta == 0 && (objects > 0 || claimed != 0))
        return refuse(refused, err, errlen, path, "another program's SQLite file");
    if (has_meta > 0 && (ours == 0 || version < 1))
        return refuse(refused, err, errlen, path, "no pgscope schema version");
    if (version > STORE_SCHEMA_VERSION) {
        *refused = true;
        snprintf(err, errlen,
                 "%s was written by a newer pgscope (schema version %d; this one knows up to "
                 "%d): it was left unchanged; use that version or another file",
                 path, (int)version, STORE_SCHEMA_VERSION);
        return -1;
    }
    return (int)version;
}

static bool migrate(sqlite3 *db, int from, const char *path, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
        const struct migration *m = &migrations[i];
        if (m->version <= from || m->version > STORE_SCHEMA_VERSION || !m->sql)
            continue;
        if (sqlite3_exec(db, m->sql, NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: migration to schema version %d failed: %s", path, m->version,
                     sqlite3_errmsg(db));
            return false;
        }
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "UPDATE meta SET value = ?1 WHERE key = 'schema_version'", -1,
                                &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 1, STORE_SCHEMA_VERSION);
    if (rc == SQLITE_OK)
        rc = step_done(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s: cannot record the schema version: %s", path, sqlite3_errmsg(db));
    return rc == SQLITE_OK;
}

static bool create_schema(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    if (sqlite3_exec(db, store_schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot create the schema: %s", path, sqlite3_errmsg(db));
        return false;
    }
    bool refused;
    int version = read_version(db, path, &refused, err, errlen);
    if (version != STORE_SCHEMA_VERSION) {
        /* sql/schema.sql and STORE_SCHEMA_VERSION were changed apart: a build mistake. */
        snprintf(err, errlen, "%s: sql/schema.sql records version %d, this pgscope writes %d", path,
                 version, STORE_SCHEMA_VERSION);
        return false;
    }
    return true;
}

/* Creates or migrates the schema under a write lock, so that two pgscopes starting on the same
 * new file do not both create it. The version is read again under the lock: the file may have
 * changed since store_open first looked. */
static bool ensure_schema(sqlite3 *db, const char *path, bool *refused, char *err, size_t errlen)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        return false;
    }
    int version = read_version(db, path, refused, err, errlen);
    bool ok = version >= 0;
    if (ok && version == 0) {
        ok = create_schema(db, path, err, errlen);
    } else if (ok && version < STORE_SCHEMA_VERSION) {
        ok = migrate(db, version, path, err, errlen);
    }
    if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        ok = false;
    }
    if (!ok)
        rollback(db);
    return ok;
}

static bool pragma_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    bool ok =
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;

    if (ok)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return ok;
}

static bool configure(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char mode[16] = "";

    if (sqlite3_db_readonly(db, "main") == 1) {
        snprintf(err, errlen, "%s is read-only: pgscope needs to write it", path);
        return false;
    }
    /* WAL lets people read the file with sqlite3 while pgscope writes it; NORMAL syncs at
     * checkpoints only, which is safe in WAL mode and keeps batches cheap. */
    if (!pragma_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode)) ||
        strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL mode: %s", path,
                 mode[0] ? mode : sqlite3_errmsg(db));
        return false;
    }
    if (sqlite3_exec(db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", NULL, NULL,
                     NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        return false;
    }
    return true;
}

static bool prepare_all(store *s, const char *path, char *err, size_t errlen)
{
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
            return false;
        }
    }
    return true;
}

/* SQLite would create the file with the umask's mode (often 0644): the statements in it are
 * the application's, so the file is made first, readable by its owner only. The -wal and -shm
 * files take the mode of the database file. */
static bool create_private(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    close(fd);
    return true;
}

/* Reads what the file is before anything is written to it (the switch to WAL mode alone rewrites
 * its header), so that a file that is not ours, or a newer pgscope's, is left as it was. */
static bool check_file(sqlite3 *db, const char *path, bool *refused, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_MS);
    if (read_version(db, path, refused, err, errlen) >= 0)
        return true;
    /* A file opened read-only may fail to read for that reason alone (no -shm file allowed). */
    if (!*refused && sqlite3_db_readonly(db, "main") == 1)
        snprintf(err, errlen, "%s is read-only: pgscope needs to write it", path);
    return false;
}

store *store_open(const char *path, bool *refused, char *err, size_t errlen)
{
    bool not_ours = false;

    if (refused)
        *refused = false;
    if (!path || !*path) {
        snprintf(err, errlen, "no report database file given");
        return NULL;
    }
    if (!create_private(path, err, errlen))
        return NULL;
    store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        close_db(s);
        return NULL;
    }
    if (!check_file(s->db, path, &not_ours, err, errlen) || !configure(s->db, path, err, errlen) ||
        !ensure_schema(s->db, path, &not_ours, err, errlen) || !prepare_all(s, path, err, errlen)) {
        if (refused)
            *refused = not_ours;
        close_db(s);
        return NULL;
    }
    return s;
}

int64_t store_begin_run(store *s, const char *label, const char *upstream, int64_t started_us,
                        char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    bool bad = false;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO runs (label, started_at, pgscope_version, upstream) "
                                "VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL);

    if (rc == SQLITE_OK) {
        bad |= bind_text(st, 1, label && *label ? label : NULL) != SQLITE_OK;
        bad |= bind_time(st, 2, started_us > 0 ? started_us : clock_wall_us()) != SQLITE_OK;
        bad |= bind_text(st, 3, PACKAGE_VERSION) != SQLITE_OK;
        bad |= bind_text(st, 4, upstream) != SQLITE_OK;
        rc = bad ? SQLITE_NOMEM : step_done(st);
    }
    if (rc == SQLITE_OK)
        s->run_id = sqlite3_last_insert_rowid(s->db);
    else
        snprintf(err, errlen, "cannot record the run: %s", sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? s->run_id : -1;
}
