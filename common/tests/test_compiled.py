"""`CompiledQuery`: an ORM query compiled once, run with new values."""

import uuid
from datetime import datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from cart.models import Cart
from cart.tests.factories import CartFactory
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


def test_a_uuid_is_a_parameter_as_the_orm_sends_it():
    first, second = CartFactory(), CartFactory()
    by_id = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk), pk=uuid.UUID)

    assert [c.pk for c in by_id.run(pk=first.pk)] == [first.pk]
    assert [c.pk for c in by_id.run(pk=second.pk)] == [second.pk]
    assert by_id.run(pk=uuid.uuid4()) == []
    assert [c.pk for c in by_id.run(pk=str(first.pk))] == [first.pk]


def test_only_text_moments_and_uuids_are_parameters():
    with pytest.raises(ImproperlyConfigured, match="limit"):
        CompiledQuery(lambda limit: Discount.objects.filter(usage_limit=limit), limit=int)
    assert CompiledQuery(lambda at: Discount.objects.filter(created__lt=at), at=datetime)
    assert CompiledQuery(lambda pk: Cart.objects.filter(pk=pk), pk=uuid.UUID)
