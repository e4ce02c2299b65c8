"""Migration operations Django has no ready one for: changing the indexes of a table the
running release writes to, without stopping its writes.

migrations.SeparateDatabaseAndState(
    state_operations=[migrations.AlterField(..., field=ForeignKey(..., db_index=False))],
    database_operations=[DropIndex("cart_paymentrequest", "cart_paymentrequest_cart_id_12c2a59c",
                                   column="cart_id")],
)
"""

from __future__ import annotations

from django.db import migrations
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


class AddUniqueConstraint(migrations.AddConstraint):
    """`AddConstraint` of a `UniqueConstraint` on plain columns, without holding up the
    table's writers while its index is built.

    Django's `ALTER TABLE … ADD CONSTRAINT … UNIQUE` builds the index under a lock that
    stops every INSERT and UPDATE of the table for as long as the build takes (the
    running release's included: a payment recording its event would wait). On
    PostgreSQL the index is built `CONCURRENTLY` (the migration must be `atomic =
    False`), then made the constraint with `ADD CONSTRAINT … USING INDEX`, a moment's
    lock. Elsewhere (SQLite) one `CREATE UNIQUE INDEX`, where Django would copy the
    whole table. Reversed, the constraint is dropped as Django drops it.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        quote = schema_editor.quote_name
        table, name = quote(model._meta.db_table), quote(self.constraint.name)
        columns = ", ".join(
            quote(model._meta.get_field(field).column) for field in self.constraint.fields
        )
        if schema_editor.connection.vendor != "postgresql":
            schema_editor.execute(f"CREATE UNIQUE INDEX {name} ON {table} ({columns})")
            return
        if schema_editor.atomic_migration:
            raise ValueError("CREATE INDEX CONCURRENTLY needs a migration with atomic = False.")
        # An index of that name can only be left by a build that failed (an invalid
        # one, which USING INDEX refuses): built again.
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({columns})")
        schema_editor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
        )

    def describe(self) -> str:
        return f"{super().describe()}, its index built without locking the table's writes"
