"""contrib/activerecord/pgscope_tests.rb with a real minitest suite on ActiveRecord 6.1 (the
library schema of the ORM matrix): each test is named in application_name, so the finding names
its test, a change adding an N+1 to one test and a query to another makes `pgscope check
--baseline-run` fail naming both, and fixing both passes."""

import json
import os
import xml.etree.ElementTree as ET

import markdown

import harness as h
from test_orm import library

HOOK_DIR = os.path.join(h.REPO, "contrib", "activerecord")

SUITE = '''
require "minitest/autorun"
require "active_record"
ActiveRecord::Base.establish_connection(adapter: "postgresql", host: "127.0.0.1",
                                        port: ENV["LIB_PORT"].to_i, database: ENV["LIB_DB"],
                                        username: "postgres")
require "pgscope_tests"

class Author < ActiveRecord::Base; has_many :books; end
class Book < ActiveRecord::Base; belongs_to :author; end
VARIANT = ENV["VARIANT"]

class LibraryTest < Minitest::Test
  def test_a
    books = Book.where(shelf: "a").order(:id)
    books = books.includes(:author) unless VARIANT == "after"
    assert_equal 20, books.map { |b| b.author.name }.size
  end

  def test_b
    assert_equal 5, Author.where("id <= 5").count
    assert_equal 38, Book.count if VARIANT == "after"
  end

  def test_c
    assert_equal 18, Book.where(shelf: "b").count
  end
end
'''


def suite(path, cluster, db, variant, dbfile):
    pg = h.Pgscope(cluster)
    if dbfile:
        pg.db = dbfile
    pg.start()
    res = h.run(["ruby", "-I", HOOK_DIR, path],
                env={"LIB_PORT": str(pg.port), "LIB_DB": db, "VARIANT": variant}, timeout=120)
    assert res.rc == 0 and "3 runs" in res.stdout, res
    assert pg.stop() == 0, pg.log_text()
    return pg.db


def test_minitest_suite_names_its_tests_and_gates_on_the_baseline():
    cluster, db = library("activerecord")
    path = os.path.join(h.make_temp_dir("ar-suite-"), "library_test.rb")
    with open(path, "w") as f:
        f.write(SUITE)
    dbfile = suite(path, cluster, db, "before", None)
    suite(path, cluster, db, "after", dbfile)
    check = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline-run", "1"])
    assert check.rc == 1, check
    assert "test:   LibraryTest#test_a" in check.stdout, check.stdout
    assert "test LibraryTest#test_b (rule statements)" in check.stdout, check.stdout
    assert "test_c" not in check.stdout, check.stdout
    md = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline-run", "1", "--format",
                "markdown"]).stdout
    html = markdown.markdown(md, extensions=["tables", "fenced_code"])
    assert "<code>LibraryTest#test_a</code>" in html and "<code>LibraryTest#test_b</code>" in html
    junit = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline-run", "1", "--format",
                   "junit"]).stdout
    failed = {c.get("name") for c in ET.fromstring(junit).iter("testcase")
              if c.find("failure") is not None}
    assert failed == {"LibraryTest#test_a", "LibraryTest#test_b"}, failed
    found = json.loads(h.run([h.PGSCOPE_BIN, "report", "--db", dbfile, "--format",
                              "json"]).stdout)["n_plus_one"]
    assert [f["test"] for f in found] == ["LibraryTest#test_a"], found
    suite(path, cluster, db, "fixed", dbfile)
    check = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline-run", "1"])
    assert check.rc == 0, check
