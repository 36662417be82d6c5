/* Unit tests for the N+1 detector, fed synthetic statements with value hashes of their own. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/fingerprint.h"
#include "pgscope/nplusone.h"

/* ---- the simulated connection ---- */

/* FNV-1a; never 0, which stands for NULL. */
static uint32_t vh(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h ? h : 1;
}

typedef struct query {
    uint64_t fp;
    const char *text; /* normalized */
    const char *table;
} query;

static const query ORDERS = {0x1000000000000001ULL,
                             "SELECT id, customer_id, address_id, status FROM orders "
                             "WHERE status = $1",
                             "orders"};
static const query CUSTOMER = {0x2000000000000002ULL, "SELECT * FROM customers WHERE id = $1",
                               "customers"};
static const query ADDRESS = {0x3000000000000003ULL, "SELECT * FROM addresses WHERE id = $1",
                              "addresses"};
static const query COUNT = {0x4000000000000004ULL, "SELECT count(*) FROM orders", "orders"};
static const query SETTING = {0x5000000000000005ULL, "SELECT value FROM settings WHERE k = $1",
                              "settings"};

#define MAX_ROWS 200
#define MAX_COLS 6

typedef struct result {
    np1_column cols[MAX_COLS];
    int n_cols;
    uint32_t vals[MAX_ROWS * MAX_COLS];
    int rows;
} result;

typedef struct sim {
    np1_settings s;
    np1_detector *d;
    int64_t now;
    uint64_t conn;
    const char *app, *tags;
    char status;      /* ReadyForQuery status reported after each statement */
    int64_t dur_us;   /* each statement's duration */
    int64_t pause_us; /* between statements */
    bool ignored;
    bool failed;
} sim;

static void sim_init(sim *m)
{
    memset(m, 0, sizeof *m);
    np1_settings_default(&m->s);
    m->now = 1700000000000000LL;
    m->conn = 1;
    m->app = "app";
    m->tags = "";
    m->status = 'I';
    m->dur_us = 1000;
    m->pause_us = 100;
}

static void sim_start(sim *m)
{
    m->d = np1_new(&m->s);
    assert_non_null(m->d);
}

static void columns(result *r, uint32_t oid, int n, ...)
{
    va_list ap;

    memset(r, 0, sizeof *r);
    r->n_cols = n;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        r->cols[i].table_oid = oid;
        r->cols[i].attnum = (int16_t)(i + 1);
        snprintf(r->cols[i].name, sizeof r->cols[i].name, "%s", va_arg(ap, const char *));
    }
    va_end(ap);
}

/* One row of texts (NULL for a NULL). */
static void row(result *r, const char *const *texts)
{
    for (int i = 0; i < r->n_cols; i++)
        r->vals[r->rows * r->n_cols + i] = texts[i] ? vh(texts[i]) : 0;
    r->rows++;
}

static void send(sim *m, const query *q, const char *const *params, int n, const result *res)
{
    uint32_t hashes[8];
    np1_stmt st;

    for (int i = 0; i < n; i++)
        hashes[i] = params[i] ? vh(params[i]) : 0;
    memset(&st, 0, sizeof st);
    st.conn_id = m->conn;
    st.start_us = m->now;
    st.end_us = m->now + m->dur_us;
    st.fingerprint = q->fp;
    st.query = q->text;
    st.is_select = strncmp(q->text, "SELECT", 6) == 0;
    st.is_insert = strncmp(q->text, "INSERT", 6) == 0;
    st.rows_affected = st.is_insert ? 1 : -1;
    st.failed = m->failed;
    st.txn_status = m->status;
    st.application_name = m->app;
    st.tags = m->tags;
    st.ignored = m->ignored;
    st.table = q->table;
    st.params = n ? hashes : NULL;
    st.param_text = n ? params : NULL;
    st.n_params = (uint16_t)n;
    if (res != NULL && !m->failed) {
        st.columns = res->cols;
        st.n_columns = (uint16_t)res->n_cols;
        st.values = res->vals;
        st.rows = (uint32_t)res->rows;
    }
    np1_statement(m->d, &st);
    m->now = st.end_us + m->pause_us;
}

static void send1(sim *m, const query *q, const char *param, const result *res)
{
    const char *p[1] = {param};

    send(m, q, p, param ? 1 : 0, res);
}

/* ---- the orders scenario ---- */

/* Order i: id 1 + i, customer 1 + 7i mod 30 (ids and customer ids overlap on purpose), address
 * 5000 + i. */
static int customer_of(int i)
{
    return 1 + (i * 7) % 30;
}

static void send_orders(sim *m, int n)
{
    static result r;
    char id[16], cust[16], addr[16];
    const char *cells[4] = {id, cust, addr, "open"};

    columns(&r, 16385, 4, "id", "customer_id", "address_id", "status");
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%d", 1 + i);
        snprintf(cust, sizeof cust, "%d", customer_of(i));
        snprintf(addr, sizeof addr, "%d", 5000 + i);
        row(&r, cells);
    }
    send1(m, &ORDERS, "open", &r);
}

static void send_by_id(sim *m, const query *q, int id)
{
    static result r;
    char text[16];
    const char *cells[2] = {text, "someone"};

    snprintf(text, sizeof text, "%d", id);
    columns(&r, 16400, 2, "id", "name");
    row(&r, cells);
    send1(m, q, text, &r);
}

/* The loop: for each of orders from .. from + n - 1, its customer. */
static void send_loop(sim *m, int from, int n)
{
    for (int i = from; i < from + n; i++)
        send_by_id(m, &CUSTOMER, customer_of(i));
}

/* The loop over the first n orders; offset shifts the ids asked for away from the parent's. */
static void send_customers(sim *m, int n, int offset)
{
    for (int i = 0; i < n; i++)
        send_by_id(m, &CUSTOMER, customer_of(i) + offset);
}

/* Ends the run of statements: a tick long after the last one. */
static void idle(sim *m)
{
    np1_tick(m->d, m->now + 10 * 1000 * 1000);
}

typedef struct got {
    np1_finding *f[32];
    bool dirty[32]; /* as the callback saw it */
    int n;
} got;

static void collect(np1_finding *f, void *arg)
{
    got *g = arg;

    if (g->n < 32) {
        g->dirty[g->n] = f->dirty;
        g->f[g->n++] = f;
    }
}

static got take(sim *m, bool all)
{
    got g;

    memset(&g, 0, sizeof g);

    np1_take_dirty(m->d, all, collect, &g);
    return g;
}

static np1_finding *only_finding(sim *m)
{
    got g = take(m, true);

    if (g.n != 1)
        fail_msg("expected one finding, got %d", g.n);
    return g.f[0];
}

static void no_finding(sim *m)
{
    got g = take(m, true);

    if (g.n != 0)
        fail_msg("expected no finding, got %d (first: kind %d, %s)", g.n, (int)g.f[0]->kind,
                 g.f[0]->child_query[0]);
}

static void contains(const char *haystack, const char *needle)
{
    if (haystack == NULL || strstr(haystack, needle) == NULL)
        fail_msg("[%s] not in:\n%s", needle, haystack ? haystack : "(null)");
}

/* ---- loops ---- */

static void test_confirmed_loop(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 50, 0);
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_N_PLUS_ONE);
    assert_true(f->parent_fp == ORDERS.fp);
    assert_string_equal(f->parent_query, ORDERS.text);
    assert_int_equal(f->n_children, 1);
    assert_true(f->child_fp[0] == CUSTOMER.fp);
    assert_string_equal(f->child_query[0], CUSTOMER.text);
    assert_true(f->confirmed);
    /* the customer ids are all in orders.id too, but only customer_id holds exactly them */
    assert_string_equal(f->linked_column, "orders.customer_id");
    assert_int_equal(f->occurrences, 1);
    assert_int_equal(f->max_n, 50);
    assert_int_equal(f->total_n, 50);
    assert_true(f->total_ms > 49.9 && f->total_ms < 50.1);
    assert_true(f->saving_ms > 48.9 && f->saving_ms < 49.1); /* all but one execution */
    assert_string_equal(f->severity, "high");
    assert_int_equal(f->n_examples, 3);
    assert_string_equal(f->examples[0], "[redacted]");
    contains(f->suggestion, "SELECT * FROM customers WHERE id = ANY($1)");
    contains(f->suggestion, "orders.customer_id");
    contains(f->suggestion, "FROM orders p LEFT JOIN customers c1 ON c1.id = p.customer_id "
                            "WHERE p.status = $1");
    contains(f->suggestion, "prefetch_related");
    assert_true(f->first_us > 0 && f->last_us > f->first_us);
    np1_free(m.d);
}

static void test_suspected_loop(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 50, 1000); /* ids the parent never returned */
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_N_PLUS_ONE);
    assert_false(f->confirmed);
    assert_string_equal(f->linked_column, "");
    assert_int_equal(f->max_n, 50);
    contains(f->suggestion, "Suspected N+1");
    contains(f->suggestion, "best match 0%");
    contains(f->suggestion, "= ANY($1)");
    np1_free(m.d);
}

static void test_two_children_are_one_loop(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 40);
    for (int i = 0; i < 40; i++) {
        send_by_id(&m, &CUSTOMER, customer_of(i));
        send_by_id(&m, &ADDRESS, 5000 + i);
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->n_children, 2);
    assert_true(f->child_fp[0] == CUSTOMER.fp);
    assert_true(f->child_fp[1] == ADDRESS.fp);
    assert_true(f->parent_fp == ORDERS.fp);
    assert_true(f->confirmed);
    assert_string_equal(f->linked_column, "orders.customer_id");
    assert_int_equal(f->max_n, 40);
    assert_true(f->total_ms > 79.9 && f->total_ms < 80.1); /* both children's time */
    contains(f->suggestion, "value taken from orders.customer_id and orders.address_id.");
    contains(f->suggestion, "SELECT * FROM addresses WHERE id = ANY($1)");
    contains(f->suggestion, "LEFT JOIN addresses c2 ON c2.id = p.address_id");
    np1_free(m.d);
}

/* A lookup repeated in the loop body is a duplicate, not the loop's parent. */
static void test_lookup_in_the_body_is_not_the_parent(void **state)
{
    sim m;
    result r;
    const char *cells[1] = {"42"};
    got g;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 20);
    columns(&r, 0, 1, "value");
    row(&r, cells);
    for (int i = 0; i < 20; i++) {
        send1(&m, &SETTING, "currency", &r);
        send_by_id(&m, &CUSTOMER, 1000 + i); /* not proven: the nearest parent is a guess */
    }
    idle(&m);
    g = take(&m, true);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.f[0]->kind, NP1_N_PLUS_ONE); /* loops are recorded first */
    assert_true(g.f[0]->parent_fp == ORDERS.fp);
    assert_true(g.f[0]->child_fp[0] == CUSTOMER.fp);
    assert_false(g.f[0]->confirmed);
    assert_int_equal(g.f[1]->kind, NP1_DUPLICATE);
    assert_true(g.f[1]->child_fp[0] == SETTING.fp);
    np1_free(m.d);
}

static void test_nested_loops_find_their_own_parents(void **state)
{
    static const query ITEMS = {0x6000000000000006ULL,
                                "SELECT id, product_id FROM order_items WHERE order_id = $1",
                                "order_items"};
    static const query PRODUCT = {0x7000000000000007ULL, "SELECT * FROM products WHERE id = $1",
                                  "products"};
    sim m;
    result items;
    char id[16], prod[16];
    const char *cells[2] = {id, prod};
    got g;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 10);
    for (int i = 0; i < 10; i++) {
        char order[16];
        snprintf(order, sizeof order, "%d", 1 + i);
        columns(&items, 16500, 2, "id", "product_id");
        for (int k = 0; k < 5; k++) {
            snprintf(id, sizeof id, "%d", 100 * i + k);
            snprintf(prod, sizeof prod, "%d", 9000 + 5 * i + k);
            row(&items, cells);
        }
        send1(&m, &ITEMS, order, &items);
        for (int k = 0; k < 5; k++)
            send_by_id(&m, &PRODUCT, 9000 + 5 * i + k);
    }
    idle(&m);
    g = take(&m, true);
    assert_int_equal(g.n, 2);
    assert_true(g.f[0]->parent_fp == ORDERS.fp && g.f[0]->child_fp[0] == ITEMS.fp);
    assert_string_equal(g.f[0]->linked_column, "orders.id");
    assert_true(g.f[1]->parent_fp == ITEMS.fp && g.f[1]->child_fp[0] == PRODUCT.fp);
    assert_true(g.f[1]->confirmed);
    assert_string_equal(g.f[1]->linked_column, "order_items.product_id");
    assert_int_equal(g.f[1]->max_n, 50);
    np1_free(m.d);
}

/* ---- duplicates, pagination, thresholds ---- */

static void test_duplicate_is_not_a_loop(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    m.s.keep_params = true;
    sim_start(&m);
    send_orders(&m, 50);
    for (int i = 0; i < 50; i++)
        send_by_id(&m, &CUSTOMER, 1);
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_DUPLICATE);
    assert_true(f->parent_fp == 0);
    assert_string_equal(f->parent_query, "");
    assert_int_equal(f->n_children, 1);
    assert_true(f->child_fp[0] == CUSTOMER.fp);
    assert_int_equal(f->max_n, 50);
    assert_int_equal(f->n_examples, 1);
    assert_string_equal(f->examples[0], "[\"1\"]");
    contains(f->suggestion, "Duplicate query");
    contains(f->suggestion, "cache");
    np1_free(m.d);
}

static void test_keyset_pagination_is_not_a_loop(void **state)
{
    static const query PAGE = {0x8000000000000008ULL,
                               "SELECT id, name FROM items WHERE id > $1 ORDER BY id LIMIT $2",
                               "items"};
    sim m;
    result r;
    char id[16], after[16] = "0";
    const char *cells[2] = {id, "thing"};

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50); /* something before the loop that returned rows */
    for (int page = 0; page < 20; page++) {
        const char *params[2] = {after, "10"};
        columns(&r, 16600, 2, "id", "name");
        for (int k = 0; k < 10; k++) {
            snprintf(id, sizeof id, "%d", 1 + page * 10 + k);
            row(&r, cells);
        }
        send(&m, &PAGE, params, 2, &r);
        snprintf(after, sizeof after, "%s", id); /* the last row's id */
    }
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

/* Each order's items hold the next order's id by chance, in one column or another: only a
 * parameter found in the same column every time is a page cursor. */
static void test_chance_values_are_not_pagination(void **state)
{
    static const query ITEMS = {0x6000000000000006ULL,
                                "SELECT id, order_id, quantity, price FROM order_items "
                                "WHERE order_id = $1",
                                "order_items"};
    sim m;
    result r;
    char id[16], order[16], qty[16], price[16];
    const char *cells[4] = {id, order, qty, price};

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 30);
    for (int i = 0; i < 30; i++) {
        columns(&r, 16500, 4, "id", "order_id", "quantity", "price");
        snprintf(id, sizeof id, "%d", 7000 + i);
        snprintf(order, sizeof order, "%d", 1 + i);
        snprintf(qty, sizeof qty, "%d", i % 2 ? 2 + i : 0);
        snprintf(price, sizeof price, "%d", i % 2 ? 0 : 2 + i);
        row(&r, cells);
        send1(&m, &ITEMS, order, &r);
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_true(f->child_fp[0] == ITEMS.fp);
    assert_string_equal(f->linked_column, "orders.id");
    np1_free(m.d);
}

static void test_connections_never_combine(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    m.s.min_repeats = 30;
    sim_start(&m);
    m.conn = 1;
    send_orders(&m, 50);
    for (int i = 0; i < 50; i++) { /* the loop's queries alternate between two connections */
        m.conn = 1 + (uint64_t)(i % 2);
        send_by_id(&m, &CUSTOMER, customer_of(i));
    }
    idle(&m);
    no_finding(&m);
    np1_free(m.d);

    sim_init(&m); /* the same on one connection: found */
    m.s.min_repeats = 30;
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 50, 0);
    idle(&m);
    assert_int_equal(only_finding(&m)->max_n, 50);
    np1_free(m.d);

    sim_init(&m); /* children on a connection without the parent: no parent, no loop */
    sim_start(&m);
    send_orders(&m, 50);
    m.conn = 2;
    send_customers(&m, 50, 0);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

static void test_fewer_than_n_executions(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 4, 0);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

static void test_fewer_than_n_distinct_tuples(void **state)
{
    sim m;

    (void)state;
    sim_init(&m); /* 6 executions, 2 tuples three times each: nothing */
    sim_start(&m);
    send_orders(&m, 50);
    for (int i = 0; i < 6; i++)
        send_by_id(&m, &CUSTOMER, 1 + i % 2);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);

    sim_init(&m); /* one tuple five times and another once: a duplicate */
    sim_start(&m);
    send_orders(&m, 50);
    for (int i = 0; i < 6; i++)
        send_by_id(&m, &CUSTOMER, i == 3 ? 2 : 1);
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_DUPLICATE);
    assert_int_equal(f->max_n, 5);
    np1_free(m.d);
}

static void test_failed_executions_do_not_count(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 4, 0);
    m.failed = true;
    send_customers(&m, 10, 100);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

/* ---- units ---- */

static void send_transaction(sim *m, int children)
{
    static const query BEGIN = {0x9000000000000009ULL, "BEGIN", ""};
    static const query COMMIT = {0xA00000000000000AULL, "COMMIT", ""};

    m->status = 'T';
    send(m, &BEGIN, NULL, 0, NULL);
    send_orders(m, 50);
    send_loop(m, 0, children / 2);
    m->now += 2 * 1000 * 1000; /* a pause inside a transaction does not end it */
    send_loop(m, children / 2, children - children / 2);
    m->status = 'I';
    send(m, &COMMIT, NULL, 0, NULL);
}

static void test_transactions_are_units(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_transaction(&m, 25);
    np1_finding *f = only_finding(&m); /* examined at COMMIT, no tick needed */
    assert_int_equal(f->occurrences, 1);
    send_transaction(&m, 25);
    f = only_finding(&m);
    assert_int_equal(f->occurrences, 2);
    assert_int_equal(f->max_n, 25);
    assert_int_equal(f->total_n, 50);
    np1_free(m.d);
}

static void test_transaction_ends_the_run_before_it(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_loop(&m, 0, 3);
    m.status = 'T'; /* BEGIN: the run above ends here, with 3 children only */
    send_loop(&m, 3, 3);
    m.status = 'I';
    send_loop(&m, 6, 1);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

static void test_idle_gap_splits(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_loop(&m, 0, 3);
    m.now += 300 * 1000; /* longer than the 250 ms gap */
    send_loop(&m, 3, 3);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);

    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_loop(&m, 0, 3);
    m.now += 200 * 1000; /* shorter: one unit */
    send_loop(&m, 3, 3);
    idle(&m);
    assert_int_equal(only_finding(&m)->max_n, 6);
    np1_free(m.d);
}

static void test_application_name_and_tags_split(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_loop(&m, 0, 3);
    m.app = "worker";
    send_loop(&m, 3, 3);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);

    sim_init(&m);
    sim_start(&m);
    m.tags = "route=/orders";
    send_orders(&m, 50);
    send_loop(&m, 0, 3);
    m.tags = "route=/customers";
    send_loop(&m, 3, 3);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

static void test_tick_closes_an_idle_unit(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 10, 0);
    np1_tick(m.d, m.now + 100 * 1000);
    no_finding(&m); /* still within the gap */
    np1_tick(m.d, m.now + 300 * 1000);
    assert_int_equal(only_finding(&m)->max_n, 10);
    np1_free(m.d);

    sim_init(&m); /* an open transaction waits longer, but the end of the run closes it */
    sim_start(&m);
    m.status = 'T';
    send_orders(&m, 50);
    send_customers(&m, 10, 0);
    np1_tick(m.d, m.now + 300 * 1000);
    no_finding(&m);
    np1_tick(m.d, INT64_MAX);
    assert_int_equal(only_finding(&m)->max_n, 10);
    np1_free(m.d);
}

static void test_disconnect_closes_the_unit(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    m.status = 'T';
    send_orders(&m, 50);
    send_customers(&m, 10, 0);
    np1_disconnect(m.d, 1);
    assert_int_equal(only_finding(&m)->max_n, 10);
    np1_disconnect(m.d, 1);  /* again: nothing left */
    np1_disconnect(m.d, 77); /* never seen */
    np1_free(m.d);
}

/* ---- the allow-list ---- */

static void collect_entry(const char *entry, void *arg)
{
    char *out = arg;

    strcat(out, entry);
    strcat(out, ";");
}

static void run_with_ignores(sim *m, const char *const *entries, int n)
{
    sim_init(m);
    m->s.ignore = entries;
    m->s.n_ignore = n;
    sim_start(m);
    send_orders(m, 50);
    send_customers(m, 50, 0);
    idle(m);
}

static void test_allow_list_by_fingerprint_and_table(void **state)
{
    char hex[17], unused[256] = "";
    sim m;

    (void)state;
    fp_hex(CUSTOMER.fp, hex);
    const char *by_fp[3] = {hex, "never_read", "00000000deadbeef"};
    run_with_ignores(&m, by_fp, 3);
    no_finding(&m);
    np1_unused_ignores(m.d, collect_entry, unused);
    assert_string_equal(unused, "never_read;00000000deadbeef;");
    np1_free(m.d);

    const char *by_table[1] = {"public.customers"};
    run_with_ignores(&m, by_table, 1);
    no_finding(&m);
    unused[0] = '\0';
    np1_unused_ignores(m.d, collect_entry, unused);
    assert_string_equal(unused, "");
    np1_free(m.d);

    fp_hex(ORDERS.fp, hex); /* an allow-listed parent: the loop has no parent */
    const char *parent[1] = {hex};
    run_with_ignores(&m, parent, 1);
    no_finding(&m);
    np1_free(m.d);
}

static void test_allow_list_by_comment(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    m.ignored = true;
    send_customers(&m, 50, 0);
    for (int i = 0; i < 10; i++)
        send_by_id(&m, &CUSTOMER, 1); /* nor a duplicate */
    idle(&m);
    no_finding(&m);
    np1_free(m.d);

    sim_init(&m);
    sim_start(&m);
    m.ignored = true;
    send_orders(&m, 50);
    m.ignored = false;
    send_customers(&m, 50, 0);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

/* ---- examples, aggregation, severity, dirtiness ---- */

static void test_examples_kept_or_redacted(void **state)
{
    static const query NAMED = {0xB00000000000000BULL,
                                "SELECT * FROM people WHERE name = $1 AND kind = $2", "people"};
    sim m;
    char name[32];

    (void)state;
    sim_init(&m);
    m.s.keep_params = true;
    sim_start(&m);
    send_orders(&m, 50);
    for (int i = 0; i < 10; i++) {
        const char *params[2] = {name, i == 0 ? NULL : "a\\b\n"};
        snprintf(name, sizeof name, "O\"Brien %d", i);
        send(&m, &NAMED, params, 2, NULL);
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->n_examples, 3);
    assert_string_equal(f->examples[0], "[\"O\\\"Brien 0\",null]");
    assert_string_equal(f->examples[1], "[\"O\\\"Brien 1\",\"a\\\\b\\u000a\"]");
    np1_free(m.d);

    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, 10, 0);
    idle(&m);
    f = only_finding(&m);
    assert_int_equal(f->n_examples, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(f->examples[i], "[redacted]");
    np1_free(m.d);
}

static void test_aggregation_over_occurrences(void **state)
{
    sim m;
    int64_t first;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    first = m.now;
    for (int unit = 1; unit <= 3; unit++) {
        send_orders(&m, 50);
        send_customers(&m, 10 * unit, 0);
        m.now += 1000 * 1000;
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->occurrences, 3);
    assert_int_equal(f->max_n, 30);
    assert_int_equal(f->total_n, 60);
    assert_true(f->total_ms > 59.9 && f->total_ms < 60.1);
    assert_true(f->saving_ms > 56.9 && f->saving_ms < 57.1); /* one execution kept per unit */
    assert_true(f->first_us > first && f->first_us < first + 100 * 1000);
    assert_true(f->last_us > first + 2 * 1000 * 1000);
    assert_int_equal(f->n_examples, 3);
    np1_free(m.d);
}

static const char *severity_of(int children, int64_t dur_us)
{
    static char sev[8];
    sim m;

    sim_init(&m);
    m.dur_us = dur_us;
    sim_start(&m);
    send_orders(&m, 50);
    send_customers(&m, children, 0);
    idle(&m);
    snprintf(sev, sizeof sev, "%s", only_finding(&m)->severity);
    np1_free(m.d);
    return sev;
}

static void test_severity(void **state)
{
    (void)state;
    assert_string_equal(severity_of(5, 1000), "low");    /* saving 4 ms, n 5 */
    assert_string_equal(severity_of(10, 100), "medium"); /* n 10 */
    assert_string_equal(severity_of(5, 3000), "medium"); /* saving 12 ms */
    assert_string_equal(severity_of(6, 30000), "high");  /* saving 150 ms */
    assert_string_equal(severity_of(50, 10), "high");    /* n 50 */
}

static void test_take_dirty(void **state)
{
    sim m;
    got g;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    assert_int_equal(take(&m, false).n, 0);
    send_orders(&m, 50);
    send_customers(&m, 10, 0);
    idle(&m);
    g = take(&m, false);
    assert_int_equal(g.n, 1);
    assert_true(g.dirty[0]);
    assert_int_equal(take(&m, false).n, 0); /* nothing changed since */
    g = take(&m, true);                     /* but all can be asked for */
    assert_int_equal(g.n, 1);
    assert_false(g.dirty[0]);
    send_orders(&m, 50);
    for (int i = 0; i < 10; i++)
        send_by_id(&m, &SETTING, 7); /* a new duplicate finding */
    send_customers(&m, 10, 0);       /* and the loop again */
    idle(&m);
    g = take(&m, false);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.f[0]->occurrences, 2);
    assert_int_equal(g.f[1]->kind, NP1_DUPLICATE);
    assert_true(g.dirty[0] && g.dirty[1]);
    assert_false(g.f[0]->dirty); /* cleared once handed over */
    np1_free(m.d);
}

/* ---- bounds ---- */

/* The heap in use, when the sanitizer can tell; 0 otherwise. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes ? __sanitizer_get_current_allocated_bytes() : 0;
}

static void test_max_unit_bounds_a_huge_unit(void **state)
{
    sim m;
    size_t before, peak = 0;

    (void)state;
    sim_init(&m);
    m.s.max_unit = 1000;
    sim_start(&m);
    m.status = 'T';
    m.dur_us = 10;
    m.pause_us = 10;
    before = heap_in_use();
    send_orders(&m, 50);
    for (int i = 0; i < 100000; i++) {
        send_by_id(&m, &CUSTOMER, 1000000 + i);
        if (i % 1000 == 0 && heap_in_use() > peak)
            peak = heap_in_use();
    }
    if (before > 0) /* under ASan: the unit stays within a few hundred kilobytes */
        assert_true(peak - before < 2 * 1024 * 1024);
    m.status = 'I';
    send_by_id(&m, &CUSTOMER, 1); /* the statement that ends the transaction is still seen */
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->max_n, 999); /* the parent and 999 children were looked at */
    assert_false(f->confirmed);
    np1_free(m.d);
}

static void test_results_kept_bounds_the_proof(void **state)
{
    sim m;
    result r;
    const char *cells[1] = {"x"};

    (void)state;
    for (int kept = 2; kept <= 8; kept += 6) {
        sim_init(&m);
        m.s.results_kept = kept;
        sim_start(&m);
        send_orders(&m, 50);
        columns(&r, 0, 1, "value");
        row(&r, cells);
        send1(&m, &SETTING, "a", &r); /* two other results between parent and loop */
        send(&m, &COUNT, NULL, 0, &r);
        send_customers(&m, 50, 0);
        idle(&m);
        np1_finding *f = only_finding(&m);
        if (kept == 2) { /* the orders result was pushed out: unproven; a one-row COUNT
                          * cannot be a parent, so the suspected one is still orders */
            assert_false(f->confirmed);
            assert_true(f->parent_fp == ORDERS.fp);
        } else { /* kept: the farther parent that proves the loop wins */
            assert_true(f->confirmed);
            assert_true(f->parent_fp == ORDERS.fp);
        }
        np1_free(m.d);
    }
}

/* ---- the proof by the parent's rows ---- */

static const query TAGS = {0x6000000000000006ULL, "SELECT id, name FROM tags ORDER BY id", "tags"};
static const query BOOKS = {0x7000000000000007ULL, "SELECT id, author_id FROM books", "books"};
static const query AUTHOR = {0x8000000000000008ULL, "SELECT * FROM authors WHERE id = $1",
                             "authors"};

/* A lookup of the child's shape before the parent (the current user, or an earlier test of the
 * same transaction) does not hide the loop. */
static void test_child_shape_ran_once_before_the_parent(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_by_id(&m, &CUSTOMER, 7);
    send_orders(&m, 20);
    send_customers(&m, 20, 0);
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_N_PLUS_ONE);
    assert_true(f->confirmed);
    assert_true(f->parent_fp == ORDERS.fp);
    assert_string_equal(f->linked_column, "orders.customer_id");
    assert_true(f->chance > 0 && f->chance <= 1e-3);
    np1_free(m.d);
}

/* Ids the application had (sorted, as apps keep them) after a listing of tags 1..50: every id
 * is in tags.id, in the listing's order even, but the loop skips most rows. No proof, and no
 * suspected loop either: the listing's sampled rows show the loop does not walk them. */
static void test_app_ids_after_an_overlapping_listing_prove_nothing(void **state)
{
    static const int ids[8] = {3, 9, 14, 20, 27, 33, 41, 48};
    static result r;
    char id[16], name[16];
    const char *cells[2] = {id, name};
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    columns(&r, 16390, 2, "id", "name");
    for (int i = 1; i <= 50; i++) {
        snprintf(id, sizeof id, "%d", i);
        snprintf(name, sizeof name, "tag %d", i);
        row(&r, cells);
    }
    send(&m, &TAGS, NULL, 0, &r);
    for (int i = 0; i < 8; i++)
        send_by_id(&m, &CUSTOMER, ids[i]);
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

/* 18 books of 3 authors, each author looked up once per book: 3 distinct ids, but the lookups
 * follow books.author_id row by row. An N+1, not a duplicate. */
static void test_repeated_foreign_keys_are_a_loop_not_a_duplicate(void **state)
{
    static result r;
    char id[16], author[16];
    const char *cells[2] = {id, author};
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    columns(&r, 16395, 2, "id", "author_id");
    for (int i = 0; i < 18; i++) {
        snprintf(id, sizeof id, "%d", 1 + i);
        snprintf(author, sizeof author, "%d", 1 + (i * 5) % 3);
        row(&r, cells);
    }
    send(&m, &BOOKS, NULL, 0, &r);
    for (int i = 0; i < 18; i++)
        send_by_id(&m, &AUTHOR, 1 + (i * 5) % 3);
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_N_PLUS_ONE);
    assert_true(f->confirmed);
    assert_string_equal(f->linked_column, "books.author_id");
    assert_int_equal(f->max_n, 18);
    /* 3 values, 18 steps along the rows: 3^-18 */
    assert_true(f->chance < 1e-8);
    np1_free(m.d);
}

/* The same 8 ids asked for in an order of their own: most are in orders.customer_id, but not
 * in its row order, and a shuffled walk proves nothing. */
static void test_values_out_of_row_order_prove_nothing(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    send_orders(&m, 10);
    for (int i = 9; i >= 0; i--)
        send_by_id(&m, &CUSTOMER, customer_of(i));
    idle(&m);
    got g = take(&m, true);
    for (int i = 0; i < g.n; i++)
        assert_false(g.f[i]->confirmed);
    np1_free(m.d);
}

/* A duplicate says whether its repeats returned the same rows only from the sampled results. */
static void test_duplicate_compares_sampled_results(void **state)
{
    for (int changed = 0; changed < 2; changed++) {
        sim m;
        result r;
        sim_init(&m);
        sim_start(&m);
        for (int i = 0; i < 6; i++) {
            const char *cells[1] = {changed && i == 3 ? "new" : "old"};
            columns(&r, 0, 1, "value");
            row(&r, cells);
            send1(&m, &SETTING, "theme", &r);
        }
        idle(&m);
        np1_finding *f = only_finding(&m);
        assert_int_equal(f->kind, NP1_DUPLICATE);
        contains(f->suggestion, changed ? "the rows returned changed between repeats"
                                        : "every sampled repeat returned the same rows");
        np1_free(m.d);
    }
}

/* One-row INSERTs of one shape, N times: an insert loop with its fix. */
static void test_insert_loop(void **state)
{
    static const query INSERT = {0x9000000000000009ULL,
                                 "INSERT INTO \"blog_post\" (\"title\") VALUES ($1)", "blog_post"};
    sim m;
    char title[16];

    (void)state;
    sim_init(&m);
    sim_start(&m);
    for (int i = 0; i < 30; i++) {
        snprintf(title, sizeof title, "post %d", i);
        send1(&m, &INSERT, title, NULL);
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_BATCH_INSERT);
    assert_int_equal(f->max_n, 30);
    assert_true(f->parent_fp == 0);
    contains(f->suggestion, "INSERT ... VALUES (...), (...)");
    contains(f->suggestion, "COPY");
    np1_free(m.d);
}

/* ActiveRecord's create! wraps each INSERT in a transaction of its own: one-INSERT
 * transactions of one shape, one right after the other, are an insert loop too; a pause longer
 * than the gap ends the streak, and a transaction that does more than insert is no part of one. */
static void test_insert_loop_across_transactions(void **state)
{
    static const query BEGIN_Q = {0xC10000000000000CULL, "BEGIN", ""};
    static const query COMMIT_Q = {0xC20000000000000CULL, "COMMIT", ""};
    static const query INSERT = {0xC30000000000000CULL,
                                 "INSERT INTO \"posts\" (\"title\") VALUES ($1) RETURNING \"id\"",
                                 "posts"};
    char title[16];

    (void)state;
    for (int pause = 0; pause < 2; pause++) {
        sim m;
        sim_init(&m);
        sim_start(&m);
        for (int i = 0; i < 12; i++) {
            snprintf(title, sizeof title, "post %d", i);
            m.status = 'T';
            send(&m, &BEGIN_Q, NULL, 0, NULL);
            send1(&m, &INSERT, title, NULL);
            m.status = 'I';
            send(&m, &COMMIT_Q, NULL, 0, NULL);
            if (pause && i % 4 == 3)
                m.now += 300 * 1000; /* three streaks of 4, each shorter than N */
        }
        idle(&m);
        if (pause) {
            no_finding(&m);
        } else {
            np1_finding *f = only_finding(&m);
            assert_int_equal(f->kind, NP1_BATCH_INSERT);
            assert_int_equal(f->max_n, 12);
            assert_string_equal(f->orm, "activerecord");
            contains(f->suggestion, "ActiveRecord: Post.insert_all([{...}, ...]).");
        }
        np1_free(m.d);
    }
}

/* Catalog queries (an ORM's or a test runner's introspection) are never findings. */
static void test_catalog_queries_are_never_findings(void **state)
{
    static const query CATALOG = {0xA00000000000000AULL,
                                  "SELECT typarray FROM pg_type WHERE typname = $1", ""};
    static const query CATALOG2 = {
        0xB00000000000000BULL, "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = $1", ""};
    sim m;
    char oid[16];

    (void)state;
    sim_init(&m);
    sim_start(&m);
    for (int i = 0; i < 10; i++) {
        send_by_id(&m, &CATALOG, 1);
        snprintf(oid, sizeof oid, "%d", 16384 + i);
        send1(&m, &CATALOG2, oid, NULL);
    }
    idle(&m);
    no_finding(&m);
    np1_free(m.d);
}

/* A test runner keeps one transaction around a test class: the tags (or application_name) of
 * each test still end its unit, so test 1's lookups do not make test 2's a duplicate. */
static void test_tags_end_a_unit_inside_a_transaction(void **state)
{
    sim m;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    m.status = 'T';
    m.tags = "test=test_one";
    for (int i = 0; i < 3; i++)
        send_by_id(&m, &CUSTOMER, 7);
    m.tags = "test=test_two";
    for (int i = 0; i < 3; i++)
        send_by_id(&m, &CUSTOMER, 7);
    send_orders(&m, 10);
    send_customers(&m, 10, 0);
    m.status = 'I';
    send_by_id(&m, &CUSTOMER, 8);
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_int_equal(f->kind, NP1_N_PLUS_ONE);
    assert_true(f->confirmed);
    np1_free(m.d);
}

/* Connections whose end the detector never hears of (their events dropped) and idle ones keep
 * nothing once idle for ten seconds: their result samples go; one that comes back starts afresh
 * and its loops are still found. */
static void test_idle_connections_hold_no_memory(void **state)
{
    sim m;
    size_t before, full;

    (void)state;
    sim_init(&m);
    sim_start(&m);
    before = heap_in_use();
    for (uint64_t c = 1; c <= 500; c++) {
        m.conn = c;
        send_orders(&m, 50); /* a sampled result on each connection, never disconnected */
        send_customers(&m, 50, 0);
    }
    full = heap_in_use();
    np1_tick(m.d, m.now + 1000 * 1000); /* units closed; connections kept a while */
    assert_int_equal(only_finding(&m)->occurrences, 500);
    np1_tick(m.d, m.now + 11 * 1000 * 1000);
    if (before > 0) /* under ASan: the samples of 500 connections are gone */
        assert_true(heap_in_use() - before < (full - before) / 10);
    m.now += 11 * 1000 * 1000;
    m.conn = 7;
    send_orders(&m, 50);
    send_customers(&m, 50, 0);
    idle(&m);
    assert_int_equal(only_finding(&m)->occurrences, 501);
    np1_free(m.d);
}

static void test_many_connections_and_odd_input(void **state)
{
    sim m;
    np1_stmt st;
    uint32_t values[4] = {1, 2, 3, 4};
    np1_column cols[2] = {{1, 1, "a"}, {1, 2, "b"}};

    (void)state;
    sim_init(&m);
    m.s.min_repeats = 0;        /* clamped to 2 */
    m.s.link_share = -1;        /* back to the default */
    m.s.results_kept = 1000000; /* clamped */
    sim_start(&m);
    for (uint64_t c = 1; c <= 2000; c++) {
        m.conn = c;
        send_orders(&m, 3);
        send_customers(&m, 3, 0);
        if (c % 2)
            np1_disconnect(m.d, c);
    }
    idle(&m);
    assert_int_equal(only_finding(&m)->occurrences, 2000);

    memset(&st, 0, sizeof st); /* missing pieces: no crash, no finding */
    st.conn_id = 5000;
    st.n_params = 3;  /* but no params */
    st.n_columns = 2; /* but no columns */
    st.rows = 2;
    st.values = values;
    st.is_select = true;
    np1_statement(m.d, &st);
    st.columns = cols;
    st.values = NULL; /* columns, rows, but no values */
    np1_statement(m.d, &st);
    np1_statement(m.d, NULL);
    np1_statement(NULL, &st);
    np1_tick(NULL, 0);
    np1_take_dirty(NULL, true, collect, NULL);
    np1_disconnect(m.d, 5000);
    np1_free(m.d);
    np1_free(NULL);
}

/* ---- the suggestion ---- */

static void test_suggestion_for_orm_texts(void **state)
{
    static const query PARENT = {0xC00000000000000CULL,
                                 "SELECT o.id, o.customer_id FROM orders AS o WHERE o.status = $1 "
                                 "AND total > $2 ORDER BY o.created_at DESC",
                                 "orders"};
    static const query RAILS = {0xD00000000000000DULL,
                                "SELECT \"customers\".* FROM \"customers\" WHERE "
                                "\"customers\".\"id\" = $1 LIMIT $2",
                                "customers"};
    sim m;
    result r;
    char id[16], cust[16];
    const char *cells[2] = {id, cust};

    (void)state;
    sim_init(&m);
    sim_start(&m);
    columns(&r, 16385, 2, "id", "customer_id");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "%d", 1 + i);
        snprintf(cust, sizeof cust, "%d", 300 + i);
        row(&r, cells);
    }
    const char *pp[2] = {"open", "10"};
    send(&m, &PARENT, pp, 2, &r);
    for (int i = 0; i < 20; i++) {
        const char *params[2] = {cust, "1"};
        snprintf(cust, sizeof cust, "%d", 300 + i);
        send(&m, &RAILS, params, 2, NULL);
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_string_equal(f->linked_column, "orders.customer_id");
    contains(f->suggestion, "SELECT \"customers\".* FROM \"customers\" WHERE "
                            "\"customers\".\"id\" = ANY($1)\n");
    contains(f->suggestion, "final LIMIT is left out");
    /* the child's LIMIT kept per parent row, its $2 numbered after the parent's two */
    contains(f->suggestion, "SELECT p.*, c1.* FROM orders p LEFT JOIN LATERAL (SELECT "
                            "\"customers\".* FROM \"customers\" WHERE \"customers\".\"id\" = "
                            "p.customer_id LIMIT $3) c1 ON true WHERE p.status = $1 AND p.total > "
                            "$2 ORDER BY p.created_at DESC");
    assert_string_equal(f->orm, "activerecord");
    contains(f->suggestion, "ActiveRecord: load it with the rows: Order.includes(:customer).");
    np1_free(m.d);
}

static void test_suggestion_without_parent_table(void **state)
{
    static const query JOINED = {0xE00000000000000EULL,
                                 "SELECT o.id, o.customer_id FROM orders o JOIN shops s ON "
                                 "s.id = o.shop_id WHERE s.region = $1",
                                 ""};
    static const query BY_TWO = {0xF00000000000000FULL,
                                 "SELECT * FROM customers c JOIN accounts a ON a.id = c.account "
                                 "WHERE c.id = $1",
                                 ""};
    sim m;
    result r;
    char id[16], cust[16];
    const char *cells[2] = {id, cust};

    (void)state;
    sim_init(&m);
    sim_start(&m);
    columns(&r, 16385, 2, "id", "customer_id");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "%d", 1 + i);
        snprintf(cust, sizeof cust, "%d", 300 + i);
        row(&r, cells);
    }
    send1(&m, &JOINED, "north", &r);
    for (int i = 0; i < 20; i++) {
        snprintf(cust, sizeof cust, "%d", 300 + i);
        send1(&m, &BY_TWO, cust, NULL);
    }
    idle(&m);
    np1_finding *f = only_finding(&m);
    assert_string_equal(f->linked_column, "table 16385 column 2");
    contains(f->suggestion, "FROM (SELECT o.id, o.customer_id FROM orders o JOIN shops s ON "
                            "s.id = o.shop_id WHERE s.region = $1) p LEFT JOIN LATERAL ("
                            "SELECT * FROM customers c JOIN accounts a ON a.id = c.account "
                            "WHERE c.id = p.customer_id) c1 ON true");
    np1_free(m.d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confirmed_loop),
        cmocka_unit_test(test_suspected_loop),
        cmocka_unit_test(test_two_children_are_one_loop),
        cmocka_unit_test(test_lookup_in_the_body_is_not_the_parent),
        cmocka_unit_test(test_nested_loops_find_their_own_parents),
        cmocka_unit_test(test_duplicate_is_not_a_loop),
        cmocka_unit_test(test_keyset_pagination_is_not_a_loop),
        cmocka_unit_test(test_chance_values_are_not_pagination),
        cmocka_unit_test(test_connections_never_combine),
        cmocka_unit_test(test_fewer_than_n_executions),
        cmocka_unit_test(test_fewer_than_n_distinct_tuples),
        cmocka_unit_test(test_failed_executions_do_not_count),
        cmocka_unit_test(test_transactions_are_units),
        cmocka_unit_test(test_transaction_ends_the_run_before_it),
        cmocka_unit_test(test_idle_gap_splits),
        cmocka_unit_test(test_application_name_and_tags_split),
        cmocka_unit_test(test_tick_closes_an_idle_unit),
        cmocka_unit_test(test_disconnect_closes_the_unit),
        cmocka_unit_test(test_allow_list_by_fingerprint_and_table),
        cmocka_unit_test(test_allow_list_by_comment),
        cmocka_unit_test(test_examples_kept_or_redacted),
        cmocka_unit_test(test_aggregation_over_occurrences),
        cmocka_unit_test(test_severity),
        cmocka_unit_test(test_take_dirty),
        cmocka_unit_test(test_max_unit_bounds_a_huge_unit),
        cmocka_unit_test(test_results_kept_bounds_the_proof),
        cmocka_unit_test(test_idle_connections_hold_no_memory),
        cmocka_unit_test(test_child_shape_ran_once_before_the_parent),
        cmocka_unit_test(test_app_ids_after_an_overlapping_listing_prove_nothing),
        cmocka_unit_test(test_repeated_foreign_keys_are_a_loop_not_a_duplicate),
        cmocka_unit_test(test_values_out_of_row_order_prove_nothing),
        cmocka_unit_test(test_duplicate_compares_sampled_results),
        cmocka_unit_test(test_insert_loop),
        cmocka_unit_test(test_insert_loop_across_transactions),
        cmocka_unit_test(test_catalog_queries_are_never_findings),
        cmocka_unit_test(test_tags_end_a_unit_inside_a_transaction),
        cmocka_unit_test(test_many_connections_and_odd_input),
        cmocka_unit_test(test_suggestion_for_orm_texts),
        cmocka_unit_test(test_suggestion_without_parent_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
