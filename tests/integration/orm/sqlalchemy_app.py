"""The library scenarios with SQLAlchemy 1.4's ORM (Debian's python3-sqlalchemy, psycopg2), one
per run: sqlalchemy_app.py HOST PORT DBNAME SCENARIO. Lazy loading is the default, as in a new
application."""

import sys
import time

from sqlalchemy import Column, ForeignKey, Integer, Text, create_engine, event, select, text
from sqlalchemy.orm import Session, declarative_base, joinedload, relationship, selectinload

HOST, PORT, DBNAME, SCENARIO = sys.argv[1:5]
engine = create_engine("postgresql+psycopg2://postgres@%s:%s/%s" % (HOST, PORT, DBNAME))
Base = declarative_base()


class Author(Base):
    __tablename__ = "authors"
    id = Column(Integer, primary_key=True)
    name = Column(Text)
    books = relationship("Book", back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "books"
    id = Column(Integer, primary_key=True)
    title = Column(Text)
    shelf = Column(Text)
    author_id = Column(Integer, ForeignKey("authors.id"))
    author = relationship("Author", back_populates="books")
    reviews = relationship("Review", order_by="Review.id")


class Review(Base):
    __tablename__ = "reviews"
    id = Column(Integer, primary_key=True)
    book_id = Column(Integer, ForeignKey("books.id"))
    stars = Column(Integer)


class Tag(Base):
    __tablename__ = "tags"
    id = Column(Integer, primary_key=True)
    name = Column(Text)


class Setting(Base):
    __tablename__ = "settings"
    id = Column(Integer, primary_key=True)
    key = Column(Text)
    value = Column(Text)


class Post(Base):
    __tablename__ = "posts"
    id = Column(Integer, primary_key=True)
    title = Column(Text)


TEST = {"name": None}


@event.listens_for(engine, "before_cursor_execute", retval=True)
def sqlcommenter(conn, cursor, statement, parameters, context, executemany):
    if TEST["name"]:
        statement += " /*test='%s'*/" % TEST["name"]
    return statement, parameters


def shelf(s, name, *options):
    return s.execute(select(Book).where(Book.shelf == name).order_by(Book.id)
                     .options(*options)).scalars().all()


def belongs_to(books):
    for b in books:
        b.author.name


def scenario(s):
    if SCENARIO == "belongs_to":
        belongs_to(shelf(s, "a"))
    elif SCENARIO == "belongs_to_eager":
        belongs_to(shelf(s, "a", joinedload(Book.author)))
    elif SCENARIO in ("has_many", "has_many_eager"):
        q = select(Author).where(Author.id <= 8).order_by(Author.id)
        if SCENARIO == "has_many_eager":
            q = q.options(selectinload(Author.books))
        for a in s.execute(q).scalars().all():
            list(a.books)
    elif SCENARIO in ("nested", "nested_eager"):
        q = select(Author).where(Author.id <= 6).order_by(Author.id)
        if SCENARIO == "nested_eager":
            q = q.options(selectinload(Author.books).selectinload(Book.reviews))
        for a in s.execute(q).scalars().all():
            for b in a.books:
                list(b.reviews)
    elif SCENARIO == "duplicate_lookup":
        for _ in range(6):
            s.execute(select(Setting).where(Setting.key == "theme")).scalars().first()
    elif SCENARIO == "keyset":
        last = 0
        while True:
            page = s.execute(select(Book).where(Book.id > last).order_by(Book.id).limit(5)) \
                .scalars().all()
            if not page:
                break
            last = page[-1].id
    elif SCENARIO == "app_ids":
        s.execute(select(Tag).order_by(Tag.id)).scalars().all()
        for i in (3, 9, 14, 20, 27, 33, 35, 37):
            s.execute(select(Book).where(Book.id == i)).scalars().one()
    elif SCENARIO == "repeated_fk":
        belongs_to(shelf(s, "b"))
    elif SCENARIO == "ran_before":
        s.get(Author, 7)
        belongs_to(shelf(s, "a"))
    elif SCENARIO == "literal_limit":
        for b in shelf(s, "a"):
            s.execute(select(Author).where(text("id = %d" % b.author_id)).order_by(Author.id)
                      .limit(1)).scalars().first()
    elif SCENARIO == "insert_loop":
        for i in range(30):
            s.add(Post(title="post %d" % i))
            s.flush()
    elif SCENARIO == "idle_requests":
        books = shelf(s, "a")
        s.commit()
        belongs_to(books[:3])
        s.commit()
        time.sleep(0.5)
        belongs_to(books[3:6])
    elif SCENARIO == "test_class":
        TEST["name"] = "test_one"
        s.get(Author, 7)
        TEST["name"] = "test_two"
        belongs_to(shelf(s, "a"))
        TEST["name"] = None
    else:
        raise SystemExit("unknown scenario " + SCENARIO)


with Session(engine) as session:
    scenario(session)
    session.rollback() if SCENARIO == "test_class" else session.commit()
engine.dispose()
