"""Upstream failures: server stopped mid-session, unreachable, backend terminated, then recovery."""

import threading
import time

import psycopg2

import harness as h

UPSTREAM_DOWN = "pgscope: could not connect to upstream"


def raw_startup_error(px):
    """Fields of the ErrorResponse pgscope sends to a raw startup, or None."""
    sock = h.raw_connect(px.host, px.port)
    try:
        sock.sendall(h.startup_packet("trust_user"))
        data, how = h.read_until_close(sock)
    finally:
        sock.close()
    assert how != "timeout", "no answer within 5s: %r" % data
    return h.first_error(data)


def assert_upstream_down_error(px):
    fields = raw_startup_error(px)
    assert fields is not None, "connection closed without an ErrorResponse"
    assert fields.get("C") == "08001", fields
    assert fields.get("M", "").startswith(UPSTREAM_DOWN), fields
    start = time.monotonic()
    try:
        px.connect().close()
        raise AssertionError("connected although the upstream is down")
    except psycopg2.OperationalError as exc:
        assert UPSTREAM_DOWN in str(exc), str(exc)
    assert time.monotonic() - start < 3, "refusal took %.1fs" % (time.monotonic() - start)


def failing_query(conn):
    """Run a query expected to fail; return the error text."""
    try:
        h.query_one(conn, "SELECT 1")
    except psycopg2.Error as exc:
        return str(exc)
    raise AssertionError("query succeeded on a dead upstream")


def test_upstream_stopped_mid_session():
    cluster = h.Cluster().start()
    px = h.proxy(cluster)
    proxied, direct = px.connect(), cluster.connect()
    try:
        assert h.query_one(proxied, "SELECT 1") == 1
        assert h.query_one(direct, "SELECT 1") == 1
        cluster.stop("fast")
        proxied_error, direct_error = failing_query(proxied), failing_query(direct)
        if "terminating connection due to administrator command" in direct_error:
            assert "terminating connection due to administrator command" in proxied_error, \
                (direct_error, proxied_error)
        assert px.alive(), px.log_text()
        assert_upstream_down_error(px)
        assert px.alive(), px.log_text()
        cluster.start()
        again = px.connect(user="scram_user", password=h.PASSWORDS["scram_user"])
        assert h.query_one(again, "SELECT current_user") == "scram_user"
        again.close()
    finally:
        proxied.close()
        direct.close()


def test_upstream_unreachable():
    px = h.proxy("127.0.0.1:%d" % h.free_port())
    for _ in range(3):
        assert_upstream_down_error(px)
    assert px.alive(), px.log_text()


def terminated_query_error(connect, cluster):
    """Error text a client gets when its backend is terminated during pg_sleep."""
    conn = connect(application_name="pgscope_victim")
    killer = threading.Thread(target=lambda: (time.sleep(0.5), cluster.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'pgscope_victim'")))
    killer.start()
    try:
        h.query_one(conn, "SELECT pg_sleep(30)")
        raise AssertionError("query survived pg_terminate_backend")
    except psycopg2.OperationalError as exc:
        return str(exc)
    finally:
        killer.join()
        conn.close()


def test_backend_terminated_mid_query():
    cluster = h.shared_cluster()
    px = h.proxy()
    direct = terminated_query_error(cluster.connect, cluster)
    proxied = terminated_query_error(px.connect, cluster)
    assert proxied == direct, (direct, proxied)
    assert px.alive(), px.log_text()
    fresh = px.connect()
    assert h.query_one(fresh, "SELECT 5") == 5
    fresh.close()
