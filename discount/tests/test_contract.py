"""The tutorial's contract for discounts, called exactly as the tutorial's tests call it."""

import pytest
from django.utils.timezone import now, timedelta

from discount.models import Discount
from discount.serializers import ApplyDiscountSerializer, DiscountSerializer

pytestmark = pytest.mark.django_db


def test_discount_saves_with_defaults_for_added_fields():
    discount = Discount(
        code="DIS20", value=5, description="Some discount", ended=now() + timedelta(days=2)
    )
    discount.save()

    discount.refresh_from_db()
    assert discount.code == "DIS20"
    assert discount.value == 5
    assert discount.created is not None
    assert discount.kind == "amount"
    assert discount.active is True
    assert discount.times_used == 0


def test_discount_serializer_validated_data_equals_input():
    data = {
        "code": "DIS21",
        "value": 5,
        "description": "Some lines",
        "ended": now() + timedelta(days=2),
    }
    serializer = DiscountSerializer(data=data)

    assert serializer.is_valid(raise_exception=True)
    assert serializer.validated_data == data


def test_apply_discount_serializer_accepts_active_code_on_its_own():
    Discount.objects.create(code="DIS20", value=5, ended=now() + timedelta(days=2))

    assert ApplyDiscountSerializer(data={"code": "DIS20"}).is_valid()


def test_apply_discount_serializer_refuses_expired_code():
    expired = Discount.objects.create(code="OLD", value=5, ended=now() + timedelta(days=2))
    Discount.objects.filter(pk=expired.pk).update(ended=now() - timedelta(seconds=1))

    assert not ApplyDiscountSerializer(data={"code": "OLD"}).is_valid()


def test_apply_discount_serializer_refuses_unknown_code():
    assert not ApplyDiscountSerializer(data={"code": "NOPE"}).is_valid()


def test_post_discount_creates_it(client):
    response = client.post(
        "/api/discount/",
        {
            "code": "DIS21",
            "value": 5,
            "description": "Some lines",
            "ended": (now() + timedelta(days=2)),
        },
        content_type="application/json",
    )

    assert response.status_code == 201
    assert response.data["code"] == "DIS21"
    assert {"id", "code", "value", "description", "created", "ended"} <= set(response.data)
    assert Discount.objects.count() == 1


def test_get_discount_list_and_detail(client):
    created = client.post(
        "/api/discount/",
        {"code": "DIS21", "value": 5, "description": "x", "ended": now() + timedelta(days=2)},
        content_type="application/json",
    )

    assert client.get("/api/discount/").status_code == 200
    assert client.get(f"/api/discount/{created.data['id']}/").status_code == 200
