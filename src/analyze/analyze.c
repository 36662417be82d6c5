/* analyze.c — the analysis thread: events off the queue → fingerprint → statistics, and every
 * flush interval a snapshot of what changed to the store's writer thread. */
#include "config.h"

#include "pgscope/analyze.h"
#include "pgscope/clock.h"
#include "pgscope/fingerprint.h"
#include "pgscope/hash.h"
#include "pgscope/log.h"
#include "pgscope/nplusone.h"
#include "pgscope/stats.h"
#include "pgscope/thread.h"
#include "pgscope/track.h"
#include "pgscope/wire.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAP_BUCKETS 4096     /* connections and tag sets are few; chains stay short */
#define MAX_TAG_ROWS 100000  /* distinct (shape, tag set) pairs kept; more are not counted */
#define MAX_SPANS 100000     /* statements of one Query string told apart */
#define MAX_PARAMS 64        /* parameters or literals of a statement the N+1 detector sees */
#define TICK_US 100000       /* how often idle units of work are examined */
#define TABLE_SLOTS 4096     /* remembered "single table" answers, by fingerprint */
#define FIX_CHECKS 16        /* N+1 fixes being checked on the server at once */
#define FIX_SQL 4            /* statements checked per fix: the child's own, then the fix's */
#define MAX_FOLDED_KEYS 8192 /* folded rows to remove, remembered between two batches */
#define MAX_TEMPS 64         /* temporary relations remembered per connection, the newest */

typedef struct conn_rec {
    store_connection_row row;
    /* The search_path in effect, for replaying its statements: SET LOCAL's until the
     * transaction ends, else SET's, else the startup packet's; NULL: the server's default. */
    char *path_startup, *path_session, *path_local;
    bool path_unknown; /* changed in a way not followed: its statements are not replayed */
    /* The relations it created temporary, oldest first: statements on them are not replayed
     * (another session cannot see them). Past MAX_TEMPS the oldest are forgotten; a replay
     * that then misses one is counted as not_visible instead. */
    char **temps; /* allocated at the first: most connections never make one */
    size_t n_temps, cap_temps;
    bool dirty;
    uint64_t closed_in; /* the batch that carried it after it closed; 0: none yet */
    struct conn_rec *next;
} conn_rec;

typedef struct tag_rec {
    store_tag_row row;
    uint64_t fingerprint;
    bool dirty;
    struct tag_rec *next;
} tag_rec;

/* Calls and time per shape and key: a sqlcommenter tag set, or a test. */
typedef struct tag_map {
    tag_rec *buckets[MAP_BUCKETS];
    size_t n;
} tag_map;

/* An N+1 fix on its way through plain EXPLAIN on a side connection: sql[0] is the child query
 * itself, the control (if the server cannot plan it there, it cannot judge the fix either). */
typedef struct fix_check {
    np1_finding *f; /* NULL: a free slot */
    uint32_t serial;
    int n, answered;
    char *sql[FIX_SQL];
    bool ok[FIX_SQL], no_connection[FIX_SQL];
    char why[FIX_SQL][200];
} fix_check;

/* What a shape's text tells, the same for every statement of the shape: found once per
 * fingerprint. */
typedef struct shape_info {
    uint64_t fp;
    char table[64]; /* the one table it reads, or "" */
    bool catalog;   /* it reads the system catalogs */
} shape_info;

struct analyzer {
    pthread_t thread;
    queue *q;
    store *st;
    analyze_settings settings;
    fp_cache *fp;
    stats_table *stats;
    np1_detector *np1;
    explainer *ex; /* NULL when EXPLAIN sampling is off or could not start */
    fix_check checks[FIX_CHECKS];
    uint32_t check_serial;
    int64_t last_tick_us;
    shape_info shapes[TABLE_SLOTS]; /* by fingerprint, see shape_facts */
    conn_rec *conns[MAP_BUCKETS];
    tag_map tags;  /* per shape and sqlcommenter tag set */
    tag_map tests; /* per shape and test */
    /* Statement rows already handed to the store whose shape was folded since the last batch:
     * the next batch removes them. At most MAX_FOLDED_KEYS; past that, the next batch carries
     * every row instead, which replaces the run's rows whole. */
    store_statement_key *folded;
    size_t n_folded, folded_cap;
    store_batch *pending; /* built, not yet taken by the store */
    uint64_t batches;     /* batches built; the pending one is number `batches` */
    uint64_t lost_seen;   /* the store's lost-write count when the last batch was taken */
    bool resend_all;      /* a batch was lost: the next one carries every row again */
    /* The split of the last multi-statement text: its statements arrive as one event each. */
    char *split_text;
    size_t split_len;
    fp_span *spans;
    int n_spans, spans_cap;
    uint64_t connections, statements, track_desyncs;
    int64_t last_flush_us;
    _Atomic bool stopping;
};

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* ---- connections ---- */

static conn_rec **conn_slot(analyzer *a, uint64_t id)
{
    conn_rec **p = &a->conns[id % MAP_BUCKETS];

    while (*p && (*p)->row.conn_id != id)
        p = &(*p)->next;
    return p;
}

static void forget_temps(conn_rec *c)
{
    for (size_t i = 0; i < c->n_temps; i++)
        free(c->temps[i]);
    free(c->temps);
    c->temps = NULL;
    c->n_temps = c->cap_temps = 0;
}

static void conn_free(conn_rec *c)
{
    forget_temps(c);
    free(c->path_startup);
    free(c->path_session);
    free(c->path_local);
    free(c->row.client_addr);
    free(c->row.user);
    free(c->row.database);
    free(c->row.application_name);
    free(c);
}

static void on_connect(analyzer *a, const track_event *ev)
{
    conn_rec **slot = conn_slot(a, ev->conn_id);
    conn_rec *c = *slot ? *slot : calloc(1, sizeof(*c));

    if (!c)
        return;
    if (!*slot) {
        *slot = c;
        a->connections++;
    }
    c->row.conn_id = ev->conn_id;
    free(c->row.client_addr);
    free(c->row.user);
    free(c->row.database);
    free(c->row.application_name);
    c->row.client_addr = dup_or_empty(ev->client_addr);
    c->row.user = dup_or_empty(ev->user);
    c->row.database = dup_or_empty(ev->database);
    c->row.application_name = dup_or_empty(ev->application_name);
    free(c->path_startup);
    c->path_startup = ev->search_path[0] ? strdup(ev->search_path) : NULL;
    c->row.start_us = ev->start_us;
    c->dirty = true;
}

static void on_disconnect(analyzer *a, const track_event *ev)
{
    conn_rec *c = *conn_slot(a, ev->conn_id);

    if (!c)
        return;
    c->row.end_us = ev->end_us;
    c->row.bytes_from_client = ev->bytes_from_client;
    c->row.bytes_from_server = ev->bytes_from_server;
    c->dirty = true;
}

/* Whether text[0..len) contains word, in any case. */
static bool strcasestr_n(const char *text, size_t len, const char *word)
{
    size_t n = strlen(word);

    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(text + i, word, n) == 0)
            return true;
    return false;
}

/* ---- sqlcommenter tags per shape ---- */

static void count_key(tag_map *m, uint64_t fp, const char *key, double us)
{
    uint64_t h = fp;

    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    tag_rec **p = &m->buckets[h % MAP_BUCKETS];
    while (*p && ((*p)->fingerprint != fp || strcmp((*p)->row.tags, key) != 0))
        p = &(*p)->next;
    if (!*p) {
        if (m->n >= MAX_TAG_ROWS || !(*p = calloc(1, sizeof(**p))))
            return;
        (*p)->fingerprint = fp;
        fp_hex(fp, (*p)->row.fingerprint);
        (*p)->row.tags = strdup(key);
        m->n++;
    }
    (*p)->row.calls++;
    (*p)->row.total_ms += us / 1000.0;
    (*p)->dirty = true;
}

/* The statement's test (its tag test, else its connection's application_name), counted.
 * Session settings (SET, RESET, SHOW) are not: the SET application_name that names a test runs
 * under the name before it, and an ORM sets up and asks about its session in whichever test
 * comes first, another one each run when tests run in random order. */
static void count_test(analyzer *a, const track_event *ev, uint64_t fp, const char *test, double us)
{
    if (strcmp(ev->command, "SET") == 0 || strcmp(ev->command, "RESET") == 0 ||
        strcmp(ev->command, "SHOW") == 0)
        return;
    if (test[0])
        count_key(&a->tests, fp, test, us);
}

static void free_keys(tag_map *m)
{
    for (int i = 0; i < MAP_BUCKETS; i++) {
        while (m->buckets[i]) {
            tag_rec *t = m->buckets[i];
            m->buckets[i] = t->next;
            free(t->row.tags);
            free(t);
        }
    }
}

/* ---- the cap on statement rows ---- */

static void forget_folded(analyzer *a)
{
    for (size_t i = 0; i < a->n_folded; i++) {
        free(a->folded[i].database);
        free(a->folded[i].user);
    }
    free(a->folded);
    a->folded = NULL;
    a->n_folded = a->folded_cap = 0;
}

static bool folded_reserve(analyzer *a)
{
    if (a->n_folded < a->folded_cap)
        return true;
    size_t cap = a->folded_cap ? a->folded_cap * 2 : 64;
    store_statement_key *keys = realloc(a->folded, cap * sizeof(*keys));
    if (!keys)
        return false;
    a->folded = keys;
    a->folded_cap = cap;
    return true;
}

/* A row folded into "other": if a batch carried it, the store has it, and the next batch removes
 * it (its figures are in "other" now). Too many to remember, or no memory for one: the next
 * batch carries every row, replacing the run's. */
static void on_fold(const stats_entry *e, void *arg)
{
    analyzer *a = arg;

    if (!e->taken || a->resend_all)
        return;
    if (a->n_folded == MAX_FOLDED_KEYS || !folded_reserve(a)) {
        forget_folded(a);
        a->resend_all = true;
        return;
    }
    store_statement_key *k = &a->folded[a->n_folded];
    fp_hex(e->fingerprint, k->fingerprint);
    k->database = strdup(e->database);
    k->user = strdup(e->user);
    if (!k->database || !k->user) {
        free(k->database);
        free(k->user);
        forget_folded(a);
        a->resend_all = true;
        return;
    }
    a->n_folded++;
}

/* ---- statements ---- */

/* Parameters as a JSON array of strings (binary values in their text form, see
 * wire_value_text; NULL as null). */
static char *params_json(const track_event *ev)
{
    json_t *arr = json_array();
    uint32_t pos = 0;
    const uint8_t *v;
    int32_t len;
    bool binary;

    for (int i = 0; arr && track_param_next(ev->params, ev->params_len, &pos, &v, &len, &binary);
         i++) {
        if (len < 0) {
            json_array_append_new(arr, json_null());
        } else if (binary) {
            uint32_t type = ev->param_types && i < ev->n_param_types ? ev->param_types[i] : 0;
            char *text = wire_value_text(type, v, (size_t)len, true);
            if (!text)
                break;
            json_array_append_new(arr, json_string(text)); /* NULL (not UTF-8): not appended */
            free(text);
        } else {
            json_array_append_new(arr, json_stringn((const char *)v, (size_t)len));
        }
    }
    char *out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return out;
}

static void keep_example(stats_entry *e, const track_event *ev, const char *text, size_t len)
{
    if (e->example_query)
        return;
    e->example_query = strndup(text, len);
    if (ev->params && ev->n_params > 0)
        e->example_params = params_json(ev);
}

/* Splits ev's text, reusing the last split when the text is the same (a Query of n statements
 * arrives as n events carrying the same text). */
static bool split(analyzer *a, const track_event *ev)
{
    if (a->split_text && a->split_len == ev->text_len &&
        memcmp(a->split_text, ev->text, ev->text_len) == 0)
        return true;
    int n = fp_split(ev->text, ev->text_len, a->spans, a->spans_cap);
    if (n > a->spans_cap && a->spans_cap < MAX_SPANS) {
        int cap = n < MAX_SPANS ? n : MAX_SPANS;
        fp_span *spans = realloc(a->spans, (size_t)cap * sizeof(*spans));
        if (!spans)
            return false;
        a->spans = spans;
        a->spans_cap = cap;
        n = fp_split(ev->text, ev->text_len, a->spans, a->spans_cap);
    }
    char *copy = realloc(a->split_text, ev->text_len ? ev->text_len : 1);
    if (!copy)
        return false;
    memcpy(copy, ev->text, ev->text_len);
    a->split_text = copy;
    a->split_len = ev->text_len;
    a->n_spans = n < a->spans_cap ? n : a->spans_cap;
    return true;
}

/* True when text cannot hold two statements: no ';' but maybe one closing it (most drivers'
 * single statements), which spares the lexer a pass. */
static bool single_statement(const char *text, size_t len)
{
    const char *semi = memchr(text, ';', len);

    if (!semi)
        return true;
    for (const char *p = semi + 1; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

/* The statement of ev's text that this event is about. */
static void statement_text(analyzer *a, const track_event *ev, const char **text, size_t *len)
{
    *text = ev->text;
    *len = ev->text_len;
    if (ev->via != TRACK_VIA_SIMPLE || single_statement(ev->text, ev->text_len) || !split(a, ev))
        return;
    if (ev->stmt_index < (uint32_t)a->n_spans) {
        *text = ev->text + a->spans[ev->stmt_index].offset;
        *len = a->spans[ev->stmt_index].len;
    }
}

/* ---- N+1 detection: what the detector needs of a statement ---- */

typedef struct {
    uint32_t hash[MAX_PARAMS];
    char *text[MAX_PARAMS];
    uint16_t n;
} param_list;

/* A value as the detector compares it: hashed in its text form, the form of the result columns
 * it is matched with (a binary int8 parameter and a text column both become "42"). */
static void add_param(param_list *p, const uint8_t *v, int32_t len, bool binary, uint32_t type)
{
    if (p->n == MAX_PARAMS)
        return;
    if (len < 0) {
        p->hash[p->n] = 0;
        p->text[p->n++] = strdup("NULL");
        return;
    }
    char *text = binary ? wire_value_text(type, v, (size_t)len, true)
                        : strndup((const char *)v, (size_t)len);
    p->hash[p->n] = text ? track_value_hash(text, strlen(text)) : track_value_hash(v, (size_t)len);
    p->text[p->n++] = text;
}

static void add_literal(const char *value, size_t len, void *arg)
{
    add_param(arg, (const uint8_t *)value, (int32_t)len, false, 0);
}

/* The statement's values: its bind parameters, then the literals inlined in its text, in the
 * order the normalized text numbers them ($1.. for the parameters, the literals after), so that
 * WHERE id = 17 LIMIT $1 compares like a fully bound or a fully inlined statement. */
static void collect_params(const track_event *ev, const char *text, size_t len, bool literals,
                           param_list *p)
{
    uint32_t pos = 0;
    const uint8_t *v;
    int32_t vlen;
    bool binary;

    p->n = 0;
    for (uint16_t i = 0; ev->via != TRACK_VIA_SIMPLE &&
                         track_param_next(ev->params, ev->params_len, &pos, &v, &vlen, &binary);
         i++)
        add_param(p, v, vlen, binary,
                  ev->param_types && i < ev->n_param_types ? ev->param_types[i] : 0);
    if (literals) /* else the values are its parameters alone: no need to read the text */
        fp_literals(text, len, add_literal, p);
}

/* The facts of fp's shape, from the cache or read from this statement's text. */
static const shape_info *shape_facts(analyzer *a, const fp_result *fp, const char *text, size_t len)
{
    shape_info *s = &a->shapes[hash_mix64(fp->id) % TABLE_SLOTS];

    if (s->fp != fp->id || fp->id == 0) {
        s->fp = fp->id;
        fp_single_table(text, len, s->table, sizeof(s->table));
        s->catalog = np1_is_catalog(fp->normalized);
    }
    return s;
}

static void detect(analyzer *a, const track_event *ev, const char *text, size_t len,
                   const fp_result *fp, const char *tags, const char *table, bool literals)
{
    np1_column cols[TRACK_SAMPLE_COLS];
    uint16_t ncols = ev->n_columns < TRACK_SAMPLE_COLS ? ev->n_columns : TRACK_SAMPLE_COLS;
    param_list params;

    for (uint16_t i = 0; ev->columns && i < ncols; i++) {
        cols[i].table_oid = ev->columns[i].table_oid;
        cols[i].attnum = ev->columns[i].attnum;
        memcpy(cols[i].name, ev->columns[i].name, sizeof(cols[i].name));
        cols[i].name[sizeof(cols[i].name) - 1] = '\0';
    }
    collect_params(ev, text, len, literals, &params);
    np1_stmt st = {
        .conn_id = ev->conn_id,
        .start_us = ev->start_us,
        .end_us = ev->end_us,
        .fingerprint = fp->id,
        .query = fp->normalized,
        .is_select = strcmp(ev->command, "SELECT") == 0,
        .is_insert = strcmp(ev->command, "INSERT") == 0,
        .rows_affected = ev->rows,
        .failed = ev->sqlstate[0] != '\0',
        .txn_status = ev->txn_status,
        .application_name = ev->application_name,
        .tags = tags,
        .database = ev->database,
        .user = ev->user,
        .ignored = memmem(text, len, "pgscope:ignore", 14) != NULL,
        .table = table,
        .params = params.hash,
        .param_text = (const char *const *)params.text,
        .n_params = params.n,
        .columns = ev->columns ? cols : NULL,
        .n_columns = ev->columns ? ncols : 0,
        .values = ev->values,
        .rows = ev->sample_rows,
    };
    np1_statement(a->np1, &st);
    for (uint16_t i = 0; i < params.n; i++)
        free(params.text[i]);
}

/* ---- the client's search_path, and EXPLAIN sampling ---- */

static const char *search_path_of(const conn_rec *c)
{
    if (!c)
        return NULL;
    return c->path_local ? c->path_local : c->path_session ? c->path_session : c->path_startup;
}

static void set_path(char **slot, const char *value)
{
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

/* Whether SET LOCAL's value ends with this statement. Status 'I' after a lone statement says
 * so; the statements of one multi-statement Query all carry the status after the last one, so
 * there the COMMIT and ROLLBACK tags tell. */
static bool ends_transaction(const track_event *ev, bool multi)
{
    if (strcmp(ev->command, "COMMIT") == 0 || strcmp(ev->command, "ROLLBACK") == 0)
        return true;
    return !multi && ev->txn_status == 'I';
}

/* Whether a statement that succeeded may have changed search_path: spares most statements the
 * parse. SET SCHEMA 'x' is SET search_path TO 'x'. */
static bool may_change_path(const track_event *ev, const char *text, size_t len)
{
    if (ev->sqlstate[0] != '\0')
        return false;
    if (strcmp(ev->command, "SET") == 0)
        return strcasestr_n(text, len, "search_path") || strcasestr_n(text, len, "schema");
    return strcmp(ev->command, "RESET") == 0 || strncmp(ev->command, "DISCARD", 7) == 0;
}

static void apply_path_change(conn_rec *c, explain_path_change change, const char *value,
                              bool lone_outside_transaction)
{
    switch (change) {
    case EXPLAIN_PATH_SET: /* also replaces a SET LOCAL of the same transaction */
        set_path(&c->path_session, value);
        set_path(&c->path_local, NULL);
        c->path_unknown = false;
        break;
    case EXPLAIN_PATH_SET_LOCAL: /* outside a transaction block the server ignores it */
        if (!lone_outside_transaction)
            set_path(&c->path_local, value);
        break;
    case EXPLAIN_PATH_RESET:
        set_path(&c->path_session, NULL);
        set_path(&c->path_local, NULL);
        c->path_unknown = false;
        break;
    case EXPLAIN_PATH_UNKNOWN:
        c->path_unknown = true;
        break;
    case EXPLAIN_PATH_NONE:
        break;
    }
}

/* Follows SET / RESET / DISCARD of search_path. Not followed (see doc/architecture.md): a SET
 * undone by a rollback, set_config() calls, a function's SET clause. */
static void follow_search_path(conn_rec *c, const track_event *ev, const char *text, size_t len)
{
    char value[1024];
    bool multi = ev->via == TRACK_VIA_SIMPLE && !single_statement(ev->text, ev->text_len);

    if (!c)
        return;
    if (may_change_path(ev, text, len)) {
        char *stmt = strndup(text, len);
        explain_path_change change =
            stmt ? explain_search_path_change(stmt, value, sizeof(value)) : EXPLAIN_PATH_UNKNOWN;
        free(stmt);
        apply_path_change(c, change, value, !multi && ev->txn_status == 'I');
    }
    if (ends_transaction(ev, multi))
        set_path(&c->path_local, NULL);
}

/* ---- the client's temporary relations ---- */

static void forget_temp(conn_rec *c, size_t i)
{
    free(c->temps[i]);
    memmove(&c->temps[i], &c->temps[i + 1], (c->n_temps - i - 1) * sizeof(c->temps[0]));
    c->n_temps--;
}

static void temp_changed(bool created, const char *name, void *arg)
{
    conn_rec *c = arg;

    for (size_t i = 0; i < c->n_temps; i++)
        if (strcmp(c->temps[i], name) == 0)
            forget_temp(c, i--);
    if (!created)
        return;
    if (c->n_temps == MAX_TEMPS)
        forget_temp(c, 0);
    if (c->n_temps == c->cap_temps) {
        size_t cap = c->cap_temps ? 2 * c->cap_temps : 4;
        char **grown = realloc(c->temps, cap * sizeof(*grown));
        if (!grown)
            return;
        c->temps = grown;
        c->cap_temps = cap;
    }
    char *copy = strdup(name);
    if (copy)
        c->temps[c->n_temps++] = copy;
}

/* Whether a statement that succeeded may create, drop or discard a temporary relation: spares
 * most statements the parse. SELECT INTO and CREATE TABLE AS are tagged SELECT. */
static bool may_change_temps(const conn_rec *c, const track_event *ev, const char *text, size_t len)
{
    if (ev->sqlstate[0] != '\0')
        return false;
    if (strncmp(ev->command, "DISCARD", 7) == 0)
        return true;
    if (strncmp(ev->command, "DROP ", 5) == 0)
        return c->n_temps > 0;
    if (strncmp(ev->command, "CREATE ", 7) != 0 && strcmp(ev->command, "SELECT") != 0)
        return false;
    return strcasestr_n(text, len, "temp"); /* TEMP, TEMPORARY, pg_temp */
}

/* Follows the temporary relations a connection creates. Not followed (see
 * doc/architecture.md): a creation rolled back, ON COMMIT DROP, one made inside a function. */
static void follow_temps(conn_rec *c, const track_event *ev, const char *text, size_t len)
{
    if (!c || !may_change_temps(c, ev, text, len))
        return;
    char *stmt = strndup(text, len);
    if (stmt && explain_temp_follow(stmt, temp_changed, c))
        forget_temps(c);
    free(stmt);
}

/* The p95 is worth its bucket walk only for statements slow enough for the p95 rule. */
static void sample(analyzer *a, const track_event *ev, const char *text, size_t len,
                   const fp_result *fp, const stats_entry *e, const conn_rec *c, double us,
                   const char *table, const char *test)
{
    explain_statement st = {
        .ev = ev,
        .text = text,
        .text_len = len,
        .fingerprint = fp->id,
        .normalized = fp->normalized,
        .search_path = search_path_of(c),
        .p95_ms = us >= 1000 ? stats_hist_quantile(&e->hist, 0.95) / 1000.0 : INFINITY,
        .calls = e->calls,
        .shape_total_ms = e->total_us / 1000.0,
        .table = table,
        .test = test,
        .fallback = fp->fallback,
        .path_unknown = !c || c->path_unknown, /* no connect event: its startup path unknown */
        .temps = c ? (const char *const *)c->temps : NULL,
        .n_temps = c ? c->n_temps : 0,
    };
    explainer_statement(a->ex, &st);
}

static void on_statement(analyzer *a, const track_event *ev)
{
    const char *text;
    size_t len;
    fp_result fp;
    char tags[512], test[256];
    double us = (double)(ev->end_us - ev->start_us);
    conn_rec *c = *conn_slot(a, ev->conn_id);

    a->statements++;
    if (c) {
        c->row.statements++;
        c->dirty = true;
    }
    statement_text(a, ev, &text, &len);
    fp_statement(a->fp, text, len, &fp);
    stats_entry *e = stats_table_get(a->stats, fp.id, ev->database, ev->user, fp.normalized,
                                     ev->command, fp.fallback);
    if (!e)
        return;
    stats_entry_add(e, us < 0 ? 0 : us, ev->rows, ev->sqlstate, ev->end_us);
    if (a->settings.store_params)
        keep_example(e, ev, text, len);
    if (fp_tags(text, len, tags, sizeof(tags)) > 0)
        count_key(&a->tags, fp.id, tags, us);
    const shape_info *shape = shape_facts(a, &fp, text, len);
    np1_test_of(ev->application_name, tags, test, sizeof(test));
    if (!shape->catalog)
        count_test(a, ev, fp.id, test, us);
    if (a->ex)
        sample(a, ev, text, len, &fp, e, c, us, shape->table, test);
    /* fp.normalized holds until the next call on the cache */
    detect(a, ev, text, len, &fp, tags, shape->table, fp.values);
    follow_search_path(c, ev, text, len);
    follow_temps(c, ev, text, len);
}

static void handle(analyzer *a, const track_event *ev)
{
    switch (ev->kind) {
    case TRACK_EV_CONNECT:
        on_connect(a, ev);
        break;
    case TRACK_EV_STATEMENT:
        on_statement(a, ev);
        break;
    case TRACK_EV_DISCONNECT:
        a->track_desyncs += ev->desyncs;
        on_disconnect(a, ev);
        np1_disconnect(a->np1, ev->conn_id);
        break;
    }
}

/* ---- snapshots for the store ---- */

typedef struct {
    store_batch *b;
    size_t cap;
    bool incomplete; /* a row could not be copied (out of memory) */
} batch_builder;

static void copy_statement(stats_entry *e, void *arg)
{
    batch_builder *bb = arg;
    store_batch *b = bb->b;

    if (b->n_statements == bb->cap) {
        size_t cap = bb->cap ? bb->cap * 2 : 64;
        store_statement_row *rows = realloc(b->statements, cap * sizeof(*rows));
        if (!rows) {
            bb->incomplete = true;
            return;
        }
        b->statements = rows;
        bb->cap = cap;
    }
    store_statement_row *r = &b->statements[b->n_statements++];
    memset(r, 0, sizeof(*r));
    if (e->other)
        snprintf(r->fingerprint, sizeof(r->fingerprint), "%s", STORE_OTHER_FINGERPRINT);
    else
        fp_hex(e->fingerprint, r->fingerprint);
    r->database = dup_or_empty(e->database);
    r->user = dup_or_empty(e->user);
    r->query = e->other ? NULL : dup_or_empty(e->query); /* "other" has no text of its own */
    r->command = e->other ? NULL : dup_or_empty(e->command);
    r->fallback = e->fallback;
    r->calls = (int64_t)e->calls;
    r->errors = (int64_t)e->errors;
    r->rows = (int64_t)e->rows;
    r->total_ms = e->total_us / 1000.0;
    r->min_ms = e->min_us / 1000.0;
    r->max_ms = e->max_us / 1000.0;
    r->mean_ms = e->mean_us / 1000.0;
    r->stddev_ms = stats_entry_stddev(e) / 1000.0;
    r->p50_ms = stats_hist_quantile_within(&e->hist, 0.50, e->min_us, e->max_us) / 1000.0;
    r->p95_ms = stats_hist_quantile_within(&e->hist, 0.95, e->min_us, e->max_us) / 1000.0;
    r->p99_ms = stats_hist_quantile_within(&e->hist, 0.99, e->min_us, e->max_us) / 1000.0;
    r->histogram_len = stats_hist_encode(&e->hist, NULL, 0);
    r->histogram = malloc(r->histogram_len ? r->histogram_len : 1);
    if (r->histogram)
        stats_hist_encode(&e->hist, r->histogram, r->histogram_len);
    else
        r->histogram_len = 0;
    r->first_us = e->first_us;
    r->last_us = e->last_us;
    r->example_query = e->example_query ? strdup(e->example_query) : NULL;
    r->example_params = e->example_params ? strdup(e->example_params) : NULL;
    for (int i = 0; i < e->n_errs; i++) {
        memcpy(r->errs[r->n_errs].sqlstate, e->errs[i].sqlstate, 6);
        r->errs[r->n_errs++].count = (int64_t)e->errs[i].count;
    }
    if (e->other_errors) {
        r->errs[r->n_errs].sqlstate[0] = '\0';
        r->errs[r->n_errs++].count = (int64_t)e->other_errors;
    }
}

static void copy_connections(analyzer *a, store_batch *b, bool all)
{
    size_t n = 0, cap = 0;

    for (int i = 0; i < MAP_BUCKETS; i++) {
        for (conn_rec *c = a->conns[i]; c; c = c->next) {
            if (!c->dirty && !all && !(c->row.end_us && !c->closed_in))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                store_connection_row *rows = realloc(b->connections, cap * sizeof(*rows));
                if (!rows)
                    return;
                b->connections = rows;
            }
            store_connection_row *r = &b->connections[n++];
            *r = c->row;
            r->client_addr = strdup(c->row.client_addr);
            r->user = strdup(c->row.user);
            r->database = strdup(c->row.database);
            r->application_name = strdup(c->row.application_name);
            b->n_connections = n;
            c->dirty = false;
            if (c->row.end_us)
                c->closed_in = a->batches + 1; /* the batch being built */
        }
    }
}

/* Batch `upto` and those before it are written: their closed connections can go. */
static void forget_closed(analyzer *a, uint64_t upto)
{
    for (int i = 0; i < MAP_BUCKETS; i++) {
        for (conn_rec **p = &a->conns[i]; *p;) {
            conn_rec *c = *p;
            if (c->closed_in && c->closed_in <= upto) {
                *p = c->next;
                conn_free(c);
            } else {
                p = &c->next;
            }
        }
    }
}

/* Batch `upto` and those before it are written: what they carried for the last time can go. */
static void forget_written(analyzer *a, uint64_t upto)
{
    forget_closed(a, upto);
    if (a->ex)
        explainer_written(a->ex, upto);
}

/* The rows of m changed since the last batch (all with all) into *rows. */
static void copy_keys(tag_map *m, store_tag_row **rows, size_t *n_rows, bool all)
{
    size_t n = 0, cap = 0;

    for (int i = 0; i < MAP_BUCKETS; i++) {
        for (tag_rec *t = m->buckets[i]; t; t = t->next) {
            if (!t->dirty && !all)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                store_tag_row *grown = realloc(*rows, cap * sizeof(*grown));
                if (!grown) {
                    *n_rows = n;
                    return;
                }
                *rows = grown;
            }
            (*rows)[n] = t->row;
            (*rows)[n++].tags = strdup(t->row.tags);
            t->dirty = false;
        }
    }
    *n_rows = n;
}

/* A JSON array of the examples: each is a JSON array of values, or a plain string. */
static char *examples_json(const np1_finding *f)
{
    json_t *arr = json_array();

    for (int i = 0; arr && i < f->n_examples; i++) {
        json_t *ex = json_loads(f->examples[i], JSON_DECODE_ANY, NULL);
        json_array_append_new(arr, ex ? ex : json_string(f->examples[i]));
    }
    char *out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return out;
}

typedef struct {
    store_batch *b;
    size_t cap;
} np1_builder;

static void copy_finding(np1_finding *f, void *arg)
{
    np1_builder *nb = arg;
    store_batch *b = nb->b;
    json_t *children = json_array();

    if (b->n_nplusone == nb->cap) {
        size_t cap = nb->cap ? nb->cap * 2 : 16;
        store_nplusone_row *rows = realloc(b->nplusone, cap * sizeof(*rows));
        if (!rows || !children) {
            json_decref(children);
            return;
        }
        b->nplusone = rows;
        nb->cap = cap;
    }
    store_nplusone_row *r = &b->nplusone[b->n_nplusone++];
    memset(r, 0, sizeof(*r));
    bool loop = f->kind == NP1_N_PLUS_ONE;
    snprintf(r->kind, sizeof(r->kind), "%s",
             loop                       ? "n_plus_one"
             : f->kind == NP1_DUPLICATE ? "duplicate"
                                        : "batch_insert");
    if (loop)
        fp_hex(f->parent_fp, r->parent_fingerprint);
    r->parent_query = loop ? dup_or_empty(f->parent_query) : NULL;
    r->chance = f->chance;
    snprintf(r->orm, sizeof(r->orm), "%s", f->orm);
    r->test = dup_or_empty(f->test);
    for (int i = 0; i < f->n_children; i++) {
        char hex[17];
        fp_hex(f->child_fp[i], hex);
        size_t n = strlen(r->child_fingerprints);
        snprintf(r->child_fingerprints + n, sizeof(r->child_fingerprints) - n, "%s%s", i ? "," : "",
                 hex);
        json_array_append_new(children, json_string(f->child_query[i] ? f->child_query[i] : ""));
    }
    r->child_queries = json_dumps(children, JSON_COMPACT);
    json_decref(children);
    r->confirmed = f->confirmed;
    r->linked_column = dup_or_empty(f->linked_column);
    r->occurrences = (int64_t)f->occurrences;
    r->max_n = (int64_t)f->max_n;
    r->total_n = (int64_t)f->total_n;
    r->total_ms = f->total_ms;
    r->saving_ms = f->saving_ms;
    r->examples = examples_json(f);
    snprintf(r->severity, sizeof(r->severity), "%s", f->severity);
    r->suggestion = dup_or_empty(f->suggestion);
    r->first_us = f->first_us;
    r->last_us = f->last_us;
}

static void add_unused_ignore(const char *entry, void *arg)
{
    json_array_append_new(arg, json_string(entry));
}

static char *unused_ignores_json(analyzer *a)
{
    json_t *arr = json_array();

    if (!arr)
        return NULL;
    np1_unused_ignores(a->np1, add_unused_ignore, arr);
    /* No allow-list: NULL (not recorded). One whose entries all matched: "[]". */
    char *out = a->settings.nplusone.n_ignore > 0 ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return out;
}

/* The statement rows to remove, and whether the batch replaces them all instead (then a lost
 * batch's removals are made good too). */
static void fill_removals(analyzer *a, store_batch *b, bool all, const batch_builder *bb)
{
    if (all) {
        forget_folded(a);
        b->statements_complete = !bb->incomplete;
        a->resend_all |= bb->incomplete;
        return;
    }
    b->folded = a->folded;
    b->n_folded = a->n_folded;
    a->folded = NULL;
    a->n_folded = a->folded_cap = 0;
}

static void fill_fold_counters(analyzer *a, store_run_counters *c)
{
    const stats_entry *other = stats_table_other(a->stats);

    c->max_shapes = a->settings.max_shapes;
    c->folded_shapes = stats_table_folded(a->stats);
    c->folded_calls = other ? other->calls : 0;
}

static store_batch *build_batch(analyzer *a, bool all, int64_t ended_us)
{
    store_batch *b = calloc(1, sizeof(*b));
    batch_builder bb = {b, 0, false};
    fp_counters fc;

    if (!b)
        return NULL;
    stats_table_take_dirty(a->stats, all, copy_statement, &bb);
    fill_removals(a, b, all, &bb);
    fill_fold_counters(a, &b->run);
    copy_connections(a, b, all);
    copy_keys(&a->tags, &b->tags, &b->n_tags, all);
    copy_keys(&a->tests, &b->tests, &b->n_tests, all);
    np1_builder nb = {b, 0};
    np1_take_dirty(a->np1, all, copy_finding, &nb);
    b->unused_ignores = unused_ignores_json(a);
    if (a->ex)
        explainer_fill_batch(a->ex, b, a->batches + 1, all);
    fp_get_counters(a->fp, &fc);
    b->run.ended_us = ended_us;
    b->run.connections = a->connections;
    b->run.statements = a->statements;
    b->run.events_dropped = queue_dropped(a->q);
    b->run.fingerprint_fallbacks = fc.fallbacks;
    b->run.fingerprint_parses = fc.parses;
    b->run.fingerprint_hits = fc.hits;
    b->run.track_desyncs = a->track_desyncs;
    return b;
}

/* A snapshot goes to the store only when it has taken the previous one: what changed in the
 * meantime stays marked and goes with the next, so memory stays bounded and nothing waits.
 * When the store takes a batch, the one before it is finished: if the lost-write count moved,
 * that one failed and the next batch carries every row again. */
static void flush(analyzer *a)
{
    if (!a->pending) {
        bool all = a->resend_all;
        a->resend_all = false; /* building may set it again */
        a->pending = build_batch(a, all, 0);
        a->batches++;
    }
    if (a->pending && store_submit(a->st, a->pending)) {
        a->pending = NULL;
        uint64_t lost = store_lost_writes(a->st);
        if (lost != a->lost_seen)
            a->resend_all = true;
        else
            forget_written(a, a->batches - 1);
        a->lost_seen = lost;
    }
    a->last_flush_us = clock_monotonic_us();
}

static size_t drain(analyzer *a)
{
    void *items[256];
    size_t n = queue_pop_many(a->q, items, 256);

    for (size_t i = 0; i < n; i++) {
        size_t bytes = track_event_bytes(items[i]);
        handle(a, items[i]);
        track_event_free(items[i]);
        queue_release(a->q, bytes);
    }
    return n;
}

/* ---- N+1 fixes checked on the server before they are shown ---- */

static void check_free(fix_check *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->sql[i]);
    memset(k, 0, sizeof(*k));
}

/* Hands a finding's fix to the side connections: its child query, then each statement. */
static void check_one(np1_finding *f, void *arg)
{
    analyzer *a = arg;
    fix_check *k = NULL;

    if (f->kind != NP1_N_PLUS_ONE || f->fix_check != 0 || !f->database)
        return;
    for (int i = 0; i < FIX_CHECKS && !k; i++)
        k = a->checks[i].f ? NULL : &a->checks[i];
    if (!k || !(k->sql[0] = strdup(f->child_query[0] ? f->child_query[0] : "")))
        return; /* all slots busy: again at the next tick */
    k->n = 1 + np1_fix_sql(f, k->sql + 1, FIX_SQL - 1);
    k->f = f;
    k->serial = ++a->check_serial & 0xffffff;
    for (int i = 0; i < k->n; i++) {
        if (!explainer_check(a->ex, (uint64_t)k->serial << 8 | (uint64_t)i, f->database, f->user,
                             k->sql[i])) {
            check_free(k); /* answers to what went are ignored; tried again later */
            return;
        }
    }
    f->fix_check = 1;
}

/* The server's answers: when all of a fix's are in, the statements it rejected (its child
 * query planned) are taken out of the fix, which says why. */
static void check_answers(analyzer *a)
{
    explainer_check_answer ans[16];
    size_t n;

    while ((n = explainer_check_answers(a->ex, ans, 16)) > 0) {
        for (size_t j = 0; j < n; j++) {
            uint32_t serial = (uint32_t)(ans[j].cookie >> 8);
            int i = (int)(ans[j].cookie & 0xff);
            for (int s = 0; s < FIX_CHECKS; s++) {
                fix_check *k = &a->checks[s];
                if (!k->f || k->serial != serial || i >= k->n)
                    continue;
                k->ok[i] = ans[j].ok;
                k->no_connection[i] = ans[j].no_connection;
                snprintf(k->why[i], sizeof(k->why[i]), "%s", ans[j].error);
                if (++k->answered < k->n)
                    break;
                for (int q = 1; k->ok[0] && q < k->n; q++)
                    if (!k->ok[q] && !k->no_connection[q])
                        np1_fix_rejected(a->np1, k->f, k->sql[q], k->why[q]);
                k->f->fix_check = 2;
                check_free(k);
                break;
            }
        }
    }
}

static bool checks_pending(const analyzer *a)
{
    for (int i = 0; i < FIX_CHECKS; i++)
        if (a->checks[i].f)
            return true;
    return false;
}

/* New fixes to check, and answers to take. */
static void check_fixes(analyzer *a)
{
    if (!a->ex)
        return;
    check_answers(a);
    np1_each(a->np1, check_one, a);
}

/* At the end of the run: the last fixes checked, waiting about as long as a replay may run. */
static void check_last_fixes(analyzer *a)
{
    const struct timespec nap = {0, 10 * 1000 * 1000};
    int wait_ms = a->settings.explain.side.statement_timeout_ms + 1000;

    check_fixes(a);
    for (int waited = 0; a->ex && checks_pending(a) && waited < wait_ms; waited += 10) {
        nanosleep(&nap, NULL);
        explainer_poll(a->ex, clock_wall_us());
        check_answers(a);
    }
}

static void *run(void *arg)
{
    analyzer *a = arg;
    /* Events wait in the queue while the thread naps: larger batches, fewer wake-ups. */
    const struct timespec nap = {0, 10 * 1000 * 1000};

    thread_background();
    while (!atomic_load(&a->stopping)) {
        if (drain(a) == 0)
            nanosleep(&nap, NULL); /* the producer never signals: no system call on its side */
        int64_t now = clock_wall_us();
        if (a->ex)
            explainer_poll(a->ex, now);
        if (now - a->last_tick_us >= TICK_US) {
            np1_tick(a->np1, now);
            check_fixes(a);
            a->last_tick_us = now;
        }
        if (clock_monotonic_us() - a->last_flush_us >= (int64_t)a->settings.flush_ms * 1000)
            flush(a);
    }
    while (drain(a) > 0)
        ;
    np1_tick(a->np1, INT64_MAX); /* the run is over: every unit of work is finished */
    check_last_fixes(a);
    return NULL;
}

analyzer *analyze_start(queue *q, store *st, const analyze_settings *s)
{
    analyzer *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->q = q;
    a->st = st;
    a->settings = *s;
    a->fp = fp_cache_new(s->fp_cache_entries);
    a->stats = stats_table_new();
    if (a->stats && !stats_table_limit(a->stats, s->max_shapes, on_fold, a)) {
        stats_table_free(a->stats);
        a->stats = NULL;
    }
    a->np1 = np1_new(&s->nplusone);
    if (s->explain_enabled && !(a->ex = explainer_start(&s->explain)))
        log_warning(NULL, "cannot start the EXPLAIN side connections: no plans will be sampled");
    a->last_flush_us = clock_monotonic_us();
    a->last_tick_us = clock_wall_us();
    atomic_init(&a->stopping, false);
    /* libpg_query recurses once per nesting level of a statement: a long left-deep expression
     * (1+1+1...) within max_query_text needs tens of MB of stack. Virtual until touched. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256u << 20);
    int started = a->fp && a->stats && a->np1 && pthread_create(&a->thread, &attr, run, a) == 0;
    pthread_attr_destroy(&attr);
    if (!started) {
        explainer_free(a->ex);
        fp_cache_free(a->fp);
        stats_table_free(a->stats);
        np1_free(a->np1);
        free(a);
        return NULL;
    }
    return a;
}

void analyze_stop(analyzer *a, int64_t ended_us)
{
    atomic_store(&a->stopping, true);
    pthread_join(a->thread, NULL);
    /* Samples in flight may still bring plans: wait for them about as long as one may run. */
    if (a->ex)
        explainer_finish(a->ex, a->settings.explain.side.statement_timeout_ms + 1000);
    /* The pending batch holds rows of connections already forgotten: it must be written. */
    const struct timespec wait = {0, 10 * 1000 * 1000};
    for (int i = 0; a->pending && i < 500; i++) {
        if (store_submit(a->st, a->pending))
            a->pending = NULL;
        else
            nanosleep(&wait, NULL);
    }
    if (a->pending) {
        log_warning(NULL, "the report database stayed busy: the last snapshot but one is lost");
        store_batch_free(a->pending);
    }
    store_close(a->st, build_batch(a, true, ended_us));
    for (int i = 0; i < FIX_CHECKS; i++)
        check_free(&a->checks[i]);
    for (int i = 0; i < MAP_BUCKETS; i++) {
        while (a->conns[i]) {
            conn_rec *c = a->conns[i];
            a->conns[i] = c->next;
            conn_free(c);
        }
    }
    free_keys(&a->tags);
    free_keys(&a->tests);
    fp_cache_free(a->fp);
    stats_table_free(a->stats);
    forget_folded(a);
    np1_free(a->np1);
    explainer_free(a->ex);
    free(a->split_text);
    free(a->spans);
    free(a);
}
