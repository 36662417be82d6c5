-- schema.sql — pgscope's report database, schema version 6 (STORE_SCHEMA_VERSION in store.h).
--
-- This file always describes the newest schema: pgscope runs it on an empty file. A file made
-- by an older pgscope is carried forward by the migration steps in src/store/store.c, so any
-- change here needs a step there and a new version number in both places.
--
-- Conventions, so that the file is easy to read with the sqlite3 shell:
--   * timestamps are UTC text with milliseconds, '2026-11-21 18:40:00.123': they sort as
--     text and work with SQLite's date functions (julianday(ended_at) - julianday(started_at));
--   * durations are milliseconds (REAL) in columns named *_ms;
--   * a fingerprint is 16 hex digits, the same for every statement of the same shape;
--   * database and user_name are '' when the client did not say.
-- doc/report-schema.md describes every column.

-- What the file is: application 'pgscope' and the schema version.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('application', 'pgscope'), ('schema_version', '10');

-- One row per `pgscope proxy` lifetime. The counters are rewritten with every batch, so they
-- are current while pgscope runs; ended_at stays NULL until a clean stop.
CREATE TABLE runs (
    id                    INTEGER PRIMARY KEY,
    label                 TEXT,               -- --run-label, NULL when not given
    started_at            TEXT NOT NULL,
    ended_at              TEXT,
    pgscope_version       TEXT NOT NULL,
    upstream              TEXT,               -- the server address pgscope forwarded to
    connections           INTEGER NOT NULL DEFAULT 0,  -- client connections accepted
    statements            INTEGER NOT NULL DEFAULT 0,  -- statements executed (all shapes)
    events_dropped        INTEGER NOT NULL DEFAULT 0,  -- events the analysis had no room for
    fingerprint_fallbacks INTEGER NOT NULL DEFAULT 0,  -- texts libpg_query could not parse
    fingerprint_parses    INTEGER NOT NULL DEFAULT 0,  -- texts fingerprinted by libpg_query
    fingerprint_hits      INTEGER NOT NULL DEFAULT 0,  -- texts found in the fingerprint cache
    track_desyncs         INTEGER NOT NULL DEFAULT 0,  -- times protocol tracking lost its place
    lost_writes           INTEGER NOT NULL DEFAULT 0,  -- rows this file refused (locked, full)
    unused_ignores        TEXT,               -- JSON array: N+1 allow-list entries never matched
    max_shapes            INTEGER,            -- the cap on statement rows; NULL before version 5
    folded_shapes         INTEGER NOT NULL DEFAULT 0, -- statement rows folded into 'other'
    folded_calls          INTEGER NOT NULL DEFAULT 0, -- their calls
    explain_login_error   TEXT                -- why the EXPLAIN side connection could not log
                                              -- in (first failure); NULL when it never failed so
);

-- One row per client connection of a run.
CREATE TABLE connections (
    run_id            INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    conn_id           INTEGER NOT NULL,       -- pgscope's number for the connection
    client_addr       TEXT,                   -- 'host:port', or 'unix'
    user_name         TEXT,
    database          TEXT,
    application_name  TEXT,
    started_at        TEXT NOT NULL,
    ended_at          TEXT,                   -- NULL while open
    bytes_from_client INTEGER NOT NULL DEFAULT 0,
    bytes_from_server INTEGER NOT NULL DEFAULT 0,
    statements        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, conn_id)
);

-- One row per statement shape (fingerprint), database and user of a run: cumulative figures
-- for the whole run, replaced as the run goes on. Past max_shapes rows, the least costly
-- shapes are folded into one reserved row, fingerprint 'other' (database and user_name ''),
-- whose calls, errors, rows and times are exactly those of the shapes folded.
CREATE TABLE statements (
    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fingerprint    TEXT NOT NULL,
    database       TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    query          TEXT,                      -- normalized: literals replaced by $1, $2...
    command        TEXT,                      -- SELECT, INSERT, UPDATE, COPY...
    fallback       INTEGER NOT NULL DEFAULT 0, -- 1: libpg_query could not parse the text
    calls          INTEGER NOT NULL,
    errors         INTEGER NOT NULL DEFAULT 0,
    rows           INTEGER NOT NULL DEFAULT 0, -- rows returned or affected, all calls
    total_ms       REAL NOT NULL,
    min_ms         REAL,
    max_ms         REAL,
    mean_ms        REAL,
    stddev_ms      REAL,
    p50_ms         REAL,
    p95_ms         REAL,
    p99_ms         REAL,
    histogram      BLOB,                      -- latency histogram, see doc/report-schema.md
    first_seen     TEXT,
    last_seen      TEXT,
    example_query  TEXT,                      -- NULL unless store_params is on
    example_params TEXT,                      -- NULL unless store_params is on
    PRIMARY KEY (run_id, fingerprint, database, user_name)
);
-- The report's "top statements of a run" is an index range scan with LIMIT.
CREATE INDEX statements_by_total ON statements (run_id, total_ms DESC);
-- Merging a shape across runs (pgscope report --all): total_ms makes it a covering index for
-- the report's GROUP BY, a fraction of the table to read.
CREATE INDEX statements_by_shape ON statements (fingerprint, database, user_name, total_ms);

-- Errors of a statement shape by SQLSTATE; sqlstate '' counts codes beyond the ones kept.
CREATE TABLE statement_errors (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    database    TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    sqlstate    TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (run_id, fingerprint, database, user_name, sqlstate)
);
CREATE INDEX statement_errors_by_shape ON statement_errors (fingerprint, database, user_name);

-- Calls and time of a statement shape per set of sqlcommenter tags (/*action='index'*/),
-- all databases and users together.
CREATE TABLE statement_tags (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    tags        TEXT NOT NULL,                -- canonical "key=value,key2=value2"
    calls       INTEGER NOT NULL,
    total_ms    REAL NOT NULL,
    PRIMARY KEY (run_id, fingerprint, tags)
);
CREATE INDEX statement_tags_by_fingerprint ON statement_tags (fingerprint);

-- Statements per test of a run: the test a statement ran in is the sqlcommenter tag test of the
-- statement, else its connection's application_name (a test runner sets one per test);
-- statements with neither are not counted here. One row per test and shape.
CREATE TABLE test_statements (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    test        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    calls       INTEGER NOT NULL,
    total_ms    REAL NOT NULL,
    PRIMARY KEY (run_id, test, fingerprint)
);

-- N+1 loops (a parent statement, then one child statement per row it returned), duplicate
-- queries (one statement repeated with the same values) and insert loops (one-row INSERTs of
-- one shape, again and again) of a run, each aggregated over every unit of work it was seen in,
-- replaced as the run goes on. A duplicate or an insert loop has no parent: parent_fingerprint
-- is '' and child_fingerprints holds the repeated statement. The columns' comments below date
-- from version 2 (the table's text must stay as it was); since version 7 kind may also be
-- 'batch_insert', confirmed means the values walk a parent column's rows, chance is the chance
-- that this proof is a coincidence (NULL when not proven) and orm the ORM whose SQL style the
-- statements show ('django', 'sqlalchemy', 'activerecord', 'sequelize', or ''); since version 8
-- test is the test of its first occurrence (the sqlcommenter tag test, else the
-- application_name; '' when neither). What counts as proof: doc/report-schema.md.
CREATE TABLE n_plus_one (
    run_id             INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL,          -- 'n_plus_one' or 'duplicate'
    parent_fingerprint TEXT NOT NULL,          -- '' for a duplicate
    parent_query       TEXT,                   -- normalized; NULL for a duplicate
    child_fingerprints TEXT NOT NULL,          -- the loop body's statements, 'fp1,fp2'
    child_queries      TEXT NOT NULL,          -- JSON array of their normalized texts
    confirmed          INTEGER NOT NULL DEFAULT 0, -- 1: values linked to a parent column
    linked_column      TEXT NOT NULL DEFAULT '', -- that column, 'orders.customer_id'
    occurrences        INTEGER NOT NULL,       -- units of work it was seen in
    max_n              INTEGER NOT NULL,       -- most executions of the child in one unit
    total_n            INTEGER NOT NULL,       -- executions of the child, all units
    total_ms           REAL NOT NULL,          -- time spent in the children
    saving_ms          REAL NOT NULL,          -- estimated time a batched query saves
    examples           TEXT NOT NULL DEFAULT '[]', -- JSON array of parameter tuples
    severity           TEXT NOT NULL,          -- 'high', 'medium' or 'low'
    suggestion         TEXT,                   -- the fix, written out
    first_seen         TEXT,
    last_seen          TEXT, chance REAL, orm TEXT NOT NULL DEFAULT '', test TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, kind, parent_fingerprint, child_fingerprints)
);

-- EXPLAIN plans of sampled slow statements, replayed on pgscope's side connection. A plan is
-- written once and never changed. Literal values in the plan's expressions and the replayed
-- parameters are kept only with store_params; otherwise constants read '?'. Since version 10
-- test is the test the sampled execution ran in (as in test_statements; '' when none), which its
-- plan_findings belong to too. pgscope report --plan ID prints one as a tree.
CREATE TABLE plans (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,        -- the plan's number within its run
    fingerprint  TEXT NOT NULL,
    database     TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    query        TEXT NOT NULL,           -- normalized text of the statement
    params       TEXT,                    -- JSON array of the values bound; NULL unless store_params
    analyzed     INTEGER NOT NULL,        -- 1: EXPLAIN ANALYZE ran it; 0: planned only (DML)
    trigger_ms   REAL NOT NULL,           -- duration of the execution that was sampled
    planning_ms  REAL,                    -- from the plan; NULL when it has none
    execution_ms REAL,                    -- from the plan; NULL without ANALYZE
    side_ms      REAL NOT NULL,           -- time the side connection spent on it
    plan         TEXT NOT NULL,           -- EXPLAIN (FORMAT JSON) output
    taken_at     TEXT NOT NULL, test TEXT NOT NULL DEFAULT '',
    UNIQUE (run_id, seq)
);
CREATE INDEX plans_by_shape ON plans (run_id, fingerprint);

-- What each plan says is wrong, one row per finding, with the node it is about.
CREATE TABLE plan_findings (
    plan_id     INTEGER NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    n           INTEGER NOT NULL,         -- its order within the plan
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,            -- the plan's statement
    kind        TEXT NOT NULL,            -- 'seq_scan_filter', 'misestimate', 'sort_spill',
                                          -- 'hash_batches', 'nested_loop_inner_scan',
                                          -- 'lossy_bitmap', 'heap_fetches', 'temp_written'
    node_path   TEXT NOT NULL,            -- 'Limit > Sort > Seq Scan on orders'
    relation    TEXT NOT NULL DEFAULT '', -- the table involved, if any
    detail      TEXT NOT NULL,            -- the numbers, for people
    magnitude   REAL NOT NULL,            -- rows removed, estimate factor, KB, batches, loops...
    PRIMARY KEY (plan_id, n)
);
CREATE INDEX plan_findings_by_shape ON plan_findings (run_id, fingerprint);

-- Slow statements (EXPLAIN candidates) of a run by what became of them: 'sample' counts the
-- samples decided; every other reason is a statement not sampled (see doc/report-schema.md).
CREATE TABLE explain_skips (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (run_id, reason)
);

-- Index suggestions of a run: the latest consolidation across every sampled statement, replaced
-- as the run goes on. Verified ones (hypopg: the plan used the hypothetical index and its cost
-- dropped by advisor_min_reduction) come first, by benefit; then unverified ones (hypopg
-- missing in that database), by the time of the statements they would serve.
CREATE TABLE index_suggestions (
    run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    rank             INTEGER NOT NULL,           -- 1 first
    database         TEXT NOT NULL,
    ddl              TEXT NOT NULL,              -- CREATE INDEX CONCURRENTLY ...
    schema_name      TEXT NOT NULL DEFAULT '',   -- '' when the statements did not qualify it
    table_name       TEXT NOT NULL,
    columns          TEXT NOT NULL,              -- JSON array, in index order
    predicate        TEXT NOT NULL DEFAULT '',   -- a partial index's WHERE; '' for none
    verified         INTEGER NOT NULL,
    cost_before      REAL,                       -- planner cost of the statements it helps;
    cost_after       REAL,                       -- NULL when unverified
    benefit_ms       REAL,                       -- their time x cost reduction; NULL unverified
    size_bytes       REAL,                       -- hypopg's estimate; NULL unknown
    statements       TEXT NOT NULL,              -- JSON array of the fingerprints it helps
    write_statements INTEGER NOT NULL DEFAULT 0, -- INSERT/UPDATE/DELETE seen on the table
    breaks_hot       INTEGER NOT NULL DEFAULT 0, -- 1: UPDATEs set one of its columns
    misestimate      INTEGER NOT NULL DEFAULT 0, -- 1: a plan's row estimate was 10x off
    PRIMARY KEY (run_id, rank)
);

-- Views for people: SELECT * FROM slowest_statements WHERE run_id = 3 LIMIT 10;

-- Every statement shape with its run's label and per-call figures.
CREATE VIEW statement_stats AS
SELECT s.run_id,
       r.label AS run_label,
       s.fingerprint,
       s.database,
       s.user_name,
       s.command,
       s.query,
       s.calls,
       s.errors,
       s.rows,
       s.total_ms,
       s.mean_ms,
       s.min_ms,
       s.max_ms,
       s.stddev_ms,
       s.p50_ms,
       s.p95_ms,
       s.p99_ms,
       CAST(s.rows AS REAL) / NULLIF(s.calls, 0) AS rows_per_call,
       CAST(s.errors AS REAL) / NULLIF(s.calls, 0) AS error_share,
       s.fallback,
       s.first_seen,
       s.last_seen
FROM statements s
JOIN runs r ON r.id = s.run_id;

-- The same, most total time first: where the database time of each run went.
CREATE VIEW slowest_statements AS
SELECT * FROM statement_stats ORDER BY run_id, total_ms DESC;

-- One line per run: duration in seconds (NULL until a clean stop) and totals.
CREATE VIEW run_summary AS
SELECT r.id AS run_id,
       r.label,
       r.started_at,
       r.ended_at,
       (julianday(r.ended_at) - julianday(r.started_at)) * 86400.0 AS duration_s,
       r.connections,
       r.statements,
       (SELECT count(*) FROM statements s WHERE s.run_id = r.id) AS shapes,
       (SELECT coalesce(sum(s.errors), 0) FROM statements s WHERE s.run_id = r.id) AS errors,
       (SELECT total(s.total_ms) FROM statements s WHERE s.run_id = r.id) AS total_ms,
       r.events_dropped,
       r.lost_writes,
       r.fingerprint_fallbacks,
       r.pgscope_version,
       r.upstream
FROM runs r;

-- N+1 and duplicate-query findings with their run's label and the first child's text, worst
-- first within each run: severity, then the time a fix would save.
-- SELECT * FROM n_plus_one_findings WHERE run_id = 3;
CREATE VIEW n_plus_one_findings AS
SELECT n.run_id,
       r.label AS run_label,
       n.kind,
       n.severity,
       n.confirmed,
       n.parent_query,
       CASE WHEN json_valid(n.child_queries) THEN json_extract(n.child_queries, '$[0]') END
           AS child_query,
       n.linked_column,
       n.occurrences,
       n.max_n,
       n.total_n,
       n.total_ms,
       n.saving_ms,
       n.suggestion,
       n.examples,
       n.parent_fingerprint,
       n.child_fingerprints,
       n.child_queries,
       n.first_seen,
       n.last_seen
FROM n_plus_one n
JOIN runs r ON r.id = n.run_id
ORDER BY n.run_id,
         CASE n.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2
              ELSE 3 END,
         n.saving_ms DESC;

-- Plan findings, most costly statement first: weight_ms is the statement's observed calls x
-- mean time in the run (its total_ms, all databases and users), so the finding that matters
-- most in this traffic comes first.
-- SELECT * FROM plan_findings_ranked WHERE run_id = 3;
CREATE VIEW plan_findings_ranked AS
SELECT f.run_id,
       r.label AS run_label,
       coalesce(w.weight_ms, 0) AS weight_ms,
       f.kind,
       f.relation,
       f.detail,
       f.magnitude,
       f.node_path,
       f.fingerprint,
       p.query,
       f.plan_id,
       p.analyzed,
       w.calls,
       w.mean_ms
FROM plan_findings f
JOIN plans p ON p.id = f.plan_id
JOIN runs r ON r.id = f.run_id
LEFT JOIN (SELECT run_id, fingerprint, total(total_ms) AS weight_ms, sum(calls) AS calls,
                  total(total_ms) / NULLIF(sum(calls), 0) AS mean_ms
           FROM statements GROUP BY run_id, fingerprint) w
       ON w.run_id = f.run_id AND w.fingerprint = f.fingerprint
ORDER BY f.run_id, weight_ms DESC, f.magnitude DESC;
