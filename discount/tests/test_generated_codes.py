"""Generated single-use codes: made in bulk, unguessable, each usable by one cart."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from discount.models import GENERATED_ALPHABET, DiscountCode, DiscountReservation
from discount.services import (
    discount_consume_reservation,
    discount_create,
    discount_generate_codes,
    discount_release_expired_reservations,
)
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db

SHAPE = re.compile(
    rf"XMAS-[{GENERATED_ALPHABET}]{{5}}-[{GENERATED_ALPHABET}]{{5}}-[{GENERATED_ALPHABET}]{{3}}"
)


def apply(client, cart, code):
    return client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})


def test_codes_are_made_in_bulk_distinct_and_in_the_unambiguous_alphabet():
    discount = DiscountFactory(code="XMAS")

    codes = [
        c.code for c in discount_generate_codes(discount=discount, count=2000, prefix="xmas-")
    ]

    assert len(set(codes)) == 2000
    assert all(SHAPE.fullmatch(code) for code in codes)
    assert not set("01OIL") & set("".join(code[5:] for code in codes))
    assert discount.codes.count() == 2000


def test_as_many_codes_as_the_maximum_may_be_generated_at_once(monkeypatch):
    from discount import services

    monkeypatch.setattr(services, "MAX_GENERATED_CODES", 3)  # 100,000 rows take too long
    assert len(discount_generate_codes(discount=DiscountFactory(), count=3)) == 3
    with pytest.raises(ValidationError):
        discount_generate_codes(discount=DiscountFactory(), count=4)


@pytest.mark.parametrize(
    ("count", "prefix", "field"),
    [(0, "", "count"), (100_001, "", "count"), (1, "-X", "prefix"), (1, "A" * 33, "prefix")],
)
def test_counts_and_prefixes_out_of_bounds_are_refused(count, prefix, field):
    with pytest.raises(ValidationError) as caught:
        discount_generate_codes(discount=DiscountFactory(), count=count, prefix=prefix)
    assert field in caught.value.message_dict
    expected = "out_of_range" if field == "count" else "invalid_prefix"
    assert caught.value.error_dict[field][0].code == expected  # the codes README lists
    assert not DiscountCode.objects.exists()


def test_a_prefix_of_the_longest_length_allowed_is_taken():
    (code,) = discount_generate_codes(discount=DiscountFactory(), count=1, prefix="A" * 32)
    assert code.code.startswith("A" * 32)


def test_a_code_drawn_twice_in_one_batch_is_made_once_and_another_drawn(monkeypatch):
    from discount import services

    draws = iter(["X-SAME", "X-SAME", "X-SAME", "X-OTHER", "X-THIRD", "X-FOURTH"])
    monkeypatch.setattr(services, "generate_code", lambda prefix: next(draws))

    made = discount_generate_codes(discount=DiscountFactory(), count=3)

    assert sorted(code.code for code in made) == ["X-OTHER", "X-SAME", "X-THIRD"]
    assert DiscountCode.objects.count() == 3


def test_a_generated_code_applies_its_discount_once(api_client):
    discount = DiscountFactory(code="XMAS", value=Decimal("5"))
    [code] = discount_generate_codes(discount=discount, count=1, prefix="XMAS-")
    first, second = CartFactory(), CartFactory()

    response = apply(api_client, first, code.code.lower())

    data = response_json(response)
    assert response.status_code == 200, data
    assert data["discount"] == {"id": discount.pk, "code": code.code, "kind": "amount"}
    assert data["total"] == Decimal("15.00")
    assert DiscountReservation.objects.get().code == code
    refused = apply(api_client, second, code.code)
    assert (refused.status_code, error_of(refused)["code"]) == (400, "discount_code_used")


def test_a_used_code_stays_used_and_a_released_one_is_free_again(api_client):
    discount = DiscountFactory(code="XMAS")
    [code] = discount_generate_codes(discount=discount, count=1)
    cart = CartFactory()
    apply(api_client, cart, code.code)
    DiscountReservation.objects.update(expires=timezone.now() - timedelta(seconds=1))
    discount_release_expired_reservations()

    other = CartFactory()
    assert apply(api_client, other, code.code).status_code == 200
    other.refresh_from_db()
    discount_consume_reservation(cart=other)

    assert error_of(apply(api_client, CartFactory(), code.code))["code"] == "discount_code_used"


def test_a_discount_with_generated_codes_is_not_usable_by_its_own_code(api_client):
    discount = DiscountFactory(code="XMAS")
    discount_generate_codes(discount=discount, count=1)

    assert error_of(apply(api_client, CartFactory(), "XMAS"))["code"] == "discount_not_found"


def test_a_new_code_may_not_be_a_generated_one():
    [code] = discount_generate_codes(discount=DiscountFactory(), count=1, prefix="A")

    with pytest.raises(ValidationError) as caught:
        discount_create(code=code.code.lower(), value=Decimal("1"))
    assert caught.value.error_dict["code"][0].code == "code_taken"


def test_staff_generate_codes_through_the_api(staff_client):
    discount = DiscountFactory(code="XMAS")

    response = staff_client.post(
        f"/api/discount/{discount.pk}/codes/", {"count": 3, "prefix": "XMAS-"}, format="json"
    )

    data = response_json(response)
    assert response.status_code == 201, data
    assert (data["discount"], data["count"], len(data["codes"])) == (discount.pk, 3, 3)
    assert set(data["codes"]) == set(discount.codes.values_list("code", flat=True))
    bad = staff_client.post(f"/api/discount/{discount.pk}/codes/", {"count": 0}, format="json")
    assert (bad.status_code, error_of(bad)["field"]) == (400, "count")


def test_anonymous_callers_cannot_generate_codes_in_production(api_client, prod_access):
    discount = DiscountFactory()

    response = api_client.post(f"/api/discount/{discount.pk}/codes/", {"count": 1})

    assert response.status_code in (401, 403)
    assert not DiscountCode.objects.exists()


def test_the_admin_lists_codes_and_exports_them_as_csv(admin_client, api_client):
    discount = DiscountFactory(code="XMAS")
    codes = discount_generate_codes(discount=discount, count=3, prefix="X-")
    apply(api_client, CartFactory(), codes[0].code)

    listing = admin_client.get("/admin/discount/discountcode/").content.decode()
    assert codes[1].code in listing
    assert "reserved" in listing

    response = admin_client.post(
        "/admin/discount/discountcode/",
        {"action": "export_codes_csv", "_selected_action": [c.pk for c in codes]},
    )

    assert response["Content-Type"].startswith("text/csv")
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert rows[0] == "code,discount,status,created"
    statuses = {row.split(",")[0]: row.split(",")[2] for row in rows[1:]}
    assert statuses == {
        codes[0].code: "reserved",
        codes[1].code: "available",
        codes[2].code: "available",
    }


def test_a_discount_no_cart_used_is_deleted_with_its_codes():
    from discount.services import discount_delete

    discount = DiscountFactory(code="TYPO")
    discount_generate_codes(discount=discount, count=3)

    discount_delete(discount=discount)

    assert not DiscountCode.objects.exists()


def test_a_discount_whose_code_a_cart_used_stays(api_client):
    from discount.errors import DiscountInUseError
    from discount.services import discount_delete

    discount = DiscountFactory(code="USED")
    [code] = discount_generate_codes(discount=discount, count=1)
    apply(api_client, CartFactory(), code.code)

    with pytest.raises(DiscountInUseError):
        discount_delete(discount=discount)


def test_a_batch_that_draws_an_existing_code_is_drawn_again(monkeypatch):
    from discount import services

    discount = DiscountFactory()
    DiscountCode.objects.create(discount=discount, code="X-TAKEN")
    draws = iter(["X-TAKEN", "X-NEW1", "X-NEW2", "X-NEW3"])
    monkeypatch.setattr(services, "generate_code", lambda prefix: next(draws))

    made = discount_generate_codes(discount=discount, count=2)

    assert sorted(code.code for code in made) == ["X-NEW2", "X-NEW3"]
    assert discount.codes.count() == 3
