"""`python manage.py reconcile_payments`: settle payments and refunds left open, and give
back what was charged twice (`payments.reconcile` says how, step by step).

An attempt or a refund stays open when its worker died mid-call or when the provider's
ledger could not be read after an answer was lost. A charge can land after its attempt
was closed, or a cart be charged twice; this finds such charges and refunds them by
itself, idempotently. Run it from cron (e.g. every few minutes); it is safe to run while
the service is serving, and to run again.
"""

import argparse
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from payments.reconcile import payments_reconcile

YEAR_IN_SECONDS = 366 * 24 * 3600


def window(unit_seconds: int):
    """An argparse type: a whole number of units from 0 to a year (a timedelta beyond
    Python's range was an OverflowError traceback; a negative one means nothing)."""

    def parse(text: str) -> int:
        most = YEAR_IN_SECONDS // unit_seconds
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 0 <= value <= most:
            raise argparse.ArgumentTypeError(f"{value} is not between 0 and {most}")
        return value

    return parse


class Command(BaseCommand):
    help = (
        "Settle payment attempts and refunds left open from the provider's ledgers, and "
        "refund charges taken twice."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--recheck-closed-minutes",
            type=window(60),
            default=60,
            help="Also re-check attempts and refunds closed as not done, and carts paid, "
            "this recently (default: %(default)s).",
        )
        parser.add_argument(
            "--older-than",
            type=window(1),
            default=settings.PAYMENT_ATTEMPT_STALE_SECONDS,
            help="Only open rows untouched for this many seconds (default: %(default)s). "
            "Whatever it says, a row whose request may still land is left open.",
        )

    def handle(self, *args, older_than: int, recheck_closed_minutes: int, **options):
        counts = payments_reconcile(
            older_than=timedelta(seconds=older_than),
            recheck_closed_within=timedelta(minutes=recheck_closed_minutes),
        )
        self.stdout.write(
            "Reconciled: {success} charged, {failed} declined, {not_charged} not charged, "
            "{still_unknown} still unknown, {late_charges} charged after being closed, "
            "{duplicate_charges} duplicate charges found, {duplicates_refunded} duplicate "
            "charges refunded; refunds: {refunds_made} made, {refunds_not_made} not made, "
            "{refunds_unknown} still unknown; {answer_mismatches} ledger records not what "
            "we sent, not booked.".format(**counts)
        )
        if counts["late_charges"] or counts["duplicate_charges"]:
            self.stderr.write("Some charges landed after their attempt was closed: see the log.")
        if counts["answer_mismatches"]:
            self.stderr.write(
                "The provider's ledger holds records under our keys that are not what we "
                "sent (another amount, currency, cart or payment): they are not booked, "
                "and stay open or closed as they were until a person checks them with the "
                "provider (see the log)."
            )
        if counts["still_unknown"] or counts["refunds_unknown"]:
            self.stderr.write("The provider's ledger could not settle everything: run me again.")
