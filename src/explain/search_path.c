/* search_path.c — what a client's statement does to its search_path, so that a sampled
 * statement is replayed with the path its client had: names must resolve to the same tables. */
#include "config.h"

#include "pgscope/explain.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <string.h>

/* Appends one path element as a quoted identifier: the server's own list syntax, which
 * set_config() reads back to the same element whatever its case or characters ("$user",
 * "My Schema"). The element is measured first and written only when all of it fits, with the
 * NUL: a cut element would name another schema. False when out does not have room. */
static bool append_element(char *out, size_t cap, size_t *len, const char *name)
{
    size_t need = (*len > 0 ? 2 : 0) + 2 + strlen(name), n = *len; /* ", " and the quotes */

    for (const char *p = name; *p; p++)
        need += *p == '"';           /* doubled */
    if (n >= cap || need >= cap - n) /* need bytes and the NUL, from out[n] on */
        return false;
    if (n > 0) {
        out[n++] = ',';
        out[n++] = ' ';
    }
    out[n++] = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            out[n++] = '"';
        out[n++] = *p;
    }
    out[n++] = '"';
    out[n] = '\0';
    *len = n;
    return true;
}

/* The text of one SET argument: a string or an identifier (both A_Const sval), or a number,
 * which the server also accepts as a schema name. NULL for anything else. */
static const char *arg_text(json_t *arg, char *num, size_t cap)
{
    json_t *c = json_object_get(arg, "A_Const");
    const char *s = json_string_value(json_object_get(json_object_get(c, "sval"), "sval"));
    json_t *ival = json_object_get(json_object_get(c, "ival"), "ival");

    if (s)
        return s;
    if (json_is_number(ival)) {
        snprintf(num, cap, "%lld", (long long)json_number_value(ival));
        return num;
    }
    return NULL;
}

static explain_path_change value_of(json_t *args, char *value, size_t cap)
{
    size_t len = 0, i;
    json_t *arg;
    char num[32];

    value[0] = '\0';
    json_array_foreach(args, i, arg)
    {
        const char *name = arg_text(arg, num, sizeof(num));
        if (!name || !append_element(value, cap, &len, name))
            return EXPLAIN_PATH_UNKNOWN;
    }
    return len > 0 ? EXPLAIN_PATH_SET : EXPLAIN_PATH_UNKNOWN;
}

static explain_path_change judge_set(json_t *set, char *value, size_t cap)
{
    const char *kind = json_string_value(json_object_get(set, "kind"));
    const char *name = json_string_value(json_object_get(set, "name"));

    if (!kind)
        return EXPLAIN_PATH_NONE;
    if (strcmp(kind, "VAR_RESET_ALL") == 0)
        return EXPLAIN_PATH_RESET;
    if (!name || strcmp(name, "search_path") != 0)
        return EXPLAIN_PATH_NONE;
    if (strcmp(kind, "VAR_RESET") == 0 || strcmp(kind, "VAR_SET_DEFAULT") == 0)
        return json_is_true(json_object_get(set, "is_local")) ? EXPLAIN_PATH_UNKNOWN
                                                              : EXPLAIN_PATH_RESET;
    if (strcmp(kind, "VAR_SET_VALUE") != 0)
        return EXPLAIN_PATH_UNKNOWN; /* SET search_path FROM CURRENT, ... */
    explain_path_change c = value_of(json_object_get(set, "args"), value, cap);
    if (c == EXPLAIN_PATH_SET && json_is_true(json_object_get(set, "is_local")))
        return EXPLAIN_PATH_SET_LOCAL;
    return c;
}

static explain_path_change judge(json_t *tree, char *value, size_t cap)
{
    json_t *stmts = json_object_get(tree, "stmts");
    json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
    json_t *set = json_object_get(stmt, "VariableSetStmt");
    json_t *discard = json_object_get(stmt, "DiscardStmt");

    if (json_array_size(stmts) != 1)
        return EXPLAIN_PATH_NONE;
    if (discard) {
        const char *target = json_string_value(json_object_get(discard, "target"));
        return target && strcmp(target, "DISCARD_ALL") == 0 ? EXPLAIN_PATH_RESET
                                                            : EXPLAIN_PATH_NONE;
    }
    return set ? judge_set(set, value, cap) : EXPLAIN_PATH_NONE;
}

explain_path_change explain_search_path_change(const char *text, char *value, size_t cap)
{
    if (!text || !value || cap == 0)
        return EXPLAIN_PATH_NONE;
    value[0] = '\0';
    PgQueryParseResult parsed = pg_query_parse(text);
    json_t *tree = parsed.error ? NULL : json_loads(parsed.parse_tree, 0, NULL);
    pg_query_free_parse_result(parsed);
    if (!tree)
        return EXPLAIN_PATH_NONE; /* the server would refuse it too: nothing changed */
    explain_path_change c = judge(tree, value, cap);
    json_decref(tree);
    if (c != EXPLAIN_PATH_SET && c != EXPLAIN_PATH_SET_LOCAL)
        value[0] = '\0';
    return c;
}
