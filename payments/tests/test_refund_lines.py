"""Refunds by line: units of an itemized cart's lines given back at what they were paid
after their share of the discount, through the real fake provider."""

from decimal import Decimal

import pytest

from cart.models import Cart
from cart.tests.factories import itemized_cart
from common.testing import error_of, response_json
from discount.tests.factories import DiscountFactory
from payments.models import Payment, Refund, RefundLine

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def refund_lines(client, cart, *lines, key=None):
    body = {"lines": [{"line_id": line_id, "quantity": qty} for line_id, qty in lines]}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"/api/cart/{cart.pk}/refund/", body, format="json", **headers)


@pytest.fixture
def paid_lines(api_client, fake_provider):
    """Tea 3 × 3.00 and a mug 10.00 (19.00), 1.00 off: tea pays 8.53, the mug 9.47."""
    cart = itemized_cart(("TEA", 3, "3.00"), ("MUG", 1, "10.00"))
    cart.apply_discount(DiscountFactory(code="ONE", value=Decimal("1")))
    response = api_client.post(f"/api/cart/{cart.pk}/pay/", {})
    assert response.status_code == 200, response.content
    tea, mug = cart.lines.order_by("id")
    return cart, tea, mug


def test_units_of_a_line_give_back_what_they_were_paid_after_the_discount(api_client, paid_lines):
    cart, tea, mug = paid_lines
    assert (tea.total, mug.total) == (Decimal("8.53"), Decimal("9.47"))

    response = refund_lines(api_client, cart, (tea.pk, 1))

    data = response_json(response)
    assert response.status_code == 200, data
    assert data["refund"]["amount"] == Decimal("2.84")  # 8.53 / 3, rounded down
    assert data["cart"]["amount_refunded"] == Decimal("2.84")
    assert RefundLine.objects.get().quantity == 1


def test_a_line_refunded_unit_by_unit_gives_back_exactly_its_total(api_client, paid_lines):
    cart, tea, mug = paid_lines

    amounts = [
        response_json(refund_lines(api_client, cart, (tea.pk, 1)))["refund"]["amount"]
        for _ in range(3)
    ]

    assert amounts == [Decimal("2.84"), Decimal("2.84"), Decimal("2.85")]
    assert sum(amounts) == tea.total
    response = refund_lines(api_client, cart, (mug.pk, 1))
    assert response_json(response)["cart"]["payment_status"] == "refunded"


def test_units_are_never_given_back_twice(api_client, paid_lines):
    cart, tea, _ = paid_lines
    refund_lines(api_client, cart, (tea.pk, 2))

    response = refund_lines(api_client, cart, (tea.pk, 2))

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "refund_exceeds_line"
    assert "Only 1 of the 3 units" in error["message"]
    assert Refund.objects.count() == 1


def test_units_of_a_declined_refund_are_left_to_give_back(api_client, paid_lines, monkeypatch):
    from payments import services
    from payments.tests.test_pay_service import REFUND_FAILED, ScriptedProvider

    cart, tea, _ = paid_lines
    with monkeypatch.context() as patched:
        patched.setattr(services, "provider_api", lambda: ScriptedProvider(refund=[REFUND_FAILED]))
        declined = refund_lines(api_client, cart, (tea.pk, 3))
    assert declined.status_code == 402, declined.content

    assert refund_lines(api_client, cart, (tea.pk, 3)).status_code == 200


@pytest.fixture
def provider_down(fake_provider, settings):
    """Calls `down()` to make the provider unreachable (never reached: proven not made),
    `up()` to point back at the fake provider."""
    from conftest import free_port

    class Switch:
        def down(self):
            settings.PAYMENT_API_BASE_URL = f"http://127.0.0.1:{free_port()}"

        def up(self):
            settings.PAYMENT_API_BASE_URL = fake_provider.url

        def not_made(self, api_client, cart, line, key):
            """A refund of `line` (id, units) proven not made: 503, its units freed."""
            self.down()
            assert refund_lines(api_client, cart, line, key=key).status_code == 503
            self.up()

    return Switch()


def test_a_refund_not_made_is_tried_again_with_its_key_while_its_units_are_left(
    api_client, paid_lines, provider_down, fake_provider
):
    cart, tea, _ = paid_lines
    provider_down.not_made(api_client, cart, (tea.pk, 3), key="r1")

    again = refund_lines(api_client, cart, (tea.pk, 3), key="r1")

    data = response_json(again)
    assert again.status_code == 200, data
    assert (data["refund"]["status"], data["refund"]["amount"]) == ("success", Decimal("8.53"))
    assert data["cart"]["amount_refunded"] == Decimal("8.53")
    assert len(fake_provider.refunds()) == 1


def test_a_refund_not_made_tried_again_after_its_units_were_given_back_is_refused(
    api_client, paid_lines, provider_down, fake_provider
):
    # Its 503 freed the units; another request gave them back; the first request
    # repeated with its key asked for them again and got them: 6 of 3 units refunded.
    cart, tea, _ = paid_lines
    provider_down.not_made(api_client, cart, (tea.pk, 3), key="r1")
    assert refund_lines(api_client, cart, (tea.pk, 3), key="r2").status_code == 200

    again = refund_lines(api_client, cart, (tea.pk, 3), key="r1")

    assert again.status_code == 409, again.content
    error = error_of(again)
    assert error["code"] == "refund_exceeds_line"
    assert "Only 0 of the 3 units" in error["message"]
    first = Refund.objects.get(request_key="r1")
    assert (first.status, first.error_code) == ("error", "provider_unavailable")
    assert Payment.objects.get(cart=cart, status="success").amount_refunded == Decimal("8.53")
    assert Cart.objects.get(pk=cart.pk).amount_refunded == Decimal("8.53")
    assert (
        sum(RefundLine.objects.filter(refund__status="success").values_list("quantity", flat=True))
        == 3
    )
    assert len(fake_provider.refunds()) == 1


def test_a_refund_not_made_whose_units_now_count_for_another_amount_is_refused(
    api_client, paid_lines, provider_down, fake_provider
):
    # 1 tea unit counts 2.84 as the first or second of 3, 2.85 as the last: once two were
    # given back by another request, the refund made for 2.84 cannot be sent as it was.
    cart, tea, _ = paid_lines
    provider_down.not_made(api_client, cart, (tea.pk, 1), key="r1")
    assert refund_lines(api_client, cart, (tea.pk, 2), key="r2").status_code == 200

    again = refund_lines(api_client, cart, (tea.pk, 1), key="r1")

    assert again.status_code == 409, again.content
    assert error_of(again)["code"] == "refund_exceeds_line"
    assert Refund.objects.get(request_key="r1").status == "error"
    assert Payment.objects.get(cart=cart, status="success").amount_refunded == Decimal("5.68")
    assert len(fake_provider.refunds()) == 1
    last = refund_lines(api_client, cart, (tea.pk, 1), key="r3")  # a new request: 2.85
    assert response_json(last)["refund"]["amount"] == Decimal("2.85")


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"lines": [{"line_id": 999999, "quantity": 1}]}, "lines.0.line_id", "not_found"),
        ({"lines": [], "amount": 1}, "lines", "min_length"),
        ({"lines": [{"line_id": 1, "quantity": 0}]}, "lines.0.quantity", "min_value"),
    ],
)
def test_bad_line_refunds_are_named(api_client, paid_lines, body, field, code):
    cart, *_ = paid_lines

    response = api_client.post(f"/api/cart/{cart.pk}/refund/", body, format="json")

    assert response.status_code == 400
    assert (error_of(response)["field"], error_of(response)["code"]) == (field, code)
    assert not Refund.objects.exists()


def test_an_amount_and_lines_together_are_refused(api_client, paid_lines):
    cart, tea, _ = paid_lines

    response = api_client.post(
        f"/api/cart/{cart.pk}/refund/",
        {"amount": 1, "lines": [{"line_id": tea.pk, "quantity": 1}]},
        format="json",
    )

    assert (response.status_code, error_of(response)["code"]) == (400, "amount_and_lines")


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_refunds_of_the_same_units_racing_give_them_back_once(fake_provider):
    from rest_framework.test import APIClient

    from cart.tests.test_concurrency import race

    client = APIClient()
    cart = itemized_cart(("TEA", 2, "3.00"), ("MUG", 1, "10.00"))
    assert client.post(f"/api/cart/{cart.pk}/pay/", {}).status_code == 200
    tea = cart.lines.get(sku="TEA")

    responses = race([lambda: refund_lines(APIClient(), cart, (tea.pk, 2)) for _ in range(4)])

    # The losers are refused under the cart's lock (409), or, when this process already
    # waits on the provider for as many calls as it allows, before anything (503).
    assert [r.status_code for r in responses].count(200) == 1
    losers = {error_of(r)["code"] for r in responses if r.status_code != 200}
    assert losers <= {"refund_exceeds_line", "payment_provider_busy"}
    assert sum(RefundLine.objects.values_list("quantity", flat=True)) == 2


def test_a_key_repeated_with_the_same_lines_replays_its_refund(api_client, paid_lines):
    cart, tea, mug = paid_lines
    first = refund_lines(api_client, cart, (tea.pk, 1), (mug.pk, 1), key="r-1")

    again = refund_lines(api_client, cart, (mug.pk, 1), (tea.pk, 1), key="r-1")

    assert again.status_code == 200
    assert response_json(again)["refund"]["id"] == response_json(first)["refund"]["id"]
    assert Refund.objects.count() == 1


@pytest.mark.parametrize(
    "repeat",
    [
        pytest.param({"lines": [(2, "tea")]}, id="other_units"),
        pytest.param({"lines": [(1, "mug")]}, id="other_line"),
        pytest.param({"amount": "2.84"}, id="an_amount_instead"),
    ],
)
def test_a_key_repeated_for_other_lines_is_refused_not_replayed(api_client, paid_lines, repeat):
    cart, tea, mug = paid_lines
    assert refund_lines(api_client, cart, (tea.pk, 1), key="r-1").status_code == 200
    by_name = {"tea": tea.pk, "mug": mug.pk}

    if "lines" in repeat:
        lines = [(by_name[name], qty) for qty, name in repeat["lines"]]
        again = refund_lines(api_client, cart, *lines, key="r-1")
    else:
        again = api_client.post(
            f"/api/cart/{cart.pk}/refund/",
            {"amount": repeat["amount"]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="r-1",
        )

    assert (again.status_code, error_of(again)["code"]) == (409, "idempotency_key_reused")
    assert Refund.objects.count() == 1
