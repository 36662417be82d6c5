"""The library scenarios with Django's ORM (Debian's python3-django, psycopg2), one per run:
django_app.py HOST PORT DBNAME SCENARIO. Tables are Django's defaults (library_author...)."""

import sys
import time

import django
from django.conf import settings

HOST, PORT, DBNAME, SCENARIO = sys.argv[1:5]
settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "HOST": HOST,
                           "PORT": PORT, "NAME": DBNAME, "USER": "postgres"}},
    INSTALLED_APPS=[], USE_TZ=False)
django.setup()

from django.db import connection, models, transaction  # noqa: E402


class LibraryModel(models.Model):
    """The app of every model: "library", so tables are library_author..."""

    class Meta:
        abstract = True
        app_label = "library"


class Author(LibraryModel):
    name = models.TextField()


class Book(LibraryModel):
    title = models.TextField()
    shelf = models.TextField()
    author = models.ForeignKey(Author, on_delete=models.CASCADE)


class Review(LibraryModel):
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    stars = models.IntegerField()


class Tag(LibraryModel):
    name = models.TextField()


class Setting(LibraryModel):
    key = models.TextField()
    value = models.TextField()


class Post(LibraryModel):
    title = models.TextField()


def belongs_to(books=None):
    for b in books if books is not None else Book.objects.filter(shelf="a").order_by("id"):
        b.author.name


def scenario():
    if SCENARIO == "belongs_to":
        belongs_to()
    elif SCENARIO == "belongs_to_eager":
        belongs_to(Book.objects.filter(shelf="a").order_by("id").select_related("author"))
    elif SCENARIO in ("has_many", "has_many_eager"):
        authors = Author.objects.filter(id__lte=8).order_by("id")
        if SCENARIO == "has_many_eager":
            authors = authors.prefetch_related("book_set")
        for a in authors:
            list(a.book_set.all())
    elif SCENARIO in ("nested", "nested_eager"):
        authors = Author.objects.filter(id__lte=6).order_by("id")
        if SCENARIO == "nested_eager":
            authors = authors.prefetch_related("book_set__review_set")
        for a in authors:
            for b in a.book_set.all():
                list(b.review_set.all())
    elif SCENARIO == "duplicate_lookup":
        for _ in range(6):
            Setting.objects.get(key="theme").value
    elif SCENARIO == "keyset":
        last = 0
        while True:
            page = list(Book.objects.filter(id__gt=last).order_by("id")[:5])
            if not page:
                break
            last = page[-1].id
    elif SCENARIO == "app_ids":
        list(Tag.objects.order_by("id"))
        for i in (3, 9, 14, 20, 27, 33, 35, 37):
            Book.objects.get(id=i)
    elif SCENARIO == "repeated_fk":
        belongs_to(Book.objects.filter(shelf="b").order_by("id"))
    elif SCENARIO == "ran_before":
        Author.objects.get(id=7)
        belongs_to()
    elif SCENARIO == "literal_limit":
        for b in Book.objects.filter(shelf="a").order_by("id"):
            Author.objects.extra(where=["id = %d" % b.author_id]).order_by("id").first()
    elif SCENARIO == "insert_loop":
        for i in range(30):
            Post.objects.create(title="post %d" % i)
    elif SCENARIO == "idle_requests":
        books = list(Book.objects.filter(shelf="a").order_by("id"))
        belongs_to(books[:3])
        time.sleep(0.5)
        belongs_to(books[3:6])
    elif SCENARIO == "test_class":
        # Django's TestCase: one transaction around the class; each test tagged (sqlcommenter)
        with transaction.atomic():
            with connection.execute_wrapper(tagged("test_one")):
                Author.objects.get(id=7)
            with connection.execute_wrapper(tagged("test_two")):
                belongs_to()
    else:
        raise SystemExit("unknown scenario " + SCENARIO)


def tagged(test):
    def wrapper(execute, sql, params, many, context):
        return execute(sql + " /*test='%s'*/" % test, params, many, context)
    return wrapper


scenario()
connection.close()
