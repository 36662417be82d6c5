/* side.c — side connections: sampled statements replayed under EXPLAIN on pgscope's own libpq
 * connections, driven by libevent on a thread of their own, always rolled back. */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "explain_int.h"
#include "pgscope/clock.h"
#include "pgscope/explain.h"

#define BACKOFF_MAX_MS 60000
#define CONNECT_TIMEOUT_DEFAULT_S 10
/* How long past statement_timeout a silent server is waited for before the connection is
 * dropped: statement_timeout is enforced by the server, this covers a lost server. */
#define JOB_GRACE_MS 5000
#define MAX_PARAMS 65535

enum conn_state { CONN_EMPTY, CONN_CONNECTING, CONN_IDLE, CONN_BUSY };
/* An ANALYZE job is planned first (STEP_PLAN), and what its plan calls looked up (STEP_CALLS):
 * only when every function is allowed is the statement executed (STEP_EXPLAIN). Otherwise the
 * plain plan is the result. */
enum job_step {
    STEP_BEGIN,
    STEP_SEARCH_PATH,
    STEP_PLAN,
    STEP_CALLS,
    STEP_EXPLAIN,
    STEP_ROLLBACK,
    STEP_DONE
};

struct job_node {
    explain_job *job;
    struct job_node *next;
};

struct side_db;

struct side_conn {
    struct side_db *db;
    PGconn *pg;
    struct event *ev;
    enum conn_state state;
    int64_t deadline_us; /* connecting or running job: give up after it; 0 for none */
    explain_job *job;
    enum job_step step;
    int64_t started_us;
    bool failed; /* the job got an error: the rest is skipped up to ROLLBACK */
    bool broken; /* the connection cannot be trusted for another job */
    char error[256];
    char sqlstate[6]; /* of the job's first error from the server; "" for none */
    char *plan;
    char *plain;                       /* an ANALYZE job's plain plan, checked first */
    char *calls[EXPLAIN_CALLS_PARAMS]; /* the names it calls: the catalog query's values */
    bool judged;                       /* the catalog's answer was read */
    bool plain_only;                   /* the check refused ANALYZE: why says why */
    char why[256];
};

struct side_db {
    explain_side *side;
    char *name;              /* "" keeps the DSN's dbname */
    char *user;              /* "" leaves the user to the DSN (or libpq's default) */
    struct side_conn *conns; /* per_database slots */
    struct job_node *head, *tail;
    int n_waiting;
    int64_t backoff_until_us;
    int backoff_ms;
    struct side_db *next;
};

struct explain_side {
    explain_side_settings set;
    char *dsn, *host, *port, *sslmode, *sslrootcert; /* owned copies of the settings' strings */
    explain_allow *allow;                            /* explain_allow_functions */
    pthread_t thread;
    struct event_base *base; /* touched by the side thread only, once it runs */
    struct event *wake_ev;
    int wake_fd[2];
    struct side_db *dbs;

    pthread_mutex_t lock; /* guards the fields below, shared with the callers' threads */
    struct job_node *in_head, *in_tail;
    int waiting; /* submitted jobs not yet started on a connection nor answered */
    bool stopping;
    explain_list results; /* explain_result *, for explain_side_results */
};

/* ---- jobs, results, settings ---- */

void explain_job_free(explain_job *job)
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
    free(job);
}

void explain_result_free(explain_result *r)
{
    if (r == NULL)
        return;
    free(r->plan_json);
    free(r);
}

static void free_result(void *r)
{
    explain_result_free(r);
}

void explain_side_defaults(explain_side_settings *s)
{
    memset(s, 0, sizeof *s);
    s->dsn = "";
    s->statement_timeout_ms = 5000;
    s->lock_timeout_ms = 100;
    s->timing = true;
    s->per_database = 2;
    s->queue_size = 64;
    s->reconnect_ms = 1000;
}

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

/* Ends a job: its result goes to the caller's list. Takes the job and plan. */
static void deliver(explain_side *side, explain_job *job, explain_skip skip, const char *error,
                    char *plan, double side_ms)
{
    explain_result *r = calloc(1, sizeof *r);
    if (r != NULL) {
        r->id = job->id;
        r->fingerprint = job->fingerprint;
        /* EXPLAIN_SKIP_FUNCTION: a plan all the same, the plain one */
        r->ok = plan != NULL && (skip == EXPLAIN_SAMPLE || skip == EXPLAIN_SKIP_FUNCTION);
        r->skip = skip;
        r->side_ms = side_ms;
        if (skip != EXPLAIN_SAMPLE)
            copy_line(r->error, sizeof r->error, error);
        if (r->ok) {
            r->plan_json = plan;
            plan = NULL;
        }
    }
    free(plan);
    explain_job_free(job);
    if (r == NULL)
        return;
    pthread_mutex_lock(&side->lock);
    bool kept = explain_list_push(&side->results, r);
    pthread_mutex_unlock(&side->lock);
    if (!kept)
        explain_result_free(r);
}

static void waiting_done(explain_side *side)
{
    pthread_mutex_lock(&side->lock);
    side->waiting--;
    pthread_mutex_unlock(&side->lock);
}

/* Answers a job that never reached a connection. */
static void answer_waiting(explain_side *side, explain_job *job, explain_skip skip, const char *why)
{
    waiting_done(side);
    deliver(side, job, skip, why, NULL, 0.0);
}

static void db_answer_all(struct side_db *db, explain_skip skip, const char *why)
{
    while (db->head != NULL) {
        struct job_node *n = db->head;
        db->head = n->next;
        answer_waiting(db->side, n->job, skip, why);
        free(n);
    }
    db->tail = NULL;
    db->n_waiting = 0;
}

/* ---- connections ---- */

static void conn_cb(evutil_socket_t fd, short what, void *arg);
static void db_schedule(struct side_db *db);

static void conn_close(struct side_conn *c)
{
    if (c->ev != NULL)
        event_free(c->ev);
    c->ev = NULL;
    PQfinish(c->pg);
    c->pg = NULL;
    c->state = CONN_EMPTY;
    c->deadline_us = 0;
}

/* Waits for the socket (what) until the connection's deadline, if any. A fresh event each
 * time: libpq may change sockets while it tries a host's addresses. */
static bool conn_wait(struct side_conn *c, short what)
{
    if (c->ev != NULL)
        event_free(c->ev);
    c->ev = NULL;
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return false;
    c->ev = event_new(c->db->side->base, fd, what, conn_cb, c);
    if (c->ev == NULL)
        return false;
    struct timeval tv;
    if (c->deadline_us > 0) {
        int64_t left = c->deadline_us - clock_monotonic_us();
        if (left < 1000)
            left = 1000;
        tv.tv_sec = (time_t)(left / 1000000);
        tv.tv_usec = (suseconds_t)(left % 1000000);
    }
    return event_add(c->ev, c->deadline_us > 0 ? &tv : NULL) == 0;
}

/* A failed connection attempt: the database backs off and its waiting jobs are answered,
 * so that a server refusing us costs samples and never queues them forever. */
static void conn_failed(struct side_conn *c, const char *why)
{
    struct side_db *db = c->db;
    char msg[256];
    copy_line(msg, sizeof msg, why);
    conn_close(c);
    db->backoff_until_us = clock_monotonic_us() + (int64_t)db->backoff_ms * 1000;
    db->backoff_ms = db->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : db->backoff_ms * 2;
    db_answer_all(db, EXPLAIN_SKIP_NO_CONNECTION, msg);
}

/* connect_timeout from the DSN: the asynchronous API leaves enforcing it to us. 0 or absent
 * would mean forever, which a side connection never waits. */
static int connect_timeout_s(PGconn *pg)
{
    int t = 0;
    PQconninfoOption *opts = PQconninfo(pg);
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL)
            t = atoi(o->val);
    PQconninfoFree(opts);
    if (t <= 0)
        return CONNECT_TIMEOUT_DEFAULT_S;
    return t < 2 ? 2 : t;
}

static void conn_open(struct side_conn *c)
{
    struct side_db *db = c->db;
    const char *keys[EXPLAIN_CONN_KEYWORDS], *vals[EXPLAIN_CONN_KEYWORDS];
    explain_conn_target t = {.dsn = db->side->dsn,
                             .host = db->side->host,
                             .port = db->side->port,
                             .sslmode = db->side->sslmode,
                             .sslrootcert = db->side->sslrootcert,
                             .user = db->user,
                             .database = db->name,
                             .application_name = "pgscope-explain"};
    explain_conn_keywords(&t, keys, vals);
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (c->pg == NULL) {
        conn_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = CONN_CONNECTING;
    c->deadline_us = clock_monotonic_us() + (int64_t)connect_timeout_s(c->pg) * 1000000;
    /* libpq: before the first PQconnectPoll, behave as if it had returned WRITING. */
    if (!conn_wait(c, EV_WRITE))
        conn_failed(c, "cannot wait for the connection's socket");
}

static void conn_connected(struct side_conn *c)
{
    c->db->backoff_ms = c->db->side->set.reconnect_ms;
    c->deadline_us = 0;
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_failed(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->db->head == NULL) { /* another connection took the jobs: see job_finish */
        conn_close(c);
        return;
    }
    c->state = CONN_IDLE;
    if (!conn_wait(c, EV_READ))
        conn_close(c);
}

static void conn_poll(struct side_conn *c, short what)
{
    if (what == EV_TIMEOUT) {
        conn_failed(c, "timeout expired while connecting");
        return;
    }
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (!conn_wait(c, EV_READ))
            conn_failed(c, "cannot wait for the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (!conn_wait(c, EV_WRITE))
            conn_failed(c, "cannot wait for the connection's socket");
        break;
    case PGRES_POLLING_OK:
        conn_connected(c);
        break;
    default:
        conn_failed(c, PQerrorMessage(c->pg));
        break;
    }
}

/* An idle connection became readable: the server closing it, or a notice. */
static void conn_idle_input(struct side_conn *c)
{
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK || PQisBusy(c->pg)) {
        conn_close(c);
        return;
    }
    if (!conn_wait(c, EV_READ))
        conn_close(c);
}

/* ---- a job on a connection: BEGIN, SET LOCAL, search_path, EXPLAIN, ROLLBACK ---- */

/* What the job's memory of its plan check holds, let go. */
static void job_clear_check(struct side_conn *c)
{
    free(c->plain);
    c->plain = NULL;
    for (int i = 0; i < EXPLAIN_CALLS_PARAMS; i++) {
        free(c->calls[i]);
        c->calls[i] = NULL;
    }
    c->judged = false;
    c->plain_only = false;
    c->why[0] = '\0';
}

/* No ANALYZE for this job: the plain plan will be its result. The first reason is kept. */
static void job_plain_only(struct side_conn *c, const char *why)
{
    if (!c->plain_only)
        copy_line(c->why, sizeof c->why, why);
    c->plain_only = true;
}

/* The plain plan came: the names it and the statement's text call become the catalog query's
 * values, or, when either cannot be read, it is all the job will get. */
static void job_read_plain(struct side_conn *c)
{
    char why[256];
    explain_calls *calls = explain_calls_read(c->plain, why, sizeof why);

    if (calls == NULL) {
        job_plain_only(c, why);
        return;
    }
    if (!explain_calls_add_statement(calls, c->job->query))
        job_plain_only(c, "the statement's text could not be read, so what it calls is not known");
    else if (!explain_calls_params(calls, c->calls))
        job_plain_only(c, "out of memory checking the plan");
    explain_calls_free(calls);
}

/* The catalog's answer, one row per function the plan may call: the first one not allowed
 * stops ANALYZE. */
static void job_judge_calls(struct side_conn *c, PGresult *r)
{
    const explain_allow *allow = c->db->side->allow;

    c->judged = true;
    if (PQnfields(r) != 10) {
        job_plain_only(c, "the catalog query answered in an unexpected form");
        return;
    }
    for (int i = 0; i < PQntuples(r) && !c->plain_only; i++) {
        explain_called f = {
            .schema = PQgetvalue(r, i, 0),
            .name = PQgetvalue(r, i, 1),
            .src = PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2),
            .volatility = PQgetvalue(r, i, 3)[0],
            .kind = PQgetvalue(r, i, 4)[0],
            .nargs = atoi(PQgetvalue(r, i, 5)),
            .builtin = PQgetvalue(r, i, 6)[0] == 't',
            .internal = PQgetvalue(r, i, 7)[0] == 't',
            .trigger = PQgetvalue(r, i, 8)[0] == 't',
            .via = PQgetvalue(r, i, 9),
        };
        char why[256];
        if (!explain_call_allowed(&f, allow, c->job->read_write, why, sizeof why))
            job_plain_only(c, why);
    }
}

/* libpq's quoting of a literal, for explain_calls_script; PQfreemem frees it. */
static char *quote_literal(void *pg, const char *value)
{
    return PQescapeLiteral(pg, value, strlen(value));
}

static bool job_send_calls(struct side_conn *c)
{
    char *sql = explain_calls_script(c->calls, quote_literal, PQfreemem, c->pg);
    bool sent = sql != NULL && PQsendQuery(c->pg, sql) == 1;
    free(sql);
    return sent;
}

static bool job_send_explain(struct side_conn *c, bool analyze)
{
    const explain_job *job = c->job;
    const char *prefix = "EXPLAIN (VERBOSE, SETTINGS, FORMAT JSON) ";
    if (analyze)
        prefix = c->db->side->set.timing
                     ? "EXPLAIN (ANALYZE, BUFFERS, VERBOSE, SETTINGS, TIMING on, FORMAT JSON) "
                     : "EXPLAIN (ANALYZE, BUFFERS, VERBOSE, SETTINGS, TIMING off, FORMAT JSON) ";
    size_t len = strlen(prefix) + strlen(job->query) + 1;
    char *sql = malloc(len);
    if (sql == NULL)
        return false;
    snprintf(sql, len, "%s%s", prefix, job->query);
    /* Parameters with the types the client's Parse declared and the formats its Bind used: a
     * binary value is read by the same receive function as the client's, and a type left to the
     * server is inferred from the same text as it was for the client. */
    int rc = PQsendQueryParams(c->pg, sql, job->n_params, job->param_types,
                               (const char *const *)job->params, job->param_lengths,
                               job->param_formats, 0);
    free(sql);
    return rc == 1;
}

static bool job_send(struct side_conn *c)
{
    const explain_job *job = c->job;
    const explain_side_settings *s = &c->db->side->set;
    char sql[160];
    switch (c->step) {
    case STEP_BEGIN:
        /* One round trip; SET LOCAL ends with the transaction, so nothing outlives the job. */
        snprintf(sql, sizeof sql,
                 "%s; SET LOCAL statement_timeout = %d; SET LOCAL lock_timeout = %d",
                 job->read_write ? "BEGIN" : "BEGIN READ ONLY", s->statement_timeout_ms,
                 s->lock_timeout_ms);
        return PQsendQuery(c->pg, sql) == 1;
    case STEP_SEARCH_PATH: {
        /* A bound value: the client's search_path needs no quoting of ours. */
        const char *vals[1] = {job->search_path};
        return PQsendQueryParams(c->pg, "SELECT pg_catalog.set_config('search_path', $1, true)", 1,
                                 NULL, vals, NULL, NULL, 0) == 1;
    }
    case STEP_PLAN:
        return job_send_explain(c, false);
    case STEP_CALLS:
        return job_send_calls(c);
    case STEP_EXPLAIN:
        return job_send_explain(c, job->analyze);
    case STEP_ROLLBACK:
        return PQsendQuery(c->pg, "ROLLBACK") == 1;
    default:
        return false;
    }
}

static enum job_step next_step(const struct side_conn *c)
{
    if (c->step == STEP_ROLLBACK)
        return STEP_DONE;
    if (c->failed || c->plain_only)
        return STEP_ROLLBACK;
    if (c->step == STEP_BEGIN && c->job->search_path != NULL)
        return STEP_SEARCH_PATH;
    if (c->step == STEP_BEGIN || c->step == STEP_SEARCH_PATH)
        return c->job->analyze ? STEP_PLAN : STEP_EXPLAIN;
    return c->step + 1;
}

static void job_error(struct side_conn *c, const char *msg)
{
    if (!c->failed)
        copy_line(c->error, sizeof c->error, msg);
    c->failed = true;
}

/* The one plan an EXPLAIN returns, into *dst. */
static void job_take_plan(struct side_conn *c, PGresult *r, char **dst)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 1 ||
        *dst != NULL) {
        job_error(c, "EXPLAIN returned something other than one plan");
        return;
    }
    *dst = strdup(PQgetvalue(r, 0, 0));
    if (*dst == NULL)
        job_error(c, "out of memory");
}

static void job_take_result(struct side_conn *c, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (c->step == STEP_EXPLAIN) {
            job_take_plan(c, r, &c->plan);
        } else if (c->step == STEP_PLAN) {
            job_take_plan(c, r, &c->plain);
            if (!c->failed)
                job_read_plain(c);
        } else if (c->step == STEP_CALLS && st == PGRES_TUPLES_OK) {
            job_judge_calls(c, r);
        }
        return;
    }
    if (c->step == STEP_CALLS && st == PGRES_FATAL_ERROR) {
        /* fail closed: no ANALYZE without the answer, the plain plan is still good */
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        char why[256];
        snprintf(why, sizeof why, "the functions the plan calls could not be looked up: %s",
                 msg != NULL ? msg : "unknown error");
        job_plain_only(c, why);
        return;
    }
    if (c->step == STEP_ROLLBACK)
        c->broken = true; /* never reuse a connection whose transaction might be open */
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (!c->failed && code != NULL)
        snprintf(c->sqlstate, sizeof c->sqlstate, "%s", code);
    job_error(c, msg != NULL ? msg : PQresultErrorMessage(r));
    if (st != PGRES_FATAL_ERROR)
        c->broken = true; /* COPY or a bad response: not a state to continue from */
}

/* Errors that say the replay's session lacks what the client's had: a relation, function, type,
 * column or schema created in the client's open transaction or as temporary, or dropped or
 * changed since. The client's session state, not a fault of pgscope or the server. */
static bool not_visible(const char *sqlstate)
{
    static const char *const codes[] = {"42P01", "42883", "42704", "42703", "3F000"};

    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(sqlstate, codes[i]) == 0)
            return true;
    return false;
}

static void job_finish(struct side_conn *c)
{
    explain_side *side = c->db->side;
    bool plain_only = !c->failed && c->plain_only && c->plain != NULL;
    bool ok = !c->failed && (c->plan != NULL || plain_only);
    if (!ok && !c->failed)
        job_error(c, "EXPLAIN returned no plan");
    double ms = (double)(clock_monotonic_us() - c->started_us) / 1000.0;
    if (plain_only) {
        deliver(side, c->job, EXPLAIN_SKIP_FUNCTION, c->why, c->plain, ms);
        c->plain = NULL;
    } else {
        explain_skip failed =
            not_visible(c->sqlstate) ? EXPLAIN_SKIP_NOT_VISIBLE : EXPLAIN_SKIP_FAILED;
        deliver(side, c->job, ok ? EXPLAIN_SAMPLE : failed, c->error, c->plan, ms);
    }
    job_clear_check(c);
    c->job = NULL;
    c->plan = NULL;
    c->deadline_us = 0;
    /* Nothing waiting for this database: the connection goes. An idle one would keep the
     * application's own DROP DATABASE (test suites do it between runs) from working, and hold
     * one of the server's connection slots for nothing; samples are rare enough to connect. */
    if (c->broken || PQstatus(c->pg) != CONNECTION_OK ||
        PQtransactionStatus(c->pg) != PQTRANS_IDLE || c->db->head == NULL) {
        conn_close(c);
        return;
    }
    c->state = CONN_IDLE;
    if (!conn_wait(c, EV_READ))
        conn_close(c);
}

/* The connection failed under a job: the job fails and the connection goes. */
static void job_break(struct side_conn *c, const char *msg)
{
    job_error(c, msg);
    c->broken = true;
    job_finish(c);
}

static void conn_wait_busy(struct side_conn *c)
{
    int f = PQflush(c->pg);
    if (f < 0) {
        job_break(c, PQerrorMessage(c->pg));
        return;
    }
    if (!conn_wait(c, f == 1 ? EV_READ | EV_WRITE : EV_READ))
        job_break(c, "cannot wait for the connection's socket");
}

/* Reads what results are complete and sends the next step when a step ends. */
static void conn_pump(struct side_conn *c)
{
    for (;;) {
        if (PQisBusy(c->pg)) {
            conn_wait_busy(c);
            return;
        }
        PGresult *r = PQgetResult(c->pg);
        if (r != NULL) {
            job_take_result(c, r);
            PQclear(r);
            continue;
        }
        if (c->step == STEP_CALLS && !c->judged) /* no answer is no clearance */
            job_plain_only(c, "the catalog query gave no answer");
        c->step = next_step(c);
        if (c->step == STEP_DONE) {
            job_finish(c);
            return;
        }
        if (!job_send(c)) {
            job_break(c, PQerrorMessage(c->pg));
            return;
        }
    }
}

static void conn_busy_io(struct side_conn *c, short what)
{
    if (what == EV_TIMEOUT) {
        job_break(c, "no answer from the server in time");
        return;
    }
    if ((what & EV_WRITE) && PQflush(c->pg) < 0) {
        job_break(c, PQerrorMessage(c->pg));
        return;
    }
    if ((what & EV_READ) && !PQconsumeInput(c->pg)) {
        job_break(c, PQerrorMessage(c->pg));
        return;
    }
    conn_pump(c);
}

static void conn_start_job(struct side_conn *c, explain_job *job)
{
    const explain_side_settings *s = &c->db->side->set;
    waiting_done(c->db->side);
    c->job = job;
    c->step = STEP_BEGIN;
    c->started_us = clock_monotonic_us();
    c->failed = false;
    c->broken = false;
    c->error[0] = '\0';
    c->sqlstate[0] = '\0';
    c->plan = NULL;
    job_clear_check(c);
    c->state = CONN_BUSY;
    c->deadline_us = s->statement_timeout_ms > 0
                         ? c->started_us + ((int64_t)s->statement_timeout_ms + JOB_GRACE_MS) * 1000
                         : 0;
    if (!job_send(c)) {
        job_break(c, PQerrorMessage(c->pg));
        return;
    }
    conn_wait_busy(c);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct side_conn *c = arg;
    struct side_db *db = c->db;
    (void)fd;
    if (c->state == CONN_CONNECTING)
        conn_poll(c, what);
    else if (c->state == CONN_IDLE)
        conn_idle_input(c);
    else if (c->state == CONN_BUSY)
        conn_busy_io(c, what);
    db_schedule(db);
}

/* ---- databases ---- */

/* Starts waiting jobs on idle connections, and opens connections for those left over. */
static void db_schedule(struct side_db *db)
{
    int per_db = db->side->set.per_database;
    if (db->head == NULL)
        return;
    if (clock_monotonic_us() < db->backoff_until_us) {
        db_answer_all(db, EXPLAIN_SKIP_NO_CONNECTION, "backing off after a failed connection");
        return;
    }
    int connecting = 0;
    for (int i = 0; i < per_db; i++) {
        struct side_conn *c = &db->conns[i];
        if (c->state == CONN_IDLE && db->head != NULL) {
            struct job_node *n = db->head;
            db->head = n->next;
            if (db->head == NULL)
                db->tail = NULL;
            db->n_waiting--;
            explain_job *job = n->job;
            free(n);
            conn_start_job(c, job);
        }
        if (c->state == CONN_CONNECTING)
            connecting++;
    }
    for (int i = 0; i < per_db && db->head != NULL && connecting < db->n_waiting; i++) {
        if (db->conns[i].state != CONN_EMPTY)
            continue;
        conn_open(&db->conns[i]);
        connecting++;
    }
}

/* The pool of one database and user. */
static struct side_db *db_get(explain_side *side, const char *name, const char *user)
{
    if (name == NULL)
        name = "";
    if (user == NULL)
        user = "";
    for (struct side_db *db = side->dbs; db != NULL; db = db->next)
        if (strcmp(db->name, name) == 0 && strcmp(db->user, user) == 0)
            return db;
    struct side_db *db = calloc(1, sizeof *db);
    if (db == NULL)
        return NULL;
    db->name = strdup(name);
    db->user = strdup(user);
    db->conns = calloc((size_t)side->set.per_database, sizeof *db->conns);
    if (db->name == NULL || db->user == NULL || db->conns == NULL) {
        free(db->name);
        free(db->user);
        free(db->conns);
        free(db);
        return NULL;
    }
    for (int i = 0; i < side->set.per_database; i++)
        db->conns[i].db = db;
    db->side = side;
    db->backoff_ms = side->set.reconnect_ms;
    db->next = side->dbs;
    side->dbs = db;
    return db;
}

static bool job_valid(const explain_job *job)
{
    return job->query != NULL && job->n_params >= 0 && job->n_params <= MAX_PARAMS &&
           (job->n_params == 0 || job->params != NULL);
}

/* Files one submitted job under its database. */
static void take_job(explain_side *side, struct job_node *n)
{
    n->next = NULL;
    if (!job_valid(n->job)) {
        answer_waiting(side, n->job, EXPLAIN_SKIP_FAILED, "malformed job");
        free(n);
        return;
    }
    struct side_db *db = db_get(side, n->job->database, n->job->user);
    if (db == NULL) {
        answer_waiting(side, n->job, EXPLAIN_SKIP_NO_CONNECTION, "out of memory");
        free(n);
        return;
    }
    if (db->tail != NULL)
        db->tail->next = n;
    else
        db->head = n;
    db->tail = n;
    db->n_waiting++;
}

/* The pipe was written to: new jobs, or stop. A pipe rather than event_active() from other
 * threads, so that no process-wide evthread_use_pthreads() is needed: only this thread ever
 * touches its event base. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    explain_side *side = arg;
    char buf[64];
    (void)what;
    while (read(fd, buf, sizeof buf) > 0) {
    }
    pthread_mutex_lock(&side->lock);
    bool stopping = side->stopping;
    struct job_node *n = stopping ? NULL : side->in_head;
    if (!stopping)
        side->in_head = side->in_tail = NULL;
    pthread_mutex_unlock(&side->lock);
    if (stopping) {
        event_base_loopbreak(side->base);
        return;
    }
    while (n != NULL) {
        struct job_node *next = n->next;
        take_job(side, n);
        n = next;
    }
    for (struct side_db *db = side->dbs; db != NULL; db = db->next)
        db_schedule(db);
}

static void wake(explain_side *side)
{
    if (write(side->wake_fd[1], "w", 1) < 0) {
        /* A full pipe already holds a wake-up. */
    }
}

static void *side_main(void *arg)
{
    explain_side *side = arg;
    event_base_dispatch(side->base);
    return NULL;
}

/* ---- the side ---- */

/* Running queries are cancelled so that their transactions end now, not at statement_timeout;
 * closing the connection rolls them back. */
static void db_free(struct side_db *db)
{
    for (int i = 0; i < db->side->set.per_database; i++) {
        struct side_conn *c = &db->conns[i];
        if (c->state == CONN_BUSY) {
            PGcancel *cancel = PQgetCancel(c->pg);
            char err[256];
            if (cancel != NULL) {
                PQcancel(cancel, err, sizeof err);
                PQfreeCancel(cancel);
            }
            explain_job_free(c->job);
            free(c->plan);
            job_clear_check(c);
        }
        if (c->state != CONN_EMPTY)
            conn_close(c);
    }
    while (db->head != NULL) {
        struct job_node *n = db->head;
        db->head = n->next;
        explain_job_free(n->job);
        free(n);
    }
    free(db->conns);
    free(db->name);
    free(db->user);
    free(db);
}

static void side_free(explain_side *side)
{
    while (side->dbs != NULL) {
        struct side_db *db = side->dbs;
        side->dbs = db->next;
        db_free(db);
    }
    while (side->in_head != NULL) {
        struct job_node *n = side->in_head;
        side->in_head = n->next;
        explain_job_free(n->job);
        free(n);
    }
    explain_list_free(&side->results, free_result);
    if (side->wake_ev != NULL)
        event_free(side->wake_ev);
    if (side->base != NULL)
        event_base_free(side->base);
    for (int i = 0; i < 2; i++)
        if (side->wake_fd[i] >= 0)
            close(side->wake_fd[i]);
    pthread_mutex_destroy(&side->lock);
    explain_allow_free(side->allow);
    free(side->dsn);
    free(side->host);
    free(side->port);
    free(side->sslmode);
    free(side->sslrootcert);
    free(side);
}

static void settings_clamp(explain_side_settings *s)
{
    explain_side_settings d;
    explain_side_defaults(&d);
    if (s->statement_timeout_ms < 0)
        s->statement_timeout_ms = d.statement_timeout_ms;
    if (s->lock_timeout_ms < 0)
        s->lock_timeout_ms = d.lock_timeout_ms;
    if (s->per_database < 1)
        s->per_database = d.per_database;
    if (s->queue_size < 1)
        s->queue_size = d.queue_size;
    if (s->reconnect_ms < 1)
        s->reconnect_ms = d.reconnect_ms;
    if (s->reconnect_ms > BACKOFF_MAX_MS)
        s->reconnect_ms = BACKOFF_MAX_MS;
}

static bool pipe_nonblocking(int fd[2])
{
    if (pipe(fd) != 0) {
        fd[0] = fd[1] = -1;
        return false;
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fd[i], F_GETFL);
        if (fl < 0 || fcntl(fd[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fd[i], F_SETFD, FD_CLOEXEC) != 0)
            return false;
    }
    return true;
}

explain_side *explain_side_start(const explain_side_settings *s)
{
    explain_side *side = calloc(1, sizeof *side);
    if (side == NULL)
        return NULL;
    side->wake_fd[0] = side->wake_fd[1] = -1;
    pthread_mutex_init(&side->lock, NULL);
    if (s != NULL)
        side->set = *s;
    else
        explain_side_defaults(&side->set);
    settings_clamp(&side->set);
    side->dsn = strdup(side->set.dsn != NULL ? side->set.dsn : "");
    side->host = strdup(side->set.host != NULL ? side->set.host : "");
    side->port = strdup(side->set.port != NULL ? side->set.port : "");
    side->sslmode = strdup(side->set.sslmode != NULL ? side->set.sslmode : "");
    side->sslrootcert = strdup(side->set.sslrootcert != NULL ? side->set.sslrootcert : "");
    side->set.dsn = side->dsn;
    side->set.host = side->host;
    side->set.port = side->port;
    side->set.sslmode = side->sslmode;
    side->set.sslrootcert = side->sslrootcert;
    side->allow = explain_allow_parse(side->set.allow_functions);
    side->set.allow_functions = NULL; /* parsed: the caller's string may go */
    if (side->dsn == NULL || side->host == NULL || side->port == NULL || side->sslmode == NULL ||
        side->sslrootcert == NULL || side->allow == NULL || !pipe_nonblocking(side->wake_fd))
        goto fail;
    side->base = event_base_new();
    if (side->base == NULL)
        goto fail;
    side->wake_ev = event_new(side->base, side->wake_fd[0], EV_READ | EV_PERSIST, wake_cb, side);
    if (side->wake_ev == NULL || event_add(side->wake_ev, NULL) != 0)
        goto fail;
    if (pthread_create(&side->thread, NULL, side_main, side) != 0)
        goto fail;
    return side;
fail:
    side_free(side);
    return NULL;
}

bool explain_side_submit(explain_side *side, explain_job *job)
{
    if (side == NULL || job == NULL)
        return false;
    struct job_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return false;
    n->job = job;
    pthread_mutex_lock(&side->lock);
    bool full = side->stopping || side->waiting >= side->set.queue_size;
    if (!full) {
        if (side->in_tail != NULL)
            side->in_tail->next = n;
        else
            side->in_head = n;
        side->in_tail = n;
        side->waiting++;
    }
    pthread_mutex_unlock(&side->lock);
    if (full) {
        free(n);
        return false;
    }
    wake(side);
    return true;
}

size_t explain_side_results(explain_side *side, explain_result **out, size_t max)
{
    if (side == NULL || out == NULL)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&side->lock);
    while (n < max && (out[n] = explain_list_pop(&side->results)) != NULL)
        n++;
    pthread_mutex_unlock(&side->lock);
    return n;
}

void explain_side_stop(explain_side *side)
{
    if (side == NULL)
        return;
    pthread_mutex_lock(&side->lock);
    side->stopping = true;
    pthread_mutex_unlock(&side->lock);
    wake(side);
    pthread_join(side->thread, NULL);
    side_free(side);
}
