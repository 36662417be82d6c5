/* render_md.c — `pgscope report` for CI: the findings of a run as CI problems (JUnit,
 * annotations), and the report in Markdown, a verdict line first and tables after (a GitHub step
 * summary, a pull-request comment). */
#include "config.h"

#include "report_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MD_ROWS 20 /* rows of each table when --limit is 0 */

size_t report_problems(const report_data *d, report_problem **out)
{
    size_t n = d->n_findings + d->n_plan_findings, k = 0;
    report_problem *p = calloc(n ? n : 1, sizeof(*p));

    *out = p;
    if (!p)
        return 0;
    for (size_t i = 0; i < d->n_findings; i++) {
        const report_nplusone *f = &d->findings[i];
        report_problem_of(&p[k], f);
        p[k].failed = true;
        snprintf(p[k++].detail, sizeof(p[0].detail),
                 "%s, N max %lld, %lld occurrence%s, saving %.3f ms",
                 f->duplicate || f->insert_loop ? "repeated"
                 : f->confirmed                 ? "proven"
                                                : "suspected",
                 (long long)f->max_n, (long long)f->occurrences, f->occurrences == 1 ? "" : "s",
                 f->saving_ms);
    }
    for (size_t i = 0; i < d->n_plan_findings; i++) {
        report_problem_of_plan(&p[k], &d->plan_findings[i], "");
        p[k++].failed = true;
    }
    return k;
}

static size_t rows_of(const report_data *d, size_t n)
{
    size_t cap = d->limit > 0 ? (size_t)d->limit : MD_ROWS;

    return n < cap ? n : cap;
}

static void md_more(FILE *out, size_t shown, size_t n)
{
    if (shown < n)
        fprintf(out, "\n%zu of %zu shown (`--limit` shows more).\n", shown, n);
}

static void md_tests(FILE *out, const report_data *d)
{
    size_t shown = rows_of(d, d->n_tests);

    if (d->n_tests == 0)
        return;
    fprintf(out, "\n#### Tests, most time first\n\n");
    fprintf(out,
            "| test | statements | shapes | time (ms) | findings |\n|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < shown; i++) {
        const report_test *t = &d->tests[i];
        fprintf(out, "| ");
        report_md_code(out, t->name, 100);
        fprintf(out, " | %lld | %lld | %.3f | %lld |\n", (long long)t->statements,
                (long long)t->shapes, t->total_ms, (long long)t->findings);
    }
    md_more(out, shown, d->n_tests);
}

static void md_indexes(FILE *out, const report_data *d)
{
    size_t shown = rows_of(d, d->n_indexes);

    if (d->n_indexes == 0)
        return;
    fprintf(out, "\n#### Index suggestions\n\n");
    fprintf(out, "| # | index | verified | cost before | cost after | saves (ms) | tests |\n");
    fprintf(out, "|---:|---|---|---:|---:|---:|---|\n");
    for (size_t i = 0; i < shown; i++) {
        const report_index *x = &d->indexes[i];
        fprintf(out, "| %lld | ", (long long)x->rank);
        report_md_code(out, x->ddl, 200);
        fprintf(out, " | %s | ", x->verified ? "yes" : "no");
        if (isnan(x->cost_before) || isnan(x->cost_after) || isnan(x->benefit_ms))
            fprintf(out, " | | |");
        else
            fprintf(out, "%.2f | %.2f | %.3f |", x->cost_before, x->cost_after, x->benefit_ms);
        for (size_t t = 0; t < x->n_tests && t < 3; t++) {
            fprintf(out, "%s", t ? ", " : " ");
            report_md_code(out, x->tests[t].name, 80);
        }
        fprintf(out, "%s |\n", x->n_tests > 3 ? " ..." : "");
    }
    md_more(out, shown, d->n_indexes);
}

static void md_statements(FILE *out, const report_data *d)
{
    size_t shown = rows_of(d, d->n_stmts);

    if (d->n_stmts == 0)
        return;
    fprintf(out, "\n#### Top statements by total time\n\n");
    fprintf(out, "| # | calls | total (ms) | mean (ms) | p95 (ms) | query |\n");
    fprintf(out, "|---:|---:|---:|---:|---:|---|\n");
    for (size_t i = 0; i < shown; i++) {
        const report_statement *s = &d->stmts[i];
        fprintf(out, "| %zu | %lld | %.3f | %.3f | %.3f | ", i + 1, (long long)s->calls,
                s->total_ms, s->mean_ms, s->p95_ms);
        report_md_code(out, s->query ? s->query : "", 160);
        fprintf(out, " |\n");
    }
    md_more(out, shown, (size_t)d->shapes > d->n_stmts ? (size_t)d->shapes : d->n_stmts);
}

bool report_render_markdown(FILE *out, const report_data *d)
{
    report_problem *p;
    size_t n = report_problems(d, &p);
    int64_t statements = 0;

    if (!p)
        return false;
    for (size_t i = 0; i < d->n_runs; i++)
        statements += d->runs[i].statements;
    if (d->n_runs == 1)
        fprintf(out, "### pgscope report, run %lld", (long long)d->runs[0].id);
    else
        fprintf(out, "### pgscope report, %zu runs", d->n_runs);
    fprintf(out, ": %s%zu finding%s\n\n", n ? ":warning: " : ":white_check_mark: ", n,
            n == 1 ? "" : "s");
    fprintf(out,
            "%lld statements in %lld shapes, %zu N+1 or repeated-query finding%s, %zu plan "
            "finding%s, %zu index suggestion%s.\n",
            (long long)statements, (long long)d->shapes, d->n_findings,
            d->n_findings == 1 ? "" : "s", d->n_plan_findings, d->n_plan_findings == 1 ? "" : "s",
            d->n_indexes, d->n_indexes == 1 ? "" : "s");
    if (n > 0) {
        fprintf(out, "\n#### Findings\n\n");
        report_ci_markdown(out, p, n);
    }
    md_indexes(out, d);
    md_tests(out, d);
    md_statements(out, d);
    free(p);
    return true;
}
