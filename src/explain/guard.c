/* guard.c — may a captured statement be replayed under EXPLAIN? libpg_query's parse tree says. */
#include "config.h"

#include "explain_int.h"
#include "pgscope/explain.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <pg_query.h>

/* Nesting accepted: levels of the text's tree as estimated before parsing (at that limit,
 * libpg_query needs a little over 200 KB of stack to write the tree out), and levels of the
 * JSON tree walked. Real statements stay far below both; beyond them the statement is refused. */
#define GUARD_MAX_NESTING 500
#define GUARD_MAX_DEPTH 1000

#define REASON_SIZE sizeof(((explain_guard_result *)0)->reason)

static explain_guard_result verdict(explain_guard_kind kind, const char *fmt, ...)
{
    explain_guard_result r;
    va_list ap;

    r.kind = kind;
    va_start(ap, fmt);
    vsnprintf(r.reason, sizeof r.reason, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- a bound on nesting, before libpg_query sees the text ----
 *
 * libpg_query's parser is iterative, but writing its tree out recurses once per level, and a
 * long left-deep chain (1+1+1..., a UNION b UNION c..., t1 JOIN t2 JOIN t3...) of a few hundred
 * kilobytes overflows the stack: the process dies. So the text is scanned first, with
 * PostgreSQL's rules for strings, quoted names and comments, and the depth of its tree is
 * over-estimated: one level per parenthesis, bracket or CASE, per operator of a chain, per set
 * operation or join. A comma, AND, OR, WHEN, THEN or ELSE starts a sibling rather than a deeper
 * node (the parser flattens AND and OR lists), so long IN lists, VALUES lists, OR-ed conditions
 * and CASE lists pass. A keyword after a dot is a name (t.end, t.and): it does nothing, or a
 * chain could hide behind it. */

typedef struct {
    int base;     /* estimated depth where this level starts */
    int lefts;    /* set operations and joins at this level: left-deep, never reset */
    int chain;    /* operators since the last separator at this level */
    bool is_case; /* opened by CASE, closed by END; otherwise by a parenthesis or bracket */
} nest_level;

typedef struct {
    nest_level lv[GUARD_MAX_NESTING + 1];
    int top;
    bool after_dot; /* the previous token was a dot */
    bool too_deep;
} nesting;

static int nest_depth(const nesting *n)
{
    const nest_level *l = &n->lv[n->top];
    return l->base + l->lefts + l->chain;
}

static void nest_open(nesting *n, bool is_case)
{
    int base = nest_depth(n) + 1;

    /* base grows by at least one per level, so the array cannot overflow before this trips */
    if (base > GUARD_MAX_NESTING || n->top >= GUARD_MAX_NESTING) {
        n->too_deep = true;
        return;
    }
    n->top++;
    n->lv[n->top] = (nest_level){base, 0, 0, is_case};
}

/* A parenthesis or bracket closes the CASEs left open in it, then its own level. */
static void nest_close_paren(nesting *n)
{
    while (n->top > 0 && n->lv[n->top].is_case)
        n->top--;
    if (n->top > 0)
        n->top--;
}

static bool is_ident_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

static bool is_operator_char(char c)
{
    return c != '\0' && strchr("+-*/<>=~!@#%^&|`?:", c) != NULL;
}

/* Past a string or quoted name whose opening quote is at p. A doubled quote stands for one;
 * a backslash escapes the next byte in E'...' strings. An unterminated one runs to the end. */
static const char *skip_quoted(const char *p, char quote, bool backslash)
{
    for (p++; *p != '\0'; p++) {
        if (backslash && *p == '\\' && p[1] != '\0') {
            p++;
        } else if (*p == quote) {
            if (p[1] != quote)
                return p + 1;
            p++;
        }
    }
    return p;
}

/* Past a block comment starting at p; they nest in PostgreSQL. */
static const char *skip_block_comment(const char *p)
{
    size_t depth = 0;

    while (*p != '\0') {
        if (p[0] == '/' && p[1] == '*') {
            depth++;
            p += 2;
        } else if (p[0] == '*' && p[1] == '/') {
            p += 2;
            if (--depth == 0)
                return p;
        } else {
            p++;
        }
    }
    return p;
}

/* Length of the $tag$ delimiter at p, 0 when p starts none ($1 is a parameter). */
static size_t dollar_tag_length(const char *p)
{
    size_t n = 1;

    if (p[1] >= '0' && p[1] <= '9')
        return 0;
    while (is_ident_char((unsigned char)p[n]) && p[n] != '$')
        n++;
    return p[n] == '$' ? n + 1 : 0;
}

/* Past a dollar-quoted string whose opening delimiter of length len is at p. */
static const char *skip_dollar_quoted(const char *p, size_t len)
{
    const char *body = p + len;

    for (const char *q = strchr(body, '$'); q != NULL; q = strchr(q + 1, '$')) {
        if (strncmp(q, p, len) == 0)
            return q + len;
    }
    return body + strlen(body);
}

static bool word_is(const char *w, size_t len, const char *keyword)
{
    return strlen(keyword) == len && strncasecmp(w, keyword, len) == 0;
}

static bool word_in(const char *w, size_t len, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (word_is(w, len, *list))
            return true;
    }
    return false;
}

/* What a word does to the estimate. */
static void nest_word(nesting *n, const char *w, size_t len)
{
    static const char *const separators[] = {"and", "or", "when", "then", "else", NULL};
    static const char *const chains[] = {"not",  "is",     "isnull",   "notnull", "in",
                                         "like", "ilike",  "similar",  "between", "collate",
                                         "at",   "escape", "overlaps", NULL};
    static const char *const lefts[] = {"union", "intersect", "except", "join", NULL};
    nest_level *l = &n->lv[n->top];

    if (n->after_dot)
        return;
    if (word_in(w, len, separators))
        l->chain = 1; /* the AND, OR or CASE node above the siblings */
    else if (word_is(w, len, "case"))
        nest_open(n, true);
    else if (word_is(w, len, "end") && l->is_case)
        n->top--;
    else if (word_in(w, len, chains))
        l->chain++;
    else if (word_in(w, len, lefts))
        l->lefts++;
}

/* Past a word at p (a name, keyword or number), or an E'...' string. */
static const char *nest_word_token(nesting *n, const char *p)
{
    const char *start = p;

    while (is_ident_char((unsigned char)*p))
        p++;
    if (p - start == 1 && (*start == 'e' || *start == 'E') && *p == '\'')
        return skip_quoted(p, '\'', true);
    nest_word(n, start, (size_t)(p - start));
    return p;
}

/* Past a one-byte token at p. */
static const char *nest_punctuation(nesting *n, const char *p)
{
    if (*p == '(' || *p == '[')
        nest_open(n, false);
    else if (*p == ')' || *p == ']')
        nest_close_paren(n);
    else if (*p == ',' || *p == ';')
        n->lv[n->top].chain = 0;
    else if (is_operator_char(*p))
        n->lv[n->top].chain++;
    return p + 1;
}

/* Past the token at p, updating the estimate. */
static const char *nest_token(nesting *n, const char *p)
{
    size_t tag;
    bool dot = false;

    if (p[0] == '-' && p[1] == '-')
        return p + strcspn(p, "\r\n");
    if (p[0] == '/' && p[1] == '*')
        return skip_block_comment(p);
    if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
        return p + 1;
    if (*p == '\'' || *p == '"') {
        p = skip_quoted(p, *p, false);
    } else if (*p == '$' && (tag = dollar_tag_length(p)) > 0) {
        p = skip_dollar_quoted(p, tag);
    } else if (is_ident_char((unsigned char)*p) && *p != '$') {
        p = nest_word_token(n, p);
    } else {
        dot = *p == '.';
        p = nest_punctuation(n, p);
    }
    n->after_dot = dot;
    return p;
}

/* True when the tree of text might be nested deeper than GUARD_MAX_NESTING. */
static bool nested_too_deeply(const char *text)
{
    nesting n; /* 8 KB of stack, far less than libpg_query takes */
    const char *p = text;

    n.top = 0;
    n.lv[0] = (nest_level){0, 0, 0, false};
    n.after_dot = false;
    n.too_deep = false;
    while (*p != '\0' && !n.too_deep) {
        p = nest_token(&n, p);
        if (nest_depth(&n) > GUARD_MAX_NESTING)
            n.too_deep = true;
    }
    return n.too_deep;
}

/* ---- functions that act outside the transaction ----
 *
 * The side connection replays a statement inside BEGIN READ ONLY ... ROLLBACK, which stops
 * writes to tables. These built-ins act anyway, or wait, or run SQL the guard cannot see, so a
 * statement calling any of them, whatever its schema (dblink and friends live in any schema an
 * extension was installed into), is only planned, never executed. Planning does not call a
 * VOLATILE function; those the planner itself could call (see planning_may_call) refuse the
 * statement outright. Functions the
 * guard does not know, user-defined ones included, and those reached through views, operators
 * or policies, are left to the plan check (calls.c), which sees what the plan calls; this list
 * serves it too. currval and lastval only read the session's state, and are allowed. */

typedef enum { NAME_IS, NAME_STARTS, NAME_HAS } name_match;

typedef struct {
    const char *name;
    name_match match;
    int nargs; /* only calls with this many arguments; 0: any */
    const char *why;
} denied_function;

static const char WHY_SEQUENCE[] = "changes a sequence, and no rollback undoes that";
static const char WHY_LOCK[] = "takes or drops a lock that outlives the transaction";
static const char WHY_REMOTE[] = "acts through another connection or server";
static const char WHY_NOTIFY[] = "sends a notification";
static const char WHY_WAIT[] = "waits";
static const char WHY_SIGNAL[] = "signals another backend";
static const char WHY_SERVER[] = "changes server state outside the transaction";
static const char WHY_SETTING[] = "changes a setting of the connection";
static const char WHY_FILES[] = "reads or writes server files";
static const char WHY_LARGE_OBJECT[] = "works on large objects or server files";
static const char WHY_XID[] = "assigns a transaction id";
static const char WHY_SNAPSHOT[] = "exports a snapshot";
static const char WHY_CATALOG[] = "writes the catalogs directly";
static const char WHY_SQL[] = "runs SQL of its own, out of the guard's sight";
static const char WHY_INDEX[] = "changes an index or a visibility map";

static const denied_function denied[] = {
    {"nextval", NAME_IS, 0, WHY_SEQUENCE},
    {"setval", NAME_IS, 0, WHY_SEQUENCE},
    {"pg_advisory", NAME_STARTS, 0, WHY_LOCK},
    {"pg_try_advisory", NAME_STARTS, 0, WHY_LOCK},
    {"dblink", NAME_STARTS, 0, WHY_REMOTE},
    {"pg_background", NAME_STARTS, 0, WHY_REMOTE},
    {"http", NAME_IS, 0, WHY_REMOTE}, /* pgsql-http, pg_net */
    {"http_", NAME_STARTS, 0, WHY_REMOTE},
    {"pg_notify", NAME_IS, 0, WHY_NOTIFY},
    {"pg_sleep", NAME_STARTS, 0, WHY_WAIT},
    {"pg_wait_for_backend_termination", NAME_IS, 0, WHY_WAIT},
    {"pg_terminate_backend", NAME_IS, 0, WHY_SIGNAL},
    {"pg_cancel_backend", NAME_IS, 0, WHY_SIGNAL},
    {"pg_reload_conf", NAME_IS, 0, WHY_SERVER},
    {"pg_rotate_logfile", NAME_STARTS, 0, WHY_SERVER},
    {"pg_create_", NAME_STARTS, 0, WHY_SERVER}, /* restore points, replication slots */
    {"replication_slot", NAME_HAS, 0, WHY_SERVER},
    {"pg_replication_origin", NAME_STARTS, 0, WHY_SERVER},
    {"pg_logical_", NAME_STARTS, 0, WHY_SERVER}, /* slot changes consumed, messages emitted */
    {"pg_switch_", NAME_STARTS, 0, WHY_SERVER},
    {"pg_start_backup", NAME_IS, 0, WHY_SERVER},
    {"pg_stop_backup", NAME_IS, 0, WHY_SERVER},
    {"pg_backup_", NAME_STARTS, 0, WHY_SERVER},
    {"pg_promote", NAME_IS, 0, WHY_SERVER},
    {"pg_wal_replay_", NAME_STARTS, 0, WHY_SERVER},
    {"pg_xlog_replay_", NAME_STARTS, 0, WHY_SERVER},
    {"pg_log_", NAME_STARTS, 0, WHY_SERVER},     /* memory contexts, standby snapshots */
    {"_reset", NAME_HAS, 0, WHY_SERVER},         /* statistics: pg_stat_reset*, ..._reset */
    {"pg_restore_", NAME_STARTS, 0, WHY_SERVER}, /* planner statistics, in place */
    {"pg_clear_", NAME_STARTS, 0, WHY_SERVER},
    {"pg_buffercache_evict", NAME_STARTS, 0, WHY_SERVER},
    {"set_config", NAME_IS, 0, WHY_SETTING},
    {"pg_read_", NAME_STARTS, 0, WHY_FILES},
    {"pg_ls_", NAME_STARTS, 0, WHY_FILES},
    {"pg_stat_file", NAME_IS, 0, WHY_FILES},
    {"pg_file_", NAME_STARTS, 0, WHY_FILES}, /* adminpack */
    {"pg_logdir_ls", NAME_IS, 0, WHY_FILES},
    {"lo_", NAME_STARTS, 0, WHY_LARGE_OBJECT},
    {"loread", NAME_IS, 0, WHY_LARGE_OBJECT},
    {"lowrite", NAME_IS, 0, WHY_LARGE_OBJECT},
    {"txid_current", NAME_IS, 0, WHY_XID},
    {"pg_current_xact_id", NAME_IS, 0, WHY_XID},
    {"pg_export_snapshot", NAME_IS, 0, WHY_SNAPSHOT},
    {"pg_import_", NAME_STARTS, 0, WHY_CATALOG}, /* pg_import_system_collations */
    {"pg_nextoid", NAME_IS, 0, WHY_CATALOG},
    {"query_to_xml", NAME_STARTS, 0, WHY_SQL},
    {"cursor_to_xml", NAME_STARTS, 0, WHY_SQL},
    {"table_to_xml", NAME_STARTS, 0, WHY_SQL},
    {"schema_to_xml", NAME_STARTS, 0, WHY_SQL},
    {"database_to_xml", NAME_STARTS, 0, WHY_SQL},
    {"ts_stat", NAME_IS, 0, WHY_SQL},
    {"ts_rewrite", NAME_IS, 2, WHY_SQL}, /* ts_rewrite(query, 'SELECT ...') */
    {"brin_summarize_", NAME_STARTS, 0, WHY_INDEX},
    {"brin_desummarize_range", NAME_IS, 0, WHY_INDEX},
    {"gin_clean_pending_list", NAME_IS, 0, WHY_INDEX},
    {"pg_truncate_visibility_map", NAME_IS, 0, WHY_INDEX},
};

/* strstr, ignoring ASCII case. */
static bool has_nocase(const char *s, const char *part)
{
    size_t n = strlen(part);

    for (; *s != '\0'; s++) {
        if (strncasecmp(s, part, n) == 0)
            return true;
    }
    return false;
}

/* Case is ignored: a quoted "NextVal" is not nextval, but refusing it costs nothing. */
static bool name_matches(const char *name, const denied_function *d)
{
    switch (d->match) {
    case NAME_IS:
        return strcasecmp(name, d->name) == 0;
    case NAME_STARTS:
        return strncasecmp(name, d->name, strlen(d->name)) == 0;
    case NAME_HAS:
        return has_nocase(name, d->name);
    }
    return true;
}

/* Functions that run SQL of their own or take a transaction id: several are STABLE or IMMUTABLE
 * (table_to_xml, ts_rewrite, txid_current...), which the planner may call while it plans, to
 * fold or estimate a call with constant arguments, so even a plain EXPLAIN could run them. The
 * whole kind is refused rather than told apart by volatility. */
static bool planning_may_call(const char *why)
{
    return why == WHY_SQL || why == WHY_XID;
}

/* Why calling name with nargs arguments is refused, NULL when it is not. */
const char *explain_denied_function(const char *name, size_t nargs)
{
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        const denied_function *d = &denied[i];
        if (name_matches(name, d) && (d->nargs == 0 || (size_t)d->nargs == nargs))
            return d->why;
    }
    return NULL;
}

/* ---- walking the parse tree ----
 *
 * Every object and array is visited, so a node is found at any depth (subqueries, CTEs,
 * set-operation arms, FROM functions, LATERAL, ORDER BY...) without listing where it may be. */

typedef struct {
    bool dml;       /* the statement is INSERT, UPDATE, DELETE or MERGE */
    bool refused;   /* reason says why */
    bool plan_only; /* calls a denied function planning does not call: plan_reason says which */
    char reason[REASON_SIZE];
    char plan_reason[REASON_SIZE];
} walk;

static void refuse(walk *w, const char *fmt, ...)
{
    va_list ap;

    if (w->refused)
        return;
    w->refused = true;
    va_start(ap, fmt);
    vsnprintf(w->reason, sizeof w->reason, fmt, ap);
    va_end(ap);
}

static const char *const dml_nodes[][2] = {
    {"InsertStmt", "INSERT"},
    {"UpdateStmt", "UPDATE"},
    {"DeleteStmt", "DELETE"},
    {"MergeStmt", "MERGE"},
};

/* "INSERT" for "InsertStmt"..., NULL for a node that is not DML. */
static const char *dml_word(const char *node)
{
    for (size_t i = 0; i < sizeof dml_nodes / sizeof dml_nodes[0]; i++) {
        if (strcmp(node, dml_nodes[i][0]) == 0)
            return dml_nodes[i][1];
    }
    return NULL;
}

/* The text of a {"String": {"sval": ...}} node, NULL for anything else. */
static const char *string_node(json_t *node)
{
    return json_string_value(json_object_get(json_object_get(node, "String"), "sval"));
}

/* A node with a funcname is a call (FuncCall, wrapped or not): its last name is the function. */
static void check_call(walk *w, json_t *call)
{
    json_t *names = json_object_get(call, "funcname");
    size_t n = json_array_size(names);
    const char *name = n > 0 ? string_node(json_array_get(names, n - 1)) : NULL;
    const char *why;

    if (name == NULL) {
        refuse(w, "calls a function whose name the guard cannot read");
        return;
    }
    why = explain_denied_function(name, json_array_size(json_object_get(call, "args")));
    if (why != NULL && planning_may_call(why)) {
        refuse(w, "calls %s(), which %s", name, why);
    } else if (why != NULL && !w->plan_only) {
        /* the walk goes on: something later may refuse the statement outright */
        w->plan_only = true;
        snprintf(w->plan_reason, sizeof w->plan_reason, "calls %s(), which %s", name, why);
    }
}

static const char *lock_strength(json_t *clauses)
{
    const char *s = json_string_value(
        json_object_get(json_object_get(json_array_get(clauses, 0), "LockingClause"), "strength"));

    if (s == NULL)
        return "FOR UPDATE/SHARE";
    if (strcmp(s, "LCS_FORKEYSHARE") == 0)
        return "FOR KEY SHARE";
    if (strcmp(s, "LCS_FORSHARE") == 0)
        return "FOR SHARE";
    if (strcmp(s, "LCS_FORNOKEYUPDATE") == 0)
        return "FOR NO KEY UPDATE";
    return "FOR UPDATE";
}

/* Node types are capitalized ("InsertStmt"), fields are not ("selectStmt" of an INSERT). */
static bool is_statement_node(const char *key)
{
    size_t n = strlen(key);
    return key[0] >= 'A' && key[0] <= 'Z' && n > 4 && strcmp(key + n - 4, "Stmt") == 0;
}

/* A member of an object: is it something a replay must not do? */
static void check_member(walk *w, const char *key, json_t *value)
{
    const char *word;

    if (strcmp(key, "lockingClause") == 0 && !w->dml) {
        /* row locks wait for other sessions, and would block them while the sample runs */
        refuse(w, "locking clause %s", lock_strength(value));
    } else if (strcmp(key, "intoClause") == 0 && !w->dml) {
        refuse(w, "SELECT INTO creates a table");
    } else if (is_statement_node(key) && strcmp(key, "SelectStmt") != 0) {
        /* a statement inside a statement: a WITH holding DML, or something not foreseen */
        word = dml_word(key);
        if (word == NULL)
            refuse(w, "contains a %s", key);
        else if (!w->dml)
            refuse(w, "data-modifying WITH (%s)", word);
    }
}

static void visit(walk *w, json_t *node, int depth);

static void visit_object(walk *w, json_t *object, int depth)
{
    if (json_object_get(object, "funcname") != NULL)
        check_call(w, object);
    for (void *it = json_object_iter(object); it != NULL && !w->refused;
         it = json_object_iter_next(object, it)) {
        check_member(w, json_object_iter_key(it), json_object_iter_value(it));
        visit(w, json_object_iter_value(it), depth + 1);
    }
}

static void visit(walk *w, json_t *node, int depth)
{
    if (w->refused)
        return;
    if (depth > GUARD_MAX_DEPTH) {
        refuse(w, "nested too deeply (parse tree over %d levels)", GUARD_MAX_DEPTH);
        return;
    }
    if (json_is_object(node)) {
        visit_object(w, node, depth);
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node) && !w->refused; i++)
            visit(w, json_array_get(node, i), depth + 1);
    }
}

/* ---- statements ---- */

static const char *const utility_words[][2] = {
    {"VariableSetStmt", "SET"},
    {"VariableShowStmt", "SHOW"},
    {"TransactionStmt", "transaction control"},
    {"CopyStmt", "COPY"},
    {"CallStmt", "CALL"},
    {"DoStmt", "DO"},
    {"ExplainStmt", "EXPLAIN"},
    {"PrepareStmt", "PREPARE"},
    {"ExecuteStmt", "EXECUTE"},
    {"DeallocateStmt", "DEALLOCATE"},
    {"VacuumStmt", "VACUUM or ANALYZE"},
    {"CreateTableAsStmt", "CREATE TABLE AS"},
    {"ListenStmt", "LISTEN"},
    {"UnlistenStmt", "UNLISTEN"},
    {"NotifyStmt", "NOTIFY"},
    {"LockStmt", "LOCK"},
    {"DeclareCursorStmt", "DECLARE CURSOR"},
    {"FetchStmt", "FETCH"},
    {"ClosePortalStmt", "CLOSE"},
    {"TruncateStmt", "TRUNCATE"},
    {"DiscardStmt", "DISCARD"},
    {"CheckPointStmt", "CHECKPOINT"},
    {"CreateStmt", "CREATE TABLE"},
    {"DropStmt", "DROP"},
    {"AlterTableStmt", "ALTER TABLE"},
    {"IndexStmt", "CREATE INDEX"},
    {"RefreshMatViewStmt", "REFRESH MATERIALIZED VIEW"},
};

static explain_guard_result refuse_utility(const char *node)
{
    for (size_t i = 0; i < sizeof utility_words / sizeof utility_words[0]; i++) {
        if (strcmp(node, utility_words[i][0]) == 0)
            return verdict(EXPLAIN_GUARD_REFUSED, "not a query: %s (%s)", utility_words[i][1],
                           node);
    }
    return verdict(EXPLAIN_GUARD_REFUSED, "not a query: %s", node);
}

/* The verdict on one statement: node is its type ("SelectStmt"), body its fields. */
static explain_guard_result judge_statement(const char *node, json_t *body)
{
    walk w = {.dml = false, .refused = false, .plan_only = false, .reason = "", .plan_reason = ""};
    const char *word = dml_word(node);

    if (strcmp(node, "SelectStmt") != 0 && word == NULL)
        return refuse_utility(node);
    w.dml = word != NULL;
    visit(&w, body, 1);
    /* DML is only plain-EXPLAINed by default, but explain_dml = analyze-rollback executes it:
     * a session advisory lock or a dblink call would then outlive the rollback, so a denied
     * call makes DML plan-only too. */
    if (w.refused)
        return verdict(EXPLAIN_GUARD_REFUSED, "%s%s", w.dml ? "DML, but " : "", w.reason);
    if (w.plan_only)
        return verdict(EXPLAIN_GUARD_PLAN_ONLY, "%s%s", w.dml ? "DML, but " : "", w.plan_reason);
    if (w.dml)
        return verdict(EXPLAIN_GUARD_DML, "DML: %s", word);
    return verdict(EXPLAIN_GUARD_SELECT, "%s", "");
}

/* The verdict on a whole parse tree: {"version": ..., "stmts": [{"stmt": {"SelectStmt": ...}}]} */
static explain_guard_result judge_tree(json_t *tree)
{
    json_t *stmts = json_object_get(tree, "stmts"), *stmt;
    const char *node;

    if (!json_is_array(stmts))
        return verdict(EXPLAIN_GUARD_REFUSED, "parse tree without statements");
    if (json_array_size(stmts) == 0)
        return verdict(EXPLAIN_GUARD_REFUSED, "no statement (empty, or only comments)");
    if (json_array_size(stmts) > 1)
        return verdict(EXPLAIN_GUARD_REFUSED, "%zu statements: only one may be replayed",
                       json_array_size(stmts));
    stmt = json_object_get(json_array_get(stmts, 0), "stmt");
    if (!json_is_object(stmt) || json_object_size(stmt) != 1)
        return verdict(EXPLAIN_GUARD_REFUSED, "statement node the guard cannot read");
    node = json_object_iter_key(json_object_iter(stmt));
    return judge_statement(node, json_object_iter_value(json_object_iter(stmt)));
}

explain_guard_result explain_guard(const char *text)
{
    PgQueryParseResult parsed;
    json_error_t error;
    json_t *tree;
    explain_guard_result r;

    if (text == NULL)
        return verdict(EXPLAIN_GUARD_REFUSED, "no statement text");
    if (nested_too_deeply(text))
        return verdict(EXPLAIN_GUARD_REFUSED,
                       "nested too deeply (over %d levels of parentheses, CASEs, operators, "
                       "joins or set operations)",
                       GUARD_MAX_NESTING);
    parsed = pg_query_parse(text);
    if (parsed.error != NULL) {
        r = verdict(EXPLAIN_GUARD_REFUSED, "does not parse: %s",
                    parsed.error->message ? parsed.error->message : "unknown error");
        pg_query_free_parse_result(parsed);
        return r;
    }
    /* duplicate keys would let a later member hide an earlier one: refuse rather than guess */
    tree = json_loads(parsed.parse_tree ? parsed.parse_tree : "",
                      JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &error);
    pg_query_free_parse_result(parsed);
    if (tree == NULL) {
        if (json_error_code(&error) == json_error_stack_overflow)
            return verdict(EXPLAIN_GUARD_REFUSED, "nested too deeply (parse tree too deep to "
                                                  "read)");
        return verdict(EXPLAIN_GUARD_REFUSED, "parse tree unreadable: %s", error.text);
    }
    r = judge_tree(tree);
    json_decref(tree);
    return r;
}

/* ---- the names a statement calls, for the plan check (calls.c) ----
 *
 * A plan does not print everything its statement evaluates: not the rows of a VALUES list, nor
 * LIMIT and OFFSET, window frame offsets, or the operator comparing a value with a subquery's
 * rows (x = ANY (SELECT ...)). What the statement's own text names is read here from its parse
 * tree, with the relations it names, views included (their stored trees are read by the
 * catalog query). */

static void add_names(explain_calls *c, explain_call_kind kind, json_t *names)
{
    size_t n = json_array_size(names);
    const char *name = n > 0 ? string_node(json_array_get(names, n - 1)) : NULL;
    const char *schema = n > 1 ? string_node(json_array_get(names, n - 2)) : NULL;

    if (name != NULL)
        explain_calls_add(c, kind, schema != NULL ? schema : "", name);
}

/* An operator expression: its operator; BETWEEN stands for the comparisons it makes. */
static void add_operator(explain_calls *c, json_t *a_expr)
{
    const char *kind = json_string_value(json_object_get(a_expr, "kind"));

    add_names(c, EXPLAIN_CALL_OPERATOR, json_object_get(a_expr, "name"));
    if (kind != NULL && strstr(kind, "BETWEEN") != NULL) {
        static const char *const comparisons[] = {"<", "<=", ">", ">="};
        for (size_t i = 0; i < sizeof comparisons / sizeof comparisons[0]; i++)
            explain_calls_add(c, EXPLAIN_CALL_OPERATOR, "", comparisons[i]);
    }
}

/* x = ANY (SELECT ...), x IN (SELECT ...) (whose operator is =), ROW(...) < (SELECT ...) */
static void add_sublink_operator(explain_calls *c, json_t *sublink)
{
    const char *type = json_string_value(json_object_get(sublink, "subLinkType"));
    json_t *op = json_object_get(sublink, "operName");

    if (json_array_size(op) > 0)
        add_names(c, EXPLAIN_CALL_OPERATOR, op);
    else if (type != NULL && strcmp(type, "ANY_SUBLINK") == 0)
        explain_calls_add(c, EXPLAIN_CALL_OPERATOR, "", "=");
}

static void collect(explain_calls *c, json_t *node, int depth);

static void collect_object(explain_calls *c, json_t *object, int depth)
{
    const char *rel = json_string_value(json_object_get(object, "relname"));
    const char *schema = json_string_value(json_object_get(object, "schemaname"));
    const char *key;
    json_t *value;

    if (json_object_get(object, "funcname") != NULL)
        add_names(c, EXPLAIN_CALL_FUNCTION, json_object_get(object, "funcname"));
    if (rel != NULL) /* a RangeVar: a table, a view, or a CTE's name */
        explain_calls_add(c, EXPLAIN_CALL_RELATION, schema != NULL ? schema : "", rel);
    json_object_foreach(object, key, value)
    {
        if (strcmp(key, "A_Expr") == 0)
            add_operator(c, value);
        else if (strcmp(key, "SubLink") == 0)
            add_sublink_operator(c, value);
        else if (strcmp(key, "SortBy") == 0)
            add_names(c, EXPLAIN_CALL_OPERATOR, json_object_get(value, "useOp"));
        else if (strcmp(key, "typeName") == 0 || strcmp(key, "TypeName") == 0)
            add_names(c, EXPLAIN_CALL_TYPE, json_object_get(value, "names"));
        collect(c, value, depth + 1);
    }
}

static void collect(explain_calls *c, json_t *node, int depth)
{
    if (depth > GUARD_MAX_DEPTH) {
        explain_calls_fail(c);
        return;
    }
    if (json_is_object(node)) {
        collect_object(c, node, depth);
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++)
            collect(c, json_array_get(node, i), depth + 1);
    }
}

/* Runs on the side connections' thread: libpg_query keeps its parser state per thread. */
bool explain_calls_add_statement(explain_calls *c, const char *text)
{
    PgQueryParseResult parsed;
    json_t *tree;

    if (c == NULL || text == NULL || nested_too_deeply(text))
        return false;
    parsed = pg_query_parse(text);
    tree = parsed.error == NULL && parsed.parse_tree != NULL
               ? json_loads(parsed.parse_tree, JSON_DECODE_INT_AS_REAL, NULL)
               : NULL;
    pg_query_free_parse_result(parsed);
    if (tree == NULL)
        return false;
    collect(c, tree, 1);
    json_decref(tree);
    return !explain_calls_failed(c);
}
