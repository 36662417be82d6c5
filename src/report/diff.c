/* diff.c — `pgscope diff`: two runs side by side, before and after a change. Per statement shape
 * (fingerprint, database, user): calls, rows, mean, p95 and total time with their absolute and
 * percent change, the shapes that appeared and disappeared; N+1, duplicate and insert-loop
 * findings fixed, new and still present. Text, Markdown or JSON. */
#include "config.h"

#include "pgscope/report.h"

#include "report_int.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DB "./pgscope.db"

typedef enum { OUT_TEXT, OUT_MARKDOWN, OUT_JSON } diff_format;

typedef struct {
    const char *db;
    int64_t before, after; /* 0: the last two runs of the file */
    diff_format format;
    int limit; /* shapes listed (0: all) */
} diff_options;

/* A shape in either run: before or after may be NULL (appeared, disappeared). */
typedef struct {
    const report_statement *b, *a;
    double delta_ms; /* total time after - before */
} diff_shape;

/* A finding in either run. */
typedef struct {
    const report_nplusone *b, *a;
} diff_finding;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgscope diff [OPTIONS]\n\n"
            "Two runs side by side, before and after a change: per statement shape its calls,\n"
            "rows, mean, p95 and total time with the change in percent, the shapes that\n"
            "appeared and disappeared, and the N+1, duplicate and insert-loop findings fixed,\n"
            "new and still present.\n\n"
            "Options:\n"
            "  --db FILE                the report database (default %s)\n"
            "  --before ID, --after ID  the runs to compare (default: the file's last two)\n"
            "  --format text|markdown|json\n"
            "  --limit N                shapes listed, most changed time first (default 20;\n"
            "                           0 lists all)\n"
            "  --help                   this text\n\n"
            "Exit status: 0 printed, 2 bad usage, 3 the database could not be read (or has\n"
            "fewer than two runs).\n",
            DEFAULT_DB);
}

/* One option at argv[*i]: 0 taken, 2 bad usage (reason printed), -1 not an option of diff. */
static int parse_option(int argc, char **argv, int *i, bool *missing_out, void *ctx)
{
    diff_options *o = ctx;
    bool missing = false;
    const char *v;
    long long n;

    if ((v = report_option_value(argc, argv, i, "--db", &missing))) {
        o->db = v;
    } else if ((v = report_option_value(argc, argv, i, "--before", &missing))) {
        return report_id_option("diff", "--before", v, &o->before);
    } else if ((v = report_option_value(argc, argv, i, "--after", &missing))) {
        return report_id_option("diff", "--after", v, &o->after);
    } else if ((v = report_option_value(argc, argv, i, "--format", &missing))) {
        if (strcmp(v, "text") != 0 && strcmp(v, "markdown") != 0 && strcmp(v, "json") != 0) {
            fprintf(stderr, "pgscope diff: --format: \"%s\" is not one of text, markdown, json\n",
                    v);
            return 2;
        }
        o->format = v[0] == 't' ? OUT_TEXT : v[0] == 'm' ? OUT_MARKDOWN : OUT_JSON;
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
    if ((o->before > 0) != (o->after > 0)) {
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

static diff_finding *pair_findings(const report_data *b, const report_data *a, size_t *n)
{
    diff_finding *out = calloc(b->n_findings + a->n_findings + 1, sizeof(*out));

    *n = 0;
    if (!out)
        return NULL;
    for (size_t j = 0; j < b->n_findings; j++) {
        diff_finding *d = &out[(*n)++];
        d->b = &b->findings[j];
        for (size_t i = 0; i < a->n_findings && !d->a; i++)
            d->a = report_same_finding(d->b, &a->findings[i]) ? &a->findings[i] : NULL;
    }
    for (size_t i = 0; i < a->n_findings; i++) {
        bool seen = false;
        for (size_t j = 0; j < b->n_findings && !seen; j++)
            seen = report_same_finding(&b->findings[j], &a->findings[i]);
        if (!seen)
            out[(*n)++].a = &a->findings[i];
    }
    return out;
}

/* ---- text and markdown ---- */

static const char *status_of(const diff_finding *d)
{
    return !d->a ? "fixed" : !d->b ? "new" : "still present";
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

    report_one_line(any->query ? any->query : any->fingerprint, q, sizeof(q));
    pct(pc, sizeof(pc), b ? (double)b->calls : 0, a ? (double)a->calls : 0);
    pct(pm, sizeof(pm), b ? b->mean_ms : 0, a ? a->mean_ms : 0);
    pct(pp, sizeof(pp), b ? b->p95_ms : 0, a ? a->p95_ms : 0);
    pct(pt, sizeof(pt), total_of(b), total_of(a));
    const char *fmt = md ? "| `%s` | %s | %lld → %lld (%s) | %.3f → %.3f (%s) | %.3f → %.3f (%s) "
                           "| %.3f → %.3f (%s) |\n"
                         : "  %s\n    %s; calls %lld -> %lld (%s), mean %.3f -> %.3f ms (%s), "
                           "p95 %.3f -> %.3f ms (%s), total %.3f -> %.3f ms (%s)\n";
    const char *what = !b ? "appeared" : !a ? "disappeared" : "changed";
    fprintf(out, fmt, q, what, b ? (long long)b->calls : 0LL, a ? (long long)a->calls : 0LL, pc,
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

    pct(pc, sizeof(pc), tb ? (double)tb->statements : 0, ta ? (double)ta->statements : 0);
    pct(pt, sizeof(pt), tb ? tb->total_ms : 0, ta ? ta->total_ms : 0);
    fprintf(r->out,
            r->md ? "| `%s` | %lld → %lld (%s) | %.3f → %.3f (%s) |\n"
                  : "  %s: statements %lld -> %lld (%s), time %.3f -> %.3f ms (%s)\n",
            (ta ? ta : tb)->name, tb ? (long long)tb->statements : 0LL,
            ta ? (long long)ta->statements : 0LL, pc, tb ? tb->total_ms : 0.0,
            ta ? ta->total_ms : 0.0, pt);
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

static void count_findings(const diff_finding *f, size_t n, size_t c[3])
{
    c[0] = c[1] = c[2] = 0;
    for (size_t i = 0; i < n; i++)
        c[!f[i].a ? 0 : !f[i].b ? 1 : 2]++;
}

static void render_text(FILE *out, const report_data *b, const report_data *a, const diff_shape *s,
                        size_t ns, const diff_finding *f, size_t nf, const diff_options *o, bool md)
{
    size_t c[3];
    int64_t calls_b = 0, calls_a = 0;
    char pc[16];

    for (size_t i = 0; i < b->n_stmts; i++)
        calls_b += b->stmts[i].calls;
    for (size_t i = 0; i < a->n_stmts; i++)
        calls_a += a->stmts[i].calls;
    pct(pc, sizeof(pc), (double)calls_b, (double)calls_a);
    count_findings(f, nf, c);
    fprintf(out,
            "%spgscope diff: run %lld -> run %lld: %zu finding%s fixed, %zu new, %zu still "
            "present; statements %lld -> %lld (%s)\n",
            md ? "### " : "", (long long)b->runs[0].id, (long long)a->runs[0].id, c[0],
            c[0] == 1 ? "" : "s", c[1], c[2], (long long)calls_b, (long long)calls_a, pc);
    if (nf > 0)
        fprintf(out, md ? "\n| finding | status | N max before | N max after | query |\n"
                          "|---|---|---:|---:|---|\n"
                        : "\nFindings:\n");
    for (size_t i = 0; i < nf; i++) {
        const report_nplusone *any = f[i].a ? f[i].a : f[i].b;
        char q[120];
        report_one_line(any->n_child_queries ? any->child_queries[0] : "", q, sizeof(q));
        fprintf(out,
                md ? "| %s | %s | %lld | %lld | `%s` |\n" : "  %s, %s: N max %lld -> %lld: %s\n",
                report_kind_name(any), status_of(&f[i]), f[i].b ? (long long)f[i].b->max_n : 0LL,
                f[i].a ? (long long)f[i].a->max_n : 0LL, q);
    }
    put_tests(out, b, a, md);
    size_t shown = o->limit > 0 && (size_t)o->limit < ns ? (size_t)o->limit : ns;
    if (md)
        fprintf(out, "\n| statement | | calls | mean ms | p95 ms | total ms |\n"
                     "|---|---|---|---|---|---|\n");
    else
        fprintf(out, "\nStatements, most changed total time first (%zu of %zu):\n", shown, ns);
    for (size_t i = 0; i < shown; i++)
        put_shape_row(out, &s[i], md);
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

static bool render_json(FILE *out, const report_data *b, const report_data *a, const diff_shape *s,
                        size_t ns, const diff_finding *f, size_t nf)
{
    json_t *root = json_object(), *shapes = json_array(), *finds = json_array();

    for (size_t i = 0; i < ns; i++)
        json_array_append_new(shapes, shape_json(&s[i]));
    for (size_t i = 0; i < nf; i++) {
        const report_nplusone *any = f[i].a ? f[i].a : f[i].b;
        json_t *o = json_object();
        json_object_set_new(o, "kind",
                            json_string(any->duplicate     ? "duplicate"
                                        : any->insert_loop ? "batch_insert"
                                                           : "n_plus_one"));
        json_object_set_new(o, "status", json_string(status_of(&f[i])));
        json_object_set_new(o, "child_fingerprints",
                            json_string(any->child_fingerprints ? any->child_fingerprints : ""));
        json_object_set_new(o, "child_query",
                            any->n_child_queries ? json_string(any->child_queries[0])
                                                 : json_null());
        json_object_set_new(o, "max_n_before", f[i].b ? json_integer(f[i].b->max_n) : json_null());
        json_object_set_new(o, "max_n_after", f[i].a ? json_integer(f[i].a->max_n) : json_null());
        json_array_append_new(finds, o);
    }
    json_object_set_new(root, "before_run", json_integer(b->runs[0].id));
    json_object_set_new(root, "after_run", json_integer(a->runs[0].id));
    json_object_set_new(root, "findings", finds);
    json_object_set_new(root, "statements", shapes);
    json_t *tests = json_array();
    each_test(b, a, test_json, tests);
    json_object_set_new(root, "tests", tests);
    bool ok = json_dumpf(root, out, JSON_INDENT(2)) == 0 && fputc('\n', out) != EOF;
    json_decref(root);
    return ok;
}

/* ---- the command ---- */

static bool load_run(sqlite3 *db, int version, int64_t id, report_data *d, const char *path)
{
    char err[512] = "";

    if (report_load(db, version, id, false, 0, d, err, sizeof(err)) && d->n_runs == 1)
        return true;
    fprintf(stderr, "pgscope diff: %s: %s\n", path, err[0] ? err : "no such run");
    return false;
}

int diff_main(int argc, char **argv)
{
    diff_options o;
    report_data b, a;
    char err[512] = "";
    int version = 0, rc = parse_options(argc, argv, &o);

    if (rc != 0)
        return rc == 1 ? 0 : rc;
    sqlite3 *db = report_open_db(o.db, &version, err, sizeof(err));
    if (!db) {
        fprintf(stderr, "pgscope diff: %s\n", err);
        return 3;
    }
    memset(&b, 0, sizeof(b));
    memset(&a, 0, sizeof(a));
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    bool ok = o.before > 0 || last_two_runs(db, &o.before, &o.after);
    if (!ok)
        fprintf(stderr, "pgscope diff: %s holds fewer than two runs\n", o.db);
    ok =
        ok && load_run(db, version, o.before, &b, o.db) && load_run(db, version, o.after, &a, o.db);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    size_t ns = 0, nf = 0;
    diff_shape *s = ok ? pair_shapes(&b, &a, &ns) : NULL;
    diff_finding *f = ok ? pair_findings(&b, &a, &nf) : NULL;
    if (ok && s && f) {
        if (o.format == OUT_JSON)
            ok = render_json(stdout, &b, &a, s, ns, f, nf);
        else
            render_text(stdout, &b, &a, s, ns, f, nf, &o, o.format == OUT_MARKDOWN);
        ok = ok && fflush(stdout) == 0 && !ferror(stdout);
        rc = ok ? 0 : 3;
    } else {
        rc = 3;
    }
    free(s);
    free(f);
    report_data_free(&b);
    report_data_free(&a);
    return rc;
}
