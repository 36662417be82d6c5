/* store.h — the report database: a SQLite file (schema in sql/schema.sql) written by its own
 * thread in batched transactions. Writers never wait on it: a batch is refused while the
 * previous one is still being written, and what a failed write lost is counted. */
#ifndef PGSCOPE_STORE_H
#define PGSCOPE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 10

/* The fingerprint of the reserved statements row that holds, with database and user '', the
 * statement shapes folded by max_shapes (see doc/report-schema.md). */
#define STORE_OTHER_FINGERPRINT "other"

/* One statement shape's statistics in this run (replaces the earlier row of the same key). */
typedef struct store_statement_row {
    char fingerprint[17]; /* hex */
    char *database, *user, *query, *command;
    bool fallback;
    int64_t calls, errors, rows;
    double total_ms, min_ms, max_ms, mean_ms, stddev_ms, p50_ms, p95_ms, p99_ms;
    uint8_t *histogram; /* stats_hist_encode output */
    size_t histogram_len;
    int64_t first_us, last_us;            /* wall clock, microseconds since the epoch */
    char *example_query, *example_params; /* NULL unless examples are kept */
    struct {
        char sqlstate[6];
        int64_t count;
    } errs[9]; /* "other" as sqlstate "" when more codes than fit were seen */
    int n_errs;
} store_statement_row;

/* A statement row to remove: its shape was folded into the "other" row after being written. */
typedef struct store_statement_key {
    char fingerprint[17]; /* hex */
    char *database, *user;
} store_statement_key;

/* One connection of this run (replaces the earlier row of the same conn_id). */
typedef struct store_connection_row {
    uint64_t conn_id;
    char *client_addr, *user, *database, *application_name;
    int64_t start_us, end_us; /* end_us 0 while open */
    uint64_t bytes_from_client, bytes_from_server;
    int64_t statements;
} store_connection_row;

/* Calls and time per statement shape and sqlcommenter tag set (replaces the earlier row). */
typedef struct store_tag_row {
    char fingerprint[17];
    char *tags; /* canonical "key=value,key2=value2" */
    int64_t calls;
    double total_ms;
} store_tag_row;

/* An N+1 or duplicate-query finding of this run (replaces the earlier row of the same key:
 * kind, parent fingerprint, child fingerprints). */
typedef struct store_nplusone_row {
    char kind[16];               /* "n_plus_one", "duplicate" or "batch_insert" */
    char parent_fingerprint[17]; /* "" for a duplicate or an insert loop */
    char *parent_query;
    char child_fingerprints[4 * 17 + 4]; /* comma-separated hex */
    char *child_queries;                 /* JSON array of the normalized texts */
    bool confirmed;
    char *linked_column;
    int64_t occurrences, max_n, total_n;
    double total_ms, saving_ms;
    char *examples; /* JSON array of parameter tuples (arrays), or of "[redacted]" */
    char severity[8];
    char *suggestion;
    int64_t first_us, last_us;
    double chance; /* of the proof being a coincidence (confirmed findings only) */
    char orm[16];  /* "django", "sqlalchemy", "activerecord", "sequelize" or "" */
    char *test;    /* the test of its first occurrence, or "" */
} store_nplusone_row;

/* One finding of a plan (see explain_finding). */
typedef struct store_plan_finding {
    char kind[32];
    char *node_path, *relation, *detail;
    double magnitude;
} store_plan_finding;

/* A sampled plan with its findings. Written once: a plan already in the file under the same
 * (run, seq) is left as it is, so sending it again after a lost batch is harmless. */
typedef struct store_plan_row {
    uint64_t seq; /* its number within the run, from 1 */
    char fingerprint[17];
    char *database, *user, *query;
    char *params; /* JSON array, or NULL when parameters are not kept */
    char *plan;   /* EXPLAIN (FORMAT JSON) output */
    char *test;   /* the test its execution ran in, or NULL/"" */
    bool analyzed;
    double trigger_ms, planning_ms, execution_ms, side_ms; /* planning/execution < 0: none */
    int64_t taken_us;
    store_plan_finding *findings;
    size_t n_findings;
} store_plan_row;

/* One index suggestion; the batch's list replaces the run's suggestions as a whole. */
typedef struct store_index_row {
    char *database, *ddl, *schema, *table;
    char *columns; /* JSON array */
    char *predicate;
    bool verified;
    double cost_before, cost_after, benefit_ms, size_bytes; /* < 0: unknown (NULL) */
    char *statements;                                       /* JSON array of fingerprints */
    uint64_t write_statements;
    bool breaks_hot, misestimate;
} store_index_row;

/* Run-wide counters, written with every batch. */
typedef struct store_run_counters {
    int64_t ended_us; /* 0 while running */
    uint64_t connections, statements;
    uint64_t events_dropped; /* events the analysis queue had no room for */
    uint64_t fingerprint_fallbacks, fingerprint_parses, fingerprint_hits;
    uint64_t track_desyncs;
    uint64_t max_shapes;                  /* the cap on statement rows; 0: none */
    uint64_t folded_shapes, folded_calls; /* statement rows folded into "other", their calls */
    /* Why the EXPLAIN side connection could not log in (its first such failure, the server's or
     * libpq's first line); "" when it never failed so. */
    char explain_login_error[256];
    /* EXPLAIN candidates by outcome: reason names and cumulative counts, zeros left out. */
    struct {
        char reason[16];
        uint64_t count;
    } explain[24]; /* room for every reason (EXPLAIN_SKIP_COUNT) and a few more */
    int n_explain;
} store_run_counters;

/* A batch owns its rows and their strings; store_batch_free releases everything. */
typedef struct store_batch {
    /* Statement rows: the ones to remove first, then the ones to write. statements_complete:
     * the batch carries every statement row of the run, which replace the run's rows whole. */
    store_statement_key *folded;
    size_t n_folded;
    bool statements_complete;
    store_statement_row *statements;
    size_t n_statements;
    store_connection_row *connections;
    size_t n_connections;
    store_tag_row *tags;
    size_t n_tags;
    store_tag_row *tests; /* statements per test and shape: tags holds the test's name */
    size_t n_tests;
    store_nplusone_row *nplusone;
    size_t n_nplusone;
    store_plan_row *plans;
    size_t n_plans;
    store_index_row *indexes; /* the latest consolidation, when indexes_set */
    size_t n_indexes;
    bool indexes_set;
    char *unused_ignores; /* JSON array of allow-list entries that never matched; may be NULL */
    store_run_counters run;
} store_batch;

void store_batch_free(store_batch *b);
void store_plan_row_free(store_plan_row *r); /* what the row points to, not the row */

typedef struct store store;

/* Opens (creating with mode 0600, WAL mode, schema created or migrated) the database at path;
 * a missing or empty (0-byte) file is a new one. NULL with a reason in err on failure. refused
 * (may be NULL) is set when the file is another program's (SQLite or not) or a newer pgscope's:
 * such a file is only read, never written, so it is left byte for byte as it was. */
store *store_open(const char *path, bool *refused, char *err, size_t errlen);

/* Records a new run and returns its id (negative on failure, with err set). */
int64_t store_begin_run(store *s, const char *label, const char *upstream, int64_t started_us,
                        char *err, size_t errlen);

/* Starts the writer thread. */
bool store_start(store *s);

/* Hands a batch to the writer thread, which frees it. Returns false, leaving the batch with the
 * caller, while the previous batch is still being written. */
bool store_submit(store *s, store_batch *b);

/* Rows the database refused (locked, read-only, full disk...) since the start. */
uint64_t store_lost_writes(const store *s);

/* Removes the run begun by store_begin_run when the process never served (it could not listen):
 * store_close then deletes the run's row instead of ending it, so that the run still going in
 * the same file stays the latest one. */
void store_discard_run(store *s);

/* Writes a last batch synchronously (may be NULL), stops the thread and closes the database.
 * The run's end and its final count of lost rows are written last; when they cannot be, the
 * log says so with the count the file keeps and the count lost in all. */
void store_close(store *s, store_batch *last);

#endif
