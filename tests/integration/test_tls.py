"""TLS through pgscope: client side termination, upstream TLS modes, and refusals."""

import psycopg2

import harness as h

UPSTREAM_SSL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def tls_args():
    proxy_certs = h.certs("proxy")
    return ["--tls-cert-file", proxy_certs.cert, "--tls-key-file", proxy_certs.key]


def upstream_tls_args(mode, ca_name="test"):
    args = ["--upstream-sslmode", mode]
    if mode.startswith("verify"):
        args += ["--upstream-ca-file", h.certs(ca_name).ca_cert]
    return args


def client_and_upstream_ssl(px, **params):
    """(client side TLS in use, upstream pg_stat_ssl.ssl) for one psycopg2 connection."""
    conn = px.connect(**params)
    try:
        return conn.info.ssl_in_use, h.query_one(conn, UPSTREAM_SSL)
    finally:
        conn.close()


def test_client_tls_plain_upstream():
    px = h.proxy(args=tls_args())
    res = h.psql(px.host, px.port, UPSTREAM_SSL, sslmode="require")
    assert res.rc == 0 and res.stdout == "f\n", res
    assert client_and_upstream_ssl(px, sslmode="require") == (True, False)


def test_client_tls_verify_full_sees_pgscope_certificate():
    px = h.proxy(args=tls_args())
    ok = h.psql(px.host, px.port, "SELECT 1", sslmode="verify-full",
                PGSSLROOTCERT=h.certs("proxy").ca_cert)
    assert ok.rc == 0 and ok.stdout == "1\n", ok
    # The upstream's CA must not validate what pgscope presents: TLS ends at pgscope.
    wrong = h.psql(px.host, px.port, "SELECT 1", sslmode="verify-full",
                   PGSSLROOTCERT=h.certs("test").ca_cert)
    assert wrong.rc != 0 and "certificate verify failed" in wrong.stderr, wrong


def test_client_tls_all_auth_methods():
    px = h.proxy(args=tls_args())
    for user in ("trust_user", "md5_user", "scram_user"):
        res = h.psql(px.host, px.port, "SELECT current_user", user=user,
                     password=h.PASSWORDS.get(user), sslmode="require")
        assert res.rc == 0 and res.stdout == user + "\n", (user, res)
        bad = h.psql(px.host, px.port, "SELECT 1", user=user, password="wrong", sslmode="require")
        if user != "trust_user":
            assert 'password authentication failed for user "%s"' % user in bad.stderr, bad


def test_scram_channel_binding_prefer_through_tls_pgscope():
    px = h.proxy(args=tls_args())
    params = dict(user="scram_user", password=h.PASSWORDS["scram_user"], sslmode="require",
                  channel_binding="prefer")
    assert client_and_upstream_ssl(px, **params) == (True, False)
    res = h.psql(px.host, px.port, "SELECT current_user", user="scram_user",
                 password=h.PASSWORDS["scram_user"], sslmode="require", PGCHANNELBINDING="prefer")
    assert res.rc == 0 and res.stdout == "scram_user\n", res


def test_upstream_tls_require():
    px = h.proxy(args=upstream_tls_args("require"))
    assert client_and_upstream_ssl(px) == (False, True)
    res = h.psql(px.host, px.port, UPSTREAM_SSL)
    assert res.rc == 0 and res.stdout == "t\n", res


def test_upstream_tls_verify_modes():
    for mode in ("verify-ca", "verify-full"):
        px = h.proxy(args=upstream_tls_args(mode))
        assert client_and_upstream_ssl(px) == (False, True), mode
        conn = px.connect(user="md5_user", password=h.PASSWORDS["md5_user"])
        try:
            assert h.query_one(conn, UPSTREAM_SSL) is True, mode
        finally:
            conn.close()
        px.stop()


def scram_over_tls_upstream(client_sslmode, **params):
    """scram_user through pgscope whose upstream link is TLS. The server then offers
    SCRAM-SHA-256-PLUS, bound to a TLS session the client is not part of."""
    px = h.proxy(args=tls_args() + upstream_tls_args("require"))
    params.update(user="scram_user", password=h.PASSWORDS["scram_user"], sslmode=client_sslmode)
    assert client_and_upstream_ssl(px, **params) == (client_sslmode == "require", True)


def test_scram_plain_client_tls_upstream():
    scram_over_tls_upstream("disable")


def test_scram_tls_client_tls_upstream_without_channel_binding():
    # With TLS ending at pgscope on both sides, channel binding cannot hold end to end;
    # a client that does not ask for it logs in.
    scram_over_tls_upstream("require", channel_binding="disable")


def test_tls_on_both_sides():
    px = h.proxy(args=tls_args() + upstream_tls_args("verify-full"))
    assert client_and_upstream_ssl(px, sslmode="require") == (True, True)
    conn = px.connect(sslmode="require", user="md5_user", password=h.PASSWORDS["md5_user"])
    try:
        assert h.query_one(conn, "SELECT count(*) FROM generate_series(1, 100000)") == 100000
    finally:
        conn.close()


def test_no_certificate_require_fails_prefer_works():
    px = h.proxy()
    res = h.psql(px.host, px.port, "SELECT 1", sslmode="require")
    assert res.rc != 0 and "server does not support SSL" in res.stderr, res
    res = h.psql(px.host, px.port, UPSTREAM_SSL, sslmode="prefer")
    assert res.rc == 0 and res.stdout == "f\n", res
    assert client_and_upstream_ssl(px, sslmode="prefer") == (False, False)


def test_upstream_verify_full_wrong_ca_fails_clearly():
    px = h.proxy(args=upstream_tls_args("verify-full", ca_name="other"))
    try:
        px.connect().close()
        raise AssertionError("connection succeeded although the upstream certificate is untrusted")
    except psycopg2.OperationalError as exc:
        message = str(exc)
    assert "pgscope" in message, message
    assert any(word in message.lower() for word in ("certificate", "verif", "ssl", "tls")), message
    # The refusal is an ErrorResponse with SQLSTATE 08001, not a dropped connection.
    sock = h.raw_connect(px.host, px.port)
    try:
        sock.sendall(h.startup_packet("trust_user"))
        data, _ = h.read_until_close(sock)
    finally:
        sock.close()
    fields = h.first_error(data)
    assert fields and fields.get("C") == "08001", data
    assert px.alive(), px.log_text()
