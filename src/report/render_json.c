/* render_json.c — the report as one JSON object for programs and CI, and one EXPLAIN plan
 * (`pgscope report --plan ID --format json`); shapes documented in doc/report-schema.md, fields
 * are only ever added. */
#include "config.h"

#include "report_int.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms, surrogates or values
 * above U+10FFFF), 0 if it is not one. */
size_t report_utf8_sequence(const unsigned char *p, size_t avail)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t k;
    uint32_t c;

    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        k = 2;
        c = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        k = 3;
        c = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        k = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    if (k > avail)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((p[j] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[j] & 0x3F);
    }
    return c < least[k] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF) ? 0 : k;
}

/* Copies s with every byte that is not part of valid UTF-8 replaced by U+FFFD: query text is
 * in the client's encoding, and JSON must be UTF-8. A sequence is copied as it is and a bad
 * byte becomes 3: the copy is at most 3 times as long. */
static char *utf8_clean(const char *s)
{
    size_t len = strlen(s), n = 0;
    char *out = len < (SIZE_MAX - 1) / 3 ? malloc(len * 3 + 1) : NULL;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t k = report_utf8_sequence((const unsigned char *)s + i, len - i);
        if (k > 0) {
            memcpy(out + n, s + i, k);
            n += k;
            i += k;
        } else {
            memcpy(out + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        }
    }
    out[n] = '\0';
    return out;
}

static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_string(s);
    if (!v) {
        char *clean = utf8_clean(s);
        v = clean ? json_string(clean) : NULL;
        free(clean);
    }
    return v;
}

/* Milliseconds and seconds to the microsecond: the histogram is not finer than that, and
 * fewer digits are easier to read and diff. NaN (unknown) is null. */
static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(round(v * 1000.0) / 1000.0) : json_null();
}

static json_t *jint(int64_t v)
{
    return json_integer((json_int_t)v);
}

/* An object under construction: the first value that cannot be made fails the whole. */
typedef struct {
    json_t *o;
    bool ok;
} builder;

static builder obj_begin(void)
{
    builder b = {json_object(), true};

    b.ok = b.o != NULL;
    return b;
}

static void obj_put(builder *b, const char *key, json_t *v)
{
    if (!b->ok || !v) {
        json_decref(v);
        b->ok = false;
        return;
    }
    b->ok = json_object_set_new(b->o, key, v) == 0; /* takes v even when it fails */
}

static json_t *obj_end(builder *b)
{
    if (b->ok)
        return b->o;
    json_decref(b->o);
    return NULL;
}

/* An array of strings (invalid UTF-8 cleaned as in jstr). */
static json_t *strings_json(char *const *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, jstr(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *run_json(const report_run *r)
{
    builder b = obj_begin();

    obj_put(&b, "id", jint(r->id));
    obj_put(&b, "label", jstr(r->label));
    obj_put(&b, "started_at", jstr(r->started_at));
    obj_put(&b, "ended_at", jstr(r->ended_at));
    obj_put(&b, "duration_s", jnum(r->duration_s));
    obj_put(&b, "connections", jint(r->connections));
    obj_put(&b, "statements", jint(r->statements));
    obj_put(&b, "events_dropped", jint(r->events_dropped));
    obj_put(&b, "lost_writes", jint(r->lost_writes));
    obj_put(&b, "fingerprint_fallbacks", jint(r->fingerprint_fallbacks));
    obj_put(&b, "fingerprint_parses", jint(r->fingerprint_parses));
    obj_put(&b, "fingerprint_hits", jint(r->fingerprint_hits));
    obj_put(&b, "track_desyncs", jint(r->track_desyncs));
    obj_put(&b, "upstream", jstr(r->upstream));
    obj_put(&b, "pgscope_version", jstr(r->pgscope_version));
    obj_put(&b, "unused_ignores",
            r->has_unused_ignores ? strings_json(r->unused_ignores, r->n_unused_ignores)
                                  : json_null());
    obj_put(&b, "max_shapes", r->max_shapes >= 0 ? jint(r->max_shapes) : json_null());
    obj_put(&b, "folded_shapes", jint(r->folded_shapes));
    obj_put(&b, "folded_calls", jint(r->folded_calls));
    obj_put(&b, "explain_login_error", jstr(r->explain_login_error));
    return obj_end(&b);
}

static json_t *errors_json(const report_statement *s)
{
    json_t *o = json_object();

    for (size_t i = 0; o && i < s->n_errs; i++) {
        const char *code = s->errs[i].sqlstate[0] ? s->errs[i].sqlstate : "other";
        if (json_object_set_new(o, code, jint(s->errs[i].count)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *tag_json(const report_tag *t)
{
    builder b = obj_begin();

    obj_put(&b, "tags", jstr(t->tags));
    obj_put(&b, "calls", jint(t->calls));
    obj_put(&b, "total_ms", jnum(t->total_ms));
    return obj_end(&b);
}

static json_t *tags_json(const report_statement *s)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < s->n_tags; i++) {
        if (json_array_append_new(a, tag_json(&s->tags[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *example_json(const report_statement *s)
{
    if (!s->example_query)
        return json_null();
    builder b = obj_begin();
    obj_put(&b, "query", jstr(s->example_query));
    obj_put(&b, "params", jstr(s->example_params));
    return obj_end(&b);
}

static json_t *statement_json(const report_statement *s)
{
    builder b = obj_begin();

    obj_put(&b, "fingerprint", jstr(s->fingerprint));
    obj_put(&b, "query", jstr(s->query));
    obj_put(&b, "database", jstr(s->database));
    obj_put(&b, "user", jstr(s->user));
    obj_put(&b, "command", jstr(s->command));
    obj_put(&b, "fallback", json_boolean(s->fallback));
    obj_put(&b, "calls", jint(s->calls));
    obj_put(&b, "errors", jint(s->errors));
    obj_put(&b, "rows", jint(s->rows));
    obj_put(&b, "total_ms", jnum(s->total_ms));
    obj_put(&b, "mean_ms", jnum(s->mean_ms));
    obj_put(&b, "min_ms", jnum(s->min_ms));
    obj_put(&b, "max_ms", jnum(s->max_ms));
    obj_put(&b, "stddev_ms", jnum(s->stddev_ms));
    obj_put(&b, "p50_ms", jnum(s->p50_ms));
    obj_put(&b, "p95_ms", jnum(s->p95_ms));
    obj_put(&b, "p99_ms", jnum(s->p99_ms));
    obj_put(&b, "rows_per_call", jnum(s->calls > 0 ? (double)s->rows / (double)s->calls : NAN));
    obj_put(&b, "first_seen", jstr(s->first_seen));
    obj_put(&b, "last_seen", jstr(s->last_seen));
    obj_put(&b, "errors_by_sqlstate", errors_json(s));
    obj_put(&b, "tags", tags_json(s));
    obj_put(&b, "example", example_json(s));
    return obj_end(&b);
}

/* "fp1,fp2" as ["fp1", "fp2"]. */
static json_t *fingerprints_json(const char *list)
{
    json_t *a = json_array();

    for (const char *p = list ? list : ""; a && *p;) {
        size_t n = strcspn(p, ",");
        json_t *fp = json_stringn(p, n);
        if (!fp || json_array_append_new(a, fp) != 0) {
            json_decref(a);
            return NULL;
        }
        p += n + (p[n] == ',');
    }
    return a;
}

/* The stored examples array as JSON values (tuples stay arrays); text that is not a JSON array
 * is kept as the one string of an array, so that the field always has the same type. */
static json_t *examples_json(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : json_array();

    if (json_is_array(v))
        return v;
    json_decref(v);
    v = json_array();
    if (v && json_array_append_new(v, jstr(text)) != 0) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static json_t *nplusone_json(const report_nplusone *f)
{
    builder b = obj_begin();
    const char *child = f->n_child_queries > 0 ? f->child_queries[0] : NULL;

    bool loop = !f->duplicate && !f->insert_loop;

    obj_put(&b, "kind",
            json_string(loop           ? "n_plus_one"
                        : f->duplicate ? "duplicate"
                                       : "batch_insert"));
    obj_put(&b, "parent_fingerprint", loop ? jstr(f->parent_fingerprint) : json_null());
    obj_put(&b, "parent_query", loop ? jstr(f->parent_query) : json_null());
    obj_put(&b, "child_fingerprints", fingerprints_json(f->child_fingerprints));
    obj_put(&b, "child_query", jstr(child));
    obj_put(&b, "child_queries", strings_json(f->child_queries, f->n_child_queries));
    obj_put(&b, "max_n", jint(f->max_n));
    obj_put(&b, "total_n", jint(f->total_n));
    obj_put(&b, "occurrences", jint(f->occurrences));
    obj_put(&b, "confirmed", json_boolean(f->confirmed));
    obj_put(&b, "linked_column", jstr(f->linked_column));
    obj_put(&b, "chance", f->chance >= 0 ? json_real(f->chance) : json_null());
    obj_put(&b, "orm", f->orm[0] ? json_string(f->orm) : json_null());
    obj_put(&b, "test", jstr(f->test));
    obj_put(&b, "total_ms", jnum(f->total_ms));
    obj_put(&b, "saving_ms", jnum(f->saving_ms));
    obj_put(&b, "severity", jstr(f->severity));
    obj_put(&b, "examples", examples_json(f->examples));
    obj_put(&b, "suggestion", jstr(f->suggestion));
    obj_put(&b, "first_seen", jstr(f->first_seen));
    obj_put(&b, "last_seen", jstr(f->last_seen));
    return obj_end(&b);
}

/* Plan parameters, a JSON array stored as text: the array, null when not stored (text that is
 * not an array stays as the one string of an array, as examples do). */
static json_t *params_json(const char *text)
{
    return text ? examples_json(text) : json_null();
}

/* The fields of a plan the report lists; the plan's text only with --plan. */
static void put_plan_fields(builder *b, const report_plan *p)
{
    obj_put(b, "id", jint(p->id));
    obj_put(b, "run_id", jint(p->run_id));
    obj_put(b, "seq", jint(p->seq));
    obj_put(b, "fingerprint", jstr(p->fingerprint));
    obj_put(b, "database", jstr(p->database));
    obj_put(b, "user", jstr(p->user));
    obj_put(b, "query", jstr(p->query));
    obj_put(b, "params", params_json(p->params));
    obj_put(b, "analyzed", json_boolean(p->analyzed));
    obj_put(b, "trigger_ms", jnum(p->trigger_ms));
    obj_put(b, "planning_ms", jnum(p->planning_ms));
    obj_put(b, "execution_ms", jnum(p->execution_ms));
    obj_put(b, "side_ms", jnum(p->side_ms));
    obj_put(b, "taken_at", jstr(p->taken_at));
}

static json_t *plan_json(const report_plan *p)
{
    builder b = obj_begin();

    put_plan_fields(&b, p);
    return obj_end(&b);
}

/* What a finding says, in the report's findings and in one plan's. */
static void put_finding_fields(builder *b, const report_plan_finding *f)
{
    obj_put(b, "kind", jstr(f->kind));
    obj_put(b, "relation", jstr(f->relation));
    obj_put(b, "node_path", jstr(f->node_path));
    obj_put(b, "detail", jstr(f->detail));
    obj_put(b, "magnitude", jnum(f->magnitude));
}

static json_t *plan_finding_json(const report_plan_finding *f)
{
    builder b = obj_begin();

    obj_put(&b, "plan_id", jint(f->plan_id));
    obj_put(&b, "fingerprint", jstr(f->fingerprint));
    obj_put(&b, "query", jstr(f->query));
    put_finding_fields(&b, f);
    obj_put(&b, "weight_ms", jnum(f->weight_ms));
    obj_put(&b, "calls", f->calls >= 0 ? jint(f->calls) : json_null());
    obj_put(&b, "mean_ms", jnum(f->mean_ms));
    obj_put(&b, "seen_in_plans", jint(f->plans));
    obj_put(&b, "test", jstr(f->test));
    return obj_end(&b);
}

static json_t *list_json(const void *items, size_t n, size_t size, json_t *(*one)(const void *))
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, one((const char *)items + i * size)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *any_index_test(const void *p)
{
    const report_index_test *t = p;
    builder b = obj_begin();

    obj_put(&b, "test", jstr(t->name));
    obj_put(&b, "calls", jint(t->calls));
    obj_put(&b, "total_ms", jnum(t->total_ms));
    return obj_end(&b);
}

/* An index suggestion as index_suggestions stores it; NULL numbers (unverified) are null. */
static json_t *index_json(const report_index *x)
{
    builder b = obj_begin();

    obj_put(&b, "rank", jint(x->rank));
    obj_put(&b, "run_id", jint(x->run_id));
    obj_put(&b, "database", jstr(x->database));
    obj_put(&b, "ddl", jstr(x->ddl));
    obj_put(&b, "schema", jstr(x->schema));
    obj_put(&b, "table", jstr(x->table));
    obj_put(&b, "columns", strings_json(x->columns, x->n_columns));
    obj_put(&b, "predicate", jstr(x->predicate));
    obj_put(&b, "verified", json_boolean(x->verified));
    obj_put(&b, "cost_before", jnum(x->cost_before));
    obj_put(&b, "cost_after", jnum(x->cost_after));
    obj_put(&b, "benefit_ms", jnum(x->benefit_ms));
    obj_put(&b, "size_bytes", jnum(x->size_bytes));
    obj_put(&b, "statements", strings_json(x->fingerprints, x->n_fingerprints));
    obj_put(&b, "write_statements", jint(x->write_statements));
    obj_put(&b, "breaks_hot", json_boolean(x->breaks_hot));
    obj_put(&b, "misestimate", json_boolean(x->misestimate));
    obj_put(&b, "tests", list_json(x->tests, x->n_tests, sizeof(x->tests[0]), any_index_test));
    return obj_end(&b);
}

static json_t *explain_json(const report_data *d)
{
    json_t *o = json_object();

    for (size_t i = 0; o && i < d->n_explain; i++) {
        if (json_object_set_new(o, d->explain[i].reason, jint(d->explain[i].count)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Why the EXPLAIN side connection could not log in: the latest run in scope that recorded it. */
static json_t *login_error_json(const report_data *d)
{
    const char *why = NULL;

    for (size_t i = 0; i < d->n_runs; i++)
        if (d->runs[i].explain_login_error)
            why = d->runs[i].explain_login_error;
    return jstr(why);
}

static json_t *any_run(const void *r)
{
    return run_json(r);
}

static json_t *any_statement(const void *s)
{
    return statement_json(s);
}

/* The shapes folded by max_shapes, as one statement with how many shapes it holds; null when
 * nothing was folded. */
static json_t *other_json(const report_data *d)
{
    if (!d->other)
        return json_null();
    json_t *o = statement_json(d->other);
    if (o && json_object_set_new(o, "folded_shapes", jint(d->folded_shapes)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *any_nplusone(const void *f)
{
    return nplusone_json(f);
}

static json_t *any_test(const void *p)
{
    const report_test *t = p;
    builder b = obj_begin();

    obj_put(&b, "test", jstr(t->name));
    obj_put(&b, "statements", jint(t->statements));
    obj_put(&b, "shapes", jint(t->shapes));
    obj_put(&b, "total_ms", jnum(t->total_ms));
    obj_put(&b, "findings", jint(t->findings));
    return obj_end(&b);
}

static json_t *any_plan(const void *p)
{
    return plan_json(p);
}

static json_t *any_plan_finding(const void *f)
{
    return plan_finding_json(f);
}

static json_t *any_index(const void *x)
{
    return index_json(x);
}

static json_t *report_json(const report_data *d)
{
    builder b = obj_begin();

    obj_put(&b, "pgscope_version", json_string(PACKAGE_VERSION));
    obj_put(&b, "schema_version", json_integer(d->schema_version));
    obj_put(&b, "scope", json_string(d->all ? "all" : "run"));
    obj_put(&b, "statement_shapes", jint(d->shapes));
    obj_put(&b, "runs", list_json(d->runs, d->n_runs, sizeof(d->runs[0]), any_run));
    obj_put(&b, "n_plus_one",
            list_json(d->findings, d->n_findings, sizeof(d->findings[0]), any_nplusone));
    obj_put(&b, "unused_ignores", strings_json(d->unused_ignores, d->n_unused_ignores));
    obj_put(&b, "tests", list_json(d->tests, d->n_tests, sizeof(d->tests[0]), any_test));
    obj_put(&b, "statements", list_json(d->stmts, d->n_stmts, sizeof(d->stmts[0]), any_statement));
    obj_put(&b, "other", other_json(d));
    /* Every suggestion, not limited by --limit: a run's latest consolidation (with --all, of the
     * latest run that has any). */
    obj_put(&b, "index_suggestions",
            list_json(d->indexes, d->n_indexes, sizeof(d->indexes[0]), any_index));
    /* Plans without their text, to keep the report small: --plan ID has it. */
    obj_put(&b, "plans", list_json(d->plans, d->n_plans, sizeof(d->plans[0]), any_plan));
    obj_put(&b, "findings",
            list_json(d->plan_findings, d->n_plan_findings, sizeof(d->plan_findings[0]),
                      any_plan_finding));
    obj_put(&b, "explain", explain_json(d));
    obj_put(&b, "explain_login_error", login_error_json(d));
    return obj_end(&b);
}

/* Prints root (NULL: it could not be built) and releases it. */
static bool dump(FILE *out, json_t *root)
{
    /* 15 significant digits print 0.123 as 0.123, not 0.12299999999999999. */
    bool ok = root && json_dumpf(root, out, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) == 0;
    if (ok)
        fputc('\n', out);
    json_decref(root);
    return ok;
}

bool report_render_json(FILE *out, const report_data *d)
{
    return dump(out, report_json(d));
}

/* ---------------------------------------------------------------- one plan (--plan ID) */

/* The stored EXPLAIN output as JSON; as a string when it is not JSON, so that nothing the file
 * holds is hidden. */
static json_t *plan_text_json(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;

    return v ? v : jstr(text);
}

static json_t *own_finding_json(const void *item)
{
    builder b = obj_begin();

    put_finding_fields(&b, item);
    return obj_end(&b);
}

bool report_render_plan_json(FILE *out, const report_plan_detail *p)
{
    builder b = obj_begin();

    put_plan_fields(&b, &p->plan);
    obj_put(&b, "run_label", jstr(p->run_label));
    obj_put(&b, "plan", plan_text_json(p->text));
    obj_put(&b, "findings",
            list_json(p->findings, p->n_findings, sizeof(p->findings[0]), own_finding_json));
    return dump(out, obj_end(&b));
}
