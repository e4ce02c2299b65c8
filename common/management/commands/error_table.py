"""`python manage.py error_table [--write]`: the README's error table, from the schema.

Prints the table generated from the OpenAPI schema (`common.schema.error_table`); with
`--write`, replaces the table between the README's error-table markers.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from drf_spectacular.generators import SchemaGenerator

from common.schema import error_table

START, END = "<!-- error-table:start -->\n", "<!-- error-table:end -->"


class Command(BaseCommand):
    help = "Print the README's error table generated from the schema (--write: update it)."

    def add_arguments(self, parser):
        parser.add_argument("--write", action="store_true", help="rewrite it in the README")
        parser.add_argument("--readme", default=str(Path(settings.BASE_DIR) / "README.md"))

    def handle(self, *args, write: bool, readme: str, **options):
        schema = SchemaGenerator().get_schema(request=None, public=True)
        table = error_table(schema)
        if not write:
            self.stdout.write(table, ending="")
            return
        path = Path(readme)
        text = path.read_text()
        if START not in text or END not in text:
            raise CommandError(f"{path} has no {START.strip()} … {END} markers")
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        path.write_text(f"{before}{START}{table}{END}{after}")
        self.stdout.write(f"Updated the error table in {path}")
