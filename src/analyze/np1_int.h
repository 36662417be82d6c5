/* np1_int.h — what the parts of the N+1 detector share. nplusone.c keeps the units of work and
 * the findings; np1_proof.c keeps the sampled results in row order and matches a loop's values
 * with them; np1_fix.c writes the fixes; np1_text.c holds the string helpers. Internal to
 * src/analyze. */
#ifndef PGSCOPE_NP1_INT_H
#define PGSCOPE_NP1_INT_H

#include "pgscope/nplusone.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NP1_SLOT_COLS 32     /* columns of a sampled result kept */
#define NP1_SLOT_VALUES 8192 /* distinct (column, value) pairs kept per result slot */
#define NP1_SLOT_ROWS 16384  /* values kept in row order per result slot */
#define NP1_VALUE_MAX 64     /* bytes kept of one example value */
#define NP1_EXAMPLE_MAX 512  /* bytes of one example tuple, as JSON */
#define NP1_MIN_COVERAGE 0.5 /* of the parent's rows a proven loop walks */
#define NP1_MAX_CHANCE 0.001 /* the largest chance of coincidence a proof may have */

/* ---- strings (np1_text.c) ---- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool failed;
} sbuf;

char *np1_copy_text(const char *s, size_t max);
bool np1_same_text(const char *a, const char *b);
int np1_lower(int c);
bool np1_equal_nocase(const char *a, const char *b);
void np1_sb_addn(sbuf *b, const char *s, size_t n);
void np1_sb_add(sbuf *b, const char *s);
void np1_sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *np1_sb_take(sbuf *b);
char *np1_example_json(const np1_stmt *st);
/* Whether the first word of a text is one of words (lowercase, separated by spaces). */
bool np1_first_word_is(const char *query, const char *words);

/* ---- sampled results, in row order (np1_proof.c) ---- */

typedef struct sval {
    uint32_t hash; /* 0: empty (0 is NULL, never kept) */
    uint32_t exec; /* the latest result of the slot that held it */
    uint16_t col;
} sval;

/* The results of one fingerprint in the open unit: a set of (column, value) for look-ups and
 * the rows in the order they came, each with the record that returned it. */
typedef struct rslot {
    uint64_t fp;
    uint64_t unit;    /* the unit its results came from */
    uint64_t used_at; /* statement counter at the last merge: least recently used goes first */
    uint32_t execs;   /* results merged */
    uint32_t first_rec;
    uint16_t n_columns, cap_columns;
    np1_column *columns;
    uint32_t col_values[NP1_SLOT_COLS]; /* distinct values per column */
    sval *set;
    uint32_t set_cap, set_n; /* set_cap is 0 or a power of two */
    uint32_t *rows;          /* n_rows x n_columns values, row-major */
    uint32_t *row_rec;       /* the unit record each row came from */
    uint32_t n_rows, cap_rows;
    bool in_use;
} rslot;

const sval *np1_slot_find(const rslot *s, uint32_t hash, uint16_t col);
/* Empties the slot for fp's results; false (and the slot unused) if memory ran out. */
bool np1_slot_reset(rslot *s, uint64_t fp, uint64_t unit, const np1_stmt *st);
/* Adds st's sampled result, returned by unit record rec. */
void np1_slot_merge(rslot *s, const np1_stmt *st, uint32_t rec);
void np1_slot_free(rslot *s);

/* How a loop's values walk one column of a parent's rows. */
typedef struct np1_walk {
    uint32_t considered;  /* executions after the parent's first result */
    uint32_t matched;     /* of them, values read from the parent's rows in row order */
    uint32_t consecutive; /* of them, values of the very next row not yet asked for */
    uint32_t domain;      /* distinct values of the column in the rows walked */
    double share;         /* matched / considered */
    double coverage;      /* of the rows walked (first to last row used), those asked for */
    double chance;        /* domain^-consecutive: that a loop blind to the rows did as well */
} np1_walk;

/* Walks column col of s with a loop's values vals[0..n), executed as unit records recs[0..n)
 * (ascending); a value 0 is NULL. A row counts only for executions after its record. */
void np1_walk_column(const rslot *s, uint16_t col, const uint32_t *vals, const uint32_t *recs,
                     uint32_t n, np1_walk *w);

/* ---- findings and their fixes (np1_fix.c) ---- */

/* What the examination learnt of one child of a loop. */
typedef struct child_proof {
    int param;       /* the loop's parameter (0-based): proven, or the most varied */
    int column;      /* parent column holding its values; -1 if none */
    double share;    /* of executions whose value came from that column, in row order */
    double coverage; /* of the parent's rows walked, those the loop asked for */
    double chance;   /* of coincidence, see np1_walk */
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
    int same_results; /* duplicates: 1 every sampled repeat returned the same, 0 not, -1 unknown */
    char *rejected[NP1_MAX_CHILDREN + 1]; /* fix statements the server rejected, and why */
    char *rejected_why[NP1_MAX_CHILDREN + 1];
    int n_rejected;
} finding;

/* The ORM whose SQL style the child's (else the parent's) text has: "django", "sqlalchemy",
 * "activerecord", "sequelize", or NULL. */
const char *np1_orm(const char *child, const char *parent);
/* The ORM's fix for the finding: its eager load with the association, else the generic list. */
void np1_orm_fix(sbuf *b, const finding *f);
/* The fix of a finding, written out; NULL if memory ran out. */
char *np1_suggestion(const np1_settings *s, const finding *f);

#endif
