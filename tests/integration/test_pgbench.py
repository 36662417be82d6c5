"""pgbench through pgscope: initialization, select-only in every query mode, and pipelines."""

import os
import re
import tempfile

import harness as h

BENCH_DB = "bench"
DURATION = "3"


def bench_db(initialized=True):
    """The shared cluster with a fresh or existing pgbench database."""
    cluster = h.shared_cluster()
    exists = cluster.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % BENCH_DB).strip()
    if not exists:
        cluster.psql("CREATE DATABASE %s" % BENCH_DB)
    if initialized and not has_accounts(cluster):
        res = h.pgbench(cluster.host, cluster.port, ["-i", "-q", "-s", "1"], dbname=BENCH_DB)
        assert res.rc == 0, res
    return cluster


def has_accounts(cluster):
    sql = "SELECT count(*) FROM pg_class WHERE relname = 'pgbench_accounts'"
    return cluster.psql(sql, dbname=BENCH_DB).strip() == "1"


def check_run(res):
    """A pgbench run that finished with no failed transaction; returns the transaction count."""
    assert res.rc == 0, res
    failed = re.search(r"number of failed transactions: (\d+)", res.stdout)
    assert failed and failed.group(1) == "0", res
    done = re.search(r"number of transactions actually processed: (\d+)", res.stdout)
    assert done and int(done.group(1)) > 0, res
    assert "error" not in res.stderr.lower(), res
    return int(done.group(1))


def test_pgbench_init_through_pgscope():
    cluster = bench_db(initialized=False)
    px = h.proxy(cluster)
    res = h.pgbench(px.host, px.port, ["-i", "-q", "-s", "1"], dbname=BENCH_DB)
    assert res.rc == 0, res
    assert "done in" in res.stderr, res
    counts = cluster.psql("SELECT (SELECT count(*) FROM pgbench_accounts), "
                          "(SELECT count(*) FROM pgbench_branches), "
                          "(SELECT sum(abalance) FROM pgbench_accounts)", dbname=BENCH_DB)
    assert counts == "100000|1|0\n", counts


def select_only(mode):
    cluster = bench_db()
    px = h.proxy(cluster)
    res = h.pgbench(px.host, px.port, ["-S", "-M", mode, "-c", "2", "-j", "2", "-T", DURATION],
                    dbname=BENCH_DB)
    assert check_run(res) > 100, res
    assert px.alive(), px.log_text()


def test_pgbench_select_only_simple():
    select_only("simple")


def test_pgbench_select_only_extended():
    select_only("extended")


def test_pgbench_select_only_prepared():
    select_only("prepared")


def test_pgbench_tpcb_prepared():
    cluster = bench_db()
    px = h.proxy(cluster)
    before = cluster.psql("SELECT count(*) FROM pgbench_history", dbname=BENCH_DB).strip()
    res = h.pgbench(px.host, px.port, ["-M", "prepared", "-c", "2", "-j", "2", "-T", "2"],
                    dbname=BENCH_DB)
    done = check_run(res)
    after = cluster.psql("SELECT count(*) FROM pgbench_history", dbname=BENCH_DB).strip()
    assert int(after) - int(before) == done, (before, after, done)


PIPELINE_SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT bbalance FROM pgbench_branches WHERE bid = :bid;
SELECT :aid::int + :bid::int;
SELECT count(*) FROM pgbench_branches;
\\endpipeline
"""


def test_pgbench_pipeline_script():
    cluster = bench_db()
    px = h.proxy(cluster)
    fd, script = tempfile.mkstemp(prefix="pgscope-pipeline-", suffix=".sql")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(PIPELINE_SCRIPT)
        for mode in ("extended", "prepared"):
            res = h.pgbench(px.host, px.port, ["-M", mode, "-f", script, "-c", "2", "-j", "2",
                                               "-T", "2"], dbname=BENCH_DB)
            assert check_run(res) > 100, (mode, res)
    finally:
        os.unlink(script)
