/* Unit tests for the store: file creation, schema versions and migration, batches (statements,
 * connections, tags, N+1 findings), upserts and lost writes. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/store.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 2023-11-14 22:13:20.123456 UTC */
#define SOME_TIME_US INT64_C(1700000000123456)

/* ---- a scratch directory per test ---- */

typedef struct {
    char dir[64];
    char path[128];
} scratch;

static int setup(void **state)
{
    scratch *t = calloc(1, sizeof(*t));

    if (!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/pgscope-test-store-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s/report.db", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    scratch *t = *state;
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[160];

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", t->path, suffixes[i]);
        unlink(p);
    }
    rmdir(t->dir);
    free(t);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- reading the file from a second connection, as a user would ---- */

static sqlite3 *peer_open(const char *path)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void peer_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

static int64_t peer_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The first column of the first row as text ("" for NULL or no row) in out. */
static void peer_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;

    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static int64_t file_int(const char *path, const char *sql)
{
    sqlite3 *db = peer_open(path);
    int64_t v = peer_int(db, sql);

    sqlite3_close(db);
    return v;
}

/* ---- building batches ---- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

/* Statement row i of a batch: fingerprint 00000000000000<i>, calls = calls, two error codes. */
static void fill_statement(store_statement_row *r, int i, int64_t calls, size_t query_len)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->fingerprint, sizeof(r->fingerprint), "%016x", (unsigned)i + 1);
    r->database = xstrdup("app");
    r->user = xstrdup("alice");
    r->query = malloc(query_len + 1);
    assert_non_null(r->query);
    memset(r->query, 'q', query_len);
    memcpy(r->query, "SELECT $1", query_len < 9 ? query_len : 9);
    r->query[query_len] = '\0';
    r->command = xstrdup("SELECT");
    r->calls = calls;
    r->errors = 3;
    r->rows = calls * 2;
    r->total_ms = (double)calls * 1.5;
    r->min_ms = 0.5;
    r->max_ms = 9.25;
    r->mean_ms = 1.5;
    r->stddev_ms = 0.75;
    r->p50_ms = 1.25;
    r->p95_ms = 4.0;
    r->p99_ms = 8.5;
    r->histogram_len = 5;
    r->histogram = malloc(5);
    assert_non_null(r->histogram);
    memcpy(r->histogram, "\x01\x02\x00\x03\x04", 5);
    r->first_us = SOME_TIME_US;
    r->last_us = SOME_TIME_US + 60 * INT64_C(1000000);
    snprintf(r->errs[0].sqlstate, sizeof(r->errs[0].sqlstate), "22012");
    r->errs[0].count = 2;
    r->errs[1].count = 1; /* "other" */
    r->n_errs = 2;
}

static store_batch *make_batch(int n_statements, int64_t calls, size_t query_len)
{
    store_batch *b = calloc(1, sizeof(*b));

    assert_non_null(b);
    b->statements = calloc((size_t)n_statements, sizeof(*b->statements));
    assert_non_null(b->statements);
    for (int i = 0; i < n_statements; i++)
        fill_statement(&b->statements[i], i, calls, query_len);
    b->n_statements = (size_t)n_statements;

    b->connections = calloc(1, sizeof(*b->connections));
    assert_non_null(b->connections);
    b->connections[0] = (store_connection_row){.conn_id = 7,
                                               .client_addr = xstrdup("127.0.0.1:50000"),
                                               .user = xstrdup("alice"),
                                               .database = xstrdup("app"),
                                               .application_name = xstrdup("tests"),
                                               .start_us = SOME_TIME_US,
                                               .bytes_from_client = 100,
                                               .bytes_from_server = (uint64_t)calls * 1000,
                                               .statements = calls};
    b->n_connections = 1;

    b->tags = calloc(1, sizeof(*b->tags));
    assert_non_null(b->tags);
    snprintf(b->tags[0].fingerprint, sizeof(b->tags[0].fingerprint), "%016x", 1u);
    b->tags[0].tags = xstrdup("action=index,controller=users");
    b->tags[0].calls = calls;
    b->tags[0].total_ms = (double)calls;
    b->n_tags = 1;

    b->run.connections = 1;
    b->run.statements = (uint64_t)calls * (uint64_t)n_statements;
    b->run.events_dropped = 4;
    b->run.fingerprint_fallbacks = 1;
    b->run.fingerprint_parses = 5;
    b->run.fingerprint_hits = 6;
    b->run.track_desyncs = 0;
    return b;
}

/* A batch's rows as the store counts them: run, statements with their errors, connection, tag. */
static uint64_t rows_of(int n_statements)
{
    return 1 + (uint64_t)n_statements * 3 + 1 + 1;
}

static store *open_ok(const char *path)
{
    char err[256] = "";
    store *s = store_open(path, NULL, err, sizeof(err));

    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

static store *open_running(const char *path)
{
    char err[256] = "";
    store *s = open_ok(path);

    assert_true(store_begin_run(s, "unit", "127.0.0.1:5432", SOME_TIME_US, err, sizeof(err)) > 0);
    assert_true(store_start(s));
    return s;
}

/* Hands a batch over, retrying while the previous one is being written. */
static void submit_eventually(store *s, store_batch *b)
{
    for (int i = 0; i < 5000; i++) {
        if (store_submit(s, b))
            return;
        sleep_ms(1);
    }
    store_batch_free(b);
    fail_msg("the store never took the batch");
}

/* An N+1 finding row with every string set (kind "n_plus_one") or a duplicate with none of
 * the optional ones (kind "duplicate"), so that the store's defaults and its freeing are both
 * exercised. */
static void fill_finding(store_nplusone_row *r, const char *kind, const char *parent_fp,
                         const char *child_fps, int64_t occurrences)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->kind, sizeof(r->kind), "%s", kind);
    snprintf(r->parent_fingerprint, sizeof(r->parent_fingerprint), "%s", parent_fp);
    snprintf(r->child_fingerprints, sizeof(r->child_fingerprints), "%s", child_fps);
    r->occurrences = occurrences;
    r->max_n = 50;
    r->total_n = 50 * occurrences;
    r->total_ms = 2.5 * (double)occurrences;
    r->saving_ms = 2.0 * (double)occurrences;
    r->first_us = SOME_TIME_US;
    r->last_us = SOME_TIME_US + 5 * INT64_C(1000000);
    if (strcmp(kind, "duplicate") == 0) {
        snprintf(r->severity, sizeof(r->severity), "low");
        return;
    }
    snprintf(r->severity, sizeof(r->severity), "high");
    r->parent_query = xstrdup("SELECT id, customer_id FROM orders ORDER BY id LIMIT $1");
    r->child_queries = xstrdup("[\"SELECT * FROM customers WHERE id = $1\"]");
    r->confirmed = true;
    r->linked_column = xstrdup("orders.customer_id");
    r->examples = xstrdup("[[\"17\"],[\"4\"]]");
    r->suggestion = xstrdup("SELECT * FROM customers WHERE id = ANY($1)\n"
                            "or: SELECT o.id, c.* FROM orders o JOIN customers c ON ...");
}

/* A batch with no statements and n findings: one N+1 and, from the second on, duplicates. */
static store_batch *make_findings_batch(size_t n, int64_t occurrences, const char *unused)
{
    store_batch *b = calloc(1, sizeof(*b));

    assert_non_null(b);
    b->nplusone = calloc(n ? n : 1, sizeof(*b->nplusone));
    assert_non_null(b->nplusone);
    for (size_t i = 0; i < n; i++) {
        char child[20];
        snprintf(child, sizeof(child), "%016zx", i + 0xc0);
        if (i == 0)
            fill_finding(&b->nplusone[i], "n_plus_one", "00000000000000a0",
                         "00000000000000b0,00000000000000b1", occurrences);
        else
            fill_finding(&b->nplusone[i], "duplicate", "", child, occurrences);
    }
    b->n_nplusone = n;
    b->unused_ignores = unused ? xstrdup(unused) : NULL;
    b->run.statements = 100;
    return b;
}

/* sql/schema.sql as schema version 1 had it (pgscope 0.1), to test the migration from there. */
static const char schema_v1_sql[] =
    "-- What the file is: application 'pgscope' and the schema version.\n"
    "CREATE TABLE meta (\n"
    "    key   TEXT PRIMARY KEY,\n"
    "    value TEXT NOT NULL\n"
    ");\n"
    "INSERT INTO meta (key, value) VALUES ('application', 'pgscope'), ('schema_version', '1');\n"
    "\n"
    "-- One row per `pgscope proxy` lifetime. The counters are rewritten with every batch, so "
    "they\n"
    "-- are current while pgscope runs; ended_at stays NULL until a clean stop.\n"
    "CREATE TABLE runs (\n"
    "    id                    INTEGER PRIMARY KEY,\n"
    "    label                 TEXT,               -- --run-label, NULL when not given\n"
    "    started_at            TEXT NOT NULL,\n"
    "    ended_at              TEXT,\n"
    "    pgscope_version       TEXT NOT NULL,\n"
    "    upstream              TEXT,               -- the server address pgscope forwarded to\n"
    "    connections           INTEGER NOT NULL DEFAULT 0,  -- client connections accepted\n"
    "    statements            INTEGER NOT NULL DEFAULT 0,  -- statements executed (all shapes)\n"
    "    events_dropped        INTEGER NOT NULL DEFAULT 0,  -- events the analysis had no room "
    "for\n"
    "    fingerprint_fallbacks INTEGER NOT NULL DEFAULT 0,  -- texts libpg_query could not parse\n"
    "    fingerprint_parses    INTEGER NOT NULL DEFAULT 0,  -- texts fingerprinted by libpg_query\n"
    "    fingerprint_hits      INTEGER NOT NULL DEFAULT 0,  -- texts found in the fingerprint "
    "cache\n"
    "    track_desyncs         INTEGER NOT NULL DEFAULT 0,  -- times protocol tracking lost "
    "its place\n"
    "    lost_writes           INTEGER NOT NULL DEFAULT 0   -- rows this file refused (locked, "
    "full)\n"
    ");\n"
    "\n"
    "-- One row per client connection of a run.\n"
    "CREATE TABLE connections (\n"
    "    run_id            INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    conn_id           INTEGER NOT NULL,       -- pgscope's number for the connection\n"
    "    client_addr       TEXT,                   -- 'host:port', or 'unix'\n"
    "    user_name         TEXT,\n"
    "    database          TEXT,\n"
    "    application_name  TEXT,\n"
    "    started_at        TEXT NOT NULL,\n"
    "    ended_at          TEXT,                   -- NULL while open\n"
    "    bytes_from_client INTEGER NOT NULL DEFAULT 0,\n"
    "    bytes_from_server INTEGER NOT NULL DEFAULT 0,\n"
    "    statements        INTEGER NOT NULL DEFAULT 0,\n"
    "    PRIMARY KEY (run_id, conn_id)\n"
    ");\n"
    "\n"
    "-- One row per statement shape (fingerprint), database and user of a run: cumulative figures\n"
    "-- for the whole run, replaced as the run goes on.\n"
    "CREATE TABLE statements (\n"
    "    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    fingerprint    TEXT NOT NULL,\n"
    "    database       TEXT NOT NULL,\n"
    "    user_name      TEXT NOT NULL,\n"
    "    query          TEXT,                      -- normalized: literals replaced by $1, $2...\n"
    "    command        TEXT,                      -- SELECT, INSERT, UPDATE, COPY...\n"
    "    fallback       INTEGER NOT NULL DEFAULT 0, -- 1: libpg_query could not parse the text\n"
    "    calls          INTEGER NOT NULL,\n"
    "    errors         INTEGER NOT NULL DEFAULT 0,\n"
    "    rows           INTEGER NOT NULL DEFAULT 0, -- rows returned or affected, all calls\n"
    "    total_ms       REAL NOT NULL,\n"
    "    min_ms         REAL,\n"
    "    max_ms         REAL,\n"
    "    mean_ms        REAL,\n"
    "    stddev_ms      REAL,\n"
    "    p50_ms         REAL,\n"
    "    p95_ms         REAL,\n"
    "    p99_ms         REAL,\n"
    "    histogram      BLOB,                      -- latency histogram, see doc/report-schema.md\n"
    "    first_seen     TEXT,\n"
    "    last_seen      TEXT,\n"
    "    example_query  TEXT,                      -- NULL unless store_params is on\n"
    "    example_params TEXT,                      -- NULL unless store_params is on\n"
    "    PRIMARY KEY (run_id, fingerprint, database, user_name)\n"
    ");\n"
    "-- The report's \"top statements of a run\" is an index range scan with LIMIT.\n"
    "CREATE INDEX statements_by_total ON statements (run_id, total_ms DESC);\n"
    "-- Merging a shape across runs (pgscope report --all): total_ms makes it a covering index "
    "for\n"
    "-- the report's GROUP BY, a fraction of the table to read.\n"
    "CREATE INDEX statements_by_shape ON statements (fingerprint, database, user_name, total_ms);\n"
    "\n"
    "-- Errors of a statement shape by SQLSTATE; sqlstate '' counts codes beyond the ones kept.\n"
    "CREATE TABLE statement_errors (\n"
    "    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    fingerprint TEXT NOT NULL,\n"
    "    database    TEXT NOT NULL,\n"
    "    user_name   TEXT NOT NULL,\n"
    "    sqlstate    TEXT NOT NULL,\n"
    "    count       INTEGER NOT NULL,\n"
    "    PRIMARY KEY (run_id, fingerprint, database, user_name, sqlstate)\n"
    ");\n"
    "CREATE INDEX statement_errors_by_shape ON statement_errors (fingerprint, database, "
    "user_name);\n"
    "\n"
    "-- Calls and time of a statement shape per set of sqlcommenter tags (/*action='index'*/),\n"
    "-- all databases and users together.\n"
    "CREATE TABLE statement_tags (\n"
    "    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
    "    fingerprint TEXT NOT NULL,\n"
    "    tags        TEXT NOT NULL,                -- canonical \"key=value,key2=value2\"\n"
    "    calls       INTEGER NOT NULL,\n"
    "    total_ms    REAL NOT NULL,\n"
    "    PRIMARY KEY (run_id, fingerprint, tags)\n"
    ");\n"
    "CREATE INDEX statement_tags_by_fingerprint ON statement_tags (fingerprint);\n"
    "\n"
    "-- Views for people: SELECT * FROM slowest_statements WHERE run_id = 3 LIMIT 10;\n"
    "\n"
    "-- Every statement shape with its run's label and per-call figures.\n"
    "CREATE VIEW statement_stats AS\n"
    "SELECT s.run_id,\n"
    "       r.label AS run_label,\n"
    "       s.fingerprint,\n"
    "       s.database,\n"
    "       s.user_name,\n"
    "       s.command,\n"
    "       s.query,\n"
    "       s.calls,\n"
    "       s.errors,\n"
    "       s.rows,\n"
    "       s.total_ms,\n"
    "       s.mean_ms,\n"
    "       s.min_ms,\n"
    "       s.max_ms,\n"
    "       s.stddev_ms,\n"
    "       s.p50_ms,\n"
    "       s.p95_ms,\n"
    "       s.p99_ms,\n"
    "       CAST(s.rows AS REAL) / NULLIF(s.calls, 0) AS rows_per_call,\n"
    "       CAST(s.errors AS REAL) / NULLIF(s.calls, 0) AS error_share,\n"
    "       s.fallback,\n"
    "       s.first_seen,\n"
    "       s.last_seen\n"
    "FROM statements s\n"
    "JOIN runs r ON r.id = s.run_id;\n"
    "\n"
    "-- The same, most total time first: where the database time of each run went.\n"
    "CREATE VIEW slowest_statements AS\n"
    "SELECT * FROM statement_stats ORDER BY run_id, total_ms DESC;\n"
    "\n"
    "-- One line per run: duration in seconds (NULL until a clean stop) and totals.\n"
    "CREATE VIEW run_summary AS\n"
    "SELECT r.id AS run_id,\n"
    "       r.label,\n"
    "       r.started_at,\n"
    "       r.ended_at,\n"
    "       (julianday(r.ended_at) - julianday(r.started_at)) * 86400.0 AS duration_s,\n"
    "       r.connections,\n"
    "       r.statements,\n"
    "       (SELECT count(*) FROM statements s WHERE s.run_id = r.id) AS shapes,\n"
    "       (SELECT coalesce(sum(s.errors), 0) FROM statements s WHERE s.run_id = r.id) AS "
    "errors,\n"
    "       (SELECT total(s.total_ms) FROM statements s WHERE s.run_id = r.id) AS total_ms,\n"
    "       r.events_dropped,\n"
    "       r.lost_writes,\n"
    "       r.fingerprint_fallbacks,\n"
    "       r.pgscope_version,\n"
    "       r.upstream\n"
    "FROM runs r;\n";

/* ---- opening ---- */

static void test_open_creates_private_wal_file(void **state)
{
    scratch *t = *state;
    struct stat st;
    char text[64];
    mode_t old = umask(022);
    store *s = open_ok(t->path);

    umask(old);
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->path);
    assert_int_equal(stat(wal, &st), 0); /* the schema was written through the WAL */
    assert_int_equal(st.st_mode & 0777, 0600);
    sqlite3 *db = peer_open(t->path);
    peer_text(db, "PRAGMA journal_mode", text, sizeof(text));
    assert_string_equal(text, "wal");
    assert_int_equal(peer_int(db, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     STORE_SCHEMA_VERSION);
    peer_text(db, "SELECT value FROM meta WHERE key = 'application'", text, sizeof(text));
    assert_string_equal(text, "pgscope");
    /* The views for people exist and work on an empty file. */
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_stats"), 0);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM slowest_statements"), 0);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM run_summary"), 0);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM n_plus_one_findings"), 0);
    sqlite3_close(db);
    store_close(s, NULL);
}

static void test_reopen_keeps_runs(void **state)
{
    scratch *t = *state;
    char err[256];
    store *s = open_ok(t->path);

    assert_int_equal(store_begin_run(s, "first", "up", SOME_TIME_US, err, sizeof(err)), 1);
    store_close(s, NULL);
    s = open_ok(t->path);
    assert_int_equal(store_begin_run(s, NULL, "up", SOME_TIME_US, err, sizeof(err)), 2);
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    char text[64];
    assert_int_equal(peer_int(db, "SELECT count(*) FROM runs"), 2);
    peer_text(db, "SELECT label FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "first");
    assert_int_equal(peer_int(db, "SELECT label IS NULL FROM runs WHERE id = 2"), 1);
    peer_text(db, "SELECT started_at FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "2023-11-14 22:13:20.123");
    peer_text(db, "SELECT pgscope_version FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, PACKAGE_VERSION);
    /* Closed without a last batch, a run still gets its end time. */
    assert_int_equal(peer_int(db, "SELECT count(*) FROM runs WHERE ended_at IS NOT NULL"), 2);
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    scratch *t = *state;
    char err[256] = "";

    store_close(open_ok(t->path), NULL);
    sqlite3 *db = peer_open(t->path);
    peer_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    sqlite3_close(db);
    bool refused = false;
    assert_null(store_open(t->path, &refused, err, sizeof(err)));
    assert_true(refused);
    assert_non_null(strstr(err, "newer pgscope"));
    assert_non_null(strstr(err, "99"));
}

static void test_foreign_files_refused(void **state)
{
    scratch *t = *state;
    char err[256] = "";

    sqlite3 *db = peer_open(t->path);
    peer_exec(db, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)");
    sqlite3_close(db);
    assert_null(store_open(t->path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not a pgscope report database"));
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM sqlite_master"), 1);

    unlink(t->path);
    FILE *f = fopen(t->path, "w");
    assert_non_null(f);
    fputs("this is a text file, not a database, and it is long enough to be looked at.\n", f);
    for (int i = 0; i < 64; i++)
        fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    err[0] = '\0';
    assert_null(store_open(t->path, NULL, err, sizeof(err)));
    assert_true(err[0] != '\0');
}

static void check_read_only_refused(const char *path)
{
    char err[256] = "";
    bool refused = true;
    store *s = store_open(path, &refused, err, sizeof(err));

    if (s) {
        store_close(s, NULL);
        fail_msg("a read-only file was opened for writing");
    }
    assert_false(refused); /* ours, just not writable: not a file to refuse */
    assert_true(strstr(err, "Permission denied") || strstr(err, "read-only"));
}

/* A file pgscope may not write is refused at once with a clear reason, so that the proxy
 * starts without statistics instead of losing every batch. The check runs as an unprivileged
 * user: root may write any file. */
static void test_read_only_file_refused(void **state)
{
    scratch *t = *state;

    store_close(open_ok(t->path), NULL);
    assert_int_equal(chmod(t->path, 0400), 0);
    if (geteuid() != 0) {
        check_read_only_refused(t->path);
        return;
    }
    const uid_t nobody = 65534;
    assert_int_equal(chmod(t->dir, 0755), 0);
    assert_int_equal(chown(t->path, nobody, nobody), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256] = "";
        bool refused = true;
        if (setgid(nobody) != 0 || setuid(nobody) != 0)
            _exit(3);
        store *s = store_open(t->path, &refused, err, sizeof(err));
        if (s || refused)
            _exit(1);
        _exit(strstr(err, "Permission denied") || strstr(err, "read-only") ? 0 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A whole file, to compare before and after. */
typedef struct {
    unsigned char *data;
    size_t len;
} file_bytes;

static file_bytes read_bytes(const char *path)
{
    file_bytes b = {NULL, 0};
    FILE *f = fopen(path, "rb");

    assert_non_null(f);
    b.data = malloc(1 << 20);
    assert_non_null(b.data);
    b.len = fread(b.data, 1, 1 << 20, f);
    fclose(f);
    return b;
}

/* Refused as not ours, with not one byte of the file changed and no -wal or -shm beside it. */
static void check_refused_unchanged(const char *path, const char *expect)
{
    file_bytes before = read_bytes(path), after;
    char err[256] = "", side[160];
    bool refused = false;

    assert_null(store_open(path, &refused, err, sizeof(err)));
    if (!refused || !strstr(err, expect))
        fail_msg("%s: refused %d: %s", path, refused, err);
    after = read_bytes(path);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.data, before.data, before.len);
    for (int i = 0; i < 2; i++) {
        snprintf(side, sizeof(side), "%s%s", path, i ? "-shm" : "-wal");
        assert_int_not_equal(access(side, F_OK), 0);
    }
    free(before.data);
    free(after.data);
}

/* Another program's SQLite file, made with sql in a rollback journal (as most programs leave
 * theirs): switching it to WAL would rewrite bytes 18 and 19 of its header. */
static void make_other_file(const char *path, const char *sql)
{
    unlink(path);
    sqlite3 *db = peer_open(path);
    peer_exec(db, sql);
    sqlite3_close(db);
    file_bytes b = read_bytes(path);
    assert_true(b.len >= 100 && b.data[18] == 1 && b.data[19] == 1);
    free(b.data);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A file that is not a pgscope report database, or is a newer pgscope's, is read and refused
 * before anything is written to it: the refusal leaves it byte for byte as it was. */
static void test_files_not_ours_left_unchanged(void **state)
{
    scratch *t = *state;

    make_other_file(t->path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL); "
                             "INSERT INTO invoices (amount) VALUES (1.5), (2.5)");
    check_refused_unchanged(t->path, "not a pgscope report database");
    make_other_file(t->path, "PRAGMA application_id = 1234");
    check_refused_unchanged(t->path, "another program's SQLite file");
    make_other_file(t->path, "PRAGMA user_version = 3");
    check_refused_unchanged(t->path, "another program's SQLite file");
    /* A meta table is not enough: it must say the file is pgscope's. */
    make_other_file(t->path, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO "
                             "meta VALUES ('application', 'billing'), ('schema_version', '2')");
    check_refused_unchanged(t->path, "not a pgscope report database");
    make_other_file(t->path, "CREATE TABLE meta (name TEXT, data BLOB)");
    check_refused_unchanged(t->path, "not a pgscope report database");

    unlink(t->path);
    write_text(t->path, "hello\n");
    check_refused_unchanged(t->path, "not an SQLite file");
    write_text(t->path, "SQLite format 3 is what this text starts with, and nothing else.\n");
    check_refused_unchanged(t->path, "not a pgscope report database");

    /* A newer pgscope's file, in a rollback journal so that a switch to WAL would show. */
    unlink(t->path);
    store_close(open_ok(t->path), NULL);
    sqlite3 *db = peer_open(t->path);
    peer_exec(db, "PRAGMA journal_mode = DELETE");
    peer_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    sqlite3_close(db);
    check_refused_unchanged(t->path, "newer pgscope");
}

/* An empty file is what mktemp makes: a new report database, not a refusal. */
static void test_empty_file_is_new(void **state)
{
    scratch *t = *state;
    int fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    bool refused = true;
    char err[256] = "";

    assert_true(fd >= 0);
    close(fd);
    store *s = store_open(t->path, &refused, err, sizeof(err));
    if (!s)
        fail_msg("store_open: %s", err);
    assert_false(refused);
    store_close(s, NULL);
    assert_int_equal(file_int(t->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     STORE_SCHEMA_VERSION);
}

/* ---- writing ---- */

static void test_batch_written(void **state)
{
    scratch *t = *state;
    char text[128];
    store *s = open_running(t->path);
    store_batch *last = calloc(1, sizeof(*last)); /* the run's counters only */

    assert_non_null(last);
    submit_eventually(s, make_batch(3, 10, 40));
    last->run = (store_run_counters){.ended_us = SOME_TIME_US + 3600 * INT64_C(1000000),
                                     .connections = 1,
                                     .statements = 30,
                                     .events_dropped = 4};
    store_close(s, last);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements WHERE run_id = 1"), 3);
    assert_int_equal(peer_int(db, "SELECT sum(calls) FROM statements"), 30);
    assert_int_equal(peer_int(db, "SELECT rows FROM statements WHERE fingerprint = "
                                  "'0000000000000001' AND database = 'app' "
                                  "AND user_name = 'alice'"),
                     20);
    peer_text(db, "SELECT hex(histogram) FROM statements LIMIT 1", text, sizeof(text));
    assert_string_equal(text, "0102000304");
    peer_text(db, "SELECT first_seen || ' / ' || last_seen FROM statements LIMIT 1", text,
              sizeof(text));
    assert_string_equal(text, "2023-11-14 22:13:20.123 / 2023-11-14 22:14:20.123");
    peer_text(db, "SELECT p99_ms FROM statements LIMIT 1", text, sizeof(text));
    assert_string_equal(text, "8.5");
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_errors"), 6);
    assert_int_equal(peer_int(db, "SELECT count FROM statement_errors WHERE sqlstate = '22012' "
                                  "AND fingerprint = '0000000000000002'"),
                     2);
    assert_int_equal(peer_int(db, "SELECT count FROM statement_errors WHERE sqlstate = '' "
                                  "AND fingerprint = '0000000000000002'"),
                     1);
    peer_text(db,
              "SELECT client_addr || ' ' || application_name || ' ' || bytes_from_server "
              "|| ' ' || (ended_at IS NULL) FROM connections WHERE conn_id = 7",
              text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:50000 tests 10000 1");
    assert_int_equal(peer_int(db, "SELECT calls FROM statement_tags WHERE tags = "
                                  "'action=index,controller=users'"),
                     10);
    /* The last batch's counters and end time replace the earlier ones. */
    peer_text(db, "SELECT ended_at FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "2023-11-14 23:13:20.123");
    assert_int_equal(peer_int(db, "SELECT statements FROM runs WHERE id = 1"), 30);
    assert_int_equal(peer_int(db, "SELECT events_dropped FROM runs WHERE id = 1"), 4);
    assert_int_equal(peer_int(db, "SELECT lost_writes FROM runs WHERE id = 1"), 0);
    assert_int_equal(peer_int(db, "SELECT round(duration_s) FROM run_summary"), 3600);
    assert_int_equal(peer_int(db, "SELECT shapes FROM run_summary"), 3);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM slowest_statements WHERE run_id = 1"), 3);
    assert_int_equal(peer_int(db, "SELECT CAST(rows_per_call AS INTEGER) FROM statement_stats "
                                  "LIMIT 1"),
                     2);
    sqlite3_close(db);
}

static void test_later_batch_replaces_rows(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);

    submit_eventually(s, make_batch(2, 10, 20));
    store_batch *b = make_batch(2, 25, 20);
    b->statements[0].errs[0].count = 9;
    b->connections[0].end_us = SOME_TIME_US + 1000;
    submit_eventually(s, b);
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements"), 2);
    assert_int_equal(peer_int(db, "SELECT min(calls) FROM statements"), 25);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_errors"), 4);
    assert_int_equal(peer_int(db, "SELECT count FROM statement_errors WHERE sqlstate = '22012' "
                                  "AND fingerprint = '0000000000000001'"),
                     9);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM connections"), 1);
    assert_int_equal(peer_int(db, "SELECT ended_at IS NOT NULL FROM connections"), 1);
    assert_int_equal(peer_int(db, "SELECT calls FROM statement_tags"), 25);
    assert_int_equal(peer_int(db, "SELECT statements FROM runs"), 50);
    sqlite3_close(db);
}

/* Shapes folded into "other" after they were written: a batch removes their rows (and errors)
 * before it writes its own, so that no call is counted twice. A complete batch replaces every
 * row of the run, which also removes rows whose removal was in a lost batch. */
static void test_folded_rows_removed(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);

    submit_eventually(s, make_batch(3, 10, 20)); /* shapes 1, 2 and 3, 10 calls each */
    store_batch *b = make_batch(1, 10, 20);      /* shape 1 unchanged, 2 folded, "other" */
    b->folded = calloc(1, sizeof(*b->folded));
    assert_non_null(b->folded);
    snprintf(b->folded[0].fingerprint, sizeof(b->folded[0].fingerprint), "%016x", 2u);
    b->folded[0].database = xstrdup("app");
    b->folded[0].user = xstrdup("alice");
    b->n_folded = 1;
    store_statement_row *other = realloc(b->statements, 2 * sizeof(*other));
    assert_non_null(other);
    b->statements = other;
    fill_statement(&b->statements[1], 0, 10, 0);
    snprintf(b->statements[1].fingerprint, sizeof(b->statements[1].fingerprint), "%s",
             STORE_OTHER_FINGERPRINT);
    b->n_statements = 2;
    b->run.max_shapes = 2;
    b->run.folded_shapes = 1;
    b->run.folded_calls = 10;
    submit_eventually(s, b);
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements"), 3);
    assert_int_equal(peer_int(db, "SELECT sum(calls) FROM statements"), 30);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements "
                                  "WHERE fingerprint = '0000000000000002'"),
                     0);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_errors "
                                  "WHERE fingerprint = '0000000000000002'"),
                     0);
    assert_int_equal(peer_int(db, "SELECT calls FROM statements WHERE fingerprint = 'other'"), 10);
    assert_int_equal(peer_int(db, "SELECT max_shapes * 100 + folded_shapes * 10 + folded_calls "
                                  "FROM runs"),
                     220);
    sqlite3_close(db);

    s = open_ok(t->path);
    char err[256];
    assert_int_equal(store_begin_run(s, NULL, "up", SOME_TIME_US, err, sizeof(err)), 2);
    assert_true(store_start(s));
    submit_eventually(s, make_batch(3, 10, 20));
    b = make_batch(1, 5, 20); /* the run as a whole: shape 1 alone */
    b->statements_complete = true;
    submit_eventually(s, b);
    store_close(s, NULL);
    db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements WHERE run_id = 2"), 1);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_errors WHERE run_id = 2"), 2);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements WHERE run_id = 1"), 3);
    assert_int_equal(peer_int(db, "SELECT max_shapes IS NULL FROM runs WHERE id = 2"), 1);
    sqlite3_close(db);
}

static void test_submit_needs_a_started_store(void **state)
{
    scratch *t = *state;
    store *s = open_ok(t->path);
    store_batch *b = make_batch(1, 1, 10);

    assert_false(store_submit(s, b)); /* not started: the caller keeps the batch */
    store_batch_free(b);
    assert_false(store_submit(NULL, NULL));
    store_close(s, NULL);
    store_close(NULL, NULL);
}

/* A second connection holds the write lock: the writer waits its busy timeout, gives up, counts
 * the batch as lost and goes on; meanwhile new batches are refused, not queued. */
static void test_locked_database_counts_lost_writes(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    sqlite3 *locker = peer_open(t->path);

    peer_exec(locker, "BEGIN IMMEDIATE");
    assert_true(store_submit(s, make_batch(2, 10, 20)));
    store_batch *second = make_batch(2, 20, 20);
    assert_false(store_submit(s, second)); /* the first one is still being written */
    for (int i = 0; i < 10000 && store_lost_writes(s) == 0; i++)
        sleep_ms(1);
    assert_int_equal(store_lost_writes(s), rows_of(2));
    peer_exec(locker, "COMMIT");
    sqlite3_close(locker);

    submit_eventually(s, second);
    store_close(s, NULL);
    assert_int_equal(file_int(t->path, "SELECT min(calls) FROM statements"), 20);
    assert_int_equal(file_int(t->path, "SELECT lost_writes FROM runs"), (int64_t)rows_of(2));
}

/* A write beyond the file size limit fails as a full disk would (SQLITE_FULL or an I/O error):
 * counted, logged, and the next batch is written once there is room again. */
static void test_full_disk_counts_lost_writes(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    struct rlimit old, small;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 1 << 20;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    assert_true(store_submit(s, make_batch(20, 10, 100000))); /* about 2 MB of query text */
    for (int i = 0; i < 10000 && store_lost_writes(s) == 0; i++)
        sleep_ms(1);
    uint64_t lost = store_lost_writes(s);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(lost, rows_of(20));

    submit_eventually(s, make_batch(1, 2, 10));
    store_close(s, NULL);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM statements"), 1);
    assert_int_equal(file_int(t->path, "SELECT calls FROM statements"), 2);
    assert_true(file_int(t->path, "SELECT lost_writes FROM runs") >= (int64_t)rows_of(20));
}

/* Runs store_close with the log (stderr) going to a file; returns what was logged. */
static char *close_logged(store *s, store_batch *last, const char *dir)
{
    char path[160];
    int saved = dup(STDERR_FILENO);

    snprintf(path, sizeof(path), "%s/stderr.log", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    store_close(s, last);
    dup2(saved, STDERR_FILENO);
    close(saved);
    file_bytes b = read_bytes(path);
    unlink(path);
    char *text = realloc(b.data, b.len + 1);
    assert_non_null(text);
    text[b.len] = '\0';
    return text;
}

/* Limits the size of every file the process writes (SIGXFSZ ignored: the write fails instead)
 * as a full disk would; restore with the returned limit. */
static struct rlimit limit_file_size(rlim_t bytes)
{
    struct rlimit old, small;

    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = bytes;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    return old;
}

static void restore_file_size(struct rlimit old)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
}

/* The last batch fails for want of space: the run's end and the final count (that batch's rows
 * included) still go into the file on their own, and the log states the same count. */
static void test_final_write_failed_end_still_recorded(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);

    submit_eventually(s, make_batch(1, 2, 10));
    struct rlimit old = limit_file_size(1 << 20);
    char *log = close_logged(s, make_batch(20, 10, 100000), t->dir); /* about 2 MB */
    restore_file_size(old);

    char expect[128];
    snprintf(expect, sizeof(expect), "end of run 1 recorded; %" PRIu64 " rows were lost in all",
             rows_of(20));
    if (!strstr(log, expect))
        fail_msg("log without \"%s\":\n%s", expect, log);
    free(log);
    assert_int_equal(file_int(t->path, "SELECT ended_at IS NOT NULL FROM runs"), 1);
    assert_int_equal(file_int(t->path, "SELECT lost_writes FROM runs"), (int64_t)rows_of(20));
    assert_int_equal(file_int(t->path, "SELECT calls FROM statements"), 2);
}

/* No room at all at the end: the log says the end could not be recorded, with the count the
 * file keeps and the count lost in all. The writer is not started, so that the WAL's size is
 * known: the limit leaves not one more frame. */
static void test_end_not_recordable_logged(void **state)
{
    scratch *t = *state;
    char wal[160], err[256], expect[256];
    struct stat st;
    store *s = open_ok(t->path);

    assert_true(store_begin_run(s, "unit", "127.0.0.1:5432", SOME_TIME_US, err, sizeof(err)) > 0);
    snprintf(wal, sizeof(wal), "%s-wal", t->path);
    assert_int_equal(stat(wal, &st), 0);
    struct rlimit old = limit_file_size((rlim_t)st.st_size);
    char *log = close_logged(s, make_batch(3, 10, 40), t->dir);
    restore_file_size(old);

    snprintf(expect, sizeof(expect),
             "its ended_at stays empty, and the file keeps lost_writes = 0 from the last batch "
             "written; %" PRIu64 " rows were lost in all",
             rows_of(3));
    if (!strstr(log, "cannot record the end of run 1 (") || !strstr(log, expect))
        fail_msg("log without \"%s\":\n%s", expect, log);
    free(log);
    assert_int_equal(file_int(t->path, "SELECT ended_at IS NULL FROM runs"), 1);
    assert_int_equal(file_int(t->path, "SELECT lost_writes FROM runs"), 0);
}

/* A start that never served: its run goes, with what was written under it, and the run before
 * it stays the latest. */
static void test_discarded_run_removed(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);

    store_close(s, NULL);
    s = open_running(t->path);
    submit_eventually(s, make_batch(2, 1, 10));
    store_discard_run(s);
    store_close(s, make_batch(2, 3, 10));
    store_discard_run(NULL);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM runs"), 1);
    assert_int_equal(file_int(t->path, "SELECT max(id) FROM runs"), 1);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM statements"), 0);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM connections"), 0);
}

/* A reader in its own transaction sees a consistent snapshot and never blocks the writer. */
static void test_reader_while_writing(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    sqlite3 *reader = NULL;

    submit_eventually(s, make_batch(5, 1, 20));
    submit_eventually(s, make_batch(0, 0, 0)); /* taken only once the first is written */
    assert_int_equal(sqlite3_open_v2(t->path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(reader, 5000);

    peer_exec(reader, "BEGIN");
    assert_int_equal(peer_int(reader, "SELECT min(calls) FROM statements"), 1);
    for (int64_t calls = 2; calls <= 40; calls++)
        submit_eventually(s, make_batch(5, calls, 20));
    submit_eventually(s, make_batch(0, 0, 0));
    /* Still inside its transaction, the reader sees its snapshot. */
    assert_int_equal(peer_int(reader, "SELECT max(calls) FROM statements"), 1);
    peer_exec(reader, "COMMIT");
    for (int i = 0; i < 20; i++) {
        peer_exec(reader, "BEGIN");
        int64_t lo = peer_int(reader, "SELECT min(calls) FROM statements");
        int64_t hi = peer_int(reader, "SELECT max(calls) FROM statements");
        peer_exec(reader, "COMMIT");
        assert_int_equal(lo, hi); /* every batch is one transaction */
        store_batch *b = make_batch(5, 41 + i, 20);
        if (!store_submit(s, b))
            store_batch_free(b);
    }
    assert_int_equal(store_lost_writes(s), 0);
    store_close(s, NULL);
    assert_true(peer_int(reader, "SELECT min(calls) FROM statements") >= 40);
    sqlite3_close(reader);
}

/* ---- N+1 findings ---- */

static void test_findings_written(void **state)
{
    scratch *t = *state;
    char text[256];
    store *s = open_running(t->path);

    submit_eventually(s, make_findings_batch(2, 3, "[\"0123456789abcdef\",\"audit_log\"]"));
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM n_plus_one WHERE run_id = 1"), 2);
    peer_text(db,
              "SELECT parent_fingerprint || ' ' || child_fingerprints || ' ' || confirmed || ' ' "
              "|| linked_column || ' ' || occurrences || ' ' || max_n || ' ' || total_n || ' ' "
              "|| total_ms || ' ' || saving_ms || ' ' || severity FROM n_plus_one "
              "WHERE kind = 'n_plus_one'",
              text, sizeof(text));
    assert_string_equal(text, "00000000000000a0 00000000000000b0,00000000000000b1 1 "
                              "orders.customer_id 3 50 150 7.5 6.0 high");
    peer_text(db, "SELECT json_extract(examples, '$[1][0]') FROM n_plus_one WHERE confirmed", text,
              sizeof(text));
    assert_string_equal(text, "4");
    peer_text(db, "SELECT first_seen || ' / ' || last_seen FROM n_plus_one WHERE confirmed", text,
              sizeof(text));
    assert_string_equal(text, "2023-11-14 22:13:20.123 / 2023-11-14 22:13:25.123");
    assert_int_equal(peer_int(db, "SELECT length(suggestion) > 40 FROM n_plus_one WHERE confirmed"),
                     1);
    /* A duplicate without texts: no parent, empty arrays and '' rather than NULLs. */
    peer_text(db,
              "SELECT quote(parent_fingerprint) || quote(parent_query) || child_queries || "
              "quote(linked_column) || examples || confirmed || quote(suggestion) "
              "FROM n_plus_one WHERE kind = 'duplicate'",
              text, sizeof(text));
    assert_string_equal(text, "''NULL[]''[]0NULL");
    peer_text(db, "SELECT unused_ignores FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "[\"0123456789abcdef\",\"audit_log\"]");
    /* The view: the run's label, the first child's text, the most severe first. */
    peer_text(db,
              "SELECT run_label || ' ' || kind || ' ' || child_query FROM n_plus_one_findings "
              "LIMIT 1",
              text, sizeof(text));
    assert_string_equal(text, "unit n_plus_one SELECT * FROM customers WHERE id = $1");
    peer_text(db, "SELECT group_concat(severity, ',') FROM n_plus_one_findings", text,
              sizeof(text));
    assert_string_equal(text, "high,low");
    sqlite3_close(db);
}

/* ---- plans ---- */

static store_batch *make_plan_batch(uint64_t seq, uint64_t sampled, uint64_t dml)
{
    store_batch *b = calloc(1, sizeof(*b));
    store_plan_row *p;

    assert_non_null(b);
    b->plans = p = calloc(1, sizeof(*b->plans));
    assert_non_null(p);
    b->n_plans = 1;
    p->seq = seq;
    snprintf(p->fingerprint, sizeof(p->fingerprint), "00000000000000f1");
    p->database = xstrdup("shop");
    p->user = xstrdup("app");
    p->query = xstrdup("SELECT * FROM orders WHERE status = $1");
    p->plan = xstrdup("[{\"Plan\": {}}]");
    p->analyzed = true;
    p->trigger_ms = 120.5;
    p->planning_ms = 0.25;
    p->execution_ms = -1; /* none: NULL */
    p->side_ms = 130;
    p->taken_us = SOME_TIME_US;
    p->findings = calloc(2, sizeof(*p->findings));
    assert_non_null(p->findings);
    p->n_findings = 2;
    for (int i = 0; i < 2; i++) {
        snprintf(p->findings[i].kind, sizeof(p->findings[i].kind), "%s",
                 i ? "misestimate" : "seq_scan_filter");
        p->findings[i].node_path = xstrdup("Seq Scan on orders");
        p->findings[i].relation = i ? NULL : xstrdup("orders");
        p->findings[i].detail = xstrdup("removed 199800 of 200000 rows");
        p->findings[i].magnitude = 199800 - i;
    }
    b->run.n_explain = 2;
    snprintf(b->run.explain[0].reason, sizeof(b->run.explain[0].reason), "sample");
    b->run.explain[0].count = sampled;
    snprintf(b->run.explain[1].reason, sizeof(b->run.explain[1].reason), "dml");
    b->run.explain[1].count = dml;
    return b;
}

/* A plan is written once with its findings: the same plan in a later batch (sent again after a
 * lost batch) adds nothing; skip counters are replaced. */
static void test_plans_written_once(void **state)
{
    scratch *t = *state;
    char text[256];
    store *s = open_running(t->path);

    submit_eventually(s, make_plan_batch(1, 1, 0));
    submit_eventually(s, make_plan_batch(1, 2, 5));
    store_close(s, make_plan_batch(2, 3, 6));

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM plans"), 2);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM plan_findings"), 4);
    peer_text(db,
              "SELECT seq || ' ' || database || ' ' || analyzed || ' ' || trigger_ms || ' ' || "
              "planning_ms || ' ' || quote(execution_ms) || ' ' || quote(params) || ' ' || "
              "taken_at FROM plans WHERE seq = 1",
              text, sizeof(text));
    assert_string_equal(text, "1 shop 1 120.5 0.25 NULL NULL 2023-11-14 22:13:20.123");
    peer_text(db,
              "SELECT group_concat(n || ':' || kind || ':' || relation, ',') FROM plan_findings f "
              "JOIN plans p ON p.id = f.plan_id WHERE p.seq = 2",
              text, sizeof(text));
    assert_string_equal(text, "1:seq_scan_filter:orders,2:misestimate:");
    peer_text(db,
              "SELECT group_concat(reason || '=' || count, ',') FROM (SELECT * FROM explain_skips "
              "ORDER BY reason)",
              text, sizeof(text));
    assert_string_equal(text, "dml=6,sample=3");
    /* The ranked view has every finding, with no statement to weigh it yet: weight 0. */
    assert_int_equal(peer_int(db, "SELECT count(*) FROM plan_findings_ranked WHERE weight_ms = 0"),
                     4);
    sqlite3_close(db);
}

/* ---- index suggestions ---- */

static store_batch *make_index_batch(size_t n, bool set)
{
    store_batch *b = calloc(1, sizeof(*b));

    assert_non_null(b);
    b->indexes_set = set;
    b->indexes = calloc(n ? n : 1, sizeof(*b->indexes));
    assert_non_null(b->indexes);
    for (size_t i = 0; i < n; i++) {
        store_index_row *r = &b->indexes[i];
        r->database = xstrdup("shop");
        r->ddl = xstrdup("CREATE INDEX CONCURRENTLY ON \"orders\" (\"customer_id\")");
        r->table = xstrdup("orders");
        r->columns = xstrdup("[\"customer_id\"]");
        r->statements = xstrdup("[\"00000000000000f1\"]");
        r->verified = i == 0;
        r->cost_before = i == 0 ? 4000 : -1;
        r->cost_after = i == 0 ? 8.5 : -1;
        r->benefit_ms = i == 0 ? 250 : -1;
        r->size_bytes = -1;
        r->write_statements = 7;
        r->breaks_hot = true;
    }
    b->n_indexes = n;
    return b;
}

/* The suggestions are the latest consolidation: a batch that carries one replaces the run's
 * list whole; a batch without one leaves it. */
static void test_index_suggestions_replaced(void **state)
{
    scratch *t = *state;
    char text[256];
    store *s = open_running(t->path);

    submit_eventually(s, make_index_batch(3, true));
    submit_eventually(s, make_index_batch(0, false));
    store_close(s, make_index_batch(2, true));

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM index_suggestions"), 2);
    peer_text(db,
              "SELECT group_concat(rank || ':' || verified || ':' || quote(cost_before) || ':' || "
              "quote(benefit_ms) || ':' || quote(size_bytes) || ':' || write_statements || ':' || "
              "breaks_hot || ':' || predicate, ',') FROM (SELECT * FROM index_suggestions "
              "ORDER BY rank)",
              text, sizeof(text));
    assert_string_equal(text, "1:1:4000.0:250.0:NULL:7:1:,2:0:NULL:NULL:NULL:7:1:");
    sqlite3_close(db);
}

/* Findings are cumulative: a later batch replaces the row of the same key and leaves the
 * others; a batch without an allow-list report keeps the run's last one. */
static void test_later_batch_replaces_findings(void **state)
{
    scratch *t = *state;
    char text[128];
    store *s = open_running(t->path);

    submit_eventually(s, make_findings_batch(3, 1, "[\"audit_log\"]"));
    store_batch *b = make_findings_batch(2, 4, NULL);
    b->nplusone[0].confirmed = false;
    free(b->nplusone[0].linked_column);
    b->nplusone[0].linked_column = NULL;
    snprintf(b->nplusone[0].severity, sizeof(b->nplusone[0].severity), "medium");
    submit_eventually(s, b);
    submit_eventually(s, make_findings_batch(0, 0, NULL));
    sqlite3 *db = peer_open(t->path);
    peer_text(db, "SELECT unused_ignores FROM runs", text, sizeof(text));
    assert_string_equal(text, "[\"audit_log\"]");
    sqlite3_close(db);
    store_close(s, make_findings_batch(0, 0, "[]"));

    db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM n_plus_one"), 3);
    peer_text(db,
              "SELECT occurrences || ' ' || total_n || ' ' || confirmed || ' ' || "
              "quote(linked_column) || ' ' || severity FROM n_plus_one WHERE kind = 'n_plus_one'",
              text, sizeof(text));
    assert_string_equal(text, "4 200 0 '' medium");
    assert_int_equal(peer_int(db, "SELECT occurrences FROM n_plus_one WHERE child_fingerprints = "
                                  "'00000000000000c1'"),
                     4);
    /* Not in the later batch: still the first batch's figures. */
    assert_int_equal(peer_int(db, "SELECT occurrences FROM n_plus_one WHERE child_fingerprints = "
                                  "'00000000000000c2'"),
                     1);
    peer_text(db, "SELECT unused_ignores FROM runs", text, sizeof(text));
    assert_string_equal(text, "[]");
    sqlite3_close(db);
}

/* Findings are rows of the batch: a batch the file refuses counts them as lost. */
static void test_lost_findings_counted(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    sqlite3 *locker = peer_open(t->path);

    peer_exec(locker, "BEGIN IMMEDIATE");
    assert_true(store_submit(s, make_findings_batch(4, 1, "[]")));
    for (int i = 0; i < 10000 && store_lost_writes(s) == 0; i++)
        sleep_ms(1);
    assert_int_equal(store_lost_writes(s), 1 + 4); /* the run's row and four findings */
    peer_exec(locker, "COMMIT");
    sqlite3_close(locker);
    store_close(s, NULL);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM n_plus_one"), 0);
    assert_int_equal(file_int(t->path, "SELECT unused_ignores IS NULL FROM runs"), 1);
}

/* Every way a batch can end: written and freed by the writer, refused and freed by the caller,
 * written and freed by store_close, never handed over. Under ASan and LeakSanitizer a string
 * of a finding, or the allow-list report, that is not freed fails the test. */
static void test_batches_with_findings_freed(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);

    store_batch *b = make_findings_batch(3, 1, "[\"x\"]");
    assert_true(store_submit(s, b));
    store_batch *refused = make_findings_batch(3, 2, "[\"y\"]");
    if (!store_submit(s, refused)) /* refused while the first is written: still ours */
        store_batch_free(refused);
    store_batch_free(make_findings_batch(5, 1, "[]"));
    store_batch_free(make_findings_batch(0, 0, "[]"));
    /* Statements and findings in one last batch. */
    store_batch *mixed = make_batch(2, 3, 30), *findings = make_findings_batch(2, 5, "[\"z\"]");
    mixed->nplusone = findings->nplusone;
    mixed->n_nplusone = findings->n_nplusone;
    mixed->unused_ignores = findings->unused_ignores;
    free(findings);
    store_close(s, mixed);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM statements"), 2);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM n_plus_one"), 3);
    assert_int_equal(file_int(t->path, "SELECT occurrences FROM n_plus_one WHERE confirmed"), 5);
    assert_int_equal(file_int(t->path, "SELECT unused_ignores = '[\"z\"]' FROM runs"), 1);
}

/* ---- migration ---- */

/* Creates a version-1 file as pgscope 0.1 left it: the schema, one ended run, one statement. */
static void make_version_1_file(const char *path)
{
    sqlite3 *db = peer_open(path);

    peer_exec(db, "PRAGMA journal_mode = WAL");
    peer_exec(db, schema_v1_sql);
    peer_exec(db, "INSERT INTO runs (label, started_at, ended_at, pgscope_version, statements) "
                  "VALUES ('old', '2023-11-14 22:13:20.123', '2023-11-14 22:14:20.123', '0.1.0', "
                  "12)");
    peer_exec(db, "INSERT INTO statements (run_id, fingerprint, database, user_name, query, "
                  "calls, total_ms) VALUES (1, '0000000000000001', 'app', 'alice', 'SELECT 1', "
                  "12, 3.5)");
    sqlite3_close(db);
}

/* The file's schema, one line per column of every table and view and per index, with the
 * text of the objects version 2 added: what must be the same in a migrated file and a new one.
 * The CREATE text of an altered table differs by construction (ALTER TABLE appends to it), so
 * tables are compared by their columns. */
static char *schema_description(const char *path)
{
    static const char sql[] =
        "SELECT group_concat(line, char(10)) FROM ("
        "SELECT m.type || ' ' || m.name || ' ' || p.cid || ' ' || p.name || ' ' || p.type || ' ' "
        "|| p.\"notnull\" || ' ' || coalesce(p.dflt_value, '-') || ' ' || p.pk AS line "
        "FROM sqlite_master m, pragma_table_xinfo(m.name) p WHERE m.type IN ('table', 'view') "
        "UNION ALL SELECT type || ' ' || name || ' ' || tbl_name || ' ' || coalesce(sql, '-') "
        "FROM sqlite_master WHERE type = 'index' "
        "UNION ALL SELECT 'sql ' || name || ' ' || sql FROM sqlite_master "
        "WHERE type = 'view' OR name LIKE 'n\\_plus\\_one%' ESCAPE '\\' OR name LIKE 'plan%' "
        "OR name IN ('explain_skips', 'index_suggestions') "
        "UNION ALL SELECT 'meta ' || key || ' ' || value FROM meta "
        "ORDER BY 1)";
    sqlite3 *db = peer_open(path);
    sqlite3_stmt *st = NULL;
    char *out = NULL;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    out = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static void test_migration_from_version_1(void **state)
{
    scratch *t = *state;
    char err[256] = "", text[160], fresh_path[160];

    make_version_1_file(t->path);
    assert_int_equal(file_int(t->path, "SELECT value FROM meta WHERE key = 'schema_version'"), 1);
    store *s = open_ok(t->path);
    assert_int_equal(store_begin_run(s, "new", "up", SOME_TIME_US, err, sizeof(err)), 2);
    assert_true(store_start(s));
    submit_eventually(s, make_findings_batch(2, 1, "[\"audit_log\"]"));
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     STORE_SCHEMA_VERSION);
    /* The old run and its statement are kept; it has no allow-list report. */
    peer_text(db,
              "SELECT label || ' ' || statements || ' ' || quote(unused_ignores) FROM runs "
              "WHERE id = 1",
              text, sizeof(text));
    assert_string_equal(text, "old 12 NULL");
    assert_int_equal(peer_int(db, "SELECT calls FROM statement_stats WHERE run_id = 1"), 12);
    assert_int_equal(peer_int(db, "SELECT shapes FROM run_summary WHERE run_id = 1"), 1);
    /* The new run's findings went into the new table, through the new view. */
    assert_int_equal(peer_int(db, "SELECT count(*) FROM n_plus_one_findings WHERE run_id = 2"), 2);
    peer_text(db, "SELECT unused_ignores FROM runs WHERE id = 2", text, sizeof(text));
    assert_string_equal(text, "[\"audit_log\"]");
    sqlite3_close(db);

    /* The migrated file reopens (its altered schema parses) and is not migrated again. */
    s = open_ok(t->path);
    assert_int_equal(store_begin_run(s, NULL, "up", SOME_TIME_US, err, sizeof(err)), 3);
    store_close(s, NULL);

    /* Same schema as a file this pgscope creates. */
    snprintf(fresh_path, sizeof(fresh_path), "%s/fresh.db", t->dir);
    store_close(open_ok(fresh_path), NULL);
    char *migrated = schema_description(t->path), *fresh = schema_description(fresh_path);
    assert_string_equal(migrated, fresh);
    assert_non_null(strstr(fresh, "table n_plus_one 17 last_seen"));
    assert_non_null(strstr(fresh, "table runs 14 unused_ignores TEXT 0 - 0"));
    assert_non_null(strstr(fresh, "meta schema_version 10"));
    assert_non_null(strstr(fresh, "table runs 15 max_shapes INTEGER 0 - 0"));
    assert_non_null(strstr(fresh, "table runs 17 folded_calls INTEGER 1 0 0"));
    assert_non_null(strstr(fresh, "table runs 18 explain_login_error TEXT 0 - 0"));
    assert_non_null(strstr(fresh, "table index_suggestions 16 misestimate INTEGER 1 0 0"));
    assert_non_null(strstr(fresh, "table plan_findings 8 magnitude REAL 1 - 0"));
    free(migrated);
    free(fresh);
    unlink(fresh_path);
}

/* A migration that cannot complete leaves the file as it was, at version 1, and says why. */
static void test_failed_migration_changes_nothing(void **state)
{
    scratch *t = *state;
    char err[256] = "";

    make_version_1_file(t->path);
    sqlite3 *db = peer_open(t->path);
    peer_exec(db, "CREATE TABLE n_plus_one (x INTEGER)"); /* someone's table in the way */
    sqlite3_close(db);
    assert_null(store_open(t->path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "migration to schema version 2 failed"));
    assert_int_equal(file_int(t->path, "SELECT value FROM meta WHERE key = 'schema_version'"), 1);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM pragma_table_info('runs') "
                                       "WHERE name = 'unused_ignores'"),
                     0);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM runs"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_private_wal_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_files_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_not_ours_left_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_is_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_batch_replaces_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folded_rows_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_needs_a_started_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_database_counts_lost_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_counts_lost_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_write_failed_end_still_recorded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_end_not_recordable_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discarded_run_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_while_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_findings_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_batch_replaces_findings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_findings_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_with_findings_freed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plans_written_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_suggestions_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_changes_nothing, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
