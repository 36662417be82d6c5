/* calls.c — may a plan run under EXPLAIN ANALYZE? The names a plain EXPLAIN (VERBOSE) plan calls,
 * the catalog query that finds every function behind them, and the verdict on each function. */
#include "config.h"

#include "explain_int.h"
#include "pgscope/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/*
 * Why the plan, not the statement's text: a statement reaches functions its text never names,
 * through a view (the planner expands it), an operator, a row-level security policy or a
 * column default. A plain EXPLAIN (VERBOSE) plans without executing and prints every expression
 * the execution would evaluate: functions by name, schema-qualified when the search_path would
 * not find them; operators by symbol, OPERATOR(schema.op) likewise; casts as ::type. Those names
 * are read here, and one catalog query (explain_calls_sql) in the same transaction and
 * search_path turns them into functions: a name stands for all its overloads, an operator for
 * every operator of that symbol over operand types the plan can hold. Then from what the plan
 * names, what it does not print: the support functions of aggregates; for types that are not
 * built in, their casts, operator classes, input and output, domain constraints; the operator
 * classes of the indexes it scans; the handlers of foreign tables and table access methods; and
 * for tables it writes (and their partitions, and the tables whose foreign keys cascade from
 * them), triggers, constraints, defaults, policies, index expressions, partition keys and rules,
 * read from their stored expression trees, built-in functions included.
 *
 * The verdict (explain_call_allowed) lets a function run only when it is known to act on
 * nothing: a built-in that is IMMUTABLE or STABLE and not on the guard's deny list, one of a few
 * VOLATILE built-ins that only read (random, clock_timestamp...), or a user function the user
 * vouched for in explain_allow_functions. Anything not understood fails closed: a plan that does
 * not parse, names too many things, or joins foreign tables remotely is not run.
 */

#define CALLS_MAX_NAMES 2048 /* per kind: a plan naming more is not cleared for ANALYZE */
#define CALLS_MAX_DEPTH 4096 /* JSON levels walked (jansson refuses more than 2048 anyway) */
#define NAME_MAX_BYTES 256   /* a longer identifier is no catalog name (PostgreSQL keeps 63) */

typedef struct name_set {
    char **schemas, **names; /* schema "" when the plan did not qualify the name */
    size_t n, cap;
} name_set;

struct explain_calls {
    name_set sets[EXPLAIN_CALL_KINDS];
    bool failed;        /* out of memory, too many names or too deep: not cleared */
    const char *unseen; /* what the plan runs without printing it: not cleared */
};

/* ---- the names ---- */

static bool set_has(const name_set *s, const char *schema, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0 && strcmp(s->schemas[i], schema) == 0)
            return true;
    return false;
}

static bool set_grow(name_set *s)
{
    size_t cap = s->cap ? s->cap * 2 : 16;
    char **schemas = realloc(s->schemas, cap * sizeof *schemas);

    if (schemas == NULL)
        return false;
    s->schemas = schemas;
    char **names = realloc(s->names, cap * sizeof *names);
    if (names == NULL)
        return false;
    s->names = names;
    s->cap = cap;
    return true;
}

static void add_name(explain_calls *c, explain_call_kind kind, const char *schema, const char *name)
{
    name_set *s = &c->sets[kind];

    if (c->failed || name == NULL || *name == '\0' || set_has(s, schema, name))
        return;
    if (strlen(schema) >= NAME_MAX_BYTES || strlen(name) >= NAME_MAX_BYTES)
        return; /* no catalog holds such a name */
    if (s->n >= CALLS_MAX_NAMES || (s->n == s->cap && !set_grow(s))) {
        c->failed = true;
        return;
    }
    char *sc = strdup(schema), *nm = strdup(name);
    if (sc == NULL || nm == NULL) {
        free(sc);
        free(nm);
        c->failed = true;
        return;
    }
    s->schemas[s->n] = sc;
    s->names[s->n++] = nm;
}

void explain_calls_add(explain_calls *c, explain_call_kind kind, const char *schema,
                       const char *name)
{
    if (c != NULL && (unsigned)kind < EXPLAIN_CALL_KINDS)
        add_name(c, kind, schema != NULL ? schema : "", name);
}

void explain_calls_fail(explain_calls *c)
{
    if (c != NULL)
        c->failed = true;
}

bool explain_calls_failed(const explain_calls *c)
{
    return c == NULL || c->failed;
}

void explain_calls_free(explain_calls *c)
{
    if (c == NULL)
        return;
    for (int k = 0; k < EXPLAIN_CALL_KINDS; k++) {
        for (size_t i = 0; i < c->sets[k].n; i++) {
            free(c->sets[k].schemas[i]);
            free(c->sets[k].names[i]);
        }
        free(c->sets[k].schemas);
        free(c->sets[k].names);
    }
    free(c);
}

bool explain_calls_has(const explain_calls *c, explain_call_kind kind, const char *schema,
                       const char *name)
{
    if (c == NULL || (unsigned)kind >= EXPLAIN_CALL_KINDS)
        return false;
    return set_has(&c->sets[kind], schema != NULL ? schema : "", name);
}

size_t explain_calls_count(const explain_calls *c, explain_call_kind kind)
{
    if (c == NULL || (unsigned)kind >= EXPLAIN_CALL_KINDS)
        return 0;
    return c->sets[kind].n;
}

/* ---- reading an expression as PostgreSQL's deparser (ruleutils.c) prints it ---- */

static bool ident_start(char ch)
{
    unsigned char u = (unsigned char)ch;
    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u >= 0x80;
}

static bool ident_char(char ch)
{
    return ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '$';
}

static bool op_char(char ch)
{
    return ch != '\0' && strchr("+-*/<>=~!@#%^&|`?", ch) != NULL;
}

/* Past a string literal whose quote is at p: '' stands for one quote, and in E'' strings a
 * backslash escapes the next byte. An unterminated one runs to the end. */
static const char *skip_string(const char *p, bool backslash)
{
    for (p++; *p != '\0'; p++) {
        if (backslash && *p == '\\' && p[1] != '\0') {
            p++;
        } else if (*p == '\'') {
            if (p[1] != '\'')
                return p + 1;
            p++;
        }
    }
    return p;
}

/* One identifier at p into out: a quoted one as written ("" for "), a bare one folded to lower
 * case as the parser folds it. Too long for a catalog name: out is "". */
static const char *read_part(const char *p, char *out, bool *quoted)
{
    size_t n = 0;
    bool too_long = false;

    *quoted = *p == '"';
    if (*quoted) {
        for (p++; *p != '\0' && !(*p == '"' && p[1] != '"'); p++) {
            if (*p == '"')
                p++; /* a doubled quote */
            if (n + 1 < NAME_MAX_BYTES)
                out[n++] = *p;
            else
                too_long = true;
        }
        if (*p == '"')
            p++;
    } else {
        for (; ident_char(*p); p++) {
            if (n + 1 < NAME_MAX_BYTES)
                out[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
            else
                too_long = true;
        }
    }
    out[too_long ? 0 : n] = '\0';
    return p;
}

/* A dotted name: its last part and the one before (the schema of a function or type). */
typedef struct qname {
    char schema[NAME_MAX_BYTES], name[NAME_MAX_BYTES];
    int parts;
    bool quoted; /* its last part was quoted: never a keyword */
} qname;

static const char *read_qname(const char *p, qname *q)
{
    char part[NAME_MAX_BYTES];
    bool quoted;

    q->schema[0] = q->name[0] = '\0';
    q->parts = 0;
    for (;;) {
        p = read_part(p, part, &quoted);
        memcpy(q->schema, q->name, sizeof q->schema);
        memcpy(q->name, part, sizeof q->name);
        q->quoted = quoted;
        q->parts++;
        if (!(p[0] == '.' && (p[1] == '"' || ident_start(p[1]))))
            return p;
        p++;
    }
}

static bool is_word(const qname *q, const char *word)
{
    return q->parts == 1 && !q->quoted && strcmp(q->name, word) == 0;
}

/* OPERATOR(schema.op), after its parenthesis: the deparser's form for an operator the
 * search_path would not find. */
static const char *read_operator_clause(explain_calls *c, const char *p)
{
    char schema[NAME_MAX_BYTES] = "", op[NAME_MAX_BYTES];
    bool quoted;
    size_t n = 0;

    if (*p == '"' || ident_start(*p)) {
        p = read_part(p, schema, &quoted);
        if (*p == '.')
            p++;
    }
    for (; op_char(*p); p++)
        if (n + 1 < sizeof op)
            op[n++] = *p;
    op[n] = '\0';
    add_name(c, EXPLAIN_CALL_OPERATOR, schema, op);
    return *p == ')' ? p + 1 : p;
}

/* Scanning state between tokens. */
typedef struct scan {
    explain_calls *c;
    const char *start; /* the expression */
    bool cast;         /* the last token was :: */
    char word[16];     /* the last token if a bare word, for IS [NOT] DISTINCT FROM */
} scan;

static const char *scan_name(scan *s, const char *p)
{
    qname q;

    p = read_qname(p, &q);
    if (q.parts == 1 && !q.quoted && *p == '\'') /* E'...', B'...', X'...' */
        return skip_string(p, strcmp(q.name, "e") == 0);
    if (s->cast) {
        add_name(s->c, EXPLAIN_CALL_TYPE, q.schema, q.name);
        s->cast = false;
    } else if (*p == '(' && is_word(&q, "operator")) {
        return read_operator_clause(s->c, p + 1);
    } else if (*p == '(') {
        add_name(s->c, EXPLAIN_CALL_FUNCTION, q.schema, q.name);
        if (is_word(&q, "nullif")) /* compares with the type's = */
            add_name(s->c, EXPLAIN_CALL_OPERATOR, "", "=");
    } else if (is_word(&q, "distinct") &&
               (strcmp(s->word, "is") == 0 || strcmp(s->word, "not") == 0)) {
        add_name(s->c, EXPLAIN_CALL_OPERATOR, "", "="); /* IS [NOT] DISTINCT FROM: = too */
    }
    if (q.parts == 1 && !q.quoted && strlen(q.name) < sizeof s->word)
        memcpy(s->word, q.name, strlen(q.name) + 1);
    else
        s->word[0] = '\0';
    return p;
}

/* An operator symbol; the * of count(*) and t.* and the (?) the deparser prints for a window
 * are none. */
static const char *scan_operator(scan *s, const char *p)
{
    char op[NAME_MAX_BYTES];
    size_t n = 0;
    char before = p > s->start ? p[-1] : '\0';

    for (; op_char(*p); p++)
        if (n + 1 < sizeof op)
            op[n++] = *p;
    op[n] = '\0';
    bool placeholder = (strcmp(op, "*") == 0 && (before == '(' || before == '.')) ||
                       (strcmp(op, "?") == 0 && before == '(' && *p == ')');
    if (!placeholder)
        add_name(s->c, EXPLAIN_CALL_OPERATOR, "", op);
    return p;
}

static const char *scan_token(scan *s, const char *p)
{
    if (*p == '"' || ident_start(*p))
        return scan_name(s, p);
    s->word[0] = '\0';
    if (*p == '\'') {
        s->cast = false;
        return skip_string(p, false);
    }
    if (p[0] == ':' && p[1] == ':') {
        s->cast = true;
        return p + 2;
    }
    s->cast = false;
    if (*p == '$' || (*p >= '0' && *p <= '9')) { /* $1, 42, 1.5e3 */
        for (p++; ident_char(*p) || *p == '.'; p++) {
        }
        return p;
    }
    if (op_char(*p))
        return scan_operator(s, p);
    return p + 1;
}

static void scan_expression(explain_calls *c, const char *text)
{
    scan s = {.c = c, .start = text, .cast = false, .word = ""};

    for (const char *p = text; *p != '\0' && !c->failed;) {
        if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            p++;
            continue;
        }
        p = scan_token(&s, p);
    }
}

/* ---- walking the plan ---- */

/* Members whose strings are names or labels, not expressions; "Settings" holds GUC values. */
static const char *const not_expressions[] = {
    "Node Type",
    "Relation Name",
    "Schema",
    "Alias",
    "Index Name",
    "Function Name",
    "CTE Name",
    "Subplan Name",
    "Parent Relationship",
    "Strategy",
    "Partial Mode",
    "Join Type",
    "Scan Direction",
    "Operation",
    "Sampling Method",
    "Conflict Resolution",
    "Conflict Arbiter Indexes",
    "Settings",
    "Relations",
    NULL,
};

static bool is_expression_member(const char *key)
{
    for (const char *const *k = not_expressions; *k != NULL; k++)
        if (strcmp(key, *k) == 0)
            return false;
    return true;
}

static const char *member(json_t *node, const char *key)
{
    return json_string_value(json_object_get(node, key));
}

/* What a node names besides its expressions: the table it scans or writes, the function or
 * index it scans with, its table sampling method. */
static void read_node(explain_calls *c, json_t *node, bool target)
{
    const char *type = member(node, "Node Type"), *rel = member(node, "Relation Name");
    const char *schema = member(node, "Schema");

    if (schema == NULL)
        schema = "";
    if (rel != NULL) {
        add_name(c, EXPLAIN_CALL_RELATION, schema, rel);
        if (target || (type != NULL && strcmp(type, "ModifyTable") == 0))
            add_name(c, EXPLAIN_CALL_TARGET, schema, rel);
    }
    add_name(c, EXPLAIN_CALL_FUNCTION, schema, member(node, "Function Name"));
    add_name(c, EXPLAIN_CALL_INDEX, schema, member(node, "Index Name"));
    add_name(c, EXPLAIN_CALL_FUNCTION, "", member(node, "Sampling Method"));
    /* Expressions EXPLAIN does not print, and no catalog holds */
    const char *operation = member(node, "Operation"),
               *conflict = member(node, "Conflict Resolution");
    if (type != NULL && strcmp(type, "Foreign Scan") == 0 && rel == NULL)
        c->unseen = "the plan joins foreign tables on another server";
    else if (operation != NULL && strcmp(operation, "Merge") == 0)
        c->unseen = "the plan does not show what the actions of a MERGE evaluate";
    else if (conflict != NULL && strcmp(conflict, "UPDATE") == 0)
        c->unseen = "the plan does not show what ON CONFLICT DO UPDATE sets";
}

/* target: inside a ModifyTable's "Target Tables" (the partitions it writes). */
static void walk(explain_calls *c, json_t *v, bool target, int depth)
{
    if (c->failed)
        return;
    if (depth > CALLS_MAX_DEPTH) {
        c->failed = true;
        return;
    }
    if (json_is_string(v)) {
        scan_expression(c, json_string_value(v));
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            walk(c, json_array_get(v, i), target, depth + 1);
    } else if (json_is_object(v)) {
        read_node(c, v, target);
        const char *key;
        json_t *value;
        json_object_foreach(v, key, value)
        {
            if (strcmp(key, "Settings") == 0 || strcmp(key, "Conflict Arbiter Indexes") == 0 ||
                (json_is_string(value) && !is_expression_member(key)))
                continue;
            walk(c, value, strcmp(key, "Target Tables") == 0, depth + 1);
        }
    }
}

/* An EXPLAIN (FORMAT JSON) result: an array of objects, each with a "Plan". */
static bool is_plan(json_t *root)
{
    if (!json_is_array(root) || json_array_size(root) == 0)
        return false;
    for (size_t i = 0; i < json_array_size(root); i++)
        if (!json_is_object(json_object_get(json_array_get(root, i), "Plan")))
            return false;
    return true;
}

explain_calls *explain_calls_read(const char *plan_json, char *why, size_t n)
{
    json_error_t error;
    json_t *root = plan_json != NULL ? json_loads(plan_json, 0, &error) : NULL;
    explain_calls *c = NULL;

    if (!is_plan(root)) {
        snprintf(why, n, "the plan could not be read, so what it calls is not known");
    } else if ((c = calloc(1, sizeof *c)) == NULL) {
        snprintf(why, n, "out of memory reading the plan");
    } else {
        for (size_t i = 0; i < json_array_size(root); i++)
            walk(c, json_object_get(json_array_get(root, i), "Plan"), false, 1);
        if (c->failed)
            snprintf(why, n,
                     "the plan names too much to be checked (over %d names of a kind, "
                     "or nested too deeply)",
                     CALLS_MAX_NAMES);
        else if (c->unseen != NULL)
            snprintf(why, n, "%s", c->unseen);
        if (c->failed || c->unseen != NULL) {
            explain_calls_free(c);
            c = NULL;
        }
    }
    json_decref(root);
    return c;
}

/* ---- the catalog query ---- */

/* {"a","b"}: every element quoted, so that no name can be read as NULL or split. */
static char *array_literal(char *const *items, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(items[i]) + 3;
    char *out = malloc(len), *o = out;
    if (out == NULL)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *o++ = ',';
        *o++ = '"';
        for (const char *p = items[i]; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\')
                *o++ = '\\';
            *o++ = *p;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

bool explain_calls_params(const explain_calls *c, char *values[EXPLAIN_CALLS_PARAMS])
{
    bool ok = c != NULL;

    for (int k = 0; k < EXPLAIN_CALL_KINDS; k++) {
        values[2 * k] = ok ? array_literal(c->sets[k].schemas, c->sets[k].n) : NULL;
        values[2 * k + 1] = ok ? array_literal(c->sets[k].names, c->sets[k].n) : NULL;
        ok = ok && values[2 * k] != NULL && values[2 * k + 1] != NULL;
    }
    if (!ok)
        for (int i = 0; i < EXPLAIN_CALLS_PARAMS; i++) {
            free(values[i]);
            values[i] = NULL;
        }
    return ok;
}

/*
 * The query runs under the client's search_path (names resolve as in the plan), so that path
 * must not choose anything the query itself calls: every function, operator and type in it is
 * written pg_catalog.x, or a user's schema listed before pg_catalog could slip its own = in.
 * $1..$12: schemas and names (text[]) of functions, operators, types, relations, indexes and
 * written tables, in explain_call_kind order; a schema "" means "as the search_path finds it".
 * One row per function: schema, name, prosrc (LANGUAGE internal only), volatility, kind,
 * number of arguments, built in, LANGUAGE internal, returns trigger, how the plan reaches it.
 *
 * Rows of catalogs holding expression trees are looked up by index one by one (LATERAL ...
 * OFFSET 0 keeps the planner from making a join of it), so that only those of the plan's
 * tables are read and turned into text.
 */
#define EQ " OPERATOR(pg_catalog.=) "
#define NE " OPERATOR(pg_catalog.<>) "
#define GE " OPERATOR(pg_catalog.>=) "
#define LT " OPERATOR(pg_catalog.<) "
#define GT " OPERATOR(pg_catalog.>) "
#define IN_ " OPERATOR(pg_catalog.=) ANY "
#define TEXTS "::pg_catalog.text[]"
#define OID "::pg_catalog.oid"
#define CAT "pg_catalog."
#define USER_OID "16384" /* FirstNormalObjectId: below are the objects of initdb */

/* clang-format off */
#define INPUT(cte, a, b)                                                                           \
    cte "(sch, name) AS (SELECT * FROM ROWS FROM (" CAT "unnest(" a TEXTS "), "                    \
    CAT "unnest(" b TEXTS "))),\n"
/* the namespace n of a name i: the one written, or one the search_path holds */
#define RESOLVE                                                                                    \
    " (n.nspname" EQ "i.sch OR (i.sch" EQ "'' AND n.oid" IN_ "(SELECT oid FROM visible)))"
/* rows (via, tree) of a catalog table whose key is the OID of a row of set */
#define TREE(via, col, tree, table, key, set)                                                      \
    " SELECT x.via, x.tree FROM " set " s, LATERAL (SELECT " CAT "concat('" via "', " col        \
    ") AS via, " tree " AS tree FROM " table " WHERE " key EQ "s.oid OFFSET 0) x"
/* the rule of the view of OID oid, as text */
#define VIEW_TREE(oid)                                                                             \
    "SELECT c.oid, w.ev_action::" CAT "text AS tree FROM " CAT "pg_class c JOIN "                  \
    CAT "pg_rewrite w ON w.ev_class" EQ "c.oid WHERE c.oid" EQ oid " AND c.relkind" EQ           \
    "'v' OFFSET 0"

const char explain_calls_sql[] =
    "WITH RECURSIVE\n"
    INPUT("fn_in", "$1", "$2") INPUT("op_in", "$3", "$4") INPUT("ty_in", "$5", "$6")
    INPUT("rel_in", "$7", "$8") INPUT("ix_in", "$9", "$10") INPUT("tgt_in", "$11", "$12")
    "visible(oid) AS ("
        "SELECT n.oid FROM " CAT "pg_namespace n"
        " WHERE n.nspname" IN_ "(" CAT "current_schemas(true))),\n"
    "named_fn(oid) AS ("
        "SELECT p.oid FROM fn_in i"
        " JOIN " CAT "pg_proc p ON p.proname" EQ "i.name"
        " JOIN " CAT "pg_namespace n ON n.oid" EQ "p.pronamespace WHERE" RESOLVE "),\n"
    "rels(oid) AS ("
        "SELECT c.oid FROM rel_in i"
        " JOIN " CAT "pg_class c ON c.relname" EQ "i.name"
        " JOIN " CAT "pg_namespace n ON n.oid" EQ "c.relnamespace WHERE" RESOLVE "),\n"
    /* written tables, their partitions, and the tables their foreign keys act on */
    "targets(oid) AS ("
        "SELECT c.oid FROM tgt_in i"
        " JOIN " CAT "pg_class c ON c.relname" EQ "i.name"
        " JOIN " CAT "pg_namespace n ON n.oid" EQ "c.relnamespace WHERE" RESOLVE
        " UNION SELECT e.child FROM targets t, LATERAL ("
            "SELECT h.inhrelid FROM " CAT "pg_inherits h WHERE h.inhparent" EQ "t.oid"
            " UNION ALL SELECT k.conrelid FROM " CAT "pg_constraint k"
            " WHERE k.confrelid" EQ "t.oid AND k.contype" EQ "'f') e(child)),\n"
    "tables(oid) AS (SELECT oid FROM rels UNION SELECT oid FROM targets),\n"
    /* the views named, and the views those read: what they evaluate is in their stored trees,
     * exactly (a plan shows a view expanded, but not its VALUES rows, LIMIT, frame offsets) */
    "view_trees(oid, tree) AS ("
        "SELECT v.oid, v.tree FROM rels s, LATERAL (" VIEW_TREE("s.oid") ") v"
        " UNION SELECT v.oid, v.tree FROM view_trees t,"
        " LATERAL " CAT "regexp_matches(t.tree, ':relid ([0-9]+)', 'g') m,"
        " LATERAL (" VIEW_TREE("m[1]" OID) ") v),\n"
    /* the types the plan can hold: columns, casts, what the named functions take and give */
    "types0(t) AS ("
        "SELECT a.t FROM tables s, LATERAL (SELECT a.atttypid AS t FROM " CAT "pg_attribute a"
        " WHERE a.attrelid" EQ "s.oid AND a.attnum" GT "0 AND NOT a.attisdropped OFFSET 0) a"
        " UNION SELECT " CAT "to_regtype(CASE WHEN i.sch" EQ "'' THEN " CAT "quote_ident(i.name)"
        " ELSE " CAT "concat(" CAT "quote_ident(i.sch), '.', " CAT "quote_ident(i.name)) END)"
        OID " FROM ty_in i"
        " UNION SELECT p.prorettype FROM " CAT "pg_proc p"
        " WHERE p.oid" IN_ "(SELECT oid FROM named_fn)"
        " UNION SELECT " CAT "unnest(p.proargtypes::" CAT "oid[]) FROM " CAT "pg_proc p"
        " WHERE p.oid" IN_ "(SELECT oid FROM named_fn)"
        " UNION SELECT m[1]" OID " FROM view_trees t, LATERAL " CAT "regexp_matches(t.tree,"
        " ':(?:resulttype|consttype|funcresulttype) ([0-9]+)', 'g') m),\n"
    /* and what those are made of: domains' base types, elements, fields, range subtypes */
    "inplay(t) AS ("
        "SELECT t FROM types0 WHERE t IS NOT NULL"
        " UNION SELECT e.c FROM inplay, LATERAL ("
            "SELECT y.typbasetype FROM " CAT "pg_type y"
            " WHERE y.oid" EQ "inplay.t AND y.typbasetype" NE "0"
            " UNION ALL SELECT y.typelem FROM " CAT "pg_type y"
            " WHERE y.oid" EQ "inplay.t AND y.typelem" NE "0"
            " UNION ALL SELECT a.atttypid FROM " CAT "pg_type y"
            " JOIN " CAT "pg_attribute a ON a.attrelid" EQ "y.typrelid"
            " WHERE y.oid" EQ "inplay.t AND a.attnum" GT "0 AND NOT a.attisdropped"
            " UNION ALL SELECT r.rngsubtype FROM " CAT "pg_range r WHERE r.rngtypid" EQ "inplay.t"
            " UNION ALL SELECT r.rngtypid FROM " CAT "pg_range r"
            " WHERE r.rngmultitypid" EQ "inplay.t) e(c)),\n"
    "usertypes(t) AS (SELECT t FROM inplay WHERE t" GE USER_OID "),\n"
    /* expressions stored in the catalogs that run without showing in the plan */
    "trees(via, tree) AS ("
        "SELECT " CAT "concat('the view ', t.oid::" CAT "regclass), t.tree FROM view_trees t"
        " UNION ALL" TREE("in a constraint of type ", "k.contypid::" CAT "regtype",
                          "k.conbin::" CAT "text", CAT "pg_constraint k", "k.contypid",
                          "(SELECT t AS oid FROM usertypes)")
        " UNION ALL" TREE("in a constraint of table ", "k.conrelid::" CAT "regclass",
                          "k.conbin::" CAT "text", CAT "pg_constraint k", "k.conrelid", "targets")
        " UNION ALL" TREE("in a default of table ", "d.adrelid::" CAT "regclass",
                          "d.adbin::" CAT "text", CAT "pg_attrdef d", "d.adrelid", "targets")
        " UNION ALL" TREE("in a policy of table ", "p.polrelid::" CAT "regclass",
                          CAT "concat(p.polqual::" CAT "text, p.polwithcheck::" CAT "text)",
                          CAT "pg_policy p", "p.polrelid", "tables")
        " UNION ALL" TREE("in a trigger condition of table ", "g.tgrelid::" CAT "regclass",
                          "g.tgqual::" CAT "text", CAT "pg_trigger g",
                          "g.tgenabled" NE "'D' AND g.tgrelid", "targets")
        " UNION ALL" TREE("in an index of table ", "x.indrelid::" CAT "regclass",
                          CAT "concat(x.indexprs::" CAT "text, x.indpred::" CAT "text)",
                          CAT "pg_index x", "x.indrelid", "targets")
        " UNION ALL" TREE("in the partition key of table ", "k.partrelid::" CAT "regclass",
                          "k.partexprs::" CAT "text", CAT "pg_partitioned_table k", "k.partrelid",
                          "targets")
        " UNION ALL" TREE("in a rule of table ", "w.ev_class::" CAT "regclass",
                          CAT "concat(w.ev_qual::" CAT "text, w.ev_action::" CAT "text)",
                          CAT "pg_rewrite w", "w.ev_class", "targets") "),\n"
    /* the functions (f) and operators (o) a stored tree refers to, by OID */
    "tree_refs(via, kind, ref) AS ("
        "SELECT t.via, 'f', m[1]" OID " FROM trees t, LATERAL " CAT "regexp_matches(t.tree,"
        " ':(?:funcid|opfuncid|aggfnoid|winfnoid|hashfuncid|negfuncid|tsmhandler"
        "|startInRangeFunc|endInRangeFunc) ([0-9]+)', 'g') m"
        " UNION ALL SELECT t.via, 'o', m[1]" OID " FROM trees t, LATERAL "
        CAT "regexp_matches(t.tree, ':(?:opno|eqop|sortop) ([0-9]+)', 'g') m"
        " UNION ALL SELECT t.via, 'o', o" OID " FROM trees t,"
        " LATERAL " CAT "regexp_matches(t.tree, ':opnos [(]o ([0-9 ]+)[)]', 'g') m,"
        " LATERAL " CAT "unnest(" CAT "string_to_array(m[1], ' ')) o),\n"
    /* operators of the symbols named, over types the plan can hold, and of the trees */
    "ops(fn, via) AS ("
        "SELECT o.oprcode" OID ", " CAT "concat('the function of operator ', i.name)"
        " FROM op_in i JOIN " CAT "pg_operator o ON o.oprname" EQ "i.name"
        " JOIN " CAT "pg_namespace n ON n.oid" EQ "o.oprnamespace WHERE" RESOLVE
        " AND (o.oprleft" LT USER_OID " OR o.oprleft" IN_ "(SELECT t FROM inplay))"
        " AND (o.oprright" LT USER_OID " OR o.oprright" IN_ "(SELECT t FROM inplay))"
        " UNION ALL SELECT o.oprcode" OID ", r.via FROM tree_refs r"
        " JOIN " CAT "pg_operator o ON o.oid" EQ "r.ref WHERE r.kind" EQ "'o'),\n"
    "calls(fn, via) AS ("
        "SELECT oid, 'called by name' FROM named_fn"
        " UNION ALL SELECT s.f, " CAT "concat('a support function of aggregate ', a.aggfnoid)"
        " FROM " CAT "pg_aggregate a, LATERAL (VALUES (a.aggtransfn" OID "), (a.aggfinalfn" OID
        "), (a.aggcombinefn" OID "), (a.aggserialfn" OID "), (a.aggdeserialfn" OID
        "), (a.aggmtransfn" OID "), (a.aggminvtransfn" OID "), (a.aggmfinalfn" OID ")) s(f)"
        " WHERE a.aggfnoid" OID IN_ "(SELECT oid FROM named_fn)"
        " UNION ALL SELECT fn, via FROM ops"
        " UNION ALL SELECT r.ref, r.via FROM tree_refs r WHERE r.kind" EQ "'f'"
        " UNION ALL SELECT g.tgfoid, " CAT "concat('a trigger of table ', g.tgrelid::"
        CAT "regclass) FROM " CAT "pg_trigger g"
        " WHERE g.tgrelid" IN_ "(SELECT oid FROM targets) AND g.tgenabled" NE "'D'"
        " UNION ALL SELECT c.castfunc, " CAT "concat('a cast of type ', u.t::" CAT "regtype)"
        " FROM usertypes u JOIN " CAT "pg_cast c ON c.castsource" EQ "u.t"
        " UNION ALL SELECT c.castfunc, " CAT "concat('a cast to type ', u.t::" CAT "regtype)"
        " FROM usertypes u JOIN " CAT "pg_cast c ON c.casttarget" EQ "u.t"
        " UNION ALL SELECT ap.amproc" OID ", " CAT "concat('an operator class function of type ',"
        " u.t::" CAT "regtype) FROM usertypes u"
        " JOIN " CAT "pg_amproc ap ON ap.amproclefttype" EQ "u.t"
        " UNION ALL SELECT ap.amproc" OID ", " CAT "concat('an operator class function of type ',"
        " u.t::" CAT "regtype) FROM usertypes u"
        " JOIN " CAT "pg_amproc ap ON ap.amprocrighttype" EQ "u.t"
        " UNION ALL SELECT s.f, " CAT "concat('an input or output function of type ', y.oid::"
        CAT "regtype) FROM " CAT "pg_type y, LATERAL (VALUES (y.typinput" OID
        "), (y.typoutput" OID "), (y.typreceive" OID "), (y.typsend" OID "), (y.typmodin" OID
        "), (y.typmodout" OID "), (y.typsubscript" OID ")) s(f)"
        " WHERE y.oid" IN_ "(SELECT t FROM usertypes)"
        " UNION ALL SELECT s.f, " CAT "concat('a function of range type ', r.rngtypid::"
        CAT "regtype) FROM " CAT "pg_range r, LATERAL (VALUES (r.rngcanonical" OID
        "), (r.rngsubdiff" OID ")) s(f) WHERE r.rngtypid" IN_ "(SELECT t FROM usertypes)"
        " UNION ALL SELECT ap.amproc" OID ", " CAT "concat('an operator class function of index ',"
        " c.oid::" CAT "regclass) FROM ix_in i JOIN " CAT "pg_class c ON c.relname" EQ "i.name"
        " JOIN " CAT "pg_namespace n ON n.oid" EQ "c.relnamespace AND n.nspname" EQ "i.sch"
        " JOIN " CAT "pg_index x ON x.indexrelid" EQ "c.oid"
        " JOIN " CAT "pg_opclass oc ON oc.oid" IN_ "(x.indclass::" CAT "oid[])"
        " JOIN " CAT "pg_amproc ap ON ap.amprocfamily" EQ "oc.opcfamily"
        " UNION ALL SELECT m.amhandler" OID ", " CAT "concat('the access method of index ', c.oid::"
        CAT "regclass) FROM ix_in i JOIN " CAT "pg_class c ON c.relname" EQ "i.name"
        " JOIN " CAT "pg_namespace n ON n.oid" EQ "c.relnamespace AND n.nspname" EQ "i.sch"
        " JOIN " CAT "pg_am m ON m.oid" EQ "c.relam WHERE m.amhandler" OID GE USER_OID
        " UNION ALL SELECT w.fdwhandler, " CAT "concat('the handler of foreign table ', f.ftrelid::"
        CAT "regclass) FROM " CAT "pg_foreign_table f"
        " JOIN " CAT "pg_foreign_server s ON s.oid" EQ "f.ftserver"
        " JOIN " CAT "pg_foreign_data_wrapper w ON w.oid" EQ "s.srvfdw"
        " WHERE f.ftrelid" IN_ "(SELECT oid FROM tables)"
        " UNION ALL SELECT m.amhandler" OID ", " CAT "concat('the access method of table ', c.oid::"
        CAT "regclass) FROM " CAT "pg_class c JOIN " CAT "pg_am m ON m.oid" EQ "c.relam"
        " WHERE c.oid" IN_ "(SELECT oid FROM tables) AND m.amhandler" OID GE USER_OID ")\n"
    /* each function looked up by its OID: a handful, out of thousands */
    "SELECT DISTINCT ON (f.oid) f.nspname, f.proname, f.src, f.provolatile, f.prokind,"
    " f.pronargs, f.builtin, f.internal, f.trigger, c.via FROM calls c, LATERAL ("
        "SELECT p.oid, n.nspname, p.proname,"
        " CASE WHEN l.lanname" EQ "'internal' THEN p.prosrc END AS src,"
        " p.provolatile, p.prokind, p.pronargs, p.oid" LT USER_OID " AS builtin,"
        " l.lanname" EQ "'internal' AS internal,"
        " p.prorettype" EQ "'pg_catalog.trigger'::" CAT "regtype AS trigger"
        " FROM " CAT "pg_proc p JOIN " CAT "pg_namespace n ON n.oid" EQ "p.pronamespace"
        " JOIN " CAT "pg_language l ON l.oid" EQ "p.prolang"
        " WHERE p.oid" EQ "c.fn OFFSET 0) f"
    " ORDER BY f.oid, c.via";
/* clang-format on */

/* explain_calls_sql with each $n replaced by quoted[n - 1], written to out unless NULL; the
 * length either way, or 0 for a $n out of range. */
static size_t substitute(char *out, char *const quoted[EXPLAIN_CALLS_PARAMS])
{
    size_t len = 0;

    for (const char *p = explain_calls_sql; *p != '\0';) {
        if (*p != '$' || p[1] < '1' || p[1] > '9') {
            if (out != NULL)
                out[len] = *p;
            len++;
            p++;
            continue;
        }
        int n = 0;
        for (p++; *p >= '0' && *p <= '9' && n <= EXPLAIN_CALLS_PARAMS; p++)
            n = n * 10 + (*p - '0');
        if (n > EXPLAIN_CALLS_PARAMS)
            return 0;
        size_t q = strlen(quoted[n - 1]);
        if (out != NULL)
            memcpy(out + len, quoted[n - 1], q);
        len += q;
    }
    if (out != NULL)
        out[len] = '\0';
    return len;
}

/* The query is cheap, but estimated dear enough for JIT to spend seconds compiling it: jit is
 * off around it, and back to the connection's own value (the one the application's statement
 * had) before the statement runs. One round trip for the three, so the values are inlined: a
 * text of several statements takes no parameters. */
#define JIT_OFF "SET LOCAL jit = off;\n"
#define JIT_BACK ";\nSET LOCAL jit TO DEFAULT"

char *explain_calls_script(char *const values[EXPLAIN_CALLS_PARAMS],
                           char *(*quote)(void *arg, const char *value),
                           void (*quote_free)(void *quoted), void *arg)
{
    char *quoted[EXPLAIN_CALLS_PARAMS] = {NULL};
    char *sql = NULL;
    bool ok = true;

    for (int i = 0; i < EXPLAIN_CALLS_PARAMS && ok; i++)
        ok = values[i] != NULL && (quoted[i] = quote(arg, values[i])) != NULL;
    size_t len = ok ? substitute(NULL, quoted) : 0;
    if (len > 0 && (sql = malloc(strlen(JIT_OFF) + len + strlen(JIT_BACK) + 1)) != NULL) {
        memcpy(sql, JIT_OFF, strlen(JIT_OFF));
        substitute(sql + strlen(JIT_OFF), quoted);
        strcat(sql, JIT_BACK);
    }
    for (int i = 0; i < EXPLAIN_CALLS_PARAMS; i++)
        if (quoted[i] != NULL)
            quote_free(quoted[i]);
    return sql;
}

/* ---- the verdict ---- */

/* Built-ins marked VOLATILE because their answer changes from call to call, not because they
 * act: they read a clock, a random generator, the session's sequences, statistics or sizes. */
static const char *const harmless_volatile[] = {
    "random",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "currval",
    "lastval",
    "pg_lock_status",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_database_size",
    "pg_tablespace_size",
    "pg_is_in_recovery",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_partition_tree",
    "pg_partition_ancestors",
    "pg_sequence_last_value",
    "system", /* TABLESAMPLE methods */
    "bernoulli",
    NULL,
};
#define STATS_READER "pg_stat_get_" /* the functions behind the pg_stat_* views */

static bool harmless(const char *name)
{
    if (strncmp(name, STATS_READER, strlen(STATS_READER)) == 0)
        return true;
    for (const char *const *h = harmless_volatile; *h != NULL; h++)
        if (strcmp(name, *h) == 0)
            return true;
    return false;
}

typedef struct allow_entry {
    char *schema; /* NULL: any schema */
    char *name;   /* "*": every function of the schema */
} allow_entry;

struct explain_allow {
    allow_entry *items;
    size_t n;
};

void explain_allow_free(explain_allow *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].schema);
        free(a->items[i].name);
    }
    free(a->items);
    free(a);
}

/* One "[schema.]name" (trimmed, not empty) into a's next entry. */
static bool allow_add(explain_allow *a, const char *item, size_t len)
{
    const char *dot = memchr(item, '.', len);
    allow_entry *e = &a->items[a->n];

    e->schema = dot != NULL ? strndup(item, (size_t)(dot - item)) : NULL;
    e->name = dot != NULL ? strndup(dot + 1, len - (size_t)(dot - item) - 1) : strndup(item, len);
    if (e->name == NULL || (dot != NULL && e->schema == NULL)) {
        free(e->schema);
        free(e->name);
        return false;
    }
    a->n++;
    return true;
}

explain_allow *explain_allow_parse(const char *list)
{
    explain_allow *a = calloc(1, sizeof *a);
    size_t commas = 1;

    if (a == NULL)
        return NULL;
    for (const char *p = list != NULL ? list : ""; *p != '\0'; p++)
        commas += *p == ',';
    a->items = calloc(commas, sizeof *a->items);
    if (a->items == NULL) {
        free(a);
        return NULL;
    }
    for (const char *p = list != NULL ? list : ""; *p != '\0';) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s && !allow_add(a, s, (size_t)(e - s))) {
            explain_allow_free(a);
            return NULL;
        }
        p += len + (p[len] == ',');
    }
    return a;
}

size_t explain_allow_count(const explain_allow *a)
{
    return a != NULL ? a->n : 0;
}

static bool allowed_by_user(const explain_allow *a, const char *schema, const char *name)
{
    for (size_t i = 0; a != NULL && i < a->n; i++) {
        const allow_entry *e = &a->items[i];
        if (e->schema != NULL && strcmp(e->schema, schema) != 0)
            continue;
        if (strcmp(e->name, name) == 0 || (e->schema != NULL && strcmp(e->name, "*") == 0))
            return true;
    }
    return false;
}

/* A function of the server itself: built in, or a LANGUAGE internal alias of one (only a
 * superuser can create those); what it runs is named by prosrc. */
static bool server_code(const explain_called *f)
{
    return f->builtin || f->internal;
}

/* The deny list's reason for f, under its own name or the C function it runs. */
static const char *denied(const explain_called *f)
{
    const char *why = explain_denied_function(f->name, (size_t)f->nargs);

    if (why == NULL && f->internal && f->src != NULL)
        why = explain_denied_function(f->src, (size_t)f->nargs);
    return why;
}

static bool server_code_allowed(const explain_called *f, bool read_write, char *why, size_t n,
                                const char *who)
{
    const char *run = f->internal && f->src != NULL && !f->builtin ? f->src : f->name;

    if (f->volatility == 'i' || f->volatility == 's' || harmless(run))
        return true;
    /* FOREIGN KEY checks and cascades: they act inside the transaction the rollback undoes */
    if (read_write && f->trigger && f->builtin)
        return true;
    snprintf(why, n, "%s is a volatile built-in function", who);
    return false;
}

bool explain_call_allowed(const explain_called *f, const explain_allow *allow, bool read_write,
                          char *why, size_t n)
{
    char who[400];
    const char *reason;

    snprintf(who, sizeof who, "%s.%s() (%s)", f->schema, f->name, f->via ? f->via : "called");
    if ((reason = denied(f)) != NULL) {
        snprintf(why, n, "%s %s", who, reason);
        return false;
    }
    if (server_code(f))
        return server_code_allowed(f, read_write, why, n, who);
    /* an aggregate of the user's runs its support functions, which are judged themselves */
    if (f->kind == 'a')
        return true;
    if (allowed_by_user(allow, f->schema, f->name))
        return true;
    snprintf(why, n, "%s is not built in and not in explain_allow_functions", who);
    return false;
}
