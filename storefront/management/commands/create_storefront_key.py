"""`python manage.py create_storefront_key "web shop"`: issue a key and print its secret.

The same as adding a key in the admin, for scripts and first deployments.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from storefront.models import StorefrontKey


class Command(BaseCommand):
    help = "Issue a storefront key and print its secret (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Which storefront will use it.")

    def handle(self, *args, name: str, **options):
        try:
            _, secret = StorefrontKey.issue(name=name)
        except ValidationError as error:
            raise CommandError(
                "; ".join(
                    f"{field}: {message}"
                    for field, messages in error.message_dict.items()
                    for message in messages
                )
            ) from None
        self.stdout.write(secret)
