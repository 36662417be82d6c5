/* Unit tests for the text of the N+1 fixes (the batched query, the JOIN and the LATERAL join)
 * on texts at the edges: ones libpg_query rejects (fallback texts), quotes of every kind, long
 * names. Whatever the text, the fix is written whole or not at all, and never overflows. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/nplusone.h"

#define LOOP 20

typedef struct got {
    np1_finding *f[8];
    int n;
} got;

static void collect(np1_finding *f, void *arg)
{
    got *g = arg;

    if (g->n < 8)
        g->f[g->n++] = f;
}

static uint32_t hash_of(int v)
{
    return (uint32_t)v * 2654435761u + 1;
}

/* One statement of connection 1, at *now; values and columns as given. */
static void send(np1_detector *d, int64_t *now, uint64_t fp, const char *text, const char *table,
                 const uint32_t *params, int n_params, const np1_column *cols, int n_cols,
                 const uint32_t *values, int rows)
{
    np1_stmt st;

    memset(&st, 0, sizeof st);
    st.conn_id = 1;
    st.start_us = *now;
    st.end_us = *now + 1000;
    st.fingerprint = fp;
    st.query = text;
    st.is_select = true;
    st.txn_status = 'I';
    st.application_name = "app";
    st.tags = "";
    st.table = table;
    st.params = params;
    st.n_params = (uint16_t)n_params;
    st.columns = cols;
    st.n_columns = (uint16_t)n_cols;
    st.values = values;
    st.rows = (uint32_t)rows;
    np1_statement(d, &st);
    *now = st.end_us + 100;
}

/* A parent returning LOOP rows whose column col_name holds 300..319, then the child once per
 * row with that value as $1 (and a constant $2 when two_params): the suggestion written. The
 * caller frees the detector. */
static np1_finding *loop_of(np1_detector **d, const char *parent, const char *parent_table,
                            const char *child, const char *child_table, const char *col_name)
{
    np1_settings s;
    np1_column col;
    uint32_t values[LOOP];
    int64_t now = 1700000000000000LL;
    got g;

    np1_settings_default(&s);
    *d = np1_new(&s);
    assert_non_null(*d);
    memset(&col, 0, sizeof col);
    col.table_oid = 16385;
    col.attnum = 2;
    snprintf(col.name, sizeof col.name, "%s", col_name);
    for (int i = 0; i < LOOP; i++)
        values[i] = hash_of(300 + i);
    send(*d, &now, 0xA00000000000000AULL, parent, parent_table, NULL, 0, &col, 1, values, LOOP);
    for (int i = 0; i < LOOP; i++) {
        uint32_t p[2] = {hash_of(300 + i), hash_of(1)};
        send(*d, &now, 0xB00000000000000BULL, child, child_table, p, 2, NULL, 0, NULL, 0);
    }
    np1_tick(*d, now + 10 * 1000 * 1000);
    memset(&g, 0, sizeof g);
    np1_take_dirty(*d, true, collect, &g);
    assert_int_equal(g.n, 1);
    assert_non_null(g.f[0]->suggestion);
    return g.f[0];
}

static void contains(const char *haystack, const char *needle)
{
    if (haystack == NULL || strstr(haystack, needle) == NULL)
        fail_msg("[%s] not in:\n%s", needle, haystack ? haystack : "(null)");
}

/* ---- the batched query ---- */

/* A text the server rejects (the fallback text of a failing statement): the word after $1 in
 * IN ($1 is LIMIT. The batched query used to be cut from after LIMIT back to before it: a
 * length below zero, a copy of the whole address space. No one comparison: the advice in words. */
static void test_batched_in_followed_by_limit(void **state)
{
    np1_detector *d;
    np1_finding *f =
        loop_of(&d, "SELECT id, cid FROM orders WHERE status = $2", "orders",
                "SELECT * FROM customers WHERE id IN ($1 LIMIT $2", "customers", "cid");

    (void)state;
    contains(f->suggestion, "SELECT * FROM customers WHERE id IN ($1 LIMIT $2\n"
                            "   Compare its parameter $1 with = ANY($1) instead");
    np1_free(d);
}

/* A text cut short after IN ($1, as kept texts may be. */
static void test_batched_at_the_end(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d, "SELECT id, cid FROM orders WHERE status = $2", "orders",
                             "SELECT * FROM customers WHERE id IN ($1", "customers", "cid");

    (void)state;
    contains(f->suggestion, "Compare its parameter $1 with = ANY($1) instead");
    np1_free(d);
}

/* IN ($1, $2): not one value per execution, nothing to rewrite into = ANY($1). */
static void test_batched_in_list(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d, "SELECT id, cid FROM orders WHERE status = $3", "orders",
                             "SELECT * FROM customers WHERE id IN ($1, $2)", "customers", "cid");

    (void)state;
    assert_null(strstr(f->suggestion, "ANY($1) $2"));
    contains(f->suggestion, "Compare its parameter $1 with = ANY($1) instead");
    np1_free(d);
}

/* The final LIMIT after IN ($1) is found at the depth of the comparison, and left out. */
static void test_batched_in_drops_the_limit(void **state)
{
    np1_detector *d;
    np1_finding *f =
        loop_of(&d, "SELECT id, cid FROM orders WHERE status = $2", "orders",
                "SELECT * FROM customers WHERE id IN ($1) LIMIT $2", "customers", "cid");

    (void)state;
    contains(f->suggestion, "SELECT * FROM customers WHERE id = ANY($1)\n");
    contains(f->suggestion, "final LIMIT is left out");
    np1_free(d);
}

/* Quotes of every kind around the comparison are copied as they are, however many. */
static void test_batched_keeps_quotes(void **state)
{
    static const char head[] = "SELECT * FROM customers WHERE id = $1 AND note = '";
    size_t n = 10000;
    char *child = malloc(sizeof head + n + 1);
    np1_detector *d;

    (void)state;
    assert_non_null(child);
    memcpy(child, head, sizeof head - 1);
    memset(child + sizeof head - 1, '\'', n);
    strcpy(child + sizeof head - 1 + n, "'");
    np1_finding *f = loop_of(&d, "SELECT id, cid FROM orders WHERE status = $2", "orders", child,
                             "customers", "cid");
    /* normalized texts are kept up to 8 kB: what is kept is batched */
    contains(f->suggestion, "SELECT * FROM customers WHERE id = ANY($1) AND note = ''''");
    np1_free(d);
    free(child);
}

/* ---- the JOIN ---- */

/* The parent column's name is quoted, every quote doubled: 63 quotes make 128 bytes. */
static void test_join_with_a_name_of_quotes(void **state)
{
    char name[64], want[200];
    np1_detector *d;

    (void)state;
    memset(name, '"', 63);
    name[63] = '\0';
    np1_finding *f = loop_of(&d, "SELECT id, x FROM orders WHERE status = $2", "orders",
                             "SELECT * FROM customers WHERE id = $1", "customers", name);
    snprintf(want, sizeof want, "ON c1.id = p.\"");
    memset(want + strlen(want), '"', 126);
    strcpy(want + strlen("ON c1.id = p.\"") + 126, "\"");
    contains(f->suggestion, want);
    np1_free(d);
}

/* A child column quoted past what a name can hold: joined as a LATERAL subquery, never cut. */
static void test_join_with_a_long_quoted_child_column(void **state)
{
    char child[512], col[300];
    np1_detector *d;

    (void)state;
    col[0] = '"';
    memset(col + 1, 'q', 200);
    strcpy(col + 201, "\"");
    snprintf(child, sizeof child, "SELECT * FROM customers WHERE %s = $1", col);
    np1_finding *f = loop_of(&d, "SELECT id, cid FROM orders WHERE status = $2", "orders", child,
                             "customers", "cid");
    contains(f->suggestion, "LEFT JOIN LATERAL (SELECT * FROM customers WHERE ");
    contains(f->suggestion, "\" = p.cid) c1 ON true");
    assert_null(strstr(f->suggestion, "ON c1.\"qqq"));
    np1_free(d);
}

/* A quoted alias qualifies the parent's columns as a bare one does: "O".status is p.status. */
static void test_join_with_a_quoted_alias(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d,
                             "SELECT \"O\".id, \"O\".cid FROM orders AS \"O\" WHERE \"O\".status = "
                             "$2 ORDER BY \"O\".id",
                             "orders", "SELECT * FROM customers WHERE id = $1", "customers", "cid");

    (void)state;
    contains(f->suggestion, "FROM orders p LEFT JOIN customers c1 ON c1.id = p.cid WHERE "
                            "p.status = $2 ORDER BY p.id\n");
    np1_free(d);
}

/* An alias too long to hold whole is never cut: the parent is joined as a subquery. */
static void test_join_with_a_long_alias(void **state)
{
    char parent[1024], alias[300];
    np1_detector *d;

    (void)state;
    alias[0] = '"';
    memset(alias + 1, 'q', 200);
    strcpy(alias + 201, "\"");
    snprintf(parent, sizeof parent, "SELECT %s.id, %s.cid FROM orders %s WHERE %s.status = $2",
             alias, alias, alias, alias);
    np1_finding *f =
        loop_of(&d, parent, "orders", "SELECT * FROM customers WHERE id = $1", "customers", "cid");
    contains(f->suggestion, "SELECT p.*, c1.* FROM (SELECT \"qqq");
    contains(f->suggestion, ".status = $2) p LEFT JOIN customers c1 ON c1.id = p.cid\n");
    np1_free(d);
}

/* LATERAL: every $1 replaced by the parent's column, quotes around it untouched. */
static void test_lateral_replaces_every_parameter(void **state)
{
    np1_detector *d;
    np1_finding *f =
        loop_of(&d, "SELECT o.id, o.cid FROM orders o JOIN s ON s.id = o.sid WHERE s.r = $2", "",
                "SELECT * FROM c JOIN a ON a.id = c.a WHERE c.id = $1 OR c.k = '$1''' OR "
                "c.j = $1",
                "", "cid");

    (void)state;
    contains(f->suggestion, "WHERE c.id = p.cid OR c.k = '$1''' OR c.j = p.cid) c1 ON true");
    np1_free(d);
}

/* ---- the forms ORMs write ---- */

/* SQLAlchemy's lazy load compares the other way round: $1 = books.author_id. Batched as
 * books.author_id = ANY($1); its labels make the parent join as a subquery; the ORM named. */
static void test_reversed_comparison_and_sqlalchemy(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(
        &d, "SELECT authors.id AS authors_id, authors.name AS authors_name FROM authors", "authors",
        "SELECT books.id AS books_id, books.author_id AS books_author_id FROM books "
        "WHERE $1 = books.author_id ORDER BY books.id",
        "books", "authors_id");

    (void)state;
    assert_string_equal(f->orm, "sqlalchemy");
    contains(f->suggestion, "FROM books WHERE books.author_id = ANY($1) ORDER BY books.id\n");
    contains(f->suggestion, "FROM (SELECT authors.id AS authors_id, authors.name AS authors_name "
                            "FROM authors) p LEFT JOIN LATERAL (SELECT books.id AS books_id, "
                            "books.author_id AS books_author_id FROM books WHERE p.authors_id = "
                            "books.author_id ORDER BY books.id) c1 ON true");
    contains(f->suggestion, "select(Author).options(selectinload(Author.books))");
    np1_free(d);
}

/* Sequelize: a trailing ';', quoted model aliases; the fix joins the child laterally (its alias
 * qualifies its columns) and names the models. */
static void test_sequelize_texts(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d,
                             "SELECT \"id\", \"title\", \"AuthorId\" FROM \"Books\" AS \"Book\" "
                             "WHERE \"Book\".\"shelf\" = $1 ORDER BY \"Book\".\"id\" ASC;",
                             "Books",
                             "SELECT \"id\", \"name\" FROM \"Authors\" AS \"Author\" WHERE "
                             "\"Author\".\"id\" = $1;",
                             "Authors", "AuthorId");

    (void)state;
    assert_string_equal(f->orm, "sequelize");
    assert_null(strchr(f->parent_query, ';'));
    assert_null(strchr(f->child_query[0], ';'));
    contains(f->suggestion, "LEFT JOIN LATERAL (SELECT \"id\", \"name\" FROM \"Authors\" AS "
                            "\"Author\" WHERE \"Author\".\"id\" = p.\"AuthorId\") c1 ON true");
    contains(f->suggestion, "Sequelize: load it with the rows: Book.findAll({ include: Author })");
    np1_free(d);
}

/* Django: "app_model"."col" throughout; belongs-to gives select_related with the field name. */
static void test_django_texts(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d,
                             "SELECT \"library_book\".\"id\", \"library_book\".\"author_id\" FROM "
                             "\"library_book\" ORDER BY \"library_book\".\"id\" ASC",
                             "library_book",
                             "SELECT \"library_author\".\"id\", \"library_author\".\"name\" FROM "
                             "\"library_author\" WHERE \"library_author\".\"id\" = $1 LIMIT 21",
                             "library_author", "author_id");

    (void)state;
    assert_string_equal(f->orm, "django");
    contains(f->suggestion, "Django: load it with the rows: "
                            "Book.objects.select_related(\"author\").");
    np1_free(d);
}

/* Hand-written SQL names no ORM: the generic list. */
static void test_no_orm(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d, "SELECT id, customer_id FROM orders", "orders",
                             "SELECT * FROM customers WHERE id = $1", "customers", "customer_id");

    (void)state;
    assert_string_equal(f->orm, "");
    contains(f->suggestion, "With an ORM, load the association eagerly");
    np1_free(d);
}

/* The fix's statements are handed out for checking; one the server rejects is left out and the
 * fix says why, the other stays. */
static void test_rejected_statement_left_out(void **state)
{
    np1_detector *d;
    np1_finding *f = loop_of(&d, "SELECT id, customer_id FROM orders", "orders",
                             "SELECT * FROM customers WHERE id = $1", "customers", "customer_id");
    char *sql[4];

    (void)state;
    int n = np1_fix_sql(f, sql, 4);
    assert_int_equal(n, 2);
    assert_string_equal(sql[0], "SELECT * FROM customers WHERE id = ANY($1)");
    contains(sql[1], "SELECT p.*, c1.* FROM orders p LEFT JOIN customers c1");
    f->dirty = false;
    np1_fix_rejected(d, f, sql[1], "column reference \"id\" is ambiguous");
    assert_true(f->dirty);
    contains(f->suggestion, "(not shown: the server rejected the JOIN pgscope wrote for this "
                            "loop: column reference \"id\" is ambiguous)");
    assert_null(strstr(f->suggestion, "SELECT p.*"));
    contains(f->suggestion, "SELECT * FROM customers WHERE id = ANY($1)");
    for (int i = 0; i < n; i++)
        free(sql[i]);
    np1_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_in_followed_by_limit),
        cmocka_unit_test(test_batched_at_the_end),
        cmocka_unit_test(test_batched_in_list),
        cmocka_unit_test(test_batched_in_drops_the_limit),
        cmocka_unit_test(test_batched_keeps_quotes),
        cmocka_unit_test(test_join_with_a_name_of_quotes),
        cmocka_unit_test(test_join_with_a_long_quoted_child_column),
        cmocka_unit_test(test_join_with_a_quoted_alias),
        cmocka_unit_test(test_join_with_a_long_alias),
        cmocka_unit_test(test_lateral_replaces_every_parameter),
        cmocka_unit_test(test_reversed_comparison_and_sqlalchemy),
        cmocka_unit_test(test_sequelize_texts),
        cmocka_unit_test(test_django_texts),
        cmocka_unit_test(test_no_orm),
        cmocka_unit_test(test_rejected_statement_left_out),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
