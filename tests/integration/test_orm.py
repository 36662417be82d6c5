"""The ORM matrix: the same library scenarios written with Django, SQLAlchemy, ActiveRecord and
Sequelize, each scenario in a pgscope session of its own, and exactly the findings it should
give: every loop found and proven, nothing else reported. Every JOIN and batched query a fix
prints is run through EXPLAIN on the scratch database."""

import json
import os
import re
import shutil

import harness as h

ORM_DIR = os.path.join(h.HERE, "orm")
NODE_DIR = os.path.join(h.HERE, "node")

# Table and column names as each ORM spells them by default.
NAMES = {
    "django": dict(author="library_author", book="library_book", review="library_review",
                   tag="library_tag", setting="library_setting", post="library_post",
                   author_id="author_id", book_id="book_id"),
    "plain": dict(author="authors", book="books", review="reviews", tag="tags",
                  setting="settings", post="posts", author_id="author_id", book_id="book_id"),
    "sequelize": dict(author='"Authors"', book='"Books"', review='"Reviews"', tag='"Tags"',
                      setting='"Settings"', post='"Posts"', author_id='"AuthorId"',
                      book_id='"BookId"'),
}

# The library: authors 1..20; books 1..20 on shelf a, each of its own author (21 - id); books
# 21..38 on shelf b, three each of authors 1..6 in a mixed order; two reviews per shelf-b book.
SCHEMA = """
CREATE TABLE {author} (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE {book} (id serial PRIMARY KEY, title text NOT NULL, shelf text NOT NULL,
                     {author_id} int NOT NULL REFERENCES {author});
CREATE TABLE {review} (id serial PRIMARY KEY, {book_id} int NOT NULL REFERENCES {book},
                       stars int NOT NULL);
CREATE TABLE {tag} (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE {setting} (id serial PRIMARY KEY, key text NOT NULL, value text NOT NULL);
CREATE TABLE {post} (id serial PRIMARY KEY, title text NOT NULL);
INSERT INTO {author} (name) SELECT 'author ' || g FROM generate_series(1, 20) g;
INSERT INTO {book} (title, shelf, {author_id})
    SELECT 'book ' || g, 'a', 21 - g FROM generate_series(1, 20) g;
INSERT INTO {book} (title, shelf, {author_id})
    SELECT 'book ' || g, 'b', 1 + ((g - 21) * 5) % 6 FROM generate_series(21, 38) g;
INSERT INTO {review} ({book_id}, stars) SELECT b, s FROM generate_series(21, 38) b,
    generate_series(1, 2) s ORDER BY b, s;
INSERT INTO {tag} (name) SELECT 'tag ' || g FROM generate_series(1, 50) g;
INSERT INTO {setting} (key, value) VALUES ('theme', 'dark');
"""

ORMS = {
    "django": dict(style="django", cmd=["/usr/bin/python3", "django_app.py"],
                   belongs='Book.objects.select_related("author")',
                   many='Author.objects.prefetch_related("book_set")'),
    "sqlalchemy": dict(style="plain", cmd=["/usr/bin/python3", "sqlalchemy_app.py"],
                       belongs="select(Book).options(joinedload(Book.author))",
                       many="select(Author).options(selectinload(Author.books))"),
    "activerecord": dict(style="plain", cmd=["ruby", "activerecord_app.rb"],
                         belongs="Book.includes(:author)", many="Author.includes(:books)"),
    "sequelize": dict(style="sequelize", cmd=["node", "sequelize_app.js"],
                      belongs="Book.findAll({ include: Author })",
                      many="Author.findAll({ include: Book })"),
}

# scenario: (proven N+1 loops, duplicates, insert loops, the ORM fix expected of the first loop)
SCENARIOS = {
    "belongs_to": (1, 0, 0, "belongs"),
    "belongs_to_eager": (0, 0, 0, None),
    "has_many": (1, 0, 0, "many"),
    "has_many_eager": (0, 0, 0, None),
    "nested": (2, 0, 0, None),
    "nested_eager": (0, 0, 0, None),
    "duplicate_lookup": (0, 1, 0, None),
    "keyset": (0, 0, 0, None),
    "app_ids": (0, 0, 0, None),
    "repeated_fk": (1, 0, 0, "belongs"),
    "ran_before": (1, 0, 0, "belongs"),
    "literal_limit": (1, 0, 0, None),
    "insert_loop": (0, 0, 1, None),
    "idle_requests": (0, 0, 0, None),
    "test_class": (1, 0, 0, "belongs"),
}


def orm_ready(orm):
    """What is missing to run an ORM's scenarios, or None (contrib/install-deps.sh installs it)."""
    if orm == "sequelize":
        ok = shutil.which("node") and os.path.isdir(
            os.path.join(NODE_DIR, "node_modules", "sequelize"))
        return None if ok else "node and the pinned Sequelize"
    if orm == "activerecord":
        ok = h.run(["ruby", "-e", "require 'active_record'; require 'pg'"]).rc == 0 \
            if shutil.which("ruby") else False
        return None if ok else "ruby-activerecord and ruby-pg"
    module = "django" if orm == "django" else "sqlalchemy"
    ok = h.run(["/usr/bin/python3", "-c", "import psycopg2, " + module]).rc == 0
    return None if ok else "python3-%s" % module


def library(orm):
    """The shared cluster with the library database of an ORM's naming style."""
    style = ORMS[orm]["style"]
    db = "library_" + style
    cluster = h.shared_cluster()
    if not cluster.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % db).strip():
        cluster.psql("CREATE DATABASE %s" % db)
        cluster.psql(SCHEMA.format(**NAMES[style]), dbname=db)
    return cluster, db


def session(orm, scenario):
    """One pgscope session around one scenario: its JSON report."""
    cluster, db = library(orm)
    px = h.proxy(cluster)
    cmd = ORMS[orm]["cmd"]
    res = h.run(cmd[:-1] + [os.path.join(ORM_DIR, cmd[-1]), px.host, str(px.port), db,
                            scenario], timeout=120)
    assert res.rc == 0, res
    assert px.stop() == 0, px.log_text()
    rep = h.run([h.PGSCOPE_BIN, "report", "--db", px.db, "--format", "json"])
    assert rep.rc == 0, rep
    return cluster, db, json.loads(rep.stdout)


# The SQL lines of a fix: its indented statements.
SQL_LINE = re.compile(r"^ {5}(SELECT .*)$", re.M)


def explain_fix(cluster, db, sql):
    """PREPARE the fix's statement and EXPLAIN it with NULL for every parameter (psql stops at
    the first error: an invalid fix fails the test)."""
    n = len(set(re.findall(r"\$(\d+)", sql)))
    args = "(%s)" % ", ".join(["NULL"] * n) if n else ""
    out = cluster.psql("PREPARE fix AS %s; EXPLAIN EXECUTE fix%s; DEALLOCATE fix;" % (sql, args),
                       dbname=db)
    assert "Scan" in out or "Result" in out or "Join" in out or "Loop" in out, (sql, out)


def check(orm, scenario):
    loops, dups, inserts, fix = SCENARIOS[scenario]
    cluster, db, rep = session(orm, scenario)
    found = rep["n_plus_one"]
    kinds = [f["kind"] for f in found]
    what = json.dumps(found, indent=1)[:6000]
    explained = 0
    assert kinds.count("n_plus_one") == loops, what
    assert kinds.count("duplicate") == dups, what
    assert kinds.count("batch_insert") == inserts, what
    for f in found:
        if f["kind"] == "n_plus_one":
            assert f["confirmed"] is True, what
            assert 0 < f["chance"] <= 0.001, what
            assert f["orm"] == orm, what
        for sql in SQL_LINE.findall(f["suggestion"] or ""):
            explain_fix(cluster, db, sql)
            explained += 1
        if f["kind"] == "n_plus_one":
            assert explained >= 2, ("a proven loop prints a batched query and a JOIN", what)
    if fix:
        assert ORMS[orm][fix] in found[0]["suggestion"], found[0]["suggestion"]
    if scenario == "test_class":  # the finding names the test it was seen in
        assert found[0]["test"] == "test_two", what
    if inserts:
        f = found[0]
        assert f["max_n"] == 30 and f["orm"] == orm, what
    h.note("%s: %s%s" % (scenario, ", ".join(kinds) or "nothing",
                          " (%d fixes explained)" % explained if explained else ""))


def matrix(orm):
    missing = orm_ready(orm)
    assert missing is None, "%s is not installed: run contrib/install-deps.sh" % missing
    failures = []
    for scenario in SCENARIOS:
        try:
            check(orm, scenario)
        except AssertionError as e:
            failures.append("%s: %s" % (scenario, str(e)[:3000]))
    assert not failures, "\n\n".join(failures)


def test_django_matrix():
    matrix("django")


def test_sqlalchemy_matrix():
    matrix("sqlalchemy")


def test_activerecord_matrix():
    matrix("activerecord")


def test_sequelize_matrix():
    matrix("sequelize")
