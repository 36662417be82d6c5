"""`pgscope report` end to end: traffic through pgscope, a SIGTERM, then the SQLite file read
with Python's sqlite3 module and the report read as JSON and as text; N+1 findings in the file
and in the report."""

import json
import math
import os
import shutil
import sqlite3
import tempfile

import harness as h

REPORT_DB = "reportdb"
ITEMS = 1000

# A custom pgbench script: no pgbench -i, one statement shape, one row per call.
ITEM_SCRIPT = """\\set id random(1, %d)
SELECT v FROM report_items WHERE id = :id;
""" % ITEMS

JSON_RUN_FIELDS = {"id", "label", "started_at", "ended_at", "duration_s", "connections",
                   "statements", "events_dropped", "lost_writes", "fingerprint_fallbacks"}
JSON_STATEMENT_FIELDS = {"fingerprint", "query", "database", "user", "command", "calls", "errors",
                         "rows", "total_ms", "mean_ms", "min_ms", "max_ms", "stddev_ms", "p50_ms",
                         "p95_ms", "p99_ms", "rows_per_call", "errors_by_sqlstate", "tags",
                         "example"}
JSON_NPLUSONE_FIELDS = {"kind", "parent_fingerprint", "parent_query", "child_fingerprints",
                        "child_query", "child_queries", "max_n", "total_n", "occurrences",
                        "confirmed", "linked_column", "total_ms", "saving_ms", "severity",
                        "examples", "suggestion", "first_seen", "last_seen"}
SEVERITIES = ("high", "medium", "low")

# The N+1 of the acceptance tests: 50 orders, then each order's customer by id. Customer ids
# (1001...) are not order ids, so that only orders.customer_id holds the children's values.
N_ORDERS = 50


def report_cluster():
    """The shared cluster with a small table to read."""
    cluster = h.shared_cluster()
    if not cluster.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % REPORT_DB).strip():
        cluster.psql("CREATE DATABASE %s" % REPORT_DB)
        cluster.psql("CREATE TABLE report_items (id int PRIMARY KEY, v text); "
                     "INSERT INTO report_items SELECT g, 'item ' || g "
                     "FROM generate_series(1, %d) g" % ITEMS, dbname=REPORT_DB)
    return cluster


def stopped(pg):
    """SIGTERM, a clean exit, and the path of the report database."""
    assert pg.stop() == 0, pg.log_text()
    assert os.path.exists(pg.db), "no report database at %s" % pg.db
    return pg.db


def rows(path, sql, args=()):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def report(db, *args, expect_rc=0):
    res = h.run([h.PGSCOPE_BIN, "report", "--db", db] + list(args), timeout=60)
    assert res.rc == expect_rc, res
    for mark in h.SANITIZER_MARKS:
        assert mark not in res.stderr, res.stderr
    return res


def report_json(db, *args):
    data = json.loads(report(db, "--format", "json", *args).stdout)
    assert {"pgscope_version", "runs", "statements", "n_plus_one",
            "unused_ignores"} <= set(data), data.keys()
    for run in data["runs"]:
        assert JSON_RUN_FIELDS <= set(run), run
    for st in data["statements"]:
        assert JSON_STATEMENT_FIELDS <= set(st), st
    totals = [st["total_ms"] for st in data["statements"]]
    assert totals == sorted(totals, reverse=True), totals
    check_findings_json(data["n_plus_one"])
    assert all(isinstance(e, str) for e in data["unused_ignores"]), data["unused_ignores"]
    return data


def check_findings_json(findings):
    """Every finding has every field; N+1 loops come before duplicates, each most severe and
    then largest saving first."""
    for f in findings:
        assert JSON_NPLUSONE_FIELDS <= set(f), f
        assert f["kind"] in ("n_plus_one", "duplicate") and f["severity"] in SEVERITIES, f
        assert f["child_queries"] and f["child_query"] == f["child_queries"][0], f
        assert len(f["child_fingerprints"]) == len(f["child_queries"]), f
        assert isinstance(f["examples"], list) and isinstance(f["confirmed"], bool), f
        assert (f["parent_query"] is None) == (f["kind"] == "duplicate"), f
        assert (f["linked_column"] is not None) <= f["confirmed"], f
    order = [(f["kind"] == "duplicate", SEVERITIES.index(f["severity"]), -f["saving_ms"])
             for f in findings]
    assert order == sorted(order), order


def pgbench_items(pg, transactions, clients=1, mode="prepared"):
    fd, script = tempfile.mkstemp(prefix="pgscope-report-", suffix=".sql")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ITEM_SCRIPT)
        res = h.pgbench(pg.host, pg.port, ["-n", "-M", mode, "-f", script, "-c", str(clients),
                                           "-t", str(transactions)], dbname=REPORT_DB)
    finally:
        os.unlink(script)
    assert res.rc == 0, res
    assert "number of failed transactions: 0 " in res.stdout, res
    return clients * transactions


def items_statement(data):
    found = [st for st in data["statements"] if "report_items" in (st["query"] or "")]
    assert len(found) == 1, [st["query"] for st in data["statements"]]
    return found[0]


def close_to(a, b, rel=1e-6, abs_=0.002):
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def check_text(text):
    """The text report reads in a 100-column terminal."""
    assert "Top statements by total time" in text, text
    for line in text.splitlines():
        assert len(line) <= 100, "line of %d columns: %r" % (len(line), line)


def test_report_after_psql_statements():
    """Statements, errors by SQLSTATE and a fallback fingerprint, in the file and the report."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster, args=["--run-label", "report-psql"]).start()
    for i in range(5):
        res = h.psql(pg.host, pg.port, "SELECT v FROM report_items WHERE id = %d" % (i + 1),
                     dbname=REPORT_DB)
        assert res.rc == 0 and res.stdout.strip() == "item %d" % (i + 1), res
    res = h.psql(pg.host, pg.port, "SELECT 1 / 0 AS report_zero", dbname=REPORT_DB)
    assert res.rc != 0 and "division by zero" in res.stderr, res
    res = h.psql(pg.host, pg.port, "SELEC report_typo FROM nowhere", dbname=REPORT_DB)
    assert res.rc != 0 and "syntax error" in res.stderr, res
    db = stopped(pg)

    # The file itself, as a person with sqlite3 would see it.
    assert dict(rows(db, "SELECT key, value FROM meta")) == {"application": "pgscope",
                                                             "schema_version": "2"}
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    runs = rows(db, "SELECT id, label, ended_at IS NOT NULL, connections FROM runs")
    assert runs == [(1, "report-psql", 1, 7)], runs
    shape = rows(db, "SELECT calls, errors, rows, rows_per_call, error_share, run_label "
                     "FROM statement_stats WHERE query LIKE '%report_items%'")
    assert shape == [(5, 0, 5, 1.0, 0.0, "report-psql")], shape
    slowest = [r[0] for r in rows(db, "SELECT total_ms FROM slowest_statements WHERE run_id = 1")]
    assert slowest == sorted(slowest, reverse=True) and len(slowest) >= 3, slowest
    summary = rows(db, "SELECT shapes, errors, duration_s > 0 FROM run_summary")
    assert summary[0][0] == len(slowest) and summary[0][1] >= 2 and summary[0][2] == 1, summary

    data = report_json(db)
    assert [r["label"] for r in data["runs"]] == ["report-psql"], data["runs"]
    run = data["runs"][0]
    assert run["connections"] == 7 and run["ended_at"] and run["duration_s"] > 0, run
    assert run["events_dropped"] == 0 and run["lost_writes"] == 0, run
    assert run["fingerprint_fallbacks"] >= 1, run
    items = items_statement(data)
    assert (items["calls"], items["errors"], items["rows"]) == (5, 0, 5), items
    assert items["rows_per_call"] == 1.0 and items["command"] == "SELECT", items
    assert items["database"] == REPORT_DB and items["user"] == h.SUPERUSER, items
    assert "$1" in items["query"] and items["example"] is None, items
    assert 0 < items["min_ms"] <= items["mean_ms"] <= items["max_ms"], items
    assert items["p50_ms"] <= items["p95_ms"] <= items["p99_ms"], items
    assert close_to(items["mean_ms"], items["total_ms"] / 5, abs_=0.01), items
    zero = [st for st in data["statements"] if "report_zero" in (st["query"] or "")]
    assert len(zero) == 1 and zero[0]["errors_by_sqlstate"] == {"22012": 1}, zero
    typo = [st for st in data["statements"] if "report_typo" in (st["query"] or "")]
    assert len(typo) == 1 and typo[0]["fallback"] is True, typo
    assert typo[0]["errors_by_sqlstate"] == {"42601": 1}, typo

    # The same figures as the file, for every statement.
    by_key = {(r[0], r[1], r[2]): r[3:] for r in rows(
        db, "SELECT fingerprint, database, user_name, calls, errors, rows, total_ms, p99_ms "
            "FROM statements")}
    assert len(data["statements"]) == len(by_key), data["statements"]
    for st in data["statements"]:
        calls, errors, nrows, total, p99 = by_key[(st["fingerprint"], st["database"], st["user"])]
        assert (st["calls"], st["errors"], st["rows"]) == (calls, errors, nrows), st
        assert close_to(st["total_ms"], total) and close_to(st["p99_ms"], p99), st

    text = report(db).stdout
    check_text(text)
    assert 'Run 1 "report-psql"' in text and "report_items" in text, text
    assert "22012 division_by_zero 1" in text and "42601 syntax_error 1" in text, text
    h.note("%d statement shapes" % len(data["statements"]))


def test_report_pgbench_top_statement():
    """Every pgbench call counted; rows per call and percentiles make sense."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster).start()
    n = pgbench_items(pg, 1000, clients=2)
    db = stopped(pg)

    data = report_json(db, "--limit", "0")
    items = items_statement(data)
    assert items["calls"] == n and items["errors"] == 0 and items["rows"] == n, items
    assert items["rows_per_call"] == 1.0, items
    assert 0 < items["min_ms"] <= items["p50_ms"] * 1.01, items
    assert items["p50_ms"] <= items["p95_ms"] <= items["p99_ms"] <= items["max_ms"] * 1.01, items
    assert data["statements"][0]["total_ms"] >= items["total_ms"], data["statements"][0]
    assert data["runs"][0]["statements"] >= n, data["runs"][0]
    limited = report_json(db, "--limit", "1")
    assert len(limited["statements"]) == 1, limited
    assert limited["statements"][0]["fingerprint"] == data["statements"][0]["fingerprint"]
    check_text(report(db).stdout)
    h.note("%d calls, p50 %.3f ms, p99 %.3f ms" % (n, items["p50_ms"], items["p99_ms"]))


def test_report_all_merges_runs():
    """Two runs into one file: --run picks one, the default is the latest, --all adds them up."""
    cluster = report_cluster()
    first = h.Pgscope(cluster, args=["--run-label", "first"]).start()
    n1 = pgbench_items(first, 300, mode="simple")
    db = stopped(first)
    second = h.Pgscope(cluster, args=["--run-label", "second"])
    second.db = db  # the same file: a second run
    second.start()
    n2 = pgbench_items(second, 500, mode="simple")
    stopped(second)

    assert rows(db, "SELECT id, label FROM runs ORDER BY id") == [(1, "first"), (2, "second")]
    per_run = rows(db, "SELECT run_id, calls, total_ms, stddev_ms, min_ms, max_ms, p50_ms, "
                       "p99_ms FROM statements WHERE query LIKE '%report_items%' ORDER BY run_id")
    assert [(r[0], r[1]) for r in per_run] == [(1, n1), (2, n2)], per_run
    assert all(r[4] > 0 and r[3] > 0 for r in per_run), per_run  # real times to merge

    latest = items_statement(report_json(db))
    assert latest["calls"] == n2, latest
    one = report_json(db, "--run", "1")
    assert [r["label"] for r in one["runs"]] == ["first"], one["runs"]
    assert items_statement(one)["calls"] == n1

    merged = report_json(db, "--all")
    assert [r["label"] for r in merged["runs"]] == ["first", "second"], merged["runs"]
    m = items_statement(merged)
    assert m["calls"] == n1 + n2 and m["rows"] == n1 + n2, m
    assert close_to(m["total_ms"], per_run[0][2] + per_run[1][2]), (m, per_run)
    assert close_to(m["mean_ms"], m["total_ms"] / (n1 + n2), abs_=0.002), m
    assert close_to(m["min_ms"], min(per_run[0][4], per_run[1][4])), m
    assert close_to(m["max_ms"], max(per_run[0][5], per_run[1][5])), m
    # Spread of the two runs together: within-run spread plus the spread of the run means.
    mean = (per_run[0][2] + per_run[1][2]) / (n1 + n2)
    m2 = sum(r[3] ** 2 * r[1] + r[1] * (r[2] / r[1] - mean) ** 2 for r in per_run)
    assert close_to(m["stddev_ms"], math.sqrt(m2 / (n1 + n2)), rel=1e-3), m
    # A merged quantile lies between the runs' own (histograms merged, not averaged).
    for key, col in (("p50_ms", 6), ("p99_ms", 7)):
        lo, hi = sorted((per_run[0][col], per_run[1][col]))
        assert lo * 0.999 - 0.001 <= m[key] <= hi * 1.001 + 0.001, (key, m[key], lo, hi)
    text = report(db, "--all").stdout
    check_text(text)
    assert "All 2 runs merged" in text, text
    h.note("merged %d + %d calls" % (n1, n2))


def test_report_while_pgscope_runs():
    """The file is readable, and reportable, while pgscope writes it; the run has no end yet."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster, args=["--run-label", "live"]).start()
    pgbench_items(pg, 200)

    def live_calls():
        if not os.path.exists(pg.db):
            return 0
        res = h.run([h.PGSCOPE_BIN, "report", "--db", pg.db, "--format", "json"], timeout=30)
        if res.rc != 0:
            return 0
        data = json.loads(res.stdout)
        return sum(st["calls"] for st in data["statements"] if "report_items" in st["query"])

    assert h.wait_for(lambda: live_calls() == 200, 10), live_calls()
    data = report_json(pg.db)
    assert data["runs"][0]["ended_at"] is None and data["runs"][0]["duration_s"] is None, data
    assert "NOTE: run 1 has no end" in report(pg.db).stdout
    assert pg.alive()
    db = stopped(pg)
    data = report_json(db)
    assert data["runs"][0]["ended_at"] is not None, data["runs"]
    assert items_statement(data)["calls"] == 200


def test_report_refuses_what_it_cannot_read():
    """Missing files, other SQLite files, newer schemas and bad options: clear errors."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster).start()
    assert h.psql(pg.host, pg.port, "SELECT 1", dbname=REPORT_DB).rc == 0
    db = stopped(pg)
    work = h.make_temp_dir("pgscope-report-")
    try:
        missing = report(os.path.join(work, "missing.db"), expect_rc=1)
        assert "No such file" in missing.stderr, missing

        other = os.path.join(work, "other.db")
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE invoices (id integer)")
        con.commit()
        con.close()
        res = report(other, expect_rc=1)
        assert "not a pgscope report database" in res.stderr, res

        text = os.path.join(work, "text.db")
        with open(text, "w") as f:
            f.write("just text\n" * 200)
        assert "not a pgscope report database" in report(text, expect_rc=1).stderr

        newer = os.path.join(work, "newer.db")
        shutil.copyfile(db, newer)
        con = sqlite3.connect(newer)
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        con.commit()
        con.close()
        res = report(newer, expect_rc=1)
        assert "newer pgscope" in res.stderr, res

        assert "there is no run 42" in report(db, "--run", "42", expect_rc=1).stderr
        for args in (["--format", "xml"], ["--run", "x"], ["--limit", "-1"], ["--bogus"],
                     ["--run", "1", "--all"]):
            res = report(db, *args, expect_rc=2)
            assert res.stdout == "" and res.stderr, (args, res)
        help_text = report(db, "--help").stdout
        assert "--all" in help_text and "--format" in help_text, help_text
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- N+1 findings

def n_plus_one_tables(cluster):
    """orders (N_ORDERS rows) and their customers, in the report database."""
    cluster.psql("CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text NOT NULL); "
                 "CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, "
                 "customer_id int NOT NULL REFERENCES customers (id), total numeric); "
                 "INSERT INTO customers SELECT 1000 + g, 'customer ' || g "
                 "FROM generate_series(1, %d) g ON CONFLICT DO NOTHING; "
                 "INSERT INTO orders SELECT g, 1000 + (g * 7) %% %d + 1, g * 10 "
                 "FROM generate_series(1, %d) g ON CONFLICT DO NOTHING"
                 % (N_ORDERS, N_ORDERS, N_ORDERS), dbname=REPORT_DB)


def test_report_n_plus_one_from_psycopg2():
    """The psycopg2 loop of the N+1 acceptance tests (simple protocol, literals inline, one
    transaction): one confirmed N+1 in the file, first in the text report, and in the JSON."""
    cluster = report_cluster()
    n_plus_one_tables(cluster)
    pg = h.Pgscope(cluster, args=["--run-label", "n-plus-one"]).start()
    conn = h.connect(pg.host, pg.port, dbname=REPORT_DB)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, customer_id FROM orders ORDER BY id LIMIT 50")
            orders = cur.fetchall()
            assert len(orders) == N_ORDERS
            for _, customer_id in orders:
                cur.execute("SELECT * FROM customers WHERE id = %s", (customer_id,))
                assert cur.fetchone()[0] == customer_id
        conn.commit()
    finally:
        conn.close()
    db = stopped(pg)

    data = report_json(db)
    loops = [f for f in data["n_plus_one"] if f["kind"] == "n_plus_one"]
    assert len(loops) == 1, data["n_plus_one"]
    f = loops[0]
    assert f["confirmed"] is True and f["linked_column"] == "orders.customer_id", f
    assert (f["max_n"], f["total_n"], f["occurrences"]) == (N_ORDERS, N_ORDERS, 1), f
    assert "FROM orders" in f["parent_query"], f
    assert "customers" in f["child_query"] and "$1" in f["child_query"], f
    assert f["total_ms"] > 0 and 0 <= f["saving_ms"] <= f["total_ms"], f
    assert "ANY(" in f["suggestion"] and "JOIN" in f["suggestion"].upper(), f
    # Parameters are not stored unless store_params is on.
    assert 1 <= len(f["examples"]) <= 3, f
    assert all(e == "[redacted]" for e in f["examples"]), f
    # Every customer was fetched once: no duplicate query.
    assert [d for d in data["n_plus_one"] if d["kind"] == "duplicate"] == [], data["n_plus_one"]
    view = rows(db, "SELECT run_label, kind, confirmed, max_n, linked_column "
                    "FROM n_plus_one_findings")
    assert view == [("n-plus-one", "n_plus_one", 1, N_ORDERS, "orders.customer_id")], view

    text = report(db).stdout
    check_text(text)
    assert text.index("N+1 queries") < text.index("Top statements by total time"), text
    assert "orders.customer_id" in text and "N max %d" % N_ORDERS in text, text
    h.note("N = %d, %.3f ms in the children" % (f["max_n"], f["total_ms"]))


LONG_FIX = ("Load the customers of all orders in one query instead of one query per order:\n"
            "    SELECT * FROM customers WHERE id = ANY($1)\n"
            "  with $1 the array of the orders.customer_id values the first query returned; or, "
            "when the application needs each order with its customer anyway, join the two and "
            "let PostgreSQL do the loop:\n"
            "    SELECT o.id, o.customer_id, c.* FROM orders o JOIN customers c "
            "ON c.id = o.customer_id ORDER BY o.id LIMIT $1\n")


def add_finding(con, run_id, kind, parent_fp, child_fps, child_queries, confirmed, linked, occ,
                max_n, total_ms, saving_ms, severity, examples, suggestion,
                parent_query="SELECT id, customer_id FROM orders ORDER BY id LIMIT $1"):
    """A finding row as pgscope writes it (src/store/store.c)."""
    con.execute("INSERT INTO n_plus_one (run_id, kind, parent_fingerprint, parent_query, "
                "child_fingerprints, child_queries, confirmed, linked_column, occurrences, max_n, "
                "total_n, total_ms, saving_ms, examples, severity, suggestion, first_seen, "
                "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "'2026-11-21 18:40:00.123', '2026-11-21 18:40:05.456')",
                (run_id, kind, parent_fp, parent_query if kind == "n_plus_one" else None,
                 ",".join(child_fps), json.dumps(child_queries), int(confirmed), linked, occ,
                 max_n, max_n * occ, total_ms, saving_ms, json.dumps(examples), severity,
                 suggestion))


def test_report_shows_n_plus_one_findings():
    """Findings in the file (written here as the store writes them, whatever found them): in
    the text report first, with their fixes whole, then duplicates and unused allow-list
    entries; in the JSON; merged over runs with --all."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster, args=["--run-label", "findings"]).start()
    assert h.psql(pg.host, pg.port, "SELECT v FROM report_items WHERE id = 1",
                  dbname=REPORT_DB).rc == 0
    db = stopped(pg)
    loop = ("00000000000000a0", ["00000000000000b0"], ["SELECT * FROM customers WHERE id = $1"])
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM n_plus_one")  # only the findings below
        con.execute("UPDATE runs SET unused_ignores = ? WHERE id = 1",
                    (json.dumps(["0123456789abcdef", "audit_log"]),))
        con.execute("INSERT INTO runs (label, started_at, ended_at, pgscope_version, "
                    "unused_ignores) VALUES ('second', '2026-11-22 09:00:00.000', "
                    "'2026-11-22 09:01:00.000', 'test', ?)", (json.dumps(["audit_log", "x"]),))
        add_finding(con, 1, "n_plus_one", loop[0], loop[1], loop[2], True, "orders.customer_id",
                    2, 50, 20.0, 18.0, "high", [["1007"], ["1014"], ["1021"]], LONG_FIX)
        add_finding(con, 1, "n_plus_one", "00000000000000a1",
                    ["00000000000000b1", "00000000000000b2"],
                    ["SELECT * FROM profiles WHERE user_id = $1",
                     "SELECT * FROM addresses WHERE user_id = $1 AND kind = $2 AND "
                     "valid_during @> now() AND country IN (SELECT code FROM countries)"],
                    False, "", 1, 7, 3.5, 2.5, "medium", ["[redacted]"],
                    "SELECT * FROM profiles WHERE user_id = ANY($1)",
                    parent_query="SELECT id FROM users WHERE team_id = $1")
        add_finding(con, 1, "duplicate", "", ["00000000000000d0"],
                    ["SELECT * FROM settings WHERE id = $1"], False, "", 3, 40, 12.0, 11.0, "low",
                    [["1"]], "Read it once and keep it: it was read 40 times with the same id.")
        add_finding(con, 2, "n_plus_one", loop[0], loop[1], loop[2], False, "", 1, 80, 10.0, 9.0,
                    "medium", ["[redacted]"], "SELECT * FROM customers WHERE id = ANY($1)")
    con.close()

    view = rows(db, "SELECT run_label, kind, severity, child_query FROM n_plus_one_findings "
                    "WHERE run_id = 1")
    assert [v[:3] for v in view] == [("findings", "n_plus_one", "high"),
                                     ("findings", "n_plus_one", "medium"),
                                     ("findings", "duplicate", "low")], view
    assert view[0][3] == loop[2][0], view

    first = report_json(db, "--run", "1")
    got = [(f["kind"], f["severity"]) for f in first["n_plus_one"]]
    assert got == [("n_plus_one", "high"), ("n_plus_one", "medium"), ("duplicate", "low")], got
    a, b, d = first["n_plus_one"]
    assert (a["confirmed"], a["linked_column"], a["max_n"], a["total_n"]) == \
        (True, "orders.customer_id", 50, 100), a
    assert a["examples"] == [["1007"], ["1014"], ["1021"]] and a["suggestion"] == LONG_FIX, a
    assert a["child_fingerprints"] == loop[1] and a["parent_fingerprint"] == loop[0], a
    assert b["confirmed"] is False and b["linked_column"] is None, b
    assert b["child_fingerprints"] == ["00000000000000b1", "00000000000000b2"], b
    assert len(b["child_queries"]) == 2 and b["examples"] == ["[redacted]"], b
    assert d["parent_query"] is None and d["parent_fingerprint"] is None, d
    assert first["unused_ignores"] == ["0123456789abcdef", "audit_log"], first["unused_ignores"]

    latest = report_json(db)
    assert [(f["max_n"], f["confirmed"]) for f in latest["n_plus_one"]] == [(80, False)], latest
    assert latest["unused_ignores"] == ["audit_log", "x"], latest["unused_ignores"]

    merged = report_json(db, "--all")
    m = [f for f in merged["n_plus_one"] if f["parent_fingerprint"] == loop[0]]
    assert len(m) == 1 and len(merged["n_plus_one"]) == 3, merged["n_plus_one"]
    m = m[0]
    assert (m["occurrences"], m["total_n"], m["max_n"]) == (3, 180, 80), m
    assert close_to(m["total_ms"], 30.0) and close_to(m["saving_ms"], 27.0), m
    assert m["confirmed"] is True and m["linked_column"] == "orders.customer_id", m
    assert m["severity"] == "high", m
    # Only what no run used: "x" was not configured in the first run, so it is not claimed.
    assert merged["unused_ignores"] == ["audit_log"], merged["unused_ignores"]
    assert [r["unused_ignores"] for r in merged["runs"]] == [["0123456789abcdef", "audit_log"],
                                                             ["audit_log", "x"]], merged["runs"]

    text = report(db, "--run", "1").stdout
    check_text(text)
    marks = ["N+1 queries (2", "1. N+1, confirmed, high: N max 50, 2 occurrences",
             "2. N+1, suspected, medium", "Duplicate queries", "3. duplicate, low",
             "Allow-list entries that never matched: 0123456789abcdef, audit_log",
             "Top statements by total time"]
    where = [text.find(mark) for mark in marks]
    assert -1 not in where and where == sorted(where), list(zip(marks, where))
    assert "orders.customer_id" in text and '["1007"], ["1014"], ["1021"]' in text, text
    assert "child 2" in text and "[redacted]" in text, text
    # The fix is printed whole, wrapped to the width, never cut.
    assert LONG_FIX.split() == text[text.index("fix", where[1]):].split()[1:len(
        LONG_FIX.split()) + 1], text
    merged_text = report(db, "--all").stdout
    check_text(merged_text)
    assert "1. N+1, confirmed, high: N max 80, 3 occurrences" in merged_text, merged_text


def test_report_reads_a_version_1_file():
    """A file of schema version 1 (before N+1 detection) is reported as it is, read-only:
    no findings, no allow-list report, and the file stays at version 1."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster).start()
    assert h.psql(pg.host, pg.port, "SELECT v FROM report_items WHERE id = 2",
                  dbname=REPORT_DB).rc == 0
    db = stopped(pg)
    work = h.make_temp_dir("pgscope-report-")
    try:
        old = os.path.join(work, "v1.db")
        shutil.copyfile(db, old)
        con = sqlite3.connect(old)
        # What version 2 added, taken away again; the runs table without its new column.
        con.executescript("""
            DROP VIEW n_plus_one_findings;
            DROP TABLE n_plus_one;
            ALTER TABLE runs RENAME TO runs_v2;
            CREATE TABLE runs AS SELECT id, label, started_at, ended_at, pgscope_version,
                upstream, connections, statements, events_dropped, fingerprint_fallbacks,
                fingerprint_parses, fingerprint_hits, track_desyncs, lost_writes FROM runs_v2;
            UPDATE meta SET value = '1' WHERE key = 'schema_version';
        """)
        con.close()
        data = report_json(old)
        assert data["schema_version"] == 1, data
        assert data["n_plus_one"] == [] and data["unused_ignores"] == [], data
        assert data["runs"][0]["unused_ignores"] is None, data["runs"]
        assert items_statement(data)["calls"] == 1
        text = report(old).stdout
        check_text(text)
        assert "N+1" not in text, text
        assert rows(old, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
