/* render_html.c — `pgscope report --format html`: one self-contained page (CSS and a little
 * script inline, charts as inline SVG drawn here, no request to anywhere), in the order a person
 * fixes things: the verdict, the N+1 and repeated-query cards with their fixes, the index
 * suggestions, the plan findings with their plans as trees, where the time went, the top
 * statements with a latency histogram each, the tests. Readable with the script off: it only
 * copies text and sorts tables. Every value is escaped; nothing the stored report does not hold
 * appears (with store_params off, no value the application sent). */
#include "config.h"

#include "report_int.h"

#include "pgscope/explain.h"
#include "pgscope/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HTML_MAX_PLANS 50 /* plan findings shown with their plan tree */
#define HTML_MAX_TESTS 500
#define HIST_BINS 40     /* bars of a statement's latency histogram */
#define HIST_MIN_SPAN 20 /* buckets a histogram spans at least: +-20% around a narrow spread */
#define CHART_BARS 10    /* shapes or tests in a time chart before "all others" */

/* ---- escaping ---- */

/* Text or an attribute value: & < > " ' escaped, bytes that are not UTF-8 as U+FFFD, control
 * characters but tab and newline as spaces. */
static void esc(FILE *out, const char *s)
{
    size_t len = s ? strlen(s) : 0;

    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = report_utf8_sequence((const unsigned char *)s + i, len - i);
        if (k == 0) {
            fputs("\xEF\xBF\xBD", out);
            i++;
            continue;
        }
        if (k > 1)
            fwrite(s + i, 1, k, out);
        else if (c == '&')
            fputs("&amp;", out);
        else if (c == '<')
            fputs("&lt;", out);
        else if (c == '>')
            fputs("&gt;", out);
        else if (c == '"')
            fputs("&quot;", out);
        else if (c == '\'')
            fputs("&#39;", out);
        else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            fputc(' ', out);
        else
            fputc(c, out);
        i += k;
    }
}

/* ---- the page ---- */

static const char STYLE[] =
    ":root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--bad:#a40e26;"
    "--warn:#7d4e00;--good:#1a7f37;--bar:#0969da;--hit:#fff8c5}"
    "*{box-sizing:border-box}"
    "body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);"
    "background:var(--bg);margin:0 auto;padding:16px;max-width:1200px}"
    "h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.3em;margin:1.6em 0 .5em;"
    "border-bottom:1px solid var(--line);padding-bottom:.2em}h3{font-size:1.05em;margin:0 0 .4em}"
    "code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}"
    "pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px;"
    "overflow-x:auto;white-space:pre-wrap;word-break:break-word;margin:.3em 0}"
    ".muted{color:var(--muted)}nav{display:flex;flex-wrap:wrap;gap:.2em 1em}"
    ".verdict{border:2px solid var(--line);border-radius:8px;padding:12px 16px;margin:12px 0}"
    ".verdict.bad{border-color:var(--bad)}.verdict.good{border-color:var(--good)}"
    ".verdict strong{font-size:1.15em}"
    ".figures{display:flex;flex-wrap:wrap;gap:8px 24px;margin:.4em 0 0;padding:0;list-style:none}"
    ".card{border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:12px 0}"
    ".card dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:.4em 0}"
    ".card dt{color:var(--muted)}.card dd{margin:0;min-width:0}"
    ".tag{display:inline-block;border:1px solid currentColor;border-radius:4px;padding:0 6px;"
    "font-size:.85em;margin-right:4px}.tag.high{color:var(--bad)}.tag.medium{color:var(--warn)}"
    "button.copy{float:right;font:inherit;font-size:.85em;padding:2px 8px;cursor:pointer}"
    "table{border-collapse:collapse;width:100%;font-size:.92em}"
    "th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}"
    "th{background:var(--soft);position:sticky;top:0}th[data-sort]{cursor:pointer}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "td.q code{word-break:break-word}.scroll{overflow-x:auto}"
    ".tree details{margin-left:1.1em}.tree>details{margin-left:0}"
    ".tree summary{font:13px/1.5 ui-monospace,Menlo,Consolas,monospace;cursor:pointer}"
    ".tree .props{margin:0 0 0 1.4em;white-space:pre-wrap;color:var(--muted);"
    "font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}"
    ".tree .hit>summary{background:var(--hit);outline:2px solid var(--warn);font-weight:bold}"
    "svg text{font:11px system-ui,sans-serif;fill:var(--fg)}svg .b{fill:var(--bar)}svg "
    ".b0{fill:#8c959f}"
    "svg.share{width:100%;max-width:640px;display:block}figure{margin:1em 0}"
    "svg .m{stroke:var(--bad);stroke-width:1.5}svg .m50{stroke:var(--fg)}"
    "@media (max-width:700px){body{padding:8px}.card dl{grid-template-columns:1fr}"
    "td.h,th.h{display:none}}"
    "@media print{nav,button.copy{display:none}details{display:block}"
    ".card,table{break-inside:avoid}body{max-width:none}}";

/* Copy buttons, sortable tables, and a link to a plan (#plan-7) opening it: the page reads the
 * same without them. */
static const char SCRIPT[] =
    "function openHash(){var e=location.hash&&document.getElementById(location.hash.slice(1));"
    "for(;e;e=e.parentElement)if(e.tagName==='DETAILS')e.open=true;}"
    "openHash();window.addEventListener('hashchange',openHash);"
    "document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',"
    "function(){var t=document.getElementById(b.dataset.copy).textContent;"
    "if(navigator.clipboard){navigator.clipboard.writeText(t).then(function(){"
    "b.textContent='Copied';},function(){b.textContent='Select and copy';});}});});"
    "document.querySelectorAll('th[data-sort]').forEach(function(th){th.addEventListener("
    "'click',function(){var tb=th.closest('table').tBodies[0],i=th.cellIndex,"
    "num=th.dataset.sort==='n',asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';"
    "var rows=Array.prototype.slice.call(tb.rows);rows.sort(function(a,b){"
    "var x=a.cells[i].dataset.v||a.cells[i].textContent,y=b.cells[i].dataset.v||"
    "b.cells[i].textContent;var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);"
    "return asc?c:-c;});rows.forEach(function(r){tb.appendChild(r);});});});";

static int64_t statements_of(const report_data *d)
{
    int64_t n = 0;

    for (size_t i = 0; i < d->n_runs; i++)
        n += d->runs[i].statements;
    return n;
}

static double total_time(const report_data *d)
{
    double ms = 0;

    for (size_t i = 0; i < d->n_stmts; i++)
        ms += d->stmts[i].total_ms;
    return ms + (d->other ? d->other->total_ms : 0);
}

void report_html_text(FILE *out, const char *s)
{
    esc(out, s);
}

void report_html_begin(FILE *out, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
          "<meta name=\"color-scheme\" content=\"light\"><title>",
          out);
    esc(out, title);
    fprintf(out, "</title><style>%s</style></head><body>\n", STYLE);
}

void report_html_end(FILE *out, const char *version)
{
    fputs("</main><footer class=\"muted\"><p>Written by pgscope", out);
    if (version) {
        fputs(" ", out);
        esc(out, version);
    }
    fputs(". Values the application sent appear only when store_params was on.</p></footer>", out);
    fprintf(out, "<script>%s</script></body></html>\n", SCRIPT);
}

static void page_head(FILE *out, const report_data *d)
{
    char title[64];

    if (d->n_runs == 1)
        snprintf(title, sizeof(title), "pgscope report, run %lld", (long long)d->runs[0].id);
    else
        snprintf(title, sizeof(title), "pgscope report, %zu runs", d->n_runs);
    report_html_begin(out, title);
}

/* check's verdict: passed, or the rules that failed, each with its test, numbers and SQL. */
static void gate_verdict(FILE *out, const report_gate *g)
{
    size_t failed = 0;

    for (size_t i = 0; i < g->n; i++)
        failed += g->problems[i].failed;
    fprintf(out, "<div class=\"verdict %s\" id=\"gate\"><strong>", failed ? "bad" : "good");
    if (failed)
        fprintf(out, "&#10007; pgscope check failed: %zu problem%s", failed,
                failed == 1 ? "" : "s");
    else
        fputs("&#10003; pgscope check passed", out);
    fputs("</strong> <span class=\"muted\">", out);
    esc(out, g->rules);
    fputs("</span>", out);
    if (failed)
        fputs("<div class=\"scroll\"><table><thead><tr><th>rule</th><th>test</th><th>what</th>"
              "<th>query</th></tr></thead><tbody>",
              out);
    for (size_t i = 0; i < g->n; i++) {
        const report_problem *p = &g->problems[i];
        if (!p->failed)
            continue;
        fputs("<tr><td>", out);
        esc(out, p->title);
        fputs("</td><td><code>", out);
        esc(out, p->test ? p->test : "");
        fputs("</code></td><td>", out);
        esc(out, p->detail);
        fputs("</td><td class=\"q\"><code>", out);
        esc(out, p->query ? p->query : "");
        fputs("</code></td></tr>", out);
    }
    fputs(failed ? "</tbody></table></div></div>" : "</div>", out);
}

static void verdict(FILE *out, const report_data *d, const report_gate *gate)
{
    size_t problems = d->n_findings + d->n_plan_findings;
    double seconds = 0;

    for (size_t i = 0; i < d->n_runs; i++)
        seconds += isfinite(d->runs[i].duration_s) ? d->runs[i].duration_s : 0;
    fputs("<header><h1>pgscope report</h1>", out);
    fprintf(out, "<div class=\"verdict %s\" id=\"verdict\"><strong>%s</strong>",
            problems ? "bad" : "good",
            problems ? "&#10007; Something to fix" : "&#10003; Nothing to fix found");
    fputs("<ul class=\"figures\">", out);
    if (d->n_runs == 1) {
        const report_run *r = &d->runs[0];
        fprintf(out, "<li>run %lld", (long long)r->id);
        if (r->label) {
            fputs(" (", out);
            esc(out, r->label);
            fputs(")", out);
        }
        fputs("</li><li>started ", out);
        esc(out, r->started_at ? r->started_at : "?");
        fputs(" UTC</li>", out);
    } else {
        fprintf(out, "<li>%zu runs merged</li>", d->n_runs);
    }
    fprintf(out, "<li>duration %.1f s</li><li>%lld statements in %lld shapes</li>", seconds,
            (long long)statements_of(d), (long long)d->shapes);
    fprintf(out,
            "<li>%zu N+1 or repeated-query finding%s</li><li>%zu plan finding%s</li>"
            "<li>%zu index suggestion%s</li></ul></div>",
            d->n_findings, d->n_findings == 1 ? "" : "s", d->n_plan_findings,
            d->n_plan_findings == 1 ? "" : "s", d->n_indexes, d->n_indexes == 1 ? "" : "s");
    if (gate)
        gate_verdict(out, gate);
    fputs("<nav><a href=\"#findings\">Findings</a><a href=\"#indexes\">Indexes</a>"
          "<a href=\"#plans\">Plans</a><a href=\"#time\">Time</a>"
          "<a href=\"#statements\">Statements</a><a href=\"#tests\">Tests</a></nav></header>\n",
          out);
}

/* A labelled value of a card; skipped when text is NULL or empty. */
static void item(FILE *out, const char *label, const char *text, bool code)
{
    if (!text || !text[0])
        return;
    fprintf(out, "<dt>%s</dt><dd>%s", label, code ? "<code>" : "");
    esc(out, text);
    fprintf(out, "%s</dd>", code ? "</code>" : "");
}

/* SQL with a copy button; id names the block for the button. */
static void copy_block(FILE *out, const char *id, const char *label, const char *text)
{
    fprintf(out, "<div><button class=\"copy\" type=\"button\" data-copy=\"%s\">Copy %s</button>",
            id, label);
    fprintf(out, "<pre id=\"%s\">", id);
    esc(out, text);
    fputs("</pre></div>", out);
}

static void finding_card(FILE *out, size_t k, const report_nplusone *f)
{
    char num[160], id[32];
    const char *proof = f->duplicate || f->insert_loop ? "" : f->confirmed ? "proven" : "suspected";

    fprintf(out, "<article class=\"card finding\" id=\"finding-%zu\"><h3>%zu. %s ", k, k,
            report_kind_name(f));
    if (proof[0])
        fprintf(out, "<span class=\"tag\">%s</span>", proof);
    fputs("<span class=\"tag ", out); /* the file's text, escaped even where it is a word */
    esc(out, f->severity);
    fputs("\">", out);
    esc(out, f->severity);
    fputs(" severity</span></h3><dl>", out);
    item(out, "parent", f->parent_query, true);
    for (size_t i = 0; i < f->n_child_queries; i++)
        item(out, f->parent_query ? "child" : "query", f->child_queries[i], true);
    snprintf(num, sizeof(num), "%lld at most in one unit of work, %lld in all, %lld occurrence%s",
             (long long)f->max_n, (long long)f->total_n, (long long)f->occurrences,
             f->occurrences == 1 ? "" : "s");
    item(out, "executions", num, false);
    snprintf(num, sizeof(num), "%.3f ms in the repeated statements; a batched query saves ~%.3f ms",
             f->total_ms, f->saving_ms);
    item(out, "cost", num, false);
    if (f->confirmed && f->linked_column) {
        if (f->chance >= 0)
            snprintf(num, sizeof(num), "%s (chance of coincidence %.0e)", f->linked_column,
                     f->chance);
        else
            snprintf(num, sizeof(num), "%s", f->linked_column);
        item(out, "linked column", num, true);
    }
    item(out, "ORM", f->orm, false);
    item(out, "test", f->test, true);
    fputs("</dl>", out);
    if (f->suggestion) {
        snprintf(id, sizeof(id), "fix-%zu", k);
        copy_block(out, id, "fix", f->suggestion);
    }
    fputs("</article>\n", out);
}

static void findings(FILE *out, const report_data *d)
{
    fprintf(out, "<section id=\"findings\"><h2>N+1 loops and repeated queries (%zu)</h2>",
            d->n_findings);
    if (d->n_findings == 0)
        fputs("<p>None found.</p>", out);
    for (size_t i = 0; i < d->n_findings; i++)
        finding_card(out, i + 1, &d->findings[i]);
    fputs("</section>\n", out);
}

static void index_card(FILE *out, const report_index *x)
{
    char text[256], id[32];

    fprintf(out, "<article class=\"card index\"><h3>%lld. %s</h3>", (long long)x->rank,
            x->verified ? "Verified with hypopg" : "UNVERIFIED (hypopg not installed)");
    snprintf(id, sizeof(id), "ddl-%lld", (long long)x->rank);
    copy_block(out, id, "DDL", x->ddl);
    fputs("<dl>", out);
    if (!isnan(x->cost_before) && !isnan(x->cost_after)) {
        snprintf(text, sizeof(text), "%.2f &#8594; %.2f (%+.1f%%)", x->cost_before, x->cost_after,
                 x->cost_before > 0 ? 100.0 * (x->cost_after - x->cost_before) / x->cost_before
                                    : 0.0);
        fprintf(out, "<dt>planner cost</dt><dd>%s</dd>", text); /* numbers only: no escaping */
    }
    if (!isnan(x->benefit_ms)) {
        snprintf(text, sizeof(text), "~%.3f ms over the run", x->benefit_ms);
        item(out, "saves", text, false);
    }
    if (!isnan(x->size_bytes)) {
        snprintf(text, sizeof(text), "%.1f MB (estimated)", x->size_bytes / 1048576.0);
        item(out, "size", text, false);
    }
    for (size_t i = 0; i < x->n_statements; i++) {
        const report_index_statement *s = &x->statements[i];
        fputs(i ? "<dt></dt><dd>" : "<dt>helps</dt><dd>", out);
        fputs("<code>", out);
        esc(out, s->query ? s->query : s->fingerprint);
        if (s->calls >= 0)
            fprintf(out, "</code> <span class=\"muted\">%lld calls, mean %.3f ms</span></dd>",
                    (long long)s->calls, s->mean_ms);
        else
            fputs("</code></dd>", out);
    }
    for (size_t i = 0; i < x->n_tests; i++) {
        fputs(i ? "<dt></dt><dd><code>" : "<dt>tests</dt><dd><code>", out);
        esc(out, x->tests[i].name);
        fprintf(out, "</code> <span class=\"muted\">%lld calls</span></dd>",
                (long long)x->tests[i].calls);
    }
    snprintf(text, sizeof(text), "%lld write%s to the table during the run%s",
             (long long)x->write_statements, x->write_statements == 1 ? "" : "s",
             x->breaks_hot ? "; UPDATEs set an indexed column: HOT updates lost" : "");
    item(out, "writes", text, false);
    if (x->misestimate)
        item(out, "caution",
             "a plan's row estimate was 10x off: run ANALYZE (or CREATE STATISTICS) first", false);
    fputs("</dl></article>\n", out);
}

static void indexes(FILE *out, const report_data *d)
{
    fprintf(out, "<section id=\"indexes\"><h2>Index suggestions (%zu)</h2>", d->n_indexes);
    if (d->n_indexes == 0)
        fputs("<p>None.</p>", out);
    for (size_t i = 0; i < d->n_indexes; i++)
        index_card(out, &d->indexes[i]);
    fputs("</section>\n", out);
}

/* ---- plan trees ---- */

typedef struct {
    FILE *out;
    const char *hit; /* the finding's node path */
    const char *kind;
    int depth; /* of the last node opened; -1 before the root */
} tree_state;

static void tree_node(const explain_plan_node *n, void *arg)
{
    tree_state *t = arg;
    bool hit = t->hit && strcmp(n->path, t->hit) == 0;

    for (; t->depth >= n->depth; t->depth--)
        fputs("</details>", t->out);
    t->depth = n->depth;
    fprintf(t->out, "<details open%s><summary>", hit ? " class=\"hit\"" : "");
    if (n->subplan) {
        esc(t->out, n->subplan);
        fputs(": ", t->out);
    }
    esc(t->out, n->line);
    if (hit) {
        fputs(" <mark>&#9664; finding: ", t->out);
        esc(t->out, t->kind);
        fputs("</mark>", t->out);
    }
    fputs("</summary>", t->out);
    if (n->props[0]) {
        fputs("<div class=\"props\">", t->out);
        esc(t->out, n->props);
        fputs("</div>", t->out);
    }
}

static void plan_tree(FILE *out, const report_plan_finding *f, const report_html_plans *plans)
{
    char *json = plans && plans->json ? plans->json(f->plan_id, plans->ctx) : NULL;
    tree_state t = {out, f->node_path, f->kind, -1};

    fprintf(out,
            "<details class=\"plan\" id=\"plan-%lld\"><summary>Plan %lld as a tree</summary>"
            "<div class=\"tree\">",
            (long long)f->plan_id, (long long)f->plan_id);
    if (!json || !explain_plan_nodes(json, tree_node, &t))
        fputs("<p class=\"muted\">The plan is not in this file.</p>", out);
    for (; t.depth >= 0; t.depth--)
        fputs("</details>", out);
    fputs("</div></details>", out);
    free(json);
}

static void plan_findings(FILE *out, const report_data *d, const report_html_plans *plans)
{
    size_t shown = d->n_plan_findings < HTML_MAX_PLANS ? d->n_plan_findings : HTML_MAX_PLANS;

    fprintf(out, "<section id=\"plans\"><h2>Plan findings by statement time (%zu)</h2>",
            d->n_plan_findings);
    if (d->n_plan_findings == 0)
        fprintf(out, "<p>None in the %zu plan%s sampled.</p>", d->n_plans,
                d->n_plans == 1 ? "" : "s");
    for (size_t i = 0; i < shown; i++) {
        const report_plan_finding *f = &d->plan_findings[i];
        char text[160];
        fprintf(out, "<article class=\"card planfinding\"><h3>%zu. ", i + 1);
        esc(out, f->kind);
        if (f->relation && f->relation[0]) {
            fputs(" on ", out);
            esc(out, f->relation);
        }
        fputs("</h3><dl>", out);
        item(out, "query", f->query, true);
        if (f->calls >= 0) {
            snprintf(text, sizeof(text), "%.3f ms in %lld calls, mean %.3f ms", f->weight_ms,
                     (long long)f->calls, f->mean_ms);
            item(out, "statement time", text, false);
        }
        item(out, "node", f->node_path, true);
        item(out, "detail", f->detail, false);
        item(out, "test", f->test, true);
        fputs("</dl>", out);
        plan_tree(out, f, plans);
        fputs("</article>\n", out);
    }
    if (shown < d->n_plan_findings)
        fprintf(out,
                "<p class=\"muted\">The first %zu of %zu are shown; the text and JSON "
                "reports list them all.</p>",
                shown, d->n_plan_findings);
    fputs("</section>\n", out);
}

/* ---- charts ---- */

typedef struct {
    const char *label;
    double ms;
} bar;

/* A horizontal bar chart of shares of the total: per item its label, then its bar with the
 * percent written beside it (no colour-only signal); narrow enough to read on a phone. */
static void share_chart(FILE *out, const char *title, const bar *bars, size_t n, double total)
{
    fprintf(out, "<figure><figcaption>%s</figcaption>", title);
    fprintf(out, "<svg class=\"share\" role=\"img\" viewBox=\"0 0 400 %zu\"><title>%s</title>",
            36 * n, title);
    for (size_t i = 0; i < n; i++) {
        double share = total > 0 ? bars[i].ms / total : 0;
        char label[60];
        report_one_line(bars[i].label, label, sizeof(label));
        fprintf(out, "<text x=\"0\" y=\"%zu\">", 36 * i + 12);
        esc(out, label);
        fprintf(out,
                "</text><rect class=\"b\" x=\"0\" y=\"%zu\" width=\"%.1f\" height=\"12\"/>"
                "<text x=\"%.1f\" y=\"%zu\">%.1f%% (%.1f ms)</text>",
                36 * i + 17, 1 + 300 * share, 5 + 300 * share, 36 * i + 27, 100 * share,
                bars[i].ms);
    }
    fputs("</svg></figure>", out);
}

static void time_charts(FILE *out, const report_data *d)
{
    bar bars[CHART_BARS + 1];
    double total = total_time(d), shown = 0;
    size_t n = 0;

    fputs("<section id=\"time\"><h2>Where the time went</h2>", out);
    for (; n < d->n_stmts && n < CHART_BARS; n++) {
        bars[n] = (bar){d->stmts[n].query ? d->stmts[n].query : d->stmts[n].fingerprint,
                        d->stmts[n].total_ms};
        shown += bars[n].ms;
    }
    if (total - shown > 0.0005)
        bars[n++] = (bar){"all other statements", total - shown};
    if (n > 0)
        share_chart(out, "Share of statement time by shape", bars, n, total);
    else
        fputs("<p>No statements.</p>", out);
    double tests_total = 0;
    for (size_t i = 0; i < d->n_tests; i++)
        tests_total += d->tests[i].total_ms;
    n = 0;
    shown = 0;
    for (; n < d->n_tests && n < CHART_BARS; n++) {
        bars[n] = (bar){d->tests[n].name, d->tests[n].total_ms};
        shown += bars[n].ms;
    }
    if (tests_total - shown > 0.0005)
        bars[n++] = (bar){"all other tests", tests_total - shown};
    if (n > 0)
        share_chart(out, "Share of statement time by test", bars, n, tests_total);
    fputs("</section>\n", out);
}

/* p50, p95 and p99 as lines over a histogram of span buckets from lo; markers a few bars apart
 * share one label ("p95/p99"), so that labels never overlap. */
static void markers(FILE *out, const report_statement *s, int lo, int span)
{
    static const char *const names[] = {"p50", "p95", "p99"};
    const double at[] = {s->p50_ms, s->p95_ms, s->p99_ms};
    int bin[3];

    for (int k = 0; k < 3; k++) {
        int b = isfinite(at[k]) ? (stats_hist_index(at[k] * 1000) - lo) * HIST_BINS / span : 0;
        bin[k] = b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b;
    }
    for (int k = 0; k < 3; k++) {
        double x = 2 + 4.0 * bin[k] + 1.5;
        bool labelled = k == 0 || bin[k] - bin[k - 1] > 3; /* else the previous label has it */
        fprintf(out,
                "<g class=\"%s\"><line class=\"m%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"2\" y2=\"31\"/>",
                names[k], k == 0 ? " m50" : "", x, x);
        if (labelled) {
            int last = k;
            while (last < 2 && bin[last + 1] - bin[last] <= 3)
                last++;
            fprintf(out, "<text x=\"%.1f\" y=\"39\" text-anchor=\"%s\">", x,
                    x < 20    ? "start"
                    : x > 144 ? "end"
                              : "middle");
            for (int j = k; j <= last; j++)
                fprintf(out, "%s%s", j > k ? "/" : "", names[j]);
            fputs("</text>", out);
        }
        fputs("</g>", out);
    }
}

/* A statement's latency histogram: its occupied buckets in HIST_BINS bars on a log scale,
 * with p50, p95 and p99 marked by lines and labels. */
static void histogram(FILE *out, const report_statement *s)
{
    const stats_hist *h = s->hist;
    int lo = STATS_HIST_BUCKETS, hi = -1;
    uint64_t bins[HIST_BINS] = {0}, top = 0;

    for (int i = 0; h && i < STATS_HIST_BUCKETS; i++) {
        if (h->buckets[i]) {
            lo = i < lo ? i : lo;
            hi = i;
        }
    }
    if (hi < 0) {
        fputs("<span class=\"muted\">-</span>", out);
        return;
    }
    /* A narrow spread (one bucket: calls within 2% of each other) drawn over +-20%, centred. */
    if (hi - lo + 1 < HIST_MIN_SPAN) {
        int widen = HIST_MIN_SPAN - (hi - lo + 1);
        lo = lo - widen / 2 > 0 ? lo - widen / 2 : 0;
        hi = lo + HIST_MIN_SPAN - 1;
    }
    int span = hi - lo + 1;
    for (int i = lo; i <= hi; i++)
        bins[(i - lo) * HIST_BINS / span] += h->buckets[i];
    for (int i = 0; i < HIST_BINS; i++)
        top = bins[i] > top ? bins[i] : top;
    fprintf(out,
            "<svg class=\"hist\" role=\"img\" viewBox=\"0 0 164 40\" width=\"164\" height=\"40\">"
            "<title>latency: p50 %.3f ms, p95 %.3f ms, p99 %.3f ms</title><path class=\"b\" d=\"",
            s->p50_ms, s->p95_ms, s->p99_ms);
    for (int i = 0; i < HIST_BINS; i++)
        if (bins[i])
            fprintf(out, "M%d 30h3v-%.1fh-3z", 2 + 4 * i, 1 + 25.0 * (double)bins[i] / (double)top);
    fputs("\"/>", out);
    markers(out, s, lo, span);
    fputs("</svg>", out);
}

static void statements(FILE *out, const report_data *d)
{
    size_t shown =
        d->n_stmts < REPORT_HTML_MAX_STATEMENTS ? d->n_stmts : REPORT_HTML_MAX_STATEMENTS;

    fprintf(out,
            "<section id=\"statements\"><h2>Top statements by total time</h2>"
            "<p class=\"muted\">%zu of %lld shapes, the most time first; click a column to sort."
            "</p><div class=\"scroll\"><table><thead><tr><th data-sort=\"n\" class=\"n\">#</th>"
            "<th data-sort=\"t\">query</th><th data-sort=\"n\" class=\"n\">calls</th>"
            "<th data-sort=\"n\" class=\"n\">total ms</th><th data-sort=\"n\" class=\"n\">mean</th>"
            "<th data-sort=\"n\" class=\"n\">p95</th><th data-sort=\"n\" class=\"n h\">p99</th>"
            "<th data-sort=\"n\" class=\"n h\">rows/call</th>"
            "<th data-sort=\"n\" class=\"n h\">errors</th><th class=\"h\">latency</th></tr></thead>"
            "<tbody>",
            shown, (long long)d->shapes);
    for (size_t i = 0; i < shown; i++) {
        const report_statement *s = &d->stmts[i];
        double rows = s->calls > 0 ? (double)s->rows / (double)s->calls : 0;
        fprintf(out, "<tr><td class=\"n\">%zu</td><td class=\"q\"><code>", i + 1);
        esc(out, s->query ? s->query : s->fingerprint);
        fprintf(
            out,
            "</code></td><td class=\"n\" data-v=\"%lld\">%lld</td>"
            "<td class=\"n\" data-v=\"%.6f\">%.3f</td><td class=\"n\" data-v=\"%.6f\">%.3f</td>"
            "<td class=\"n\" data-v=\"%.6f\">%.3f</td><td class=\"n h\" data-v=\"%.6f\">%.3f</td>"
            "<td class=\"n h\">%.2f</td><td class=\"n h\">%lld</td><td class=\"h\">",
            (long long)s->calls, (long long)s->calls, s->total_ms, s->total_ms, s->mean_ms,
            s->mean_ms, s->p95_ms, s->p95_ms, s->p99_ms, s->p99_ms, rows, (long long)s->errors);
        histogram(out, s);
        fputs("</td></tr>\n", out);
    }
    fputs("</tbody></table></div>", out);
    if ((int64_t)shown < d->shapes)
        fprintf(out,
                "<p class=\"muted\" id=\"capped\">The page lists the first %zu of %lld shapes "
                "(%d at most; --limit lists fewer). The JSON report lists them all "
                "(--format json --limit 0).</p>",
                shown, (long long)d->shapes, REPORT_HTML_MAX_STATEMENTS);
    fputs("</section>\n", out);
}

static void tests(FILE *out, const report_data *d)
{
    size_t shown = d->n_tests < HTML_MAX_TESTS ? d->n_tests : HTML_MAX_TESTS;

    fprintf(out, "<section id=\"tests\"><h2>Tests (%zu)</h2>", d->n_tests);
    if (d->n_tests == 0) {
        fputs("<p>No statement named its test (sqlcommenter tag <code>test</code> or "
              "<code>application_name</code>).</p></section>\n",
              out);
        return;
    }
    fputs(
        "<div class=\"scroll\"><table><thead><tr><th data-sort=\"t\">test</th>"
        "<th data-sort=\"n\" class=\"n\">statements</th><th data-sort=\"n\" class=\"n\">shapes</th>"
        "<th data-sort=\"n\" class=\"n\">time ms</th>"
        "<th data-sort=\"n\" class=\"n\">findings</th></tr></thead><tbody>",
        out);
    for (size_t i = 0; i < shown; i++) {
        const report_test *t = &d->tests[i];
        fputs("<tr><td><code>", out);
        esc(out, t->name);
        fprintf(out,
                "</code></td><td class=\"n\">%lld</td><td class=\"n\">%lld</td>"
                "<td class=\"n\" data-v=\"%.6f\">%.3f</td><td class=\"n\">%lld</td></tr>\n",
                (long long)t->statements, (long long)t->shapes, t->total_ms, t->total_ms,
                (long long)t->findings);
    }
    fputs("</tbody></table></div>", out);
    if (shown < d->n_tests)
        fprintf(out, "<p class=\"muted\">The first %zu of %zu tests are listed.</p>", shown,
                d->n_tests);
    fputs("</section>\n", out);
}

bool report_render_html(FILE *out, const report_data *d, const report_html_plans *plans,
                        const report_gate *gate)
{
    page_head(out, d);
    verdict(out, d, gate);
    fputs("<main>", out);
    findings(out, d);
    indexes(out, d);
    plan_findings(out, d, plans);
    time_charts(out, d);
    statements(out, d);
    tests(out, d);
    report_html_end(out, d->n_runs > 0 ? d->runs[0].pgscope_version : NULL);
    return !ferror(out);
}
