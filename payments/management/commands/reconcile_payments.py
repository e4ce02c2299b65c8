"""`python manage.py reconcile_payments`: settle payment attempts left open.

An attempt stays open when its worker died mid-payment or when the provider's ledger
could not be read after a timeout. This asks the provider's ledger about each one that
has been untouched for `--older-than` seconds and records what it says. Run it from cron
(e.g. every few minutes); it is safe to run while the service is serving.
"""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from cart.services import payments_reconcile


class Command(BaseCommand):
    help = "Settle payment attempts left in processing from the payment provider's ledger."

    def add_arguments(self, parser):
        parser.add_argument(
            "--recheck-closed-minutes",
            type=int,
            default=60,
            help="Also re-check attempts closed as not charged this recently "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--older-than",
            type=int,
            default=settings.PAYMENT_ATTEMPT_STALE_SECONDS,
            help="Only attempts untouched for this many seconds (default: %(default)s).",
        )

    def handle(self, *args, older_than: int, recheck_closed_minutes: int, **options):
        counts = payments_reconcile(
            older_than=timedelta(seconds=older_than),
            recheck_closed_within=timedelta(minutes=recheck_closed_minutes),
        )
        self.stdout.write(
            "Reconciled: {success} charged, {failed} declined, {not_charged} not charged, "
            "{still_unknown} still unknown, {late_charges} charged after being "
            "closed.".format(**counts)
        )
        if counts["late_charges"]:
            self.stderr.write("Some attempts were charged after being closed: see the log.")
        if counts["still_unknown"]:
            self.stderr.write("The provider's ledger could not be read for some attempts.")
