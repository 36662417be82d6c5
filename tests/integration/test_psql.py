"""psql through pgscope: queries, multi-statement strings, errors and \\copy, compared with direct."""

import os
import tempfile

import psycopg2

import harness as h


def both(pgscope, sql=None, **kwargs):
    """The same psql run direct to PostgreSQL and through pgscope: (direct, proxied)."""
    cluster = h.shared_cluster()
    direct = h.psql(cluster.host, cluster.port, sql, **kwargs)
    proxied = h.psql(pgscope.host, pgscope.port, sql, **kwargs)
    return direct, proxied


def test_simple_query():
    px = h.proxy()
    direct, proxied = both(px, "SELECT 1 AS one, 'pgscope'::text AS name, now() IS NOT NULL")
    assert proxied.rc == 0, proxied
    assert proxied.stdout == "1|pgscope|t\n", proxied
    assert proxied.stdout == direct.stdout


def test_server_side_values_same_as_direct():
    px = h.proxy()
    sql = "SELECT current_user, current_database(), version(), current_setting('server_encoding')"
    direct, proxied = both(px, sql, user="trust_user")
    assert proxied.rc == 0, proxied
    assert proxied.stdout == direct.stdout, (direct, proxied)
    assert proxied.stdout.startswith("trust_user|postgres|PostgreSQL 15"), proxied


def test_multi_statement():
    px = h.proxy()
    direct, proxied = both(px, "SELECT 1; SELECT 2")
    assert proxied.rc == 0, proxied
    assert proxied.stdout.split() == ["1", "2"], proxied
    assert proxied.stdout == direct.stdout


def test_script_on_stdin():
    px = h.proxy()
    script = ("CREATE TEMP TABLE s(a int, b text);\n"
              "INSERT INTO s SELECT g, repeat('x', g) FROM generate_series(1, 200) g;\n"
              "SELECT count(*), sum(length(b)) FROM s;\n"
              "BEGIN; UPDATE s SET b = 'y' WHERE a < 100; ROLLBACK;\n"
              "SELECT count(*) FROM s WHERE b = 'y';\n")
    direct, proxied = both(px, stdin=script)
    assert proxied.rc == 0, proxied
    assert proxied.stdout == "200|20100\n0\n", proxied
    assert proxied.stdout == direct.stdout


def test_large_result():
    px = h.proxy()
    sql = "SELECT g, md5(g::text) FROM generate_series(1, 50000) g"
    direct, proxied = both(px, sql)
    assert proxied.rc == 0, proxied
    assert len(proxied.stdout.splitlines()) == 50000
    assert proxied.stdout == direct.stdout


def test_division_by_zero_error():
    px = h.proxy()
    direct, proxied = both(px, args=["-c", "\\set VERBOSITY verbose", "-c", "SELECT 1/0"])
    assert proxied.rc != 0, proxied
    assert "22012" in proxied.stderr and "division by zero" in proxied.stderr, proxied
    assert proxied.stderr == direct.stderr, (direct, proxied)


def test_error_sqlstate_psycopg2():
    px = h.proxy()
    conn = px.connect()
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT 1/0")
                raise AssertionError("division by zero did not fail")
            except psycopg2.Error as exc:
                assert exc.pgcode == "22012", exc.pgcode
                assert "division by zero" in exc.pgerror, exc.pgerror
        conn.rollback()
        assert h.query_one(conn, "SELECT 41 + 1") == 42
    finally:
        conn.close()


def test_session_continues_after_error():
    px = h.proxy()
    script = "SELECT 1;\nSELECT * FROM no_such_table;\nSELECT 3;\n"
    cluster = h.shared_cluster()
    args = ["-v", "ON_ERROR_STOP=0"]
    direct = h.psql(cluster.host, cluster.port, args=args, stdin=script)
    proxied = h.psql(px.host, px.port, args=args, stdin=script)
    assert proxied.stdout == "1\n3\n", proxied
    assert 'relation "no_such_table" does not exist' in proxied.stderr, proxied
    assert (proxied.stdout, proxied.stderr) == (direct.stdout, direct.stderr)


def write_copy_file(path, rows=5000):
    """Rows in COPY text format, with escapes, NULLs and non-ASCII text."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            text = "row %d tab\\there newline\\nback\\\\slash é ü 日本" % i if i % 7 else "\\N"
            f.write("%d\t%s\t%d.%02d\n" % (i, text, i * 3, i % 100))


def test_copy_in_and_out():
    px = h.proxy()
    cluster = h.shared_cluster()
    cluster.psql("DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t(id int, txt text, n numeric(12,2))")
    work = tempfile.mkdtemp(prefix="pgscope-copy-")
    try:
        source = os.path.join(work, "in.tsv")
        write_copy_file(source)
        res = h.psql(px.host, px.port, "\\copy copy_t FROM '%s'" % source)
        assert res.rc == 0, res
        via_proxy, via_direct = os.path.join(work, "proxy.tsv"), os.path.join(work, "direct.tsv")
        out_sql = "\\copy (SELECT * FROM copy_t ORDER BY id) TO '%s'"
        res = h.psql(px.host, px.port, out_sql % via_proxy)
        assert res.rc == 0, res
        res = h.psql(cluster.host, cluster.port, out_sql % via_direct)
        assert res.rc == 0, res
        assert h.md5_file(via_proxy) == h.md5_file(via_direct)
        assert h.md5_file(via_proxy) == h.md5_file(source), "COPY round trip changed the data"
    finally:
        cluster.psql("DROP TABLE IF EXISTS copy_t")
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


def test_copy_in_error_reported():
    px = h.proxy()
    cluster = h.shared_cluster()
    cluster.psql("DROP TABLE IF EXISTS copy_bad; CREATE TABLE copy_bad(id int)")
    try:
        data = "1\n2\nnot-a-number\n4\n"
        args = ["-c", "\\copy copy_bad FROM STDIN"]
        direct = h.psql(cluster.host, cluster.port, args=args, stdin=data)
        proxied = h.psql(px.host, px.port, args=args, stdin=data)
        assert proxied.rc != 0, proxied
        assert 'invalid input syntax for type integer: "not-a-number"' in proxied.stderr, proxied
        assert proxied.stderr == direct.stderr, (direct, proxied)
        assert cluster.psql("SELECT count(*) FROM copy_bad") == "0\n"
    finally:
        cluster.psql("DROP TABLE IF EXISTS copy_bad")
