"""Integration test harness for pgscope: scratch PostgreSQL clusters, the proxy, client helpers."""

import atexit
import hashlib
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
PGSCOPE_BIN = os.path.abspath(os.environ.get("PGSCOPE_BIN", os.path.join(REPO, "src", "pgscope")))
IS_ROOT = os.geteuid() == 0
PG_OS_USER = "postgres"

SUPERUSER = "postgres"
PASSWORDS = {"md5_user": "md5-secret", "scram_user": "scram-secret"}
AUTH_METHODS = {"trust_user": "trust", "md5_user": "md5", "scram_user": "scram-sha-256"}

# ---------------------------------------------------------------- result notes

_notes = []               # short facts a test reports next to its result line


def note(text):
    """Add a fact (e.g. a measurement) to the current test's result line."""
    _notes.append(text)


def take_notes():
    text = "; ".join(_notes)
    del _notes[:]
    return text


# ---------------------------------------------------------------- cleanup

_session_resources = []   # closed at interpreter exit
_test_resources = []      # closed after each test by the runner


def _close_all(resources):
    while resources:
        res = resources.pop()
        try:
            res.close()
        except Exception:
            pass


def close_test_resources():
    """Stop every proxy and cluster a test started (the runner calls this after each test)."""
    _close_all(_test_resources)


# Reports that AddressSanitizer, LeakSanitizer or UBSan wrote into pgscope logs; the runner
# fails the test that produced them.
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")
_sanitizer_reports = []


def take_sanitizer_reports():
    reports = list(_sanitizer_reports)
    del _sanitizer_reports[:]
    return reports


def kill_test_processes():
    """Kill the current test's pgscope processes (a watchdog unblocking a hung test)."""
    for res in list(_test_resources):
        if isinstance(res, Pgscope) and res.alive():
            res.proc.kill()


def close_all_resources():
    close_test_resources()
    _close_all(_session_resources)


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


atexit.register(close_all_resources)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)

# ---------------------------------------------------------------- processes


class Result:
    """Outcome of a finished subprocess."""

    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr

    def __repr__(self):
        return "Result(rc=%r, stdout=%r, stderr=%r)" % (self.rc, self.stdout[-2000:], self.stderr[-2000:])


def run(cmd, env=None, timeout=60, input=None, check=False):
    """Run a command with a timeout; return a Result (text output)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.run(cmd, env=full_env, input=input, capture_output=True, text=True,
                              timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("command timed out after %ss: %s" % (timeout, " ".join(cmd))) from exc
    res = Result(cmd, proc.returncode, proc.stdout, proc.stderr)
    if check and res.rc != 0:
        raise AssertionError("command failed: %s\n%r" % (" ".join(cmd), res))
    return res


def as_pg_user(cmd):
    """Prefix a command so it runs as the postgres OS user when we are root."""
    return ["runuser", "-u", PG_OS_USER, "--"] + cmd if IS_ROOT else cmd


def make_temp_dir(prefix, pg_owned=False):
    path = tempfile.mkdtemp(prefix=prefix)
    if pg_owned and IS_ROOT:
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def chown_pg(path):
    if IS_ROOT:
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unix_socket_open(path, timeout=0.5):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def wait_for(predicate, timeout, interval=0.05):
    """Poll predicate until true or timeout; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)

# ---------------------------------------------------------------- certificates

OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


class Certs:
    """A CA and a localhost/127.0.0.1 server certificate made with the openssl CLI."""

    def __init__(self, directory, name="test"):
        self.dir = directory
        self.ca_cert = os.path.join(directory, name + "-ca.crt")
        self.ca_key = os.path.join(directory, name + "-ca.key")
        self.cert = os.path.join(directory, name + "-server.crt")
        self.key = os.path.join(directory, name + "-server.key")
        self._make(name)

    def _openssl(self, *args):
        run(["openssl"] + list(args), timeout=60, check=True)

    def _make(self, name):
        cnf = os.path.join(self.dir, name + "-openssl.cnf")
        with open(cnf, "w") as f:
            f.write(OPENSSL_CNF)
        csr = os.path.join(self.dir, name + "-server.csr")
        self._openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "3",
                      "-config", cnf, "-extensions", "v3_ca", "-subj", "/CN=pgscope %s CA" % name,
                      "-keyout", self.ca_key, "-out", self.ca_cert)
        self._openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-config", cnf,
                      "-subj", "/CN=localhost", "-keyout", self.key, "-out", csr)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-days", "3", "-extfile", cnf, "-extensions", "v3_server",
                      "-out", self.cert)
        os.chmod(self.key, 0o600)


_certs = {}


def certs(name="test"):
    """Certificates shared by the whole run (one CA per name)."""
    if name not in _certs:
        directory = make_temp_dir("pgscope-certs-")
        _session_resources.append(_DirRemover(directory))
        _certs[name] = Certs(directory, name)
    return _certs[name]


class _DirRemover:
    def __init__(self, path):
        self.path = path

    def close(self):
        shutil.rmtree(self.path, ignore_errors=True)

# ---------------------------------------------------------------- PostgreSQL cluster


class _Server:
    """What a cluster and a pgscope share: a log file to show, an address to connect to."""

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def dsn(self, **overrides):
        params = {"host": self.host, "port": self.port, "user": SUPERUSER, "dbname": "postgres",
                  "connect_timeout": 5, "sslmode": "disable"}
        params.update(overrides)
        return " ".join("%s=%s" % (k, v) for k, v in params.items())


class Cluster(_Server):
    """A scratch PostgreSQL 15 cluster on a free loopback port, with TLS and test users."""

    def __init__(self, scope="test", settings=None):
        """settings: extra postgresql.conf values, e.g. {"wal_level": "logical", "ssl": "off"};
        they are written after (and so override) the defaults below."""
        self.extra_settings = dict(settings or {})
        self.dir = make_temp_dir("pgscope-pg-", pg_owned=True)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.socket_dir = self.dir
        self.certs = certs("test")
        self.initialized = False
        self.running = False
        (_session_resources if scope == "session" else _test_resources).append(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def unix_socket(self):
        return os.path.join(self.socket_dir, ".s.PGSQL.%d" % self.port)

    def _pg_ctl(self, *args, timeout=60):
        cmd = as_pg_user([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data] + list(args))
        return run(cmd, timeout=timeout)

    def _init(self):
        run(as_pg_user([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", SUPERUSER,
                        "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
            timeout=120, check=True)
        self._install_certs()
        self._write_conf()
        self._write_hba()
        self.initialized = True

    def _install_certs(self):
        for src, dst in ((self.certs.cert, "server.crt"), (self.certs.key, "server.key"),
                         (self.certs.ca_cert, "root.crt")):
            path = os.path.join(self.data, dst)
            shutil.copyfile(src, path)
            os.chmod(path, 0o600)
            chown_pg(path)

    def _write_conf(self):
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "ssl": "on",
            "ssl_cert_file": "'server.crt'",
            "ssl_key_file": "'server.key'",
            "password_encryption": "'scram-sha-256'",
            "max_connections": "50",
            "shared_buffers": "32MB",
        }
        settings.update(self.extra_settings)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# pgscope integration tests\n")
            for key, value in settings.items():
                f.write("%s = %s\n" % (key, value))

    def _write_hba(self):
        lines = ["local all all trust"]
        for user, method in AUTH_METHODS.items():
            for kind in ("hostssl", "host"):
                lines.append("%s all %s 127.0.0.1/32 %s" % (kind, user, method))
        lines.append("host all all 127.0.0.1/32 trust")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _create_users(self):
        self.psql("CREATE ROLE trust_user LOGIN")
        self.psql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD '%s'"
                  % PASSWORDS["md5_user"])
        self.psql("SET password_encryption = 'scram-sha-256'; "
                  "CREATE ROLE scram_user LOGIN PASSWORD '%s'" % PASSWORDS["scram_user"])
        for user in AUTH_METHODS:
            self.psql("GRANT ALL ON SCHEMA public TO %s" % user)

    def start(self):
        first = not self.initialized
        if first:
            self._init()
        res = self._pg_ctl("-l", self.log, "-w", "-t", "60", "start", timeout=90)
        if res.rc != 0:
            raise AssertionError("postgres did not start: %r\n%s" % (res, self.log_text()))
        self.running = True
        if first:
            self._create_users()
        return self

    def stop(self, mode="fast"):
        if not self.running:
            return
        res = self._pg_ctl("-m", mode, "-w", "-t", "60", "stop", timeout=90)
        if res.rc != 0:
            raise AssertionError("postgres did not stop: %r" % res)
        self.running = False

    def restart(self):
        self.stop()
        self.start()

    def close(self):
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


    def psql(self, sql, **conn):
        """Run SQL as the superuser over the Unix socket (or conn overrides); return stdout."""
        params = {"host": self.socket_dir, "port": self.port, "user": SUPERUSER}
        params.update(conn)
        res = psql(params.pop("host"), params.pop("port"), sql, **params)
        if res.rc != 0:
            raise AssertionError("psql failed: %r" % res)
        return res.stdout

    def connect(self, **overrides):
        return psycopg2.connect(self.dsn(**overrides))


_shared_cluster = None


def shared_cluster():
    """The cluster shared by every test that does not stop or reconfigure it."""
    global _shared_cluster
    if _shared_cluster is None or not _shared_cluster.running:
        _shared_cluster = Cluster(scope="session").start()
    return _shared_cluster

# ---------------------------------------------------------------- pgscope


class Pgscope(_Server):
    """A running pgscope proxy in front of an upstream address."""

    def __init__(self, upstream, listen=None, args=(), flags=True, scope="test"):
        """upstream: a Cluster or an address string; listen: list of --listen values
        (default one free TCP port); flags=False passes only args (e.g. --config)."""
        if isinstance(upstream, Cluster):
            upstream = "%s:%d" % (upstream.host, upstream.port)
        self.upstream = upstream
        self.listen = list(listen) if listen else ["127.0.0.1:%d" % free_port()]
        self.dir = make_temp_dir("pgscope-proxy-")
        self.log = os.path.join(self.dir, "pgscope.log")
        self.db = os.path.join(self.dir, "pgscope.db")
        self.args = list(args)
        self.flags = flags
        self.proc = None
        self.rc = None
        (_session_resources if scope == "session" else _test_resources).append(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def host(self):
        return "127.0.0.1"

    @property
    def port(self):
        """The first TCP listen port (None when pgscope listens only on Unix sockets)."""
        for addr in self.listen:
            if not addr.startswith("/"):
                return int(addr.rsplit(":", 1)[1])
        return None

    def command(self):
        cmd = [PGSCOPE_BIN, "proxy"]
        if self.flags:
            for addr in self.listen:
                cmd += ["--listen", addr]
            cmd += ["--upstream", self.upstream, "--db", self.db]
        return cmd + self.args

    def start(self, timeout=10):
        if not os.access(PGSCOPE_BIN, os.X_OK):
            raise AssertionError("pgscope binary not found at %s (set PGSCOPE_BIN)" % PGSCOPE_BIN)
        env = dict(os.environ)
        # A small quarantine keeps an ASan build's RSS meaningful for the memory-bound tests;
        # leaks are reported when pgscope exits after SIGTERM (see close()).
        env.setdefault("ASAN_OPTIONS", "quarantine_size_mb=4:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, cwd=self.dir, env=env)
        if not wait_for(lambda: self.proc.poll() is not None or self.ready(), timeout):
            raise AssertionError("pgscope not listening after %ss; log:\n%s" % (timeout, self.log_text()))
        if self.proc.poll() is not None:
            raise AssertionError("pgscope exited with %s; log:\n%s" % (self.proc.returncode, self.log_text()))
        return self

    def unix_sockets(self):
        """Socket file paths of the Unix socket listeners."""
        tcp_ports = [a.rsplit(":", 1)[1] for a in self.listen if not a.startswith("/")]
        paths = []
        for addr in self.listen:
            if addr.startswith("/"):
                directory, _, port = addr.partition(":")
                port = port or (tcp_ports[0] if tcp_ports else "6432")
                paths.append(os.path.join(directory, ".s.PGSQL." + port))
        return paths

    def ready(self):
        if any(not a.startswith("/") for a in self.listen):
            return port_open(self.host, self.port)
        return unix_socket_open(self.unix_sockets()[0])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=15):
        """SIGTERM, wait, return the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.rc = None
        return self.rc

    def wait(self, timeout):
        """Wait for exit; return the exit code or None if still running."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        """Stop with SIGTERM (twice: the second skips the wait for sessions) so that a
        sanitizer build checks for leaks at exit; SIGKILL only as a last resort."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                if self.wait(0.5) is None:
                    self.proc.terminate()
                    if self.wait(10) is None:
                        self.proc.kill()
                        self.proc.wait(5)
            self._collect_sanitizer_reports()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _collect_sanitizer_reports(self):
        try:
            with open(self.log, errors="replace") as f:
                text = f.read()
        except OSError:
            return
        for mark in SANITIZER_MARKS:
            at = text.find(mark)
            if at >= 0:
                _sanitizer_reports.append(text[max(0, at - 200):at + 3000])
                return

    def rss_kb(self):
        return rss_kb(self.proc.pid)


    def connect(self, **overrides):
        return psycopg2.connect(self.dsn(**overrides))


def rss_kb(pid):
    """VmRSS of a process in kB from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class RssSampler:
    """Samples a process's VmRSS in a thread; max_kb holds the peak."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.max_kb = self.start_kb = rss_kb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.max_kb = max(self.max_kb, rss_kb(self.pid))
            except (OSError, AssertionError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    @property
    def growth_kb(self):
        return self.max_kb - self.start_kb

# ---------------------------------------------------------------- clients


def client_env(host, port, user=SUPERUSER, password=None, sslmode="disable", dbname="postgres",
               **extra):
    """libpq environment for a client connecting to host:port."""
    env = {"PGHOST": str(host), "PGPORT": str(port), "PGUSER": user, "PGDATABASE": dbname,
           "PGSSLMODE": sslmode, "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "pgscope-tests"}
    env["PGPASSWORD"] = password if password is not None else ""
    env["PGPASSFILE"] = "/nonexistent/pgscope-tests-pgpass"
    for key, value in extra.items():
        env[key.upper()] = str(value)
    return env


def psql(host, port, sql=None, args=(), timeout=60, stdin=None, **conn):
    """Run psql -X -A -t (quiet, unaligned, tuples only) against host:port; return a Result."""
    cmd = [os.path.join(PG_BIN, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    if sql is not None:
        cmd += ["-c", sql]
    cmd += list(args)
    return run(cmd, env=client_env(host, port, **conn), timeout=timeout, input=stdin)


def pgbench(host, port, args, timeout=120, **conn):
    cmd = [os.path.join(PG_BIN, "pgbench")] + list(args)
    return run(cmd, env=client_env(host, port, **conn), timeout=timeout)


def connect(host, port, **params):
    base = {"host": host, "port": port, "user": SUPERUSER, "dbname": "postgres",
            "connect_timeout": 5, "sslmode": "disable"}
    base.update(params)
    return psycopg2.connect(**base)


def query_one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]

# ---------------------------------------------------------------- raw wire protocol

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def startup_packet(user=SUPERUSER, database="postgres", version=PROTOCOL_3, **params):
    body = struct.pack("!I", version)
    items = {"user": user, "database": database}
    items.update(params)
    for key, value in items.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def raw_connect(host, port, timeout=5):
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def read_message(sock):
    """One backend message: (type byte, payload)."""
    head = recv_exact(sock, 5)
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    if length < 4 or length > 100 * 1024 * 1024:
        raise AssertionError("bad backend message length %d (type %r)" % (length, kind))
    return kind, recv_exact(sock, length - 4)


def error_fields(payload):
    """Fields of an ErrorResponse/NoticeResponse payload as {'C': ..., 'M': ...}."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode(errors="replace")
    return fields


def read_until_close(sock, limit=1 << 20):
    """All bytes until EOF, reset or timeout; returns (data, how) with how in eof/reset/timeout."""
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "eof"
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "timeout"
    return data, "limit"


def parse_messages(data):
    """Split raw backend bytes into (type, payload) messages; a trailing partial one is dropped."""
    messages = []
    while len(data) >= 5:
        length = struct.unpack("!I", data[1:5])[0]
        if length < 4 or len(data) < 1 + length:
            break
        messages.append((data[:1], data[5:1 + length]))
        data = data[1 + length:]
    return messages


def first_error(data):
    """The fields of the first ErrorResponse in raw backend bytes, or None."""
    for kind, payload in parse_messages(data):
        if kind == b"E":
            return error_fields(payload)
    return None


def raw_login(host, port, user="trust_user", database="postgres", timeout=5):
    """Open a raw socket, log in with trust auth, read up to ReadyForQuery; return the socket."""
    sock = raw_connect(host, port, timeout)
    sock.sendall(startup_packet(user, database))
    while True:
        kind, payload = read_message(sock)
        if kind == b"E":
            sock.close()
            raise AssertionError("login failed: %r" % error_fields(payload))
        if kind == b"Z":
            return sock


def simple_query_message(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def normalize_ports(text, *ports):
    """Replace port numbers in client error text so direct and proxied output compare."""
    for port in ports:
        text = text.replace(str(port), "PORT")
    return text


def proxy(cluster=None, **kwargs):
    """A started pgscope in front of cluster (default: the shared cluster)."""
    return Pgscope(cluster or shared_cluster(), **kwargs).start()
