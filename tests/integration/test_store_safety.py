"""The report database's safety: a file that is not pgscope's is refused untouched, a start that
cannot listen leaves no run behind, and after a full disk the end of a run and the count of
lost rows are recorded (or the log says why not) with the same figure in the file and the log."""

import contextlib
import hashlib
import itertools
import json
import os
import re
import sqlite3
import subprocess
import time

import harness as h


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def db_rows(path, sql):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def proxy_cmd(db, port, *args):
    return [h.PGSCOPE_BIN, "proxy", "--listen", "127.0.0.1:%d" % port, "--upstream",
            "127.0.0.1:%d" % h.shared_cluster().port, "--db", db] + list(args)


def report_json(db):
    res = h.run([h.PGSCOPE_BIN, "report", "--db", db, "--format", "json"], timeout=60)
    assert res.rc == 0, res
    return json.loads(res.stdout)

# ---------------------------------------------------------------- files that are not ours


def other_programs_file(path):
    """An SQLite file as another program leaves it: rollback journal, its own tables and ids."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA application_id = 1234")
    con.execute("PRAGMA user_version = 7")
    con.execute("CREATE TABLE invoices (id integer PRIMARY KEY, amount real)")
    con.executemany("INSERT INTO invoices (amount) VALUES (?)", [(i * 1.5,) for i in range(200)])
    con.commit()
    con.close()


def ids_only_file(path):
    """An SQLite file with no tables yet, but already claimed by another program."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA application_id = 1234")
    con.commit()
    con.close()


def someone_elses_meta_file(path):
    """Another program's file that happens to have a meta table with a schema version."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('application', 'billing'), ('schema_version', '2')")
    con.commit()
    con.close()


def newer_pgscope_file(path):
    """A report database of a newer pgscope, left in rollback-journal mode so that a switch to
    WAL would show in its header."""
    pg = h.Pgscope(h.shared_cluster())
    pg.db = path
    pg.start()
    assert pg.stop() == 0, pg.log_text()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()


def text_file(path):
    with open(path, "w") as f:
        f.write("name,amount\n" + "".join("item %d,%d\n" % (i, i) for i in range(300)))


def short_text_file(path):
    with open(path, "w") as f:
        f.write("hello\n")


def refused_unchanged(path, expect):
    before = sha256(path)
    port = h.free_port()
    res = h.run(proxy_cmd(path, port), timeout=30)
    assert res.rc == 2, res
    assert expect in res.stderr, res
    assert sha256(path) == before, "%s was changed by the refusal" % path
    for suffix in ("-wal", "-shm", "-journal"):
        assert not os.path.exists(path + suffix), path + suffix
    assert not h.port_open("127.0.0.1", port), "pgscope listened after refusing its --db"


def test_file_not_ours_refused_unchanged():
    work = h.make_temp_dir("pgscope-foreign-")
    try:
        cases = [(other_programs_file, "not a pgscope report database"),
                 (ids_only_file, "not a pgscope report database"),
                 (someone_elses_meta_file, "not a pgscope report database"),
                 (text_file, "not a pgscope report database"),
                 (short_text_file, "not a pgscope report database"),
                 (newer_pgscope_file, "newer pgscope")]
        for i, (make, expect) in enumerate(cases):
            path = os.path.join(work, "%d-%s.db" % (i, make.__name__))
            make(path)
            if make is other_programs_file:
                with open(path, "rb") as f:
                    assert f.read(20)[18:20] == b"\x01\x01", "not a rollback-journal file"
            refused_unchanged(path, expect)
    finally:
        subprocess.call(["rm", "-rf", work])


def test_empty_file_taken_as_new():
    """mktemp makes an empty file: pgscope takes it as a new report database."""
    pg = h.Pgscope(h.shared_cluster())
    open(pg.db, "wb").close()
    pg.start()
    assert h.psql(pg.host, pg.port, "SELECT 1").rc == 0
    assert pg.stop() == 0, pg.log_text()
    assert db_rows(pg.db, "SELECT value FROM meta WHERE key = 'application'") == [("pgscope",)]
    assert db_rows(pg.db, "SELECT count(*) FROM runs WHERE ended_at IS NOT NULL") == [(1,)]

# ---------------------------------------------------------------- a start that cannot listen


def test_failed_start_leaves_no_run():
    first = h.Pgscope(h.shared_cluster(), args=["--run-label", "first"]).start()
    assert h.psql(first.host, first.port, "SELECT 1").rc == 0
    res = h.run(proxy_cmd(first.db, first.port, "--run-label", "second"), timeout=30)
    assert res.rc == 1, res
    assert first.alive(), first.log_text()
    assert db_rows(first.db, "SELECT label FROM runs") == [("first",)]
    runs = report_json(first.db)["runs"]
    assert [r["label"] for r in runs] == ["first"], runs
    assert runs[0]["ended_at"] is None, runs  # still running
    assert first.stop() == 0, first.log_text()
    runs = report_json(first.db)["runs"]
    assert [r["label"] for r in runs] == ["first"] and runs[0]["ended_at"], runs

# ---------------------------------------------------------------- a full disk


@contextlib.contextmanager
def small_disk(size="2m"):
    """A tmpfs of its own (root only), unmounted at the end whatever happens."""
    work = h.make_temp_dir("pgscope-disk-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    res = h.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", mnt])
    assert res.rc == 0, "a full disk needs a tmpfs (run as root): %s" % res
    try:
        yield mnt
    finally:
        h.close_test_resources()  # pgscope must have let go of the file
        h.run(["umount", mnt])
        subprocess.call(["rm", "-rf", work])


def fill(directory):
    """Takes every free byte of the file system; returns the file that holds them."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def traffic(pg, shapes=300):
    """Statements of as many shapes (pairs of pg_class columns): hundreds of rows per batch."""
    conn = pg.connect()
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'pg_class'::regclass "
                "AND attnum > 0 ORDER BY attnum")
    cols = [r[0] for r in cur.fetchall()]
    for a, b in list(itertools.combinations(cols, 2))[:shapes]:
        cur.execute("SELECT %s, %s FROM pg_catalog.pg_class LIMIT 1" % (a, b))
        cur.fetchall()
    conn.close()


def full_disk_run(free_before_stop):
    """pgscope on a full disk under traffic; returns (lost_writes, ended_at, log)."""
    with small_disk() as mnt:
        pg = h.Pgscope(h.shared_cluster())
        pg.db = os.path.join(mnt, "report.db")
        pg.start()
        assert h.psql(pg.host, pg.port, "SELECT 1").rc == 0
        assert h.wait_for(lambda: db_rows(pg.db, "SELECT statements FROM runs")[0][0] > 0, 10)
        filler = fill(mnt)
        traffic(pg)
        assert h.wait_for(lambda: "rows not written" in pg.log_text(), 10), pg.log_text()
        time.sleep(1.5)  # more batches fail
        if free_before_stop:
            os.unlink(filler)
        assert pg.stop() == 0, pg.log_text()
        if not free_before_stop:
            os.unlink(filler)  # room for the -shm file a reader needs
        (lost, ended), = db_rows(pg.db, "SELECT lost_writes, ended_at FROM runs")
        return lost, ended, pg.log_text()


def lost_so_far(log):
    return [int(n) for n in re.findall(r"rows not written, (\d+) lost so far", log)]


def test_full_disk_freed_before_stop_end_recorded():
    lost, ended, log = full_disk_run(free_before_stop=True)
    h.note("lost_writes %d" % lost)
    assert ended is not None, log
    m = re.search(r"end of run 1 recorded; (\d+) rows were lost in all", log)
    assert m, log
    assert int(m.group(1)) == lost and lost > 0, (lost, log)
    assert max(lost_so_far(log)) <= lost, log


def test_full_disk_never_freed_log_says_end_not_recorded():
    lost, ended, log = full_disk_run(free_before_stop=False)
    assert ended is None, log
    m = re.search(r"cannot record the end of run 1 \([^)]*\): its ended_at stays empty, and the "
                  r"file keeps lost_writes = (\d+) from the last batch written; (\d+) rows were "
                  r"lost in all", log)
    assert m, log
    in_file, in_all = int(m.group(1)), int(m.group(2))
    h.note("lost_writes in the file %d, lost in all %d" % (in_file, in_all))
    assert in_file == lost, (lost, log)
    assert in_all > in_file and in_all >= max(lost_so_far(log)), log
