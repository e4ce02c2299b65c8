"""Zero-downtime releases: while a rollout runs, the previous release's code serves
requests against the database the new release's migrations have changed. So a
migration must not take away a column or table that the code before it reads, nor add a
NOT NULL column that code would insert rows without (unless the database fills it in:
`db_default`).

The check applies the project's migrations one at a time on a database of their own,
from nothing, and after each compares the tables and columns the database really has
with the ones the models before that migration read. Dropping or renaming a column is
done in two releases ("expand and contract"): first the model stops using it
(`migrations.SeparateDatabaseAndState` with state operations only, the column stays),
then a later release drops it, listed in `CONTRACTED` with the release that stopped
reading it.
"""

import pytest
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.db.models import NOT_PROVIDED

PROJECT_APPS = ("cart", "discount", "payments", "storefront", "events")

# Migrations allowed through, and why no running code is hurt: a contract step (the
# release before it stopped reading the column), or one written before releases rolled.
CONTRACTED: dict[tuple[str, str], str] = {
    ("cart", "0004_refunds"): "before rolling releases: deployed with the old release stopped",
    ("payments", "0002_refunds"): "before rolling releases: deployed with the old release stopped",
    # NOT NULL columns without db_default: a release that contains them is applied with
    # the previous release stopped (no rolling release across it) until they get one.
    ("cart", "0006_campaigns"): "not rolling-safe: apply with the previous release stopped",
    ("discount", "0003_campaigns"): "not rolling-safe: apply with the previous release stopped",
    ("discount", "0005_automatic"): "not rolling-safe: apply with the previous release stopped",
}

pytestmark = pytest.mark.django_db(transaction=True)


def columns_in_database() -> dict[str, set[str]]:
    with connection.cursor() as cursor:
        return {
            table: {
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
            }
            for table in connection.introspection.table_names(cursor)
        }


def columns_read(state) -> dict[str, dict[str, object]]:
    """table -> {column: field} of the project's models in a migration state."""
    read: dict[str, dict[str, object]] = {}
    for model in state.apps.get_models():
        meta = model._meta
        if meta.app_label in PROJECT_APPS and meta.managed and not meta.proxy:
            read.setdefault(meta.db_table, {}).update(
                {field.column: field for field in meta.local_concrete_fields}
            )
    return read


def problems_of(before_db, after_db, before_state, after_state) -> list[str]:
    problems = []
    for table, fields in before_state.items():
        for column in fields:
            if column in before_db.get(table, ()) and column not in after_db.get(table, ()):
                problems.append(f"takes away {table}.{column}, which the code before it reads")
    for table, fields in after_state.items():
        if table not in before_state:
            continue  # a new table: the code before it never inserts there
        for column, field in fields.items():
            new = column not in before_db.get(table, ()) and column in after_db.get(table, ())
            if new and not field.null and field.db_default is NOT_PROVIDED:
                problems.append(
                    f"adds {table}.{column} NOT NULL without db_default: the code before it "
                    "inserts rows without it"
                )
    return problems


def project_migrations(executor) -> list[tuple[str, str]]:
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
    return [
        (migration.app_label, migration.name)
        for migration, _ in plan
        if migration.app_label in PROJECT_APPS
    ]


def test_no_migration_takes_away_what_the_previous_release_reads():
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    steps = project_migrations(executor)
    apps = sorted({app for app, _ in steps})
    found = {}
    try:
        executor.migrate([(app, None) for app in apps])
        for key in steps:
            loader = MigrationExecutor(connection).loader
            before_state = columns_read(loader.project_state(key, at_end=False))
            after_state = columns_read(loader.project_state(key, at_end=True))
            before_db = columns_in_database()
            MigrationExecutor(connection).migrate([key])
            problems = problems_of(before_db, columns_in_database(), before_state, after_state)
            if problems and key not in CONTRACTED:
                found[key] = problems
    finally:
        MigrationExecutor(connection).migrate(leaves)

    assert found == {}, (
        "These migrations would break the previous release during a rollout; split them "
        f"into expand and contract (see this module's docstring): {found}"
    )


def field(**options):
    return models.CharField(max_length=8, **options)


@pytest.mark.parametrize(
    ("before_db", "after_db", "before_state", "after_state", "problem"),
    [
        # RemoveField: the column goes while the code before still reads it.
        ({"t": {"a", "b"}}, {"t": {"a"}}, {"t": {"a": field(), "b": field()}},
         {"t": {"a": field()}}, "takes away t.b"),
        # RenameField: the old name goes.
        ({"t": {"a"}}, {"t": {"z"}}, {"t": {"a": field()}}, {"t": {"z": field()}},
         "takes away t.a"),
        # DeleteModel or AlterModelTable: the whole table goes.
        ({"t": {"a"}}, {}, {"t": {"a": field()}}, {}, "takes away t.a"),
        # AddField NOT NULL with only a Python default: old code's INSERTs fail.
        ({"t": {"a"}}, {"t": {"a", "n"}}, {"t": {"a": field()}},
         {"t": {"a": field(), "n": field(default="x")}}, "adds t.n NOT NULL"),
    ],
)  # fmt: skip
def test_the_check_flags_what_breaks_the_previous_release(
    before_db, after_db, before_state, after_state, problem
):
    found = problems_of(before_db, after_db, before_state, after_state)

    assert any(text.startswith(problem) for text in found), found


@pytest.mark.parametrize(
    ("before_db", "after_db", "before_state", "after_state"),
    [
        # Contract step: the code before already stopped reading t.b.
        ({"t": {"a", "b"}}, {"t": {"a"}}, {"t": {"a": field()}}, {"t": {"a": field()}}),
        # Expand step: the model stops reading t.b, the column stays.
        ({"t": {"a", "b"}}, {"t": {"a", "b"}}, {"t": {"a": field(), "b": field()}},
         {"t": {"a": field()}}),
        # New columns old code can live with: nullable, or filled in by the database.
        ({"t": {"a"}}, {"t": {"a", "n", "d"}}, {"t": {"a": field()}},
         {"t": {"a": field(), "n": field(null=True), "d": field(db_default="")}}),
        # A new table.
        ({}, {"t": {"a"}}, {}, {"t": {"a": field()}}),
    ],
)  # fmt: skip
def test_the_check_lets_expand_and_contract_through(
    before_db, after_db, before_state, after_state
):
    assert problems_of(before_db, after_db, before_state, after_state) == []
