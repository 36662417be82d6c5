"""Index advisor verification (src/explain/verify.c) against the shared cluster, through
tests/probe/advisor_probe: candidates tried as hypothetical indexes (hypopg), indexes that
already exist, databases without hypopg, connections that fail, and nothing left behind."""

import json
import os
import subprocess
import time

import harness as h

DB_HYPO = "advisor_hypo"     # hypopg installed
DB_PLAIN = "advisor_plain"   # no hypopg
DB_CREATE = "advisor_create"  # hypopg dropped before each use, for create_extension
ROWS = 200000
CUSTOMERS = 20000
PROBE = os.path.normpath(os.path.join(os.path.dirname(h.PGSCOPE_BIN), "..", "tests", "probe",
                                      "advisor_probe"))
BY_CUSTOMER = "SELECT * FROM orders WHERE customer_id = $1|4242"

ORDERS = ("CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, "
          "status text NOT NULL, created_at timestamptz NOT NULL); "
          "INSERT INTO orders SELECT i, i %% %d, (ARRAY['new', 'paid', 'shipped'])[i %% 3 + 1], "
          "timestamptz '2024-01-01' + i * interval '1 minute' "
          "FROM generate_series(1, %d) i; "
          "CREATE INDEX orders_status_created ON orders (status, created_at); "
          "GRANT SELECT ON orders TO trust_user; "
          % (CUSTOMERS, ROWS))
ACCOUNTS = ("CREATE SCHEMA app; "
            "CREATE TABLE app.accounts (id int PRIMARY KEY, email text NOT NULL, pad text); "
            "INSERT INTO app.accounts SELECT i, 'user' || i || '@example.com', md5(i::text) "
            "FROM generate_series(1, 50000) i; ")


def advisor_cluster():
    """The shared cluster with three databases holding the same orders table; DB_HYPO has
    hypopg and a table app.accounts only a search_path finds."""
    cluster = h.shared_cluster()
    have = cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE 'advisor_%'").split()
    for db in (DB_HYPO, DB_PLAIN, DB_CREATE):
        if db in have:
            continue
        cluster.psql("CREATE DATABASE %s" % db)
        extra = "CREATE EXTENSION hypopg; " + ACCOUNTS if db == DB_HYPO else ""
        cluster.psql(ORDERS + extra + "ANALYZE", dbname=db)
    return cluster


def probe(dsn, database, query, candidates, env=None, timeout=60):
    """Runs the probe; returns (list of results, seconds)."""
    assert os.access(PROBE, os.X_OK), "probe not built at %s (make check builds it)" % PROBE
    full_env = {"PGPASSWORD": "", "PGPASSFILE": "/nonexistent/pgscope-tests-pgpass"}
    full_env.update(env or {})
    started = time.monotonic()
    res = h.run([PROBE, dsn, database, query] + list(candidates), env=full_env, timeout=timeout)
    elapsed = time.monotonic() - started
    assert res.rc == 0, res
    results = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(results) == int(full_env.get("PROBE_JOBS", "1")), res
    for r in results:
        assert len(r["trials"]) == len(candidates), r
    return results, elapsed


def one(cluster, database, query, candidates, env=None):
    results, _ = probe(cluster.dsn(), database, query, candidates, env=env)
    return results[0]


def verified(r):
    assert r["ok"] and r["error"] == "", r
    assert r["hypopg"], r
    assert r["cost_before"] > 0, r
    return r["trials"]


def test_advisor_verify_used():
    cluster = advisor_cluster()
    r = one(cluster, DB_HYPO, BY_CUSTOMER, ["orders:customer_id"])
    t, = verified(r)
    assert t["outcome"] == "used", r
    assert t["ddl"] == 'CREATE INDEX ON "orders" ("customer_id")', t
    assert 0 < t["cost_after"] < r["cost_before"] * 0.7, r
    assert t["size"] > 0, t
    h.note("cost %.0f -> %.0f, %d kB" % (r["cost_before"], t["cost_after"], t["size"] // 1024))


def test_advisor_verify_useless_candidate_unused():
    cluster = advisor_cluster()
    r = one(cluster, DB_HYPO, BY_CUSTOMER, ["orders:created_at", "orders:customer_id"])
    useless, useful = verified(r)
    assert useless["outcome"] == "unused", r
    # It was tried: the plan was costed with it, and it did not help.
    assert useless["cost_after"] >= r["cost_before"] * 0.7 and useless["size"] > 0, r
    # Each candidate is tried alone: the first one's hypothetical index is gone for the second.
    assert useful["outcome"] == "used", r


def test_advisor_verify_min_reduction():
    cluster = advisor_cluster()
    # Used, but asked for more than it saves: unused.
    r = one(cluster, DB_HYPO, BY_CUSTOMER, ["orders:customer_id"],
            env={"PROBE_MIN_REDUCTION": "0.99999"})
    t, = verified(r)
    assert t["outcome"] == "unused" and 0 < t["cost_after"] < r["cost_before"], r


def test_advisor_verify_covered_by_existing_index():
    cluster = advisor_cluster()
    r = one(cluster, DB_HYPO, "SELECT * FROM orders WHERE id = $1|77",
            ["orders:id", "orders:status", "orders:status,created_at", "public.orders:id",
             "orders:created_at", "orders:created_at,status"])
    trials = verified(r)
    outcomes = [t["outcome"] for t in trials]
    # The primary key serves orders(id); orders_status_created serves its prefixes, in key order.
    assert outcomes[:4] == ["covered"] * 4, r
    assert outcomes[4] != "covered" and outcomes[5] != "covered", r
    for t in trials[:4]:
        assert t["cost_after"] == -1 and t["size"] == -1, t


def test_advisor_verify_ignores_invalid_and_expression_indexes():
    cluster = advisor_cluster()
    cluster.psql("DROP INDEX IF EXISTS orders_lower_status; DROP INDEX IF EXISTS orders_cust_hash; "
                 "DROP INDEX IF EXISTS orders_cust_unique; "
                 "CREATE INDEX orders_lower_status ON orders (customer_id, lower(status)); "
                 "CREATE INDEX orders_cust_hash ON orders USING hash (customer_id)",
                 dbname=DB_PLAIN)
    # A unique index built concurrently over duplicates fails and stays behind, invalid.
    res = h.psql(cluster.socket_dir, cluster.port,
                 "CREATE UNIQUE INDEX CONCURRENTLY orders_cust_unique ON orders (customer_id)",
                 dbname=DB_PLAIN)
    assert res.rc != 0 and "could not create unique index" in res.stderr, res
    try:
        assert cluster.psql("SELECT indisvalid FROM pg_index "
                            "WHERE indexrelid = 'orders_cust_unique'::regclass",
                            dbname=DB_PLAIN).strip() == "f"
        r = one(cluster, DB_PLAIN, BY_CUSTOMER, ["orders:customer_id", "orders:status"])
        # No index of customer_id counts: one invalid, one hash, one with an expression
        # (skipped whole); orders_status_created serves orders(status).
        assert [t["outcome"] for t in r["trials"]] == ["unverified", "covered"], r
    finally:
        cluster.psql("DROP INDEX orders_lower_status; DROP INDEX orders_cust_hash; "
                     "DROP INDEX orders_cust_unique", dbname=DB_PLAIN)


def test_advisor_verify_without_hypopg_unverified():
    cluster = advisor_cluster()
    r = one(cluster, DB_PLAIN, BY_CUSTOMER, ["orders:customer_id", "orders:id"])
    assert r["ok"] and not r["hypopg"] and r["error"] == "", r
    assert r["cost_before"] > 0, r
    unverified, covered = r["trials"]
    assert unverified["outcome"] == "unverified", r
    assert unverified["cost_after"] == -1 and unverified["size"] == -1, r
    assert covered["outcome"] == "covered", r
    # Nothing was installed behind the user's back.
    assert cluster.psql("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'",
                        dbname=DB_PLAIN).strip() == "0"


def test_advisor_verify_create_extension():
    cluster = advisor_cluster()
    cluster.psql("DROP EXTENSION IF EXISTS hypopg", dbname=DB_CREATE)
    r = one(cluster, DB_CREATE, BY_CUSTOMER, ["orders:customer_id"],
            env={"PROBE_CREATE_EXTENSION": "1"})
    t, = verified(r)
    assert t["outcome"] == "used", r
    assert cluster.psql("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'",
                        dbname=DB_CREATE).strip() == "1"


def test_advisor_verify_create_extension_refused():
    cluster = advisor_cluster()
    cluster.psql("DROP EXTENSION IF EXISTS hypopg", dbname=DB_CREATE)
    # The DSN names no user: the job's (not a superuser) is taken. CREATE EXTENSION fails, and
    # the job goes on without hypopg.
    dsn = "host=%s port=%d dbname=postgres connect_timeout=5 sslmode=disable" % (cluster.host,
                                                                               cluster.port)
    results, _ = probe(dsn, DB_CREATE, BY_CUSTOMER, ["orders:customer_id"],
                       env={"PROBE_CREATE_EXTENSION": "1", "PROBE_USER": "trust_user"})
    r = results[0]
    assert r["ok"] and not r["hypopg"] and r["cost_before"] > 0, r
    assert r["trials"][0]["outcome"] == "unverified", r
    assert cluster.psql("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'",
                        dbname=DB_CREATE).strip() == "0"


def test_advisor_verify_wrong_password():
    cluster = advisor_cluster()
    bad = cluster.dsn(user="scram_user", password="not-" + h.PASSWORDS["scram_user"])
    results, elapsed = probe(bad, DB_HYPO, BY_CUSTOMER, ["orders:customer_id"],
                             env={"PROBE_JOBS": "2"})
    first, second = results
    assert not first["ok"] and "password authentication failed" in first["error"], first
    assert "\n" not in first["error"], first
    # The second job does not knock again: the pair backs off.
    assert not second["ok"] and second["error"].startswith("backing off after: "), second
    assert "password authentication failed" in second["error"], second
    for r in results:
        assert not r["hypopg"] and r["trials"][0]["outcome"] == "unverified", r
    assert elapsed < 5, elapsed


def test_advisor_verify_refused_connection():
    cluster = advisor_cluster()
    results, elapsed = probe(cluster.dsn(port=h.free_port()), DB_HYPO, BY_CUSTOMER,
                             ["orders:customer_id"])
    assert not results[0]["ok"] and "refused" in results[0]["error"], results
    assert elapsed < 5, elapsed


def test_advisor_verify_missing_table():
    cluster = advisor_cluster()
    r = one(cluster, DB_HYPO, BY_CUSTOMER,
            ["no_such_table:x", "orders:customer_id", "no_such_schema.orders:customer_id",
             "orders:no_such_column"])
    missing, used, missing_schema, bad_column = verified(r)
    assert missing["outcome"] == "unused" and missing["cost_after"] == -1, r
    assert missing_schema["outcome"] == "unused", r
    # hypopg refuses it: only that candidate is lost, under its savepoint.
    assert bad_column["outcome"] == "unused" and bad_column["cost_after"] == -1, r
    assert used["outcome"] == "used", r


def test_advisor_verify_search_path():
    cluster = advisor_cluster()
    query = "SELECT * FROM accounts WHERE email = $1|user77@example.com"
    r = one(cluster, DB_HYPO, query, ["accounts:email"], env={"PROBE_SEARCH_PATH": "app"})
    t, = verified(r)
    assert t["outcome"] == "used", r
    # Without it, the statement names no table the server knows.
    r = one(cluster, DB_HYPO, query, ["accounts:email"])
    assert not r["ok"] and 'relation "accounts" does not exist' in r["error"], r
    # Schema-qualified, in the statement and the candidate: no search_path needed.
    r = one(cluster, DB_HYPO, "SELECT * FROM app.accounts WHERE email = $1|user77@example.com",
            ["app.accounts:email", "app.accounts:id"])
    used, covered = verified(r)
    assert used["outcome"] == "used" and covered["outcome"] == "covered", r


def test_advisor_verify_statement_timeout():
    cluster = advisor_cluster()
    locker = cluster.connect(dbname=DB_HYPO)
    try:
        locker.cursor().execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        results, elapsed = probe(cluster.dsn(), DB_HYPO, BY_CUSTOMER, ["orders:customer_id"],
                                 env={"PROBE_STATEMENT_TIMEOUT_MS": "500"})
    finally:
        locker.rollback()
        locker.close()
    r = results[0]
    assert not r["ok"] and "statement timeout" in r["error"], r
    assert elapsed < 5, elapsed


def test_advisor_verify_stop_cancels_running_statement():
    cluster = advisor_cluster()
    locker = cluster.connect(dbname=DB_HYPO)
    try:
        locker.cursor().execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        res = h.run([PROBE, cluster.dsn(), DB_HYPO, BY_CUSTOMER, "orders:customer_id"],
                    env={"PROBE_WAIT_MS": "1000", "PROBE_STATEMENT_TIMEOUT_MS": "30000"},
                    timeout=30)
        elapsed = time.monotonic() - started
        assert res.rc == 1 and "timed out" in res.stderr, res
        assert elapsed < 5, elapsed  # stop did not wait for statement_timeout
        waiting = ("SELECT count(*) FROM pg_stat_activity "
                   "WHERE application_name = 'pgscope-advisor'")
        assert h.wait_for(lambda: cluster.psql(waiting).strip() == "0", 5), \
            "the verifier's connection is still there"
    finally:
        locker.rollback()
        locker.close()
    h.note("stopped in %.1fs" % elapsed)


def snapshot(cluster, db):
    return cluster.psql("SELECT count(*), sum(customer_id), "
                        "(SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
                        " WHERE tablename = 'orders'), "
                        "(SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension) "
                        "FROM orders", dbname=db)


def test_advisor_verify_leaves_nothing_behind():
    cluster = advisor_cluster()
    before = snapshot(cluster, DB_HYPO)
    env = dict(os.environ, PGPASSWORD="", PROBE_JOBS="3", PROBE_HOLD_MS="10000")
    cmd = [PROBE, cluster.dsn(), DB_HYPO, BY_CUSTOMER, "orders:customer_id", "orders:created_at",
           "orders:no_such_column"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        results = [json.loads(proc.stdout.readline()) for _ in range(3)]
        for r in results:
            assert [t["outcome"] for t in verified(r)] == ["used", "unused", "unused"], r
        # The results are in and no job waits: the verifier closed its connection (an idle one
        # would block the application's DROP DATABASE).
        assert h.wait_for(lambda: cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgscope-advisor'",
            dbname=DB_HYPO).strip() == "0", 5), "the advisor's connection stayed open"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert snapshot(cluster, DB_HYPO) == before


def test_advisor_verify_reconnects_after_lost_connection():
    cluster = advisor_cluster()
    env = dict(os.environ, PGPASSWORD="", PROBE_JOBS="2", PROBE_GAP_MS="1500")
    cmd = [PROBE, cluster.dsn(), DB_HYPO, BY_CUSTOMER, "orders:customer_id"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert verified(first)[0]["outcome"] == "used", first
        # Between jobs the connection is closed (nothing waits), or killed if it is still
        # there: either way the next job connects again.
        cluster.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE application_name = 'pgscope-advisor'")
        second = json.loads(proc.stdout.readline())
        assert verified(second)[0]["outcome"] == "used", second
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_advisor_verify_no_candidates_and_null_param():
    cluster = advisor_cluster()
    r = one(cluster, DB_HYPO, "SELECT * FROM orders WHERE customer_id = $1|\\N", [])
    # Bound as SQL NULL (the text \N would not be an integer): customer_id = NULL is planned
    # as false, at no cost.
    assert r["ok"] and r["cost_before"] == 0 and r["trials"] == [], r
