/* stats.h — per-statement-shape statistics: counts, sums and a log-bucketed latency histogram
 * whose quantiles are within 1% and which merges across runs. Pure, single-threaded. */
#ifndef PGSCOPE_STATS_H
#define PGSCOPE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bucket i >= 1 holds latencies in [G^(i-1), G^i) microseconds with G = 1.02; bucket 0 holds
 * those below 1 us; the last bucket holds everything above its lower bound (about 6 hours).
 * A quantile is reported at its bucket's geometric middle: at most 1% off. */
#define STATS_HIST_GROWTH 1.02
#define STATS_HIST_BUCKETS 1200

typedef struct stats_hist {
    uint64_t count;
    uint32_t buckets[STATS_HIST_BUCKETS];
} stats_hist;

void stats_hist_add(stats_hist *h, double us);
/* The bucket a value of us microseconds goes to. */
int stats_hist_index(double us);
/* The q-quantile (0..1) in microseconds; 0 when empty. */
double stats_hist_quantile(const stats_hist *h, double q);
/* The same, kept within the smallest and largest values observed: a bucket's middle may lie
 * beyond them (a p95 above the max), and a shape of one call reports that call for every q. */
double stats_hist_quantile_within(const stats_hist *h, double q, double min_us, double max_us);
void stats_hist_merge(stats_hist *dst, const stats_hist *src);
/* Sparse encoding for storage: returns the bytes needed; writes nothing past cap. */
size_t stats_hist_encode(const stats_hist *h, uint8_t *out, size_t cap);
/* Decodes an encoding; false (and h cleared) if it is malformed. */
bool stats_hist_decode(stats_hist *h, const uint8_t *in, size_t len);

#define STATS_MAX_SQLSTATES 8 /* distinct error codes kept per entry; more count as "other" */

typedef struct stats_errors {
    char sqlstate[6];
    uint64_t count;
} stats_errors;

/* Everything known about one statement shape for one database and user. */
typedef struct stats_entry {
    uint64_t fingerprint;
    char *database, *user;
    char *query; /* normalized text */
    char command[32];
    bool fallback; /* fingerprint from the pre-digest: libpg_query could not parse it */
    uint64_t calls, errors, rows;
    double total_us, min_us, max_us, mean_us, m2; /* m2: Welford's sum of squared deviations */
    int64_t first_us, last_us;                    /* wall clock of first and last completion */
    stats_errors errs[STATS_MAX_SQLSTATES];
    int n_errs;
    uint64_t other_errors;
    char *example_query, *example_params; /* NULL unless examples are kept */
    stats_hist hist;
    bool dirty; /* changed since the last stats_table_take_dirty */
    bool taken; /* handed to stats_table_take_dirty's fn at least once (so it may be stored) */
    bool other; /* the table's "other statements" entry: the shapes folded by its limit */
} stats_entry;

/* Adds one execution. */
void stats_entry_add(stats_entry *e, double us, int64_t rows, const char *sqlstate, int64_t end_us);
double stats_entry_stddev(const stats_entry *e);
/* Adds everything src counted to dst, as if dst had seen src's executions too: calls, errors
 * (by SQLSTATE, as far as dst has room), rows and time exactly, min, max, mean and spread
 * (Chan et al.'s combination), first and last completion, and the histogram. */
void stats_entry_merge(stats_entry *dst, const stats_entry *src);

typedef struct stats_table stats_table;

stats_table *stats_table_new(void);
void stats_table_free(stats_table *t);
/* Caps the table at max_entries (0: no cap): memory stays bounded whatever the traffic. A new
 * entry that finds the table full first makes room: the cheapest tenth of the entries (least
 * total time; at least one) is folded into the table's "other" entry and freed, on_fold (may be
 * NULL) seeing each just before. Amortized, a new entry costs O(log n). False if out of memory
 * (the table is then left without a cap). */
bool stats_table_limit(stats_table *t, size_t max_entries,
                       void (*on_fold)(const stats_entry *e, void *arg), void *arg);
/* The entry that holds what was folded (other is true, fingerprint 0, database and user ""),
 * or NULL while nothing was; stats_table_take_dirty includes it. */
const stats_entry *stats_table_other(const stats_table *t);
/* Entries folded so far (an entry that comes back and is folded again counts again). */
uint64_t stats_table_folded(const stats_table *t);
/* The entry of (fingerprint, database, user), created with the given normalized text and
 * command if absent. Never NULL unless out of memory. */
stats_entry *stats_table_get(stats_table *t, uint64_t fingerprint, const char *database,
                             const char *user, const char *query, const char *command,
                             bool fallback);
size_t stats_table_count(const stats_table *t); /* entries, the "other" entry left out */
/* Calls fn for every entry changed since the last call (all entries when all is true) and
 * clears their dirty mark. */
void stats_table_take_dirty(stats_table *t, bool all, void (*fn)(stats_entry *e, void *arg),
                            void *arg);

#endif
