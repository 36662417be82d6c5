"""Operational flows: SIGHUP reload, max_connections, IPv6 listener, large notices and
notifications, upstream sslmode against a server without TLS, idle clients."""

import os
import random
import resource
import select
import signal
import socket
import string
import time

import psycopg2

import harness as h

SERVER_PORT = "SELECT inet_server_port()"


def raw_startup_error(px, user="trust_user"):
    """Fields of the ErrorResponse a raw startup through px gets, or None."""
    sock = h.raw_connect(px.host, px.port)
    try:
        sock.sendall(h.startup_packet(user))
        data, how = h.read_until_close(sock)
    finally:
        sock.close()
    assert how != "timeout", "no answer within 5s: %r" % data[:200]
    return h.first_error(data)

# ---------------------------------------------------------------- SIGHUP reload


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def test_sighup_reload_switches_upstream():
    a = h.shared_cluster()
    b = h.Cluster().start()
    px = h.Pgscope(a, flags=False)
    path = os.path.join(px.dir, "pgscope.ini")

    def config(cluster, extra=""):
        return ("[pgscope]\nlisten = %s\nupstream = %s:%d\ndb = %s\nlog_level = info\n%s"
                % (px.listen[0], cluster.host, cluster.port, px.db, extra))

    write_file(path, config(a))
    px.args = ["--config", path]
    px.start()
    old = px.connect()
    try:
        assert h.query_one(old, SERVER_PORT) == a.port
        with old.cursor() as cur:
            cur.execute("CREATE TEMP TABLE on_a (v int)")
            cur.execute("INSERT INTO on_a VALUES (1)")

        write_file(path, config(b))
        px.signal(signal.SIGHUP)
        reloaded = "settings reloaded; upstream %s:%d" % (b.host, b.port)
        assert h.wait_for(lambda: reloaded in px.log_text(), 5), px.log_text()
        new = px.connect()
        try:
            assert h.query_one(new, SERVER_PORT) == b.port
            assert h.query_one(new, "SHOW port") == str(b.port)
        finally:
            new.close()
        # The session opened before the reload stays on A, temp table and all.
        assert h.query_one(old, SERVER_PORT) == a.port
        assert h.query_one(old, "SELECT sum(v) FROM on_a") == 1
        old.commit()

        write_file(path, config(a, "no_such_setting = 1\n"))
        px.signal(signal.SIGHUP)
        assert h.wait_for(lambda: "reload refused" in px.log_text(), 5), px.log_text()
        assert px.alive(), px.log_text()
        res = h.psql(px.host, px.port, SERVER_PORT)
        assert res.rc == 0 and res.stdout == "%d\n" % b.port, res
        assert h.query_one(old, SERVER_PORT) == a.port
    finally:
        old.close()


def test_slowloris_cannot_lock_clients_out():
    """2,000 connections that send 3 bytes and hang take no slot of a client that logs in: they
    have a cap of their own (max_startup_connections), past which the oldest is closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    px = h.proxy(args=["--max-connections", "20", "--max-startup-connections", "50"])
    working = px.connect()
    hogs = []
    try:
        for _ in range(2000):
            sock = socket.create_connection((px.host, px.port), timeout=5)
            sock.sendall(b"\0\0\0")
            hogs.append(sock)
        for i in range(5):
            conn = px.connect()
            assert h.query_one(conn, "SELECT %d" % i) == i
            conn.close()
        assert h.query_one(working, "SELECT 42") == 42
        # The hogs are closed without a word, oldest first, as a timeout closes them: all but
        # the newest 50 (and the few the logins above made room for).
        open_hogs = set(range(1900))

        def oldest_closed():
            for i in list(open_hogs):
                hogs[i].settimeout(0.001)
                try:
                    if hogs[i].recv(1) == b"":
                        open_hogs.discard(i)
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    open_hogs.discard(i)
            return not open_hogs
        assert h.wait_for(oldest_closed, 10, interval=0.2), \
            "%d of the 1900 oldest silent connections still open" % len(open_hogs)
        assert "max_startup_connections" in px.log_text(), px.log_text()
    finally:
        working.close()
        for sock in hogs:
            sock.close()
    assert px.alive()


def test_startup_timeout_closes_silent_connection():
    px = h.proxy(args=["--startup-timeout", "1"])
    sock = socket.create_connection((px.host, px.port), timeout=5)
    try:
        sock.sendall(b"\0\0")
        start = time.monotonic()
        data, how = h.read_until_close(sock)
        took = time.monotonic() - start
    finally:
        sock.close()
    # Closed without a word, as PostgreSQL's authentication_timeout does.
    assert data == b"" and how == "eof" and 0.5 < took < 4, (data, how, took)


# ---------------------------------------------------------------- max_connections


def test_max_connections():
    px = h.proxy(args=["--max-connections", "2"])
    first, second = px.connect(), px.connect()
    try:
        assert h.query_one(first, "SELECT 1") == 1
        assert h.query_one(second, "SELECT 2") == 2
        try:
            px.connect().close()
            raise AssertionError("a third session was accepted with --max-connections 2")
        except psycopg2.OperationalError as exc:
            assert "too many clients" in str(exc), str(exc)
        fields = raw_startup_error(px)
        assert fields is not None and fields.get("C") == "53300", fields
        # libpq's default sslmode=prefer sends an SSLRequest first: it is answered, as
        # PostgreSQL answers it, so the client reads the reason and not "error during SSL
        # exchange".
        try:
            px.connect(sslmode="prefer").close()
            raise AssertionError("a third session was accepted with sslmode=prefer")
        except psycopg2.OperationalError as exc:
            assert "too many clients" in str(exc), str(exc)
        # Refused clients do not use up slots; the open sessions are unaffected.
        assert h.query_one(first, "SELECT 3") == 3
        first.close()

        def third_works():
            try:
                conn = px.connect()
            except psycopg2.OperationalError:
                return False
            try:
                return h.query_one(conn, "SELECT 4") == 4
            finally:
                conn.close()
        assert h.wait_for(third_works, 2, interval=0.1), \
            "no new session 2s after one of two closed; log:\n" + px.log_text()
        assert h.query_one(second, "SELECT 5") == 5
    finally:
        first.close()
        second.close()

# ---------------------------------------------------------------- IPv6


def ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Ipv6Pgscope(h.Pgscope):
    @property
    def host(self):
        return "::1"


def test_ipv6_listener():
    if not ipv6_loopback():
        h.note("skipped: no IPv6 loopback on this machine")
        return
    cluster = h.shared_cluster()
    port = h.free_port()
    px = Ipv6Pgscope(cluster, listen=["[::1]:%d" % port]).start()
    res = h.psql("::1", port, "SELECT current_user, inet_server_port()", user="trust_user")
    assert res.rc == 0 and res.stdout == "trust_user|%d\n" % cluster.port, res
    conn = px.connect()
    try:
        assert h.query_one(conn, "SELECT 42") == 42
    finally:
        conn.close()
    assert not h.port_open("127.0.0.1", port), "listening on IPv4 although only [::1] was given"

# ---------------------------------------------------------------- large notices and notifications


def big_payload(seed, size=7000):
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def notice_texts(conn, payload):
    del conn.notices[:]
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('pgscope.payload', %s, false)", (payload,))
        cur.execute("DO $$ BEGIN RAISE NOTICE '%', current_setting('pgscope.payload'); END $$")
    return list(conn.notices)


def wait_notifies(conn, count, timeout=5):
    deadline = time.monotonic() + timeout
    while len(conn.notifies) < count and time.monotonic() < deadline:
        select.select([conn], [], [], max(0, deadline - time.monotonic()))
        conn.poll()
    return conn.notifies


def test_large_notice_and_notification():
    cluster = h.shared_cluster()
    px = h.proxy()
    payload = big_payload(7000)
    direct, proxied, notifier = cluster.connect(), px.connect(), px.connect()
    try:
        for conn in (direct, proxied, notifier):
            conn.autocommit = True
        want = notice_texts(direct, payload)
        got = notice_texts(proxied, payload)
        assert want == ["NOTICE:  %s\n" % payload], [n[:100] for n in want]
        assert got == want, "notice through pgscope differs: %r" % [n[:100] for n in got]

        with proxied.cursor() as cur:
            cur.execute("LISTEN big_payloads")
        for sender, text in ((notifier, payload), (direct, big_payload(7001))):
            with sender.cursor() as cur:
                cur.execute("SELECT pg_notify('big_payloads', %s)", (text,))
        notes = wait_notifies(proxied, 2)
        assert len(notes) == 2, "got %d notifications" % len(notes)
        assert [n.payload for n in notes] == [payload, big_payload(7001)], \
            [(len(n.payload), n.payload[:40]) for n in notes]
        assert {n.channel for n in notes} == {"big_payloads"}
    finally:
        for conn in (direct, proxied, notifier):
            conn.close()

# ---------------------------------------------------------------- upstream sslmode without server TLS


def test_upstream_sslmode_against_ssl_off():
    cluster = h.Cluster(settings={"ssl": "off"}).start()
    assert cluster.psql("SHOW ssl") == "off\n"
    prefer = h.proxy(cluster, args=["--upstream-sslmode", "prefer"])
    conn = prefer.connect(user="md5_user", password=h.PASSWORDS["md5_user"])
    try:
        assert h.query_one(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is False
    finally:
        conn.close()

    require = h.proxy(cluster, args=["--upstream-sslmode", "require"])
    try:
        require.connect().close()
        raise AssertionError("connected with upstream sslmode=require to a server without TLS")
    except psycopg2.OperationalError as exc:
        message = str(exc)
    assert "TLS" in message, message
    fields = raw_startup_error(require)
    assert fields is not None and fields.get("C") == "08001", fields
    assert "TLS" in fields.get("M", ""), fields
    assert require.alive() and prefer.alive()

# ---------------------------------------------------------------- idle clients


def test_idle_silent_clients_do_not_block_others():
    cluster = h.shared_cluster()
    px = h.proxy()
    idle = []
    try:
        for _ in range(50):
            idle.append(h.raw_connect(px.host, px.port))
        time.sleep(0.3)
        start = time.monotonic()
        res = h.psql(px.host, px.port, "SELECT 'served'", timeout=15)
        elapsed = time.monotonic() - start
        assert res.rc == 0 and res.stdout == "served\n", res
        assert elapsed < 5, "psql took %.1fs next to 50 idle clients" % elapsed
        # Silent clients hold no server backends (the server allows only 50 connections).
        count = int(cluster.psql("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE backend_type = 'client backend'"))
        assert count < 10, "%d client backends with 50 silent clients" % count
        readable = select.select(idle, [], [], 0)[0]
        assert not readable, "%d silent clients were answered or closed early" % len(readable)
    finally:
        for sock in idle:
            sock.close()
    assert px.alive(), px.log_text()
