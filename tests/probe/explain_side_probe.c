/* explain_side_probe.c — runs jobs through the EXPLAIN side connections and prints each result
 * as a JSON line, for tests/integration/test_explain_side.py. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pgscope/explain.h"

#define WAIT_MS 30000
#define PLAN_CHARS 2000

static void usage(void)
{
    fprintf(stderr,
            "usage: explain_side_probe DSN DATABASE JOBSPEC...\n"
            "  JOBSPEC: analyze|plain|rw[@DATABASE]:QUERY[|PARAM...]\n"
            "  environment: PROBE_STATEMENT_TIMEOUT_MS, PROBE_SEARCH_PATH, PROBE_PER_DATABASE,\n"
            "    PROBE_WAIT_MS (how long to wait for results, default 30000)\n");
}

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? atoi(v) : fallback;
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

/* Splits "QUERY|P1|P2" into the job's query and parameters. */
static bool parse_query(explain_job *job, const char *text)
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
        job->params[job->n_params] = dup_range(p, plen);
        if (job->params[job->n_params] == NULL)
            return false;
        job->n_params++;
        p += plen;
    }
    return true;
}

/* One JOBSPEC as a job; NULL when it is malformed. */
static explain_job *parse_job(const char *spec, const char *database, uint64_t id)
{
    const char *colon = strchr(spec, ':');
    if (colon == NULL)
        return NULL;
    size_t mode_len = strcspn(spec, "@:");
    explain_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return NULL;
    job->id = id;
    job->fingerprint = id;
    if (strncmp(spec, "analyze", mode_len) == 0 && mode_len == 7) {
        job->analyze = true;
    } else if (strncmp(spec, "rw", mode_len) == 0 && mode_len == 2) {
        job->analyze = true;
        job->read_write = true;
    } else if (!(strncmp(spec, "plain", mode_len) == 0 && mode_len == 5)) {
        free(job);
        return NULL;
    }
    if (spec[mode_len] == '@')
        job->database = dup_range(spec + mode_len + 1, (size_t)(colon - spec) - mode_len - 1);
    else
        job->database = strdup(database);
    const char *sp = getenv("PROBE_SEARCH_PATH");
    if (sp != NULL)
        job->search_path = strdup(sp);
    if (job->database == NULL || (sp != NULL && job->search_path == NULL) ||
        !parse_query(job, colon + 1)) {
        explain_job_free(job);
        return NULL;
    }
    return job;
}

static void print_result(const explain_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)r->id));
    json_object_set_new(o, "ok", json_boolean(r->ok));
    json_object_set_new(o, "skip", json_string(explain_skip_name(r->skip)));
    json_object_set_new(o, "error", json_string(r->error));
    json_object_set_new(o, "side_ms", json_real(r->side_ms));
    if (r->plan_json != NULL) {
        json_object_set_new(o, "plan",
                            json_stringn(r->plan_json, strnlen(r->plan_json, PLAN_CHARS)));
        json_object_set_new(o, "plan_full", json_string(r->plan_json));
    } else {
        json_object_set_new(o, "plan", json_null());
    }
    char *line = json_dumps(o, JSON_COMPACT);
    if (line != NULL)
        printf("%s\n", line);
    free(line);
    json_decref(o);
    fflush(stdout);
}

/* Collects results until all `want` arrived or wait_ms passed; returns how many arrived. */
static int collect(explain_side *side, int want, int wait_ms)
{
    int got = 0;
    struct timespec pause = {0, 10 * 1000 * 1000};
    for (int tick = 0; got < want && tick < wait_ms / 10; tick++) {
        explain_result *rs[16];
        size_t n = explain_side_results(side, rs, 16);
        for (size_t i = 0; i < n; i++) {
            print_result(rs[i]);
            explain_result_free(rs[i]);
        }
        got += (int)n;
        if (n == 0)
            nanosleep(&pause, NULL);
    }
    return got;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        usage();
        return 1;
    }
    explain_side_settings s;
    explain_side_defaults(&s);
    s.dsn = argv[1];
    s.statement_timeout_ms = env_int("PROBE_STATEMENT_TIMEOUT_MS", s.statement_timeout_ms);
    s.per_database = env_int("PROBE_PER_DATABASE", s.per_database);
    explain_side *side = explain_side_start(&s);
    if (side == NULL) {
        fprintf(stderr, "explain_side_probe: cannot start the side connections\n");
        return 1;
    }
    int submitted = 0, rc = 0;
    for (int i = 3; i < argc; i++) {
        explain_job *job = parse_job(argv[i], argv[2], (uint64_t)(i - 2));
        if (job == NULL) {
            fprintf(stderr, "explain_side_probe: bad JOBSPEC: %s\n", argv[i]);
            rc = 1;
            break;
        }
        if (!explain_side_submit(side, job)) {
            fprintf(stderr, "explain_side_probe: queue full at job %d\n", i - 2);
            explain_job_free(job);
            rc = 1;
            break;
        }
        submitted++;
    }
    if (rc == 0 && collect(side, submitted, env_int("PROBE_WAIT_MS", WAIT_MS)) < submitted) {
        fprintf(stderr, "explain_side_probe: timed out waiting for results\n");
        rc = 1;
    }
    explain_side_stop(side);
    return rc;
}
