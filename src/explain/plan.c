/* plan.c — EXPLAIN (FORMAT JSON) plans: findings per node, and an indented tree for people. */
#include "config.h"

#include "pgscope/explain.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper nodes are ignored. jansson already refuses JSON nested beyond 2048 levels (a plan
 * level takes two: the node and its "Plans" array); this keeps our recursion well inside that. */
#define PLAN_MAX_DEPTH 512
#define LABEL_MAX 384            /* bytes of one node's label ("Index Scan using x on y z") */
#define QUAL_MAX 200             /* bytes of a filter or condition quoted in a finding */
#define SEQ_FILTER_MIN_ROWS 1000 /* a scan smaller than this is cheap whatever it filters */
#define SEQ_FILTER_MIN_SHARE 0.9
#define MISESTIMATE_MIN 10.0
#define MISESTIMATE_MIN_ROWS 100 /* below this many rows, planned or actual, no one cares */
#define INNER_SCAN_MIN_LOOPS 100
#define HEAP_FETCH_MIN 1000
#define HEAP_FETCH_MIN_SHARE 0.1
#define BLOCK_KB 8.0 /* PostgreSQL's default block size; temp blocks are reported in blocks */

/* ---- a growing string ---- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool failed; /* an allocation failed: the text is incomplete and must not be used */
} strbuf;

static bool sb_reserve(strbuf *b, size_t more)
{
    size_t want, cap;
    char *p;

    if (b->failed)
        return false;
    want = b->len + more + 1;
    if (want <= b->cap)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_indent(strbuf *b, int n)
{
    for (int i = 0; i < n; i++)
        sb_add(b, " ", 1);
}

/* ---- text that fits ---- */

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t n)
{
    size_t i = n, back = 0;

    /* step back over continuation bytes to the lead byte of the last character */
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0)
        return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need == back + 1 ? n : i - 1;
}

/* Copies s into out (size sz), cut at a character boundary, with "..." when cut. */
static void clip(char *out, size_t sz, const char *s)
{
    size_t n = strlen(s);

    if (sz == 0)
        return;
    if (n < sz) {
        memcpy(out, s, n + 1);
        return;
    }
    if (sz < 4) {
        out[0] = '\0';
        return;
    }
    n = utf8_cut(s, sz - 4);
    memcpy(out, s, n);
    memcpy(out + n, "...", 4);
}

/* snprintf into a fixed field, then mends a character that truncation may have cut. */
static void field_printf(char *out, size_t sz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void field_printf(char *out, size_t sz, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out, sz, fmt, ap);
    va_end(ap);
    if (n < 0)
        out[0] = '\0';
    else if ((size_t)n >= sz)
        out[utf8_cut(out, sz - 1)] = '\0';
}

/* ---- reading the JSON, trusting nothing ---- */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool jnum(const json_t *o, const char *key, double *v)
{
    const json_t *x = json_object_get(o, key);

    if (!json_is_number(x))
        return false;
    *v = json_number_value(x);
    return isfinite(*v);
}

/* A count: a number that is not negative. */
static bool jcount(const json_t *o, const char *key, double *v)
{
    return jnum(o, key, v) && *v >= 0;
}

static double jcount_or0(const json_t *o, const char *key)
{
    double v;

    return jcount(o, key, &v) ? v : 0;
}

static bool jtrue(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static bool streq(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

static size_t n_children(const json_t *node)
{
    return json_array_size(json_object_get(node, "Plans"));
}

/* The i-th child when it is an object, else NULL. */
static const json_t *child(const json_t *node, size_t i)
{
    const json_t *c = json_array_get(json_object_get(node, "Plans"), i);

    return json_is_object(c) ? c : NULL;
}

/* Counts are printed whole when they are whole (PostgreSQL 15 rounds rows per loop), with
 * decimals otherwise (PostgreSQL 16 and later keep two). */
static void fmt_count(char *out, size_t sz, double v)
{
    if (v == floor(v))
        field_printf(out, sz, "%.0f", v);
    else
        field_printf(out, sz, "%.2f", v);
}

/* The parsed document's plan object, or NULL when the text is not an EXPLAIN JSON result. */
static const json_t *plan_top(const json_t *doc)
{
    const json_t *top = json_is_array(doc) ? json_array_get(doc, 0) : doc;

    if (!json_is_object(top) || !json_is_object(json_object_get(top, "Plan")))
        return NULL;
    return top;
}

/* ---- node labels, as psql's text EXPLAIN names nodes ---- */

/* "Hash Join" with Join Type "Left" reads "Hash Left Join"; a Nested Loop reads the same. */
static void join_name(char *out, size_t sz, const char *type, const char *jt)
{
    size_t base = strlen(type);

    if (!jt || streq(jt, "Inner")) {
        field_printf(out, sz, "%s", type);
        return;
    }
    if (base > 5 && strcmp(type + base - 5, " Join") == 0)
        base -= 5;
    field_printf(out, sz, "%.*s %s Join", (int)base, type, jt);
}

/* The node's name: node type, refined the way psql refines it. */
static void node_name(const json_t *n, char *out, size_t sz)
{
    const char *type = jstr(n, "Node Type");
    const char *strategy = jstr(n, "Strategy"), *mode = jstr(n, "Partial Mode");
    const char *op = jstr(n, "Operation"), *jt = jstr(n, "Join Type");
    bool moded = mode && !streq(mode, "Simple"); /* "Partial", "Finalize" */
    char base[128];

    if (!type)
        type = "?";
    if (streq(type, "Aggregate") && strategy && !streq(strategy, "Plain"))
        field_printf(base, sizeof base, "%s",
                     streq(strategy, "Sorted")   ? "GroupAggregate"
                     : streq(strategy, "Hashed") ? "HashAggregate"
                     : streq(strategy, "Mixed")  ? "MixedAggregate"
                                                 : "Aggregate");
    else if (streq(type, "SetOp") && streq(strategy, "Hashed"))
        field_printf(base, sizeof base, "HashSetOp");
    else if (streq(type, "ModifyTable") && op)
        field_printf(base, sizeof base, "%s", op);
    else if (streq(type, "Nested Loop") || streq(type, "Hash Join") || streq(type, "Merge Join"))
        join_name(base, sizeof base, type, jt);
    else if ((streq(type, "Index Scan") || streq(type, "Index Only Scan")) &&
             streq(jstr(n, "Scan Direction"), "Backward"))
        field_printf(base, sizeof base, "%s Backward", type);
    else
        field_printf(base, sizeof base, "%s", type);
    field_printf(out, sz, "%s%s%s%s", moded ? mode : "", moded ? " " : "",
                 jtrue(n, "Parallel Aware") ? "Parallel " : "", base);
}

/* "Seq Scan on orders o", "Index Scan using orders_pkey on orders", "CTE Scan on recent r". */
static void node_label(const json_t *n, char *out, size_t sz)
{
    const char *idx = jstr(n, "Index Name"), *alias = jstr(n, "Alias");
    const char *target = jstr(n, "Relation Name");
    char name[160];
    size_t len;

    node_name(n, name, sizeof name);
    if (!target)
        target = jstr(n, "CTE Name");
    if (!target)
        target = jstr(n, "Function Name");
    if (!target)
        target = jstr(n, "Tuplestore Name");
    if (!target && streq(jstr(n, "Node Type"), "Subquery Scan"))
        target = alias; /* a subquery has no name but its alias */
    field_printf(out, sz, "%s", name);
    len = strlen(out);
    if (idx && streq(jstr(n, "Node Type"), "Bitmap Index Scan"))
        field_printf(out + len, sz - len, " on %s", idx);
    else if (idx)
        field_printf(out + len, sz - len, " using %s", idx);
    len = strlen(out);
    if (target) {
        field_printf(out + len, sz - len, " on %s", target);
        len = strlen(out);
        if (alias && strcmp(alias, target) != 0)
            field_printf(out + len, sz - len, " %s", alias);
    }
}

/* The table a node works on: its own, else the one at the end of a chain of single children
 * (the table a Sort sorts or a Hash hashes). NULL when there is none or more than one. */
static const char *subject_relation(const json_t *n)
{
    for (int depth = 0; n && depth < PLAN_MAX_DEPTH; depth++) {
        const char *rel = jstr(n, "Relation Name");

        if (rel)
            return rel;
        if (n_children(n) != 1)
            return NULL;
        n = child(n, 0);
    }
    return NULL;
}

/* ---- actuals ---- */

/* The numbers EXPLAIN ANALYZE measured for a node that ran. Rows and most counters are averages
 * per loop; multiply by loops for totals. */
typedef struct actuals {
    double rows, loops;
} actuals;

static bool node_actuals(const json_t *n, actuals *a)
{
    return jcount(n, "Actual Loops", &a->loops) && a->loops > 0 &&
           jcount(n, "Actual Rows", &a->rows);
}

/* ---- the walk ---- */

typedef struct walker {
    void (*fn)(const explain_finding *f, void *arg);
    void *arg;
    strbuf path; /* labels from the root, " > " between them */
} walker;

/* The last label of a path. */
static const char *last_label(const char *path)
{
    const char *last = path;

    for (const char *p = strstr(path, " > "); p; p = strstr(p + 3, " > "))
        last = p + 3;
    return last;
}

/* The path for a finding: the whole path when it fits; else the root, "...", and as many of
 * the last labels as fit, since the node itself matters most. */
static void fit_path(char *out, size_t sz, const char *path)
{
    const char *sep = strstr(path, " > "), *ellipsis = " > ... > ", *tail, *next;
    size_t len = strlen(path), root_len, room;
    char last[LABEL_MAX];

    if (len < sz || !sep) {
        clip(out, sz, path);
        return;
    }
    root_len = (size_t)(sep - path);
    if (root_len + strlen(ellipsis) + 32 >= sz) { /* a root that long is not worth keeping */
        root_len = 0;
        ellipsis = "... > ";
    }
    room = sz - 1 - root_len - strlen(ellipsis);
    tail = path + len - room;
    next = strstr(tail, " > ");
    if (next) {
        tail = next + 3; /* whole labels only */
    } else {
        clip(last, room + 1 < sizeof last ? room + 1 : sizeof last, last_label(path));
        tail = last; /* the node's own label, cut at its end */
    }
    field_printf(out, sz, "%.*s%s%s", (int)root_len, path, ellipsis, tail);
}

const char *const explain_finding_kinds[] = {"seq_scan_filter",
                                             "misestimate",
                                             "sort_spill",
                                             "hash_batches",
                                             "nested_loop_inner_scan",
                                             "lossy_bitmap",
                                             "heap_fetches",
                                             "temp_written",
                                             NULL};

static void emit(walker *w, const char *kind, const char *relation, double magnitude,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void emit(walker *w, const char *kind, const char *relation, double magnitude,
                 const char *fmt, ...)
{
    explain_finding f;
    va_list ap;
    int n;

    memset(&f, 0, sizeof f);
    clip(f.kind, sizeof f.kind, kind);
    fit_path(f.path, sizeof f.path, w->path.p && !w->path.failed ? w->path.p : "?");
    clip(f.relation, sizeof f.relation, relation ? relation : "");
    va_start(ap, fmt);
    n = vsnprintf(f.detail, sizeof f.detail, fmt, ap);
    va_end(ap);
    if (n < 0)
        f.detail[0] = '\0';
    else if ((size_t)n >= sizeof f.detail)
        f.detail[utf8_cut(f.detail, sizeof f.detail - 1)] = '\0';
    f.magnitude = magnitude;
    if (w->fn)
        w->fn(&f, w->arg);
}

/* A condition quoted in a finding: clipped, "" when absent. */
static void quote_qual(char *out, size_t sz, const json_t *n, const char *key)
{
    const char *q = jstr(n, key);

    clip(out, sz, q ? q : "");
}

/* Sequential scan that throws away most of what it reads: an index on the filter is missing. */
static void check_seq_scan_filter(walker *w, const json_t *n, const actuals *a)
{
    double removed, total, share;
    char qual[QUAL_MAX], sremoved[48], stotal[48], loops[48] = "";

    if (!streq(jstr(n, "Node Type"), "Seq Scan") || !jcount(n, "Rows Removed by Filter", &removed))
        return;
    removed *= a->loops; /* PostgreSQL prints the average per loop */
    total = removed + a->rows * a->loops;
    if (total < SEQ_FILTER_MIN_ROWS)
        return;
    share = removed / total;
    if (share < SEQ_FILTER_MIN_SHARE)
        return;
    quote_qual(qual, sizeof qual, n, "Filter");
    fmt_count(sremoved, sizeof sremoved, removed);
    fmt_count(stotal, sizeof stotal, total);
    if (a->loops > 1)
        field_printf(loops, sizeof loops, " over %.0f loops", a->loops);
    emit(w, "seq_scan_filter", jstr(n, "Relation Name"), removed,
         "removed %s of %s rows (%.1f%%) by filter %s%s", sremoved, stotal, share * 100.0, qual,
         loops);
}

/* ---- misestimates ---- */

typedef struct estimate {
    double planned, actual, loops;
    double factor; /* >= 1 */
    int dir;       /* +1: more rows than planned, -1: fewer */
} estimate;

/* BitmapAnd and BitmapOr always report 0 actual rows; their estimates cannot be checked. */
static bool node_estimate(const json_t *n, estimate *e)
{
    actuals a;
    double p, r;
    const char *type = jstr(n, "Node Type");

    if (streq(type, "BitmapAnd") || streq(type, "BitmapOr"))
        return false;
    if (!node_actuals(n, &a) || !jcount(n, "Plan Rows", &e->planned))
        return false;
    e->actual = a.rows;
    e->loops = a.loops;
    p = e->planned > 1 ? e->planned : 1;
    r = e->actual > 1 ? e->actual : 1;
    e->dir = r >= p ? 1 : -1;
    e->factor = r >= p ? r / p : p / r;
    return true;
}

/* A node's estimate error is its own unless a child it reads from is already off as much in the
 * same direction: then the child is where it began, and only the child is reported. */
static bool inherits_misestimate(const json_t *n, const estimate *e)
{
    size_t count = n_children(n);

    for (size_t i = 0; i < count; i++) {
        const json_t *c = child(n, i);
        const char *rel = jstr(c, "Parent Relationship");
        estimate ce;

        /* a subplan's rows are not its parent's input */
        if (!c || streq(rel, "InitPlan") || streq(rel, "SubPlan"))
            continue;
        if (node_estimate(c, &ce) && ce.dir == e->dir && ce.factor * 2 >= e->factor)
            return true;
    }
    return false;
}

static const char *misestimate_class(double factor)
{
    return factor >= 1000 ? "1000x" : factor >= 100 ? "100x" : "10x";
}

/* stops_early: an ancestor may stop reading before this node is done (Limit, Merge Join, the
 * inner side of a semi or anti nested loop, a subplan). Such a node returns fewer rows than it
 * would, so fewer rows than planned says nothing there. */
static void check_misestimate(walker *w, const json_t *n, bool stops_early)
{
    estimate e;
    char planned[48], actual[48], per_loop[64] = "";

    if (!node_estimate(n, &e) || e.factor < MISESTIMATE_MIN)
        return;
    if ((e.planned > e.actual ? e.planned : e.actual) * e.loops < MISESTIMATE_MIN_ROWS)
        return;
    if ((e.dir < 0 && stops_early) || inherits_misestimate(n, &e))
        return;
    fmt_count(planned, sizeof planned, e.planned);
    fmt_count(actual, sizeof actual, e.actual);
    if (e.loops > 1)
        field_printf(per_loop, sizeof per_loop, " per loop over %.0f loops", e.loops);
    emit(w, "misestimate", subject_relation(n), e.factor,
         "%s misestimate: planned %s %s, got %s%s (%.1fx %s)", misestimate_class(e.factor), planned,
         e.planned == 1 ? "row" : "rows", actual, per_loop, e.factor, e.dir > 0 ? "more" : "fewer");
}

/* ---- memory that did not suffice ---- */

static void join_keys(char *out, size_t sz, const json_t *n, const char *key)
{
    const json_t *arr = json_object_get(n, key);
    strbuf b = {0};

    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));

        if (!s)
            continue;
        if (b.len)
            sb_puts(&b, ", ");
        sb_puts(&b, s);
    }
    clip(out, sz, b.p && !b.failed ? b.p : "");
    free(b.p);
}

/* Disk kB of one sort's instrumentation: the node itself or one worker. */
static double sort_disk_kb(const json_t *o)
{
    double kb;

    if (!streq(jstr(o, "Sort Space Type"), "Disk") || !jcount(o, "Sort Space Used", &kb))
        return 0;
    return kb;
}

/* An incremental sort reports its groups' peak disk use per kind of group. */
static double incremental_disk_kb(const json_t *o)
{
    static const char *const groups[] = {"Full-sort Groups", "Pre-sorted Groups"};
    double kb = 0, peak;

    for (size_t i = 0; i < 2; i++) {
        const json_t *disk = json_object_get(json_object_get(o, groups[i]), "Sort Space Disk");

        if (jcount(disk, "Peak Sort Space Used", &peak))
            kb += peak;
    }
    return kb;
}

/* A sort's disk use in kB: the leader's plus its parallel workers'. */
static double sort_spilled_kb(const json_t *n, const char **method)
{
    const json_t *workers = json_object_get(n, "Workers");
    double kb = sort_disk_kb(n) + incremental_disk_kb(n);

    *method = jstr(n, "Sort Method");
    for (size_t i = 0; i < json_array_size(workers); i++) {
        const json_t *wk = json_array_get(workers, i);
        double wkb = sort_disk_kb(wk) + incremental_disk_kb(wk);

        if (wkb > 0 && !*method)
            *method = jstr(wk, "Sort Method");
        kb += wkb;
    }
    return kb;
}

static void check_sort_spill(walker *w, const json_t *n, const actuals *a)
{
    const char *type = jstr(n, "Node Type"), *method = NULL;
    char keys[QUAL_MAX], rows[48];
    double kb;

    if (!streq(type, "Sort") && !streq(type, "Incremental Sort"))
        return;
    kb = sort_spilled_kb(n, &method);
    if (!(kb > 0))
        return;
    join_keys(keys, sizeof keys, n, "Sort Key");
    fmt_count(rows, sizeof rows, a->rows * a->loops);
    emit(w, "sort_spill", subject_relation(n), kb,
         "sort spilled %.0f kB to disk (%s) sorting %s rows by %s: work_mem too small", kb,
         method ? method : "on disk", rows, keys[0] ? keys : "?");
}

static void check_hash_batches(walker *w, const json_t *n, const actuals *a)
{
    double batches, original = 0, peak = 0;
    char rows[48], planned[48] = "";

    if (!streq(jstr(n, "Node Type"), "Hash") || !jcount(n, "Hash Batches", &batches) ||
        batches <= 1)
        return;
    if (jcount(n, "Original Hash Batches", &original))
        field_printf(planned, sizeof planned, " (planned %.0f)", original);
    jcount(n, "Peak Memory Usage", &peak);
    fmt_count(rows, sizeof rows, a->rows * a->loops);
    emit(w, "hash_batches", subject_relation(n), batches,
         "hash of %s rows in %.0f batches%s, peak memory %.0f kB: the hash table did not fit "
         "in work_mem",
         rows, batches, planned, peak);
}

/* ---- repeated scans ---- */

/* The inner side of a nested loop: the child marked Inner, else the second one. */
static const json_t *inner_child(const json_t *n)
{
    size_t count = n_children(n);

    for (size_t i = 0; i < count; i++) {
        const json_t *c = child(n, i);

        if (streq(jstr(c, "Parent Relationship"), "Inner"))
            return c;
    }
    return count == 2 ? child(n, 1) : NULL;
}

/* A nested loop whose inner side has no index to look its rows up with: a Seq Scan run again
 * for every outer row, or a Materialize read in full for every outer row. */
static void check_nested_loop(walker *w, const json_t *n)
{
    const json_t *inner;
    const char *itype;
    actuals ia;
    char label[LABEL_MAX], materialized[160], qual[QUAL_MAX], rows[48];
    char extra[QUAL_MAX + 96] = "";
    const char *what;
    double removed;
    size_t mark = w->path.len;

    if (!streq(jstr(n, "Node Type"), "Nested Loop") || !(inner = inner_child(n)))
        return;
    itype = jstr(inner, "Node Type");
    if (!streq(itype, "Seq Scan") && !streq(itype, "Materialize"))
        return;
    if (!node_actuals(inner, &ia) || ia.loops < INNER_SCAN_MIN_LOOPS)
        return;
    if (jcount(n, "Rows Removed by Join Filter", &removed) && removed > 0) {
        quote_qual(qual, sizeof qual, n, "Join Filter");
        field_printf(extra, sizeof extra, "; the join filter %s removed %.0f rows", qual,
                     removed * jcount_or0(n, "Actual Loops"));
    } else if (jcount(inner, "Rows Removed by Filter", &removed) && removed > 0) {
        quote_qual(qual, sizeof qual, inner, "Filter");
        field_printf(extra, sizeof extra, "; its filter %s removed %.0f rows per loop", qual,
                     removed);
    }
    node_label(inner, label, sizeof label);
    what = label;
    if (streq(itype, "Materialize") && subject_relation(inner)) {
        field_printf(materialized, sizeof materialized, "Materialize of %s",
                     subject_relation(inner));
        what = materialized;
    }
    fmt_count(rows, sizeof rows, ia.rows);
    sb_puts(&w->path, " > ");
    sb_puts(&w->path, label);
    emit(w, "nested_loop_inner_scan", subject_relation(inner), ia.loops,
         "%s ran %.0f times inside a nested loop, returning %s rows each time, with no index "
         "to look rows up by%s",
         what, ia.loops, rows, extra);
    w->path.len = mark;
    if (w->path.p)
        w->path.p[mark] = '\0';
}

static void check_lossy_bitmap(walker *w, const json_t *n, const actuals *a)
{
    double lossy, exact = 0, recheck = 0;
    char extra[64] = "";

    if (!streq(jstr(n, "Node Type"), "Bitmap Heap Scan") ||
        !jcount(n, "Lossy Heap Blocks", &lossy) || lossy <= 0)
        return;
    jcount(n, "Exact Heap Blocks", &exact);
    if (jcount(n, "Rows Removed by Index Recheck", &recheck) && recheck > 0)
        field_printf(extra, sizeof extra, ", %.0f rows removed by recheck", recheck * a->loops);
    emit(w, "lossy_bitmap", jstr(n, "Relation Name"), lossy,
         "%.0f lossy heap blocks (%.0f exact): the bitmap outgrew work_mem, so every row of a "
         "lossy block was rechecked%s",
         lossy, exact, extra);
}

static void check_heap_fetches(walker *w, const json_t *n, const actuals *a)
{
    double fetches, rows;
    const char *rel = jstr(n, "Relation Name");

    if (!streq(jstr(n, "Node Type"), "Index Only Scan") || !jcount(n, "Heap Fetches", &fetches) ||
        fetches <= 0)
        return;
    /* Heap Fetches is a total over loops; rows are per loop. Rows the filter removed were
     * fetched too. */
    rows = (a->rows + jcount_or0(n, "Rows Removed by Filter")) * a->loops;
    if (fetches < HEAP_FETCH_MIN && fetches < HEAP_FETCH_MIN_SHARE * rows)
        return;
    emit(w, "heap_fetches", rel, fetches,
         "index-only scan fetched %.0f heap rows for %.0f rows (%.0f%%): the visibility map is "
         "behind; VACUUM %s",
         fetches, rows, rows > 0 ? 100.0 * fetches / rows : 100.0, rel ? rel : "the table");
}

/* Buffer counts include the children's, so a node's own temp writes are its count less theirs. */
static double own_temp_written(const json_t *n)
{
    double own = jcount_or0(n, "Temp Written Blocks");
    size_t count = n_children(n);

    for (size_t i = 0; i < count; i++)
        own -= jcount_or0(child(n, i), "Temp Written Blocks");
    return own;
}

static void check_temp_written(walker *w, const json_t *n)
{
    double own = own_temp_written(n), v;
    char why[160] = "";
    const char *method = NULL;

    if (!(own > 0))
        return;
    if (jcount(n, "HashAgg Batches", &v))
        field_printf(why, sizeof why, ": hash aggregate in %.0f batches, %.0f kB on disk", v,
                     jcount_or0(n, "Disk Usage"));
    else if (jcount(n, "Hash Batches", &v))
        field_printf(why, sizeof why, ": hash table in %.0f batches", v);
    else if (sort_spilled_kb(n, &method) > 0)
        field_printf(why, sizeof why, ": sort on disk (%s)", method ? method : "?");
    else if (streq(jstr(n, "Node Type"), "Hash Join") &&
             jcount(inner_child(n), "Hash Batches", &v) && v > 1)
        field_printf(why, sizeof why, ": outer rows saved for the hash's %.0f batches", v);
    emit(w, "temp_written", subject_relation(n), own, "wrote %.0f temp blocks (%.1f MB)%s", own,
         own * BLOCK_KB / 1024.0, why);
}

static void check_node(walker *w, const json_t *n, bool stops_early)
{
    actuals a;

    check_temp_written(w, n); /* buffers, not actuals: present only with ANALYZE anyway */
    if (!node_actuals(n, &a))
        return; /* plain EXPLAIN, or a node that never ran */
    check_seq_scan_filter(w, n, &a);
    check_misestimate(w, n, stops_early);
    check_sort_spill(w, n, &a);
    check_hash_batches(w, n, &a);
    check_nested_loop(w, n);
    check_lossy_bitmap(w, n, &a);
    check_heap_fetches(w, n, &a);
}

/* Whether the child's reader may stop before the child is exhausted (see check_misestimate). */
static bool child_stops_early(const json_t *n, const json_t *c)
{
    const char *type = jstr(n, "Node Type"), *jt = jstr(n, "Join Type");
    const char *rel = jstr(c, "Parent Relationship");

    if (streq(type, "Limit") || streq(type, "Merge Join") || streq(rel, "SubPlan"))
        return true;
    return streq(type, "Nested Loop") && streq(rel, "Inner") &&
           (streq(jt, "Semi") || streq(jt, "Anti"));
}

static void walk_node(walker *w, const json_t *n, int depth, bool stops_early)
{
    char label[LABEL_MAX];
    size_t mark = w->path.len, count;

    if (depth >= PLAN_MAX_DEPTH)
        return;
    node_label(n, label, sizeof label);
    if (depth > 0)
        sb_puts(&w->path, " > ");
    sb_puts(&w->path, label);
    check_node(w, n, stops_early);
    count = n_children(n);
    for (size_t i = 0; i < count; i++) {
        const json_t *c = child(n, i);

        if (c)
            walk_node(w, c, depth + 1, stops_early || child_stops_early(n, c));
    }
    w->path.len = mark;
    if (w->path.p)
        w->path.p[mark] = '\0';
}

static void read_times(const json_t *top, explain_plan_times *times)
{
    if (!jnum(top, "Planning Time", &times->planning_ms) || times->planning_ms < 0)
        times->planning_ms = -1;
    if (!jnum(top, "Execution Time", &times->execution_ms) || times->execution_ms < 0)
        times->execution_ms = -1;
}

bool explain_plan_findings(const char *json, void (*fn)(const explain_finding *f, void *arg),
                           void *arg, explain_plan_times *times)
{
    json_t *doc;
    const json_t *top;
    walker w = {0};

    if (times)
        times->planning_ms = times->execution_ms = -1;
    if (!json)
        return false;
    doc = json_loads(json, 0, NULL);
    top = plan_top(doc);
    if (!top) {
        json_decref(doc);
        return false;
    }
    if (times)
        read_times(top, times);
    w.fn = fn;
    w.arg = arg;
    walk_node(&w, json_object_get(top, "Plan"), 0, false);
    free(w.path.p);
    json_decref(doc);
    return true;
}

/* ---- the tree ---- */

/* "Buffers: shared hit=1274 read=3, temp read=1770 written=1995"; nothing when all are 0. */
static void tree_buffers(strbuf *b, const json_t *n, int indent)
{
    static const char *const kinds[][2] = {
        {"Shared", "shared"}, {"Local", "local"}, {"Temp", "temp"}};
    static const char *const ops[][2] = {
        {"Hit", "hit"}, {"Read", "read"}, {"Dirtied", "dirtied"}, {"Written", "written"}};
    bool any = false;

    for (size_t k = 0; k < 3; k++) {
        bool kind_shown = false;

        for (size_t o = 0; o < 4; o++) {
            char key[40];
            double v;

            field_printf(key, sizeof key, "%s %s Blocks", kinds[k][0], ops[o][0]);
            if (!jcount(n, key, &v) || v <= 0)
                continue;
            if (!any) {
                sb_indent(b, indent);
                sb_puts(b, "Buffers:");
            }
            if (!kind_shown)
                sb_printf(b, "%s %s", any ? "," : "", kinds[k][1]);
            sb_printf(b, " %s=%.0f", ops[o][1], v);
            any = kind_shown = true;
        }
    }
    if (any)
        sb_puts(b, "\n");
}

/* "Key: value" for a string, a number or an array of strings; nothing otherwise. */
static void tree_prop(strbuf *b, const json_t *n, const char *key, int indent)
{
    const json_t *v = json_object_get(n, key);
    char num[48];

    if (json_is_string(v)) {
        sb_indent(b, indent);
        sb_printf(b, "%s: %s\n", key, json_string_value(v));
    } else if (json_is_number(v) && isfinite(json_number_value(v))) {
        /* psql leaves out removal counts of 0 */
        if (json_number_value(v) == 0 && strncmp(key, "Rows Removed", 12) == 0)
            return;
        fmt_count(num, sizeof num, json_number_value(v));
        sb_indent(b, indent);
        sb_printf(b, "%s: %s\n", key, num);
    } else if (json_is_array(v)) {
        bool first = true;

        for (size_t i = 0; i < json_array_size(v); i++) {
            const char *s = json_string_value(json_array_get(v, i));

            if (!s)
                continue;
            if (first) {
                sb_indent(b, indent);
                sb_printf(b, "%s: ", key);
            }
            sb_printf(b, "%s%s", first ? "" : ", ", s);
            first = false;
        }
        if (!first)
            sb_puts(b, "\n");
    }
}

/* The lines psql prints for sorts, hashes, hash aggregates and bitmap heap scans. */
static void tree_memory(strbuf *b, const json_t *n, int indent)
{
    const char *method = jstr(n, "Sort Method"), *space = jstr(n, "Sort Space Type");
    double v, orig, exact = 0, lossy = 0;

    if (method) {
        sb_indent(b, indent);
        sb_printf(b, "Sort Method: %s", method);
        if (space && jcount(n, "Sort Space Used", &v))
            sb_printf(b, "  %s: %.0fkB", space, v);
        sb_puts(b, "\n");
    }
    if (jcount(n, "Hash Batches", &v)) {
        sb_indent(b, indent);
        sb_printf(b, "Buckets: %.0f  Batches: %.0f", jcount_or0(n, "Hash Buckets"), v);
        if (jcount(n, "Original Hash Batches", &orig) && orig != v)
            sb_printf(b, " (originally %.0f)", orig);
        sb_printf(b, "  Memory Usage: %.0fkB\n", jcount_or0(n, "Peak Memory Usage"));
    }
    if (jcount(n, "HashAgg Batches", &v)) {
        sb_indent(b, indent);
        sb_printf(b, "Batches: %.0f  Memory Usage: %.0fkB", v, jcount_or0(n, "Peak Memory Usage"));
        if (jcount(n, "Disk Usage", &orig))
            sb_printf(b, "  Disk Usage: %.0fkB", orig);
        sb_puts(b, "\n");
    }
    jcount(n, "Exact Heap Blocks", &exact);
    jcount(n, "Lossy Heap Blocks", &lossy);
    if (exact > 0 || lossy > 0) {
        sb_indent(b, indent);
        sb_puts(b, "Heap Blocks:");
        if (exact > 0)
            sb_printf(b, " exact=%.0f", exact);
        if (lossy > 0)
            sb_printf(b, " lossy=%.0f", lossy);
        sb_puts(b, "\n");
    }
}

/* "Sort  (cost=1.00..2.00 rows=10 width=8) (actual time=0.1..0.2 rows=10 loops=1)" */
static void tree_node_line(strbuf *b, const json_t *n, int depth)
{
    char label[LABEL_MAX], rows[48];
    double sc, tc, pr, width, st, tt, ar, loops;

    sb_indent(b, 2 * depth);
    if (depth > 0)
        sb_puts(b, "-> ");
    node_label(n, label, sizeof label);
    sb_puts(b, label);
    if (jnum(n, "Startup Cost", &sc) && jnum(n, "Total Cost", &tc) && jnum(n, "Plan Rows", &pr) &&
        jnum(n, "Plan Width", &width))
        sb_printf(b, "  (cost=%.2f..%.2f rows=%.0f width=%.0f)", sc, tc, pr, width);
    else if (jnum(n, "Plan Rows", &pr))
        sb_printf(b, "  (rows=%.0f)", pr);
    if (jcount(n, "Actual Loops", &loops) && loops == 0) {
        sb_puts(b, " (never executed)");
    } else if (jcount(n, "Actual Loops", &loops) && jcount(n, "Actual Rows", &ar)) {
        sb_puts(b, " (actual ");
        if (jnum(n, "Actual Startup Time", &st) && jnum(n, "Actual Total Time", &tt))
            sb_printf(b, "time=%.3f..%.3f ", st, tt);
        fmt_count(rows, sizeof rows, ar);
        sb_printf(b, "rows=%s loops=%.0f)", rows, loops);
    }
    sb_puts(b, "\n");
}

/* Conditions and counters shown under a node, in psql's order where it has one. */
static const char *const TREE_PROPS[] = {
    "Hash Cond",
    "Merge Cond",
    "Index Cond",
    "Recheck Cond",
    "Order By",
    "Join Filter",
    "Rows Removed by Join Filter",
    "One-Time Filter",
    "Filter",
    "Rows Removed by Filter",
    "Rows Removed by Index Recheck",
    "Sort Key",
    "Presorted Key",
    "Group Key",
    "Heap Fetches",
    "Workers Planned",
    "Workers Launched",
};

static void tree_node(strbuf *b, const json_t *n, int depth)
{
    int indent = 2 * depth + (depth > 0 ? 3 : 0) + 2; /* under the node's name, 2 further in */
    const char *subplan = jstr(n, "Subplan Name");
    size_t count;

    if (depth >= PLAN_MAX_DEPTH)
        return;
    if (subplan) {
        sb_indent(b, 2 * depth);
        sb_printf(b, "%s\n", subplan);
    }
    tree_node_line(b, n, depth);
    for (size_t i = 0; i < sizeof TREE_PROPS / sizeof TREE_PROPS[0]; i++)
        tree_prop(b, n, TREE_PROPS[i], indent);
    tree_memory(b, n, indent);
    tree_buffers(b, n, indent);
    count = n_children(n);
    for (size_t i = 0; i < count; i++) {
        const json_t *c = child(n, i);

        if (c)
            tree_node(b, c, depth + 1);
    }
}

static void tree_footer(strbuf *b, const json_t *top)
{
    const json_t *triggers = json_object_get(top, "Triggers");
    double v;

    if (jnum(top, "Planning Time", &v))
        sb_printf(b, "Planning Time: %.3f ms\n", v);
    for (size_t i = 0; i < json_array_size(triggers); i++) {
        const json_t *t = json_array_get(triggers, i);
        const char *name = jstr(t, "Trigger Name"), *rel = jstr(t, "Relation");
        double ms = 0, calls = 0;

        if (!name)
            continue;
        jnum(t, "Time", &ms);
        jnum(t, "Calls", &calls);
        sb_printf(b, "Trigger %s%s%s: time=%.3f calls=%.0f\n", name, rel ? " on " : "",
                  rel ? rel : "", ms, calls);
    }
    if (jnum(top, "Execution Time", &v))
        sb_printf(b, "Execution Time: %.3f ms\n", v);
}

/* ---- the tree, node by node (for renderers that draw it themselves) ---- */

typedef struct {
    void (*fn)(const explain_plan_node *n, void *arg);
    void *arg;
    strbuf path, line, props;
    bool failed;
} node_walk;

static void sb_clear(strbuf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static void each_node(node_walk *nw, const json_t *n, int depth)
{
    char label[LABEL_MAX], fitted[sizeof(((explain_finding *)0)->path)];
    size_t mark = nw->path.len, count;
    explain_plan_node node;

    if (depth >= PLAN_MAX_DEPTH)
        return;
    node_label(n, label, sizeof label);
    if (depth > 0)
        sb_puts(&nw->path, " > ");
    sb_puts(&nw->path, label);
    sb_clear(&nw->line);
    sb_clear(&nw->props);
    tree_node_line(&nw->line, n, 0);
    for (size_t i = 0; i < sizeof TREE_PROPS / sizeof TREE_PROPS[0]; i++)
        tree_prop(&nw->props, n, TREE_PROPS[i], 0);
    tree_memory(&nw->props, n, 0);
    tree_buffers(&nw->props, n, 0);
    nw->failed |= nw->path.failed || nw->line.failed || nw->props.failed;
    fit_path(fitted, sizeof fitted, nw->path.p && !nw->path.failed ? nw->path.p : "?");
    if (nw->line.len > 0 && nw->line.p[nw->line.len - 1] == '\n')
        nw->line.p[--nw->line.len] = '\0';
    node = (explain_plan_node){.depth = depth,
                               .subplan = jstr(n, "Subplan Name"),
                               .line = nw->line.p ? nw->line.p : "",
                               .props = nw->props.p ? nw->props.p : "",
                               .path = fitted};
    nw->fn(&node, nw->arg);
    count = n_children(n);
    for (size_t i = 0; i < count; i++) {
        const json_t *c = child(n, i);

        if (c)
            each_node(nw, c, depth + 1);
    }
    nw->path.len = mark;
    if (nw->path.p)
        nw->path.p[mark] = '\0';
}

bool explain_plan_nodes(const char *json, void (*fn)(const explain_plan_node *n, void *arg),
                        void *arg)
{
    json_t *doc = json ? json_loads(json, 0, NULL) : NULL;
    const json_t *top = plan_top(doc);
    node_walk nw = {.fn = fn, .arg = arg};

    if (top)
        each_node(&nw, json_object_get(top, "Plan"), 0);
    json_decref(doc);
    free(nw.path.p);
    free(nw.line.p);
    free(nw.props.p);
    return top && !nw.failed;
}

char *explain_plan_tree(const char *json)
{
    json_t *doc;
    const json_t *top;
    strbuf b = {0};

    if (!json)
        return NULL;
    doc = json_loads(json, 0, NULL);
    top = plan_top(doc);
    if (!top) {
        json_decref(doc);
        return NULL;
    }
    tree_node(&b, json_object_get(top, "Plan"), 0);
    tree_footer(&b, top);
    json_decref(doc);
    if (b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
