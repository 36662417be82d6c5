/* np1_proof.c — the proof of an N+1 loop: the results of a unit kept in row order, and a walk
 * that tells whether a loop's values follow one column of a parent's rows.
 *
 * A loop driven by a parent's result asks, execution after execution, for the value of the next
 * row it has not asked for yet (an ORM's identity map or a cache may skip a repeated value;
 * without one the repeat is asked again). A loop over values of its own that happen to lie in
 * the parent's column (small integer ids do) skips rows, or walks them out of order. The walk
 * counts the consecutive steps; the chance that a loop blind to the parent's rows makes as many,
 * choosing among the column's distinct values, is domain^-consecutive. */
#include "config.h"

#include "np1_int.h"

#include "pgscope/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t sval_home(uint32_t hash, uint16_t col, uint32_t mask)
{
    return (size_t)(hash_mix64(((uint64_t)col << 32) | hash) & mask);
}

static sval *find_mut(const rslot *s, uint32_t hash, uint16_t col)
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
    uint32_t cap = s->set_cap ? s->set_cap * 2 : 16; /* most results hold a few values */
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
    sval *v = find_mut(s, hash, col);

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

bool np1_slot_reset(rslot *s, uint64_t fp, uint64_t unit, const np1_stmt *st)
{
    uint16_t n = st->n_columns < NP1_SLOT_COLS ? st->n_columns : NP1_SLOT_COLS;

    if (s->set != NULL)
        memset(s->set, 0, s->set_cap * sizeof *s->set);
    s->set_n = 0;
    s->execs = 0;
    /* the rows' capacity is counted in rows of the old width: start again */
    free(s->rows);
    free(s->row_rec);
    s->rows = NULL;
    s->row_rec = NULL;
    s->n_rows = s->cap_rows = 0;
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

/* Appends a row to the rows in order; past NP1_SLOT_ROWS values the order stays what it is. */
static void keep_row(rslot *s, const uint32_t *row, uint32_t rec)
{
    if ((size_t)(s->n_rows + 1) * s->n_columns > NP1_SLOT_ROWS || s->n_columns == 0)
        return;
    if (s->n_rows == s->cap_rows) {
        uint32_t cap = s->cap_rows ? s->cap_rows * 2 : 16;
        uint32_t *rows = realloc(s->rows, (size_t)cap * s->n_columns * sizeof *rows);
        if (rows == NULL)
            return;
        s->rows = rows;
        uint32_t *recs = realloc(s->row_rec, (size_t)cap * sizeof *recs);
        if (recs == NULL)
            return;
        s->row_rec = recs;
        s->cap_rows = cap;
    }
    memcpy(s->rows + (size_t)s->n_rows * s->n_columns, row, s->n_columns * sizeof *row);
    s->row_rec[s->n_rows++] = rec;
}

void np1_slot_merge(rslot *s, const np1_stmt *st, uint32_t rec)
{
    if (s->execs++ == 0)
        s->first_rec = rec;
    for (uint32_t r = 0; r < st->rows; r++) {
        const uint32_t *row = st->values + (size_t)r * st->n_columns;
        for (uint16_t c = 0; c < s->n_columns; c++)
            if (row[c] != 0)
                slot_insert(s, row[c], c);
        keep_row(s, row, rec);
    }
}

void np1_slot_free(rslot *s)
{
    if (s == NULL)
        return;
    free(s->set);
    free(s->columns);
    free(s->rows);
    free(s->row_rec);
    free(s);
}

const sval *np1_slot_find(const rslot *s, uint32_t hash, uint16_t col)
{
    return find_mut(s, hash, col);
}

/* ---- the walk ---- */

/* A set of value hashes (0 is never a member), sized for at most max members. */
typedef struct vset {
    uint32_t *v;
    uint32_t mask, n;
} vset;

static bool vset_init(vset *s, uint32_t max)
{
    uint32_t cap = 16;

    while (cap < 2 * (uint64_t)max + 2)
        cap *= 2;
    s->v = calloc(cap, sizeof *s->v);
    s->mask = cap - 1;
    s->n = 0;
    return s->v != NULL;
}

static bool vset_has(const vset *s, uint32_t x)
{
    for (uint32_t i = (uint32_t)hash_mix64(x) & s->mask; s->v[i] != 0; i = (i + 1) & s->mask)
        if (s->v[i] == x)
            return true;
    return false;
}

static void vset_add(vset *s, uint32_t x)
{
    uint32_t i = (uint32_t)hash_mix64(x) & s->mask;

    for (; s->v[i] != 0; i = (i + 1) & s->mask)
        if (s->v[i] == x)
            return;
    s->v[i] = x;
    s->n++;
}

static uint32_t cell(const rslot *s, uint32_t row, uint16_t col)
{
    return s->rows[(size_t)row * s->n_columns + col];
}

/* The row execution rec reads: the next one from *at whose value is not one already asked for
 * (a skipped repeat) and is x, else the first later one that is x. False when x is not ahead. */
static bool next_row(const rslot *s, uint16_t col, uint32_t x, uint32_t rec, const vset *asked,
                     uint32_t *at, bool *adjacent)
{
    uint32_t r = *at;

    while (r < s->n_rows && s->row_rec[r] < rec &&
           (cell(s, r, col) == 0 || (cell(s, r, col) != x && vset_has(asked, cell(s, r, col)))))
        r++;
    *adjacent = r < s->n_rows && s->row_rec[r] < rec && cell(s, r, col) == x;
    for (; !*adjacent && r < s->n_rows && s->row_rec[r] < rec; r++)
        if (cell(s, r, col) == x)
            break;
    if (r >= s->n_rows || s->row_rec[r] >= rec)
        return false;
    *at = r + 1;
    return true;
}

/* Coverage and domain of the rows walked, from the first row a value came from to the last: a
 * loop that stops early (the first page of a listing) covers what it walked; one that skips most
 * rows (ids of its own that happen to be in the column) does not. */
static void walked_rows(const rslot *s, uint16_t col, uint32_t lo, uint32_t hi, const vset *asked,
                        np1_walk *w)
{
    uint32_t asked_rows = 0, rows = 0;
    vset dom;

    if (!vset_init(&dom, hi - lo + 1))
        return;
    for (uint32_t r = lo; r <= hi; r++) {
        uint32_t v = cell(s, r, col);
        if (v == 0)
            continue;
        rows++;
        asked_rows += vset_has(asked, v);
        vset_add(&dom, v);
    }
    w->domain = dom.n;
    w->coverage = rows > 0 ? (double)asked_rows / rows : 0;
    free(dom.v);
}

void np1_walk_column(const rslot *s, uint16_t col, const uint32_t *vals, const uint32_t *recs,
                     uint32_t n, np1_walk *w)
{
    uint32_t at = 0, last = 0, first_row = UINT32_MAX, last_row = 0;
    vset asked;

    memset(w, 0, sizeof *w);
    w->chance = 1;
    if (col >= s->n_columns || s->n_rows == 0 || !vset_init(&asked, n))
        return;
    for (uint32_t i = 0; i < n; i++) {
        bool adjacent;
        if (recs[i] <= s->first_rec)
            continue; /* before the parent's first result: not its loop */
        w->considered++;
        uint32_t x = vals[i];
        if (x == 0 || np1_slot_find(s, x, col) == NULL)
            continue;
        if (x == last) {
            w->matched++; /* the same row's value asked again */
            continue;
        }
        if (!next_row(s, col, x, recs[i], &asked, &at, &adjacent))
            continue;
        w->matched++;
        w->consecutive += adjacent;
        vset_add(&asked, x);
        last = x;
        first_row = first_row == UINT32_MAX ? at - 1 : first_row;
        last_row = at - 1;
    }
    if (first_row != UINT32_MAX)
        walked_rows(s, col, first_row, last_row, &asked, w);
    w->share = w->considered > 0 ? (double)w->matched / w->considered : 0;
    w->chance = w->domain > 1 ? pow((double)w->domain, -(double)w->consecutive) : 1;
    free(asked.v);
}
