"""Logins through pgscope with trust, md5 and scram-sha-256, right and wrong passwords."""

import psycopg2

import harness as h


def login(host, port, user, password, **conn):
    return h.psql(host, port, "SELECT current_user", user=user, password=password, **conn)


def compare_login(px, user, password):
    """The same login direct and through pgscope; returns (direct, proxied) Results."""
    cluster = h.shared_cluster()
    return login(cluster.host, cluster.port, user, password), login(px.host, px.port, user, password)


def same_error(direct, proxied, ports):
    text_direct = h.normalize_ports(direct.stderr, *ports)
    text_proxied = h.normalize_ports(proxied.stderr, *ports)
    assert text_proxied == text_direct, (direct, proxied)


def test_passwords_stored_as_expected():
    cluster = h.shared_cluster()
    out = cluster.psql("SELECT rolname, left(rolpassword, 3) FROM pg_authid "
                       "WHERE rolname LIKE '%_user' ORDER BY 1")
    assert out == "md5_user|md5\nscram_user|SCR\ntrust_user|\n", out


def test_trust_login():
    px = h.proxy()
    direct, proxied = compare_login(px, "trust_user", None)
    assert proxied.rc == 0 and proxied.stdout == "trust_user\n", proxied
    assert proxied.stdout == direct.stdout


def test_md5_login():
    px = h.proxy()
    direct, proxied = compare_login(px, "md5_user", h.PASSWORDS["md5_user"])
    assert proxied.rc == 0 and proxied.stdout == "md5_user\n", proxied
    assert direct.stdout == proxied.stdout


def test_scram_login():
    px = h.proxy()
    direct, proxied = compare_login(px, "scram_user", h.PASSWORDS["scram_user"])
    assert proxied.rc == 0 and proxied.stdout == "scram_user\n", proxied
    assert direct.stdout == proxied.stdout


def test_scram_login_psycopg2():
    px = h.proxy()
    conn = px.connect(user="scram_user", password=h.PASSWORDS["scram_user"])
    try:
        assert h.query_one(conn, "SELECT current_user") == "scram_user"
    finally:
        conn.close()


def wrong_password(user):
    px = h.proxy()
    direct, proxied = compare_login(px, user, "not-the-password")
    assert proxied.rc != 0, proxied
    expected = 'FATAL:  password authentication failed for user "%s"' % user
    assert expected in proxied.stderr, proxied
    same_error(direct, proxied, (px.port, h.shared_cluster().port))
    assert px.alive(), px.log_text()


def test_md5_wrong_password():
    wrong_password("md5_user")


def test_scram_wrong_password():
    wrong_password("scram_user")


def test_wrong_password_psycopg2():
    px = h.proxy()
    try:
        px.connect(user="md5_user", password="nope").close()
        raise AssertionError("login with a wrong password succeeded")
    except psycopg2.OperationalError as exc:
        assert 'password authentication failed for user "md5_user"' in str(exc), exc


def test_missing_password():
    px = h.proxy()
    direct, proxied = compare_login(px, "scram_user", None)
    assert proxied.rc != 0, proxied
    assert "no password supplied" in proxied.stderr, proxied
    same_error(direct, proxied, (px.port, h.shared_cluster().port))


def test_unknown_role_and_database():
    px = h.proxy()
    cluster = h.shared_cluster()
    for params in ({"user": "no_such_role"}, {"dbname": "no_such_db"}):
        direct = h.psql(cluster.host, cluster.port, "SELECT 1", **params)
        proxied = h.psql(px.host, px.port, "SELECT 1", **params)
        assert proxied.rc != 0, proxied
        assert "does not exist" in proxied.stderr, proxied
        same_error(direct, proxied, (px.port, cluster.port))


def test_many_sequential_logins():
    px = h.proxy()
    for i in range(30):
        user = ("trust_user", "md5_user", "scram_user")[i % 3]
        conn = px.connect(user=user, password=h.PASSWORDS.get(user, ""))
        try:
            assert h.query_one(conn, "SELECT current_user") == user
        finally:
            conn.close()
    assert px.alive(), px.log_text()
