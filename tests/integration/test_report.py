"""`pgscope report` end to end: traffic through pgscope, a SIGTERM, then the SQLite file read
with Python's sqlite3 module and the report read as JSON and as text; N+1 findings, EXPLAIN
plans and their findings, and index suggestions in the file and in the report."""

import json
import math
import os
import re
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
JSON_PLAN_FIELDS = {"id", "run_id", "seq", "fingerprint", "database", "user", "query", "params",
                    "analyzed", "trigger_ms", "planning_ms", "execution_ms", "side_ms", "taken_at"}
JSON_PLAN_FINDING_FIELDS = {"plan_id", "fingerprint", "query", "kind", "relation", "node_path",
                            "detail", "magnitude", "weight_ms", "calls", "mean_ms",
                            "seen_in_plans"}
JSON_INDEX_FIELDS = {"rank", "run_id", "database", "ddl", "schema", "table", "columns",
                     "predicate", "verified", "cost_before", "cost_after", "benefit_ms",
                     "size_bytes", "statements", "write_statements", "breaks_hot", "misestimate"}
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


def store_schema_version():
    """The schema version this pgscope writes (STORE_SCHEMA_VERSION)."""
    with open(os.path.join(h.REPO, "include", "pgscope", "store.h")) as f:
        return int(re.search(r"#define STORE_SCHEMA_VERSION (\d+)", f.read()).group(1))


def report_json(db, *args):
    data = json.loads(report(db, "--format", "json", *args).stdout)
    assert {"pgscope_version", "runs", "statements", "n_plus_one", "unused_ignores", "plans",
            "findings", "explain", "index_suggestions"} <= set(data), data.keys()
    for x in data["index_suggestions"]:
        assert JSON_INDEX_FIELDS <= set(x), x
        assert isinstance(x["columns"], list) and isinstance(x["statements"], list), x
    ranks = [x["rank"] for x in data["index_suggestions"]]
    assert ranks == sorted(ranks), ranks
    assert len({x["run_id"] for x in data["index_suggestions"]}) <= 1, data["index_suggestions"]
    for plan in data["plans"]:
        assert JSON_PLAN_FIELDS <= set(plan) and "plan" not in plan, plan
    for f in data["findings"]:
        assert JSON_PLAN_FINDING_FIELDS <= set(f), f
    weights = [f["weight_ms"] for f in data["findings"]]
    assert weights == sorted(weights, reverse=True), weights
    assert all(isinstance(n, int) for n in data["explain"].values()), data["explain"]
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
    assert dict(rows(db, "SELECT key, value FROM meta")) == {
        "application": "pgscope", "schema_version": str(store_schema_version())}
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


def test_percentiles_stay_within_min_and_max():
    """A shape of one call reports that call for every percentile; no percentile of any shape
    lies outside [min, max], in the file and in the report (one run, and runs merged)."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster).start()
    res = h.psql(pg.host, pg.port, "SELECT pg_sleep(0.0301)", dbname=REPORT_DB)
    assert res.rc == 0, res
    pgbench_items(pg, 300, mode="simple")
    db = stopped(pg)
    for run in (report_json(db), report_json(db, "--all")):
        for s in run["statements"]:
            for key in ("p50_ms", "p95_ms", "p99_ms"):
                if s[key] is not None:
                    assert s["min_ms"] <= s[key] <= s["max_ms"], (key, s)
        sleep = [s for s in run["statements"] if "pg_sleep" in (s["query"] or "")]
        assert len(sleep) == 1 and sleep[0]["calls"] == 1, sleep
        one = sleep[0]
        assert one["p50_ms"] == one["p95_ms"] == one["p99_ms"] == one["max_ms"], one
    stored = rows(db, "SELECT count(*) FROM statements WHERE p50_ms < min_ms OR p95_ms > max_ms "
                      "OR p99_ms > max_ms")
    assert stored == [(0,)], stored


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
        # What versions 4, 3 and 2 added, taken away again; the runs table without its new
        # column.
        con.executescript("""
            DROP TABLE index_suggestions;
            DROP VIEW plan_findings_ranked;
            DROP TABLE plan_findings;
            DROP TABLE plans;
            DROP TABLE explain_skips;
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
        assert (data["plans"], data["findings"], data["explain"]) == ([], [], {}), data
        assert data["index_suggestions"] == [], data
        assert items_statement(data)["calls"] == 1
        text = report(old).stdout
        check_text(text)
        assert "N+1" not in text, text
        assert rows(old, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- EXPLAIN plans and findings

PLANS_DIR = os.path.join(h.REPO, "tests", "unit", "plans")

# Two statement shapes: the heavy one (most total time, small finding) and the light one (little
# time, a finding of a far larger magnitude). Ranking by weight puts the heavy one first.
HEAVY = ("00000000000000e1", "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id "
         "WHERE o.id <= $1", 500, 5000.0)
LIGHT = ("00000000000000e2", "SELECT id, amount FROM orders WHERE status = $1 "
         "ORDER BY amount DESC LIMIT $2", 3, 300.0)
DELETE = ("00000000000000e3", "DELETE FROM orders WHERE status = $1", 1, 60.0)
LOOP_DETAIL = ("Seq Scan on customers c ran 200 times inside a nested loop, returning 2000 rows "
               "each time, with no index to look rows up by; the join filter "
               "(o.customer_id = c.id) removed 399800 rows")
FILTER_DETAIL = "removed %d of 200000 rows (%s%%) by filter (orders.status = '?'::text)"
EXPLAIN_COUNTS = {"sample": 3, "dml": 1, "budget": 12, "no_connection": 1}


def plan_text(name):
    """A plan captured from PostgreSQL 15, its literals read '?' as pgscope stores them without
    store_params."""
    with open(os.path.join(PLANS_DIR, name)) as f:
        return f.read().replace("'pending'", "'?'")


def add_statement(con, run_id, shape):
    fingerprint, query, calls, total_ms = shape
    con.execute("INSERT INTO statements (run_id, fingerprint, database, user_name, query, "
                "command, calls, rows, total_ms, mean_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, fingerprint, REPORT_DB, h.SUPERUSER, query, query.split()[0], calls,
                 calls, total_ms, total_ms / calls))


def add_plan(con, run_id, seq, shape, name, findings=(), analyzed=True, params=None,
             times=(0.3, 13.2)):
    """A plan row and its findings as pgscope writes them (src/store/store.c); its id."""
    cur = con.execute(
        "INSERT INTO plans (run_id, seq, fingerprint, database, user_name, query, params, "
        "analyzed, trigger_ms, planning_ms, execution_ms, side_ms, plan, taken_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '2026-11-21 18:40:10.000')",
        (run_id, seq, shape[0], REPORT_DB, h.SUPERUSER, shape[1], params, int(analyzed),
         shape[3] / shape[2], times[0], times[1] if analyzed else None, 4.5, plan_text(name)))
    for n, (kind, path, relation, detail, magnitude) in enumerate(findings, 1):
        con.execute("INSERT INTO plan_findings (plan_id, n, run_id, fingerprint, kind, node_path, "
                    "relation, detail, magnitude) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cur.lastrowid, n, run_id, shape[0], kind, path, relation, detail, magnitude))
    return cur.lastrowid


def seq_scan_finding(removed, share):
    return ("seq_scan_filter", "Limit > Sort > Seq Scan on orders", "orders",
            FILTER_DETAIL % (removed, share), removed)


def plans_file():
    """A file from a real (short) run, with plans, findings and EXPLAIN outcomes added as the
    store writes them: {name: plan id} and the path. The light shape was sampled twice; its
    second plan shows the larger filter."""
    cluster = report_cluster()
    pg = h.Pgscope(cluster, args=["--run-label", "plans"]).start()
    assert h.psql(pg.host, pg.port, "SELECT v FROM report_items WHERE id = 3",
                  dbname=REPORT_DB).rc == 0
    db = stopped(pg)
    con = sqlite3.connect(db)
    with con:
        for table in ("plan_findings", "plans", "explain_skips"):
            con.execute("DELETE FROM %s" % table)  # only the rows below
        for shape in (HEAVY, LIGHT, DELETE):
            add_statement(con, 1, shape)
        ids = {
            "heavy": add_plan(con, 1, 1, HEAVY, "nested_loop_inner_scan.json", [
                ("nested_loop_inner_scan", "Nested Loop > Seq Scan on customers c", "customers",
                 LOOP_DETAIL, 200)]),
            "light_small": add_plan(con, 1, 2, LIGHT, "seq_scan_filter.json",
                                    [seq_scan_finding(150000, "75.0")]),
            "light": add_plan(con, 1, 3, LIGHT, "seq_scan_filter.json",
                              [seq_scan_finding(199800, "99.9")],
                              params=json.dumps(["pending", "50"])),
            "delete": add_plan(con, 1, 4, DELETE, "plain_delete.json", analyzed=False),
        }
        con.executemany("INSERT INTO explain_skips (run_id, reason, count) VALUES (1, ?, ?)",
                        EXPLAIN_COUNTS.items())
    con.close()
    return db, ids


def statement_block(text, query_start):
    """The lines of the statements table from the statement whose query starts so, up to the next
    statement (or the table's end)."""
    table = text[text.index("Top statements by total time"):].splitlines()
    row = re.compile(r" {0,2}\d+\*? ")  # a table row: the rank, right-aligned in 3 columns
    start = [i for i, line in enumerate(table) if query_start in line and row.match(line)]
    assert len(start) == 1, (query_start, text)
    block = [table[start[0]]]
    for line in table[start[0] + 1:]:
        if not line.startswith("     ") or row.match(line):
            break
        block.append(line)
    return block


def test_report_plan_findings():
    """Plan findings under their statements, consolidated per shape; ranked by the statement's
    time, not by their own size; EXPLAIN outcomes in the summary; the same in the JSON."""
    db, ids = plans_file()
    view = rows(db, "SELECT kind, weight_ms, plan_id FROM plan_findings_ranked WHERE run_id = 1")
    assert [v[0] for v in view] == ["nested_loop_inner_scan", "seq_scan_filter",
                                    "seq_scan_filter"], view

    text = report(db).stdout
    check_text(text)
    flat = " ".join(text.split())
    assert ("EXPLAIN samples 4 plans; not sampled: 12 budget, 1 dml (explained without "
            "ANALYZE), 1 no_connection") in flat, text
    marks = ["Plan findings by statement time (2 of 2; times in ms)",
             "1. nested_loop_inner_scan on customers: statement time 5000.000 ms, 500 calls, "
             "mean 10.000 ms", "plan %d: pgscope report --plan %d" % (ids["heavy"], ids["heavy"]),
             "2. seq_scan_filter on orders: statement time 300.000 ms, 3 calls, mean 100.000 ms",
             "plan %d: pgscope report --plan %d, seen in 2 plans" % (ids["light"], ids["light"]),
             "Top statements by total time"]
    where = [flat.find(mark) for mark in marks]
    assert -1 not in where and where == sorted(where), list(zip(marks, where))

    heavy = " ".join(" ".join(statement_block(text, "SELECT * FROM orders o JOIN")).split())
    # The node path may lose its first nodes to the width, never the node itself.
    assert re.search(r"nested_loop_inner_scan at (Nested Loop|\.\.\.) > Seq Scan on customers c "
                     r"\(plan %d: pgscope report --plan %d\)" % (ids["heavy"], ids["heavy"]),
                     heavy), text
    assert LOOP_DETAIL in heavy and "seq_scan_filter" not in heavy, heavy
    light = statement_block(text, "SELECT id, amount FROM orders")
    light_text = " ".join(" ".join(light).split())
    # One line for the two plans' filter finding: the larger one, with its plan.
    assert light_text.count("seq_scan_filter") == 1, light
    assert FILTER_DETAIL % (199800, "99.9") in light_text, light
    assert "(plan %d: pgscope report --plan %d)" % (ids["light"], ids["light"]) in light_text
    assert len(statement_block(text, "DELETE FROM orders")) == 1, text

    limited = report(db, "--limit", "1").stdout
    check_text(limited)
    assert "Plan findings by statement time (1 of 2" in limited, limited
    assert "2. seq_scan_filter" not in limited, limited

    data = report_json(db)
    assert [p["id"] for p in data["plans"]] == sorted(ids.values()), data["plans"]
    by_id = {p["id"]: p for p in data["plans"]}
    assert by_id[ids["light"]]["params"] == ["pending", "50"], by_id
    assert by_id[ids["heavy"]]["params"] is None and by_id[ids["heavy"]]["analyzed"] is True
    dml = by_id[ids["delete"]]
    assert dml["analyzed"] is False and dml["execution_ms"] is None, dml
    assert (dml["seq"], dml["run_id"], dml["planning_ms"]) == (4, 1, 0.3), dml
    assert close_to(dml["trigger_ms"], 60.0) and close_to(dml["side_ms"], 4.5), dml
    got = [(f["kind"], f["plan_id"], f["seen_in_plans"], f["calls"]) for f in data["findings"]]
    assert got == [("nested_loop_inner_scan", ids["heavy"], 1, 500),
                   ("seq_scan_filter", ids["light"], 2, 3)], got
    first, second = data["findings"]
    assert close_to(first["weight_ms"], 5000.0) and close_to(first["mean_ms"], 10.0), first
    assert first["magnitude"] == 200 and first["detail"] == LOOP_DETAIL, first
    assert first["fingerprint"] == HEAVY[0] and first["query"] == HEAVY[1], first
    assert first["relation"] == "customers", first
    assert close_to(second["weight_ms"], 300.0) and second["magnitude"] == 199800, second
    assert second["node_path"] == "Limit > Sort > Seq Scan on orders", second
    assert data["explain"] == EXPLAIN_COUNTS, data["explain"]
    h.note("%d plans, %d findings" % (len(data["plans"]), len(data["findings"])))


def test_report_plan_findings_all_runs():
    """--all: plans and outcomes of every run; a shape's weight is its time in all of them, so a
    second run where the light statement dominated moves its finding first."""
    db, ids = plans_file()
    con = sqlite3.connect(db)
    with con:
        con.execute("INSERT INTO runs (label, started_at, ended_at, pgscope_version) VALUES "
                    "('second', '2026-11-22 09:00:00.000', '2026-11-22 09:01:00.000', 'test')")
        add_statement(con, 2, (LIGHT[0], LIGHT[1], 1000, 20000.0))
        again = add_plan(con, 2, 1, LIGHT, "seq_scan_filter.json", [seq_scan_finding(1000, "0.5")])
        con.execute("INSERT INTO explain_skips (run_id, reason, count) VALUES (2, 'budget', 5), "
                    "(2, 'sample', 1)")
    con.close()

    latest = report_json(db)
    assert [p["id"] for p in latest["plans"]] == [again], latest["plans"]
    assert [(f["plan_id"], f["seen_in_plans"]) for f in latest["findings"]] == [(again, 1)]
    assert latest["explain"] == {"budget": 5, "sample": 1}, latest["explain"]

    merged = report_json(db, "--all")
    assert len(merged["plans"]) == 5, merged["plans"]
    got = [(f["kind"], f["plan_id"], f["seen_in_plans"], f["calls"]) for f in merged["findings"]]
    assert got == [("seq_scan_filter", ids["light"], 3, 1003),
                   ("nested_loop_inner_scan", ids["heavy"], 1, 500)], got
    assert close_to(merged["findings"][0]["weight_ms"], 20300.0), merged["findings"]
    assert merged["explain"] == {"sample": 4, "budget": 17, "dml": 1, "no_connection": 1}
    text = report(db, "--all").stdout
    check_text(text)
    flat = " ".join(text.split())
    assert "5 plans; not sampled: 17 budget" in flat, text
    assert "1. seq_scan_filter on orders: statement time 20300.000 ms" in flat, text


def test_report_plan_by_id():
    """--plan ID: the header, the plan as a tree, its findings; planned-only DML says so; an
    unknown id is an error; the same as JSON with the plan parsed."""
    db, ids = plans_file()
    res = report(db, "--plan", str(ids["light"]))
    text = res.stdout
    assert res.stderr == "", res
    assert text.startswith('Plan %d of run 1 "plans"' % ids["light"]), text
    flat = " ".join(text.split())
    for mark in ["query %s" % LIGHT[1], "fingerprint %s" % LIGHT[0], "database %s" % REPORT_DB,
                 "trigger duration 100.000 ms", "planning 0.300 ms", "execution 13.200 ms",
                 "explained EXPLAIN ANALYZE", 'params ["pending", "50"]']:
        assert mark in flat, (mark, text)
    tree = [text.find(mark) for mark in ("Limit  (cost=", "-> Sort", "-> Seq Scan on orders",
                                         "Filter: (orders.status = '?'::text)",
                                         "Rows Removed by Filter: 199800", "Findings (1)",
                                         "1. seq_scan_filter at Limit > Sort > Seq Scan on orders")]
    assert -1 not in tree and tree == sorted(tree), (tree, text)
    assert FILTER_DETAIL % (199800, "99.9") in flat, text

    dml = report(db, "--plan", str(ids["delete"])).stdout
    dml_flat = " ".join(dml.split())
    assert "explained planned only (DML, not executed)" in dml_flat, dml
    assert "execution none: not executed" in dml_flat, dml
    assert "params not stored (store_params is off)" in dml_flat, dml
    assert "Delete on orders" in dml and "-> Seq Scan on orders" in dml, dml
    assert "No findings in this plan." in dml, dml

    missing = report(db, "--plan", "999", expect_rc=1)
    assert missing.stdout == "" and "there is no plan 999" in missing.stderr, missing
    for args in (["--plan", "x"], ["--plan", "0"], ["--plan", "1", "--all"],
                 ["--plan", "1", "--run", "1"], ["--plan"]):
        res = report(db, *args, expect_rc=2)
        assert res.stdout == "" and res.stderr, (args, res)
    assert "--plan" in report(db, "--help").stdout

    data = json.loads(report(db, "--plan", str(ids["light"]), "--format", "json").stdout)
    assert JSON_PLAN_FIELDS <= set(data) and data["run_label"] == "plans", data
    assert (data["id"], data["seq"], data["fingerprint"]) == (ids["light"], 3, LIGHT[0]), data
    assert data["params"] == ["pending", "50"] and data["analyzed"] is True, data
    assert data["plan"][0]["Plan"]["Node Type"] == "Limit", data["plan"]
    assert data["findings"] == [{"kind": "seq_scan_filter", "relation": "orders",
                                 "node_path": "Limit > Sort > Seq Scan on orders",
                                 "detail": FILTER_DETAIL % (199800, "99.9"),
                                 "magnitude": 199800}], data["findings"]
    dml = json.loads(report(db, "--plan", str(ids["delete"]), "--format", "json").stdout)
    assert dml["analyzed"] is False and dml["findings"] == [] and dml["params"] is None, dml
    assert dml["plan"][0]["Plan"]["Operation"] == "Delete", dml["plan"]


def test_report_reads_a_version_2_file():
    """A file of schema version 2 (before EXPLAIN sampling) is reported as it is, read-only:
    no plans, findings or EXPLAIN outcomes, and --plan says why there is no plan."""
    db, _ = plans_file()
    work = h.make_temp_dir("pgscope-report-")
    try:
        old = os.path.join(work, "v2.db")
        shutil.copyfile(db, old)
        con = sqlite3.connect(old)
        con.executescript("""
            DROP TABLE index_suggestions;
            DROP VIEW plan_findings_ranked;
            DROP TABLE plan_findings;
            DROP TABLE plans;
            DROP TABLE explain_skips;
            UPDATE meta SET value = '2' WHERE key = 'schema_version';
        """)
        con.close()
        data = report_json(old)
        assert data["schema_version"] == 2, data
        assert (data["plans"], data["findings"], data["explain"]) == ([], [], {}), data
        assert data["index_suggestions"] == [], data
        assert {st["fingerprint"] for st in data["statements"]} >= {HEAVY[0], LIGHT[0]}, data
        text = report(old).stdout
        check_text(text)
        assert "EXPLAIN samples" not in text and "Plan findings" not in text, text
        assert "pgscope report --plan" not in text, text
        res = report(old, "--plan", "1", expect_rc=1)
        assert "there is no plan 1" in res.stderr and "schema version 2" in res.stderr, res
        assert rows(old, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- index suggestions

# The advisor's consolidation of run 1 as src/store/store.c writes it (rank 1 first): two
# verified suggestions by benefit, then one unverified (no hypopg), with NULL figures. The second
# has quoted names and a literal with spaces, and a DDL long enough to wrap.
ORDERS_DDL = 'CREATE INDEX CONCURRENTLY ON "public"."orders" ("status", "amount")'
# Its quoted "created at the shop" straddles the wrapping column: it must move down whole.
LATE_DDL = ('CREATE INDEX CONCURRENTLY ON "public"."orders" ("customer_id", "placed on", '
            '"created at the shop") WHERE status = \'shipped late\'')
CUSTOMERS_DDL = 'CREATE INDEX CONCURRENTLY ON "Customers" ("email")'
UNKNOWN_FP = "00000000000000ff"  # a statement with no row in the run
INDEXES = [
    dict(rank=1, database=REPORT_DB, ddl=ORDERS_DDL, schema="public", table="orders",
         columns=["status", "amount"], predicate="", verified=True, cost_before=3774.0,
         cost_after=16.31, benefit_ms=298.7, size_bytes=2138112.0, statements=[LIGHT[0]],
         write_statements=12, breaks_hot=True, misestimate=False),
    dict(rank=2, database=REPORT_DB, ddl=LATE_DDL, schema="public", table="orders",
         columns=["customer_id", "placed on", "created at the shop"],
         predicate="status = 'shipped late'",
         verified=True, cost_before=2400.5, cost_after=1200.25, benefit_ms=150.0,
         size_bytes=40960.0, statements=[UNKNOWN_FP, DELETE[0], HEAVY[0]], write_statements=1,
         breaks_hot=False, misestimate=True),
    dict(rank=3, database=REPORT_DB, ddl=CUSTOMERS_DDL, schema="", table="Customers",
         columns=["email"], predicate="", verified=False, cost_before=None, cost_after=None,
         benefit_ms=None, size_bytes=None, statements=[HEAVY[0]], write_statements=0,
         breaks_hot=False, misestimate=True),
]


def add_indexes(con, run_id, indexes):
    con.execute("DELETE FROM index_suggestions WHERE run_id = ?", (run_id,))  # replaced whole
    for x in indexes:
        con.execute(
            "INSERT INTO index_suggestions (run_id, rank, database, ddl, schema_name, table_name, "
            "columns, predicate, verified, cost_before, cost_after, benefit_ms, size_bytes, "
            "statements, write_statements, breaks_hot, misestimate) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, x["rank"], x["database"], x["ddl"], x["schema"], x["table"],
             json.dumps(x["columns"]), x["predicate"], int(x["verified"]), x["cost_before"],
             x["cost_after"], x["benefit_ms"], x["size_bytes"], json.dumps(x["statements"]),
             x["write_statements"], int(x["breaks_hot"]), int(x["misestimate"])))


def indexes_file():
    """plans_file() with the index suggestions above in run 1."""
    db, ids = plans_file()
    con = sqlite3.connect(db)
    with con:
        add_indexes(con, 1, INDEXES)
    con.close()
    return db, ids


def index_blocks(text):
    """The index suggestions section of a text report: {rank: its lines flattened}."""
    start = text.index("\nIndex suggestions (")
    end = text.index("\nPlan findings by statement time", start)
    blocks, rank = {}, None
    for line in text[start:end].splitlines()[2:]:
        head = re.match(r" {0,2}(\d+)\. ", line)
        if head:
            rank = int(head.group(1))
            blocks[rank] = []
        if rank is not None and line.strip():
            blocks[rank].append(line)
    return {rank: " ".join(" ".join(lines).split()) for rank, lines in blocks.items()}


def test_report_index_suggestions():
    """The text section: each suggestion's DDL whole, verified or clearly UNVERIFIED, cost, time
    saved and size, the statements it helps with their text, calls and mean, its write overhead
    and HOT warning, the ANALYZE advice after a misestimate; between the N+1 findings and the
    plan findings; counted in the summary; --limit."""
    db, _ = indexes_file()
    text = report(db).stdout
    check_text(text)
    flat = " ".join(text.split())
    assert "index suggestions 3 (2 verified)" in flat, text
    marks = ["No N+1 or duplicate queries found.",
             "Index suggestions (3 of 3; verified first, by estimated time saved; times in ms)",
             "Plan findings by statement time", "Top statements by total time"]
    where = [flat.find(mark) for mark in marks]
    assert -1 not in where and where == sorted(where), list(zip(marks, where))

    blocks = index_blocks(text)
    assert sorted(blocks) == [1, 2, 3], blocks
    first = blocks[1]
    assert first.startswith("1. verified by hypopg: cost 3774.00 -> 16.31 (-99.6%), saves "
                            "~298.700 ms over the run, size 2.0 MB index " + ORDERS_DDL), first
    assert "helps SELECT id, amount FROM orders WHERE status = $1" in first, first
    assert "(3 calls, mean 100.000 ms)" in first, first
    assert ("writes 12 writes to the table during the run; UPDATEs set an indexed column: HOT "
            "updates lost") in first, first
    assert "UNVERIFIED" not in first and "ANALYZE" not in first, first

    second = blocks[2]
    assert second.startswith("2. verified by hypopg: cost 2400.50 -> 1200.25 (-50.0%), saves "
                             "~150.000 ms over the run, size 40.0 kB index " + LATE_DDL), second
    # The statements it helps, the busiest first; one the run has no row of, last.
    helped = [second.find(m) for m in ("helps SELECT * FROM orders o JOIN customers c",
                                       "(500 calls, mean 10.000 ms)",
                                       "DELETE FROM orders WHERE status = $1 (1 call, mean "
                                       "60.000 ms)",
                                       "statement %s (not among the run's statements)"
                                       % UNKNOWN_FP)]
    assert -1 not in helped and helped == sorted(helped), (helped, second)
    assert "writes 1 write to the table during the run" in second and "HOT" not in second
    assert ("caution a plan's row estimate was 10x off: run ANALYZE public.orders (or CREATE "
            "STATISTICS) before trusting this") in second, second
    # The DDL is wrapped between words, never inside a quoted name or literal.
    lines = text[text.index("\n  2. verified"):text.index("\n  3. UNVERIFIED")].splitlines()
    assert any(line.endswith('"placed on",') for line in lines), lines
    assert any('"created at the shop")' in line for line in lines), lines
    assert any("'shipped late'" in line for line in lines), lines

    third = blocks[3]
    assert third.startswith("3. UNVERIFIED (hypopg not installed in database %s: cost not "
                            "checked) its statements took 5000.000 ms in the run index %s"
                            % (REPORT_DB, CUSTOMERS_DDL)), third
    assert " -> " not in third and "saves" not in third and "size" not in third, third
    assert "helps SELECT * FROM orders o JOIN" in third and "(500 calls" in third, third
    assert "writes no writes to the table during the run" in third, third
    assert 'run ANALYZE "Customers" (or CREATE STATISTICS)' in third, third

    limited = report(db, "--limit", "1").stdout
    check_text(limited)
    assert "Index suggestions (1 of 3;" in limited, limited
    assert sorted(index_blocks(limited)) == [1], limited
    assert "index suggestions      3 (2 verified)" in limited, limited
    assert sorted(index_blocks(report(db, "--limit", "0").stdout)) == [1, 2, 3]


def test_report_index_suggestions_json():
    """index_suggestions in the JSON: every field as stored, nulls for an unverified one's
    figures, columns and statements as arrays, rank order; not cut by --limit."""
    db, _ = indexes_file()
    data = report_json(db)
    got = data["index_suggestions"]
    assert [x["rank"] for x in got] == [1, 2, 3], got
    for x, want in zip(got, INDEXES):
        assert x["run_id"] == 1, x
        assert {k: x[k] for k in want} == want, (x, want)
    unverified = got[2]
    assert unverified["verified"] is False, unverified
    assert [unverified[k] for k in ("cost_before", "cost_after", "benefit_ms", "size_bytes")] == \
        [None] * 4, unverified
    assert got[0]["statements"] == [LIGHT[0]] and got[0]["columns"] == ["status", "amount"], got
    assert len(report_json(db, "--limit", "1")["index_suggestions"]) == 3
    # The file itself, as a person with sqlite3 would read it.
    assert rows(db, "SELECT rank, verified FROM index_suggestions WHERE run_id = 1 "
                    "ORDER BY rank") == [(1, 1), (2, 1), (3, 0)]


def test_report_index_suggestions_of_runs():
    """A run's suggestions are its own consolidation: the latest run without any shows none;
    --run picks a run's; --all shows the latest run that has any, unmerged, and says so."""
    db, _ = indexes_file()
    con = sqlite3.connect(db)
    with con:
        con.execute("INSERT INTO runs (label, started_at, ended_at, pgscope_version) VALUES "
                    "('second', '2026-11-22 09:00:00.000', '2026-11-22 09:01:00.000', 'test')")
        add_statement(con, 2, (LIGHT[0], LIGHT[1], 1000, 20000.0))
    con.close()

    latest = report_json(db)
    assert latest["index_suggestions"] == [], latest["index_suggestions"]
    text = report(db).stdout
    assert "Index suggestions" not in text and "index suggestions" not in text, text
    assert [x["rank"] for x in report_json(db, "--run", "1")["index_suggestions"]] == [1, 2, 3]

    merged = report_json(db, "--all")
    assert [(x["run_id"], x["rank"]) for x in merged["index_suggestions"]] == [
        (1, 1), (1, 2), (1, 3)], merged["index_suggestions"]
    text = report(db, "--all").stdout
    check_text(text)
    flat = " ".join(text.split())
    assert "index suggestions 3 (2 verified), of run 1" in flat, text
    assert ("Index suggestions (3 of 3; verified first, by estimated time saved; times in ms) "
            "from run 1, the latest run with any: suggestions are not merged across runs") in flat
    # Its statements' figures are those of run 1, where the suggestions were made.
    assert "(3 calls, mean 100.000 ms)" in index_blocks(text)[1], text

    # Once run 2 has a consolidation of its own, --all shows it alone.
    con = sqlite3.connect(db)
    with con:
        add_indexes(con, 2, [dict(INDEXES[0], benefit_ms=9000.0)])
    con.close()
    merged = report_json(db, "--all")
    assert [(x["run_id"], x["rank"], x["benefit_ms"]) for x in merged["index_suggestions"]] == [
        (2, 1, 9000.0)], merged["index_suggestions"]
    text = report(db, "--all").stdout
    check_text(text)
    assert "index suggestions      1 (1 verified), of run 2" in text, text
    assert "(1000 calls, mean 20.000 ms)" in index_blocks(text)[1], text


def test_report_reads_a_version_3_file():
    """A file of schema version 3 (before the index advisor) is reported as it is, read-only:
    its plans and findings, no index suggestions."""
    db, ids = indexes_file()
    work = h.make_temp_dir("pgscope-report-")
    try:
        old = os.path.join(work, "v3.db")
        shutil.copyfile(db, old)
        con = sqlite3.connect(old)
        con.executescript("""
            DROP TABLE index_suggestions;
            UPDATE meta SET value = '3' WHERE key = 'schema_version';
        """)
        con.close()
        data = report_json(old)
        assert data["schema_version"] == 3, data
        assert data["index_suggestions"] == [], data
        assert len(data["plans"]) == len(ids) and data["findings"], data
        for args in ([], ["--all"]):
            text = report(old, *args).stdout
            check_text(text)
            assert "Index suggestions" not in text and "index suggestions" not in text, text
            assert "Plan findings by statement time" in text, text
        assert report_json(old, "--all")["index_suggestions"] == []
        assert rows(old, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
