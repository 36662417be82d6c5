/* Unit tests for the report renderers on texts at their edges: queries, fixes, names and
 * examples made of thousands of quotes, control characters and bytes that are not UTF-8. Run
 * under ASan: the fixed fields of the text report and the JSON cleaning must hold any of it. */
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

#include "text_runs.h"
#include <jansson.h>

#include "../../src/report/report_int.h"

/* Everything a report holds, each text at its worst; freed by data_free. */
typedef struct fixture {
    report_data d;
    report_run run;
    report_statement stmt;
    report_nplusone finding;
    char *children[1], *examples[3];
    report_index index;
    report_index_statement helped;
    char *columns[1], *fingerprints[1];
    report_plan_finding plan_finding;
    report_plan plan;
    char *texts[16];
    int n_texts;
} fixture;

static char *own(fixture *f, char *s)
{
    f->texts[f->n_texts++] = s;
    return s;
}

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->d.schema_version = 4;
    f->d.runs = &f->run;
    f->d.n_runs = 1;
    f->run.id = 1;
    f->run.label = own(f, run_of("\x1b[31m", '"', 1000, "\t\n"));
    f->run.duration_s = NAN;
    /* a statement of 10,000 empty literals */
    f->d.stmts = &f->stmt;
    f->d.n_stmts = 1;
    f->d.shapes = 1;
    strcpy(f->stmt.fingerprint, "0123456789abcdef");
    f->stmt.query = own(f, run_of("SELECT ", '\'', 20000, ""));
    f->stmt.calls = 3;
    f->stmt.total_ms = f->stmt.mean_ms = f->stmt.p95_ms = f->stmt.p99_ms = 1;
    /* an N+1 finding whose texts and fix are quotes */
    f->d.findings = &f->finding;
    f->d.n_findings = 1;
    f->finding.parent_query = own(f, run_of("SELECT '", '\'', 10000, "'"));
    f->children[0] = own(f, run_of("SELECT \"", '"', 10000, "\" = $1"));
    f->finding.child_queries = f->children;
    f->finding.n_child_queries = 1;
    f->finding.confirmed = true;
    f->finding.linked_column = own(f, run_of("\"", '"', 300, "\""));
    for (int i = 0; i < 3; i++)
        f->examples[i] = f->texts[f->n_texts - 1];
    f->finding.example_texts = f->examples;
    f->finding.n_example_texts = 3;
    strcpy(f->finding.severity, "high");
    f->finding.suggestion = own(f, run_of("     ", '\'', 5000, "\n\n  x\n"));
    /* an index on a schema and a table of quotes, whose estimate was off */
    f->d.indexes = &f->index;
    f->d.n_indexes = 1;
    f->index.rank = 1;
    f->index.database = own(f, run_of("", '"', 500, ""));
    f->index.schema = own(f, run_of("", '"', 400, ""));
    f->index.table = own(f, run_of("", '"', 400, ""));
    f->index.ddl = own(f, run_of("CREATE INDEX ON \"", '"', 2000, "\" (\"a b\")"));
    f->columns[0] = "a";
    f->index.columns = f->columns;
    f->index.n_columns = 1;
    f->index.cost_before = 1e300;
    f->index.cost_after = -1e300;
    f->index.benefit_ms = 1e300;
    f->index.size_bytes = 1e300;
    f->index.verified = true;
    f->index.misestimate = true;
    f->index.breaks_hot = true;
    f->index.write_statements = INT64_MAX;
    f->fingerprints[0] = "0123456789abcdef";
    f->index.fingerprints = f->fingerprints;
    f->index.n_fingerprints = 1;
    f->helped.fingerprint = "0123456789abcdef";
    f->helped.query = f->stmt.query;
    f->helped.calls = INT64_MAX;
    f->helped.mean_ms = 1e300;
    f->index.statements = &f->helped;
    f->index.n_statements = 1;
    /* a plan finding with a long node path */
    f->d.plan_findings = &f->plan_finding;
    f->d.n_plan_findings = 1;
    f->d.plans = &f->plan;
    f->d.n_plans = 1;
    f->plan.id = 1;
    f->plan.query = f->stmt.query;
    f->plan.trigger_ms = f->plan.planning_ms = f->plan.execution_ms = f->plan.side_ms = NAN;
    strcpy(f->plan_finding.kind, "seq_scan_filter");
    strcpy(f->plan_finding.fingerprint, "0123456789abcdef");
    f->plan_finding.query = f->stmt.query;
    f->plan_finding.relation = f->index.table;
    f->plan_finding.node_path = own(f, run_of("a > ", '"', 3000, " > Seq Scan"));
    f->plan_finding.detail = f->finding.parent_query;
    f->plan_finding.calls = 3;
    f->plan_finding.plans = INT64_MAX;
}

static void fixture_free(fixture *f)
{
    for (int i = 0; i < f->n_texts; i++)
        free(f->texts[i]);
}

/* The whole output of a renderer; malloc'd. */
static char *render(bool (*fn)(FILE *, const report_data *, const char *),
                    bool (*json)(FILE *, const report_data *), const report_data *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    assert_non_null(out);
    assert_true(fn ? fn(out, d, "/tmp/x\x1b.db") : json(out, d));
    fclose(out);
    return buf;
}

static void test_text_of_quotes(void **state)
{
    fixture f;
    char *text;

    (void)state;
    fixture_init(&f);
    text = render(report_render_text, NULL, &f.d);
    if (getenv("SHOW"))
        fputs(text, stderr);
    assert_non_null(strstr(text, "HOT updates lost"));
    assert_non_null(strstr(text, "run ANALYZE\n"));
    assert_non_null(strstr(text, "STATISTICS) before trusting this"));
    assert_non_null(strstr(text, ", seen in 9223372036854775807 plans"));
    assert_null(strchr(text, '\x1b'));
    free(text);
    f.d.all = true;
    f.d.indexes_run = INT64_MAX;
    f.index.verified = false;
    text = render(report_render_text, NULL, &f.d);
    assert_non_null(
        strstr(text, "index suggestions      1 (0 verified), of run 9223372036854775807"));
    free(text);
    fixture_free(&f);
}

/* Bytes that are not UTF-8 become U+FFFD, 3 bytes each: 10,000 of them 30,000 bytes. */
static void test_json_of_bad_bytes(void **state)
{
    fixture f;
    char *text, *bad = run_of("", '\xff', 10000, "");
    json_t *root, *q;

    (void)state;
    fixture_init(&f);
    f.stmt.query = bad;
    text = render(NULL, report_render_json, &f.d);
    root = json_loads(text, 0, NULL);
    assert_non_null(root);
    q = json_object_get(json_array_get(json_object_get(root, "statements"), 0), "query");
    assert_int_equal(json_string_length(q), 30000);
    for (size_t i = 0; i < 30000; i += 3)
        assert_memory_equal(json_string_value(q) + i, "\xEF\xBF\xBD", 3);
    json_decref(root);
    free(text);
    free(bad);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_of_quotes),
        cmocka_unit_test(test_json_of_bad_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
