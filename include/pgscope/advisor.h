/* advisor.h — index suggestions: candidate indexes read from a sampled statement's parse tree,
 * verified with hypothetical indexes (hypopg) on a side connection of the advisor's own, and
 * consolidated across statements by the time they really cost in the traffic. */
#ifndef PGSCOPE_ADVISOR_H
#define PGSCOPE_ADVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADVISOR_MAX_COLUMNS 3 /* btree columns of a candidate */
#define ADVISOR_NAME 64       /* a schema, table or column name, NUL included (NAMEDATALEN) */
#define ADVISOR_PREDICATE 256 /* a partial index's WHERE, NUL included */

/* One btree index, suggested or existing. Names are as PostgreSQL stores them (unquoted,
 * already case-folded by the parser). */
typedef struct advisor_index {
    char schema[ADVISOR_NAME]; /* "" when the statement did not qualify the table */
    char table[ADVISOR_NAME];
    char columns[ADVISOR_MAX_COLUMNS][ADVISOR_NAME];
    int n_columns;
    char predicate[ADVISOR_PREDICATE]; /* partial index: "status = 'pending'"; "" for none */
} advisor_index;

/* ---- candidates (pure: libpg_query parse trees) ---- */

/* The candidate indexes of one statement, given its text as it ran (literals inline, or $n
 * placeholders): for each table it reads, its equality columns (=, IN, = ANY) in the order
 * written, then either its ORDER BY columns when a LIMIT follows and every sort column is of
 * that table, or its first range column (<, <=, >, >=, BETWEEN), up to ADVISOR_MAX_COLUMNS;
 * each join key (a column compared with another table's column) on its own; and for each
 * equality with a constant (status = 'pending'), a partial index on the remaining columns
 * WHERE that equality. Duplicates are left out. SELECT, UPDATE and DELETE are read (their
 * WHERE); anything else gives none. Returns how many were written to out (at most max). */
int advisor_candidates(const char *sql, advisor_index *out, int max);

/* CREATE INDEX [CONCURRENTLY] ON "schema"."table" ("a", "b") [WHERE predicate], identifiers
 * always quoted. Cut to cap (always NUL-terminated). */
void advisor_ddl(const advisor_index *ix, bool concurrently, char *out, size_t cap);

/* True when an index with existing's columns (and predicate, or none) already serves what ix
 * would: same table, ix's columns a prefix of existing's, and existing not partial or partial
 * with the same predicate. Schemas are compared only when both are known. */
bool advisor_covered(const advisor_index *ix, const advisor_index *existing);

/* For an INSERT, UPDATE or DELETE: the table it writes and, for an UPDATE, the columns it sets.
 * Returns the number of columns (at most max; 0 for INSERT and DELETE), -1 when sql is not one
 * such statement. */
int advisor_updated_columns(const char *sql, char table[ADVISOR_NAME],
                            char (*columns)[ADVISOR_NAME], int max);

/* ---- verification (a thread with its own libpq connections) ---- */

typedef enum {
    ADVISOR_TRIAL_USED,       /* hypopg: the plan used it and the cost dropped enough */
    ADVISOR_TRIAL_UNUSED,     /* hypopg: the plan did not use it, or the cost did not drop enough */
    ADVISOR_TRIAL_COVERED,    /* an existing valid index already serves it */
    ADVISOR_TRIAL_UNVERIFIED, /* no hypopg in that database: not tried */
} advisor_trial_outcome;

/* One candidate tried for one sampled statement. */
typedef struct advisor_trial {
    advisor_index index;
    advisor_trial_outcome outcome;
    double cost_after; /* plan's total cost with the hypothetical index; -1 when not tried */
    double size_bytes; /* hypopg_relation_size; -1 when not tried */
} advisor_trial;

/* One sampled statement to find indexes for. Owned by the verifier once submitted. */
typedef struct advisor_job {
    uint64_t id, fingerprint;
    char *database, *user; /* user NULL: the DSN's */
    char *search_path;     /* the client's, as set_config takes it; NULL: the server's */
    char *query;           /* $1.. for bind parameters */
    int n_params;
    char **params; /* values as the client sent them; NULL entries are SQL NULL */
    /* Their types, byte lengths and formats, as explain_job's (NULL: text, types left to the
     * server). */
    unsigned int *param_types;
    int *param_lengths;
    int *param_formats;
    advisor_index *candidates;
    int n_candidates;
} advisor_job;

void advisor_job_free(advisor_job *job);

typedef struct advisor_result {
    uint64_t id, fingerprint;
    bool ok;            /* false: nothing was learnt (see error) */
    bool hypopg;        /* hypopg was there: trials are USED, UNUSED or COVERED */
    char error[256];    /* when !ok: why, for the log */
    double cost_before; /* plan's total cost with the existing indexes */
    bool misestimate;   /* a scan's row estimate was 10x or more off in the sampled plan: set by
                         * the caller, not the verifier */
    advisor_trial *trials;
    int n_trials;
} advisor_result;

void advisor_result_free(advisor_result *r);

typedef struct advisor_settings {
    const char *dsn, *host, *port; /* as explain_side_settings */
    const char *sslmode, *sslrootcert;
    int statement_timeout_ms; /* for each statement of a verification (default 5000) */
    int lock_timeout_ms;      /* likewise for lock waits (default 0: none) */
    double min_reduction;     /* cost must drop by this share to count (default 0.30) */
    bool create_extension;    /* CREATE EXTENSION IF NOT EXISTS hypopg where missing */
    int queue_size;           /* jobs waiting (default 64) */
} advisor_settings;

void advisor_settings_default(advisor_settings *s);

typedef struct advisor_verifier advisor_verifier;

/* Starts the verification thread. Per job, on a connection of its database and user (kept for
 * the next job, closed when no job waits): statement_timeout and lock_timeout for the session;
 * BEGIN READ ONLY; the search_path; reads the
 * table's valid indexes (pg_index, pg_attribute) and marks covered candidates; EXPLAIN the
 * statement with its parameters (cost before); per remaining candidate: hypopg_create_index,
 * EXPLAIN again (cost after, whether the plan uses it), hypopg_relation_size, hypopg_reset;
 * ROLLBACK. Without hypopg (and create_extension off), candidates not covered are UNVERIFIED.
 * NULL if the thread cannot start. */
advisor_verifier *advisor_verifier_start(const advisor_settings *s);

/* Hands over a job without waiting; false (the caller keeps it) when the queue is full. */
bool advisor_verifier_submit(advisor_verifier *v, advisor_job *job);

/* Takes up to max results that are ready; returns how many. */
size_t advisor_verifier_results(advisor_verifier *v, advisor_result **out, size_t max);

/* Stops the thread (a statement running is cancelled); waiting jobs are dropped. */
void advisor_verifier_stop(advisor_verifier *v);

/* ---- consolidation (pure) ---- */

/* What the traffic says of one statement shape. */
typedef struct advisor_shape {
    uint64_t fingerprint;
    double weight_ms; /* calls x mean: its total time in the run */
} advisor_shape;

/* Writes pgscope saw to one table, for the cost of one more index. */
typedef struct advisor_table_writes {
    char table[ADVISOR_NAME];
    uint64_t inserts, updates, deletes; /* statements executed */
    char updated[16][ADVISOR_NAME];     /* columns UPDATEs set, at most 16 remembered */
    int n_updated;
} advisor_table_writes;

typedef struct advisor_suggestion {
    advisor_index index;
    char ddl[1024]; /* CREATE INDEX CONCURRENTLY ...: room for the longest names and predicate */
    bool verified;  /* hypopg showed a plan using it, cheaper by min_reduction at least */
    double cost_before, cost_after; /* summed over the statements it helps; -1 unverified */
    double benefit_ms; /* sum of weight x cost reduction over those statements; -1 unverified */
    double size_bytes; /* -1 when unknown */
    uint64_t statements[16]; /* fingerprints it helps, at most 16 listed */
    int n_statements;
    uint64_t write_statements; /* INSERT/UPDATE/DELETE executions on its table */
    bool breaks_hot;           /* UPDATEs set one of its columns: no more HOT updates */
    bool misestimate;          /* a plan's estimate was far off: ANALYZE first */
} advisor_suggestion;

/* Chooses suggestions from every result so far: candidates the plans used, merged when one
 * index's columns have another's as a prefix (it serves both statements), picked greedily by
 * benefit; verified ones first, then unverified ones (tables where hypopg was missing) ranked
 * by their statements' weight. Returns how many were written to out (at most max). */
int advisor_consolidate(const advisor_result *const *results, size_t n_results,
                        const advisor_shape *shapes, size_t n_shapes,
                        const advisor_table_writes *writes, size_t n_writes,
                        advisor_suggestion *out, int max);

#endif
