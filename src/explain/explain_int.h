/* explain_int.h — inside the explain module: index advice as the explainer drives it. */
#ifndef PGSCOPE_EXPLAIN_INT_H
#define PGSCOPE_EXPLAIN_INT_H

#include "pgscope/advisor.h"
#include "pgscope/explain.h"
#include "pgscope/store.h"

/* Who pgscope's own connections go to, and as whom. Any string may be NULL or "". */
typedef struct explain_conn_target {
    const char *dsn, *host, *port, *sslmode, *sslrootcert;
    const char *user, *database;
    const char *application_name; /* fallback_application_name */
    const char *connect_timeout;  /* a default the DSN may override */
} explain_conn_target;

/* The guard's deny list (guard.c): why calling a function of this name with nargs arguments
 * must not happen in a replay, NULL when nothing is known against it. Case is ignored. */
const char *explain_denied_function(const char *name, size_t nargs);

/* The plan check's names (calls.c): one more name of a kind ("" schema: not qualified); and
 * the mark of names that could not all be taken, which keeps the statement from ANALYZE. */
void explain_calls_add(explain_calls *c, explain_call_kind kind, const char *schema,
                       const char *name);
void explain_calls_fail(explain_calls *c);
bool explain_calls_failed(const explain_calls *c);

#define EXPLAIN_CONN_KEYWORDS 15 /* entries keys and vals need, the closing NULL included */

/* The keywords and values for PQconnectStartParams / PQconnectdbParams with expand_dbname 1. */
void explain_conn_keywords(const explain_conn_target *t, const char **keys, const char **vals);

/* Results waiting for the analysis thread, oldest first; guarded by the owner's lock. */
typedef struct explain_list {
    void **items;
    size_t n, cap;
} explain_list;

/* Appends item; false (the caller keeps it) when the list cannot grow. */
bool explain_list_push(explain_list *l, void *item);
/* The oldest item, taken out; NULL when empty. */
void *explain_list_pop(explain_list *l);
void explain_list_free(explain_list *l, void (*free_item)(void *));

typedef struct adviser adviser;

/* Starts the verifier thread; NULL when it cannot start. store_params: values may be logged. */
adviser *adviser_start(const advisor_settings *s, bool store_params);

/* Every completed statement: the time of shapes with advice, the writes to each table. */
void adviser_statement(adviser *ad, const explain_statement *st);

/* A statement whose plan was sampled: its candidate indexes go to the verifier. The strings
 * are copied. */
typedef struct advice_request {
    uint64_t fingerprint;
    const char *database, *user, *search_path, *query;
    int n_params;
    char *const *params;
    const unsigned int *param_types; /* as explain_job's; NULL: text, types left to the server */
    const int *param_lengths;
    const int *param_formats;
    bool misestimate; /* its plan had a row estimate 10x off */
    double weight_ms; /* its shape's total time (this database and user) when it ran */
    bool extended;    /* it came by the extended protocol: its text is the application's own,
                       * values (if any) bound apart */
} advice_request;
void adviser_sampled(adviser *ad, const advice_request *req);

/* Takes the verifier's answers. Never waits. */
void adviser_poll(adviser *ad);

/* Puts the current suggestions in b when there is something new (always with force). */
void adviser_fill_batch(adviser *ad, store_batch *b, bool force);

/* Waits up to wait_ms for verifications in flight, then stops the verifier. */
void adviser_finish(adviser *ad, int wait_ms);

void adviser_free(adviser *ad);

#endif
