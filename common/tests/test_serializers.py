"""`FieldsBuiltOnce`: a serializer's fields are built once per class, and each instance
still gets fields of its own, bound to it, the same as DRF would build.
`ValidatorsBuiltOnce`: a ModelSerializer's own validators, found once per class and
set of fields, are those DRF finds."""

import pytest
from rest_framework import serializers

import common.serializers
from cart.serializers import CartSerializer
from common.serializers import ValidatorsBuiltOnce, shallow_copy
from discount.serializers import ApplyDiscountSerializer, DiscountSerializer
from payments.models import PaymentRequest

# Each serializer built once, with the DRF class whose get_fields it replaces.
BUILT_ONCE = [
    (DiscountSerializer, serializers.ModelSerializer),
    (ApplyDiscountSerializer, serializers.Serializer),
]


@pytest.mark.parametrize(("serializer_class", "drf_class"), BUILT_ONCE)
def test_each_instance_gets_the_fields_drf_builds_bound_to_itself(serializer_class, drf_class):
    first, second = serializer_class(), serializer_class(data={"code": "X"})
    drf_built = drf_class.get_fields(serializer_class())
    for serializer in (first, second):
        assert list(serializer.fields) == list(drf_built)
        for name, field in serializer.fields.items():
            assert repr(field) == repr(drf_built[name])
            assert field.parent is serializer
            assert field.field_name == name
    assert all(first.fields[n] is not second.fields[n] for n in first.fields)


def test_instances_validate_and_answer_independently():
    good = DiscountSerializer(data={"code": "SPRING", "kind": "amount", "value": "5"})
    bad = DiscountSerializer(data={"code": "", "kind": "nope", "value": "x"})
    assert not bad.is_valid()
    assert set(bad.errors) == {"code", "kind", "value"}
    assert good.is_valid(), good.errors
    assert good.validated_data["code"] == "SPRING"


@pytest.mark.parametrize(("serializer_class", "drf_class"), BUILT_ONCE)
def test_the_fields_are_built_once_per_class(monkeypatch, serializer_class, drf_class):
    built = []
    drf_get_fields = drf_class.get_fields

    def counted(self):
        built.append(type(self))
        return drf_get_fields(self)

    monkeypatch.setattr(drf_class, "get_fields", counted)
    monkeypatch.delattr(serializer_class, "_fields_built_once", raising=False)
    for _ in range(3):
        assert "code" in serializer_class().fields
    assert built == [serializer_class]
    monkeypatch.delattr(serializer_class, "_fields_built_once")


class _KeySerializer(ValidatorsBuiltOnce, serializers.ModelSerializer):
    # A model with a unique constraint on two fields: DRF gives it a validator.
    class Meta:
        model = PaymentRequest
        fields = ("cart", "key", "payment")

    def get_fields(self):
        fields = super().get_fields()
        if self.context.get("without_key"):
            del fields["key"]
        return fields


def _described(validators) -> list:
    return [(type(v), getattr(v, "fields", None)) for v in validators]


@pytest.mark.parametrize("context", [{}, {"without_key": True}])
def test_the_validators_are_those_drf_finds_for_the_same_fields(context):
    serializer = _KeySerializer(data={}, context=context)
    drf_found = serializers.ModelSerializer.get_validators(_KeySerializer(context=context))
    assert _described(serializer.validators) == _described(drf_found)
    # One constraint on (cart, key): checked only when the serializer writes both.
    assert len(drf_found) == (0 if context else 1)


def test_the_validators_are_found_once_per_class_and_fields(monkeypatch):
    found = []
    drf_get_validators = serializers.ModelSerializer.get_validators

    def counted(self):
        found.append(tuple(self.fields))
        return drf_get_validators(self)

    monkeypatch.setattr(serializers.ModelSerializer, "get_validators", counted)
    monkeypatch.delattr(_KeySerializer, "_validators_built_once", raising=False)
    for _ in range(3):
        for context in ({}, {"without_key": True}):
            serializer = _KeySerializer(data={}, context=context)
            first = serializer.validators
            assert first is not _KeySerializer(data={}, context=context).validators
    assert found == [("cart", "key", "payment"), ("cart", "payment")]


@pytest.mark.parametrize(
    ("serializer_class", "data"),
    [
        (CartSerializer, {"total": "10.00", "items_number": 1, "currency": "USD"}),
        (DiscountSerializer, {"code": "SPRING", "kind": "amount", "value": "5"}),
    ],
)
def test_the_requests_of_the_hot_paths_find_them_once(monkeypatch, serializer_class, data):
    found = []
    drf_get_validators = serializers.ModelSerializer.get_validators

    def counted(self):
        found.append(type(self))
        return drf_get_validators(self)

    monkeypatch.setattr(serializers.ModelSerializer, "get_validators", counted)
    monkeypatch.delattr(serializer_class, "_validators_built_once", raising=False)
    for _ in range(3):
        serializer = serializer_class(data=data)
        assert serializer.is_valid(), serializer.errors
    assert found == [serializer_class]
    monkeypatch.delattr(serializer_class, "_validators_built_once")


@pytest.mark.parametrize(("serializer_class", "drf_class"), BUILT_ONCE)
def test_the_copies_are_made_without_asking_copy_how(monkeypatch, serializer_class, drf_class):
    # copy.copy rebuilds a plain field through its class's reduce protocol on every call:
    # four times the cost of a new instance given the same attributes.
    built = serializer_class().fields  # built, and cached on the class

    def refused(_):
        raise AssertionError("copy.copy called for a plain field")

    monkeypatch.setattr(common.serializers.copy, "copy", refused)
    fields = serializer_class().fields
    for name, field in fields.items():
        assert type(field) is type(built[name])
        assert field is not built[name]
        assert repr(field) == repr(built[name])


class _Slotted:
    __slots__ = ("value",)


class _CopiesItself:
    copied = False

    def __copy__(self):
        new = _CopiesItself()
        new.copied = True
        return new


def test_a_field_that_says_how_it_is_copied_is_copied_its_way():
    slotted = _Slotted()
    slotted.value = 3
    assert shallow_copy(slotted).value == 3
    assert shallow_copy(_CopiesItself()).copied
    plain = serializers.CharField(max_length=5)
    copied = shallow_copy(plain)
    assert copied is not plain
    assert copied.__dict__ == plain.__dict__
