/* load.c — reads runs, the top statements, the N+1 findings, the EXPLAIN plans with their
 * findings and the index suggestions from the report database; merges a statement's runs (sums,
 * combined spread, merged histograms) and a finding's runs for `pgscope report --all`. */
#include "config.h"

#include "report_int.h"

#include "pgscope/stats.h"
#include "pgscope/store.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The top statements come from an index scan with LIMIT (statements_by_total), or, merged,
 * from one GROUP BY pass over the covering shape index (statements_by_shape) followed by one
 * lookup per shape shown: the table is never read whole, nor held in memory. */
#define RUN_COLUMNS                                                                                \
    "id, label, started_at, ended_at, upstream, pgscope_version, "                                 \
    "(julianday(ended_at) - julianday(started_at)) * 86400.0, connections, statements, "           \
    "events_dropped, lost_writes, fingerprint_fallbacks, fingerprint_parses, fingerprint_hits, "   \
    "track_desyncs, "
#define RUN_FILTER " FROM runs WHERE ?1 IS NULL OR id = ?1 ORDER BY id"

#define FOLD_COLUMNS ", max_shapes, folded_shapes, folded_calls"
#define NO_FOLD_COLUMNS ", NULL, 0, 0"

static const char sql_runs[] =
    "SELECT " RUN_COLUMNS "unused_ignores" FOLD_COLUMNS ", explain_login_error" RUN_FILTER;
/* Older files, read as they are (a report never migrates): before version 6 no refused login
 * was recorded, before version 5 no cap on shapes, and before version 2 no allow-list. */
static const char sql_runs_v5[] =
    "SELECT " RUN_COLUMNS "unused_ignores" FOLD_COLUMNS ", NULL" RUN_FILTER;
static const char sql_runs_v2[] =
    "SELECT " RUN_COLUMNS "unused_ignores" NO_FOLD_COLUMNS ", NULL" RUN_FILTER;
static const char sql_runs_v1[] = "SELECT " RUN_COLUMNS "NULL" NO_FOLD_COLUMNS ", NULL" RUN_FILTER;

/* The reserved row of the shapes folded by max_shapes is shown apart from the statements. */
#define NOT_OTHER "fingerprint <> '" STORE_OTHER_FINGERPRINT "'"

/* The columns of one shape in one run, shared by the per-run list and the merge. */
#define SHAPE_COLUMNS                                                                              \
    "fingerprint, database, user_name, query, command, fallback, calls, errors, rows, "            \
    "total_ms, min_ms, max_ms, mean_ms, stddev_ms, p50_ms, p95_ms, p99_ms, first_seen, "           \
    "last_seen, example_query, example_params, histogram"

enum {
    C_FINGERPRINT,
    C_DATABASE,
    C_USER,
    C_QUERY,
    C_COMMAND,
    C_FALLBACK,
    C_CALLS,
    C_ERRORS,
    C_ROWS,
    C_TOTAL,
    C_MIN,
    C_MAX,
    C_MEAN,
    C_STDDEV,
    C_P50,
    C_P95,
    C_P99,
    C_FIRST,
    C_LAST,
    C_EXAMPLE_QUERY,
    C_EXAMPLE_PARAMS,
    C_HISTOGRAM
};

static const char sql_run_statements[] =
    "SELECT " SHAPE_COLUMNS " FROM statements "
    "WHERE run_id = ?1 AND " NOT_OTHER " ORDER BY total_ms DESC LIMIT ?2";

static const char sql_count_run[] =
    "SELECT count(*) FROM statements WHERE run_id = ?1 AND " NOT_OTHER;

/* The top shapes over all runs, and (window count) how many shapes there are in all. */
static const char sql_merged_top[] =
    "SELECT fingerprint, database, user_name, sum(total_ms) AS total, count(*) OVER () "
    "FROM statements WHERE " NOT_OTHER " GROUP BY fingerprint, database, user_name "
    "ORDER BY total DESC, fingerprint, database, user_name LIMIT ?1";

/* One shape's rows in every run (?4 NULL) or in one, the latest first: its text and example
 * come from there. */
static const char sql_shape_runs[] =
    "SELECT " SHAPE_COLUMNS " FROM statements WHERE fingerprint = ?1 AND database = ?2 "
    "AND user_name = ?3 AND (?4 IS NULL OR run_id = ?4) ORDER BY run_id DESC";

/* ?1 is NULL when every run counts. */
static const char sql_errors[] =
    "SELECT sqlstate, sum(count) AS n FROM statement_errors WHERE (?1 IS NULL OR run_id = ?1) "
    "AND fingerprint = ?2 AND database = ?3 AND user_name = ?4 GROUP BY sqlstate "
    "ORDER BY n DESC, sqlstate";

static const char sql_tags[] =
    "SELECT tags, sum(calls), total(total_ms) AS t FROM statement_tags "
    "WHERE (?1 IS NULL OR run_id = ?1) AND fingerprint = ?2 GROUP BY tags ORDER BY t DESC, tags";

/* Findings of the run, or of every run with the rows of one key together, the latest run first:
 * findings are few (one per loop pattern of the application), so they are merged and sorted in
 * memory. */
#define FINDING_COLUMNS                                                                            \
    "SELECT kind, parent_fingerprint, parent_query, child_fingerprints, child_queries, "           \
    "confirmed, linked_column, occurrences, max_n, total_n, total_ms, saving_ms, examples, "       \
    "severity, suggestion, first_seen, last_seen, "
#define FINDING_FILTER                                                                             \
    " FROM n_plus_one WHERE ?1 IS NULL OR run_id = ?1 "                                            \
    "ORDER BY kind, parent_fingerprint, child_fingerprints, run_id DESC"
static const char sql_findings[] = FINDING_COLUMNS "chance, orm, test" FINDING_FILTER;
/* Schema 7: no test; before: no chance of coincidence, no ORM either. */
static const char sql_findings_v7[] = FINDING_COLUMNS "chance, orm, ''" FINDING_FILTER;
static const char sql_findings_v2[] = FINDING_COLUMNS "NULL, '', ''" FINDING_FILTER;

enum {
    F_KIND,
    F_PARENT_FP,
    F_PARENT_QUERY,
    F_CHILD_FPS,
    F_CHILD_QUERIES,
    F_CONFIRMED,
    F_LINKED,
    F_OCCURRENCES,
    F_MAX_N,
    F_TOTAL_N,
    F_TOTAL_MS,
    F_SAVING_MS,
    F_EXAMPLES,
    F_SEVERITY,
    F_SUGGESTION,
    F_FIRST,
    F_LAST,
    F_CHANCE,
    F_ORM,
    F_TEST
};

/* Plans (schema 3): what the report lists of each, without the plan text. */
#define PLAN_COLUMNS                                                                               \
    "id, run_id, seq, fingerprint, database, user_name, query, params, analyzed, trigger_ms, "     \
    "planning_ms, execution_ms, side_ms, taken_at"

enum {
    P_ID,
    P_RUN,
    P_SEQ,
    P_FINGERPRINT,
    P_DATABASE,
    P_USER,
    P_QUERY,
    P_PARAMS,
    P_ANALYZED,
    P_TRIGGER,
    P_PLANNING,
    P_EXECUTION,
    P_SIDE,
    P_TAKEN,
    P_TEXT,     /* sql_plan only */
    P_RUN_LABEL /* sql_plan only */
};

static const char sql_plans[] =
    "SELECT " PLAN_COLUMNS " FROM plans WHERE ?1 IS NULL OR run_id = ?1 ORDER BY id";

static const char sql_plan[] = "SELECT " PLAN_COLUMNS ", plan, "
                               "(SELECT label FROM runs WHERE runs.id = plans.run_id) "
                               "FROM plans WHERE id = ?1";

/* Plan findings, one per (shape, kind, relation, node path): a shape sampled several times
 * shows the same problem in each plan, and people need it once, from the plan where it was
 * largest. The weight is plan_findings_ranked's (the shape's total_ms, all databases and users)
 * over the runs in scope, so that with --all the shape's time in every run counts. Few rows:
 * plans are bounded per shape, and only the shapes with findings are weighed. The test is the
 * one that plan's execution ran in (schema 10; '' before). */
#define SQL_PLAN_FINDINGS(TEST)                                                                    \
    "WITH f AS (SELECT plan_id, fingerprint, kind, relation, node_path, detail, magnitude "        \
    "  FROM plan_findings WHERE ?1 IS NULL OR run_id = ?1), "                                      \
    "best AS (SELECT *, row_number() OVER (PARTITION BY fingerprint, kind, relation, node_path "   \
    "  ORDER BY magnitude DESC, plan_id DESC) AS r FROM f), "                                      \
    "seen AS (SELECT fingerprint, kind, relation, node_path, count(DISTINCT plan_id) AS plans "    \
    "  FROM f GROUP BY fingerprint, kind, relation, node_path), "                                  \
    "w AS (SELECT fingerprint, total(total_ms) AS weight, sum(calls) AS calls FROM statements "    \
    "  WHERE (?1 IS NULL OR run_id = ?1) AND fingerprint IN (SELECT fingerprint FROM f) "          \
    "  GROUP BY fingerprint) "                                                                     \
    "SELECT b.plan_id, b.fingerprint, p.query, b.kind, b.relation, b.node_path, b.detail, "        \
    "  b.magnitude, coalesce(w.weight, 0) AS weight, w.calls, s.plans, " TEST " "                  \
    "FROM best b JOIN seen s ON s.fingerprint = b.fingerprint AND s.kind = b.kind "                \
    "  AND s.relation = b.relation AND s.node_path = b.node_path "                                 \
    "JOIN plans p ON p.id = b.plan_id LEFT JOIN w ON w.fingerprint = b.fingerprint "               \
    "WHERE b.r = 1 "                                                                               \
    "ORDER BY weight DESC, b.fingerprint, b.magnitude DESC, b.kind, b.relation, b.node_path"

static const char sql_plan_findings[] = SQL_PLAN_FINDINGS("p.test");
static const char sql_plan_findings_v3[] = SQL_PLAN_FINDINGS("''");

/* The findings of one plan, in plan order, in the columns of sql_plan_findings. */
#define SQL_FINDINGS_OF_PLAN(TEST)                                                                 \
    "SELECT f.plan_id, f.fingerprint, p.query, f.kind, f.relation, f.node_path, f.detail, "        \
    "f.magnitude, 0, NULL, 1, " TEST " FROM plan_findings f JOIN plans p ON p.id = f.plan_id "     \
    "WHERE f.plan_id = ?1 ORDER BY f.n"

static const char sql_findings_of_plan[] = SQL_FINDINGS_OF_PLAN("p.test");
static const char sql_findings_of_plan_v3[] = SQL_FINDINGS_OF_PLAN("''");

enum {
    PF_PLAN,
    PF_FINGERPRINT,
    PF_QUERY,
    PF_KIND,
    PF_RELATION,
    PF_PATH,
    PF_DETAIL,
    PF_MAGNITUDE,
    PF_WEIGHT,
    PF_CALLS,
    PF_PLANS,
    PF_TEST
};

static const char sql_explain[] =
    "SELECT reason, sum(count) AS n FROM explain_skips WHERE ?1 IS NULL OR run_id = ?1 "
    "GROUP BY reason HAVING n > 0 ORDER BY n DESC, reason";

/* Index suggestions (schema 4). A run's rows are its latest consolidation, replaced whole as
 * the run goes on: they are read from one run, never merged (with --all, the latest run that
 * has any). */
static const char sql_index_run[] = "SELECT max(run_id) FROM index_suggestions";

static const char sql_indexes[] =
    "SELECT run_id, rank, database, ddl, schema_name, table_name, columns, predicate, verified, "
    "cost_before, cost_after, benefit_ms, size_bytes, statements, write_statements, breaks_hot, "
    "misestimate FROM index_suggestions WHERE run_id = ?1 ORDER BY rank";

enum {
    I_RUN,
    I_RANK,
    I_DATABASE,
    I_DDL,
    I_SCHEMA,
    I_TABLE,
    I_COLUMNS,
    I_PREDICATE,
    I_VERIFIED,
    I_COST_BEFORE,
    I_COST_AFTER,
    I_BENEFIT,
    I_SIZE,
    I_STATEMENTS,
    I_WRITES,
    I_BREAKS_HOT,
    I_MISESTIMATE
};

/* A statement a suggestion helps, in the suggestion's run: its rows of the suggestion's database
 * (all users), or of every database when it has none there. The text is the busiest row's (the
 * bare column goes with max()). */
static const char sql_index_statement[] =
    "SELECT max(total_ms), query, sum(calls), total(total_ms) FROM statements "
    "WHERE run_id = ?1 AND fingerprint = ?2 AND (database = ?3 OR NOT EXISTS "
    "(SELECT 1 FROM statements WHERE run_id = ?1 AND fingerprint = ?2 AND database = ?3))";

/* The tests whose statements an index suggestion helps (schema 9), the most time first. */
static const char sql_index_tests[] =
    "SELECT test, sum(calls), total(total_ms) FROM test_statements WHERE run_id = ?1 "
    "AND fingerprint IN (SELECT value FROM json_each((SELECT statements FROM index_suggestions "
    "WHERE run_id = ?1 AND rank = ?2))) GROUP BY test ORDER BY 3 DESC, 1";

/* ---------------------------------------------------------------- column helpers */

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    return s ? strdup((const char *)s) : NULL;
}

static double col_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static void copy_fixed(char *dst, size_t cap, sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

static bool prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK)
        return true;
    snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    return false;
}

/* Binds the run filter: a run id, or NULL for all runs. */
static void bind_run(sqlite3_stmt *st, int i, int64_t run_id)
{
    if (run_id > 0)
        sqlite3_bind_int64(st, i, run_id);
    else
        sqlite3_bind_null(st, i);
}

/* Finishes a step loop: true when it ended at SQLITE_DONE. */
static bool step_end(sqlite3 *db, int rc, char *err, size_t errlen)
{
    if (rc == SQLITE_DONE)
        return true;
    snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    return false;
}

/* ---------------------------------------------------------------- JSON columns */

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* An element of a JSON array for people: a string as it is; anything else (a parameter tuple)
 * as compact JSON. */
static char *element_text(json_t *e)
{
    if (json_is_string(e))
        return strdup(json_string_value(e));
    return json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* The elements of the JSON array text as strings in *out. Only string elements are taken
 * unless any_element, when others become compact JSON. Text that is not a JSON array becomes
 * one element, itself, so that nothing the file holds is hidden. False when out of memory. */
static bool json_strings(const char *text, bool any_element, char ***out, size_t *n)
{
    json_t *a = json_loads(text, 0, NULL);
    size_t len = json_is_array(a) ? json_array_size(a) : 1;
    char **v = calloc(len ? len : 1, sizeof(*v));
    bool ok = v != NULL;

    *out = NULL;
    *n = 0;
    if (ok && !json_is_array(a)) {
        ok = (v[(*n)++] = strdup(text)) != NULL;
    } else {
        for (size_t i = 0; ok && i < len; i++) {
            json_t *e = json_array_get(a, i);
            if (!json_is_string(e) && !any_element)
                continue;
            ok = (v[*n] = element_text(e)) != NULL;
            *n += ok;
        }
    }
    json_decref(a);
    if (!ok) {
        free_strings(v, *n);
        *n = 0;
        return false;
    }
    *out = v;
    return true;
}

/* ---------------------------------------------------------------- runs */

static void read_run(sqlite3_stmt *st, report_run *r)
{
    r->id = sqlite3_column_int64(st, 0);
    r->label = col_text(st, 1);
    r->started_at = col_text(st, 2);
    r->ended_at = col_text(st, 3);
    r->upstream = col_text(st, 4);
    r->pgscope_version = col_text(st, 5);
    r->duration_s = col_real(st, 6);
    int64_t *counters[] = {
        &r->connections,           &r->statements,         &r->events_dropped,   &r->lost_writes,
        &r->fingerprint_fallbacks, &r->fingerprint_parses, &r->fingerprint_hits, &r->track_desyncs};
    for (int i = 0; i < 8; i++)
        *counters[i] = sqlite3_column_int64(st, 7 + i);
    const char *unused = (const char *)sqlite3_column_text(st, 15);
    r->has_unused_ignores =
        unused && json_strings(unused, false, &r->unused_ignores, &r->n_unused_ignores);
    r->max_shapes = sqlite3_column_type(st, 16) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 16);
    r->folded_shapes = sqlite3_column_int64(st, 17);
    r->folded_calls = sqlite3_column_int64(st, 18);
    r->explain_login_error = col_text(st, 19);
}

static bool load_runs(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    const char *sql = d->schema_version >= 6   ? sql_runs
                      : d->schema_version >= 5 ? sql_runs_v5
                      : d->schema_version >= 2 ? sql_runs_v2
                                               : sql_runs_v1;
    if (!prepare(db, sql, &st, err, errlen))
        return false;
    bind_run(st, 1, run_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (d->n_runs == cap) {
            cap = cap ? cap * 2 : 8;
            report_run *runs = realloc(d->runs, cap * sizeof(*runs));
            if (!runs) {
                sqlite3_finalize(st);
                snprintf(err, errlen, "out of memory");
                return false;
            }
            d->runs = runs;
        }
        memset(&d->runs[d->n_runs], 0, sizeof(d->runs[0]));
        read_run(st, &d->runs[d->n_runs++]);
    }
    bool ok = step_end(db, rc, err, errlen);
    sqlite3_finalize(st);
    return ok;
}

static int64_t latest_run(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t id = 0;

    if (sqlite3_prepare_v2(db, "SELECT max(id) FROM runs", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

/* ---------------------------------------------------------------- statements */

static void read_statement(sqlite3_stmt *st, report_statement *s)
{
    const void *blob = sqlite3_column_blob(st, C_HISTOGRAM);
    int len = sqlite3_column_bytes(st, C_HISTOGRAM);

    /* the latency histogram, for pgscope check's timing rule; NULL when not usable */
    if (blob && len > 0 && (s->hist = malloc(sizeof(*s->hist))) &&
        !stats_hist_decode(s->hist, blob, (size_t)len)) {
        free(s->hist);
        s->hist = NULL;
    }
    copy_fixed(s->fingerprint, sizeof(s->fingerprint), st, C_FINGERPRINT);
    s->database = col_text(st, C_DATABASE);
    s->user = col_text(st, C_USER);
    s->query = col_text(st, C_QUERY);
    s->command = col_text(st, C_COMMAND);
    s->fallback = sqlite3_column_int(st, C_FALLBACK) != 0;
    s->calls = sqlite3_column_int64(st, C_CALLS);
    s->errors = sqlite3_column_int64(st, C_ERRORS);
    s->rows = sqlite3_column_int64(st, C_ROWS);
    s->total_ms = sqlite3_column_double(st, C_TOTAL);
    s->min_ms = col_real(st, C_MIN);
    s->max_ms = col_real(st, C_MAX);
    s->mean_ms = col_real(st, C_MEAN);
    s->stddev_ms = col_real(st, C_STDDEV);
    s->p50_ms = col_real(st, C_P50);
    s->p95_ms = col_real(st, C_P95);
    s->p99_ms = col_real(st, C_P99);
    s->first_seen = col_text(st, C_FIRST);
    s->last_seen = col_text(st, C_LAST);
    s->example_query = col_text(st, C_EXAMPLE_QUERY);
    s->example_params = s->example_query ? col_text(st, C_EXAMPLE_PARAMS) : NULL;
}

/* ---------------------------------------------------------------- merging runs */

/* What the merge of one shape's rows accumulates besides sums. */
typedef struct {
    stats_hist *acc, *one;
    bool hist_ok;
    double mean, m2; /* Chan et al.'s pairwise combination of means and squared deviations */
    bool spread_ok;
    int rows;
} shape_merge;

/* stats_entry_stddev is the population deviation (Welford's m2 / n): a run's m2 is
 * stddev² · n, and two parts combine with the spread of their means. */
static void merge_spread(shape_merge *m, int64_t n_before, int64_t n, double mean, double stddev)
{
    if (n <= 0)
        return;
    if (!isfinite(stddev) || !isfinite(mean)) {
        m->spread_ok = false;
        return;
    }
    double total = (double)(n_before + n), delta = mean - m->mean;
    m->m2 += stddev * stddev * (double)n + delta * delta * (double)n_before * (double)n / total;
    m->mean += delta * (double)n / total;
}

static void merge_histogram(shape_merge *m, sqlite3_stmt *st)
{
    const void *blob = sqlite3_column_blob(st, C_HISTOGRAM);
    int len = sqlite3_column_bytes(st, C_HISTOGRAM);

    if (!blob || len <= 0 || !stats_hist_decode(m->one, blob, (size_t)len)) {
        m->hist_ok = false;
        return;
    }
    stats_hist_merge(m->acc, m->one);
}

static char *earlier(char *a, char *b)
{
    bool keep_a = a && (!b || strcmp(a, b) <= 0);

    free(keep_a ? b : a);
    return keep_a ? a : b;
}

static char *later(char *a, char *b)
{
    bool keep_a = a && (!b || strcmp(a, b) >= 0);

    free(keep_a ? b : a);
    return keep_a ? a : b;
}

/* Adds one more (older) run's row r of the shape to the merged s. */
static void merge_into(report_statement *s, report_statement *r)
{
    s->fallback |= r->fallback;
    s->calls += r->calls;
    s->errors += r->errors;
    s->rows += r->rows;
    s->total_ms += r->total_ms;
    s->min_ms = isnan(s->min_ms) || r->min_ms < s->min_ms ? r->min_ms : s->min_ms;
    s->max_ms = isnan(s->max_ms) || r->max_ms > s->max_ms ? r->max_ms : s->max_ms;
    s->first_seen = earlier(s->first_seen, r->first_seen);
    s->last_seen = later(s->last_seen, r->last_seen);
    r->first_seen = r->last_seen = NULL;
    if (!s->query) { /* the latest run's text and example win */
        s->query = r->query;
        r->query = NULL;
    }
    if (!s->example_query) {
        s->example_query = r->example_query;
        s->example_params = r->example_params;
        r->example_query = r->example_params = NULL;
    }
}

static void free_statement(report_statement *s);

static void merge_row(shape_merge *m, sqlite3_stmt *st, report_statement *s)
{
    report_statement r = {.calls = 0};

    read_statement(st, &r);
    merge_spread(m, m->rows == 0 ? 0 : s->calls, r.calls,
                 r.calls > 0 ? r.total_ms / (double)r.calls : NAN, r.stddev_ms);
    merge_histogram(m, st);
    if (m->rows++ == 0) {
        free_statement(s); /* the latest run's row starts the merge */
        *s = r;
    } else {
        merge_into(s, &r);
        free_statement(&r);
    }
}

static void finish_merge(shape_merge *m, report_statement *s)
{
    if (m->rows <= 1)
        return; /* a shape seen in one run keeps that run's figures */
    s->mean_ms = s->calls > 0 ? s->total_ms / (double)s->calls : NAN;
    s->stddev_ms = m->spread_ok && s->calls > 0 ? sqrt(m->m2 / (double)s->calls) : NAN;
    if (m->hist_ok && m->acc->count > 0) {
        double lo = s->min_ms * 1000.0, hi = s->max_ms * 1000.0;
        s->p50_ms = stats_hist_quantile_within(m->acc, 0.50, lo, hi) / 1000.0;
        s->p95_ms = stats_hist_quantile_within(m->acc, 0.95, lo, hi) / 1000.0;
        s->p99_ms = stats_hist_quantile_within(m->acc, 0.99, lo, hi) / 1000.0;
    } else {
        s->p50_ms = s->p95_ms = s->p99_ms = NAN; /* a run without a usable histogram */
    }
}

/* Replaces the key-only s with the merge of the shape's rows in every run. */
static bool merge_shape(sqlite3_stmt *st, stats_hist *acc, stats_hist *one, report_statement *s)
{
    shape_merge m = {acc, one, true, 0, 0, true, 0};
    int rc;

    memset(acc, 0, sizeof(*acc));
    /* s is rewritten by the first row: bind copies of its key. */
    sqlite3_bind_text(st, 1, s->fingerprint, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, s->database ? s->database : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, s->user ? s->user : "", -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        merge_row(&m, st, s);
    sqlite3_reset(st);
    finish_merge(&m, s);
    return rc == SQLITE_DONE;
}

/* Text, sums, spread and percentiles of every merged shape. */
static bool merge_shapes(sqlite3 *db, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    stats_hist *h = calloc(2, sizeof(*h));
    bool ok = h != NULL;

    if (!ok)
        snprintf(err, errlen, "out of memory");
    else
        ok = prepare(db, sql_shape_runs, &st, err, errlen);
    for (size_t i = 0; ok && i < d->n_stmts; i++) {
        ok = merge_shape(st, &h[0], &h[1], &d->stmts[i]);
        if (!ok)
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    free(h);
    return ok;
}

static bool grow_statements(report_data *d, size_t *cap)
{
    if (d->n_stmts < *cap)
        return true;
    size_t n = *cap ? *cap * 2 : 32;
    report_statement *s = realloc(d->stmts, n * sizeof(*s));
    if (!s)
        return false;
    d->stmts = s;
    *cap = n;
    return true;
}

/* A merged shape's key, to be filled in by merge_shapes. */
static void read_key(sqlite3_stmt *st, report_statement *s, int64_t *shapes)
{
    copy_fixed(s->fingerprint, sizeof(s->fingerprint), st, 0);
    s->database = col_text(st, 1);
    s->user = col_text(st, 2);
    *shapes = sqlite3_column_int64(st, 4);
}

static bool load_statements(sqlite3 *db, int64_t run_id, int limit, report_data *d, char *err,
                            size_t errlen)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    if (!prepare(db, d->all ? sql_merged_top : sql_run_statements, &st, err, errlen))
        return false;
    if (!d->all)
        sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, d->all ? 1 : 2, limit > 0 ? limit : -1); /* -1: no limit */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!grow_statements(d, &cap)) {
            sqlite3_finalize(st);
            snprintf(err, errlen, "out of memory");
            return false;
        }
        report_statement *s = &d->stmts[d->n_stmts++];
        memset(s, 0, sizeof(*s));
        if (d->all)
            read_key(st, s, &d->shapes);
        else
            read_statement(st, s);
    }
    bool ok = step_end(db, rc, err, errlen);
    sqlite3_finalize(st);
    return ok && (!d->all || merge_shapes(db, d, err, errlen));
}

static int64_t count_run_shapes(sqlite3 *db, int64_t run_id)
{
    sqlite3_stmt *st = NULL;
    int64_t n = 0;

    if (sqlite3_prepare_v2(db, sql_count_run, -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---------------------------------------------------------------- errors and tags */

static bool load_errors(sqlite3_stmt *st, int64_t run_id, report_statement *s)
{
    size_t cap = 0;

    bind_run(st, 1, run_id);
    sqlite3_bind_text(st, 2, s->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->database ? s->database : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->user ? s->user : "", -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (s->n_errs == cap) {
            cap = cap ? cap * 2 : 4;
            report_error *e = realloc(s->errs, cap * sizeof(*e));
            if (!e)
                break;
            s->errs = e;
        }
        copy_fixed(s->errs[s->n_errs].sqlstate, sizeof(s->errs[0].sqlstate), st, 0);
        s->errs[s->n_errs++].count = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE;
}

static bool load_tags(sqlite3_stmt *st, int64_t run_id, report_statement *s)
{
    size_t cap = 0;

    bind_run(st, 1, run_id);
    sqlite3_bind_text(st, 2, s->fingerprint, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (s->n_tags == cap) {
            cap = cap ? cap * 2 : 4;
            report_tag *t = realloc(s->tags, cap * sizeof(*t));
            if (!t)
                break;
            s->tags = t;
        }
        report_tag *t = &s->tags[s->n_tags++];
        t->tags = col_text(st, 0);
        t->calls = sqlite3_column_int64(st, 1);
        t->total_ms = sqlite3_column_double(st, 2);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE;
}

static bool load_details(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *errs = NULL, *tags = NULL;
    bool ok =
        prepare(db, sql_errors, &errs, err, errlen) && prepare(db, sql_tags, &tags, err, errlen);

    for (size_t i = 0; ok && i < d->n_stmts; i++) {
        ok = load_errors(errs, run_id, &d->stmts[i]) && load_tags(tags, run_id, &d->stmts[i]);
        if (!ok)
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(errs);
    sqlite3_finalize(tags);
    return ok;
}

/* ---------------------------------------------------------------- the folded shapes */

/* The "other" row of the run (run_id > 0) or of every run, merged, with its errors; d->other
 * stays NULL when there is none (nothing folded, or a file before version 5). */
static bool load_other(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL, *errs = NULL;
    stats_hist *h = calloc(2, sizeof(*h));
    report_statement *s = calloc(1, sizeof(*s));
    bool ok = h && s;

    for (size_t i = 0; i < d->n_runs; i++)
        d->folded_shapes += d->runs[i].folded_shapes;
    if (!ok)
        snprintf(err, errlen, "out of memory");
    if (ok && d->schema_version >= 5)
        ok = prepare(db, sql_shape_runs, &st, err, errlen) &&
             prepare(db, sql_errors, &errs, err, errlen);
    if (ok && st) {
        snprintf(s->fingerprint, sizeof(s->fingerprint), "%s", STORE_OTHER_FINGERPRINT);
        bind_run(st, 4, run_id);
        ok = merge_shape(st, &h[0], &h[1], s) && load_errors(errs, run_id, s);
        if (!ok)
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    }
    if (ok && s->calls > 0) {
        d->other = s;
        s = NULL;
    }
    if (s)
        free_statement(s);
    free(s);
    sqlite3_finalize(st);
    sqlite3_finalize(errs);
    free(h);
    return ok;
}

/* ---------------------------------------------------------------- N+1 findings */

static int severity_rank(const char *severity)
{
    static const char *const order[] = {"high", "medium", "low"};

    for (int i = 0; i < 3; i++)
        if (strcmp(severity, order[i]) == 0)
            return i;
    return 3;
}

static bool read_finding(sqlite3_stmt *st, report_nplusone *f)
{
    const char *kind = (const char *)sqlite3_column_text(st, F_KIND);
    const char *children = (const char *)sqlite3_column_text(st, F_CHILD_QUERIES);
    const char *examples = (const char *)sqlite3_column_text(st, F_EXAMPLES);

    f->duplicate = kind && strcmp(kind, "duplicate") == 0;
    f->insert_loop = kind && strcmp(kind, "batch_insert") == 0;
    f->chance =
        sqlite3_column_type(st, F_CHANCE) == SQLITE_NULL ? -1 : sqlite3_column_double(st, F_CHANCE);
    copy_fixed(f->orm, sizeof(f->orm), st, F_ORM);
    f->test = col_text(st, F_TEST);
    if (f->test && !f->test[0]) {
        free(f->test);
        f->test = NULL;
    }
    copy_fixed(f->parent_fingerprint, sizeof(f->parent_fingerprint), st, F_PARENT_FP);
    f->parent_query = col_text(st, F_PARENT_QUERY);
    f->child_fingerprints = col_text(st, F_CHILD_FPS);
    f->confirmed = sqlite3_column_int(st, F_CONFIRMED) != 0;
    f->linked_column = col_text(st, F_LINKED);
    if (f->linked_column && !f->linked_column[0]) {
        free(f->linked_column);
        f->linked_column = NULL;
    }
    f->occurrences = sqlite3_column_int64(st, F_OCCURRENCES);
    f->max_n = sqlite3_column_int64(st, F_MAX_N);
    f->total_n = sqlite3_column_int64(st, F_TOTAL_N);
    f->total_ms = sqlite3_column_double(st, F_TOTAL_MS);
    f->saving_ms = sqlite3_column_double(st, F_SAVING_MS);
    f->examples = col_text(st, F_EXAMPLES);
    copy_fixed(f->severity, sizeof(f->severity), st, F_SEVERITY);
    f->suggestion = col_text(st, F_SUGGESTION);
    f->first_seen = col_text(st, F_FIRST);
    f->last_seen = col_text(st, F_LAST);
    return json_strings(children ? children : "[]", false, &f->child_queries,
                        &f->n_child_queries) &&
           json_strings(examples ? examples : "[]", true, &f->example_texts, &f->n_example_texts);
}

static bool same_finding(const report_nplusone *a, const report_nplusone *b)
{
    return a->duplicate == b->duplicate && a->insert_loop == b->insert_loop &&
           strcmp(a->parent_fingerprint, b->parent_fingerprint) == 0 &&
           strcmp(a->child_fingerprints ? a->child_fingerprints : "",
                  b->child_fingerprints ? b->child_fingerprints : "") == 0;
}

static void take_text(char **dst, char **src)
{
    if (!*dst) {
        *dst = *src;
        *src = NULL;
    }
}

/* Adds an older run's row r of the same finding to f: counts add up, the worst N and severity
 * stay, and the texts come from the latest run that has them. A loop proven in any run is
 * proven, with the column of the latest run that proved it. */
static void merge_finding(report_nplusone *f, report_nplusone *r)
{
    f->occurrences += r->occurrences;
    f->total_n += r->total_n;
    f->total_ms += r->total_ms;
    f->saving_ms += r->saving_ms;
    f->max_n = r->max_n > f->max_n ? r->max_n : f->max_n;
    if (severity_rank(r->severity) < severity_rank(f->severity))
        memcpy(f->severity, r->severity, sizeof(f->severity));
    if (r->confirmed && !f->confirmed) {
        f->confirmed = true;
        free(f->linked_column);
        f->linked_column = NULL;
    }
    if (r->confirmed == f->confirmed)
        take_text(&f->linked_column, &r->linked_column);
    take_text(&f->parent_query, &r->parent_query);
    take_text(&f->suggestion, &r->suggestion);
    take_text(&f->test, &r->test);
    f->first_seen = earlier(f->first_seen, r->first_seen);
    f->last_seen = later(f->last_seen, r->last_seen);
    r->first_seen = r->last_seen = NULL;
}

static void free_finding(report_nplusone *f)
{
    free(f->parent_query);
    free(f->child_fingerprints);
    free_strings(f->child_queries, f->n_child_queries);
    free(f->linked_column);
    free(f->examples);
    free_strings(f->example_texts, f->n_example_texts);
    free(f->suggestion);
    free(f->first_seen);
    free(f->last_seen);
    free(f->test);
}

static int kind_rank(const report_nplusone *f)
{
    return f->duplicate ? 1 : f->insert_loop ? 2 : 0;
}

/* N+1 loops, then duplicates, then insert loops; then the most severe, then the largest saving
 * first. */
static int finding_order(const void *pa, const void *pb)
{
    const report_nplusone *a = pa, *b = pb;
    int ra = severity_rank(a->severity), rb = severity_rank(b->severity);

    if (kind_rank(a) != kind_rank(b))
        return kind_rank(a) < kind_rank(b) ? -1 : 1;
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (a->saving_ms != b->saving_ms)
        return a->saving_ms > b->saving_ms ? -1 : 1;
    if (a->total_ms != b->total_ms)
        return a->total_ms > b->total_ms ? -1 : 1;
    int c = strcmp(a->parent_fingerprint, b->parent_fingerprint);
    return c ? c
             : strcmp(a->child_fingerprints ? a->child_fingerprints : "",
                      b->child_fingerprints ? b->child_fingerprints : "");
}

/* One row: merged into the previous finding when it has the same key (an older run of it),
 * else a new finding. */
static bool add_finding(sqlite3_stmt *st, report_data *d, size_t *cap)
{
    report_nplusone r = {.duplicate = false};
    bool ok = read_finding(st, &r);

    if (ok && d->n_findings > 0 && same_finding(&d->findings[d->n_findings - 1], &r)) {
        merge_finding(&d->findings[d->n_findings - 1], &r);
        free_finding(&r);
        return true;
    }
    if (ok && d->n_findings == *cap) {
        size_t n = *cap ? *cap * 2 : 16;
        report_nplusone *f = realloc(d->findings, n * sizeof(*f));
        ok = f != NULL;
        if (ok) {
            d->findings = f;
            *cap = n;
        }
    }
    if (!ok) {
        free_finding(&r);
        return false;
    }
    d->findings[d->n_findings++] = r;
    return true;
}

static bool load_findings(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    if (d->schema_version < 2)
        return true; /* a file from before N+1 detection */
    const char *sql = d->schema_version >= 8   ? sql_findings
                      : d->schema_version >= 7 ? sql_findings_v7
                                               : sql_findings_v2;
    if (!prepare(db, sql, &st, err, errlen))
        return false;
    bind_run(st, 1, run_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!add_finding(st, d, &cap)) {
            sqlite3_finalize(st);
            snprintf(err, errlen, "out of memory");
            return false;
        }
    }
    bool ok = step_end(db, rc, err, errlen);
    sqlite3_finalize(st);
    if (ok && d->n_findings > 1)
        qsort(d->findings, d->n_findings, sizeof(d->findings[0]), finding_order);
    return ok;
}

static bool has_string(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* The allow-list entries that never matched: the run's list or, over all runs, the entries of
 * the latest run's list that every other run with a list also left unused. An entry missing
 * from a run's list matched in that run (or was not configured then); either way it cannot be
 * called unused, so the intersection never claims too much. */
static bool collect_unused_ignores(report_data *d)
{
    const report_run *latest = NULL;

    for (size_t i = d->n_runs; i-- > 0 && !latest;)
        if (d->runs[i].has_unused_ignores)
            latest = &d->runs[i];
    if (!latest || latest->n_unused_ignores == 0)
        return true;
    d->unused_ignores = calloc(latest->n_unused_ignores, sizeof(*d->unused_ignores));
    if (!d->unused_ignores)
        return false;
    for (size_t k = 0; k < latest->n_unused_ignores; k++) {
        const char *entry = latest->unused_ignores[k];
        bool unused = true;
        for (size_t i = 0; unused && i < d->n_runs; i++) {
            const report_run *r = &d->runs[i];
            unused =
                !r->has_unused_ignores || has_string(r->unused_ignores, r->n_unused_ignores, entry);
        }
        if (unused && !(d->unused_ignores[d->n_unused_ignores++] = strdup(entry)))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- plans (schema 3) */

/* The array items with room for one more (n used of *cap), or NULL (items unchanged) when out
 * of memory. */
static void *grow_array(void *items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(items, c * size);
    if (p)
        *cap = c;
    return p;
}

/* Runs sql with ?1 bound to id (NULL for 0) and hands every row to add (false: out of
 * memory). */
static bool each_row(sqlite3 *db, const char *sql, int64_t id,
                     bool (*add)(sqlite3_stmt *st, void *arg, size_t *cap), void *arg, char *err,
                     size_t errlen)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    if (!prepare(db, sql, &st, err, errlen))
        return false;
    bind_run(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!add(st, arg, &cap)) {
            sqlite3_finalize(st);
            snprintf(err, errlen, "out of memory");
            return false;
        }
    }
    bool ok = step_end(db, rc, err, errlen);
    sqlite3_finalize(st);
    return ok;
}

static void read_plan(sqlite3_stmt *st, report_plan *p)
{
    p->id = sqlite3_column_int64(st, P_ID);
    p->run_id = sqlite3_column_int64(st, P_RUN);
    p->seq = sqlite3_column_int64(st, P_SEQ);
    copy_fixed(p->fingerprint, sizeof(p->fingerprint), st, P_FINGERPRINT);
    p->database = col_text(st, P_DATABASE);
    p->user = col_text(st, P_USER);
    p->query = col_text(st, P_QUERY);
    p->params = col_text(st, P_PARAMS);
    p->analyzed = sqlite3_column_int(st, P_ANALYZED) != 0;
    p->trigger_ms = col_real(st, P_TRIGGER);
    p->planning_ms = col_real(st, P_PLANNING);
    p->execution_ms = col_real(st, P_EXECUTION);
    p->side_ms = col_real(st, P_SIDE);
    p->taken_at = col_text(st, P_TAKEN);
}

static void free_plan(report_plan *p)
{
    free(p->database);
    free(p->user);
    free(p->query);
    free(p->params);
    free(p->taken_at);
}

static bool add_plan(sqlite3_stmt *st, void *arg, size_t *cap)
{
    report_data *d = arg;
    report_plan *v = grow_array(d->plans, d->n_plans, cap, sizeof(*v));

    if (!v)
        return false;
    d->plans = v;
    memset(&v[d->n_plans], 0, sizeof(v[0]));
    read_plan(st, &v[d->n_plans++]);
    return true;
}

static void read_plan_finding(sqlite3_stmt *st, report_plan_finding *f)
{
    f->plan_id = sqlite3_column_int64(st, PF_PLAN);
    copy_fixed(f->fingerprint, sizeof(f->fingerprint), st, PF_FINGERPRINT);
    f->query = col_text(st, PF_QUERY);
    copy_fixed(f->kind, sizeof(f->kind), st, PF_KIND);
    f->relation = col_text(st, PF_RELATION);
    f->node_path = col_text(st, PF_PATH);
    f->detail = col_text(st, PF_DETAIL);
    f->magnitude = col_real(st, PF_MAGNITUDE);
    f->weight_ms = sqlite3_column_double(st, PF_WEIGHT);
    bool counted = sqlite3_column_type(st, PF_CALLS) != SQLITE_NULL;
    f->calls = counted ? sqlite3_column_int64(st, PF_CALLS) : -1;
    f->mean_ms = f->calls > 0 ? f->weight_ms / (double)f->calls : NAN;
    f->plans = sqlite3_column_int64(st, PF_PLANS);
    f->test = col_text(st, PF_TEST);
    if (f->test && !f->test[0]) {
        free(f->test);
        f->test = NULL;
    }
}

static void free_plan_finding(report_plan_finding *f)
{
    free(f->query);
    free(f->relation);
    free(f->node_path);
    free(f->detail);
    free(f->test);
}

/* Where add_plan_finding appends: report_data's list or a plan's. */
typedef struct {
    report_plan_finding **items;
    size_t *n;
} finding_list;

static bool add_plan_finding(sqlite3_stmt *st, void *arg, size_t *cap)
{
    finding_list *l = arg;
    report_plan_finding *v = grow_array(*l->items, *l->n, cap, sizeof(*v));

    if (!v)
        return false;
    *l->items = v;
    memset(&v[*l->n], 0, sizeof(v[0]));
    read_plan_finding(st, &v[(*l->n)++]);
    return true;
}

static bool add_explain_count(sqlite3_stmt *st, void *arg, size_t *cap)
{
    report_data *d = arg;
    report_explain_count *v = grow_array(d->explain, d->n_explain, cap, sizeof(*v));

    if (!v)
        return false;
    d->explain = v;
    copy_fixed(v[d->n_explain].reason, sizeof(v[0].reason), st, 0);
    v[d->n_explain++].count = sqlite3_column_int64(st, 1);
    return true;
}

static const char sql_tests[] =
    "SELECT test, sum(calls), count(DISTINCT fingerprint), sum(total_ms) FROM test_statements "
    "WHERE ?1 IS NULL OR run_id = ?1 GROUP BY test ORDER BY 4 DESC, 1";

static bool add_test(sqlite3_stmt *st, void *arg, size_t *cap)
{
    report_data *d = arg;
    report_test *v = grow_array(d->tests, d->n_tests, cap, sizeof(*v));

    if (!v)
        return false;
    d->tests = v;
    v += d->n_tests;
    memset(v, 0, sizeof(*v));
    if (!(v->name = col_text(st, 0)))
        return false;
    v->statements = sqlite3_column_int64(st, 1);
    v->shapes = sqlite3_column_int64(st, 2);
    v->total_ms = sqlite3_column_double(st, 3);
    for (size_t i = 0; i < d->n_findings; i++)
        v->findings += d->findings[i].test && strcmp(d->findings[i].test, v->name) == 0;
    for (size_t i = 0; i < d->n_plan_findings; i++)
        v->findings += d->plan_findings[i].test && strcmp(d->plan_findings[i].test, v->name) == 0;
    d->n_tests++;
    return true;
}

/* Statements per test (schema 9 and later), after the findings (each test counts its own). */
static bool load_tests(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    return d->schema_version < 9 || each_row(db, sql_tests, run_id, add_test, d, err, errlen);
}

/* Plans, consolidated plan findings and EXPLAIN outcomes of the run (or all runs: run_id 0). A
 * file from before EXPLAIN sampling has none of them: a report opens files read-only and never
 * migrates them, so their tables are not there to read. */
static bool load_plans(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    finding_list findings = {&d->plan_findings, &d->n_plan_findings};

    if (d->schema_version < 3)
        return true;
    return each_row(db, sql_plans, run_id, add_plan, d, err, errlen) &&
           each_row(db, d->schema_version >= 10 ? sql_plan_findings : sql_plan_findings_v3, run_id,
                    add_plan_finding, &findings, err, errlen) &&
           each_row(db, sql_explain, run_id, add_explain_count, d, err, errlen);
}

/* ---------------------------------------------------------------- index suggestions (schema 4) */

static bool read_index(sqlite3_stmt *st, report_index *x)
{
    const char *columns = (const char *)sqlite3_column_text(st, I_COLUMNS);
    const char *statements = (const char *)sqlite3_column_text(st, I_STATEMENTS);

    x->run_id = sqlite3_column_int64(st, I_RUN);
    x->rank = sqlite3_column_int64(st, I_RANK);
    x->database = col_text(st, I_DATABASE);
    x->ddl = col_text(st, I_DDL);
    x->schema = col_text(st, I_SCHEMA);
    x->table = col_text(st, I_TABLE);
    x->predicate = col_text(st, I_PREDICATE);
    x->verified = sqlite3_column_int(st, I_VERIFIED) != 0;
    x->cost_before = col_real(st, I_COST_BEFORE);
    x->cost_after = col_real(st, I_COST_AFTER);
    x->benefit_ms = col_real(st, I_BENEFIT);
    x->size_bytes = col_real(st, I_SIZE);
    x->write_statements = sqlite3_column_int64(st, I_WRITES);
    x->breaks_hot = sqlite3_column_int(st, I_BREAKS_HOT) != 0;
    x->misestimate = sqlite3_column_int(st, I_MISESTIMATE) != 0;
    return json_strings(columns ? columns : "[]", false, &x->columns, &x->n_columns) &&
           json_strings(statements ? statements : "[]", false, &x->fingerprints,
                        &x->n_fingerprints);
}

static void free_index(report_index *x)
{
    free(x->database);
    free(x->ddl);
    free(x->schema);
    free(x->table);
    free(x->predicate);
    free_strings(x->columns, x->n_columns);
    free_strings(x->fingerprints, x->n_fingerprints);
    for (size_t i = 0; i < x->n_statements; i++)
        free(x->statements[i].query);
    free(x->statements);
    for (size_t i = 0; i < x->n_tests; i++)
        free(x->tests[i].name);
    free(x->tests);
}

static bool add_index(sqlite3_stmt *st, void *arg, size_t *cap)
{
    report_data *d = arg;
    report_index *v = grow_array(d->indexes, d->n_indexes, cap, sizeof(*v));

    if (!v)
        return false;
    d->indexes = v;
    memset(&v[d->n_indexes], 0, sizeof(v[0]));
    bool ok = read_index(st, &v[d->n_indexes]);
    d->n_indexes++; /* freed with the others even when incomplete */
    return ok;
}

/* The statements with a row first, the most time first; then the others, as stored. */
static int index_statement_order(const void *pa, const void *pb)
{
    const report_index_statement *a = pa, *b = pb;
    bool ka = a->calls >= 0, kb = b->calls >= 0;

    if (ka != kb)
        return ka ? -1 : 1;
    if (ka && a->total_ms != b->total_ms)
        return a->total_ms > b->total_ms ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static bool lookup_index_statement(sqlite3_stmt *st, const report_index *x,
                                   report_index_statement *s)
{
    sqlite3_bind_int64(st, 1, x->run_id);
    sqlite3_bind_text(st, 2, s->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, x->database ? x->database : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 2) != SQLITE_NULL) {
        s->query = col_text(st, 1);
        s->calls = sqlite3_column_int64(st, 2);
        s->total_ms = sqlite3_column_double(st, 3);
        s->mean_ms = s->calls > 0 ? s->total_ms / (double)s->calls : NAN;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* Each suggestion's statements with their text, calls and time in its run. */
static bool lookup_index_statements(sqlite3 *db, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    bool ok = d->n_indexes == 0 || prepare(db, sql_index_statement, &st, err, errlen);

    for (size_t i = 0; ok && i < d->n_indexes; i++) {
        report_index *x = &d->indexes[i];
        if (x->n_fingerprints == 0)
            continue;
        x->statements = calloc(x->n_fingerprints, sizeof(*x->statements));
        if (!x->statements) {
            snprintf(err, errlen, "out of memory");
            ok = false;
            break;
        }
        for (size_t k = 0; ok && k < x->n_fingerprints; k++) {
            report_index_statement *s = &x->statements[x->n_statements++];
            *s = (report_index_statement){x->fingerprints[k], NULL, -1, NAN, NAN, k};
            ok = lookup_index_statement(st, x, s);
            if (!ok)
                snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        }
        qsort(x->statements, x->n_statements, sizeof(x->statements[0]), index_statement_order);
    }
    sqlite3_finalize(st);
    return ok;
}

static bool add_index_test(sqlite3_stmt *st, report_index *x, size_t *cap)
{
    report_index_test *v = grow_array(x->tests, x->n_tests, cap, sizeof(*v));

    if (!v)
        return false;
    x->tests = v;
    v += x->n_tests;
    if (!(v->name = col_text(st, 0)))
        return false;
    v->calls = sqlite3_column_int64(st, 1);
    v->total_ms = sqlite3_column_double(st, 2);
    x->n_tests++;
    return true;
}

/* Each suggestion's tests: those that ran the statements it helps. */
static bool lookup_index_tests(sqlite3 *db, report_data *d, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    bool ok = d->n_indexes == 0 || prepare(db, sql_index_tests, &st, err, errlen);
    int rc = SQLITE_DONE;

    for (size_t i = 0; ok && i < d->n_indexes; i++) {
        report_index *x = &d->indexes[i];
        size_t cap = 0;
        sqlite3_bind_int64(st, 1, x->run_id);
        sqlite3_bind_int64(st, 2, x->rank);
        while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ok = add_index_test(st, x, &cap);
        ok = ok && rc == SQLITE_DONE;
        if (!ok)
            snprintf(err, errlen, "%s", rc == SQLITE_ROW ? "out of memory" : sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return ok;
}

/* The run whose suggestions are shown: the run itself, or with --all (run_id 0) the latest run
 * that has any; 0 when there is none. */
static int64_t index_run(sqlite3 *db, int64_t run_id)
{
    sqlite3_stmt *st = NULL;

    if (run_id > 0)
        return run_id;
    if (sqlite3_prepare_v2(db, sql_index_run, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        run_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return run_id;
}

/* Index suggestions of the run (or, with all runs, of the latest run with any) with their
 * statements. A file from before the index advisor has none. */
static bool load_indexes(sqlite3 *db, int64_t run_id, report_data *d, char *err, size_t errlen)
{
    if (d->schema_version < 4)
        return true;
    int64_t from = index_run(db, run_id);
    if (from <= 0)
        return true;
    if (!each_row(db, sql_indexes, from, add_index, d, err, errlen))
        return false;
    d->indexes_run = d->n_indexes > 0 ? from : 0;
    return lookup_index_statements(db, d, err, errlen) &&
           (d->schema_version < 9 || lookup_index_tests(db, d, err, errlen));
}

bool report_load_plan(sqlite3 *db, int schema_version, int64_t id, report_plan_detail *out,
                      char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    finding_list findings = {&out->findings, &out->n_findings};

    memset(out, 0, sizeof(*out));
    if (schema_version < 3) {
        snprintf(err, errlen,
                 "there is no plan %lld: the file has schema version %d, from before "
                 "EXPLAIN sampling",
                 (long long)id, schema_version);
        return false;
    }
    if (!prepare(db, sql_plan, &st, err, errlen))
        return false;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_plan(st, &out->plan);
        out->text = col_text(st, P_TEXT);
        out->run_label = col_text(st, P_RUN_LABEL);
    } else if (rc == SQLITE_DONE) {
        snprintf(err, errlen, "there is no plan %lld", (long long)id);
    } else {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW &&
           each_row(db, schema_version >= 10 ? sql_findings_of_plan : sql_findings_of_plan_v3, id,
                    add_plan_finding, &findings, err, errlen);
}

void report_plan_detail_free(report_plan_detail *p)
{
    free_plan(&p->plan);
    free(p->run_label);
    free(p->text);
    for (size_t i = 0; i < p->n_findings; i++)
        free_plan_finding(&p->findings[i]);
    free(p->findings);
    memset(p, 0, sizeof(*p));
}

/* ---------------------------------------------------------------- entry points */

bool report_load(sqlite3 *db, int schema_version, int64_t run_id, bool all, int limit,
                 report_data *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->all = all;
    out->limit = limit;
    out->schema_version = schema_version;
    if (!all && run_id <= 0)
        run_id = latest_run(db);
    if (all)
        run_id = 0;
    else if (run_id <= 0)
        return true; /* no run yet: an empty report */
    if (!load_runs(db, run_id, out, err, errlen))
        return false;
    if (!all && out->n_runs == 0) {
        snprintf(err, errlen, "there is no run %lld", (long long)run_id);
        return false;
    }
    if (!all)
        out->shapes = count_run_shapes(db, run_id);
    if (!collect_unused_ignores(out)) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    return load_findings(db, run_id, out, err, errlen) &&
           load_statements(db, run_id, limit, out, err, errlen) &&
           load_details(db, run_id, out, err, errlen) && load_other(db, run_id, out, err, errlen) &&
           load_plans(db, run_id, out, err, errlen) && load_indexes(db, run_id, out, err, errlen) &&
           load_tests(db, run_id, out, err, errlen);
}

static void free_statement(report_statement *s)
{
    free(s->hist);
    free(s->database);
    free(s->user);
    free(s->query);
    free(s->command);
    free(s->first_seen);
    free(s->last_seen);
    free(s->example_query);
    free(s->example_params);
    free(s->errs);
    for (size_t i = 0; i < s->n_tags; i++)
        free(s->tags[i].tags);
    free(s->tags);
}

/* ---------------------------------------------------------------- shards */

/* Adds s, the same shape from another file, to t: counts add, the spreads combine, the
 * histograms merge and the percentiles come from the merged histogram. */
static void merge_statement(report_statement *t, report_statement *s)
{
    double n1 = (double)t->calls, n2 = (double)s->calls, n = n1 + n2, m2 = NAN;

    if (n1 > 0 && n2 > 0 && isfinite(t->stddev_ms) && isfinite(s->stddev_ms)) {
        double mean = (t->total_ms + s->total_ms) / n, d1 = t->total_ms / n1 - mean,
               d2 = s->total_ms / n2 - mean;
        m2 = t->stddev_ms * t->stddev_ms * n1 + n1 * d1 * d1 + s->stddev_ms * s->stddev_ms * n2 +
             n2 * d2 * d2;
    }
    merge_into(t, s);
    t->mean_ms = n > 0 ? t->total_ms / n : NAN;
    t->stddev_ms = n > 0 && isfinite(m2) ? sqrt(m2 / n) : NAN;
    if (t->hist && s->hist) {
        double lo = t->min_ms * 1000.0, hi = t->max_ms * 1000.0;
        stats_hist_merge(t->hist, s->hist);
        t->p50_ms = stats_hist_quantile_within(t->hist, 0.50, lo, hi) / 1000.0;
        t->p95_ms = stats_hist_quantile_within(t->hist, 0.95, lo, hi) / 1000.0;
        t->p99_ms = stats_hist_quantile_within(t->hist, 0.99, lo, hi) / 1000.0;
    } else {
        free(t->hist);
        t->hist = NULL;
        t->p50_ms = t->p95_ms = t->p99_ms = NAN;
    }
}

bool report_same_statement(const report_statement *x, const report_statement *y)
{
    return strcmp(x->fingerprint, y->fingerprint) == 0 &&
           strcmp(x->database ? x->database : "", y->database ? y->database : "") == 0 &&
           strcmp(x->user ? x->user : "", y->user ? y->user : "") == 0;
}

static int by_total(const void *a, const void *b)
{
    double x = ((const report_statement *)a)->total_ms, y = ((const report_statement *)b)->total_ms;

    return x < y ? 1 : x > y ? -1 : 0;
}

static bool merge_statements(report_data *d, report_data *s)
{
    report_statement *grown = realloc(d->stmts, (d->n_stmts + s->n_stmts + 1) * sizeof(*grown));

    if (!grown)
        return false;
    d->stmts = grown;
    for (size_t i = 0; i < s->n_stmts; i++) {
        report_statement *t = NULL;
        for (size_t j = 0; j < d->n_stmts && !t; j++)
            t = report_same_statement(&d->stmts[j], &s->stmts[i]) ? &d->stmts[j] : NULL;
        if (t) {
            merge_statement(t, &s->stmts[i]);
            free_statement(&s->stmts[i]);
        } else {
            d->stmts[d->n_stmts++] = s->stmts[i];
        }
    }
    s->n_stmts = 0;
    qsort(d->stmts, d->n_stmts, sizeof(*d->stmts), by_total);
    d->shapes = (int64_t)d->n_stmts;
    return true;
}

static bool merge_findings(report_data *d, report_data *s)
{
    report_nplusone *grown =
        realloc(d->findings, (d->n_findings + s->n_findings + 1) * sizeof(*grown));

    if (!grown)
        return false;
    d->findings = grown;
    for (size_t i = 0; i < s->n_findings; i++) {
        report_nplusone *t = NULL;
        for (size_t j = 0; j < d->n_findings && !t; j++)
            t = report_same_finding(&d->findings[j], &s->findings[i]) ? &d->findings[j] : NULL;
        if (t) {
            merge_finding(t, &s->findings[i]);
            free_finding(&s->findings[i]);
        } else {
            d->findings[d->n_findings++] = s->findings[i];
        }
    }
    s->n_findings = 0;
    qsort(d->findings, d->n_findings, sizeof(*d->findings), finding_order);
    return true;
}

static bool merge_tests(report_data *d, report_data *s)
{
    report_test *grown = realloc(d->tests, (d->n_tests + s->n_tests + 1) * sizeof(*grown));

    if (!grown)
        return false;
    d->tests = grown;
    for (size_t i = 0; i < s->n_tests; i++) {
        report_test *t = NULL;
        for (size_t j = 0; j < d->n_tests && !t; j++)
            t = strcmp(d->tests[j].name, s->tests[i].name) == 0 ? &d->tests[j] : NULL;
        if (t) {
            t->statements += s->tests[i].statements;
            t->findings += s->tests[i].findings;
            t->total_ms += s->tests[i].total_ms;
            t->shapes = t->shapes > s->tests[i].shapes ? t->shapes : s->tests[i].shapes;
            free(s->tests[i].name);
        } else {
            d->tests[d->n_tests++] = s->tests[i];
        }
    }
    s->n_tests = 0;
    return true;
}

/* Appends s's n items of size bytes to d's (*n_d of them); s gives them up. */
static bool append_items(void **d, size_t *n_d, void **s, size_t *n_s, size_t size)
{
    if (*n_s == 0)
        return true;
    char *grown = realloc(*d, (*n_d + *n_s) * size);
    if (!grown)
        return false;
    memcpy(grown + *n_d * size, *s, *n_s * size);
    *d = grown;
    *n_d += *n_s;
    *n_s = 0;
    return true;
}

bool report_same_plan_finding(const report_plan_finding *x, const report_plan_finding *y)
{
    return strcmp(x->fingerprint, y->fingerprint) == 0 && strcmp(x->kind, y->kind) == 0 &&
           strcmp(x->relation ? x->relation : "", y->relation ? y->relation : "") == 0 &&
           strcmp(x->node_path ? x->node_path : "", y->node_path ? y->node_path : "") == 0;
}

/* One finding of a shape in two shards: the larger one stands, times and plans add up. */
static void merge_plan_finding(report_plan_finding *t, report_plan_finding *f)
{
    t->weight_ms += f->weight_ms;
    t->calls = t->calls < 0 ? f->calls : f->calls < 0 ? t->calls : t->calls + f->calls;
    t->mean_ms = t->calls > 0 ? t->weight_ms / (double)t->calls : NAN;
    t->plans += f->plans;
    if (f->magnitude > t->magnitude) {
        report_plan_finding keep = *t;
        *t = *f;
        *f = keep; /* the smaller one is freed */
        t->weight_ms = keep.weight_ms, t->calls = keep.calls, t->mean_ms = keep.mean_ms;
        t->plans = keep.plans;
    }
    free_plan_finding(f);
}

static int plan_finding_order(const void *pa, const void *pb)
{
    const report_plan_finding *a = pa, *b = pb;

    if (a->weight_ms != b->weight_ms)
        return a->weight_ms > b->weight_ms ? -1 : 1;
    return a->magnitude > b->magnitude ? -1 : a->magnitude < b->magnitude;
}

/* A suggestion of the same index in another shard: its tests join t's (calls and time of a
 * test in both add up); t's figures stand, the shard's advice being about the same statements. */
static bool merge_index(report_index *t, report_index *x)
{
    report_index_test *grown = realloc(t->tests, (t->n_tests + x->n_tests + 1) * sizeof(*grown));

    if (!grown)
        return false;
    t->tests = grown;
    for (size_t i = 0; i < x->n_tests; i++) {
        report_index_test *same = NULL;
        for (size_t j = 0; j < t->n_tests && !same; j++)
            same = strcmp(t->tests[j].name, x->tests[i].name) == 0 ? &t->tests[j] : NULL;
        if (same) {
            same->calls += x->tests[i].calls;
            same->total_ms += x->tests[i].total_ms;
            free(x->tests[i].name);
        } else {
            t->tests[t->n_tests++] = x->tests[i];
        }
    }
    x->n_tests = 0;
    free_index(x);
    return true;
}

static bool merge_indexes(report_data *d, report_data *s)
{
    report_index *grown = realloc(d->indexes, (d->n_indexes + s->n_indexes + 1) * sizeof(*grown));
    bool ok = grown != NULL;

    if (!ok)
        return false;
    d->indexes = grown;
    for (size_t i = 0; i < s->n_indexes; i++) {
        report_index *t = NULL, *x = &s->indexes[i];
        for (size_t j = 0; j < d->n_indexes && !t; j++)
            t = strcmp(d->indexes[j].ddl ? d->indexes[j].ddl : "", x->ddl ? x->ddl : "") == 0 &&
                        strcmp(d->indexes[j].database ? d->indexes[j].database : "",
                               x->database ? x->database : "") == 0
                    ? &d->indexes[j]
                    : NULL;
        if (t)
            ok &= merge_index(t, x);
        else
            d->indexes[d->n_indexes++] = *x;
    }
    s->n_indexes = 0;
    return ok;
}

/* Plans listed, plan findings united, index suggestions united by their DDL: each shard's
 * advice is about its own statements (a plan number points into its own file). */
static bool merge_plans(report_data *d, report_data *s)
{
    report_plan_finding *grown =
        realloc(d->plan_findings, (d->n_plan_findings + s->n_plan_findings + 1) * sizeof(*grown));

    if (!grown)
        return false;
    d->plan_findings = grown;
    for (size_t i = 0; i < s->n_plan_findings; i++) {
        report_plan_finding *t = NULL;
        for (size_t j = 0; j < d->n_plan_findings && !t; j++)
            t = report_same_plan_finding(&d->plan_findings[j], &s->plan_findings[i])
                    ? &d->plan_findings[j]
                    : NULL;
        if (t)
            merge_plan_finding(t, &s->plan_findings[i]);
        else
            d->plan_findings[d->n_plan_findings++] = s->plan_findings[i];
    }
    s->n_plan_findings = 0;
    qsort(d->plan_findings, d->n_plan_findings, sizeof(*d->plan_findings), plan_finding_order);
    for (size_t i = 0; i < s->n_explain; i++) { /* EXPLAIN outcomes: counts of the same reason */
        for (size_t j = 0; j < d->n_explain; j++) {
            if (strcmp(d->explain[j].reason, s->explain[i].reason) == 0) {
                d->explain[j].count += s->explain[i].count;
                s->explain[i].count = -1;
            }
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < s->n_explain; i++)
        if (s->explain[i].count >= 0)
            s->explain[kept++] = s->explain[i];
    s->n_explain = kept;
    return append_items((void **)&d->explain, &d->n_explain, (void **)&s->explain, &s->n_explain,
                        sizeof(*d->explain)) &&
           append_items((void **)&d->plans, &d->n_plans, (void **)&s->plans, &s->n_plans,
                        sizeof(*d->plans)) &&
           merge_indexes(d, s);
}

bool report_merge(report_data *d, report_data *s)
{
    report_run *runs = realloc(d->runs, (d->n_runs + s->n_runs + 1) * sizeof(*runs));

    if (!runs)
        return false;
    d->runs = runs;
    memcpy(d->runs + d->n_runs, s->runs, s->n_runs * sizeof(*runs));
    d->n_runs += s->n_runs;
    s->n_runs = 0;
    d->all = true;
    return merge_statements(d, s) && merge_findings(d, s) && merge_plans(d, s) && merge_tests(d, s);
}

void report_data_free(report_data *d)
{
    for (size_t i = 0; i < d->n_tests; i++)
        free(d->tests[i].name);
    free(d->tests);
    for (size_t i = 0; i < d->n_runs; i++) {
        free(d->runs[i].label);
        free(d->runs[i].started_at);
        free(d->runs[i].ended_at);
        free(d->runs[i].upstream);
        free(d->runs[i].pgscope_version);
        free(d->runs[i].explain_login_error);
        free_strings(d->runs[i].unused_ignores, d->runs[i].n_unused_ignores);
    }
    free(d->runs);
    for (size_t i = 0; i < d->n_findings; i++)
        free_finding(&d->findings[i]);
    free(d->findings);
    free_strings(d->unused_ignores, d->n_unused_ignores);
    for (size_t i = 0; i < d->n_stmts; i++)
        free_statement(&d->stmts[i]);
    free(d->stmts);
    if (d->other)
        free_statement(d->other);
    free(d->other);
    for (size_t i = 0; i < d->n_plans; i++)
        free_plan(&d->plans[i]);
    free(d->plans);
    for (size_t i = 0; i < d->n_plan_findings; i++)
        free_plan_finding(&d->plan_findings[i]);
    free(d->plan_findings);
    free(d->explain);
    for (size_t i = 0; i < d->n_indexes; i++)
        free_index(&d->indexes[i]);
    free(d->indexes);
    memset(d, 0, sizeof(*d));
}
