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
    int64_t max_shapes;                  /* the cap on statement rows; -1: not recorded */
    int64_t folded_shapes, folded_calls; /* statement rows folded into "other", their calls */
    char *explain_login_error; /* why the EXPLAIN side connection could not log in; NULL: it
                                * never failed so (or schema before 6) */
    bool has_unused_ignores;   /* false: the run recorded no list (no allow-list, or schema 1) */
    char **unused_ignores;     /* N+1 allow-list entries that never matched in the run */
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
    struct stats_hist *hist; /* its latency histogram, in a one-run report; else NULL */
} report_statement;

/* A test of the run (schema 9): its statements and their time, and the findings seen in it. */
typedef struct report_test {
    char *name;
    int64_t statements, shapes, findings;
    double total_ms;
} report_test;

/* An N+1 loop or a duplicate query, for one run or merged over all runs (same kind, parent and
 * children). */
typedef struct report_nplusone {
    bool duplicate;              /* kind 'duplicate' */
    bool insert_loop;            /* kind 'batch_insert' */
    char parent_fingerprint[17]; /* "" without a parent (duplicate, insert loop) */
    char *parent_query;          /* NULL without a parent */
    double chance;               /* of the proof being a coincidence; -1 when not proven */
    char orm[16];                /* the ORM the SQL shows, or "" */
    char *test;                  /* the test of its first occurrence; NULL when not known */
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

/* A sampled EXPLAIN plan, without its text (only `pgscope report --plan` reads that). */
typedef struct report_plan {
    int64_t id, run_id, seq;
    char fingerprint[17];
    char *database, *user, *query, *taken_at;
    char *params;  /* JSON array text; NULL unless store_params was on */
    bool analyzed; /* false: planned only (DML, not executed) */
    double trigger_ms, planning_ms, execution_ms, side_ms;
} report_plan;

/* A plan finding, consolidated over the plans of its statement shape: one per (fingerprint,
 * kind, relation, node path), from the plan where it was largest. */
typedef struct report_plan_finding {
    int64_t plan_id; /* the plan to look at: the one with the largest magnitude */
    char fingerprint[17];
    char kind[32];
    char *query, *relation, *node_path, *detail;
    double magnitude;
    double weight_ms; /* the shape's time in scope: calls x mean, 0 without a statement row */
    int64_t calls;    /* -1 without a statement row */
    double mean_ms;   /* NAN without calls */
    int64_t plans;    /* plans of the shape that show it */
    char *test;       /* the test that plan's execution ran in; NULL for none */
} report_plan_finding;

/* What became of slow statements (EXPLAIN candidates): "sample" or a reason not to. */
typedef struct report_explain_count {
    char reason[16];
    int64_t count;
} report_explain_count;

/* A statement an index suggestion would help, looked up in the suggestions' run. */
typedef struct report_index_statement {
    const char *fingerprint; /* one of the suggestion's fingerprints */
    char *query;             /* normalized text; NULL when the run has no statement row for it */
    int64_t calls;           /* -1 without a statement row */
    double total_ms;         /* calls x mean in its database (all users); NAN without a row */
    double mean_ms;          /* NAN without calls */
    size_t order;            /* its place in the stored list */
} report_index_statement;

/* A test that ran statements an index suggestion helps (schema 9). */
typedef struct report_index_test {
    char *name;
    int64_t calls;   /* of those statements, in the test */
    double total_ms; /* their time in the test */
} report_index_test;

/* An index suggestion (schema 4): one row of the run's latest consolidation. */
typedef struct report_index {
    int64_t run_id, rank;
    char *database, *ddl, *schema, *table, *predicate; /* schema, predicate: "" for none */
    char **columns;                                    /* in index order */
    size_t n_columns;
    bool verified;
    double cost_before, cost_after, benefit_ms, size_bytes; /* NAN when NULL */
    char **fingerprints;                                    /* the statements it helps, as stored */
    size_t n_fingerprints;
    report_index_statement *statements; /* the same, most time first, for people */
    size_t n_statements;
    report_index_test *tests; /* the tests that ran them, most time first */
    size_t n_tests;
    int64_t write_statements;
    bool breaks_hot, misestimate;
} report_index;

typedef struct report_data {
    bool all;  /* every run merged */
    int limit; /* --limit: statements and, in the text, plan findings and index suggestions
                * shown (0: all) */
    int schema_version;
    report_run *runs; /* oldest first */
    size_t n_runs;
    report_statement *stmts; /* most total time first; the "other" row is not among them */
    size_t n_stmts;
    int64_t shapes;            /* statement shapes in scope, before the limit */
    report_statement *other;   /* the shapes folded by max_shapes, as one statement (merged
                                * over the runs in scope); NULL when nothing was folded */
    int64_t folded_shapes;     /* statement rows folded, all runs in scope */
    report_nplusone *findings; /* N+1 loops, then duplicates, each most severe first */
    size_t n_findings;
    char **unused_ignores; /* allow-list entries that never matched (in any run, with --all) */
    size_t n_unused_ignores;
    /* Schema 3 and later; empty for older files. */
    report_plan *plans; /* plans taken, oldest first */
    size_t n_plans;
    report_plan_finding *plan_findings; /* most weight first, then largest magnitude */
    size_t n_plan_findings;
    report_explain_count *explain; /* summed over the runs in scope, most first */
    size_t n_explain;
    /* Schema 4 and later; empty for older files. A run's suggestions are one consolidation,
     * replaced as it goes: with --all, those of the latest run that has any, never merged. */
    /* Schema 9 and later: statements per test, most time first. */
    struct report_test *tests;
    size_t n_tests;
    report_index *indexes; /* rank 1 first */
    size_t n_indexes;
    int64_t indexes_run; /* the run they come from; 0 when none */
} report_data;

/* One plan for `pgscope report --plan ID`, with its text and its findings in plan order
 * (weight and plans are not filled in). */
typedef struct report_plan_detail {
    report_plan plan;
    char *run_label; /* NULL when the run has none */
    char *text;      /* EXPLAIN (FORMAT JSON) output, as stored */
    report_plan_finding *findings;
    size_t n_findings;
} report_plan_detail;

/* Reads the run (run_id > 0), the latest run (run_id 0) or all runs, the top `limit` statements
 * (0: all), every N+1 finding, the plans, plan findings and EXPLAIN outcomes, and the index
 * suggestions, from a file of the given schema version. False with a reason in err. */
bool report_load(sqlite3 *db, int schema_version, int64_t run_id, bool all, int limit,
                 report_data *out, char *err, size_t errlen);
void report_data_free(report_data *d);

/* Reads plan `id` with its findings. False with a reason in err: no such plan (also in a file
 * from before EXPLAIN sampling), or a read error. */
bool report_load_plan(sqlite3 *db, int schema_version, int64_t id, report_plan_detail *out,
                      char *err, size_t errlen);
void report_plan_detail_free(report_plan_detail *p);

/* Renderers: false when the output could not be produced (out of memory). */
bool report_render_text(FILE *out, const report_data *d, const char *path);

/* ---- shared by the subcommands that read a report database (report.c) ---- */

/* Opens the file read-only (a report never changes it, and can run while pgscope writes): NULL
 * with the reason in err when it is not a report database this pgscope reads. */
sqlite3 *report_open_db(const char *path, int *version, char *err, size_t errlen);
/* The value of --name VALUE or --name=VALUE; NULL (and *i unchanged) when arg is not --name;
 * *missing set when the value is. */
const char *report_option_value(int argc, char **argv, int *i, const char *name, bool *missing);
bool report_parse_int(const char *s, long long min, long long max, long long *out);
/* A subcommand's arguments: --help or -h prints usage and returns 1; every other argument goes
 * to option, which returns 0 (taken), 2 (bad usage, the reason printed) or -1 (not one of its
 * own: "unknown argument", or "a value is missing" when *missing was set, is printed here).
 * Returns 0, 1, or 2 after "Try `pgscope CMD --help`". */
int report_parse_args(const char *cmd, int argc, char **argv, void (*print_usage)(FILE *out),
                      int (*option)(int argc, char **argv, int *i, bool *missing, void *ctx),
                      void *ctx);
/* --format VALUE: its index in names (n of them, in the order of the caller's enum) into *out;
 * 0, or 2 with the reason printed ("is not one of text, json, ..."). */
int report_format_option(const char *cmd, const char *v, const char *const *names, int n, int *out);
/* --annotations VALUE: github is the one kind; 0, or 2 with the reason printed. */
int report_annotations_option(const char *cmd, const char *v, bool *github);
/* An id option's value (a run, a plan) into *out: 0, or 2 with the reason printed. */
int report_id_option(const char *cmd, const char *name, const char *v, int64_t *out);
/* The files of --db given more than once (CI shards): the first is the main one. */
#define REPORT_MAX_SHARDS 16
typedef struct report_shards {
    const char *path[REPORT_MAX_SHARDS];
    int n;
} report_shards;

/* One more --db: 0, or 2 with the reason printed. */
int report_add_shard(const char *cmd, report_shards *s, const char *path);
/* The run (0: the latest) of the first file merged with the latest run of each other one
 * (report_merge); false with the reason printed. */
bool report_load_shards(const char *cmd, const report_shards *s, int64_t run_id, report_data *d);

/* One run (0: the latest) of the file at path, every statement, in one read transaction;
 * false with the reason printed, "pgscope CMD: ...". */
bool report_load_file(const char *cmd, const char *path, int64_t run_id, report_data *d);
/* Adds s, the run of another file (a CI shard), to d, exactly: runs listed, statement counts
 * added, histograms merged (the percentiles are those of one file holding both), findings and
 * tests, plan findings united (the largest of one shape's finding stands); plans and index
 * suggestions listed. s keeps only what it still owns, for report_data_free. False if memory
 * ran out. */
bool report_merge(report_data *d, report_data *s);
/* A baseline file (`pgscope baseline save`, baseline.c) as report data: the findings' keys,
 * the statements per test, the shapes' calls, latency and histograms. False with the reason
 * printed. */
bool report_load_baseline(const char *path, report_data *d);
/* Whether two statement rows are one shape: fingerprint, database and user (load.c). */
bool report_same_statement(const report_statement *x, const report_statement *y);
/* Whether two plan findings are one: shape, kind, relation and node path (load.c). */
bool report_same_plan_finding(const report_plan_finding *x, const report_plan_finding *y);
/* Whether two findings are one pattern (kind, parent, children), in two runs or files. */
bool report_same_finding(const report_nplusone *x, const report_nplusone *y);
/* "N+1 loop", "duplicate query" or "insert loop". */
const char *report_kind_name(const report_nplusone *f);
/* s on one line of at most cap - 1 bytes: runs of white space and control characters as one
 * space (and '|', which breaks a Markdown table), cut with "..." when longer. */
void report_one_line(const char *s, char *out, size_t cap);
bool report_render_json(FILE *out, const report_data *d);
/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms, surrogates or values
 * above U+10FFFF), 0 if it is not one (render_json.c). */
size_t report_utf8_sequence(const unsigned char *p, size_t avail);

/* Where the HTML report gets a plan's EXPLAIN JSON: json(id, ctx) returns it malloc'd, or NULL
 * when the plan is not at hand (a report of several files). */
typedef struct report_html_plans {
    char *(*json)(int64_t plan_id, void *ctx);
    void *ctx;
} report_html_plans;
/* Statements the HTML page lists at most (its --limit without one, and its cap with one). */
#define REPORT_HTML_MAX_STATEMENTS 500
/* check's verdict on the page: its problems (failed ones shown) and its rules, in words. */
typedef struct report_gate {
    const struct report_problem *problems;
    size_t n;
    const char *rules;
} report_gate;
/* The report as one self-contained HTML page (render_html.c); plans and gate may be NULL. */
bool report_render_html(FILE *out, const report_data *d, const report_html_plans *plans,
                        const report_gate *gate);

/* The page's pieces, for other pages (diff): the head with the style, then <body>; </main>,
 * the footer and the script (version: pgscope's, or NULL); text escaped for HTML. */
void report_html_begin(FILE *out, const char *title);
void report_html_end(FILE *out, const char *version);
void report_html_text(FILE *out, const char *s);

/* ---- outputs for CI (ci.c) ---- */

/* Something CI shows: a finding of the report, a failed rule of check. Strings are borrowed. */
typedef struct report_problem {
    const char *type;   /* JUnit failure type: "n_plus_one", "duplicate", "batch_insert",
                         * "statements", "latency", "plan" */
    const char *title;  /* "N+1 loop", "more statements", "seq_scan_filter on orders"... */
    const char *test;   /* the test it belongs to; NULL for none */
    const char *parent; /* an N+1 loop's parent query, or NULL */
    const char *query;  /* the SQL it is about, or NULL */
    const char *key;    /* what tells two problems of no test apart (fingerprints), or NULL */
    const char *fix;    /* the fix, written out, or NULL */
    char detail[400];   /* the numbers, one line */
    bool failed;        /* false: listed as passing where a format lists passes (JUnit) */
} report_problem;

/* Every finding of d as a problem (N+1 loops, duplicates, insert loops, plan findings) into a
 * malloc'd *out; returns how many (*out NULL when memory ran out). render_md.c */
size_t report_problems(const report_data *d, report_problem **out);
/* The report in Markdown: a verdict line, then the findings, index suggestions, tests and top
 * statements as tables (--limit rows each, 20 with 0). */
bool report_render_markdown(FILE *out, const report_data *d);
/* p as finding f (its type, title, test, parent, child, fingerprints and fix); the caller
 * writes detail and failed. */
void report_problem_of(report_problem *p, const report_nplusone *f);
/* p as plan finding f, its detail "LEAD on TABLE: DETAIL (plan N)"; the caller writes failed. */
void report_problem_of_plan(report_problem *p, const report_plan_finding *f, const char *lead);
/* The first statement of a finding's loop body ("" when none). */
const char *report_first_child(const report_nplusone *f);
/* Where a subcommand writes: --output FILE (path), or standard output when path is NULL. NULL
 * with the reason printed. */
FILE *report_output_open(const char *cmd, const char *path);
/* Flushes out and closes it (unless standard output): true when everything was written and
 * rendered; else false with the reason printed ("out of memory" when only rendered failed). */
bool report_output_close(const char *cmd, const char *path, FILE *out, bool rendered);
/* A Markdown table of the failed problems, then each fix in a <details> block. */
void report_ci_markdown(FILE *out, const report_problem *p, size_t n);
/* s as a code span in a table cell: one line of at most max bytes, no backticks, | escaped. */
void report_md_code(FILE *out, const char *s, size_t max);
/* JUnit XML: one testcase per test of d and per test a problem names (its failed problems as
 * one failure), then one per problem of no test. False if memory ran out. */
bool report_ci_junit(FILE *out, const char *suite, const report_data *d, const report_problem *p,
                     size_t n);
/* One GitHub workflow command per failed problem: level is "error", "warning" or "notice". */
void report_ci_annotations(FILE *out, const char *level, const report_problem *p, size_t n);
bool report_render_plan_text(FILE *out, const report_plan_detail *p);
bool report_render_plan_json(FILE *out, const report_plan_detail *p);

#endif
