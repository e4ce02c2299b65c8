"""ORM queries compiled to SQL once per process and database, then run with new values.

    _BY_CODE = CompiledQuery(
        lambda code: Discount.objects.filter(code=code).annotate(...)[:1], code=str
    )
    discounts = _BY_CODE.run(code="DIS20")   # model instances, annotations as attributes

Building a queryset with subqueries and compiling it costs a few milliseconds of CPU on
every call (a hot write path spent half its CPU so), though the SQL is the same each time
but for the values. The query is written once with the ORM, as any other; it is compiled
on its first run with marker values standing for the parameters, and the markers'
positions among the statement's parameters are kept. Each run sends the same SQL with
the caller's values in those positions (adapted for the database as the ORM adapts them)
and builds the model instances as `QuerySet.raw` does. On SQLite the query's own text
constants (`'released'`) are written into the SQL instead of sent as values: SQLite
prepares a statement again on every run when a value could decide whether a partial
index applies (see `_constants_written_in`). A query whose compiled parameters
do not contain every marker (the builder changed a value: upper-cased it, say) is refused
on its first run: the builder must use its arguments as given. So is one whose SQL or
constants change when compiled again with other markers (a value derived from a
parameter, `at - timedelta(hours=1)`, or escaped by its lookup, SQLite's LIKE for
`iexact`), and a run with a None value (the ORM writes `IS NULL` for it).

Parameters are `str`, `datetime` (aware), `int` or `UUID`. A test per query checks it
answers what the ORM's queryset answers.

`CompiledSaves`, a model mixin, does the same for `save()`: the INSERT or UPDATE Django
builds for a model, a set of fields and a database is kept and sent again with the next
save's values (see its docstring).
"""

from __future__ import annotations

import inspect
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import CharField, Model, QuerySet, TextField
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.db.models.sql import InsertQuery, UpdateQuery
from django.db.transaction import TransactionManagementError


class CompiledQuery:
    def __init__(self, build: Callable[..., QuerySet], **params: type) -> None:
        for name, kind in params.items():
            if kind not in (str, datetime, int, UUID):
                raise ImproperlyConfigured(f"{name}: only str, datetime, int, UUID parameters.")
        self._build = build
        self._params = params
        self._compiled: dict[str, tuple[type[Model], str, list, bool, list | None]] = {}
        self._readers: dict[str, _Reader] = {}

    def queryset(self, **values) -> QuerySet:
        """The ORM's queryset for these values (what `run` answers, built and compiled
        every time)."""
        return self._build(**values)

    def run(self, *, using: str = DEFAULT_DB_ALIAS, **values) -> list[Model]:
        model, sql, slots, locks, names = self._compiled.get(using) or self._compile(using)
        for name, value in values.items():
            if value is None:
                # The ORM writes `IS NULL` for None; the compiled `= %s` would match nothing.
                raise TypeError(f"{name}: None is no value of a compiled query.")
        connection = connections[using]
        if locks and connection.get_autocommit():
            # As the ORM refuses it: a lock taken outside a transaction ends at once.
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = [
            slot.send(_adapt(connection, self._params[slot.name], values[slot.name]))
            if isinstance(slot, _Slot)
            else slot
            for slot in slots
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            reader = self._readers.get(using)
            if reader is None:
                columns = names or [column[0] for column in cursor.description]
                reader = self._readers[using] = _Reader(model, columns, connection)
        return [reader.instance(row, using, connection) for row in rows]

    def _compile(self, using: str) -> tuple[type[Model], str, list, bool, list | None]:
        connection = connections[using]
        queryset, sql, slots = self._compile_with(using, variant=0)
        # Compiled again with other markers, the statement must be the same but for the
        # values: a builder that derives a value from a parameter (`at - timedelta(…)`)
        # would leave the first marker's result in it as a constant, and a lookup that
        # escapes its value (SQLite's LIKE for iexact: `_`, `%`, `\`) would send each
        # run's value unescaped. Such a builder is refused, not run wrong.
        _, again, slots_again = self._compile_with(using, variant=1)
        if again != sql or not all(map(_same_slot, slots, slots_again)):
            raise ImproperlyConfigured(
                "The compiled query's SQL or constants depend on the values of "
                f"{sorted(self._params)}: its builder must use each parameter unchanged."
            )
        if connection.vendor == "sqlite":
            sql, slots = _constants_written_in(sql, slots)
        locks = queryset.query.select_for_update and connection.features.has_select_for_update
        names = _combined_names(queryset, using) if queryset.query.combinator else None
        compiled = self._compiled[using] = (queryset.model, sql, slots, locks, names)
        return compiled

    def _compile_with(self, using: str, variant: int) -> tuple[QuerySet, str, list]:
        """The builder's queryset for markers standing for the parameters, its SQL, and
        its parameters: each a constant or the `_Slot` of the marker found there."""
        connection = connections[using]
        markers = {name: _marker(kind, variant) for name, kind in self._params.items()}
        queryset = self._build(**markers)
        sql, params = queryset.query.get_compiler(using=using).as_sql()
        adapted = {
            name: _adapt(connection, self._params[name], value) for name, value in markers.items()
        }
        slots, seen = [], set()
        for param in params:
            name = next((n for n, marker in adapted.items() if _same(param, marker)), None)
            if name is None:
                slots.append(param)  # a constant of the query ('reserved', 0, …)
            else:
                slots.append(_Slot(name, param))
                seen.add(name)
        missing = set(self._params) - seen
        if missing:
            raise ImproperlyConfigured(
                f"The compiled query does not take {sorted(missing)} as given: its builder "
                "must use each parameter unchanged."
            )
        return queryset, sql, slots


def _constants_written_in(sql: str, slots: list) -> tuple[str, list]:
    """The statement with its constant texts written into the SQL, and the parameters
    left to send (the markers' slots, and the other constants).

    For SQLite: it keeps a prepared statement and runs it again with new values, unless
    a value could decide whether a partial index applies (`NOT status = ?` where
    `reservation_one_per_generated_code` says `WHERE NOT status = 'released'`); such a
    statement it prepares again on every run, which cost the code's lookup on every apply
    0.2 ms of SQLite's CPU against 0.02 ms with the constants written in. The constants
    are the query's own texts (the same in every compilation, checked before), never a
    caller's value."""
    parts = re.split(r"(%%|%s)", sql)
    if parts.count("%s") != len(slots):
        raise ImproperlyConfigured("The compiled query's placeholders and parameters differ.")
    remaining = iter(slots)
    sent = []
    for index, part in enumerate(parts):
        if part != "%s":
            continue
        slot = next(remaining)
        literal = _sqlite_literal(slot)
        if literal is None:
            sent.append(slot)
        else:
            parts[index] = literal.replace("%", "%%")  # the driver's placeholders are %s
    return "".join(parts), sent


def _sqlite_literal(value) -> str | None:
    # Text only (text choices too): every partial index here tests a text column, and an
    # integer written in could change meaning (`ORDER BY 2` orders by the second column).
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _combined_names(queryset: QuerySet, using: str) -> list[str]:
    """The columns of a union (or other compound) statement, which Django names col1,
    col2, …: the names of its first part's, as that part alone would name them."""
    first = queryset.query.combined_queries[0]
    select, _, _ = first.get_compiler(using=using).get_select()
    return [alias or expression.target.column for expression, _, alias in select]


class _Reader:
    """Rows of one compiled statement into model instances, as `QuerySet.raw` makes them
    (the model's columns through Django's converters, other columns set as attributes),
    with the columns matched to fields and their converters found once, not per run."""

    def __init__(self, model: type[Model], columns: list[str], connection) -> None:
        position = {}
        for index, name in enumerate(columns):
            position.setdefault(name, index)  # the model's own table comes first
        fields = [f for f in model._meta.concrete_fields if f.column in position]
        if model._meta.pk not in fields:
            raise ImproperlyConfigured("A compiled query must select the primary key.")
        self.model = model
        self.attnames = [field.attname for field in fields]
        self.fields = []
        for field in fields:
            column = field.get_col(model._meta.db_table)
            convert = connection.ops.get_db_converters(column) + field.get_db_converters(
                connection
            )
            self.fields.append((position[field.column], column, convert))
        # Other columns become attributes, except those named like a model column (a
        # joined table's), which QuerySet.raw leaves out too.
        taken = {field.column for field in model._meta.concrete_fields}
        self.extra = [(name, index) for index, name in enumerate(columns) if name not in taken]
        # Whether an instance may be made without Model.__init__ (see `instance`): no
        # class of the model's has its own (a mixin's after Model is called by Model's),
        # nor its own way to set an attribute or to make an instance from a row; decided
        # once per reader (a descriptor patched onto the model later is not seen).
        self.plain = (
            all(
                "__init__" not in vars(klass) for klass in model.__mro__[:-1] if klass is not Model
            )
            and model.__setattr__ is Model.__setattr__
            and model.from_db.__func__ is Model.from_db.__func__
            and all(
                type(inspect.getattr_static(model, name, None)) in _PLAIN_DESCRIPTORS
                for name in self.attnames
            )
        )

    def instance(self, row, using: str, connection) -> Model:
        values = []
        for index, column, convert in self.fields:
            value = row[index]
            for converter in convert:
                value = converter(value, column, connection)
            values.append(value)
        model = self.model
        if self.plain and not (pre_init.has_listeners(model) or post_init.has_listeners(model)):
            # What Model.from_db makes of these values, without Model.__init__'s loops
            # and two signals nobody listens to: each value in the instance's __dict__
            # (a field's descriptor reads it from there, and a field not read is
            # deferred, absent as it would be), and its state.
            instance = model.__new__(model)
            state = ModelState()
            state.fields_cache = {}  # (Model.__init__ leaves one when it sets a foreign key)
            state.adding = False
            state.db = using
            instance._state = state
            instance.__dict__.update(zip(self.attnames, values, strict=True))
        else:
            instance = model.from_db(using, self.attnames, values)
        for name, index in self.extra:
            setattr(instance, name, row[index])
        return instance


# The descriptors Django gives a concrete field's attname that store nothing but the
# value in the instance's __dict__ when it is set (a foreign key's clears a cached
# related object, which a new instance has none of). Any other (a file field's, a
# model's own property) is set through Model.__init__.
_PLAIN_DESCRIPTORS = frozenset({DeferredAttribute, ForeignKeyDeferredAttribute})


class _Slot:
    """Where a parameter goes, and the integer type the ORM sent it as there (on
    PostgreSQL an integer column's value is a typed psycopg `Int4`, `Int8`, …)."""

    __slots__ = ("int_type", "name")

    def __init__(self, name: str, compiled_value) -> None:
        self.name = name
        kind = type(compiled_value)
        self.int_type = kind if issubclass(kind, int) and kind is not int else None

    def send(self, value):
        return value if self.int_type is None else self.int_type(value)


def _marker(kind: type, variant: int = 0):
    if kind is int:
        # Within every integer column's range (Django refuses a value outside the
        # field's), and unlike any constant a query holds; each variant its own half.
        return 1_000_000_007 + variant * 500_000_000 + secrets.randbelow(500_000_000)
    if kind is UUID:
        return uuid4()
    if kind is str:
        # Lower-case letters and digits: valid wherever a code or a key is, and unchanged
        # by the normalisations the builders may apply (strip, lower). The second holds
        # `_` too (valid in a code and a key), which a LIKE lookup would escape.
        return f"zq{'_' * variant}{secrets.token_hex(12)}"
    # A moment no data holds, unique to this compilation.
    return datetime(1901 + variant, 2, 3, 4, 5, 6, secrets.randbelow(10**6), tzinfo=UTC)


def _adapt(connection, kind: type, value):
    if kind is UUID and not isinstance(value, UUID):
        value = UUID(str(value))  # a UUID given as text, as UUIDField takes it
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, UUID):
        # As UUIDField sends it: natively, or as 32 hex digits (SQLite).
        return value if connection.features.has_native_uuid_field else value.hex
    return value


def _same_slot(first, second) -> bool:
    """Whether two compilations put the same thing at one position of the parameters:
    the same parameter, or the same constant."""
    if isinstance(first, _Slot) or isinstance(second, _Slot):
        return isinstance(first, _Slot) and isinstance(second, _Slot) and first.name == second.name
    return type(first) is type(second) and first == second


def _same(param, marker) -> bool:
    if type(marker) is int:  # the ORM may send it as a typed integer (psycopg's Int4)
        return isinstance(param, int) and not isinstance(param, bool) and param == marker
    return type(param) is type(marker) and param == marker


class CompiledSaves:
    """A model mixin: `save()` sends the SQL Django built for the same save before.

    Everything `save()` does stays Django's (signals, `pre_save` of each field, the
    choice between UPDATE and INSERT, `update_fields`, the errors); only its last step,
    building the INSERT or UPDATE statement, is done once per model, database, set of
    fields (and, for an UPDATE, which values are NULL, which Django writes into the SQL).
    Django assembling that statement was a third of the CPU of creating a cart, applying
    a discount and paying.

    The first save of each kind is built by Django, and the values this mixin would send
    are checked against Django's: only when they are the same is the statement kept.
    Anything else (an expression such as `F()` as a value, a field with its own
    placeholder, a model with parents, `select_on_save`, a raw save) goes Django's way
    every time.
    """

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        connection = connections[using]
        meta = self._meta
        prepared = _update_values(values, connection)
        compilable = (
            prepared is not None
            and not meta.parents
            and len(meta.pk_fields) == 1
            and (forced_update or not meta.select_on_save)
        )
        sql = None
        if compilable:
            key = (
                "update",
                base_qs.model,
                using,
                tuple(field.attname for field, _, _ in values),
                tuple(value is None for value in prepared),
            )
            pk_param = meta.pk.get_db_prep_value(pk_val, connection)
            params = [value for value in prepared if value is not None] + [pk_param]
            sql = _SAVES.get(key)
            if sql is None:
                sql = _SAVES[key] = _compile_update(base_qs, using, pk_val, values, params)
        if sql is None or sql is _DJANGO:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount > 0

    def _do_insert(self, manager, using, fields, returning_fields, raw):
        connection = connections[using]
        can_return = connection.features.can_return_columns_from_insert
        key = (
            "insert",
            manager.model,
            using,
            tuple(field.attname for field in fields),
            tuple(field.attname for field in returning_fields or ()),
        )
        compiled = _SAVES.get(key)
        if (
            raw
            or not fields
            or self._meta.parents
            or (returning_fields and not can_return)
            or compiled is _DJANGO
        ):
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        if compiled is None:
            compiled, params = _compile_insert(
                self, manager.model, using, fields, returning_fields
            )
            _SAVES[key] = compiled or _DJANGO
            if compiled is None:
                return super()._do_insert(manager, using, fields, returning_fields, raw)
        else:
            params = _insert_values(self, fields, connection)
            if params is None:
                return super()._do_insert(manager, using, fields, returning_fields, raw)
        return compiled.execute(connection, params)


# (kind, model, database, fields, …) -> the SQL of a save, or _DJANGO: built by Django.
_SAVES: dict[tuple, object] = {}
_DJANGO = object()


class _Insert:
    __slots__ = ("converters", "returning", "returning_params", "sql")

    def execute(self, connection, params: list) -> list:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            if not self.returning:
                return []
            row = list(connection.ops.fetch_returned_insert_columns(cursor, self.returning_params))
        for position, (convert, expression) in self.converters.items():
            value = row[position]
            for converter in convert:
                value = converter(value, expression, connection)
            row[position] = value
        return [tuple(row)]


def _compile_update(base_qs, using, pk_val, values, params):
    """Django's UPDATE for this save, if the values this mixin sends are Django's;
    _DJANGO otherwise (this mixin would send something else: Django's way)."""
    query = base_qs.filter(pk=pk_val).query.chain(UpdateQuery)
    query.add_update_fields(values)
    query.annotations = {}
    sql, django_params = query.get_compiler(using).as_sql()
    return sql if _same_params(params, django_params) else _DJANGO


def _compile_insert(
    instance, model, using, fields, returning_fields
) -> tuple[_Insert | None, list | None]:
    """Django's INSERT for this save and this save's values, if the values this mixin
    sends are Django's; (None, None) otherwise."""
    query = InsertQuery(model)
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = returning_fields
    statements = compiler.as_sql()  # runs each field's pre_save, as Django's save does
    if len(statements) != 1 or any(hasattr(field, "get_placeholder") for field in fields):
        return None, None
    sql, django_params = statements[0]
    connection = connections[using]
    params = [
        field.get_db_prep_save(getattr(instance, field.attname), connection) for field in fields
    ]
    if not _same_params(params, django_params):
        return None, None
    insert = _Insert()
    insert.sql = sql
    insert.returning = bool(returning_fields)
    insert.returning_params = compiler.returning_params
    columns = [field.get_col(model._meta.db_table) for field in returning_fields or ()]
    insert.converters = compiler.get_converters(columns)
    return insert, params


# Fields whose get_db_prep_save sends a str as it is, on every database: CharField's
# to_python returns a str unchanged and neither class adapts it further. Most values a
# save writes are such (statuses, codes, keys, messages); each went through five calls.
# Exactly these classes: a subclass may prepare its values otherwise.
_STR_AS_IS = frozenset({CharField, TextField})


def _insert_values(instance, fields, connection) -> list | None:
    """Each field's value as Django's INSERT sends it (after the field's pre_save), or
    None when one is an expression (then Django builds the statement)."""
    params = []
    for field in fields:
        value = field.pre_save(instance, add=True)
        if type(value) is str and type(field) in _STR_AS_IS:
            params.append(value)
            continue
        if hasattr(value, "resolve_expression"):
            return None
        value = field.get_db_prep_save(value, connection)
        if hasattr(value, "as_sql"):
            return None
        params.append(value)
    return params


def _update_values(values, connection) -> list | None:
    """Each value as Django's UPDATE sends it, or None when one is an expression."""
    prepared = []
    for field, _, value in values:
        if type(value) is str and type(field) in _STR_AS_IS:
            prepared.append(value)
            continue
        if hasattr(value, "resolve_expression") or hasattr(field, "get_placeholder"):
            return None
        if hasattr(value, "prepare_database_save"):
            if not field.remote_field:
                return None  # Django raises its TypeError
            value = value.prepare_database_save(field)
        value = field.get_db_prep_save(value, connection)
        if hasattr(value, "as_sql"):
            return None
        prepared.append(value)
    return prepared or None


def _same_params(ours, djangos) -> bool:
    return len(ours) == len(djangos) and all(
        type(a) is type(b) and (a == b or _wrapped(a) == _wrapped(b))
        for a, b in zip(ours, djangos, strict=True)
    )


def _wrapped(value):
    # psycopg's Jsonb wraps the value without comparing it.
    return getattr(value, "obj", value)
