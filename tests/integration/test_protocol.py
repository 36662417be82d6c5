"""Wire protocol through pgscope: cancel, LISTEN/NOTIFY, garbage input and special startup requests."""

import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg2
import psycopg2.extensions

import harness as h


# ---------------------------------------------------------------- cancel

def cancel_after(conn, delay, stamp):
    time.sleep(delay)
    stamp.append(time.monotonic())
    conn.cancel()


def test_cancel_psycopg2():
    px = h.proxy()
    conn = px.connect()
    try:
        stamp = []
        thread = threading.Thread(target=cancel_after, args=(conn, 0.5, stamp))
        thread.start()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(30)")
            raise AssertionError("pg_sleep(30) was not cancelled")
        except psycopg2.Error as exc:
            ended = time.monotonic()
            assert exc.pgcode == "57014", (exc.pgcode, str(exc))
        thread.join()
        assert ended - stamp[0] < 1.0, "query ended %.2fs after the cancel" % (ended - stamp[0])
        conn.rollback()
        assert h.query_one(conn, "SELECT 'still usable'") == "still usable"
    finally:
        conn.close()


def test_cancel_hits_only_its_session():
    px = h.proxy()
    victim, bystander = px.connect(), px.connect()
    try:
        bystander_result = []
        thread = threading.Thread(
            target=lambda: bystander_result.append(h.query_one(bystander, "SELECT 1 FROM pg_sleep(2)")))
        thread.start()
        stamp = []
        canceller = threading.Thread(target=cancel_after, args=(victim, 0.5, stamp))
        canceller.start()
        try:
            h.query_one(victim, "SELECT pg_sleep(30)")
            raise AssertionError("victim query was not cancelled")
        except psycopg2.extensions.QueryCanceledError:
            pass
        thread.join(10)
        canceller.join()
        assert bystander_result == [1], "the other session's query was disturbed"
    finally:
        victim.close()
        bystander.close()


def test_cancel_psql_sigint():
    px = h.proxy()
    cmd = [h.PG_BIN + "/psql", "-X", "-c", "SELECT pg_sleep(30)"]
    env = dict(os.environ, **h.client_env(px.host, px.port))
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "canceling statement due to user request" in err, err
    assert proc.returncode == 1, (proc.returncode, err)
    assert elapsed < 1.0, "psql ended %.2fs after SIGINT" % elapsed


# ---------------------------------------------------------------- LISTEN/NOTIFY

def wait_notifies(conn, count, timeout=5):
    deadline = time.monotonic() + timeout
    while len(conn.notifies) < count and time.monotonic() < deadline:
        select.select([conn], [], [], max(0, deadline - time.monotonic()))
        conn.poll()
    return conn.notifies


def test_listen_notify():
    px = h.proxy()
    listener, notifier = px.connect(), px.connect()
    try:
        for conn in (listener, notifier):
            conn.autocommit = True
        with listener.cursor() as cur:
            cur.execute("LISTEN pgscope_channel")
        notifier_pid = h.query_one(notifier, "SELECT pg_backend_pid()")
        with notifier.cursor() as cur:
            cur.execute("NOTIFY pgscope_channel, 'hello through pgscope'")
        notes = wait_notifies(listener, 1)
        assert len(notes) == 1, "listener got %d notifications" % len(notes)
        note = notes[0]
        assert (note.channel, note.payload, note.pid) == ("pgscope_channel", "hello through pgscope",
                                                          notifier_pid), note
    finally:
        listener.close()
        notifier.close()


def test_listen_notify_many_in_order():
    px = h.proxy()
    listener, notifier = px.connect(), px.connect()
    try:
        for conn in (listener, notifier):
            conn.autocommit = True
        with listener.cursor() as cur:
            cur.execute("LISTEN burst")
        with notifier.cursor() as cur:
            for i in range(200):
                cur.execute("SELECT pg_notify('burst', %s)", (str(i) + "x" * 500,))
        notes = wait_notifies(listener, 200)
        assert [n.payload for n in notes] == [str(i) + "x" * 500 for i in range(200)]
    finally:
        listener.close()
        notifier.close()

# ---------------------------------------------------------------- garbage


def expect_protocol_error_or_close(sock, what, codes=("08P01",)):
    """The peer answers garbage with ErrorResponse 08P01 or just closes; never hangs."""
    data, how = h.read_until_close(sock)
    assert how != "timeout", "%s: no error and no close within 5s (got %r)" % (what, data[:200])
    if not data:
        return None
    fields = h.first_error(data)
    assert fields is not None, "%s: answered %r instead of an ErrorResponse" % (what, data[:200])
    assert fields.get("C") in codes, "%s: %r" % (what, fields)
    return fields


def send_and_check(px, payload, what, half_close=False):
    # An unknown request code reads as an unsupported protocol version, as in PostgreSQL.
    codes = ("08P01", "0A000") if what == "unknown request code" else ("08P01",)
    sock = h.raw_connect(px.host, px.port)
    try:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return expect_protocol_error_or_close(sock, what, codes)
    finally:
        sock.close()


def assert_witness(px, witness, tag):
    assert px.alive(), "pgscope died after %s; log:\n%s" % (tag, px.log_text())
    assert h.query_one(witness, "SELECT %s::text", (tag,)) == tag


def garbage_cases():
    rng = random.Random(20240607)
    cases = [("random bytes", b"\xde\xad\xbe\xef" + rng.randbytes(508), False)]
    for i in range(4):
        cases.append(("random blob %d" % i, rng.randbytes(rng.randint(1, 4096)), True))
    cases += [
        ("absurd startup length", struct.pack("!II", 0x7FFFFFFF, h.PROTOCOL_3), False),
        ("all-ones startup length", struct.pack("!II", 0xFFFFFFFF, h.PROTOCOL_3), False),
        ("too short startup length", struct.pack("!II", 4, h.PROTOCOL_3), False),
        ("unknown request code", struct.pack("!II", 16, 0x04D21234) + b"\0" * 8, False),
        ("startup without terminator", struct.pack("!II", 13, h.PROTOCOL_3) + b"user", True),
    ]
    return cases


def test_garbage_before_startup():
    px = h.proxy()
    witness = px.connect()
    try:
        assert_witness(px, witness, "before")
        for what, payload, half_close in garbage_cases():
            send_and_check(px, payload, what, half_close)
            assert_witness(px, witness, what)
        other = px.connect()
        assert h.query_one(other, "SELECT 7") == 7
        other.close()
    finally:
        witness.close()


def after_login_cases():
    return [
        ("unknown message type", b"\x01" + struct.pack("!I", 4)),
        ("unknown message type 0xff", b"\xff" + struct.pack("!I", 8) + b"abcd"),
        ("query with absurd length", b"Q" + struct.pack("!I", 0x7FFFFFFF) + b"SELECT 1"),
        ("message length below 4", b"Q" + struct.pack("!I", 2)),
    ]


def test_garbage_after_startup():
    px = h.proxy()
    cluster = h.shared_cluster()
    witness = px.connect()
    try:
        for what, payload in after_login_cases():
            for host, port in ((cluster.host, cluster.port), (px.host, px.port)):
                sock = h.raw_login(host, port)
                try:
                    sock.sendall(payload)
                    expect_protocol_error_or_close(sock, "%s (port %d)" % (what, port))
                finally:
                    sock.close()
            assert_witness(px, witness, what)
    finally:
        witness.close()


def test_bogus_cancel_request():
    px = h.proxy()
    witness = px.connect()
    try:
        sock = h.raw_connect(px.host, px.port)
        sock.sendall(struct.pack("!IIII", 16, h.CANCEL_REQUEST, 12345, 67890))
        data, how = h.read_until_close(sock)
        sock.close()
        assert how != "timeout" and data == b"", (data, how)
        assert_witness(px, witness, "bogus cancel")
    finally:
        witness.close()


def test_client_vanishes_mid_result():
    px = h.proxy()
    witness = px.connect()
    try:
        for _ in range(5):
            sock = h.raw_login(px.host, px.port)
            sock.sendall(h.simple_query_message("SELECT repeat('x', 1000) FROM generate_series(1, 200000)"))
            sock.recv(100)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        assert_witness(px, witness, "vanished clients")
        # Their backends go away too instead of lingering behind pgscope.
        sql = ("SELECT count(*) FROM pg_stat_activity WHERE usename = 'trust_user' "
               "AND application_name = ''")
        gone = h.wait_for(lambda: h.shared_cluster().psql(sql) == "0\n", 10)
        assert gone, "backends of disconnected clients still present"
    finally:
        witness.close()

# ---------------------------------------------------------------- special startup requests


def protocol2_startup():
    """A protocol 2.0 startup packet: 296 bytes, fixed-width fields."""
    body = struct.pack("!I", 0x00020000)
    body += b"postgres".ljust(64, b"\0") + b"trust_user".ljust(32, b"\0")
    body += b"\0" * 64 + b"\0" * 64 + b"\0" * 64
    return struct.pack("!I", len(body) + 4) + body


def test_protocol2_refused():
    px = h.proxy()
    cluster = h.shared_cluster()
    for host, port in ((cluster.host, cluster.port), (px.host, px.port)):
        sock = h.raw_connect(host, port)
        try:
            sock.sendall(protocol2_startup())
            data, how = h.read_until_close(sock)
        finally:
            sock.close()
        assert how != "timeout", (port, data)
        assert data[:1] == b"E", (port, data)
        assert b"unsupported frontend protocol" in data, (port, data)
    assert px.alive()


def request_answer(px, code):
    """Send an SSLRequest/GSSENCRequest; return (answer byte, socket)."""
    sock = h.raw_connect(px.host, px.port)
    sock.sendall(struct.pack("!II", 8, code))
    return sock.recv(1), sock


def login_on(sock):
    """Finish a plain startup on an already open socket; returns message types seen."""
    sock.sendall(h.startup_packet("trust_user"))
    kinds = []
    while not kinds or kinds[-1] != b"Z":
        kind, payload = h.read_message(sock)
        assert kind != b"E", h.error_fields(payload)
        kinds.append(kind)
    return kinds


def test_gssenc_request_answered_n():
    px = h.proxy()
    answer, sock = request_answer(px, h.GSSENC_REQUEST)
    try:
        assert answer == b"N", answer
        kinds = login_on(sock)
        assert kinds[0] == b"R" and b"K" in kinds, kinds
    finally:
        sock.close()


def test_ssl_request_without_certificate_answered_n():
    px = h.proxy()
    answer, sock = request_answer(px, h.SSL_REQUEST)
    try:
        assert answer == b"N", answer
        assert login_on(sock)[0] == b"R"
    finally:
        sock.close()


def test_ssl_request_with_certificate_answered_s():
    proxy_certs = h.certs("proxy")
    px = h.proxy(args=["--tls-cert-file", proxy_certs.cert, "--tls-key-file", proxy_certs.key])
    answer, sock = request_answer(px, h.SSL_REQUEST)
    sock.close()
    assert answer == b"S", answer


def test_protocol_3_1_negotiated():
    """A newer minor version with a _pq_ option is negotiated down as PostgreSQL does."""
    px = h.proxy()
    cluster = h.shared_cluster()
    seen = {}
    for host, port in ((cluster.host, cluster.port), (px.host, px.port)):
        sock = h.raw_connect(host, port)
        try:
            sock.sendall(h.startup_packet("trust_user", version=h.PROTOCOL_3 + 1,
                                          **{"_pq_.test_option": "on"}))
            kinds = []
            while not kinds or kinds[-1] not in (b"Z", b"E"):
                kinds.append(h.read_message(sock)[0])
            seen[port] = kinds
        finally:
            sock.close()
    direct, proxied = seen[cluster.port], seen[px.port]
    assert proxied[:2] == [b"v", b"R"] and proxied[-1] == b"Z", proxied
    assert direct[:2] == proxied[:2], (direct, proxied)
