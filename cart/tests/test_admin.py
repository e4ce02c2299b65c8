"""Carts in the admin: money as the API shows it, read-only pages, deletions refused for
a reason (through `cart_delete`), and the payments panel on the index."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.errors import CartNotDeletableError
from cart.models import Cart, Payment
from cart.services import cart_apply_discount, cart_delete
from cart.tests.factories import CartFactory
from discount.models import Discount, DiscountReservation
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def attempt(cart, status="failed", *, completed=None, amount=None, currency=None, key=""):
    return Payment.objects.create(
        cart=cart,
        amount=cart.total if amount is None else amount,
        currency=currency or cart.currency,
        status=status,
        completed=completed,
        idempotency_key=f"cart-{cart.pk}-{status}-{key}",
    )


class TestLists:
    def test_amounts_show_the_currencys_decimals_and_its_code(self, admin_client):
        CartFactory(total=Decimal("20"), currency="USD")
        CartFactory(total=Decimal("1500"), currency="JPY")

        html = admin_client.get("/admin/cart/cart/").content.decode()

        assert "20.00 USD" in html
        assert "1500 JPY" in html
        assert "20.0000" not in html

    def test_ids_are_short_with_the_full_id_on_hover_and_searchable(self, admin_client):
        cart = CartFactory()

        html = admin_client.get("/admin/cart/cart/").content.decode()
        found = admin_client.get("/admin/cart/cart/", {"q": str(cart.pk)})

        assert f'title="{cart.pk}">{str(cart.pk)[:8]}</span>' in html
        assert list(found.context["cl"].result_list) == [cart]


class TestCartPage:
    def test_is_a_view_with_no_save_button(self, admin_client):
        cart = CartFactory()

        html = admin_client.get(f"/admin/cart/cart/{cart.pk}/change/").content.decode()

        assert 'name="_save"' not in html
        assert "20.00 USD" in html
        assert "Amount before discount." in html  # the model's help text, kept

    def test_cannot_be_changed_by_posting(self, admin_client):
        cart = CartFactory()

        response = admin_client.post(f"/admin/cart/cart/{cart.pk}/change/", {"total": "1"})

        assert response.status_code == 403
        cart.refresh_from_db()
        assert cart.total == Decimal("20.00")


class TestDeleting:
    def test_a_cart_nobody_tried_to_pay_is_deleted_and_gives_its_reserved_use_back(
        self, admin_client
    ):
        discount = DiscountFactory(usage_limit=1)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)

        confirm = admin_client.get(f"/admin/cart/cart/{cart.pk}/delete/")
        response = admin_client.post(f"/admin/cart/cart/{cart.pk}/delete/", {"post": "yes"})

        assert confirm.status_code == 200
        assert "protected" not in confirm.content.decode()
        assert response.status_code == 302
        assert not Cart.objects.filter(pk=cart.pk).exists()
        assert not DiscountReservation.objects.exists()
        discount.refresh_from_db()
        assert (discount.times_used, discount.uses_held(at=timezone.now())) == (0, 0)
        # The use is free again.
        cart_apply_discount(cart=CartFactory(), discount=discount)

    def test_the_bulk_delete_deletes_carts_holding_reservations(self, admin_client):
        discount = DiscountFactory(usage_limit=5)
        carts = [CartFactory() for _ in range(2)]
        for cart in carts:
            cart_apply_discount(cart=cart, discount=discount)
        released = carts[0].discount_reservations.get()
        released.status = "released"
        released.save()

        response = admin_client.post(
            "/admin/cart/cart/",
            {
                "action": "delete_selected",
                "_selected_action": [cart.pk for cart in carts],
                "post": "yes",
            },
        )

        assert response.status_code == 302
        assert (Cart.objects.count(), DiscountReservation.objects.count()) == (0, 0)
        assert Discount.objects.get(pk=discount.pk).times_used == 0

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            ("failed", "It has 1 payment attempt, which the payment ledger keeps."),
            ("success", "It is paid: paid carts stay in the books."),
        ],
    )
    def test_a_cart_someone_tried_to_pay_is_refused_with_the_reason(
        self, admin_client, status, reason
    ):
        cart = CartFactory(payment_status=status)
        attempt(cart, status)

        response = admin_client.get(f"/admin/cart/cart/{cart.pk}/delete/", follow=True)

        html = response.content.decode()
        assert reason in html
        assert "permission" not in html
        assert response.redirect_chain[-1][0] == f"/admin/cart/cart/{cart.pk}/change/"
        assert Cart.objects.filter(pk=cart.pk).exists()

    def test_posting_the_deletion_anyway_deletes_nothing(self, admin_client):
        cart = CartFactory(payment_status="failed")
        attempt(cart)

        admin_client.post(f"/admin/cart/cart/{cart.pk}/delete/", {"post": "yes"})

        assert Cart.objects.filter(pk=cart.pk).exists()

    def test_the_bulk_delete_refuses_and_deletes_nothing(self, admin_client):
        paid = CartFactory(payment_status="success")
        attempt(paid, "success")
        fresh = CartFactory()

        response = admin_client.post(
            "/admin/cart/cart/",
            {"action": "delete_selected", "_selected_action": [paid.pk, fresh.pk]},
            follow=True,
        )

        assert "cannot be deleted: It is paid" in response.content.decode()
        assert Cart.objects.count() == 2

    def test_the_service_refuses_whichever_door_calls_it(self):
        cart = CartFactory(payment_status="failed")
        attempt(cart)

        with pytest.raises(CartNotDeletableError):
            cart_delete(cart=cart)


# The last microsecond of a day, in the zone the panel counts "today" in.
DAYS_LAST_MOMENT = datetime(2026, 3, 14, 23, 59, 59, 999999)


class TestPaymentsPanel:
    @pytest.fixture(autouse=True)
    def frozen_clock(self, monkeypatch):
        """Django's clock stopped at a day's last moment, for the payments the fixture
        records and the page that counts them: with a running clock, "today" was worked
        out twice, and a test that ran across local midnight found the payments it had
        just made in yesterday. Any "now" read from the real clock would fall on another
        day and fail the tests."""
        moment = timezone.make_aware(DAYS_LAST_MOMENT)
        monkeypatch.setattr(timezone, "now", lambda: moment)
        return moment

    @pytest.fixture
    def payments(self):
        now = timezone.now()
        yesterday = now - timedelta(days=1, hours=1)
        usd = [CartFactory(total=Decimal(total)) for total in ("20.00", "15.50")]
        for cart in usd:
            attempt(cart, "success", completed=now)
        attempt(CartFactory(total=Decimal("9.99"), currency="EUR"), "success", completed=now)
        old = attempt(CartFactory(), "success", completed=yesterday)
        Payment.objects.filter(pk=old.pk).update(updated=yesterday)
        attempt(CartFactory(), "failed", completed=now)
        attempt(CartFactory(), "error", completed=now)
        attempt(CartFactory(), "unknown")
        attempt(CartFactory(), "processing")

    def metrics(self, response) -> dict:
        (panel,) = response.context["panels"]
        return {row.key: row for row in panel.rows}

    def test_shows_todays_payments_and_the_attempts_still_open(self, admin_client, payments):
        metrics = self.metrics(admin_client.get("/admin/"))

        assert metrics["paid_USD"].value == "2 carts · 35.50 USD"
        assert metrics["paid_EUR"].value == "1 cart · 9.99 EUR"
        assert [
            metrics[k].value for k in ("declined", "not_charged", "processing", "unknown")
        ] == [
            "1",
            "1",
            "1",
            "1",
        ]

    def test_each_number_links_to_the_attempts_behind_it(self, admin_client, payments):
        metrics = self.metrics(admin_client.get("/admin/"))

        counts = {
            key: admin_client.get(row.url).context["cl"].result_count
            for key, row in metrics.items()
        }

        assert counts == {
            "paid_EUR": 1,
            "paid_USD": 2,
            "declined": 1,
            "not_charged": 1,
            "processing": 1,
            "unknown": 1,
        }

    def test_a_quiet_day_says_zero(self, admin_client):
        metrics = self.metrics(admin_client.get("/admin/"))
        assert metrics["paid"].value == "0 carts"

    def test_costs_two_queries_whatever_the_table_size(self, payments, django_assert_num_queries):
        from cart.selectors import payments_summary

        with django_assert_num_queries(2):
            payments_summary(since=timezone.now() - timedelta(hours=1))
