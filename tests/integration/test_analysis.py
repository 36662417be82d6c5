"""Statement statistics end to end: real clients through pgscope, then the SQLite file checked."""

import os
import re
import sqlite3
import stat
import threading
import time

import harness as h

BENCH_DB = "analysisbench"


def bench_cluster():
    cluster = h.shared_cluster()
    if not cluster.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % BENCH_DB).strip():
        cluster.psql("CREATE DATABASE %s" % BENCH_DB)
        res = h.pgbench(cluster.host, cluster.port, ["-i", "-q", "-s", "1"], dbname=BENCH_DB)
        assert res.rc == 0, res
    return cluster


def transactions(res):
    """Transactions of a pgbench run that had no failure."""
    assert res.rc == 0, res
    assert re.search(r"number of failed transactions: 0 ", res.stdout), res
    return int(re.search(r"actually processed: (\d+)", res.stdout).group(1))


def db_rows(path, sql, args=()):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def stopped(pg):
    assert pg.stop() == 0, pg.log_text()
    return pg.db


def accounts_row(db):
    rows = db_rows(db, "SELECT calls, errors, rows, min_ms, mean_ms, max_ms, p50_ms, p95_ms, "
                       "p99_ms, query, fallback FROM statements "
                       "WHERE query LIKE '%pgbench_accounts%' AND command = 'SELECT'")
    assert len(rows) == 1, rows
    return rows[0]


def check_select_only(mode):
    """pgbench -S -c 4 -t 2500: exactly one shape for the accounts SELECT, 10000 calls."""
    cluster = bench_cluster()
    pg = h.Pgscope(cluster).start()
    res = h.pgbench(pg.host, pg.port, ["-S", "-n", "-c", "4", "-t", "2500", "-M", mode],
                    dbname=BENCH_DB)
    assert transactions(res) == 10000
    calls, errors, rows, mn, mean, mx, p50, p95, p99, query, fallback = \
        accounts_row(stopped(pg))
    assert calls == 10000, calls
    assert errors == 0 and rows == 10000, (errors, rows)
    assert 0 < mn <= mean <= mx and mn * 0.99 <= p50 <= p95 <= p99 <= mx * 1.01
    assert "$1" in query and fallback == 0, query
    h.note("%s: %d calls, p50 %.3f ms, p99 %.3f ms" % (mode, calls, p50, p99))


def test_pgbench_simple_every_statement_counted():
    check_select_only("simple")


def test_pgbench_extended_every_statement_counted():
    check_select_only("extended")


def test_pgbench_prepared_every_statement_counted():
    check_select_only("prepared")


def check_script_counts(db, n, expected_shapes):
    """Every statement shape of the script was counted exactly n times."""
    rows = db_rows(db, "SELECT query, calls, errors FROM statements WHERE database = ?",
                   (BENCH_DB,))
    counted = {q: (c, e) for q, c, e in rows if any(k in q for k in expected_shapes)}
    assert len(counted) == len(expected_shapes), counted
    for query, (calls, errors) in counted.items():
        assert calls == n and errors == 0, (query, calls, errors, n)


def test_pgbench_tpcb_every_statement_counted():
    """The default TPC-B-like script: each of its seven statements once per transaction."""
    cluster = bench_cluster()
    pg = h.Pgscope(cluster).start()
    res = h.pgbench(pg.host, pg.port, ["-n", "-c", "2", "-t", "500", "-M", "simple"],
                    dbname=BENCH_DB)
    n = transactions(res)
    assert n == 1000
    check_script_counts(stopped(pg), n, ["BEGIN", "UPDATE pgbench_accounts",
                                         "SELECT abalance", "UPDATE pgbench_tellers",
                                         "UPDATE pgbench_branches", "INSERT INTO pgbench_history",
                                         "END"])


def test_pgbench_pipeline_every_statement_counted():
    cluster = bench_cluster()
    pg = h.Pgscope(cluster).start()
    script = os.path.join(pg.dir, "pipeline.sql")
    with open(script, "w") as f:
        f.write("\\set aid random(1, 100000)\n\\startpipeline\n"
                "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
                "SELECT bid FROM pgbench_branches WHERE bid = 1;\n"
                "SELECT tid FROM pgbench_tellers WHERE tid = 2;\n"
                "\\endpipeline\n")
    res = h.pgbench(pg.host, pg.port, ["-n", "-c", "2", "-t", "1000", "-M", "extended",
                                       "-f", script], dbname=BENCH_DB)
    n = transactions(res)
    assert n == 2000
    check_script_counts(stopped(pg), n, ["pgbench_accounts", "pgbench_branches",
                                         "pgbench_tellers"])


def test_syntax_error_counted_under_fallback():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster).start()
    for _ in range(3):
        res = h.psql(pg.host, pg.port, "SELEC 1 FROM nowhere_at_all")
        assert res.rc != 0 and "syntax error" in res.stderr, res
    db = stopped(pg)
    rows = db_rows(db, "SELECT s.fallback, s.calls, s.errors, e.sqlstate, e.count "
                       "FROM statements s JOIN statement_errors e "
                       "USING (run_id, fingerprint, database, user_name) "
                       "WHERE s.query LIKE '%nowhere_at_all%'")
    assert rows == [(1, 3, 3, "42601", 3)], rows
    assert db_rows(db, "SELECT fingerprint_fallbacks >= 1 FROM runs") == [(1,)]


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))]


def test_percentiles_agree_with_the_client():
    """A libpq client times pg_sleep of 1, 5 and 20 ms; pgscope's p50/p95/p99 are within 5%."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster).start()
    exe = os.path.join(pg.dir, "timed_sleeps")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients", "timed_sleeps.c")
    inc = h.run(["pg_config", "--includedir"]).stdout.strip() or "/usr/include/postgresql"
    build = h.run(["cc", "-O2", "-I" + inc, src, "-o", exe, "-lpq"])
    assert build.rc == 0, build
    sleeps = [1] * 60 + [5] * 100 + [20] * 40  # p50 among the 5 ms, p95 and p99 among the 20
    import random
    random.Random(7).shuffle(sleeps)
    res = h.run([exe, pg.dsn()] + [str(ms) for ms in sleeps], timeout=60)
    assert res.rc == 0, res
    client_us = [float(x) for x in res.stdout.split()]
    assert len(client_us) == len(sleeps)
    db = stopped(pg)
    rows = db_rows(db, "SELECT calls, p50_ms, p95_ms, p99_ms FROM statements "
                       "WHERE query LIKE '%pg_sleep%'")
    assert len(rows) == 1 and rows[0][0] == len(sleeps), rows
    notes = []
    for q, got_ms in zip((0.50, 0.95, 0.99), rows[0][1:]):
        want_ms = nearest_rank(client_us, q) / 1000.0
        notes.append("p%d %.3f/%.3f ms" % (q * 100, got_ms, want_ms))
        assert abs(got_ms - want_ms) <= 0.05 * want_ms, (q, got_ms, want_ms)
    h.note("pgscope/client: " + ", ".join(notes))


def pgbench_in_background(pg, seconds):
    """pgbench -S -M prepared with 2 clients through pg, in a thread; out["res"] when done."""
    out = {}

    def load():
        out["res"] = h.pgbench(pg.host, pg.port, ["-S", "-n", "-c", "2", "-T", str(seconds),
                                                  "-M", "prepared"], dbname=BENCH_DB)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    return t, out


def test_sigterm_mid_load_keeps_every_completed_statement():
    """SIGTERM while pgbench runs: sessions may finish, then every statement is in the file."""
    cluster = bench_cluster()
    pg = h.Pgscope(cluster, args=["--shutdown-timeout", "30"]).start()
    t, out = pgbench_in_background(pg, 3)
    time.sleep(1)
    pg.signal(15)
    t.join(60)
    n = transactions(out["res"])
    assert pg.wait(30) == 0, pg.log_text()
    assert accounts_row(pg.db)[0] == n


def test_sigterm_cutting_sessions_keeps_completed_statements():
    """A short shutdown timeout cuts the sessions: what completed is still in the file."""
    cluster = bench_cluster()
    pg = h.Pgscope(cluster, args=["--shutdown-timeout", "1"]).start()
    t, out = pgbench_in_background(pg, 10)
    time.sleep(1)
    pg.signal(15)
    assert pg.wait(30) == 0, pg.log_text()
    t.join(60)
    done = int(re.search(r"actually processed: (\d+)", out["res"].stdout).group(1))
    calls = accounts_row(pg.db)[0]
    h.note("client completed %d, pgscope counted %d" % (done, calls))
    assert done <= calls <= done + 2, (done, calls)


def test_keeps_up_with_8_simple_clients():
    """pgbench -S -M simple at 8 clients: no event dropped, every statement counted."""
    cluster = bench_cluster()
    pg = h.Pgscope(cluster).start()
    res = h.pgbench(pg.host, pg.port, ["-S", "-n", "-c", "8", "-j", "2", "-T", "5",
                                       "-M", "simple"], dbname=BENCH_DB)
    n = transactions(res)
    db = stopped(pg)
    dropped = db_rows(db, "SELECT events_dropped FROM runs")[0][0]
    tps = re.search(r"tps = ([0-9.]+) \(without", res.stdout).group(1)
    h.note("%s TPS, %d statements, %d dropped" % (tps, n, dropped))
    assert dropped == 0
    assert accounts_row(db)[0] == n


def test_multi_statement_query_and_errors():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster).start()
    # (libpg_query ignores constants and aliases: SELECT 41 AS a and SELECT 'x' AS b, 2 would
    # be one shape, so the three statements differ in structure.)
    res = h.psql(pg.host, pg.port,
                 args=["-c", "SELECT 41 AS a; SELECT length('x') AS b, 2; SELECT 1/0"])
    assert res.rc != 0 and "division by zero" in res.stderr, res
    db = stopped(pg)
    rows = dict(db_rows(db, "SELECT query, calls FROM statements WHERE query LIKE 'SELECT $1 AS a%' "
                            "OR query LIKE 'SELECT length($1) AS b%' OR query LIKE 'SELECT $1/$2%'"))
    assert len(rows) == 3, rows
    assert all(calls == 1 for calls in rows.values()), rows
    errs = db_rows(db, "SELECT e.sqlstate, e.count FROM statement_errors e JOIN statements s "
                       "USING (run_id, fingerprint, database, user_name) "
                       "WHERE s.query LIKE 'SELECT $1/$2%'")
    assert errs == [("22012", 1)], errs


def test_run_label_connections_and_file_mode():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--run-label", "ci-label-7"]).start()
    for _ in range(3):
        res = h.psql(pg.host, pg.port, "SELECT 1")
        assert res.rc == 0, res
    db = stopped(pg)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600, oct(os.stat(db).st_mode)
    runs = db_rows(db, "SELECT label, ended_at IS NOT NULL, connections FROM runs")
    assert runs == [("ci-label-7", 1, 3)], runs
    conns = db_rows(db, "SELECT user_name, database, application_name, bytes_from_client > 0, "
                        "bytes_from_server > 0, ended_at IS NOT NULL, statements "
                        "FROM connections")
    assert len(conns) == 3, conns
    for row in conns:
        assert row == (h.SUPERUSER, "postgres", "pgscope-tests", 1, 1, 1, 1), row


def test_readable_while_pgscope_writes():
    cluster = bench_cluster()
    pg = h.Pgscope(cluster).start()
    done = threading.Event()
    out = {}

    def load():
        out["res"] = h.pgbench(pg.host, pg.port, ["-S", "-n", "-T", "6", "-c", "1"],
                               dbname=BENCH_DB)
        done.set()

    threading.Thread(target=load, daemon=True).start()
    seen = 0
    deadline = time.monotonic() + 5.5  # snapshots every 500 ms; slack for a loaded machine
    while time.monotonic() < deadline and not seen:
        time.sleep(0.2)
        if os.path.exists(pg.db):
            rows = db_rows(pg.db, "SELECT coalesce(sum(calls), 0) FROM statements "
                                  "WHERE query LIKE '%pgbench_accounts%'")
            seen = rows[0][0]
    assert seen > 0, "no statements visible in the database while pgscope ran"
    done.wait(30)
    transactions(out["res"])
    stopped(pg)


def test_locked_database_loses_no_traffic():
    """A second writer holds the database for 3 s: traffic is unharmed, the final snapshot
    still has every statement."""
    cluster = bench_cluster()
    pg = h.Pgscope(cluster).start()
    assert h.wait_for(lambda: os.path.exists(pg.db), 5)
    con = sqlite3.connect(pg.db, timeout=5, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    res = h.pgbench(pg.host, pg.port, ["-S", "-n", "-T", "3", "-c", "2"], dbname=BENCH_DB)
    con.execute("ROLLBACK")
    con.close()
    n = transactions(res)
    db = stopped(pg)
    assert accounts_row(db)[0] == n
    lost = db_rows(db, "SELECT lost_writes FROM runs")[0][0]
    h.note("lost writes while locked: %d" % lost)
    assert lost > 0, "the lock should have cost at least one snapshot"
    assert "lost" in pg.log_text().lower(), pg.log_text()


def test_queue_overflow_drops_events_not_traffic():
    """One Query of 20000 statements arrives at once; a 1024-slot queue cannot hold their
    events. The client gets every result, and counted + dropped statements add up."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--queue-size", "1024"]).start()
    n = 20000
    conn = h.connect(pg.host, pg.port)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT 7 AS overflow_probe;" * n)
    assert cur.fetchone() == (7,)
    conn.close()
    db = stopped(pg)
    calls = db_rows(db, "SELECT coalesce(sum(calls), 0) FROM statements "
                        "WHERE query LIKE '%overflow_probe%'")[0][0]
    dropped, statements = db_rows(db, "SELECT events_dropped, statements FROM runs")[0]
    h.note("%d of %d statements counted, %d events dropped" % (calls, n, dropped))
    assert dropped > 0, "a 1024-slot queue should have overflowed"
    assert calls + dropped >= n and calls < n, (calls, dropped)


def test_unusable_database_path_still_forwards():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--db", "/proc/pgscope-cannot-be-here.db"], flags=True)
    pg.db = "/proc/pgscope-cannot-be-here.db"
    pg.start()
    res = h.psql(pg.host, pg.port, "SELECT 'still forwarding'")
    assert res.rc == 0 and "still forwarding" in res.stdout, res
    assert "forwarding without statistics" in pg.log_text(), pg.log_text()
    assert pg.stop() == 0


def test_literals_and_passwords_not_stored_by_default():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster).start()
    res = h.psql(pg.host, pg.port, "SELECT 'secret-literal-4711' AS s", user="md5_user",
                 password=h.PASSWORDS["md5_user"])
    assert res.rc == 0, res
    conn = h.connect(pg.host, pg.port)
    cur = conn.cursor()
    cur.execute("SELECT %s::text AS bound", ("secret-param-0815",))
    conn.close()
    db = stopped(pg)
    blob = b""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            with open(db + suffix, "rb") as f:
                blob += f.read()
    for secret in (b"secret-literal-4711", b"secret-param-0815",
                   h.PASSWORDS["md5_user"].encode()):
        assert secret not in blob, secret
        assert secret.decode() not in pg.log_text(), secret


def test_store_params_keeps_one_example():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--store-params", "on"]).start()
    conn = h.connect(pg.host, pg.port)
    cur = conn.cursor()
    for i in range(3):
        cur.execute("SELECT %s::int + 1 AS example_probe", (i + 40,))
    conn.close()
    db = stopped(pg)
    rows = db_rows(db, "SELECT calls, example_query FROM statements "
                       "WHERE query LIKE '%example_probe%'")
    assert len(rows) == 1 and rows[0][0] == 3, rows
    assert "40" in rows[0][1], rows


def test_sqlcommenter_tags_counted():
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster).start()
    for action in ("index", "index", "show"):
        sql = "SELECT 1 AS tagged /*controller='users',action='%s'*/" % action
        assert h.psql(pg.host, pg.port, sql).rc == 0
    db = stopped(pg)
    rows = dict(db_rows(db, "SELECT t.tags, t.calls FROM statement_tags t JOIN statements s "
                            "USING (run_id, fingerprint) WHERE s.query LIKE '%tagged%'"))
    assert rows == {"action=index,controller=users": 2, "action=show,controller=users": 1}, rows
