"""contrib/pytest/pgscope_pytest.py with a real pytest suite of a Django project (Django 3.2 on
psycopg2, the library schema of the ORM matrix): each statement names its test, so the report
names the test that holds the N+1; a change that adds an N+1 to one test and a query to another
makes `pgscope check --baseline-run` fail naming both; fixing both passes."""

import os
import xml.etree.ElementTree as ET

import markdown

import harness as h
from test_check import XSD
from test_orm import library

PLUGIN_DIR = os.path.join(h.REPO, "contrib", "pytest")

CONFTEST = '''
import os
import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1",
                           "PORT": os.environ["LIB_PORT"], "NAME": os.environ["LIB_DB"],
                           "USER": "postgres"}},
    INSTALLED_APPS=[], USE_TZ=False)
django.setup()
'''

MODELS = '''
from django.db import models


class LibraryModel(models.Model):
    class Meta:
        abstract = True
        app_label = "library"


class Author(LibraryModel):
    name = models.TextField()


class Book(LibraryModel):
    title = models.TextField()
    shelf = models.TextField()
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
'''

TESTS = '''
import os

from libmodels import Author, Book

VARIANT = os.environ["VARIANT"]


def test_a():
    books = Book.objects.filter(shelf="a").order_by("id")
    if VARIANT != "after":
        books = books.select_related("author")
    assert len([b.author.name for b in books]) == 20


def test_b():
    assert Author.objects.filter(id__lte=5).count() == 5
    if VARIANT == "after":
        assert Book.objects.count() == 38


def test_c():
    assert Book.objects.filter(shelf="b").count() == 18
'''


def project():
    root = h.make_temp_dir("pytest-suite-")
    os.makedirs(os.path.join(root, "tests"))
    for path, text in (("conftest.py", CONFTEST), ("libmodels.py", MODELS),
                       (os.path.join("tests", "test_library.py"), TESTS)):
        with open(os.path.join(root, path), "w") as f:
            f.write(text)
    return root


def suite(root, cluster, db, variant, dbfile):
    pg = h.Pgscope(cluster)
    if dbfile:
        pg.db = dbfile
    pg.start()
    env = dict(os.environ, LIB_PORT=str(pg.port), LIB_DB=db, VARIANT=variant,
               PYTHONPATH=os.pathsep.join([PLUGIN_DIR, root]), PYTHONDONTWRITEBYTECODE="1")
    res = h.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "pgscope_pytest", "-p",
                 "no:cacheprovider", "-p", "no:django", "--rootdir", root, os.path.join(root, "tests")],
                env=env, timeout=120)
    assert res.rc == 0, res
    assert pg.stop() == 0, pg.log_text()
    return pg.db


def test_pytest_suite_names_its_tests_and_gates_on_the_baseline():
    cluster, db = library("django")
    root = project()
    dbfile = suite(root, cluster, db, "before", None)
    saved = os.path.join(root, "pgscope-baseline.json")  # committed next to the tests
    assert h.run([h.PGSCOPE_BIN, "baseline", "save", "--db", dbfile, "--output", saved]).rc == 0
    suite(root, cluster, db, "after", dbfile)
    check = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline", saved])
    assert check.rc == 1, check
    assert "test:   tests/test_library.py::test_a" in check.stdout, check.stdout
    assert "test tests/test_library.py::test_b (rule statements)" in check.stdout, check.stdout
    assert "test_c" not in check.stdout, check.stdout
    md = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline", saved, "--format",
                "markdown"])
    html = markdown.markdown(md.stdout, extensions=["tables", "fenced_code"])
    assert md.rc == 1 and "<code>tests/test_library.py::test_a</code>" in html, html
    assert "<code>tests/test_library.py::test_b</code>" in html, html
    junit = os.path.join(root, "junit.xml")
    res = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline", saved, "--format",
                 "junit", "--output", junit])
    assert res.rc == 1, res
    assert h.run(["xmllint", "--noout", "--schema", XSD, junit]).rc == 0
    failed = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase")
              if c.find("failure") is not None}
    assert failed == {"tests/test_library.py::test_a", "tests/test_library.py::test_b"}, failed
    report = h.run([h.PGSCOPE_BIN, "report", "--db", dbfile, "--format", "json"]).stdout
    import json
    found = json.loads(report)["n_plus_one"]
    assert [f["test"] for f in found] == ["tests/test_library.py::test_a"], found
    suite(root, cluster, db, "fixed", dbfile)
    check = h.run([h.PGSCOPE_BIN, "check", "--db", dbfile, "--baseline", saved])
    assert check.rc == 0, check
    diff = h.run([h.PGSCOPE_BIN, "diff", "--db", dbfile]).stdout
    assert "1 finding fixed" in diff, diff
