"""pgscope check, the CI gate: exit 1 on a proven N+1 or a duplicate over the limit, 0 when the
run is clean; the same verdict as text, Markdown (rendered by a Markdown parser), JUnit XML
(well-formed, validated against tests/integration/junit.xsd) and GitHub annotations."""

import json
import os
import xml.etree.ElementTree as ET

import harness as h
from test_nplusone import DB, shop

XSD = os.path.join(h.HERE, "junit.xsd")


def shop_session(db=None):
    """pgscope in front of the shop (into a new file, or db to add a run to) and a cursor
    through it."""
    pg = h.Pgscope(shop())
    if db:
        pg.db = db
    pg.start()
    conn = h.connect(pg.host, pg.port, dbname=DB)
    conn.autocommit = True
    return pg, conn, conn.cursor()


def end_session(pg, conn):
    """The run ended: the report file's path."""
    conn.close()
    assert pg.stop() == 0, pg.log_text()
    return pg.db


def orders_loop(cur, n):
    """The N+1: n orders, then each one's customer."""
    cur.execute("SELECT id, customer_id FROM orders ORDER BY id LIMIT %s", (n,))
    for _, customer in cur.fetchall():
        cur.execute("SELECT id, name FROM customers WHERE id = %s", (customer,))
        cur.fetchall()


def run_with(loop, duplicates=0, db=None, test=None):
    """A pgscope run over the shop: 50 orders then their customers one by one (loop), or the
    join; then the same customer lookup `duplicates` times. The report file's path (db: a file
    to add the run to)."""
    pg, conn, cur = shop_session(db)
    if test:  # what a test runner's hook does at the start of each test
        cur.execute("SET application_name = %s", (test,))
    if loop:
        orders_loop(cur, 50)
    else:
        cur.execute("SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id")
        cur.fetchall()
    for _ in range(duplicates):
        cur.execute("SELECT name FROM customers WHERE id = %s", (7,))
        cur.fetchall()
    return end_session(pg, conn)


def check(db, *args):
    return h.run([h.PGSCOPE_BIN, "check", "--db", db] + list(args), timeout=60)


def test_check_fails_on_an_n_plus_one_in_every_format():
    import markdown

    db = run_with(loop=True)
    res = check(db)
    assert res.rc == 1, res
    assert res.stdout.startswith("pgscope check: FAILED, 1 problem"), res.stdout
    assert "N+1 loop (rule n_plus_one): N max 50" in res.stdout, res.stdout
    assert "SELECT id, name FROM customers WHERE id = ANY($1)" in res.stdout, res.stdout

    res = check(db, "--format", "markdown")
    assert res.rc == 1, res
    assert res.stdout.startswith("### :x: pgscope check failed: 1 problem"), res.stdout
    html = markdown.markdown(res.stdout, extensions=["tables", "fenced_code"])
    assert "<table>" in html and "<td>N+1 loop</td>" in html, html
    assert "<code>SELECT id, name FROM customers WHERE id = $1</code>" in html, html

    out = os.path.join(h.make_temp_dir("check-"), "junit.xml")
    res = check(db, "--format", "junit", "--output", out, "--annotations", "github")
    assert res.rc == 1, res
    lint = h.run(["xmllint", "--noout", "--schema", XSD, out])
    assert lint.rc == 0, lint
    suite = ET.parse(out).getroot().find("testsuite")
    failures = suite.findall("testcase/failure")
    assert suite.get("failures") == "1" and len(failures) == 1, ET.tostring(suite)
    assert failures[0].get("type") == "n_plus_one", failures[0].attrib
    assert "FROM customers WHERE id = ANY($1)" in failures[0].text, failures[0].text
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "::error title=pgscope%3A N+1 loop::rule n_plus_one: N max 50, 1 occurrence"), lines
    assert "%0ASELECT id, name FROM customers WHERE id = $1%0A%0A" in lines[0], lines


def test_check_passes_a_clean_run_and_counts_duplicates():
    db = run_with(loop=False, duplicates=6)
    res = check(db)
    assert res.rc == 0, res  # 6 repeats: under the default limit of 10
    assert res.stdout.startswith("pgscope check: passed"), res.stdout
    res = check(db, "--duplicate-min", "5", "--format", "markdown")
    assert res.rc == 1, res
    assert "| duplicate query |" in res.stdout, res.stdout
    res = check(db, "--format", "junit")
    assert res.rc == 0, res
    ET.fromstring(res.stdout)
    # the rules from the ini file's [check] section; the flags win over it
    conf = os.path.join(h.make_temp_dir("check-conf-"), "pgscope.conf")
    with open(conf, "w") as f:
        f.write("[pgscope]\nlisten = 127.0.0.1:6432\n\n[check]  # the gate\n"
                "duplicate_min = 5\nfail_on_suspected = on\n"
                "fail_on_plan = seq_scan_filter:100000, sort_spill\n")
    res = check(db, "--config", conf)
    assert res.rc == 1 and "duplicate query (rule duplicate)" in res.stdout, res
    assert check(db, "--config", conf, "--duplicate-min", "0").rc == 0
    with open(conf, "a") as f:
        f.write("duplicate_minimum = 3\n")
    res = check(db, "--config", conf)
    assert res.rc == 2 and "pgscope.conf:8: unknown setting \"duplicate_minimum\" in [check]" \
        in res.stderr, res


def test_check_usage_and_unreadable_files():
    assert check("/nonexistent/pgscope.db").rc == 3
    db = run_with(loop=False)
    bad = os.path.join(h.make_temp_dir("baseline-"), "bad.json")
    with open(bad, "w") as f:
        f.write('{"something": "else"}')
    res = check(db, "--baseline", bad)
    assert res.rc == 3 and "is not a pgscope baseline" in res.stderr, res
    assert h.run([h.PGSCOPE_BIN, "baseline", "load"]).rc == 2
    res = check("/nonexistent/pgscope.db", "--format", "xml")
    assert res.rc == 2 and "not one of text, markdown, junit" in res.stderr, res
    assert check("x", "--duplicate-min", "-1").rc == 2
    res = h.run([h.PGSCOPE_BIN, "check", "--help"])
    assert res.rc == 0 and "Exit status: 0 every rule passed" in res.stdout, res


def test_diff_shows_the_fixed_loop_and_the_statements_going_down():
    import json

    import markdown

    db = run_with(loop=True)
    run_with(loop=False, db=db)
    res = h.run([h.PGSCOPE_BIN, "diff", "--db", db])
    assert res.rc == 0, res
    first = res.stdout.splitlines()[0]
    assert first.startswith("pgscope diff: run 1 -> run 2: 1 finding fixed, 0 new, 0 still "
                            "present; statements 51 -> 1 (-98.0%)"), res.stdout
    assert "N+1 loop, fixed: N max 50 -> 0: SELECT id, name FROM customers" in res.stdout
    assert "disappeared; calls 50 -> 0 (-100.0%)" in res.stdout, res.stdout

    data = json.loads(h.run([h.PGSCOPE_BIN, "diff", "--db", db, "--format", "json"]).stdout)
    assert (data["before_run"], data["after_run"]) == (1, 2), data
    assert [(f["kind"], f["status"]) for f in data["findings"]] == [("n_plus_one", "fixed")]
    status = {s["query"]: s["status"] for s in data["statements"]}
    assert status["SELECT id, name FROM customers WHERE id = $1"] == "disappeared", status
    assert any(v == "appeared" and "JOIN" in q for q, v in status.items()), status

    md = h.run([h.PGSCOPE_BIN, "diff", "--db", db, "--format", "markdown"]).stdout
    html = markdown.markdown(md, extensions=["tables"])
    assert html.count("<table>") == 2 and "<td>fixed</td>" in html, html
    swapped = h.run([h.PGSCOPE_BIN, "diff", "--db", db, "--before", "2", "--after", "1"])
    assert "0 findings fixed, 1 new" in swapped.stdout, swapped.stdout


def test_diff_needs_two_runs():
    db = run_with(loop=False)
    res = h.run([h.PGSCOPE_BIN, "diff", "--db", db])
    assert res.rc == 3 and "fewer than two runs" in res.stderr, res
    res = h.run([h.PGSCOPE_BIN, "diff", "--db", db, "--before", "1"])
    assert res.rc == 2 and "go together" in res.stderr, res


LOOP = """
import os, psycopg2
conn = psycopg2.connect(host=os.environ["PGHOST"], port=os.environ["PGPORT"], user="postgres",
                        dbname="%s")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT id, customer_id FROM orders ORDER BY id LIMIT %d")
for _, customer in cur.fetchall():
    cur.execute("SELECT id, name FROM customers WHERE id = %%s", (customer,))
    cur.fetchall()
"""


def test_gate_script_runs_a_suite_and_gates_on_it():
    """contrib/ci/pgscope-gate.sh: the suite through pgscope, then the verdict: 1 with an N+1
    (check.md, junit.xml and a step summary written), 0 without, the suite's own status when
    the suite fails."""
    cluster = shop()
    gate = os.path.join(h.REPO, "contrib", "ci", "pgscope-gate.sh")
    for rows, code, expect in ((50, "", 1), (1, "", 0), (1, "raise SystemExit(5)", 5)):
        work = h.make_temp_dir("gate-")
        summary = os.path.join(work, "summary.md")
        env = dict(os.environ, PGSCOPE=h.PGSCOPE_BIN, GITHUB_STEP_SUMMARY=summary)
        res = h.run([gate, "--upstream", "%s:%d" % (cluster.host, cluster.port), "--listen",
                     "127.0.0.1:%d" % h.free_port(), "--db", os.path.join(work, "p.db"),
                     "--out", os.path.join(work, "out"), "--", "/usr/bin/python3", "-c",
                     LOOP % (DB, rows) + code], env=env, timeout=120)
        assert res.rc == expect, res
        with open(os.path.join(work, "out", "check.md")) as f:
            md = f.read()
        with open(summary) as f:
            assert f.read() == md
        assert md.startswith("### :x:" if rows == 50 else "### :white_check_mark:"), md
        lint = h.run(["xmllint", "--noout", "--schema", XSD, os.path.join(work, "out",
                                                                           "junit.xml")])
        assert lint.rc == 0, lint
        with open(os.path.join(work, "out", "report.html"), encoding="utf-8") as f:
            assert f.read().startswith("<!DOCTYPE html>")


def test_check_names_the_test_of_each_finding():
    """A test runner that names each test in application_name: the finding carries the test,
    and check names it in text, Markdown and JUnit (the test's testcase holds the failure)."""
    db = run_with(loop=True, test="tests/test_orders.py::test_orders_page")
    res = check(db)
    assert res.rc == 1 and "test:   tests/test_orders.py::test_orders_page" in res.stdout, res
    md = check(db, "--format", "markdown").stdout
    assert "| `tests/test_orders.py::test_orders_page` |" in md, md
    cases = ET.fromstring(check(db, "--format", "junit").stdout).findall("testsuite/testcase")
    case = [c for c in cases if c.get("name") == "tests/test_orders.py::test_orders_page"]
    assert len(case) == 1 and case[0].get("classname") == "pgscope.tests", cases
    failure = case[0].find("failure")
    assert failure.get("type") == "n_plus_one", failure.attrib
    assert "child: SELECT id, name FROM customers WHERE id = $1" in failure.text, failure.text


def suite_run(db, tests):
    """One pgscope run into db (None: a new file) of a small suite: per test (its name set in
    application_name, as a test runner's hook does), the orders with their customers by a join
    or by a loop, and extra statements. The file's path."""
    pg, conn, cur = shop_session(db)
    for name, loop, extra in tests:
        cur.execute("SET application_name = %s", (name,))
        if loop:
            orders_loop(cur, 20)
        else:
            cur.execute("SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = "
                        "o.customer_id LIMIT 20")
            cur.fetchall()
        for _ in range(extra):
            cur.execute("SELECT count(*) FROM orders")
            cur.fetchall()
        cur.execute("RESET application_name")
    return end_session(pg, conn)


def test_check_against_a_baseline_names_both_tests_then_passes_when_fixed():
    """Baseline: three tests, all joins. A change adds an N+1 to test_a and one statement to
    test_b: check --baseline-run 1 fails naming both, in text, Markdown and JUnit; the report
    lists the tests; fixing both passes, and diff shows the statements going down."""
    db = suite_run(None, [("t/test_a", False, 0), ("t/test_b", False, 0), ("t/test_c", False, 2)])
    suite_run(db, [("t/test_a", True, 0), ("t/test_b", False, 1), ("t/test_c", False, 2)])
    res = check(db, "--baseline-run", "1")
    assert res.rc == 1, res
    rep = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", "json"]).stdout)
    tests = {t["test"]: t for t in rep["tests"]}
    base = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", db, "--run", "1", "--format",
                             "json"]).stdout)
    before = {t["test"]: t["statements"] for t in base["tests"]}
    assert tests["t/test_a"]["statements"] == before["t/test_a"] + 20, (tests, before)
    assert tests["t/test_b"]["statements"] == before["t/test_b"] + 1, (tests, before)
    assert tests["t/test_c"]["statements"] == before["t/test_c"], (tests, before)
    assert tests["t/test_a"]["findings"] == 1 and tests["t/test_b"]["findings"] == 0, tests
    # the N+1 in test_a (whose statements went up with it) and the extra query in test_b
    assert res.stdout.startswith("pgscope check: FAILED, 3 problems (run 2)"), res.stdout
    assert "test t/test_b (rule statements): %d statements, %d in the baseline (+1, " % (
        before["t/test_b"] + 1, before["t/test_b"]) in res.stdout, res.stdout
    assert "N+1 loop (rule n_plus_one)" in res.stdout and "test:   t/test_a" in res.stdout
    assert "t/test_c" not in res.stdout, res.stdout
    # a percent of the baseline: test_b's one more passes at 100%, test_a's twenty do not
    pct = check(db, "--baseline-run", "1", "--max-extra-statements", "100%").stdout
    assert "test t/test_b (rule statements)" not in pct and \
        "test t/test_a (rule statements)" in pct, pct
    assert check(db, "--baseline-run", "1", "--max-extra-statements", "x%").rc == 2
    md = check(db, "--baseline-run", "1", "--format", "markdown").stdout
    assert "| more statements | `t/test_b` |" in md and "`t/test_a`" in md, md
    # the same baseline as a file to commit next to the tests: the same verdict
    saved = os.path.join(h.make_temp_dir("baseline-"), "pgscope-baseline.json")
    res_save = h.run([h.PGSCOPE_BIN, "baseline", "save", "--db", db, "--run", "1", "--output",
                      saved])
    assert res_save.rc == 0, res_save
    with open(saved) as f:
        data = json.load(f)
    assert data["pgscope_baseline"] == 1 and data["run"] == 1, data
    assert set(data["tests"]) == {"t/test_a", "t/test_b", "t/test_c"}, data["tests"]
    # the join of the three tests of run 1, LIMIT 20 each
    assert 60 in [s["rows"] for s in data["statements"] if s["calls"] == 3], data
    from_file = check(db, "--baseline", saved)
    assert from_file.rc == 1 and from_file.stdout == res.stdout, (from_file, res)
    suite = ET.fromstring(check(db, "--baseline-run", "1", "--format", "junit").stdout)
    failed = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None}
    passed = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is None}
    assert failed == {"t/test_a", "t/test_b"} and passed == {"t/test_c"}, ET.tostring(suite)
    both = [c.find("failure") for c in suite.iter("testcase") if c.get("name") == "t/test_a"][0]
    assert both.get("message") == "2 problems" and "more statements" in both.text and \
        "N+1 loop" in both.text and "= ANY($1)" in both.text, both.text

    text = h.run([h.PGSCOPE_BIN, "report", "--db", db]).stdout
    assert "Tests (3 of 3; most time first)" in text, text

    suite_run(db, [("t/test_a", False, 0), ("t/test_b", False, 0), ("t/test_c", False, 2)])
    res = check(db, "--baseline-run", "1")
    assert res.rc == 0 and res.stdout.startswith("pgscope check: passed (run 3)"), res
    diff = h.run([h.PGSCOPE_BIN, "diff", "--db", db]).stdout
    assert diff.startswith("pgscope diff: run 2 -> run 3: 1 finding fixed, 0 new, 0 still "
                           "present; statements "), diff
    assert "disappeared; calls 20 -> 0 (-100.0%)" in diff, diff
    # per test: test_a's 20 lookups gone, the others as they were (the extra query of test_b)
    data = json.loads(h.run([h.PGSCOPE_BIN, "diff", "--db", db, "--format", "json"]).stdout)
    per_test = {t["test"]: (t["statements_before"], t["statements_after"]) for t in data["tests"]}
    assert per_test["t/test_a"][0] - per_test["t/test_a"][1] == 20, per_test
    assert per_test["t/test_b"][0] - per_test["t/test_b"][1] == 1, per_test
    assert per_test["t/test_c"][0] == per_test["t/test_c"][1], per_test
    assert "  t/test_a: statements " in diff, diff


def sleep_run(db, seconds, calls=200, loop=False):
    """One run of `calls` pg_sleep(seconds) statements into db (None: a new file), then with
    loop an N+1 over 20 orders."""
    pg, conn, cur = shop_session(db)
    for _ in range(calls):
        cur.execute("SELECT pg_sleep(%s)", (seconds,))
        cur.fetchall()
    if loop:
        orders_loop(cur, 20)
    return end_session(pg, conn)


def test_timing_rule_fails_a_real_slowdown_and_passes_noise():
    """A shape made 30% slower over 200 calls fails, with the test and its p-value; the same
    code run twice (noise only) passes in 20 pairs out of 20. Each pair is two runs one after
    the other: the machine's own drift over the test's minute (a loaded CI machine, a sanitized
    build) is a real slowdown to any latency rule, and not what this measures."""
    # 5 ms statements: a sanitized proxy's own overhead (a few tenths of a millisecond, and
    # varying) stays well under the 10% the rule allows
    db = sleep_run(None, 0.005)
    sleep_run(db, 0.0065)
    res = check(db, "--baseline-run", "1")
    assert res.rc == 1, res
    assert "slower statement (rule latency): SELECT pg_sleep($1)" in res.stdout, res.stdout
    assert "one-sided Mann-Whitney U test on the latency histograms: p = " in res.stdout
    p = float(res.stdout.split("p = ")[1].split()[0])
    assert p < 1e-6, res.stdout
    md = check(db, "--baseline-run", "1", "--format", "markdown")
    assert md.rc == 1 and "| slower statement |" in md.stdout, md.stdout
    junit = check(db, "--baseline-run", "1", "--format", "junit")
    case = ET.fromstring(junit.stdout).find("testsuite/testcase/failure")
    assert case is not None and case.get("type") == "latency", junit.stdout
    assert check(db, "--baseline-run", "1", "--latency-rise", "60").rc == 0
    assert check(db, "--baseline-run", "1", "--latency-min-calls", "201").rc == 0

    saved = os.path.join(h.make_temp_dir("baseline-"), "b.json")
    assert h.run([h.PGSCOPE_BIN, "baseline", "save", "--db", db, "--run", "1", "--output",
                  saved]).rc == 0
    from_file = check(db, "--baseline", saved)  # the histograms travel in the file
    assert from_file.rc == 1 and "rule latency" in from_file.stdout, from_file
    passed, failures = 0, []
    for run in range(3, 43, 2):
        sleep_run(db, 0.005)
        sleep_run(db, 0.005)
        res = check(db, "--run", str(run + 1), "--baseline-run", str(run))
        passed += res.rc == 0
        if res.rc != 0:
            failures.append(res.stdout)
    assert passed == 20, "%d of 20 noise-only pairs passed: %s" % (passed, failures[:2])
    h.note("30%% slower: p = %.2g; noise: %d/20 passed" % (p, passed))


def test_shards_merge_exactly():
    """Two files (two CI shards) given to --db merge into one report whose counts are the sums
    and whose percentiles are those of one file holding both runs; check reads them the same."""
    import shutil
    import sqlite3

    both = sleep_run(None, 0.001, calls=120)
    sleep_run(both, 0.003, calls=80, loop=True)  # a finding in the second shard only
    shards = []
    for keep in (1, 2):
        path = os.path.join(h.make_temp_dir("shard-"), "pgscope.db")
        shutil.copy(both, path)
        con = sqlite3.connect(path)
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM runs WHERE id != ?", (keep,))
        con.commit()
        con.close()
        shards.append(path)
    merged = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", shards[0], "--db", shards[1],
                               "--format", "json", "--limit", "0"]).stdout)
    whole = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", both, "--all", "--format",
                              "json", "--limit", "0"]).stdout)

    def sleeps(rep):
        return [s for s in rep["statements"] if "pg_sleep" in (s["query"] or "")][0]

    m, w = sleeps(merged), sleeps(whole)
    assert m["calls"] == w["calls"] == 200, (m, w)
    for key in ("total_ms", "min_ms", "max_ms", "p50_ms", "p95_ms", "p99_ms"):
        assert abs(m[key] - w[key]) < 1e-6, (key, m, w)
    assert abs(m["mean_ms"] - w["mean_ms"]) < 1e-6 and abs(m["stddev_ms"] - w["stddev_ms"]) < 1e-3
    # findings unite: the pg_sleep duplicate of both shards adds up, the N+1 of one is there
    kinds = sorted((f["kind"], f["total_n"]) for f in merged["n_plus_one"])
    assert kinds == sorted((f["kind"], f["total_n"]) for f in whole["n_plus_one"]), kinds
    assert kinds == [("duplicate", 200), ("n_plus_one", 20)], kinds
    assert len(merged["runs"]) == 2, merged["runs"]
    res = check(shards[0], "--db", shards[1])
    assert res.rc == 1 and "N+1 loop" in res.stdout, res
    assert check(shards[0], "--duplicate-min", "0").rc == 0


def plan_run():
    """A run of test t/test_tasks: one slow statement filtering a million rows, sampled (a
    seq_scan_filter plan finding) and given an index suggestion. Its Pgscope, stopped."""
    from test_binary_params import BY_ASSIGNEE, cluster

    pg = h.Pgscope(cluster(), args=["--explain-min-duration", "5", "--explain-budget", "100"])
    pg.start()
    res = h.psql(pg.host, pg.port, BY_ASSIGNEE.format(101, 0), dbname="binparams",
                 pgappname="t/test_tasks")
    assert res.rc == 0, res
    assert pg.stop() == 0, pg.log_text()
    return pg


def without_plans(db):
    """A copy of the file db without plans, plan findings and index suggestions: the run
    before the slow statement."""
    import shutil
    import sqlite3
    path = os.path.join(h.make_temp_dir("shard-"), "pgscope.db")
    shutil.copy(db, path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("DELETE FROM plans")
    con.execute("DELETE FROM index_suggestions")
    con.commit()
    con.close()
    return path


def test_diff_of_two_files_shows_plan_findings_and_indexes():
    """diff --before-db A --db B: the plan finding and the index suggestion B has and A has
    not are new (the other way round: fixed and gone), in text, Markdown and JSON; JUnit and
    the annotations fail the test the new finding ran in."""
    import markdown

    after = plan_run().db
    before = without_plans(after)
    res = h.run([h.PGSCOPE_BIN, "diff", "--before-db", before, "--db", after])
    assert res.rc == 0, res
    assert "0 findings fixed, 1 new, 0 still present" in res.stdout, res.stdout
    assert "  seq_scan_filter, new, on tasks: size 0 -> 9999" in res.stdout, res.stdout
    assert '  new: CREATE INDEX CONCURRENTLY ON "tasks" ("assignee"' in res.stdout, res.stdout
    back = json.loads(h.run([h.PGSCOPE_BIN, "diff", "--before-db", after, "--db", before,
                             "--format", "json"]).stdout)
    assert [(f["kind"], f["status"], f["test"]) for f in back["plan_findings"]] == \
        [("seq_scan_filter", "fixed", "t/test_tasks")], back
    assert [i["status"] for i in back["index_suggestions"]] == ["gone"], back
    md = h.run([h.PGSCOPE_BIN, "diff", "--before-db", before, "--db", after, "--format",
                "markdown"]).stdout
    html = markdown.markdown(md, extensions=["tables"])
    assert "<td>seq_scan_filter</td>\n<td>new</td>\n<td>tasks</td>" in html, html
    out = os.path.join(h.make_temp_dir("diff-"), "junit.xml")
    res = h.run([h.PGSCOPE_BIN, "diff", "--before-db", before, "--db", after, "--format",
                 "junit", "--output", out, "--annotations", "github"])
    assert res.rc == 0 and h.run(["xmllint", "--noout", "--schema", XSD, out]).rc == 0, res
    failed = [(c.get("name"), c.find("failure").get("type"))
              for c in ET.parse(out).getroot().iter("testcase") if c.find("failure") is not None]
    assert failed == [("t/test_tasks", "plan")], failed
    assert res.stdout.startswith("::warning title=pgscope%3A seq_scan_filter in t/test_tasks::"
                                 "new: on tasks: removed 9999"), res.stdout
    shards = h.run([h.PGSCOPE_BIN, "diff", "--db", before, "--db", after])
    assert shards.rc == 2 and "needs --before-db" in shards.stderr, shards


def test_plan_rule_fails_new_plan_findings_of_the_kinds_asked():
    """--fail-on-plan seq_scan_filter: the sampled plan of a slow statement that filters a
    million rows fails, in the test it ran in; KIND:MIN only from that size on (the table's
    size, for a scan); against a baseline (run or file) that already had it, it does not."""
    pg = plan_run()
    rep = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", pg.db, "--format", "json"]).stdout)
    found = [f for f in rep["findings"] if f["kind"] == "seq_scan_filter"]
    assert len(found) == 1 and found[0]["test"] == "t/test_tasks", rep["findings"]
    assert 999000 <= found[0]["magnitude"] < 1000000, found  # rows removed of a million
    helps = [s["tests"] for s in rep["index_suggestions"] if s["columns"][0] == "assignee"]
    assert helps and helps[0][0]["test"] == "t/test_tasks" and helps[0][0]["calls"] == 1, \
        rep["index_suggestions"]
    text = h.run([h.PGSCOPE_BIN, "report", "--db", pg.db]).stdout
    md = h.run([h.PGSCOPE_BIN, "report", "--db", pg.db, "--format", "markdown"]).stdout
    assert "| 1 | seq_scan_filter | `t/test_tasks` | `SELECT id, title FROM tasks" in md, md
    assert "| 1 | `CREATE INDEX CONCURRENTLY ON \"tasks\" (\"assignee\"" in md, md
    assert "test      t/test_tasks" in text and "tests     t/test_tasks (1 calls)" in text, text
    res = check(pg.db, "--fail-on-plan", "seq_scan_filter")
    assert res.rc == 1 and "new plan finding (rule plan)" in res.stdout, res
    assert "seq_scan_filter on" in res.stdout and "tasks" in res.stdout, res.stdout
    junit = ET.fromstring(check(pg.db, "--fail-on-plan", "seq_scan_filter", "--format",
                                "junit").stdout)
    failed = [c for c in junit.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("name"), c.find("failure").get("type")) for c in failed] == \
        [("t/test_tasks", "plan")], ET.tostring(junit)
    assert check(pg.db, "--fail-on-plan", "seq_scan_filter:500000").rc == 1
    assert check(pg.db, "--fail-on-plan", "seq_scan_filter:2000000").rc == 0  # a larger table
    assert check(pg.db, "--fail-on-plan", "seq_scan:1").rc == 2  # no such kind: a typo
    # CI shards: the finding of the second file counts as much as the first's
    first = without_plans(pg.db)
    assert check(first, "--fail-on-plan", "seq_scan_filter").rc == 0
    assert check(first, "--db", pg.db, "--fail-on-plan", "seq_scan_filter").rc == 1
    merged = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", first, "--db", pg.db,
                               "--format", "json"]).stdout)
    assert [(f["kind"], f["test"]) for f in merged["findings"]] == \
        [("seq_scan_filter", "t/test_tasks")], merged["findings"]
    assert len(merged["plans"]) == 1 and len(merged["index_suggestions"]) == 1, merged
    # the same suggestion and plan finding in two shards: one each, the calls of both
    twice = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", pg.db, "--db", pg.db,
                              "--format", "json"]).stdout)
    assert len(twice["index_suggestions"]) == 1 and len(twice["findings"]) == 1, twice
    assert twice["index_suggestions"][0]["tests"][0]["calls"] == 2, twice
    assert twice["findings"][0]["calls"] == 2 and twice["findings"][0]["seen_in_plans"] == 2
    assert check(pg.db, "--fail-on-plan", "sort_spill").rc == 0
    assert check(pg.db, "--fail-on-plan", "seq_scan_filter", "--baseline-run", "1").rc == 0
    saved = os.path.join(h.make_temp_dir("baseline-"), "b.json")
    assert h.run([h.PGSCOPE_BIN, "baseline", "save", "--db", pg.db, "--output", saved]).rc == 0
    assert check(pg.db, "--fail-on-plan", "seq_scan_filter", "--baseline", saved).rc == 0


def test_report_for_ci_in_markdown_junit_and_annotations():
    """report --format markdown renders (a verdict, then tables: the findings with the fix,
    the tests); --format junit validates, one testcase per test, the N+1's test failing; the
    annotations are warnings, one per finding; --output writes the file. A test name with
    markup in it stays text in every format."""
    import markdown

    hostile = "t/test_b[<b>&amp;\"'|`x`]"
    db = suite_run(None, [("t/test_a", True, 0), (hostile, False, 1)])
    md = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", "markdown"])
    assert md.rc == 0, md
    assert md.stdout.startswith("### pgscope report, run 1: :warning: 1 finding\n"), md.stdout
    html = markdown.markdown(md.stdout, extensions=["tables", "fenced_code"])
    assert "<td>N+1 loop</td>" in html and "<code>t/test_a</code>" in html, html
    assert "<h4>Tests, most time first</h4>" in html, html
    # GitHub's own renderer: the pipe in the code span stays in its cell (a backtick cannot)
    gfm = h.run(["cmark-gfm", "-e", "table"], input=md.stdout)
    assert gfm.rc == 0, gfm
    assert "<td><code>t/test_b[&lt;b&gt;&amp;amp;&quot;'|'x']</code></td>" in gfm.stdout, gfm
    assert "= ANY($1)" in html and "<details>" in html, html
    out = os.path.join(h.make_temp_dir("report-"), "junit.xml")
    res = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", "junit", "--output", out,
                 "--annotations", "github"])
    assert res.rc == 0, res
    assert h.run(["xmllint", "--noout", "--schema", XSD, out]).rc == 0
    cases = {c.get("name"): c.find("failure") for c in ET.parse(out).getroot().iter("testcase")}
    assert set(cases) == {"t/test_a", hostile} and cases[hostile] is None, cases
    assert cases["t/test_a"].get("type") == "n_plus_one", cases["t/test_a"].attrib
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "::warning title=pgscope%3A N+1 loop in t/test_a::proven, N max 20"), lines
    bad = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", "xml"])
    assert bad.rc == 2 and "not one of text, json, markdown, junit" in bad.stderr, bad
    bad = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--plan", "1", "--format", "junit"])
    assert bad.rc == 2 and "--plan prints text or json" in bad.stderr, bad
    bad = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--output", "/nonexistent/r.md"])
    assert bad.rc == 1 and "/nonexistent/r.md" in bad.stderr, bad
