/* report_int.h — what `pgscope report` reads from the report database, shared by the loader
 * and the renderers. */
#ifndef PGSCOPE_REPORT_INT_H
#define PGSCOPE_REPORT_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Numbers the file may not have (a NULL column, a run not ended) are NAN. */

typedef struct report_run {
    int64_t id;
    char *label, *started_at, *ended_at, *upstream, *pgscope_version; /* NULL when absent */
    double duration_s;
    int64_t connections, statements, events_dropped, lost_writes;
    int64_t fingerprint_fallbacks, fingerprint_parses, fingerprint_hits, track_desyncs;
    bool has_unused_ignores; /* false: the run recorded no list (no allow-list, or schema 1) */
    char **unused_ignores;   /* N+1 allow-list entries that never matched in the run */
    size_t n_unused_ignores;
} report_run;

typedef struct report_error {
    char sqlstate[6]; /* "" for codes beyond the ones kept */
    int64_t count;
} report_error;

typedef struct report_tag {
    char *tags;
    int64_t calls;
    double total_ms;
} report_tag;

/* One statement shape (fingerprint, database, user), for one run or merged over all runs. */
typedef struct report_statement {
    char fingerprint[17];
    char *database, *user, *query, *command;
    char *first_seen, *last_seen;
    char *example_query, *example_params; /* NULL unless examples were kept */
    bool fallback;
    int64_t calls, errors, rows;
    double total_ms, mean_ms, min_ms, max_ms, stddev_ms, p50_ms, p95_ms, p99_ms;
    report_error *errs;
    size_t n_errs;
    report_tag *tags;
    size_t n_tags;
} report_statement;

/* An N+1 loop or a duplicate query, for one run or merged over all runs (same kind, parent and
 * children). */
typedef struct report_nplusone {
    bool duplicate;              /* kind 'duplicate', else 'n_plus_one' */
    char parent_fingerprint[17]; /* "" for a duplicate */
    char *parent_query;          /* NULL for a duplicate */
    char *child_fingerprints;    /* comma-separated, as stored */
    char **child_queries;        /* the loop body's normalized texts */
    size_t n_child_queries;
    bool confirmed;
    char *linked_column; /* NULL when not linked */
    int64_t occurrences, max_n, total_n;
    double total_ms, saving_ms;
    char *examples;       /* JSON array text, as stored */
    char **example_texts; /* its elements for people: strings as they are, tuples as JSON */
    size_t n_example_texts;
    char severity[8];
    char *suggestion;
    char *first_seen, *last_seen;
} report_nplusone;

typedef struct report_data {
    bool all; /* every run merged */
    int schema_version;
    report_run *runs; /* oldest first */
    size_t n_runs;
    report_statement *stmts; /* most total time first */
    size_t n_stmts;
    int64_t shapes;            /* statement shapes in scope, before the limit */
    report_nplusone *findings; /* N+1 loops, then duplicates, each most severe first */
    size_t n_findings;
    char **unused_ignores; /* allow-list entries that never matched (in any run, with --all) */
    size_t n_unused_ignores;
} report_data;

/* Reads the run (run_id > 0), the latest run (run_id 0) or all runs, the top `limit` statements
 * (0: all) and every N+1 finding, from a file of the given schema version. False with a reason
 * in err. */
bool report_load(sqlite3 *db, int schema_version, int64_t run_id, bool all, int limit,
                 report_data *out, char *err, size_t errlen);
void report_data_free(report_data *d);

/* Renderers: false when the output could not be produced (out of memory). */
bool report_render_text(FILE *out, const report_data *d, const char *path);
bool report_render_json(FILE *out, const report_data *d);

#endif
