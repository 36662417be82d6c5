"""pgscope changes nothing on the wire: byte-identical responses, startup parameters, replication,
fast-path function calls, half-closed connections, slow readers and many concurrent clients."""

import hashlib
import os
import select
import socket
import struct
import threading
import time

import psycopg2
import psycopg2.extras

import harness as h

# ---------------------------------------------------------------- frontend messages


def message(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def parse_msg(sql, param_types=()):
    body = cstr("") + cstr(sql) + struct.pack("!H", len(param_types))
    for oid in param_types:
        body += struct.pack("!I", oid)
    return message(b"P", body)


def bind_msg(params=()):
    body = cstr("") + cstr("") + struct.pack("!HH", 0, len(params))
    for value in params:
        data = value.encode()
        body += struct.pack("!I", len(data)) + data
    return message(b"B", body + struct.pack("!H", 0))


def describe_portal_msg():
    return message(b"D", b"P" + cstr(""))


def execute_msg(max_rows=0):
    return message(b"E", cstr("") + struct.pack("!I", max_rows))


SYNC = message(b"S")
TERMINATE = message(b"X")
INT4_OID = 23


def extended(sql, params=(), types=()):
    return parse_msg(sql, types) + bind_msg(params) + describe_portal_msg() + execute_msg()

# ---------------------------------------------------------------- backend stream


def read_raw_message(sock):
    """One backend message as its raw bytes (type, length and payload)."""
    head = h.recv_exact(sock, 5)
    length = struct.unpack("!I", head[1:])[0]
    assert 4 <= length <= 100 * 1024 * 1024, "bad message length %d (type %r)" % (length, head[:1])
    return head + h.recv_exact(sock, length - 4)


def read_until_ready(sock, count=1):
    """Raw backend messages up to and including the count-th ReadyForQuery."""
    messages = []
    while count:
        raw = read_raw_message(sock)
        messages.append(raw)
        if raw[:1] == b"Z":
            count -= 1
    return messages


def scripted_session(host, port, app_name):
    """Run the scripted conversation; return [(step, [raw messages])] and the bytes after Terminate."""
    sock = h.raw_connect(host, port)
    steps = []
    try:
        sock.sendall(h.startup_packet("trust_user", "postgres", application_name=app_name,
                                      options="-c search_path=public"))
        steps.append(("startup", read_until_ready(sock)))

        sock.sendall(h.simple_query_message(
            "SELECT 1 AS a, 'two'::text AS b, NULL::int AS c; "
            "SELECT current_setting('search_path') AS sp, current_user"))
        steps.append(("simple query", read_until_ready(sock)))

        # Two Sync-terminated batches in one write. The second statement of the first batch
        # fails, so the server discards the rest of that batch up to its Sync.
        pipeline = (extended("SELECT $1::int + 1 AS answer", ("41",), (INT4_OID,))
                    + extended("SELECT 1 / $1::int AS boom", ("0",), (INT4_OID,))
                    + extended("SELECT 'skipped'::text")
                    + SYNC
                    + extended("SELECT g, repeat('y', g) FROM generate_series(1, $1::int) g",
                               ("50",), (INT4_OID,))
                    + SYNC)
        sock.sendall(pipeline)
        steps.append(("pipeline", read_until_ready(sock, 2)))

        sock.sendall(h.simple_query_message("DO $$ BEGIN RAISE NOTICE 'hello'; END $$"))
        steps.append(("notice", read_until_ready(sock)))

        sock.sendall(h.simple_query_message("SET application_name = 'pgscope-transp-renamed'"))
        steps.append(("set application_name", read_until_ready(sock)))

        sock.sendall(TERMINATE)
        tail, how = h.read_until_close(sock)
        assert how == "eof", "after Terminate (port %d): %s, %r" % (port, how, tail[:200])
    finally:
        sock.close()
    return steps, tail


def describe_message(raw):
    return "%r len %d: %r" % (raw[:1], len(raw), raw[5:120])


def test_byte_level_transparency():
    cluster = h.shared_cluster()
    px = h.proxy()
    direct, direct_tail = scripted_session(cluster.host, cluster.port, "pgscope-transp")
    proxied, proxied_tail = scripted_session(px.host, px.port, "pgscope-transp")

    assert [s for s, _ in direct] == [s for s, _ in proxied]
    total_direct = total_proxied = 0
    for (step, want), (_, got) in zip(direct, proxied):
        want_kinds = [m[:1] for m in want]
        got_kinds = [m[:1] for m in got]
        assert want_kinds == got_kinds, "%s: message types differ\ndirect:  %r\nproxied: %r" % (
            step, want_kinds, got_kinds)
        for i, (a, b) in enumerate(zip(want, got)):
            if a[:1] == b"K":
                # BackendKeyData carries the backend's pid and secret: same shape, other values.
                assert a[:5] == b[:5], "%s: BackendKeyData header %r vs %r" % (step, a[:5], b[:5])
                continue
            assert a == b, "%s, message %d differs\ndirect:  %s\nproxied: %s" % (
                step, i, describe_message(a), describe_message(b))
        total_direct += sum(map(len, want))
        total_proxied += sum(map(len, got))
    assert direct_tail == proxied_tail == b"", (direct_tail, proxied_tail)
    assert total_direct == total_proxied, (total_direct, total_proxied)

    # The script did exercise what it is meant to.
    kinds = {step: [m[:1] for m in msgs] for step, msgs in proxied}
    assert kinds["pipeline"].count(b"E") == 1 and kinds["pipeline"].count(b"Z") == 2, kinds
    assert kinds["pipeline"].count(b"D") == 51, kinds["pipeline"]
    assert b"N" in kinds["notice"], kinds["notice"]
    assert b"S" in kinds["set application_name"], kinds["set application_name"]
    h.note("%d bytes compared" % total_proxied)


# ---------------------------------------------------------------- startup parameters

STARTUP_OPTIONS = "-c work_mem=1234kB -c search_path=foo,public"
SETTINGS_SQL = ("SELECT current_setting('work_mem'), current_setting('search_path'), "
                "(SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid())")


def server_side_settings(host, port):
    conn = h.connect(host, port, user="trust_user", options=STARTUP_OPTIONS,
                     application_name="transp-test")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW work_mem")
            shown = cur.fetchone()[0]
            cur.execute(SETTINGS_SQL)
            return (shown,) + cur.fetchone()
    finally:
        conn.close()


def test_startup_parameters_forwarded():
    cluster = h.shared_cluster()
    px = h.proxy()
    expected = ("1234kB", "1234kB", "foo,public", "transp-test")
    direct = server_side_settings(cluster.host, cluster.port)
    proxied = server_side_settings(px.host, px.port)
    assert direct == expected, direct
    assert proxied == direct, (direct, proxied)


# ---------------------------------------------------------------- logical replication


def test_logical_replication_copy_both():
    cluster = h.Cluster(settings={"wal_level": "logical"}).start()
    px = h.proxy(cluster)
    slot = "pgscope_slot"
    values = ["pgscope-repl-alpha", "pgscope-repl-beta", "pgscope-repl-gamma"]
    normal = px.connect()
    normal.autocommit = True
    repl = h.connect(px.host, px.port,
                     connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        with normal.cursor() as cur:
            cur.execute("CREATE TABLE repl_items (id int PRIMARY KEY, label text)")
        cur = repl.cursor()
        cur.create_replication_slot(slot, output_plugin="test_decoding")
        with normal.cursor() as ncur:
            for i, value in enumerate(values):
                ncur.execute("INSERT INTO repl_items VALUES (%s, %s)", (i, value))
        cur.start_replication(slot_name=slot, decode=True)
        payloads = []
        deadline = time.monotonic() + 8
        while not all(any(v in p for p in payloads) for v in values):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "changes not decoded within 8s; got %r" % payloads
            msg = cur.read_message()
            if msg is None:
                select.select([cur], [], [], min(remaining, 0.5))
                continue
            payloads.append(msg.payload)
            cur.send_feedback(flush_lsn=msg.data_start)
        inserts = [p for p in payloads if "INSERT" in p]
        assert len(inserts) == 3, payloads
        for i, value in enumerate(values):
            assert any("id[integer]:%d label[text]:'%s'" % (i, value) in p for p in inserts), payloads
        repl.close()
        # The walsender exits once it sees the connection closed; then the slot can go.
        inactive = h.wait_for(lambda: h.query_one(
            normal, "SELECT NOT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)), 5)
        assert inactive, "slot still active after the replication connection closed"
        with normal.cursor() as ncur:
            ncur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            ncur.execute("SELECT count(*) FROM pg_replication_slots")
            assert ncur.fetchone()[0] == 0
    finally:
        repl.close()
        normal.close()


# ---------------------------------------------------------------- fast-path function calls


def test_large_object_function_calls():
    px = h.proxy()
    data = os.urandom(1 << 20)
    conn = px.connect()
    try:
        lob = conn.lobject(0, "wb")
        oid = lob.oid
        assert lob.write(data) == len(data)
        lob.close()
        conn.commit()

        lob = conn.lobject(oid, "rb")
        back = lob.read()
        lob.close()
        conn.commit()
        assert len(back) == len(data), (len(back), len(data))
        assert back == data, "large object read back differs from what was written"
        # The server holds the right bytes too, not just a symmetric round trip.
        server_md5 = h.query_one(conn, "SELECT md5(lo_get(%s))", (oid,))
        assert server_md5 == hashlib.md5(data).hexdigest()
        conn.lobject(oid).unlink()
        conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------- half-closed connections


def login(host, port, app_name, timeout=5):
    sock = h.raw_connect(host, port, timeout)
    sock.sendall(h.startup_packet("trust_user", application_name=app_name))
    for raw in read_until_ready(sock):
        assert raw[:1] != b"E", h.error_fields(raw[5:])
    return sock


def backends_named(app_name):
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'" % app_name
    return int(h.shared_cluster().psql(sql))


def test_terminate_then_half_close():
    cluster = h.shared_cluster()
    px = h.proxy()
    for host, port in ((cluster.host, cluster.port), (px.host, px.port)):
        sock = login(host, port, "pgscope-halfclose-x")
        try:
            sock.sendall(TERMINATE)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(2)
            start = time.monotonic()
            try:
                data = sock.recv(4096)
            except socket.timeout:
                raise AssertionError("port %d: no EOF within 2s after Terminate" % port)
            assert data == b"", (port, data)
            assert time.monotonic() - start < 2
        finally:
            sock.close()
    assert h.wait_for(lambda: backends_named("pgscope-halfclose-x") == 0, 2)
    assert px.alive(), px.log_text()


def test_half_close_without_terminate():
    cluster = h.shared_cluster()
    px = h.proxy()
    for host, port in ((cluster.host, cluster.port), (px.host, px.port)):
        name = "pgscope-halfclose-%d" % port
        sock = login(host, port, name)
        try:
            assert backends_named(name) == 1
            sock.shutdown(socket.SHUT_WR)
            gone = h.wait_for(lambda: backends_named(name) == 0, 2)
            assert gone, "port %d: backend still there 2s after the client's EOF" % port
            sock.settimeout(2)
            data, how = h.read_until_close(sock)
            assert how == "eof" and data == b"", (port, how, data)
        finally:
            sock.close()
    assert px.alive(), px.log_text()


# ---------------------------------------------------------------- slow reader


def count_until_ready(sock, pending=b""):
    """Read to ReadyForQuery; return (DataRow count, message types other than DataRow)."""
    buf = bytearray(pending)
    rows = 0
    others = []
    pos = 0
    while True:
        while len(buf) - pos >= 5:
            kind = buf[pos]
            length = struct.unpack_from("!I", buf, pos + 1)[0]
            if len(buf) - pos < 1 + length:
                break
            if kind == 0x44:  # 'D'
                rows += 1
            else:
                others.append(bytes(buf[pos:pos + 1]))
                if kind == 0x5A:  # 'Z'
                    return rows, others
            pos += 1 + length
        del buf[:pos]
        pos = 0
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed after %d rows" % rows)
        buf += chunk


def test_slow_reader_bounded_memory():
    px = h.proxy()
    sock = login(px.host, px.port, "pgscope-slow-reader", timeout=30)
    try:
        before = px.rss_kb()
        with h.RssSampler(px.proc.pid) as sampler:
            sock.sendall(h.simple_query_message(
                "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"))
            time.sleep(3)
            after = px.rss_kb()
        growth = max(sampler.max_kb, after) - before
        h.note("RSS %d kB before, peak +%d kB while the client did not read" % (before, growth))
        assert growth <= 16 * 1024, "pgscope grew by %d kB while the client read nothing" % growth
        rows, others = count_until_ready(sock)
        assert rows == 200000, rows
        assert others == [b"T", b"C", b"Z"], others
        sock.sendall(h.simple_query_message("SELECT 'still alive'"))
        kinds = [m[:1] for m in read_until_ready(sock)]
        assert kinds == [b"T", b"D", b"C", b"Z"], kinds
    finally:
        sock.close()


# ---------------------------------------------------------------- concurrent clients


def client_worker(px, tid, loops, errors):
    try:
        conn = px.connect(application_name="pgscope-worker-%d" % tid)
        try:
            with conn.cursor() as cur:
                for i in range(loops):
                    tag = "t%d-i%d" % (tid, i)
                    cur.execute("SELECT %s::int, %s::int, %s::text, repeat(%s, %s)",
                                (tid, i, tag, "z", (tid * 37 + i) % 300))
                    got = cur.fetchall()
                    want = [(tid, i, tag, "z" * ((tid * 37 + i) % 300))]
                    if got != want:
                        errors.append("thread %d loop %d: %r != %r" % (tid, i, got, want))
                        return
        finally:
            conn.close()
    except Exception as exc:  # reported by the main thread
        errors.append("thread %d: %r" % (tid, exc))


def test_many_interleaved_clients():
    px = h.proxy()
    errors = []
    threads = [threading.Thread(target=client_worker, args=(px, tid, 200, errors))
               for tid in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "worker threads still running after 30s"
    assert not errors, errors
    assert px.alive(), px.log_text()


def test_session_ends_when_server_closes_before_client_eof():
    """Terminate, then the server closes first, then the client closes: pgscope must notice the
    session is over (it once waited for the shutdown timeout here)."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--shutdown-timeout", "20"]).start()
    sock = login(pg.host, pg.port, "pgscope-server-first")
    sock.sendall(TERMINATE)
    sock.settimeout(3)
    assert sock.recv(4096) == b""  # the server's close passed on as EOF
    sock.close()  # only now the client's own EOF
    time.sleep(0.3)
    pg.signal(15)
    start = time.monotonic()
    assert pg.wait(10) == 0, pg.log_text()
    assert time.monotonic() - start < 3, "pgscope waited for a session that was over"
