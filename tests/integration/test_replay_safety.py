"""What a sampled replay must never do again: run a function with effects outside the
transaction. Each statement here reaches such a function without naming it (a user function, a
view, an operator, a row-level security policy, a column default) or names a denied built-in;
the application runs it once through pgscope, and the replay must stop at a plain EXPLAIN.
Every function here records its calls through dblink, on a connection of its own, so that a call
made inside a read-only transaction that is rolled back is still counted."""

import sqlite3

import psycopg2

import harness as h

DB = "replay_safety"


def cluster():
    """The shared cluster with DB: a log of calls written through dblink, and functions, a view,
    an operator, a policy and a default that call things the replay must not."""
    pg = h.shared_cluster()
    if not pg.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % DB).strip():
        pg.psql("CREATE DATABASE %s" % DB)
        log_dsn = "dbname=%s host=%s port=%d user=postgres" % (DB, pg.socket_dir, pg.port)
        pg.psql("""
            CREATE EXTENSION dblink;
            CREATE TABLE calls (fn text NOT NULL);
            CREATE FUNCTION log_call(fn text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
                AS $$ BEGIN
                    PERFORM dblink_exec('%s', format('INSERT INTO calls VALUES (%%L)', fn));
                END $$;
            -- issue 11: the application called it once; the replay killed a later connection
            CREATE FUNCTION report_and_cleanup() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
                PERFORM pg_sleep(0.3);
                PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE application_name = 'victim';
                PERFORM log_call('report_and_cleanup');
                RETURN 1;
            END $$;
            CREATE FUNCTION noisy(fn text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN
                PERFORM log_call(fn);
                RETURN true;
            END $$;
            CREATE TABLE one (id int PRIMARY KEY, label text);
            INSERT INTO one VALUES (1, 'x');
            CREATE VIEW noisy_view AS SELECT id, noisy('view') AS n FROM one;
            -- a plan does not print a LIMIT: the view's stored tree is read
            CREATE VIEW limited AS SELECT id FROM one LIMIT (CASE WHEN noisy('limit') THEN 1 END);
            CREATE FUNCTION noisy_eq(a int, b int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN
                PERFORM log_call('operator');
                RETURN a = b;
            END $$;
            CREATE OPERATOR ==== (leftarg = int, rightarg = int, function = noisy_eq);
            -- the same kill as report_and_cleanup, by built-ins only, through a view
            CREATE VIEW reaper AS SELECT pg_terminate_backend(a.pid) AS killed
                FROM pg_stat_activity a
                WHERE (SELECT pg_sleep(0.3)) IS NOT NULL AND a.application_name = 'victim';
            CREATE TABLE guarded (id int, secret text);
            INSERT INTO guarded VALUES (1, 's');
            ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
            CREATE POLICY see_all ON guarded USING (noisy('policy'));
            GRANT SELECT ON guarded TO trust_user;
            CREATE FUNCTION noisy_default() RETURNS text LANGUAGE plpgsql AS $$ BEGIN
                PERFORM log_call('default');
                RETURN 'stamped';
            END $$;
            CREATE TABLE stamped (id int, tag text DEFAULT noisy_default());
            CREATE FUNCTION pure_double(v int) RETURNS int LANGUAGE plpgsql
                AS $$ BEGIN RETURN v * 2; END $$;
            CREATE TABLE big AS SELECT g AS id, g %% 100 AS val FROM generate_series(1, 50000) g;
            ANALYZE;
        """ % log_dsn, dbname=DB)
    pg.psql("TRUNCATE calls, stamped", dbname=DB)
    return pg


def proxy(pg, *args):
    return h.Pgscope(pg, args=["--explain-min-duration", "0"] + list(args)).start()


def run(pgs, sql, user="postgres"):
    res = h.psql(pgs.host, pgs.port, sql, dbname=DB, user=user)
    assert res.rc == 0, res
    return res.stdout


def stopped(pgs):
    """Stops pgscope (it waits for the samples in flight) and opens its report database."""
    assert pgs.stop() == 0, pgs.log_text()
    return sqlite3.connect(pgs.db)


def calls(pg):
    """fn -> how many times it ran, as the dblink log saw it."""
    rows = pg.psql("SELECT fn, count(*) FROM calls GROUP BY fn", dbname=DB).split()
    return dict((fn, int(n)) for fn, n in (r.split("|") for r in rows))


def skips(db):
    return dict(db.execute("SELECT reason, count FROM explain_skips"))


def plans(db, like):
    return db.execute("SELECT analyzed, execution_ms, plan FROM plans WHERE query LIKE ?",
                      ("%" + like + "%",)).fetchall()


def only_planned(db, like):
    """The statement's plan is stored, planned only: estimates, no execution."""
    found = plans(db, like)
    assert len(found) == 1, (like, db.execute("SELECT query, analyzed FROM plans").fetchall(),
                             skips(db))
    analyzed, execution_ms, plan = found[0]
    assert analyzed == 0 and execution_ms is None and "Actual Rows" not in plan, found[0]


def victim(pg):
    return psycopg2.connect(host=pg.host, port=pg.port, user="postgres", dbname=DB,
                            application_name="victim", connect_timeout=5)


def still_alive(conn):
    try:
        return h.query_one(conn, "SELECT 1") == 1
    except psycopg2.Error:
        return False


def test_user_function_that_kills_is_not_replayed():
    """Issue 11: the replay ran report_and_cleanup() again and killed a connection opened after
    the application's call (the function sleeps first, so the victim is there by then)."""
    pg = cluster()
    pgs = proxy(pg)
    assert run(pgs, "SELECT report_and_cleanup()").strip() == "1"
    conn = victim(pg)
    db = stopped(pgs)
    alive = still_alive(conn)
    conn.close()
    assert calls(pg) == {"report_and_cleanup": 1}, (calls(pg), skips(db), pgs.log_text())
    assert alive, "the replay terminated a connection"
    only_planned(db, "report_and_cleanup")
    assert skips(db).get("function") == 1, skips(db)
    assert "report_and_cleanup" in pgs.log_text(), pgs.log_text()


def test_view_over_a_user_function_is_not_replayed():
    pg = cluster()
    pgs = proxy(pg)
    run(pgs, "SELECT * FROM noisy_view WHERE id = 1")
    db = stopped(pgs)
    assert calls(pg) == {"view": 1}, (calls(pg), skips(db))
    only_planned(db, "noisy_view")
    assert skips(db).get("function") == 1, skips(db)


def test_operator_backed_by_a_user_function_is_not_replayed():
    pg = cluster()
    pgs = proxy(pg)
    run(pgs, "SELECT count(*) FROM one WHERE id ==== 1")
    db = stopped(pgs)
    assert calls(pg) == {"operator": 1}, (calls(pg), skips(db))
    only_planned(db, "====")
    assert skips(db).get("function") == 1, skips(db)


def test_what_plans_do_not_print_is_checked_too():
    """VALUES rows, a LIMIT in a view, the operator comparing with a subquery: none is printed in
    a plan; the statement's text and the view's stored tree are read instead."""
    pg = cluster()
    pgs = proxy(pg)
    run(pgs, "SELECT * FROM (VALUES (noisy('values')), (true)) v(x)")
    run(pgs, "SELECT * FROM limited")
    run(pgs, "SELECT count(*) FROM one WHERE id ==== ANY (SELECT 1)")
    db = stopped(pgs)
    assert calls(pg) == {"values": 1, "limit": 1, "operator": 1}, (calls(pg), skips(db))
    for like in ("VALUES", "limited", "ANY"):
        only_planned(db, like)
    assert skips(db).get("function") == 3, skips(db)


def test_denied_built_ins_are_planned_not_run():
    """Through a view the guard cannot see into, and named in the statement itself."""
    pg = cluster()
    pgs = proxy(pg)
    run(pgs, "SELECT * FROM reaper")
    conn = victim(pg)
    log_dsn = "dbname=%s host=%s port=%d user=postgres" % (DB, pg.socket_dir, pg.port)
    run(pgs, "SELECT dblink_exec('%s', 'INSERT INTO calls VALUES (''direct'')')" % log_dsn)
    run(pgs, "SELECT pg_advisory_lock(1), pg_sleep(0.1)")
    db = stopped(pgs)
    alive = still_alive(conn)
    conn.close()
    assert alive, "the replay terminated a connection"
    assert calls(pg) == {"direct": 1}, (calls(pg), skips(db))
    for like in ("reaper", "dblink_exec", "pg_advisory_lock"):
        only_planned(db, like)
    assert skips(db).get("function") == 3, skips(db)


def test_policy_calling_a_user_function_is_not_replayed():
    """Row-level security applies to trust_user (not to a superuser): the policy is in the plan
    the side connection, connected as the statement's user, gets."""
    pg = cluster()
    pgs = proxy(pg)
    assert run(pgs, "SELECT count(*) FROM guarded", user="trust_user").strip() == "1"
    db = stopped(pgs)
    assert calls(pg) == {"policy": 1}, (calls(pg), skips(db), pgs.log_text())
    only_planned(db, "guarded")
    assert skips(db).get("function") == 1, skips(db)


def test_column_default_calling_a_user_function_is_not_replayed():
    """explain_dml = analyze-rollback runs DML; the default's call would outlive the rollback."""
    pg = cluster()
    pgs = proxy(pg, "--explain-dml", "analyze-rollback")
    run(pgs, "INSERT INTO stamped (id) VALUES (1)")
    db = stopped(pgs)
    assert calls(pg) == {"default": 1}, (calls(pg), skips(db))
    assert pg.psql("SELECT count(*) FROM stamped", dbname=DB).strip() == "1"
    only_planned(db, "stamped")
    assert skips(db).get("function") == 1, skips(db)


def test_allowed_user_function_is_analyzed():
    """A user function is run only when the user vouches for it."""
    sql = "SELECT count(*) FROM big WHERE pure_double(val) = 4"
    pg = cluster()
    pgs = proxy(pg)
    assert run(pgs, sql).strip() == "500"
    db = stopped(pgs)
    only_planned(db, "pure_double")
    pgs = proxy(pg, "--explain-allow-functions", "other.*, public.pure_double")
    run(pgs, sql)
    db = stopped(pgs)
    found = plans(db, "pure_double")
    assert len(found) == 1 and found[0][0] == 1 and found[0][1] > 0, (found, skips(db))
    assert skips(db) == {"sample": 1}, skips(db)


def test_harmless_built_ins_are_analyzed():
    """Stable and immutable built-ins, and volatile ones that only read, do not stop ANALYZE."""
    pg = cluster()
    pgs = proxy(pg)
    run(pgs, "SELECT count(*), max(now()), min(random()), max(clock_timestamp()) "
             "FROM big WHERE lower(val::text) = '4' AND id IS DISTINCT FROM 7")
    db = stopped(pgs)
    found = plans(db, "FROM big")
    assert len(found) == 1 and found[0][0] == 1, (found, skips(db), pgs.log_text())
    assert skips(db) == {"sample": 1}, skips(db)
