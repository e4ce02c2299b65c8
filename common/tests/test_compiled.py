"""`CompiledQuery`: an ORM query compiled once, run with new values."""

from datetime import datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from common.compiled import CompiledQuery
from discount.models import Discount
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def test_a_query_runs_with_each_calls_values_as_the_orm_would():
    first, second = DiscountFactory(code="FIRST"), DiscountFactory(code="SECOND")
    by_code = CompiledQuery(lambda code: Discount.objects.filter(code=code), code=str)

    assert [d.pk for d in by_code.run(code="FIRST")] == [first.pk]
    assert [d.pk for d in by_code.run(code="SECOND")] == [second.pk]
    assert by_code.run(code="THIRD") == []


def test_a_builder_that_changes_its_argument_is_refused_rather_than_run_wrong():
    upper = CompiledQuery(lambda code: Discount.objects.filter(code=code.upper()), code=str)

    with pytest.raises(ImproperlyConfigured, match="code"):
        upper.run(code="first")


def test_only_text_and_moments_are_parameters():
    with pytest.raises(ImproperlyConfigured, match="limit"):
        CompiledQuery(lambda limit: Discount.objects.filter(usage_limit=limit), limit=int)
    assert CompiledQuery(lambda at: Discount.objects.filter(created__lt=at), at=datetime)
