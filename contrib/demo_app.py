#!/usr/bin/python3
"""A small shop application with two classic performance problems, for pgscope's demo:
an N+1 loop (each order's customer fetched one query at a time) and a slow query (a filter
on an unindexed column of a 200,000-row table).

Usage: demo_app.py setup|run "host=... port=... dbname=... user=..."
Uses Debian's python3-psycopg2 (simple protocol: literals inline, as most ORMs send them)."""

import sys
import time

import psycopg2

SETUP = """
DROP TABLE IF EXISTS orders, customers;
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
                     status text NOT NULL, created_at timestamptz NOT NULL, total numeric);
INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com'
    FROM generate_series(1, 2000) g;
INSERT INTO orders SELECT g, 1 + (g * 7919) % 2000,
    CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'shipped' END,
    now() - g * interval '1 minute', (g % 500) * 1.25
    FROM generate_series(1, 200000) g;
ANALYZE customers, orders;
"""


def recent_orders_page(cur):
    """The N+1: one query for the page, then one per order for its customer."""
    cur.execute("SELECT id, customer_id, total FROM orders ORDER BY id DESC LIMIT 50")
    page = []
    for order_id, customer_id, total in cur.fetchall():
        cur.execute("SELECT name, email FROM customers WHERE id = %s", (customer_id,))
        name, _ = cur.fetchone()
        page.append((order_id, name, total))
    return page


def pending_orders(cur):
    """The slow query: orders.status has no index, so every call reads the whole table."""
    cur.execute("SELECT id, customer_id, created_at FROM orders WHERE status = 'pending' "
                "ORDER BY created_at LIMIT 20")
    return cur.fetchall()


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("setup", "run"):
        sys.exit(__doc__)
    conn = psycopg2.connect(sys.argv[2])
    conn.autocommit = True
    cur = conn.cursor()
    if sys.argv[1] == "setup":
        cur.execute(SETUP)
    else:
        for _ in range(5):  # five page views, as separate requests would come
            recent_orders_page(cur)
            pending_orders(cur)
            time.sleep(0.4)
    conn.close()


if __name__ == "__main__":
    main()
