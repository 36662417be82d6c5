"""Distinct statement shapes: values never make a shape, memory stays bounded however many shapes
arrive (max_shapes folds the least costly into one "other" row), and every call is still counted
exactly in the SQLite file and the report.

The soak sends PGSCOPE_SOAK_SHAPES distinct shapes (default 200,000; contrib/bench/shapes.sh runs
1,000,000), SELECTs of a column named for the shape (a column name is part of a fingerprint; an
alias, a constant or a NOTIFY channel is not), 10 to a simple Query message, from two
connections. Senders keep at most IN_FLIGHT statements ahead of what the analysis has counted
(runs.statements, rewritten every 500 ms), so that the analysis queue never overflows and the
counts can be exact; the queue's own content is part of the RSS measured."""

import json
import os
import sqlite3
import threading
import time

import psycopg2

import harness as h

SOAK_SHAPES = int(os.environ.get("PGSCOPE_SOAK_SHAPES", "200000"))
RSS_LIMIT_KB = int(os.environ.get("PGSCOPE_SOAK_RSS_KB", str(100 * 1024)))


def _asan_build():
    """True when pgscope was built with AddressSanitizer, whose shadow memory and redzones
    take two to three times the heap: the bound is then checked at three times the limit."""
    res = h.run(["ldd", h.PGSCOPE_BIN])
    return "libasan" in res.stdout


if _asan_build():
    RSS_LIMIT_KB *= 3
MAX_SHAPES = 5000
PER_QUERY = 10
IN_FLIGHT = 20000
SENDERS = 2


def db_row(path, sql, args=()):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return con.execute(sql, args).fetchone()
    finally:
        con.close()


def report_json(pg):
    res = h.run([h.PGSCOPE_BIN, "report", "--db", pg.db, "--format", "json", "--limit", "5"])
    assert res.rc == 0, res
    return json.loads(res.stdout)


def sent_counted(pg):
    """Statements the analysis has counted so far, and events it had to drop (0 before the
    first batch is written)."""
    try:
        row = db_row(pg.db, "SELECT statements, events_dropped FROM runs ORDER BY id DESC")
    except sqlite3.Error:
        return 0, 0
    return row if row else (0, 0)


class Soak:
    """Senders of distinct shapes, paced by what pgscope has counted, stopped early
    when pgscope's RSS passes the limit (so that unbounded growth fails fast)."""

    def __init__(self, pg, shapes, rss):
        self.pg, self.shapes, self.rss = pg, shapes, rss
        self.lock = threading.Lock()
        self.next = 0
        self.sent = 0
        self.counted = 0
        self.dropped = 0
        self.over = False
        self.errors = []

    def take(self):
        with self.lock:
            start = self.next
            self.next = min(self.next + PER_QUERY, self.shapes)
            return start, self.next

    def wait_for_room(self):
        while not self.over and self.sent - self.counted > IN_FLIGHT:
            time.sleep(0.02)

    def sender(self):
        try:
            conn = psycopg2.connect(self.pg.dsn())
            conn.autocommit = True
            cur = conn.cursor()
            while not self.over:
                start, end = self.take()
                if start == end:
                    break
                self.wait_for_room()
                cur.execute(";".join("SELECT c%d FROM (SELECT 1 c%d) s" % (i, i)
                                     for i in range(start, end)))
                with self.lock:
                    self.sent += end - start
            conn.close()
        except Exception as exc:  # reported by run(), not lost in the thread
            self.errors.append(exc)

    def poller(self, done):
        while not done.is_set():
            self.counted, self.dropped = sent_counted(self.pg)
            if self.rss.max_kb > RSS_LIMIT_KB:
                self.over = True
            done.wait(0.1)

    def run(self):
        done = threading.Event()
        poll = threading.Thread(target=self.poller, args=(done,), daemon=True)
        senders = [threading.Thread(target=self.sender, daemon=True) for _ in range(SENDERS)]
        poll.start()
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        done.set()
        poll.join(5)
        assert not self.errors, self.errors


def test_soak_distinct_shapes_bounded_and_exact():
    """SOAK_SHAPES distinct shapes with max_shapes 5000: RSS stays under the limit, at most
    5000 statement rows and the "other" row are stored, and the calls stored (other included)
    are exactly the statements sent."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--max-shapes", str(MAX_SHAPES), "--explain", "off"]).start()
    began = time.monotonic()
    with h.RssSampler(pg.proc.pid, interval=0.05) as rss:
        soak = Soak(pg, SOAK_SHAPES, rss)
        soak.run()
    seconds = time.monotonic() - began
    h.note("%d shapes in %.1f s (%.0f/s): RSS %d kB at start, peak %d kB"
           % (soak.sent, seconds, soak.sent / seconds, rss.start_kb, rss.max_kb))
    assert rss.max_kb < RSS_LIMIT_KB, (
        "pgscope RSS reached %d kB after %d distinct shapes (limit %d kB)"
        % (rss.max_kb, soak.sent, RSS_LIMIT_KB))
    assert soak.sent == SOAK_SHAPES
    assert pg.stop() == 0, pg.log_text()

    statements, dropped, folded_shapes, folded_calls, max_shapes = db_row(
        pg.db, "SELECT statements, events_dropped, folded_shapes, folded_calls, max_shapes "
               "FROM runs")
    rows, calls = db_row(pg.db, "SELECT count(*), sum(calls) FROM statements")
    other_calls, other_errors = db_row(
        pg.db, "SELECT calls, errors FROM statements "
               "WHERE fingerprint = 'other' AND database = '' AND user_name = ''")
    h.note("stored: %d rows, %d calls (%d in other), %d shapes folded"
           % (rows, calls, other_calls, folded_shapes))
    assert dropped == 0, dropped
    assert max_shapes == MAX_SHAPES
    assert rows <= MAX_SHAPES + 1, rows
    # Exact: every statement sent is a call stored, once, in its row or in "other".
    extra = statements - soak.sent  # what the driver sent of its own (none with autocommit)
    assert 0 <= extra < 10, (statements, soak.sent)
    assert calls == statements, (calls, statements)
    assert other_calls == folded_calls and other_errors == 0
    assert folded_shapes + rows - 1 >= SOAK_SHAPES, (folded_shapes, rows)

    rep = report_json(pg)
    assert rep["other"]["calls"] == folded_calls, rep["other"]
    assert rep["other"]["folded_shapes"] == folded_shapes
    assert rep["runs"][0]["folded_shapes"] == folded_shapes
    assert rep["runs"][0]["max_shapes"] == MAX_SHAPES
    assert rep["statement_shapes"] == rows - 1
    assert all(s["fingerprint"] != "other" for s in rep["statements"])
    text = h.run([h.PGSCOPE_BIN, "report", "--db", pg.db, "--limit", "3"]).stdout
    assert "folded shapes" in text and "max_shapes %d" % MAX_SHAPES in text, text
    assert "(other statements: %d shapes)" % folded_shapes in text, text


def test_values_never_make_shapes():
    """20,000 NOTIFYs with different payloads and COMMENTs with different texts are two shapes,
    fingerprinted with one libpg_query parse each; no payload is stored."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--explain", "off"]).start()
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS shapes_comments (id int)")
    # 20 a Query: each statement's event carries its Query's text, and the queue's bytes are
    # bounded (a full queue drops events, counted, which this test must not meet).
    for start in range(0, 20000, 20):
        cur.execute(";".join("NOTIFY jobs, '{\"job_id\": %d}'" % i
                             for i in range(start, start + 20)))
    for i in range(200):
        cur.execute("COMMENT ON TABLE shapes_comments IS 'secret note %d'" % i)
    cur.execute("DROP TABLE shapes_comments")
    conn.close()
    assert pg.stop() == 0, pg.log_text()
    rows = sqlite3.connect("file:%s?mode=ro" % pg.db, uri=True).execute(
        "SELECT query, calls, fallback FROM statements WHERE command IN ('NOTIFY', 'COMMENT') "
        "ORDER BY query").fetchall()
    assert rows == [("COMMENT ON TABLE shapes_comments IS $1", 200, 0),
                    ("NOTIFY jobs, $1", 20000, 0)], rows
    parses, hits, dropped = db_row(
        pg.db, "SELECT fingerprint_parses, fingerprint_hits, events_dropped FROM runs")
    assert parses < 10 and hits > 20000 and dropped == 0, (parses, hits, dropped)
    with open(pg.db, "rb") as f:
        assert b"job_id" not in f.read()


def test_fold_counts_exact_with_errors_and_rows():
    """max_shapes 100 and 400 shapes, some failing, some returning rows: the cheapest are folded;
    calls, errors and rows stored (other included) are exactly what ran, and the costly shapes
    keep rows of their own."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--max-shapes", "100", "--explain", "off"]).start()
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    calls = errors = rows = 0
    # Column names make shapes (aliases and constants do not): v<i> is one shape per i.
    for i in range(400):
        n = 1 + i % 3
        for _ in range(n):
            if i % 10 == 0:  # a failing shape: a column that does not exist
                try:
                    cur.execute("SELECT missing_%d FROM pg_class LIMIT 1" % i)
                except psycopg2.Error:
                    errors += 1
            elif i < 5:  # costly shapes (1 to 4): they must keep their rows
                cur.execute("SELECT pg_sleep(0.02), v%d FROM (VALUES (1)) t(v%d)" % (i, i))
                rows += 1
            else:
                cur.execute("SELECT v%d FROM generate_series(1, %d) t(v%d)" % (i, n, i))
                rows += n
            calls += 1
    conn.close()
    assert pg.stop() == 0, pg.log_text()
    stored = db_row(pg.db, "SELECT count(*), sum(calls), sum(errors), sum(rows) FROM statements")
    statements, folded, folded_calls = db_row(
        pg.db, "SELECT statements, folded_shapes, folded_calls FROM runs")
    h.note("%d rows stored, %d shapes folded with %d calls" % (stored[0], folded, folded_calls))
    assert stored[0] <= 101 and folded > 0, (stored, folded)
    assert stored[1:] == (calls, errors, rows) and statements == calls, (stored, calls, errors,
                                                                          rows, statements)
    costly = db_row(pg.db, "SELECT count(*) FROM statements WHERE query LIKE '%pg_sleep%'")[0]
    assert costly == 4, costly
    other = report_json(pg)["other"]
    assert other["calls"] == folded_calls and other["errors"] > 0, other
    assert other["errors_by_sqlstate"].get("42703", 0) == other["errors"], other


def send_columns(cur, first, count):
    """count distinct shapes, one call each, 10 to a Query."""
    for start in range(first, first + count, 10):
        cur.execute(";".join("SELECT c%d FROM (SELECT 1 c%d) s" % (i, i)
                             for i in range(start, min(start + 10, first + count))))


def test_fold_exact_across_lost_writes():
    """Rows of shapes folded after they were written are removed by the next batch; when that
    batch is lost (the file locked), the batch after it replaces the run's rows whole: at the
    end every call is stored exactly once."""
    cluster = h.shared_cluster()
    pg = h.Pgscope(cluster, args=["--max-shapes", "100", "--explain", "off"]).start()
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    send_columns(cur, 0, 300)
    assert h.wait_for(lambda: sent_counted(pg)[0] >= 300, 10)
    locker = sqlite3.connect(pg.db, timeout=5, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # pgscope's batches wait 1 s for the lock, then are lost
    send_columns(cur, 300, 300)
    time.sleep(2.5)
    locker.execute("ROLLBACK")
    locker.close()
    send_columns(cur, 600, 300)
    conn.close()
    assert pg.stop() == 0, pg.log_text()
    lost, statements, folded = db_row(pg.db, "SELECT lost_writes, statements, folded_shapes "
                                             "FROM runs")
    rows, calls = db_row(pg.db, "SELECT count(*), sum(calls) FROM statements")
    h.note("%d rows lost and written again; %d rows stored, %d folded" % (lost, rows, folded))
    assert lost > 0, lost
    assert statements == 900 and calls == 900, (statements, calls)
    assert rows <= 101 and folded + rows - 1 == 900, (rows, folded)
