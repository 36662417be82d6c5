/* nplusone.c — N+1 loops and duplicate queries per connection, proven and written up as fixes. */
#include "config.h"

#include "pgscope/nplusone.h"
#include "pgscope/hash.h"

#include "pgscope/fingerprint.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NP1_MAX_PARAMS 64           /* parameters of a statement kept (positions fit a byte) */
#define NP1_SLOT_COLS 32            /* columns of a sampled result kept */
#define NP1_SLOT_VALUES 8192        /* distinct (column, value) pairs kept per result slot */
#define NP1_TEXT_MAX 8192           /* bytes kept of a normalized text */
#define NP1_UNIT_TEXTS (1 << 20)    /* bytes of texts one open unit may hold */
#define NP1_VALUE_MAX 64            /* bytes kept of one example value */
#define NP1_EXAMPLE_MAX 512         /* bytes of one example tuple, as JSON */
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

/* A copy of at most max bytes of s, cut at a UTF-8 character boundary; NULL if s is NULL or
 * memory ran out. */
static char *copy_text(const char *s, size_t max)
{
    size_t n;
    char *out;

    if (s == NULL)
        return NULL;
    n = strnlen(s, max == SIZE_MAX ? max : max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

static bool same_or_both_empty(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool equal_nocase(const char *a, const char *b)
{
    for (; *a && lower((unsigned char)*a) == lower((unsigned char)*b); a++, b++)
        ;
    return *a == '\0' && *b == '\0';
}

/* ---- a growable string ---- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_add(sbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
    } else if ((size_t)n < sizeof small) {
        sb_addn(b, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            b->failed = true;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        sb_addn(b, big, (size_t)n);
        free(big);
    }
}

/* The string built, owned by the caller; NULL if memory ran out along the way. */
static char *sb_take(sbuf *b)
{
    if (b->failed) {
        free(b->s);
        return NULL;
    }
    return b->s != NULL ? b->s : copy_text("", 0);
}

/* ---- example tuples as JSON ---- */

/* The length of the valid UTF-8 character at s (n bytes left), or 0 if it is not one. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xE0) == 0xC0 ? 2
                 : (s[0] & 0xF0) == 0xE0 ? 3
                 : (s[0] & 0xF8) == 0xF0 ? 4
                                         : 0;

    if (len == 0 || len > n || (len == 2 && s[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* A JSON string of at most NP1_VALUE_MAX bytes of v; bytes that are not UTF-8 become '?'. */
static void json_value(sbuf *b, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v), used = 0;

    sb_add(b, "\"");
    for (size_t i = 0; i < n && used < NP1_VALUE_MAX;) {
        size_t k = utf8_char(s + i, n - i);
        if (k == 0) {
            sb_add(b, "?");
            i++;
        } else if (s[i] == '"' || s[i] == '\\') {
            sb_printf(b, "\\%c", s[i]);
            i++;
        } else if (s[i] < 0x20) {
            sb_printf(b, "\\u%04x", s[i]);
            i++;
        } else {
            sb_addn(b, v + i, k);
            i += k;
        }
        used += k ? k : 1;
    }
    sb_add(b, used < n ? "...\"" : "\"");
}

/* ["v1","v2",null]: values past the size budget are left out. */
static char *example_json(const np1_stmt *st)
{
    sbuf b = {0};

    sb_add(&b, "[");
    for (uint16_t i = 0; i < st->n_params && b.n < NP1_EXAMPLE_MAX; i++) {
        if (i > 0)
            sb_add(&b, ",");
        if (st->param_text[i] == NULL)
            sb_add(&b, "null");
        else
            json_value(&b, st->param_text[i]);
    }
    sb_add(&b, "]");
    return sb_take(&b);
}

/* ---- result slots: the sampled values of recent results, one slot per fingerprint ---- */

typedef struct sval {
    uint32_t hash; /* 0: empty (0 is NULL, never kept) */
    uint32_t exec; /* the latest result of the slot that held it */
    uint16_t col;
} sval;

typedef struct rslot {
    uint64_t fp;
    uint64_t unit;    /* the unit its results came from */
    uint64_t used_at; /* statement counter at the last merge: least recently used goes first */
    uint32_t execs;   /* results merged */
    uint16_t n_columns, cap_columns;
    np1_column *columns;
    uint32_t col_values[NP1_SLOT_COLS]; /* distinct values per column */
    sval *set;
    uint32_t set_cap, set_n; /* set_cap is 0 or a power of two */
    bool in_use;
} rslot;

static size_t sval_home(uint32_t hash, uint16_t col, uint32_t mask)
{
    return (size_t)(hash_mix64(((uint64_t)col << 32) | hash) & mask);
}

static sval *slot_find(const rslot *s, uint32_t hash, uint16_t col)
{
    if (s->set_cap == 0 || hash == 0)
        return NULL;
    for (size_t i = sval_home(hash, col, s->set_cap - 1);; i = (i + 1) & (s->set_cap - 1)) {
        sval *v = &s->set[i];
        if (v->hash == 0)
            return NULL;
        if (v->hash == hash && v->col == col)
            return v;
    }
}

/* Doubles the set (kept at most half full); false when it may not or cannot grow. */
static bool slot_grow(rslot *s)
{
    uint32_t cap = s->set_cap ? s->set_cap * 2 : 64;
    sval *set;

    if (cap > 2 * NP1_SLOT_VALUES || (set = calloc(cap, sizeof *set)) == NULL)
        return false;
    for (uint32_t i = 0; i < s->set_cap; i++) {
        sval *v = &s->set[i];
        if (v->hash == 0)
            continue;
        size_t k = sval_home(v->hash, v->col, cap - 1);
        while (set[k].hash != 0)
            k = (k + 1) & (cap - 1);
        set[k] = *v;
    }
    free(s->set);
    s->set = set;
    s->set_cap = cap;
    return true;
}

static void slot_insert(rslot *s, uint32_t hash, uint16_t col)
{
    sval *v = slot_find(s, hash, col);

    if (v != NULL) {
        v->exec = s->execs;
        return;
    }
    if (s->set_n >= NP1_SLOT_VALUES || (2 * (s->set_n + 1) > s->set_cap && !slot_grow(s)))
        return; /* full: the sample stays what it is */
    size_t k = sval_home(hash, col, s->set_cap - 1);
    while (s->set[k].hash != 0)
        k = (k + 1) & (s->set_cap - 1);
    s->set[k] = (sval){hash, s->execs, col};
    s->set_n++;
    s->col_values[col]++;
}

/* Empties the slot for fp's results; false (and the slot unused) if memory ran out. */
static bool slot_reset(rslot *s, uint64_t fp, uint64_t unit, const np1_stmt *st)
{
    uint16_t n = st->n_columns < NP1_SLOT_COLS ? st->n_columns : NP1_SLOT_COLS;

    if (s->set != NULL)
        memset(s->set, 0, s->set_cap * sizeof *s->set);
    s->set_n = 0;
    s->execs = 0;
    s->in_use = false;
    if (n > s->cap_columns) {
        np1_column *grown = realloc(s->columns, n * sizeof *grown);
        if (grown == NULL)
            return false;
        s->columns = grown;
        s->cap_columns = n;
    }
    s->fp = fp;
    s->unit = unit;
    s->in_use = true;
    s->n_columns = n;
    memcpy(s->columns, st->columns, n * sizeof *s->columns);
    memset(s->col_values, 0, sizeof s->col_values);
    return true;
}

static void slot_merge(rslot *s, const np1_stmt *st)
{
    s->execs++;
    for (uint32_t r = 0; r < st->rows; r++)
        for (uint16_t c = 0; c < s->n_columns; c++)
            if (st->values[(size_t)r * st->n_columns + c] != 0)
                slot_insert(s, st->values[(size_t)r * st->n_columns + c], c);
}

/* ---- units of work ---- */

enum { REC_FAILED = 1, REC_IGNORED = 2, REC_ROWS = 4 };

/* A statement of the open unit, as much of it as the examination needs. */
typedef struct urec {
    int64_t start_us, end_us;
    uint64_t tuple;     /* hash of the whole parameter tuple */
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
    bool select;
} shape;

typedef struct unit {
    bool open, in_txn;
    uint64_t seq;
    char *app, *tags; /* of a run outside a transaction: a change ends it */
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

typedef struct conn {
    uint64_t id;
    struct conn *next; /* in its hash bucket */
    unit u;
    rslot **results; /* settings.results_kept slots, each allocated when first needed */
    uint64_t counter;
    uint64_t units;
    int64_t last_end_us;
} conn;

/* ---- findings ---- */

/* What the examination learnt of one child of a loop. */
typedef struct child_proof {
    int param;       /* the loop's parameter (0-based): proven, or the most varied */
    int column;      /* parent column holding its values; -1 if none */
    double share;    /* of executions whose value is in that column */
    double coverage; /* of that column's values the loop asked for */
    bool confirmed;
    bool sampled;      /* the parent's result was still sampled */
    char col_name[64]; /* the parent column's field name */
    char linked[320];  /* "orders.customer_id", "table 16385 column 3", or the name */
} child_proof;

typedef struct finding {
    np1_finding pub; /* first: a pointer to it is a pointer to the finding */
    uint64_t key;
    uint64_t ex_tuple[NP1_MAX_EXAMPLES];
    char *parent_table;
    char child_table[NP1_MAX_CHILDREN][128];
    child_proof proof[NP1_MAX_CHILDREN]; /* of the confirmed occurrence, else the latest */
    double best_share;
} finding;

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
        int c = lower((unsigned char)s[i]);
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
        d->ignore[i] = copy_text(s->ignore[i] != NULL ? s->ignore[i] : "", 256);
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
    for (int i = 0; c->results != NULL && i < d->s.results_kept; i++) {
        if (c->results[i] != NULL) {
            free(c->results[i]->set);
            free(c->results[i]->columns);
        }
        free(c->results[i]);
    }
    free(c->results);
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
    if (equal_nocase(entry, table))
        return true;
    if (te != NULL && ee == NULL)
        return equal_nocase(entry, te + 1);
    if (ee != NULL && te == NULL)
        return equal_nocase(ee + 1, table);
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
    if (u->text_bytes < NP1_UNIT_TEXTS) {
        s->query = copy_text(st->query != NULL ? st->query : "", NP1_TEXT_MAX);
        u->text_bytes += s->query != NULL ? strlen(s->query) : 0;
    }
    if (st->table != NULL && st->table[0] != '\0')
        s->table = copy_text(st->table, 255);
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
        s->ex_json[s->n_ex] = example_json(st);
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
    return slot_reset(s, st->fingerprint, c->u.seq, st) ? s : NULL;
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
            const sval *v = slot_find(s, st->params[p], col);
            if (v != NULL && v->exec == s->execs)
                return (uint16_t)(1 + (p << 8 | col));
        }
    }
    return 0;
}

static uint8_t rec_flags(const np1_stmt *st, bool ignored)
{
    uint8_t f = 0;

    if (st->failed)
        f |= REC_FAILED;
    if (ignored)
        f |= REC_IGNORED;
    if (!st->failed && st->rows > 0 && st->n_columns > 0)
        f |= REC_ROWS;
    return f;
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
                .shape = si,
                .param_off = u->n_params,
                .n_params = n,
                .flags = rec_flags(st, ignored)};
    if (!st->failed && !ignored && st->is_select)
        r->chain = chain_of(u, s, slot_of(d, c, st->fingerprint), st, n);
    if (n > 0)
        memcpy(u->params + u->n_params, st->params, n * sizeof *u->params);
    u->n_params += n;
    if (!st->failed && !ignored) {
        s->first = s->count == 0 ? u->n : s->first;
        s->last = u->n;
        s->count++;
        if (st->is_select)
            shape_example(d, s, st, r->tuple);
    }
    if ((r->flags & REC_ROWS) && !ignored && st->values != NULL && st->columns != NULL) {
        rslot *slot = slot_for(d, c, st);
        if (slot != NULL) {
            slot->used_at = c->counter;
            slot_merge(slot, st);
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
    bool loop; /* N or more distinct tuples, and not keyset pagination */
    bool paged;
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
    return !(r->flags & (REC_FAILED | REC_IGNORED));
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

static void exam_candidates(exam *e)
{
    unit *u = e->u;
    uint32_t n = (uint32_t)e->d->s.min_repeats;

    for (uint32_t s = 0; s < u->n_shapes; s++) {
        shape *sh = &u->shapes[s];
        if (!sh->select || sh->count < n)
            continue;
        cand *k = &e->cands[e->n_cands];
        memset(k, 0, sizeof *k);
        k->shape = s;
        k->execs = e->order + e->off[s];
        k->count = sh->count;
        k->parent = -1;
        tuple_stats(e, k);
        k->paged = k->distinct >= n && is_paged(e, k);
        k->loop = k->distinct >= n && !k->paged;
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

/* Whether proof a beats proof b: a link found first; among links the column whose values
 * the loop covers best (orders.id and orders.customer_id may both hold every customer id
 * asked for, but the loop asks for all of customer_id's), then the higher share. */
static bool better_proof(const child_proof *a, const child_proof *b, double need)
{
    bool ea = a->share >= need, eb = b->share >= need;

    if (ea != eb)
        return ea;
    if (ea && a->coverage != b->coverage)
        return a->coverage > b->coverage;
    if (a->share != b->share)
        return a->share > b->share;
    return !ea && a->coverage > b->coverage;
}

/* How often each column of the slot holds the values of parameter p (sorted in t[0..n)). */
static void link_counts(const rslot *slot, const uint64_t *t, uint32_t n, uint32_t *hits,
                        uint32_t *dhits)
{
    for (uint32_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && t[j] == t[i]; j++)
            ;
        for (uint16_t col = 0; t[i] != 0 && col < slot->n_columns; col++) {
            if (slot_find(slot, (uint32_t)t[i], col) != NULL) {
                hits[col] += j - i;
                dhits[col]++;
            }
        }
    }
}

/* The values of parameter p over the executions, sorted; returns how many distinct. */
static uint32_t param_values(exam *e, const cand *k, int p, uint32_t *n_out)
{
    uint32_t n = 0, distinct = 0, v;

    for (uint32_t i = 0; i < k->count; i++)
        if (param_at(e->u, &e->u->recs[k->execs[i]], p, &v))
            e->scratch[n++] = v;
    qsort(e->scratch, n, sizeof *e->scratch, cmp_u64);
    for (uint32_t i = 0; i < n; i++)
        distinct += i == 0 || e->scratch[i] != e->scratch[i - 1];
    *n_out = n;
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

/* Matches the child's parameters with the columns of the parent's sampled result. */
static child_proof prove(exam *e, const cand *k, uint32_t parent_shape)
{
    const shape *ps = &e->u->shapes[parent_shape];
    const rslot *slot = slot_of(e->d, e->c, ps->fp);
    child_proof best = {.param = 0, .column = -1, .sampled = slot != NULL};
    uint32_t most = 0, hits[NP1_SLOT_COLS], dhits[NP1_SLOT_COLS], n;
    int params = e->u->recs[k->execs[0]].n_params;

    for (int p = 0; p < params; p++) {
        uint32_t distinct = param_values(e, k, p, &n);
        if (distinct > most) {
            most = distinct;
            best.param = best.column < 0 ? p : best.param; /* the loop's parameter, a guess */
        }
        if (slot == NULL || distinct < 2)
            continue; /* a constant parameter is not what the loop walks */
        memset(hits, 0, sizeof hits);
        memset(dhits, 0, sizeof dhits);
        link_counts(slot, e->scratch, n, hits, dhits);
        for (uint16_t col = 0; col < slot->n_columns; col++) {
            child_proof pr = best;
            pr.param = p;
            pr.column = col;
            pr.share = (double)hits[col] / (double)k->count;
            pr.coverage = slot->col_values[col] ? (double)dhits[col] / slot->col_values[col] : 0;
            if (hits[col] > 0 && (best.column < 0 || better_proof(&pr, &best, e->d->s.link_share)))
                best = pr;
        }
    }
    best.confirmed = best.column >= 0 && best.share >= e->d->s.link_share;
    if (best.column >= 0)
        name_link(&best, slot, ps);
    return best;
}

/* Whether r, a statement before the child's first execution, can stand as its parent. */
static bool parent_like(const exam *e, const cand *k, const urec *r)
{
    return r->shape != k->shape && (r->flags & REC_ROWS) && !in_body(e, k, r->shape);
}

/* The parent: the nearest earlier statement of another shape that returned rows (siblings in
 * the loop body skipped), or a farther one whose result proves the link. An ignored
 * statement stops the search: what lies behind it is not this loop's parent. */
static void find_parent(exam *e, cand *k)
{
    uint64_t seen[NP1_MAX_RESULTS_KEPT];
    int n_seen = 0;
    int64_t r = e->u->shapes[k->shape].first;

    while (--r >= 0 && n_seen < e->d->s.results_kept) {
        const urec *rec = &e->u->recs[r];
        bool dup = false;
        if (!parent_like(e, k, rec))
            continue;
        if (rec->flags & REC_IGNORED)
            return;
        for (int i = 0; i < n_seen; i++)
            dup |= seen[i] == e->u->shapes[rec->shape].fp;
        if (dup)
            continue;
        seen[n_seen++] = e->u->shapes[rec->shape].fp;
        child_proof pr = prove(e, k, rec->shape);
        if (k->parent < 0 || pr.confirmed) {
            k->parent = r;
            k->proof = pr;
        }
        if (pr.confirmed)
            return;
    }
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

/* Fills a new finding's names and texts; false if memory ran out. */
static bool finding_init(finding *f, const pattern *pt, uint64_t key)
{
    np1_finding *p = &f->pub;

    f->key = key;
    p->kind = pt->kind;
    p->parent_fp = pt->parent != NULL ? pt->parent->fp : 0;
    p->parent_query = copy_text(pt->parent && pt->parent->query ? pt->parent->query : "", SIZE_MAX);
    p->linked_column = copy_text("", 0);
    p->n_children = pt->n_children;
    if (pt->parent != NULL && pt->parent->table != NULL)
        f->parent_table = copy_text(pt->parent->table, SIZE_MAX);
    for (int i = 0; i < pt->n_children; i++) {
        const char *q = pt->child[i]->query != NULL ? pt->child[i]->query : "";
        p->child_fp[i] = pt->child[i]->fp;
        p->child_query[i] = copy_text(q, SIZE_MAX);
        fp_single_table(q, strlen(q), f->child_table[i], sizeof f->child_table[i]);
        if (p->child_query[i] == NULL)
            return false;
    }
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
    uint64_t prefer_tuple; /* a duplicate's repeated tuple; 0: any */
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
    ex = copy_text(d->s.keep_params ? json : "[redacted]", SIZE_MAX);
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

static char *build_suggestion(const np1_detector *d, const finding *f);

/* The proofs of an occurrence: the first confirmed link names the finding's column. */
static void take_proofs(np1_detector *d, finding *f, const pattern *pt)
{
    np1_finding *p = &f->pub;
    bool was = p->confirmed, fresh = p->suggestion == NULL;

    for (int i = 0; i < pt->n_children; i++) {
        if (pt->proof[i].share > f->best_share)
            f->best_share = pt->proof[i].share;
        if (pt->proof[i].confirmed && !p->confirmed) {
            char *name = copy_text(pt->proof[i].linked, SIZE_MAX);
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
        char *s = build_suggestion(d, f);
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
    if ((copy = copy_text(s->query, SIZE_MAX)) != NULL) {
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
    occurrence o = {.n = kids[0]->count, .examples_from = &e->u->shapes[kids[0]->shape]};
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

/* The same statement with the same parameters, again and again: a caching opportunity. */
static void record_duplicate(exam *e, const cand *k)
{
    pattern pt = {.kind = NP1_DUPLICATE, .n_children = 1};
    occurrence o = {.examples_from = &e->u->shapes[k->shape], .prefer_tuple = k->top_tuple};

    pt.child[0] = &e->u->shapes[k->shape];
    pt.proof[0].column = -1;
    o.child_ms = exec_ms(e, k, k->top_tuple, &o.n);
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

/* ---- reading normalized texts, for the suggestion ---- */

typedef struct qtok {
    uint32_t start, end;
    char kind; /* w word, q "quoted", p $n, n number, s 'string', o operator, else the byte */
} qtok;

typedef struct qtext {
    const char *s;
    qtok *t;
    uint32_t n;
} qtext;

static bool q_word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80 ||
           (c >= '0' && c <= '9') || c == '$';
}

/* The end of the quoted run from p (quote q, doubled quotes inside). */
static uint32_t q_quoted(const char *s, uint32_t p, char q)
{
    for (p++; s[p] != '\0'; p++)
        if (s[p] == q && s[++p] != q)
            return p;
    return p;
}

static uint32_t q_scan(const char *s, uint32_t p, char *kind)
{
    unsigned char c = (unsigned char)s[p];

    *kind = 'w';
    if (c == '"' || c == '\'') {
        *kind = c == '"' ? 'q' : 's';
        return q_quoted(s, p, (char)c);
    }
    if (c == '$' && s[p + 1] >= '0' && s[p + 1] <= '9')
        *kind = 'p';
    else if (c >= '0' && c <= '9')
        *kind = 'n';
    else if (strchr("+-*/<>=~!@#%^&|`?", c) != NULL)
        *kind = 'o';
    else if (!q_word_char(c) || c == '$')
        return *kind = (char)c, p + 1;
    if (*kind == 'o') {
        while (s[p] != '\0' && strchr("+-*/<>=~!@#%^&|`?", s[p]) != NULL)
            p++;
        return p;
    }
    for (p++; q_word_char((unsigned char)s[p]) || (*kind == 'n' && s[p] == '.'); p++)
        ;
    return p;
}

/* Tokens of a normalized text (libpg_query's, so no comments); false if out of memory. */
static bool q_lex(const char *s, qtext *q)
{
    size_t len = strlen(s);

    q->s = s;
    q->n = 0;
    q->t = malloc((len + 1) * sizeof *q->t);
    if (q->t == NULL)
        return false;
    for (uint32_t p = 0; s[p] != '\0';) {
        if (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r') {
            p++;
            continue;
        }
        qtok *t = &q->t[q->n++];
        t->start = p;
        p = q_scan(s, p, &t->kind);
        t->end = p;
    }
    return true;
}

static bool q_is(const qtext *q, uint32_t i, const char *w)
{
    size_t n = strlen(w);
    const qtok *t = &q->t[i];

    if (i >= q->n || t->end - t->start != n || (t->kind != 'w' && t->kind != 'o' && t->kind != 'p'))
        return false;
    for (size_t k = 0; k < n; k++)
        if (lower((unsigned char)q->s[t->start + k]) != (unsigned char)w[k])
            return false;
    return true;
}

static bool q_ch(const qtext *q, uint32_t i, char c)
{
    return i < q->n && q->t[i].kind == c;
}

/* The token $k compared with = (col = $k) or in IN ($k); q->n if there is none. */
static uint32_t q_find_param(const qtext *q, int k)
{
    char want[16];

    snprintf(want, sizeof want, "$%d", k);
    for (uint32_t i = 1; i < q->n; i++) {
        if (!q_is(q, i, want))
            continue;
        if (q_is(q, i - 1, "=") || (i >= 2 && q_ch(q, i - 1, '(') && q_is(q, i - 2, "in")))
            return i;
    }
    return q->n;
}

/* Parenthesis depth before each token is what the clause search needs. */
static uint32_t q_top_word(const qtext *q, uint32_t from, const char *const *words)
{
    int depth = 0;

    for (uint32_t i = from; i < q->n; i++) {
        depth += q_ch(q, i, '(') - q_ch(q, i, ')');
        for (const char *const *w = words; depth == 0 && *w != NULL; w++)
            if (q_is(q, i, *w))
                return i;
    }
    return q->n;
}

/* Writes an identifier, quoted when PostgreSQL would not read it back as it is. */
static void put_ident(sbuf *b, const char *name)
{
    bool plain = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9');

    for (const char *c = name; *c; c++)
        plain &= (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    if (plain) {
        sb_add(b, name);
        return;
    }
    sb_add(b, "\"");
    for (const char *c = name; *c; c++) {
        if (*c == '"')
            sb_add(b, "\"\"");
        else
            sb_addn(b, c, 1);
    }
    sb_add(b, "\"");
}

/* A table name: each dotted part an identifier. */
static void put_table(sbuf *b, const char *table)
{
    const char *dot = strchr(table, '.');
    char part[128];

    if (dot == NULL || (size_t)(dot - table) >= sizeof part) {
        put_ident(b, table);
        return;
    }
    memcpy(part, table, (size_t)(dot - table));
    part[dot - table] = '\0';
    put_ident(b, part);
    sb_add(b, ".");
    put_table(b, dot + 1);
}

static const char *const end_of_query[] = {"limit", "offset", "fetch", "for", NULL};

/* The child query batched: col = $k (or IN ($k)) becomes col = ANY($k); a final LIMIT, which
 * would cut the batched rows, is left out. NULL when the comparison is not found. */
static char *batched_query(const char *text, int k, bool *cut_limit)
{
    qtext q;
    sbuf b = {0};
    char any[24];
    uint32_t i, first, last;

    *cut_limit = false;
    if (!q_lex(text, &q))
        return NULL;
    i = q_find_param(&q, k);
    bool eq = i < q.n && q_is(&q, i - 1, "=");
    if (i < q.n && !eq && !q_ch(&q, i + 1, ')'))
        i = q.n; /* IN ($k, ...) or a text cut short: no one comparison to batch */
    if (i < q.n) {
        first = eq ? i : i - 2; /* $k, or IN ( $k ) */
        last = eq ? i : i + 1;
        /* The search starts after the replaced tokens, at their depth, so the LIMIT found comes
         * after them: stop >= end, whatever the text (a fallback text need not be SQL). */
        uint32_t lim = q_top_word(&q, last + 1, end_of_query);
        size_t end = q.t[last].end, stop = lim < q.n ? q.t[lim].start : strlen(text);
        *cut_limit = lim < q.n;
        while (stop > end && text[stop - 1] == ' ')
            stop--;
        snprintf(any, sizeof any, "%sANY($%d)", eq ? "" : "= ", k);
        sb_addn(&b, text, q.t[first].start);
        sb_add(&b, any);
        sb_addn(&b, text + end, stop - end);
    }
    free(q.t);
    return i < q.n ? sb_take(&b) : (free(b.s), NULL);
}

/* The column the child compares with $k: the word before = (or before IN), as written. */
static bool child_column(const char *text, int k, char *out, size_t cap)
{
    qtext q;
    bool ok = false;

    if (!q_lex(text, &q))
        return false;
    uint32_t i = q_find_param(&q, k);
    uint32_t c = i < q.n ? (q_is(&q, i - 1, "=") ? i - 2 : i - 3) : q.n;
    /* whole or not at all: a cut "quoted name would end the SQL inside its quotes */
    if (i < q.n && i >= 2 && c < q.n && (q.t[c].kind == 'w' || q.t[c].kind == 'q') &&
        q.t[c].end - q.t[c].start < cap) {
        memcpy(out, text + q.t[c].start, q.t[c].end - q.t[c].start);
        out[q.t[c].end - q.t[c].start] = '\0';
        ok = true;
    }
    free(q.t);
    return ok;
}

/* Words of a condition that are not column names. */
static bool is_sql_word(const qtext *q, uint32_t i)
{
    static const char *const words[] = {"and",
                                        "or",
                                        "not",
                                        "is",
                                        "null",
                                        "true",
                                        "false",
                                        "in",
                                        "like",
                                        "ilike",
                                        "between",
                                        "exists",
                                        "any",
                                        "all",
                                        "some",
                                        "case",
                                        "when",
                                        "then",
                                        "else",
                                        "end",
                                        "asc",
                                        "desc",
                                        "nulls",
                                        "first",
                                        "last",
                                        "distinct",
                                        "from",
                                        "as",
                                        "array",
                                        "interval",
                                        "similar",
                                        "to",
                                        "escape",
                                        "at",
                                        "time",
                                        "zone",
                                        "collate",
                                        "current_date",
                                        "current_timestamp",
                                        "current_time",
                                        "localtime",
                                        "localtimestamp",
                                        "current_user",
                                        "session_user",
                                        "unknown",
                                        "by",
                                        "order",
                                        "using",
                                        "symmetric",
                                        "isnull",
                                        "notnull",
                                        "with",
                                        "without",
                                        "precision",
                                        "varying",
                                        NULL};

    for (const char *const *w = words; *w != NULL; w++)
        if (q_is(q, i, *w))
            return true;
    return false;
}

/* The name word or "quoted" token i stands for, without its quotes, into out; false when it is
 * no name or does not fit whole (a cut name would match another). */
static bool token_name(const qtext *q, uint32_t i, char *out, size_t cap)
{
    const qtok *t = &q->t[i];
    bool quoted = t->kind == 'q';
    uint32_t n = t->end - t->start;

    if (t->kind != 'w' && !quoted)
        return false;
    n = !quoted ? n : n > 1 ? n - 2 : 0;
    if (n >= cap)
        return false;
    memcpy(out, q->s + t->start + quoted, n);
    out[n] = '\0';
    return true;
}

/* Whether token i names the parent's table or alias as a qualifier (orders. or o.). */
static bool is_qualifier(const qtext *q, uint32_t i, const char *table, const char *alias)
{
    const char *last = strrchr(table, '.');
    char name[128];

    if (!q_ch(q, i + 1, '.') || !token_name(q, i, name, sizeof name))
        return false;
    return equal_nocase(name, last ? last + 1 : table) || (alias && equal_nocase(name, alias));
}

/* Copies the condition tokens [from, to) with the parent's columns as p.column. */
static void put_condition(sbuf *b, const qtext *q, uint32_t from, uint32_t to, const char *table,
                          const char *alias)
{
    for (uint32_t i = from; i < to; i++) {
        const qtok *t = &q->t[i];
        bool after_cast = i > 0 && (q_ch(q, i - 1, ':') || q_is(q, i - 1, "as"));
        bool qualified = i > 0 && q_ch(q, i - 1, '.');
        if (i > from && t->start > q->t[i - 1].end)
            sb_add(b, " ");
        if (is_qualifier(q, i, table, alias)) {
            sb_add(b, "p");
            continue;
        }
        bool column = (t->kind == 'w' || t->kind == 'q') && !after_cast && !qualified &&
                      !q_ch(q, i + 1, '(') && !q_ch(q, i + 1, '.') && !is_sql_word(q, i);
        if (column)
            sb_add(b, "p.");
        sb_addn(b, q->s + t->start, t->end - t->start);
    }
}

/* The parent's WHERE and ORDER BY, its columns qualified with p, when the parent is a plain
 * SELECT of its one table: false otherwise (then it is joined as a subquery). */
static bool parent_conditions(sbuf *b, const char *text, const char *table)
{
    static const char *const complex[] = {"group",  "having",   "union",  "intersect",
                                          "except", "distinct", "window", "limit",
                                          "offset", "fetch",    "join",   NULL};
    static const char *const where_w[] = {"where", NULL}, *const order_w[] = {"order", NULL};
    static const char *const from_w[] = {"from", NULL};
    qtext q;
    char alias[128] = "";
    bool ok;

    if (!q_lex(text, &q))
        return false;
    uint32_t from = q_top_word(&q, 0, from_w), where = q_top_word(&q, 0, where_w);
    uint32_t order = q_top_word(&q, 0, order_w), a = from + 2;
    ok = q_is(&q, 0, "select") && from < q.n && q_top_word(&q, 0, complex) == q.n;
    while (ok && q_ch(&q, a, '.'))
        a += 2;
    a += q_is(&q, a, "as");
    /* the alias as is_qualifier reads names; one too long to hold whole: joined as a subquery */
    if (ok && a < q.n && a != where && a != order && !q_is(&q, a, "for") &&
        (q.t[a].kind == 'w' || q.t[a].kind == 'q'))
        ok = token_name(&q, a, alias, sizeof alias);
    if (ok && where < q.n) {
        sb_add(b, " WHERE ");
        put_condition(b, &q, where + 1, order < q.n ? order : q.n, table, alias[0] ? alias : NULL);
    }
    if (ok && order < q.n) {
        sb_add(b, " ORDER BY ");
        put_condition(b, &q, order + 2, q_top_word(&q, order, end_of_query), table,
                      alias[0] ? alias : NULL);
    }
    free(q.t);
    return ok;
}

/* ---- the suggestion ---- */

static const char orm_note[] =
    "With an ORM, load the association eagerly instead of once per row: Django "
    "select_related() or prefetch_related(), Rails includes() or preload(), SQLAlchemy "
    "joinedload() or selectinload(), Hibernate/JPA JOIN FETCH or @BatchSize, Entity Framework "
    "Include(), Sequelize include, Ecto preload.";

/* The child query with every $k replaced by repl (for a LATERAL join). */
static char *replace_param(const char *text, int k, const char *repl)
{
    qtext q;
    sbuf b = {0};
    char want[16];
    uint32_t at = 0;

    if (!q_lex(text, &q))
        return NULL;
    snprintf(want, sizeof want, "$%d", k);
    for (uint32_t i = 0; i < q.n; i++) {
        if (!q_is(&q, i, want))
            continue;
        sb_addn(&b, text + at, q.t[i].start - at);
        sb_add(&b, repl);
        at = q.t[i].end;
    }
    sb_add(&b, text + at);
    free(q.t);
    return sb_take(&b);
}

/* "orders.customer_id", or "orders.customer_id and orders.address_id" for a loop body. */
static void put_links(sbuf *b, const finding *f)
{
    int named = 0;

    for (int i = 0; i < f->pub.n_children; i++) {
        if (!f->proof[i].confirmed)
            continue;
        sb_printf(b, "%s%s", named > 0 ? " and " : "", f->proof[i].linked);
        named++;
    }
}

static void explain_loop(sbuf *b, const np1_detector *d, const finding *f)
{
    const np1_finding *p = &f->pub;
    const char *kids = p->n_children > 1 ? "child queries run" : "child query runs";

    if (p->confirmed) {
        sb_printf(b,
                  "N+1: the parent query returns rows, then the %s once per row with a value "
                  "taken from ",
                  kids);
        put_links(b, f);
        sb_add(b, ". Each execution costs a round trip; one query can do the work of all of "
                  "them.\n");
        return;
    }
    sb_printf(b,
              "Suspected N+1 (not proven): the %s at least %d times with different parameters "
              "right after the parent query, but ",
              kids, d->s.min_repeats);
    if (!f->proof[0].sampled)
        sb_printf(b,
                  "the parent's result was no longer sampled (results of the last %d "
                  "statements with a result are kept per connection).\n",
                  d->s.results_kept);
    else
        sb_printf(b,
                  "no column of the parent's sampled result holds the values of its "
                  "parameters (best match %.0f%% of the executions, %.0f%% needed). Check "
                  "that the loop walks the parent's rows.\n",
                  100 * f->best_share, 100 * d->s.link_share);
}

static void batch_one(sbuf *b, const finding *f, int i)
{
    const child_proof *pr = &f->proof[i];
    const char *q = f->pub.child_query[i];
    int k = pr->param + 1;
    bool cut = false;
    char *batched = batched_query(q, k, &cut);

    if (batched == NULL) {
        sb_printf(b,
                  "     %s\n   Compare its parameter $%d with = ANY($%d) instead, and pass all the "
                  "values at once as one array.\n",
                  q, k, k);
        return;
    }
    sb_printf(b, "     %s\n", batched);
    if (pr->column >= 0 && pr->confirmed)
        sb_printf(b, "   Pass the values of %s from the parent's rows as one array in $%d",
                  pr->linked, k);
    else
        sb_printf(b, "   Pass the values the loop used for $%d as one array", k);
    sb_printf(b, "%s, then match the rows returned to the parent's rows in the application.\n",
              cut ? " (its final LIMIT is left out: the batched query returns the rows of every "
                    "parent row)"
                  : "");
    free(batched);
}

/* Whether child i can be joined by its table, on the column it compares: out gets the column. */
static bool child_inline(const finding *f, int i, char *out, size_t cap)
{
    return f->child_table[i][0] != '\0' &&
           child_column(f->pub.child_query[i], f->proof[i].param + 1, out, cap);
}

/* ON c1.id = p.customer_id, or a LATERAL subquery when the child's table or column is unknown. */
static void join_one(sbuf *b, const finding *f, int i)
{
    const child_proof *pr = &f->proof[i];
    char col[128], alias[16];
    int k = pr->param + 1;
    sbuf pc = {0}; /* p.column, grown to what the quoted name needs */

    snprintf(alias, sizeof alias, "c%d", i + 1);
    sb_add(&pc, "p.");
    if (pr->column >= 0)
        put_ident(&pc, pr->col_name);
    else
        sb_add(&pc, "<parent column the loop reads>");
    const char *pcol = !pc.failed ? pc.s : "p.?";
    if (child_inline(f, i, col, sizeof col)) {
        sb_add(b, " LEFT JOIN ");
        put_table(b, f->child_table[i]);
        sb_printf(b, " %s ON %s.%s = %s", alias, alias, col, pcol);
    } else {
        char *lateral = replace_param(f->pub.child_query[i], k, pcol);
        sb_printf(b, " LEFT JOIN LATERAL (%s) %s ON true", lateral ? lateral : "...", alias);
        free(lateral);
    }
    free(pc.s);
}

/* Whether the child's condition holds more than the comparison the loop fills in. */
static bool child_has_more(const char *text, int k)
{
    static const char *const where_w[] = {"where", NULL};
    char want[16];
    qtext q;
    bool more = false;

    if (!q_lex(text, &q))
        return false;
    snprintf(want, sizeof want, "$%d", k);
    uint32_t where = q_top_word(&q, 0, where_w), end = q_top_word(&q, where, end_of_query);
    for (uint32_t i = where; i < end; i++)
        more |=
            q_is(&q, i, "and") || q_is(&q, i, "or") || (q.t[i].kind == 'p' && !q_is(&q, i, want));
    free(q.t);
    return more;
}

static void join_part(sbuf *b, const finding *f)
{
    const np1_finding *p = &f->pub;
    sbuf joins = {0}, cond = {0};
    bool inline_parent;

    for (int i = 0; i < p->n_children; i++)
        join_one(&joins, f, i);
    inline_parent =
        f->parent_table != NULL && parent_conditions(&cond, p->parent_query, f->parent_table);
    sb_add(b, "2. Or join the child to the parent in one query (LEFT JOIN keeps the parent rows "
              "without a match, as the loop did):\n     SELECT p.*");
    for (int i = 0; i < p->n_children; i++)
        sb_printf(b, ", c%d.*", i + 1);
    if (inline_parent) {
        sb_add(b, " FROM ");
        put_table(b, f->parent_table);
        sb_printf(b, " p%s%s\n", joins.s ? joins.s : "", cond.s ? cond.s : "");
    } else if (p->parent_query[0] != '\0') {
        sb_printf(b, " FROM (%s) p%s\n", p->parent_query, joins.s ? joins.s : "");
    } else {
        sb_printf(b, " FROM %s p%s -- keep the parent query's conditions\n",
                  f->parent_table ? f->parent_table : "parent", joins.s ? joins.s : "");
    }
    for (int i = 0; i < p->n_children; i++) {
        char col[128];
        if (child_inline(f, i, col, sizeof col) &&
            child_has_more(p->child_query[i], f->proof[i].param + 1))
            sb_printf(b, "   Add the other conditions of child query %d to its ON clause.\n",
                      i + 1);
    }
    b->failed |= joins.failed || cond.failed;
    free(joins.s);
    free(cond.s);
}

static char *loop_suggestion(const np1_detector *d, const finding *f)
{
    sbuf b = {0};

    explain_loop(&b, d, f);
    sb_printf(&b, "1. Batch the child %s: run %s once for all the parent rows:\n",
              f->pub.n_children > 1 ? "queries" : "query", f->pub.n_children > 1 ? "each" : "it");
    for (int i = 0; i < f->pub.n_children; i++)
        batch_one(&b, f, i);
    join_part(&b, f);
    sb_printf(&b, "3. %s\n", orm_note);
    return sb_take(&b);
}

static char *duplicate_suggestion(const finding *f)
{
    sbuf b = {0};
    char hex[17];

    fp_hex(f->pub.child_fp[0], hex);
    sb_printf(&b,
              "Duplicate query: the same statement ran again and again with the same "
              "parameters in one unit of work (a transaction, or a burst of statements); "
              "every repeat returned what the first one did.\n     %s\n"
              "1. Run it once and reuse the result: hoist it out of the loop, or cache it for "
              "the request (memoize, a request-scoped cache, the ORM's identity map or query "
              "cache).\n"
              "2. If the repeats are meant to see changes, mark the statement with "
              "/* pgscope:ignore */ or put %s on the allow-list.\n",
              f->pub.child_query[0], hex);
    return sb_take(&b);
}

static char *build_suggestion(const np1_detector *d, const finding *f)
{
    return f->pub.kind == NP1_DUPLICATE ? duplicate_suggestion(f) : loop_suggestion(d, f);
}

/* ---- units: opening, closing, examining ---- */

static void examine(np1_detector *d, conn *c)
{
    exam e = {.d = d, .c = c, .u = &c->u};

    if (c->u.n > 0 && exam_index(&e)) {
        exam_candidates(&e);
        for (uint32_t i = 0; i < e.n_cands; i++)
            if (e.cands[i].loop)
                find_parent(&e, &e.cands[i]);
        exam_groups(&e);
        for (uint32_t i = 0; i < e.n_cands; i++) {
            const cand *k = &e.cands[i];
            if (!k->grouped && !k->paged && k->top >= (uint32_t)d->s.min_repeats)
                record_duplicate(&e, k);
        }
    }
    exam_free(&e);
}

static void close_unit(np1_detector *d, conn *c)
{
    examine(d, c);
    unit_reset(&c->u);
}

static void open_unit(conn *c, const np1_stmt *st)
{
    unit *u = &c->u;

    u->open = true;
    u->in_txn = st->txn_status == 'T' || st->txn_status == 'E';
    u->seq = ++c->units;
    u->app = copy_text(st->application_name, 1024);
    u->tags = copy_text(st->tags, 4096);
}

/* Whether st starts a new unit: a run outside a transaction ends at a transaction, a pause
 * longer than the gap, or another application_name or set of tags. A transaction ends only
 * where the status returns to idle. */
static bool ends_before(const np1_detector *d, const conn *c, const np1_stmt *st)
{
    const unit *u = &c->u;

    if (u->in_txn)
        return false;
    if (st->txn_status == 'T' || st->txn_status == 'E')
        return true;
    if (elapsed(c->last_end_us, st->start_us) > (uint64_t)d->s.idle_gap_ms * 1000)
        return true;
    return !same_or_both_empty(u->app, st->application_name) ||
           !same_or_both_empty(u->tags, st->tags);
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

void np1_unused_ignores(const np1_detector *d, void (*fn)(const char *entry, void *arg), void *arg)
{
    for (int i = 0; d != NULL && i < d->s.n_ignore; i++)
        if (!d->ignore_used[i])
            fn(d->ignore[i], arg);
}
