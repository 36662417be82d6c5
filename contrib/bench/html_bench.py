"""The HTML report's size and speed: 10,000 statement shapes sent through pgscope, the page
written and opened in headless Chromium (size, time to write it, DOMContentLoaded); then the
same file grown to STATEMENT_ROWS statement rows (default 1,000,000) in SQLite, and the time
`pgscope report --format html` takes over it. Medians of ROUNDS (default 3). Run by html.sh."""

import os
import sqlite3
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))

import harness as h  # noqa: E402
from browser import Browser  # noqa: E402
from test_html import ten_thousand_shapes  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
ROWS = int(os.environ.get("STATEMENT_ROWS", "1000000"))


def timed_report(db, out, fmt="html"):
    began = time.monotonic()
    res = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", fmt, "--output", out],
                timeout=600)
    took = time.monotonic() - began
    assert res.rc == 0, res
    return took


def grow(db, rows):
    """Copies of the file's statement rows under new fingerprints until it holds rows."""
    con = sqlite3.connect(db)
    have = con.execute("SELECT count(*) FROM statements").fetchone()[0]
    con.execute("""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO statements (run_id, fingerprint, database, user_name, query, command,
            fallback, calls, errors, rows, total_ms, min_ms, max_ms, mean_ms, stddev_ms, p50_ms,
            p95_ms, p99_ms, histogram, first_seen, last_seen)
        SELECT s.run_id, printf('%016x', 1000000000 + n.i), s.database, s.user_name,
               s.query || ' -- copy ' || n.i, s.command, s.fallback, s.calls, s.errors, s.rows,
               s.total_ms * (1 + n.i % 97) / 50.0, s.min_ms, s.max_ms, s.mean_ms, s.stddev_ms,
               s.p50_ms, s.p95_ms, s.p99_ms, s.histogram, s.first_seen, s.last_seen
        FROM n JOIN (SELECT * FROM statements WHERE fingerprint != 'other' LIMIT 1) s""",
                (rows - have,))
    con.commit()
    count = con.execute("SELECT count(*) FROM statements").fetchone()[0]
    con.close()
    return count


def main():
    db = ten_thousand_shapes()
    out = os.path.join(h.make_temp_dir("html-bench-"), "report.html")
    writes = [timed_report(db, out) for _ in range(ROUNDS)]
    size = os.path.getsize(out)
    loads = []
    b = Browser()
    try:
        for _ in range(ROUNDS):
            b.open("file://" + out)
            assert b.problems() == [], b.problems()
            loads.append(b.eval("performance.getEntriesByType('navigation')[0]"
                                ".domContentLoadedEventEnd"))
    finally:
        b.close()
    print("10,000 shapes: report.html %d bytes (%.2f MB, budget 2 MB), written in %.0f ms, "
          "DOMContentLoaded at %.0f ms in headless Chromium (budget 1000 ms)"
          % (size, size / 1048576, 1000 * statistics.median(writes), statistics.median(loads)))
    rows = grow(db, ROWS)
    html = [timed_report(db, out) for _ in range(ROUNDS)]
    text = [timed_report(db, out + ".txt", "text") for _ in range(ROUNDS)]
    print("%d statement rows: --format html in %.0f ms (budget 1000 ms), --format text in %.0f "
          "ms, page %d bytes" % (rows, 1000 * statistics.median(html),
                                 1000 * statistics.median(text), os.path.getsize(out)))
    ok = size < 2 * 1048576 and statistics.median(loads) < 1000 and statistics.median(html) < 1
    print("html bench: %s" % ("within budget" if ok else "OVER BUDGET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())  # the harness stops its cluster and proxies at exit
