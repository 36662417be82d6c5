/* Unit tests for the EXPLAIN sampler: candidates, per-shape limits, backoff, rate and budget. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/explain.h"

#define SEC 1000000LL     /* microseconds */
#define MAX_SHAPES 10000u /* the sampler's bound on shapes remembered */

/* ---- helpers ---- */

/* Settings that let every candidate through unless the test says otherwise. */
static explain_sampler_settings open_settings(void)
{
    explain_sampler_settings s;

    explain_sampler_defaults(&s);
    s.budget_share = 1e6;
    return s;
}

/* One execution of a slow statement: observed, then decided. */
static explain_skip run(explain_sampler *sm, double ms, uint64_t fp, uint64_t params,
                        explain_guard_kind guard, int64_t now_us)
{
    assert_true(explain_sampler_observe(sm, ms, 0.0, 0));
    return explain_sampler_decide(sm, fp, params, guard, now_us);
}

static explain_skip slow_select(explain_sampler *sm, uint64_t fp, uint64_t params, int64_t now)
{
    return run(sm, 100.0, fp, params, EXPLAIN_GUARD_SELECT, now);
}

/* Statement time that makes no candidate, to grow the budget's base. */
static void observe_fast(explain_sampler *sm, double total_ms)
{
    for (double t = 0; t < total_ms; t += 10.0)
        assert_false(explain_sampler_observe(sm, 10.0, 0.0, 0));
}

static uint64_t skips(const explain_sampler *sm, explain_skip reason)
{
    return explain_sampler_skips(sm, reason);
}

/* ---- settings and names ---- */

static void test_defaults(void **state)
{
    explain_sampler_settings s;

    (void)state;
    memset(&s, 0xff, sizeof s);
    explain_sampler_defaults(&s);
    assert_true(s.min_duration_ms == 50.0);
    assert_int_equal(s.p95_min_calls, 100);
    assert_int_equal(s.max_per_shape, 3);
    assert_int_equal(s.backoff_ms, 60000);
    assert_true(s.budget_share == 0.05);
    assert_true(s.sample_rate == 1.0);
    assert_false(s.dml_analyze);
    explain_sampler_defaults(NULL);
}

static void test_names(void **state)
{
    static const char *const expected[EXPLAIN_SKIP_COUNT] = {
        "sample", "enough",   "same_params",   "backoff",     "budget", "rate",
        "dml",    "guard",    "no_connection", "failed",      "queue",  "incomplete",
        "error",  "function", "temp_table",    "not_visible",
    };

    (void)state;
    for (int i = 0; i < EXPLAIN_SKIP_COUNT; i++)
        assert_string_equal(explain_skip_name((explain_skip)i), expected[i]);
    assert_string_equal(explain_skip_name(EXPLAIN_SKIP_COUNT), "unknown");
    assert_string_equal(explain_skip_name((explain_skip)-1), "unknown");
}

/* No sampler (allocation failed upstream) and odd settings never crash. */
static void test_null_and_bad_settings(void **state)
{
    explain_sampler_settings s;
    explain_sampler *sm;

    (void)state;
    assert_false(explain_sampler_observe(NULL, 100.0, 0.0, 0));
    assert_int_equal(explain_sampler_decide(NULL, 1, 1, EXPLAIN_GUARD_SELECT, 0),
                     EXPLAIN_SKIP_QUEUE);
    explain_sampler_done(NULL, 1, 1.0, EXPLAIN_SAMPLE, 0);
    explain_sampler_count(NULL, EXPLAIN_SKIP_QUEUE);
    assert_int_equal(explain_sampler_skips(NULL, EXPLAIN_SKIP_QUEUE), 0);
    explain_sampler_free(NULL);

    sm = explain_sampler_new(NULL); /* the defaults */
    assert_non_null(sm);
    assert_false(explain_sampler_observe(sm, 49.0, 0.0, 0));
    assert_true(explain_sampler_observe(sm, 50.0, 0.0, 0));
    explain_sampler_free(sm);

    explain_sampler_defaults(&s);
    s.min_duration_ms = NAN; /* the default, 50 */
    s.max_per_shape = -4;    /* nothing is sampled */
    s.backoff_ms = -1;
    s.budget_share = NAN;
    s.sample_rate = 7.0;
    sm = explain_sampler_new(&s);
    assert_non_null(sm);
    assert_false(explain_sampler_observe(sm, NAN, 0.0, 0));
    assert_false(explain_sampler_observe(sm, -5.0, 0.0, 0));
    assert_false(explain_sampler_observe(sm, INFINITY, 0.0, 0));
    assert_false(explain_sampler_observe(sm, 49.0, 0.0, 0));
    assert_int_equal(run(sm, 60.0, 1, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SKIP_ENOUGH);
    explain_sampler_done(sm, 1, NAN, EXPLAIN_SKIP_FAILED, 0); /* nothing in flight: only counted */
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FAILED), 1);
    explain_sampler_free(sm);
}

/* ---- candidates ---- */

static void test_fast_statements_are_not_candidates(void **state)
{
    explain_sampler *sm = explain_sampler_new(NULL);

    (void)state;
    assert_false(explain_sampler_observe(sm, 0.01, 0.0, 0));
    assert_false(explain_sampler_observe(sm, 10.0, 0.0, 0));
    assert_false(explain_sampler_observe(sm, 49.999, 0.0, 0));
    assert_true(explain_sampler_observe(sm, 50.0, 0.0, 0));
    assert_true(explain_sampler_observe(sm, 5000.0, 0.0, 0));
    for (int i = 0; i < EXPLAIN_SKIP_COUNT; i++)
        assert_int_equal(skips(sm, (explain_skip)i), 0); /* observing decides nothing */
    explain_sampler_free(sm);
}

static void test_p95_rule(void **state)
{
    explain_sampler_settings s;
    explain_sampler *sm = explain_sampler_new(NULL);

    (void)state;
    assert_true(explain_sampler_observe(sm, 6.0, 5.0, 100));    /* above p95, enough calls */
    assert_true(explain_sampler_observe(sm, 6.0, 5.0, 100000)); /* well past the minimum */
    assert_false(explain_sampler_observe(sm, 6.0, 5.0, 99));    /* too few calls yet */
    assert_false(explain_sampler_observe(sm, 5.0, 5.0, 100));   /* at p95, not above */
    assert_false(explain_sampler_observe(sm, 4.0, 5.0, 1000));
    assert_false(explain_sampler_observe(sm, 0.5, 0.1, 1000)); /* above p95, under the floor */
    assert_true(explain_sampler_observe(sm, 1.0, 0.1, 1000));  /* at the floor */
    assert_false(explain_sampler_observe(sm, 6.0, NAN, 1000));
    explain_sampler_free(sm);

    explain_sampler_defaults(&s);
    s.p95_min_calls = 0; /* the rule off */
    sm = explain_sampler_new(&s);
    assert_false(explain_sampler_observe(sm, 6.0, 5.0, 100000));
    assert_true(explain_sampler_observe(sm, 60.0, 5.0, 100000));
    explain_sampler_free(sm);
}

/* ---- per-shape limits ---- */

/* The acceptance: 1000 executions of one slow statement yield at most K samples. */
static void test_thousand_executions_distinct_params(void **state)
{
    explain_sampler *sm = explain_sampler_new(NULL); /* the defaults: K = 3, 5% budget */
    int sampled = 0;

    (void)state;
    for (uint64_t n = 0; n < 1000; n++) {
        explain_skip v = slow_select(sm, 42, 1000 + n, (int64_t)n * SEC);
        if (v == EXPLAIN_SAMPLE) {
            sampled++;
            explain_sampler_done(sm, 42, 120.0, EXPLAIN_SAMPLE, (int64_t)n * SEC);
        } else {
            assert_int_equal(v, EXPLAIN_SKIP_ENOUGH);
        }
    }
    assert_int_equal(sampled, 3);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 3);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_ENOUGH), 997);
    for (int i = 2; i < EXPLAIN_SKIP_COUNT; i++)
        assert_int_equal(skips(sm, (explain_skip)i), 0);
    explain_sampler_free(sm);
}

/* Samples in flight count toward the limit as well: none ended yet. */
static void test_limit_counts_samples_in_flight(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm = explain_sampler_new(&s);

    (void)state;
    for (uint64_t n = 0; n < 1000; n++)
        slow_select(sm, 7, n, 0);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 3);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_ENOUGH), 997);
    /* Another shape is not affected. */
    assert_int_equal(slow_select(sm, 8, 0, 0), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

static void test_same_params(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm = explain_sampler_new(&s);

    (void)state;
    assert_int_equal(slow_select(sm, 1, 77, 0), EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, 1, 77, 0), EXPLAIN_SKIP_SAME_PARAMS); /* in flight */
    explain_sampler_done(sm, 1, 90.0, EXPLAIN_SAMPLE, 0);
    assert_int_equal(slow_select(sm, 1, 77, 0), EXPLAIN_SKIP_SAME_PARAMS); /* done */
    assert_int_equal(slow_select(sm, 2, 77, 0), EXPLAIN_SAMPLE); /* same values, other shape */
    assert_int_equal(slow_select(sm, 1, 78, 0), EXPLAIN_SAMPLE);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_SAME_PARAMS), 2);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 3);
    /* Once the shape has enough, that is the reason given, before same_params. */
    assert_int_equal(slow_select(sm, 1, 79, 0), EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, 1, 77, 0), EXPLAIN_SKIP_ENOUGH);
    explain_sampler_free(sm);
}

/* ---- the guard's verdict ---- */

static void test_guard_and_dml(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm = explain_sampler_new(&s);

    (void)state;
    assert_int_equal(run(sm, 100.0, 1, 1, EXPLAIN_GUARD_REFUSED, 0), EXPLAIN_SKIP_GUARD);
    assert_int_equal(run(sm, 100.0, 1, 2, (explain_guard_kind)99, 0), EXPLAIN_SKIP_GUARD);
    /* DML is chosen like a SELECT, to be explained without ANALYZE: it reserves a sample. */
    assert_int_equal(run(sm, 100.0, 2, 1, EXPLAIN_GUARD_DML, 0), EXPLAIN_SKIP_DML);
    assert_int_equal(run(sm, 100.0, 2, 1, EXPLAIN_GUARD_DML, 0), EXPLAIN_SKIP_SAME_PARAMS);
    for (uint64_t n = 10; n < 12; n++)
        assert_int_equal(run(sm, 100.0, 2, n, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SAMPLE);
    /* The guard comes first: a refused statement of a full shape is a guard skip. */
    assert_int_equal(run(sm, 100.0, 2, 99, EXPLAIN_GUARD_REFUSED, 0), EXPLAIN_SKIP_GUARD);
    assert_int_equal(run(sm, 100.0, 2, 99, EXPLAIN_GUARD_DML, 0), EXPLAIN_SKIP_ENOUGH);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_GUARD), 3);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_DML), 1);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 2);
    explain_sampler_free(sm);

    s.dml_analyze = true; /* explain_dml = analyze-rollback */
    sm = explain_sampler_new(&s);
    assert_int_equal(run(sm, 100.0, 3, 1, EXPLAIN_GUARD_DML, 0), EXPLAIN_SAMPLE);
    assert_int_equal(run(sm, 100.0, 3, 1, EXPLAIN_GUARD_DML, 0), EXPLAIN_SKIP_SAME_PARAMS);
    assert_int_equal(run(sm, 100.0, 4, 1, EXPLAIN_GUARD_REFUSED, 0), EXPLAIN_SKIP_GUARD);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_DML), 0);
    explain_sampler_free(sm);
}

/* A statement calling a denied function (PLAN_ONLY) is planned, never executed: like DML it
 * reserves a sample at the plain estimate, counted "function", even with dml_analyze. And a
 * SELECT whose plan check refused ANALYZE ends as done(function): counted, kept as a plan,
 * no backoff. */
static void test_function_plan_only(void **state)
{
    explain_sampler_settings s;
    explain_sampler *sm;

    (void)state;
    explain_sampler_defaults(&s);
    s.dml_analyze = true;
    sm = explain_sampler_new(&s); /* budget: 5% of the 10 s warm-up, 500 ms */
    assert_int_equal(run(sm, 2000.0, 1, 1, EXPLAIN_GUARD_PLAN_ONLY, 0), EXPLAIN_SKIP_FUNCTION);
    assert_int_equal(run(sm, 2000.0, 1, 1, EXPLAIN_GUARD_PLAN_ONLY, 0), EXPLAIN_SKIP_SAME_PARAMS);
    explain_sampler_done(sm, 1, 3.0, EXPLAIN_SAMPLE, 0);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FUNCTION), 1);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 0);

    assert_int_equal(run(sm, 100.0, 2, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 2, 30.0, EXPLAIN_SKIP_FUNCTION, 0);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FUNCTION), 2);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FAILED), 0);
    /* the sample stays: same parameters are not taken again, others are, at once */
    assert_int_equal(run(sm, 100.0, 2, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SKIP_SAME_PARAMS);
    assert_int_equal(run(sm, 100.0, 2, 2, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

/* A slow DELETE would never fit the warm-up budget at its own duration; planning it costs
 * little, and it is charged at most PLAIN_EXPLAIN_MS (10 ms) until done() says more. */
static void test_dml_plain_estimate(void **state)
{
    explain_sampler_settings s;
    explain_sampler *sm;

    (void)state;
    explain_sampler_defaults(&s);
    sm = explain_sampler_new(&s); /* budget: 5% of the 10 s warm-up, 500 ms */
    assert_int_equal(run(sm, 2000.0, 7, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SKIP_BUDGET);
    assert_int_equal(run(sm, 2000.0, 8, 1, EXPLAIN_GUARD_DML, 0), EXPLAIN_SKIP_DML);
    explain_sampler_done(sm, 8, 3.0, EXPLAIN_SAMPLE, 0);
    /* A failed side connection is counted under its own reason. */
    assert_int_equal(run(sm, 2000.0, 9, 1, EXPLAIN_GUARD_DML, 0), EXPLAIN_SKIP_DML);
    explain_sampler_done(sm, 9, 0.0, EXPLAIN_SKIP_NO_CONNECTION, 0);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_NO_CONNECTION), 1);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FAILED), 0);
    explain_sampler_free(sm);
}

/* ---- the budget ---- */

/* Shapes of 100 ms each, done at the estimate: at the start the warm-up allowance (5% of 10 s)
 * pays for five; then the budget waits for statement time to grow. */
static void test_budget_exhaustion_and_recovery(void **state)
{
    explain_sampler *sm = explain_sampler_new(NULL);
    uint64_t fp = 1;

    (void)state;
    for (; fp <= 5; fp++) {
        assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, fp, 100.0, EXPLAIN_SAMPLE, 0);
    }
    for (; fp <= 50; fp++)
        assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SKIP_BUDGET);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_BUDGET), 45);
    /* 5 s observed so far; 15 s more make 5% of 20 s = 1000 ms: room for five more. */
    observe_fast(sm, 15000.0);
    for (int n = 0; n < 5; n++, fp++) {
        assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, fp, 100.0, EXPLAIN_SAMPLE, 0);
    }
    assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SKIP_BUDGET);
    /* A shape skipped for budget reserved nothing: it is sampled once there is room. */
    observe_fast(sm, 5000.0);
    assert_int_equal(slow_select(sm, 6, 1, 0), EXPLAIN_SAMPLE);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 11);
    explain_sampler_free(sm);
}

/* A sample in flight is charged at its estimate; done() charges what it really cost. */
static void test_budget_estimate_and_real_cost(void **state)
{
    explain_sampler *sm = explain_sampler_new(NULL); /* 500 ms to start with */

    (void)state;
    assert_int_equal(run(sm, 300.0, 1, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SAMPLE);
    /* 300 in flight + 300 > 500 */
    assert_int_equal(run(sm, 300.0, 2, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SKIP_BUDGET);
    explain_sampler_done(sm, 1, 50.0, EXPLAIN_SAMPLE, 0); /* it was cheaper: 50 spent */
    assert_int_equal(run(sm, 300.0, 2, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 2, 400.0, EXPLAIN_SAMPLE, 0); /* dearer: 450 spent */
    assert_int_equal(run(sm, 60.0, 3, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SKIP_BUDGET);
    assert_int_equal(run(sm, 50.0, 3, 1, EXPLAIN_GUARD_SELECT, 0), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

static void test_budget_share_zero(void **state)
{
    explain_sampler_settings s;
    explain_sampler *sm;

    (void)state;
    explain_sampler_defaults(&s);
    s.budget_share = 0.0;
    sm = explain_sampler_new(&s);
    observe_fast(sm, 100000.0);
    for (uint64_t fp = 0; fp < 20; fp++)
        assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SKIP_BUDGET);
    explain_sampler_free(sm);
}

/* ---- the rate ---- */

static void test_rate_zero(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;

    (void)state;
    s.sample_rate = 0.0;
    sm = explain_sampler_new(&s);
    for (uint64_t fp = 0; fp < 200; fp++)
        assert_int_equal(slow_select(sm, fp, fp, 0), EXPLAIN_SKIP_RATE);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_RATE), 200);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 0);
    explain_sampler_free(sm);
}

/* About half, and the same half every time: the draw is seeded, not rand(). */
static void test_rate_half_deterministic(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *a, *b;
    int sampled = 0;

    (void)state;
    s.sample_rate = 0.5;
    a = explain_sampler_new(&s);
    b = explain_sampler_new(&s);
    srand(12345); /* rand() has no say */
    for (uint64_t fp = 0; fp < 2000; fp++) {
        explain_skip va = slow_select(a, fp, 1, 0);
        explain_skip vb = slow_select(b, fp, 1, 0);
        assert_int_equal(va, vb);
        assert_true(va == EXPLAIN_SAMPLE || va == EXPLAIN_SKIP_RATE);
        if (va == EXPLAIN_SAMPLE) {
            sampled++;
            explain_sampler_done(a, fp, 1.0, EXPLAIN_SAMPLE, 0);
            explain_sampler_done(b, fp, 1.0, EXPLAIN_SAMPLE, 0);
        }
    }
    assert_in_range(sampled, 900, 1100);
    assert_int_equal(skips(a, EXPLAIN_SKIP_RATE), 2000 - sampled);
    explain_sampler_free(a);
    explain_sampler_free(b);
}

/* ---- failures and backoff ---- */

static void test_failure_backoff_doubling(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;
    int64_t t = 1000 * SEC, wait;
    uint64_t params = 1;

    (void)state;
    s.backoff_ms = 1000;
    s.max_per_shape = 1;
    sm = explain_sampler_new(&s);
    /* Failures in a row wait 1, 2, 4, 8, 16, 16 s. */
    for (int n = 0; n < 6; n++) {
        wait = (n < 4 ? 1LL << n : 16LL) * SEC;
        assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, 9, 5.0, EXPLAIN_SKIP_FAILED, t);
        assert_int_equal(skips(sm, EXPLAIN_SKIP_FAILED), (uint64_t)n + 1);
        assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SKIP_BACKOFF);
        assert_int_equal(slow_select(sm, 9, params++, t + wait - 1), EXPLAIN_SKIP_BACKOFF);
        t += wait;
    }
    assert_int_equal(skips(sm, EXPLAIN_SKIP_BACKOFF), 12);
    /* Other shapes are not held back. */
    assert_int_equal(slow_select(sm, 10, 1, t - 1), EXPLAIN_SAMPLE);
    /* A success resets the streak: the next failure waits 1 s again. */
    assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 9, 5.0, EXPLAIN_SAMPLE, t);
    assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SKIP_ENOUGH);
    explain_sampler_free(sm);

    s.max_per_shape = 2;
    sm = explain_sampler_new(&s);
    t = 0;
    for (int n = 0; n < 3; n++) { /* three failures: the streak is at 4 s */
        assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, 9, 5.0, EXPLAIN_SKIP_FAILED, t);
        t += 16 * SEC;
    }
    assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 9, 5.0, EXPLAIN_SAMPLE, t);
    assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 9, 5.0, EXPLAIN_SKIP_FAILED, t);
    assert_int_equal(slow_select(sm, 9, params++, t + SEC - 1), EXPLAIN_SKIP_BACKOFF);
    assert_int_equal(slow_select(sm, 9, params++, t + SEC), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

/* A later, shorter failure does not cut a running backoff short. */
static void test_backoff_never_shortened(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;
    int64_t t = 0;
    uint64_t params = 1;

    (void)state;
    s.backoff_ms = 1000;
    sm = explain_sampler_new(&s);
    for (int n = 0; n < 4; n++) { /* a streak of four: the next failure waits 16 s */
        assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, 9, 5.0, EXPLAIN_SKIP_FAILED, t);
        t += 100 * SEC;
    }
    for (int n = 0; n < 3; n++)
        assert_int_equal(slow_select(sm, 9, params++, t), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 9, 5.0, EXPLAIN_SKIP_FAILED, t);       /* until t + 16 s */
    explain_sampler_done(sm, 9, 5.0, EXPLAIN_SAMPLE, t);            /* the streak starts over */
    explain_sampler_done(sm, 9, 5.0, EXPLAIN_SKIP_FAILED, t + SEC); /* 1 s from t + 1 s */
    assert_int_equal(slow_select(sm, 9, params++, t + 10 * SEC), EXPLAIN_SKIP_BACKOFF);
    assert_int_equal(slow_select(sm, 9, params++, t + 16 * SEC), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

/* A failed sample gives its place back: another (or the same) parameters may be tried later,
 * and with max_per_shape 1 a sample still in flight holds the place. */
static void test_failure_releases_reservation(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;

    (void)state;
    s.max_per_shape = 1;
    s.backoff_ms = 10;
    sm = explain_sampler_new(&s);
    assert_int_equal(slow_select(sm, 5, 1, 0), EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, 5, 2, 0), EXPLAIN_SKIP_ENOUGH);
    explain_sampler_done(sm, 5, 3.0, EXPLAIN_SKIP_FAILED, 0);
    assert_int_equal(slow_select(sm, 5, 2, 10000), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 5, 3.0, EXPLAIN_SKIP_FAILED, 10000);
    assert_int_equal(slow_select(sm, 5, 1, 40000), EXPLAIN_SAMPLE); /* the first one's values */
    explain_sampler_done(sm, 5, 3.0, EXPLAIN_SAMPLE, 40000);
    assert_int_equal(slow_select(sm, 5, 3, 1000 * SEC), EXPLAIN_SKIP_ENOUGH);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FAILED), 2);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 3);
    explain_sampler_free(sm);
}

/* Two samples of one shape in flight: done() settles the oldest first. */
static void test_two_in_flight_one_fails(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;

    (void)state;
    s.max_per_shape = 2;
    sm = explain_sampler_new(&s);
    assert_int_equal(slow_select(sm, 5, 1, 0), EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, 5, 2, 0), EXPLAIN_SAMPLE);
    explain_sampler_done(sm, 5, 3.0, EXPLAIN_SKIP_FAILED, 0); /* the one with params 1 */
    explain_sampler_done(sm, 5, 3.0, EXPLAIN_SAMPLE, 0);
    assert_int_equal(slow_select(sm, 5, 2, 1000 * SEC), EXPLAIN_SKIP_SAME_PARAMS);
    assert_int_equal(slow_select(sm, 5, 1, 1000 * SEC), EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, 5, 3, 1000 * SEC), EXPLAIN_SKIP_ENOUGH);
    /* done() for a shape never decided only spends time and counts. */
    explain_sampler_done(sm, 12345, 1.0, EXPLAIN_SKIP_FAILED, 0);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_FAILED), 2);
    explain_sampler_free(sm);
}

/* ---- counters ---- */

static void test_counters_per_reason(void **state)
{
    explain_sampler *sm = explain_sampler_new(NULL);

    (void)state;
    explain_sampler_count(sm, EXPLAIN_SKIP_NO_CONNECTION);
    explain_sampler_count(sm, EXPLAIN_SKIP_NO_CONNECTION);
    explain_sampler_count(sm, EXPLAIN_SKIP_QUEUE);
    explain_sampler_count(sm, EXPLAIN_SKIP_BUDGET);
    explain_sampler_count(sm, EXPLAIN_SAMPLE);     /* decide counts samples, not this */
    explain_sampler_count(sm, EXPLAIN_SKIP_COUNT); /* outside the list: ignored */
    explain_sampler_count(sm, (explain_skip)-3);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_NO_CONNECTION), 2);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_QUEUE), 1);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_BUDGET), 1);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 0);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_ENOUGH), 0);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_COUNT), 0);
    assert_int_equal(skips(sm, (explain_skip)-3), 0);
    assert_int_equal(slow_select(sm, 1, 1, 0), EXPLAIN_SAMPLE);
    assert_int_equal(skips(sm, EXPLAIN_SAMPLE), 1);
    explain_sampler_free(sm);
}

/* ---- memory ---- */

/* 10^5 shapes sampled: only the most recent MAX_SHAPES are remembered; an older one is
 * forgotten whole and may be sampled again. */
static void test_shape_memory_bound(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;
    const uint64_t n = 100000;

    (void)state;
    s.max_per_shape = 1;
    sm = explain_sampler_new(&s);
    for (uint64_t fp = 0; fp < n; fp++) {
        assert_int_equal(slow_select(sm, fp * 0x9e3779b97f4a7c15ULL, 1, 0), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, fp * 0x9e3779b97f4a7c15ULL, 1.0, EXPLAIN_SAMPLE, 0);
    }
    for (uint64_t fp = n - MAX_SHAPES; fp < n; fp++)
        assert_int_equal(slow_select(sm, fp * 0x9e3779b97f4a7c15ULL, 2, 0), EXPLAIN_SKIP_ENOUGH);
    assert_int_equal(slow_select(sm, (n - MAX_SHAPES - 1) * 0x9e3779b97f4a7c15ULL, 2, 0),
                     EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, 0, 2, 0), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

/* Forgetting goes by use, not by age: a shape decided again lately is kept. */
static void test_least_recently_used_forgotten(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;

    (void)state;
    s.max_per_shape = 1;
    sm = explain_sampler_new(&s);
    for (uint64_t fp = 0; fp < MAX_SHAPES; fp++) {
        assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SAMPLE);
        explain_sampler_done(sm, fp, 1.0, EXPLAIN_SAMPLE, 0);
    }
    assert_int_equal(slow_select(sm, 0, 2, 0), EXPLAIN_SKIP_ENOUGH);     /* 0 used again */
    assert_int_equal(slow_select(sm, MAX_SHAPES, 1, 0), EXPLAIN_SAMPLE); /* 1 goes */
    explain_sampler_done(sm, MAX_SHAPES, 1.0, EXPLAIN_SAMPLE, 0);
    assert_int_equal(slow_select(sm, 0, 2, 0), EXPLAIN_SKIP_ENOUGH);
    assert_int_equal(slow_select(sm, 2, 2, 0), EXPLAIN_SKIP_ENOUGH);
    assert_int_equal(slow_select(sm, 1, 2, 0), EXPLAIN_SAMPLE);
    explain_sampler_free(sm);
}

/* Shapes with a sample in flight are never forgotten; when all are, a new shape is a queue
 * skip, and room comes back as samples end. */
static void test_all_shapes_in_flight(void **state)
{
    explain_sampler_settings s = open_settings();
    explain_sampler *sm;

    (void)state;
    sm = explain_sampler_new(&s);
    for (uint64_t fp = 0; fp < MAX_SHAPES; fp++)
        assert_int_equal(slow_select(sm, fp, 1, 0), EXPLAIN_SAMPLE);
    assert_int_equal(slow_select(sm, MAX_SHAPES, 1, 0), EXPLAIN_SKIP_QUEUE);
    assert_int_equal(slow_select(sm, 17, 2, 0), EXPLAIN_SAMPLE); /* a known shape still can */
    explain_sampler_done(sm, 3, 1.0, EXPLAIN_SAMPLE, 0);
    assert_int_equal(slow_select(sm, MAX_SHAPES, 1, 0), EXPLAIN_SAMPLE); /* 3 was forgotten */
    assert_int_equal(slow_select(sm, 3, 2, 0), EXPLAIN_SKIP_QUEUE);
    assert_int_equal(skips(sm, EXPLAIN_SKIP_QUEUE), 2);
    explain_sampler_free(sm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_null_and_bad_settings),
        cmocka_unit_test(test_fast_statements_are_not_candidates),
        cmocka_unit_test(test_p95_rule),
        cmocka_unit_test(test_thousand_executions_distinct_params),
        cmocka_unit_test(test_limit_counts_samples_in_flight),
        cmocka_unit_test(test_same_params),
        cmocka_unit_test(test_guard_and_dml),
        cmocka_unit_test(test_dml_plain_estimate),
        cmocka_unit_test(test_function_plan_only),
        cmocka_unit_test(test_budget_exhaustion_and_recovery),
        cmocka_unit_test(test_budget_estimate_and_real_cost),
        cmocka_unit_test(test_budget_share_zero),
        cmocka_unit_test(test_rate_zero),
        cmocka_unit_test(test_rate_half_deterministic),
        cmocka_unit_test(test_failure_backoff_doubling),
        cmocka_unit_test(test_backoff_never_shortened),
        cmocka_unit_test(test_failure_releases_reservation),
        cmocka_unit_test(test_two_in_flight_one_fails),
        cmocka_unit_test(test_counters_per_reason),
        cmocka_unit_test(test_shape_memory_bound),
        cmocka_unit_test(test_least_recently_used_forgotten),
        cmocka_unit_test(test_all_shapes_in_flight),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
