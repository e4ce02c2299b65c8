"""The SQLite backend rewrites each statement's placeholders once, not on every run."""

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper

from common.sqlite import base
from discount.models import Discount
from discount.tests.factories import DiscountFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite backend"),
]

STATEMENTS = [
    "SELECT 1 WHERE 'a' = %s",
    "SELECT %s, %s LIKE '50%%'",
    "SELECT '%%s', %s",  # a literal %s: no placeholder
    "SELECT 1",
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_placeholders_are_rewritten_as_django_rewrites_them(sql):
    with connection.cursor() as cursor:
        ours = cursor.cursor.convert_query(sql)
        again = cursor.cursor.convert_query(sql)
    django = SQLiteCursorWrapper(connection.connection).convert_query(sql)

    assert ours == again == django
    assert isinstance(cursor.cursor, base.CursorWrapper)


def test_a_statement_is_rewritten_once():
    sql = f"SELECT %s AS once_{id(object())}"
    with connection.cursor() as cursor:
        first = cursor.cursor.convert_query(sql)
        second = cursor.cursor.convert_query(sql)

    assert first == "SELECT ? AS " + sql.split(" AS ")[1]
    assert second is first  # kept, not rewritten again


def test_long_statements_and_statements_without_placeholders_are_not_kept():
    long = "SELECT %s" + ", %s" * 5000  # a bulk insert's or a long IN list's size
    with connection.cursor() as cursor:
        assert cursor.cursor.convert_query(long) == "SELECT ?" + ", ?" * 5000
        assert cursor.cursor.convert_query("SELECT 2") == "SELECT 2"

    assert long not in base._CONVERTED
    assert "SELECT 2" not in base._CONVERTED


def test_the_statements_kept_are_bounded():
    with connection.cursor() as cursor:
        for n in range(base._CONVERTED_MAX + 10):
            cursor.cursor.convert_query(f"SELECT %s AS n{n}")

    assert len(base._CONVERTED) <= base._CONVERTED_MAX


def test_named_parameters_are_django_s():
    with connection.cursor() as cursor:
        cursor.execute("SELECT %(a)s + %(b)s", {"a": 2, "b": 3})
        assert cursor.fetchone() == (5,)


def test_queries_answer_with_the_rewritten_statements():
    DiscountFactory(code="PLACE50", description="50% off")

    assert Discount.objects.filter(description__contains="50%").get().code == "PLACE50"
    assert not Discount.objects.filter(description__contains="50%%").exists()
