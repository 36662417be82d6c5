/* orders_app.c — a libpq application with the access patterns the N+1 detector must tell apart,
 * over the extended protocol with unnamed statements (PQexecParams).
 * Usage: orders_app CONNINFO loop|join|two|dup|keyset */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *conn;

static PGresult *run(const char *sql, const char *param)
{
    const char *values[1] = {param};
    PGresult *res =
        PQexecParams(conn, sql, param ? 1 : 0, NULL, param ? values : NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
        exit(1);
    }
    return res;
}

/* The orders, then each order's customer (and with two, its address): 1 + N (+ N). */
static void loop(bool two)
{
    PGresult *orders = run("SELECT id, customer_id FROM orders ORDER BY id LIMIT 50", NULL);
    for (int i = 0; i < PQntuples(orders); i++) {
        const char *customer = PQgetvalue(orders, i, 1);
        PQclear(run("SELECT id, name FROM customers WHERE id = $1", customer));
        if (two)
            PQclear(run("SELECT city FROM addresses WHERE customer_id = $1", customer));
    }
    PQclear(orders);
}

static void join(void)
{
    PQclear(run("SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id "
                "ORDER BY o.id LIMIT 50",
                NULL));
}

static void dup(void)
{
    for (int i = 0; i < 50; i++)
        PQclear(run("SELECT id, name FROM customers WHERE id = 1", NULL));
}

/* Pages of 5 orders, each page starting after the last id of the one before. */
static void keyset(void)
{
    char last[32] = "0";
    for (int page = 0; page < 10; page++) {
        PGresult *res =
            run("SELECT id, customer_id FROM orders WHERE id > $1 ORDER BY id LIMIT 5", last);
        int n = PQntuples(res);
        if (n > 0)
            snprintf(last, sizeof(last), "%s", PQgetvalue(res, n - 1, 0));
        PQclear(res);
        if (n == 0)
            break;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONNINFO loop|join|two|dup|keyset\n", argv[0]);
        return 2;
    }
    conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(conn));
        return 1;
    }
    if (strcmp(argv[2], "loop") == 0)
        loop(false);
    else if (strcmp(argv[2], "two") == 0)
        loop(true);
    else if (strcmp(argv[2], "join") == 0)
        join();
    else if (strcmp(argv[2], "dup") == 0)
        dup();
    else if (strcmp(argv[2], "keyset") == 0)
        keyset();
    else
        return 2;
    PQfinish(conn);
    return 0;
}
