/* stats.c — per-shape statistics: log-bucketed latency histograms, Welford moments, the table. */
#include "config.h"

#include "pgscope/stats.h"
#include "pgscope/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- histograms ---- */

/* Bucket i >= 1 is [G^(i-1), G^i): i = floor(log_G(us)) + 1. A value that rounding puts one
 * bucket off sits at that bucket's edge, still within sqrt(G) - 1 < 1% of its middle. */
int stats_hist_index(double us)
{
    if (!(us >= 1.0)) /* below 1 us, negative or NaN */
        return 0;
    double i = floor(log(us) / log(STATS_HIST_GROWTH)) + 1.0;
    return i >= STATS_HIST_BUCKETS - 1 ? STATS_HIST_BUCKETS - 1 : (int)i;
}

/* The geometric middle of bucket i, G^(i - 1/2): at most sqrt(G) - 1 = 0.995% from any value
 * in the bucket. Bucket 0 (below 1 us) reports 0.5 us. */
static double hist_middle(int i)
{
    return i == 0 ? 0.5 : exp(((double)i - 0.5) * log(STATS_HIST_GROWTH));
}

/* A full bucket keeps its count rather than wrap (4 billion samples in one bucket); count stays
 * the sum of the buckets. */
void stats_hist_add(stats_hist *h, double us)
{
    int i = stats_hist_index(us);

    if (h->buckets[i] == UINT32_MAX)
        return;
    h->buckets[i]++;
    h->count++;
}

double stats_hist_quantile_within(const stats_hist *h, double q, double min_us, double max_us)
{
    double v = stats_hist_quantile(h, q);

    if (h->count == 0 || !(min_us <= max_us))
        return v; /* nothing observed, or no bounds known (NaN) */
    return v < min_us ? min_us : v > max_us ? max_us : v;
}

/* The nearest-rank quantile: the value of rank ceil(q * count) (at least 1) in sorted order,
 * reported at the middle of its bucket. */
double stats_hist_quantile(const stats_hist *h, double q)
{
    int last = 0;
    uint64_t seen = 0, rank;

    if (h->count == 0)
        return 0.0;
    if (!(q > 0.0))
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        seen += h->buckets[i];
        last = i;
        if (seen >= rank)
            return hist_middle(i);
    }
    return hist_middle(last);
}

void stats_hist_merge(stats_hist *dst, const stats_hist *src)
{
    dst->count = 0;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++) {
        uint64_t sum = (uint64_t)dst->buckets[i] + src->buckets[i];
        dst->buckets[i] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
        dst->count += dst->buckets[i];
    }
}

/* Storage format (SQLite BLOBs, read back by `pgscope report`), version 1:
 *
 *   byte 0     the format version, 1
 *   then, for each non-empty bucket in increasing index order, two unsigned LEB128 varints
 *   (7 bits a byte, least significant group first, high bit set on all but the last byte):
 *     gap      the bucket's index minus (the previous non-empty bucket's index + 1), with -1 as
 *              the "previous index" of the first one; so the first bucket's gap is its index
 *     count    the bucket's count, 1 .. 2^32 - 1
 *
 * An empty histogram is the single byte 1; an empty input also decodes as empty. Decoding
 * rejects: another version, a varint cut short, longer than 5 bytes, above 2^32 - 1 or not in
 * its shortest form, a zero count, and an index past the last bucket. The largest encoding is
 * 1 + 1200 * (1 + 5) bytes. */
#define STATS_HIST_FORMAT 1

static void put_byte(uint8_t *out, size_t cap, size_t *n, uint8_t b)
{
    if (*n < cap)
        out[*n] = b;
    (*n)++;
}

static void put_varint(uint8_t *out, size_t cap, size_t *n, uint32_t v)
{
    for (; v >= 0x80; v >>= 7)
        put_byte(out, cap, n, (uint8_t)(v | 0x80));
    put_byte(out, cap, n, (uint8_t)v);
}

size_t stats_hist_encode(const stats_hist *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int prev = -1;

    put_byte(out, cap, &n, STATS_HIST_FORMAT);
    for (int i = 0; i < STATS_HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        put_varint(out, cap, &n, (uint32_t)(i - prev - 1));
        put_varint(out, cap, &n, h->buckets[i]);
        prev = i;
    }
    return n;
}

/* One varint of at most 32 bits in its shortest form; false if it is anything else. */
static bool get_varint(const uint8_t *in, size_t len, size_t *pos, uint32_t *v)
{
    uint64_t value = 0;

    for (int shift = 0; shift < 35; shift += 7) {
        if (*pos >= len)
            return false;
        uint8_t b = in[(*pos)++];
        value |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            if (value > UINT32_MAX || (b == 0 && shift > 0))
                return false;
            *v = (uint32_t)value;
            return true;
        }
    }
    return false;
}

bool stats_hist_decode(stats_hist *h, const uint8_t *in, size_t len)
{
    size_t pos = 1;
    long index = -1;

    memset(h, 0, sizeof *h);
    if (len == 0)
        return true;
    if (in == NULL || in[0] != STATS_HIST_FORMAT)
        return false;
    while (pos < len) {
        uint32_t gap, count;
        if (!get_varint(in, len, &pos, &gap) || !get_varint(in, len, &pos, &count) || count == 0 ||
            gap >= (uint32_t)(STATS_HIST_BUCKETS - 1 - index)) {
            memset(h, 0, sizeof *h);
            return false;
        }
        index += 1 + (long)gap;
        h->buckets[index] = count;
        h->count += count;
    }
    return true;
}

/* ---- entries ---- */

static void count_sqlstate(stats_entry *e, const char *sqlstate)
{
    char code[6];
    size_t n = strnlen(sqlstate, 5);

    memcpy(code, sqlstate, n);
    code[n] = '\0';
    for (int i = 0; i < e->n_errs; i++) {
        if (strcmp(e->errs[i].sqlstate, code) == 0) {
            e->errs[i].count++;
            return;
        }
    }
    if (e->n_errs < STATS_MAX_SQLSTATES) {
        memcpy(e->errs[e->n_errs].sqlstate, code, n + 1);
        e->errs[e->n_errs++].count = 1;
    } else {
        e->other_errors++;
    }
}

/* Welford's update keeps mean and variance accurate over billions of calls, where sums of
 * squares would cancel catastrophically. */
void stats_entry_add(stats_entry *e, double us, int64_t rows, const char *sqlstate, int64_t end_us)
{
    if (!isfinite(us) || us < 0.0) /* a clock that went backwards, NaN or infinity */
        us = 0.0;
    e->calls++;
    if (sqlstate != NULL && sqlstate[0] != '\0') {
        e->errors++;
        count_sqlstate(e, sqlstate);
    }
    if (rows >= 0)
        e->rows += (uint64_t)rows;
    e->total_us += us;
    if (e->calls == 1 || us < e->min_us)
        e->min_us = us;
    if (e->calls == 1 || us > e->max_us)
        e->max_us = us;
    double delta = us - e->mean_us;
    e->mean_us += delta / (double)e->calls;
    e->m2 += delta * (us - e->mean_us);
    if (e->calls == 1 || end_us < e->first_us)
        e->first_us = end_us;
    if (e->calls == 1 || end_us > e->last_us)
        e->last_us = end_us;
    stats_hist_add(&e->hist, us);
    e->dirty = true;
}

double stats_entry_stddev(const stats_entry *e)
{
    if (e->calls == 0 || !(e->m2 > 0.0))
        return 0.0;
    return sqrt(e->m2 / (double)e->calls);
}

static void merge_errors(stats_entry *dst, const stats_entry *src)
{
    for (int i = 0; i < src->n_errs; i++) {
        int k = 0;
        while (k < dst->n_errs && strcmp(dst->errs[k].sqlstate, src->errs[i].sqlstate) != 0)
            k++;
        if (k == dst->n_errs && k < STATS_MAX_SQLSTATES)
            dst->errs[dst->n_errs++] = (stats_errors){.count = 0};
        if (k < dst->n_errs) {
            memcpy(dst->errs[k].sqlstate, src->errs[i].sqlstate, sizeof dst->errs[k].sqlstate);
            dst->errs[k].count += src->errs[i].count;
        } else {
            dst->other_errors += src->errs[i].count;
        }
    }
    dst->other_errors += src->other_errors;
}

void stats_entry_merge(stats_entry *dst, const stats_entry *src)
{
    if (src->calls == 0)
        return;
    if (dst->calls == 0) {
        dst->min_us = src->min_us;
        dst->max_us = src->max_us;
        dst->first_us = src->first_us;
        dst->last_us = src->last_us;
    }
    double n = (double)(dst->calls + src->calls), delta = src->mean_us - dst->mean_us;
    dst->m2 += src->m2 + delta * delta * (double)dst->calls * (double)src->calls / n;
    dst->mean_us += delta * (double)src->calls / n;
    dst->calls += src->calls;
    dst->errors += src->errors;
    dst->rows += src->rows;
    dst->total_us += src->total_us;
    dst->min_us = src->min_us < dst->min_us ? src->min_us : dst->min_us;
    dst->max_us = src->max_us > dst->max_us ? src->max_us : dst->max_us;
    dst->first_us = src->first_us < dst->first_us ? src->first_us : dst->first_us;
    dst->last_us = src->last_us > dst->last_us ? src->last_us : dst->last_us;
    merge_errors(dst, src);
    stats_hist_merge(&dst->hist, &src->hist);
    dst->dirty = true;
}

/* ---- the table ---- */

/* Entries are allocated one by one so that pointers to them stay valid as the table grows;
 * the index maps a key's hash to a position in the creation-ordered list. */
struct stats_table {
    stats_entry **list; /* owned, in creation order */
    uint64_t *hashes;   /* the key hash of list[i] */
    size_t count, list_cap;
    uint32_t *slots; /* open addressing: list position + 1, 0 when empty */
    size_t mask;
    /* The cap (0: none), and what folding needs: the entry that receives the folded ones,
     * room to sort max_entries totals (allocated with the cap, so folding cannot fail). */
    size_t max_entries;
    stats_entry *other;
    uint64_t folded;
    double *totals;
    void (*on_fold)(const stats_entry *e, void *arg);
    void *fold_arg;
};

static uint64_t key_hash(uint64_t fingerprint, const char *database, const char *user)
{
    uint64_t h = hash_mix64(fingerprint);

    for (const char *s = database; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    h = hash_mix64(h ^ 0xff); /* keeps ("ab", "c") apart from ("a", "bc") */
    for (const char *s = user; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return hash_mix64(h);
}

stats_table *stats_table_new(void)
{
    stats_table *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->slots = calloc(64, sizeof *t->slots);
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    t->mask = 63;
    return t;
}

static void entry_free(stats_entry *e)
{
    free(e->database);
    free(e->user);
    free(e->query);
    free(e->example_query);
    free(e->example_params);
    free(e);
}

void stats_table_free(stats_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->count; i++)
        entry_free(t->list[i]);
    if (t->other != NULL)
        entry_free(t->other);
    free(t->totals);
    free(t->list);
    free(t->hashes);
    free(t->slots);
    free(t);
}

size_t stats_table_count(const stats_table *t)
{
    return t->count;
}

const stats_entry *stats_table_other(const stats_table *t)
{
    return t->other;
}

uint64_t stats_table_folded(const stats_table *t)
{
    return t->folded;
}

static void slot_put(uint32_t *slots, size_t mask, uint64_t hash, size_t pos)
{
    size_t s = hash & mask;

    while (slots[s] != 0)
        s = (s + 1) & mask;
    slots[s] = (uint32_t)(pos + 1);
}

/* Keeps the index at most 70% full. */
static bool slots_reserve(stats_table *t)
{
    size_t cap = t->mask + 1;

    if ((t->count + 1) * 10 <= cap * 7)
        return true;
    if (cap > UINT32_MAX / 2)
        return false;
    uint32_t *slots = calloc(cap * 2, sizeof *slots);
    if (slots == NULL)
        return false;
    for (size_t i = 0; i < t->count; i++)
        slot_put(slots, cap * 2 - 1, t->hashes[i], i);
    free(t->slots);
    t->slots = slots;
    t->mask = cap * 2 - 1;
    return true;
}

static bool list_reserve(stats_table *t)
{
    if (t->count < t->list_cap)
        return true;
    size_t cap = t->list_cap ? t->list_cap * 2 : 64;
    stats_entry **list = realloc(t->list, cap * sizeof *list);
    if (list == NULL)
        return false;
    t->list = list;
    uint64_t *hashes = realloc(t->hashes, cap * sizeof *hashes);
    if (hashes == NULL)
        return false;
    t->hashes = hashes;
    t->list_cap = cap;
    return true;
}

static stats_entry *entry_new(uint64_t fingerprint, const char *database, const char *user,
                              const char *query, const char *command, bool fallback)
{
    stats_entry *e = calloc(1, sizeof *e);

    if (e == NULL)
        return NULL;
    e->fingerprint = fingerprint;
    e->fallback = fallback;
    e->database = strdup(database);
    e->user = strdup(user);
    e->query = strdup(query ? query : "");
    if (e->database == NULL || e->user == NULL || e->query == NULL) {
        entry_free(e);
        return NULL;
    }
    size_t n = command ? strnlen(command, sizeof e->command - 1) : 0;
    memcpy(e->command, command ? command : "", n);
    e->command[n] = '\0';
    return e;
}

static stats_entry *table_find(const stats_table *t, uint64_t hash, uint64_t fingerprint,
                               const char *database, const char *user)
{
    for (size_t s = hash & t->mask;; s = (s + 1) & t->mask) {
        uint32_t v = t->slots[s];
        if (v == 0)
            return NULL;
        stats_entry *e = t->list[v - 1];
        if (t->hashes[v - 1] == hash && e->fingerprint == fingerprint &&
            strcmp(e->database, database) == 0 && strcmp(e->user, user) == 0)
            return e;
    }
}

/* ---- the cap: folding the cheapest entries into "other" ---- */

bool stats_table_limit(stats_table *t, size_t max_entries,
                       void (*on_fold)(const stats_entry *e, void *arg), void *arg)
{
    double *totals = max_entries > 0 ? malloc(max_entries * sizeof *totals) : NULL;

    if (max_entries > 0 && totals == NULL)
        return false;
    free(t->totals);
    t->totals = totals;
    t->max_entries = max_entries;
    t->on_fold = on_fold;
    t->fold_arg = arg;
    return true;
}

static int cmp_total(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The entry folded entries go into, created on the first fold. */
static stats_entry *other_entry(stats_table *t)
{
    if (t->other == NULL && (t->other = entry_new(0, "", "", "", "", false)) != NULL)
        t->other->other = true;
    return t->other;
}

static void fold_entry(stats_table *t, stats_entry *e)
{
    if (t->on_fold != NULL)
        t->on_fold(e, t->fold_arg);
    stats_entry_merge(t->other, e);
    t->folded++;
    entry_free(e);
}

/* Folds the cheapest tenth of the entries (by total time; ties in creation order) and closes
 * the gaps they leave. A sort every max/10 new entries: O(log n) amortized per entry, where a
 * heap kept in step with every execution's time would cost that on every statement. */
static void compact(stats_table *t)
{
    size_t n = t->count, fold = n / 10 > 0 ? n / 10 : 1, kept = 0;

    if (n == 0 || n > t->max_entries || other_entry(t) == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        t->totals[i] = t->list[i]->total_us;
    qsort(t->totals, n, sizeof *t->totals, cmp_total);
    double limit = t->totals[fold - 1];
    size_t below = 0;
    while (below < fold && t->totals[below] < limit)
        below++;
    size_t ties = fold - below; /* entries at exactly the limit that go too */
    for (size_t i = 0; i < n; i++) {
        stats_entry *e = t->list[i];
        bool goes = e->total_us < limit || (e->total_us == limit && ties > 0);
        if (goes && e->total_us == limit)
            ties--;
        if (goes) {
            fold_entry(t, e);
            continue;
        }
        t->list[kept] = e;
        t->hashes[kept++] = t->hashes[i];
    }
    t->count = kept;
    memset(t->slots, 0, (t->mask + 1) * sizeof *t->slots);
    for (size_t i = 0; i < kept; i++)
        slot_put(t->slots, t->mask, t->hashes[i], i);
}

stats_entry *stats_table_get(stats_table *t, uint64_t fingerprint, const char *database,
                             const char *user, const char *query, const char *command,
                             bool fallback)
{
    if (database == NULL)
        database = "";
    if (user == NULL)
        user = "";
    uint64_t hash = key_hash(fingerprint, database, user);
    stats_entry *e = table_find(t, hash, fingerprint, database, user);
    if (e != NULL)
        return e;
    if (t->max_entries > 0 && t->count >= t->max_entries)
        compact(t);
    if (!slots_reserve(t) || !list_reserve(t))
        return NULL;
    e = entry_new(fingerprint, database, user, query, command, fallback);
    if (e == NULL)
        return NULL;
    t->list[t->count] = e;
    t->hashes[t->count] = hash;
    slot_put(t->slots, t->mask, hash, t->count);
    t->count++;
    return e;
}

static void take(stats_entry *e, bool all, void (*fn)(stats_entry *e, void *arg), void *arg)
{
    if (!all && !e->dirty)
        return;
    e->dirty = false;
    if (fn != NULL) {
        e->taken = true;
        fn(e, arg);
    }
}

/* The mark is cleared before fn runs, so fn may set it again (say, when a write failed). */
void stats_table_take_dirty(stats_table *t, bool all, void (*fn)(stats_entry *e, void *arg),
                            void *arg)
{
    for (size_t i = 0; i < t->count; i++)
        take(t->list[i], all, fn, arg);
    if (t->other != NULL)
        take(t->other, all, fn, arg);
}
