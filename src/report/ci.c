/* ci.c — what CI systems read, for report, check and diff alike: a list of problems (findings,
 * failed rules) rendered as Markdown (a GitHub step summary or pull-request comment), JUnit XML
 * (one testcase per test, its problems as one failure; a problem of no test is a testcase of
 * its own) and GitHub workflow annotations. */
#include "config.h"

#include "report_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- problems ---- */

const char *report_first_child(const report_nplusone *f)
{
    return f->n_child_queries > 0 && f->child_queries[0] ? f->child_queries[0] : "";
}

void report_problem_of(report_problem *p, const report_nplusone *f)
{
    *p = (report_problem){.type = f->duplicate     ? "duplicate"
                                  : f->insert_loop ? "batch_insert"
                                                   : "n_plus_one",
                          .title = report_kind_name(f),
                          .test = f->test,
                          .parent = f->parent_query,
                          .query = report_first_child(f),
                          .key = f->child_fingerprints,
                          .fix = f->suggestion};
}

void report_problem_of_plan(report_problem *p, const report_plan_finding *f, const char *lead)
{
    bool on = f->relation && f->relation[0]; /* "on tasks: removed ..." */

    *p = (report_problem){.type = "plan",
                          .title = f->kind,
                          .test = f->test,
                          .query = f->query,
                          .key = f->fingerprint};
    snprintf(p->detail, sizeof(p->detail), "%s%s%s%s%s (plan %lld)", lead, on ? "on " : "",
             on ? f->relation : "", on ? ": " : "", f->detail ? f->detail : "",
             (long long)f->plan_id);
}

FILE *report_output_open(const char *cmd, const char *path)
{
    FILE *out = path ? fopen(path, "w") : stdout;

    if (!out)
        fprintf(stderr, "pgscope %s: %s: %s\n", cmd, path, strerror(errno));
    return out;
}

bool report_output_close(const char *cmd, const char *path, FILE *out, bool rendered)
{
    bool written = fflush(out) == 0 && !ferror(out);
    int err = errno;

    if (out != stdout)
        written &= fclose(out) == 0;
    if (!written || !rendered)
        fprintf(stderr, "pgscope %s: %s: %s\n", cmd, path ? path : "standard output",
                written ? "out of memory" : strerror(err ? err : errno));
    return written && rendered;
}

/* ---- markdown ---- */

void report_md_code(FILE *out, const char *s, size_t max)
{
    size_t n = 0;
    bool space = false;

    fputc('`', out);
    for (; s && *s && n + 4 < max; s++) {
        unsigned char c = (unsigned char)*s; /* white space and controls: one space */
        bool ws = c <= ' ' || c == 0x7f;
        if (ws && (space || n == 0))
            continue;
        space = ws;
        n++;
        if (ws)
            fputc(' ', out);
        else if (c == '`')
            fputc('\'', out); /* a backtick would end the span */
        else if (c == '|')
            fputs("\\|", out); /* a pipe would end the cell */
        else
            fputc(c, out);
    }
    fputs(s && *s ? "...`" : "`", out);
}

/* A fenced block that no line of text can close: a fence longer than any run of backticks. */
static void md_block(FILE *out, const char *text)
{
    int run = 0, longest = 0;

    for (const char *c = text; c && *c; c++) {
        run = *c == '`' ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    int fence = longest >= 3 ? longest + 1 : 3;
    fprintf(out, "%.*s\n", fence, "``````````````````````````````");
    fprintf(out, "%s%s", text ? text : "",
            text && text[0] && text[strlen(text) - 1] != '\n' ? "\n" : "");
    fprintf(out, "%.*s\n", fence, "``````````````````````````````");
}

/* Text for a cell or a <summary>: one line, no tags, pipes escaped by report_one_line. */
static void md_plain(FILE *out, const char *s, size_t max)
{
    char line[512];

    report_one_line(s, line, max < sizeof(line) ? max : sizeof(line));
    for (char *c = line; *c; c++)
        fputc(*c == '<' || *c == '>' ? ' ' : *c, out);
}

void report_ci_markdown(FILE *out, const report_problem *p, size_t n)
{
    size_t k = 0;

    fprintf(out, "| # | problem | test | query | detail |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        if (!p[i].failed)
            continue;
        fprintf(out, "| %zu | %s | ", ++k, p[i].title);
        if (p[i].test)
            report_md_code(out, p[i].test, 80);
        fprintf(out, " | ");
        if (p[i].query)
            report_md_code(out, p[i].query, 120);
        fprintf(out, " | ");
        md_plain(out, p[i].detail, 300);
        fprintf(out, " |\n");
    }
    k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!p[i].failed)
            continue;
        k++;
        if (!p[i].fix)
            continue;
        fprintf(out, "\n<details><summary>%zu. %s: ", k, p[i].title);
        md_plain(out, p[i].query, 160);
        fprintf(out, "</summary>\n\n");
        md_block(out, p[i].fix);
        fprintf(out, "\n</details>\n");
    }
}

/* ---- junit ---- */

static void xml_text(FILE *out, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; c && *c; c++) {
        switch (*c) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&apos;", out);
            break;
        default:
            if (*c < 0x20 && *c != '\n' && *c != '\t' && *c != '\r')
                fputc('?', out); /* not allowed in XML 1.0 */
            else
                fputc(*c, out);
        }
    }
}

/* One problem in a failure's body: what, the numbers, the SQL, the fix. */
static void junit_body(FILE *out, const report_problem *p)
{
    xml_text(out, p->title);
    fputs(": ", out);
    xml_text(out, p->detail);
    fputs("\n", out);
    if (p->parent) {
        fputs("parent: ", out);
        xml_text(out, p->parent);
        fputs("\n", out);
    }
    if (p->query) {
        fputs(p->parent ? "child: " : "query: ", out);
        xml_text(out, p->query);
        fputs("\n", out);
    }
    if (p->fix) {
        fputs("\n", out);
        xml_text(out, p->fix);
        fputs("\n", out);
    }
}

static bool same_test(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Whether test t already had its testcase: it is named by an earlier entry of the list. */
static bool named_before(const char *const *tests, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (same_test(tests[j], tests[i]))
            return true;
    return false;
}

/* The statement time of a test in d, in seconds: its testcase's time. */
static double test_seconds(const report_data *d, const char *test)
{
    for (size_t i = 0; i < d->n_tests; i++)
        if (same_test(d->tests[i].name, test))
            return d->tests[i].total_ms / 1000.0;
    return 0;
}

/* A test's testcase: passing, or one failure holding every problem of the test. */
static void junit_test(FILE *out, const report_data *d, const char *test, const report_problem *p,
                       size_t n)
{
    size_t failed = 0;
    const report_problem *first = NULL;

    for (size_t i = 0; i < n; i++) {
        if (p[i].failed && same_test(p[i].test, test)) {
            failed++;
            first = first ? first : &p[i];
        }
    }
    fprintf(out, "    <testcase classname=\"pgscope.tests\" time=\"%.6f\" name=\"",
            test_seconds(d, test));
    xml_text(out, test);
    if (!first) {
        fprintf(out, "\"/>\n");
        return;
    }
    fprintf(out, "\">\n      <failure type=\"%s\" message=\"",
            failed == 1 ? first->type : "several");
    if (failed == 1) {
        xml_text(out, first->title);
        fputs(": ", out);
        xml_text(out, first->detail);
    } else {
        fprintf(out, "%zu problems", failed);
    }
    fprintf(out, "\">");
    for (size_t i = 0, k = 0; i < n; i++) {
        if (!p[i].failed || !same_test(p[i].test, test))
            continue;
        if (failed > 1)
            fprintf(out, "%s%zu. ", k ? "\n" : "", k + 1);
        k++;
        junit_body(out, &p[i]);
    }
    fprintf(out, "</failure>\n    </testcase>\n");
}

/* A problem of no test: its own testcase, named by its kind and SQL. */
static void junit_alone(FILE *out, const report_problem *p)
{
    char name[200];

    report_one_line(p->query ? p->query : p->detail, name, sizeof(name));
    fprintf(out, "    <testcase classname=\"pgscope.%s\" time=\"0\" name=\"", p->type);
    xml_text(out, p->title);
    fputs(": ", out);
    xml_text(out, name);
    if (p->key) {
        fputs(" (", out);
        xml_text(out, p->key);
        fputs(")", out);
    }
    if (!p->failed) {
        fprintf(out, "\"/>\n");
        return;
    }
    fprintf(out, "\">\n      <failure type=\"%s\" message=\"", p->type);
    xml_text(out, p->title);
    fputs(": ", out);
    xml_text(out, p->detail);
    fprintf(out, "\">");
    junit_body(out, p);
    fprintf(out, "</failure>\n    </testcase>\n");
}

/* When the run began, as the format wants it: "2026-12-07T16:47:03", no time zone (UTC). */
static void junit_timestamp(const report_data *d, char *out, size_t cap)
{
    const char *s = d->n_runs > 0 ? d->runs[0].started_at : NULL;

    if (s && strlen(s) >= 19 && s[10] == ' ') {
        snprintf(out, cap, "%.10sT%.8s", s, s + 11);
        return;
    }
    time_t now = time(NULL);
    struct tm tm;
    strftime(out, cap, "%Y-%m-%dT%H:%M:%S", gmtime_r(&now, &tm));
}

/* The suite's properties: the runs it reads and the pgscope that wrote them. */
static void junit_properties(FILE *out, const report_data *d)
{
    fprintf(out, "    <properties>\n");
    for (size_t i = 0; i < d->n_runs; i++) {
        const report_run *r = &d->runs[i];
        fprintf(out, "      <property name=\"run\" value=\"%lld\"/>\n", (long long)r->id);
        if (r->label) {
            fprintf(out, "      <property name=\"run_label\" value=\"");
            xml_text(out, r->label);
            fprintf(out, "\"/>\n");
        }
    }
    if (d->n_runs > 0 && d->runs[0].pgscope_version) {
        fprintf(out, "      <property name=\"pgscope_version\" value=\"");
        xml_text(out, d->runs[0].pgscope_version);
        fprintf(out, "\"/>\n");
    }
    fprintf(out, "    </properties>\n");
}

/* The testcases' names: the run's tests, then tests only a problem names (a baseline's test
 * with no statement now), each once. NULL if memory ran out. */
static const char **junit_tests(const report_data *d, const report_problem *p, size_t n,
                                size_t *count)
{
    const char **names = calloc(d->n_tests + n + 1, sizeof(*names));
    size_t k = 0;

    for (size_t i = 0; names && i < d->n_tests + n; i++) {
        const char *t = i < d->n_tests ? d->tests[i].name : p[i - d->n_tests].test;
        names[k] = t;
        k += t && !named_before(names, k);
    }
    *count = k;
    return names;
}

bool report_ci_junit(FILE *out, const char *suite, const report_data *d, const report_problem *p,
                     size_t n)
{
    size_t n_names = 0, cases = 0, failed = 0;
    const char **names = junit_tests(d, p, n, &n_names);
    char stamp[32], host[256] = "localhost";
    double seconds = 0;

    if (!names)
        return false;
    for (size_t i = 0; i < n_names; i++) {
        cases++;
        for (size_t j = 0; j < n; j++) {
            if (p[j].failed && same_test(p[j].test, names[i])) {
                failed++;
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        cases += !p[i].test;
        failed += !p[i].test && p[i].failed;
    }
    for (size_t i = 0; i < d->n_runs; i++)
        seconds += isfinite(d->runs[i].duration_s) ? d->runs[i].duration_s : 0;
    junit_timestamp(d, stamp, sizeof(stamp));
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    fprintf(out,
            "  <testsuite package=\"pgscope\" id=\"0\" name=\"%s\" timestamp=\"%s\" "
            "hostname=\"",
            suite, stamp);
    xml_text(out, host);
    fprintf(out, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"0\" time=\"%.3f\">\n",
            cases ? cases : 1, failed, seconds);
    junit_properties(out, d);
    for (size_t i = 0; i < n_names; i++)
        junit_test(out, d, names[i], p, n);
    for (size_t i = 0; i < n; i++)
        if (!p[i].test)
            junit_alone(out, &p[i]);
    if (cases == 0)
        fprintf(out,
                "    <testcase classname=\"pgscope\" name=\"no problem found\" time=\"0\"/>\n");
    fprintf(out, "    <system-out>%s: %zu testcase%s, %zu failed</system-out>\n", suite,
            cases ? cases : 1, cases == 1 ? "" : "s", failed);
    fprintf(out, "    <system-err></system-err>\n  </testsuite>\n</testsuites>\n");
    free(names);
    return true;
}

/* ---- GitHub annotations ---- */

/* A workflow command's data: %, CR and LF escaped (and , : in a property). */
static void gh_escape(FILE *out, const char *s, bool property)
{
    for (const char *c = s; c && *c; c++) {
        if (*c == '%')
            fputs("%25", out);
        else if (*c == '\r')
            fputs("%0D", out);
        else if (*c == '\n')
            fputs("%0A", out);
        else if (property && *c == ':')
            fputs("%3A", out);
        else if (property && *c == ',')
            fputs("%2C", out);
        else
            fputc(*c, out);
    }
}

void report_ci_annotations(FILE *out, const char *level, const report_problem *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!p[i].failed)
            continue;
        fprintf(out, "::%s title=pgscope%%3A ", level);
        gh_escape(out, p[i].title, true);
        if (p[i].test) {
            gh_escape(out, " in ", true);
            gh_escape(out, p[i].test, true);
        }
        fputs("::", out);
        gh_escape(out, p[i].detail, false);
        if (p[i].query) {
            gh_escape(out, "\n", false);
            gh_escape(out, p[i].query, false);
        }
        if (p[i].fix) {
            gh_escape(out, "\n\n", false);
            gh_escape(out, p[i].fix, false);
        }
        fputs("\n", out);
    }
}
