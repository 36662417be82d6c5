"""EXPLAIN side connections (src/explain/side.c) against the shared cluster, through
tests/probe/explain_side_probe: plans with actuals and bound parameters, nothing ever
changed (read-only or rolled back), statement_timeout, and servers that refuse us."""

import json
import os
import time

import harness as h

DB_A = "explain_side_a"
DB_B = "explain_side_b"
ROWS = 200000
PROBE = os.path.normpath(os.path.join(os.path.dirname(h.PGSCOPE_BIN), "..", "tests", "probe",
                                      "explain_side_probe"))


def side_cluster():
    """The shared cluster with two databases: side_t (ROWS rows, v unindexed) and a sequence in
    DB_A, side_u in DB_B, and a table only reachable through a search_path in DB_A."""
    cluster = h.shared_cluster()
    have = cluster.psql("SELECT datname FROM pg_database WHERE datname IN ('%s', '%s') "
                        "ORDER BY 1" % (DB_A, DB_B)).split()
    if DB_A not in have:
        cluster.psql("CREATE DATABASE %s" % DB_A)
        cluster.psql("CREATE TABLE side_t (id int PRIMARY KEY, v int NOT NULL, pad text); "
                     "INSERT INTO side_t SELECT i, i, md5(i::text) FROM generate_series(1, %d) i; "
                     "CREATE SEQUENCE side_s; "
                     "CREATE SCHEMA side_schema; "
                     "CREATE TABLE side_schema.only_here (x int); "
                     "INSERT INTO side_schema.only_here SELECT generate_series(1, 100); "
                     "ANALYZE" % ROWS, dbname=DB_A)
    if DB_B not in have:
        cluster.psql("CREATE DATABASE %s" % DB_B)
        cluster.psql("CREATE TABLE side_u (k int, w text); "
                     "INSERT INTO side_u SELECT i, 'w' || i FROM generate_series(1, 5000) i; "
                     "ANALYZE", dbname=DB_B)
    return cluster


def probe(dsn, database, specs, env=None, timeout=60):
    """Runs the probe; returns ({id: result}, seconds)."""
    assert os.access(PROBE, os.X_OK), "probe not built at %s (make check builds it)" % PROBE
    full_env = {"PGPASSWORD": "", "PGPASSFILE": "/nonexistent/pgscope-tests-pgpass"}
    full_env.update(env or {})
    started = time.monotonic()
    res = h.run([PROBE, dsn, database] + list(specs), env=full_env, timeout=timeout)
    elapsed = time.monotonic() - started
    assert res.rc == 0, res
    results = {}
    for line in res.stdout.splitlines():
        r = json.loads(line)
        results[r["id"]] = r
    assert sorted(results) == list(range(1, len(specs) + 1)), res
    return results, elapsed


def plan_of(result):
    assert result["ok"], result
    assert result["skip"] == "sample", result
    plan = json.loads(result["plan_full"])
    assert isinstance(plan, list) and "Plan" in plan[0], result
    return plan


def nodes(plan_node):
    yield plan_node
    for child in plan_node.get("Plans", []):
        yield from nodes(child)


# Runs for minutes: a statement slow by itself (pg_sleep is never executed by a replay).
CROSS_JOIN = "SELECT count(*) FROM side_t a, side_t b WHERE a.v <> b.v"


def count_a(cluster):
    return int(cluster.psql("SELECT count(*) FROM side_t", dbname=DB_A))


def test_explain_side_analyze_select():
    cluster = side_cluster()
    results, _ = probe(cluster.dsn(), DB_A, ["analyze:SELECT * FROM side_t WHERE v = 4242"])
    r = results[1]
    plan = plan_of(r)
    text = r["plan_full"]
    for needle in ('"Seq Scan"', '"Actual Rows"', '"Rows Removed by Filter"', '"Shared Hit'):
        assert needle in text, (needle, text[:500])
    scan = [n for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "Seq Scan"][0]
    assert scan["Actual Rows"] == 1 and scan["Rows Removed by Filter"] > ROWS // 2, scan
    assert "Execution Time" in plan[0] and "Settings" in plan[0], plan[0].keys()
    assert 0 < r["side_ms"] < 10000, r
    assert len(r["plan"]) <= 2000 and r["plan_full"].startswith(r["plan"])
    h.note("side_ms %.1f" % r["side_ms"])


def test_explain_side_bound_parameter():
    cluster = side_cluster()
    results, _ = probe(cluster.dsn(), DB_A, ["analyze:SELECT id FROM side_t WHERE v = $1|31337",
                                             "plain:SELECT id FROM side_t WHERE pad = $1|x'y"])
    scan = [n for n in nodes(plan_of(results[1])[0]["Plan"]) if n["Node Type"] == "Seq Scan"][0]
    assert "31337" in scan["Filter"] and "$1" not in scan["Filter"], scan["Filter"]
    assert scan["Actual Rows"] == 1, scan
    # A quote in a value is bound, never spliced into the text.
    scan = plan_of(results[2])[0]["Plan"]
    assert "x''y" in scan["Filter"], scan


def test_explain_side_plain_delete_changes_nothing():
    cluster = side_cluster()
    before = count_a(cluster)
    results, _ = probe(cluster.dsn(), DB_A, ["plain:DELETE FROM side_t WHERE v <= 1000"])
    plan = plan_of(results[1])
    top = plan[0]["Plan"]
    assert top["Node Type"] == "ModifyTable" and top["Operation"] == "Delete", top
    assert "Actual Rows" not in results[1]["plan_full"], results[1]["plan"]
    assert "Execution Time" not in plan[0]
    assert count_a(cluster) == before == ROWS


def test_explain_side_read_only_refuses_writes():
    cluster = side_cluster()
    results, _ = probe(cluster.dsn(), DB_A, ["analyze:DELETE FROM side_t WHERE v <= 1000"])
    r = results[1]
    assert not r["ok"] and r["skip"] == "failed", r
    assert "read-only transaction" in r["error"], r
    assert r["plan"] is None
    assert count_a(cluster) == ROWS


def test_explain_side_rw_analyze_is_rolled_back():
    cluster = side_cluster()
    results, _ = probe(cluster.dsn(), DB_A, ["rw:DELETE FROM side_t WHERE v <= 1000",
                                             "analyze:SELECT count(*) FROM side_t"])
    plan = plan_of(results[1])
    scan = [n for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "Seq Scan"][0]
    assert scan["Actual Rows"] == 1000, scan  # the DELETE really ran...
    assert count_a(cluster) == ROWS            # ...and was rolled back
    agg = plan_of(results[2])[0]["Plan"]
    # The next job on the same pool sees every row: nothing leaked between jobs.
    assert [n for n in nodes(agg) if n["Node Type"] == "Seq Scan"][0]["Actual Rows"] == ROWS


def test_explain_side_nextval_refused():
    cluster = side_cluster()
    before = cluster.psql("SELECT last_value, is_called FROM side_s", dbname=DB_A)
    results, _ = probe(cluster.dsn(), DB_A, ["analyze:SELECT nextval('side_s')",
                                             "plain:SELECT nextval('side_s')"])
    r = results[1]  # its plan check finds nextval(): the plain plan, never executed
    assert r["ok"] and r["skip"] == "function" and "nextval" in r["error"], r
    assert "Actual Rows" not in r["plan_full"], r["plan"]
    plan_of(results[2])  # plain EXPLAIN does not run it
    assert cluster.psql("SELECT last_value, is_called FROM side_s", dbname=DB_A) == before


def test_explain_side_statement_timeout():
    cluster = side_cluster()
    results, elapsed = probe(cluster.dsn(), DB_A, ["analyze:" + CROSS_JOIN,
                                                   "analyze:SELECT 1"],
                             env={"PROBE_STATEMENT_TIMEOUT_MS": "500"})
    r = results[1]
    assert not r["ok"] and r["skip"] == "failed", r
    assert "statement timeout" in r["error"], r
    assert 400 <= r["side_ms"] < 2500, r
    assert elapsed < 5, elapsed
    plan_of(results[2])
    h.note("timed out after %.0f ms" % r["side_ms"])


def test_explain_side_search_path():
    cluster = side_cluster()
    query = ["analyze:SELECT * FROM only_here WHERE x = 7"]
    found, _ = probe(cluster.dsn(), DB_A, query, env={"PROBE_SEARCH_PATH": "side_schema, public"})
    assert "side_schema" in found[1]["plan_full"], found[1]["plan"]
    missing, _ = probe(cluster.dsn(), DB_A, query)
    assert not missing[1]["ok"] and "does not exist" in missing[1]["error"], missing[1]


def test_explain_side_refused_connection():
    cluster = side_cluster()
    dsn = cluster.dsn(port=h.free_port())
    specs = ["analyze:SELECT %d" % i for i in range(5)]
    results, elapsed = probe(dsn, DB_A, specs)
    for r in results.values():
        assert not r["ok"] and r["skip"] == "no_connection", r
        assert r["side_ms"] == 0 and r["plan"] is None
    assert any("refused" in r["error"] for r in results.values()), results
    assert elapsed < 5, elapsed


def test_explain_side_wrong_password():
    cluster = side_cluster()
    bad = cluster.dsn(user="scram_user", password="not-" + h.PASSWORDS["scram_user"])
    results, elapsed = probe(bad, DB_A, ["analyze:SELECT 1", "plain:SELECT 2"])
    for r in results.values():
        assert not r["ok"] and r["skip"] == "no_connection", r
    assert "password authentication failed" in results[1]["error"], results[1]
    assert elapsed < 5, elapsed
    good = cluster.dsn(user="scram_user", password=h.PASSWORDS["scram_user"])
    results, _ = probe(good, DB_A, ["analyze:SELECT 1"])
    plan_of(results[1])


def test_explain_side_two_databases():
    cluster = side_cluster()
    specs = ["analyze:SELECT * FROM side_t WHERE v = 17",
             "analyze@%s:SELECT * FROM side_u WHERE k = 17" % DB_B,
             "analyze@%s:SELECT * FROM side_t WHERE v = 18" % DB_B,
             "analyze:SELECT * FROM side_t WHERE v = 19",
             "plain@%s:SELECT count(*) FROM side_u" % DB_B]
    results, _ = probe(cluster.dsn(), DB_A, specs, env={"PROBE_PER_DATABASE": "1"})
    assert "side_t" in plan_of(results[1])[0]["Plan"]["Relation Name"]
    assert plan_of(results[2])[0]["Plan"]["Relation Name"] == "side_u"
    r = results[3]  # side_t is not in DB_B: proof the job ran there
    assert not r["ok"] and r["skip"] == "not_visible" and "side_t" in r["error"], r
    plan_of(results[4])
    plan_of(results[5])


def test_explain_side_stop_cancels_running_job():
    cluster = side_cluster()
    started = time.monotonic()
    res = h.run([PROBE, cluster.dsn(), DB_A, "analyze:" + CROSS_JOIN],
                env={"PROBE_WAIT_MS": "300", "PROBE_STATEMENT_TIMEOUT_MS": "30000"}, timeout=30)
    elapsed = time.monotonic() - started
    assert res.rc == 1 and "timed out" in res.stderr, res
    assert elapsed < 5, elapsed  # stop did not wait for the statement
    sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgscope-explain' "
                "AND query LIKE '%side_t a, side_t b%'")
    assert h.wait_for(lambda: cluster.psql(sleeping).strip() == "0", 5), \
        "the cancelled statement is still running"
    h.note("stopped in %.1fs" % elapsed)
