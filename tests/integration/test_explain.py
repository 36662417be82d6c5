"""EXPLAIN sampling end to end: slow statements through pgscope, plans replayed on its side
connection, the plans, findings and skip reasons checked in the report database, and the data
checked unchanged on the server."""

import os
import sqlite3
import time

import harness as h

DB = "explain"
SLOW = "SELECT count(*) FROM big WHERE payload = 'needle'"
# Slow because of a scan of big, and each with an effect a replay would repeat.
NOT_REPLAYED = {
    "update": "UPDATE counters SET n = n + 1 WHERE id = 1 "
              "AND NOT EXISTS (SELECT 1 FROM big WHERE payload = 'nope')",
    "delete": "DELETE FROM victims WHERE id = (SELECT min(id) FROM victims) "
              "AND NOT EXISTS (SELECT 1 FROM big WHERE payload = 'nope')",
    "nextval": "SELECT nextval('ticket'), (SELECT count(*) FROM big WHERE payload = 'nope')",
    "for_update": "SELECT id FROM victims WHERE NOT EXISTS "
                  "(SELECT 1 FROM big WHERE payload = 'nope') ORDER BY id LIMIT 1 FOR UPDATE",
    "writable_cte": "WITH d AS (UPDATE counters SET n = n + 1 WHERE id = 2 RETURNING n) "
                    "SELECT d.n, (SELECT count(*) FROM big WHERE payload = 'nope') FROM d",
}


def cluster():
    """The shared cluster with a database holding big (200,000 rows, payload unindexed)."""
    pg = h.shared_cluster()
    if not pg.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % DB).strip():
        pg.psql("CREATE DATABASE %s" % DB)
        pg.psql("""
            CREATE TABLE big (id int PRIMARY KEY, val int NOT NULL, payload text NOT NULL);
            INSERT INTO big SELECT g, g % 1000, md5(g::text) FROM generate_series(1, 200000) g;
            CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
            CREATE TABLE victims (id int PRIMARY KEY);
            CREATE SEQUENCE ticket;
            CREATE SCHEMA app;
            CREATE TABLE app.things (id int, label text);
            INSERT INTO app.things SELECT g, 'thing ' || g FROM generate_series(1, 50000) g;
            ANALYZE;
        """, dbname=DB)
    pg.psql("TRUNCATE counters, victims; INSERT INTO counters VALUES (1, 0), (2, 0); "
            "INSERT INTO victims SELECT generate_series(1, 100); "
            "SELECT setval('ticket', 1, false)", dbname=DB)
    return pg


def proxy(pg, *args):
    return h.Pgscope(pg, args=["--explain-min-duration", "5"] + list(args)).start()


def stopped(pgs):
    """Stops pgscope (it waits for samples in flight) and opens its report database."""
    assert pgs.stop() == 0, pgs.log_text()
    return sqlite3.connect(pgs.db)


def skips(db):
    return dict(db.execute("SELECT reason, count FROM explain_skips"))


def run_psql(pgs, sql):
    res = h.psql(pgs.host, pgs.port, sql, dbname=DB)
    assert res.rc == 0, res
    return res.stdout


def test_slow_seq_scan_gets_a_plan_and_a_finding():
    pgs = proxy(cluster())
    assert run_psql(pgs, SLOW).strip() == "0"
    db = stopped(pgs)
    plans = db.execute("SELECT id, query, analyzed, trigger_ms, execution_ms, plan FROM plans "
                       "WHERE query LIKE '%FROM big%'").fetchall()
    assert len(plans) == 1, (plans, skips(db), pgs.log_text())
    plan_id, query, analyzed, trigger_ms, execution_ms, plan = plans[0]
    assert analyzed == 1 and trigger_ms >= 5 and execution_ms > 0, plans[0]
    assert "payload = $1" in query, query  # normalized: the literal is not stored
    assert "needle" not in plan and "'?'" in plan, plan
    f = db.execute("SELECT kind, relation, detail, magnitude FROM plan_findings "
                   "WHERE plan_id = ?", (plan_id,)).fetchall()
    seq = [x for x in f if x[0] == "seq_scan_filter"]
    assert len(seq) == 1, f
    kind, relation, detail, magnitude = seq[0]
    assert relation == "big", seq
    assert "payload" in detail and "200000" in detail.replace(",", ""), detail
    assert magnitude == 200000, seq
    ranked = db.execute("SELECT weight_ms FROM plan_findings_ranked WHERE plan_id = ?",
                        (plan_id,)).fetchall()
    assert ranked and ranked[0][0] >= trigger_ms * 0.99, ranked
    assert skips(db).get("sample") == 1, skips(db)
    h.note("trigger %.1f ms, %s" % (trigger_ms, detail))


def extended_query(pgs, value, transactions=1, args=()):
    """pgbench sends the statement with the extended protocol, the value as a bind parameter."""
    script = os.path.join(pgs.dir, "extended.sql")
    with open(script, "w") as f:
        f.write("\\set v %s\nSELECT count(*) FROM big WHERE val = :v AND payload <> 'x';\n" % value)
    res = h.pgbench(pgs.host, pgs.port, ["-n", "-M", "extended", "-t", str(transactions),
                                         "-f", script] + list(args), dbname=DB)
    assert res.rc == 0, res


def test_extended_protocol_parameters_are_bound_in_the_plan():
    pgs = proxy(cluster(), "--store-params", "on")
    extended_query(pgs, "4242")
    db = stopped(pgs)
    rows = db.execute("SELECT params, plan, query FROM plans").fetchall()
    assert len(rows) == 1, (rows, skips(db))
    params, plan, query = rows[0]
    assert params == '["4242"]', params
    assert "$1" in query, query
    assert "val = 4242)" in plan, plan


def test_without_store_params_values_are_redacted():
    pgs = proxy(cluster())
    extended_query(pgs, "4242")
    db = stopped(pgs)
    rows = db.execute("SELECT params, plan FROM plans").fetchall()
    assert len(rows) == 1, (rows, skips(db))
    params, plan = rows[0]
    assert params is None and "4242" not in plan and "val = ?)" in plan, rows[0]


def server_state(pg):
    return pg.psql("SELECT (SELECT string_agg(n::text, ',' ORDER BY id) FROM counters), "
                   "(SELECT count(*) FROM victims), (SELECT last_value FROM ticket)",
                   dbname=DB).strip()


def test_writes_and_locks_are_never_executed_by_the_sampler():
    pg = cluster()
    pgs = proxy(pg)
    for sql in NOT_REPLAYED.values():
        run_psql(pgs, sql)
    db = stopped(pgs)
    # The client's own executions only: one increment each, one row deleted, one nextval.
    assert server_state(pg) == "1,1|99|1", server_state(pg)
    s = skips(db)
    assert s.get("dml") == 2 and s.get("guard") == 3, s
    plans = db.execute("SELECT query, analyzed, execution_ms FROM plans ORDER BY seq").fetchall()
    assert sorted(p[0].split()[0] for p in plans) == ["DELETE", "UPDATE"], plans
    assert all(p[1] == 0 and p[2] is None for p in plans), plans


def test_dml_analyze_rollback_leaves_the_data():
    pg = cluster()
    pgs = proxy(pg, "--explain-dml", "analyze-rollback")
    run_psql(pgs, NOT_REPLAYED["update"])
    run_psql(pgs, NOT_REPLAYED["delete"])
    db = stopped(pgs)
    assert server_state(pg) == "1,0|99|1", server_state(pg)
    plans = db.execute("SELECT analyzed, execution_ms FROM plans").fetchall()
    assert len(plans) == 2 and all(p[0] == 1 and p[1] > 0 for p in plans), plans


def traffic_unaffected(pgs, runs=5):
    for _ in range(runs):
        started = time.monotonic()
        assert run_psql(pgs, SLOW).strip() == "0"
        assert time.monotonic() - started < 3, "a client statement waited for the sampler"
    # Every execution has its own parameters, so each is a new candidate for the sampler.
    for i in range(runs):
        assert run_psql(pgs, SLOW.replace("needle", "needle%d" % i)).strip() == "0"


def test_side_connection_to_a_dead_server_costs_samples_not_traffic():
    pgs = proxy(cluster(), "--explain-dsn", "host=127.0.0.1 port=%d connect_timeout=2"
                % h.free_port())
    traffic_unaffected(pgs)
    db = stopped(pgs)
    s = skips(db)
    assert s.get("no_connection", 0) >= 1 and db.execute("SELECT count(*) FROM plans") \
        .fetchone()[0] == 0, s
    assert "no_connection" in pgs.log_text(), pgs.log_text()
    h.note("skips %s" % s)


def test_side_connection_with_a_wrong_password_costs_samples_not_traffic():
    pgs = proxy(cluster(), "--explain-dsn", "user=scram_user password=wrong")
    traffic_unaffected(pgs)
    db = stopped(pgs)
    s = skips(db)
    assert s.get("no_connection", 0) >= 1 and db.execute("SELECT count(*) FROM plans") \
        .fetchone()[0] == 0, s
    assert "password authentication failed" in pgs.log_text(), pgs.log_text()


def test_a_thousand_executions_give_at_most_k_samples():
    pgs = proxy(cluster(), "--explain-min-duration", "0")
    extended_query(pgs, "random(0, 999)", transactions=1000)
    db = stopped(pgs)
    n = db.execute("SELECT count(*) FROM plans").fetchone()[0]
    s = skips(db)
    assert 1 <= n <= 3, (n, s)
    calls = db.execute("SELECT calls FROM statements WHERE query LIKE '%FROM big%'").fetchone()
    assert calls == (1000,), calls
    assert sum(s.values()) == 1000 and s.get("sample") == n, s
    h.note("%d plans of 1000 executions; %s" % (n, s))


def test_search_path_is_replayed():
    """app.things resolves only with the client's search_path: set by SET, then by the
    startup packet's options."""
    pg = cluster()
    pgs = proxy(pg, "--explain-min-duration", "0")
    sql = "SET search_path TO app, public; SELECT count(*) FROM things WHERE label = 'none'"
    run_psql(pgs, sql)
    res = h.psql(pgs.host, pgs.port, "SELECT count(*) FROM things WHERE label = 'nothing'",
                 dbname=DB, pgoptions="-c search_path=app")
    assert res.rc == 0, res
    db = stopped(pgs)
    rows = db.execute("SELECT count(*) FROM plans WHERE plan LIKE '%\"Relation Name\":\"things\"%'"
                      "AND plan LIKE '%\"Schema\":\"app\"%'").fetchone()[0]
    assert rows == 2, (db.execute("SELECT query FROM plans").fetchall(), skips(db),
                       pgs.log_text())


def test_bad_explain_settings_are_refused():
    for args, why in ((["--explain-dml", "always"], "is not one of off|analyze-rollback"),
                      (["--explain-sample-rate", "1.5"], "is not a number from 0 to 1"),
                      (["--explain-budget", "x"], "is not a number from 0 to 100")):
        res = h.run([h.PGSCOPE_BIN, "proxy"] + args)
        assert res.rc == 2 and why in res.stderr, (args, res)
    res = h.run([h.PGSCOPE_BIN, "proxy", "--help"])
    assert "--explain-dsn CONNINFO" in res.stdout and "(default 50)" in res.stdout, res


def test_explain_off_opens_no_side_connection():
    pg = cluster()
    pgs = proxy(pg, "--explain", "off")
    run_psql(pgs, SLOW)
    side = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                   "'pgscope-explain'").strip()
    db = stopped(pgs)
    assert side == "0" and db.execute("SELECT count(*) FROM plans").fetchone()[0] == 0
    assert skips(db) == {}, skips(db)
