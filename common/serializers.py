"""Serializer building blocks shared by the apps.

`FieldsBuiltOnce` builds a serializer class's fields once and gives every instance its
own shallow copies of them. DRF builds them again for every instance: a deep copy of
each declared field (re-running its constructor) and, for a ModelSerializer, every
model field mapped again from the model's meta. For a discount's 21 fields that was a
third of the CPU of `POST /api/discount/`.

A shallow copy is a field of its own for everything DRF sets on an instance when
binding it (`field_name`, `parent`, `source`, `label`, lazily its `validators`), and
shares only what its constructor made, which validation reads and never changes
(choices, a ListField's child, validators given to it). A shared child stays bound to
the field built first, never to this request's serializer: so only for serializers
whose fields do not depend on the instance (no `get_fields` of their own reading
`initial_data`, the request or the context) and have no nested serializer (a
`many=True` child would be shared between requests and threads).

`ValidatorsBuiltOnce` does the same for a ModelSerializer's own validators (those of the
model's unique constraints, found by walking its meta and the serializer's fields on
every instance: 5-7 % of a create's CPU for a list that is empty for our models).
"""

import copy
import functools
from collections.abc import Callable


class FieldsBuiltOnce:
    """Mixin for a Serializer: its fields are built once per class."""

    def get_fields(self) -> dict:
        return built_once(self, "_fields_built_once", super().get_fields)


class ValidatorsBuiltOnce:
    """Mixin for a ModelSerializer: its own validators are found once per class and set
    of fields. They are the same for every instance with those fields (DRF derives them
    from the model and the fields alone) and hold no state of a request (DRF hands them
    the serializer on each call)."""

    def get_validators(self) -> list:
        cls = type(self)
        found = cls.__dict__.get("_validators_built_once")
        if found is None:
            found = {}
            cls._validators_built_once = found
        fields = tuple(self.fields)  # a serializer may build other fields for some requests
        validators = found.get(fields)
        if validators is None:
            validators = found[fields] = super().get_validators()
        return list(validators)


def built_once(serializer, name: str, build: Callable[[], dict]) -> dict:
    """The fields `build()` makes, built once per serializer class (kept as `name` on
    it), as shallow copies of their own for `serializer` (what may be built so: above)."""
    cls = type(serializer)
    built = cls.__dict__.get(name)
    if built is None:
        # A race of two first requests builds them twice: either result is right.
        built = build()
        setattr(cls, name, built)
    return {field_name: shallow_copy(field) for field_name, field in built.items()}


def shallow_copy(field):
    """`copy.copy(field)`, the same object for a plain one (a new instance of its class
    holding the same attributes), four times faster: `copy.copy` asks the class how to
    reduce and rebuild it on every call, and a discount's 21 fields cost 67 µs a request
    that way. A class that says how it is copied or rebuilt (`__copy__`, `__reduce__`,
    `__reduce_ex__`, `__setstate__`) or keeps its attributes in slots goes `copy.copy`'s
    way."""
    cls = type(field)
    if not _plain(cls):
        return copy.copy(field)
    new = cls.__new__(cls)
    new.__dict__.update(field.__dict__)
    return new


@functools.cache
def _plain(cls: type) -> bool:
    return (
        cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and not hasattr(cls, "__copy__")
        and not hasattr(cls, "__setstate__")
        and not any("__slots__" in vars(klass) for klass in cls.__mro__[:-1])
    )
