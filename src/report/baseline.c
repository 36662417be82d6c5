/* baseline.c — `pgscope baseline save`: a run's figures in a small JSON file meant to be committed
 * next to the tests, and its reading back for `pgscope check --baseline FILE`. What a baseline
 * holds is what check compares: the findings (their keys), the statements per test, and per
 * statement shape its calls, latency figures and histogram. */
#include "config.h"

#include "pgscope/report.h"

#include "pgscope/stats.h"
#include "report_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BASELINE_FORMAT 1
#define DEFAULT_DB "./pgscope.db"
#define DEFAULT_OUTPUT "./pgscope-baseline.json"

typedef struct {
    const char *db, *output;
    int64_t run_id;
} baseline_options;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pgscope baseline save [OPTIONS]\n\n"
            "Writes a run's figures to a small JSON file to commit next to the tests, for\n"
            "`pgscope check --baseline FILE`: its findings, its statements per test, and per\n"
            "statement shape its calls, latency and latency histogram.\n\n"
            "Options:\n"
            "  --db FILE       the report database (default %s)\n"
            "  --run ID        the run (default: the latest)\n"
            "  --output FILE   where to write (default %s; - for standard output)\n"
            "  --help          this text\n\n"
            "Exit status: 0 written, 2 bad usage, 3 the database could not be read or the file\n"
            "not written.\n",
            DEFAULT_DB, DEFAULT_OUTPUT);
}

static int parse_option(int argc, char **argv, int *i, bool *missing_out, void *ctx)
{
    baseline_options *o = ctx;
    bool missing = false;
    const char *v;

    if ((v = report_option_value(argc, argv, i, "--db", &missing)))
        o->db = v;
    else if ((v = report_option_value(argc, argv, i, "--output", &missing)))
        o->output = v;
    else if ((v = report_option_value(argc, argv, i, "--run", &missing)))
        return report_id_option("baseline", "--run", v, &o->run_id);
    else {
        *missing_out = missing;
        return -1;
    }
    return 0;
}

/* ---- writing ---- */

static json_t *hist_json(const stats_hist *h)
{
    size_t n = h ? stats_hist_encode(h, NULL, 0) : 0;
    uint8_t *bytes = n ? malloc(n) : NULL;
    char *hex = bytes ? malloc(2 * n + 1) : NULL;
    json_t *out = json_null();

    if (hex) {
        stats_hist_encode(h, bytes, n);
        for (size_t i = 0; i < n; i++)
            snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
        out = json_string(hex);
    }
    free(bytes);
    free(hex);
    return out;
}

static json_t *baseline_json(const report_data *d)
{
    json_t *root = json_object(), *tests = json_object(), *stmts = json_array();
    json_t *finds = json_array(), *plans = json_array();

    for (size_t i = 0; i < d->n_tests; i++)
        json_object_set_new(tests, d->tests[i].name,
                            json_pack("{s:I}", "statements", (json_int_t)d->tests[i].statements));
    for (size_t i = 0; i < d->n_stmts; i++) {
        const report_statement *s = &d->stmts[i];
        json_array_append_new(
            stmts, json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:o}", "fingerprint",
                             s->fingerprint, "database", s->database ? s->database : "", "user",
                             s->user ? s->user : "", "calls", (json_int_t)s->calls, "rows",
                             (json_int_t)s->rows, "mean_ms", s->mean_ms, "p50_ms", s->p50_ms,
                             "p95_ms", s->p95_ms, "histogram", hist_json(s->hist)));
    }
    for (size_t i = 0; i < d->n_findings; i++) {
        const report_nplusone *f = &d->findings[i];
        json_array_append_new(finds, json_pack("{s:s, s:s, s:s}", "kind",
                                               f->duplicate     ? "duplicate"
                                               : f->insert_loop ? "batch_insert"
                                                                : "n_plus_one",
                                               "parent_fingerprint", f->parent_fingerprint,
                                               "child_fingerprints",
                                               f->child_fingerprints ? f->child_fingerprints : ""));
    }
    for (size_t i = 0; i < d->n_plan_findings; i++) {
        const report_plan_finding *f = &d->plan_findings[i];
        json_array_append_new(plans,
                              json_pack("{s:s, s:s, s:s}", "fingerprint", f->fingerprint, "kind",
                                        f->kind, "relation", f->relation ? f->relation : ""));
    }
    json_object_set_new(root, "plan_findings", plans);
    json_object_set_new(root, "pgscope_baseline", json_integer(BASELINE_FORMAT));
    json_object_set_new(root, "run", json_integer(d->n_runs ? d->runs[0].id : 0));
    json_object_set_new(root, "tests", tests);
    json_object_set_new(root, "statements", stmts);
    json_object_set_new(root, "findings", finds);
    return root;
}

int baseline_main(int argc, char **argv)
{
    baseline_options o = {DEFAULT_DB, DEFAULT_OUTPUT, 0};
    report_data d;

    if (argc < 1 || strcmp(argv[0], "save") != 0) {
        if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "pgscope baseline: the one action is save\nTry `pgscope baseline "
                        "--help`.\n");
        return 2;
    }
    int rc = report_parse_args("baseline", argc - 1, argv + 1, usage, parse_option, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (!report_load_file("baseline", o.db, o.run_id, &d))
        return 3;
    json_t *root = baseline_json(&d);
    report_data_free(&d);
    int flags = JSON_INDENT(1) | JSON_SORT_KEYS;
    bool ok = root && (strcmp(o.output, "-") == 0 ? json_dumpf(root, stdout, flags) == 0
                                                  : json_dump_file(root, o.output, flags) == 0);
    json_decref(root);
    if (!ok) {
        fprintf(stderr, "pgscope baseline: cannot write %s: %s\n", o.output, strerror(errno));
        return 3;
    }
    return 0;
}

/* ---- reading ---- */

static bool hist_from(const char *hex, stats_hist **out)
{
    size_t n = hex ? strlen(hex) / 2 : 0;
    uint8_t *bytes = n ? malloc(n) : NULL;
    bool ok = n == 0;

    if (bytes && (*out = malloc(sizeof(**out)))) {
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                break;
            bytes[i] = (uint8_t)v;
        }
        ok = stats_hist_decode(*out, bytes, n);
        if (!ok) {
            free(*out);
            *out = NULL;
        }
    }
    free(bytes);
    return ok || n == 0;
}

static char *dup_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return strdup(s ? s : "");
}

static bool read_statements(json_t *arr, report_data *d)
{
    size_t i;
    json_t *s;

    d->stmts = calloc(json_array_size(arr) + 1, sizeof(*d->stmts));
    if (!d->stmts)
        return false;
    json_array_foreach(arr, i, s)
    {
        report_statement *r = &d->stmts[d->n_stmts++];
        const char *fp = json_string_value(json_object_get(s, "fingerprint"));
        snprintf(r->fingerprint, sizeof(r->fingerprint), "%s", fp ? fp : "");
        r->database = dup_str(s, "database");
        r->user = dup_str(s, "user");
        r->calls = json_integer_value(json_object_get(s, "calls"));
        r->rows = json_integer_value(json_object_get(s, "rows")); /* 0 when absent */
        r->mean_ms = json_number_value(json_object_get(s, "mean_ms"));
        r->p50_ms = json_number_value(json_object_get(s, "p50_ms"));
        r->p95_ms = json_number_value(json_object_get(s, "p95_ms"));
        if (!r->database || !r->user ||
            !hist_from(json_string_value(json_object_get(s, "histogram")), &r->hist))
            return false;
    }
    return true;
}

static bool read_findings(json_t *arr, report_data *d)
{
    size_t i;
    json_t *f;

    d->findings = calloc(json_array_size(arr) + 1, sizeof(*d->findings));
    if (!d->findings)
        return false;
    json_array_foreach(arr, i, f)
    {
        report_nplusone *r = &d->findings[d->n_findings++];
        const char *kind = json_string_value(json_object_get(f, "kind"));
        const char *parent = json_string_value(json_object_get(f, "parent_fingerprint"));
        r->duplicate = kind && strcmp(kind, "duplicate") == 0;
        r->insert_loop = kind && strcmp(kind, "batch_insert") == 0;
        snprintf(r->parent_fingerprint, sizeof(r->parent_fingerprint), "%s", parent ? parent : "");
        if (!(r->child_fingerprints = dup_str(f, "child_fingerprints")))
            return false;
    }
    return true;
}

static bool read_plan_findings(json_t *arr, report_data *d)
{
    size_t i;
    json_t *f;

    d->plan_findings = calloc(json_array_size(arr) + 1, sizeof(*d->plan_findings));
    if (!d->plan_findings)
        return false;
    json_array_foreach(arr, i, f)
    {
        report_plan_finding *r = &d->plan_findings[d->n_plan_findings++];
        const char *fp = json_string_value(json_object_get(f, "fingerprint"));
        const char *kind = json_string_value(json_object_get(f, "kind"));
        snprintf(r->fingerprint, sizeof(r->fingerprint), "%s", fp ? fp : "");
        snprintf(r->kind, sizeof(r->kind), "%s", kind ? kind : "");
        if (!(r->relation = dup_str(f, "relation")))
            return false;
    }
    return true;
}

static bool read_tests(json_t *obj, report_data *d)
{
    const char *name;
    json_t *t;

    d->tests = calloc(json_object_size(obj) + 1, sizeof(*d->tests));
    if (!d->tests)
        return false;
    json_object_foreach(obj, name, t)
    {
        report_test *r = &d->tests[d->n_tests++];
        r->statements = json_integer_value(json_object_get(t, "statements"));
        if (!(r->name = strdup(name)))
            return false;
    }
    return true;
}

bool report_load_baseline(const char *path, report_data *d)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    bool ok = false;

    memset(d, 0, sizeof(*d));
    if (!root)
        fprintf(stderr, "pgscope check: %s: %s (line %d)\n", path, jerr.text, jerr.line);
    else if (json_integer_value(json_object_get(root, "pgscope_baseline")) != BASELINE_FORMAT)
        fprintf(stderr, "pgscope check: %s is not a pgscope baseline (format %d)\n", path,
                BASELINE_FORMAT);
    else if (!(ok = read_statements(json_object_get(root, "statements"), d) &&
                    read_findings(json_object_get(root, "findings"), d) &&
                    read_tests(json_object_get(root, "tests"), d) &&
                    read_plan_findings(json_object_get(root, "plan_findings"), d)))
        fprintf(stderr, "pgscope check: %s: malformed or out of memory\n", path);
    json_decref(root);
    return ok;
}
