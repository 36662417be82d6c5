/* diff.c — `pgscope diff`: two runs side by side, before and after a change, from one file or two
 * (each side may be several CI shards, merged). Per statement shape (fingerprint, database, user):
 * calls, rows, mean, p95 and total time with their absolute and percent change, the shapes that
 * appeared and disappeared; per test its statements and time; N+1, duplicate, insert-loop and
 * plan findings fixed, new and still present; index suggestions new and gone. Text, Markdown,
 * JSON, JUnit (the new findings fail their test) and GitHub annotations. */
#include "config.h"

#include "pgscope/report.h"

#include "report_int.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DB "./pgscope.db"

typedef enum { OUT_TEXT, OUT_MARKDOWN, OUT_JSON, OUT_JUNIT, OUT_HTML } diff_format;

typedef struct {
    const char *db;
    report_shards after_db;  /* --db: the after run's file(s); shards merged */
    report_shards before_db; /* --before-db: the before run's file(s); none: --db's */
    int64_t before, after;   /* 0: the last two runs of the file, or each file's latest */
    diff_format format;
    const char *output; /* --output FILE; NULL: standard output */
    bool github;        /* --annotations github */
    int limit;          /* shapes listed (0: all) */
} diff_options;

/* A shape in either run: before or after may be NULL (appeared, disappeared). */
typedef struct {
    const report_statement *b, *a;
    double delta_ms; /* total time after - before */
} diff_shape;

/* An item (finding, plan finding, index suggestion) of either run: b or a NULL when the other
 * run alone has it. */
typedef struct {
    const void *b, *a;
} diff_pair;

/* Everything the renderers show. */
typedef struct {
    const report_data *b, *a;
    diff_shape *shapes;
    size_t n_shapes;
    diff_pair *findings, *plans, *indexes; /* report_nplusone, report_plan_finding, report_index */
    size_t n_findings, n_plans, n_indexes;
} diff_result;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgscope diff [OPTIONS]\n\n"
            "Two runs side by side, before and after a change: per statement shape its calls,\n"
            "rows, mean, p95 and total time with the change in percent, the shapes that\n"
            "appeared and disappeared, the statements and time of each test, the N+1,\n"
            "duplicate, insert-loop and plan findings fixed, new and still present, and the\n"
            "index suggestions new and gone.\n\n"
            "Options:\n"
            "  --db FILE                the report database (default %s); given more\n"
            "                           than once (CI shards), the latest run of each file\n"
            "                           merged is the after run (needs --before-db)\n"
            "  --before-db FILE         the before run's file (its latest run, or --before);\n"
            "                           more than once: shards, merged. Without it both runs\n"
            "                           come from --db\n"
            "  --before ID, --after ID  the runs to compare (default: the file's last two;\n"
            "                           with --before-db, each file's latest)\n"
            "  --format FORMAT          text (default), markdown, json, junit (one\n"
            "                           testcase per test: its new findings fail it), or\n"
            "                           html (one page: before and after bars, regressions\n"
            "                           first)\n"
            "  --output FILE            write there instead of standard output\n"
            "  --annotations github     a GitHub workflow warning per new finding, on\n"
            "                           standard output\n"
            "  --limit N                shapes listed, most changed time first (default 20;\n"
            "                           0 lists all)\n"
            "  --help                   this text\n\n"
            "Exit status: 0 printed, 2 bad usage, 3 a database could not be read (or has\n"
            "fewer than two runs), or the output not written.\n",
            DEFAULT_DB);
}

static int format_option(const char *v, diff_options *o)
{
    static const char *const names[] = {"text", "markdown", "json", "junit", "html"};
    int k = 0;
    int rc = report_format_option("diff", v, names, 5, &k);

    o->format = rc == 0 ? (diff_format)k : o->format;
    return rc;
}

/* One option at argv[*i]: 0 taken, 2 bad usage (reason printed), -1 not an option of diff. */
static int parse_option(int argc, char **argv, int *i, bool *missing_out, void *ctx)
{
    diff_options *o = ctx;
    bool missing = false;
    const char *v;
    long long n;

    if ((v = report_option_value(argc, argv, i, "--db", &missing))) {
        o->db = o->after_db.n == 0 ? v : o->db;
        return report_add_shard("diff", &o->after_db, v);
    } else if ((v = report_option_value(argc, argv, i, "--before-db", &missing))) {
        return report_add_shard("diff", &o->before_db, v);
    } else if ((v = report_option_value(argc, argv, i, "--before", &missing))) {
        return report_id_option("diff", "--before", v, &o->before);
    } else if ((v = report_option_value(argc, argv, i, "--after", &missing))) {
        return report_id_option("diff", "--after", v, &o->after);
    } else if ((v = report_option_value(argc, argv, i, "--format", &missing))) {
        return format_option(v, o);
    } else if ((v = report_option_value(argc, argv, i, "--output", &missing))) {
        o->output = v;
    } else if ((v = report_option_value(argc, argv, i, "--annotations", &missing))) {
        return report_annotations_option("diff", v, &o->github);
    } else if ((v = report_option_value(argc, argv, i, "--limit", &missing))) {
        if (!report_parse_int(v, 0, 1000000, &n)) {
            fprintf(stderr, "pgscope diff: --limit: \"%s\" is not a count\n", v);
            return 2;
        }
        o->limit = (int)n;
    } else {
        *missing_out = missing;
        return -1;
    }
    return 0;
}

/* 0 go on, 1 help printed, 2 bad usage. */
static int parse_options(int argc, char **argv, diff_options *o)
{
    *o = (diff_options){.db = DEFAULT_DB, .limit = 20};
    int rc = report_parse_args("diff", argc, argv, usage, parse_option, o);
    if (rc != 0)
        return rc;
    if (o->after_db.n == 0)
        report_add_shard("diff", &o->after_db, o->db);
    if (o->before_db.n == 0 && o->after_db.n > 1) {
        fprintf(stderr, "pgscope diff: --db more than once (CI shards) needs --before-db: the "
                        "runs before the change\n");
        return 2;
    }
    if (o->before_db.n == 0 && (o->before > 0) != (o->after > 0)) {
        fprintf(stderr, "pgscope diff: --before and --after go together\n");
        return 2;
    }
    return 0;
}

/* The file's last two runs, oldest first; false when it has fewer. */
static bool last_two_runs(sqlite3 *db, int64_t *before, int64_t *after)
{
    sqlite3_stmt *st = NULL;
    int64_t ids[2] = {0, 0};
    int n = 0;

    if (sqlite3_prepare_v2(db, "SELECT id FROM runs ORDER BY id DESC LIMIT 2", -1, &st, NULL) !=
        SQLITE_OK)
        return false;
    while (n < 2 && sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    *before = ids[1];
    *after = ids[0];
    return n == 2;
}

/* ---- pairing ---- */

static double total_of(const report_statement *s)
{
    return s ? s->total_ms : 0;
}

static int by_change(const void *pa, const void *pb)
{
    double a = fabs(((const diff_shape *)pa)->delta_ms),
           b = fabs(((const diff_shape *)pb)->delta_ms);

    return a < b ? 1 : a > b ? -1 : 0;
}

/* Every shape of either run, most changed total time first. */
static diff_shape *pair_shapes(const report_data *b, const report_data *a, size_t *n)
{
    diff_shape *out = calloc(b->n_stmts + a->n_stmts + 1, sizeof(*out));

    *n = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < a->n_stmts; i++) {
        diff_shape *d = &out[(*n)++];
        d->a = &a->stmts[i];
        for (size_t j = 0; j < b->n_stmts && !d->b; j++)
            d->b = report_same_statement(&b->stmts[j], d->a) ? &b->stmts[j] : NULL;
    }
    for (size_t j = 0; j < b->n_stmts; j++) {
        bool seen = false;
        for (size_t i = 0; i < a->n_stmts && !seen; i++)
            seen = report_same_statement(&b->stmts[j], &a->stmts[i]);
        if (!seen)
            out[(*n)++].b = &b->stmts[j];
    }
    for (size_t i = 0; i < *n; i++)
        out[i].delta_ms = total_of(out[i].a) - total_of(out[i].b);
    qsort(out, *n, sizeof(*out), by_change);
    return out;
}

/* Every item of either run: those of the before run (with the after run's same one, or NULL),
 * then those only the after run has. */
static diff_pair *pair_items(const void *bv, size_t nb, const void *av, size_t na, size_t size,
                             bool (*same)(const void *x, const void *y), size_t *n)
{
    const char *bi = bv, *ai = av;
    diff_pair *out = calloc(nb + na + 1, sizeof(*out));

    *n = 0;
    if (!out)
        return NULL;
    for (size_t j = 0; j < nb; j++) {
        diff_pair *d = &out[(*n)++];
        d->b = bi + j * size;
        for (size_t i = 0; i < na && !d->a; i++)
            d->a = same(d->b, ai + i * size) ? ai + i * size : NULL;
    }
    for (size_t i = 0; i < na; i++) {
        bool seen = false;
        for (size_t j = 0; j < nb && !seen; j++)
            seen = same(bi + j * size, ai + i * size);
        if (!seen)
            out[(*n)++].a = ai + i * size;
    }
    return out;
}

static bool same_finding(const void *x, const void *y)
{
    return report_same_finding(x, y);
}

static bool same_plan_finding(const void *x, const void *y)
{
    return report_same_plan_finding(x, y);
}

/* One index: the same DDL in the same database. */
static bool same_index(const void *x, const void *y)
{
    const report_index *p = x, *q = y;

    return strcmp(p->ddl ? p->ddl : "", q->ddl ? q->ddl : "") == 0 &&
           strcmp(p->database ? p->database : "", q->database ? q->database : "") == 0;
}

static bool pair_all(const report_data *b, const report_data *a, diff_result *r)
{
    *r = (diff_result){.b = b, .a = a};
    r->shapes = pair_shapes(b, a, &r->n_shapes);
    r->findings = pair_items(b->findings, b->n_findings, a->findings, a->n_findings,
                             sizeof(*a->findings), same_finding, &r->n_findings);
    r->plans =
        pair_items(b->plan_findings, b->n_plan_findings, a->plan_findings, a->n_plan_findings,
                   sizeof(*a->plan_findings), same_plan_finding, &r->n_plans);
    r->indexes = pair_items(b->indexes, b->n_indexes, a->indexes, a->n_indexes, sizeof(*a->indexes),
                            same_index, &r->n_indexes);
    return r->shapes && r->findings && r->plans && r->indexes;
}

static void free_result(diff_result *r)
{
    free(r->shapes);
    free(r->findings);
    free(r->plans);
    free(r->indexes);
}

/* ---- text and markdown ---- */

static const char *status_of(const diff_pair *d)
{
    return !d->a ? "fixed" : !d->b ? "new" : "still present";
}

static const char *index_status(const diff_pair *d)
{
    return !d->a ? "gone" : !d->b ? "new" : "still suggested";
}

/* "+12.5%", "-3.0%", "new" (from nothing), "" (both nothing). */
static void pct(char *out, size_t cap, double before, double after)
{
    if (before == 0 && after == 0)
        snprintf(out, cap, "0%%");
    else if (before == 0 || isnan(before))
        snprintf(out, cap, "new");
    else
        snprintf(out, cap, "%+.1f%%", 100.0 * (after - before) / before);
}

static void put_shape_row(FILE *out, const diff_shape *d, bool md)
{
    const report_statement *b = d->b, *a = d->a, *any = a ? a : b;
    char q[100], pc[16], pm[16], pp[16], pt[16];
    const char *query = any->query ? any->query : any->fingerprint;

    report_one_line(query, q, sizeof(q));
    pct(pc, sizeof(pc), b ? (double)b->calls : 0, a ? (double)a->calls : 0);
    pct(pm, sizeof(pm), b ? b->mean_ms : 0, a ? a->mean_ms : 0);
    pct(pp, sizeof(pp), b ? b->p95_ms : 0, a ? a->p95_ms : 0);
    pct(pt, sizeof(pt), total_of(b), total_of(a));
    if (md) {
        fputs("| ", out);
        report_md_code(out, query, 100);
    } else {
        fprintf(out, "  %s\n", q);
    }
    const char *fmt = md ? " | %s | %lld → %lld (%s) | %.3f → %.3f (%s) | %.3f → %.3f (%s) "
                           "| %.3f → %.3f (%s) |\n"
                         : "    %s; calls %lld -> %lld (%s), mean %.3f -> %.3f ms (%s), "
                           "p95 %.3f -> %.3f ms (%s), total %.3f -> %.3f ms (%s)\n";
    const char *what = !b ? "appeared" : !a ? "disappeared" : "changed";
    fprintf(out, fmt, what, b ? (long long)b->calls : 0LL, a ? (long long)a->calls : 0LL, pc,
            b ? b->mean_ms : 0.0, a ? a->mean_ms : 0.0, pm, b ? b->p95_ms : 0.0,
            a ? a->p95_ms : 0.0, pp, total_of(b), total_of(a), pt);
}

/* The test of the same name in d, or NULL. */
static const report_test *test_in(const report_data *d, const char *name)
{
    for (size_t i = 0; i < d->n_tests; i++)
        if (strcmp(d->tests[i].name, name) == 0)
            return &d->tests[i];
    return NULL;
}

/* Calls fn for each test of either run: those of the after run (with the before run's of the
 * same name, or NULL), then those only the before run had (after NULL). */
static void each_test(const report_data *b, const report_data *a,
                      void (*fn)(const report_test *before, const report_test *after, void *arg),
                      void *arg)
{
    for (size_t i = 0; i < a->n_tests; i++)
        fn(test_in(b, a->tests[i].name), &a->tests[i], arg);
    for (size_t i = 0; i < b->n_tests; i++)
        if (!test_in(a, b->tests[i].name))
            fn(&b->tests[i], NULL, arg);
}

typedef struct {
    FILE *out;
    bool md;
} test_rows;

static void put_test(const report_test *tb, const report_test *ta, void *arg)
{
    const test_rows *r = arg;
    char pc[16], pt[16];
    const char *name = (ta ? ta : tb)->name;

    pct(pc, sizeof(pc), tb ? (double)tb->statements : 0, ta ? (double)ta->statements : 0);
    pct(pt, sizeof(pt), tb ? tb->total_ms : 0, ta ? ta->total_ms : 0);
    if (r->md) {
        fputs("| ", r->out);
        report_md_code(r->out, name, 100);
    } else {
        fprintf(r->out, "  %s:", name);
    }
    fprintf(r->out,
            r->md ? " | %lld → %lld (%s) | %.3f → %.3f (%s) |\n"
                  : " statements %lld -> %lld (%s), time %.3f -> %.3f ms (%s)\n",
            tb ? (long long)tb->statements : 0LL, ta ? (long long)ta->statements : 0LL, pc,
            tb ? tb->total_ms : 0.0, ta ? ta->total_ms : 0.0, pt);
}

/* Statements per test, before and after (tests of either run). */
static void put_tests(FILE *out, const report_data *b, const report_data *a, bool md)
{
    test_rows r = {out, md};

    if (a->n_tests + b->n_tests == 0)
        return;
    fprintf(out, md ? "\n| test | statements | time ms |\n|---|---|---|\n" : "\nTests:\n");
    each_test(b, a, put_test, &r);
}

/* Fixed, new and still present: N+1 and plan findings together. */
static void count_findings(const diff_result *r, size_t c[3])
{
    c[0] = c[1] = c[2] = 0;
    for (size_t i = 0; i < r->n_findings; i++)
        c[!r->findings[i].a ? 0 : !r->findings[i].b ? 1 : 2]++;
    for (size_t i = 0; i < r->n_plans; i++)
        c[!r->plans[i].a ? 0 : !r->plans[i].b ? 1 : 2]++;
}

/* The last column of a finding's line: its query, a code span or one line of text. */
static void put_query_end(FILE *out, const char *query, bool md)
{
    char q[120];

    if (md) {
        report_md_code(out, query ? query : "", sizeof(q));
        fputs(" |\n", out);
    } else {
        report_one_line(query, q, sizeof(q));
        fprintf(out, "%s\n", q);
    }
}

static void put_findings(FILE *out, const diff_result *r, bool md)
{
    if (r->n_findings > 0)
        fprintf(out, md ? "\n| finding | status | N max before | N max after | query |\n"
                          "|---|---|---:|---:|---|\n"
                        : "\nFindings:\n");
    for (size_t i = 0; i < r->n_findings; i++) {
        const report_nplusone *b = r->findings[i].b, *a = r->findings[i].a, *any = a ? a : b;
        const char *query = any->n_child_queries ? any->child_queries[0] : "";
        fprintf(out, md ? "| %s | %s | %lld | %lld | " : "  %s, %s: N max %lld -> %lld: ",
                report_kind_name(any), status_of(&r->findings[i]), b ? (long long)b->max_n : 0LL,
                a ? (long long)a->max_n : 0LL);
        put_query_end(out, query, md);
    }
}

static void put_plan_findings(FILE *out, const diff_result *r, bool md)
{
    if (r->n_plans > 0)
        fprintf(out, md ? "\n| plan finding | status | table | size before | size after | query |\n"
                          "|---|---|---|---:|---:|---|\n"
                        : "\nPlan findings:\n");
    for (size_t i = 0; i < r->n_plans; i++) {
        const report_plan_finding *b = r->plans[i].b, *a = r->plans[i].a, *any = a ? a : b;
        fprintf(out,
                md ? "| %s | %s | %s | %.0f | %.0f | " : "  %s, %s, on %s: size %.0f -> %.0f: ",
                any->kind, status_of(&r->plans[i]),
                any->relation && any->relation[0] ? any->relation : "-", b ? b->magnitude : 0.0,
                a ? a->magnitude : 0.0);
        put_query_end(out, any->query, md);
    }
}

static void put_indexes(FILE *out, const diff_result *r, bool md)
{
    if (r->n_indexes > 0)
        fprintf(out,
                md ? "\n| index suggestion | status |\n|---|---|\n" : "\nIndex suggestions:\n");
    for (size_t i = 0; i < r->n_indexes; i++) {
        const report_index *x = r->indexes[i].a ? r->indexes[i].a : r->indexes[i].b;
        if (md) {
            fputs("| ", out);
            report_md_code(out, x->ddl ? x->ddl : "", 200);
            fprintf(out, " | %s |\n", index_status(&r->indexes[i]));
        } else {
            fprintf(out, "  %s: %s\n", index_status(&r->indexes[i]), x->ddl ? x->ddl : "");
        }
    }
}

static void render_text(FILE *out, const diff_result *r, const diff_options *o, bool md)
{
    const report_data *b = r->b, *a = r->a;
    size_t c[3];
    int64_t calls_b = 0, calls_a = 0;
    char pc[16];

    for (size_t i = 0; i < b->n_stmts; i++)
        calls_b += b->stmts[i].calls;
    for (size_t i = 0; i < a->n_stmts; i++)
        calls_a += a->stmts[i].calls;
    pct(pc, sizeof(pc), (double)calls_b, (double)calls_a);
    count_findings(r, c);
    fprintf(out,
            "%spgscope diff: run %lld -> run %lld: %zu finding%s fixed, %zu new, %zu still "
            "present; statements %lld -> %lld (%s)\n",
            md ? "### " : "", (long long)b->runs[0].id, (long long)a->runs[0].id, c[0],
            c[0] == 1 ? "" : "s", c[1], c[2], (long long)calls_b, (long long)calls_a, pc);
    put_findings(out, r, md);
    put_plan_findings(out, r, md);
    put_indexes(out, r, md);
    put_tests(out, b, a, md);
    size_t ns = r->n_shapes;
    size_t shown = o->limit > 0 && (size_t)o->limit < ns ? (size_t)o->limit : ns;
    if (md)
        fprintf(out, "\n| statement | | calls | mean ms | p95 ms | total ms |\n"
                     "|---|---|---|---|---|---|\n");
    else
        fprintf(out, "\nStatements, most changed total time first (%zu of %zu):\n", shown, ns);
    for (size_t i = 0; i < shown; i++)
        put_shape_row(out, &r->shapes[i], md);
}

/* ---- html ---- */

#define HTML_SHAPES 500 /* statement rows of the page */

/* Before and after as two bars of one scale, the numbers in a <title> and beside them. */
static void html_bars(FILE *out, double before, double after)
{
    double top = before > after ? before : after, wb = top > 0 ? 120 * before / top : 0,
           wa = top > 0 ? 120 * after / top : 0;

    fprintf(out,
            "<svg class=\"pair\" role=\"img\" viewBox=\"0 0 124 26\" width=\"124\" height=\"26\">"
            "<title>before %.3f, after %.3f</title>"
            "<rect class=\"b0\" x=\"0\" y=\"1\" width=\"%.1f\" height=\"10\"/>"
            "<rect class=\"b\" x=\"0\" y=\"14\" width=\"%.1f\" height=\"10\"/></svg>",
            before, after, wb + 0.5, wa + 0.5);
}

/* "12 → 15 (+25.0%)" in a cell, the percent also in data-v for sorting. */
static void html_change(FILE *out, double before, double after, const char *fmt)
{
    char pc[16], b[32], a[32];

    pct(pc, sizeof(pc), before, after);
    snprintf(b, sizeof(b), fmt, before);
    snprintf(a, sizeof(a), fmt, after);
    fprintf(out, "<td class=\"n\" data-v=\"%.6f\">%s &#8594; %s <strong>%s</strong></td>",
            before > 0  ? (after - before) / before
            : after > 0 ? 1e9
                        : 0,
            b, a, pc);
}

static void html_query(FILE *out, const char *query)
{
    fputs("<td class=\"q\"><code>", out);
    report_html_text(out, query ? query : "");
    fputs("</code></td>", out);
}

static void html_findings(FILE *out, const diff_result *r)
{
    fputs("<section id=\"findings\"><h2>N+1 loops, repeated queries and plan findings</h2>", out);
    if (r->n_findings + r->n_plans == 0)
        fputs("<p>None in either run.</p>", out);
    else
        fputs("<div class=\"scroll\"><table><thead><tr><th>finding</th><th>status</th>"
              "<th>size before &#8594; after</th><th>test</th><th>query</th></tr></thead><tbody>",
              out);
    for (size_t i = 0; i < r->n_findings; i++) {
        const report_nplusone *b = r->findings[i].b, *a = r->findings[i].a, *any = a ? a : b;
        fprintf(out, "<tr><td>%s</td><td>%s</td><td class=\"n\">N max %lld &#8594; %lld</td><td>",
                report_kind_name(any), status_of(&r->findings[i]), b ? (long long)b->max_n : 0LL,
                a ? (long long)a->max_n : 0LL);
        report_html_text(out, any->test);
        fputs("</td>", out);
        html_query(out, report_first_child(any));
        fputs("</tr>\n", out);
    }
    for (size_t i = 0; i < r->n_plans; i++) {
        const report_plan_finding *b = r->plans[i].b, *a = r->plans[i].a, *any = a ? a : b;
        fputs("<tr><td>", out);
        report_html_text(out, any->kind);
        fputs(" on ", out);
        report_html_text(out, any->relation && any->relation[0] ? any->relation : "-");
        fprintf(out, "</td><td>%s</td><td class=\"n\">%.0f &#8594; %.0f</td><td>",
                status_of(&r->plans[i]), b ? b->magnitude : 0.0, a ? a->magnitude : 0.0);
        report_html_text(out, any->test);
        fputs("</td>", out);
        html_query(out, any->query);
        fputs("</tr>\n", out);
    }
    if (r->n_findings + r->n_plans > 0)
        fputs("</tbody></table></div>", out);
    fputs("</section>\n", out);
}

static void html_indexes(FILE *out, const diff_result *r)
{
    fputs("<section id=\"indexes\"><h2>Index suggestions</h2>", out);
    if (r->n_indexes == 0)
        fputs("<p>None in either run.</p>", out);
    for (size_t i = 0; i < r->n_indexes; i++) {
        const report_index *x = r->indexes[i].a ? r->indexes[i].a : r->indexes[i].b;
        fprintf(out, "<p><strong>%s</strong> <code>", index_status(&r->indexes[i]));
        report_html_text(out, x->ddl);
        fputs("</code></p>", out);
    }
    fputs("</section>\n", out);
}

static void html_test(const report_test *tb, const report_test *ta, void *arg)
{
    FILE *out = arg;

    fputs("<tr><td><code>", out);
    report_html_text(out, (ta ? ta : tb)->name);
    fputs("</code></td>", out);
    html_change(out, tb ? (double)tb->statements : 0, ta ? (double)ta->statements : 0, "%.0f");
    html_change(out, tb ? tb->total_ms : 0, ta ? ta->total_ms : 0, "%.3f");
    fputs("<td>", out);
    html_bars(out, tb ? tb->total_ms : 0, ta ? ta->total_ms : 0);
    fputs("</td></tr>\n", out);
}

/* Regressions first: the most time added first, then the most time saved last. */
static int by_regression(const void *pa, const void *pb)
{
    double a = ((const diff_shape *)pa)->delta_ms, b = ((const diff_shape *)pb)->delta_ms;

    return a < b ? 1 : a > b ? -1 : 0;
}

static void html_shapes(FILE *out, const diff_result *r)
{
    diff_shape *v = malloc((r->n_shapes + 1) * sizeof(*v));
    size_t shown = r->n_shapes < HTML_SHAPES ? r->n_shapes : HTML_SHAPES;

    if (!v)
        return;
    memcpy(v, r->shapes, r->n_shapes * sizeof(*v));
    qsort(v, r->n_shapes, sizeof(*v), by_regression);
    fprintf(out,
            "<section id=\"statements\"><h2>Statements, regressions first</h2><p class=\"muted\">"
            "%zu of %zu shapes; the bars are total time before (grey, top) and after (blue, "
            "bottom); click a column to sort.</p><div class=\"scroll\"><table><thead><tr>"
            "<th data-sort=\"t\">query</th><th data-sort=\"t\">status</th>"
            "<th data-sort=\"n\" class=\"n\">calls</th><th data-sort=\"n\" class=\"n\">mean ms</th>"
            "<th data-sort=\"n\" class=\"n h\">p95 ms</th>"
            "<th data-sort=\"n\" class=\"n\">total ms</th><th class=\"h\">total</th></tr></thead>"
            "<tbody>",
            shown, r->n_shapes);
    for (size_t i = 0; i < shown; i++) {
        const report_statement *b = v[i].b, *a = v[i].a, *any = a ? a : b;
        fputs("<tr>", out);
        html_query(out, any->query ? any->query : any->fingerprint);
        fprintf(out, "<td>%s</td>", !b ? "appeared" : !a ? "disappeared" : "changed");
        html_change(out, b ? (double)b->calls : 0, a ? (double)a->calls : 0, "%.0f");
        html_change(out, b ? b->mean_ms : 0, a ? a->mean_ms : 0, "%.3f");
        fputs("<td class=\"n h\">", out);
        fprintf(out, "%.3f &#8594; %.3f</td>", b ? b->p95_ms : 0.0, a ? a->p95_ms : 0.0);
        html_change(out, total_of(b), total_of(a), "%.3f");
        fputs("<td class=\"h\">", out);
        html_bars(out, total_of(b), total_of(a));
        fputs("</td></tr>\n", out);
    }
    fputs("</tbody></table></div></section>\n", out);
    free(v);
}

static void render_html(FILE *out, const diff_result *r)
{
    char title[96], pc[16];
    size_t c[3];
    int64_t calls_b = 0, calls_a = 0;

    for (size_t i = 0; i < r->b->n_stmts; i++)
        calls_b += r->b->stmts[i].calls;
    for (size_t i = 0; i < r->a->n_stmts; i++)
        calls_a += r->a->stmts[i].calls;
    pct(pc, sizeof(pc), (double)calls_b, (double)calls_a);
    count_findings(r, c);
    snprintf(title, sizeof(title), "pgscope diff, run %lld -> run %lld",
             (long long)r->b->runs[0].id, (long long)r->a->runs[0].id);
    report_html_begin(out, title);
    fputs("<header><h1>", out);
    report_html_text(out, title);
    fprintf(out,
            "</h1><div class=\"verdict %s\" id=\"verdict\"><strong>%s</strong><ul "
            "class=\"figures\"><li>%zu finding%s fixed</li><li>%zu new</li><li>%zu still "
            "present</li><li>statements %lld &#8594; %lld (%s)</li></ul></div></header><main>",
            c[1] ? "bad" : "good", c[1] ? "&#10007; New findings" : "&#10003; No new finding", c[0],
            c[0] == 1 ? "" : "s", c[1], c[2], (long long)calls_b, (long long)calls_a, pc);
    html_findings(out, r);
    html_indexes(out, r);
    if (r->a->n_tests + r->b->n_tests > 0) {
        fputs("<section id=\"tests\"><h2>Tests</h2><div class=\"scroll\"><table><thead><tr>"
              "<th data-sort=\"t\">test</th><th data-sort=\"n\" class=\"n\">statements</th>"
              "<th data-sort=\"n\" class=\"n\">time ms</th><th>time</th></tr></thead><tbody>",
              out);
        each_test(r->b, r->a, html_test, out);
        fputs("</tbody></table></div></section>\n", out);
    }
    html_shapes(out, r);
    report_html_end(out, r->a->n_runs > 0 ? r->a->runs[0].pgscope_version : NULL);
}

/* ---- junit and annotations: the new findings ---- */

static size_t new_problems(const diff_result *r, report_problem **out)
{
    report_problem *p = calloc(r->n_findings + r->n_plans + 1, sizeof(*p));
    size_t k = 0;

    *out = p;
    for (size_t i = 0; p && i < r->n_findings; i++) {
        const report_nplusone *f = r->findings[i].a;
        if (!f || r->findings[i].b)
            continue;
        report_problem_of(&p[k], f);
        p[k].failed = true;
        snprintf(p[k++].detail, sizeof(p[0].detail), "new: N max %lld, %lld occurrence%s",
                 (long long)f->max_n, (long long)f->occurrences, f->occurrences == 1 ? "" : "s");
    }
    for (size_t i = 0; p && i < r->n_plans; i++) {
        const report_plan_finding *f = r->plans[i].a;
        if (!f || r->plans[i].b)
            continue;
        report_problem_of_plan(&p[k], f, "new: ");
        p[k++].failed = true;
    }
    return k;
}

/* ---- json ---- */

static json_t *num_or_null(const report_statement *s, double v)
{
    return s && !isnan(v) ? json_real(v) : json_null();
}

static json_t *shape_json(const diff_shape *d)
{
    const report_statement *b = d->b, *a = d->a, *any = a ? a : b;
    json_t *o = json_object();

    json_object_set_new(o, "fingerprint", json_string(any->fingerprint));
    json_object_set_new(o, "database", json_string(any->database));
    json_object_set_new(o, "user", json_string(any->user));
    json_object_set_new(o, "query", any->query ? json_string(any->query) : json_null());
    json_object_set_new(o, "status", json_string(!b ? "appeared" : !a ? "disappeared" : "changed"));
    json_object_set_new(o, "calls_before", b ? json_integer(b->calls) : json_null());
    json_object_set_new(o, "calls_after", a ? json_integer(a->calls) : json_null());
    json_object_set_new(o, "rows_before", b ? json_integer(b->rows) : json_null());
    json_object_set_new(o, "rows_after", a ? json_integer(a->rows) : json_null());
    json_object_set_new(o, "mean_ms_before", num_or_null(b, b ? b->mean_ms : 0));
    json_object_set_new(o, "mean_ms_after", num_or_null(a, a ? a->mean_ms : 0));
    json_object_set_new(o, "p95_ms_before", num_or_null(b, b ? b->p95_ms : 0));
    json_object_set_new(o, "p95_ms_after", num_or_null(a, a ? a->p95_ms : 0));
    json_object_set_new(o, "total_ms_before", json_real(total_of(b)));
    json_object_set_new(o, "total_ms_after", json_real(total_of(a)));
    return o;
}

static void test_json(const report_test *tb, const report_test *ta, void *arg)
{
    json_array_append_new(
        arg, json_pack("{s:s, s:o, s:o}", "test", (ta ? ta : tb)->name, "statements_before",
                       tb ? json_integer(tb->statements) : json_null(), "statements_after",
                       ta ? json_integer(ta->statements) : json_null()));
}

static json_t *finding_json(const diff_pair *d)
{
    const report_nplusone *b = d->b, *a = d->a, *any = a ? a : b;

    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "kind",
                     any->duplicate     ? "duplicate"
                     : any->insert_loop ? "batch_insert"
                                        : "n_plus_one",
                     "status", status_of(d), "child_fingerprints",
                     any->child_fingerprints ? any->child_fingerprints : "", "child_query",
                     any->n_child_queries ? json_string(any->child_queries[0]) : json_null(),
                     "max_n_before", b ? json_integer(b->max_n) : json_null(), "max_n_after",
                     a ? json_integer(a->max_n) : json_null(), "test",
                     any->test ? json_string(any->test) : json_null());
}

static json_t *plan_finding_json(const diff_pair *d)
{
    const report_plan_finding *b = d->b, *a = d->a, *any = a ? a : b;

    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "kind", any->kind, "status",
                     status_of(d), "fingerprint", any->fingerprint, "relation",
                     any->relation ? any->relation : "", "query",
                     any->query ? json_string(any->query) : json_null(), "magnitude_before",
                     b ? json_real(b->magnitude) : json_null(), "magnitude_after",
                     a ? json_real(a->magnitude) : json_null(), "test",
                     any->test ? json_string(any->test) : json_null());
}

static json_t *index_json(const diff_pair *d)
{
    const report_index *any = d->a ? d->a : d->b;

    return json_pack("{s:s, s:s, s:s}", "ddl", any->ddl ? any->ddl : "", "database",
                     any->database ? any->database : "", "status", index_status(d));
}

/* A JSON array of one(item) for each of n pairs; NULL entries (no memory) make it fail. */
static json_t *pairs_json(const diff_pair *v, size_t n, json_t *(*one)(const diff_pair *d))
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, one(&v[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static bool render_json(FILE *out, const diff_result *r)
{
    json_t *root = json_object(), *shapes = json_array(), *tests = json_array();

    for (size_t i = 0; shapes && i < r->n_shapes; i++)
        json_array_append_new(shapes, shape_json(&r->shapes[i]));
    if (tests)
        each_test(r->b, r->a, test_json, tests);
    bool ok = root && shapes && tests &&
              json_object_set_new(root, "before_run", json_integer(r->b->runs[0].id)) == 0 &&
              json_object_set_new(root, "after_run", json_integer(r->a->runs[0].id)) == 0 &&
              json_object_set_new(root, "findings",
                                  pairs_json(r->findings, r->n_findings, finding_json)) == 0 &&
              json_object_set_new(root, "plan_findings",
                                  pairs_json(r->plans, r->n_plans, plan_finding_json)) == 0 &&
              json_object_set_new(root, "index_suggestions",
                                  pairs_json(r->indexes, r->n_indexes, index_json)) == 0;
    if (ok) {
        ok = json_object_set(root, "statements", shapes) == 0 &&
             json_object_set(root, "tests", tests) == 0;
        ok = ok && json_dumpf(root, out, JSON_INDENT(2)) == 0 && fputc('\n', out) != EOF;
    }
    json_decref(shapes);
    json_decref(tests);
    json_decref(root);
    return ok;
}

/* ---- the command ---- */

/* One file's two runs: --before and --after, or its last two. */
static bool load_one_file(const diff_options *o, report_data *b, report_data *a)
{
    char err[512] = "";
    int version = 0;
    int64_t before = o->before, after = o->after;

    if (before == 0) {
        sqlite3 *db = report_open_db(o->db, &version, err, sizeof(err));
        if (!db) {
            fprintf(stderr, "pgscope diff: %s\n", err);
            return false;
        }
        bool two = last_two_runs(db, &before, &after);
        sqlite3_close(db);
        if (!two) {
            fprintf(stderr, "pgscope diff: %s holds fewer than two runs\n", o->db);
            return false;
        }
    }
    return report_load_file("diff", o->db, before, b) && report_load_file("diff", o->db, after, a);
}

/* Writes the diff in the format asked for; the annotations on standard output. */
static bool render(const diff_options *o, const diff_result *r)
{
    FILE *out = report_output_open("diff", o->output);
    report_problem *p = NULL;
    size_t n = 0;
    bool ok = out != NULL;

    if (!out)
        return false;
    if (o->github || o->format == OUT_JUNIT) {
        n = new_problems(r, &p);
        ok = p != NULL;
    }
    if (ok && o->github)
        report_ci_annotations(stdout, "warning", p, n);
    if (ok && o->format == OUT_JSON)
        ok = render_json(out, r);
    else if (ok && o->format == OUT_JUNIT)
        ok = report_ci_junit(out, "pgscope diff", r->a, p, n);
    else if (ok && o->format == OUT_HTML)
        render_html(out, r);
    else if (ok)
        render_text(out, r, o, o->format == OUT_MARKDOWN);
    free(p);
    return report_output_close("diff", o->output, out, ok);
}

int diff_main(int argc, char **argv)
{
    diff_options o;
    report_data b, a;
    diff_result r;
    int rc = parse_options(argc, argv, &o);

    if (rc != 0)
        return rc == 1 ? 0 : rc;
    memset(&b, 0, sizeof(b));
    memset(&a, 0, sizeof(a));
    memset(&r, 0, sizeof(r));
    bool ok = o.before_db.n > 0 ? report_load_shards("diff", &o.before_db, o.before, &b) &&
                                      report_load_shards("diff", &o.after_db, o.after, &a)
                                : load_one_file(&o, &b, &a);
    if (ok && !pair_all(&b, &a, &r)) {
        fprintf(stderr, "pgscope diff: out of memory\n");
        ok = false;
    }
    ok = ok && render(&o, &r);
    free_result(&r);
    report_data_free(&b);
    report_data_free(&a);
    return ok ? 0 : 3;
}
