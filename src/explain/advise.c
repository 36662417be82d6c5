/* advise.c — index advice as the analysis thread drives it: the candidates of each sampled
 * statement go to the verifier, its answers are kept, the time of the statements concerned and
 * the writes to each table are counted, and the suggestions are consolidated for the store. */
#include "config.h"

#include "explain_int.h"
#include "pgscope/clock.h"
#include "pgscope/hash.h"
#include "pgscope/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_CANDIDATES 16      /* candidate indexes of one statement */
#define MAX_ANSWERS 2000       /* verifier results kept for consolidation; more are dropped */
#define MAX_PENDING 256        /* verifications in flight */
#define WEIGHT_SLOTS 8192      /* (shape, database, user) times followed, open addressing */
#define WRITE_SLOTS 1024       /* (database, table) write counters */
#define UPDATE_SLOTS 1024      /* write shapes whose table (and SET columns) were read */
#define MAX_SUGGESTIONS 50     /* per database */
#define CONSOLIDATE_US 5000000 /* after new answers, a consolidation at most this often */
#define REWEIGH_US 60000000    /* without new answers (only the statements' time moved) */

/* A verifier answer with the database it is about (an index belongs to one database). */
typedef struct answer {
    advisor_result *r;
    char *database;
    bool bound;         /* it came by the extended protocol: constants in its text are the
                         * application's own, not values a driver inlined */
    uint64_t text_hash; /* of the statement as it ran */
} answer;

typedef struct pending {
    uint64_t id;
    char *database;
    bool misestimate, bound;
    uint64_t text_hash;
} pending;

typedef struct weight {
    uint64_t key; /* 0: free */
    uint64_t fingerprint, database;
    double total_ms;
} weight;

typedef struct table_writes {
    uint64_t key; /* 0: free */
    uint64_t database;
    advisor_table_writes w;
} table_writes;

struct adviser {
    advisor_verifier *verifier;
    uint64_t next_id;
    answer *answers;
    size_t n_answers;
    pending pending[MAX_PENDING];
    int n_pending;
    weight weights[WEIGHT_SLOTS];
    size_t n_weights;
    table_writes writes[WRITE_SLOTS];
    size_t n_writes;
    struct write_shape {
        uint64_t fingerprint;
        char table[ADVISOR_NAME];
        char columns[8][ADVISOR_NAME];
        int n;
    } updates[UPDATE_SLOTS];
    int64_t consolidated; /* monotonic time of the last consolidation */
    bool changed;         /* answers arrived since the last consolidation */
    bool full_logged;     /* MAX_ANSWERS reached, and said */
    bool store_params;    /* values may be logged */
    char last_error[256]; /* the last failure logged */
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return hash_mix64(h);
}

/* ---- what the traffic says: time per shape, writes per table ---- */

/* The slot of key (never 0); NULL when the table is full and key is not in it. */
static weight *weight_slot(adviser *ad, uint64_t key)
{
    for (size_t i = 0, at = key % WEIGHT_SLOTS; i < WEIGHT_SLOTS; i++, at = (at + 1) % WEIGHT_SLOTS)
        if (ad->weights[at].key == key || ad->weights[at].key == 0)
            return &ad->weights[at];
    return NULL;
}

/* The total time of a shape in one database and user, as the statistics had it last: followed
 * for shapes with advice only (create: the shape just got some). */
static void set_weight(adviser *ad, uint64_t fingerprint, const char *database, const char *user,
                       double total_ms, bool create)
{
    uint64_t db = hash_str(database);
    uint64_t key = hash_mix64(fingerprint ^ db ^ hash_str(user) * 31) | 1;
    weight *w = weight_slot(ad, key);

    if (!w || (w->key == 0 && (!create || ad->n_weights >= WEIGHT_SLOTS * 3 / 4)))
        return;
    if (w->key == 0) {
        w->key = key;
        w->fingerprint = fingerprint;
        w->database = db;
        ad->n_weights++;
    }
    w->total_ms = total_ms;
}

static table_writes *writes_slot(adviser *ad, uint64_t db, const char *table)
{
    uint64_t key = hash_mix64(db ^ hash_str(table)) | 1;

    for (size_t i = 0, at = key % WRITE_SLOTS; i < WRITE_SLOTS; i++, at = (at + 1) % WRITE_SLOTS) {
        table_writes *w = &ad->writes[at];
        if (w->key == key)
            return w;
        if (w->key == 0) {
            if (ad->n_writes >= WRITE_SLOTS * 3 / 4)
                return NULL;
            w->key = key;
            w->database = db;
            size_t n = strnlen(table, sizeof(w->w.table) - 1); /* table may be in ad itself */
            memmove(w->w.table, table, n);
            w->w.table[n] = '\0';
            ad->n_writes++;
            return w;
        }
    }
    return NULL;
}

static void add_updated(advisor_table_writes *w, const char *column)
{
    for (int i = 0; i < w->n_updated; i++)
        if (strcmp(w->updated[i], column) == 0)
            return;
    if (w->n_updated < (int)(sizeof(w->updated) / sizeof(w->updated[0])))
        snprintf(w->updated[w->n_updated++], ADVISOR_NAME, "%s", column);
}

/* The table a write shape writes and the columns an UPDATE sets, read once per shape (the
 * analysis thread's "single table" answer covers SELECTs only). */
static const struct write_shape *write_shape(adviser *ad, const explain_statement *st)
{
    struct write_shape *ws = &ad->updates[hash_mix64(st->fingerprint) % UPDATE_SLOTS];

    if (ws->fingerprint != st->fingerprint || ws->fingerprint == 0) {
        char *sql = strndup(st->text, st->text_len);
        int n = sql ? advisor_updated_columns(sql, ws->table, ws->columns, 8) : -1;
        free(sql);
        ws->fingerprint = st->fingerprint;
        ws->n = n < 0 ? 0 : n;
        if (n < 0)
            ws->table[0] = '\0';
    }
    return ws;
}

static void count_write(adviser *ad, const explain_statement *st)
{
    const char *cmd = st->ev->command;
    bool insert = strcmp(cmd, "INSERT") == 0, update = strcmp(cmd, "UPDATE") == 0;

    if ((!insert && !update && strcmp(cmd, "DELETE") != 0) || st->ev->sqlstate[0] || st->fallback)
        return;
    const struct write_shape *ws = write_shape(ad, st);
    table_writes *w = ws->table[0] ? writes_slot(ad, hash_str(st->ev->database), ws->table) : NULL;
    if (!w)
        return;
    if (insert)
        w->w.inserts++;
    else if (update)
        w->w.updates++;
    else
        w->w.deletes++;
    for (int i = 0; i < ws->n; i++)
        add_updated(&w->w, ws->columns[i]);
}

void adviser_statement(adviser *ad, const explain_statement *st)
{
    count_write(ad, st);
    if (ad->n_weights > 0)
        set_weight(ad, st->fingerprint, st->ev->database, st->ev->user, st->shape_total_ms, false);
}

/* ---- to the verifier and back ---- */

/* The values, each with a NUL after its bytes (binary ones may hold NULs: lengths count). */
static char **copy_params(int n, char *const *params, const int *lengths)
{
    char **out = calloc(n > 0 ? (size_t)n : 1, sizeof(char *));

    for (int i = 0; out && i < n; i++) {
        size_t len = !params[i] ? 0 : lengths ? (size_t)lengths[i] : strlen(params[i]);
        if (params[i] && (out[i] = malloc(len + 1)) != NULL) {
            memcpy(out[i], params[i], len);
            out[i][len] = '\0';
        }
        if (params[i] && !out[i]) {
            while (i-- > 0)
                free(out[i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

/* A copy of n items of size bytes; NULL for NULL (or out of memory: *failed is set). */
static void *copy_array(const void *a, int n, size_t size, bool *failed)
{
    void *out = a && n > 0 ? malloc((size_t)n * size) : NULL;

    if (a && n > 0 && !out)
        *failed = true;
    if (out)
        memcpy(out, a, (size_t)n * size);
    return out;
}

static advisor_job *job_new(adviser *ad, const advice_request *req, const advisor_index *cands,
                            int n)
{
    bool failed = false;
    advisor_job *job = calloc(1, sizeof(*job));

    if (!job)
        return NULL;
    job->id = ++ad->next_id;
    job->fingerprint = req->fingerprint;
    job->database = strdup(req->database);
    job->user = req->user ? strdup(req->user) : NULL;
    job->search_path = req->search_path ? strdup(req->search_path) : NULL;
    job->query = strdup(req->query);
    job->params = copy_params(req->n_params, req->params, req->param_lengths);
    job->n_params = job->params ? req->n_params : 0;
    job->param_types = copy_array(req->param_types, job->n_params, sizeof(unsigned int), &failed);
    job->param_lengths = copy_array(req->param_lengths, job->n_params, sizeof(int), &failed);
    job->param_formats = copy_array(req->param_formats, job->n_params, sizeof(int), &failed);
    job->candidates = malloc((size_t)n * sizeof(*cands));
    if (job->candidates) {
        memcpy(job->candidates, cands, (size_t)n * sizeof(*cands));
        job->n_candidates = n;
    }
    if (failed || !job->database || !job->query || !job->params || !job->candidates ||
        (req->user && !job->user) || (req->search_path && !job->search_path)) {
        advisor_job_free(job);
        return NULL;
    }
    return job;
}

static pending *pending_free_slot(adviser *ad)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (ad->pending[i].id == 0)
            return &ad->pending[i];
    return NULL;
}

void adviser_sampled(adviser *ad, const advice_request *req)
{
    advisor_index cands[MAX_CANDIDATES];
    int n = advisor_candidates(req->query, cands, MAX_CANDIDATES);
    pending *p = pending_free_slot(ad);

    if (ad->n_answers >= MAX_ANSWERS && !ad->full_logged) {
        log_warning(NULL,
                    "index advice: %d sampled statements answered, the most kept; later "
                    "ones get no index advice",
                    MAX_ANSWERS);
        ad->full_logged = true;
    }
    if (n <= 0 || !p || ad->n_answers >= MAX_ANSWERS)
        return;
    advisor_job *job = job_new(ad, req, cands, n);
    char *database = strdup(req->database);
    if (!job || !database) {
        advisor_job_free(job);
        free(database);
        return;
    }
    /* Once submitted the job belongs to the verifier's thread, which may free it at once. */
    uint64_t id = job->id;
    if (!advisor_verifier_submit(ad->verifier, job)) {
        advisor_job_free(job);
        free(database);
        return;
    }
    p->id = id;
    p->database = database;
    p->misestimate = req->misestimate;
    p->bound = req->extended;
    p->text_hash = hash_str(req->query);
    ad->n_pending++;
    set_weight(ad, req->fingerprint, req->database, req->user ? req->user : "", req->weight_ms,
               true);
}

static bool has_predicate(const advisor_result *r, const char *predicate)
{
    for (int i = 0; i < r->n_trials; i++)
        if (strcmp(r->trials[i].index.predicate, predicate) == 0)
            return true;
    return false;
}

/* A partial index is worth suggesting for a shape only when every sample of it had the same
 * constant (status = 'pending' written in the statement, not a literal that varies from call to
 * call): a trial whose predicate another sample of the shape lacks no longer counts. */
static void drop_varying_predicates(adviser *ad, advisor_result *r, const char *database)
{
    for (size_t k = 0; k < ad->n_answers; k++) {
        advisor_result *o = ad->answers[k].r;
        if (o->fingerprint != r->fingerprint || strcmp(ad->answers[k].database, database) != 0)
            continue;
        for (int pass = 0; pass < 2; pass++) {
            advisor_result *a = pass ? o : r, *b = pass ? r : o;
            for (int i = 0; i < a->n_trials; i++)
                if (a->trials[i].index.predicate[0] &&
                    a->trials[i].outcome != ADVISOR_TRIAL_COVERED &&
                    !has_predicate(b, a->trials[i].index.predicate))
                    a->trials[i].outcome = ADVISOR_TRIAL_UNUSED;
        }
    }
}

/* Once per cause, and without the values a server's message may quote (invalid input syntax for
 * type integer: "...") unless values may be kept. */
static void note_failure(adviser *ad, const advisor_result *r, const char *database)
{
    char *clean = ad->store_params ? NULL : explain_redact_text(r->error);
    const char *why = ad->store_params ? r->error : clean ? clean : "(message withheld)";

    if (strcmp(why, ad->last_error) != 0)
        log_info(NULL, "index advice for %016llx in database \"%s\" not verified: %s",
                 (unsigned long long)r->fingerprint, database, why);
    snprintf(ad->last_error, sizeof(ad->last_error), "%s", why);
    free(clean);
}

static void keep_answer(adviser *ad, advisor_result *r)
{
    pending *p = NULL;

    for (int i = 0; i < MAX_PENDING && !p; i++)
        if (ad->pending[i].id == r->id)
            p = &ad->pending[i];
    if (!p) {
        advisor_result_free(r);
        return;
    }
    char *database = p->database;
    bool bound = p->bound;
    uint64_t text_hash = p->text_hash;
    r->misestimate = p->misestimate;
    memset(p, 0, sizeof(*p));
    ad->n_pending--;
    if (!r->ok) {
        note_failure(ad, r, database);
        advisor_result_free(r);
        free(database);
        return;
    }
    answer *more = realloc(ad->answers, (ad->n_answers + 1) * sizeof(*more));
    if (!more) {
        advisor_result_free(r);
        free(database);
        return;
    }
    ad->answers = more;
    drop_varying_predicates(ad, r, database);
    ad->answers[ad->n_answers++] = (answer){r, database, bound, text_hash};
    ad->changed = true;
}

void adviser_poll(adviser *ad)
{
    advisor_result *results[16];
    size_t n;

    while ((n = advisor_verifier_results(ad->verifier, results, 16)) > 0)
        for (size_t i = 0; i < n; i++)
            keep_answer(ad, results[i]);
}

/* ---- consolidation ---- */

/* The shapes of one database with their time: the inputs advisor_consolidate weighs by. */
static advisor_shape *shapes_of(const adviser *ad, uint64_t db, size_t *n)
{
    advisor_shape *out = calloc(ad->n_weights ? ad->n_weights : 1, sizeof(*out));

    *n = 0;
    for (size_t i = 0; out && i < WEIGHT_SLOTS; i++) {
        const weight *w = &ad->weights[i];
        if (w->key == 0 || w->database != db)
            continue;
        size_t k = 0;
        while (k < *n && out[k].fingerprint != w->fingerprint)
            k++;
        if (k == *n)
            out[(*n)++] = (advisor_shape){w->fingerprint, 0};
        out[k].weight_ms += w->total_ms; /* every user of the database */
    }
    return out;
}

static advisor_table_writes *writes_of(const adviser *ad, uint64_t db, size_t *n)
{
    advisor_table_writes *out = calloc(ad->n_writes ? ad->n_writes : 1, sizeof(*out));

    *n = 0;
    for (size_t i = 0; out && i < WRITE_SLOTS; i++)
        if (ad->writes[i].key && ad->writes[i].database == db)
            out[(*n)++] = ad->writes[i].w;
    return out;
}

static char *json_list(const advisor_suggestion *s)
{
    json_t *arr = json_array();

    for (int i = 0; arr && i < s->index.n_columns; i++)
        json_array_append_new(arr, json_string(s->index.columns[i]));
    char *columns = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return columns;
}

static char *json_statements(const advisor_suggestion *s)
{
    json_t *arr = json_array();
    char hex[17];

    for (int i = 0; arr && i < s->n_statements; i++) {
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)s->statements[i]);
        json_array_append_new(arr, json_string(hex));
    }
    char *out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return out;
}

static void to_row(const advisor_suggestion *s, const char *database, store_index_row *r)
{
    r->database = strdup(database);
    r->ddl = strdup(s->ddl);
    r->schema = strdup(s->index.schema);
    r->table = strdup(s->index.table);
    r->columns = json_list(s);
    r->predicate = strdup(s->index.predicate);
    r->verified = s->verified;
    r->cost_before = s->cost_before;
    r->cost_after = s->cost_after;
    r->benefit_ms = s->benefit_ms;
    r->size_bytes = s->size_bytes;
    r->statements = json_statements(s);
    r->write_statements = s->write_statements;
    r->breaks_hot = s->breaks_hot;
    r->misestimate = s->misestimate;
}

/* Whether a partial index's constant is the application's own, not a value that happened to be
 * inlined: the statement bound its values as parameters, or another sample of it, with other
 * values, has the same constant. Without that, a partial index would serve one customer (and
 * put that customer's value in the report). */
static bool predicate_confirmed(const adviser *ad, size_t at, const char *predicate)
{
    const answer *a = &ad->answers[at];

    if (a->bound)
        return true;
    for (size_t k = 0; k < ad->n_answers; k++) {
        const answer *o = &ad->answers[k];
        if (k != at && o->r->fingerprint == a->r->fingerprint && o->text_hash != a->text_hash &&
            strcmp(o->database, a->database) == 0 && has_predicate(o->r, predicate))
            return true;
    }
    return false;
}

/* Partial trials not confirmed sit out this consolidation (outcomes saved in held, restored by
 * restore_partials: a later sample may confirm them). Returns how many were set aside. */
static size_t set_aside_partials(adviser *ad, const char *database, advisor_trial_outcome *held,
                                 size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < ad->n_answers; i++) {
        advisor_result *r = ad->answers[i].r;
        if (strcmp(ad->answers[i].database, database) != 0)
            continue;
        for (int t = 0; t < r->n_trials; t++) {
            advisor_trial *tr = &r->trials[t];
            bool partial = tr->index.predicate[0] != '\0';
            if (n < cap)
                held[n++] = tr->outcome;
            if (partial &&
                (tr->outcome == ADVISOR_TRIAL_USED || tr->outcome == ADVISOR_TRIAL_UNVERIFIED) &&
                !predicate_confirmed(ad, i, tr->index.predicate))
                tr->outcome = ADVISOR_TRIAL_UNUSED;
        }
    }
    return n;
}

static void restore_partials(adviser *ad, const char *database, const advisor_trial_outcome *held,
                             size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < ad->n_answers && k < n; i++) {
        advisor_result *r = ad->answers[i].r;
        if (strcmp(ad->answers[i].database, database) != 0)
            continue;
        for (int t = 0; t < r->n_trials && k < n; t++)
            r->trials[t].outcome = held[k++];
    }
}

/* Consolidates the answers of one database into b's rows. */
static void consolidate_database(adviser *ad, const char *database, store_batch *b)
{
    uint64_t db = hash_str(database);
    size_t n_results = 0, n_shapes, n_writes;
    const advisor_result **results = calloc(ad->n_answers, sizeof(*results));
    advisor_shape *shapes = shapes_of(ad, db, &n_shapes);
    advisor_table_writes *writes = writes_of(ad, db, &n_writes);
    advisor_suggestion *out = calloc(MAX_SUGGESTIONS, sizeof(*out));
    store_index_row *rows = NULL;

    size_t n_trials = 0;
    for (size_t i = 0; i < ad->n_answers; i++)
        if (strcmp(ad->answers[i].database, database) == 0)
            n_trials += (size_t)ad->answers[i].r->n_trials;
    advisor_trial_outcome *held = malloc((n_trials ? n_trials : 1) * sizeof(*held));
    size_t n_held = held ? set_aside_partials(ad, database, held, n_trials) : 0;
    for (size_t i = 0; results && i < ad->n_answers; i++)
        if (strcmp(ad->answers[i].database, database) == 0)
            results[n_results++] = ad->answers[i].r;
    int n = results && shapes && writes && out && held
                ? advisor_consolidate(results, n_results, shapes, n_shapes, writes, n_writes, out,
                                      MAX_SUGGESTIONS)
                : 0;
    if (held)
        restore_partials(ad, database, held, n_held);
    free(held);
    if (n > 0)
        rows = realloc(b->indexes, (b->n_indexes + (size_t)n) * sizeof(*rows));
    if (rows) {
        b->indexes = rows;
        for (int i = 0; i < n; i++) {
            memset(&rows[b->n_indexes], 0, sizeof(*rows));
            to_row(&out[i], database, &rows[b->n_indexes++]);
        }
    }
    free(results);
    free(shapes);
    free(writes);
    free(out);
}

void adviser_fill_batch(adviser *ad, store_batch *b, bool force)
{
    int64_t now = clock_monotonic_us();

    /* A consolidation is not free (tens of ms with thousands of answers, on the analysis
     * thread): after new answers every few seconds; otherwise only the statements' time moved,
     * and once a minute is enough for that. */
    int64_t since = now - ad->consolidated;
    if (ad->n_answers == 0 || (!force && since < (ad->changed ? CONSOLIDATE_US : REWEIGH_US)))
        return;
    for (size_t i = 0; i < ad->n_answers; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(ad->answers[k].database, ad->answers[i].database) == 0;
        if (!seen)
            consolidate_database(ad, ad->answers[i].database, b);
    }
    b->indexes_set = true;
    ad->consolidated = now;
    ad->changed = false;
}

/* ---- life ---- */

adviser *adviser_start(const advisor_settings *s, bool store_params)
{
    adviser *ad = calloc(1, sizeof(*ad));

    if (!ad)
        return NULL;
    ad->store_params = store_params;
    ad->verifier = advisor_verifier_start(s);
    if (!ad->verifier) {
        free(ad);
        return NULL;
    }
    return ad;
}

void adviser_finish(adviser *ad, int wait_ms)
{
    for (int waited = 0; ad->verifier && ad->n_pending > 0 && waited < wait_ms; waited += 10) {
        usleep(10 * 1000);
        adviser_poll(ad);
    }
    if (!ad->verifier)
        return;
    advisor_verifier_stop(ad->verifier);
    ad->verifier = NULL;
}

void adviser_free(adviser *ad)
{
    if (!ad)
        return;
    adviser_finish(ad, 0);
    for (int i = 0; i < MAX_PENDING; i++)
        free(ad->pending[i].database);
    for (size_t i = 0; i < ad->n_answers; i++) {
        advisor_result_free(ad->answers[i].r);
        free(ad->answers[i].database);
    }
    free(ad->answers);
    free(ad);
}
