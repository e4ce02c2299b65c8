"""`FieldsBuiltOnce`: a serializer's fields are built once per class, and each instance
still gets fields of its own, bound to it, the same as DRF would build."""

from rest_framework import serializers

from discount.serializers import DiscountSerializer


def test_each_instance_gets_the_fields_drf_builds_bound_to_itself():
    first, second = DiscountSerializer(), DiscountSerializer(data={"code": "X"})
    drf_built = serializers.ModelSerializer.get_fields(DiscountSerializer())
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


def test_the_fields_are_built_once_per_class(monkeypatch):
    built = []
    drf_get_fields = serializers.ModelSerializer.get_fields

    def counted(self):
        built.append(type(self))
        return drf_get_fields(self)

    monkeypatch.setattr(serializers.ModelSerializer, "get_fields", counted)
    monkeypatch.delattr(DiscountSerializer, "_fields_built_once", raising=False)
    for _ in range(3):
        assert "code" in DiscountSerializer().fields
    assert built == [DiscountSerializer]
    monkeypatch.delattr(DiscountSerializer, "_fields_built_once")
