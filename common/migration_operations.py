"""Migration operations Django has no ready one for.

migrations.SeparateDatabaseAndState(
    state_operations=[migrations.AlterField(..., field=ForeignKey(..., db_index=False))],
    database_operations=[DropIndex("cart_paymentrequest", "cart_paymentrequest_cart_id_12c2a59c",
                                   column="cart_id")],
)
"""

from __future__ import annotations

from django.db.migrations.operations.base import Operation


class DropIndex(Operation):
    """Drop an index by name, without locking its table on PostgreSQL.

    Turning off a field's `db_index` with `AlterField` makes Django's PostgreSQL schema
    editor drop the foreign key, drop the index and add the foreign key back, which
    checks every row while holding an exclusive lock on both tables (the cart table
    included); on SQLite it copies the whole table. Only the index has to go: on
    PostgreSQL `DROP INDEX CONCURRENTLY` (the migration must be `atomic = False`),
    elsewhere `DROP INDEX`. Reversed, the index is built again the same way. Changes
    only the database: pair it with the `AlterField` in `SeparateDatabaseAndState`.
    """

    reversible = True

    def __init__(self, table: str, name: str, *, column: str) -> None:
        self.table = table
        self.name = name
        self.column = column

    def deconstruct(self):
        return (self.__class__.__qualname__, [self.table, self.name], {"column": self.column})

    def state_forwards(self, app_label, state) -> None:
        pass  # the database only

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"DROP INDEX {self._concurrently(schema_editor)}IF EXISTS {quote(self.name)}"
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"CREATE INDEX {self._concurrently(schema_editor)}IF NOT EXISTS {quote(self.name)} "
            f"ON {quote(self.table)} ({quote(self.column)})"
        )

    @staticmethod
    def _concurrently(schema_editor) -> str:
        if schema_editor.connection.vendor != "postgresql":
            return ""
        if schema_editor.atomic_migration:
            raise ValueError("DROP INDEX CONCURRENTLY needs a migration with atomic = False.")
        return "CONCURRENTLY "

    def describe(self) -> str:
        return f"Drop index {self.name} of {self.table}"

    @property
    def migration_name_fragment(self) -> str:
        return f"drop_{self.name}".lower()
