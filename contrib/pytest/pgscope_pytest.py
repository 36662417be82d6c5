"""pytest plugin: names the test in every statement it sends, for pgscope.

Each statement sent through psycopg2 (and so Django and SQLAlchemy on it) or psycopg 3 while a
test runs gets a sqlcommenter comment, /*test='<the test's node id>'*/, that pgscope reads:
statements, N+1 findings and `pgscope check --baseline-run` rules are then per test. No change
to the application's code:

    PYTHONPATH=path/to/pgscope/contrib/pytest pytest -p pgscope_pytest

(or `pytest_plugins = ["pgscope_pytest"]` in conftest.py). Any other stack: run
`SET application_name = '<test id>'` at the start of each test.
"""

import urllib.parse

import pytest

_current = {"test": None}


def _comment(escape_percent):
    test = _current["test"]
    if not test:
        return ""
    text = " /*test='%s'*/" % urllib.parse.quote(test, safe="")
    return text.replace("%", "%%") if escape_percent else text


def _tagged(query, params):
    """The query with the comment appended, as the driver will read it: % doubled when the
    driver substitutes parameters (psycopg2's and psycopg's %s style)."""
    comment = _comment(params is not None)
    if not comment:
        return query
    if isinstance(query, str):
        return query + comment
    if isinstance(query, bytes):
        return query + comment.encode()
    return query  # a composed query (psycopg.sql): left as it is


def _patch_psycopg2():
    try:
        import psycopg2
        import psycopg2.extensions
    except ImportError:
        return

    class TaggingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            return super().execute(_tagged(query, vars), vars)

        def executemany(self, query, vars_list):
            return super().executemany(_tagged(query, ()), vars_list)

    connect = psycopg2.connect

    def tagging_connect(*args, **kwargs):
        kwargs.setdefault("cursor_factory", TaggingCursor)
        return connect(*args, **kwargs)

    psycopg2.connect = tagging_connect


def _patch_psycopg():
    try:
        import psycopg
    except ImportError:
        return
    for cls in (psycopg.Cursor, psycopg.AsyncCursor):
        execute = cls.execute

        def tagging_execute(self, query, params=None, *args, _execute=execute, **kwargs):
            return _execute(self, _tagged(query, params), params, *args, **kwargs)

        cls.execute = tagging_execute


def pytest_configure(config):
    _patch_psycopg2()
    _patch_psycopg()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current["test"] = item.nodeid
    try:
        yield
    finally:
        _current["test"] = None
