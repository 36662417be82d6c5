/* check.c — `pgscope check`: the CI gate. The findings of a run (the latest by default) against
 * the rules; exit 1 when one fails. The rules of this release need no baseline: no proven N+1
 * loop, no duplicate query (and, when asked, no insert loop) repeated N times or more in one unit
 * of work. Output for people (text), for a CI step summary or a pull-request comment (markdown),
 * for test reporters (junit), and GitHub workflow annotations. */
#include "config.h"

#include "pgscope/report.h"

#include "report_int.h"

#include "pgscope/config.h"
#include "pgscope/explain.h"
#include "pgscope/stats.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DB "./pgscope.db"
#define DEFAULT_DUPLICATE_MIN 10
#define DEFAULT_LATENCY_RISE 10       /* percent */
#define DEFAULT_LATENCY_MIN_CALLS 100 /* in each run */
#define LATENCY_ALPHA 0.01            /* the largest p-value that counts as a real slowdown */

typedef enum { OUT_TEXT, OUT_MARKDOWN, OUT_JUNIT, OUT_HTML } check_format;

#define PLAN_RULES 16

/* A plan finding kind that fails, from its size on (KIND:MIN; 0 without). */
typedef struct {
    char kind[32];
    double min;
} check_plan_rule;

typedef struct {
    const char *db;
    report_shards shards; /* --db given more than once: every file's latest run, merged */
    int64_t run_id;       /* 0: the latest run */
    check_format format;
    const char *output;        /* --output FILE; NULL: standard output */
    bool github;               /* --annotations github */
    bool suspected;            /* --fail-on-suspected: unproven N+1 loops fail too */
    int duplicate_min;         /* a duplicate repeated this often in one unit fails; 0 never */
    int insert_min;            /* likewise an insert loop; 0 never (the default) */
    const char *baseline_db;   /* --baseline-db: the baseline's file (default: --db) */
    const char *baseline_file; /* --baseline: a file pgscope baseline save wrote */
    int64_t baseline_run;      /* --baseline-run: 0 with --baseline-db: its latest run */
    int extra;                 /* --max-extra-statements: a test may issue this many more */
    int extra_pct;             /* ... or this percent of its baseline more; -1: a count */
    int latency_rise;          /* --latency-rise: percent the mean or p95 may rise; 0 no rule */
    int latency_min_calls;     /* --latency-min-calls: calls a shape needs in both runs */
    check_plan_rule plan[PLAN_RULES]; /* --fail-on-plan: kinds that fail when new */
    int n_plan;
} check_options;

/* A finding and the rule it fails, NULL when it passes. */
typedef struct {
    const report_nplusone *f;
    const char *rule;
} check_item;

/* A failure that is no finding: a test over its statements, a slower shape, a new plan finding. */
typedef struct {
    const char *rule; /* "statements", "latency", "plan" */
    const char *what; /* "more statements", "slower statement", "new plan finding" */
    const char *who;  /* the test, or the statement's text */
    const char *test; /* the test it belongs to, or NULL */
    char detail[400];
} check_other;

/* What the rules made of a run: every finding with the rule it fails (if any), and the other
 * failures. */
typedef struct {
    const report_data *d;
    check_item *items; /* one per finding */
    size_t n, failed;  /* failed: findings and others that fail */
    check_other *other;
    size_t n_other, cap_other;
} check_result;

/* A new other failure, or NULL when the list is full. */
static check_other *other_add(check_result *r, const char *rule, const char *what, const char *who,
                              const char *test)
{
    if (r->n_other >= r->cap_other)
        return NULL;
    check_other *x = &r->other[r->n_other++];
    *x = (check_other){.rule = rule, .what = what, .who = who ? who : "", .test = test};
    return x;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgscope check [OPTIONS]\n\n"
            "The CI gate: checks a run's findings against the rules and exits 1 when one\n"
            "fails. Rules: no proven N+1 loop; no duplicate query repeated N times or more\n"
            "in one unit of work; optionally no insert loop of N or more.\n\n"
            "Options:\n"
            "  --db FILE                the report database (default %s); more than once\n"
            "                           (CI shards): the latest run of each, merged\n"
            "  --run ID                 check run ID (default: the latest run)\n"
            "  --format text|markdown|junit|html\n"
            "                           text for people (default), markdown for a CI step\n"
            "                           summary or a pull-request comment, junit (XML) for\n"
            "                           test reporters: one testcase per test, html: the\n"
            "                           run's report page with the verdict at its top\n"
            "  --output FILE            write the output there instead of standard output\n"
            "  --annotations github     also print GitHub workflow annotations (::error)\n"
            "                           on standard output, one per failed rule\n"
            "  --duplicate-min N        duplicates repeated N times or more fail (default %d;\n"
            "                           0: duplicates never fail)\n"
            "  --insert-loop-min N      insert loops of N or more INSERTs fail (default 0:\n"
            "                           never)\n"
            "  --fail-on-suspected      unproven (suspected) N+1 loops fail too\n"
            "  --baseline-run ID        compare with run ID (of --baseline-db, or --db): only\n"
            "                           findings it did not have fail, and a test fails when\n"
            "                           it issues more statements than there\n"
            "  --baseline-db FILE       the baseline's report database (default: --db; its\n"
            "                           latest run unless --baseline-run)\n"
            "  --baseline FILE          the baseline as `pgscope baseline save` wrote it\n"
            "  --max-extra-statements N statements a test may add over its baseline (default 0);\n"
            "                           N%% a percent of its baseline's (rounded down)\n"
            "  --latency-rise PCT       with a baseline: a shape whose median, and mean or p95,\n"
            "                           rose more than PCT percent fails when a one-sided\n"
            "                           Mann-Whitney U test on the two latency histograms\n"
            "                           gives p < 0.01\n"
            "                           (default 10; 0: no timing rule)\n"
            "  --latency-min-calls N    calls a shape needs in both runs for the timing rule\n"
            "                           (default 100)\n"
            "  --fail-on-plan KINDS     plan findings of these kinds (comma-separated, e.g.\n"
            "                           seq_scan_filter,sort_spill) fail, with a baseline\n"
            "                           only those it did not have; KIND:MIN only from that\n"
            "                           size on, in the kind's unit (seq_scan_filter:100000:\n"
            "                           scans that removed 100,000 rows or more, so only\n"
            "                           tables at least that large)\n"
            "  --config FILE            the rules and baseline from the [check] section of\n"
            "                           this ini file (keys as the options above, with _:\n"
            "                           duplicate_min = 5); the options given win\n"
            "  --help                   this text\n\n"
            "Exit status: 0 every rule passed, 1 a rule failed, 2 bad usage, 3 the report\n"
            "database could not be read or the output not written.\n",
            DEFAULT_DB, DEFAULT_DUPLICATE_MIN);
}

/* ---- options ---- */

static int count_option(const char *name, const char *v, int *out)
{
    long long n;

    if (!report_parse_int(v, 0, INT_MAX, &n)) {
        fprintf(stderr, "pgscope check: %s: \"%s\" is not a count\n", name, v);
        return 2;
    }
    *out = (int)n;
    return 0;
}

/* --max-extra-statements N or N%. */
static int extra_option(const char *v, check_options *o)
{
    size_t n = strlen(v);
    char count[32];

    if (n == 0 || n >= sizeof(count) || v[n - 1] != '%') {
        o->extra_pct = -1;
        return count_option("--max-extra-statements", v, &o->extra);
    }
    snprintf(count, sizeof(count), "%.*s", (int)(n - 1), v);
    return count_option("--max-extra-statements", count, &o->extra_pct);
}

static int format_option(const char *v, check_options *o)
{
    static const char *const names[] = {"text", "markdown", "junit", "html"};
    int k = 0;
    int rc = report_format_option("check", v, names, 4, &k);

    o->format = rc == 0 ? (check_format)k : o->format;
    return rc;
}

static bool known_kind(const char *kind)
{
    for (const char *const *k = explain_finding_kinds; *k; k++)
        if (strcmp(*k, kind) == 0)
            return true;
    return false;
}

/* --fail-on-plan KIND[:MIN],...: each kind one the plan analysis reports, MIN a size in the
 * kind's unit (magnitude). */
static int plan_option(const char *value, check_options *o)
{
    char v[512];
    size_t n = 0;

    for (const char *c = value; *c && n + 1 < sizeof(v); c++) /* "a:1, b" as "a:1,b" */
        if (!isspace((unsigned char)*c))
            v[n++] = *c;
    v[n] = '\0';
    o->n_plan = 0; /* the last list given wins: the flag over the file's */
    for (const char *k = v; *k;) {
        size_t len = strcspn(k, ","), name = strcspn(k, ":,");
        char min[32] = "";
        check_plan_rule *r = o->n_plan < PLAN_RULES ? &o->plan[o->n_plan++] : NULL;
        if (!r || name >= sizeof(r->kind) || (len > name && len - name - 1 >= sizeof(min))) {
            fprintf(stderr, "pgscope check: --fail-on-plan: \"%s\": too many or too long\n", v);
            return 2;
        }
        snprintf(r->kind, sizeof(r->kind), "%.*s", (int)name, k);
        if (len > name)
            snprintf(min, sizeof(min), "%.*s", (int)(len - name - 1), k + name + 1);
        char *end = min;
        r->min = len > name ? strtod(min, &end) : 0;
        if (!known_kind(r->kind) || *end != '\0' || (len > name && end == min) || !(r->min >= 0)) {
            fprintf(stderr,
                    "pgscope check: --fail-on-plan: \"%.*s\" is not KIND or KIND:MIN (kinds:",
                    (int)len, k);
            for (const char *const *kind = explain_finding_kinds; *kind; kind++)
                fprintf(stderr, " %s", *kind);
            fprintf(stderr, ")\n");
            return 2;
        }
        k += len + (k[len] == ',');
    }
    return 0;
}

/* One option at argv[*i]: 0 taken, 2 bad usage (reason printed), -1 not an option of check. */
static int parse_option(int argc, char **argv, int *i, bool *missing_out, void *ctx)
{
    check_options *o = ctx;
    bool missing = false;
    const char *v;

    if (strcmp(argv[*i], "--fail-on-suspected") == 0) {
        o->suspected = true;
    } else if (report_option_value(argc, argv, i, "--config", &missing)) {
        /* read before the flags (read_config) */
    } else if ((v = report_option_value(argc, argv, i, "--db", &missing))) {
        o->db = o->shards.n == 0 ? v : o->db;
        return report_add_shard("check", &o->shards, v);
    } else if ((v = report_option_value(argc, argv, i, "--run", &missing))) {
        return report_id_option("check", "--run", v, &o->run_id);
    } else if ((v = report_option_value(argc, argv, i, "--format", &missing))) {
        return format_option(v, o);
    } else if ((v = report_option_value(argc, argv, i, "--output", &missing))) {
        o->output = v;
    } else if ((v = report_option_value(argc, argv, i, "--annotations", &missing))) {
        return report_annotations_option("check", v, &o->github);
    } else if ((v = report_option_value(argc, argv, i, "--duplicate-min", &missing))) {
        return count_option("--duplicate-min", v, &o->duplicate_min);
    } else if ((v = report_option_value(argc, argv, i, "--insert-loop-min", &missing))) {
        return count_option("--insert-loop-min", v, &o->insert_min);
    } else if ((v = report_option_value(argc, argv, i, "--fail-on-plan", &missing))) {
        return plan_option(v, o);
    } else if ((v = report_option_value(argc, argv, i, "--latency-rise", &missing))) {
        return count_option("--latency-rise", v, &o->latency_rise);
    } else if ((v = report_option_value(argc, argv, i, "--latency-min-calls", &missing))) {
        return count_option("--latency-min-calls", v, &o->latency_min_calls);
    } else if ((v = report_option_value(argc, argv, i, "--max-extra-statements", &missing))) {
        return extra_option(v, o);
    } else if ((v = report_option_value(argc, argv, i, "--baseline-run", &missing))) {
        return report_id_option("check", "--baseline-run", v, &o->baseline_run);
    } else if ((v = report_option_value(argc, argv, i, "--baseline", &missing))) {
        o->baseline_file = v;
    } else if ((v = report_option_value(argc, argv, i, "--baseline-db", &missing))) {
        o->baseline_db = v;
    } else {
        *missing_out = missing;
        return -1;
    }
    return 0;
}

/* 0 go on, 1 help printed, 2 bad usage. */
/* The keys of the ini file's [check] section: the rules and the baseline, named as their flags
 * with '_' for '-'. */
static const char *const FILE_KEYS[] = {"duplicate_min",
                                        "insert_loop_min",
                                        "fail_on_suspected",
                                        "max_extra_statements",
                                        "latency_rise",
                                        "latency_min_calls",
                                        "fail_on_plan",
                                        "baseline",
                                        "baseline_db",
                                        "baseline_run",
                                        NULL};

/* One key of [check], taken as its flag would be. */
static bool file_key(const char *key, const char *value, void *ctx, char *why, size_t whylen)
{
    char flag[64] = "--";
    const char *const *k = FILE_KEYS;

    while (*k && strcmp(*k, key) != 0)
        k++;
    if (!*k || strlen(key) + 3 > sizeof(flag)) {
        snprintf(why, whylen, "unknown setting \"%s\" in [check]", key);
        return false;
    }
    for (size_t i = 0; key[i]; i++)
        flag[i + 2] = key[i] == '_' ? '-' : key[i];
    if (strcmp(key, "fail_on_suspected") == 0) {
        bool on = strcmp(value, "on") == 0 || strcmp(value, "true") == 0;
        if (!on && strcmp(value, "off") != 0 && strcmp(value, "false") != 0) {
            snprintf(why, whylen, "fail_on_suspected: \"%s\" is not on or off", value);
            return false;
        }
        ((check_options *)ctx)->suspected = on;
        return true;
    }
    char *args[2] = {flag, (char *)value};
    int i = 0;
    bool missing = false;
    if (parse_option(2, args, &i, &missing, ctx) == 0)
        return true;
    snprintf(why, whylen, "%s: bad value \"%s\"", key, value);
    return false;
}

/* The file of --config, if any: its [check] section before the flags, which win. */
static int read_config(int argc, char **argv, check_options *o)
{
    char err[512];

    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v = report_option_value(argc, argv, &i, "--config", &missing);
        if (v && !config_ini_read(v, "check", file_key, o, err, sizeof(err))) {
            fprintf(stderr, "pgscope check: %s\n", err);
            return 2;
        }
    }
    return 0;
}

static int parse_options(int argc, char **argv, check_options *o)
{
    *o = (check_options){.db = DEFAULT_DB,
                         .duplicate_min = DEFAULT_DUPLICATE_MIN,
                         .latency_rise = DEFAULT_LATENCY_RISE,
                         .latency_min_calls = DEFAULT_LATENCY_MIN_CALLS,
                         .extra_pct = -1};
    int rc = read_config(argc, argv, o);
    return rc ? rc : report_parse_args("check", argc, argv, usage, parse_option, o);
}

/* ---- the rules ---- */

/* The rule f fails, or NULL. With a baseline, a finding it already had fails nothing. */
static const char *rule_of(const report_nplusone *f, const report_data *base,
                           const check_options *o)
{
    for (size_t i = 0; base && i < base->n_findings; i++)
        if (report_same_finding(f, &base->findings[i]))
            return NULL;
    if (f->duplicate)
        return o->duplicate_min > 0 && f->max_n >= o->duplicate_min ? "duplicate" : NULL;
    if (f->insert_loop)
        return o->insert_min > 0 && f->max_n >= o->insert_min ? "batch_insert" : NULL;
    return f->confirmed || o->suspected ? "n_plus_one" : NULL;
}

/* Tests that issued more statements than in the baseline. */
static void test_failures(const report_data *base, const check_options *o, check_result *r)
{
    const report_data *d = r->d;

    for (size_t i = 0; base && i < d->n_tests; i++)
        for (size_t j = 0; j < base->n_tests; j++) {
            const report_test *t = &d->tests[i];
            int64_t before = base->tests[j].statements;
            check_other *x;
            int64_t allowed = o->extra_pct >= 0 ? before * o->extra_pct / 100 : o->extra;
            if (strcmp(t->name, base->tests[j].name) != 0 || t->statements <= before + allowed ||
                !(x = other_add(r, "statements", "more statements", t->name, t->name)))
                continue;
            snprintf(
                x->detail, sizeof(x->detail),
                "%lld statements, %lld in the baseline (+%lld, %+.1f%%)", (long long)t->statements,
                (long long)before, (long long)(t->statements - before),
                before > 0 ? 100.0 * (double)(t->statements - before) / (double)before : 100.0);
        }
}

/* The one-sided p-value that latencies in b are not larger than in a: the Mann-Whitney U test
 * on the two histograms, each bucket a group of ties (its values are within 1% of each other),
 * normal approximation with the tie correction and a continuity correction. */
static double mann_whitney_p(const stats_hist *a, const stats_hist *b)
{
    double na = 0, nb = 0, u = 0, below = 0, ties = 0;

    for (int i = 0; i < STATS_HIST_BUCKETS; i++) {
        double ai = a->buckets[i], bi = b->buckets[i], t = ai + bi;
        u += bi * (below + ai / 2.0); /* pairs where b's value is larger, ties half */
        below += ai;
        na += ai;
        nb += bi;
        ties += t * t * t - t;
    }
    double n = na + nb;
    if (na < 1 || nb < 1 || n < 3)
        return 1.0;
    double var = na * nb / 12.0 * ((n + 1) - ties / (n * (n - 1)));
    if (!(var > 0))
        return 1.0;
    double z = (u - na * nb / 2.0 - 0.5) / sqrt(var);
    return 0.5 * erfc(z / sqrt(2.0));
}

static double rise(double before, double after)
{
    return before > 0 && isfinite(before) && isfinite(after) ? after / before - 1.0 : 0.0;
}

/* Shapes whose mean or p95, and median, rose beyond the allowance, with enough calls in both
 * runs and a difference no chance would give (p < LATENCY_ALPHA). */
static void slow_shapes(const report_data *base, const check_options *o, check_result *r)
{
    const report_data *d = r->d;
    double allowed = o->latency_rise / 100.0;

    for (size_t i = 0; base && o->latency_rise > 0 && i < d->n_stmts; i++) {
        const report_statement *s = &d->stmts[i];
        if (!s->hist || s->calls < o->latency_min_calls)
            continue;
        for (size_t j = 0; j < base->n_stmts; j++) {
            const report_statement *b = &base->stmts[j];
            if (!report_same_statement(s, b) || !b->hist || b->calls < o->latency_min_calls)
                continue;
            /* the median too: a few stalls of a loaded CI machine move the mean and the p95 of
             * a fast statement, not its median */
            if (rise(b->p50_ms, s->p50_ms) > allowed &&
                (rise(b->mean_ms, s->mean_ms) > allowed || rise(b->p95_ms, s->p95_ms) > allowed)) {
                double p = mann_whitney_p(b->hist, s->hist);
                check_other *x = p < LATENCY_ALPHA
                                     ? other_add(r, "latency", "slower statement", s->query, NULL)
                                     : NULL;
                if (x)
                    snprintf(x->detail, sizeof(x->detail),
                             "median %.3f -> %.3f ms (%+.1f%%), mean %.3f -> %.3f ms (%+.1f%%), "
                             "p95 %.3f -> %.3f ms (%+.1f%%), %lld -> %lld calls; one-sided "
                             "Mann-Whitney U test on the latency histograms: p = %.2g",
                             b->p50_ms, s->p50_ms, 100 * rise(b->p50_ms, s->p50_ms), b->mean_ms,
                             s->mean_ms, 100 * rise(b->mean_ms, s->mean_ms), b->p95_ms, s->p95_ms,
                             100 * rise(b->p95_ms, s->p95_ms), (long long)b->calls,
                             (long long)s->calls, p);
            }
            break;
        }
    }
}

/* Whether a rule of --fail-on-plan takes f: its kind, at least its size. */
static bool plan_rule_takes(const check_options *o, const report_plan_finding *f)
{
    for (int i = 0; i < o->n_plan; i++)
        if (strcmp(o->plan[i].kind, f->kind) == 0 && f->magnitude >= o->plan[i].min)
            return true;
    return false;
}

/* Plan findings of the kinds asked for (--fail-on-plan) that the baseline did not have. */
static void plan_failures(const report_data *base, const check_options *o, check_result *r)
{
    const report_data *d = r->d;

    for (size_t i = 0; o->n_plan > 0 && i < d->n_plan_findings; i++) {
        const report_plan_finding *f = &d->plan_findings[i];
        bool known = false;
        for (size_t j = 0; base && j < base->n_plan_findings && !known; j++) {
            const report_plan_finding *b = &base->plan_findings[j];
            known = strcmp(b->fingerprint, f->fingerprint) == 0 && strcmp(b->kind, f->kind) == 0 &&
                    strcmp(b->relation ? b->relation : "", f->relation ? f->relation : "") == 0;
        }
        check_other *x = !known && plan_rule_takes(o, f)
                             ? other_add(r, "plan", "new plan finding", f->query, f->test)
                             : NULL;
        if (x)
            snprintf(x->detail, sizeof(x->detail), "%s on %s: %s (plan %lld)", f->kind,
                     f->relation && f->relation[0] ? f->relation : "-", f->detail ? f->detail : "",
                     (long long)f->plan_id);
    }
}

/* ---- text ---- */

static void put_indented(FILE *out, const char *text, const char *indent)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        fprintf(out, "%s%.*s\n", indent, len, line);
        line += len + (end != NULL);
    }
}

static void render_text(FILE *out, const check_result *res, const check_options *o)
{
    const report_data *d = res->d;
    const check_item *items = res->items;
    size_t n = res->n, failed = res->failed, k = 0;
    const report_run *r = d->n_runs > 0 ? &d->runs[d->n_runs - 1] : NULL;

    if (failed == 0)
        fprintf(out, "pgscope check: passed (run %lld): no proven N+1 loop",
                r ? (long long)r->id : 0LL);
    else
        fprintf(out, "pgscope check: FAILED, %zu problem%s (run %lld)", failed,
                failed == 1 ? "" : "s", r ? (long long)r->id : 0LL);
    if (failed == 0 && o->duplicate_min > 0)
        fprintf(out, ", no duplicate repeated %d times or more", o->duplicate_min);
    fprintf(out, "\n");
    for (size_t i = 0; i < res->n_other; i++) {
        const check_other *x = &res->other[i];
        if (strcmp(x->rule, "statements") == 0)
            fprintf(out, "\n%zu. test %s (rule statements): %s\n", ++k, x->who, x->detail);
        else
            fprintf(out, "\n%zu. %s (rule %s): %s\n   %s\n", ++k, x->what, x->rule, x->who,
                    x->detail);
    }
    for (size_t i = 0; i < n; i++) {
        const report_nplusone *f = items[i].f;
        if (!items[i].rule)
            continue;
        fprintf(out, "\n%zu. %s (rule %s): N max %lld, %lld occurrence%s, saving ~%.3f ms\n", ++k,
                report_kind_name(f), items[i].rule, (long long)f->max_n, (long long)f->occurrences,
                f->occurrences == 1 ? "" : "s", f->saving_ms);
        if (f->test)
            fprintf(out, "   test:   %s\n", f->test);
        if (f->parent_query)
            fprintf(out, "   parent: %s\n", f->parent_query);
        fprintf(out, "   %s  %s\n", f->parent_query ? "child: " : "query:", report_first_child(f));
        put_indented(out, f->suggestion, "   | ");
    }
}

/* ---- markdown, junit, annotations ---- */

static void render_markdown(FILE *out, const check_result *res, const report_problem *p)
{
    const report_data *d = res->d;
    const report_run *r = d->n_runs > 0 ? &d->runs[d->n_runs - 1] : NULL;
    long long run = r ? (long long)r->id : 0LL;

    if (res->failed == 0) {
        fprintf(out, "### :white_check_mark: pgscope check passed (run %lld)\n\n", run);
        fprintf(out, "No proven N+1 loop and no duplicate query over the limit.\n");
        return;
    }
    fprintf(out, "### :x: pgscope check failed: %zu problem%s (run %lld)\n\n", res->failed,
            res->failed == 1 ? "" : "s", run);
    report_ci_markdown(out, p, res->n_other + res->n);
}

/* The rules in force, in words, for the HTML page's gate. */
static void rules_text(const check_options *o, bool with_base, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "rules: no %sN+1 loop", o->suspected ? "" : "proven ");
    size_t k = n > 0 && (size_t)n < cap ? (size_t)n : cap - 1;

    if (o->duplicate_min > 0)
        k += (size_t)snprintf(buf + k, cap - k, ", no duplicate repeated %d times or more",
                              o->duplicate_min);
    if (o->insert_min > 0 && k < cap)
        k += (size_t)snprintf(buf + k, cap - k, ", no insert loop of %d or more", o->insert_min);
    if (with_base && k < cap)
        k += (size_t)snprintf(buf + k, cap - k,
                              "; against the baseline: no new finding, at most %d%s more "
                              "statements per test, no shape %d%% slower (p < 0.01)",
                              o->extra_pct >= 0 ? o->extra_pct : o->extra,
                              o->extra_pct >= 0 ? "%" : "", o->latency_rise);
    for (int i = 0; i < o->n_plan && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s",
                              i ? "," : "; failing plan findings: ", o->plan[i].kind);
}

/* Every failed rule, then every finding (passing ones too, for JUnit), as CI problems. */
static void problems_of(const check_result *res, report_problem *p)
{
    size_t k = 0;

    for (size_t i = 0; i < res->n_other; i++) {
        const check_other *x = &res->other[i];
        bool by_test = strcmp(x->rule, "statements") == 0;
        p[k] = (report_problem){.type = x->rule,
                                .title = x->what,
                                .test = x->test,
                                .query = by_test ? NULL : x->who,
                                .failed = true};
        snprintf(p[k++].detail, sizeof(p[0].detail), "%s", x->detail);
    }
    for (size_t i = 0; i < res->n; i++) {
        const report_nplusone *f = res->items[i].f;
        report_problem_of(&p[k], f);
        p[k].failed = res->items[i].rule != NULL;
        snprintf(p[k++].detail, sizeof(p[0].detail),
                 "rule %s: N max %lld, %lld occurrence%s, saving %.3f ms",
                 res->items[i].rule ? res->items[i].rule : "none", (long long)f->max_n,
                 (long long)f->occurrences, f->occurrences == 1 ? "" : "s", f->saving_ms);
    }
}

/* ---- the command ---- */

/* The run's report page with the gate's verdict at its top (no plan trees: the runs may be
 * several files; pgscope report --format html has them). */
static bool check_html(FILE *out, const check_result *res, const report_problem *p,
                       const check_options *o, bool with_base)
{
    char rules[512];

    rules_text(o, with_base, rules, sizeof(rules));
    report_gate gate = {p, res->n_other + res->n, rules};
    return report_render_html(out, res->d, NULL, &gate);
}

static int run_check(const report_data *d, const report_data *base, const check_options *o)
{
    check_result res = {.d = d, .n = d->n_findings};

    res.items = calloc(d->n_findings ? d->n_findings : 1, sizeof(*res.items));
    res.cap_other = d->n_tests + d->n_stmts + d->n_plan_findings;
    res.other = calloc(res.cap_other ? res.cap_other : 1, sizeof(*res.other));
    if (!res.items || !res.other) {
        fprintf(stderr, "pgscope check: out of memory\n");
        free(res.items);
        free(res.other);
        return 3;
    }
    for (size_t i = 0; i < d->n_findings; i++) {
        res.items[i].f = &d->findings[i];
        res.items[i].rule = rule_of(&d->findings[i], base, o);
        res.failed += res.items[i].rule != NULL;
    }
    test_failures(base, o, &res);
    slow_shapes(base, o, &res);
    plan_failures(base, o, &res);
    res.failed += res.n_other;
    report_problem *p = calloc(res.n_other + res.n + 1, sizeof(*p));
    FILE *out = p ? report_output_open("check", o->output) : NULL;
    bool written = out != NULL;
    if (out) {
        problems_of(&res, p);
        if (o->github)
            report_ci_annotations(stdout, "error", p, res.n_other + res.n);
        if (o->format == OUT_MARKDOWN)
            render_markdown(out, &res, p);
        else if (o->format == OUT_JUNIT)
            written = report_ci_junit(out, "pgscope check", d, p, res.n_other + res.n);
        else if (o->format == OUT_HTML)
            written = check_html(out, &res, p, o, base != NULL);
        else
            render_text(out, &res, o);
        written = report_output_close("check", o->output, out, written);
    } else if (!p) {
        fprintf(stderr, "pgscope check: out of memory\n");
    }
    free(p);
    free(res.items);
    free(res.other);
    return !written ? 3 : res.failed > 0 ? 1 : 0;
}

int check_main(int argc, char **argv)
{
    check_options o;
    report_data d, base;
    bool with_base;

    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    with_base = o.baseline_db || o.baseline_run > 0 || o.baseline_file;
    memset(&base, 0, sizeof(base));
    if (o.shards.n == 0)
        report_add_shard("check", &o.shards, o.db);
    bool ok = report_load_shards("check", &o.shards, o.run_id, &d);
    if (ok && o.baseline_file)
        ok = report_load_baseline(o.baseline_file, &base);
    else if (ok && with_base)
        ok = report_load_file("check", o.baseline_db ? o.baseline_db : o.db, o.baseline_run, &base);
    rc = ok ? run_check(&d, with_base ? &base : NULL, &o) : 3;
    report_data_free(&d);
    report_data_free(&base);
    return rc;
}
