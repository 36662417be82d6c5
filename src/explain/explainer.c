/* explainer.c — EXPLAIN sampling as the analysis thread drives it: a slow statement goes through
 * the guard and the sampler to a side connection; its plan comes back, is redacted, analysed,
 * and held until the store has written it. Nothing here waits on a side connection. */
#include "config.h"

#include "explain_int.h"
#include "pgscope/clock.h"
#include "pgscope/explain.h"
#include "pgscope/hash.h"
#include "pgscope/log.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define GUARD_SLOTS 4096   /* guard verdicts remembered, by fingerprint: a property of the shape */
#define MAX_IN_FLIGHT 256  /* samples handed to the side connections and not back yet */
#define MAX_HELD_PLANS 512 /* plans waiting for the store; beyond, new ones are dropped */
#define MAX_CHECKS 64      /* SQL checks in flight, and answers not taken */
#define CHECK_ID (1ULL << 63) /* a check's job id: never a sample's */

/* What a sample in flight will need when its plan comes back. */
typedef struct flight {
    uint64_t id, fingerprint;
    char *database, *user, *query, *params, *test;
    bool analyzed;
    double trigger_ms;
    /* For index advice: the statement as replayed (in memory only, never stored). */
    char *raw, *search_path;
    char **values;
    int n_values;
    unsigned int *types; /* the values' types, lengths and formats, as explain_job's */
    int *lengths, *formats;
    double weight_ms;
    bool extended;
    struct flight *next;
} flight;

/* A plan for the store; sent_in: the batch that carried it last, 0 for none yet. */
typedef struct held_plan {
    store_plan_row row;
    uint64_t sent_in;
    struct held_plan *next;
} held_plan;

struct explainer {
    explainer_settings set;
    explain_sampler *sampler;
    explain_side *side;
    adviser *adviser; /* NULL without index advice */
    struct {
        uint64_t fingerprint;
        explain_guard_kind kind;
    } guards[GUARD_SLOTS];
    flight *flights;
    int n_flights;
    held_plan *held;
    size_t n_held;
    uint64_t next_id, plans;
    struct {
        uint64_t id, cookie;
    } checks[MAX_CHECKS];
    int n_checks;
    explainer_check_answer answers[MAX_CHECKS];
    int n_answers;
    char last_error[256];  /* logged once until the reason changes */
    char login_error[256]; /* the side connection's first refused login; "" for none */
};

/* ---- starting a sample ---- */

static uint64_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return hash_mix64(h);
}

/* The guard's verdict on a shape is the same for every execution of it (literals do not change
 * what a statement calls or locks): one parse per shape, not per slow statement. */
static explain_guard_kind guard_shape(explainer *x, const explain_statement *st)
{
    size_t slot = hash_mix64(st->fingerprint) % GUARD_SLOTS;

    if (x->guards[slot].fingerprint == st->fingerprint && st->fingerprint != 0)
        return x->guards[slot].kind;
    char *text = strndup(st->text, st->text_len);
    explain_guard_result g = explain_guard(text);
    free(text);
    if (g.kind == EXPLAIN_GUARD_REFUSED || g.kind == EXPLAIN_GUARD_PLAN_ONLY)
        log_debug(NULL, "EXPLAIN: %s %016llx: %s",
                  g.kind == EXPLAIN_GUARD_REFUSED ? "not replaying" : "only planning",
                  (unsigned long long)st->fingerprint, g.reason);
    x->guards[slot].fingerprint = st->fingerprint;
    x->guards[slot].kind = g.kind;
    return g.kind;
}

/* The type the server read parameter i as: the Parse's, or the one it described; 0 when the
 * client left it to the server. */
static uint32_t param_type(const track_event *ev, int i)
{
    return ev->param_types && i < ev->n_param_types ? ev->param_types[i] : 0;
}

/* A value's bytes, with a NUL after them (text values are read as strings). */
static char *value_copy(const uint8_t *v, int32_t len)
{
    char *copy = malloc((size_t)len + 1);

    if (copy) {
        memcpy(copy, v, (size_t)len);
        copy[len] = '\0';
    }
    return copy;
}

/* A value as the plan's params JSON keeps it: binary ones in their text form (wire_value_text).
 * NULL when it cannot be (not UTF-8, no memory). */
static json_t *param_json(uint32_t type, const uint8_t *v, int32_t len, bool binary)
{
    if (len < 0)
        return json_null();
    char *text = wire_value_text(type, v, (size_t)len, binary);
    json_t *item = text ? json_string(text) : NULL;
    free(text);
    return item;
}

static bool job_params_alloc(explain_job *job, size_t n)
{
    job->params = calloc(n, sizeof(char *));
    job->param_types = calloc(n, sizeof(unsigned int));
    job->param_lengths = calloc(n, sizeof(int));
    job->param_formats = calloc(n, sizeof(int));
    return job->params && job->param_types && job->param_lengths && job->param_formats;
}

/* The bind parameters as the client sent them (bytes, types, formats) and, when kept, as a JSON
 * array of their text forms. False when one cannot be: the statement is then not replayed. */
static bool job_params(const track_event *ev, explain_job *job, char **json_out, bool keep)
{
    uint32_t pos = 0;
    const uint8_t *v;
    int32_t len;
    bool binary;
    json_t *arr;

    if (!job_params_alloc(job, ev->n_params ? ev->n_params : 1))
        return false;
    arr = keep ? json_array() : NULL;
    while (job->n_params < ev->n_params &&
           track_param_next(ev->params, ev->params_len, &pos, &v, &len, &binary)) {
        int i = job->n_params++;
        char *value = len < 0 ? NULL : value_copy(v, len);
        job->params[i] = value;
        job->param_types[i] = param_type(ev, i);
        job->param_lengths[i] = len < 0 ? 0 : len;
        job->param_formats[i] = binary ? 1 : 0;
        json_t *item = arr ? param_json(param_type(ev, i), v, len, binary) : NULL;
        if ((len >= 0 && !value) || (arr && !item)) {
            json_decref(arr);
            return false;
        }
        if (arr)
            json_array_append_new(arr, item);
    }
    *json_out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return job->n_params == ev->n_params;
}

static bool has_binary_param(const track_event *ev)
{
    uint32_t pos = 0;
    const uint8_t *v;
    int32_t len;
    bool binary;

    while (track_param_next(ev->params, ev->params_len, &pos, &v, &len, &binary))
        if (binary)
            return true;
    return false;
}

/* What cannot be replayed as the client ran it: a cut text or value (its first bytes are
 * another value), a binary value whose declared type was not kept (the server might read its
 * bytes as another type), a function call by OID, a search_path not followed. A text value whose
 * declared type was not kept is bound with its type left to the server, as before types were
 * kept: most often the server infers the one declared. */
static bool incomplete(const explain_statement *st)
{
    const track_event *ev = st->ev;

    return ev->text_truncated || ev->params_truncated || ev->params_cut ||
           ev->via == TRACK_VIA_FUNCTION || st->path_unknown ||
           (ev->param_types_cut && has_binary_param(ev));
}

/* Whether it names a temporary relation, which the side connection cannot see. Parsed only
 * when its connection has some, or the text names pg_temp. */
static bool uses_temp(const explain_statement *st)
{
    bool pg_temp = false;

    for (size_t i = 0; i + 7 <= st->text_len && !pg_temp; i++)
        pg_temp = strncasecmp(st->text + i, "pg_temp", 7) == 0;
    if (st->n_temps == 0 && !pg_temp)
        return false;
    char *text = strndup(st->text, st->text_len);
    bool uses = text && explain_temp_uses(text, st->temps, st->n_temps);
    free(text);
    return uses;
}

static explain_job *job_new(explainer *x, const explain_statement *st, bool analyze,
                            char **params_json)
{
    explain_job *job = calloc(1, sizeof(*job));
    const track_event *ev = st->ev;

    if (!job)
        return NULL;
    job->id = ++x->next_id;
    job->fingerprint = st->fingerprint;
    job->database = strdup(ev->database);
    job->user = strdup(ev->user);
    job->search_path = st->search_path ? strdup(st->search_path) : NULL;
    job->query = strndup(st->text, st->text_len);
    job->analyze = analyze;
    job->read_write =
        analyze && x->set.sampler.dml_analyze && guard_shape(x, st) == EXPLAIN_GUARD_DML;
    bool ok = job->database && job->user && job->query && (!st->search_path || job->search_path);
    if (ok && ev->via == TRACK_VIA_EXTENDED && ev->n_params > 0)
        ok = job_params(ev, job, params_json, x->set.store_params);
    if (!ok) {
        explain_job_free(job);
        return NULL;
    }
    return job;
}

static flight *flight_new(const explain_statement *st, const explain_job *job, char *params,
                          bool keep_values)
{
    flight *f = calloc(1, sizeof(*f));

    if (!f) {
        free(params);
        return NULL;
    }
    f->id = job->id;
    f->fingerprint = st->fingerprint;
    f->database = strdup(st->ev->database);
    f->user = strdup(st->ev->user);
    f->test = strdup(st->test ? st->test : "");
    /* With values kept, the text as replayed (literals and all); else its normalized form. */
    f->query = keep_values ? strndup(st->text, st->text_len)
                           : strdup(st->normalized ? st->normalized : "");
    f->params = params;
    f->analyzed = job->analyze;
    f->trigger_ms = (double)(st->ev->end_us - st->ev->start_us) / 1000.0;
    f->weight_ms = st->shape_total_ms;
    f->extended = st->ev->via == TRACK_VIA_EXTENDED;
    f->raw = strdup(job->query);
    f->search_path = job->search_path ? strdup(job->search_path) : NULL;
    f->values = calloc(job->n_params > 0 ? (size_t)job->n_params : 1, sizeof(char *));
    for (int i = 0; f->values && i < job->n_params; i++)
        f->values[f->n_values++] =
            job->params[i] ? value_copy((const uint8_t *)job->params[i], job->param_lengths[i])
                           : NULL;
    if (job->n_params > 0 && f->values) {
        size_t n = (size_t)job->n_params;
        f->types = malloc(n * sizeof(*f->types));
        f->lengths = malloc(n * sizeof(*f->lengths));
        f->formats = malloc(n * sizeof(*f->formats));
        if (f->types && f->lengths && f->formats) {
            memcpy(f->types, job->param_types, n * sizeof(*f->types));
            memcpy(f->lengths, job->param_lengths, n * sizeof(*f->lengths));
            memcpy(f->formats, job->param_formats, n * sizeof(*f->formats));
        }
    }
    return f;
}

static void flight_free(flight *f)
{
    for (int i = 0; i < f->n_values; i++)
        free(f->values[i]);
    free(f->values);
    free(f->types);
    free(f->lengths);
    free(f->formats);
    free(f->raw);
    free(f->search_path);
    free(f->database);
    free(f->user);
    free(f->query);
    free(f->params);
    free(f->test);
    free(f);
}

/* A statement the sampler chose: built into a job and handed over, or settled as not taken. */
static void submit(explainer *x, const explain_statement *st, bool analyze, int64_t now_us)
{
    char *params = NULL;
    explain_job *job = job_new(x, st, analyze, &params);

    if (!job) {
        free(params);
        explain_sampler_done(x->sampler, st->fingerprint, 0, EXPLAIN_SKIP_INCOMPLETE, now_us);
        return;
    }
    flight *f = flight_new(st, job, params, x->set.store_params);
    if (!f || !explain_side_submit(x->side, job)) {
        if (f)
            flight_free(f);
        explain_job_free(job);
        explain_sampler_done(x->sampler, st->fingerprint, 0, EXPLAIN_SKIP_QUEUE, now_us);
        return;
    }
    f->next = x->flights;
    x->flights = f;
    x->n_flights++;
}

void explainer_statement(explainer *x, const explain_statement *st)
{
    const track_event *ev = st->ev;
    double ms = (double)(ev->end_us - ev->start_us) / 1000.0;

    if (x->adviser)
        adviser_statement(x->adviser, st);
    if (!explain_sampler_observe(x->sampler, ms, st->p95_ms, st->calls))
        return;
    if (ev->sqlstate[0] != '\0') {
        explain_sampler_count(x->sampler, EXPLAIN_SKIP_ERROR);
        return;
    }
    if (incomplete(st)) {
        explain_sampler_count(x->sampler, EXPLAIN_SKIP_INCOMPLETE);
        return;
    }
    if (st->fallback) { /* libpg_query cannot parse it: neither can the guard */
        explain_sampler_count(x->sampler, EXPLAIN_SKIP_GUARD);
        return;
    }
    if (uses_temp(st)) {
        explain_sampler_count(x->sampler, EXPLAIN_SKIP_TEMP_TABLE);
        return;
    }
    if (x->n_flights >= MAX_IN_FLIGHT) {
        explain_sampler_count(x->sampler, EXPLAIN_SKIP_QUEUE);
        return;
    }
    explain_guard_kind guard = guard_shape(x, st);
    /* Same parameters, same plan: simple-protocol values are in the text itself. */
    uint64_t params_hash = ev->via == TRACK_VIA_EXTENDED ? hash_bytes(ev->params, ev->params_len)
                                                         : hash_bytes(st->text, st->text_len);
    explain_skip verdict =
        explain_sampler_decide(x->sampler, st->fingerprint, params_hash, guard, ev->end_us);
    if (verdict == EXPLAIN_SAMPLE || verdict == EXPLAIN_SKIP_DML ||
        verdict == EXPLAIN_SKIP_FUNCTION)
        submit(x, st, verdict == EXPLAIN_SAMPLE, ev->end_us);
}

/* ---- plans coming back ---- */

static flight *take_flight(explainer *x, uint64_t id)
{
    for (flight **p = &x->flights; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            flight *f = *p;
            *p = f->next;
            x->n_flights--;
            return f;
        }
    }
    return NULL;
}

static void add_finding(const explain_finding *f, void *arg)
{
    store_plan_row *row = arg;
    store_plan_finding *more =
        realloc(row->findings, (row->n_findings + 1) * sizeof(*row->findings));

    if (!more)
        return;
    row->findings = more;
    store_plan_finding *out = &row->findings[row->n_findings++];
    memset(out, 0, sizeof(*out));
    snprintf(out->kind, sizeof(out->kind), "%s", f->kind);
    out->node_path = strdup(f->path);
    out->relation = strdup(f->relation);
    out->detail = strdup(f->detail);
    out->magnitude = f->magnitude;
}

/* The plan of a sample that worked, as the store will have it. Takes f's strings. */
static held_plan *plan_of(explainer *x, flight *f, explain_result *r, int64_t now_us)
{
    held_plan *h = calloc(1, sizeof(*h));
    explain_plan_times times = {-1, -1};

    if (!h)
        return NULL;
    store_plan_row *row = &h->row;
    row->seq = ++x->plans;
    snprintf(row->fingerprint, sizeof(row->fingerprint), "%016llx",
             (unsigned long long)f->fingerprint);
    row->database = f->database;
    row->user = f->user;
    row->query = f->query;
    row->params = f->params;
    row->test = f->test;
    f->database = f->user = f->query = f->params = f->test = NULL;
    row->plan = x->set.store_params ? r->plan_json : explain_plan_redact(r->plan_json);
    if (x->set.store_params)
        r->plan_json = NULL;
    row->analyzed = f->analyzed;
    row->trigger_ms = f->trigger_ms;
    row->side_ms = r->side_ms;
    row->taken_us = now_us;
    if (!row->plan || !explain_plan_findings(row->plan, add_finding, row, &times)) {
        store_plan_row_free(row);
        free(h);
        return NULL;
    }
    row->planning_ms = times.planning_ms;
    row->execution_ms = times.execution_ms;
    return h;
}

static void note_failure(explainer *x, const flight *f, const explain_result *r)
{
    char line[sizeof(x->last_error)];
    /* A statement's error may quote the values it ran with (value "42" is out of range):
     * kept out of the log unless values may be kept. A refused connection names none. */
    bool scrub = !x->set.store_params && r->skip != EXPLAIN_SKIP_NO_CONNECTION;
    char *clean = scrub ? explain_redact_text(r->error) : NULL;

    snprintf(line, sizeof(line), "%s: %s", explain_skip_name(r->skip),
             clean   ? clean
             : scrub ? "(message withheld: it may quote values)"
                     : r->error);
    free(clean);
    /* A replay that missed what only the client's session had is the client's state, not a
     * fault: counted, not warned. After a refused login, the advice was given once. */
    if (r->skip == EXPLAIN_SKIP_NOT_VISIBLE ||
        (r->skip == EXPLAIN_SKIP_NO_CONNECTION && x->login_error[0] != '\0')) {
        log_debug(NULL, "EXPLAIN sample of %016llx in database \"%s\" not taken (%s)",
                  (unsigned long long)f->fingerprint, f->database, line);
        return;
    }
    /* A side connection that is refused fails every sample the same way: say it once. */
    if (strcmp(line, x->last_error) != 0)
        log_warning(NULL,
                    "EXPLAIN sample of %016llx in database \"%s\" failed (%s); traffic is "
                    "not affected",
                    (unsigned long long)f->fingerprint, f->database, line);
    snprintf(x->last_error, sizeof(x->last_error), "%s", line);
}

/* The first refused login is kept for the report and told once, with what to do about it. */
static void note_login(explainer *x, const flight *f, const explain_result *r)
{
    if (x->login_error[0] != '\0' || r->ok || r->skip != EXPLAIN_SKIP_NO_CONNECTION ||
        !explain_login_refused(r->error))
        return;
    snprintf(x->login_error, sizeof(x->login_error), "%s", r->error);
    log_warning(NULL,
                "EXPLAIN: cannot log in to database \"%s\" (%s): no plans; traffic is not "
                "affected. %s",
                f->database, r->error, EXPLAIN_LOGIN_ADVICE);
}

static bool has_kind(const store_plan_row *row, const char *kind)
{
    for (size_t i = 0; i < row->n_findings; i++)
        if (strcmp(row->findings[i].kind, kind) == 0)
            return true;
    return false;
}

/* A plan landed: its statement's candidate indexes go to the verifier. */
static void advise(explainer *x, const flight *f, const store_plan_row *row)
{
    if (!x->adviser || !f->raw || !f->values ||
        (f->n_values > 0 && (!f->types || !f->lengths || !f->formats)))
        return;
    advice_request req = {
        .fingerprint = f->fingerprint,
        .database = row->database,
        .user = row->user,
        .search_path = f->search_path,
        .query = f->raw,
        .n_params = f->n_values,
        .params = f->values,
        .param_types = f->types,
        .param_lengths = f->lengths,
        .param_formats = f->formats,
        .misestimate = has_kind(row, "misestimate"),
        .weight_ms = f->weight_ms,
        .extended = f->extended,
    };
    adviser_sampled(x->adviser, &req);
}

/* An ANALYZE sample whose plan check refused: its plain plan is kept, and the reason (names of
 * functions and tables, never values) told once per plan. */
static void note_plain_only(flight *f, const explain_result *r)
{
    f->analyzed = false;
    log_info(NULL, "EXPLAIN sample of %016llx in database \"%s\" taken without ANALYZE: %s",
             (unsigned long long)f->fingerprint, f->database, r->error);
}

/* ---- checking SQL that pgscope wrote (the fixes of N+1 findings) ---- */

/* The highest $n of a text, the parameters a check binds to NULL. */
static int params_in(const char *sql)
{
    int most = 0;

    for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
        int n = atoi(p + 1);
        most = n > most && n <= 65535 ? n : most;
    }
    return most;
}

bool explainer_check(explainer *x, uint64_t cookie, const char *database, const char *user,
                     const char *sql)
{
    explain_job *job = x->side && x->n_checks < MAX_CHECKS ? calloc(1, sizeof(*job)) : NULL;

    if (!job)
        return false;
    job->id = CHECK_ID | ++x->next_id;
    job->database = strdup(database);
    job->user = user ? strdup(user) : NULL;
    job->query = strdup(sql);
    job->n_params = params_in(sql);
    job->params = job->n_params ? calloc((size_t)job->n_params, sizeof(char *)) : NULL;
    uint64_t id = job->id;
    if (!job->database || (user && !job->user) || !job->query || (job->n_params && !job->params) ||
        !explain_side_submit(x->side, job)) {
        explain_job_free(job);
        return false;
    }
    x->checks[x->n_checks].id = id;
    x->checks[x->n_checks++].cookie = cookie;
    return true;
}

/* A check came back: its answer waits for explainer_check_answers. */
static void check_settle(explainer *x, const explain_result *r)
{
    for (int i = 0; i < x->n_checks; i++) {
        if (x->checks[i].id != r->id)
            continue;
        if (x->n_answers < MAX_CHECKS) {
            explainer_check_answer *a = &x->answers[x->n_answers++];
            a->cookie = x->checks[i].cookie;
            a->ok = r->ok;
            a->no_connection = !r->ok && r->skip == EXPLAIN_SKIP_NO_CONNECTION;
            snprintf(a->error, sizeof(a->error), "%s", r->ok ? "" : r->error);
        }
        x->checks[i] = x->checks[--x->n_checks];
        return;
    }
}

size_t explainer_check_answers(explainer *x, explainer_check_answer *out, size_t max)
{
    size_t n = 0;

    for (; n < max && (int)n < x->n_answers; n++)
        out[n] = x->answers[n];
    memmove(x->answers, x->answers + n, (size_t)(x->n_answers - (int)n) * sizeof(*x->answers));
    x->n_answers -= (int)n;
    return n;
}

static void settle(explainer *x, explain_result *r, int64_t now_us)
{
    if (r->id & CHECK_ID) {
        check_settle(x, r);
        return;
    }
    flight *f = take_flight(x, r->id);

    if (!f)
        return;
    bool plain_only = r->ok && r->skip == EXPLAIN_SKIP_FUNCTION;
    explain_skip outcome =
        r->ok ? (plain_only ? EXPLAIN_SKIP_FUNCTION : EXPLAIN_SAMPLE)
              : (r->skip == EXPLAIN_SKIP_NO_CONNECTION || r->skip == EXPLAIN_SKIP_NOT_VISIBLE
                     ? r->skip
                     : EXPLAIN_SKIP_FAILED);
    explain_sampler_done(x->sampler, f->fingerprint, r->side_ms, outcome, now_us);
    if (plain_only)
        note_plain_only(f, r);
    if (!r->ok) {
        note_login(x, f, r);
        note_failure(x, f, r);
    } else if (x->n_held >= MAX_HELD_PLANS) {
        log_warning(NULL, "EXPLAIN: %zu plans wait for the report database: one dropped",
                    x->n_held);
    } else {
        held_plan *h = plan_of(x, f, r, now_us);
        if (h)
            advise(x, f, &h->row);
        if (h) {
            h->next = x->held;
            x->held = h;
            x->n_held++;
            x->last_error[0] = '\0';
        }
    }
    flight_free(f);
}

void explainer_poll(explainer *x, int64_t now_us)
{
    explain_result *results[16];
    size_t n;

    while ((n = explain_side_results(x->side, results, 16)) > 0) {
        for (size_t i = 0; i < n; i++) {
            settle(x, results[i], now_us);
            explain_result_free(results[i]);
        }
    }
    if (x->adviser)
        adviser_poll(x->adviser);
}

/* ---- to the store ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool copy_plan(const store_plan_row *src, store_plan_row *dst)
{
    *dst = *src;
    dst->database = strdup(src->database);
    dst->user = strdup(src->user);
    dst->query = strdup(src->query);
    dst->params = dup_or_null(src->params);
    dst->test = dup_or_null(src->test);
    dst->plan = strdup(src->plan);
    dst->findings = calloc(src->n_findings ? src->n_findings : 1, sizeof(*dst->findings));
    dst->n_findings = 0;
    if (!dst->findings)
        return false;
    for (size_t i = 0; i < src->n_findings; i++) {
        store_plan_finding *f = &dst->findings[dst->n_findings++];
        *f = src->findings[i];
        f->node_path = strdup(src->findings[i].node_path);
        f->relation = strdup(src->findings[i].relation);
        f->detail = strdup(src->findings[i].detail);
    }
    return dst->database && dst->user && dst->query && dst->plan;
}

static void fill_counters(explainer *x, store_batch *b)
{
    store_run_counters *c = &b->run;

    c->n_explain = 0;
    for (int r = 0;
         r < EXPLAIN_SKIP_COUNT && c->n_explain < (int)(sizeof(c->explain) / sizeof(c->explain[0]));
         r++) {
        uint64_t n = explain_sampler_skips(x->sampler, (explain_skip)r);
        if (n == 0)
            continue;
        snprintf(c->explain[c->n_explain].reason, sizeof(c->explain[0].reason), "%s",
                 explain_skip_name((explain_skip)r));
        c->explain[c->n_explain++].count = n;
    }
    snprintf(c->explain_login_error, sizeof(c->explain_login_error), "%s", x->login_error);
}

void explainer_fill_batch(explainer *x, store_batch *b, uint64_t batch_no, bool all)
{
    size_t n = 0;

    fill_counters(x, b);
    if (x->adviser)
        adviser_fill_batch(x->adviser, b, all);
    for (held_plan *h = x->held; h; h = h->next)
        n += all || h->sent_in == 0;
    if (n == 0 || !(b->plans = calloc(n, sizeof(*b->plans))))
        return;
    for (held_plan *h = x->held; h; h = h->next) {
        if (!all && h->sent_in != 0)
            continue;
        if (copy_plan(&h->row, &b->plans[b->n_plans]))
            h->sent_in = batch_no;
        b->n_plans++; /* a partial copy is freed with the batch */
    }
}

void explainer_written(explainer *x, uint64_t upto)
{
    for (held_plan **p = &x->held; *p;) {
        held_plan *h = *p;
        if (h->sent_in != 0 && h->sent_in <= upto) {
            *p = h->next;
            store_plan_row_free(&h->row);
            free(h);
            x->n_held--;
        } else {
            p = &h->next;
        }
    }
}

/* ---- life ---- */

explainer *explainer_start(const explainer_settings *s)
{
    explainer *x = calloc(1, sizeof(*x));

    if (!x)
        return NULL;
    x->set = *s;
    x->sampler = explain_sampler_new(&s->sampler);
    x->side = x->sampler ? explain_side_start(&s->side) : NULL;
    if (x->side && s->advise && !(x->adviser = adviser_start(&s->advisor, s->store_params)))
        log_warning(NULL, "cannot start the index advisor: no index suggestions");
    if (!x->side) {
        explain_sampler_free(x->sampler);
        free(x);
        return NULL;
    }
    return x;
}

void explainer_finish(explainer *x, int wait_ms)
{
    for (int waited = 0; x->n_flights > 0 && waited < wait_ms; waited += 10) {
        usleep(10 * 1000);
        explainer_poll(x, clock_wall_us());
    }
    if (!x->side)
        return;
    explain_side_stop(x->side);
    x->side = NULL;
    while (x->flights) {
        flight *f = x->flights;
        x->flights = f->next;
        explain_sampler_done(x->sampler, f->fingerprint, 0, EXPLAIN_SKIP_FAILED, clock_wall_us());
        flight_free(f);
    }
    x->n_flights = 0;
    if (x->adviser)
        adviser_finish(x->adviser, wait_ms);
}

void explainer_free(explainer *x)
{
    if (!x)
        return;
    explainer_finish(x, 0);
    explainer_written(x, UINT64_MAX);
    while (x->held) { /* never sent */
        held_plan *h = x->held;
        x->held = h->next;
        store_plan_row_free(&h->row);
        free(h);
    }
    adviser_free(x->adviser);
    explain_sampler_free(x->sampler);
    free(x);
}
