/* Unit tests for the stats module: histogram accuracy, merging, the stored encoding, Welford
 * moments, error codes and the table. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/stats.h"

/* ---- helpers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1). */
static double rnd_unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* Log-uniform between lo and hi. */
static double rnd_log(double lo, double hi)
{
    return lo * pow(hi / lo, rnd_unit());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* stats_hist is 4.8 KB: keep them off the test stack. */
static stats_hist *hist_new(void)
{
    stats_hist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    return h;
}

/* The estimate of every quantile in qs is within 1% of the exact nearest-rank value. */
static void check_quantiles(const double *values, size_t n, const double *qs, size_t nq)
{
    stats_hist *h = hist_new();
    double *sorted = malloc(n * sizeof *sorted);

    assert_non_null(sorted);
    for (size_t i = 0; i < n; i++)
        stats_hist_add(h, values[i]);
    memcpy(sorted, values, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    assert_int_equal(h->count, n);
    for (size_t i = 0; i < nq; i++) {
        size_t rank = (size_t)ceil(qs[i] * (double)n);
        double exact = sorted[rank < 1 ? 0 : rank - 1];
        double est = stats_hist_quantile(h, qs[i]);
        if (fabs(est - exact) > 0.01 * exact)
            fail_msg("q=%g: estimate %.6f, exact %.6f (%.4f%% off), n=%zu", qs[i], est, exact,
                     100.0 * fabs(est - exact) / exact, n);
    }
    free(sorted);
    free(h);
}

/* ---- histograms ---- */

static void test_hist_quantiles_within_one_percent(void **state)
{
    static const double qs[] = {0.5, 0.95, 0.99, 0.0, 0.001, 0.25, 0.75, 0.999, 1.0};
    enum { N = 100000 };
    double *v = malloc(N * sizeof *v);

    (void)state;
    assert_non_null(v);
    for (int round = 0; round < 5; round++) {
        for (size_t i = 0; i < N; i++)
            v[i] = rnd_log(1.0, 1e9); /* 1 us to 17 minutes */
        check_quantiles(v, N, qs, sizeof qs / sizeof *qs);
    }
    for (size_t i = 0; i < N; i++) /* a narrow band: many values share few buckets */
        v[i] = rnd_log(900.0, 1100.0);
    check_quantiles(v, N, qs, sizeof qs / sizeof *qs);
    free(v);
}

static void test_hist_small_samples(void **state)
{
    static const double qs[] = {0.5, 0.95, 0.99, 1.0};
    double v[7];

    (void)state;
    for (size_t n = 1; n <= 7; n++) {
        for (size_t i = 0; i < n; i++)
            v[i] = rnd_log(1.0, 1e6);
        check_quantiles(v, n, qs, sizeof qs / sizeof *qs);
    }
}

/* Values on bucket edges (powers of the growth factor) are where rounding could misplace them. */
/* A quantile never leaves the values observed: one call of 30016.8 ms is every percentile of
 * its shape, and the bucket middle above the largest value (30050 ms) is not reported. */
static void test_hist_quantile_within_min_and_max(void **state)
{
    stats_hist h;
    double v;

    (void)state;
    memset(&h, 0, sizeof h);
    stats_hist_add(&h, 30016.8e3);
    for (double q = 0.01; q <= 1.0; q += 0.01) {
        v = stats_hist_quantile_within(&h, q, 30016.8e3, 30016.8e3);
        assert_true(v == 30016.8e3);
    }
    assert_true(stats_hist_quantile(&h, 0.95) != 30016.8e3); /* what the bucket alone says */
    for (int i = 0; i < 200; i++)
        stats_hist_add(&h, 1000.0 + i * 150.0);
    for (double q = 0.0; q <= 1.0; q += 0.05) {
        v = stats_hist_quantile_within(&h, q, 1000.0, 30016.8e3);
        assert_true(v >= 1000.0 && v <= 30016.8e3);
    }
    assert_true(stats_hist_quantile_within(&h, 1.0, 1000.0, 30016.8e3) == 30016.8e3);
    memset(&h, 0, sizeof h);
    assert_true(stats_hist_quantile_within(&h, 0.5, 1.0, 2.0) == 0.0); /* empty: 0 */
}

static void test_hist_bucket_edges(void **state)
{
    static const double q[] = {1.0};

    (void)state;
    for (int k = 0; k < 1190; k++) {
        double edge = pow(STATS_HIST_GROWTH, k);
        double v[3] = {edge, nextafter(edge, 0.0), nextafter(edge, INFINITY)};
        for (int j = 0; j < 3; j++)
            if (v[j] >= 1.0)
                check_quantiles(&v[j], 1, q, 1);
    }
}

static void test_hist_out_of_range_values(void **state)
{
    stats_hist *h = hist_new();

    (void)state;
    assert_true(stats_hist_quantile(h, 0.5) == 0.0); /* empty */
    stats_hist_add(h, 0.3);
    stats_hist_add(h, -5.0);
    stats_hist_add(h, NAN);
    assert_int_equal(h->buckets[0], 3);
    assert_true(stats_hist_quantile(h, 0.5) == 0.5);
    stats_hist_add(h, 1e15); /* 31 years */
    stats_hist_add(h, INFINITY);
    assert_int_equal(h->buckets[STATS_HIST_BUCKETS - 1], 2);
    assert_int_equal(h->count, 5);
    assert_true(stats_hist_quantile(h, 1.0) > 2e10); /* the last bucket starts at ~5.6 hours */
    assert_true(stats_hist_quantile(h, NAN) == 0.5);
    assert_true(stats_hist_quantile(h, 7.0) == stats_hist_quantile(h, 1.0));
    free(h);
}

static void test_hist_full_bucket_saturates(void **state)
{
    stats_hist *h = hist_new();

    (void)state;
    h->buckets[10] = UINT32_MAX;
    h->count = UINT32_MAX;
    stats_hist_add(h, pow(STATS_HIST_GROWTH, 9.5));
    assert_int_equal(h->buckets[10], UINT32_MAX);
    assert_int_equal(h->count, UINT32_MAX);
    free(h);
}

static void test_hist_merge_equals_adding_both(void **state)
{
    stats_hist *a = hist_new(), *b = hist_new(), *both = hist_new();

    (void)state;
    for (int i = 0; i < 20000; i++) {
        double v = rnd_log(1.0, 1e8);
        stats_hist_add(i % 3 ? a : b, v);
        stats_hist_add(both, v);
    }
    stats_hist_merge(a, b);
    assert_int_equal(a->count, both->count);
    assert_memory_equal(a->buckets, both->buckets, sizeof a->buckets);
    assert_true(stats_hist_quantile(a, 0.99) == stats_hist_quantile(both, 0.99));
    free(a);
    free(b);
    free(both);
}

static void test_hist_merge_saturates(void **state)
{
    stats_hist *a = hist_new(), *b = hist_new();

    (void)state;
    a->buckets[3] = UINT32_MAX - 1;
    a->buckets[4] = 1;
    a->count = UINT32_MAX;
    b->buckets[3] = 5;
    b->count = 5;
    stats_hist_merge(a, b);
    assert_int_equal(a->buckets[3], UINT32_MAX);
    assert_int_equal(a->count, (uint64_t)UINT32_MAX + 1);
    free(a);
    free(b);
}

/* ---- the stored encoding ---- */

static void test_encode_known_bytes(void **state)
{
    stats_hist *h = hist_new();
    uint8_t out[16];
    /* version; bucket 0: gap 0, count 1; bucket 5: gap 4, count 300 (0xAC 0x02) */
    static const uint8_t expected[] = {0x01, 0x00, 0x01, 0x04, 0xAC, 0x02};

    (void)state;
    assert_int_equal(stats_hist_encode(h, out, sizeof out), 1);
    assert_int_equal(out[0], 1);
    h->buckets[0] = 1;
    h->buckets[5] = 300;
    h->count = 301;
    assert_int_equal(stats_hist_encode(h, out, sizeof out), sizeof expected);
    assert_memory_equal(out, expected, sizeof expected);
    free(h);
}

static void random_hist(stats_hist *h, int samples)
{
    memset(h, 0, sizeof *h);
    for (int i = 0; i < samples; i++)
        stats_hist_add(h, rnd_log(0.5, 1e11));
}

static void test_encode_decode_round_trip(void **state)
{
    stats_hist *h = hist_new(), *back = hist_new();
    uint8_t *buf = malloc(16384);

    (void)state;
    assert_non_null(buf);
    for (int round = 0; round < 50; round++) {
        random_hist(h, round * round * 40);
        if (round == 49) { /* the largest encoding: every bucket, 5-byte counts */
            for (int i = 0; i < STATS_HIST_BUCKETS; i++)
                h->buckets[i] = UINT32_MAX;
            h->count = (uint64_t)UINT32_MAX * STATS_HIST_BUCKETS;
        }
        size_t n = stats_hist_encode(h, NULL, 0);
        assert_true(n <= 1 + STATS_HIST_BUCKETS * 6);
        assert_int_equal(stats_hist_encode(h, buf, n), n);
        assert_true(stats_hist_decode(back, buf, n));
        assert_int_equal(back->count, h->count);
        assert_memory_equal(back->buckets, h->buckets, sizeof h->buckets);
    }
    assert_true(stats_hist_decode(back, NULL, 0)); /* no blob: an empty histogram */
    assert_int_equal(back->count, 0);
    free(buf);
    free(h);
    free(back);
}

static void test_encode_writes_nothing_past_cap(void **state)
{
    stats_hist *h = hist_new();
    uint8_t buf[8192];

    (void)state;
    random_hist(h, 500);
    size_t n = stats_hist_encode(h, NULL, 0);
    assert_true(n > 20 && n < sizeof buf);
    memset(buf, 0xEE, sizeof buf);
    assert_int_equal(stats_hist_encode(h, buf, 10), n);
    for (size_t i = 10; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xEE);
    free(h);
}

static void expect_malformed(const uint8_t *in, size_t len)
{
    stats_hist *h = hist_new();

    memset(h, 0x5A, sizeof *h);
    if (stats_hist_decode(h, in, len))
        fail_msg("accepted a malformed encoding of %zu bytes", len);
    assert_int_equal(h->count, 0); /* cleared */
    assert_int_equal(h->buckets[0], 0);
    assert_int_equal(h->buckets[STATS_HIST_BUCKETS - 1], 0);
    free(h);
}

static void test_decode_rejects_malformed(void **state)
{
    static const uint8_t version[] = {0x02, 0x00, 0x01};
    static const uint8_t gap_only[] = {0x01, 0x00};
    static const uint8_t cut_varint[] = {0x01, 0x00, 0x81};
    static const uint8_t zero_count[] = {0x01, 0x03, 0x00};
    static const uint8_t huge_count[] = {0x01, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10}; /* 2^32 */
    static const uint8_t long_varint[] = {0x01, 0x00, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00};
    static const uint8_t not_shortest[] = {0x01, 0x00, 0x81, 0x00};
    static const uint8_t index_past_end[] = {0x01, 0xB0, 0x09, 0x01};             /* gap 1200 */
    static const uint8_t last_then_more[] = {0x01, 0xAF, 0x09, 0x01, 0x00, 0x01}; /* 1199, 1200 */
    static const uint8_t huge_gap[] = {0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01};

    (void)state;
    expect_malformed(version, sizeof version);
    expect_malformed(gap_only, sizeof gap_only);
    expect_malformed(cut_varint, sizeof cut_varint);
    expect_malformed(zero_count, sizeof zero_count);
    expect_malformed(huge_count, sizeof huge_count);
    expect_malformed(long_varint, sizeof long_varint);
    expect_malformed(not_shortest, sizeof not_shortest);
    expect_malformed(index_past_end, sizeof index_past_end);
    expect_malformed(last_then_more, sizeof last_then_more);
    expect_malformed(huge_gap, sizeof huge_gap);
    expect_malformed(NULL, 3);
}

static void test_decode_accepts_the_last_bucket(void **state)
{
    static const uint8_t last[] = {0x01, 0xAF, 0x09, 0x07}; /* gap 1199: bucket 1199 */
    stats_hist *h = hist_new();

    (void)state;
    assert_true(stats_hist_decode(h, last, sizeof last));
    assert_int_equal(h->buckets[STATS_HIST_BUCKETS - 1], 7);
    assert_int_equal(h->count, 7);
    free(h);
}

/* Every truncation of a valid encoding is either rejected or a valid shorter histogram. */
static void test_decode_truncations(void **state)
{
    stats_hist *h = hist_new(), *back = hist_new();
    uint8_t buf[16384];

    (void)state;
    random_hist(h, 3000);
    size_t n = stats_hist_encode(h, buf, sizeof buf);
    for (size_t len = 1; len < n; len++) {
        if (stats_hist_decode(back, buf, len))
            assert_true(back->count < h->count);
        else
            assert_int_equal(back->count, 0);
    }
    free(h);
    free(back);
}

/* Random bytes never crash the decoder, and what it accepts is canonical: it encodes back to
 * the same bytes. */
static void test_decode_random_bytes(void **state)
{
    stats_hist *h = hist_new();
    uint8_t in[64], again[16384];

    (void)state;
    for (int i = 0; i < 200000; i++) {
        size_t len = 1 + rnd() % sizeof in;
        for (size_t j = 0; j < len; j++)
            in[j] = (uint8_t)(j == 0 && rnd() % 4 ? 1 : rnd());
        if (rnd() % 2)
            for (size_t j = 1; j < len; j++)
                in[j] &= 0x87; /* small values: more valid encodings */
        if (!stats_hist_decode(h, in, len))
            continue;
        assert_int_equal(stats_hist_encode(h, again, sizeof again), len);
        assert_memory_equal(again, in, len);
    }
    free(h);
}

/* ---- entries ---- */

static stats_entry *entry_new(void)
{
    stats_entry *e = calloc(1, sizeof *e);
    assert_non_null(e);
    return e;
}

static void test_entry_add_counts(void **state)
{
    stats_entry *e = entry_new();

    (void)state;
    stats_entry_add(e, 100.0, 5, NULL, 2000);
    stats_entry_add(e, 300.0, -1, "", 1000); /* no row count; an earlier completion */
    stats_entry_add(e, 200.0, 2, "23505", 3000);
    assert_int_equal(e->calls, 3);
    assert_int_equal(e->errors, 1);
    assert_int_equal(e->rows, 7);
    assert_true(e->total_us == 600.0);
    assert_true(e->min_us == 100.0);
    assert_true(e->max_us == 300.0);
    assert_true(fabs(e->mean_us - 200.0) < 1e-9);
    assert_true(fabs(stats_entry_stddev(e) - sqrt(20000.0 / 3.0)) < 1e-9);
    assert_int_equal(e->first_us, 1000);
    assert_int_equal(e->last_us, 3000);
    assert_int_equal(e->hist.count, 3);
    assert_true(e->dirty);
    assert_int_equal(e->n_errs, 1);
    assert_string_equal(e->errs[0].sqlstate, "23505");
    stats_entry_add(e, NAN, 0, NULL, 4000); /* a bad clock counts as 0 */
    assert_true(e->min_us == 0.0);
    assert_true(isfinite(e->mean_us) && isfinite(e->m2));
    free(e);
}

static void test_entry_stddev_welford_matches_two_pass(void **state)
{
    enum { N = 100000 };
    stats_entry *e = entry_new();
    double *v = malloc(N * sizeof *v), sum = 0.0, sq = 0.0;

    (void)state;
    assert_non_null(v);
    assert_true(stats_entry_stddev(e) == 0.0);
    for (int i = 0; i < N; i++) {
        v[i] = 1e9 + rnd_unit() * 10.0; /* a large mean: naive sums of squares would cancel */
        stats_entry_add(e, v[i], 1, NULL, i);
        sum += v[i];
    }
    double mean = sum / N;
    for (int i = 0; i < N; i++)
        sq += (v[i] - mean) * (v[i] - mean);
    double exact = sqrt(sq / N);
    assert_true(fabs(e->mean_us - mean) < 1e-12 * mean);
    if (fabs(stats_entry_stddev(e) - exact) > 1e-6 * exact)
        fail_msg("Welford %.12f, two-pass %.12f", stats_entry_stddev(e), exact);
    free(v);
    free(e);
}

static void test_entry_sqlstates_overflow_into_other(void **state)
{
    stats_entry *e = entry_new();
    char code[16];

    (void)state;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < STATS_MAX_SQLSTATES + 3; i++) {
            snprintf(code, sizeof code, "4%04d", i);
            stats_entry_add(e, 10.0, 0, code, 1);
        }
    }
    stats_entry_add(e, 10.0, 0, "40001XYZ", 1); /* cut to five characters */
    assert_int_equal(e->n_errs, STATS_MAX_SQLSTATES);
    assert_int_equal(e->errors, 2 * (STATS_MAX_SQLSTATES + 3) + 1);
    assert_int_equal(e->other_errors, 2 * 3);
    assert_string_equal(e->errs[0].sqlstate, "40000");
    assert_int_equal(e->errs[0].count, 2);
    assert_string_equal(e->errs[1].sqlstate, "40001");
    assert_int_equal(e->errs[1].count, 3);
    free(e);
}

/* ---- the table ---- */

static void test_table_get_creates_once(void **state)
{
    stats_table *t = stats_table_new();

    (void)state;
    assert_non_null(t);
    stats_entry *a = stats_table_get(t, 42, "db", "alice", "SELECT $1", "SELECT", false);
    assert_non_null(a);
    assert_ptr_equal(stats_table_get(t, 42, "db", "alice", "other text", "OTHER", true), a);
    assert_string_equal(a->query, "SELECT $1"); /* the first text stays */
    assert_string_equal(a->command, "SELECT");
    assert_false(a->fallback);
    assert_false(a->dirty);
    assert_ptr_not_equal(stats_table_get(t, 42, "db", "bob", "q", "SELECT", false), a);
    assert_ptr_not_equal(stats_table_get(t, 42, "db2", "alice", "q", "SELECT", false), a);
    assert_ptr_not_equal(stats_table_get(t, 43, "db", "alice", "q", "SELECT", false), a);
    /* ("dba", "lice") is another key than ("db", "alice") */
    assert_ptr_not_equal(stats_table_get(t, 42, "dba", "lice", "q", "SELECT", false), a);
    stats_entry *n = stats_table_get(t, 7, NULL, NULL, NULL, NULL, true);
    assert_non_null(n);
    assert_string_equal(n->database, "");
    assert_string_equal(n->query, "");
    assert_string_equal(n->command, "");
    assert_true(n->fallback);
    stats_entry *c =
        stats_table_get(t, 8, "d", "u", "q", "A VERY LONG COMMAND TAG THAT DOES NOT FIT", false);
    assert_int_equal(strlen(c->command), sizeof c->command - 1);
    assert_int_equal(stats_table_count(t), 7);
    stats_table_free(t);
    stats_table_free(NULL);
}

typedef struct seen {
    int calls;
    uint64_t sum;
    bool remark; /* mark each entry dirty again, as a failed write would */
} seen;

static void collect(stats_entry *e, void *arg)
{
    seen *s = arg;

    s->calls++;
    s->sum += e->fingerprint;
    assert_false(e->dirty);
    if (s->remark)
        e->dirty = true;
}

static void test_table_dirty_iteration(void **state)
{
    stats_table *t = stats_table_new();
    seen s = {0};

    (void)state;
    for (uint64_t fp = 1; fp <= 5; fp++)
        stats_table_get(t, fp, "db", "u", "q", "SELECT", false);
    stats_entry_add(stats_table_get(t, 2, "db", "u", NULL, NULL, false), 5.0, 1, NULL, 1);
    stats_entry_add(stats_table_get(t, 4, "db", "u", NULL, NULL, false), 5.0, 1, NULL, 1);
    stats_table_take_dirty(t, false, collect, &s);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.sum, 6);
    memset(&s, 0, sizeof s);
    stats_table_take_dirty(t, false, collect, &s);
    assert_int_equal(s.calls, 0);
    stats_table_take_dirty(t, true, collect, &s);
    assert_int_equal(s.calls, 5);
    assert_int_equal(s.sum, 15);
    memset(&s, 0, sizeof s);
    s.remark = true;
    stats_entry_add(stats_table_get(t, 3, "db", "u", NULL, NULL, false), 5.0, 1, NULL, 1);
    stats_table_take_dirty(t, false, collect, &s);
    assert_int_equal(s.calls, 1);
    s.calls = 0;
    stats_table_take_dirty(t, false, collect, &s); /* still marked: comes again */
    assert_int_equal(s.calls, 1);
    stats_table_take_dirty(t, true, NULL, NULL); /* just clears */
    s.calls = 0;
    stats_table_take_dirty(t, false, collect, &s);
    assert_int_equal(s.calls, 0);
    stats_table_free(t);
}

/* Many entries, with examples owned by the table: found again, and all freed (ASan). */
static void test_table_many_entries(void **state)
{
    enum { N = 100000 };
    stats_table *t = stats_table_new();
    stats_entry **made = malloc(N * sizeof *made);
    char db[16], user[16];

    (void)state;
    assert_non_null(made);
    for (int i = 0; i < N; i++) {
        snprintf(db, sizeof db, "db%d", i % 7);
        snprintf(user, sizeof user, "u%d", i % 13);
        made[i] =
            stats_table_get(t, (uint64_t)i * 0x9E3779B97F4A7C15ULL, db, user, "q", "SELECT", false);
        assert_non_null(made[i]);
        stats_entry_add(made[i], (double)(i % 1000) + 1.0, 1, i % 10 ? NULL : "57014", i);
        if (i % 5 == 0) {
            made[i]->example_query = strdup("SELECT 1");
            made[i]->example_params = strdup("$1 = '1'");
        }
    }
    assert_int_equal(stats_table_count(t), N);
    for (int i = 0; i < N; i += 97) {
        snprintf(db, sizeof db, "db%d", i % 7);
        snprintf(user, sizeof user, "u%d", i % 13);
        assert_ptr_equal(
            stats_table_get(t, (uint64_t)i * 0x9E3779B97F4A7C15ULL, db, user, NULL, NULL, false),
            made[i]);
    }
    seen s = {0};
    stats_table_take_dirty(t, false, collect, &s);
    assert_int_equal(s.calls, N);
    free(made);
    stats_table_free(t);
}

/* ---- the cap: folding into "other" ---- */

/* Merging two entries gives what one entry seeing both sets of calls would have. */
static void test_entry_merge_equals_adding_both(void **state)
{
    stats_entry *a = entry_new(), *b = entry_new(), *both = entry_new();
    static const char *const codes[] = {"22012", "23505", "40001", NULL};

    (void)state;
    for (int i = 0; i < 3000; i++) {
        double us = rnd_log(5.0, 5e6);
        const char *code = i % 7 == 0 ? codes[(i / 7) % 4] : NULL;
        stats_entry_add(i % 3 ? a : b, us, i % 5, code, 1000 + i);
        stats_entry_add(both, us, i % 5, code, 1000 + i);
    }
    stats_entry_merge(a, b);
    assert_int_equal(a->calls, both->calls);
    assert_int_equal(a->errors, both->errors);
    assert_int_equal(a->rows, both->rows);
    assert_true(fabs(a->total_us - both->total_us) <= 1e-9 * both->total_us);
    assert_true(a->min_us == both->min_us && a->max_us == both->max_us);
    assert_true(fabs(a->mean_us - both->mean_us) <= 1e-9 * both->mean_us);
    assert_true(fabs(stats_entry_stddev(a) - stats_entry_stddev(both)) <=
                1e-9 * stats_entry_stddev(both));
    assert_int_equal(a->first_us, both->first_us);
    assert_int_equal(a->last_us, both->last_us);
    assert_memory_equal(&a->hist, &both->hist, sizeof a->hist);
    assert_int_equal(a->n_errs, both->n_errs);
    for (int i = 0; i < a->n_errs; i++) {
        int k = 0;
        while (k < both->n_errs && strcmp(both->errs[k].sqlstate, a->errs[i].sqlstate) != 0)
            k++;
        assert_true(k < both->n_errs);
        assert_int_equal(a->errs[i].count, both->errs[k].count);
    }
    stats_entry *empty = entry_new(); /* merging into an empty entry copies */
    stats_entry_merge(empty, both);
    assert_true(empty->min_us == both->min_us && empty->first_us == both->first_us);
    free(a);
    free(b);
    free(both);
    free(empty);
}

typedef struct folds {
    uint64_t entries, calls, errors, rows;
    double total_us;
    bool expensive_folded;
} folds;

static void count_fold(const stats_entry *e, void *arg)
{
    folds *f = arg;

    f->entries++;
    f->calls += e->calls;
    f->errors += e->errors;
    f->rows += e->rows;
    f->total_us += e->total_us;
    f->expensive_folded |= e->fingerprint < 10;
}

static void sum_entries(stats_entry *e, void *arg)
{
    count_fold(e, arg);
}

/* 20,000 shapes through a table of 500: it never holds more, the costly shapes stay, and what
 * was folded is in "other" exactly: calls, errors, rows, time, histogram. */
static void test_table_fold_keeps_exact_counts(void **state)
{
    enum { SHAPES = 20000, MAX = 500 };
    stats_table *t = stats_table_new();
    folds f = {0};
    uint64_t calls = 0, errors = 0, rows = 0;
    double total = 0.0;
    char db[8];

    (void)state;
    assert_null(stats_table_other(t));
    assert_true(stats_table_limit(t, MAX, count_fold, &f));
    for (uint64_t fp = 0; fp < SHAPES; fp++) {
        snprintf(db, sizeof db, "db%d", (int)(fp % 3));
        for (int k = 0; k < 1 + (int)(fp % 4); k++) {
            double us = fp < 10 ? 1e6 : rnd_log(1.0, 1000.0); /* shapes 0-9 cost the most */
            stats_entry *e = stats_table_get(t, fp, db, "u", "q", "SELECT", false);
            assert_non_null(e);
            stats_entry_add(e, us, k, fp % 11 == 0 ? "57014" : NULL, (int64_t)fp);
            calls++;
            total += us;
            rows += (uint64_t)k;
            errors += fp % 11 == 0;
            assert_true(stats_table_count(t) <= MAX);
        }
    }
    const stats_entry *other = stats_table_other(t);
    assert_non_null(other);
    assert_true(other->other);
    assert_false(f.expensive_folded);
    assert_int_equal(stats_table_folded(t), f.entries);
    assert_int_equal(f.entries + stats_table_count(t), SHAPES);
    assert_int_equal(other->calls, f.calls);
    assert_int_equal(other->errors, f.errors);
    assert_int_equal(other->rows, f.rows);
    assert_true(fabs(other->total_us - f.total_us) <= 1e-9 * f.total_us);
    assert_int_equal(other->hist.count, f.calls);
    assert_int_equal(other->errs[0].count + other->other_errors, f.errors);
    /* Everything is counted once: in a kept entry or in "other", which comes with the rest. */
    folds kept = {0};
    stats_table_take_dirty(t, true, sum_entries, &kept);
    assert_int_equal(kept.entries, stats_table_count(t) + 1);
    assert_int_equal(kept.calls, calls);
    assert_int_equal(kept.errors, errors);
    assert_int_equal(kept.rows, rows);
    assert_true(fabs(kept.total_us - total) <= 1e-9 * total);
    stats_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_quantiles_within_one_percent),
        cmocka_unit_test(test_hist_small_samples),
        cmocka_unit_test(test_hist_quantile_within_min_and_max),
        cmocka_unit_test(test_hist_bucket_edges),
        cmocka_unit_test(test_hist_out_of_range_values),
        cmocka_unit_test(test_hist_full_bucket_saturates),
        cmocka_unit_test(test_hist_merge_equals_adding_both),
        cmocka_unit_test(test_hist_merge_saturates),
        cmocka_unit_test(test_encode_known_bytes),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_encode_writes_nothing_past_cap),
        cmocka_unit_test(test_decode_rejects_malformed),
        cmocka_unit_test(test_decode_accepts_the_last_bucket),
        cmocka_unit_test(test_decode_truncations),
        cmocka_unit_test(test_decode_random_bytes),
        cmocka_unit_test(test_entry_add_counts),
        cmocka_unit_test(test_entry_stddev_welford_matches_two_pass),
        cmocka_unit_test(test_entry_sqlstates_overflow_into_other),
        cmocka_unit_test(test_table_get_creates_once),
        cmocka_unit_test(test_table_dirty_iteration),
        cmocka_unit_test(test_table_many_entries),
        cmocka_unit_test(test_entry_merge_equals_adding_both),
        cmocka_unit_test(test_table_fold_keeps_exact_counts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
