/* analyze.h — the analysis thread: takes statement events off the queue, fingerprints them,
 * keeps per-shape statistics and hands snapshots to the store every flush interval. Nothing it
 * does can slow the forwarding thread: it only ever reads from the queue. */
#ifndef PGSCOPE_ANALYZE_H
#define PGSCOPE_ANALYZE_H

#include "pgscope/explain.h"
#include "pgscope/nplusone.h"
#include "pgscope/queue.h"
#include "pgscope/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct analyze_settings {
    bool store_params;          /* keep one example text with its parameter values per shape */
    int flush_ms;               /* snapshot interval (ms) */
    size_t fp_cache_entries;    /* statement shapes the fingerprint cache holds */
    size_t max_shapes;          /* statement rows kept (shape, database, user); the least costly
                                 * beyond are folded into one "other" row. 0: no cap */
    np1_settings nplusone;      /* N+1 detection (its ignore list must outlive the analyzer) */
    bool explain_enabled;       /* sample EXPLAIN plans of slow statements */
    explainer_settings explain; /* its strings must outlive the analyzer */
} analyze_settings;

typedef struct analyzer analyzer;

/* Starts the thread reading q and writing to st (which must be started). */
analyzer *analyze_start(queue *q, store *st, const analyze_settings *s);

/* Drains the queue, writes everything with the run's end time, closes the store, frees. */
void analyze_stop(analyzer *a, int64_t ended_us);

#endif
