"""`python manage.py release_discount_reservations`: free uses held by carts never paid.

A cart that applies a code reserves one use for `DISCOUNT_RESERVATION_TTL` seconds. An
expired reservation already stops counting against the code's `usage_limit`; this takes
the discount off its cart too (the total is the subtotal again), so the cart shows what
paying it would now charge. Carts being paid or paid are never touched. Run it from cron
(e.g. every few minutes); it is safe to run while the service is serving, and in
several processes at once.
"""

from django.core.management.base import BaseCommand

from discount.services import discount_release_expired_reservations


class Command(BaseCommand):
    help = "Release discount reservations of carts not paid in time; restore their totals."

    def handle(self, *args, **options):
        released = 0
        while batch := discount_release_expired_reservations():
            released += batch
        self.stdout.write(f"Released {released} expired discount reservation(s).")
