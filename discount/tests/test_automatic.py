"""Automatic promotions: applied by themselves, the best one wins, a better code
replaces one."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import Cart
from cart.tests.factories import itemized_cart
from common.testing import error_of, response_json
from discount.models import DiscountReservation
from discount.tests.factories import DiscountFactory, PercentDiscountFactory

pytestmark = pytest.mark.django_db


def create(client, **body):
    return response_json(client.post("/api/cart/", body, format="json"))


def apply(client, cart_id, code):
    return client.post(f"/api/cart/{cart_id}/apply_discount/", {"code": code})


def test_no_promotion_leaves_the_tutorials_cart_as_it_was(api_client):
    data = create(api_client, total=20, currency="USD", items_number=5)

    assert (data["discount"], data["total"]) == (None, Decimal("20.00"))


def test_the_best_fitting_promotion_applies_by_itself_and_reserves_a_use(api_client):
    DiscountFactory(code="AUTO-2", value=Decimal("2"), automatic=True)
    best = PercentDiscountFactory(code="AUTO-10PC", value=Decimal("10"), automatic=True)
    DiscountFactory(code="AUTO-BIG", value=Decimal("50"), automatic=True, currency="EUR")
    DiscountFactory(code="AUTO-OFF", value=Decimal("9"), automatic=True, active=False)

    data = create(api_client, total=30, currency="USD", items_number=5)

    assert data["discount"]["code"] == "AUTO-10PC"
    assert (data["amount_discounted"], data["total"]) == (Decimal("3.00"), Decimal("27.00"))
    assert DiscountReservation.objects.get().discount == best


def test_a_promotion_follows_the_lines_and_may_give_way_to_a_better_one(api_client):
    DiscountFactory(code="AUTO-TEA", value=Decimal("4"), automatic=True, skus=["TEA"])
    DiscountFactory(
        code="AUTO-BIG",
        value=Decimal("6"),
        automatic=True,
        currency="USD",
        min_cart_total=Decimal("30"),
    )
    cart = itemized_cart(("TEA", 1, "5"))
    assert Cart.objects.get(pk=cart.pk).discount.code == "AUTO-TEA"

    response = api_client.post(
        f"/api/cart/{cart.pk}/lines/",
        {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 30},
        format="json",
    )

    data = response_json(response)
    assert data["cart"]["discount"]["code"] == "AUTO-BIG"
    assert data["cart"]["amount_discounted"] == Decimal("6.00")
    assert DiscountReservation.objects.filter(status="reserved").count() == 1


def test_a_typed_code_replaces_the_promotion_when_it_gives_more(api_client):
    DiscountFactory(code="AUTO-2", value=Decimal("2"), automatic=True)
    DiscountFactory(code="FIVE", value=Decimal("5"))
    DiscountFactory(code="ONE", value=Decimal("1"))
    cart = create(api_client, total=20, currency="USD", items_number=1)

    worse = apply(api_client, cart["id"], "ONE")
    assert (worse.status_code, error_of(worse)["code"]) == (400, "discount_not_better")
    assert Cart.objects.get(pk=cart["id"]).discount.code == "AUTO-2"

    better = response_json(apply(api_client, cart["id"], "FIVE"))
    assert (better["discount"]["code"], better["total"]) == ("FIVE", Decimal("15.00"))
    statuses = dict(DiscountReservation.objects.values_list("discount__code", "status"))
    assert statuses == {"AUTO-2": "released", "FIVE": "reserved"}
    again = apply(api_client, cart["id"], "FIVE")
    assert error_of(again)["code"] == "discount_already_applied"


def test_a_promotions_code_cannot_be_typed(api_client):
    DiscountFactory(code="AUTO-2", value=Decimal("2"), automatic=True, currency="EUR")
    cart = create(api_client, total=20, currency="USD", items_number=1)

    assert error_of(apply(api_client, cart["id"], "AUTO-2"))["code"] == "discount_not_found"


def test_a_used_up_promotion_gives_way_to_the_next_best(api_client):
    DiscountFactory(code="AUTO-5", value=Decimal("5"), automatic=True, usage_limit=1)
    DiscountFactory(code="AUTO-1", value=Decimal("1"), automatic=True)

    first = create(api_client, total=20, currency="USD", items_number=1)
    second = create(api_client, total=20, currency="USD", items_number=1)

    assert (first["discount"]["code"], second["discount"]["code"]) == ("AUTO-5", "AUTO-1")


def test_a_typed_code_taking_off_only_as_much_as_the_promotion_does_not_replace_it(api_client):
    DiscountFactory(code="AUTO-2", value=Decimal("2"), automatic=True)
    DiscountFactory(code="TWO", value=Decimal("2"))
    cart = create(api_client, total=20, currency="USD", items_number=1)

    same = apply(api_client, cart["id"], "TWO")

    assert (same.status_code, error_of(same)["code"]) == (400, "discount_not_better")
    assert Cart.objects.get(pk=cart["id"]).discount.code == "AUTO-2"


def test_a_code_replacing_a_promotion_applied_twice_gives_its_live_use_back(api_client):
    """AUTO-2 was applied, expired and released, and applied again on a line change: the
    code that replaces it releases that live use, not the one released before."""
    from discount.services import discount_release_expired_reservations

    promotion = DiscountFactory(code="AUTO-2", value=Decimal("2"), automatic=True)
    DiscountFactory(code="FIVE", value=Decimal("5"))
    cart = itemized_cart(("TEA", 1, "20"))
    DiscountReservation.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert discount_release_expired_reservations() == 1
    line = {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 5}
    assert api_client.post(f"/api/cart/{cart.pk}/lines/", line, format="json").status_code < 300
    assert Cart.objects.get(pk=cart.pk).discount == promotion

    applied = response_json(apply(api_client, cart.pk, "FIVE"))

    assert (applied["discount"]["code"], applied["total"]) == ("FIVE", Decimal("20.00"))
    live = DiscountReservation.objects.filter(status="reserved")
    assert list(live.values_list("discount__code", flat=True)) == ["FIVE"]


@pytest.mark.parametrize("unrelated", [False, True], ids=["alone", "beside_another"])
def test_a_held_promotion_switched_off_since_stays_with_its_cart(api_client, unrelated):
    # The cart holds its use (the switch-off is not asked again, as for a code); it was
    # dropped, unannounced, only when no other promotion was on offer.
    held = PercentDiscountFactory(code="AUTO-10PC", value=Decimal("10"), automatic=True)
    if unrelated:
        PercentDiscountFactory(code="AUTO-5PC", value=Decimal("5"), automatic=True)
    cart = itemized_cart(("TEA", 1, "100.00"))
    assert Cart.objects.get(pk=cart.pk).discount == held
    held.active = False
    held.save(update_fields=["active"])

    data = response_json(
        api_client.post(
            f"/api/cart/{cart.pk}/lines/",
            {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "100.00"},
            format="json",
        )
    )

    assert data["cart"]["discount"]["code"] == "AUTO-10PC"
    assert (data["cart"]["amount_discounted"], data["cart"]["total"]) == (
        Decimal("20.00"),
        Decimal("180.00"),
    )
    assert data["discount_removed"] is None
    assert DiscountReservation.objects.get(status="reserved").discount == held
