/* explain.h — EXPLAIN sampling of slow statements, its pure parts: the guard (may a statement be
 * replayed at all?), the sampler (which slow statements to replay, within a budget) and plan
 * analysis (what an EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) plan says is wrong). No I/O. */
#ifndef PGSCOPE_EXPLAIN_H
#define PGSCOPE_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the guard: libpg_query's parse tree decides ---- */

typedef enum {
    EXPLAIN_GUARD_SELECT,    /* one read-only query: may run under EXPLAIN ANALYZE */
    EXPLAIN_GUARD_DML,       /* INSERT, UPDATE, DELETE or MERGE: plain EXPLAIN only, by default */
    EXPLAIN_GUARD_REFUSED,   /* never replayed: see reason */
    EXPLAIN_GUARD_PLAN_ONLY, /* calls a function that must not run (see reason): plain EXPLAIN
                              * only, which plans it without calling it */
} explain_guard_kind;

typedef struct explain_guard_result {
    explain_guard_kind kind;
    char reason[160]; /* why refused (or why DML), for the skip counters and the log */
} explain_guard_result;

/* Parses text (one statement's text, NUL-terminated). A SELECT (also VALUES, TABLE) is allowed
 * when it has no locking clause (FOR UPDATE/SHARE...), no data-modifying CTE, no SELECT INTO,
 * and calls no function that acts outside the transaction or waits (nextval, setval,
 * pg_advisory_*lock*, dblink*, pg_notify, pg_sleep*, pg_terminate_backend, pg_cancel_backend,
 * set_config, lo_*, pg_read_file and similar, any function whose name the deny list holds,
 * schema-qualified or not). A SELECT or DML that calls such a function is PLAN_ONLY, unless the
 * planner itself might call it (of those that run SQL of their own or take a transaction id,
 * some are not VOLATILE): then it is refused. More than one statement, text that does not parse,
 * utility statements and everything else are refused. This is a first filter by name only: what
 * the statement reaches through views, operators and policies is checked on its plan
 * (explain_calls_read below). */
explain_guard_result explain_guard(const char *text);

/* ---- the client's search_path ---- */

typedef enum {
    EXPLAIN_PATH_NONE,      /* not about search_path (or not a statement the server ran) */
    EXPLAIN_PATH_SET,       /* SET [SESSION] search_path: value holds the new path */
    EXPLAIN_PATH_SET_LOCAL, /* SET LOCAL search_path: value holds it, until the transaction ends */
    EXPLAIN_PATH_RESET,     /* RESET search_path, SET ... TO DEFAULT, RESET ALL, DISCARD ALL */
    EXPLAIN_PATH_UNKNOWN,   /* changes it in a way not followed (FROM CURRENT, a long value) */
} explain_path_change;

/* What a statement that succeeded did to its connection's search_path. The value is the path
 * as the server's list syntax, each element quoted: "\"$user\", \"public\"" (set_config reads
 * it back as the same list); "" unless SET or SET_LOCAL. */
explain_path_change explain_search_path_change(const char *text, char *value, size_t cap);

/* ---- the client's temporary relations ---- */

/* Called for each relation a statement created temporary (created true) or dropped. */
typedef void (*explain_temp_fn)(bool created, const char *name, void *arg);

/* What a statement that succeeded did to its connection's temporary relations: fn hears of each
 * relation it created TEMP or in pg_temp (CREATE TABLE, CREATE TABLE AS, SELECT INTO, CREATE
 * VIEW, CREATE SEQUENCE) and each it dropped by an unqualified or pg_temp name. True for DISCARD
 * ALL and DISCARD TEMP: every temporary relation is gone. */
bool explain_temp_follow(const char *text, explain_temp_fn fn, void *arg);

/* Whether a statement reads or writes a temporary relation: one in pg_temp (or pg_temp_N), or
 * one of names[0..n) unqualified (its connection's temporary relations). */
bool explain_temp_uses(const char *text, const char *const *names, size_t n);

/* ---- the sampler: which slow statements to replay ---- */

typedef struct explain_sampler_settings {
    double min_duration_ms; /* a statement this slow is a candidate (default 50) */
    uint64_t p95_min_calls; /* after this many calls, one above its shape's p95 is one too
                             * (default 100; 0 turns that rule off) */
    int max_per_shape;      /* samples per fingerprint, with distinct parameters (default 3) */
    int backoff_ms;         /* after a failed sample, the shape waits this long (default 60000;
                             * doubled at each failure in a row, up to 16 times) */
    double budget_share;    /* side-connection time at most this share of the statement time
                             * observed so far (default 0.05) */
    double sample_rate;     /* share of candidates sampled, 0..1 (default 1) */
    bool dml_analyze;       /* explain_dml = analyze-rollback: DML may run under ANALYZE */
} explain_sampler_settings;

void explain_sampler_defaults(explain_sampler_settings *s);

/* Why a slow statement was not sampled. */
typedef enum {
    EXPLAIN_SAMPLE = 0,         /* not skipped: sample it */
    EXPLAIN_SKIP_ENOUGH,        /* its shape has max_per_shape samples */
    EXPLAIN_SKIP_SAME_PARAMS,   /* already sampled with these parameters */
    EXPLAIN_SKIP_BACKOFF,       /* its shape failed recently */
    EXPLAIN_SKIP_BUDGET,        /* side-connection time would exceed the budget */
    EXPLAIN_SKIP_RATE,          /* not drawn by sample_rate */
    EXPLAIN_SKIP_DML,           /* DML (plain EXPLAIN would be taken where allowed) */
    EXPLAIN_SKIP_GUARD,         /* the guard refused it */
    EXPLAIN_SKIP_NO_CONNECTION, /* no side connection could be had */
    EXPLAIN_SKIP_FAILED,        /* the sample was tried and failed */
    EXPLAIN_SKIP_QUEUE,         /* the side connections' queue was full */
    EXPLAIN_SKIP_INCOMPLETE,    /* its text or parameters were cut, or a parameter is binary */
    EXPLAIN_SKIP_ERROR,         /* it failed (an error, a cancel): nothing to replay */
    EXPLAIN_SKIP_FUNCTION,      /* it calls a function not known to be free of side effects:
                                 * explained without ANALYZE, like DML */
    EXPLAIN_SKIP_TEMP_TABLE,    /* it names a temporary relation: another session cannot see it */
    EXPLAIN_SKIP_NOT_VISIBLE,   /* its replay did not find a table, function, type or column the
                                 * client's session had (created in its open transaction or
                                 * temporary, dropped or changed since) */
    EXPLAIN_SKIP_COUNT
} explain_skip;

/* "enough", "same_params", "backoff", "budget", "rate", "dml", "guard", "no_connection",
 * "failed", "queue", "incomplete", "error", "function", "temp_table", "not_visible"; "sample"
 * for EXPLAIN_SAMPLE. */
const char *explain_skip_name(explain_skip s);

typedef struct explain_sampler explain_sampler;

explain_sampler *explain_sampler_new(const explain_sampler_settings *s);
void explain_sampler_free(explain_sampler *sm);

/* Every completed statement: its time feeds the budget. Returns true when it is slow enough
 * to be a candidate (then call explain_sampler_decide). */
bool explain_sampler_observe(explain_sampler *sm, double duration_ms, double shape_p95_ms,
                             uint64_t shape_calls);

/* For a candidate: sample it, or why not (the reason is counted). guard is the guard's verdict
 * on its text; params_hash identifies its parameter values. EXPLAIN_SKIP_DML and
 * EXPLAIN_SKIP_FUNCTION (a PLAN_ONLY verdict) are the skips that still reserve a sample: to be
 * explained without ANALYZE (and settled with explain_sampler_done like a sample). */
explain_skip explain_sampler_decide(explain_sampler *sm, uint64_t fingerprint, uint64_t params_hash,
                                    explain_guard_kind guard, int64_t now_us);

/* A decided sample ended: the side-connection time it cost, and what came of it: EXPLAIN_SAMPLE
 * for a plan, EXPLAIN_SKIP_FUNCTION for a plain plan taken instead of EXPLAIN ANALYZE (counted,
 * a plan all the same), else the reason it failed (EXPLAIN_SKIP_FAILED,
 * EXPLAIN_SKIP_NO_CONNECTION...), which is counted and starts the shape's backoff. */
void explain_sampler_done(explain_sampler *sm, uint64_t fingerprint, double side_ms,
                          explain_skip outcome, int64_t now_us);

/* Counts a skip decided elsewhere (no connection, queue full). */
void explain_sampler_count(explain_sampler *sm, explain_skip reason);

uint64_t explain_sampler_skips(const explain_sampler *sm, explain_skip reason);

/* ---- plan analysis ---- */

/* One thing a plan says is wrong, with the node it is about and its numbers. */
typedef struct explain_finding {
    char kind[32];      /* "seq_scan_filter", "misestimate", "sort_spill", "hash_batches",
                         * "nested_loop_inner_scan", "lossy_bitmap", "heap_fetches",
                         * "temp_written" */
    char path[256];     /* the node's path from the root: "Limit > Sort > Seq Scan on orders" */
    char relation[128]; /* the table involved, if any */
    char detail[512];   /* the numbers, for people: "removed 199800 of 200000 rows (99.9%)
                         * by filter (status = 'pending'::text)" */
    double magnitude;   /* the finding's own size: rows removed, misestimate factor, KB
                         * spilled, batches, loops, lossy blocks, heap fetches, blocks */
} explain_finding;

typedef struct explain_plan_times {
    double planning_ms, execution_ms; /* -1 when the plan has none (plain EXPLAIN) */
} explain_plan_times;

/* Reads one EXPLAIN (FORMAT JSON) result (the text PostgreSQL returns: an array holding one
 * object with "Plan") and calls fn for each finding. Returns false for text that is not such a
 * plan. Thresholds: sequential scan removing at least 90% of at least 1000 rows by its filter;
 * row estimates off by 10x or more (reported as 10x, 100x, 1000x); a sort on disk; a hash with
 * more than one batch; a nested loop running an inner scan without an index at least 100
 * times; lossy bitmap heap blocks; heap fetches on an index-only scan; temp blocks written. */
/* The kinds explain_plan_findings reports, NULL-terminated. */
extern const char *const explain_finding_kinds[];

bool explain_plan_findings(const char *json, void (*fn)(const explain_finding *f, void *arg),
                           void *arg, explain_plan_times *times);

/* The plan with the constants of its expressions (conditions, filters, keys, outputs) replaced:
 * '...' literals by '?', bare numbers by ?; names, numbers of the plan itself and the settings
 * are kept. For storing plans when values must not be kept. Returns a malloc'd JSON text, NULL
 * for text that is not an EXPLAIN (FORMAT JSON) result. */
char *explain_plan_redact(const char *json);

/* A server's message without the values it may quote: '...' and "..." become '?' and "?",
 * bare numbers ?. Returns a malloc'd string (NULL for NULL or out of memory). */
char *explain_redact_text(const char *text);

/* The plan as an indented tree for people (`pgscope report --plan ID`): one line per node with
 * its estimated and actual rows, loops, time and buffers, its conditions under it. Returns a
 * malloc'd string, NULL for text that is not a plan. */
char *explain_plan_tree(const char *json);

/* One node of a plan, as explain_plan_nodes hands it over (strings valid during the call). */
typedef struct explain_plan_node {
    int depth;           /* 0 for the root */
    const char *subplan; /* "SubPlan 1", "InitPlan 2 (returns $1)" over it, or NULL */
    const char *line;    /* its line of explain_plan_tree, without indent: label, cost, actuals */
    const char *props;   /* its conditions and counters, one per line ("" for none) */
    const char *path;    /* from the root, as explain_finding.path names it */
} explain_plan_node;

/* Calls fn for each node of the plan, parents before children, in plan order. False for text
 * that is not a plan (or out of memory). */
bool explain_plan_nodes(const char *json, void (*fn)(const explain_plan_node *n, void *arg),
                        void *arg);

/* ---- the plan check: may a statement the guard allowed run under EXPLAIN ANALYZE? ----
 *
 * Before EXPLAIN ANALYZE, the side connection plans the statement with plain EXPLAIN (VERBOSE,
 * FORMAT JSON), never executing it, reads from that plan every name that may stand for a
 * function (functions, operators, casts, the tables scanned and written, the indexes used),
 * and looks them up with explain_calls_sql in the same transaction and search_path. The
 * statement is executed only when every function found is allowed (explain_call_allowed);
 * otherwise the plain plan is kept. */

typedef enum {
    EXPLAIN_CALL_FUNCTION, /* a function called or scanned, [schema.]name */
    EXPLAIN_CALL_OPERATOR, /* an operator symbol, [schema.]op */
    EXPLAIN_CALL_TYPE,     /* a type cast to, [schema.]name */
    EXPLAIN_CALL_RELATION, /* a table scanned or written, schema.name */
    EXPLAIN_CALL_INDEX,    /* an index scanned, schema.name */
    EXPLAIN_CALL_TARGET,   /* a table written (INSERT, UPDATE, DELETE, MERGE), schema.name */
    EXPLAIN_CALL_KINDS
} explain_call_kind;

typedef struct explain_calls explain_calls;

/* Reads a plain EXPLAIN (VERBOSE, FORMAT JSON) result. NULL, with why, when it is not one, names
 * more than can be checked, joins foreign tables remotely, or memory runs out: the statement
 * must then not be executed. */
explain_calls *explain_calls_read(const char *plan_json, char *why, size_t n);
void explain_calls_free(explain_calls *c);

/* Adds what the statement's own text names (functions, operators, types cast to, relations,
 * views included), read from its parse tree: a plan does not print VALUES rows, LIMIT and
 * OFFSET, window frame offsets or the operator of x = ANY (SELECT ...). False when the text
 * does not parse: the statement must then not be executed. */
bool explain_calls_add_statement(explain_calls *c, const char *text);

/* Whether the plan named kind [schema.]name; schema "" or NULL: not qualified. For tests. */
bool explain_calls_has(const explain_calls *c, explain_call_kind kind, const char *schema,
                       const char *name);
size_t explain_calls_count(const explain_calls *c, explain_call_kind kind);

/* The catalog query: one row per function the plan may call, with the columns of
 * explain_called in order (schema, name, src, volatility, kind, nargs, builtin, internal,
 * trigger, via; booleans as t/f). Its parameters are text[] literals, two per kind (schemas,
 * names), from explain_calls_params: malloc'd, freed by the caller; false when out of memory. */
#define EXPLAIN_CALLS_PARAMS (2 * EXPLAIN_CALL_KINDS)
extern const char explain_calls_sql[];
bool explain_calls_params(const explain_calls *c, char *values[EXPLAIN_CALLS_PARAMS]);

/* What the side connection sends, in one round trip: jit off, explain_calls_sql with the values
 * inlined as literals by quote (libpq's PQescapeLiteral, freed by quote_free), jit back to the
 * connection's own value. Malloc'd; NULL when a value cannot be quoted or memory runs out. */
char *explain_calls_script(char *const values[EXPLAIN_CALLS_PARAMS],
                           char *(*quote)(void *arg, const char *value),
                           void (*quote_free)(void *quoted), void *arg);

/* One function the catalog query found. */
typedef struct explain_called {
    const char *schema, *name;
    const char *src; /* the C function a LANGUAGE internal one runs; NULL otherwise */
    const char *via; /* how the plan reaches it: "called by name", "the function of operator
                      * ===", "a trigger of table t"... */
    char volatility; /* 'i', 's' or 'v' */
    char kind;       /* 'f', 'a' (aggregate), 'w' (window), 'p' */
    int nargs;
    bool builtin;  /* created with the cluster (OID below 16384) */
    bool internal; /* LANGUAGE internal */
    bool trigger;  /* returns trigger */
} explain_called;

/* The functions the user vouches for: explain_allow_functions, "[schema.]name, ...", where
 * "schema.*" stands for every function of a schema. Names are matched as PostgreSQL stores them
 * (lower case unless created quoted). NULL when out of memory. */
typedef struct explain_allow explain_allow;
explain_allow *explain_allow_parse(const char *list);
size_t explain_allow_count(const explain_allow *a);
void explain_allow_free(explain_allow *a);

/* May f run under EXPLAIN ANALYZE? Never when its name (or the C function it runs) is on the
 * guard's deny list. A built-in: when IMMUTABLE or STABLE, or one of the VOLATILE ones that only
 * read (random, clock_timestamp, timeofday, gen_random_uuid, currval, lastval, pg_stat_get_*,
 * sizes, WAL positions...), or with read_write (DML rolled back) a built-in trigger function
 * (FOREIGN KEY checks and cascades). Any other function: only when allow holds it (the user's
 * aggregates are judged by their support functions). When not, why says so. */
bool explain_call_allowed(const explain_called *f, const explain_allow *allow, bool read_write,
                          char *why, size_t n);

/* ---- side connections: replaying a sampled statement on pgscope's own connection ---- */

/* One statement to explain. Owned by the side once submitted. */
typedef struct explain_job {
    uint64_t id; /* the caller's, returned in the result */
    uint64_t fingerprint;
    char *database;    /* the sampled statement's database (replaces the DSN's dbname) */
    char *user;        /* its user, or NULL: used when the DSN names none */
    char *search_path; /* the client's search_path to replay, or NULL */
    char *query;       /* the statement text; $1.. for bind parameters */
    int n_params;
    char **params; /* the values as the client sent them; NULL entries are SQL NULL */
    /* How to bind them again as the client did (NULL: all text, types left to the server):
     * type OIDs (0: left to the server, which infers what it inferred for the client), byte
     * lengths, formats (0 text, 1 binary): PQsendQueryParams's paramTypes, paramLengths and
     * paramFormats. */
    unsigned int *param_types;
    int *param_lengths;
    int *param_formats;
    bool analyze;    /* EXPLAIN ANALYZE (a SELECT the guard allowed, once its plan is checked)
                      * or plain EXPLAIN */
    bool read_write; /* explain_dml = analyze-rollback: ANALYZE of DML, rolled back */
} explain_job;

void explain_job_free(explain_job *job);

/* What came of a job. Owned by the caller (explain_result_free). */
typedef struct explain_result {
    uint64_t id;
    uint64_t fingerprint;
    bool ok;
    char *plan_json;   /* the EXPLAIN (FORMAT JSON) output when ok */
    explain_skip skip; /* when ok: EXPLAIN_SAMPLE, or EXPLAIN_SKIP_FUNCTION when an ANALYZE job
                        * got the plain plan only (its plan check refused, see error); when !ok:
                        * EXPLAIN_SKIP_NO_CONNECTION, EXPLAIN_SKIP_NOT_VISIBLE
                        * (42P01, 42883, 42704, 42703, 3F000) or EXPLAIN_SKIP_FAILED */
    char error[256];   /* when !ok, or skip is EXPLAIN_SKIP_FUNCTION: why, for the log */
    double side_ms;    /* time the side connection spent on it */
} explain_result;

void explain_result_free(explain_result *r);

typedef struct explain_side_settings {
    const char *dsn;         /* libpq conninfo or URL (user, password or .pgpass, host, port,
                              * sslmode...); dbname is replaced by each job's database */
    const char *host, *port; /* used when the DSN names none (the upstream's); may be NULL */
    const char *sslmode, *sslrootcert; /* likewise (the upstream's TLS settings); may be NULL */
    int statement_timeout_ms;          /* SET LOCAL statement_timeout (default 5000) */
    int lock_timeout_ms;               /* SET LOCAL lock_timeout (default 100) */
    bool timing;                       /* EXPLAIN's TIMING option (default true) */
    int per_database;                  /* side connections per database (default 2) */
    int queue_size;                    /* jobs waiting (default 64) */
    int reconnect_ms;            /* first wait before reconnecting after a failure (default 1000;
                                  * doubled per failure in a row, up to 60 s) */
    const char *allow_functions; /* explain_allow_functions: user functions that may run under
                                  * EXPLAIN ANALYZE (explain_allow_parse); may be NULL */
} explain_side_settings;

void explain_side_defaults(explain_side_settings *s);

/* Whether a side connection's failure (its first line, as a result's error holds it) is a
 * refused login (no password, a wrong one, no pg_hba.conf rule, an unknown role) rather than an
 * unreachable server: the user can fix it as EXPLAIN_LOGIN_ADVICE says. */
bool explain_login_refused(const char *error);

/* What to do when the side connection cannot log in, for the log and the report. */
#define EXPLAIN_LOGIN_ADVICE                                                                       \
    "pgscope's EXPLAIN connection logs in as the application's user unless --explain-dsn names "   \
    "one: give it a password (--explain-dsn 'user=... password=...', a .pgpass entry or "          \
    "PGPASSWORD in pgscope's environment) or a trust/peer rule in pg_hba.conf for that user"

typedef struct explain_side explain_side;

/* Starts the side-connection thread: its own libevent base driving libpq's asynchronous API
 * (PQconnectStart/PQconnectPoll, PQsendQuery/PQsendQueryParams, PQconsumeInput). Every job
 * runs as: BEGIN READ ONLY (or BEGIN for read_write), SET LOCAL statement_timeout,
 * lock_timeout and search_path, then EXPLAIN (ANALYZE, BUFFERS, VERBOSE, SETTINGS, TIMING x,
 * FORMAT JSON) or plain EXPLAIN (VERBOSE, SETTINGS, FORMAT JSON) with the job's parameters
 * bound, then ROLLBACK, always. An ANALYZE job is first planned with plain EXPLAIN and its plan
 * checked (explain_calls_read, explain_calls_sql, explain_call_allowed): when the check
 * refuses, or cannot be made, the plain plan is the result (EXPLAIN_SKIP_FUNCTION) and the
 * statement is never executed. NULL if the thread cannot start. */
explain_side *explain_side_start(const explain_side_settings *s);

/* Hands over a job without waiting; false (the caller keeps it) when the queue is full. */
bool explain_side_submit(explain_side *side, explain_job *job);

/* Takes up to max results that are ready; returns how many. */
size_t explain_side_results(explain_side *side, explain_result **out, size_t max);

/* Stops the thread: running jobs are cancelled and rolled back, waiting ones dropped. */
void explain_side_stop(explain_side *side);

/* ---- the explainer: sampling as the analysis thread drives it ---- */

#include "pgscope/advisor.h"
#include "pgscope/store.h"
#include "pgscope/track.h"

typedef struct explainer_settings {
    explain_sampler_settings sampler;
    explain_side_settings side;
    bool store_params; /* keep the replayed values and the plans' constants */
    bool advise;       /* index advice for the sampled statements (advisor.h) */
    advisor_settings advisor;
} explainer_settings;

/* One completed statement, as the analysis thread knows it. */
typedef struct explain_statement {
    const track_event *ev; /* its event: database, user, via, parameters, error, times */
    const char *text;      /* this statement's text (one of a multi-statement Query) */
    size_t text_len;
    uint64_t fingerprint;
    const char *normalized;   /* the text stored with a plan */
    const char *search_path;  /* the client's, as set_config takes it; NULL: the server's */
    double p95_ms;            /* of its shape so far (INFINITY when not worth computing) */
    uint64_t calls;           /* of its shape so far */
    double shape_total_ms;    /* of its shape (this database and user) so far */
    const char *table;        /* the one table it reads or writes; "" if not one */
    const char *test;         /* the test it ran in (np1_test_of); "" for none */
    bool fallback;            /* its fingerprint is the pre-digest's: libpg_query cannot parse it */
    bool path_unknown;        /* its connection's search_path was changed in a way not followed */
    const char *const *temps; /* the temporary relations its connection created (names) */
    size_t n_temps;
} explain_statement;

typedef struct explainer explainer;

/* Starts the side connections. NULL when they cannot start (no thread, no memory). */
explainer *explainer_start(const explainer_settings *s);

/* Every completed statement: a slow one is guarded, decided and maybe handed to a side
 * connection. Never waits. */
void explainer_statement(explainer *x, const explain_statement *st);

/* Takes finished samples: their plans are analysed and held for the store. Never waits. */
void explainer_poll(explainer *x, int64_t now_us);

/* Adds to b the plans not yet in a batch (every plan not known written, with all) and the
 * outcome counters; batch_no is the batch's number. */
void explainer_fill_batch(explainer *x, store_batch *b, uint64_t batch_no, bool all);

/* Plain EXPLAIN of SQL pgscope wrote (an N+1 fix) on a side connection, in database as user,
 * every $n bound to NULL with its type left to the server: does the server accept it? The
 * answer, with cookie, comes back through explainer_check_answers. False when not submitted
 * (too many checks in flight, the side connections' queue full, out of memory). */
bool explainer_check(explainer *x, uint64_t cookie, const char *database, const char *user,
                     const char *sql);

typedef struct explainer_check_answer {
    uint64_t cookie;
    bool ok;
    bool no_connection; /* the side connection could not be had: no verdict */
    char error[256];    /* the server's, when !ok */
} explainer_check_answer;

/* The checks answered since the last call (at most max). Never waits. */
size_t explainer_check_answers(explainer *x, explainer_check_answer *out, size_t max);

/* Batches up to upto are written: their plans are let go. */
void explainer_written(explainer *x, uint64_t upto);

/* Waits up to wait_ms for samples in flight, then stops the side connections (what still runs
 * is cancelled and counted failed). The plans stay for the last batch. */
void explainer_finish(explainer *x, int wait_ms);

void explainer_free(explainer *x);

#endif
