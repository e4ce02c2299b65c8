"""Uses are reserved when a code is applied and consumed when the cart is paid; carts
that are never paid cannot use a limited code up."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from cart.models import Cart, PaymentStatus
from cart.services import cart_delete
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from discount import services as discount_services
from discount.models import Discount, DiscountReservation
from discount.services import discount_release_expired_reservations
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def apply(client, cart, code):
    return client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})


def pay(client, cart, **body):
    return client.post(f"/api/cart/{cart.pk}/pay/", body)


def expire(cart) -> None:
    """The cart's reservation ran out: DISCOUNT_RESERVATION_TTL passed without a payment."""
    DiscountReservation.objects.filter(cart=cart).update(
        expires=timezone.now() - timedelta(seconds=1)
    )


def test_applying_reserves_a_use_for_the_configured_time(api_client, settings):
    settings.DISCOUNT_RESERVATION_TTL = 600
    discount = DiscountFactory(code="HOLD", usage_limit=5)
    cart = CartFactory()
    before = timezone.now()

    apply(api_client, cart, "HOLD")

    [reservation] = DiscountReservation.objects.all()
    assert (reservation.discount, reservation.cart, reservation.status) == (
        discount,
        cart,
        "reserved",
    )
    assert (reservation.amount, reservation.currency) == (Decimal("5"), "USD")
    assert (
        before + timedelta(seconds=600)
        <= reservation.expires
        <= timezone.now() + timedelta(seconds=600)
    )
    discount.refresh_from_db()
    assert discount.times_used == 0


def test_three_never_paid_carts_cannot_use_up_a_code_limited_to_three(api_client):
    DiscountFactory(code="THREE", usage_limit=3)
    idle = [CartFactory() for _ in range(3)]
    for cart in idle:
        assert apply(api_client, cart, "THREE").status_code == 200
    late = CartFactory()
    assert error_of(apply(api_client, late, "THREE"))["code"] == "discount_usage_limit_reached"

    for cart in idle:
        expire(cart)

    # No sweep has run: expired reservations simply stop counting.
    assert apply(api_client, late, "THREE").status_code == 200
    assert Discount.objects.get(code="THREE").uses_held(at=timezone.now()) == 1


def test_the_sweep_releases_expired_reservations_and_restores_the_totals(api_client):
    DiscountFactory(code="SWEEP", value=Decimal("5"))
    idle, fresh = CartFactory(), CartFactory()
    apply(api_client, idle, "SWEEP")
    apply(api_client, fresh, "SWEEP")
    expire(idle)

    out = io.StringIO()
    call_command("release_discount_reservations", stdout=out)

    assert out.getvalue().strip() == "Released 1 expired discount reservation(s)."
    idle.refresh_from_db()
    assert (idle.discount, idle.amount_discounted, idle.total) == (None, 0, Decimal("20.00"))
    assert DiscountReservation.objects.get(cart=idle).status == "released"
    fresh.refresh_from_db()
    assert (fresh.discount.code, fresh.total) == ("SWEEP", Decimal("15.00"))
    body = response_json(api_client.get(f"/api/cart/{idle.pk}/"))
    assert (body["discount"], body["total"]) == (None, Decimal("20.00"))
    # The cart may take a code again.
    assert apply(api_client, idle, "SWEEP").status_code == 200


@pytest.mark.parametrize("status", [PaymentStatus.PROCESSING, PaymentStatus.SUCCESS])
def test_the_sweep_never_touches_a_cart_being_paid_or_paid(api_client, status):
    DiscountFactory(code="BUSY")
    cart = CartFactory()
    apply(api_client, cart, "BUSY")
    expire(cart)
    Cart.objects.filter(pk=cart.pk).update(payment_status=status)

    assert discount_release_expired_reservations() == 0

    cart.refresh_from_db()
    assert (cart.discount.code, cart.total) == ("BUSY", Decimal("15.00"))
    assert DiscountReservation.objects.get(cart=cart).status == "reserved"


def test_the_sweep_goes_on_past_a_cart_deleted_after_it_listed_the_batch(api_client, monkeypatch):
    DiscountFactory(code="GONE", value=Decimal("5"))
    gone, kept = CartFactory(), CartFactory()
    for cart in (gone, kept):
        apply(api_client, cart, "GONE")
        expire(cart)

    # The admin or the API deletes a cart (and its reservations) once the sweep has
    # listed the batch, before it takes the first of them.
    class DeletedOnce:
        def __getattr__(self, name):
            return getattr(transaction, name)

        def atomic(self, *args, **kwargs):
            if Cart.objects.filter(pk=gone.pk).exists():
                cart_delete(cart=gone)
            return transaction.atomic(*args, **kwargs)

    monkeypatch.setattr(discount_services, "transaction", DeletedOnce())
    out = io.StringIO()
    call_command("release_discount_reservations", stdout=out)

    assert out.getvalue().strip() == "Released 1 expired discount reservation(s)."
    assert not Cart.objects.filter(pk=gone.pk).exists()
    kept.refresh_from_db()
    assert (kept.discount, kept.total) == (None, Decimal("20.00"))
    assert DiscountReservation.objects.get(cart=kept).status == "released"


def test_an_expired_reservation_of_a_cart_being_paid_still_counts(api_client):
    DiscountFactory(code="ONLY", usage_limit=1)
    paying = CartFactory()
    apply(api_client, paying, "ONLY")
    expire(paying)
    Cart.objects.filter(pk=paying.pk).update(payment_status=PaymentStatus.PROCESSING)

    response = apply(api_client, CartFactory(), "ONLY")

    assert error_of(response)["code"] == "discount_usage_limit_reached"


def test_the_limit_cannot_be_lowered_below_the_uses_held(api_client):
    discount = DiscountFactory(code="HELD", usage_limit=5)
    for _ in range(2):
        apply(api_client, CartFactory(), "HELD")

    response = api_client.patch(f"/api/discount/{discount.pk}/", {"usage_limit": 1})

    assert response.status_code == 400
    assert (error_of(response)["field"], error_of(response)["code"]) == (
        "usage_limit",
        "below_times_used",
    )
    assert api_client.patch(f"/api/discount/{discount.pk}/", {"usage_limit": 2}).status_code == 200


def test_the_discount_api_shows_reserved_and_consumed_uses(api_client):
    discount = DiscountFactory(code="SHOWN", usage_limit=10)
    carts = [CartFactory() for _ in range(3)]
    for cart in carts:
        apply(api_client, cart, "SHOWN")
    expire(carts[0])

    detail = response_json(api_client.get(f"/api/discount/{discount.pk}/"))
    listed = response_json(api_client.get("/api/discount/"))["results"][0]

    assert (detail["times_used"], detail["reserved_uses"]) == (0, 2)
    assert (listed["times_used"], listed["reserved_uses"]) == (0, 2)


@pytest.mark.integration
class TestPaying:
    def test_paying_consumes_the_reserved_use(self, api_client, fake_provider):
        discount = DiscountFactory(code="PAID", usage_limit=1)
        cart = CartFactory(total=Decimal("20.00"))
        apply(api_client, cart, "PAID")

        assert pay(api_client, cart).status_code == 200

        discount.refresh_from_db()
        assert discount.times_used == 1
        assert DiscountReservation.objects.get().status == "consumed"
        assert response_json(api_client.get(f"/api/discount/{discount.pk}/"))["reserved_uses"] == 0
        assert fake_provider.charges(cart.pk)[0]["amount"] == 1500

    def test_a_declined_payment_keeps_the_reservation(self, api_client, fake_provider):
        discount = DiscountFactory(code="AGAIN", usage_limit=1)
        cart = CartFactory(total=Decimal("40.00"))
        apply(api_client, cart, "AGAIN")

        assert pay(api_client, cart).status_code == 402  # above the default card's 20.00 limit
        assert DiscountReservation.objects.get().status == "reserved"
        assert pay(api_client, cart, payment_method="pm_card_visa").status_code == 200
        discount.refresh_from_db()
        assert discount.times_used == 1

    def test_an_expired_reservation_is_taken_again_when_the_code_allows(
        self, api_client, fake_provider
    ):
        DiscountFactory(code="RENEW", usage_limit=2)
        cart = CartFactory(total=Decimal("20.00"))
        apply(api_client, cart, "RENEW")
        expire(cart)

        response = pay(api_client, cart)

        assert response.status_code == 200, response.content
        assert fake_provider.charges(cart.pk)[0]["amount"] == 1500
        assert DiscountReservation.objects.get().status == "consumed"

    def test_an_expired_reservation_of_a_used_up_code_is_a_409_and_nothing_is_charged(
        self, api_client, fake_provider
    ):
        discount = DiscountFactory(code="GONE", usage_limit=1)
        slow, quick = CartFactory(total=Decimal("20.00")), CartFactory(total=Decimal("20.00"))
        apply(api_client, slow, "GONE")
        expire(slow)
        assert apply(api_client, quick, "GONE").status_code == 200  # the use is free again

        response = pay(api_client, slow)

        assert response.status_code == 409
        assert error_of(response)["code"] == "discount_reservation_expired"
        shown = response_json(response)["cart"]
        assert (shown["total"], shown["discount"], shown["payment_status"]) == (
            Decimal("20.00"),
            None,
            "pending",
        )
        assert fake_provider.journal() == []
        slow.refresh_from_db()
        assert (slow.discount, slow.total) == (None, Decimal("20.00"))
        # The customer saw the new total: paying again charges it.
        assert pay(api_client, slow).status_code == 200
        assert fake_provider.charges(slow.pk)[0]["amount"] == 2000
        declined = pay(api_client, quick, payment_method="pm_card_chargeDeclined")
        assert declined.status_code == 402  # declined: it keeps its code
        discount.refresh_from_db()
        assert discount.times_used == 0
        assert discount.uses_held(at=timezone.now()) == 1

    def test_the_model_method_refuses_alike(self, api_client, fake_provider):
        from discount.errors import DiscountReservationExpiredError

        DiscountFactory(code="MODEL", usage_limit=1)
        slow = CartFactory()
        apply(api_client, slow, "MODEL")
        expire(slow)
        apply(api_client, CartFactory(), "MODEL")
        slow.refresh_from_db()

        with pytest.raises(DiscountReservationExpiredError):
            slow.pay()

        assert (slow.discount, slow.total) == (None, Decimal("20.00"))
        assert fake_provider.journal() == []


def test_the_admin_shows_reserved_uses_and_the_reservations(admin_client, api_client):
    DiscountFactory(code="ADMINSEEN", usage_limit=4)
    cart = CartFactory()
    apply(api_client, cart, "ADMINSEEN")

    codes = admin_client.get("/admin/discount/discount/")
    reservations = admin_client.get("/admin/discount/discountreservation/", {"q": "ADMINSEEN"})

    [listed] = codes.context["cl"].result_list
    assert listed.reserved_uses_now == 1
    assert "1 + 1 of 4" not in codes.content.decode()
    assert "0 + 1 of 4" in codes.content.decode()  # used + reserved of the limit
    [reservation] = reservations.context["cl"].result_list
    assert (reservation.cart, reservation.status) == (cart, "reserved")
    assert (
        admin_client.get(
            f"/admin/discount/discountreservation/{reservation.pk}/delete/"
        ).status_code
        == 403
    )


class TestConsume:
    """discount_consume_reservation never fails for a charge that happened."""

    def test_a_reserved_use_is_consumed_once(self, api_client):
        from discount.services import discount_consume_reservation

        discount = DiscountFactory(code="ONCE", usage_limit=2)
        cart = CartFactory()
        apply(api_client, cart, "ONCE")
        cart.refresh_from_db()

        discount_consume_reservation(cart=cart)
        discount_consume_reservation(cart=cart)  # a late charge recorded again

        discount.refresh_from_db()
        assert discount.times_used == 1
        assert DiscountReservation.objects.get().status == "consumed"

    def test_a_charge_of_the_restored_total_after_the_release_counts_no_use(
        self, api_client, caplog
    ):
        from discount.services import discount_consume_reservation

        discount = DiscountFactory(code="LATECHARGE")
        cart = CartFactory()
        apply(api_client, cart, "LATECHARGE")
        expire(cart)
        discount_release_expired_reservations()
        cart.refresh_from_db()

        discount_consume_reservation(cart=cart, charged=Decimal("20.00"))

        assert "ERROR" not in caplog.text
        discount.refresh_from_db()
        assert discount.times_used == 0
        assert DiscountReservation.objects.get().status == "released"

    def test_a_use_past_the_limit_is_logged_and_the_constraint_kept(self, api_client, caplog):
        from discount.services import discount_consume_reservation

        discount = DiscountFactory(code="FULL", usage_limit=1)
        cart = CartFactory()
        apply(api_client, cart, "FULL")
        Discount.objects.filter(pk=discount.pk).update(times_used=1)  # as if used meanwhile
        cart.refresh_from_db()

        discount_consume_reservation(cart=cart)

        assert "consumed past its usage limit" in caplog.text
        discount.refresh_from_db()
        assert discount.times_used == 1
        assert DiscountReservation.objects.get().status == "consumed"


def test_a_charge_with_a_discount_released_since_brings_that_discount_back(api_client):
    """The provider charged 15.00 while FIVE was held; FIVE was released (expired), TWO
    held and released, and ONE is held when the charge is recorded: the cart shows the
    discount the charge had, and only that use is counted."""
    from discount.services import discount_consume_reservation

    five = DiscountFactory(code="FIVE", value=Decimal("5"))
    DiscountFactory(code="TWO", value=Decimal("2"))
    DiscountFactory(code="ONE", value=Decimal("1"))
    cart = CartFactory()
    for code in ("FIVE", "TWO"):
        assert apply(api_client, cart, code).status_code == 200
        expire(cart)
        discount_release_expired_reservations()
    apply(api_client, cart, "ONE")
    cart.refresh_from_db()

    discount_consume_reservation(cart=cart, charged=Decimal("15.00"))

    cart.refresh_from_db()
    assert (cart.discount, cart.amount_discounted, cart.total) == (
        five,
        Decimal("5.00"),
        Decimal("15.00"),
    )
    statuses = dict(DiscountReservation.objects.values_list("discount__code", "status"))
    assert statuses == {"FIVE": "consumed", "TWO": "released", "ONE": "released"}
    used = dict(Discount.objects.values_list("code", "times_used"))
    assert used == {"FIVE": 1, "TWO": 0, "ONE": 0}


def test_a_late_charge_brings_back_the_generated_code_it_was_made_with(api_client):
    from discount.services import discount_consume_reservation, discount_generate_codes

    discount = DiscountFactory(code="GEN", value=Decimal("5"))
    [code] = discount_generate_codes(discount=discount, count=1)
    cart = CartFactory()
    assert apply(api_client, cart, code.code).status_code == 200
    expire(cart)
    discount_release_expired_reservations()
    cart.refresh_from_db()

    discount_consume_reservation(cart=cart, charged=Decimal("15.00"))

    cart.refresh_from_db()
    assert (cart.discount_code, cart.total) == (code, Decimal("15.00"))
    assert DiscountReservation.objects.get(code=code).status == "consumed"


def test_the_uses_counted_against_a_limit_are_the_live_reservations(api_client):
    """`with_reserved_uses_against_limit` (apply's lookup) counts what `with_reserved_uses`
    counts for a code with a limit, and skips the count (0) for a code without one."""
    limited = DiscountFactory(code="LIMITEDTEN", usage_limit=10)
    unlimited = DiscountFactory(code="UNLIMITED")
    idle = DiscountFactory(code="IDLE", usage_limit=10)  # a limited code no cart holds
    for code in ("LIMITEDTEN", "UNLIMITED"):
        for _ in range(3):
            assert apply(api_client, CartFactory(), code).status_code == 200
    stale, being_paid = CartFactory(), CartFactory()
    for cart in (stale, being_paid):
        assert apply(api_client, cart, "LIMITEDTEN").status_code == 200
        expire(cart)  # expired: no longer counted, unless its cart is being paid
    Cart.objects.filter(pk=being_paid.pk).update(payment_status=PaymentStatus.PROCESSING)

    now = timezone.now()
    counted = dict(
        Discount.objects.filter(pk__in=[limited.pk, unlimited.pk, idle.pk])
        .with_reserved_uses(at=now)
        .values_list("code", "reserved_uses_now")
    )
    against_limit = dict(
        Discount.objects.filter(pk__in=[limited.pk, unlimited.pk, idle.pk])
        .with_reserved_uses_against_limit(at=now)
        .values_list("code", "reserved_uses_now")
    )

    assert counted == {"LIMITEDTEN": 4, "UNLIMITED": 3, "IDLE": 0}
    assert against_limit == {"LIMITEDTEN": 4, "UNLIMITED": 0, "IDLE": 0}
