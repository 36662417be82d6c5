/* advisor_probe.c — runs one statement's index candidates through the advisor's verifier and
 * prints each result as a JSON line, for tests/integration/test_advisor_verify.py. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pgscope/advisor.h"

#define WAIT_MS 30000
#define MAX_JOBS 64

static void usage(void)
{
    fprintf(stderr,
            "usage: advisor_probe DSN DATABASE QUERY[|PARAM...] CANDIDATE...\n"
            "  CANDIDATE: [SCHEMA.]TABLE:COLUMN[,COLUMN...][:PREDICATE]\n"
            "  PARAM \\N is SQL NULL\n"
            "  environment: PROBE_SEARCH_PATH, PROBE_USER, PROBE_CREATE_EXTENSION (1: on),\n"
            "    PROBE_STATEMENT_TIMEOUT_MS, PROBE_MIN_REDUCTION, PROBE_JOBS (copies of the job,\n"
            "    default 1), PROBE_WAIT_MS (how long to wait for results, default 30000),\n"
            "    PROBE_GAP_MS (submit each copy only once the one before answered, and this\n"
            "    long after), PROBE_HOLD_MS (pause after the results, connections still open)\n");
}

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? atoi(v) : fallback;
}

static void sleep_ms(int ms)
{
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Copies n bytes of s into a fixed field; false when they do not fit. */
static bool copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

/* Splits "QUERY|P1|P2" into the job's query and parameters. */
static bool parse_query(advisor_job *job, const char *text)
{
    size_t len = strcspn(text, "|");
    job->query = dup_range(text, len);
    if (job->query == NULL)
        return false;
    for (const char *p = text + len; *p == '|';) {
        p++;
        size_t plen = strcspn(p, "|");
        char **grown = realloc(job->params, (size_t)(job->n_params + 1) * sizeof *grown);
        if (grown == NULL)
            return false;
        job->params = grown;
        bool null = plen == 2 && strncmp(p, "\\N", 2) == 0;
        job->params[job->n_params] = null ? NULL : dup_range(p, plen);
        if (!null && job->params[job->n_params] == NULL)
            return false;
        job->n_params++;
        p += plen;
    }
    return true;
}

/* "[schema.]table:a,b[:predicate]" as an index. */
static bool parse_candidate(advisor_index *ix, const char *spec)
{
    memset(ix, 0, sizeof *ix);
    size_t name_len = strcspn(spec, ":");
    if (spec[name_len] != ':')
        return false;
    const char *dot = memchr(spec, '.', name_len);
    if (dot != NULL && !copy_field(ix->schema, sizeof ix->schema, spec, (size_t)(dot - spec)))
        return false;
    const char *table = dot != NULL ? dot + 1 : spec;
    if (!copy_field(ix->table, sizeof ix->table, table, (size_t)(spec + name_len - table)))
        return false;
    const char *p = spec + name_len + 1;
    size_t cols_len = strcspn(p, ":");
    for (const char *c = p; c < p + cols_len;) {
        size_t n = strcspn(c, ",:");
        if (ix->n_columns == ADVISOR_MAX_COLUMNS ||
            !copy_field(ix->columns[ix->n_columns++], ADVISOR_NAME, c, n))
            return false;
        c += n + (c[n] == ',');
    }
    if (p[cols_len] == ':' && !copy_field(ix->predicate, sizeof ix->predicate, p + cols_len + 1,
                                          strlen(p + cols_len + 1)))
        return false;
    return ix->n_columns > 0;
}

static bool parse_candidates(advisor_job *job, char **specs, int n)
{
    job->candidates = calloc((size_t)n, sizeof *job->candidates);
    if (job->candidates == NULL)
        return false;
    for (int i = 0; i < n; i++) {
        if (!parse_candidate(&job->candidates[i], specs[i])) {
            fprintf(stderr, "advisor_probe: bad CANDIDATE: %s\n", specs[i]);
            return false;
        }
        job->n_candidates++;
    }
    return true;
}

static bool dup_env(char **dst, const char *name)
{
    const char *v = getenv(name);
    *dst = v != NULL ? strdup(v) : NULL;
    return v == NULL || *dst != NULL;
}

/* The job of the command line; NULL when it is malformed. */
static advisor_job *parse_job(char **argv, int argc, uint64_t id)
{
    advisor_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return NULL;
    job->id = id;
    job->fingerprint = id;
    job->database = strdup(argv[2]);
    if (job->database == NULL || !dup_env(&job->search_path, "PROBE_SEARCH_PATH") ||
        !dup_env(&job->user, "PROBE_USER") || !parse_query(job, argv[3]) ||
        !parse_candidates(job, argv + 4, argc - 4)) {
        advisor_job_free(job);
        return NULL;
    }
    return job;
}

static const char *outcome_name(advisor_trial_outcome o)
{
    switch (o) {
    case ADVISOR_TRIAL_USED:
        return "used";
    case ADVISOR_TRIAL_UNUSED:
        return "unused";
    case ADVISOR_TRIAL_COVERED:
        return "covered";
    case ADVISOR_TRIAL_UNVERIFIED:
        return "unverified";
    }
    return "?";
}

static json_t *trial_json(const advisor_trial *t)
{
    char ddl[1024];
    advisor_ddl(&t->index, false, ddl, sizeof ddl);
    json_t *o = json_object();
    json_object_set_new(o, "ddl", json_string(ddl));
    json_object_set_new(o, "table", json_string(t->index.table));
    json_object_set_new(o, "outcome", json_string(outcome_name(t->outcome)));
    json_object_set_new(o, "cost_after", json_real(t->cost_after));
    json_object_set_new(o, "size", json_real(t->size_bytes));
    return o;
}

static void print_result(const advisor_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)r->id));
    json_object_set_new(o, "ok", json_boolean(r->ok));
    json_object_set_new(o, "hypopg", json_boolean(r->hypopg));
    json_object_set_new(o, "error", json_string(r->error));
    json_object_set_new(o, "cost_before", json_real(r->cost_before));
    json_t *trials = json_array();
    for (int i = 0; i < r->n_trials; i++)
        json_array_append_new(trials, trial_json(&r->trials[i]));
    json_object_set_new(o, "trials", trials);
    char *line = json_dumps(o, JSON_COMPACT);
    if (line != NULL)
        printf("%s\n", line);
    free(line);
    json_decref(o);
    fflush(stdout);
}

/* Collects results until all `want` arrived or wait_ms passed; returns how many arrived. */
static int collect(advisor_verifier *v, int want, int wait_ms)
{
    int got = 0;
    for (int tick = 0; got < want && tick < wait_ms / 10; tick++) {
        advisor_result *rs[16];
        size_t n = advisor_verifier_results(v, rs, 16);
        for (size_t i = 0; i < n; i++) {
            print_result(rs[i]);
            advisor_result_free(rs[i]);
        }
        got += (int)n;
        if (n == 0)
            sleep_ms(10);
    }
    return got;
}

static void settings_from_env(advisor_settings *s, const char *dsn)
{
    advisor_settings_default(s);
    s->dsn = dsn;
    s->statement_timeout_ms = env_int("PROBE_STATEMENT_TIMEOUT_MS", s->statement_timeout_ms);
    s->create_extension = env_int("PROBE_CREATE_EXTENSION", 0) != 0;
    const char *m = getenv("PROBE_MIN_REDUCTION");
    if (m != NULL && *m != '\0')
        s->min_reduction = atof(m);
}

/* Submits copies first..first+n-1 of the command line's job; returns how many went in, -1 on
 * a bad one. */
static int submit_range(advisor_verifier *v, char **argv, int argc, int first, int n)
{
    int submitted = 0;
    for (int i = first; i < first + n; i++) {
        advisor_job *job = parse_job(argv, argc, (uint64_t)i + 1);
        if (job == NULL)
            return -1;
        if (!advisor_verifier_submit(v, job)) {
            fprintf(stderr, "advisor_probe: queue full at job %d\n", i + 1);
            advisor_job_free(job);
            return -1;
        }
        submitted++;
    }
    return submitted;
}

/* All copies at once, or (gap_ms > 0) one at a time with a pause between: 0 when every
 * result arrived. */
static int run_jobs(advisor_verifier *v, char **argv, int argc, int copies, int gap_ms)
{
    int wait_ms = env_int("PROBE_WAIT_MS", WAIT_MS);
    int batch = gap_ms > 0 ? 1 : copies;
    for (int first = 0; first < copies; first += batch) {
        if (first > 0)
            sleep_ms(gap_ms);
        int submitted = submit_range(v, argv, argc, first, batch);
        if (submitted < 0)
            return 1;
        if (collect(v, submitted, wait_ms) < submitted) {
            fprintf(stderr, "advisor_probe: timed out waiting for results\n");
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        usage();
        return 1;
    }
    advisor_settings s;
    settings_from_env(&s, argv[1]);
    int copies = env_int("PROBE_JOBS", 1);
    if (copies < 1 || copies > MAX_JOBS)
        copies = 1;
    advisor_verifier *v = advisor_verifier_start(&s);
    if (v == NULL) {
        fprintf(stderr, "advisor_probe: cannot start the verifier\n");
        return 1;
    }
    int rc = run_jobs(v, argv, argc, copies, env_int("PROBE_GAP_MS", 0));
    if (rc == 0 && env_int("PROBE_HOLD_MS", 0) > 0)
        sleep_ms(env_int("PROBE_HOLD_MS", 0));
    advisor_verifier_stop(v);
    return rc;
}
