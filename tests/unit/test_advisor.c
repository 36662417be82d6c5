/* Unit tests for the index advisor's pure parts: candidates, DDL, coverage, updated columns and
 * consolidation. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/advisor.h"

#define MAX_OUT 16

/* ---- helpers ---- */

/* "schema.table(a,b) WHERE predicate", the way the expectations below are written. */
static void describe(const advisor_index *ix, char *out, size_t cap)
{
    size_t n = 0;

    n += (size_t)snprintf(out + n, cap - n, "%s%s%s(", ix->schema, ix->schema[0] ? "." : "",
                          ix->table);
    for (int i = 0; i < ix->n_columns && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", ix->columns[i]);
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, ")");
    if (ix->predicate[0] && n < cap)
        snprintf(out + n, cap - n, " WHERE %s", ix->predicate);
}

/* The candidates of sql must be exactly expected (NULL-terminated), in that order. */
static void expect_candidates(const char *sql, const char *const *expected)
{
    advisor_index out[MAX_OUT];
    char got[512];
    int n = advisor_candidates(sql, out, MAX_OUT), want = 0;

    while (expected[want] != NULL)
        want++;
    for (int i = 0; i < n; i++) {
        describe(&out[i], got, sizeof(got));
        if (i >= want || strcmp(got, expected[i]) != 0)
            fail_msg("[%s]\ncandidate %d: got %s, expected %s", sql, i, got,
                     i < want ? expected[i] : "(none)");
    }
    if (n != want)
        fail_msg("[%s]\n%d candidates, expected %d", sql, n, want);
}

#define EXPECT(sql, ...)                                                                           \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__, NULL};                                           \
        expect_candidates(sql, want_);                                                             \
    } while (0)
#define EXPECT_NONE(sql) expect_candidates(sql, (const char *const[]){NULL})

static advisor_index index_of(const char *schema, const char *table, const char *columns,
                              const char *predicate)
{
    advisor_index ix;
    char list[256];

    memset(&ix, 0, sizeof(ix));
    snprintf(ix.schema, sizeof(ix.schema), "%s", schema);
    snprintf(ix.table, sizeof(ix.table), "%s", table);
    snprintf(ix.predicate, sizeof(ix.predicate), "%s", predicate ? predicate : "");
    snprintf(list, sizeof(list), "%s", columns);
    for (char *c = strtok(list, ","); c != NULL && ix.n_columns < ADVISOR_MAX_COLUMNS;
         c = strtok(NULL, ","))
        snprintf(ix.columns[ix.n_columns++], ADVISOR_NAME, "%s", c);
    return ix;
}

static advisor_index ix_on(const char *table, const char *columns)
{
    return index_of("", table, columns, NULL);
}

/* ---- candidates: the acceptance workload ---- */

static void test_acceptance_equality_parameter(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders WHERE customer_id = $1", "orders(customer_id)");
}

static void test_acceptance_order_by_limit(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders WHERE status = 'pending' ORDER BY created_at LIMIT 20",
           "orders(status,created_at)", "orders(created_at) WHERE status = 'pending'");
}

static void test_acceptance_two_equalities(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders WHERE customer_id = $1 AND status = $2",
           "orders(customer_id,status)");
}

/* ---- candidates: rules ---- */

static void test_alias_and_qualified_resolution(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders o WHERE o.customer_id = $1", "orders(customer_id)");
    EXPECT("SELECT * FROM orders WHERE orders.customer_id = $1", "orders(customer_id)");
    EXPECT("SELECT * FROM shop.orders WHERE shop.orders.customer_id = $1 AND orders.status = $2",
           "shop.orders(customer_id,status)");
    EXPECT("SELECT * FROM shop.orders AS o WHERE customer_id = $1", "shop.orders(customer_id)");
    /* an alias hides the table's name; another schema is another table */
    EXPECT_NONE("SELECT * FROM orders o WHERE orders.customer_id = 1");
    EXPECT_NONE("SELECT * FROM shop.orders WHERE public.orders.customer_id = 1");
    /* unqualified with two FROM items: which table is not known */
    EXPECT_NONE("SELECT * FROM orders, customers WHERE customer_id = 1");
    /* a WITH query or a subquery is no table */
    EXPECT_NONE("WITH o AS (SELECT * FROM orders) SELECT * FROM o WHERE o.id = 1");
    EXPECT_NONE("SELECT * FROM (SELECT * FROM orders) o WHERE o.id = 1");
}

/* The inner side of a nested loop: the join key, then its own table's filter and order. */
static void test_join_key_with_its_table_columns(void **state)
{
    (void)state;
    EXPECT("SELECT c.id, x.* FROM customers c, LATERAL (SELECT o.id FROM orders o WHERE "
           "o.customer_id = c.id ORDER BY o.created_at DESC LIMIT 3) x",
           "orders(created_at)", "orders(customer_id)", "orders(customer_id,created_at)",
           "customers(id)");
}

static void test_join_keys_on_both_sides(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = $1",
           "customers(email)", "customers(id)", "customers(id,email)", "orders(customer_id)");
    EXPECT("SELECT * FROM orders o, items i WHERE i.order_id = o.id AND o.status = $1",
           "orders(status)", "items(order_id)", "orders(id)", "orders(id,status)");
    EXPECT("SELECT * FROM orders JOIN items USING (order_id)", "orders(order_id)",
           "items(order_id)");
    /* ON terms are read like WHERE terms; the same key twice is one candidate */
    EXPECT("SELECT * FROM a JOIN b ON a.x = b.y AND b.k = 3 AND b.y = a.x", "b(k)", "a(x)", "b(y)",
           "b(y,k)");
    /* a column compared with one of its own table is no join key */
    EXPECT_NONE("SELECT * FROM a WHERE a.x = a.y");
}

static void test_or_conjunct_ignored(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM t WHERE (a = 1 OR b = 2) AND c = $1", "t(c)");
    EXPECT_NONE("SELECT * FROM t WHERE a = 1 OR b = 2");
    EXPECT_NONE("SELECT * FROM t WHERE NOT (a = 1)");
    /* nested ANDs are still top-level terms */
    EXPECT("SELECT * FROM t WHERE a = $1 AND (b = $2 AND c = $3)", "t(a,b,c)");
}

static void test_in_and_any(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM t WHERE a IN (1, 2, 3)", "t(a)");
    EXPECT("SELECT * FROM t WHERE a = ANY($1)", "t(a)");
    EXPECT("SELECT * FROM t WHERE a = ANY('{1,2}') AND b = ANY(ARRAY[1, 2])", "t(a,b)");
    EXPECT_NONE("SELECT * FROM t WHERE a NOT IN (1, 2)");
    EXPECT_NONE("SELECT * FROM t WHERE a <> ALL($1)");
    EXPECT_NONE("SELECT * FROM t WHERE a IN (b, 2)");
}

static void test_between_and_ranges(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM t WHERE created_at BETWEEN $1 AND $2", "t(created_at)");
    /* equality columns first, then the first range column only */
    EXPECT("SELECT * FROM t WHERE x > 5 AND y < 3 AND k = $1", "t(k,x)");
    EXPECT("SELECT * FROM t WHERE 5 <= x", "t(x)");
    EXPECT("SELECT * FROM t WHERE x >= now() - interval '1 day'", "t(x)");
    EXPECT_NONE("SELECT * FROM t WHERE x NOT BETWEEN 1 AND 2");
    EXPECT_NONE("SELECT * FROM t WHERE x <> 1 AND y LIKE 'a%' AND lower(z) = 'a'");
    EXPECT_NONE("SELECT * FROM t WHERE x = NULL AND y IS NULL");
}

static void test_typecast(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM t WHERE a = $1::int", "t(a)");
    EXPECT_NONE("SELECT * FROM t WHERE a::text = $1");
    /* a cast constant still makes a partial index, without its cast */
    EXPECT("SELECT * FROM t WHERE s = 'x'::text AND d > '2024-01-01'::date", "t(s,d)",
           "t(d) WHERE s = 'x'");
    EXPECT("SELECT * FROM t WHERE CAST($1 AS bigint) = id", "t(id)");
}

static void test_no_limit_no_sort_columns(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders WHERE status = $1 ORDER BY created_at", "orders(status)");
    EXPECT("SELECT * FROM orders WHERE status = $1 ORDER BY created_at LIMIT ALL",
           "orders(status)");
    EXPECT("SELECT * FROM orders ORDER BY created_at DESC LIMIT $1", "orders(created_at)");
    EXPECT("SELECT * FROM orders ORDER BY created_at FETCH FIRST 5 ROWS ONLY",
           "orders(created_at)");
    /* the order replaces the range column */
    EXPECT("SELECT * FROM orders WHERE total > 5 ORDER BY id LIMIT 5", "orders(id)");
    /* an output name means its column */
    EXPECT("SELECT id AS i FROM t ORDER BY i LIMIT 1", "t(id)");
}

static void test_sort_columns_of_two_tables_none(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM a JOIN b ON a.id = b.a_id WHERE a.k = $1 ORDER BY a.c, b.d LIMIT 3",
           "a(k)", "a(id)", "a(id,k)", "b(a_id)");
    /* nor an expression, nor directions a btree cannot give together */
    EXPECT("SELECT * FROM t WHERE k = $1 ORDER BY lower(name) LIMIT 3", "t(k)");
    EXPECT("SELECT * FROM t WHERE k = $1 ORDER BY a, b DESC LIMIT 3", "t(k)");
    EXPECT("SELECT * FROM t WHERE k = $1 ORDER BY a DESC NULLS LAST LIMIT 3", "t(k)");
    EXPECT("SELECT * FROM t WHERE k = $1 ORDER BY a DESC, b DESC LIMIT 3", "t(k,a,b)");
}

static void test_update_delete_where(void **state)
{
    (void)state;
    EXPECT("UPDATE orders SET status = 'shipped' WHERE id = $1", "orders(id)");
    EXPECT("UPDATE shop.orders o SET status = $1 WHERE o.customer_id = $2 AND o.total > 100",
           "shop.orders(customer_id,total)");
    EXPECT("DELETE FROM sessions WHERE expires_at < now()", "sessions(expires_at)");
    EXPECT("DELETE FROM items i USING orders o WHERE i.order_id = o.id AND o.status = 'x'",
           "orders(status)", "items(order_id)", "orders(id)", "orders(id,status)");
    EXPECT_NONE("UPDATE orders SET status = 'x'");
}

static void test_insert_and_others_none(void **state)
{
    (void)state;
    EXPECT_NONE("INSERT INTO orders (customer_id) VALUES (1)");
    EXPECT_NONE("INSERT INTO orders SELECT * FROM old WHERE id = 1");
    EXPECT_NONE("SET search_path TO shop");
    EXPECT_NONE("CREATE TABLE t (a int)");
    EXPECT_NONE("SELECT * FROM t WHERE a = 1; SELECT * FROM u WHERE b = 2");
    EXPECT_NONE("SELECT 1");
}

static void test_unparsable_none(void **state)
{
    advisor_index out[2];

    (void)state;
    EXPECT_NONE("SELEC * FROM t WHERE a = 1");
    EXPECT_NONE("SELECT * FROM t WHERE a = 'unterminated");
    EXPECT_NONE("");
    assert_int_equal(advisor_candidates(NULL, out, 2), 0);
    assert_int_equal(advisor_candidates("SELECT * FROM t WHERE a = 1", NULL, 2), 0);
    assert_int_equal(advisor_candidates("SELECT * FROM t WHERE a = 1", out, 0), 0);
}

static void test_names_too_long(void **state)
{
    char sql[1024], name[80], want[256];
    advisor_index out[4];

    (void)state;
    /* PostgreSQL cuts identifiers to 63 bytes when it parses them, and so does libpg_query:
     * the candidate names the table the server knows */
    memset(name, 'a', 70);
    name[70] = '\0';
    snprintf(sql, sizeof(sql), "SELECT * FROM %s WHERE %s = $1", name, name);
    name[63] = '\0';
    snprintf(want, sizeof(want), "%s(%s)", name, name);
    EXPECT(sql, want);
    /* a predicate too long for a partial index leaves it out, never cut */
    memset(name, 'x', 79);
    name[79] = '\0';
    snprintf(sql, sizeof(sql), "SELECT * FROM t WHERE k = 'a' AND b = $1");
    EXPECT(sql, "t(k,b)", "t(b) WHERE k = 'a'");
    snprintf(sql, sizeof(sql), "SELECT * FROM t WHERE k = '%s%s%s%s' AND b = $1", name, name, name,
             name);
    assert_int_equal(advisor_candidates(sql, out, 4), 1);
    assert_string_equal(out[0].predicate, "");
}

static void test_partial_index_literals(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM t WHERE s = 'it''s' AND b = $1", "t(s,b)", "t(b) WHERE s = 'it''s'");
    EXPECT("SELECT * FROM t WHERE n = -1 AND b = $1", "t(n,b)", "t(b) WHERE n = -1");
    EXPECT("SELECT * FROM t WHERE n = 0 AND b = $1", "t(n,b)", "t(b) WHERE n = 0");
    EXPECT("SELECT * FROM t WHERE n = 42 AND b = $1", "t(n,b)", "t(b) WHERE n = 42");
    EXPECT("SELECT * FROM t WHERE n = 1.50 AND b = $1", "t(n,b)", "t(b) WHERE n = 1.50");
    EXPECT("SELECT * FROM t WHERE f = false AND b = $1", "t(f,b)", "t(b) WHERE f = false");
    EXPECT("SELECT * FROM t WHERE f = true AND b = $1", "t(f,b)", "t(b) WHERE f = true");
    /* names that are not plain lower-case words, or are keywords, are quoted */
    EXPECT("SELECT * FROM t WHERE \"Kind\" = 'a' AND b = $1", "t(Kind,b)",
           "t(b) WHERE \"Kind\" = 'a'");
    EXPECT("SELECT * FROM t WHERE \"order\" = 'a' AND b = $1", "t(order,b)",
           "t(b) WHERE \"order\" = 'a'");
    /* parameters and expressions make no partial index, nor does an equality alone */
    EXPECT("SELECT * FROM t WHERE s = $1 AND b = now()", "t(s,b)");
    EXPECT("SELECT * FROM t WHERE s = 'a'", "t(s)");
    /* one per constant equality */
    EXPECT("SELECT * FROM t WHERE s = 'a' AND k = 2", "t(s,k)", "t(k) WHERE s = 'a'",
           "t(s) WHERE k = 2");
}

static void test_dedupe_cap_and_max(void **state)
{
    advisor_index out[4];

    (void)state;
    EXPECT("SELECT * FROM t WHERE a = $1 AND a = $2", "t(a)");
    EXPECT("SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3 AND d = $4", "t(a,b,c)");
    EXPECT("SELECT * FROM t WHERE a = $1 UNION SELECT * FROM t WHERE a = $2", "t(a)");
    assert_int_equal(
        advisor_candidates("SELECT * FROM t WHERE s = 'a' AND k = 2 AND m = 3", out, 2), 2);
}

static void test_subqueries_read(void **state)
{
    (void)state;
    EXPECT("SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id)",
           "items(order_id)", "orders(id)");
    EXPECT("SELECT * FROM (SELECT * FROM t WHERE a = $1) s WHERE s.b = 2", "t(a)");
    EXPECT("WITH x AS (SELECT * FROM t WHERE a = $1) SELECT * FROM x JOIN u ON u.id = x.id",
           "t(a)");
    EXPECT("SELECT * FROM t WHERE a = $1 UNION ALL SELECT * FROM u WHERE b = $1", "t(a)", "u(b)");
    EXPECT("SELECT (SELECT count(*) FROM items WHERE items.order_id = orders.id) FROM orders",
           "items(order_id)", "orders(id)");
}

static void test_deep_nesting_refused(void **state)
{
    size_t n = 200000;
    char *sql = malloc(2 * n + 64), *p;
    advisor_index out[2];

    (void)state;
    assert_non_null(sql);
    p = sql + sprintf(sql, "SELECT * FROM t WHERE a = ");
    for (size_t i = 0; i < n; i++) {
        *p++ = '1';
        *p++ = '+';
    }
    strcpy(p, "1");
    /* libpg_query would overflow its stack writing this tree out: refused before parsing */
    assert_int_equal(advisor_candidates(sql, out, 2), 0);
    free(sql);
}

/* ---- DDL ---- */

static void test_ddl_quoting(void **state)
{
    advisor_index ix = index_of("shop", "orders", "status,created_at", "status = 'pending'");
    char out[512], small[16];

    (void)state;
    advisor_ddl(&ix, true, out, sizeof(out));
    assert_string_equal(out, "CREATE INDEX CONCURRENTLY ON \"shop\".\"orders\" (\"status\", "
                             "\"created_at\") WHERE status = 'pending'");
    ix = index_of("", "Odd\"Name", "a\"b", NULL);
    advisor_ddl(&ix, false, out, sizeof(out));
    assert_string_equal(out, "CREATE INDEX ON \"Odd\"\"Name\" (\"a\"\"b\")");
    advisor_ddl(&ix, false, small, sizeof(small));
    assert_string_equal(small, "CREATE INDEX ON");
    out[0] = 'x';
    advisor_ddl(&ix, false, out, 0);
    assert_int_equal(out[0], 'x');
    advisor_ddl(NULL, false, out, sizeof(out));
    assert_string_equal(out, "");
}

/* ---- coverage ---- */

static void test_covered_prefix_and_longer(void **state)
{
    advisor_index a = ix_on("orders", "customer_id"), ab = ix_on("orders", "customer_id,status");

    (void)state;
    assert_true(advisor_covered(&a, &ab));
    assert_true(advisor_covered(&ab, &ab));
    assert_false(advisor_covered(&ab, &a));
    advisor_index b = ix_on("orders", "status");
    assert_false(advisor_covered(&b, &ab));
    advisor_index other = ix_on("items", "customer_id,status");
    assert_false(advisor_covered(&a, &other));
}

static void test_covered_predicates(void **state)
{
    advisor_index partial = index_of("", "orders", "created_at", "status = 'pending'");
    advisor_index other = index_of("", "orders", "created_at", "status = 'paid'");
    advisor_index full = ix_on("orders", "created_at");

    (void)state;
    assert_true(advisor_covered(&partial, &partial));
    assert_true(advisor_covered(&partial, &full));
    assert_false(advisor_covered(&partial, &other));
    assert_false(advisor_covered(&full, &partial));
}

static void test_covered_schemas(void **state)
{
    advisor_index bare = ix_on("orders", "id");
    advisor_index shop = index_of("shop", "orders", "id", NULL);
    advisor_index pub = index_of("public", "orders", "id", NULL);

    (void)state;
    assert_true(advisor_covered(&bare, &shop));
    assert_true(advisor_covered(&shop, &bare));
    assert_true(advisor_covered(&shop, &shop));
    assert_false(advisor_covered(&shop, &pub));
    assert_false(advisor_covered(NULL, &pub));
}

/* ---- updated columns ---- */

static void test_updated_columns(void **state)
{
    char table[ADVISOR_NAME], cols[4][ADVISOR_NAME];

    (void)state;
    assert_int_equal(advisor_updated_columns("UPDATE orders SET status = $1, total = total + 1 "
                                             "WHERE id = $2",
                                             table, cols, 4),
                     2);
    assert_string_equal(table, "orders");
    assert_string_equal(cols[0], "status");
    assert_string_equal(cols[1], "total");
    assert_int_equal(
        advisor_updated_columns("UPDATE shop.t SET (a, b) = (1, 2), c[1] = 3", table, cols, 4), 3);
    assert_string_equal(table, "t");
    assert_string_equal(cols[2], "c");
    assert_int_equal(advisor_updated_columns("UPDATE t SET a = 1, b = 2, c = 3", table, cols, 2),
                     2);
    assert_int_equal(advisor_updated_columns("DELETE FROM t WHERE a = 1", table, cols, 4), 0);
    assert_string_equal(table, "t");
    assert_int_equal(advisor_updated_columns("INSERT INTO s.u (a) VALUES (1)", table, cols, 4), 0);
    assert_string_equal(table, "u");
    assert_int_equal(advisor_updated_columns("SELECT 1", table, cols, 4), -1);
    assert_int_equal(
        advisor_updated_columns("UPDATE t SET a = 1; UPDATE t SET b = 2", table, cols, 4), -1);
    assert_int_equal(advisor_updated_columns("UPDATE", table, cols, 4), -1);
    assert_int_equal(advisor_updated_columns(NULL, table, cols, 4), -1);
}

/* ---- consolidation ---- */

typedef struct {
    advisor_result r;
    advisor_trial t[8];
} result_box;

static void result_init(result_box *b, uint64_t fp, double cost_before, bool hypopg)
{
    memset(b, 0, sizeof(*b));
    b->r.fingerprint = fp;
    b->r.ok = true;
    b->r.hypopg = hypopg;
    b->r.cost_before = cost_before;
    b->r.trials = b->t;
}

static void add_trial(result_box *b, advisor_index ix, advisor_trial_outcome o, double after,
                      double size)
{
    b->t[b->r.n_trials++] = (advisor_trial){ix, o, after, size};
}

static int consolidate(result_box *boxes, size_t n, const advisor_shape *shapes, size_t n_shapes,
                       const advisor_table_writes *w, size_t n_w, advisor_suggestion *out, int max)
{
    const advisor_result *rs[16];

    for (size_t i = 0; i < n; i++)
        rs[i] = &boxes[i].r;
    return advisor_consolidate(rs, n, shapes, n_shapes, w, n_w, out, max);
}

static void test_consolidate_shared_prefix(void **state)
{
    result_box b[2];
    advisor_shape shapes[] = {{1, 1000}, {2, 500}};
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("orders", "customer_id"), ADVISOR_TRIAL_USED, 10, 8192);
    result_init(&b[1], 2, 200, true);
    add_trial(&b[1], ix_on("orders", "customer_id,status"), ADVISOR_TRIAL_USED, 50, 16384);
    assert_int_equal(consolidate(b, 2, shapes, 2, NULL, 0, out, 4), 1);
    assert_true(out[0].verified);
    assert_int_equal(out[0].index.n_columns, 2);
    assert_string_equal(out[0].index.columns[1], "status");
    /* 1000 x 0.9 + 500 x 0.75 */
    assert_float_equal(out[0].benefit_ms, 1275, 1e-9);
    assert_float_equal(out[0].cost_before, 300, 1e-9);
    assert_float_equal(out[0].cost_after, 60, 1e-9);
    assert_float_equal(out[0].size_bytes, 16384, 1e-9);
    assert_int_equal(out[0].n_statements, 2);
    assert_true(out[0].statements[0] == 1 && out[0].statements[1] == 2);
    assert_string_equal(out[0].ddl, "CREATE INDEX CONCURRENTLY ON \"orders\" (\"customer_id\", "
                                    "\"status\")");
}

static void test_consolidate_best_trial_per_statement(void **state)
{
    result_box b[2];
    advisor_shape shapes[] = {{7, 100}};
    advisor_suggestion out[2];

    (void)state;
    /* two samples of one statement: the better trial counts, once */
    result_init(&b[0], 7, 100, true);
    add_trial(&b[0], ix_on("t", "a"), ADVISOR_TRIAL_USED, 50, 100);
    result_init(&b[1], 7, 100, true);
    add_trial(&b[1], ix_on("t", "a"), ADVISOR_TRIAL_USED, 20, 300);
    assert_int_equal(consolidate(b, 2, shapes, 1, NULL, 0, out, 2), 1);
    assert_float_equal(out[0].benefit_ms, 80, 1e-9);
    assert_float_equal(out[0].cost_before, 100, 1e-9);
    assert_float_equal(out[0].cost_after, 20, 1e-9);
    assert_float_equal(out[0].size_bytes, 300, 1e-9);
    assert_int_equal(out[0].n_statements, 1);
}

static void test_consolidate_greedy_by_benefit(void **state)
{
    result_box b[3];
    advisor_shape shapes[] = {{1, 10}, {2, 1000}, {3, 100}};
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("a", "x"), ADVISOR_TRIAL_USED, 10, 1);
    result_init(&b[1], 2, 100, true);
    add_trial(&b[1], ix_on("b", "y"), ADVISOR_TRIAL_USED, 50, 1);
    result_init(&b[2], 3, 100, true);
    add_trial(&b[2], ix_on("c", "z"), ADVISOR_TRIAL_USED, 10, 1);
    /* no shape for a statement: weight 0, still suggested, last */
    assert_int_equal(consolidate(b, 3, shapes, 2, NULL, 0, out, 4), 3);
    assert_string_equal(out[0].index.table, "b");
    assert_float_equal(out[0].benefit_ms, 500, 1e-9);
    assert_string_equal(out[1].index.table, "a");
    assert_float_equal(out[1].benefit_ms, 9, 1e-9);
    assert_string_equal(out[2].index.table, "c");
    assert_float_equal(out[2].benefit_ms, 0, 1e-9);
}

static void test_consolidate_tie_fewer_columns(void **state)
{
    result_box b[1];
    advisor_shape shapes[] = {{1, 10}};
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("t", "a,b"), ADVISOR_TRIAL_USED, 10, 1);
    add_trial(&b[0], ix_on("t", "a"), ADVISOR_TRIAL_USED, 10, 1);
    assert_int_equal(consolidate(b, 1, shapes, 1, NULL, 0, out, 4), 1);
    assert_int_equal(out[0].index.n_columns, 1);
}

static void test_consolidate_covered_never_suggested(void **state)
{
    result_box b[2];
    advisor_shape shapes[] = {{1, 10}, {2, 10}};
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("t", "a"), ADVISOR_TRIAL_COVERED, -1, -1);
    result_init(&b[1], 2, 100, true);
    add_trial(&b[1], ix_on("t", "a"), ADVISOR_TRIAL_USED, 10, 1);
    add_trial(&b[1], ix_on("t", "a,b"), ADVISOR_TRIAL_USED, 40, 1);
    /* t(a) already exists: t(a,b) is what is left to suggest; served by it, both trials count
     * for statement 2, the better one wins */
    assert_int_equal(consolidate(b, 2, shapes, 2, NULL, 0, out, 4), 1);
    assert_int_equal(out[0].index.n_columns, 2);
    assert_float_equal(out[0].benefit_ms, 9, 1e-9);
}

static void test_consolidate_unused_not_suggested(void **state)
{
    result_box b[1];
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("t", "a"), ADVISOR_TRIAL_UNUSED, 100, 1);
    add_trial(&b[0], ix_on("t", "b"), ADVISOR_TRIAL_UNUSED, 95, 1);
    assert_int_equal(consolidate(b, 1, NULL, 0, NULL, 0, out, 4), 0);
    /* nor anything from a result that learnt nothing */
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("t", "a"), ADVISOR_TRIAL_USED, 10, 1);
    b[0].r.ok = false;
    assert_int_equal(consolidate(b, 1, NULL, 0, NULL, 0, out, 4), 0);
}

static void test_consolidate_unverified_ranked_by_weight(void **state)
{
    result_box b[4];
    advisor_shape shapes[] = {{1, 10}, {2, 300}, {3, 200}, {4, 1000}};
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, false);
    add_trial(&b[0], ix_on("u", "a"), ADVISOR_TRIAL_UNVERIFIED, -1, -1);
    result_init(&b[1], 2, 100, false);
    add_trial(&b[1], ix_on("v", "k"), ADVISOR_TRIAL_UNVERIFIED, -1, -1);
    result_init(&b[2], 3, 100, false);
    add_trial(&b[2], ix_on("u", "a,b"), ADVISOR_TRIAL_UNVERIFIED, -1, -1);
    result_init(&b[3], 4, 100, true);
    add_trial(&b[3], ix_on("w", "z"), ADVISOR_TRIAL_USED, 90, 1);
    /* verified first whatever the weights; then u(a,b) serves 1 and 3 (210) after v(k) (300) */
    assert_int_equal(consolidate(b, 4, shapes, 4, NULL, 0, out, 4), 3);
    assert_string_equal(out[0].index.table, "w");
    assert_true(out[0].verified);
    assert_string_equal(out[1].index.table, "v");
    assert_false(out[1].verified);
    assert_float_equal(out[1].benefit_ms, -1, 0);
    assert_float_equal(out[1].cost_before, -1, 0);
    assert_float_equal(out[1].cost_after, -1, 0);
    assert_float_equal(out[1].size_bytes, -1, 0);
    assert_string_equal(out[2].index.table, "u");
    assert_int_equal(out[2].index.n_columns, 2);
    assert_int_equal(out[2].n_statements, 2);
    assert_true(out[2].statements[0] == 3 && out[2].statements[1] == 1);
}

static void test_consolidate_writes_and_hot(void **state)
{
    result_box b[2];
    advisor_table_writes w[2];
    advisor_suggestion out[4];

    (void)state;
    memset(w, 0, sizeof(w));
    snprintf(w[0].table, sizeof(w[0].table), "orders");
    w[0].inserts = 10;
    w[0].updates = 5;
    w[0].deletes = 1;
    w[0].n_updated = 1;
    snprintf(w[0].updated[0], ADVISOR_NAME, "status");
    snprintf(w[1].table, sizeof(w[1].table), "items");
    w[1].updates = 7;
    w[1].n_updated = 1;
    snprintf(w[1].updated[0], ADVISOR_NAME, "qty");
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("orders", "customer_id"), ADVISOR_TRIAL_USED, 10, 1);
    add_trial(&b[0], index_of("", "orders", "created_at", "status = 'pending'"), ADVISOR_TRIAL_USED,
              5, 1);
    result_init(&b[1], 2, 100, true);
    add_trial(&b[1], ix_on("items", "order_id"), ADVISOR_TRIAL_USED, 10, 1);
    add_trial(&b[1], ix_on("orders", "status"), ADVISOR_TRIAL_USED, 20, 1);
    advisor_shape shapes[] = {{1, 10}, {2, 100}};
    /* statement 2 joins items and orders: an index on each side (served per table) */
    assert_int_equal(consolidate(b, 2, shapes, 2, w, 2, out, 4), 3);
    /* items(order_id): 100 x 0.9 */
    assert_string_equal(out[0].index.table, "items");
    assert_int_equal(out[0].write_statements, 7);
    assert_false(out[0].breaks_hot);
    /* orders(status): 100 x 0.8; UPDATEs set status */
    assert_string_equal(out[1].index.columns[0], "status");
    assert_int_equal(out[1].write_statements, 16);
    assert_true(out[1].breaks_hot);
    /* the partial index: its predicate's column is updated */
    assert_string_equal(out[2].index.predicate, "status = 'pending'");
    assert_int_equal(out[2].write_statements, 16);
    assert_true(out[2].breaks_hot);
}

static void test_consolidate_hot_by_index_column(void **state)
{
    result_box b[1];
    advisor_table_writes w;
    advisor_suggestion out[2];

    (void)state;
    memset(&w, 0, sizeof(w));
    snprintf(w.table, sizeof(w.table), "orders");
    w.updates = 3;
    w.n_updated = 2;
    snprintf(w.updated[0], ADVISOR_NAME, "note");
    snprintf(w.updated[1], ADVISOR_NAME, "status");
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("orders", "customer_id,status"), ADVISOR_TRIAL_USED, 10, 1);
    assert_int_equal(consolidate(b, 1, NULL, 0, &w, 1, out, 2), 1);
    assert_true(out[0].breaks_hot);
    assert_int_equal(out[0].write_statements, 3);
    snprintf(w.updated[1], ADVISOR_NAME, "total");
    assert_int_equal(consolidate(b, 1, NULL, 0, &w, 1, out, 2), 1);
    assert_false(out[0].breaks_hot);
}

static void test_consolidate_misestimate(void **state)
{
    result_box b[3];
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("a", "x"), ADVISOR_TRIAL_USED, 10, 1);
    result_init(&b[1], 2, 100, true);
    add_trial(&b[1], ix_on("b", "y"), ADVISOR_TRIAL_USED, 10, 1);
    result_init(&b[2], 2, 100, true); /* another sample of statement 2 */
    b[2].r.misestimate = true;
    assert_int_equal(consolidate(b, 3, NULL, 0, NULL, 0, out, 4), 2);
    assert_false(out[0].misestimate);
    assert_true(out[1].misestimate);
}

static void test_consolidate_max_respected(void **state)
{
    result_box b[1];
    advisor_suggestion out[4];

    (void)state;
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("a", "x"), ADVISOR_TRIAL_USED, 10, 1);
    result_init(&b[0], 1, 100, true);
    for (int i = 0; i < 4; i++) {
        char table[8];
        snprintf(table, sizeof(table), "t%d", i);
        add_trial(&b[0], ix_on(table, "x"), ADVISOR_TRIAL_USED, 10 + i, 1);
    }
    /* one statement reading four tables: an index on each, the most useful first */
    assert_int_equal(consolidate(b, 1, NULL, 0, NULL, 0, out, 4), 4);
    assert_string_equal(out[0].index.table, "t0");
    assert_int_equal(consolidate(b, 1, NULL, 0, NULL, 0, out, 2), 2);

    result_box many[5];
    advisor_shape shapes[5];
    for (int i = 0; i < 5; i++) {
        char table[8];
        snprintf(table, sizeof(table), "t%d", i);
        result_init(&many[i], (uint64_t)i + 1, 100, true);
        add_trial(&many[i], ix_on(table, "x"), ADVISOR_TRIAL_USED, 10, 1);
        shapes[i] = (advisor_shape){(uint64_t)i + 1, (double)(i + 1)};
    }
    assert_int_equal(consolidate(many, 5, shapes, 5, NULL, 0, out, 2), 2);
    assert_string_equal(out[0].index.table, "t4");
    assert_string_equal(out[1].index.table, "t3");
}

/* The weights of test_consolidate_statements_listed: 0..6, over and over. */
static int weight_of(uint64_t fingerprint)
{
    return (int)((fingerprint - 1) % 7);
}

static void test_consolidate_statements_listed(void **state)
{
    result_box b[16];
    advisor_shape shapes[20];
    advisor_suggestion out[2];
    const advisor_result *rs[20];
    result_box more[4];

    (void)state;
    for (int i = 0; i < 20; i++) {
        result_box *box = i < 16 ? &b[i] : &more[i - 16];
        result_init(box, (uint64_t)i + 1, 100, true);
        add_trial(box, ix_on("t", "a"), ADVISOR_TRIAL_USED, 50, 1);
        shapes[i] = (advisor_shape){(uint64_t)i + 1, weight_of((uint64_t)i + 1)};
        rs[i] = &box->r;
    }
    assert_int_equal(advisor_consolidate(rs, 20, shapes, 20, NULL, 0, out, 2), 1);
    assert_int_equal(out[0].n_statements, 16);
    for (int i = 1; i < 16; i++)
        assert_true(weight_of(out[0].statements[i - 1]) >= weight_of(out[0].statements[i]));
    assert_true(out[0].statements[0] == 7); /* weight 6, first seen */
}

static void test_consolidate_empty(void **state)
{
    advisor_suggestion out[2];
    const advisor_result *none[1] = {NULL};

    (void)state;
    assert_int_equal(advisor_consolidate(NULL, 0, NULL, 0, NULL, 0, out, 2), 0);
    assert_int_equal(advisor_consolidate(none, 1, NULL, 0, NULL, 0, out, 2), 0);
    assert_int_equal(advisor_consolidate(none, 0, NULL, 0, NULL, 0, NULL, 2), 0);
    result_box b[1];
    result_init(&b[0], 1, 100, true);
    add_trial(&b[0], ix_on("a", "x"), ADVISOR_TRIAL_USED, 10, 1);
    assert_int_equal(consolidate(b, 1, NULL, 0, NULL, 0, out, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acceptance_equality_parameter),
        cmocka_unit_test(test_acceptance_order_by_limit),
        cmocka_unit_test(test_acceptance_two_equalities),
        cmocka_unit_test(test_alias_and_qualified_resolution),
        cmocka_unit_test(test_join_keys_on_both_sides),
        cmocka_unit_test(test_join_key_with_its_table_columns),
        cmocka_unit_test(test_or_conjunct_ignored),
        cmocka_unit_test(test_in_and_any),
        cmocka_unit_test(test_between_and_ranges),
        cmocka_unit_test(test_typecast),
        cmocka_unit_test(test_no_limit_no_sort_columns),
        cmocka_unit_test(test_sort_columns_of_two_tables_none),
        cmocka_unit_test(test_update_delete_where),
        cmocka_unit_test(test_insert_and_others_none),
        cmocka_unit_test(test_unparsable_none),
        cmocka_unit_test(test_names_too_long),
        cmocka_unit_test(test_partial_index_literals),
        cmocka_unit_test(test_dedupe_cap_and_max),
        cmocka_unit_test(test_subqueries_read),
        cmocka_unit_test(test_deep_nesting_refused),
        cmocka_unit_test(test_ddl_quoting),
        cmocka_unit_test(test_covered_prefix_and_longer),
        cmocka_unit_test(test_covered_predicates),
        cmocka_unit_test(test_covered_schemas),
        cmocka_unit_test(test_updated_columns),
        cmocka_unit_test(test_consolidate_shared_prefix),
        cmocka_unit_test(test_consolidate_best_trial_per_statement),
        cmocka_unit_test(test_consolidate_greedy_by_benefit),
        cmocka_unit_test(test_consolidate_tie_fewer_columns),
        cmocka_unit_test(test_consolidate_covered_never_suggested),
        cmocka_unit_test(test_consolidate_unused_not_suggested),
        cmocka_unit_test(test_consolidate_unverified_ranked_by_weight),
        cmocka_unit_test(test_consolidate_writes_and_hot),
        cmocka_unit_test(test_consolidate_hot_by_index_column),
        cmocka_unit_test(test_consolidate_misestimate),
        cmocka_unit_test(test_consolidate_max_respected),
        cmocka_unit_test(test_consolidate_statements_listed),
        cmocka_unit_test(test_consolidate_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
