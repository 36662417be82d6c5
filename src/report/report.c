/* report.c — `pgscope report`: options, opening the report database read-only, and handing
 * what it holds (a run's report, or one EXPLAIN plan with --plan) to the text or JSON
 * renderer. */
#include "config.h"

#include "pgscope/report.h"

#include "pgscope/store.h"
#include "report_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_DB "./pgscope.db"
#define DEFAULT_LIMIT 20

typedef struct {
    const char *db;
    report_shards shards; /* --db given more than once: every file, merged */
    int64_t run_id;       /* 0: the latest run */
    bool all;
    enum { FMT_TEXT, FMT_JSON, FMT_MARKDOWN, FMT_JUNIT, FMT_HTML } format;
    const char *output; /* --output FILE; NULL: standard output */
    bool github;        /* --annotations github: a warning per finding on standard output */
    int limit;          /* 0: every statement */
    bool limit_given;
    int64_t plan_id; /* --plan: print this plan instead of a report; 0 when not given */
} report_options;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgscope report [OPTIONS]\n\n"
            "Prints what the report database holds about a run: a summary, the N+1 and\n"
            "duplicate queries found, each with its fix, the indexes to create (verified\n"
            "with hypopg first, by the time they would save), the findings of the EXPLAIN\n"
            "plans sampled, most statement time first, then the statements that took the\n"
            "most time.\n\n"
            "Options:\n"
            "  --db FILE              the report database (default %s); given more than\n"
            "                         once (CI shards), the latest run of each file merged\n"
            "  --run ID               report on run ID (default: the latest run)\n"
            "  --all                  merge every run of the file\n"
            "  --format FORMAT        text for people (default), json for programs,\n"
            "                         markdown for a CI step summary or a pull-request\n"
            "                         comment, junit for test reporters (one testcase per\n"
            "                         test, its findings as a failure)\n"
            "                         html one self-contained page (charts, plan trees,\n"
            "                         sortable tables) to open in a browser\n"
            "  --output FILE          write the report there instead of standard output\n"
            "  --annotations github   a GitHub workflow warning per finding, on standard\n"
            "                         output\n"
            "  --limit N              statements, plan findings and index suggestions to\n"
            "                         show (default %d; 0 shows all)\n"
            "  --plan ID              print EXPLAIN plan ID (see the plan numbers in the\n"
            "                         report) as a tree, with its findings\n"
            "  --help                 this text\n",
            DEFAULT_DB, DEFAULT_LIMIT);
}

bool report_parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;

    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *report_option_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int report_parse_args(const char *cmd, int argc, char **argv, void (*print_usage)(FILE *out),
                      int (*option)(int argc, char **argv, int *i, bool *missing, void *ctx),
                      void *ctx)
{
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return 1;
        }
        int rc = option(argc, argv, &i, &missing, ctx);
        if (rc < 0)
            fprintf(stderr, "pgscope %s: %s \"%s\"\n", cmd,
                    missing ? "a value is missing after" : "unknown argument", argv[i]);
        if (rc != 0) {
            fprintf(stderr, "Try `pgscope %s --help`.\n", cmd);
            return 2;
        }
    }
    return 0;
}

int report_format_option(const char *cmd, const char *v, const char *const *names, int n, int *out)
{
    for (int k = 0; k < n; k++) {
        if (strcmp(v, names[k]) == 0) {
            *out = k;
            return 0;
        }
    }
    fprintf(stderr, "pgscope %s: --format: \"%s\" is not one of", cmd, v);
    for (int k = 0; k < n; k++)
        fprintf(stderr, "%s %s", k ? "," : "", names[k]);
    fprintf(stderr, "\n");
    return 2;
}

int report_annotations_option(const char *cmd, const char *v, bool *github)
{
    if (strcmp(v, "github") != 0) {
        fprintf(stderr, "pgscope %s: --annotations: \"%s\" is not github\n", cmd, v);
        return 2;
    }
    *github = true;
    return 0;
}

int report_id_option(const char *cmd, const char *name, const char *v, int64_t *out)
{
    long long n;

    if (!report_parse_int(v, 1, INT64_MAX, &n)) {
        fprintf(stderr, "pgscope %s: %s: \"%s\" is not an id\n", cmd, name, v);
        return 2;
    }
    *out = n;
    return 0;
}

bool report_load_file(const char *cmd, const char *path, int64_t run_id, report_data *d)
{
    char err[512] = "";
    int version = 0;
    sqlite3 *db = report_open_db(path, &version, err, sizeof(err));

    memset(d, 0, sizeof(*d));
    if (!db) {
        fprintf(stderr, "pgscope %s: %s\n", cmd, err);
        return false;
    }
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    bool ok = report_load(db, version, run_id, false, 0, d, err, sizeof(err));
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    if (!ok)
        fprintf(stderr, "pgscope %s: %s: %s\n", cmd, path, err);
    return ok;
}

int report_add_shard(const char *cmd, report_shards *s, const char *path)
{
    if (s->n >= REPORT_MAX_SHARDS) {
        fprintf(stderr, "pgscope %s: --db: at most %d files\n", cmd, REPORT_MAX_SHARDS);
        return 2;
    }
    s->path[s->n++] = path;
    return 0;
}

bool report_load_shards(const char *cmd, const report_shards *s, int64_t run_id, report_data *d)
{
    if (!report_load_file(cmd, s->path[0], run_id, d))
        return false;
    for (int i = 1; i < s->n; i++) {
        report_data more;
        bool ok = report_load_file(cmd, s->path[i], 0, &more) && report_merge(d, &more);
        report_data_free(&more);
        if (!ok) {
            fprintf(stderr, "pgscope %s: %s: cannot merge it\n", cmd, s->path[i]);
            return false;
        }
    }
    return true;
}

bool report_same_finding(const report_nplusone *x, const report_nplusone *y)
{
    return x->duplicate == y->duplicate && x->insert_loop == y->insert_loop &&
           strcmp(x->parent_fingerprint, y->parent_fingerprint) == 0 &&
           strcmp(x->child_fingerprints ? x->child_fingerprints : "",
                  y->child_fingerprints ? y->child_fingerprints : "") == 0;
}

const char *report_kind_name(const report_nplusone *f)
{
    return f->duplicate ? "duplicate query" : f->insert_loop ? "insert loop" : "N+1 loop";
}

void report_one_line(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    bool space = false;

    for (; s && *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s; /* control characters too: no terminal escapes */
        bool ws = c <= ' ' || c == 0x7f || c == '|';
        if (ws && (space || n == 0))
            continue;
        out[n++] = ws ? ' ' : *s;
        space = ws;
    }
    if (s && *s)
        n += (size_t)snprintf(out + n, cap - n, "...");
    out[n] = '\0';
}

/* One option at argv[*i]: 0 taken, 2 bad usage (reason printed), -1 not an option of report. */
static int parse_option(int argc, char **argv, int *i, bool *missing_out, void *ctx)
{
    report_options *o = ctx;
    bool missing = false;
    const char *v;
    long long n;

    if (strcmp(argv[*i], "--all") == 0) {
        o->all = true;
    } else if ((v = report_option_value(argc, argv, i, "--db", &missing))) {
        o->db = o->shards.n == 0 ? v : o->db;
        return report_add_shard("report", &o->shards, v);
    } else if ((v = report_option_value(argc, argv, i, "--run", &missing))) {
        return report_id_option("report", "--run", v, &o->run_id);
    } else if ((v = report_option_value(argc, argv, i, "--plan", &missing))) {
        return report_id_option("report", "--plan", v, &o->plan_id);
    } else if ((v = report_option_value(argc, argv, i, "--format", &missing))) {
        static const char *const names[] = {"text", "json", "markdown", "junit", "html"};
        int k = 0;
        int rc = report_format_option("report", v, names, 5, &k);
        if (rc == 0)
            o->format = k;
        return rc;
    } else if ((v = report_option_value(argc, argv, i, "--output", &missing))) {
        o->output = v;
    } else if ((v = report_option_value(argc, argv, i, "--annotations", &missing))) {
        return report_annotations_option("report", v, &o->github);
    } else if ((v = report_option_value(argc, argv, i, "--limit", &missing))) {
        if (!report_parse_int(v, 0, INT_MAX, &n)) {
            fprintf(stderr, "pgscope report: --limit: \"%s\" is not a count\n", v);
            return 2;
        }
        o->limit = (int)n;
        o->limit_given = true;
    } else {
        *missing_out = missing;
        return -1;
    }
    return 0;
}

/* 0 go on, 1 help printed, 2 bad usage. */
static int parse_options(int argc, char **argv, report_options *o)
{
    *o = (report_options){.db = DEFAULT_DB, .limit = DEFAULT_LIMIT};
    int rc = report_parse_args("report", argc, argv, usage, parse_option, o);
    if (rc != 0)
        return rc;
    /* The page lists at most its cap, and by default as many: the whole table to sort. */
    if (o->format == FMT_HTML &&
        (!o->limit_given || o->limit == 0 || o->limit > REPORT_HTML_MAX_STATEMENTS))
        o->limit = REPORT_HTML_MAX_STATEMENTS;
    if (o->shards.n > 1 && (o->all || o->run_id > 0 || o->plan_id > 0)) {
        fprintf(stderr, "pgscope report: --db more than once (the latest run of each file, "
                        "merged) cannot go with --run, --all or --plan\n");
        return 2;
    }
    if (o->all && o->run_id > 0) {
        fprintf(stderr, "pgscope report: --run and --all cannot go together\n");
        return 2;
    }
    if (o->plan_id > 0 && o->format != FMT_TEXT && o->format != FMT_JSON) {
        fprintf(stderr, "pgscope report: --plan prints text or json\n");
        return 2;
    }
    /* A plan id names one plan of the whole file: a run to look in could only contradict it. */
    if (o->plan_id > 0 && (o->all || o->run_id > 0)) {
        fprintf(stderr, "pgscope report: --plan cannot go with --run or --all\n");
        return 2;
    }
    return 0;
}

/* The file's schema version, or 0 with a reason in err when the file is not a report
 * database this pgscope can read. */
static int schema_version(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int version = 0;
    int rc = sqlite3_prepare_v2(
        db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'", -1, &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    if (rc == SQLITE_NOTADB || (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(db), "no such table")))
        snprintf(err, errlen, "%s is not a pgscope report database", path);
    else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
    else if (version < 1)
        snprintf(err, errlen, "%s is not a pgscope report database (no schema version)", path);
    else if (version > STORE_SCHEMA_VERSION)
        snprintf(err, errlen,
                 "%s was written by a newer pgscope (schema version %d; this one reads up to %d)",
                 path, version, STORE_SCHEMA_VERSION);
    sqlite3_finalize(st);
    return version >= 1 && version <= STORE_SCHEMA_VERSION ? version : 0;
}

sqlite3 *report_open_db(const char *path, int *version, char *err, size_t errlen)
{
    struct stat st;
    sqlite3 *db = NULL;

    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 2000); /* pgscope may be checkpointing right now */
    *version = schema_version(db, path, err, errlen);
    if (*version == 0) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* After rendering: 0, or 1 with the reason when stdout could not take the output. */
static int finish_output(bool rendered)
{
    if (fflush(stdout) != 0 || ferror(stdout) || !rendered) {
        fprintf(stderr, "pgscope report: cannot write the report: %s\n",
                rendered ? strerror(errno) : "out of memory");
        return 1;
    }
    return 0;
}

/* The report in the format asked for, into --output or standard output; the annotations on
 * standard output. 0, or 1 with the reason. */
/* A plan's stored EXPLAIN JSON for the HTML report's trees. */
typedef struct {
    sqlite3 *db;
    int version;
} plan_source;

static char *plan_json(int64_t id, void *ctx)
{
    const plan_source *src = ctx;
    report_plan_detail p;
    char err[256];

    bool ok = report_load_plan(src->db, src->version, id, &p, err, sizeof(err));
    char *json = ok && p.text ? strdup(p.text) : NULL;
    report_plan_detail_free(&p);
    return json;
}

static int render(const report_options *o, const report_data *d, const report_html_plans *plans)
{
    FILE *out = report_output_open("report", o->output);
    report_problem *p = NULL;
    size_t n = 0;
    bool ok = out != NULL;

    if (!out)
        return 1;
    if (o->github || o->format == FMT_JUNIT) {
        n = report_problems(d, &p);
        ok = p != NULL;
    }
    if (ok && o->github)
        report_ci_annotations(stdout, "warning", p, n);
    if (ok && o->format == FMT_JSON)
        ok = report_render_json(out, d);
    else if (ok && o->format == FMT_MARKDOWN)
        ok = report_render_markdown(out, d);
    else if (ok && o->format == FMT_JUNIT)
        ok = report_ci_junit(out, "pgscope report", d, p, n);
    else if (ok && o->format == FMT_HTML)
        ok = report_render_html(out, d, plans, NULL);
    else if (ok)
        ok = report_render_text(out, d, o->db);
    free(p);
    return report_output_close("report", o->output, out, ok) ? 0 : 1;
}

/* `pgscope report --plan ID`: one plan, its tree and its findings. */
static int report_show_plan(sqlite3 *db, int version, const report_options *o)
{
    report_plan_detail p;
    char err[512] = "";

    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL); /* the plan and its findings together */
    bool ok = report_load_plan(db, version, o->plan_id, &p, err, sizeof(err));
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (!ok) {
        fprintf(stderr, "pgscope report: %s: %s\n", o->db, err);
        report_plan_detail_free(&p);
        return 1;
    }
    ok = o->format == FMT_JSON ? report_render_plan_json(stdout, &p)
                               : report_render_plan_text(stdout, &p);
    report_plan_detail_free(&p);
    return finish_output(ok);
}

/* The report of a run, or of all runs. */
/* The latest runs of several files (CI shards), merged into one report. */
static int report_show_shards(const report_options *o)
{
    report_data d;

    if (!report_load_shards("report", &o->shards, 0, &d)) {
        report_data_free(&d);
        return 1;
    }
    d.limit = o->limit;
    int rc = render(o, &d, NULL); /* plans are in their own files: no trees */
    report_data_free(&d);
    return rc;
}

static int report_show_runs(sqlite3 *db, int version, const report_options *o)
{
    report_data d;
    char err[512] = "";

    /* One read transaction: the runs and statements come from the same snapshot even while
     * pgscope writes. */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    bool ok = report_load(db, version, o->run_id, o->all, o->limit, &d, err, sizeof(err));
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (!ok) {
        fprintf(stderr, "pgscope report: %s: %s\n", o->db, err);
        report_data_free(&d);
        return 1;
    }
    plan_source src = {db, version};
    report_html_plans plans = {plan_json, &src};
    int rc = render(o, &d, &plans);
    report_data_free(&d);
    return rc;
}

int report_main(int argc, char **argv)
{
    report_options o;
    char err[512] = "";
    int version = 0;

    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (o.shards.n > 1)
        return report_show_shards(&o);
    sqlite3 *db = report_open_db(o.db, &version, err, sizeof(err));
    if (!db) {
        fprintf(stderr, "pgscope report: %s\n", err);
        return 1;
    }
    rc = o.plan_id > 0 ? report_show_plan(db, version, &o) : report_show_runs(db, version, &o);
    sqlite3_close(db);
    return rc;
}
