"""The admin in headless Chromium at 1366 x 768, as staff use it: log in, read the
dashboard (its numbers are the database's), open every list (none wider than the screen),
search, filter, and open a cart (a view page with no Save button)."""

import time
from datetime import timedelta

import pytest
import requests
from django.contrib.auth import get_user_model
from django.utils import timezone

from cart.models import Cart
from cart.selectors import payments_summary
from common.money import format_amount

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-admin-password"


@pytest.fixture
def shop(server):
    """Through the API: a code, carts paid in two currencies, one declined, one pending."""
    server.post("/api/discount/", {"code": "SPRING5", "value": 5, "currency": "USD"})
    carts = {}
    for name, total, currency in [
        ("discounted", 20, "USD"),
        ("paid_eur", "15.50", "EUR"),
        ("declined", 30, "USD"),
        ("pending", 1500, "JPY"),
    ]:
        body = {"total": total, "currency": currency, "items_number": 2}
        carts[name] = server.post("/api/cart/", body)["id"]
    server.post(f"/api/cart/{carts['discounted']}/apply_discount/", {"code": "spring5"})
    for name, method in [
        ("discounted", "pm_card_visa"),
        ("paid_eur", "pm_card_visa"),
    ]:
        server.post(f"/api/cart/{carts[name]}/pay/", {"payment_method": method})
    declined = requests.post(
        f"{server.url}/api/cart/{carts['declined']}/pay/",
        json={"payment_method": "pm_card_chargeDeclined"},
        timeout=10,
    )
    assert declined.status_code == 402
    return carts


# Longer than the dashboard test takes (a few seconds): its payments and the page that
# counts them fall on one day.
DAY_LEFT_SECONDS = 60


@pytest.fixture
def today():
    """The start of the local day (the zone the dashboard counts "today" in), once at
    least DAY_LEFT_SECONDS of it are left: this close to midnight the test waits for the
    next day. The server is another process, whose clock a test cannot stop: a run that
    crossed midnight between paying and loading the page found its payments in
    yesterday. Ask for it before `shop`, so the payments are made on that day."""
    now = timezone.localtime()
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (midnight - now).total_seconds()
    if left < DAY_LEFT_SECONDS:
        time.sleep(left + 0.1)
        now = timezone.localtime()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def log_in(page):
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    page.goto("/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def fits_the_screen(page) -> bool:
    """The list's table is not cut off: its box needs no horizontal scrolling."""
    return page.evaluate(
        "() => { const box = document.querySelector('#changelist .results');"
        " return !box || box.scrollWidth <= box.clientWidth; }"
    )


def test_dashboard_shows_the_databases_numbers(today, page, shop):
    log_in(page)

    shown = {
        cell.get_attribute("data-metric"): cell.inner_text()
        for cell in page.locator("#dashboard .dashboard-value").all()
    }

    assert timezone.localtime() < today + timedelta(days=1), "the test ran into the next day"
    summary = payments_summary(since=today)
    expected = {
        f"paid_{paid.currency}": (
            f"{paid.carts} cart{'s' if paid.carts != 1 else ''} · "
            f"{format_amount(paid.total, paid.currency)}"
        )
        for paid in summary.paid
    }
    expected.update(declined="1", not_charged="0", processing="0", unknown="0")
    assert shown == expected
    assert shown["paid_USD"] == "1 cart · 15.00 USD"
    assert page.locator("#site-name").inner_text() == "Cart, discount and payment service"
    page.watch.check()


def test_every_list_opens_fits_the_screen_and_searches_and_filters(page, shop):
    log_in(page)
    lists = page.locator('#content-main div[class^="app-"] th[scope=row] a').evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert {
        "/admin/cart/cart/",
        "/admin/payments/payment/",
        "/admin/payments/refund/",
        "/admin/discount/discount/",
    } <= set(lists)

    too_wide = []
    for url in lists:
        page.goto(url)
        page.wait_for_selector("#content-main")
        if not fits_the_screen(page):
            too_wide.append(url)
    assert not too_wide

    page.goto("/admin/cart/cart/")
    page.fill("#searchbar", "SPRING5")
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    assert page.locator("#result_list tbody tr").count() == 1

    page.goto("/admin/cart/cart/")
    page.locator("#changelist-filter a", has_text="Success").click()
    page.wait_for_load_state()
    statuses = page.locator("#result_list td.field-payment_status").all_inner_texts()
    assert statuses == ["Success", "Success"]
    page.watch.check()


def test_a_cart_page_shows_its_payments_and_no_save_button(page, shop):
    log_in(page)
    cart = Cart.objects.get(pk=shop["declined"])

    page.goto("/admin/cart/cart/")
    page.locator(f'#result_list a:has(span[title="{cart.pk}"])').click()
    page.wait_for_selector("#content-main")

    assert page.locator("h1").inner_text() == "View cart"
    assert page.locator("input[name=_save]").count() == 0
    assert "30.00 USD" in page.locator(".field-total_money").inner_text()
    assert "generic_decline" in page.locator("#payments-group").inner_text()

    page.locator("a.deletelink").click()  # a cart someone tried to pay stays
    page.wait_for_selector(".messagelist")
    assert "payment ledger keeps" in page.locator(".messagelist").inner_text()
    assert Cart.objects.filter(pk=cart.pk).exists()
    page.watch.check()
