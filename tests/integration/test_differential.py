"""Differential transparency: each script of raw client bytes is played once against PostgreSQL
and once against pgscope in front of it; the client must see the same answers and the same end.

A script is a list of steps:
    ("send", bytes)          one write of these bytes
    ("answer",)              read the one-byte answer to an SSLRequest or GSSENCRequest
    ("until", b"Z")          read messages up to one of these types (or the end)
    ("tls",)                 start TLS on the socket (after an 'S' answer)
    ("shut",)                half-close: the client sends nothing more
    ("pause", seconds)       wait
    ("kill", app_name)       the backend with this application_name is terminated
After the last step the client reads until the connection ends, or until it has been quiet for
QUIET seconds ("open"). Answers are compared message by message after normalization: values the
server makes up for each connection (backend key, SCRAM nonces and salts, notification pids) and
the source location fields of errors (F, L, R) are masked.
"""

import os
import socket
import ssl
import struct
import time

import harness as h

QUIET = 2.5
PROTOCOL_3 = h.PROTOCOL_3
USER = "trust_user"


def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def query(sql):
    return msg(b"Q", cstr(sql))


def parse(sql, name=""):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!H", 0))


def bind(params=()):
    body = cstr("") + cstr("") + struct.pack("!HH", 0, len(params))
    for value in params:
        body += struct.pack("!I", len(value)) + value.encode()
    return msg(b"B", body + struct.pack("!H", 0))


DESCRIBE = msg(b"D", b"P\0")
EXECUTE = msg(b"E", b"\0" + struct.pack("!I", 0))
SYNC = msg(b"S")
TERMINATE = msg(b"X")
SSL_REQUEST = struct.pack("!II", 8, h.SSL_REQUEST)
GSSENC_REQUEST = struct.pack("!II", 8, h.GSSENC_REQUEST)


def startup(user=USER, database="postgres", version=PROTOCOL_3, **params):
    return h.startup_packet(user, database, version, **params)


def protocol2_startup():
    body = struct.pack("!I", 0x00020000)
    body += b"postgres".ljust(64, b"\0") + USER.encode().ljust(32, b"\0") + b"\0" * 192
    return struct.pack("!I", len(body) + 4) + body


def login(user=USER, **params):
    return [("send", startup(user, **params)), ("until", b"ZE")]


def pipeline_query(sql):
    return parse(sql) + bind() + DESCRIBE + EXECUTE + SYNC


def sasl_initial_response():
    first = b"n,,n=,r=pgscopedifferentialnonce"
    return msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!I", len(first)) + first)

# ---------------------------------------------------------------- the scripts


def before_startup_cases():
    """Bytes that are not a valid startup: PostgreSQL answers some and closes on the rest."""
    hello = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + b"\x11" * 32
    return [
        ("Terminate as the first packet (connect, then end at once)", [("send", TERMINATE)]),
        ("Terminate as the first packet, then EOF", [("send", TERMINATE), ("shut",)]),
        ("an HTTP request", [("send", b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")]),
        ("connect and close", [("shut",)]),
        ("two bytes of a length, then EOF", [("send", b"\0\0"), ("shut",)]),
        ("half a startup packet, then EOF", [("send", startup()[:11]), ("shut",)]),
        ("startup length below 8", [("send", struct.pack("!II", 4, PROTOCOL_3))]),
        ("startup length 10005", [("send", struct.pack("!II", 10005, PROTOCOL_3))]),
        ("all-ones startup length", [("send", struct.pack("!II", 0xFFFFFFFF, PROTOCOL_3))]),
        ("a direct TLS ClientHello", [("send", hello)]),
        ("protocol 2.0 startup", [("send", protocol2_startup())]),
        ("protocol 4.0 startup", [("send", startup(version=4 << 16))]),
        ("protocol 1.0 startup", [("send", startup(version=1 << 16))]),
        ("protocol 3.99 with a _pq_ option",
         [("send", startup(version=PROTOCOL_3 + 99, **{"_pq_.pgscope": "on"})),
          ("until", b"ZE"), ("send", TERMINATE)]),
        ("an unknown request code", [("send", struct.pack("!II", 16, 0x04D21234) + b"\0" * 8)]),
        ("startup without its terminator",
         [("send", struct.pack("!II", 19, PROTOCOL_3) + b"user\0alice\0")]),
        ("startup with a name and no value",
         [("send", struct.pack("!II", 14, PROTOCOL_3) + b"user\0\0")]),
        ("startup without a user",
         [("send", struct.pack("!II", 27, PROTOCOL_3) + b"database\0postgres\0\0")]),
        ("startup for a database that does not exist",
         [("send", startup(database="pgscope_no_such_db"))]),
        ("startup for a role that does not exist", [("send", startup(user="pgscope_nobody"))]),
        ("a startup packet in one-byte writes",
         [("send", bytes([b])) for b in startup()] + [("until", b"ZE"), ("send", TERMINATE)]),
        ("cancel with an unknown key", [("send", struct.pack("!IIII", 16, h.CANCEL_REQUEST, 1, 2))]),
        ("cancel request of 12 bytes", [("send", struct.pack("!III", 12, h.CANCEL_REQUEST, 1))]),
        ("cancel request of 24 bytes",
         [("send", struct.pack("!IIIIII", 24, h.CANCEL_REQUEST, 1, 2, 3, 4))]),
    ]


def negotiation_cases():
    """SSLRequest and GSSENCRequest, over a Unix socket, where PostgreSQL refuses both."""
    return [
        ("SSLRequest refused, then a session",
         [("send", SSL_REQUEST), ("answer",)] + login() + [("send", TERMINATE)]),
        ("SSLRequest and the startup packet in one write",
         [("send", SSL_REQUEST + startup()), ("answer",)]),
        ("SSLRequest twice", [("send", SSL_REQUEST), ("answer",), ("send", SSL_REQUEST)]),
        ("GSSENCRequest twice", [("send", GSSENC_REQUEST), ("answer",), ("send", GSSENC_REQUEST)]),
        ("GSSENCRequest and the startup packet in one write",
         [("send", GSSENC_REQUEST + startup()), ("answer",)]),
        ("GSSENCRequest, SSLRequest, then a session",
         [("send", GSSENC_REQUEST), ("answer",), ("send", SSL_REQUEST), ("answer",)]
         + login() + [("send", TERMINATE)]),
        ("SSLRequest, GSSENCRequest, SSLRequest again",
         [("send", SSL_REQUEST), ("answer",), ("send", GSSENC_REQUEST), ("answer",),
          ("send", SSL_REQUEST)]),
        ("SSLRequest with a 12-byte length",
         [("send", struct.pack("!III", 12, h.SSL_REQUEST, 0)), ("answer",)] + login()
         + [("send", TERMINATE)]),
        ("SSLRequest then garbage", [("send", SSL_REQUEST), ("answer",), ("send", b"garbage!")]),
        ("SSLRequest then EOF", [("send", SSL_REQUEST), ("answer",), ("shut",)]),
    ]


def session_cases():
    """After the startup packet: the server's answers and closes, relayed as they are."""
    copy_in = [("send", query("CREATE TEMP TABLE t (a int); COPY t FROM STDIN")),
               ("until", b"GE")]
    return [
        ("Terminate then a queued query in one write (end inside the connect callback)",
         login() + [("send", TERMINATE + pipeline_query("SELECT 1"))]),
        ("Terminate then a query, the client keeps reading",
         login() + [("send", TERMINATE), ("pause", 0.2), ("send", query("SELECT 1"))]),
        ("Terminate mid-pipeline, without Sync",
         login() + [("send", parse("SELECT 1") + bind() + EXECUTE + TERMINATE)]),
        ("a failing pipeline, then Terminate",
         login() + [("send", pipeline_query("SELECT 1/0") + pipeline_query("SELECT 2")),
                    ("until", b"Z"), ("until", b"Z"), ("send", TERMINATE)]),
        ("half a Query, then EOF", login() + [("send", query("SELECT 1")[:7]), ("shut",)]),
        ("half a header, then EOF", login() + [("send", b"Q\0\0"), ("shut",)]),
        ("an unknown message type", login() + [("send", msg(b"\x01"))]),
        ("message type 0xff with a body", login() + [("send", msg(b"\xff", b"abcd"))]),
        ("a PasswordMessage after login", login() + [("send", msg(b"p", b"secret\0"))]),
        ("a message length below 4", login() + [("send", b"Q" + struct.pack("!I", 2))]),
        ("a Query of absurd length",
         login() + [("send", b"Q" + struct.pack("!I", 0x7FFFFFFF) + b"SELECT 1")]),
        ("a Sync of 20000 bytes", login() + [("send", b"S" + struct.pack("!I", 20004))]),
        ("a valid Query then an unknown type in one write",
         login() + [("send", query("SELECT 1") + msg(b"\x02"))]),
        ("EOF during COPY FROM STDIN", login() + copy_in + [("send", msg(b"d", b"1\n")),
                                                            ("shut",)]),
        ("CopyFail, then Terminate", login() + copy_in
         + [("send", msg(b"f", cstr("client gave up"))), ("until", b"Z"), ("send", TERMINATE)]),
        ("EOF after the password request",
         [("send", startup("md5_user")), ("until", b"R"), ("shut",)]),
        ("a wrong password", [("send", startup("md5_user")), ("until", b"R"),
                              ("send", msg(b"p", cstr("wrong")))]),
        ("a client that stops mid-SCRAM (authentication_timeout)",
         [("send", startup("scram_user")), ("until", b"R"), ("send", sasl_initial_response()),
          ("until", b"RE"), ("pause", 1.5)]),
        ("the backend terminated while the client is idle",
         login(application_name="pgscope_diff_idle") + [("kill", "pgscope_diff_idle")]),
        ("an idle session ended by Terminate", login() + [("send", TERMINATE)]),
    ]


def tls_cases():
    """TLS ending at pgscope, against a server with TLS: the same answers inside the tunnel."""
    return [
        ("TLS session", [("send", SSL_REQUEST), ("answer",), ("tls",)] + login()
         + [("send", query("SELECT 1")), ("until", b"Z"), ("send", TERMINATE)]),
        ("SSLRequest and the startup packet in one write, then TLS",
         [("send", SSL_REQUEST + startup()), ("answer",), ("tls",)]),
        ("SSLRequest again inside TLS",
         [("send", SSL_REQUEST), ("answer",), ("tls",), ("send", SSL_REQUEST)]),
        ("GSSENCRequest inside TLS",
         [("send", SSL_REQUEST), ("answer",), ("tls",), ("send", GSSENC_REQUEST), ("answer",)]
         + login() + [("send", TERMINATE)]),
        ("garbage inside TLS", [("send", SSL_REQUEST), ("answer",), ("tls",),
                                ("send", b"\x00\x00\x00\x03garbage")]),
    ]

# ---------------------------------------------------------------- playing a script


class Client:
    """A raw client that records what it receives, normalized."""

    def __init__(self, address, cluster):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(address)
        self.cluster = cluster
        self.pending = b""
        self.seen = []
        self.ended = None
        self.refused = False

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.ended = "reset"
            return False
        except (socket.timeout, ssl.SSLWantReadError):
            return None
        except ssl.SSLError as exc:
            self.ended = "tls error %s" % exc.reason
            return False
        if not chunk:
            self.ended = "eof"
            return False
        self.pending += chunk
        return True

    def _next_message(self):
        if len(self.pending) < 5:
            return None
        length = struct.unpack("!I", self.pending[1:5])[0]
        if length < 4 or length > (1 << 20):
            raw, self.pending = self.pending, b""
            self.seen.append(("raw", raw))
            return None
        if len(self.pending) < 1 + length:
            return None
        kind, body = self.pending[:1], self.pending[5:1 + length]
        self.pending = self.pending[1 + length:]
        self.seen.append(normalize(kind, body))
        return kind

    def until(self, kinds):
        while not self.ended:
            kind = self._next_message()
            if kind is not None and kind in kinds:
                return
            if kind is None and not self._recv(5):
                return

    def answer(self):
        while not self.pending and not self.ended:
            if not self._recv(5):
                break
        if self.pending[:1] in (b"N", b"S", b"G"):
            self.seen.append(("answer", self.pending[:1]))
            self.pending = self.pending[1:]
        else:  # a refusal: the rest of the script would race with the server's close
            self.refused = True

    def send(self, data):
        if self.ended:
            return
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the end of the connection is recorded by finish()

    def start_tls(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock.settimeout(5)
        try:
            self.sock = ctx.wrap_socket(self.sock)
            self.seen.append(("tls",))
        except (ssl.SSLError, OSError) as exc:
            self.seen.append(("tls failed", str(exc)[:60]))
            self.ended = "tls failed"

    def finish(self):
        deadline = time.monotonic() + 15
        while not self.ended and time.monotonic() < deadline:
            got = self._recv(QUIET)
            if got is None:
                self.ended = "open"
            while self._next_message():
                pass
        while self._next_message():
            pass
        if self.pending:
            self.seen.append(("partial", self.pending))
        self.seen.append(("end", self.ended))
        self.sock.close()
        return self.seen


def normalize(kind, body):
    if kind == b"K":
        return ("K", len(body))
    if kind in (b"E", b"N"):
        fields = h.error_fields(body)
        return (kind.decode(), tuple(sorted((k, v) for k, v in fields.items() if k not in "FLR")))
    if kind == b"R" and len(body) >= 4 and struct.unpack("!I", body[:4])[0] in (5, 11, 12):
        return ("R", struct.unpack("!I", body[:4])[0], len(body) if body[:4] != b"\0\0\0\x0b"
                else "nonce")
    if kind == b"A":
        return ("A", body[4:])
    return (kind.decode("latin-1"), body)


def play(address, script, cluster):
    client = Client(address, cluster)
    for step in script:
        if client.ended or client.refused:
            break
        what = step[0]
        if what == "send":
            client.send(step[1])
        elif what == "answer":
            client.answer()
        elif what == "until":
            client.until([bytes([c]) for c in step[1]])
        elif what == "tls":
            client.start_tls()
        elif what == "shut":
            client.sock.shutdown(socket.SHUT_WR)
        elif what == "pause":
            time.sleep(step[1])
        elif what == "kill":
            cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = '%s'" % step[1])
    return client.finish()


def differences(cases, direct, proxied, cluster):
    """Plays each case against both addresses; returns a description of each that differs."""
    found = []
    for name, script in cases:
        want = play(direct, script, cluster)
        got = play(proxied, script, cluster)
        if want != got:
            found.append("%s:\n      PostgreSQL: %r\n      pgscope:    %r" % (name, want, got))
    return found


_setup = None


def setup():
    """One cluster (TLS on, authentication_timeout 1 s) and pgscope in front of it, with TLS
    for its clients and a Unix socket beside its TCP port."""
    global _setup
    if _setup is None:
        cluster = h.Cluster(scope="session", settings={"authentication_timeout": "1"}).start()
        certs = h.certs("proxy")
        sock_dir = h.make_temp_dir("pgscope-diff-sock-")
        port = h.free_port()
        px = h.Pgscope(cluster, listen=["127.0.0.1:%d" % port, "%s:%d" % (sock_dir, port)],
                       args=["--tls-cert-file", certs.cert, "--tls-key-file", certs.key],
                       scope="session").start()
        _setup = (cluster, px, os.path.join(sock_dir, ".s.PGSQL.%d" % port))
    return _setup


def check(cases, transport):
    cluster, px, px_unix = setup()
    if transport == "unix":
        direct, proxied = cluster.unix_socket, px_unix
    else:
        direct, proxied = (cluster.host, cluster.port), (px.host, px.port)
    found = differences(cases, direct, proxied, cluster)
    assert px.alive(), px.log_text()
    assert not found, "%d of %d cases differ:\n  %s" % (len(found), len(cases), "\n  ".join(found))
    h.note("%d cases, no difference" % len(cases))


def test_differential_before_startup():
    check(before_startup_cases(), "tcp")


def test_differential_ssl_and_gssenc_negotiation():
    check(negotiation_cases(), "unix")


def test_differential_after_startup():
    check(session_cases(), "tcp")


def test_differential_tls():
    check(tls_cases(), "tcp")


def repeat_exactly(script, runs):
    """Plays script runs times against each side; every run must match the first direct one."""
    cluster, px, _ = setup()
    direct, proxied = (cluster.host, cluster.port), (px.host, px.port)
    want = play(direct, script, cluster)
    for i in range(runs):
        got_direct = play(direct, script, cluster)
        got = play(proxied, script, cluster)
        assert got_direct == want, "PostgreSQL itself varies at run %d: %r vs %r" % (
            i, want, got_direct)
        assert got == want, "run %d: PostgreSQL %r, pgscope %r" % (i, want, got)
    h.note("%d runs each, identical" % runs)


def test_node_postgres_connect_then_end_100_runs():
    """node-postgres: connect() then end() at once sends Terminate before the StartupMessage, and
    waits for the server to close (or closes its own end at once)."""
    repeat_exactly([("send", TERMINATE)], 100)
    repeat_exactly([("send", TERMINATE), ("shut",)], 100)


def test_node_postgres_end_in_connect_callback_100_runs():
    """node-postgres: end() inside the connect callback with a query queued: Terminate, then the
    query's Parse/Bind/Describe/Execute/Sync; the client waits for the close (or closes)."""
    repeat_exactly(login() + [("send", TERMINATE + pipeline_query("SELECT 1"))], 100)
    repeat_exactly(login() + [("send", TERMINATE + pipeline_query("SELECT 1")), ("shut",)], 100)
