/* track.c — per-connection protocol state: requests matched with responses become events. */

/*
 * The server answers requests strictly in order, so every request the client sends goes into a
 * FIFO and every response is matched with the request at its head. A request takes effect
 * (a statement is prepared, a portal bound or closed) when its response arrives, not when it is
 * sent: that is when the server applied it, and a pipelined Bind may follow a Parse that fails.
 *
 * Completed statements wait for the next ReadyForQuery, which tells their transaction status.
 *
 * When track cannot follow (a malformed body, a response that does not fit the head), it counts
 * a desync and ignores responses until the next ReadyForQuery, which answers the first Sync,
 * Query or FunctionCall in the queue: everything up to it is dropped and matching resumes with
 * the requests behind it. When the queue is full, requests are forgotten into a marker entry
 * that counts the ReadyForQuery messages they will cause, so matching resumes exactly after
 * them.
 *
 * Result sampling (the proof of N+1 loops): the columns of a result come from RowDescription.
 * A simple Query sends one before each result; in the extended protocol it answers a Describe,
 * so the description is remembered on the portal or statement described, a portal bound from a
 * described statement inherits the statement's (with the Bind's result formats), and an Execute
 * uses its portal's. The first DataRows of each statement are captured and hashed into one
 * per-connection sample, which the statement's event copies. Once the sample is full, DataRows
 * are only counted: a result of a million rows costs nothing after its first rows.
 */
#include "config.h"

#include "pgscope/track.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sizes ---- */

/* PostgreSQL keys prepared statements and portals in hash tables with NAMEDATALEN (64) byte keys,
 * so only the first 63 bytes of a name tell two objects apart. We key them the same way. */
#define NAME_SIGNIFICANT 63
#define NAME_SIZE (NAME_SIGNIFICANT + 1)

/* Capture room for names in front of what follows them (text, parameters, max rows). Longer
 * names are legal: they only leave less of the text or parameters in the capture. */
#define NAME_ROOM 256

#define ERROR_CAPTURE 256        /* severity and SQLSTATE come first in an ErrorResponse */
#define TAG_CAPTURE 64           /* CommandComplete tags are short */
#define PARAM_STATUS_CAPTURE 128 /* "application_name\0", a value of at most 63 bytes, "\0" */
#define SMALL_CAPTURE (1 + NAME_ROOM + 4)    /* Describe, Close: kind, name; Execute: name, rows */
#define FUNCTION_CAPTURE 4                   /* FunctionCall: the function's oid */
#define BIND_HEADER_ROOM (2 * NAME_ROOM + 4) /* Bind: two names and two counts */
#define TYPES_ROOM (2 + 4 * TRACK_MAX_TYPES) /* Parse, ParameterDescription: parameter types */
/* Raw Bind bytes captured per byte of encoded parameters kept: a raw value carries a 4-byte
 * length and maybe a 2-byte format where the encoding spends 1 or 2 bytes. */
#define BIND_RAW_PER_KEPT 3

#define REQ_LOST 'L' /* queue entry standing for requests forgotten on overflow */

/* RowDescription and DataRow bytes captured: what the proxy's server-side sink holds. A
 * description of TRACK_SAMPLE_COLS columns with names of up to 63 bytes fits in it. */
#define ROW_CAPTURE 4096

/* Sampled values that events waiting for their ReadyForQuery may hold in all: a pipeline or a
 * multi-statement Query of many large results sends the oldest out early instead. */
#define HELD_SAMPLE_VALUES (4u * TRACK_SAMPLE_VALUES)

/* First room for values in a connection's sample; it doubles up to TRACK_SAMPLE_VALUES. */
#define SAMPLE_FIRST_VALUES 64

/* ---- shared statement text ---- */

/* Text of a Query or of a prepared statement, shared by the statement, its portals and the
 * requests that wait for them. One connection is one thread: a plain count is enough. */
typedef struct shared_text {
    uint32_t refs;
    uint32_t len;
    bool truncated;
    bool types_cut; /* Parse: its parameter types were not all kept */
    uint16_t n_types;
    uint32_t *types; /* Parse: its parameter type OIDs (see track_event.param_types); or NULL */
    char text[];     /* len bytes and a NUL */
} shared_text;

static shared_text *text_new(const char *s, uint32_t len, bool truncated)
{
    shared_text *t = malloc(sizeof(*t) + (size_t)len + 1);

    if (!t)
        return NULL;
    t->refs = 1;
    t->len = len;
    t->truncated = truncated;
    t->types_cut = false;
    t->n_types = 0;
    t->types = NULL;
    if (len > 0)
        memcpy(t->text, s, len);
    t->text[len] = '\0';
    return t;
}

static shared_text *text_retain(shared_text *t)
{
    if (t)
        t->refs++;
    return t;
}

static void text_release(shared_text *t)
{
    if (t && --t->refs == 0) {
        free(t->types);
        free(t);
    }
}

/* Keeps a statement's parameter type OIDs (n of them, big-endian at p) on its text; when they
 * cannot all be kept, marks them cut instead: a partial list would bind values differently. */
static void text_set_types(shared_text *t, const uint8_t *p, uint32_t n, bool cut)
{
    free(t->types);
    t->types = NULL;
    t->n_types = 0;
    t->types_cut = cut || n > TRACK_MAX_TYPES;
    if (t->types_cut || n == 0 || !(t->types = malloc((size_t)n * sizeof(uint32_t)))) {
        t->types_cut |= n > 0; /* out of memory: unknown, not "none declared" */
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        t->types[i] = wire_get_u32(p + 4u * i);
    t->n_types = (uint16_t)n;
}

/* ---- result descriptions ---- */

/* The columns of a statement's or portal's result, shared like texts: a portal bound from a
 * described statement points to the statement's. */
typedef struct shared_desc {
    uint32_t refs;
    uint16_t n_columns; /* as described */
    uint16_t n_kept;    /* min(n_columns, TRACK_SAMPLE_COLS) */
    track_column cols[];
} shared_desc;

static shared_desc *desc_new(const track_column *cols, uint16_t n_columns, uint16_t n_kept)
{
    shared_desc *d = malloc(sizeof(*d) + (size_t)n_kept * sizeof(track_column));

    if (!d)
        return NULL;
    d->refs = 1;
    d->n_columns = n_columns;
    d->n_kept = n_kept;
    if (n_kept > 0)
        memcpy(d->cols, cols, (size_t)n_kept * sizeof(track_column));
    return d;
}

static shared_desc *desc_retain(shared_desc *d)
{
    if (d)
        d->refs++;
    return d;
}

static void desc_release(shared_desc *d)
{
    if (d && --d->refs == 0)
        free(d);
}

static void desc_set(shared_desc **slot, shared_desc *d)
{
    desc_release(*slot);
    *slot = d;
}

/* ---- bind parameters ---- */

typedef struct {
    uint8_t *data; /* encoded as track_param_next reads it; NULL when nothing was kept */
    uint32_t len;
    uint16_t count; /* parameters the Bind carried */
    bool truncated;
    bool cut; /* a kept value was cut to max_param */
} param_set;

static void params_clear(param_set *p)
{
    free(p->data);
    memset(p, 0, sizeof(*p));
}

/* ---- named objects: prepared statements and portals ---- */

typedef struct named {
    struct named *chain;         /* next in its hash bucket */
    struct named *newer, *older; /* recency list, for evicting the least recently used */
    uint32_t hash;
    char name[NAME_SIZE];
    shared_text *text; /* the statement's text; NULL when unknown */
    shared_desc *desc; /* its result's columns; NULL when unknown or none */
    param_set params;  /* portals only */
} named;

typedef struct {
    named **buckets;
    uint32_t nbuckets; /* a power of two; 0 until the first insert */
    uint32_t count;
    uint32_t max;
    named *newest, *oldest;
} name_table;

static void named_free(named *n)
{
    text_release(n->text);
    desc_release(n->desc);
    params_clear(&n->params);
    free(n);
}

/* FNV-1a: names are short and the table is private, so a simple hash is enough. */
static uint32_t name_hash(const char *name)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static named *nt_find(const name_table *t, const char *name)
{
    if (t->nbuckets == 0)
        return NULL;
    uint32_t h = name_hash(name);
    for (named *n = t->buckets[h & (t->nbuckets - 1)]; n; n = n->chain)
        if (n->hash == h && strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static void nt_unlink_recency(name_table *t, named *n)
{
    if (n->newer)
        n->newer->older = n->older;
    else
        t->newest = n->older;
    if (n->older)
        n->older->newer = n->newer;
    else
        t->oldest = n->newer;
    n->newer = n->older = NULL;
}

static void nt_link_newest(name_table *t, named *n)
{
    n->older = t->newest;
    n->newer = NULL;
    if (t->newest)
        t->newest->newer = n;
    t->newest = n;
    if (!t->oldest)
        t->oldest = n;
}

static void nt_touch(name_table *t, named *n)
{
    if (t->newest == n)
        return;
    nt_unlink_recency(t, n);
    nt_link_newest(t, n);
}

static void nt_remove(name_table *t, named *n)
{
    named **pp = &t->buckets[n->hash & (t->nbuckets - 1)];

    while (*pp != n)
        pp = &(*pp)->chain;
    *pp = n->chain;
    nt_unlink_recency(t, n);
    t->count--;
    named_free(n);
}

static bool nt_grow(name_table *t)
{
    uint32_t nb = t->nbuckets ? t->nbuckets * 2 : 16;
    named **b = calloc(nb, sizeof(*b));

    if (!b)
        return t->nbuckets > 0; /* a full table still works, only with longer chains */
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        named *n = t->buckets[i];
        while (n) {
            named *next = n->chain;
            n->chain = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return true;
}

/* The object with this name, newly made (empty) when there was none; the least recently used
 * one is forgotten to make room. NULL when the table keeps nothing or memory ran out. */
static named *nt_put(name_table *t, const char *name)
{
    named *n = nt_find(t, name);

    if (n) {
        nt_touch(t, n);
        return n;
    }
    if (t->max == 0)
        return NULL;
    if (t->count >= t->max)
        nt_remove(t, t->oldest);
    if (t->count >= t->nbuckets && t->nbuckets < (1u << 20) && !nt_grow(t))
        return NULL;
    n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->hash = name_hash(name);
    n->chain = t->buckets[n->hash & (t->nbuckets - 1)];
    t->buckets[n->hash & (t->nbuckets - 1)] = n;
    nt_link_newest(t, n);
    t->count++;
    return n;
}

static void nt_clear(name_table *t)
{
    while (t->oldest)
        nt_remove(t, t->oldest);
}

static void nt_free(name_table *t)
{
    nt_clear(t);
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
}

/* ---- requests awaiting their responses ---- */

typedef struct {
    int64_t sent_us;
    uint32_t copy_mark;   /* client CopyDone/CopyFail messages seen when it was sent */
    uint32_t counter;     /* Query: statements done; FunctionCall: oid; lost: ReadyForQuery due */
    char kind;            /* message type, or REQ_LOST */
    char target;          /* Describe, Close: 'S' statement or 'P' portal */
    bool bad;             /* stands for a malformed message: no effect, no event */
    bool done;            /* Query, FunctionCall: an error or the result ended it */
    bool open;            /* lost: more requests are being forgotten into it */
    bool stmt_unknown;    /* Bind: the statement name was not captured */
    char name[NAME_SIZE]; /* Parse: statement; Bind, Execute: portal; Describe, Close */
    char stmt_name[NAME_SIZE]; /* Bind */
    shared_text *text;         /* Query, Parse */
    param_set params;          /* Bind */
    uint32_t result_binary;    /* Bind: bit i set when result column i is asked in binary */
} req;

typedef struct {
    req *items;
    uint32_t cap; /* a power of two */
    uint32_t head, count;
} req_queue;

typedef struct {
    track_event **items;
    uint32_t cap; /* a power of two */
    uint32_t head, count;
} event_ring;

/* The result sample of the statement whose response is passing. The columns and the values
 * share one block, allocated when first needed and kept until the connection is idle: room for
 * `cols_room` columns (as many as results had, at most TRACK_SAMPLE_COLS), then for `room`
 * values (at most TRACK_SAMPLE_VALUES). Sized by need, not for the widest result: most results
 * have a few columns, and a thousand connections each holding 32 would cost 2.5 MB. */
typedef enum {
    SMP_UNDECIDED, /* the first DataRow will tell (from the Execute's portal) */
    SMP_ON,        /* DataRows are captured and hashed */
    SMP_OFF,       /* DataRows are only counted */
} sample_state;

typedef struct {
    track_column *cols; /* the block; NULL until first needed */
    uint32_t *values;   /* rows x width hashes, row-major, inside the block */
    uint32_t room;
    uint16_t cols_room;
    uint32_t used;      /* values filled */
    uint32_t rows;      /* rows sampled */
    uint16_t n_columns; /* as described */
    uint16_t width;     /* min(n_columns, TRACK_SAMPLE_COLS) */
    bool described;     /* the statement's columns are known */
    sample_state state;
} sample;

struct track_conn {
    uint64_t id;
    track_limits lim;
    track_emit_fn emit;
    void *arg;
    int64_t now;
    int64_t last_done;  /* when the latest statement or ReadyForQuery passed */
    uint64_t rows_seen; /* DataRows since then */
    char *user, *database, *app, *addr;
    char *search_path; /* from the StartupMessage; NULL when it set none */

    uint32_t want_query, want_parse, want_bind;
    uint8_t *scratch; /* a Bind's parameters encoded: grown as binds need, to max_params */
    uint32_t scratch_size;

    req_queue q;
    event_ring held; /* completed statements waiting for the ReadyForQuery status */
    name_table stmts, portals;
    shared_text *unnamed_stmt;
    shared_desc *unnamed_stmt_desc;
    named unnamed_portal; /* only its text, desc and params are used */
    sample smp;
    uint32_t held_values; /* sampled values in the held events */

    uint32_t copy_ends;  /* client CopyDone/CopyFail messages seen */
    bool client_in_copy; /* the server reads COPY data from the client: it ignores Sync */
    bool skip_to_sync;   /* an extended-protocol error: the server skips all up to Sync */
    bool desynced;       /* lost track: ignore responses until the next ReadyForQuery */
    bool dead;           /* the connection ended (FATAL error or disconnect) */
    bool disconnected;
    track_counters counters;
};

static void req_clear(req *r)
{
    text_release(r->text);
    r->text = NULL;
    params_clear(&r->params);
}

static req *q_at(const req_queue *q, uint32_t i)
{
    return &q->items[(q->head + i) & (q->cap - 1)];
}

static req *q_head(track_conn *c)
{
    return c->q.count ? q_at(&c->q, 0) : NULL;
}

static req *q_tail(track_conn *c)
{
    return c->q.count ? q_at(&c->q, c->q.count - 1) : NULL;
}

static bool q_grow(req_queue *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 2; /* most connections have one request in flight */
    req *items = malloc((size_t)cap * sizeof(*items));

    if (!items)
        return false;
    for (uint32_t i = 0; i < q->count; i++)
        items[i] = *q_at(q, i);
    free(q->items);
    q->items = items;
    q->cap = cap;
    q->head = 0;
    return true;
}

/* Appends r (taking its resources). The queue holds max_pending requests and one lost marker. */
static bool q_push(track_conn *c, req *r)
{
    req_queue *q = &c->q;

    if (q->count > c->lim.max_pending)
        return false;
    if (q->count == q->cap && !q_grow(q))
        return false;
    *q_at(q, q->count) = *r;
    q->count++;
    memset(r, 0, sizeof(*r));
    return true;
}

static void q_pop(track_conn *c)
{
    req_clear(q_head(c));
    c->q.head = (c->q.head + 1) & (c->q.cap - 1);
    c->q.count--;
}

static void q_remove_at(track_conn *c, uint32_t i)
{
    req_clear(q_at(&c->q, i));
    for (; i + 1 < c->q.count; i++)
        *q_at(&c->q, i) = *q_at(&c->q, i + 1);
    c->q.count--;
}

static void q_clear(track_conn *c)
{
    while (c->q.count)
        q_pop(c);
}

/* Requests the server answers with ReadyForQuery. */
static bool answers_with_ready(char kind)
{
    return kind == 'S' || kind == 'Q' || kind == 'F';
}

/* ---- events ---- */

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static char *copy_out(char **p, const char *s, size_t len)
{
    char *start = *p;

    if (len > 0)
        memcpy(start, s, len);
    start[len] = '\0';
    *p += len + 1;
    return start;
}

_Static_assert(sizeof(track_event) % _Alignof(track_column) == 0 &&
                   sizeof(track_column) % _Alignof(uint32_t) == 0,
               "an event's columns and values follow it unpadded");

/* One allocation holds the event and everything it points to: track_event_free is one free.
 * Layout: the event, the sampled columns, the sampled values, the parameter types, the
 * parameters, then the strings (text, user, database, application_name, client_addr), each with
 * its NUL. The columns, values and types come first for their alignment (the event's size is a
 * multiple of 8, a column's of 4). */
static track_event *event_new(track_conn *c, track_ev_kind kind, const shared_text *t,
                              const param_set *ps, const sample *smp)
{
    const char *text = t ? t->text : NULL;
    uint32_t text_len = t ? t->len : 0;
    size_t ntypes = t && t->types ? t->n_types : 0;
    const char *strs[5] = {or_empty(c->user), or_empty(c->database), or_empty(c->app),
                           or_empty(c->addr),
                           kind == TRACK_EV_CONNECT ? or_empty(c->search_path) : ""};
    size_t lens[5];
    uint32_t plen = ps ? ps->len : 0;
    size_t ncols = smp && smp->described ? smp->width : 0;
    size_t nvals = ncols > 0 ? smp->used : 0;
    size_t total = sizeof(track_event) + ncols * sizeof(track_column) +
                   (nvals + ntypes) * sizeof(uint32_t) + (size_t)text_len + 1 + plen;

    for (int i = 0; i < 5; i++) {
        lens[i] = strlen(strs[i]);
        total += lens[i] + 1;
    }
    track_event *ev = calloc(1, total);
    if (!ev)
        return NULL;
    char *p = (char *)(ev + 1);
    if (ncols > 0) {
        ev->columns = (track_column *)(void *)p;
        memcpy(p, smp->cols, ncols * sizeof(track_column));
        ev->n_columns = smp->n_columns;
        p += ncols * sizeof(track_column);
    }
    if (nvals > 0) {
        ev->values = (uint32_t *)(void *)p;
        memcpy(p, smp->values, nvals * sizeof(uint32_t));
        ev->sample_rows = smp->rows;
        p += nvals * sizeof(uint32_t);
    }
    if (ntypes > 0) {
        ev->param_types = (uint32_t *)(void *)p;
        memcpy(p, t->types, ntypes * sizeof(uint32_t));
        ev->n_param_types = (uint16_t)ntypes;
        p += ntypes * sizeof(uint32_t);
    }
    ev->param_types_cut = t && t->types_cut;
    ev->text = copy_out(&p, text, text_len);
    ev->text_len = text_len;
    ev->user = copy_out(&p, strs[0], lens[0]);
    ev->database = copy_out(&p, strs[1], lens[1]);
    ev->application_name = copy_out(&p, strs[2], lens[2]);
    ev->client_addr = copy_out(&p, strs[3], lens[3]);
    ev->search_path = copy_out(&p, strs[4], lens[4]);
    if (plen > 0) {
        ev->params = (uint8_t *)p;
        memcpy(p, ps->data, plen);
        ev->params_len = plen;
    }
    if (ps) {
        ev->n_params = ps->count;
        ev->params_truncated = ps->truncated;
        ev->params_cut = ps->cut;
    }
    ev->kind = kind;
    ev->conn_id = c->id;
    ev->start_us = ev->end_us = c->now;
    ev->rows = -1;
    return ev;
}

void track_event_free(track_event *ev)
{
    free(ev);
}

static void emit_event(track_conn *c, track_event *ev)
{
    if (c->emit)
        c->emit(ev, c->arg);
    else
        track_event_free(ev);
}

static bool held_grow(event_ring *h)
{
    uint32_t cap = h->cap ? h->cap * 2 : 8;
    track_event **items = malloc((size_t)cap * sizeof(*items));

    if (!items)
        return false;
    for (uint32_t i = 0; i < h->count; i++)
        items[i] = h->items[(h->head + i) & (h->cap - 1)];
    free(h->items);
    h->items = items;
    h->cap = cap;
    h->head = 0;
    return true;
}

/* Sampled values an event holds. */
static uint32_t event_values(const track_event *ev)
{
    uint32_t width = ev->n_columns < TRACK_SAMPLE_COLS ? ev->n_columns : TRACK_SAMPLE_COLS;

    return ev->sample_rows * width;
}

static track_event *held_pop(track_conn *c)
{
    event_ring *h = &c->held;
    track_event *ev = h->items[h->head];

    h->head = (h->head + 1) & (h->cap - 1);
    h->count--;
    c->held_values -= event_values(ev);
    return ev;
}

/* Keeps a completed statement until the next ReadyForQuery tells its transaction status; when
 * too many wait, or they hold too many sampled values, the oldest go out without it. */
static void hold_event(track_conn *c, track_event *ev)
{
    event_ring *h = &c->held;
    uint32_t values = event_values(ev);

    if (h->count > 0 && h->count >= c->lim.max_pending)
        emit_event(c, held_pop(c));
    while (h->count > 0 && c->held_values + values > HELD_SAMPLE_VALUES)
        emit_event(c, held_pop(c));
    if (h->count >= c->lim.max_pending || (h->count == h->cap && !held_grow(h))) {
        emit_event(c, ev);
        return;
    }
    h->items[(h->head + h->count) & (h->cap - 1)] = ev;
    h->count++;
    c->held_values += values;
}

static void flush_held(track_conn *c, char txn_status)
{
    while (c->held.count) {
        track_event *ev = held_pop(c);
        ev->txn_status = txn_status;
        emit_event(c, ev);
    }
}

/* A statement event running from the later of the request's sending and the previous
 * completion, to now; the next request's clock starts now. With_sample: it carries the
 * connection's result sample. */
static track_event *statement_event(track_conn *c, const req *r, char via, const shared_text *t,
                                    const param_set *ps, bool with_sample)
{
    int64_t start = r->sent_us > c->last_done ? r->sent_us : c->last_done;
    track_event *ev = event_new(c, TRACK_EV_STATEMENT, t, ps, with_sample ? &c->smp : NULL);

    c->last_done = c->now;
    if (!ev)
        return NULL;
    ev->via = via;
    ev->text_truncated = t->truncated;
    ev->start_us = start;
    return ev;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

static int64_t parse_count(const char *s, size_t n)
{
    int64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        if (v > (INT64_MAX - 9) / 10)
            return INT64_MAX;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "INSERT 0 3" -> command "INSERT", rows 3; "CREATE TABLE" -> "CREATE TABLE", -1. */
static void apply_tag(track_event *ev, const char *tag, size_t len, bool cut)
{
    size_t end = len;

    ev->rows = -1;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && tag[start - 1] != ' ')
            start--;
        if (start == 0 || !all_digits(tag + start, end - start))
            break;
        if (ev->rows < 0 && !cut)
            ev->rows = parse_count(tag + start, end - start);
        end = start - 1;
    }
    while (end > 0 && tag[end - 1] == ' ')
        end--;
    if (end >= sizeof(ev->command))
        end = sizeof(ev->command) - 1;
    memcpy(ev->command, tag, end);
    ev->command[end] = '\0';
}

/* ---- reading captured bodies ---- */

typedef enum {
    RD_OK,  /* read */
    RD_CUT, /* the body goes on past what was captured */
    RD_BAD, /* the body is malformed */
} rd_status;

typedef struct {
    const uint8_t *p;
    uint32_t pos, captured, body_len; /* pos <= captured <= body_len */
} reader;

static rd_status rd_need(const reader *r, uint32_t n)
{
    if (n > r->body_len - r->pos)
        return RD_BAD;
    if (n > r->captured - r->pos)
        return RD_CUT;
    return RD_OK;
}

static rd_status rd_u8(reader *r, uint8_t *v)
{
    rd_status st = rd_need(r, 1);

    if (st == RD_OK)
        *v = r->p[r->pos++];
    return st;
}

static rd_status rd_u16(reader *r, uint16_t *v)
{
    rd_status st = rd_need(r, 2);

    if (st == RD_OK) {
        *v = (uint16_t)(r->p[r->pos] << 8 | r->p[r->pos + 1]);
        r->pos += 2;
    }
    return st;
}

static rd_status rd_u32(reader *r, uint32_t *v)
{
    rd_status st = rd_need(r, 4);

    if (st == RD_OK) {
        *v = wire_get_u32(r->p + r->pos);
        r->pos += 4;
    }
    return st;
}

static rd_status rd_skip(reader *r, uint32_t n)
{
    rd_status st = rd_need(r, n);

    if (st == RD_OK)
        r->pos += n;
    return st;
}

/* A NUL-terminated string. When it runs past the capture, *s and *len give what was captured. */
static rd_status rd_str(reader *r, const char **s, uint32_t *len)
{
    uint32_t avail = r->captured - r->pos;
    const uint8_t *start = avail ? r->p + r->pos : NULL;
    const uint8_t *nul = avail ? memchr(start, '\0', avail) : NULL;

    if (!nul) {
        *s = (const char *)start;
        *len = avail;
        return r->captured == r->body_len ? RD_BAD : RD_CUT;
    }
    *s = (const char *)start;
    *len = (uint32_t)(nul - start);
    r->pos += *len + 1;
    return RD_OK;
}

/* The whole body has been read: nothing may follow. */
static rd_status rd_end(const reader *r)
{
    return r->pos == r->body_len ? RD_OK : RD_BAD;
}

static void name_copy(char *dst, const char *s, uint32_t len)
{
    if (len > NAME_SIGNIFICANT)
        len = NAME_SIGNIFICANT;
    if (len > 0)
        memcpy(dst, s, len);
    dst[len] = '\0';
}

/* ---- result sample ---- */

static uint64_t rotl64(uint64_t v, unsigned r)
{
    return v << r | v >> (64 - r);
}

static uint64_t hash_word(uint64_t h, uint64_t k)
{
    return rotl64(h ^ (k * 0x9e3779b97f4a7c15ULL), 31) * 0xbf58476d1ce4e5b9ULL;
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t load32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Eight bytes a step: result values are hashed on the forwarding thread, so this is what
 * sampling costs per value. The number of bytes hashed is mixed in first; with it known, the
 * last bytes can be read with overlapping fixed-size loads (no byte loop, no variable memcpy)
 * and still every byte counts exactly once in what tells two values apart. The hash is only
 * compared within one process, so the native byte order is fine. */
uint32_t track_value_hash(const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    size_t n = len < TRACK_HASH_PREFIX ? len : TRACK_HASH_PREFIX;
    uint64_t h = 0xcbf29ce484222325ULL ^ n;

    if (n >= 8) {
        const uint8_t *last = p + n - 8;
        for (; p < last; p += 8)
            h = hash_word(h, load64(p));
        h = hash_word(h, load64(last)); /* overlaps the previous word when n % 8 != 0 */
    } else if (n >= 4) {
        h = hash_word(h, load32(p) | load32(p + n - 4) << 32);
    } else if (n > 0) {
        h = hash_word(h, (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16);
    }
    /* MurmurHash3's finaliser spreads every input bit over the 32 bits kept */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    uint32_t v = (uint32_t)(h ^ (h >> 32));
    return v ? v : 1; /* 0 stands for NULL */
}

/* Room for `cols` columns and `need` values, allocating the block at the first call; values
 * already sampled are kept. False when memory ran out (or more than the cap was asked for). */
static bool sample_room(sample *s, uint16_t cols, uint32_t need)
{
    if (s->cols && cols <= s->cols_room && need <= s->room)
        return true;
    if (need > TRACK_SAMPLE_VALUES || cols > TRACK_SAMPLE_COLS)
        return false;
    uint16_t old_cols = s->cols_room;
    if (cols < old_cols)
        cols = old_cols;
    uint32_t room = s->room ? s->room : SAMPLE_FIRST_VALUES;
    while (room < need)
        room *= 2;
    if (room > TRACK_SAMPLE_VALUES)
        room = TRACK_SAMPLE_VALUES;
    track_column *block =
        realloc(s->cols, (size_t)cols * sizeof(track_column) + (size_t)room * sizeof(uint32_t));
    if (!block)
        return false;
    if (cols != old_cols && s->used > 0) /* the values move up behind the new columns */
        memmove(block + cols, block + old_cols, (size_t)s->used * sizeof(uint32_t));
    s->cols = block;
    s->values = (uint32_t *)(void *)(block + cols);
    s->cols_room = cols;
    s->room = room;
    return true;
}

/* A new statement's response begins: nothing described, nothing sampled. The block stays. */
static void sample_reset(sample *s)
{
    s->used = 0;
    s->rows = 0;
    s->n_columns = 0;
    s->width = 0;
    s->described = false;
    s->state = SMP_UNDECIDED;
}

/* The statement's columns are in s->cols: its DataRows are sampled if they have any. */
static void sample_described(sample *s, uint16_t n_columns)
{
    s->n_columns = n_columns;
    s->width = n_columns < TRACK_SAMPLE_COLS ? n_columns : TRACK_SAMPLE_COLS;
    s->described = true;
    s->state = s->width > 0 ? SMP_ON : SMP_OFF;
}

/* The statement's columns are those of a remembered description. */
static void sample_use_desc(sample *s, const shared_desc *d)
{
    if (!sample_room(s, d->n_kept, 0)) {
        s->state = SMP_OFF;
        return;
    }
    if (d->n_kept > 0)
        memcpy(s->cols, d->cols, (size_t)d->n_kept * sizeof(track_column));
    sample_described(s, d->n_columns);
}

/* One field of a RowDescription: name, table oid, column number, type oid, type length and
 * modifier, format. Col NULL: only checked. */
static rd_status read_field(reader *r, track_column *col)
{
    const char *name;
    uint32_t name_len, table = 0, type = 0;
    uint16_t attnum = 0, format = 0;
    rd_status st = rd_str(r, &name, &name_len);

    if (st == RD_OK)
        st = rd_u32(r, &table);
    if (st == RD_OK)
        st = rd_u16(r, &attnum);
    if (st == RD_OK)
        st = rd_u32(r, &type);
    if (st == RD_OK)
        st = rd_skip(r, 2 + 4); /* type length and modifier */
    if (st == RD_OK)
        st = rd_u16(r, &format);
    if (st != RD_OK || !col)
        return st;
    name_copy(col->name, name, name_len);
    col->table_oid = table;
    col->attnum = (int16_t)attnum;
    col->type_oid = type;
    col->format = (int16_t)format;
    return RD_OK;
}

/* A RowDescription into the sample's columns (when it has its block). Kept columns the capture
 * cut off stay zeroed: table oid 0, no name, text format. */
static rd_status read_row_description(sample *s, reader *r)
{
    uint16_t n;
    rd_status st = rd_u16(r, &n);

    if (st != RD_OK)
        return st;
    if (n > INT16_MAX)
        return RD_BAD; /* the count is an Int16: negative */
    uint16_t width = n < TRACK_SAMPLE_COLS ? n : TRACK_SAMPLE_COLS;
    bool room = sample_room(s, width, 0);
    if (!room)
        s->state = SMP_OFF; /* out of memory: the description is only checked */
    else if (width > 0)
        memset(s->cols, 0, (size_t)width * sizeof(track_column));
    for (uint16_t i = 0; i < n && st == RD_OK; i++)
        st = read_field(r, room && i < width ? &s->cols[i] : NULL);
    if (st == RD_OK)
        st = rd_end(r);
    if (st != RD_BAD && room)
        sample_described(s, n);
    return st;
}

/* The hash kept for a DataRow field whose length was just read. 0 for NULL, and for a value the
 * capture cut before TRACK_HASH_PREFIX of its bytes: hashing part of it would make a hash no
 * parameter can have, so it is kept as matching nothing. A value with that many bytes captured
 * hashes as if whole, since only that many count. */
static uint32_t field_hash(const reader *r, int32_t len)
{
    uint32_t avail = r->captured - r->pos;

    if (len < 0)
        return 0;
    if ((uint32_t)len <= avail)
        return track_value_hash(r->p + r->pos, (uint32_t)len);
    if (avail >= TRACK_HASH_PREFIX)
        return track_value_hash(r->p + r->pos, avail);
    return 0;
}

/* A binary int2, int4, int8 or oid field hashed in its text form, as the N+1 detector hashes
 * parameters (asyncpg and pgx ask for binary results and bind binary ints of another width):
 * "42" whatever the encoding. Any other field, or one not captured whole: its bytes' hash. */
static uint32_t binary_field_hash(const reader *r, int32_t len, uint32_t type)
{
    const uint8_t *b = r->p + r->pos;
    char text[24];
    int64_t v;

    if (len < 0 || (uint32_t)len > r->captured - r->pos)
        return field_hash(r, len);
    if ((type == 21 && len == 2) || ((type == 23 || type == 26) && len == 4) ||
        (type == 20 && len == 8)) {
        uint64_t u = 0;
        for (int32_t i = 0; i < len; i++)
            u = u << 8 | b[i];
        v = len == 2   ? (int16_t)u
            : len == 4 ? (type == 26 ? (int64_t)(uint32_t)u : (int32_t)u)
                       : (int64_t)u;
        int n = snprintf(text, sizeof text, "%lld", (long long)v);
        return track_value_hash(text, (size_t)n);
    }
    return field_hash(r, len);
}

/* A DataRow of the statement being sampled: a column count, then per column a length (-1 for
 * NULL) and that many bytes. Fields past the capture are kept as 0. False when malformed (a
 * count that differs from the description included): the row is then not kept. */
static bool sample_row(sample *s, reader *r)
{
    uint16_t n, i;
    rd_status st = rd_u16(r, &n);

    if (st == RD_CUT)
        return true; /* nothing captured to go by */
    if (st == RD_BAD || n != s->n_columns)
        return false;
    if (!sample_room(s, 0, s->used + s->width)) {
        s->state = SMP_OFF;
        return true;
    }
    uint32_t *row = s->values + s->used;
    for (i = 0; i < n && st == RD_OK; i++) {
        uint32_t raw, h = 0;
        st = rd_u32(r, &raw);
        if (st == RD_OK) {
            int32_t len = (int32_t)raw;
            if (len < -1)
                return false;
            h = i < s->width && s->cols[i].format == 1
                    ? binary_field_hash(r, len, s->cols[i].type_oid)
                    : field_hash(r, len);
            st = rd_skip(r, len < 0 ? 0 : (uint32_t)len);
        }
        if (i < s->width)
            row[i] = h;
    }
    if (st == RD_OK)
        st = rd_end(r);
    if (st == RD_BAD)
        return false;
    for (; i < s->width; i++)
        row[i] = 0;
    s->used += s->width;
    s->rows++;
    if (s->rows >= TRACK_SAMPLE_ROWS || s->used + s->width > TRACK_SAMPLE_VALUES)
        s->state = SMP_OFF; /* full: from here on DataRows are only counted */
    return true;
}

/* ---- connection state ---- */

static void desync(track_conn *c)
{
    c->counters.desyncs++;
    c->desynced = true;
    c->smp.state = SMP_OFF;
}

/* A statement's response begins (or the previous one ended). */
static void statement_start(track_conn *c)
{
    c->rows_seen = 0;
    sample_reset(&c->smp);
}

static void forget_unnamed_portal(track_conn *c)
{
    text_release(c->unnamed_portal.text);
    c->unnamed_portal.text = NULL;
    desc_set(&c->unnamed_portal.desc, NULL);
    params_clear(&c->unnamed_portal.params);
}

static void forget_unnamed_stmt(track_conn *c)
{
    text_release(c->unnamed_stmt);
    c->unnamed_stmt = NULL;
    desc_set(&c->unnamed_stmt_desc, NULL);
}

/* The statement text a Bind of this name refers to, or NULL; *desc (if asked) gets its result
 * description, or NULL. */
static shared_text *stmt_text(track_conn *c, const char *name, shared_desc **desc)
{
    if (name[0] == '\0') {
        if (desc)
            *desc = c->unnamed_stmt_desc;
        return c->unnamed_stmt;
    }
    named *n = nt_find(&c->stmts, name);
    if (desc)
        *desc = n ? n->desc : NULL;
    if (!n)
        return NULL;
    nt_touch(&c->stmts, n);
    return n->text;
}

static named *portal_find(track_conn *c, const char *name)
{
    return name[0] == '\0' ? &c->unnamed_portal : nt_find(&c->portals, name);
}

/* ParseComplete: the statement exists now, replacing any of the same name. */
static void commit_parse(track_conn *c, req *r)
{
    if (r->bad)
        return;
    if (r->name[0] == '\0') {
        forget_unnamed_stmt(c);
        c->unnamed_stmt = text_retain(r->text);
        return;
    }
    named *n = nt_put(&c->stmts, r->name);
    if (n) {
        text_release(n->text);
        n->text = text_retain(r->text);
        desc_set(&n->desc, NULL); /* a new statement: its result is not described yet */
    }
}

/* A statement's description for a portal bound from it. A statement's RowDescription gives no
 * formats (they are chosen at Bind): the Bind's result formats are applied to a copy. */
static shared_desc *desc_for_portal(shared_desc *d, uint32_t result_binary)
{
    if (!d || result_binary == 0)
        return desc_retain(d);
    shared_desc *copy = desc_new(d->cols, d->n_columns, d->n_kept);
    if (!copy)
        return NULL;
    for (uint16_t i = 0; i < copy->n_kept; i++)
        copy->cols[i].format = (int16_t)((result_binary >> i) & 1);
    return copy;
}

/* BindComplete: the portal exists now, with the statement's text and the Bind's parameters. */
static void commit_bind(track_conn *c, req *r)
{
    if (r->bad)
        return;
    shared_desc *d = NULL;
    shared_text *t = r->stmt_unknown ? NULL : stmt_text(c, r->stmt_name, &d);
    named *p = r->name[0] == '\0' ? &c->unnamed_portal : nt_put(&c->portals, r->name);
    if (!p)
        return;
    text_release(p->text);
    p->text = text_retain(t);
    desc_set(&p->desc, desc_for_portal(d, r->result_binary));
    params_clear(&p->params);
    p->params = r->params;
    memset(&r->params, 0, sizeof(r->params));
}

/* CloseComplete. */
static void commit_close(track_conn *c, req *r)
{
    if (r->bad)
        return;
    if (r->target == 'S') {
        named *n = r->name[0] ? nt_find(&c->stmts, r->name) : NULL;
        if (n)
            nt_remove(&c->stmts, n);
        else if (r->name[0] == '\0')
            forget_unnamed_stmt(c);
        return;
    }
    named *p = r->name[0] ? nt_find(&c->portals, r->name) : NULL;
    if (p)
        nt_remove(&c->portals, p);
    else if (r->name[0] == '\0')
        forget_unnamed_portal(c);
}

/* Where the description a Describe request answers goes; NULL when that object is unknown. */
static shared_desc **describe_slot(track_conn *c, const req *r)
{
    if (r->bad)
        return NULL;
    if (r->target == 'S') {
        if (r->name[0] == '\0')
            return &c->unnamed_stmt_desc;
        named *n = nt_find(&c->stmts, r->name);
        return n ? &n->desc : NULL;
    }
    named *p = portal_find(c, r->name);
    return p ? &p->desc : NULL;
}

static bool desc_matches(const shared_desc *d, const sample *s)
{
    return d && d->n_columns == s->n_columns &&
           memcmp(d->cols, s->cols, (size_t)d->n_kept * sizeof(track_column)) == 0;
}

/* RowDescription (the sample's columns, just read) or NoData (described false) answering a
 * Describe: remembered on the statement or portal. Clients that describe the same portal for
 * every execution (libpq does) mostly find the description it already has from its statement. */
static void commit_describe(track_conn *c, const req *r, bool described)
{
    shared_desc **slot = describe_slot(c, r);

    if (!slot)
        return;
    if (!described) {
        desc_set(slot, NULL);
        return;
    }
    if (desc_matches(*slot, &c->smp))
        return;
    desc_set(slot, desc_new(c->smp.cols, c->smp.n_columns, c->smp.width));
}

/* ParameterDescription: the types the server gives the described statement's parameters,
 * those it inferred included. They replace the declared ones, which they agree with. */
static void commit_param_types(track_conn *c, const req *r, reader *rd)
{
    shared_text *t = NULL;
    const uint8_t *types = NULL;
    uint16_t n = 0;
    rd_status st = rd_u16(rd, &n);

    if (r->bad)
        return;
    if (r->name[0] == '\0')
        t = c->unnamed_stmt;
    else {
        named *s = nt_find(&c->stmts, r->name);
        t = s ? s->text : NULL;
    }
    if (!t || st != RD_OK)
        return;
    types = rd->p + rd->pos;
    if (rd_skip(rd, 4u * n) == RD_OK)
        text_set_types(t, types, n, false);
}

/* Portals do not outlive their transaction: at an idle ReadyForQuery all of them are gone. */
static void forget_portals(track_conn *c)
{
    forget_unnamed_portal(c);
    nt_clear(&c->portals);
}

/* Effects of a request whose response we cannot see: prepared statements matter for the rest of
 * the session, so assume the Parse or Close succeeded. */
static void apply_blindly(track_conn *c, req *r)
{
    if (r->kind == 'P')
        commit_parse(c, r);
    else if (r->kind == 'C')
        commit_close(c, r);
}

/* The queue is full: forget the request, but count the ReadyForQuery messages it will cause so
 * that matching resumes exactly after them. */
static void lose_request(track_conn *c, req *r)
{
    req *tail = q_tail(c);

    c->counters.pending_overflow++;
    apply_blindly(c, r);
    if (!tail || tail->kind != REQ_LOST) {
        req lost = {.kind = REQ_LOST, .sent_us = c->now};
        if (!q_push(c, &lost)) {
            /* out of memory: nothing can be matched any more until things settle */
            req_clear(r);
            q_clear(c);
            desync(c);
            return;
        }
        tail = q_tail(c);
    }
    tail->open = true;
    if (answers_with_ready(r->kind)) {
        /* the server answers what comes next only after this: matching may resume there */
        tail->counter++;
        tail->open = false;
    }
    req_clear(r);
}

static void enqueue(track_conn *c, req *r)
{
    req *tail = q_tail(c);

    if (c->skip_to_sync && c->q.count == 0 && r->kind != 'S') {
        req_clear(r); /* the server skips it: it follows an error before the Sync */
        return;
    }
    if ((tail && tail->kind == REQ_LOST && tail->open) || c->q.count >= c->lim.max_pending ||
        !q_push(c, r))
        lose_request(c, r);
}

static req new_req(track_conn *c, char kind)
{
    req r;

    memset(&r, 0, sizeof(r));
    r.kind = kind;
    r.sent_us = c->now;
    r.copy_mark = c->copy_ends;
    return r;
}

/* A message the server will reject: keep its place in the queue, without effect or event. */
static void enqueue_malformed(track_conn *c, req *r)
{
    req_clear(r);
    r->bad = true;
    desync(c);
    enqueue(c, r);
}

static shared_text *capped_text(track_conn *c, const char *s, uint32_t len, bool cut)
{
    bool truncated = cut;

    if (len > c->lim.max_text) {
        len = c->lim.max_text;
        truncated = true;
    }
    return text_new(s, len, truncated);
}

/* ---- client messages ---- */

static void on_query(track_conn *c, reader *r)
{
    req q = new_req(c, 'Q');
    const char *s;
    uint32_t len;
    rd_status st = rd_str(r, &s, &len);

    if (st == RD_BAD || (st == RD_OK && rd_end(r) != RD_OK)) {
        enqueue_malformed(c, &q);
        return;
    }
    q.text = capped_text(c, s, len, st == RD_CUT);
    enqueue(c, &q);
}

/* Parameter type oids after the text: *n of them at *at, or RD_CUT when not all captured. */
static rd_status read_parse_types(reader *r, const uint8_t **at, uint16_t *n)
{
    rd_status st = rd_u16(r, n);

    *at = r->p + r->pos;
    if (st == RD_OK)
        st = rd_skip(r, 4u * *n);
    return st == RD_OK ? rd_end(r) : st;
}

static void on_parse(track_conn *c, reader *r)
{
    req p = new_req(c, 'P');
    const char *s;
    uint32_t len;
    rd_status st = rd_str(r, &s, &len);

    if (st == RD_BAD) {
        enqueue_malformed(c, &p);
        return;
    }
    name_copy(p.name, s, len);
    if (st == RD_OK) {
        const uint8_t *types = NULL;
        uint16_t n_types = 0;
        rd_status tst = RD_CUT;
        st = rd_str(r, &s, &len);
        if (st == RD_OK)
            tst = read_parse_types(r, &types, &n_types);
        if (st == RD_BAD || tst == RD_BAD) {
            enqueue_malformed(c, &p);
            return;
        }
        p.text = capped_text(c, s, len, st == RD_CUT);
        if (p.text)
            text_set_types(p.text, types, n_types, tst != RD_OK);
    }
    enqueue(c, &p); /* with a name longer than the capture the text stays unknown */
}

/* Encodes one value: varint v (0: NULL; else ((len << 1) | binary) + 1), then len bytes.
 * Returns false when it does not fit in what is left of the budget. */
static bool encode_param(uint8_t *buf, uint32_t budget, uint32_t *pos, const uint8_t *value,
                         int32_t len, bool binary)
{
    uint64_t v = len < 0 ? 0 : (((uint64_t)len << 1) | (binary ? 1u : 0u)) + 1;
    uint8_t head[10];
    uint32_t n = 0;

    do {
        head[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            head[n] |= 0x80;
        n++;
    } while (v);
    uint32_t body = len < 0 ? 0 : (uint32_t)len;
    if ((uint64_t)n + body > budget - *pos)
        return false;
    memcpy(buf + *pos, head, n);
    if (body > 0)
        memcpy(buf + *pos + n, value, body);
    *pos += n + body;
    return true;
}

/* Room for need bytes of encoded parameters. The buffer grows as binds need it, up to
 * max_params, so that a connection that binds little (or never) holds little. */
static bool scratch_room(track_conn *c, uint64_t need)
{
    if (need > c->lim.max_params)
        need = c->lim.max_params; /* encode_param then finds no room, as it should */
    if (need <= c->scratch_size)
        return true;
    uint64_t size = c->scratch_size ? c->scratch_size : 256;
    while (size < need)
        size *= 2;
    if (size > c->lim.max_params)
        size = c->lim.max_params;
    uint8_t *p = realloc(c->scratch, (size_t)size);
    if (!p)
        return false;
    c->scratch = p;
    c->scratch_size = (uint32_t)size;
    return true;
}

typedef struct {
    uint32_t fmt_pos; /* where the format codes start in the body */
    uint16_t nfmt;
    uint32_t used; /* encoded bytes so far */
    uint32_t kept; /* values encoded */
    bool keeping;  /* still encoding: nothing was left out yet */
    bool cut;      /* a kept value was cut to max_param */
} bind_walk;

static bool param_is_binary(const reader *r, const bind_walk *w, uint16_t i)
{
    if (w->nfmt == 0)
        return false;
    uint16_t k = w->nfmt == 1 ? 0 : i;
    if (k >= w->nfmt)
        return false;
    const uint8_t *f = r->p + w->fmt_pos + 2u * k;
    return (f[0] << 8 | f[1]) != 0;
}

/* One value of a Bind: kept whole or cut to max_param if its kept part was captured. */
static rd_status read_bind_value(track_conn *c, reader *r, bind_walk *w, uint16_t i)
{
    uint32_t raw;
    rd_status st = rd_u32(r, &raw);

    if (st != RD_OK)
        return st;
    int32_t len = (int32_t)raw;
    if (len < -1)
        return RD_BAD;
    uint32_t body = len < 0 ? 0 : (uint32_t)len;
    st = rd_need(r, body);
    if (st == RD_BAD)
        return RD_BAD;
    uint32_t keep = body < c->lim.max_param ? body : c->lim.max_param;
    if (w->keeping) {
        if (keep <= r->captured - r->pos && scratch_room(c, (uint64_t)w->used + 10 + keep) &&
            encode_param(c->scratch, c->scratch_size, &w->used, r->p + r->pos,
                         len < 0 ? -1 : (int32_t)keep, param_is_binary(r, w, i))) {
            w->kept++;
            w->cut |= keep < body;
        } else
            w->keeping = false; /* later values are left out too: the list stays in order */
    }
    if (st == RD_OK)
        r->pos += body;
    return st;
}

/* The result format codes that end a Bind, as a bit per column (of the first 32): none means
 * all text, one applies to every column. Left 0 when they were not captured. */
static rd_status read_result_formats(reader *r, uint32_t *binary)
{
    uint16_t n, code;
    uint32_t mask = 0;
    rd_status st = rd_u16(r, &n);

    for (uint16_t i = 0; i < n && st == RD_OK; i++) {
        st = rd_u16(r, &code);
        if (st == RD_OK && code != 0)
            mask |= n == 1 ? UINT32_MAX : i < 32 ? 1u << i : 0;
    }
    if (st == RD_OK)
        st = rd_end(r);
    if (st == RD_OK)
        *binary = mask;
    return st;
}

/* Formats, values and result formats of a Bind, after the two names. */
static rd_status read_bind_params(track_conn *c, reader *r, param_set *out, uint32_t *result_binary)
{
    bind_walk w = {.keeping = c->lim.max_params > 0};
    uint16_t n;
    rd_status st = rd_u16(r, &w.nfmt);

    w.fmt_pos = r->pos;
    if (st == RD_OK)
        st = rd_skip(r, 2u * w.nfmt);
    if (st == RD_OK)
        st = rd_u16(r, &n);
    if (st != RD_OK) {
        out->truncated = true;
        return st;
    }
    out->count = n;
    for (uint16_t i = 0; i < n && st == RD_OK; i++)
        st = read_bind_value(c, r, &w, i);
    if (st == RD_OK)
        st = read_result_formats(r, result_binary);
    if (st == RD_BAD)
        return RD_BAD;
    out->truncated = w.kept < out->count;
    out->cut = w.cut;
    if (w.used > 0) {
        out->data = malloc(w.used);
        if (out->data) {
            memcpy(out->data, c->scratch, w.used);
            out->len = w.used;
        } else {
            out->truncated = true;
        }
    }
    return RD_OK;
}

static void on_bind(track_conn *c, reader *r)
{
    req b = new_req(c, 'B');
    const char *s;
    uint32_t len;
    rd_status st = rd_str(r, &s, &len);

    if (st != RD_BAD) {
        name_copy(b.name, s, len);
        b.stmt_unknown = st == RD_CUT;
    }
    if (st == RD_OK) {
        st = rd_str(r, &s, &len);
        if (st != RD_BAD)
            name_copy(b.stmt_name, s, len);
        /* a cut name is still the right key if its significant bytes were captured */
        b.stmt_unknown = st == RD_CUT && len < NAME_SIGNIFICANT;
    }
    if (st == RD_OK)
        st = read_bind_params(c, r, &b.params, &b.result_binary);
    else if (st == RD_CUT)
        b.params.truncated = true;
    if (st == RD_BAD) {
        enqueue_malformed(c, &b);
        return;
    }
    enqueue(c, &b);
}

/* Describe and Close: 'S' or 'P', then a name. */
static void on_describe_or_close(track_conn *c, uint8_t type, reader *r)
{
    req d = new_req(c, (char)type);
    const char *s;
    uint32_t len;
    uint8_t target = 0;
    rd_status st = rd_u8(r, &target);

    if (st == RD_OK && (target == 'S' || target == 'P'))
        st = rd_str(r, &s, &len);
    else
        st = RD_BAD;
    if (st == RD_OK)
        st = rd_end(r);
    if (st == RD_BAD) {
        enqueue_malformed(c, &d);
        return;
    }
    d.target = (char)target;
    name_copy(d.name, s, len);
    enqueue(c, &d);
}

static void on_execute(track_conn *c, reader *r)
{
    req e = new_req(c, 'E');
    const char *s;
    uint32_t len, max_rows;
    rd_status st = rd_str(r, &s, &len);

    if (st != RD_BAD)
        name_copy(e.name, s, len);
    if (st == RD_OK)
        st = rd_u32(r, &max_rows);
    if (st == RD_OK)
        st = rd_end(r);
    if (st == RD_BAD) {
        enqueue_malformed(c, &e);
        return;
    }
    enqueue(c, &e);
}

static void on_sync(track_conn *c, reader *r)
{
    req s = new_req(c, 'S');

    if (c->client_in_copy)
        return; /* the server ignores Sync while it reads COPY data */
    if (r->body_len != 0) {
        enqueue_malformed(c, &s);
        return;
    }
    enqueue(c, &s);
}

static void on_function_call(track_conn *c, reader *r)
{
    req f = new_req(c, 'F');

    if (rd_u32(r, &f.counter) != RD_OK) {
        enqueue_malformed(c, &f);
        return;
    }
    enqueue(c, &f);
}

static void on_client_message(track_conn *c, uint8_t type, reader *r)
{
    switch (type) {
    case 'Q':
        on_query(c, r);
        break;
    case 'P':
        on_parse(c, r);
        break;
    case 'B':
        on_bind(c, r);
        break;
    case 'D':
    case 'C':
        on_describe_or_close(c, type, r);
        break;
    case 'E':
        on_execute(c, r);
        break;
    case 'S':
        on_sync(c, r);
        break;
    case 'F':
        on_function_call(c, r);
        break;
    case 'c': /* CopyDone */
    case 'f': /* CopyFail */
        c->copy_ends++;
        c->client_in_copy = false;
        break;
    default:
        break;
    }
}

/* ---- server messages ---- */

/* The head request is finished. Only statements and ReadyForQuery move last_done: Parse, Bind
 * and Describe answers arrive in the same packet as the Execute's, and would leave it no time. */
static void finish_head(track_conn *c)
{
    q_pop(c);
    statement_start(c);
}

/* One statement of a Query ended (tag NULL: with an error or an empty query). A statement that
 * failed after some rows carries the sample of those rows: the client may have used them. */
static void complete_query_statement(track_conn *c, req *q, const char *tag, uint32_t tag_len,
                                     bool tag_cut, const char *sqlstate)
{
    track_event *ev = q->text ? statement_event(c, q, TRACK_VIA_SIMPLE, q->text, NULL, true) : NULL;

    c->last_done = c->now;
    statement_start(c);
    if (ev) {
        ev->stmt_index = q->counter;
        if (tag)
            apply_tag(ev, tag, tag_len, tag_cut);
        if (sqlstate)
            snprintf(ev->sqlstate, sizeof(ev->sqlstate), "%s", sqlstate);
        hold_event(c, ev);
    }
    q->counter++;
}

/* An Execute ended; its event carries its portal's statement text, parameters and result
 * columns, and the sample of the rows it returned (before an error too, as for a Query). */
static void complete_execute(track_conn *c, req *e, const char *tag, uint32_t tag_len, bool tag_cut,
                             bool suspended, const char *sqlstate)
{
    named *p = e->bad ? NULL : portal_find(c, e->name);

    if (p && p->desc && !c->smp.described)
        sample_use_desc(&c->smp, p->desc); /* no rows came: the event still gets the columns */
    track_event *ev =
        p && p->text ? statement_event(c, e, TRACK_VIA_EXTENDED, p->text, &p->params, true) : NULL;

    if (ev) {
        if (tag)
            apply_tag(ev, tag, tag_len, tag_cut);
        if (suspended) {
            ev->suspended = true;
            ev->rows = (int64_t)c->rows_seen;
        }
        if (sqlstate)
            snprintf(ev->sqlstate, sizeof(ev->sqlstate), "%s", sqlstate);
        hold_event(c, ev);
    }
    finish_head(c);
}

static void complete_function(track_conn *c, req *f, const char *sqlstate)
{
    char text[48];
    int n = snprintf(text, sizeof(text), "<function call oid %u>", f->counter);
    shared_text *t = f->bad ? NULL : capped_text(c, text, (uint32_t)n, false);
    track_event *ev = t ? statement_event(c, f, TRACK_VIA_FUNCTION, t, NULL, false) : NULL;

    text_release(t);
    c->last_done = c->now;
    f->done = true;
    if (ev) {
        if (sqlstate)
            snprintf(ev->sqlstate, sizeof(ev->sqlstate), "%s", sqlstate);
        hold_event(c, ev);
    }
}

/* A failed Parse or Bind: the statement never ran, but the failure is worth an event. */
static void fail_parse_or_bind(track_conn *c, req *r, const char *sqlstate)
{
    shared_text *t = NULL;
    const param_set *ps = NULL;

    if (r->bad)
        return;
    if (r->kind == 'P') {
        t = r->text;
        if (r->name[0] == '\0')
            forget_unnamed_stmt(c); /* PostgreSQL drops it before parsing the new one */
    } else if (!r->stmt_unknown) {
        t = stmt_text(c, r->stmt_name, NULL);
        ps = &r->params;
    }
    track_event *ev = t ? statement_event(c, r, TRACK_VIA_EXTENDED, t, ps, false) : NULL;
    if (ev) {
        snprintf(ev->sqlstate, sizeof(ev->sqlstate), "%s", sqlstate);
        hold_event(c, ev);
    }
}

/* After an error in extended-protocol messages the server discards everything up to Sync. */
static void skip_to_sync(track_conn *c)
{
    req *head;

    c->skip_to_sync = true;
    while ((head = q_head(c)) && head->kind != 'S' && head->kind != REQ_LOST)
        q_pop(c);
}

/* CopyInResponse or CopyBothResponse: the server now reads COPY data, and ignores any Sync the
 * client sent after the COPY request and before ending its data. */
static void start_copy_in(track_conn *c, req *head)
{
    for (uint32_t i = 1; i < c->q.count;) {
        req *r = q_at(&c->q, i);
        if (r->kind == 'S' && r->copy_mark == head->copy_mark)
            q_remove_at(c, i);
        else
            i++;
    }
    if (c->copy_ends == head->copy_mark)
        c->client_in_copy = true;
}

static bool on_command_complete(track_conn *c, req *head, uint8_t type, reader *r)
{
    const char *tag = NULL;
    uint32_t len = 0;
    rd_status st = RD_OK;

    if (type == 'C') {
        st = rd_str(r, &tag, &len);
        if (st == RD_OK)
            st = rd_end(r);
        if (st == RD_BAD)
            return false;
    } else {
        tag = "";
    }
    if (head->kind == 'Q' && !head->done) {
        complete_query_statement(c, head, tag, len, st == RD_CUT, NULL);
        return true;
    }
    if (head->kind == 'E') {
        complete_execute(c, head, tag, len, st == RD_CUT, false, NULL);
        return true;
    }
    return false;
}

static bool in_running_query(const req *head)
{
    return head->kind == 'Q' && !head->done;
}

/* A RowDescription: of the Query statement that runs, or answering a Describe. The columns go
 * to the sample, whose statement they are, or from there to the statement or portal described
 * (the sample is then reset for the next request). */
static bool on_row_description(track_conn *c, req *head, reader *r)
{
    bool running = in_running_query(head);

    if (!running && head->kind != 'D')
        return false;
    sample_reset(&c->smp);
    if (read_row_description(&c->smp, r) == RD_BAD)
        return false;
    if (!running) {
        commit_describe(c, head, c->smp.described);
        finish_head(c);
    }
    return true;
}

/* Matches a response to the head of the queue; false when it does not fit. */
static bool on_response(track_conn *c, req *head, uint8_t type, reader *r)
{
    if (!head)
        return false;
    switch (type) {
    case '1': /* ParseComplete */
        if (head->kind != 'P')
            return false;
        commit_parse(c, head);
        finish_head(c);
        return true;
    case '2': /* BindComplete */
        if (head->kind != 'B')
            return false;
        commit_bind(c, head);
        finish_head(c);
        return true;
    case '3': /* CloseComplete */
        if (head->kind != 'C')
            return false;
        commit_close(c, head);
        finish_head(c);
        return true;
    case 't': /* ParameterDescription: a RowDescription or NoData follows */
        if (head->kind != 'D' || head->target != 'S')
            return false;
        commit_param_types(c, head, r);
        return true;
    case 'T': /* RowDescription */
        return on_row_description(c, head, r);
    case 'n': /* NoData */
        if (head->kind != 'D')
            return false;
        commit_describe(c, head, false);
        finish_head(c);
        return true;
    case 'D': /* DataRow: only delivered while the sample takes rows */
        if (!in_running_query(head) && head->kind != 'E')
            return false;
        return c->smp.state != SMP_ON || sample_row(&c->smp, r);
    case 'C': /* CommandComplete */
    case 'I': /* EmptyQueryResponse */
        return on_command_complete(c, head, type, r);
    case 's': /* PortalSuspended */
        if (head->kind != 'E')
            return false;
        complete_execute(c, head, NULL, 0, false, true, NULL);
        return true;
    case 'V': /* FunctionCallResponse */
        if (head->kind != 'F' || head->done)
            return false;
        complete_function(c, head, NULL);
        return true;
    case 'G': /* CopyInResponse */
    case 'W': /* CopyBothResponse */
        if (!in_running_query(head) && head->kind != 'E')
            return false;
        start_copy_in(c, head);
        return true;
    case 'H': /* CopyOutResponse */
        return in_running_query(head) || head->kind == 'E';
    default:
        return true;
    }
}

typedef struct {
    char sqlstate[6];
    bool fatal;
} error_info;

static bool is_fatal_severity(const char *s, uint32_t len)
{
    return (len == 5 && memcmp(s, "FATAL", 5) == 0) || (len == 5 && memcmp(s, "PANIC", 5) == 0);
}

/* Fields of an ErrorResponse: a type byte and a string each, ended by a zero byte. */
static rd_status read_error(reader *r, error_info *e)
{
    const char *sev = NULL, *vsev = NULL;
    uint32_t sev_len = 0, vsev_len = 0;
    rd_status st;

    snprintf(e->sqlstate, sizeof(e->sqlstate), "XX000"); /* when the code is missing */
    e->fatal = false;
    for (;;) {
        uint8_t code;
        const char *s;
        uint32_t len;
        st = rd_u8(r, &code);
        if (st != RD_OK)
            break;
        if (code == 0) {
            st = rd_end(r);
            break;
        }
        st = rd_str(r, &s, &len);
        if (st != RD_OK)
            break;
        if (code == 'S') {
            sev = s;
            sev_len = len;
        } else if (code == 'V') {
            vsev = s;
            vsev_len = len;
        } else if (code == 'C' && len > 0) {
            name_copy(e->sqlstate, s, len < 5 ? len : 5);
        }
    }
    /* V is the severity never translated; older servers send only S */
    e->fatal = vsev ? is_fatal_severity(vsev, vsev_len) : sev && is_fatal_severity(sev, sev_len);
    return st;
}

/* The connection is over: completed statements go out without a transaction status. */
static void connection_ended(track_conn *c)
{
    flush_held(c, 0);
    q_clear(c);
    c->dead = true;
}

/* An ErrorResponse fails the request at the head of the queue. */
static void fail_head(track_conn *c, const error_info *e)
{
    req *head = q_head(c);

    if (!head || head->kind == REQ_LOST || head->kind == 'S')
        return; /* not tied to a request we follow (an error at Sync is the commit's) */
    switch (head->kind) {
    case 'Q':
        if (head->done)
            desync(c);
        else
            complete_query_statement(c, head, NULL, 0, false, e->sqlstate);
        head->done = true;
        return;
    case 'F':
        if (head->done)
            desync(c);
        else
            complete_function(c, head, e->sqlstate);
        return;
    case 'E':
        complete_execute(c, head, NULL, 0, false, false, e->sqlstate);
        break;
    case 'P':
    case 'B':
        fail_parse_or_bind(c, head, e->sqlstate);
        finish_head(c);
        break;
    default:
        finish_head(c);
        break;
    }
    skip_to_sync(c);
}

static void on_error(track_conn *c, reader *r)
{
    error_info e;

    if (read_error(r, &e) == RD_BAD) {
        desync(c);
        return;
    }
    if (!c->desynced)
        fail_head(c, &e);
    if (e.fatal)
        connection_ended(c);
}

static void set_string(char **dst, const char *s, size_t len)
{
    char *copy = malloc(len + 1);

    if (!copy)
        return;
    if (len > 0)
        memcpy(copy, s, len);
    copy[len] = '\0';
    free(*dst);
    *dst = copy;
}

static void on_parameter_status(track_conn *c, reader *r)
{
    const char *name, *value;
    uint32_t name_len, value_len;
    rd_status st = rd_str(r, &name, &name_len);

    if (st == RD_OK)
        st = rd_str(r, &value, &value_len);
    if (st == RD_OK)
        st = rd_end(r);
    if (st == RD_BAD) {
        desync(c);
        return;
    }
    if (st == RD_OK && name_len == 16 && memcmp(name, "application_name", 16) == 0)
        set_string(&c->app, value, value_len);
}

/* A lost-requests marker got one of its ReadyForQuery messages. */
static void lost_answered(track_conn *c, req *lost)
{
    if (lost->counter > 0)
        lost->counter--;
    if (lost->counter == 0 && !lost->open)
        q_pop(c);
}

/* Back in step at a ReadyForQuery: it answers the first request that causes one. */
static void resync_at_ready(track_conn *c)
{
    req *head;

    while ((head = q_head(c))) {
        if (head->kind == REQ_LOST) {
            lost_answered(c, head);
            return;
        }
        char kind = head->kind;
        apply_blindly(c, head);
        q_pop(c);
        if (answers_with_ready(kind))
            return;
    }
}

static void on_ready(track_conn *c, reader *r)
{
    char status = 0;
    req *head = q_head(c);

    if (r->body_len == 1 && r->captured == 1 &&
        (r->p[0] == 'I' || r->p[0] == 'T' || r->p[0] == 'E'))
        status = (char)r->p[0];
    else
        desync(c);
    if (c->desynced) {
        resync_at_ready(c);
    } else if (head && head->kind == REQ_LOST) {
        lost_answered(c, head);
    } else if (head && answers_with_ready(head->kind)) {
        if (head->kind == 'Q') {
            forget_unnamed_stmt(c); /* a simple Query destroys both */
            forget_unnamed_portal(c);
        }
        q_pop(c);
    } else if (head) {
        desync(c);
        resync_at_ready(c);
    }
    c->desynced = false;
    c->skip_to_sync = false;
    c->client_in_copy = false;
    c->last_done = c->now; /* the group is done: a request pipelined behind it starts now */
    statement_start(c);
    flush_held(c, status);
    if (status == 'I')
        forget_portals(c);
}

/* Responses that have no body. */
static bool has_empty_body(uint8_t type)
{
    return type == '1' || type == '2' || type == '3' || type == 'n' || type == 'I' || type == 's';
}

static void on_server_message(track_conn *c, uint8_t type, reader *r)
{
    switch (type) {
    case 'Z':
        on_ready(c, r);
        return;
    case 'E':
        on_error(c, r);
        return;
    case 'S':
        on_parameter_status(c, r);
        return;
    default:
        break;
    }
    if (c->desynced)
        return;
    req *head = q_head(c);
    if (head && head->kind == REQ_LOST)
        return; /* answers to requests we forgot */
    if ((has_empty_body(type) && r->body_len != 0) || !on_response(c, head, type, r))
        desync(c);
}

/* ---- public interface ---- */

void track_limits_default(track_limits *lim)
{
    lim->max_text = 16384;
    lim->max_param = 256;
    lim->max_params = 4096;
    lim->max_prepared = 1000;
    lim->max_pending = 1000;
}

static uint32_t clamp_u32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static uint32_t want_for_bind(const track_limits *lim)
{
    return clamp_u32(BIND_HEADER_ROOM + (uint64_t)BIND_RAW_PER_KEPT * lim->max_params);
}

track_conn *track_conn_new(uint64_t conn_id, const track_limits *lim, track_emit_fn emit, void *arg)
{
    track_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    if (lim)
        c->lim = *lim;
    else
        track_limits_default(&c->lim);
    if (c->lim.max_pending > UINT32_MAX / 4)
        c->lim.max_pending = UINT32_MAX / 4; /* the ring doubles up to it */
    c->id = conn_id;
    c->emit = emit;
    c->arg = arg;
    c->want_query = clamp_u32((uint64_t)c->lim.max_text + 1);
    c->want_parse = clamp_u32((uint64_t)NAME_ROOM + c->lim.max_text + 1 + TYPES_ROOM);
    c->want_bind = want_for_bind(&c->lim);
    c->stmts.max = c->lim.max_prepared;
    c->portals.max = c->lim.max_prepared;
    return c;
}

void track_idle(track_conn *c)
{
    if (c->q.count > 0)
        return; /* a statement is in flight: its state is in use */
    free(c->q.items);
    c->q.items = NULL;
    c->q.cap = 0;
    c->q.head = 0;
    free(c->smp.cols);
    memset(&c->smp, 0, sizeof(c->smp));
    free(c->scratch);
    c->scratch = NULL;
    c->scratch_size = 0;
}

void track_conn_free(track_conn *c)
{
    if (!c)
        return;
    q_clear(c);
    free(c->q.items);
    while (c->held.count)
        track_event_free(held_pop(c));
    free(c->held.items);
    nt_free(&c->stmts);
    nt_free(&c->portals);
    forget_unnamed_stmt(c);
    forget_unnamed_portal(c);
    free(c->smp.cols);
    free(c->scratch);
    free(c->user);
    free(c->database);
    free(c->app);
    free(c->addr);
    free(c->search_path);
    free(c);
}

static void set_cstring(char **dst, const char *s)
{
    if (s)
        set_string(dst, s, strlen(s));
}

/* ---- search_path from the StartupMessage ---- */

/*
 * A client sets search_path at connection time either as a startup parameter of its own (pgjdbc's
 * currentSchema) or inside the `options` parameter, the command-line switches libpq's PGOPTIONS
 * fills. PostgreSQL (process_startup_options) applies the switches first and the parameters
 * after them, so a `search_path` parameter wins; within each, the last setting wins.
 *
 * The switches are read as the server reads them: pg_split_opts cuts the string into words at
 * unescaped whitespace (a backslash escapes the next byte, and is dropped), and
 * process_postgres_switches runs getopt over the words. Only `-c name=value` and
 * `--name=value` set a parameter; every other switch is skipped with its argument, since reading
 * the argument of `-d -csearch_path=x` as a word of its own would invent a setting. A string the
 * server cannot parse (a stray word, an unknown switch, a missing argument) makes it refuse the
 * connection, so what we read from one does not matter: we only have to stay bounded.
 */

/* pg_split_opts splits at isspace(); these are its C-locale members. */
static bool opt_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/* One word of an options string with its escapes still in: [p, end). */
typedef struct {
    const char *p, *end;
} opt_word;

/* Cuts the next word off *s. An escaped byte never ends a word, even whitespace. */
static bool opt_next_word(const char **s, opt_word *w)
{
    const char *p = *s;

    while (opt_space(*p))
        p++;
    if (*p == '\0')
        return false;
    w->p = p;
    while (*p != '\0' && !opt_space(*p))
        p += p[0] == '\\' && p[1] != '\0' ? 2 : 1;
    w->end = p;
    *s = p;
    return true;
}

/* The next byte of w as the server sees it (escape removed), or -1 at its end. A backslash that
 * ends the whole string escapes nothing; the server drops it. */
static int opt_char(opt_word *w)
{
    if (w->p < w->end && *w->p == '\\')
        w->p++;
    if (w->p >= w->end)
        return -1;
    return (unsigned char)*w->p++;
}

static bool opt_done(const opt_word *w)
{
    opt_word rest = *w;

    return opt_char(&rest) < 0;
}

/* Switches of postgres that take an argument: the letters followed by ':' in
 * process_postgres_switches' getopt string "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:". */
static bool opt_takes_arg(int ch)
{
    return ch > 0 && strchr("BCcDdfhkNprStvW-", ch) != NULL;
}

/* GUC names compare ignoring ASCII case only (guc_name_compare). */
static int guc_fold(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static const char search_path_name[] = "search_path";

/* Whether the argument of -c or -- ("name=value") sets search_path; if so w is left at the
 * value. ParseLongOption turns every '-' of the name into '_' before the name is looked up. */
static bool opt_sets_search_path(opt_word *w)
{
    for (size_t i = 0; i < sizeof(search_path_name) - 1; i++) {
        int ch = opt_char(w);
        if (guc_fold(ch == '-' ? '_' : ch) != search_path_name[i])
            return false;
    }
    return opt_char(w) == '=';
}

/* Where the last search_path setting of an options string starts (its value's word, escapes
 * still in); false when it has none. Linear in the string, which the packet bounds. */
static bool options_search_path(const char *opts, opt_word *value)
{
    opt_word w;
    int pending = 0; /* a switch that takes the next word, whatever it is, as its argument */
    bool found = false;

    while (opt_next_word(&opts, &w)) {
        if (pending) {
            if ((pending == 'c' || pending == '-') && opt_sets_search_path(&w)) {
                *value = w;
                found = true;
            }
            pending = 0;
            continue;
        }
        if (opt_char(&w) != '-' || opt_done(&w))
            continue; /* not a switch ("-" alone is not either) */
        int ch = opt_char(&w);
        if (ch == '-' && opt_done(&w))
            break; /* "--": getopt stops there */
        /* a word may bundle flags ("-Ec ..."): the first switch taking an argument ends it */
        for (; ch >= 0; ch = opt_char(&w)) {
            if (!opt_takes_arg(ch))
                continue;
            if (opt_done(&w)) {
                pending = ch; /* "-c name=value": the argument is the next word */
            } else if ((ch == 'c' || ch == '-') && opt_sets_search_path(&w)) {
                *value = w; /* "-cname=value", "--name=value" */
                found = true;
            }
            break;
        }
    }
    return found;
}

/* Whether a startup parameter names search_path. The server takes every parameter but user,
 * database, options, replication and _pq_.* as a setting and looks its name up with
 * guc_name_compare, so "Search_Path" counts too (but, unlike in -c, '-' is no '_' here). */
static bool is_search_path_param(const char *name)
{
    for (size_t i = 0; i < sizeof(search_path_name); i++)
        if (guc_fold((unsigned char)name[i]) != search_path_name[i])
            return false;
    return true;
}

/* The search_path a StartupMessage (whole, as wire_first_parse accepted it) sets, into out, which
 * has room for TRACK_SEARCH_PATH_MAX bytes and a NUL. Returns its length; 0 (and "") when the
 * packet sets none, sets it empty, or sets one over TRACK_SEARCH_PATH_MAX bytes: a value is
 * dropped rather than cut, since a cut path would resolve names differently, and an earlier
 * setting must not stand in for it either, the server having replaced that one. */
static size_t startup_search_path(const uint8_t *pkt, size_t len, char *out)
{
    const char *param = NULL, *options = NULL;
    size_t pos = 8;

    out[0] = '\0';
    while (pos < len && pkt[pos] != '\0') {
        const uint8_t *name_end = memchr(pkt + pos, '\0', len - pos);
        if (!name_end || (size_t)(name_end - pkt) + 1 >= len)
            break;
        size_t value_pos = (size_t)(name_end - pkt) + 1;
        const uint8_t *value_end = memchr(pkt + value_pos, '\0', len - value_pos);
        if (!value_end)
            break;
        const char *name = (const char *)pkt + pos, *value = (const char *)pkt + value_pos;
        if (strcmp(name, "options") == 0) /* the server matches this name exactly */
            options = value;
        else if (is_search_path_param(name))
            param = value;
        pos = (size_t)(value_end - pkt) + 1;
    }
    if (param) {
        size_t n = strlen(param);
        if (n > TRACK_SEARCH_PATH_MAX)
            return 0;
        memcpy(out, param, n + 1);
        return n;
    }
    opt_word w = {NULL, NULL};
    if (!options || !options_search_path(options, &w))
        return 0;
    size_t n = 0;
    for (int ch = opt_char(&w); ch >= 0; ch = opt_char(&w)) {
        if (n == TRACK_SEARCH_PATH_MAX) {
            out[0] = '\0';
            return 0;
        }
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    return n;
}

void track_startup(track_conn *c, const uint8_t *pkt, size_t len, const char *client_addr,
                   int64_t now_us)
{
    wire_first first = wire_first_parse(pkt, pkt ? len : 0);

    if (pkt && first.kind == WIRE_FIRST_STARTUP && first.params_ok) {
        const char *user = wire_startup_param(pkt, first.len, "user");
        const char *db = wire_startup_param(pkt, first.len, "database");
        set_cstring(&c->user, user);
        set_cstring(&c->database, db && db[0] ? db : user);
        set_cstring(&c->app, wire_startup_param(pkt, first.len, "application_name"));
        char search_path[TRACK_SEARCH_PATH_MAX + 1];
        size_t n = startup_search_path(pkt, first.len, search_path);
        if (n > 0)
            set_string(&c->search_path, search_path, n);
    }
    set_cstring(&c->addr, client_addr);
    c->now = now_us;
    track_event *ev = event_new(c, TRACK_EV_CONNECT, NULL, NULL, NULL);
    if (ev)
        emit_event(c, ev);
}

void track_disconnect(track_conn *c, uint64_t bytes_from_client, uint64_t bytes_from_server,
                      int64_t now_us)
{
    if (c->disconnected)
        return;
    c->now = now_us;
    connection_ended(c);
    c->disconnected = true;
    track_event *ev = event_new(c, TRACK_EV_DISCONNECT, NULL, NULL, NULL);
    if (!ev)
        return;
    ev->bytes_from_client = bytes_from_client;
    ev->bytes_from_server = bytes_from_server;
    ev->desyncs = c->counters.desyncs;
    emit_event(c, ev);
}

void track_set_clock(track_conn *c, int64_t now_us)
{
    c->now = now_us;
}

/* At least 1 so that a message with an empty body is still delivered. */
static uint32_t want_upto(uint32_t body_len, uint32_t most)
{
    if (body_len == 0)
        return 1;
    return body_len < most ? body_len : most;
}

/* The first DataRow of an Execute's result: sampled when the portal's columns are known (and
 * it will make an event). */
static void sample_decide(track_conn *c)
{
    req *head = q_head(c);
    named *p = NULL;

    if (!c->desynced && head && head->kind == 'E' && !head->bad)
        p = portal_find(c, head->name);
    if (p && p->text && p->desc)
        sample_use_desc(&c->smp, p->desc);
    else
        c->smp.state = SMP_OFF; /* a Query's result without RowDescription too */
}

static uint32_t want_from_server(track_conn *c, uint8_t type, uint32_t body_len)
{
    switch (type) {
    case 'D': /* DataRow: the hot path; counted for PortalSuspended, the first ones sampled */
        c->rows_seen++;
        if (c->smp.state == SMP_OFF)
            return 0;
        if (c->smp.state == SMP_UNDECIDED) {
            sample_decide(c);
            if (c->smp.state != SMP_ON)
                return 0;
        }
        return want_upto(body_len, ROW_CAPTURE);
    case 'T':
        return want_upto(body_len, ROW_CAPTURE);
    case 't':
        return want_upto(body_len, TYPES_ROOM);
    case 'Z':
        return 1;
    case 'C':
        return want_upto(body_len, TAG_CAPTURE);
    case 'E':
        return want_upto(body_len, ERROR_CAPTURE);
    case 'S':
        return want_upto(body_len, PARAM_STATUS_CAPTURE);
    case '1':
    case '2':
    case '3':
    case 'n':
    case 'I':
    case 's':
    case 'V':
    case 'G':
    case 'H':
    case 'W':
        return 1; /* only that it arrived matters (and, for the empty ones, their length) */
    default:
        return 0;
    }
}

static uint32_t want_from_client(const track_conn *c, uint8_t type, uint32_t body_len)
{
    switch (type) {
    case 'Q': /* one byte past the cap tells whether the text was cut */
        return want_upto(body_len, c->want_query);
    case 'P':
        return want_upto(body_len, c->want_parse);
    case 'B':
        return want_upto(body_len, c->want_bind);
    case 'D':
    case 'C':
    case 'E':
        return want_upto(body_len, SMALL_CAPTURE);
    case 'F':
        return want_upto(body_len, FUNCTION_CAPTURE);
    case 'S':
    case 'c':
    case 'f':
        return 1;
    default:
        return 0; /* CopyData, Flush, Terminate; password messages are never looked at */
    }
}

uint32_t track_want(track_conn *c, wire_side side, uint8_t type, uint32_t body_len)
{
    if (c->dead)
        return 0;
    if (side == WIRE_FROM_SERVER)
        return want_from_server(c, type, body_len);
    return want_from_client(c, type, body_len);
}

void track_message(track_conn *c, wire_side side, uint8_t type, const uint8_t *body,
                   uint32_t captured, uint32_t body_len)
{
    reader r = {.p = body, .pos = 0, .captured = captured, .body_len = body_len};

    if (c->dead)
        return;
    if (!body || r.captured > r.body_len)
        r.captured = body ? r.body_len : 0;
    if (side == WIRE_FROM_SERVER)
        on_server_message(c, type, &r);
    else
        on_client_message(c, type, &r);
}

uint32_t track_capture_size(const track_limits *lim)
{
    const uint64_t sizes[] = {
        (uint64_t)lim->max_text + 1,                          /* Query */
        (uint64_t)NAME_ROOM + lim->max_text + 1 + TYPES_ROOM, /* Parse */
        want_for_bind(lim),
        SMALL_CAPTURE,
        FUNCTION_CAPTURE,
        ERROR_CAPTURE,
        PARAM_STATUS_CAPTURE,
        TAG_CAPTURE,
        ROW_CAPTURE,
    };
    uint64_t most = 1;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        if (sizes[i] > most)
            most = sizes[i];
    return clamp_u32(most);
}

void track_get_counters(const track_conn *c, track_counters *out)
{
    *out = c->counters;
}

bool track_param_next(const uint8_t *params, uint32_t params_len, uint32_t *pos,
                      const uint8_t **value, int32_t *len, bool *binary)
{
    uint64_t v = 0;
    uint32_t p = *pos;

    if (!params)
        return false;
    for (unsigned shift = 0;; shift += 7) {
        if (p >= params_len || shift > 35)
            return false;
        uint8_t b = params[p++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    if (v == 0) {
        *value = NULL;
        *len = -1;
        *binary = false;
        *pos = p;
        return true;
    }
    uint64_t n = (v - 1) >> 1;
    if (n > INT32_MAX || n > params_len - p)
        return false;
    *value = params + p;
    *len = (int32_t)n;
    *binary = ((v - 1) & 1) != 0;
    *pos = p + (uint32_t)n;
    return true;
}
