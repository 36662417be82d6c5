"""pgscope report --format html: one self-contained page, opened in headless Chromium (Debian's
chromium) as a person would: no console error and no request, the sections in order, the N+1
card with its fix, a plan tree that opens on its finding's node, histograms with their p95
marker, hostile statement text shown as text; at a desktop and a phone width. Screenshots go
to a folder the test prints."""

import os
import re

import harness as h
from browser import Browser, dump_dom, screenshot_cli
from test_binary_params import BY_ASSIGNEE, cluster
from test_check import DB, orders_loop, shop

# A statement whose text is markup: an alias keeps it through normalization (no value the
# application sent is stored, but names are).
HOSTILE = 'SELECT 1 AS "</script><script>window.pwned=1</script><b id=pwn>&amp;\'"'


# A value the application sent, inlined in its text: never on the page (store_params is off).
SECRET = "x-secret-7731"


def shots_dir():
    path = os.environ.get("PGSCOPE_SHOTS") or h.make_temp_dir("html-shots-")
    os.makedirs(path, exist_ok=True)
    return path


def workload_run():
    """One run with everything the page shows: an N+1 loop in a named test, a slow statement
    sampled with a plan finding and a verified index suggestion, and the hostile text."""
    cluster()  # the tasks table, before pgscope starts: its setup is not part of the run
    shop()
    pg = h.Pgscope(h.shared_cluster(), args=["--explain-min-duration", "5",
                                             "--explain-budget", "100"]).start()
    conn = h.connect(pg.host, pg.port, dbname=DB)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET application_name = 't/test_orders'")
    orders_loop(cur, 30)
    cur.execute(HOSTILE)
    cur.execute("SELECT count(*) FROM customers WHERE name = '%s'" % SECRET)  # inlined
    conn.close()
    res = h.psql(pg.host, pg.port, BY_ASSIGNEE.format(101, 0), dbname="binparams",
                 pgappname="t/test_tasks")
    assert res.rc == 0, res
    assert pg.stop() == 0, pg.log_text()
    return pg.db


def html_of(db, *args):
    out = os.path.join(h.make_temp_dir("html-"), "report.html")
    res = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", "html", "--output", out]
                + list(args))
    assert res.rc == 0, res
    return out


def test_html_report_in_a_browser():
    db = workload_run()
    page = html_of(db)
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert "http://" not in text and "https://" not in text, "the page refers to the network"
    assert "<script>window.pwned" not in text and "<b id=pwn>" not in text, "unescaped markup"
    assert SECRET not in text, "a value the application sent is on the page"
    shots = shots_dir()
    b = Browser()
    try:
        b.open("file://" + page)
        assert b.problems() == [], b.problems()
        sections = b.eval("Array.from(document.querySelectorAll('main > section'))"
                          ".map(s => s.id)")
        assert sections == ["findings", "indexes", "plans", "time", "statements", "tests"], \
            sections
        assert b.eval("window.pwned === undefined && !document.getElementById('pwn')")
        shown = b.eval("Array.from(document.querySelectorAll('td.q code'))"
                       ".map(c => c.textContent).join('\\n')")
        assert "</script><script>window.pwned=1</script><b id=pwn>&amp;'" in shown, shown
        card = b.eval("document.querySelector('#findings article').innerText")
        assert "N+1 loop" in card and "proven" in card and "t/test_orders" in card, card
        assert "SELECT id, name FROM customers WHERE id = ANY($1)" in card, card
        assert b.eval("!!document.querySelector('#findings button.copy')")
        # the plan tree: closed, then opened by a click, its finding's node marked
        assert b.eval("document.querySelector('details.plan').open") is False
        b.eval("document.querySelector('details.plan > summary').click()")
        hit = b.eval("(() => { const n = document.querySelector('details.plan .hit > summary');"
                     " return n && n.offsetHeight > 0 ? n.innerText : null; })()")
        assert hit and "Seq Scan on tasks" in hit and "finding: seq_scan_filter" in hit, hit
        # every histogram marks p50, p95 and p99
        marks = b.eval("Array.from(document.querySelectorAll('svg.hist'))"
                       ".map(s => ['p50','p95','p99'].every(k => s.querySelector('g.' + k)))")
        assert marks and all(marks), marks
        assert b.eval("document.querySelector('svg.hist g.p95 line') !== null")
        assert b.eval("document.querySelector('#time svg text').textContent.length > 0")
        # sorting by calls puts the 30 executions of the loop's child first
        b.eval("document.querySelector('#statements th:nth-child(3)').click()")
        b.eval("document.querySelector('#statements th:nth-child(3)').click()")
        first = b.eval("document.querySelector('#statements tbody tr td.q').textContent")
        assert first == "SELECT id, name FROM customers WHERE id = $1", first
        b.screenshot(os.path.join(shots, "report-1280.png"))
        b.open("file://" + page, width=390, height=844)
        assert b.problems() == [], b.problems()
        wide = b.eval("document.documentElement.scrollWidth")
        assert wide <= 400, "the page is %d px wide on a 390 px phone" % wide
        b.screenshot(os.path.join(shots, "report-390.png"))
    finally:
        b.close()
    # a link to a plan opens it, and the DOM after the scripts ran keeps the text escaped
    plan = re.search(r'id="(plan-\d+)"', text).group(1)
    dom = dump_dom("file://%s#%s" % (page, plan))
    assert re.search(r'<details class="plan" id="%s" open=""' % plan, dom), dom[:2000]
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1" in dom
    h.note("screenshots in %s" % shots)


def ten_thousand_shapes():
    """A run of 10,000 distinct statement shapes (and contrib/bench/html.sh's): its file."""
    pg = h.Pgscope(h.shared_cluster(), args=["--explain", "off", "--max-shapes", "20000"])
    pg.start()
    conn = h.connect(pg.host, pg.port)
    conn.autocommit = True
    cur = conn.cursor()
    # 20 to a Query: each statement's event carries its Query's text, and the queue's byte
    # budget must hold them while a slow (sanitized) build analyses
    for start in range(0, 10000, 20):
        cur.execute(";".join("SELECT c%d FROM (SELECT 1 c%d) s" % (i, i)
                             for i in range(start, start + 20)))
    conn.close()
    assert pg.stop() == 0, pg.log_text()
    return pg.db


def test_html_report_of_10000_shapes():
    """10,000 statement shapes: the page lists 500 (and says so), stays under 2 MB, and opens
    without a console error."""
    page = html_of(ten_thousand_shapes())
    size = os.path.getsize(page)
    assert size < 2 * 1024 * 1024, size
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert "The page lists the first 500 of 10000 shapes (500 at most" in text, \
        re.findall(r"\d+ of \d+ shapes", text)
    b = Browser()
    try:
        b.open("file://" + page)
        assert b.problems() == [], b.problems()
        rows = b.eval("document.querySelectorAll('#statements tbody tr').length")
        assert rows == 500, rows
        ms = b.eval("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    finally:
        b.close()
    screenshot_cli("file://" + page, os.path.join(shots_dir(), "report-10000-shapes.png"))
    h.note("10,000 shapes: %d bytes, DOMContentLoaded at %.0f ms" % (size, ms))


def test_html_diff_in_a_browser():
    """diff --format html: the verdict names the new N+1, the statements come regressions first
    with before and after bars, and the page opens without a console error."""
    from test_check import suite_run

    db = suite_run(None, [("t/test_a", False, 0), ("t/test_b", False, 3)])
    suite_run(db, [("t/test_a", True, 0), ("t/test_b", False, 0)])
    page = os.path.join(h.make_temp_dir("html-"), "diff.html")
    res = h.run([h.PGSCOPE_BIN, "diff", "--db", db, "--format", "html", "--output", page])
    assert res.rc == 0, res
    b = Browser()
    try:
        b.open("file://" + page)
        assert b.problems() == [], b.problems()
        verdict = b.eval("document.getElementById('verdict').innerText")
        assert "New findings" in verdict and "0 findings fixed" in verdict, verdict
        finding = b.eval("document.querySelector('#findings tbody tr').innerText")
        assert "N+1 loop" in finding and "new" in finding and "t/test_a" in finding, finding
        rows = b.eval("Array.from(document.querySelectorAll('#statements tbody tr'))"
                      ".map(r => [r.cells[0].innerText, r.cells[1].innerText])")
        assert rows[0] == ["SELECT id, name FROM customers WHERE id = $1", "appeared"], rows
        assert rows[-1][1] in ("disappeared", "changed"), rows
        assert b.eval("document.querySelectorAll('#statements svg.pair rect.b0').length") == \
            len(rows)
        tests = b.eval("document.querySelector('#tests tbody').innerText")
        assert "t/test_a" in tests and "+" in tests, tests
        b.screenshot(os.path.join(shots_dir(), "diff-1280.png"))
    finally:
        b.close()


def test_html_gate_of_check():
    """check --format html: the run's page with the gate's verdict on top, naming the tests
    that broke a rule; exit status as in every format."""
    from test_check import suite_run

    db = suite_run(None, [("t/test_a", False, 0), ("t/test_b", False, 0)])
    suite_run(db, [("t/test_a", True, 0), ("t/test_b", False, 1)])
    page = os.path.join(h.make_temp_dir("html-"), "check.html")
    res = h.run([h.PGSCOPE_BIN, "check", "--db", db, "--baseline-run", "1", "--format", "html",
                 "--output", page])
    assert res.rc == 1, res
    b = Browser()
    try:
        b.open("file://" + page)
        assert b.problems() == [], b.problems()
        gate = b.eval("document.getElementById('gate').innerText")
        assert "pgscope check failed: 3 problems" in gate, gate
        assert "t/test_a" in gate and "t/test_b" in gate and "against the baseline" in gate, gate
        assert b.eval("!!document.getElementById('findings')")
    finally:
        b.close()
    res = h.run([h.PGSCOPE_BIN, "check", "--db", db, "--format", "html", "--output", page,
                 "--duplicate-min", "0", "--run", "1"])
    assert res.rc == 0, res
    with open(page, encoding="utf-8") as f:
        assert "&#10003; pgscope check passed" in f.read()


def test_demo_report_in_a_browser():
    """The demo (contrib/demo.sh) as a new user runs it: it writes report.html and prints its
    path; the page shows the demo app's N+1 with its fix, the slow query's plan tree opening on
    its sequential scan, and a p95 marker on every histogram, with no console error."""
    out = h.make_temp_dir("demo-")
    res = h.run(["bash", os.path.join(h.REPO, "contrib", "demo.sh")],
                env={"PGSCOPE_BIN": h.PGSCOPE_BIN, "DEMO_OUT": out, "DEMO_SECONDS": "1"},
                timeout=600)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    page = os.path.join(out, "report.html")
    assert "HTML report: %s" % page in res.stdout, res.stdout[-2000:]
    b = Browser()
    try:
        b.open("file://" + page)
        assert b.problems() == [], b.problems()
        card = b.eval("document.querySelector('#findings article').innerText")
        assert "N+1 loop" in card and "= ANY($1)" in card, card
        b.eval("document.querySelector('details.plan > summary').click()")
        hit = b.eval("document.querySelector('details.plan .hit > summary').innerText")
        assert "Seq Scan on orders" in hit and "finding: seq_scan_filter" in hit, hit
        assert b.eval("Array.from(document.querySelectorAll('svg.hist'))"
                      ".every(s => s.querySelector('g.p95 line'))")
        b.screenshot(os.path.join(shots_dir(), "demo-1280.png"))
    finally:
        b.close()


def test_html_keeps_a_hostile_literal_as_text():
    """With store_params on, a string literal is kept in the sampled plan: one holding
    </script>, markup, & and quotes is shown in the plan tree as text, and runs nothing."""
    cluster()
    pg = h.Pgscope(h.shared_cluster(), args=["--explain-min-duration", "5", "--explain-budget",
                                             "100", "--store-params", "on"]).start()
    literal = "</script><script>window.pwned=2</script><b id=pwn2>&amp;\"''"
    res = h.psql(pg.host, pg.port, "SELECT count(*) FROM tasks WHERE title = '%s' AND "
                 "assignee >= 0" % literal, dbname="binparams")
    assert res.rc == 0, res
    assert pg.stop() == 0, pg.log_text()
    page = html_of(pg.db)
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert "<script>window.pwned=2" not in text and "&lt;/script&gt;&lt;script&gt;" in text
    b = Browser()
    try:
        b.open("file://" + page)
        assert b.problems() == [], b.problems()
        b.eval("document.querySelector('details.plan > summary').click()")
        tree = b.eval("document.querySelector('details.plan').innerText")
        assert "</script><script>window.pwned=2</script><b id=pwn2>&amp;\"'" in tree, tree
        assert b.eval("window.pwned === undefined && !document.getElementById('pwn2')")
    finally:
        b.close()
