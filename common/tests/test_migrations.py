import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def _indexed_columns(model) -> list[tuple[tuple[str, ...], str, bool]]:
    """The column lists of the model's indexes that hold every row (no condition), each
    with its name and whether it is unique."""
    meta = model._meta
    found = []
    for field in meta.local_concrete_fields:
        if field.db_index or field.unique:
            found.append(((field.column,), field.name, field.unique))
    for index in meta.indexes:
        if index.condition is None and index.fields:
            columns = tuple(meta.get_field(name.lstrip("-")).column for name in index.fields)
            found.append((columns, index.name, False))
    for constraint in meta.constraints:
        if getattr(constraint, "fields", None) and constraint.condition is None:
            columns = tuple(meta.get_field(name).column for name in constraint.fields)
            found.append((columns, constraint.name, True))
    return found


def test_no_plain_index_is_the_prefix_of_another_of_its_table():
    # Every write keeps each index up to date; one whose columns begin another index's
    # serves no lookup that other cannot (a foreign key's own index, say, beside a
    # (key, other) index), and costs every INSERT of the table.
    from django.apps import apps

    covered = []
    for model in apps.get_models():
        if model._meta.app_label not in {"cart", "discount", "payments", "events", "storefront"}:
            continue
        indexes = _indexed_columns(model)
        for columns, name, unique in indexes:
            if unique:  # it says something the wider one does not
                continue
            covered += [
                f"{model._meta.db_table}: {name} {columns} begins {other} {wider}"
                for wider, other, _ in indexes
                if len(wider) > len(columns) and wider[: len(columns)] == columns
            ]
    assert covered == []


@pytest.mark.django_db
def test_the_database_has_no_index_covered_by_a_wider_one():
    # What the migrations built, on this database: the indexes dropped by
    # discount 0006, payments 0006 and events 0003 are gone.
    from django.db import connection

    with connection.cursor() as cursor:
        for table, column in [
            ("discount_discountreservation", "discount_id"),
            ("discount_discountcode", "discount_id"),
            ("cart_paymentrequest", "cart_id"),
            ("events_event", "cart_id"),
        ]:
            constraints = connection.introspection.get_constraints(cursor, table)
            alone = [
                name
                for name, about in constraints.items()
                if about["index"] and not about["unique"] and about["columns"] == [column]
            ]
            assert alone == [], f"{table}: {alone}"
            assert any(
                about["columns"][:1] == [column] and len(about["columns"]) > 1
                for about in constraints.values()
            ), f"{table}: no index begins with {column}"


def _index_exists(name: str) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        return any(
            name in connection.introspection.get_constraints(cursor, table) for table in tables
        )


@pytest.mark.django_db(transaction=True)
def test_drop_index_builds_the_index_again_when_reversed():
    from django.db import connection

    from common.migration_operations import DropIndex

    drop = DropIndex(
        "cart_paymentrequest", "cart_paymentrequest_cart_id_12c2a59c", column="cart_id"
    )
    try:
        with connection.schema_editor(atomic=False) as editor:
            drop.database_backwards("payments", editor, None, None)
        assert _index_exists("cart_paymentrequest_cart_id_12c2a59c")
    finally:
        with connection.schema_editor(atomic=False) as editor:
            drop.database_forwards("payments", editor, None, None)
    assert not _index_exists("cart_paymentrequest_cart_id_12c2a59c")


@pytest.mark.django_db(transaction=True)
def test_drop_index_does_not_lock_the_table_on_postgresql():
    # Django's AlterField(db_index=False) re-adds the foreign key there, checking every
    # row under an exclusive lock of both tables.
    from django.db import connection

    from common.migration_operations import DropIndex

    drop = DropIndex("t", "t_c_idx", column="c")
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        drop.database_forwards("app", editor, None, None)
    (sql,) = editor.collected_sql
    if connection.vendor == "postgresql":
        assert sql.startswith('DROP INDEX CONCURRENTLY IF EXISTS "t_c_idx"')
        atomic = connection.schema_editor(collect_sql=True, atomic=True)
        with pytest.raises(ValueError, match="atomic = False"), atomic as editor:
            drop.database_forwards("app", editor, None, None)
    else:
        assert sql.startswith('DROP INDEX IF EXISTS "t_c_idx"')


@pytest.mark.django_db(transaction=True)
def test_add_unique_constraint_does_not_lock_the_tables_writes_on_postgresql():
    # Django's ADD CONSTRAINT … UNIQUE builds the index with every INSERT and UPDATE of
    # the table waiting (on SQLite it copies the table).
    from django.db import connection, models
    from django.db.migrations.state import ModelState, ProjectState

    from common.migration_operations import AddUniqueConstraint

    state = ProjectState()
    state.add_model(
        ModelState(
            "app",
            "Row",
            [("id", models.AutoField(primary_key=True)), ("n", models.IntegerField())],
        )
    )
    add = AddUniqueConstraint(
        model_name="row", constraint=models.UniqueConstraint(fields=["n"], name="row_one_n")
    )
    after = state.clone()
    add.state_forwards("app", after)
    assert after.models["app", "row"].options["constraints"][0].name == "row_one_n"
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        add.database_forwards("app", editor, state, after)
    sql = [line.rstrip(";") for line in editor.collected_sql]
    if connection.vendor == "postgresql":
        assert sql == [
            'DROP INDEX CONCURRENTLY IF EXISTS "row_one_n"',
            'CREATE UNIQUE INDEX CONCURRENTLY "row_one_n" ON "app_row" ("n")',
            'ALTER TABLE "app_row" ADD CONSTRAINT "row_one_n" UNIQUE USING INDEX "row_one_n"',
        ]
        atomic = connection.schema_editor(collect_sql=True, atomic=True)
        with pytest.raises(ValueError, match="atomic = False"), atomic as editor:
            add.database_forwards("app", editor, state, after)
    else:
        assert sql == ['CREATE UNIQUE INDEX "row_one_n" ON "app_row" ("n")']
