/* verify.c — index candidates tried as hypothetical indexes (hypopg) on blocking libpq
 * connections of a thread of their own, each job inside one transaction that is rolled back. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "explain_int.h"
#include "pgscope/advisor.h"
#include "pgscope/clock.h"

#define MAX_OPEN 8   /* connections kept open, one per (database, user) */
#define MAX_PEERS 64 /* (database, user) pairs remembered, open or backing off */
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 60000
#define MAX_PARAMS 65535
#define MAX_CANDIDATES 4096
#define QUOTED_NAME (2 * ADVISOR_NAME + 2) /* "name" with every quote doubled */

struct job_node {
    advisor_job *job;
    struct job_node *next;
};

/* One (database, user): its connection while open, its backoff after a failed connect. */
struct peer {
    char *database; /* "" leaves it to the DSN */
    char *user;     /* "" leaves it to the DSN (or libpq's default) */
    PGconn *pg;
    PGcancel *cancel;
    bool extension_tried; /* CREATE EXTENSION was looked at on this connection */
    uint64_t last_used;
    int64_t backoff_until_us;
    int backoff_ms; /* 0: the last connection attempt succeeded */
    char error[256];
};

struct advisor_verifier {
    advisor_settings set;
    char *dsn, *host, *port, *sslmode, *sslrootcert; /* owned copies of the settings' strings */
    pthread_t thread;
    struct peer *peers[MAX_PEERS]; /* touched by the verification thread only */
    int n_peers;
    uint64_t clock; /* orders the peers' uses, for closing the least recently used */

    pthread_mutex_t lock; /* guards the fields below, shared with the callers' threads */
    pthread_cond_t wake;
    struct job_node *head, *tail;
    int waiting;
    bool stopping;
    PGcancel *running;    /* the statement in flight, for stop to cancel */
    explain_list results; /* advisor_result *, for advisor_verifier_results */
};

/* One job on one connection. */
struct run {
    advisor_verifier *v;
    struct peer *p;
    const advisor_job *job;
    advisor_result *r;
    char hypopg[QUOTED_NAME]; /* hypopg's schema, quoted; "" when it is not there */
    char error[256];          /* the last statement's error */
    bool stopped;             /* stop came: the job is abandoned */
};

/* The first line of a libpq message, for a log line. */
static void copy_line(char *dst, size_t n, const char *src)
{
    if (src == NULL || *src == '\0')
        src = "unknown error";
    size_t len = strcspn(src, "\r\n");
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* "name" with quotes doubled: identifiers are always quoted, never trusted as written. */
static void quote_ident(char *dst, size_t cap, const char *name)
{
    size_t o = 0;
    dst[o++] = '"';
    for (const char *s = name; *s != '\0' && o + 3 < cap; s++) {
        if (*s == '"')
            dst[o++] = '"';
        dst[o++] = *s;
    }
    dst[o++] = '"';
    dst[o] = '\0';
}

/* ---- jobs, results, settings ---- */

void advisor_job_free(advisor_job *job)
{
    if (job == NULL)
        return;
    for (int i = 0; job->params != NULL && i < job->n_params; i++)
        free(job->params[i]);
    free(job->params);
    free(job->param_types);
    free(job->param_lengths);
    free(job->param_formats);
    free(job->database);
    free(job->user);
    free(job->search_path);
    free(job->query);
    free(job->candidates);
    free(job);
}

void advisor_result_free(advisor_result *r)
{
    if (r == NULL)
        return;
    free(r->trials);
    free(r);
}

static void free_result(void *r)
{
    advisor_result_free(r);
}

void advisor_settings_default(advisor_settings *s)
{
    memset(s, 0, sizeof *s);
    s->dsn = "";
    s->statement_timeout_ms = 5000;
    s->lock_timeout_ms = 0;
    s->min_reduction = 0.30;
    s->create_extension = false;
    s->queue_size = 64;
}

static void settings_clamp(advisor_settings *s)
{
    advisor_settings d;
    advisor_settings_default(&d);
    if (s->statement_timeout_ms < 0)
        s->statement_timeout_ms = d.statement_timeout_ms;
    if (s->lock_timeout_ms < 0)
        s->lock_timeout_ms = d.lock_timeout_ms;
    /* Written so that NaN fails too. */
    if (!(s->min_reduction >= 0.0 && s->min_reduction < 1.0))
        s->min_reduction = d.min_reduction;
    if (s->queue_size < 1)
        s->queue_size = d.queue_size;
}

static bool job_valid(const advisor_job *job)
{
    return job->query != NULL && job->n_params >= 0 && job->n_params <= MAX_PARAMS &&
           (job->n_params == 0 || job->params != NULL) && job->n_candidates >= 0 &&
           job->n_candidates <= MAX_CANDIDATES &&
           (job->n_candidates == 0 || job->candidates != NULL);
}

/* A candidate as the trials keep it: strings terminated and the column count in range,
 * whatever the submitter left in the fixed arrays. */
static void index_sanitize(advisor_index *ix)
{
    ix->schema[ADVISOR_NAME - 1] = '\0';
    ix->table[ADVISOR_NAME - 1] = '\0';
    for (int c = 0; c < ADVISOR_MAX_COLUMNS; c++)
        ix->columns[c][ADVISOR_NAME - 1] = '\0';
    ix->predicate[ADVISOR_PREDICATE - 1] = '\0';
    if (ix->n_columns < 0)
        ix->n_columns = 0;
    if (ix->n_columns > ADVISOR_MAX_COLUMNS)
        ix->n_columns = ADVISOR_MAX_COLUMNS;
}

/* A result with one UNVERIFIED trial per candidate, still to be decided. */
static advisor_result *result_new(const advisor_job *job, bool valid)
{
    advisor_result *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->id = job->id;
    r->fingerprint = job->fingerprint;
    r->cost_before = -1;
    if (!valid || job->n_candidates == 0)
        return r;
    r->trials = calloc((size_t)job->n_candidates, sizeof *r->trials);
    if (r->trials == NULL) {
        free(r);
        return NULL;
    }
    r->n_trials = job->n_candidates;
    for (int i = 0; i < r->n_trials; i++) {
        advisor_trial *t = &r->trials[i];
        t->index = job->candidates[i];
        index_sanitize(&t->index);
        t->outcome = ADVISOR_TRIAL_UNVERIFIED;
        t->cost_after = -1;
        t->size_bytes = -1;
    }
    return r;
}

static void result_fail(advisor_result *r, const char *why)
{
    r->ok = false;
    copy_line(r->error, sizeof r->error, why);
}

static void deliver(advisor_verifier *v, advisor_result *r)
{
    pthread_mutex_lock(&v->lock);
    bool kept = explain_list_push(&v->results, r);
    pthread_mutex_unlock(&v->lock);
    if (!kept)
        advisor_result_free(r);
}

/* ---- statements ---- */

/* Runs one statement where stop can cancel it. NULL (run->stopped) once stop was asked: the
 * flag and the statement in flight are set under one lock, so a cancel is never lost between
 * two statements. */
static PGresult *exec_raw(struct run *run, const char *sql, int n, const char *const *vals,
                          const advisor_job *bind)
{
    advisor_verifier *v = run->v;
    pthread_mutex_lock(&v->lock);
    run->stopped = v->stopping;
    if (!run->stopped)
        v->running = run->p->cancel;
    pthread_mutex_unlock(&v->lock);
    if (run->stopped)
        return NULL;
    PGresult *res = bind != NULL ? PQexecParams(run->p->pg, sql, n, bind->param_types, vals,
                                                bind->param_lengths, bind->param_formats, 0)
                                 : PQexecParams(run->p->pg, sql, n, NULL, vals, NULL, NULL, 0);
    pthread_mutex_lock(&v->lock);
    v->running = NULL;
    pthread_mutex_unlock(&v->lock);
    return res;
}

/* The result when the statement ended as `want`; else NULL with run->error set. bind: the
 * job whose types, lengths and formats the values have, or NULL for text values. */
static PGresult *exec_bound(struct run *run, const char *sql, int n, const char *const *vals,
                            const advisor_job *bind, ExecStatusType want)
{
    PGresult *res = exec_raw(run, sql, n, vals, bind);
    if (res != NULL && PQresultStatus(res) == want)
        return res;
    const char *msg = NULL;
    if (run->stopped)
        msg = "stopping";
    else if (res == NULL)
        msg = PQerrorMessage(run->p->pg);
    else
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL)
        msg = res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR ? PQresultErrorMessage(res)
                                                                      : "unexpected result";
    copy_line(run->error, sizeof run->error, msg);
    PQclear(res);
    return NULL;
}

/* The result when the statement ended as `want`; else NULL with run->error set. */
static PGresult *exec_want(struct run *run, const char *sql, int n, const char *const *vals,
                           ExecStatusType want)
{
    return exec_bound(run, sql, n, vals, NULL, want);
}

static bool exec_command(struct run *run, const char *sql)
{
    PGresult *res = exec_want(run, sql, 0, NULL, PGRES_COMMAND_OK);
    PQclear(res);
    return res != NULL;
}

/* ---- connections ---- */

static void peer_close(struct peer *p)
{
    PQfreeCancel(p->cancel);
    p->cancel = NULL;
    PQfinish(p->pg);
    p->pg = NULL;
}

static void peer_free(struct peer *p)
{
    peer_close(p);
    free(p->database);
    free(p->user);
    free(p);
}

/* The least recently used peer, open or not, other than keep; NULL for none. */
static int peer_lru(advisor_verifier *v, const struct peer *keep, bool open)
{
    int best = -1;
    for (int i = 0; i < v->n_peers; i++) {
        struct peer *p = v->peers[i];
        if (p == keep || (p->pg != NULL) != open)
            continue;
        if (best < 0 || p->last_used < v->peers[best]->last_used)
            best = i;
    }
    return best;
}

static struct peer *peer_new(const char *database, const char *user)
{
    struct peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->database = strdup(database);
    p->user = strdup(user);
    if (p->database == NULL || p->user == NULL) {
        peer_free(p);
        return NULL;
    }
    return p;
}

/* The peer of one database and user. Beyond MAX_PEERS a closed one is forgotten, with its
 * backoff: at most MAX_OPEN are open, so there always is one. */
static struct peer *peer_get(advisor_verifier *v, const char *database, const char *user)
{
    database = database != NULL ? database : "";
    user = user != NULL ? user : "";
    for (int i = 0; i < v->n_peers; i++)
        if (strcmp(v->peers[i]->database, database) == 0 && strcmp(v->peers[i]->user, user) == 0)
            return v->peers[i];
    struct peer *p = peer_new(database, user);
    if (p == NULL)
        return NULL;
    if (v->n_peers == MAX_PEERS) {
        int old = peer_lru(v, NULL, false);
        if (old < 0) {
            peer_free(p);
            return NULL;
        }
        peer_free(v->peers[old]);
        v->peers[old] = v->peers[--v->n_peers];
    }
    v->peers[v->n_peers++] = p;
    return p;
}

/* Closes the least recently used connections so that one more stays within MAX_OPEN. */
static void peers_make_room(advisor_verifier *v, const struct peer *keep)
{
    int open = 0;
    for (int i = 0; i < v->n_peers; i++)
        open += v->peers[i]->pg != NULL;
    for (; open >= MAX_OPEN; open--) {
        int lru = peer_lru(v, keep, true);
        if (lru < 0)
            return;
        peer_close(v->peers[lru]);
    }
}

static void peer_failed(struct peer *p, const char *why)
{
    copy_line(p->error, sizeof p->error, why);
    peer_close(p);
    p->backoff_ms = p->backoff_ms == 0                    ? BACKOFF_FIRST_MS
                    : p->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS
                                                          : p->backoff_ms * 2;
    p->backoff_until_us = clock_monotonic_us() + (int64_t)p->backoff_ms * 1000;
}

/* statement_timeout for the whole session, not SET LOCAL per transaction: it bounds as well
 * the statements run outside the job's transaction (CREATE EXTENSION, ROLLBACK). */
static bool peer_set_timeout(advisor_verifier *v, struct peer *p)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d; SET lock_timeout = %d",
             v->set.statement_timeout_ms, v->set.lock_timeout_ms);
    PGresult *res = PQexec(p->pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        peer_failed(p, res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(p->pg));
    PQclear(res);
    return ok;
}

/* Opens the peer's connection. Keywords before the expanded DSN are defaults it overrides;
 * the database after it wins over the DSN's (as side.c). */
static bool peer_connect(advisor_verifier *v, struct peer *p)
{
    const char *keys[EXPLAIN_CONN_KEYWORDS], *vals[EXPLAIN_CONN_KEYWORDS];
    explain_conn_target t = {.dsn = v->dsn,
                             .host = v->host,
                             .port = v->port,
                             .sslmode = v->sslmode,
                             .sslrootcert = v->sslrootcert,
                             .user = p->user,
                             .database = p->database,
                             .application_name = "pgscope-advisor",
                             .connect_timeout = "5"};
    explain_conn_keywords(&t, keys, vals);
    peers_make_room(v, p);
    p->pg = PQconnectdbParams(keys, vals, 1);
    p->extension_tried = false;
    if (p->pg == NULL || PQstatus(p->pg) != CONNECTION_OK) {
        peer_failed(p, p->pg != NULL ? PQerrorMessage(p->pg) : "out of memory");
        return false;
    }
    p->cancel = PQgetCancel(p->pg);
    if (p->cancel == NULL) {
        peer_failed(p, "cannot make a cancel request");
        return false;
    }
    if (!peer_set_timeout(v, p))
        return false;
    p->backoff_ms = 0;
    return true;
}

/* A connection is kept only when it is sound and outside any transaction. */
static void peer_after_job(struct peer *p)
{
    if (p->pg != NULL &&
        (PQstatus(p->pg) != CONNECTION_OK || PQtransactionStatus(p->pg) != PQTRANS_IDLE))
        peer_close(p);
}

/* ---- a job: hypopg, existing indexes, cost before, trials ---- */

/* Outside the job's transaction, once per connection: CREATE EXTENSION cannot be rolled back
 * with the rest, and a failure (no privilege, not installed) just leaves hypopg out. */
static void maybe_create_extension(struct run *run)
{
    if (!run->v->set.create_extension || run->p->extension_tried)
        return;
    run->p->extension_tried = true;
    PGresult *res = exec_want(run, "SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'hypopg'",
                              0, NULL, PGRES_TUPLES_OK);
    bool present = res != NULL && PQntuples(res) > 0;
    PQclear(res);
    if (res != NULL && !present)
        exec_command(run, "CREATE EXTENSION IF NOT EXISTS hypopg");
}

static bool find_hypopg(struct run *run)
{
    PGresult *res = exec_want(run,
                              "SELECT n.nspname FROM pg_catalog.pg_extension e "
                              "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
                              "WHERE e.extname = 'hypopg'",
                              0, NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    run->hypopg[0] = '\0';
    if (PQntuples(res) == 1 && PQnfields(res) == 1)
        quote_ident(run->hypopg, sizeof run->hypopg, PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

static bool begin(struct run *run)
{
    if (!exec_command(run, "BEGIN READ ONLY"))
        return false;
    if (run->job->search_path == NULL)
        return true;
    /* A bound value: the client's search_path needs no quoting of ours. */
    const char *vals[1] = {run->job->search_path};
    PGresult *res = exec_want(run, "SELECT pg_catalog.set_config('search_path', $1, true)", 1, vals,
                              PGRES_TUPLES_OK);
    PQclear(res);
    return res != NULL;
}

static bool same_table(const advisor_index *a, const advisor_index *b)
{
    return strcmp(a->schema, b->schema) == 0 && strcmp(a->table, b->table) == 0;
}

/* "schema"."table", or "table" for the search_path to find. */
static void qualified_name(const advisor_index *ix, char *out, size_t cap)
{
    char schema[QUOTED_NAME], table[QUOTED_NAME];
    quote_ident(table, sizeof table, ix->table);
    if (ix->schema[0] == '\0') {
        snprintf(out, cap, "%s", table);
        return;
    }
    quote_ident(schema, sizeof schema, ix->schema);
    snprintf(out, cap, "%s.%s", schema, table);
}

/* The table's schema as the server resolves it; false on a statement error. found is false
 * when the table does not exist (or is no table we can see). */
static bool resolve_table(struct run *run, const char *name, char schema[ADVISOR_NAME],
                          char table[ADVISOR_NAME], bool *found)
{
    const char *vals[1] = {name};
    PGresult *res = exec_want(run,
                              "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                              "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE c.oid = pg_catalog.to_regclass($1) "
                              /* a plain table or materialized view: CREATE INDEX CONCURRENTLY
                               * fails on views, foreign and partitioned tables */
                              "AND c.relkind IN ('r', 'm')",
                              1, vals, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    *found = PQntuples(res) == 1 && PQnfields(res) == 2;
    if (*found) {
        snprintf(schema, ADVISOR_NAME, "%s", PQgetvalue(res, 0, 0));
        snprintf(table, ADVISOR_NAME, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return true;
}

/* Valid, ready btree indexes of plain columns, one row per key column in key order
 * (INCLUDE columns left out: they serve no search). Expression indexes are skipped whole. */
static const char INDEXES_SQL[] =
    "SELECT i.indexrelid, a.attname, pg_catalog.pg_get_expr(i.indpred, i.indrelid) "
    "FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "
    "JOIN pg_catalog.pg_am am ON am.oid = ic.relam "
    "CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY "
    "AS k(attnum, ord) "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
    "WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisvalid AND i.indisready "
    "AND am.amname = 'btree' AND i.indexprs IS NULL "
    "AND NOT (0 = ANY (i.indkey::pg_catalog.int2[])) AND k.ord <= i.indnkeyatts "
    "ORDER BY i.indexrelid, k.ord";

/* The rows of INDEXES_SQL as indexes of the table; *n counts them. NULL with *n = 0 when
 * there are none. Columns past ADVISOR_MAX_COLUMNS are dropped: a candidate has no more, so
 * whether it is a prefix is decided by the first ones. */
static advisor_index *indexes_from_rows(PGresult *res, const char *schema, const char *table,
                                        int *n)
{
    *n = 0;
    int rows = PQntuples(res);
    advisor_index *out = rows > 0 ? calloc((size_t)rows, sizeof *out) : NULL;
    if (out == NULL)
        return NULL;
    for (int row = 0; row < rows; row++) {
        bool same = row > 0 && strcmp(PQgetvalue(res, row, 0), PQgetvalue(res, row - 1, 0)) == 0;
        if (!same) {
            advisor_index *ix = &out[(*n)++];
            snprintf(ix->schema, sizeof ix->schema, "%s", schema);
            snprintf(ix->table, sizeof ix->table, "%s", table);
            snprintf(ix->predicate, sizeof ix->predicate, "%s", PQgetvalue(res, row, 2));
        }
        advisor_index *ix = &out[*n - 1];
        if (ix->n_columns < ADVISOR_MAX_COLUMNS)
            snprintf(ix->columns[ix->n_columns++], ADVISOR_NAME, "%s", PQgetvalue(res, row, 1));
    }
    return out;
}

/* Marks the candidates on table `first`'s table that an existing index serves. */
static void mark_covered(struct run *run, int first, const advisor_index *existing, int n)
{
    advisor_trial *trials = run->r->trials;
    for (int i = first; i < run->r->n_trials; i++) {
        if (!same_table(&trials[i].index, &trials[first].index) ||
            trials[i].outcome != ADVISOR_TRIAL_UNVERIFIED)
            continue;
        for (int e = 0; e < n; e++) {
            /* The candidate as the server resolved it, so that the schema compares. */
            advisor_index resolved = trials[i].index;
            snprintf(resolved.schema, sizeof resolved.schema, "%s", existing[e].schema);
            if (advisor_covered(&resolved, &existing[e])) {
                trials[i].outcome = ADVISOR_TRIAL_COVERED;
                break;
            }
        }
    }
}

static void mark_table_unused(struct run *run, int first)
{
    advisor_trial *trials = run->r->trials;
    for (int i = first; i < run->r->n_trials; i++)
        if (same_table(&trials[i].index, &trials[first].index))
            trials[i].outcome = ADVISOR_TRIAL_UNUSED;
}

/* Reads the existing indexes of candidate `first`'s table and marks its candidates. */
static bool check_table(struct run *run, int first)
{
    const advisor_index *cand = &run->r->trials[first].index;
    char name[2 * QUOTED_NAME + 2], schema[ADVISOR_NAME], table[ADVISOR_NAME];
    bool found = false;
    qualified_name(cand, name, sizeof name);
    if (!resolve_table(run, name, schema, table, &found))
        return false;
    if (!found) {
        mark_table_unused(run, first);
        return true;
    }
    const char *vals[1] = {name};
    PGresult *res = exec_want(run, INDEXES_SQL, 1, vals, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    int n = 0;
    advisor_index *existing = indexes_from_rows(res, schema, table, &n);
    PQclear(res);
    mark_covered(run, first, existing, n);
    free(existing);
    return true;
}

/* Step 2 for every distinct table of the candidates. A candidate with nothing to index
 * cannot be tried: UNUSED. */
static bool check_tables(struct run *run)
{
    advisor_trial *trials = run->r->trials;
    for (int i = 0; i < run->r->n_trials; i++) {
        if (trials[i].index.table[0] == '\0' || trials[i].index.n_columns == 0)
            trials[i].outcome = ADVISOR_TRIAL_UNUSED;
        if (trials[i].outcome != ADVISOR_TRIAL_UNVERIFIED)
            continue;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = same_table(&trials[j].index, &trials[i].index) &&
                   trials[j].index.table[0] != '\0' && trials[j].index.n_columns > 0;
        if (!seen && !check_table(run, i))
            return false;
    }
    return true;
}

/* Whether any plan node scans an index whose name contains needle. */
static bool plan_uses(const json_t *node, const char *needle)
{
    if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++)
            if (plan_uses(json_array_get(node, i), needle))
                return true;
        return false;
    }
    if (!json_is_object(node))
        return false;
    const char *name = json_string_value(json_object_get(node, "Index Name"));
    if (name != NULL && strstr(name, needle) != NULL)
        return true;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)node, key, value)
    {
        if ((json_is_array(value) || json_is_object(value)) && plan_uses(value, needle))
            return true;
    }
    return false;
}

/* EXPLAIN (FORMAT JSON) of the job's statement, its parameters bound with the types and formats
 * of the client's Parse and Bind. The plan goes to *plan. */
static bool explain(struct run *run, double *cost, json_t **plan)
{
    const char *prefix = "EXPLAIN (FORMAT JSON) ";
    size_t len = strlen(prefix) + strlen(run->job->query) + 1;
    char *sql = malloc(len);
    if (sql == NULL) {
        copy_line(run->error, sizeof run->error, "out of memory");
        return false;
    }
    snprintf(sql, len, "%s%s", prefix, run->job->query);
    PGresult *res = exec_bound(run, sql, run->job->n_params, (const char *const *)run->job->params,
                               run->job, PGRES_TUPLES_OK);
    free(sql);
    if (res == NULL)
        return false;
    json_t *root = NULL;
    if (PQntuples(res) == 1 && PQnfields(res) == 1)
        root = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    json_t *total = json_object_get(json_object_get(json_array_get(root, 0), "Plan"), "Total Cost");
    if (!json_is_number(total)) {
        json_decref(root);
        copy_line(run->error, sizeof run->error, "EXPLAIN returned no plan cost");
        return false;
    }
    *cost = json_number_value(total);
    *plan = root;
    return true;
}

/* One SELECT of a hypopg function returning one value, copied to out. */
static bool hypopg_value(struct run *run, const char *call, const char *arg, char *out, size_t cap)
{
    char sql[QUOTED_NAME + 128];
    snprintf(sql, sizeof sql, call, run->hypopg);
    const char *vals[1] = {arg};
    PGresult *res =
        exec_want(run, sql, arg != NULL ? 1 : 0, arg != NULL ? vals : NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    bool ok = PQntuples(res) == 1 && PQnfields(res) >= 1;
    if (ok && out != NULL)
        snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!ok)
        copy_line(run->error, sizeof run->error, "hypopg returned no row");
    return ok;
}

/* Creates the hypothetical index, plans again, and measures it. The trial changes only once
 * every step succeeded. */
static bool trial_measure(struct run *run, advisor_trial *t)
{
    char ddl[1024], oid[32], size[32], needle[40];
    advisor_ddl(&t->index, false, ddl, sizeof ddl);
    if (!hypopg_value(run, "SELECT indexrelid FROM %s.hypopg_create_index($1)", ddl, oid,
                      sizeof oid))
        return false;
    double cost = 0;
    json_t *plan = NULL;
    if (!explain(run, &cost, &plan))
        return false;
    /* hypopg names its indexes "<oid>btree_table_columns". */
    snprintf(needle, sizeof needle, "<%s>", oid);
    bool used = plan_uses(plan, needle);
    json_decref(plan);
    if (!hypopg_value(run, "SELECT %s.hypopg_relation_size($1::pg_catalog.oid)", oid, size,
                      sizeof size))
        return false;
    t->cost_after = cost;
    t->size_bytes = strtod(size, NULL);
    bool cheaper = cost <= run->r->cost_before * (1.0 - run->v->set.min_reduction);
    t->outcome = used && cheaper ? ADVISOR_TRIAL_USED : ADVISOR_TRIAL_UNUSED;
    return true;
}

/* One candidate under a savepoint: its error (a DDL hypopg refuses) aborts only its own
 * attempt. Hypothetical indexes are not transactional, hence hypopg_reset either way. False
 * when the transaction cannot go on. */
static bool try_candidate(struct run *run, advisor_trial *t)
{
    if (!exec_command(run, "SAVEPOINT advisor_trial"))
        return false;
    bool measured = trial_measure(run, t);
    if (!measured)
        t->outcome = ADVISOR_TRIAL_UNUSED;
    if (run->stopped)
        return false;
    if (!exec_command(run, measured ? "RELEASE SAVEPOINT advisor_trial"
                                    : "ROLLBACK TO SAVEPOINT advisor_trial"))
        return false;
    return hypopg_value(run, "SELECT %s.hypopg_reset()", NULL, NULL, 0);
}

static bool try_candidates(struct run *run)
{
    for (int i = 0; i < run->r->n_trials; i++) {
        advisor_trial *t = &run->r->trials[i];
        if (t->outcome == ADVISOR_TRIAL_UNVERIFIED && !try_candidate(run, t))
            return false;
    }
    return true;
}

/* Steps 1 to 4 inside the transaction; false (run->error) when nothing was learnt. */
static bool verify_in_transaction(struct run *run)
{
    json_t *plan = NULL;
    if (!find_hypopg(run) || !check_tables(run) || !explain(run, &run->r->cost_before, &plan))
        return false;
    json_decref(plan);
    run->r->hypopg = run->hypopg[0] != '\0';
    return !run->r->hypopg || try_candidates(run);
}

/* The job on an open connection. The transaction is rolled back whatever happened; a
 * connection where that fails is closed by peer_after_job, which rolls back as well. False
 * when the transaction could not even begin (the trials are untouched then). */
static bool verify_on(struct run *run)
{
    run->r->error[0] = '\0';
    maybe_create_extension(run);
    if (run->stopped || !begin(run)) {
        result_fail(run->r, run->error);
        return false;
    }
    run->r->ok = verify_in_transaction(run);
    if (!run->r->ok) {
        result_fail(run->r, run->error);
        run->r->hypopg = false;
    }
    if (!run->stopped)
        exec_command(run, "ROLLBACK");
    return true;
}

static bool peer_backing_off(const struct peer *p, advisor_result *r)
{
    if (p->pg != NULL || clock_monotonic_us() >= p->backoff_until_us)
        return false;
    char why[sizeof r->error];
    snprintf(why, sizeof why, "backing off after: %s", p->error);
    result_fail(r, why);
    return true;
}

static void verify_job(advisor_verifier *v, const advisor_job *job, advisor_result *r)
{
    struct peer *p = peer_get(v, job->database, job->user);
    if (p == NULL) {
        result_fail(r, "out of memory");
        return;
    }
    p->last_used = ++v->clock;
    if (peer_backing_off(p, r))
        return;
    bool reused = p->pg != NULL;
    if (!reused && !peer_connect(v, p)) {
        result_fail(r, p->error);
        return;
    }
    struct run run = {.v = v, .p = p, .job = job, .r = r};
    /* A connection kept from an earlier job may have been closed by the server since (a
     * restart, idle_session_timeout): one new connection before the job counts as failed. */
    if (!verify_on(&run) && reused && !run.stopped && PQstatus(p->pg) != CONNECTION_OK) {
        peer_close(p);
        if (peer_connect(v, p))
            verify_on(&run);
        else
            result_fail(r, p->error);
    }
    peer_after_job(p);
}

/* ---- the thread ---- */

static advisor_job *next_job(advisor_verifier *v)
{
    pthread_mutex_lock(&v->lock);
    while (!v->stopping && v->head == NULL)
        pthread_cond_wait(&v->wake, &v->lock);
    advisor_job *job = NULL;
    if (!v->stopping) {
        struct job_node *n = v->head;
        v->head = n->next;
        if (v->head == NULL)
            v->tail = NULL;
        v->waiting--;
        job = n->job;
        free(n);
    }
    pthread_mutex_unlock(&v->lock);
    return job;
}

static bool queue_empty(advisor_verifier *v)
{
    pthread_mutex_lock(&v->lock);
    bool empty = v->head == NULL;
    pthread_mutex_unlock(&v->lock);
    return empty;
}

/* With nothing left to verify, the connections go: an idle one would keep the application's
 * own DROP DATABASE (test suites do it between runs) from working, and hold a connection slot
 * of the server for nothing. */
static void close_idle(advisor_verifier *v)
{
    for (int i = 0; i < v->n_peers; i++)
        if (v->peers[i]->pg != NULL)
            peer_close(v->peers[i]);
}

static void *verifier_main(void *arg)
{
    advisor_verifier *v = arg;
    advisor_job *job;
    while ((job = next_job(v)) != NULL) {
        bool valid = job_valid(job);
        advisor_result *r = result_new(job, valid);
        if (r != NULL && !valid)
            result_fail(r, "malformed job");
        else if (r != NULL)
            verify_job(v, job, r);
        advisor_job_free(job);
        if (r != NULL)
            deliver(v, r);
        if (queue_empty(v))
            close_idle(v);
    }
    return NULL;
}

static void verifier_free(advisor_verifier *v)
{
    for (int i = 0; i < v->n_peers; i++)
        peer_free(v->peers[i]);
    while (v->head != NULL) {
        struct job_node *n = v->head;
        v->head = n->next;
        advisor_job_free(n->job);
        free(n);
    }
    explain_list_free(&v->results, free_result);
    pthread_cond_destroy(&v->wake);
    pthread_mutex_destroy(&v->lock);
    free(v->dsn);
    free(v->host);
    free(v->port);
    free(v->sslmode);
    free(v->sslrootcert);
    free(v);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s != NULL ? s : "");
}

advisor_verifier *advisor_verifier_start(const advisor_settings *s)
{
    advisor_verifier *v = calloc(1, sizeof *v);
    if (v == NULL)
        return NULL;
    pthread_mutex_init(&v->lock, NULL);
    pthread_cond_init(&v->wake, NULL);
    if (s != NULL)
        v->set = *s;
    else
        advisor_settings_default(&v->set);
    settings_clamp(&v->set);
    v->dsn = dup_or_empty(v->set.dsn);
    v->host = dup_or_empty(v->set.host);
    v->port = dup_or_empty(v->set.port);
    v->sslmode = dup_or_empty(v->set.sslmode);
    v->sslrootcert = dup_or_empty(v->set.sslrootcert);
    v->set.dsn = v->dsn;
    v->set.host = v->host;
    v->set.port = v->port;
    v->set.sslmode = v->sslmode;
    v->set.sslrootcert = v->sslrootcert;
    if (v->dsn == NULL || v->host == NULL || v->port == NULL || v->sslmode == NULL ||
        v->sslrootcert == NULL || pthread_create(&v->thread, NULL, verifier_main, v) != 0) {
        verifier_free(v);
        return NULL;
    }
    return v;
}

bool advisor_verifier_submit(advisor_verifier *v, advisor_job *job)
{
    if (v == NULL || job == NULL)
        return false;
    struct job_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return false;
    n->job = job;
    pthread_mutex_lock(&v->lock);
    bool full = v->stopping || v->waiting >= v->set.queue_size;
    if (!full) {
        if (v->tail != NULL)
            v->tail->next = n;
        else
            v->head = n;
        v->tail = n;
        v->waiting++;
        pthread_cond_signal(&v->wake);
    }
    pthread_mutex_unlock(&v->lock);
    if (full)
        free(n);
    return !full;
}

size_t advisor_verifier_results(advisor_verifier *v, advisor_result **out, size_t max)
{
    if (v == NULL || out == NULL)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&v->lock);
    while (n < max && (out[n] = explain_list_pop(&v->results)) != NULL)
        n++;
    pthread_mutex_unlock(&v->lock);
    return n;
}

/* The statement in flight is cancelled under the lock that exec_raw takes to clear it, so the
 * cancel object cannot be freed meanwhile. A connection attempt is not interrupted: it ends
 * by itself within connect_timeout. */
void advisor_verifier_stop(advisor_verifier *v)
{
    if (v == NULL)
        return;
    pthread_mutex_lock(&v->lock);
    v->stopping = true;
    if (v->running != NULL) {
        char err[256];
        PQcancel(v->running, err, sizeof err);
    }
    pthread_cond_broadcast(&v->wake);
    pthread_mutex_unlock(&v->lock);
    pthread_join(v->thread, NULL);
    verifier_free(v);
}
