"""Failure modes found in review: a server saying goodbye while pgscope still queues bytes for
it, and running out of file descriptors."""

import os
import socket
import struct
import threading
import time

import harness as h


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def fatal_message(text):
    body = b"SFATAL\0VFATAL\0C57P01\0M" + text.encode() + b"\0\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class StubbornServer:
    """A fake PostgreSQL that logs any client in, stops reading, then says goodbye (FATAL and
    FIN) while the client is still sending."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.goodbye = threading.Event()
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.sock.accept()
        self.conns.append(conn)
        length = struct.unpack("!I", h.recv_exact(conn, 4))[0]
        h.recv_exact(conn, length - 4)
        conn.sendall(b"R\0\0\0\x08\0\0\0\0" + b"Z\0\0\0\x05I")
        self.goodbye.wait(30)  # read nothing meanwhile: pgscope's queue to us fills up
        conn.sendall(fatal_message("terminating connection due to administrator command"))
        conn.shutdown(socket.SHUT_WR)

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def test_server_goodbye_while_client_is_paused_ends_the_session():
    server = StubbornServer()
    pg = h.Pgscope("127.0.0.1:%d" % server.port, args=["--shutdown-timeout", "20"]).start()
    try:
        client = h.raw_login(pg.host, pg.port, user="x")
        client.setblocking(False)
        big = h.simple_query_message("SELECT '" + "x" * (64 << 20) + "'")
        sent = 0
        deadline = time.monotonic() + 5
        idle = 0
        while time.monotonic() < deadline and sent < len(big) and idle < 10:
            # until every buffer on the way is full and sending stalls
            try:
                sent += client.send(big[sent:sent + 65536])
                idle = 0
            except BlockingIOError:
                idle += 1
                time.sleep(0.05)
        assert sent < len(big), "nothing pushed back: the server side never filled up"
        server.goodbye.set()
        client.settimeout(5)
        data, how = h.read_until_close(client)
        assert (h.first_error(data) or {}).get("C") == "57P01", (data[:200], how)
        client.close()
        time.sleep(0.5)
        before = cpu_ticks(pg.proc.pid)
        time.sleep(1)
        spent = cpu_ticks(pg.proc.pid) - before
        assert spent < 20, "pgscope spun at %d ticks/s after the session ended" % spent
        pg.signal(15)
        start = time.monotonic()
        assert pg.wait(10) == 0, pg.log_text()
        assert time.monotonic() - start < 3, "the session outlived its client"
    finally:
        server.close()


def test_running_out_of_descriptors_pauses_accepting():
    """With 48 descriptors, 30 clients: pgscope refuses what it cannot hold, without a busy loop
    or a flood of log lines, and serves again once clients leave."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster)
    pg_cmd = pg.command
    pg.command = lambda: ["prlimit", "--nofile=48:48", "--"] + pg_cmd()
    pg.start()
    socks = []
    try:
        for _ in range(30):
            try:
                socks.append(h.raw_login(pg.host, pg.port, timeout=0.5))
            except (OSError, AssertionError, EOFError):
                pass
        before = cpu_ticks(pg.proc.pid)
        time.sleep(2)
        spent = cpu_ticks(pg.proc.pid) - before
        lines = pg.log_text().count("accept failed")
        h.note("%d sessions held, %d accept-failed lines, %d ticks in 2 s" %
               (len(socks), lines, spent))
        assert spent < 40, "busy loop: %d ticks in 2 s" % spent
        assert lines < 50, lines
    finally:
        for s in socks:
            s.close()
    time.sleep(1.5)
    res = h.psql(pg.host, pg.port, "SELECT 'served again'")
    assert res.rc == 0 and "served again" in res.stdout, res
    assert pg.stop() == 0


def test_deeply_nested_statement_does_not_crash_pgscope():
    """libpg_query recurses per nesting level: 60,000 terms of 1+1+... (the server refuses it
    with a stack depth error) must leave pgscope up and counting."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--max-query-text", "262144"]).start()
    sql = "SELECT " + "+".join(["1"] * 60000)
    res = h.psql(pg.host, pg.port, sql, timeout=60)
    assert pg.alive(), pg.log_text()
    res = h.psql(pg.host, pg.port, "SELECT 'still here'")
    assert res.rc == 0 and "still here" in res.stdout, res
    assert pg.stop() == 0, pg.log_text()


def test_config_section_header_case_and_comment():
    """A section header written [PGSCOPE] with a comment after it still holds the settings."""
    cluster = h.shared_cluster()
    port = h.free_port()
    conf = os.path.join(h.make_temp_dir("conf-"), "pgscope.ini")
    with open(conf, "w") as f:
        f.write("[PGSCOPE]  # the proxy\nlisten = 127.0.0.1:%d\nupstream = %s:%d\n[other]\n"
                "listen = 127.0.0.1:1\n" % (port, cluster.host, cluster.port))
    pg = h.Pgscope(cluster, listen=["127.0.0.1:%d" % port], args=["--config", conf],
                   flags=False).start()
    res = h.psql(pg.host, pg.port, "SELECT 'configured'")
    assert res.rc == 0 and "configured" in res.stdout, res
    assert pg.stop() == 0
