/* nplusone.c — N+1 loops and duplicate queries per connection, proven and written up as fixes. */
#include "config.h"

#include "np1_int.h"

#include "pgscope/fingerprint.h"
#include "pgscope/hash.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NP1_MAX_PARAMS 64           /* parameters of a statement kept (positions fit a byte) */
#define NP1_TEXT_MAX 8192           /* bytes kept of a normalized text */
#define NP1_UNIT_TEXTS (1 << 20)    /* bytes of texts one open unit may hold */
#define NP1_MAX_FINDINGS 4096       /* distinct patterns remembered in a run */
#define NP1_TXN_IDLE_US 60000000LL  /* a transaction idle this long is examined on a tick */
#define NP1_CONN_IDLE_US 10000000LL /* a connection idle this long, its unit closed, is dropped */
#define NP1_MAX_UNIT_LIMIT 1000000  /* upper bound for settings.max_unit */
#define NP1_MAX_RESULTS_KEPT 64     /* upper bound for settings.results_kept */

/* ---- small helpers ---- */

/* b - a without overflow, 0 when b is not after a. */
static uint64_t elapsed(int64_t a, int64_t b)
{
    return b > a ? (uint64_t)b - (uint64_t)a : 0;
}

static double ms_between(int64_t a, int64_t b)
{
    return (double)elapsed(a, b) / 1000.0;
}

/* ---- units of work ---- */

enum {
    REC_FAILED = 1,
    REC_IGNORED = 2,
    REC_ROWS = 4,
    REC_CATALOG = 8,    /* reads the system catalogs: neither parent, child nor duplicate */
    REC_ONE_INSERT = 16 /* an INSERT of one row */
};

/* A statement of the open unit, as much of it as the examination needs. */
typedef struct urec {
    int64_t start_us, end_us;
    uint64_t tuple;     /* hash of the whole tuple: bound parameters, then inlined literals */
    uint64_t result;    /* hash of the sampled result; 0 when there is none */
    uint32_t rows;      /* rows of the sampled result */
    uint16_t chain;     /* 1 + (p << 8 | c): parameter p was in column c of the previous result
                         * of the same shape (keyset pagination); 0 if none */
    uint32_t shape;     /* index in the unit's shapes */
    uint32_t param_off; /* its first parameter in the unit's params */
    uint16_t n_params;  /* kept (at most NP1_MAX_PARAMS) */
    uint8_t flags;      /* REC_* */
} urec;

/* One fingerprint of the open unit. */
typedef struct shape {
    uint64_t fp;
    char *query;          /* normalized text, capped; NULL past the unit's text budget */
    char *table;          /* the one table it reads, or NULL */
    uint32_t count;       /* executions that count: neither failed nor ignored */
    uint32_t first, last; /* record index of the first and last of them */
    uint64_t ex_tuple[NP1_MAX_EXAMPLES];
    char *ex_json[NP1_MAX_EXAMPLES]; /* NULL when parameters are not kept */
    int n_ex;
    bool select, insert;
    bool catalog; /* reads the system catalogs */
    bool control; /* BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE */
    bool ddl;     /* CREATE, ALTER, DROP, TRUNCATE: a unit with one is a schema's setup */
} shape;

typedef struct unit {
    bool open, in_txn;
    uint64_t seq;
    char *app, *tags; /* a change ends the unit, inside a transaction too */
    urec *recs;
    uint32_t n, cap;
    uint32_t *params;
    uint32_t n_params, cap_params;
    shape *shapes;
    uint32_t n_shapes, cap_shapes;
    uint32_t *by_fp; /* shape index + 1 by fingerprint, open addressing; 0 empty */
    uint32_t by_fp_cap;
    size_t text_bytes;
} unit;

/* One-row INSERTs of one shape, each in a unit of its own (ActiveRecord's create! wraps each in
 * a transaction), one right after the other: an insert loop across units. */
typedef struct streak {
    shape s;          /* the INSERT's shape (its own copies); s.count is the length of the streak */
    char *app, *tags; /* of its first unit */
    double ms;
    int64_t first_us, last_us;
} streak;

typedef struct conn {
    uint64_t id;
    struct conn *next; /* in its hash bucket */
    char *database, *user;
    unit u;
    streak streak;
    rslot **results; /* settings.results_kept slots, each allocated when first needed */
    uint64_t counter;
    uint64_t units;
    int64_t last_end_us;
} conn;

/* ---- findings ---- */

struct np1_detector {
    np1_settings s;
    char **ignore; /* owned copies of the entries */
    uint64_t *ignore_fp;
    bool *ignore_is_fp, *ignore_used;
    conn **buckets;
    size_t n_buckets, n_conns;
    finding **findings; /* in creation order */
    size_t n_findings;
    uint32_t cap_findings;
    uint32_t *fslots; /* finding index + 1 by key, open addressing */
    size_t fslots_cap;
};

/* ---- settings and the detector ---- */

void np1_settings_default(np1_settings *s)
{
    memset(s, 0, sizeof *s);
    s->min_repeats = 5;
    s->idle_gap_ms = 250;
    s->link_share = 0.8;
    s->max_unit = 10000;
    s->results_kept = 8;
    s->keep_params = false;
}

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* A 16-hex-digit entry is a fingerprint (it may still be a table name too). */
static bool parse_fp(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    for (; s[i] != '\0'; i++) {
        int c = np1_lower((unsigned char)s[i]);
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0 || i >= 16)
            return false;
        v = v * 16 + (uint64_t)d;
    }
    *out = v;
    return i == 16;
}

static bool copy_ignores(np1_detector *d, const np1_settings *s)
{
    int n = s->ignore != NULL && s->n_ignore > 0 ? s->n_ignore : 0;

    d->s.n_ignore = 0;
    if (n == 0)
        return true;
    d->ignore = calloc((size_t)n, sizeof *d->ignore);
    d->ignore_fp = calloc((size_t)n, sizeof *d->ignore_fp);
    d->ignore_is_fp = calloc((size_t)n, sizeof *d->ignore_is_fp);
    d->ignore_used = calloc((size_t)n, sizeof *d->ignore_used);
    if (!d->ignore || !d->ignore_fp || !d->ignore_is_fp || !d->ignore_used)
        return false;
    for (int i = 0; i < n; i++) {
        d->ignore[i] = np1_copy_text(s->ignore[i] != NULL ? s->ignore[i] : "", 256);
        if (d->ignore[i] == NULL)
            return false;
        d->ignore_is_fp[i] = parse_fp(d->ignore[i], &d->ignore_fp[i]);
        d->s.n_ignore = i + 1;
    }
    return true;
}

np1_detector *np1_new(const np1_settings *s)
{
    np1_detector *d = calloc(1, sizeof *d);

    if (d == NULL)
        return NULL;
    d->s = *s;
    d->s.min_repeats = clamp_int(s->min_repeats, 2, INT_MAX);
    d->s.idle_gap_ms = clamp_int(s->idle_gap_ms, 0, INT_MAX);
    d->s.max_unit = clamp_int(s->max_unit, 2, NP1_MAX_UNIT_LIMIT);
    d->s.results_kept = clamp_int(s->results_kept, 1, NP1_MAX_RESULTS_KEPT);
    if (!(s->link_share > 0.0 && s->link_share <= 1.0))
        d->s.link_share = 0.8; /* NaN and nonsense alike */
    d->s.ignore = NULL;
    d->n_buckets = 64;
    d->buckets = calloc(d->n_buckets, sizeof *d->buckets);
    if (d->buckets == NULL || !copy_ignores(d, s)) {
        np1_free(d);
        return NULL;
    }
    return d;
}

static void unit_reset(unit *u);

static void conn_free(np1_detector *d, conn *c)
{
    unit_reset(&c->u);
    for (int i = 0; c->results != NULL && i < d->s.results_kept; i++)
        np1_slot_free(c->results[i]);
    free(c->results);
    free(c->database);
    free(c->user);
    free(c->streak.s.query);
    free(c->streak.s.table);
    free(c->streak.app);
    free(c->streak.tags);
    for (int k = 0; k < c->streak.s.n_ex; k++)
        free(c->streak.s.ex_json[k]);
    free(c);
}

static void finding_free(finding *f)
{
    free(f->pub.parent_query);
    for (int i = 0; i < NP1_MAX_CHILDREN; i++)
        free(f->pub.child_query[i]);
    free(f->pub.linked_column);
    for (int i = 0; i < NP1_MAX_EXAMPLES; i++)
        free(f->pub.examples[i]);
    free(f->pub.suggestion);
    free(f->pub.database);
    free(f->pub.user);
    free(f->pub.test);
    for (int i = 0; i < f->n_rejected; i++) {
        free(f->rejected[i]);
        free(f->rejected_why[i]);
    }
    free(f->parent_table);
    free(f);
}

void np1_free(np1_detector *d)
{
    if (d == NULL)
        return;
    for (size_t b = 0; d->buckets != NULL && b < d->n_buckets; b++) {
        for (conn *c = d->buckets[b], *next; c != NULL; c = next) {
            next = c->next;
            conn_free(d, c);
        }
    }
    free(d->buckets);
    for (size_t i = 0; i < d->n_findings; i++)
        finding_free(d->findings[i]);
    free(d->findings);
    free(d->fslots);
    for (int i = 0; d->ignore != NULL && i < d->s.n_ignore; i++)
        free(d->ignore[i]);
    free(d->ignore);
    free(d->ignore_fp);
    free(d->ignore_is_fp);
    free(d->ignore_used);
    free(d);
}

/* ---- connections ---- */

static size_t conn_bucket(const np1_detector *d, uint64_t id)
{
    return (size_t)(hash_mix64(id) & (d->n_buckets - 1));
}

/* Doubles the buckets when the table gets crowded; keeps the old ones if memory ran out. */
static void conns_grow(np1_detector *d)
{
    size_t n = d->n_buckets * 2;
    conn **buckets = calloc(n, sizeof *buckets);

    if (buckets == NULL)
        return;
    for (size_t b = 0; b < d->n_buckets; b++) {
        for (conn *c = d->buckets[b], *next; c != NULL; c = next) {
            next = c->next;
            size_t k = (size_t)(hash_mix64(c->id) & (n - 1));
            c->next = buckets[k];
            buckets[k] = c;
        }
    }
    free(d->buckets);
    d->buckets = buckets;
    d->n_buckets = n;
}

static conn *conn_find(const np1_detector *d, uint64_t id)
{
    for (conn *c = d->buckets[conn_bucket(d, id)]; c != NULL; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static conn *conn_add(np1_detector *d, uint64_t id)
{
    conn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->results = calloc((size_t)d->s.results_kept, sizeof *c->results);
    if (c->results == NULL) {
        free(c);
        return NULL;
    }
    c->id = id;
    if (d->n_conns >= 2 * d->n_buckets)
        conns_grow(d);
    size_t b = conn_bucket(d, id);
    c->next = d->buckets[b];
    d->buckets[b] = c;
    d->n_conns++;
    return c;
}

static void conn_remove(np1_detector *d, conn *c)
{
    for (conn **p = &d->buckets[conn_bucket(d, c->id)]; *p != NULL; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            d->n_conns--;
            conn_free(d, c);
            return;
        }
    }
}

/* ---- the allow-list ---- */

/* Whether table (maybe schema-qualified) is the entry: "orders" matches "public.orders" and
 * the other way round. */
static bool table_matches(const char *entry, const char *table)
{
    const char *te = strrchr(table, '.'), *ee = strrchr(entry, '.');

    if (table[0] == '\0' || entry[0] == '\0')
        return false;
    if (np1_equal_nocase(entry, table))
        return true;
    if (te != NULL && ee == NULL)
        return np1_equal_nocase(entry, te + 1);
    if (ee != NULL && te == NULL)
        return np1_equal_nocase(ee + 1, table);
    return false;
}

/* Whether st is on the allow-list; every entry it matches is marked used. */
static bool allow_listed(np1_detector *d, const np1_stmt *st)
{
    bool hit = false;

    for (int i = 0; i < d->s.n_ignore; i++) {
        bool m = (d->ignore_is_fp[i] && d->ignore_fp[i] == st->fingerprint) ||
                 (st->table != NULL && table_matches(d->ignore[i], st->table));
        if (m) {
            d->ignore_used[i] = true;
            hit = true;
        }
    }
    return hit;
}

/* ---- recording statements in the open unit ---- */

static void unit_reset(unit *u)
{
    for (uint32_t i = 0; i < u->n_shapes; i++) {
        shape *s = &u->shapes[i];
        free(s->query);
        free(s->table);
        for (int k = 0; k < s->n_ex; k++)
            free(s->ex_json[k]);
    }
    free(u->recs);
    free(u->params);
    free(u->shapes);
    free(u->by_fp);
    free(u->app);
    free(u->tags);
    memset(u, 0, sizeof *u);
}

static bool grow_array(void **p, uint32_t *cap, uint32_t need, size_t size)
{
    uint32_t n = *cap ? *cap : 16;
    void *grown;

    if (need <= *cap)
        return true;
    while (n < need)
        n *= 2;
    grown = realloc(*p, (size_t)n * size);
    if (grown == NULL)
        return false;
    *p = grown;
    *cap = n;
    return true;
}

/* Doubles the unit's fingerprint index (kept at most half full). */
static bool shape_index_grow(unit *u)
{
    uint32_t cap = u->by_fp_cap ? u->by_fp_cap * 2 : 64;
    uint32_t *by_fp = calloc(cap, sizeof *by_fp);

    if (by_fp == NULL)
        return false;
    for (uint32_t i = 0; i < u->n_shapes; i++) {
        size_t k = (size_t)(hash_mix64(u->shapes[i].fp) & (cap - 1));
        while (by_fp[k] != 0)
            k = (k + 1) & (cap - 1);
        by_fp[k] = i + 1;
    }
    free(u->by_fp);
    u->by_fp = by_fp;
    u->by_fp_cap = cap;
    return true;
}

/* Where fp's entry is in the unit's index, or the empty place where it would go. */
static size_t shape_place(const unit *u, uint64_t fp)
{
    size_t k = (size_t)(hash_mix64(fp) & (u->by_fp_cap - 1));

    while (u->by_fp[k] != 0 && u->shapes[u->by_fp[k] - 1].fp != fp)
        k = (k + 1) & (u->by_fp_cap - 1);
    return k;
}

/* The unit's shape for st's fingerprint, created on first sight; UINT32_MAX if out of memory. */
static uint32_t shape_get(unit *u, const np1_stmt *st)
{
    if (u->by_fp_cap > 0 && u->by_fp[shape_place(u, st->fingerprint)] != 0)
        return u->by_fp[shape_place(u, st->fingerprint)] - 1;
    if ((2 * (u->n_shapes + 1) > u->by_fp_cap && !shape_index_grow(u)) ||
        !grow_array((void **)&u->shapes, &u->cap_shapes, u->n_shapes + 1, sizeof *u->shapes))
        return UINT32_MAX;
    shape *s = &u->shapes[u->n_shapes];
    memset(s, 0, sizeof *s);
    s->fp = st->fingerprint;
    s->select = st->is_select;
    s->insert = st->is_insert;
    if (u->text_bytes < NP1_UNIT_TEXTS) {
        s->query = np1_copy_text(st->query != NULL ? st->query : "", NP1_TEXT_MAX);
        u->text_bytes += s->query != NULL ? strlen(s->query) : 0;
    }
    if (st->table != NULL && st->table[0] != '\0')
        s->table = np1_copy_text(st->table, 255);
    s->catalog = np1_is_catalog(st->query);
    s->control = np1_first_word_is(st->query, "begin start commit end rollback savepoint release");
    s->ddl = np1_first_word_is(st->query, "create alter drop truncate");
    u->by_fp[shape_place(u, st->fingerprint)] = ++u->n_shapes;
    return u->n_shapes - 1;
}

static uint64_t tuple_hash(const np1_stmt *st)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ st->n_params;

    for (uint16_t i = 0; i < st->n_params; i++)
        h = hash_mix64(h ^ st->params[i]) + i;
    return h;
}

/* Keeps up to NP1_MAX_EXAMPLES distinct tuples of a shape, as JSON when parameters are kept. */
static void shape_example(const np1_detector *d, shape *s, const np1_stmt *st, uint64_t tuple)
{
    if (s->n_ex >= NP1_MAX_EXAMPLES)
        return;
    for (int i = 0; i < s->n_ex; i++)
        if (s->ex_tuple[i] == tuple)
            return;
    s->ex_json[s->n_ex] = NULL;
    if (d->s.keep_params && st->param_text != NULL) {
        s->ex_json[s->n_ex] = np1_example_json(st);
        if (s->ex_json[s->n_ex] == NULL)
            return;
    }
    s->ex_tuple[s->n_ex++] = tuple;
}

/* The slot holding fp's results of this unit, or NULL. */
static rslot *slot_of(const np1_detector *d, conn *c, uint64_t fp)
{
    for (int i = 0; i < d->s.results_kept; i++) {
        rslot *s = c->results[i];
        if (s != NULL && s->in_use && s->fp == fp && s->unit == c->u.seq)
            return s;
    }
    return NULL;
}

/* How long ago a slot was used; an empty slot is the oldest of all. */
static uint64_t slot_age(const conn *c, const rslot *s)
{
    return s == NULL || !s->in_use ? UINT64_MAX : c->counter - s->used_at;
}

/* The slot for a new result of fp: its own, else an empty one, else the least recently used.
 * One slot per fingerprint keeps a loop's children from pushing its parent out. NULL if memory
 * ran out. */
static rslot *slot_for(const np1_detector *d, conn *c, const np1_stmt *st)
{
    int victim = 0;

    for (int i = 0; i < d->s.results_kept; i++) {
        rslot *s = c->results[i];
        if (s != NULL && s->in_use && s->fp == st->fingerprint) {
            victim = i;
            break;
        }
        if (slot_age(c, s) > slot_age(c, c->results[victim]))
            victim = i;
    }
    rslot *s = c->results[victim];
    if (s == NULL && (s = c->results[victim] = calloc(1, sizeof *s)) == NULL)
        return NULL;
    if (s->in_use && s->fp == st->fingerprint && s->unit == c->u.seq)
        return s;
    return np1_slot_reset(s, st->fingerprint, c->u.seq, st) ? s : NULL;
}

/* Where a parameter that changed since the previous execution of the same shape was found
 * in that execution's result: 1 + (p << 8 | column), or 0. A keyset pagination loop asks with
 * a value of the last page it got, always the same parameter and column. */
static uint16_t chain_of(const unit *u, const shape *sh, const rslot *s, const np1_stmt *st,
                         uint16_t n)
{
    const urec *prev = sh->count > 0 ? &u->recs[sh->last] : NULL;

    for (uint16_t p = 0; s != NULL && prev != NULL && s->execs > 0 && p < n; p++) {
        if (p < prev->n_params && u->params[prev->param_off + p] == st->params[p])
            continue; /* unchanged: not what the loop walks */
        for (uint16_t col = 0; col < s->n_columns; col++) {
            const sval *v = np1_slot_find(s, st->params[p], col);
            if (v != NULL && v->exec == s->execs)
                return (uint16_t)(1 + (p << 8 | col));
        }
    }
    return 0;
}

static uint8_t rec_flags(const np1_stmt *st, const shape *s, bool ignored)
{
    uint8_t f = 0;

    if (st->failed)
        f |= REC_FAILED;
    if (ignored)
        f |= REC_IGNORED;
    if (s->catalog)
        f |= REC_CATALOG;
    if (!st->failed && st->rows > 0 && st->n_columns > 0)
        f |= REC_ROWS;
    if (!st->failed && st->is_insert && st->rows_affected == 1)
        f |= REC_ONE_INSERT;
    return f;
}

/* The sampled result as one hash, for telling whether repeats returned the same rows. */
static uint64_t result_hash(const np1_stmt *st)
{
    uint64_t h = hash_mix64(0x51ed270b27ULL ^ st->rows);

    if (st->failed || (st->rows > 0 && st->values == NULL))
        return 0;
    for (size_t i = 0; i < (size_t)st->rows * st->n_columns; i++)
        h = hash_mix64(h ^ st->values[i]) + i;
    return h ? h : 1;
}

/* Records st in the open unit (up to max_unit statements) and samples its result. */
static void unit_add(np1_detector *d, conn *c, const np1_stmt *st, bool ignored)
{
    unit *u = &c->u;
    uint16_t n = st->params != NULL ? st->n_params : 0;
    uint32_t si;

    if (n > NP1_MAX_PARAMS)
        n = NP1_MAX_PARAMS;
    if (u->n >= (uint32_t)d->s.max_unit ||
        !grow_array((void **)&u->recs, &u->cap, u->n + 1, sizeof *u->recs) ||
        !grow_array((void **)&u->params, &u->cap_params, u->n_params + n, sizeof *u->params) ||
        (si = shape_get(u, st)) == UINT32_MAX)
        return;
    urec *r = &u->recs[u->n];
    shape *s = &u->shapes[si];
    *r = (urec){.start_us = st->start_us,
                .end_us = st->end_us,
                .tuple = st->params ? tuple_hash(st) : 0,
                .result = result_hash(st),
                .rows = st->rows,
                .shape = si,
                .param_off = u->n_params,
                .n_params = n,
                .flags = rec_flags(st, s, ignored)};
    ignored |= s->catalog;
    if (!st->failed && !ignored && st->is_select)
        r->chain = chain_of(u, s, slot_of(d, c, st->fingerprint), st, n);
    if (n > 0)
        memcpy(u->params + u->n_params, st->params, n * sizeof *u->params);
    u->n_params += n;
    if (!st->failed && !ignored) {
        s->first = s->count == 0 ? u->n : s->first;
        s->last = u->n;
        s->count++;
        if (st->is_select || st->is_insert)
            shape_example(d, s, st, r->tuple);
    }
    if ((r->flags & REC_ROWS) && !ignored && st->values != NULL && st->columns != NULL) {
        rslot *slot = slot_for(d, c, st);
        if (slot != NULL) {
            slot->used_at = c->counter;
            np1_slot_merge(slot, st, u->n);
        }
    }
    u->n++;
}

/* ---- examining a unit ---- */

/* What the examination knows of one SELECT shape repeated at least N times. */
typedef struct cand {
    uint32_t shape;
    const uint32_t *execs; /* record indices of its counted executions, in order */
    uint32_t count;
    uint32_t distinct; /* distinct parameter tuples */
    uint32_t top;      /* executions of its most repeated tuple */
    uint64_t top_tuple;
    bool loop;      /* proven to walk a parent's rows, or N distinct tuples after a parent */
    bool paged;     /* keyset pagination */
    bool inserts;   /* an INSERT shape whose every execution inserted one row */
    bool grouped;   /* reported as a child of a loop */
    int64_t parent; /* record index of its parent, -1 if none */
    child_proof proof;
} cand;

typedef struct exam {
    np1_detector *d;
    conn *c;
    unit *u;
    uint32_t *order; /* counted records grouped by shape, each group in unit order */
    uint32_t *off;   /* shape s's records start at order[off[s]] */
    cand *cands;
    uint32_t n_cands;
    uint32_t *cand_of; /* shape -> candidate index + 1, 0 if none */
    uint64_t *scratch; /* one per record */
} exam;

static bool counted(const urec *r)
{
    return !(r->flags & (REC_FAILED | REC_IGNORED | REC_CATALOG));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Parameter p of record r; false when it has fewer parameters. */
static bool param_at(const unit *u, const urec *r, int p, uint32_t *out)
{
    if (p >= r->n_params)
        return false;
    *out = u->params[r->param_off + (uint32_t)p];
    return true;
}

/* Counting sort of the counted records by shape. */
static bool exam_index(exam *e)
{
    unit *u = e->u;
    uint32_t at = 0;

    e->order = malloc((size_t)u->n * sizeof *e->order);
    e->off = calloc((size_t)u->n_shapes + 1, sizeof *e->off);
    e->cands = calloc(u->n_shapes, sizeof *e->cands);
    e->cand_of = calloc(u->n_shapes, sizeof *e->cand_of);
    e->scratch = malloc((size_t)u->n * sizeof *e->scratch);
    if (!e->order || !e->off || !e->cands || !e->cand_of || !e->scratch)
        return false;
    for (uint32_t s = 0; s < u->n_shapes; s++) {
        e->off[s] = at;
        at += u->shapes[s].count;
    }
    e->off[u->n_shapes] = at;
    for (uint32_t s = 0; s < u->n_shapes; s++)
        u->shapes[s].count = 0; /* refilled below, in order */
    for (uint32_t i = 0; i < u->n; i++) {
        if (!counted(&u->recs[i]))
            continue;
        shape *s = &u->shapes[u->recs[i].shape];
        e->order[e->off[u->recs[i].shape] + s->count++] = i;
    }
    return true;
}

/* Distinct tuples and the most repeated one. */
static void tuple_stats(exam *e, cand *k)
{
    uint64_t *t = e->scratch;
    uint32_t run = 0;

    for (uint32_t i = 0; i < k->count; i++)
        t[i] = e->u->recs[k->execs[i]].tuple;
    qsort(t, k->count, sizeof *t, cmp_u64);
    for (uint32_t i = 0; i < k->count; i++) {
        run = i > 0 && t[i] == t[i - 1] ? run + 1 : 1;
        k->distinct += run == 1;
        if (run > k->top) {
            k->top = run;
            k->top_tuple = t[i];
        }
    }
}

/* Keyset pagination: most executions after the first ask with a value of the previous
 * result, through the same parameter and column. */
static bool is_paged(exam *e, const cand *k)
{
    uint64_t *t = e->scratch;
    uint32_t n = 0, best = 0, run = 0;

    for (uint32_t i = 1; i < k->count; i++)
        if (e->u->recs[k->execs[i]].chain != 0)
            t[n++] = e->u->recs[k->execs[i]].chain;
    qsort(t, n, sizeof *t, cmp_u64);
    for (uint32_t i = 0; i < n; i++) {
        run = i > 0 && t[i] == t[i - 1] ? run + 1 : 1;
        best = run > best ? run : best;
    }
    return k->count > 1 && (double)best >= e->d->s.link_share * (double)(k->count - 1);
}

/* Whether every counted execution of the shape inserted one row. */
static bool one_row_inserts(const exam *e, const cand *k)
{
    for (uint32_t i = 0; i < k->count; i++)
        if (!(e->u->recs[k->execs[i]].flags & REC_ONE_INSERT))
            return false;
    return true;
}

/* SELECT shapes run N times or more (loops, duplicates, pages) and INSERT shapes run N times or
 * more, one row each (insert loops). */
static void exam_candidates(exam *e)
{
    unit *u = e->u;
    uint32_t n = (uint32_t)e->d->s.min_repeats;

    for (uint32_t s = 0; s < u->n_shapes; s++) {
        shape *sh = &u->shapes[s];
        if ((!sh->select && !sh->insert) || sh->count < n)
            continue;
        cand *k = &e->cands[e->n_cands];
        memset(k, 0, sizeof *k);
        k->shape = s;
        k->execs = e->order + e->off[s];
        k->count = sh->count;
        k->parent = -1;
        if (sh->insert) {
            k->inserts = one_row_inserts(e, k);
        } else {
            tuple_stats(e, k);
            k->paged = k->distinct >= n && is_paged(e, k);
        }
        e->cand_of[s] = ++e->n_cands;
    }
}

static bool within_factor_2(uint32_t a, uint32_t b)
{
    return a <= 2 * (uint64_t)b && b <= 2 * (uint64_t)a;
}

/* Whether shape y belongs to the body of k's loop: its executions interleave with k's and
 * their counts are close. The parent of a nested loop runs several times too, but much less
 * often than the inner loop. */
static bool in_body(const exam *e, const cand *k, uint32_t y_shape)
{
    const shape *x = &e->u->shapes[k->shape], *y = &e->u->shapes[y_shape];

    return within_factor_2(k->count, y->count) && y->first < x->last && x->first < y->last;
}

/* Two loops of one loop body. */
static bool siblings(const exam *e, const cand *a, const cand *b)
{
    return a != b && a->loop && b->loop && in_body(e, a, b->shape);
}

/* Whether proof a beats proof b: a proof first; among proofs the smaller chance of coincidence,
 * then the column whose rows the loop covers best; among the rest the higher share. */
static bool better_proof(const child_proof *a, const child_proof *b)
{
    if (a->confirmed != b->confirmed)
        return a->confirmed;
    if (a->confirmed && a->chance != b->chance)
        return a->chance < b->chance;
    if (a->confirmed && a->coverage != b->coverage)
        return a->coverage > b->coverage;
    return a->share > b->share;
}

/* How many of the values t[0..n) (sorted) each column of the slot holds. */
static void link_counts(const rslot *slot, const uint64_t *t, uint32_t n, uint32_t *hits)
{
    for (uint32_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && t[j] == t[i]; j++)
            ;
        for (uint16_t col = 0; t[i] != 0 && col < slot->n_columns; col++)
            if (np1_slot_find(slot, (uint32_t)t[i], col) != NULL)
                hits[col] += j - i;
    }
}

/* Value p of each execution in order (0 when it has fewer) into vals, their records into recs;
 * the values sorted into the scratch; returns how many distinct. */
static uint32_t param_values(exam *e, const cand *k, int p, uint32_t *vals, uint32_t *recs)
{
    uint32_t distinct = 0, v;

    for (uint32_t i = 0; i < k->count; i++) {
        recs[i] = k->execs[i];
        vals[i] = param_at(e->u, &e->u->recs[k->execs[i]], p, &v) ? v : 0;
        e->scratch[i] = vals[i];
    }
    qsort(e->scratch, k->count, sizeof *e->scratch, cmp_u64);
    for (uint32_t i = 0; i < k->count; i++)
        distinct += e->scratch[i] != 0 && (i == 0 || e->scratch[i] != e->scratch[i - 1]);
    return distinct;
}

/* Names the linked column: table.column when the parent reads one table. */
static void name_link(child_proof *pr, const rslot *slot, const shape *parent)
{
    const np1_column *col = &slot->columns[pr->column];

    snprintf(pr->col_name, sizeof pr->col_name, "%.*s", (int)strnlen(col->name, 63), col->name);
    if (parent->table != NULL)
        snprintf(pr->linked, sizeof pr->linked, "%s.%s", parent->table, pr->col_name);
    else if (col->table_oid != 0)
        snprintf(pr->linked, sizeof pr->linked, "table %u column %d", (unsigned)col->table_oid,
                 (int)col->attnum);
    else
        snprintf(pr->linked, sizeof pr->linked, "%s", pr->col_name);
}

/* Whether a walk proves the loop: most executions follow the column's rows, over most of the
 * rows walked, and a loop blind to the rows would hardly have done as well. */
static bool proven(const np1_detector *d, const np1_walk *w)
{
    return w->share >= d->s.link_share && w->coverage >= NP1_MIN_COVERAGE &&
           w->chance <= NP1_MAX_CHANCE;
}

/* Walks each varying value of the child's executions along each column of the parent's rows. */
static child_proof prove(exam *e, const cand *k, const rslot *slot, const shape *ps)
{
    child_proof best = {.param = 0, .column = -1, .chance = 1, .sampled = slot != NULL};
    uint32_t most = 0, hits[NP1_SLOT_COLS];
    uint32_t *vals = malloc(k->count * sizeof *vals), *recs = malloc(k->count * sizeof *recs);
    int params = e->u->recs[k->execs[0]].n_params;

    for (int p = 0; vals != NULL && recs != NULL && p < params; p++) {
        uint32_t distinct = param_values(e, k, p, vals, recs);
        if (distinct > most) {
            most = distinct;
            best.param = best.column < 0 ? p : best.param; /* the loop's value, a guess */
        }
        if (slot == NULL || distinct < 2)
            continue; /* a constant is not what the loop walks */
        memset(hits, 0, sizeof hits);
        link_counts(slot, e->scratch, k->count, hits);
        for (uint16_t col = 0; col < slot->n_columns; col++) {
            np1_walk w;
            if (hits[col] < 2)
                continue;
            np1_walk_column(slot, col, vals, recs, k->count, &w);
            child_proof pr = best;
            pr.param = p;
            pr.column = col;
            pr.share = w.share;
            pr.coverage = w.coverage;
            pr.chance = w.chance;
            pr.confirmed = proven(e->d, &w);
            if (w.matched > 0 && (best.column < 0 || better_proof(&pr, &best)))
                best = pr;
        }
    }
    free(vals);
    free(recs);
    if (best.column >= 0)
        name_link(&best, slot, ps);
    return best;
}

/* The shape index of fp in the unit, or UINT32_MAX. */
static uint32_t shape_of(const unit *u, uint64_t fp)
{
    if (u->by_fp_cap == 0 || u->by_fp[shape_place(u, fp)] == 0)
        return UINT32_MAX;
    return u->by_fp[shape_place(u, fp)] - 1;
}

/* Whether shape s can be k's parent: another SELECT, not the catalogs', not of k's loop body. */
static bool parent_shape(const exam *e, const cand *k, uint32_t s)
{
    const shape *sh = &e->u->shapes[s];

    return s != k->shape && sh->select && !sh->catalog && !in_body(e, k, s);
}

/* A suspected parent, when no result proves one: the nearest statement before the loop's second
 * execution (one lone earlier run of the child, a lookup of the current user, does not hide it)
 * that returned rows from a SELECT. An ignored statement stops the search. When its sampled rows
 * hold the loop's values and the walk along them goes against them (the loop skips most rows,
 * or goes its own order: ids the application had), the loop is not that statement's: no
 * parent. A walk that follows the rows but is too short to be sure leaves it suspected. */
static void suspect_parent(exam *e, cand *k)
{
    int64_t r = k->execs[k->count > 1 ? 1 : 0];

    while (--r >= 0) {
        const urec *rec = &e->u->recs[r];
        if (rec->flags & REC_IGNORED)
            return;
        if (rec->shape == k->shape || !(rec->flags & REC_ROWS) || rec->rows < 2 ||
            !parent_shape(e, k, rec->shape))
            continue;
        k->proof = prove(e, k, slot_of(e->d, e->c, e->u->shapes[rec->shape].fp),
                         &e->u->shapes[rec->shape]);
        bool consistent = k->proof.share >= e->d->s.link_share &&
                          k->proof.coverage >= NP1_MIN_COVERAGE; /* too short to be sure */
        if (k->proof.column < 0 || consistent)
            k->parent = r;
        k->proof.confirmed = false;
        return;
    }
}

/* The parent: the sampled result, of every one kept for the unit, that proves the loop best;
 * else a suspected one. */
static void find_parent(exam *e, cand *k)
{
    child_proof best = {.column = -1, .chance = 1};
    const rslot *from = NULL;

    for (int i = 0; i < e->d->s.results_kept; i++) {
        const rslot *slot = e->c->results[i];
        uint32_t s;
        if (slot == NULL || !slot->in_use || slot->unit != e->u->seq ||
            (s = shape_of(e->u, slot->fp)) == UINT32_MAX || !parent_shape(e, k, s))
            continue;
        child_proof pr = prove(e, k, slot, &e->u->shapes[s]);
        if (pr.confirmed && (from == NULL || better_proof(&pr, &best))) {
            best = pr;
            from = slot;
        }
    }
    if (from != NULL) {
        k->parent = from->first_rec;
        k->proof = best;
    } else {
        suspect_parent(e, k);
    }
}

static bool u_select(const exam *e, const cand *k)
{
    return e->u->shapes[k->shape].select;
}

static void exam_free(exam *e)
{
    free(e->order);
    free(e->off);
    free(e->cands);
    free(e->cand_of);
    free(e->scratch);
}

/* ---- findings ---- */

/* The pattern of one occurrence: what keys and names its finding. */
typedef struct pattern {
    np1_kind kind;
    const shape *parent; /* NULL for a duplicate */
    const shape *child[NP1_MAX_CHILDREN];
    child_proof proof[NP1_MAX_CHILDREN];
    int n_children;
} pattern;

static uint64_t pattern_key(const pattern *pt)
{
    uint64_t h = hash_mix64((uint64_t)pt->kind + 1);

    h = hash_mix64(h ^ (pt->parent != NULL ? pt->parent->fp : 0));
    for (int i = 0; i < pt->n_children; i++)
        h = hash_mix64(h ^ pt->child[i]->fp) + (uint64_t)i;
    return h;
}

static bool pattern_is(const finding *f, const pattern *pt)
{
    if (f->pub.kind != pt->kind || f->pub.n_children != pt->n_children ||
        f->pub.parent_fp != (pt->parent != NULL ? pt->parent->fp : 0))
        return false;
    for (int i = 0; i < pt->n_children; i++)
        if (f->pub.child_fp[i] != pt->child[i]->fp)
            return false;
    return true;
}

static bool fslots_grow(np1_detector *d)
{
    size_t cap = d->fslots_cap ? d->fslots_cap * 2 : 64;
    uint32_t *slots = calloc(cap, sizeof *slots);

    if (slots == NULL)
        return false;
    for (size_t i = 0; i < d->n_findings; i++) {
        size_t k = (size_t)(d->findings[i]->key & (cap - 1));
        while (slots[k] != 0)
            k = (k + 1) & (cap - 1);
        slots[k] = (uint32_t)i + 1;
    }
    free(d->fslots);
    d->fslots = slots;
    d->fslots_cap = cap;
    return true;
}

static finding *finding_find(const np1_detector *d, const pattern *pt, uint64_t key)
{
    if (d->fslots_cap == 0)
        return NULL;
    for (size_t k = key & (d->fslots_cap - 1); d->fslots[k] != 0; k = (k + 1) & (d->fslots_cap - 1))
        if (d->findings[d->fslots[k] - 1]->key == key &&
            pattern_is(d->findings[d->fslots[k] - 1], pt))
            return d->findings[d->fslots[k] - 1];
    return NULL;
}

/* Cuts a text's final ';' and spaces (Sequelize ends its statements with one): the fixes put the
 * text inside others. */
static void trim_end(char *text)
{
    size_t n = text != NULL ? strlen(text) : 0;

    while (n > 0 && (text[n - 1] == ';' || text[n - 1] == ' ' || text[n - 1] == '\n' ||
                     text[n - 1] == '\t' || text[n - 1] == '\r'))
        text[--n] = '\0';
}

/* Fills a new finding's names and texts; false if memory ran out. */
static bool finding_init(finding *f, const pattern *pt, uint64_t key)
{
    np1_finding *p = &f->pub;

    f->key = key;
    p->kind = pt->kind;
    p->parent_fp = pt->parent != NULL ? pt->parent->fp : 0;
    p->chance = 1;
    p->parent_query =
        np1_copy_text(pt->parent && pt->parent->query ? pt->parent->query : "", SIZE_MAX);
    p->linked_column = np1_copy_text("", 0);
    p->n_children = pt->n_children;
    if (pt->parent != NULL && pt->parent->table != NULL)
        f->parent_table = np1_copy_text(pt->parent->table, SIZE_MAX);
    trim_end(p->parent_query);
    for (int i = 0; i < pt->n_children; i++) {
        const char *q = pt->child[i]->query != NULL ? pt->child[i]->query : "";
        p->child_fp[i] = pt->child[i]->fp;
        p->child_query[i] = np1_copy_text(q, SIZE_MAX);
        trim_end(p->child_query[i]);
        fp_single_table(q, strlen(q), f->child_table[i], sizeof f->child_table[i]);
        if (p->child_query[i] == NULL)
            return false;
    }
    const char *orm = p->n_children > 0 ? np1_orm(p->child_query[0], p->parent_query) : NULL;
    snprintf(p->orm, sizeof p->orm, "%s", orm != NULL ? orm : "");
    return p->parent_query != NULL && p->linked_column != NULL &&
           (pt->parent == NULL || pt->parent->table == NULL || f->parent_table != NULL);
}

/* The finding of a pattern, created on first sight; NULL past NP1_MAX_FINDINGS or out of
 * memory (the occurrence is then dropped). */
static finding *finding_get(np1_detector *d, const pattern *pt)
{
    uint64_t key = pattern_key(pt);
    finding *f = finding_find(d, pt, key);

    if (f != NULL)
        return f;
    if (d->n_findings >= NP1_MAX_FINDINGS ||
        (2 * (d->n_findings + 1) > d->fslots_cap && !fslots_grow(d)) ||
        (d->n_findings == d->cap_findings &&
         !grow_array((void **)&d->findings, &d->cap_findings, (uint32_t)d->n_findings + 1,
                     sizeof *d->findings)) ||
        (f = calloc(1, sizeof *f)) == NULL)
        return NULL;
    if (!finding_init(f, pt, key)) {
        finding_free(f);
        return NULL;
    }
    size_t k = key & (d->fslots_cap - 1);
    while (d->fslots[k] != 0)
        k = (k + 1) & (d->fslots_cap - 1);
    d->fslots[k] = (uint32_t)d->n_findings + 1;
    d->findings[d->n_findings++] = f;
    return f;
}

/* What one occurrence adds to its finding. */
typedef struct occurrence {
    uint64_t n;
    double child_ms, saving_ms;
    int64_t first_us, last_us;
    const shape *examples_from;
    uint64_t prefer_tuple;  /* a duplicate's repeated tuple; 0: any */
    int same_results;       /* a duplicate's: see finding.same_results */
    const conn *c;          /* the connection it was seen on */
    const char *app, *tags; /* of its unit: the test it belongs to */
} occurrence;

static void add_example(np1_detector *d, finding *f, uint64_t tuple, const char *json)
{
    np1_finding *p = &f->pub;
    char *ex;

    if (p->n_examples >= NP1_MAX_EXAMPLES || (d->s.keep_params && json == NULL))
        return;
    for (int i = 0; i < p->n_examples; i++)
        if (f->ex_tuple[i] == tuple)
            return;
    ex = np1_copy_text(d->s.keep_params ? json : "[redacted]", SIZE_MAX);
    if (ex == NULL)
        return;
    f->ex_tuple[p->n_examples] = tuple;
    p->examples[p->n_examples++] = ex;
}

static void add_examples(np1_detector *d, finding *f, const occurrence *o)
{
    const shape *s = o->examples_from;

    for (int i = 0; i < s->n_ex; i++)
        if (o->prefer_tuple == 0 || s->ex_tuple[i] == o->prefer_tuple)
            add_example(d, f, s->ex_tuple[i], s->ex_json[i]);
}

static void set_severity(np1_finding *p)
{
    const char *sev = "low";

    if (p->saving_ms >= 100 || p->max_n >= 50)
        sev = "high";
    else if (p->saving_ms >= 10 || p->max_n >= 10)
        sev = "medium";
    snprintf(p->severity, sizeof p->severity, "%s", sev);
}

/* The proofs of an occurrence: the first confirmed link names the finding's column. */
static void take_proofs(np1_detector *d, finding *f, const pattern *pt)
{
    np1_finding *p = &f->pub;
    bool was = p->confirmed, fresh = p->suggestion == NULL;

    for (int i = 0; i < pt->n_children; i++) {
        if (pt->proof[i].share > f->best_share)
            f->best_share = pt->proof[i].share;
        if (pt->proof[i].confirmed && pt->proof[i].chance < p->chance)
            p->chance = pt->proof[i].chance;
        if (pt->proof[i].confirmed && !p->confirmed) {
            char *name = np1_copy_text(pt->proof[i].linked, SIZE_MAX);
            if (name == NULL)
                continue;
            free(p->linked_column);
            p->linked_column = name;
            p->confirmed = true;
        }
    }
    if (!was && (fresh || p->confirmed))
        memcpy(f->proof, pt->proof, sizeof f->proof);
    if (fresh || p->confirmed != was) {
        p->fix_check = 0; /* new statements: to be checked again */
        char *s = np1_suggestion(&d->s, f);
        if (s != NULL) {
            free(p->suggestion);
            p->suggestion = s;
        }
    }
}

/* A text missing when the finding was made (the unit's text budget was spent) and known now. */
static void fill_text(char **text, const shape *s)
{
    char *copy;

    if (s == NULL || (*text)[0] != '\0' || s->query == NULL || s->query[0] == '\0')
        return;
    if ((copy = np1_copy_text(s->query, SIZE_MAX)) != NULL) {
        free(*text);
        *text = copy;
    }
}

static void record(np1_detector *d, const pattern *pt, const occurrence *o)
{
    finding *f = finding_get(d, pt);
    np1_finding *p;

    if (f == NULL)
        return;
    p = &f->pub;
    if (p->database == NULL && o->c != NULL && o->c->database != NULL) {
        p->database = np1_copy_text(o->c->database, SIZE_MAX);
        p->user = np1_copy_text(o->c->user, SIZE_MAX);
    }
    if (p->test == NULL) {
        char test[256];
        np1_test_of(o->app, o->tags, test, sizeof(test));
        p->test = np1_copy_text(test, SIZE_MAX);
    }
    fill_text(&p->parent_query, pt->parent);
    for (int i = 0; i < pt->n_children; i++)
        fill_text(&p->child_query[i], pt->child[i]);
    p->first_us = p->occurrences == 0 || o->first_us < p->first_us ? o->first_us : p->first_us;
    p->last_us = o->last_us > p->last_us ? o->last_us : p->last_us;
    p->occurrences++;
    p->max_n = o->n > p->max_n ? o->n : p->max_n;
    p->total_n += o->n;
    p->total_ms += o->child_ms;
    p->saving_ms += o->saving_ms;
    add_examples(d, f, o);
    if (p->occurrences == 1)
        f->same_results = o->same_results;
    else if (f->same_results != 0 && o->same_results != 1)
        f->same_results = o->same_results; /* one that differed, or was not sampled, says so */
    take_proofs(d, f, pt);
    set_severity(p);
    p->dirty = true;
}

/* Time in the executions of k (those with tuple only, unless it is 0). */
static double exec_ms(const exam *e, const cand *k, uint64_t tuple, uint64_t *n)
{
    double ms = 0;

    *n = 0;
    for (uint32_t i = 0; i < k->count; i++) {
        const urec *r = &e->u->recs[k->execs[i]];
        if (tuple != 0 && r->tuple != tuple)
            continue;
        ms += ms_between(r->start_us, r->end_us);
        (*n)++;
    }
    return ms;
}

/* One loop: the children share a parent; one batched query each would replace them. */
static void record_loop(exam *e, cand **kids, int n)
{
    pattern pt = {.kind = NP1_N_PLUS_ONE, .n_children = n};
    occurrence o = {.n = kids[0]->count,
                    .examples_from = &e->u->shapes[kids[0]->shape],
                    .c = e->c,
                    .app = e->u->app,
                    .tags = e->u->tags};
    uint64_t runs;

    pt.parent = &e->u->shapes[e->u->recs[kids[0]->parent].shape];
    o.first_us = e->u->recs[kids[0]->execs[0]].start_us;
    for (int i = 0; i < n; i++) {
        const cand *k = kids[i];
        double ms = exec_ms(e, k, 0, &runs);
        pt.child[i] = &e->u->shapes[k->shape];
        pt.proof[i] = k->proof;
        o.child_ms += ms;
        o.saving_ms += runs > 0 ? ms - ms / (double)runs : 0;
        int64_t end = e->u->recs[k->execs[k->count - 1]].end_us;
        o.last_us = end > o.last_us ? end : o.last_us;
    }
    record(e->d, &pt, &o);
}

/* Whether the repeats of tuple returned the same sampled rows: 1, 0, or -1 when not sampled. */
static int same_results(const exam *e, const cand *k, uint64_t tuple)
{
    uint64_t first = 0;

    for (uint32_t i = 0; i < k->count; i++) {
        const urec *r = &e->u->recs[k->execs[i]];
        if (r->tuple != tuple)
            continue;
        if (r->result == 0)
            return -1;
        if (first != 0 && r->result != first)
            return 0;
        first = r->result;
    }
    return 1;
}

/* The same statement with the same values, again and again: a caching opportunity. */
static void record_duplicate(exam *e, const cand *k)
{
    pattern pt = {.kind = NP1_DUPLICATE, .n_children = 1};
    occurrence o = {.c = e->c,
                    .app = e->u->app,
                    .tags = e->u->tags,
                    .examples_from = &e->u->shapes[k->shape],
                    .prefer_tuple = k->top_tuple,
                    .same_results = same_results(e, k, k->top_tuple)};

    pt.child[0] = &e->u->shapes[k->shape];
    pt.proof[0].column = -1;
    pt.proof[0].chance = 1;
    o.child_ms = exec_ms(e, k, k->top_tuple, &o.n);
    o.saving_ms = o.n > 0 ? o.child_ms - o.child_ms / (double)o.n : 0;
    o.first_us = e->u->recs[k->execs[0]].start_us;
    o.last_us = e->u->recs[k->execs[k->count - 1]].end_us;
    record(e->d, &pt, &o);
}

/* One-row INSERTs of one shape, N times or more: one multi-row INSERT or COPY would do. */
static void record_inserts(exam *e, const cand *k)
{
    pattern pt = {.kind = NP1_BATCH_INSERT, .n_children = 1};
    occurrence o = {.c = e->c,
                    .app = e->u->app,
                    .tags = e->u->tags,
                    .examples_from = &e->u->shapes[k->shape],
                    .same_results = -1};

    pt.child[0] = &e->u->shapes[k->shape];
    pt.proof[0].column = -1;
    pt.proof[0].chance = 1;
    o.child_ms = exec_ms(e, k, 0, &o.n);
    o.saving_ms = o.n > 0 ? o.child_ms - o.child_ms / (double)o.n : 0;
    o.first_us = e->u->recs[k->execs[0]].start_us;
    o.last_us = e->u->recs[k->execs[k->count - 1]].end_us;
    record(e->d, &pt, &o);
}

/* Loops with the same parent whose executions interleave are one loop body: one finding. */
static void exam_groups(exam *e)
{
    cand *kids[NP1_MAX_CHILDREN];

    for (uint32_t i = 0; i < e->n_cands; i++) {
        cand *k = &e->cands[i];
        int n = 1;
        if (!k->loop || k->parent < 0 || k->grouped)
            continue;
        kids[0] = k;
        k->grouped = true;
        for (uint32_t j = i + 1; j < e->n_cands && n < NP1_MAX_CHILDREN; j++) {
            cand *o = &e->cands[j];
            if (o->loop && !o->grouped && o->parent == k->parent && siblings(e, k, o)) {
                o->grouped = true;
                kids[n++] = o;
            }
        }
        record_loop(e, kids, n);
    }
}

/* ---- units: opening, closing, examining ---- */

static void examine(np1_detector *d, conn *c)
{
    exam e = {.d = d, .c = c, .u = &c->u};

    if (c->u.n > 0 && exam_index(&e)) {
        bool setup = false; /* a schema created, then rows inserted: a test runner's setup */
        for (uint32_t s = 0; s < c->u.n_shapes; s++)
            setup |= c->u.shapes[s].ddl;
        exam_candidates(&e);
        for (uint32_t i = 0; i < e.n_cands; i++) {
            cand *k = &e.cands[i];
            if (k->paged || !u_select(&e, k))
                continue;
            find_parent(&e, k);
            /* A proven loop may ask for few distinct values (books of three authors); an
             * unproven one needs N distinct tuples and a parent before it. */
            k->loop =
                k->parent >= 0 && (k->proof.confirmed || k->distinct >= (uint32_t)d->s.min_repeats);
        }
        exam_groups(&e);
        for (uint32_t i = 0; i < e.n_cands; i++) {
            const cand *k = &e.cands[i];
            if (k->inserts && !setup)
                record_inserts(&e, k);
            else if (!k->grouped && !k->paged && u_select(&e, k) &&
                     k->top >= (uint32_t)d->s.min_repeats)
                record_duplicate(&e, k);
        }
    }
    exam_free(&e);
}

/* Records the streak when it is long enough, and empties it. */
static void streak_end(np1_detector *d, conn *c)
{
    streak *k = &c->streak;

    if (k->s.count >= (uint32_t)d->s.min_repeats) {
        pattern pt = {.kind = NP1_BATCH_INSERT, .n_children = 1};
        occurrence o = {.c = c,
                        .app = k->app,
                        .tags = k->tags,
                        .n = k->s.count,
                        .child_ms = k->ms,
                        .examples_from = &k->s,
                        .first_us = k->first_us,
                        .last_us = k->last_us,
                        .same_results = -1};
        pt.child[0] = &k->s;
        pt.proof[0].column = -1;
        pt.proof[0].chance = 1;
        o.saving_ms = k->ms - k->ms / (double)k->s.count;
        record(d, &pt, &o);
    }
    free(k->s.query);
    free(k->s.table);
    for (int i = 0; i < k->s.n_ex; i++)
        free(k->s.ex_json[i]);
    free(k->app);
    free(k->tags);
    memset(k, 0, sizeof *k);
}

/* The one-row INSERT of a unit that holds nothing else but transaction control, or NULL (a
 * migration's DDL and its bookkeeping INSERT are no part of an insert loop). */
static const urec *lone_insert(const unit *u)
{
    const urec *found = NULL;

    for (uint32_t i = 0; i < u->n; i++) {
        const urec *r = &u->recs[i];
        const shape *s = &u->shapes[r->shape];
        if (!counted(r))
            continue;
        bool lone = s->insert && found == NULL && (r->flags & REC_ONE_INSERT);
        if (!lone && !s->control)
            return NULL;
        if (s->insert)
            found = r;
    }
    return found;
}

/* Follows one-row INSERT units of one shape that come one right after the other. */
static void streak_follow(np1_detector *d, conn *c)
{
    streak *k = &c->streak;
    const urec *r = lone_insert(&c->u);
    const shape *s = r != NULL ? &c->u.shapes[r->shape] : NULL;

    if (k->s.count > 0 && (s == NULL || s->fp != k->s.fp ||
                           elapsed(k->last_us, r->start_us) > (uint64_t)d->s.idle_gap_ms * 1000))
        streak_end(d, c);
    if (s == NULL)
        return;
    if (k->s.count == 0) {
        k->s.fp = s->fp;
        k->s.insert = true;
        k->s.query = np1_copy_text(s->query, SIZE_MAX);
        k->s.table = s->table != NULL ? np1_copy_text(s->table, SIZE_MAX) : NULL;
        k->first_us = r->start_us;
        k->app = np1_copy_text(c->u.app, 1024);
        k->tags = np1_copy_text(c->u.tags, 4096);
    }
    for (int i = 0; i < s->n_ex && k->s.n_ex < NP1_MAX_EXAMPLES; i++) {
        k->s.ex_tuple[k->s.n_ex] = s->ex_tuple[i];
        k->s.ex_json[k->s.n_ex] =
            s->ex_json[i] != NULL ? np1_copy_text(s->ex_json[i], SIZE_MAX) : NULL;
        k->s.n_ex += s->ex_json[i] == NULL || k->s.ex_json[k->s.n_ex] != NULL;
    }
    k->s.count++;
    k->ms += ms_between(r->start_us, r->end_us);
    k->last_us = r->end_us;
}

static void close_unit(np1_detector *d, conn *c)
{
    examine(d, c);
    streak_follow(d, c);
    unit_reset(&c->u);
}

static void open_unit(conn *c, const np1_stmt *st)
{
    unit *u = &c->u;

    u->open = true;
    u->in_txn = st->txn_status == 'T' || st->txn_status == 'E';
    u->seq = ++c->units;
    u->app = np1_copy_text(st->application_name, 1024);
    u->tags = np1_copy_text(st->tags, 4096);
}

/* Whether st starts a new unit: another application_name or set of sqlcommenter tags (a test
 * or a request), inside a transaction too, as a test runner may keep one around a whole class;
 * else a run outside a transaction ends at a transaction or a pause longer than the gap, and a
 * transaction where the status returns to idle. */
static bool ends_before(const np1_detector *d, const conn *c, const np1_stmt *st)
{
    const unit *u = &c->u;

    if (!np1_same_text(u->app, st->application_name) || !np1_same_text(u->tags, st->tags))
        return true; /* another test or request, inside one transaction too */
    if (u->in_txn)
        return false;
    if (st->txn_status == 'T' || st->txn_status == 'E')
        return true;
    return elapsed(c->last_end_us, st->start_us) > (uint64_t)d->s.idle_gap_ms * 1000;
}

void np1_statement(np1_detector *d, const np1_stmt *st)
{
    conn *c;
    bool ignored;

    if (d == NULL || st == NULL)
        return;
    c = conn_find(d, st->conn_id);
    if (c == NULL && (c = conn_add(d, st->conn_id)) == NULL)
        return;
    c->counter++;
    if (c->database == NULL && st->database != NULL) {
        c->database = np1_copy_text(st->database, 256);
        c->user = st->user != NULL ? np1_copy_text(st->user, 256) : NULL;
    }
    ignored = allow_listed(d, st); /* always: it marks the entries that matched */
    ignored = ignored || st->ignored;
    if (c->u.open && ends_before(d, c, st))
        close_unit(d, c);
    if (!c->u.open)
        open_unit(c, st);
    unit_add(d, c, st, ignored);
    c->last_end_us = st->end_us;
    if (c->u.in_txn && st->txn_status == 'I')
        close_unit(d, c);
}

void np1_disconnect(np1_detector *d, uint64_t conn_id)
{
    conn *c = d != NULL ? conn_find(d, conn_id) : NULL;

    if (c == NULL)
        return;
    if (c->u.open)
        close_unit(d, c);
    streak_end(d, c);
    conn_remove(d, c);
}

/* A run outside a transaction ends after the gap; an open transaction is examined only when it
 * has been idle for a long time (or at the end of the run, now_us = INT64_MAX). */
/* Closes units idle for longer than the gap (a transaction's: NP1_TXN_IDLE_US). A connection
 * whose unit is closed and that has been idle for NP1_CONN_IDLE_US is dropped: its result
 * samples (up to results_kept x NP1_SLOT_VALUES values) serve only its open unit, and so an
 * idle connection, or one whose end the analysis never heard of (its event was dropped with
 * the queue full), holds no memory. Should it send again, it starts afresh. */
void np1_tick(np1_detector *d, int64_t now_us)
{
    if (d == NULL)
        return;
    for (size_t b = 0; b < d->n_buckets; b++) {
        for (conn *c = d->buckets[b], *next; c != NULL; c = next) {
            next = c->next;
            uint64_t idle = elapsed(c->last_end_us, now_us);
            uint64_t limit = c->u.in_txn ? NP1_TXN_IDLE_US : (uint64_t)d->s.idle_gap_ms * 1000;
            if (c->u.open && idle > limit)
                close_unit(d, c);
            if (!c->u.open && c->streak.s.count > 0 && idle > (uint64_t)d->s.idle_gap_ms * 1000)
                streak_end(d, c);
            if (!c->u.open && idle > NP1_CONN_IDLE_US)
                conn_remove(d, c);
        }
    }
}

void np1_take_dirty(np1_detector *d, bool all, void (*fn)(np1_finding *f, void *arg), void *arg)
{
    for (size_t i = 0; d != NULL && i < d->n_findings; i++) {
        np1_finding *f = &d->findings[i]->pub;
        if (all || f->dirty)
            fn(f, arg);
        f->dirty = false;
    }
}

void np1_each(np1_detector *d, void (*fn)(np1_finding *f, void *arg), void *arg)
{
    for (size_t i = 0; d != NULL && i < d->n_findings; i++)
        fn(&d->findings[i]->pub, arg);
}

void np1_unused_ignores(const np1_detector *d, void (*fn)(const char *entry, void *arg), void *arg)
{
    for (int i = 0; d != NULL && i < d->s.n_ignore; i++)
        if (!d->ignore_used[i])
            fn(d->ignore[i], arg);
}

int np1_fix_sql(const np1_finding *f, char **out, int max)
{
    int n = 0;

    if (f == NULL || f->kind != NP1_N_PLUS_ONE || f->suggestion == NULL)
        return 0;
    /* the fix's statements are its lines indented by five spaces */
    for (const char *line = f->suggestion; *line != '\0' && n < max;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 12 && strncmp(line, "     SELECT ", 12) == 0 &&
            (out[n] = np1_copy_text(line + 5, len - 5)) != NULL)
            n++;
        line += len + (end != NULL);
    }
    return n;
}

void np1_fix_rejected(np1_detector *d, np1_finding *pub, const char *sql, const char *why)
{
    finding *f = (finding *)pub; /* the public part comes first */

    if (d == NULL || f == NULL || sql == NULL || f->n_rejected > NP1_MAX_CHILDREN)
        return;
    for (int i = 0; i < f->n_rejected; i++)
        if (strcmp(f->rejected[i], sql) == 0)
            return;
    f->rejected[f->n_rejected] = np1_copy_text(sql, SIZE_MAX);
    f->rejected_why[f->n_rejected] = np1_copy_text(why != NULL ? why : "", 200);
    if (f->rejected[f->n_rejected] == NULL || f->rejected_why[f->n_rejected] == NULL) {
        free(f->rejected[f->n_rejected]);
        free(f->rejected_why[f->n_rejected]);
        return;
    }
    f->n_rejected++;
    char *text = np1_suggestion(&d->s, f);
    if (text != NULL) {
        free(pub->suggestion);
        pub->suggestion = text;
    }
    pub->dirty = true;
}
