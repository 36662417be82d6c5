/* Unit tests for plan analysis, over plans captured from PostgreSQL 15 (plans/capture.sh). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "pgscope/explain.h"

#ifndef PLAN_DIR
#define PLAN_DIR "tests/unit/plans"
#endif

#define MAX_FINDINGS 64

/* ---- plans and what they yield ---- */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[size] = '\0';
    fclose(f);
    return buf;
}

/* The captured plan NAME (tests/unit/plans/NAME.json); fails the test when it is missing. */
static char *plan_text(const char *name)
{
    char path[512];
    char *text;

    snprintf(path, sizeof path, "%s/%s.json", PLAN_DIR, name);
    text = read_text(path);
    if (!text)
        fail_msg("cannot read %s", path);
    return text;
}

typedef struct result {
    bool ok;
    explain_plan_times times;
    explain_finding f[MAX_FINDINGS];
    int n;
    int calls; /* callbacks, including those past MAX_FINDINGS */
} result;

static void collect(const explain_finding *f, void *arg)
{
    result *r = arg;

    if (r->n < MAX_FINDINGS)
        r->f[r->n++] = *f;
    r->calls++;
}

static void analyze_text(const char *json, result *r)
{
    memset(r, 0, sizeof *r);
    r->ok = explain_plan_findings(json, collect, r, &r->times);
}

static void analyze(const char *name, result *r)
{
    char *text = plan_text(name);

    analyze_text(text, r);
    free(text);
    assert_true(r->ok);
}

static int count_kind(const result *r, const char *kind)
{
    int c = 0;

    for (int i = 0; i < r->n; i++)
        c += strcmp(r->f[i].kind, kind) == 0;
    return c;
}

static const explain_finding *first_kind(const result *r, const char *kind)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->f[i].kind, kind) == 0)
            return &r->f[i];
    fail_msg("no %s finding", kind);
    return NULL;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" not found in:\n%s", needle, haystack);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);

    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* A number of the captured plan: of the object beside "Plan" (top) or of the root node. */
static double plan_number(const char *name, bool top, const char *key)
{
    char *text = plan_text(name);
    json_t *doc = json_loads(text, 0, NULL);
    const json_t *o = json_array_get(doc, 0);
    double v = json_number_value(json_object_get(top ? o : json_object_get(o, "Plan"), key));

    json_decref(doc);
    free(text);
    return v;
}

static double root_number(const char *name, const char *key)
{
    return plan_number(name, false, key);
}

/* ---- every captured plan: exactly the findings it should have ---- */

typedef struct expectation {
    const char *plan;
    const char *kinds[4]; /* each kind once, NULL-terminated; the plan has exactly these */
} expectation;

static const expectation EXPECTED[] = {
    {"seq_scan_filter", {"seq_scan_filter"}},
    {"seq_scan_parallel", {"seq_scan_filter"}},
    {"misestimate_10x", {"misestimate"}},
    {"misestimate_100x", {"misestimate"}},
    {"misestimate_1000x", {"misestimate"}},
    {"sort_spill", {"sort_spill", "temp_written"}},
    {"hash_batches", {"hash_batches", "temp_written"}},
    {"nested_loop_inner_scan", {"nested_loop_inner_scan"}},
    {"nested_loop_materialize", {"nested_loop_inner_scan"}},
    {"lossy_bitmap", {"lossy_bitmap"}},
    {"heap_fetches", {"heap_fetches"}},
    {"temp_written", {"temp_written"}},
    {"plain_select", {NULL}},
    {"plain_delete", {NULL}},
    {"clean_pk", {NULL}},
    {"clean_small", {NULL}},
};

#define N_EXPECTED (sizeof EXPECTED / sizeof EXPECTED[0])

static bool expected_kind(const expectation *e, const char *kind)
{
    for (int k = 0; k < 4 && e->kinds[k]; k++)
        if (strcmp(e->kinds[k], kind) == 0)
            return true;
    return false;
}

static void test_each_plan_has_its_findings(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        const expectation *e = &EXPECTED[i];
        result r;

        analyze(e->plan, &r);
        for (int k = 0; k < 4 && e->kinds[k]; k++)
            if (count_kind(&r, e->kinds[k]) == 0)
                fail_msg("%s: no %s finding", e->plan, e->kinds[k]);
        for (int j = 0; j < r.n; j++)
            if (!expected_kind(e, r.f[j].kind))
                fail_msg("%s: unexpected %s at %s: %s", e->plan, r.f[j].kind, r.f[j].path,
                         r.f[j].detail);
        for (int j = 0; j < r.n; j++) {
            assert_true(r.f[j].path[0] != '\0');
            assert_true(r.f[j].detail[0] != '\0');
            assert_true(r.f[j].magnitude > 0);
        }
    }
}

static void test_times(void **state)
{
    result r;

    (void)state;
    analyze("seq_scan_filter", &r);
    assert_true(r.times.planning_ms > 0);
    assert_true(r.times.planning_ms == plan_number("seq_scan_filter", true, "Planning Time"));
    assert_true(r.times.execution_ms == plan_number("seq_scan_filter", true, "Execution Time"));
}

/* ---- one heuristic at a time, with its numbers ---- */

static void test_seq_scan_filter(void **state)
{
    result r;
    const explain_finding *f;
    char removed[32];

    (void)state;
    analyze("seq_scan_filter", &r);
    assert_int_equal(r.n, 1);
    f = first_kind(&r, "seq_scan_filter");
    assert_string_equal(f->path, "Limit > Sort > Seq Scan on orders");
    assert_string_equal(f->relation, "orders");
    /* 200,000 rows of which one in a thousand is pending */
    assert_true(f->magnitude >= 190000 && f->magnitude < 200000);
    snprintf(removed, sizeof removed, "removed %.0f of 200000 rows", f->magnitude);
    assert_contains(f->detail, removed);
    assert_contains(f->detail, "(orders.status = 'pending'::text)");
    assert_contains(f->detail, "(99.9%)");
}

/* A parallel scan prints rows and rows removed per loop: the finding counts all three loops. */
static void test_seq_scan_filter_parallel(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("seq_scan_parallel", &r);
    f = first_kind(&r, "seq_scan_filter");
    assert_string_equal(f->relation, "orders");
    assert_contains(f->path, "Gather > ");
    assert_true(ends_with(f->path, "Parallel Seq Scan on orders"));
    assert_true(f->magnitude >= 190000 && f->magnitude <= 200000);
    assert_contains(f->detail, "over 3 loops");
}

static void check_misestimate(const char *plan, const char *path, const char *relation, double lo,
                              double hi, const char *class)
{
    result r;
    const explain_finding *f;

    analyze(plan, &r);
    /* the error is reported where it began, not again at every node above it */
    assert_int_equal(count_kind(&r, "misestimate"), 1);
    f = first_kind(&r, "misestimate");
    assert_string_equal(f->path, path);
    assert_string_equal(f->relation, relation);
    if (!(f->magnitude >= lo && f->magnitude < hi))
        fail_msg("%s: factor %.1f not in [%.0f, %.0f)", plan, f->magnitude, lo, hi);
    assert_true(strncmp(f->detail, class, strlen(class)) == 0);
    assert_contains(f->detail, "more)");
}

static void test_misestimate_10x(void **state)
{
    (void)state;
    /* shop and region are the same column twice: 1/30 taken for 1/900 */
    check_misestimate("misestimate_10x", "Sort > Bitmap Heap Scan on addresses", "addresses", 10,
                      100, "10x misestimate");
}

static void test_misestimate_100x(void **state)
{
    (void)state;
    /* lower(status) = 'shipped' guessed at 0.5% of 200,000 rows; it is 99.9% */
    check_misestimate("misestimate_100x", "Aggregate > Seq Scan on orders", "orders", 100, 1000,
                      "100x misestimate");
}

static void test_misestimate_1000x(void **state)
{
    (void)state;
    /* statistics taken before 3,000 'new' events were loaded: 1 row planned */
    check_misestimate("misestimate_1000x", "Aggregate > Seq Scan on events", "events", 1000, 1e9,
                      "1000x misestimate");
}

static void test_sort_spill(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("sort_spill", &r);
    f = first_kind(&r, "sort_spill");
    assert_string_equal(f->path, "Sort");
    assert_string_equal(f->relation, "orders");
    assert_true(f->magnitude > 1000 && f->magnitude < 100000); /* kB on disk */
    assert_contains(f->detail, "external merge");
    assert_contains(f->detail, "orders.amount");
    /* the sort writes the temp blocks; the scan under it writes none */
    f = first_kind(&r, "temp_written");
    assert_string_equal(f->path, "Sort");
    assert_true(f->magnitude == root_number("sort_spill", "Temp Written Blocks"));
}

static void test_hash_batches(void **state)
{
    result r;
    const explain_finding *f;
    double sum = 0;

    (void)state;
    analyze("hash_batches", &r);
    assert_int_equal(count_kind(&r, "hash_batches"), 1);
    f = first_kind(&r, "hash_batches");
    assert_string_equal(f->path, "Aggregate > Hash Join > Hash");
    assert_string_equal(f->relation, "shipments");
    assert_true(f->magnitude >= 2 && f->magnitude <= 1024);
    assert_contains(f->detail, "batches");
    assert_contains(f->detail, "peak memory");
    /* the Hash writes its batches, the Hash Join the outer side's; the Aggregate above only
     * counts theirs */
    assert_int_equal(count_kind(&r, "temp_written"), 2);
    for (int i = 0; i < r.n; i++) {
        if (strcmp(r.f[i].kind, "temp_written") != 0)
            continue;
        assert_true(strcmp(r.f[i].path, "Aggregate > Hash Join > Hash") == 0 ||
                    strcmp(r.f[i].path, "Aggregate > Hash Join") == 0);
        sum += r.f[i].magnitude;
    }
    assert_true(sum == root_number("hash_batches", "Temp Written Blocks"));
}

static void test_nested_loop_inner_scan(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("nested_loop_inner_scan", &r);
    f = first_kind(&r, "nested_loop_inner_scan");
    assert_string_equal(f->path, "Nested Loop > Seq Scan on customers c");
    assert_string_equal(f->relation, "customers");
    assert_true(f->magnitude >= 100 && f->magnitude <= 250); /* one loop per order id <= 200 */
    assert_contains(f->detail, "ran 200 times");
    assert_contains(f->detail, "returning 2000 rows each time");
    assert_contains(f->detail, "(o.customer_id = c.id)");
}

static void test_nested_loop_materialize(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("nested_loop_materialize", &r);
    f = first_kind(&r, "nested_loop_inner_scan");
    assert_string_equal(f->path, "Nested Loop > Materialize");
    assert_string_equal(f->relation, "orders");
    assert_true(f->magnitude == 2000); /* once per customer */
    assert_contains(f->detail, "Materialize of orders");
}

static void test_lossy_bitmap(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("lossy_bitmap", &r);
    f = first_kind(&r, "lossy_bitmap");
    assert_string_equal(f->path, "Aggregate > Bitmap Heap Scan on visits");
    assert_string_equal(f->relation, "visits");
    assert_true(f->magnitude >= 1 && f->magnitude <= 2000);
    assert_contains(f->detail, "exact)");
    assert_contains(f->detail, "removed by recheck");
}

static void test_heap_fetches(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("heap_fetches", &r);
    f = first_kind(&r, "heap_fetches");
    assert_string_equal(f->path, "Index Only Scan using stock_sku on stock");
    assert_string_equal(f->relation, "stock");
    assert_true(f->magnitude == 2000); /* never vacuumed: every row visits the heap */
    assert_contains(f->detail, "(100%)");
    assert_contains(f->detail, "VACUUM stock");
}

static void test_temp_written_names_the_writer(void **state)
{
    result r;
    const explain_finding *f;

    (void)state;
    analyze("temp_written", &r);
    /* Aggregate > HashAggregate > Seq Scan: both aggregates show the same temp blocks */
    assert_int_equal(count_kind(&r, "temp_written"), 1);
    f = first_kind(&r, "temp_written");
    assert_string_equal(f->path, "Aggregate > HashAggregate");
    assert_string_equal(f->relation, "orders");
    assert_true(f->magnitude == root_number("temp_written", "Temp Written Blocks"));
    assert_contains(f->detail, "hash aggregate in");
}

static void test_plain_explain(void **state)
{
    static const char *const plans[] = {"plain_select", "plain_delete"};
    result r;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        analyze(plans[i], &r);
        assert_int_equal(r.calls, 0);
        assert_true(r.times.planning_ms == -1);
        assert_true(r.times.execution_ms == -1);
    }
}

static void test_clean_plans(void **state)
{
    static const char *const plans[] = {"clean_pk", "clean_small"};
    result r;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        analyze(plans[i], &r);
        assert_int_equal(r.calls, 0);
        assert_true(r.times.planning_ms >= 0);
        assert_true(r.times.execution_ms >= 0);
    }
}

/* ---- rules on small hand-written plans ---- */

/* A one-node plan: "[{"Plan": {NODE}}]". */
static void analyze_node(const char *node, result *r)
{
    char json[4096];

    snprintf(json, sizeof json, "[{\"Plan\": {%s}}]", node);
    analyze_text(json, r);
    assert_true(r->ok);
}

static void test_seq_scan_thresholds(void **state)
{
    result r;

    (void)state;
    /* 900 of 1000: exactly the thresholds */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Relation Name\": \"t\", \"Plan Rows\": 100, "
                 "\"Actual Rows\": 100, \"Actual Loops\": 1, \"Rows Removed by Filter\": 900, "
                 "\"Filter\": \"(x = 1)\"",
                 &r);
    assert_int_equal(count_kind(&r, "seq_scan_filter"), 1);
    /* 899 of 999: too small */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 100, \"Actual Rows\": 100, "
                 "\"Actual Loops\": 1, \"Rows Removed by Filter\": 899",
                 &r);
    assert_int_equal(r.calls, 0);
    /* 89% removed: not selective enough */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 1100, \"Actual Rows\": 1100, "
                 "\"Actual Loops\": 1, \"Rows Removed by Filter\": 8900",
                 &r);
    assert_int_equal(r.calls, 0);
    /* 9 removed per loop over 200 loops: 1800 of 2000 in all */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 1, \"Actual Rows\": 1, "
                 "\"Actual Loops\": 200, \"Rows Removed by Filter\": 9",
                 &r);
    assert_int_equal(count_kind(&r, "seq_scan_filter"), 1);
    assert_true(r.f[0].magnitude == 1800);
}

static void test_misestimate_rules(void **state)
{
    result r;

    (void)state;
    /* 9.9x is not 10x */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 100, \"Actual Rows\": 990, "
                 "\"Actual Loops\": 1",
                 &r);
    assert_int_equal(r.calls, 0);
    /* too few rows to matter: 1 planned, 50 found */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 1, \"Actual Rows\": 50, "
                 "\"Actual Loops\": 1",
                 &r);
    assert_int_equal(r.calls, 0);
    /* the same per loop, 10 loops: 500 rows */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 1, \"Actual Rows\": 50, "
                 "\"Actual Loops\": 10",
                 &r);
    assert_int_equal(count_kind(&r, "misestimate"), 1);
    assert_contains(r.f[0].detail, "per loop over 10 loops");
    /* never executed */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 1, \"Actual Rows\": 0, "
                 "\"Actual Loops\": 0",
                 &r);
    assert_int_equal(r.calls, 0);
    /* fewer rows than planned */
    analyze_node("\"Node Type\": \"Seq Scan\", \"Plan Rows\": 50000, \"Actual Rows\": 20, "
                 "\"Actual Loops\": 1",
                 &r);
    assert_int_equal(count_kind(&r, "misestimate"), 1);
    assert_true(r.f[0].magnitude == 2500);
    assert_contains(r.f[0].detail, "1000x misestimate");
    assert_contains(r.f[0].detail, "fewer)");
    /* BitmapAnd always reports 0 rows */
    analyze_node("\"Node Type\": \"BitmapAnd\", \"Plan Rows\": 5000, \"Actual Rows\": 0, "
                 "\"Actual Loops\": 1",
                 &r);
    assert_int_equal(r.calls, 0);
}

/* Under a Limit a scan stops early: fewer rows than planned is expected, more is not. */
static void test_misestimate_under_limit(void **state)
{
    static const char *const fewer =
        "[{\"Plan\": {\"Node Type\": \"Limit\", \"Plan Rows\": 10, \"Actual Rows\": 10, "
        "\"Actual Loops\": 1, \"Plans\": [{\"Node Type\": \"Index Scan\", \"Relation Name\": "
        "\"t\", \"Parent Relationship\": \"Outer\", \"Plan Rows\": 100000, \"Actual Rows\": 10, "
        "\"Actual Loops\": 1}]}}]";
    static const char *const more =
        "[{\"Plan\": {\"Node Type\": \"Limit\", \"Plan Rows\": 10, \"Actual Rows\": 10, "
        "\"Actual Loops\": 1, \"Plans\": [{\"Node Type\": \"Sort\", \"Plan Rows\": 10, "
        "\"Actual Rows\": 10, \"Actual Loops\": 1, \"Plans\": [{\"Node Type\": \"Seq Scan\", "
        "\"Relation Name\": \"t\", \"Plan Rows\": 10, \"Actual Rows\": 5000, "
        "\"Actual Loops\": 1}]}]}}]";
    result r;

    (void)state;
    analyze_text(fewer, &r);
    assert_true(r.ok);
    assert_int_equal(r.calls, 0);
    analyze_text(more, &r);
    assert_int_equal(count_kind(&r, "misestimate"), 1);
    assert_string_equal(r.f[0].path, "Limit > Sort > Seq Scan on t");
    assert_string_equal(r.f[0].relation, "t");
}

/* A join whose own estimate is far worse than its inputs' is reported with them. */
static void test_misestimate_join_adds_its_own(void **state)
{
    static const char *const json =
        "[{\"Plan\": {\"Node Type\": \"Hash Join\", \"Join Type\": \"Inner\", "
        "\"Plan Rows\": 10, \"Actual Rows\": 100000, \"Actual Loops\": 1, \"Plans\": ["
        "{\"Node Type\": \"Seq Scan\", \"Relation Name\": \"a\", \"Parent Relationship\": "
        "\"Outer\", \"Plan Rows\": 100, \"Actual Rows\": 2000, \"Actual Loops\": 1},"
        "{\"Node Type\": \"Hash\", \"Parent Relationship\": \"Inner\", \"Plan Rows\": 50, "
        "\"Actual Rows\": 50, \"Actual Loops\": 1, \"Plans\": [{\"Node Type\": \"Seq Scan\", "
        "\"Relation Name\": \"b\", \"Plan Rows\": 50, \"Actual Rows\": 50, "
        "\"Actual Loops\": 1}]}]}}]";
    result r;

    (void)state;
    analyze_text(json, &r);
    assert_int_equal(count_kind(&r, "misestimate"), 2);
    assert_string_equal(r.f[0].path, "Hash Join");
    assert_true(r.f[0].magnitude == 10000);
    assert_string_equal(r.f[1].path, "Hash Join > Seq Scan on a");
    assert_true(r.f[1].magnitude == 20);
}

static void test_nested_loop_rules(void **state)
{
    char json[2048];
    const char *fmt = "[{\"Plan\": {\"Node Type\": \"Nested Loop\", \"Join Type\": \"Inner\", "
                      "\"Plan Rows\": 1, \"Actual Rows\": 1, \"Actual Loops\": 1, \"Plans\": ["
                      "{\"Node Type\": \"Seq Scan\", \"Relation Name\": \"o\", \"Parent "
                      "Relationship\": \"Outer\", \"Plan Rows\": %d, \"Actual Rows\": %d, "
                      "\"Actual Loops\": 1},"
                      "{\"Node Type\": \"%s\", \"Relation Name\": \"i\", \"Parent "
                      "Relationship\": \"Inner\", \"Plan Rows\": 1, \"Actual Rows\": 1, "
                      "\"Actual Loops\": %d, \"Filter\": \"(i.k = o.k)\", "
                      "\"Rows Removed by Filter\": 9}]}}]";
    result r;

    (void)state;
    snprintf(json, sizeof json, fmt, 100, 100, "Seq Scan", 100);
    analyze_text(json, &r);
    assert_int_equal(count_kind(&r, "nested_loop_inner_scan"), 1);
    assert_string_equal(first_kind(&r, "nested_loop_inner_scan")->path,
                        "Nested Loop > Seq Scan on i");
    assert_contains(first_kind(&r, "nested_loop_inner_scan")->detail,
                    "(i.k = o.k) removed 9 rows per loop");
    snprintf(json, sizeof json, fmt, 99, 99, "Seq Scan", 99);
    analyze_text(json, &r);
    assert_int_equal(count_kind(&r, "nested_loop_inner_scan"), 0);
    /* an index lookup per outer row is what a nested loop is for */
    snprintf(json, sizeof json, fmt, 5000, 5000, "Index Scan", 5000);
    analyze_text(json, &r);
    assert_int_equal(count_kind(&r, "nested_loop_inner_scan"), 0);
}

static void test_heap_fetch_rules(void **state)
{
    char node[512];
    const char *fmt = "\"Node Type\": \"Index Only Scan\", \"Relation Name\": \"t\", "
                      "\"Plan Rows\": %d, \"Actual Rows\": %d, \"Actual Loops\": 1, "
                      "\"Heap Fetches\": %d";
    result r;

    (void)state;
    snprintf(node, sizeof node, fmt, 100, 100, 9);
    analyze_node(node, &r);
    assert_int_equal(r.calls, 0);
    snprintf(node, sizeof node, fmt, 100, 100, 10);
    analyze_node(node, &r);
    assert_int_equal(count_kind(&r, "heap_fetches"), 1);
    snprintf(node, sizeof node, fmt, 200000, 200000, 1000); /* 0.5%, but many */
    analyze_node(node, &r);
    assert_int_equal(count_kind(&r, "heap_fetches"), 1);
    snprintf(node, sizeof node, fmt, 100, 100, 0);
    analyze_node(node, &r);
    assert_int_equal(r.calls, 0);
}

/* Temp blocks are counted up the tree; only a node writing more than its children reports. */
static void test_temp_written_subtracts_children(void **state)
{
    static const char *const json =
        "[{\"Plan\": {\"Node Type\": \"Append\", \"Temp Written Blocks\": 70, \"Plans\": ["
        "{\"Node Type\": \"Sort\", \"Temp Written Blocks\": 30, \"Plans\": [{\"Node Type\": "
        "\"Seq Scan\", \"Relation Name\": \"a\", \"Temp Written Blocks\": 0}]},"
        "{\"Node Type\": \"Materialize\", \"Temp Written Blocks\": 40, \"Plans\": [{\"Node "
        "Type\": \"Seq Scan\", \"Relation Name\": \"b\", \"Temp Written Blocks\": 0}]}]}}]";
    result r;

    (void)state;
    analyze_text(json, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.f[0].path, "Append > Sort");
    assert_string_equal(r.f[0].relation, "a");
    assert_true(r.f[0].magnitude == 30);
    assert_string_equal(r.f[1].path, "Append > Materialize");
    assert_true(r.f[1].magnitude == 40);
}

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        int n = *p < 0x80 ? 0 : *p >= 0xF0 ? 3 : *p >= 0xE0 ? 2 : *p >= 0xC0 ? 1 : -1;

        if (n < 0)
            return false;
        p++;
        for (; n > 0; n--, p++)
            if ((*p & 0xC0) != 0x80)
                return false;
    }
    return true;
}

static bool terminated(const char *field, size_t size)
{
    return memchr(field, '\0', size) != NULL;
}

static void assert_finding_sane(const explain_finding *f)
{
    static const char *const kinds[] = {
        "seq_scan_filter",        "misestimate",  "sort_spill",   "hash_batches",
        "nested_loop_inner_scan", "lossy_bitmap", "heap_fetches", "temp_written"};
    bool known = false;

    assert_true(terminated(f->kind, sizeof f->kind));
    assert_true(terminated(f->path, sizeof f->path));
    assert_true(terminated(f->relation, sizeof f->relation));
    assert_true(terminated(f->detail, sizeof f->detail));
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        known |= strcmp(f->kind, kinds[i]) == 0;
    assert_true(known);
    assert_true(valid_utf8(f->path));
    assert_true(valid_utf8(f->relation));
    assert_true(valid_utf8(f->detail));
}

/* 100 nested nodes under long multibyte names: the path keeps its root and the node itself,
 * and every field stays whole UTF-8. */
static void test_long_paths_and_names(void **state)
{
    char name[512] = "";
    json_t *root = json_object(), *node = root, *doc;
    char *text;
    result r;

    (void)state;
    for (int i = 0; i < 80; i++)   /* longer than a finding's relation, and than a path */
        strcat(name, "t\xc3\xa9"); /* "té" */
    for (int depth = 0; depth < 100; depth++) {
        json_t *plans = json_array(), *next = json_object();

        json_object_set_new(node, "Node Type", json_string(depth ? "Materialize" : "Limit"));
        json_object_set_new(node, "Plans", plans);
        json_array_append_new(plans, next);
        node = next;
    }
    json_object_set_new(node, "Node Type", json_string("Seq Scan"));
    json_object_set_new(node, "Relation Name", json_string(name));
    json_object_set_new(node, "Filter", json_string(name));
    json_object_set_new(node, "Plan Rows", json_integer(1));
    json_object_set_new(node, "Actual Rows", json_integer(1));
    json_object_set_new(node, "Actual Loops", json_integer(1));
    json_object_set_new(node, "Rows Removed by Filter", json_integer(100000));
    doc = json_pack("[{s:o}]", "Plan", root);
    text = json_dumps(doc, 0);
    analyze_text(text, &r);
    assert_int_equal(count_kind(&r, "seq_scan_filter"), 1);
    assert_finding_sane(&r.f[0]);
    assert_true(strncmp(r.f[0].path, "Limit > ... > ", 14) == 0);
    assert_contains(r.f[0].path, "Seq Scan on t\xc3\xa9");
    assert_true(ends_with(r.f[0].relation, "..."));
    free(text);
    json_decref(doc);
}

/* Nesting deeper than plans go: no crash, the deep part is ignored. */
static void test_very_deep_plan(void **state)
{
    enum { DEPTH = 900 };
    const char *level = "{\"Node Type\": \"Limit\", \"Plans\": [";
    size_t size = DEPTH * (strlen(level) + 2) + 64, len = 0;
    char *json = malloc(size);
    char *tree;
    result r;

    (void)state;
    assert_non_null(json);
    len += (size_t)sprintf(json + len, "[{\"Plan\": ");
    for (int i = 0; i < DEPTH; i++)
        len += (size_t)sprintf(json + len, "%s", level);
    for (int i = 0; i < DEPTH; i++)
        len += (size_t)sprintf(json + len, "]}");
    sprintf(json + len, "}]");
    analyze_text(json, &r);
    assert_true(r.ok);
    assert_int_equal(r.calls, 0);
    tree = explain_plan_tree(json);
    assert_non_null(tree);
    free(tree);
    free(json);
}

/* ---- text that is not a plan ---- */

static void test_not_a_plan(void **state)
{
    static const char *const texts[] = {
        "",
        "nonsense",
        "[]",
        "{}",
        "[1]",
        "[[]]",
        "[{}]",
        "[{\"Plan\": 1}]",
        "[{\"Plan\": []}]",
        "[{\"Plan\": null}]",
        "{\"Plan\": \"Seq Scan\"}",
        "\"Plan\"",
        "42",
        "null",
        "[{\"Plan\": {\"Node Type\": \"Seq Scan\"}}",
        "[{\"Plan\": {\"Node Type\": \"Seq Scan\"}}] trailing",
        "[{\"QUERY PLAN\": {\"Node Type\": \"Seq Scan\"}}]",
        "Seq Scan on orders  (cost=0.00..3774.00 rows=193 width=8)",
    };
    result r;

    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        explain_plan_times t = {5, 5};

        memset(&r, 0, sizeof r);
        if (explain_plan_findings(texts[i], collect, &r, &t))
            fail_msg("taken for a plan: %s", texts[i]);
        assert_int_equal(r.calls, 0);
        assert_true(t.planning_ms == -1 && t.execution_ms == -1);
        assert_null(explain_plan_tree(texts[i]));
    }
    assert_false(explain_plan_findings(NULL, collect, &r, NULL));
    assert_null(explain_plan_tree(NULL));
    /* a plan of one bare node is still a plan; so is the object without its array */
    analyze_text("[{\"Plan\": {}}]", &r);
    assert_true(r.ok);
    analyze_text("{\"Plan\": {\"Node Type\": \"Result\"}}", &r);
    assert_true(r.ok);
    /* no callback and no times wanted */
    assert_true(explain_plan_findings("[{\"Plan\": {}}]", NULL, NULL, NULL));
}

/* Every prefix of a real plan is not a plan, and nothing breaks on the way. */
static void test_truncated_plans(void **state)
{
    char *text = plan_text("hash_batches");
    size_t len = strlen(text);
    result r;

    (void)state;
    for (size_t cut = 0; cut < len; cut += 7) {
        char saved = text[cut];

        text[cut] = '\0';
        analyze_text(text, &r);
        assert_false(r.ok);
        assert_null(explain_plan_tree(text));
        text[cut] = saved;
    }
    free(text);
}

/* ---- the tree ---- */

static void fmt_num(char *out, size_t size, const char *prefix, const json_t *v)
{
    snprintf(out, size, "%s%.0f", prefix, json_number_value(v));
}

/* Every node of the JSON shows in the tree with its rows, loops and conditions. */
static int check_tree_node(const char *tree, const json_t *n)
{
    static const char *const conds[] = {"Filter", "Index Cond", "Hash Cond", "Join Filter",
                                        "Recheck Cond"};
    const char *type = json_string_value(json_object_get(n, "Node Type"));
    const json_t *plans = json_object_get(n, "Plans"), *v;
    char want[512];
    int nodes = 1;

    assert_non_null(type);
    /* psql renames aggregates by strategy and ModifyTable by operation */
    if (strcmp(type, "Aggregate") != 0 && strcmp(type, "ModifyTable") != 0)
        assert_contains(tree, type);
    if ((v = json_object_get(n, "Relation Name")))
        assert_contains(tree, json_string_value(v));
    fmt_num(want, sizeof want, "rows=", json_object_get(n, "Plan Rows"));
    assert_contains(tree, want);
    if ((v = json_object_get(n, "Actual Rows"))) {
        char loops[64];

        fmt_num(want, sizeof want, "rows=", v);
        fmt_num(loops, sizeof loops, " loops=", json_object_get(n, "Actual Loops"));
        strcat(want, loops);
        assert_contains(tree, want);
    }
    for (size_t i = 0; i < sizeof conds / sizeof conds[0]; i++) {
        if ((v = json_object_get(n, conds[i]))) {
            snprintf(want, sizeof want, "%s: %s\n", conds[i], json_string_value(v));
            assert_contains(tree, want);
        }
    }
    if ((v = json_object_get(n, "Sort Key"))) {
        snprintf(want, sizeof want, "Sort Key: %s", json_string_value(json_array_get(v, 0)));
        assert_contains(tree, want);
    }
    if ((v = json_object_get(n, "Rows Removed by Filter")) && json_number_value(v) > 0) {
        fmt_num(want, sizeof want, "Rows Removed by Filter: ", v);
        assert_contains(tree, want);
    }
    for (size_t i = 0; i < json_array_size(plans); i++)
        nodes += check_tree_node(tree, json_array_get(plans, i));
    return nodes;
}

static int count_occurrences(const char *text, const char *needle)
{
    int c = 0;

    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        c++;
    return c;
}

static void test_tree_shows_every_node(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        char *text = plan_text(EXPECTED[i].plan);
        char *tree = explain_plan_tree(text);
        json_t *doc = json_loads(text, 0, NULL);
        const json_t *top = json_array_get(doc, 0);
        int nodes;

        assert_non_null(tree);
        assert_non_null(doc);
        nodes = check_tree_node(tree, json_object_get(top, "Plan"));
        assert_int_equal(count_occurrences(tree, "-> "), nodes - 1);
        assert_int_equal(count_occurrences(tree, "Planning Time: "),
                         json_object_get(top, "Planning Time") != NULL);
        assert_int_equal(count_occurrences(tree, "Execution Time: "),
                         json_object_get(top, "Execution Time") != NULL);
        assert_int_equal(count_occurrences(tree, "(actual"),
                         json_object_get(top, "Execution Time") ? nodes : 0);
        json_decref(doc);
        free(tree);
        free(text);
    }
}

/* ---- the tree node by node (the HTML report draws it) ---- */

typedef struct nodes_seen {
    char paths[64][256];
    char lines[64][512];
    int depths[64];
    int n;
} nodes_seen;

static void take_node(const explain_plan_node *node, void *arg)
{
    nodes_seen *s = arg;

    if (s->n < 64) {
        snprintf(s->paths[s->n], sizeof s->paths[0], "%s", node->path);
        snprintf(s->lines[s->n], sizeof s->lines[0], "%s", node->line);
        s->depths[s->n++] = node->depth;
    }
}

/* Every finding of every captured plan names a node the walk hands over (same path), and each
 * node's line is the tree's line for it, in the tree's order. */
static void test_nodes_match_findings_and_tree(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        char *text = plan_text(EXPECTED[i].plan), *tree = explain_plan_tree(text);
        nodes_seen *seen = calloc(1, sizeof *seen);
        result r;
        assert_non_null(seen);
        analyze_text(text, &r);
        assert_true(explain_plan_nodes(text, take_node, seen));
        assert_true(seen->n > 0 && seen->depths[0] == 0);
        for (int k = 0; k < r.n; k++) {
            bool found = false;
            for (int j = 0; j < seen->n && !found; j++)
                found = strcmp(seen->paths[j], r.f[k].path) == 0;
            if (!found)
                fail_msg("%s: no node at %s", EXPECTED[i].plan, r.f[k].path);
        }
        const char *at = tree;
        for (int j = 0; j < seen->n; j++) {
            const char *line = strstr(at, seen->lines[j]);
            if (!line)
                fail_msg("%s: node line not in the tree in order: %s", EXPECTED[i].plan,
                         seen->lines[j]);
            at = line + strlen(seen->lines[j]);
            assert_true(j == 0 || seen->depths[j] <= seen->depths[j - 1] + 1);
        }
        free(seen);
        free(tree);
        free(text);
    }
    assert_false(explain_plan_nodes("nonsense", take_node, NULL));
    assert_false(explain_plan_nodes(NULL, take_node, NULL));
}

static void test_tree_layout(void **state)
{
    char *text = plan_text("seq_scan_filter");
    char *tree = explain_plan_tree(text);

    (void)state;
    assert_non_null(tree);
    assert_true(strncmp(tree, "Limit  (cost=", 13) == 0);
    assert_contains(tree, "\n  Buffers: shared hit=");
    assert_contains(tree, "\n  -> Sort  (cost=");
    assert_contains(tree, "\n       Sort Key: orders.amount DESC\n");
    assert_contains(tree, "\n       Sort Method: top-N heapsort  Memory: ");
    assert_contains(tree, "\n    -> Seq Scan on orders  (cost=");
    assert_contains(tree, "\n         Filter: (orders.status = 'pending'::text)\n");
    assert_contains(tree, "\n         Rows Removed by Filter: 199800\n");
    assert_contains(tree, "\nPlanning Time: ");
    assert_true(ends_with(tree, " ms\n"));
    free(tree);
    free(text);

    text = plan_text("hash_batches");
    tree = explain_plan_tree(text);
    assert_contains(tree, "  -> Hash Join  (cost=");
    assert_contains(tree, "    -> Seq Scan on orders o  (cost=");
    assert_contains(tree, "Batches: ");
    assert_contains(tree, ", temp read=");
    free(tree);
    free(text);

    text = plan_text("plain_delete");
    tree = explain_plan_tree(text);
    assert_true(strncmp(tree, "Delete on orders  (cost=", 24) == 0);
    assert_null(strstr(tree, "actual"));
    assert_null(strstr(tree, "Time:"));
    free(tree);
    free(text);

    text = plan_text("seq_scan_parallel");
    tree = explain_plan_tree(text);
    assert_true(strncmp(tree, "Finalize Aggregate  (cost=", 26) == 0);
    assert_contains(tree, "-> Partial Aggregate  (cost=");
    assert_contains(tree, "-> Parallel Seq Scan on orders  (cost=");
    assert_contains(tree, "Workers Launched: 2\n");
    free(tree);
    free(text);
}

/* ---- random damage to real plans ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

/* A value of any type, often one that means something in a plan. */
static json_t *random_value(void)
{
    static const char *const strings[] = {"Seq Scan",
                                          "Nested Loop",
                                          "Hash",
                                          "Sort",
                                          "Index Only Scan",
                                          "Bitmap Heap Scan",
                                          "Limit",
                                          "Materialize",
                                          "Inner",
                                          "Outer",
                                          "SubPlan",
                                          "Disk",
                                          "Semi",
                                          "Hashed",
                                          "",
                                          "t\xc3\xa9\xe2\x82\xac",
                                          "x > y"};
    static const double reals[] = {0.0, -1.0, 0.5, 1e308, -1e308, 1e-300, 99.99, 12345.678};

    switch (rnd_below(9)) {
    case 0:
        return json_integer((json_int_t)rnd_below(3000) - 10);
    case 1:
        return json_integer(rnd_below(2) ? INT64_MAX : INT64_MIN);
    case 2:
        return json_real(reals[rnd_below(sizeof reals / sizeof reals[0])]);
    case 3:
        return json_string(strings[rnd_below(sizeof strings / sizeof strings[0])]);
    case 4:
        return json_null();
    case 5:
        return json_boolean(rnd_below(2));
    case 6:
        return json_array();
    case 7:
        return json_object();
    default:
        return json_pack("[i, s]", 1, "x");
    }
}

/* The container `steps` random steps down from root. */
static json_t *random_container(json_t *root, int steps)
{
    json_t *at = root;

    for (int i = 0; i < steps; i++) {
        json_t *next = NULL;

        if (json_is_array(at) && json_array_size(at) > 0) {
            next = json_array_get(at, rnd_below(json_array_size(at)));
        } else if (json_is_object(at) && json_object_size(at) > 0) {
            void *it = json_object_iter(at);

            for (size_t k = rnd_below(json_object_size(at)); k > 0 && it; k--)
                it = json_object_iter_next(at, it);
            next = it ? json_object_iter_value(it) : NULL;
        }
        if (!json_is_array(next) && !json_is_object(next))
            break;
        at = next;
    }
    return at;
}

static void mutate_object(json_t *o, json_t *donor)
{
    void *it = json_object_iter(o);
    char key[128];

    for (size_t k = rnd_below(json_object_size(o)); k > 0 && it; k--)
        it = json_object_iter_next(o, it);
    if (!it)
        return;
    snprintf(key, sizeof key, "%s", json_object_iter_key(it));
    switch (rnd_below(4)) {
    case 0:
        json_object_del(o, key);
        break;
    case 1: /* a subtree of the plan where it does not belong; copies keep the tree a tree */
        json_object_set_new(o, key, json_deep_copy(random_container(donor, 3)));
        break;
    default:
        json_object_set_new(o, key, random_value());
    }
}

static void mutate_array(json_t *a, json_t *donor)
{
    size_t n = json_array_size(a);

    switch (rnd_below(4)) {
    case 0:
        if (n)
            json_array_remove(a, rnd_below(n));
        break;
    case 1:
        if (n)
            json_array_append_new(a, json_deep_copy(json_array_get(a, rnd_below(n))));
        break;
    case 2:
        json_array_append_new(a, json_deep_copy(random_container(donor, 3)));
        break;
    default:
        if (n)
            json_array_set_new(a, rnd_below(n), random_value());
    }
}

/* Reads damaged text both ways; counts plans still taken and findings made. */
static void check_damaged(const char *text, int *accepted, int *found)
{
    result r;
    char *tree;

    analyze_text(text, &r);
    for (int i = 0; i < r.n; i++)
        assert_finding_sane(&r.f[i]);
    tree = explain_plan_tree(text);
    assert_true((tree != NULL) == r.ok);
    free(tree);
    *accepted += r.ok;
    *found += r.calls;
}

static void test_random_mutations(void **state)
{
    json_t *plans[N_EXPECTED];
    int accepted = 0, found = 0;

    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        char *text = plan_text(EXPECTED[i].plan);

        plans[i] = json_loads(text, 0, NULL);
        assert_non_null(plans[i]);
        free(text);
    }
    for (int iter = 0; iter < 10000; iter++) {
        json_t *original = plans[rnd_below(N_EXPECTED)];
        json_t *doc = json_deep_copy(original);
        int edits = 1 + (int)rnd_below(6);
        char *text;

        for (int e = 0; e < edits; e++) {
            json_t *at = random_container(doc, 1 + (int)rnd_below(12));

            if (json_is_object(at))
                mutate_object(at, original);
            else if (json_is_array(at))
                mutate_array(at, original);
        }
        text = json_dumps(doc, JSON_COMPACT);
        assert_non_null(text);
        check_damaged(text, &accepted, &found);
        free(text);
        json_decref(doc);
    }
    /* most damage leaves a plan that still reads, and still says something */
    assert_true(accepted > 5000);
    assert_true(found > 1000);
    for (size_t i = 0; i < N_EXPECTED; i++)
        json_decref(plans[i]);
}

/* Damage to the bytes rather than the structure: flipped, dropped and inserted characters. */
static void test_random_byte_damage(void **state)
{
    static const char pokes[] = "{}[]\":,0-9e.\\ \x80\xc3";
    char *texts[N_EXPECTED];
    int accepted = 0, found = 0;

    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++)
        texts[i] = plan_text(EXPECTED[i].plan);
    for (int iter = 0; iter < 10000; iter++) {
        char *text = strdup(texts[rnd_below(N_EXPECTED)]);
        size_t len = strlen(text);
        int edits = 1 + (int)rnd_below(4);

        assert_non_null(text);
        for (int e = 0; e < edits && len > 1; e++) {
            size_t at = rnd_below(len);

            switch (rnd_below(3)) {
            case 0:
                text[at] = pokes[rnd_below(sizeof pokes - 1)];
                break;
            case 1:
                memmove(text + at, text + at + 1, len - at);
                len--;
                break;
            default:
                text[at] = (char)(1 + rnd_below(255));
            }
        }
        check_damaged(text, &accepted, &found);
        free(text);
    }
    /* some damage lands in strings and numbers and leaves a plan */
    assert_true(accepted > 0);
    for (size_t i = 0; i < N_EXPECTED; i++)
        free(texts[i]);
}

/* ---- redaction ---- */

/* Constants leave the plan's expressions; names, numbers of the plan itself and its findings
 * stay: the same seq_scan_filter finding, its filter without the value. */
static void test_redact_keeps_findings_drops_values(void **state)
{
    char *text = plan_text("seq_scan_filter");
    char *clean = explain_plan_redact(text);
    result r;

    (void)state;
    assert_non_null(clean);
    assert_null(strstr(clean, "pending"));
    assert_contains(clean, "(orders.status = '?'::text)");
    assert_contains(clean, "\"Relation Name\":\"orders\"");
    analyze_text(clean, &r);
    assert_int_equal(r.n, 1);
    assert_contains(r.f[0].detail, "(orders.status = '?'::text)");
    assert_true(r.f[0].magnitude >= 190000);
    free(clean);
    free(text);
}

static void test_redact_expressions(void **state)
{
    static const char plan[] =
        "[{\"Plan\": {\"Node Type\": \"Index Scan\", \"Index Cond\": \"(t2.id = 42)\", "
        "\"Filter\": \"((\\\"Name\\\" = 'O''Brien'::text) AND (x > 1.5e3) AND (y = $1))\", "
        "\"Subplan Name\": \"SubPlan 1\", \"Output\": [\"t2.c1\", \"(t2.n + 7)\"], "
        "\"Sort Key\": [\"t2.c1\"]}}]";
    char *clean = explain_plan_redact(plan);

    (void)state;
    assert_non_null(clean);
    assert_contains(clean, "(t2.id = ?)");
    assert_contains(clean, "((\\\"Name\\\" = '?'::text) AND (x > ?) AND (y = $1))");
    assert_contains(clean, "\"SubPlan 1\"");
    assert_contains(clean, "\"(t2.n + ?)\"");
    assert_null(strstr(clean, "Brien"));
    free(clean);
    assert_null(explain_plan_redact("not json"));
    assert_null(explain_plan_redact("{\"Plan\": {}}"));
    assert_null(explain_plan_redact(NULL));
}

/* The replay runs with the client's search_path, which EXPLAIN's SETTINGS prints: the value of
 * the client's SET goes; the other settings (numbers and keywords) stay. */
static void test_redact_search_path_setting(void **state)
{
    static const char plan[] =
        "[{\"Plan\": {\"Node Type\": \"Result\"}, \"Settings\": "
        "{\"search_path\": \"tenant_4711, public\", \"work_mem\": \"64MB\"}}]";
    char *clean = explain_plan_redact(plan);

    (void)state;
    assert_non_null(clean);
    assert_null(strstr(clean, "tenant_4711"));
    assert_contains(clean, "\"search_path\":\"?\"");
    assert_contains(clean, "\"work_mem\":\"64MB\"");
    free(clean);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_plan_has_its_findings),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_seq_scan_filter),
        cmocka_unit_test(test_redact_keeps_findings_drops_values),
        cmocka_unit_test(test_redact_expressions),
        cmocka_unit_test(test_redact_search_path_setting),
        cmocka_unit_test(test_seq_scan_filter_parallel),
        cmocka_unit_test(test_misestimate_10x),
        cmocka_unit_test(test_misestimate_100x),
        cmocka_unit_test(test_misestimate_1000x),
        cmocka_unit_test(test_sort_spill),
        cmocka_unit_test(test_hash_batches),
        cmocka_unit_test(test_nested_loop_inner_scan),
        cmocka_unit_test(test_nested_loop_materialize),
        cmocka_unit_test(test_lossy_bitmap),
        cmocka_unit_test(test_heap_fetches),
        cmocka_unit_test(test_temp_written_names_the_writer),
        cmocka_unit_test(test_plain_explain),
        cmocka_unit_test(test_clean_plans),
        cmocka_unit_test(test_seq_scan_thresholds),
        cmocka_unit_test(test_misestimate_rules),
        cmocka_unit_test(test_misestimate_under_limit),
        cmocka_unit_test(test_misestimate_join_adds_its_own),
        cmocka_unit_test(test_nested_loop_rules),
        cmocka_unit_test(test_heap_fetch_rules),
        cmocka_unit_test(test_temp_written_subtracts_children),
        cmocka_unit_test(test_long_paths_and_names),
        cmocka_unit_test(test_very_deep_plan),
        cmocka_unit_test(test_not_a_plan),
        cmocka_unit_test(test_truncated_plans),
        cmocka_unit_test(test_tree_shows_every_node),
        cmocka_unit_test(test_tree_layout),
        cmocka_unit_test(test_nodes_match_findings_and_tree),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_random_byte_damage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
