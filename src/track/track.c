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
/* Raw Bind bytes captured per byte of encoded parameters kept: a raw value carries a 4-byte
 * length and maybe a 2-byte format where the encoding spends 1 or 2 bytes. */
#define BIND_RAW_PER_KEPT 3

#define REQ_LOST 'L' /* queue entry standing for requests forgotten on overflow */

/* ---- shared statement text ---- */

/* Text of a Query or of a prepared statement, shared by the statement, its portals and the
 * requests that wait for them. One connection is one thread: a plain count is enough. */
typedef struct shared_text {
    uint32_t refs;
    uint32_t len;
    bool truncated;
    char text[]; /* len bytes and a NUL */
} shared_text;

static shared_text *text_new(const char *s, uint32_t len, bool truncated)
{
    shared_text *t = malloc(sizeof(*t) + (size_t)len + 1);

    if (!t)
        return NULL;
    t->refs = 1;
    t->len = len;
    t->truncated = truncated;
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
    if (t && --t->refs == 0)
        free(t);
}

/* ---- bind parameters ---- */

typedef struct {
    uint8_t *data; /* encoded as track_param_next reads it; NULL when nothing was kept */
    uint32_t len;
    uint16_t count; /* parameters the Bind carried */
    bool truncated;
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

struct track_conn {
    uint64_t id;
    track_limits lim;
    track_emit_fn emit;
    void *arg;
    int64_t now;
    int64_t last_done;  /* when the latest statement or ReadyForQuery passed */
    uint64_t rows_seen; /* DataRows since then */
    char *user, *database, *app, *addr;

    uint32_t want_query, want_parse, want_bind;
    uint8_t *scratch; /* max_params bytes to encode a Bind's parameters into */

    req_queue q;
    event_ring held; /* completed statements waiting for the ReadyForQuery status */
    name_table stmts, portals;
    shared_text *unnamed_stmt;
    named unnamed_portal; /* only its text and params are used */

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
    uint32_t cap = q->cap ? q->cap * 2 : 8;
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

/* One allocation holds the event and everything it points to: track_event_free is one free. */
static track_event *event_new(track_conn *c, track_ev_kind kind, const char *text,
                              uint32_t text_len, const param_set *ps)
{
    const char *strs[4] = {or_empty(c->user), or_empty(c->database), or_empty(c->app),
                           or_empty(c->addr)};
    size_t lens[4];
    uint32_t plen = ps ? ps->len : 0;
    size_t total = sizeof(track_event) + (size_t)text_len + 1 + plen;

    for (int i = 0; i < 4; i++) {
        lens[i] = strlen(strs[i]);
        total += lens[i] + 1;
    }
    track_event *ev = calloc(1, total);
    if (!ev)
        return NULL;
    char *p = (char *)(ev + 1);
    ev->text = copy_out(&p, text, text_len);
    ev->text_len = text_len;
    ev->user = copy_out(&p, strs[0], lens[0]);
    ev->database = copy_out(&p, strs[1], lens[1]);
    ev->application_name = copy_out(&p, strs[2], lens[2]);
    ev->client_addr = copy_out(&p, strs[3], lens[3]);
    if (plen > 0) {
        ev->params = (uint8_t *)p;
        memcpy(p, ps->data, plen);
        ev->params_len = plen;
    }
    if (ps) {
        ev->n_params = ps->count;
        ev->params_truncated = ps->truncated;
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

static track_event *held_pop(event_ring *h)
{
    track_event *ev = h->items[h->head];

    h->head = (h->head + 1) & (h->cap - 1);
    h->count--;
    return ev;
}

/* Keeps a completed statement until the next ReadyForQuery tells its transaction status; when
 * too many wait, the oldest goes out without it. */
static void hold_event(track_conn *c, track_event *ev)
{
    event_ring *h = &c->held;

    if (h->count > 0 && h->count >= c->lim.max_pending)
        emit_event(c, held_pop(h));
    if (h->count >= c->lim.max_pending || (h->count == h->cap && !held_grow(h))) {
        emit_event(c, ev);
        return;
    }
    h->items[(h->head + h->count) & (h->cap - 1)] = ev;
    h->count++;
}

static void flush_held(track_conn *c, char txn_status)
{
    while (c->held.count) {
        track_event *ev = held_pop(&c->held);
        ev->txn_status = txn_status;
        emit_event(c, ev);
    }
}

/* A statement event running from the later of the request's sending and the previous
 * completion, to now; the next request's clock starts now. */
static track_event *statement_event(track_conn *c, const req *r, char via, const shared_text *t,
                                    const param_set *ps)
{
    int64_t start = r->sent_us > c->last_done ? r->sent_us : c->last_done;
    track_event *ev = event_new(c, TRACK_EV_STATEMENT, t->text, t->len, ps);

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

/* ---- connection state ---- */

static void desync(track_conn *c)
{
    c->counters.desyncs++;
    c->desynced = true;
}

static void forget_unnamed_portal(track_conn *c)
{
    text_release(c->unnamed_portal.text);
    c->unnamed_portal.text = NULL;
    params_clear(&c->unnamed_portal.params);
}

static void forget_unnamed_stmt(track_conn *c)
{
    text_release(c->unnamed_stmt);
    c->unnamed_stmt = NULL;
}

/* The statement text a Bind of this name refers to, or NULL. */
static shared_text *stmt_text(track_conn *c, const char *name)
{
    if (name[0] == '\0')
        return c->unnamed_stmt;
    named *n = nt_find(&c->stmts, name);
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
    }
}

/* BindComplete: the portal exists now, with the statement's text and the Bind's parameters. */
static void commit_bind(track_conn *c, req *r)
{
    if (r->bad)
        return;
    shared_text *t = r->stmt_unknown ? NULL : stmt_text(c, r->stmt_name);
    named *p = r->name[0] == '\0' ? &c->unnamed_portal : nt_put(&c->portals, r->name);
    if (!p)
        return;
    text_release(p->text);
    p->text = text_retain(t);
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

/* Parameter type oids after the text. */
static rd_status read_parse_types(reader *r)
{
    uint16_t n;
    rd_status st = rd_u16(r, &n);

    if (st == RD_OK)
        st = rd_skip(r, 4u * n);
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
        st = rd_str(r, &s, &len);
        if (st == RD_BAD || (st == RD_OK && read_parse_types(r) == RD_BAD)) {
            enqueue_malformed(c, &p);
            return;
        }
        p.text = capped_text(c, s, len, st == RD_CUT);
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

typedef struct {
    uint32_t fmt_pos; /* where the format codes start in the body */
    uint16_t nfmt;
    uint32_t used; /* encoded bytes so far */
    uint32_t kept; /* values encoded */
    bool keeping;  /* still encoding: nothing was left out yet */
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
        if (keep <= r->captured - r->pos &&
            encode_param(c->scratch, c->lim.max_params, &w->used, r->p + r->pos,
                         len < 0 ? -1 : (int32_t)keep, param_is_binary(r, w, i)))
            w->kept++;
        else
            w->keeping = false; /* later values are left out too: the list stays in order */
    }
    if (st == RD_OK)
        r->pos += body;
    return st;
}

/* Formats, values and result formats of a Bind, after the two names. */
static rd_status read_bind_params(track_conn *c, reader *r, param_set *out)
{
    bind_walk w = {.keeping = c->scratch != NULL};
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
    if (st == RD_OK) {
        st = rd_u16(r, &n);
        if (st == RD_OK)
            st = rd_skip(r, 2u * n);
        if (st == RD_OK)
            st = rd_end(r);
    }
    if (st == RD_BAD)
        return RD_BAD;
    out->truncated = w.kept < out->count;
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
        st = read_bind_params(c, r, &b.params);
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
    c->rows_seen = 0;
}

/* One statement of a Query ended (tag NULL: with an error or an empty query). */
static void complete_query_statement(track_conn *c, req *q, const char *tag, uint32_t tag_len,
                                     bool tag_cut, const char *sqlstate)
{
    track_event *ev = q->text ? statement_event(c, q, TRACK_VIA_SIMPLE, q->text, NULL) : NULL;

    c->last_done = c->now;
    c->rows_seen = 0;
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

/* An Execute ended; its event carries its portal's statement text and parameters. */
static void complete_execute(track_conn *c, req *e, const char *tag, uint32_t tag_len, bool tag_cut,
                             bool suspended, const char *sqlstate)
{
    named *p = e->bad ? NULL : portal_find(c, e->name);
    track_event *ev =
        p && p->text ? statement_event(c, e, TRACK_VIA_EXTENDED, p->text, &p->params) : NULL;

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
    track_event *ev = t ? statement_event(c, f, TRACK_VIA_FUNCTION, t, NULL) : NULL;

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
        t = stmt_text(c, r->stmt_name);
        ps = &r->params;
    }
    track_event *ev = t ? statement_event(c, r, TRACK_VIA_EXTENDED, t, ps) : NULL;
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
        return head->kind == 'D' && head->target == 'S';
    case 'T': /* RowDescription */
        if (in_running_query(head))
            return true;
        /* fall through */
    case 'n': /* NoData */
        if (head->kind != 'D')
            return false;
        finish_head(c);
        return true;
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
    c->rows_seen = 0;
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
    c->want_parse = clamp_u32((uint64_t)NAME_ROOM + c->lim.max_text + 1);
    c->want_bind = want_for_bind(&c->lim);
    c->stmts.max = c->lim.max_prepared;
    c->portals.max = c->lim.max_prepared;
    if (c->lim.max_params > 0)
        c->scratch = malloc(c->lim.max_params); /* NULL: parameters are not kept */
    return c;
}

void track_conn_free(track_conn *c)
{
    if (!c)
        return;
    q_clear(c);
    free(c->q.items);
    while (c->held.count)
        track_event_free(held_pop(&c->held));
    free(c->held.items);
    nt_free(&c->stmts);
    nt_free(&c->portals);
    forget_unnamed_stmt(c);
    forget_unnamed_portal(c);
    free(c->scratch);
    free(c->user);
    free(c->database);
    free(c->app);
    free(c->addr);
    free(c);
}

static void set_cstring(char **dst, const char *s)
{
    if (s)
        set_string(dst, s, strlen(s));
}

void track_startup(track_conn *c, const uint8_t *pkt, size_t len, const char *client_addr,
                   int64_t now_us)
{
    wire_first first = wire_first_parse(pkt, pkt ? len : 0);

    if (pkt && first.kind == WIRE_FIRST_STARTUP) {
        const char *user = wire_startup_param(pkt, first.len, "user");
        const char *db = wire_startup_param(pkt, first.len, "database");
        set_cstring(&c->user, user);
        set_cstring(&c->database, db && db[0] ? db : user);
        set_cstring(&c->app, wire_startup_param(pkt, first.len, "application_name"));
    }
    set_cstring(&c->addr, client_addr);
    c->now = now_us;
    track_event *ev = event_new(c, TRACK_EV_CONNECT, NULL, 0, NULL);
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
    track_event *ev = event_new(c, TRACK_EV_DISCONNECT, NULL, 0, NULL);
    if (!ev)
        return;
    ev->bytes_from_client = bytes_from_client;
    ev->bytes_from_server = bytes_from_server;
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

static uint32_t want_from_server(track_conn *c, uint8_t type, uint32_t body_len)
{
    switch (type) {
    case 'D': /* DataRow: the hot path; only counted, for PortalSuspended */
        c->rows_seen++;
        return 0;
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
    case 't':
    case 'T':
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
        (uint64_t)lim->max_text + 1,             /* Query */
        (uint64_t)NAME_ROOM + lim->max_text + 1, /* Parse */
        want_for_bind(lim),
        SMALL_CAPTURE,
        FUNCTION_CAPTURE,
        ERROR_CAPTURE,
        PARAM_STATUS_CAPTURE,
        TAG_CAPTURE,
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
