"""Index suggestions end to end: a workload through pgscope, its slow statements sampled, their
candidate indexes verified with hypopg on the advisor's connection, consolidated in the report
database; then the suggested DDL applied and the workload run again."""

import json
import os
import sqlite3

import harness as h

BY_CUSTOMER = "SELECT id, total FROM orders WHERE customer_id = :c"
BY_CUSTOMER_STATUS = "SELECT id FROM orders WHERE customer_id = :c AND status = 'shipped'"
PENDING = "SELECT id, created_at FROM orders WHERE status = 'pending' ORDER BY created_at LIMIT 20"
BY_SKU = "SELECT sum(qty) FROM items WHERE sku = :c"


def database(name, hypopg=True):
    """A fresh database of the shared cluster: orders (200,000 rows, 1% pending), items (sku
    indexed)."""
    pg = h.shared_cluster()
    pg.psql("DROP DATABASE IF EXISTS %s" % name)
    pg.psql("CREATE DATABASE %s" % name)
    pg.psql("""
        CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                             created_at timestamptz NOT NULL, total numeric NOT NULL);
        INSERT INTO orders
            SELECT g, g % 5000, CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'shipped' END,
                   '2026-01-01'::timestamptz + g * interval '1 minute', g % 97
            FROM generate_series(1, 200000) g;
        CREATE TABLE items (id int PRIMARY KEY, sku int NOT NULL, qty int NOT NULL);
        INSERT INTO items SELECT g, g % 1000, g % 7 FROM generate_series(1, 200000) g;
        CREATE INDEX items_sku ON items (sku);
        CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
        INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(0, 4999) g;
        ANALYZE;
    """ + ("CREATE EXTENSION hypopg;" if hypopg else ""), dbname=name)
    return pg


def workload(pgs, dbname, statements, transactions=20):
    """pgbench, extended protocol: each statement with a random customer (or sku)."""
    for i, sql in enumerate(statements):
        script = os.path.join(pgs.dir, "w%d.sql" % i)
        with open(script, "w") as f:
            f.write("\\set c random(1, 999)\n%s;\n" % sql)
        res = h.pgbench(pgs.host, pgs.port, ["-n", "-M", "extended", "-t", str(transactions),
                                             "-f", script], dbname=dbname)
        assert res.rc == 0, res


def run(pg, dbname, statements, *args, label="before"):
    pgs = h.Pgscope(pg, args=["--explain-min-duration", "5", "--run-label", label]
                    + list(args)).start()
    workload(pgs, dbname, statements)
    assert pgs.stop() == 0, pgs.log_text()
    return pgs


def report(pgs):
    res = h.run([h.PGSCOPE_BIN, "report", "--db", pgs.db, "--format", "json"])
    assert res.rc == 0, res
    return json.loads(res.stdout)


def suggestion_for(rep, columns, predicate=None):
    for s in rep["index_suggestions"]:
        if s["table"] == "orders" and s["columns"] == columns and \
                (predicate is None or s["predicate"] == predicate):
            return s
    return None


def fingerprint(db, like):
    rows = db.execute("SELECT fingerprint, mean_ms FROM statements WHERE query LIKE ?",
                      (like,)).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def test_suggestions_verified_then_applied_make_the_workload_faster():
    pg = database("advise")
    pgs = run(pg, "advise", [BY_CUSTOMER, PENDING])
    rep = report(pgs)
    by_customer = suggestion_for(rep, ["customer_id"])
    pending = suggestion_for(rep, ["status", "created_at"]) or \
        suggestion_for(rep, ["created_at"], "status = 'pending'")
    assert by_customer and pending, (rep["index_suggestions"], pgs.log_text())
    for s in (by_customer, pending):
        assert s["verified"] is True, s
        assert s["cost_after"] < s["cost_before"] * 0.7, s
        assert s["benefit_ms"] > 0 and len(s["statements"]) == 1, s
        assert s["ddl"].startswith("CREATE INDEX CONCURRENTLY ON "), s
    db = sqlite3.connect(pgs.db)
    fp_customer, before_customer = fingerprint(db, "%WHERE customer_id = $1;")
    fp_pending, before_pending = fingerprint(db, "%ORDER BY created_at%")
    assert by_customer["statements"] == [fp_customer] and pending["statements"] == [fp_pending]

    for s in (by_customer, pending):
        pg.psql(s["ddl"], dbname="advise")
    pg.psql("ANALYZE orders", dbname="advise")
    after = h.Pgscope(pg, args=["--run-label", "after"])
    after.db = pgs.db  # the same report database: a second run
    after.start()
    workload(after, "advise", [BY_CUSTOMER, PENDING])
    assert after.stop() == 0
    rows = dict(db.execute("SELECT s.fingerprint, s.mean_ms FROM statements s JOIN runs r "
                           "ON r.id = s.run_id WHERE r.label = 'after'").fetchall())
    after_customer, after_pending = rows[fp_customer], rows[fp_pending]
    assert after_customer < before_customer / 2 and after_pending < before_pending / 2, rows
    h.note("mean by customer_id %.2f -> %.2f ms; pending %.2f -> %.2f ms; %s; %s"
           % (before_customer, after_customer, before_pending, after_pending,
              by_customer["ddl"], pending["ddl"]))


def test_shared_prefix_gives_one_index_and_indexed_columns_none():
    pg = database("advise")
    pgs = run(pg, "advise", [BY_CUSTOMER, BY_CUSTOMER_STATUS, BY_SKU],
              "--explain-min-duration", "0")
    rep = report(pgs)
    on_customer = [s for s in rep["index_suggestions"]
                   if s["table"] == "orders" and s["columns"][0] == "customer_id"]
    # One index serves both: (customer_id), or (customer_id, status) if that saves more.
    assert len(on_customer) == 1, rep["index_suggestions"]
    assert on_customer[0]["columns"] in (["customer_id"], ["customer_id", "status"]), on_customer
    assert len(on_customer[0]["statements"]) == 2 and on_customer[0]["verified"], on_customer
    assert not [s for s in rep["index_suggestions"] if s["table"] == "items"], \
        rep["index_suggestions"]


def test_without_hypopg_suggestions_are_unverified():
    pg = database("advise_plain", hypopg=False)
    pgs = run(pg, "advise_plain", [BY_CUSTOMER])
    rep = report(pgs)
    s = suggestion_for(rep, ["customer_id"])
    assert s and s["verified"] is False, (rep["index_suggestions"], pgs.log_text())
    assert s["cost_before"] is None and s["benefit_ms"] is None, s
    assert "ERROR" not in pgs.log_text() and "WARNING" not in pgs.log_text(), pgs.log_text()
    text = h.run([h.PGSCOPE_BIN, "report", "--db", pgs.db])
    assert text.rc == 0 and "UNVERIFIED" in text.stdout, text.stdout
    exists = pg.psql("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'",
                     dbname="advise_plain").strip()
    assert exists == "0", "pgscope created hypopg without advisor_create_extension"


def test_advisor_create_extension_verifies():
    pg = database("advise_create", hypopg=False)
    pgs = run(pg, "advise_create", [BY_CUSTOMER], "--advisor-create-extension", "on")
    rep = report(pgs)
    s = suggestion_for(rep, ["customer_id"])
    assert s and s["verified"] is True, (rep["index_suggestions"], pgs.log_text())


def test_a_literal_that_varies_gives_no_partial_index():
    """Simple protocol, the status written in the text but different between calls: a partial
    index on one of the values would serve only some calls."""
    pg = database("advise")
    # Every statement sampled: a warm sequential scan can take less than any threshold.
    pgs = h.Pgscope(pg, args=["--explain-min-duration", "0"]).start()
    for status in ("pending", "held", "pending"):
        res = h.psql(pgs.host, pgs.port, "SELECT id FROM orders WHERE status = '%s' "
                     "ORDER BY created_at LIMIT 20" % status, dbname="advise")
        assert res.rc == 0, res
    assert pgs.stop() == 0
    rep = report(pgs)
    assert not [s for s in rep["index_suggestions"] if s["predicate"]], rep["index_suggestions"]
    assert suggestion_for(rep, ["status", "created_at"]), rep["index_suggestions"]


def test_inlined_values_never_become_partial_indexes():
    """A simple-protocol client (psql, psycopg2) inlines its values: sampled once, a constant
    in the text may be a customer's e-mail; no index is suggested for it, nor stored. The value
    is one no plan cost or timing could spell by chance (4242 once matched a cost estimate)."""
    pg = database("advise")
    pgs = h.Pgscope(pg, args=["--explain-min-duration", "0"]).start()
    res = h.psql(pgs.host, pgs.port, "SELECT id FROM orders WHERE customer_id = 73104289 AND "
                 "status = 'shipped' ORDER BY created_at LIMIT 10", dbname="advise")
    assert res.rc == 0, res
    assert pgs.stop() == 0, pgs.log_text()
    rep = report(pgs)
    assert rep["index_suggestions"], pgs.log_text()
    for s in rep["index_suggestions"]:
        assert not s["predicate"] and "73104289" not in s["ddl"], s
    with open(pgs.db, "rb") as f:
        assert b"73104289" not in f.read(), "the inlined value is in the report file"


def test_writes_to_the_table_are_counted_with_hot():
    pg = database("advise")
    pgs = h.Pgscope(pg, args=["--explain-min-duration", "5"]).start()
    workload(pgs, "advise", [BY_CUSTOMER,
                             "UPDATE orders SET customer_id = :c WHERE id = :c",
                             "INSERT INTO orders VALUES (1000000 + :c, :c, 'new', now(), 1) "
                             "ON CONFLICT DO NOTHING",
                             "DELETE FROM orders WHERE id = 2000000 + :c"])
    assert pgs.stop() == 0
    s = suggestion_for(report(pgs), ["customer_id"])
    assert s and s["write_statements"] == 60 and s["breaks_hot"] is True, s


def test_lateral_top_n_gets_the_join_key_and_its_order():
    """The inner side of a nested loop is looked up by the join key and sorted by its own
    column: one index on both serves it, neither alone does as well."""
    pg = database("advise")
    pgs = run(pg, "advise", ["SELECT x.id FROM customers c, LATERAL (SELECT o.id FROM orders o "
                             "WHERE o.customer_id = c.id ORDER BY o.created_at DESC LIMIT 3) x "
                             "WHERE c.id BETWEEN :c AND :c + 2"])
    rep = report(pgs)
    s = suggestion_for(rep, ["customer_id", "created_at"])
    assert s and s["verified"], (rep["index_suggestions"], pgs.log_text())
    assert not [x for x in rep["index_suggestions"] if x["table"] == "customers"], rep
