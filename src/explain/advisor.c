/* advisor.c — index advice, its pure parts: candidates read from a statement's parse tree, DDL,
 * coverage, and the suggestions consolidated from what hypothetical indexes showed. */
#include "config.h"

#include "pgscope/advisor.h"
#include "pgscope/explain.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <pg_query.h>

/* Bounds of what one statement is read for. Real statements stay far below them; beyond them
 * the rest is left out (fewer candidates), never misread. */
#define MAX_ENTRIES 32       /* FROM items of one query level */
#define MAX_CONJUNCTS 128    /* top-level AND terms of one query level (WHERE and ON) */
#define MAX_KEYS 64          /* equality, range and join-key columns of one query level */
#define MAX_TABLE_COLUMNS 16 /* columns gathered for one table before the index's cap */
#define MAX_LEVELS 16        /* nested query levels read: subqueries, CTEs, set operations */
#define MAX_WALK_DEPTH 1000  /* JSON levels walked looking for columns or subqueries */
#define MAX_LISTED 16        /* fingerprints listed per suggestion (advisor_suggestion) */

/* ---- small helpers ---- */

static bool same_text(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Copies a name whole, or not at all: a cut name would name another object. */
static bool copy_name(char dst[ADVISOR_NAME], const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (src == NULL || n >= ADVISOR_NAME)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

static int column_count(const advisor_index *ix)
{
    if (ix->n_columns < 0)
        return 0;
    return ix->n_columns > ADVISOR_MAX_COLUMNS ? ADVISOR_MAX_COLUMNS : ix->n_columns;
}

/* Names are compared within their arrays: an index from a caller may lack its NUL. */
static bool same_index(const advisor_index *a, const advisor_index *b)
{
    int n = column_count(a);

    if (strncmp(a->schema, b->schema, ADVISOR_NAME) != 0 ||
        strncmp(a->table, b->table, ADVISOR_NAME) != 0 || n != column_count(b) ||
        strncmp(a->predicate, b->predicate, ADVISOR_PREDICATE) != 0)
        return false;
    for (int i = 0; i < n; i++) {
        if (strncmp(a->columns[i], b->columns[i], ADVISOR_NAME) != 0)
            return false;
    }
    return true;
}

/* A name from a caller's index, terminated in copy even if the caller left it unterminated. */
static const char *bounded(const char *name, char copy[ADVISOR_NAME])
{
    size_t n = strnlen(name, ADVISOR_NAME - 1);

    memcpy(copy, name, n);
    copy[n] = '\0';
    return copy;
}

/* Text built into a fixed buffer; what does not fit is cut, and full says so. */
typedef struct {
    char *out;
    size_t cap, len;
    bool full;
} text_buf;

static void put_char(text_buf *b, char c)
{
    if (b->len + 1 < b->cap) {
        b->out[b->len++] = c;
        b->out[b->len] = '\0';
    } else {
        b->full = true;
    }
}

static void put_text(text_buf *b, const char *s)
{
    for (; *s != '\0'; s++)
        put_char(b, *s);
}

/* s between quote characters, a quote inside doubled: "na""me" or 'it''s'. */
static void put_quoted(text_buf *b, const char *s, char quote)
{
    put_char(b, quote);
    for (; *s != '\0'; s++) {
        if (*s == quote)
            put_char(b, quote);
        put_char(b, *s);
    }
    put_char(b, quote);
}

/* A string constant that means the same whatever standard_conforming_strings is: with a
 * backslash in it, an E'' literal with the backslashes doubled (as PQescapeLiteral does). */
static void put_string_literal(text_buf *b, const char *s)
{
    if (strchr(s, '\\') == NULL) {
        put_quoted(b, s, '\'');
        return;
    }
    put_text(b, "E'");
    for (; *s != '\0'; s++) {
        if (*s == '\'' || *s == '\\')
            put_char(b, *s);
        put_char(b, *s);
    }
    put_char(b, '\'');
}

/* ---- reading the parse tree ---- */

/* The text of a {"String": {"sval": ...}} node, NULL for anything else. */
static const char *string_node(json_t *node)
{
    return json_string_value(json_object_get(json_object_get(node, "String"), "sval"));
}

static bool field_is(json_t *object, const char *key, const char *value)
{
    return same_text(json_string_value(json_object_get(object, key)), value);
}

/* The one statement of a parse tree, as its node type and body; false for anything else. */
static bool only_statement(json_t *tree, const char **type, json_t **body)
{
    json_t *stmts = json_object_get(tree, "stmts");
    json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
    void *it = json_object_iter(stmt);

    if (json_array_size(stmts) != 1 || it == NULL || json_object_size(stmt) != 1)
        return false;
    *type = json_object_iter_key(it);
    *body = json_object_iter_value(it);
    return json_is_object(*body);
}

/* The parse tree of sql as JSON, NULL when it does not parse. */
static json_t *parse_tree(const char *sql)
{
    PgQueryParseResult parsed;
    json_t *tree;

    if (sql == NULL)
        return NULL;
    parsed = pg_query_parse(sql);
    tree = parsed.error ? NULL : json_loads(parsed.parse_tree ? parsed.parse_tree : "", 0, NULL);
    pg_query_free_parse_result(parsed);
    return tree;
}

/* True when node holds a column reference anywhere (or is too deep to tell). */
static bool mentions_column(json_t *node, int depth)
{
    const char *key;
    json_t *value;
    size_t i;

    if (depth > MAX_WALK_DEPTH)
        return true;
    if (json_is_array(node)) {
        json_array_foreach(node, i, value)
        {
            if (mentions_column(value, depth + 1))
                return true;
        }
    } else if (json_is_object(node)) {
        json_object_foreach(node, key, value)
        {
            if (strcmp(key, "ColumnRef") == 0 || mentions_column(value, depth + 1))
                return true;
        }
    }
    return false;
}

/* node without its casts: 'x'::text is 'x', $1::int is $1. */
static json_t *without_casts(json_t *node)
{
    for (int i = 0; i < MAX_WALK_DEPTH && json_object_get(node, "TypeCast") != NULL; i++)
        node = json_object_get(json_object_get(node, "TypeCast"), "arg");
    return node;
}

/* A value an index can look up: a constant, a parameter, or an expression of neither columns
 * nor NULL (column = NULL is never true). */
static bool is_value(json_t *node)
{
    json_t *c = json_object_get(without_casts(node), "A_Const");

    if (node == NULL || mentions_column(node, 0))
        return false;
    return !json_is_true(json_object_get(c, "isnull"));
}

/* The constant written for a value ('pending', 42, 'x'::text), NULL for parameters and
 * expressions: only a constant makes a partial index's predicate. */
static json_t *constant_of(json_t *value)
{
    return json_object_get(without_casts(value), "A_Const");
}

/* ---- query levels: what names mean ---- */

/* One FROM item. */
typedef struct {
    const char *schema; /* NULL when not written */
    const char *name;   /* as written in FROM: a table's or a WITH query's name */
    const char *alias;  /* NULL when none; when there is one, it is the only name */
    bool table;         /* a table an index can be made on (not a subquery, function, CTE) */
} entry;

/* A column of a table: where it is and its name. */
typedef struct {
    const entry *at;
    const char *name;
} column;

/* One query level: its FROM items, WITH names, select list and top-level AND terms. */
typedef struct level {
    const struct level *parent; /* the level a subquery is in, for correlated names */
    json_t *ctes;               /* WITH list: its names hide tables */
    json_t *targets;            /* select list: ORDER BY may name its outputs */
    entry entries[MAX_ENTRIES];
    int n_entries;
    bool crowded; /* more FROM items than entries: names are not looked for further out */
    json_t *conjuncts[MAX_CONJUNCTS];
    int n_conjuncts;
    column joins[MAX_KEYS]; /* join keys of JOIN ... USING */
    int n_joins;
} level;

/* Where candidates go. */
typedef struct {
    advisor_index *out;
    int max, n;
    const char *sql; /* the text, for numbers the JSON tree does not spell out */
} reader;

static void level_init(level *l, const level *parent, json_t *stmt)
{
    l->parent = parent;
    l->ctes = json_object_get(json_object_get(stmt, "withClause"), "ctes");
    l->targets = NULL;
    l->n_entries = 0;
    l->crowded = false;
    l->n_conjuncts = 0;
    l->n_joins = 0;
}

static bool is_cte_name(const level *l, const char *name)
{
    json_t *cte;
    size_t i;

    for (; l != NULL; l = l->parent) {
        json_array_foreach(l->ctes, i, cte)
        {
            if (same_text(json_string_value(
                              json_object_get(json_object_get(cte, "CommonTableExpr"), "ctename")),
                          name))
                return true;
        }
    }
    return false;
}

static entry *add_entry(level *l)
{
    if (l->n_entries == MAX_ENTRIES) {
        l->crowded = true;
        return NULL;
    }
    l->entries[l->n_entries] = (entry){NULL, NULL, NULL, false};
    return &l->entries[l->n_entries++];
}

static const char *alias_of(json_t *item)
{
    return json_string_value(json_object_get(json_object_get(item, "alias"), "aliasname"));
}

/* A table named in FROM (or UPDATE's or DELETE's target). A WITH name is not a table. */
static void add_range_var(level *l, json_t *rv)
{
    entry *e = add_entry(l);
    const char *schema = json_string_value(json_object_get(rv, "schemaname"));
    const char *table = json_string_value(json_object_get(rv, "relname"));

    if (e == NULL)
        return;
    e->alias = alias_of(rv);
    e->schema = schema;
    e->name = table;
    e->table = table != NULL && strlen(table) < ADVISOR_NAME &&
               (schema != NULL ? strlen(schema) < ADVISOR_NAME : !is_cte_name(l, table));
}

static void add_conjuncts(level *l, json_t *expr, int depth);
static void read_select(reader *r, json_t *select, const level *parent, int depth);

/* a JOIN b USING (k): a.k = b.k, a join key on both sides when both are tables (a join of
 * joins would need to know which side has k). */
static void add_using(level *l, int left, int right, json_t *names)
{
    json_t *name;
    size_t i;

    if (right != left + 1 || l->n_entries != right + 1 || !l->entries[left].table ||
        !l->entries[right].table)
        return;
    json_array_foreach(names, i, name)
    {
        const char *n = string_node(name);
        if (n == NULL || strlen(n) >= ADVISOR_NAME || l->n_joins + 2 > MAX_KEYS)
            continue;
        l->joins[l->n_joins++] = (column){&l->entries[left], n};
        l->joins[l->n_joins++] = (column){&l->entries[right], n};
    }
}

static void add_from_item(reader *r, level *l, json_t *item, int depth)
{
    json_t *v;

    if ((v = json_object_get(item, "RangeVar")) != NULL) {
        add_range_var(l, v);
    } else if ((v = json_object_get(item, "JoinExpr")) != NULL) {
        int left = l->n_entries;
        add_from_item(r, l, json_object_get(v, "larg"), depth);
        int right = l->n_entries;
        add_from_item(r, l, json_object_get(v, "rarg"), depth);
        add_using(l, left, right, json_object_get(v, "usingClause"));
        add_conjuncts(l, json_object_get(v, "quals"), 0);
    } else if ((v = json_object_get(item, "RangeSubselect")) != NULL) {
        entry *e = add_entry(l);
        if (e != NULL)
            e->alias = alias_of(v);
        /* a LATERAL subquery may name the items before it: they are this level's */
        read_select(r, json_object_get(json_object_get(v, "subquery"), "SelectStmt"), l, depth + 1);
    } else if (json_is_object(item) && json_object_size(item) == 1) {
        entry *e = add_entry(l); /* a function, VALUES...: a name to resolve, not a table */
        if (e != NULL)
            e->alias = alias_of(json_object_iter_value(json_object_iter(item)));
    }
}

static void add_from(reader *r, level *l, json_t *items, int depth)
{
    json_t *item;
    size_t i;

    json_array_foreach(items, i, item) add_from_item(r, l, item, depth);
}

/* The top-level AND terms of a condition: (a AND (b AND c)) gives a, b, c. OR, NOT and the
 * rest stay whole terms, which read_term then finds no use for. */
static void add_conjuncts(level *l, json_t *expr, int depth)
{
    json_t *b = json_object_get(expr, "BoolExpr"), *arg;
    size_t i;

    if (expr == NULL)
        return;
    if (b != NULL && field_is(b, "boolop", "AND_EXPR") && depth < MAX_WALK_DEPTH) {
        json_array_foreach(json_object_get(b, "args"), i, arg) add_conjuncts(l, arg, depth + 1);
        return;
    }
    if (l->n_conjuncts < MAX_CONJUNCTS)
        l->conjuncts[l->n_conjuncts++] = expr;
}

/* Does a qualifier (schema.)name name this FROM item? An alias hides the table's name. */
static bool entry_named(const entry *e, const char *schema, const char *name)
{
    if (e->alias != NULL)
        return schema == NULL && same_text(e->alias, name);
    if (!same_text(e->name, name))
        return false;
    return schema == NULL || e->schema == NULL || same_text(e->schema, schema);
}

/* The FROM item a qualifier names, looked for from this level outwards; NULL when none. */
static const entry *find_qualifier(const level *l, const char *schema, const char *name)
{
    for (; l != NULL; l = l->parent) {
        for (int i = 0; i < l->n_entries; i++) {
            if (entry_named(&l->entries[i], schema, name))
                return &l->entries[i];
        }
        if (l->crowded)
            return NULL;
    }
    return NULL;
}

/* The table column node refers to: qualified by alias, table or schema.table, or unqualified
 * when this level reads exactly one FROM item (which must be a table). */
static bool resolve_column(const level *l, json_t *node, column *c)
{
    json_t *fields = json_object_get(json_object_get(node, "ColumnRef"), "fields");
    size_t n = json_array_size(fields);
    const char *name = n > 0 ? string_node(json_array_get(fields, n - 1)) : NULL;

    c->at = NULL;
    c->name = name;
    if (name == NULL || strlen(name) >= ADVISOR_NAME)
        return false;
    if (n == 1 && l->n_entries == 1 && !l->crowded)
        c->at = &l->entries[0];
    else if (n == 2)
        c->at = find_qualifier(l, NULL, string_node(json_array_get(fields, 0)));
    else if (n == 3)
        c->at = find_qualifier(l, string_node(json_array_get(fields, 0)),
                               string_node(json_array_get(fields, 1)));
    return c->at != NULL && c->at->table;
}

/* ---- what the terms say of columns ---- */

typedef enum { KEY_EQUAL, KEY_RANGE, KEY_JOIN } key_kind;

typedef struct {
    key_kind kind;
    column col;
    json_t *constant; /* the A_Const of "column = constant": a partial index's predicate */
} key;

typedef struct {
    key v[MAX_KEYS];
    int n;
} keys;

static void add_key(keys *k, key_kind kind, column col, json_t *constant)
{
    if (k->n < MAX_KEYS)
        k->v[k->n++] = (key){kind, col, constant};
}

/* The operator of an A_Expr: "=" for both = and OPERATOR(pg_catalog.=); NULL when it is in
 * another schema, where it could mean anything. */
static const char *operator_of(json_t *expr)
{
    json_t *name = json_object_get(expr, "name");
    size_t n = json_array_size(name);

    if (n == 2 && !same_text(string_node(json_array_get(name, 0)), "pg_catalog"))
        return NULL;
    return n == 1 || n == 2 ? string_node(json_array_get(name, n - 1)) : NULL;
}

static bool is_range_operator(const char *op)
{
    return same_text(op, "<") || same_text(op, "<=") || same_text(op, ">") || same_text(op, ">=");
}

/* Every item of a List node (IN (...), BETWEEN a AND b) is a value. */
static bool all_values(json_t *list)
{
    json_t *items = json_object_get(json_object_get(list, "List"), "items");

    return json_array_size(items) > 0 && !mentions_column(items, 0);
}

/* column op column: equal columns of two FROM items are a join key for each. */
static void read_two_columns(keys *k, const char *op, column a, column b)
{
    if (same_text(op, "=") && a.at != b.at) {
        add_key(k, KEY_JOIN, a, NULL);
        add_key(k, KEY_JOIN, b, NULL);
    }
}

static void read_operator(const level *l, keys *k, json_t *expr)
{
    const char *op = operator_of(expr);
    json_t *left = json_object_get(expr, "lexpr"), *right = json_object_get(expr, "rexpr");
    column a, b;
    bool has_a = resolve_column(l, left, &a), has_b = resolve_column(l, right, &b);

    if (!same_text(op, "=") && !is_range_operator(op))
        return;
    if (has_a && has_b) {
        read_two_columns(k, op, a, b);
    } else if (has_a && is_value(right)) {
        add_key(k, same_text(op, "=") ? KEY_EQUAL : KEY_RANGE, a,
                same_text(op, "=") ? constant_of(right) : NULL);
    } else if (has_b && is_value(left)) {
        add_key(k, same_text(op, "=") ? KEY_EQUAL : KEY_RANGE, b,
                same_text(op, "=") ? constant_of(left) : NULL);
    }
}

/* One top-level AND term: col = v, v = col, col < v..., col IN (...), col = ANY (v),
 * col BETWEEN v AND w, a.x = b.y. Anything else (OR, NOT, functions of columns) is no use. */
static void read_term(const level *l, keys *k, json_t *term)
{
    json_t *expr = json_object_get(term, "A_Expr");
    const char *kind = json_string_value(json_object_get(expr, "kind"));
    json_t *right = json_object_get(expr, "rexpr");
    column c;

    if (kind == NULL)
        return;
    if (strcmp(kind, "AEXPR_OP") == 0) {
        read_operator(l, k, expr);
        return;
    }
    if (!resolve_column(l, json_object_get(expr, "lexpr"), &c))
        return;
    if (strcmp(kind, "AEXPR_IN") == 0 && same_text(operator_of(expr), "=") && all_values(right))
        add_key(k, KEY_EQUAL, c, NULL);
    else if (strcmp(kind, "AEXPR_OP_ANY") == 0 && same_text(operator_of(expr), "=") &&
             is_value(right))
        add_key(k, KEY_EQUAL, c, NULL);
    else if ((strcmp(kind, "AEXPR_BETWEEN") == 0 || strcmp(kind, "AEXPR_BETWEEN_SYM") == 0) &&
             all_values(right))
        add_key(k, KEY_RANGE, c, NULL);
}

/* ---- ORDER BY ---- */

/* The sort columns an index could hand out in order: all of one table, one direction. */
typedef struct {
    const entry *at; /* NULL: no LIMIT, or the order is not of one table's columns */
    const char *columns[MAX_TABLE_COLUMNS];
    int n;
} order;

/* Direction and NULLS place of a sort key, as (descending, nulls first); false for USING. */
static bool sort_direction(json_t *by, bool *desc, bool *nulls_first)
{
    const char *dir = json_string_value(json_object_get(by, "sortby_dir"));
    const char *nulls = json_string_value(json_object_get(by, "sortby_nulls"));

    if (same_text(dir, "SORTBY_DESC"))
        *desc = true;
    else if (dir == NULL || same_text(dir, "SORTBY_DEFAULT") || same_text(dir, "SORTBY_ASC"))
        *desc = false;
    else
        return false;
    /* PostgreSQL's default: NULLS LAST ascending, NULLS FIRST descending */
    *nulls_first =
        same_text(nulls, "SORTBY_NULLS_FIRST") || (*desc && !same_text(nulls, "SORTBY_NULLS_LAST"));
    return true;
}

/* An unqualified ORDER BY name is an output column first: SELECT id AS i ... ORDER BY i. */
static json_t *output_named(const level *l, json_t *node)
{
    json_t *fields = json_object_get(json_object_get(node, "ColumnRef"), "fields");
    const char *name = string_node(json_array_get(fields, 0));
    json_t *target;
    size_t i;

    if (json_array_size(fields) != 1 || name == NULL)
        return node;
    json_array_foreach(l->targets, i, target)
    {
        json_t *res = json_object_get(target, "ResTarget");
        if (field_is(res, "name", name))
            return json_object_get(res, "val");
    }
    return node;
}

/* One sort key; false when it keeps an index from giving the order. A btree read forwards
 * gives ASC NULLS LAST, read backwards DESC NULLS FIRST, the same for all its columns: any
 * other order would need an index declared with those directions. */
static bool add_sort_key(const level *l, order *o, json_t *by, bool *desc)
{
    bool d, nulls_first;
    column c;

    if (!sort_direction(by, &d, &nulls_first) || d != nulls_first || (o->n > 0 && d != *desc))
        return false;
    *desc = d;
    if (!resolve_column(l, output_named(l, json_object_get(by, "node")), &c) ||
        (o->at != NULL && o->at != c.at))
        return false;
    o->at = c.at;
    if (o->n < MAX_TABLE_COLUMNS)
        o->columns[o->n++] = c.name;
    return true;
}

static void read_order(const level *l, json_t *sort, bool limited, order *o)
{
    bool desc = false;
    json_t *item;
    size_t i;

    o->at = NULL;
    o->n = 0;
    if (!limited)
        return;
    json_array_foreach(sort, i, item)
    {
        if (!add_sort_key(l, o, json_object_get(item, "SortBy"), &desc)) {
            o->at = NULL;
            o->n = 0;
            return;
        }
    }
}

/* LIMIT n, LIMIT $1, FETCH FIRST n ROWS; not LIMIT ALL (a NULL count). */
static bool has_limit(json_t *select)
{
    json_t *count = json_object_get(select, "limitCount");

    return count != NULL &&
           !json_is_true(json_object_get(json_object_get(count, "A_Const"), "isnull"));
}

/* ---- candidates ---- */

/* Adds name to cols unless it is there already, is skip, or cols is full. */
static int add_column(const char **cols, int n, const char *name, const char *skip)
{
    if (n == MAX_TABLE_COLUMNS || same_text(name, skip))
        return n;
    for (int i = 0; i < n; i++) {
        if (same_text(cols[i], name))
            return n;
    }
    cols[n] = name;
    return n + 1;
}

/* The columns of one table's index, in order: its equality columns as written, then its
 * ORDER BY columns or else its first range column. skip: the column a partial index's
 * predicate fixes. Returns how many (the cap is applied later). */
static int table_columns(const entry *e, const keys *k, const order *o, const char *skip,
                         const char **cols)
{
    int n = 0, more;

    for (int i = 0; i < k->n; i++) {
        if (k->v[i].kind == KEY_EQUAL && k->v[i].col.at == e)
            n = add_column(cols, n, k->v[i].col.name, skip);
    }
    if (o->at == e) {
        for (int i = 0; i < o->n; i++)
            n = add_column(cols, n, o->columns[i], skip);
        return n;
    }
    for (int i = 0; i < k->n; i++) {
        if (k->v[i].kind == KEY_RANGE && k->v[i].col.at == e &&
            (more = add_column(cols, n, k->v[i].col.name, skip)) > n)
            return more;
    }
    return n;
}

/* Writes one candidate, unless it is there already or a name does not fit whole. */
static void emit(reader *r, const entry *e, const char **cols, int n, const char *predicate)
{
    advisor_index ix;

    memset(&ix, 0, sizeof(ix));
    if (n <= 0 || r->n >= r->max || (e->schema != NULL && !copy_name(ix.schema, e->schema)) ||
        !copy_name(ix.table, e->name))
        return;
    ix.n_columns = n < ADVISOR_MAX_COLUMNS ? n : ADVISOR_MAX_COLUMNS;
    for (int i = 0; i < ix.n_columns; i++) {
        if (!copy_name(ix.columns[i], cols[i]))
            return;
    }
    if (predicate != NULL)
        snprintf(ix.predicate, sizeof(ix.predicate), "%s", predicate);
    for (int i = 0; i < r->n; i++) {
        if (same_index(&r->out[i], &ix))
            return;
    }
    r->out[r->n++] = ix;
}

/* Can name be written bare in an expression and still mean that column? Plain lower-case
 * names can, unless they are keywords (order, user...): the parser tells. */
static bool bare_name_reads_back(const char *name)
{
    char sql[ADVISOR_NAME + 32];
    json_t *tree, *body, *fields;
    const char *type;
    bool same = false;

    if (name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    }
    snprintf(sql, sizeof(sql), "SELECT 1 WHERE %s = 1", name);
    tree = parse_tree(sql);
    if (tree != NULL && only_statement(tree, &type, &body)) {
        fields = json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(body, "whereClause"), "A_Expr"),
                                "lexpr"),
                "ColumnRef"),
            "fields");
        same =
            json_array_size(fields) == 1 && same_text(string_node(json_array_get(fields, 0)), name);
    }
    json_decref(tree);
    return same;
}

/* libpg_query leaves an integer out of its JSON when it is 0, and (in this version) when it is
 * negative: the text at the constant's location says which, as written there. */
static bool put_integer_as_written(text_buf *b, const char *sql, json_t *c)
{
    json_t *location = json_object_get(c, "location");
    json_int_t at = json_integer_value(location);
    const char *p;

    if (sql == NULL || !json_is_integer(location) || at < 0 || (size_t)at >= strlen(sql))
        return false;
    p = sql + at;
    if (*p == '-') {
        put_char(b, *p++);
        while (isspace((unsigned char)*p))
            p++;
    }
    if (!isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        put_char(b, *p++);
    return true;
}

/* A constant as SQL: 'it''s', 42, -1, 1.5, true. False for NULL and bit strings. */
static bool put_literal(text_buf *b, const char *sql, json_t *c)
{
    json_t *v;
    const char *s;

    if ((v = json_object_get(c, "sval")) != NULL) {
        s = json_string_value(json_object_get(v, "sval"));
        put_string_literal(b, s != NULL ? s : "");
    } else if ((v = json_object_get(c, "ival")) != NULL) {
        if (!json_is_integer(json_object_get(v, "ival")))
            return put_integer_as_written(b, sql, c);
        char num[32];
        snprintf(num, sizeof(num), "%lld",
                 (long long)json_integer_value(json_object_get(v, "ival")));
        put_text(b, num);
    } else if ((v = json_object_get(c, "fval")) != NULL) {
        if ((s = json_string_value(json_object_get(v, "fval"))) == NULL)
            return false;
        put_text(b, s);
    } else if ((v = json_object_get(c, "boolval")) != NULL) {
        put_text(b, json_is_true(json_object_get(v, "boolval")) ? "true" : "false");
    } else {
        return false;
    }
    return true;
}

/* "status = 'pending'": the predicate of a partial index, whole or not at all. */
static bool predicate_text(const reader *r, const key *eq, char out[ADVISOR_PREDICATE])
{
    text_buf b = {out, ADVISOR_PREDICATE, 0, false};

    out[0] = '\0';
    if (bare_name_reads_back(eq->col.name))
        put_text(&b, eq->col.name);
    else
        put_quoted(&b, eq->col.name, '"');
    put_text(&b, " = ");
    return put_literal(&b, r->sql, eq->constant) && !b.full;
}

/* column = constant: an index on the table's other columns, only for rows where it holds. */
static void emit_partial(reader *r, const keys *k, const order *o, const key *eq)
{
    char predicate[ADVISOR_PREDICATE];
    const char *cols[MAX_TABLE_COLUMNS];
    int n = table_columns(eq->col.at, k, o, eq->col.name, cols);

    if (n > 0 && predicate_text(r, eq, predicate))
        emit(r, eq->col.at, cols, n, predicate);
}

/* A join key: on its own, and followed by its table's equality columns, then its order or range
 * column: the inner side of a nested loop is looked up by the key and filtered or sorted by
 * its own columns (a LATERAL top-N wants (customer_id, created_at), not one of the two). */
static void emit_join(reader *r, const keys *k, const order *o, const key *join)
{
    const char *more[MAX_TABLE_COLUMNS], *cols[ADVISOR_MAX_COLUMNS];
    int n = table_columns(join->col.at, k, o, join->col.name, more), m = 1;

    cols[0] = join->col.name;
    emit(r, join->col.at, cols, 1, NULL);
    for (int i = 0; i < n && m < ADVISOR_MAX_COLUMNS; i++)
        cols[m++] = more[i];
    if (m > 1)
        emit(r, join->col.at, cols, m, NULL);
}

/* The candidates of one query level: per table, then each join key, then partial indexes. */
static void read_level(reader *r, const level *l, json_t *sort, bool limited)
{
    const char *cols[MAX_TABLE_COLUMNS];
    keys k;
    order o;

    k.n = 0;
    for (int i = 0; i < l->n_joins; i++)
        add_key(&k, KEY_JOIN, l->joins[i], NULL);
    for (int i = 0; i < l->n_conjuncts; i++)
        read_term(l, &k, l->conjuncts[i]);
    read_order(l, sort, limited, &o);
    for (int i = 0; i < l->n_entries; i++) {
        if (l->entries[i].table)
            emit(r, &l->entries[i], cols, table_columns(&l->entries[i], &k, &o, NULL, cols), NULL);
    }
    for (int i = 0; i < k.n; i++) {
        if (k.v[i].kind == KEY_JOIN)
            emit_join(r, &k, &o, &k.v[i]);
    }
    for (int i = 0; i < k.n; i++) {
        if (k.v[i].kind == KEY_EQUAL && k.v[i].constant != NULL)
            emit_partial(r, &k, &o, &k.v[i]);
    }
}

/* Subqueries in an expression (EXISTS (...), IN (SELECT ...), scalar ones) are query levels
 * of their own, inside this one: their names may be this level's. */
static void read_subqueries(reader *r, const level *l, json_t *node, int depth, int walk)
{
    json_t *value, *sub = json_object_get(node, "SubLink");
    const char *name;
    size_t i;

    if (walk > MAX_WALK_DEPTH)
        return;
    if (sub != NULL) {
        read_select(r, json_object_get(json_object_get(sub, "subselect"), "SelectStmt"), l,
                    depth + 1);
    } else if (json_is_object(node)) {
        json_object_foreach(node, name, value) read_subqueries(r, l, value, depth, walk + 1);
    } else if (json_is_array(node)) {
        json_array_foreach(node, i, value) read_subqueries(r, l, value, depth, walk + 1);
    }
}

static void read_level_subqueries(reader *r, const level *l, int depth)
{
    read_subqueries(r, l, l->targets, depth, 0);
    for (int i = 0; i < l->n_conjuncts; i++)
        read_subqueries(r, l, l->conjuncts[i], depth, 0);
}

/* WITH queries come first in the text; a data-modifying one is not read (nor replayed). */
static void read_ctes(reader *r, const level *l, int depth)
{
    json_t *cte;
    size_t i;

    json_array_foreach(l->ctes, i, cte)
    {
        json_t *query = json_object_get(json_object_get(cte, "CommonTableExpr"), "ctequery");
        read_select(r, json_object_get(query, "SelectStmt"), l, depth + 1);
    }
}

static void read_select(reader *r, json_t *select, const level *parent, int depth)
{
    level l;

    if (!json_is_object(select) || depth > MAX_LEVELS || r->n >= r->max)
        return;
    level_init(&l, parent, select);
    read_ctes(r, &l, depth);
    if (json_object_get(select, "larg") != NULL || json_object_get(select, "rarg") != NULL) {
        /* UNION, INTERSECT, EXCEPT: each arm reads its own tables (their arms are bare) */
        read_select(r, json_object_get(select, "larg"), &l, depth + 1);
        read_select(r, json_object_get(select, "rarg"), &l, depth + 1);
        return;
    }
    l.targets = json_object_get(select, "targetList");
    add_from(r, &l, json_object_get(select, "fromClause"), depth);
    add_conjuncts(&l, json_object_get(select, "whereClause"), 0);
    read_level(r, &l, json_object_get(select, "sortClause"), has_limit(select));
    read_level_subqueries(r, &l, depth);
}

/* UPDATE and DELETE: their target table, UPDATE's FROM or DELETE's USING, their WHERE. */
static void read_modify(reader *r, json_t *stmt, const char *more_from)
{
    level l;

    level_init(&l, NULL, stmt);
    read_ctes(r, &l, 0);
    add_range_var(&l, json_object_get(stmt, "relation"));
    add_from(r, &l, json_object_get(stmt, more_from), 0);
    add_conjuncts(&l, json_object_get(stmt, "whereClause"), 0);
    read_level(r, &l, NULL, false);
    read_level_subqueries(r, &l, 0);
}

/* libpg_query writing out a tree nested a few hundred levels deep overflows the stack, and
 * the process dies: the guard bounds nesting before parsing, and says so in its reason. */
static bool too_deep_to_parse(const char *sql)
{
    explain_guard_result g = explain_guard(sql);

    return g.kind == EXPLAIN_GUARD_REFUSED && strstr(g.reason, "nested too deeply") != NULL;
}

int advisor_candidates(const char *sql, advisor_index *out, int max)
{
    reader r = {out, max, 0, sql};
    json_t *tree, *body;
    const char *type;

    if (sql == NULL || out == NULL || max <= 0 || too_deep_to_parse(sql))
        return 0;
    tree = parse_tree(sql);
    if (tree != NULL && only_statement(tree, &type, &body)) {
        if (strcmp(type, "SelectStmt") == 0)
            read_select(&r, body, NULL, 0);
        else if (strcmp(type, "UpdateStmt") == 0)
            read_modify(&r, body, "fromClause");
        else if (strcmp(type, "DeleteStmt") == 0)
            read_modify(&r, body, "usingClause");
    }
    json_decref(tree);
    return r.n;
}

/* ---- DDL, coverage, updated columns ---- */

/* The longest text advisor_ddl writes, its NUL included: names of ADVISOR_NAME - 1 bytes that
 * are all quotes (each one doubled, between two quotes), every column, the longest predicate.
 * A suggestion's DDL is never cut. */
#define DDL_QUOTED_NAME (2 * (ADVISOR_NAME - 1) + 2)
#define DDL_LONGEST                                                                                \
    (sizeof "CREATE INDEX CONCURRENTLY ON " - 1 + DDL_QUOTED_NAME + 1 + DDL_QUOTED_NAME +          \
     sizeof " (" - 1 + ADVISOR_MAX_COLUMNS * DDL_QUOTED_NAME +                                     \
     (ADVISOR_MAX_COLUMNS - 1) * (sizeof ", " - 1) + 1 + sizeof " WHERE " - 1 +                    \
     ADVISOR_PREDICATE - 1 + 1)
_Static_assert(sizeof(((advisor_suggestion *)0)->ddl) >= DDL_LONGEST,
               "advisor_suggestion.ddl cannot hold the longest DDL");

void advisor_ddl(const advisor_index *ix, bool concurrently, char *out, size_t cap)
{
    text_buf b = {out, cap, 0, false};
    char name[ADVISOR_NAME];

    if (out == NULL || cap == 0)
        return;
    out[0] = '\0';
    if (ix == NULL)
        return;
    put_text(&b, concurrently ? "CREATE INDEX CONCURRENTLY ON " : "CREATE INDEX ON ");
    if (ix->schema[0] != '\0') {
        put_quoted(&b, bounded(ix->schema, name), '"');
        put_char(&b, '.');
    }
    put_quoted(&b, bounded(ix->table, name), '"');
    put_text(&b, " (");
    for (int i = 0; i < column_count(ix); i++) {
        if (i > 0)
            put_text(&b, ", ");
        put_quoted(&b, bounded(ix->columns[i], name), '"');
    }
    put_char(&b, ')');
    if (ix->predicate[0] != '\0') {
        char predicate[ADVISOR_PREDICATE];
        size_t n = strnlen(ix->predicate, ADVISOR_PREDICATE - 1);
        memcpy(predicate, ix->predicate, n);
        predicate[n] = '\0';
        put_text(&b, " WHERE ");
        put_text(&b, predicate);
    }
}

bool advisor_covered(const advisor_index *ix, const advisor_index *existing)
{
    int n;

    if (ix == NULL || existing == NULL)
        return false;
    n = column_count(ix);
    if (n == 0 || n > column_count(existing) ||
        strncmp(ix->table, existing->table, ADVISOR_NAME) != 0 ||
        (ix->schema[0] != '\0' && existing->schema[0] != '\0' &&
         strncmp(ix->schema, existing->schema, ADVISOR_NAME) != 0))
        return false;
    for (int i = 0; i < n; i++) {
        if (strncmp(ix->columns[i], existing->columns[i], ADVISOR_NAME) != 0)
            return false;
    }
    return existing->predicate[0] == '\0' ||
           strncmp(ix->predicate, existing->predicate, ADVISOR_PREDICATE) == 0;
}

/* The columns an UPDATE's SET list names, each once. */
static int set_columns(json_t *update, char (*columns)[ADVISOR_NAME], int max)
{
    json_t *target;
    size_t i;
    int n = 0;

    json_array_foreach(json_object_get(update, "targetList"), i, target)
    {
        const char *name =
            json_string_value(json_object_get(json_object_get(target, "ResTarget"), "name"));
        bool seen = false;
        for (int j = 0; j < n && !seen; j++)
            seen = same_text(columns[j], name);
        if (n < max && !seen && copy_name(columns[n], name))
            n++;
    }
    return n;
}

int advisor_updated_columns(const char *sql, char table[ADVISOR_NAME],
                            char (*columns)[ADVISOR_NAME], int max)
{
    json_t *tree, *body;
    const char *type;
    int n = -1;

    if (table == NULL || (max > 0 && columns == NULL))
        return -1;
    table[0] = '\0';
    if (sql == NULL || too_deep_to_parse(sql))
        return -1;
    tree = parse_tree(sql);
    bool update = false, write = false;
    if (tree != NULL && only_statement(tree, &type, &body)) {
        update = strcmp(type, "UpdateStmt") == 0;
        write = update || strcmp(type, "InsertStmt") == 0 || strcmp(type, "DeleteStmt") == 0;
    }
    if (write && copy_name(table, json_string_value(json_object_get(
                                      json_object_get(body, "relation"), "relname"))))
        n = update ? set_columns(body, columns, max < 0 ? 0 : max) : 0;
    json_decref(tree);
    return n;
}

/* ---- consolidation ---- */

/* One statement shape the results speak of. */
typedef struct {
    uint64_t fingerprint;
    double weight;    /* its time in the run, 0 when the shapes do not say */
    bool misestimate; /* a sampled plan of it was far off */
    /* tables on which a suggestion already chosen serves it: a join may need an index on
     * each side, so being served is per table */
    const char *served[8];
    int n_served;
} statement;

static bool served_on(const statement *st, const char *table)
{
    for (int i = 0; i < st->n_served; i++)
        if (strcmp(st->served[i], table) == 0)
            return true;
    return false;
}

/* One trial, with the statement it was tried for. */
typedef struct {
    size_t statement;
    const advisor_trial *trial;
    double cost_before; /* of its statement's plan with the existing indexes */
} observation;

/* Everything the results say, flattened, and the scratch space of the choice. */
typedef struct {
    statement *statements;
    size_t n_statements;
    observation *obs;
    size_t n_obs;
    const advisor_index **covered; /* indexes an existing one already serves */
    size_t n_covered;
    /* the trials of the outcome being chosen from, grouped by table: a candidate only serves
     * trials on its own table, so it looks at its group alone */
    const observation **phase;
    size_t n_phase;
    const observation **best; /* per statement: the best trial the last candidate evaluated
                               * serves, for the statements in touched (in the order seen) */
    size_t *touched;
    size_t n_touched;
} evidence;

/* What a candidate brings the statements not served yet. */
typedef struct {
    double benefit; /* weight x reduction (verified), or weight (unverified) */
    double cost_before, cost_after;
    int n_helped;
} value;

/* An index that may be suggested. */
typedef struct {
    advisor_index index;
    double size_bytes;  /* largest hypopg size seen for it; -1 when none */
    size_t first, last; /* its table's group in phase */
    value known;        /* its value when last evaluated */
    bool chosen;
} candidate;

static double weight_of(uint64_t fingerprint, const advisor_shape *shapes, size_t n)
{
    for (size_t i = 0; shapes != NULL && i < n; i++) {
        if (shapes[i].fingerprint == fingerprint)
            return shapes[i].weight_ms > 0 ? shapes[i].weight_ms : 0; /* NaN too */
    }
    return 0;
}

static size_t statement_of(evidence *ev, const advisor_result *r, const advisor_shape *shapes,
                           size_t n_shapes)
{
    size_t i;

    for (i = 0; i < ev->n_statements; i++) {
        if (ev->statements[i].fingerprint == r->fingerprint)
            break;
    }
    if (i == ev->n_statements) {
        memset(&ev->statements[i], 0, sizeof(ev->statements[i]));
        ev->statements[i].fingerprint = r->fingerprint;
        ev->statements[i].weight = weight_of(r->fingerprint, shapes, n_shapes);
        ev->n_statements++;
    }
    ev->statements[i].misestimate |= r->misestimate;
    return i;
}

/* The trials of a result that learnt something; 0 for one that did not. */
static size_t trials_of(const advisor_result *r)
{
    return r != NULL && r->ok && r->trials != NULL && r->n_trials > 0 ? (size_t)r->n_trials : 0;
}

static void observe(evidence *ev, size_t statement_at, const advisor_result *r)
{
    for (size_t j = 0; j < trials_of(r); j++) {
        const advisor_trial *t = &r->trials[j];
        ev->obs[ev->n_obs++] = (observation){statement_at, t, r->cost_before};
        if (t->outcome == ADVISOR_TRIAL_COVERED)
            ev->covered[ev->n_covered++] = &t->index;
    }
}

/* Flattens the results that learnt something (a sample without trials still tells whether
 * its plan was misestimated); false when memory runs out. */
static bool gather(evidence *ev, const advisor_result *const *results, size_t n,
                   const advisor_shape *shapes, size_t n_shapes)
{
    size_t trials = 1, count = n > 0 ? n : 1;

    for (size_t i = 0; i < n; i++)
        trials += trials_of(results[i]);
    ev->statements = calloc(count, sizeof(*ev->statements));
    ev->best = calloc(count, sizeof(*ev->best));
    ev->touched = calloc(count, sizeof(*ev->touched));
    ev->obs = calloc(trials, sizeof(*ev->obs));
    ev->covered = calloc(trials, sizeof(*ev->covered));
    ev->phase = calloc(trials, sizeof(*ev->phase));
    if (!ev->statements || !ev->best || !ev->touched || !ev->obs || !ev->covered || !ev->phase)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (results[i] != NULL && results[i]->ok)
            observe(ev, statement_of(ev, results[i], shapes, n_shapes), results[i]);
    }
    return true;
}

static void evidence_free(evidence *ev)
{
    free(ev->statements);
    free(ev->best);
    free(ev->touched);
    free(ev->obs);
    free(ev->covered);
    free(ev->phase);
}

static int by_table(const void *a, const void *b)
{
    const observation *x = *(const observation *const *)a, *y = *(const observation *const *)b;
    int c = strncmp(x->trial->index.table, y->trial->index.table, ADVISOR_NAME);

    return c != 0 ? c : (x > y) - (x < y); /* among equals, the order seen */
}

/* The trials with this outcome, grouped by table. */
static void select_phase(evidence *ev, advisor_trial_outcome outcome)
{
    ev->n_phase = 0;
    for (size_t i = 0; i < ev->n_obs; i++) {
        if (ev->obs[i].trial->outcome == outcome && column_count(&ev->obs[i].trial->index) > 0)
            ev->phase[ev->n_phase++] = &ev->obs[i];
    }
    qsort(ev->phase, ev->n_phase, sizeof(*ev->phase), by_table);
}

/* End of the table group that starts at g in phase. */
static size_t group_end(const evidence *ev, size_t g)
{
    size_t end = g + 1;

    while (end < ev->n_phase && strncmp(ev->phase[end]->trial->index.table,
                                        ev->phase[g]->trial->index.table, ADVISOR_NAME) == 0)
        end++;
    return end;
}

/* An existing index already serves it for some statement: suggesting it would be a
 * duplicate, whatever other statements say. */
static bool ever_covered(const evidence *ev, const advisor_index *ix)
{
    for (size_t i = 0; i < ev->n_covered; i++) {
        if (same_index(ev->covered[i], ix))
            return true;
    }
    return false;
}

static bool already_suggested(const advisor_suggestion *out, int n, const advisor_index *ix)
{
    for (int i = 0; i < n; i++) {
        if (same_index(&out[i].index, ix))
            return true;
    }
    return false;
}

static size_t find_candidate(const candidate *cands, size_t from, size_t n, const advisor_index *ix)
{
    size_t i;

    for (i = from; i < n; i++) {
        if (same_index(&cands[i].index, ix))
            break;
    }
    return i;
}

/* The distinct indexes of the phase's trials that may be suggested. */
static size_t gather_candidates(const evidence *ev, const advisor_suggestion *out, int n_out,
                                candidate *cands)
{
    size_t n = 0, end;

    for (size_t g = 0; g < ev->n_phase; g = end) {
        size_t group = n; /* the same index can only be in the same group */
        end = group_end(ev, g);
        for (size_t i = g; i < end; i++) {
            const advisor_trial *t = ev->phase[i]->trial;
            size_t j = find_candidate(cands, group, n, &t->index);
            if (j == n && (already_suggested(out, n_out, &t->index) || ever_covered(ev, &t->index)))
                continue;
            if (j == n)
                cands[n++] = (candidate){t->index, -1, g, end, {0, 0, 0, 0}, false};
            if (t->size_bytes > cands[j].size_bytes)
                cands[j].size_bytes = t->size_bytes;
        }
    }
    return n;
}

/* The share of its plan's cost a trial saved, in [0, 1]. */
static double reduction(const observation *o)
{
    double r;

    if (!(o->cost_before > 0) || !(o->trial->cost_after >= 0))
        return 0;
    r = 1 - o->trial->cost_after / o->cost_before;
    return r > 0 ? (r < 1 ? r : 1) : 0;
}

/* Per statement not served yet, the best trial c serves (ev->best, ev->touched). */
static void find_served(evidence *ev, const candidate *c)
{
    for (size_t i = 0; i < ev->n_touched; i++)
        ev->best[ev->touched[i]] = NULL;
    ev->n_touched = 0;
    for (size_t i = c->first; i < c->last; i++) {
        const observation *o = ev->phase[i];
        const observation **best = &ev->best[o->statement];
        if (served_on(&ev->statements[o->statement], c->index.table) ||
            !advisor_covered(&o->trial->index, &c->index))
            continue;
        if (*best == NULL)
            ev->touched[ev->n_touched++] = o->statement;
        if (*best == NULL || reduction(o) > reduction(*best))
            *best = o;
    }
}

/* What c brings: summed over the statements it serves (left in ev->best and ev->touched). */
static value evaluate(evidence *ev, const candidate *c, bool verified)
{
    value v = {0, 0, 0, 0};

    find_served(ev, c);
    for (size_t i = 0; i < ev->n_touched; i++) {
        const statement *st = &ev->statements[ev->touched[i]];
        const observation *o = ev->best[ev->touched[i]];
        v.n_helped++;
        v.benefit += verified ? st->weight * reduction(o) : st->weight;
        v.cost_before += o->cost_before;
        v.cost_after += o->trial->cost_after;
    }
    return v;
}

/* Of the candidates not chosen that still help something, the one whose last known value is
 * highest, fewer columns first on a tie; -1 when none. */
static int best_known(const candidate *cands, size_t n)
{
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        const candidate *c = &cands[i];
        if (c->chosen || c->known.n_helped == 0)
            continue;
        if (best < 0 || c->known.benefit > cands[best].known.benefit ||
            (c->known.benefit == cands[best].known.benefit &&
             column_count(&c->index) < column_count(&cands[best].index)))
            best = (int)i;
    }
    return best;
}

/* The candidate bringing most now, its statements left in ev->touched; -1 when none helps.
 * A value only drops as statements get served, so a known value bounds the value now: the
 * best known one, if its value has not dropped, is the best (lazy greedy). */
static int pick(evidence *ev, candidate *cands, size_t n, bool verified, value *v)
{
    int best;

    while ((best = best_known(cands, n)) >= 0) {
        *v = evaluate(ev, &cands[best], verified);
        if (v->n_helped > 0 && v->benefit == cands[best].known.benefit)
            return best;
        cands[best].known = *v;
    }
    return -1;
}

/* Lists the statements in ev->touched, heaviest first (the first seen first among equals),
 * and marks them served. */
static void list_statements(evidence *ev, advisor_suggestion *s)
{
    double weights[MAX_LISTED];

    for (size_t i = 0; i < ev->n_touched; i++) {
        statement *st = &ev->statements[ev->touched[i]];
        int at = s->n_statements;
        /* the name lives in a trial's index, as long as the evidence; past 8 tables, the last
         * one is overwritten (the statement may then be counted twice on the others) */
        st->served[st->n_served < 8 ? st->n_served++ : 7] =
            ev->best[ev->touched[i]]->trial->index.table;
        s->misestimate |= st->misestimate;
        while (at > 0 && weights[at - 1] < st->weight)
            at--;
        if (at == MAX_LISTED)
            continue;
        int last = s->n_statements < MAX_LISTED ? s->n_statements : MAX_LISTED - 1;
        memmove(&s->statements[at + 1], &s->statements[at], (size_t)(last - at) * sizeof(uint64_t));
        memmove(&weights[at + 1], &weights[at], (size_t)(last - at) * sizeof(double));
        s->statements[at] = st->fingerprint;
        weights[at] = st->weight;
        if (s->n_statements < MAX_LISTED)
            s->n_statements++;
    }
}

/* The column of a predicate "name = ..." or "\"Name\" = ...", "" when it cannot be read. */
static void predicate_column(const char *predicate, char out[ADVISOR_NAME])
{
    size_t n = 0;
    const char *p = predicate;

    out[0] = '\0';
    if (*p != '"') {
        n = strcspn(p, " =");
        if (n < ADVISOR_NAME && n < ADVISOR_PREDICATE) {
            memcpy(out, p, n);
            out[n] = '\0';
        }
        return;
    }
    for (p++; *p != '\0' && n + 1 < ADVISOR_NAME; p++) {
        if (*p == '"' && p[1] != '"')
            break;
        if (*p == '"')
            p++;
        out[n++] = *p;
    }
    out[*p == '"' ? n : 0] = '\0';
}

static bool is_index_column(const advisor_index *ix, const char *predicate_col, const char *name)
{
    for (int i = 0; i < column_count(ix); i++) {
        if (strncmp(ix->columns[i], name, ADVISOR_NAME) == 0)
            return true;
    }
    return predicate_col[0] != '\0' && strncmp(predicate_col, name, ADVISOR_NAME) == 0;
}

/* What one more index costs the writes to its table. */
static void count_writes(const advisor_table_writes *w, size_t n, advisor_suggestion *s)
{
    char predicate_col[ADVISOR_NAME];

    predicate_column(s->index.predicate, predicate_col);
    for (size_t i = 0; w != NULL && i < n; i++) {
        if (strncmp(w[i].table, s->index.table, ADVISOR_NAME) != 0)
            continue;
        s->write_statements += w[i].inserts + w[i].updates + w[i].deletes;
        for (int j = 0; j < w[i].n_updated && j < 16; j++)
            s->breaks_hot |= is_index_column(&s->index, predicate_col, w[i].updated[j]);
    }
}

/* Fills a suggestion for c, whose statements are in ev->touched (from evaluate). */
static void suggest(evidence *ev, const candidate *c, const value *v, bool verified,
                    const advisor_table_writes *w, size_t n_writes, advisor_suggestion *s)
{
    memset(s, 0, sizeof(*s));
    s->index = c->index;
    advisor_ddl(&c->index, true, s->ddl, sizeof(s->ddl));
    s->verified = verified;
    s->cost_before = verified ? v->cost_before : -1;
    s->cost_after = verified ? v->cost_after : -1;
    s->benefit_ms = verified ? v->benefit : -1;
    s->size_bytes = verified ? c->size_bytes : -1;
    list_statements(ev, s);
    count_writes(w, n_writes, s);
}

/* Greedy, over the trials with one outcome: the candidate bringing most, then the one bringing
 * most to the statements left, and so on. */
static int choose(evidence *ev, candidate *cands, advisor_trial_outcome outcome,
                  const advisor_table_writes *w, size_t n_writes, advisor_suggestion *out, int n,
                  int max)
{
    bool verified = outcome == ADVISOR_TRIAL_USED;
    value v;
    size_t k;
    int i;

    select_phase(ev, outcome);
    k = gather_candidates(ev, out, n, cands);
    for (size_t j = 0; j < k; j++)
        cands[j].known = evaluate(ev, &cands[j], verified);
    while (n < max && (i = pick(ev, cands, k, verified, &v)) >= 0) {
        cands[i].chosen = true;
        suggest(ev, &cands[i], &v, verified, w, n_writes, &out[n++]);
    }
    return n;
}

int advisor_consolidate(const advisor_result *const *results, size_t n_results,
                        const advisor_shape *shapes, size_t n_shapes,
                        const advisor_table_writes *writes, size_t n_writes,
                        advisor_suggestion *out, int max)
{
    evidence ev;
    candidate *cands;
    int n = 0;

    if (out == NULL || max <= 0 || results == NULL)
        return 0;
    memset(&ev, 0, sizeof(ev));
    cands = NULL;
    if (gather(&ev, results, n_results, shapes, n_shapes) &&
        (cands = calloc(ev.n_obs > 0 ? ev.n_obs : 1, sizeof(*cands))) != NULL) {
        /* verified first; the statements they serve are not counted again for the rest */
        n = choose(&ev, cands, ADVISOR_TRIAL_USED, writes, n_writes, out, 0, max);
        n = choose(&ev, cands, ADVISOR_TRIAL_UNVERIFIED, writes, n_writes, out, n, max);
    }
    free(cands);
    evidence_free(&ev);
    return n;
}
