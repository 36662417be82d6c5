/* render_text.c — the report for people: run summary, then the top statements by total time as
 * a table that fits a 100-column terminal. */
#include "config.h"

#include "report_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LINE_WIDTH 100
#define RUNS_LISTED 10 /* runs listed one per line in the merged view */

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

/* Cuts UTF-8 text to at most width characters, marking the cut with "...". */
static void fit(char *s, int width)
{
    int chars = 0;
    size_t cut = 0;

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

static void put_summary(FILE *out, const report_data *d)
{
    report_run sum;

    sum_runs(d, &sum);
    if (d->all) {
        put_all_runs(out, d, &sum);
    } else {
        put_single_run(out, d);
    }
    put_counters(out, &sum);
    if (d->all) {
        size_t from = d->n_runs > RUNS_LISTED ? d->n_runs - RUNS_LISTED : 0;
        fprintf(out, "  runs%s\n", from ? " (the latest)" : "");
        for (size_t i = from; i < d->n_runs; i++)
            put_run_line(out, &d->runs[i]);
    }
    put_warnings(out, d, &sum);
}

/* ---------------------------------------------------------------- statements */

static void put_statement(FILE *out, size_t rank, const report_statement *s)
{
    char num[8][32], rk[16], query[1024];

    snprintf(rk, sizeof(rk), "%zu%s", rank, s->fallback ? "*" : "");
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
        fallback |= d->stmts[i].fallback;
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
    put_statements(out, d);
    return true;
}
