/* np1_fix.c — the fix of an N+1 or duplicate finding, written out: the batched child query, the
 * JOIN that replaces the loop, and what to change in the ORM. */
#include "config.h"

#include "np1_int.h"

#include "pgscope/fingerprint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading normalized texts, for the suggestion ---- */

typedef struct qtok {
    uint32_t start, end;
    char kind; /* w word, q "quoted", p $n, n number, s 'string', o operator, else the byte */
} qtok;

typedef struct qtext {
    const char *s;
    qtok *t;
    uint32_t n;
} qtext;

static bool q_word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80 ||
           (c >= '0' && c <= '9') || c == '$';
}

/* The end of the quoted run from p (quote q, doubled quotes inside). */
static uint32_t q_quoted(const char *s, uint32_t p, char q)
{
    for (p++; s[p] != '\0'; p++)
        if (s[p] == q && s[++p] != q)
            return p;
    return p;
}

static uint32_t q_scan(const char *s, uint32_t p, char *kind)
{
    unsigned char c = (unsigned char)s[p];

    *kind = 'w';
    if (c == '"' || c == '\'') {
        *kind = c == '"' ? 'q' : 's';
        return q_quoted(s, p, (char)c);
    }
    if (c == '$' && s[p + 1] >= '0' && s[p + 1] <= '9')
        *kind = 'p';
    else if (c >= '0' && c <= '9')
        *kind = 'n';
    else if (strchr("+-*/<>=~!@#%^&|`?", c) != NULL)
        *kind = 'o';
    else if (!q_word_char(c) || c == '$')
        return *kind = (char)c, p + 1;
    if (*kind == 'o') {
        while (s[p] != '\0' && strchr("+-*/<>=~!@#%^&|`?", s[p]) != NULL)
            p++;
        return p;
    }
    for (p++; q_word_char((unsigned char)s[p]) || (*kind == 'n' && s[p] == '.'); p++)
        ;
    return p;
}

/* Tokens of a normalized text (libpg_query's, so no comments); false if out of memory. */
static bool q_lex(const char *s, qtext *q)
{
    size_t len = strlen(s);

    q->s = s;
    q->n = 0;
    q->t = malloc((len + 1) * sizeof *q->t);
    if (q->t == NULL)
        return false;
    for (uint32_t p = 0; s[p] != '\0';) {
        if (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r') {
            p++;
            continue;
        }
        qtok *t = &q->t[q->n++];
        t->start = p;
        p = q_scan(s, p, &t->kind);
        t->end = p;
    }
    return true;
}

static bool q_is(const qtext *q, uint32_t i, const char *w)
{
    size_t n = strlen(w);
    const qtok *t = &q->t[i];

    if (i >= q->n || t->end - t->start != n || (t->kind != 'w' && t->kind != 'o' && t->kind != 'p'))
        return false;
    for (size_t k = 0; k < n; k++)
        if (np1_lower((unsigned char)q->s[t->start + k]) != (unsigned char)w[k])
            return false;
    return true;
}

static bool q_ch(const qtext *q, uint32_t i, char c)
{
    return i < q->n && q->t[i].kind == c;
}

/* Whether token i is the byte c, whatever kind the lexer gave it. */
static bool q_byte(const qtext *q, uint32_t i, char c)
{
    return i < q->n && q->t[i].end == q->t[i].start + 1 && q->s[q->t[i].start] == c;
}

/* The last token of the column name that starts at token i (name, or name.name...), or q->n
 * when no name starts there. */
static uint32_t q_name_end(const qtext *q, uint32_t i)
{
    if (!q_ch(q, i, 'w') && !q_ch(q, i, 'q'))
        return q->n;
    while (q_byte(q, i + 1, '.') && (q_ch(q, i + 2, 'w') || q_ch(q, i + 2, 'q')))
        i += 2;
    return i;
}

/* Whether $k at token i is compared the other way round: $k = col (SQLAlchemy's lazy loads). */
static bool q_reversed(const qtext *q, uint32_t i)
{
    return i > 0 && q_is(q, i + 1, "=") && q_name_end(q, i + 2) < q->n &&
           (q_is(q, i - 1, "where") || q_is(q, i - 1, "and") || q_byte(q, i - 1, '('));
}

/* The token $k compared with = (col = $k, $k = col) or in IN ($k); q->n if there is none. */
static uint32_t q_find_param(const qtext *q, int k)
{
    char want[16];

    snprintf(want, sizeof want, "$%d", k);
    for (uint32_t i = 1; i < q->n; i++) {
        if (!q_is(q, i, want))
            continue;
        if (q_is(q, i - 1, "=") || q_reversed(q, i) ||
            (i >= 2 && q_ch(q, i - 1, '(') && q_is(q, i - 2, "in")))
            return i;
    }
    return q->n;
}

/* Parenthesis depth before each token is what the clause search needs. */
static uint32_t q_top_word(const qtext *q, uint32_t from, const char *const *words)
{
    int depth = 0;

    for (uint32_t i = from; i < q->n; i++) {
        depth += q_ch(q, i, '(') - q_ch(q, i, ')');
        for (const char *const *w = words; depth == 0 && *w != NULL; w++)
            if (q_is(q, i, *w))
                return i;
    }
    return q->n;
}

/* Writes an identifier, quoted when PostgreSQL would not read it back as it is. */
static void put_ident(sbuf *b, const char *name)
{
    bool plain = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9');

    for (const char *c = name; *c; c++)
        plain &= (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    if (plain) {
        np1_sb_add(b, name);
        return;
    }
    np1_sb_add(b, "\"");
    for (const char *c = name; *c; c++) {
        if (*c == '"')
            np1_sb_add(b, "\"\"");
        else
            np1_sb_addn(b, c, 1);
    }
    np1_sb_add(b, "\"");
}

/* A table name: each dotted part an identifier. */
static void put_table(sbuf *b, const char *table)
{
    const char *dot = strchr(table, '.');
    char part[128];

    if (dot == NULL || (size_t)(dot - table) >= sizeof part) {
        put_ident(b, table);
        return;
    }
    memcpy(part, table, (size_t)(dot - table));
    part[dot - table] = '\0';
    put_ident(b, part);
    np1_sb_add(b, ".");
    put_table(b, dot + 1);
}

static const char *const end_of_query[] = {"limit", "offset", "fetch", "for", NULL};

/* The child query batched: col = $k (or IN ($k)) becomes col = ANY($k); a final LIMIT, which
 * would cut the batched rows, is left out. NULL when the comparison is not found. */
static char *batched_query(const char *text, int k, bool *cut_limit)
{
    qtext q;
    sbuf b = {0};
    char any[24];
    uint32_t i, first, last;

    *cut_limit = false;
    if (!q_lex(text, &q))
        return NULL;
    i = q_find_param(&q, k);
    bool eq = i < q.n && q_is(&q, i - 1, "=");
    if (i < q.n && q_reversed(&q, i)) { /* $k = col becomes col = ANY($k) */
        uint32_t end = q_name_end(&q, i + 2);
        np1_sb_addn(&b, text, q.t[i].start);
        np1_sb_addn(&b, text + q.t[i + 2].start, q.t[end].end - q.t[i + 2].start);
        snprintf(any, sizeof any, " = ANY($%d)", k);
        np1_sb_add(&b, any);
        uint32_t lim = q_top_word(&q, end + 1, end_of_query);
        size_t stop = lim < q.n ? q.t[lim].start : strlen(text);
        *cut_limit = lim < q.n;
        while (stop > q.t[end].end && text[stop - 1] == ' ')
            stop--;
        np1_sb_addn(&b, text + q.t[end].end, stop - q.t[end].end);
        free(q.t);
        return np1_sb_take(&b);
    }
    if (i < q.n && !eq && !q_ch(&q, i + 1, ')'))
        i = q.n; /* IN ($k, ...) or a text cut short: no one comparison to batch */
    if (i < q.n) {
        first = eq ? i : i - 2; /* $k, or IN ( $k ) */
        last = eq ? i : i + 1;
        /* The search starts after the replaced tokens, at their depth, so the LIMIT found comes
         * after them: stop >= end, whatever the text (a fallback text need not be SQL). */
        uint32_t lim = q_top_word(&q, last + 1, end_of_query);
        size_t end = q.t[last].end, stop = lim < q.n ? q.t[lim].start : strlen(text);
        *cut_limit = lim < q.n;
        while (stop > end && text[stop - 1] == ' ')
            stop--;
        snprintf(any, sizeof any, "%sANY($%d)", eq ? "" : "= ", k);
        np1_sb_addn(&b, text, q.t[first].start);
        np1_sb_add(&b, any);
        np1_sb_addn(&b, text + end, stop - end);
    }
    free(q.t);
    return i < q.n ? np1_sb_take(&b) : (free(b.s), NULL);
}

/* The column the child compares with $k: the word before = (or before IN, or the last word of
 * the name after = in $k = col), as written. */
static bool child_column(const char *text, int k, char *out, size_t cap)
{
    qtext q;
    bool ok = false;

    if (!q_lex(text, &q))
        return false;
    uint32_t i = q_find_param(&q, k);
    uint32_t c = i >= q.n               ? q.n
                 : q_is(&q, i - 1, "=") ? i - 2
                 : q_reversed(&q, i)    ? q_name_end(&q, i + 2)
                                        : i - 3;
    /* whole or not at all: a cut "quoted name would end the SQL inside its quotes */
    if (i < q.n && i >= 2 && c < q.n && (q.t[c].kind == 'w' || q.t[c].kind == 'q') &&
        q.t[c].end - q.t[c].start < cap) {
        memcpy(out, text + q.t[c].start, q.t[c].end - q.t[c].start);
        out[q.t[c].end - q.t[c].start] = '\0';
        ok = true;
    }
    free(q.t);
    return ok;
}

/* Words of a condition that are not column names. */
static bool is_sql_word(const qtext *q, uint32_t i)
{
    static const char *const words[] = {"and",
                                        "or",
                                        "not",
                                        "is",
                                        "null",
                                        "true",
                                        "false",
                                        "in",
                                        "like",
                                        "ilike",
                                        "between",
                                        "exists",
                                        "any",
                                        "all",
                                        "some",
                                        "case",
                                        "when",
                                        "then",
                                        "else",
                                        "end",
                                        "asc",
                                        "desc",
                                        "nulls",
                                        "first",
                                        "last",
                                        "distinct",
                                        "from",
                                        "as",
                                        "array",
                                        "interval",
                                        "similar",
                                        "to",
                                        "escape",
                                        "at",
                                        "time",
                                        "zone",
                                        "collate",
                                        "current_date",
                                        "current_timestamp",
                                        "current_time",
                                        "localtime",
                                        "localtimestamp",
                                        "current_user",
                                        "session_user",
                                        "unknown",
                                        "by",
                                        "order",
                                        "using",
                                        "symmetric",
                                        "isnull",
                                        "notnull",
                                        "with",
                                        "without",
                                        "precision",
                                        "varying",
                                        NULL};

    for (const char *const *w = words; *w != NULL; w++)
        if (q_is(q, i, *w))
            return true;
    return false;
}

/* The name word or "quoted" token i stands for, without its quotes, into out; false when it is
 * no name or does not fit whole (a cut name would match another). */
static bool token_name(const qtext *q, uint32_t i, char *out, size_t cap)
{
    const qtok *t = &q->t[i];
    bool quoted = t->kind == 'q';
    uint32_t n = t->end - t->start;

    if (t->kind != 'w' && !quoted)
        return false;
    n = !quoted ? n : n > 1 ? n - 2 : 0;
    if (n >= cap)
        return false;
    memcpy(out, q->s + t->start + quoted, n);
    out[n] = '\0';
    return true;
}

/* Whether token i names the parent's table or alias as a qualifier (orders. or o.). */
static bool is_qualifier(const qtext *q, uint32_t i, const char *table, const char *alias)
{
    const char *last = strrchr(table, '.');
    char name[128];

    if (!q_ch(q, i + 1, '.') || !token_name(q, i, name, sizeof name))
        return false;
    return np1_equal_nocase(name, last ? last + 1 : table) ||
           (alias && np1_equal_nocase(name, alias));
}

/* Copies the condition tokens [from, to) with the parent's columns as p.column. */
static void put_condition(sbuf *b, const qtext *q, uint32_t from, uint32_t to, const char *table,
                          const char *alias)
{
    for (uint32_t i = from; i < to; i++) {
        const qtok *t = &q->t[i];
        bool after_cast = i > 0 && (q_ch(q, i - 1, ':') || q_is(q, i - 1, "as"));
        bool qualified = i > 0 && q_ch(q, i - 1, '.');
        if (i > from && t->start > q->t[i - 1].end)
            np1_sb_add(b, " ");
        if (is_qualifier(q, i, table, alias)) {
            np1_sb_add(b, "p");
            continue;
        }
        bool column = (t->kind == 'w' || t->kind == 'q') && !after_cast && !qualified &&
                      !q_ch(q, i + 1, '(') && !q_ch(q, i + 1, '.') && !is_sql_word(q, i);
        if (column)
            np1_sb_add(b, "p.");
        np1_sb_addn(b, q->s + t->start, t->end - t->start);
    }
}

/* Whether the text names anything with AS: a column label (SQLAlchemy's books_id) is no column
 * of the table, and a table alias (Sequelize's "Books" AS "Book") qualifies the columns. */
static bool has_alias(const char *text)
{
    qtext q;
    bool found = false;

    if (!q_lex(text, &q))
        return true;
    for (uint32_t i = 0; i < q.n && !found; i++)
        found = q_is(&q, i, "as");
    free(q.t);
    return found;
}

/* Whether the text labels a result column name (books.id AS books_id): such a name is no column
 * of the table, so the parent is joined as a subquery that has it. */
static bool labels(const char *text, const char *name)
{
    qtext q;
    char word[128];
    bool found = false;

    if (!q_lex(text, &q))
        return true;
    for (uint32_t i = 0; i + 1 < q.n && !found; i++)
        found = q_is(&q, i, "as") && token_name(&q, i + 1, word, sizeof word) &&
                strcmp(word, name) == 0;
    free(q.t);
    return found;
}

/* The parent's WHERE and ORDER BY, its columns qualified with p, when the parent is a plain
 * SELECT of its one table: false otherwise (then it is joined as a subquery). */
static bool parent_conditions(sbuf *b, const char *text, const char *table)
{
    static const char *const complex[] = {"group",  "having",   "union",  "intersect",
                                          "except", "distinct", "window", "limit",
                                          "offset", "fetch",    "join",   NULL};
    static const char *const where_w[] = {"where", NULL}, *const order_w[] = {"order", NULL};
    static const char *const from_w[] = {"from", NULL};
    qtext q;
    char alias[128] = "";
    bool ok;

    if (!q_lex(text, &q))
        return false;
    uint32_t from = q_top_word(&q, 0, from_w), where = q_top_word(&q, 0, where_w);
    uint32_t order = q_top_word(&q, 0, order_w), a = from + 2;
    ok = q_is(&q, 0, "select") && from < q.n && q_top_word(&q, 0, complex) == q.n;
    while (ok && q_ch(&q, a, '.'))
        a += 2;
    a += q_is(&q, a, "as");
    /* the alias as is_qualifier reads names; one too long to hold whole: joined as a subquery */
    if (ok && a < q.n && a != where && a != order && !q_is(&q, a, "for") &&
        (q.t[a].kind == 'w' || q.t[a].kind == 'q'))
        ok = token_name(&q, a, alias, sizeof alias);
    if (ok && where < q.n) {
        np1_sb_add(b, " WHERE ");
        put_condition(b, &q, where + 1, order < q.n ? order : q.n, table, alias[0] ? alias : NULL);
    }
    if (ok && order < q.n) {
        np1_sb_add(b, " ORDER BY ");
        put_condition(b, &q, order + 2, q_top_word(&q, order, end_of_query), table,
                      alias[0] ? alias : NULL);
    }
    free(q.t);
    return ok;
}

/* ---- the suggestion ---- */

/* The highest $n of a text, 0 if none. */
static int max_param(const char *text)
{
    qtext q;
    int most = 0;

    if (!q_lex(text, &q))
        return 0;
    for (uint32_t i = 0; i < q.n; i++)
        if (q.t[i].kind == 'p') {
            int n = atoi(q.s + q.t[i].start + 1);
            most = n > most ? n : most;
        }
    free(q.t);
    return most;
}

/* The child query with every $k replaced by repl and the others numbered on from shift, in
 * their order ($n becomes $(shift + n), or $(shift + n - 1) past k), so that the joined query's
 * parameters are the parent's, then the child's, with none missing (for a LATERAL join). */
static char *replace_param(const char *text, int k, const char *repl, int shift)
{
    qtext q;
    sbuf b = {0};
    uint32_t at = 0;

    if (!q_lex(text, &q))
        return NULL;
    for (uint32_t i = 0; i < q.n; i++) {
        if (q.t[i].kind != 'p')
            continue;
        int n = atoi(q.s + q.t[i].start + 1);
        np1_sb_addn(&b, text + at, q.t[i].start - at);
        if (n == k)
            np1_sb_add(&b, repl);
        else
            np1_sb_printf(&b, "$%d", shift + (n > k ? n - 1 : n));
        at = q.t[i].end;
    }
    np1_sb_add(&b, text + at);
    free(q.t);
    return np1_sb_take(&b);
}

/* "orders.customer_id", or "orders.customer_id and orders.address_id" for a loop body. */
static void put_links(sbuf *b, const finding *f)
{
    int named = 0;

    for (int i = 0; i < f->pub.n_children; i++) {
        if (!f->proof[i].confirmed)
            continue;
        np1_sb_printf(b, "%s%s", named > 0 ? " and " : "", f->proof[i].linked);
        named++;
    }
}

static void explain_loop(sbuf *b, const np1_settings *s, const finding *f)
{
    const np1_finding *p = &f->pub;
    const char *kids = p->n_children > 1 ? "child queries run" : "child query runs";

    if (p->confirmed) {
        np1_sb_printf(b,
                      "N+1: the parent query returns rows, then the %s once per row with a value "
                      "taken from ",
                      kids);
        put_links(b, f);
        np1_sb_add(b, ". Each execution costs a round trip; one query can do the work of all of "
                      "them.\n");
        return;
    }
    np1_sb_printf(b,
                  "Suspected N+1 (not proven): the %s at least %d times with different parameters "
                  "right after the parent query, but ",
                  kids, s->min_repeats);
    if (!f->proof[0].sampled)
        np1_sb_printf(b,
                      "the parent's result was no longer sampled (results of the last %d "
                      "statements with a result are kept per connection).\n",
                      s->results_kept);
    else
        np1_sb_printf(b,
                      "no column of the parent's sampled result holds the values of its "
                      "parameters (best match %.0f%% of the executions, %.0f%% needed). Check "
                      "that the loop walks the parent's rows.\n",
                      100 * f->best_share, 100 * s->link_share);
}

/* Why the server rejected a statement of the fix (np1_fix_rejected), or NULL. */
static const char *rejection(const finding *f, const char *sql)
{
    for (int i = 0; sql != NULL && i < f->n_rejected; i++)
        if (strcmp(f->rejected[i], sql) == 0)
            return f->rejected_why[i];
    return NULL;
}

static void put_rejected(sbuf *b, const char *what, const char *why)
{
    np1_sb_printf(b,
                  "     (not shown: the server rejected the %s pgscope wrote for this loop: "
                  "%s)\n",
                  what, why);
}

static void batch_one(sbuf *b, const finding *f, int i)
{
    const child_proof *pr = &f->proof[i];
    const char *q = f->pub.child_query[i];
    int k = pr->param + 1;
    bool cut = false;
    char *batched = batched_query(q, k, &cut);

    if (batched == NULL) {
        np1_sb_printf(
            b,
            "     %s\n   Compare its parameter $%d with = ANY($%d) instead, and pass all the "
            "values at once as one array.\n",
            q, k, k);
        return;
    }
    if (rejection(f, batched) != NULL) {
        put_rejected(b, "batched query", rejection(f, batched));
        free(batched);
        return;
    }
    np1_sb_printf(b, "     %s\n", batched);
    if (pr->column >= 0 && pr->confirmed)
        np1_sb_printf(b, "   Pass the values of %s from the parent's rows as one array in $%d",
                      pr->linked, k);
    else
        np1_sb_printf(b, "   Pass the values the loop used for $%d as one array", k);
    np1_sb_printf(
        b, "%s, then match the rows returned to the parent's rows in the application.\n",
        cut ? " (its final LIMIT is left out: the batched query returns the rows of every "
              "parent row)"
            : "");
    free(batched);
}

/* Whether child i can be joined by its table, on the column it compares: out gets the column. */
static bool child_has_more(const char *text, int k);
static bool has_alias(const char *text);

/* Whether child i can be joined by its table, on the column it compares, with nothing else of
 * its text left out: out gets the column. Else it is joined as a LATERAL subquery. */
static bool child_inline(const finding *f, int i, char *out, size_t cap)
{
    const char *q = f->pub.child_query[i];
    int k = f->proof[i].param + 1;

    return f->child_table[i][0] != '\0' && child_column(q, k, out, cap) && !child_has_more(q, k) &&
           !has_alias(q) && max_param(q) == k;
}

/* ON c1.id = p.customer_id, or a LATERAL subquery when the child's table or column is unknown. */
static void join_one(sbuf *b, const finding *f, int i)
{
    const child_proof *pr = &f->proof[i];
    char col[128], alias[16];
    int k = pr->param + 1;
    sbuf pc = {0}; /* p.column, grown to what the quoted name needs */

    snprintf(alias, sizeof alias, "c%d", i + 1);
    np1_sb_add(&pc, "p.");
    if (pr->column >= 0)
        put_ident(&pc, pr->col_name);
    else
        np1_sb_add(&pc, "<parent column the loop reads>");
    const char *pcol = !pc.failed ? pc.s : "p.?";
    if (child_inline(f, i, col, sizeof col)) {
        np1_sb_add(b, " LEFT JOIN ");
        put_table(b, f->child_table[i]);
        np1_sb_printf(b, " %s ON %s.%s = %s", alias, alias, col, pcol);
    } else {
        char *lateral =
            replace_param(f->pub.child_query[i], k, pcol, max_param(f->pub.parent_query));
        np1_sb_printf(b, " LEFT JOIN LATERAL (%s) %s ON true", lateral ? lateral : "...", alias);
        free(lateral);
    }
    free(pc.s);
}

/* Whether the child's condition holds more than the comparison the loop fills in. */
static bool child_has_more(const char *text, int k)
{
    static const char *const where_w[] = {"where", NULL};
    char want[16];
    qtext q;
    bool more = false;

    if (!q_lex(text, &q))
        return false;
    snprintf(want, sizeof want, "$%d", k);
    uint32_t where = q_top_word(&q, 0, where_w), end = q_top_word(&q, where, end_of_query);
    for (uint32_t i = where; i < end; i++)
        more |=
            q_is(&q, i, "and") || q_is(&q, i, "or") || (q.t[i].kind == 'p' && !q_is(&q, i, want));
    free(q.t);
    return more;
}

static void join_part(sbuf *b, const finding *f)
{
    const np1_finding *p = &f->pub;
    sbuf joins = {0}, cond = {0};
    bool inline_parent;

    for (int i = 0; i < p->n_children; i++)
        join_one(&joins, f, i);
    inline_parent = f->parent_table != NULL && !labels(p->parent_query, f->proof[0].col_name) &&
                    parent_conditions(&cond, p->parent_query, f->parent_table);
    sbuf line = {0};
    np1_sb_add(&line, "SELECT p.*");
    for (int i = 0; i < p->n_children; i++)
        np1_sb_printf(&line, ", c%d.*", i + 1);
    if (inline_parent) {
        np1_sb_add(&line, " FROM ");
        put_table(&line, f->parent_table);
        np1_sb_printf(&line, " p%s%s", joins.s ? joins.s : "", cond.s ? cond.s : "");
    } else if (p->parent_query[0] != '\0') {
        np1_sb_printf(&line, " FROM (%s) p%s", p->parent_query, joins.s ? joins.s : "");
    } else {
        np1_sb_printf(&line, " FROM %s p%s -- keep the parent query's conditions",
                      f->parent_table ? f->parent_table : "parent", joins.s ? joins.s : "");
    }
    np1_sb_add(b, " join the child to the parent in one query (LEFT JOIN keeps the parent rows "
                  "without a match, as the loop did):\n");
    if (rejection(f, line.s) != NULL)
        put_rejected(b, "JOIN", rejection(f, line.s));
    else if (line.s != NULL)
        np1_sb_printf(b, "     %s\n", line.s);
    b->failed |= joins.failed || cond.failed || line.failed;
    free(joins.s);
    free(cond.s);
    free(line.s);
}

/* ---- the ORM in use, and its fix ---- */

static const char generic_orm[] =
    "With an ORM, load the association eagerly instead of once per row: Django "
    "select_related() or prefetch_related(), Rails includes() or preload(), SQLAlchemy "
    "joinedload() or selectinload(), Hibernate/JPA JOIN FETCH or @BatchSize, Entity Framework "
    "Include(), Sequelize include, Ecto preload.\n";

static const char generic_insert[] =
    "With an ORM or a driver: Django bulk_create(), Rails insert_all(), SQLAlchemy "
    "session.execute(insert(Model), rows) or executemany, Sequelize bulkCreate(), psycopg "
    "executemany() or copy().\n";

/* Whether every item of the SELECT list is table.column (AS label), unquoted, with the one
 * table of the FROM: SQLAlchemy's style, labelled or not. */
static bool all_qualified(const qtext *q)
{
    static const char *const from_w[] = {"from", NULL};
    uint32_t from = q_top_word(q, 0, from_w), i = 1, items = 0;

    if (!q_is(q, 0, "select") || from + 1 >= q->n || !q_ch(q, from + 1, 'w'))
        return false;
    const qtok *table = &q->t[from + 1];
    for (; i < from; items++) {
        if (!q_ch(q, i, 'w') || !q_byte(q, i + 1, '.') || !q_ch(q, i + 2, 'w') ||
            q->t[i].end - q->t[i].start != table->end - table->start ||
            strncmp(q->s + q->t[i].start, q->s + table->start, table->end - table->start) != 0)
            return false;
        i += 3;
        if (q_is(q, i, "as"))
            i += 2;
        if (i < from && !q_byte(q, i, ','))
            return false;
        i += i < from;
    }
    return items > 0;
}

/* The ORM of an INSERT: Sequelize's VALUES (DEFAULT,$1), Django's RETURNING "t"."id",
 * SQLAlchemy's RETURNING t.id, ActiveRecord's RETURNING "id"; NULL. */
static const char *insert_orm(const qtext *q)
{
    for (uint32_t i = 0; i + 2 < q->n; i++) {
        if (q_is(q, i, "values") && q_byte(q, i + 1, '(') && q_is(q, i + 2, "default"))
            return "sequelize";
        if (!q_is(q, i, "returning"))
            continue;
        if (q_ch(q, i + 1, 'q') && q_byte(q, i + 2, '.'))
            return "django";
        if (q_ch(q, i + 1, 'w') && q_byte(q, i + 2, '.'))
            return "sqlalchemy";
        if (q_ch(q, i + 1, 'q') && i + 2 == q->n)
            return "activerecord";
    }
    if (q->n > 0 && q_ch(q, q->n - 1, 'q') && q_is(q, q->n - 2, "returning"))
        return "activerecord";
    return NULL;
}

/* The ORM whose style a text has: Sequelize's "Books" AS "Book", ActiveRecord's "books".*,
 * SQLAlchemy's books.id AS books_id labels (or every column table.column, unquoted), Django's
 * "app_book"."id" with no label; for an INSERT, see insert_orm. NULL when none. */
static const char *orm_of(const char *text)
{
    qtext q;
    const char *orm = NULL;
    bool quoted_cols = false, labels = false;

    if (text == NULL || !q_lex(text, &q))
        return NULL;
    if (q_is(&q, 0, "insert")) {
        orm = insert_orm(&q);
        free(q.t);
        return orm;
    }
    for (uint32_t i = 0; i + 2 < q.n && orm == NULL; i++) {
        if (q_is(&q, i, "from") && q_ch(&q, i + 1, 'q') && q_is(&q, i + 2, "as") &&
            q_ch(&q, i + 3, 'q'))
            orm = "sequelize";
        else if (q_ch(&q, i, 'q') && q_byte(&q, i + 1, '.') && q_byte(&q, i + 2, '*'))
            orm = "activerecord";
        quoted_cols |= q_ch(&q, i, 'q') && q_byte(&q, i + 1, '.') && q_ch(&q, i + 2, 'q');
        if (q_ch(&q, i, 'w') && q_byte(&q, i + 1, '.') && q_ch(&q, i + 2, 'w') &&
            q_is(&q, i + 3, "as") && q_ch(&q, i + 4, 'w')) {
            uint32_t tl = q.t[i].end - q.t[i].start;
            labels |= q.t[i + 4].end - q.t[i + 4].start > tl &&
                      strncmp(q.s + q.t[i].start, q.s + q.t[i + 4].start, tl) == 0 &&
                      q.s[q.t[i + 4].start + tl] == '_';
        }
    }
    if (orm == NULL && (labels || all_qualified(&q)))
        orm = "sqlalchemy";
    if (orm == NULL && quoted_cols && !has_alias(text))
        orm = "django";
    free(q.t);
    return orm;
}

const char *np1_orm(const char *child, const char *parent)
{
    const char *orm = orm_of(child);

    return orm != NULL ? orm : orm_of(parent);
}

/* A name without its quotes, into out. */
static void unquote(const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);

    if (n >= 2 && name[0] == '"' && name[n - 1] == '"') {
        name++;
        n -= 2;
    }
    snprintf(out, cap, "%.*s", (int)n, name);
}

/* The model class of a table: Django's app_book is Book, books is Book, categories Category;
 * Sequelize's alias when the text has one. */
static void model_of(const char *orm, const char *table, const char *text, char *out, size_t cap)
{
    qtext q;
    const char *base = strrchr(table, '.') ? strrchr(table, '.') + 1 : table;
    size_t n;

    if (strcmp(orm, "sequelize") == 0 && text != NULL && q_lex(text, &q)) {
        for (uint32_t i = 0; i + 3 < q.n; i++)
            if (q_is(&q, i, "from") && q_is(&q, i + 2, "as") && q_ch(&q, i + 3, 'q')) {
                snprintf(out, cap, "%.*s", (int)(q.t[i + 3].end - q.t[i + 3].start - 2),
                         q.s + q.t[i + 3].start + 1);
                free(q.t);
                return;
            }
        free(q.t);
    }
    if (strcmp(orm, "django") == 0 && strchr(base, '_') != NULL)
        base = strchr(base, '_') + 1;
    snprintf(out, cap, "%s", base);
    n = strlen(out);
    if (n > 3 && strcmp(out + n - 3, "ies") == 0)
        snprintf(out + n - 3, cap - (n - 3), "y");
    else if (n > 1 && out[n - 1] == 's' && out[n - 2] != 's')
        out[n - 1] = '\0';
    out[0] = (char)(out[0] >= 'a' && out[0] <= 'z' ? out[0] - 'a' + 'A' : out[0]);
}

/* The association a loop walks: belongs-to when the child looks its row up by id with the
 * parent's author_id (authorId), has-many when the child looks up its rows by the parent's id. */
typedef struct assoc {
    bool belongs, many;
    char name[64];      /* author (belongs-to) */
    char parent[64];    /* the parent's model */
    char child[64];     /* the child's model */
    char many_name[64]; /* books (has-many: the child's table) */
} assoc;

static bool ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), m = strlen(end);

    return n > m && strcmp(s + n - m, end) == 0;
}

static bool find_assoc(const finding *f, const char *orm, assoc *a)
{
    const child_proof *pr = &f->proof[0];
    char ccol[128], raw[128], pcol[64];
    const char *ptable = f->parent_table, *ctable = f->child_table[0];
    size_t tl;

    memset(a, 0, sizeof *a);
    if (!f->pub.confirmed || pr->column < 0 || ptable == NULL || ctable[0] == '\0' ||
        !child_column(f->pub.child_query[0], pr->param + 1, raw, sizeof raw))
        return false;
    unquote(raw, ccol, sizeof ccol);
    snprintf(pcol, sizeof pcol, "%s", pr->col_name);
    tl = strlen(strrchr(ptable, '.') ? strrchr(ptable, '.') + 1 : ptable);
    if (strcmp(orm, "sqlalchemy") == 0 && strlen(pcol) > tl + 1 && pcol[tl] == '_')
        memmove(pcol, pcol + tl + 1, strlen(pcol + tl + 1) + 1); /* books_author_id */
    model_of(orm, ptable, f->pub.parent_query, a->parent, sizeof a->parent);
    model_of(orm, ctable, f->pub.child_query[0], a->child, sizeof a->child);
    if (strcmp(ccol, "id") == 0 && strcmp(pcol, "id") != 0) {
        size_t n = strlen(pcol);
        n -= ends_with(pcol, "_id") ? 3 : ends_with(pcol, "Id") ? 2 : 0;
        snprintf(a->name, sizeof a->name, "%.*s", (int)n, pcol);
        a->belongs = true;
    } else if (strcmp(pcol, "id") == 0 && strcmp(ccol, "id") != 0) {
        const char *base = strrchr(ctable, '.') ? strrchr(ctable, '.') + 1 : ctable;
        if (strcmp(orm, "django") == 0)
            snprintf(a->many_name, sizeof a->many_name, "%c%s_set",
                     a->child[0] >= 'A' && a->child[0] <= 'Z' ? a->child[0] - 'A' + 'a'
                                                              : a->child[0],
                     a->child + 1);
        else
            snprintf(a->many_name, sizeof a->many_name, "%s", base);
        a->many = true;
    }
    return a->belongs || a->many;
}

static void orm_loop_fix(sbuf *b, const finding *f)
{
    const char *orm = f->pub.orm;
    assoc a;

    if (orm[0] == '\0' || !find_assoc(f, orm, &a)) {
        np1_sb_add(b, generic_orm);
        return;
    }
    const char *name = a.belongs ? a.name : a.many_name;
    if (strcmp(orm, "django") == 0)
        np1_sb_printf(b, "Django: load it with the rows: %s.objects.%s(\"%s\").\n", a.parent,
                      a.belongs ? "select_related" : "prefetch_related", name);
    else if (strcmp(orm, "sqlalchemy") == 0)
        np1_sb_printf(b,
                      "SQLAlchemy: load it with the rows: select(%s).options(%s(%s.%s)) "
                      "(or session.query(%s).options(...)).\n",
                      a.parent, a.belongs ? "joinedload" : "selectinload", a.parent, name,
                      a.parent);
    else if (strcmp(orm, "activerecord") == 0)
        np1_sb_printf(b, "ActiveRecord: load it with the rows: %s.includes(:%s).\n", a.parent,
                      name);
    else
        np1_sb_printf(b, "Sequelize: load it with the rows: %s.findAll({ include: %s }).\n",
                      a.parent, a.child);
}

/* The table an INSERT writes: the name after INTO, its last part, unquoted; false if none. */
static bool insert_table(const char *text, char *out, size_t cap)
{
    qtext q;
    bool ok = false;

    if (!q_lex(text, &q))
        return false;
    for (uint32_t i = 0; i + 1 < q.n && !ok; i++)
        if (q_is(&q, i, "into") && q_name_end(&q, i + 1) < q.n)
            ok = token_name(&q, q_name_end(&q, i + 1), out, cap);
    free(q.t);
    return ok;
}

static void orm_insert_fix(sbuf *b, const finding *f)
{
    const char *orm = f->pub.orm;
    char model[64], table[128];

    if (orm[0] == '\0' || !insert_table(f->pub.child_query[0], table, sizeof table)) {
        np1_sb_add(b, generic_insert);
        return;
    }
    model_of(orm, table, NULL, model, sizeof model);
    if (strcmp(orm, "django") == 0)
        np1_sb_printf(b, "Django: %s.objects.bulk_create([...]).\n", model);
    else if (strcmp(orm, "sqlalchemy") == 0)
        np1_sb_printf(b,
                      "SQLAlchemy: session.add_all([...]) with insertmanyvalues, or "
                      "session.execute(insert(%s), [{...}, ...]).\n",
                      model);
    else if (strcmp(orm, "activerecord") == 0)
        np1_sb_printf(b, "ActiveRecord: %s.insert_all([{...}, ...]).\n", model);
    else
        np1_sb_printf(b, "Sequelize: %s.bulkCreate([{...}, ...]).\n", model);
}

void np1_orm_fix(sbuf *b, const finding *f)
{
    if (f->pub.kind == NP1_BATCH_INSERT)
        orm_insert_fix(b, f);
    else
        orm_loop_fix(b, f);
}

static char *loop_suggestion(const np1_settings *s, const finding *f)
{
    sbuf b = {0};
    int step = 1;

    explain_loop(&b, s, f);
    np1_sb_printf(&b, "%d. Batch the child %s: run %s once for all the parent rows:\n", step++,
                  f->pub.n_children > 1 ? "queries" : "query",
                  f->pub.n_children > 1 ? "each" : "it");
    for (int i = 0; i < f->pub.n_children; i++)
        batch_one(&b, f, i);
    if (f->pub.confirmed) { /* a JOIN needs the column the proof found */
        np1_sb_printf(&b, "%d. Or", step++);
        join_part(&b, f);
    }
    np1_sb_printf(&b, "%d. ", step);
    np1_orm_fix(&b, f);
    return np1_sb_take(&b);
}

static char *duplicate_suggestion(const finding *f)
{
    sbuf b = {0};
    char hex[17];
    const char *results = f->same_results == 1 ? "every sampled repeat returned the same rows"
                          : f->same_results == 0
                              ? "the rows returned changed between repeats (a write in between?)"
                              : "their results were not sampled";

    fp_hex(f->pub.child_fp[0], hex);
    np1_sb_printf(&b,
                  "Duplicate query: the same statement ran again and again with the same values "
                  "in one unit of work (a transaction, a test or a request); %s.\n     %s\n"
                  "1. Run it once and reuse the result: hoist it out of the loop, or cache it "
                  "for the request (memoize, a request-scoped cache, the ORM's identity map or "
                  "query cache).\n"
                  "2. If the repeats are meant to see changes, mark the statement with "
                  "/* pgscope:ignore */ or put %s on the allow-list.\n",
                  results, f->pub.child_query[0], hex);
    return np1_sb_take(&b);
}

static char *insert_suggestion(const finding *f)
{
    sbuf b = {0};

    np1_sb_printf(&b,
                  "Insert loop: one-row INSERTs of the same shape, one after the other in one "
                  "unit of work, each a round trip (and, outside a transaction, a commit).\n"
                  "     %s\n"
                  "1. Insert the rows in one statement: INSERT ... VALUES (...), (...), ... or "
                  "INSERT ... SELECT * FROM unnest($1::int[], $2::text[]).\n"
                  "2. For many rows, COPY ... FROM STDIN.\n3. ",
                  f->pub.child_query[0]);
    np1_orm_fix(&b, f);
    return np1_sb_take(&b);
}

char *np1_suggestion(const np1_settings *s, const finding *f)
{
    switch (f->pub.kind) {
    case NP1_DUPLICATE:
        return duplicate_suggestion(f);
    case NP1_BATCH_INSERT:
        return insert_suggestion(f);
    default:
        return loop_suggestion(s, f);
    }
}
