"""pgscope process life: CLI, shutdown on SIGTERM, listeners, Unix socket upstream, config file."""

import os
import shutil
import signal
import socket
import time

import psycopg2

import harness as h


def select_one(host, port, **conn):
    res = h.psql(host, port, "SELECT 1", **conn)
    assert res.rc == 0 and res.stdout == "1\n", (host, port, res)


def refuses_new_clients(px):
    """True when a new client cannot get a working session from pgscope."""
    try:
        conn = px.connect()
    except psycopg2.OperationalError:
        return True
    conn.close()
    return False

# ---------------------------------------------------------------- command line


def test_version_and_help():
    for args in (["--version"], ["version"]):
        res = h.run([h.PGSCOPE_BIN] + args, timeout=10)
        assert res.rc == 0 and res.stdout.strip() == "pgscope 0.1.0", res
    for args in (["--help"], ["help"]):
        res = h.run([h.PGSCOPE_BIN] + args, timeout=10)
        assert res.rc == 0 and "pgscope proxy" in res.stdout + res.stderr, (args, res)
    res = h.run([h.PGSCOPE_BIN, "proxy", "--help"], timeout=10)
    assert res.rc == 0 and "--listen" in res.stdout + res.stderr, res


def test_bad_usage_exits_2():
    for args in (["proxy", "--no-such-option"], ["no-such-command"],
                 ["proxy", "--config", "/nonexistent/pgscope.ini"],
                 ["proxy", "--upstream-sslmode", "sometimes"]):
        res = h.run([h.PGSCOPE_BIN] + args, timeout=10)
        assert res.rc == 2, (args, res)


def test_port_in_use_exits_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = h.run([h.PGSCOPE_BIN, "proxy", "--listen", "127.0.0.1:%d" % port,
                     "--upstream", "127.0.0.1:%d" % h.shared_cluster().port,
                     "--db", "/tmp/pgscope-unused.db"], timeout=15)
    assert res.rc == 1, res
    assert res.stderr.strip(), "no error message on stderr"


def test_logs_listening_line():
    px = h.proxy()
    expected = "listening on 127.0.0.1:%d" % px.port
    assert h.wait_for(lambda: expected in px.log_text(), 5), px.log_text()

# ---------------------------------------------------------------- shutdown


def test_sigterm_waits_for_idle_session():
    px = h.proxy()
    conn = px.connect()
    assert h.query_one(conn, "SELECT 1") == 1
    px.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert refuses_new_clients(px), "new connection accepted after SIGTERM"
    assert px.alive(), "pgscope exited while a session was open; log:\n" + px.log_text()
    assert h.query_one(conn, "SELECT 2") == 2, "open session stopped working after SIGTERM"
    conn.close()
    rc = px.wait(5)
    assert rc == 0, "exit code %r after the last session closed; log:\n%s" % (rc, px.log_text())


def test_sigterm_without_sessions_exits_0():
    px = h.proxy()
    start = time.monotonic()
    assert px.stop() == 0, px.log_text()
    assert time.monotonic() - start < 3, "shutdown took %.1fs" % (time.monotonic() - start)
    assert not h.port_open(px.host, px.port), "port still open after exit"


def test_sigint_behaves_like_sigterm():
    px = h.proxy()
    px.signal(signal.SIGINT)
    assert px.wait(5) == 0, px.log_text()


def test_shutdown_timeout_ends_idle_session():
    px = h.proxy(args=["--shutdown-timeout", "1"])
    conn = px.connect()
    assert h.query_one(conn, "SELECT 1") == 1
    px.signal(signal.SIGTERM)
    rc = px.wait(6)
    try:
        assert rc == 0, "exit code %r with a session past the shutdown timeout" % rc
        try:
            h.query_one(conn, "SELECT 1")
            raise AssertionError("session still works after pgscope exited")
        except psycopg2.Error:
            pass
    finally:
        conn.close()

# ---------------------------------------------------------------- listeners and upstream


def test_multiple_listeners():
    cluster = h.shared_cluster()
    sock_dir = h.make_temp_dir("pgscope-sock-")
    sock_dir2 = h.make_temp_dir("pgscope-sock-")
    p1, p2, p3 = h.free_port(), h.free_port(), h.free_port()
    listen = ["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2, sock_dir, "%s:%d" % (sock_dir2, p3)]
    try:
        h.proxy(cluster, listen=listen)
        assert os.path.exists(os.path.join(sock_dir, ".s.PGSQL.%d" % p1)), os.listdir(sock_dir)
        for host, port in (("127.0.0.1", p1), ("127.0.0.1", p2), (sock_dir, p1), (sock_dir2, p3)):
            res = h.psql(host, port, "SELECT current_user, inet_server_port() = %d" % cluster.port,
                         user="md5_user", password=h.PASSWORDS["md5_user"])
            assert res.rc == 0 and res.stdout == "md5_user|t\n", (host, port, res)
    finally:
        h.close_test_resources()
        for d in (sock_dir, sock_dir2):
            shutil.rmtree(d, ignore_errors=True)


def test_unix_socket_upstream():
    cluster = h.shared_cluster()
    for upstream in (cluster.unix_socket, "%s:%d" % (cluster.socket_dir, cluster.port)):
        px = h.proxy(upstream)
        res = h.psql(px.host, px.port, "SELECT inet_server_addr() IS NULL, current_user",
                     user="scram_user")
        # Over the Unix socket pg_hba says trust, so no password is needed.
        assert res.rc == 0 and res.stdout == "t|scram_user\n", (upstream, res)
        px.stop()
    tcp = h.proxy(cluster)
    res = h.psql(tcp.host, tcp.port, "SELECT inet_server_addr() IS NULL")
    assert res.stdout == "f\n", res

# ---------------------------------------------------------------- config file


def write_config(px, text):
    path = os.path.join(px.dir, "pgscope.ini")
    with open(path, "w") as f:
        f.write(text)
    return path


def config_proxy(listen, text_for):
    """A pgscope configured only through --config; text_for(px) returns the ini text."""
    px = h.Pgscope(h.shared_cluster(), listen=listen, flags=False)
    px.args = ["--config", write_config(px, text_for(px))]
    return px.start()


def test_config_file_same_as_flags():
    cluster = h.shared_cluster()
    p1 = h.free_port()
    sock_dir = h.make_temp_dir("pgscope-sock-")
    try:
        config_proxy(["127.0.0.1:%d" % p1, sock_dir], lambda px: (
            "[pgscope]\nlisten = 127.0.0.1:%d, %s\nupstream = %s\ndb = %s\nlog_level = debug\n"
            % (p1, sock_dir, px.upstream, px.db)))
        flags = h.proxy(cluster)
        sql = "SELECT current_user, inet_server_port()"
        expected = h.psql(flags.host, flags.port, sql, user="trust_user")
        assert expected.rc == 0 and expected.stdout == "trust_user|%d\n" % cluster.port, expected
        for host in ("127.0.0.1", sock_dir):
            res = h.psql(host, p1, sql, user="trust_user")
            assert (res.rc, res.stdout) == (0, expected.stdout), (host, res)
    finally:
        h.close_test_resources()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_config_keys_outside_section_with_tls():
    proxy_certs = h.certs("proxy")
    port = h.free_port()
    px = config_proxy(["127.0.0.1:%d" % port], lambda px: (
        "listen = 127.0.0.1:%d\nupstream = %s\ndb = %s\ntls_cert_file = %s\ntls_key_file = %s\n"
        % (port, px.upstream, px.db, proxy_certs.cert, proxy_certs.key)))
    res = h.psql(px.host, px.port, "SELECT 1", sslmode="verify-full",
                 PGSSLROOTCERT=proxy_certs.ca_cert)
    assert res.rc == 0 and res.stdout == "1\n", res


def test_flags_override_config():
    from_config, from_flag = h.free_port(), h.free_port()
    px = h.Pgscope(h.shared_cluster(), listen=["127.0.0.1:%d" % from_flag], flags=False)
    config = write_config(px, "[pgscope]\nlisten = 127.0.0.1:%d\nupstream = 127.0.0.1:%d\ndb = %s\n"
                          % (from_config, h.free_port(), px.db))
    px.args = ["--config", config, "--listen", "127.0.0.1:%d" % from_flag,
               "--upstream", px.upstream]
    px.start()
    select_one("127.0.0.1", from_flag)
    assert not h.port_open("127.0.0.1", from_config), "config listen used although --listen given"
