/* nplusone.h — N+1 loops, duplicate queries and insert loops per connection, with proof: a
 * child statement's values (bound parameters and inlined literals) are matched, in row order,
 * with the values a parent statement returned. Pure and single-threaded (the analysis thread
 * feeds it); no I/O. */
#ifndef PGSCOPE_NPLUSONE_H
#define PGSCOPE_NPLUSONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One column of a statement's result, from its RowDescription. */
typedef struct np1_column {
    uint32_t table_oid; /* 0 when the column is not a plain table column */
    int16_t attnum;     /* column number in that table */
    char name[64];      /* field name as the result names it */
} np1_column;

/* What the detector needs of one completed statement. Pointers are only read during the call. */
typedef struct np1_stmt {
    uint64_t conn_id;
    int64_t start_us, end_us;
    uint64_t fingerprint;
    const char *query;            /* normalized text */
    bool is_select;               /* a SELECT (the only kind that can be a parent or a child) */
    bool is_insert;               /* an INSERT */
    int64_t rows_affected;        /* the command tag's row count, -1 if none */
    bool failed;                  /* ended with an error */
    char txn_status;              /* ReadyForQuery status after it: 'I', 'T', 'E', 0 unknown */
    const char *application_name; /* a change ends the unit */
    const char *tags;             /* canonical sqlcommenter tags; a change ends the unit */
    const char *database, *user;  /* of the connection: where a fix can be checked */
    bool ignored;                 /* carries a pgscope:ignore comment */
    const char *table;            /* the one table it reads from, if it has exactly one, else "" */
    /* The statement's values: its bind parameters, then the literals inlined in its text (the
     * constants the normalized text numbers after them), hashed with track_value_hash, and as
     * text for examples (may be NULL). */
    const uint32_t *params;
    const char *const *param_text;
    uint16_t n_params;
    /* Result sample: rows x n_columns value hashes (row-major, 0 for NULL), track_value_hash. */
    const np1_column *columns;
    uint16_t n_columns;
    const uint32_t *values;
    uint32_t rows;
} np1_stmt;

typedef struct np1_settings {
    int min_repeats;   /* N: executions and distinct parameter tuples (default 5) */
    int idle_gap_ms;   /* a pause this long ends a unit (default 250) */
    double link_share; /* share of children whose value is in the parent column (0.8) */
    int max_unit;      /* statements of one unit looked at (default 10000) */
    int results_kept;  /* recent result samples per connection (default 8) */
    bool keep_params;  /* keep example parameter values (else redacted) */
    /* Allow-list: a statement matching any entry is never a parent or a child. Entries are a
     * 16-hex-digit fingerprint or a table name. */
    const char *const *ignore;
    int n_ignore;
} np1_settings;

void np1_settings_default(np1_settings *s);

typedef enum { NP1_N_PLUS_ONE, NP1_DUPLICATE, NP1_BATCH_INSERT } np1_kind;

#define NP1_MAX_CHILDREN 4 /* statements of one loop body reported together */
#define NP1_MAX_EXAMPLES 3

/* A finding, aggregated over every occurrence of the same pattern in the run. */
typedef struct np1_finding {
    np1_kind kind;
    uint64_t parent_fp; /* 0 for a duplicate query or an insert loop */
    char *parent_query;
    uint64_t child_fp[NP1_MAX_CHILDREN];
    char *child_query[NP1_MAX_CHILDREN];
    int n_children;
    bool confirmed;          /* values proven to walk a parent column's rows */
    double chance;           /* of the proof being a coincidence (see np1_int.h); 1 if none */
    char *linked_column;     /* "orders.customer_id", or "table 16385 column 3"; "" if none */
    uint64_t occurrences;    /* units it was seen in */
    uint64_t max_n, total_n; /* executions of the (first) child per occurrence */
    double total_ms;         /* time spent in the children */
    double saving_ms;        /* estimated time saved by one batched query per occurrence */
    char *examples[NP1_MAX_EXAMPLES]; /* parameter tuples as JSON arrays, or "[redacted]" */
    int n_examples;
    char severity[8]; /* "high", "medium", "low" */
    char orm[16];     /* "django", "sqlalchemy", "activerecord", "sequelize" or "" */
    char *suggestion; /* the fix, written out: batched query and JOIN */
    int64_t first_us, last_us;
    char *database, *user; /* of its first occurrence's connection (NULL if not known) */
    char *test;    /* the test of its first occurrence: tag test, else application_name; or "" */
    int fix_check; /* the caller's: 0 until it has the fix checked (np1_fix_sql) */
    bool dirty;
} np1_finding;

typedef struct np1_detector np1_detector;

np1_detector *np1_new(const np1_settings *s);
void np1_free(np1_detector *d);

/* Feeds one statement; statements of one connection must come in completion order. */
void np1_statement(np1_detector *d, const np1_stmt *st);
/* The connection ended: its open unit is examined and its state dropped. */
void np1_disconnect(np1_detector *d, uint64_t conn_id);
/* Examines units that have been idle for longer than the gap at now_us. */
void np1_tick(np1_detector *d, int64_t now_us);

/* Calls fn for every finding changed since the last call (all when all is true). */
void np1_take_dirty(np1_detector *d, bool all, void (*fn)(np1_finding *f, void *arg), void *arg);
/* Whether a normalized text reads the system catalogs (pg_catalog, information_schema, pg_*
 * relations): an ORM's or a test runner's introspection, never a finding, and not counted for
 * the test it ran in (an ORM loads its schema in whichever test comes first). */
bool np1_is_catalog(const char *query);

/* The test statements belong to: the sqlcommenter tag test of their canonical tags, else their
 * application_name (a test runner sets one per test), else "". Into out (cap bytes, cut). */
void np1_test_of(const char *app, const char *tags, char *out, size_t cap);

/* Calls fn for every finding (dirty or not; the flags are left as they are). */
void np1_each(np1_detector *d, void (*fn)(np1_finding *f, void *arg), void *arg);
/* The SQL statements of an N+1 finding's fix (batched queries, the JOIN), to check on the
 * server before they are shown: malloc'd copies into out; returns how many (at most max). */
int np1_fix_sql(const np1_finding *f, char **out, int max);
/* The server rejected sql, one of np1_fix_sql's, for why: the fix leaves it out and says so. */
void np1_fix_rejected(np1_detector *d, np1_finding *f, const char *sql, const char *why);

/* Allow-list entries that never matched a statement (for the report). */
void np1_unused_ignores(const np1_detector *d, void (*fn)(const char *entry, void *arg), void *arg);

#endif
