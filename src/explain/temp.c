/* temp.c — the temporary relations a client creates, and whether a statement reads one: such a
 * statement cannot be replayed, since another session (the side connection) cannot see them. */
#include "config.h"

#include "pgscope/explain.h"

#include <jansson.h>
#include <pg_query.h>
#include <string.h>
#include <strings.h>

/* pg_temp is the session's own temporary schema by its alias; pg_temp_N by its real name. */
static bool is_temp_schema(const char *schema)
{
    return schema && strncasecmp(schema, "pg_temp", 7) == 0;
}

static json_t *parse_one(const char *text)
{
    PgQueryParseResult parsed = pg_query_parse(text);
    json_t *tree = parsed.error ? NULL : json_loads(parsed.parse_tree, 0, NULL);

    pg_query_free_parse_result(parsed);
    return tree;
}

/* A RangeVar that names a relation being created: temporary when created TEMP or in pg_temp. */
static void created(json_t *rel, explain_temp_fn fn, void *arg)
{
    const char *name = json_string_value(json_object_get(rel, "relname"));
    const char *schema = json_string_value(json_object_get(rel, "schemaname"));
    const char *persistence = json_string_value(json_object_get(rel, "relpersistence"));

    if (name && ((persistence && strcmp(persistence, "t") == 0) || is_temp_schema(schema)))
        fn(true, name, arg);
}

/* DROP TABLE/VIEW/SEQUENCE a, pg_temp.b: each name unqualified or in pg_temp is forgotten (an
 * unqualified one may have been a permanent relation: forgetting a name costs nothing). */
static void dropped(json_t *drop, explain_temp_fn fn, void *arg)
{
    const char *type = json_string_value(json_object_get(drop, "removeType"));
    size_t i;
    json_t *obj;

    if (!type || (strcmp(type, "OBJECT_TABLE") != 0 && strcmp(type, "OBJECT_VIEW") != 0 &&
                  strcmp(type, "OBJECT_SEQUENCE") != 0 && strcmp(type, "OBJECT_MATVIEW") != 0))
        return;
    json_array_foreach(json_object_get(drop, "objects"), i, obj)
    {
        json_t *items = json_object_get(json_object_get(obj, "List"), "items");
        size_t n = json_array_size(items);
        const char *name = json_string_value(
            json_object_get(json_object_get(json_array_get(items, n - 1), "String"), "sval"));
        const char *schema = n == 2
                                 ? json_string_value(json_object_get(
                                       json_object_get(json_array_get(items, 0), "String"), "sval"))
                                 : NULL;
        if (name && (n == 1 || (n == 2 && is_temp_schema(schema))))
            fn(false, name, arg);
    }
}

bool explain_temp_follow(const char *text, explain_temp_fn fn, void *arg)
{
    json_t *tree = text && fn ? parse_one(text) : NULL;
    json_t *stmts = json_object_get(tree, "stmts");
    json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
    json_t *v;
    bool all = false;

    if (json_array_size(stmts) != 1)
        stmt = NULL;
    if ((v = json_object_get(stmt, "CreateStmt")))
        created(json_object_get(v, "relation"), fn, arg);
    else if ((v = json_object_get(stmt, "CreateTableAsStmt")))
        created(json_object_get(json_object_get(v, "into"), "rel"), fn, arg);
    else if ((v = json_object_get(stmt, "SelectStmt")))
        created(json_object_get(json_object_get(v, "intoClause"), "rel"), fn, arg);
    else if ((v = json_object_get(stmt, "ViewStmt")))
        created(json_object_get(v, "view"), fn, arg);
    else if ((v = json_object_get(stmt, "CreateSeqStmt")))
        created(json_object_get(v, "sequence"), fn, arg);
    else if ((v = json_object_get(stmt, "DropStmt")))
        dropped(v, fn, arg);
    else if ((v = json_object_get(stmt, "DiscardStmt"))) {
        const char *target = json_string_value(json_object_get(v, "target"));
        all = target && (strcmp(target, "DISCARD_ALL") == 0 || strcmp(target, "DISCARD_TEMP") == 0);
    }
    json_decref(tree);
    return all;
}

/* Whether a RangeVar names a temporary relation: in pg_temp, or unqualified with a name the
 * client created TEMP (a temporary relation hides a permanent one of the same name). A CTE of
 * that name counts too: the statement is then not replayed, which is the safe mistake. */
static bool temp_range(json_t *rv, const char *const *names, size_t n)
{
    const char *name = json_string_value(json_object_get(rv, "relname"));
    const char *schema = json_string_value(json_object_get(rv, "schemaname"));

    if (is_temp_schema(schema))
        return true;
    for (size_t i = 0; name && !schema && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static bool walk(json_t *node, const char *const *names, size_t n)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_array(node)) {
        json_array_foreach(node, i, v)
        {
            if (walk(v, names, n))
                return true;
        }
        return false;
    }
    /* A RangeVar, wrapped as {"RangeVar": {...}} in lists and bare where a field holds one
     * (the target of an INSERT, UPDATE, DELETE, MERGE): the one node with a relname. */
    if (json_is_string(json_object_get(node, "relname")))
        return temp_range(node, names, n);
    json_object_foreach(node, key, v)
    {
        if ((json_is_object(v) || json_is_array(v)) && walk(v, names, n))
            return true;
    }
    return false;
}

bool explain_temp_uses(const char *text, const char *const *names, size_t n)
{
    json_t *tree = text ? parse_one(text) : NULL;
    bool uses = tree && walk(json_object_get(tree, "stmts"), names, n);

    json_decref(tree);
    return uses;
}
