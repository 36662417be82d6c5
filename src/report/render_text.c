/* render_text.c — the report for people: run summary, the N+1 and duplicate queries with their
 * fixes, the index suggestions with their DDL, the EXPLAIN plan findings by statement time, then
 * the top statements by total time as a table, each with its plan findings; all of it fits a
 * 100-column terminal. Also one plan as a tree (`pgscope report --plan ID`). */
#include "config.h"

#include "report_int.h"

#include "pgscope/explain.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LINE_WIDTH 100
#define RUNS_LISTED 10 /* runs listed one per line in the merged view */
/* A finding's lines: "     parent    SELECT ...", the text after a label of this width. */
#define FINDING_INDENT 5
#define FINDING_LABEL 10
#define FIX_INDENT 7    /* the suggested fix, under the "fix" label */
#define FIELD_INDENT 25 /* a summary value: "  " and a key of 22 columns, then a space */
#define PATH_MIN 16     /* a node path cut shorter than this says too little: left out */
#define HELPED_LISTED 5 /* statements listed under an index suggestion */

/* The table's numeric columns; the query takes what is left of the line. */
#define TABLE_HEADER_FMT "%3s %7s %9s %6s %6s %6s %9s %6s  %s\n"
#define TABLE_PREFIX (3 + 1 + 7 + 1 + 9 + 1 + 6 + 1 + 6 + 1 + 6 + 1 + 9 + 1 + 6 + 2)

/* Names of the SQLSTATEs applications meet most, to save a trip to the manual. */
static const struct {
    const char *code, *name;
} sqlstate_names[] = {
    {"08P01", "protocol_violation"},
    {"21000", "cardinality_violation"},
    {"22001", "string_data_right_truncation"},
    {"22003", "numeric_value_out_of_range"},
    {"22007", "invalid_datetime_format"},
    {"22012", "division_by_zero"},
    {"22P02", "invalid_text_representation"},
    {"23502", "not_null_violation"},
    {"23503", "foreign_key_violation"},
    {"23505", "unique_violation"},
    {"23514", "check_violation"},
    {"25P02", "in_failed_sql_transaction"},
    {"40001", "serialization_failure"},
    {"40P01", "deadlock_detected"},
    {"42501", "insufficient_privilege"},
    {"42601", "syntax_error"},
    {"42703", "undefined_column"},
    {"42883", "undefined_function"},
    {"42P01", "undefined_table"},
    {"53300", "too_many_connections"},
    {"55P03", "lock_not_available"},
    {"57014", "query_canceled"},
    {"57P01", "admin_shutdown"},
};

static const char *sqlstate_name(const char *code)
{
    for (size_t i = 0; i < sizeof(sqlstate_names) / sizeof(sqlstate_names[0]); i++)
        if (strcmp(code, sqlstate_names[i].code) == 0)
            return sqlstate_names[i].name;
    return NULL;
}

/* ---------------------------------------------------------------- formatting helpers */

/* A number right-aligned in width: as many decimals (up to max_prec) as fit, "-" if unknown. */
static void fmt_num(char *buf, size_t cap, double v, int width, int max_prec)
{
    if (!isfinite(v)) {
        snprintf(buf, cap, "-");
        return;
    }
    for (int prec = max_prec; prec >= 0; prec--)
        if (snprintf(buf, cap, "%.*f", prec, v) <= width)
            return;
    snprintf(buf, cap, "%.1e", v);
}

/* Text from the file (labels, queries) on one line: runs of white space and control
 * characters (a terminal escape in a query must not reach the terminal) become one space. */
static void one_line(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    bool space = false;

    for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && n + 1 < cap; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < cap)
            out[n++] = ' ';
        space = false;
        out[n++] = (char)*p;
    }
    out[n] = '\0';
}

/* Cuts UTF-8 text to at most width characters, marking the cut with "...". The mark and its NUL
 * overwrite the string itself: the cut is made only once character width has been seen, so
 * characters width - 3 to width, 4 bytes at least, lie from the cut on. A width below 3 would
 * leave no room for the mark: such a field shows the mark alone. */
static void fit(char *s, int width)
{
    int chars = 0;
    size_t cut = 0;

    if (width < 3)
        width = 3;
    for (size_t i = 0; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80)
            continue; /* a continuation byte: same character */
        if (chars == width - 3)
            cut = i;
        if (++chars > width) {
            memcpy(s + cut, "...", 4);
            return;
        }
    }
}

/* Appends to the text in buf (cap bytes), cut to fit. It writes from the end of the text, which
 * is always inside buf, unlike an offset counted from what snprintf meant to write. */
static void append(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strnlen(buf, cap);
    va_list ap;

    if (n + 1 >= cap)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

static void put_field(FILE *out, const char *key, const char *value)
{
    fprintf(out, "  %-22s %s\n", key, value);
}

static void put_count(FILE *out, const char *key, int64_t v)
{
    fprintf(out, "  %-22s %lld\n", key, (long long)v);
}

/* ---------------------------------------------------------------- run summary */

static void put_duration(FILE *out, const char *key, double s)
{
    char buf[64];

    if (isfinite(s))
        snprintf(buf, sizeof(buf), "%.3f s", s);
    else
        snprintf(buf, sizeof(buf), "unknown: not stopped cleanly, or still running");
    put_field(out, key, buf);
}

static void put_single_run(FILE *out, const report_data *d)
{
    const report_run *r = &d->runs[0];
    char label[256], buf[320];

    one_line(r->label, label, sizeof(label));
    fprintf(out, "Run %lld%s%s%s\n", (long long)r->id, r->label ? " \"" : "", label,
            r->label ? "\"" : "");
    snprintf(buf, sizeof(buf), "%s UTC", r->started_at ? r->started_at : "?");
    put_field(out, "started", buf);
    put_duration(out, "duration", r->duration_s);
    one_line(r->upstream, buf, sizeof(buf));
    put_field(out, "upstream", buf);
    put_count(out, "connections", r->connections);
    snprintf(buf, sizeof(buf), "%lld in %lld shapes", (long long)r->statements,
             (long long)d->shapes);
    put_field(out, "statements", buf);
}

static void put_run_line(FILE *out, const report_run *r)
{
    char label[48], dur[32];

    one_line(r->label, label, sizeof(label));
    fit(label, 24);
    fmt_num(dur, sizeof(dur), r->duration_s, 10, 1);
    fprintf(out, "    run %-5lld %-24s %s  %8s s %10lld statements\n", (long long)r->id, label,
            r->started_at ? r->started_at : "?", dur, (long long)r->statements);
}

static void put_all_runs(FILE *out, const report_data *d, report_run *sum)
{
    char buf[160];
    bool ended = true;

    fprintf(out, "All %zu runs merged (run %lld to run %lld)\n", d->n_runs,
            (long long)d->runs[0].id, (long long)d->runs[d->n_runs - 1].id);
    for (size_t i = 0; i < d->n_runs; i++)
        ended &= isfinite(d->runs[i].duration_s);
    snprintf(buf, sizeof(buf), "%s UTC", d->runs[0].started_at ? d->runs[0].started_at : "?");
    put_field(out, "first started", buf);
    put_duration(out, ended ? "time in runs" : "time in ended runs", sum->duration_s);
    put_count(out, "connections", sum->connections);
    snprintf(buf, sizeof(buf), "%lld in %lld shapes", (long long)sum->statements,
             (long long)d->shapes);
    put_field(out, "statements", buf);
}

/* "folded shapes   995000 (with 995000 calls) into "other statements", max_shapes 5000": only
 * when the cap on statement rows folded any. */
static void put_folded(FILE *out, const report_data *d)
{
    char buf[160];
    const report_run *last = &d->runs[d->n_runs - 1];

    if (d->folded_shapes == 0)
        return;
    snprintf(buf, sizeof(buf), "%lld (with %lld calls) into \"other statements\"",
             (long long)d->folded_shapes, (long long)(d->other ? d->other->calls : 0));
    if (!d->all && last->max_shapes > 0)
        append(buf, sizeof(buf), ", max_shapes %lld", (long long)last->max_shapes);
    put_field(out, "folded shapes", buf);
}

static void put_counters(FILE *out, const report_run *sum)
{
    put_count(out, "dropped events", sum->events_dropped);
    put_count(out, "lost writes", sum->lost_writes);
    put_count(out, "fingerprint fallbacks", sum->fingerprint_fallbacks);
}

static void put_warnings(FILE *out, const report_data *d, const report_run *sum)
{
    if (sum->events_dropped > 0)
        fprintf(out,
                "WARNING: %lld events were dropped because the analysis fell behind: the "
                "figures below\n         undercount what the application sent.\n",
                (long long)sum->events_dropped);
    if (sum->lost_writes > 0)
        fprintf(out,
                "WARNING: %lld rows could not be written to the report database (locked, "
                "read-only or full):\n         some figures below may be stale.\n",
                (long long)sum->lost_writes);
    for (size_t i = 0; i < d->n_runs; i++)
        if (!d->runs[i].ended_at)
            fprintf(out,
                    "NOTE: run %lld has no end: it is still running or was not stopped "
                    "cleanly.\n",
                    (long long)d->runs[i].id);
}

static void sum_runs(const report_data *d, report_run *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (size_t i = 0; i < d->n_runs; i++) {
        const report_run *r = &d->runs[i];
        if (isfinite(r->duration_s))
            sum->duration_s += r->duration_s;
        sum->connections += r->connections;
        sum->statements += r->statements;
        sum->events_dropped += r->events_dropped;
        sum->lost_writes += r->lost_writes;
        sum->fingerprint_fallbacks += r->fingerprint_fallbacks;
    }
    if (d->n_runs == 1)
        sum->duration_s = d->runs[0].duration_s;
}

static void put_explain(FILE *out, const report_data *d);

static void put_wrapped(FILE *out, const char *text, int first_col, int indent);

/* A summary value of prose, wrapped at spaces under its key. */
static void put_prose(FILE *out, const char *key, const char *text)
{
    put_wrapped(out, text, fprintf(out, "  %-22s ", key), FIELD_INDENT);
}

/* "EXPLAIN login failed  <the server's reason>", then what to do: when the side connection could
 * not log in (the latest run in scope that says so), no plan could be taken. */
static void put_explain_login(FILE *out, const report_data *d)
{
    const char *why = NULL;
    char buf[512];

    for (size_t i = 0; i < d->n_runs; i++)
        if (d->runs[i].explain_login_error)
            why = d->runs[i].explain_login_error;
    if (!why)
        return;
    snprintf(buf, sizeof(buf), "%s (no plans could be taken)", why);
    put_prose(out, "EXPLAIN login failed", buf);
    put_prose(out, "fix", EXPLAIN_LOGIN_ADVICE);
}

/* "index suggestions      3 (1 verified)": only when the advisor suggested any. */
static void put_index_count(FILE *out, const report_data *d)
{
    char buf[96];
    size_t verified = 0;

    if (d->n_indexes == 0)
        return;
    for (size_t i = 0; i < d->n_indexes; i++)
        verified += d->indexes[i].verified;
    snprintf(buf, sizeof(buf), "%zu (%zu verified)", d->n_indexes, verified);
    if (d->all)
        append(buf, sizeof(buf), ", of run %lld", (long long)d->indexes_run);
    put_field(out, "index suggestions", buf);
}

static void put_summary(FILE *out, const report_data *d)
{
    report_run sum;

    sum_runs(d, &sum);
    if (d->all) {
        put_all_runs(out, d, &sum);
    } else {
        put_single_run(out, d);
    }
    put_folded(out, d);
    put_counters(out, &sum);
    put_explain(out, d);
    put_explain_login(out, d);
    put_index_count(out, d);
    if (d->all) {
        size_t from = d->n_runs > RUNS_LISTED ? d->n_runs - RUNS_LISTED : 0;
        fprintf(out, "  runs%s\n", from ? " (the latest)" : "");
        for (size_t i = from; i < d->n_runs; i++)
            put_run_line(out, &d->runs[i]);
    }
    put_warnings(out, d, &sum);
}

/* ---------------------------------------------------------------- N+1 findings */

/* Characters (not bytes) of UTF-8 text. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* Bytes of the first `chars` characters of s (at most len bytes). */
static size_t utf8_prefix(const char *s, size_t len, size_t chars)
{
    size_t i = 0;

    for (size_t n = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && n++ == chars)
            break;
    }
    return i;
}

/* Items joined by ", " after a lead, wrapped at the line width; wrapped lines are indented by
 * wrap_indent. Items come from the file: cleaned as one_line does, and cut to fit one line. */
static void put_items(FILE *out, const char *lead, int wrap_indent, const char *const *items,
                      size_t n)
{
    char item[256];
    int col = fprintf(out, "%s", lead);

    for (size_t i = 0; i < n; i++) {
        one_line(items[i], item, sizeof(item));
        fit(item, LINE_WIDTH - wrap_indent - 1);
        int len = (int)utf8_chars(item, strlen(item)) + (i + 1 < n ? 1 : 0); /* and a comma */
        int sep = i > 0 ? 1 : 0; /* the lead ends with its own space */
        if (col > wrap_indent && col + sep + len > LINE_WIDTH) {
            fprintf(out, "\n%*s", wrap_indent, "");
            col = wrap_indent;
        } else if (sep) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%s%s", item, i + 1 < n ? "," : "");
        col += len;
    }
    fputc('\n', out);
}

/* A copy of len bytes of text from the file with control characters (a terminal escape must not
 * reach the terminal) made spaces; NULL when out of memory. */
static char *spaced_copy(const char *text, size_t len)
{
    char *s = malloc(len + 1);

    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++)
        s[i] = (unsigned char)text[i] < ' ' || text[i] == 0x7f ? ' ' : text[i];
    s[len] = '\0';
    return s;
}

/* Bytes of s; a unit separator (0x1f, a space that must not break a line: see put_sql) is
 * printed as the space it stands for. */
static void put_span(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fputc(s[i] == 0x1f ? ' ' : s[i], out);
}

/* Words of s (no control characters but 0x1f, no leading space), the cursor at column
 * first_col, wrapped at word boundaries: shown whole, never cut. Continuation lines start at
 * column indent; a word longer than a line is split. Ends the line. */
static void wrap_words(FILE *out, const char *s, size_t len, int first_col, int indent)
{
    size_t width = (size_t)(LINE_WIDTH - first_col), col = 0;

    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && s[end] != ' ')
            end++;
        size_t chars = utf8_chars(s + i, end - i);
        if (col > 0 && col + 1 + chars > width) {
            width = (size_t)(LINE_WIDTH - indent);
            fprintf(out, "\n%*s", indent, "");
            col = 0;
        } else if (col > 0) {
            fputc(' ', out);
            col++;
        }
        while (chars > width - col) { /* longer than a whole line: split it */
            size_t bytes = utf8_prefix(s + i, end - i, width - col);
            put_span(out, s + i, bytes);
            fprintf(out, "\n%*s", indent, "");
            width = (size_t)(LINE_WIDTH - indent);
            col = 0;
            i += bytes;
            chars = utf8_chars(s + i, end - i);
        }
        put_span(out, s + i, end - i);
        col += chars;
        for (i = end; i < len && s[i] == ' ';)
            i++;
    }
    fputc('\n', out);
}

/* Text from the file on lines of its own (a finding's detail, a query), the cursor at column
 * first_col: whole, wrapped as wrap_words does. */
static void put_wrapped(FILE *out, const char *text, int first_col, int indent)
{
    const char *t = text ? text : "";
    char *s = spaced_copy(t, strlen(t));
    size_t lead = 0;

    if (!s) {
        fputc('\n', out);
        return;
    }
    while (s[lead] == ' ')
        lead++;
    wrap_words(out, s + lead, strlen(s + lead), first_col, indent);
    free(s);
}

/* One line of a suggested fix, cleaned as one_line does but keeping its indentation, wrapped
 * at word boundaries: the fix is shown whole, never cut. Continuation lines are indented two
 * more columns; a word longer than a line is split. */
static void put_fix_line(FILE *out, const char *line, size_t len)
{
    char *s = spaced_copy(line, len);
    size_t lead = 0;

    if (!s)
        return;
    while (lead < len && s[lead] == ' ')
        lead++;
    if (lead == len) { /* a blank line of the fix stays blank, without trailing spaces */
        fputc('\n', out);
        free(s);
        return;
    }
    int indent = FIX_INDENT + (int)(lead < 40 ? lead : 40);
    fprintf(out, "%*s", indent, "");
    wrap_words(out, s + lead, len - lead, indent, indent + 2);
    free(s);
}

/* The suggested fix, every line of it, under the "fix" label. */
static void put_fix(FILE *out, const char *fix)
{
    const char *p = fix ? fix : "";
    size_t len = strlen(p);

    while (len > 0 && (unsigned char)p[len - 1] <= ' ')
        len--; /* no blank lines after the last one */
    fprintf(out, "%*s%s\n", FINDING_INDENT, "", "fix");
    if (len == 0) {
        fprintf(out, "%*s(none recorded)\n", FIX_INDENT, "");
        return;
    }
    for (const char *end = p + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        put_fix_line(out, p, n);
        p += n + (eol ? 1 : 0);
    }
}

/* "     parent    SELECT ...": a label and text from the file on one line, cut to fit. */
static void put_labeled(FILE *out, const char *label, const char *text)
{
    char line[1024];

    one_line(text, line, sizeof(line));
    fit(line, LINE_WIDTH - FINDING_INDENT - FINDING_LABEL);
    fprintf(out, "%*s%-*s%s\n", FINDING_INDENT, "", FINDING_LABEL, label, line[0] ? line : "-");
}

/* "1. N+1, confirmed, high: N max 50, 3 occurrences, child time 42.512 ms, saving ~38.200 ms" */
static void put_finding_header(FILE *out, size_t rank, const report_nplusone *f)
{
    char lead[96], items[4][64], total[32], saving[32];
    const char *const list[] = {items[0], items[1], items[2], items[3]};
    const char *proof = "";

    bool loop = !f->duplicate && !f->insert_loop;

    if (loop) /* the others need no proof: the same text and values, or one-row INSERTs */
        proof = f->confirmed ? "confirmed, " : "suspected, ";
    snprintf(lead, sizeof(lead), "%3zu. %s, %s%s: ", rank,
             loop           ? "N+1"
             : f->duplicate ? "duplicate"
                            : "insert loop",
             proof, f->severity[0] ? f->severity : "?");
    fmt_num(total, sizeof(total), f->total_ms, 9, 3);
    fmt_num(saving, sizeof(saving), f->saving_ms, 9, 3);
    snprintf(items[0], sizeof(items[0]), "N max %lld", (long long)f->max_n);
    snprintf(items[1], sizeof(items[1]), "%lld occurrence%s", (long long)f->occurrences,
             f->occurrences == 1 ? "" : "s");
    snprintf(items[2], sizeof(items[2]), "%s %s ms", loop ? "child time" : "time", total);
    snprintf(items[3], sizeof(items[3]), "saving ~%s ms", saving);
    put_items(out, lead, FINDING_INDENT, list, 4);
}

static void put_examples(FILE *out, const report_nplusone *f)
{
    char line[1024] = "", item[256];

    for (size_t i = 0; i < f->n_example_texts && strlen(line) + 1 < sizeof(line); i++) {
        one_line(f->example_texts[i], item, sizeof(item));
        append(line, sizeof(line), "%s%s", i ? ", " : "", item);
    }
    if (f->n_example_texts > 0)
        put_labeled(out, "examples", line);
}

static void put_finding(FILE *out, size_t rank, const report_nplusone *f)
{
    char label[16];

    bool loop = !f->duplicate && !f->insert_loop;
    char linked[256];

    put_finding_header(out, rank, f);
    if (loop)
        put_labeled(out, "parent", f->parent_query);
    for (size_t i = 0; i < f->n_child_queries || i == 0; i++) {
        if (!loop)
            snprintf(label, sizeof(label), "query");
        else
            snprintf(label, sizeof(label), i ? "child %zu" : "child", i + 1);
        put_labeled(out, label, i < f->n_child_queries ? f->child_queries[i] : NULL);
    }
    if (loop && f->confirmed) {
        snprintf(linked, sizeof(linked), "%s",
                 f->linked_column ? f->linked_column : "(not recorded)");
        if (f->chance >= 0)
            append(linked, sizeof(linked), " (chance of coincidence %.0e)", f->chance);
        put_labeled(out, "linked", linked);
    } else if (loop) {
        put_labeled(out, "linked", "not proven: the values do not follow a parent column's rows");
    }
    if (f->orm[0])
        put_labeled(out, "orm", f->orm);
    if (f->test)
        put_labeled(out, "test", f->test);
    put_examples(out, f);
    put_fix(out, f->suggestion);
}

/* Tests (schema 9): statements, shapes, time and findings per test, most time first. */
static void put_tests(FILE *out, const report_data *d)
{
    size_t shown = d->limit > 0 && (size_t)d->limit < d->n_tests ? (size_t)d->limit : d->n_tests;
    char name[64], ms[32];

    if (d->n_tests == 0)
        return;
    fprintf(out, "\nTests (%zu of %zu; most time first)\n", shown, d->n_tests);
    fprintf(out, "  %-48s %10s %7s %12s %9s\n", "test", "statements", "shapes", "time ms",
            "findings");
    for (size_t i = 0; i < shown; i++) {
        const report_test *t = &d->tests[i];
        one_line(t->name, name, sizeof(name) < 49 ? sizeof(name) : 49);
        fmt_num(ms, sizeof(ms), t->total_ms, 12, 3);
        fprintf(out, "  %-48s %10lld %7lld %12s %9lld\n", name, (long long)t->statements,
                (long long)t->shapes, ms, (long long)t->findings);
    }
}

static void put_unused_ignores(FILE *out, const report_data *d)
{
    if (d->n_unused_ignores == 0)
        return;
    fputc('\n', out);
    put_items(out, "Allow-list entries that never matched: ", 2,
              (const char *const *)d->unused_ignores, d->n_unused_ignores);
}

/* N+1 loops first, then duplicate queries, each most severe first (the loader's order). */
static void put_findings(FILE *out, const report_data *d)
{
    size_t loops = 0, dups = 0;

    if (d->schema_version < 2)
        return; /* a file from before N+1 detection: nothing to say either way */
    for (size_t i = 0; i < d->n_findings; i++) {
        loops += !d->findings[i].duplicate && !d->findings[i].insert_loop;
        dups += d->findings[i].duplicate;
    }
    if (d->n_findings == 0)
        fprintf(out, "\nNo N+1 or duplicate queries found.\n");
    for (size_t i = 0; i < d->n_findings; i++) {
        if (i == 0 && loops > 0)
            fprintf(out, "\nN+1 queries (%zu; most severe first; times in ms)\n", loops);
        if (i == loops && dups > 0)
            fprintf(out,
                    "\nDuplicate queries: the same statement with the same values, "
                    "repeated (%zu)\n",
                    dups);
        else if (i == loops + dups)
            fprintf(out, "\nInsert loops: one-row INSERTs of one shape, repeated (%zu)\n",
                    d->n_findings - loops - dups);
        else if (i > 0)
            fputc('\n', out); /* a blank line between the findings of a section */
        put_finding(out, i + 1, &d->findings[i]);
    }
    put_unused_ignores(out, d);
}

/* ---------------------------------------------------------------- index suggestions */

/* "2.1 MB": bytes counted as pg_size_pretty does (1 kB = 1024 bytes). */
static void fmt_size(char *buf, size_t cap, double bytes)
{
    static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB"};
    int u = 0;

    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f bytes", bytes);
    else
        snprintf(buf, cap, "%.1f %s", bytes, units[u]);
}

/* A name as SQL reads it: as it is when it needs no quotes (lower-case letters, digits and _,
 * not starting with a digit), else in double quotes, its own quotes doubled. Cut to cap: each
 * turn of the quoting loop writes at most 3 bytes where 5 are left, keeping 2 for the closing
 * quote and the NUL; below 3 bytes there is no room for even "". */
static void sql_name(char *buf, size_t cap, const char *name)
{
    const char *p = name ? name : "";
    bool plain = *p && !(*p >= '0' && *p <= '9');
    size_t n = 0;

    for (const char *c = p; plain && *c; c++)
        plain = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    if (plain || cap < 3) {
        snprintf(buf, cap, "%s", plain ? p : "");
        return;
    }
    for (const char *c = p; n + 4 < cap && *c; c++) {
        if (n == 0)
            buf[n++] = '"';
        if (*c == '"')
            buf[n++] = '"';
        buf[n++] = *c;
    }
    if (n == 0)
        buf[n++] = '"';
    buf[n++] = '"';
    buf[n] = '\0';
}

/* SQL from the file (an index's DDL) on lines of its own, the cursor at column first_col,
 * wrapped between words but never inside a quoted name or literal, so that the lines can be
 * copied into psql as they are. */
static void put_sql(FILE *out, const char *sql, int first_col, int indent)
{
    const char *t = sql ? sql : "";
    char *s = spaced_copy(t, strlen(t)); /* no 0x1f left: it marks the spaces to keep */
    char quote = 0;
    size_t lead = 0;

    if (!s) {
        fputc('\n', out);
        return;
    }
    for (char *c = s; *c; c++) {
        if (quote && *c == ' ')
            *c = 0x1f;
        else if (*c == quote)
            quote = 0;
        else if (!quote && (*c == '\'' || *c == '"'))
            quote = *c;
    }
    while (s[lead] == ' ')
        lead++;
    wrap_words(out, s + lead, strlen(s + lead), first_col, indent);
    free(s);
}

/* "  1. verified by hypopg: cost 3774.00 -> 16.31 (-99.6%), saves ~1180.000 ms over the run,
 * size 2.1 MB"; an unverified one says so on a line of its own, its statements' time (what
 * ranks it) under it. */
static void put_index_header(FILE *out, const report_index *x)
{
    char lead[160], db[64], items[4][96], a[32], b[32];
    const char *list[4];
    size_t n = 0;
    double time_ms = 0;
    bool timed = false;

    if (isfinite(x->cost_before) && isfinite(x->cost_after)) {
        fmt_num(a, sizeof(a), x->cost_before, 12, 2);
        fmt_num(b, sizeof(b), x->cost_after, 12, 2);
        snprintf(items[n], sizeof(items[n]), "cost %s -> %s", a, b);
        if (x->cost_before > 0)
            append(items[n], sizeof(items[n]), " (%+.1f%%)",
                   (x->cost_after - x->cost_before) / x->cost_before * 100.0);
        n++;
    }
    if (isfinite(x->benefit_ms)) {
        fmt_num(a, sizeof(a), x->benefit_ms, 12, 3);
        snprintf(items[n++], sizeof(items[0]), "saves ~%s ms over the run", a);
    }
    if (isfinite(x->size_bytes)) {
        fmt_size(a, sizeof(a), x->size_bytes);
        snprintf(items[n++], sizeof(items[0]), "size %s", a);
    }
    for (size_t i = 0; !x->verified && i < x->n_statements; i++) {
        if (x->statements[i].calls >= 0) {
            time_ms += x->statements[i].total_ms;
            timed = true;
        }
    }
    if (timed) { /* what ranks an unverified one */
        fmt_num(a, sizeof(a), time_ms, 12, 3);
        snprintf(items[n++], sizeof(items[0]), "its statements took %s ms in the run", a);
    }
    for (size_t i = 0; i < n; i++)
        list[i] = items[i];
    if (x->verified) {
        snprintf(lead, sizeof(lead), "%3lld. verified by hypopg%s", (long long)x->rank,
                 n ? ": " : "");
        put_items(out, lead, FINDING_INDENT, list, n);
        return;
    }
    one_line(x->database, db, sizeof(db));
    fit(db, 24);
    fprintf(out, "%3lld. UNVERIFIED (hypopg not installed in database %s: cost not checked)\n",
            (long long)x->rank, db[0] ? db : "(unknown)");
    if (n > 0)
        put_items(out, "     ", FINDING_INDENT, list, n);
}

/* "     helps     SELECT id FROM orders WHERE status = $1 (120 calls, mean 13.333 ms)": the
 * statement's text cut to leave room for its figures. */
static void put_helped(FILE *out, const char *label, const report_index_statement *s)
{
    char text[1024], tail[96] = "", num[32];

    if (s->calls >= 0) {
        fmt_num(num, sizeof(num), s->mean_ms, 12, 3);
        snprintf(tail, sizeof(tail), " (%lld call%s, mean %s ms)", (long long)s->calls,
                 s->calls == 1 ? "" : "s", num);
        one_line(s->query, text, sizeof(text));
        if (!text[0])
            snprintf(text, sizeof(text), "(no text recorded)");
    } else {
        char fp[64];
        one_line(s->fingerprint, fp, sizeof(fp));
        fit(fp, 24);
        snprintf(text, sizeof(text), "statement %s (not among the run's statements)", fp);
    }
    fit(text, LINE_WIDTH - FINDING_INDENT - FINDING_LABEL - (int)strlen(tail));
    fprintf(out, "%*s%-*s%s%s\n", FINDING_INDENT, "", FINDING_LABEL, label, text, tail);
}

/* The table an ANALYZE would name: schema.table, or the table alone. */
static void index_table(char *buf, size_t cap, const report_index *x)
{
    char schema[160], table[160];

    one_line(x->schema, schema, sizeof(schema));
    one_line(x->table, table, sizeof(table));
    if (schema[0]) {
        char q[330];
        sql_name(q, sizeof(q), schema);
        size_t n = strlen(q);
        if (n + 1 < sizeof(q)) {
            q[n] = '.';
            sql_name(q + n + 1, sizeof(q) - n - 1, table);
        }
        snprintf(buf, cap, "%s", q);
    } else {
        sql_name(buf, cap, table);
    }
}

/* The tests that ran the statements a suggestion helps, the most time first. */
static void put_index_tests(FILE *out, const report_index *x)
{
    char text[512] = "";
    size_t listed = x->n_tests < HELPED_LISTED ? x->n_tests : HELPED_LISTED;

    if (x->n_tests == 0)
        return;
    for (size_t i = 0; i < listed; i++)
        append(text, sizeof(text), "%s%s (%lld calls)", i ? ", " : "", x->tests[i].name,
               (long long)x->tests[i].calls);
    if (x->n_tests > listed)
        append(text, sizeof(text), " and %zu more", x->n_tests - listed);
    fprintf(out, "%*s%-*s", FINDING_INDENT, "", FINDING_LABEL, "tests");
    put_wrapped(out, text, FINDING_INDENT + FINDING_LABEL, FINDING_INDENT + FINDING_LABEL);
}

static void put_index(FILE *out, const report_index *x)
{
    char text[512], table[340];
    size_t listed = x->n_statements < HELPED_LISTED ? x->n_statements : HELPED_LISTED;

    put_index_header(out, x);
    fprintf(out, "%*s%-*s", FINDING_INDENT, "", FINDING_LABEL, "index");
    put_sql(out, x->ddl, FINDING_INDENT + FINDING_LABEL, FINDING_INDENT + FINDING_LABEL);
    for (size_t i = 0; i < listed; i++)
        put_helped(out, i ? "" : "helps", &x->statements[i]);
    if (x->n_statements > listed) {
        snprintf(text, sizeof(text), "and %zu more statements (the JSON report lists them all)",
                 x->n_statements - listed);
        put_labeled(out, "", text);
    } else if (x->n_statements == 0) {
        put_labeled(out, "helps", "(no statements recorded)");
    }
    put_index_tests(out, x);
    if (x->write_statements > 0)
        snprintf(text, sizeof(text), "%lld write%s to the table during the run",
                 (long long)x->write_statements, x->write_statements == 1 ? "" : "s");
    else
        snprintf(text, sizeof(text), "no writes to the table during the run");
    if (x->breaks_hot)
        append(text, sizeof(text), "; UPDATEs set an indexed column: HOT updates lost");
    fprintf(out, "%*s%-*s", FINDING_INDENT, "", FINDING_LABEL, "writes");
    put_wrapped(out, text, FINDING_INDENT + FINDING_LABEL, FINDING_INDENT + FINDING_LABEL);
    if (x->misestimate) {
        index_table(table, sizeof(table), x);
        snprintf(text, sizeof(text),
                 "a plan's row estimate was 10x off: run ANALYZE %s (or CREATE STATISTICS) "
                 "before trusting this",
                 table);
        fprintf(out, "%*s%-*s", FINDING_INDENT, "", FINDING_LABEL, "caution");
        put_wrapped(out, text, FINDING_INDENT + FINDING_LABEL, FINDING_INDENT + FINDING_LABEL);
    }
}

/* Index suggestions in the advisor's order (at most --limit): verified ones first, by the time
 * they would save, then unverified ones by their statements' time. Nothing without any: the
 * advisor may be off. */
static void put_indexes(FILE *out, const report_data *d)
{
    size_t shown = d->n_indexes;

    if (d->n_indexes == 0)
        return;
    if (d->limit > 0 && (size_t)d->limit < shown)
        shown = (size_t)d->limit;
    fprintf(out,
            "\nIndex suggestions (%zu of %zu; verified first, by estimated time saved; times "
            "in ms)\n",
            shown, d->n_indexes);
    if (d->all)
        fprintf(out,
                "  from run %lld, the latest run with any: suggestions are not merged across "
                "runs\n",
                (long long)d->indexes_run);
    for (size_t i = 0; i < shown; i++) {
        if (i > 0)
            fputc('\n', out);
        put_index(out, &d->indexes[i]);
    }
}

/* ---------------------------------------------------------------- plan findings */

/* Cuts a node path ("Limit > Sort > Seq Scan on orders") to at most width (> 3) characters from
 * the left, "..." marking the cut: the end of the path, the node itself, matters most. Whole
 * nodes are dropped ("... > Seq Scan on orders") unless the last one alone is too long. */
static void fit_left(char *s, int width)
{
    size_t len = strlen(s), chars = utf8_chars(s, len), skip = 0;

    if (chars <= (size_t)width)
        return;
    for (const char *p = strstr(s, " > "); p && !skip; p = strstr(p + 1, " > "))
        if (3 + utf8_chars(p, len - (size_t)(p - s)) <= (size_t)width)
            skip = (size_t)(p - s);
    if (!skip)
        skip = utf8_prefix(s, len, chars - (size_t)(width - 3));
    memmove(s + 3, s + skip, len - skip + 1);
    memcpy(s, "...", 3);
}

/* "EXPLAIN samples  3 plans; not sampled: 12 budget, 2 dml (explained without ANALYZE), ...":
 * only when EXPLAIN sampling did something (schema 3 and later). */
static void put_explain(FILE *out, const report_data *d)
{
    char lead[128], items[16][64];
    const char *list[16];
    size_t n = 0;

    for (size_t i = 0; i < d->n_explain && n < 16; i++) {
        const report_explain_count *e = &d->explain[i];
        if (strcmp(e->reason, "sample") == 0)
            continue; /* samples decided: the plans are what came of them */
        snprintf(items[n], sizeof(items[n]), "%lld %s%s", (long long)e->count, e->reason,
                 strcmp(e->reason, "dml") == 0 ? " (explained without ANALYZE)" : "");
        list[n] = items[n];
        n++;
    }
    if (d->n_plans == 0 && n == 0)
        return;
    snprintf(lead, sizeof(lead), "  %-22s %zu plan%s%s", "EXPLAIN samples", d->n_plans,
             d->n_plans == 1 ? "" : "s", n ? "; not sampled: " : "");
    put_items(out, lead, FIELD_INDENT, list, n);
}

/* "plan 7: pgscope report --plan 7" */
static void plan_pointer(char *buf, size_t cap, int64_t id)
{
    snprintf(buf, cap, "plan %lld: pgscope report --plan %lld", (long long)id, (long long)id);
}

/* "  1. seq_scan_filter on orders: statement time 1600.000 ms, 120 calls, mean 13.333 ms" */
static void put_plan_finding_header(FILE *out, size_t rank, const report_plan_finding *f)
{
    char kind[40], rel[48], lead[128], items[3][64], num[32];
    const char *const list[] = {items[0], items[1], items[2]};

    one_line(f->kind, kind, sizeof(kind));
    one_line(f->relation, rel, sizeof(rel));
    fit(rel, 40);
    snprintf(lead, sizeof(lead), "%3zu. %s%s%s: ", rank, kind, rel[0] ? " on " : "", rel);
    if (f->calls < 0) {
        put_items(out, lead, FINDING_INDENT, (const char *const[]){"no statement time recorded"},
                  1);
        return;
    }
    fmt_num(num, sizeof(num), f->weight_ms, 12, 3);
    snprintf(items[0], sizeof(items[0]), "statement time %s ms", num);
    snprintf(items[1], sizeof(items[1]), "%lld call%s", (long long)f->calls,
             f->calls == 1 ? "" : "s");
    fmt_num(num, sizeof(num), f->mean_ms, 12, 3);
    snprintf(items[2], sizeof(items[2]), "mean %s ms", num);
    put_items(out, lead, FINDING_INDENT, list, 3);
}

static void put_plan_finding(FILE *out, size_t rank, const report_plan_finding *f)
{
    char path[512], where[160];

    put_plan_finding_header(out, rank, f);
    put_labeled(out, "query", f->query);
    one_line(f->node_path, path, sizeof(path));
    fit_left(path, LINE_WIDTH - FINDING_INDENT - FINDING_LABEL);
    fprintf(out, "%*s%-*s%s\n", FINDING_INDENT, "", FINDING_LABEL, "node", path[0] ? path : "-");
    fprintf(out, "%*s%-*s", FINDING_INDENT, "", FINDING_LABEL, "detail");
    put_wrapped(out, f->detail, FINDING_INDENT + FINDING_LABEL, FINDING_INDENT + FINDING_LABEL);
    plan_pointer(where, sizeof(where), f->plan_id);
    if (f->plans > 1)
        append(where, sizeof(where), ", seen in %lld plans", (long long)f->plans);
    put_labeled(out, "plan", where);
    if (f->test)
        put_labeled(out, "test", f->test);
}

/* Plan findings, the statement that took the most time first: a finding in a statement that
 * runs all day matters more than a bigger one in a statement that ran once. */
static void put_plan_findings(FILE *out, const report_data *d)
{
    size_t shown = d->n_plan_findings;

    if (d->n_plans == 0)
        return; /* nothing sampled: nothing to say either way */
    if (d->n_plan_findings == 0) {
        fprintf(out, "\nNo plan findings in the %zu plan%s sampled.\n", d->n_plans,
                d->n_plans == 1 ? "" : "s");
        return;
    }
    if (d->limit > 0 && (size_t)d->limit < shown)
        shown = (size_t)d->limit;
    fprintf(out, "\nPlan findings by statement time (%zu of %zu; times in ms)\n", shown,
            d->n_plan_findings);
    for (size_t i = 0; i < shown; i++) {
        if (i > 0)
            fputc('\n', out);
        put_plan_finding(out, i + 1, &d->plan_findings[i]);
    }
}

/* Under a statement of the table: "seq_scan_filter at Seq Scan on orders (plan 7: pgscope
 * report --plan 7)", then the detail, whole. */
static void put_statement_finding(FILE *out, const report_plan_finding *f)
{
    char kind[40], path[512], where[96];

    one_line(f->kind, kind, sizeof(kind));
    one_line(f->node_path, path, sizeof(path));
    plan_pointer(where, sizeof(where), f->plan_id);
    int room = LINE_WIDTH - FINDING_INDENT - (int)strlen(kind) - 4 - (int)strlen(where) - 3;
    if (room >= PATH_MIN && path[0]) {
        fit_left(path, room);
        fprintf(out, "%*s%s at %s (%s)\n", FINDING_INDENT, "", kind, path, where);
    } else {
        fprintf(out, "%*s%s (%s)\n", FINDING_INDENT, "", kind, where);
    }
    fprintf(out, "%*s", FIX_INDENT, "");
    put_wrapped(out, f->detail, FIX_INDENT, FIX_INDENT);
}

/* The plan findings of a statement's shape (all its databases and users: shapes are sampled
 * as such), largest first. */
static void put_statement_findings(FILE *out, const report_data *d, const report_statement *s)
{
    for (size_t i = 0; i < d->n_plan_findings; i++)
        if (strcmp(d->plan_findings[i].fingerprint, s->fingerprint) == 0)
            put_statement_finding(out, &d->plan_findings[i]);
}

/* ---------------------------------------------------------------- statements */

static void put_statement_row(FILE *out, const char *rank, const report_statement *s)
{
    char num[8][32], rk[16], query[1024];

    snprintf(rk, sizeof(rk), "%s%s", rank, s->fallback ? "*" : "");
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)s->calls);
    fmt_num(num[1], sizeof(num[1]), s->total_ms, 9, 3);
    fmt_num(num[2], sizeof(num[2]), s->mean_ms, 6, 3);
    fmt_num(num[3], sizeof(num[3]), s->p95_ms, 6, 3);
    fmt_num(num[4], sizeof(num[4]), s->p99_ms, 6, 3);
    fmt_num(num[5], sizeof(num[5]), s->calls > 0 ? (double)s->rows / (double)s->calls : NAN, 9, 2);
    snprintf(num[6], sizeof(num[6]), "%lld", (long long)s->errors);
    one_line(s->query, query, sizeof(query));
    fit(query, LINE_WIDTH - TABLE_PREFIX);
    fprintf(out, TABLE_HEADER_FMT, rk, num[0], num[1], num[2], num[3], num[4], num[5], num[6],
            query);
}

static void put_statement(FILE *out, size_t rank, const report_statement *s)
{
    char rk[16];

    snprintf(rk, sizeof(rk), "%zu", rank);
    put_statement_row(out, rk, s);
}

/* "22012 division_by_zero 5" items, wrapped at the line width under the rank. */
static void put_errors_of(FILE *out, size_t rank, const report_statement *s)
{
    int col = fprintf(out, "  %3zu ", rank);

    for (size_t i = 0; i < s->n_errs; i++) {
        const report_error *e = &s->errs[i];
        const char *name = e->sqlstate[0] ? sqlstate_name(e->sqlstate) : NULL;
        char item[96];
        int n = snprintf(item, sizeof(item), " %s%s%s %lld%s",
                         e->sqlstate[0] ? e->sqlstate : "other", name ? " " : "", name ? name : "",
                         (long long)e->count, i + 1 < s->n_errs ? "," : "");
        if (col + n > LINE_WIDTH && col > 6)
            col = fprintf(out, "\n      ");
        col += fprintf(out, "%s", item);
    }
    fputc('\n', out);
}

static void put_errors(FILE *out, const report_data *d)
{
    bool any = false;

    for (size_t i = 0; i < d->n_stmts; i++)
        any |= d->stmts[i].n_errs > 0;
    if (!any)
        return;
    fprintf(out, "\nErrors by SQLSTATE (statement #, code, count)\n");
    for (size_t i = 0; i < d->n_stmts; i++)
        if (d->stmts[i].n_errs > 0)
            put_errors_of(out, i + 1, &d->stmts[i]);
}

static void put_statements(FILE *out, const report_data *d)
{
    bool fallback = false;

    if (d->n_stmts == 0) {
        fprintf(out, "\nNo statements recorded%s.\n", d->all ? "" : " in this run");
        return;
    }
    fprintf(out, "\nTop statements by total time (%zu of %lld shapes; times in ms)\n", d->n_stmts,
            (long long)d->shapes);
    fprintf(out, TABLE_HEADER_FMT, "#", "calls", "total ms", "mean", "p95", "p99", "rows/call",
            "errors", "query");
    for (size_t i = 0; i < d->n_stmts; i++) {
        put_statement(out, i + 1, &d->stmts[i]);
        put_statement_findings(out, d, &d->stmts[i]);
        fallback |= d->stmts[i].fallback;
    }
    if (d->other) {
        report_statement other = *d->other;
        char text[128];
        snprintf(text, sizeof(text), "(other statements: %lld shapes)",
                 (long long)d->folded_shapes);
        other.query = text;
        other.fallback = false;
        put_statement_row(out, "-", &other);
    }
    if (fallback)
        fprintf(out, "  * libpg_query could not parse this text: it is grouped under a fallback "
                     "fingerprint.\n");
    put_errors(out, d);
}

bool report_render_text(FILE *out, const report_data *d, const char *path)
{
    char where[512];

    one_line(path, where, sizeof(where));
    if (d->n_runs == 0) {
        fprintf(out, "No runs recorded in %s yet: run `pgscope proxy --db %s` first.\n", where,
                where);
        return true;
    }
    fprintf(out, "pgscope report of %s\n\n", where);
    put_summary(out, d);
    put_findings(out, d);
    put_tests(out, d);
    put_indexes(out, d);
    put_plan_findings(out, d);
    put_statements(out, d);
    return true;
}

/* ---------------------------------------------------------------- one plan (--plan ID) */

static void put_ms(FILE *out, const char *key, double ms, const char *unknown)
{
    char num[32], buf[64];

    fmt_num(num, sizeof(num), ms, 12, 3);
    snprintf(buf, sizeof(buf), "%s ms", num);
    put_field(out, key, isfinite(ms) ? buf : unknown);
}

/* A field whose value is text from the file, whole, wrapped under the value column. */
static void put_long_field(FILE *out, const char *key, const char *value)
{
    fprintf(out, "  %-22s ", key);
    put_wrapped(out, value, FIELD_INDENT, FIELD_INDENT);
}

static void put_plan_header(FILE *out, const report_plan_detail *p)
{
    const report_plan *pl = &p->plan;
    char label[256], buf[320];

    one_line(p->run_label, label, sizeof(label));
    fprintf(out, "Plan %lld of run %lld%s%s%s (number %lld in the run)\n", (long long)pl->id,
            (long long)pl->run_id, p->run_label ? " \"" : "", label, p->run_label ? "\"" : "",
            (long long)pl->seq);
    put_long_field(out, "query", pl->query);
    put_field(out, "fingerprint", pl->fingerprint);
    one_line(pl->database, buf, sizeof(buf));
    put_field(out, "database", buf[0] ? buf : "(unknown)");
    one_line(pl->user, buf, sizeof(buf));
    put_field(out, "user", buf[0] ? buf : "(unknown)");
    snprintf(buf, sizeof(buf), "%s UTC", pl->taken_at ? pl->taken_at : "?");
    put_field(out, "taken", buf);
    put_ms(out, "trigger duration", pl->trigger_ms, "-"); /* the call that was sampled */
    put_ms(out, "planning", pl->planning_ms, "-");
    put_ms(out, "execution", pl->execution_ms, pl->analyzed ? "-" : "none: not executed");
    put_ms(out, "side connection", pl->side_ms, "-");
    put_field(out, "explained",
              pl->analyzed ? "EXPLAIN ANALYZE" : "planned only (DML, not executed)");
    if (pl->params)
        put_long_field(out, "params", pl->params);
    else
        put_field(out, "params", "not stored (store_params is off)");
}

/* Multi-line text from the file (the tree) with control characters other than the line ends
 * made spaces: a terminal escape in a plan's expression must not reach the terminal. */
static void put_lines(FILE *out, const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        fputc(*c == '\n' || (*c >= ' ' && *c != 0x7f) ? *c : ' ', out);
    if (text[0] && text[strlen(text) - 1] != '\n')
        fputc('\n', out);
}

static void put_plan_tree(FILE *out, const report_plan_detail *p)
{
    char *tree = explain_plan_tree(p->text);

    fputc('\n', out);
    if (tree) {
        put_lines(out, tree);
        free(tree);
        return;
    }
    /* Not a plan this pgscope can read (or out of memory): the text as it is, hidden from no
     * one. */
    fprintf(out, "The plan could not be read as EXPLAIN (FORMAT JSON) output; as stored:\n");
    put_lines(out, p->text ? p->text : "");
}

static void put_plan_detail_findings(FILE *out, const report_plan_detail *p)
{
    if (p->n_findings == 0) {
        fprintf(out, "\nNo findings in this plan.\n");
        return;
    }
    fprintf(out, "\nFindings (%zu)\n", p->n_findings);
    for (size_t i = 0; i < p->n_findings; i++) {
        const report_plan_finding *f = &p->findings[i];
        char kind[40], path[512];
        one_line(f->kind, kind, sizeof(kind));
        one_line(f->node_path, path, sizeof(path));
        fit_left(path, LINE_WIDTH - FINDING_INDENT - (int)strlen(kind) - 4);
        fprintf(out, "%3zu. %s%s%s\n", i + 1, kind, path[0] ? " at " : "", path);
        fprintf(out, "%*s", FINDING_INDENT, "");
        put_wrapped(out, f->detail, FINDING_INDENT, FINDING_INDENT);
    }
}

bool report_render_plan_text(FILE *out, const report_plan_detail *p)
{
    put_plan_header(out, p);
    put_plan_tree(out, p);
    put_plan_detail_findings(out, p);
    return true;
}
